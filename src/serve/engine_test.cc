// vigil::Engine on the exchange example (examples/exchange): the sample's
// decisions, the documented answer, allocations on the hot path, A/B arms,
// shadow challengers and the holdout, reloads that fail, a model unavailable
// at run time, and the errors Open reports. Every test writes its own
// vigil.yaml (and, where it needs them, model copies and a policy) in a
// temporary folder.
#include "vigil/engine.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/alloc_counter.h"
#include "core/testing/temp_dir.h"
#include "core/time.h"
#include "event/pii.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "serve/readiness.h"

namespace vigil {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::ordered_json;

// The message as a std::string, which gMock prints readably.
std::string Msg(const absl::Status& s) { return std::string(s.message()); }

std::string Example() {
  const char* src = std::getenv("VIGIL_SOURCE_DIR");
  return std::string(src ? src : ".") + "/examples/exchange";
}

void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> SampleLines() {
  std::vector<std::string> lines;
  std::ifstream in(Example() + "/sample.jsonl");
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) lines.push_back(l);
  return lines;
}

// The sample's event of id e0000000000NN, parsed (for tests that derive events from it).
Json SampleEvent(int n) {
  return Json::parse(SampleLines().at(static_cast<size_t>(n - 1)));
}

// "e" + 12 digits, as the schema wants.
std::string EventId(int64_t n) {
  char b[48];
  std::snprintf(b, sizeof b, "e%012lld", static_cast<long long>(n));
  return b;
}

std::string UserId(int n) {
  char b[48];
  std::snprintf(b, sizeof b, "u%07d", n);
  return b;
}

// 2024-01-03T00:00:00Z plus `s` seconds (within January): after the sample.
std::string Time(int64_t s) {
  char b[64];
  const auto ll = [](int64_t v) { return static_cast<long long>(v); };
  std::snprintf(b, sizeof b, "2024-01-%02lldT%02lld:%02lld:%02lld.000Z", ll(3 + s / 86400), ll(s / 3600 % 24),
                ll(s / 60 % 60), ll(s % 60));
  return b;
}

// A scored event after the sample, of id e000000009999.
std::string LaterEventForDiskTest() {
  Json ev = Json::parse(SampleLines().at(3));
  ev["event_id"] = "e000000009999";
  ev["time"] = Time(0);
  return ev.dump();
}


class EngineTest : public ::testing::Test {
 protected:
  // A fixed PII key: no warning, the same hashes in every run.
  void SetUp() override { setenv("VIGIL_PII_KEY", "engine-test", 1); }

