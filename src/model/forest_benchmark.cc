// Google Benchmark of the forest evaluator beside XGBoost's own predictor,
// on the same model and the same rows, one thread (bench/forest.sh runs it
// for the two reference models of bench/make_models.py):
//
//   BM_Vigil_OneRow        Forest::Score, one row at a time
//   BM_Xgb_OneRow_DMatrix  a one-row DMatrix + XGBoosterPredictFromDMatrix
//   BM_Xgb_OneRow_Dense    XGBoosterPredictFromDense (in-place)
//   BM_Vigil_Batch         Forest::MarginBatch over 10,000 rows
//   BM_Xgb_Batch           one DMatrix of the 10,000 rows + predict
//   BM_Vigil_PathReasons   the cheap attribution, per row
//   BM_Vigil_TreeShap      exact TreeSHAP, per row
//   BM_Vigil_Load          Forest::FromJson of the model text
//
// items_per_second is rows/s. The model and rows come from the environment:
// VIGIL_BENCH_MODEL (XGBoost JSON) and VIGIL_BENCH_ROWS (a CSV whose columns
// after the first are the model's features in order).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "model/dataset.h"
#include "model/forest.h"
#include "model/xgb.h"

namespace {

using namespace vigil::model;

struct Fixture {
  std::string json;
  std::shared_ptr<const Forest> forest;
  std::unique_ptr<Booster> xgb;
  std::vector<float> rows;
  size_t n = 0, cols = 0;
  bool ok = false;
};

const Fixture& Get() {
  static Fixture* f = [] {
    auto* f = new Fixture;
    const char* model = std::getenv("VIGIL_BENCH_MODEL");
    const char* rows = std::getenv("VIGIL_BENCH_ROWS");
    if (!model || !rows) return f;
    std::ifstream in(model);
    std::stringstream ss;
    ss << in.rdbuf();
    f->json = ss.str();
    auto forest = Forest::FromJson(f->json, model);
    auto booster = Booster::FromJson(f->json);
    auto table = CsvTable::Read(rows);
    if (!forest.ok() || !booster.ok() || !table.ok() || !booster->SetParam("nthread", "1").ok()) return f;
    f->forest = *forest;
    f->xgb = std::make_unique<Booster>(std::move(*booster));
    f->cols = f->forest->num_features();
    std::vector<std::string> names;
    for (size_t i = 1; i < table->header().size(); ++i) names.push_back(table->header()[i]);
    std::vector<uint32_t> all(table->rows());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint32_t>(i);
    auto d = BuildDataset(*table, FeatureLayout::Numeric(names), all, -1, -1);
    if (!d.ok() || d->cols != f->cols) return f;
    f->rows = std::move(d->x);
    f->n = d->rows;
    f->ok = f->n > 0;
    return f;
  }();
  return *f;
}

#define NEED_FIXTURE(state)                                                   \
  const Fixture& fx = Get();                                                  \
  if (!fx.ok) {                                                               \
    state.SkipWithError("set VIGIL_BENCH_MODEL and VIGIL_BENCH_ROWS");        \
    return;                                                                   \
  }

void BM_Vigil_OneRow(benchmark::State& state) {
  NEED_FIXTURE(state);
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(fx.forest->Score(fx.rows.data() + (i++ % fx.n) * fx.cols));
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_Xgb_OneRow(benchmark::State& state, Booster::Path path) {
  NEED_FIXTURE(state);
  size_t i = 0;
  float out;
  for (auto _ : state) {
    if (!fx.xgb->PredictRows(path, fx.rows.data() + (i++ % fx.n) * fx.cols, 1, fx.cols, &out).ok()) {
      state.SkipWithError("XGBoost failed");
      return;
    }
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
void BM_Xgb_OneRow_DMatrix(benchmark::State& s) { BM_Xgb_OneRow(s, Booster::Path::kDMatrix); }
void BM_Xgb_OneRow_Dense(benchmark::State& s) { BM_Xgb_OneRow(s, Booster::Path::kDense); }

void BM_Vigil_Batch(benchmark::State& state) {
  NEED_FIXTURE(state);
  std::vector<float> out(fx.n);
  for (auto _ : state) {
    fx.forest->MarginBatch(fx.rows.data(), fx.n, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * fx.n));
}

void BM_Xgb_Batch(benchmark::State& state) {
  NEED_FIXTURE(state);
  std::vector<float> out(fx.n);
  for (auto _ : state) {
    if (!fx.xgb->PredictRows(Booster::Path::kDMatrix, fx.rows.data(), fx.n, fx.cols, out.data()).ok()) {
      state.SkipWithError("XGBoost failed");
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * fx.n));
}

void BM_Vigil_PathReasons(benchmark::State& state) {
  NEED_FIXTURE(state);
  std::vector<float> contrib(fx.cols + 1);
  size_t i = 0;
  for (auto _ : state) {
    fx.forest->PathContributions(fx.rows.data() + (i++ % fx.n) * fx.cols, contrib.data());
    benchmark::DoNotOptimize(contrib.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_Vigil_TreeShap(benchmark::State& state) {
  NEED_FIXTURE(state);
  std::vector<double> contrib(fx.cols + 1);
  size_t i = 0;
  for (auto _ : state) {
    fx.forest->ShapContributions(fx.rows.data() + (i++ % fx.n) * fx.cols, contrib.data());
    benchmark::DoNotOptimize(contrib.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_Vigil_Load(benchmark::State& state) {
  NEED_FIXTURE(state);
  for (auto _ : state) benchmark::DoNotOptimize(Forest::FromJson(fx.json, "bench").ok());
}

BENCHMARK(BM_Vigil_OneRow);
BENCHMARK(BM_Xgb_OneRow_DMatrix);
BENCHMARK(BM_Xgb_OneRow_Dense);
BENCHMARK(BM_Vigil_Batch)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Xgb_Batch)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Vigil_PathReasons);
BENCHMARK(BM_Vigil_TreeShap)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Vigil_Load)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
