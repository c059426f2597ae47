#include "sim/simulator.h"

#include <map>
#include <set>
#include <string>

#include "core/strings.h"
#include "event/event_reader.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::sim {
namespace {

std::string Simulated(const SimConfig& c, SimStats* stats = nullptr) {
  std::string out;
  SimStats s = SimulateTo(c, [&](std::string_view line) {
    out.append(line);
    out.push_back('\n');
  });
  if (stats) *stats = s;
  return out;
}

SimConfig Small(uint64_t seed, int64_t users = 300, int64_t days = 7) {
  SimConfig c;
  c.seed = seed;
  c.users = users;
  c.days = days;
  return c;
}

TEST(SimulatorTest, ByteIdenticalForASeedAndDifferentForAnother) {
  const std::string a = Simulated(Small(7)), b = Simulated(Small(7)), c = Simulated(Small(8));
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST(SimulatorTest, EventsAreInTimeOrderWithIncreasingIds) {
  const std::string out = Simulated(Small(3));
  std::string prev_time, prev_id;
  for (std::string_view line : StrSplit(out, '\n')) {
    if (line.empty()) continue;
    const size_t id = line.find("\"event_id\":\"") + 12;
    const size_t t = line.find("\"time\":\"") + 8;
    const std::string ev(line.substr(id, 13)), time(line.substr(t, 24));
    ASSERT_GT(ev, prev_id);
    ASSERT_GE(time, prev_time) << line;
    prev_id = ev;
    prev_time = time;
  }
}

TEST(SimulatorTest, EveryScenarioAndItsDelayedLabelsInTwoWeeksOfThreeThousandUsers) {
 for (uint64_t seed : {1, 2, 3}) {
  SCOPED_TRACE(StrCat("seed ", seed));
  SimStats stats;
  const std::string out = Simulated(Small(seed, 3000, 14), &stats);
  for (const char* s : {"bot", "promo_abuse", "card_fraud", "account_takeover", "fake_signup"}) {
    EXPECT_GT(stats.by_scenario[s], 0) << s;
    EXPECT_NE(out.find(StrCat("\"scenario\":\"", s, "\"")), std::string::npos) << s;
  }
  for (const char* k : {"chargeback", "account_takeover", "promo_abuse", "bot", "fake_signup"}) {
    EXPECT_NE(out.find(StrCat("\"event_type\":\"label\",\"time\":")), std::string::npos);
    EXPECT_NE(out.find(StrCat("\"kind\":\"", k, "\"")), std::string::npos) << k;
  }
  EXPECT_GT(stats.labels, 0);
  EXPECT_GT(stats.labels_after_end, 0);  // most chargebacks come after two weeks
 }
}

TEST(SimulatorTest, MemoryDoesNotGrowWithDays) {
  // A proxy: a longer run keeps the same users; events grow with days.
  SimStats a, b;
  Simulated(Small(5, 200, 5), &a);
  Simulated(Small(5, 200, 20), &b);
  EXPECT_GT(b.events, 3 * a.events);
}

TEST(SimConfigTest, YamlOverridesAndErrorsNamePositions) {
  auto y = core::ConfigNode::LoadString("users: 50\nbot_accounts: 0\nstart: 2023-05-01\n", "sim.yaml");
  ASSERT_TRUE(y.ok());
  SimConfig c;
  ASSERT_TRUE(c.Merge(*y).ok());
  EXPECT_EQ(c.users, 50);
  EXPECT_EQ(c.bot_accounts, 0);
  EXPECT_EQ(c.start_ms, 1682899200000);
  auto bad = core::ConfigNode::LoadString("users: 5\nbots: 3\n", "sim.yaml");
  auto st = c.Merge(*bad);
  EXPECT_THAT(st.message(), testing::HasSubstr("sim.yaml:2:"));
  EXPECT_THAT(st.message(), testing::HasSubstr("unknown key 'bots'"));
}

}  // namespace
}  // namespace vigil::sim
