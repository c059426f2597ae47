#include "serve/http_server.h"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "core/strings.h"
#include "http/server.h"
#include "serve/batch.h"
#include "serve/json_writer.h"
#include "store/store.h"

namespace vigil::serve {
namespace {

using Clock = std::chrono::steady_clock;
using Reply = http::Response;

enum Endpoint : int {
  kEvents,
  kBatch,
  kLabels,
  kDecisions,
  kMetrics,
  kReload,
  kModels,
  kSave,
  kOther,
  kNumEndpoints
};
constexpr const char* kEndpointNames[kNumEndpoints] = {
    "events",       "events_batch", "labels",     "decisions", "metrics",
    "admin_reload", "admin_models", "admin_save", "other"};
// Every status an answer can have: ours, and those the HTTP layer gives
// itself (400, 411, 413, 417, 431, 501; see http/server.h).
constexpr std::array<int, 16> kCodes = {200, 400, 401, 403, 404, 405, 409, 411,
                                        413, 415, 417, 429, 431, 500, 501, 503};

// Requests waiting for the control-plane worker, all loops together; beyond
// it a request is refused with 503 rather than queued without bound.
constexpr size_t kMaxPendingJobs = 256;
// A connection with no byte read or written for this long is closed: in a
// request, in an answer, or idle between requests.
constexpr int kTimeoutSeconds = 5;
// Request line and headers together.
constexpr uint32_t kMaxHeaderBytes = 16 * 1024;

// {"error": ..., "event_id": ... (when not empty), "message": ...}
void AppendErrorJson(std::string_view error, std::string_view message, std::string* j,
                     std::string_view event_id = {}) {
  j->push_back('{');
  AppendKey("error", j);
  AppendJsonString(error, j);
  if (!event_id.empty()) {
    AppendKey("event_id", j);
    AppendJsonString(event_id, j);
  }
  AppendKey("message", j);
  AppendJsonString(message, j);
  j->push_back('}');
}

// An error answer: status and JSON body.
void SetError(Reply* r, int status, std::string_view error, std::string_view message) {
  r->status = status;
  r->content_type = "application/json";
  r->body.clear();
  AppendErrorJson(error, message, &r->body);
}

Endpoint EndpointOf(std::string_view path) {
  if (path == "/v1/events") return kEvents;
  if (path == "/v1/events:batch") return kBatch;
  if (path == "/v1/labels") return kLabels;
  if (path.rfind("/v1/decisions/", 0) == 0) return kDecisions;
  if (path == "/metrics") return kMetrics;
  if (path == "/v1/admin/reload") return kReload;
  if (path == "/v1/admin/models") return kModels;
  if (path == "/v1/admin/save") return kSave;
  return kOther;
}

// Content-Type: application/json, the media type compared without regard to
// case and parameters (`; charset=utf-8`) allowed, as RFC 9110 has it.
bool IsJson(const http::Request& req) {
  const std::string_view type = req.Header("Content-Type");
  const std::string_view media = type.substr(0, type.find(';'));
  return absl::EqualsIgnoreCase(
      absl::StripAsciiWhitespace(absl::string_view(media.data(), media.size())),
      "application/json");
}

// ?features=true
bool WantsFeatures(const http::Request& req) {
  std::string_view rest = req.query;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view param = rest.substr(0, amp);
    if (param == "features=true") return true;
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return false;
}

http::Options HttpOptions(const ServeConfig& config) {
  http::Options o;
  o.threads = static_cast<int>(config.limits.threads);
  o.max_body_bytes = static_cast<uint64_t>(config.limits.max_body_bytes);
  o.max_header_bytes = kMaxHeaderBytes;
  o.idle_timeout_ms = kTimeoutSeconds * 1000;
  o.tls_cert = config.tls_cert;
  o.tls_key = config.tls_key;
  o.log_name = "serve";
  return o;
}

}  // namespace

// The HTTP layer (http::Server) runs `limits.threads` event loops; a request
// is read, decided and answered on one of them, with no hand-off. What may
// block or take long (a stored decision read from the store, a reload,
// rendering /metrics) goes to one control-plane worker thread, which
// answers it through http::Server::Answer.
struct HttpServer::Impl : http::Handler {
  // A request answered by the worker thread.
  struct Job {
    http::Ticket ticket;
    Endpoint endpoint;
    Clock::time_point t0;
    std::string what;  // method and path, for the log
    std::function<void(Reply*)> work;
    Reply reply;
  };
  // What a loop's requests reuse: no allocation once grown.
  struct Scratch {
    std::string key_id, answer;
    Role role = Role::kScore;  // the key's, once Authorize passed
  };

