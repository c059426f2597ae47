#include "feature/engine.h"

#include <bit>
#include <cmath>
#include <cstdio>
#include <random>
#include <set>

#include "core/alloc_counter.h"
#include "core/hash.h"
#include "core/sealed.h"
#include "core/strings.h"
#include "core/time.h"
#include "event/event_reader.h"
#include "event/validator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::feature {
namespace {

constexpr int64_t kMin = 60'000;
constexpr int64_t kHour = 3'600'000;
constexpr int64_t kDay = 86'400'000;

std::shared_ptr<const event::Schema> Schema() {
  // (Each event is read by a reader of its own: no duplicate-id window, which
  // is sized for a million ids up front.)
  auto s = event::Schema::LoadString(R"(
time_bounds: {max_behind_latest: off, max_ahead_of_latest: off}
duplicates: {memory: 0}
event_types:
  tx:
    fields:
      user: {type: string, required: true, role: entity}
      dev: {type: string, role: entity}
      amount: {type: float, required: true}
      fraud: {type: int, role: label, known_after: 1d}
  login:
    fields:
      user: {type: string, required: true, role: entity}
)",
                                     "schema.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

// Runs JSON Lines through a fresh engine; returns the features of each
// scored event (NaN where missing) in order.
class Harness {
 public:
  explicit Harness(std::string_view features, std::string_view head = "") : schema_(Schema()) {
    auto spec = FeatureSpec::LoadString(
        StrCat("score_on: [tx]\nlateness: 1h\n", head, "features:\n", features), "f.yaml", schema_);
    EXPECT_TRUE(spec.ok()) << spec.status();
    spec_ = *spec;
    engine_ = std::make_unique<FeatureEngine>(spec_);
  }
  // One event; returns its features (empty if not scored or too late).
  std::vector<double> Event(std::string_view type, int64_t t_ms, std::string_view user,
                            double amount = 1, std::string_view extra = "") {
    return EventAmount(type, t_ms, user, StrCat(amount), extra);
  }
  // Event with the amount as written in the JSON.
  std::vector<double> EventAmount(std::string_view type, int64_t t_ms, std::string_view user,
                                  std::string_view amount, std::string_view extra = "") {
    const std::string line = StrCat(R"({"event_type":")", type, R"(","event_id":"e)", ++n_,
                                    R"(","time":")", core::FormatTimestamp(t_ms), R"(","user":")", user, "\"",
                                    type == "tx" ? StrCat(",\"amount\":", amount) : "", extra, "}\n");
    auto r = event::EventReader::FromString(line, schema_, &hasher_);
    EXPECT_TRUE(r.ok());
    event::Record rec;
    event::Rejection rej;
    EXPECT_EQ((*r)->Next(&rec, &rej), event::EventReader::Result::kRecord) << rej.violations[0].reason;
    std::vector<double> out(spec_->features.size(), -999);
    last_ = engine_->Process(rec, out);
    if (last_ != FeatureEngine::Result::kScored) return {};
    return out;
  }
  // A label event naming an event or an entity.
  void Label(int64_t t_ms, std::string_view target, int value, std::string_view kind = "chargeback") {
    const std::string line =
        StrCat(R"({"event_type":"label","event_id":"l)", ++n_, R"(","time":")",
               core::FormatTimestamp(t_ms), R"(","kind":")", kind, R"(",)", target,
               R"(,"value":)", value, "}\n");
    auto r = event::EventReader::FromString(line, schema_, &hasher_);
    event::Record rec;
    event::Rejection rej;
    ASSERT_EQ((*r)->Next(&rec, &rej), event::EventReader::Result::kRecord) << rej.violations[0].reason;
    std::vector<double> out(spec_->features.size());
    EXPECT_EQ(engine_->Process(rec, out), FeatureEngine::Result::kNotScored);
  }
  FeatureEngine& engine() { return *engine_; }
  FeatureEngine::Result last() const { return last_; }

 private:
  event::PiiHasher hasher_{"k"};
  std::shared_ptr<const event::Schema> schema_;
  std::shared_ptr<const FeatureSpec> spec_;
  std::unique_ptr<FeatureEngine> engine_;
  FeatureEngine::Result last_{};
  int n_ = 0;
};

TEST(FeatureEngineTest, WindowSeesTheCurrentEventAndEarlierOnesNeverLaterOnes) {
  Harness h("  - {name: n, agg: count, key: user, window: 1h}\n");
  EXPECT_EQ(h.Event("tx", 10 * kHour, "a")[0], 1);
  // Same millisecond, given later: sees the first, which did not see it.
  EXPECT_EQ(h.Event("tx", 10 * kHour, "a")[0], 2);
  EXPECT_EQ(h.Event("tx", 10 * kHour + kHour - 1, "a")[0], 3);
  // (t - 1h, t]: events exactly 1h old have left.
  EXPECT_EQ(h.Event("tx", 11 * kHour, "a")[0], 2);
  EXPECT_EQ(h.Event("tx", 11 * kHour, "b")[0], 1);
}

TEST(FeatureEngineTest, LagWindowReadsOnlyThePast) {
  Harness h("  - {name: r, agg: mean, of: fraud, key: user, window: 1d, lag: 1d, default: 0}\n"
            "  - {name: n, agg: count, key: user, window: 1d, lag: 1d}\n");
  auto f = h.Event("tx", 0, "a", 1, ",\"fraud\":1");
  EXPECT_EQ(f[0], 0);  // empty window: the default
  EXPECT_EQ(f[1], 0);
  h.Event("tx", kHour, "a", 1, ",\"fraud\":0");
  f = h.Event("tx", kDay, "a", 1, ",\"fraud\":0");  // window (-1d, 0]: the first event only
  EXPECT_EQ(f[1], 1);
  EXPECT_EQ(f[0], 1);
  f = h.Event("tx", kDay + kHour, "a", 1, ",\"fraud\":0");  // (−23h, 1h]: both
  EXPECT_EQ(f[1], 2);
  EXPECT_EQ(f[0], 0.5);
}

TEST(FeatureEngineTest, TimeSinceLastAndFirstSeenExcludeTheCurrentEvent) {
  Harness h("  - {name: since, agg: time_since_last, key: user}\n"
            "  - {name: age, agg: first_seen, key: user}\n");
  auto f = h.Event("tx", 5 * kMin, "a");
  EXPECT_TRUE(std::isnan(f[0]));
  EXPECT_TRUE(std::isnan(f[1]));
  f = h.Event("tx", 7 * kMin, "a");
  EXPECT_EQ(f[0], 2 * kMin);
  EXPECT_EQ(f[1], 2 * kMin);
  f = h.Event("tx", 10 * kMin, "a");
  EXPECT_EQ(f[0], 3 * kMin);
  EXPECT_EQ(f[1], 5 * kMin);
  // Late (within the lateness bound): after the entity's first, an age; before
  // it, not seen before: missing (as time_since_last, whose last is later).
  f = h.Event("tx", 6 * kMin, "a");
  EXPECT_TRUE(std::isnan(f[0]));
  EXPECT_EQ(f[1], 1 * kMin);
  f = h.Event("tx", 4 * kMin, "a");
  EXPECT_TRUE(std::isnan(f[0]));
  EXPECT_TRUE(std::isnan(f[1]));
}

