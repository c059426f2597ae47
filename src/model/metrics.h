// Evaluation metrics for a binary fraud score: ranking (ROC, precision-recall,
// average precision, recall at a false-positive rate, precision@k, the Fraud
// Detection Handbook's card precision@k per day), calibration (Brier score,
// reliability table), confusion at an alert threshold, bootstrap confidence
// intervals, group (fairness) comparisons and threshold selection.
//
// Every function is pure: it reads the spans it is given, keeps no reference
// to them and returns values it owns. None throws; none allocates more than
// O(n) (n = rows, plus O(resamples) for the bootstrap).
//
// Conventions shared by every function here:
// - `scores[i]` and `labels[i]` describe row i. A label of 0 is genuine
//   (negative), any other value is fraud (positive).
// - A row is an alert when score >= threshold.
// - Rows with equal scores form one threshold, as in scikit-learn: a curve
//   has one point per distinct score, never one per row, so the result does
//   not depend on the order of tied rows (except PrecisionAtK, which says how
//   it breaks ties).
// - Undefined results are NaN, never a crash: empty input, spans of
//   different lengths, a NaN score, and a ratio whose denominator is 0 (for
//   instance AUC with a single class, precision with no alerts). Curves and
//   tables are then empty. Each function says which of these apply.
// - Results agree with scikit-learn 1.2 to 1e-9 where it has the metric
//   (tests/integration/metrics_sklearn_test.cc checks this).
//
// Thread-safety: pure functions; safe to call concurrently.
#ifndef VIGIL_MODEL_METRICS_H_
#define VIGIL_MODEL_METRICS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace vigil::model {

// --- ranking -----------------------------------------------------------------

// The ROC curve at every distinct score, like sklearn's
// roc_curve(drop_intermediate=False): thresholds descend; the first point is
// (0, 0) with threshold +inf (sklearn 1.2 writes max score + 1 there, 1.3 and
// later +inf); the last is (1, 1) at the lowest score.
struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;
};
// Empty unless both classes are present and the input is valid.
RocCurve RocCurveOf(std::span<const double> scores, std::span<const uint8_t> labels);

// Area under the ROC curve by the trapezoid rule over RocCurveOf's points,
// which counts a tied positive-negative pair as half (sklearn roc_auc_score).
// NaN unless both classes are present.
double RocAuc(std::span<const double> scores, std::span<const uint8_t> labels);

// The precision-recall curve like sklearn's precision_recall_curve: one
// point per distinct score with thresholds ascending, then a final point
// (precision 1, recall 0) that has no threshold, so precision and recall
// have one element more than thresholds. Empty when there is no positive
// (sklearn then sets recall to 1 with a warning) or the input is invalid.
struct PrCurve {
  std::vector<double> precision, recall, thresholds;
};
PrCurve PrCurveOf(std::span<const double> scores, std::span<const uint8_t> labels);

// Sum over distinct thresholds, highest first, of (R_n - R_{n-1}) * P_n
// (sklearn average_precision_score: a step function, not interpolated).
// NaN when there is no positive.
double AveragePrecision(std::span<const double> scores, std::span<const uint8_t> labels);

// The largest true-positive rate among RocCurveOf's points whose
// false-positive rate is <= max_fpr (0 when only the (0, 0) point
// qualifies). The same as ThresholdForMaxFpr(...).recall. NaN unless both
// classes are present.
double RecallAtFpr(std::span<const double> scores, std::span<const uint8_t> labels, double max_fpr);

// The share of positives among the k rows with the highest scores. Rows with
// equal scores are taken in row order (the earlier row first), so the answer
// depends on the order of rows tied at the k-th score. k larger than the
// number of rows counts all rows (the denominator is then the row count).
// NaN when k == 0 or the input is empty or invalid.
double PrecisionAtK(std::span<const double> scores, std::span<const uint8_t> labels, size_t k);

// --- card (entity) precision@k per day ------------------------------------------

