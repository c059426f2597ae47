// `vigil train`: a model bundle from a feature table, split by time.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "core/strings.h"
#include "model/train.h"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "0.1.0"
#endif

namespace vigil::cli {
namespace {

struct TrainArgs {
  model::TrainOptions o;
  std::string label, time, id;
  std::vector<std::string> drop;
  int64_t seed = 0;
};

int Run(TrainArgs& a) {
  model::TrainOptions& o = a.o;
  o.columns.label = a.label;
  o.columns.time = a.time;
  o.columns.id = a.id;
  o.columns.drop = a.drop;
  o.seed = static_cast<uint64_t>(a.seed);
  o.vigil_version = VIGIL_VERSION;
  o.log = [](std::string_view line) { std::fprintf(stderr, "%.*s\n", static_cast<int>(line.size()), line.data()); };
  auto sum = model::TrainModel(o);
  if (!sum.ok()) {
    PrintError("train", sum.status());
    return kExitError;
  }
  std::fprintf(stderr, "train: %d rounds, %zu features; training AUC %.4f AP %.4f", sum->rounds,
               sum->features, sum->train.auc, sum->train.ap);
  if (sum->has_valid) std::fprintf(stderr, "; validation AUC %.4f AP %.4f", sum->valid.auc, sum->valid.ap);
  std::fprintf(stderr, "\ntrain: reading %.2f s, training %.2f s; bundle %s\n", sum->seconds_reading,
               sum->seconds_training, sum->out_dir.c_str());
  return kExitOk;
}

}  // namespace

Runner AddTrainCommand(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train",
      "Train a gradient-boosted tree model (XGBoost) on a feature table, split by time: rows of\n"
      "the --train range fit it, rows of the --valid range (later) stop it early and are\n"
      "reported; every other row is ignored. Writes a bundle: model.json, manifest.json (features,\n"
      "hashes, data, ranges, parameters, metrics) and reference_profile.json. docs/training.md.");
  cmd->add_option("--features", a->o.features,
                  "feature table: `vigil backfill` output (its .meta.json names the features) or any CSV")
      ->required();
  cmd->add_option("--label", a->label, "the 0/1 label column; rows with it empty are left out")->required();
  cmd->add_option("--train", a->o.train_range,
                  "training range FROM..TO, UTC dates or timestamps; a date as TO includes that day")
      ->required();
  cmd->add_option("--valid", a->o.valid_range, "validation range FROM..TO after the training range");
  cmd->add_option("--params", a->o.params_file,
                  "YAML of XGBoost parameters (eta, max_depth, scale_pos_weight…), rounds, "
                  "early_stopping_rounds");
  cmd->add_option("--search", a->o.search_trials,
                  "random search: N trials over the space in docs/training.md, chosen by validation "
                  "average precision (needs --valid)");
  cmd->add_option("--seed", a->seed, "random seed: the same seed gives the same model (default 0)");
  cmd->add_option("--threads", a->o.threads, "XGBoost threads (default: every core)");
  cmd->add_flag("--calibrate", a->o.calibrate, "fit an isotonic calibration on the validation range");
  cmd->add_option("--time", a->time, "time column (default: the .meta.json's, else event_time)");
  cmd->add_option("--id", a->id, "id column (default: the .meta.json's, else event_id)");
  cmd->add_option("--drop", a->drop, "columns that are not features (any CSV)")->expected(1, -1);
  cmd->add_option("--out", a->o.out_dir, "the bundle directory to write")->required();
  cmd->footer(
      "Examples:\n"
      "  vigil train --features f.csv --label TX_FRAUD --train 2018-07-04..2018-07-10 \\\n"
      "      --valid 2018-07-18..2018-07-24 --out model/\n"
      "  vigil train --features claims.csv --time submitted --id claim_id --drop policy_no \\\n"
      "      --label fraud --train 2023-01-01..2023-09-30 --out claims-model/");
  return [a] { return Run(*a); };
}

}  // namespace vigil::cli
