#include "core/time.h"

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace vigil::core {
namespace {

int64_t Ms(std::string_view s) {
  auto r = ParseTimestamp(s);
  EXPECT_TRUE(r.ok()) << s << ": " << r.status();
  return r.ok() ? *r : 0;
}

TEST(ParseTimestampTest, SpaceFormWithoutZoneIsUtc) {
  EXPECT_EQ(Ms("2018-04-01 00:00:31"), 1522540831000);
}

TEST(ParseTimestampTest, IsoWithZuluAndOffsetsAgree) {
  EXPECT_EQ(Ms("2018-04-01T00:00:31Z"), 1522540831000);
  EXPECT_EQ(Ms("2018-04-01T02:00:31+02:00"), 1522540831000);
  EXPECT_EQ(Ms("2018-03-31T19:00:31-0500"), 1522540831000);
  EXPECT_EQ(Ms("2018-04-01T01:00:31+01"), 1522540831000);
}

TEST(ParseTimestampTest, FractionalSecondsKeepMillisecondsAndTruncateTheRest) {
  EXPECT_EQ(Ms("2018-04-01T00:00:31.5Z"), 1522540831500);
  EXPECT_EQ(Ms("2018-04-01T00:00:31.123999Z"), 1522540831123);
}

TEST(ParseTimestampTest, DateAloneIsUtcMidnight) { EXPECT_EQ(Ms("1970-01-02"), kMsPerDay); }

TEST(ParseTimestampTest, EpochSecondsAndMillisecondsByMagnitude) {
  EXPECT_EQ(Ms("1522540831"), 1522540831000);
  EXPECT_EQ(Ms("1522540831000"), 1522540831000);
  EXPECT_EQ(Ms("1522540831.25"), 1522540831250);
  int64_t ms;
  EXPECT_EQ(ParseTimestamp("9300000000000000", &ms, EpochUnit::kSeconds), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("15", &ms, EpochUnit::kMilliseconds), TimeError::kOk);
  EXPECT_EQ(ms, 15);
}

// An epoch number may not reach outside the years ISO-8601 writes: the
// engine's t - lag - window would overflow at the ends of int64.
TEST(ParseTimestampTest, EpochsOutsideTheYears0000To9999AreOutOfRange) {
  int64_t ms = 0;
  EXPECT_EQ(ParseTimestamp("-9223372036854775808", &ms), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("9223372036854775807", &ms), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("253402300800000", &ms), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("-62167219200001", &ms), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("1e300", &ms), TimeError::kSyntax);
  EXPECT_EQ(ParseTimestamp("253402300800", &ms, EpochUnit::kSeconds), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("-9000000000000000", &ms, EpochUnit::kMilliseconds),
            TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("-62167219200001.5", &ms, EpochUnit::kMilliseconds),
            TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("253402300799999", &ms), TimeError::kOk);
  EXPECT_EQ(FormatTimestamp(ms), "9999-12-31T23:59:59.999Z");
  EXPECT_EQ(ParseTimestamp("-62167219200000", &ms), TimeError::kOk);
  EXPECT_EQ(FormatTimestamp(ms), "0000-01-01T00:00:00.000Z");
}

TEST(ParseTimestampTest, IsoWithoutZoneIsRefusedWithReason) {
  auto r = ParseTimestamp("2018-04-01T00:00:31");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("without a zone"), std::string_view::npos);
}

TEST(ParseTimestampTest, ImpossibleDatesAreOutOfRange) {
  int64_t ms;
  EXPECT_EQ(ParseTimestamp("2018-02-29 00:00:00", &ms), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("2018-13-01 00:00:00", &ms), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("2018-04-01 24:00:00", &ms), TimeError::kOutOfRange);
  EXPECT_EQ(ParseTimestamp("2016-02-29 00:00:00", &ms), TimeError::kOk);
}

TEST(ParseTimestampTest, GarbageIsASyntaxError) {
  int64_t ms;
  for (std::string_view s : {"", "yesterday", "2018-4-1", "2018-04-01X00:00:00", "2018-04-01 00",
                             "2018-04-01T00:00:31Zjunk", "1e5", "--1"}) {
    EXPECT_NE(ParseTimestamp(s, &ms), TimeError::kOk) << s;
  }
}

TEST(FormatTimestampTest, RoundTripsWithMillisecondsAndZ) {
  EXPECT_EQ(FormatTimestamp(1522540831000), "2018-04-01T00:00:31.000Z");
  EXPECT_EQ(FormatTimestamp(-1), "1969-12-31T23:59:59.999Z");
  for (int64_t ms : {int64_t{0}, int64_t{951782400123}, int64_t{4102444800000}}) {
    EXPECT_EQ(Ms(FormatTimestamp(ms)), ms);
  }
}

TEST(DayStartTest, FloorsToUtcMidnightAlsoBeforeEpoch) {
  EXPECT_EQ(DayStart(1522540831000), 1522540800000);
  EXPECT_EQ(DayStart(-1), -kMsPerDay);
}

TEST(DayOfTest, SplitsIntoTheFlooredDayAndTheTimeSinceItsMidnight) {
  for (int64_t ms : {int64_t{0}, int64_t{1}, int64_t{-1}, kMsPerDay - 1, kMsPerDay, -kMsPerDay,
                     -kMsPerDay - 1, int64_t{1522540831000}, int64_t{-87451200000}}) {
    int64_t rem = -1;
    const int64_t day = DayOf(ms, &rem);
    EXPECT_EQ(day * kMsPerDay + rem, ms) << ms;
    EXPECT_GE(rem, 0) << ms;
    EXPECT_LT(rem, kMsPerDay) << ms;
    EXPECT_EQ(DayOf(ms), day) << ms;
  }
  int64_t rem;
  EXPECT_EQ(DayOf(-1, &rem), -1);
  EXPECT_EQ(rem, kMsPerDay - 1);
}

TEST(CivilDaysTest, RoundTripsOverFourCenturies) {
  for (int64_t d = -146097; d < 146097; d += 37) {
    int64_t y;
    unsigned m, dd;
    CivilFromDays(d, &y, &m, &dd);
    ASSERT_EQ(DaysFromCivil(y, m, dd), d);
  }
}

TEST(ParseDurationTest, UnitsAndErrors) {
  EXPECT_EQ(*ParseDurationMs("7d"), 7 * kMsPerDay);
  EXPECT_EQ(*ParseDurationMs("250ms"), 250);
  EXPECT_EQ(*ParseDurationMs("2w"), 14 * kMsPerDay);
  EXPECT_FALSE(ParseDurationMs("7").ok());
  auto bad = ParseDurationMs("7y");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("unknown unit"), std::string_view::npos);
  EXPECT_EQ(FormatDuration(7 * kMsPerDay), "7d");
  EXPECT_EQ(FormatDuration(36 * kMsPerHour), "36h");
  EXPECT_EQ(FormatDuration(1500), "1500ms");
}

