// IncrementalMap: a hash map that grows without a pause.
//
// An absl::flat_hash_map doubles in one step: every element is rehashed and
// moved at once. For the feature engine's state (hundreds of thousands of
// entities of ~150 bytes each) that step took 10-50 ms, and the event being
// scored at that moment, and every request queued behind it, waited that
// long. IncrementalMap keeps two flat_hash_maps instead: when the current one
// is about to grow, it becomes the old one, a new one with room for twice as
// many elements takes its place, and every insert from then on first moves a
// few elements (kStep) from the old map to the new one (as Redis's dict does),
// so that the old map is empty before the new one fills. Lookups look in the
// new map, then in the old one while it has elements.
//
// Small maps (slots below kMinIncrementalBytes) grow the ordinary way:
// their rehash is short. What makes a rehash long is less the moves than
// the new table's first touch: on the VMs vigil is measured on a page fault
// costs about 10 µs, and a 2,000-entity table of the feature engine
// (224-byte slots) took 2.5 ms to double in one step, a 14,000-entity one
// up to 100 ms.
//
// Pointer stability: a pointer to a value stays valid until the next insert
// or erase (an insert may move other elements from the old map to the new).
// Iteration order is unspecified, as for flat_hash_map.
//
// Thread-safety: none; like flat_hash_map, const methods may run
// concurrently with each other.
#ifndef VIGIL_CORE_INCREMENTAL_MAP_H_
#define VIGIL_CORE_INCREMENTAL_MAP_H_

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace vigil::core {

template <typename K, typename V, typename Hash = absl::Hash<K>>
class IncrementalMap {
 public:
  using Map = absl::flat_hash_map<K, V, Hash>;
  // Elements moved from the old map per insert: the old map empties after
  // size/kStep inserts, long before the new map (room for 2 * size) fills.
  static constexpr size_t kStep = 4;
  static constexpr size_t kMinIncrementalBytes = 32 * 1024;
  // In slots. (absl's capacities are 2^k - 1: a bound of 2^k would let the
  // table of 2^k - 1 slots double in one step.)
  static constexpr size_t kMinIncremental =
      std::max<size_t>(15, kMinIncrementalBytes / sizeof(typename Map::slot_type));

  IncrementalMap() = default;
  // A copy is one map (the copy is made in one step).
  IncrementalMap(const IncrementalMap& o) : cur_(o.cur_) {
    for (const auto& [k, v] : o.old_) cur_.try_emplace(k, v);
  }
  IncrementalMap& operator=(const IncrementalMap& o) {
    if (this != &o) *this = IncrementalMap(o);
    return *this;
  }
  // A map that is growing finishes first: the iterator into the old map does
  // not survive the move.
  IncrementalMap(IncrementalMap&& o) noexcept {
    o.Finish();
    cur_ = std::move(o.cur_);
    erased_ = o.erased_;
    o.erased_ = 0;
  }
  IncrementalMap& operator=(IncrementalMap&& o) noexcept {
    if (this != &o) {
      o.Finish();
      cur_ = std::move(o.cur_);
      erased_ = o.erased_;
      o.erased_ = 0;
      FinishGrowing();
    }
    return *this;
  }

  V* find(const K& k) {
    if (auto it = cur_.find(k); it != cur_.end()) return &it->second;
    if (!old_.empty()) {
      if (auto it = old_.find(k); it != old_.end()) return &it->second;
    }
    return nullptr;
  }
  const V* find(const K& k) const { return const_cast<IncrementalMap*>(this)->find(k); }
  bool contains(const K& k) const { return find(k) != nullptr; }

  // The value of `k`, inserted (constructed from `args`) when absent; and
  // whether it was inserted.
  template <typename... Args>
  std::pair<V*, bool> try_emplace(const K& k, Args&&... args) {
    if (V* v = find(k)) return {v, false};
    if (!old_.empty()) {
      Step();
    } else if (cur_.capacity() >= kMinIncremental &&
               cur_.size() + erased_ + 1 > GrowthLimit(cur_.capacity())) {
      StartGrowing();
    }
    auto [it, inserted] = cur_.try_emplace(k, std::forward<Args>(args)...);
    return {&it->second, inserted};
  }

  // Removes `k`; whether it was there.
  bool erase(const K& k) {
    if (cur_.erase(k) > 0) {
      ++erased_;
      return true;
    }
    if (old_.empty()) return false;
    auto it = old_.find(k);
    if (it == old_.end()) return false;
    if (it == next_) ++next_;
    old_.erase(it);
    if (old_.empty()) FinishGrowing();
    return true;
  }

  // Erases every element for which pred(key, value&) holds (pred may change
  // the values it keeps); how many. A growth in progress goes on: elements
  // still in the old map are visited there, not moved first (moving them all
  // at once is the pause this map exists to avoid).
  template <typename Pred>
  size_t erase_if(Pred pred) {
    size_t n = 0;
    for (auto it = cur_.begin(); it != cur_.end();) {
      if (pred(it->first, it->second)) {
        cur_.erase(it++);
        ++n;
        ++erased_;
      } else {
        ++it;
      }
    }
    if (old_.empty()) return n;
    // Erasing leaves the old map's other iterators valid; next_ moves past
    // an element erased under it.
    for (auto it = old_.begin(); it != old_.end();) {
      if (pred(it->first, it->second)) {
        if (it == next_) ++next_;
        old_.erase(it++);
        ++n;
      } else {
        ++it;
      }
    }
    if (old_.empty()) FinishGrowing();
    return n;
  }

  void prefetch(const K& k) const {
    cur_.prefetch(k);
    if (!old_.empty()) old_.prefetch(k);
  }

  // Calls f(key, value) for every element.
  template <typename F>
  void for_each(F f) const {
    for (const auto& [k, v] : cur_) f(k, v);
    for (const auto& [k, v] : old_) f(k, v);
  }

  size_t size() const { return cur_.size() + old_.size(); }
  bool empty() const { return size() == 0; }
  // Slots held by both maps (for memory reports).
  size_t capacity() const { return cur_.capacity() + old_.capacity(); }
  bool growing() const { return !old_.empty(); }
  // Elements still in the old map, waiting to be moved.
  size_t pending() const { return old_.size(); }

  void reserve(size_t n) {
    Finish();
    cur_.reserve(n);
  }
  // Gives back the memory of erased elements (a pause: the map is rebuilt).
  void shrink_to_fit() {
    Finish();
    cur_.rehash(0);
    erased_ = 0;
  }
  void clear() {
    cur_ = Map();
    FinishGrowing();
    erased_ = 0;
  }
  // Moves every element still in the old map (a pause, as a plain map's).
  void Finish() {
    while (!old_.empty()) Step();
  }

 private:
  // absl grows a table of capacity c when it holds c - c/8 elements and
  // erased slots (tombstones, until it rehashes); an incremental growth
  // starts just before, counting every erase as a tombstone, so that absl
  // never rehashes a large table in one step, not even in place to drop
  // tombstones: a map with steady churn moves into a fresh table from time
  // to time instead (of room for twice its live elements).
  static size_t GrowthLimit(size_t capacity) { return capacity - capacity / 8; }

  void StartGrowing() {
    old_ = std::move(cur_);
    cur_ = Map();
    cur_.reserve(2 * old_.size());
    erased_ = 0;
    next_ = old_.begin();
    if (old_.empty()) FinishGrowing();  // everything was erased: nothing to move
  }
  void Step() {
    for (size_t i = 0; i < kStep && next_ != old_.end(); ++i) {
      cur_.try_emplace(next_->first, std::move(next_->second));
      old_.erase(next_++);
    }
    if (next_ == old_.end()) FinishGrowing();
  }
  void FinishGrowing() {
    old_ = Map();  // gives its memory back
    next_ = old_.end();
  }

  Map cur_;
  Map old_;
  size_t erased_ = 0;  // erases from cur_ since it was made: its tombstones at most
  typename Map::iterator next_ = old_.end();  // the next element of old_ to move
};

}  // namespace vigil::core

#endif  // VIGIL_CORE_INCREMENTAL_MAP_H_
