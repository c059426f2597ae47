// Whole-program tests of `vigil train`, `predict`, `evaluate` and
// `thresholds`, run as a user runs them on a feature table generated here:
// 3,000 events over the 60 days from 2024-01-01, in no particular time order,
// with x1..x5 (x1 and x2 carry the signal, x4 is sometimes missing) and a
// categorical `channel` whose "web" value raises the odds. Each test works in
// a fresh temporary folder and trains with one thread (the machines are
// shared; XGBoost's result does not depend on it).
//
// Outside references: /usr/bin/python3 with xgboost scores the same
// model.json (predictions must agree to 1e-6), and Chromium renders the HTML
// report. A missing interpreter or browser fails the tests, naming
// scripts/install-deps.sh; it does not skip them.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "core/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace vigil::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kChromium[] = "/usr/bin/chromium";
constexpr int64_t kDayMs = 86'400'000;
constexpr int64_t kStartMs = 1'704'067'200'000;  // 2024-01-01T00:00:00Z
constexpr int kDays = 60;
constexpr size_t kRows = 3000;

// A table as cells: row 0 is the header.
using Table = std::vector<std::vector<std::string>>;

std::string Timestamp(int64_t ms) {
  const int64_t day = (ms - kStartMs) / kDayMs, in_day = (ms - kStartMs) % kDayMs / 1000;
  char buf[32];
  std::snprintf(buf, sizeof buf, "2024-%02d-%02dT%02lld:%02lld:%02lldZ", day < 31 ? 1 : 2,
                static_cast<int>(day < 31 ? day + 1 : day - 30), static_cast<long long>(in_day / 3600),
                static_cast<long long>(in_day / 60 % 60), static_cast<long long>(in_day % 60));
  return buf;
}

std::string Fixed4(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", v);
  return buf;
}

// Day index (0 = 2024-01-01) of an event_time cell written by Timestamp.
int DayOf(const std::string& ts) {
  const int month = std::stoi(ts.substr(5, 2)), day = std::stoi(ts.substr(8, 2));
  return (month == 1 ? 0 : 31) + day - 1;
}

// The events: label = 1 when 2.5 x1 - 2 x2 + 1.5 [web] - 1.2 plus a little
// noise is above 0, so a model separates the classes well.
Table MakeTable(uint64_t seed = 7) {
  core::SplitMix64 rng(seed);
  auto normal = [&] {  // mean 0, variance 1: a sum of 12 uniforms
    double s = -6;
    for (int i = 0; i < 12; ++i) s += rng.Uniform();
    return s;
  };
  Table t = {{"event_id", "event_time", "label", "x1", "x2", "x3", "x4", "x5", "channel"}};
  for (size_t i = 0; i < kRows; ++i) {
    const int64_t ms = kStartMs + static_cast<int64_t>(rng.Below(kDays * kDayMs / 1000)) * 1000;
    double x[5];
    for (double& v : x) v = normal();
    const uint64_t c = rng.Below(10);
    const std::string channel = c < 4 ? "web" : c < 8 ? "app" : "pos";
    const double z = 2.5 * x[0] - 2 * x[1] + (channel == "web" ? 1.5 : 0) - 1.2 + 0.4 * normal();
    std::vector<std::string> row = {std::to_string(100000 + i * 7 % kRows), Timestamp(ms),
                                    z > 0 ? "1" : "0"};
    for (int k = 0; k < 5; ++k) row.push_back(Fixed4(x[k]));
    if (rng.Below(20) == 0) row[6].clear();  // x4 missing now and then
    row.push_back(channel);
    t.push_back(std::move(row));
  }
  return t;
}

int Col(const Table& t, const std::string& name) {
  for (size_t i = 0; i < t[0].size(); ++i) {
    if (t[0][i] == name) return static_cast<int>(i);
  }
  ADD_FAILURE() << "no column " << name;
  return 0;
}

std::string ToCsv(const Table& t) {
  std::string s;
  for (const auto& row : t) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (i > 0) s += ',';
      s += row[i];
    }
    s += '\n';
  }
  return s;
}

Table WithoutColumn(const Table& t, const std::string& name) {
  const size_t c = static_cast<size_t>(Col(t, name));
  Table out = t;
  for (auto& row : out) row.erase(row.begin() + static_cast<std::ptrdiff_t>(c));
  return out;
}

Json ParseJsonText(const std::string& text, const std::string& what) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << what << " is not JSON:\n" << text.substr(0, 2000);
  return j.is_discarded() ? Json() : j;
}

