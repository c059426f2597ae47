// `vigil backfill` over several files — a rotated event log — gives exactly
// what it gives over the one file they were cut from: the same rows, the same
// features, the same training labels (whose first pass reads the files too),
// byte for byte. The files are named by --events repeated, by --events with
// several values, or by a directory (its *.jsonl[.gz] in name order); one is
// gzipped; CSV files each bring their header. The event log itself
// (event/event_log.h) writing examples/exchange/sample.jsonl with rotation
// backfills to the same bytes too.
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "core/strings.h"
#include "event/event_log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace vigil::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kPiiKey[] = "integration-test-key";

std::string Exchange() { return SourceDir() + "/examples/exchange"; }

RunOptions In(const TempDir& dir) {
  RunOptions o;
  o.cwd = dir.path();
  o.env["VIGIL_PII_KEY"] = kPiiKey;
  return o;
}

// Runs backfill of the exchange example over `events` (each preceded by
// --events unless `one_flag`) into `out`; the run must succeed.
RunResult Backfill(const TempDir& dir, const std::vector<std::string>& events,
                   const std::string& out, bool one_flag = false,
                   const std::string& schema = Exchange() + "/schema.yaml",
                   const std::string& features = Exchange() + "/features.yaml") {
  std::vector<std::string> args = {"backfill", "--schema", schema, "--features",
                                   features,   "--out",    out};
  if (one_flag) args.push_back("--events");
  for (const std::string& e : events) {
    if (!one_flag) args.push_back("--events");
    args.push_back(e);
  }
  RunResult r = RunVigil(args, In(dir));
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  return r;
}

