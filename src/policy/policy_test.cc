#include "policy/policy.h"

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <thread>

#include "core/alloc_counter.h"
#include "core/file.h"
#include "core/strings.h"
#include "core/testing/temp_dir.h"
#include "event/event_reader.h"
#include "event/validator.h"
#include "feature/engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::policy {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::shared_ptr<const event::Schema> TestSchema() {
  auto s = event::Schema::LoadString(R"(
time_bounds: {max_behind_latest: off, max_ahead_of_latest: off}
event_types:
  withdrawal:
    fields:
      user: {type: string, required: true, role: entity}
      wallet: {type: string, required: true, role: entity}
      amount_usd: {type: float, required: true}
      truth: {type: enum, values: [fraud], role: ground_truth}
  signup:
    fields:
      user: {type: string, required: true, role: entity}
      email: {type: string}
  login:
    fields:
      user: {type: string, required: true, role: entity}
)",
                                     "schema.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

// A spec scoring withdrawals and sign-ups, with two features and two lists.
std::shared_ptr<const feature::FeatureSpec> TestSpec() {
  auto loaded = feature::FeatureSpec::LoadString(R"(
score_on: [withdrawal, signup]
features:
  - {name: user_withdrawals_1d, agg: count, key: user, window: 1d, on: [withdrawal]}
  - {name: wallet_users_30d, agg: distinct_count, of: user, key: wallet, window: 30d, on: [withdrawal]}
)",
                                                 "features.yaml", TestSchema());
  EXPECT_TRUE(loaded.ok()) << loaded.status();
  auto spec = std::make_shared<feature::FeatureSpec>(**loaded);
  auto lists = std::make_shared<expr::Lists>();
  EXPECT_TRUE(lists->AddEntries("deny_wallets", {"w-bad"}).ok());
  EXPECT_TRUE(lists->AddEntries("vip_users", {"u-vip"}).ok());
  spec->lists = lists;
  return spec;
}

// Decodes JSON events against the spec's schema and keeps them. A Record's
// strings are views into its line and into its Validator's parser (valid
// until that Validator's next Decode), so each record has both of its own.
class Events {
 public:
  explicit Events(std::shared_ptr<const event::Schema> schema) : schema_(std::move(schema)) {}

  const event::Record& Decode(std::string_view json) {
    auto& slot = slots_.emplace_back(std::make_unique<Slot>(schema_, &hasher_));
    slot->line.reserve(json.size() + 64);  // simdjson reads up to 64 bytes past the end
    slot->line.assign(json);
    std::vector<event::Violation> errs;
    const bool ok =
        slot->validator.DecodeJson(slot->line, slot->line.capacity(), &slot->rec, &errs);
    EXPECT_TRUE(ok) << json << ": " << (errs.empty() ? "" : errs[0].reason);
    return slot->rec;
  }

 private:
  struct Slot {
    Slot(std::shared_ptr<const event::Schema> s, const event::PiiHasher* h)
        : validator(std::move(s), h) {}
    event::Validator validator;
    std::string line;
    event::Record rec;
  };
  std::shared_ptr<const event::Schema> schema_;
  event::PiiHasher hasher_{"k"};
  std::vector<std::unique_ptr<Slot>> slots_;
};

std::string Withdrawal(std::string_view user, std::string_view wallet, double amount) {
  return StrCat(
      R"({"event_type":"withdrawal","event_id":"e1","time":"2024-01-01T00:00:00Z","user":")", user,
      R"(","wallet":")", wallet, R"(","amount_usd":)", amount, "}");
}

constexpr std::string_view kPolicy = R"(version: 1
name: test
event_types:
  withdrawal:
    thresholds:
      - {action: review, score_at_least: 0.8}
      - {action: block, score_at_least: 0.95}
    rules:
      - name: deny_wallet
        when: event.wallet in lists.deny_wallets
        action: block
        reason: wallet on the deny list
      - name: shared_wallet
        when: features.wallet_users_30d > 5 and event.amount_usd > 1000
        action: review
        reason: shared wallet
      - name: vip
        when: event.user in lists.vip_users
        action: allow
      - name: big
        when: event.amount_usd > 5000
        action: challenge
      - name: watch_small
        when: event.amount_usd < 10
        action: block
        shadow: true
    on_model_unavailable: closed
    closed_action: review
  signup:
    thresholds:
      - {action: challenge, score_at_least: 0.7}
    rules:
      - {name: example_domain, when: "email_domain(event.email) == 'example.com'", action: review}
    on_model_unavailable: open
)";

class PolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = TestSpec();
    auto p = Policy::LoadString(kPolicy, "policy.yaml", spec_);
    ASSERT_TRUE(p.ok()) << p.status();
    policy_ = *p;
    events_ = std::make_unique<Events>(spec_->schema);
  }

  Outcome Decide(std::string_view json, double score, bool model = true,
                 std::vector<double> features = {1, 1}) {
    return policy_->Decide(events_->Decode(json), features.data(), score, model);
  }
  std::vector<std::string> Fired(const Outcome& o, int type) {
    std::vector<std::string> names;
    for (int i = 0; i < o.num_listed(); ++i) {
      names.push_back(
          policy_->rules_of(type)[static_cast<size_t>(o.fired[static_cast<size_t>(i)].rule)].name);
    }
    return names;
  }
  int Type(std::string_view name) { return spec_->schema->FindType(name)->index; }

  std::shared_ptr<const feature::FeatureSpec> spec_;
  std::shared_ptr<const Policy> policy_;
  std::unique_ptr<Events> events_;
};

