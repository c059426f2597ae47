#include "policy/experiment.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/alloc_counter.h"
#include "core/hash.h"
#include "core/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::policy {
namespace {

using ::testing::HasSubstr;

constexpr int kUnits = 100000;
// Arms of the first 16 users of UserHashes under {a: 0.5, b: 0.5}, salt 7.
constexpr char kPinnedArms[] = "0100010001110011";

// The hashes of user ids as a Record carries them (core::Hash64 of the text).
std::vector<uint64_t> UserHashes(int n) {
  std::vector<uint64_t> h;
  h.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) h.push_back(core::Hash64(StrCat("u", 1000000 + i)));
  return h;
}

// Within 5 standard deviations of a binomial share over n draws.
void ExpectShare(int count, int n, double share, const std::string& what) {
  const double sd = std::sqrt(share * (1 - share) / n);
  EXPECT_NEAR(static_cast<double>(count) / n, share, 5 * sd + 1e-12) << what;
}

TEST(ArmAssignerTest, SharesAreRespectedOverHashedUserIds) {
  auto a =
      ArmAssigner::Create({{"champion", 0.8}, {"challenger_a", 0.15}, {"challenger_b", 0.05}}, 42);
  ASSERT_TRUE(a.ok()) << a.status();
  std::vector<int> counts(a->size());
  for (uint64_t h : UserHashes(kUnits)) ++counts[static_cast<size_t>(a->Assign(h))];
  ExpectShare(counts[0], kUnits, 0.8, "champion");
  ExpectShare(counts[1], kUnits, 0.15, "challenger_a");
  ExpectShare(counts[2], kUnits, 0.05, "challenger_b");
  EXPECT_EQ(a->name(1), "challenger_a");
  EXPECT_EQ(a->share(2), 0.05);
}

TEST(ArmAssignerTest, SharesAreRespectedOverSequentialNumbers) {
  // A caller passing raw sequential ids instead of hashes still gets the shares.
  auto a = ArmAssigner::Create({{"a", 0.5}, {"b", 0.3}, {"c", 0.2}}, 0);
  ASSERT_TRUE(a.ok());
  std::vector<int> counts(3);
  for (int i = 0; i < kUnits; ++i)
    ++counts[static_cast<size_t>(a->Assign(static_cast<uint64_t>(i)))];
  ExpectShare(counts[0], kUnits, 0.5, "a");
  ExpectShare(counts[1], kUnits, 0.3, "b");
  ExpectShare(counts[2], kUnits, 0.2, "c");
}

TEST(ArmAssignerTest, AssignmentIsStableAcrossInstancesAndFixedValues) {
  auto a = ArmAssigner::Create({{"a", 0.5}, {"b", 0.5}}, 7);
  auto b = ArmAssigner::Create({{"a", 0.5}, {"b", 0.5}}, 7);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<uint64_t> users = UserHashes(10000);
  for (uint64_t h : users) {
    ASSERT_EQ(a->Assign(h), b->Assign(h));
    ASSERT_EQ(a->Assign(h), a->Assign(h));
  }
  // Pinned values: the assignment must not change between builds or
  // machines (core/hash.h is stable); a change here reshuffles every live
  // experiment's users.
  std::string arms;
  for (int i = 0; i < 16; ++i)
    arms += static_cast<char>('0' + a->Assign(users[static_cast<size_t>(i)]));
  EXPECT_EQ(arms, kPinnedArms);
}

TEST(ArmAssignerTest, SaltsGiveIndependentAssignments) {
  auto a = ArmAssigner::Create({{"a", 0.5}, {"b", 0.5}}, 1);
  auto b = ArmAssigner::Create({{"a", 0.5}, {"b", 0.5}}, 2);
  ASSERT_TRUE(a.ok() && b.ok());
  int both = 0, differ = 0;
  for (uint64_t h : UserHashes(kUnits)) {
    both += a->Assign(h) == 0 && b->Assign(h) == 0;
    differ += a->Assign(h) != b->Assign(h);
  }
  ExpectShare(both, kUnits, 0.25, "first arm under both salts");
  ExpectShare(differ, kUnits, 0.5, "different arms");
}

