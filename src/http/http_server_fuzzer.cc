// libFuzzer target: what a client sends, through a real connection to a real
// server on loopback (one event loop; a path starting with /later is
// answered from another thread, as vigil serve's control plane does). Each
// input is sent in two writes at a point its first byte chooses, then the
// client's side is shut down. The server must answer with HTTP/1.1 answers
// only, and end the connection within 10 s: a server that keeps a finished
// connection open, or answers garbage, is a finding (abort).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "http/server.h"

namespace {

using vigil::http::Handler;
using vigil::http::Request;
using vigil::http::Response;
using vigil::http::Server;
using vigil::http::Ticket;

class FuzzHandler : public Handler {
 public:
  Server* server = nullptr;

  bool Handle(const Request& r, Ticket t, Response* out) override {
    out->content_type = "text/plain";
    out->body.assign(r.method);
    out->body += ' ';
    out->body.append(r.target);
    out->body += ' ';
    out->body.append(r.Header("Content-Type"));
    out->body += ' ';
    out->body.append(r.body.substr(0, 64));
    if (r.path.substr(0, 6) == "/later") {
      std::lock_guard<std::mutex> lock(mu_);
      later_.emplace_back(t, std::move(*out));
      cv_.notify_one();
      return false;
    }
    out->close = r.query == "close";
    return true;
  }
  void AnsweredByServer(std::string_view, int) override {}

  void Worker() {
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return !later_.empty(); });
      auto [t, r] = std::move(later_.front());
      later_.pop_front();
      lock.unlock();
      server->Answer(t, std::move(r));
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Ticket, Response>> later_;
};

int port = 0;

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, std::strerror(errno));
  std::abort();
}

void SendAll(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // the server closed first (an answer of its own)
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Never destroyed: the loop and the worker run until the process exits.
  auto* handler = new FuzzHandler;
  vigil::http::Options o;
  o.max_body_bytes = 1024;
  o.max_header_bytes = 512;
  o.idle_timeout_ms = 2000;
  auto* server = new Server(handler, o);
  handler->server = server;
  if (!server->Bind("127.0.0.1", 0).ok()) std::abort();
  port = server->port();
  std::thread([server] { server->Run(); }).detach();
  std::thread([handler] { handler->Worker(); }).detach();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t split = 1 + data[0] % size;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  // A source address of its own per input (127/8 is all loopback): the
  // connections' TIME_WAIT entries would use up one address's ports after
  // some 28 k inputs.
  static uint32_t inputs = 0;
  ++inputs;
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl((127u << 24) | (1u + (inputs & 0xffffff) % 0xfffffe));
  // (libFuzzer's SIGALRM, once a second, interrupts connect and recv.)
  if (bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0)
    Fail("cannot bind the client's socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    pollfd p{fd, POLLOUT, 0};
    int err = errno;
    socklen_t len = sizeof err;
    if (err != EINTR || poll(&p, 1, 10000) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
      Fail("cannot connect to the server");
    }
  }
  SendAll(fd, data + 1, split - 1);
  SendAll(fd, data + split, size - split);
  shutdown(fd, SHUT_WR);
  std::string got;
  char buf[4096];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) break;
    if (n < 0 && (errno != EINTR || std::chrono::steady_clock::now() > deadline)) {
      Fail("the server neither answered nor closed the connection in 10 s");
    }
    if (n > 0) got.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (!got.empty() && got.compare(0, 9, "HTTP/1.1 ") != 0) {
    std::fprintf(stderr, "an answer that is not HTTP/1.1: %.80s\n", got.c_str());
    std::abort();
  }
  return 0;
}
