// An HTTP/1.1 server over epoll, made for many small requests on keep-alive
// connections: `threads` event loops share one listening socket, each keeps
// the connections it accepted, and a request is read, handled and answered
// on that loop's thread without a hand-off. A handler may instead answer
// later, from any thread (Server::Answer), for work that may block.
//
// Requests are parsed by Debian's http_parser (libhttp-parser-dev). What the
// server answers itself, without the handler: a request it cannot parse or
// whose body's end is in doubt (400), a POST without a length (411), headers
// over `max_header_bytes` (431), a body over `max_body_bytes` (413), an
// Expect other than 100-continue (417), a method it does not know (501).
// Those answers close the connection: what follows on it is read and dropped
// for a while (lingering close), so that a client still sending sees the
// answer and not a reset.
//
// Bounds: a connection busy with an answer (being written, or waiting for
// Answer) reads at most 64 KiB ahead; a connection with no byte read or
// written for `idle_timeout_ms` is closed (not one waiting for Answer); a
// lingering close lasts 30 s at most; a connection keeps its buffers from
// one request to the next, and gives back those over 64 KiB when it closes.
// A chunked body's trailers count against `max_header_bytes` and are
// dropped.
//
// Thread-safety: Bind, Run and the destructor from one controlling thread
// (Run returns before the server is destroyed); Stop and Answer from any
// thread, at any time. The handler is called on the loop threads, several
// at once when threads > 1.
#ifndef VIGIL_HTTP_SERVER_H_
#define VIGIL_HTTP_SERVER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace vigil::http {

struct HeaderField {
  std::string_view name, value;
};

// One request read in full. Its views are valid during Handler::Handle only.
struct Request {
  std::string_view method;  // as sent: "GET", "POST", ...
  std::string_view target;  // the request target as sent
  std::string_view path;    // the target before any '?', not decoded
  std::string_view query;   // after the '?' (empty without one)
  std::string_view body;    // a chunked body's chunks joined
  const HeaderField* headers = nullptr;
  size_t num_headers = 0;

  bool head() const { return method == "HEAD"; }
  // The first header of that name (compared without regard to case); empty
  // when there is none.
  std::string_view Header(std::string_view name) const;
};

// An answer. Content-Length, Date and Connection are the server's.
struct Response {
  int status = 200;
  const char* content_type = "application/json";
  const char* www_authenticate = nullptr;  // a WWW-Authenticate header, when set
  const char* retry_after = nullptr;       // a Retry-After header, when set
  bool close = false;                      // end the connection after this answer
  std::string body;                        // not sent on HEAD (its length is)

  void Reset() {
    status = 200;
    content_type = "application/json";
    www_authenticate = nullptr;
    retry_after = nullptr;
    close = false;
    body.clear();
  }
};

// Names the request a deferred answer belongs to.
struct Ticket {
  uint32_t loop = 0;
  uint32_t slot = 0;
  uint32_t generation = 0;
};

class Handler {
 public:
  virtual ~Handler() = default;
  // On a loop thread. Fills *response (reset beforehand) and returns true;
  // or returns false and later calls Server::Answer(ticket, ...) exactly
  // once, from any thread.
  virtual bool Handle(const Request& request, Ticket ticket, Response* response) = 0;
  // Called for each answer the server gave itself (above), with the path
  // when the request line was read (else empty). On a loop thread.
  virtual void AnsweredByServer(std::string_view path, int status) = 0;
};

struct Options {
  int threads = 1;
  uint64_t max_body_bytes = 1 << 20;
  uint32_t max_header_bytes = 16 * 1024;  // request line and headers together
  int idle_timeout_ms = 5000;
  // TLS on every connection when both are set: PEM files, the certificate
  // chain and its private key (TLS 1.2 at least). Read by Bind.
  std::string tls_cert, tls_key;
  const char* log_name = "serve";  // names the server in the log (stderr)
};

class Server {
 public:
  // `handler` must outlive the server.
  Server(Handler* handler, const Options& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Loads the TLS certificate and key when set, and listens on host:port
  // (port 0: a free one). Fails naming the file or the address.
  absl::Status Bind(const std::string& host, int port);
  int port() const { return port_; }

  // Serves until Stop (blocking; the calling thread is one of the loops);
  // returns at once when Bind did not succeed. After Stop: no connection is
  // accepted (the listening socket closes once every loop has seen Stop),
  // answers say Connection: close, and Run returns once every deferred
  // request was answered and then either the last connection has closed or
  // the idle timeout has passed.
  void Run();
  void Stop();

  // The answer to a request whose Handle returned false. Any thread; an
  // answer to a connection closed meanwhile is dropped.
  void Answer(Ticket ticket, Response&& response);

  struct Impl;  // (public for the loops inside server.cc)

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// What Bind would refuse, without listening: the host, resolved (`where`
// names it in the error), and the TLS certificate and key when set.
absl::Status Check(const Options& options, const std::string& host, const std::string& where);

// `in` percent-decoded ("%2F" → "/"); a '%' not followed by two hex digits
// stays as it is, and so does '+'.
std::string PercentDecode(std::string_view in);

}  // namespace vigil::http

#endif  // VIGIL_HTTP_SERVER_H_
