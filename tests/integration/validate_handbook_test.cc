// `vigil validate` on the Fraud Detection Handbook's April–July transactions
// (1,169,723 rows, 19 MB gzip), as the README's first example runs it. The
// data is not in the repository: set VIGIL_HANDBOOK_DIR to the folder that
// holds transactions_2018-04-01_to_07-31.csv.gz; without it the test skips.
// Labelled `integration;slow`.
#include <cstdlib>
#include <string>

#include "cli_runner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace vigil::testing {
namespace {

using ::testing::HasSubstr;

TEST(HandbookTest, AprilToJulyTransactionsAreAllValid) {
  const char* data_dir = std::getenv("VIGIL_HANDBOOK_DIR");
  if (data_dir == nullptr || *data_dir == '\0') {
    GTEST_SKIP() << "VIGIL_HANDBOOK_DIR is not set: set it to the folder holding "
                    "transactions_2018-04-01_to_07-31.csv.gz to run this test";
  }
  const std::string events = std::string(data_dir) + "/transactions_2018-04-01_to_07-31.csv.gz";
  ASSERT_TRUE(FileExists(events)) << events << " does not exist (VIGIL_HANDBOOK_DIR)";

  TempDir dir;
  RunOptions options;
  options.cwd = SourceDir();  // the schema path as the README writes it
  const RunResult r =
      RunVigil({"validate", "--schema", "examples/handbook/schema.yaml", "--events", events,
                "--report", dir.File("report.json"), "--dead-letter", dir.File("dead.jsonl")},
               options);
  SCOPED_TRACE("command: " + r.command + " (in " + options.cwd + ")\nstdout:\n" + r.out +
               "\nstderr:\n" + r.err);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("(csv, gzip)"));
  EXPECT_THAT(r.out, HasSubstr("read      1,169,723 records"));
  EXPECT_THAT(r.out, HasSubstr("valid     1,169,723\n"));
  EXPECT_THAT(r.out, HasSubstr("rejected  0\n"));
  EXPECT_FALSE(FileExists(dir.File("dead.jsonl"))) << "nothing was rejected";

  const nlohmann::json report =
      nlohmann::json::parse(ReadFile(dir.File("report.json")), nullptr, false);
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report["read"], 1169723);
  EXPECT_EQ(report["valid"], 1169723);
  EXPECT_EQ(report["rejected"], 0);
  EXPECT_EQ(report["complete"], true);
}

}  // namespace
}  // namespace vigil::testing
