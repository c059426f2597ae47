#include "serve/http_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "core/strings.h"
#include "serve/batch.h"
#include "serve/json_writer.h"
#include "store/store.h"

namespace vigil::serve {
namespace {

using Clock = std::chrono::steady_clock;

enum Endpoint : int { kEvents, kBatch, kLabels, kDecisions, kMetrics, kReload, kModels, kOther, kNumEndpoints };
constexpr const char* kEndpointNames[kNumEndpoints] = {"events", "events_batch", "labels", "decisions",
                                                       "metrics", "admin_reload", "admin_models", "other"};
// Every status an answer can have: ours, and those evhttp gives itself
// (400, 413, 417, 501; see OnOutput).
constexpr std::array<int, 15> kCodes = {200, 400, 401, 403, 404, 405, 409, 411,
                                        413, 415, 417, 429, 500, 501, 503};

// Request line and headers together; evhttp answers 400 beyond it.
constexpr ev_ssize_t kMaxHeaderBytes = 16 * 1024;
// What a plain connection reads ahead while an answer is written. evhttp
// keeps reading then, without a callback, so a client pipelining requests
// and not reading the answers had the server buffer gigabytes. The mark is
// set only while the connection's output buffer holds something (our
// answers and evhttp's own pages alike; OnOutputWatermark): reading a
// request, evhttp needs a whole body, or a whole chunk, buffered first, and
// a mark below that would suspend the connection for good (a suspended read
// has no timeout). While the answer waits, the write timeout applies. Not
// on TLS: libevent 2.1's OpenSSL bufferevent does not read again what it
// decrypted while suspended, and pipelined requests were dropped.
constexpr size_t kMaxReadAheadBytes = 4 * kMaxHeaderBytes;
// Requests waiting for the control-plane worker, all loops together; beyond
// it a request is refused with 503 rather than queued without bound.
constexpr size_t kMaxPendingJobs = 256;
// A connection with no byte read or written for this long is closed: in a
// request, in an answer, or idle between requests. (An idle timeout only:
// libevent 2.1 has no deadline for a whole request. docs/api.md says so.)
constexpr int kTimeoutSeconds = 5;

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

const char* MethodName(evhttp_cmd_type m) {
  switch (m) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
  }
  return "?";
}

// What a handler answers. One per loop thread, reused: the hot path's answer
// keeps its buffer.
struct Reply {
  int status = 200;
  const char* content_type = "application/json";
  const char* www_authenticate = nullptr;  // on 401
  const char* retry_after = nullptr;       // on 429 and 503
  bool close = false;                      // end the connection after this answer
  std::string body;

  void Reset() {
    status = 200;
    content_type = "application/json";
    www_authenticate = nullptr;
    retry_after = nullptr;
    close = false;
    body.clear();
  }
  void Error(int s, std::string_view error, std::string_view message) {
    status = s;
    content_type = "application/json";
    body.clear();
    AppendErrorJson(error, message, &body);
  }
};

std::string_view Header(evhttp_request* req, const char* name) {
  const char* v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
  return v ? std::string_view(v) : std::string_view();
}

// Why the end of the request's body is in doubt, or null when it is not
// (RFC 9112, 5.1 and 6.3). evhttp takes one reading of the headers; a proxy
// in front may take another, and what one reads as body the other reads as a
// request of its own (request smuggling). So: two Content-Length headers
// that differ, one beside a Transfer-Encoding, a Transfer-Encoding other
// than chunked (evhttp would read no body, and the body as a request), a
// field name with white space in it ("Content-Length : 5" is no
// Content-Length to evhttp), or a body on HEAD or TRACE (evhttp reads none
// for them). Answered 400 and the connection closed.
const char* FramingError(evhttp_request* req) {
  const evkeyvalq* h = evhttp_request_get_input_headers(req);
  const char* length = nullptr;
  const char* transfer_encoding = nullptr;
  for (const evkeyval* kv = h->tqh_first; kv != nullptr; kv = kv->next.tqe_next) {
    if (std::strpbrk(kv->key, " \t") != nullptr) return "a header field name holds white space";
    if (absl::EqualsIgnoreCase(kv->key, "Transfer-Encoding")) transfer_encoding = kv->value;
    if (!absl::EqualsIgnoreCase(kv->key, "Content-Length")) continue;
    if (length != nullptr && std::strcmp(length, kv->value) != 0)
      return "Content-Length given twice with different values";
    length = kv->value;
  }
  // (libevent 2.1 reads no body for these two.)
  const evhttp_cmd_type method = evhttp_request_get_command(req);
  const bool bodiless = method == EVHTTP_REQ_HEAD || method == EVHTTP_REQ_TRACE;
  if (transfer_encoding == nullptr) {
    if (length == nullptr || !bodiless) return nullptr;
    const absl::string_view n = absl::StripAsciiWhitespace(length);
    return n.find_first_not_of('0') == absl::string_view::npos && !n.empty()
               ? nullptr
               : "a body on a HEAD or TRACE request";
  }
  if (length != nullptr) return "Content-Length beside a Transfer-Encoding";
  if (!absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(transfer_encoding), "chunked")) {
    return "a Transfer-Encoding other than chunked";
  }
  if (bodiless) return "a body on a HEAD or TRACE request";
  return nullptr;
}