TEST(FeatureEngineTest, OtherEventTypesFeedFeaturesOfScoredOnes) {
  Harness h("  - {name: logins, agg: count, key: user, window: 1h, on: [login]}\n");
  EXPECT_TRUE(h.Event("login", 0, "a").empty());
  EXPECT_EQ(h.last(), FeatureEngine::Result::kNotScored);
  h.Event("login", kMin, "a");
  EXPECT_EQ(h.Event("tx", 2 * kMin, "a")[0], 2);  // the tx itself is not a login
  EXPECT_EQ(h.Event("tx", 2 * kMin, "b")[0], 0);  // an entity never seen: the empty value
}

TEST(FeatureEngineTest, LateEventsWithinTheBoundAreAppliedAtTheirTimeBeyondItNot) {
  Harness h("  - {name: n, agg: count, key: user, window: 1h}\n");
  h.Event("tx", 10 * kHour, "a");
  // 30 minutes late (bound 1h): applied at its own time.
  EXPECT_EQ(h.Event("tx", 10 * kHour - 30 * kMin, "a")[0], 1);  // (9h30 - 1h, 9h30]
  EXPECT_EQ(h.Event("tx", 10 * kHour + kMin, "a")[0], 3);
  // 2 hours late: counted, not applied, NaN features.
  auto f = h.Event("tx", 8 * kHour, "a");
  EXPECT_TRUE(f.empty());
  EXPECT_EQ(h.last(), FeatureEngine::Result::kTooLate);
  EXPECT_EQ(h.Event("tx", 10 * kHour + 2 * kMin, "a")[0], 4);
  EXPECT_EQ(h.engine().Stats().too_late, 1);
  EXPECT_EQ(h.engine().Stats().late_applied, 1);
}

TEST(FeatureEngineTest, DerivedFeaturesReadAggregatesAndTheEvent) {
  Harness h("  - {name: avg, agg: mean, of: amount, key: user, window: 1d}\n"
            "  - {name: rel, expr: \"ratio(event.amount, features.avg, 0)\"}\n"
            "  - {name: big, expr: \"features.rel > 1.5\"}\n");
  h.Event("tx", 0, "a", 10);
  auto f = h.Event("tx", kMin, "a", 30);
  EXPECT_EQ(f[0], 20);
  EXPECT_EQ(f[1], 1.5);
  EXPECT_EQ(f[2], 0);
}

TEST(FeatureEngineTest, TupleKeysAndFilters) {
  Harness h("  - {name: n, agg: count, key: [user, dev], window: 1d}\n"
            "  - {name: big, agg: count, key: user, window: 1d, where: \"event.amount >= 100\"}\n");
  h.Event("tx", 0, "a", 100, ",\"dev\":\"d1\"");
  h.Event("tx", 1, "a", 5, ",\"dev\":\"d2\"");
  auto f = h.Event("tx", 2, "a", 200, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 2);
  EXPECT_EQ(f[1], 2);
  f = h.Event("tx", 3, "a", 1);  // no device: the tuple key is missing
  EXPECT_TRUE(std::isnan(f[0]));
  EXPECT_EQ(f[1], 2);
}

TEST(FeatureEngineTest, LifetimeAggregates) {
  Harness h("  - {name: n, agg: count, key: user, window: lifetime}\n"
            "  - {name: s, agg: sum, of: amount, key: user, window: lifetime}\n"
            "  - {name: sd, agg: stddev, of: amount, key: user, window: lifetime}\n"
            "  - {name: d, agg: decayed_sum, of: amount, key: user, window: lifetime, half_life: 1h}\n"
            "  - {name: g, agg: gap_mean, key: user, window: lifetime}\n"
            "  - {name: cv, agg: gap_cv, key: user, window: lifetime}\n"
            "  - {name: dc, agg: distinct_count, of: dev, key: user, window: lifetime}\n");
  h.Event("tx", 0, "a", 2, ",\"dev\":\"x\"");
  h.Event("tx", kHour, "a", 4, ",\"dev\":\"y\"");
  auto f = h.Event("tx", 2 * kHour, "a", 6, ",\"dev\":\"x\"");
  EXPECT_EQ(f[0], 3);
  EXPECT_EQ(f[1], 12);
  EXPECT_DOUBLE_EQ(f[2], 2);
  EXPECT_DOUBLE_EQ(f[3], 6 + 4 * 0.5 + 2 * 0.25);
  EXPECT_EQ(f[4], kHour);
  EXPECT_EQ(f[5], 0);  // perfectly regular: a bot's signature
  EXPECT_EQ(f[6], 2);
}

TEST(FeatureEngineTest, IdentityGraphJoinsAccountsThatShareADevice) {
  Harness h("  - {name: size, agg: cluster_size}\n"
            "  - {name: accounts, agg: cluster_accounts}\n"
            "  - {name: spent, agg: cluster_counter, counter: spent}\n",
            "identity:\n  account: user\n  links: [dev]\n"
            "  counters: {spent: {on: [tx], of: amount}}\n");
  auto f = h.Event("tx", 0, "a", 10, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 2);  // a and d1
  EXPECT_EQ(f[1], 1);
  EXPECT_EQ(f[2], 10);
  f = h.Event("tx", kMin, "b", 5, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 3);
  EXPECT_EQ(f[1], 2);
  EXPECT_EQ(f[2], 15);  // the ring's total
  f = h.Event("tx", 2 * kMin, "c", 1);
  EXPECT_EQ(f[0], 1);
  EXPECT_EQ(f[1], 1);
}

// An empty string is no key to link on (as an empty CSV cell is none):
// accounts whose client sends "" for its device are not one ring.
TEST(FeatureEngineTest, IdentityGraphDoesNotLinkOnEmptyStrings) {
  Harness h(
      "  - {name: size, agg: cluster_size}\n"
      "  - {name: accounts, agg: cluster_accounts}\n",
      "identity:\n  account: user\n  links: [dev]\n");
  h.Event("tx", 0, "a", 1, ",\"dev\":\"\"");
  auto f = h.Event("tx", kMin, "b", 1, ",\"dev\":\"\"");
  EXPECT_EQ(f[0], 1);
  EXPECT_EQ(f[1], 1);
  f = h.Event("tx", 2 * kMin, "", 1, ",\"dev\":\"d1\"");  // no account: no cluster
  EXPECT_TRUE(std::isnan(f[0]));
  f = h.Event("tx", 3 * kMin, "c", 1, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 2);  // c and d1 alone
}

// The same for aggregates: "" is no key, whether a field, a part of a
// tuple or what an expression gives; the event updates nothing there.
TEST(FeatureEngineTest, AnEmptyStringKeysNoAggregate) {
  Harness h(
      "  - {name: n, agg: count, key: dev, window: 1d}\n"
      "  - {name: users, agg: distinct_count, of: user, key: dev, window: 1d}\n"
      "  - {name: pair, agg: count, key: [user, dev], window: 1d}\n"
      "  - {name: e, agg: count, key: \"coalesce(event.dev, 'x')\", window: 1d}\n"
      "  - {name: u, agg: count, key: user, window: 1d}\n");
  for (int i = 0; i < 3; ++i) {
    auto f = h.Event("tx", i * kMin, StrCat("u", i), 1, ",\"dev\":\"\"");
    for (int k = 0; k < 4; ++k) EXPECT_TRUE(std::isnan(f[k])) << i << " " << k << " " << f[k];
    EXPECT_EQ(f[4], 1);  // the user's own count goes on
  }
  auto f = h.Event("tx", 5 * kMin, "u9", 1, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 1);
  EXPECT_EQ(f[1], 1);
  EXPECT_EQ(f[3], 1);
  // Nor is "" a value: accounts a client sends as "" are not one more
  // distinct account of the device.
  Harness g("  - {name: users, agg: distinct_count, of: dev, key: user, window: 1d}\n");
  g.Event("tx", 0, "a", 1, ",\"dev\":\"d1\"");
  g.Event("tx", kMin, "a", 1, ",\"dev\":\"\"");
  EXPECT_EQ(g.Event("tx", 2 * kMin, "a", 1, ",\"dev\":\"\"")[0], 1);
}

