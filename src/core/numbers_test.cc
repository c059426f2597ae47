#include "core/numbers.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::core {
namespace {

// Also checks that nothing is written past the kMaxDoubleChars promised:
// the fast paths copy 16 bytes at a time.
std::string Shortest(double v) {
  char buf[kMaxDoubleChars + 16];
  std::memset(buf, '#', sizeof buf);
  std::string s(buf, WriteShortestDouble(v, buf));
  for (size_t i = kMaxDoubleChars; i < sizeof buf; ++i) {
    if (buf[i] != '#') ADD_FAILURE() << "wrote past kMaxDoubleChars for " << s;
  }
  return s;
}

std::string ToChars(double v) {
  char buf[64];
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

// What WriteShortestDouble promises: std::to_chars's text, except whole
// numbers below 1e15, which are written as integers.
std::string Expected(double v) {
  if (v == std::trunc(v) && std::fabs(v) < 1e15 && !(v == 0 && std::signbit(v))) {
    return std::to_string(static_cast<int64_t>(v));
  }
  return ToChars(v);
}

double FromBits(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

TEST(WriteShortestDoubleTest, WritesWhatToCharsWritesOverRandomBitPatterns) {
  std::mt19937_64 rng(7);
  int checked = 0;
  for (int i = 0; i < 2'000'000; ++i) {
    const double v = FromBits(rng());
    if (std::isnan(v)) continue;
    ASSERT_EQ(Shortest(v), Expected(v)) << std::hexfloat << v;
    ++checked;
  }
  EXPECT_GT(checked, 1'990'000);
}

TEST(WriteShortestDoubleTest, WritesWhatToCharsWritesForEverydayValues) {
  // Amounts with cents, means and ratios, small probabilities, large sums:
  // the values feature rows hold.
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int64_t> cents(-10'000'000, 10'000'000);
  std::uniform_int_distribution<int> small(1, 1000);
  for (int i = 0; i < 300'000; ++i) {
    const double amount = static_cast<double>(cents(rng)) / 100;
    ASSERT_EQ(Shortest(amount), Expected(amount)) << amount;
    const double ratio = static_cast<double>(small(rng)) / small(rng);
    ASSERT_EQ(Shortest(ratio), Expected(ratio)) << ratio;
    const double tiny = ratio * 1e-7;
    ASSERT_EQ(Shortest(tiny), Expected(tiny)) << tiny;
    const double huge = amount * 1e13 + 0.5;
    ASSERT_EQ(Shortest(huge), Expected(huge)) << huge;
  }
  for (int e = -324; e <= 308; ++e) {
    for (double m : {1.0, 1.5, 9.999, 2.2250738585072014}) {
      const double v = m * std::pow(10.0, e);
      if (!std::isfinite(v)) continue;
      ASSERT_EQ(Shortest(v), Expected(v)) << v;
      ASSERT_EQ(Shortest(-v), Expected(-v)) << -v;
    }
  }
  for (double v : {0.1, 0.0001, 0.00012, 1e-5, 1e15, 1e16, 1e21, 1e22, 1e23, 123456789012345.6,
                   5e-324, std::numeric_limits<double>::denorm_min(), std::numeric_limits<double>::min(),
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::infinity(),
                   -std::numeric_limits<double>::infinity(), -0.0, 0.0}) {
    EXPECT_EQ(Shortest(v), Expected(v)) << v;
  }
}

TEST(WriteShortestDoubleTest, FewDecimalsPathWritesWhatToCharsWrites) {
  // The fast path for one to three decimals, at and around its edges (0.001,
  // 1e12), and values with four decimals that must not take it.
  std::mt19937_64 rng(13);
  for (int64_t scale : {10, 100, 1000, 10000}) {
    for (int64_t top : {int64_t{10}, int64_t{1000}, int64_t{10'000'000}, int64_t{1'000'000'000'000'000}}) {
      std::uniform_int_distribution<int64_t> units(1, top);
      for (int i = 0; i < 50'000; ++i) {
        const double v = static_cast<double>(units(rng)) / static_cast<double>(scale);
        ASSERT_EQ(Shortest(v), Expected(v)) << v;
      }
    }
  }
  for (double v : {0.001, 0.0011, 0.00099, 0.05, 0.005, 1.005, 999999999999.99, 1e12 + 0.5,
                   999999999999.999, 0.999, 9.9999}) {
    EXPECT_EQ(Shortest(v), Expected(v)) << v;
  }
}

TEST(WriteShortestDoubleTest, InlineWholeNumberPathWritesWhatTheGeneralPathWrites) {
  // Whole numbers below 100 take the inline path; their neighbours, -0 and
  // NaN must not.
  for (int i = 0; i <= 100'000; ++i) {
    const double v = i;
    for (double x : {v, -v, std::nextafter(v, 1e300), std::nextafter(v, -1e300), v + 0.5, v - 0.5,
                     v / 7, v * 1e-3}) {
      ASSERT_EQ(Shortest(x), Expected(x)) << x;
    }
  }
  EXPECT_EQ(Shortest(-0.0), "-0");
  EXPECT_EQ(Shortest(0.0), "0");
  EXPECT_EQ(Shortest(99.0), "99");
  EXPECT_EQ(Shortest(std::nextafter(100.0, 0.0)), "99.99999999999999");
  EXPECT_EQ(Shortest(std::nan("")), "");
  EXPECT_EQ(Shortest(-std::nan("")), "");
}

TEST(WriteShortestDoubleTest, ManyDigitsAtEveryPositionOfThePoint) {
  // Means and ratios: up to 17 significant digits, the point after each of
  // them, with and without a sign (the 17-digit path copies 16 bytes at a time).
  std::mt19937_64 rng(17);
  std::uniform_int_distribution<int64_t> cents(1, 100'000);
  std::uniform_int_distribution<int> count(1, 97);
  for (int i = 0; i < 100'000; ++i) {
    const int n = count(rng);
    int64_t sum = 0;
    for (int k = 0; k < n; ++k) sum += cents(rng);
    const double mean = static_cast<double>(sum) / 100 / n;
    ASSERT_EQ(Shortest(mean), Expected(mean)) << mean;
    ASSERT_EQ(Shortest(-mean), Expected(-mean)) << -mean;
  }
  std::uniform_real_distribution<double> unit(1, 10);
  for (int e = -25; e <= 25; ++e) {
    for (int i = 0; i < 2'000; ++i) {
      const double v = unit(rng) * std::pow(10.0, e);
      ASSERT_EQ(Shortest(v), Expected(v)) << v;
      ASSERT_EQ(Shortest(-v), Expected(-v)) << -v;
    }
  }
}

TEST(WriteShortestDoubleTest, ReadsBackAsTheSameDouble) {
  std::mt19937_64 rng(3);
  for (int i = 0; i < 200'000; ++i) {
    const double v = FromBits(rng());
    if (!std::isfinite(v)) continue;
    const std::string s = Shortest(v);
    double back = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), back);
    ASSERT_TRUE(ec == std::errc() && p == s.data() + s.size()) << s;
    ASSERT_EQ(std::memcmp(&back, &v, sizeof v), 0) << s;
  }
}

TEST(WriteShortestDoubleTest, WholeNumbersAreIntegersAndNanIsNothing) {
  EXPECT_EQ(Shortest(1e6), "1000000");
  EXPECT_EQ(Shortest(-42), "-42");
  EXPECT_EQ(Shortest(57.16), "57.16");
  EXPECT_EQ(Shortest(std::nan("")), "");
}

TEST(WriteInt64Test, WritesEveryMagnitude) {
  for (int64_t v : {int64_t{0}, int64_t{9}, int64_t{10}, int64_t{-1}, int64_t{99}, int64_t{100},
                    int64_t{123456789}, std::numeric_limits<int64_t>::max(),
                    std::numeric_limits<int64_t>::min()}) {
    char buf[20];
    EXPECT_EQ(std::string(buf, WriteInt64(v, buf)), std::to_string(v));
  }
}

ParseIntError FromChars(std::string_view s, int64_t* v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  if (ec == std::errc::result_out_of_range) return ParseIntError::kOutOfRange;
  return ec == std::errc() && p == s.data() + s.size() && !s.empty() ? ParseIntError::kOk
                                                                     : ParseIntError::kInvalid;
}

TEST(ParseInt64Test, InBufferParsesWhatParseInt64Parses) {
  // Texts of digits (with junk, signs, every length to 10) inside a buffer
  // of random bytes, with 0 to 12 bytes readable after the text.
  std::mt19937_64 rng(47);
  const std::string alphabet = "01234567890123456789012345678901234567890123456789-+ /:.a\x80\xff";
  char buf[64];
  for (int i = 0; i < 1'000'000; ++i) {
    for (char& c : buf) c = static_cast<char>(rng());
    const size_t len = rng() % 11;
    const size_t at = rng() % 8;
    for (size_t k = 0; k < len; ++k) {
      buf[at + k] = alphabet[rng() % (i % 3 == 0 ? alphabet.size() : 10)];
    }
    const std::string_view s(buf + at, len);
    const char* readable_end = buf + at + len + rng() % 13;
    int64_t a = -7, b = -7;
    const ParseIntError ea = ParseInt64InBuffer(s, readable_end, &a);
    const ParseIntError eb = ParseInt64(s, &b);
    ASSERT_EQ(ea, eb) << s;
    ASSERT_EQ(a, b) << s;
  }
}

TEST(ParseInt64Test, AcceptsExactlyWhatFromCharsAccepts) {
  std::mt19937_64 rng(5);
  const std::string alphabet = "0123456789012345678901234567890123456789-+ .xe";
  std::vector<std::string> cases = {"", "-", "0", "-0", "007", "9223372036854775807",
                                    "9223372036854775808", "-9223372036854775808",
                                    "-9223372036854775809", "99999999999999999999", "1 ", " 1",
                                    "+1", "1-", "--1", "000000000000000000000000000042"};
  for (int i = 0; i < 200'000; ++i) {
    std::string s;
    const int len = static_cast<int>(rng() % 24);
    for (int k = 0; k < len; ++k) s.push_back(alphabet[rng() % alphabet.size()]);
    if (rng() % 2) {  // mostly digits, sometimes signed
      for (char& c : s) c = static_cast<char>('0' + rng() % 10);
      if (rng() % 3 == 0) s.insert(s.begin(), '-');
    }
    cases.push_back(s);
  }
  for (const std::string& s : cases) {
    int64_t a = 0, b = 0;
    const ParseIntError ea = ParseInt64(s, &a);
    const ParseIntError eb = FromChars(s, &b);
    ASSERT_EQ(ea, eb) << "'" << s << "'";
    if (ea == ParseIntError::kOk) {
      ASSERT_EQ(a, b) << "'" << s << "'";
    }
  }
}

}  // namespace
}  // namespace vigil::core