// Content-Type: application/json, the media type compared without regard to
// case and parameters (`; charset=utf-8`) allowed, as RFC 9110 has it.
bool IsJson(evhttp_request* req) {
  const std::string_view type = Header(req, "Content-Type");
  const std::string_view media = type.substr(0, type.find(';'));
  return absl::EqualsIgnoreCase(
      absl::StripAsciiWhitespace(absl::string_view(media.data(), media.size())),
      "application/json");
}

// The reason phrase of the status line, where libevent 2.1's own table has
// none ("Client Error" for a 429).
const char* ReasonPhrase(int status) { return status == 429 ? "Too Many Requests" : nullptr; }

// ?features=true
bool WantsFeatures(evhttp_request* req) {
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* q = uri ? evhttp_uri_get_query(uri) : nullptr;
  if (!q) return false;
  std::string_view rest(q);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view param = rest.substr(0, amp);
    if (param == "features=true") return true;
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return false;
}

// The body, contiguous; valid until the request is answered.
std::string_view Body(evhttp_request* req) {
  evbuffer* b = evhttp_request_get_input_buffer(req);
  size_t n = evbuffer_get_length(b);
  if (n == 0) return {};
  // One chunk already unless the body came in pieces: no copy then.
  return std::string_view(reinterpret_cast<const char*>(evbuffer_pullup(b, -1)), n);
}

std::string OpenSslErrors() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

// The addresses to listen on at host:port (freeaddrinfo them); `where`
// names them in the error.
absl::StatusOr<addrinfo*> ListenAddresses(const std::string& host, int port,
                                          const std::string& where) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
      rc != 0) {
    return absl::UnavailableError(StrCat("cannot listen on ", where, ": ", gai_strerror(rc)));
  }
  return found;
}

// The listening socket, non-blocking, shared by every loop.
absl::StatusOr<int> ListenOn(const std::string& host, int port) {
  std::string where = port == 0 ? StrCat(host, " (any port)") : StrCat(host, ":", port);
  VIGIL_ASSIGN_OR_RETURN(addrinfo* const found, ListenAddresses(host, port, where));
  std::string last = "no address";
  for (addrinfo* a = found; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    // Linux gives accepted sockets the listening socket's TCP_NODELAY: an
    // answer leaves as soon as it is written, not after the client's ACK.
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) {
      freeaddrinfo(found);
      return fd;
    }
    last = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  return absl::UnavailableError(StrCat("cannot listen on ", where, ": ", last));
}

// One descriptor per connection: the soft limit on open files (often 1024)
// raised to the hard one. Failing is not fatal: the server runs with fewer.
void RaiseOpenFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    std::fprintf(stderr, "serve: warning: cannot read the open-file limit: %s\n", std::strerror(errno));
    return;
  }
  if (lim.rlim_cur >= lim.rlim_max) return;
  rlim_t was = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    std::fprintf(stderr, "serve: warning: cannot raise the open-file limit from %llu to %llu: %s\n",
                 static_cast<unsigned long long>(was), static_cast<unsigned long long>(lim.rlim_max),
                 std::strerror(errno));
  }
}

int LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return -1;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return -1;
}

}  // namespace

// Requests are served by `limits.threads` event loops (libevent's evhttp),
// each a thread with its own event_base that accepts from the one listening
// socket and keeps the connections it accepted: a request is read, decided
// and answered on one thread, with no hand-off. What may block or take long (a
// stored decision read from the store, a reload, rendering /metrics) goes to
// one control-plane worker thread and is answered on its loop when done.
struct HttpServer::Impl {
  struct Job;

  struct Loop {
    Impl* impl = nullptr;
    event_base* base = nullptr;
    evhttp* http = nullptr;
    evhttp_bound_socket* bound = nullptr;  // owned by `http`
    evconnlistener* listener = nullptr;    // bound's; null after Stop
    event* accept_again = nullptr;         // with several loops: see NewConnection
    event* accept_resume = nullptr;        // re-enables the listener after an accept error
    event* wake = nullptr;                 // jobs done by the worker: answer them
    event* drain = nullptr;                // after Stop: exits once nothing is pending
    bool stop_sent = false;                // under Impl::life_mu
    std::mutex mu;
    std::vector<std::unique_ptr<Job>> finished;  // under mu
    // The loop's thread only.
    int deferred = 0;        // requests with the worker, not answered yet
    bool replying = false;   // inside our own evhttp_send_reply
    bool stopping = false;   // Stop was called: answers close their connection
    bool accept_paused = false;             // out of descriptors: see OnAcceptError
    Clock::time_point accept_error_logged;  // last accept error logged
    int64_t accept_errors = 0;              // since the last one logged
    Reply reply;             // the request being handled
    std::string key_id, answer;
    Role role = Role::kScore;  // the key's, once Authorize passed
  };

  // A request answered by the worker thread.
  struct Job {
    Loop* loop;
    evhttp_request* req;
    Endpoint endpoint;
    Clock::time_point t0;
    bool head;
    std::string what;  // method and path, for the log
    std::function<void(Reply*)> work;
    Reply reply;
  };