// `--params` for fast tests: fewer, shallower trees.
constexpr char kFastParams[] = "rounds: 30\nmax_depth: 4\n";

class TrainCliTest : public ::testing::Test {
 protected:
  void SetUp() override { table_ = MakeTable(); }

  // Writes `t` (the generated table by default) as NAME in the test folder.
  std::string Write(const std::string& name, const Table& t) const {
    const std::string p = dir_.File(name);
    WriteFile(p, ToCsv(t));
    return p;
  }
  std::string Write(const std::string& name) const { return Write(name, table_); }
  std::string Params(const std::string& name, const std::string& yaml) const {
    const std::string p = dir_.File(name);
    WriteFile(p, yaml);
    return p;
  }

  // `vigil train` with one thread; `extra` adds or overrides options.
  RunResult Train(const std::string& features, const std::string& out,
                  const std::vector<std::string>& extra = {}) const {
    std::vector<std::string> args = {"train", "--features", features, "--label", "label",
                                     "--out", out, "--threads", "1"};
    bool has_train = false;
    for (const std::string& a : extra) has_train = has_train || a == "--train";
    if (!has_train) args.insert(args.end(), {"--train", "2024-01-01..2024-01-30"});
    args.insert(args.end(), extra.begin(), extra.end());
    return RunVigil(args);
  }

  // Trains on days 1..30 with the fast parameters; the bundle's path.
  std::string TrainFast(const std::string& features, const std::string& name = "model") const {
    const std::string out = dir_.File(name);
    const RunResult r = Train(features, out, {"--params", Params("fast.yaml", kFastParams)});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    return out;
  }

  // `vigil predict` into a file: (id, score text) per row, in file order.
  std::vector<std::pair<std::string, std::string>> Predict(const std::string& model,
                                                           const std::string& features) const {
    const std::string out = dir_.File("scores.csv");
    const RunResult r = RunVigil({"predict", "--model", model, "--features", features, "--out", out});
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    std::vector<std::pair<std::string, std::string>> rows;
    const std::vector<std::string> lines = SplitLines(ReadFile(out));
    EXPECT_FALSE(lines.empty());
    if (lines.empty()) return rows;
    EXPECT_EQ(lines[0], "event_id,score");
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t comma = lines[i].find(',');
      rows.emplace_back(lines[i].substr(0, comma), lines[i].substr(comma + 1));
    }
    return rows;
  }

  // Expects a usage/data error (exit 2) whose message holds every piece.
  static void ExpectError(const RunResult& r, const std::vector<std::string>& pieces) {
    EXPECT_EQ(r.exit_code, 2) << Describe(r);
    for (const std::string& p : pieces) EXPECT_THAT(r.err, HasSubstr(p)) << Describe(r);
  }

  TempDir dir_;
  Table table_;
};

// ---------------------------------------------------------------- quality

TEST_F(TrainCliTest, DefaultModelRanksALaterRangeWithAucAbove095) {
  const std::string f = Write("f.csv");
  const std::string model = dir_.File("model");
  const RunResult t = Train(f, model, {"--train", "2024-01-01..2024-02-09"});
  ASSERT_EQ(t.exit_code, 0) << Describe(t);
  const RunResult e = RunVigil({"evaluate", "--model", model, "--features", f, "--label", "label",
                                "--range", "2024-02-15..2024-02-29", "--resamples", "200", "--out",
                                dir_.File("report.json")});
  ASSERT_EQ(e.exit_code, 0) << Describe(e);
  const Json r = ParseJsonText(ReadFile(dir_.File("report.json")), "report.json");
  ASSERT_TRUE(r["metrics"]["auc"]["estimate"].is_number()) << r.dump(2).substr(0, 2000);
  const double auc = r["metrics"]["auc"]["estimate"].get<double>();
  std::printf("AUC on 2024-02-15..2024-02-29: %.4f\n", auc);
  EXPECT_GT(auc, 0.95);
  // The range holds what the table holds for those 15 days, no more.
  int64_t in_range = 0;
  for (size_t i = 1; i < table_.size(); ++i) in_range += DayOf(table_[i][1]) >= 45;
  EXPECT_EQ(r["data"]["rows"].get<int64_t>(), in_range);
}

// ---------------------------------------------------------------- what shapes the model

