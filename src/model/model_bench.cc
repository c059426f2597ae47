#include "model/model_bench.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "core/random.h"
#include "core/strings.h"
#include "event/profile.h"
#include "model/bundle.h"
#include "model/dataset.h"
#include "model/forest.h"
#include "model/xgb.h"

namespace vigil::model {
namespace {

using Clock = std::chrono::steady_clock;

double Us(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

// Runs `fn` over every row, timing each call.
template <typename F>
LatencyFigures Single(size_t rows, F&& fn) {
  std::vector<double> us;
  us.reserve(rows);
  for (size_t i = 0; i < rows; ++i) {
    const auto t0 = Clock::now();
    fn(i);
    us.push_back(Us(Clock::now() - t0));
  }
  return {Percentile(us, 0.5), Percentile(us, 0.99), 0};
}

// Repeats `fn` (which scores all `rows`) for at least `seconds`; rows/s.
template <typename F>
double Throughput(size_t rows, double seconds, F&& fn) {
  size_t done = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  do {
    fn();
    done += rows;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (elapsed < seconds);
  return static_cast<double>(done) / elapsed;
}

// Per-feature [lo, hi] to draw random rows from: the bundle's reference
// profile (p1..p99), else the range of the model's own split thresholds.
absl::Status RandomRows(const Bundle& b, const Forest& f, size_t n, uint64_t seed, std::vector<float>* rows,
                        std::string* how) {
  const size_t nf = f.num_features();
  std::vector<double> lo(nf, std::numeric_limits<double>::infinity()), hi(nf, -std::numeric_limits<double>::infinity());
  bool from_profile = false;
  if (!b.bare) {
    const std::string path = (std::filesystem::path(b.path) / "reference_profile.json").string();
    if (auto p = event::Profile::Load(path); p.ok()) {
      for (size_t i = 0; i < nf && i < b.layout.feature_names.size(); ++i) {
        const event::ColumnStats* c = p->Find(b.layout.feature_names[i]);
        if (c && c->numeric && c->count > 0) {
          lo[i] = c->Quantile(0.01);
          hi[i] = c->Quantile(0.99);
          from_profile = true;
        }
      }
    }
  }
  if (!from_profile) {
    std::vector<float> flo, fhi;
    f.SplitRanges(&flo, &fhi);
    for (size_t i = 0; i < nf; ++i) {
      if (flo[i] <= fhi[i]) {
        lo[i] = flo[i];
        hi[i] = fhi[i];
      }
    }
  }
  core::SplitMix64 rng(seed);
  rows->resize(n * nf);
  for (size_t r = 0; r < n; ++r) {
    for (size_t i = 0; i < nf; ++i) {
      float v;
      if (!std::isfinite(lo[i])) {
        v = 0;  // never split on
      } else if (rng.Below(20) == 0) {
        v = std::numeric_limits<float>::quiet_NaN();  // 5 % missing
      } else {
        const double span = hi[i] - lo[i];
        v = static_cast<float>(lo[i] - 0.05 * span + rng.Uniform() * 1.1 * span);
      }
      (*rows)[r * nf + i] = v;
    }
  }
  *how = from_profile ? "random, within p1..p99 of the reference profile, 5 % missing"
                      : "random, within the model's split thresholds, 5 % missing";
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelBenchResult> BenchModel(const ModelBenchOptions& o) {
  ModelBenchResult r;
  VIGIL_ASSIGN_OR_RETURN(Bundle bundle, Bundle::Load(o.model));
  r.model = o.model;
  // Load time: best of a few loads.
  // Load time: the bundle loaded the forest once; best of a few more loads.
  double best_ms = 1e300;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    VIGIL_RETURN_IF_ERROR(Forest::FromJson(bundle.model_json, o.model).status());
    best_ms = std::min(best_ms, Us(Clock::now() - t0) / 1000);
  }
  r.load_ms = best_ms;
  const Forest& f = *bundle.forest;
  const size_t nf = f.num_features();
  r.trees = f.num_trees();
  r.nodes = f.num_nodes();
  r.features = nf;
  r.max_depth = f.max_depth();

  std::vector<float> rows;
  if (!o.features.empty()) {
    VIGIL_ASSIGN_OR_RETURN(CsvTable table, CsvTable::Read(o.features));
    std::vector<uint32_t> pick;
    for (size_t i = 0; i < table.rows() && pick.size() < o.rows; ++i) pick.push_back(static_cast<uint32_t>(i));
    VIGIL_ASSIGN_OR_RETURN(Dataset d, BuildDataset(table, bundle.layout, pick, -1, -1));
    if (d.cols != nf) {
      return absl::InvalidArgumentError(StrCat(o.model, ": ", nf, " model features, ", d.cols, " in its layout"));
    }
    rows = std::move(d.x);
    r.rows_from = o.features;
  } else {
    VIGIL_RETURN_IF_ERROR(RandomRows(bundle, f, o.rows, o.seed, &rows, &r.rows_from));
  }
  const size_t n = rows.size() / std::max<size_t>(nf, 1);
  if (n == 0) return absl::InvalidArgumentError(StrCat(o.features, ": no rows"));
  r.rows = n;
  auto row = [&](size_t i) { return rows.data() + (i % n) * nf; };

  // vigil.
  volatile float sink = 0;
  for (size_t i = 0; i < std::min<size_t>(n, 1000); ++i) sink = f.Score(row(i));  // warm the caches
  r.vigil = Single(n, [&](size_t i) { sink = f.Score(row(i)); });
  std::vector<float> out(n);
  r.vigil.batch_rows_per_s = Throughput(n, 0.5, [&] { f.MarginBatch(rows.data(), n, out.data()); });

  // XGBoost, one thread, both paths on the same rows.
  VIGIL_ASSIGN_OR_RETURN(Booster b, Booster::FromJson(bundle.model_json));
  VIGIL_RETURN_IF_ERROR(b.SetParam("nthread", "1"));
  float one = 0;
  const size_t xn = std::min<size_t>(n, 3000);  // XGBoost is slower: fewer single rows
  absl::Status st;
  for (auto path : {Booster::Path::kDMatrix, Booster::Path::kDense}) {
    for (size_t i = 0; i < std::min<size_t>(xn, 200); ++i) st.Update(b.PredictRows(path, row(i), 1, nf, &one));
    LatencyFigures fig = Single(xn, [&](size_t i) { st.Update(b.PredictRows(path, row(i), 1, nf, &one)); });
    fig.batch_rows_per_s = Throughput(n, 0.5, [&] { st.Update(b.PredictRows(path, rows.data(), n, nf, out.data())); });
    (path == Booster::Path::kDMatrix ? r.xgb_dmatrix : r.xgb_dense) = fig;
  }
  VIGIL_RETURN_IF_ERROR(st);
  const bool dm = r.xgb_dmatrix.p50_us <= r.xgb_dense.p50_us;
  r.xgb_path = dm ? "DMatrix + XGBoosterPredictFromDMatrix" : "XGBoosterPredictFromDense";
  r.xgb_best = {std::min(r.xgb_dmatrix.p50_us, r.xgb_dense.p50_us), std::min(r.xgb_dmatrix.p99_us, r.xgb_dense.p99_us),
                std::max(r.xgb_dmatrix.batch_rows_per_s, r.xgb_dense.batch_rows_per_s)};
  r.speedup_p50 = r.vigil.p50_us > 0 ? r.xgb_best.p50_us / r.vigil.p50_us : 0;
  r.speedup_batch = r.xgb_best.batch_rows_per_s > 0 ? r.vigil.batch_rows_per_s / r.xgb_best.batch_rows_per_s : 0;

  // Reasons per row.
  std::vector<float> contrib(nf + 1);
  const size_t pn = std::min<size_t>(n, 5000);
  auto t0 = Clock::now();
  for (size_t i = 0; i < pn; ++i) f.PathContributions(row(i), contrib.data());
  r.path_reasons_us = Us(Clock::now() - t0) / static_cast<double>(pn);
  std::vector<double> shap(nf + 1);
  const size_t sn = std::min<size_t>(n, 200);
  t0 = Clock::now();
  for (size_t i = 0; i < sn; ++i) f.ShapContributions(row(i), shap.data());
  r.shap_reasons_us = Us(Clock::now() - t0) / static_cast<double>(sn);

  // How far the cheap attribution is from TreeSHAP on the same rows: the
  // same top feature, the same top-3 set, and the share of the total
  // absolute contribution that moves between features.
  auto top = [&](auto&& c, size_t k) {
    std::vector<uint32_t> o(nf);
    for (uint32_t i = 0; i < nf; ++i) o[i] = i;
    std::partial_sort(o.begin(), o.begin() + static_cast<std::ptrdiff_t>(std::min(k, o.size())), o.end(),
                      [&](uint32_t a, uint32_t b) { return std::fabs(c[a]) > std::fabs(c[b]); });
    o.resize(std::min(k, o.size()));
    std::sort(o.begin(), o.end());
    return o;
  };
  size_t same1 = 0, same3 = 0;
  double moved = 0, total = 0;
  for (size_t i = 0; i < sn; ++i) {
    f.PathContributions(row(i), contrib.data());
    f.ShapContributions(row(i), shap.data());
    same1 += top(contrib, 1) == top(shap, 1);
    same3 += top(contrib, 3) == top(shap, 3);
    for (size_t j = 0; j < nf; ++j) {
      moved += std::fabs(contrib[j] - shap[j]);
      total += std::fabs(shap[j]);
    }
  }
  r.reasons_rows = sn;
  r.top1_agreement = static_cast<double>(same1) / static_cast<double>(sn);
  r.top3_agreement = static_cast<double>(same3) / static_cast<double>(sn);
  r.l1_difference = total > 0 ? moved / total : 0;
  (void)sink;
  return r;
}

nlohmann::ordered_json ModelBenchResult::ToJson() const {
  auto fig = [](const LatencyFigures& f) {
    return nlohmann::ordered_json{{"p50_us", f.p50_us}, {"p99_us", f.p99_us}, {"batch_rows_per_s", f.batch_rows_per_s}};
  };
  nlohmann::ordered_json j;
  j["vigil"] = fig(vigil);
  j["xgboost"] = fig(xgb_best);
  j["xgboost"]["path"] = xgb_path;
  j["speedup_p50"] = speedup_p50;
  j["speedup_batch"] = speedup_batch;
  j["xgboost_paths"] = {{"dmatrix", fig(xgb_dmatrix)}, {"dense", fig(xgb_dense)}};
  j["reasons_us_per_row"] = {{"path", path_reasons_us}, {"treeshap", shap_reasons_us}};
  j["path_vs_treeshap"] = {{"rows", reasons_rows}, {"same_top1", top1_agreement}, {"same_top3", top3_agreement},
                           {"l1_difference", l1_difference}};
  j["load_ms"] = load_ms;
  j["model"] = {{"path", model}, {"trees", trees}, {"nodes", nodes}, {"features", features}, {"max_depth", max_depth}};
  j["rows"] = {{"count", rows}, {"from", rows_from}};
  return j;
}

std::string ModelBenchResult::ToText() const {
  char b[1024];
  std::string s;
  std::snprintf(b, sizeof b, "model %s: %zu trees, %zu nodes, depth up to %d, %zu features; loaded in %.2f ms\n",
                model.c_str(), trees, nodes, max_depth, features, load_ms);
  s += b;
  std::snprintf(b, sizeof b, "rows: %zu, %s; one thread\n\n", rows, rows_from.c_str());
  s += b;
  std::snprintf(b, sizeof b, "  %-40s %9s %9s %14s\n", "", "p50 µs", "p99 µs", "batch rows/s");
  s += b;
  auto line = [&](const char* name, const LatencyFigures& f) {
    std::snprintf(b, sizeof b, "  %-40s %9.2f %9.2f %14.0f\n", name, f.p50_us, f.p99_us, f.batch_rows_per_s);
    s += b;
  };
  line("vigil", vigil);
  line("XGBoost, DMatrix + PredictFromDMatrix", xgb_dmatrix);
  line("XGBoost, PredictFromDense", xgb_dense);
  std::snprintf(b, sizeof b, "\n  vigil is %.1fx faster per row (p50) and %.1fx in batches than XGBoost's better path\n",
                speedup_p50, speedup_batch);
  s += b;
  std::snprintf(b, sizeof b, "  reasons per row: path attribution %.2f µs, exact TreeSHAP %.1f µs\n", path_reasons_us,
                shap_reasons_us);
  s += b;
  std::snprintf(b, sizeof b,
                "  path attribution vs TreeSHAP on %zu rows: same top feature %.0f %%, same top-3 set %.0f %%, "
                "%.0f %% of the attribution on other features\n",
                reasons_rows, 100 * top1_agreement, 100 * top3_agreement, 100 * l1_difference);
  s += b;
  return s;
}

}  // namespace vigil::model
