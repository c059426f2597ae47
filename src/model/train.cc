#include "model/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <span>
#include <thread>
#include <utility>

#include "core/config.h"
#include "core/random.h"
#include "core/strings.h"
#include "core/time.h"
#include "event/profile.h"
#include "model/bundle.h"
#include "model/isotonic.h"
#include "model/metrics.h"
#include "nlohmann/json.hpp"

namespace vigil::model {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string Fixed(double v, int digits = 4) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::vector<double> ToDouble(const std::vector<float>& v) { return {v.begin(), v.end()}; }

std::vector<uint8_t> Labels(const Dataset& d) {
  std::vector<uint8_t> y(d.rows);
  for (size_t i = 0; i < d.rows; ++i) y[i] = d.label[i] > 0.5f;
  return y;
}

// Rows, labels and the checks every split needs.
absl::StatusOr<Dataset> LoadSplit(const CsvTable& table, const TableColumns& cols,
                                  const FeatureLayout& layout, const RowSelection& sel,
                                  const TimeRange& range, const char* what) {
  VIGIL_ASSIGN_OR_RETURN(Dataset d, BuildDataset(table, layout, sel.rows, cols.label, cols.time));
  const size_t pos = d.positives();
  if (pos == 0 || pos == d.rows) {
    return absl::InvalidArgumentError(StrCat(
        "the ", what, " range ", range.text, " holds a single class: all ", d.rows, " rows have ",
        cols.label_name, " = ", pos == 0 ? 0 : 1, "; a model needs both"));
  }
  return d;
}

absl::StatusOr<RowSelection> SelectSplit(const CsvTable& table, const TableColumns& cols,
                                         const TimeRange& range, const char* what) {
  VIGIL_ASSIGN_OR_RETURN(RowSelection sel, SelectRows(table, cols.time, cols.label, range));
  if (sel.rows.empty()) {
    const std::string span =
        table.rows() == 0 ? std::string("no rows")
                          : StrCat(core::FormatTimestamp(sel.first_ms), " .. ", core::FormatTimestamp(sel.last_ms));
    return absl::InvalidArgumentError(StrCat("the ", what, " range ", range.text, " holds no labelled rows of ",
                                             table.path(), " (", sel.unlabelled,
                                             " unlabelled; the file spans ", span, ")"));
  }
  return sel;
}

// The random search space (docs/training.md), drawn from a seeded generator.
std::map<std::string, std::string> DrawParams(core::SplitMix64& rng) {
  auto uniform = [&](double lo, double hi) {
    return lo + (hi - lo) * rng.Uniform();
  };
  auto pick = [&](std::initializer_list<const char*> options) {
    return std::string(options.begin()[rng.Below(options.size())]);
  };
  std::map<std::string, std::string> p;
  p["max_depth"] = pick({"2", "3", "4", "5", "6", "8"});
  p["eta"] = Fixed(std::exp(uniform(std::log(0.02), std::log(0.3))), 4);
  p["min_child_weight"] = pick({"1", "2", "5", "10", "20"});
  p["subsample"] = Fixed(uniform(0.6, 1.0), 2);
  p["colsample_bytree"] = Fixed(uniform(0.5, 1.0), 2);
  p["lambda"] = Fixed(std::exp(uniform(std::log(0.1), std::log(10.0))), 3);
  p["gamma"] = pick({"0", "0.1", "1"});
  return p;
}

nlohmann::ordered_json SplitJson(const SplitSummary& s, const TimeRange& r) {
  nlohmann::ordered_json j;
  j["range"] = s.range;
  j["from"] = core::FormatTimestamp(r.from_ms);
  j["to_exclusive"] = core::FormatTimestamp(r.to_ms);
  j["rows"] = s.rows;
  j["positives"] = s.positives;
  j["unlabelled_left_out"] = s.unlabelled;
  j["auc"] = s.auc;
  j["average_precision"] = s.ap;
  return j;
}

absl::Status WriteText(const std::filesystem::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::DataLossError(StrCat(p.string(), ": cannot write"));
  return absl::OkStatus();
}

}  // namespace

