// The serving event log: every event and label the server accepts, appended
// in arrival order as one JSON line each, so that `vigil backfill` over the
// log replays exactly what the server saw, in that order (the training data
// of tomorrow is today's traffic). docs/monitoring.md, "The event log".
//
// The log is a directory of files named
//   <dir>/<prefix>-YYYYMMDD-HHMMSS-<seq>.jsonl
// where the time is the UTC wall clock when the file was opened and <seq> is
// six digits, one more than the highest seq in the directory. A file is never
// reopened: each Open and each rotation creates a new one (O_EXCL), so a
// restart never overwrites what an earlier process wrote. Names sort in write
// order: should the wall clock step back, a new file takes the previous
// file's time instead of the clock's. A new file starts when the current one
// would grow past rotate_bytes, or on the first Append of a new UTC day. A
// line is never split across files. Files are created 0640 (they hold raw
// events); rotated files may be gzipped in place (`.jsonl.gz`), and Files()
// and `vigil backfill --events <dir>` still find them.
//
// Durability: Append buffers in memory; Flush hands the buffer to the OS
// (a write), so an acknowledged event survives the process crashing. With
// sync_interval_ms > 0 a thread of the log's own makes it durable that
// often (an fdatasync of the current file, and of each file rotated away,
// without the writer waiting for it), so a machine that goes down loses at
// most that much of what was acknowledged; Close syncs what is left. Off by
// default: on ext4 an append can wait for the journal commit a sync starts
// (bench/serve.sh: 5-10 % less throughput, and once a 7 ms p99). A write
// that fails is cut back to its last whole line and its lines are dropped.
// When it failed for want of room (ENOSPC, EDQUOT, EFBIG) the log goes on:
// the next write tries again, and succeeds once there is room (after EFBIG,
// a file size limit, in a new file; a file that cannot be created for want
// of room is tried again at the next Append). After any
// other failed write, or a failed sync, the log refuses every later call
// with that error: reopen to carry on, in a new file.
//
// Thread-safety: none. The server calls it under its sequencing lock, which
// is also what makes the log's order the order the engine saw.
#ifndef VIGIL_EVENT_EVENT_LOG_H_
#define VIGIL_EVENT_EVENT_LOG_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace vigil::event {

struct EventLogOptions {
  // The directory of the log; created (with its parents) if missing.
  std::string dir;
  // File names start with "<prefix>-". Not empty, no '/'.
  std::string prefix = "events";
  // A new file starts when a line would take the current one past this many
  // bytes; a single longer line gets a file of its own. Must be > 0.
  int64_t rotate_bytes = 256 << 20;
  // A new file starts at the first Append of a new UTC day.
  bool rotate_daily = true;
  // Append writes the buffer to the OS by itself once it holds this much,
  // bounding memory between Flush calls.
  size_t buffer_bytes = 1 << 20;
  // How often what was written is synced to the disk; 0: never (the OS
  // writes it back on its own, within ~30 s).
  int64_t sync_interval_ms = 0;
  // A lock on `dir` its caller took already (LockEventLogDir), which the log
  // adopts (and closes); -1: Open takes it.
  int dir_lock_fd = -1;
  // The UTC wall clock in ms since the epoch; empty: the system clock.
  // Tests inject one to cross midnight.
  std::function<int64_t()> now_ms;
};

// Creates `dir` if needed and takes its lock (a flock on the directory),
// which one EventLog holds from Open to Close: the descriptor holding it.
// FailedPrecondition, naming the folder, while another process holds it. A
// server takes it before anything else of its state, so that a second
// server on the same folder is refused before it touches its store.
absl::StatusOr<int> LockEventLogDir(const std::string& dir);

// The identity of the event log in `dir`: 32 hex digits, random, kept in
// `dir`/.log-id (hidden: readers of the log skip it) and made there when the
// folder has none. A server's saved state names it, so that a state copied
// from another server's folder is never restored onto this log. Call with
// the folder's lock held. Errors name the file.
absl::StatusOr<std::string> EventLogId(const std::string& dir);

