// The HTTP API of `vigil serve` (docs/api.md) over src/http/'s server:
// events, batches, labels, stored decisions, health, readiness, metrics and
// admin, with API keys, roles, a body limit, an optional per-key rate limit
// and optional TLS. One lock (the sequencer) orders the calls into the
// Engine: the order of decisions is the order of the event log.
//
// Requests are served by `limits.threads` event-loop threads that share the
// listening socket; each keeps the connections it accepted, so a request is
// read, decided and answered on one thread. What may block or take long (a
// stored decision read from the store, a reload, rendering /metrics) runs on
// one control-plane thread, which answers it.
//
// Thread-safety: Bind, Run and the destructor from one controlling thread
// (Run returns before the server is destroyed); Stop from any thread, at any
// time, any number of times.
#ifndef VIGIL_SERVE_HTTP_SERVER_H_
#define VIGIL_SERVE_HTTP_SERVER_H_

#include <memory>
#include <string>

#include "core/status.h"
#include "monitor/metrics.h"
#include "serve/auth.h"
#include "serve/config.h"
#include "vigil/engine.h"

namespace vigil::serve {

class HttpServer {
 public:
  // `engine`, `auth` and `registry` must outlive the server.
  HttpServer(Engine* engine, Auth* auth, monitor::Registry* registry, const ServeConfig& config);
  ~HttpServer();

  // Binds `host:port` (port 0: a free one) and loads the TLS certificate and
  // key when the configuration names them. Fails naming the address or the
  // file.
  absl::Status Bind(const std::string& host, int port);
  int port() const { return port_; }
  // Serves until Stop (blocking); returns at once when Bind did not succeed.
  void Run();
  // Stops accepting connections; answers in progress are finished (a
  // connection closes after its current request), then Run returns once the
  // last connection has closed, or 5 s (the idle timeout) after the last
  // request passed to the control-plane thread was answered.
  void Stop();

  // Loads the keys (from the store or the keys file) at start; a keys file
  // that does not exist yet holds none. POST /v1/admin/reload loads them
  // again, and keeps the old ones when they cannot be read.
  absl::Status LoadKeys();

  // What a start would refuse after the engine opened, without listening
  // (vigil serve --check): the keys file, the TLS certificate and key,
  // and the listen host, resolved.
  absl::Status Check(const std::string& host);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_HTTP_SERVER_H_
