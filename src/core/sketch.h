// Small mergeable streaming sketches for profiling data columns: quantiles
// (KLL), distinct counts (HyperLogLog) and heavy hitters (Space-Saving).
// Training computes them over a data set, monitoring over live traffic, and
// the two are compared; every sketch therefore merges with another of its
// kind and can be taken apart into plain values and rebuilt, so it can be
// written to a snapshot.
//
// Each sketch owns its memory, which is bounded by its size parameter, not by
// the length of the stream. Answers are deterministic: the same inputs in the
// same order (and, for QuantileSketch, the same seed) give the same answers
// in every process and build.
//
// Thread-safety: none of the sketches is thread-safe. Const methods may be
// called concurrently with each other; anything else needs outside
// synchronisation. To profile in parallel, give each thread its own sketch
// and Merge() them at the end.
#ifndef VIGIL_CORE_SKETCH_H_
#define VIGIL_CORE_SKETCH_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/hash.h"
#include "core/status.h"

namespace vigil::core {

// A QuantileSketch estimates quantiles and ranks of a stream of doubles in
// O(k) memory: a KLL sketch (Karnin, Lang, Liberty, "Optimal Quantile
// Approximation in Streams", 2016) with lazy compaction. Level h holds items
// standing for 2^h inputs each; when the sketch is full, the lowest full
// level is sorted and every other item (odd or even positions, by a coin
// flip) is promoted to the level above.
//
// Accuracy: the rank error does not grow with the length of the stream and
// shrinks as 1/k. At the default k = 200, over 1M values, a single quantile
// is off by about 0.002 in rank on average and the worst over all quantiles
// measured 0.005-0.011 (the published 99%-confidence bound for that worst
// case is about 1.7/k). min(), max() and the 0 and 1 quantiles are exact,
// and so is everything while count() <= k.
//
// The coin flips come from a splitmix64 generator seeded with `seed`, so a
// sketch is a deterministic function of its seed and its inputs (and merges)
// in order.
class QuantileSketch {
 public:
  // REQUIRES: 8 <= k <= 65535 (values outside are clamped). Memory is about
  // 3k doubles.
  explicit QuantileSketch(int k = 200, uint64_t seed = 1);

  // Adds `v`. NaN is ignored (not counted); infinities are kept.
  // Hot path: amortised O(log k). Allocates only when a level's buffer
  // passes its high-water mark; the buffers are bounded by the sketch's
  // capacity, which grows only with a new level, O(log(count / k)) times.
  void Add(double v) noexcept;

  // Adds everything `other` has seen, as if its stream had been added to
  // this one. `other` may have a different k; the result keeps this k (its
  // error is at most the sum of both sketches' errors). Merging a sketch
  // into itself counts its stream twice.
  void Merge(const QuantileSketch& other);

  // The value whose rank is about `q`: the smallest retained value v such
  // that about a fraction q of the inputs are <= v. q = 0 gives min() and
  // q = 1 gives max() exactly; q is clamped to [0, 1].
  // Returns NaN when the sketch is empty or q is NaN.
  // Cost: O(r log r) for r retained items; to ask many quantiles at once,
  // use WeightedItems().
  double Quantile(double q) const;

  // The fraction of inputs <= v, approximately (exactly 0 below min() and
  // exactly 1 at or above max()). Returns NaN when the sketch is empty or v
  // is NaN.
  double Rank(double v) const;

  // Number of values added (NaN excluded), including merged sketches.
  uint64_t count() const { return count_; }
  // Smallest and largest values added; NaN when empty.
  double min() const { return min_; }
  double max() const { return max_; }
  int k() const { return k_; }

  // The retained items as (value, weight), sorted by value, equal values
  // combined. The weights sum to count(). Together with k(), count(), min()
  // and max() this is the sketch's whole state for serialisation (the seed
  // is not: a restored sketch flips its own coins).
  std::vector<std::pair<double, uint64_t>> WeightedItems() const;

