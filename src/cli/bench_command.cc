// `vigil bench model`: how fast will my model score?
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "model/model_bench.h"

namespace vigil::cli {
namespace {

struct BenchArgs {
  model::ModelBenchOptions o;
  bool json = false;
};

int Run(const BenchArgs& a) {
  auto r = model::BenchModel(a.o);
  if (!r.ok()) {
    PrintError("bench model", r.status());
    return kExitError;
  }
  if (a.json) {
    std::printf("%s\n", r->ToJson().dump().c_str());
  } else {
    std::fputs(r->ToText().c_str(), stdout);
  }
  return kExitOk;
}

}  // namespace

Runner AddBenchCommand(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* bench = app.add_subcommand("bench", "Measure how fast vigil does its work on this machine.");
  bench->require_subcommand(1);
  bench->footer(
      "Example:\n"
      "  vigil bench model --model model/        (vigil bench model --help for more)");
  CLI::App* cmd = bench->add_subcommand(
      "model",
      "How fast will a model score? Single-row p50 and p99 and batch rows/s on one thread, for\n"
      "vigil's forest evaluator and for XGBoost's own C API (a one-row DMatrix, and in-place\n"
      "PredictFromDense; the better of the two for each figure) on the same rows, the ratios,\n"
      "the cost of reasons per row and the load time. Shared machines are noisy: compare the\n"
      "ratios, measured in the same run.");
  cmd->add_option("--model", a->o.model, "bundle directory or XGBoost JSON model")->required();
  cmd->add_option("--features", a->o.features,
                  "rows to score (a feature table); default: random rows in the features' observed ranges");
  cmd->add_option("--rows", a->o.rows, "rows (default 10000)");
  cmd->add_option("--seed", a->o.seed, "seed of the random rows (default 1)");
  cmd->add_flag("--json", a->json, "print one JSON object instead of a table");
  cmd->footer(
      "Examples:\n"
      "  vigil bench model --model model/\n"
      "  vigil bench model --model model.json --features f.csv --rows 5000 --json");
  return [a] { return Run(*a); };
}

}  // namespace vigil::cli
