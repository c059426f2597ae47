// Pretouching: having the kernel fault pages in before scoring starts rather
// than while an event is being scored. It relies on the allocator vigil's
// binaries link (jemalloc with the options of jemalloc_options.cc, through
// the vigil_jemalloc object library).
//
// Thread-safety: plain functions; Pretouch allocates and frees on the
// calling thread (whose arena it fills).
#ifndef VIGIL_CORE_MEMORY_H_
#define VIGIL_CORE_MEMORY_H_

#include <cstdint>

namespace vigil::core {

// Half of this machine's physical memory in MiB (0 when unknown): the most
// Pretouch should be asked for, since touching more than the machine has
// gets the process killed at its start.
int64_t HalfOfPhysicalMemoryMib();

struct PretouchResult {
  int64_t touched_mib = 0;  // below what was asked when capped or malloc failed
  bool capped = false;      // what was asked was over the limit
  double seconds = 0;
};

// Writes to `mib` MiB (at most `limit_mib`; no limit when 0) in blocks of
// 4 MiB, one byte per page, and frees them. Under vigil's jemalloc options
// (no decay, no separate arena for large blocks) the allocator keeps those
// pages, so the state's growth on this thread reuses them instead of
// faulting new ones in: on a VM a first touch costs about 10 µs, and now and
// then milliseconds. Under another allocator it only costs the time.
PretouchResult Pretouch(int64_t mib, int64_t limit_mib);

}  // namespace vigil::core

#endif  // VIGIL_CORE_MEMORY_H_