  Engine* engine;
  Auth* auth;
  monitor::Registry* registry;
  ServeConfig config;

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

  int listen_fd = -1;
  std::atomic<int> listening_loops{0};  // loops that still accept (see BeginStop)
  SSL_CTX* ssl = nullptr;
  // Bind fills it, Run serves it, and Teardown (after Run, or in the
  // destructor) empties it, under life_mu so that Stop may come from any
  // thread at any time.
  std::mutex life_mu;
  std::vector<std::unique_ptr<Loop>> loops;
  bool stop_requested = false;  // under life_mu

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

  // Authenticates for `role`; on failure fills the loop's reply and returns false.
  bool Authorize(Loop& l, evhttp_request* req, Role role, bool rate_limited_endpoint) {
    Reply& r = l.reply;
    switch (auth->Authenticate(Header(req, "Authorization"), role, &l.key_id, &l.role)) {
      case Auth::Result::kOk:
        break;
      case Auth::Result::kMissing:
        r.Error(401, "unauthorized", "an API key is required: Authorization: Bearer <key>");
        r.www_authenticate = "Bearer";
        return false;
      case Auth::Result::kUnknown:
        r.Error(401, "unauthorized", "unknown API key");
        r.www_authenticate = "Bearer";
        return false;
      case Auth::Result::kForbidden:
        r.Error(403, "forbidden",
                role == Role::kAdmin
                    ? std::string("this endpoint needs a key with role admin")
                    : StrCat("this endpoint needs a key with role ", RoleName(role), " or admin"));
        return false;
    }
    if (rate_limited_endpoint && !auth->Allow(l.key_id)) {
      rate_limited->Inc();
      r.Error(429, "rate_limited",
              StrCat("more than ", config.limits.rate_per_key, " requests/s for this key (limits.rate_per_key)"));
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

  void HandleEvents(Loop& l, evhttp_request* req) {
    Reply& r = l.reply;
    if (!Authorize(l, req, Role::kScore, true)) return;
    if (!IsJson(req)) return r.Error(415, "unsupported_media_type", "Content-Type must be application/json");
    // Labels need role label or admin, whatever the endpoint: a score key's
    // label event is refused by the engine once it knows the event's type.
    r.status = DecideOne(Body(req), WantsFeatures(req), l.role != Role::kScore, &r.body);
  }

  // A batch or a label list: a JSON array of events, each answered on its own.
  void HandleMany(Loop& l, evhttp_request* req, bool labels) {
    Reply& r = l.reply;
    if (!Authorize(l, req, labels ? Role::kLabel : Role::kScore, true)) return;
    if (!IsJson(req)) return r.Error(415, "unsupported_media_type", "Content-Type must be application/json");
    auto items = SplitBatch(Body(req), /*allow_object=*/labels);
    if (!items.ok()) {
      // Not events: the body as a whole goes to the dead-letter file, as an
      // invalid single event does. Under the sequencer: the file has one
      // writer, Decide's thread.
      std::string why(items.status().message());
      {
        std::lock_guard<std::mutex> lock(decide_mu);
        engine->RejectBody(Body(req), labels ? "POST /v1/labels" : "POST /v1/events:batch", why);
      }
      return r.Error(400, "invalid_batch", why);
    }
    if (static_cast<int64_t>(items->size()) > config.limits.max_batch) {
      return r.Error(413, "batch_too_large",
                     StrCat("a batch of ", items->size(), " events; the limit is ", config.limits.max_batch,
                            " (limits.max_batch)"));
    }
    // ?features=true: for each decision, as for one event alone.
    const bool features = WantsFeatures(req);
    std::string& out = r.body;
    out = "{\"results\":[";
    std::string& answer = l.answer;
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
        status = DecideOne(ev, features, l.role != Role::kScore, &answer);
      }
      StrAppend(&out, "{\"status\":", status, ",\"answer\":", answer, "}");
    }
    out += "]}";
    r.status = 200;
  }

  // Returns true when the rendering went to the worker: it takes long
  // enough (every series, the engine's stats) to stall the loop's requests.
  bool HandleMetrics(Loop& l, evhttp_request* req, Clock::time_point t0, std::string what) {
    Reply& r = l.reply;
    // /metrics takes a key of any role.
    Auth::Result a = auth->Authenticate(Header(req, "Authorization"), Role::kScore, &l.key_id);
    if (a == Auth::Result::kMissing || a == Auth::Result::kUnknown) {
      r.Error(401, "unauthorized", "an API key is required: Authorization: Bearer <key>");
      r.www_authenticate = "Bearer";
      return false;
    }
    return Defer(l, req, kMetrics, t0, evhttp_request_get_command(req) == EVHTTP_REQ_HEAD, std::move(what),
                 [this](Reply* out) {
                   out->content_type = "text/plain; version=0.0.4";
                   out->body = registry->Render();
                 });
  }

