// Whole-program tests of `vigil validate` and `vigil profile`: the binary is
// run as a user runs it, and what it writes (exit code, summary, dead-letter
// file, report, profile) is checked against the malformed-records corpus in
// tests/data/bad_events (see make_corpus.py there) and small files written
// here. Every test works in a fresh temporary folder.
#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cli_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace vigil::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;
using OJson = nlohmann::ordered_json;

// limits.max_record_bytes in tests/data/bad_events/schema.yaml.
constexpr size_t kCorpusMaxRecordBytes = 600;
// Every rejection rule of src/event/record.h (enum Rule, warnings excluded).
constexpr const char* kRejectionRules[] = {"malformed_json",
                                           "malformed_csv",
                                           "column_count",
                                           "invalid_utf8",
                                           "record_too_large",
                                           "unknown_event_type",
                                           "duplicate_field",
                                           "unknown_field",
                                           "required",
                                           "not_null",
                                           "type",
                                           "not_finite",
                                           "min",
                                           "max",
                                           "max_length",
                                           "pattern",
                                           "allowed",
                                           "timestamp",
                                           "time_bounds",
                                           "duplicate_event_id",
                                           "label_target"};
// A fixed pii key, so that runs can be compared byte for byte.
constexpr char kPiiKey[] = "integration-test-key";

std::string CorpusDir() { return SourceDir() + "/tests/data/bad_events"; }
std::string CorpusSchema() { return CorpusDir() + "/schema.yaml"; }

RunOptions In(const TempDir& dir) {
  RunOptions o;
  o.cwd = dir.path();
  o.env["VIGIL_PII_KEY"] = kPiiKey;
  return o;
}

// Parses a JSON document; fails the test (and returns null) when it is not one.
Json ParseJson(const std::string& text, const std::string& what) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << what << " is not JSON:\n" << text;
  return j.is_discarded() ? Json() : j;
}

std::vector<Json> ParseJsonLines(const std::string& text, const std::string& what) {
  std::vector<Json> out;
  for (const std::string& line : SplitLines(text)) {
    if (line.empty()) continue;
    out.push_back(ParseJson(line, what + " line"));
  }
  return out;
}

// The records of a data file as vigil counts them: in JSON Lines every
// non-blank line; in CSV every row after the header, a row running on over
// newlines inside quotes (to the end of the file when a quote never closes).
std::vector<std::string> SplitRecords(const std::string& data, bool csv) {
  std::vector<std::string> records;
  std::string cur;
  bool quoted = false;
  auto finish = [&](bool at_eof) {
    if (!at_eof && !cur.empty() && cur.back() == '\r') cur.pop_back();
    const bool blank = cur.find_first_not_of(" \t\r") == std::string::npos;
    if (!(blank && (!csv || at_eof))) records.push_back(cur);
    cur.clear();
  };
  for (char c : data) {
    if (csv && c == '"') quoted = !quoted;
    if (c == '\n' && !quoted) {
      finish(false);
      continue;
    }
    cur += c;
  }
  if (!cur.empty()) finish(true);
  if (csv && !records.empty()) records.erase(records.begin());  // the header
  return records;
}

// The clear-text pii values make_corpus.py wrote into the corpus.
std::vector<std::string> CorpusPii() {
  std::vector<std::string> values;
  for (const std::string& line : SplitLines(ReadFile(CorpusDir() + "/pii_clear.txt"))) {
    if (!line.empty() && line[0] != '#') values.push_back(line);
  }
  return values;
}

// `text` with each clear pii value replaced by <PII> (longest first).
std::string MaskClear(std::string text, std::vector<std::string> pii) {
  std::sort(pii.begin(), pii.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const std::string& v : pii) {
    for (size_t at = text.find(v); at != std::string::npos; at = text.find(v, at)) {
      text.replace(at, v.size(), "<PII>");
      at += 5;
    }
  }
  return text;
}

// `text` with vigil's pii masks (an HMAC or the redaction marker) replaced by <PII>.
std::string MaskMasked(const std::string& text) {
  static const std::regex kMask(R"(hmac:[0-9a-f]{32}|\[redacted\])");
  return std::regex_replace(text, kMask, "<PII>");
}

// Every clear-text value of `pii` found in `outputs` ({name, text}), as messages.
std::vector<std::string> FindClear(const std::vector<std::pair<std::string, std::string>>& outputs,
                                   const std::vector<std::string>& pii) {
  const std::set<std::string> values(pii.begin(), pii.end());
  std::vector<std::string> found;
  for (const auto& [name, text] : outputs) {
    for (const std::string& v : values) {
      const size_t at = text.find(v);
      if (at == std::string::npos) continue;
      const size_t from = at > 80 ? at - 80 : 0;
      found.push_back("'" + v + "' in " + name + ": …" + text.substr(from, v.size() + 160) + "…");
    }
  }
  return found;
}

// The cells of an unquoted CSV row.
std::vector<std::string> SplitCells(const std::string& row) {
  std::vector<std::string> cells(1);
  for (char c : row) {
    if (c == ',') {
      cells.emplace_back();
    } else {
      cells.back() += c;
    }
  }
  return cells;
}

// Counts of name/number pairs in a summary line such as
// "    by rule:  pattern 6, allowed 5, … (11 more)".
std::map<std::string, int64_t> ParseSummaryCounts(const std::string& line) {
  std::map<std::string, int64_t> m;
  static const std::regex kItem(R"(([A-Za-z_().]+) ([0-9,]+)(, |$))");
  for (auto it = std::sregex_iterator(line.begin(), line.end(), kItem);
       it != std::sregex_iterator(); ++it) {
    std::string n = (*it)[2];
    n.erase(std::remove(n.begin(), n.end(), ','), n.end());
    m[(*it)[1]] = std::stoll(n);
  }
  return m;
}

// The number after `label` in the summary ("  valid     11"), or -1.
int64_t SummaryNumber(const std::string& out, const std::string& label) {
  const std::regex re("\n  " + label + " +([0-9,]+)");
  std::smatch m;
  if (!std::regex_search(out, m, re)) return -1;
  std::string n = m[1];
  n.erase(std::remove(n.begin(), n.end(), ','), n.end());
  return std::stoll(n);
}

// The summary line that starts with `prefix` after the line that starts with
// `section` ("  rejected" / "  warnings"), or "".
std::string SummaryLine(const std::string& out, const std::string& section,
                        const std::string& prefix) {
  bool in = false;
  for (const std::string& line : SplitLines(out)) {
    if (line.rfind(section, 0) == 0) {
      in = true;
    } else if (in && line.rfind("  ", 0) == 0 && line.rfind("   ", 0) != 0) {
      in = false;  // the next section
    }
    if (in && line.rfind(prefix, 0) == 0) return line;
  }
  return "";
}

// ---------------------------------------------------------------------------
// The corpus, record by record.
// ---------------------------------------------------------------------------

