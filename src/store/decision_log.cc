#include "store/decision_log.h"

#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <type_traits>

#include "core/strings.h"

namespace vigil::store {

absl::StatusOr<std::unique_ptr<DecisionLog>> DecisionLog::Start(Store* store,
                                                                DecisionLogOptions options) {
  if (store == nullptr) return absl::InvalidArgumentError("decision log: no store");
  if (options.journal_path.empty())
    return absl::InvalidArgumentError("decision log: journal_path is required");
  if (options.batch_size == 0)
    return absl::InvalidArgumentError("decision log: batch_size must be > 0");
  if (options.commit_interval_ms < 0) {
    return absl::InvalidArgumentError(
        StrCat("decision log: commit_interval_ms must be >= 0, got ", options.commit_interval_ms));
  }
  if (options.retry_interval_ms <= 0) {
    return absl::InvalidArgumentError(
        StrCat("decision log: retry_interval_ms must be > 0, got ", options.retry_interval_ms));
  }
  VIGIL_ASSIGN_OR_RETURN(std::unique_ptr<Journal> journal, Journal::Open(options.journal_path));
  std::unique_ptr<DecisionLog> log(new DecisionLog(store, std::move(options), std::move(journal)));
  log->writer_ = std::thread([p = log.get()] { p->Run(); });
  return log;
}

DecisionLog::DecisionLog(Store* store, DecisionLogOptions options, std::unique_ptr<Journal> journal)
    : store_(store),
      options_(std::move(options)),
      journal_(std::move(journal)),
      // Due now: a journal left by a previous run is replayed first.
      next_retry_(Clock::now()),
      boost_after_(std::chrono::milliseconds(options_.commit_interval_ms) + kBoostAfter) {}

DecisionLog::~DecisionLog() { Stop(); }

namespace {

constexpr int kWriterNice = 10;

// The writer's scheduling: SCHED_IDLE, or SCHED_OTHER at the nice value it
// had (kWriterNice). Linux applies both per thread.
bool SetIdle(pid_t tid, bool idle) {
  const sched_param p{};
  return sched_setscheduler(tid, idle ? SCHED_IDLE : SCHED_OTHER, &p) == 0;
}

// The writer storing a batch at idle priority (Run). It comes back to an
// ordinary priority before it takes a lock of the log's (mu_, the
// journal's): another thread may be waiting on that lock, and an idle thread
// preempted while it holds one can keep it for as long as the machine has
// other work. (Locks below it are taken at idle priority: the store's own,
// which only writes share now that reads have their connection, and the
// allocator's when it frees rows.)
struct IdleStore {
  pid_t tid = 0;
  bool idle = false;
  void Leave() {
    if (idle) SetIdle(tid, false);
    idle = false;
  }
};
thread_local IdleStore* t_idle_store = nullptr;  // the writer's, while it stores


}  // namespace

void DecisionLog::Submit(DecisionRow row) {
  decision_n_.submitted.fetch_add(1, std::memory_order_relaxed);
  bool queued = false;
  bool wake = false;
  bool full = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      std::vector<DecisionRow>& queue = decisions_.queued;
      if (queue.size() < options_.queue_capacity) {
        // The writer sleeps on an empty queue, or waits out the group
        // commit until a batch is full: only those two pushes wake it.
        wake = queue.empty() || queue.size() + 1 == FullBatch();
        queue.push_back(std::move(row));
        ++enqueued_;
        queued = true;
        // The writer, at idle priority, may be starved by other work on
        // the machine: it gets an ordinary one back when the queue is half
        // full or its oldest decision has waited kBoostAfter longer than
        // the group commit lets it wait.
        if (queue.size() == 1) {
          queued_since_ = Clock::now();
        } else if (!boosted_ && (queue.size() >= std::max<size_t>(1, options_.queue_capacity / 2) ||
                                 Clock::now() - queued_since_ > boost_after_)) {
          Boost();
        }
      } else {
        full = true;
      }
    }
  }
  if (queued) {
    if (wake) work_cv_.notify_one();
    return;
  }
  // Slow path, out of the lock: the queue is full (the store is slower than
  // the traffic) or the log is stopped.
  if (full) queue_full_.fetch_add(1, std::memory_order_relaxed);
  JournalRows(std::span<const DecisionRow>(&row, 1));
}

