#include "core/sketch.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace vigil::core {
namespace {

constexpr int kMinK = 8;
constexpr int kMaxK = 65535;
// The smallest capacity of a KLL level. Lower levels shrink geometrically
// (by 2/3 per level below the top); without a floor the bottom levels would
// compact after every item or two.
constexpr size_t kMinLevelCapacity = 8;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

uint64_t SaturatingAdd(uint64_t a, uint64_t b) {
  uint64_t r;
  return __builtin_add_overflow(a, b, &r) ? std::numeric_limits<uint64_t>::max() : r;
}

}  // namespace

// ---------------------------------------------------------------------------
// QuantileSketch

QuantileSketch::QuantileSketch(int k, uint64_t seed)
    : k_(std::clamp(k, kMinK, kMaxK)), rng_state_(seed), min_(kNaN), max_(kNaN) {
  levels_.emplace_back();
  levels_[0].reserve(static_cast<size_t>(k_) + 1);
  UpdateCapacities();
}

uint64_t QuantileSketch::NextRandom() noexcept {
  // splitmix64 (Steele, Lea, Flood 2014): tiny, fast and the same everywhere.
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void QuantileSketch::UpdateCapacities() {
  // The top level holds k items and each level below it 2/3 as many, so the
  // total is about 3k however many levels there are. Plain multiplication
  // (no pow) keeps the capacities identical on every IEEE platform.
  const size_t levels = levels_.size();
  capacities_.assign(levels, 0);
  total_capacity_ = 0;
  double c = k_;
  for (size_t i = 0; i < levels; ++i) {
    const size_t h = levels - 1 - i;
    capacities_[h] = std::max(kMinLevelCapacity, static_cast<size_t>(std::ceil(c)));
    total_capacity_ += capacities_[h];
    c *= 2.0 / 3.0;
  }
}

void QuantileSketch::Add(double v) noexcept {
  if (std::isnan(v)) return;
  if (count_ == 0) {
    min_ = max_ = v;
  } else {
    min_ = std::min(min_, v);
    max_ = std::max(max_, v);
  }
  ++count_;
  levels_[0].push_back(v);
  ++retained_;
  // Compaction is the slow path, out of line; it runs about once per k/2
  // adds.
  if (retained_ > total_capacity_) Compress();
}

void QuantileSketch::Compress() {
  while (retained_ > total_capacity_) {
    // Lazy compaction (Ivkin et al. 2019): compact only the lowest level at
    // capacity, which leaves the other levels' slack in use and improves
    // accuracy over compacting level 0 every time. Because the total is
    // over capacity, some level is at or over its own.
    size_t h = 0;
    while (levels_[h].size() < capacities_[h]) ++h;
    CompactLevel(h);
  }
}

void QuantileSketch::CompactLevel(size_t h) {
  if (h + 1 == levels_.size()) {
    levels_.emplace_back();
    UpdateCapacities();
  }
  std::vector<double>& level = levels_[h];
  std::vector<double>& above = levels_[h + 1];
  std::sort(level.begin(), level.end());
  // An odd item out stays behind at this level with its weight unchanged.
  const size_t n = level.size();
  const size_t paired = n & ~size_t{1};
  // Keeping the even or the odd positions of each sorted pair by a fair coin
  // makes every rank estimate unbiased.
  const size_t offset = NextRandom() & 1;
  for (size_t i = offset; i < paired; i += 2) above.push_back(level[i]);
  if (paired != n) {
    level[0] = level[n - 1];
    level.resize(1);
  } else {
    level.clear();
  }
  retained_ -= paired / 2;
}

void QuantileSketch::Merge(const QuantileSketch& other) {
  if (&other == this) {
    const QuantileSketch copy = other;
    Merge(copy);
    return;
  }
  if (other.count_ == 0) return;
  if (count_ == 0) {
    min_ = other.min_;
    max_ = other.max_;
  } else {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
  count_ += other.count_;
  if (levels_.size() < other.levels_.size()) {
    levels_.resize(other.levels_.size());
    UpdateCapacities();
  }
  for (size_t h = 0; h < other.levels_.size(); ++h) {
    const std::vector<double>& from = other.levels_[h];
    levels_[h].insert(levels_[h].end(), from.begin(), from.end());
    retained_ += from.size();
  }
  Compress();
}

std::vector<std::pair<double, uint64_t>> QuantileSketch::WeightedItems() const {
  std::vector<std::pair<double, uint64_t>> items;
  items.reserve(retained_);
  for (size_t h = 0; h < levels_.size(); ++h) {
    const uint64_t weight = uint64_t{1} << h;
    for (double v : levels_[h]) items.emplace_back(v, weight);
  }
  std::sort(items.begin(), items.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  // Combine equal values: a column with few distinct values then serialises
  // to a handful of items.
  size_t out = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (out > 0 && items[out - 1].first == items[i].first) {
      items[out - 1].second += items[i].second;
    } else {
      items[out++] = items[i];
    }
  }
  items.resize(out);
  return items;
}

double QuantileSketch::Quantile(double q) const {
  if (count_ == 0 || std::isnan(q)) return kNaN;
  if (q <= 0) return min_;
  if (q >= 1) return max_;
  const std::vector<std::pair<double, uint64_t>> items = WeightedItems();
  const double target = q * static_cast<double>(count_);
  uint64_t cumulative = 0;
  for (const auto& [value, weight] : items) {
    cumulative += weight;
    if (static_cast<double>(cumulative) >= target) return std::clamp(value, min_, max_);
  }
  return max_;
}

double QuantileSketch::Rank(double v) const {
  if (count_ == 0 || std::isnan(v)) return kNaN;
  if (v < min_) return 0.0;
  if (v >= max_) return 1.0;
  uint64_t below = 0;
  for (size_t h = 0; h < levels_.size(); ++h) {
    uint64_t n = 0;
    for (double x : levels_[h]) n += x <= v;
    below += n << h;
  }
  return static_cast<double>(below) / static_cast<double>(count_);
}

QuantileSketch QuantileSketch::FromWeightedItems(
    int k, uint64_t count, double min, double max,
    const std::vector<std::pair<double, uint64_t>>& items, uint64_t seed) {
  QuantileSketch s(k, seed);
  uint64_t total = 0;
  double item_min = kNaN;
  double item_max = kNaN;
  for (const auto& [value, weight] : items) {
    if (std::isnan(value) || weight == 0) continue;
    uint64_t new_total;
    if (__builtin_add_overflow(total, weight, &new_total)) continue;
    total = new_total;
    // Weight w is w's binary digits: one item on level h for each bit h, so
    // the restored levels hold exactly the weight that was written.
    for (uint64_t w = weight; w != 0; w &= w - 1) {
      const size_t h = static_cast<size_t>(std::countr_zero(w));
      if (s.levels_.size() <= h) s.levels_.resize(h + 1);
      s.levels_[h].push_back(value);
      ++s.retained_;
    }
    item_min = std::isnan(item_min) ? value : std::min(item_min, value);
    item_max = std::isnan(item_max) ? value : std::max(item_max, value);
  }
  if (total == 0) return QuantileSketch(k, seed);
  s.count_ = total;
  s.min_ = std::isnan(min) ? item_min : std::min(min, item_min);
  s.max_ = std::isnan(max) ? item_max : std::max(max, item_max);
  s.UpdateCapacities();
  // Items written by WeightedItems() fit: combining equal values only moves
  // weight to higher levels, which have more room. Anything else is brought
  // back within capacity.
  s.Compress();
  return s;
}

// ---------------------------------------------------------------------------
// DistinctCounter

DistinctCounter::DistinctCounter(int p)
    : p_(std::clamp(p, kMinPrecision, kMaxPrecision)), registers_(size_t{1} << p_, 0) {}

void DistinctCounter::Fold(int p) {
  // The top p bits of a hash pick the register at precision p; the next d
  // bits are the low bits of the register index at precision p_. If they are
  // not all zero, they fix the rank; otherwise the rank continues into the
  // bits that register saw.
  const int d = p_ - p;
  const uint32_t low_mask = (uint32_t{1} << d) - 1;
  std::vector<uint8_t> folded(size_t{1} << p, 0);
  for (uint32_t i = 0; i < registers_.size(); ++i) {
    const uint8_t r = registers_[i];
    if (r == 0) continue;
    const uint32_t low = i & low_mask;
    const uint8_t rho = low != 0
                            ? static_cast<uint8_t>(d - static_cast<int>(std::bit_width(low)) + 1)
                            : static_cast<uint8_t>(d + r);
    uint8_t& target = folded[i >> d];
    target = std::max(target, rho);
  }
  registers_ = std::move(folded);
  p_ = p;
}

void DistinctCounter::Merge(const DistinctCounter& o) {
  if (o.p_ < p_) Fold(o.p_);
  if (o.p_ > p_) {
    DistinctCounter reduced = o;
    reduced.Fold(p_);
    Merge(reduced);
    return;
  }
  for (size_t i = 0; i < registers_.size(); ++i) {
    registers_[i] = std::max(registers_[i], o.registers_[i]);
  }
}

double DistinctCounter::Estimate() const {
  const double m = static_cast<double>(registers_.size());
  double sum = 0;
  size_t zeros = 0;
  for (uint8_t r : registers_) {
    sum += std::ldexp(1.0, -static_cast<int>(r));
    zeros += r == 0;
  }
  double alpha;
  switch (p_) {
    case 4:
      alpha = 0.673;
      break;
    case 5:
      alpha = 0.697;
      break;
    case 6:
      alpha = 0.709;
      break;
    default:
      alpha = 0.7213 / (1.0 + 1.079 / m);
  }
  const double raw = alpha * m * m / sum;
  // Small-range correction: while some registers are still empty, linear
  // counting on the empty ones is much more accurate than the raw estimate,
  // which is biased upwards there. With 64-bit hashes no large-range
  // correction is needed.
  if (raw <= 2.5 * m && zeros > 0) return m * std::log(m / static_cast<double>(zeros));
  return raw;
}

absl::StatusOr<DistinctCounter> DistinctCounter::FromRegisters(int p, std::vector<uint8_t> regs) {
  if (p < kMinPrecision || p > kMaxPrecision) {
    return absl::InvalidArgumentError(absl::StrCat("DistinctCounter: precision ", p,
                                                   " out of range [", kMinPrecision, ", ",
                                                   kMaxPrecision, "]"));
  }
  const size_t expected = size_t{1} << p;
  if (regs.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("DistinctCounter: precision ", p, " needs ",
                                                   expected, " registers, got ", regs.size()));
  }
  const int max_rank = 65 - p;
  for (size_t i = 0; i < regs.size(); ++i) {
    if (regs[i] > max_rank) {
      return absl::InvalidArgumentError(
          absl::StrCat("DistinctCounter: register ", i, " holds ", static_cast<int>(regs[i]),
                       ", more than the maximum ", max_rank, " at precision ", p));
    }
  }
  DistinctCounter c(p);
  c.registers_ = std::move(regs);
  return c;
}

// ---------------------------------------------------------------------------
// TopK

TopK::TopK(size_t capacity)
    : capacity_(std::clamp<size_t>(capacity, 1, std::numeric_limits<uint32_t>::max())) {
  slots_.reserve(capacity_);
  heap_.reserve(capacity_);
  heap_pos_.reserve(capacity_);
  index_.reserve(capacity_);
}

void TopK::SiftUp(size_t i) {
  const uint32_t slot = heap_[i];
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!Less(slot, heap_[parent])) break;
    Place(i, heap_[parent]);
    i = parent;
  }
  Place(i, slot);
}

