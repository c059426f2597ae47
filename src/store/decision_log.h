// The decision log: how `vigil serve` stores every decision without ever
// making scoring wait for the database, and without losing one. Labels
// take the same writer and the same journal (SubmitLabel), so that storing
// one does not make scoring wait either, and none is lost.
//
// Submit puts a decision in a bounded in-memory queue; one background writer
// thread takes what is queued and stores it in transactions of up to
// batch_size decisions (Store::PutDecisions). When the store fails, the batch goes to
// the journal (store/journal.h: local JSON Lines files) and so does every
// batch after it until retry_interval_ms has passed; then the writer replays
// the journal into the store and, once all of it is stored, deletes it and
// goes back to the store. A full queue also spills to the journal, from
// Submit itself. The journal outlives the process: Start replays what a
// previous run left. Replays are safe to redo because PutDecisions is
// idempotent; a decision is therefore stored once, whatever fails when.
// docs/store.md has the journal format and the replay rules.
//
// The DecisionLog does not own the Store; the Store must outlive it.
//
// Thread-safety: Submit, FindPending, Stats and Flush from any number of
// threads; Stop and the destructor from one. One background writer thread.
#ifndef VIGIL_STORE_DECISION_LOG_H_
#define VIGIL_STORE_DECISION_LOG_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "core/status.h"
#include "store/journal.h"
#include "store/store.h"

namespace vigil::store {

struct DecisionLogOptions {
  // Decisions waiting for the store; beyond it, Submit writes to the journal.
  // 0 sends every decision through the journal.
  size_t queue_capacity = 65536;
  // Decisions per transaction (> 0).
  size_t batch_size = 1024;
  // Group commit: after a transaction the writer waits this long for more
  // decisions before the next one, unless batch_size are already waiting or
  // Flush or Stop asks (>= 0; 0 commits as soon as anything is queued). Each
  // commit is an fsync (synchronous=FULL): at 25 k decisions/s a writer that
  // committed whatever was queued made hundreds a second, and their I/O took
  // CPU from scoring. A decision waits at most this long longer for the
  // store; FindPending finds it meanwhile.
  int64_t commit_interval_ms = 20;
  // Required: the append-only JSON Lines file of decisions not yet in the
  // store (PATH.replay, PATH.bad and PATH.lock sit beside it).
  std::string journal_path;
  // How often to retry the store after a failure, replaying the journal
  // first; also how often decisions spilled by a full queue are replayed
  // (> 0).
  int64_t retry_interval_ms = 1000;
  // Tests: the writer checks, each time round its loop (holding the queue's
  // mutex) and before the locks it takes while it stores, that it is not at
  // idle priority (a system call each time), and counts the times it was:
  // locked_at_idle_for_testing().
  bool check_priority_for_testing = false;
};

// Counters since Start. Every submitted decision is counted once in stored,
// journaled, lost or queue_depth (a decision the store refused from the
// queue counts in refused instead of stored); journaled rows reach the store
// as `replayed`, or PATH.bad as refused.
struct DecisionLogStats {
  int64_t submitted = 0;
  int64_t stored = 0;             // written to the store from the queue
  int64_t journaled = 0;          // written to the journal (store failed, or queue full)
  int64_t replayed = 0;           // journal rows confirmed stored (also a previous run's)
  int64_t store_errors = 0;       // failed store writes (batches and replay attempts)
  int64_t queue_depth = 0;        // waiting in the queue or being stored now
  int64_t journal_pending = 0;    // rows in the journal, not yet confirmed stored
  std::string last_error;         // the last store or journal error, "" when none since the
                                  // store last took a batch or a replay without setting a row aside
  int64_t queue_full = 0;         // of `journaled`: spilled by Submit because the queue was full
  int64_t lost = 0;               // written nowhere: the store and the journal both failed
  int64_t journal_bad_lines = 0;  // lines moved to PATH.bad: not a decision, or `refused`
  int64_t refused = 0;            // refused by the store (InvalidArgument), moved to PATH.bad
  int64_t writer_boosts = 0;      // times the writer, which stores at idle priority, was to store
                                  // at an ordinary one: it fell behind (the queue half full, its
                                  // oldest decision 250 ms old), replayed the journal, or was
                                  // waited for
  // Labels, counted the same way: each submitted one once in labels_stored,
  // labels_journaled, labels_lost, labels_refused, or still queued.
  int64_t labels_submitted = 0;
  int64_t labels_stored = 0;     // written to the store from the queue
  int64_t labels_journaled = 0;  // to the journal: the store failed, the queue was full, or after Stop
  int64_t labels_replayed = 0;   // journaled labels confirmed stored (also a previous run's)
  int64_t labels_lost = 0;       // written nowhere: the store and the journal both failed
  int64_t labels_refused = 0;    // refused by the store (InvalidArgument), moved to PATH.bad
};

class DecisionLog {
 public:
  // Opens the journal (creating it), then starts the writer thread, which
  // replays any journal left by a previous run before anything else.
  // InvalidArgument when an option is out of range or `store` is null,
  // FailedPrecondition when another DecisionLog (in any process) has the
  // journal open, Unavailable when the journal cannot be opened.
  static absl::StatusOr<std::unique_ptr<DecisionLog>> Start(Store* store,
                                                            DecisionLogOptions options);
  // Stop().
  ~DecisionLog();
  DecisionLog(const DecisionLog&) = delete;
  DecisionLog& operator=(const DecisionLog&) = delete;