TEST(FeatureEngineTest, LabelEventsFeedLabelAwareAggregates) {
  Harness h("  - {name: cb, agg: count, key: dev, on: [label], window: 30d,"
            " where: \"event.kind == 'chargeback' and event.value == 1\"}\n"
            "  - {name: user_labels, agg: sum, of: value, key: user, on: [label], window: lifetime}\n");
  h.Event("tx", 0, "a", 1, ",\"dev\":\"d1\"");  // e1
  h.Event("tx", kMin, "b", 1, ",\"dev\":\"d1\"");  // e2
  auto f = h.Event("tx", 2 * kMin, "c", 1, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 0);
  // A chargeback on e1 reaches its device through the event it names; a bot
  // finding names the user directly.
  h.Label(kDay, R"("target_event_id":"e1")", 1);
  h.Label(kDay, R"("target_entity":{"key":"user","value":"b"})", 1, "bot");
  h.Label(kDay, R"("target_event_id":"nope")", 1);  // unknown event: no entity
  f = h.Event("tx", kDay + kMin, "b", 1, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 1);  // the chargeback counts for d1
  EXPECT_EQ(f[1], 1);  // b's label (e1's user a has one too, but this is b)
  h.Label(2 * kDay, R"("target_event_id":"e2")", 1);
  f = h.Event("tx", 2 * kDay + kMin, "a", 1, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 2);
  EXPECT_EQ(f[1], 1);  // a: the chargeback on e1 (its user); e2 was b's
  f = h.Event("tx", 40 * kDay, "a", 1, ",\"dev\":\"d1\"");
  EXPECT_EQ(f[0], 0);  // out of the 30-day window
}

TEST(FeatureEngineTest, LabelIndexRemembersTheLastLabelJoinMemoryEventsThroughChurn) {
  // Enough events to grow the index's map incrementally and then to evict
  // from the ring many times over.
  constexpr int kMemory = 15000, kEvents = 40000;
  Harness h("  - {name: cb, agg: count, key: dev, on: [label], window: lifetime}\n",
            StrCat("limits: {label_join_memory: ", kMemory, "}\n"));
  for (int i = 1; i <= kEvents; ++i) h.Event("tx", i, "u", 1, StrCat(",\"dev\":\"d", i, "\""));
  std::string snap;
  h.engine().SerializeTo(&snap);
  FeatureEngine copy(std::shared_ptr<const FeatureSpec>(&h.engine().spec(), [](const FeatureSpec*) {}));
  ASSERT_TRUE(copy.Restore(snap).ok());
  std::string again;
  copy.SerializeTo(&again);
  EXPECT_EQ(again, snap);
  // The oldest event kept is e(kEvents - kMemory + 1); the one before it is
  // forgotten, so its label reaches no device.
  const int oldest = kEvents - kMemory + 1;
  h.Label(kDay, StrCat(R"("target_event_id":"e)", oldest, "\""), 1);
  h.Label(kDay, StrCat(R"("target_event_id":"e)", oldest - 1, "\""), 1);
  EXPECT_EQ(h.Event("tx", kDay + 1, "u", 1, StrCat(",\"dev\":\"d", oldest, "\""))[0], 1);
  EXPECT_EQ(h.Event("tx", kDay + 2, "u", 1, StrCat(",\"dev\":\"d", oldest - 1, "\""))[0], 0);
}

TEST(FeatureEngineTest, LifetimeDistinctCountsTurnToHyperLogLogPastTheLimit) {
  Harness h("  - {name: devs, agg: distinct_count, of: dev, key: user, window: lifetime}\n",
            "limits: {distinct_exact_limit: 100}\n");
  std::vector<double> f;
  for (int i = 0; i < 100; ++i) f = h.Event("tx", i, "a", 1, StrCat(",\"dev\":\"d", i % 100, "\""));
  EXPECT_EQ(f[0], 100);  // exact up to the limit
  for (int i = 100; i < 5000; ++i) f = h.Event("tx", i, "a", 1, StrCat(",\"dev\":\"d", i, "\""));
  EXPECT_NEAR(f[0], 5000, 5000 * 0.05);
  std::string snap;
  h.engine().SerializeTo(&snap);
  FeatureEngine copy(std::shared_ptr<const FeatureSpec>(&h.engine().spec(), [](const FeatureSpec*) {}));
  EXPECT_TRUE(copy.Restore(snap).ok());
}

TEST(FeatureEngineTest, CountDecayedSumStaysACountWhenAFieldJoinsItsStream) {
  Harness h("  - {name: n, agg: count, key: user, window: 1h}\n"
            "  - {name: d, agg: decayed_sum, key: user, window: lifetime, half_life: 1h}\n"
            "  - {name: s, agg: sum, of: amount, key: user, window: 1h}\n");
  std::vector<double> f;
  for (int i = 0; i < 3; ++i) f = h.Event("tx", 0, "a", 100);
  EXPECT_EQ(f[1], 3);
  EXPECT_EQ(f[2], 300);
}

TEST(FeatureEngineTest, WindowSumsDoNotDriftWhenALargeValueLeaves) {
  Harness h("  - {name: s, agg: sum, of: amount, key: user, window: 1h}\n");
  h.Event("tx", 0, "a", 1e17);
  h.Event("tx", kMin, "a", 1);
  h.Event("tx", 2 * kMin, "a", 1);
  EXPECT_EQ(h.Event("tx", kHour + kMin / 2, "a", 0)[0], 2);
}

// Two values whose sum overflows a double make the window's sum inf while
// both are in it; once one leaves, inf − inf must not leave the entity's sum,
// mean and stddev NaN for good.
TEST(FeatureEngineTest, AWindowWhoseSumOverflowedRecoversOnceTheValuesLeave) {
  Harness h(
      "  - {name: s, agg: sum, of: amount, key: user, window: 1h}\n"
      "  - {name: m, agg: mean, of: amount, key: user, window: 1h}\n"
      "  - {name: sd, agg: stddev, of: amount, key: user, window: 1h}\n");
  h.Event("tx", 0, "a", 1e308);
  const auto both = h.Event("tx", kMin, "a", 1e308);
  EXPECT_EQ(both[0], std::numeric_limits<double>::infinity());
  const auto one = h.Event("tx", kHour + kMin / 2, "a", 2);
  EXPECT_EQ(one[0], 1e308 + 2);
  EXPECT_EQ(one[1], (1e308 + 2) / 2);
  const auto none = h.Event("tx", 5 * kHour, "a", 1);
  EXPECT_EQ(none[0], 1);
  EXPECT_EQ(none[1], 1);
  h.Event("tx", 5 * kHour + 1, "a", 3);
  EXPECT_EQ(h.Event("tx", 5 * kHour + 2, "a", 5)[2], 2);
}