void CheckCorpusIsRejectedRecordByRecord(const std::string& data_name) {
  const bool csv = data_name.size() > 4 && data_name.substr(data_name.size() - 4) == ".csv";
  const std::string data_path = CorpusDir() + "/" + data_name;
  const std::vector<std::string> records = SplitRecords(ReadFile(data_path), csv);
  const std::vector<Json> expected =
      ParseJsonLines(ReadFile(data_path + ".expected.jsonl"), data_name + ".expected.jsonl");
  const std::vector<std::string> pii = CorpusPii();
  ASSERT_FALSE(records.empty()) << data_path;
  ASSERT_FALSE(expected.empty());
  ASSERT_FALSE(pii.empty());

  TempDir dir;
  const RunResult r =
      RunVigil({"validate", "--schema", CorpusSchema(), "--events", data_path, "--dead-letter",
                dir.File("dead.jsonl"), "--report", dir.File("report.json")},
               In(dir));
  SCOPED_TRACE(Describe(r));
  EXPECT_EQ(r.exit_code, 1) << "records were rejected: exit status 1";

  // The dead-letter file: one line per rejected record, in order.
  const std::vector<Json> dead = ParseJsonLines(ReadFile(dir.File("dead.jsonl")), "dead letter");
  ASSERT_EQ(dead.size(), expected.size()) << "one dead letter per rejected record";
  std::map<std::string, int64_t> by_rule, by_field;
  for (size_t i = 0; i < expected.size(); ++i) {
    const Json& e = expected[i];
    const Json& d = dead[i];
    SCOPED_TRACE("expected " + e.dump() + "\ndead letter " + d.dump());
    const int64_t record_no = e["record_no"].get<int64_t>();
    ASSERT_TRUE(d.contains("record_no") && d["record_no"].is_number_integer());
    ASSERT_EQ(d["record_no"].get<int64_t>(), record_no);
    EXPECT_EQ(d["line"], e["line"]);
    EXPECT_EQ(d["rule"], e["rule"]);
    EXPECT_EQ(d["field"], e["field"]);
    ASSERT_TRUE(d["reason"].is_string());
    EXPECT_THAT(d["reason"].get<std::string>(), HasSubstr(e["reason_contains"].get<std::string>()));

    // Several violations: all of them, in order; one: no list.
    if (e.contains("violations")) {
      ASSERT_TRUE(d.contains("violations") && d["violations"].is_array());
      ASSERT_EQ(d["violations"].size(), e["violations"].size());
      for (size_t k = 0; k < e["violations"].size(); ++k) {
        EXPECT_EQ(d["violations"][k]["rule"], e["violations"][k][0]) << "violation " << k;
        EXPECT_EQ(d["violations"][k]["field"], e["violations"][k][1]) << "violation " << k;
        EXPECT_FALSE(d["violations"][k]["reason"].get<std::string>().empty());
        ++by_rule[e["violations"][k][0].get<std::string>()];
        ++by_field[e["violations"][k][1].is_null() ? "(record)"
                                                   : e["violations"][k][1].get<std::string>()];
      }
    } else {
      EXPECT_FALSE(d.contains("violations"));
      ++by_rule[e["rule"].get<std::string>()];
      ++by_field[e["field"].is_null() ? "(record)" : e["field"].get<std::string>()];
    }

    // `raw` is the record's text with its pii masked (the bytes in
    // raw_base64 when they are not UTF-8; the head when too large).
    ASSERT_LE(record_no, static_cast<int64_t>(records.size()));
    const std::string& original = records[static_cast<size_t>(record_no - 1)];
    ASSERT_TRUE(d["raw"].is_string());
    std::string raw = d["raw"].get<std::string>();
    if (d.contains("raw_base64")) {
      const auto bytes = Base64Decode(d["raw_base64"].get<std::string>());
      ASSERT_TRUE(bytes.has_value()) << "raw_base64 is not base64";
      raw = *bytes;
    }
    if (csv && e["rule"] == "column_count") {
      // Cells no longer line up with the header: every cell is hashed.
      for (const std::string& cell : SplitCells(raw)) {
        EXPECT_TRUE(cell.empty() || cell.rfind("hmac:", 0) == 0) << cell;
      }
      EXPECT_EQ(SplitCells(raw).size(), SplitCells(original).size());
    } else if (d.value("raw_truncated", false)) {
      EXPECT_GT(original.size(), kCorpusMaxRecordBytes);
      EXPECT_EQ(d["raw_bytes"], original.size());
      EXPECT_EQ(MaskMasked(raw), MaskClear(original.substr(0, kCorpusMaxRecordBytes), pii));
    } else {
      EXPECT_EQ(MaskMasked(raw), MaskClear(original, pii));
    }
  }

  // The same counts in the report and in the summary: a record counts once
  // in `rejected`, a violation once in by_rule and by_field.
  const int64_t read = static_cast<int64_t>(records.size());
  const int64_t rejected = static_cast<int64_t>(expected.size());
  const Json report = ParseJson(ReadFile(dir.File("report.json")), "report");
  EXPECT_EQ(report["read"], read);
  EXPECT_EQ(report["valid"], read - rejected);
  EXPECT_EQ(report["rejected"], rejected);
  EXPECT_EQ(report["by_rule"], Json(by_rule));
  EXPECT_EQ(report["by_field"], Json(by_field));
  EXPECT_EQ(report["warnings"]["records"], 0);
  EXPECT_EQ(report["dead_letter"], dir.File("dead.jsonl"));
  EXPECT_EQ(report["complete"], true);

  EXPECT_EQ(SummaryNumber(r.out, "read"), read);
  EXPECT_EQ(SummaryNumber(r.out, "valid"), read - rejected);
  EXPECT_EQ(SummaryNumber(r.out, "rejected"), rejected);
  EXPECT_EQ(SummaryNumber(r.out, "warnings"), 0);
  // The summary lists the most frequent rules and fields; each count it shows is right.
  for (const auto& [prefix, want] :
       {std::pair{"    by rule:", &by_rule}, std::pair{"    by field:", &by_field}}) {
    const std::string line = SummaryLine(r.out, "  rejected", prefix);
    ASSERT_FALSE(line.empty()) << "no '" << prefix << "' line";
    const auto shown = ParseSummaryCounts(line.substr(std::string(prefix).size()));
    EXPECT_FALSE(shown.empty()) << line;
    for (const auto& [name, n] : shown) {
      EXPECT_EQ(n, (*want)[name]) << prefix << " " << name << " in: " << line;
    }
  }
  EXPECT_THAT(r.out, HasSubstr("dead letters: " + dir.File("dead.jsonl") + " (" +
                               std::to_string(rejected) + " records)"));
}

TEST(ValidateCorpusTest, JsonLinesCorpusIsRejectedRecordByRecord) {
  CheckCorpusIsRejectedRecordByRecord("bad.jsonl");
}

TEST(ValidateCorpusTest, CsvCorpusIsRejectedRecordByRecord) {
  CheckCorpusIsRejectedRecordByRecord("bad.csv");
}

