#include "core/time.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "core/numbers.h"
#include "core/strings.h"

namespace vigil::core {
namespace {

inline bool Digits(const char* p, int n, int* out) noexcept {
  int v = 0;
  for (int i = 0; i < n; ++i) {
    const unsigned c = static_cast<unsigned char>(p[i]) - '0';
    if (c > 9) return false;
    v = v * 10 + static_cast<int>(c);
  }
  *out = v;
  return true;
}

inline bool IsLeap(int64_t y) noexcept { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

inline unsigned DaysInMonth(int64_t y, unsigned m) noexcept {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeap(y) ? 29 : kDays[m - 1];
}

// A plain number: [-]digits[.digits]. Returns true when `s` is one.
bool LooksNumeric(std::string_view s) noexcept {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  bool digit = false, dot = false;
  for (; i < s.size(); ++i) {
    if (s[i] >= '0' && s[i] <= '9') {
      digit = true;
    } else if (s[i] == '.' && !dot) {
      dot = true;
    } else {
      return false;
    }
  }
  return digit;
}

TimeError ParseNumeric(std::string_view s, EpochUnit unit, int64_t* ms) noexcept {
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') ++b;
  // Integers are converted exactly; only fractional values go through double.
  int64_t iv;
  auto [p, ec] = std::from_chars(b, e, iv);
  if (ec == std::errc() && p == e) {
    const bool seconds = unit == EpochUnit::kSeconds ||
                         (unit == EpochUnit::kAuto && iv < 100000000000 && iv > -100000000000);
    if (seconds && (iv > INT64_MAX / 1000 || iv < INT64_MIN / 1000)) return TimeError::kOutOfRange;
    const int64_t v = seconds ? iv * 1000 : iv;
    if (v < kMinTimestampMs || v > kMaxTimestampMs) return TimeError::kOutOfRange;
    *ms = v;
    return TimeError::kOk;
  }
  double dv;
  auto [p2, ec2] = std::from_chars(b, e, dv);
  if (ec2 != std::errc() || p2 != e) return TimeError::kOutOfRange;
  return EpochToMs(dv, unit, ms) ? TimeError::kOk : TimeError::kOutOfRange;
}

}  // namespace

int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) noexcept {
  // Howard Hinnant's algorithm.
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void CivilFromDays(int64_t z, int64_t* y, unsigned* m, unsigned* d) noexcept {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t yy = static_cast<int64_t>(yoe) + era * 400;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = yy + (*m <= 2);
}

bool EpochToMs(double v, EpochUnit unit, int64_t* ms) noexcept {
  if (!std::isfinite(v)) return false;
  const bool seconds =
      unit == EpochUnit::kSeconds || (unit == EpochUnit::kAuto && std::fabs(v) < 1e11);
  const double m = std::floor(seconds ? v * 1000.0 : v);
  if (!(m >= static_cast<double>(kMinTimestampMs) && m <= static_cast<double>(kMaxTimestampMs))) {
    return false;
  }
  *ms = static_cast<int64_t>(m);
  return true;
}

namespace {

// The midnight of "YYYY-MM-DD" at the start of `s`.
// REQUIRES: s.size() >= 10, s[4] == '-', s[7] == '-'.
TimeError ParseDate(std::string_view s, int64_t* t) noexcept {
  int y, mo, d;
  if (!Digits(s.data(), 4, &y) || !Digits(s.data() + 5, 2, &mo) || !Digits(s.data() + 8, 2, &d)) {
    return TimeError::kSyntax;
  }
  if (mo < 1 || mo > 12 || d < 1 || static_cast<unsigned>(d) > DaysInMonth(y, mo)) {
    return TimeError::kOutOfRange;
  }
  *t = DaysFromCivil(y, mo, d) * kMsPerDay;
  return TimeError::kOk;
}

// What follows a valid date: optional [T ]HH:MM[:SS[.f+]] then zone; `t` is
// the date's midnight. REQUIRES: s.size() > 10.
TimeError ParseAfterDate(std::string_view s, int64_t t, int64_t* ms) noexcept {
  const char sep = s[10];
  if (sep != 'T' && sep != ' ' && sep != 't') return TimeError::kSyntax;
  if (s.size() < 16 || s[13] != ':') return TimeError::kSyntax;
  int h, mi, sec = 0;
  if (!Digits(s.data() + 11, 2, &h) || !Digits(s.data() + 14, 2, &mi)) return TimeError::kSyntax;
  size_t i = 16;
  if (i < s.size() && s[i] == ':') {
    if (s.size() < 19 || !Digits(s.data() + 17, 2, &sec)) return TimeError::kSyntax;
    i = 19;
  }
  if (h > 23 || mi > 59 || sec > 59) return TimeError::kOutOfRange;
  t += h * kMsPerHour + mi * kMsPerMinute + sec * kMsPerSecond;
  if (i < s.size() && (s[i] == '.' || s[i] == ',')) {
    ++i;
    int frac = 0, n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (n < 3) frac = frac * 10 + (s[i] - '0');
      ++n;
      ++i;
    }
    if (n == 0) return TimeError::kSyntax;
    for (int k = n; k < 3; ++k) frac *= 10;
    t += frac;  // Digits past milliseconds are truncated.
  }
  if (i == s.size()) {
    if (sep != ' ') return TimeError::kNoZone;
    *ms = t;
    return TimeError::kOk;
  }
  if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == s.size()) {
    *ms = t;
    return TimeError::kOk;
  }
  if (s[i] == '+' || s[i] == '-') {
    const int sign = s[i] == '+' ? 1 : -1;
    int oh, om = 0;
    const size_t rest = s.size() - i - 1;
    const char* z = s.data() + i + 1;
    if (rest == 2) {
      if (!Digits(z, 2, &oh)) return TimeError::kSyntax;
    } else if (rest == 4) {
      if (!Digits(z, 2, &oh) || !Digits(z + 2, 2, &om)) return TimeError::kSyntax;
    } else if (rest == 5 && z[2] == ':') {
      if (!Digits(z, 2, &oh) || !Digits(z + 3, 2, &om)) return TimeError::kSyntax;
    } else {
      return TimeError::kSyntax;
    }
    if (oh > 23 || om > 59) return TimeError::kOutOfRange;
    *ms = t - sign * (oh * kMsPerHour + om * kMsPerMinute);
    return TimeError::kOk;
  }
  return TimeError::kSyntax;
}

bool HasDate(std::string_view s) noexcept { return s.size() >= 10 && s[4] == '-' && s[7] == '-'; }

}  // namespace

