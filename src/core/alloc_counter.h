// Counting heap allocations, for tests that guard a hot path ("allocates
// nothing after warm-up"). Linking alloc_counter.cc into a test binary
// replaces every form of the global operator new and delete (plain, array,
// sized, nothrow) with counting ones.
//
// Thread-safety: the count is per thread.
#ifndef VIGIL_CORE_ALLOC_COUNTER_H_
#define VIGIL_CORE_ALLOC_COUNTER_H_

#include <cstdint>

namespace vigil::core {

// Allocations made by this thread so far.
int64_t AllocationsOnThisThread();

// Allocations made by this thread since construction.
class AllocationScope {
 public:
  AllocationScope() : start_(AllocationsOnThisThread()) {}
  int64_t count() const { return AllocationsOnThisThread() - start_; }

 private:
  int64_t start_;
};

}  // namespace vigil::core

#endif  // VIGIL_CORE_ALLOC_COUNTER_H_