void DecisionLog::SubmitLabel(LabelRow row) {
  label_n_.submitted.fetch_add(1, std::memory_order_relaxed);
  bool queued = false;
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stop_) {
      std::vector<LabelRow>& queue = labels_.queued;
      // Labels are few: a queue of at least one even when decisions all go
      // through the journal (queue_capacity 0).
      if (queue.size() < std::max<size_t>(1, options_.queue_capacity)) {
        wake = queue.empty();
        queue.push_back(std::move(row));
        ++labels_enqueued_;
        queued = true;
      }
    }
  }
  if (queued) {
    if (wake) work_cv_.notify_one();
    return;
  }
  // The queue is full or the log stopped: to the journal, as a decision.
  JournalRows(std::span<const LabelRow>(&row, 1));
}

void DecisionLog::Boost() {
  // Before the writer starts there is nothing to raise (and tid 0 would be
  // this thread).
  if (boosted_ || writer_tid_ == 0) return;
  boosted_ = true;
  writer_boosts_.fetch_add(1, std::memory_order_relaxed);
  // Raised now if it is storing a batch at idle priority (else a no-op);
  // it sees boosted_ before its next batch.
  if (idle_ok_) SetIdle(writer_tid_, false);
}

bool DecisionLog::CanLeaveIdle() {
  // Leaving SCHED_IDLE needs CAP_SYS_NICE or an RLIMIT_NICE that allows the
  // writer's nice value: tried on a thread of its own.
  bool ok = false;
  std::thread probe([&ok] {
    const pid_t tid = gettid();
    setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kWriterNice);
    ok = SetIdle(tid, true) && SetIdle(tid, false);
  });
  probe.join();
  return ok;
}

template <typename Row>
void DecisionLog::JournalRows(std::span<const Row> rows) {
  BeforeLock();
  const absl::Status st = journal_->Append(rows);
  Counters& n = CountersOf(rows);
  if (st.ok()) {
    n.journaled.fetch_add(static_cast<int64_t>(rows.size()), std::memory_order_relaxed);
    return;
  }
  n.lost.fetch_add(static_cast<int64_t>(rows.size()), std::memory_order_relaxed);
  std::string message = StrCat(st.message(), " (a batch of ", rows.size(),
                               std::is_same_v<Row, LabelRow> ? " labels" : " decisions",
                               " lost: the store failed too)");
  BeforeLock();
  std::lock_guard<std::mutex> lock(mu_);
  lost_error_ = message;
  last_error_ = std::move(message);
}

void DecisionLog::BeforeLock() {
  if (t_idle_store != nullptr) t_idle_store->Leave();
  if (options_.check_priority_for_testing && sched_getscheduler(0) == SCHED_IDLE) {
    locked_at_idle_.fetch_add(1, std::memory_order_relaxed);
  }
}

void DecisionLog::SetLastError(std::string message) {
  BeforeLock();
  std::lock_guard<std::mutex> lock(mu_);
  last_error_ = std::move(message);
}

void DecisionLog::StoreTookWrites(int64_t bad_lines_before) {
  if (journal_->bad_lines() == bad_lines_before) last_error_.clear();
}