TEST(HumanDurationTest, PicksAReadableUnit) {
  EXPECT_EQ(HumanDuration(3652 * kMsPerDay), "3652.0 days");
  EXPECT_EQ(HumanDuration(90 * kMsPerMinute), "1.5 hours");
  EXPECT_EQ(HumanDuration(250), "250 ms");
  EXPECT_EQ(HumanDuration(-2 * kMsPerSecond), "-2.0 s");
}

TEST(TimestampParserTest, ParsesWhatParseTimestampParses) {
  // Runs of times on one date (the date read once), dates that change,
  // invalid dates and times, zones, epochs: the same result and error.
  std::mt19937_64 rng(41);
  const std::vector<std::string> dates = {"2018-04-01", "2018-04-02", "2020-02-29", "2019-02-29",
                                          "2018-13-01", "2018-04-31", "20x8-04-01", "2018-04-0"};
  const std::vector<std::string> rests = {"",        " 00:00:31", " 23:59:59", "T12:00:00Z", "T12:00:00",
                                          " 24:00:00", " 12:60:00", "T01:02:03.5+02:00", " 01:02",
                                          "T01:02:03,123456Z", "x", " 1:2:3", "T01:02:03-0130",
                                          "t01:02:03z", " 12:00:00+2"};
  TimestampParser p;
  for (int i = 0; i < 200'000; ++i) {
    std::string s;
    const int r = static_cast<int>(rng() % 20);
    if (r == 0) {
      s = std::to_string(static_cast<int64_t>(rng() % 4'000'000'000'000) - 1'000'000'000'000);
    } else if (r == 1) {
      s = "x" + rests[rng() % rests.size()];
    } else {
      s = dates[r < 10 ? 0 : rng() % dates.size()] + rests[rng() % rests.size()];
    }
    for (EpochUnit unit : {EpochUnit::kAuto, EpochUnit::kSeconds}) {
      int64_t a = -7, b = -7;
      const TimeError ea = p.Parse(s, &a, unit), eb = ParseTimestamp(s, &b, unit);
      ASSERT_EQ(ea, eb) << s;
      ASSERT_EQ(a, b) << s;
    }
  }
}