TEST(ValidateCorpusTest, CorpusBreaksEveryRule) {
  // Guards the corpus itself: each rejection rule of src/event/record.h is
  // broken at least once.
  std::set<std::string> rules;
  for (const char* name : {"bad.jsonl", "bad.csv"}) {
    for (const Json& e :
         ParseJsonLines(ReadFile(CorpusDir() + "/" + name + ".expected.jsonl"), name)) {
      rules.insert(e["rule"].get<std::string>());
      if (e.contains("violations")) {
        for (const Json& v : e["violations"]) rules.insert(v[0].get<std::string>());
      }
    }
  }
  for (const char* rule : kRejectionRules) {
    EXPECT_TRUE(rules.count(rule)) << "no record of the corpus breaks " << rule;
  }
}

// ---------------------------------------------------------------------------
// Exit codes.
// ---------------------------------------------------------------------------

// The valid records of the JSON Lines corpus, one per line.
std::string CorpusValidRecords() {
  const std::string data_path = CorpusDir() + "/bad.jsonl";
  const std::vector<std::string> records = SplitRecords(ReadFile(data_path), false);
  std::set<int64_t> rejected;
  for (const Json& e : ParseJsonLines(ReadFile(data_path + ".expected.jsonl"), "expected")) {
    rejected.insert(e["record_no"].get<int64_t>());
  }
  std::string valid;
  for (size_t i = 0; i < records.size(); ++i) {
    if (!rejected.count(static_cast<int64_t>(i + 1))) valid += records[i] + "\n";
  }
  return valid;
}

TEST(ValidateExitCodeTest, ExitsZeroWhenEveryRecordIsValid) {
  TempDir dir;
  const std::string valid = CorpusValidRecords();
  WriteFile(dir.File("valid.jsonl"), valid);
  const RunResult r = RunVigil({"validate", "--schema", CorpusSchema(), "--events",
                                dir.File("valid.jsonl"), "--report", dir.File("report.json")},
                               In(dir));
  SCOPED_TRACE(Describe(r));
  EXPECT_EQ(r.exit_code, 0);
  const int64_t n = static_cast<int64_t>(SplitLines(valid).size());
  EXPECT_EQ(SummaryNumber(r.out, "valid"), n);
  EXPECT_EQ(SummaryNumber(r.out, "rejected"), 0);
  const Json report = ParseJson(ReadFile(dir.File("report.json")), "report");
  EXPECT_EQ(report["valid"], n);
  EXPECT_EQ(report["rejected"], 0);
  EXPECT_TRUE(report["dead_letter"].is_null());
  // The dead-letter file is created only when a record is rejected.
  EXPECT_FALSE(FileExists(dir.File("valid.dead-letter.jsonl")));
}

TEST(ValidateExitCodeTest, ExitsTwoWhenTheEventsFileIsMissing) {
  TempDir dir;
  const RunResult r =
      RunVigil({"validate", "--schema", CorpusSchema(), "--events", dir.File("no-such-file.jsonl")},
               In(dir));
  SCOPED_TRACE(Describe(r));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(dir.File("no-such-file.jsonl")));
  EXPECT_THAT(r.err, HasSubstr("cannot open"));
  EXPECT_FALSE(FileExists(dir.File("no-such-file.dead-letter.jsonl")));
}

TEST(ValidateExitCodeTest, ExitsTwoWhenTheSchemaIsMissing) {
  TempDir dir;
  WriteFile(dir.File("e.jsonl"), CorpusValidRecords());
  const RunResult r = RunVigil(
      {"validate", "--schema", dir.File("nope.yaml"), "--events", dir.File("e.jsonl")}, In(dir));
  SCOPED_TRACE(Describe(r));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr(dir.File("nope.yaml")));
}

TEST(ValidateExitCodeTest, ExitsTwoAndNamesFileLineAndColumnOfABadSchema) {
  TempDir dir;
  WriteFile(dir.File("e.jsonl"), CorpusValidRecords());
  // A field with an unknown type: line 6, column 15 is the value "integer".
  WriteFile(dir.File("bad_type.yaml"),
            "name: broken\n"
            "event_types:\n"
            "  signup:\n"
            "    fields:\n"
            "      age:\n"
            "        type: integer\n");
  RunResult r =
      RunVigil({"validate", "--schema", dir.File("bad_type.yaml"), "--events", dir.File("e.jsonl")},
               In(dir));
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(dir.File("bad_type.yaml") + ":6:15:")) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("unknown type 'integer'")) << Describe(r);

  // A YAML syntax error: the flow sequence opened on line 4 never closes.
  WriteFile(dir.File("bad_yaml.yaml"),
            "name: broken\n"
            "event_types:\n"
            "  signup:\n"
            "    fields: [a\n");
  r = RunVigil({"validate", "--schema", dir.File("bad_yaml.yaml"), "--events", dir.File("e.jsonl")},
               In(dir));
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  const size_t at = r.err.find(dir.File("bad_yaml.yaml") + ":");
  ASSERT_NE(at, std::string::npos) << Describe(r);
  EXPECT_TRUE(std::regex_search(r.err.substr(at + dir.File("bad_yaml.yaml").size()),
                                std::regex("^:[0-9]+:[0-9]+: ")))
      << "file:line:col\n"
      << Describe(r);

  // A rule that does not fit the type, on line 7.
  WriteFile(dir.File("bad_rule.yaml"),
            "name: broken\n"
            "event_types:\n"
            "  deposit:\n"
            "    fields:\n"
            "      amount:\n"
            "        type: int\n"
            "        max_length: 3\n");
  r = RunVigil({"validate", "--schema", dir.File("bad_rule.yaml"), "--events", dir.File("e.jsonl")},
               In(dir));
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr(dir.File("bad_rule.yaml") + ":7:")) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("max_length")) << Describe(r);
}

TEST(ValidateExitCodeTest, ExitsTwoOnAUsageError) {
  TempDir dir;
  WriteFile(dir.File("e.jsonl"), CorpusValidRecords());
  const std::vector<std::vector<std::string>> bad_uses = {
      {"validate", "--schema", CorpusSchema(), "--events", dir.File("e.jsonl"), "--no-such-flag"},
      {"validate", "--events", dir.File("e.jsonl")},  // --schema is required
      {"validate", "--schema", CorpusSchema(), "--events", dir.File("e.jsonl"), "--format", "xml"},
      {"validate", "--schema", CorpusSchema(), "--events", dir.File("e.jsonl"), "--outlier-k",
       "many"},
      {"profile", "--schema", CorpusSchema(), "--events", dir.File("e.jsonl")},  // --out required
      {"no-such-command"},
      {},
  };
  for (const auto& args : bad_uses) {
    const RunResult r = RunVigil(args, In(dir));
    EXPECT_EQ(r.exit_code, 2) << Describe(r);
    EXPECT_FALSE(r.err.empty()) << "a usage error says what is wrong\n" << Describe(r);
  }
}

// ---------------------------------------------------------------------------
// pii never in clear.
// ---------------------------------------------------------------------------