void DecisionLog::Run() {
  // The writer stores its batches with only the time the threads that
  // answer requests leave (SCHED_IDLE): at nice 10 it still ran its 1-2 ms
  // batches to the end of its time slice on a core the HTTP client or the
  // event loop was waiting for, 50 times a second, and that wait was the
  // p99 of bench/serve.sh. Everything else, and always while it holds mu_,
  // it does at an ordinary priority (nice 10): an idle thread can wait long
  // for a core, and Submit, on the thread that answers requests, must never
  // wait for it to run again to get mu_. It stores at an ordinary priority
  // too while it is behind (Submit: the queue half full, or its oldest
  // decision kBoostAfter old), replays the journal, or is waited for (Flush,
  // Stop). Linux: both are per thread.
  const pid_t tid = gettid();
  if (setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kWriterNice) != 0) {
    std::fprintf(stderr, "decision log: cannot lower the writer's priority: %s\n", std::strerror(errno));
  }
  if (!idle_ok_) {
    std::fprintf(stderr,
                 "decision log: the writer could not come back from idle priority (it needs "
                 "CAP_SYS_NICE or RLIMIT_NICE >= %d), so it stores decisions at nice %d, on time "
                 "the requests may need\n",
                 20 - kWriterNice, kWriterNice);
  }
  const auto interval = std::chrono::milliseconds(options_.retry_interval_ms);
  const auto commit_interval = std::chrono::milliseconds(options_.commit_interval_ms);
  std::unique_lock<std::mutex> lock(mu_);
  writer_tid_ = tid;
  while (true) {
    BeforeLock();  // (holding mu_: for the check; the writer is never idle here)
    const bool requested = replay_requested_ > replay_done_;
    const bool due =
        !stop_ && (degraded_ || journal_->pending() > 0) && Clock::now() >= next_retry_;
    if ((requested || due) && !degraded_ && !decisions_.queued.empty() && replay_after_ < 0) {
      // The journal holds rows the full queue spilled, submitted after
      // those still queued: the queue goes to the store first, so that the
      // store's newest row (Store::NewestDecisionId, where a restart after a
      // crash starts looking for lost decisions) has none submitted before
      // it missing. Once: rows queued from now on are later than the
      // journal's.
      replay_after_ = dequeued_ + static_cast<int64_t>(decisions_.queued.size());
      flush_target_ = std::max(flush_target_, replay_after_);
    }
    const bool queue_first = replay_after_ >= 0 && dequeued_ < replay_after_ && !degraded_;
    if ((requested || due) && !queue_first) {
      replay_after_ = -1;
      // Recovery is not routine work: at an ordinary priority, or a machine
      // busy with other work would leave the journal for long.
      Boost();
      const int64_t covers = replay_requested_;
      const int64_t bad_lines = journal_->bad_lines();
      lock.unlock();
      bool wrote = false;
      absl::Status st = ReplayJournal(&wrote);
      lock.lock();
      replay_done_ = std::max(replay_done_, covers);
      degraded_ = !st.ok();
      // An empty journal (the rows went nowhere: it failed too) says nothing
      // of the store: the next batch tries it, and the error stands until
      // the store takes one.
      if (st.ok() && wrote) StoreTookWrites(bad_lines);
      last_replay_ = std::move(st);
      next_retry_ = Clock::now() + interval;
      done_cv_.notify_all();
      continue;
    }

    if (!labels_.queued.empty()) {
      // Labels first, at once: they are few, and a GET of their decision
      // should not wait for a group commit to see them in the store. Like a
      // batch of decisions, to the journal while the store is failing.
      const size_t n = labels_.Take();
      const bool degraded = degraded_;
      const int64_t bad_lines = journal_->bad_lines();
      lock.unlock();
      labels_.FreeSpare();
      const std::span<const LabelRow> taken(labels_.inflight);
      absl::Status st;
      if (!degraded) {
        int64_t refused = 0;
        st = Put(taken, &refused);
        if (st.ok()) {
          label_n_.stored.fetch_add(static_cast<int64_t>(n) - refused, std::memory_order_relaxed);
        } else {
          SetLastError(std::string(st.message()));
        }
      }
      if (degraded || !st.ok()) JournalRows(taken);
      lock.lock();
      if (!st.ok()) {
        degraded_ = true;
        next_retry_ = Clock::now() + interval;
      } else if (!degraded) {
        StoreTookWrites(bad_lines);
      }
      labels_.Done();
      labels_done_ += static_cast<int64_t>(n);
      done_cv_.notify_all();
      continue;
    }

    if (!decisions_.queued.empty()) {
      // Group commit: wait for a full batch until next_commit_, unless Stop
      // or Flush wants the queue now; and no later than a retry of the store
      // (or a replay of the journal) that falls due first.
      if (!stop_ && flush_target_ <= dequeued_ && decisions_.queued.size() < FullBatch() &&
          Clock::now() < next_commit_) {
        const bool retry = degraded_ || journal_->pending() > 0;
        work_cv_.wait_until(lock, retry ? std::min(next_commit_, next_retry_) : next_commit_);
        continue;
      }
      // The whole queue at once (see Lane).
      const size_t n = decisions_.Take();
      bool degraded = degraded_;
      const int64_t bad_lines = journal_->bad_lines();
      // Stored at idle priority unless behind or degraded (a Boost meanwhile
      // raises it again: redone if it came before SetIdle took effect).
      IdleStore section{tid, idle_ok_ && !boosted_ && !degraded};
      const int64_t boosts = writer_boosts_.load(std::memory_order_relaxed);
      lock.unlock();
      if (section.idle) {
        SetIdle(tid, true);
        if (writer_boosts_.load(std::memory_order_relaxed) != boosts) {
          section.Leave();
        } else {
          // Going idle does not make the kernel switch at once: a thread
          // its wake-up preempted (the event loop, the HTTP client) would
          // wait for the next tick, up to 4 ms. Let it run now.
          sched_yield();
        }
      }
      t_idle_store = &section;
      decisions_.FreeSpare();  // the last batch's rows: at idle priority too

      // One transaction per batch_size rows.
      const std::vector<DecisionRow>& taken = decisions_.inflight;
      absl::Status st;
      for (size_t at = 0; at < n; at += options_.batch_size) {
        const std::span<const DecisionRow> batch(taken.data() + at, std::min(options_.batch_size, n - at));
        if (!degraded) {
          int64_t refused = 0;
          st = Put(batch, &refused);
          if (st.ok()) {
            decision_n_.stored.fetch_add(static_cast<int64_t>(batch.size()) - refused,
                                         std::memory_order_relaxed);
          } else {
            SetLastError(std::string(st.message()));
            degraded = true;
          }
        }
        // Until the next retry, the store is not asked again: batches would
        // each wait out its timeout while the queue fills.
        if (degraded) JournalRows(batch);
      }
      section.Leave();
      t_idle_store = nullptr;

      lock.lock();
      if (!st.ok()) {
        degraded_ = true;
        next_retry_ = Clock::now() + interval;
      } else if (!degraded) {
        StoreTookWrites(bad_lines);
      }
      // Only now, so that FindPending sees a row until it is in the store or
      // the journal.
      decisions_.Done();
      dequeued_ += static_cast<int64_t>(n);
      next_commit_ = Clock::now() + commit_interval;
      if (boosted_ && decisions_.queued.size() < FullBatch()) {
        // Caught up. What came meanwhile waits from now.
        queued_since_ = Clock::now();
        boosted_ = false;
      }
      done_cv_.notify_all();
      continue;
    }

    if (stop_) break;
    boosted_ = false;  // nothing to do: the next batch is stored at idle priority again
    if (degraded_ || journal_->pending() > 0) {
      work_cv_.wait_until(lock, next_retry_);
    } else {
      work_cv_.wait(lock);
    }
  }
  writer_done_ = true;
  writer_tid_ = 0;  // gone: a later Boost must not touch a thread id the system may reuse
  boosted_ = false;
  done_cv_.notify_all();
}

