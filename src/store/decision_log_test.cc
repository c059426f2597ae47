#include "store/decision_log.h"

#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/journal.h"
#include "store/store_test_util.h"

namespace vigil::store {
namespace {

using ::testing::HasSubstr;
using testing::Label;
using testing::Row;
using testing::SqliteLock;
using testing::TempDir;

// Polls `done` until it holds or 20 s have passed; whether it held.
bool WaitFor(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// A SQLite store and the journal path of a decision log, in a temporary
// directory.
class DecisionLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_path_ = dir_.File("vigil.db");
    auto store = OpenStore(StrCat("sqlite:", db_path_));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    options_.journal_path = dir_.File("decisions.jsonl");
    options_.retry_interval_ms = 50;
    options_.check_priority_for_testing = true;
  }

  std::unique_ptr<DecisionLog> Start() {
    auto log = DecisionLog::Start(store_.get(), options_);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? *std::move(log) : nullptr;
  }

  int64_t Count() {
    auto n = store_->CountDecisions();
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? *n : -1;
  }

  // Nothing left in the journal's files.
  void ExpectJournalEmpty() {
    EXPECT_EQ(testing::ReadAll(options_.journal_path), "");
    EXPECT_FALSE(testing::Exists(options_.journal_path + ".replay"));
  }

  TempDir dir_;
  std::string db_path_;
  std::unique_ptr<Store> store_;
  DecisionLogOptions options_;
};

TEST_F(DecisionLogTest, StoresEveryDecisionSubmittedFromManyThreads) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) log->Submit(Row(t * kPerThread + i));
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), kThreads * kPerThread);
  const DecisionLogStats s = log->Stats();
  EXPECT_EQ(s.submitted, kThreads * kPerThread);
  EXPECT_EQ(s.stored, kThreads * kPerThread);
  EXPECT_EQ(s.journaled, 0);
  EXPECT_EQ(s.store_errors, 0);
  EXPECT_EQ(s.queue_depth, 0);
  EXPECT_EQ(s.last_error, "");
  ExpectJournalEmpty();
}

// What a saved state waits for (serve's Engine): the rows submitted before
// its mark in the store, without waiting out a group commit of a minute.
TEST_F(DecisionLogTest, WaitWrittenReturnsOnceTheMarkedRowsAreStored) {
  options_.commit_interval_ms = 60000;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  // The first commit starts the group commit's minute.
  log->Submit(Row(100));
  ASSERT_TRUE(WaitFor([&] { return Count() == 1; }));
  for (int i = 0; i < 3; ++i) log->Submit(Row(i));
  log->SubmitLabel(Label(0, "e0"));
  const DecisionLog::Mark mark = log->Submitted();
  EXPECT_EQ(mark.decisions, 4);
  EXPECT_EQ(mark.labels, 1);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(log->WaitWritten(mark, absl::Seconds(30)).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_EQ(Count(), 4);
  EXPECT_TRUE(*store_->HasLabel(Label(0, "e0").label_id));
}

// The store-failure test: another connection holds the database's
// write lock, so every store write fails with SQLITE_BUSY after the busy
// timeout, while two threads submit. Submit must not wait for the store,
// decisions must go to the journal, and once the lock is gone every one of
// them must be in the store exactly once.
TEST_F(DecisionLogTest, LockedStoreSpillsToTheJournalWithoutBlockingAndLosesNothing) {
  options_.batch_size = 256;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  SqliteLock lock(db_path_);

  constexpr int kN = 5000;
  constexpr int kThreads = 2;
  std::atomic<int64_t> max_submit_ns{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      int64_t worst = 0;
      for (int i = t; i < kN; i += kThreads) {
        const auto t0 = std::chrono::steady_clock::now();
        log->Submit(Row(i));
        worst = std::max<int64_t>(
            worst, std::chrono::nanoseconds(std::chrono::steady_clock::now() - t0).count());
      }
      int64_t seen = max_submit_ns.load();
      while (worst > seen && !max_submit_ns.compare_exchange_weak(seen, worst)) {
      }
    });
  }
  for (auto& t : threads) t.join();
  // A sanity bound, not a timing test: a Submit that waited for the store
  // would take the busy timeout (50 ms) at least, once per batch.
  EXPECT_LT(max_submit_ns.load(), 100'000'000) << "Submit blocked";

  // While the lock is held every store write fails, so the writer must end
  // up journaling; wait for it rather than for a time.
  ASSERT_TRUE(WaitFor([&] { return log->Stats().journaled > 0; }));
  EXPECT_EQ(Count(), 0);
  DecisionLogStats s = log->Stats();
  EXPECT_GT(s.store_errors, 0);
  EXPECT_GT(s.journal_pending, 0);
  EXPECT_THAT(s.last_error, HasSubstr("locked"));

  lock.Release();
  const absl::Status flushed = log->Flush(absl::Seconds(30));
  ASSERT_TRUE(flushed.ok()) << flushed;

  EXPECT_EQ(Count(), kN);  // event_id is the primary key: N distinct decisions
  for (int i : {0, 1, 2499, 4999}) {
    auto got = store_->GetDecision(Row(i).event_id);
    ASSERT_TRUE(got.ok() && got->has_value()) << i;
    EXPECT_EQ((*got)->json, Row(i).json);
  }
  s = log->Stats();
  EXPECT_EQ(s.submitted, kN);
  EXPECT_EQ(s.stored + s.journaled, kN);
  EXPECT_GT(s.journaled, 0);
  EXPECT_EQ(s.replayed, s.journaled);
  EXPECT_EQ(s.journal_pending, 0);
  EXPECT_EQ(s.queue_depth, 0);
  EXPECT_EQ(s.lost, 0);
  ExpectJournalEmpty();
  // The failed batches were journaled at an ordinary priority.
  EXPECT_EQ(log->locked_at_idle_for_testing(), 0);
}

