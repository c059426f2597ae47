#include "event/decimal.h"

#include <charconv>
#include <random>
#include <string>

#include "gtest/gtest.h"

namespace vigil::event {
namespace {

Decimal D(std::string_view s) {
  Decimal d;
  EXPECT_TRUE(ParseDecimal(s, &d)) << s;
  return d;
}

TEST(DecimalTest, ComparesExactlyAcrossScales) {
  EXPECT_EQ(CompareDecimal(D("0.10"), D("0.1")), 0);
  EXPECT_EQ(CompareDecimal(D("220.00"), D("220")), 0);
  EXPECT_LT(CompareDecimal(D("220"), D("220.000000000000001")), 0);
  EXPECT_GT(CompareDecimal(D("-0.5"), D("-1")), 0);
}

TEST(DecimalTest, RefusesExponentsJunkAndTooManyDigits) {
  Decimal d;
  for (std::string_view s : {"", "-", ".", "1e3", "1.2.3", "12a", " 1", "1234567890123456789"}) {
    EXPECT_FALSE(ParseDecimal(s, &d)) << s;
  }
  EXPECT_TRUE(ParseDecimal("000000000000000000001.5", &d));  // leading zeros are free
}

TEST(DecimalTest, PrintsAndConvertsToDouble) {
  EXPECT_EQ(D("57.16").ToString(), "57.16");
  EXPECT_EQ(D("-0.05").ToString(), "-0.05");
  EXPECT_EQ(D("12").ToString(), "12");
  EXPECT_EQ(D("57.16").ToDouble(), 57.16);
  EXPECT_EQ(D(".5").ToDouble(), 0.5);
}

// Beyond 2^53 units the division alone would round twice: every value
// converts to the double a correctly rounded parse of its text gives.
TEST(DecimalTest, ToDoubleIsCorrectlyRoundedForEighteenDigits) {
  // 9007199254740993 (2^53 + 1) / 10: the units round to 2^53 first, and
  // the quotient to a double one unit in the last place below the nearest.
  EXPECT_EQ(D("900719925474099.3").ToDouble(), 900719925474099.3);
  std::mt19937_64 rng(53);
  int wide = 0;
  for (int i = 0; i < 200'000; ++i) {
    const int digits = 15 + static_cast<int>(rng() % 4);
    std::string s = rng() % 2 ? "-" : "";
    for (int k = 0; k < digits; ++k) s += static_cast<char>('0' + (k == 0 ? 1 + rng() % 9 : rng() % 10));
    const size_t point = rng() % static_cast<size_t>(digits + 1);
    if (point > 0) s.insert(s.size() - point, ".");
    double want = 0;
    ASSERT_EQ(std::from_chars(s.data(), s.data() + s.size(), want).ec, std::errc()) << s;
    const Decimal d = D(s);
    ASSERT_EQ(d.ToDouble(), want) << s;
    wide += (d.units < 0 ? -d.units : d.units) > (int64_t{1} << 53) && d.scale > 0;
  }
  EXPECT_GT(wide, 10'000);  // the slow path was taken
}

TEST(DecimalTest, ShortInputsParseAsTheGeneralParserParsesThem) {
  // ParseDecimal takes a shortcut for up to 18 characters: random strings
  // over digits, signs, points and junk, and all those built from a few
  // characters, against ParseDecimalGeneral.
  auto same = [](const std::string& s) {
    Decimal a{-7, 3}, b{-7, 3};
    const bool ok_a = ParseDecimal(s, &a), ok_b = ParseDecimalGeneral(s, &b);
    ASSERT_EQ(ok_a, ok_b) << s;
    ASSERT_EQ(a.units, b.units) << s;
    ASSERT_EQ(a.scale, b.scale) << s;
    ASSERT_EQ(a.ToDouble(), b.ToDouble()) << s;
  };
  const std::string alphabet = "0123456789000000.-+e ";
  std::mt19937_64 rng(19);
  for (int i = 0; i < 300'000; ++i) {
    std::string s(rng() % 21, ' ');
    for (char& c : s) c = alphabet[rng() % (i % 2 ? 11 : alphabet.size())];
    if (i % 4 == 0 && s.size() > 2) s[rng() % s.size()] = '.';
    same(s);
  }
  const std::string few = "09.-";
  for (int len = 0; len <= 6; ++len) {
    std::string s(static_cast<size_t>(len), '0');
    for (int code = 0;; ++code) {
      int c = code;
      for (char& ch : s) {
        ch = few[static_cast<size_t>(c % 4)];
        c /= 4;
      }
      if (c > 0) break;
      same(s);
    }
  }
  for (const char* s : {"999999999999999999", "-99999999999999999", "0.00000000000000001",
                        "123456789012345678", "1234567890123456789", "00000000000000000001",
                        "+.5", "-.", "5.", "."}) {
    same(s);
  }
}

}  // namespace
}  // namespace vigil::event