TimeError ParseTimestamp(std::string_view s, int64_t* ms, EpochUnit unit) noexcept {
  // Fast path: "YYYY-MM-DD" then optional [T ]HH:MM[:SS[.f+]] then zone.
  if (HasDate(s)) {
    int64_t t;
    const TimeError e = ParseDate(s, &t);
    if (e != TimeError::kOk) return e;
    if (s.size() == 10) {
      *ms = t;
      return TimeError::kOk;
    }
    return ParseAfterDate(s, t, ms);
  }
  if (!s.empty() && LooksNumeric(s)) return ParseNumeric(s, unit, ms);
  return TimeError::kSyntax;
}

TimeError TimestampParser::Parse(std::string_view s, int64_t* ms, EpochUnit unit) noexcept {
  if (s.size() > 10 && HasDate(s)) {
    if (!has_date_ || std::memcmp(s.data(), date_, sizeof date_) != 0) {
      int64_t t;
      const TimeError e = ParseDate(s, &t);
      if (e != TimeError::kOk) return e;
      std::memcpy(date_, s.data(), sizeof date_);
      date_ms_ = t;
      has_date_ = true;
    }
    return ParseAfterDate(s, date_ms_, ms);
  }
  return ParseTimestamp(s, ms, unit);
}

const char* TimeErrorText(TimeError e) noexcept {
  switch (e) {
    case TimeError::kOk:
      return "ok";
    case TimeError::kSyntax:
      return "not a timestamp (expected ISO-8601 with a zone, 'YYYY-MM-DD HH:MM:SS' in UTC, or "
             "epoch seconds or milliseconds)";
    case TimeError::kNoZone:
      return "ISO-8601 time without a zone (add Z or an offset such as +02:00)";
    case TimeError::kOutOfRange:
      return "out of range (a date or time field, or a time outside the years 0000-9999)";
  }
  return "unknown";
}

absl::StatusOr<int64_t> ParseTimestamp(std::string_view text, EpochUnit unit) {
  int64_t ms;
  const TimeError e = ParseTimestamp(text, &ms, unit);
  if (e != TimeError::kOk) {
    return absl::InvalidArgumentError(StrCat("'", text, "': ", TimeErrorText(e)));
  }
  return ms;
}