// A float field as the key: one entity per number (floats carry no hash of
// their own in a record; each event's slot once held whatever came before).
TEST(FeatureEngineTest, AFloatFieldKeysOneEntityPerNumber) {
  Harness h("  - {name: n, agg: count, key: amount, window: 1h}\n");
  EXPECT_EQ(h.Event("tx", 0, "a", 1.5)[0], 1);
  EXPECT_EQ(h.Event("tx", 1, "b", 2.5)[0], 1);
  EXPECT_EQ(h.EventAmount("tx", 2, "c", "1.50")[0], 2);
  EXPECT_EQ(h.Event("tx", 3, "d", 2.5)[0], 2);
}

// Numbers that compare equal are one value and one key: 0 and -0 alike.
TEST(FeatureEngineTest, ZeroAndMinusZeroAreOneValueAndOneKey) {
  Harness h(
      "  - {name: d, agg: distinct_count, of: amount, key: user, window: 1h}\n"
      "  - {name: dl, agg: distinct_count, of: amount, key: user, window: lifetime}\n"
      "  - {name: n, agg: count, key: \"coalesce(event.amount, 5)\", window: 1h}\n");
  h.EventAmount("tx", 0, "a", "0.0");
  h.EventAmount("tx", 1, "a", "-0.0");
  const auto f = h.EventAmount("tx", 2, "a", "-0");
  EXPECT_EQ(f[0], 1);
  EXPECT_EQ(f[1], 1);
  EXPECT_EQ(f[2], 3);
}

// Values so far apart that their squared deviations overflow: the windowed
// stddev is still the double it is.
TEST(FeatureEngineTest, WindowedStddevOfValuesFarApartDoesNotOverflow) {
  Harness h("  - {name: sd, agg: stddev, of: amount, key: user, window: 1h}\n");
  h.Event("tx", 0, "a", 1e300);
  const double sd = h.Event("tx", 1, "a", 2)[0];
  EXPECT_NEAR(sd, (1e300 - 2) / std::sqrt(2.0), 1e286);  // 7.07e299
  h.Event("tx", 2, "a", -1.5e308);
  EXPECT_TRUE(std::isfinite(h.Event("tx", 3, "a", 1.5e308)[0]));
}

TEST(FeatureEngineTest, RarelyReadWindowsDoNotPinOldEntries) {
  Harness h("  - {name: logins, agg: count, key: user, window: 1h, on: [login]}\n");
  h.Event("tx", 0, "a");
  for (int i = 1; i <= 20000; ++i) h.Event("login", i * kMin, "a");
  EXPECT_LT(h.engine().Stats().entries, 200);
  EXPECT_EQ(h.Event("tx", 20000 * kMin + 1, "a")[0], 60);
}

TEST(FeatureEngineTest, ExpressionKeysGroupByWhatTheyCompute) {
  // Accounts per device prefix: the key is an expression over the event.
  Harness h("  - {name: n, agg: count, key: \"ip_prefix(event.dev, 24)\", window: 1h}\n"
            "  - {name: users, agg: distinct_count, of: user, key: \"ip_prefix(event.dev, 24)\", window: 1h}\n");
  h.Event("tx", 0, "a", 1, ",\"dev\":\"10.0.0.1\"");
  h.Event("tx", 1, "b", 1, ",\"dev\":\"10.0.0.2\"");
  auto f = h.Event("tx", 2, "c", 1, ",\"dev\":\"10.0.0.77\"");
  EXPECT_EQ(f[0], 3);
  EXPECT_EQ(f[1], 3);
  f = h.Event("tx", 3, "a", 1, ",\"dev\":\"10.0.1.1\"");  // another /24
  EXPECT_EQ(f[0], 1);
  f = h.Event("tx", 4, "a", 1, ",\"dev\":\"not-an-ip\"");  // null: no key
  EXPECT_TRUE(std::isnan(f[0]));
}

TEST(FeatureEngineTest, IdleEntitiesAreForgottenAfterTheirTtl) {
  Harness h("  - {name: n, agg: count, key: user, window: 1h}\n"
            "  - {name: age, agg: first_seen, key: user}\n",
            "limits: {entity_ttl: 2h}\n");
  h.Event("tx", 0, "a");
  h.Event("tx", kMin, "a");
  h.Event("tx", 4 * kHour, "b");  // the hourly sweep forgets a (idle 4h > 2h)
  EXPECT_EQ(h.engine().Stats().expired, 1);
  auto f = h.Event("tx", 4 * kHour + 1, "a");
  EXPECT_EQ(f[0], 1);
  EXPECT_TRUE(std::isnan(f[1]));  // a is new again
}

// The places of forgotten entities are reused: a new entity there starts
// with nothing of the old one (its buffers, distinct values, lifetime moments
// and decayed sums), feature for feature what a fresh engine gives it.
TEST(FeatureEngineTest, EntitiesMadeWhereForgottenOnesWereStartEmpty) {
  constexpr std::string_view kFeatures =
      "  - {name: n, agg: count, key: user, window: 1h}\n"
      "  - {name: s, agg: sum, of: amount, key: user, window: 1h}\n"
      "  - {name: devs, agg: distinct_count, of: dev, key: user, window: 1h}\n"
      "  - {name: top, agg: max, of: amount, key: user, window: lifetime}\n"
      "  - {name: all_devs, agg: distinct_count, of: dev, key: user, window: lifetime}\n"
      "  - {name: d, agg: decayed_sum, of: amount, key: user, window: lifetime, half_life: 1h}\n"
      "  - {name: age, agg: first_seen, key: user}\n"
      "  - {name: gaps, agg: gap_cv, key: user, window: 1h}\n";
  constexpr std::string_view kLimits = "limits: {entity_ttl: 2h}\n";
  Harness churned(kFeatures, kLimits), fresh(kFeatures, kLimits);
  for (int u = 0; u < 40; ++u) {
    for (int i = 0; i < 5; ++i) {
      churned.Event("tx", u * 1000 + i * 100, StrCat("old", u), 1000 + i,
                    StrCat(",\"dev\":\"d", i, "\""));
    }
  }
  // Four hours on, the sweep forgets every old user; the new ones take their places.
  for (int u = 0; u < 40; ++u) {
    for (int i = 0; i < 3; ++i) {
      const int64_t t = 4 * kHour + u * 1000 + i * 300;
      const std::string extra = StrCat(",\"dev\":\"n", u % 3, "\"");
      const std::vector<double> a = churned.Event("tx", t, StrCat("new", u), i + 1, extra);
      const std::vector<double> b = fresh.Event("tx", t, StrCat("new", u), i + 1, extra);
      ASSERT_EQ(a.size(), b.size());
      for (size_t f = 0; f < a.size(); ++f) {
        ASSERT_TRUE(a[f] == b[f] || (std::isnan(a[f]) && std::isnan(b[f])))
            << "user new" << u << " event " << i << " feature " << f << ": " << a[f] << " vs "
            << b[f];
      }
    }
  }
  const EngineStats c = churned.engine().Stats(), f = fresh.engine().Stats();
  EXPECT_EQ(c.entities, f.entities);
  EXPECT_EQ(c.expired, f.entities);  // the old users' states, as many
  EXPECT_EQ(c.entries, f.entries);
}