TEST(TimestampWriterTest, WritesWhatPrintfWritesForRandomTimes) {
  // The time of day from divisions and a table of digit pairs, the date
  // from the day's cache: against snprintf of the civil date and time.
  std::mt19937_64 rng(31);
  TimestampWriter w;
  int64_t t = 1522540831000;
  for (int i = 0; i < 300'000; ++i) {
    const int r = static_cast<int>(rng() % 10);
    if (r == 0) {
      t = static_cast<int64_t>(rng() % 400'000'000'000'000) - 200'000'000'000'000;  // ±6000 years
    } else if (r == 1) {
      t -= static_cast<int64_t>(rng() % kMsPerDay);
    } else {
      t += static_cast<int64_t>(rng() % 100'000);
    }
    int64_t day = t / kMsPerDay, rem = t % kMsPerDay;
    if (rem < 0) {
      --day;
      rem += kMsPerDay;
    }
    int64_t y;
    unsigned m, d;
    CivilFromDays(day, &y, &m, &d);
    char want[64];
    // (Years outside 0..9999 as printf writes them: "-15-11-27T...".)
    snprintf(want, sizeof want, y < 0 || y > 9999 ? "%lld-%02u-%02uT%02d:%02d:%02d.%03dZ"
                                                  : "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ",
             static_cast<long long>(y), m, d,
             static_cast<int>(rem / kMsPerHour), static_cast<int>(rem / kMsPerMinute % 60),
             static_cast<int>(rem / kMsPerSecond % 60), static_cast<int>(rem % 1000));
    char buf[kMaxTimestampChars];
    ASSERT_EQ(std::string(buf, w.Write(t, buf)), std::string(want)) << t;
    ASSERT_EQ(FormatTimestamp(t), std::string(want)) << t;
  }
}

TEST(TimestampWriterTest, WritesWhatFormatTimestampWritesAcrossDaysAndYears) {
  TimestampWriter w;
  std::vector<int64_t> times;
  for (int64_t t = 1522540831000; t < 1522540831000 + 3 * kMsPerDay; t += 7 * kMsPerHour + 12345) {
    times.push_back(t);
  }
  // Back in time, before the epoch, beyond year 9999, and the same day again.
  for (int64_t t : {int64_t{1522540831000}, int64_t{-1}, int64_t{0}, int64_t{253402300800000},
                    int64_t{-62135596800001}, int64_t{1522540831000}}) {
    times.push_back(t);
  }
  for (int64_t t : times) {
    char buf[kMaxTimestampChars];
    EXPECT_EQ(std::string(buf, w.Write(t, buf)), FormatTimestamp(t)) << t;
  }
}

}  // namespace
}  // namespace vigil::core
