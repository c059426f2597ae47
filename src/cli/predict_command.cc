// `vigil predict`: scores for every row of a feature table.
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "core/strings.h"
#include "model/bundle.h"
#include "model/scoring.h"

namespace vigil::cli {
namespace {

struct PredictArgs {
  std::string model, features, out;
  model::ScoreOptions o;
};

int Run(const PredictArgs& a) {
  Progress progress("predict");
  auto scored = model::ScoreTable(a.model, a.features, a.o);
  if (!scored.ok()) {
    PrintError("predict", scored.status());
    return kExitError;
  }
  if (auto s = model::WriteScores(*scored, a.out); !s.ok()) {
    PrintError("predict", s);
    return kExitError;
  }
  std::fprintf(stderr, "predict: %s rows scored by %s in %.2f s; %s\n", Thousands(static_cast<int64_t>(scored->scores.size())).c_str(),
               scored->bundle.name().c_str(), progress.Seconds(), a.out.c_str());
  return kExitOk;
}

}  // namespace

Runner AddPredictCommand(CLI::App& app) {
  auto a = std::make_shared<PredictArgs>();
  CLI::App* cmd = app.add_subcommand(
      "predict",
      "Score every row of a feature table with a model: a bundle from `vigil train` or a bare\n"
      "XGBoost JSON model (columns matched by its feature names). Writes `<id>,score` in input\n"
      "order. A bundle is refused when the table was computed by another feature spec.");
  cmd->add_option("--model", a->model, "bundle directory or XGBoost JSON model")->required();
  cmd->add_option("--features", a->features, "feature table (CSV, plain or gzip)")->required();
  cmd->add_option("--id", a->o.id, "id column (default: the .meta.json's, the bundle's, else event_id)");
  cmd->add_option("--out", a->out, "scores CSV, or - for standard output")->required();
  cmd->add_flag("--margin", a->o.margin, "write the raw margin (log-odds) instead of the probability");
  cmd->add_option("--reasons", a->o.reasons,
                  "add the K features that moved the score most: r1_feature,r1_value,r1_contrib,… "
                  "(contributions to the margin; the path attribution, cheap)");
  cmd->add_flag("--exact", a->o.exact, "reasons by exact TreeSHAP (milliseconds per row)");
  cmd->footer(
      "Example:\n"
      "  vigil predict --model model/ --features f.csv --out scores.csv\n"
      "  vigil predict --model model/ --features f.csv --reasons 3 --out scores.csv");
  return [a] { return Run(*a); };
}

}  // namespace vigil::cli