  // 503 while the event log cannot take events (Engine::Ready), so that a
  // load balancer sends them elsewhere; a store that is down only degrades
  // (decisions go to the journal).
  void HandleReady(Loop& l) {
    EngineStats st = engine->Stats();
    const absl::Status ready = engine->Ready();
    std::string& j = l.reply.body;
    StrAppend(&j, "{\"ready\":", ready.ok() ? "true" : "false", ",\"event_log\":");
    AppendJsonString(ready.ok() ? (st.event_log_error.empty() ? std::string("ok")
                                                              : StrCat("retrying: ", st.event_log_error))
                                : std::string(ready.message()),
                     &j);
    j += ",\"store\":";
    AppendJsonString(st.store_error.empty() ? "ok" : StrCat("degraded: ", st.store_error, " (decisions go to the journal)"), &j);
    StrAppend(&j, ",\"keys\":", auth->num_keys(), "}");
    if (!ready.ok()) l.reply.status = 503;
  }

  // Work that may block: stored decisions (the store) and reloads (models,
  // policy, keys from disk or the store).
  static void GetStored(Impl* m, const std::string& id, Reply* r) {
    auto doc = m->engine->GetDecision(id);
    if (!doc.ok()) {
      bool nf = absl::IsNotFound(doc.status());
      return r->Error(nf ? 404 : 503, nf ? "not_found" : "unavailable", std::string(doc.status().message()));
    }
    r->body = std::move(*doc);
  }

