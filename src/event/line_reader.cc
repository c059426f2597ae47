#include "event/line_reader.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "core/strings.h"

namespace vigil::event {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to n bytes; 0 at the end.
  virtual absl::StatusOr<size_t> Read(char* dst, size_t n) = 0;
};

namespace {

class FdSource : public ByteSource {
 public:
  FdSource(int fd, bool own, std::string name) : fd_(fd), own_(own), name_(std::move(name)) {}
  ~FdSource() override {
    if (own_) close(fd_);
  }
  absl::StatusOr<size_t> Read(char* dst, size_t n) override {
    if (!pushed_back_.empty()) {
      const size_t k = std::min(n, pushed_back_.size() - pb_pos_);
      std::memcpy(dst, pushed_back_.data() + pb_pos_, k);
      pb_pos_ += k;
      if (pb_pos_ == pushed_back_.size()) pushed_back_.clear();
      return k;
    }
    while (true) {
      const ssize_t r = read(fd_, dst, n);
      if (r >= 0) return static_cast<size_t>(r);
      if (errno == EINTR) continue;
      return absl::DataLossError(StrCat(name_, ": read error: ", strerror(errno)));
    }
  }
  // Reads up to n bytes and keeps them to be returned again by Read.
  absl::StatusOr<std::string_view> Peek(size_t n) {
    std::string buf(n, '\0');
    size_t got = 0;
    while (got < n) {
      VIGIL_ASSIGN_OR_RETURN(size_t r, Read(buf.data() + got, n - got));
      if (r == 0) break;
      got += r;
    }
    buf.resize(got);
    pushed_back_ = std::move(buf);
    pb_pos_ = 0;
    return std::string_view(pushed_back_);
  }
  const std::string& name() const { return name_; }

 private:
  int fd_;
  bool own_;
  std::string name_;
  std::string pushed_back_;
  size_t pb_pos_ = 0;
};

// Inflates gzip (also concatenated members) on its own thread, handing over
// chunks through a small bounded queue.
class InflateSource : public ByteSource {
 public:
  InflateSource(std::unique_ptr<ByteSource> in, std::string name)
      : in_(std::move(in)), name_(std::move(name)) {
    worker_ = std::thread([this] { Run(); });
  }
  ~InflateSource() override {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }
  absl::StatusOr<size_t> Read(char* dst, size_t n) override {
    while (cur_pos_ == cur_.size()) {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return !queue_.empty() || done_; });
      if (queue_.empty()) {
        if (!error_.ok()) return error_;
        return 0;
      }
      cur_ = std::move(queue_.front());
      queue_.pop_front();
      cur_pos_ = 0;
      cv_.notify_all();
    }
    const size_t k = std::min(n, cur_.size() - cur_pos_);
    std::memcpy(dst, cur_.data() + cur_pos_, k);
    cur_pos_ += k;
    return k;
  }

 private:
  static constexpr size_t kChunk = 1 << 18;
  static constexpr size_t kQueue = 8;

  void Push(std::vector<char> chunk) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return queue_.size() < kQueue || stop_; });
    queue_.push_back(std::move(chunk));
    cv_.notify_all();
  }
  void Finish(absl::Status st) {
    std::lock_guard<std::mutex> l(mu_);
    error_ = std::move(st);
    done_ = true;
    cv_.notify_all();
  }
  bool Stopped() {
    std::lock_guard<std::mutex> l(mu_);
    return stop_;
  }
  void Run() {
    z_stream zs{};
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
      Finish(absl::InternalError("zlib: inflateInit2 failed"));
      return;
    }
    std::vector<char> in(kChunk);
    std::vector<char> out(kChunk);
    bool in_member = false;
    absl::Status st;
    while (!Stopped()) {
      if (zs.avail_in == 0) {
        auto r = in_->Read(in.data(), in.size());
        if (!r.ok()) {
          st = r.status();
          break;
        }
        if (*r == 0) {
          if (in_member) st = absl::DataLossError(StrCat(name_, ": gzip data is truncated"));
          break;
        }
        zs.next_in = reinterpret_cast<Bytef*>(in.data());
        zs.avail_in = static_cast<uInt>(*r);
      }
      zs.next_out = reinterpret_cast<Bytef*>(out.data());
      zs.avail_out = static_cast<uInt>(out.size());
      in_member = true;
      const int rc = inflate(&zs, Z_NO_FLUSH);
      const size_t produced = out.size() - zs.avail_out;
      if (produced > 0) {
        Push(std::vector<char>(out.begin(), out.begin() + static_cast<ptrdiff_t>(produced)));
      }
      if (rc == Z_STREAM_END) {
        in_member = false;
        inflateReset(&zs);  // a following gzip member, if any
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        st = absl::DataLossError(StrCat(name_, ": corrupt gzip data (",
                                              zs.msg ? zs.msg : "zlib error", ")"));
        break;
      }
    }
    inflateEnd(&zs);
    Finish(std::move(st));
  }

  std::unique_ptr<ByteSource> in_;
  std::string name_;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<char>> queue_;
  bool done_ = false;
  bool stop_ = false;
  absl::Status error_;
  std::vector<char> cur_;
  size_t cur_pos_ = 0;
};