void TopK::SiftDown(size_t i) {
  const uint32_t slot = heap_[i];
  const size_t n = heap_.size();
  while (true) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && Less(heap_[child + 1], heap_[child])) ++child;
    if (!Less(heap_[child], slot)) break;
    Place(i, heap_[child]);
    i = child;
  }
  Place(i, slot);
}

void TopK::Add(std::string_view s, uint64_t weight) {
  if (weight == 0) return;
  total_ = SaturatingAdd(total_, weight);
  // Debian's Abseil has its own string_view type; converting to it is free
  // and keeps the lookup heterogeneous (no std::string is built).
  if (auto it = index_.find(absl::string_view(s.data(), s.size())); it != index_.end()) {
    Slot& slot = slots_[it->second];
    slot.count = SaturatingAdd(slot.count, weight);
    SiftDown(heap_pos_[it->second]);
    return;
  }
  if (slots_.size() < capacity_) {
    const uint32_t id = static_cast<uint32_t>(slots_.size());
    slots_.push_back(Slot{std::string(s), weight, 0});
    index_.emplace(slots_.back().value, id);
    heap_.push_back(id);
    heap_pos_.push_back(static_cast<uint32_t>(heap_.size() - 1));
    SiftUp(heap_.size() - 1);
    return;
  }
  // Space-Saving: the new value takes over the smallest counter. Its earlier
  // occurrences (if any) were at most that counter, which becomes its error.
  const uint32_t id = heap_[0];
  Slot& slot = slots_[id];
  untracked_bound_ = std::max(untracked_bound_, slot.count);
  index_.erase(slot.value);
  slot.value.assign(s.data(), s.size());
  slot.count = SaturatingAdd(untracked_bound_, weight);
  slot.error = untracked_bound_;
  index_.emplace(slot.value, id);
  SiftDown(0);
}

