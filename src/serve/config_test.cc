// vigil.yaml (serve/config.h): what it reads, where relative paths point,
// and every error naming file:line:col and the problem.
#include "serve/config.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/strings.h"
#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::serve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// The message as a std::string, which gMock prints readably.
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::string Example() {
  const char* src = std::getenv("VIGIL_SOURCE_DIR");
  return std::string(src ? src : ".") + "/examples/exchange";
}

class ConfigTest : public ::testing::Test {
 protected:
  // The three required paths (lines 1-3) then `rest`.
  std::string Write(const std::string& rest) {
    const std::string ex = Example();
    std::string path = (dir_ / "vigil.yaml").string();
    std::ofstream out(path);
    out << "schema: " << ex << "/schema.yaml\nfeatures: " << ex << "/features.yaml\npolicy: " << ex
        << "/policy.yaml\n"
        << rest;
    return path;
  }
  absl::Status Error(const std::string& rest) { return LoadServeConfig(Write(rest)).status(); }

  vigil::testing::TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

TEST_F(ConfigTest, ReadsTheExampleWithItsModelsAndLimits) {
  auto c = LoadServeConfig(Example() + "/vigil.yaml");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->schema, Example() + "/schema.yaml");
  ASSERT_EQ(c->models.size(), 6u);
  EXPECT_EQ(c->models[0].event_type, "withdrawal");
  EXPECT_EQ(c->models[0].champion.name, "exchange");
  EXPECT_EQ(c->models[0].champion.bundle, Example() + "/model");
  EXPECT_DOUBLE_EQ(c->models[0].holdout, 0.01);
  EXPECT_EQ(c->store, "sqlite:" + Example() + "/var/vigil.db");
  EXPECT_EQ(c->event_log_dir, Example() + "/var/eventlog");
  EXPECT_EQ(c->event_log_rotate_bytes, 256ll << 20);
  EXPECT_EQ(c->event_log_sync_ms, 0);  // never fsync, unless asked
  EXPECT_EQ(c->event_log_save_state_s, 600);
  EXPECT_EQ(c->event_log_save_timeout_s, 0);  // three intervals, at least a minute
  EXPECT_EQ(c->limits.max_batch, 100);
  EXPECT_EQ(c->limits.recent_decisions, 100000);
  EXPECT_EQ(c->limits.pretouch_mb, 0);
  EXPECT_EQ(c->reasons, 3);
}

