// `vigil train` as a library call: a feature table and time ranges in, a
// model bundle (bundle.h) out. Splits are by time only; rows outside the
// ranges are never read past their time cell. Parameters, the random search
// space and the defaults are in docs/training.md.
//
// Thread-safety: TrainModel may run in several threads on different outputs.
#ifndef VIGIL_MODEL_TRAIN_H_
#define VIGIL_MODEL_TRAIN_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/dataset.h"
#include "model/xgb.h"

namespace vigil::model {

struct TrainOptions {
  std::string features;      // CSV (plain or gzip), with or without .meta.json
  ColumnOptions columns;     // label required
  std::string train_range;   // FROM..TO
  std::string valid_range;   // "" = none
  std::string params_file;   // YAML: XGBoost parameters, rounds, early_stopping_rounds
  int search_trials = 0;     // random search (needs a validation range)
  uint64_t seed = 0;
  int threads = 0;           // 0 = every core
  bool calibrate = false;    // isotonic calibration on the validation range
  std::string out_dir;
  std::string vigil_version;
  std::function<void(std::string_view)> log;  // progress lines (standard error)
};

struct SplitSummary {
  std::string range;
  int64_t rows = 0, positives = 0, unlabelled = 0;
  double auc = 0, ap = 0;
};

struct TrainSummary {
  SplitSummary train, valid;
  bool has_valid = false;
  size_t features = 0;
  int rounds = 0;
  double seconds_reading = 0, seconds_training = 0;
  std::string out_dir;
};

// The defaults (docs/training.md): XGBoost's own without a validation range
// (100 rounds, eta 0.3, depth 6); with one, eta 0.1 and up to 1,000 rounds
// with early stopping after 50 without improvement in average precision.
TrainParams DefaultParams(bool with_validation, uint64_t seed, int threads);

// Reads a params file over `params`; unknown vigil keys are passed to
// XGBoost, which rejects names it does not know.
absl::Status ReadParamsFile(const std::string& path, TrainParams* params);

absl::StatusOr<TrainSummary> TrainModel(const TrainOptions& options);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_TRAIN_H_
