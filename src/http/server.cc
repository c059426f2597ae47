#include "http/server.h"

#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "core/strings.h"

namespace vigil::http {
namespace {

using Clock = std::chrono::steady_clock;

// What one read asks for.
constexpr size_t kReadChunk = 16 * 1024;
// What a busy connection (an answer being written, or deferred) reads ahead.
constexpr size_t kMaxReadAhead = 64 * 1024;
// A closed connection's buffers above this are given back: a slot keeps
// what an ordinary request needs, not the largest one it ever saw.
constexpr size_t kKeepBufferBytes = 64 * 1024;
// How long a lingering close may last, however much the client still sends.
constexpr int64_t kMaxLingerMs = 30 * 1000;
// epoll data of what is not a connection.
constexpr uint64_t kListenTag = ~uint64_t{0};
constexpr uint64_t kWakeTag = ~uint64_t{0} - 1;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

std::string_view Trim(std::string_view s) {
  absl::string_view t = absl::StripAsciiWhitespace(absl::string_view(s.data(), s.size()));
  return std::string_view(t.data(), t.size());
}

bool IEquals(std::string_view a, std::string_view b) {
  return absl::EqualsIgnoreCase(absl::string_view(a.data(), a.size()),
                                absl::string_view(b.data(), b.size()));
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
void RaiseOpenFileLimit(const char* name) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    std::fprintf(stderr, "%s: warning: cannot read the open-file limit: %s\n", name,
                 std::strerror(errno));
    return;
  }
  if (lim.rlim_cur >= lim.rlim_max) return;
  rlim_t was = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    std::fprintf(stderr, "%s: warning: cannot raise the open-file limit from %llu to %llu: %s\n",
                 name, static_cast<unsigned long long>(was),
                 static_cast<unsigned long long>(lim.rlim_max), std::strerror(errno));
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

namespace server_internal {

struct Loop;

// Bytes read and not parsed yet: [begin, end) of a malloc'd block, which
// grows by doubling and never shrinks (one per connection, reused).
struct InBuffer {
  char* data = nullptr;
  size_t cap = 0, begin = 0, end = 0;

  ~InBuffer() { std::free(data); }
  void Release() {
    std::free(data);
    data = nullptr;
    cap = begin = end = 0;
  }
  size_t size() const { return end - begin; }
  // Room for `n` more bytes at `end`.
  void Reserve(size_t n) {
    if (begin == end) begin = end = 0;
    if (cap - end >= n) return;
    if (begin > 0) {
      std::memmove(data, data + begin, end - begin);
      end -= begin;
      begin = 0;
      if (cap - end >= n) return;
    }
    size_t want = std::max(cap * 2, end + n);
    char* grown = static_cast<char*>(std::realloc(data, want));
    if (!grown) std::abort();
    data = grown;
    cap = want;
  }
};

// One connection. Owned by its loop's slot table and reused: a closed
// connection keeps its buffers for the next one.
struct Conn {
  Loop* loop = nullptr;
  uint32_t slot = 0;
  uint32_t generation = 0;
  int fd = -1;
  SSL* ssl = nullptr;
  bool open = false;

  http_parser parser;
  InBuffer in;
  std::string out;
  size_t out_pos = 0;

  // The request being read: the target, header names and values (offsets
  // into `fields`, which grows), the body.
  struct FieldOffsets {
    uint32_t name, name_len, value, value_len;
  };
  std::string url, fields;
  std::vector<FieldOffsets> offsets;
  std::vector<HeaderField> headers;
  std::string body;
  bool in_value = false;
  bool headers_done = false;  // what the parser reports as fields now are trailers
  size_t header_bytes = 0;

  // What the parser's callbacks found wrong: the answer, once it returns.
  int error_status = 0;
  const char* error_code = nullptr;
  std::string error_message;

  bool request_ready = false;    // a whole request read; the parser is paused
  bool deferred = false;         // waiting for Server::Answer
  bool keep_alive = true;        // the request being answered allows another after it
  bool close_after = false;      // close once `out` is written
  bool lingering = false;        // answered and shut down for writing: reading and dropping
  bool peer_eof = false;         // the client will send no more
  bool tls_wants_write = false;  // OpenSSL needs the socket writable to go on reading
  bool tls_write_wants_read = false;  // ... or readable to go on writing
  uint32_t interest = 0;         // the epoll events registered
  int64_t last_io_ms = 0;
  int64_t linger_until_ms = 0;  // when lingering: closed by then at the latest

  bool head = false;    // of the request being answered
  bool http10 = false;  // likewise