TEST(ActionTest, NamesRoundTripAndOrderBySeverity) {
  for (Action a : {Action::kAllow, Action::kChallenge, Action::kReview, Action::kBlock}) {
    EXPECT_EQ(ParseAction(ActionName(a)), a);
  }
  EXPECT_EQ(ParseAction("Block"), std::nullopt);
  EXPECT_EQ(ParseAction(""), std::nullopt);
  EXPECT_LT(Action::kAllow, Action::kChallenge);
  EXPECT_LT(Action::kChallenge, Action::kReview);
  EXPECT_LT(Action::kReview, Action::kBlock);
  EXPECT_STREQ(PathName(Path::kModel), "model");
  EXPECT_STREQ(PathName(Path::kRulesOnly), "rules_only");
  EXPECT_STREQ(PathName(Path::kFailOpen), "fail_open");
  EXPECT_STREQ(PathName(Path::kFailClosed), "fail_closed");
}

TEST_F(PolicyTest, ThresholdsSortedHighestFirstAndInclusive) {
  const std::string w = Withdrawal("u1", "w1", 100);
  Outcome o = Decide(w, 0.5);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.path, Path::kModel);
  EXPECT_EQ(o.decided_by, "default");
  EXPECT_EQ(o.num_fired, 0);
  EXPECT_TRUE(std::isnan(o.threshold));

  o = Decide(w, 0.8);  // at the threshold: met
  EXPECT_EQ(o.action, Action::kReview);
  EXPECT_EQ(o.decided_by, "threshold");
  EXPECT_EQ(o.decided_rule, -1);
  EXPECT_EQ(o.threshold, 0.8);

  o = Decide(w, 0.97);  // both met: the higher one wins, though written second
  EXPECT_EQ(o.action, Action::kBlock);
  EXPECT_EQ(o.model_action, Action::kBlock);
  EXPECT_EQ(o.threshold, 0.95);

  o = Decide(w, 1.0);
  EXPECT_EQ(o.action, Action::kBlock);
  o = Decide(w, 0.0);
  EXPECT_EQ(o.action, Action::kAllow);
}

TEST_F(PolicyTest, BlockRuleBeatsAllowRuleAndModel) {
  // A VIP withdrawing to a deny-listed wallet, with a low score.
  const Outcome o = Decide(Withdrawal("u-vip", "W-BAD", 100), 0.1);
  EXPECT_EQ(o.action, Action::kBlock);
  EXPECT_EQ(o.decided_by, "rule:deny_wallet");
  EXPECT_EQ(o.decided_rule, 0);
  EXPECT_EQ(o.path, Path::kModel);
  EXPECT_THAT(Fired(o, Type("withdrawal")), ::testing::ElementsAre("deny_wallet", "vip"));
}

TEST_F(PolicyTest, AllowRuleOverridesModelBlockAndReviewRules) {
  // The model says block and a review rule fires: the VIP is allowed.
  std::vector<double> shared = {1, 9};
  const Outcome o = Decide(Withdrawal("u-vip", "w1", 2000), 0.99, true, shared);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.decided_by, "rule:vip");
  EXPECT_EQ(o.model_action, Action::kBlock);
  EXPECT_EQ(o.path, Path::kModel);
  EXPECT_THAT(Fired(o, Type("withdrawal")), ::testing::ElementsAre("shared_wallet", "vip"));
}

TEST_F(PolicyTest, MostSevereOfReviewRulesAndModelDecides) {
  const std::vector<double> shared = {1, 9};
  // A review rule against a low score: the rule.
  Outcome o = Decide(Withdrawal("u1", "w1", 2000), 0.1, true, shared);
  EXPECT_EQ(o.action, Action::kReview);
  EXPECT_EQ(o.decided_by, "rule:shared_wallet");
  EXPECT_EQ(o.decided_rule, 1);
  // A review rule against a block score: the model.
  o = Decide(Withdrawal("u1", "w1", 2000), 0.96, true, shared);
  EXPECT_EQ(o.action, Action::kBlock);
  EXPECT_EQ(o.decided_by, "threshold");
  EXPECT_EQ(o.num_fired, 1);
  // A challenge rule against a review score: the model.
  o = Decide(Withdrawal("u1", "w1", 6000), 0.85);
  EXPECT_EQ(o.action, Action::kReview);
  EXPECT_EQ(o.decided_by, "threshold");
  // Review rule and review threshold tie: the rule is named (it has a reason).
  o = Decide(Withdrawal("u1", "w1", 2000), 0.85, true, shared);
  EXPECT_EQ(o.action, Action::kReview);
  EXPECT_EQ(o.decided_by, "rule:shared_wallet");
  // Challenge and review rules both fire: review.
  o = Decide(Withdrawal("u1", "w1", 6000), 0.1, true, shared);
  EXPECT_EQ(o.action, Action::kReview);
  EXPECT_EQ(o.decided_by, "rule:shared_wallet");
  EXPECT_THAT(Fired(o, Type("withdrawal")), ::testing::ElementsAre("shared_wallet", "big"));
}

TEST_F(PolicyTest, MissingFeatureNeverFiresAComparison) {
  const Outcome o = Decide(Withdrawal("u1", "w1", 2000), 0.1, true, {kNaN, kNaN});
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.num_fired, 0);
}

TEST_F(PolicyTest, ShadowRuleIsListedAndCountedButNeverDecides) {
  const int w = Type("withdrawal");
  const Outcome o = Decide(Withdrawal("u1", "w1", 5), 0.1);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.decided_by, "default");
  EXPECT_THAT(Fired(o, w), ::testing::ElementsAre("watch_small"));
  EXPECT_TRUE(policy_->rules_of(w)[4].shadow);
  EXPECT_EQ(policy_->hits(w, 4), 1);
}