// Runs every command that reads `events` and returns all it wrote: stdout and
// stderr of each run, the dead-letter file, the report and the profile.
std::vector<std::pair<std::string, std::string>> AllOutputs(const TempDir& dir,
                                                            const std::string& events,
                                                            const std::string& tag) {
  std::vector<std::pair<std::string, std::string>> outputs;
  auto keep = [&](const std::string& name, const RunResult& r) {
    outputs.emplace_back(name + " stdout", r.out);
    outputs.emplace_back(name + " stderr", r.err);
  };
  const std::string profile = dir.File(tag + ".profile.json");
  RunResult r = RunVigil(
      {"profile", "--schema", CorpusSchema(), "--events", events, "--out", profile}, In(dir));
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  keep("profile " + tag, r);
  outputs.emplace_back("profile JSON " + tag, ReadFile(profile));

  // With a fixed key, every example printed, and a profile to compare against.
  r = RunVigil({"validate", "--schema", CorpusSchema(), "--events", events, "--dead-letter",
                dir.File(tag + ".dead.jsonl"), "--report", dir.File(tag + ".report.json"),
                "--profile", profile, "--examples", "1000"},
               In(dir));
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  keep("validate " + tag, r);
  outputs.emplace_back("dead letters " + tag, ReadFile(dir.File(tag + ".dead.jsonl")));
  outputs.emplace_back("report " + tag, ReadFile(dir.File(tag + ".report.json")));
  EXPECT_THAT(ReadFile(dir.File(tag + ".dead.jsonl")), HasSubstr("hmac:"));

  // Without a key (a random one, and a warning), dead letters to stdout.
  RunOptions no_key = In(dir);
  no_key.env["VIGIL_PII_KEY"] = std::nullopt;
  r = RunVigil({"validate", "--schema", CorpusSchema(), "--events", events, "--dead-letter", "-",
                "--examples", "1000"},
               no_key);
  EXPECT_EQ(r.exit_code, 1) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("VIGIL_PII_KEY is not set")) << Describe(r);
  keep("validate (no key, dead letters on stdout) " + tag, r);
  return outputs;
}

// A JSON Lines file with pii in valid and invalid records of every kind.
struct PiiFile {
  std::string text;
  std::vector<std::string> clear;  // the pii values written in clear
};

// One JSON object with its keys in the order given (vigil reports in key order).
OJson Obj(std::initializer_list<std::pair<const char*, OJson>> members) {
  OJson j = OJson::object();
  for (const auto& [key, value] : members) j[key] = value;
  return j;
}

std::string Line(const OJson& j) { return j.dump() + "\n"; }

PiiFile PiiJsonLines() {
  PiiFile f;
  auto v = [&](const std::string& s) {
    f.clear.push_back(s);
    return s;
  };
  auto signup = [&](const std::string& id, const std::string& time, const std::string& email,
                    const std::string& phone) {
    return Obj({{"event_type", "signup"},
                {"event_id", id},
                {"time", time},
                {"user_id", "u1"},
                {"email", email},
                {"phone", phone},
                {"country", "DE"},
                {"kyc_level", "basic"}});
  };
  auto label = [&](const std::string& id, const std::string& time, const std::string& email) {
    return Obj({{"event_type", "label"},
                {"event_id", id},
                {"time", time},
                {"kind", "fraud"},
                {"target_entity", Obj({{"key", "email"}, {"value", email}})},
                {"value", 1}});
  };
  // Valid.
  f.text +=
      Line(signup("s-ok", "2024-03-01T10:00:00Z", v("pii.valid@example.org"), v("+4915111111111")));
  // Invalid: a value of another field breaks a rule.
  OJson young =
      signup("s-age", "2024-03-01T10:01:00Z", v("pii.invalid@example.org"), v("+4915122222222"));
  young["age"] = 5;
  f.text += Line(young);
  // Invalid: the hashed field breaks its own rules (too long, and a pattern).
  f.text += Line(signup("s-email", "2024-03-01T10:02:00Z", v(std::string(70, 'p') + " at x.org"),
                        v("+4915122222223")));
  // Invalid: the redacted field breaks its pattern.
  f.text += Line(signup("s-phone", "2024-03-01T10:03:00Z", v("pii.phonebad@example.org"),
                        v("phone 0151 444 555")));
  // Malformed JSON, cut off after the pii; and cut off inside the pii.
  std::string cut = Line(
      signup("s-mj", "2024-03-01T10:04:00Z", v("pii.malformed@example.org"), v("+4915133333333")));
  f.text += cut.substr(0, cut.find("\"country\"")) + "\n";
  cut = Line(signup("s-mj2", "2024-03-01T10:05:00Z", v("pii.unterminated@example.org"),
                    v("+4915133333334")));
  f.text += cut.substr(0, cut.find("@example.org") + 12) + "\n";
  // An unknown event type.
  OJson unknown =
      signup("x-1", "2024-03-01T10:06:00Z", v("pii.unknowntype@example.org"), v("+4915133333335"));
  unknown["event_type"] = "signin";
  f.text += Line(unknown);
  // A duplicated pii field.
  std::string dup =
      Line(signup("s-dup", "2024-03-01T10:07:00Z", v("pii.dup1@example.org"), v("+4915133333336")));
  dup.insert(dup.find("\"phone\""), "\"email\":\"" + v("pii.dup2@example.org") + "\",");
  f.text += dup;
  // Not UTF-8 (a Latin-1 byte in the country), and too large.
  std::string latin1 = Line(
      signup("s-utf8", "2024-03-01T10:08:00Z", v("pii.utf8@example.org"), v("+4915144444444")));
  latin1.replace(latin1.find("\"DE\""), 4, "\"D\xe9\"");
  f.text += latin1;
  OJson big =
      signup("s-big", "2024-03-01T10:09:00Z", v("pii.big@example.org"), v("+4915155555555"));
  big["referrer"] = std::string(700, 'r');
  f.text += Line(big);
  // Labels whose target_entity names the hashed key: valid, and invalid in
  // several ways (a kind not listed, two targets, no kind with the value
  // before the key).
  f.text += Line(label("lb-ok", "2024-03-01T10:10:00Z", v("pii.valid@example.org")));
  OJson spam = label("lb-kind", "2024-03-01T10:11:00Z", v("pii.labelkind@example.org"));
  spam["kind"] = "spam";
  f.text += Line(spam);
  OJson two = label("lb-two", "2024-03-01T10:12:00Z", v("pii.labeltwo@example.org"));
  two["target_event_id"] = "s-ok";
  f.text += Line(two);
  f.text += Line(
      Obj({{"event_type", "label"},
           {"event_id", "lb-nokind"},
           {"time", "2024-03-01T10:13:00Z"},
           {"target_entity", Obj({{"value", v("pii.labelnokind@example.org")}, {"key", "email"}})},
           {"value", 1}}));
  return f;
}

