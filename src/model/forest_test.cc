#include "model/forest.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/alloc_counter.h"
#include "core/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::model {
namespace {

using testing::HasSubstr;

// ------------------------------------------------------------ golden files

// tests/data/models/<name>/, written by make_golden.py with python3-xgboost
// 1.7.4: the model and what XGBoost predicts for it on awkward rows.
struct GoldenModel {
  const char* name;
  Objective objective;
  size_t trees;
};
constexpr GoldenModel kGoldenModels[] = {
    {"binary_d4", Objective::kBinaryLogistic, 50},      // (a)
    {"binary_base02_d6", Objective::kBinaryLogistic, 100},  // (b) base_score 0.2, depth 6
    {"squarederror", Objective::kSquaredError, 20},      // (c) margins in the thousands
    {"reglogistic", Objective::kRegLogistic, 20},        // (d)
    {"lossguide", Objective::kBinaryLogistic, 20},       // (e) uneven depths
    {"pandas_named", Objective::kBinaryLogistic, 12},    // (f) feature names stored
};
constexpr size_t kNeverSplit = 7;  // constant in training in every golden model

std::string SourceDir() {
  const char* d = std::getenv("VIGIL_SOURCE_DIR");
  return d ? d : ".";  // ctest sets it; "." lets the binary run from the checkout
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// A CSV of floats with a header line; an empty cell is NaN. strtof, so every
// value written with '%.9g' reads back as the float that was written.
struct Table {
  std::vector<std::string> header;
  std::vector<float> values;  // row after row
  size_t rows = 0;
};

std::vector<std::string> SplitComma(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) cells.push_back(cell);
  if (!line.empty() && line.back() == ',') cells.emplace_back();
  return cells;
}

Table ReadTable(const std::string& path, bool has_header) {
  Table t;
  std::ifstream f(path);
  EXPECT_TRUE(f) << path;
  std::string line;
  if (has_header && std::getline(f, line)) t.header = SplitComma(line);
  while (std::getline(f, line)) {
    for (const std::string& cell : SplitComma(line)) {
      t.values.push_back(cell.empty() ? std::numeric_limits<float>::quiet_NaN()
                                      : std::strtof(cell.c_str(), nullptr));
    }
    ++t.rows;
  }
  return t;
}

struct Golden {
  std::shared_ptr<const Forest> forest;
  Table rows, shap, saabas;
  std::vector<float> margins, scores;
  size_t width = 0;  // features per row
  const float* Row(size_t r) const { return rows.values.data() + r * width; }
};

Golden LoadGolden(const GoldenModel& m) {
  const std::string dir = StrCat(SourceDir(), "/tests/data/models/", m.name, "/");
  Golden g;
  auto forest = Forest::Load(dir + "model.json");
  EXPECT_TRUE(forest.ok()) << forest.status();
  if (!forest.ok()) return g;
  g.forest = *forest;
  g.width = g.forest->num_features();
  g.rows = ReadTable(dir + "rows.csv", true);
  g.margins = ReadTable(dir + "margins.txt", false).values;
  g.scores = ReadTable(dir + "scores.txt", false).values;
  g.shap = ReadTable(dir + "pred_contribs.csv", true);
  g.saabas = ReadTable(dir + "approx_contribs.csv", true);
  EXPECT_EQ(g.rows.values.size(), g.rows.rows * g.width) << m.name;
  EXPECT_EQ(g.margins.size(), g.rows.rows) << m.name;
  EXPECT_EQ(g.scores.size(), g.rows.rows) << m.name;
  EXPECT_EQ(g.shap.values.size(), g.rows.rows * (g.width + 1)) << m.name;
  EXPECT_EQ(g.saabas.values.size(), g.rows.rows * (g.width + 1)) << m.name;
  return g;
}

// Distance in units in the last place between two finite floats of one sign
// (or zeros): how far apart their bit patterns are.
int64_t UlpDistance(float a, float b) {
  auto key = [](float x) {
    const int32_t i = std::bit_cast<int32_t>(x);
    return i < 0 ? int64_t{std::numeric_limits<int32_t>::min()} - i : int64_t{i};
  };
  return std::abs(key(a) - key(b));
}

// XGBoost computes contributions in float, vigil partly in double: they agree
// to 1e-5, relative to the value once it exceeds 1 (a float near 1000 has
// steps of 6e-5; the squared-error model's contributions are that large).
double ContribTolerance(double expected) { return 1e-5 * std::max(1.0, std::abs(expected)); }

TEST(ForestGoldenTest, LoadsEveryGoldenModelWithItsShape) {
  for (const GoldenModel& m : kGoldenModels) {
    SCOPED_TRACE(m.name);
    const Golden g = LoadGolden(m);
    ASSERT_TRUE(g.forest);
    EXPECT_EQ(g.forest->num_features(), 8u);
    EXPECT_EQ(g.forest->num_trees(), m.trees);
    EXPECT_EQ(g.forest->objective(), m.objective);
    EXPECT_GE(g.rows.rows, 90u);
  }
  const Golden b = LoadGolden(kGoldenModels[1]);
  EXPECT_EQ(b.forest->max_depth(), 6);
  EXPECT_EQ(b.forest->base_margin(), -std::log(1.0f / 0.2f - 1.0f));  // XGBoost's ProbToMargin, in float
  const Golden c = LoadGolden(kGoldenModels[2]);
  EXPECT_EQ(c.forest->base_margin(), 100.0f);
  const Golden f = LoadGolden(kGoldenModels[5]);
  EXPECT_EQ(f.forest->feature_names(), f.rows.header);
  EXPECT_EQ(f.forest->feature_names().front(), "amount_z");
  EXPECT_TRUE(LoadGolden(kGoldenModels[0]).forest->feature_names().empty());
}

TEST(ForestGoldenTest, MarginIsBitEqualToXGBoostOnEveryRow) {
  for (const GoldenModel& m : kGoldenModels) {
    SCOPED_TRACE(m.name);
    const Golden g = LoadGolden(m);
    ASSERT_TRUE(g.forest);
    for (size_t r = 0; r < g.rows.rows; ++r) {
      const float got = g.forest->Margin(g.Row(r));
      EXPECT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(g.margins[r]))
          << "row " << r << ": vigil " << got << ", XGBoost " << g.margins[r];
    }
  }
}

