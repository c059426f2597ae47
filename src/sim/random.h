// Deterministic random numbers for the simulator: the same seed gives the
// same stream on every platform and compiler. (std::*_distribution is
// implementation-defined, so none is used.)
//
// Thread-safety: one Random per thread.
#ifndef VIGIL_SIM_RANDOM_H_
#define VIGIL_SIM_RANDOM_H_

#include <cmath>
#include <cstdint>
#include <vector>

namespace vigil::sim {

class Random {
 public:
  explicit Random(uint64_t seed) {
    uint64_t x = seed;
    for (uint64_t& s : s_) s = SplitMix(&x);
  }
  // A child stream that depends only on this one's seed and `salt`.
  static Random Derive(uint64_t seed, uint64_t salt) {
    uint64_t x = seed ^ (salt * 0x9e3779b97f4a7c15ull);
    return Random(SplitMix(&x));
  }

  uint64_t Next() noexcept {  // xoshiro256**
    const uint64_t r = Rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return r;
  }
  // [0, 1)
  double Uniform() noexcept { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }
  double Uniform(double lo, double hi) noexcept { return lo + (hi - lo) * Uniform(); }
  // [0, n)
  uint64_t Below(uint64_t n) noexcept { return n == 0 ? 0 : Next() % n; }
  int64_t Between(int64_t lo, int64_t hi) noexcept {  // [lo, hi]
    return lo + static_cast<int64_t>(Below(static_cast<uint64_t>(hi - lo + 1)));
  }
  bool Chance(double p) noexcept { return Uniform() < p; }
  double Exponential(double mean) noexcept { return -mean * std::log1p(-Uniform()); }
  double Normal(double mean, double sd) noexcept {
    // Box-Muller; one value per call keeps the stream simple.
    const double u = 1.0 - Uniform(), v = Uniform();
    return mean + sd * std::sqrt(-2.0 * std::log(u)) * std::cos(2 * M_PI * v);
  }
  double LogNormal(double median, double sigma) noexcept {
    return median * std::exp(Normal(0, sigma));
  }
  int64_t Poisson(double mean) noexcept {
    if (mean <= 0) return 0;
    if (mean > 30) return std::max<int64_t>(0, std::llround(Normal(mean, std::sqrt(mean))));
    const double l = std::exp(-mean);
    int64_t k = 0;
    double p = 1;
    do {
      ++k;
      p *= Uniform();
    } while (p > l);
    return k - 1;
  }
  // An index drawn with the given weights.
  size_t Pick(const std::vector<double>& weights) noexcept {
    double total = 0;
    for (double w : weights) total += w;
    double x = Uniform() * total;
    for (size_t i = 0; i < weights.size(); ++i) {
      if ((x -= weights[i]) < 0) return i;
    }
    return weights.size() - 1;
  }

 private:
  static uint64_t SplitMix(uint64_t* x) noexcept {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  static uint64_t Rotl(uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace vigil::sim

#endif  // VIGIL_SIM_RANDOM_H_