namespace {
absl::Status StoreRows(Store* store, std::span<const DecisionRow> rows) { return store->PutDecisions(rows); }
absl::Status StoreRows(Store* store, std::span<const LabelRow> rows) { return store->PutLabels(rows); }
}  // namespace

template <typename Row>
absl::Status DecisionLog::Put(std::span<const Row> rows, int64_t* refused) {
  absl::Status st = StoreRows(store_, rows);
  if (st.code() == absl::StatusCode::kInvalidArgument) {
    // A row the store will never take (InvalidArgument is about the rows,
    // not the store) must not hold the others back, or the journal would be
    // replayed and refused forever: store them one by one, set aside those
    // refused. A replay redone later may set one aside again.
    st = absl::OkStatus();
    for (const Row& row : rows) {
      absl::Status one = StoreRows(store_, std::span<const Row>(&row, 1));
      if (one.code() == absl::StatusCode::kInvalidArgument) {
        BeforeLock();
        one = journal_->SetAsideRow(row, std::string(one.message()));
        if (one.ok()) {
          ++*refused;
          CountersOf(rows).refused.fetch_add(1, std::memory_order_relaxed);
          SetLastError(journal_->last_bad_line());
          continue;
        }
      }
      if (!one.ok()) {
        st = std::move(one);
        break;
      }
    }
  }
  if (!st.ok()) store_errors_.fetch_add(1, std::memory_order_relaxed);
  return st;
}