TEST_F(DecisionLogTest, RetriesTheStoreOnItsOwnAfterRetryInterval) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  SqliteLock lock(db_path_);
  for (int i = 0; i < 300; ++i) log->Submit(Row(i));
  ASSERT_TRUE(WaitFor([&] { return log->Stats().journaled == 300; }));
  lock.Release();
  // No Flush: the writer retries every retry_interval_ms by itself.
  ASSERT_TRUE(WaitFor([&] { return log->Stats().journal_pending == 0; }));
  EXPECT_EQ(Count(), 300);
  // New decisions go to the store again, not through the journal.
  log->Submit(Row(300));
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 301);
  EXPECT_EQ(log->Stats().stored, 1);
  ExpectJournalEmpty();
}

TEST_F(DecisionLogTest, FlushReturnsTheStoreErrorWhileTheJournalHoldsRows) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  SqliteLock lock(db_path_);
  for (int i = 0; i < 10; ++i) log->Submit(Row(i));
  const absl::Status st = log->Flush(absl::Seconds(30));
  ASSERT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(st.message(), HasSubstr("10 rows still in the journal"));
  EXPECT_THAT(st.message(), HasSubstr("locked"));
  lock.Release();
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 10);
}

TEST_F(DecisionLogTest, RestartReplaysTheJournalLeftByThePreviousRun) {
  {
    SqliteLock lock(db_path_);
    auto log = Start();
    ASSERT_NE(log, nullptr);
    for (int i = 0; i < 100; ++i) log->Submit(Row(i));
    log->Stop();  // the store fails: the queue goes to the journal
    const DecisionLogStats s = log->Stats();
    EXPECT_EQ(s.journaled, 100);
    EXPECT_EQ(s.journal_pending, 100);
  }
  EXPECT_EQ(Count(), 0);
  auto log = Start();
  ASSERT_NE(log, nullptr);
  // Start alone replays it, before any Flush.
  ASSERT_TRUE(WaitFor([&] { return log->Stats().journal_pending == 0; }));
  EXPECT_EQ(Count(), 100);
  EXPECT_EQ(log->Stats().replayed, 100);
  ExpectJournalEmpty();
}

TEST_F(DecisionLogTest, RestartFinishesAnInterruptedReplayThenReplaysTheJournal) {
  // A previous run was replaying 50 decisions, had stored the first 10, and
  // had journaled 30 more, when it died.
  {
    auto journal = Journal::Open(options_.journal_path);
    ASSERT_TRUE(journal.ok()) << journal.status();
    std::vector<DecisionRow> rows;
    for (int i = 0; i < 50; ++i) rows.push_back(Row(i));
    ASSERT_TRUE((*journal)->Append(rows).ok());
    ASSERT_TRUE(*(*journal)->BeginReplay());
    ASSERT_TRUE(store_->PutDecisions(std::span(rows).first(10)).ok());
    rows.clear();
    for (int i = 50; i < 80; ++i) rows.push_back(Row(i));
    ASSERT_TRUE((*journal)->Append(rows).ok());
  }
  ASSERT_TRUE(testing::Exists(options_.journal_path + ".replay"));
  auto log = Start();
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->Stats().journal_pending, 80);
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 80);
  EXPECT_EQ(log->Stats().replayed, 80);
  ExpectJournalEmpty();
}