  // Rebuilds a sketch from the output of WeightedItems() and the accessors
  // of the sketch it came from; its WeightedItems(), Quantile() and Rank()
  // then equal the original's. `seed` seeds the restored sketch's coins.
  // Never fails: the result is a usable sketch even from bad input. NaN
  // items and zero weights are dropped, count() is the sum of the weights
  // (equal to `count` for good input), and min/max are widened to cover the
  // items (NaN min/max are taken from the items). A decoder of untrusted
  // bytes should check those rules itself to report corruption.
  static QuantileSketch FromWeightedItems(int k, uint64_t count, double min, double max,
                                          const std::vector<std::pair<double, uint64_t>>& items,
                                          uint64_t seed = 1);

 private:
  // Recomputes per-level capacities after the number of levels changed.
  void UpdateCapacities();
  // Compacts the lowest full level until the sketch is within capacity.
  void Compress();
  void CompactLevel(size_t h);
  uint64_t NextRandom() noexcept;

  int k_;
  uint64_t rng_state_;
  uint64_t count_ = 0;
  double min_;
  double max_;
  // levels_[h] holds items of weight 2^h, unsorted.
  std::vector<std::vector<double>> levels_;
  // capacities_[h] for each level, and their sum.
  std::vector<size_t> capacities_;
  size_t total_capacity_ = 0;
  size_t retained_ = 0;
};

// A DistinctCounter estimates the number of distinct values in a stream with
// a HyperLogLog sketch (Flajolet et al., 2007) of 2^p one-byte registers,
// switching to linear counting for small cardinalities (the standard
// small-range correction). The standard error is about 1.04 / sqrt(2^p):
// 1.6% at the default p = 12 (4 KiB of registers). Below about 2.5 * 2^p
// distinct values (10k at p = 12) linear counting is used and does better
// (1.1% at 100 or 1000 values). Just above the switch, between 2.5 and
// 3.5 * 2^p, the classic estimator overestimates by up to about 2%; the
// bias tables of HyperLogLog++ would remove that if it ever matters.
//
// Strings are hashed with core::Hash64, so registers are the same in every
// process and may be stored and merged later.
class DistinctCounter {
 public:
  static constexpr int kMinPrecision = 4;
  static constexpr int kMaxPrecision = 18;

  // REQUIRES: kMinPrecision <= p <= kMaxPrecision (values outside are
  // clamped).
  explicit DistinctCounter(int p = 12);

  // Adds a value by its 64-bit hash: Hash64(bytes) for strings (what Add()
  // does) or HashInt(v) for integers. Distinct values must have distinct
  // hashes, but they need not be well mixed: HyperLogLog reads the top bits
  // and the leading zeros, and HashInt of sequential ids is too regular
  // there (1M of them were estimated at a sixth of that), so the counter
  // mixes `h` again with a bijection (murmur3's finaliser).
  // Hot path: no allocation.
  void AddHash(uint64_t h) noexcept {
    h = Remix(h);
    const uint32_t index = static_cast<uint32_t>(h >> (64 - p_));
    const uint8_t rho = Rho(h << p_);
    if (rho > registers_[index]) registers_[index] = rho;
  }

  // Adds the value `s` (bytes). Hot path: no allocation.
  void Add(std::string_view s) noexcept { AddHash(Hash64(s)); }

  // Adds everything `o` has seen (the union of the two streams).
  // Counters are meant to be merged at the same precision. If the precisions
  // differ, this counter is first reduced to the smaller one (exactly: a
  // HyperLogLog at precision p determines the one at any p' < p), and the
  // result has the accuracy of that smaller precision.
  void Merge(const DistinctCounter& o);

  // The estimated number of distinct values added.
  double Estimate() const;

  int p() const { return p_; }
  // The 2^p registers, for serialisation; valid until the next non-const
  // call.
  const std::vector<uint8_t>& registers() const { return registers_; }

