// The dead-letter store for rejected events: a JSON Lines file, one object
// per rejected record, so that nothing is dropped silently and a corrected
// file can be replayed. Format (docs/validation.md):
//   {"record_no", "line", "event_id", "field", "rule", "value", "reason",
//    "raw", "violations": [{"field","rule","value","reason"}...],
//    "raw_truncated", "raw_bytes", "raw_base64" (when raw is not UTF-8)}
// The first violation fills the top-level field/rule/value/reason.
//
// Thread-safety: one writer per file, from one thread at a time; written()
// and dropped() from any thread.
#ifndef VIGIL_EVENT_DEAD_LETTER_H_
#define VIGIL_EVENT_DEAD_LETTER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "core/status.h"
#include "event/event_reader.h"

namespace vigil::event {

class DeadLetterWriter {
 public:
  enum class Mode {
    kCreate,  // truncates the file: a run's own output (vigil validate, backfill)
    kAppend,  // adds to what is there: the server's, across restarts
  };
  // Opens `path`; "-" is standard output.
  static absl::StatusOr<std::unique_ptr<DeadLetterWriter>> Open(const std::string& path,
                                                                Mode mode = Mode::kCreate);
  ~DeadLetterWriter();  // Close()
  DeadLetterWriter(const DeadLetterWriter&) = delete;
  DeadLetterWriter& operator=(const DeadLetterWriter&) = delete;

  // Adds one rejection to the buffer, which is written out once it holds
  // 64 KiB (then it may fail as Flush does).
  absl::Status Write(const Rejection& r);
  // Hands the buffered lines to the OS: then they survive the process. When
  // that fails (DataLoss, naming the file and the reason), the file is cut
  // back to its last whole line and those lines are dropped (counted in
  // dropped()); a later Flush may succeed, once there is room again.
  absl::Status Flush();
  // Flush, then close (standard output stays open).
  absl::Status Close();
  // Lines handed to the OS, and lines a failed write lost; from any thread.
  int64_t written() const { return written_.load(std::memory_order_relaxed); }
  int64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  DeadLetterWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
  std::string buffer_;
  int64_t buffered_ = 0;  // lines in buffer_
  std::atomic<int64_t> written_{0};
  std::atomic<int64_t> dropped_{0};
};

// The JSON object written for one rejection (no trailing newline).
std::string RejectionToJson(const Rejection& r);

}  // namespace vigil::event

#endif  // VIGIL_EVENT_DEAD_LETTER_H_
