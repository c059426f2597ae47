// Numbers to and from text on the hot paths of backfill and serving, where
// the standard library's general routines cost more than the rest of a row.
//
// Thread-safety: pure functions.
#ifndef VIGIL_CORE_NUMBERS_H_
#define VIGIL_CORE_NUMBERS_H_

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace vigil::core {

// 10^0 .. 10^19, and 10^0 .. 10^18 as doubles (all exact).
inline constexpr uint64_t kPow10[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull, 1000000000ull,
    10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull, 100000000000000ull,
    1000000000000000ull, 10000000000000000ull, 100000000000000000ull, 1000000000000000000ull,
    10000000000000000000ull};
inline constexpr auto kPow10Double = [] {
  std::array<double, 19> t{};
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<double>(kPow10[i]);
  return t;
}();

namespace internal {
// "00" "01" ... "99": two digits per table read.
inline constexpr char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";
}  // namespace internal

// Room WriteShortestDouble may need.
inline constexpr size_t kMaxDoubleChars = 32;

// Writes `v` at `out` as the shortest decimal that reads back as the same
// double and returns the end; NaN writes nothing. Whole numbers below 1e15
// are written as integers ("1000000", not "1e+06"); every other value as
// std::to_chars(out, end, v) writes it (fixed or scientific, whichever is
// shorter, fixed on a tie), in a third of its instructions: values with one
// to three decimals directly, the others through Dragonbox (libfmt's
// fmt::detail::dragonbox::to_decimal, an internal of libfmt 9: the tests
// compare the output with std::to_chars, so a libfmt that changes it fails
// them). REQUIRES: kMaxDoubleChars bytes at `out`.
char* WriteShortestDoubleSlow(double v, char* out);  // all but whole numbers below 100
inline char* WriteShortestDouble(double v, char* out) {
  // Flags and counts are most feature cells: no call for them. The value
  // truncated to an integer (cvttsd2si: NaN and values out of range give
  // INT64_MIN, defined behaviour through the intrinsic) must be below 100
  // and read back with the same bits (-0 reads back as +0).
#if defined(__SSE2__)
  const auto i = static_cast<uint64_t>(_mm_cvttsd_si64(_mm_set_sd(v)));
#else
  const uint64_t i = v >= 0 && v < 100 ? static_cast<uint64_t>(v) : 100;
#endif
  if (i < 100 && std::bit_cast<uint64_t>(static_cast<double>(i)) == std::bit_cast<uint64_t>(v)) {
    if (i < 10) {
      *out = static_cast<char>('0' + i);
      return out + 1;
    }
    std::memcpy(out, internal::kDigitPairs + 2 * i, 2);
    return out + 2;
  }
  return WriteShortestDoubleSlow(v, out);
}
inline void AppendShortestDouble(double v, std::string* out) {
  char buf[kMaxDoubleChars];
  out->append(buf, static_cast<size_t>(WriteShortestDouble(v, buf) - buf));
}

// Writes the decimal digits of `v` (with '-' when negative) and returns the
// end. REQUIRES: 20 bytes at `out`.
char* WriteInt64(int64_t v, char* out);

// Parses a decimal integer: an optional '-', then digits only (no spaces, no
// '+'). Accepts exactly what std::from_chars(base 10) accepts whole, faster
// for the short numbers of event data. kOutOfRange beyond int64.
enum class ParseIntError { kOk, kInvalid, kOutOfRange };
ParseIntError ParseInt64Long(std::string_view s, int64_t* out);  // more than 18 digits
inline ParseIntError ParseInt64(std::string_view s, int64_t* out) {
  const char* p = s.data();
  const char* const end = p + s.size();
  const bool neg = p != end && *p == '-';
  if (neg) ++p;
  const size_t n = static_cast<size_t>(end - p);
  if (n == 0) return ParseIntError::kInvalid;
  if (n > 18) return ParseInt64Long(s, out);  // may overflow: the careful way
  uint64_t v = 0;
  for (; p != end; ++p) {
    const unsigned d = static_cast<unsigned char>(*p) - static_cast<unsigned>('0');
    if (d > 9) return ParseIntError::kInvalid;
    v = v * 10 + d;
  }
  *out = neg ? -static_cast<int64_t>(v) : static_cast<int64_t>(v);
  return ParseIntError::kOk;
}

// ParseInt64 for a text inside a larger buffer that may be read up to
// `readable_end`: 3 to 8 digits are read as one 8-byte word and converted
// with three multiplications (as simdjson does), not a loop per digit.
// Anything else, and a text too close to readable_end, the way ParseInt64
// does; the result is always ParseInt64's.
inline ParseIntError ParseInt64InBuffer(std::string_view s, const char* readable_end, int64_t* out) {
  const size_t n = s.size();
  if (n >= 3 && n <= 8 && readable_end - s.data() >= 8) {
    uint64_t w;
    std::memcpy(&w, s.data(), 8);  // little-endian: the first digit in the low byte
    // The digits to the high bytes, '0's below them: "00000596".
    const unsigned shift = 8 * static_cast<unsigned>(8 - n);
    w = (w << shift) | (0x3030303030303030ull & ((uint64_t{1} << shift) - 1));
    // Every byte in '0'..'9' (a byte that carries when 6 is added fails on
    // its own high nibble).
    if (((w & 0xF0F0F0F0F0F0F0F0ull) | (((w + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) >> 4)) ==
        0x3333333333333333ull) {
      w -= 0x3030303030303030ull;
      w = w * 10 + (w >> 8);
      w = ((w & 0x000000FF000000FFull) * (100 + (1000000ull << 32)) +
           ((w >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32))) >>
          32;
      *out = static_cast<int64_t>(w);
      return ParseIntError::kOk;
    }
  }
  return ParseInt64(s, out);
}

}  // namespace vigil::core

#endif  // VIGIL_CORE_NUMBERS_H_