TEST(ForestGoldenTest, MarginBatchIsBitEqualToXGBoostForEveryBatchSize) {
  for (const GoldenModel& m : kGoldenModels) {
    SCOPED_TRACE(m.name);
    const Golden g = LoadGolden(m);
    ASSERT_TRUE(g.forest);
    const size_t n = g.rows.rows;
    // Around the row blocks MarginBatch scores together (16 rows, then 32):
    // one row per call, part of a block, whole blocks, blocks and a remainder,
    // every row at once.
    for (size_t batch : {size_t{1}, size_t{7}, size_t{16}, size_t{31}, size_t{32}, size_t{33}, n}) {
      SCOPED_TRACE(StrCat("batch ", batch));
      // One canary past the end of each batch: MarginBatch writes n outputs, no more.
      std::vector<float> out(n + 1, -12345.0f);
      for (size_t start = 0; start < n; start += batch) {
        const size_t len = std::min(batch, n - start);
        const float canary = out[start + len];
        g.forest->MarginBatch(g.Row(start), len, out.data() + start);
        EXPECT_EQ(out[start + len], canary);
      }
      for (size_t r = 0; r < n; ++r) {
        EXPECT_EQ(std::bit_cast<uint32_t>(out[r]), std::bit_cast<uint32_t>(g.margins[r]))
            << "row " << r << ": vigil " << out[r] << ", XGBoost " << g.margins[r];
      }
    }
  }
}

