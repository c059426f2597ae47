#include "core/numbers.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "fmt/format.h"

namespace vigil::core {
namespace {

using internal::kDigitPairs;


// From the bit length, without a loop: 1233 / 4096 is just above log10(2).
int CountDigits(uint64_t v) {
  const int bits = 64 - __builtin_clzll(v | 1);
  const int t = (bits * 1233) >> 12;
  return t + 1 - (v < kPow10[t]);
}

// Writes the 8 digits of v < 10^8, with leading zeros, at `out`. v / 10^6 as
// a fixed-point number with 48 fractional bits (the multiplier rounded up;
// its error stays below a unit of the last digit for every v < 10^8, checked
// exhaustively), then a pair of digits per multiplication by 100: no division.
void Write8Digits(uint64_t v, char* out) {
  constexpr uint64_t kFraction = (uint64_t{1} << 48) - 1;
  uint64_t x = v * 281474977;  // ceil(2^48 / 10^6)
  std::memcpy(out, kDigitPairs + 2 * (x >> 48), 2);
  x = (x & kFraction) * 100;
  std::memcpy(out + 2, kDigitPairs + 2 * (x >> 48), 2);
  x = (x & kFraction) * 100;
  std::memcpy(out + 4, kDigitPairs + 2 * (x >> 48), 2);
  x = (x & kFraction) * 100;
  std::memcpy(out + 6, kDigitPairs + 2 * (x >> 48), 2);
}

// Writes the 17 digits of v < 10^17, with leading zeros, at `out`.
void Write17Digits(uint64_t v, char* out) {
  constexpr uint64_t k1e8 = 100'000'000, k1e16 = k1e8 * k1e8;
  out[0] = static_cast<char>('0' + v / k1e16);
  v %= k1e16;
  Write8Digits(v / k1e8, out + 1);
  Write8Digits(v % k1e8, out + 9);
}

// Writes the `n` digits of `v` ending at out + n.
void WriteDigits(uint64_t v, int n, char* out) {
  char* p = out + n;
  while (v >= 100) {
    const size_t i = (v % 100) * 2;
    v /= 100;
    p -= 2;
    std::memcpy(p, kDigitPairs + i, 2);
  }
  if (v >= 10) {
    p -= 2;
    std::memcpy(p, kDigitPairs + v * 2, 2);
  } else {
    *--p = static_cast<char>('0' + v);
  }
}

char* WriteUint64(uint64_t v, char* out) {
  if (v < 10) {  // flags and small counts: most cells
    *out = static_cast<char>('0' + v);
    return out + 1;
  }
  const int n = CountDigits(v);
  WriteDigits(v, n, out);
  return out + n;
}

// Writes v with `kDecimals` decimals when that reads back as v (see the
// caller) and returns the end, else nullptr. The scale is a constant: no
// division instruction.
// Writes v with its one to three decimals when it has no more (see the
// caller) and returns the end, else nullptr. One rounding at three
// decimals: r = round(v * 1000) reads back as v exactly when some number
// of up to three decimals does, and then it is that number times 10^(3-k),
// so its trailing zeros give k. The scale is a constant: no division
// instruction for the digits.
char* WriteUpTo3Decimals(double v, char* out) {
  // Signed conversions: one instruction each way (the unsigned ones are a
  // branchy sequence without AVX-512); v * 1000 is below 1e15 here.
  const auto ri = static_cast<int64_t>(v * 1000.0 + 0.5);
  if (static_cast<double>(ri) / 1000.0 != v) return nullptr;
  const auto r = static_cast<uint64_t>(ri);
  const auto frac = static_cast<unsigned>(r % 1000);
  out = WriteUint64(r / 1000, out);
  if (frac == 0) return out;  // a whole number: as an integer
  *out++ = '.';
  if (frac % 100 == 0) {  // 57.1
    *out = static_cast<char>('0' + frac / 100);
    return out + 1;
  }
  if (frac % 10 == 0) {  // 57.16, 0.05
    std::memcpy(out, kDigitPairs + 2 * (frac / 10), 2);
    return out + 2;
  }
  *out = static_cast<char>('0' + frac / 100);  // 57.165
  std::memcpy(out + 1, kDigitPairs + 2 * (frac % 100), 2);
  return out + 3;
}

}  // namespace

char* WriteInt64(int64_t v, char* out) {
  uint64_t u = static_cast<uint64_t>(v);
  if (v < 0) {
    *out++ = '-';
    u = ~u + 1;
  }
  return WriteUint64(u, out);
}

char* WriteShortestDoubleSlow(double v, char* out) {
  if (std::isnan(v)) return out;
  if (v == 0) return std::to_chars(out, out + kMaxDoubleChars, v).ptr;  // "0", "-0"
  if (v < 0) {
    *out++ = '-';
    v = -v;
  }
  // Amounts and simple ratios have one to three decimals: the fewest k for
  // which the digits of round(v * 10^k), read back, give v. Then those are
  // the shortest digits, and the fixed form is what std::to_chars chooses
  // (it is never longer than the scientific one from 0.001 up). Below 1e12
  // v * 1000 is within 0.2 of an integer when v has up to three decimals,
  // and at most one k-decimal number rounds to v. Whole numbers (no
  // decimal) are written as integers there.
  if (v >= 0.001 && v < 1e12) {
    if (char* end = WriteUpTo3Decimals(v, out)) return end;
  } else if (v < 1e15) {
    // Whole numbers from 1e12 to 1e15 as integers too. (No std::trunc:
    // without SSE4.1 it is a call.)
    const auto i = static_cast<int64_t>(v);
    if (static_cast<double>(i) == v) return WriteUint64(static_cast<uint64_t>(i), out);
  } else if (!std::isfinite(v)) {
    return std::to_chars(out, out + kMaxDoubleChars, v).ptr;  // "inf" (after '-': "-inf")
  }
  // The shortest digits that read back as v: significand * 10^exponent,
  // without trailing zeros (at most 17 digits).
  const auto dec = fmt::detail::dragonbox::to_decimal(v);
  const uint64_t digits = dec.significand;
  const int n = CountDigits(digits);
  const int e = dec.exponent;
  // All 17 digits, then the last n of them, copied 16 bytes at a time: the
  // bytes past the end are overwritten by the next cell (or never written).
  char buf[48];
  Write17Digits(digits, buf);
  const char* d = buf + 17 - n;
  // std::to_chars's choice: the shorter of fixed and scientific, fixed on a tie.
  const int sci_exp = e + n - 1;
  const int sci_len = n + (n > 1 ? 1 : 0) + 2 + (sci_exp >= 100 || sci_exp <= -100 ? 3 : 2);
  const int fixed_len = e >= 0 ? n + e : (-e < n ? n + 1 : 2 - e);
  if (fixed_len <= sci_len) {
    if (e >= 0) {
      // A whole number of 1e15 or more: std::to_chars writes all of its
      // exact digits, not the shortest ones padded with zeros.
      return std::to_chars(out, out + kMaxDoubleChars, v).ptr;
    }
    const int whole = n + e;
    if (whole > 0 && whole < 15) {  // 12.34: the point inside the digits (and room for a sign)
      std::memcpy(out, d, 16);
      out[whole] = '.';
      std::memcpy(out + whole + 1, d + whole, 16);  // at most 16 decimals
      return out + n + 1;
    }
    if (whole > 0) {  // 1234567890123456.7
      std::memcpy(out, d, static_cast<size_t>(whole));
      out[whole] = '.';
      std::memcpy(out + whole + 1, d + whole, static_cast<size_t>(n - whole));
      return out + n + 1;
    }
    out[0] = '0';  // 0.00123
    out[1] = '.';
    std::memset(out + 2, '0', static_cast<size_t>(-whole));
    std::memcpy(out + 2 - whole, d, static_cast<size_t>(n));
    return out + 2 - e;
  }
  // 1.234e+25, 5e-324
  out[0] = d[0];
  char* p = out + 1;
  if (n > 1) {
    *p = '.';
    std::memcpy(p + 1, d + 1, static_cast<size_t>(n - 1));
    p += n;
  }
  *p++ = 'e';
  int x = sci_exp;
  *p++ = x < 0 ? '-' : '+';
  if (x < 0) x = -x;
  if (x >= 100) {
    *p++ = static_cast<char>('0' + x / 100);
    x %= 100;
  }
  std::memcpy(p, kDigitPairs + x * 2, 2);
  return p + 2;
}

ParseIntError ParseInt64Long(std::string_view s, int64_t* out) {
  const char* const end = s.data() + s.size();
  auto [q, ec] = std::from_chars(s.data(), end, *out);
  if (ec == std::errc::result_out_of_range) return ParseIntError::kOutOfRange;
  return ec == std::errc() && q == end ? ParseIntError::kOk : ParseIntError::kInvalid;
}

}  // namespace vigil::core
