// A slot holding the current version of something immutable — a model, a
// policy — that a writer replaces while many threads read it.
//
// Readers each own a Slot<T>::Reader. Reader::Get() costs one atomic load
// while the slot is unchanged: no lock, no reference-count traffic. After a
// Set it takes the slot's mutex once to copy the new pointer. A value stays
// alive while any reader (or anyone holding the shared_ptr it returned)
// still uses it, so a request that started on a model finishes on it.
//
// Why not std::atomic<std::shared_ptr>: libstdc++ 12 implements it with an
// internal lock ThreadSanitizer cannot see, so every use reports a race.
// A mutex and an atomic version counter are understood by TSan
// (model_slot_tsan_test runs under it).
//
// Thread-safety: Set and Load from any thread; a Reader is used by one
// thread at a time.
#ifndef VIGIL_CORE_SLOT_H_
#define VIGIL_CORE_SLOT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>

namespace vigil::core {

template <typename T>
class Slot {
 public:
  Slot() = default;
  explicit Slot(std::shared_ptr<const T> value) : value_(std::move(value)) {}
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  // Replaces the value. The previous one is released outside the lock, and
  // destroyed when its last reader lets go.
  void Set(std::shared_ptr<const T> value) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      value_.swap(value);
      version_.fetch_add(1, std::memory_order_release);
    }
  }

  // A copy of the current value (may be null), under the lock.
  std::shared_ptr<const T> Load() const {
    std::lock_guard<std::mutex> lock(mu_);
    return value_;
  }

  uint64_t version() const { return version_.load(std::memory_order_acquire); }

  class Reader {
   public:
    explicit Reader(const Slot& slot) : slot_(&slot) { Refresh(); }
    // The current value; valid until this reader's next Get.
    const std::shared_ptr<const T>& Get() {
      if (slot_->version_.load(std::memory_order_acquire) != seen_) Refresh();
      return cached_;
    }

   private:
    void Refresh() {
      std::lock_guard<std::mutex> lock(slot_->mu_);
      cached_ = slot_->value_;
      seen_ = slot_->version_.load(std::memory_order_relaxed);
    }
    const Slot* slot_;
    uint64_t seen_ = 0;
    std::shared_ptr<const T> cached_;
  };

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const T> value_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace vigil::core

#endif  // VIGIL_CORE_SLOT_H_