// An event of the brute-force references.
struct Ev {
  int64_t t;
  int user;
  double amount;
  int dev;
};

TEST(FeatureEngineTest, PerKeyCapMergesTheOldestEntriesIntoBucketsAndSaysSo) {
  Harness h("  - {name: n, agg: count, key: user, window: 1d}\n"
            "  - {name: all, agg: count, key: user, window: lifetime}\n"
            "  - {name: devs, agg: distinct_count, of: dev, key: user, window: 1d}\n",
            "limits: {max_entries_per_key: 16}\n");
  std::vector<double> f;
  auto dev = [](int i) { return i < 20 ? std::string("x") : StrCat("d", i); };
  for (int i = 0; i < 40; ++i) {
    f = h.Event("tx", i * kMin, "a", 1, StrCat(",\"dev\":\"", dev(i), "\""));
    // Buckets younger than 64 ms per ms of width are single minutes here:
    // the count stays exact.
    ASSERT_EQ(f[0], i + 1) << i;
    // Distinct values: those of the raw entries only, as documented: the
    // last `raw` events (two streams, the count's and the devices', hold the
    // same events).
    const int raw = static_cast<int>(h.engine().Stats().entries / 2);
    std::set<std::string> in;
    for (int j = i - raw + 1; j <= i; ++j) in.insert(dev(j));
    ASSERT_EQ(f[2], static_cast<double>(in.size())) << i;
  }
  EXPECT_EQ(f[1], 40);
  const EngineStats st = h.engine().Stats();
  EXPECT_LE(st.entries, 2 * 16);
  EXPECT_EQ(st.bucketed + st.entries, 2 * 40);  // nothing dropped
  EXPECT_GT(st.buckets, 0);
  EXPECT_EQ(h.engine().bucketed(), st.bucketed);
}

// One key far over a small cap, its windows reaching back past its raw
// entries, against a brute-force reference. The documented bound: an event
// is counted wrongly only if it lies within (T - x) / 64 of a window edge x,
// T the latest time seen; windows within the raw entries are exact.
TEST(FeatureEngineTest, WindowsOverBucketsStayWithinTheDocumentedBoundOfBruteForce) {
  struct W {
    int64_t width, lag;
  };
  const std::vector<W> windows = {
      {20 * kMin, 0}, {2 * kHour, 0}, {kDay, 0}, {7 * kDay, 0}, {kDay, kDay}};
  std::string features;
  for (const W& w : windows) {
    for (const char* a : {"count", "sum", "mean", "min", "max"}) {
      features += StrCat("  - {name: ", a, "_", w.width, "_", w.lag, ", agg: ", a,
                         std::string_view(a) == "count" ? "" : ", of: amount",
                         ", key: user, window: ", w.width, "ms, lag: ", w.lag, "ms}\n");
    }
  }
  Harness h(features, "limits: {max_entries_per_key: 16}\n");
  std::mt19937_64 rng(7);
  std::vector<Ev> given;
  int64_t now = 0, latest = 0;
  int exact_checks = 0, bucket_checks = 0, inexact = 0;
  for (int i = 0; i < 4000; ++i) {
    now += static_cast<int64_t>(rng() % (8 * kMin));
    int64_t t = now;
    if (rng() % 10 == 0) t -= static_cast<int64_t>(rng() % (50 * kMin));  // late, within 1h
    latest = std::max(latest, t);
    const Ev e{t, 0, static_cast<double>(rng() % 1000) / 10, 0};
    const auto f = h.Event("tx", e.t, "a", e.amount);
    given.push_back(e);
    // The raw entries are the newest `entries` events: a window whose lower
    // edge is at or after the oldest of them reads no bucket.
    std::vector<int64_t> times;
    for (const Ev& g : given) times.push_back(g.t);
    std::sort(times.begin(), times.end());
    const int64_t oldest_raw =
        times[times.size() - static_cast<size_t>(h.engine().Stats().entries)];
    size_t k = 0;
    for (const W& w : windows) {
      const int64_t q = e.t - w.lag, from = q - w.width;
      const double near_from = static_cast<double>(latest - from) / 64;
      const double near_q = static_cast<double>(latest - q) / 64;
      auto near = [&](int64_t x) {
        return std::fabs(static_cast<double>(x - from)) <= near_from ||
               std::fabs(static_cast<double>(x - q)) <= near_q;
      };
      double n = 0, sum = 0, slack_n = 0, slack_sum = 0;
      double lo_all = INFINITY, hi_all = -INFINITY, lo_far = INFINITY, hi_far = -INFINITY;
      for (const Ev& g : given) {
        const bool in = g.t > from && g.t <= q;
        if (in) {
          ++n;
          sum += g.amount;
        }
        if (near(g.t)) {
          ++slack_n;
          slack_sum += g.amount;
        }
        if (in || near(g.t)) {
          lo_all = std::min(lo_all, g.amount);
          hi_all = std::max(hi_all, g.amount);
        }
        if (in && !near(g.t)) {
          lo_far = std::min(lo_far, g.amount);
          hi_far = std::max(hi_far, g.amount);
        }
      }
      const double got_n = f[k], got_sum = f[k + 1], got_mean = f[k + 2], got_min = f[k + 3],
                   got_max = f[k + 4];
      k += 5;
      const std::string where = StrCat("event ", i, " window ", w.width, " lag ", w.lag);
      if (from >= oldest_raw) {
        ++exact_checks;
        ASSERT_EQ(got_n, n) << where;
        ASSERT_NEAR(got_sum, sum, 1e-9 * std::max(1.0, sum)) << where;
        continue;
      }
      ++bucket_checks;
      if (got_n != n) ++inexact;
      ASSERT_LE(std::fabs(got_n - n), slack_n) << where;
      ASSERT_LE(std::fabs(got_sum - sum), slack_sum + 1e-9 * std::max(1.0, sum)) << where;
      if (got_n == 0) continue;
      ASSERT_NEAR(got_mean, got_sum / got_n, 1e-9 * std::max(1.0, got_mean)) << where;
      // min and max come from the events of the window and those near its
      // edges; no event well inside it is missed.
      ASSERT_GE(got_min, lo_all) << where;
      ASSERT_LE(got_max, hi_all) << where;
      if (lo_far != INFINITY) {
        ASSERT_LE(got_min, lo_far) << where;
        ASSERT_GE(got_max, hi_far) << where;
      }
    }
  }
  EXPECT_GT(exact_checks, 1000);
  EXPECT_GT(bucket_checks, 5000);
  EXPECT_GT(h.engine().Stats().bucketed, 3900);
  std::printf("windows over buckets: %d checked, %d counts off within the bound\n", bucket_checks,
              inexact);
}

// Feeds the same events to `a` and `b` and expects the same bits.
void ExpectSameBits(const std::vector<double>& a, const std::vector<double>& b, int i) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) {
    ASSERT_EQ(std::bit_cast<uint64_t>(a[k]), std::bit_cast<uint64_t>(b[k]))
        << "event " << i << " feature " << k << ": " << a[k] << " vs " << b[k];
  }
}

