// vigil: real-time fraud and risk decisions. Entry point of the command.
#include <csignal>
#include <cstdio>
#include <map>
#include <string>

#include "CLI/CLI.hpp"
#include "cli/commands.h"

#ifndef VIGIL_VERSION
#define VIGIL_VERSION "0.1.0"
#endif

int main(int argc, char** argv) {
  // A write past a file size limit (ulimit -f, systemd's LimitFSIZE=) fails
  // with EFBIG, which every writer reports (the server's event log answers
  // 503 and goes on in a new file), instead of killing the process.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{
      "vigil — real-time fraud and risk decisions for exchanges and fintechs.\n"
      "One binary: validate and profile event data, compute features, train and score\n"
      "models, decide, and watch its own accuracy.",
      "vigil"};
  app.set_version_flag("--version", VIGIL_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  vigil validate --schema examples/handbook/schema.yaml --events transactions.csv.gz\n"
      "  vigil profile --schema examples/handbook/schema.yaml --events transactions.csv.gz \\\n"
      "      --out profile.json\n"
      "  vigil backfill --schema examples/handbook/schema.yaml \\\n"
      "      --features examples/handbook/features.yaml --events transactions.csv.gz --out f.csv\n"
      "  vigil train --features f.csv --label TX_FRAUD --train 2018-07-04..2018-07-10 --out model/\n"
      "  vigil predict --model model/ --features f.csv --out scores.csv\n"
      "Run `vigil <command> --help` for a command's options. Docs: docs/README.md");
  std::map<CLI::App*, vigil::cli::Runner> runners;
  auto add = [&](vigil::cli::Runner r) { runners[app.get_subcommands({}).back()] = std::move(r); };
  add(vigil::cli::AddValidateCommand(app));
  add(vigil::cli::AddProfileCommand(app));
  add(vigil::cli::AddBackfillCommand(app));
  add(vigil::cli::AddSimulateCommand(app));
  add(vigil::cli::AddTrainCommand(app));
  add(vigil::cli::AddPredictCommand(app));
  add(vigil::cli::AddEvaluateCommand(app));
  add(vigil::cli::AddThresholdsCommand(app));
  add(vigil::cli::AddBenchCommand(app));
  add(vigil::cli::AddServeCommand(app));
  add(vigil::cli::AddKeysCommand(app));
  add(vigil::cli::AddDecideCommand(app));
  // Every command says how it exits (validate has a 1 of its own; keys
  // says it for its subcommand).
  for (CLI::App* sub : app.get_subcommands({})) {
    const std::string footer = sub->get_footer();
    if (footer.find("Exit status") != std::string::npos ||
        sub->get_description().find("Exit status") != std::string::npos ||
        sub->get_name() == "keys") {
      continue;
    }
    sub->footer(footer + (footer.empty() ? "" : "\n") +
                "Exit status: 0 done, 2 a usage, configuration, data or I/O error (the message says which).");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // CLI11 reports usage problems by exception; --help and --version exit 0.
    const int code = app.exit(e);
    return code == 0 ? 0 : vigil::cli::kExitError;
  }
  for (auto& [sub, run] : runners) {
    if (sub->parsed()) return run();
  }
  return vigil::cli::kExitError;
}
