#include "model/metrics.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <utility>

#include "core/random.h"

namespace vigil::model {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

bool HasNaN(std::span<const double> values) {
  return std::any_of(values.begin(), values.end(), [](double v) { return std::isnan(v); });
}

// Non-empty, same lengths, no NaN score: what every metric needs.
bool Valid(std::span<const double> scores, std::span<const uint8_t> labels) {
  return !scores.empty() && scores.size() == labels.size() && !HasNaN(scores);
}

// Rows sorted by descending score, cut into runs of equal scores: each run is
// one threshold. Within a run negatives come first, so the order of the
// labels depends only on the multiset of (score, label) pairs, never on the
// input's row order (which keeps the bootstrap independent of it).
struct Ranking {
  std::vector<uint8_t> positive;  // per sorted row, 0 or 1
  std::vector<uint32_t> weight;   // per sorted row; empty: every row counts once
  std::vector<size_t> run_end;    // one past the last sorted row of each run
  std::vector<double> run_score;  // the score (threshold) of each run
};

// REQUIRES: Valid(scores, labels); counts empty or of the same length.
Ranking Rank(std::span<const double> scores, std::span<const uint8_t> labels,
             std::span<const uint32_t> counts) {
  struct Row {
    double score;
    uint32_t weight;
    uint8_t positive;
  };
  const size_t n = scores.size();
  std::vector<Row> rows(n);
  for (size_t i = 0; i < n; ++i) {
    rows[i] = {scores[i], counts.empty() ? 1u : counts[i], static_cast<uint8_t>(labels[i] != 0)};
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.positive < b.positive;
  });
  Ranking r;
  r.positive.resize(n);
  if (!counts.empty()) r.weight.resize(n);
  for (size_t i = 0; i < n; ++i) {
    r.positive[i] = rows[i].positive;
    if (!counts.empty()) r.weight[i] = rows[i].weight;
    if (i + 1 == n || rows[i + 1].score != rows[i].score) {
      r.run_end.push_back(i + 1);
      r.run_score.push_back(rows[i].score);
    }
  }
  return r;
}

// Calls visit(run, tp, fp) at the end of each run with the weighted counts
// of positives and negatives scoring >= that run's score. `weight(i)` is how
// many times sorted row i counts. One pass, no allocation.
template <typename Weight, typename Visit>
void ForEachThreshold(const Ranking& r, Weight weight, Visit visit) {
  uint64_t tp = 0, fp = 0;
  size_t i = 0;
  for (size_t run = 0; run < r.run_end.size(); ++run) {
    for (; i < r.run_end[run]; ++i) {
      const uint64_t w = weight(i);
      tp += w * r.positive[i];
      fp += w * (1u - r.positive[i]);
    }
    visit(run, tp, fp);
  }
}

constexpr auto kUnitWeight = [](size_t) -> uint64_t { return 1; };

// Final (tp, fp): the positives and negatives in the whole sample.
std::pair<uint64_t, uint64_t> Totals(const Ranking& r) {
  uint64_t p = 0;
  for (uint8_t v : r.positive) p += v;
  return {p, r.positive.size() - p};
}

template <typename Weight>
RankMetrics RankMetricsOf(const Ranking& r, Weight weight) {
  // The trapezoids in integer units: area of (fp - prev_fp) x (tp + prev_tp)
  // / 2, scaled by P x N at the end; exact in double up to ~10^8 rows.
  // A run that adds no weight (a bootstrap resample that missed it) adds
  // nothing to either sum, as if its rows were absent.
  double area = 0, ap = 0;
  uint64_t prev_tp = 0, prev_fp = 0;
  ForEachThreshold(r, weight, [&](size_t, uint64_t tp, uint64_t fp) {
    area += static_cast<double>(fp - prev_fp) * static_cast<double>(tp + prev_tp);
    if (tp != prev_tp) {
      ap += static_cast<double>(tp - prev_tp) * static_cast<double>(tp) /
            static_cast<double>(tp + fp);
    }
    prev_tp = tp;
    prev_fp = fp;
  });
  const double p = static_cast<double>(prev_tp), n = static_cast<double>(prev_fp);
  RankMetrics m;
  m.auc = (prev_tp > 0 && prev_fp > 0) ? area / (2 * p * n) : kNaN;
  m.average_precision = prev_tp > 0 ? ap / p : kNaN;
  return m;
}