TEST_F(ConfigTest, ResolvesRelativePathsAgainstTheFilesFolderAndDefaultsTheState) {
  fs::create_directories(dir_ / "m");
  auto c = LoadServeConfig(Write("models:\n  deposit: m\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->models.size(), 1u);
  EXPECT_EQ(c->models[0].champion.bundle, (dir_ / "m").string());
  EXPECT_EQ(c->models[0].champion.name, "m");  // the folder's name when unnamed
  EXPECT_EQ(c->store, "sqlite:" + (dir_ / "vigil.db").string());
  EXPECT_EQ(c->journal, (dir_ / "decisions.journal.jsonl").string());
  EXPECT_EQ(c->dead_letter, (dir_ / "dead-letter.jsonl").string());
  EXPECT_EQ(c->event_log_dir, (dir_ / "eventlog").string());
  EXPECT_EQ(c->listen, "127.0.0.1:8080");
  EXPECT_EQ(c->keys_file, "");
}

TEST_F(ConfigTest, NamesAnUnknownKeyWithFileAndLine) {
  absl::Status s = Error("listen: 127.0.0.1:9000\nlimts: {threads: 4}\n");
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr("vigil.yaml:5:"));
  EXPECT_THAT(Msg(s), HasSubstr("unknown key 'limts'"));
  EXPECT_THAT(Msg(s), HasSubstr("did you mean 'limits'"));

  s = Error("limits:\n  threads: 4\n  max_bodybytes: 1000\n");
  EXPECT_THAT(Msg(s), HasSubstr("vigil.yaml:6:"));
  EXPECT_THAT(Msg(s), HasSubstr("'max_bodybytes'"));
}

TEST_F(ConfigTest, RefusesAKeyGivenTwice) {
  EXPECT_THAT(Msg(Error("reasons: 3\nreasons: 5\n")),
              HasSubstr("vigil.yaml:5:1: 'reasons' given twice in this mapping (first at 4:1)"));
}

TEST_F(ConfigTest, RequiresTheSchemaFeaturesAndPolicyAndNamesAMissingFile) {
  std::string path = (dir_ / "vigil.yaml").string();
  std::ofstream(path) << "features: " << Example() << "/features.yaml\n";
  absl::Status s = LoadServeConfig(path).status();
  EXPECT_THAT(Msg(s), HasSubstr("'schema' is required"));
}

TEST_F(ConfigTest, RefusesABSharesThatLeaveTheChampionNothing) {
  const std::string m = Example() + "/model";
  absl::Status s = Error("models:\n  deposit:\n    champion: " + m + "\n    challengers:\n      - {name: a, bundle: " + m +
                         ", mode: ab, share: 0.6}\n      - {name: b, bundle: " + m + ", mode: ab, share: 0.4}\n");
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr("vigil.yaml:8:"));
  EXPECT_THAT(Msg(s), HasSubstr("sum < 1"));

  // Shadows take no share: only the A/B ones count.
  auto c = LoadServeConfig(Write("models:\n  deposit:\n    champion: " + m + "\n    challengers:\n      - {name: a, bundle: " +
                                 m + ", mode: ab, share: 0.6}\n      - {name: b, bundle: " + m + ", mode: shadow}\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->models[0].challengers.size(), 2u);
  EXPECT_EQ(c->models[0].challengers[0].mode, ModelRef::Mode::kAb);
  EXPECT_DOUBLE_EQ(c->models[0].challengers[0].share, 0.6);
  EXPECT_EQ(c->models[0].challengers[1].mode, ModelRef::Mode::kShadow);
}

TEST_F(ConfigTest, RefusesAShareOutsideZeroOneOrOnAShadow) {
  const std::string m = Example() + "/model";
  for (const char* share : {"0", "1", "-0.1", "1.5"}) {
    absl::Status s = Error("models:\n  deposit:\n    champion: " + m + "\n    challengers:\n      - {name: a, bundle: " + m +
                           ", mode: ab, share: " + share + "}\n");
    EXPECT_THAT(Msg(s), HasSubstr("share must be in (0, 1)")) << share;
  }
  absl::Status s = Error("models:\n  deposit:\n    champion: " + m + "\n    challengers:\n      - {name: a, bundle: " + m +
                         ", mode: shadow, share: 0.2}\n");
  EXPECT_THAT(Msg(s), HasSubstr("share is for mode: ab"));
  s = Error("models:\n  deposit:\n    champion: " + m + "\n    challengers:\n      - {name: a, bundle: " + m +
            ", mode: canary}\n");
  EXPECT_THAT(Msg(s), HasSubstr("mode 'canary'"));
  s = Error("models:\n  deposit:\n    champion: {bundle: " + m + ", mode: shadow}\n");
  EXPECT_THAT(Msg(s), HasSubstr("the champion's mode is 'champion'"));
}

TEST_F(ConfigTest, RefusesAHoldoutOutsideZeroToAHalf) {
  const std::string m = Example() + "/model";
  for (const char* h : {"0.6", "-0.01", "1"}) {
    absl::Status s = Error("models:\n  withdrawal:\n    champion: " + m + "\n    holdout: " + h + "\n");
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << h << ": " << s;
    EXPECT_THAT(Msg(s), HasSubstr("vigil.yaml:7:")) << h;
    EXPECT_THAT(Msg(s), HasSubstr("holdout must be in [0, 0.5]")) << h;
  }
  auto c = LoadServeConfig(Write("models:\n  withdrawal:\n    champion: " + m + "\n    holdout: 0.5\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->models[0].holdout, 0.5);
}

TEST_F(ConfigTest, RefusesTwoModelsOfATypeWithOneName) {
  const std::string m = Example() + "/model";
  absl::Status s = Error("models:\n  deposit:\n    champion: {name: x, bundle: " + m + "}\n    challengers:\n"
                         "      - {name: y, bundle: " + m + "}\n      - {name: y, bundle: " + m + "}\n");
  EXPECT_THAT(Msg(s), HasSubstr("two models of deposit are named 'y'"));
}

// A model shows as name@version: a bundle path with a trailing slash is
// named after its folder, and a name that would make name@version
// ambiguous, or is empty, is refused.
TEST_F(ConfigTest, NamesAModelAfterItsFolderAndRefusesANameThatCannotShow) {
  const std::string m = Example() + "/model";
  auto c = LoadServeConfig(Write("models:\n  deposit: " + m + "/\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->models[0].champion.name, "model");
  EXPECT_EQ(ModelNameOfBundle("a/b//"), "b");
  EXPECT_EQ(ModelNameOfBundle("w1"), "w1");
  for (const char* name : {"'a b'", "x@y", "'a\"b'"}) {
    absl::Status s = Error("models:\n  deposit: {champion: {name: " + std::string(name) +
                           ", bundle: " + m + "}}\n");
    EXPECT_THAT(Msg(s), HasSubstr("vigil.yaml:5:")) << name;
    EXPECT_THAT(Msg(s), HasSubstr("letters, digits, '.', '_' and '-' only")) << name;
  }
  EXPECT_THAT(Msg(Error("models:\n  deposit: /\n")), HasSubstr("a model needs a name"));
}

// Decisions and the admin API tell models apart by name: a challenger named
// as its champion would be reported as the champion.
TEST_F(ConfigTest, RefusesAChallengerNamedAsItsChampion) {
  const std::string m = Example() + "/model";
  absl::Status s = Error("models:\n  deposit:\n    champion: {name: x, bundle: " + m + "}\n    challengers:\n"
                         "      - {name: x, bundle: " + m + ", mode: shadow}\n");
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr("vigil.yaml:8:"));
  EXPECT_THAT(Msg(s), HasSubstr("two models of deposit are named 'x'"));
}

// Each passed --check, then the start failed without naming vigil.yaml.
TEST_F(ConfigTest, RefusesAnEmptyPathOrADirectoryWhereVigilWritesAFile) {
  fs::create_directory(dir_ / "var");
  EXPECT_THAT(Msg(Error("journal: ''\n")), HasSubstr("vigil.yaml:4:10: 'journal': needs a path"));
  EXPECT_THAT(Msg(Error("dead_letter: ''\n")), HasSubstr("'dead_letter': needs a path"));
  EXPECT_THAT(Msg(Error("event_log: {dir: ''}\n")),
              HasSubstr("vigil.yaml:4:18: 'event_log': needs a directory"));
  EXPECT_THAT(Msg(Error("journal: var/\n")), HasSubstr("/var/ is a directory, not a file"));
  EXPECT_THAT(Msg(Error("journal: var\n")), HasSubstr("/var is a directory, not a file"));
  EXPECT_THAT(Msg(Error("store: sqlite:var/\n")), HasSubstr("'store': "));
  EXPECT_THAT(Msg(Error("keys_file: var\n")), HasSubstr("'keys_file': "));
  EXPECT_THAT(Msg(Error("event_log: vigil.yaml\n")), HasSubstr("vigil.yaml is not a directory"));
  EXPECT_TRUE(Error("journal: var/j.jsonl\nevent_log: var\n").ok());
}

TEST_F(ConfigTest, RefusesLimitsOutOfRangeAndAStoreItCannotOpen) {
  EXPECT_THAT(Msg(Error("limits: {threads: 0}\n")), HasSubstr("threads must be in 1..64"));
  EXPECT_THAT(Msg(Error("limits: {threads: 65}\n")), HasSubstr("threads must be in 1..64"));
  EXPECT_THAT(Msg(Error("limits: {max_body_bytes: 100}\n")), HasSubstr("max_body_bytes must be at least 256"));
  EXPECT_THAT(Msg(Error("limits: {max_batch: 0}\n")), HasSubstr("max_batch must be at least 1"));
  EXPECT_THAT(Msg(Error("limits: {rate_per_key: -1}\n")), HasSubstr("rate_per_key must be >= 0"));
  EXPECT_THAT(Msg(Error("limits: {rate_per_key: .nan}\n")), HasSubstr("expected a finite number"));
  EXPECT_THAT(Msg(Error("limits: {rate_per_key: 10, burst_per_key: 0.5}\n")),
              HasSubstr("burst_per_key must be 0 (one second's worth) or at least 1"));
  EXPECT_THAT(Msg(Error("limits: {burst_per_key: -2}\n")), HasSubstr("burst_per_key must be"));
  EXPECT_THAT(Msg(Error("limits: {recent_decisions: -1}\n")),
              HasSubstr("recent_decisions must be in 0..10000000"));
  EXPECT_THAT(Msg(Error("limits: {recent_decisions: 1000000000}\n")),
              HasSubstr("recent_decisions must be in 0.."));
  EXPECT_THAT(Msg(Error("limits: {queue_capacity: 0}\n")), HasSubstr("queue_capacity must be at least 1"));
  EXPECT_THAT(Msg(Error("limits: {pretouch_mb: -1}\n")),
              HasSubstr("pretouch_mb must be in 0..1048576"));
  EXPECT_THAT(Msg(Error("limits: {threads: many}\n")), HasSubstr("vigil.yaml:4:"));
  EXPECT_THAT(Msg(Error("reasons: 33\n")), HasSubstr("reasons must be in 0..32"));
  EXPECT_THAT(Msg(Error("store: postgres://db\n")), HasSubstr("supported is sqlite:PATH"));
  EXPECT_THAT(Msg(Error("store: \"sqlite:\"\n")), HasSubstr("needs a path"));
  // Too large as well as too small: seconds and megabytes that would wrap
  // round once multiplied (a save every 0.3 s for "585 years").
  for (const char* bad : {"0", "8796093022208", "1048577"}) {
    EXPECT_THAT(Msg(Error(StrCat("event_log: {rotate_mb: ", bad, "}\n"))),
                HasSubstr("rotate_mb must be in 1..1048576"))
        << bad;
  }
  EXPECT_TRUE(Error("event_log: {rotate_mb: 1048576}\n").ok());
  EXPECT_THAT(Msg(Error("event_log: {sync_ms: -5}\n")), HasSubstr("sync_ms must be in 0..3600000"));
  for (const char* bad : {"-1", "18446744074", "31622401"}) {
    EXPECT_THAT(Msg(Error(StrCat("event_log: {save_state_s: ", bad, "}\n"))),
                HasSubstr("save_state_s must be in 0..31622400"))
        << bad;
    EXPECT_THAT(Msg(Error(StrCat("event_log: {save_timeout_s: ", bad, "}\n"))),
                HasSubstr("save_timeout_s must be in 0..31622400"))
        << bad;
  }
  EXPECT_THAT(Msg(Error("limits: {max_ahead_of_clock_s: -1}\n")),
              HasSubstr("max_ahead_of_clock_s must be in 0..31622400"));
  EXPECT_THAT(Msg(Error("listen: localhost\n")), HasSubstr("expected HOST:PORT"));
}

// What the server writes may not be another of its files: a journal that
// is the store moved the stored decisions out of it at the next start.
TEST_F(ConfigTest, RefusesAWrittenFileThatIsAnotherOfItsFiles) {
  const std::string ex = Example();
  const std::string d = dir_.string();
  struct Case {
    std::string yaml, message;
  };
  const std::vector<Case> cases = {
      {"store: sqlite:var/vigil.db\njournal: var/vigil.db\n",
       "store and journal are the same file"},
      {"store: sqlite:var/vigil.db\njournal: ./var/../var/vigil.db\n",
       "store and journal are the same file"},
      {"dead_letter: " + ex + "/schema.yaml\n", "dead_letter and schema are the same file"},
      {"journal: x.jsonl\ndead_letter: x.jsonl\n", "journal and dead_letter are the same file"},
      {"keys_file: vigil.yaml\n", "keys_file and the config itself are the same file"},
      {"event_log: {dir: var}\njournal: var\n", "journal and event_log are the same file"},
      {"dead_letter: " + ex + "/policy.yaml\n", "vigil.yaml:4:"},
  };
  for (const Case& c : cases) EXPECT_THAT(Msg(Error(c.yaml)), HasSubstr(c.message)) << c.yaml;
  // Through a symbolic link too.
  fs::create_directories(dir_ / "var");
  fs::create_symlink(dir_ / "var", dir_ / "link");
  EXPECT_THAT(Msg(Error("store: sqlite:var/vigil.db\njournal: link/vigil.db\n")),
              HasSubstr("store and journal are the same file"));
  EXPECT_TRUE(Error("store: sqlite:var/vigil.db\njournal: var/journal.jsonl\n").ok());
}

TEST(ParseListenTest, SplitsHostAndPortAndRefusesABadPort) {
  std::string host;
  int port = -1;
  ASSERT_TRUE(ParseListen("127.0.0.1:8080", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(ParseListen("[::1]:0", &host, &port).ok());
  EXPECT_EQ(host, "::1");  // brackets as in a URL, for getaddrinfo without them
  EXPECT_EQ(port, 0);
  EXPECT_THAT(Msg(ParseListen("::1:8080", &host, &port)), HasSubstr("goes in brackets"));
  for (const char* bad : {"8080", ":8080", "host:", "host:65536", "host:80a", "host:123456", "host:-1"}) {
    absl::Status s = ParseListen(bad, &host, &port);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad;
    EXPECT_THAT(Msg(s), HasSubstr(bad));
  }
}

TEST_F(ConfigTest, CreatesTheFoldersOfTheStateFiles) {
  auto c = LoadServeConfig(Write("store: sqlite:a/db.sqlite\njournal: b/j.jsonl\nevent_log: c/log\n"
                                 "dead_letter: d/dl.jsonl\nkeys_file: e/keys.txt\n"));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(EnsureStateDirs(*c).ok());
  for (const char* d : {"a", "b", "c/log", "d", "e"}) EXPECT_TRUE(fs::is_directory(dir_ / d)) << d;
}

}  // namespace
}  // namespace vigil::serve