  // Rebuilds a counter from p() and registers() of another.
  // Returns InvalidArgument if p is out of range, regs does not have 2^p
  // entries, or a register holds a value no input could produce
  // (> 65 - p).
  static absl::StatusOr<DistinctCounter> FromRegisters(int p, std::vector<uint8_t> regs);

 private:
  static uint64_t Remix(uint64_t h) noexcept {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
  }
  // 1 + the number of leading zeros of the remaining hash bits `w` (whose
  // low p bits are zero), at most 65 - p.
  uint8_t Rho(uint64_t w) const noexcept {
    return w == 0 ? static_cast<uint8_t>(65 - p_) : static_cast<uint8_t>(__builtin_clzll(w) + 1);
  }
  // Reduces this counter to precision `p` < p_.
  void Fold(int p);

  int p_;
  std::vector<uint8_t> registers_;
};

// A TopK finds the most frequent strings of a stream (the heavy hitters) in
// O(capacity) memory with the Space-Saving algorithm (Metwally, Agrawal,
// El Abbadi, 2005); merging follows Agarwal et al., "Mergeable Summaries"
// (2012).
//
// Guarantees: each reported Entry's true count is in [count - error, count],
// and every value missing from Top(capacity()) occurred no more often than
// the smallest count listed there. For a single stream that is at most
// total() / capacity,
// so every value more frequent than that is reported; a Merge keeps the
// brackets but can loosen that threshold (to 2 * total() / capacity after
// merging two single-stream summaries). While exact() is true no value has
// been dropped, errors are 0 and the list is complete.
class TopK {
 public:
  struct Entry {
    std::string value;
    uint64_t count;  // an upper bound on the true count
    uint64_t error;  // count - error is a lower bound on the true count
  };

  // REQUIRES: capacity >= 1 (0 is raised to 1).
  explicit TopK(size_t capacity = 64);

  // Adds `weight` occurrences of `s`. A weight of 0 does nothing.
  // Hot path: no allocation when `s` is already tracked; a new value
  // allocates for its copy. Counts saturate at 2^64 - 1.
  void Add(std::string_view s, uint64_t weight = 1);

  // Adds everything `o` has seen. The result keeps this capacity; its counts
  // and errors bound the true counts of the combined streams as above.
  void Merge(const TopK& o);

  // The `n` entries with the highest counts, sorted by count descending,
  // then value ascending. Fewer if fewer values are tracked.
  std::vector<Entry> Top(size_t n) const;

  // Sum of all weights added.
  uint64_t total() const { return total_; }
  // True while the number of distinct values seen never exceeded the
  // capacity: counts are exact and Top() lists every value seen.
  bool exact() const { return untracked_bound_ == 0; }
  size_t capacity() const { return capacity_; }
  // Number of values currently tracked (<= capacity()).
  size_t size() const { return slots_.size(); }

 private:
  struct Slot {
    std::string value;
    uint64_t count;
    uint64_t error;
  };
  // Min-heap on count over slot indices, with heap_pos_ as its inverse, so
  // that the smallest counter is found in O(1) and updated in O(log m).
  bool Less(uint32_t a, uint32_t b) const { return slots_[a].count < slots_[b].count; }
  void SiftUp(size_t i);
  void SiftDown(size_t i);
  void Place(size_t i, uint32_t slot) {
    heap_[i] = slot;
    heap_pos_[slot] = static_cast<uint32_t>(i);
  }

  size_t capacity_;
  uint64_t total_ = 0;
  // An upper bound on the true count of any value not tracked; 0 until a
  // value is dropped (counts are >= 1, so 0 means nothing was ever dropped).
  uint64_t untracked_bound_ = 0;
  std::vector<Slot> slots_;
  std::vector<uint32_t> heap_;
  std::vector<uint32_t> heap_pos_;
  // value -> slot index. absl's string hash is transparent, so lookups by
  // string_view do not build a std::string.
  absl::flat_hash_map<std::string, uint32_t> index_;
};

}  // namespace vigil::core

#endif  // VIGIL_CORE_SKETCH_H_