// The .meta.json beside a backfill output, without its creation time.
nlohmann::json Meta(const std::string& out) {
  nlohmann::json j = nlohmann::json::parse(ReadFile(out + ".meta.json"), nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << out << ".meta.json";
  if (j.is_object()) j.erase("created");
  return j;
}

// `lines` cut into files of the sizes given; the rest goes in the last.
std::vector<std::string> Cut(const std::vector<std::string>& lines, std::vector<size_t> sizes) {
  std::vector<std::string> parts(sizes.size() + 1);
  size_t part = 0, in_part = 0;
  for (const std::string& l : lines) {
    while (part < sizes.size() && in_part == sizes[part]) {
      ++part;
      in_part = 0;
    }
    parts[part] += l + "\n";
    ++in_part;
  }
  return parts;
}

// A schema given as a pipe (`--schema <(...)`) can be read
// once: backfill reads it once, for the spec and the events alike.
TEST(BackfillFilesTest, TheSchemaIsReadOnceSoItMayComeFromAPipe) {
  TempDir dir;
  const std::string whole = Exchange() + "/sample.jsonl";
  Backfill(dir, {whole}, dir.File("file.csv"));
  // (bash's process substitution: a pipe, which a second open finds empty.)
  const RunResult r = RunProgram("/bin/bash",
                                 {"-c",
                                  StrCat("\"$0\" backfill --schema <(cat \"$1\") --features \"$2\" "
                                         "--events \"$3\" --out \"$4\""),
                                  VigilBinary(), Exchange() + "/schema.yaml",
                                  Exchange() + "/features.yaml", whole, dir.File("pipe.csv")},
                                 In(dir));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(ReadFile(dir.File("pipe.csv")), ReadFile(dir.File("file.csv")));
}

TEST(BackfillFilesTest, ARotatedLogBackfillsExactlyAsTheWholeFile) {
  TempDir dir;
  const std::string whole = Exchange() + "/sample.jsonl";
  Backfill(dir, {whole}, dir.File("whole.csv"));
  const std::string expected = ReadFile(dir.File("whole.csv"));
  // The sample's label events (lines 26-28) land in the last file, after the
  // events they label: the label pass must read all the files.
  ASSERT_THAT(expected, HasSubstr(",1,"));

  const std::vector<std::string> parts = Cut(SplitLines(ReadFile(whole)), {9, 11});
  ASSERT_EQ(parts.size(), 3u);
  const std::string log = dir.File("log");
  ASSERT_TRUE(std::filesystem::create_directory(log));
  const std::vector<std::string> files = {log + "/events-20240101-080000-000001.jsonl",
                                          log + "/events-20240101-110000-000002.jsonl.gz",
                                          log + "/events-20240102-000000-000003.jsonl"};
  WriteFile(files[0], parts[0]);
  WriteGzipFile(files[1], parts[1]);
  WriteFile(files[2], parts[2]);
  // Not part of the log: hidden, or not *.jsonl[.gz].
  WriteFile(log + "/.events-20240101-000000-000000.jsonl", parts[0]);
  WriteFile(log + "/notes.txt", "not events\n");

  Backfill(dir, files, dir.File("three.csv"));
  EXPECT_EQ(ReadFile(dir.File("three.csv")), expected) << "--events A --events B --events C";
  Backfill(dir, files, dir.File("one_flag.csv"), /*one_flag=*/true);
  EXPECT_EQ(ReadFile(dir.File("one_flag.csv")), expected) << "--events A B C";
  const RunResult from_dir = Backfill(dir, {log}, dir.File("dir.csv"));
  EXPECT_EQ(ReadFile(dir.File("dir.csv")), expected) << "--events <directory>";
  EXPECT_THAT(from_dir.err, HasSubstr("30 events read"));
  EXPECT_EQ(Meta(dir.File("dir.csv")), Meta(dir.File("whole.csv")));
  // A directory and a file mixed, in the order given.
  const std::string log2 = dir.File("log2");
  ASSERT_TRUE(std::filesystem::create_directory(log2));
  WriteFile(log2 + "/b.jsonl", parts[1]);
  WriteFile(log2 + "/a.jsonl", parts[0]);
  Backfill(dir, {log2, files[2]}, dir.File("mixed.csv"));
  EXPECT_EQ(ReadFile(dir.File("mixed.csv")), expected) << "--events <directory> --events C";
}

TEST(BackfillFilesTest, TheEventLogsOwnFilesBackfillAsTheWholeFile) {
  TempDir dir;
  const std::string whole = Exchange() + "/sample.jsonl";
  Backfill(dir, {whole}, dir.File("whole.csv"));
  event::EventLogOptions o;
  o.dir = dir.File("events");
  o.rotate_bytes = 2000;        // the sample's 30 lines take several files
  int64_t now = 1704096000000;  // 2024-01-01T08:00:00Z, moved on an hour per line
  o.now_ms = [&now] { return now += 3600 * 1000; };
  auto log = event::EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  for (const std::string& line : SplitLines(ReadFile(whole))) {
    ASSERT_TRUE((*log)->Append(line).ok());
  }
  ASSERT_TRUE((*log)->Close().ok());
  ASSERT_GE((*log)->Files().size(), 3u);
  Backfill(dir, {o.dir}, dir.File("log.csv"));
  EXPECT_EQ(ReadFile(dir.File("log.csv")), ReadFile(dir.File("whole.csv")));
}

// A live server takes an event after a pause longer than the schema's
// max_ahead_of_latest (its clock vouches for it); backfill of its event log
// takes every event it took, where the same events in a plain file are
// checked against the schema alone and those after the jump are refused.
TEST(BackfillFilesTest, TheEventLogAfterAPauseBackfillsWhatTheServerTookAPlainFileDoesNot) {
  TempDir dir;
  std::vector<std::string> lines = SplitLines(ReadFile(Exchange() + "/sample.jsonl"));
  for (size_t i = lines.size() / 2; i < lines.size(); ++i) {  // a month later
    const std::string from = "\"time\": \"2024-01-", to = "\"time\": \"2024-02-";
    const size_t at = lines[i].find(from);
    ASSERT_NE(at, std::string::npos) << lines[i];
    lines[i].replace(at, from.size(), to);
  }
  std::string plain;
  for (const std::string& l : lines) plain += l + "\n";
  WriteFile(dir.File("plain.jsonl"), plain);
  event::EventLogOptions o;
  o.dir = dir.File("events");
  auto log = event::EventLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  for (const std::string& l : lines) ASSERT_TRUE((*log)->Append(l).ok());
  ASSERT_TRUE((*log)->Close().ok());
  Backfill(dir, {o.dir}, dir.File("log.csv"));
  Backfill(dir, {dir.File("plain.jsonl")}, dir.File("plain.csv"));
  const nlohmann::json from_log = Meta(dir.File("log.csv")),
                       from_plain = Meta(dir.File("plain.csv"));
  EXPECT_EQ(from_log["rejected"], 0);
  EXPECT_GT(from_plain["rejected"].get<int>(), 0);
  EXPECT_GT(from_log["rows"].get<int>(), from_plain["rows"].get<int>());
}

// A handbook-shaped CSV: 300 transactions of 7 cards at 5 terminals over 40
// days, some fraudulent (the terminal risk features read TX_FRAUD).
std::vector<std::string> HandbookRows() {
  std::vector<std::string> rows;
  for (int i = 0; i < 300; ++i) {
    const int64_t secs = int64_t{i} * 11520 + (i * 37) % 600;  // 40 days, in order
    const time_t t = 1522540800 + secs;                        // from 2018-04-01
    tm utc;
    gmtime_r(&t, &utc);
    char when[32];
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &utc);
    const int fraud = i % 13 == 0 ? 1 : 0;
    rows.push_back(StrCat(i, ",", when, ",", i % 7, ",", i % 5, ",", 10 + (i * 7919) % 250, ".",
                          10 + i % 90, ",", secs, ",", secs / 86400, ",", fraud, ",", fraud));
  }
  return rows;
}

