#include "http/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/strings.h"
#include "gtest/gtest.h"

namespace vigil::http {
namespace {

// Answers "<method> <path> <query> <body>"; a path of /later is answered
// from another thread.
class EchoHandler : public Handler {
 public:
  Server* server = nullptr;
  std::mutex mu;
  std::vector<std::thread> later;
  std::vector<std::pair<std::string, int>> own;  // AnsweredByServer

  bool Handle(const Request& r, Ticket t, Response* out) override {
    std::string text =
        StrCat(r.method, " ", r.path, " ", r.query, " ", r.body, " ", r.Header("X-Test"));
    if (r.path == "/later") {
      std::lock_guard<std::mutex> lock(mu);
      later.emplace_back([this, t, text] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        Response resp;
        resp.content_type = "text/plain";
        resp.body = text;
        server->Answer(t, std::move(resp));
      });
      return false;
    }
    out->content_type = "text/plain";
    out->body = text;
    if (r.path == "/close") out->close = true;
    return true;
  }
  void AnsweredByServer(std::string_view path, int status) override {
    std::lock_guard<std::mutex> lock(mu);
    own.emplace_back(std::string(path), status);
  }
  ~EchoHandler() override {
    for (auto& t : later) t.join();
  }
};

class ServerTest : public ::testing::Test {
 protected:
  void Start(Options o = {}) {
    o.idle_timeout_ms = 2000;
    server_ = std::make_unique<Server>(&handler_, o);
    handler_.server = server_.get();
    ASSERT_TRUE(server_->Bind("127.0.0.1", 0).ok());
    thread_ = std::thread([this] { server_->Run(); });
  }
  void TearDown() override {
    if (server_) server_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  int Connect() {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(server_->port()));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }
  static void Send(int fd, const std::string& s) {
    ASSERT_EQ(send(fd, s.data(), s.size(), 0), static_cast<ssize_t>(s.size()));
  }
  // Reads until `n` answers (not counting a 100 Continue) have arrived
  // whole, or the connection ends.
  static std::string ReadAnswers(int fd, int n) {
    std::string got;
    char buf[65536];
    for (;;) {
      int whole = 0;
      size_t at = 0;
      for (;;) {
        size_t h = got.find("\r\n\r\n", at);
        if (h == std::string::npos) break;
        size_t cl = got.find("Content-Length: ", at);
        size_t len = cl != std::string::npos && cl < h ? std::stoul(got.substr(cl + 16)) : 0;
        const bool interim = got.compare(at, 12, "HTTP/1.1 100") == 0;
        if (got.size() < h + 4 + len) break;
        at = h + 4 + len;
        if (!interim) ++whole;
      }
      if (whole >= n) return got;
      ssize_t r = recv(fd, buf, sizeof buf, 0);
      if (r <= 0) return got;
      got.append(buf, static_cast<size_t>(r));
    }
  }
  static int Count(const std::string& s, const std::string& what) {
    int n = 0;
    for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
    return n;
  }

