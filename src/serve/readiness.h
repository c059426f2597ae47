// Whether `vigil serve` can take events, as far as its event log goes
// (Engine::Ready, GET /readyz): the rule, apart from reading the disk.
//
// Thread-safety: a plain function.
#ifndef VIGIL_SERVE_READINESS_H_
#define VIGIL_SERVE_READINESS_H_

#include <cstdint>
#include <string_view>

#include "core/status.h"
#include "core/strings.h"

namespace vigil::serve {

// Called while the event log's last write failed with `error`: Unavailable
// when the log has `stopped` (only a restart helps), when the disk's free
// space is known and under 1 MiB, or when it has no inode left (the next
// file cannot be made, however many bytes are free; `free_inodes` is
// known when `inodes_known`: not every file system counts them); otherwise
// OK, so that events come and the next one tries the log again.
inline absl::Status EventLogReadiness(bool stopped, bool free_known, uint64_t free_bytes,
                                      std::string_view error, bool inodes_known = false,
                                      uint64_t free_inodes = 0) {
  constexpr uint64_t kRoom = uint64_t{1} << 20;
  if (stopped) {
    return absl::UnavailableError(StrCat("the event log has stopped (", error, "); restart vigil serve"));
  }
  if (free_known && free_bytes < kRoom) {
    return absl::UnavailableError(
        StrCat("the event log's disk is full (", error, "; ", free_bytes, " bytes free)"));
  }
  if (inodes_known && free_inodes == 0) {
    return absl::UnavailableError(
        StrCat("the event log's disk is full (", error, "; no inode free for a new file)"));
  }
  return absl::OkStatus();
}

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_READINESS_H_