TEST(BackfillFilesTest, CsvFilesEachWithTheirHeaderBackfillAsTheWholeFile) {
  TempDir dir;
  const std::string header =
      "TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,"
      "TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO";
  const std::vector<std::string> rows = HandbookRows();
  std::string all = header + "\n";
  for (const std::string& r : rows) all += r + "\n";
  WriteFile(dir.File("all.csv"), all);
  const std::vector<std::string> parts = Cut(rows, {100, 120});
  WriteFile(dir.File("a.csv"), header + "\n" + parts[0]);
  WriteGzipFile(dir.File("b.csv.gz"), header + "\n" + parts[1]);
  WriteFile(dir.File("c.csv"), header + "\r\n" + parts[2]);  // written on Windows
  const std::string schema = SourceDir() + "/examples/handbook/schema.yaml";
  const std::string features = SourceDir() + "/examples/handbook/features.yaml";
  Backfill(dir, {dir.File("all.csv")}, dir.File("whole.csv"), false, schema, features);
  Backfill(dir, {dir.File("a.csv"), dir.File("b.csv.gz"), dir.File("c.csv")}, dir.File("parts.csv"),
           false, schema, features);
  const std::string expected = ReadFile(dir.File("whole.csv"));
  EXPECT_EQ(SplitLines(expected).size(), 301u);
  EXPECT_EQ(ReadFile(dir.File("parts.csv")), expected);
}

TEST(BackfillFilesTest, RejectionsNumberRecordsOverTheStreamAndLinesWithinTheirFile) {
  TempDir dir;
  const std::vector<std::string> lines = SplitLines(ReadFile(Exchange() + "/sample.jsonl"));
  WriteFile(dir.File("a.jsonl"), lines[0] + "\n" + lines[1] + "\n");
  // The second file: a blank line, a line that is not JSON, then the rest.
  std::string b = "\n{not json\n";
  for (size_t i = 2; i < lines.size(); ++i) b += lines[i] + "\n";
  WriteFile(dir.File("b.jsonl"), b);
  const RunResult r =
      RunVigil({"backfill", "--schema", Exchange() + "/schema.yaml", "--features",
                Exchange() + "/features.yaml", "--events", dir.File("a.jsonl"), dir.File("b.jsonl"),
                "--out", dir.File("out.csv"), "--dead-letter", dir.File("dead.jsonl")},
               In(dir));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("1 rejected"));
  const std::vector<std::string> dead = SplitLines(ReadFile(dir.File("dead.jsonl")));
  ASSERT_EQ(dead.size(), 1u);
  const nlohmann::json j = nlohmann::json::parse(dead[0]);
  EXPECT_EQ(j["record_no"], 3) << "the third record of the stream";
  EXPECT_EQ(j["line"], 2) << "line 2 of b.jsonl";
}

