#include "serve/http_server.h"

#include <httplib.h>

#include <array>
#include <cstdio>
#include <exception>
#include <mutex>

#include "absl/container/flat_hash_map.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "serve/batch.h"
#include "serve/json_writer.h"
#include "store/store.h"

namespace vigil::serve {
namespace {

enum Endpoint : int { kEvents, kBatch, kLabels, kDecisions, kMetrics, kReload, kModels, kOther, kNumEndpoints };
constexpr const char* kEndpointNames[kNumEndpoints] = {"events", "events_batch", "labels", "decisions",
                                                       "metrics", "admin_reload", "admin_models", "other"};
constexpr std::array<int, 11> kCodes = {200, 400, 401, 403, 404, 405, 413, 415, 429, 500, 503};

std::string ErrorJson(std::string_view error, std::string_view message) {
  std::string j = "{";
  AppendKey("error", &j);
  AppendJsonString(error, &j);
  AppendKey("message", &j);
  AppendJsonString(message, &j);
  j.push_back('}');
  return j;
}

void SetError(httplib::Response& res, int status, std::string_view error, std::string_view message) {
  res.status = status;
  res.set_content(ErrorJson(error, message), "application/json");
}

bool IsJson(const httplib::Request& req) {
  std::string ct = req.get_header_value("Content-Type");
  return ct.rfind("application/json", 0) == 0;
}

Endpoint EndpointOf(std::string_view path) {
  if (path == "/v1/events") return kEvents;
  if (path == "/v1/events:batch") return kBatch;
  if (path == "/v1/labels") return kLabels;
  if (path.rfind("/v1/decisions/", 0) == 0) return kDecisions;
  if (path == "/metrics") return kMetrics;
  if (path == "/v1/admin/reload") return kReload;
  if (path == "/v1/admin/models") return kModels;
  return kOther;
}

}  // namespace

struct HttpServer::Impl {
  Engine* engine;
  Auth* auth;
  monitor::Registry* registry;
  ServeConfig config;
  std::unique_ptr<httplib::Server> server;

  // The sequencer: one Decide at a time, in arrival order.
  std::mutex decide_mu;
  Decision decision;  // reused under decide_mu

  std::array<std::array<monitor::Counter*, kCodes.size()>, kNumEndpoints> requests{};
  monitor::Histogram* request_seconds[kNumEndpoints] = {};
  monitor::Histogram* stage_seconds[5] = {};  // parse, features, model, policy, total
  monitor::Counter* events_by_outcome[4] = {};  // decided, not_scored, rejected, retry
  absl::flat_hash_map<std::string, monitor::Counter*> decisions_by;  // under decide_mu
  std::string decision_key;                                          // under decide_mu
  monitor::Counter* rate_limited = nullptr;

  void Count(Endpoint e, int status, double seconds) {
    for (size_t i = 0; i < kCodes.size(); ++i) {
      if (kCodes[i] == status) {
        requests[e][i]->Inc();
        break;
      }
    }
    request_seconds[e]->Observe(seconds);
  }

  // Authenticates for `role`; on failure fills `res` and returns false.
  bool Authorize(const httplib::Request& req, httplib::Response& res, Role role, bool rate_limited_endpoint) {
    std::string key_id;
    switch (auth->Authenticate(req.get_header_value("Authorization"), role, &key_id)) {
      case Auth::Result::kOk:
        break;
      case Auth::Result::kMissing:
        res.set_header("WWW-Authenticate", "Bearer");
        SetError(res, 401, "unauthorized", "an API key is required: Authorization: Bearer <key>");
        return false;
      case Auth::Result::kUnknown:
        res.set_header("WWW-Authenticate", "Bearer");
        SetError(res, 401, "unauthorized", "unknown API key");
        return false;
      case Auth::Result::kForbidden:
        SetError(res, 403, "forbidden", StrCat("this endpoint needs a key with role ", RoleName(role), " or admin"));
        return false;
    }
    if (rate_limited_endpoint && !auth->Allow(key_id)) {
      rate_limited->Inc();
      res.set_header("Retry-After", "1");
      SetError(res, 429, "rate_limited",
               StrCat("more than ", config.limits.rate_per_key, " requests/s for this key (limits.rate_per_key)"));
      return false;
    }
    return true;
  }

