// Stable 64-bit hashing for entity keys and event ids. Unlike absl::Hash, the
// values are the same in every process and every build, so they may be
// written to snapshots and compared across runs. Not cryptographic: keyed
// hashing of sensitive values is event/pii.h's job.
//
// Thread-safety: pure functions.
#ifndef VIGIL_CORE_HASH_H_
#define VIGIL_CORE_HASH_H_

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace vigil::core {

namespace hash_internal {
inline uint64_t Mix(uint64_t a, uint64_t b) noexcept {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
inline uint64_t Read64(const char* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t Read32(const char* p) noexcept {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
constexpr uint64_t kP0 = 0xa0761d6478bd642full;
constexpr uint64_t kP1 = 0xe7037ed1a0b428dbull;
constexpr uint64_t kP2 = 0x8ebc6af09c88c6e3ull;
}  // namespace hash_internal

// A wyhash-style hash of `bytes` with `seed`. Hot path: no allocation.
inline uint64_t Hash64(std::string_view bytes, uint64_t seed = 0) noexcept {
  using namespace hash_internal;
  const char* p = bytes.data();
  size_t n = bytes.size();
  uint64_t s = seed ^ kP0;
  uint64_t a, b;
  if (n <= 16) {
    if (n >= 4) {
      a = (Read32(p) << 32) | Read32(p + ((n >> 3) << 2));
      b = (Read32(p + n - 4) << 32) | Read32(p + n - 4 - ((n >> 3) << 2));
    } else if (n > 0) {
      a = (static_cast<uint64_t>(static_cast<uint8_t>(p[0])) << 16) |
          (static_cast<uint64_t>(static_cast<uint8_t>(p[n >> 1])) << 8) |
          static_cast<uint8_t>(p[n - 1]);
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    size_t i = n;
    while (i > 16) {
      s = Mix(Read64(p) ^ kP1, Read64(p + 8) ^ s);
      p += 16;
      i -= 16;
    }
    a = Read64(p + i - 16);
    b = Read64(p + i - 8);
  }
  return Mix(kP1 ^ n, Mix(a ^ kP1, b ^ s) ^ kP2);
}

// Hash of a 64-bit integer (for integer ids and keys).
inline uint64_t HashInt(uint64_t v, uint64_t seed = 0) noexcept {
  using namespace hash_internal;
  return Mix(v ^ kP0 ^ seed, kP1) ^ kP2;
}

// Hash of a number: numbers that compare equal hash equal (-0 as 0).
inline uint64_t HashDouble(double v, uint64_t seed = 0) noexcept {
  return HashInt(std::bit_cast<uint64_t>(v == 0 ? 0.0 : v), seed);
}

// Combines two hashes, order-dependent (tuple keys).
inline uint64_t HashCombine(uint64_t h, uint64_t v) noexcept {
  return hash_internal::Mix(h ^ hash_internal::kP2, v ^ hash_internal::kP1);
}

}  // namespace vigil::core

#endif  // VIGIL_CORE_HASH_H_
