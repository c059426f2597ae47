// Agreement of src/model/metrics.h and isotonic.h with scikit-learn, to 1e-9
// absolute, on data generated here: 5,000 rows with scores rounded to two
// decimals (heavy ties), 5,000 rows with continuous scores, a tiny hand-made
// set and a set whose scores are all equal; each row also has an entity and
// a day, for the Fraud Detection Handbook's card precision@k, which the
// script computes with the handbook's own pandas code. The rows go to a temporary CSV,
// tests/integration/metrics_sklearn.py computes scikit-learn's answers with
// /usr/bin/python3 (the interpreter scripts/install-deps.sh equips), and each
// test compares one family of metrics on every set. A missing interpreter
// or scikit-learn fails the tests; it does not skip them.
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/random.h"
#include "core/strings.h"
#include "gtest/gtest.h"
#include "model/isotonic.h"
#include "model/metrics.h"
#include "nlohmann/json.hpp"

namespace vigil::model {
namespace {

using Json = nlohmann::json;

constexpr double kTolerance = 1e-9;
constexpr char kPython[] = "/usr/bin/python3";

struct DataSet {
  std::vector<double> scores;
  std::vector<uint8_t> labels;
  std::vector<uint64_t> entities;
  std::vector<int64_t> days;
};

// Row i is entity i on day i % 2: every entity is alone in its day.
DataSet Small(std::vector<double> scores, std::vector<uint8_t> labels) {
  DataSet d{std::move(scores), std::move(labels), {}, {}};
  for (size_t i = 0; i < d.scores.size(); ++i) {
    d.entities.push_back(i);
    d.days.push_back(static_cast<int64_t>(i % 2));
  }
  return d;
}

// A fraud-like sample: about 8 % positives, scored higher on average, over
// 400 entities and 12 days. `decimals` < 0 keeps the scores continuous.
DataSet Generate(size_t rows, uint64_t seed, int decimals) {
  core::SplitMix64 rng(seed);
  DataSet d;
  for (size_t i = 0; i < rows; ++i) {
    const bool positive = rng.Uniform() < 0.08;
    // A sum of uniforms: roughly bell-shaped, overlapping classes.
    double s = (rng.Uniform() + rng.Uniform() + rng.Uniform()) / 3.0 * 0.8;
    if (positive) s += 0.25 * rng.Uniform() + 0.1;
    s = std::min(1.0, s);
    if (decimals >= 0) {
      const double scale = std::pow(10.0, decimals);
      s = std::round(s * scale) / scale;
    }
    d.scores.push_back(s);
    d.labels.push_back(positive);
    d.entities.push_back(rng.Below(400));
    d.days.push_back(static_cast<int64_t>(rng.Below(12)));
  }
  return d;
}

std::map<std::string, DataSet> DataSets() {
  std::map<std::string, DataSet> sets;
  sets["ties"] = Generate(5000, 1, 2);
  sets["continuous"] = Generate(5000, 2, -1);
  sets["tiny"] = Small({0.1, 0.4, 0.35, 0.8, 0.8, 0.2, 0.35, 0.9}, {0, 0, 1, 1, 0, 0, 1, 1});
  sets["all_equal"] = Small(std::vector<double>(6, 0.5), {1, 0, 0, 1, 0, 0});
  return sets;
}

// Writes the sets to a temporary CSV, runs the reference script on it and
// returns its JSON; a null value (after a failure) when it cannot.
Json RunSklearn(const std::map<std::string, DataSet>& sets) {
  const char* source = std::getenv("VIGIL_SOURCE_DIR");
  if (source == nullptr || *source == '\0') {
    ADD_FAILURE() << "VIGIL_SOURCE_DIR is not set: run this test through ctest";
    return Json();
  }
  if (access(kPython, X_OK) != 0) {
    ADD_FAILURE() << kPython << " is missing: run scripts/install-deps.sh";
    return Json();
  }
  const char* tmp = std::getenv("TMPDIR");
  std::string path = StrCat(tmp && *tmp ? tmp : "/tmp", "/vigil-metrics-XXXXXX.csv");
  const int fd = mkstemps(path.data(), 4);
  if (fd < 0) {
    ADD_FAILURE() << "cannot create " << path;
    return Json();
  }
  std::string csv = "set,score,label,entity,day\n";
  for (const auto& [name, d] : sets) {
    for (size_t i = 0; i < d.scores.size(); ++i) {
      StrAppend(&csv, name, ",", d.scores[i], ",", int{d.labels[i]}, ",", d.entities[i], ",",
                d.days[i], "\n");
    }
  }
  const bool written = write(fd, csv.data(), csv.size()) == static_cast<ssize_t>(csv.size());
  close(fd);
  if (!written) {
    ADD_FAILURE() << "cannot write " << path;
    unlink(path.c_str());
    return Json();
  }

  const std::string command =
      StrCat(kPython, " '", source, "/tests/integration/metrics_sklearn.py' '", path, "'");
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe != nullptr) {
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, got);
  }
  const int status = pipe != nullptr ? pclose(pipe) : -1;
  unlink(path.c_str());
  if (status != 0) {
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    ADD_FAILURE() << command << " exited with " << code
                  << (code == 3 ? ": scikit-learn or numpy is missing for /usr/bin/python3; "
                                  "run scripts/install-deps.sh"
                                : " (its standard error is above)");
    return Json();
  }
  Json j = Json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("sets")) {
    ADD_FAILURE() << "metrics_sklearn.py did not print the expected JSON:\n" << out;
    return Json();
  }
  return j;
}