namespace {

// "2018-04-01T" for a day number since the epoch.
char* WriteDate(int64_t day, char* out) {
  int64_t y;
  unsigned m, d;
  CivilFromDays(day, &y, &m, &d);
  if (y < 0 || y > 9999) {
    return out + snprintf(out, 32, "%lld-%02u-%02uT", static_cast<long long>(y), m, d);
  }
  // Backfill writes one per row: no printf.
  const char date[11] = {static_cast<char>('0' + y / 1000), static_cast<char>('0' + y / 100 % 10),
                         static_cast<char>('0' + y / 10 % 10), static_cast<char>('0' + y % 10), '-',
                         static_cast<char>('0' + m / 10), static_cast<char>('0' + m % 10), '-',
                         static_cast<char>('0' + d / 10), static_cast<char>('0' + d % 10), 'T'};
  std::memcpy(out, date, sizeof date);
  return out + sizeof date;
}

// "00:00:31.000Z" for milliseconds since midnight (0 <= rem < kMsPerDay):
// 32-bit divisions by constants and two digits per table read.
char* WriteTimeOfDay(int64_t rem, char* out) {
  const auto r = static_cast<uint32_t>(rem);
  const uint32_t secs = r / 1000, milli = r % 1000;
  const uint32_t h = secs / 3600, in_hour = secs % 3600;
  const uint32_t mi = in_hour / 60, sec = in_hour % 60;
  const char* pairs = internal::kDigitPairs;
  char t[13];
  std::memcpy(t, pairs + 2 * h, 2);
  t[2] = ':';
  std::memcpy(t + 3, pairs + 2 * mi, 2);
  t[5] = ':';
  std::memcpy(t + 6, pairs + 2 * sec, 2);
  t[8] = '.';
  t[9] = static_cast<char>('0' + milli / 100);
  std::memcpy(t + 10, pairs + 2 * (milli % 100), 2);
  t[12] = 'Z';
  std::memcpy(out, t, sizeof t);
  return out + sizeof t;
}

}  // namespace

char* WriteTimestamp(int64_t ms, char* out) {
  int64_t rem;
  const int64_t day = DayOf(ms, &rem);
  return WriteTimeOfDay(rem, WriteDate(day, out));
}

char* TimestampWriter::Write(int64_t ms, char* out) {
  int64_t rem;
  const int64_t day = DayOf(ms, &rem);
  if (day != day_) {
    day_ = day;
    date_len_ = static_cast<size_t>(WriteDate(day, date_) - date_);
  }
  if (date_len_ <= 16) {
    std::memcpy(out, date_, 16);  // a fixed size: no call (kMaxTimestampChars at out)
  } else {
    std::memcpy(out, date_, date_len_);
  }
  return WriteTimeOfDay(rem, out + date_len_);
}

void AppendTimestamp(int64_t ms, std::string* out) {
  char buf[kMaxTimestampChars];
  out->append(buf, static_cast<size_t>(WriteTimestamp(ms, buf) - buf));
}

std::string FormatTimestamp(int64_t ms) {
  std::string s;
  AppendTimestamp(ms, &s);
  return s;
}

absl::StatusOr<int64_t> ParseDurationMs(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0 || i == text.size()) {
    return absl::InvalidArgumentError(StrCat(
        "'", text, "' is not a duration (a whole number and a unit: ms, s, m, h, d, w; e.g. 7d)"));
  }
  int64_t n;
  auto [p, ec] = std::from_chars(text.data(), text.data() + i, n);
  if (ec != std::errc()) return absl::InvalidArgumentError(StrCat("'", text, "' is too large"));
  const std::string_view u = text.substr(i);
  int64_t mult;
  if (u == "ms") mult = 1;
  else if (u == "s") mult = kMsPerSecond;
  else if (u == "m") mult = kMsPerMinute;
  else if (u == "h") mult = kMsPerHour;
  else if (u == "d") mult = kMsPerDay;
  else if (u == "w") mult = 7 * kMsPerDay;
  else {
    return absl::InvalidArgumentError(
        StrCat("'", text, "' has unknown unit '", u, "' (use ms, s, m, h, d or w)"));
  }
  if (n > INT64_MAX / mult) return absl::InvalidArgumentError(StrCat("'", text, "' is too large"));
  return n * mult;
}

std::string FormatDuration(int64_t ms) {
  struct U { int64_t ms; const char* name; };
  // Days at most: "7d" reads as people write it ("2w" parses, too).
  static constexpr U kUnits[] = {{kMsPerDay, "d"}, {kMsPerHour, "h"}, {kMsPerMinute, "m"},
                                 {kMsPerSecond, "s"}};
  if (ms != 0) {
    for (const U& u : kUnits) {
      if (ms % u.ms == 0) return StrCat(ms / u.ms, u.name);
    }
  }
  return StrCat(ms, "ms");
}

std::string HumanDuration(int64_t ms) {
  const double a = static_cast<double>(ms < 0 ? -ms : ms);
  char buf[48];
  const char* sign = ms < 0 ? "-" : "";
  if (a >= kMsPerDay) {
    snprintf(buf, sizeof buf, "%s%.1f days", sign, a / kMsPerDay);
  } else if (a >= kMsPerHour) {
    snprintf(buf, sizeof buf, "%s%.1f hours", sign, a / kMsPerHour);
  } else if (a >= kMsPerMinute) {
    snprintf(buf, sizeof buf, "%s%.1f minutes", sign, a / kMsPerMinute);
  } else if (a >= kMsPerSecond) {
    snprintf(buf, sizeof buf, "%s%.1f s", sign, a / kMsPerSecond);
  } else {
    snprintf(buf, sizeof buf, "%s%lld ms", sign, static_cast<long long>(a));
  }
  return buf;
}

int64_t WallNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace vigil::core