  bool busy() const { return deferred || out_pos < out.size(); }
  void ResetRequest() {
    url.clear();
    fields.clear();
    offsets.clear();
    headers.clear();
    body.clear();
    in_value = false;
    headers_done = false;
    header_bytes = 0;
  }
  // Gives back what a large request or answer left behind.
  void ShrinkBuffers() {
    for (std::string* b : {&url, &fields, &body, &out, &error_message}) {
      if (b->capacity() > kKeepBufferBytes) std::string().swap(*b);
    }
    if (offsets.capacity() * sizeof(FieldOffsets) > kKeepBufferBytes) {
      std::vector<FieldOffsets>().swap(offsets);
    }
    if (headers.capacity() * sizeof(HeaderField) > kKeepBufferBytes) {
      std::vector<HeaderField>().swap(headers);
    }
    if (in.cap > kKeepBufferBytes) in.Release();
  }
};

}  // namespace server_internal

using server_internal::Conn;
using server_internal::Loop;

std::string_view Request::Header(std::string_view name) const {
  for (size_t i = 0; i < num_headers; ++i) {
    if (IEquals(headers[i].name, name)) return headers[i].value;
  }
  return {};
}

std::string PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size() && absl::ascii_isxdigit(in[i + 1]) &&
        absl::ascii_isxdigit(in[i + 2])) {
      int v = 0;
      std::from_chars(in.data() + i + 1, in.data() + i + 3, v, 16);
      out.push_back(static_cast<char>(v));
      i += 2;
      continue;
    }
    out.push_back(in[i]);
  }
  return out;
}

namespace {

struct SslCtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using SslCtx = std::unique_ptr<SSL_CTX, SslCtxFree>;

absl::StatusOr<SslCtx> LoadTls(const Options& o) {
  SslCtx ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx)
    return absl::InternalError(StrCat("TLS: cannot create an OpenSSL context: ", OpenSslErrors()));
  SSL_CTX* ssl = ctx.get();
  SSL_CTX_set_min_proto_version(ssl, TLS1_2_VERSION);
  SSL_CTX_set_options(ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  // An answer may be written in pieces, from a buffer that grows between them.
  SSL_CTX_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ssl, o.tls_cert.c_str()) != 1) {
    return absl::InvalidArgumentError(
        StrCat("tls.cert ", o.tls_cert, ": cannot load the certificate: ", OpenSslErrors()));
  }
  if (SSL_CTX_use_PrivateKey_file(ssl, o.tls_key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(
        StrCat("tls.key ", o.tls_key, ": cannot load the private key: ", OpenSslErrors()));
  }
  if (SSL_CTX_check_private_key(ssl) != 1) {
    return absl::InvalidArgumentError(StrCat("tls.key ", o.tls_key, " is not the key of tls.cert ",
                                             o.tls_cert, ": ", OpenSslErrors()));
  }
  return ctx;
}

}  // namespace

absl::Status Check(const Options& options, const std::string& host, const std::string& where) {
  if (!options.tls_cert.empty()) VIGIL_RETURN_IF_ERROR(LoadTls(options).status());
  VIGIL_ASSIGN_OR_RETURN(addrinfo* const found, ListenAddresses(host, 0, where));
  freeaddrinfo(found);
  return absl::OkStatus();
}

namespace server_internal {

struct Loop {
  Server::Impl* impl = nullptr;
  uint32_t index = 0;
  int ep = -1;
  int wake_fd = -1;
  std::vector<std::unique_ptr<Conn>> conns;  // by slot
  std::vector<uint32_t> free_slots;
  size_t open_conns = 0;

  std::mutex mu;
  std::vector<std::pair<Ticket, Response>> answers;  // under mu
  bool stop_requested = false;                       // under mu

  // The loop's thread only.
  int deferred = 0;  // requests handed out, not answered yet
  bool stopping = false;
  bool listening = false;      // the listening socket is in this loop's epoll
  bool accept_paused = false;  // out of descriptors: see Accept
  int64_t accept_resume_ms = 0;
  int64_t accept_error_logged_ms = -1000000;
  int64_t accept_errors = 0;
  int64_t now_ms = 0;
  int64_t next_sweep_ms = 0;
  int64_t drained_at_ms = -1;  // after Stop: when the last deferred request was answered
  int64_t date_second = -1;
  char date[64] = {};
  Response response;  // the request being handled
  std::vector<std::pair<Ticket, Response>> taken;
};

}  // namespace server_internal

struct Server::Impl {
  Handler* handler;
  Options options;
  SslCtx tls;  // when the options name a certificate
  int listen_fd = -1;
  std::atomic<int> listening_loops{0};
  // Bind fills it and Teardown empties it, under life_mu, so that Stop and
  // Answer may come from any thread at any time.
  std::mutex life_mu;
  std::vector<std::unique_ptr<Loop>> loops;
  bool stop_requested = false;  // under life_mu
  http_parser_settings settings{};