  // vigil.yaml over the exchange schema and features; `models` is the
  // models: section (indented by two), `rest` more top-level keys.
  std::string Config(const std::string& models, const std::string& policy = "",
                     const std::string& rest = "") {
    const std::string ex = Example();
    std::string text = "schema: " + ex + "/schema.yaml\nfeatures: " + ex + "/features.yaml\npolicy: " +
                       (policy.empty() ? ex + "/policy.yaml" : policy) + "\nmodels:\n" + models +
                       "store: sqlite:var/vigil.db\njournal: var/journal.jsonl\nevent_log: var/eventlog\n"
                       "dead_letter: var/dead-letter.jsonl\n" + rest;
    std::string path = (dir_ / "vigil.yaml").string();
    WriteText(path, text);
    return path;
  }
  // Every scored type on the example's bundle.
  std::string ExampleConfig(const std::string& rest = "") {
    std::string models;
    for (const char* t : {"signup", "deposit", "withdrawal", "trade", "promo_redeem", "api_key_create"})
      models += std::string("  ") + t + ": {champion: {name: exchange, bundle: " + Example() + "/model}}\n";
    return Config(models, "", rest);
  }
  // A copy of the example's bundle at dir_/name.
  std::string CopyModel(const std::string& name) {
    fs::path to = dir_ / name;
    fs::copy(Example() + "/model", to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
    return to.string();
  }
  // Deletes decisions from the store (var/vigil.db), as a crash that lost
  // them before they reached it would leave it: those of `ids`, each of
  // which must be there, or every one when none is given. The number
  // deleted.
  int DeleteStoredDecisions(const std::vector<std::string>& ids = {}) {
    return DeleteStored("decisions", "event_id", ids);
  }
  // The same for labels, by label_id.
  int DeleteStoredLabels(const std::vector<std::string>& ids) {
    return DeleteStored("labels", "label_id", ids);
  }
  int DeleteStored(const std::string& table, const std::string& key,
                   const std::vector<std::string>& ids) {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open((dir_ / "var" / "vigil.db").c_str(), &db), SQLITE_OK);
    int deleted = 0;
    if (ids.empty()) {
      EXPECT_EQ(sqlite3_exec(db, ("DELETE FROM " + table).c_str(), nullptr, nullptr, nullptr),
                SQLITE_OK);
      deleted = sqlite3_changes(db);
    }
    for (const std::string& id : ids) {
      sqlite3_stmt* st = nullptr;
      EXPECT_EQ(sqlite3_prepare_v2(db, ("DELETE FROM " + table + " WHERE " + key + " = ?").c_str(),
                                   -1, &st, nullptr),
                SQLITE_OK);
      sqlite3_bind_text(st, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
      EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
      sqlite3_finalize(st);
      EXPECT_EQ(sqlite3_changes(db), 1) << id << " was not stored";
      deleted += sqlite3_changes(db);
    }
    sqlite3_close(db);
    return deleted;
  }

  std::unique_ptr<Engine> Open(const std::string& config, bool offline = true) {
    EngineOptions o;
    o.config_path = config;
    o.offline = offline;
    auto e = Engine::Open(o);
    EXPECT_TRUE(e.ok()) << e.status();
    return e.ok() ? std::move(*e) : nullptr;
  }

  // Defined with the allocation tests below.
  int64_t MostAllocationsPerDecision(const std::string& rest, const char* what);

  vigil::testing::TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

// --- the sample, in order -------------------------------------------------

TEST_F(EngineTest, DecidesEveryScoredEventOfTheSampleAndAnswersTheOthersUnscored) {
  auto engine = Open(ExampleConfig());
  ASSERT_NE(engine, nullptr);
  const std::set<std::string> scored = {"signup", "deposit", "withdrawal", "trade", "promo_redeem",
                                        "api_key_create"};
  const std::set<std::string> actions = {"allow", "challenge", "review", "block"};
  Decision d;
  int decided = 0, not_scored = 0;
  for (const std::string& line : SampleLines()) {
    ASSERT_TRUE(engine->Decide(line, &d).ok());
    const Json ev = Json::parse(line);
    const std::string type = ev["event_type"];
    SCOPED_TRACE(ev["event_id"].get<std::string>());
    EXPECT_EQ(d.event_id, ev["event_id"]);
    EXPECT_EQ(d.event_type, type);
    EXPECT_EQ(d.http_status, 200);
    Json j = Json::parse(d.json);  // throws, failing the test, if not JSON
    if (scored.count(type)) {
      ++decided;
      ASSERT_EQ(d.status, Decision::Status::kDecided);
      EXPECT_TRUE(actions.count(d.action)) << d.action;
      EXPECT_GE(d.score, 0);
      EXPECT_LE(d.score, 1);
      EXPECT_THAT(d.model, ::testing::StartsWith("exchange@"));
      EXPECT_THAT(d.policy, ::testing::MatchesRegex("exchange@[0-9a-f]{12}"));
      EXPECT_EQ(d.path, "model");
      EXPECT_EQ(d.arm, "exchange");
      EXPECT_EQ(d.propensity, 1);
      EXPECT_EQ(d.reasons.size(), 3u);
      // The documented keys, in the documented order (docs/api.md).
      std::vector<std::string> keys;
      for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
      EXPECT_THAT(
          keys, ::testing::ElementsAre("event_id", "event_type", "scored", "action", "score",
                                       "model", "policy", "reasons", "rules", "decided_by", "path",
                                       "experiment", "shadow", "latency_us"));
      EXPECT_EQ(j["scored"], true);
      EXPECT_EQ(j["action"], d.action);
      EXPECT_DOUBLE_EQ(j["score"].get<double>(), d.score);
      EXPECT_EQ(j["model"], d.model);
      ASSERT_EQ(j["reasons"].size(), 3u);
      for (const Json& r : j["reasons"]) {
        EXPECT_TRUE(r["feature"].is_string());
        EXPECT_TRUE(r["value"].is_number() || r["value"].is_null());
        EXPECT_TRUE(r["contribution"].is_number());
      }
      EXPECT_TRUE(j["rules"].is_array());
      EXPECT_EQ(j["decided_by"], d.decided_by);
      EXPECT_EQ(j["path"], "model");
      EXPECT_EQ(j["experiment"], Json::parse(R"({"arm": "exchange", "propensity": 1, "holdout": false})"));
      EXPECT_EQ(j["shadow"], Json::array());
      EXPECT_TRUE(j["latency_us"].is_number_integer());
      // Every feature is in the decision; the answer has them only when asked.
      EXPECT_EQ(d.features.size(), engine->feature_names().size());
      // A reason shows the feature's value, not the float the trees compare.
      for (const Decision::Reason& r : d.reasons) {
        const auto& names = engine->feature_names();
        const size_t at =
            static_cast<size_t>(std::find(names.begin(), names.end(), r.feature) - names.begin());
        ASSERT_LT(at, names.size()) << r.feature;
        if (std::isnan(d.features[at])) {
          EXPECT_TRUE(std::isnan(r.value)) << r.feature;
        } else {
          EXPECT_EQ(r.value, d.features[at]) << r.feature;
        }
      }
      EXPECT_FALSE(j.contains("features"));
    } else {
      ++not_scored;
      EXPECT_EQ(d.status, Decision::Status::kNotScored);
      EXPECT_EQ(d.action, "");
      EXPECT_TRUE(std::isnan(d.score));
      EXPECT_EQ(j, Json::parse(R"({"event_id": ")" + d.event_id + R"(", "event_type": ")" + type +
                               R"(", "scored": false, "latency_us": )" + std::to_string(d.latency_us) + "}"));
    }
  }
  EXPECT_EQ(decided, 20);
  EXPECT_EQ(not_scored, 10);
  EngineStats s = engine->Stats();
  EXPECT_EQ(s.events, 30);
  EXPECT_EQ(s.decided, 20);
  EXPECT_EQ(s.not_scored, 10);
  EXPECT_EQ(s.labels, 3);
  EXPECT_EQ(s.rejected, 0);
}

// The chargeback on e000000000018 (card c0deadbee) reaches the next deposit
// on that card through the features: the policy's rule blocks it. Without
// the label events the same deposit is not blocked by the rule.
TEST_F(EngineTest, AppliesLabelsToTheFeaturesOfLaterEvents) {
  auto decide_last = [&](bool with_labels) {
    auto engine = Open(ExampleConfig());
    Decision d;
    for (const std::string& line : SampleLines()) {
      if (!with_labels && Json::parse(line)["event_type"] == "label") continue;
      EXPECT_TRUE(engine->Decide(line, &d).ok());
      if (d.event_id == "e000000000029") break;
    }
    return d;
  };
  Decision with = decide_last(true);
  ASSERT_EQ(with.status, Decision::Status::kDecided);
  EXPECT_EQ(with.action, "block");
  EXPECT_EQ(with.decided_by, "rule:card_with_chargeback");
  ASSERT_EQ(with.rules.size(), 1u);
  EXPECT_EQ(with.rules[0].name, "card_with_chargeback");
  EXPECT_EQ(with.rules[0].action, "block");
  EXPECT_THAT(Json::parse(with.json)["rules"][0]["reason"].get<std::string>(), HasSubstr("chargeback"));

  Decision without = decide_last(false);
  ASSERT_EQ(without.status, Decision::Status::kDecided);
  EXPECT_TRUE(without.rules.empty());
  EXPECT_NE(without.decided_by, "rule:card_with_chargeback");
}

// POST /v1/events with a key of role score: a label event is refused (403,
// the API's "forbidden" shape) and nothing of it is kept: not in the
// features, not a label, not in the event log or the dead-letter file, not
// remembered (posted with the right, it is new).
TEST_F(EngineTest, RefusesALabelEventThatMayNotLabelAndKeepsNothingOfIt) {
  auto engine = Open(ExampleConfig(), /*offline=*/false);
  ASSERT_NE(engine, nullptr);
  const std::vector<std::string> lines = SampleLines();
  Decision d;
  for (size_t i = 0; i < 25; ++i) ASSERT_TRUE(engine->Decide(lines[i], &d).ok());
  const std::string label = lines.at(27);  // e000000000028, a chargeback
  ASSERT_EQ(Json::parse(label)["event_type"], "label");

  ASSERT_TRUE(engine->Decide(label, &d, /*with_features=*/false, /*may_label=*/false).ok());
  EXPECT_EQ(d.status, Decision::Status::kRejected);
  EXPECT_EQ(d.http_status, 403);
  EXPECT_EQ(
      Json::parse(d.json),
      Json::parse(
          R"({"error": "forbidden", "message": "a label event needs a key with role label or admin"})"));
  EXPECT_EQ(engine->Stats().labels, 0);
  EXPECT_EQ(engine->Stats().dead_letters, 0);
  ASSERT_TRUE(engine->Flush().ok());
  for (const auto& f : fs::directory_iterator(dir_ / "var/eventlog")) {
    EXPECT_THAT(ReadText(f.path()), ::testing::Not(HasSubstr("e000000000028"))) << f.path();
  }

  ASSERT_TRUE(engine->Decide(label, &d, /*with_features=*/false, /*may_label=*/true).ok());
  EXPECT_EQ(d.status, Decision::Status::kNotScored) << d.json;
  EXPECT_EQ(d.http_status, 200);
  EXPECT_EQ(engine->Stats().labels, 1);
}

TEST_F(EngineTest, AddsEveryFeatureToTheAnswerOnlyWhenAsked) {
  auto engine = Open(ExampleConfig());
  Decision d;
  const auto lines = SampleLines();
  ASSERT_TRUE(engine->Decide(lines[0], &d, /*with_features=*/true).ok());
  Json j = Json::parse(d.json);
  ASSERT_TRUE(j.contains("features"));
  ASSERT_EQ(j["features"].size(), engine->feature_names().size());
  for (const std::string& name : engine->feature_names()) EXPECT_TRUE(j["features"].contains(name)) << name;
  // A missing feature is null; it is NaN in Decision::features.
  ASSERT_EQ(d.features.size(), engine->feature_names().size());
  for (size_t i = 0; i < d.features.size(); ++i) {
    const Json& v = j["features"][engine->feature_names()[i]];
    if (std::isnan(d.features[i])) {
      EXPECT_TRUE(v.is_null());
    } else {
      EXPECT_DOUBLE_EQ(v.get<double>(), d.features[i]);
    }
  }
  ASSERT_TRUE(engine->Decide(lines[3], &d).ok());
  EXPECT_FALSE(Json::parse(d.json).contains("features"));
}

// A live server refuses an event stamped in the future (limits:
// max_ahead_of_clock_s, 5 minutes by default): accepted, it would move the
// latest time seen, and the schema's 1-hour bound behind it would then
// refuse every real event for as long as it is ahead.
TEST_F(EngineTest, ALiveServerRefusesAnEventFromTheFutureAndGoesOnWithTheRest) {
  auto engine = Open(ExampleConfig(), /*offline=*/false);
  ASSERT_NE(engine, nullptr);
  const int64_t now = core::WallNowMs();
  auto at = [](int n, int64_t t_ms) {
    Json ev = SampleEvent(4);
    ev["event_id"] = EventId(800000 + n);
    ev["time"] = core::FormatTimestamp(t_ms);
    return ev.dump();
  };
  Decision d;
  ASSERT_TRUE(engine->Decide(at(1, now - 60000), &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kDecided) << d.error;
  ASSERT_TRUE(engine->Decide(at(2, now + 2 * 3600000), &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kRejected);
  EXPECT_EQ(d.http_status, 400);
  EXPECT_THAT(d.error, HasSubstr("ahead of the wall clock"));
  EXPECT_THAT(d.json, HasSubstr("limits.max_ahead_of_clock_s"));
  ASSERT_TRUE(engine->Decide(at(3, now - 30000), &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kDecided) << d.error;
}

// A live server takes events up again after a pause longer than the
// schema's max_ahead_of_latest (1d): its clock vouches for them. Its replay
// at the next start takes every event it took.
TEST_F(EngineTest, ALiveServerResumesAfterAPauseAndItsReplayTakesEveryEventItTook) {
  const std::string config = ExampleConfig();
  const int64_t now = core::WallNowMs();
  auto at = [](int n, int64_t t_ms) {
    Json ev = SampleEvent(4);
    ev["event_id"] = EventId(810000 + n);
    ev["time"] = core::FormatTimestamp(t_ms);
    return ev.dump();
  };
  {
    auto engine = Open(config, /*offline=*/false);
    ASSERT_NE(engine, nullptr);
    Decision d;
    ASSERT_TRUE(engine->Decide(at(1, now - 30 * 86400000LL), &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kDecided) << d.error;
    ASSERT_TRUE(engine->Decide(at(2, now - 60000), &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kDecided) << d.error;
    ASSERT_TRUE(engine->Decide(at(3, now - 30000), &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kDecided) << d.error;
  }
  auto engine = Open(config, /*offline=*/false);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(engine->Stats().replayed, 3);
  EXPECT_EQ(engine->Stats().replay_rejected, 0);
}

TEST_F(EngineTest, RejectsAnInvalidEventWithEveryViolationAndLeavesTheStateAlone) {
  auto engine = Open(ExampleConfig());
  Decision d;
  ASSERT_TRUE(engine->Decide(
      R"({"event_id": "e900000000003", "event_type": "deposit", "time": "2024-03-01T10:02:00.000Z", "user_id": "u9000001", "method": "card", "amount": "-5", "asset": "EUR", "amount_usd": "-5.4", "device_id": "d9a2b3c4d", "ip": "81.23.45.67"})",
      &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kRejected);
  EXPECT_EQ(d.http_status, 400);
  EXPECT_EQ(d.event_id, "e900000000003");
  EXPECT_THAT(d.error, HasSubstr("field 'amount': rule min"));
  Json j = Json::parse(d.json);
  EXPECT_EQ(j["error"], "invalid_event");
  EXPECT_EQ(j["violations"].size(), 4u);

  ASSERT_TRUE(engine->Decide("not json", &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kRejected);
  EXPECT_EQ(Json::parse(d.json)["error"], "invalid_event");
  EXPECT_EQ(engine->Stats().rejected, 2);
  EXPECT_EQ(engine->Stats().decided, 0);
}

// A retried scored event whose decision is not stored (lost in a crash
// before it reached the store; here deleted from it) is not applied again,
// and is answered 409 decision_unavailable, never as an unscored event.
TEST_F(EngineTest, ARetriedScoredEventWhoseDecisionIsGoneIsAnswered409NotUnscored) {
  const std::string config = ExampleConfig();
  const std::vector<std::string> lines = SampleLines();
  const std::string scored = lines.at(3), unscored = lines.at(1);  // a deposit, a login
  std::string id;
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (const std::string& l : lines) ASSERT_TRUE(e->Decide(l, &d).ok());
    ASSERT_TRUE(e->Decide(scored, &d).ok());
    ASSERT_EQ(d.status, Decision::Status::kRetry);
    EXPECT_EQ(d.http_status, 200) << "still remembered";
    id = Json::parse(scored)["event_id"];
    ASSERT_TRUE(e->Flush().ok());
  }
  DeleteStoredDecisions({id});
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  Decision d;
  ASSERT_TRUE(e->Decide(scored, &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kRetry);
  EXPECT_EQ(d.http_status, 409);
  Json j = Json::parse(d.json);
  EXPECT_EQ(j["error"], "decision_unavailable");
  EXPECT_EQ(j["scored"], true);
  EXPECT_EQ(j["event_id"], id);
  ASSERT_TRUE(e->Decide(unscored, &d).ok());
  EXPECT_EQ(d.http_status, 200);
  EXPECT_EQ(Json::parse(d.json)["scored"], false);
  const EngineStats s = e->Stats();
  EXPECT_EQ(s.retries, 2);
  EXPECT_EQ(s.retries_unavailable, 1);
  EXPECT_EQ(s.decided, 0) << "nothing decided again";
}

// Offline (vigil decide: no store), a scored id seen again beyond the retry
// memory is a duplicate in the file, not a decision lost in a crash.
TEST_F(EngineTest, OfflineAScoredIdSeenAgainIsAnsweredAsARetryNot409) {
  auto e = Open(ExampleConfig("limits: {recent_decisions: 0}\n"));
  ASSERT_NE(e, nullptr);
  const std::string scored = SampleLines().at(3);
  Decision d;
  ASSERT_TRUE(e->Decide(scored, &d).ok());
  ASSERT_EQ(d.status, Decision::Status::kDecided);
  ASSERT_TRUE(e->Decide(scored, &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kRetry);
  EXPECT_EQ(d.http_status, 200);
  EXPECT_EQ(e->Stats().retries_unavailable, 0);
}

// Labels lost in a crash (answered, still queued for the store) are stored
// at the next start from the event log, as lost decisions are made again:
// those after the store's last decision that the store does not hold.
TEST_F(EngineTest, LabelsLostInACrashAreStoredFromTheEventLogAtTheNextStart) {
  const std::string config = ExampleConfig();
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (const std::string& l : SampleLines()) ASSERT_TRUE(e->Decide(l, &d).ok());
    ASSERT_TRUE(e->Flush().ok());
  }
  // The sample: the withdrawal e25 (scored), labels e26 (of e25), e27 (of a
  // user) and e28 (of e18), then the deposits e29 and e30. The crash lost
  // the two deposits' decisions and two of the labels.
  ASSERT_EQ(SampleEvent(26)["event_type"], "label");
  ASSERT_EQ(SampleEvent(26)["target_event_id"], "e000000000025");
  DeleteStoredDecisions({"e000000000029", "e000000000030"});
  DeleteStoredLabels({"e000000000026", "e000000000027"});
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->Stats().decisions_recovered, 2);
  EXPECT_EQ(e->Stats().labels_recovered, 2) << "e28 was stored: not again";
  EXPECT_EQ(e->Stats().labels, 0) << "none received by this run";
  ASSERT_TRUE(e->Flush().ok());
  auto doc = e->GetDecision("e000000000025");
  ASSERT_TRUE(doc.ok()) << doc.status();
  const Json labels = Json::parse(*doc)["labels"];
  ASSERT_EQ(labels.size(), 1u) << *doc;
  EXPECT_EQ(labels[0]["kind"], "account_takeover");
}

// Labels the journal holds at start (the store was down when the process
// stopped) are not lost: the journal's replay stores them, and they are not
// stored again nor counted as recovered.
TEST_F(EngineTest, LabelsInTheJournalAtStartAreNotTakenForLost) {
  const std::string config = ExampleConfig();
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    sqlite3* lock = nullptr;  // another process holding the store's write lock
    ASSERT_EQ(sqlite3_open((dir_ / "var" / "vigil.db").c_str(), &lock), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(lock, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
    Decision d;
    for (const std::string& l : SampleLines()) ASSERT_TRUE(e->Decide(l, &d).ok());
    e.reset();  // the queue goes to the journal
    sqlite3_exec(lock, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(lock);
  }
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->Stats().labels_recovered, 0);
  EXPECT_EQ(e->Stats().decisions_recovered, 0);
  ASSERT_TRUE(e->Flush().ok());
  auto doc = e->GetDecision("e000000000025");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ(Json::parse(*doc)["labels"].size(), 1u) << *doc;
}

// Decisions lost in a crash (still queued for the store; here deleted from
// it after the fact) are made again at the next start, while the replay of
// the event log passes their events: the same action, score, model and
// reasons as answered, marked "recovered". Only those after the decision
// the store took last are looked for.
TEST_F(EngineTest, DecisionsLostInACrashAreMadeAgainFromTheEventLogAtTheNextStart) {
  const std::string config = ExampleConfig();
  std::vector<std::pair<std::string, Json>> answered;  // scored, in order
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (const std::string& l : SampleLines()) {
      ASSERT_TRUE(e->Decide(l, &d).ok());
      if (d.status == Decision::Status::kDecided)
        answered.emplace_back(d.event_id, Json::parse(d.json));
    }
    ASSERT_TRUE(e->Flush().ok());
    // Destroyed without SaveState: a crash, as far as the state goes.
  }
  ASSERT_GE(answered.size(), 6u);
  const size_t lost = 3;
  std::vector<std::string> lost_ids;
  for (size_t i = answered.size() - lost; i < answered.size(); ++i)
    lost_ids.push_back(answered[i].first);
  DeleteStoredDecisions(lost_ids);
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->Stats().decisions_recovered, static_cast<int64_t>(lost));
  EXPECT_EQ(e->Stats().recovered_warning, "") << "the same model as before the crash";
  EXPECT_EQ(e->Stats().decided, 0);
  for (size_t i = 0; i < answered.size(); ++i) {
    const auto& [id, first] = answered[i];
    auto doc = e->GetDecision(id);
    ASSERT_TRUE(doc.ok()) << id << ": " << doc.status();
    const Json j = Json::parse(*doc);
    const bool was_lost = i >= answered.size() - lost;
    EXPECT_EQ(j.value("recovered", false), was_lost) << id;
    for (const char* k : {"action", "score", "model", "reasons", "rules", "experiment", "path"}) {
      EXPECT_EQ(j[k], first[k]) << id << " " << k;
    }
  }
  // A retry of one is answered with it (from the retry memory).
  for (const std::string& l : SampleLines()) {
    if (Json::parse(l)["event_id"] != answered.back().first) continue;
    Decision d;
    ASSERT_TRUE(e->Decide(l, &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kRetry);
    EXPECT_EQ(d.http_status, 200);
    EXPECT_EQ(Json::parse(d.json)["action"], answered.back().second["action"]);
  }
}

// When the store's last decision lies inside the state saved before the
// crash, every scored event replayed after that state is looked for. The
// state knows it by the decision's id while the id is among those it
// remembers, else by its time: here the schema remembers none
// (duplicates.memory: 0, so no model of the example fits: rules only).
TEST_F(EngineTest, AStoresLastDecisionInsideTheSavedStateIsFoundByItsTimeWhenItsIdIsForgotten) {
  std::string schema = ReadText(Example() + "/schema.yaml");
  const size_t at = schema.find("memory: 5000000");
  ASSERT_NE(at, std::string::npos);
  schema.replace(at, 15, "memory: 0");
  WriteText((dir_ / "schema.yaml").string(), schema);
  const std::string config = (dir_ / "vigil.yaml").string();
  WriteText(config,
            "schema: " + (dir_ / "schema.yaml").string() + "\nfeatures: " + Example() +
                "/features.yaml\npolicy: " + Example() +
                "/policy.yaml\nmodels: {}\nstore: sqlite:var/vigil.db\njournal: var/journal.jsonl\n"
                "event_log: var/eventlog\ndead_letter: var/dead-letter.jsonl\n");
  const std::vector<std::string> lines = SampleLines();
  const size_t half = lines.size() / 2;
  std::vector<std::string> before, after;  // scored, each side of the saved state
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (i == half) {
        ASSERT_TRUE(e->SaveState().ok());
      }
      ASSERT_TRUE(e->Decide(lines[i], &d).ok());
      ASSERT_NE(d.status, Decision::Status::kRejected) << d.json;
      if (d.status == Decision::Status::kDecided) (i < half ? before : after).push_back(d.event_id);
    }
    ASSERT_TRUE(e->Flush().ok());
    // Destroyed without SaveState: a crash, as far as the state goes.
  }
  ASSERT_GE(before.size(), 2u);
  ASSERT_GE(after.size(), 2u);
  // Lost: the last decision before the saved state and all those after.
  std::vector<std::string> lost = after;
  lost.push_back(before.back());
  DeleteStoredDecisions(lost);
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  const EngineStats s = e->Stats();
  ASSERT_TRUE(s.state_restored) << s.state_not_used;
  // Those after the state are made again; the one inside it is not (its
  // event is not replayed).
  EXPECT_EQ(s.decisions_recovered, static_cast<int64_t>(after.size()));
  for (const std::string& id : after) {
    auto doc = e->GetDecision(id);
    ASSERT_TRUE(doc.ok()) << id << ": " << doc.status();
    EXPECT_TRUE(Json::parse(*doc).value("recovered", false)) << id;
  }
}

// A store that took no decision before the crash (down, or its writer at
// idle priority got no time) has lost every one: all are made again.
TEST_F(EngineTest, WhenTheStoreTookNoDecisionBeforeTheCrashEveryOneIsMadeAgain) {
  const std::string config = ExampleConfig();
  int64_t scored = 0;
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (const std::string& l : SampleLines()) {
      ASSERT_TRUE(e->Decide(l, &d).ok());
      scored += d.status == Decision::Status::kDecided;
    }
    ASSERT_TRUE(e->Flush().ok());
  }
  EXPECT_EQ(DeleteStoredDecisions(), scored);
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  EXPECT_GT(scored, 0);
  EXPECT_EQ(e->Stats().decisions_recovered, scored);
  ASSERT_TRUE(e->Flush().ok());
  EXPECT_EQ(e->Stats().decisions_stored, scored);
  // Their rules fired in the run that answered them, and counted there: not
  // again in this one.
  auto doc = e->GetDecision("e000000000025");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_FALSE(Json::parse(*doc)["rules"].empty()) << "the sample's takeover fires a rule";
  for (const RuleHits& r : e->RuleHitCounts())
    EXPECT_EQ(r.hits, 0) << r.event_type << " " << r.rule;
}

TEST_F(EngineTest, AnswersARetriedIdWithTheFirstDecisionAndDoesNotCountItTwice) {
  auto engine = Open(ExampleConfig());
  const auto lines = SampleLines();
  Decision first, again;
  ASSERT_TRUE(engine->Decide(lines[0], &first).ok());
  const auto& names = engine->feature_names();
  const size_t ip_signups = static_cast<size_t>(std::find(names.begin(), names.end(), "ip_signups_1d") - names.begin());
  ASSERT_LT(ip_signups, names.size());
  const double ip_signups_before = first.features[ip_signups];
  ASSERT_TRUE(engine->Decide(lines[0], &again).ok());
  EXPECT_EQ(again.status, Decision::Status::kRetry);
  EXPECT_EQ(again.json, first.json);
  // In its fields too: code that reads `action` sees a retried block.
  ASSERT_FALSE(first.action.empty());
  EXPECT_EQ(again.action, first.action);
  EXPECT_EQ(again.score, first.score);
  EXPECT_EQ(again.model, first.model);
  // The state was not updated again: the same event a second time under a
  // new id sees one more sign-up from its IP than the first did.
  Json ev = Json::parse(lines[0]);
  ev["event_id"] = EventId(900000000100);
  ev["user_id"] = UserId(9000100);
  ASSERT_TRUE(engine->Decide(ev.dump(), &again).ok());
  ASSERT_EQ(again.status, Decision::Status::kDecided);
  EXPECT_EQ(again.features[ip_signups], ip_signups_before + 1);
  EXPECT_EQ(engine->Stats().retries, 1);
  EXPECT_EQ(engine->Stats().decided, 2);
  // An id names one event: another type under the sign-up's id is no retry
  // of it, and is not applied either.
  Json other = Json::parse(lines[1]);
  ASSERT_NE(other["event_type"], Json::parse(lines[0])["event_type"]);
  other["event_id"] = Json::parse(lines[0])["event_id"];
  ASSERT_TRUE(engine->Decide(other.dump(), &again).ok());
  EXPECT_EQ(again.status, Decision::Status::kRetry);
  EXPECT_EQ(again.http_status, 409);
  EXPECT_EQ(Json::parse(again.json)["error"], "event_id_taken") << again.json;
  EXPECT_EQ(again.action, "");
  EXPECT_TRUE(std::isnan(again.score));
  EXPECT_EQ(engine->Stats().decided, 2);
}

// An unscored event has no stored decision to compare a retry with: the
// type its id was remembered with tells a retry from another event under
// that id, a scored one or a label, which would otherwise be answered as a
// retry and lost.
TEST_F(EngineTest, AnotherTypeUnderAnUnscoredEventsIdIsRefusedAsTaken) {
  auto engine = Open(ExampleConfig());
  const auto lines = SampleLines();
  auto of_type = [&](std::string_view type) {
    for (const auto& l : lines) {
      Json j = Json::parse(l);
      if (j["event_type"] == type) return j;
    }
    ADD_FAILURE() << "no " << type << " in the sample";
    return Json::object();
  };
  Json login = of_type("login"), deposit = of_type("deposit"), label = of_type("label");
  login["event_id"] = EventId(900000000200);
  Decision d;
  ASSERT_TRUE(engine->Decide(login.dump(), &d).ok());
  ASSERT_EQ(d.status, Decision::Status::kNotScored) << d.json;
  // The same login again: a retry, 200, of no decision.
  ASSERT_TRUE(engine->Decide(login.dump(), &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kRetry);
  EXPECT_EQ(d.http_status, 200) << d.json;
  EXPECT_EQ(d.action, "");
  for (Json other : {deposit, label}) {
    other["event_id"] = login["event_id"];
    ASSERT_TRUE(engine->Decide(other.dump(), &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kRetry);
    EXPECT_EQ(d.http_status, 409) << other["event_type"] << ": " << d.json;
    EXPECT_EQ(Json::parse(d.json)["error"], "event_id_taken") << d.json;
  }
  EXPECT_EQ(engine->Stats().decided, 0);
  EXPECT_EQ(engine->Stats().retries, 3);
}

// Runs `body` in a child process of its own, for a file size limit (which
// is the whole process's), and returns its exit code: 0 when every step
// held, else the number `body` returned for the step that failed. Writes
// past the limit fail with EFBIG there (SIGXFSZ is ignored).
int InChildProcess(const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    _exit(body());
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// The engine of `config` with its store and logs (offline: false).
absl::StatusOr<std::unique_ptr<Engine>> OpenOnline(const std::string& config) {
  EngineOptions o;
  o.config_path = config;
  o.offline = false;
  return Engine::Open(o);
}

// Online: the store, the decision log and the event log in the temporary folder.
// An event the event log cannot take (the disk is full: here a file size
// limit, in a child process of its own) is refused, not applied, and not
// remembered: sent again once there is room, it is decided, and the log
// holds it once.
TEST_F(EngineTest, AnEventTheEventLogHasNoRoomForIsRefusedAndDecidedWhenSentAgain) {
  const std::string config = ExampleConfig();
  const std::string event = LaterEventForDiskTest();
  const int failed_step = InChildProcess([&] {
    auto e = OpenOnline(config);
    if (!e.ok()) return 10;
    Decision d;
    for (const std::string& l : SampleLines()) {
      if (!(*e)->Decide(l, &d).ok()) return 11;
    }
    rlimit lim{10, RLIM_INFINITY};  // no room for a line, in this file or a new one
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return 12;
    for (int i = 0; i < 2; ++i) {  // refused twice: the first was not taken for a duplicate
      const absl::Status st = (*e)->Decide(event, &d);
      if (st.code() != absl::StatusCode::kUnavailable) return 13;
      if (st.message().find("File too large") == std::string_view::npos) return 14;
    }
    // Reported, and still ready: the disk has room, so the next event retries.
    EngineStats s = (*e)->Stats();
    if (s.event_log_errors != 2 || s.event_log_error.find("File too large") == std::string::npos) return 15;
    if (!(*e)->Ready().ok()) return 16;
    lim.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return 17;
    if (!(*e)->Decide(event, &d).ok() || d.status != Decision::Status::kDecided) return 18;
    if (!(*e)->Stats().event_log_error.empty()) return 19;  // a write succeeded again
    if (!(*e)->Decide(event, &d).ok() || d.status != Decision::Status::kRetry) return 20;
    int times = 0;
    for (const auto& f : fs::directory_iterator(dir_ / "var" / "eventlog")) {
      if (f.path().extension() != ".jsonl") continue;
      std::ifstream in(f.path());
      for (std::string l; std::getline(in, l);) times += l.find("\"e000000009999\"") != std::string::npos;
    }
    return times == 1 ? 0 : 21;
  });
  EXPECT_EQ(failed_step, 0) << "the step that failed: see the numbers the test returns";
}

// A disk that really fills (a small tmpfs in a mount namespace of the test's
// own child). With no inode left vigil does not start, saying why. Started,
// when a line finds no block, or the next file (after a file size limit) no
// inode, each event is answered 503 and not applied, and Ready() says the
// disk is full; once there is room again the next event is decided and
// logged once, and Ready() is fine. Needs the right to mount (root, as CI
// runs); skipped, saying so, without it.
TEST_F(EngineTest, OnAFullDiskEventsAre503dReadySaysSoAndBothRecoverWithRoom) {
  const std::string config = ExampleConfig();
  const fs::path log_dir = dir_ / "var" / "eventlog";
  fs::create_directories(log_dir);
  const std::string event = SampleLines().at(3);
  const int failed_step = InChildProcess([&] {
    if (unshare(CLONE_NEWNS) != 0) return 100;
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 100;
    if (mount("tmpfs", log_dir.c_str(), "tmpfs", 0, "size=64k,nr_inodes=16") != 0) return 100;
    int fillers = 0;
    auto fill_inodes = [&] {
      for (;; ++fillers) {
        const int fd = ::open((log_dir / ("filler-" + std::to_string(fillers))).c_str(),
                              O_CREAT | O_WRONLY, 0600);
        if (fd < 0) return errno == ENOSPC;
        ::close(fd);
      }
    };
    auto free_inode = [&] {
      return ::unlink((log_dir / ("filler-" + std::to_string(--fillers))).c_str()) == 0;
    };
    if (!fill_inodes()) return 10;
    auto refused = OpenOnline(config);
    if (refused.ok()) return 11;
    // (The first file a start makes is the log's id, .log-id.)
    if (refused.status().message().find(".log-id") == std::string_view::npos ||
        refused.status().message().find("No space left on device") == std::string_view::npos) {
      return 12;
    }
    if (!free_inode()) return 13;
    if (!free_inode()) return 13;  // the id, and the first events file
    auto e = OpenOnline(config);
    if (!e.ok()) return 14;
    Decision d;
    // One line in the file: a file size limit then starts another.
    if (!(*e)->Decide(SampleLines().at(0), &d).ok() || d.status != Decision::Status::kDecided)
      return 30;
    if (!fill_inodes()) return 15;
    {
      const int fd = ::open((log_dir / "filler-0").c_str(), O_WRONLY);
      const std::string block(4096, 'x');
      while (::write(fd, block.data(), block.size()) > 0) {
      }
      ::close(fd);
    }
    auto refused_with = [&](absl::string_view why) {
      const absl::Status st = (*e)->Decide(event, &d);
      return st.code() == absl::StatusCode::kUnavailable &&
             st.message().find(why) != std::string_view::npos;
    };
    // The events file's last page may still have room: other events fill it.
    int filled = 0;
    for (int i = 0; i < 64; ++i) {
      Json other = SampleEvent(4);
      other["event_id"] = EventId(700000 + i);
      if ((*e)->Decide(other.dump(), &d).code() == absl::StatusCode::kUnavailable) break;
      ++filled;
    }
    if (filled == 64) return 31;
    auto not_ready = [&] {
      const absl::Status r = (*e)->Ready();
      return r.code() == absl::StatusCode::kUnavailable &&
             r.message().find("disk is full") != std::string_view::npos;
    };
    // No block: the line does not fit.
    if (!refused_with("No space left on device") || !refused_with("No space left on device"))
      return 16;
    if (!not_ready()) return 17;
    // Blocks again, but a file size limit: the next line starts a new file,
    // for which there is no inode.
    if (::truncate((log_dir / "filler-0").c_str(), 0) != 0) return 18;
    rlimit lim{10, RLIM_INFINITY};
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return 19;
    if (!refused_with("File too large")) return 20;
    lim.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return 21;
    if (!refused_with("No space left on device")) return 22;
    if (!not_ready()) return 23;
    if ((*e)->Stats().event_log_errors != 5) return 24;
    // Room: an inode.
    if (!free_inode()) return 25;
    if (!(*e)->Decide(event, &d).ok() || d.status != Decision::Status::kDecided) return 26;
    if (!(*e)->Ready().ok()) return 27;
    if (!(*e)->Decide(event, &d).ok() || d.status != Decision::Status::kRetry) return 28;
    int times = 0;
    for (const auto& f : fs::directory_iterator(log_dir)) {
      if (f.path().extension() != ".jsonl") continue;
      std::ifstream in(f.path());
      for (std::string l; std::getline(in, l);)
        times += l.find(Json::parse(event)["event_id"].get<std::string>()) != std::string::npos;
    }
    return times == 1 ? 0 : 29;
  });
  if (failed_step == 100) GTEST_SKIP() << "this machine does not let the test mount a small tmpfs";
  EXPECT_EQ(failed_step, 0) << "the step that failed: see the numbers the test returns";
}

// Rejected events reach the dead-letter file at once (they survive a
// crash), are appended to it across restarts, and one the file cannot take
// (no room) is counted, leaving whole lines; the client's 400 is the same.
TEST_F(EngineTest, RejectedEventsReachTheDeadLetterFileAtOnceAcrossRestartsAndAFailedOneIsCounted) {
  const std::string config = ExampleConfig();
  const fs::path dead = dir_ / "var" / "dead-letter.jsonl";
  auto invalid = [](const char* id) {
    Json ev = SampleEvent(4);
    ev["event_id"] = id;
    ev["time"] = "not a time";
    return ev.dump();
  };
  auto lines = [&] {
    std::vector<std::string> ids;
    std::ifstream in(dead);
    for (std::string l; std::getline(in, l);) ids.push_back(Json::parse(l).value("event_id", ""));
    return ids;
  };
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    ASSERT_TRUE(e->Decide(invalid("e000000000901"), &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kRejected);
    EXPECT_EQ(lines(), std::vector<std::string>{"e000000000901"}) << "written before the engine closes";
    EXPECT_EQ(e->Stats().dead_letters, 1);
  }
  const int failed_step = InChildProcess([&] {
    auto e = OpenOnline(config);
    if (!e.ok()) return 10;
    Decision d;
    if (lines() != std::vector<std::string>{"e000000000901"}) return 11;  // kept across the restart
    rlimit lim{static_cast<rlim_t>(fs::file_size(dead)) + 10, RLIM_INFINITY};  // no room for a line
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return 12;
    if (!(*e)->Decide(invalid("e000000000902"), &d).ok() || d.status != Decision::Status::kRejected) return 13;
    const EngineStats s = (*e)->Stats();
    if (s.dead_letters != 0 || s.dead_letters_dropped != 1) return 14;
    if (s.dead_letter_error.find("File too large") == std::string::npos) return 15;
    lim.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) return 16;
    if (!(*e)->Decide(invalid("e000000000903"), &d).ok()) return 17;
    // Whole lines: the half of 902 that fitted was cut away.
    if (lines() != std::vector<std::string>{"e000000000901", "e000000000903"}) return 18;
    return (*e)->Stats().dead_letters == 1 ? 0 : 19;
  });
  EXPECT_EQ(failed_step, 0) << "the step that failed: see the numbers the test returns";
}

// Dead letters, one JSON object a line.
std::vector<Json> DeadLetters(const fs::path& path) {
  std::vector<Json> out;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) out.push_back(Json::parse(l));
  return out;
}

// Before its type is known the id field is not, yet a string event_id still
// names the event: in the answer and in the dead letter.
TEST_F(EngineTest, AnEventWithoutAKnownTypeIsNamedByItsEventIdInTheAnswerAndTheDeadLetter) {
  auto engine = Open(ExampleConfig(), /*offline=*/false);
  ASSERT_NE(engine, nullptr);
  const std::vector<std::pair<std::string, Json>> cases = {
      {R"({"event_id": "e000000000911", "time": "2024-01-03T00:00:00.000Z"})", "e000000000911"},
      {R"({"event_id": "e000000000912", "event_type": "transfer"})", "e000000000912"},
      {R"({"event_type": 5, "event_id": "e000000000913"})", "e000000000913"},
      {R"({"event_id": 914, "event_type": "transfer"})", nullptr},  // not a string: no id
  };
  Decision d;
  for (const auto& [body, id] : cases) {
    SCOPED_TRACE(body);
    ASSERT_TRUE(engine->Decide(body, &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kRejected);
    EXPECT_EQ(d.http_status, 400);
    const Json answer = Json::parse(d.json);
    EXPECT_EQ(answer["violations"][0]["field"], "event_type");
    if (id.is_null()) {
      EXPECT_FALSE(answer.contains("event_id")) << d.json;
    } else {
      EXPECT_EQ(d.event_id, id);
      EXPECT_EQ(answer["event_id"], id) << d.json;
    }
  }
  const std::vector<Json> dead = DeadLetters(dir_ / "var" / "dead-letter.jsonl");
  ASSERT_EQ(dead.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(dead[i]["event_id"], cases[i].second) << dead[i];
    EXPECT_EQ(dead[i]["field"], "event_type") << dead[i];
  }
}

// A batch or label body that holds no events is one dead letter: the reason,
// the body with its pii masked, cut at max_record_bytes (16384 in the example).
TEST_F(EngineTest, ABodyThatHoldsNoEventsIsOneDeadLetterMaskedAndCut) {
  auto engine = Open(ExampleConfig(), /*offline=*/false);
  ASSERT_NE(engine, nullptr);
  const std::string bad = R"([{"event_id": "e1", "email": "ann@gmail.com",])";
  engine->RejectBody(bad, "POST /v1/events:batch", "the body is not valid JSON");
  const std::string big = "[" + std::string(20000, ' ') + "5]";
  engine->RejectBody(big, "POST /v1/labels", "element 0 of the array is not an object");

  const std::vector<Json> dead = DeadLetters(dir_ / "var" / "dead-letter.jsonl");
  ASSERT_EQ(dead.size(), 2u);
  EXPECT_EQ(dead[0]["file"], "POST /v1/events:batch");
  EXPECT_EQ(dead[0]["rule"], "malformed_json");
  EXPECT_EQ(dead[0]["reason"], "the body is not valid JSON");
  EXPECT_TRUE(dead[0]["event_id"].is_null());
  const std::string raw = dead[0]["raw"].get<std::string>();
  EXPECT_THAT(raw, HasSubstr(R"("event_id": "e1")"));
  EXPECT_THAT(raw, Not(HasSubstr("ann@gmail.com")));
  EXPECT_THAT(raw, HasSubstr("hmac:"));
  EXPECT_FALSE(dead[0].contains("raw_truncated"));

  EXPECT_EQ(dead[1]["file"], "POST /v1/labels");
  EXPECT_EQ(dead[1]["reason"], "element 0 of the array is not an object");
  EXPECT_EQ(dead[1]["raw"].get<std::string>().size(), 16384u);
  EXPECT_EQ(dead[1]["raw_truncated"], true);
  EXPECT_EQ(dead[1]["raw_bytes"], big.size());

  const EngineStats st = engine->Stats();
  EXPECT_EQ(st.dead_letters, 2);
  EXPECT_EQ(st.events, 0) << "a body is not an event";
  EXPECT_EQ(st.rejected, 0);
}

// GET /readyz's rule for the event log: not ready once it has stopped, or
// while its disk is full; ready when it is short of room but has room again.
TEST(ReadinessTest, TheEventLogIsNotReadyWhenStoppedOrItsDiskIsFull) {
  const std::string err = "events.jsonl: cannot write the event log: No space left on device";
  const absl::Status stopped = serve::EventLogReadiness(true, true, 1ull << 30, err);
  EXPECT_EQ(stopped.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(stopped), HasSubstr("restart vigil serve"));
  EXPECT_THAT(Msg(stopped), HasSubstr("No space left"));
  const absl::Status full = serve::EventLogReadiness(false, true, 4096, err);
  EXPECT_EQ(full.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(full), HasSubstr("disk is full"));
  EXPECT_THAT(Msg(full), HasSubstr("4096 bytes free"));
  EXPECT_TRUE(serve::EventLogReadiness(false, true, 2u << 20, err).ok());
  EXPECT_TRUE(serve::EventLogReadiness(false, false, 0, err).ok()) << "free space unknown: try";
  // Bytes free but no inode: no new file can be made.
  const absl::Status no_inode = serve::EventLogReadiness(false, true, 50u << 20, err, true, 0);
  EXPECT_EQ(no_inode.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Msg(no_inode), HasSubstr("no inode free"));
  EXPECT_TRUE(serve::EventLogReadiness(false, true, 50u << 20, err, true, 3).ok());
  EXPECT_TRUE(serve::EventLogReadiness(false, true, 50u << 20, err, false, 0).ok())
      << "inodes not counted";
}

// --- restarts ---------------------------------------------------------------

// A stop saves the state; the next start restores it and replays only the
// event log written since, the rest of the file it ended in included. Its
// features are those of a server that never stopped; a saved state that no
// longer fits is not used, and says why.
// Scored events after the sample (a deposit, trade, withdrawal...): what
// the restarted servers of the restart tests decide.
std::string LaterEvent(int i) {
  const int scored[] = {4, 5, 6, 16, 19};
  Json ev = SampleEvent(scored[i % 5]);
  ev["event_id"] = EventId(5000 + i);
  ev["time"] = Time(i * 600);
  return ev.dump();
}

// The reference of the restart tests: the features of LaterEvent(0..n-1)
// from a server that never stops, run on a copy of `config` in its own
// folder after the sample.
class RestartTest : public EngineTest {
 protected:
  void NeverStopped(const std::string& config, int n) {
    fs::create_directories(dir_ / "ref");
    fs::copy_file(config, dir_ / "ref" / "vigil.yaml");
    auto ref = Open((dir_ / "ref" / "vigil.yaml").string(), /*offline=*/false);
    ASSERT_NE(ref, nullptr);
    Decision d;
    for (const std::string& l : SampleLines()) ASSERT_TRUE(ref->Decide(l, &d).ok());
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(ref->Decide(LaterEvent(i), &d).ok());
      ASSERT_EQ(d.status, Decision::Status::kDecided) << d.error;
      want_.push_back(d.features);
    }
  }
  // Decides the sample, then LaterEvent(0..n-1) with the reference's features.
  void DecideSampleThenLater(Engine& e, int n) {
    Decision d;
    for (const std::string& l : SampleLines()) ASSERT_TRUE(e.Decide(l, &d).ok());
    for (int i = 0; i < n; ++i) ExpectFeatures(e, i);
  }
  // Replaces the event_log line of vigil.yaml `config` with `value`.
  void SetEventLog(const std::string& config, const std::string& value) {
    std::string text = ReadText(config);
    const std::string plain = "event_log: var/eventlog\n";
    ASSERT_NE(text.find(plain), std::string::npos);
    text.replace(text.find(plain), plain.size(), "event_log: " + value + "\n");
    WriteText(config, text);
  }
  // Decides LaterEvent(i) on `e`: the reference's features, bit for bit.
  void ExpectFeatures(Engine& e, int i) {
    Decision d;
    ASSERT_TRUE(e.Decide(LaterEvent(i), &d).ok());
    ASSERT_EQ(d.status, Decision::Status::kDecided) << d.error;
    const std::vector<double>& want = want_.at(static_cast<size_t>(i));
    ASSERT_EQ(d.features.size(), want.size());
    for (size_t f = 0; f < d.features.size(); ++f) {
      const double a = d.features[f], b = want[f];
      EXPECT_TRUE(a == b || (std::isnan(a) && std::isnan(b))) << "event " << i << " " << e.feature_names()[f];
    }
  }
  std::vector<std::vector<double>> want_;
};

TEST_F(RestartTest, RestartsFromTheSavedStateAndReplaysOnlyTheLogWrittenSince) {
  const std::vector<std::string> sample = SampleLines();
  const std::string config = ExampleConfig();
  NeverStopped(config, 13);
  const fs::path state = dir_ / "var" / "eventlog" / "state.snap";
  // The event log's newest file (names sort in write order).
  auto newest_log = [&] {
    fs::path newest;
    for (const auto& f : fs::directory_iterator(dir_ / "var" / "eventlog")) {
      if (f.path().extension() == ".jsonl" && f.path() > newest) newest = f.path();
    }
    EXPECT_FALSE(newest.empty());
    return newest;
  };
  // A start that does not use the saved state, saying `why`, and replays
  // the whole log: `replayed` events.
  auto open_without_state = [&](const char* why, size_t replayed) {
    auto e = Open(config, /*offline=*/false);
    if (e == nullptr) return e;
    EngineStats s = e->Stats();
    EXPECT_FALSE(s.state_restored);
    EXPECT_THAT(s.state_not_used, HasSubstr(why));
    EXPECT_EQ(s.replayed, static_cast<int64_t>(replayed));
    return e;
  };
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    DecideSampleThenLater(*e, 4);
    auto saved = e->SaveState();
    ASSERT_TRUE(saved.ok()) << saved.status();
    EXPECT_EQ(*saved, static_cast<int64_t>(fs::file_size(state)));
  }
  {
    // Restored: nothing replayed; a retried id is still a retry.
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    EngineStats s = e->Stats();
    EXPECT_TRUE(s.state_restored) << s.state_not_used;
    EXPECT_EQ(s.state_events, static_cast<int64_t>(sample.size()) + 4);
    EXPECT_EQ(s.replayed, 0);
    Decision d;
    ASSERT_TRUE(e->Decide(LaterEvent(3), &d).ok());
    EXPECT_EQ(d.status, Decision::Status::kRetry);
    for (int i = 4; i < 8; ++i) ExpectFeatures(*e, i);
    // Stopped without saving (a crash): the next start still has the state saved above.
  }
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    EngineStats s = e->Stats();
    EXPECT_TRUE(s.state_restored) << s.state_not_used;
    EXPECT_EQ(s.replayed, 4);  // the events decided after the save, from the newer file
    for (int i = 8; i < 10; ++i) ExpectFeatures(*e, i);
  }
  // A corrupt saved state is not used: the whole log is replayed.
  {
    std::string bytes = ReadText(state);
    bytes[bytes.size() / 2] ^= 0x5a;
    WriteText(state, bytes);
    auto e = open_without_state("checksum", sample.size() + 10);
    ASSERT_NE(e, nullptr);
    ExpectFeatures(*e, 10);
    ASSERT_TRUE(e->SaveState().ok());
    ExpectFeatures(*e, 11);  // after the save: the newest file grows
  }
  {
    // The state, then the rest of the file it ended in.
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    EngineStats s = e->Stats();
    EXPECT_TRUE(s.state_restored) << s.state_not_used;
    EXPECT_EQ(s.replayed, 1);
    EXPECT_EQ(s.replay_rejected, 0);  // nothing the state holds is read again
    ExpectFeatures(*e, 12);
    ASSERT_TRUE(e->SaveState().ok());
  }
  {
    // The file the state ended in lost bytes: not used.
    const fs::path last = newest_log();
    fs::resize_file(last, fs::file_size(last) - 1);
    auto e = open_without_state("less than the", sample.size() + 13);
    ASSERT_NE(e, nullptr);
    Decision d;
    ASSERT_TRUE(e->Decide(LaterEvent(13), &d).ok());
    ASSERT_TRUE(e->SaveState().ok());
  }
  {
    // The file the state ended in was rewritten: where the state ends is no
    // longer the end of a line. Not used.
    const fs::path last = newest_log();
    WriteText(last, " " + ReadText(last));
    EXPECT_NE(open_without_state("is not the end of a line", sample.size() + 14), nullptr);
  }
  {
    // Not a regular file (a pipe held the start up), or a link to nothing
    // (ignored without a word): not used, and said so.
    fs::remove(state);
    ASSERT_EQ(::mkfifo(state.c_str(), 0600), 0);
    EXPECT_NE(open_without_state("not a regular file", sample.size() + 14), nullptr);
    fs::remove(state);
    fs::create_symlink(dir_ / "nowhere", state);
    EXPECT_NE(open_without_state("a link to nothing", sample.size() + 14), nullptr);
  }
}

// Decisions lost in a crash are made again also when the store's last
// decision lies inside the saved state the next start restores (the store
// was down for a while, or a save came after it): every scored event
// replayed is looked for.
TEST_F(RestartTest, DecisionsLostAfterTheSavedStateAreMadeAgainToo) {
  const std::string config = ExampleConfig();
  std::vector<std::string> ids;
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (const std::string& l : SampleLines()) ASSERT_TRUE(e->Decide(l, &d).ok());
    ASSERT_TRUE(e->Flush().ok());
    ASSERT_TRUE(e->SaveState().ok());
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(e->Decide(LaterEvent(i), &d).ok());
      ASSERT_EQ(d.status, Decision::Status::kDecided) << d.error;
      ids.push_back(d.event_id);
    }
    ASSERT_TRUE(e->Flush().ok());
    // Destroyed without another save: a crash, as far as the state goes.
  }
  DeleteStoredDecisions(ids);
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  const EngineStats s = e->Stats();
  EXPECT_TRUE(s.state_restored) << s.state_not_used;
  EXPECT_EQ(s.replayed, 3);
  EXPECT_EQ(s.decisions_recovered, 3);
  for (const std::string& id : ids) EXPECT_TRUE(e->GetDecision(id).ok()) << id;
}

// A save in the background (a child process) writes the state as it was
// when it began while deciding goes on; after a crash, the next start
// restores that state and replays only the log written since. With
// vigil.yaml's save_state_s, Decide starts such a save by itself.
TEST_F(RestartTest, SavesTheStateInTheBackgroundWhileDecidingGoesOn) {
  const std::vector<std::string> sample = SampleLines();
  const std::string config = ExampleConfig();
  NeverStopped(config, 12);
  SetEventLog(config, "{dir: var/eventlog, save_state_s: 1}");
  // Waits for `n` completed saves and none running; the stats then.
  auto saved = [](Engine& e, int64_t n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    EngineStats s = e.Stats();
    while ((s.state_saves < n || s.state_saving) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      s = e.Stats();
    }
    EXPECT_EQ(s.state_saves, n);
    EXPECT_FALSE(s.state_saving);
    EXPECT_EQ(s.state_save_errors, 0) << s.state_save_error;
    return s;
  };
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    DecideSampleThenLater(*e, 4);
    ASSERT_TRUE(e->SaveStateInBackground().ok());
    for (int i = 4; i < 8; ++i) ExpectFeatures(*e, i);  // not in the state being saved
    const EngineStats s = saved(*e, 1);
    EXPECT_GT(s.state_last_fork_us, 0);
    EXPECT_GT(s.state_last_save_ms, 0);
    EXPECT_GT(s.state_last_save_seconds, 0);
    // Destroyed without SaveState: a crash, as far as the state goes.
  }
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    EngineStats s = e->Stats();
    EXPECT_TRUE(s.state_restored) << s.state_not_used;
    EXPECT_EQ(s.state_events, static_cast<int64_t>(sample.size()) + 4);
    EXPECT_EQ(s.replayed, 4);
    // The restored state's time until this run saves one.
    EXPECT_EQ(s.state_saves, 0);
    EXPECT_GT(s.state_last_save_ms, 0);
    EXPECT_LE(s.state_last_save_ms, core::WallNowMs());
    for (int i = 8; i < 10; ++i) ExpectFeatures(*e, i);
    EXPECT_EQ(e->Stats().state_saves, 0) << "save_state_s is not due yet";
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    ExpectFeatures(*e, 10);  // due: this Decide starts a save
    saved(*e, 1);
  }
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    const EngineStats s = e->Stats();
    EXPECT_TRUE(s.state_restored) << s.state_not_used;
    EXPECT_EQ(s.state_events, static_cast<int64_t>(sample.size()) + 11);
    EXPECT_EQ(s.replayed, 0);
    ExpectFeatures(*e, 11);
  }
}