TEST(ArmAssignerTest, GrowingAnArmMovesOnlyTheUnitsItGains) {
  auto before = ArmAssigner::Create({{"a", 0.9}, {"b", 0.1}}, 3);
  auto after = ArmAssigner::Create({{"a", 0.8}, {"b", 0.2}}, 3);
  ASSERT_TRUE(before.ok() && after.ok());
  int moved_to_a = 0, moved_to_b = 0;
  for (uint64_t h : UserHashes(kUnits)) {
    const int x = before->Assign(h), y = after->Assign(h);
    moved_to_a += x == 1 && y == 0;
    moved_to_b += x == 0 && y == 1;
  }
  EXPECT_EQ(moved_to_a, 0);  // nobody in b leaves it
  ExpectShare(moved_to_b, kUnits, 0.1, "moved to b");
}

TEST(ArmAssignerTest, ArmOfShareZeroNeverAssignedAndSingleArmTakesAll) {
  auto a = ArmAssigner::Create({{"off", 0}, {"on", 1}, {"later", 0}}, 5);
  ASSERT_TRUE(a.ok()) << a.status();
  for (uint64_t h : UserHashes(1000)) ASSERT_EQ(a->Assign(h), 1);
  EXPECT_EQ(a->Assign(UINT64_MAX), 1);
  EXPECT_EQ(a->Assign(0), 1);
}

TEST(ArmAssignerTest, SharesNotSummingToOneAndBadArmsAreErrors) {
  absl::StatusOr<ArmAssigner> a = ArmAssigner::Create({{"a", 0.5}, {"b", 0.4}}, 0);
  EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(a.status().message(), HasSubstr("sum to 1"));
  EXPECT_THAT(a.status().message(), HasSubstr("a 0.5 + b 0.4 = 0.9"));
  a = ArmAssigner::Create({}, 0);
  EXPECT_THAT(a.status().message(), HasSubstr("at least one arm"));
  a = ArmAssigner::Create({{"a", 0.5}, {"a", 0.5}}, 0);
  EXPECT_THAT(a.status().message(), HasSubstr("two arms named 'a'"));
  a = ArmAssigner::Create({{"", 1}}, 0);
  EXPECT_THAT(a.status().message(), HasSubstr("no name"));
  a = ArmAssigner::Create({{"a", 1.5}, {"b", -0.5}}, 0);
  EXPECT_THAT(a.status().message(), HasSubstr("not in [0, 1]"));
  a = ArmAssigner::Create({{"a", std::nan("")}}, 0);
  EXPECT_THAT(a.status().message(), HasSubstr("not in [0, 1]"));
  // Shares written in decimal sum to 1 within rounding.
  EXPECT_TRUE(ArmAssigner::Create({{"a", 0.1}, {"b", 0.2}, {"c", 0.7}}, 0).ok());
}

TEST(HoldoutTest, LetsThroughItsShareDeterministically) {
  const Holdout h(0.02, 9);
  int through = 0;
  for (int i = 0; i < kUnits; ++i) {
    const uint64_t id = core::Hash64(StrCat("e", 100000000000 + i));
    const bool t = h.LetThrough(id);
    through += t;
    ASSERT_EQ(t, h.LetThrough(id));                 // a retry gets the same answer
    ASSERT_EQ(t, Holdout(0.02, 9).LetThrough(id));  // so does another process
  }
  ExpectShare(through, kUnits, 0.02, "held out");
  EXPECT_EQ(h.share(), 0.02);
}

