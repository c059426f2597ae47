// The dead-letter store for rejected events: a JSON Lines file, one object
// per rejected record, so that nothing is dropped silently and a corrected
// file can be replayed. Format (docs/validation.md):
//   {"record_no", "line", "event_id", "field", "rule", "value", "reason",
//    "raw", "violations": [{"field","rule","value","reason"}...],
//    "raw_truncated", "raw_bytes", "raw_base64" (when raw is not UTF-8)}
// The first violation fills the top-level field/rule/value/reason.
//
// Thread-safety: none; one writer per file.
#ifndef VIGIL_EVENT_DEAD_LETTER_H_
#define VIGIL_EVENT_DEAD_LETTER_H_

#include <cstdio>
#include <string>

#include "core/status.h"
#include "event/event_reader.h"

namespace vigil::event {

class DeadLetterWriter {
 public:
  // Creates (truncates) `path`; "-" is standard output.
  static absl::StatusOr<std::unique_ptr<DeadLetterWriter>> Open(const std::string& path);
  ~DeadLetterWriter();

  absl::Status Write(const Rejection& r);
  absl::Status Close();
  int64_t written() const { return written_; }

 private:
  DeadLetterWriter(FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  FILE* f_;
  std::string path_;
  int64_t written_ = 0;
};

// The JSON object written for one rejection (no trailing newline).
std::string RejectionToJson(const Rejection& r);

}  // namespace vigil::event

#endif  // VIGIL_EVENT_DEAD_LETTER_H_