  void Observe(const Decision& d) {
    int outcome = d.status == Decision::Status::kDecided     ? 0
                  : d.status == Decision::Status::kNotScored ? 1
                  : d.status == Decision::Status::kRejected  ? 2
                                                             : 3;
    events_by_outcome[outcome]->Inc();
    if (d.status != Decision::Status::kDecided) return;
    stage_seconds[0]->Observe(static_cast<double>(d.timings.parse_ns) * 1e-9);
    stage_seconds[1]->Observe(static_cast<double>(d.timings.features_ns) * 1e-9);
    stage_seconds[2]->Observe(static_cast<double>(d.timings.model_ns) * 1e-9);
    stage_seconds[3]->Observe(static_cast<double>(d.timings.policy_ns) * 1e-9);
    stage_seconds[4]->Observe(static_cast<double>(d.latency_us) * 1e-6);
    decision_key.assign(d.action);  // reused: no allocation once grown
    decision_key.push_back('\x1f');
    decision_key.append(d.model);
    auto it = decisions_by.find(decision_key);
    if (it == decisions_by.end()) {
      it = decisions_by
               .emplace(decision_key, registry->GetCounter("vigil_decisions_total", "Decisions by action and model version",
                                                  {{"action", d.action}, {"model", d.model}}))
               .first;
    }
    it->second->Inc();
  }

  // One event through the engine under the sequencer. Returns the HTTP status.
  int DecideOne(std::string_view body, bool with_features, std::string* answer) {
    std::lock_guard<std::mutex> lock(decide_mu);
    absl::Status s = engine->Decide(body, &decision, with_features);
    if (!s.ok()) {
      *answer = ErrorJson("unavailable", std::string(s.message()));
      return 503;
    }
    Observe(decision);
    answer->assign(decision.json);
    return decision.http_status;
  }

  void HandleEvents(const httplib::Request& req, httplib::Response& res) {
    if (!Authorize(req, res, Role::kScore, true)) return;
    if (!IsJson(req)) return SetError(res, 415, "unsupported_media_type", "Content-Type must be application/json");
    bool with_features = req.get_param_value("features") == "true";
    std::string answer;
    res.status = DecideOne(req.body, with_features, &answer);
    res.set_content(answer, "application/json");
  }