// Measured on these files: every probability is bit-equal to XGBoost's
// (both compute 1 / (1 + expf(-margin)) in float on bit-equal margins). The
// test allows one ulp so that a libm with another expf still passes, and
// counts the rows that are not bit-equal so a change shows.
TEST(ForestGoldenTest, ScoreIsWithinOneUlpOfXGBoostAndUsuallyBitEqual) {
  size_t rows = 0, bit_equal = 0;
  for (const GoldenModel& m : kGoldenModels) {
    SCOPED_TRACE(m.name);
    const Golden g = LoadGolden(m);
    ASSERT_TRUE(g.forest);
    for (size_t r = 0; r < g.rows.rows; ++r) {
      const float got = g.forest->Score(g.Row(r));
      EXPECT_LE(UlpDistance(got, g.scores[r]), 1)
          << "row " << r << ": vigil " << got << ", XGBoost " << g.scores[r];
      EXPECT_EQ(g.forest->Transform(g.margins[r]), got) << "row " << r;
      ++rows;
      bit_equal += std::bit_cast<uint32_t>(got) == std::bit_cast<uint32_t>(g.scores[r]);
    }
  }
  EXPECT_EQ(bit_equal, rows) << "probabilities within one ulp of XGBoost's but not all bit-equal";
}

// Checks one attribution against XGBoost's on every golden row: each column
// within ContribTolerance, nothing for the feature never split on, and the
// columns (the bias included) summing to the margin. `attribute(forest, row,
// out)` fills width + 1 values of type T.
template <typename T, typename Attribute>
void ExpectAttributionsMatch(const Golden& g, const Table& expected, Attribute attribute) {
  std::vector<T> got(g.width + 1);
  for (size_t r = 0; r < g.rows.rows; ++r) {
    attribute(*g.forest, g.Row(r), got.data());
    double sum = 0;
    for (size_t j = 0; j <= g.width; ++j) {
      const double want = expected.values[r * (g.width + 1) + j];
      EXPECT_NEAR(got[j], want, ContribTolerance(want)) << "row " << r << " column " << expected.header[j];
      sum += got[j];
    }
    EXPECT_EQ(got[kNeverSplit], 0) << "row " << r;
    EXPECT_NEAR(sum, g.margins[r], ContribTolerance(g.margins[r])) << "row " << r;
  }
}

TEST(ForestGoldenTest, ShapContributionsMatchPredContribsAndSumToTheMargin) {
  for (const GoldenModel& m : kGoldenModels) {
    SCOPED_TRACE(m.name);
    const Golden g = LoadGolden(m);
    ASSERT_TRUE(g.forest);
    ExpectAttributionsMatch<double>(g, g.shap, [](const Forest& f, const float* row, double* out) {
      f.ShapContributions(row, out);
    });
  }
}

TEST(ForestGoldenTest, PathContributionsMatchApproxContribsAndSumToTheMargin) {
  for (const GoldenModel& m : kGoldenModels) {
    SCOPED_TRACE(m.name);
    const Golden g = LoadGolden(m);
    ASSERT_TRUE(g.forest);
    ExpectAttributionsMatch<float>(g, g.saabas, [](const Forest& f, const float* row, float* out) {
      f.PathContributions(row, out);
    });
  }
}

// The fused call serve makes for each decision gives exactly what the two
// separate calls give, on every golden row (NaNs, values on thresholds,
// groups of 32 trees and the trees after the last whole group).
TEST(ForestGoldenTest, MarginAndPathContributionsAreBitEqualToTheSeparateCalls) {
  for (const GoldenModel& m : kGoldenModels) {
    SCOPED_TRACE(m.name);
    const Golden g = LoadGolden(m);
    ASSERT_TRUE(g.forest);
    std::vector<float> fused(g.width + 1, -1.0f), separate(g.width + 1, -2.0f);
    for (size_t r = 0; r < g.rows.rows; ++r) {
      const float margin = g.forest->MarginAndPathContributions(g.Row(r), fused.data());
      g.forest->PathContributions(g.Row(r), separate.data());
      ASSERT_EQ(std::bit_cast<uint32_t>(margin), std::bit_cast<uint32_t>(g.forest->Margin(g.Row(r))))
          << "row " << r;
      for (size_t i = 0; i <= g.width; ++i) {
        ASSERT_EQ(std::bit_cast<uint32_t>(fused[i]), std::bit_cast<uint32_t>(separate[i]))
            << "row " << r << ", contribution " << i;
      }
    }
  }
}