TEST_F(TrainCliTest, RowsOutsideTheRangesCannotChangeTheModel) {
  // --train covers days 0..29 and --valid days 35..44; everything else is
  // rewritten below, down to labels and numbers that do not parse.
  const std::vector<std::string> ranges = {"--train", "2024-01-01..2024-01-30", "--valid",
                                           "2024-02-05..2024-02-14", "--params",
                                           Params("p.yaml", "rounds: 40\nmax_depth: 4\nearly_stopping_rounds: 5\n")};
  auto in_ranges = [](const std::string& ts) {
    const int d = DayOf(ts);
    return d < 30 || (d >= 35 && d < 45);
  };
  Table changed = table_;
  size_t rewritten = 0;
  for (size_t i = 1; i < changed.size(); ++i) {
    auto& row = changed[i];
    if (in_ranges(row[1])) continue;
    row[2] = i % 3 == 0 ? "x" : i % 3 == 1 ? "" : "7";
    row[3] = "text";
    row[4] = "1e300";
    row[6] = "";
    row[8] = "never-seen-" + std::to_string(i);
    ++rewritten;
  }
  ASSERT_GT(rewritten, 500u);

  const RunResult a = Train(Write("a.csv"), dir_.File("a"), ranges);
  ASSERT_EQ(a.exit_code, 0) << Describe(a);
  const RunResult b = Train(Write("b.csv", changed), dir_.File("b"), ranges);
  ASSERT_EQ(b.exit_code, 0) << Describe(b);
  const std::string model_a = ReadFile(dir_.File("a/model.json"));
  ASSERT_GT(model_a.size(), 1000u);
  EXPECT_TRUE(model_a == ReadFile(dir_.File("b/model.json")))
      << "rows outside --train and --valid changed model.json";

  // The comparison can fail: one label flipped inside the training range
  // gives another model.
  Table flipped = table_;
  for (size_t i = 1; i < flipped.size(); ++i) {
    if (DayOf(flipped[i][1]) < 30) {
      flipped[i][2] = flipped[i][2] == "1" ? "0" : "1";
      break;
    }
  }
  const RunResult c = Train(Write("c.csv", flipped), dir_.File("c"), ranges);
  ASSERT_EQ(c.exit_code, 0) << Describe(c);
  EXPECT_FALSE(model_a == ReadFile(dir_.File("c/model.json")));
}

TEST_F(TrainCliTest, SameSeedSameModelAnotherSeedAnotherWhenSubsampling) {
  const std::string f = Write("f.csv");
  const std::string p = Params("p.yaml", "rounds: 20\nmax_depth: 4\nsubsample: 0.5\n");
  for (const char* name : {"s1a", "s1b", "s2"}) {
    const RunResult r = Train(f, dir_.File(name), {"--params", p, "--seed", name[1] == '1' ? "1" : "2"});
    ASSERT_EQ(r.exit_code, 0) << Describe(r);
  }
  const std::string s1a = ReadFile(dir_.File("s1a/model.json"));
  ASSERT_FALSE(s1a.empty());
  EXPECT_TRUE(s1a == ReadFile(dir_.File("s1b/model.json"))) << "the same seed gave another model";
  EXPECT_FALSE(s1a == ReadFile(dir_.File("s2/model.json"))) << "the seed does not reach XGBoost";
}

// ---------------------------------------------------------------- errors

TEST_F(TrainCliTest, MissingLabelColumnIsAnError) {
  const RunResult r = Train(Write("f.csv", WithoutColumn(table_, "label")), dir_.File("m"));
  ExpectError(r, {"no label column 'label'", "--label", "event_id, event_time, x1"});
  EXPECT_FALSE(FileExists(dir_.File("m/model.json")));
}

TEST_F(TrainCliTest, LabelNotZeroOrOneNamesLineAndValue) {
  size_t row = 0;
  for (size_t i = 1; i < table_.size() && row == 0; ++i) {
    if (DayOf(table_[i][1]) == 3) row = i;
  }
  ASSERT_GT(row, 0u);
  table_[row][2] = "yes";
  const RunResult r = Train(Write("f.csv"), dir_.File("m"));
  ExpectError(r, {"f.csv:" + std::to_string(row + 1) + ":", "'yes'", "not 0 or 1"});
}

TEST_F(TrainCliTest, EmptyRangeIsAnErrorGivingTheFileSpan) {
  const RunResult r = Train(Write("f.csv"), dir_.File("m"), {"--train", "2025-03-01..2025-03-31"});
  ExpectError(r, {"2025-03-01..2025-03-31", "no labelled rows", "2024-01-01", "2024-02-29"});
}

TEST_F(TrainCliTest, SingleClassRangeIsAnError) {
  for (size_t i = 1; i < table_.size(); ++i) {
    if (DayOf(table_[i][1]) == 9) table_[i][2] = "0";
  }
  const RunResult r = Train(Write("f.csv"), dir_.File("m"), {"--train", "2024-01-10..2024-01-10"});
  ExpectError(r, {"single class", "label = 0"});
}