  // A batch or a label list: a JSON array of events, each answered on its own.
  void HandleMany(const httplib::Request& req, httplib::Response& res, bool labels) {
    if (!Authorize(req, res, labels ? Role::kLabel : Role::kScore, true)) return;
    if (!IsJson(req)) return SetError(res, 415, "unsupported_media_type", "Content-Type must be application/json");
    auto items = SplitBatch(req.body, /*allow_object=*/labels);
    if (!items.ok()) return SetError(res, 400, "invalid_batch", std::string(items.status().message()));
    if (static_cast<int64_t>(items->size()) > config.limits.max_batch) {
      return SetError(res, 413, "batch_too_large",
                      StrCat("a batch of ", items->size(), " events; the limit is ", config.limits.max_batch,
                             " (limits.max_batch)"));
    }
    std::string out = "{\"results\":[";
    std::string answer;
    for (size_t i = 0; i < items->size(); ++i) {
      if (i) out.push_back(',');
      const std::string& ev = (*items)[i];
      int status;
      if (labels && !IsLabelEvent(ev)) {
        status = 400;
        answer = ErrorJson("not_a_label", "POST /v1/labels takes events with \"event_type\": \"label\"");
      } else {
        status = DecideOne(ev, false, &answer);
      }
      out += "{\"status\":";
      out += std::to_string(status);
      out += ",\"answer\":";
      out += answer;
      out.push_back('}');
    }
    out += "]}";
    res.status = 200;
    res.set_content(out, "application/json");
  }
};

HttpServer::HttpServer(Engine* engine, Auth* auth, monitor::Registry* registry, const ServeConfig& config)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.engine = engine;
  m.auth = auth;
  m.registry = registry;
  m.config = config;
  if (!config.tls_cert.empty()) {
    m.server = std::make_unique<httplib::SSLServer>(config.tls_cert.c_str(), config.tls_key.c_str());
  } else {
    m.server = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *m.server;

  for (int e = 0; e < kNumEndpoints; ++e) {
    for (size_t c = 0; c < kCodes.size(); ++c) {
      m.requests[e][c] = registry->GetCounter("vigil_http_requests_total", "HTTP requests by endpoint and status",
                                              {{"endpoint", kEndpointNames[e]}, {"code", std::to_string(kCodes[c])}});
    }
    m.request_seconds[e] = registry->GetHistogram("vigil_http_request_seconds", "HTTP request latency, handler only",
                                                  monitor::LatencyBuckets(), {{"endpoint", kEndpointNames[e]}});
  }
  const char* stages[5] = {"parse", "features", "model", "policy", "total"};
  for (int i = 0; i < 5; ++i) {
    m.stage_seconds[i] = registry->GetHistogram("vigil_decide_stage_seconds",
                                                "Time per stage of a decision (total: Decide from parse to answer)",
                                                monitor::LatencyBuckets(), {{"stage", stages[i]}});
  }
  const char* outcomes[4] = {"decided", "not_scored", "rejected", "retry"};
  for (int i = 0; i < 4; ++i) {
    m.events_by_outcome[i] = registry->GetCounter("vigil_events_total", "Events received, by outcome",
                                                  {{"outcome", outcomes[i]}});
  }
  m.rate_limited = registry->GetCounter("vigil_rate_limited_total", "Requests refused by the per-key rate limit");
  registry->AddCollector([engine](std::string* out) {
    using monitor::MetricType;
    EngineStats st = engine->Stats();
    auto one = [out](const char* name, const char* help, MetricType type, int64_t v) {
      monitor::AppendHeader(out, name, help, type);
      monitor::AppendSample(out, name, {}, v);
    };
    one("vigil_decision_queue_depth", "Decisions waiting for the store", MetricType::kGauge, st.decisions_queued);
    one("vigil_decisions_stored_total", "Decisions written to the store, from the queue or replayed from the journal",
        MetricType::kCounter, st.decisions_stored);
    one("vigil_decisions_journaled_total", "Decisions written to the local journal (store slow or down, or queue full)",
        MetricType::kCounter, st.decisions_journaled);
    one("vigil_decisions_queue_full_total", "Of the journaled decisions: those spilled because the queue was full",
        MetricType::kCounter, st.decisions_queue_full);
    one("vigil_journal_pending", "Decisions in the journal, not yet confirmed in the store", MetricType::kGauge,
        st.journal_pending);
    one("vigil_decisions_lost_total", "Decisions neither the store nor the journal could take (alert on any)",
        MetricType::kCounter, st.decisions_lost);
    one("vigil_decisions_refused_total", "Decisions the store refused as invalid, set aside in the journal's .bad file",
        MetricType::kCounter, st.decisions_refused);
    one("vigil_store_errors_total", "Failed writes to the store", MetricType::kCounter, st.store_errors);
    one("vigil_events_too_late_total", "Events beyond the lateness bound (decided, not applied to features)",
        MetricType::kCounter, st.too_late);
    std::vector<RuleHits> hits = engine->RuleHitCounts();
    if (!hits.empty()) {
      monitor::AppendHeader(out, "vigil_rule_hits_total", "Policy rule hits", MetricType::kCounter);
      for (const RuleHits& h : hits) {
        monitor::AppendSample(out, "vigil_rule_hits_total",
                              {{"event_type", h.event_type}, {"rule", h.rule}, {"action", h.action}}, h.hits);
      }
    }
  });

  s.set_tcp_nodelay(true);
  s.set_keep_alive_max_count(1000000);
  s.set_keep_alive_timeout(5);
  s.set_read_timeout(5, 0);
  s.set_payload_max_length(static_cast<size_t>(config.limits.max_body_bytes));
  size_t threads = static_cast<size_t>(config.limits.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    std::fprintf(stderr, "serve: %s %s failed: %s\n", req.method.c_str(), req.path.c_str(), what.c_str());
    SetError(res, 500, "internal", "the request failed inside vigil; see the server's log");
  });
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    // Statuses httplib sets itself (404, 413, 400 for a malformed request):
    // counted here, since no handler ran.
    if (!res.body.empty()) return;
    impl_->Count(EndpointOf(req.path), res.status, 0);
    if (res.status == 413) {
      SetError(res, 413, "payload_too_large", "the body is larger than limits.max_body_bytes");
    } else if (res.status == 404) {
      SetError(res, 404, "not_found", StrCat("no endpoint ", req.method, " ", req.path, " (docs/api.md)"));
    } else if (res.status == 400 && req.method == "POST" && !req.has_header("Content-Length") &&
               !req.has_header("Transfer-Encoding")) {
      SetError(res, 400, "length_required", "a POST needs a Content-Length, even for an empty body (curl: -d '')");
    } else {
      SetError(res, res.status, "http_error", StrCat("HTTP status ", res.status));
    }
  });

  auto timed = [this](Endpoint e, auto handler) {
    return [this, e, handler](const httplib::Request& req, httplib::Response& res) {
      auto t0 = std::chrono::steady_clock::now();
      handler(req, res);
      impl_->Count(e, res.status,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    };
  };

  s.Post("/v1/events", timed(kEvents, [this](const auto& req, auto& res) { impl_->HandleEvents(req, res); }));
  s.Post("/v1/events:batch", timed(kBatch, [this](const auto& req, auto& res) { impl_->HandleMany(req, res, false); }));
  s.Post("/v1/labels", timed(kLabels, [this](const auto& req, auto& res) { impl_->HandleMany(req, res, true); }));
  s.Get(R"(/v1/decisions/([^/]+))", timed(kDecisions, [this](const httplib::Request& req, httplib::Response& res) {
          if (!impl_->Authorize(req, res, Role::kScore, true)) return;
          auto doc = impl_->engine->GetDecision(req.matches[1].str());
          if (!doc.ok()) {
            bool nf = absl::IsNotFound(doc.status());
            return SetError(res, nf ? 404 : 503, nf ? "not_found" : "unavailable", std::string(doc.status().message()));
          }
          res.set_content(*doc, "application/json");
        }));
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"status\":\"ok\"}", "application/json");
  });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    EngineStats st = impl_->engine->Stats();
    std::string j = "{\"ready\":true,\"store\":";
    AppendJsonString(st.store_error.empty() ? "ok" : StrCat("degraded: ", st.store_error, " (decisions go to the journal)"), &j);
    StrAppend(&j, ",\"keys\":", impl_->auth->num_keys(), "}");
    res.set_content(j, "application/json");
  });
  s.Get("/metrics", timed(kMetrics, [this](const httplib::Request& req, httplib::Response& res) {
          // /metrics takes a key of any role.
          std::string id;
          Auth::Result a = impl_->auth->Authenticate(req.get_header_value("Authorization"), Role::kScore, &id);
          if (a == Auth::Result::kMissing || a == Auth::Result::kUnknown) {
            res.set_header("WWW-Authenticate", "Bearer");
            return SetError(res, 401, "unauthorized", "an API key is required: Authorization: Bearer <key>");
          }
          res.status = 200;
          res.set_content(impl_->registry->Render(), "text/plain; version=0.0.4");
        }));
  s.Post("/v1/admin/reload", timed(kReload, [this](const httplib::Request& req, httplib::Response& res) {
           if (!impl_->Authorize(req, res, Role::kAdmin, false)) return;
           absl::Status st = impl_->engine->Reload();
           absl::Status keys = LoadKeys();
           if (!st.ok() && !absl::IsUnavailable(st)) {
             return SetError(res, 409, "reload_failed", StrCat(st.message(), " (the running models and policy stay)"));
           }
           std::string j = "{\"reloaded\":true";
           if (!st.ok()) {
             j += ",\"warning\":";
             AppendJsonString(std::string(st.message()), &j);
           }
           if (!keys.ok()) {
             j += ",\"keys_error\":";
             AppendJsonString(std::string(keys.message()), &j);
           }
           j += ",\"models\":";
           j += impl_->engine->ModelsJson();
           j += "}";
           res.set_content(j, "application/json");
         }));
  s.Get("/v1/admin/models", timed(kModels, [this](const httplib::Request& req, httplib::Response& res) {
          if (!impl_->Authorize(req, res, Role::kAdmin, false)) return;
          res.set_content(impl_->engine->ModelsJson(), "application/json");
        }));
}