TEST_F(DecisionLogTest, FullQueueSpillsToTheJournalAndLosesNothing) {
  options_.queue_capacity = 2;
  options_.batch_size = 1;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  // Each batch is a committed transaction; Submit is far faster, so the
  // queue soon overflows. Submit until it has, whatever the machine.
  int n = 0;
  while (log->Stats().queue_full == 0 && n < 200000) log->Submit(Row(n++));
  for (int k = 0; k < 100; ++k) log->Submit(Row(n++));
  ASSERT_GT(log->Stats().queue_full, 0);
  ASSERT_TRUE(log->Flush(absl::Seconds(60)).ok());
  EXPECT_EQ(Count(), n);
  const DecisionLogStats s = log->Stats();
  EXPECT_EQ(s.submitted, n);
  EXPECT_EQ(s.stored + s.journaled, n);
  EXPECT_EQ(s.journaled, s.queue_full);
  EXPECT_EQ(s.replayed, s.journaled);
  EXPECT_EQ(s.store_errors, 0);
  ExpectJournalEmpty();
}

TEST_F(DecisionLogTest, ZeroQueueCapacitySendsEveryDecisionThroughTheJournal) {
  options_.queue_capacity = 0;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  for (int i = 0; i < 50; ++i) log->Submit(Row(i));
  EXPECT_EQ(log->Stats().queue_full, 50);
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 50);
  EXPECT_EQ(log->Stats().replayed, 50);
}

TEST_F(DecisionLogTest, FindPendingSeesADecisionUntilItIsInTheStore) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  EXPECT_FALSE(log->FindPending("e1").has_value());
  SqliteLock lock(db_path_);
  log->Submit(Row(1));
  // In the queue, being stored, or journaled: found wherever it is.
  auto found = log->FindPending("e1");
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->json, Row(1).json);
  ASSERT_TRUE(WaitFor([&] { return log->Stats().journaled == 1; }));
  ASSERT_TRUE(log->FindPending("e1").has_value());  // now from the journal
  EXPECT_FALSE(log->FindPending("e2").has_value());
  lock.Release();
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_FALSE(log->FindPending("e1").has_value());
  EXPECT_TRUE(store_->GetDecision("e1")->has_value());
}

// Group commit: after a transaction, fewer than batch_size decisions wait
// for commit_interval_ms (an hour here, so nothing else can store them);
// a full batch, Flush and Stop each store at once.
TEST_F(DecisionLogTest, GroupCommitWaitsForAFullBatchOrFlushOrStop) {
  options_.batch_size = 4;
  options_.commit_interval_ms = 3600 * 1000;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  log->Submit(Row(0));  // the first decision after a quiet spell: stored at once
  ASSERT_TRUE(WaitFor([&] { return log->Stats().stored == 1; }));
  for (int i = 1; i <= 3; ++i) log->Submit(Row(i));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(log->Stats().stored, 1);
  EXPECT_EQ(log->Stats().queue_depth, 3);
  EXPECT_TRUE(log->FindPending("e2").has_value());
  log->Submit(Row(4));  // a full batch
  ASSERT_TRUE(WaitFor([&] { return log->Stats().stored == 5; }));
  log->Submit(Row(5));
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());  // an hour early
  EXPECT_EQ(Count(), 6);
  log->Submit(Row(6));
  log->Stop();
  EXPECT_EQ(Count(), 7);
  EXPECT_EQ(log->Stats().journaled, 0);
}

// Threads of this process under SCHED_IDLE.
int IdleThreads() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.' && sched_getscheduler(std::atoi(e->d_name)) == SCHED_IDLE) ++n;
  }
  closedir(d);
  return n;
}

// Whether a thread at nice 10 may leave SCHED_IDLE here (CAP_SYS_NICE, or
// an RLIMIT_NICE of at least 10).
bool CanLeaveIdle() {
  bool ok = false;
  std::thread([&ok] {
    const sched_param p{};
    ok = setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10) == 0 &&
         sched_setscheduler(0, SCHED_IDLE, &p) == 0 && sched_setscheduler(0, SCHED_OTHER, &p) == 0;
  }).join();
  return ok;
}