TEST_F(PolicyTest, FailClosedAppliesClosedActionBelowRules) {
  const std::string w = Withdrawal("u1", "w1", 100);
  Outcome o = Decide(w, kNaN, /*model=*/true);
  EXPECT_EQ(o.path, Path::kFailClosed);
  EXPECT_EQ(o.action, Action::kReview);
  EXPECT_EQ(o.decided_by, "on_model_unavailable");
  // Rules still decide: a block rule above it, an allow rule over it.
  o = Decide(Withdrawal("u1", "w-bad", 100), kNaN, true);
  EXPECT_EQ(o.path, Path::kFailClosed);
  EXPECT_EQ(o.action, Action::kBlock);
  o = Decide(Withdrawal("u-vip", "w1", 100), kNaN, true);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.decided_by, "rule:vip");
  // A broken model's score (not a probability) counts as none.
  for (double bad : {1.5, -0.1, std::numeric_limits<double>::infinity()}) {
    o = Decide(w, bad, true);
    EXPECT_EQ(o.path, Path::kFailClosed) << bad;
    EXPECT_EQ(o.action, Action::kReview) << bad;
  }
}

TEST_F(PolicyTest, FailOpenRunsRulesOnlyAndOtherwiseAllows) {
  const std::string s =
      R"({"event_type":"signup","event_id":"e2","time":"2024-01-01T00:00:00Z","user":"u1","email":"a@b.org"})";
  Outcome o = Decide(s, kNaN, true);
  EXPECT_EQ(o.path, Path::kFailOpen);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.decided_by, "default");
  o = Decide(
      R"({"event_type":"signup","event_id":"e3","time":"2024-01-01T00:00:00Z","user":"u1","email":"a@example.com"})",
      kNaN, true);
  EXPECT_EQ(o.path, Path::kFailOpen);
  EXPECT_EQ(o.action, Action::kReview);
  EXPECT_EQ(o.decided_by, "rule:example_domain");
  // With a score, the threshold applies.
  o = Decide(s, 0.75, true);
  EXPECT_EQ(o.path, Path::kModel);
  EXPECT_EQ(o.action, Action::kChallenge);
}

TEST_F(PolicyTest, NoModelConfiguredIsRulesOnly) {
  Outcome o = Decide(Withdrawal("u1", "w1", 100), kNaN, /*model=*/false);
  EXPECT_EQ(o.path, Path::kRulesOnly);
  EXPECT_EQ(o.action, Action::kAllow);  // not the closed action: no model was expected
  EXPECT_EQ(o.decided_by, "default");
  o = Decide(Withdrawal("u1", "w-bad", 100), kNaN, false);
  EXPECT_EQ(o.path, Path::kRulesOnly);
  EXPECT_EQ(o.action, Action::kBlock);
  // A score given anyway is used.
  o = Decide(Withdrawal("u1", "w1", 100), 0.9, false);
  EXPECT_EQ(o.path, Path::kModel);
  EXPECT_EQ(o.action, Action::kReview);
}

TEST_F(PolicyTest, UncoveredTypeIsAllowedByDefault) {
  const int login = Type("login");
  EXPECT_FALSE(policy_->covers(login));
  EXPECT_TRUE(policy_->covers(Type("withdrawal")));
  EXPECT_TRUE(policy_->rules_of(login).empty());
  EXPECT_EQ(policy_->hits(login, 0), 0);
  const Outcome o =
      Decide(R"({"event_type":"login","event_id":"e4","time":"2024-01-01T00:00:00Z","user":"u1"})",
             0.99, true);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.decided_by, "default");
  event::Record untyped;
  std::vector<double> f = {0, 0};
  EXPECT_EQ(policy_->Decide(untyped, f.data(), 0.99, true).action, Action::kAllow);
}

TEST_F(PolicyTest, HitCountersCountFiredRulesNotShadowDecisions) {
  const int w = Type("withdrawal");
  const event::Record& bad = events_->Decode(Withdrawal("u-vip", "w-bad", 100));
  const event::Record& ok = events_->Decode(Withdrawal("u1", "w1", 100));
  std::vector<double> f = {1, 1};
  for (int i = 0; i < 5; ++i) policy_->Decide(bad, f.data(), 0.1, true);
  for (int i = 0; i < 3; ++i) policy_->Decide(ok, f.data(), 0.1, true);
  for (int i = 0; i < 7; ++i) policy_->DecideShadow(bad, f.data(), 0.1, true);
  EXPECT_EQ(policy_->hits(w, 0), 5);  // deny_wallet
  EXPECT_EQ(policy_->hits(w, 1), 0);
  EXPECT_EQ(policy_->hits(w, 2), 5);  // vip
  EXPECT_EQ(policy_->hits(w, 99), 0);
  EXPECT_EQ(policy_->hits(w, -1), 0);
  // DecideShadow decides the same.
  const Outcome a = policy_->Decide(bad, f.data(), 0.1, true);
  const Outcome b = policy_->DecideShadow(bad, f.data(), 0.1, true);
  EXPECT_EQ(a.action, b.action);
  EXPECT_EQ(a.decided_by, b.decided_by);
  EXPECT_EQ(a.num_fired, b.num_fired);
}

