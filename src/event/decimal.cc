#include "event/decimal.h"

#include <charconv>
#include <cmath>

namespace vigil::event {

bool ParseDecimalGeneral(std::string_view s, Decimal* out) noexcept {
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
  int64_t units = 0;
  int digits = 0, scale = 0;
  bool any = false, dot = false;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c >= '0' && c <= '9') {
      any = true;
      if (units == 0 && c == '0') {
        if (dot) ++scale;  // Leading zeros cost no precision.
        continue;
      }
      if (++digits > 18) return false;
      units = units * 10 + (c - '0');
      if (dot) ++scale;
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      return false;
    }
  }
  if (!any || scale > 18) return false;
  out->units = neg ? -units : units;
  out->scale = static_cast<int8_t>(scale);
  return true;
}

int CompareDecimal(const Decimal& a, const Decimal& b) noexcept {
  __int128 x = a.units, y = b.units;
  if (a.scale < b.scale) {
    x *= core::kPow10[b.scale - a.scale];
  } else {
    y *= core::kPow10[a.scale - b.scale];
  }
  return x < y ? -1 : (x > y ? 1 : 0);
}

double Decimal::ToDoubleWide() const noexcept {
  // "<units>e-<scale>", parsed correctly rounded.
  char buf[40];
  char* p = std::to_chars(buf, buf + 24, units).ptr;
  *p++ = 'e';
  *p++ = '-';
  p = std::to_chars(p, buf + sizeof buf, static_cast<int>(scale)).ptr;
  double d = 0;
  std::from_chars(buf, p, d);
  return d;
}

std::string Decimal::ToString() const {
  const bool neg = units < 0;
  const uint64_t mag = neg ? static_cast<uint64_t>(-(units + 1)) + 1 : static_cast<uint64_t>(units);
  std::string digits = std::to_string(mag);
  const size_t sc = static_cast<size_t>(scale);
  std::string out = neg ? "-" : "";
  if (sc > 0) {
    if (digits.size() <= sc) digits = std::string(sc - digits.size() + 1, '0') + digits;
    out.append(digits, 0, digits.size() - sc);
    out += '.';
    out.append(digits, digits.size() - sc, sc);
  } else {
    out += digits;
  }
  return out;
}

}  // namespace vigil::event
