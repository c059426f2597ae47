// A progress line on standard error for long work, redrawn in place at most
// a few times a second, and only when standard error is a terminal.
//
// Thread-safety: one thread.
#ifndef VIGIL_CLI_PROGRESS_H_
#define VIGIL_CLI_PROGRESS_H_

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace vigil::cli {

class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), tty_(isatty(STDERR_FILENO)) {
    start_ = std::chrono::steady_clock::now();
    last_ = start_ - std::chrono::seconds(1);  // the first update draws at once
  }
  // Cheap enough to call per record: looks at the clock every 64k calls.
  void Tick(int64_t records, int64_t bytes) {
    if (!tty_ || (++calls_ & 0xffff) != 0) return;
    Update(records, bytes);
  }
  // For a caller that calls rarely (every few thousand records): looks at
  // the clock each time. With `rows` >= 0 the line counts rows written too,
  // and its rate is theirs.
  void Update(int64_t records, int64_t bytes, int64_t rows = -1) {
    if (!tty_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ < std::chrono::milliseconds(250)) return;
    last_ = now;
    const double s = Seconds();
    const int64_t n = rows >= 0 ? rows : records;
    const double rate = s > 0 ? static_cast<double>(n) / s / 1e6 : 0.0;
    if (rows >= 0) {
      std::fprintf(stderr, "\r%s: %lld records, %lld rows, %.1f MB, %.2f M rows/s   ",
                   what_.c_str(), static_cast<long long>(records), static_cast<long long>(rows),
                   static_cast<double>(bytes) / 1e6, rate);
    } else {
      std::fprintf(stderr, "\r%s: %lld records, %.1f MB, %.2f M records/s   ", what_.c_str(),
                   static_cast<long long>(records), static_cast<double>(bytes) / 1e6, rate);
    }
    std::fflush(stderr);
    shown_ = true;
  }
  void Done() {
    if (shown_) std::fprintf(stderr, "\r%*s\r", 80, "");
    shown_ = false;
  }
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  std::string what_;
  bool tty_;
  bool shown_ = false;
  uint64_t calls_ = 0;
  std::chrono::steady_clock::time_point start_, last_;
};

// 1169723 -> "1,169,723".
inline std::string Thousands(int64_t v) {
  std::string s = std::to_string(v < 0 ? -v : v);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(static_cast<size_t>(i), ",");
  return v < 0 ? "-" + s : s;
}

}  // namespace vigil::cli

#endif  // VIGIL_CLI_PROGRESS_H_