  EchoHandler handler_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
};

TEST_F(ServerTest, AnswersPipelinedRequestsInOrderOnOneConnection) {
  Start();
  int fd = Connect();
  Send(fd,
       "GET /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: one\r\n\r\n"
       "POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
       "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
       "chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n");
  std::string got = ReadAnswers(fd, 3);
  size_t a = got.find("GET /a x=1  one"), b = got.find("POST /b  hello"),
         c = got.find("POST /c  abcde");
  EXPECT_NE(a, std::string::npos) << got;
  EXPECT_NE(b, std::string::npos) << got;
  EXPECT_NE(c, std::string::npos) << got;
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_EQ(Count(got, "HTTP/1.1 200 OK\r\n"), 3) << got;
  EXPECT_EQ(Count(got, "Connection: close"), 0) << got;
  close(fd);
}

TEST_F(ServerTest, ADeferredAnswerComesFromAnotherThreadBeforeTheNextRequest) {
  Options o;
  o.threads = 2;
  Start(o);
  int fd = Connect();
  Send(fd, "POST /later HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET /now HTTP/1.1\r\n\r\n");
  std::string got = ReadAnswers(fd, 2);
  size_t later = got.find("POST /later  hi"), now = got.find("GET /now");
  ASSERT_NE(later, std::string::npos) << got;
  ASSERT_NE(now, std::string::npos) << got;
  EXPECT_LT(later, now);
  close(fd);
}

TEST_F(ServerTest, HeadGetsTheLengthWithoutTheBody) {
  Start();
  int fd = Connect();
  Send(fd, "HEAD /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n");
  std::string got = ReadAnswers(fd, 2);
  EXPECT_NE(got.find("Content-Length: 10\r\n"), std::string::npos) << got;  // "HEAD /x   "
  EXPECT_EQ(got.find("HEAD /x"), std::string::npos) << got;
  EXPECT_NE(got.find("GET /y"), std::string::npos) << got;
  close(fd);
}

TEST_F(ServerTest, RefusesWhatItCannotFrameAndClosesTheConnection) {
  Options o;
  o.max_body_bytes = 10;
  o.max_header_bytes = 200;
  Start(o);
  struct Case {
    std::string request;
    std::string status;
  } cases[] = {
      {"POST /p HTTP/1.1\r\n\r\n", "411 Length Required"},
      {"POST /p HTTP/1.1\r\nContent-Length: 11\r\n\r\n01234567890", "413 Payload Too Large"},
      {"POST /p HTTP/1.1\r\nTransfer-Encoding: "
       "chunked\r\n\r\n6\r\n012345\r\n6\r\n012345\r\n0\r\n\r\n",
       "413 Payload Too Large"},
      {"POST /p HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", "400 Bad Request"},
      {"POST /p HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
       "400 Bad Request"},
      {"POST /p HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n", "400 Bad Request"},
      {"POST /p HTTP/1.1\r\nContent-Length : 2\r\n\r\nab", "400 Bad Request"},
      {"HEAD /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nab", "400 Bad Request"},
      {"BREW /p HTTP/1.1\r\n\r\n", "501 Not Implemented"},
      {"POST /p HTTP/1.1\r\nContent-Length: 2\r\nExpect: tea\r\n\r\nab", "417 Expectation Failed"},
      {"GET /p HTTP/1.1\r\nX-Big: " + std::string(300, 'x') + "\r\n\r\n",
       "431 Request Header Fields Too Large"},
  };
  for (const Case& c : cases) {
    int fd = Connect();
    // A request after it on the connection is never answered.
    Send(fd, c.request + "GET /smuggled HTTP/1.1\r\n\r\n");
    std::string got = ReadAnswers(fd, 2);
    EXPECT_EQ(got.rfind("HTTP/1.1 " + c.status + "\r\n", 0), 0u) << c.request << "\n" << got;
    EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
    EXPECT_NE(got.find("{\"error\":\""), std::string::npos) << got;
    EXPECT_EQ(got.find("smuggled"), std::string::npos) << got;
    EXPECT_EQ(Count(got, "HTTP/1.1 "), 1) << got;
    close(fd);
  }
  std::lock_guard<std::mutex> lock(handler_.mu);
  ASSERT_EQ(handler_.own.size(), std::size(cases));
  EXPECT_EQ(handler_.own[1], (std::pair<std::string, int>("/p", 413)));
}

TEST_F(ServerTest, ChunkedTrailersLeaveTheHeadersIntact) {
  Start();
  int fd = Connect();
  // The trailer is read after the headers' views were made; were it stored
  // beside them, their buffer would move under the views.
  const std::string value(40, 'v');
  Send(fd, "POST /t HTTP/1.1\r\nX-Test: " + value +
               "\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-Trailer: " +
               std::string(8000, 't') + "\r\nX-Test: trailer\r\n\r\n");
  std::string got = ReadAnswers(fd, 1);
  EXPECT_NE(got.find("POST /t  ab " + value), std::string::npos) << got;
  EXPECT_EQ(got.find("trailer"), std::string::npos) << got;
  close(fd);
}

TEST_F(ServerTest, TrailersCountAgainstTheHeaderLimit) {
  Options o;
  o.max_header_bytes = 200;
  Start(o);
  int fd = Connect();
  Send(fd, "POST /t HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\nX-T: " +
               std::string(300, 't') + "\r\n\r\n");
  std::string got = ReadAnswers(fd, 1);
  EXPECT_EQ(got.rfind("HTTP/1.1 431 ", 0), 0u) << got;
  close(fd);
}

TEST_F(ServerTest, AnErrorAfterACompleteRequestIsNotCountedUnderItsPath) {
  Start();
  int fd = Connect();
  Send(fd, "GET /a HTTP/1.1\r\n\r\n\x01garbage\r\n\r\n");
  std::string got = ReadAnswers(fd, 2);
  EXPECT_NE(got.find("GET /a"), std::string::npos) << got;
  EXPECT_NE(got.find("HTTP/1.1 501 "), std::string::npos) << got;  // "\x01garbage": no method
  std::lock_guard<std::mutex> lock(handler_.mu);
  ASSERT_EQ(handler_.own.size(), 1u);
  EXPECT_EQ(handler_.own[0], (std::pair<std::string, int>("", 501)));
}

TEST_F(ServerTest, ExpectContinueGetsA100ThenTheAnswer) {
  Start();
  int fd = Connect();
  Send(fd, "POST /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n");
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  ASSERT_GT(n, 0);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(n)), "HTTP/1.1 100 Continue\r\n\r\n");
  Send(fd, "ok");
  std::string got = ReadAnswers(fd, 1);
  EXPECT_NE(got.find("POST /e  ok"), std::string::npos) << got;
  close(fd);
}