// The real store behind a gate: PutDecisions waits while the gate is
// closed, as a database that has stopped answering would (without failing),
// and takes `delay` longer than the real one when it is open.
class GatedStore final : public Store {
 public:
  explicit GatedStore(Store* real) : real_(real) {}
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  void Open(std::chrono::milliseconds delay = {}) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = false;
      delay_ = delay;
    }
    cv_.notify_all();
  }
  std::string url() const override { return real_->url(); }
  // Calls that have reached the gate.
  int arrived() {
    std::lock_guard<std::mutex> lock(mu_);
    return arrived_;
  }
  absl::Status PutDecisions(std::span<const DecisionRow> rows) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++arrived_;
    cv_.wait(lock, [this] { return !closed_; });
    const std::chrono::milliseconds delay = delay_;
    lock.unlock();
    std::this_thread::sleep_for(delay);
    return real_->PutDecisions(rows);
  }
  absl::StatusOr<std::optional<DecisionRow>> GetDecision(std::string_view id) override {
    return real_->GetDecision(id);
  }
  absl::StatusOr<int64_t> CountDecisions() override { return real_->CountDecisions(); }
  absl::StatusOr<std::optional<std::string>> NewestDecisionId() override {
    return real_->NewestDecisionId();
  }
  absl::Status PutLabels(std::span<const LabelRow> rows) override { return real_->PutLabels(rows); }
  absl::StatusOr<bool> HasLabel(std::string_view id) override { return real_->HasLabel(id); }
  absl::StatusOr<std::vector<LabelRow>> LabelsForEvent(std::string_view id) override {
    return real_->LabelsForEvent(id);
  }
  absl::Status PutKey(const KeyRow& key) override { return real_->PutKey(key); }
  absl::StatusOr<std::vector<KeyRow>> Keys() override { return real_->Keys(); }

 private:
  Store* const real_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  std::chrono::milliseconds delay_{0};
  int arrived_ = 0;
};

// The writer stores its batches at idle priority (at nice 10 it held a core
// for its whole time slice while the HTTP client waited), and everything
// else, holding the queue's mutex above all, at an ordinary one: Submit must
// never wait for an idle thread to get a core. While its queue is half full
// it stores at an ordinary priority, until it has caught up.
TEST_F(DecisionLogTest, WriterStoresAtIdlePriorityNeverHoldsTheLockThereAndIsRaisedWhenBehind) {
  options_.queue_capacity = 64;
  options_.batch_size = 1024;
  options_.commit_interval_ms = 0;
  const int idle = CanLeaveIdle() ? 1 : 0;  // else it never goes idle: it could not come back
  GatedStore gated(store_.get());
  auto started = DecisionLog::Start(&gated, options_);
  ASSERT_TRUE(started.ok()) << started.status();
  DecisionLog& log = **started;
  gated.Close();
  log.Submit(Row(0));  // the writer takes it, and waits in the store: at idle priority
  ASSERT_TRUE(WaitFor([&] { return gated.arrived() == 1; }));
  EXPECT_EQ(IdleThreads(), idle);
  for (int i = 1; i < 32; ++i) log.Submit(Row(i));
  EXPECT_EQ(log.Stats().writer_boosts, 0);
  log.Submit(Row(32));  // the 32nd waiting: half the queue
  EXPECT_EQ(log.Stats().writer_boosts, 1);
  EXPECT_EQ(IdleThreads(), 0);  // raised in the middle of its batch
  for (int i = 33; i < 40; ++i) log.Submit(Row(i));
  EXPECT_EQ(log.Stats().writer_boosts, 1);  // once per time it falls behind
  gated.Open();
  ASSERT_TRUE(log.Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 40);
  EXPECT_EQ(IdleThreads(), 0);  // waiting for work
  // Caught up: the next batch is stored at idle priority again.
  const int before = gated.arrived();
  gated.Close();
  log.Submit(Row(40));
  ASSERT_TRUE(WaitFor([&] { return gated.arrived() == before + 1; }));
  EXPECT_EQ(IdleThreads(), idle);
  gated.Open();
  ASSERT_TRUE(log.Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 41);
  EXPECT_EQ(log.Stats().journaled, 0);
  log.Stop();
  EXPECT_EQ(log.locked_at_idle_for_testing(), 0);
}