// Read-ahead fetches and changes nothing: hints that are right, wrong,
// missing or about entities swept meanwhile (a short TTL churns them) give
// the bits a run without hints gives.
TEST(FeatureEngineTest, ReadAheadHintsRightOrWrongChangeNoValue) {
  constexpr std::string_view kFeatures =
      "  - {name: n, agg: count, key: user, window: 1h}\n"
      "  - {name: s, agg: sum, of: amount, key: user, window: 50m, lag: 10m}\n"
      "  - {name: devs, agg: distinct_count, of: dev, key: user, window: 1h}\n"
      "  - {name: dn, agg: count, key: dev, window: 30m}\n"
      "  - {name: d, agg: decayed_sum, of: amount, key: user, window: lifetime, half_life: 1h}\n"
      "  - {name: age, agg: first_seen, key: user}\n";
  constexpr std::string_view kLimits = "limits: {entity_ttl: 2h}\n";
  Harness plain(kFeatures, kLimits), ahead(kFeatures, kLimits);
  FeatureEngine& engine = ahead.engine();
  const int tx = engine.spec().schema->FindType("tx")->index;
  const std::vector<std::vector<int>> fields = engine.ReadAheadFields(tx);
  const event::EventTypeSpec& t = *engine.spec().schema->FindType("tx");
  ASSERT_EQ(fields.size(), engine.spec().streams.size());
  for (size_t st = 0; st < fields.size(); ++st) {
    EXPECT_EQ(fields[st], std::vector<int>{t.Find(engine.spec().streams[st].key_fields[0])->index});
  }
  struct E {
    int64_t t;
    std::string user, dev;
  };
  std::mt19937_64 rng(5);
  std::vector<E> events;
  int64_t now = 0;
  for (int i = 0; i < 4000; ++i) {
    now += static_cast<int64_t>(rng() % (3 * kMin));
    if (i % 1000 == 999) now += 5 * kHour;  // everyone idle past the TTL: swept
    events.push_back({now, StrCat("u", rng() % 60), StrCat("d", rng() % 20)});
  }
  for (size_t i = 0; i < events.size(); ++i) {
    std::vector<uint64_t> keys(fields.size(), 0);
    if (i + FeatureEngine::kReadAhead < events.size()) {
      const E& later = events[i + FeatureEngine::kReadAhead];
      for (size_t st = 0; st < keys.size(); ++st) {
        const uint64_t h = core::Hash64(
            engine.spec().streams[st].key_fields[0] == "user" ? later.user : later.dev);
        keys[st] = FeatureEngine::StreamKey(std::span(&h, 1));
      }
    }
    switch (rng() % 8) {
      case 0:
        keys[0] = rng();
        break;  // wrong
      case 1:
        keys.assign(keys.size(), 0);
        break;  // none
      case 2:
        keys.resize(1);
        break;  // short
      default:
        break;
    }
    engine.ReadAhead(keys);
    const std::string extra = StrCat(",\"dev\":\"", events[i].dev, "\"");
    const std::vector<double> a =
        plain.Event("tx", events[i].t, events[i].user, static_cast<double>(i % 97), extra);
    const std::vector<double> b =
        ahead.Event("tx", events[i].t, events[i].user, static_cast<double>(i % 97), extra);
    ExpectSameBits(a, b, static_cast<int>(i));
  }
  EXPECT_GT(engine.Stats().expired, 100);
}

constexpr std::string_view kBucketFeatures =
    "  - {name: n, agg: count, key: user, window: 1d}\n"
    "  - {name: s, agg: sum, of: amount, key: user, window: 1d}\n"
    "  - {name: m, agg: mean, of: amount, key: user, window: 7d, lag: 1h}\n"
    "  - {name: lo, agg: min, of: amount, key: user, window: 1d}\n"
    "  - {name: hi, agg: max, of: amount, key: user, window: 7d, lag: 1h}\n"
    "  - {name: sd, agg: stddev, of: amount, key: user, window: 1d}\n"
    "  - {name: last, agg: last, of: amount, key: user, window: 7d, lag: 1h}\n"
    "  - {name: gm, agg: gap_mean, key: user, window: 1d}\n"
    "  - {name: cv, agg: gap_cv, key: user, window: 1d}\n"
    "  - {name: ds, agg: decayed_sum, of: amount, key: user, window: 1d, half_life: 6h}\n"
    "  - {name: dc, agg: distinct_count, of: dev, key: user, window: 1d}\n";

TEST(FeatureEngineTest, RestoreAmidBucketsGivesTheBitsOfAnUninterruptedRun) {
  Harness a(kBucketFeatures, "limits: {max_entries_per_key: 16}\n");
  Harness b(kBucketFeatures, "limits: {max_entries_per_key: 16}\n");
  std::mt19937_64 rng(11);
  int64_t now = 0;
  auto event = [&](Harness& h, int64_t t, double amount, int dev) {
    return h.Event("tx", t, "a", amount, StrCat(",\"dev\":\"d", dev, "\""));
  };
  struct E {
    int64_t t;
    double amount;
    int dev;
  };
  std::vector<E> events;
  for (int i = 0; i < 3000; ++i) {
    now += static_cast<int64_t>(rng() % (5 * kMin));
    int64_t t = now;
    if (rng() % 8 == 0) t -= static_cast<int64_t>(rng() % (50 * kMin));
    events.push_back(E{t, static_cast<double>(rng() % 10000) / 7, static_cast<int>(rng() % 6)});
  }
  for (int i = 0; i < 1500; ++i) event(a, events[i].t, events[i].amount, events[i].dev);
  ASSERT_GT(a.engine().Stats().buckets, 0);
  std::string snap;
  a.engine().SerializeTo(&snap);
  ASSERT_TRUE(b.engine().Restore(snap).ok());
  EXPECT_EQ(b.engine().bucketed(), a.engine().Stats().bucketed)
      << "restored, and shown to other threads";
  std::string again;
  b.engine().SerializeTo(&again);
  EXPECT_EQ(again, snap);
  for (int i = 1500; i < 3000; ++i) {
    const auto fa = event(a, events[i].t, events[i].amount, events[i].dev);
    const auto fb = event(b, events[i].t, events[i].amount, events[i].dev);
    ExpectSameBits(fa, fb, i);
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(a.engine().Stats().bucketed, b.engine().Stats().bucketed);
}

// An older snapshot made from a version 3 one of `a` (one stream, one entity
// under the cap): version 2 lacks the lifetime sum's compensation (the
// entity's last 8 bytes), version 1 also the byte that says the entity has
// no buckets, just before them.
std::string OlderSnapshot(FeatureEngine& a, uint32_t version) {
  std::string snap;
  a.SerializeTo(&snap);
  auto sealed = core::Unseal(snap, "VIGILFES", 3, "feature snapshot");
  EXPECT_TRUE(sealed.ok()) << sealed.status();
  if (!sealed.ok()) return "";
  std::string payload(sealed->payload);
  // After the entity: its stream's label index (16 bytes) and the identity
  // graph (an empty string, 8 bytes).
  const size_t comp = payload.size() - 16 - 8 - 8;
  EXPECT_EQ(payload[comp - 1], 0) << "the tier byte: no buckets";
  payload.erase(version == 1 ? comp - 1 : comp, version == 1 ? 9 : 8);
  std::string old;
  core::Seal("VIGILFES", version, sealed->key, payload, &old);
  return old;
}

TEST(FeatureEngineTest, VersionOneAndTwoSnapshotsAreStillRead) {
  for (uint32_t version : {1u, 2u}) {
    SCOPED_TRACE(version);
    Harness a("  - {name: n, agg: count, key: user, window: 1d}\n");
    Harness b("  - {name: n, agg: count, key: user, window: 1d}\n");
    for (int i = 0; i < 10; ++i) a.Event("tx", i * kMin, "a");
    const std::string old = OlderSnapshot(a.engine(), version);
    ASSERT_TRUE(b.engine().Restore(old).ok()) << b.engine().Restore(old);
    EXPECT_EQ(b.Event("tx", 10 * kMin, "a")[0], 11);
    EXPECT_EQ(a.Event("tx", 10 * kMin, "a")[0], 11);
  }
}

TEST(FeatureEngineTest, OlderSnapshotsAreRefusedWhenTheSpecReadsALifetimeSumOrMean) {
  // Their sums have no compensation: continued, they would differ from an
  // uninterrupted run's.
  for (const char* agg : {"sum", "mean"}) {
    const std::string spec =
        StrCat("  - {name: life, agg: ", agg, ", of: amount, key: user, window: lifetime}\n");
    Harness a(spec), b(spec);
    for (int i = 0; i < 10; ++i) a.Event("tx", i * kMin, "a");
    const std::string old = OlderSnapshot(a.engine(), 2);
    const absl::Status st = b.engine().Restore(old);
    EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition) << st;
    EXPECT_THAT(st.message(), testing::HasSubstr("feature 'life'"));
    // A version 3 one whose version was damaged into 2 is corrupt, not old.
    std::string damaged;
    a.engine().SerializeTo(&damaged);
    damaged[8] ^= 1;
    EXPECT_THAT(b.engine().Restore(damaged).message(), testing::HasSubstr("checksum mismatch"));
  }
}

