#include "feature/spec.h"

#include "core/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::feature {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<const event::Schema> Schema() {
  auto s = event::Schema::LoadString(R"(
event_types:
  deposit:
    fields:
      user_id: {type: string, role: entity, entity: user}
      amount: {type: decimal, role: amount, currency: USD}
      method: {type: enum, values: [card, bank]}
      fraud: {type: int, role: label, known_after: 7d}
      scenario: {type: string, role: ground_truth}
  login:
    fields:
      user_id: {type: string, role: entity, entity: user}
      ip: {type: string, role: entity}
)", "schema.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

absl::Status Err(std::string_view features) {
  auto s = FeatureSpec::LoadString(StrCat("score_on: [deposit]\nfeatures:\n", features), "f.yaml",
                                   Schema());
  return s.ok() ? absl::OkStatus() : s.status();
}

TEST(FeatureSpecTest, LoadsAggregatesStreamsAndDerivedInOrder) {
  auto s = FeatureSpec::LoadString(R"y(
score_on: [deposit]
features:
  - {name: n1, agg: count, key: user_id, window: 1d}
  - {name: avg, agg: mean, of: amount, key: user_id, window: 1d}
  - {name: ratio, expr: "ratio(features.avg, features.n1, 0)"}
  - {name: logins, agg: count, key: user_id, window: 1h, on: [login]}
  - {name: n7, agg: count, key: user_id, window: 7d}
)y", "f.yaml", Schema());
  ASSERT_TRUE(s.ok()) << s.status();
  const FeatureSpec& f = **s;
  EXPECT_EQ(f.features.size(), 5u);
  EXPECT_EQ(f.FeatureIndex("ratio"), 2);
  // n1 and n7 share a stream (same key, types, no field); amount is not
  // required, so avg needs its own; logins are other events.
  EXPECT_EQ(f.features[0].stream, f.features[4].stream);
  EXPECT_NE(f.features[0].stream, f.features[1].stream);
  EXPECT_NE(f.features[0].stream, f.features[3].stream);
  EXPECT_EQ(f.eval_order, std::vector<int>{2});
  EXPECT_EQ(f.content_hash.size(), 64u);
}

// A model bundle names the spec by content_hash: a comment or the layout
// edited must not make the server refuse the model; a window changed must.
TEST(FeatureSpecTest, ContentHashIsOfWhatTheSpecSaysNotItsComments) {
  auto load = [](std::string_view text) {
    auto s = FeatureSpec::LoadString(text, "f.yaml", Schema());
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  };
  auto a = load(
      "score_on: [deposit]\nfeatures:\n  - {name: n1, agg: count, key: user_id, window: 1d}\n");
  auto b = load(
      "# deposits per user\nscore_on:\n  - deposit\nfeatures:\n  - name: n1   # a day\n"
      "    agg: count\n    key: user_id\n    window: 1d\n");
  auto c = load(
      "score_on: [deposit]\nfeatures:\n  - {name: n1, agg: count, key: user_id, window: 2d}\n");
  EXPECT_EQ(a->content_hash, b->content_hash);
  EXPECT_NE(a->content_hash, c->content_hash);
  // What a bundle trained before 2026-12 names: of the bytes.
  EXPECT_NE(a->legacy_hash, b->legacy_hash);
  EXPECT_NE(a->legacy_hash, a->content_hash);
}

TEST(FeatureSpecTest, UnknownFieldNamesFileLineAndField) {
  auto st = Err("  - {name: a, agg: sum, of: amout, key: user_id, window: 1d}\n");
  EXPECT_THAT(st.message(), HasSubstr("f.yaml:3:"));
  EXPECT_THAT(st.message(), HasSubstr("'amout' is in none of its event types"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: usr, window: 1d}\n").message(),
              HasSubstr("key field 'usr'"));
}

