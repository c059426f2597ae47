#include "event/event_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/strings.h"
#include "core/time.h"

namespace vigil::event {
namespace {

constexpr int64_t kSeqModulus = 1'000'000;  // six digits
constexpr int kMaxOpenAttempts = 100;

absl::Status ErrnoStatus(int err, std::string message) {
  switch (err) {
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(std::move(message));
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(std::move(message));
    default:
      return absl::UnavailableError(std::move(message));
  }
}

// "YYYYMMDD-HHMMSS" of `ms` (UTC).
std::string NameTime(int64_t ms) {
  const int64_t day_start = core::DayStart(ms);
  int64_t y;
  unsigned m, d;
  core::CivilFromDays(day_start / core::kMsPerDay, &y, &m, &d);
  const int64_t s = (ms - day_start) / core::kMsPerSecond;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04lld%02u%02u-%02lld%02lld%02lld", static_cast<long long>(y), m,
                d, static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60),
                static_cast<long long>(s % 60));
  return buf;
}

// Reads `n` decimal digits at `*p`, advancing it.
bool Digits(std::string_view* p, size_t n, int64_t* v) {
  if (p->size() < n) return false;
  *v = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = (*p)[i];
    if (c < '0' || c > '9') return false;
    *v = *v * 10 + (c - '0');
  }
  p->remove_prefix(n);
  return true;
}

bool Char(std::string_view* p, char c) {
  if (p->empty() || (*p)[0] != c) return false;
  p->remove_prefix(1);
  return true;
}

// Whether `name` is "<prefix>-YYYYMMDD-HHMMSS-NNNNNN.jsonl[.gz]"; if so, the
// time in it and its seq.
bool ParseLogName(std::string_view name, std::string_view prefix, int64_t* time_ms, int64_t* seq) {
  if (!StartsWith(name, prefix)) return false;
  std::string_view p = name.substr(prefix.size());
  int64_t date, hh, mm, ss;
  if (!Char(&p, '-') || !Digits(&p, 8, &date) || !Char(&p, '-') || !Digits(&p, 2, &hh) ||
      !Digits(&p, 2, &mm) || !Digits(&p, 2, &ss) || !Char(&p, '-') || !Digits(&p, 6, seq)) {
    return false;
  }
  if (p != ".jsonl" && p != ".jsonl.gz") return false;
  const unsigned month = static_cast<unsigned>(date / 100 % 100);
  const unsigned day = static_cast<unsigned>(date % 100);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) {
    return false;
  }
  *time_ms = core::DaysFromCivil(date / 10000, month, day) * core::kMsPerDay +
             ((hh * 60 + mm) * 60 + ss) * core::kMsPerSecond;
  return true;
}

struct LogName {
  std::string name;
  int64_t time_ms;
  int64_t seq;
};

absl::StatusOr<std::vector<LogName>> ListNames(const std::string& dir, const std::string& prefix) {
  DIR* d = opendir(dir.c_str());
  if (!d) {
    const int err = errno;
    return ErrnoStatus(err, StrCat(dir, ": cannot list the event log directory: ", strerror(err)));
  }
  std::vector<LogName> out;
  while (const dirent* e = readdir(d)) {
    LogName n;
    n.name = e->d_name;
    if (ParseLogName(n.name, prefix, &n.time_ms, &n.seq)) out.push_back(std::move(n));
  }
  closedir(d);
  std::sort(out.begin(), out.end(),
            [](const LogName& a, const LogName& b) { return a.name < b.name; });
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> ListEventLogFiles(const std::string& dir,
                                                           const std::string& prefix) {
  VIGIL_ASSIGN_OR_RETURN(std::vector<LogName> names, ListNames(dir, prefix));
  std::vector<std::string> out;
  out.reserve(names.size());
  for (const LogName& n : names) out.push_back(StrCat(dir, "/", n.name));
  return out;
}

EventLog::EventLog(EventLogOptions options) : options_(std::move(options)) {
  if (!options_.now_ms) options_.now_ms = [] { return core::WallNowMs(); };
}

EventLog::~EventLog() { Close().IgnoreError(); }

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(EventLogOptions options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("event log: no directory given");
  if (options.prefix.empty() || options.prefix.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(StrCat("event log: the prefix \"", options.prefix,
                                             "\" must be a non-empty file name part"));
  }
  if (options.rotate_bytes <= 0) {
    return absl::InvalidArgumentError(
        StrCat("event log: rotate_bytes must be positive, not ", options.rotate_bytes));
  }
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) {
    return ErrnoStatus(
        ec.value(), StrCat(options.dir, ": cannot create the event log directory: ", ec.message()));
  }
  auto log = std::unique_ptr<EventLog>(new EventLog(std::move(options)));
  VIGIL_ASSIGN_OR_RETURN(std::vector<LogName> names,
                         ListNames(log->options_.dir, log->options_.prefix));
  int64_t max_seq = 0;
  for (const LogName& n : names) {
    max_seq = std::max(max_seq, n.seq);
    log->last_name_ms_ = std::max(log->last_name_ms_, n.time_ms);
  }
  // Only the seq of the last file by name matters for the order; the
  // largest one anywhere keeps seqs unique too.
  log->next_seq_ = (max_seq + 1) % kSeqModulus;
  VIGIL_RETURN_IF_ERROR(log->OpenNextFile(log->options_.now_ms()));
  return log;
}