TEST_F(PolicyTest, HitCountersAreExactAcrossThreads) {
  const int w = Type("withdrawal");
  const event::Record& bad = events_->Decode(Withdrawal("u1", "w-bad", 100));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::vector<double> f = {1, 1};
      for (int i = 0; i < 10000; ++i) {
        if (policy_->Decide(bad, f.data(), 0.5, true).action != Action::kBlock) std::abort();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(policy_->hits(w, 0), 40000);
}

TEST_F(PolicyTest, RuleInfoKeepsWhatWasWritten) {
  const std::vector<RuleInfo>& rules = policy_->rules_of(Type("withdrawal"));
  ASSERT_EQ(rules.size(), 5u);
  EXPECT_EQ(rules[0].name, "deny_wallet");
  EXPECT_EQ(rules[0].action, Action::kBlock);
  EXPECT_EQ(rules[0].reason, "wallet on the deny list");
  EXPECT_EQ(rules[0].when, "event.wallet in lists.deny_wallets");
  EXPECT_EQ(rules[0].where, "policy.yaml:9:9");
  EXPECT_EQ(rules[2].reason, "");
  EXPECT_EQ(policy_->name(), "test");
  EXPECT_EQ(policy_->file(), "policy.yaml");
}

TEST_F(PolicyTest, DecideAllocatesNothing) {
  std::vector<const event::Record*> recs = {
      &events_->Decode(Withdrawal("u-vip", "w-bad", 100)),
      &events_->Decode(Withdrawal("u1", "w1", 6000)), &events_->Decode(Withdrawal("u1", "w1", 5)),
      &events_->Decode(
          R"({"event_type":"signup","event_id":"e2","time":"2024-01-01T00:00:00Z","user":"u1","email":"a@example.com"})")};
  std::vector<double> f = {3, 9};
  int blocks = 0;
  policy_->Decide(*recs[0], f.data(), 0.5, true);  // warm-up
  const core::AllocationScope allocations;
  for (int i = 0; i < 1000; ++i) {
    for (const event::Record* r : recs) {
      const double score = i % 3 == 0 ? kNaN : (i % 100) / 100.0;
      blocks += policy_->Decide(*r, f.data(), score, i % 2 == 0).action == Action::kBlock;
      blocks += policy_->DecideShadow(*r, f.data(), score, true).action == Action::kBlock;
    }
  }
  EXPECT_EQ(allocations.count(), 0);
  EXPECT_GT(blocks, 0);
}

// Rules run after the model and may read its score: `model.score`, null when
// there is none (no model configured, or a broken one).
TEST(PolicyScoreTest, RulesReadTheModelScoreAndSeeNullWithoutOne) {
  auto spec = TestSpec();
  auto p = Policy::LoadString(R"(version: 1
name: score_rules
event_types:
  withdrawal:
    thresholds:
      - {action: review, score_at_least: 0.9}
    rules:
      - {name: risky_big, when: "model.score >= 0.5 and event.amount_usd > 1000", action: block}
      - {name: unscored_big, when: "coalesce(model.score, -1) < 0 and event.amount_usd > 1000", action: review}
    on_model_unavailable: open
)",
                              "policy.yaml", spec);
  ASSERT_TRUE(p.ok()) << p.status();
  Events events(spec->schema);
  const event::Record& big = events.Decode(Withdrawal("u1", "w1", 2000));
  const event::Record& small = events.Decode(Withdrawal("u1", "w1", 20));
  const double f[2] = {1, 1};
  Outcome o = (*p)->Decide(big, f, 0.6, true);
  EXPECT_EQ(o.action, Action::kBlock);
  EXPECT_EQ(o.decided_by, "rule:risky_big");
  o = (*p)->Decide(big, f, 0.4, true);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_EQ(o.num_fired, 0);
  o = (*p)->Decide(small, f, 0.6, true);
  EXPECT_EQ(o.num_fired, 0);
  for (double none : {kNaN, 1.5}) {  // none, or a broken model's
    o = (*p)->Decide(big, f, none, true);
    EXPECT_EQ(o.path, Path::kFailOpen) << none;
    EXPECT_EQ(o.action, Action::kReview) << none;
    EXPECT_EQ(o.decided_by, "rule:unscored_big") << none;
  }
}

// Past 32 fired rules the others are counted, not listed, but the deciding
// rule always is: it takes the last place.
TEST(PolicyFiredTest, MoreThan32FiredRulesAreCountedAndTheDecidingOneStillListed) {
  std::string yaml = "event_types:\n  withdrawal:\n    rules:\n";
  for (int i = 0; i < 40; ++i) {
    StrAppend(&yaml, "      - {name: r", i, ", when: 'event.amount_usd > ", i,
              "', action: ", i == 39 ? "block" : "review", "}\n");
  }
  auto spec = TestSpec();
  auto p = Policy::LoadString(yaml, "p.yaml", spec);
  ASSERT_TRUE(p.ok()) << p.status();
  Events events(spec->schema);
  std::vector<double> f = {0, 0};
  const Outcome o =
      (*p)->Decide(events.Decode(Withdrawal("u1", "w1", 1000)), f.data(), kNaN, false);
  EXPECT_EQ(o.num_fired, 40);
  EXPECT_EQ(o.num_listed(), 32);
  EXPECT_EQ(o.fired[30].rule, 30);
  EXPECT_EQ(o.action, Action::kBlock);  // the 40th rule decides
  EXPECT_EQ(o.decided_by, "rule:r39");
  EXPECT_EQ(o.fired[31].rule, 39);
  EXPECT_EQ(o.decided_rule, 39);
  EXPECT_EQ((*p)->hits(0, 39), 1);
  EXPECT_EQ((*p)->hits(0, 31), 1);
}

