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

struct ScoredTable {
  CsvTable table;
  TableColumns cols;
  Bundle bundle;
  std::vector<double> scores;  // one per table row, in input order
  int id_col = -1;
  std::string id_name;
  bool margin = false;
};

// `id` overrides the id column (else the table's .meta.json, the bundle's,
// then event_id); `label`, when given, must be a column of the table.
absl::StatusOr<ScoredTable> ScoreTable(const std::string& model_path, const std::string& features_path,
                                       const std::string& id, bool margin, const std::string& label = "");

// `<id column>,score` per row ("-" = standard output).
absl::Status WriteScores(const ScoredTable& s, const std::string& out);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_SCORING_H_