// A save in the background that never finishes (storage that does not
// answer: here its temporary file is a FIFO nobody reads, so the child
// blocks in open(2)) is killed once it has run for `save_timeout_s`, counted
// as failed, and the saves after it work again.
TEST_F(RestartTest, ASaveThatHangsIsKilledAfterItsTimeoutAndSavesGoOn) {
  const std::vector<std::string> sample = SampleLines();
  const std::string config = ExampleConfig();
  NeverStopped(config, 2);
  SetEventLog(config, "{dir: var/eventlog, save_state_s: 0, save_timeout_s: 1}");
  const fs::path dir = dir_ / "var" / "eventlog";
  auto wait_idle = [](Engine& e) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    EngineStats s = e.Stats();
    while (s.state_saving && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      s = e.Stats();
    }
    EXPECT_FALSE(s.state_saving);
    return s;
  };
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  DecideSampleThenLater(*e, 1);
  // The child's temporary file is state.snap.<its pid>.tmp. Pids are handed
  // out in turn: FIFOs under the next few thousand catch it.
  int64_t last_pid = 0;
  {
    std::ifstream in("/proc/sys/kernel/ns_last_pid");
    ASSERT_TRUE(in >> last_pid);
  }
  for (int64_t p = last_pid + 1; p <= last_pid + 4000; ++p) {
    const std::string fifo = (dir / ("state.snap." + std::to_string(p) + ".tmp")).string();
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0) << fifo << ": " << std::strerror(errno);
  }
  const auto began = std::chrono::steady_clock::now();
  ASSERT_TRUE(e->SaveStateInBackground().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EngineStats s = e->Stats();
  ASSERT_TRUE(s.state_saving) << "the save was not caught by a FIFO: " << s.state_save_error;
  // Not stuck yet: a second save is refused and the first left alone.
  EXPECT_THAT(e->SaveStateInBackground().message(), HasSubstr("already running"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(e->Stats().state_saving);
  // Stuck after a second: its reaper kills it, with no other save due.
  s = wait_idle(*e);
  EXPECT_GE(std::chrono::steady_clock::now() - began, std::chrono::seconds(1));
  EXPECT_EQ(s.state_saves, 0);
  EXPECT_EQ(s.state_save_errors, 1);
  EXPECT_THAT(s.state_save_error, HasSubstr("was still running after"));
  EXPECT_THAT(s.state_save_error, HasSubstr("and was killed"));
  EXPECT_FALSE(fs::exists(dir / "state.snap"));
  // The FIFOs of pids that are not running were removed with the killed
  // child's: the next save writes its state.
  ExpectFeatures(*e, 1);
  ASSERT_TRUE(e->SaveStateInBackground().ok());
  s = wait_idle(*e);
  EXPECT_EQ(s.state_saves, 1) << s.state_save_error;
  EXPECT_EQ(s.state_save_errors, 1);
  e.reset();  // a crash: the state saved in the background is what the next start has
  e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  s = e->Stats();
  EXPECT_TRUE(s.state_restored) << s.state_not_used;
  EXPECT_EQ(s.state_events, static_cast<int64_t>(sample.size()) + 2);
  EXPECT_EQ(s.replayed, 0);
}

TEST_F(EngineTest, StoresDecisionsAndReadsThemBackWithExactReasons) {
  auto engine = Open(ExampleConfig(), /*offline=*/false);
  ASSERT_NE(engine, nullptr);
  Decision d;
  for (const std::string& line : SampleLines()) ASSERT_TRUE(engine->Decide(line, &d).ok());
  ASSERT_TRUE(engine->Flush().ok());
  EXPECT_EQ(engine->Stats().decisions_stored, 20);

  auto doc = engine->GetDecision("e000000000025");
  ASSERT_TRUE(doc.ok()) << doc.status();
  Json j = Json::parse(*doc);
  EXPECT_EQ(j["event_id"], "e000000000025");
  EXPECT_EQ(j["action"], "review");
  ASSERT_TRUE(j["exact_reasons"].is_array());
  EXPECT_GT(j["exact_reasons"].size(), 3u);
  EXPECT_TRUE(j["bias"].is_number());
  // The contributions and the bias add up to the margin: logit(score).
  double margin = j["bias"].get<double>();
  for (const Json& r : j["exact_reasons"]) margin += r["contribution"].get<double>();
  const double score = j["score"].get<double>();
  EXPECT_NEAR(margin, std::log(score / (1 - score)), 1e-4);
  // Each shows the feature's stored value, not the float the trees compare.
  for (const Json& r : j["exact_reasons"]) {
    const Json& v = j["features"][r["feature"].get<std::string>()];
    EXPECT_EQ(r["value"], v) << r;
  }

  // The labels that named a decided event come with it.
  doc = engine->GetDecision("e000000000018");
  ASSERT_TRUE(doc.ok()) << doc.status();
  j = Json::parse(*doc);
  ASSERT_EQ(j["labels"].size(), 1u) << *doc;
  EXPECT_EQ(j["labels"][0]["label_id"], "e000000000028");
  EXPECT_EQ(j["labels"][0]["kind"], "chargeback");

  auto unscored = engine->GetDecision("e000000000002");
  EXPECT_TRUE(absl::IsNotFound(unscored.status())) << unscored.status();
  EXPECT_THAT(Msg(unscored.status()), HasSubstr("e000000000002"));
  // Every accepted event is in the event log, in order.
  size_t lines = 0;
  for (const auto& f : fs::directory_iterator(dir_ / "var/eventlog")) {
    if (f.path().extension() != ".jsonl") continue;  // (its .log-id, a saved state)
    std::ifstream in(f.path());
    for (std::string l; std::getline(in, l);) ++lines;
  }
  EXPECT_EQ(lines, 30u);
}

// --- the hot path's allocations ---------------------------------------------
//
// What a warm Decide of a scored event allocates offline (no store, no logs):
//  - nothing of the engine's own, reasons included (their strings keep their
//    buffers from one decision to the next), without a retry memory or once
//    it is full (the evicted entry's strings are reused);
//  - while the retry memory (limits.recent_decisions, default 100000) fills:
//    the copy of the stored document, and the hash map's growth.
// Online, the decision log's copy of the row comes on top (not measured
// here).
// The feature state allocates too while its windows fill (per-entity
// histories and the label index double their capacity; the identity graph
// rebuilds at midnight of event time). The stream is sized so that the
// warm-up reaches the capacities the measured events need: 300 trades ten
// seconds apart, then 140, all on one day. A change in src/feature may move
// these numbers.

// Allocations of each of `n` Decides of trades of one user (one device, one
// IP), after `warm` of the same. The bodies are built beforehand.
std::vector<int64_t> DecideAllocations(Engine* engine, int warm, int n, bool mixed = false) {
  // Trades of u0000001; `mixed`: every other one a deposit (another type:
  // other models, rules, shadows).
  std::vector<std::string> bodies;
  for (int i = 0; i < warm + n; ++i) {
    Json ev = SampleEvent(mixed && i % 2 ? 4 : 5);
    ev["event_id"] = EventId(100000000 + i);
    ev["time"] = Time(10 * i);
    bodies.push_back(ev.dump());
  }
  Decision d;
  std::vector<int64_t> counts;
  counts.reserve(static_cast<size_t>(n));
  for (int i = 0; i < warm + n; ++i) {
    core::AllocationScope scope;
    absl::Status s = engine->Decide(bodies[static_cast<size_t>(i)], &d);
    const int64_t count = scope.count();
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_EQ(d.status, Decision::Status::kDecided) << d.json;
    if (i >= warm) counts.push_back(count);
  }
  return counts;
}

int64_t Max(const std::vector<int64_t>& v) { return *std::max_element(v.begin(), v.end()); }
int64_t Sum(const std::vector<int64_t>& v) { return std::accumulate(v.begin(), v.end(), int64_t{0}); }

// Printed for the record (the test log): the exact counts of this stream.
void Report(const char* what, const std::vector<int64_t>& counts) {
  std::printf("%s: %lld allocations over %zu decisions, at most %lld in one\n", what,
              static_cast<long long>(Sum(counts)), counts.size(), static_cast<long long>(Max(counts)));
}

constexpr int kWarm = 300, kMeasured = 140;

// Decide on the example with `rest` added to vigil.yaml, warmed up: the most
// allocations one decision made (-1 when the engine did not open).
int64_t EngineTest::MostAllocationsPerDecision(const std::string& rest, const char* what) {
  auto engine = Open(ExampleConfig(rest));
  if (engine == nullptr) return -1;
  std::vector<int64_t> counts = DecideAllocations(engine.get(), kWarm, kMeasured);
  Report(what, counts);
  return Max(counts);
}

TEST_F(EngineTest, DecideAllocatesNothingInSteadyStateWithoutReasonsOrRetryMemory) {
  EXPECT_EQ(MostAllocationsPerDecision("reasons: 0\nlimits: {recent_decisions: 0}\n",
                                       "offline, reasons 0, recent_decisions 0"),
            0);
}

TEST_F(EngineTest, DecideAllocatesNothingForItsReasonsInSteadyState) {
  EXPECT_EQ(MostAllocationsPerDecision("limits: {recent_decisions: 0}\n",
                                       "offline, reasons 3, recent_decisions 0"),
            0);
}

TEST_F(EngineTest, DecideAllocatesOnlyTheRetryCopyWhileTheRetryMemoryFills) {
  // At most the stored document's copy; the id fits inline.
  const int64_t most = MostAllocationsPerDecision("", "offline, reasons 3, recent_decisions 100000");
  EXPECT_GE(most, 0);
  EXPECT_LE(most, 1);
}

TEST_F(EngineTest, DecideAllocatesNothingOnceTheRetryMemoryIsFull) {
  EXPECT_EQ(MostAllocationsPerDecision("limits: {recent_decisions: 100}\n",
                                       "offline, reasons 3, recent_decisions 100 (full)"),
            0);
}

// --- experiments: A/B arms, shadow challengers, the holdout -----------------

// A policy that blocks every deposit by its threshold (score >= 0), and by a
// rule the deposits of a card with a chargeback.
constexpr char kBlockingPolicy[] = R"(name: test
version: 1
event_types:
  deposit:
    thresholds:
      - {action: block, score_at_least: 0.0}
    rules:
      - name: card_with_chargeback
        when: features.card_chargebacks_90d > 0
        action: block
        reason: this card had a chargeback in the last 90 days
    on_model_unavailable: open
  withdrawal:
    thresholds:
      - {action: block, score_at_least: 0.97}
    on_model_unavailable: closed
    closed_action: review
default:
  thresholds:
    - {action: challenge, score_at_least: 0.90}
  on_model_unavailable: open
)";

// A card deposit of user `user` on its own card and device, at Time(t).
std::string Deposit(int64_t id, int user, int64_t t) {
  Json ev = SampleEvent(4);
  ev["event_id"] = EventId(id);
  ev["user_id"] = UserId(user);
  char card[32], device[32];
  std::snprintf(card, sizeof card, "c%08x", 0x10000000u + static_cast<unsigned>(user));
  std::snprintf(device, sizeof device, "d%08x", 0x20000000u + static_cast<unsigned>(user));
  ev["card_id"] = card;
  ev["device_id"] = device;
  ev["time"] = Time(t);
  return ev.dump();
}

// Two servers on one event log folder: the second is refused before it
// opens its store or replays anything (its replay would make the first
// one's pending decisions again, into a store).
TEST_F(EngineTest, ASecondServerOnTheSameEventLogIsRefusedBeforeItTouchesItsStore) {
  auto first = Open(ExampleConfig(), /*offline=*/false);
  ASSERT_NE(first, nullptr);
  Decision d;
  for (const std::string& l : SampleLines()) ASSERT_TRUE(first->Decide(l, &d).ok());
  fs::create_directories(dir_ / "b");
  const std::string second = (dir_ / "b" / "vigil.yaml").string();
  WriteText(second, "schema: " + Example() + "/schema.yaml\nfeatures: " + Example() +
                        "/features.yaml\npolicy: " + Example() +
                        "/policy.yaml\nstore: sqlite:var/vigil.db\njournal: var/journal.jsonl\n"
                        "event_log: " +
                        (dir_ / "var" / "eventlog").string() + "\ndead_letter: var/dead.jsonl\n");
  EngineOptions o;
  o.config_path = second;
  auto refused = Engine::Open(o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("in use by another process"));
  EXPECT_FALSE(fs::exists(dir_ / "b" / "var" / "vigil.db")) << "the refused server made its store";
  // Once the first has stopped, the folder is free.
  first.reset();
  auto next = Engine::Open(o);
  EXPECT_TRUE(next.ok()) << next.status();
}

// The event log is read back with the schema's max_record_bytes, at a
// restart and by backfill: an event whose logged line (minified) is longer
// is refused as the readers refuse it, not acknowledged and then skipped;
// white space as posted does not count; a dead letter is cut at the limit.
TEST_F(EngineTest, AnEventLoggedOverMaxRecordBytesIsRefusedAndDeadLettersAreCut) {
  const std::string d1 = Deposit(300000007, 3000007, 0);
  Json over = Json::parse(Deposit(300000008, 3000008, 0));
  over["ip"] = "181.123.145.167";  // 4 bytes longer than the sample's
  const size_t limit = d1.size();
  ASSERT_GT(over.dump().size(), limit);
  std::string schema = ReadText(fs::path(Example()) / "schema.yaml");
  const size_t at = schema.find("max_record_bytes: 16384");
  ASSERT_NE(at, std::string::npos);
  schema.replace(at, 23, "max_record_bytes: " + std::to_string(limit));
  WriteText(dir_ / "schema.yaml", schema);
  const std::string config = (dir_ / "vigil.yaml").string();
  WriteText(config, "schema: " + (dir_ / "schema.yaml").string() + "\nfeatures: " + Example() +
                        "/features.yaml\npolicy: " + Example() +
                        "/policy.yaml\nstore: sqlite:var/vigil.db\njournal: var/journal.jsonl\n"
                        "event_log: var/eventlog\ndead_letter: var/dead-letter.jsonl\n");
  Decision d;
  {
    auto engine = Open(config, /*offline=*/false);
    ASSERT_NE(engine, nullptr);
    ASSERT_TRUE(engine->Decide(Json::parse(d1).dump(8), &d).ok());  // pretty: its line is d1
    EXPECT_EQ(d.http_status, 200) << d.json;
    ASSERT_TRUE(engine->Decide(over.dump(), &d).ok());
    EXPECT_EQ(d.http_status, 400) << d.json;
    EXPECT_EQ(Json::parse(d.json)["violations"][0]["rule"], "record_too_large") << d.json;
    ASSERT_TRUE(engine->SaveState().ok());
  }
  const std::vector<Json> dead = DeadLetters(dir_ / "var" / "dead-letter.jsonl");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0]["rule"], "record_too_large");
  EXPECT_EQ(dead[0]["raw"].get<std::string>().size(), limit);
  EXPECT_EQ(dead[0]["raw_truncated"], true);
  EXPECT_EQ(dead[0]["raw_bytes"], over.dump().size());
  // When the server refused it (a restart numbers records from 1 again).
  int64_t received = 0;
  ASSERT_EQ(core::ParseTimestamp(dead[0].value("received", ""), &received), core::TimeError::kOk)
      << dead[0];
  EXPECT_LE(std::abs(received - core::WallNowMs()), 60'000) << dead[0];
  // The whole log replays at a restart: nothing acknowledged is skipped.
  fs::remove(dir_ / "var" / "eventlog" / "state.snap");
  auto again = Open(config, /*offline=*/false);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->Stats().replayed, 1);
  EXPECT_EQ(again->Stats().replay_rejected, 0);
}

