#include "feature/identity_graph.h"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "core/hash.h"
#include "gtest/gtest.h"
#include "core/alloc_counter.h"

namespace vigil::feature {
namespace {

constexpr int64_t kHour = 3600000;
constexpr int64_t kDay = 86400000;

uint64_t Key(std::string_view kind, uint64_t value) {
  return core::HashCombine(core::Hash64(kind), core::HashInt(value));
}
uint64_t User(uint64_t i) { return Key("user_id", i); }
uint64_t Device(uint64_t i) { return Key("device_id", i); }
uint64_t Card(uint64_t i) { return Key("card_bin_last4", i); }
uint64_t Ip(uint64_t i) { return Key("ip_prefix24", i); }
uint64_t Wallet(uint64_t i) { return Key("wallet", i); }

void Obs(IdentityGraph& g, std::initializer_list<uint64_t> nodes, int64_t t_ms) {
  const std::vector<uint64_t> v(nodes);
  g.Observe(v, t_ms);
}

bool HasWord(const absl::Status& st, std::string_view word) {
  return std::string(st.message()).find(word) != std::string::npos;
}

IdentityGraphOptions Opts(int counters = 1) {
  IdentityGraphOptions o;
  o.counters = counters;
  return o;
}

// ---------------------------------------------------------------------------
// Clusters

TEST(IdentityGraphTest, ChainOfSharedKeysJoinsAccounts) {
  IdentityGraph g(Opts());
  const uint64_t a = User(1), b = User(2), c = User(3), d1 = Device(1), c1 = Card(1);
  Obs(g, {a, d1}, kHour);
  Obs(g, {b, d1, c1}, 2 * kHour);
  EXPECT_EQ(g.ClusterSize(a), 4);
  EXPECT_EQ(g.ClusterSize(c), 1);      // not seen yet
  EXPECT_EQ(g.ClusterAccounts(c), 0);  // not seen yet
  Obs(g, {c, c1}, 3 * kHour);
  for (uint64_t n : {a, b, c, d1, c1}) {
    EXPECT_EQ(g.ClusterSize(n), 5) << n;  // every node: 3 accounts, a device, a card
    EXPECT_EQ(g.ClusterAccounts(n), 3) << n;
  }
  EXPECT_EQ(g.stats().clusters, 1);
  EXPECT_EQ(g.stats().links, 4);
}

TEST(IdentityGraphTest, UnrelatedAccountsStaySeparate) {
  IdentityGraph g(Opts());
  Obs(g, {User(1), Device(1)}, kHour);
  Obs(g, {User(2), Device(2)}, kHour);
  EXPECT_EQ(g.ClusterSize(User(1)), 2);
  EXPECT_EQ(g.ClusterAccounts(User(1)), 1);
  EXPECT_EQ(g.ClusterSize(User(2)), 2);
  EXPECT_EQ(g.stats().clusters, 2);
}

TEST(IdentityGraphTest, UnseenNodeIsASingletonWithNoAccountsAndZeroCounters) {
  IdentityGraph g(Opts(2));
  EXPECT_EQ(g.ClusterSize(User(9)), 1);
  EXPECT_EQ(g.ClusterAccounts(User(9)), 0);
  EXPECT_EQ(g.ClusterCounter(User(9), 0), 0.0);
  EXPECT_FALSE(g.IsHub(User(9)));
}

TEST(IdentityGraphTest, AccountIsTheFirstNodeOfAnObservation) {
  IdentityGraph g(Opts());
  Obs(g, {User(1)}, kHour);  // alone: still an account of its own cluster
  EXPECT_EQ(g.ClusterSize(User(1)), 1);
  EXPECT_EQ(g.ClusterAccounts(User(1)), 1);
  Obs(g, {User(1), Device(1)}, kHour);
  EXPECT_EQ(g.ClusterAccounts(Device(1)), 1);
  // A node first seen as a device and later as the first node is an account.
  Obs(g, {Device(1), Card(1)}, kHour);
  EXPECT_EQ(g.ClusterSize(User(1)), 3);
  EXPECT_EQ(g.ClusterAccounts(User(1)), 2);
}

TEST(IdentityGraphTest, RepeatedAndSelfNodesAreIgnored) {
  IdentityGraph g(Opts());
  Obs(g, {User(1), User(1), Device(1), Device(1)}, kHour);
  EXPECT_EQ(g.ClusterSize(User(1)), 2);
  EXPECT_EQ(g.stats().links, 1);
  EXPECT_EQ(g.stats().nodes, 2);
  g.Observe({}, kHour);  // an empty observation does nothing
  EXPECT_EQ(g.stats().nodes, 2);
}

// ---------------------------------------------------------------------------
// Counters

TEST(IdentityGraphTest, CountersSumOverTheClusterAndFollowMerges) {
  IdentityGraph g(Opts(2));
  const uint64_t a = User(1), b = User(2), d = Device(1);
  g.Add(a, 0, 1);
  g.Add(b, 0, 2);
  g.Add(b, 1, 5);
  EXPECT_EQ(g.ClusterCounter(a, 0), 1);
  EXPECT_EQ(g.ClusterCounter(b, 0), 2);
  EXPECT_EQ(g.ClusterCounter(a, 1), 0);
  Obs(g, {a, d}, kHour);
  EXPECT_EQ(g.ClusterCounter(d, 0), 1);
  Obs(g, {b, d}, kHour);  // joins {a, d} and {b}
  for (uint64_t n : {a, b, d}) {
    EXPECT_EQ(g.ClusterCounter(n, 0), 3) << n;
    EXPECT_EQ(g.ClusterCounter(n, 1), 5) << n;
  }
  g.Add(d, 0, 0.5);  // after the merge, on a non-account member
  EXPECT_EQ(g.ClusterCounter(a, 0), 3.5);
  EXPECT_EQ(g.ClusterCounter(b, 0), 3.5);
  g.Rebuild(2 * kHour);  // recomputed from the members: same answer
  EXPECT_EQ(g.ClusterCounter(a, 0), 3.5);
  EXPECT_EQ(g.ClusterCounter(b, 1), 5);
}

TEST(IdentityGraphTest, CounterOutOfRangeOrNotFiniteIsIgnored) {
  IdentityGraph g(Opts(1));
  g.Add(User(1), 0, 2);
  g.Add(User(1), 1, 7);
  g.Add(User(1), -1, 7);
  g.Add(User(1), 0, std::numeric_limits<double>::quiet_NaN());
  g.Add(User(1), 0, std::numeric_limits<double>::infinity());
  EXPECT_EQ(g.ClusterCounter(User(1), 0), 2);
  EXPECT_EQ(g.ClusterCounter(User(1), 1), 0);
  EXPECT_EQ(g.ClusterCounter(User(1), -1), 0);
}

TEST(IdentityGraphTest, AddingZeroToAnUnseenNodeCreatesNothing) {
  IdentityGraph g(Opts(1));
  g.Add(User(1), 0, 0);
  EXPECT_EQ(g.stats().nodes, 0);
  g.Add(User(1), 0, 1);
  EXPECT_EQ(g.stats().nodes, 1);
  EXPECT_EQ(g.ClusterAccounts(User(1)), 0);  // counters do not make an account
}

// ---------------------------------------------------------------------------
// Guardrails

TEST(IdentityGraphTest, HubStopsJoiningAccountsAfterTheNextRebuild) {
  IdentityGraphOptions o = Opts(1);
  o.max_degree = 50;
  IdentityGraph g(o);
  const uint64_t ip = Ip(1), d = Device(1);
  const int64_t t0 = 10 * kDay + kHour;
  Obs(g, {User(0), d}, t0);  // a genuine pair sharing a device
  Obs(g, {User(1), d}, t0);
  for (int i = 0; i < 60; ++i) {
    Obs(g, {User(i), ip}, t0 + i);
    g.Add(User(i), 0, 1);
  }
  // The 51st distinct neighbour made the IP a hub; until the rebuild, the 50
  // links it had still join (union-find cannot split).
  EXPECT_TRUE(g.IsHub(ip));
  EXPECT_EQ(g.ClusterSize(User(0)), 52);  // 50 users, the IP, the device
  EXPECT_EQ(g.ClusterAccounts(User(0)), 50);
  EXPECT_EQ(g.ClusterCounter(User(0), 0), 50);
  EXPECT_EQ(g.ClusterSize(User(55)), 1);  // refused
  EXPECT_EQ(g.stats().hubs, 1);

  Obs(g, {User(2), ip}, t0 + kDay);  // next day: the rebuild runs first
  EXPECT_EQ(g.stats().rebuilds, 1);
  EXPECT_TRUE(g.IsHub(ip));
  EXPECT_EQ(g.ClusterSize(ip), 1);
  EXPECT_EQ(g.ClusterSize(User(2)), 1);
  EXPECT_EQ(g.ClusterSize(User(30)), 1);
  EXPECT_EQ(g.ClusterSize(User(0)), 3);  // the pair and its device stay joined
  EXPECT_EQ(g.ClusterAccounts(User(1)), 2);
  EXPECT_EQ(g.ClusterCounter(User(0), 0), 2);
  EXPECT_EQ(g.ClusterCounter(User(30), 0), 1);
  // And a hub takes no new links.
  Obs(g, {User(100), ip}, t0 + kDay + 1);
  EXPECT_EQ(g.ClusterSize(User(100)), 1);
  EXPECT_EQ(g.stats().links, 2);
}

TEST(IdentityGraphTest, AccountWithTooManyNeighboursBecomesAHub) {
  IdentityGraphOptions o = Opts(0);
  o.max_degree = 3;
  IdentityGraph g(o);
  Obs(g, {User(1), Device(1), Device(2), Device(3), Device(4), Device(5)}, kHour);
  EXPECT_TRUE(g.IsHub(User(1)));
  EXPECT_FALSE(g.IsHub(Device(4)));
  EXPECT_EQ(g.ClusterSize(User(1)), 4);
  EXPECT_EQ(g.ClusterSize(Device(5)), 1);
  EXPECT_EQ(g.stats().links, 3);
}

TEST(IdentityGraphTest, HubStatusLapsesWhenTheHubIsNotSeenForTheTtl) {
  IdentityGraphOptions o = Opts(0);
  o.max_degree = 2;
  o.link_ttl_ms = 10 * kDay;
  IdentityGraph g(o);
  for (int i = 0; i < 3; ++i) Obs(g, {User(i), Ip(1)}, kHour);
  ASSERT_TRUE(g.IsHub(Ip(1)));
  Obs(g, {User(7), Ip(1)}, 5 * kDay);  // seen again: still a hub
  Obs(g, {User(9)}, 14 * kDay);
  EXPECT_TRUE(g.IsHub(Ip(1)));
  Obs(g, {User(9)}, 15 * kDay + kHour);  // 10 days after it was last seen
  EXPECT_FALSE(g.IsHub(Ip(1)));
  Obs(g, {User(10), Ip(1)}, 15 * kDay + 2 * kHour);
  Obs(g, {User(11), Ip(1)}, 15 * kDay + 2 * kHour);
  EXPECT_EQ(g.ClusterSize(User(10)), 3);
}

// A late event that makes a node a hub: the node was seen later than that
// event, through a link it holds (until the first rebuild after, which drops
// the hub's links). That later sighting is the one its status lives from.
// Device 1 is linked to user 1 at 23:00 of the day, and made a hub by a late
// event at 22:00: with link_ttl `ttl`, a rebuild at `rebuild_at` (cutoff
// 22:30 of the day) must find it a hub.
void ExpectLateHubLivesFromItsLatestSighting(int64_t ttl,
                                             std::initializer_list<int64_t> rebuild_at) {
  IdentityGraphOptions o = Opts(0);
  o.max_degree = 1;
  o.link_ttl_ms = ttl;
  IdentityGraph g(o);
  const int64_t day = 10 * kDay;
  Obs(g, {User(1), Device(1)}, day + 23 * kHour);
  Obs(g, {User(2), Device(1)}, day + 22 * kHour);  // late, refused: the device is a hub
  ASSERT_TRUE(g.IsHub(Device(1)));
  for (const int64_t t : rebuild_at) Obs(g, {User(3)}, day + t);
  EXPECT_EQ(g.stats().rebuilds, static_cast<int64_t>(rebuild_at.size()));
  EXPECT_TRUE(g.IsHub(Device(1)));
  EXPECT_EQ(g.ClusterSize(User(1)), 1);  // its link cut
}

TEST(IdentityGraphTest, HubMadeByALateEventLivesFromItsLatestSighting) {
  // Still holding the link at the rebuild that decides.
  ExpectLateHubLivesFromItsLatestSighting(12 * kHour, {kDay + 10 * kHour + kHour / 2});
  // The link dropped by an earlier rebuild, which did not have to decide.
  ExpectLateHubLivesFromItsLatestSighting(36 * kHour,
                                          {kDay + kHour / 2, 2 * kDay + 10 * kHour + kHour / 2});
}

TEST(IdentityGraphTest, StopNodesNeverLink) {
  IdentityGraph g(Opts(1));
  const uint64_t hot_wallet = Wallet(1);
  g.AddStopNode(hot_wallet);
  Obs(g, {User(1), hot_wallet}, kHour);
  Obs(g, {User(2), hot_wallet, Device(2)}, kHour);
  EXPECT_EQ(g.ClusterSize(User(1)), 1);
  EXPECT_EQ(g.ClusterSize(User(2)), 2);
  EXPECT_EQ(g.ClusterSize(hot_wallet), 1);
  EXPECT_EQ(g.stats().nodes, 3);  // the stop node is not held
  EXPECT_EQ(g.stats().links, 1);
  Obs(g, {hot_wallet, User(1)}, kHour);  // a stop node as the account: no-op
  EXPECT_EQ(g.ClusterSize(User(1)), 1);
  EXPECT_EQ(g.ClusterAccounts(hot_wallet), 0);
}

// A stop-listed account's own events (a referrer listed as a user is
// stopped as every user) count nothing, in its cluster or elsewhere.
TEST(IdentityGraphTest, StopNodesCountNothing) {
  IdentityGraph g(Opts(1));
  const uint64_t referrer = User(9);
  g.AddStopNode(referrer);
  Obs(g, {referrer, Device(1)}, kHour);
  g.Add(referrer, 0, 1);
  g.Add(referrer, 0, 1);
  EXPECT_EQ(g.ClusterCounter(referrer, 0), 0);
  EXPECT_EQ(g.ClusterSize(referrer), 1);
  EXPECT_EQ(g.stats().nodes, 0);
}

TEST(IdentityGraphTest, NodeStoppedAfterLinkingIsCutAtTheNextRebuild) {
  IdentityGraph g(Opts(0));
  Obs(g, {User(1), Ip(1)}, kHour);
  Obs(g, {User(2), Ip(1)}, kHour);
  g.AddStopNode(Ip(1));
  EXPECT_EQ(g.ClusterSize(User(1)), 3);
  g.Rebuild(2 * kHour);
  EXPECT_EQ(g.ClusterSize(User(1)), 1);
  EXPECT_EQ(g.stats().links, 0);
}

TEST(IdentityGraphTest, LinksExpireAfterTheTtlAtARebuild) {
  IdentityGraphOptions o = Opts(0);
  o.link_ttl_ms = 10 * kDay;
  IdentityGraph g(o);
  const uint64_t a = User(1), b = User(2), d = Device(1);
  Obs(g, {a, d}, kHour);
  Obs(g, {b, d}, kHour);
  Obs(g, {a, d}, 5 * kDay);  // refreshes a–d only
  Obs(g, {User(9)}, 9 * kDay + 2 * kHour);
  EXPECT_EQ(g.ClusterSize(b), 3);  // b–d is 9 days old: alive
  const int64_t rebuilds = g.stats().rebuilds;
  // Queries never rebuild: expired or not, the partition changes only when an
  // event's time enters a new period.
  EXPECT_EQ(g.ClusterSize(b), 3);
  Obs(g, {User(9)}, 10 * kDay + 2 * kHour);
  EXPECT_EQ(g.stats().rebuilds, rebuilds + 1);
  EXPECT_EQ(g.ClusterSize(a), 2);
  EXPECT_EQ(g.ClusterSize(b), 1);
  EXPECT_EQ(g.ClusterAccounts(b), 0);  // left with no link and no counter: dropped
  EXPECT_EQ(g.stats().links, 1);
}

TEST(IdentityGraphTest, ExpiredLinkKeepsJoiningUntilTheRebuild) {
  IdentityGraphOptions o = Opts(0);
  o.link_ttl_ms = kHour;
  IdentityGraph g(o);
  Obs(g, {User(1), Device(1)}, kHour);
  Obs(g, {User(2), Device(1)}, 20 * kHour);  // same day: no rebuild
  EXPECT_EQ(g.ClusterSize(User(1)), 3);
  Obs(g, {User(2), Device(1)}, kDay + kHour);
  EXPECT_EQ(g.ClusterSize(User(1)), 1);
  EXPECT_EQ(g.ClusterSize(User(2)), 2);
}

TEST(IdentityGraphTest, RebuildRunsWhenEventTimeEntersANewPeriod) {
  IdentityGraph g(Opts(0));
  // Event times in 1970: were the wall clock consulted, everything would
  // have expired long ago.
  Obs(g, {User(1), Device(1)}, 5 * kHour);
  Obs(g, {User(1), Device(1)}, 23 * kHour);
  EXPECT_EQ(g.stats().rebuilds, 0);
  Obs(g, {User(1), Device(1)}, kDay);  // midnight of day 1
  EXPECT_EQ(g.stats().rebuilds, 1);
  Obs(g, {User(1), Device(1)}, kDay - kHour);  // a late event does not rebuild
  Obs(g, {User(1), Device(1)}, 2 * kDay - 1);
  EXPECT_EQ(g.stats().rebuilds, 1);
  Obs(g, {User(1), Device(1)}, 5 * kDay);  // a gap of days: one rebuild
  EXPECT_EQ(g.stats().rebuilds, 2);
  EXPECT_EQ(g.ClusterSize(User(1)), 2);
}

TEST(IdentityGraphTest, StatsCountNodesLinksHubsClustersAndMemory) {
  IdentityGraphOptions o = Opts(1);
  o.max_degree = 2;
  IdentityGraph g(o);
  const int64_t empty = g.stats().memory_bytes;
  for (int i = 0; i < 3; ++i) Obs(g, {User(i), Ip(1)}, kHour);
  Obs(g, {User(10), Device(10)}, kHour);
  const IdentityGraph::Stats s = g.stats();
  EXPECT_EQ(s.nodes, 6);
  EXPECT_EQ(s.links, 3);
  EXPECT_EQ(s.hubs, 1);
  EXPECT_EQ(s.clusters, 3);  // {u0, u1, ip}, {u2}, {u10, d10}
  EXPECT_EQ(s.rebuilds, 0);
  EXPECT_GT(s.memory_bytes, empty);
}

TEST(IdentityGraphTest, RebuildGivesBackMemoryAfterAMassExpiry) {
  IdentityGraphOptions o = Opts(1);
  o.link_ttl_ms = 2 * kDay;
  IdentityGraph g(o);
  for (int i = 0; i < 50000; ++i) Obs(g, {User(i), Device(i)}, kHour);
  Obs(g, {User(0), Device(0)}, kDay + kHour);  // a rebuild: nothing expired yet
  g.Rebuild(kDay + 2 * kHour);                  // and one more: the working vectors are full size
  const int64_t peak = g.stats().memory_bytes;
  ASSERT_EQ(g.stats().nodes, 100000);
  Obs(g, {User(1), Device(1)}, 3 * kDay);  // every link but one expired at this rebuild
  // Given back by that rebuild itself, its working vectors' too (not a day
  // later, at the next one).
  EXPECT_EQ(g.stats().rebuilds, 3);
  EXPECT_LT(g.stats().memory_bytes, peak / 8) << "peak " << peak;
  g.Rebuild(3 * kDay + kHour);
  EXPECT_EQ(g.stats().nodes, 2);
  EXPECT_LT(g.stats().memory_bytes, peak / 8) << "peak " << peak;
  // And it still works, and grows back.
  for (int i = 2; i < 1000; ++i) Obs(g, {User(i), Device(i)}, 3 * kDay + 2 * kHour);
  EXPECT_EQ(g.stats().nodes, 2 + 2 * 998);
  EXPECT_EQ(g.ClusterSize(User(999)), 2);
}

// ---------------------------------------------------------------------------
// Hot path

TEST(IdentityGraphTest, ObserveAddAndReadsDoNotAllocateOnceNodesAndLinksExist) {
  IdentityGraphOptions o = Opts(2);
  o.max_degree = 3;
  IdentityGraph g(o);
  const std::vector<uint64_t> ev1 = {User(1), Device(1), Card(1), Ip(1)};
  const std::vector<uint64_t> ev2 = {User(2), Device(1), Ip(1)};
  for (int i = 3; i < 8; ++i) Obs(g, {User(i), Ip(1)}, kHour);  // Ip(1) becomes a hub
  g.Observe(ev1, kHour);
  g.Observe(ev2, kHour);
  g.Add(User(1), 0, 1);
  ASSERT_TRUE(g.IsHub(Ip(1)));
  int64_t sink = 0;
  const core::AllocationScope allocations;
  for (int i = 0; i < 1000; ++i) {
    g.Observe(ev1, 2 * kHour + i);
    g.Observe(ev2, 2 * kHour + i);
    g.Add(User(2), 1, 0.25);
    sink += g.ClusterSize(User(1)) + g.ClusterAccounts(Card(1));
    sink += static_cast<int64_t>(g.ClusterCounter(Device(1), 1));
  }
  EXPECT_EQ(allocations.count(), 0);
  EXPECT_GT(sink, 0);
}

// ---------------------------------------------------------------------------
// Determinism and snapshots

struct Op {
  enum Kind { kObserve, kAdd } kind;
  std::vector<uint64_t> nodes;  // kAdd: nodes[0]
  int64_t t_ms = 0;
  int counter = 0;
  double v = 0;
};

// A stream over ~60 days: 300 accounts, shared devices and cards, a few IP
// ranges that turn into hubs, stop nodes, late events and fractional
// counters (so the order of floating-point sums matters).
std::vector<Op> RandomStream(uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<Op> ops;
  int64_t t = 3 * kHour;
  for (int i = 0; i < n; ++i) {
    t += uni(0, 40) * 60000;
    Op op;
    op.t_ms = uni(0, 20) == 0 ? t - uni(0, 30) * kHour : t;  // some late events
    if (uni(0, 3) == 0) {
      op.kind = Op::kAdd;
      op.nodes = {uni(0, 5) == 0 ? Device(uni(0, 99)) : User(uni(0, 299))};
      op.counter = uni(0, 1);
      op.v = uni(1, 9) * 0.1;
    } else {
      op.kind = Op::kObserve;
      op.nodes.push_back(uni(0, 30) == 0 ? Wallet(uni(0, 2)) : User(uni(0, 299)));
      const int extra = uni(0, 3);
      for (int k = 0; k < extra; ++k) {
        const int kind = uni(0, 3);
        op.nodes.push_back(kind == 0   ? Device(uni(0, 99))
                           : kind == 1 ? Card(uni(0, 79))
                           : kind == 2 ? Ip(uni(0, 5))
                                       : Wallet(uni(0, 9)));
      }
    }
    ops.push_back(std::move(op));
  }
  return ops;
}

IdentityGraphOptions StreamOpts() {
  IdentityGraphOptions o;
  o.counters = 2;
  o.max_degree = 12;
  o.link_ttl_ms = 7 * kDay;
  o.rebuild_every_ms = kDay;
  return o;
}

IdentityGraph NewStreamGraph() {
  IdentityGraph g(StreamOpts());
  g.AddStopNode(Wallet(0));
  g.AddStopNode(Wallet(1));
  return g;
}

void Apply(IdentityGraph& g, const Op& op) {
  if (op.kind == Op::kObserve) {
    g.Observe(op.nodes, op.t_ms);
  } else {
    g.Add(op.nodes[0], op.counter, op.v);
  }
}

// Every answer the graph gives about the op's nodes and a fixed sample, with
// doubles as bits.
std::vector<uint64_t> Answers(const IdentityGraph& g, const Op& op) {
  std::vector<uint64_t> probe = op.nodes;
  for (int i = 0; i < 300; i += 37) probe.push_back(User(i));
  probe.push_back(Ip(0));
  probe.push_back(Device(5));
  std::vector<uint64_t> out;
  for (uint64_t n : probe) {
    out.push_back(static_cast<uint64_t>(g.ClusterSize(n)));
    out.push_back(static_cast<uint64_t>(g.ClusterAccounts(n)));
    out.push_back(std::bit_cast<uint64_t>(g.ClusterCounter(n, 0)));
    out.push_back(std::bit_cast<uint64_t>(g.ClusterCounter(n, 1)));
    out.push_back(g.IsHub(n));
  }
  const IdentityGraph::Stats s = g.stats();
  for (int64_t v : {s.nodes, s.links, s.hubs, s.clusters, s.rebuilds}) {
    out.push_back(static_cast<uint64_t>(v));
  }
  return out;
}

// Applies ops[from...] to both graphs; they must give the same answers after
// every op, and the same snapshot bytes every 500 ops and at the end.
void ExpectSameFrom(IdentityGraph& a, IdentityGraph& b, const std::vector<Op>& ops, size_t from) {
  for (size_t i = from; i < ops.size(); ++i) {
    Apply(a, ops[i]);
    Apply(b, ops[i]);
    ASSERT_EQ(Answers(a, ops[i]), Answers(b, ops[i])) << "op " << i;
    if (i % 500 == 0 || i + 1 == ops.size()) {
      std::string sa, sb;
      a.SerializeTo(&sa);
      b.SerializeTo(&sb);
      ASSERT_EQ(sa, sb) << "op " << i;
    }
  }
}

TEST(IdentityGraphTest, TheStreamExercisesRebuildsHubsAndRings) {
  // Guards the two tests below against a stream too tame to catch anything.
  IdentityGraph g = NewStreamGraph();
  int64_t max_hubs = 0, max_size = 0, max_dropped = 0;
  for (const Op& op : RandomStream(7, 6000)) {
    const int64_t before = g.stats().nodes;
    Apply(g, op);
    max_hubs = std::max(max_hubs, g.stats().hubs);
    max_size = std::max(max_size, g.ClusterSize(op.nodes[0]));
    max_dropped = std::max(max_dropped, before - g.stats().nodes);
  }
  EXPECT_GE(g.stats().rebuilds, 40);
  EXPECT_GE(max_hubs, 3);
  EXPECT_GE(max_size, 20);
  EXPECT_GT(max_dropped, 10);  // expiry made rebuilds drop nodes
}

TEST(IdentityGraphTest, SameCallsGiveIdenticalAnswersAtEveryStep) {
  IdentityGraph g1 = NewStreamGraph();
  IdentityGraph g2 = NewStreamGraph();
  ExpectSameFrom(g1, g2, RandomStream(11, 6000), 0);
}

TEST(IdentityGraphTest, RestoredSnapshotContinuesExactlyLikeTheUninterruptedGraph) {
  const std::vector<Op> ops = RandomStream(13, 6000);
  for (size_t cut : {size_t{1}, size_t{1500}, size_t{2999}, size_t{4321}}) {
    IdentityGraph live = NewStreamGraph();
    for (size_t i = 0; i < cut; ++i) Apply(live, ops[i]);
    std::string snap;
    live.SerializeTo(&snap);
    IdentityGraph restored(StreamOpts());  // stop nodes come from the snapshot
    ASSERT_TRUE(restored.ParseFrom(snap).ok());
    SCOPED_TRACE(testing::Message() << "cut " << cut);
    ExpectSameFrom(live, restored, ops, cut);
  }
}

TEST(IdentityGraphTest, SnapshotBytesDependOnlyOnTheState) {
  IdentityGraph g = NewStreamGraph();
  const std::vector<Op> ops = RandomStream(17, 2500);
  for (const Op& op : ops) Apply(g, op);
  std::string a, b;
  g.SerializeTo(&a);
  IdentityGraph r(StreamOpts());
  ASSERT_TRUE(r.ParseFrom(a).ok());
  r.SerializeTo(&b);
  EXPECT_EQ(a, b);
}

// ---------------------------------------------------------------------------
// Malformed snapshots

std::string ValidSnapshot(IdentityGraph* out = nullptr) {
  IdentityGraph g = NewStreamGraph();
  for (const Op& op : RandomStream(19, 400)) Apply(g, op);
  std::string s;
  g.SerializeTo(&s);
  if (out != nullptr) *out = g;
  return s;
}

// Recomputes the trailing checksum, to reach the structural checks.
void Reseal(std::string* s) {
  const uint64_t h = core::Hash64(std::string_view(*s).substr(0, s->size() - 8));
  for (int i = 0; i < 8; ++i) (*s)[s->size() - 8 + i] = static_cast<char>(h >> (8 * i));
}

void PutLe(std::string* s, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) (*s)[at + i] = static_cast<char>(v >> (8 * i));
}

// Offsets in the format (identity_graph.cc): 20-byte header, then 24 bytes
// of options, 16 of epoch and rebuilds, the stop list, the nodes.
constexpr size_t kStopCountAt = 20 + 24 + 16;

TEST(IdentityGraphTest, ParseRejectsEveryTruncatedPrefix) {
  const std::string snap = ValidSnapshot();
  for (size_t len = 0; len < snap.size(); ++len) {
    IdentityGraph g(StreamOpts());
    const absl::Status st = g.ParseFrom(std::string_view(snap).substr(0, len));
    ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << len;
    ASSERT_TRUE(HasWord(st, "truncated")) << len << ": " << st;
  }
}

TEST(IdentityGraphTest, ParseRejectsEveryCorruptedByte) {
  const std::string snap = ValidSnapshot();
  for (size_t at = 0; at < snap.size(); ++at) {
    std::string bad = snap;
    bad[at] = static_cast<char>(bad[at] ^ (1 << (at % 8)));
    IdentityGraph g(StreamOpts());
    const absl::Status st = g.ParseFrom(bad);
    ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << at;
    if (at >= 20 && at < snap.size() - 8) {
      ASSERT_TRUE(HasWord(st, "checksum")) << at << ": " << st;
    }
  }
  std::string longer = snap + "x";
  EXPECT_TRUE(HasWord(IdentityGraph(StreamOpts()).ParseFrom(longer), "unexpected bytes"));
}

TEST(IdentityGraphTest, ParseNamesTheBadMagicAndVersion) {
  std::string snap = ValidSnapshot();
  IdentityGraph g(StreamOpts());
  std::string bad = snap;
  bad[0] = 'X';
  EXPECT_TRUE(HasWord(g.ParseFrom(bad), "magic"));
  bad = snap;
  PutLe(&bad, 8, 99, 4);
  const absl::Status st = g.ParseFrom(bad);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasWord(st, "version 99")) << st;
  // Version 1 (nodes in id order) is read as a layout in that order.
  bad = snap;
  PutLe(&bad, 8, 1, 4);
  Reseal(&bad);
  EXPECT_TRUE(g.ParseFrom(bad).ok());
}

