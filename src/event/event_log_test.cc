#include "event/event_log.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/strings.h"
#include "core/testing/temp_dir.h"
#include "core/time.h"
#include "event/event_reader.h"
#include "event/line_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::event {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

using vigil::testing::TempDir;

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

// Two servers on one folder would interleave their events into a stream
// neither saw: the second is refused while the first holds the log.
TEST(EventLogTest, ASecondWriterOfTheSameLogIsRefusedUntilTheFirstCloses) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T06:07:08Z")};
  auto first = EventLog::Open(Options(dir, &clock));
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = EventLog::Open(Options(dir, &clock));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition) << second.status();
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use by another process"));
  ASSERT_TRUE((*first)->Close().ok());  // Close lets the log go
  auto third = EventLog::Open(Options(dir, &clock));
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_TRUE((*third)->Append("x").ok());
  ASSERT_TRUE((*third)->Close().ok());
  EXPECT_EQ((*third)->Files().size(), 2u);
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
int OpenFds() {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// What was written reaches the disk without the writer waiting: the log's
// own thread syncs the current file every interval, and each file rotated
// away once more before it closes it; Close syncs the rest. No descriptor
// is left open.
TEST(EventLogTest, SyncsTheCurrentFileAndEachRotatedOneAndClosesThemAll) {
  TempDir dir;
  FakeClock clock{Ms("2024-03-05T06:07:08Z")};
  EventLogOptions o = Options(dir, &clock);
  o.rotate_bytes = 100;
  o.sync_interval_ms = 5;
  const int fds = OpenFds();
  {
    auto log = EventLog::Open(o);
    ASSERT_TRUE(log.ok()) << log.status();
    ASSERT_TRUE((*log)->Append("{\"first\":1}").ok());
    ASSERT_TRUE((*log)->Flush().ok());
    for (int i = 0; i < 400 && (*log)->syncs() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_GT((*log)->syncs(), 0) << "the current file was not synced";
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE((*log)->Append(StrCat("{\"i\":", i, ",\"pad\":\"", std::string(30, 'x'), "\"}")).ok());
      ASSERT_TRUE((*log)->Flush().ok());
    }
    const int64_t before_close = (*log)->syncs();
    ASSERT_TRUE((*log)->Close().ok());
    const size_t files = (*log)->Files().size();
    ASSERT_GT(files, 10u);
    // Every file at least once, the last one at Close.
    EXPECT_GE((*log)->syncs(), static_cast<int64_t>(files));
    EXPECT_GT((*log)->syncs(), before_close);
    EXPECT_EQ(OpenFds(), fds);
  }
  o.sync_interval_ms = 0;  // never (the default): no thread, no sync
  auto log = EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Append("{}").ok());
  ASSERT_TRUE((*log)->Close().ok());
  EXPECT_EQ((*log)->syncs(), 0);
  o.sync_interval_ms = -1;
  EXPECT_THAT(std::string(EventLog::Open(o).status().message()), HasSubstr("sync_interval_ms"));
}

// A file size limit (EFBIG): the write that finds no room is cut back to
// whole lines and dropped, and the log goes on in a new file. (A full disk
// is the same but for the new file; other write errors, and failed syncs,
// stop the log.)
TEST(EventLogTest, AWriteWithoutRoomLeavesWholeLinesIsDroppedAndTheLogGoesOn) {
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
    rlimit lim{20, RLIM_INFINITY};  // room for "line one\n" and 11 bytes more
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(12);
    if (!(*log)->Append("line two is longer").ok()) _exit(13);
    const absl::Status st = (*log)->Flush();
    if (st.code() != absl::StatusCode::kUnavailable) _exit(14);
    if (st.message().find((*log)->current_path()) == std::string::npos) _exit(15);
    if (Slurp((*log)->current_path()) != "line one\n") _exit(16);
    if ((*log)->bytes_written() != 9) _exit(17);  // the dropped line is not counted
    // The limit stays: the next line starts a file of its own, where it fits.
    const std::string first = (*log)->current_path();
    if (!(*log)->Append("three").ok() || !(*log)->Flush().ok()) _exit(18);
    if ((*log)->current_path() == first || Slurp(first) != "line one\n") _exit(19);
    lim.rlim_cur = RLIM_INFINITY;  // room again: the longer line goes in too
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(20);
    if (!(*log)->Append("line two is longer").ok() || !(*log)->Flush().ok()) _exit(21);
    if (Slurp((*log)->current_path()) != "three\nline two is longer\n") _exit(22);
    if ((*log)->bytes_written() != 34) _exit(23);
    if (!(*log)->Close().ok()) _exit(24);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the step that failed: see the _exit codes in the test";
}

// --- Reading the log back: ExpandEventPaths and EventReader::OpenFiles ---

