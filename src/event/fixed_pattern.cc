#include "event/fixed_pattern.h"

namespace vigil::event {
namespace {

// Bytes that stand for themselves both outside and inside a bracket class.
bool Literal(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == ':' || c == '@' || c == '#' || c == '=';
}

}  // namespace

std::optional<FixedPattern> FixedPattern::Compile(std::string_view p) {
  // RE2 caps a repetition count at 1000; longer ones are its to refuse.
  constexpr size_t kMaxRepeat = 1000, kMaxLength = 4096;
  size_t i = 0;
  if (i < p.size() && p[i] == '^') ++i;
  size_t end = p.size();
  if (end > i && p[end - 1] == '$') --end;
  FixedPattern out;
  while (i < end) {
    Set set{};
    auto add = [&set](unsigned char c) { set[c >> 6] |= uint64_t{1} << (c & 63); };
    if (Literal(p[i]) || p[i] == '-') {
      add(static_cast<unsigned char>(p[i]));
      ++i;
    } else if (p[i] == '[') {
      ++i;
      bool any = false;
      while (i < end && p[i] != ']') {
        if (!Literal(p[i])) return std::nullopt;  // ^ (negation), escapes, '-' first, ...
        const char lo = p[i];
        if (i + 2 < end && p[i + 1] == '-' && p[i + 2] != ']') {
          const char hi = p[i + 2];
          if (!Literal(hi) || hi < lo) return std::nullopt;
          for (int c = lo; c <= hi; ++c) add(static_cast<unsigned char>(c));
          i += 3;
        } else {
          add(static_cast<unsigned char>(lo));
          ++i;
        }
        any = true;
      }
      if (i >= end || !any) return std::nullopt;
      ++i;  // ]
    } else {
      return std::nullopt;
    }
    size_t count = 1;
    if (i < end && p[i] == '{') {
      size_t j = i + 1, n = 0;
      while (j < end && p[j] >= '0' && p[j] <= '9' && n <= kMaxRepeat)
        n = n * 10 + static_cast<size_t>(p[j++] - '0');
      if (j == i + 1 || j >= end || p[j] != '}' || n == 0 || n > kMaxRepeat) return std::nullopt;
      count = n;
      i = j + 1;
    }
    if (out.positions_.size() + count > kMaxLength) return std::nullopt;
    out.positions_.insert(out.positions_.end(), count, set);
  }
  if (out.positions_.empty()) return std::nullopt;
  return out;
}

}  // namespace vigil::event