// A writer that is not getting to the queue (starved of idle time; here,
// held by a store that stopped answering) must not leave decisions waiting
// for long: one that has waited 250 ms past the group commit raises it. And
// once it has caught up, the raises stop.
TEST_F(DecisionLogTest, WriterIsRaisedWhenItsOldestDecisionHasWaitedTooLong) {
  options_.commit_interval_ms = 0;
  GatedStore gated(store_.get());
  auto started = DecisionLog::Start(&gated, options_);
  ASSERT_TRUE(started.ok()) << started.status();
  DecisionLog& log = **started;
  gated.Close();
  log.Submit(Row(0));  // the writer takes it, and waits in the store
  ASSERT_TRUE(WaitFor([&] { return gated.arrived() == 1; }));
  log.Submit(Row(1));
  log.Submit(Row(2));
  EXPECT_EQ(log.Stats().writer_boosts, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  log.Submit(Row(3));
  EXPECT_EQ(log.Stats().writer_boosts, 1);
  log.Submit(Row(4));
  EXPECT_EQ(log.Stats().writer_boosts, 1);
  // The store answers again, in 3 ms a batch; steady traffic (two decisions
  // every 2 ms) goes on while the writer catches up, and, once it has,
  // raises it no more: a decision that came while it was raised starts the
  // clock too.
  gated.Open(std::chrono::milliseconds(3));
  for (int i = 5; i < 405; i += 2) {
    log.Submit(Row(i));
    log.Submit(Row(i + 1));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(log.Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 405);
  // This one and the final Flush's; on a machine busy enough to starve the
  // idle writer for 250 ms at a time, one or two more (a stale clock raised
  // it on every batch: dozens).
  EXPECT_LE(log.Stats().writer_boosts, 5);
}

// Decisions waiting out a group commit are not late: no raise.
TEST_F(DecisionLogTest, GroupCommitWaitDoesNotRaiseTheWriter) {
  options_.commit_interval_ms = 3600 * 1000;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  log->Submit(Row(0));  // stored at once, then the writer waits for a batch
  ASSERT_TRUE(WaitFor([&] { return log->Stats().stored == 1; }));
  log->Submit(Row(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  log->Submit(Row(2));
  EXPECT_EQ(log->Stats().writer_boosts, 0);
}

// Rows the full queue spilled to the journal were submitted after those
// still queued: the queue reaches the store before the journal is replayed,
// so the store's newest row has no row submitted before it missing (where a
// restart after a crash starts looking for lost decisions).
TEST_F(DecisionLogTest, TheQueueIsStoredBeforeTheJournalItSpilledIntoIsReplayed) {
  options_.queue_capacity = 2;
  options_.batch_size = 1;
  GatedStore gate(store_.get());
  gate.Close();
  auto started = DecisionLog::Start(&gate, options_);
  ASSERT_TRUE(started.ok()) << started.status();
  std::unique_ptr<DecisionLog> log = *std::move(started);
  log->Submit(Row(0));
  ASSERT_TRUE(WaitFor([&] { return gate.arrived() == 1; }));  // the writer holds row 0
  log->Submit(Row(1));
  log->Submit(Row(2));
  log->Submit(Row(3));  // the queue is full: to the journal
  ASSERT_EQ(log->Stats().queue_full, 1);
  // Its replay is due well before the store answers again.
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * options_.retry_interval_ms));
  gate.Open();
  ASSERT_TRUE(log->Flush(absl::Seconds(20)).ok());
  EXPECT_EQ(Count(), 4);
  auto newest = store_->NewestDecisionId();
  ASSERT_TRUE(newest.ok() && newest->has_value());
  EXPECT_EQ(**newest, Row(3).event_id);
}

// Labels go through the writer too (a label stored on the caller's thread
// made scoring wait for a transaction); while on their way, FindPendingLabels
// finds them. A label the store fails to take goes to the journal, as a
// decision does, and a replay stores it.
TEST_F(DecisionLogTest, LabelsAreStoredByTheWriterAndGoThroughTheJournalWhenTheStoreFails) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  log->SubmitLabel(Label(1, "e7"));
  log->SubmitLabel(Label(2, "e7"));
  log->SubmitLabel(Label(3, "e8"));
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  auto stored = store_->LabelsForEvent("e7");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->size(), 2u);
  EXPECT_EQ(log->Stats().labels_stored, 3);
  EXPECT_TRUE(log->FindPendingLabels("e7").empty());

  {
    SqliteLock lock(db_path_);  // every write now waits out the busy timeout, then fails
    log->SubmitLabel(Label(4, "e9"));
    // Queued, being written, or journaled: found all the while, once.
    for (int i = 0; i < 20; ++i) {
      const std::vector<LabelRow> pending = log->FindPendingLabels("e9");
      ASSERT_EQ(pending.size(), 1u);
      EXPECT_EQ(pending[0].label_id, "lab4");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ASSERT_TRUE(WaitFor([&] { return log->Stats().labels_journaled == 1; }));
    const std::vector<LabelRow> pending = log->FindPendingLabels("e9");
    ASSERT_EQ(pending.size(), 1u);
    EXPECT_EQ(pending[0].json, Label(4, "e9").json);
    EXPECT_THAT(log->Stats().last_error, HasSubstr("locked"));
    const absl::Status st = log->Flush(absl::Seconds(30));
    EXPECT_THAT(st.message(), HasSubstr("1 rows still in the journal"));
  }
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  stored = store_->LabelsForEvent("e9");
  ASSERT_TRUE(stored.ok()) << stored.status();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ((*stored)[0].json, Label(4, "e9").json);
  EXPECT_TRUE(log->FindPendingLabels("e9").empty());
  DecisionLogStats s = log->Stats();
  EXPECT_EQ(s.labels_submitted, 4);
  EXPECT_EQ(s.labels_stored, 3);
  EXPECT_EQ(s.labels_journaled, 1);
  EXPECT_EQ(s.labels_replayed, 1);
  EXPECT_EQ(s.labels_lost, 0);
  EXPECT_EQ(s.journaled, 0);
  EXPECT_EQ(s.replayed, 0) << "labels are not counted as decisions";
  ExpectJournalEmpty();

  log->Stop();
  log->SubmitLabel(Label(5, "e9"));  // after Stop: to the journal
  s = log->Stats();
  EXPECT_EQ(s.labels_journaled, 2);
  EXPECT_EQ(log->FindPendingLabels("e9").size(), 1u);
  log.reset();
  log = Start();  // replays it
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  stored = store_->LabelsForEvent("e9");
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->size(), 2u);
  EXPECT_EQ(log->Stats().labels_replayed, 1);
  ExpectJournalEmpty();
}

