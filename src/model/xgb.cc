#include "model/xgb.h"

#include <xgboost/c_api.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cmath>
#include <limits>
#include <utility>

#include "core/strings.h"

namespace vigil::model {
namespace {

absl::Status Check(int rc, std::string_view what) {
  if (rc == 0) return absl::OkStatus();
  return absl::InternalError(StrCat("XGBoost ", what, ": ", XGBGetLastError()));
}

// A DMatrix freed on scope exit.
struct Matrix {
  DMatrixHandle h = nullptr;
  ~Matrix() {
    if (h) XGDMatrixFree(h);
  }
};

absl::Status MakeMatrix(const Dataset& d, const std::vector<std::string>& names, Matrix* m) {
  VIGIL_RETURN_IF_ERROR(Check(XGDMatrixCreateFromMat(d.x.data(), d.rows, d.cols,
                                                     std::numeric_limits<float>::quiet_NaN(), &m->h),
                              "DMatrix"));
  if (!d.label.empty()) {
    VIGIL_RETURN_IF_ERROR(
        Check(XGDMatrixSetFloatInfo(m->h, "label", d.label.data(), d.label.size()), "labels"));
  }
  if (!names.empty()) {
    std::vector<const char*> p;
    for (const std::string& n : names) p.push_back(n.c_str());
    VIGIL_RETURN_IF_ERROR(
        Check(XGDMatrixSetStrFeatureInfo(m->h, "feature_name", p.data(), p.size()), "feature names"));
  }
  return absl::OkStatus();
}

// Metrics where larger is better; the rest (logloss, error, rmse…) are minimised.
bool Maximise(std::string_view metric) {
  return metric == "auc" || metric == "aucpr" || metric == "map" || StartsWith(metric, "ndcg") ||
         StartsWith(metric, "pre");
}

// "[3]\ttrain-auc:0.91\tvalid-auc:0.88": the value of `set`'s last metric.
bool LastMetric(std::string_view line, std::string_view set, std::string* name, double* value) {
  bool found = false;
  for (std::string_view part : StrSplit(line, '\t')) {
    if (!StartsWith(part, set) || part.size() <= set.size() || part[set.size()] != '-') continue;
    const size_t colon = part.rfind(':');
    if (colon == std::string_view::npos) continue;
    std::string_view num = part.substr(colon + 1);
    double v;
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
    if (ec != std::errc()) continue;
    *name = std::string(part.substr(set.size() + 1, colon - set.size() - 1));
    *value = v;
    found = true;
  }
  return found;
}

}  // namespace

Booster::Booster(Booster&& o) noexcept
    : handle_(std::exchange(o.handle_, nullptr)),
      best_round_(o.best_round_),
      history_(std::move(o.history_)),
      metric_name_(std::move(o.metric_name_)) {}

Booster& Booster::operator=(Booster&& o) noexcept {
  if (this != &o) {
    if (handle_) XGBoosterFree(handle_);
    handle_ = std::exchange(o.handle_, nullptr);
    best_round_ = o.best_round_;
    history_ = std::move(o.history_);
    metric_name_ = std::move(o.metric_name_);
  }
  return *this;
}

Booster::~Booster() {
  if (handle_) XGBoosterFree(handle_);
}

absl::StatusOr<Booster> Booster::Train(const Dataset& train, const Dataset* valid,
                                       const std::vector<std::string>& feature_names,
                                       const TrainParams& params,
                                       const std::function<void(const RoundEval&)>& progress) {
  if (train.rows == 0) return absl::InvalidArgumentError("no training rows");
  Matrix dtrain, dvalid;
  VIGIL_RETURN_IF_ERROR(MakeMatrix(train, feature_names, &dtrain));
  if (valid && valid->rows > 0) {
    VIGIL_RETURN_IF_ERROR(MakeMatrix(*valid, feature_names, &dvalid));
  } else {
    valid = nullptr;
  }
  DMatrixHandle cache[2] = {dtrain.h, dvalid.h};
  BoosterHandle h = nullptr;
  VIGIL_RETURN_IF_ERROR(Check(XGBoosterCreate(cache, valid ? 2 : 1, &h), "create"));
  Booster b(h);
  for (const auto& [k, v] : params.xgb) {
    VIGIL_RETURN_IF_ERROR(Check(XGBoosterSetParam(h, k.c_str(), v.c_str()),
                                StrCat("parameter ", k, "=", v)));
  }
  double best = 0;
  int since_best = 0;
  for (int round = 0; round < params.rounds; ++round) {
    VIGIL_RETURN_IF_ERROR(Check(XGBoosterUpdateOneIter(h, round, dtrain.h), "training round"));
    // The training metric every 10th round (the progress line); the
    // validation metric every round when it decides when to stop. Each
    // evaluation sorts the whole set, so evaluating less trains faster.
    const bool logged = round % 10 == 0 || round + 1 == params.rounds;
    const bool stopping = valid && params.early_stopping_rounds > 0;
    RoundEval e;
    e.round = round;
    e.train_metric = e.valid_metric = std::numeric_limits<double>::quiet_NaN();
    if (logged || stopping) {
      DMatrixHandle mats[2];
      const char* names[2];
      bst_ulong n = 0;
      if (logged) {
        mats[n] = dtrain.h;
        names[n++] = "train";
      }
      if (valid && (logged || stopping)) {
        mats[n] = dvalid.h;
        names[n++] = "valid";
      }
      const char* out = nullptr;
      VIGIL_RETURN_IF_ERROR(Check(XGBoosterEvalOneIter(h, round, mats, names, n, &out), "evaluation"));
      std::string name;
      if (logged) LastMetric(out, "train", &name, &e.train_metric);
      if (valid) LastMetric(out, "valid", &name, &e.valid_metric);
      b.metric_name_ = name;
      e.metric = name;
    }
    b.history_.push_back(e);
    if (progress && logged) progress(e);
    if (stopping) {
      const bool better = round == 0 || (Maximise(e.metric) ? e.valid_metric > best : e.valid_metric < best);
      if (better) {
        best = e.valid_metric;
        b.best_round_ = round;
        since_best = 0;
      } else if (++since_best >= params.early_stopping_rounds) {
        break;
      }
    }
  }
  if (b.best_round_ >= 0 && b.best_round_ + 1 < static_cast<int>(b.history_.size())) {
    BoosterHandle cut = nullptr;
    VIGIL_RETURN_IF_ERROR(Check(XGBoosterSlice(h, 0, b.best_round_ + 1, 1, &cut), "slice"));
    XGBoosterFree(h);
    b.handle_ = cut;
  }
  // Keep the names in model.json: the C API does not copy them from the matrix.
  if (!feature_names.empty()) {
    std::vector<const char*> p;
    for (const std::string& n : feature_names) p.push_back(n.c_str());
    VIGIL_RETURN_IF_ERROR(Check(XGBoosterSetStrFeatureInfo(b.handle_, "feature_name", p.data(), p.size()),
                                "feature names"));
  }
  return b;
}

absl::StatusOr<Booster> Booster::FromJson(const std::string& json) {
  BoosterHandle h = nullptr;
  VIGIL_RETURN_IF_ERROR(Check(XGBoosterCreate(nullptr, 0, &h), "create"));
  Booster b(h);
  VIGIL_RETURN_IF_ERROR(Check(XGBoosterLoadModelFromBuffer(h, json.data(), json.size()), "load model"));
  return b;
}

absl::StatusOr<std::string> Booster::ToJson() const {
  bst_ulong len = 0;
  const char* buf = nullptr;
  VIGIL_RETURN_IF_ERROR(
      Check(XGBoosterSaveModelToBuffer(handle_, R"({"format": "json"})", &len, &buf), "save model"));
  return std::string(buf, len);
}

absl::StatusOr<std::vector<float>> Booster::Predict(const Dataset& data, bool margin) const {
  if (data.rows == 0) return std::vector<float>();
  Matrix m;
  VIGIL_RETURN_IF_ERROR(MakeMatrix(data, {}, &m));
  const std::string config =
      StrCat(R"({"type": )", margin ? 1 : 0,
             R"(, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false})");
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* out = nullptr;
  VIGIL_RETURN_IF_ERROR(
      Check(XGBoosterPredictFromDMatrix(handle_, m.h, config.c_str(), &shape, &dim, &out), "predict"));
  bst_ulong n = 1;
  for (bst_ulong i = 0; i < dim; ++i) n *= shape[i];
  if (n != data.rows) {
    return absl::InvalidArgumentError(
        StrCat("the model gives ", n, " outputs for ", data.rows, " rows: only single-output models are supported"));
  }
  return std::vector<float>(out, out + n);
}

absl::Status Booster::PredictRows(Path path, const float* rows, size_t n, size_t cols, float* out) const {
  static const char kConfig[] =
      R"({"type": 1, "training": false, "iteration_begin": 0, "iteration_end": 0, "strict_shape": false, )"
      R"("cache_id": 0, "missing": NaN})";
  const bst_ulong* shape = nullptr;
  bst_ulong dim = 0;
  const float* result = nullptr;
  if (path == Path::kDMatrix) {
    Matrix m;
    VIGIL_RETURN_IF_ERROR(Check(XGDMatrixCreateFromMat(rows, n, cols, std::numeric_limits<float>::quiet_NaN(), &m.h),
                                "DMatrix"));
    VIGIL_RETURN_IF_ERROR(
        Check(XGBoosterPredictFromDMatrix(handle_, m.h, kConfig, &shape, &dim, &result), "predict"));
  } else {
    char iface[160];
    std::snprintf(iface, sizeof iface,
                  R"({"data": [%llu, true], "shape": [%zu, %zu], "typestr": "<f4", "version": 3})",
                  static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(rows)), n, cols);
    VIGIL_RETURN_IF_ERROR(Check(
        XGBoosterPredictFromDense(handle_, iface, kConfig, nullptr, &shape, &dim, &result), "predict (dense)"));
  }
  std::copy(result, result + n, out);
  return absl::OkStatus();
}

absl::Status Booster::SetParam(const std::string& name, const std::string& value) {
  return Check(XGBoosterSetParam(handle_, name.c_str(), value.c_str()), StrCat("parameter ", name));
}

std::vector<std::string> Booster::FeatureNames() const {
  bst_ulong len = 0;
  const char** names = nullptr;
  std::vector<std::string> r;
  if (XGBoosterGetStrFeatureInfo(handle_, "feature_name", &len, &names) != 0) return r;
  for (bst_ulong i = 0; i < len; ++i) r.emplace_back(names[i]);
  return r;
}

int Booster::rounds() const {
  int n = 0;
  XGBoosterBoostedRounds(handle_, &n);
  return n;
}

std::string XgboostVersion() {
  int major = 0, minor = 0, patch = 0;
  XGBoostVersion(&major, &minor, &patch);
  return StrCat(major, ".", minor, ".", patch);
}

}  // namespace vigil::model