// Margin, Score, MarginBatch and PathContributions are the hot path: not one
// allocation, whatever the row.
TEST(ForestGoldenTest, ScoringAndPathContributionsAllocateNothing) {
  const Golden g = LoadGolden(kGoldenModels[1]);
  ASSERT_TRUE(g.forest);
  const size_t n = g.rows.rows;
  std::vector<float> out(n), contrib(g.width + 1);
  float sink = 0;
  const core::AllocationScope allocations;
  for (size_t r = 0; r < n; ++r) {
    sink += g.forest->Margin(g.Row(r));
    sink += g.forest->Score(g.Row(r));
    g.forest->PathContributions(g.Row(r), contrib.data());
    sink += contrib[0];
    sink += g.forest->MarginAndPathContributions(g.Row(r), contrib.data());
  }
  g.forest->MarginBatch(g.Row(0), n, out.data());
  g.forest->MarginBatch(g.Row(0), 1, out.data());
  EXPECT_EQ(allocations.count(), 0);
  EXPECT_FALSE(std::isnan(out[0] + sink * 0));
}

// ------------------------------------------------ small hand-written models

// One split on feature 1 at 0.5 (NaN left), leaves -0.25 and 0.75; base_score
// 0.5 is a margin of 0. Each error test below edits one thing in it.
constexpr std::string_view kMinimal =
    R"({"learner":{"learner_model_param":{"base_score":"5E-1","num_class":"0",)"
    R"("num_feature":"2","num_target":"1"},"objective":{"name":"binary:logistic"},)"
    R"("gradient_booster":{"name":"gbtree","model":{"trees":[{"left_children":[1,-1,-1],)"
    R"("right_children":[2,-1,-1],"split_indices":[1,0,0],"split_conditions":[0.5,-0.25,0.75],)"
    R"("default_left":[1,0,0],"sum_hessian":[10,4,6],"split_type":[0,0,0]}]}}}})";

