#include "event/event_log.h"

#include <dirent.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>

#include "absl/strings/escaping.h"
#include "core/file.h"
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

bool IsEventLogFile(std::string_view path, std::string_view prefix) {
  const size_t slash = path.rfind('/');
  int64_t time_ms = 0, seq = 0;
  return ParseLogName(slash == std::string_view::npos ? path : path.substr(slash + 1), prefix,
                      &time_ms, &seq);
}

absl::StatusOr<std::vector<std::string>> ListEventLogFiles(const std::string& dir,
                                                           const std::string& prefix) {
  VIGIL_ASSIGN_OR_RETURN(std::vector<LogName> names, ListNames(dir, prefix));
  std::vector<std::string> out;
  out.reserve(names.size());
  for (const LogName& n : names) out.push_back(StrCat(dir, "/", n.name));
  return out;
}

// Syncs the log's files on a thread of its own. It owns a duplicate of each
// file's descriptor, handed over when the file is opened (Current): every
// interval it syncs the current file, and syncs and closes the files
// rotated away since. The writer only swaps descriptors under mu_; it never
// waits for a sync.
class EventLog::Syncer {
 public:
  explicit Syncer(int64_t interval_ms) : interval_(interval_ms), thread_([this] { Run(); }) {}
  ~Syncer() { Stop().IgnoreError(); }

  // The file now being written (a descriptor this takes), and its path.
  void Current(int fd, std::string path) {
    std::lock_guard<std::mutex> lock(mu_);
    if (current_.fd >= 0) retired_.push_back(std::move(current_));
    current_ = File{fd, std::move(path)};
  }
  // Syncs and closes everything, stops the thread; the first error.
  absl::Status Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopped_) return error_;
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    return error_;
  }
  // The first failed sync, or OK. Read on every Flush (every event): only
  // an atomic load until a sync has failed.
  absl::Status error() const {
    if (!failed_.load(std::memory_order_acquire)) return absl::OkStatus();
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  int64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }

 private:
  struct File {
    int fd = -1;
    std::string path;
  };

  void Sync(const File& f) {
    if (fdatasync(f.fd) == 0) {
      syncs_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const int err = errno;
    std::lock_guard<std::mutex> lock(mu_);
    if (error_.ok()) {
      error_ = absl::DataLossError(StrCat(f.path, ": cannot sync the event log to disk: ", strerror(err)));
      failed_.store(true, std::memory_order_release);
    }
  }

  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait_for(lock, std::chrono::milliseconds(interval_), [this] { return stop_; });
      const bool stopping = stop_;
      std::vector<File> retired;
      retired.swap(retired_);
      File current = current_;  // stays open: only this thread closes
      if (stopping) current_ = File{};
      lock.unlock();
      for (const File& f : retired) {
        Sync(f);
        ::close(f.fd);
      }
      if (current.fd >= 0) Sync(current);
      if (stopping && current.fd >= 0) ::close(current.fd);
      lock.lock();
      if (stopping) return;
    }
  }

  const int64_t interval_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  File current_;                // guarded by mu_
  std::vector<File> retired_;   // guarded by mu_
  bool stop_ = false;           // guarded by mu_
  bool stopped_ = false;        // guarded by mu_
  absl::Status error_;          // guarded by mu_: the first failed sync
  std::atomic<int64_t> syncs_{0};
  std::atomic<bool> failed_{false};  // error_ is set
  std::thread thread_;  // last: starts once the rest is built
};

int64_t EventLog::syncs() const { return syncer_ ? syncer_->syncs() : 0; }

EventLog::EventLog(EventLogOptions options) : options_(std::move(options)) {
  if (!options_.now_ms) options_.now_ms = [] { return core::WallNowMs(); };
}

EventLog::~EventLog() { Close().IgnoreError(); }  // (the lock too, an Open's that failed)

absl::StatusOr<int> LockEventLogDir(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return ErrnoStatus(ec.value(),
                       StrCat(dir, ": cannot create the event log directory: ", ec.message()));
  }
  // One writer per log: two servers on one folder would interleave their
  // events in one stream that neither saw (and each save a state of half).
  // The lock is on the folder itself: no file to create (and no inode to
  // find on a full disk), nothing left behind.
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return ErrnoStatus(err, StrCat(dir, ": cannot open the event log directory: ", strerror(err)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(StrCat("event log ", dir,
                                                  ": in use by another process (it holds the "
                                                  "folder's lock); each server needs an event log "
                                                  "folder of its own"));
    }
    return ErrnoStatus(err, StrCat(dir, ": cannot lock the event log directory: ", strerror(err)));
  }
  return fd;
}

