#include "model/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "core/random.h"
#include "gtest/gtest.h"

namespace vigil::model {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = 1e-12;

// A small case worked by hand. Runs of equal scores, highest first:
//   0.9: +1 pos         cumulative tp 1 fp 0
//   0.8: +1 pos +1 neg             tp 2 fp 1
//   0.7: +1 pos                    tp 3 fp 1
//   0.6: +1 pos +1 neg             tp 4 fp 2
//   0.5: +1 neg                    tp 4 fp 3
// P = 4, N = 3. AUC by pairs: 0.9 beats 3, 0.8 beats 2 and ties 1, 0.7
// beats 2, 0.6 beats 1 and ties 1: (3 + 2.5 + 2 + 1.5) / 12 = 0.75.
// AP = (1 + 2/3 + 3/4 + 4/6) / 4 = 37/48.
const std::vector<double> kScores = {0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.5};
const std::vector<uint8_t> kLabels = {1, 1, 0, 1, 0, 1, 0};

void ExpectVectorNear(const std::vector<double>& actual, const std::vector<double>& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  for (size_t i = 0; i < actual.size(); ++i) {
    if (std::isinf(expected[i])) {
      EXPECT_EQ(actual[i], expected[i]) << "at " << i;
    } else {
      EXPECT_NEAR(actual[i], expected[i], kEps) << "at " << i;
    }
  }
}

TEST(RocCurveTest, HasOnePointPerDistinctScoreStartingAtInfinity) {
  const RocCurve c = RocCurveOf(kScores, kLabels);
  ExpectVectorNear(c.fpr, {0, 0, 1. / 3, 1. / 3, 2. / 3, 1});
  ExpectVectorNear(c.tpr, {0, 0.25, 0.5, 0.75, 1, 1});
  ExpectVectorNear(c.thresholds, {kInf, 0.9, 0.8, 0.7, 0.6, 0.5});
}

TEST(RocCurveTest, IsEmptyWithOneClassOrBadInput) {
  EXPECT_TRUE(RocCurveOf(kScores, std::vector<uint8_t>(7, 0)).fpr.empty());
  EXPECT_TRUE(RocCurveOf(kScores, std::vector<uint8_t>(7, 1)).fpr.empty());
  EXPECT_TRUE(RocCurveOf({}, {}).fpr.empty());
  EXPECT_TRUE(RocCurveOf(kScores, std::vector<uint8_t>(6, 1)).fpr.empty());
}

TEST(RocAucTest, CountsTiedPairsAsHalf) { EXPECT_NEAR(RocAuc(kScores, kLabels), 0.75, kEps); }

TEST(RocAucTest, IsOneHalfWhenAllScoresAreEqual) {
  const std::vector<double> s(4, 0.3);
  const std::vector<uint8_t> y = {1, 0, 0, 1};
  EXPECT_DOUBLE_EQ(RocAuc(s, y), 0.5);
  EXPECT_DOUBLE_EQ(AveragePrecision(s, y), 0.5);
  const RocCurve c = RocCurveOf(s, y);
  ExpectVectorNear(c.fpr, {0, 1});
  ExpectVectorNear(c.tpr, {0, 1});
}

TEST(RocAucTest, IsNaNForOneClassEmptyMismatchedOrNaNScores) {
  EXPECT_TRUE(std::isnan(RocAuc(kScores, std::vector<uint8_t>(7, 0))));
  EXPECT_TRUE(std::isnan(RocAuc(kScores, std::vector<uint8_t>(7, 1))));
  EXPECT_TRUE(std::isnan(RocAuc({}, {})));
  EXPECT_TRUE(std::isnan(RocAuc(kScores, std::vector<uint8_t>(3, 1))));
  std::vector<double> s = kScores;
  s[2] = std::nan("");
  EXPECT_TRUE(std::isnan(RocAuc(s, kLabels)));
}

TEST(RocAucTest, DoesNotDependOnRowOrderAndTakesAnyNonZeroLabelAsPositive) {
  std::vector<size_t> order(kScores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::reverse(order.begin(), order.end());
  std::rotate(order.begin(), order.begin() + 3, order.end());
  std::vector<double> s;
  std::vector<uint8_t> y;
  for (size_t i : order) {
    s.push_back(kScores[i]);
    y.push_back(kLabels[i] ? 7 : 0);
  }
  EXPECT_DOUBLE_EQ(RocAuc(s, y), RocAuc(kScores, kLabels));
  EXPECT_DOUBLE_EQ(AveragePrecision(s, y), AveragePrecision(kScores, kLabels));
  EXPECT_EQ(PrCurveOf(s, y).precision, PrCurveOf(kScores, kLabels).precision);
}

TEST(PrCurveTest, ListsThresholdsAscendingWithAFinalPointWithoutThreshold) {
  const PrCurve c = PrCurveOf(kScores, kLabels);
  ExpectVectorNear(c.thresholds, {0.5, 0.6, 0.7, 0.8, 0.9});
  ExpectVectorNear(c.precision, {4. / 7, 4. / 6, 3. / 4, 2. / 3, 1, 1});
  ExpectVectorNear(c.recall, {1, 1, 0.75, 0.5, 0.25, 0});
}

TEST(PrCurveTest, IsEmptyWithoutPositivesButDefinedWithoutNegatives) {
  EXPECT_TRUE(PrCurveOf(kScores, std::vector<uint8_t>(7, 0)).precision.empty());
  const PrCurve c = PrCurveOf(kScores, std::vector<uint8_t>(7, 1));
  EXPECT_EQ(c.thresholds.size(), 5u);
  for (double p : c.precision) EXPECT_EQ(p, 1);
}

TEST(AveragePrecisionTest, SumsRecallStepsTimesPrecision) {
  EXPECT_NEAR(AveragePrecision(kScores, kLabels), 37. / 48, kEps);
}

TEST(AveragePrecisionTest, IsNaNWithoutPositivesAndOneWithoutNegatives) {
  EXPECT_TRUE(std::isnan(AveragePrecision(kScores, std::vector<uint8_t>(7, 0))));
  EXPECT_DOUBLE_EQ(AveragePrecision(kScores, std::vector<uint8_t>(7, 1)), 1);
  EXPECT_TRUE(std::isnan(AveragePrecision({}, {})));
}

TEST(RecallAtFprTest, TakesTheLastRocPointWithinTheLimit) {
  EXPECT_DOUBLE_EQ(RecallAtFpr(kScores, kLabels, 0), 0.25);
  EXPECT_DOUBLE_EQ(RecallAtFpr(kScores, kLabels, 1. / 3), 0.75);
  EXPECT_DOUBLE_EQ(RecallAtFpr(kScores, kLabels, 0.5), 0.75);
  EXPECT_DOUBLE_EQ(RecallAtFpr(kScores, kLabels, 1), 1);
  EXPECT_TRUE(std::isnan(RecallAtFpr(kScores, std::vector<uint8_t>(7, 1), 0.1)));
}

TEST(ThresholdForMaxFprTest, ReturnsTheLowestScoreWithinTheLimit) {
  const FprThreshold t = ThresholdForMaxFpr(kScores, kLabels, 0.5);
  EXPECT_EQ(t.threshold, 0.7);
  EXPECT_DOUBLE_EQ(t.fpr, 1. / 3);
  EXPECT_DOUBLE_EQ(t.recall, 0.75);
  EXPECT_EQ(t.alerts, 4u);
  EXPECT_EQ(ThresholdForMaxFpr(kScores, kLabels, 1).threshold, 0.5);
  EXPECT_EQ(ThresholdForMaxFpr(kScores, kLabels, 1).alerts, 7u);
}

TEST(ThresholdForMaxFprTest, IsInfinityWhenTheTopScoreIsAlreadyOverTheLimit) {
  // The top score is a negative: FPR 1/2 there.
  const std::vector<double> s = {0.9, 0.5, 0.4};
  const std::vector<uint8_t> y = {0, 1, 0};
  const FprThreshold t = ThresholdForMaxFpr(s, y, 0.1);
  EXPECT_EQ(t.threshold, kInf);
  EXPECT_EQ(t.alerts, 0u);
  EXPECT_EQ(t.recall, 0);
  EXPECT_EQ(RecallAtFpr(s, y, 0.1), 0);
}

TEST(PrecisionAtKTest, BreaksTiesByRowOrder) {
  EXPECT_DOUBLE_EQ(PrecisionAtK(kScores, kLabels, 2), 1);       // rows 0 and 1
  EXPECT_DOUBLE_EQ(PrecisionAtK(kScores, kLabels, 3), 2. / 3);  // and row 2
  const std::vector<double> s = {0.8, 0.8};
  EXPECT_DOUBLE_EQ(PrecisionAtK(s, std::vector<uint8_t>{0, 1}, 1), 0);
  EXPECT_DOUBLE_EQ(PrecisionAtK(s, std::vector<uint8_t>{1, 0}, 1), 1);
}

TEST(PrecisionAtKTest, CountsAllRowsWhenKIsLargerAndIsNaNForKZero) {
  EXPECT_DOUBLE_EQ(PrecisionAtK(kScores, kLabels, 100), 4. / 7);
  EXPECT_TRUE(std::isnan(PrecisionAtK(kScores, kLabels, 0)));
  EXPECT_TRUE(std::isnan(PrecisionAtK({}, {}, 3)));
}

// Three days, written out of order:
//   day 0: entity 1 (0.9 fraud, 0.2 genuine), entity 2 (0.8), entity 3 (0.7 fraud)
//   day 1: entity 1 (0.95 fraud, detected on day 0), entity 3 (0.6 fraud),
//          entity 4 (0.6, tied with 3)
//   day 2: entity 3 (0.99 fraud, detected on day 1 when k = 2), entity 5 (0.1)
struct EntityCase {
  std::vector<double> scores = {0.6, 0.9, 0.1, 0.8, 0.95, 0.7, 0.2, 0.99, 0.6};
  std::vector<uint8_t> labels = {0, 1, 0, 0, 1, 1, 0, 1, 1};
  std::vector<uint64_t> entities = {4, 1, 5, 2, 1, 3, 1, 3, 3};
  std::vector<int64_t> days = {1, 0, 2, 0, 1, 0, 0, 2, 1};
};

TEST(EntityPrecisionTest, DropsEntitiesDetectedOnEarlierDays) {
  const EntityCase c;
  const EntityPrecision p = EntityPrecisionAtKPerDay(c.scores, c.labels, c.entities, c.days, 2);
  ASSERT_EQ(p.days.size(), 3u);
  // Day 0: top 2 are entities 1 (fraud) and 2.
  EXPECT_EQ(p.days[0].day, 0);
  EXPECT_DOUBLE_EQ(p.days[0].precision, 0.5);
  EXPECT_EQ(p.days[0].entities, 3u);
  EXPECT_EQ(p.days[0].positive_entities, 2u);
  EXPECT_EQ(p.days[0].detected, 1u);
  // Day 1: entity 1 is gone; 3 (fraud) and 4.
  EXPECT_DOUBLE_EQ(p.days[1].precision, 0.5);
  EXPECT_EQ(p.days[1].entities, 2u);
  EXPECT_EQ(p.days[1].positive_entities, 1u);
  // Day 2: entity 3 is gone; one genuine entity, still divided by k.
  EXPECT_DOUBLE_EQ(p.days[2].precision, 0);
  EXPECT_EQ(p.days[2].entities, 1u);
  EXPECT_EQ(p.days[2].positive_entities, 0u);
  EXPECT_DOUBLE_EQ(p.mean, 1. / 3);
}

TEST(EntityPrecisionTest, BreaksEqualScoresBySmallerEntityId) {
  const EntityCase c;
  const EntityPrecision p = EntityPrecisionAtKPerDay(c.scores, c.labels, c.entities, c.days, 1);
  ASSERT_EQ(p.days.size(), 3u);
  EXPECT_DOUBLE_EQ(p.days[0].precision, 1);  // entity 1
  EXPECT_DOUBLE_EQ(p.days[1].precision, 1);  // entity 3 before 4 at 0.6
  EXPECT_DOUBLE_EQ(p.days[2].precision, 0);  // entity 5
  EXPECT_DOUBLE_EQ(p.mean, 2. / 3);
}

TEST(EntityPrecisionTest, IsNaNForKZeroOrMismatchedSpans) {
  const EntityCase c;
  EXPECT_TRUE(std::isnan(EntityPrecisionAtKPerDay(c.scores, c.labels, c.entities, c.days, 0).mean));
  const std::vector<int64_t> short_days(3, 0);
  const EntityPrecision p = EntityPrecisionAtKPerDay(c.scores, c.labels, c.entities, short_days, 2);
  EXPECT_TRUE(std::isnan(p.mean));
  EXPECT_TRUE(p.days.empty());
}

TEST(AmountRecallTest, SharesThePositivesAmountAtOrAboveTheThreshold) {
  const std::vector<double> s = {0.9, 0.4, 0.8, 0.1, 0.5};
  const std::vector<uint8_t> y = {1, 1, 0, 1, 1};
  const std::vector<double> amounts = {100, 50, 1000, 50, 25};
  EXPECT_DOUBLE_EQ(AmountRecall(s, y, amounts, 0.5), 125. / 225);
  EXPECT_TRUE(std::isnan(AmountRecall(s, std::vector<uint8_t>(5, 0), amounts, 0.5)));
  EXPECT_TRUE(std::isnan(AmountRecall(s, y, std::vector<double>(2, 1), 0.5)));
}

TEST(BrierScoreTest, IsTheMeanSquaredErrorAndDefinedForOneClass) {
  EXPECT_NEAR(BrierScore(kScores, kLabels), (0.01 + 0.04 + 0.64 + 0.09 + 0.36 + 0.16 + 0.25) / 7,
              kEps);
  EXPECT_NEAR(BrierScore(std::vector<double>{0.5, 0.25}, std::vector<uint8_t>{0, 0}),
              (0.25 + 0.0625) / 2, kEps);
  EXPECT_TRUE(std::isnan(BrierScore({}, {})));
}

TEST(CalibrationTableTest, BinsByExactEdgesAndPutsOneInTheLastBin) {
  const std::vector<double> s = {
      0.0, 0.05, 0.3, std::nextafter(0.3, 0.0), 0.7, 0.7, 1.0, 0.99, -0.1, std::nan(""), 1.5};
  const std::vector<uint8_t> y = {0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1};
  const CalibrationTable t = CalibrationTableOf(s, y);
  ASSERT_EQ(t.bins.size(), 10u);
  EXPECT_EQ(t.skipped, 3u);
  EXPECT_EQ(t.bins[0].count, 2u);
  EXPECT_DOUBLE_EQ(t.bins[0].mean_score, 0.025);
  EXPECT_DOUBLE_EQ(t.bins[0].positive_rate, 0);
  EXPECT_EQ(t.bins[2].count, 1u);  // just below 0.3
  EXPECT_EQ(t.bins[3].count, 1u);  // 0.3 itself
  EXPECT_EQ(t.bins[7].count, 2u);
  EXPECT_DOUBLE_EQ(t.bins[7].positive_rate, 0.5);
  EXPECT_EQ(t.bins[9].count, 2u);
  EXPECT_DOUBLE_EQ(t.bins[9].mean_score, 0.995);
  EXPECT_EQ(t.bins[5].count, 0u);
  EXPECT_TRUE(std::isnan(t.bins[5].mean_score));
  EXPECT_TRUE(std::isnan(t.bins[5].positive_rate));
  EXPECT_DOUBLE_EQ(t.bins[3].lower, 0.3);
  EXPECT_DOUBLE_EQ(t.bins[9].upper, 1);
}

TEST(CalibrationTableTest, TakesTheNumberOfBins) {
  const CalibrationTable t = CalibrationTableOf(kScores, kLabels, 4);
  ASSERT_EQ(t.bins.size(), 4u);
  EXPECT_EQ(t.bins[2].count, 4u);  // 0.5, 0.6, 0.6, 0.7
  EXPECT_EQ(t.bins[3].count, 3u);  // 0.9, 0.8, 0.8
  EXPECT_TRUE(CalibrationTableOf(kScores, kLabels, 0).bins.empty());
}

TEST(ConfusionTest, CountsScoresAtTheThresholdAsAlerts) {
  const Confusion c = ConfusionAt(kScores, kLabels, 0.7);
  EXPECT_EQ(c.tp, 3u);
  EXPECT_EQ(c.fp, 1u);
  EXPECT_EQ(c.tn, 2u);
  EXPECT_EQ(c.fn, 1u);
  EXPECT_DOUBLE_EQ(c.alert_rate, 4. / 7);
  EXPECT_DOUBLE_EQ(c.fpr, 1. / 3);
  EXPECT_DOUBLE_EQ(c.tpr, 0.75);
  EXPECT_DOUBLE_EQ(c.precision, 0.75);
}

TEST(ConfusionTest, GivesNaNForZeroOverZero) {
  const Confusion none = ConfusionAt(kScores, kLabels, 2);
  EXPECT_EQ(none.tp + none.fp, 0u);
  EXPECT_TRUE(std::isnan(none.precision));
  EXPECT_EQ(none.alert_rate, 0);
  const Confusion only_negatives = ConfusionAt(kScores, std::vector<uint8_t>(7, 0), 0.7);
  EXPECT_TRUE(std::isnan(only_negatives.tpr));
  const Confusion bad = ConfusionAt({}, {}, 0.5);
  EXPECT_EQ(bad.tp + bad.fp + bad.tn + bad.fn, 0u);
  EXPECT_TRUE(std::isnan(bad.alert_rate));
}

TEST(GroupMetricsTest, ComparesEachGroupWithTheLargest) {
  // Group 1 (6 rows): tp 2, fp 1, tn 2, fn 1 at 0.5: FPR 1/3, TPR 2/3.
  // Group 2 (3 rows): tp 1, fp 1, tn 1: FPR 1/2, TPR 1.
  // Group 7 (2 rows, no negative): TPR 1/2, FPR 0/0.
  const std::vector<double> s = {0.9, 0.8, 0.3, 0.2, 0.7, 0.1, 0.6, 0.9, 0.4, 0.9, 0.2};
  const std::vector<uint8_t> y = {1, 0, 0, 0, 1, 1, 0, 1, 0, 1, 1};
  const std::vector<uint32_t> g = {1, 1, 1, 1, 1, 1, 2, 2, 2, 7, 7};
  const GroupReport r = GroupMetrics(s, y, g, 0.5);
  EXPECT_EQ(r.reference_group, 1u);
  ASSERT_EQ(r.groups.size(), 3u);
  const GroupStats& ref = r.groups[0];
  EXPECT_EQ(ref.group, 1u);
  EXPECT_DOUBLE_EQ(ref.confusion.fpr, 1. / 3);
  EXPECT_DOUBLE_EQ(ref.confusion.tpr, 2. / 3);
  EXPECT_DOUBLE_EQ(ref.fpr_ratio, 1);
  EXPECT_FALSE(ref.flagged);
  const GroupStats& two = r.groups[1];
  EXPECT_EQ(two.group, 2u);
  EXPECT_EQ(two.confusion.tp + two.confusion.fp + two.confusion.tn + two.confusion.fn, 3u);
  EXPECT_DOUBLE_EQ(two.fpr_ratio, 1.5);
  EXPECT_DOUBLE_EQ(two.tpr_ratio, 1.5);
  EXPECT_TRUE(two.flagged);
  const GroupStats& seven = r.groups[2];
  EXPECT_TRUE(std::isnan(seven.fpr_ratio));
  EXPECT_DOUBLE_EQ(seven.tpr_ratio, 0.75);
  EXPECT_TRUE(seven.flagged);  // 0.75 < 0.8
  // A looser tolerance accepts 0.75 but not 1.5.
  const GroupReport loose = GroupMetrics(s, y, g, 0.5, 0.7);
  EXPECT_FALSE(loose.groups[2].flagged);
  EXPECT_TRUE(loose.groups[1].flagged);
}

TEST(GroupMetricsTest, PicksTheLowestCodeAmongEquallyLargeGroupsAndInfiniteRatios) {
  // Group 5 has no false positive: group 3's FPR over it is +inf.
  const std::vector<double> s = {0.9, 0.1, 0.9, 0.1};
  const std::vector<uint8_t> y = {1, 0, 0, 1};
  const std::vector<uint32_t> g = {5, 5, 3, 3};
  const GroupReport r = GroupMetrics(s, y, g, 0.5);
  EXPECT_EQ(r.reference_group, 3u);
  ASSERT_EQ(r.groups.size(), 2u);
  EXPECT_EQ(r.groups[1].group, 5u);
  EXPECT_EQ(r.groups[1].fpr_ratio, 0);
  EXPECT_EQ(r.groups[1].tpr_ratio, kInf);
  EXPECT_TRUE(r.groups[1].flagged);
  EXPECT_TRUE(GroupMetrics(s, y, std::vector<uint32_t>(2, 0), 0.5).groups.empty());
}

TEST(ThresholdForDailyBudgetTest, TakesTheLowestScoreWithinTheMeanBudget) {
  const std::vector<double> s = {0.9, 0.8, 0.8, 0.5, 0.4, 0.3};
  const std::vector<int64_t> d = {0, 0, 1, 1, 2, 2};
  const BudgetThreshold t = ThresholdForDailyBudget(s, d, 1);
  EXPECT_EQ(t.threshold, 0.8);  // 3 alerts over 3 days; 0.5 would make 4
  EXPECT_EQ(t.alerts, 3u);
  EXPECT_EQ(t.days, 3u);
  EXPECT_DOUBLE_EQ(t.alerts_per_day, 1);
  EXPECT_EQ(ThresholdForDailyBudget(s, d, 0.2).threshold, kInf);
  EXPECT_EQ(ThresholdForDailyBudget(s, d, 0.2).alerts, 0u);
  EXPECT_EQ(ThresholdForDailyBudget(s, d, 10).threshold, 0.3);
  EXPECT_TRUE(std::isnan(ThresholdForDailyBudget({}, {}, 1).threshold));
}

// Rows with heavy ties, the way the bootstrap sees them.
struct TiedSample {
  std::vector<double> scores;
  std::vector<uint8_t> labels;
  explicit TiedSample(size_t n, uint64_t seed) {
    core::SplitMix64 rng(seed);
    for (size_t i = 0; i < n; ++i) {
      const bool positive = rng.Uniform() < 0.3;
      scores.push_back(std::round((rng.Uniform() + (positive ? 0.3 : 0)) * 10) / 10);
      labels.push_back(positive);
    }
  }
};

TEST(WeightedRankMetricsTest, EqualsTheUnweightedMetricsOnTheExpandedSample) {
  const TiedSample t(300, 7);
  // One bootstrap resample's counts: n draws with replacement.
  std::vector<uint32_t> counts(t.scores.size(), 0);
  core::SplitMix64 rng(11);
  for (size_t i = 0; i < counts.size(); ++i) ++counts[rng.Below(counts.size())];
  ASSERT_GT(std::count(counts.begin(), counts.end(), 0u), 0);
  ASSERT_GT(*std::max_element(counts.begin(), counts.end()), 2u);
  std::vector<double> s;
  std::vector<uint8_t> y;
  for (size_t i = 0; i < counts.size(); ++i) {
    s.insert(s.end(), counts[i], t.scores[i]);
    y.insert(y.end(), counts[i], t.labels[i]);
  }
  const RankMetrics w = WeightedRankMetrics(t.scores, t.labels, counts);
  EXPECT_NEAR(w.auc, RocAuc(s, y), kEps);
  EXPECT_NEAR(w.average_precision, AveragePrecision(s, y), kEps);
}

TEST(WeightedRankMetricsTest, UnitCountsGiveTheUnweightedMetrics) {
  const std::vector<uint32_t> ones(kScores.size(), 1);
  const RankMetrics w = WeightedRankMetrics(kScores, kLabels, ones);
  EXPECT_DOUBLE_EQ(w.auc, RocAuc(kScores, kLabels));
  EXPECT_DOUBLE_EQ(w.average_precision, AveragePrecision(kScores, kLabels));
  EXPECT_TRUE(std::isnan(WeightedRankMetrics(kScores, kLabels, std::vector<uint32_t>(2, 1)).auc));
}

TEST(BootstrapTest, IsDeterministicPerSeedAndIndependentOfRowOrder) {
  const TiedSample t(400, 3);
  BootstrapOptions o;
  o.resamples = 200;
  o.seed = 42;
  const BootstrapIntervals a = BootstrapRankMetrics(t.scores, t.labels, o);
  std::vector<double> s(t.scores.rbegin(), t.scores.rend());
  std::vector<uint8_t> y(t.labels.rbegin(), t.labels.rend());
  const BootstrapIntervals b = BootstrapRankMetrics(s, y, o);
  EXPECT_EQ(a.auc.lower, b.auc.lower);
  EXPECT_EQ(a.auc.upper, b.auc.upper);
  EXPECT_EQ(a.average_precision.lower, b.average_precision.lower);
  EXPECT_EQ(a.average_precision.upper, b.average_precision.upper);
  o.seed = 43;
  const BootstrapIntervals c = BootstrapRankMetrics(t.scores, t.labels, o);
  EXPECT_NE(a.auc.lower, c.auc.lower);
}

TEST(BootstrapTest, BracketsTheEstimate) {
  const TiedSample t(1000, 5);
  const BootstrapIntervals r = BootstrapRankMetrics(t.scores, t.labels);
  EXPECT_DOUBLE_EQ(r.auc.estimate, RocAuc(t.scores, t.labels));
  EXPECT_DOUBLE_EQ(r.average_precision.estimate, AveragePrecision(t.scores, t.labels));
  EXPECT_EQ(r.auc.resamples, 1000u);
  EXPECT_LT(r.auc.lower, r.auc.estimate);
  EXPECT_GT(r.auc.upper, r.auc.estimate);
  EXPECT_LT(r.average_precision.lower, r.average_precision.estimate);
  EXPECT_GT(r.average_precision.upper, r.average_precision.estimate);
  // About 1000 rows, 30 % positives: the interval is a few hundredths wide.
  EXPECT_LT(r.auc.upper - r.auc.lower, 0.1);
  EXPECT_GT(r.auc.upper - r.auc.lower, 0.01);
}

TEST(BootstrapTest, LeavesOutResamplesWithoutBothClasses) {
  // One positive in ten rows: about a third of resamples miss it.
  const std::vector<double> s = {0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05};
  std::vector<uint8_t> y(10, 0);
  y[2] = 1;
  BootstrapOptions o;
  o.resamples = 300;
  const BootstrapIntervals r = BootstrapRankMetrics(s, y, o);
  EXPECT_LT(r.auc.resamples, 300u);
  EXPECT_GT(r.auc.resamples, 100u);
  EXPECT_EQ(r.auc.resamples, r.average_precision.resamples);
  const BootstrapIntervals one_class = BootstrapRankMetrics(s, std::vector<uint8_t>(10, 0), o);
  EXPECT_TRUE(std::isnan(one_class.auc.estimate));
  EXPECT_TRUE(std::isnan(one_class.auc.lower));
  EXPECT_EQ(one_class.auc.resamples, 0u);
}

}  // namespace
}  // namespace vigil::model