// numpy.percentile's default ("linear"): interpolates between the order
// statistics at position q x (m - 1). REQUIRES: sorted ascending.
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return kNaN;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - static_cast<double>(lo));
}

Interval IntervalOf(double estimate, std::vector<double>* values, double confidence) {
  std::sort(values->begin(), values->end());
  Interval in;
  in.estimate = estimate;
  in.lower = Percentile(*values, (1 - confidence) / 2);
  in.upper = Percentile(*values, (1 + confidence) / 2);
  in.resamples = values->size();
  return in;
}

double Ratio(uint64_t a, uint64_t b) {
  // IEEE division gives the documented 0/0 = NaN.
  return static_cast<double>(a) / static_cast<double>(b);
}

Confusion ConfusionOf(uint64_t tp, uint64_t fp, uint64_t tn, uint64_t fn) {
  Confusion c;
  c.tp = tp;
  c.fp = fp;
  c.tn = tn;
  c.fn = fn;
  c.alert_rate = Ratio(tp + fp, tp + fp + tn + fn);
  c.fpr = Ratio(fp, fp + tn);
  c.tpr = Ratio(tp, tp + fn);
  c.precision = Ratio(tp, tp + fp);
  return c;
}

}  // namespace

RocCurve RocCurveOf(std::span<const double> scores, std::span<const uint8_t> labels) {
  RocCurve c;
  if (!Valid(scores, labels)) return c;
  const Ranking r = Rank(scores, labels, {});
  const auto [p, n] = Totals(r);
  if (p == 0 || n == 0) return c;
  const size_t points = r.run_end.size() + 1;
  c.fpr.reserve(points);
  c.tpr.reserve(points);
  c.thresholds.reserve(points);
  c.fpr.push_back(0);
  c.tpr.push_back(0);
  c.thresholds.push_back(kInf);
  ForEachThreshold(r, kUnitWeight, [&](size_t run, uint64_t tp, uint64_t fp) {
    c.fpr.push_back(Ratio(fp, n));
    c.tpr.push_back(Ratio(tp, p));
    c.thresholds.push_back(r.run_score[run]);
  });
  return c;
}

double RocAuc(std::span<const double> scores, std::span<const uint8_t> labels) {
  if (!Valid(scores, labels)) return kNaN;
  return RankMetricsOf(Rank(scores, labels, {}), kUnitWeight).auc;
}

PrCurve PrCurveOf(std::span<const double> scores, std::span<const uint8_t> labels) {
  PrCurve c;
  if (!Valid(scores, labels)) return c;
  const Ranking r = Rank(scores, labels, {});
  const uint64_t p = Totals(r).first;
  if (p == 0) return c;
  const size_t runs = r.run_end.size();
  c.precision.resize(runs + 1);
  c.recall.resize(runs + 1);
  c.thresholds.resize(runs);
  // Runs come highest score first; sklearn lists thresholds ascending.
  ForEachThreshold(r, kUnitWeight, [&](size_t run, uint64_t tp, uint64_t fp) {
    const size_t at = runs - 1 - run;
    c.precision[at] = Ratio(tp, tp + fp);
    c.recall[at] = Ratio(tp, p);
    c.thresholds[at] = r.run_score[run];
  });
  c.precision[runs] = 1;
  c.recall[runs] = 0;
  return c;
}

double AveragePrecision(std::span<const double> scores, std::span<const uint8_t> labels) {
  if (!Valid(scores, labels)) return kNaN;
  return RankMetricsOf(Rank(scores, labels, {}), kUnitWeight).average_precision;
}