  static void DoReload(Impl* m, Reply* r) {
    absl::Status st = m->engine->Reload();
    absl::Status keys = m->LoadKeys(/*at_start=*/false);
    if (!st.ok() && !absl::IsUnavailable(st)) {
      return r->Error(409, "reload_failed", StrCat(st.message(), " (the running models and policy stay)"));
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

  // Hands `req` to the worker thread; OnWake answers it on this loop.
  // Returns false, with the loop's reply a 503, when kMaxPendingJobs wait.
  bool Defer(Loop& l, evhttp_request* req, Endpoint e, Clock::time_point t0, bool head, std::string what,
             std::function<void(Reply*)> work) {
    {
      std::lock_guard<std::mutex> lock(work_mu);
      if (jobs.size() >= kMaxPendingJobs) {
        l.reply.Error(503, "unavailable",
                      StrCat(kMaxPendingJobs, " requests already wait for the control plane (stored decisions, "
                             "reloads, /metrics); try again shortly"));
        l.reply.retry_after = "1";
        return false;
      }
    }
    auto job = std::make_unique<Job>();
    job->loop = &l;
    job->req = req;
    job->endpoint = e;
    job->t0 = t0;
    job->head = head;
    job->what = std::move(what);
    job->work = std::move(work);
    {
      std::lock_guard<std::mutex> lock(work_mu);
      jobs.push_back(std::move(job));
    }
    ++l.deferred;
    work_cv.notify_one();
    return true;
  }

  // The event id of a raw (undecoded) path /v1/decisions/{id}, its one
  // segment percent-decoded into *id; false when the path has another shape.
  static bool DecisionId(std::string_view raw, std::string* id) {
    constexpr std::string_view kPrefix = "/v1/decisions/";
    if (raw.size() <= kPrefix.size() || raw.substr(0, kPrefix.size()) != kPrefix) return false;
    const std::string segment(raw.substr(kPrefix.size()));
    if (segment.find('/') != std::string::npos) return false;
    size_t n = 0;
    char* d = evhttp_uridecode(segment.c_str(), 0, &n);
    if (d == nullptr) return false;
    id->assign(d, n);
    std::free(d);
    return !id->empty();
  }

  // Routes one request. Returns true when it went to the worker; otherwise
  // the loop's reply is filled, and `*counted` says whether it goes to the
  // per-endpoint metrics (everything but the probes).
  bool Route(Loop& l, evhttp_request* req, Clock::time_point t0, Endpoint* endpoint, bool* counted) {
    Reply& r = l.reply;
    evhttp_cmd_type method = evhttp_request_get_command(req);
    const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
    const char* raw = uri ? evhttp_uri_get_path(uri) : nullptr;
    std::string_view path = raw ? raw : "";
    std::string decoded;
    if (path.find('%') != std::string_view::npos) {
      size_t n = 0;
      if (char* d = evhttp_uridecode(raw, 0, &n)) {
        decoded.assign(d, n);
        std::free(d);
        path = decoded;
      }
    }
    Endpoint e = *endpoint = EndpointOf(path);
    bool get = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;
    bool post = method == EVHTTP_REQ_POST;

    if (const char* why = FramingError(req)) {
      r.Error(400, "bad_request",
              StrCat("where the body ends is in doubt: ", why, "; the connection is closed"));
      r.close = true;
      return false;
    }
    if (post && Header(req, "Content-Length").empty() && Header(req, "Transfer-Encoding").empty()) {
      // A body may follow all the same: not to be read as a request.
      r.Error(
          411, "length_required",
          "a POST needs a Content-Length, even for an empty body (curl: -d ''); the connection is "
          "closed");
      r.close = true;
      return false;
    }
    if (post && e == kEvents) {
      HandleEvents(l, req);
    } else if (post && e == kBatch) {
      HandleMany(l, req, false);
    } else if (post && e == kLabels) {
      HandleMany(l, req, true);
    } else if (get && path == "/healthz") {
      *counted = false;
      r.body = "{\"status\":\"ok\"}";
    } else if (get && path == "/readyz") {
      *counted = false;
      HandleReady(l);
    } else if (get && e == kMetrics) {
      return HandleMetrics(l, req, t0, StrCat(MethodName(method), " ", path));
    } else if (get && e == kModels) {
      if (Authorize(l, req, Role::kAdmin, false)) r.body = engine->ModelsJson();
    } else if (std::string id; get && e == kDecisions && DecisionId(raw ? raw : "", &id)) {
      // (The id decoded from the raw path's one segment: an id may hold a
      // '/', sent as %2F.)
      if (!Authorize(l, req, Role::kScore, true)) return false;
      return Defer(l, req, e, t0, method == EVHTTP_REQ_HEAD, StrCat(MethodName(method), " ", path),
                   [this, id = std::move(id)](Reply* out) { GetStored(this, id, out); });
    } else if (post && e == kReload) {
      if (!Authorize(l, req, Role::kAdmin, false)) return false;
      return Defer(l, req, e, t0, false, StrCat(MethodName(method), " ", path),
                   [this](Reply* out) { DoReload(this, out); });
    } else {
      // (A target such as //healthz parses as an authority with no path:
      // named as sent.)
      const char* target = evhttp_request_get_uri(req);
      r.Error(404, "not_found",
              StrCat("no endpoint ", MethodName(method), " ",
                     path.empty() && target ? target : path, " (docs/api.md)"));
    }
    return false;
  }

  static void Send(Loop& l, evhttp_request* req, const Reply& r, bool head) {
    evkeyvalq* h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", r.content_type);
    if (r.www_authenticate) evhttp_add_header(h, "WWW-Authenticate", r.www_authenticate);
    if (r.retry_after) evhttp_add_header(h, "Retry-After", r.retry_after);
    if (l.stopping || r.close) evhttp_add_header(h, "Connection", "close");
    if (!head) evbuffer_add(evhttp_request_get_output_buffer(req), r.body.data(), r.body.size());
    l.replying = true;
    evhttp_send_reply(req, r.status, ReasonPhrase(r.status), nullptr);
    l.replying = false;
  }

  // evhttp's callback for every request it has read in full.
  static void OnRequest(evhttp_request* req, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    Impl& m = *l.impl;
    Clock::time_point t0 = Clock::now();
    Endpoint e = kOther;
    bool counted = true;
    l.reply.Reset();
    try {
      if (m.Route(l, req, t0, &e, &counted)) return;  // the worker answers it
    } catch (const std::exception& ex) {
      Failed(req, ex.what(), &l.reply);
    } catch (...) {
      Failed(req, "unknown exception", &l.reply);
    }
    Send(l, req, l.reply, evhttp_request_get_command(req) == EVHTTP_REQ_HEAD);
    if (counted) m.Count(e, l.reply.status, std::chrono::duration<double>(Clock::now() - t0).count());
  }

  static void Failed(evhttp_request* req, const char* what, Reply* r) {
    const char* uri = evhttp_request_get_uri(req);
    std::fprintf(stderr, "serve: %s %s failed: %s\n", MethodName(evhttp_request_get_command(req)), uri ? uri : "",
                 what);
    r->Error(500, "internal", "the request failed inside vigil; see the server's log");
  }

  // evhttp answers a few requests itself, without calling OnRequest: a body
  // over limits.max_body_bytes or a broken chunked body (413, from its
  // Content-Length; the rest of the body is read and dropped first), a
  // request it cannot parse (400), an Expect it does not know (417), a
  // method it does not know (501). libevent 2.1 cannot replace those pages (2.2 can:
  // evhttp_set_errorcb), so they stay its HTML and close the connection; they
  // are counted here as their status line is written, under the endpoint
  // "other" (the request line is gone by then).
  static void OnOutput(evbuffer* out, const evbuffer_cb_info* info, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    // An answer starts in an empty buffer: the one before has been written.
    if (l.replying || info->n_added == 0 || info->orig_size != 0) return;
    // evbuffer_peek, not evbuffer_copyout: the buffer's start may be frozen here.
    char line[12];
    size_t got = 0;
    evbuffer_iovec vec[2];
    int n = evbuffer_peek(out, sizeof line, nullptr, vec, 2);
    for (int i = 0; i < n && i < 2 && got < sizeof line; ++i) {
      size_t take = std::min(vec[i].iov_len, sizeof line - got);
      std::memcpy(line + got, vec[i].iov_base, take);
      got += take;
    }
    if (got != sizeof line || std::memcmp(line, "HTTP/1.", 7) != 0) return;
    int code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (code >= 200 && code < 600) l.impl->Count(kOther, code, 0);  // not "100 Continue"
  }

  // An answer starts (the output buffer was empty): read ahead no more than
  // kMaxReadAheadBytes until it is written; written (the buffer emptied),
  // reading ahead is unbounded again, for the next request's body.
  static void OnOutputWatermark(evbuffer* out, const evbuffer_cb_info* info, void* arg) {
    const size_t now = evbuffer_get_length(out);
    if (info->orig_size == 0 && now > 0) {
      bufferevent_setwatermark(static_cast<bufferevent*>(arg), EV_READ, 0, kMaxReadAheadBytes);
    } else if (info->orig_size > 0 && now == 0) {
      bufferevent_setwatermark(static_cast<bufferevent*>(arg), EV_READ, 0, 0);
    }
  }

  // A new connection's bufferevent: TLS when configured.
  static bufferevent* NewConnection(event_base* base, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    bufferevent* bev;
    if (l.impl->ssl) {
      SSL* ssl = SSL_new(l.impl->ssl);
      bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE)
                : nullptr;
      // Returning null would make evhttp serve the connection in plain text.
      if (!bev) {
        std::fprintf(stderr, "serve: out of memory for a TLS connection: %s\n", OpenSslErrors().c_str());
        std::abort();
      }
    } else {
      bev = bufferevent_socket_new(base, -1, 0);  // as evhttp makes it (evhttp closes the socket)
      if (!bev) return nullptr;
    }
    evbuffer_add_cb(bufferevent_get_output(bev), &OnOutput, &l);
    if (!l.impl->ssl) evbuffer_add_cb(bufferevent_get_output(bev), &OnOutputWatermark, bev);
    // The listener accepts every pending connection in one go, so a burst
    // (a client opening its pool) would all land on the loop that woke
    // first. One connection per turn instead: the loops share a burst, and a
    // busy loop, slower to come back, takes fewer.
    if (l.accept_again && l.listener) {
      evconnlistener_disable(l.listener);
      event_active(l.accept_again, EV_TIMEOUT, 1);
    }
    return bev;
  }

  static void AcceptAgain(evutil_socket_t, short, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    if (l.listener && !l.accept_paused) evconnlistener_enable(l.listener);
  }

  // The loop this thread runs: an evconnlistener's error callback gets
  // evhttp's argument, not ours.
  static thread_local Loop* current_loop;

  // accept() failed. Out of descriptors or memory, the pending connection
  // stays in the backlog and the listening socket stays readable: left
  // enabled, the listener would wake the loop at once, again and again (100 %
  // CPU, every loop). It pauses for 100 ms instead, while connections close;
  // the errors are logged at most every 10 s.
  static void OnAcceptError(evconnlistener* listener, void*) {
    int err = EVUTIL_SOCKET_ERROR();
    Loop* lp = current_loop;
    if (!lp) return;
    Loop& l = *lp;
    ++l.accept_errors;
    Clock::time_point now = Clock::now();
    if (now - l.accept_error_logged >= std::chrono::seconds(10)) {
      std::fprintf(stderr, "serve: cannot accept a connection: %s (%lld times in the last 10 s)%s\n",
                   std::strerror(err), static_cast<long long>(l.accept_errors),
                   err == EMFILE || err == ENFILE ? "; raise the open-file limit (ulimit -n)" : "");
      l.accept_error_logged = now;
      l.accept_errors = 0;
    }
    if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM) return;
    evconnlistener_disable(listener);
    l.accept_paused = true;
    timeval pause{0, 100 * 1000};
    if (event_add(l.accept_resume, &pause) != 0) {
      l.accept_paused = false;
      evconnlistener_enable(listener);
    }
  }

