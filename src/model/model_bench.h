// `vigil bench model`: how fast a model scores, on one thread, with vigil's
// forest evaluator and with XGBoost's own C API on the same rows — single
// rows (p50, p99) and batches (rows/s) — plus the cost of reasons per row
// and the load time.
//
// Thread-safety: runs on the calling thread (XGBoost is set to nthread=1).
#ifndef VIGIL_MODEL_MODEL_BENCH_H_
#define VIGIL_MODEL_MODEL_BENCH_H_

#include <cstdint>
#include <string>

#include "core/status.h"
#include "nlohmann/json.hpp"

namespace vigil::model {

struct ModelBenchOptions {
  std::string model;     // bundle or XGBoost JSON
  std::string features;  // rows to score; "" = random rows in the features' observed ranges
  size_t rows = 10000;
  uint64_t seed = 1;
};

struct LatencyFigures {
  double p50_us = 0, p99_us = 0, batch_rows_per_s = 0;
};

struct ModelBenchResult {
  std::string model;
  size_t trees = 0, nodes = 0, features = 0, rows = 0;
  int max_depth = 0;
  std::string rows_from;  // the features file, or how random rows were drawn
  double load_ms = 0;
  LatencyFigures vigil, xgb_dmatrix, xgb_dense;
  LatencyFigures xgb_best;  // the better of the two paths for each figure
  std::string xgb_path;     // the path of the best p50
  double path_reasons_us = 0, shap_reasons_us = 0;  // per row
  // The path attribution against TreeSHAP: rows compared, how often the top
  // feature and the top-3 set agree, and Σ|path − shap| / Σ|shap|.
  size_t reasons_rows = 0;
  double top1_agreement = 0, top3_agreement = 0, l1_difference = 0;
  double speedup_p50 = 0, speedup_batch = 0;

  // {"vigil": {"p50_us", "p99_us", "batch_rows_per_s"}, "xgboost": {…, "path"},
  //  "speedup_p50", "speedup_batch", …}
  nlohmann::ordered_json ToJson() const;
  std::string ToText() const;
};

absl::StatusOr<ModelBenchResult> BenchModel(const ModelBenchOptions& options);

}  // namespace vigil::model

#endif  // VIGIL_MODEL_MODEL_BENCH_H_