FprThreshold ThresholdForMaxFpr(std::span<const double> scores, std::span<const uint8_t> labels,
                                double max_fpr) {
  FprThreshold best{kNaN, kNaN, kNaN, 0};
  if (!Valid(scores, labels)) return best;
  const Ranking r = Rank(scores, labels, {});
  const auto [p, n] = Totals(r);
  if (p == 0 || n == 0) return best;
  best = {kInf, 0, 0, 0};
  // FPR never falls as the threshold falls, so the last run within the
  // limit is the lowest threshold within it (and has the highest TPR).
  ForEachThreshold(r, kUnitWeight, [&](size_t run, uint64_t tp, uint64_t fp) {
    const double fpr = Ratio(fp, n);
    if (fpr <= max_fpr) best = {r.run_score[run], fpr, Ratio(tp, p), tp + fp};
  });
  return best;
}

double RecallAtFpr(std::span<const double> scores, std::span<const uint8_t> labels,
                   double max_fpr) {
  return ThresholdForMaxFpr(scores, labels, max_fpr).recall;
}

double PrecisionAtK(std::span<const double> scores, std::span<const uint8_t> labels, size_t k) {
  if (k == 0 || !Valid(scores, labels)) return kNaN;
  const size_t m = std::min(k, scores.size());
  std::vector<size_t> rows(scores.size());
  std::iota(rows.begin(), rows.end(), size_t{0});
  // A strict total order (score, then row), so the first m after
  // nth_element are exactly the top m with ties taken in row order.
  std::nth_element(rows.begin(), rows.begin() + static_cast<ptrdiff_t>(m - 1), rows.end(),
                   [&](size_t a, size_t b) {
                     if (scores[a] != scores[b]) return scores[a] > scores[b];
                     return a < b;
                   });
  size_t positives = 0;
  for (size_t i = 0; i < m; ++i) positives += labels[rows[i]] != 0;
  return static_cast<double>(positives) / static_cast<double>(m);
}

EntityPrecision EntityPrecisionAtKPerDay(std::span<const double> scores,
                                         std::span<const uint8_t> labels,
                                         std::span<const uint64_t> entities,
                                         std::span<const int64_t> days, size_t k) {
  EntityPrecision out;
  out.mean = kNaN;
  const size_t n = scores.size();
  if (k == 0 || !Valid(scores, labels) || entities.size() != n || days.size() != n) return out;

  // Rows grouped by (day, entity): one pass then sees each entity-day once.
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (days[a] != days[b]) return days[a] < days[b];
    return entities[a] < entities[b];
  });
  // Dense entity numbers index the "detected" flags.
  std::vector<uint64_t> ids(entities.begin(), entities.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  std::vector<uint8_t> detected(ids.size(), 0);

  struct Candidate {
    double score;
    uint64_t entity;
    size_t dense;
    bool positive;
  };
  std::vector<Candidate> ranked;
  double sum = 0;
  size_t i = 0;
  while (i < n) {
    const int64_t day = days[order[i]];
    ranked.clear();
    while (i < n && days[order[i]] == day) {
      const uint64_t entity = entities[order[i]];
      Candidate c{-kInf, entity, 0, false};
      c.dense = static_cast<size_t>(std::lower_bound(ids.begin(), ids.end(), entity) - ids.begin());
      for (; i < n && days[order[i]] == day && entities[order[i]] == entity; ++i) {
        c.score = std::max(c.score, scores[order[i]]);
        c.positive = c.positive || labels[order[i]] != 0;
      }
      if (!detected[c.dense]) ranked.push_back(c);
    }
    DayPrecision d;
    d.day = day;
    d.entities = ranked.size();
    d.positive_entities = static_cast<size_t>(
        std::count_if(ranked.begin(), ranked.end(), [](const Candidate& c) { return c.positive; }));
    const size_t top = std::min(k, ranked.size());
    std::partial_sort(ranked.begin(), ranked.begin() + static_cast<ptrdiff_t>(top), ranked.end(),
                      [](const Candidate& a, const Candidate& b) {
                        if (a.score != b.score) return a.score > b.score;
                        return a.entity < b.entity;
                      });
    for (size_t j = 0; j < top; ++j) {
      if (!ranked[j].positive) continue;
      ++d.detected;
      detected[ranked[j].dense] = 1;
    }
    d.precision = static_cast<double>(d.detected) / static_cast<double>(k);
    sum += d.precision;
    out.days.push_back(d);
  }
  out.mean = sum / static_cast<double>(out.days.size());
  return out;
}

