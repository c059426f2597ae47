// Reads events from a file (CSV with a header, or JSON Lines; plain, gzip or
// standard input), decodes and validates each against a schema, and yields
// either a valid Record or a Rejection that names the record, the field, the
// rule and the value. This is the one way into vigil for event files:
// `validate`, `profile` and backfill all read through it.
//
// Several files (a rotated event log) read as one stream: one after the
// other in the order given, as if concatenated, except that each CSV file
// starts with its own header. Record numbers count over the whole stream
// (the position the engine sees); line numbers are within the record's file,
// which Rejection::file and current_path() name. Duplicate ids and time
// bounds are checked across files.
//
// Thread-safety: none; one reader per thread.
#ifndef VIGIL_EVENT_EVENT_READER_H_
#define VIGIL_EVENT_EVENT_READER_H_

#include <cstdint>
#include <memory>
#include <span>
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

// The event files named by `args`, in order: a file as is ("-" is standard
// input, and only alone), a directory as its *.jsonl and *.jsonl.gz files
// (not hidden, not in subdirectories) in name order — an event log
// (event_log.h) in write order. NotFound naming the path when it does not
// exist; InvalidArgument for a directory without such files, or "-" among
// others.
absl::StatusOr<std::vector<std::string>> ExpandEventPaths(const std::vector<std::string>& args);

// A record that failed. Fields are safe to write out: pii values masked.
struct Rejection {
  int64_t record_no = 0;  // over the whole stream
  int64_t line_no = 0;    // within `file`
  std::string file;       // the path it came from ("<stdin>", "<memory>")
  std::string event_id;   // when the record had a readable one
  std::vector<Violation> violations;
  std::string raw;        // the record's text, pii masked (truncated if too large)
  bool raw_truncated = false;
  size_t raw_bytes = 0;   // size of the whole record
  int64_t received_ms = 0;  // when a server received it (UTC ms); 0: read from a file
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

  // Opens `paths` as one stream (see the top of this file); `paths` may not
  // be empty. Every path is checked to exist before anything is read
  // (NotFound naming it). With Format::kAuto each file's format comes from
  // its name, else its content, and files that disagree are an error
  // (InvalidArgument naming both); the error of a later file (it vanished,
  // a bad CSV header) ends the stream and shows in status().
  static absl::StatusOr<std::unique_ptr<EventReader>> OpenFiles(
      const std::vector<std::string>& paths, std::shared_ptr<const Schema> schema,
      const PiiHasher* hasher, Format format = Format::kAuto);

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

  // Read-ahead, for CSV input: the event::KeyHash values of `fields`
  // (FieldSpec indexes of the CSV event type) in the record `ahead` records
  // after the one Next returned last, read off its raw text when that is in
  // the buffer already; 0 for each that cannot be told (JSON Lines, not
  // buffered yet, no column, an empty or quoted cell). A hint for
  // prefetching, nothing more: the record is not checked, and a CSV quote
  // spanning lines, or a record rejected before it, makes it another.
  // REQUIRES: hashes.size() >= fields.size().
  void PeekKeyHashes(size_t ahead, std::span<const int> fields, std::span<uint64_t> hashes);

  const absl::Status& status() const { return status_.ok() ? lines_->status() : status_; }
  Format format() const { return format_; }
  // Whether the current file is gzip.
  bool gzip() const { return lines_->gzip(); }
  int64_t records_read() const { return records_; }
  // Uncompressed bytes over all the files read so far.
  int64_t bytes_read() const { return bytes_before_ + lines_->bytes_read(); }
  const Validator& validator() const { return validator_; }
  // To set how it checks time (Validator::SetReplaying) before reading.
  Validator& mutable_validator() { return validator_; }
  // The file the last record came from, and its index in the paths.
  const std::string& current_path() const { return name_; }
  size_t file_index() const { return file_; }

 private:
  EventReader(std::shared_ptr<const Schema> schema, const PiiHasher* hasher, Format format);
  // Makes `lines` the current file: decides its format (checking it against
  // the stream's) and reads its CSV header.
  absl::Status BeginFile(std::unique_ptr<LineReader> lines, const std::string& name);
  // Opens the next of paths_; false at the end or on an error (status_).
  bool NextFile();
  void Reject(const LineReader::Line& line, const Record& rec, Rejection* rej);

  std::unique_ptr<LineReader> lines_;
  std::shared_ptr<const Schema> schema_;
  const PiiHasher* hasher_;
  Format requested_;  // what the caller asked for, kAuto included
  Format format_;     // the stream's, decided by its first file
  Validator validator_;
  std::vector<Violation> violations_;
  int64_t records_ = 0;
  std::vector<std::string> paths_;  // of Open / OpenFiles; empty for FromString
  size_t file_ = 0;
  std::string name_;          // the current file, for messages
  int64_t bytes_before_ = 0;  // bytes of the files before the current one
  absl::Status status_;       // the error that ended the stream, past lines_'s own
  // PeekKeyHashes: the fields asked for last, their CSV columns in the
  // current file (-1: none), and the file those were found for.
  std::vector<int> peek_fields_;
  std::vector<int> peek_columns_;
  size_t peek_file_ = SIZE_MAX;
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_EVENT_READER_H_
