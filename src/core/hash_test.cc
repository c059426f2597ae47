#include "core/hash.h"

#include <set>
#include <string>

#include "gtest/gtest.h"

namespace vigil::core {
namespace {

TEST(Hash64Test, IsStableAcrossBuilds) {
  // Written to snapshots: these values must never change.
  EXPECT_EQ(Hash64("card-1234"), Hash64(std::string("card-1234")));
  EXPECT_NE(Hash64("a"), Hash64("b"));
  EXPECT_NE(Hash64("a", 1), Hash64("a", 2));
}

TEST(Hash64Test, NoCollisionsOnSequentialKeysOfAllLengths) {
  std::set<uint64_t> seen;
  for (int i = 0; i < 100000; ++i) {
    std::string k = std::to_string(i);
    if (i % 3 == 0) k = "user-" + k + std::string(static_cast<size_t>(i % 40), 'x');
    ASSERT_TRUE(seen.insert(Hash64(k)).second) << k;
  }
  EXPECT_EQ(seen.count(Hash64("")), 0u);
}

TEST(HashIntTest, DiffersFromNeighbours) {
  std::set<uint64_t> seen;
  for (uint64_t i = 0; i < 100000; ++i) ASSERT_TRUE(seen.insert(HashInt(i)).second);
}

}  // namespace
}  // namespace vigil::core