// A real version-1 snapshot (nodes in id order, each cluster named by its
// smallest id) restores and continues exactly like the graph that wrote it.
// Ids are given in order of first appearance, so that the layout (call
// order) is id order and the graph's version-2 bytes are what version 1
// wrote.
TEST(IdentityGraphTest, Version1SnapshotRestoresAndContinuesLikeTheGraphThatWroteIt) {
  std::vector<Op> ops = RandomStream(23, 5000);
  std::unordered_map<uint64_t, uint64_t> renamed;
  for (Op& op : ops) {
    for (uint64_t& n : op.nodes) n = renamed.try_emplace(n, renamed.size() + 1).first->second;
  }
  IdentityGraph live(StreamOpts());
  constexpr size_t kCut = 2500;
  for (size_t i = 0; i < kCut; ++i) Apply(live, ops[i]);
  ASSERT_GE(live.stats().rebuilds, 10);
  std::string snap;
  live.SerializeTo(&snap);
  PutLe(&snap, 8, 1, 4);
  Reseal(&snap);
  IdentityGraph restored(StreamOpts());
  ASSERT_TRUE(restored.ParseFrom(snap).ok());
  ExpectSameFrom(live, restored, ops, kCut);
}

TEST(IdentityGraphTest, ParseRefusesASnapshotWithOtherCounters) {
  const std::string snap = ValidSnapshot();  // 2 counters
  IdentityGraph g(Opts(3));
  const absl::Status st = g.ParseFrom(snap);
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(HasWord(st, "2 cluster counters")) << st;
}

