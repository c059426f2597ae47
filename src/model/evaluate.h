// `vigil evaluate` and `vigil thresholds` as library calls: a model scored
// on a labelled feature table (scoring.h), the rows of a time range, the
// metrics fraud teams use (metrics.h) gathered into a JSON report
// (docs/evaluation.md), and the thresholds that meet an operating budget.
//
// Thread-safety: plain functions over values.
#ifndef VIGIL_MODEL_EVALUATE_H_
#define VIGIL_MODEL_EVALUATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/scoring.h"
#include "nlohmann/json.hpp"

namespace vigil::model {

struct EvalOptions {
  std::string model, features, label, id;
  std::string time;                   // "" = the .meta.json's, event_time, else the bundle's
  std::string range;                  // "" = every row
  std::string entity;                 // entity precision@k per day
  std::string amount;                 // amount-weighted recall
  std::vector<std::string> group_by;  // fairness
  std::string exclude_entities;       // the handbook's known-entity protocol…
  int64_t exclude_delay_ms = -1;      // …with this label delay (whole days)
  std::string known_from;             // where known frauds start: default the bundle's training start
  size_t k = 100;
  uint64_t seed = 1;
  size_t resamples = 1000;
  std::vector<double> thresholds;     // confusion matrices; default: FPR 0.1 %, 1 %, 5 %
  double fairness_fpr = 0.01;         // groups are compared at the overall threshold of this FPR…
  double fairness_threshold = -1;     // …or at this score when >= 0
  double tolerance = 0.8;             // ratios outside [tolerance, 1/tolerance] are flagged
};

// The rows evaluated: in range, labelled, not excluded; their scores,
// labels and UTC day index.
struct EvalRows {
  ScoredTable scored;
  std::vector<uint32_t> rows;
  std::vector<double> scores;
  std::vector<uint8_t> labels;
  std::vector<int64_t> days;
  int64_t in_range = 0, unlabelled = 0, excluded = 0;
};
absl::StatusOr<EvalRows> LoadEvalRows(const EvalOptions& options);

// The whole report (format vigil.evaluation/1).
absl::StatusOr<nlohmann::ordered_json> Evaluate(const EvalOptions& options);

// A standalone HTML page of a report: ROC, precision–recall and reliability
// curves as inline SVG, the tables, no script and no server.
std::string RenderHtml(const nlohmann::ordered_json& report);

// Thresholds for an operating constraint.
struct ThresholdOptions {
  EvalOptions eval;           // model, features, label, range, amount
  double review_budget = -1;  // alerts per day, or…
  double max_fpr = -1;        // …a false-positive rate
  std::string action = "review";
};
struct ThresholdResult {
  nlohmann::ordered_json table;  // candidate thresholds around the chosen one
  std::string snippet;           // YAML for the decision policy
  std::string summary;           // one line for people
};
absl::StatusOr<ThresholdResult> ChooseThresholds(const ThresholdOptions& options);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_EVALUATE_H_