TEST_F(TrainCliTest, ValidMustStartAfterTrain) {
  const RunResult r = Train(Write("f.csv"), dir_.File("m"),
                            {"--train", "2024-01-01..2024-01-30", "--valid", "2024-01-30..2024-02-10"});
  ExpectError(r, {"--valid 2024-01-30..2024-02-10 must start after --train"});
}

TEST_F(TrainCliTest, FeatureColumnMissingAtPredictTimeIsAnError) {
  const std::string model = TrainFast(Write("f.csv"));
  const RunResult r = RunVigil({"predict", "--model", model, "--features",
                                Write("g.csv", WithoutColumn(table_, "x3")), "--out", dir_.File("s.csv")});
  ExpectError(r, {"g.csv", "'x3' is missing"});
}

TEST_F(TrainCliTest, TextInNumericColumnOfBackfillTableNamesLineAndColumn) {
  size_t row = 0;
  for (size_t i = 1; i < table_.size() && row == 0; ++i) {
    if (DayOf(table_[i][1]) == 12) row = i;
  }
  table_[row][Col(table_, "x4")] = "abc";
  const std::string f = Write("bf.csv");
  WriteFile(f + ".meta.json", R"({"id_column": "event_id", "time_column": "event_time",
    "feature_columns": ["x1", "x2", "x3", "x4", "x5"], "spec_hash": "0123456789abcdef"})");
  const RunResult r = Train(f, dir_.File("m"));
  ExpectError(r, {"bf.csv:" + std::to_string(row + 1) + ":", "x4", "'abc' is text in a numeric column"});
}

// ---------------------------------------------------------------- predict

TEST_F(TrainCliTest, PredictWritesEveryRowInInputOrderAsXgboostScoresThem) {
  const std::string f = Write("f.csv");
  const std::string model = TrainFast(f);
  const auto scores = Predict(model, f);
  ASSERT_EQ(scores.size(), kRows);
  for (size_t i = 0; i < kRows; ++i) ASSERT_EQ(scores[i].first, table_[i + 1][0]) << "row " << i;

  // python3-xgboost on the same model.json, the rows one-hot encoded as
  // the manifest says.
  static constexpr char kScript[] = R"PY(
import json, math, sys
import numpy as np, pandas as pd, xgboost as xgb
model_dir, features = sys.argv[1], sys.argv[2]
manifest = json.load(open(model_dir + "/manifest.json"))
inputs = manifest["inputs"]
df = pd.read_csv(features, dtype=str, keep_default_na=False)
cols = []
for inp in inputs:
    v = df[inp["column"]]
    if inp["type"] == "categorical":
        cols += [(v == c).astype(np.float32).to_numpy() for c in inp["categories"]]
    else:
        cols.append(np.array([float(s) if s != "" else math.nan for s in v], dtype=np.float32))
booster = xgb.Booster()
booster.load_model(model_dir + "/model.json")
p = booster.predict(xgb.DMatrix(np.column_stack(cols), missing=math.nan, feature_names=manifest["features"]))
print("\n".join(repr(float(x)) for x in p))
)PY";
  ASSERT_EQ(access(kPython, X_OK), 0) << kPython << " is missing: run scripts/install-deps.sh";
  const RunResult py = RunProgram(kPython, {"-c", kScript, model, f});
  ASSERT_EQ(py.exit_code, 0) << Describe(py);
  const std::vector<std::string> ref = SplitLines(py.out);
  ASSERT_EQ(ref.size(), kRows);
  double worst = 0;
  for (size_t i = 0; i < kRows; ++i) {
    const double got = std::strtod(scores[i].second.c_str(), nullptr);
    const double want = std::strtod(ref[i].c_str(), nullptr);
    worst = std::max(worst, std::fabs(got - want));
    ASSERT_NEAR(got, want, 1e-6) << "row " << i << " (event_id " << scores[i].first << ")";
  }
  std::printf("largest difference from python3-xgboost: %g\n", worst);
}

TEST_F(TrainCliTest, ModelJsonKeepsTheFeatureNamesInTheManifestsOrder) {
  const std::string model = TrainFast(Write("f.csv"));
  const Json m = ParseJsonText(ReadFile(model + "/manifest.json"), "manifest.json");
  const Json x = ParseJsonText(ReadFile(model + "/model.json"), "model.json");
  ASSERT_TRUE(x["learner"].contains("feature_names"));
  EXPECT_EQ(x["learner"]["feature_names"], m["features"]);
  EXPECT_GT(m["features"].size(), 5u);  // x1..x5 and the channel categories
}