  static void AcceptResume(evutil_socket_t, short, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    l.accept_paused = false;
    if (l.listener) evconnlistener_enable(l.listener);  // null once Stop reached the loop
  }

  // The worker thread finished jobs of this loop.
  static void OnWake(evutil_socket_t, short, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    std::vector<std::unique_ptr<Job>> done;
    {
      std::lock_guard<std::mutex> lock(l.mu);
      done.swap(l.finished);
    }
    for (const auto& job : done) {
      Send(l, job->req, job->reply, job->head);
      l.impl->Count(job->endpoint, job->reply.status,
                    std::chrono::duration<double>(Clock::now() - job->t0).count());
      --l.deferred;
    }
  }

  // Stop reached this loop: no more connections; answers say Connection:
  // close, so a connection ends after the request it is in.
  static void BeginStop(evutil_socket_t, short, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    l.stopping = true;
    if (l.bound) {
      evhttp_del_accept_socket(l.http, l.bound);  // frees the listener
      l.bound = nullptr;
      l.listener = nullptr;
      // The last loop to stop accepting stops the socket listening: a
      // connection attempt is refused from now on instead of waiting in the
      // backlog until the process exits. Not before: a listening socket shut
      // down under a loop's epoll would wake it again and again.
      if (l.impl->listening_loops.fetch_sub(1) == 1) shutdown(l.impl->listen_fd, SHUT_RDWR);
    }
    if (l.accept_resume) event_del(l.accept_resume);
    l.drain = event_new(l.base, -1, EV_PERSIST, &Drain, &l);
    timeval every{0, 10 * 1000};
    if (!l.drain || event_add(l.drain, &every) != 0) event_base_loopbreak(l.base);
  }

  // Leaves the first phase of Serve once the worker has nothing of this
  // loop's: no answer can come from another thread any more.
  static void Drain(evutil_socket_t, short, void* arg) {
    Loop& l = *static_cast<Loop*>(arg);
    if (l.deferred > 0) return;
    event_del(l.drain);
    event_base_loopbreak(l.base);
  }

