// Reads events from a file (CSV with a header, or JSON Lines; plain, gzip or
// standard input), decodes and validates each against a schema, and yields
// either a valid Record or a Rejection that names the record, the field, the
// rule and the value. This is the one way into vigil for event files:
// `validate`, `profile` and backfill all read through it.
//
// Thread-safety: none; one reader per thread.
#ifndef VIGIL_EVENT_EVENT_READER_H_
#define VIGIL_EVENT_EVENT_READER_H_

#include <memory>
#include <string>
#include <vector>

#include "event/line_reader.h"
#include "event/pii.h"
#include "event/record.h"
#include "event/schema.h"
#include "event/validator.h"

namespace vigil::event {

enum class Format { kAuto, kCsv, kJsonLines };
const char* FormatName(Format f);
// kAuto from the name: .csv[.gz] is CSV; .jsonl, .ndjson, .json[.gz] JSON
// Lines; anything else (and standard input) is sniffed from the first byte.
Format FormatFromPath(const std::string& path);

// A record that failed. Fields are safe to write out: pii values masked.
struct Rejection {
  int64_t record_no = 0;
  int64_t line_no = 0;
  std::string event_id;  // when the record had a readable one
  std::vector<Violation> violations;
  std::string raw;        // the record's text, pii masked (truncated if too large)
  bool raw_truncated = false;
  size_t raw_bytes = 0;   // size of the whole record
};

class EventReader {
 public:
  // Opens `path` and, for CSV, reads and checks the header. Fails with the
  // path and the problem (NotFound, InvalidArgument for a bad header...).
  // `hasher` must outlive the reader.
  static absl::StatusOr<std::unique_ptr<EventReader>> Open(const std::string& path,
                                                           std::shared_ptr<const Schema> schema,
                                                           const PiiHasher* hasher,
                                                           Format format = Format::kAuto);

  // The same over `data` in memory (tests and fuzzers).
  static absl::StatusOr<std::unique_ptr<EventReader>> FromString(std::string data,
                                                                 std::shared_ptr<const Schema> schema,
                                                                 const PiiHasher* hasher,
                                                                 Format format = Format::kAuto);

  enum class Result { kRecord, kRejected, kEnd };
  // The next record: kRecord fills `rec` (views valid until the next call),
  // kRejected fills `rej`, kEnd at the end of input or on an I/O error
  // (status() tells which).
  Result Next(Record* rec, Rejection* rej);

  const absl::Status& status() const { return lines_->status(); }
  Format format() const { return format_; }
  bool gzip() const { return lines_->gzip(); }
  int64_t records_read() const { return records_; }
  int64_t bytes_read() const { return lines_->bytes_read(); }
  const Validator& validator() const { return validator_; }

 private:
  EventReader(std::unique_ptr<LineReader> lines, std::shared_ptr<const Schema> schema,
              const PiiHasher* hasher, Format format);
  static absl::StatusOr<std::unique_ptr<EventReader>> Start(std::unique_ptr<LineReader> lines,
                                                            const std::string& name,
                                                            std::shared_ptr<const Schema> schema,
                                                            const PiiHasher* hasher, Format format);
  void Reject(const LineReader::Line& line, const Record& rec, Rejection* rej);

  std::unique_ptr<LineReader> lines_;
  std::shared_ptr<const Schema> schema_;
  const PiiHasher* hasher_;
  Format format_;
  Validator validator_;
  std::vector<Violation> violations_;
  int64_t records_ = 0;
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_EVENT_READER_H_
