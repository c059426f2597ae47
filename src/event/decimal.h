// An exact decimal number: units / 10^scale. Amounts are parsed exactly so
// that bounds and equality are exact ("0.10" == "0.1", and 220.00 is not
// above 220); features compute in double.
//
// Thread-safety: a value type.
#ifndef VIGIL_EVENT_DECIMAL_H_
#define VIGIL_EVENT_DECIMAL_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace vigil::event {

struct Decimal {
  int64_t units = 0;
  int8_t scale = 0;  // 0..18 digits after the point

  double ToDouble() const noexcept;
  std::string ToString() const;
};

// Parses [+-]digits[.digits] with at most 18 significant digits. No exponent,
// no spaces. Hot path: no allocation. Returns false when `s` is not such a
// number or does not fit.
bool ParseDecimal(std::string_view s, Decimal* out) noexcept;

// -1, 0 or 1, exactly.
int CompareDecimal(const Decimal& a, const Decimal& b) noexcept;

}  // namespace vigil::event

#endif  // VIGIL_EVENT_DECIMAL_H_
