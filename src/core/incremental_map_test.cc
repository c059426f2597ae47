#include "core/incremental_map.h"

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::core {
namespace {

using Map = IncrementalMap<uint64_t, std::string>;

// Everything in `ref` is in `m` with the same value, and nothing else.
void ExpectSame(const Map& m, const std::unordered_map<uint64_t, std::string>& ref) {
  ASSERT_EQ(m.size(), ref.size());
  for (const auto& [k, v] : ref) {
    const std::string* got = m.find(k);
    ASSERT_NE(got, nullptr) << "key " << k;
    ASSERT_EQ(*got, v) << "key " << k;
  }
  size_t seen = 0;
  m.for_each([&](uint64_t k, const std::string& v) {
    ++seen;
    auto it = ref.find(k);
    ASSERT_NE(it, ref.end()) << "key " << k;
    EXPECT_EQ(it->second, v);
  });
  EXPECT_EQ(seen, ref.size());
}

TEST(IncrementalMapTest, GrowsAFewElementsPerInsertAndLosesNone) {
  Map m;
  size_t growths = 0;
  for (uint64_t k = 0; k < 300000; ++k) {
    const size_t pending = m.pending();
    auto [v, inserted] = m.try_emplace(k, std::to_string(k));
    ASSERT_TRUE(inserted);
    ASSERT_EQ(*v, std::to_string(k));
    if (pending > 0) {
      // Each insert during a growth moves kStep elements (or what is left).
      ASSERT_EQ(m.pending(), pending > Map::kStep ? pending - Map::kStep : 0) << "insert " << k;
    } else if (m.growing()) {
      ++growths;
      // A growth starts only once the map is past the size grown in one step.
      EXPECT_GE(m.pending(), Map::kMinIncremental / 2);
    }
  }
  EXPECT_GE(growths, 8u);  // 1 k -> 300 k elements: 2 k, 4 k, ... 256 k
  for (uint64_t k = 0; k < 300000; ++k) ASSERT_EQ(*m.find(k), std::to_string(k));
  EXPECT_EQ(m.find(300000), nullptr);
  auto [v, inserted] = m.try_emplace(7, "other");
  EXPECT_FALSE(inserted);
  EXPECT_EQ(*v, "7");
}

// Random inserts, lookups and erases (some while a growth is in progress,
// some of the very element the growth moves next) against std::unordered_map.
TEST(IncrementalMapTest, AgreesWithUnorderedMapUnderRandomInsertsAndErases) {
  std::mt19937_64 rng(42);
  Map m;
  std::unordered_map<uint64_t, std::string> ref;
  std::vector<uint64_t> keys;
  bool erased_while_growing = false;
  for (int i = 0; i < 400000; ++i) {
    const uint64_t r = rng();
    if (r % 10 < 7 || keys.empty()) {
      const uint64_t k = rng() % 1000000;
      const bool was_growing = m.growing();
      const size_t capacity = m.capacity();
      auto [v, inserted] = m.try_emplace(k, std::to_string(r));
      // A table of kMinIncrementalBytes or more changes capacity only when
      // a growth starts or ends, never by growing itself in one step.
      if (capacity * sizeof(std::pair<const uint64_t, std::string>) >= Map::kMinIncrementalBytes &&
          !was_growing && !m.growing()) {
        ASSERT_EQ(m.capacity(), capacity) << "insert " << i;
      }
      auto [it, ref_inserted] = ref.try_emplace(k, std::to_string(r));
      ASSERT_EQ(inserted, ref_inserted);
      ASSERT_EQ(*v, it->second);
      if (inserted) keys.push_back(k);
    } else {
      const size_t at = rng() % keys.size();
      const uint64_t k = keys[at];
      keys[at] = keys.back();
      keys.pop_back();
      erased_while_growing |= m.growing();
      ASSERT_EQ(m.erase(k), ref.erase(k) == 1);
      ASSERT_FALSE(m.erase(k));
    }
    if (i % 50000 == 0) ExpectSame(m, ref);
  }
  EXPECT_TRUE(erased_while_growing);
  ExpectSame(m, ref);
  const size_t odd = m.erase_if([](uint64_t k, const std::string&) { return k % 2 == 1; });
  size_t ref_odd = 0;
  for (auto it = ref.begin(); it != ref.end();) {
    if (it->first % 2 == 1) {
      it = ref.erase(it);
      ++ref_odd;
    } else {
      ++it;
    }
  }
  EXPECT_EQ(odd, ref_odd);
  ExpectSame(m, ref);
}

TEST(IncrementalMapTest, EraseIfDuringAGrowthVisitsBothMapsAndLetsTheGrowthGoOn) {
  Map m;
  std::unordered_map<uint64_t, std::string> ref;
  uint64_t k = 0;
  // Up to the first growth of a table of 3,000 elements, then a few inserts
  // into it.
  while (!m.growing() || m.pending() < 3000) {
    m.try_emplace(k, std::to_string(k));
    ref.emplace(k, std::to_string(k));
    ++k;
  }
  for (int i = 0; i < 100; ++i, ++k) {
    m.try_emplace(k, std::to_string(k));
    ref.emplace(k, std::to_string(k));
  }
  const size_t pending = m.pending();
  ASSERT_GT(pending, 1000u);
  // Erase a third, and rewrite the values kept, in both maps.
  const size_t erased = m.erase_if([](uint64_t key, std::string& v) {
    if (key % 3 == 0) return true;
    v += "!";
    return false;
  });
  size_t ref_erased = 0;
  for (auto it = ref.begin(); it != ref.end();) {
    if (it->first % 3 == 0) {
      it = ref.erase(it);
      ++ref_erased;
    } else {
      it->second += "!";
      ++it;
    }
  }
  EXPECT_EQ(erased, ref_erased);
  EXPECT_TRUE(m.growing());  // not finished in one step
  EXPECT_LT(m.pending(), pending);
  EXPECT_GT(m.pending(), pending / 2);
  ExpectSame(m, ref);
  // The growth then completes by inserts as usual, losing nothing.
  while (m.growing()) {
    m.try_emplace(k, std::to_string(k));
    ref.emplace(k, std::to_string(k));
    ++k;
  }
  ExpectSame(m, ref);
}

TEST(IncrementalMapTest, CopyingOrMovingAGrowingMapKeepsEveryElement) {
  Map m;
  std::unordered_map<uint64_t, std::string> ref;
  uint64_t k = 0;
  while (!m.growing() || m.pending() < 1000) {
    m.try_emplace(k, std::to_string(k));
    ref.emplace(k, std::to_string(k));
    ++k;
  }
  const Map copy(m);
  EXPECT_FALSE(copy.growing());
  ExpectSame(copy, ref);
  Map moved(std::move(m));
  EXPECT_FALSE(moved.growing());
  ExpectSame(moved, ref);
  Map assigned;
  assigned.try_emplace(uint64_t{1} << 40, "gone");
  assigned = std::move(moved);
  ExpectSame(assigned, ref);
}

TEST(IncrementalMapTest, ValuesThatOnlyMoveAreMoved) {
  IncrementalMap<uint64_t, std::unique_ptr<uint64_t>> m;
  for (uint64_t k = 0; k < 100000; ++k) m.try_emplace(k, std::make_unique<uint64_t>(k * 3));
  for (uint64_t k = 0; k < 100000; ++k) ASSERT_EQ(**m.find(k), k * 3);
}

}  // namespace
}  // namespace vigil::core
