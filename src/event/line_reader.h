// Streams records (lines) out of a file, a gzip file or standard input with
// flat memory, whatever the file's size. Gzip input is recognised by its
// magic bytes and inflated on a second thread. A CSV record may span lines
// inside quotes. A record longer than the limit is returned truncated to the
// limit, flagged, and the rest of it skipped.
//
// Every returned line is followed in memory by at least kReadPadding readable
// bytes (simdjson parses in place and reads past the end).
//
// Thread-safety: one reader per thread; the inflating thread is internal.
#ifndef VIGIL_EVENT_LINE_READER_H_
#define VIGIL_EVENT_LINE_READER_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/status.h"

namespace vigil::event {

inline constexpr size_t kReadPadding = 64;

class ByteSource;

struct LineReaderOptions {
  size_t max_record_bytes = 1 << 20;  // longer records are truncated and flagged
  bool csv_quotes = false;            // join lines while a CSV quote is open
};

class LineReader {
 public:
  // Opens `path` ("-" is standard input). NotFound / PermissionDenied with
  // the path when it cannot be opened.
  static absl::StatusOr<std::unique_ptr<LineReader>> Open(const std::string& path,
                                                          const LineReaderOptions& options);
  // Reads from `data` in memory (tests and fuzzers); gzip is recognised too.
  static std::unique_ptr<LineReader> FromString(std::string data, const LineReaderOptions& options);
  ~LineReader();

  struct Line {
    std::string_view text;  // without the newline (and a trailing \r)
    int64_t line_no = 0;    // 1-based number of the record's first line
    bool truncated = false; // longer than max_record_bytes; text is the first part
    size_t full_size = 0;   // bytes in the whole record when truncated
    size_t readable = 0;    // bytes readable from text.data() (>= size + kReadPadding)
  };

  // The next record, or false at the end of input or on an I/O error
  // (status() tells which). `line->text` is valid until the next call.
  bool Next(Line* line);
  const absl::Status& status() const { return status_; }

  bool gzip() const { return gzip_; }
  // Uncompressed bytes consumed so far.
  int64_t bytes_read() const { return bytes_read_; }
  // Whether a CSV quote keeps a record open across lines; set before Next.
  void SetCsvQuotes(bool on) { options_.csv_quotes = on; }
  // Peeks at the first bytes of input without consuming them (format sniffing).
  std::string_view Peek(size_t n);
  // The k-th line (k >= 1) after the last one Next returned, when it lies
  // whole in the buffer already (reads nothing); empty when it does not. For
  // read-ahead hints: lines, not records (a CSV quote may span lines).
  // Cheapest when called once per Next with the same k. REQUIRES: k < 8.
  std::string_view PeekLine(size_t k);

 private:
  LineReader(std::unique_ptr<ByteSource> src, const LineReaderOptions& options, bool gzip,
             size_t size_hint);
  bool Fill();  // reads more input after the unread bytes; false at EOF

  std::unique_ptr<ByteSource> src_;
  LineReaderOptions options_;
  bool gzip_;
  std::unique_ptr<char[]> buf_;
  size_t cap_ = 0;   // usable bytes, excluding padding
  size_t begin_ = 0; // first unread byte
  size_t end_ = 0;   // one past the last valid byte
  bool eof_ = false;
  // PeekLine's last call: its k (0: none since the buffer moved) and the
  // starts of the lines after begin_ then ([0] = begin_ then, [i] = the start
  // of line i + 1; [k] = past line k's newline, or end_).
  size_t peek_k_ = 0;
  std::array<size_t, 8> peek_{};
  int64_t line_no_ = 0;
  int64_t bytes_read_ = 0;
  absl::Status status_;
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_LINE_READER_H_