// The data and scikit-learn's answers, computed by the first test of the
// program that needs them (in SetUp rather than SetUpTestSuite, so that a
// missing scikit-learn fails each test instead of skipping it).
class MetricsSklearnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static const auto* const sets = new std::map<std::string, DataSet>(DataSets());
    static const auto* const reference = new Json(RunSklearn(*sets));
    sets_ = sets;
    reference_ = reference;
    ASSERT_FALSE(reference_->is_null()) << "no reference values from scikit-learn";
    ASSERT_EQ((*reference_)["sets"].size(), sets_->size());
  }

  // Calls check(name, data, sklearn's values) for every set.
  template <typename Check>
  void ForEachSet(Check check) {
    for (const auto& [name, d] : *sets_) {
      SCOPED_TRACE(
          StrCat("set ", name, " (sklearn ", (*reference_)["sklearn"].get<std::string>(), ")"));
      const Json& ref = (*reference_)["sets"][name];
      ASSERT_EQ(ref["rows"].get<size_t>(), d.scores.size());
      check(name, d, ref);
    }
  }

  const std::map<std::string, DataSet>* sets_ = nullptr;
  const Json* reference_ = nullptr;
};

// Compares element by element from `from` on; a null expected value (not
// finite in Python) must be non-finite here too.
void ExpectSame(const std::vector<double>& actual, const Json& expected, const char* what,
                size_t from = 0) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  for (size_t i = from; i < actual.size(); ++i) {
    if (expected[i].is_null()) {
      EXPECT_FALSE(std::isfinite(actual[i])) << what << "[" << i << "]";
    } else {
      EXPECT_NEAR(actual[i], expected[i].get<double>(), kTolerance) << what << "[" << i << "]";
    }
  }
}

TEST_F(MetricsSklearnTest, ScalarMetricsMatch) {
  ForEachSet([](const std::string&, const DataSet& d, const Json& ref) {
    EXPECT_NEAR(RocAuc(d.scores, d.labels), ref["roc_auc"].get<double>(), kTolerance);
    EXPECT_NEAR(AveragePrecision(d.scores, d.labels), ref["average_precision"].get<double>(),
                kTolerance);
    EXPECT_NEAR(BrierScore(d.scores, d.labels), ref["brier"].get<double>(), kTolerance);
  });
}

TEST_F(MetricsSklearnTest, RocCurveMatches) {
  ForEachSet([](const std::string&, const DataSet& d, const Json& ref) {
    const RocCurve c = RocCurveOf(d.scores, d.labels);
    ExpectSame(c.fpr, ref["roc"]["fpr"], "fpr");
    ExpectSame(c.tpr, ref["roc"]["tpr"], "tpr");
    // The first threshold stands for "no alert": +inf here and from sklearn
    // 1.3 on, max score + 1 in sklearn 1.2. The others are the scores.
    ASSERT_FALSE(c.thresholds.empty());
    EXPECT_EQ(c.thresholds[0], INFINITY);
    ExpectSame(c.thresholds, ref["roc"]["thresholds"], "thresholds", 1);
  });
}