// One day of EntityPrecisionAtKPerDay.
struct DayPrecision {
  int64_t day = 0;
  // (#entities in the day's top k with label 1) / k.
  double precision = 0;
  // Entities ranked that day (after dropping those detected on earlier days).
  size_t entities = 0;
  // Of those, the entities with at least one positive row (the handbook's
  // nb_compromised_cards_per_day).
  size_t positive_entities = 0;
  // Positive entities in the top k, which are dropped from later days.
  size_t detected = 0;
};
struct EntityPrecision {
  std::vector<DayPrecision> days;  // ascending day
  double mean = 0;                 // mean of days[].precision; NaN when there is no day
};

// The Fraud Detection Handbook's card precision@k
// (card_precision_top_k with remove_detected_compromised_cards=True): for
// each day present, in ascending order, rows of entities detected on an
// earlier day are dropped; each remaining entity gets the maximum score and
// the maximum label of its rows that day; entities are ranked by that score,
// highest first (equal scores: smaller entity id first, where pandas leaves
// the order unspecified); the day's precision is the number of positive
// entities in the top k divided by k, even when fewer than k entities were
// ranked; those positive entities count as detected from then on.
// `entities[i]` is row i's entity (the card), `days[i]` its day index (for
// instance floor(UTC event time / 1 day)).
// Returns no days and a NaN mean when k == 0 or the input is empty or
// invalid (spans of different lengths, a NaN score).
EntityPrecision EntityPrecisionAtKPerDay(std::span<const double> scores,
                                         std::span<const uint8_t> labels,
                                         std::span<const uint64_t> entities,
                                         std::span<const int64_t> days, size_t k);

// --- amounts, calibration, confusion -------------------------------------------

// The share of the positives' total amount carried by positives with
// score >= threshold. Amounts must all be in one currency. NaN when the
// positives' total is 0 (or there is no positive) or the input is invalid.
double AmountRecall(std::span<const double> scores, std::span<const uint8_t> labels,
                    std::span<const double> amounts, double threshold);

// Mean of (score - label)^2 (sklearn brier_score_loss). Defined for a single
// class; NaN when empty or invalid.
double BrierScore(std::span<const double> scores, std::span<const uint8_t> labels);

// One bin of a reliability table: the scores in [lower, upper).
struct CalibrationBin {
  double lower = 0, upper = 0;
  size_t count = 0;
  double mean_score = 0;     // NaN when count == 0
  double positive_rate = 0;  // NaN when count == 0
};
struct CalibrationTable {
  std::vector<CalibrationBin> bins;
  // Rows left out: NaN scores and scores outside [0, 1].
  size_t skipped = 0;
};
// `bins` equal-width bins over [0, 1]: bin i holds the scores s with
// i / bins <= s < (i + 1) / bins, compared exactly against those quotients;
// a score of exactly 1 goes in the last bin. Empty (no bins) when bins == 0
// or the spans have different lengths.
CalibrationTable CalibrationTableOf(std::span<const double> scores, std::span<const uint8_t> labels,
                                    size_t bins = 10);

// Counts at one threshold and the rates derived from them. A rate whose
// denominator is 0 (0/0) is NaN: fpr without negatives, tpr without
// positives, precision without alerts, alert_rate without rows.
struct Confusion {
  uint64_t tp = 0, fp = 0, tn = 0, fn = 0;
  double alert_rate = 0;  // (tp + fp) / rows
  double fpr = 0;         // fp / (fp + tn)
  double tpr = 0;         // tp / (tp + fn), the recall
  double precision = 0;   // tp / (tp + fp)
};
// Rows with score >= threshold are alerts. All counts 0 and all rates NaN
// when the input is invalid.
Confusion ConfusionAt(std::span<const double> scores, std::span<const uint8_t> labels,
                      double threshold);

// --- bootstrap -------------------------------------------------------------------

struct RankMetrics {
  double auc = 0;                // as RocAuc
  double average_precision = 0;  // as AveragePrecision
};
// RocAuc and AveragePrecision of the sample in which row i appears
// `counts[i]` times (0 leaves it out), without building that sample: equal
// to the unweighted functions on the expanded rows. The bootstrap uses the
// same code on each resample.
RankMetrics WeightedRankMetrics(std::span<const double> scores, std::span<const uint8_t> labels,
                                std::span<const uint32_t> counts);