TrainParams DefaultParams(bool with_validation, uint64_t seed, int threads) {
  TrainParams p;
  p.xgb["objective"] = "binary:logistic";
  p.xgb["eval_metric"] = "aucpr";
  p.xgb["seed"] = std::to_string(seed);
  p.xgb["nthread"] = std::to_string(threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency()));
  p.xgb["max_depth"] = "6";
  if (with_validation) {
    p.xgb["eta"] = "0.1";
    p.rounds = 1000;
    p.early_stopping_rounds = 50;
  } else {
    p.xgb["eta"] = "0.3";
    p.rounds = 100;
    p.early_stopping_rounds = 0;
  }
  return p;
}

absl::Status ReadParamsFile(const std::string& path, TrainParams* params) {
  VIGIL_ASSIGN_OR_RETURN(core::ConfigNode root, core::ConfigNode::LoadFile(path));
  if (!root.IsMap()) return root.Error("expected a map of parameter: value");
  for (const auto& [key, node] : root.Entries()) {
    if (!node.IsScalar()) return node.Error(StrCat(key, ": expected a single value"));
    if (key == "rounds" || key == "early_stopping_rounds") {
      VIGIL_ASSIGN_OR_RETURN(int64_t v, node.Int());
      if (v < 0 || v > 100000) return node.Error(StrCat(key, ": must be within 0..100000"));
      (key == "rounds" ? params->rounds : params->early_stopping_rounds) = static_cast<int>(v);
      continue;
    }
    if (key == "objective") {
      const std::string v = node.Text();
      if (v != "binary:logistic" && v != "reg:logistic") {
        return node.Error(StrCat("objective ", v, ": vigil trains binary:logistic or reg:logistic"));
      }
    }
    params->xgb[key] = node.Text();
  }
  return absl::OkStatus();
}

