#include "event/dead_letter.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/escaping.h"
#include "core/strings.h"
#include "nlohmann/json.hpp"
#include "simdjson.h"

namespace vigil::event {

std::string RejectionToJson(const Rejection& r) {
  nlohmann::ordered_json j;
  // With several input files (a rotated event log), the line alone is
  // ambiguous.
  if (!r.file.empty()) j["file"] = r.file;
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

absl::StatusOr<std::unique_ptr<DeadLetterWriter>> DeadLetterWriter::Open(const std::string& path) {
  FILE* f = path == "-" ? stdout : std::fopen(path.c_str(), "w");
  if (!f) {
    return absl::InvalidArgumentError(
        StrCat(path, ": cannot create dead-letter file: ", strerror(errno)));
  }
  return std::unique_ptr<DeadLetterWriter>(new DeadLetterWriter(f, path));
}

DeadLetterWriter::~DeadLetterWriter() { (void)Close(); }

absl::Status DeadLetterWriter::Write(const Rejection& r) {
  const std::string line = RejectionToJson(r) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size()) {
    return absl::DataLossError(StrCat(path_, ": write failed: ", strerror(errno)));
  }
  ++written_;
  return absl::OkStatus();
}

absl::Status DeadLetterWriter::Close() {
  if (!f_) return absl::OkStatus();
  const bool bad = std::fflush(f_) != 0 || (f_ != stdout && std::fclose(f_) != 0);
  f_ = nullptr;
  if (bad) return absl::DataLossError(StrCat(path_, ": write failed: ", strerror(errno)));
  return absl::OkStatus();
}

}  // namespace vigil::event