PiiFile PiiCsv() {
  PiiFile f;
  auto v = [&](const std::string& s) {
    f.clear.push_back(s);
    return s;
  };
  f.text =
      "event_id,time,user_id,email,phone,country,age,kyc_level,marketing_opt_in,risk_score,"
      "promo_credit,birth_date,referrer\n";
  auto row = [&](const std::string& id, const std::string& email, const std::string& phone,
                 const std::string& age, const std::string& ref) {
    return id + ",2024-03-01T10:00:00Z,u1," + email + "," + phone + ",DE," + age +
           ",basic,true,0.5,1.00,1990-01-01," + ref + "\n";
  };
  f.text += row("c-ok", v("csv.pii.valid@example.org"), v("+4915166666661"), "30", "");
  f.text +=
      row("c-ok2", "\"" + v("csv.pii.quoted@example.org") + "\"", v("+4915166666662"), "31", "");
  f.text += row("c-age", v("csv.pii.invalid@example.org"), v("+4915166666663"), "5", "");
  f.text += row("c-email", v("csv pii not an email"), v("+4915166666664"), "30", "");
  f.text += row("c-phone", v("csv.pii.phonebad@example.org"), v("0151 PHONE"), "30", "");
  f.text += row("c-mq", v("csv.pii.malformed@example.org"), v("+4915166666665"), "30", "ab\"\"c");
  f.text += row("c-utf8", v("csv.pii.utf8@example.org"), v("+4915166666666"), "30", "M\xfcnchen");
  f.text +=
      row("c-big", v("csv.pii.big@example.org"), v("+4915166666667"), "30", std::string(700, 'r'));
  return f;
}

TEST(ValidatePiiTest, HashedAndRedactedValuesNeverAppearInClearInAnyOutput) {
  // Includes the valid label lb-ok, whose target_entity {key: email, value:
  // <email>} must be hashed in the profile's label.target_entity.value too.
  TempDir dir;
  const PiiFile jsonl = PiiJsonLines();
  const PiiFile csv = PiiCsv();
  WriteFile(dir.File("pii.jsonl"), jsonl.text);
  WriteFile(dir.File("pii.csv"), csv.text);
  auto outputs = AllOutputs(dir, dir.File("pii.jsonl"), "jsonl");
  const auto csv_outputs = AllOutputs(dir, dir.File("pii.csv"), "csv");
  outputs.insert(outputs.end(), csv_outputs.begin(), csv_outputs.end());

  std::vector<std::string> clear = jsonl.clear;
  clear.insert(clear.end(), csv.clear.begin(), csv.clear.end());
  for (const std::string& found : FindClear(outputs, clear)) ADD_FAILURE() << found;

  // Not vacuous: the masked forms are there.
  const Json profile = ParseJson(ReadFile(dir.File("jsonl.profile.json")), "profile");
  ASSERT_TRUE(profile["columns"].contains("signup.email"));
  for (const Json& t : profile["columns"]["signup.email"]["top"]) {
    EXPECT_THAT(t["value"].get<std::string>(), ::testing::StartsWith("hmac:"));
  }
  EXPECT_FALSE(profile["columns"]["signup.phone"].contains("top"))
      << "a redacted field keeps no values";
  EXPECT_THAT(ReadFile(dir.File("jsonl.dead.jsonl")), HasSubstr("[redacted]"));
  EXPECT_THAT(ReadFile(dir.File("csv.dead.jsonl")), HasSubstr("[redacted]"));
}

TEST(ValidatePiiTest, CorpusPiiNeverAppearsInClearInAnyOutput) {
  // Includes the corpus's valid label lb-2, which targets {key: email,
  // value: alice@example.com}.
  TempDir dir;
  auto outputs = AllOutputs(dir, CorpusDir() + "/bad.jsonl", "jsonl");
  const auto csv_outputs = AllOutputs(dir, CorpusDir() + "/bad.csv", "csv");
  outputs.insert(outputs.end(), csv_outputs.begin(), csv_outputs.end());
  for (const std::string& found : FindClear(outputs, CorpusPii())) ADD_FAILURE() << found;
}

TEST(ValidatePiiTest, LabelTargetingAHashedKeyIsHashedInTheProfile) {
  // Regression: the profile masked by the field's own `pii` only, and the
  // label field target_entity.value has none; it must follow the key it
  // names, as the validator and the dead-letter writer do.
  TempDir dir;
  const std::string email = "profile.label@example.org";
  WriteFile(dir.File("labels.jsonl"),
            Line(Obj({{"event_type", "signup"},
                      {"event_id", "s-1"},
                      {"time", "2024-03-01T10:00:00Z"},
                      {"user_id", "u1"},
                      {"email", email},
                      {"country", "DE"},
                      {"kyc_level", "basic"}})) +
                Line(Obj({{"event_type", "label"},
                          {"event_id", "lb-1"},
                          {"time", "2024-03-01T10:01:00Z"},
                          {"kind", "fraud"},
                          {"target_entity", Obj({{"key", "email"}, {"value", email}})},
                          {"value", 1}})));
  const RunResult r = RunVigil({"profile", "--schema", CorpusSchema(), "--events",
                                dir.File("labels.jsonl"), "--out", dir.File("p.json")},
                               In(dir));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const Json p = ParseJson(ReadFile(dir.File("p.json")), "profile");
  const Json& col = p["columns"]["label.target_entity.value"];
  ASSERT_TRUE(col.is_object()) << p.dump(2);
  EXPECT_EQ(col["count"], 1);
  for (const Json& t : col.value("top", Json::array())) {
    EXPECT_THAT(t["value"].get<std::string>(), ::testing::StartsWith("hmac:"))
        << "a label's target_entity.value naming a pii key is written in clear";
  }
  EXPECT_THAT(ReadFile(dir.File("p.json")), Not(HasSubstr(email)));
}

TEST(ValidatePiiTest, RejectedLabelEntityValueShowsNeitherAnotherRecordsValueNorGarbage) {
  // Regression: a violation on target_entity.value used to re-read the
  // value's text after the fact; for a value rejected by the type check (an
  // object, array, bool) that text was a stale view into the JSON parser's
  // buffer — here the email of the previous, valid label, printed in clear —
  // and the rewritten reason lost what was wrong.
  TempDir dir;
  const std::string email = "stale.view@example.org";
  // The long id of the first label pushes its entity value far into the
  // parser's buffer, past everything the second label writes there.
  WriteFile(dir.File("labels.jsonl"),
            Line(Obj({{"event_type", "label"},
                      {"event_id", "lb-" + std::string(300, 'a')},
                      {"time", "2024-03-01T10:00:00Z"},
                      {"kind", "fraud"},
                      {"target_entity", Obj({{"key", "email"}, {"value", email}})},
                      {"value", 1}})) +
                Line(Obj({{"event_type", "label"},
                          {"event_id", "lb-2"},
                          {"time", "2024-03-01T10:01:00Z"},
                          {"kind", "fraud"},
                          {"target_entity", Obj({{"key", "user_id"}, {"value", Obj({{"x", 1}})}})},
                          {"value", 1}})));
  const RunResult r = RunVigil({"validate", "--schema", CorpusSchema(), "--events",
                                dir.File("labels.jsonl"), "--dead-letter", dir.File("dead.jsonl")},
                               In(dir));
  SCOPED_TRACE(Describe(r));
  EXPECT_EQ(r.exit_code, 1);
  const std::vector<Json> dead = ParseJsonLines(ReadFile(dir.File("dead.jsonl")), "dead letter");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["record_no"], 2);
  EXPECT_EQ(dead[0]["rule"], "type");
  EXPECT_EQ(dead[0]["field"], "target_entity.value");
  EXPECT_THAT(dead[0]["reason"].get<std::string>(), HasSubstr("expected string"))
      << "the reason is rewritten around a stale value";
  EXPECT_THAT(r.out, Not(HasSubstr(email))) << "pii of another record in clear";
  EXPECT_THAT(ReadFile(dir.File("dead.jsonl")), Not(HasSubstr(email)))
      << "pii of another record in clear";
}