TEST_F(ServerTest, Http10ClosesUnlessKeepAliveIsAsked) {
  Start();
  int fd = Connect();
  Send(fd, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  std::string got = ReadAnswers(fd, 1);
  EXPECT_NE(got.find("Connection: keep-alive"), std::string::npos) << got;
  Send(fd, "GET /b HTTP/1.0\r\n\r\n");
  got = ReadAnswers(fd, 1);
  EXPECT_NE(got.find("Connection: close"), std::string::npos) << got;
  char c;
  EXPECT_EQ(recv(fd, &c, 1, 0), 0);  // closed
  close(fd);
}

TEST_F(ServerTest, StopEndsRunWithAnIdleConnectionAfterTheIdleTimeout) {
  Start();
  int fd = Connect();
  Send(fd, "GET /a HTTP/1.1\r\n\r\n");
  ReadAnswers(fd, 1);
  auto t0 = std::chrono::steady_clock::now();
  server_->Stop();
  thread_.join();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(took, 4.0);
  // The listening socket is closed: a new connection is refused.
  int again = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(server_->port()));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_NE(connect(again, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  close(again);
  close(fd);
}

TEST_F(ServerTest, AClientThatNeverReadsIsNotBufferedWithoutBound) {
  Start();
  int fd = Connect();
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  timeval tv{0, 200 * 1000};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  std::string many;
  for (int i = 0; i < 1000; ++i) many += "GET /healthz HTTP/1.1\r\n\r\n";
  size_t sent = 0;
  for (int i = 0; i < 2000; ++i) {
    ssize_t n = send(fd, many.data(), many.size(), 0);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  // The server stopped reading: the sends block long before 50 MB.
  EXPECT_LT(sent, 20u << 20);
  close(fd);
}

TEST(PercentDecodeTest, DecodesHexPairsAndKeepsTheRest) {
  EXPECT_EQ(PercentDecode("a%2Fb%41"), "a/bA");
  EXPECT_EQ(PercentDecode("50%+x%4"), "50%+x%4");
  EXPECT_EQ(PercentDecode("%zz"), "%zz");
  EXPECT_EQ(PercentDecode("%-1%+f%0x"), "%-1%+f%0x");  // from_chars would take a sign
}

}  // namespace
}  // namespace vigil::http
