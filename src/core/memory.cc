#include "core/memory.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <vector>

namespace vigil::core {

int64_t HalfOfPhysicalMemoryMib() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<int64_t>(pages) * page / (1 << 20) / 2;
}

PretouchResult Pretouch(int64_t mib, int64_t limit_mib) {
  const auto t0 = std::chrono::steady_clock::now();
  PretouchResult r;
  if (limit_mib > 0 && mib > limit_mib) {
    r.capped = true;
    mib = limit_mib;
  }
  // Blocks of 4 MiB from this thread's arena (no separate arena for large
  // blocks: oversize_threshold:0), which its later allocations use too, split
  // for any size (lg_extent_max_active_fit).
  constexpr int64_t kBlockMib = 4;
  constexpr size_t kBlock = kBlockMib << 20;
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<char*> blocks;
  blocks.reserve(static_cast<size_t>(mib / kBlockMib + 1));
  for (int64_t done = 0; done < mib; done += kBlockMib) {
    auto* b = static_cast<char*>(std::malloc(kBlock));
    if (b == nullptr) break;  // what could be had
    for (size_t o = 0; o < kBlock; o += page) static_cast<volatile char*>(b)[o] = 0;
    blocks.push_back(b);
  }
  for (char* b : blocks) std::free(b);
  r.touched_mib = static_cast<int64_t>(blocks.size()) * kBlockMib;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace vigil::core