TEST_F(TrainCliTest, ModelTrainedWithoutAnIdColumnScoresTables) {
  // Its manifest says "id_column": null; loading the bundle must cope.
  const std::string model = TrainFast(Write("noid.csv", WithoutColumn(table_, "event_id")));
  const auto scores = Predict(model, Write("f.csv"));
  EXPECT_EQ(scores.size(), kRows);
  const RunResult r = RunVigil({"predict", "--model", model, "--features", dir_.File("noid.csv"), "--out",
                                dir_.File("s.csv")});
  ExpectError(r, {"no id column 'event_id'", "--id"});
}

TEST_F(TrainCliTest, BundleRefusedForTableOfAnotherSpec) {
  const std::string f = Write("f.csv");
  auto meta = [](const char* spec) {
    return std::string(R"({"id_column": "event_id", "time_column": "event_time",
      "feature_columns": ["x1", "x2", "x3", "x4", "x5"], "spec_hash": ")") + spec + "\"}";
  };
  WriteFile(f + ".meta.json", meta("aaaaaaaaaaaaaaaa1111"));
  const std::string model = TrainFast(f);
  const Json manifest = ParseJsonText(ReadFile(model + "/manifest.json"), "manifest.json");
  EXPECT_EQ(manifest["feature_spec_hash"], "aaaaaaaaaaaaaaaa1111");

  const std::string same = Write("same.csv");
  WriteFile(same + ".meta.json", meta("aaaaaaaaaaaaaaaa1111"));
  const RunResult ok = RunVigil({"predict", "--model", model, "--features", same, "--out", dir_.File("s.csv")});
  EXPECT_EQ(ok.exit_code, 0) << Describe(ok);

  const std::string other = Write("other.csv");
  WriteFile(other + ".meta.json", meta("bbbbbbbbbbbbbbbb2222"));
  for (const char* cmd : {"predict", "evaluate"}) {
    std::vector<std::string> args = {cmd, "--model", model, "--features", other, "--out", dir_.File("s.out")};
    if (std::string(cmd) == "evaluate") args.insert(args.end(), {"--label", "label"});
    const RunResult r = RunVigil(args);
    ExpectError(r, {"aaaaaaaaaaaa", "bbbbbbbbbbbb", "other.csv", "spec"});
  }
}

// ---------------------------------------------------------------- evaluate