absl::Status DecisionLog::ReplayJournal(bool* wrote) {
  // Rows of this attempt's file stored (not set aside): counted once the
  // file is deleted, as a replay may be redone.
  int64_t decisions = 0, labels = 0;
  const auto put = [&](auto rows, int64_t* stored) {
    int64_t refused = 0;
    absl::Status st = Put(rows, &refused);
    if (st.ok()) {
      *stored += static_cast<int64_t>(rows.size()) - refused;
      *wrote = true;
    }
    return st;
  };
  absl::Status st;
  // Round 0 replays a file left by an interrupted attempt, or the active
  // file; round 1 the active file if round 0 took a leftover one. So one
  // attempt covers every row journaled before it began.
  for (int round = 0; round < 2 && st.ok(); ++round) {
    absl::StatusOr<bool> have = journal_->BeginReplay();
    if (!have.ok()) {
      st = have.status();
      break;
    }
    if (!*have) break;
    const int64_t bad_before = journal_->bad_lines();
    decisions = labels = 0;
    st = journal_->ReplayBatches(
        options_.batch_size, [&](std::span<const DecisionRow> rows) { return put(rows, &decisions); },
        [&](std::span<const LabelRow> rows) { return put(rows, &labels); });
    if (journal_->bad_lines() != bad_before) SetLastError(journal_->last_bad_line());
    if (!st.ok()) break;
    absl::StatusOr<int64_t> lines = journal_->FinishReplay();
    if (!lines.ok()) {
      st = lines.status();
      break;
    }
    decision_n_.replayed.fetch_add(decisions, std::memory_order_relaxed);
    label_n_.replayed.fetch_add(labels, std::memory_order_relaxed);
  }
  if (!st.ok()) SetLastError(std::string(st.message()));
  return st;
}

DecisionLog::Mark DecisionLog::Submitted() const {
  std::lock_guard<std::mutex> lock(mu_);
  return Mark{enqueued_, labels_enqueued_, Lost()};
}

absl::Status DecisionLog::WaitWritten(std::unique_lock<std::mutex>& lock, Mark mark,
                                      Clock::time_point deadline, absl::Duration timeout) {
  if (mark.decisions > dequeued_ || mark.labels > labels_done_ || journal_->pending() > 0) Boost();
  if (mark.decisions > flush_target_) {  // not after a full batch or the group commit
    flush_target_ = mark.decisions;
    work_cv_.notify_one();
  }
  if (!done_cv_.wait_until(lock, deadline, [&] {
        return (dequeued_ >= mark.decisions && labels_done_ >= mark.labels) || writer_done_;
      })) {
    return absl::DeadlineExceededError(StrCat(
        "decision log: ", mark.decisions - dequeued_, " decisions and ", mark.labels - labels_done_,
        " labels still waiting for the store after ", absl::FormatDuration(timeout)));
  }
  if (const int64_t lost = Lost(); lost > mark.lost) {
    return absl::DataLossError(
        StrCat("decision log: ", lost - mark.lost,
               " decisions or labels could be neither stored nor journaled: ", lost_error_));
  }
  return absl::OkStatus();
}

absl::Status DecisionLog::WaitWritten(Mark mark, absl::Duration timeout) {
  // Clamped so that an infinite timeout does not overflow the clock.
  const auto deadline =
      Clock::now() + absl::ToChronoNanoseconds(std::min(timeout, absl::Hours(24 * 365)));
  std::unique_lock<std::mutex> lock(mu_);
  return WaitWritten(lock, mark, deadline, timeout);
}