HttpServer::~HttpServer() { Stop(); }

absl::Status HttpServer::LoadKeys() {
  std::vector<store::KeyRow> keys;
  if (!impl_->config.keys_file.empty()) {
    VIGIL_ASSIGN_OR_RETURN(keys, ReadKeysFile(impl_->config.keys_file));
  } else {
    VIGIL_ASSIGN_OR_RETURN(auto st, store::OpenStore(impl_->config.store));
    VIGIL_ASSIGN_OR_RETURN(keys, st->Keys());
  }
  impl_->auth->SetKeys(std::move(keys));
  return absl::OkStatus();
}

absl::Status HttpServer::Bind(const std::string& host, int port) {
  httplib::Server& s = *impl_->server;
  if (!s.is_valid()) return absl::InvalidArgumentError("the TLS certificate or key could not be loaded");
  if (port == 0) {
    port_ = s.bind_to_any_port(host);
    if (port_ < 0) return absl::UnavailableError(StrCat("cannot listen on ", host, " (any port)"));
  } else {
    if (!s.bind_to_port(host, port)) return absl::UnavailableError(StrCat("cannot listen on ", host, ":", port, " (in use?)"));
    port_ = port;
  }
  return absl::OkStatus();
}

void HttpServer::Run() { impl_->server->listen_after_bind(); }

void HttpServer::Stop() {
  if (impl_ && impl_->server && impl_->server->is_running()) impl_->server->stop();
}

}  // namespace vigil::serve