  // Runs a loop on this thread until Stop has reached it and nothing of its
  // is with the worker (Drain). Then serves on until its last connection has
  // closed: answers still in output buffers are written, a connection in a
  // request ends after it (Connection: close), an idle keep-alive one at its
  // timeout. That second phase stops waiting once kTimeoutSeconds have
  // passed, at the next event (every connection has a kTimeoutSeconds
  // timeout, so that comes soon).
  static void Serve(Loop* l) {
    current_loop = l;
    event_base_loop(l->base, EVLOOP_NO_EXIT_ON_EMPTY);
    Clock::time_point deadline = Clock::now() + std::chrono::seconds(kTimeoutSeconds);
    // Counts exclude libevent's internal events (the cross-thread wake-up).
    while (Clock::now() < deadline &&
           event_base_get_num_events(l->base, EVENT_BASE_COUNT_ADDED | EVENT_BASE_COUNT_ACTIVE |
                                                  EVENT_BASE_COUNT_VIRTUAL) > 0) {
      if (event_base_loop(l->base, EVLOOP_ONCE) != 0) break;  // -1 an error; 1 nothing left
    }
    current_loop = nullptr;
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
        job->reply.Error(500, "internal", "the request failed inside vigil; see the server's log");
      } catch (...) {
        std::fprintf(stderr, "serve: %s failed: unknown exception\n", job->what.c_str());
        job->reply.Error(500, "internal", "the request failed inside vigil; see the server's log");
      }
      Loop& l = *job->loop;
      {
        std::lock_guard<std::mutex> lock(l.mu);
        l.finished.push_back(std::move(job));
      }
      event_active(l.wake, EV_READ, 0);  // thread-safe: the bases have locks (evthread_use_pthreads)
    }
  }

  absl::Status LoadTls() {
    if (ssl) SSL_CTX_free(ssl);  // a Bind that failed before this one
    ssl = SSL_CTX_new(TLS_server_method());
    if (!ssl) return absl::InternalError(StrCat("TLS: cannot create an OpenSSL context: ", OpenSslErrors()));
    SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
    SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ssl, config.tls_cert.c_str()) != 1) {
      return absl::InvalidArgumentError(
          StrCat("tls.cert ", config.tls_cert, ": cannot load the certificate: ", OpenSslErrors()));
    }
    if (SSL_CTX_use_PrivateKey_file(ssl, config.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return absl::InvalidArgumentError(
          StrCat("tls.key ", config.tls_key, ": cannot load the private key: ", OpenSslErrors()));
    }
    if (SSL_CTX_check_private_key(ssl) != 1) {
      return absl::InvalidArgumentError(StrCat("tls.key ", config.tls_key, " is not the key of tls.cert ",
                                               config.tls_cert, ": ", OpenSslErrors()));
    }
    return absl::OkStatus();
  }

  absl::Status AddLoop() {
    loops.push_back(std::make_unique<Loop>());  // first: Teardown frees what a failure leaves
    Loop& l = *loops.back();
    l.impl = this;
    std::string which = StrCat("HTTP loop ", loops.size());
    // epoll changes are batched per loop turn: a connection's read and write
    // events are switched on and off several times per request, and most of
    // those switches cancel out before the next epoll_wait.
    event_config* cfg = event_config_new();
    if (!cfg) return absl::InternalError(StrCat(which, ": event_config_new failed"));
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    l.base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!l.base) return absl::InternalError(StrCat(which, ": event_base_new_with_config failed"));
    if (!(l.http = evhttp_new(l.base))) return absl::InternalError(StrCat(which, ": evhttp_new failed"));
    evhttp_set_gencb(l.http, &OnRequest, &l);
    evhttp_set_bevcb(l.http, &NewConnection, &l);
    evhttp_set_max_body_size(l.http, static_cast<ev_ssize_t>(config.limits.max_body_bytes));
    // A body over the limit is read and dropped before the 413 and the close:
    // closing with it unread would reset the connection under a client still
    // sending, which then sees ECONNRESET instead of the answer.
    evhttp_set_flags(l.http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_max_headers_size(l.http, kMaxHeaderBytes);
    evhttp_set_timeout(l.http, kTimeoutSeconds);
    // Every method evhttp knows reaches OnRequest (404 for those no endpoint
    // takes) but CONNECT, which it answers 501 itself: libevent 2.1 keeps a
    // CONNECT's connection open whatever its answer says, so that an answer
    // without a length could not be told from what follows.
    evhttp_set_allowed_methods(l.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                           EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                           EVHTTP_REQ_TRACE | EVHTTP_REQ_PATCH);
    // The listening socket is shared: no LEV_OPT_CLOSE_ON_FREE (Teardown closes it).
    evconnlistener* listener = evconnlistener_new(l.base, nullptr, nullptr, LEV_OPT_CLOSE_ON_EXEC, 0, listen_fd);
    if (!listener) return absl::InternalError(StrCat(which, ": evconnlistener_new failed"));
    if (!(l.bound = evhttp_bind_listener(l.http, listener))) {
      evconnlistener_free(listener);
      return absl::InternalError(StrCat(which, ": evhttp_bind_listener failed"));
    }
    l.listener = listener;
    ++listening_loops;
    if (!(l.accept_resume = evtimer_new(l.base, &AcceptResume, &l))) {
      return absl::InternalError(StrCat(which, ": event_new failed"));
    }
    evconnlistener_set_error_cb(listener, &OnAcceptError);
    if (config.limits.threads > 1 && !(l.accept_again = event_new(l.base, -1, 0, &AcceptAgain, &l))) {
      return absl::InternalError(StrCat(which, ": event_new failed"));
    }
    if (!(l.wake = event_new(l.base, -1, 0, &OnWake, &l))) return absl::InternalError(StrCat(which, ": event_new failed"));
    return absl::OkStatus();
  }

  // Sends Stop to the loops it has not reached yet. REQUIRES: life_mu held.
  void SendStop() {
    timeval now{0, 0};
    for (auto& l : loops) {
      if (l->stop_sent) continue;
      l->stop_sent = event_base_once(l->base, -1, EV_TIMEOUT, &BeginStop, l.get(), &now) == 0;
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

  // The TLS context, the listening socket and the loops. On failure, what
  // was made is left for Teardown.
  absl::Status Bind(const std::string& host, int port, int* bound_port) {
    if (!config.tls_cert.empty()) VIGIL_RETURN_IF_ERROR(LoadTls());
    VIGIL_ASSIGN_OR_RETURN(listen_fd, ListenOn(host, port));
    *bound_port = LocalPort(listen_fd);
    std::lock_guard<std::mutex> lock(life_mu);
    for (int64_t i = 0; i < config.limits.threads; ++i) VIGIL_RETURN_IF_ERROR(AddLoop());
    return absl::OkStatus();
  }

  // Frees the loops (their connections and any request not answered), the
  // listening socket and the TLS context: after Run, after a failed Bind, in
  // the destructor. REQUIRES: no loop running.
  void Teardown() {
    std::lock_guard<std::mutex> lock(life_mu);
    listening_loops = 0;
    for (auto& lp : loops) {
      Loop& l = *lp;
      l.finished.clear();  // their requests go with evhttp_free
      if (l.wake) event_free(l.wake);
      if (l.accept_again) event_free(l.accept_again);
      if (l.accept_resume) event_free(l.accept_resume);
      if (l.drain) event_free(l.drain);
      if (l.http) evhttp_free(l.http);
      if (l.base) event_base_free(l.base);
    }
    loops.clear();
    if (listen_fd >= 0) close(listen_fd);
    listen_fd = -1;
    if (ssl) SSL_CTX_free(ssl);
    ssl = nullptr;
  }
};

thread_local HttpServer::Impl::Loop* HttpServer::Impl::current_loop = nullptr;

HttpServer::HttpServer(Engine* engine, Auth* auth, monitor::Registry* registry, const ServeConfig& config)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.engine = engine;
  m.auth = auth;
  m.registry = registry;
  m.config = config;

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
  impl_->Teardown();
}