TEST(HoldoutTest, IndependentOfArmsUnderTheSameSalt) {
  // One experiment_salt serves both: the draws must not line up.
  auto arms = ArmAssigner::Create({{"a", 0.5}, {"b", 0.5}}, 11);
  ASSERT_TRUE(arms.ok());
  const Holdout h(0.5, 11);
  int both = 0;
  for (uint64_t k : UserHashes(kUnits)) both += arms->Assign(k) == 0 && h.LetThrough(k);
  ExpectShare(both, kUnits, 0.25, "arm a and held out");
}

TEST(HoldoutTest, ZeroAndOneAndOutOfRange) {
  const std::vector<uint64_t> ids = UserHashes(1000);
  for (uint64_t id : ids) {
    ASSERT_FALSE(Holdout(0, 1).LetThrough(id));
    ASSERT_TRUE(Holdout(1, 1).LetThrough(id));
    ASSERT_FALSE(Holdout(std::nan(""), 1).LetThrough(id));
    ASSERT_TRUE(Holdout(7, 1).LetThrough(id));
  }
  EXPECT_EQ(Holdout(-1, 0).share(), 0);
  EXPECT_EQ(Holdout(2, 0).share(), 1);
  auto bad = Holdout::Create(1.5, 0);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("not in [0, 1]"));
  EXPECT_TRUE(Holdout::Create(0.01, 0).ok());
}

TEST(HoldoutTest, ApplyLetsThroughOnlyModelBlocksWithPropensity) {
  const Holdout all(1, 0), none(0, 0), some(0.25, 3);
  Outcome model_block;
  model_block.action = Action::kBlock;
  model_block.decided_by = "threshold";

  Outcome o = model_block;
  EXPECT_EQ(all.Apply(&o, 123), 1.0);
  EXPECT_EQ(o.action, Action::kAllow);
  EXPECT_TRUE(o.held_out);
  EXPECT_EQ(o.decided_by, "threshold");  // what would have decided stays

  o = model_block;
  EXPECT_EQ(none.Apply(&o, 123), 1.0);  // kept with probability 1 - 0
  EXPECT_EQ(o.action, Action::kBlock);
  EXPECT_FALSE(o.held_out);

  // A block rule, a fail-closed block and a review are never let through.
  for (std::string_view by : {"rule:deny_wallet", "on_model_unavailable"}) {
    o = model_block;
    o.decided_by = by;
    EXPECT_EQ(all.Apply(&o, 123), 1.0);
    EXPECT_EQ(o.action, Action::kBlock) << by;
    EXPECT_FALSE(o.held_out);
  }
  o = model_block;
  o.action = Action::kReview;
  EXPECT_EQ(all.Apply(&o, 123), 1.0);
  EXPECT_EQ(o.action, Action::kReview);

  // Propensities: share for those let through, 1 - share for those kept.
  int through = 0;
  for (int i = 0; i < 20000; ++i) {
    o = model_block;
    const double p = some.Apply(&o, core::HashInt(static_cast<uint64_t>(i)));
    if (o.held_out) {
      ++through;
      ASSERT_EQ(p, 0.25);
    } else {
      ASSERT_EQ(p, 0.75);
    }
  }
  ExpectShare(through, 20000, 0.25, "held out");
}

TEST(ExperimentTest, AssignAndLetThroughAllocateNothing) {
  auto a = ArmAssigner::Create({{"a", 0.5}, {"b", 0.25}, {"c", 0.25}}, 1);
  ASSERT_TRUE(a.ok());
  const Holdout h(0.1, 1);
  int sum = 0;
  const core::AllocationScope allocations;
  for (uint64_t i = 0; i < 10000; ++i) {
    sum += a->Assign(i) + h.LetThrough(i);
    Outcome o;
    o.action = Action::kBlock;
    o.decided_by = "threshold";
    sum += h.Apply(&o, i) > 0.5;
  }
  EXPECT_EQ(allocations.count(), 0);
  EXPECT_GT(sum, 0);
}

}  // namespace
}  // namespace vigil::policy