  // ---------------------------------------------------------------- parsing

  static Conn& Of(http_parser* p) { return *static_cast<Conn*>(p->data); }

  // Stops the parser with an answer of the server's own.
  static int Refuse(Conn& c, int status, const char* code, std::string message) {
    c.error_status = status;
    c.error_code = code;
    c.error_message = std::move(message);
    return -1;
  }

  int CountHeaderBytes(Conn& c, size_t n) {
    c.header_bytes += n;
    if (c.header_bytes <= options.max_header_bytes) return 0;
    return Refuse(c, 431, "header_too_large",
                  StrCat("the request line and headers are over ", options.max_header_bytes,
                         " bytes; the connection is closed"));
  }

  static int OnUrl(http_parser* p, const char* at, size_t n) {
    Conn& c = Of(p);
    c.url.append(at, n);
    return c.loop->impl->CountHeaderBytes(c, n);
  }
  // After the headers, the parser reports a chunked body's trailers as
  // fields too: they are counted against the limit and dropped (the
  // request's header views point into `fields`, which must not move).
  static int OnHeaderField(http_parser* p, const char* at, size_t n) {
    Conn& c = Of(p);
    if (c.headers_done) return c.loop->impl->CountHeaderBytes(c, n);
    if (c.in_value || c.offsets.empty()) {
      c.offsets.push_back({static_cast<uint32_t>(c.fields.size()), 0, 0, 0});
      c.in_value = false;
    }
    c.fields.append(at, n);
    c.offsets.back().name_len += static_cast<uint32_t>(n);
    return c.loop->impl->CountHeaderBytes(c, n);
  }
  static int OnHeaderValue(http_parser* p, const char* at, size_t n) {
    Conn& c = Of(p);
    if (c.headers_done) return c.loop->impl->CountHeaderBytes(c, n);
    if (!c.in_value) {
      c.offsets.back().value = static_cast<uint32_t>(c.fields.size());
      c.in_value = true;
    }
    c.fields.append(at, n);
    c.offsets.back().value_len += static_cast<uint32_t>(n);
    return c.loop->impl->CountHeaderBytes(c, n);
  }

  static std::string_view Path(const std::string& url) {
    return std::string_view(url).substr(0, url.find('?'));
  }

  // The headers as views, once `fields` no longer grows.
  static void BuildHeaders(Conn& c) {
    c.headers.clear();
    for (const Conn::FieldOffsets& o : c.offsets) {
      c.headers.push_back({std::string_view(c.fields).substr(o.name, o.name_len),
                           std::string_view(c.fields).substr(o.value, o.value_len)});
    }
  }

  static int OnHeadersComplete(http_parser* p) {
    Conn& c = Of(p);
    Impl& m = *c.loop->impl;
    BuildHeaders(c);
    c.headers_done = true;
    Request r;
    r.headers = c.headers.data();
    r.num_headers = c.headers.size();
    const bool chunked = (p->flags & F_CHUNKED) != 0;
    const bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    const auto method = static_cast<http_method>(p->method);
    if (method == HTTP_CONNECT)
      return Refuse(c, 501, "not_implemented", "CONNECT is not served here");
    // http_parser reads "Content-Length : 5" as a length and a
    // Transfer-Encoding other than chunked as no body; a proxy in front may
    // read either otherwise.
    for (const HeaderField& h : c.headers) {
      if (h.name.find_first_of(" \t") != std::string_view::npos) {
        return Refuse(c, 400, "bad_request",
                      "where the body ends is in doubt: a header field name holds white space; the "
                      "connection is "
                      "closed");
      }
    }
    if (!chunked && !r.Header("Transfer-Encoding").empty()) {
      return Refuse(c, 400, "bad_request",
                    "where the body ends is in doubt: a Transfer-Encoding other than chunked; the "
                    "connection is "
                    "closed");
    }
    // Where the body ends must not be in doubt: what one reader takes for a
    // body another (a proxy in front) may take for a request of its own.
    if ((method == HTTP_HEAD || method == HTTP_TRACE) &&
        (chunked || (has_length && p->content_length > 0))) {
      return Refuse(c, 400, "bad_request",
                    "where the body ends is in doubt: a body on a HEAD or TRACE request; the "
                    "connection is closed");
    }
    if (method == HTTP_POST && !chunked && !has_length) {
      return Refuse(c, 411, "length_required",
                    "a POST needs a Content-Length, even for an empty body (curl: -d ''); the "
                    "connection is closed");
    }
    if (has_length && p->content_length > m.options.max_body_bytes) {
      return Refuse(
          c, 413, "body_too_large",
          StrCat("a body of ", p->content_length, " bytes; the limit is ", m.options.max_body_bytes,
                 " (limits.max_body_bytes); the connection is closed"));
    }
    if (std::string_view expect = r.Header("Expect"); !expect.empty()) {
      if (!IEquals(Trim(expect), "100-continue")) {
        return Refuse(c, 417, "expectation_failed",
                      "the only Expect taken is 100-continue; the connection is closed");
      }
      if (p->http_major == 1 && p->http_minor >= 1) c.out += "HTTP/1.1 100 Continue\r\n\r\n";
    }
    return 0;
  }