// kMinimal with `from` (which must occur exactly once) replaced by `to`.
std::string Edit(std::string_view from, std::string_view to) {
  std::string s(kMinimal);
  const size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  EXPECT_EQ(s.find(from, at + 1), std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

// The status of loading `json`, expected to be InvalidArgument naming the model.
absl::Status LoadError(const std::string& json) {
  auto f = Forest::FromJson(json, "m.json");
  if (f.ok()) return absl::OkStatus();
  EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument) << f.status();
  EXPECT_THAT(f.status().message(), HasSubstr("m.json")) << f.status();
  return f.status();
}

TEST(ForestTest, MinimalModelScoresAsWorkedByHand) {
  auto f = Forest::FromJson(kMinimal, "m.json");
  ASSERT_TRUE(f.ok()) << f.status();
  const Forest& forest = **f;
  EXPECT_EQ(forest.base_margin(), 0.0f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float below[] = {9, 0.4999f}, at[] = {9, 0.5f}, missing[] = {9, nan};
  EXPECT_EQ(forest.Margin(below), -0.25f);
  EXPECT_EQ(forest.Margin(at), 0.75f);  // x == threshold goes right
  EXPECT_EQ(forest.Margin(missing), -0.25f);  // default_left
  EXPECT_EQ(forest.Score(at), 1.0f / (1.0f + std::exp(-0.75f)));
  // Saabas: the root mean is (4 * -0.25 + 6 * 0.75) / 10 = 0.35.
  float contrib[3];
  forest.PathContributions(below, contrib);
  EXPECT_EQ(contrib[0], 0.0f);
  EXPECT_FLOAT_EQ(contrib[1], -0.6f);
  EXPECT_FLOAT_EQ(contrib[2], 0.35f);
  // One split: TreeSHAP and Saabas agree.
  double phi[3];
  forest.ShapContributions(below, phi);
  EXPECT_EQ(phi[0], 0.0);
  EXPECT_NEAR(phi[1], -0.6, 1e-12);
  EXPECT_NEAR(phi[2], 0.35, 1e-12);
  // default_left as booleans (older XGBoost) reads the same.
  auto b = Forest::FromJson(Edit(R"("default_left":[1,0,0])", R"("default_left":[true,false,false])"), "b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->Margin(missing), -0.25f);
  auto r = Forest::FromJson(Edit(R"("default_left":[1,0,0])", R"("default_left":[0,0,0])"), "r");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->Margin(missing), 0.75f);
}

// XGBoost writes a float in its shortest decimal form and reads it straight
// into a float; vigil's parser reads a double. Rounding that double to float
// gives the same float for every finite float but one pair, +-7.038531E-26
// (0x15ae43fd, checked over all 2^32): its nearest double lies exactly
// halfway between two floats. python3-xgboost 1.7.4, given this threshold,
// sends x == 0x15ae43fd right and the float below it left.
TEST(ForestTest, ThresholdWhoseDoubleIsHalfwayBetweenFloatsReadsAsXGBoostReadsIt) {
  for (const char* sign : {"", "-"}) {
    SCOPED_TRACE(sign);
    auto f = Forest::FromJson(Edit("[0.5,-0.25", StrCat("[", sign, "7.038531E-26,-0.25")), "m.json");
    ASSERT_TRUE(f.ok()) << f.status();
    const float threshold = std::bit_cast<float>(0x15ae43fdu) * (*sign ? -1 : 1);
    const float at[] = {0, threshold}, below[] = {0, std::nextafter(threshold, -1.0f)};
    EXPECT_EQ((*f)->Margin(at), 0.75f);
    EXPECT_EQ((*f)->Margin(below), -0.25f);
    const float above[] = {0, std::nextafter(threshold, 1.0f)};
    EXPECT_EQ((*f)->Margin(above), 0.75f);
  }
  // A midpoint written on purpose (not a float's shortest form) rounds to
  // even, as a float parser would: 1 + 2^-24 lies between 1 and 1 + 2^-23.
  auto g = Forest::FromJson(Edit("[0.5,-0.25", "[1.000000059604644775390625,-0.25"), "m.json");
  ASSERT_TRUE(g.ok()) << g.status();
  const float one[] = {0, 1.0f};
  EXPECT_EQ((*g)->Margin(one), 0.75f);
}

// A complete tree of `depth` levels; level l splits on feature l at 0.5 (NaN
// left) and leaf j, counted left to right, holds j. A row of 0s and 1s then
// scores as the binary number it spells, feature 0 the top bit.
std::string CompleteTree(int depth) {
  const int nodes = (1 << (depth + 1)) - 1, first_leaf = (1 << depth) - 1;
  std::string left, right, feature, cond, dleft, hess;
  for (int i = 0; i < nodes; ++i) {
    const char* sep = i ? "," : "";
    const bool leaf = i >= first_leaf;
    const int level = std::bit_width(static_cast<unsigned>(i + 1)) - 1;
    StrAppend(&left, sep, leaf ? -1 : 2 * i + 1);
    StrAppend(&right, sep, leaf ? -1 : 2 * i + 2);
    StrAppend(&feature, sep, leaf ? 0 : level);
    StrAppend(&cond, sep, leaf ? i - first_leaf : 0.5);
    StrAppend(&dleft, sep, 1);
    StrAppend(&hess, sep, 1 << (depth - level));
  }
  return StrCat(R"({"learner":{"learner_model_param":{"base_score":"5E-1","num_feature":")",
                std::max(depth, 1), R"("},"objective":{"name":"binary:logistic"},)",
                R"("gradient_booster":{"name":"gbtree","model":{"trees":[{"left_children":[)", left,
                R"(],"right_children":[)", right, R"(],"split_indices":[)", feature,
                R"(],"split_conditions":[)", cond, R"(],"default_left":[)", dleft,
                R"(],"sum_hessian":[)", hess, "]}]}}}}");
}