  // Hands a decision over for storing. Never waits for the store or the
  // writer: takes the queue's mutex for a vector push (it is held elsewhere
  // only for O(1) swaps, pushes and FindPending's scan: never across I/O,
  // never to move or free rows, never by the writer at idle priority), or
  // when the queue is full (counted in
  // queue_full) or the log stopped, appends the row to the journal itself: a
  // write(2) of one line. A row that cannot be journaled either is counted
  // in `lost` and reported in last_error.
  void Submit(DecisionRow row);

  // With check_priority_for_testing: the times the writer held the queue's
  // mutex at idle priority (never, by design: see Run).
  int64_t locked_at_idle_for_testing() const { return locked_at_idle_.load(std::memory_order_relaxed); }

  // Hands a label over for storing, as Submit does a decision, in a queue of
  // its own (queue_capacity labels) that the writer stores before the next
  // batch of decisions, without waiting for a group commit. Labels go to the
  // journal as decisions do: when the store fails or has been failing, when
  // their queue is full (from SubmitLabel itself), and after Stop; replays
  // store them.
  void SubmitLabel(LabelRow row);
  // The labels naming `event_id` (target_event_id) that are queued, being
  // stored or in the journal: with the store's own, what a GET of the
  // decision shows. Look here first, then in the store (a label moves from
  // here to the store), and drop the store's copies of labels found here (by
  // label_id). Each label once, in the order they were submitted.
  std::vector<LabelRow> FindPendingLabels(std::string_view event_id) const;
  // Waits until every decision and label submitted before the call is in
  // the store or the journal, then, if the journal holds rows, has the writer replay it
  // at once (without waiting for retry_interval_ms) and waits for that.
  // Returns OK when all of them are in the store; the store's error when the
  // journal still holds rows; DeadlineExceeded after `timeout`.
  absl::Status Flush(absl::Duration timeout);

  // How many decisions and labels were submitted so far, and lost so far.
  struct Mark {
    int64_t decisions = 0, labels = 0, lost = 0;
  };
  Mark Submitted() const;
  // Waits until every decision and label submitted before `mark` was taken
  // is in the store or the journal (or the writer has stopped: then Stop
  // put them there), without waiting out the group commit. A crash loses
  // none of them from then on. DeadlineExceeded after `timeout`; DataLoss
  // when rows were lost since the mark (neither stored nor journaled: they
  // may be of those it covers).
  absl::Status WaitWritten(Mark mark, absl::Duration timeout);

  // Stores what is in the queue (to the journal when the store fails or has
  // been failing) and stops the writer. The journal is not replayed: call
  // Flush first for that, or let the next Start do it. Later Submits go to
  // the journal. Idempotent.
  void Stop();

  DecisionLogStats Stats() const;

  // The decision with this event_id if it is still in the queue, being
  // stored, or in the journal, i.e. not yet confirmed in the store: so that
  // a GET right after a decision finds it. Look here first and then in the
  // store: a decision moves from here to the store, never back, so in that
  // order it cannot be missed. Scans the queue (newest first) under its
  // mutex, then reads one journal line.
  std::optional<DecisionRow> FindPending(std::string_view event_id) const;

 private:
  using Clock = std::chrono::steady_clock;

  DecisionLog(Store* store, DecisionLogOptions options, std::unique_ptr<Journal> journal);
  void Run();
  int64_t Lost() const {
    return decision_n_.lost.load(std::memory_order_relaxed) +
           label_n_.lost.load(std::memory_order_relaxed);
  }
  // WaitWritten with mu_ held (`lock`).
  absl::Status WaitWritten(std::unique_lock<std::mutex>& lock, Mark mark,
                           Clock::time_point deadline, absl::Duration timeout);
  // What the group commit waits for: a batch, or a full queue when the queue
  // holds less than a batch (it would otherwise spill to the journal while
  // the writer waits).
  size_t FullBatch() const { return std::max<size_t>(1, std::min(options_.batch_size, options_.queue_capacity)); }
  // What is counted of decisions, and of labels.
  struct Counters {
    std::atomic<int64_t> submitted{0}, stored{0}, journaled{0}, replayed{0}, lost{0}, refused{0};
  };
  Counters& CountersOf(std::span<const DecisionRow>) { return decision_n_; }
  Counters& CountersOf(std::span<const LabelRow>) { return label_n_; }
  // Stores `rows` (decisions or labels) in one transaction; when the store
  // refuses one of them (InvalidArgument), stores them one by one and moves
  // those it refuses to PATH.bad, adding their number to *refused. Returns
  // the store's error otherwise (then some rows may be stored: retrying all
  // is safe).
  template <typename Row>
  absl::Status Put(std::span<const Row> rows, int64_t* refused);
  // One replay attempt: every file the journal had when it began, into the
  // store. OK when all of it is stored and deleted; *wrote says whether the
  // store took any row (not when the journal was empty).
  absl::Status ReplayJournal(bool* wrote);
  // Appends rows to the journal, counted in journaled or (on failure) lost.
  template <typename Row>
  void JournalRows(std::span<const Row> rows);
  // Has the writer store at an ordinary priority until it has caught up.
  // REQUIRES: mu_.
  void Boost();
  // Whether a thread may go to idle priority and come back (Linux refuses
  // the way back without CAP_SYS_NICE or a high enough RLIMIT_NICE).
  static bool CanLeaveIdle();
  void SetLastError(std::string message);
  // The store took a batch or a replay: the error before it is over, unless
  // rows were set aside meanwhile (the journal's bad lines are no longer
  // `bad_lines_before`): that error stays until the next clean write.
  // REQUIRES: mu_.
  void StoreTookWrites(int64_t bad_lines_before);
  // Before a lock of the log's is taken: the writer leaves idle priority if
  // it stores at it; with check_priority_for_testing, counts a lock taken
  // (or held) at idle priority all the same.
  void BeforeLock();

