// Event time in vigil: int64 milliseconds since 1970-01-01T00:00:00Z, always
// UTC. Days start at UTC midnight everywhere. This header parses and formats
// the forms vigil accepts:
//   - ISO-8601 with a zone: 2018-04-01T00:00:31Z, 2018-04-01T02:00:31.250+02:00
//   - "YYYY-MM-DD HH:MM:SS[.fff]" with a space and no zone, read as UTC
//   - a date alone, "YYYY-MM-DD", read as that day's UTC midnight
//   - epoch seconds or milliseconds (integer or decimal)
//
// Thread-safety: pure functions except WallNowMs().
#ifndef VIGIL_CORE_TIME_H_
#define VIGIL_CORE_TIME_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace vigil::core {

inline constexpr int64_t kMsPerSecond = 1000;
inline constexpr int64_t kMsPerMinute = 60 * kMsPerSecond;
inline constexpr int64_t kMsPerHour = 60 * kMsPerMinute;
inline constexpr int64_t kMsPerDay = 24 * kMsPerHour;

// The times a timestamp may hold: the years 0000 to 9999, as written in
// ISO-8601. An epoch number outside them is out of range (kOutOfRange), so
// that time arithmetic (t − lag − window) never overflows.
inline constexpr int64_t kMinTimestampMs = -62167219200000;  // 0000-01-01T00:00:00Z
inline constexpr int64_t kMaxTimestampMs = 253402300799999;  // 9999-12-31T23:59:59.999Z

// How a number is read as a time.
enum class EpochUnit {
  kAuto,          // |v| < 1e11 is seconds (up to year 5138), else milliseconds
  kSeconds,
  kMilliseconds,
};

// Why a timestamp did not parse; kOk when it did.
enum class TimeError { kOk, kSyntax, kNoZone, kOutOfRange };

// Parses `text` in any of the forms above; bare numbers are epochs in `unit`.
// Hot path: no allocation. Returns kOk and sets *ms, or the reason.
TimeError ParseTimestamp(std::string_view text, int64_t* ms,
                         EpochUnit unit = EpochUnit::kAuto) noexcept;

// ParseTimestamp for many times in a row, most of them on the date of the
// one before (a file's rows): a date is converted to days once, then
// compared as text. Returns what ParseTimestamp returns.
// Thread-safety: one per thread.
class TimestampParser {
 public:
  TimeError Parse(std::string_view text, int64_t* ms, EpochUnit unit = EpochUnit::kAuto) noexcept;

 private:
  char date_[10] = {};  // the last valid "YYYY-MM-DD" seen
  int64_t date_ms_ = 0;  // its midnight
  bool has_date_ = false;
};

// Same, as a Status whose message quotes the text and says what is wrong.
absl::StatusOr<int64_t> ParseTimestamp(std::string_view text, EpochUnit unit = EpochUnit::kAuto);

// Converts an epoch number to milliseconds. Fails (returns false) on NaN,
// infinities and times outside [kMinTimestampMs, kMaxTimestampMs].
bool EpochToMs(double v, EpochUnit unit, int64_t* ms) noexcept;

// Says why a timestamp failed, for messages.
const char* TimeErrorText(TimeError e) noexcept;

// "2018-04-01T00:00:31.000Z" (always milliseconds and Z).
std::string FormatTimestamp(int64_t ms);
void AppendTimestamp(int64_t ms, std::string* out);
// The same written at `out`, returning the end. REQUIRES: kMaxTimestampChars
// bytes at `out`.
inline constexpr size_t kMaxTimestampChars = 48;
char* WriteTimestamp(int64_t ms, char* out);
// WriteTimestamp for many times in a row, most of them on the day of the
// one before (a backfill's rows): the date is formatted once per day.
// Thread-safety: one per thread.
class TimestampWriter {
 public:
  char* Write(int64_t ms, char* out);

 private:
  int64_t day_ = INT64_MIN;
  char date_[kMaxTimestampChars];
  size_t date_len_ = 0;
};

// The UTC day of `ms` (days since 1970-01-01, floored), and in `*rem` the
// milliseconds since its midnight (0 <= *rem < kMsPerDay): one division.
constexpr int64_t DayOf(int64_t ms, int64_t* rem) noexcept {
  int64_t d = ms / kMsPerDay;
  *rem = ms - d * kMsPerDay;
  if (*rem < 0) {
    --d;
    *rem += kMsPerDay;
  }
  return d;
}

// The UTC day of `ms` alone.
constexpr int64_t DayOf(int64_t ms) noexcept {
  int64_t rem = 0;
  return DayOf(ms, &rem);
}

// The UTC midnight at or before `ms`.
constexpr int64_t DayStart(int64_t ms) noexcept {
  int64_t rem = 0;
  DayOf(ms, &rem);
  return ms - rem;
}

// Days since 1970-01-01 of a civil date (proleptic Gregorian), and back.
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) noexcept;
void CivilFromDays(int64_t days, int64_t* y, unsigned* m, unsigned* d) noexcept;

// Durations as written in configs: "500ms", "30s", "15m", "12h", "7d", "2w".
// A bare number is refused: a unit is always required.
absl::StatusOr<int64_t> ParseDurationMs(std::string_view text);
// The largest unit, up to days, that is exact: 604800000 -> "7d".
std::string FormatDuration(int64_t ms);

// A duration for people, rounded: "3652.0 days", "5.2 hours", "42 s", "250 ms".
std::string HumanDuration(int64_t ms);

// Milliseconds since the epoch from the system clock.
int64_t WallNowMs();

}  // namespace vigil::core

#endif  // VIGIL_CORE_TIME_H_