  static int OnBody(http_parser* p, const char* at, size_t n) {
    Conn& c = Of(p);
    const uint64_t limit = c.loop->impl->options.max_body_bytes;
    if (c.body.size() + n > limit) {
      return Refuse(c, 413, "body_too_large",
                    StrCat("a chunked body over the limit of ", limit,
                           " bytes (limits.max_body_bytes); the connection is closed"));
    }
    c.body.append(at, n);
    return 0;
  }

  static int OnMessageComplete(http_parser* p) {
    Of(p).request_ready = true;
    http_parser_pause(p, 1);
    return 0;
  }

  // -------------------------------------------------------------- answering

  static void AppendNumber(std::string* out, uint64_t v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out->append(buf, static_cast<size_t>(r.ptr - buf));
  }

  const char* Date(Loop& l) {
    time_t now = std::time(nullptr);
    if (now != l.date_second) {
      tm t{};
      gmtime_r(&now, &t);
      std::strftime(l.date, sizeof l.date, "%a, %d %b %Y %H:%M:%S GMT", &t);
      l.date_second = now;
    }
    return l.date;
  }

  // Appends the answer to the connection's output.
  void Queue(Conn& c, const Response& r, bool head, bool http10) {
    Loop& l = *c.loop;
    const bool close = r.close || !c.keep_alive || l.stopping;
    std::string& o = c.out;
    o += "HTTP/1.1 ";
    AppendNumber(&o, static_cast<uint64_t>(r.status));
    o += ' ';
    o += http_status_str(static_cast<http_status>(r.status));
    o += "\r\nContent-Type: ";
    o += r.content_type;
    o += "\r\nContent-Length: ";
    AppendNumber(&o, r.body.size());
    o += "\r\nDate: ";
    o += Date(l);
    if (r.www_authenticate) {
      o += "\r\nWWW-Authenticate: ";
      o += r.www_authenticate;
    }
    if (r.retry_after) {
      o += "\r\nRetry-After: ";
      o += r.retry_after;
    }
    if (close) {
      o += "\r\nConnection: close";
    } else if (http10) {
      o += "\r\nConnection: keep-alive";
    }
    o += "\r\n\r\n";
    if (!head) o += r.body;
    if (close) c.close_after = true;
  }

  // An answer of the server's own; the connection closes after it.
  void QueueOwn(Conn& c, int status, const char* code, std::string_view message) {
    Response& r = c.loop->response;
    r.Reset();
    r.status = status;
    r.close = true;
    r.body = StrCat("{\"error\":\"", code, "\",\"message\":\"", message, "\"}");
    Queue(c, r, false, false);
    handler->AnsweredByServer(c.url.empty() ? std::string_view() : Path(c.url), status);
  }

  void Dispatch(Conn& c) {
    Loop& l = *c.loop;
    const http_parser& p = c.parser;
    Request r;
    r.method = http_method_str(static_cast<http_method>(p.method));
    r.target = c.url;
    r.path = Path(c.url);
    if (r.path.size() < c.url.size()) r.query = std::string_view(c.url).substr(r.path.size() + 1);
    r.body = c.body;
    r.headers = c.headers.data();
    r.num_headers = c.headers.size();
    c.keep_alive = http_should_keep_alive(&p) != 0 && !p.upgrade;
    c.head = r.head();
    c.http10 = p.http_major == 1 && p.http_minor == 0;
    l.response.Reset();
    Ticket t{l.index, c.slot, c.generation};
    if (handler->Handle(r, t, &l.response)) {
      Queue(c, l.response, c.head, c.http10);
    } else {
      c.deferred = true;
      ++l.deferred;
    }
    // Ready for the next request (Accept readies the first); what the
    // parser reports before its request line belongs to no path.
    c.ResetRequest();
  }

  // ------------------------------------------------------------------ I/O

  void SetInterest(Conn& c, uint32_t want) {
    if (!c.open || want == c.interest) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.u64 = c.slot;
    if (epoll_ctl(c.loop->ep, EPOLL_CTL_MOD, c.fd, &ev) == 0) c.interest = want;
  }