// Once the store has failed, labels go straight to the journal until the
// next retry, as decisions do: each label would otherwise wait out the
// store's busy timeout. A full label queue spills to the journal too.
TEST_F(DecisionLogTest, LabelsGoStraightToTheJournalWhileTheStoreIsDownOrTheirQueueIsFull) {
  options_.retry_interval_ms = 60'000;  // no retry during the test but the one Flush asks for
  options_.queue_capacity = 2;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  SqliteLock lock(db_path_);
  log->SubmitLabel(Label(1, "e1"));
  ASSERT_TRUE(WaitFor([&] { return log->Stats().labels_journaled == 1; }));
  EXPECT_EQ(log->Stats().store_errors, 1);
  for (int i = 2; i <= 40; ++i) log->SubmitLabel(Label(i, StrCat("e", i)));
  ASSERT_TRUE(WaitFor([&] { return log->Stats().labels_journaled == 40; }));
  DecisionLogStats s = log->Stats();
  EXPECT_EQ(s.store_errors, 1) << "the store was asked again before the retry was due";
  EXPECT_EQ(s.labels_stored, 0);
  EXPECT_EQ(s.labels_lost, 0);
  EXPECT_EQ(s.journal_pending, 40);
  lock.Release();
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  for (int i : {1, 2, 40}) {
    auto stored = store_->LabelsForEvent(StrCat("e", i));
    ASSERT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(stored->size(), 1u) << i;
  }
  s = log->Stats();
  EXPECT_EQ(s.labels_replayed, 40);
  ExpectJournalEmpty();
}

// A queue smaller than a batch: the group commit waits for a full queue,
// not for a batch it could never hold (the rest would go to the journal).
TEST_F(DecisionLogTest, GroupCommitWithAQueueSmallerThanABatchCommitsWhenTheQueueIsFull) {
  options_.batch_size = 1024;
  options_.queue_capacity = 4;
  options_.commit_interval_ms = 3600 * 1000;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  log->Submit(Row(0));
  ASSERT_TRUE(WaitFor([&] { return log->Stats().stored == 1; }));
  for (int i = 1; i <= 4; ++i) log->Submit(Row(i));
  ASSERT_TRUE(WaitFor([&] { return log->Stats().stored == 5; }));
  EXPECT_EQ(log->Stats().journaled, 0);
  EXPECT_EQ(log->Stats().queue_full, 0);
}

