#include "event/dead_letter.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "core/strings.h"
#include "core/time.h"
#include "nlohmann/json.hpp"
#include "simdjson.h"

namespace vigil::event {

std::string RejectionToJson(const Rejection& r) {
  nlohmann::ordered_json j;
  // With several input files (a rotated event log), the line alone is
  // ambiguous.
  if (!r.file.empty()) j["file"] = r.file;
  // A server's rejections: when (its record_no counts that run's requests).
  if (r.received_ms != 0) j["received"] = core::FormatTimestamp(r.received_ms);
  j["record_no"] = r.record_no;
  j["line"] = r.line_no;
  j["event_id"] = r.event_id.empty() ? nlohmann::ordered_json(nullptr)
                                     : nlohmann::ordered_json(r.event_id);
  const Violation* first = r.violations.empty() ? nullptr : &r.violations[0];
  j["field"] = first && !first->field.empty() ? nlohmann::ordered_json(first->field)
                                              : nlohmann::ordered_json(nullptr);
  j["rule"] = first ? RuleName(first->rule) : "unknown";
  j["value"] = first ? first->value : "";
  j["reason"] = first ? first->reason : "";
  j["raw"] = r.raw;
  if (r.violations.size() > 1) {
    auto& arr = j["violations"] = nlohmann::ordered_json::array();
    for (const Violation& v : r.violations) {
      arr.push_back({{"field", v.field.empty() ? nlohmann::ordered_json(nullptr)
                                               : nlohmann::ordered_json(v.field)},
                     {"rule", RuleName(v.rule)},
                     {"value", v.value},
                     {"reason", v.reason}});
    }
  }
  if (r.raw_truncated) {
    j["raw_truncated"] = true;
    j["raw_bytes"] = r.raw_bytes;
  }
  if (!simdjson::validate_utf8(r.raw.data(), r.raw.size())) {
    // The text keeps a readable form; the bytes are kept exactly here.
    j["raw_base64"] = absl::Base64Escape(r.raw);
  }
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

absl::StatusOr<std::unique_ptr<DeadLetterWriter>> DeadLetterWriter::Open(const std::string& path, Mode mode) {
  if (path == "-") return std::unique_ptr<DeadLetterWriter>(new DeadLetterWriter(STDOUT_FILENO, path));
  const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (mode == Mode::kAppend ? O_APPEND : O_TRUNC);
  const int fd = ::open(path.c_str(), flags, 0640);  // 0640: rejected events are raw input
  if (fd < 0) {
    return absl::InvalidArgumentError(StrCat(path, ": cannot ", mode == Mode::kAppend ? "open" : "create",
                                             " dead-letter file: ", strerror(errno)));
  }
  return std::unique_ptr<DeadLetterWriter>(new DeadLetterWriter(fd, path));
}

DeadLetterWriter::~DeadLetterWriter() { (void)Close(); }

absl::Status DeadLetterWriter::Write(const Rejection& r) {
  buffer_ += RejectionToJson(r);
  buffer_ += '\n';
  ++buffered_;
  return buffer_.size() >= (64 << 10) ? Flush() : absl::OkStatus();
}

absl::Status DeadLetterWriter::Flush() {
  if (fd_ < 0 || buffer_.empty()) return absl::OkStatus();
  // Where the file ends now, to cut a failed write back to (a file only:
  // standard output may be a pipe).
  struct stat st;
  const off_t end = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) ? st.st_size : -1;
  size_t done = 0;
  while (done < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      // Whole lines only, so that the next rejection does not start inside
      // half of one (nor, without O_APPEND, after a hole where it was).
      if (done > 0 && end >= 0 && ::ftruncate(fd_, end) == 0) (void)::lseek(fd_, end, SEEK_SET);
      dropped_.fetch_add(buffered_, std::memory_order_relaxed);
      buffer_.clear();
      buffered_ = 0;
      return absl::DataLossError(StrCat(path_, ": write failed: ", strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  written_.fetch_add(buffered_, std::memory_order_relaxed);
  buffer_.clear();
  buffered_ = 0;
  return absl::OkStatus();
}

absl::Status DeadLetterWriter::Close() {
  if (fd_ < 0) return absl::OkStatus();
  absl::Status st = Flush();
  if (fd_ != STDOUT_FILENO && ::close(fd_) != 0 && st.ok()) {
    st = absl::DataLossError(StrCat(path_, ": write failed: ", strerror(errno)));
  }
  fd_ = -1;
  return st;
}

}  // namespace vigil::event