std::shared_ptr<const Schema> TxSchema() {
  auto s = Schema::LoadString(R"(
csv:
  event_type: tx
event_types:
  tx:
    fields:
      id: {type: int, role: event_id}
      ts: {type: timestamp, role: event_time}
      amount: {type: decimal, min: 0, required: true, role: amount, currency: EUR}
)",
                              "s.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

std::string Write(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::string path = dir.path() + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

std::string Json(int id, int amount = 1) {
  return StrCat("{\"event_type\":\"tx\",\"id\":", id,
                ",\"ts\":\"2024-01-01T00:00:", id < 10 ? "0" : "", id, "Z\",\"amount\":", amount,
                "}\n");
}

struct Read {
  std::vector<std::string> ids;  // accepted, in order
  std::vector<Rejection> rejected;
  std::vector<int64_t> record_nos;  // of every record
  std::vector<std::string> files;   // current_path() after every record
};

Read ReadAll(EventReader& r) {
  Read out;
  Record rec;
  Rejection rej;
  while (true) {
    const auto res = r.Next(&rec, &rej);
    if (res == EventReader::Result::kEnd) break;
    out.files.push_back(Basename(r.current_path()));
    if (res == EventReader::Result::kRecord) {
      out.ids.push_back(std::string(rec.event_id));
      out.record_nos.push_back(rec.record_no);
    } else {
      out.rejected.push_back(rej);
      out.record_nos.push_back(rej.record_no);
    }
  }
  return out;
}

TEST(EventReaderFilesTest, ReadsFilesAsOneStreamNumberingRecordsAcrossAndLinesWithin) {
  TempDir dir;
  PiiHasher h("k");
  const std::string a_text = Json(1) + Json(2);
  const std::string c_text = Json(3) + "\n" + Json(4, -5) + Json(1);
  const std::string a = Write(dir, "a.jsonl", a_text);
  const std::string b = Write(dir, "b.jsonl", "");  // a freshly rotated, empty file
  const std::string c = dir.path() + "/c.jsonl.gz";
  ASSERT_EQ(std::system(StrCat("printf '%s' '", c_text, "' | gzip > '", c, "'").c_str()), 0);
  auto r = EventReader::OpenFiles({a, b, c}, TxSchema(), &h);
  ASSERT_TRUE(r.ok()) << r.status();
  const Read got = ReadAll(**r);
  ASSERT_TRUE((*r)->status().ok()) << (*r)->status();
  EXPECT_THAT(got.ids, ElementsAre("1", "2", "3"));
  EXPECT_THAT(got.record_nos, ElementsAre(1, 2, 3, 4, 5));
  EXPECT_THAT(got.files,
              ElementsAre("a.jsonl", "a.jsonl", "c.jsonl.gz", "c.jsonl.gz", "c.jsonl.gz"));
  EXPECT_EQ((*r)->file_index(), 2u);
  ASSERT_EQ(got.rejected.size(), 2u);
  // Line 3 of c: a blank line is not a record but counts as a line.
  EXPECT_EQ(got.rejected[0].file, c);
  EXPECT_EQ(got.rejected[0].line_no, 3);
  EXPECT_EQ(got.rejected[0].record_no, 4);
  EXPECT_EQ(got.rejected[0].violations[0].rule, Rule::kMin);
  // Event 1 again, in another file: duplicates are caught across files.
  EXPECT_EQ(got.rejected[1].line_no, 4);
  EXPECT_EQ(got.rejected[1].violations[0].rule, Rule::kDuplicateEventId);
  EXPECT_EQ((*r)->bytes_read(), static_cast<int64_t>(a_text.size() + c_text.size()));
}

TEST(EventReaderFilesTest, EachCsvFileHasItsOwnHeader) {
  TempDir dir;
  PiiHasher h("k");
  const std::string a = Write(dir, "a.csv", "id,ts,amount\n1,2024-01-01 00:00:01,5\n");
  const std::string b =
      Write(dir, "b.csv", "amount,id,ts\n6,2,2024-01-01 00:00:02\n-1,3,2024-01-01 00:00:03\n");
  auto r = EventReader::OpenFiles({a, b}, TxSchema(), &h);
  ASSERT_TRUE(r.ok()) << r.status();
  const Read got = ReadAll(**r);
  EXPECT_TRUE((*r)->status().ok()) << (*r)->status();
  EXPECT_THAT(got.ids, ElementsAre("1", "2"));
  ASSERT_EQ(got.rejected.size(), 1u);
  EXPECT_EQ(got.rejected[0].file, b);
  EXPECT_EQ(got.rejected[0].line_no, 3);
  EXPECT_EQ(got.rejected[0].record_no, 3);
}

TEST(EventReaderFilesTest, RefusesMissingFilesMixedFormatsAndStdinAmongOthers) {
  TempDir dir;
  PiiHasher h("k");
  const std::string a = Write(dir, "a.jsonl", Json(1));
  const std::string csv = Write(dir, "b.csv", "id,ts,amount\n");
  auto missing = EventReader::OpenFiles({a, dir.path() + "/gone.jsonl"}, TxSchema(), &h);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("gone.jsonl"));
  auto mixed = EventReader::OpenFiles({a, csv}, TxSchema(), &h);
  EXPECT_EQ(mixed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(mixed.status().message()), HasSubstr("one format"));
  auto stdin_too = EventReader::OpenFiles({a, "-"}, TxSchema(), &h);
  EXPECT_THAT(std::string(stdin_too.status().message()), HasSubstr("standard input"));
  auto a_dir = EventReader::OpenFiles({dir.path()}, TxSchema(), &h);
  EXPECT_THAT(std::string(a_dir.status().message()), HasSubstr("is a directory"));
  EXPECT_EQ(EventReader::OpenFiles({}, TxSchema(), &h).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EventReaderFilesTest, AFileOfAnotherFormatFoundByContentEndsTheStreamWithAnError) {
  TempDir dir;
  PiiHasher h("k");
  const std::string a = Write(dir, "a", Json(1));  // no extension: sniffed
  const std::string b = Write(dir, "b", "id,ts,amount\n2,2024-01-01 00:00:02,5\n");
  auto r = EventReader::OpenFiles({a, b}, TxSchema(), &h);
  ASSERT_TRUE(r.ok()) << r.status();
  const Read got = ReadAll(**r);
  EXPECT_THAT(got.ids, ElementsAre("1"));
  EXPECT_EQ((*r)->status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string((*r)->status().message()), HasSubstr(b + ": csv, but " + a));
}

TEST(ExpandEventPathsTest, ADirectoryIsItsJsonlFilesInNameOrder) {
  TempDir dir;
  Write(dir, "events-2.jsonl", "");
  Write(dir, "events-1.jsonl.gz", "");
  Write(dir, "events-3.jsonl", "");
  Write(dir, ".hidden.jsonl", "");
  Write(dir, "notes.txt", "");
  Write(dir, "events-4.jsonl.tmp", "");
  std::filesystem::create_directory(dir.path() + "/sub.jsonl");
  const std::string other = Write(dir, "sub.jsonl/x.csv", "");
  auto paths = ExpandEventPaths({other, dir.path() + "/", "-"});
  EXPECT_FALSE(paths.ok()) << "- among others";
  paths = ExpandEventPaths({other, dir.path() + "/"});
  ASSERT_TRUE(paths.ok()) << paths.status();
  EXPECT_THAT(*paths, ElementsAre(other, dir.path() + "/events-1.jsonl.gz",
                                  dir.path() + "/events-2.jsonl", dir.path() + "/events-3.jsonl"));
  auto empty = ExpandEventPaths({dir.path() + "/sub.jsonl"});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("no *.jsonl"));
  EXPECT_EQ(ExpandEventPaths({dir.path() + "/nope"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(*ExpandEventPaths({"-"}), ElementsAre("-"));
}

TEST(EventReaderFilesTest, ARotatedEventLogReadsBackInAppendOrder) {
  TempDir dir;
  PiiHasher h("k");
  FakeClock clock{Ms("2024-03-05T23:59:00Z")};
  EventLogOptions o = Options(dir, &clock);
  o.rotate_bytes = 150;
  auto log = EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  std::vector<std::string> ids;
  for (int i = 1; i <= 40; ++i) {
    if (i == 30) clock.now = Ms("2024-03-06T00:00:01Z");
    std::string line = Json(i % 60);
    line.pop_back();
    ASSERT_TRUE((*log)->Append(line).ok());
    ids.push_back(StrCat(i % 60));
  }
  ASSERT_TRUE((*log)->Close().ok());
  auto paths = ExpandEventPaths({dir.path()});
  ASSERT_TRUE(paths.ok()) << paths.status();
  EXPECT_EQ(*paths, (*log)->Files());
  ASSERT_GT(paths->size(), 5u);
  auto r = EventReader::OpenFiles(*paths, TxSchema(), &h);
  ASSERT_TRUE(r.ok()) << r.status();
  const Read got = ReadAll(**r);
  EXPECT_TRUE((*r)->status().ok()) << (*r)->status();
  EXPECT_TRUE(got.rejected.empty());
  EXPECT_EQ(got.ids, ids);
}

// A saved state names its log by this id: made once, the same at every
// call after, another in another folder, and a damaged one is an error.
TEST(EventLogIdTest, IsMadeOnceKeptAndTellsFoldersApart) {
  TempDir a, b;
  auto id = EventLogId(a.path());
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_THAT(*id, ::testing::MatchesRegex("[0-9a-f]{32}"));
  EXPECT_EQ(*EventLogId(a.path()), *id);
  EXPECT_NE(*EventLogId(b.path()), *id);
  std::ofstream(a.path() + "/.log-id") << "not an id\n";
  const auto bad = EventLogId(a.path());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bad.status().message(), HasSubstr(a.path() + "/.log-id"));
}

}  // namespace
}  // namespace vigil::event