// The widest tree the layout takes (16,384 leaves on one level): every leaf
// reachable, the last one at the largest child offset.
TEST(ForestTest, CompleteTreeOfDepth14ScoresEveryLeaf) {
  constexpr int kDepth = 14;
  auto f = Forest::FromJson(CompleteTree(kDepth), "complete");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->max_depth(), kDepth);
  std::vector<float> rows, want;
  for (unsigned leaf = 0; leaf < (1u << kDepth); leaf += 1 + leaf / 64) {
    for (int l = 0; l < kDepth; ++l) rows.push_back(static_cast<float>((leaf >> (kDepth - 1 - l)) & 1));
    want.push_back(static_cast<float>(leaf));
  }
  for (int l = 0; l < kDepth; ++l) rows.push_back(1.0f);  // the last leaf
  want.push_back((1 << kDepth) - 1);
  std::vector<float> got(want.size());
  (*f)->MarginBatch(rows.data(), want.size(), got.data());
  std::vector<double> phi(kDepth + 1);
  for (size_t r = 0; r < want.size(); ++r) {
    const float* row = rows.data() + r * kDepth;
    EXPECT_EQ((*f)->Margin(row), want[r]) << "row " << r;
    EXPECT_EQ(got[r], want[r]) << "row " << r;
    if (r % 16 == 0) {
      (*f)->ShapContributions(row, phi.data());
      double sum = 0;
      for (double v : phi) sum += v;
      EXPECT_NEAR(sum, want[r], 1e-6) << "row " << r;
    }
  }
  std::vector<float> missing(kDepth, std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ((*f)->Margin(missing.data()), 0.0f);  // NaN left all the way
}

TEST(ForestTest, TreeTooWideForTheLayoutIsInvalidArgument) {
  EXPECT_THAT(LoadError(CompleteTree(15)).message(), HasSubstr("tree 0 is wider than"));
}

TEST(ForestTest, TruncatedFileIsInvalidArgument) {
  const std::string full =
      ReadFile(StrCat(SourceDir(), "/tests/data/models/", kGoldenModels[0].name, "/model.json"));
  ASSERT_GT(full.size(), 1000u);
  for (size_t len : {size_t{0}, size_t{1}, size_t{100}, full.size() / 2, full.size() - 1}) {
    SCOPED_TRACE(len);
    EXPECT_THAT(LoadError(full.substr(0, len)).message(), HasSubstr("invalid JSON"));
  }
  EXPECT_THAT(LoadError(std::string(kMinimal.substr(0, kMinimal.size() - 1))).message(),
              HasSubstr("invalid JSON"));
}

TEST(ForestTest, WrongTypesAreInvalidArgumentNamingTheField) {
  EXPECT_THAT(LoadError("[1, 2]").message(), HasSubstr("'learner'"));
  EXPECT_THAT(LoadError(Edit(R"("left_children":[1,-1,-1])", R"("left_children":"1,-1,-1")")).message(),
              HasSubstr("'left_children' is missing or not an array"));
  EXPECT_THAT(LoadError(Edit(R"("split_conditions":[0.5,)", R"("split_conditions":["0.5",)")).message(),
              HasSubstr("'split_conditions' holds a non-number"));
  EXPECT_THAT(LoadError(Edit(R"("sum_hessian":[10,4,6],)", "")).message(),
              HasSubstr("'sum_hessian' is missing"));
  EXPECT_THAT(LoadError(Edit(R"("num_feature":"2")", R"("num_feature":"two")")).message(),
              HasSubstr("num_feature"));
  EXPECT_THAT(LoadError(Edit(R"("num_feature":"2")", R"("num_feature":[2])")).message(),
              HasSubstr("num_feature"));
  EXPECT_THAT(LoadError(Edit(R"("base_score":"5E-1")", R"("base_score":null)")).message(),
              HasSubstr("base_score"));
  EXPECT_THAT(LoadError(Edit(R"("trees":[{)", R"("trees":[7,{)")).message(), HasSubstr("tree 0 is not an object"));
  EXPECT_THAT(LoadError(Edit(R"("right_children":[2,-1,-1])", R"("right_children":[2,-1])")).message(),
              HasSubstr("different lengths"));
}