class EventLog {
 public:
  // Creates the directory if needed and opens a new file in it. One
  // EventLog per directory at a time, across processes (a flock on the
  // directory): FailedPrecondition while another holds it.
  // InvalidArgument for bad options; the OS's reason with the path
  // (PermissionDenied, NotFound, Unavailable) when the directory or the file
  // cannot be created.
  static absl::StatusOr<std::unique_ptr<EventLog>> Open(EventLogOptions options);
  // Flushes and closes; a failure here is lost (call Close to see it).
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Appends `line` and a '\n', rotating first if the current file would
  // outgrow rotate_bytes or the UTC day changed. InvalidArgument (nothing
  // appended) when `line` holds a '\n'; FailedPrecondition after Close; the
  // write error (Unavailable, with the path and the OS's reason) if a
  // rotation or a full buffer had to be written and that failed.
  absl::Status Append(std::string_view line);
  // Writes the buffered lines to the OS. Unavailable with the path and the
  // reason when writing fails (e.g. the disk is full: then the buffered
  // lines are dropped, and the log takes more; see above).
  absl::Status Flush();
  // Flushes and closes the current file. Later calls fail; Close again is OK.
  absl::Status Close();

  // The file being written (empty after Close).
  std::string current_path() const;
  // Paths of all the log's files in the directory — this prefix, named as
  // above, .jsonl or .jsonl.gz, also those of earlier processes — in name
  // order, which is write order. Empty if the directory cannot be read.
  std::vector<std::string> Files() const;
  // Bytes appended through this object since Open, newlines included, over
  // all its files (buffered ones too).
  int64_t bytes_written() const { return bytes_written_; }
  // Successful syncs (fdatasync) of the log's files so far.
  int64_t syncs() const;
  // The error that stopped the log (see above: every later call fails with
  // it), or OK while it takes lines.
  const absl::Status& status() const { return status_; }

 private:
  explicit EventLog(EventLogOptions options);
  absl::Status OpenNextFile(int64_t now_ms);  // REQUIRES: no file open
  absl::Status WriteBuffer();                 // the buffer to the current file
  absl::Status CloseFile();                   // writes the buffer, closes the file
  absl::Status Fail(absl::Status st);         // records a sticky error
  class Syncer;

  EventLogOptions options_;
  int lock_fd_ = -1;  // the directory, holding its flock
  int fd_ = -1;
  std::string path_;
  std::string buffer_;
  int64_t file_bytes_ = 0;    // in the current file, buffered ones included
  int64_t file_written_ = 0;  // of those, handed to the OS
  int64_t file_time_ms_ = 0;  // the time in the current file's name
  int64_t last_name_ms_ = 0;  // latest time in any name seen (clock step-back guard)
  int64_t next_seq_ = 1;
  int64_t bytes_written_ = 0;
  bool rotate_next_ = false;  // a write met the file size limit (EFBIG): the next line starts a file
  bool closed_ = false;
  absl::Status status_;  // sticky: the first write error
  std::unique_ptr<Syncer> syncer_;  // when sync_interval_ms > 0
};

// The files of the event log `prefix` in `dir` (the same as
// EventLog::Files()), with the error when `dir` cannot be listed.
absl::StatusOr<std::vector<std::string>> ListEventLogFiles(const std::string& dir,
                                                           const std::string& prefix);

// Whether the file name of `path` is one the event log `prefix` writes
// ("<prefix>-YYYYMMDD-HHMMSS-NNNNNN.jsonl[.gz]"): its events were accepted
// by a live server (Validator::SetReplaying).
bool IsEventLogFile(std::string_view path, std::string_view prefix = "events");

}  // namespace vigil::event

#endif  // VIGIL_EVENT_EVENT_LOG_H_
