// Linked with vigil_jemalloc: the allocator and options vigil runs with.
#include "core/memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::core {
namespace {

long MinorFaults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// The process's resident memory in MiB (/proc/self/statm).
int64_t ResidentMib() {
  std::ifstream statm("/proc/self/statm");
  int64_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE) / (1 << 20);
}

TEST(PretouchTest, TouchesWhatIsAskedInWholeBlocksAndTheProcessKeepsIt) {
  const int64_t before = ResidentMib();
  const PretouchResult r = Pretouch(10, 0);
  EXPECT_EQ(r.touched_mib, 12);  // three blocks of 4 MiB
  EXPECT_FALSE(r.capped);
  EXPECT_GE(r.seconds, 0);
  // Written, freed, and kept by the allocator (no decay): resident still.
  EXPECT_GE(ResidentMib() - before, 10);
}

TEST(PretouchTest, StopsAtTheLimitAndSaysSo) {
  const PretouchResult r = Pretouch(64, 8);
  EXPECT_EQ(r.touched_mib, 8);
  EXPECT_TRUE(r.capped);
}

TEST(PretouchTest, AskingForNothingTouchesNothing) {
  const PretouchResult r = Pretouch(0, 0);
  EXPECT_EQ(r.touched_mib, 0);
  EXPECT_FALSE(r.capped);
}

TEST(PretouchTest, HalfOfPhysicalMemoryIsKnownHere) {
  const int64_t half = HalfOfPhysicalMemoryMib();
  EXPECT_GT(half, 0);
  EXPECT_EQ(half,
            static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE) / (1 << 20) / 2);
}

// What pretouching is for: afterwards, the small objects a growing state is
// made of come from the pretouched pages, not from new ones. Under
// jemalloc's default lg_extent_max_active_fit (6) the 4 MiB blocks served
// no small allocation, and each page of these 16 MiB was a fault.
TEST(PretouchTest, PretouchedMemoryServesSmallAllocationsWithoutFaults) {
  Pretouch(64, 0);
  constexpr size_t kObjects = 64 * 1024, kSize = 256;  // 16 MiB
  std::vector<char*> objects;
  objects.reserve(kObjects);
  const long before = MinorFaults();
  for (size_t i = 0; i < kObjects; ++i) {
    auto* p = static_cast<char*>(std::malloc(kSize));
    ASSERT_NE(p, nullptr);
    for (size_t o = 0; o < kSize; o += 64) static_cast<volatile char*>(p)[o] = 1;
    objects.push_back(p);
  }
  const long faults = MinorFaults() - before;
  for (char* p : objects) std::free(p);
  const long pages = static_cast<long>(kObjects * kSize) / sysconf(_SC_PAGESIZE);
  EXPECT_LT(faults, pages / 10) << faults << " page faults for " << pages
                                << " pages of small objects";
}

// The heap is in transparent huge pages where the system gives them on
// request (jemalloc's thp:always asks for them).
TEST(PretouchTest, PretouchedMemoryIsInHugePagesWhereTheSystemAllows) {
  std::ifstream mode("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(mode, line);
  if (line.find("[never]") != std::string::npos || line.empty()) {
    GTEST_SKIP() << "transparent huge pages are off on this machine: " << line;
  }
  Pretouch(64, 0);
  std::ifstream smaps("/proc/self/smaps_rollup");
  int64_t huge_kb = -1;
  for (std::string l; std::getline(smaps, l);) {
    if (l.rfind("AnonHugePages:", 0) == 0) huge_kb = std::strtoll(l.c_str() + 14, nullptr, 10);
  }
  EXPECT_GE(huge_kb, 32 * 1024) << "THP mode: " << line;
}

}  // namespace
}  // namespace vigil::core