absl::Status DecisionLog::Flush(absl::Duration timeout) {
  const auto deadline =
      Clock::now() + absl::ToChronoNanoseconds(std::min(timeout, absl::Hours(24 * 365)));
  std::unique_lock<std::mutex> lock(mu_);
  // (Lost rows are its own report, since the start: below.)
  VIGIL_RETURN_IF_ERROR(
      WaitWritten(lock, Mark{enqueued_, labels_enqueued_, INT64_MAX}, deadline, timeout));
  if (journal_->pending() > 0 || degraded_) {
    if (!writer_done_) {
      const int64_t request = ++replay_requested_;
      work_cv_.notify_one();
      if (!done_cv_.wait_until(lock, deadline,
                               [&] { return replay_done_ >= request || writer_done_; })) {
        return absl::DeadlineExceededError(StrCat("decision log: replay of the journal ",
                                                  journal_->path(), " not finished after ",
                                                  absl::FormatDuration(timeout)));
      }
    }
    if (journal_->pending() > 0) {
      const std::string why = !last_replay_.ok() ? std::string(last_replay_.message())
                              : writer_done_     ? std::string("the decision log is stopped")
                                                 : last_error_;
      return absl::Status(last_replay_.ok() ? absl::StatusCode::kUnavailable : last_replay_.code(),
                          StrCat("decision log: ", journal_->pending(),
                                 " rows still in the journal ", journal_->path(), ": ", why));
    }
  }
  const int64_t lost = decision_n_.lost.load(std::memory_order_relaxed);
  const int64_t labels_lost = label_n_.lost.load(std::memory_order_relaxed);
  if (lost + labels_lost > 0) {
    return absl::DataLossError(
        StrCat("decision log: ", lost, " decisions and ", labels_lost,
               " labels could be neither stored nor journaled: ", lost_error_));
  }
  return absl::OkStatus();
}

void DecisionLog::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    Boost();  // someone waits for the writer now
  }
  work_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

DecisionLogStats DecisionLog::Stats() const {
  DecisionLogStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.queue_depth = static_cast<int64_t>(decisions_.queued.size() + decisions_.inflight.size());
    s.last_error = last_error_;
  }
  s.submitted = decision_n_.submitted.load(std::memory_order_relaxed);
  s.stored = decision_n_.stored.load(std::memory_order_relaxed);
  s.journaled = decision_n_.journaled.load(std::memory_order_relaxed);
  s.replayed = decision_n_.replayed.load(std::memory_order_relaxed);
  s.store_errors = store_errors_.load(std::memory_order_relaxed);
  s.journal_pending = journal_->pending();
  s.queue_full = queue_full_.load(std::memory_order_relaxed);
  s.lost = decision_n_.lost.load(std::memory_order_relaxed);
  s.journal_bad_lines = journal_->bad_lines();
  s.refused = decision_n_.refused.load(std::memory_order_relaxed);
  s.writer_boosts = writer_boosts_.load(std::memory_order_relaxed);
  s.labels_submitted = label_n_.submitted.load(std::memory_order_relaxed);
  s.labels_stored = label_n_.stored.load(std::memory_order_relaxed);
  s.labels_journaled = label_n_.journaled.load(std::memory_order_relaxed);
  s.labels_replayed = label_n_.replayed.load(std::memory_order_relaxed);
  s.labels_lost = label_n_.lost.load(std::memory_order_relaxed);
  s.labels_refused = label_n_.refused.load(std::memory_order_relaxed);
  return s;
}

std::vector<LabelRow> DecisionLog::FindPendingLabels(std::string_view event_id) const {
  std::vector<LabelRow> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    labels_.ForEachPending([&](const LabelRow& l) {
      if (l.target_event_id == event_id) queued.push_back(l);
      return false;
    });
  }
  std::reverse(queued.begin(), queued.end());  // in arrival order
  // After the queue: a label leaves it only once it is in the store or the
  // journal. The journal's are older than the queue's, unless the journal
  // took a label after it was seen queued: then it is in both, once here.
  std::vector<LabelRow> found = journal_->FindLabels(event_id);
  const size_t journaled = found.size();
  for (LabelRow& l : queued) {
    bool twice = false;
    for (size_t i = 0; i < journaled && !twice; ++i) twice = found[i].label_id == l.label_id;
    if (!twice) found.push_back(std::move(l));
  }
  return found;
}

std::optional<DecisionRow> DecisionLog::FindPending(std::string_view event_id) const {
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Newest first: the usual question is about a decision just made.
    const DecisionRow* found = nullptr;
    decisions_.ForEachPending([&](const DecisionRow& r) {
      if (r.event_id == event_id) found = &r;
      return found != nullptr;
    });
    if (found != nullptr) return *found;
  }
  // After the queue: a row leaves it only once it is in the store or the
  // journal.
  return journal_->Find(event_id);
}

}  // namespace vigil::store