  Impl(Engine* e, Auth* a, monitor::Registry* r, const ServeConfig& c)
      : engine(e),
        auth(a),
        registry(r),
        config(c),
        server(this, HttpOptions(c)),
        scratch(static_cast<size_t>(std::max<int64_t>(1, c.limits.threads))) {}

  Engine* engine;
  Auth* auth;
  monitor::Registry* registry;
  ServeConfig config;
  http::Server server;
  std::vector<Scratch> scratch;  // by loop

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

  std::mutex work_mu;
  std::condition_variable work_cv;
  std::deque<std::unique_ptr<Job>> jobs;  // under work_mu
  bool work_stop = false;                 // under work_mu
  std::thread worker;

  void Count(Endpoint e, int status, double seconds) {
    for (size_t i = 0; i < kCodes.size(); ++i) {
      if (kCodes[i] == status) {
        requests[e][i]->Inc();
        break;
      }
    }
    request_seconds[e]->Observe(seconds);
  }

  // Replaces the keys, or on failure leaves them as they were. `at_start`:
  // a keys file that does not exist yet holds no keys (`vigil keys create`
  // makes it). On a reload it is an error like a malformed line: a file
  // moved away must not lock every key out, admin's included, until a
  // restart.
  absl::Status LoadKeys(bool at_start) {
    std::vector<store::KeyRow> keys;
    if (!config.keys_file.empty()) {
      auto rows = ReadKeysFile(config.keys_file);
      if (rows.ok()) {
        keys = std::move(*rows);
      } else if (!at_start || !absl::IsNotFound(rows.status())) {
        return rows.status();
      }
    } else {
      VIGIL_ASSIGN_OR_RETURN(auto st, store::OpenStore(config.store));
      VIGIL_ASSIGN_OR_RETURN(keys, st->Keys());
    }
    // No key at all would lock out every client, the admin who could reload
    // again included, until a restart: more likely a file caught while an
    // editor or a tool rewrote it.
    if (!at_start && keys.empty() && auth->num_keys() > 0) {
      return absl::FailedPreconditionError(StrCat(
          config.keys_file.empty() ? std::string("the store") : config.keys_file,
          " holds no key; a reload never removes the last one (every client, admin included, "
          "would be refused until a restart)"));
    }
    auth->SetKeys(std::move(keys));
    return absl::OkStatus();
  }