absl::StatusOr<std::string> EventLogId(const std::string& dir) {
  const std::string path = dir + "/.log-id";
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    VIGIL_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path));
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    const bool hex = text.size() == 32 && std::all_of(text.begin(), text.end(), [](char c) {
                       return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                     });
    if (!hex) {
      return absl::DataLossError(
          StrCat(path,
                 ": not an event log id (32 lowercase hex digits); "
                 "remove it to make a new one (a saved state then goes unused)"));
    }
    return text;
  }
  // (Random as API keys and the pii key are: OpenSSL's generator.)
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return absl::InternalError(StrCat(path, ": no random bytes for a new log id (RAND_bytes)"));
  }
  const std::string id =
      absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), sizeof bytes));
  VIGIL_RETURN_IF_ERROR(core::WriteFileAtomic(path, id + "\n"));
  return id;
}

absl::StatusOr<std::unique_ptr<EventLog>> EventLog::Open(EventLogOptions options) {
  // An adopted lock is this call's to close, whatever happens.
  auto log = std::unique_ptr<EventLog>(new EventLog(options));
  log->lock_fd_ = options.dir_lock_fd;
  if (options.dir.empty()) return absl::InvalidArgumentError("event log: no directory given");
  if (options.prefix.empty() || options.prefix.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(StrCat("event log: the prefix \"", options.prefix,
                                             "\" must be a non-empty file name part"));
  }
  if (options.rotate_bytes <= 0) {
    return absl::InvalidArgumentError(
        StrCat("event log: rotate_bytes must be positive, not ", options.rotate_bytes));
  }
  if (options.sync_interval_ms < 0) {
    return absl::InvalidArgumentError(
        StrCat("event log: sync_interval_ms must be >= 0, not ", options.sync_interval_ms));
  }
  // (The folder is created by LockEventLogDir, here or by whoever handed
  // its lock over.)
  if (log->lock_fd_ < 0) {
    VIGIL_ASSIGN_OR_RETURN(log->lock_fd_, LockEventLogDir(log->options_.dir));
  }
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
  if (log->options_.sync_interval_ms > 0) log->syncer_ = std::make_unique<Syncer>(log->options_.sync_interval_ms);
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
      absl::Status st = ErrnoStatus(err, StrCat(path, ": cannot create the event log file: ", strerror(err)));
      // No room for a file (a full disk, a quota): the next Append tries
      // again. Anything else stops the log.
      return err == ENOSPC || err == EDQUOT ? st : Fail(st);
    }
    if (syncer_) {
      const int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
      if (dup < 0) {
        const int err = errno;
        ::close(fd);
        return Fail(ErrnoStatus(err, StrCat(path, ": cannot keep the event log file for syncing: ", strerror(err))));
      }
      syncer_->Current(dup, path);
    }
    fd_ = fd;
    path_ = std::move(path);
    rotate_next_ = false;
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
      // Leave whole lines only: a reader must not see half an event. The
      // lines of the buffer are not in the log: not counted either. (The
      // file is not O_APPEND: the next write goes where the cut is.)
      const bool cut = ftruncate(fd_, file_written_) == 0 && lseek(fd_, file_written_, SEEK_SET) == file_written_;
      const auto dropped = static_cast<int64_t>(buffer_.size());
      file_bytes_ -= dropped;
      bytes_written_ -= dropped;
      buffer_.clear();
      absl::Status st = absl::UnavailableError(StrCat(path_, ": cannot write the event log: ", strerror(err)));
      // Out of space (a full disk, a quota, a file size limit): the file is
      // whole again and a later write may succeed once there is room. Any
      // other error, or a file that could not be cut back, stops the log.
      const bool no_room = err == ENOSPC || err == EDQUOT || err == EFBIG;
      // A file size limit does not go away: the next line starts a file
      // (unless this one is empty: a line longer than the limit fits none).
      if (err == EFBIG && file_written_ > 0) rotate_next_ = true;
      return cut && no_room ? st : Fail(st);
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
  if (fd_ < 0) {
    // The last file could not be created for want of room: again.
    VIGIL_RETURN_IF_ERROR(OpenNextFile(options_.now_ms()));
  }
  bool rotate = rotate_next_ || (file_bytes_ > 0 && file_bytes_ + need > options_.rotate_bytes);
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
  if (syncer_) {
    if (absl::Status st = syncer_->error(); !st.ok()) return Fail(st);
  }
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
  if (syncer_) {
    absl::Status synced = syncer_->Stop();
    if (st.ok() && !synced.ok()) st = Fail(synced);
  }
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock: another may write the log now
  lock_fd_ = -1;
  return st;
}

std::string EventLog::current_path() const { return path_; }

std::vector<std::string> EventLog::Files() const {
  auto files = ListEventLogFiles(options_.dir, options_.prefix);
  return files.ok() ? *std::move(files) : std::vector<std::string>{};
}

}  // namespace vigil::event
