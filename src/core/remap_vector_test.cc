#include "core/remap_vector.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::core {
namespace {

struct Rec {
  uint64_t id;
  uint32_t a, b;
  uint8_t flags;
};

TEST(RemapVectorTest, KeepsEveryElementThroughManyGrowths) {
  RemapVector<Rec> v;
  size_t growths = 0;
  for (uint32_t i = 0; i < 1000000; ++i) {
    const size_t cap = v.capacity();
    v.push_back(Rec{i * 7ull, i, ~i, static_cast<uint8_t>(i)});
    if (v.capacity() != cap) {
      ++growths;
      EXPECT_GE(v.capacity(), 2 * cap);
      // The elements written before the growth are all still there.
      for (uint32_t j = 0; j <= i; j += 997) ASSERT_EQ(v[j].a, j) << "after growth " << growths;
    }
  }
  ASSERT_EQ(v.size(), 1000000u);
  EXPECT_GT(growths, 5u);
  for (uint32_t i = 0; i < v.size(); ++i) {
    ASSERT_EQ(v[i].id, i * 7ull);
    ASSERT_EQ(v[i].b, ~i);
    ASSERT_EQ(v[i].flags, static_cast<uint8_t>(i));
  }
  EXPECT_EQ(v.back().a, 999999u);
}

TEST(RemapVectorTest, ResizeAssignAppendAndClearBehaveAsVector) {
  RemapVector<double> v;
  EXPECT_TRUE(v.empty());
  v.resize(3, 1.5);
  v.resize(5);
  const double more[] = {7, 8};
  v.append(more, 2);
  EXPECT_EQ(std::vector<double>(v.begin(), v.end()), (std::vector<double>{1.5, 1.5, 1.5, 0, 0, 7, 8}));
  v.resize(2);
  EXPECT_EQ(std::vector<double>(v.begin(), v.end()), (std::vector<double>{1.5, 1.5}));
  const size_t cap = v.capacity();
  v.assign(4, -2);
  EXPECT_EQ(std::vector<double>(v.begin(), v.end()), (std::vector<double>{-2, -2, -2, -2}));
  v.clear();
  EXPECT_TRUE(v.empty());
  EXPECT_EQ(v.capacity(), cap);  // clear keeps the room
  v.append(more, 0);
  EXPECT_TRUE(v.empty());
}

TEST(RemapVectorTest, CopiesAreDeepAndMovesAndSwapsTransferTheArray) {
  RemapVector<uint32_t> a;
  for (uint32_t i = 0; i < 5000; ++i) a.push_back(i);
  RemapVector<uint32_t> b(a);
  b[0] = 42;
  EXPECT_EQ(a[0], 0u);
  EXPECT_EQ(b.size(), 5000u);
  EXPECT_EQ(b[4999], 4999u);

  RemapVector<uint32_t> c;
  c = b;
  const RemapVector<uint32_t>& same = c;
  c = same;  // self-assignment keeps the elements
  EXPECT_EQ(c[0], 42u);
  EXPECT_EQ(c.size(), 5000u);

  const uint32_t* data = a.data();
  RemapVector<uint32_t> d(std::move(a));
  EXPECT_EQ(d.data(), data);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): a moved-from vector is empty
  a.push_back(9);          // and usable
  EXPECT_EQ(a[0], 9u);

  d.swap(a);
  EXPECT_EQ(a.size(), 5000u);
  EXPECT_EQ(d.size(), 1u);
  d = std::move(a);
  EXPECT_EQ(d.size(), 5000u);
  EXPECT_EQ(d[1], 1u);
}

TEST(RemapVectorTest, PushingOrResizingWithItsOwnElementSurvivesTheGrowth) {
  RemapVector<uint64_t> v;
  v.push_back(7);
  while (v.size() < v.capacity()) v.push_back(v.size());
  const size_t cap = v.capacity();
  v.push_back(v[0]);  // full: the growth may move the element being copied
  ASSERT_GT(v.capacity(), cap);
  EXPECT_EQ(v.back(), 7u);
  while (v.size() < v.capacity()) v.push_back(1);
  v.resize(v.capacity() + 10, v[0]);
  EXPECT_EQ(v.back(), 7u);
}

TEST(RemapVectorTest, ShrinkGivesBackRoomAndKeepsTheElementsInPlace) {
  RemapVector<uint64_t> v;
  for (uint64_t i = 0; i < 100000; ++i) v.push_back(i);
  v.resize(1000);
  const uint64_t* data = v.data();
  const size_t cap = v.capacity();
  v.shrink_to_fit(1500);
  EXPECT_LT(v.capacity(), cap / 10);
  EXPECT_GE(v.capacity(), 1500u);
  EXPECT_EQ(v.data(), data);  // not moved
  for (uint64_t i = 0; i < 1000; ++i) ASSERT_EQ(v[i], i);
  v.shrink_to_fit(10);  // never below the size
  EXPECT_GE(v.capacity(), 1000u);
  EXPECT_EQ(v.back(), 999u);
  for (uint64_t i = 1000; i < 50000; ++i) v.push_back(i);  // and grows back
  for (uint64_t i = 0; i < 50000; i += 777) ASSERT_EQ(v[i], i);
  v.clear();
  v.shrink_to_fit();
  EXPECT_EQ(v.capacity(), 0u);
  v.push_back(5);
  EXPECT_EQ(v[0], 5u);
}

TEST(RemapVectorTest, SortsAndMergesThroughItsPointers) {
  RemapVector<std::pair<uint64_t, uint32_t>> v;
  std::mt19937_64 rng(3);
  std::vector<std::pair<uint64_t, uint32_t>> ref;
  for (uint32_t i = 0; i < 20000; ++i) {
    v.push_back({rng(), i});
    ref.push_back(v.back());
  }
  std::sort(v.begin(), v.end());
  std::sort(ref.begin(), ref.end());
  EXPECT_TRUE(std::equal(v.begin(), v.end(), ref.begin(), ref.end()));
}

}  // namespace
}  // namespace vigil::core