TEST(FeatureEngineTest, LifetimeSumIsCompensatedAsAWindowsIsAcrossASnapshot) {
  // 1e15 + 0.3 rounds to 1e15 + 0.25: plain running sums end at 0.55.
  const std::string spec =
      "  - {name: life, agg: sum, of: amount, key: user, window: lifetime}\n"
      "  - {name: window, agg: sum, of: amount, key: user, window: 1d}\n"
      "  - {name: mean, agg: mean, of: amount, key: user, window: lifetime}\n";
  Harness a(spec), b(spec);
  a.Event("tx", 1 * kMin, "a", 1e15);
  a.Event("tx", 2 * kMin, "a", 0.3);
  std::string snap;
  a.engine().SerializeTo(&snap);
  ASSERT_TRUE(b.engine().Restore(snap).ok());
  for (Harness* h : {&a, &b}) {
    h->Event("tx", 3 * kMin, "a", -1e15);
    const std::vector<double> f = h->Event("tx", 4 * kMin, "a", 0.3);
    EXPECT_EQ(f[0], 0.6);
    EXPECT_EQ(f[0], f[1]);
    EXPECT_EQ(f[2], 0.6 / 4);
  }
  // A running sum past a double reads inf from then on, as a plain one would.
  Harness c(spec);
  c.Event("tx", 1 * kMin, "a", 1e308);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(c.Event("tx", 2 * kMin, "a", 1e308)[0], kInf);
  EXPECT_EQ(c.Event("tx", 3 * kMin, "a", -1e308)[0], kInf);
}

TEST(FeatureEngineTest, BucketsOfAKeyFarOverTheCapStayBoundedAsItGrows) {
  // One event a minute for 60 days, a 30-day window: the documented
  // bound, 65 buckets per level up to log2((reach + lateness) / 64 ms) and
  // 65 more.
  Harness h("  - {name: s, agg: sum, of: amount, key: user, window: 30d}\n",
            "limits: {max_entries_per_key: 16}\n");
  const double reach = static_cast<double>(30 * kDay + kHour);
  const int64_t bound = 65 * (static_cast<int64_t>(std::log2(reach / 64)) + 2) + 65;
  int64_t most = 0, memory_at_30d = 0, memory_most = 0;
  constexpr int64_t kStep = kMin;
  for (int64_t t = 0; t < 60 * kDay; t += kStep) {
    h.Event("tx", t, "a", 1);
    if (t % (kDay / 4) != 0) continue;
    const EngineStats st = h.engine().Stats();
    most = std::max(most, st.buckets);
    if (t == 30 * kDay) memory_at_30d = st.memory_bytes;
    if (t > 30 * kDay) memory_most = std::max(memory_most, st.memory_bytes);
  }
  EXPECT_LE(most, bound);
  EXPECT_GT(most, 100);
  // Past the window's reach it no longer grows.
  EXPECT_LE(memory_most, memory_at_30d * 5 / 4);
  std::printf("buckets at most %lld (bound %lld), memory %lld bytes\n",
              static_cast<long long>(most), static_cast<long long>(bound),
              static_cast<long long>(memory_most));
}

// Values whose sum overflows, once merged into buckets, leave the buckets'
// running totals inf: windows that reach the buckets but not those values
// read their own sum, and one that holds them reads inf.
TEST(FeatureEngineTest, AnOverflowAmongTheBucketsStaysInTheWindowsThatHoldIt) {
  Harness h(
      "  - {name: s1m, agg: sum, of: amount, key: user, window: 1m}\n"
      "  - {name: m1m, agg: mean, of: amount, key: user, window: 1m}\n"
      "  - {name: s1d, agg: sum, of: amount, key: user, window: 1d}\n",
      "limits: {max_entries_per_key: 16}\n");
  h.Event("tx", 0, "a", 1e308);
  h.Event("tx", 1000, "a", 1e308);
  std::vector<double> f;
  for (int i = 0; i < 400; ++i) f = h.Event("tx", (2 + i) * 1000, "a", 1);
  ASSERT_GT(h.engine().Stats().buckets, 0);
  EXPECT_EQ(f[0], 60);
  EXPECT_EQ(f[1], 1);
  EXPECT_EQ(f[2], std::numeric_limits<double>::infinity());

  // Both signs: totals of inf − inf, NaN, and buckets of their own that may be.
  Harness g(
      "  - {name: s1m, agg: sum, of: amount, key: user, window: 1m}\n"
      "  - {name: m1m, agg: mean, of: amount, key: user, window: 1m}\n",
      "limits: {max_entries_per_key: 16}\n");
  // (From 3 s: two cells of 4,096 ms, one +inf bucket and one -inf, the
  // run too short for them to coarsen into one.)
  for (int i = 0; i < 4; ++i) g.Event("tx", (3 + i) * 1000, "a", i < 2 ? 1e308 : -1e308);
  for (int i = 0; i < 400; ++i) f = g.Event("tx", (7 + i) * 1000, "a", 1);
  EXPECT_EQ(f[0], 60);
  EXPECT_EQ(f[1], 1);
}