class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data) : data_(std::move(data)) {}
  absl::StatusOr<size_t> Read(char* dst, size_t n) override {
    const size_t k = std::min(n, data_.size() - pos_);
    std::memcpy(dst, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }

 private:
  std::string data_;
  size_t pos_ = 0;
};

}  // namespace

std::unique_ptr<LineReader> LineReader::FromString(std::string data,
                                                   const LineReaderOptions& options) {
  const bool gz = data.size() >= 2 && static_cast<uint8_t>(data[0]) == 0x1f &&
                  static_cast<uint8_t>(data[1]) == 0x8b;
  const size_t n = data.size();
  std::unique_ptr<ByteSource> src = std::make_unique<StringSource>(std::move(data));
  if (gz) src = std::make_unique<InflateSource>(std::move(src), "<memory>");
  return std::unique_ptr<LineReader>(new LineReader(std::move(src), options, gz, n + 1));
}

absl::StatusOr<std::unique_ptr<LineReader>> LineReader::Open(const std::string& path,
                                                             const LineReaderOptions& options) {
  int fd = 0;
  bool own = false;
  if (path != "-") {
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      const std::string msg = StrCat(path, ": cannot open: ", strerror(err));
      if (err == ENOENT) return absl::NotFoundError(msg);
      if (err == EACCES) return absl::PermissionDeniedError(msg);
      return absl::InvalidArgumentError(msg);
    }
    own = true;
  }
  auto fds = std::make_unique<FdSource>(fd, own, path == "-" ? "<stdin>" : path);
  VIGIL_ASSIGN_OR_RETURN(std::string_view magic, fds->Peek(2));
  const bool gz = magic.size() == 2 && static_cast<uint8_t>(magic[0]) == 0x1f &&
                  static_cast<uint8_t>(magic[1]) == 0x8b;
  std::unique_ptr<ByteSource> src;
  if (gz) {
    const std::string name = fds->name();
    src = std::make_unique<InflateSource>(std::move(fds), name);
  } else {
    src = std::move(fds);
  }
  return std::unique_ptr<LineReader>(new LineReader(std::move(src), options, gz, SIZE_MAX));
}

LineReader::LineReader(std::unique_ptr<ByteSource> src, const LineReaderOptions& options, bool gzip,
                       size_t size_hint)
    : src_(std::move(src)), options_(options), gzip_(gzip) {
  // Room for two whole records, and big enough reads for throughput; less
  // for small in-memory inputs.
  cap_ = std::max<size_t>(std::min<size_t>(1 << 20, size_hint), 2 * options_.max_record_bytes + 4096);
  buf_ = std::make_unique<char[]>(cap_ + kReadPadding);
  std::memset(buf_.get(), 0, std::min<size_t>(cap_, 4096) + kReadPadding);
}

LineReader::~LineReader() = default;

bool LineReader::Fill() {
  if (eof_) return false;
  peek_k_ = 0;  // its offsets move
  if (begin_ > 0) {
    std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == cap_) return true;  // full: the caller handles the long record
  auto r = src_->Read(buf_.get() + end_, cap_ - end_);
  if (!r.ok()) {
    status_ = r.status();
    eof_ = true;
    return false;
  }
  if (*r == 0) {
    eof_ = true;
    return false;
  }
  end_ += *r;
  bytes_read_ += static_cast<int64_t>(*r);
  // simdjson reads (and ignores) padding past a record: keep it initialised.
  std::memset(buf_.get() + end_, 0, std::min(kReadPadding, cap_ + kReadPadding - end_));
  return true;
}

std::string_view LineReader::Peek(size_t n) {
  while (end_ - begin_ < n && Fill()) {
  }
  return std::string_view(buf_.get() + begin_, std::min(n, end_ - begin_));
}