TEST(BackfillFilesTest, RefusesMissingFilesEmptyDirectoriesAndStdinAmongFiles) {
  TempDir dir;
  const std::string sample = Exchange() + "/sample.jsonl";
  auto run = [&](std::vector<std::string> events) {
    std::vector<std::string> args = {"backfill",
                                     "--schema",
                                     Exchange() + "/schema.yaml",
                                     "--features",
                                     Exchange() + "/features.yaml",
                                     "--out",
                                     dir.File("out.csv")};
    for (const std::string& e : events) {
      args.push_back("--events");
      args.push_back(e);
    }
    return RunVigil(args, In(dir));
  };
  RunResult r = run({sample, dir.File("gone.jsonl")});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("gone.jsonl: cannot open"));
  EXPECT_FALSE(FileExists(dir.File("out.csv"))) << "nothing written before the check";
  ASSERT_TRUE(std::filesystem::create_directory(dir.File("empty")));
  r = run({dir.File("empty")});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("no *.jsonl or *.jsonl.gz files"));
  r = run({"-", sample});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("standard input"));
  WriteFile(dir.File("x.csv"), "a,b\n");
  r = run({sample, dir.File("x.csv")});
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("one format"));
}

// A backfill that fails midway (here a gzip file cut short) leaves no output
// that looks whole: it writes <out>.partial and removes it, and an earlier
// run's output stays as it was.
TEST(BackfillFilesTest, AFailureMidwayLeavesNoPartialOutputAndKeepsTheEarlierOne) {
  TempDir dir;
  // Without training labels: one pass, so the output is open when the cut
  // is reached.
  const std::string schema = dir.File("schema.yaml"), features = dir.File("features.yaml");
  WriteFile(schema,
            "event_types:\n  tx:\n    fields:\n      user: {type: string, role: entity}\n"
            "      amount: {type: float}\n");
  WriteFile(features,
            "score_on: [tx]\nfeatures:\n"
            "  - {name: n, agg: count, key: user, window: 1d}\n");
  std::string text;
  for (int i = 0; i < 200000; ++i) {
    text += StrCat(R"({"event_type":"tx","event_id":"t)", i, R"(","time":)", 1700000000000 + i,
                   R"(,"user":"u)", i % 977, R"(","amount":)", i % 13, "}\n");
  }
  const std::string out = dir.File("out.csv");
  WriteFile(dir.File("small.jsonl"), text.substr(0, text.find('\n') + 1));
  Backfill(dir, {dir.File("small.jsonl")}, out, false, schema, features);
  const std::string before = ReadFile(out);
  ASSERT_FALSE(before.empty());
  WriteGzipFile(dir.File("cut.jsonl.gz"), text);
  const std::string gz = ReadFile(dir.File("cut.jsonl.gz"));
  WriteFile(dir.File("cut.jsonl.gz"), gz.substr(0, gz.size() * 3 / 4));
  RunResult r = RunVigil({"backfill", "--schema", schema, "--features", features, "--events",
                          dir.File("cut.jsonl.gz"), "--out", out},
                         In(dir));
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("truncated"));
  EXPECT_EQ(ReadFile(out), before);
  EXPECT_FALSE(FileExists(out + ".partial"));
}

// On a terminal, a long backfill redraws a progress line with its rows per
// second; elsewhere (a pipe, a file) it writes none. `script` gives the
// run a terminal and records what it showed.
TEST(BackfillFilesTest, ShowsAProgressLineWithRowsPerSecondOnATerminalOnly) {
  TempDir dir;
  RunResult r = RunVigil(
      {"simulate", "--users", "3000", "--days", "20", "--out", dir.File("ev.jsonl")}, In(dir));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const std::string backfill = StrCat(
      VigilBinary(), " backfill --schema ", Exchange(), "/schema.yaml --features ", Exchange(),
      "/features.yaml --events ", dir.File("ev.jsonl"), " --out ", dir.File("out.csv"));
  r = RunProgram("/usr/bin/script", {"-qec", backfill, "/dev/null"}, In(dir));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr(" rows, ")) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr(" M rows/s")) << Describe(r);
  EXPECT_THAT(r.out, HasSubstr("rows written in")) << "the summary after it";
  r = Backfill(dir, {dir.File("ev.jsonl")}, dir.File("out2.csv"));
  EXPECT_THAT(r.err, Not(HasSubstr("rows/s"))) << "no terminal: no progress line";
}

}  // namespace
}  // namespace vigil::testing