std::string ChargebackOn(int64_t id, int64_t target, int64_t t) {
  Json ev = SampleEvent(28);
  ev["event_id"] = EventId(id);
  ev["target_event_id"] = EventId(target);
  ev["time"] = Time(t);
  return ev.dump();
}

std::string ModelVersion(const std::string& label) { return label.substr(label.find('@') + 1); }

TEST_F(EngineTest, DrawsArmsPerUserScoresChallengersInShadowAndHoldsOutOnlyThresholdBlocks) {
  const std::string policy = (dir_ / "policy.yaml").string();
  WriteText(policy, kBlockingPolicy);
  const std::string shadow = CopyModel("candidate_model"), variant = CopyModel("variant_model");
  const std::string config = Config("  deposit:\n    champion: {name: exchange, bundle: " + Example() +
                                        "/model}\n    challengers:\n"
                                        "      - {name: candidate, bundle: " + shadow + ", mode: shadow}\n"
                                        "      - {name: variant, bundle: " + variant + ", mode: ab, share: 0.3}\n"
                                        "    holdout: 0.5\n",
                                    policy);
  auto engine = Open(config);
  ASSERT_NE(engine, nullptr);

  constexpr int kUsers = 60, kPerUser = 3;
  std::map<int, std::string> arm_of;
  std::map<int64_t, bool> held_out;
  int variant_users = 0, held = 0;
  std::string version;
  Decision d;
  int64_t id = 200000000, t = 0;
  for (int round = 0; round < kPerUser; ++round) {
    for (int u = 0; u < kUsers; ++u) {
      ASSERT_TRUE(engine->Decide(Deposit(++id, 1000000 + u, t += 30), &d).ok());
      ASSERT_EQ(d.status, Decision::Status::kDecided) << d.json;
      SCOPED_TRACE(d.json);
      // One arm per user, whatever the event.
      auto [it, first] = arm_of.try_emplace(u, d.arm);
      EXPECT_EQ(it->second, d.arm);
      if (first && d.arm == "variant") ++variant_users;
      ASSERT_TRUE(d.arm == "exchange" || d.arm == "variant") << d.arm;
      EXPECT_EQ(d.model.substr(0, d.model.find('@')), d.arm);
      if (version.empty()) version = ModelVersion(d.model);
      // The others are scored in shadow: the shadow challenger, and the A/B
      // model that did not decide. The copies are the same model: the same score.
      std::set<std::string> shadows;
      for (const Decision::Shadow& s : d.shadow) {
        shadows.insert(s.model);
        EXPECT_DOUBLE_EQ(s.score, d.score) << s.model;
      }
      const std::string other = d.arm == "variant" ? "exchange" : "variant";
      EXPECT_EQ(shadows, (std::set<std::string>{"candidate@" + version, other + "@" + version}));
      EXPECT_EQ(Json::parse(d.json)["shadow"].size(), 2u);
      // Every deposit crosses the block threshold; the holdout lets half through.
      EXPECT_EQ(d.decided_by, "threshold");
      if (d.holdout) {
        ++held;
        EXPECT_EQ(d.action, "allow");
      } else {
        EXPECT_EQ(d.action, "block");
      }
      held_out[id] = d.holdout;
      // The arm's share times the holdout's draw (0.5 either way).
      EXPECT_DOUBLE_EQ(d.propensity, (d.arm == "variant" ? 0.3 : 0.7) * 0.5);
      Json e = Json::parse(d.json)["experiment"];
      EXPECT_EQ(e["arm"], d.arm);
      EXPECT_DOUBLE_EQ(e["propensity"].get<double>(), d.propensity);
      EXPECT_EQ(e["holdout"], d.holdout);
    }
  }
  std::printf("%d of %d users in the variant arm, %d of %d deposits held out\n", variant_users, kUsers, held,
              kUsers * kPerUser);
  EXPECT_GT(variant_users, 5);
  EXPECT_LT(variant_users, 35);
  EXPECT_GT(held, kUsers * kPerUser / 5);
  EXPECT_LT(held, kUsers * kPerUser * 4 / 5);

  // A chargeback on each user's first deposit: the next deposit on that card
  // is blocked by the rule, and a rule's block is never held out.
  for (int u = 0; u < kUsers; ++u) ASSERT_TRUE(engine->Decide(ChargebackOn(++id, 200000001 + u, t += 30), &d).ok());
  for (int u = 0; u < kUsers; ++u) {
    ASSERT_TRUE(engine->Decide(Deposit(++id, 1000000 + u, t += 30), &d).ok());
    ASSERT_EQ(d.status, Decision::Status::kDecided) << d.json;
    EXPECT_EQ(d.decided_by, "rule:card_with_chargeback") << d.json;
    EXPECT_EQ(d.action, "block");
    EXPECT_FALSE(d.holdout);
    EXPECT_EQ(d.arm, arm_of[u]);
    EXPECT_DOUBLE_EQ(d.propensity, d.arm == "variant" ? 0.3 : 0.7);
  }

  // Arms and holdout draws are the same in another process: the same
  // events on a new engine get the same answers.
  auto again = Open(config);
  ASSERT_NE(again, nullptr);
  id = 200000000;
  t = 0;
  for (int round = 0; round < kPerUser; ++round) {
    for (int u = 0; u < kUsers; ++u) {
      ASSERT_TRUE(again->Decide(Deposit(++id, 1000000 + u, t += 30), &d).ok());
      EXPECT_EQ(d.arm, arm_of[u]);
      EXPECT_EQ(d.holdout, held_out[id]);
    }
  }
}

