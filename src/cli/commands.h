// The `vigil` command's subcommands. Each registers its options on the
// CLI11 app and returns the function that runs it; the function returns the
// process exit code. Exit codes: 0 success, 1 the data failed a check
// (validate found rejections), 2 a usage, configuration or I/O error.
#ifndef VIGIL_CLI_COMMANDS_H_
#define VIGIL_CLI_COMMANDS_H_

#include <functional>

#include "CLI/CLI.hpp"

namespace vigil::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitRejected = 1;
inline constexpr int kExitError = 2;

using Runner = std::function<int()>;

Runner AddValidateCommand(CLI::App& app);
Runner AddProfileCommand(CLI::App& app);
Runner AddBackfillCommand(CLI::App& app);
Runner AddSimulateCommand(CLI::App& app);
Runner AddTrainCommand(CLI::App& app);
Runner AddPredictCommand(CLI::App& app);
Runner AddEvaluateCommand(CLI::App& app);
Runner AddThresholdsCommand(CLI::App& app);
Runner AddBenchCommand(CLI::App& app);
Runner AddServeCommand(CLI::App& app);
Runner AddKeysCommand(CLI::App& app);
Runner AddDecideCommand(CLI::App& app);

}  // namespace vigil::cli

#endif  // VIGIL_CLI_COMMANDS_H_
