#include "model/evaluate.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

#include "core/string_map.h"
#include "core/strings.h"
#include "core/time.h"
#include "model/metrics.h"

namespace vigil::model {
namespace {

using core::DayOf;

nlohmann::ordered_json Num(double v) {
  return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

std::string Percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", v * 100);
  return buf;
}

// Dense codes for the values of one column over `rows`, in first-seen order.
struct Codes {
  std::vector<uint32_t> code;     // per evaluated row
  std::vector<std::string> value;  // per code
};
Codes CodeColumn(const CsvTable& t, int col, const std::vector<uint32_t>& rows) {
  Codes c;
  StringMap<uint32_t> ids;
  std::vector<std::string_view> cells;
  std::string scratch;
  c.code.reserve(rows.size());
  for (uint32_t r : rows) {
    std::string_view v = t.Cell(r, col, &cells, &scratch);
    auto [it, fresh] = ids.emplace(std::string(v), static_cast<uint32_t>(c.value.size()));
    if (fresh) c.value.emplace_back(v);
    c.code.push_back(it->second);
  }
  return c;
}

absl::StatusOr<int> NeedColumn(const CsvTable& t, const std::string& name, const char* flag) {
  const int col = t.Column(name);
  if (col < 0) {
    return absl::InvalidArgumentError(StrCat(flag, " ", name, ": no such column in ", t.path(),
                                             "; columns: ", StrJoin(t.header(), ", ")));
  }
  return col;
}

// The --amount column of `rows` (empty or missing = 0); text is an error.
absl::StatusOr<std::vector<double>> ReadAmounts(const CsvTable& t, const std::string& name,
                                                const std::vector<uint32_t>& rows) {
  VIGIL_ASSIGN_OR_RETURN(int col, NeedColumn(t, name, "--amount"));
  std::vector<std::string_view> cells;
  std::string scratch;
  std::vector<double> amounts;
  amounts.reserve(rows.size());
  for (uint32_t row : rows) {
    std::string_view v = t.Cell(row, col, &cells, &scratch);
    double a = 0;
    if (!IsMissingCell(v)) {
      auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), a);
      if (ec != std::errc() || p != v.data() + v.size()) {
        return absl::InvalidArgumentError(
            StrCat(t.path(), ":", t.line_of(row), ": --amount ", name, ": '", v, "' is not a number"));
      }
    }
    amounts.push_back(a);
  }
  return amounts;
}

nlohmann::ordered_json ConfusionJson(const Confusion& c) {
  nlohmann::ordered_json j;
  j["tp"] = c.tp;
  j["fp"] = c.fp;
  j["tn"] = c.tn;
  j["fn"] = c.fn;
  j["alert_rate"] = Num(c.alert_rate);
  j["fpr"] = Num(c.fpr);
  j["tpr"] = Num(c.tpr);
  j["precision"] = Num(c.precision);
  return j;
}

nlohmann::ordered_json IntervalJson(const Interval& i) {
  return {{"estimate", Num(i.estimate)}, {"lower", Num(i.lower)}, {"upper", Num(i.upper)},
          {"resamples", i.resamples}};
}

// At most `n` points of a curve, always keeping the first and last.
template <typename F>
void Thin(size_t size, size_t n, F&& keep) {
  if (size == 0) return;
  const size_t step = std::max<size_t>(1, size / n);
  for (size_t i = 0; i < size; i += step) keep(i);
  if ((size - 1) % step != 0) keep(size - 1);
}

}  // namespace