TEST(IdentityGraphTest, ParseRejectsInconsistentStateEvenWithAValidChecksum) {
  // One link, a–d, and z alone with a counter: nodes in the graph's layout,
  // the order they were added (a, d, z).
  IdentityGraph g(Opts(1));
  const uint64_t a = User(1), d = Device(1), z = User(2);
  Obs(g, {a, d}, kHour);
  g.Add(z, 0, 1);
  g.AddStopNode(Wallet(1));
  g.AddStopNode(Wallet(2));
  std::string snap;
  g.SerializeTo(&snap);
  const size_t nodes_at = kStopCountAt + 8 + 2 * 8;  // after 2 stop ids
  ASSERT_EQ(snap.substr(nodes_at, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  auto parse = [](const std::string& s) { return IdentityGraph(Opts(1)).ParseFrom(s); };
  auto expect = [&](std::string bad, std::string_view word) {
    Reseal(&bad);
    const absl::Status st = parse(bad);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << word;
    EXPECT_TRUE(HasWord(st, word)) << st;
  };
  ASSERT_TRUE(parse(snap).ok());

  std::string bad = snap;  // the second stop id repeats the first
  bad.replace(kStopCountAt + 16, 8, snap.substr(kStopCountAt + 8, 8));
  expect(bad, "ids must increase");

  bad = snap;  // a node count that cannot fit
  PutLe(&bad, nodes_at, uint64_t{1} << 60, 8);
  expect(bad, "bytes left");

  const size_t first = nodes_at + 8;  // first node: id, flags, leader
  bad = snap;
  bad[first + 8] = static_cast<char>(0x80);
  expect(bad, "unknown flags");

  bad = snap;
  PutLe(&bad, first + 9, 2, 4);  // the first node names a later leader
  expect(bad, "cluster leader");

  // The second node (d: id, flags, leader, one counter) takes a's id.
  bad = snap;
  PutLe(&bad, first + 8 + 1 + 4 + 8 + 8, a, 8);  // a leads its cluster: one sum too
  expect(bad, "repeats the id of node 0");

  // The last link (the only one) rewired to join z's cluster (a is node 0,
  // z node 2).
  const size_t link_at = snap.size() - 8 - 16;
  bad = snap;
  PutLe(&bad, link_at, 0, 4);
  PutLe(&bad, link_at + 4, 2, 4);
  expect(bad, "different clusters");

  bad = snap;
  PutLe(&bad, link_at, 2, 4);
  PutLe(&bad, link_at + 4, 1, 4);
  expect(bad, "needs a < b");
}

TEST(IdentityGraphTest, FailedParseLeavesTheGraphUnchanged) {
  IdentityGraph g(StreamOpts());
  const std::string snap = ValidSnapshot(&g);
  std::string before;
  g.SerializeTo(&before);
  EXPECT_FALSE(g.ParseFrom(snap.substr(0, snap.size() / 2)).ok());
  std::string after;
  g.SerializeTo(&after);
  EXPECT_EQ(before, after);
}

TEST(IdentityGraphTest, ParseNeverCrashesOnRandomOrMangledBytes) {
  std::mt19937_64 rng(23);
  const std::string snap = ValidSnapshot();
  for (int i = 0; i < 3000; ++i) {
    std::string bytes;
    if (i % 3 == 0) {
      bytes.resize(rng() % 300);
      for (char& c : bytes) c = static_cast<char>(rng());
    } else {
      // A valid snapshot with a few bytes changed and the checksum redone,
      // so that the structural checks are what must hold.
      bytes = snap;
      const int changes = 1 + static_cast<int>(rng() % 4);
      for (int k = 0; k < changes; ++k) {
        bytes[20 + rng() % (bytes.size() - 28)] = static_cast<char>(rng());
      }
      Reseal(&bytes);
    }
    IdentityGraph g(StreamOpts());
    const absl::Status st = g.ParseFrom(bytes);
    if (i % 3 == 0) {
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
    }
    if (st.ok()) {
      // Whatever passed must be a graph that works and round-trips.
      Obs(g, {User(1), Device(1), Ip(0)}, 70 * kDay);
      g.Add(User(1), 1, 1);
      g.Rebuild(71 * kDay);
      std::string a, b;
      g.SerializeTo(&a);
      IdentityGraph h(StreamOpts());
      ASSERT_TRUE(h.ParseFrom(a).ok());
      h.SerializeTo(&b);
      ASSERT_EQ(a, b);
    }
  }
}

}  // namespace
}  // namespace vigil::feature
