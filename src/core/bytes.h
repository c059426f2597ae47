// Little-endian binary encoding for snapshots: a writer that appends to a
// string and a reader that checks every bound and reports, never crashes, on
// truncated or corrupt input.
//
// Thread-safety: one writer or reader per thread.
#ifndef VIGIL_CORE_BYTES_H_
#define VIGIL_CORE_BYTES_H_

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/status.h"
#include "core/strings.h"

namespace vigil::core {

class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void F64(double v) { Raw(&v, 8); }  // bit for bit, NaN payloads included
  void Str(std::string_view s) {
    U64(s.size());
    out_->append(s);
  }
  // A string written in place, without a copy: BeginStr writes a length to
  // be filled in and returns where the string starts; the caller appends
  // it to the output; EndStr(start) fills in its length. The same bytes as
  // Str.
  size_t BeginStr() {
    U64(0);
    return out_->size();
  }
  void EndStr(size_t start) {
    const uint64_t n = out_->size() - start;
    std::memcpy(out_->data() + start - 8, &n, 8);
  }

 private:
  void Raw(const void* p, size_t n) { out_->append(static_cast<const char*>(p), n); }
  std::string* out_;
};

class ByteReader {
 public:
  // `what` names the input in errors ("snapshot foo.snap").
  ByteReader(std::string_view in, std::string_view what) : in_(in), what_(what) {}

  bool U8(uint8_t* v) { return Raw(v, 1); }
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool I64(int64_t* v) { return Raw(v, 8); }
  bool F64(double* v) { return Raw(v, 8); }
  bool Str(std::string* s) {
    std::string_view v;
    if (!StrView(&v)) return false;
    s->assign(v);
    return true;
  }
  // The same without a copy: a view into the input.
  bool StrView(std::string_view* s) {
    uint64_t n;
    if (!U64(&n) || n > in_.size() - pos_) return Fail("string length beyond the end");
    *s = in_.substr(pos_, n);
    pos_ += n;
    return true;
  }
  // A count of items of at least `min_item_bytes` each, checked against the
  // bytes left (so a corrupt count cannot make the caller allocate wildly).
  bool Count(uint64_t* n, size_t min_item_bytes) {
    if (!U64(n)) return false;
    if (min_item_bytes > 0 && *n > (in_.size() - pos_) / min_item_bytes) {
      return Fail(StrCat("a count of ", *n, " items cannot fit in the ", in_.size() - pos_,
                         " bytes left"));
    }
    return true;
  }
  bool Fail(std::string_view why) {
    if (error_.empty()) error_ = StrCat(what_, ": corrupt at byte ", pos_, ": ", why);
    return false;
  }
  bool at_end() const { return pos_ == in_.size(); }
  size_t position() const { return pos_; }
  absl::Status status() const {
    return error_.empty() ? absl::OkStatus() : absl::InvalidArgumentError(error_);
  }

 private:
  bool Raw(void* p, size_t n) {
    if (n > in_.size() - pos_) return Fail("truncated");
    std::memcpy(p, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  std::string_view in_;
  std::string what_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace vigil::core

#endif  // VIGIL_CORE_BYTES_H_