TEST(PolicyDefaultTest, DefaultCoversScoredTypesNotListedWithTheirOwnCounters) {
  auto spec = TestSpec();
  auto p = Policy::LoadString(R"(
event_types:
  withdrawal:
    rules: [{name: big, when: event.amount_usd > 10, action: review}]
default:
  rules: [{name: any_user, when: "event.user != ''", action: challenge}]
  thresholds: [{action: block, score_at_least: 0.9}]
  on_model_unavailable: open
)",
                              "p.yaml", spec);
  ASSERT_TRUE(p.ok()) << p.status();
  const event::Schema& s = *spec->schema;
  const int signup = s.FindType("signup")->index, login = s.FindType("login")->index;
  EXPECT_TRUE((*p)->covers(signup));
  EXPECT_FALSE((*p)->covers(login));  // not scored: default is for scored types
  ASSERT_EQ((*p)->rules_of(signup).size(), 1u);
  Events events(spec->schema);
  std::vector<double> f = {0, 0};
  const Outcome o = (*p)->Decide(
      events.Decode(
          R"({"event_type":"signup","event_id":"e2","time":"2024-01-01T00:00:00Z","user":"u1"})"),
      f.data(), 0.95, true);
  EXPECT_EQ(o.action, Action::kBlock);
  EXPECT_EQ(o.decided_by, "threshold");
  EXPECT_EQ((*p)->hits(signup, 0), 1);
  // The withdrawal section has no thresholds: its score is ignored.
  const Outcome w = (*p)->Decide(events.Decode(Withdrawal("u1", "w1", 5)), f.data(), 0.99, true);
  EXPECT_EQ(w.action, Action::kAllow);
  EXPECT_EQ(w.path, Path::kModel);
}

TEST(PolicyHashTest, ContentHashIsOfWhatThePolicySaysNotItsComments) {
  auto spec = TestSpec();
  std::string reworded(kPolicy);
  reworded.replace(reworded.find("score_at_least: 0.8"), 19, "score_at_least: 0.7");
  auto a = Policy::LoadString(kPolicy, "a.yaml", spec);
  auto b = Policy::LoadString(kPolicy, "b.yaml", spec);
  auto c = Policy::LoadString(StrCat("# edited\n", kPolicy, "# edited\n"), "a.yaml", spec);
  auto d = Policy::LoadString(reworded, "a.yaml", spec);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ((*a)->content_hash().size(), 64u);
  EXPECT_EQ((*a)->content_hash(), (*b)->content_hash());
  EXPECT_EQ((*a)->content_hash(), (*c)->content_hash());              // comments are not the policy
  EXPECT_NE((*a)->content_hash(), (*d)->content_hash()) << reworded;  // a threshold is
}

// A deny list of the policy's own is read at every load (so a reload takes
// its edits, and no model is retrained for it: it is not in the feature
// spec), rules read it beside the spec's lists, and its contents are part
// of the policy's version.
TEST(PolicyListsTest, APolicysOwnListsAreReadAtEachLoadAndVersionIt) {
  vigil::testing::TempDir dir;
  const std::string list = dir.path() + "/deny_users.txt";
  const std::string path = dir.path() + "/policy.yaml";
  auto write = [](const std::string& file, std::string_view text) { std::ofstream(file) << text; };
  write(path, R"(version: 1
lists:
  deny_users: deny_users.txt
event_types:
  withdrawal:
    rules:
      - {name: denied_user, when: "event.user in lists.deny_users", action: block}
      - {name: denied_wallet, when: "event.wallet in lists.deny_wallets", action: block}
)");
  write(list, "# users\nu-bad\n");
  auto spec = TestSpec();
  Events events(spec->schema);
  const double f[2] = {1, 1};
  auto first = Policy::Load(path, spec);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*first)->Decide(events.Decode(Withdrawal("u-bad", "w1", 5)), f, 0.1, true).action,
            Action::kBlock);
  EXPECT_EQ((*first)->Decide(events.Decode(Withdrawal("u-new", "w1", 5)), f, 0.1, true).action,
            Action::kAllow);
  EXPECT_EQ((*first)->Decide(events.Decode(Withdrawal("u-new", "w-bad", 5)), f, 0.1, true).action,
            Action::kBlock);  // the spec's list, beside the policy's
  write(list, "u-bad\nu-new\n");
  auto second = Policy::Load(path, spec);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*second)->Decide(events.Decode(Withdrawal("u-new", "w1", 5)), f, 0.1, true).action,
            Action::kBlock);
  EXPECT_NE((*second)->content_hash(), (*first)->content_hash()) << "a list edit is another policy";
  // A name the spec's lists have is refused, at the policy's entry.
  write(path,
        "version: 1\nlists:\n  deny_wallets: deny_users.txt\nevent_types:\n  withdrawal:\n    "
        "rules: []\n");
  auto clash = Policy::Load(path, spec);
  ASSERT_FALSE(clash.ok());
  EXPECT_THAT(std::string(clash.status().message()), HasSubstr("policy.yaml:3:"));
  EXPECT_THAT(std::string(clash.status().message()),
              HasSubstr("list 'deny_wallets' is a list of the feature spec"));
  // A list that cannot be read names it.
  write(path, "version: 1\nlists:\n  gone: gone.txt\nevent_types:\n  withdrawal:\n    rules: []\n");
  EXPECT_THAT(std::string(Policy::Load(path, spec).status().message()),
              HasSubstr("list 'gone': cannot read"));
}

// ----------------------------------------------------------------- errors

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

absl::Status Err(std::string_view yaml) {
  auto p = Policy::LoadString(yaml, "policy.yaml", TestSpec());
  EXPECT_FALSE(p.ok()) << yaml;
  return p.ok() ? absl::OkStatus() : p.status();
}