TEST_F(TrainCliTest, EvaluateReportHasItsFieldsAndTheHtmlRendersInChromium) {
  const std::string f = Write("f.csv");
  const std::string model = TrainFast(f);
  const std::string json_path = dir_.File("report.json"), html_path = dir_.File("report.html");
  const RunResult e = RunVigil({"evaluate", "--model", model, "--features", f, "--label", "label", "--range",
                                "2024-02-01..2024-02-29", "--resamples", "200", "--out", json_path, "--html",
                                html_path});
  ASSERT_EQ(e.exit_code, 0) << Describe(e);
  const Json r = ParseJsonText(ReadFile(json_path), "report.json");
  ASSERT_TRUE(r.is_object());
  EXPECT_EQ(r["format"], "vigil.evaluation/1");
  EXPECT_EQ(r["model"]["name"], "model");
  EXPECT_EQ(r["model"]["train"], "2024-01-01..2024-01-30");
  EXPECT_EQ(r["model"]["features"], 8);  // x1..x5, channel=app, channel=pos, channel=web
  EXPECT_EQ(r["data"]["range"], "2024-02-01..2024-02-29");
  EXPECT_EQ(r["data"]["first_day"], "2024-02-01");
  EXPECT_EQ(r["data"]["last_day"], "2024-02-29");
  int64_t rows = 0, positives = 0;
  for (size_t i = 1; i < table_.size(); ++i) {
    if (DayOf(table_[i][1]) < 31) continue;
    ++rows;
    positives += table_[i][2] == "1";
  }
  EXPECT_EQ(r["data"]["rows"], rows);
  EXPECT_EQ(r["data"]["positives"], positives);
  const Json& m = r["metrics"];
  for (const char* k : {"auc", "average_precision"}) {
    ASSERT_TRUE(m[k]["estimate"].is_number()) << k;
    EXPECT_LE(m[k]["lower"].get<double>(), m[k]["estimate"].get<double>()) << k;
    EXPECT_GE(m[k]["upper"].get<double>(), m[k]["estimate"].get<double>()) << k;
    EXPECT_EQ(m[k]["resamples"], 200) << k;
  }
  for (const char* k : {"0.1%", "1%", "5%"}) EXPECT_TRUE(m["recall_at_fpr"][k].is_number()) << k;
  EXPECT_EQ(m["precision_at_k"]["k"], 100);
  EXPECT_TRUE(m["brier"].is_number());
  ASSERT_EQ(r["operating_points"].size(), 3u);
  for (const Json& p : r["operating_points"]) {
    const Json& c = p["confusion"];
    EXPECT_EQ(c["tp"].get<int64_t>() + c["fp"].get<int64_t>() + c["tn"].get<int64_t>() + c["fn"].get<int64_t>(),
              rows);
  }
  EXPECT_EQ(r["calibration"].size(), 10u);
  EXPECT_GT(r["curves"]["roc"]["fpr"].size(), 10u);
  EXPECT_EQ(r["curves"]["roc"]["fpr"].size(), r["curves"]["roc"]["tpr"].size());
  EXPECT_EQ(r["curves"]["pr"]["recall"].size(), r["curves"]["pr"]["precision"].size());

  // The page as a browser builds it.
  ASSERT_EQ(access(kChromium, X_OK), 0)
      << kChromium << " is missing: run scripts/install-deps.sh (it installs chromium)";
  TempDir profile;
  const RunResult c = RunProgram(kChromium, {"--headless", "--no-sandbox", "--disable-gpu",
                                             "--disable-background-networking", "--disable-component-update",
                                             "--disable-sync", "--no-first-run",
                                             "--user-data-dir=" + profile.path(), "--dump-dom",
                                             "file://" + html_path});
  ASSERT_EQ(c.exit_code, 0) << Describe(c);
  const std::string& dom = c.out;
  size_t svgs = 0, drawn = 0;
  for (size_t at = dom.find("<svg"); at != std::string::npos; at = dom.find("<svg", at + 1)) {
    ++svgs;
    const std::string plot = dom.substr(at, dom.find("</svg>", at) - at);
    // A curve with points in it, not an empty frame.
    static const std::regex kCurve(R"(<polyline[^>]*points="(\d+(\.\d+)?,\d+(\.\d+)? ){3,})");
    drawn += std::regex_search(plot, kCurve);
  }
  EXPECT_EQ(svgs, 3u) << dom.substr(0, 3000);
  EXPECT_EQ(drawn, 3u);
  for (const char* title : {"ROC", "Precision–recall", "Reliability"}) EXPECT_THAT(dom, HasSubstr(title));
  char auc[16];
  std::snprintf(auc, sizeof auc, "%.4f", m["auc"]["estimate"].get<double>());
  EXPECT_THAT(dom, HasSubstr(std::string("AUC ROC<b>") + auc + "</b>"));
}

TEST_F(TrainCliTest, EvaluateFindsTheTimeColumnTheModelWasTrainedWith) {
  table_[0][1] = "created";
  const std::string f = Write("f.csv");
  const std::string model = dir_.File("m");
  const RunResult t = Train(f, model, {"--time", "created", "--params", Params("p.yaml", kFastParams)});
  ASSERT_EQ(t.exit_code, 0) << Describe(t);
  const RunResult e = RunVigil({"evaluate", "--model", model, "--features", f, "--label", "label", "--range",
                                "2024-02-01..2024-02-29", "--resamples", "50", "--out", dir_.File("r.json")});
  EXPECT_EQ(e.exit_code, 0) << Describe(e);
  // --time names it when the table calls it otherwise.
  table_[0][1] = "when";
  const std::string g = Write("g.csv");
  const RunResult named = RunVigil({"thresholds", "--model", model, "--features", g, "--label", "label",
                                    "--time", "when", "--review-budget", "5/day"});
  EXPECT_EQ(named.exit_code, 0) << Describe(named);
  const RunResult unnamed = RunVigil({"thresholds", "--model", model, "--features", g, "--label", "label",
                                      "--review-budget", "5/day"});
  ExpectError(unnamed, {"g.csv", "no time column 'created'", "--time"});
}

// ---------------------------------------------------------------- thresholds