// An expression's errors point into the file where the token is, in every
// YAML style: a block scalar's own lines, past a quote, where YAML joins
// lines (folded `>`), with an explicit indentation, at a key tuple's item.
TEST(FeatureSpecTest, ExpressionErrorsNameTheTokensLineAndColumnInEveryStyle) {
  const struct {
    const char* features;  // after `features:` on line 2
    const char* error;
  } cases[] = {
      {"  - name: a\n    expr: |\n      event.amount +\n        foo(1)\n",
       "f.yaml:6:9: unknown function 'foo'"},
      {"  - {name: a, expr: \"1 + foo(1)\"}\n", "f.yaml:3:26: unknown function 'foo'"},
      {"  - name: a\n    expr: >\n      event.amount +\n      foo(1)\n",
       "f.yaml:6:7: unknown function 'foo'"},
      {"  - name: a\n    expr: |2\n        event.amount +\n      foo(1)\n",
       "f.yaml:6:7: unknown function 'foo'"},
      {"  - {name: a, agg: count, window: 1d, key: [user_id, 'ip_prefx(event.ip, 24)']}\n",
       "f.yaml:3:55: unknown function 'ip_prefx'"},
  };
  for (const auto& c : cases)
    EXPECT_THAT(Err(c.features).message(), HasSubstr(c.error)) << c.features;
}

TEST(FeatureSpecTest, UnknownAggregateSuggestsTheClosest) {
  auto st = Err("  - {name: a, agg: cuont, key: user_id, window: 1d}\n");
  EXPECT_THAT(st.message(), HasSubstr("f.yaml:3:"));
  EXPECT_THAT(st.message(), HasSubstr("unknown aggregate 'cuont' (did you mean 'count'?)"));
  // A misspelt identity-graph aggregate too (it crashed the loader).
  EXPECT_THAT(Err("  - {name: a, agg: cluster_sizes}\n").message(),
              HasSubstr("unknown aggregate 'cluster_sizes' (did you mean 'cluster_size'?)"));
}

TEST(FeatureSpecTest, BadWindows) {
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: 1y}\n").message(),
              HasSubstr("unknown unit"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id}\n").message(), HasSubstr("needs window"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: 0d}\n").message(),
              HasSubstr("positive duration"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: lifetime, lag: 1d}\n").message(),
              HasSubstr("a lag needs a finite window"));
}

// A window longer than the entities live is refused where it is fixed: at
// the window when entity_ttl is the default, naming both and the remedy.
TEST(FeatureSpecTest, AWindowBeyondTheEntityTtlIsRefusedAtTheWindow) {
  const std::string st(Err("  - {name: a, agg: count, key: user_id, window: 3650d}\n").message());
  EXPECT_THAT(st, HasSubstr("f.yaml:3:"));
  EXPECT_THAT(st, HasSubstr("entity_ttl (400d, the default) must cover the longest window and lag "
                            "(3650d, feature 'a')"));
  EXPECT_THAT(st, HasSubstr("set limits.entity_ttl to at least"));
  auto set = FeatureSpec::LoadString(
      "score_on: [deposit]\nlimits: {entity_ttl: 10d}\nfeatures:\n  - {name: a, agg: count, key: "
      "user_id, window: 30d}\n",
      "f.yaml", Schema());
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("f.yaml:2:"));
  EXPECT_THAT(set.status().message(), HasSubstr("entity_ttl (10d) must cover"));
  EXPECT_TRUE(Err("  - {name: a, agg: count, key: user_id, window: 365d}\n").ok());
}

TEST(FeatureSpecTest, RefusesASettingGivenTwice) {
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: 1h, window: 2h}\n").message(),
              HasSubstr("f.yaml:3:53: 'window' given twice in this mapping (first at 3:41)"));
}

TEST(FeatureSpecTest, CyclicDerivedFeaturesAreRefusedWithTheCycle) {
  auto st = Err(
      "  - {name: a, expr: \"features.b + 1\"}\n"
      "  - {name: b, expr: \"features.c * 2\"}\n"
      "  - {name: c, expr: \"features.a\"}\n");
  EXPECT_THAT(st.message(), HasSubstr("f.yaml:"));
  EXPECT_THAT(st.message(), HasSubstr("cycle: a -> b -> c -> a"));
  // The shortest cycle: a feature reading itself, said as such.
  EXPECT_THAT(Err("  - {name: a, expr: \"1 + features.a\"}\n").message(),
              HasSubstr("f.yaml:3:26: feature 'a' reads itself"));
}

