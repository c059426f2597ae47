// RemapVector: a growable array that never copies its elements to grow.
//
// A std::vector that doubles allocates a new block, copies every element and
// touches every page of the new block: for the identity graph's node array
// (32 bytes a node) at 262 k nodes that was an 8 MB copy, about 6 ms, taken
// by whichever event added the node. RemapVector keeps its elements in their
// own anonymous mapping and grows it with mremap(2), which moves page-table
// entries instead of bytes: the elements already written stay in the pages
// they are in, and only the new room faults in, page by page, as it is first
// written. Growing is O(pages) in page-table work, microseconds for tens of
// MB.
//
// For element types that can be moved with memcpy (trivially copyable
// construction and destruction: plain structs, numbers, std::pair of them).
// Memory comes in whole pages, so it is for large arrays; a small one still
// takes a page. clear() keeps the room (and its pages), as std::vector does.
//
// Errors: an mmap/mremap that fails (the address space or overcommit limit
// is reached) ends the process with a message, as std::vector's bad_alloc
// would.
//
// Thread-safety: none; like std::vector, const methods may run concurrently
// with each other.
#ifndef VIGIL_CORE_REMAP_VECTOR_H_
#define VIGIL_CORE_REMAP_VECTOR_H_

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <utility>

namespace vigil::core {

template <typename T>
class RemapVector {
  static_assert(std::is_trivially_copy_constructible_v<T> && std::is_trivially_destructible_v<T>,
                "RemapVector moves its elements with memcpy and mremap");

 public:
  RemapVector() = default;
  ~RemapVector() { Release(); }
  RemapVector(const RemapVector& o) {
    reserve(o.size_);
    if (o.size_ > 0) std::memcpy(static_cast<void*>(data_), o.data_, o.size_ * sizeof(T));
    size_ = o.size_;
  }
  RemapVector& operator=(const RemapVector& o) {
    if (this != &o) {
      RemapVector copy(o);
      swap(copy);
    }
    return *this;
  }
  RemapVector(RemapVector&& o) noexcept { swap(o); }
  RemapVector& operator=(RemapVector&& o) noexcept {
    if (this != &o) {
      Release();
      swap(o);
    }
    return *this;
  }

  size_t size() const { return size_; }
  size_t capacity() const { return cap_; }
  bool empty() const { return size_ == 0; }
  T* data() { return data_; }
  const T* data() const { return data_; }
  T* begin() { return data_; }
  T* end() { return data_ + size_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + size_; }
  T& operator[](size_t i) { return data_[i]; }
  const T& operator[](size_t i) const { return data_[i]; }
  T& back() { return data_[size_ - 1]; }
  const T& back() const { return data_[size_ - 1]; }

  void reserve(size_t n) {
    if (n > cap_) Grow(n);
  }
  void push_back(const T& v) {
    if (size_ == cap_) {
      const T copy = v;  // `v` may be an element: Grow may move them
      Grow(size_ + 1);
      data_[size_++] = copy;
      return;
    }
    data_[size_++] = v;
  }
  // REQUIRES: [first, first + n) is not in this vector (growing may move it).
  void append(const T* first, size_t n) {
    reserve(size_ + n);
    if (n > 0) std::memcpy(static_cast<void*>(data_ + size_), first, n * sizeof(T));
    size_ += n;
  }
  // Grows with copies of `v`, or drops the elements from n on.
  void resize(size_t n, const T& v = T()) {
    const T copy = v;  // `v` may be an element: reserve may move them
    reserve(n);
    for (size_t i = size_; i < n; ++i) data_[i] = copy;
    size_ = n;
  }
  void assign(size_t n, const T& v) {
    size_ = 0;
    resize(n, v);
  }
  void clear() { size_ = 0; }
  // Gives back the room beyond max(size(), room) elements, in whole pages,
  // where it is: the elements do not move.
  void shrink_to_fit(size_t room = 0) {
    const size_t keep = Bytes(std::max(size_, room));
    const size_t held = Bytes(cap_);
    if (keep >= held) return;
    if (keep == 0) {
      Release();
      return;
    }
    if (munmap(reinterpret_cast<char*>(data_) + keep, held - keep) == 0) cap_ = keep / sizeof(T);
  }
  void swap(RemapVector& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    std::swap(cap_, o.cap_);
  }

 private:
  static size_t PageBytes() {
    static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    return page;
  }

  // Room for at least `n` elements, and at least twice the current room, so
  // that push_back is amortized O(1) in page-table work too.
  void Grow(size_t n) {
    const size_t page = PageBytes();
    const size_t old_bytes = Bytes(cap_);
    if (n > (SIZE_MAX - page) / sizeof(T) / 2) {
      std::fprintf(stderr, "vigil: an array of %zu elements of %zu bytes is beyond the address space\n", n,
                   sizeof(T));
      std::abort();
    }
    size_t want = std::max(n, cap_ * 2) * sizeof(T);
    want = (want + page - 1) / page * page;
    void* p = data_ == nullptr
                  ? mmap(nullptr, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                  : mremap(data_, old_bytes, want, MREMAP_MAYMOVE);
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "vigil: out of memory: cannot map %zu bytes for an array (%s)\n", want,
                   std::strerror(errno));
      std::abort();
    }
    data_ = static_cast<T*>(p);
    cap_ = want / sizeof(T);
  }
  // The mapping's length: the room rounded up to whole pages, as Grow made it.
  static size_t Bytes(size_t cap) {
    const size_t page = PageBytes();
    return (cap * sizeof(T) + page - 1) / page * page;
  }
  void Release() {
    if (data_ != nullptr) munmap(data_, Bytes(cap_));
    data_ = nullptr;
    size_ = cap_ = 0;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace vigil::core

#endif  // VIGIL_CORE_REMAP_VECTOR_H_