  // Authenticates for `role`; on failure fills the reply and returns false.
  bool Authorize(const http::Request& req, Scratch& sc, Reply& r, Role role,
                 bool rate_limited_endpoint) {
    switch (auth->Authenticate(req.Header("Authorization"), role, &sc.key_id, &sc.role)) {
      case Auth::Result::kOk:
        break;
      case Auth::Result::kMissing:
        SetError(&r, 401, "unauthorized", "an API key is required: Authorization: Bearer <key>");
        r.www_authenticate = "Bearer";
        return false;
      case Auth::Result::kUnknown:
        SetError(&r, 401, "unauthorized", "unknown API key");
        r.www_authenticate = "Bearer";
        return false;
      case Auth::Result::kForbidden:
        SetError(&r, 403, "forbidden",
                 role == Role::kAdmin
                     ? std::string("this endpoint needs a key with role admin")
                     : StrCat("this endpoint needs a key with role ", RoleName(role), " or admin"));
        return false;
    }
    if (rate_limited_endpoint && !auth->Allow(sc.key_id)) {
      rate_limited->Inc();
      SetError(&r, 429, "rate_limited",
               StrCat("more than ", config.limits.rate_per_key,
                      " requests/s for this key (limits.rate_per_key)"));
      r.retry_after = "1";
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
    decision_key.push_back('\x1f');
    decision_key.append(d.policy);
    auto it = decisions_by.find(decision_key);
    if (it == decisions_by.end()) {
      it = decisions_by
               .emplace(decision_key,
                        registry->GetCounter(
                            "vigil_decisions_total",
                            "Decisions by action, model version and policy version",
                            {{"action", d.action}, {"model", d.model}, {"policy", d.policy}}))
               .first;
    }
    it->second->Inc();
  }

  // One event through the engine under the sequencer. Returns the HTTP
  // status. Without `may_label`, a label event is refused (403).
  int DecideOne(std::string_view body, bool with_features, bool may_label, std::string* answer) {
    std::lock_guard<std::mutex> lock(decide_mu);
    absl::Status s = engine->Decide(body, &decision, with_features, may_label);
    if (!s.ok()) {
      answer->clear();
      AppendErrorJson("unavailable", std::string(s.message()), answer);
      return 503;
    }
    Observe(decision);
    // A swap, not a copy, under the lock: every Decide that returns OK
    // rewrites Decision::json from its start (Render, Reject and RenderRetry
    // assign it; Expand too), so what the engine's buffer holds before does
    // not matter. The buffers trade places; once each has grown, none
    // allocates.
    answer->swap(decision.json);
    return decision.http_status;
  }

  void HandleEvents(const http::Request& req, Scratch& sc, Reply& r) {
    if (!Authorize(req, sc, r, Role::kScore, true)) return;
    if (!IsJson(req))
      return SetError(&r, 415, "unsupported_media_type", "Content-Type must be application/json");
    // Labels need role label or admin, whatever the endpoint: a score key's
    // label event is refused by the engine once it knows the event's type.
    r.status = DecideOne(req.body, WantsFeatures(req), sc.role != Role::kScore, &r.body);
  }

  // A batch or a label list: a JSON array of events, each answered on its own.
  void HandleMany(const http::Request& req, Scratch& sc, Reply& r, bool labels) {
    if (!Authorize(req, sc, r, labels ? Role::kLabel : Role::kScore, true)) return;
    if (!IsJson(req))
      return SetError(&r, 415, "unsupported_media_type", "Content-Type must be application/json");
    auto items = SplitBatch(req.body, /*allow_object=*/labels);
    if (!items.ok()) {
      // Not events: the body as a whole goes to the dead-letter file, as an
      // invalid single event does. Under the sequencer: the file has one
      // writer, Decide's thread.
      std::string why(items.status().message());
      {
        std::lock_guard<std::mutex> lock(decide_mu);
        engine->RejectBody(req.body, labels ? "POST /v1/labels" : "POST /v1/events:batch", why);
      }
      return SetError(&r, 400, "invalid_batch", why);
    }
    if (static_cast<int64_t>(items->size()) > config.limits.max_batch) {
      return SetError(&r, 413, "batch_too_large",
                      StrCat("a batch of ", items->size(), " events; the limit is ",
                             config.limits.max_batch, " (limits.max_batch)"));
    }
    // ?features=true: for each decision, as for one event alone.
    const bool features = WantsFeatures(req);
    std::string& out = r.body;
    out = "{\"results\":[";
    std::string& answer = sc.answer;
    for (size_t i = 0; i < items->size(); ++i) {
      if (i) out.push_back(',');
      const std::string& ev = (*items)[i];
      int status;
      if (labels && !IsLabelEvent(ev)) {
        status = 400;
        // A 400 is dead-lettered, this one too (not an event of this
        // endpoint, so not decided: not in Decide's counts).
        std::string event_id;
        {
          std::lock_guard<std::mutex> lock(decide_mu);
          event_id = engine->RejectBody(ev, "POST /v1/labels",
                                        StrCat("element ", i,
                                               " is not a label event: POST /v1/labels takes "
                                               "events with \"event_type\": \"label\""),
                                        /*not_a_label=*/true);
        }
        answer.clear();
        AppendErrorJson("not_a_label",
                        "POST /v1/labels takes events with \"event_type\": \"label\"", &answer,
                        event_id);
      } else {
        status = DecideOne(ev, features, sc.role != Role::kScore, &answer);
      }
      StrAppend(&out, "{\"status\":", status, ",\"answer\":", answer, "}");
    }
    out += "]}";
    r.status = 200;
  }

  // Returns true when the rendering went to the worker: it takes long
  // enough (every series, the engine's stats) to stall the loop's requests.
  bool HandleMetrics(const http::Request& req, http::Ticket t, Scratch& sc, Reply& r,
                     Clock::time_point t0, std::string what) {
    // /metrics takes a key of any role.
    Auth::Result a = auth->Authenticate(req.Header("Authorization"), Role::kScore, &sc.key_id);
    if (a == Auth::Result::kMissing || a == Auth::Result::kUnknown) {
      SetError(&r, 401, "unauthorized", "an API key is required: Authorization: Bearer <key>");
      r.www_authenticate = "Bearer";
      return false;
    }
    return Defer(t, r, kMetrics, t0, std::move(what), [this](Reply* out) {
      out->content_type = "text/plain; version=0.0.4";
      out->body = registry->Render();
    });
  }

  // 503 while the event log cannot take events (Engine::Ready), so that a
  // load balancer sends them elsewhere; a store that is down only degrades
  // (decisions go to the journal).
  void HandleReady(Reply& r) {
    EngineStats st = engine->Stats();
    const absl::Status ready = engine->Ready();
    std::string& j = r.body;
    StrAppend(&j, "{\"ready\":", ready.ok() ? "true" : "false", ",\"event_log\":");
    AppendJsonString(ready.ok() ? (st.event_log_error.empty() ? std::string("ok")
                                                              : StrCat("retrying: ", st.event_log_error))
                                : std::string(ready.message()),
                     &j);
    j += ",\"store\":";
    AppendJsonString(st.store_error.empty() ? "ok" : StrCat("degraded: ", st.store_error, " (decisions go to the journal)"), &j);
    StrAppend(&j, ",\"keys\":", auth->num_keys(), "}");
    if (!ready.ok()) r.status = 503;
  }

  // Work that may block: stored decisions (the store) and reloads (models,
  // policy, keys from disk or the store).
  static void GetStored(Impl* m, const std::string& id, Reply* r) {
    auto doc = m->engine->GetDecision(id);
    if (!doc.ok()) {
      bool nf = absl::IsNotFound(doc.status());
      return SetError(r, nf ? 404 : 503, nf ? "not_found" : "unavailable",
                      std::string(doc.status().message()));
    }
    r->body = std::move(*doc);
  }

  // A save of the state in the background, as event_log save_state_s
  // starts one: between two decisions (under the sequencer), the fork's
  // pause on this loop.
  void StartSave(Reply& r) {
    absl::Status st;
    {
      std::lock_guard<std::mutex> lock(decide_mu);
      st = engine->SaveStateInBackground();
    }
    if (st.ok()) {
      r.body = "{\"saving\":true}";
    } else if (absl::IsFailedPrecondition(st)) {
      SetError(&r, 409, "save_not_started", std::string(st.message()));
    } else {
      SetError(&r, 503, "unavailable", std::string(st.message()));
    }
  }

  static void DoReload(Impl* m, Reply* r) {
    absl::Status st = m->engine->Reload();
    absl::Status keys = m->LoadKeys(/*at_start=*/false);
    if (!st.ok() && !absl::IsUnavailable(st)) {
      return SetError(r, 409, "reload_failed",
                      StrCat(st.message(), " (the running models and policy stay)"));
    }
    std::string& j = r->body;
    j = "{\"reloaded\":true";
    if (!st.ok()) {
      j += ",\"warning\":";
      AppendJsonString(std::string(st.message()), &j);
    }
    if (!keys.ok()) {
      j += ",\"keys_error\":";
      AppendJsonString(std::string(keys.message()), &j);
    }
    j += ",\"models\":";
    j += m->engine->ModelsJson();
    j += "}";
  }

  // Hands the request to the worker thread, which answers it. Returns
  // false, with the reply a 503, when kMaxPendingJobs wait.
  bool Defer(http::Ticket t, Reply& r, Endpoint e, Clock::time_point t0, std::string what,
             std::function<void(Reply*)> work) {
    auto job = std::make_unique<Job>();
    job->ticket = t;
    job->endpoint = e;
    job->t0 = t0;
    job->what = std::move(what);
    job->work = std::move(work);
    {
      std::lock_guard<std::mutex> lock(work_mu);
      if (jobs.size() >= kMaxPendingJobs) {
        SetError(&r, 503, "unavailable",
                 StrCat(kMaxPendingJobs,
                        " requests already wait for the control plane (stored decisions, "
                        "reloads, /metrics); try again shortly"));
        r.retry_after = "1";
        return false;
      }
      jobs.push_back(std::move(job));
    }
    work_cv.notify_one();
    return true;
  }

  // The event id of a raw (undecoded) path /v1/decisions/{id}, its one
  // segment percent-decoded into *id; false when the path has another shape.
  static bool DecisionId(std::string_view raw, std::string* id) {
    constexpr std::string_view kPrefix = "/v1/decisions/";
    if (raw.size() <= kPrefix.size() || raw.substr(0, kPrefix.size()) != kPrefix) return false;
    const std::string_view segment = raw.substr(kPrefix.size());
    if (segment.find('/') != std::string_view::npos) return false;
    *id = http::PercentDecode(segment);
    return !id->empty();
  }

  // Routes one request. Returns true when it went to the worker; otherwise
  // the reply is filled, and `*counted` says whether it goes to the
  // per-endpoint metrics (everything but the probes).
  bool Route(const http::Request& req, http::Ticket t, Reply& r, Clock::time_point t0,
             Endpoint* endpoint, bool* counted) {
    Scratch& sc = scratch[t.loop];
    std::string decoded;
    std::string_view path = req.path;
    if (path.find('%') != std::string_view::npos) {
      decoded = http::PercentDecode(path);
      path = decoded;
    }
    Endpoint e = *endpoint = EndpointOf(path);
    const bool get = req.method == "GET" || req.method == "HEAD";
    const bool post = req.method == "POST";
    if (post && e == kEvents) {
      HandleEvents(req, sc, r);
    } else if (post && e == kBatch) {
      HandleMany(req, sc, r, false);
    } else if (post && e == kLabels) {
      HandleMany(req, sc, r, true);
    } else if (get && path == "/healthz") {
      *counted = false;
      r.body = "{\"status\":\"ok\"}";
    } else if (get && path == "/readyz") {
      *counted = false;
      HandleReady(r);
    } else if (get && e == kMetrics) {
      return HandleMetrics(req, t, sc, r, t0, StrCat(req.method, " ", path));
    } else if (get && e == kModels) {
      if (Authorize(req, sc, r, Role::kAdmin, false)) r.body = engine->ModelsJson();
    } else if (std::string id; get && e == kDecisions && DecisionId(req.path, &id)) {
      // (The id decoded from the raw path's one segment: an id may hold a
      // '/', sent as %2F.)
      if (!Authorize(req, sc, r, Role::kScore, true)) return false;
      return Defer(t, r, e, t0, StrCat(req.method, " ", path),
                   [this, id = std::move(id)](Reply* out) { GetStored(this, id, out); });
    } else if (post && e == kReload) {
      if (!Authorize(req, sc, r, Role::kAdmin, false)) return false;
      return Defer(t, r, e, t0, StrCat(req.method, " ", path),
                   [this](Reply* out) { DoReload(this, out); });
    } else if (post && e == kSave) {
      if (Authorize(req, sc, r, Role::kAdmin, false)) StartSave(r);
    } else {
      SetError(&r, 404, "not_found",
               StrCat("no endpoint ", req.method, " ", path, " (docs/api.md)"));
    }
    return false;
  }

  // http::Handler: every request read in full.
  bool Handle(const http::Request& req, http::Ticket t, Reply* r) override {
    Clock::time_point t0 = Clock::now();
    Endpoint e = kOther;
    bool counted = true;
    try {
      if (Route(req, t, *r, t0, &e, &counted)) return false;  // the worker answers it
    } catch (const std::exception& ex) {
      Failed(req, ex.what(), r);
    } catch (...) {
      Failed(req, "unknown exception", r);
    }
    if (counted) Count(e, r->status, std::chrono::duration<double>(Clock::now() - t0).count());
    return true;
  }

  static void Failed(const http::Request& req, const char* what, Reply* r) {
    std::fprintf(stderr, "serve: %.*s %.*s failed: %s\n", static_cast<int>(req.method.size()),
                 req.method.data(), static_cast<int>(req.target.size()), req.target.data(), what);
    r->Reset();
    SetError(r, 500, "internal", "the request failed inside vigil; see the server's log");
  }

  // What the HTTP layer answered itself (a request it could not parse or
  // frame, a body over the limit...): counted under its endpoint when the
  // request line was read.
  void AnsweredByServer(std::string_view path, int status) override {
    Count(path.empty() ? kOther : EndpointOf(path), status, 0);
  }

  void WorkerMain() {
    for (;;) {
      std::unique_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(work_mu);
        work_cv.wait(lock, [this] { return work_stop || !jobs.empty(); });
        if (jobs.empty()) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      try {
        job->work(&job->reply);
      } catch (const std::exception& ex) {
        std::fprintf(stderr, "serve: %s failed: %s\n", job->what.c_str(), ex.what());
        SetError(&job->reply, 500, "internal",
                 "the request failed inside vigil; see the server's log");
      } catch (...) {
        std::fprintf(stderr, "serve: %s failed: unknown exception\n", job->what.c_str());
        SetError(&job->reply, 500, "internal",
                 "the request failed inside vigil; see the server's log");
      }
      Count(job->endpoint, job->reply.status,
            std::chrono::duration<double>(Clock::now() - job->t0).count());
      server.Answer(job->ticket, std::move(job->reply));
    }
  }

  // Finishes the jobs queued, then ends the worker thread.
  void StopWorker() {
    {
      std::lock_guard<std::mutex> lock(work_mu);
      work_stop = true;
    }
    work_cv.notify_all();
    if (worker.joinable()) worker.join();
  }
};

HttpServer::HttpServer(Engine* engine, Auth* auth, monitor::Registry* registry,
                       const ServeConfig& config)
    : impl_(std::make_unique<Impl>(engine, auth, registry, config)) {
  Impl& m = *impl_;
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
    auto one = [out](const char* name, const char* help, MetricType type, auto v) {
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
    one("vigil_journal_pending", "Decisions and labels in the journal, not yet confirmed in the store", MetricType::kGauge,
        st.journal_pending);
    one("vigil_decisions_lost_total", "Decisions neither the store nor the journal could take (alert on any)",
        MetricType::kCounter, st.decisions_lost);
    one("vigil_decisions_refused_total", "Decisions the store refused as invalid, set aside in the journal's .bad file",
        MetricType::kCounter, st.decisions_refused);
    one("vigil_store_errors_total", "Failed writes to the store", MetricType::kCounter, st.store_errors);
    one("vigil_labels_stored_total", "Labels written to the store, from the queue or replayed from the journal",
        MetricType::kCounter, st.labels_stored);
    one("vigil_labels_journaled_total", "Labels written to the local journal (store slow or down, or queue full)",
        MetricType::kCounter, st.labels_journaled);
    one("vigil_labels_lost_total", "Labels neither the store nor the journal could take (alert on any)",
        MetricType::kCounter, st.labels_lost);
    one("vigil_decision_writer_boosts_total",
        "Times the decision writer, at idle priority, fell half a queue behind and was given an ordinary one",
        MetricType::kCounter, st.decision_writer_boosts);
    one("vigil_events_too_late_total", "Events beyond the lateness bound (decided, not applied to features)",
        MetricType::kCounter, st.too_late);
    one("vigil_decisions_recovered_total",
        "Decisions the last run answered but did not store (a crash), made again from the event "
        "log at start",
        MetricType::kCounter, st.decisions_recovered);
    one("vigil_labels_recovered_total",
        "Labels the last run answered but did not store (a crash), stored from the event log at "
        "start",
        MetricType::kCounter, st.labels_recovered);
    one("vigil_retries_unavailable_total",
        "Retried scored events whose decision was not stored (answered 409: lost in a crash, or no "
        "longer kept)",
        MetricType::kCounter, st.retries_unavailable);
    one("vigil_feature_entries_bucketed_total",
        "Feature entries of busy keys merged into time buckets (the spec's "
        "limits.max_entries_per_key): windows "
        "reaching them are approximate",
        MetricType::kCounter, st.entries_bucketed);
    one("vigil_event_log_errors_total", "Events the event log could not take, answered 503 (alert on any)",
        MetricType::kCounter, st.event_log_errors);
    one("vigil_dead_letters_total",
        "Rejected events and batch bodies written to the dead-letter file", MetricType::kCounter,
        st.dead_letters);
    one("vigil_dead_letters_dropped_total",
        "Rejected events the dead-letter file could not take (the disk was full; alert on any)", MetricType::kCounter,
        st.dead_letters_dropped);
    one("vigil_state_saves_total", "Saves of the feature state completed (event_log save_state_s, and at a stop)",
        MetricType::kCounter, st.state_saves);
    one("vigil_state_save_errors_total", "Saves of the feature state that failed (alert on any)", MetricType::kCounter,
        st.state_save_errors);
    one("vigil_state_last_save_timestamp_seconds",
        "When the newest saved feature state was written (0: none; alert when old)", MetricType::kGauge,
        static_cast<double>(st.state_last_save_ms) / 1000);
    one("vigil_state_last_save_seconds", "How long the last save of the feature state took", MetricType::kGauge,
        st.state_last_save_seconds);
    one("vigil_state_last_fork_seconds", "The pause the last background save's fork cost the deciding thread",
        MetricType::kGauge, static_cast<double>(st.state_last_fork_us) / 1e6);
    std::vector<RuleHits> hits = engine->RuleHitCounts();
    if (!hits.empty()) {
      monitor::AppendHeader(out, "vigil_rule_hits_total", "Policy rule hits", MetricType::kCounter);
      for (const RuleHits& h : hits) {
        monitor::AppendSample(out, "vigil_rule_hits_total",
                              {{"event_type", h.event_type}, {"rule", h.rule}, {"action", h.action}}, h.hits);
      }
    }
  });
}

HttpServer::~HttpServer() {
  Stop();
  impl_->StopWorker();
}

absl::Status HttpServer::LoadKeys() { return impl_->LoadKeys(/*at_start=*/true); }

absl::Status HttpServer::Check(const std::string& host) {
  Impl& m = *impl_;
  // The keys file. (Keys kept in the store are not read: opening the store
  // makes its tables, and a check changes nothing.)
  if (!m.config.keys_file.empty()) VIGIL_RETURN_IF_ERROR(m.LoadKeys(/*at_start=*/true));
  return http::Check(HttpOptions(m.config), host, host);
}

absl::Status HttpServer::Bind(const std::string& host, int port) {
  VIGIL_RETURN_IF_ERROR(impl_->server.Bind(host, port));
  port_ = impl_->server.port();
  return absl::OkStatus();
}

void HttpServer::Run() {
  Impl& m = *impl_;
  if (port_ == 0) return;
  m.worker = std::thread([&m] { m.WorkerMain(); });
  m.server.Run();
  m.StopWorker();
}

void HttpServer::Stop() { impl_->server.Stop(); }

}  // namespace vigil::serve