// Deposits are reviewed from 0.5 and blocked from 0.97; a rule that reads
// the score challenges from 0.95, so that a high score fires it.
constexpr char kScorePolicy[] = R"(name: test
version: 1
event_types:
  deposit:
    thresholds:
      - {action: block, score_at_least: 0.97}
      - {action: review, score_at_least: 0.5}
    rules:
      - name: high_score
        when: model.score >= 0.95
        action: challenge
    on_model_unavailable: open
default:
  on_model_unavailable: open
)";

// A copy of the example's bundle whose calibration maps every score to `p`.
std::string ConstantModel(const fs::path& dir, double p) {
  fs::copy(Example() + "/model", dir,
           fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  Json manifest = Json::parse(ReadText(dir / "manifest.json"));
  manifest["calibration"] = {{"x", {0.0}}, {"y", {p}}};
  WriteText(dir / "manifest.json", manifest.dump());
  return dir.string();
}

// A bundle whose manifest does not name its feature spec cannot be checked
// against it: it loads (matched by feature names), and the engine says so.
TEST_F(EngineTest, WarnsOfABundleThatDoesNotNameItsFeatureSpec) {
  const fs::path dir = dir_ / "unnamed";
  fs::copy(Example() + "/model", dir, fs::copy_options::recursive);
  Json manifest = Json::parse(ReadText(dir / "manifest.json"));
  ASSERT_TRUE(manifest.contains("feature_spec_hash"));
  manifest.erase("feature_spec_hash");
  WriteText(dir / "manifest.json", manifest.dump());
  auto engine = Open(Config("  deposit: {champion: {name: m, bundle: " + dir.string() + "}}\n"));
  ASSERT_NE(engine, nullptr);
  std::string all;
  for (const std::string& w : engine->ConfigWarnings()) all += w + "\n";
  EXPECT_THAT(all, HasSubstr("model m (" + dir.string() +
                             ") does not say which feature spec it was trained on"));
  auto named = Open(Config("  deposit: {champion: {name: m, bundle: " + Example() + "/model}}\n"));
  ASSERT_NE(named, nullptr);
  for (const std::string& w : named->ConfigWarnings())
    EXPECT_THAT(w, Not(HasSubstr("feature_spec_hash")));
}

// An A/B test or a shadow of the champion's own model compares it with
// itself: allowed (a dry run of the experiment), and said.
TEST_F(EngineTest, WarnsOfAChallengerThatIsTheChampionsModel) {
  const std::string m = Example() + "/model";
  auto same = Open(Config("  deposit:\n    champion: {name: a, bundle: " + m +
                          "}\n    challengers:\n"
                          "      - {name: b, bundle: " +
                          m + "/, mode: ab, share: 0.5}\n"));
  ASSERT_NE(same, nullptr);
  std::string all;
  for (const std::string& w : same->ConfigWarnings()) all += w + "\n";
  EXPECT_THAT(all, HasSubstr("challenger b of deposit is the champion's model"));
  const std::string other = ConstantModel(dir_ / "other", 0.5);
  auto differ = Open(Config("  deposit:\n    champion: {name: a, bundle: " + m +
                            "}\n    challengers:\n"
                            "      - {name: b, bundle: " +
                            other + ", mode: ab, share: 0.5}\n"));
  ASSERT_NE(differ, nullptr);
  for (const std::string& w : differ->ConfigWarnings())
    EXPECT_THAT(w, Not(HasSubstr("champion's model")));
}

// A model's version names what scores: the trees, and the calibration when
// there is one, so that a recalibration shows in stored decisions and in
// /metrics' series.
TEST_F(EngineTest, AModelsVersionChangesWithItsCalibration) {
  auto version = [&](const std::string& bundle) {
    auto engine = Open(Config("  deposit: {champion: {name: m, bundle: " + bundle + "}}\n"));
    EXPECT_NE(engine, nullptr);
    Decision d;
    EXPECT_TRUE(engine->Decide(Deposit(300000001, 3000001, 0), &d).ok());
    return d.model;
  };
  const std::string plain = version(Example() + "/model");
  EXPECT_EQ(
      plain,
      "m@" +
          event::Sha256Hex(ReadText(fs::path(Example()) / "model" / "model.json")).substr(0, 12));
  const std::string a = version(ConstantModel(dir_ / "a", 0.99)),
                    b = version(ConstantModel(dir_ / "b", 0.5));
  EXPECT_NE(a, plain);
  EXPECT_NE(a, b);
  EXPECT_EQ(
      a, version(ConstantModel(dir_ / "a2", 0.99)));  // the same bundle elsewhere: the same version
}

TEST_F(EngineTest, AShadowChallengerCarriesThePolicysActionForItsScoreAndLeavesTheChampionsAlone) {
  const std::string policy = (dir_ / "policy.yaml").string();
  WriteText(policy, kScorePolicy);
  const std::string hot = ConstantModel(dir_ / "hot", 0.99);
  const std::string champion = "    champion: {name: exchange, bundle: " + Example() + "/model}\n";
  const std::string with_shadow =
      Config("  deposit:\n" + champion + "    challengers:\n      - {name: hot, bundle: " + hot +
                 ", mode: shadow}\n",
             policy);
  auto engine = Open(with_shadow, /*offline=*/false);
  ASSERT_NE(engine, nullptr);
  // The same events without the challenger, and with it as the champion:
  // what the policy gives for each model's score.
  auto alone = Open(Config("  deposit:\n" + champion, policy));
  ASSERT_NE(alone, nullptr);
  auto hot_only =
      Open(Config("  deposit:\n    champion: {name: hot, bundle: " + hot + "}\n", policy));
  ASSERT_NE(hot_only, nullptr);

  Decision d, a, h;
  for (int i = 0; i < 5; ++i) {
    const std::string ev = Deposit(300000000 + i, 2000000 + i, 30 * i);
    ASSERT_TRUE(engine->Decide(ev, &d).ok());
    ASSERT_TRUE(alone->Decide(ev, &a).ok());
    ASSERT_TRUE(hot_only->Decide(ev, &h).ok());
    ASSERT_EQ(d.status, Decision::Status::kDecided) << d.json;
    SCOPED_TRACE(d.json);
    // The champion's decision is what it is without the challenger.
    EXPECT_EQ(d.action, a.action);
    EXPECT_EQ(d.decided_by, a.decided_by);
    EXPECT_DOUBLE_EQ(d.score, a.score);
    EXPECT_EQ(d.rules.size(), a.rules.size());
    EXPECT_LT(d.score, 0.5) << "a new user's card deposit: the champion allows it";
    EXPECT_EQ(d.action, "allow");
    // The challenger's entry is what the policy decides with its score.
    ASSERT_EQ(d.shadow.size(), 1u);
    const Decision::Shadow& s = d.shadow[0];
    EXPECT_EQ(s.model, h.model);
    EXPECT_DOUBLE_EQ(s.score, 0.99);
    EXPECT_EQ(s.action, h.action);
    EXPECT_EQ(s.action, "block");
    EXPECT_EQ(s.decided_by, h.decided_by);
    EXPECT_EQ(s.decided_by, "threshold");
    // high_score fired for the challenger only: its rules are listed.
    EXPECT_TRUE(s.rules_differ);
    EXPECT_EQ(s.rules, std::vector<std::string>{"high_score"});
    ASSERT_EQ(h.rules.size(), 1u);
    EXPECT_EQ(h.rules[0].name, "high_score");
    const Json shadow = Json::parse(d.json)["shadow"];
    EXPECT_EQ(shadow, Json::parse(R"([{"model": ")" + h.model +
                                  R"(", "score": 0.99, "action": "block", "decided_by": "threshold",
                                      "rules": ["high_score"]}])"));
  }
  // The shadow rules are not counted: only the champion's decisions count hits.
  for (const RuleHits& r : engine->RuleHitCounts()) EXPECT_EQ(r.hits, 0) << r.rule;

  // The stored decision (GET /v1/decisions/{id}) keeps the shadow's decision.
  ASSERT_TRUE(engine->Flush().ok());
  auto doc = engine->GetDecision(EventId(300000004));
  ASSERT_TRUE(doc.ok()) << doc.status();
  const Json stored = Json::parse(*doc)["shadow"];
  ASSERT_EQ(stored.size(), 1u) << *doc;
  EXPECT_EQ(stored[0]["action"], "block");
  EXPECT_EQ(stored[0]["decided_by"], "threshold");
  EXPECT_EQ(stored[0]["rules"], Json::parse(R"(["high_score"])"));
}