// While the store fails, a partial batch waiting for the group commit does
// not hold back the retry: the journal is replayed at retry_interval_ms.
TEST_F(DecisionLogTest, GroupCommitDoesNotPostponeTheRetryOfAFailedStore) {
  options_.commit_interval_ms = 3600 * 1000;
  auto log = Start();
  ASSERT_NE(log, nullptr);
  {
    SqliteLock lock(db_path_);
    log->Submit(Row(0));  // committed at once, fails: journaled
    ASSERT_TRUE(WaitFor([&] { return log->Stats().journaled == 1; }));
    log->Submit(Row(1));  // a partial batch: waits for the group commit
  }
  // Row(0), replayed at the retry (counted once its journal file is done).
  ASSERT_TRUE(WaitFor([&] { return log->Stats().replayed == 1; }));
  EXPECT_EQ(Count(), 1);
  EXPECT_TRUE(log->FindPending("e1").has_value());
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 2);
}

TEST_F(DecisionLogTest, ADecisionTheStoreRefusesIsSetAsideAndDoesNotHoldTheOthersBack) {
  testing::RefuseEventId(db_path_, "poison");
  DecisionRow poison = Row(0);
  poison.event_id = "poison";
  auto log = Start();
  ASSERT_NE(log, nullptr);
  // From the queue...
  log->Submit(Row(1));
  log->Submit(poison);
  log->Submit(Row(2));
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 2);
  // ...and from the journal.
  SqliteLock lock(db_path_);
  log->Submit(Row(3));
  log->Submit(poison);
  ASSERT_TRUE(WaitFor([&] { return log->Stats().journaled == 2; }));
  lock.Release();
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 3);

  const DecisionLogStats s = log->Stats();
  EXPECT_EQ(s.refused, 2);
  EXPECT_EQ(s.journal_bad_lines, 2);
  EXPECT_EQ(s.stored, 2);
  EXPECT_EQ(s.replayed, 1);
  EXPECT_THAT(s.last_error, HasSubstr("decision 'poison' refused by the store"));
  const std::string bad = testing::ReadAll(options_.journal_path + ".bad");
  EXPECT_EQ(std::count(bad.begin(), bad.end(), '\n'), 2);
  EXPECT_EQ(DecisionFromJson(bad.substr(0, bad.find('\n')))->json, poison.json);
  ExpectJournalEmpty();
  EXPECT_EQ(log->locked_at_idle_for_testing(), 0);  // it set the poison aside at an ordinary priority
}

// last_error is the store's state on /readyz: an outage, or a row set
// aside, is reported until the store takes writes again (a replay, or a
// batch from the queue), not for ever.
TEST_F(DecisionLogTest, ForgetsTheLastErrorOnceTheStoreTakesWritesAgain) {
  testing::RefuseEventId(db_path_, "poison");
  auto log = Start();
  ASSERT_NE(log, nullptr);
  {
    SqliteLock lock(db_path_);
    for (int i = 0; i < 10; ++i) log->Submit(Row(i));
    ASSERT_TRUE(WaitFor([&] { return log->Stats().journaled == 10; }));
    EXPECT_THAT(log->Stats().last_error, HasSubstr("locked"));
  }
  // The journal replayed: the outage is over.
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 10);
  EXPECT_EQ(log->Stats().last_error, "");

  // A row set aside from a batch that is otherwise stored is reported...
  DecisionRow poison = Row(0);
  poison.event_id = "poison";
  log->Submit(Row(10));
  log->Submit(poison);  // last: in the last batch however the writer takes them
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_THAT(log->Stats().last_error, HasSubstr("decision 'poison' refused by the store"));
  // ...until the next batch the store takes whole.
  log->Submit(Row(11));
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 12);
  EXPECT_EQ(log->Stats().last_error, "");
}

// A file size limit of 0 for the whole process while it lives: a write
// that would extend a regular file fails with EFBIG (SIGXFSZ ignored), so
// the journal can take nothing, as on a full disk.
class NoRoomForFiles {
 public:
  NoRoomForFiles() : old_handler_(signal(SIGXFSZ, SIG_IGN)) {
    EXPECT_EQ(getrlimit(RLIMIT_FSIZE, &saved_), 0);
    rlimit none = saved_;
    none.rlim_cur = 0;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &none), 0);
  }
  ~NoRoomForFiles() {
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &saved_), 0);
    signal(SIGXFSZ, old_handler_);
  }

 private:
  sighandler_t old_handler_;
  rlimit saved_{};
};