absl::StatusOr<TrainSummary> TrainModel(const TrainOptions& o) {
  auto log = [&](std::string_view line) {
    if (o.log) o.log(line);
  };
  if (o.columns.label.empty()) return absl::InvalidArgumentError("--label is required");
  if (o.train_range.empty()) return absl::InvalidArgumentError("--train FROM..TO is required");
  if (o.out_dir.empty()) return absl::InvalidArgumentError("--out MODEL_DIR is required");
  VIGIL_ASSIGN_OR_RETURN(TimeRange train_range, ParseTimeRange(o.train_range));
  TimeRange valid_range;
  const bool has_valid = !o.valid_range.empty();
  if (has_valid) {
    VIGIL_ASSIGN_OR_RETURN(valid_range, ParseTimeRange(o.valid_range));
    if (valid_range.from_ms < train_range.to_ms) {
      return absl::InvalidArgumentError(
          StrCat("--valid ", o.valid_range, " must start after --train ", o.train_range,
                 " ends: splits are by time, so the model is judged on a later period"));
    }
  }
  if (o.search_trials > 0 && !has_valid) {
    return absl::InvalidArgumentError("--search needs --valid: trials are compared on the validation range");
  }
  if (o.calibrate && !has_valid) {
    return absl::InvalidArgumentError("--calibrate needs --valid: calibration is fitted on the validation range");
  }
  TrainParams params = DefaultParams(has_valid, o.seed, o.threads);
  if (!o.params_file.empty()) VIGIL_RETURN_IF_ERROR(ReadParamsFile(o.params_file, &params));

  const auto t_read = Clock::now();
  log(StrCat("train: reading ", o.features));
  VIGIL_ASSIGN_OR_RETURN(CsvTable table, CsvTable::Read(o.features));
  VIGIL_ASSIGN_OR_RETURN(TableColumns cols, ResolveColumns(table, o.columns));
  if (cols.inputs.empty()) {
    return absl::InvalidArgumentError(StrCat(o.features, ": no feature columns left"));
  }
  VIGIL_ASSIGN_OR_RETURN(RowSelection train_sel, SelectSplit(table, cols, train_range, "training"));
  VIGIL_ASSIGN_OR_RETURN(FeatureLayout layout,
                         InferLayout(table, cols.inputs, train_sel.rows, /*numeric_only=*/cols.from_meta));
  VIGIL_ASSIGN_OR_RETURN(Dataset train, LoadSplit(table, cols, layout, train_sel, train_range, "training"));
  RowSelection valid_sel;
  Dataset valid;
  if (has_valid) {
    VIGIL_ASSIGN_OR_RETURN(valid_sel, SelectSplit(table, cols, valid_range, "validation"));
    VIGIL_ASSIGN_OR_RETURN(valid, LoadSplit(table, cols, layout, valid_sel, valid_range, "validation"));
  }
  TrainSummary sum;
  sum.has_valid = has_valid;
  sum.features = layout.num_features();
  sum.seconds_reading = SecondsSince(t_read);
  sum.train = {o.train_range, static_cast<int64_t>(train.rows), static_cast<int64_t>(train.positives()),
               train_sel.unlabelled, 0, 0};
  if (has_valid) {
    sum.valid = {o.valid_range, static_cast<int64_t>(valid.rows), static_cast<int64_t>(valid.positives()),
                 valid_sel.unlabelled, 0, 0};
  }
  log(StrCat("train: ", train.rows, " training rows (", train.positives(), " positive, ",
             train_sel.unlabelled, " unlabelled left out)",
             has_valid ? StrCat(", ", valid.rows, " validation rows (", valid.positives(), " positive, ",
                                valid_sel.unlabelled, " unlabelled left out)")
                       : std::string(),
             ", ", layout.num_features(), " features, read in ", Fixed(sum.seconds_reading, 2), " s"));

  const auto t_train = Clock::now();
  auto progress = [&](const RoundEval& e) {
    if (e.round % 10 != 0) return;
    log(StrCat("train: round ", e.round, "  train-", e.metric, " ", Fixed(e.train_metric),
               has_valid ? StrCat("  valid-", e.metric, " ", Fixed(e.valid_metric)) : std::string(), "  ",
               Fixed(SecondsSince(t_train), 1), " s"));
  };
  const std::vector<uint8_t> valid_y = has_valid ? Labels(valid) : std::vector<uint8_t>();

  nlohmann::ordered_json trials = nlohmann::ordered_json::array();
  std::optional<Booster> booster;
  if (o.search_trials > 0) {
    core::SplitMix64 rng(o.seed);
    double best_ap = -1;
    for (int trial = 0; trial < o.search_trials; ++trial) {
      TrainParams p = params;
      for (auto& [k, v] : DrawParams(rng)) p.xgb[k] = v;
      const auto t = Clock::now();
      VIGIL_ASSIGN_OR_RETURN(Booster b, Booster::Train(train, &valid, layout.feature_names, p, nullptr));
      VIGIL_ASSIGN_OR_RETURN(std::vector<float> pred, b.Predict(valid, false));
      const std::vector<double> s = ToDouble(pred);
      const double ap = AveragePrecision(s, valid_y);
      const double auc = RocAuc(s, valid_y);
      nlohmann::ordered_json tj;
      tj["trial"] = trial + 1;
      tj["params"] = p.xgb;
      tj["rounds"] = b.rounds();
      tj["valid_average_precision"] = ap;
      tj["valid_auc"] = auc;
      tj["seconds"] = SecondsSince(t);
      trials.push_back(tj);
      log(StrCat("train: trial ", trial + 1, "/", o.search_trials, "  depth ", p.xgb["max_depth"], " eta ",
                 p.xgb["eta"], "  ", b.rounds(), " rounds  valid AP ", Fixed(ap), "  AUC ", Fixed(auc),
                 ap > best_ap ? "  (best so far)" : "", "  ", Fixed(SecondsSince(t_train), 1), " s"));
      if (ap > best_ap) {
        best_ap = ap;
        booster = std::move(b);
        params = p;
      }
    }
  } else {
    VIGIL_ASSIGN_OR_RETURN(Booster b, Booster::Train(train, has_valid ? &valid : nullptr,
                                                     layout.feature_names, params, progress));
    booster = std::move(b);
  }
  sum.seconds_training = SecondsSince(t_train);
  sum.rounds = booster->rounds();

  // Metrics, the reference profile and the calibration.
  VIGIL_ASSIGN_OR_RETURN(std::vector<float> train_pred, booster->Predict(train, false));
  const std::vector<double> train_s = ToDouble(train_pred);
  const std::vector<uint8_t> train_y = Labels(train);
  sum.train.auc = RocAuc(train_s, train_y);
  sum.train.ap = AveragePrecision(train_s, train_y);
  std::optional<IsotonicCalibration> calibration;
  if (has_valid) {
    VIGIL_ASSIGN_OR_RETURN(std::vector<float> valid_pred, booster->Predict(valid, false));
    const std::vector<double> s = ToDouble(valid_pred);
    sum.valid.auc = RocAuc(s, valid_y);
    sum.valid.ap = AveragePrecision(s, valid_y);
    if (o.calibrate) {
      IsotonicCalibration cal;
      VIGIL_RETURN_IF_ERROR(cal.Fit(s, valid_y));
      calibration = std::move(cal);
    }
  }
  event::Profile profile;
  profile.source = o.features;
  profile.records = static_cast<int64_t>(train.rows);
  for (size_t f = 0; f < train.cols; ++f) {
    event::ColumnProfiler cp(/*numeric=*/true, /*categorical=*/false);
    for (size_t i = 0; i < train.rows; ++i) cp.AddNumber(train.row(i)[f]);
    profile.columns.push_back(cp.Stats(layout.feature_names[f], "number", "feature"));
  }
  {
    event::ColumnProfiler cp(true, false);
    for (double s : train_s) cp.AddNumber(s);
    profile.columns.push_back(cp.Stats("score", "number", "score"));
  }

  // The bundle.
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(o.out_dir, ec);
  if (ec) return absl::PermissionDeniedError(StrCat(o.out_dir, ": cannot create: ", ec.message()));
  VIGIL_ASSIGN_OR_RETURN(std::string model_json, booster->ToJson());
  VIGIL_RETURN_IF_ERROR(WriteText(fs::path(o.out_dir) / "model.json", model_json));
  VIGIL_RETURN_IF_ERROR(profile.Save((fs::path(o.out_dir) / "reference_profile.json").string()));

  nlohmann::ordered_json m;
  m["format"] = kManifestFormat;
  m["vigil_version"] = o.vigil_version;
  m["xgboost_version"] = XgboostVersion();
  m["created"] = core::FormatTimestamp(core::WallNowMs());
  m["features"] = layout.feature_names;
  m["inputs"] = layout.ToJson();
  m["feature_spec_hash"] = cols.spec_hash.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(cols.spec_hash);
  m["schema_hash"] = cols.schema_hash.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(cols.schema_hash);
  m["id_column"] = cols.id >= 0 ? nlohmann::ordered_json(cols.id_name) : nlohmann::ordered_json(nullptr);
  m["time_column"] = cols.time_name;
  m["label_column"] = cols.label_name;
  nlohmann::ordered_json data;
  data["file"] = o.features;
  data["sha256"] = table.content_hash();
  data["rows"] = table.rows();
  m["data"] = data;
  m["train"] = SplitJson(sum.train, train_range);
  m["valid"] = has_valid ? SplitJson(sum.valid, valid_range) : nlohmann::ordered_json(nullptr);
  m["params"] = params.xgb;
  m["max_rounds"] = params.rounds;
  m["early_stopping_rounds"] = has_valid ? params.early_stopping_rounds : 0;
  m["rounds"] = sum.rounds;
  m["seed"] = o.seed;
  m["search"] = trials;
  m["calibration"] = calibration ? calibration->ToJson() : nlohmann::ordered_json(nullptr);
  m["reference_profile"] = "reference_profile.json";
  m["seconds"] = {{"reading", sum.seconds_reading}, {"training", sum.seconds_training}};
  VIGIL_RETURN_IF_ERROR(
      WriteText(fs::path(o.out_dir) / "manifest.json",
                m.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n"));
  sum.out_dir = o.out_dir;
  return sum;
}

}  // namespace vigil::model
