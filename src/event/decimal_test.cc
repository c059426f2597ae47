#include "event/decimal.h"

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

}  // namespace
}  // namespace vigil::event