// A required field that is absent is an error, never an exception (simdjson
// throws when a missing key is read as a value).
TEST(ForestTest, MissingParametersAreInvalidArgument) {
  EXPECT_THAT(LoadError(Edit(R"("base_score":"5E-1",)", "")).message(), HasSubstr("base_score"));
  EXPECT_THAT(LoadError(Edit(R"("num_feature":"2",)", "")).message(), HasSubstr("num_feature"));
  EXPECT_THAT(LoadError(Edit(R"("objective":{"name":"binary:logistic"},)", "")).message(),
              HasSubstr("objective"));
  EXPECT_THAT(LoadError(Edit(R"("name":"gbtree",)", "")).message(), HasSubstr("booster"));
}

TEST(ForestTest, ChildIndexOutOfRangeIsInvalidArgument) {
  EXPECT_THAT(LoadError(Edit(R"("left_children":[1,-1,-1])", R"("left_children":[3,-1,-1])")).message(),
              HasSubstr("node 0 has child 3 outside 0..2"));
  EXPECT_THAT(LoadError(Edit(R"("right_children":[2,-1,-1])", R"("right_children":[-7,-1,-1])")).message(),
              HasSubstr("outside"));
  EXPECT_THAT(LoadError(Edit(R"("left_children":[1,-1,-1])", R"("left_children":[1.5,-1,-1])")).message(),
              HasSubstr("outside"));
  EXPECT_THAT(LoadError(Edit(R"("trees":[{"left_children":[1,-1,-1],)", R"("trees":[{"left_children":[],)"))
                  .message(),
              HasSubstr("tree 0"));
}

TEST(ForestTest, CycleIsInvalidArgument) {
  // Node 1 points back at the root.
  EXPECT_THAT(LoadError(Edit(R"("left_children":[1,-1,-1],"right_children":[2,-1,-1])",
                             R"("left_children":[1,0,-1],"right_children":[2,2,-1])"))
                  .message(),
              HasSubstr("reached twice (a cycle"));
  // A node that is its own child.
  EXPECT_THAT(LoadError(Edit(R"("left_children":[1,-1,-1])", R"("left_children":[0,-1,-1])")).message(),
              HasSubstr("reached twice"));
  // Two parents sharing one child.
  EXPECT_THAT(LoadError(Edit(R"("right_children":[2,-1,-1])", R"("right_children":[1,-1,-1])")).message(),
              HasSubstr("reached twice"));
}

TEST(ForestTest, FeatureIndexBeyondNumFeatureIsInvalidArgument) {
  EXPECT_THAT(LoadError(Edit(R"("split_indices":[1,0,0])", R"("split_indices":[2,0,0])")).message(),
              HasSubstr("node 0 splits on feature 2 but the model has 2"));
  EXPECT_THAT(LoadError(Edit(R"("split_indices":[1,0,0])", R"("split_indices":[-1,0,0])")).message(),
              HasSubstr("splits on feature -1"));
}

TEST(ForestTest, CategoricalSplitIsInvalidArgument) {
  EXPECT_THAT(LoadError(Edit(R"("split_type":[0,0,0])", R"("split_type":[1,0,0])")).message(),
              HasSubstr("categorical split"));
}

// A malformed split_type must not hide a categorical split.
TEST(ForestTest, MalformedSplitTypeIsInvalidArgument) {
  EXPECT_THAT(LoadError(Edit(R"("split_type":[0,0,0])", R"("split_type":[1,"x",0])")).message(),
              HasSubstr("'split_type' holds a non-number"));
  EXPECT_THAT(LoadError(Edit(R"("split_type":[0,0,0])", R"("split_type":"categorical")")).message(),
              HasSubstr("'split_type'"));
  EXPECT_THAT(LoadError(Edit(R"("split_type":[0,0,0])", R"("split_type":[0])")).message(),
              HasSubstr("different lengths"));
  // Older models have no split_type: every split is numerical.
  auto f = Forest::FromJson(Edit(R"(,"split_type":[0,0,0])", ""), "old");
  EXPECT_TRUE(f.ok()) << f.status();
}