// Decisions lost in a crash are made again with the models loaded at the
// next start: when the model that made the store's last decision is not
// among them, the start says the recovered decisions may differ.
TEST_F(EngineTest, RecoveryWithAnotherModelThanBeforeTheCrashSaysSo) {
  const std::string config = ExampleConfig();
  std::string last_scored;
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (const std::string& l : SampleLines()) {
      ASSERT_TRUE(e->Decide(l, &d).ok());
      if (d.status == Decision::Status::kDecided) last_scored = d.event_id;
    }
    ASSERT_TRUE(e->Flush().ok());
  }
  DeleteStoredDecisions({last_scored});
  EngineOptions o;
  o.config_path = config;
  o.offline = false;
  o.model_override = ConstantModel(dir_ / "other", 0.5);
  auto e = Engine::Open(o);
  ASSERT_TRUE(e.ok()) << e.status();
  const EngineStats s = (*e)->Stats();
  EXPECT_EQ(s.decisions_recovered, 1);
  EXPECT_THAT(s.recovered_warning, HasSubstr("is not loaded now"));
  EXPECT_THAT(s.recovered_warning, HasSubstr("may differ from those answered"));
}

// The same when the policy changed between the crash and the start: each
// decision names its policy, and the start compares the store's last one
// with the policy loaded now.
TEST_F(EngineTest, RecoveryWithAnotherPolicyThanBeforeTheCrashSaysSo) {
  const std::string config = ExampleConfig();
  std::string last_scored, policy_before;
  {
    auto e = Open(config, /*offline=*/false);
    ASSERT_NE(e, nullptr);
    Decision d;
    for (const std::string& l : SampleLines()) {
      ASSERT_TRUE(e->Decide(l, &d).ok());
      if (d.status == Decision::Status::kDecided) {
        last_scored = d.event_id;
        policy_before = d.policy;
      }
    }
    ASSERT_TRUE(e->Flush().ok());
  }
  DeleteStoredDecisions({last_scored});
  // One threshold moved: the same name, another content.
  std::string text = ReadText(Example() + "/policy.yaml");
  const size_t at = text.find("score_at_least: 0.97");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 20, "score_at_least: 0.96");
  WriteText((dir_ / "policy.yaml").string(), text);
  std::string models;
  for (const char* t :
       {"signup", "deposit", "withdrawal", "trade", "promo_redeem", "api_key_create"})
    models +=
        std::string("  ") + t + ": {champion: {name: exchange, bundle: " + Example() + "/model}}\n";
  Config(models, (dir_ / "policy.yaml").string());
  auto e = Open(config, /*offline=*/false);
  ASSERT_NE(e, nullptr);
  const EngineStats s = e->Stats();
  EXPECT_EQ(s.decisions_recovered, 1);
  EXPECT_THAT(s.recovered_warning,
              HasSubstr("its policy (" + policy_before + ") is not the one loaded now"));
  EXPECT_THAT(s.recovered_warning, Not(HasSubstr("the model that made it")));
  EXPECT_THAT(s.recovered_warning, HasSubstr("may differ from those answered"));
}

