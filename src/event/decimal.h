// An exact decimal number: units / 10^scale. Amounts are parsed exactly so
// that bounds and equality are exact ("0.10" == "0.1", and 220.00 is not
// above 220); features compute in double.
//
// Thread-safety: a value type.
#ifndef VIGIL_EVENT_DECIMAL_H_
#define VIGIL_EVENT_DECIMAL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/numbers.h"

namespace vigil::event {

struct Decimal {
  int64_t units = 0;
  int8_t scale = 0;  // 0..18 digits after the point

  // The double nearest the exact value (what a correctly rounded parse of
  // its text gives). Up to 2^53 units, both operands of the division are
  // exact, so it rounds once; beyond, the units would round first and the
  // quotient again (off by one unit in the last place): a slower path.
  double ToDouble() const noexcept {
    const uint64_t mag = units < 0 ? 0 - static_cast<uint64_t>(units) : static_cast<uint64_t>(units);
    if (mag <= (uint64_t{1} << 53) || scale == 0) [[likely]] {
      return static_cast<double>(units) / core::kPow10Double[static_cast<size_t>(scale)];
    }
    return ToDoubleWide();
  }
  std::string ToString() const;

 private:
  double ToDoubleWide() const noexcept;
};

// Parses [+-]digits[.digits] with at most 18 significant digits. No exponent,
// no spaces. Hot path: no allocation. Returns false when `s` is not such a
// number or does not fit.
bool ParseDecimalGeneral(std::string_view s, Decimal* out) noexcept;  // any length
inline bool ParseDecimal(std::string_view s, Decimal* out) noexcept {
  // Amounts are short: with at most 18 characters there are at most 18
  // digits, so neither limit can be reached, and leading zeros need no care
  // (they add nothing to the units and count in the scale either way).
  if (s.empty() || s.size() > 18) return ParseDecimalGeneral(s, out);
  const char* p = s.data();
  const char* const end = p + s.size();
  const bool neg = *p == '-';
  if (neg || *p == '+') ++p;
  const char* const first = p;
  const char* dot = nullptr;
  uint64_t units = 0;
  for (; p != end; ++p) {
    const unsigned d = static_cast<unsigned char>(*p) - static_cast<unsigned>('0');
    if (d <= 9) {
      units = units * 10 + d;
    } else if (*p == '.' && dot == nullptr) {
      dot = p;
    } else {
      return false;
    }
  }
  if (end - first == (dot ? 1 : 0)) return false;  // no digit
  out->units = neg ? -static_cast<int64_t>(units) : static_cast<int64_t>(units);
  out->scale = static_cast<int8_t>(dot ? end - dot - 1 : 0);
  return true;
}

// -1, 0 or 1, exactly.
int CompareDecimal(const Decimal& a, const Decimal& b) noexcept;

}  // namespace vigil::event

#endif  // VIGIL_EVENT_DECIMAL_H_