// A value finite in the file but beyond float's range would be an infinite
// leaf or threshold (and inf - inf a NaN margin).
TEST(ForestTest, ValueBeyondFloatRangeIsInvalidArgument) {
  EXPECT_THAT(LoadError(Edit("-0.25,0.75]", "-0.25,1e39]")).message(),
              HasSubstr("node 2 has a value outside float's range"));
  EXPECT_THAT(LoadError(Edit(R"("split_conditions":[0.5,)", R"("split_conditions":[-1e300,)")).message(),
              HasSubstr("node 0 has a value outside float's range"));
  const std::string reg = Edit(R"("name":"binary:logistic")", R"("name":"reg:squarederror")");
  std::string huge = reg;
  huge.replace(huge.find("5E-1"), 4, "1E39");
  EXPECT_THAT(LoadError(huge).message(), HasSubstr("base_score"));
  // FLT_MAX as XGBoost writes it (shortest form, a little above FLT_MAX as a
  // double) is in range.
  auto f = Forest::FromJson(Edit("-0.25,0.75]", "-0.25,3.4028235E38]"), "max");
  ASSERT_TRUE(f.ok()) << f.status();
  const float row[] = {0, 1};
  EXPECT_EQ((*f)->Margin(row), std::numeric_limits<float>::max());
}

TEST(ForestTest, MultiClassIsInvalidArgument) {
  EXPECT_THAT(LoadError(Edit(R"("num_class":"0")", R"("num_class":"3")")).message(), HasSubstr("multi-class"));
  EXPECT_THAT(LoadError(Edit(R"("num_target":"1")", R"("num_target":"2")")).message(), HasSubstr("multi-target"));
}

TEST(ForestTest, UnknownObjectiveIsInvalidArgument) {
  const std::string json = Edit(R"("name":"binary:logistic")", R"("name":"rank:pairwise")");
  EXPECT_THAT(LoadError(json).message(), HasSubstr("objective rank:pairwise"));
  EXPECT_THAT(LoadError(json).message(), HasSubstr("supported: binary:logistic"));
}

TEST(ForestTest, DartIsInvalidArgument) {
  // A dart model keeps its trees under gbtree and weights them at prediction.
  const std::string json = Edit(R"("name":"gbtree","model":{)", R"("name":"dart","weight_drop":[1],"model":{)");
  EXPECT_THAT(LoadError(json).message(), HasSubstr("booster 'dart' (only gbtree is supported)"));
}

TEST(ForestTest, BaseScoreOutsideTheObjectivesRangeIsInvalidArgument) {
  EXPECT_THAT(LoadError(Edit(R"("base_score":"5E-1")", R"("base_score":"1")")).message(),
              HasSubstr("strictly between 0 and 1"));
  EXPECT_THAT(LoadError(Edit(R"("base_score":"5E-1")", R"("base_score":"nan")")).message(),
              HasSubstr("base_score"));
}

TEST(ForestTest, FeatureNamesMustMatchNumFeature) {
  std::string json = Edit(R"({"learner":{)", R"({"learner":{"feature_names":["a","b","c"],)");
  EXPECT_THAT(LoadError(json).message(), HasSubstr("3 feature names for num_feature 2"));
  json = Edit(R"({"learner":{)", R"({"learner":{"feature_names":["a",2],)");
  EXPECT_THAT(LoadError(json).message(), HasSubstr("feature_names holds a non-string"));
  auto f = Forest::FromJson(Edit(R"({"learner":{)", R"({"learner":{"feature_names":["a","b"],)"), "m");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_THAT((*f)->feature_names(), testing::ElementsAre("a", "b"));
}

TEST(ForestTest, MissingFileIsNotFound) {
  auto f = Forest::Load("/nonexistent/model.json");
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(f.status().message(), HasSubstr("/nonexistent/model.json"));
}

}  // namespace
}  // namespace vigil::model