  void Close(Conn& c) {
    if (!c.open) return;
    Loop& l = *c.loop;
    if (c.ssl) {
      SSL_free(c.ssl);
      c.ssl = nullptr;
    }
    close(c.fd);  // (leaves the epoll set with it)
    c.fd = -1;
    c.open = false;
    c.deferred = false;
    c.ShrinkBuffers();
    --l.open_conns;
    l.free_slots.push_back(c.slot);
  }

  // Reads once (plain) or until OpenSSL wants more from the socket (TLS),
  // no further than the read-ahead bound of a busy connection.
  void ReadSome(Conn& c) {
    for (;;) {
      if (c.in.size() >= kMaxReadAhead) return;
      c.in.Reserve(kReadChunk);
      const size_t room = c.in.cap - c.in.end;
      ssize_t n;
      if (c.ssl) {
        ERR_clear_error();
        int got = SSL_read(c.ssl, c.in.data + c.in.end,
                           static_cast<int>(std::min<size_t>(room, 1 << 30)));
        if (got <= 0) {
          int e = SSL_get_error(c.ssl, got);
          c.tls_wants_write = e == SSL_ERROR_WANT_WRITE;
          if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return;
          if (e == SSL_ERROR_ZERO_RETURN) {
            c.peer_eof = true;
            return;
          }
          // A failed handshake or a broken record: nothing to answer in.
          Close(c);
          return;
        }
        c.tls_wants_write = false;
        n = got;
      } else {
        n = read(c.fd, c.in.data + c.in.end, room);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
          Close(c);
          return;
        }
        if (n == 0) {
          c.peer_eof = true;
          return;
        }
      }
      c.in.end += static_cast<size_t>(n);
      c.last_io_ms = c.loop->now_ms;
      if (!c.ssl) return;  // level-triggered: epoll says when there is more
    }
  }

  // Writes what `out` holds. True when all of it is written; false when the
  // socket is full (or the connection was closed).
  bool Flush(Conn& c) {
    while (c.out_pos < c.out.size()) {
      const size_t left = c.out.size() - c.out_pos;
      ssize_t n;
      if (c.ssl) {
        ERR_clear_error();
        int put = SSL_write(c.ssl, c.out.data() + c.out_pos,
                            static_cast<int>(std::min<size_t>(left, 1 << 30)));
        if (put <= 0) {
          int e = SSL_get_error(c.ssl, put);
          c.tls_write_wants_read = e == SSL_ERROR_WANT_READ;
          if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) return false;
          Close(c);
          return false;
        }
        c.tls_write_wants_read = false;
        n = put;
      } else {
        n = send(c.fd, c.out.data() + c.out_pos, left, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return false;
          Close(c);
          return false;
        }
      }
      c.out_pos += static_cast<size_t>(n);
      c.last_io_ms = c.loop->now_ms;
    }
    c.out.clear();
    c.out_pos = 0;
    return true;
  }

  // The answer is written and the connection ends: shut down for writing,
  // then read and drop what the client still sends until it closes (or the
  // idle timeout), so that it reads the answer rather than a reset.
  void StartLinger(Conn& c) {
    if (c.ssl) SSL_shutdown(c.ssl);  // close_notify; no wait for the client's
    shutdown(c.fd, SHUT_WR);
    c.lingering = true;
    c.linger_until_ms = c.loop->now_ms + kMaxLingerMs;
    if (c.peer_eof) return Close(c);
    SetInterest(c, EPOLLIN);
  }

  void LingerRead(Conn& c) {
    char drop[16384];
    for (int i = 0; i < 4; ++i) {
      ssize_t n = read(c.fd, drop, sizeof drop);
      if (n > 0) {
        c.last_io_ms = c.loop->now_ms;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      return Close(c);  // the client's end, or an error
    }
  }

  // Parses one request from what is buffered. True when it was answered (or
  // deferred); false when more input is needed.
  bool ParseOne(Conn& c) {
    if (c.in.size() == 0) return false;
    http_parser_pause(&c.parser, 0);
    size_t n = http_parser_execute(&c.parser, &settings, c.in.data + c.in.begin, c.in.size());
    c.in.begin += n;
    if (c.request_ready) {
      c.request_ready = false;
      Dispatch(c);
      return true;
    }
    const http_errno e = HTTP_PARSER_ERRNO(&c.parser);
    if (e == HPE_OK) return false;
    c.in.begin = c.in.end;  // nothing after an error is read as a request
    if (c.error_status != 0) {
      QueueOwn(c, c.error_status, c.error_code, c.error_message);
      c.error_status = 0;
    } else if (e == HPE_INVALID_METHOD) {
      QueueOwn(c, 501, "not_implemented", "an unknown method; the connection is closed");
    } else if (e == HPE_HEADER_OVERFLOW) {
      QueueOwn(c, 431, "header_too_large",
               "the request line and headers are too long; the connection is closed");
    } else if (e == HPE_UNEXPECTED_CONTENT_LENGTH || e == HPE_INVALID_TRANSFER_ENCODING ||
               e == HPE_INVALID_CONTENT_LENGTH || e == HPE_INVALID_HEADER_TOKEN ||
               e == HPE_INVALID_CHUNK_SIZE) {
      QueueOwn(c, 400, "bad_request",
               StrCat("where the body ends is in doubt: ", http_errno_description(e),
                      " (Content-Length twice, or beside a Transfer-Encoding; a Transfer-Encoding "
                      "other than "
                      "chunked; white space in a header name); the connection is closed"));
    } else {
      QueueOwn(c, 400, "bad_request",
               StrCat("cannot parse the request: ", http_errno_description(e),
                      "; the connection is closed"));
    }
    return true;
  }

  // Moves a connection on as far as it goes: writes, parses and answers
  // what is buffered, then registers what it waits for.
  void Pump(Conn& c) {
    for (;;) {
      if (!c.open || c.lingering) return;
      if (c.out_pos < c.out.size() && !Flush(c)) break;
      if (!c.open) return;
      if (c.close_after) return StartLinger(c);
      if (c.deferred) break;
      if (ParseOne(c)) continue;
      if (!c.out.empty()) continue;  // a 100 Continue
      // OpenSSL may hold decrypted bytes that epoll knows nothing of.
      if (c.ssl && !c.peer_eof && SSL_has_pending(c.ssl) && c.in.size() < kMaxReadAhead) {
        size_t before = c.in.size();
        ReadSome(c);
        if (!c.open) return;
        if (c.in.size() > before) continue;
      }
      break;
    }
    if (!c.open) return;
    // The client will send no more, and nothing is left to answer (a
    // request cut short gets none).
    if (c.peer_eof && !c.busy()) return Close(c);
    uint32_t want = 0;
    if ((!c.peer_eof && c.in.size() < kMaxReadAhead) || c.tls_write_wants_read) want |= EPOLLIN;
    if ((c.out_pos < c.out.size() && !c.tls_write_wants_read) || c.tls_wants_write) {
      want |= EPOLLOUT;
    }
    SetInterest(c, want);
  }

  void OnConnEvent(Conn& c, uint32_t events) {
    if (!c.open) return;
    if (c.lingering) {
      if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) LingerRead(c);
      return;
    }
    // Reset, or closed both ways: nothing can be answered any more. (A
    // client that only stops sending shows as EPOLLIN and a read of 0.)
    // Left open, a connection that reads nothing now (its peer's end
    // already seen, or waiting for an answer with its read-ahead full)
    // would be woken at once, again and again.
    if (events & (EPOLLHUP | EPOLLERR)) return Close(c);
    if (events & EPOLLIN || (c.tls_wants_write && (events & EPOLLOUT))) {
      if (!c.peer_eof) ReadSome(c);
    }
    Pump(c);
  }

  // ---------------------------------------------------------------- accept

  void Accept(Loop& l) {
    int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED ||
          err == EPROTO)
        return;
      // Out of descriptors or memory, the pending connection stays in the
      // backlog and the listening socket stays readable: left in the epoll
      // set it would wake the loop at once, again and again (100 % CPU).
      // Accepting pauses for 100 ms instead, while connections close; the
      // errors are logged at most every 10 s.
      ++l.accept_errors;
      if (l.now_ms - l.accept_error_logged_ms >= 10000) {
        std::fprintf(
            stderr, "%s: cannot accept a connection: %s (%lld times in the last 10 s)%s\n",
            options.log_name, std::strerror(err), static_cast<long long>(l.accept_errors),
            err == EMFILE || err == ENFILE ? "; raise the open-file limit (ulimit -n)" : "");
        l.accept_error_logged_ms = l.now_ms;
        l.accept_errors = 0;
      }
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        epoll_ctl(l.ep, EPOLL_CTL_DEL, listen_fd, nullptr);
        l.listening = false;
        l.accept_paused = true;
        l.accept_resume_ms = l.now_ms + 100;
      }
      return;
    }
    uint32_t slot;
    if (!l.free_slots.empty()) {
      slot = l.free_slots.back();
      l.free_slots.pop_back();
    } else {
      slot = static_cast<uint32_t>(l.conns.size());
      l.conns.push_back(std::make_unique<Conn>());
    }
    Conn& c = *l.conns[slot];
    c.loop = &l;
    c.slot = slot;
    ++c.generation;
    c.fd = fd;
    c.open = true;
    ++l.open_conns;
    http_parser_init(&c.parser, HTTP_REQUEST);
    c.parser.data = &c;
    c.in.begin = c.in.end = 0;
    c.out.clear();
    c.out_pos = 0;
    c.ResetRequest();
    c.error_status = 0;
    c.tls_write_wants_read = false;
    c.request_ready = c.deferred = c.close_after = c.lingering = c.peer_eof = c.tls_wants_write =
        false;
    c.keep_alive = true;
    c.last_io_ms = l.now_ms;
    if (tls) {
      c.ssl = SSL_new(tls.get());
      if (!c.ssl || SSL_set_fd(c.ssl, fd) != 1) {
        std::fprintf(stderr, "%s: cannot start TLS on a connection: %s\n", options.log_name,
                     OpenSslErrors().c_str());
        return Close(c);
      }
      SSL_set_accept_state(c.ssl);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = slot;
    if (epoll_ctl(l.ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
      std::fprintf(stderr, "%s: cannot watch a connection: %s\n", options.log_name,
                   std::strerror(errno));
      return Close(c);
    }
    c.interest = EPOLLIN;
  }

  bool Listen(Loop& l) {
    epoll_event ev{};
    // One loop woken per connection, not all of them.
    ev.events = EPOLLIN | (options.threads > 1 ? static_cast<uint32_t>(EPOLLEXCLUSIVE) : 0u);
    ev.data.u64 = kListenTag;
    l.listening = epoll_ctl(l.ep, EPOLL_CTL_ADD, listen_fd, &ev) == 0;
    return l.listening;
  }

  // ------------------------------------------------------------ the loop

  // Answers from other threads, and Stop.
  void OnWake(Loop& l) {
    uint64_t n;
    while (read(l.wake_fd, &n, sizeof n) > 0) {
    }
    bool stop;
    {
      std::lock_guard<std::mutex> lock(l.mu);
      l.taken.swap(l.answers);
      stop = l.stop_requested;
    }
    for (auto& [t, r] : l.taken) {
      --l.deferred;
      if (t.slot >= l.conns.size()) continue;
      Conn& c = *l.conns[t.slot];
      if (!c.open || c.generation != t.generation || !c.deferred) continue;
      c.deferred = false;
      Queue(c, r, c.head, c.http10);
      Pump(c);
    }
    l.taken.clear();
    if (stop && !l.stopping) BeginStop(l);
  }

  // Stop reached this loop: no more connections; answers say Connection:
  // close, so a connection ends after the request it is in.
  void BeginStop(Loop& l) {
    l.stopping = true;
    if (l.listening) epoll_ctl(l.ep, EPOLL_CTL_DEL, listen_fd, nullptr);
    l.listening = false;
    l.accept_paused = false;
    // The last loop to stop accepting stops the socket listening: a
    // connection attempt is refused from now on instead of waiting in the
    // backlog until the process exits.
    if (listening_loops.fetch_sub(1) == 1) shutdown(listen_fd, SHUT_RDWR);
  }

  // Connections with no byte read or written for the idle timeout, but
  // those waiting for an answer from another thread.
  void Sweep(Loop& l) {
    for (auto& cp : l.conns) {
      Conn& c = *cp;
      if (!c.open) continue;
      if ((!c.deferred && l.now_ms - c.last_io_ms >= options.idle_timeout_ms) ||
          (c.lingering && l.now_ms >= c.linger_until_ms)) {
        Close(c);
      }
    }
  }

  void Serve(Loop& l) {
    epoll_event events[64];
    for (;;) {
      int timeout = -1;
      if (l.open_conns > 0) timeout = 1000;
      if (l.accept_paused) timeout = 100;
      if (l.stopping) timeout = 50;
      int n = epoll_wait(l.ep, events, 64, timeout);
      l.now_ms = NowMs();
      for (int i = 0; i < n; ++i) {
        const uint64_t tag = events[i].data.u64;
        if (tag == kListenTag) {
          if (l.listening) Accept(l);
        } else if (tag == kWakeTag) {
          OnWake(l);
        } else if (tag < l.conns.size()) {
          OnConnEvent(*l.conns[tag], events[i].events);
        }
      }
      if (l.accept_paused && l.now_ms >= l.accept_resume_ms && !l.stopping) {
        l.accept_paused = false;
        Listen(l);
      }
      if (l.now_ms >= l.next_sweep_ms) {
        Sweep(l);
        l.next_sweep_ms = l.now_ms + 1000;
      }
      // After Stop, the idle timeout runs from the moment no request waits
      // for its answer (again, when one came in meanwhile).
      if (l.stopping) {
        if (l.deferred > 0) {
          l.drained_at_ms = -1;
        } else {
          if (l.drained_at_ms < 0) l.drained_at_ms = l.now_ms;
          if (l.open_conns == 0 || l.now_ms - l.drained_at_ms >= options.idle_timeout_ms) break;
        }
      }
    }
    for (auto& c : l.conns) Close(*c);
  }

  absl::Status AddLoop() {
    loops.push_back(std::make_unique<Loop>());
    Loop& l = *loops.back();
    l.impl = this;
    l.index = static_cast<uint32_t>(loops.size() - 1);
    std::string which = StrCat("HTTP loop ", loops.size());
    l.ep = epoll_create1(EPOLL_CLOEXEC);
    if (l.ep < 0)
      return absl::InternalError(StrCat(which, ": epoll_create1: ", std::strerror(errno)));
    l.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l.wake_fd < 0)
      return absl::InternalError(StrCat(which, ": eventfd: ", std::strerror(errno)));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kWakeTag;
    if (epoll_ctl(l.ep, EPOLL_CTL_ADD, l.wake_fd, &ev) != 0 || !Listen(l)) {
      return absl::InternalError(StrCat(which, ": epoll_ctl: ", std::strerror(errno)));
    }
    ++listening_loops;
    return absl::OkStatus();
  }

  void Wake(Loop& l) {
    uint64_t one = 1;
    ssize_t w = write(l.wake_fd, &one, sizeof one);
    (void)w;  // a full counter wakes the loop all the same
  }

  // Tells a loop to stop. REQUIRES: life_mu held.
  void SendStop(Loop& l) {
    {
      std::lock_guard<std::mutex> lock(l.mu);
      l.stop_requested = true;
    }
    Wake(l);
  }

  void Teardown() {
    std::lock_guard<std::mutex> lock(life_mu);
    for (auto& l : loops) {
      for (auto& c : l->conns) Close(*c);
      if (l->wake_fd >= 0) close(l->wake_fd);
      if (l->ep >= 0) close(l->ep);
    }
    loops.clear();
    if (listen_fd >= 0) close(listen_fd);
    listen_fd = -1;
    listening_loops = 0;
  }
};

