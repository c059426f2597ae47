// Scores for a whole feature table: the bundle loaded, checked against the
// table's .meta.json, every row scored in input order, the bundle's
// calibration applied. `vigil predict`, `evaluate` and `thresholds` share it.
//
// Thread-safety: a ScoredTable is a value.
#ifndef VIGIL_MODEL_SCORING_H_
#define VIGIL_MODEL_SCORING_H_

#include <string>
#include <vector>

#include "core/status.h"
#include "model/bundle.h"
#include "model/dataset.h"

namespace vigil::model {

// One reason: a feature, its value and its contribution to the margin.
struct Reason {
  uint32_t feature = 0;
  float value = 0;
  float contrib = 0;
};

struct ScoreOptions {
  std::string id;       // overrides the id column (else the table's .meta.json, the bundle's, event_id)
  std::string label;    // when given, must be a column of the table
  std::string time;     // overrides the time column (else the .meta.json's, event_time, the bundle's)
  bool margin = false;  // raw margins instead of probabilities
  size_t reasons = 0;   // the top K features by |contribution| per row
  bool exact = false;   // reasons by exact TreeSHAP instead of the path attribution
};

struct ScoredTable {
  CsvTable table;
  TableColumns cols;
  Bundle bundle;
  std::vector<double> scores;  // one per table row, in input order
  int id_col = -1;
  std::string id_name;
  bool margin = false;
  size_t k = 0;                 // reasons per row
  std::vector<Reason> reasons;  // rows × k, largest |contribution| first
};

absl::StatusOr<ScoredTable> ScoreTable(const std::string& model_path, const std::string& features_path,
                                       const ScoreOptions& options);

// `<id column>,score` per row ("-" = standard output), then
// r1_feature,r1_value,r1_contrib,… when reasons were asked for.
absl::Status WriteScores(const ScoredTable& s, const std::string& out);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_SCORING_H_