// A withdrawal section with `body` (indented by 4).
absl::Status ErrIn(std::string_view body) {
  return Err(StrCat("event_types:\n  withdrawal:\n", body));
}

TEST(PolicyErrorTest, UnknownEventTypeWithHint) {
  const absl::Status s = Err("event_types:\n  withdrawl:\n    rules: []\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:2:3: unknown event type 'withdrawl' (did you mean "
                                 "'withdrawal'?)"));
  // At the key, also when the value is on the same line or the key quoted.
  EXPECT_THAT(Msg(Err("event_types:\n  withdrawal: {}\n  'logon': {rules: []}\n")),
              StartsWith("policy.yaml:3:4: unknown event type 'logon'"));
}

TEST(PolicyErrorTest, EventTypeWithTwoSectionsNamesBoth) {
  // Refused where every config is loaded (core/config.cc), before the policy reads it.
  EXPECT_THAT(
      Msg(Err("event_types:\n  withdrawal: {}\n  signup: {}\n  withdrawal: {}\n")),
      StartsWith("policy.yaml:4:3: 'withdrawal' given twice in this mapping (first at 2:3)"));
}

TEST(PolicyErrorTest, EventTypeNotScored) {
  const absl::Status s = Err("event_types:\n  login:\n    rules: []\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:2:3:"));
  EXPECT_THAT(s.message(), HasSubstr("'login' is not scored"));
  EXPECT_THAT(s.message(), HasSubstr("withdrawal, signup"));
}

TEST(PolicyErrorTest, BadActionWithHint) {
  absl::Status s =
      ErrIn("    rules:\n      - {name: a, when: 'event.amount_usd > 1', action: blok}\n");
  EXPECT_THAT(Msg(s),
              StartsWith("policy.yaml:4:57: unknown action 'blok' (did you mean 'block'?)"));
  s = ErrIn(
      "    thresholds: [{action: deny, score_at_least: 0.5}]\n    on_model_unavailable: open\n");
  EXPECT_THAT(s.message(), HasSubstr("unknown action 'deny'"));
  s = ErrIn(
      "    thresholds: [{action: allow, score_at_least: 0.5}]\n    on_model_unavailable: open\n");
  EXPECT_THAT(s.message(), HasSubstr("challenge, review or block"));
}

TEST(PolicyErrorTest, ThresholdOutsideZeroOne) {
  absl::Status s = ErrIn(
      "    thresholds:\n      - {action: block, score_at_least: 1.2}\n"
      "    on_model_unavailable: open\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:4:"));
  EXPECT_THAT(s.message(), HasSubstr("[0, 1], found 1.2"));
  s = ErrIn(
      "    thresholds:\n      - {action: block, score_at_least: high}\n"
      "    on_model_unavailable: open\n");
  EXPECT_THAT(s.message(), HasSubstr("expected a finite number"));
  s = ErrIn("    thresholds:\n      - {action: block}\n    on_model_unavailable: open\n");
  EXPECT_THAT(s.message(), HasSubstr("needs score_at_least"));
}

TEST(PolicyErrorTest, ThresholdsOutOfOrderOrRepeated) {
  absl::Status s = ErrIn(
      "    thresholds:\n      - {action: block, score_at_least: 0.5}\n"
      "      - {action: review, score_at_least: 0.9}\n"
      "    on_model_unavailable: open\n");
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:4:"));  // where the block is written
  EXPECT_THAT(s.message(),
              HasSubstr("block at score_at_least 0.5 is not milder than review at 0.9"));
  s = ErrIn(
      "    thresholds:\n      - {action: block, score_at_least: 0.9}\n"
      "      - {action: block, score_at_least: 0.8}\n    on_model_unavailable: open\n");
  EXPECT_THAT(s.message(), HasSubstr("not milder"));
  s = ErrIn(
      "    thresholds:\n      - {action: block, score_at_least: 0.9}\n"
      "      - {action: review, score_at_least: 0.9}\n    on_model_unavailable: open\n");
  EXPECT_THAT(s.message(),
              HasSubstr("two thresholds at score_at_least 0.9 (the other at policy.yaml:4:"));
}

TEST(PolicyErrorTest, OnModelUnavailableRequiredWithThresholds) {
  absl::Status s = ErrIn("    thresholds: [{action: review, score_at_least: 0.8}]\n");
  EXPECT_THAT(s.message(), HasSubstr("on_model_unavailable is required"));
  s = ErrIn(
      "    thresholds: [{action: review, score_at_least: 0.8}]\n    on_model_unavailable: shut\n");
  EXPECT_THAT(s.message(), HasSubstr("open or closed, found 'shut'"));
  s = ErrIn("    on_model_unavailable: open\n    closed_action: block\n");
  EXPECT_THAT(s.message(), HasSubstr("only with on_model_unavailable: closed"));
  s = ErrIn("    on_model_unavailable: closed\n    closed_action: allow\n");
  EXPECT_THAT(s.message(), HasSubstr("on_model_unavailable: open"));
}

TEST(PolicyErrorTest, DuplicateRuleNames) {
  const absl::Status s = ErrIn(
      "    rules:\n"
      "      - {name: big, when: 'event.amount_usd > 1', action: review}\n"
      "      - {name: big, when: 'event.amount_usd > 2', action: block}\n");
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:5:16: two rules named 'big' in withdrawal "
                                 "(the other at policy.yaml:4:9)"));
}

TEST(PolicyErrorTest, BadRuleName) {
  const absl::Status s = ErrIn(
      "    rules:\n      - {name: 'big one', when: 'event.amount_usd > 1', action: review}\n");
  EXPECT_THAT(s.message(), HasSubstr("letters, digits and _"));
}