  Store* const store_;
  const DecisionLogOptions options_;
  const std::unique_ptr<Journal> journal_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // wakes the writer
  std::condition_variable done_cv_;  // wakes Flush
  // Rows on their way to the store, in three vectors that pass their room
  // around by O(1) swaps under mu_, so that the lock is never held for work
  // proportional to the rows (Submit, on the thread that answers requests,
  // takes it):
  //   queued    pushed by Submit; guarded by mu_;
  //   inflight  what the writer is storing: swapped in under mu_, read by the
  //             writer without it and by the Find functions with it;
  //   spare     the writer's: the rows last stored, freed outside mu_ (at
  //             idle priority) while it stores the next ones.
  template <typename Row>
  struct Lane {
    std::vector<Row> queued, inflight, spare;
    // Takes everything queued; how many. REQUIRES: mu_, inflight empty.
    size_t Take() {
      inflight.swap(queued);
      return inflight.size();
    }
    // The rows taken are stored (or journaled): they leave, to be freed by
    // FreeSpare. REQUIRES: mu_, FreeSpare called since the last Done.
    void Done() { spare.swap(inflight); }
    // REQUIRES: the writer, without mu_.
    void FreeSpare() { spare.clear(); }
    // Calls f on each pending row, newest first, until it returns true.
    // REQUIRES: mu_.
    template <typename F>
    void ForEachPending(F f) const {
      for (const std::vector<Row>* v : {&queued, &inflight}) {
        for (auto it = v->rbegin(); it != v->rend(); ++it) {
          if (f(*it)) return;
        }
      }
    }
  };
  Lane<DecisionRow> decisions_;
  Lane<LabelRow> labels_;
  int64_t labels_enqueued_ = 0;             // guarded by mu_
  int64_t labels_done_ = 0;                 // guarded by mu_: stored, journaled or lost
  bool stop_ = false;             // guarded by mu_
  bool writer_done_ = false;      // guarded by mu_
  bool degraded_ = false;         // guarded by mu_: the store failed, journal until next_retry_
  Clock::time_point next_retry_;  // guarded by mu_
  Clock::time_point next_commit_;  // guarded by mu_: group commit, see commit_interval_ms
  int64_t flush_target_ = 0;       // guarded by mu_: Flush waits for dequeued_ to reach it
  int64_t replay_after_ =
      -1;  // guarded by mu_: a due replay waits for dequeued_ to reach it (-1: none)
  int64_t enqueued_ = 0;          // guarded by mu_: rows ever pushed to decisions_.queued
  int64_t dequeued_ = 0;          // guarded by mu_: of those, stored, journaled or lost
  int64_t replay_requested_ = 0;  // guarded by mu_: Flush's replay requests
  int64_t replay_done_ = 0;       // guarded by mu_: requests the last finished attempt covered
  absl::Status last_replay_;      // guarded by mu_
  std::string last_error_;        // guarded by mu_
  std::string lost_error_;        // guarded by mu_: why rows were last lost (Flush says it)

  Counters decision_n_;
  Counters label_n_;
  std::atomic<int64_t> store_errors_{0};
  std::atomic<int64_t> queue_full_{0};
  std::atomic<int64_t> writer_boosts_{0};
  std::atomic<int64_t> locked_at_idle_{0};
  pid_t writer_tid_ = 0;        // guarded by mu_: 0 until the writer runs
  bool boosted_ = false;        // guarded by mu_: the writer stores at an ordinary priority
  Clock::time_point queued_since_;  // guarded by mu_: when the oldest queued decision came
  // How much longer than the group commit a decision waits for a writer
  // storing at idle priority before it stores at an ordinary one (see
  // Submit); boost_after_ adds the commit interval.
  static constexpr std::chrono::milliseconds kBoostAfter{250};
  const Clock::duration boost_after_;
  // The writer stores at idle priority (it can come back from it).
  const bool idle_ok_ = CanLeaveIdle();

  std::thread writer_;
};

}  // namespace vigil::store

#endif  // VIGIL_STORE_DECISION_LOG_H_