absl::StatusOr<EvalRows> LoadEvalRows(const EvalOptions& o) {
  if (o.label.empty()) return absl::InvalidArgumentError("--label is required");
  EvalRows e;
  ScoreOptions so;
  so.id = o.id;
  so.label = o.label;
  so.time = o.time;
  VIGIL_ASSIGN_OR_RETURN(e.scored, ScoreTable(o.model, o.features, so));
  const CsvTable& t = e.scored.table;
  const TableColumns& cols = e.scored.cols;
  TimeRange range;
  if (!o.range.empty()) {
    VIGIL_ASSIGN_OR_RETURN(range, ParseTimeRange(o.range));
  }
  if (cols.time < 0) {
    return absl::InvalidArgumentError(StrCat(t.path(), ": no time column '", cols.time_name,
                                             "' (name it with --time)"));
  }
  VIGIL_ASSIGN_OR_RETURN(RowSelection sel, SelectRows(t, cols.time, cols.label, range));
  e.in_range = static_cast<int64_t>(sel.rows.size()) + sel.unlabelled;
  e.unlabelled = sel.unlabelled;

  // Every row's day and label (the exclusion protocol reads rows before the range).
  std::vector<std::string_view> cells;
  std::string scratch;

  // The handbook's protocol: drop, from each evaluated day d, the entities
  // with a fraud on a day in [start, d - delay - 1].
  std::vector<int64_t> first_fraud_day;  // per entity code
  StringMap<uint32_t> entity_code;
  int ent_col = -1;
  if (!o.exclude_entities.empty()) {
    if (o.exclude_delay_ms < 0 || o.exclude_delay_ms % core::kMsPerDay != 0) {
      return absl::InvalidArgumentError("--exclude-known-entities needs --delay in whole days (7d)");
    }
    VIGIL_ASSIGN_OR_RETURN(ent_col, NeedColumn(t, o.exclude_entities, "--exclude-known-entities"));
    int64_t start_day = std::numeric_limits<int64_t>::min();
    if (!o.known_from.empty()) {
      VIGIL_ASSIGN_OR_RETURN(int64_t ms, core::ParseTimestamp(o.known_from));
      start_day = DayOf(ms);
    } else if (e.scored.bundle.manifest.contains("train") && e.scored.bundle.manifest["train"].is_object()) {
      VIGIL_ASSIGN_OR_RETURN(int64_t ms,
                             core::ParseTimestamp(e.scored.bundle.manifest["train"].value("from", "")));
      start_day = DayOf(ms);
    }
    for (size_t r = 0; r < t.rows(); ++r) {
      t.Split(r, &cells, &scratch);
      float y = 0;
      if (!ParseLabel(cells[static_cast<size_t>(cols.label)], &y) || y < 0.5f) continue;
      int64_t ms = 0;
      if (core::ParseTimestamp(cells[static_cast<size_t>(cols.time)], &ms) != core::TimeError::kOk) continue;
      const int64_t day = DayOf(ms);
      if (day < start_day) continue;
      auto [it, fresh] = entity_code.emplace(std::string(cells[static_cast<size_t>(ent_col)]),
                                             static_cast<uint32_t>(first_fraud_day.size()));
      if (fresh) first_fraud_day.push_back(day);
      first_fraud_day[it->second] = std::min(first_fraud_day[it->second], day);
    }
  }
  const int64_t delay_days = o.exclude_delay_ms >= 0 ? o.exclude_delay_ms / core::kMsPerDay : 0;

  for (uint32_t r : sel.rows) {
    t.Split(r, &cells, &scratch);
    float y = 0;
    if (!ParseLabel(cells[static_cast<size_t>(cols.label)], &y)) {
      return absl::InvalidArgumentError(StrCat(t.path(), ":", t.line_of(r), ": label ", cols.label_name, ": '",
                                               cells[static_cast<size_t>(cols.label)], "' is not 0 or 1"));
    }
    int64_t ms = 0;  // SelectRows checked every time cell
    core::ParseTimestamp(cells[static_cast<size_t>(cols.time)], &ms);
    const int64_t day = DayOf(ms);
    if (ent_col >= 0) {
      auto it = entity_code.find(cells[static_cast<size_t>(ent_col)]);
      if (it != entity_code.end() && first_fraud_day[it->second] <= day - delay_days - 1) {
        ++e.excluded;
        continue;
      }
    }
    e.rows.push_back(r);
    e.scores.push_back(e.scored.scores[r]);
    e.labels.push_back(y > 0.5f);
    e.days.push_back(day);
  }
  if (e.rows.empty()) {
    return absl::InvalidArgumentError(StrCat("no labelled rows to evaluate in ", o.features,
                                             o.range.empty() ? "" : StrCat(" within ", o.range), " (",
                                             e.unlabelled, " unlabelled, ", e.excluded, " excluded)"));
  }
  return e;
}