TEST(FeatureSpecTest, TypeMismatchIsRefused) {
  EXPECT_THAT(Err("  - {name: a, agg: mean, of: method, key: user_id, window: 1d}\n").message(),
              HasSubstr("mean needs a number; 'method' is a enum"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: 1d, where: \"event.amount\"}\n")
                  .message(),
              HasSubstr("where must be true or false"));
  const std::string derived_string(Err("  - {name: a, expr: \"event.method\"}\n").message());
  EXPECT_THAT(derived_string, HasSubstr("f.yaml:3:"));
  EXPECT_THAT(derived_string, HasSubstr("feature 'a': expr gives a string"));
  EXPECT_TRUE(Err("  - {name: a, expr: \"event.method == 'card'\"}\n").ok());
  // An expression that can only be null: a feature always missing.
  for (const char* text : {"null", "coalesce(null, null)"}) {
    EXPECT_THAT(Err(StrCat("  - {name: a, expr: \"", text, "\"}\n")).message(),
                HasSubstr("feature 'a': expr is always null"))
        << text;
  }
  EXPECT_TRUE(Err("  - {name: a, expr: \"coalesce(null, event.amount)\"}\n").ok());
}

// Backfill writes event_id, event_time, event_type, the passthrough fields
// and the label columns beside the features: a feature may not take one of
// their names (training would take it for a feature).
TEST(FeatureSpecTest, AFeatureNamedLikeABackfillColumnIsRefused) {
  for (const char* name : {"event_id", "event_time", "event_type"}) {
    EXPECT_THAT(
        Err(StrCat("  - {name: ", name, ", agg: count, key: user_id, window: 1d}\n")).message(),
        HasSubstr(StrCat("feature '", name, "': backfill writes a column of that name already")));
  }
  auto spec = [](std::string_view head) {
    auto s = FeatureSpec::LoadString(
        StrCat("score_on: [deposit]\n", head,
               "features:\n  - {name: amount, agg: count, key: user_id, window: 1d}\n"),
        "f.yaml", Schema());
    return s.ok() ? absl::OkStatus() : s.status();
  };
  EXPECT_TRUE(spec("").ok()) << "amount is a field, not a column, unless passed through";
  EXPECT_THAT(spec("passthrough: [amount]\n").message(), HasSubstr("(a passthrough field)"));
  // Nor may a passthrough field be listed twice (two columns of one name).
  EXPECT_THAT(spec("passthrough: [user_id, user_id]\n").message(),
              HasSubstr("passthrough: 'user_id' is listed twice"));
  auto labelled = FeatureSpec::LoadString(
      "score_on: [deposit]\nlabels: {chargeback: {horizon: 30d}}\nfeatures:\n"
      "  - {name: label, agg: count, key: user_id, window: 1d}\n",
      "f.yaml", Schema());
  ASSERT_FALSE(labelled.ok());
  EXPECT_THAT(labelled.status().message(), HasSubstr("feature 'label': backfill writes"));
}

TEST(FeatureSpecTest, LeakageGuardWantsTheLabelsDelay) {
  auto st = Err("  - {name: r, agg: mean, of: fraud, key: user_id, window: 7d, lag: 1d}\n");
  EXPECT_THAT(st.message(), HasSubstr("f.yaml:3:"));
  EXPECT_THAT(st.message(), HasSubstr("reads the label fraud (known after 7d) through a lag of 1d"));
  EXPECT_TRUE(Err("  - {name: r, agg: mean, of: fraud, key: user_id, window: 7d, lag: 7d}\n").ok());
  EXPECT_THAT(Err("  - {name: r, expr: \"event.fraud\"}\n").message(),
              HasSubstr("of the current event"));
  EXPECT_THAT(Err("  - {name: r, agg: count, key: user_id, window: 1d, where: \"event.fraud == 1\"}\n")
                  .message(),
              HasSubstr("through a lag of 0ms"));
  EXPECT_THAT(Err("  - {name: r, agg: distinct_count, of: scenario, key: user_id, window: 7d, lag: 30d}\n")
                  .message(),
              HasSubstr("ground_truth"));
}

TEST(FeatureSpecTest, OtherMistakes) {
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: 1d}\n  - {name: a, expr: \"1\"}\n")
                  .message(),
              HasSubstr("feature 'a' twice"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: 1d, expr: \"1\"}\n").message(),
              HasSubstr("exactly one of agg"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: user_id, window: 1d, colour: red}\n").message(),
              HasSubstr("unknown key 'colour'"));
  EXPECT_THAT(Err("  - {name: a, agg: decayed_sum, key: user_id, window: lifetime}\n").message(),
              HasSubstr("needs half_life"));
  EXPECT_THAT(Err("  - {name: a, expr: \"features.nope\"}\n").message(), HasSubstr("nope"));
  auto no_score = FeatureSpec::LoadString("features:\n  - {name: a, expr: \"1\"}\n", "f.yaml", Schema());
  EXPECT_THAT(no_score.status().message(), HasSubstr("score_on"));
}

