#include "event/event_log.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/strings.h"
#include "core/time.h"
#include "event/line_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::event {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    std::string t = (std::filesystem::temp_directory_path() / "vigil-event-log-XXXXXX").string();
    path_ = mkdtemp(t.data()) ? t : "";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Basename(const std::string& path) {
  return std::filesystem::path(path).filename().string();
}

std::vector<std::string> Basenames(const std::vector<std::string>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(Basename(p));
  return out;
}

int64_t Ms(const char* text) { return *core::ParseTimestamp(text); }

// A clock the test moves.
struct FakeClock {
  int64_t now = 0;
  std::function<int64_t()> Fn() {
    return [this] { return now; };
  }
};

EventLogOptions Options(const TempDir& dir, FakeClock* clock) {
  EventLogOptions o;
  o.dir = dir.path();
  o.now_ms = clock->Fn();
  return o;
}

TEST(EventLogTest, NamesTheFileByUtcOpenTimeAndSeqAndWritesLinesOnFlush) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T06:07:08.900Z")};
  auto log = EventLog::Open(Options(dir, &clock));
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->current_path(), dir.path() + "/events-20240305-060708-000001.jsonl");
  ASSERT_TRUE((*log)->Append(R"({"event_id":"a"})").ok());
  ASSERT_TRUE((*log)->Append(R"({"event_id":"b"})").ok());
  EXPECT_EQ(Slurp((*log)->current_path()), "") << "Append only buffers";
  ASSERT_TRUE((*log)->Flush().ok());
  EXPECT_EQ(Slurp((*log)->current_path()), "{\"event_id\":\"a\"}\n{\"event_id\":\"b\"}\n");
  EXPECT_EQ((*log)->bytes_written(), 34);
  const std::string path = (*log)->current_path();
  ASSERT_TRUE((*log)->Close().ok());
  EXPECT_EQ((*log)->current_path(), "");
  EXPECT_THAT(Basenames((*log)->Files()), ElementsAre("events-20240305-060708-000001.jsonl"));
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0007, 0u) << "no access for others: the log holds raw events";
}

TEST(EventLogTest, RotatesBySizeWithoutSplittingALine) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T06:07:08Z")};
  EventLogOptions o = Options(dir, &clock);
  o.rotate_bytes = 100;
  o.buffer_bytes = 64;  // also exercise writes inside Append
  auto log = EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  std::string expected;
  for (int i = 0; i < 60; ++i) {
    // Lines of 10 to 40 bytes, and one longer than a whole file.
    std::string line = StrCat("{\"i\":", i, ",\"pad\":\"", std::string(i % 31, 'x'), "\"}");
    if (i == 33) line = StrCat("{\"big\":\"", std::string(150, 'y'), "\"}");
    ASSERT_TRUE((*log)->Append(line).ok());
    expected += line + "\n";
    if (i % 7 == 0) {
      ASSERT_TRUE((*log)->Flush().ok());
    }
  }
  ASSERT_TRUE((*log)->Close().ok());
  const std::vector<std::string> files = (*log)->Files();
  ASSERT_GT(files.size(), 10u);
  std::string all;
  for (const std::string& f : files) {
    const std::string text = Slurp(f);
    ASSERT_FALSE(text.empty()) << f;
    EXPECT_EQ(text.back(), '\n') << f << " ends inside a line";
    const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
    if (lines > 1) {
      EXPECT_LE(text.size(), 100u) << f;
    }
    all += text;
  }
  EXPECT_EQ(all, expected) << "the files in name order are the lines in append order";
  EXPECT_EQ((*log)->bytes_written(), static_cast<int64_t>(expected.size()));
}

TEST(EventLogTest, NamesSortInWriteOrderInOneSecondAndWhenTheClockStepsBack) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T06:07:08Z")};
  EventLogOptions o = Options(dir, &clock);
  o.rotate_bytes = 1;  // a file per line
  auto log = EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 0; i < 12; ++i) {
    if (i == 5) clock.now = Ms("2024-03-05T06:00:00Z");  // NTP steps the clock back
    if (i == 9) clock.now = Ms("2024-03-05T07:00:00Z");
    ASSERT_TRUE((*log)->Append(StrCat(i)).ok());
  }
  ASSERT_TRUE((*log)->Close().ok());
  const std::vector<std::string> files = (*log)->Files();
  ASSERT_EQ(files.size(), 12u);
  for (size_t i = 0; i < files.size(); ++i) EXPECT_EQ(Slurp(files[i]), StrCat(i, "\n")) << files[i];
  EXPECT_EQ(Basename(files[6]), "events-20240305-060708-000007.jsonl")
      << "after the step back, the previous file's time";
  EXPECT_EQ(Basename(files[11]), "events-20240305-070000-000012.jsonl");
}

TEST(EventLogTest, RotatesWhenTheUtcDayChanges) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T23:59:58Z")};
  auto log = EventLog::Open(Options(dir, &clock));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Append("a").ok());
  clock.now = Ms("2024-03-05T23:59:59.999Z");
  ASSERT_TRUE((*log)->Append("b").ok());
  clock.now = Ms("2024-03-06T00:00:00.001Z");
  ASSERT_TRUE((*log)->Append("c").ok());
  EXPECT_EQ(Basename((*log)->current_path()), "events-20240306-000000-000002.jsonl");
  clock.now = Ms("2024-03-05T23:00:00Z");  // stepping back across midnight: no new file
  ASSERT_TRUE((*log)->Append("d").ok());
  ASSERT_TRUE((*log)->Close().ok());
  const std::vector<std::string> files = (*log)->Files();
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(Slurp(files[0]), "a\nb\n");
  EXPECT_EQ(Slurp(files[1]), "c\nd\n");
}

