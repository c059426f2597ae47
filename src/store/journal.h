// The decision log's journal: decisions and labels not (yet) confirmed in
// the store, kept in local append-only JSON Lines files so that none is lost
// while the store is slow or down. docs/store.md has the format and the
// replay rules.
//
// Files, for a journal at PATH:
//   PATH          the active file; new rows are appended to it
//   PATH.replay   the file being replayed: the active file renamed by
//                 BeginReplay, deleted by FinishReplay once every row in it
//                 is confirmed stored (so a crash at any point loses nothing;
//                 a replay interrupted by a crash or a store error is redone
//                 from its start, which idempotent Store writes make safe)
//   PATH.bad      lines that are neither a decision nor a label, set aside
//                 during a replay, and rows the store refused (SetAsideRow),
//                 one a line
//   PATH.lock     held (flock) while the journal is open, so two processes
//                 never share one journal
// Rows are written with write(2) as they are appended: they survive a crash
// of the process, not of the machine (no fsync).
//
// Thread-safety: Append, Find, FindLabels, BeginReplay, FinishReplay and the
// counters may be called from any thread (one mutex, held for the write or
// the read of a line but never while a Store is called). ReplayBatches is called by one
// thread at a time (the decision log's writer), between BeginReplay and
// FinishReplay; it reads PATH.replay, which nothing else writes.
#ifndef VIGIL_STORE_JOURNAL_H_
#define VIGIL_STORE_JOURNAL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "core/status.h"
#include "store/store.h"

namespace vigil::store {

class Journal {
 public:
  // Opens the journal at `path`, creating the file when missing, and indexes
  // the rows already in PATH and PATH.replay (a previous run's). An active
  // file cut in the middle of a line by a crash gets a newline, so the piece
  // becomes one bad line rather than spoiling the next row.
  // FailedPrecondition when another journal holds PATH.lock, Unavailable
  // when a file cannot be opened or read.
  static absl::StatusOr<std::unique_ptr<Journal>> Open(std::string path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Appends one line per row to the active file. On failure (disk full) the
  // file is cut back to where it was, so it never holds half a row, and
  // Unavailable names the file and the reason.
  absl::Status Append(std::span<const DecisionRow> rows);
  absl::Status Append(std::span<const LabelRow> rows);

  // Starts a replay: when PATH.replay is left from an earlier attempt it is
  // the one to replay; otherwise a non-empty active file is renamed to
  // PATH.replay and a new active file begun. Returns whether there is a file
  // to replay. Unavailable when a rename or open fails (nothing is lost).
  absl::StatusOr<bool> BeginReplay();

  // Reads PATH.replay from its start and hands its decisions to `put` and
  // its labels to `put_labels`, each in batches of at most `batch_size`;
  // stops at the first error either returns and returns it. Lines that are
  // neither are appended to PATH.bad and counted in bad_lines().
  // REQUIRES: BeginReplay returned true; batch_size > 0.
  absl::Status ReplayBatches(size_t batch_size,
                             absl::FunctionRef<absl::Status(std::span<const DecisionRow>)> put,
                             absl::FunctionRef<absl::Status(std::span<const LabelRow>)> put_labels);

  // Appends `row` to PATH.bad: the store refused it (`reason`), so it must
  // not hold the other rows back, nor be dropped. Counted in bad_lines().
  // Unavailable when PATH.bad cannot be written.
  absl::Status SetAsideRow(const DecisionRow& row, std::string_view reason);
  absl::Status SetAsideRow(const LabelRow& row, std::string_view reason);

  // Deletes PATH.replay. Returns how many lines it held.
  // REQUIRES: every row of it is confirmed stored (ReplayBatches returned OK).
  absl::StatusOr<int64_t> FinishReplay();

  // The row with this event_id if one is in the journal (the last appended
  // when there are several).
  std::optional<DecisionRow> Find(std::string_view event_id) const;
  // The labels in the journal whose target_event_id is `event_id`, in the
  // order they were appended.
  std::vector<LabelRow> FindLabels(std::string_view event_id) const;

  // Lines in PATH and PATH.replay: rows not confirmed stored.
  int64_t pending() const { return pending_.load(std::memory_order_relaxed); }
  // Lines set aside in PATH.bad by this process.
  int64_t bad_lines() const { return bad_lines_.load(std::memory_order_relaxed); }
  // What the last line set aside was and why, or "".
  std::string last_bad_line() const;
  const std::string& path() const { return path_; }

 private:
  // Where a row's line is: its byte offset and length (without the newline).
  struct Loc {
    uint64_t offset;
    uint64_t length;
  };
  // Keyed by core::Hash64(event_id): 24 bytes a row however long the id. Find
  // reads the line back and compares the id, so a collision can only hide a
  // row, never return a wrong one.
  using Index = absl::flat_hash_map<uint64_t, Loc>;
  // Labels by core::Hash64(target_event_id), in file order (entity labels,
  // which name no event, are not indexed).
  using LabelIndex = absl::flat_hash_map<uint64_t, std::vector<Loc>>;

  // One of the two files: an open descriptor, its rows and where they are.
  struct File {
    int fd = -1;
    int64_t size = 0;  // bytes
    int64_t lines = 0;
    Index index;
    LabelIndex labels;
  };

  explicit Journal(std::string path);
  absl::Status Scan(const std::string& path, File* f);
  // Appends `line` to PATH.bad and makes `why` the last_bad_line().
  absl::Status SetAside(std::string_view line, std::string why);
  // Appends `buf` (`rows` whole lines) to the active file, then has `index`
  // record where they are from the file offset at which buf begins.
  absl::Status AppendLines(const std::string& buf, int64_t rows,
                           absl::FunctionRef<void(uint64_t at)> index);

  const std::string path_;
  const std::string replay_path_;
  const std::string bad_path_;
  const std::string lock_path_;
  int lock_fd_ = -1;

  mutable std::mutex mu_;
  File active_;                // guarded by mu_
  File replay_;                // guarded by mu_; fd -1 when there is no PATH.replay
  std::string last_bad_line_;  // guarded by mu_
  std::atomic<int64_t> pending_{0};
  std::atomic<int64_t> bad_lines_{0};
};

// The journal line of a row (no newline): one JSON object with every field
// of DecisionRow under its own name; a NaN score is null; a string that is
// not valid UTF-8 is written base64-encoded under "<field>_base64" instead,
// so every byte comes back.
std::string DecisionToJson(const DecisionRow& row);

// The row a journal line holds. InvalidArgument naming the field when the
// line is not such an object.
absl::StatusOr<DecisionRow> DecisionFromJson(std::string_view line);

// The same for a label: every field of LabelRow under its own name, a value
// that is not finite as null. A line is a label's when it has "label_id".
std::string LabelToJson(const LabelRow& row);
absl::StatusOr<LabelRow> LabelFromJson(std::string_view line);

}  // namespace vigil::store

#endif  // VIGIL_STORE_JOURNAL_H_
