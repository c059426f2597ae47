// String building that takes std::string_view. Debian's Abseil is built with
// its own absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so
// absl::StrCat and friends refuse std::string_view; vigil uses these instead.
// Doubles print as the shortest text that reads back exactly.
//
// Thread-safety: pure functions.
#ifndef VIGIL_CORE_STRINGS_H_
#define VIGIL_CORE_STRINGS_H_

#include <charconv>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/strings/string_view.h"

namespace vigil {

// One argument of StrCat, turned into text.
class StrPiece {
 public:
  StrPiece(std::string_view s) : s_(s) {}  // NOLINT: implicit by design
  StrPiece(const char* s) : s_(s ? s : "") {}
  StrPiece(const std::string& s) : s_(s) {}
  StrPiece(absl::string_view s) : s_(s.data(), s.size()) {}
  StrPiece(char c) : s_(buf_, 1) { buf_[0] = c; }
  StrPiece(bool b) : s_(b ? "true" : "false") {}
  template <typename T,
            std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, char> &&
                                 !std::is_same_v<T, bool>,
                             int> = 0>
  StrPiece(T v) {
    auto r = std::to_chars(buf_, buf_ + sizeof buf_, v);
    s_ = std::string_view(buf_, static_cast<size_t>(r.ptr - buf_));
  }
  StrPiece(double v) {
    auto r = std::to_chars(buf_, buf_ + sizeof buf_, v);
    s_ = std::string_view(buf_, static_cast<size_t>(r.ptr - buf_));
  }
  StrPiece(float v) : StrPiece(static_cast<double>(v)) {}
  StrPiece(const StrPiece&) = delete;

  std::string_view view() const { return s_; }

 private:
  char buf_[32];
  std::string_view s_;
};

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (out.append(StrPiece(args).view()), ...);
  return out;
}

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  (out->append(StrPiece(args).view()), ...);
}

// Joins the elements (anything StrPiece takes) with `sep`.
template <typename Container>
std::string StrJoin(const Container& c, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& e : c) {
    if (!first) out.append(sep);
    first = false;
    out.append(StrPiece(e).view());
  }
  return out;
}

// Splits on every `sep`; an empty input gives one empty piece.
inline std::vector<std::string_view> StrSplit(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t b = 0;
  while (true) {
    const size_t e = s.find(sep, b);
    if (e == std::string_view::npos) {
      out.push_back(s.substr(b));
      return out;
    }
    out.push_back(s.substr(b, e - b));
    b = e + 1;
  }
}

inline bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}
inline bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}
// `s` without the UTF-8 byte-order mark some editors (Windows Notepad) put
// at the start of a file.
inline std::string_view StripUtf8Bom(std::string_view s) {
  return StartsWith(s, "\xEF\xBB\xBF") ? s.substr(3) : s;
}

// The offset of the first byte of `s` that is not part of well-formed UTF-8
// (an overlong form, a surrogate or a code point past U+10FFFF is not), or
// std::string_view::npos when all of it is.
inline size_t FirstInvalidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // past U+10FFFF
    } else {
      return i;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

}  // namespace vigil

#endif  // VIGIL_CORE_STRINGS_H_