TEST(ValidatePiiTest, CsvRowWithAMissingColumnShowsNoPiiInClear) {
  // Regression: cells were masked by position, so in a row that lacks a
  // column before the pii columns the email sat under `user_id` and was
  // written in clear. A row whose cells do not line up with the header now
  // has every cell hashed.
  TempDir dir;
  WriteFile(dir.File("short.csv"),
            "event_id,time,user_id,email,phone,country,age,kyc_level,marketing_opt_in,"
            "risk_score,promo_credit,birth_date,referrer\n"
            "c-1,2024-03-01T10:00:00Z,shifted.pii@example.org,+4915177777777,DE,30,basic,true,"
            "0.5,5.00,1990-01-01,\n");
  const RunResult r = RunVigil({"validate", "--schema", CorpusSchema(), "--events",
                                dir.File("short.csv"), "--dead-letter", dir.File("dead.jsonl")},
                               In(dir));
  SCOPED_TRACE(Describe(r));
  EXPECT_EQ(r.exit_code, 1);
  const std::string dead = ReadFile(dir.File("dead.jsonl"));
  EXPECT_THAT(dead, HasSubstr("column_count"));
  EXPECT_THAT(dead, Not(HasSubstr("shifted.pii@example.org"))) << "email in clear";
  EXPECT_THAT(dead, Not(HasSubstr("+4915177777777"))) << "phone in clear";
}

// ---------------------------------------------------------------------------
// Inputs: gzip and standard input.
// ---------------------------------------------------------------------------

void CheckGzipAndStdinMatchPlainFile(const std::string& data_name) {
  TempDir dir;
  const std::string plain = CorpusDir() + "/" + data_name;
  const std::string gz = dir.File(data_name + ".gz");
  WriteGzipFile(gz, ReadFile(plain));

  struct Variant {
    std::string name;
    std::string events;
    std::string stdin_path;
    bool gzip;
  };
  const std::vector<Variant> variants = {
      {"plain", plain, "", false},
      {"gzip", gz, "", true},
      {"stdin", "-", plain, false},
      {"gzip on stdin", "-", gz, true},
  };
  std::string first_dead;
  Json first_report;
  for (const Variant& v : variants) {
    SCOPED_TRACE(data_name + ", " + v.name);
    RunOptions o = In(dir);
    o.stdin_path = v.stdin_path;
    const std::string dead = dir.File(v.name + ".dead.jsonl");
    const std::string report = dir.File(v.name + ".report.json");
    const RunResult r = RunVigil({"validate", "--schema", CorpusSchema(), "--events", v.events,
                                  "--dead-letter", dead, "--report", report},
                                 o);
    EXPECT_EQ(r.exit_code, 1) << Describe(r);
    EXPECT_THAT(r.out, HasSubstr(v.gzip ? ", gzip)" : ")")) << Describe(r);
    if (!v.gzip) {
      EXPECT_THAT(r.out, Not(HasSubstr("gzip"))) << Describe(r);
    }
    // Each dead letter names its input; the rest must match the plain file's.
    const std::string file_key =
        std::string("{\"file\":\"") + (v.events == "-" ? std::string("<stdin>") : v.events) + "\",";
    std::string dead_text;
    std::istringstream lines(ReadFile(dead));
    for (std::string line; std::getline(lines, line);) {
      EXPECT_EQ(line.substr(0, file_key.size()), file_key);
      if (line.compare(0, file_key.size(), file_key) == 0) line.erase(0, file_key.size());
      dead_text += line + "\n";
    }
    Json rep = ParseJson(ReadFile(report), "report");
    ASSERT_TRUE(rep.is_object());
    EXPECT_FALSE(dead_text.empty());
    for (const char* volatile_key : {"events", "dead_letter", "elapsed_s"}) rep.erase(volatile_key);
    if (v.name == "plain") {
      first_dead = dead_text;
      first_report = rep;
      continue;
    }
    EXPECT_EQ(dead_text, first_dead) << "dead letters differ from the plain file's";
    EXPECT_EQ(rep, first_report) << "report differs from the plain file's";
  }
}

TEST(ValidateInputTest, GzipAndStdinGiveTheSameResultAsThePlainJsonLinesFile) {
  CheckGzipAndStdinMatchPlainFile("bad.jsonl");
}

TEST(ValidateInputTest, GzipAndStdinGiveTheSameResultAsThePlainCsvFile) {
  CheckGzipAndStdinMatchPlainFile("bad.csv");
}

TEST(ValidateInputTest, TruncatedGzipStopsTheRunWithExitTwoAndTheCountReadSoFar) {
  TempDir dir;
  // Enough valid records that the cut lands well inside the stream.
  std::string data;
  for (int i = 0; i < 20000; ++i) {
    data += Line(Obj({{"event_type", "login"},
                      {"event_id", "l-" + std::to_string(i)},
                      {"time", "2024-03-01T10:00:00Z"},
                      {"user_id", "u1"},
                      {"ip", "203.0.113.7"},
                      {"success", true}}));
  }
  WriteGzipFile(dir.File("whole.jsonl.gz"), data);
  const std::string gz = ReadFile(dir.File("whole.jsonl.gz"));
  WriteFile(dir.File("cut.jsonl.gz"), gz.substr(0, gz.size() / 2));

  for (const auto& [events, stdin_path] : std::vector<std::pair<std::string, std::string>>{
           {dir.File("cut.jsonl.gz"), ""}, {"-", dir.File("cut.jsonl.gz")}}) {
    RunOptions o = In(dir);
    o.stdin_path = stdin_path;
    const RunResult r = RunVigil({"validate", "--schema", CorpusSchema(), "--events", events,
                                  "--report", dir.File("report.json")},
                                 o);
    SCOPED_TRACE(Describe(r));
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("stopped after"));
    EXPECT_THAT(r.err, HasSubstr("truncated"));
    const Json report = ParseJson(ReadFile(dir.File("report.json")), "report");
    EXPECT_EQ(report["complete"], false);
    EXPECT_THAT(report.value("error", ""), HasSubstr("truncated"));
    const int64_t read = report["read"].get<int64_t>();
    EXPECT_GT(read, 0);
    EXPECT_LT(read, 20000);
    EXPECT_EQ(report["valid"], read);
  }
}