TEST(PolicyErrorTest, UnknownFeatureAtItsColumn) {
  // Quoted: the expression starts one column after the quote.
  absl::Status s = ErrIn(
      "    rules:\n      - name: a\n        when: \"event.amount_usd > 1 and "
      "features.wallet_user_30d > 5\"\n"
      "        action: review\n");
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:5:41: unknown feature 'wallet_user_30d'"));
  EXPECT_THAT(s.message(), HasSubstr("did you mean 'features.wallet_users_30d'?"));
  // A rule's `when:` written in each YAML style (the rest of the line after
  // "when:", then the lines after it): the error names the token's own line
  // and column, also where YAML joins lines (folded, plain or quoted over
  // several lines) or reads escapes.
  const struct {
    const char* when;
    const char* at;
  } styles[] = {
      {" features.nope > 5", "5:15"},
      {" |\n          event.amount_usd > 1\n          and features.nope > 5", "7:15"},
      {" >\n          event.amount_usd > 1\n          and features.nope > 5", "7:15"},
      {" event.amount_usd > 1\n          and  features.nope > 5", "6:16"},
      {" \"event.wallet == \\\"w\\\" and features.nope > 5\"", "5:42"},
  };
  for (const auto& c : styles) {
    s = ErrIn(
        StrCat("    rules:\n      - name: a\n        when:", c.when, "\n        action: review\n"));
    EXPECT_THAT(Msg(s), StartsWith(StrCat("policy.yaml:", c.at, ": unknown feature 'nope'")))
        << c.when;
  }
}

TEST(PolicyErrorTest, UnknownFieldAndListFromExpr) {
  absl::Status s =
      ErrIn("    rules:\n      - {name: a, when: 'event.amout_usd > 1', action: review}\n");
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:4:26: unknown event field 'amout_usd'"));
  s = ErrIn(
      "    rules:\n      - {name: a, when: 'event.wallet in lists.deny_wallet', action: block}\n");
  EXPECT_THAT(s.message(),
              HasSubstr("unknown list 'deny_wallet' (did you mean 'lists.deny_wallets'?)"));
}

TEST(PolicyErrorTest, WhenMustBeTrueOrFalse) {
  const absl::Status s =
      ErrIn("    rules:\n      - {name: a, when: 'event.amount_usd * 2', action: review}\n");
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:4:25:"));
  EXPECT_THAT(s.message(), HasSubstr("must be true or false, but it is a number"));
}

TEST(PolicyErrorTest, FieldNotCarriedByTheSectionsType) {
  // `email` is a field of sign-ups only.
  const absl::Status s =
      ErrIn("    rules:\n      - {name: a, when: \"event.email == 'x'\", action: review}\n");
  EXPECT_THAT(s.message(),
              HasSubstr("rule 'a' reads event.email, which withdrawal events do not carry"));
}

TEST(PolicyErrorTest, GroundTruthIsNeverRead) {
  const absl::Status s =
      ErrIn("    rules:\n      - {name: a, when: \"event.truth == 'fraud'\", action: block}\n");
  EXPECT_THAT(s.message(), HasSubstr("ground_truth"));
}

TEST(PolicyErrorTest, UnknownKeysAndShapes) {
  absl::Status s = Err("event_type:\n  withdrawal: {}\n");
  EXPECT_THAT(s.message(), HasSubstr("event_type"));
  EXPECT_THAT(s.message(), HasSubstr("event_types"));  // the suggestion
  s = ErrIn("    rule: []\n");
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:3:"));
  s = ErrIn(
      "    rules:\n      - {name: a, when: 'event.amount_usd > 1', action: review, reson: x}\n");
  EXPECT_THAT(s.message(), HasSubstr("reson"));
  s = ErrIn("    rules:\n      - {name: a, action: review}\n");
  EXPECT_THAT(s.message(), HasSubstr("a rule needs when:"));
  s = Err("version: 2\nevent_types: {}\n");
  EXPECT_THAT(s.message(), HasSubstr("policy version 1"));
  s = Err("name: x\n");
  EXPECT_THAT(s.message(), HasSubstr("event_types"));
  s = Err("event_types: [withdrawal]\n");
  EXPECT_THAT(s.message(), HasSubstr("a map"));
  s = Err("event_types: {withdrawal: {}\n");  // YAML syntax
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(s), StartsWith("policy.yaml:"));
}

TEST(PolicyErrorTest, EmptyEventTypesWithoutDefaultDecidesNothing) {
  const absl::Status s = Err("name: x\nevent_types: {}\n");
  EXPECT_THAT(Msg(s),
              StartsWith("policy.yaml:2:14: event_types: is empty and there is no default"));
  // With a default it covers every scored type.
  EXPECT_TRUE(
      Policy::LoadString("event_types: {}\ndefault: {rules: []}\n", "policy.yaml", TestSpec())
          .ok());
}

TEST(PolicyErrorTest, DescriptionsAreText) {
  EXPECT_THAT(Msg(Err("description: {a: 1}\nevent_types: {withdrawal: {}}\n")),
              StartsWith("policy.yaml:1:14: expected a single value"));
  EXPECT_THAT(Msg(ErrIn("    description: [a, b]\n")),
              StartsWith("policy.yaml:3:18: expected a single value"));
  EXPECT_THAT(
      Msg(ErrIn("    rules:\n      - {name: a, when: 'event.amount_usd > 1', action: review, "
                "description: {x: 1}}\n")),
      HasSubstr("expected a single value"));
  // Text, a number or nothing is fine.
  EXPECT_TRUE(Policy::LoadString("description: >\n  two\n  lines\nevent_types:\n  withdrawal: "
                                 "{description: 7, rules: [{name: a, when: 'true', action: review, "
                                 "description: }]}\n",
                                 "policy.yaml", TestSpec())
                  .ok());
}

