// A tiny deterministic random number generator for code outside the
// simulator that needs reproducible draws (bootstrap resampling, sampling):
// splitmix64 (Steele, Lea, Flood 2014). The same seed gives the same stream
// on every platform and compiler; std::*_distribution is
// implementation-defined, so none is used. Not for cryptography.
//
// Thread-safety: one SplitMix64 per thread.
#ifndef VIGIL_CORE_RANDOM_H_
#define VIGIL_CORE_RANDOM_H_

#include <cstdint>

namespace vigil::core {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) noexcept : state_(seed) {}

  uint64_t Next() noexcept {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); 0 when n == 0. Lemire's multiply-shift: one
  // multiplication instead of a division, with a bias below n / 2^64.
  uint64_t Below(uint64_t n) noexcept {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(Next()) * n) >> 64);
  }
  // Uniform in [0, 1).
  double Uniform() noexcept { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

}  // namespace vigil::core

#endif  // VIGIL_CORE_RANDOM_H_