absl::StatusOr<nlohmann::ordered_json> Evaluate(const EvalOptions& o) {
  VIGIL_ASSIGN_OR_RETURN(EvalRows e, LoadEvalRows(o));
  const CsvTable& t = e.scored.table;
  const auto& s = e.scores;
  const auto& y = e.labels;
  size_t positives = 0;
  for (uint8_t v : y) positives += v;

  nlohmann::ordered_json r;
  r["format"] = "vigil.evaluation/1";
  r["created"] = core::FormatTimestamp(core::WallNowMs());
  nlohmann::ordered_json m;
  m["path"] = o.model;
  m["name"] = e.scored.bundle.name();
  m["features"] = e.scored.bundle.layout.feature_names.size();
  if (!e.scored.bundle.bare) {
    const auto& man = e.scored.bundle.manifest;
    if (man.contains("train")) m["train"] = man["train"].value("range", "");
    if (man.contains("valid") && man["valid"].is_object()) m["valid"] = man["valid"].value("range", "");
    m["calibrated"] = e.scored.bundle.calibration.has_value();
  }
  r["model"] = m;
  nlohmann::ordered_json d;
  d["file"] = o.features;
  d["range"] = o.range.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(o.range);
  d["rows_in_range"] = e.in_range;
  d["unlabelled_left_out"] = e.unlabelled;
  if (!o.exclude_entities.empty()) {
    d["known_entities_excluded"] = {{"column", o.exclude_entities},
                                    {"delay", core::FormatDuration(o.exclude_delay_ms)},
                                    {"rows", e.excluded}};
  }
  d["rows"] = e.rows.size();
  d["positives"] = positives;
  d["positive_rate"] = Num(static_cast<double>(positives) / static_cast<double>(e.rows.size()));
  if (!e.days.empty()) {
    d["first_day"] = core::FormatTimestamp(*std::min_element(e.days.begin(), e.days.end()) * core::kMsPerDay).substr(0, 10);
    d["last_day"] = core::FormatTimestamp(*std::max_element(e.days.begin(), e.days.end()) * core::kMsPerDay).substr(0, 10);
  }
  r["data"] = d;

  BootstrapOptions bo;
  bo.resamples = o.resamples;
  bo.seed = o.seed;
  const BootstrapIntervals ci = BootstrapRankMetrics(s, y, bo);
  nlohmann::ordered_json mx;
  mx["auc"] = IntervalJson(ci.auc);
  mx["average_precision"] = IntervalJson(ci.average_precision);
  mx["bootstrap"] = {{"resamples", o.resamples}, {"seed", o.seed}, {"confidence", 0.95}};
  nlohmann::ordered_json rec;
  for (double f : {0.001, 0.01, 0.05}) rec[Percent(f)] = Num(RecallAtFpr(s, y, f));
  mx["recall_at_fpr"] = rec;
  mx["precision_at_k"] = {{"k", o.k}, {"value", Num(PrecisionAtK(s, y, o.k))}};
  mx["brier"] = Num(BrierScore(s, y));

  if (!o.entity.empty()) {
    VIGIL_ASSIGN_OR_RETURN(int col, NeedColumn(t, o.entity, "--entity"));
    const Codes c = CodeColumn(t, col, e.rows);
    std::vector<uint64_t> ids(c.code.begin(), c.code.end());
    const EntityPrecision ep = EntityPrecisionAtKPerDay(s, y, ids, e.days, o.k);
    nlohmann::ordered_json days = nlohmann::ordered_json::array();
    for (const DayPrecision& dp : ep.days) {
      days.push_back({{"day", core::FormatTimestamp(dp.day * core::kMsPerDay).substr(0, 10)},
                      {"precision", Num(dp.precision)},
                      {"entities", dp.entities},
                      {"positive_entities", dp.positive_entities},
                      {"detected", dp.detected}});
    }
    mx["entity_precision_at_k"] = {{"entity", o.entity}, {"k", o.k}, {"mean", Num(ep.mean)}, {"days", days}};
  }

  // Operating points: the FPR levels, then any thresholds asked for.
  std::vector<double> amounts;
  if (!o.amount.empty()) {
    VIGIL_ASSIGN_OR_RETURN(amounts, ReadAmounts(t, o.amount, e.rows));
  }
  nlohmann::ordered_json points = nlohmann::ordered_json::array();
  auto add_point = [&](std::string name, double thr) {
    nlohmann::ordered_json p;
    p["name"] = std::move(name);
    p["threshold"] = Num(thr);
    p["confusion"] = ConfusionJson(ConfusionAt(s, y, thr));
    if (!amounts.empty()) p["amount_recall"] = Num(AmountRecall(s, y, amounts, thr));
    points.push_back(p);
  };
  for (double f : {0.001, 0.01, 0.05}) {
    add_point(StrCat("FPR ≤ ", Percent(f)), ThresholdForMaxFpr(s, y, f).threshold);
  }
  for (double thr : o.thresholds) add_point(StrCat("score ≥ ", thr), thr);
  r["metrics"] = mx;
  r["operating_points"] = points;

  nlohmann::ordered_json cal = nlohmann::ordered_json::array();
  for (const CalibrationBin& b : CalibrationTableOf(s, y, 10).bins) {
    cal.push_back({{"lower", b.lower}, {"upper", b.upper}, {"count", b.count},
                   {"mean_score", Num(b.mean_score)}, {"positive_rate", Num(b.positive_rate)}});
  }
  r["calibration"] = cal;

  if (!o.group_by.empty()) {
    const double thr = o.fairness_threshold >= 0 ? o.fairness_threshold
                                                 : ThresholdForMaxFpr(s, y, o.fairness_fpr).threshold;
    nlohmann::ordered_json f;
    f["threshold"] = Num(thr);
    f["chosen_by"] = o.fairness_threshold >= 0 ? StrCat("score ≥ ", o.fairness_threshold)
                                               : StrCat("overall FPR ≤ ", Percent(o.fairness_fpr));
    f["tolerance"] = o.tolerance;
    nlohmann::ordered_json by;
    for (const std::string& g : o.group_by) {
      VIGIL_ASSIGN_OR_RETURN(int col, NeedColumn(t, g, "--group-by"));
      const Codes c = CodeColumn(t, col, e.rows);
      const GroupReport gr = GroupMetrics(s, y, c.code, thr, o.tolerance);
      nlohmann::ordered_json groups = nlohmann::ordered_json::array();
      bool any = false;
      for (const GroupStats& st : gr.groups) {
        const Confusion& cf = st.confusion;
        groups.push_back({{"value", c.value[st.group].empty() ? "(empty)" : c.value[st.group]},
                          {"rows", cf.tp + cf.fp + cf.tn + cf.fn},
                          {"positives", cf.tp + cf.fn},
                          {"alert_rate", Num(cf.alert_rate)},
                          {"fpr", Num(cf.fpr)},
                          {"tpr", Num(cf.tpr)},
                          {"precision", Num(cf.precision)},
                          {"fpr_ratio", Num(st.fpr_ratio)},
                          {"tpr_ratio", Num(st.tpr_ratio)},
                          {"flagged", st.flagged}});
        any = any || st.flagged;
      }
      by[g] = {{"reference", gr.groups.empty() ? "" : c.value[gr.reference_group]},
               {"flagged", any},
               {"groups", groups}};
    }
    f["by"] = by;
    r["fairness"] = f;
  }

  // Curves for the HTML page, thinned to a few hundred points.
  nlohmann::ordered_json curves;
  const RocCurve roc = RocCurveOf(s, y);
  nlohmann::ordered_json rf = nlohmann::ordered_json::array(), rt = nlohmann::ordered_json::array();
  Thin(roc.fpr.size(), 400, [&](size_t i) {
    rf.push_back(roc.fpr[i]);
    rt.push_back(roc.tpr[i]);
  });
  curves["roc"] = {{"fpr", rf}, {"tpr", rt}};
  const PrCurve pr = PrCurveOf(s, y);
  nlohmann::ordered_json pp = nlohmann::ordered_json::array(), prr = nlohmann::ordered_json::array();
  Thin(pr.recall.size(), 400, [&](size_t i) {
    pp.push_back(pr.precision[i]);
    prr.push_back(pr.recall[i]);
  });
  curves["pr"] = {{"recall", prr}, {"precision", pp}};
  r["curves"] = curves;
  return r;
}