// Past 32 fired rules the answer lists 32, the deciding one last, and says
// how many it left out.
TEST_F(EngineTest, AnAnswerWithMoreThan32FiredRulesListsTheDecidingOneAndCountsTheRest) {
  std::string text = "name: many\nversion: 1\nevent_types:\n  deposit:\n    rules:\n";
  for (int i = 0; i < 34; ++i) {
    text += "      - {name: watch" + std::to_string(i) +
            ", when: 'true', action: allow, shadow: true}\n";
  }
  text +=
      "      - {name: stop, when: 'true', action: block}\n    on_model_unavailable: open\n"
      "default:\n  on_model_unavailable: open\n";
  const std::string policy = (dir_ / "policy.yaml").string();
  WriteText(policy, text);
  auto engine = Open(Config("", policy));
  ASSERT_NE(engine, nullptr);
  Decision d;
  ASSERT_TRUE(engine->Decide(Deposit(300000000, 2000000, 0), &d).ok());
  ASSERT_EQ(d.status, Decision::Status::kDecided) << d.json;
  EXPECT_EQ(d.action, "block");
  EXPECT_EQ(d.decided_by, "rule:stop");
  ASSERT_EQ(d.rules.size(), 32u);
  EXPECT_EQ(d.rules.back().name, "stop");
  EXPECT_EQ(d.rules_not_listed, 3);
  const Json j = Json::parse(d.json);
  EXPECT_EQ(j["rules"].back()["name"], "stop");
  EXPECT_EQ(j["rules_not_listed"], 3);
  // A decision with few rules carries no count.
  WriteText(policy, kScorePolicy);
  auto plain = Open(Config("", policy));
  ASSERT_NE(plain, nullptr);
  ASSERT_TRUE(plain->Decide(Deposit(300000001, 2000001, 0), &d).ok());
  EXPECT_FALSE(Json::parse(d.json).contains("rules_not_listed")) << d.json;
}

TEST_F(EngineTest, SaysWhichScoredTypesThePolicyLeavesUndecidedAndWhichThresholdsNeverApply) {
  // The example: every scored type has a section and a model.
  auto full = Open(ExampleConfig());
  ASSERT_NE(full, nullptr);
  EXPECT_THAT(full->ConfigWarnings(), ::testing::IsEmpty());
  EXPECT_FALSE(Json::parse(full->ModelsJson()).contains("warnings"));

  // A policy for deposits only (with thresholds) and a model for withdrawals only.
  const std::string policy = (dir_ / "policy.yaml").string();
  WriteText(policy,
            "event_types:\n  deposit:\n    thresholds: [{action: block, score_at_least: 0.9}]\n"
            "    on_model_unavailable: open\n");
  auto engine = Open(Config(
      "  withdrawal: {champion: {name: exchange, bundle: " + Example() + "/model}}\n", policy));
  ASSERT_NE(engine, nullptr);
  const std::vector<std::string> w = engine->ConfigWarnings();
  ASSERT_EQ(w.size(), 6u) << ::testing::PrintToString(w);
  std::string all;
  for (const std::string& s : w) all += s + "\n";
  EXPECT_THAT(all, HasSubstr("the thresholds " + policy + " applies to 'deposit' never apply: " +
                             (dir_ / "vigil.yaml").string() + " configures no model for it"));
  for (const char* t : {"signup", "withdrawal", "trade", "promo_redeem", "api_key_create"}) {
    EXPECT_THAT(all,
                HasSubstr(std::string("event type '") + t + "' is scored (" + Example() +
                          "/features.yaml score_on) but " + policy +
                          " has no section for it and no default: every such event is allowed"))
        << t;
  }
  EXPECT_EQ(Json::parse(engine->ModelsJson())["warnings"].size(), 6u);
  // What the warnings say is what happens.
  Decision d;
  ASSERT_TRUE(engine->Decide(Deposit(300000100, 2000100, 0), &d).ok());
  EXPECT_EQ(d.path, "rules_only") << d.json;

  // A reload with a default for the rest leaves the one about deposits.
  WriteText(policy,
            "event_types:\n  deposit:\n    thresholds: [{action: block, score_at_least: 0.9}]\n"
            "    on_model_unavailable: open\ndefault: {rules: []}\n");
  ASSERT_TRUE(engine->Reload().ok());
  EXPECT_EQ(engine->ConfigWarnings().size(), 1u);
}

// A retry is known by the retry memory or the schema's duplicate check; a
// server whose schema turns the check off is told what that leaves.
TEST_F(EngineTest, WarnsWhenTheSchemaDoesNotCheckDuplicateIds) {
  {
    auto fine = Open(ExampleConfig(), /*offline=*/false);
    ASSERT_NE(fine, nullptr);
    EXPECT_THAT(fine->ConfigWarnings(), ::testing::IsEmpty());
  }
  std::string schema = ReadText(Example() + "/schema.yaml");
  const size_t at = schema.find("memory: 5000000");
  ASSERT_NE(at, std::string::npos);
  schema.replace(at, 15, "memory: 0");
  WriteText(dir_ / "schema.yaml", schema);
  // (No model: the bundle was trained on the example schema's spec hash.)
  std::string config = ReadText(Config(""));
  const std::string example_schema = "schema: " + Example() + "/schema.yaml";
  config.replace(config.find(example_schema), example_schema.size(),
                 "schema: " + (dir_ / "schema.yaml").string());
  WriteText(dir_ / "vigil.yaml", config);
  const auto about_duplicates = [](const std::vector<std::string>& w) {
    std::vector<std::string> found;
    for (const std::string& s : w)
      if (s.find("duplicates.memory") != std::string::npos) found.push_back(s);
    return found;
  };
  auto e = Open((dir_ / "vigil.yaml").string(), /*offline=*/false);
  ASSERT_NE(e, nullptr);
  const std::vector<std::string> w = about_duplicates(e->ConfigWarnings());
  ASSERT_EQ(w.size(), 1u) << ::testing::PrintToString(e->ConfigWarnings());
  EXPECT_THAT(w[0], HasSubstr((dir_ / "schema.yaml").string() +
                              " duplicates.memory is 0: a retry of an unscored "
                              "event, or of a scored one older than the last 100000 decisions"));
  e.reset();
  // Offline (vigil decide) there are no retries to warn of.
  auto offline = Open((dir_ / "vigil.yaml").string());
  ASSERT_NE(offline, nullptr);
  EXPECT_THAT(about_duplicates(offline->ConfigWarnings()), ::testing::IsEmpty());
}