double AmountRecall(std::span<const double> scores, std::span<const uint8_t> labels,
                    std::span<const double> amounts, double threshold) {
  if (!Valid(scores, labels) || amounts.size() != scores.size()) return kNaN;
  double total = 0, caught = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] == 0) continue;
    total += amounts[i];
    if (scores[i] >= threshold) caught += amounts[i];
  }
  return total == 0 ? kNaN : caught / total;
}

double BrierScore(std::span<const double> scores, std::span<const uint8_t> labels) {
  if (!Valid(scores, labels)) return kNaN;
  double sum = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const double d = scores[i] - (labels[i] != 0 ? 1.0 : 0.0);
    sum += d * d;
  }
  return sum / static_cast<double>(scores.size());
}

CalibrationTable CalibrationTableOf(std::span<const double> scores, std::span<const uint8_t> labels,
                                    size_t bins) {
  CalibrationTable t;
  if (bins == 0 || scores.size() != labels.size()) return t;
  const double b = static_cast<double>(bins);
  std::vector<double> score_sum(bins, 0);
  std::vector<uint64_t> positives(bins, 0);
  t.bins.resize(bins);
  for (size_t i = 0; i < scores.size(); ++i) {
    const double s = scores[i];
    if (!(s >= 0 && s <= 1)) {  // also NaN
      ++t.skipped;
      continue;
    }
    // s * bins can round across an edge (0.7 * 10 > 7); the comparisons
    // put s on the right side of the exact edges i / bins.
    size_t at = std::min(static_cast<size_t>(s * b), bins - 1);
    while (at + 1 < bins && s >= static_cast<double>(at + 1) / b) ++at;
    while (at > 0 && s < static_cast<double>(at) / b) --at;
    ++t.bins[at].count;
    score_sum[at] += s;
    positives[at] += labels[i] != 0;
  }
  for (size_t i = 0; i < bins; ++i) {
    CalibrationBin& bin = t.bins[i];
    bin.lower = static_cast<double>(i) / b;
    bin.upper = static_cast<double>(i + 1) / b;
    bin.mean_score = score_sum[i] / static_cast<double>(bin.count);
    bin.positive_rate = Ratio(positives[i], bin.count);
  }
  return t;
}

Confusion ConfusionAt(std::span<const double> scores, std::span<const uint8_t> labels,
                      double threshold) {
  if (!Valid(scores, labels)) return ConfusionOf(0, 0, 0, 0);
  uint64_t tp = 0, fp = 0, tn = 0, fn = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const bool alert = scores[i] >= threshold, positive = labels[i] != 0;
    tp += alert && positive;
    fp += alert && !positive;
    tn += !alert && !positive;
    fn += !alert && positive;
  }
  return ConfusionOf(tp, fp, tn, fn);
}

RankMetrics WeightedRankMetrics(std::span<const double> scores, std::span<const uint8_t> labels,
                                std::span<const uint32_t> counts) {
  if (!Valid(scores, labels) || counts.size() != scores.size()) return {kNaN, kNaN};
  const Ranking r = Rank(scores, labels, counts);
  return RankMetricsOf(r, [&](size_t i) -> uint64_t { return r.weight[i]; });
}