Server::Server(Handler* handler, const Options& options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.handler = handler;
  m.options = options;
  if (m.options.threads < 1) m.options.threads = 1;
  http_parser_settings_init(&m.settings);
  m.settings.on_url = &Impl::OnUrl;
  m.settings.on_header_field = &Impl::OnHeaderField;
  m.settings.on_header_value = &Impl::OnHeaderValue;
  m.settings.on_headers_complete = &Impl::OnHeadersComplete;
  m.settings.on_body = &Impl::OnBody;
  m.settings.on_message_complete = &Impl::OnMessageComplete;
}

Server::~Server() { impl_->Teardown(); }

absl::Status Server::Bind(const std::string& host, int port) {
  Impl& m = *impl_;
  if (m.listen_fd >= 0)
    return absl::FailedPreconditionError(StrCat("already listening on port ", port_));
  // A client gone before its answer is written must not kill the process
  // (send has MSG_NOSIGNAL; OpenSSL's writes have not).
  std::signal(SIGPIPE, SIG_IGN);
  RaiseOpenFileLimit(m.options.log_name);
  absl::Status st = [&]() -> absl::Status {
    if (!m.options.tls_cert.empty()) {
      VIGIL_ASSIGN_OR_RETURN(m.tls, LoadTls(m.options));
    }
    VIGIL_ASSIGN_OR_RETURN(m.listen_fd, ListenOn(host, port));
    port_ = LocalPort(m.listen_fd);
    std::lock_guard<std::mutex> lock(m.life_mu);
    for (int i = 0; i < m.options.threads; ++i) {
      VIGIL_RETURN_IF_ERROR(m.AddLoop());
      if (m.stop_requested) m.SendStop(*m.loops.back());  // Stop came before Bind
    }
    return absl::OkStatus();
  }();
  if (!st.ok()) {
    m.Teardown();
    port_ = 0;
  }
  return st;
}

void Server::Run() {
  Impl& m = *impl_;
  std::vector<Loop*> loops;
  {
    std::lock_guard<std::mutex> lock(m.life_mu);
    for (auto& l : m.loops) loops.push_back(l.get());
  }
  if (loops.empty()) return;
  std::vector<std::thread> threads;
  for (size_t i = 1; i < loops.size(); ++i)
    threads.emplace_back([&m, l = loops[i]] { m.Serve(*l); });
  m.Serve(*loops[0]);
  for (std::thread& t : threads) t.join();
}

void Server::Stop() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.life_mu);
  m.stop_requested = true;
  for (auto& l : m.loops) m.SendStop(*l);
}

void Server::Answer(Ticket ticket, Response&& response) {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.life_mu);
  if (ticket.loop >= m.loops.size()) return;
  Loop& l = *m.loops[ticket.loop];
  {
    std::lock_guard<std::mutex> lock(l.mu);
    l.answers.emplace_back(ticket, std::move(response));
  }
  m.Wake(l);
}

}  // namespace vigil::http