// The shadow's decision reuses the entry's strings: a warm Decide with a
// challenger that the policy would have challenged allocates nothing more.
TEST_F(EngineTest, DecideAllocatesNothingForAShadowDecisionInSteadyState) {
  const std::string hot = ConstantModel(dir_ / "hot", 0.99);
  std::string models;
  for (const char* t : {"signup", "deposit", "withdrawal", "promo_redeem", "api_key_create"})
    models +=
        std::string("  ") + t + ": {champion: {name: exchange, bundle: " + Example() + "/model}}\n";
  models += "  trade:\n    champion: {name: exchange, bundle: " + Example() +
            "/model}\n    challengers:\n      - {name: hot, bundle: " + hot + ", mode: shadow}\n";
  auto engine = Open(Config(models, "", "limits: {recent_decisions: 0}\n"));
  ASSERT_NE(engine, nullptr);
  const std::vector<int64_t> counts = DecideAllocations(engine.get(), kWarm, kMeasured);
  Report("offline, reasons 3, recent_decisions 0, a shadow challenger", counts);
  EXPECT_EQ(Max(counts), 0);
  // Trades (a shadow) and deposits (none) in turn, one Decision for both:
  // the shadow entry and its strings are kept aside, not made anew.
  auto mixed_engine = Open(Config(models, "", "limits: {recent_decisions: 0}\n"));
  ASSERT_NE(mixed_engine, nullptr);
  const std::vector<int64_t> mixed = DecideAllocations(mixed_engine.get(), kWarm, kMeasured, true);
  Report("offline, reasons 3, recent_decisions 0, a shadow challenger on every other event", mixed);
  EXPECT_EQ(Max(mixed), 0);

  // The example's policy challenges a trade from 0.90: the shadow would have.
  Json ev = SampleEvent(5);
  ev["event_id"] = EventId(100999999);
  ev["time"] = Time(10 * (kWarm + kMeasured));
  Decision d;
  ASSERT_TRUE(engine->Decide(ev.dump(), &d).ok());
  ASSERT_EQ(d.shadow.size(), 1u) << d.json;
  EXPECT_EQ(d.shadow[0].action, "challenge") << d.json;
  EXPECT_NE(d.action, "challenge") << d.json;
}

// A shadow challenger that scores as the champion does fires the same rules:
// they are not repeated in its entry.
TEST_F(EngineTest, AShadowEntryListsNoRulesWhenTheyAreTheDecisions) {
  const std::string policy = (dir_ / "policy.yaml").string();
  WriteText(policy, kScorePolicy);
  const std::string twin = CopyModel("twin");
  auto engine = Open(Config("  deposit:\n    champion: {name: exchange, bundle: " + Example() +
                                "/model}\n    challengers:\n      - {name: twin, bundle: " + twin +
                                ", mode: shadow}\n",
                            policy));
  ASSERT_NE(engine, nullptr);
  Decision d;
  ASSERT_TRUE(engine->Decide(Deposit(300000100, 2000100, 0), &d).ok());
  ASSERT_EQ(d.shadow.size(), 1u) << d.json;
  EXPECT_EQ(d.shadow[0].action, d.action);
  EXPECT_EQ(d.shadow[0].decided_by, d.decided_by);
  EXPECT_FALSE(d.shadow[0].rules_differ);
  EXPECT_FALSE(Json::parse(d.json)["shadow"][0].contains("rules")) << d.json;
}

// --- reloads ------------------------------------------------------------------

// A withdrawal and a deposit of a new user, which no rule of the example's
// policy blocks.
std::pair<std::string, std::string> WithdrawalAndDeposit(int64_t id, int64_t t) {
  Json w = SampleEvent(6);
  w["event_id"] = EventId(id);
  w["time"] = Time(t);
  return {w.dump(), Deposit(id + 1, 3000000 + static_cast<int>(id % 1000), t + 1)};
}

TEST_F(EngineTest, KeepsTheRunningModelWhenItsReloadIsBrokenAndNamesIt) {
  const std::string model = CopyModel("model");
  const std::string config = Config("  deposit: {champion: {name: exchange, bundle: " + model + "}}\n");
  auto engine = Open(config);
  ASSERT_NE(engine, nullptr);
  Decision d;
  ASSERT_TRUE(engine->Decide(Deposit(300000001, 3000001, 0), &d).ok());
  const std::string before = d.model;
  ASSERT_THAT(before, ::testing::StartsWith("exchange@"));

  WriteText(fs::path(model) / "model.json", "{\"learner\": ");
  absl::Status s = engine->Reload();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr("model exchange"));
  EXPECT_THAT(Msg(s), HasSubstr("model.json"));
  EXPECT_THAT(Msg(s), HasSubstr("keeping the last good version"));
  EXPECT_THAT(engine->ModelsJson(), HasSubstr("reload_errors"));

  ASSERT_TRUE(engine->Decide(Deposit(300000002, 3000002, 60), &d).ok());
  EXPECT_EQ(d.status, Decision::Status::kDecided);
  EXPECT_EQ(d.model, before);
  EXPECT_EQ(d.path, "model");
  EXPECT_FALSE(std::isnan(d.score));

  // Mended, it reloads cleanly (the same file: the same version).
  fs::copy_file(Example() + "/model/model.json", fs::path(model) / "model.json",
                fs::copy_options::overwrite_existing);
  EXPECT_TRUE(engine->Reload().ok());
  EXPECT_THAT(engine->ModelsJson(), ::testing::Not(HasSubstr("reload_errors")));

  // A bundle gone altogether is a model that fails to load like any other:
  // the rest of the reload is taken, this model keeps its last good version.
  fs::remove_all(model);
  s = engine->Reload();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr("vigil.yaml:"));
  EXPECT_THAT(Msg(s), HasSubstr("no such model bundle"));
  ASSERT_TRUE(engine->Decide(Deposit(300000003, 3000003, 120), &d).ok());
  EXPECT_EQ(d.model, before);
  EXPECT_EQ(d.path, "model");
}

TEST_F(EngineTest, RefusesToStartWhenAModelBundleIsMissingAndSaysWhere) {
  auto e = Engine::Open({.config_path = Config("  deposit: {champion: {name: exchange, bundle: " +
                                               (dir_ / "no-such-model").string() + "}}\n"),
                         .model_override = "",
                         .offline = true});
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(Msg(e.status()), HasSubstr("vigil.yaml:"));
  EXPECT_THAT(Msg(e.status()),
              HasSubstr((dir_ / "no-such-model").string() + ": no such model bundle"));
}

TEST_F(EngineTest, KeepsModelsAndPolicyWhenThePolicyOfAReloadIsBroken) {
  const std::string model = CopyModel("model");
  const std::string policy = (dir_ / "policy.yaml").string();
  WriteText(policy, kBlockingPolicy);
  const std::string config = Config("  deposit: {champion: {name: exchange, bundle: " + model + "}}\n", policy);
  auto engine = Open(config);
  ASSERT_NE(engine, nullptr);
  Decision d;
  ASSERT_TRUE(engine->Decide(Deposit(300000001, 3000001, 0), &d).ok());
  const std::string model_before = d.model;
  EXPECT_EQ(d.action, "block");
  const std::string models_before = engine->ModelsJson();

  // A new model (another base score: another version) and a broken policy.
  std::string json = ReadText(fs::path(model) / "model.json");
  const size_t at = json.find("\"base_score\":\"5E-1\"");
  ASSERT_NE(at, std::string::npos);
  json.replace(at + 14, 4, "4E-1");
  WriteText(fs::path(model) / "model.json", json);
  WriteText(policy, std::string(kBlockingPolicy) + "  surprise: [\n");
  absl::Status s = engine->Reload();
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(absl::IsUnavailable(s)) << s;  // not "reloaded with warnings": nothing changed
  EXPECT_THAT(Msg(s), HasSubstr("policy.yaml"));
  EXPECT_EQ(engine->ModelsJson(), models_before);

  ASSERT_TRUE(engine->Decide(Deposit(300000002, 3000002, 60), &d).ok());
  EXPECT_EQ(d.model, model_before);
  EXPECT_EQ(d.action, "block");
  EXPECT_EQ(d.decided_by, "threshold");

  // The policy mended, the same reload takes the new model.
  WriteText(policy, kBlockingPolicy);
  ASSERT_TRUE(engine->Reload().ok());
  ASSERT_TRUE(engine->Decide(Deposit(300000003, 3000003, 120), &d).ok());
  EXPECT_THAT(d.model, ::testing::StartsWith("exchange@"));
  EXPECT_NE(d.model, model_before);
}

TEST_F(EngineTest, AppliesOnModelUnavailableWhenAReloadedModelHasNoEarlierVersion) {
  const std::string policy = (dir_ / "policy.yaml").string();
  WriteText(policy, kBlockingPolicy);
  const std::string good = Example() + "/model";
  auto engine = Open(Config("  deposit: {champion: {name: exchange, bundle: " + good + "}}\n"
                            "  withdrawal: {champion: {name: exchange, bundle: " + good + "}}\n",
                            policy));
  ASSERT_NE(engine, nullptr);
  // vigil.yaml now names models never loaded before, whose bundle is broken:
  // a new champion for both types, and an A/B challenger for deposits.
  const std::string broken = CopyModel("broken");
  WriteText(fs::path(broken) / "model.json", "{}");
  Config("  deposit: {champion: {name: exchange, bundle: " + good + "}, challengers: [{name: fresh_ab, bundle: " +
             broken + ", mode: ab, share: 0.5}]}\n"
             "  withdrawal: {champion: {name: fresh, bundle: " + broken + "}}\n",
         policy);
  absl::Status s = engine->Reload();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr("model fresh"));
  EXPECT_THAT(Msg(s), HasSubstr("no earlier version"));
  Json models = Json::parse(engine->ModelsJson());
  int unavailable = 0;
  for (const Json& m : models["models"]) unavailable += m["name"].is_null();
  EXPECT_EQ(unavailable, 2);

  // Withdrawals fail closed: the policy's closed_action, no score.
  Decision d;
  auto [withdrawal, deposit] = WithdrawalAndDeposit(400000001, 0);
  ASSERT_TRUE(engine->Decide(withdrawal, &d).ok());
  ASSERT_EQ(d.status, Decision::Status::kDecided);
  EXPECT_EQ(d.path, "fail_closed");
  EXPECT_EQ(d.action, "review");
  EXPECT_EQ(d.decided_by, "on_model_unavailable");
  EXPECT_TRUE(std::isnan(d.score));
  EXPECT_EQ(d.model, "");
  EXPECT_TRUE(Json::parse(d.json)["score"].is_null());
  EXPECT_EQ(d.arm, "fresh");  // the configured champion's arm, though it is not loaded
  EXPECT_EQ(d.propensity, 1);

  // Deposits fail open for the users of the broken A/B arm; the champion's
  // users are decided by the model as before.
  int fail_open = 0, by_model = 0;
  for (int u = 0; u < 40; ++u) {
    ASSERT_TRUE(engine->Decide(Deposit(400000100 + u, 4000000 + u, 10 + u), &d).ok());
    ASSERT_EQ(d.status, Decision::Status::kDecided);
    if (d.arm == "fresh_ab") {
      ++fail_open;
      EXPECT_EQ(d.path, "fail_open");
      EXPECT_EQ(d.action, "allow");
      EXPECT_TRUE(std::isnan(d.score));
    } else {
      ++by_model;
      EXPECT_EQ(d.arm, "exchange");
      EXPECT_EQ(d.path, "model");
      EXPECT_EQ(d.action, "block");  // the threshold at 0
    }
  }
  EXPECT_GT(fail_open, 0);
  EXPECT_GT(by_model, 0);

  // A type without a model is decided by rules alone.
  Json trade = SampleEvent(5);
  trade["event_id"] = EventId(400000900);
  trade["time"] = Time(100);
  ASSERT_TRUE(engine->Decide(trade.dump(), &d).ok());
  EXPECT_EQ(d.path, "rules_only");
}

// --- what Open refuses --------------------------------------------------------

TEST_F(EngineTest, RefusesABundleTrainedOnAnotherFeatureSpec) {
  const std::string model = CopyModel("model");
  std::string manifest = ReadText(fs::path(model) / "manifest.json");
  const std::string key = "\"feature_spec_hash\": \"";
  const size_t at = manifest.find(key);
  ASSERT_NE(at, std::string::npos);
  manifest.replace(at + key.size(), 64, std::string(64, '0'));
  WriteText(fs::path(model) / "manifest.json", manifest);
  auto e = Engine::Open({.config_path = Config("  deposit: {champion: {name: exchange, bundle: " + model + "}}\n"),
                         .model_override = "",
                         .offline = true});
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(e.status())) << e.status();
  EXPECT_THAT(Msg(e.status()), HasSubstr("another spec"));
  EXPECT_THAT(Msg(e.status()), HasSubstr("vigil.yaml:"));
  EXPECT_THAT(Msg(e.status()), HasSubstr("train again"));
}

TEST_F(EngineTest, RefusesAModelForAnEventTypeTheSpecDoesNotScore) {
  auto e = Engine::Open({.config_path = Config("  login: " + Example() + "/model\n"),
                         .model_override = "",
                         .offline = true});
  ASSERT_FALSE(e.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(e.status())) << e.status();
  EXPECT_THAT(Msg(e.status()), HasSubstr("'login' is not in score_on"));
  EXPECT_THAT(Msg(e.status()), HasSubstr("vigil.yaml:"));

  e = Engine::Open({.config_path = Config("  teleport: " + Example() + "/model\n"),
                    .model_override = "",
                    .offline = true});
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(Msg(e.status()), HasSubstr("'teleport' is not an event type"));
}

}  // namespace
}  // namespace vigil