TEST_F(MetricsSklearnTest, PrecisionRecallCurveMatches) {
  ForEachSet([](const std::string&, const DataSet& d, const Json& ref) {
    const PrCurve c = PrCurveOf(d.scores, d.labels);
    ExpectSame(c.precision, ref["pr"]["precision"], "precision");
    ExpectSame(c.recall, ref["pr"]["recall"], "recall");
    ExpectSame(c.thresholds, ref["pr"]["thresholds"], "thresholds");
  });
}

TEST_F(MetricsSklearnTest, RecallAtFprMatchesTheRocCurve) {
  ForEachSet([](const std::string&, const DataSet& d, const Json& ref) {
    for (const Json& r : ref["recall_at_fpr"]) {
      const double max_fpr = r["max_fpr"].get<double>();
      EXPECT_NEAR(RecallAtFpr(d.scores, d.labels, max_fpr), r["recall"].get<double>(), kTolerance)
          << "max_fpr " << max_fpr;
      const FprThreshold t = ThresholdForMaxFpr(d.scores, d.labels, max_fpr);
      EXPECT_LE(t.fpr, max_fpr);
      // The chosen threshold's confusion gives the same point.
      const Confusion c = ConfusionAt(d.scores, d.labels, t.threshold);
      EXPECT_EQ(c.tp + c.fp, t.alerts);
      EXPECT_NEAR(c.tpr, t.recall, kTolerance);
    }
  });
}

TEST_F(MetricsSklearnTest, ConfusionMatches) {
  ForEachSet([](const std::string&, const DataSet& d, const Json& ref) {
    for (const Json& r : ref["confusion"]) {
      const double threshold = r["threshold"].get<double>();
      const Confusion c = ConfusionAt(d.scores, d.labels, threshold);
      EXPECT_EQ(c.tp, r["tp"].get<uint64_t>()) << "threshold " << threshold;
      EXPECT_EQ(c.fp, r["fp"].get<uint64_t>()) << "threshold " << threshold;
      EXPECT_EQ(c.tn, r["tn"].get<uint64_t>()) << "threshold " << threshold;
      EXPECT_EQ(c.fn, r["fn"].get<uint64_t>()) << "threshold " << threshold;
    }
  });
}

TEST_F(MetricsSklearnTest, IsotonicPredictionsMatch) {
  ForEachSet([](const std::string&, const DataSet& d, const Json& ref) {
    IsotonicCalibration iso;
    ASSERT_TRUE(iso.Fit(d.scores, d.labels).ok());
    const Json& grid = ref["isotonic"]["grid"];
    std::vector<double> predictions;
    for (const Json& x : grid) predictions.push_back(iso.Apply(x.get<double>()));
    ExpectSame(predictions, ref["isotonic"]["predictions"], "isotonic");
  });
}

TEST_F(MetricsSklearnTest, CardPrecisionMatchesTheHandbooksCode) {
  ForEachSet([](const std::string& name, const DataSet& d, const Json& ref) {
    // pandas ranks entities with equal scores in an unspecified order; in
    // "ties" such entities straddle the k-th place, elsewhere they do not.
    if (name == "ties") return;
    const Json& card = ref["card_precision"];
    const EntityPrecision p =
        EntityPrecisionAtKPerDay(d.scores, d.labels, d.entities, d.days, card["k"].get<size_t>());
    ASSERT_EQ(p.days.size(), card["per_day"].size());
    for (size_t i = 0; i < p.days.size(); ++i) {
      EXPECT_NEAR(p.days[i].precision, card["per_day"][i].get<double>(), kTolerance) << "day " << i;
      EXPECT_EQ(p.days[i].positive_entities, card["compromised_per_day"][i].get<size_t>())
          << "day " << i;
    }
    EXPECT_NEAR(p.mean, card["mean"].get<double>(), kTolerance);
  });
}

}  // namespace
}  // namespace vigil::model