TEST(PolicyErrorTest, MissingFileIsNotFound) {
  auto p = Policy::Load("/nonexistent/policy.yaml", TestSpec());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound);
}

// ------------------------------------------------- the exchange example

std::string SourceDir() {
  const char* src = std::getenv("VIGIL_SOURCE_DIR");
  return src == nullptr ? std::string() : src;
}

TEST(ExchangePolicyTest, LoadsAndCoversEveryScoredType) {
  ASSERT_FALSE(SourceDir().empty());
  auto schema = event::Schema::Load(SourceDir() + "/examples/exchange/schema.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto spec = feature::FeatureSpec::Load(SourceDir() + "/examples/exchange/features.yaml", *schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto p = Policy::Load(SourceDir() + "/examples/exchange/policy.yaml", *spec);
  ASSERT_TRUE(p.ok()) << p.status();
  for (const std::string& t : (*spec)->score_on_names) {
    EXPECT_TRUE((*p)->covers((*schema)->FindType(t)->index)) << t;
  }
  // A block scalar's `when` is kept without its final newline.
  const std::vector<RuleInfo>& w = (*p)->rules_of((*schema)->FindType("withdrawal")->index);
  ASSERT_FALSE(w.empty());
  EXPECT_EQ(w[0].name, "takeover_new_wallet");
  EXPECT_NE(w[0].when.back(), '\n');
}

// docs/policy.md's full example loads against the exchange spec (with the
// two lists it assumes).
TEST(ExchangePolicyTest, DocumentedExampleLoads) {
  ASSERT_FALSE(SourceDir().empty());
  auto doc = core::ReadFile(SourceDir() + "/docs/policy.md");
  ASSERT_TRUE(doc.ok()) << doc.status();
  const size_t begin = doc->find("```yaml\n");
  ASSERT_NE(begin, std::string::npos);
  const size_t end = doc->find("```", begin + 8);
  ASSERT_NE(end, std::string::npos);
  const std::string yaml = doc->substr(begin + 8, end - begin - 8);

  auto schema = event::Schema::Load(SourceDir() + "/examples/exchange/schema.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto loaded = feature::FeatureSpec::Load(SourceDir() + "/examples/exchange/features.yaml", *schema);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  auto spec = std::make_shared<feature::FeatureSpec>(**loaded);
  auto lists = std::make_shared<expr::Lists>(*spec->lists);
  ASSERT_TRUE(lists->AddEntries("deny_wallets", {"bc1qdeny"}).ok());
  ASSERT_TRUE(lists->AddEntries("vip_users", {"u0000001"}).ok());
  spec->lists = lists;
  auto p = Policy::LoadString(yaml, "docs/policy.md", spec);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->rules_of((*schema)->FindType("withdrawal")->index).size(), 5u);
  EXPECT_TRUE((*p)->covers((*schema)->FindType("trade")->index));
}

// The sample's stories through the feature engine and the policy: the
// takeover's withdrawal is sent to review by its rule even with a low score,
// and every scored event gets a decision.
TEST(ExchangePolicyTest, SampleTakeoverWithdrawalGoesToReview) {
  ASSERT_FALSE(SourceDir().empty());
  auto schema = event::Schema::Load(SourceDir() + "/examples/exchange/schema.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto spec = feature::FeatureSpec::Load(SourceDir() + "/examples/exchange/features.yaml", *schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto p = Policy::Load(SourceDir() + "/examples/exchange/policy.yaml", *spec);
  ASSERT_TRUE(p.ok()) << p.status();

  event::PiiHasher hasher("k");
  auto reader =
      event::EventReader::Open(SourceDir() + "/examples/exchange/sample.jsonl", *schema, &hasher);
  ASSERT_TRUE(reader.ok()) << reader.status();
  feature::FeatureEngine engine(*spec);
  std::vector<double> features((*spec)->features.size());
  event::Record rec;
  event::Rejection rej;
  int scored = 0;
  bool saw_takeover = false;
  event::EventReader::Result r;
  while ((r = (*reader)->Next(&rec, &rej)) != event::EventReader::Result::kEnd) {
    ASSERT_EQ(r, event::EventReader::Result::kRecord) << rej.violations[0].reason;
    if (engine.Process(rec, features) != feature::FeatureEngine::Result::kScored) continue;
    ++scored;
    const Outcome o = (*p)->Decide(rec, features.data(), 0.05, true);
    if (rec.event_id == "e000000000025") {
      saw_takeover = true;
      EXPECT_EQ(o.action, Action::kReview);
      EXPECT_EQ(o.decided_by, "rule:takeover_new_wallet");
    } else if (rec.event_id == "e000000000006") {  // the owner's own withdrawal
      EXPECT_EQ(o.action, Action::kAllow);
      EXPECT_EQ(o.num_fired, 0);
    }
    // Without the model, withdrawals are held and deposits let through.
    const Outcome down = (*p)->DecideShadow(rec, features.data(), kNaN, true);
    if (rec.type->name == "withdrawal") {
      EXPECT_EQ(down.path, Path::kFailClosed);
      EXPECT_GE(down.action, Action::kReview);
    } else if (rec.type->name == "deposit") {
      EXPECT_EQ(down.path, Path::kFailOpen);
    }
  }
  EXPECT_TRUE(saw_takeover);
  EXPECT_GT(scored, 10);
}

}  // namespace
}  // namespace vigil::policy
