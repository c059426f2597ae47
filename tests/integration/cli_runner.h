// Helpers for whole-program tests: run the `vigil` binary as a user would
// (or another program, such as a reference script),
// with arguments, an optional standard input and environment changes, in a
// working folder of the test's choosing, and capture its exit code, standard
// output and standard error. Also a fresh temporary folder per test, and
// small file utilities.
//
// The binary is the one CMake built (compile definition VIGIL_BINARY); the
// source tree comes from VIGIL_SOURCE_DIR, which ctest sets.
//
// Thread-safety: RunVigil forks; call it from one thread at a time.
#ifndef VIGIL_TESTS_INTEGRATION_CLI_RUNNER_H_
#define VIGIL_TESTS_INTEGRATION_CLI_RUNNER_H_

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/testing/temp_dir.h"

namespace vigil::testing {

struct RunOptions {
  std::string cwd;         // working folder of the child; empty: the test's own
  std::string stdin_path;  // file fed to standard input; empty: /dev/null
  // Environment changes: a value sets the variable, nullopt removes it.
  std::map<std::string, std::optional<std::string>> env;
};

struct RunResult {
  int exit_code = -1;   // the exit status, or 128 + signal when killed by one
  std::string out;      // standard output
  std::string err;      // standard error
  std::string command;  // for failure messages
};

// Runs the vigil binary with `args`. Standard output and error go through
// files in a private folder, so any amount of output is captured without a
// deadlock.
RunResult RunVigil(const std::vector<std::string>& args, const RunOptions& options = {});

// The same for any program, named by its absolute path (no PATH search):
// the reference scripts of /usr/bin/python3, a browser.
RunResult RunProgram(const std::string& program, const std::vector<std::string>& args,
                     const RunOptions& options = {});

// The command, its exit code and both outputs, for a failure message.
std::string Describe(const RunResult& r);

// Path of the vigil binary under test.
std::string VigilBinary();

// The source tree (VIGIL_SOURCE_DIR). Aborts the test program with a message
// when it is unset: run the tests through ctest.
std::string SourceDir();

// Whole file as bytes; empty when it cannot be read (check FileExists).
std::string ReadFile(const std::string& path);
bool FileExists(const std::string& path);
// Writes `data` exactly; fails the current test when it cannot.
void WriteFile(const std::string& path, std::string_view data);
// Writes `data` gzip-compressed (zlib).
void WriteGzipFile(const std::string& path, std::string_view data);

// Lines of `text` without their '\n' (a final line without one counts too).
std::vector<std::string> SplitLines(std::string_view text);

// Decodes standard base64 (with padding). Returns nullopt on bad input.
std::optional<std::string> Base64Decode(std::string_view in);

}  // namespace vigil::testing

#endif  // VIGIL_TESTS_INTEGRATION_CLI_RUNNER_H_