TEST(ValidateInputTest, ProfileReadsGzipAndStdinLikeThePlainFile) {
  TempDir dir;
  const std::string plain = CorpusDir() + "/bad.jsonl";
  WriteGzipFile(dir.File("bad.jsonl.gz"), ReadFile(plain));
  std::vector<Json> profiles;
  for (const auto& [events, stdin_path] : std::vector<std::pair<std::string, std::string>>{
           {plain, ""}, {dir.File("bad.jsonl.gz"), ""}, {"-", dir.File("bad.jsonl.gz")}}) {
    RunOptions o = In(dir);
    o.stdin_path = stdin_path;
    const RunResult r = RunVigil(
        {"profile", "--schema", CorpusSchema(), "--events", events, "--out", dir.File("p.json")},
        o);
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    Json p = ParseJson(ReadFile(dir.File("p.json")), "profile");
    p.erase("source");
    profiles.push_back(p);
  }
  ASSERT_EQ(profiles.size(), 3u);
  EXPECT_EQ(profiles[1], profiles[0]);
  EXPECT_EQ(profiles[2], profiles[0]);
}

// ---------------------------------------------------------------------------
// Help.
// ---------------------------------------------------------------------------

// The subcommands listed in `vigil --help`.
std::vector<std::string> ListedSubcommands(const std::string& help) {
  std::vector<std::string> names;
  bool in = false;
  for (const std::string& line : SplitLines(help)) {
    if (line.rfind("Subcommands:", 0) == 0) {
      in = true;
      continue;
    }
    if (!in) continue;
    if (line.empty() || line[0] != ' ') break;
    static const std::regex kName(R"(^  ([a-z][a-z0-9-]*)( |$))");
    std::smatch m;
    if (std::regex_search(line, m, kName)) names.push_back(m[1]);
  }
  return names;
}

TEST(HelpTest, EveryCommandsHelpExitsZeroSaysWhatItDoesHowItExitsAndShowsAnExample) {
  TempDir dir;
  const RunResult top = RunVigil({"--help"}, In(dir));
  EXPECT_EQ(top.exit_code, 0) << Describe(top);
  EXPECT_THAT(top.out, HasSubstr("fraud")) << Describe(top);
  EXPECT_THAT(top.out, HasSubstr("Example")) << Describe(top);
  const std::vector<std::string> subs = ListedSubcommands(top.out);
  EXPECT_THAT(subs, ::testing::IsSupersetOf({"validate", "profile"})) << top.out;

  const std::map<std::string, std::string> what = {
      {"validate", "Check an event file against a schema"},
      {"profile", "Profile every field of an event file"},
  };
  for (const std::string& sub : subs) {
    const RunResult r = RunVigil({sub, "--help"}, In(dir));
    SCOPED_TRACE(Describe(r));
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("Usage: vigil " + sub));
    EXPECT_THAT(r.out, HasSubstr("Example"));
    EXPECT_THAT(r.out, HasSubstr("  vigil " + sub + " ")) << "the example runs the command";
    if (what.count(sub)) {
      EXPECT_THAT(r.out, HasSubstr(what.at(sub)));
    }
    // How it exits, for scripts (keys: said by its one subcommand).
    const RunResult says = sub == "keys" ? RunVigil({"keys", "create", "--help"}, In(dir)) : r;
    EXPECT_THAT(says.out, ::testing::ContainsRegex("Exit status: 0 [a-z].*, 2 ")) << Describe(says);
  }
}

// ---------------------------------------------------------------------------
// Profiles and outliers.
// ---------------------------------------------------------------------------

std::string Deposit(const std::string& id, int minute, const std::string& user,
                    const std::string& amount, const std::string& asset, const std::string& method,
                    const std::string& more) {
  return R"({"event_type":"deposit","event_id":")" + id + R"(","time":"2024-03-01T1)" +
         std::to_string(minute / 60) + ":" + (minute % 60 < 10 ? "0" : "") +
         std::to_string(minute % 60) + R"(:00Z","user_id":")" + user + R"(","amount":")" + amount +
         R"(","asset":")" + asset + R"(","method":")" + method + "\"" + more + "}\n";
}