absl::Status EventLog::OpenNextFile(int64_t now_ms) {
  // Never earlier than a name already written: names must sort in write order.
  const int64_t t = std::max(now_ms, last_name_ms_);
  const std::string time = NameTime(t);
  for (int attempt = 0; attempt < kMaxOpenAttempts; ++attempt) {
    char seq[16];
    std::snprintf(seq, sizeof seq, "%06lld", static_cast<long long>(next_seq_));
    std::string path = StrCat(options_.dir, "/", options_.prefix, "-", time, "-", seq, ".jsonl");
    next_seq_ = (next_seq_ + 1) % kSeqModulus;
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) {
      const int err = errno;
      if (err == EEXIST) continue;  // another writer took this name: the next seq
      return Fail(
          ErrnoStatus(err, StrCat(path, ": cannot create the event log file: ", strerror(err))));
    }
    fd_ = fd;
    path_ = std::move(path);
    file_bytes_ = 0;
    file_written_ = 0;
    file_time_ms_ = t;
    last_name_ms_ = t;
    return absl::OkStatus();
  }
  return Fail(absl::UnavailableError(StrCat(options_.dir, ": ", kMaxOpenAttempts,
                                            " event log file names in a row already exist")));
}

absl::Status EventLog::Fail(absl::Status st) {
  if (status_.ok()) status_ = st;
  return st;
}

absl::Status EventLog::WriteBuffer() {
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t r = write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int err = r < 0 ? errno : EIO;
      // Leave whole lines only: a reader must not see half an event.
      if (ftruncate(fd_, file_written_) != 0) {
        // Nothing more to do: the error below already stops the log.
      }
      buffer_.clear();
      return Fail(
          absl::UnavailableError(StrCat(path_, ": cannot write the event log: ", strerror(err))));
    }
    done += static_cast<size_t>(r);
  }
  file_written_ += static_cast<int64_t>(buffer_.size());
  buffer_.clear();
  return absl::OkStatus();
}

absl::Status EventLog::CloseFile() {
  absl::Status st = WriteBuffer();
  if (::close(fd_) != 0 && st.ok()) {
    const int err = errno;
    st = Fail(absl::UnavailableError(
        StrCat(path_, ": cannot close the event log file: ", strerror(err))));
  }
  fd_ = -1;
  return st;
}

absl::Status EventLog::Append(std::string_view line) {
  if (!status_.ok()) return status_;
  if (closed_) return absl::FailedPreconditionError("event log: Append after Close");
  if (line.find('\n') != std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat("event log: a line holds a newline at byte ",
                                             line.find('\n'),
                                             " (the caller minifies each event to one line)"));
  }
  const int64_t need = static_cast<int64_t>(line.size()) + 1;
  bool rotate = file_bytes_ > 0 && file_bytes_ + need > options_.rotate_bytes;
  int64_t now = 0;
  if (options_.rotate_daily || rotate) {
    now = options_.now_ms();
    // Strictly later: a clock stepping back does not start a file per line.
    if (core::DayStart(now) > core::DayStart(file_time_ms_)) rotate = true;
  }
  if (rotate) {
    VIGIL_RETURN_IF_ERROR(CloseFile());
    VIGIL_RETURN_IF_ERROR(OpenNextFile(now));
  }
  buffer_.append(line);
  buffer_.push_back('\n');
  file_bytes_ += need;
  bytes_written_ += need;
  if (buffer_.size() >= options_.buffer_bytes) return WriteBuffer();
  return absl::OkStatus();
}

absl::Status EventLog::Flush() {
  if (!status_.ok()) return status_;
  if (closed_) return absl::FailedPreconditionError("event log: Flush after Close");
  return WriteBuffer();
}

absl::Status EventLog::Close() {
  if (closed_) return status_;
  closed_ = true;
  absl::Status st = status_;
  if (fd_ >= 0) {
    if (status_.ok()) {
      st = CloseFile();
    } else {
      ::close(fd_);
      fd_ = -1;
    }
  }
  path_.clear();
  return st;
}

std::string EventLog::current_path() const { return path_; }

std::vector<std::string> EventLog::Files() const {
  auto files = ListEventLogFiles(options_.dir, options_.prefix);
  return files.ok() ? *std::move(files) : std::vector<std::string>{};
}

}  // namespace vigil::event