absl::StatusOr<ThresholdResult> ChooseThresholds(const ThresholdOptions& o) {
  if ((o.review_budget >= 0) == (o.max_fpr >= 0)) {
    return absl::InvalidArgumentError("give exactly one of --review-budget N/day and --max-fpr X");
  }
  VIGIL_ASSIGN_OR_RETURN(EvalRows e, LoadEvalRows(o.eval));
  const auto& s = e.scores;
  const auto& y = e.labels;
  std::vector<double> amounts;
  if (!o.eval.amount.empty()) {
    VIGIL_ASSIGN_OR_RETURN(amounts, ReadAmounts(e.scored.table, o.eval.amount, e.rows));
  }
  size_t days = 0;
  {
    std::vector<int64_t> d = e.days;
    std::sort(d.begin(), d.end());
    days = static_cast<size_t>(std::unique(d.begin(), d.end()) - d.begin());
  }
  auto describe = [&](double thr) {
    const Confusion c = ConfusionAt(s, y, thr);
    nlohmann::ordered_json j;
    j["threshold"] = Num(thr);
    j["alerts"] = c.tp + c.fp;
    j["alerts_per_day"] = Num(static_cast<double>(c.tp + c.fp) / static_cast<double>(days));
    j["recall"] = Num(c.tpr);
    j["precision"] = Num(c.precision);
    j["fpr"] = Num(c.fpr);
    if (!amounts.empty()) j["amount_recall"] = Num(AmountRecall(s, y, amounts, thr));
    return j;
  };
  double chosen = 0;
  std::string constraint;
  if (o.review_budget >= 0) {
    chosen = ThresholdForDailyBudget(s, e.days, o.review_budget).threshold;
    constraint = StrCat("at most ", o.review_budget, " alerts a day");
  } else {
    chosen = ThresholdForMaxFpr(s, y, o.max_fpr).threshold;
    constraint = StrCat("false-positive rate at most ", Percent(o.max_fpr));
  }
  if (!std::isfinite(chosen)) {
    // +inf: not even the highest score alone fits. A snippet saying
    // `score_at_least: inf` would be no rule (and not a YAML number).
    return absl::InvalidArgumentError(
        StrCat(o.review_budget >= 0 ? "--review-budget" : "--max-fpr", ": no threshold meets ", constraint,
               " on the ", e.rows.size(), " rows of ", days, " days: even the highest score alone exceeds it"));
  }
  ThresholdResult res;
  res.table = nlohmann::ordered_json::array();
  // The chosen threshold and, for context, the budgets around it.
  std::vector<double> around;
  if (o.review_budget >= 0) {
    for (double f : {0.25, 0.5, 1.0, 2.0, 4.0}) around.push_back(ThresholdForDailyBudget(s, e.days, o.review_budget * f).threshold);
  } else {
    for (double f : {0.25, 0.5, 1.0, 2.0, 4.0}) around.push_back(ThresholdForMaxFpr(s, y, o.max_fpr * f).threshold);
  }
  for (double thr : around) {
    nlohmann::ordered_json j = describe(thr);
    j["chosen"] = thr == chosen;
    res.table.push_back(j);
  }
  const nlohmann::ordered_json c = describe(chosen);
  // The threshold as `vigil predict` writes scores: the shortest text of the
  // float (model scores are float32), or of the double (calibrated scores).
  char buf[64];
  const float as_float = static_cast<float>(chosen);
  *(static_cast<double>(as_float) == chosen ? std::to_chars(buf, buf + sizeof buf - 1, as_float).ptr
                                            : std::to_chars(buf, buf + sizeof buf - 1, chosen).ptr) = '\0';
  auto fixed = [&](const char* key) {
    if (!c.contains(key) || !c[key].is_number()) return std::string("n/a");
    char b[32];
    std::snprintf(b, sizeof b, "%.4f", c[key].get<double>());
    return std::string(b);
  };
  res.summary = StrCat("score ≥ ", buf, " meets ", constraint, ": ", c["alerts"].get<uint64_t>(), " alerts over ",
                       days, " days, recall ", fixed("recall"), ", precision ", fixed("precision"),
                       c.contains("amount_recall") ? StrCat(", amount caught ", fixed("amount_recall")) : std::string());
  res.snippet = StrCat("# vigil thresholds: model ", e.scored.bundle.name(), ", ",
                       o.eval.range.empty() ? std::string("all rows") : o.eval.range, ", ", constraint, "\n",
                       "# ", res.summary, "\n",
                       "thresholds:\n",
                       "  - {action: ", o.action, ", score_at_least: ", buf, "}\n");
  return res;
}

}  // namespace vigil::model
