// The one door to XGBoost's C API (Debian libxgboost-dev 1.7): train a
// booster on a Dataset with optional early stopping, save and load its JSON
// model, predict. No other file includes XGBoost.
//
// Thread-safety: a Booster is used by one thread at a time (XGBoost's own
// rule for a handle); XGBoost itself may use `nthread` threads inside a call.
#ifndef VIGIL_MODEL_XGB_H_
#define VIGIL_MODEL_XGB_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/dataset.h"

namespace vigil::model {

// XGBoost parameters as name → value text, plus vigil's round control.
struct TrainParams {
  std::map<std::string, std::string> xgb;  // objective, eta, max_depth, seed, nthread…
  int rounds = 300;                       // upper bound on boosting rounds
  int early_stopping_rounds = 30;         // with a validation set; 0 = off
};

// One evaluation line (every round is recorded).
struct RoundEval {
  int round = 0;
  std::string metric;  // XGBoost's eval_metric (the last one listed)
  double train_metric = 0, valid_metric = 0;
};

class Booster {
 public:
  Booster(Booster&&) noexcept;
  Booster& operator=(Booster&&) noexcept;
  ~Booster();

  // Trains on `train`, evaluating `valid` (may be null) each round; with a
  // validation set and early stopping the booster is cut to its best round.
  // `progress` is called every round with the evaluation so far.
  static absl::StatusOr<Booster> Train(const Dataset& train, const Dataset* valid,
                                       const std::vector<std::string>& feature_names,
                                       const TrainParams& params,
                                       const std::function<void(const RoundEval&)>& progress);
  // From XGBoost's JSON model text.
  static absl::StatusOr<Booster> FromJson(const std::string& json);

  absl::StatusOr<std::string> ToJson() const;
  // Probabilities (or raw margins) for every row of `data`.
  absl::StatusOr<std::vector<float>> Predict(const Dataset& data, bool margin) const;
  // XGBoost's own predictor on raw rows, for comparisons (`vigil bench
  // model`): `n` rows of `cols` floats each, margins into `out`. kDMatrix
  // builds a DMatrix and calls XGBoosterPredictFromDMatrix; kDense calls
  // XGBoosterPredictFromDense (in-place prediction).
  enum class Path { kDMatrix, kDense };
  absl::Status PredictRows(Path path, const float* rows, size_t n, size_t cols, float* out) const;
  absl::Status SetParam(const std::string& name, const std::string& value);

  // The feature names stored in the model (empty when it has none).
  std::vector<std::string> FeatureNames() const;

  int rounds() const;                  // trees per class kept
  int best_round() const { return best_round_; }  // 0-based; -1 without early stopping
  const std::vector<RoundEval>& history() const { return history_; }
  const std::string& metric_name() const { return metric_name_; }

 private:
  explicit Booster(void* handle) : handle_(handle) {}
  void* handle_ = nullptr;  // BoosterHandle
  int best_round_ = -1;
  std::vector<RoundEval> history_;
  std::string metric_name_;
};

// XGBoost's version, "1.7.4".
std::string XgboostVersion();

}  // namespace vigil::model

#endif  // VIGIL_MODEL_XGB_H_