TEST(FeatureSpecTest, ClusterFeaturesNeedAnIdentitySection) {
  EXPECT_THAT(Err("  - {name: a, agg: cluster_size}\n").message(), HasSubstr("needs an identity: section"));
  auto st = FeatureSpec::LoadString(
      "score_on: [deposit]\nidentity: {account: user_id, links: [ip]}\nfeatures:\n"
      "  - {name: a, agg: cluster_counter, counter: promos}\n",
      "f.yaml", Schema());
  EXPECT_THAT(st.status().message(), HasSubstr("no 'promos'"));
  auto bad = FeatureSpec::LoadString(
      "score_on: [deposit]\nidentity: {account: user_id, links: [wallet]}\nfeatures:\n"
      "  - {name: a, agg: cluster_size}\n",
      "f.yaml", Schema());
  EXPECT_THAT(bad.status().message(), HasSubstr("no event type has field 'wallet'"));
}

// A label names an entity by one text value, read as the key field's type:
// a field that is a number in one type and text in another would reach
// one of them only, chosen by the schema's order.
TEST(FeatureSpecTest, LabelFedKeyMustKeyAlikeInEveryType) {
  auto load = [](std::string_view acct_in_withdrawal, std::string_view acct_in_deposit = "int") {
    auto schema = event::Schema::LoadString(
        StrCat("event_types:\n  deposit:\n    fields:\n      acct: {type: ", acct_in_deposit,
               ", role: entity}\n  withdrawal:\n    fields:\n      acct: {type: ",
               acct_in_withdrawal, ", role: entity}\n"),
        "schema.yaml");
    EXPECT_TRUE(schema.ok()) << schema.status();
    auto s = FeatureSpec::LoadString(
        "score_on: [deposit]\nfeatures:\n"
        "  - {name: cb, agg: count, key: acct, on: [label], window: lifetime}\n",
        "f.yaml", *schema);
    return s.ok() ? absl::OkStatus() : s.status();
  };
  const absl::Status mixed = load("string");
  EXPECT_THAT(mixed.message(),
              HasSubstr("key field 'acct' is int in deposit but string in withdrawal"));
  EXPECT_THAT(mixed.message(), HasSubstr("f.yaml:"));
  EXPECT_TRUE(load("int").ok());
  // A label's "true" read as an int is 0, and a timestamp's text read as a
  // float its year: one type, or strings and enums, or floats and decimals
  // (event::KeyTextAlike).
  EXPECT_FALSE(load("bool").ok());
  EXPECT_FALSE(load("float").ok());
  EXPECT_FALSE(load("float", "timestamp").ok());
  EXPECT_TRUE(load("enum, values: [a, b]", "string").ok())
      << load("enum, values: [a, b]", "string");
  EXPECT_TRUE(load("decimal", "float").ok()) << load("decimal", "float");
}

// Links expire only at rebuilds: a TTL shorter than the period would keep
// them a period anyway, counting toward the degree cap (hubs of accounts
// that merely change devices).
TEST(FeatureSpecTest, LinkTtlShorterThanTheRebuildPeriodIsRefused) {
  auto load = [](std::string_view identity) {
    auto s = FeatureSpec::LoadString(StrCat("score_on: [deposit]\nidentity: ", identity,
                                            "\nfeatures:\n  - {name: a, agg: cluster_size}\n"),
                                     "f.yaml", Schema());
    return s.ok() ? absl::OkStatus() : s.status();
  };
  const absl::Status st = load("{account: user_id, links: [ip], link_ttl: 1h}");
  EXPECT_THAT(st.message(), HasSubstr("f.yaml:2:"));
  EXPECT_THAT(st.message(), HasSubstr("link_ttl (1h) is shorter than rebuild_every (1d)"));
  EXPECT_FALSE(load("{account: user_id, links: [ip], link_ttl: 12h, rebuild_every: 1d}").ok());
  EXPECT_TRUE(load("{account: user_id, links: [ip], link_ttl: 1d}").ok());
  EXPECT_TRUE(load("{account: user_id, links: [ip], link_ttl: 1h, rebuild_every: 1h}").ok());
}