TEST_F(TrainCliTest, ThresholdsSnippetMeetsTheReviewBudget) {
  const std::string f = Write("f.csv");
  const std::string model = TrainFast(f);
  constexpr double kBudget = 6;
  const RunResult r = RunVigil({"thresholds", "--model", model, "--features", f, "--label", "label", "--range",
                                "2024-02-01..2024-02-29", "--review-budget", "6/day"});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  static const std::regex kLine(R"(- \{action: review, score_at_least: ([0-9.eE+-]+)\})");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, kLine)) << "no threshold in the snippet:\n" << r.out;
  // Scores are float32: compared as floats, as written.
  const float threshold = std::strtof(m[1].str().c_str(), nullptr);

  const auto scores = Predict(model, f);
  ASSERT_EQ(scores.size(), kRows);
  std::set<int> days;
  std::vector<float> in_range;
  for (size_t i = 0; i < kRows; ++i) {
    const int day = DayOf(table_[i + 1][1]);
    if (day < 31) continue;
    days.insert(day);
    in_range.push_back(std::strtof(scores[i].second.c_str(), nullptr));
  }
  ASSERT_EQ(days.size(), 29u);
  const auto alerts = std::count_if(in_range.begin(), in_range.end(), [&](float s) { return s >= threshold; });
  const double per_day = static_cast<double>(alerts) / static_cast<double>(days.size());
  std::printf("threshold %s: %td alerts over %zu days (budget %g a day)\n", m[1].str().c_str(), alerts,
              days.size(), kBudget);
  EXPECT_LE(per_day, kBudget);
  // The lowest such threshold: the next lower score breaks the budget.
  float next = -1;
  for (float s : in_range) {
    if (s < threshold) next = std::max(next, s);
  }
  const auto more = std::count_if(in_range.begin(), in_range.end(), [&](float s) { return s >= next; });
  EXPECT_GT(static_cast<double>(more) / static_cast<double>(days.size()), kBudget);
}

TEST_F(TrainCliTest, ThresholdsRefusesABudgetNoThresholdMeets) {
  const std::string f = Write("f.csv");
  const std::string model = TrainFast(f);
  // 29 days: one alert is 0.034 a day, already above 0.01.
  const RunResult r = RunVigil({"thresholds", "--model", model, "--features", f, "--label", "label", "--range",
                                "2024-02-01..2024-02-29", "--review-budget", "0.01/day"});
  ExpectError(r, {"--review-budget", "no threshold"});
  EXPECT_THAT(r.out, Not(HasSubstr("score_at_least")));
}


// ---------------------------------------------------------------- search, calibration, bundle

TEST_F(TrainCliTest, SearchRecordsEveryTrialAndKeepsTheBestByValidationAp) {
  const std::string model = dir_.File("searched");
  const RunResult r = Train(Write("f.csv"), model,
                            {"--valid", "2024-01-31..2024-02-09", "--search", "3", "--seed", "5", "--params",
                             Params("few.yaml", "rounds: 40\nearly_stopping_rounds: 10\n")});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const Json m = ParseJsonText(ReadFile(model + "/manifest.json"), "manifest.json");
  ASSERT_EQ(m["search"].size(), 3u);
  double best = -1;
  Json best_params;
  for (const Json& t : m["search"]) {
    EXPECT_TRUE(t["params"].contains("max_depth"));
    EXPECT_TRUE(t["params"].contains("eta"));
    if (t["valid_average_precision"].get<double>() > best) {
      best = t["valid_average_precision"].get<double>();
      best_params = t["params"];
    }
  }
  EXPECT_EQ(m["params"], best_params);                              // the winner is the bundle
  EXPECT_NEAR(m["valid"]["average_precision"].get<double>(), best, 1e-12);
}

TEST_F(TrainCliTest, SearchWithoutValidationIsAnError) {
  ExpectError(Train(Write("f.csv"), dir_.File("m"), {"--search", "2"}), {"--search needs --valid"});
}

TEST_F(TrainCliTest, CalibrationIsFittedOnValidationAndAppliedByPredict) {
  const std::string f = Write("f.csv");
  const std::string model = dir_.File("cal");
  const RunResult r = Train(f, model, {"--valid", "2024-01-31..2024-02-09", "--calibrate", "--params",
                                       Params("fast.yaml", kFastParams)});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const Json m = ParseJsonText(ReadFile(model + "/manifest.json"), "manifest.json");
  ASSERT_TRUE(m["calibration"].is_object());
  const std::vector<double> x = m["calibration"]["x"], y = m["calibration"]["y"];
  ASSERT_GE(x.size(), 2u);
  for (size_t i = 1; i < y.size(); ++i) EXPECT_LE(y[i - 1], y[i]);  // increasing
  // Scores are the calibration's values of the margins: in [0, 1], and a
  // higher margin never gets a lower score.
  const auto scores = Predict(model, f);
  const std::string margins_path = dir_.File("margins.csv");
  const RunResult mr = RunVigil({"predict", "--model", model, "--features", f, "--margin", "--out", margins_path});
  ASSERT_EQ(mr.exit_code, 0) << Describe(mr);
  const std::vector<std::string> lines = SplitLines(ReadFile(margins_path));
  ASSERT_EQ(lines.size(), scores.size() + 1);
  std::vector<std::pair<double, double>> pairs;  // (margin, score)
  for (size_t i = 0; i < scores.size(); ++i) {
    const double s = std::stod(scores[i].second);
    EXPECT_GE(s, 0.0);
    EXPECT_LE(s, 1.0);
    pairs.emplace_back(std::stod(lines[i + 1].substr(lines[i + 1].find(',') + 1)), s);
  }
  std::sort(pairs.begin(), pairs.end());
  for (size_t i = 1; i < pairs.size(); ++i) EXPECT_LE(pairs[i - 1].second, pairs[i].second + 1e-12);
}