void TopK::Merge(const TopK& o) {
  if (&o == this) {
    const TopK copy = o;
    Merge(copy);
    return;
  }
  // A value missing from one side occurred there at most that side's
  // untracked bound times (0 if that side is exact).
  std::vector<Slot> merged;
  merged.reserve(slots_.size() + o.slots_.size());
  for (const Slot& a : slots_) {
    if (auto it = o.index_.find(a.value); it != o.index_.end()) {
      const Slot& b = o.slots_[it->second];
      merged.push_back(
          Slot{a.value, SaturatingAdd(a.count, b.count), SaturatingAdd(a.error, b.error)});
    } else {
      merged.push_back(Slot{a.value, SaturatingAdd(a.count, o.untracked_bound_),
                            SaturatingAdd(a.error, o.untracked_bound_)});
    }
  }
  for (const Slot& b : o.slots_) {
    if (index_.contains(b.value)) continue;
    merged.push_back(Slot{b.value, SaturatingAdd(b.count, untracked_bound_),
                          SaturatingAdd(b.error, untracked_bound_)});
  }
  std::sort(merged.begin(), merged.end(), [](const Slot& x, const Slot& y) {
    return x.count != y.count ? x.count > y.count : x.value < y.value;
  });
  uint64_t bound = SaturatingAdd(untracked_bound_, o.untracked_bound_);
  if (merged.size() > capacity_) {
    bound = std::max(bound, merged[capacity_].count);
    merged.resize(capacity_);
  }
  untracked_bound_ = bound;
  total_ = SaturatingAdd(total_, o.total_);

  slots_ = std::move(merged);
  index_.clear();
  heap_.resize(slots_.size());
  heap_pos_.resize(slots_.size());
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    index_.emplace(slots_[i].value, i);
    Place(i, i);
  }
  for (size_t i = heap_.size() / 2; i-- > 0;) SiftDown(i);
}

std::vector<TopK::Entry> TopK::Top(size_t n) const {
  std::vector<uint32_t> order(slots_.size());
  std::iota(order.begin(), order.end(), 0);
  n = std::min(n, order.size());
  std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](uint32_t x, uint32_t y) {
    const Slot& a = slots_[x];
    const Slot& b = slots_[y];
    return a.count != b.count ? a.count > b.count : a.value < b.value;
  });
  std::vector<Entry> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const Slot& s = slots_[order[i]];
    out.push_back(Entry{s.value, s.count, s.error});
  }
  return out;
}

}  // namespace vigil::core