TEST(FeatureSpecTest, ReviewedHolesAreClosed) {
  // A label-fed aggregate keyed by a label field would read the event's own label.
  EXPECT_THAT(Err("  - {name: a, agg: count, key: fraud, on: [label], window: 30d}\n").message(),
              HasSubstr("key field 'fraud' is a label field"));
  auto id = [&](std::string_view identity) {
    auto s = FeatureSpec::LoadString(StrCat("score_on: [deposit]\nidentity: ", identity,
                                            "\nfeatures:\n  - {name: a, agg: cluster_size}\n"),
                                     "f.yaml", Schema());
    return s.ok() ? absl::OkStatus() : s.status();
  };
  EXPECT_THAT(id("{account: user_id, links: [scenario]}").message(), HasSubstr("ground_truth field"));
  EXPECT_THAT(id("{account: user_id, links: [ip], rebuild_every: 0d}").message(), HasSubstr("positive"));
  EXPECT_THAT(id("{account: user_id, links: [ip], counters: {c: {on: [deposit], of: amout}}}").message(),
              HasSubstr("'amout' is in none"));
  EXPECT_THAT(
      Err("  - {name: a, agg: count, key: user_id, window: 1d, lag: 9223372036854775000ms}\n")
          .message(),
      HasSubstr("at most 3650"));
  EXPECT_THAT(Err("  - {name: a, agg: time_since_last, key: user_id, window: 1h}\n").message(),
              HasSubstr("no window"));
  EXPECT_THAT(Err("  - {name: a, agg: first_seen, key: user_id, default: 0}\n").message(),
              HasSubstr("no default"));
}

// A list where a map belongs was read as an empty map: label columns,
// stop lists and counters left out without a word.
TEST(FeatureSpecTest, AListOrAScalarWhereAMapBelongsIsRefused) {
  auto load = [&](std::string_view extra) {
    auto s = FeatureSpec::LoadString(
        StrCat("score_on: [deposit]\n", extra, "\nfeatures:\n  - {name: a, agg: cluster_size}\n"),
        "f.yaml", Schema());
    return s.ok() ? absl::OkStatus() : s.status();
  };
  EXPECT_THAT(load("labels: [chargeback]\nidentity: {account: user_id, links: [ip]}").message(),
              HasSubstr("f.yaml:2:9: labels: expected a map"));
  EXPECT_THAT(load("identity: {account: user_id, links: [ip], stop_lists: [x.txt]}").message(),
              HasSubstr("identity.stop_lists: expected a map"));
  EXPECT_THAT(load("identity: {account: user_id, links: [ip], counters: c}").message(),
              HasSubstr("identity.counters: expected a map"));
  EXPECT_THAT(load("lists: x.txt\nidentity: {account: user_id, links: [ip]}").message(),
              HasSubstr("lists: expected a map"));
  EXPECT_TRUE(load("labels: ~\nidentity: {account: user_id, links: [ip], counters: {}}").ok());
}

TEST(FeatureSpecTest, ExpressionKeysAreCheckedLikeFields) {
  EXPECT_TRUE(Err("  - {name: a, agg: count, key: \"email_domain(event.user_id)\", window: 1d}\n").ok());
  EXPECT_THAT(Err("  - {name: a, agg: count, key: \"coalesce(event.scenario, 'x')\", window: 1d}\n").message(),
              HasSubstr("ground_truth"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: \"(event.amount > 1)\", window: 1d}\n").message(),
              HasSubstr("a key is a string or a number"));
  EXPECT_THAT(
      Err("  - {name: a, agg: count, key: \"coalesce(null, null)\", window: 1d}\n").message(),
      HasSubstr("this one is always null"));
  EXPECT_THAT(Err("  - {name: a, agg: count, key: \"ip_prefix(event.ip, 24)\", on: [label], window: 1d}\n")
                  .message(),
              HasSubstr("labels name a field"));
}

TEST(FeatureSpecTest, HandbookSpecLoads) {
  const char* src = std::getenv("VIGIL_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  auto schema = event::Schema::Load(StrCat(src, "/examples/handbook/schema.yaml"));
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto s = FeatureSpec::Load(StrCat(src, "/examples/handbook/features.yaml"), *schema);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->features.size(), 15u);  // the amount and the book's 14
  // Counts share the buffers of the always-present field read beside them:
  // one stream per card (amounts), one per terminal (fraud labels).
  EXPECT_EQ((*s)->streams.size(), 2u);
}

}  // namespace
}  // namespace vigil::feature
