// The HTTP API of `vigil serve` (docs/api.md) over cpp-httplib: events,
// batches, labels, stored decisions, health, readiness, metrics and admin,
// with API keys, roles, a body limit, an optional per-key rate limit and
// optional TLS. One lock (the sequencer) orders the calls into the Engine:
// the order of decisions is the order of the event log.
//
// Thread-safety: Start, Port and Stop from one controlling thread; requests
// are served by the pool's threads.
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

  // Binds `host:port` (port 0: a free one). Fails naming the address.
  absl::Status Bind(const std::string& host, int port);
  int port() const { return port_; }
  // Serves until Stop (blocking).
  void Run();
  void Stop();

  // Reloads keys (from the store or the keys file): at start and on reload.
  absl::Status LoadKeys();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_HTTP_SERVER_H_