struct BootstrapOptions {
  // Resamples drawn; each is n rows drawn with replacement from the n rows.
  size_t resamples = 1000;
  // Seed of the splitmix64 generator (core/random.h): the same seed and the
  // same (score, label) pairs, in any row order, give the same intervals.
  uint64_t seed = 1;
  // The interval runs from percentile (1 - confidence) / 2 to
  // (1 + confidence) / 2 of the resampled values: 2.5 and 97.5 by default.
  double confidence = 0.95;
};
struct Interval {
  double estimate = 0;  // the metric on the whole sample
  double lower = 0;     // percentiles interpolated linearly between
  double upper = 0;     // order statistics, as numpy.percentile does
  // Resamples in which the metric was defined (AUC needs both classes, AP a
  // positive); the others are left out of the percentiles.
  size_t resamples = 0;
};
struct BootstrapIntervals {
  Interval auc, average_precision;
};
// Percentile bootstrap intervals for AUC and average precision. Sorts once,
// then each resample costs O(n): n draws into per-row counts and one sweep
// over the sorted rows. Estimates and bounds are NaN when the metric is
// undefined on the whole sample or in every resample.
BootstrapIntervals BootstrapRankMetrics(std::span<const double> scores,
                                        std::span<const uint8_t> labels,
                                        const BootstrapOptions& options = {});

// --- groups (fairness) -------------------------------------------------------------

struct GroupStats {
  uint32_t group = 0;
  Confusion confusion;  // rows = tp + fp + tn + fn, positives = tp + fn
  // This group's FPR and TPR divided by the reference group's. x / 0 is +inf
  // and 0 / 0 NaN.
  double fpr_ratio = 0, tpr_ratio = 0;
  // A ratio outside [tolerance, 1 / tolerance]. NaN ratios are not flagged
  // (neither group has the rows to compare).
  bool flagged = false;
};
struct GroupReport {
  uint32_t reference_group = 0;    // the group with the most rows (ties: lowest code)
  std::vector<GroupStats> groups;  // ascending group code
};
// Confusion per group at one threshold, and each group's FPR and TPR
// compared with the largest group's (the four-fifths rule with the default
// tolerance 0.8). `groups[i]` is row i's group code. No groups when the
// input is empty or invalid.
GroupReport GroupMetrics(std::span<const double> scores, std::span<const uint8_t> labels,
                         std::span<const uint32_t> groups, double threshold,
                         double tolerance = 0.8);

// --- threshold selection ------------------------------------------------------------

struct FprThreshold {
  double threshold = 0;  // alert when score >= threshold; +inf: no alert
  double fpr = 0;        // at that threshold
  double recall = 0;     // true-positive rate at that threshold
  uint64_t alerts = 0;   // rows with score >= threshold
};
// The lowest distinct score whose FPR is <= max_fpr, i.e. the operating
// point of RecallAtFpr; +inf (no alerts) when even the highest score's FPR
// is above max_fpr. NaN threshold and rates unless both classes are present.
FprThreshold ThresholdForMaxFpr(std::span<const double> scores, std::span<const uint8_t> labels,
                                double max_fpr);

struct BudgetThreshold {
  double threshold = 0;       // alert when score >= threshold; +inf: no alert
  uint64_t alerts = 0;        // rows with score >= threshold
  size_t days = 0;            // distinct days present
  double alerts_per_day = 0;  // alerts / days
};
// The lowest distinct score at which the mean number of alerts per day,
// over the days present in `days`, is <= alerts_per_day; +inf when even the
// highest score gives more. `days[i]` is row i's day index. To see the
// recall at that threshold, pass it to ConfusionAt. NaN threshold when the
// input is empty or invalid.
BudgetThreshold ThresholdForDailyBudget(std::span<const double> scores,
                                        std::span<const int64_t> days, double alerts_per_day);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_METRICS_H_