TEST(ProfileTest, WritesEveryDocumentedStatisticWithValuesCheckedByHand) {
  TempDir dir;
  WriteFile(
      dir.File("deposits.jsonl"),
      Deposit("d1", 0, "u1", "10", "BTC", "crypto", R"(,"confirmations":1,"fee_rate":0.01)") +
          Deposit("d2", 1, "u2", "20", "BTC", "crypto", R"(,"confirmations":2,"fee_rate":0.02)") +
          Deposit("d3", 2, "u1", "30", "ETH", "crypto", R"(,"confirmations":3,"fee_rate":0.03)") +
          // Invalid (below the minimum): not profiled.
          Deposit("d-bad", 2, "u9", "-5", "EUR", "card", R"(,"confirmations":99)") +
          Deposit("d4", 3, "u3", "40", "BTC", "bank", R"(,"confirmations":4)"));
  const RunResult r = RunVigil({"profile", "--schema", CorpusSchema(), "--events",
                                dir.File("deposits.jsonl"), "--out", dir.File("profile.json")},
                               In(dir));
  SCOPED_TRACE(Describe(r));
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("4 valid records (1 rejected"));
  const Json p = ParseJson(ReadFile(dir.File("profile.json")), "profile");
  ASSERT_TRUE(p.is_object());
  EXPECT_EQ(p["format"], "vigil.profile/1");
  EXPECT_EQ(p["records"], 4);
  EXPECT_EQ(p["records_by_type"], Json({{"deposit", 4}}));
  ASSERT_EQ(p["quantile_levels"].size(), 13u);
  EXPECT_EQ(p["quantile_levels"].front(), 0.0);
  EXPECT_EQ(p["quantile_levels"].back(), 1.0);

  // One column per field of the event types seen, built-in id and time included.
  std::set<std::string> names;
  for (const auto& [name, col] : p["columns"].items()) names.insert(name);
  EXPECT_EQ(names, (std::set<std::string>{"deposit.user_id", "deposit.amount", "deposit.asset",
                                          "deposit.method", "deposit.confirmations",
                                          "deposit.fee_rate", "deposit.event_id", "deposit.time"}));

  // A numeric column: every statistic. amount = 10, 20, 30, 40.
  const Json& amount = p["columns"]["deposit.amount"];
  SCOPED_TRACE("deposit.amount: " + amount.dump());
  EXPECT_EQ(amount["type"], "decimal");
  EXPECT_EQ(amount["role"], "amount");
  EXPECT_EQ(amount["count"], 4);
  EXPECT_EQ(amount["missing_rate"], 0.0);
  EXPECT_DOUBLE_EQ(amount["min"].get<double>(), 10);
  EXPECT_DOUBLE_EQ(amount["max"].get<double>(), 40);
  EXPECT_DOUBLE_EQ(amount["mean"].get<double>(), 25);
  EXPECT_NEAR(amount["std"].get<double>(), std::sqrt(500.0 / 3), 1e-9);  // sample std
  ASSERT_EQ(amount["quantiles"].size(), 13u);
  EXPECT_DOUBLE_EQ(amount["quantiles"].front().get<double>(), 10);
  EXPECT_DOUBLE_EQ(amount["quantiles"].back().get<double>(), 40);
  const double median = amount["quantiles"][6].get<double>();
  EXPECT_GE(median, 20);
  EXPECT_LE(median, 30);
  for (size_t i = 1; i < 13; ++i) {
    EXPECT_LE(amount["quantiles"][i - 1].get<double>(), amount["quantiles"][i].get<double>());
  }
  EXPECT_NEAR(amount["distinct"].get<double>(), 4, 0.5);

  // A category: top values with counts and frequencies, complete here.
  const Json& asset = p["columns"]["deposit.asset"];
  EXPECT_EQ(asset["type"], "enum");
  EXPECT_EQ(asset["count"], 4);
  EXPECT_EQ(asset["distinct"], 2.0);
  EXPECT_EQ(asset["top_complete"], true);
  EXPECT_EQ(asset["top"], Json::parse(R"([{"value":"BTC","count":3,"frequency":0.75},
                                          {"value":"ETH","count":1,"frequency":0.25}])"));
  EXPECT_FALSE(asset.contains("quantiles"));

  // A column with a missing value: fee_rate = 0.01, 0.02, 0.03, absent.
  const Json& fee = p["columns"]["deposit.fee_rate"];
  EXPECT_EQ(fee["count"], 3);
  EXPECT_EQ(fee["missing"], 1);
  EXPECT_DOUBLE_EQ(fee["missing_rate"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(fee["min"].get<double>(), 0.01);
  EXPECT_DOUBLE_EQ(fee["max"].get<double>(), 0.03);
  EXPECT_NEAR(fee["mean"].get<double>(), 0.02, 1e-12);
  EXPECT_NEAR(fee["std"].get<double>(), 0.01, 1e-12);

  // An int: numeric and a category. confirmations = 1, 2, 3, 4.
  const Json& conf = p["columns"]["deposit.confirmations"];
  EXPECT_DOUBLE_EQ(conf["mean"].get<double>(), 2.5);
  EXPECT_NEAR(conf["std"].get<double>(), std::sqrt(5.0 / 3), 1e-9);
  EXPECT_EQ(conf["top"].size(), 4u);

  // An entity key: the most frequent first.
  const Json& user = p["columns"]["deposit.user_id"];
  EXPECT_EQ(user["role"], "entity");
  EXPECT_EQ(user["top"][0], Json::parse(R"({"value":"u1","count":2,"frequency":0.5})"));

  // The event time, in epoch milliseconds: 2024-03-01T10:00Z .. 10:03Z.
  const Json& time = p["columns"]["deposit.time"];
  EXPECT_EQ(time["type"], "timestamp");
  EXPECT_DOUBLE_EQ(time["min"].get<double>(), 1709287200000.0);
  EXPECT_DOUBLE_EQ(time["max"].get<double>(), 1709287380000.0);
}

TEST(ProfileTest, ValidateWithAProfileCountsOutliersAndUnseenCategoriesAsWarnings) {
  TempDir dir;
  // The reference: amounts 10..500, assets BTC and ETH, both methods.
  std::string reference;
  for (int i = 1; i <= 50; ++i) {
    reference += Deposit("r" + std::to_string(i), i, "u" + std::to_string(i % 7),
                         std::to_string(10 * i), i % 3 ? "BTC" : "ETH", i % 2 ? "crypto" : "bank",
                         R"(,"confirmations":)" + std::to_string(i % 11));
  }
  WriteFile(dir.File("reference.jsonl"), reference);
  RunResult r = RunVigil({"profile", "--schema", CorpusSchema(), "--events",
                          dir.File("reference.jsonl"), "--out", dir.File("profile.json")},
                         In(dir));
  ASSERT_EQ(r.exit_code, 0) << Describe(r);

  // New data: one ordinary deposit, one far above the range, one in an asset
  // the reference never saw (allowed by the schema).
  WriteFile(dir.File("new.jsonl"),
            Deposit("n1", 0, "u1", "120", "BTC", "crypto", R"(,"confirmations":3)") +
                Deposit("n2", 1, "u2", "100000", "ETH", "bank", R"(,"confirmations":4)") +
                Deposit("n3", 2, "u3", "50", "USDT", "crypto", R"(,"confirmations":5)"));
  r = RunVigil({"validate", "--schema", CorpusSchema(), "--events", dir.File("new.jsonl"),
                "--profile", dir.File("profile.json"), "--report", dir.File("report.json")},
               In(dir));
  SCOPED_TRACE(Describe(r));
  EXPECT_EQ(r.exit_code, 0) << "warnings never reject";
  EXPECT_EQ(SummaryNumber(r.out, "valid"), 3);
  EXPECT_EQ(SummaryNumber(r.out, "rejected"), 0);
  EXPECT_EQ(SummaryNumber(r.out, "warnings"), 2);
  EXPECT_EQ(ParseSummaryCounts(SummaryLine(r.out, "  warnings", "    by rule:")),
            (std::map<std::string, int64_t>{{"outlier", 1}, {"unseen_category", 1}}));
  EXPECT_THAT(r.out, HasSubstr("field 'amount': 100000 is far outside"));
  EXPECT_THAT(r.out, HasSubstr("'USDT' never occurs in the profile"));

  const Json report = ParseJson(ReadFile(dir.File("report.json")), "report");
  EXPECT_EQ(report["valid"], 3);
  EXPECT_EQ(report["rejected"], 0);
  EXPECT_EQ(report["warnings"]["records"], 2);
  EXPECT_EQ(report["warnings"]["by_rule"], Json({{"outlier", 1}, {"unseen_category", 1}}));
  EXPECT_EQ(report["warnings"]["by_field"], Json({{"amount", 1}, {"asset", 1}}));
  EXPECT_FALSE(FileExists(dir.File("new.dead-letter.jsonl")));
}

TEST(ProfileTest, ValidateRejectsAProfileThatIsNotOne) {
  TempDir dir;
  WriteFile(dir.File("e.jsonl"), CorpusValidRecords());
  WriteFile(dir.File("profile.json"), R"({"format":"something/2","columns":{}})");
  const RunResult r = RunVigil({"validate", "--schema", CorpusSchema(), "--events",
                                dir.File("e.jsonl"), "--profile", dir.File("profile.json")},
                               In(dir));
  EXPECT_EQ(r.exit_code, 2) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("vigil.profile/1")) << Describe(r);
}

// The binary runs on jemalloc with vigil's options (src/core/
// jemalloc_options.cc, linked through vigil_jemalloc): memory kept, freed
// blocks split for any size, huge pages asked for. jemalloc prints them at
// exit when asked to.
TEST(VigilBinaryTest, RunsOnJemallocWithVigilsOptions) {
  RunOptions o;
  o.env["MALLOC_CONF"] = "stats_print:true";
  const RunResult r = RunVigil({"--version"}, o);
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("opt.dirty_decay_ms: -1")) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("opt.lg_extent_max_active_fit: 30")) << Describe(r);
  EXPECT_THAT(r.err, HasSubstr("opt.thp: \"always\"")) << Describe(r);
}

}  // namespace
}  // namespace vigil::testing