// With the store down and no room for the journal, decisions are lost; a
// retry then finds the journal empty, which says nothing of the store: the
// error stands (and /readyz says "degraded") until the store takes a batch.
TEST_F(DecisionLogTest, KeepsTheStoreErrorWhenTheJournalItRetriesIsEmpty) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  {
    SqliteLock lock(db_path_);
    NoRoomForFiles full;
    const DecisionLog::Mark before = log->Submitted();
    for (int i = 0; i < 10; ++i) log->Submit(Row(i));
    ASSERT_TRUE(WaitFor([&] { return log->Stats().lost == 10; }));
    // Written, as far as the queue goes, but nowhere: a state saved over
    // them must not stand (serve's Engine).
    EXPECT_EQ(log->WaitWritten(log->Submitted(), absl::Seconds(30)).code(), absl::StatusCode::kOk);
    EXPECT_EQ(log->WaitWritten(before, absl::Seconds(30)).code(), absl::StatusCode::kDataLoss);
    // Flush asks for a retry (the journal is empty) and waits for it.
    EXPECT_EQ(log->Flush(absl::Seconds(30)).code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(log->Stats().last_error, HasSubstr("lost"));
  }
  // The store takes writes again, and says so with the next batch.
  log->Submit(Row(10));
  EXPECT_EQ(log->Flush(absl::Seconds(30)).code(), absl::StatusCode::kDataLoss);  // 10 were lost
  EXPECT_EQ(Count(), 1);
  EXPECT_EQ(log->Stats().last_error, "");
}

TEST_F(DecisionLogTest, ADecisionSubmittedTwiceIsStoredOnceAsFirstSubmitted) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  DecisionRow again = Row(1);
  again.action = "review";
  log->Submit(Row(1));
  log->Submit(again);
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 1);
  EXPECT_EQ((*store_->GetDecision("e1"))->action, Row(1).action);
}

TEST_F(DecisionLogTest, AfterStopSubmitWritesToTheJournal) {
  {
    auto log = Start();
    ASSERT_NE(log, nullptr);
    log->Submit(Row(1));
    log->Stop();
    EXPECT_EQ(Count(), 1);  // Stop stored the queue
    log->Submit(Row(2));
    const DecisionLogStats s = log->Stats();
    EXPECT_EQ(s.journaled, 1);
    EXPECT_EQ(s.queue_full, 0);
    EXPECT_TRUE(log->FindPending("e2").has_value());
    const absl::Status st = log->Flush(absl::Seconds(1));
    EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(st.message(), HasSubstr("stopped"));
    log->Stop();  // idempotent
  }
  auto log = Start();
  ASSERT_NE(log, nullptr);
  ASSERT_TRUE(log->Flush(absl::Seconds(30)).ok());
  EXPECT_EQ(Count(), 2);
}

TEST_F(DecisionLogTest, SecondLogOnTheSameJournalIsRefused) {
  auto log = Start();
  ASSERT_NE(log, nullptr);
  auto second = DecisionLog::Start(store_.get(), options_);
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("in use"));
}

TEST_F(DecisionLogTest, StartRejectsOptionsOutOfRange) {
  DecisionLogOptions o = options_;
  EXPECT_THAT(DecisionLog::Start(nullptr, o).status().message(), HasSubstr("no store"));
  o.journal_path = "";
  auto st = DecisionLog::Start(store_.get(), o).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("journal_path"));
  o = options_;
  o.batch_size = 0;
  EXPECT_THAT(DecisionLog::Start(store_.get(), o).status().message(), HasSubstr("batch_size"));
  o = options_;
  o.retry_interval_ms = 0;
  EXPECT_THAT(DecisionLog::Start(store_.get(), o).status().message(),
              HasSubstr("retry_interval_ms"));
  o = options_;
  o.commit_interval_ms = -1;
  EXPECT_THAT(DecisionLog::Start(store_.get(), o).status().message(),
              HasSubstr("commit_interval_ms"));
  o = options_;
  o.journal_path = dir_.File("no/such/dir/decisions.jsonl");
  EXPECT_EQ(DecisionLog::Start(store_.get(), o).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace vigil::store
