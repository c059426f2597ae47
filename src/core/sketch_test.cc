#include "core/sketch.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::core {
namespace {

constexpr double kQuantiles[] = {0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999};

// How far `q` is from the range of ranks that `value` has in `sorted`: 0 if
// value is a correct q-quantile, otherwise the rank error of the answer.
double RankError(const std::vector<double>& sorted, double q, double value) {
  const double n = static_cast<double>(sorted.size());
  const double lo = (std::lower_bound(sorted.begin(), sorted.end(), value) - sorted.begin()) / n;
  const double hi = (std::upper_bound(sorted.begin(), sorted.end(), value) - sorted.begin()) / n;
  if (q < lo) return lo - q;
  if (q > hi) return q - hi;
  return 0;
}

double TrueRank(const std::vector<double>& sorted, double v) {
  return static_cast<double>(std::upper_bound(sorted.begin(), sorted.end(), v) - sorted.begin()) /
         static_cast<double>(sorted.size());
}

std::vector<double> Uniform(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(0.0, 1.0);
  std::vector<double> xs(n);
  for (double& x : xs) x = dist(rng);
  return xs;
}

std::vector<double> LogNormal(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> dist(0.0, 2.0);
  std::vector<double> xs(n);
  for (double& x : xs) x = dist(rng);
  return xs;
}

// Checks every quantile in kQuantiles and the rank of the true quantiles
// against `data` (which gets sorted).
void ExpectWithinRankError(const QuantileSketch& sketch, std::vector<double> data,
                           double max_error) {
  std::sort(data.begin(), data.end());
  ASSERT_EQ(sketch.count(), data.size());
  EXPECT_EQ(sketch.min(), data.front());
  EXPECT_EQ(sketch.max(), data.back());
  EXPECT_EQ(sketch.Quantile(0), data.front());
  EXPECT_EQ(sketch.Quantile(1), data.back());
  for (double q : kQuantiles) {
    EXPECT_LE(RankError(data, q, sketch.Quantile(q)), max_error) << "q=" << q;
    const double v = data[static_cast<size_t>(q * static_cast<double>(data.size()))];
    EXPECT_NEAR(sketch.Rank(v), TrueRank(data, v), max_error) << "q=" << q;
  }
}

TEST(QuantileSketchTest, UniformMillionWithinOnePercentRank) {
  const std::vector<double> data = Uniform(1'000'000, 7);
  QuantileSketch sketch;
  for (double x : data) sketch.Add(x);
  ExpectWithinRankError(sketch, data, 0.01);
  // Bounded memory: about 3k items regardless of the stream length.
  EXPECT_LT(sketch.WeightedItems().size(), 3u * 200u + 100u);
}

TEST(QuantileSketchTest, SkewedLogNormalMillionWithinOnePercentRank) {
  const std::vector<double> data = LogNormal(1'000'000, 11);
  QuantileSketch sketch;
  for (double x : data) sketch.Add(x);
  ExpectWithinRankError(sketch, data, 0.01);
}

TEST(QuantileSketchTest, SmallStreamIsExact) {
  // Fewer values than k are never compacted: every quantile is exact.
  QuantileSketch sketch;
  for (int i = 100; i >= 1; --i) sketch.Add(i);
  EXPECT_EQ(sketch.count(), 100u);
  EXPECT_EQ(sketch.Quantile(0.5), 50);
  EXPECT_EQ(sketch.Quantile(0.01), 1);
  EXPECT_EQ(sketch.Quantile(0.011), 2);
  EXPECT_EQ(sketch.Quantile(0.99), 99);
  EXPECT_DOUBLE_EQ(sketch.Rank(37), 0.37);
  EXPECT_EQ(sketch.Rank(0.5), 0.0);
  EXPECT_EQ(sketch.Rank(100), 1.0);
}

TEST(QuantileSketchTest, EmptySketchAnswersNaN) {
  QuantileSketch sketch;
  EXPECT_EQ(sketch.count(), 0u);
  EXPECT_TRUE(std::isnan(sketch.Quantile(0.5)));
  EXPECT_TRUE(std::isnan(sketch.Quantile(0)));
  EXPECT_TRUE(std::isnan(sketch.Rank(1)));
  EXPECT_TRUE(std::isnan(sketch.min()));
  EXPECT_TRUE(std::isnan(sketch.max()));
  EXPECT_TRUE(sketch.WeightedItems().empty());
}

TEST(QuantileSketchTest, IgnoresNaNAndClampsQ) {
  QuantileSketch sketch;
  sketch.Add(std::nan(""));
  EXPECT_EQ(sketch.count(), 0u);
  sketch.Add(3);
  sketch.Add(-std::numeric_limits<double>::infinity());
  sketch.Add(std::nan(""));
  EXPECT_EQ(sketch.count(), 2u);
  EXPECT_EQ(sketch.Quantile(-1), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(sketch.Quantile(2), 3);
  EXPECT_TRUE(std::isnan(sketch.Quantile(std::nan(""))));
}

TEST(QuantileSketchTest, MergeOfHalvesMatchesWhole) {
  const std::vector<double> data = LogNormal(1'000'000, 3);
  QuantileSketch whole(200, 1);
  QuantileSketch first(200, 2);
  QuantileSketch second(200, 3);
  for (size_t i = 0; i < data.size(); ++i) {
    whole.Add(data[i]);
    (i < data.size() / 2 ? first : second).Add(data[i]);
  }
  first.Merge(second);
  ExpectWithinRankError(first, data, 0.01);
  for (double q : kQuantiles) {
    EXPECT_NEAR(first.Rank(whole.Quantile(q)), q, 0.02) << "q=" << q;
  }
  // The weights still account for every value.
  uint64_t weight = 0;
  for (const auto& [v, w] : first.WeightedItems()) weight += w;
  EXPECT_EQ(weight, first.count());
}

TEST(QuantileSketchTest, MergeIntoEmptyAndWithItself) {
  QuantileSketch empty;
  QuantileSketch some;
  for (int i = 0; i < 1000; ++i) some.Add(i);
  empty.Merge(some);
  EXPECT_EQ(empty.count(), 1000u);
  EXPECT_EQ(empty.min(), 0);
  EXPECT_EQ(empty.max(), 999);
  EXPECT_NEAR(empty.Quantile(0.5), 500, 10);

  some.Merge(some);
  EXPECT_EQ(some.count(), 2000u);
  EXPECT_NEAR(some.Quantile(0.5), 500, 10);
}

TEST(QuantileSketchTest, SameSeedGivesSameAnswers) {
  const std::vector<double> data = Uniform(200'000, 5);
  QuantileSketch a(200, 42);
  QuantileSketch b(200, 42);
  QuantileSketch c(200, 43);
  for (double x : data) {
    a.Add(x);
    b.Add(x);
    c.Add(x);
  }
  EXPECT_EQ(a.WeightedItems(), b.WeightedItems());
  for (double q : kQuantiles) EXPECT_EQ(a.Quantile(q), b.Quantile(q));
  // The seed does drive the compactions.
  EXPECT_NE(a.WeightedItems(), c.WeightedItems());
}

TEST(QuantileSketchTest, WeightedItemsRoundTrip) {
  QuantileSketch original(100, 9);
  for (double x : LogNormal(300'000, 17)) original.Add(x);
  // Repeated values exercise the combining of equal items.
  for (int i = 0; i < 50'000; ++i) original.Add(i % 7);
  const auto items = original.WeightedItems();
  ASSERT_TRUE(std::is_sorted(items.begin(), items.end()));

  QuantileSketch restored = QuantileSketch::FromWeightedItems(
      original.k(), original.count(), original.min(), original.max(), items);
  EXPECT_EQ(restored.k(), original.k());
  EXPECT_EQ(restored.count(), original.count());
  EXPECT_EQ(restored.min(), original.min());
  EXPECT_EQ(restored.max(), original.max());
  EXPECT_EQ(restored.WeightedItems(), items);
  for (double q : kQuantiles) {
    EXPECT_EQ(restored.Quantile(q), original.Quantile(q)) << "q=" << q;
    EXPECT_EQ(restored.Rank(original.Quantile(q)), original.Rank(original.Quantile(q)));
  }

  // The restored sketch keeps working.
  for (int i = 0; i < 100'000; ++i) restored.Add(1e9);
  EXPECT_EQ(restored.count(), original.count() + 100'000);
  EXPECT_EQ(restored.max(), 1e9);
  EXPECT_EQ(restored.Quantile(0.9), 1e9);
}

TEST(QuantileSketchTest, FromWeightedItemsRepairsInconsistentInput) {
  const std::vector<std::pair<double, uint64_t>> items = {
      {std::nan(""), 5}, {1.0, 0}, {2.0, 3}, {4.0, 1}};
  QuantileSketch s = QuantileSketch::FromWeightedItems(200, 999, std::nan(""), 3.0, items);
  EXPECT_EQ(s.count(), 4u);  // the weights, not the claimed 999
  EXPECT_EQ(s.min(), 2.0);
  EXPECT_EQ(s.max(), 4.0);
  EXPECT_EQ(s.Quantile(0.5), 2.0);

  QuantileSketch empty = QuantileSketch::FromWeightedItems(200, 10, 0, 1, {});
  EXPECT_EQ(empty.count(), 0u);
  EXPECT_TRUE(std::isnan(empty.Quantile(0.5)));
}

// ---------------------------------------------------------------------------

std::string Key(const char* prefix, uint64_t i) { return prefix + std::to_string(i); }

TEST(DistinctCounterTest, HundredThousandWithinThreePercent) {
  // The standard error at p = 12 is 1.6%, so 3% is about 1.9 of them: a
  // different key set can miss it (see MergeEqualsUnion).
  DistinctCounter counter;
  for (uint64_t i = 0; i < 100'000; ++i) {
    counter.Add(Key("user-", i));
    counter.Add(Key("user-", i));  // duplicates change nothing
  }
  EXPECT_NEAR(counter.Estimate(), 100'000, 3'000);
}

TEST(DistinctCounterTest, SequentialIntegerHashesWithinThreePercent) {
  // HashInt of sequential ids is too regular for HyperLogLog by itself;
  // AddHash must remix it.
  DistinctCounter counter;
  for (uint64_t i = 0; i < 1'000'000; ++i) counter.AddHash(HashInt(i));
  EXPECT_NEAR(counter.Estimate(), 1'000'000, 30'000);
}

TEST(DistinctCounterTest, SmallCardinalitiesNearlyExact) {
  DistinctCounter counter;
  EXPECT_EQ(counter.Estimate(), 0);
  counter.Add("only");
  EXPECT_NEAR(counter.Estimate(), 1, 0.01);
  DistinctCounter hundred;
  for (uint64_t i = 0; i < 100; ++i) hundred.Add(Key("v", i));
  EXPECT_NEAR(hundred.Estimate(), 100, 2);
  DistinctCounter thousand;
  for (uint64_t i = 0; i < 1000; ++i) thousand.Add(Key("v", i));
  EXPECT_NEAR(thousand.Estimate(), 1000, 30);
}

TEST(DistinctCounterTest, MergeEqualsUnion) {
  DistinctCounter a;
  DistinctCounter b;
  DistinctCounter both;
  // Overlapping ranges: [0, 60k) and [40k, 100k).
  for (uint64_t i = 0; i < 60'000; ++i) a.Add(Key("k", i));
  for (uint64_t i = 40'000; i < 100'000; ++i) b.Add(Key("k", i));
  for (uint64_t i = 0; i < 100'000; ++i) both.Add(Key("k", i));
  a.Merge(b);
  EXPECT_EQ(a.registers(), both.registers());
  EXPECT_EQ(a.Estimate(), both.Estimate());
  // 3 standard errors: this key set happens to land 1.9 below the truth.
  EXPECT_NEAR(a.Estimate(), 100'000, 5'000);
}

TEST(DistinctCounterTest, MergeAcrossPrecisionsFoldsToTheSmaller) {
  DistinctCounter fine(14);
  DistinctCounter coarse(10);
  DistinctCounter expected(10);
  for (uint64_t i = 0; i < 50'000; ++i) {
    fine.Add(Key("a", i));
    expected.Add(Key("a", i));
  }
  for (uint64_t i = 0; i < 20'000; ++i) {
    coarse.Add(Key("b", i));
    expected.Add(Key("b", i));
  }
  // Folding is exact: the result equals a p = 10 counter fed both streams,
  // whichever side had the higher precision.
  DistinctCounter fine_into_coarse = coarse;
  fine_into_coarse.Merge(fine);
  EXPECT_EQ(fine_into_coarse.p(), 10);
  EXPECT_EQ(fine_into_coarse.registers(), expected.registers());
  DistinctCounter coarse_into_fine = fine;
  coarse_into_fine.Merge(coarse);
  EXPECT_EQ(coarse_into_fine.p(), 10);
  EXPECT_EQ(coarse_into_fine.registers(), expected.registers());
}

TEST(DistinctCounterTest, FromRegistersRoundTrip) {
  DistinctCounter counter(8);
  for (uint64_t i = 0; i < 5000; ++i) counter.AddHash(HashInt(i));
  absl::StatusOr<DistinctCounter> restored =
      DistinctCounter::FromRegisters(counter.p(), counter.registers());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->p(), 8);
  EXPECT_EQ(restored->registers(), counter.registers());
  EXPECT_EQ(restored->Estimate(), counter.Estimate());
}

TEST(DistinctCounterTest, FromRegistersRejectsMalformedState) {
  absl::StatusOr<DistinctCounter> bad_p =
      DistinctCounter::FromRegisters(3, std::vector<uint8_t>(8));
  EXPECT_EQ(bad_p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_p.status().message().find("precision 3"), std::string::npos);

  absl::StatusOr<DistinctCounter> bad_size =
      DistinctCounter::FromRegisters(12, std::vector<uint8_t>(4095));
  EXPECT_EQ(bad_size.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_size.status().message().find("4096"), std::string::npos);

  std::vector<uint8_t> regs(4096, 0);
  regs[17] = 54;  // the maximum at p = 12 is 53
  absl::StatusOr<DistinctCounter> bad_value = DistinctCounter::FromRegisters(12, std::move(regs));
  EXPECT_EQ(bad_value.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad_value.status().message().find("register 17"), std::string::npos);
}

// ---------------------------------------------------------------------------

TEST(TopKTest, ExactWhileDistinctValuesFitCapacity) {
  TopK top(8);
  // 5 distinct values, interleaved, with counts 50, 40, 30, 30, 1.
  const std::map<std::string, uint64_t> truth = {
      {"a", 50}, {"b", 40}, {"c", 30}, {"d", 30}, {"e", 1}};
  std::map<std::string, uint64_t> left = truth;
  while (!left.empty()) {
    for (auto it = left.begin(); it != left.end();) {
      top.Add(it->first);
      it = --it->second == 0 ? left.erase(it) : std::next(it);
    }
  }
  top.Add("b", 0);  // a zero weight changes nothing
  EXPECT_TRUE(top.exact());
  EXPECT_EQ(top.total(), 151u);
  const std::vector<TopK::Entry> entries = top.Top(10);
  ASSERT_EQ(entries.size(), 5u);
  const std::vector<std::pair<std::string, uint64_t>> expected = {
      {"a", 50}, {"b", 40}, {"c", 30}, {"d", 30}, {"e", 1}};  // ties by value
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(entries[i].value, expected[i].first);
    EXPECT_EQ(entries[i].count, expected[i].second);
    EXPECT_EQ(entries[i].error, 0u);
  }
  EXPECT_EQ(top.Top(2).size(), 2u);
}

TEST(TopKTest, WeightedAddsCount) {
  TopK top(4);
  top.Add("x", 1000);
  top.Add("y", 10);
  top.Add("x", 5);
  ASSERT_EQ(top.Top(1).size(), 1u);
  EXPECT_EQ(top.Top(1)[0].value, "x");
  EXPECT_EQ(top.Top(1)[0].count, 1005u);
  EXPECT_EQ(top.total(), 1015u);
}

// A deterministic Zipf(s) stream over `n` values "item-0" (most frequent) to
// "item-<n-1>", and its true counts.
struct ZipfStream {
  std::vector<uint32_t> draws;
  std::vector<uint64_t> counts;
};

ZipfStream MakeZipf(size_t n, double s, size_t length, uint64_t seed) {
  std::vector<double> cdf(n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) cdf[i] = sum += 1.0 / std::pow(static_cast<double>(i + 1), s);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, sum);
  ZipfStream z;
  z.counts.assign(n, 0);
  z.draws.reserve(length);
  for (size_t i = 0; i < length; ++i) {
    const uint32_t d = static_cast<uint32_t>(
        std::min<size_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin(), n - 1));
    z.draws.push_back(d);
    ++z.counts[d];
  }
  return z;
}

// Every listed entry brackets the true count, and no value missing from the
// list occurred more often than the smallest listed count.
void ExpectSpaceSavingGuarantees(const TopK& top, const std::vector<uint64_t>& counts) {
  const std::vector<TopK::Entry> listed = top.Top(top.capacity());
  ASSERT_FALSE(listed.empty());
  std::set<std::string> names;
  for (const TopK::Entry& e : listed) {
    const uint64_t true_count = counts[std::stoul(e.value.substr(5))];
    EXPECT_LE(e.count - e.error, true_count) << e.value;
    EXPECT_GE(e.count, true_count) << e.value;
    names.insert(e.value);
  }
  for (size_t i = 0; i < counts.size(); ++i) {
    if (!names.contains(Key("item-", i))) {
      EXPECT_LE(counts[i], listed.back().count) << i;
    }
  }
}

TEST(TopKTest, FindsHeavyHittersInZipfStream) {
  const ZipfStream z = MakeZipf(10'000, 1.1, 200'000, 13);
  TopK top(64);
  std::vector<std::string> names;
  for (size_t i = 0; i < z.counts.size(); ++i) names.push_back(Key("item-", i));
  for (uint32_t d : z.draws) top.Add(names[d]);
  EXPECT_FALSE(top.exact());
  EXPECT_EQ(top.total(), 200'000u);
  EXPECT_EQ(top.size(), 64u);
  ExpectSpaceSavingGuarantees(top, z.counts);
  // For a single stream, everything above total / capacity is listed.
  std::set<std::string> listed;
  for (const TopK::Entry& e : top.Top(64)) listed.insert(e.value);
  size_t above = 0;
  for (size_t i = 0; i < z.counts.size(); ++i) {
    if (z.counts[i] > top.total() / top.capacity()) {
      ++above;
      EXPECT_TRUE(listed.contains(Key("item-", i))) << i;
    }
  }
  EXPECT_GE(above, 5u);
  // The five most frequent values, in order.
  const std::vector<TopK::Entry> five = top.Top(5);
  ASSERT_EQ(five.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(five[i].value, Key("item-", i));
}

TEST(TopKTest, MergeKeepsGuaranteesAndHeavyHitters) {
  const ZipfStream z = MakeZipf(10'000, 1.1, 200'000, 21);
  TopK first(64);
  TopK second(64);
  for (size_t i = 0; i < z.draws.size(); ++i) {
    (i % 3 == 0 ? first : second).Add(Key("item-", z.draws[i]));
  }
  first.Merge(second);
  EXPECT_FALSE(first.exact());
  EXPECT_EQ(first.total(), 200'000u);
  EXPECT_LE(first.size(), 64u);
  ExpectSpaceSavingGuarantees(first, z.counts);
  const std::vector<TopK::Entry> five = first.Top(5);
  ASSERT_EQ(five.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(five[i].value, Key("item-", i));
}

TEST(TopKTest, MergeOfExactSummariesStaysExactWhileUnionFits) {
  TopK a(4);
  TopK b(4);
  a.Add("x", 3);
  a.Add("y", 2);
  b.Add("y", 5);
  b.Add("z", 1);
  a.Merge(b);
  EXPECT_TRUE(a.exact());
  const std::vector<TopK::Entry> all = a.Top(4);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].value, "y");
  EXPECT_EQ(all[0].count, 7u);
  EXPECT_EQ(all[1].value, "x");
  EXPECT_EQ(all[1].count, 3u);
  EXPECT_EQ(all[2].value, "z");
  EXPECT_EQ(a.total(), 11u);

  // Two more distinct values overflow the capacity.
  TopK c(4);
  c.Add("v");
  c.Add("w");
  a.Merge(c);
  EXPECT_FALSE(a.exact());
  EXPECT_EQ(a.size(), 4u);
  EXPECT_EQ(a.Top(1)[0].value, "y");

  // Merging a summary into itself doubles it.
  TopK d(4);
  d.Add("p", 2);
  d.Merge(d);
  EXPECT_EQ(d.Top(1)[0].count, 4u);
  EXPECT_TRUE(d.exact());
}

TEST(TopKTest, MergeBoundsOccurrencesTheOtherSideDropped) {
  TopK a(2);
  a.Add("x", 20);
  TopK b(2);
  b.Add("x", 3);
  b.Add("a", 10);
  b.Add("b", 10);  // evicts x, whose 3 occurrences b no longer knows
  ASSERT_FALSE(b.exact());
  a.Merge(b);
  const std::vector<TopK::Entry> entries = a.Top(2);
  ASSERT_EQ(entries.size(), 2u);
  // x occurred 23 times: its count must not fall below that.
  EXPECT_EQ(entries[0].value, "x");
  EXPECT_EQ(entries[0].count, 23u);
  EXPECT_EQ(entries[0].error, 3u);
  EXPECT_EQ(entries[1].value, "b");
  EXPECT_EQ(a.total(), 43u);
  EXPECT_FALSE(a.exact());
}

TEST(TopKTest, EvictedValueComesBackWithError) {
  TopK top(2);
  top.Add("a", 5);
  top.Add("b", 3);
  top.Add("c");  // evicts b: c counts 3 + 1 with error 3
  EXPECT_FALSE(top.exact());
  const std::vector<TopK::Entry> entries = top.Top(2);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].value, "a");
  EXPECT_EQ(entries[0].error, 0u);
  EXPECT_EQ(entries[1].value, "c");
  EXPECT_EQ(entries[1].count, 4u);
  EXPECT_EQ(entries[1].error, 3u);
}

}  // namespace
}  // namespace vigil::core