// Late events older than the newest bucket go among the buckets, not to the
// raw entries, so they never bring the next merge nearer: past the bound
// they merge the buckets themselves, and nothing is lost.
TEST(FeatureEngineTest, LateEventsAmongTheBucketsStayWithinTheBound) {
  Harness h(
      "  - {name: n, agg: count, key: user, window: 1h}\n"
      "  - {name: all, agg: count, key: user, window: lifetime}\n",
      "limits: {max_entries_per_key: 16}\n");
  for (int i = 0; i < 20; ++i) h.Event("tx", i * kMin, "a");  // the first 4 go to buckets
  const double reach = static_cast<double>(kHour + kHour);    // window + lateness
  const int64_t bound = 65 * (static_cast<int64_t>(std::log2(reach / 64)) + 3) + 16 / 4;
  constexpr int kLate = 2000;  // past the bound, without the merge
  int64_t most = 0;
  for (int i = 0; i < kLate; ++i) {
    // Each at a millisecond of its own, before the newest bucket (3 min).
    ASSERT_FALSE(h.Event("tx", 1 + i * 31, "a").empty()) << i;
    if (i % 64 == 0) most = std::max(most, h.engine().Stats().buckets);
  }
  EXPECT_LE(most, bound);
  const std::vector<double> f = h.Event("tx", 19 * kMin + 1, "a");
  EXPECT_EQ(f[0], 20 + kLate + 1);  // every bucket is wholly in the window
  EXPECT_EQ(f[1], 20 + kLate + 1);
}

TEST(FeatureEngineTest, TtlShorterThanAWindowIsRefused) {
  auto spec = FeatureSpec::LoadString(
      "score_on: [tx]\nlimits: {entity_ttl: 1d}\nfeatures:\n"
      "  - {name: n, agg: count, key: user, window: 7d}\n",
      "f.yaml", Schema());
  EXPECT_THAT(spec.status().message(), testing::HasSubstr("entity_ttl (1d) must cover"));
}

// The hot path from an event already received: decode, validate, features.
TEST(FeatureEngineTest, DecodeAndProcessAllocateNothingOnceEntitiesExist) {
  auto schema = Schema();
  auto spec = FeatureSpec::LoadString(
      "score_on: [tx]\nfeatures:\n"
      "  - {name: n, agg: count, key: user, window: 1h}\n"
      "  - {name: avg, agg: mean, of: amount, key: user, window: 1d}\n"
      "  - {name: mx, agg: max, of: amount, key: dev, window: 1d}\n"
      "  - {name: devs, agg: distinct_count, of: dev, key: user, window: 1d}\n"
      "  - {name: since, agg: time_since_last, key: user}\n"
      "  - {name: rel, expr: \"ratio(event.amount, features.avg, 1) > 2\"}\n",
      "f.yaml", schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  FeatureEngine engine(*spec);
  event::PiiHasher hasher("k");
  event::Validator v(schema, &hasher);
  event::Record rec;
  std::vector<event::Violation> errs;
  errs.reserve(8);
  std::vector<double> out((*spec)->features.size());
  std::vector<std::string> lines;
  for (int i = 0; i < 4000; ++i) {
    lines.push_back(StrCat(R"({"event_type":"tx","event_id":"e)", i, R"(","time":")",
                           core::FormatTimestamp(1704067200000 + i * 60000LL), R"(","user":"u)", i % 7,
                           R"(","dev":"d)", i % 3, R"(","amount":)", i % 100, "}") +
                    std::string(64, ' '));
  }
  auto run = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string& l = lines[i];
      ASSERT_TRUE(v.DecodeJson(std::string_view(l.data(), l.size() - 64), l.size(), &rec, &errs));
      ASSERT_TRUE(v.CheckAndCommit(rec, &errs));
      engine.Process(rec, out);
    }
  };
  run(0, 2000);  // warm-up: entities, buffers and tables reach their size
  const core::AllocationScope allocations;
  run(2000, 4000);
  EXPECT_EQ(allocations.count(), 0);
}

// The engine against a brute-force reference on random streams with late
// events: every windowed aggregate, with and without lag.

TEST(FeatureEngineTest, MatchesBruteForceOnRandomStreamsWithLateEvents) {
  const std::string aggs[] = {"count", "sum", "mean", "min", "max", "stddev", "last", "gap_mean", "gap_cv"};
  std::string features;
  std::vector<std::pair<int64_t, int64_t>> windows = {{kHour, 0}, {6 * kHour, 0}, {kHour, 2 * kHour}};
  for (const auto& [w, lag] : windows) {
    for (const std::string& a : aggs) {
      features += StrCat("  - {name: ", a, "_", w, "_", lag, ", agg: ", a,
                         a == "count" || a.rfind("gap", 0) == 0 ? "" : ", of: amount",
                         ", key: user, window: ", w, "ms, lag: ", lag, "ms}\n");
    }
    features += StrCat("  - {name: dc_", w, "_", lag, ", agg: distinct_count, of: dev, key: user, window: ",
                       w, "ms, lag: ", lag, "ms}\n");
  }
  Harness h(features);
  std::mt19937_64 rng(42);
  std::vector<Ev> given;
  int64_t now = 0;
  for (int i = 0; i < 3000; ++i) {
    now += static_cast<int64_t>(rng() % (10 * kMin));
    int64_t t = now;
    if (rng() % 10 == 0) t -= static_cast<int64_t>(rng() % (50 * kMin));  // late, within 1h
    Ev e{t, static_cast<int>(rng() % 5), static_cast<double>(rng() % 1000) / 10, static_cast<int>(rng() % 4)};
    auto f = h.Event("tx", e.t, StrCat("u", e.user), e.amount, StrCat(",\"dev\":\"d", e.dev, "\""));
    given.push_back(e);
    ASSERT_EQ(f.size(), windows.size() * 10);
    size_t k = 0;
    for (const auto& [w, lag] : windows) {
      // Brute force: entries given so far (this one included) in (q - w, q], in time order
      // (ties in given order).
      const int64_t q = e.t - lag;
      std::vector<Ev> in;
      for (const Ev& g : given) {
        if (g.user == e.user && g.t > q - w && g.t <= q) in.push_back(g);
      }
      std::stable_sort(in.begin(), in.end(), [](const Ev& a, const Ev& b) { return a.t < b.t; });
      const double n = static_cast<double>(in.size());
      double sum = 0, mn = INFINITY, mx = -INFINITY;
      std::set<int> devs;
      for (const Ev& g : in) {
        sum += g.amount;
        mn = std::min(mn, g.amount);
        mx = std::max(mx, g.amount);
        devs.insert(g.dev);
      }
      double ss = 0;
      for (const Ev& g : in) ss += (g.amount - sum / n) * (g.amount - sum / n);
      double gm = n > 1 ? static_cast<double>(in.back().t - in.front().t) / (n - 1) : NAN;
      double gss = 0;
      for (size_t j = 1; j < in.size(); ++j) {
        const double d = static_cast<double>(in[j].t - in[j - 1].t) - gm;
        gss += d * d;
      }
      const double expect[] = {n,
                               sum,
                               n > 0 ? sum / n : NAN,
                               n > 0 ? mn : NAN,
                               n > 0 ? mx : NAN,
                               n > 1 ? std::sqrt(ss / (n - 1)) : NAN,
                               n > 0 ? in.back().amount : NAN,
                               gm,
                               n > 2 && gm > 0 ? std::sqrt(gss / (n - 1)) / gm : NAN,
                               static_cast<double>(devs.size())};
      for (double x : expect) {
        const double got = f[k++];
        if (std::isnan(x)) {
          ASSERT_TRUE(std::isnan(got)) << "event " << i << " feature " << k - 1 << " got " << got;
        } else {
          ASSERT_NEAR(got, x, 1e-9 * std::max(1.0, std::fabs(x)))
              << "event " << i << " feature " << k - 1 << " window " << w << " lag " << lag;
        }
      }
    }
  }
  EXPECT_GT(h.engine().Stats().late_applied, 100);
}

}  // namespace
}  // namespace vigil::feature