BootstrapIntervals BootstrapRankMetrics(std::span<const double> scores,
                                        std::span<const uint8_t> labels,
                                        const BootstrapOptions& options) {
  BootstrapIntervals out;
  std::vector<double> aucs, aps;
  if (!Valid(scores, labels)) {
    out.auc = IntervalOf(kNaN, &aucs, options.confidence);
    out.average_precision = IntervalOf(kNaN, &aps, options.confidence);
    return out;
  }
  const Ranking r = Rank(scores, labels, {});
  const RankMetrics whole = RankMetricsOf(r, kUnitWeight);
  const size_t n = scores.size();
  aucs.reserve(options.resamples);
  aps.reserve(options.resamples);
  // Resampling rows uniformly is the same as resampling sorted positions,
  // so the draws land straight on the sorted order and nothing is re-sorted.
  std::vector<uint32_t> counts(n);
  core::SplitMix64 rng(options.seed);
  for (size_t s = 0; s < options.resamples; ++s) {
    std::fill(counts.begin(), counts.end(), 0u);
    for (size_t j = 0; j < n; ++j) ++counts[rng.Below(n)];
    const RankMetrics m = RankMetricsOf(r, [&](size_t i) -> uint64_t { return counts[i]; });
    if (!std::isnan(m.auc)) aucs.push_back(m.auc);
    if (!std::isnan(m.average_precision)) aps.push_back(m.average_precision);
  }
  out.auc = IntervalOf(whole.auc, &aucs, options.confidence);
  out.average_precision = IntervalOf(whole.average_precision, &aps, options.confidence);
  return out;
}

GroupReport GroupMetrics(std::span<const double> scores, std::span<const uint8_t> labels,
                         std::span<const uint32_t> groups, double threshold, double tolerance) {
  GroupReport report;
  if (!Valid(scores, labels) || groups.size() != scores.size()) return report;
  std::vector<uint32_t> codes(groups.begin(), groups.end());
  std::sort(codes.begin(), codes.end());
  codes.erase(std::unique(codes.begin(), codes.end()), codes.end());
  // tp, fp, tn, fn per group.
  std::vector<std::array<uint64_t, 4>> cells(codes.size(), {0, 0, 0, 0});
  for (size_t i = 0; i < scores.size(); ++i) {
    const size_t g = static_cast<size_t>(std::lower_bound(codes.begin(), codes.end(), groups[i]) -
                                         codes.begin());
    const bool alert = scores[i] >= threshold, positive = labels[i] != 0;
    ++cells[g][alert ? (positive ? 0 : 1) : (positive ? 3 : 2)];
  }
  size_t reference = 0;
  uint64_t largest = 0;
  report.groups.resize(codes.size());
  for (size_t g = 0; g < codes.size(); ++g) {
    const auto& c = cells[g];
    report.groups[g].group = codes[g];
    report.groups[g].confusion = ConfusionOf(c[0], c[1], c[2], c[3]);
    const uint64_t rows = c[0] + c[1] + c[2] + c[3];
    if (rows > largest) {
      largest = rows;
      reference = g;
    }
  }
  report.reference_group = codes[reference];
  const Confusion ref = report.groups[reference].confusion;
  const auto outside = [&](double ratio) {
    return ratio < tolerance || ratio > 1 / tolerance;  // false for NaN
  };
  for (GroupStats& g : report.groups) {
    g.fpr_ratio = g.confusion.fpr / ref.fpr;
    g.tpr_ratio = g.confusion.tpr / ref.tpr;
    g.flagged = outside(g.fpr_ratio) || outside(g.tpr_ratio);
  }
  return report;
}

BudgetThreshold ThresholdForDailyBudget(std::span<const double> scores,
                                        std::span<const int64_t> days, double alerts_per_day) {
  BudgetThreshold best{kNaN, 0, 0, 0};
  if (scores.empty() || days.size() != scores.size() || HasNaN(scores)) return best;
  std::vector<int64_t> distinct(days.begin(), days.end());
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  const double day_count = static_cast<double>(distinct.size());
  best = {kInf, 0, distinct.size(), 0};

  std::vector<double> sorted(scores.begin(), scores.end());
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i + 1 < sorted.size() && sorted[i + 1] == sorted[i]) continue;  // inside a run
    const uint64_t alerts = i + 1;
    const double per_day = static_cast<double>(alerts) / day_count;
    // Alerts only grow as the threshold falls: the first run over budget ends the search.
    if (per_day > alerts_per_day) break;
    best = {sorted[i], alerts, distinct.size(), per_day};
  }
  return best;
}

}  // namespace vigil::model
