// The envelope of vigil's state files (the feature engine's snapshot, the
// server's saved state): an 8-byte magic, a version, a key the reader must
// find again (the hash of the spec it was taken under), a CRC-32 of the
// version, the key and the payload, the payload; little-endian, lengths
// first (core/bytes.h). Files whose CRC-32 covers the payload alone (sealed
// before the version and key were covered) are still read.
//
// Thread-safety: plain functions.
#ifndef VIGIL_CORE_SEALED_H_
#define VIGIL_CORE_SEALED_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace vigil::core {

// `magic` is 8 characters.
void Seal(std::string_view magic, uint32_t version, std::string_view key, std::string_view payload,
          std::string* out);
// The same in place, without a copy of the payload: BeginSeal appends the
// envelope's header to *out and returns where the payload starts; the
// caller appends the payload to *out; EndSeal(start, out) fills in its
// checksum and length. (Seal clears *out first; these append.)
size_t BeginSeal(std::string_view magic, uint32_t version, std::string_view key, std::string* out);
void EndSeal(size_t start, std::string* out);

struct Unsealed {
  std::string_view key;      // into the input
  std::string_view payload;  // into the input
};
// The key and payload of `in`, or InvalidArgument "<what>: ..." naming the
// problem: not this magic, truncated, checksum mismatch (a damaged version
// or key too), another version. The key is the caller's to check.
absl::StatusOr<Unsealed> Unseal(std::string_view in, std::string_view magic, uint32_t version,
                                std::string_view what);

}  // namespace vigil::core

#endif  // VIGIL_CORE_SEALED_H_