TEST(EventLogTest, DailyRotationCanBeTurnedOff) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T23:59:58Z")};
  EventLogOptions o = Options(dir, &clock);
  o.rotate_daily = false;
  auto log = EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Append("a").ok());
  clock.now = Ms("2024-03-07T00:00:00Z");
  ASSERT_TRUE((*log)->Append("b").ok());
  ASSERT_TRUE((*log)->Close().ok());
  EXPECT_EQ((*log)->Files().size(), 1u);
}

TEST(EventLogTest, ReopeningAppendsToANewFileAndKeepsTheOldOnes) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T06:07:08Z")};
  {
    auto log = EventLog::Open(Options(dir, &clock));
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->Append("first").ok());
    // No Close: the destructor flushes.
  }
  // Gzipped by an operator: still part of the log, and its seq still counts.
  const std::string first = dir.path() + "/events-20240305-060708-000001.jsonl";
  ASSERT_EQ(Slurp(first), "first\n");
  ASSERT_EQ(std::system(StrCat("gzip '", first, "'").c_str()), 0);
  // Files of another prefix or shape are not the log's.
  std::ofstream(dir.path() + "/events-20240305-060708-000099.jsonl.tmp") << "x\n";
  std::ofstream(dir.path() + "/other-20240305-060708-000050.jsonl") << "x\n";
  std::ofstream(dir.path() + "/events-2024035-060708-000050.jsonl") << "x\n";
  auto log = EventLog::Open(Options(dir, &clock));  // the same second
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ(Basename((*log)->current_path()), "events-20240305-060708-000002.jsonl");
  ASSERT_TRUE((*log)->Append("second").ok());
  ASSERT_TRUE((*log)->Close().ok());
  EXPECT_THAT(Basenames((*log)->Files()), ElementsAre("events-20240305-060708-000001.jsonl.gz",
                                                      "events-20240305-060708-000002.jsonl"));
  // The log reads back as one stream through the same reader backfill uses.
  std::string all;
  for (const std::string& f : (*log)->Files()) {
    auto r = LineReader::Open(f, LineReaderOptions());
    ASSERT_TRUE(r.ok()) << r.status();
    LineReader::Line line;
    while ((*r)->Next(&line)) all += StrCat(line.text, "\n");
  }
  EXPECT_EQ(all, "first\nsecond\n");
}

TEST(EventLogTest, RejectsALineHoldingANewline) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T06:07:08Z")};
  auto log = EventLog::Open(Options(dir, &clock));
  ASSERT_TRUE(log.ok()) << log.status();
  const absl::Status st = (*log)->Append("{\"a\":1,\n\"b\":2}");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("newline at byte 7"));
  ASSERT_TRUE((*log)->Append("ok").ok()) << "a refused line does not stop the log";
  ASSERT_TRUE((*log)->Flush().ok());
  EXPECT_EQ(Slurp((*log)->current_path()), "ok\n");
  EXPECT_EQ((*log)->bytes_written(), 3);
}

TEST(EventLogTest, RefusesBadOptionsAndCallsAfterClose) {
  TempDir dir;
  EventLogOptions o;
  EXPECT_EQ(EventLog::Open(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.dir = dir.path();
  o.prefix = "a/b";
  EXPECT_THAT(std::string(EventLog::Open(o).status().message()), HasSubstr("prefix"));
  o.prefix = "events";
  o.rotate_bytes = 0;
  EXPECT_THAT(std::string(EventLog::Open(o).status().message()), HasSubstr("rotate_bytes"));
  o.rotate_bytes = 100;
  std::ofstream(dir.path() + "/file") << "x";
  o.dir = dir.path() + "/file/log";
  auto bad = EventLog::Open(o);
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr(o.dir));

  o.dir = dir.path() + "/nested/log";  // created
  auto log = EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Close().ok());
  ASSERT_TRUE((*log)->Close().ok());
  EXPECT_EQ((*log)->Append("x").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*log)->Flush().code(), absl::StatusCode::kFailedPrecondition);
}

// A write error (here: over RLIMIT_FSIZE, in a child process so that the
// limit does not touch the test runner) cuts the file back to whole lines
// and stops the log.
TEST(EventLogTest, AWriteErrorLeavesWholeLinesAndStopsTheLog) {
  TempDir dir;
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    EventLogOptions o;
    o.dir = dir.path();
    auto log = EventLog::Open(o);
    if (!log.ok()) _exit(10);
    if (!(*log)->Append("line one").ok() || !(*log)->Flush().ok()) _exit(11);
    rlimit lim{20, 20};  // room for "line one\n" and 11 bytes more
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(12);
    if (!(*log)->Append("line two is longer").ok()) _exit(13);
    const absl::Status st = (*log)->Flush();
    if (st.code() != absl::StatusCode::kUnavailable) _exit(14);
    if (st.message().find((*log)->current_path()) == std::string::npos) _exit(15);
    if ((*log)->Append("three").code() != absl::StatusCode::kUnavailable) _exit(16);
    if (Slurp((*log)->current_path()) != "line one\n") _exit(17);
    if ((*log)->Close().code() != absl::StatusCode::kUnavailable) _exit(18);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the step that failed: see the _exit codes in the test";
}

}  // namespace
}  // namespace vigil::event