std::string_view LineReader::PeekLine(size_t k) {
  if (k == 0 || k >= peek_.size()) return {};
  const char* const base = buf_.get();
  // The start of the line after the one starting at `at` (end_ when its
  // newline is not buffered yet).
  auto after = [&](size_t at) {
    const char* nl =
        at < end_ ? static_cast<const char*>(std::memchr(base + at, '\n', end_ - at)) : nullptr;
    return nl ? static_cast<size_t>(nl - base) + 1 : end_;
  };
  if (k == peek_k_ && begin_ == peek_[1] && peek_[k] < end_) {
    // Called once per Next with the same k, as read-ahead does: one line
    // on from the last call, so one new line to find.
    std::copy(peek_.begin() + 1, peek_.begin() + static_cast<ptrdiff_t>(k) + 1, peek_.begin());
    peek_[k] = after(peek_[k - 1]);
  } else {
    peek_[0] = begin_;
    for (size_t i = 1; i <= k; ++i) peek_[i] = after(peek_[i - 1]);
    peek_k_ = k;
  }
  // Whole only when its newline is buffered (not the last line before EOF).
  if (peek_[k] == end_ && (end_ == 0 || base[end_ - 1] != '\n')) return {};
  const size_t at = peek_[k - 1];
  if (peek_[k] <= at) return {};
  size_t len = peek_[k] - 1 - at;
  if (len > 0 && base[at + len - 1] == '\r') --len;
  return std::string_view(base + at, len);
}

bool LineReader::Next(Line* line) {
  size_t scan = begin_;  // where to look for the next newline
  int quotes = 0;        // parity of quotes seen in this record (CSV)
  int64_t newlines = 0;  // newlines inside the record (quoted)
  while (true) {
    const size_t max = options_.max_record_bytes;
    const char* base = buf_.get();
    const char* nl = static_cast<const char*>(std::memchr(base + scan, '\n', end_ - scan));
    if (nl && options_.csv_quotes) {
      for (const char* q = base + scan; (q = static_cast<const char*>(
                                             std::memchr(q, '"', static_cast<size_t>(nl - q))));
           ++q) {
        quotes ^= 1;
      }
      if (quotes) {  // the newline is inside a quoted value
        ++newlines;
        scan = static_cast<size_t>(nl - base) + 1;
        if (scan - begin_ <= max) continue;
        nl = nullptr;  // too long: fall through to the truncation below
      }
    }
    if (nl || (eof_ && begin_ < end_)) {
      const size_t stop = nl ? static_cast<size_t>(nl - base) : end_;
      size_t len = stop - begin_;
      line->line_no = line_no_ + 1;
      line_no_ += 1 + newlines;
      line->truncated = len > max;
      line->full_size = len;
      if (line->truncated) len = max;
      if (!line->truncated && len > 0 && base[begin_ + len - 1] == '\r') --len;
      line->text = std::string_view(base + begin_, len);
      line->readable = cap_ + kReadPadding - begin_;
      begin_ = nl ? stop + 1 : end_;
      return true;
    }
    if (eof_) return false;
    if (end_ - begin_ > max) {
      // A record longer than the limit: hand out its head, then skip the rest
      // of it without buffering.
      line->line_no = line_no_ + 1;
      line->truncated = true;
      line->text = std::string_view(base + begin_, max);
      line->readable = cap_ + kReadPadding - begin_;
      size_t skipped = end_ - begin_;
      // Keep the head readable: move it to the front, then read past it.
      peek_k_ = 0;
      std::memmove(buf_.get(), base + begin_, max);
      begin_ = end_ = max;
      while (true) {
        auto r = src_->Read(buf_.get() + max, cap_ - max);
        if (!r.ok()) {
          status_ = r.status();
          eof_ = true;
          break;
        }
        if (*r == 0) {
          eof_ = true;
          break;
        }
        bytes_read_ += static_cast<int64_t>(*r);
        const char* p = buf_.get() + max;
        const char* q = static_cast<const char*>(std::memchr(p, '\n', *r));
        if (q) {
          skipped += static_cast<size_t>(q - p);
          // Keep what follows the newline for the next record.
          const size_t rest = *r - static_cast<size_t>(q - p) - 1;
          std::memmove(buf_.get() + max, q + 1, rest);
          end_ = max + rest;
          break;
        }
        skipped += *r;
      }
      line_no_ += 1 + newlines;
      line->full_size = skipped;
      line->text = std::string_view(buf_.get(), max);
      line->readable = cap_ + kReadPadding;
      return true;
    }
    const size_t consumed = scan - begin_;
    if (!Fill()) {
      if (!status_.ok()) return false;
      scan = begin_ + consumed;
      continue;  // eof_: the loop returns the last line without a newline
    }
    scan = begin_ + consumed;
  }
}

}  // namespace vigil::event