absl::Status HttpServer::LoadKeys() { return impl_->LoadKeys(/*at_start=*/true); }

absl::Status HttpServer::Check(const std::string& host) {
  Impl& m = *impl_;
  // The keys file. (Keys kept in the store are not read: opening the store
  // makes its tables, and a check changes nothing.)
  if (!m.config.keys_file.empty()) VIGIL_RETURN_IF_ERROR(m.LoadKeys(/*at_start=*/true));
  if (!m.config.tls_cert.empty()) {
    absl::Status tls = m.LoadTls();
    SSL_CTX_free(m.ssl);
    m.ssl = nullptr;
    VIGIL_RETURN_IF_ERROR(tls);
  }
  VIGIL_ASSIGN_OR_RETURN(addrinfo* const found, ListenAddresses(host, 0, host));
  freeaddrinfo(found);
  return absl::OkStatus();
}

absl::Status HttpServer::Bind(const std::string& host, int port) {
  Impl& m = *impl_;
  if (m.listen_fd >= 0) return absl::FailedPreconditionError(StrCat("already listening on port ", port_));
  // Before any event_base exists: Stop and the worker reach the loops from
  // other threads (event_base_once, event_active).
  static std::once_flag threads_once;
  std::call_once(threads_once, [] { evthread_use_pthreads(); });
  // A client gone before its answer is written must not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  RaiseOpenFileLimit();
  absl::Status st = m.Bind(host, port, &port_);
  if (!st.ok()) {
    // Nothing half made is left for Run (a loop without its event_base) or
    // for the next Bind (the listening socket, the TLS context).
    m.Teardown();
    port_ = 0;
  }
  return st;
}

void HttpServer::Run() {
  Impl& m = *impl_;
  std::vector<Impl::Loop*> loops;
  {
    std::lock_guard<std::mutex> lock(m.life_mu);
    for (auto& l : m.loops) loops.push_back(l.get());
    if (m.stop_requested) m.SendStop();  // Stop came before Bind
  }
  if (loops.empty()) return;
  m.worker = std::thread([&m] { m.WorkerMain(); });
  std::vector<std::thread> threads;
  for (size_t i = 1; i < loops.size(); ++i) threads.emplace_back([l = loops[i]] { Impl::Serve(l); });
  Impl::Serve(loops[0]);
  for (std::thread& t : threads) t.join();
  m.StopWorker();
  m.Teardown();
}

void HttpServer::Stop() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.life_mu);
  m.stop_requested = true;
  m.SendStop();
}

}  // namespace vigil::serve
