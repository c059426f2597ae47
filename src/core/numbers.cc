#include "core/numbers.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "fmt/format.h"

namespace vigil::core {
namespace {

constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

int CountDigits(uint64_t v) {
  int n = 1;
  while (v >= 10000) {
    v /= 10000;
    n += 4;
  }
  if (v >= 1000) return n + 3;
  if (v >= 100) return n + 2;
  if (v >= 10) return n + 1;
  return n;
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
template <uint64_t kScale, int kDecimals>
char* WriteFewDecimals(double v, char* out) {
  const auto r = static_cast<uint64_t>(v * static_cast<double>(kScale) + 0.5);
  if (static_cast<double>(r) / static_cast<double>(kScale) != v) return nullptr;
  // A smaller scale did not match, so the last decimal is not 0.
  out = WriteUint64(r / kScale, out);
  *out++ = '.';
  std::memset(out, '0', kDecimals);  // the leading zeros of 0.05
  WriteDigits(r % kScale, kDecimals, out);
  return out + kDecimals;
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
  // Counts and flags are most cells: whole numbers below 1e15 as integers
  // (-0 keeps its sign through the general path).
  // (No std::trunc: without SSE4.1 it is a call.)
  if (std::fabs(v) < 1e15) {
    const int64_t i = static_cast<int64_t>(v);
    if (static_cast<double>(i) == v && !(i == 0 && std::signbit(v))) return WriteInt64(i, out);
  }
  if (!std::isfinite(v) || v == 0) return std::to_chars(out, out + kMaxDoubleChars, v).ptr;
  if (v < 0) {
    *out++ = '-';
    v = -v;
  }
  // Amounts and simple ratios have one to three decimals: the first k for
  // which the digits of round(v * 10^k), read back, give v. Then those are
  // the shortest digits, and the fixed form is what std::to_chars chooses
  // (it is never longer than the scientific one from 0.001 up). Below 1e12
  // v * 1000 is exact as an integer and at most one k-decimal number rounds
  // to v.
  if (v >= 0.001 && v < 1e12) {
    if (char* end = WriteFewDecimals<10, 1>(v, out)) return end;
    if (char* end = WriteFewDecimals<100, 2>(v, out)) return end;
    if (char* end = WriteFewDecimals<1000, 3>(v, out)) return end;
  }
  // The shortest digits that read back as v: significand * 10^exponent,
  // without trailing zeros.
  const auto dec = fmt::detail::dragonbox::to_decimal(v);
  const uint64_t digits = dec.significand;
  const int n = CountDigits(digits);
  const int e = dec.exponent;
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
    if (-e < n) {  // 12.34: the point inside the digits
      const int whole = n + e;
      WriteDigits(digits, n, out + 1);
      std::memmove(out, out + 1, static_cast<size_t>(whole));
      out[whole] = '.';
      return out + n + 1;
    }
    out[0] = '0';  // 0.00123
    out[1] = '.';
    std::memset(out + 2, '0', static_cast<size_t>(-e - n));
    WriteDigits(digits, n, out + 2 - e - n);
    return out + 2 - e;
  }
  // 1.234e+25, 5e-324
  WriteDigits(digits, n, out + 1);
  out[0] = out[1];
  char* p = out + 1;
  if (n > 1) {
    *p = '.';
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
