#include "store/journal.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/escaping.h"
#include "core/hash.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"

namespace vigil::store {
namespace {

using Json = nlohmann::ordered_json;

absl::Status IoError(std::string_view file, std::string_view what, int err) {
  return absl::UnavailableError(StrCat(file, ": ", what, ": ", std::strerror(err)));
}

// RFC 3629 UTF-8, as nlohmann::json checks it when it dumps a string.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    const bool overlong =
        (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

void PutString(Json& j, const char* name, const std::string& v) {
  if (IsValidUtf8(v)) {
    j[name] = v;
  } else {
    j[StrCat(name, "_base64")] = absl::Base64Escape(v);
  }
}

absl::Status GetString(const Json& j, const char* name, std::string* out) {
  if (auto it = j.find(name); it != j.end()) {
    if (!it->is_string())
      return absl::InvalidArgumentError(StrCat("field '", name, "' is not a string"));
    *out = it->get_ref<const std::string&>();
    return absl::OkStatus();
  }
  const std::string b64 = StrCat(name, "_base64");
  if (auto it = j.find(b64); it != j.end()) {
    if (!it->is_string() || !absl::Base64Unescape(it->get_ref<const std::string&>(), out)) {
      return absl::InvalidArgumentError(StrCat("field '", b64, "' is not base64"));
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(StrCat("missing field '", name, "'"));
}

absl::Status GetInt(const Json& j, const char* name, int64_t* out) {
  auto it = j.find(name);
  if (it == j.end()) return absl::InvalidArgumentError(StrCat("missing field '", name, "'"));
  if (it->is_number_unsigned()) {
    const uint64_t u = it->get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(StrCat("field '", name, "' is out of range"));
    }
    *out = static_cast<int64_t>(u);
    return absl::OkStatus();
  }
  if (!it->is_number_integer())
    return absl::InvalidArgumentError(StrCat("field '", name, "' is not an integer"));
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetNumber(const Json& j, const char* name, double* out) {
  auto it = j.find(name);
  if (it == j.end()) return absl::InvalidArgumentError(StrCat("missing field '", name, "'"));
  if (it->is_null()) {
    *out = std::numeric_limits<double>::quiet_NaN();
  } else if (it->is_number()) {
    *out = it->get<double>();
  } else {
    return absl::InvalidArgumentError(StrCat("field '", name, "' is not a number or null"));
  }
  return absl::OkStatus();
}

absl::StatusOr<DecisionRow> DecodeObject(const Json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("not a JSON object");
  DecisionRow r;
  VIGIL_RETURN_IF_ERROR(GetString(j, "event_id", &r.event_id));
  VIGIL_RETURN_IF_ERROR(GetInt(j, "event_time_ms", &r.event_time_ms));
  VIGIL_RETURN_IF_ERROR(GetString(j, "event_type", &r.event_type));
  VIGIL_RETURN_IF_ERROR(GetString(j, "action", &r.action));
  VIGIL_RETURN_IF_ERROR(GetNumber(j, "score", &r.score));
  VIGIL_RETURN_IF_ERROR(GetString(j, "model", &r.model));
  VIGIL_RETURN_IF_ERROR(GetString(j, "arm", &r.arm));
  VIGIL_RETURN_IF_ERROR(GetInt(j, "decided_at_ms", &r.decided_at_ms));
  VIGIL_RETURN_IF_ERROR(GetString(j, "json", &r.json));
  return r;
}

absl::StatusOr<LabelRow> DecodeLabel(const Json& j) {
  LabelRow r;
  VIGIL_RETURN_IF_ERROR(GetString(j, "label_id", &r.label_id));
  VIGIL_RETURN_IF_ERROR(GetString(j, "kind", &r.kind));
  VIGIL_RETURN_IF_ERROR(GetInt(j, "time_ms", &r.time_ms));
  VIGIL_RETURN_IF_ERROR(GetString(j, "target_event_id", &r.target_event_id));
  VIGIL_RETURN_IF_ERROR(GetString(j, "target_key", &r.target_key));
  VIGIL_RETURN_IF_ERROR(GetString(j, "target_value", &r.target_value));
  VIGIL_RETURN_IF_ERROR(GetNumber(j, "value", &r.value));
  VIGIL_RETURN_IF_ERROR(GetString(j, "json", &r.json));
  return r;
}

// A label's line has "label_id" (or "label_id_base64"); any other object is
// read as a decision.
bool IsLabelObject(const Json& j) {
  return j.is_object() && (j.contains("label_id") || j.contains("label_id_base64"));
}

// Parses one journal line: a decision into *decision, or a label into
// *label (then returns true).
absl::StatusOr<bool> DecodeLine(std::string_view line, DecisionRow* decision, LabelRow* label) {
  // parse() with allow_exceptions=false reports errors as a discarded
  // value; the catch is a net for anything else nlohmann might throw.
  try {
    const Json j = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError("not valid JSON");
    if (IsLabelObject(j)) {
      VIGIL_ASSIGN_OR_RETURN(*label, DecodeLabel(j));
      return true;
    }
    VIGIL_ASSIGN_OR_RETURN(*decision, DecodeObject(j));
    return false;
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
}

std::string Dump(const Json& j) {
  // Every string was checked by PutString, so `replace` never fires; it only
  // keeps dump() from throwing.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

absl::Status WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::Status(absl::StatusCode::kUnknown, std::strerror(errno));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

// Calls fn(offset, line) for every line of the file open as `fd`, from its
// start, without the newline; a last line without one is passed too. Stops
// at the first error fn returns.
template <typename Fn>
absl::Status ForEachLine(int fd, std::string_view name, Fn fn) {
  std::vector<char> chunk(1 << 20);
  std::string buf;       // bytes read and not yet handed out
  uint64_t buf_at = 0;   // file offset of buf[0]
  uint64_t read_at = 0;  // file offset of the next read
  size_t searched = 0;   // buf[0, searched) holds no newline
  while (true) {
    const ssize_t n = ::pread(fd, chunk.data(), chunk.size(), static_cast<off_t>(read_at));
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError(name, "read failed", errno);
    }
    if (n == 0) break;
    buf.append(chunk.data(), static_cast<size_t>(n));
    read_at += static_cast<uint64_t>(n);
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', std::max(start, searched))) != std::string::npos;
         start = nl + 1) {
      VIGIL_RETURN_IF_ERROR(fn(buf_at + start, std::string_view(buf).substr(start, nl - start)));
    }
    buf.erase(0, start);
    buf_at += start;
    searched = buf.size();
  }
  if (!buf.empty()) VIGIL_RETURN_IF_ERROR(fn(buf_at, std::string_view(buf)));
  return absl::OkStatus();
}

}  // namespace

std::string DecisionToJson(const DecisionRow& row) {
  Json j;
  PutString(j, "event_id", row.event_id);
  j["event_time_ms"] = row.event_time_ms;
  PutString(j, "event_type", row.event_type);
  PutString(j, "action", row.action);
  // JSON has no NaN or infinity; a score that is not finite reads back NaN.
  j["score"] = std::isfinite(row.score) ? Json(row.score) : Json(nullptr);
  PutString(j, "model", row.model);
  PutString(j, "arm", row.arm);
  j["decided_at_ms"] = row.decided_at_ms;
  PutString(j, "json", row.json);
  return Dump(j);
}

absl::StatusOr<DecisionRow> DecisionFromJson(std::string_view line) {
  DecisionRow decision;
  LabelRow label;
  VIGIL_ASSIGN_OR_RETURN(const bool is_label, DecodeLine(line, &decision, &label));
  if (is_label) return absl::InvalidArgumentError("a label, not a decision");
  return decision;
}

std::string LabelToJson(const LabelRow& row) {
  Json j;
  PutString(j, "label_id", row.label_id);
  PutString(j, "kind", row.kind);
  j["time_ms"] = row.time_ms;
  PutString(j, "target_event_id", row.target_event_id);
  PutString(j, "target_key", row.target_key);
  PutString(j, "target_value", row.target_value);
  j["value"] = std::isfinite(row.value) ? Json(row.value) : Json(nullptr);
  PutString(j, "json", row.json);
  return Dump(j);
}

absl::StatusOr<LabelRow> LabelFromJson(std::string_view line) {
  DecisionRow decision;
  LabelRow label;
  VIGIL_ASSIGN_OR_RETURN(const bool is_label, DecodeLine(line, &decision, &label));
  if (!is_label) return absl::InvalidArgumentError("a decision, not a label");
  return label;
}

Journal::Journal(std::string path)
    : path_(std::move(path)),
      replay_path_(path_ + ".replay"),
      bad_path_(path_ + ".bad"),
      lock_path_(path_ + ".lock") {}

Journal::~Journal() {
  if (active_.fd >= 0) ::close(active_.fd);
  if (replay_.fd >= 0) ::close(replay_.fd);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

absl::StatusOr<std::unique_ptr<Journal>> Journal::Open(std::string path) {
  if (path.empty()) return absl::InvalidArgumentError("journal path is empty");
  std::unique_ptr<Journal> j(new Journal(std::move(path)));

  j->lock_fd_ = ::open(j->lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (j->lock_fd_ < 0) return IoError(j->lock_path_, "cannot open journal lock", errno);
  if (::flock(j->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(StrCat(
          j->path_, ": journal is in use by another decision log (", j->lock_path_, " is locked)"));
    }
    return IoError(j->lock_path_, "cannot lock journal", errno);
  }

  j->replay_.fd = ::open(j->replay_path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (j->replay_.fd < 0 && errno != ENOENT) return IoError(j->replay_path_, "cannot open", errno);
  if (j->replay_.fd >= 0) VIGIL_RETURN_IF_ERROR(j->Scan(j->replay_path_, &j->replay_));

  j->active_.fd = ::open(j->path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (j->active_.fd < 0) return IoError(j->path_, "cannot open journal", errno);
  VIGIL_RETURN_IF_ERROR(j->Scan(j->path_, &j->active_));
  if (j->active_.size > 0) {
    char last = 0;
    if (::pread(j->active_.fd, &last, 1, static_cast<off_t>(j->active_.size - 1)) != 1) {
      return IoError(j->path_, "read failed", errno);
    }
    if (last != '\n') {
      if (absl::Status st = WriteAll(j->active_.fd, "\n"); !st.ok()) {
        return absl::UnavailableError(
            StrCat(j->path_, ": cannot append to the journal: ", st.message()));
      }
      ++j->active_.size;
    }
  }
  j->pending_ = j->active_.lines + j->replay_.lines;
  return j;
}

absl::Status Journal::Scan(const std::string& path, File* f) {
  struct stat st;
  if (::fstat(f->fd, &st) != 0) return IoError(path, "stat failed", errno);
  // Lines past the size taken here cannot exist: the journal is locked.
  f->size = st.st_size;
  DecisionRow decision;
  LabelRow label;
  return ForEachLine(f->fd, path, [&](uint64_t offset, std::string_view line) {
    if (line.empty()) return absl::OkStatus();
    ++f->lines;
    // A bad line is counted (it is pending until a replay sets it aside)
    // but cannot be found.
    const absl::StatusOr<bool> is_label = DecodeLine(line, &decision, &label);
    const Loc loc{offset, line.size()};
    if (!is_label.ok()) return absl::OkStatus();
    if (!*is_label) {
      f->index[core::Hash64(decision.event_id)] = loc;
    } else if (!label.target_event_id.empty()) {
      f->labels[core::Hash64(label.target_event_id)].push_back(loc);
    }
    return absl::OkStatus();
  });
}

absl::Status Journal::AppendLines(const std::string& buf, int64_t rows,
                                  absl::FunctionRef<void(uint64_t at)> index) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status st = WriteAll(active_.fd, buf); !st.ok()) {
    // Half a batch would be half a line: cut the file back to the last row.
    if (::ftruncate(active_.fd, static_cast<off_t>(active_.size)) != 0) {
      return absl::UnavailableError(
          StrCat(path_, ": cannot append to the journal: ", st.message(),
                 "; cutting it back also failed: ", std::strerror(errno)));
    }
    return absl::UnavailableError(StrCat(path_, ": cannot append to the journal: ", st.message()));
  }
  index(static_cast<uint64_t>(active_.size));
  active_.size += static_cast<int64_t>(buf.size());
  active_.lines += rows;
  pending_.fetch_add(rows, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status Journal::Append(std::span<const DecisionRow> rows) {
  if (rows.empty()) return absl::OkStatus();
  // Encoded before the lock, so concurrent appenders only queue for write(2).
  std::string buf;
  std::vector<std::pair<uint64_t, Loc>> locs;
  locs.reserve(rows.size());
  for (const DecisionRow& row : rows) {
    const std::string line = DecisionToJson(row);
    locs.push_back({core::Hash64(row.event_id), Loc{buf.size(), line.size()}});
    buf += line;
    buf += '\n';
  }
  return AppendLines(buf, static_cast<int64_t>(rows.size()), [&](uint64_t at) {
    for (const auto& [hash, loc] : locs) active_.index[hash] = Loc{at + loc.offset, loc.length};
  });
}

absl::Status Journal::Append(std::span<const LabelRow> rows) {
  if (rows.empty()) return absl::OkStatus();
  std::string buf;
  std::vector<std::pair<uint64_t, Loc>> locs;
  for (const LabelRow& row : rows) {
    const std::string line = LabelToJson(row);
    if (!row.target_event_id.empty()) {
      locs.push_back({core::Hash64(row.target_event_id), Loc{buf.size(), line.size()}});
    }
    buf += line;
    buf += '\n';
  }
  return AppendLines(buf, static_cast<int64_t>(rows.size()), [&](uint64_t at) {
    for (const auto& [hash, loc] : locs) active_.labels[hash].push_back(Loc{at + loc.offset, loc.length});
  });
}

absl::StatusOr<bool> Journal::BeginReplay() {
  std::lock_guard<std::mutex> lock(mu_);
  if (replay_.fd >= 0) return true;
  if (active_.size == 0) return false;
  if (::rename(path_.c_str(), replay_path_.c_str()) != 0) {
    return IoError(path_, StrCat("cannot rename to ", replay_path_), errno);
  }
  const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    // Put the file back where appends go; the rows were never at risk.
    if (::rename(replay_path_.c_str(), path_.c_str()) != 0) {
      return IoError(path_,
                     StrCat("cannot open a new journal (", std::strerror(err), ") nor rename ",
                            replay_path_, " back"),
                     errno);
    }
    return IoError(path_, "cannot open a new journal", err);
  }
  replay_ = std::move(active_);
  active_ = File{};
  active_.fd = fd;
  return true;
}

absl::Status Journal::ReplayBatches(
    size_t batch_size, absl::FunctionRef<absl::Status(std::span<const DecisionRow>)> put,
    absl::FunctionRef<absl::Status(std::span<const LabelRow>)> put_labels) {
  int fd;
  {
    std::lock_guard<std::mutex> lock(mu_);
    fd = replay_.fd;
  }
  if (fd < 0) return absl::FailedPreconditionError(StrCat(replay_path_, ": no replay in progress"));
  struct Bad {
    int64_t line_no;
    std::string line;
    std::string reason;
  };
  // Set aside only once the whole file is stored, so that a replay redone
  // after a store error does not set a line aside twice.
  std::vector<Bad> bad;
  std::vector<DecisionRow> batch;
  std::vector<LabelRow> labels;
  DecisionRow decision;
  LabelRow label;
  int64_t line_no = 0;
  VIGIL_RETURN_IF_ERROR(ForEachLine(fd, replay_path_, [&](uint64_t, std::string_view line) {
    ++line_no;
    if (line.empty()) return absl::OkStatus();
    const absl::StatusOr<bool> is_label = DecodeLine(line, &decision, &label);
    if (!is_label.ok()) {
      bad.push_back(Bad{line_no, std::string(line), std::string(is_label.status().message())});
      return absl::OkStatus();
    }
    if (*is_label) {
      labels.push_back(std::move(label));
      if (labels.size() < batch_size) return absl::OkStatus();
      absl::Status st = put_labels(labels);
      labels.clear();
      return st;
    }
    batch.push_back(std::move(decision));
    if (batch.size() < batch_size) return absl::OkStatus();
    absl::Status st = put(batch);
    batch.clear();
    return st;
  }));
  if (!batch.empty()) VIGIL_RETURN_IF_ERROR(put(batch));
  if (!labels.empty()) VIGIL_RETURN_IF_ERROR(put_labels(labels));
  for (const Bad& b : bad) {
    VIGIL_RETURN_IF_ERROR(SetAside(
        b.line, StrCat(replay_path_, ":", b.line_no, ": neither a decision nor a label (", b.reason,
                       "); moved to ", bad_path_)));
  }
  return absl::OkStatus();
}

absl::Status Journal::SetAsideRow(const DecisionRow& row, std::string_view reason) {
  return SetAside(DecisionToJson(row),
                  StrCat("decision '", row.event_id, "' refused by the store (", reason,
                         "); moved to ", bad_path_));
}

absl::Status Journal::SetAsideRow(const LabelRow& row, std::string_view reason) {
  return SetAside(LabelToJson(row), StrCat("label '", row.label_id, "' refused by the store (",
                                           reason, "); moved to ", bad_path_));
}

absl::Status Journal::SetAside(std::string_view line, std::string why) {
  const int fd = ::open(bad_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return IoError(bad_path_, "cannot open", errno);
  absl::Status st = WriteAll(fd, StrCat(line, "\n"));
  ::close(fd);
  if (!st.ok()) return absl::UnavailableError(StrCat(bad_path_, ": write failed: ", st.message()));
  bad_lines_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(mu_);
  last_bad_line_ = std::move(why);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Journal::FinishReplay() {
  std::lock_guard<std::mutex> lock(mu_);
  if (replay_.fd < 0)
    return absl::FailedPreconditionError(StrCat(replay_path_, ": no replay in progress"));
  if (::unlink(replay_path_.c_str()) != 0 && errno != ENOENT) {
    return IoError(replay_path_, "cannot delete the replayed journal", errno);
  }
  ::close(replay_.fd);
  const int64_t lines = replay_.lines;
  replay_ = File{};
  pending_.fetch_sub(lines, std::memory_order_relaxed);
  return lines;
}

std::optional<DecisionRow> Journal::Find(std::string_view event_id) const {
  const uint64_t hash = core::Hash64(event_id);
  std::lock_guard<std::mutex> lock(mu_);
  for (const File* f : {&active_, &replay_}) {
    if (f->fd < 0) continue;
    const auto it = f->index.find(hash);
    if (it == f->index.end()) continue;
    std::string line(it->second.length, '\0');
    const ssize_t n =
        ::pread(f->fd, line.data(), line.size(), static_cast<off_t>(it->second.offset));
    if (n != static_cast<ssize_t>(line.size())) continue;
    absl::StatusOr<DecisionRow> row = DecisionFromJson(line);
    if (row.ok() && row->event_id == event_id) return *std::move(row);
  }
  return std::nullopt;
}

std::vector<LabelRow> Journal::FindLabels(std::string_view event_id) const {
  const uint64_t hash = core::Hash64(event_id);
  std::vector<LabelRow> found;
  std::lock_guard<std::mutex> lock(mu_);
  for (const File* f : {&replay_, &active_}) {  // the older file first
    if (f->fd < 0) continue;
    const auto it = f->labels.find(hash);
    if (it == f->labels.end()) continue;
    for (const Loc& loc : it->second) {
      std::string line(loc.length, '\0');
      const ssize_t n = ::pread(f->fd, line.data(), line.size(), static_cast<off_t>(loc.offset));
      if (n != static_cast<ssize_t>(line.size())) continue;
      absl::StatusOr<LabelRow> row = LabelFromJson(line);
      if (row.ok() && row->target_event_id == event_id) found.push_back(*std::move(row));
    }
  }
  return found;
}

std::string Journal::last_bad_line() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_bad_line_;
}

}  // namespace vigil::store