TEST_F(TrainCliTest, BundleHoldsAReferenceProfileOfEveryFeatureAndTheScore) {
  const std::string model = TrainFast(Write("f.csv"));
  const Json m = ParseJsonText(ReadFile(model + "/manifest.json"), "manifest.json");
  const Json p = ParseJsonText(ReadFile(model + "/reference_profile.json"), "reference_profile.json");
  EXPECT_EQ(p["format"], "vigil.profile/1");
  std::string text = p.dump();
  for (const Json& f : m["features"]) EXPECT_THAT(text, HasSubstr("\"" + f.get<std::string>() + "\""));
  EXPECT_THAT(text, HasSubstr("\"score\""));
  EXPECT_EQ(m["data"]["rows"].get<size_t>(), kRows);
  EXPECT_EQ(m["data"]["sha256"].get<std::string>().size(), 64u);
}

// Entities, the known-entity protocol and groups, checked against counts
// recomputed here from the generated table.
TEST_F(TrainCliTest, EvaluateEntityPrecisionExclusionAndGroups) {
  // Entity: one of 1,000 "cards" (three rows each), by row.
  Table t = table_;
  t[0].push_back("card");
  for (size_t i = 1; i < t.size(); ++i) t[i].push_back("c" + std::to_string(i % 1000));
  const std::string f = Write("cards.csv", t);
  const std::string model = TrainFast(f);
  const std::string out = dir_.File("r.json");
  const RunResult r = RunVigil({"evaluate", "--model", model, "--features", f, "--label", "label", "--range",
                                "2024-02-10..2024-02-29", "--entity", "card", "--k", "5",
                                "--exclude-known-entities", "card", "--delay", "7d", "--group-by", "channel",
                                "--out", out});
  ASSERT_EQ(r.exit_code, 0) << Describe(r);
  const Json j = ParseJsonText(ReadFile(out), "r.json");
  // Expected exclusions: a row on day d of a card with a fraud on any day
  // from the training start (day 0) to d - 8.
  std::map<std::string, int> first_fraud;
  for (size_t i = 1; i < t.size(); ++i) {
    if (t[i][2] != "1") continue;
    const int d = DayOf(t[i][1]);
    auto it = first_fraud.find(t[i].back());
    if (it == first_fraud.end() || d < it->second) first_fraud[t[i].back()] = d;
  }
  int64_t excluded = 0, kept = 0;
  for (size_t i = 1; i < t.size(); ++i) {
    const int d = DayOf(t[i][1]);
    if (d < 40) continue;  // 2024-02-10 is day 40
    auto it = first_fraud.find(t[i].back());
    (it != first_fraud.end() && it->second <= d - 8 ? excluded : kept)++;
  }
  ASSERT_GT(excluded, 0);  // the protocol has something to do here
  ASSERT_GT(kept, 0);
  EXPECT_EQ(j["data"]["known_entities_excluded"]["rows"].get<int64_t>(), excluded);
  EXPECT_EQ(j["data"]["rows"].get<int64_t>(), kept);
  const Json& ep = j["metrics"]["entity_precision_at_k"];
  EXPECT_EQ(ep["k"], 5);
  EXPECT_FALSE(ep["days"].empty());
  for (const Json& d : ep["days"]) {
    EXPECT_GE(d["precision"].get<double>(), 0.0);
    EXPECT_LE(d["precision"].get<double>(), 1.0);
  }
  const Json& g = j["fairness"]["by"]["channel"];
  ASSERT_EQ(g["groups"].size(), 3u);  // web, app, pos
  int64_t rows = 0;
  for (const Json& x : g["groups"]) rows += x["rows"].get<int64_t>();
  EXPECT_EQ(rows, kept);
  EXPECT_TRUE(g["reference"] == "web" || g["reference"] == "app");  // the largest groups
}

}  // namespace
}  // namespace vigil::testing
