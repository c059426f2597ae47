// The decision pipeline behind include/vigil/engine.h: parse → validate →
// features → models → policy → decision document, then the decision log and
// the retry memory (docs/api.md).
#include "vigil/engine.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "core/bytes.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/sealed.h"
#include "core/slot.h"
#include "core/strings.h"
#include "core/time.h"
#include "event/dead_letter.h"
#include "event/event_log.h"
#include "event/line_reader.h"
#include "event/pii.h"
#include "event/schema.h"
#include "event/validator.h"
#include "feature/engine.h"
#include "feature/spec.h"
#include "model/bundle.h"
#include "nlohmann/json.hpp"
#include "policy/experiment.h"
#include "policy/policy.h"
#include "serve/config.h"
#include "serve/json_writer.h"
#include "serve/readiness.h"
#include "simdjson.h"
#include "store/decision_log.h"
#include "store/store.h"

namespace vigil {
namespace {

namespace fs = std::filesystem;
using serve::AppendJsonNumber;
using serve::AppendJsonString;
using serve::AppendKey;


// One model bundle, loaded and matched to the feature spec.
struct LoadedModel {
  std::string name;
  std::string version;  // the first 12 hex digits of SHA-256(model.json, and its calibration)
  std::string path;
  model::Bundle bundle;
  std::vector<int> spec_index;  // per model feature: the spec feature it reads
  std::string label;            // name@version

  size_t num_features() const { return spec_index.size(); }
};

// A bundle is usable only on the features it was trained on: the same spec
// (by content hash) and every input a numeric feature of the spec.
absl::StatusOr<std::shared_ptr<const LoadedModel>> LoadModel(const serve::ModelRef& ref,
                                                             const feature::FeatureSpec& spec) {
  auto bundle = model::Bundle::Load(ref.bundle);
  if (!bundle.ok()) return absl::InvalidArgumentError(StrCat(ref.where, ": model ", ref.name, ": ", bundle.status().message()));
  auto m = std::make_shared<LoadedModel>();
  m->name = ref.name;
  m->path = ref.bundle;
  m->bundle = std::move(*bundle);
  // What scores: the trees, and the calibration when there is one (a
  // recalibrated bundle is another version; an uncalibrated one keeps the
  // trees' hash).
  m->version =
      event::Sha256Hex(m->bundle.calibration
                           ? StrCat(m->bundle.model_json, "\n",
                                    m->bundle.manifest["calibration"].dump(
                                        -1, ' ', false, nlohmann::json::error_handler_t::replace))
                           : m->bundle.model_json)
          .substr(0, 12);
  m->label = StrCat(m->name, "@", m->version);
  const model::Bundle& b = m->bundle;
  if (!b.TakesSpec(spec.content_hash, spec.legacy_hash)) {
    return absl::FailedPreconditionError(StrCat(
        ref.where, ": model ", ref.name, " (", ref.bundle,
        ") was trained on features of another spec (hash ", b.spec_hash.substr(0, 12), "), not ",
        spec.file, " (hash ", spec.content_hash.substr(0, 12),
        "): backfill with this spec and train again",
        spec.lists && spec.lists->size() > 0
            ? " (the spec's hash covers the contents of its lists: a list only the policy reads "
              "belongs in policy.yaml's lists:, which a reload reads again)"
            : ""));
  }
  m->spec_index.assign(b.layout.num_features(), -1);
  for (const model::FeatureLayout::Input& in : b.layout.inputs) {
    int idx = spec.FeatureIndex(in.column);
    if (idx < 0) {
      return absl::FailedPreconditionError(StrCat(ref.where, ": model ", ref.name, " reads '", in.column,
                                                  "', which is not a feature of ", spec.file));
    }
    if (in.categorical) {
      return absl::FailedPreconditionError(StrCat(ref.where, ": model ", ref.name, " reads '", in.column,
                                                  "' as categorical; features are numbers when serving"));
    }
    m->spec_index[in.first] = idx;
  }
  if (b.forest->num_features() > m->spec_index.size()) {
    return absl::FailedPreconditionError(StrCat(ref.where, ": model ", ref.name, " has ", b.forest->num_features(),
                                                " inputs but its manifest names ", m->spec_index.size()));
  }
  return std::shared_ptr<const LoadedModel>(std::move(m));
}

// What a reload replaces: the models of every scored type and the policy.
struct Runtime {
  struct Challenger {
    std::shared_ptr<const LoadedModel> model;
    bool ab = false;
  };
  struct Type {
    bool configured = false;  // a model is configured (NaN score = unavailable)
    std::string champion_name;  // as configured: the arm even while no version of it is loaded
    std::shared_ptr<const LoadedModel> champion;
    std::vector<Challenger> challengers;
    std::optional<policy::ArmAssigner> arms;  // arm 0 = champion; arm i = ab_model[i]
    std::vector<int> ab_model;                // arm -> challenger index (-1: champion)
    std::optional<policy::Holdout> holdout;
  };
  std::shared_ptr<const policy::Policy> policy;
  std::string policy_version;  // Decision::policy
  std::vector<Type> types;  // by event type index
  std::vector<std::string> errors;  // models kept from before because their reload failed
  // What the configuration leaves undecided (Engine::ConfigWarnings).
  std::vector<std::string> warnings;
};

}  // namespace

struct Engine::Impl {
  EngineOptions options;
  serve::ServeConfig config;
  std::shared_ptr<const event::Schema> schema;
  std::shared_ptr<const feature::FeatureSpec> spec;
  std::unique_ptr<event::PiiHasher> hasher;
  std::unique_ptr<event::Validator> validator;
  std::unique_ptr<feature::FeatureEngine> features;
  std::vector<std::string> feature_names;

  core::Slot<Runtime> runtime;
  std::unique_ptr<core::Slot<Runtime>::Reader> reader;
  std::mutex reload_mu;

  std::unique_ptr<store::Store> store;
  std::unique_ptr<store::DecisionLog> log;
  std::unique_ptr<event::EventLog> event_log;
  // The event log's failures (Ready, Stats): whether the last write failed,
  // whether the log has stopped for good, and the last error.
  absl::Status EventLogFailed(absl::Status st) {
    n_event_log_errors.fetch_add(1, std::memory_order_relaxed);
    std::lock_guard<std::mutex> lock(event_log_mu);
    event_log_error = std::string(st.message());
    event_log_stopped = !event_log->status().ok();
    event_log_failing.store(true, std::memory_order_relaxed);
    return st;
  }
  std::atomic<bool> event_log_failing{false};
  std::atomic<int64_t> n_event_log_errors{0};
  mutable std::mutex event_log_mu;
  std::string event_log_error;     // guarded by event_log_mu
  bool event_log_stopped = false;  // guarded by event_log_mu
  std::unique_ptr<event::DeadLetterWriter> dead;
  mutable std::mutex dead_mu;
  std::string dead_error;  // guarded by dead_mu: the last dead-letter write that failed

  // Per event type: the field that names the experiment unit (the user), -1 none.
  std::vector<int> unit_field;
  // The label type's fields.
  int label_kind = -1, label_target_event = -1, label_target_key = -1, label_target_value = -1,
      label_value = -1;

  // Retry memory: decisions of the last `recent_decisions` event ids, and a
  // ring of those ids, oldest at recent_head once full. Once full, the
  // evicted entry's strings are reused for the new one.
  absl::flat_hash_map<std::string, std::string> recent;
  std::vector<std::string> recent_ring;
  size_t recent_head = 0;

  // Scratch, reused by every Decide.
  std::string buf;
  std::string line;
  event::Record rec;
  std::vector<event::Violation> violations;
  std::vector<double> values;
  std::vector<float> row;
  std::vector<float> contrib;
  std::vector<uint32_t> order;
  int64_t records = 0;

  // Counters (read by Stats from any thread).
  std::atomic<int64_t> n_events{0}, n_decided{0}, n_not_scored{0}, n_rejected{0}, n_retries{0},
      n_labels{0}, n_too_late{0}, n_retries_unavailable{0};

  absl::StatusOr<std::shared_ptr<const Runtime>> LoadRuntime(const serve::ServeConfig& cfg, const Runtime* previous);
  void Reject(std::string_view raw, Decision* out);
  // Reject for an event of `bytes` (`as`: how they were counted) over the
  // schema's max_record_bytes.
  void RejectTooLarge(std::string_view raw, size_t bytes, std::string_view as, Decision* out) {
    violations.assign(
        1, event::Violation{event::Rule::kRecordTooLarge, "", StrCat(bytes),
                            StrCat("the event is ", bytes, " bytes", as, "; the limit is ",
                                   schema->max_record_bytes, " (limits.max_record_bytes)")});
    Reject(raw, out);
  }
  // Engine::RejectBody.
  std::string RejectBody(std::string_view body, std::string_view source, std::string_view reason,
                         bool not_a_label);
  // The event id of the record DecodeJson just refused (`rec`), as an
  // answer and a dead letter name it: "" when it has no readable one.
  std::string DecodedEventId() const;
  // Writes `r` with `raw`, the record as received: cut at max_record_bytes,
  // pii masked (as `type` declares it, or by name), stamped with the time.
  // REQUIRES: `dead` is open.
  void WriteDeadLetter(event::Rejection* r, std::string_view raw, const event::EventTypeSpec* type);
  // A label event from a caller that may not label: 403, not applied, not
  // logged, not dead-lettered (the event is valid; the key is not enough).
  void Forbid(Decision* out);
  void RenderRetry(std::string_view stored, bool with_features, Decision* out);
  // 409 event_id_taken: an event of another type under a taken id.
  void RenderIdTaken(Decision* out);
  // The stored (compact) document `doc` as the API answers it: with the
  // features as a named object, or without them.
  void Expand(std::string_view doc, bool with_features, std::string* out) const;
  std::string stored;  // the stored document of the last decision (Render)
  // `count_hits`: false for a decision made again (recovered), whose rules
  // were counted by the run that answered it.
  void Score(const Runtime& rt, const Runtime::Type& tr, Decision* out, bool count_hits = true);
  // Elements Score took out of a Decision's vectors, their strings' buffers
  // with them, for the next decision that needs more: a vector shrunk and
  // grown again would otherwise allocate its strings anew (the HTTP server
  // reuses one Decision for events of every type).
  std::vector<Decision::Reason> spare_reasons;
  std::vector<Decision::Rule> spare_rules;
  std::vector<Decision::Shadow> spare_shadows;
  std::vector<std::string> spare_names;
  // `recovered`: made again at start for a decision a crash lost (marked).
  void Render(Decision* out, bool late, bool with_features, bool recovered = false);
  void Remember(const Decision& d);
  void StoreLabel(std::string_view raw);
  // The store's row for the label event in `rec`, its json `raw`.
  store::LabelRow LabelRowOf(std::string_view raw) const;
  absl::Status ReplayEventLog();
  int64_t replayed = 0, replay_rejected = 0;
  double replay_seconds = 0;
  // Decisions lost in a crash (still in the store's queue when the process
  // died), made again while the replay passes their events: the features
  // are then exactly what they were. Only after the event of the decision
  // the store took last (`store_last`): no earlier one can be missing.
  // At start, for the event just replayed (`line`, as the log holds it): a
  // scored event's decision that the last run answered but did not store (a
  // crash) is made again, marked recovered; a label is kept for
  // RecoverLabels, which looks for it once the journal is replayed.
  void RecoverIfLost(bool late, std::string_view line);
  // Queues decision `d` (its stored document: `stored`) for the store.
  void SubmitDecision(const Decision& d);
  std::optional<store::DecisionRow> store_last;  // the store's newest decision at start
  std::string recovered_warning;                 // set at start: see EngineStats
  bool recovering = false;                       // the replay has passed store_last's event
  Decision recovered_scratch;
  int64_t recovered = 0;
  int64_t labels_recovered = 0;
  // Labels replayed after the store's last decision, to be looked for in
  // the store once the journal the crash left is replayed (RecoverLabels).
  std::vector<store::LabelRow> label_candidates;
  absl::flat_hash_set<std::string> label_candidate_ids;
  std::string label_recovery_warning;
  void RecoverLabels();

  // The state saved at a clean stop, beside the event log it summarises.
  std::string StatePath() const { return config.event_log_dir + "/state.snap"; }
  // What a saved state must have been taken under.
  // A state is of this schema, spec and event log (a copy from another
  // server's folder would hold events this log never had).
  std::string StateKey() const {
    return StrCat(schema->content_hash, " ", spec->content_hash, " ", log_id);
  }
  absl::StatusOr<int64_t> SaveState();
  // Where the state stands in the event log: its newest file and that
  // file's size, after writing what the log buffers.
  absl::Status LogPosition(std::string* last, int64_t* last_size);
  // Writes the state, said to stand at (last, last_size), to StatePath(),
  // in a buffer of `expect` bytes to begin with. Returns the bytes written.
  // Without `commit`, it stays StatePath().<pid>.tmp (core::WriteTemporary).
  absl::StatusOr<int64_t> WriteState(const std::string& last, int64_t last_size, int64_t expect,
                                     bool commit = true);
  // A state may take its place only once every decision and label of the
  // events it holds is in the store or the journal: a crash before would
  // lose those still queued, and the next start, restoring the state,
  // would never replay their events to make them again.
  static constexpr absl::Duration kStateWrittenWait = absl::Seconds(60);
  // What a state waits for: every decision and label submitted so far, and
  // none lost since the start. A row lost (neither stored nor journaled) is
  // made again only by a replay from a state saved before it: once one is
  // lost, no later state may take the place of the last.
  store::DecisionLog::Mark StateMark() const {
    store::DecisionLog::Mark m = log->Submitted();
    m.lost = 0;
    return m;
  }

  // Saving the state in a child process while deciding goes on
  // (Engine::SaveStateInBackground). The fork and the check whether one is
  // due run on the Decide thread; a reaper thread per save waits for the
  // child and records how it ended.
  absl::Status SaveInBackground();
  // Counts a save that failed, keeps why, and returns `st`.
  absl::Status SaveFailed(absl::Status st) {
    std::lock_guard<std::mutex> lock(save_mu);
    ++save_errors;
    save_error = std::string(st.message());
    return st;
  }
  // Stops a save in progress (the child is killed) and waits for its reaper.
  void EndBackgroundSave();
  // What the next state will take: the saved one's size and a half (an
  // estimate; the buffer grows beyond it if need be).
  int64_t ExpectedStateBytes() const {
    std::error_code ec;
    const auto n = static_cast<int64_t>(fs::file_size(StatePath(), ec));
    return ec ? 0 : n + n / 2;
  }
  std::chrono::steady_clock::duration save_every{};  // 0: never on its own
  std::chrono::steady_clock::duration save_timeout{};  // 0: never killed
  std::chrono::steady_clock::time_point next_save;   // the Decide thread's
  std::thread save_reaper;                           // the Decide thread's
  mutable std::mutex save_mu;
  pid_t save_pid = 0;            // guarded by save_mu: the child saving now, or 0
  bool save_running = false;     // guarded by save_mu: from the fork until the reaper is done
  bool save_cancelled = false;   // guarded by save_mu: EndBackgroundSave stopped it
  bool save_timed_out = false;   // guarded by save_mu: killed for running too long
  int64_t saves = 0;             // guarded by save_mu: completed, in the background or not
  int64_t save_errors = 0;       // guarded by save_mu
  std::string save_error;        // guarded by save_mu: the last one
  double last_save_seconds = 0;  // guarded by save_mu
  int64_t last_fork_us = 0;      // guarded by save_mu
  // Restores the saved state, if any, and sets *first to the index in
  // `files` (the event log, in write order) of the first file to replay and
  // *skip to the bytes of it the state holds already (those it had when the
  // state was saved). When it cannot, says why in state_not_used and leaves
  // the state new.
  void RestoreState(const std::vector<std::string>& files, size_t* first, int64_t* skip);
  // Forgets a restored state: why, and the state is new.
  void StateNotUsed(std::string why);
  // Applies files[first..], the first from byte `skip`. False when `skip`
  // is not the end of a line of that file.
  absl::StatusOr<bool> Replay(const std::vector<std::string>& files, size_t first, int64_t skip);
  bool state_restored = false;
  std::string log_id;  // event::EventLogId of the event log folder
  int64_t state_events = 0;
  std::string state_not_used;
};

namespace {

// The saved state (Engine::SaveState), sealed (core/sealed.h) under the
// schema's and the spec's hashes: the newest event log file applied (its
// name without .gz, and its size), the validator's state, the feature
// engine's snapshot.
constexpr std::string_view kStateMagic = "VIGSTATE";
constexpr uint32_t kStateVersion = 1;

std::string LogStem(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  if (name.size() > 3 && name.compare(name.size() - 3, 3, ".gz") == 0) name.resize(name.size() - 3);
  return name;
}

}  // namespace

absl::Status Engine::Impl::LogPosition(std::string* last, int64_t* last_size) {
  if (!event_log) return absl::FailedPreconditionError("no event log (an offline engine saves no state)");
  VIGIL_RETURN_IF_ERROR(event_log->Flush());
  const std::vector<std::string> files = event_log->Files();
  last->clear();
  *last_size = 0;
  if (!files.empty()) {
    *last = files.back();
    std::error_code ec;
    *last_size = static_cast<int64_t>(fs::file_size(*last, ec));
    if (ec) return absl::DataLossError(StrCat(*last, ": cannot read its size: ", ec.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Engine::Impl::WriteState(const std::string& last, int64_t last_size,
                                                 int64_t expect, bool commit) {
  // Written once, in place: not once more for each envelope around it, nor
  // copied as it grows (a std::string that doubles holds three times its
  // bytes for a moment). Pages reserved and not written cost no memory.
  std::string out;
  out.reserve(static_cast<size_t>(expect));
  const size_t start = core::BeginSeal(kStateMagic, kStateVersion, StateKey(), &out);
  core::ByteWriter w(&out);
  w.Str(last.empty() ? "" : LogStem(last));
  w.I64(last_size);
  size_t part = w.BeginStr();
  validator->AppendTo(&out);
  w.EndStr(part);
  part = w.BeginStr();
  features->AppendTo(&out);
  w.EndStr(part);
  core::EndSeal(start, &out);
  if (commit) {
    VIGIL_RETURN_IF_ERROR(core::WriteFileAtomic(StatePath(), out));
  } else {
    VIGIL_RETURN_IF_ERROR(core::WriteTemporary(StatePath(), out).status());
  }
  return static_cast<int64_t>(out.size());
}

absl::StatusOr<int64_t> Engine::Impl::SaveState() {
  // A save in the background would write an older state over this one.
  EndBackgroundSave();
  const auto t0 = std::chrono::steady_clock::now();
  std::string last;
  int64_t last_size = 0;
  if (absl::Status at = LogPosition(&last, &last_size); !at.ok()) return SaveFailed(std::move(at));
  if (log) {
    if (absl::Status st = log->WaitWritten(StateMark(), kStateWrittenWait); !st.ok()) {
      return SaveFailed(absl::UnavailableError(StrCat("the state was not saved: ", st.message())));
    }
  }
  absl::StatusOr<int64_t> bytes = WriteState(last, last_size, ExpectedStateBytes());
  if (!bytes.ok()) return SaveFailed(bytes.status());
  std::lock_guard<std::mutex> lock(save_mu);
  ++saves;
  last_save_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return bytes;
}

absl::Status Engine::Impl::SaveInBackground() {
  {
    std::lock_guard<std::mutex> lock(save_mu);
    // (One that runs past save_timeout is killed by its reaper.)
    if (save_running)
      return absl::FailedPreconditionError("a save of the state is already running");
  }
  if (save_reaper.joinable()) save_reaper.join();  // the last one, finished
  std::string last;
  int64_t last_size = 0;
  if (absl::Status st = LogPosition(&last, &last_size); !st.ok()) return SaveFailed(std::move(st));
  // Every decision and label of the events the state holds (all decided).
  const store::DecisionLog::Mark decided = log ? StateMark() : store::DecisionLog::Mark{};
  const int64_t expect = ExpectedStateBytes();
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return SaveFailed(
        absl::UnavailableError(StrCat("cannot save the state: pipe: ", std::strerror(errno))));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    // The child: a copy of the process as it is now, with this thread
    // alone. It serialises and writes the state, puts what went wrong, if
    // anything, on the pipe, and exits. It touches nothing another thread
    // may have held at the fork but the allocator's locks, which the
    // allocator's own fork handlers take care of (glibc's malloc, and the
    // jemalloc `vigil` links): no stdio, no logging. It keeps no other
    // descriptor (sockets, the journal's lock) open past its parent, and
    // runs on the time the server leaves (SCHED_IDLE: it shares no lock
    // with the server, so nothing waits for it; at nice 10, bench/serve.sh's
    // p99 was no better).
    const int out = pipe_fds[1];
    core::CloseDescriptorsExcept(out);
    const sched_param idle{};
    if (::sched_setscheduler(0, SCHED_IDLE, &idle) != 0) (void)::setpriority(PRIO_PROCESS, 0, 19);
    // Left a temporary: the parent gives it its name (a crash first, and
    // the next start removes it, restoring the state saved before).
    const absl::StatusOr<int64_t> bytes = WriteState(last, last_size, expect, /*commit=*/false);
    if (bytes.ok()) ::_exit(0);
    (void)!::write(out, bytes.status().message().data(), bytes.status().message().size());
    ::_exit(1);
  }
  const int fork_errno = errno;
  const auto t1 = std::chrono::steady_clock::now();
  ::close(pipe_fds[1]);
  if (pid < 0) {
    ::close(pipe_fds[0]);
    return SaveFailed(
        absl::UnavailableError(StrCat("cannot save the state: fork: ", std::strerror(fork_errno))));
  }
  {
    std::lock_guard<std::mutex> lock(save_mu);
    save_pid = pid;
    save_running = true;
    save_cancelled = save_timed_out = false;
    last_fork_us = std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count();
  }
  save_reaper = std::thread([this, pid, in = pipe_fds[0], t0, decided] {
    std::string said;
    char buf[512];
    // Until the child closes the pipe (it ended): a child still running
    // after save_timeout is stuck (storage that does not answer) and is
    // killed, so that saves go on.
    const auto deadline = t0 + save_timeout;
    bool killed = false;
    while (true) {
      int wait_ms = -1;
      if (save_timeout.count() > 0 && !killed) {
        const auto left = deadline - std::chrono::steady_clock::now();
        wait_ms = static_cast<int>(std::clamp<int64_t>(
            std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1, 0, 1 << 30));
      }
      pollfd p{in, POLLIN, 0};
      const int ready = ::poll(&p, 1, wait_ms);
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) {
        std::lock_guard<std::mutex> lock(save_mu);
        if (save_pid == pid) {
          save_timed_out = true;
          ::kill(pid, SIGKILL);
        }
        killed = true;
        continue;
      }
      const ssize_t n = ::read(in, buf, sizeof buf);
      if (n == 0) break;
      if (n < 0) {
        if (errno == EINTR) continue;
        break;
      }
      said.append(buf, static_cast<size_t>(n));
    }
    ::close(in);
    // Ended, not yet reaped: its pid is still its own. Forgotten under the
    // lock before it is reaped, so that EndBackgroundSave never signals a
    // pid the system may have given to another process.
    siginfo_t info{};
    while (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT) < 0 &&
           errno == EINTR) {
    }
    bool cancelled;
    {
      std::lock_guard<std::mutex> lock(save_mu);
      save_pid = 0;
      cancelled = save_cancelled;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const std::string tmp = StrCat(StatePath(), ".", pid, ".tmp");
    const bool written = !cancelled && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    // The state takes its place once the decisions it covers are safe.
    absl::Status safe = absl::OkStatus();
    if (written && log) {
      const auto until =
          std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(kStateWrittenWait);
      do {
        safe = log->WaitWritten(decided, absl::Milliseconds(100));
        if (absl::IsDataLoss(safe)) break;  // for good: no waiting helps
        std::lock_guard<std::mutex> lock(save_mu);
        cancelled = save_cancelled;
      } while (!safe.ok() && !cancelled && std::chrono::steady_clock::now() < until);
    }
    if (written && safe.ok() && !cancelled) safe = core::CommitTemporary(tmp, StatePath());
    std::lock_guard<std::mutex> lock(save_mu);
    save_running = false;
    if (cancelled) {  // not a failure: the caller saves now itself, or is closing
      ::unlink(tmp.c_str());
      return;
    }
    if (written && safe.ok()) {
      ++saves;
      last_save_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return;
    }
    ++save_errors;
    // The child's, if it died writing or its decisions were not safe (and
    // any other left by a process no longer running).
    ::unlink(tmp.c_str());
    core::RemoveStaleTemporaries(StatePath());
    if (written) {
      save_error = StrCat("the state saved in the background was dropped: ", safe.message());
    } else if (!said.empty()) {
      save_error = std::move(said);
    } else if (save_timed_out) {
      save_error = StrCat("the process saving the state was still running after ",
                          std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count(),
                          " s, and was killed");
    } else if (WIFSIGNALED(status)) {
      save_error = StrCat("the process saving the state was killed by signal ", WTERMSIG(status));
    } else {
      save_error = StrCat("the process saving the state ended with status ", WEXITSTATUS(status));
    }
    // Once per failed save (every save_state_s at most), where an operator looks.
    std::fprintf(stderr,
                 "vigil: warning: the state was not saved in the background (%s); a restart after a crash "
                 "replays the event log from the state saved before\n",
                 save_error.c_str());
  });
  return absl::OkStatus();
}

void Engine::Impl::EndBackgroundSave() {
  {
    std::lock_guard<std::mutex> lock(save_mu);
    if (save_running) save_cancelled = true;  // (its reaper may wait for the decisions)
    if (save_pid != 0) ::kill(save_pid, SIGKILL);
  }
  if (save_reaper.joinable()) save_reaper.join();
}

void Engine::Impl::StateNotUsed(std::string why) {
  state_not_used = StrCat(StatePath(), ": ", why, "; replaying the whole event log");
  state_restored = false;
  state_events = 0;
  validator = std::make_unique<event::Validator>(schema, hasher.get());
  features = std::make_unique<feature::FeatureEngine>(spec);
}

void Engine::Impl::RestoreState(const std::vector<std::string>& files, size_t* first, int64_t* skip) {
  *first = 0;
  *skip = 0;
  const std::string path = StatePath();
  std::error_code ec;
  auto not_used = [&](std::string why) { StateNotUsed(std::move(why)); };
  if (!fs::exists(path, ec)) {
    if (fs::is_symlink(fs::symlink_status(path, ec))) return not_used("a link to nothing");
    return;
  }
  // (A pipe would hold the start up until something wrote to it.)
  if (!fs::is_regular_file(path, ec)) return not_used("not a regular file");
  auto bytes = core::ReadFile(path);
  if (!bytes.ok()) return not_used(std::string(bytes.status().message()));
  auto sealed = core::Unseal(*bytes, kStateMagic, kStateVersion, "saved state");
  if (!sealed.ok()) return not_used(std::string(sealed.status().message()));
  if (sealed->key != StateKey()) {
    return not_used(
        "saved under another schema, feature spec or event log (a state from before "
        "vigil named its log counts as another)");
  }
  core::ByteReader p(sealed->payload, "saved state");
  std::string last;
  std::string_view vstate, fstate;
  int64_t last_size = 0;
  if (!p.Str(&last) || !p.I64(&last_size) || !p.StrView(&vstate) || !p.StrView(&fstate) || !p.at_end()) {
    return not_used(p.status().ok() ? "bytes after the end" : std::string(p.status().message()));
  }
  // Files sort in write order: those after `last` came after the save, and
  // `last` itself may have grown since (the server went on after a save, or
  // an embedder decided more): replayed from where the state left it.
  size_t i = 0;
  int64_t from = 0;
  while (i < files.size() && !last.empty() && LogStem(files[i]) < last) ++i;
  if (i < files.size() && !last.empty() && LogStem(files[i]) == last) {
    // (A .gz one is read decompressed: the same bytes.)
    if (fs::path(files[i]).filename() == last) {
      const auto size = fs::file_size(files[i], ec);
      if (ec || static_cast<int64_t>(size) < last_size) {
        return not_used(StrCat(last, " is ", ec ? "unreadable" : StrCat(size, " bytes"), ", less than the ",
                               last_size, " it had when the state was saved"));
      }
    }
    from = last_size;
  }
  if (absl::Status st = validator->Restore(vstate); !st.ok()) return not_used(std::string(st.message()));
  if (absl::Status st = features->Restore(fstate); !st.ok()) return not_used(std::string(st.message()));
  *first = i;
  *skip = from;
  state_restored = true;
  state_events = features->events();
}

absl::Status Engine::Impl::ReplayEventLog() {
  std::error_code ec;
  if (!fs::exists(config.event_log_dir, ec)) return absl::OkStatus();
  VIGIL_ASSIGN_OR_RETURN(std::vector<std::string> files, event::ListEventLogFiles(config.event_log_dir, "events"));
  auto t0 = std::chrono::steady_clock::now();
  size_t first = 0;
  int64_t skip = 0;
  // Left by a process that died while it saved (a crash, or a save in the
  // background killed): never read, only in the way.
  core::RemoveStaleTemporaries(StatePath());
  // A store without any decision (it took none before the crash: down, or
  // its writer, at idle priority, got no time) has lost every one.
  bool store_empty = false;
  if (store) {
    // (Unknown: nothing recovered, as before. The replay goes on.)
    auto newest = store->NewestDecisionId();
    store_empty = newest.ok() && !newest->has_value();
    if (newest.ok() && newest->has_value()) {
      auto row = store->GetDecision(**newest);
      if (row.ok()) store_last = *std::move(row);
    }
  }
  RestoreState(files, &first, &skip);
  // The store's last decision is in the restored state already: every
  // scored event replayed may have lost its decision.
  // (Its id may be past the remembered ids; then its time says so.)
  recovering = store_empty || (store_last && state_restored &&
                               (validator->Seen(store_last->event_id) ||
                                store_last->event_time_ms <= validator->latest_time_ms()));
  VIGIL_ASSIGN_OR_RETURN(const bool whole_lines, Replay(files, first, skip));
  if (!whole_lines) {
    StateNotUsed(StrCat("byte ", skip, " of ", files[first], ", where the saved state ends, is not the end of a line"));
    replayed = replay_rejected = 0;
    recovering = store_empty;  // the whole log again: from the store's last decision
    label_candidates.clear();
    label_candidate_ids.clear();
    VIGIL_RETURN_IF_ERROR(Replay(files, 0, 0).status());
  }
  RecoverLabels();
  replay_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (recovered > 0 && store_last) {
    // Made with the models loaded now: said when the one that made the
    // store's last decision is not among them (a change since the crash).
    const std::shared_ptr<const Runtime> rt = runtime.Load();
    bool loaded = false;
    for (const Runtime::Type& t : rt->types) {
      loaded |= t.champion && t.champion->label == store_last->model;
      for (const auto& c : t.challengers) loaded |= c.model && c.model->label == store_last->model;
    }
    // (Decisions stored before they named their policy say nothing.)
    std::string policy;
    const auto doc = nlohmann::json::parse(store_last->json, nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() && doc.contains("policy") && doc["policy"].is_string()) {
      policy = doc["policy"].get<std::string>();
    }
    std::string changed;
    if (!loaded)
      StrAppend(&changed, "the model that made it (", store_last->model, ") is not loaded now");
    if (!policy.empty() && policy != rt->policy_version) {
      StrAppend(&changed, changed.empty() ? "" : "; ", "its policy (", policy,
                ") is not the one loaded now (", rt->policy_version, ")");
    }
    if (!changed.empty()) {
      recovered_warning = StrCat(
          "the store's last decision was made before a change: ", changed, ". The ", recovered,
          " recovered decisions were made with the models and the policy loaded now "
          "and may differ from those answered");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Engine::Impl::Replay(const std::vector<std::string>& files, size_t first, int64_t skip) {
  // Accepted before: not checked again against this run's clock.
  validator->SetReplaying(true);
  for (size_t f = first; f < files.size(); ++f) {
    const std::string& path = files[f];
    // The schema's limit, as every reader of the log (backfill) reads it.
    event::LineReaderOptions lo;
    lo.max_record_bytes = static_cast<size_t>(schema->max_record_bytes);
    VIGIL_ASSIGN_OR_RETURN(auto lines, event::LineReader::Open(path, lo));
    event::LineReader::Line line;
    // What the saved state holds already: whole lines (one event each, '\n' ended).
    int64_t skipped = 0;
    while (f == first && skipped < skip && lines->Next(&line)) {
      skipped += static_cast<int64_t>(line.truncated ? line.full_size : line.text.size()) + 1;
    }
    VIGIL_RETURN_IF_ERROR(lines->status());
    if (skipped != skip && f == first) return false;
    while (lines->Next(&line)) {
      if (line.text.empty()) continue;
      violations.clear();
      ++records;
      if (!validator->DecodeJson(line.text, line.readable, &rec, &violations) ||
          !validator->CheckAndCommit(rec, &violations)) {
        ++replay_rejected;  // the schema changed since: reported at start
        continue;
      }
      const feature::FeatureEngine::Result r = features->Process(rec, values);
      ++replayed;
      if (recovering) {
        RecoverIfLost(r == feature::FeatureEngine::Result::kTooLate, line.text);
      } else if (store_last && rec.event_id == store_last->event_id) {
        recovering = true;
      }
    }
    VIGIL_RETURN_IF_ERROR(lines->status());
  }
  return true;
}

void Engine::Impl::RecoverIfLost(bool late, std::string_view line) {
  if (!log) return;
  if (rec.type->is_label) {
    // Labels go to the store before the decisions queued after them (the
    // writer takes them first), so those after the store's last decision
    // are the ones a crash can have lost. (The label's json is the log's
    // line: the event as posted, minified.) Once each (a retry the
    // duplicate memory forgot is in the log twice).
    if (label_candidate_ids.insert(std::string(rec.event_id)).second) {
      label_candidates.push_back(LabelRowOf(line));
    }
    return;
  }
  const int type = rec.type->index;
  if (type < 0 || !spec->score_on[static_cast<size_t>(type)]) return;
  if (log->FindPending(rec.event_id)) return;
  if (auto s = store->GetDecision(rec.event_id); !s.ok() || s->has_value()) return;
  Decision& d = recovered_scratch;
  d = Decision{};
  d.event_id.assign(rec.event_id);
  d.event_type.assign(rec.type->name);
  d.event_time_ms = rec.time_ms;
  d.status = Decision::Status::kDecided;
  d.features.assign(values.begin(), values.end());
  const std::shared_ptr<const Runtime> rt = runtime.Load();
  Score(*rt, rt->types[static_cast<size_t>(type)], &d, /*count_hits=*/false);
  Render(&d, late, /*with_features=*/false, /*recovered=*/true);
  SubmitDecision(d);
  Remember(d);
  ++recovered;
}

void Engine::Impl::SubmitDecision(const Decision& d) {
  store::DecisionRow row;
  row.event_id = d.event_id;
  row.event_time_ms = d.event_time_ms;
  row.event_type = d.event_type;
  row.action = d.action;
  row.score = d.score;
  row.model = d.model;
  row.arm = d.arm;
  row.decided_at_ms = core::WallNowMs();
  row.json = stored;
  log->Submit(std::move(row));
}

absl::StatusOr<std::shared_ptr<const Runtime>> Engine::Impl::LoadRuntime(const serve::ServeConfig& cfg,
                                                                        const Runtime* previous) {
  auto rt = std::make_shared<Runtime>();
  VIGIL_ASSIGN_OR_RETURN(rt->policy, policy::Policy::Load(cfg.policy, spec));
  rt->policy_version =
      rt->policy->name().empty()
          ? rt->policy->content_hash().substr(0, 12)
          : StrCat(rt->policy->name(), "@", rt->policy->content_hash().substr(0, 12));
  rt->types.resize(schema->types.size());
  auto previous_model = [&](int type, const std::string& name) -> std::shared_ptr<const LoadedModel> {
    if (!previous) return nullptr;
    const Runtime::Type& p = previous->types[static_cast<size_t>(type)];
    if (p.champion && p.champion->name == name) return p.champion;
    for (const auto& c : p.challengers)
      if (c.model && c.model->name == name) return c.model;
    return nullptr;
  };
  // At start every model must load; at a reload, a model that fails keeps
  // its last good version and the error is reported.
  // A bundle named by several event types is loaded once.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<const LoadedModel>> loaded;
  auto load = [&](const serve::ModelRef& ref, int type) -> absl::StatusOr<std::shared_ptr<const LoadedModel>> {
    auto key = std::make_pair(ref.name, ref.bundle);
    if (auto it = loaded.find(key); it != loaded.end()) return it->second;
    auto m = LoadModel(ref, *spec);
    if (m.ok()) loaded[key] = *m;
    if (m.ok() && (*m)->bundle.spec_hash.empty()) {
      // (A bare XGBoost model, or a manifest without the hash: matched to
      // the spec's features by name only.)
      rt->warnings.push_back(
          StrCat(ref.where, ": model ", ref.name, " (", ref.bundle,
                 ") does not say which feature spec it was trained on (no feature_spec_hash): "
                 "its inputs are matched to ",
                 spec->file,
                 "'s features by name only, so a feature whose definition changed since would "
                 "go unnoticed"));
    }
    if (m.ok() || !previous) return m;
    rt->errors.push_back(std::string(m.status().message()));
    auto kept = previous_model(type, ref.name);
    if (!kept) rt->errors.back() += " (no earlier version: the policy's fallback applies)";
    return kept;
  };
  for (const serve::TypeModels& tm : cfg.models) {
    auto it = schema->type_index.find(tm.event_type);
    if (it == schema->type_index.end())
      return absl::InvalidArgumentError(StrCat(tm.where, ": models: '", tm.event_type, "' is not an event type of ", schema->file));
    int type = it->second;
    if (!spec->score_on[static_cast<size_t>(type)])
      return absl::InvalidArgumentError(StrCat(tm.where, ": models: '", tm.event_type, "' is not in score_on of ", spec->file));
    Runtime::Type& t = rt->types[static_cast<size_t>(type)];
    t.configured = true;
    serve::ModelRef champion = tm.champion;
    if (!options.model_override.empty()) {
      champion.bundle = options.model_override;
      champion.name = serve::ModelNameOfBundle(options.model_override);
      champion.where = "--model";
      if (const std::string why = serve::BadModelName(champion.name); !why.empty()) {
        return absl::InvalidArgumentError(StrCat("--model ", options.model_override, ": ", why));
      }
    }
    t.champion_name = champion.name;
    VIGIL_ASSIGN_OR_RETURN(t.champion, load(champion, type));
    std::vector<policy::Arm> arms;
    double ab = 0;
    t.ab_model.push_back(-1);
    for (const serve::ModelRef& ch : tm.challengers) {
      VIGIL_ASSIGN_OR_RETURN(auto m, load(ch, type));
      bool is_ab = ch.mode == serve::ModelRef::Mode::kAb;
      if (m && t.champion && m->version == t.champion->version) {
        rt->warnings.push_back(StrCat(ch.where, ": challenger ", ch.name, " of ", tm.event_type,
                                      " is the champion's model (the same version, ", m->version,
                                      "): it compares the model with itself"));
      }
      if (is_ab) {
        arms.push_back({ch.name, ch.share});
        ab += ch.share;
        t.ab_model.push_back(static_cast<int>(t.challengers.size()));
      }
      t.challengers.push_back({std::move(m), is_ab});
    }
    if (!arms.empty()) {
      arms.insert(arms.begin(), policy::Arm{champion.name, 1 - ab});
      VIGIL_ASSIGN_OR_RETURN(auto assigner, policy::ArmAssigner::Create(std::move(arms), cfg.experiment_salt));
      t.arms.emplace(std::move(assigner));
    }
    if (tm.holdout > 0) t.holdout.emplace(tm.holdout, cfg.experiment_salt ^ 0x9e3779b97f4a7c15ull);
  }
  for (const event::EventTypeSpec& et : schema->types) {
    if (!spec->score_on[static_cast<size_t>(et.index)]) continue;
    if (!rt->policy->covers(et.index)) {
      rt->warnings.push_back(StrCat("event type '", et.name, "' is scored (", spec->file,
                                    " score_on) but ", cfg.policy,
                                    " has no section for it and no default: every such event is "
                                    "allowed (decided_by: default)"));
    } else if (rt->policy->has_thresholds(et.index) &&
               !rt->types[static_cast<size_t>(et.index)].configured) {
      rt->warnings.push_back(StrCat("the thresholds ", cfg.policy, " applies to '", et.name,
                                    "' never apply: ", cfg.file,
                                    " configures no model for it "
                                    "(models:), so its events are decided by rules only"));
    }
  }
  // A retry is known by the retry memory (the last recent_decisions
  // decisions) or by the schema's duplicate check (the last
  // duplicates.memory ids); the check is all an unscored event has.
  if (!options.offline && schema->duplicate_memory <= 0) {
    rt->warnings.push_back(StrCat(
        schema->file,
        " duplicates.memory is 0: a retry of an unscored event, or of a scored one older than the "
        "last ",
        cfg.limits.recent_decisions, " decisions (", cfg.file,
        " limits.recent_decisions), is not recognised: it is applied to the features again"));
  }
  return std::shared_ptr<const Runtime>(std::move(rt));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  VIGIL_ASSIGN_OR_RETURN(impl->config, serve::LoadServeConfig(options.config_path));
  const serve::ServeConfig& c = impl->config;
  VIGIL_ASSIGN_OR_RETURN(impl->schema, event::Schema::Load(c.schema));
  VIGIL_ASSIGN_OR_RETURN(impl->spec, feature::FeatureSpec::Load(c.features, impl->schema));
  std::string warning;
  impl->hasher = std::make_unique<event::PiiHasher>(event::PiiHasher::FromEnv(impl->schema->pii_key_env, &warning));
  impl->validator = std::make_unique<event::Validator>(impl->schema, impl->hasher.get());
  if (options.offline && options.event_log_input) impl->validator->SetReplaying(true);
  impl->features = std::make_unique<feature::FeatureEngine>(impl->spec);
  impl->feature_names = impl->spec->FeatureNames();
  impl->values.assign(impl->feature_names.size(), 0);

  VIGIL_ASSIGN_OR_RETURN(auto rt, impl->LoadRuntime(impl->config, nullptr));
  size_t max_inputs = 0;
  for (const Runtime::Type& t : rt->types) {
    if (t.champion) max_inputs = std::max(max_inputs, t.champion->num_features());
    for (const auto& ch : t.challengers)
      if (ch.model) max_inputs = std::max(max_inputs, ch.model->num_features());
  }
  impl->row.resize(std::max<size_t>(max_inputs, 1));
  impl->contrib.resize(impl->row.size() + 1);
  impl->order.reserve(impl->row.size());
  impl->runtime.Set(std::move(rt));
  impl->reader = std::make_unique<core::Slot<Runtime>::Reader>(impl->runtime);

  // The experiment unit: the identity graph's account field, else user_id.
  std::string unit = impl->spec->identity.enabled ? impl->spec->identity.account : "user_id";
  for (const event::EventTypeSpec& t : impl->schema->types) {
    const event::FieldSpec* f = t.Find(unit);
    impl->unit_field.push_back(f ? f->index : -1);
  }
  if (impl->schema->label_type >= 0) {
    const event::EventTypeSpec& lt = impl->schema->types[static_cast<size_t>(impl->schema->label_type)];
    auto idx = [&](std::string_view n) { const event::FieldSpec* f = lt.Find(n); return f ? f->index : -1; };
    impl->label_kind = idx("kind");
    impl->label_target_event = idx("target_event_id");
    impl->label_target_key = idx("target_entity.key");
    impl->label_target_value = idx("target_entity.value");
    impl->label_value = idx("value");
  }
  size_t max_fields = 0;
  for (const event::EventTypeSpec& t : impl->schema->types) max_fields = std::max(max_fields, t.fields.size());
  impl->rec.values.resize(max_fields);

  if (!options.offline) {
    // First the event log's lock: a second server on the same folder is
    // refused before it touches a store (its replay would otherwise make
    // the first one's pending decisions again, into its store or theirs).
    VIGIL_ASSIGN_OR_RETURN(int log_lock, event::LockEventLogDir(c.event_log_dir));
    struct Closer {  // until the event log takes it (a failure in between)
      int& fd;
      ~Closer() {
        if (fd >= 0) ::close(fd);
      }
    } closer{log_lock};
    VIGIL_ASSIGN_OR_RETURN(impl->log_id, event::EventLogId(c.event_log_dir));
    VIGIL_RETURN_IF_ERROR(serve::EnsureStateDirs(c));
    VIGIL_ASSIGN_OR_RETURN(impl->store, store::OpenStore(c.store));
    store::DecisionLogOptions lo;
    lo.queue_capacity = static_cast<size_t>(c.limits.queue_capacity);
    lo.journal_path = c.journal;
    VIGIL_ASSIGN_OR_RETURN(impl->log, store::DecisionLog::Start(impl->store.get(), lo));
    // The event log is the server's memory: replaying it restores the
    // feature state and the duplicate-id window exactly as they were, so a
    // restart changes no feature and a retry of an old id is still a retry.
    VIGIL_RETURN_IF_ERROR(impl->ReplayEventLog());
    // Live events from now on (the replay took events accepted before).
    impl->validator->SetReplaying(false);
    impl->validator->SetLive(c.limits.max_ahead_of_clock_s * 1000);
    event::EventLogOptions eo;
    eo.dir = c.event_log_dir;
    eo.rotate_bytes = c.event_log_rotate_bytes;
    eo.rotate_daily = c.event_log_rotate_daily;
    eo.sync_interval_ms = c.event_log_sync_ms;
    eo.dir_lock_fd = std::exchange(log_lock, -1);  // the log holds it from now on
    VIGIL_ASSIGN_OR_RETURN(impl->event_log, event::EventLog::Open(eo));
    impl->save_every = std::chrono::seconds(c.event_log_save_state_s);
    impl->save_timeout =
        c.event_log_save_timeout_s > 0 ? std::chrono::seconds(c.event_log_save_timeout_s)
        : impl->save_every.count() > 0 ? std::max<std::chrono::steady_clock::duration>(
                                             3 * impl->save_every, std::chrono::minutes(1))
                                       : std::chrono::steady_clock::duration{};
    impl->next_save = std::chrono::steady_clock::now() + impl->save_every;
    // Appended to: the dead letters of earlier runs stay.
    VIGIL_ASSIGN_OR_RETURN(impl->dead,
                           event::DeadLetterWriter::Open(c.dead_letter, event::DeadLetterWriter::Mode::kAppend));
  }
  // The retry memory at its full size now, not by doubling while scoring:
  // the doubling of a 65,536-entry table (a fresh 4 MB, faulted in page by
  // page) held up its event for 10 ms. Twice the entries it holds: a table
  // that churns (one id out, one in) at that load seldom has to rehash in
  // place to drop erased slots.
  if (const int64_t cap = c.limits.recent_decisions; cap > 0) {
    impl->recent.reserve(2 * static_cast<size_t>(cap));
    impl->recent_ring.reserve(static_cast<size_t>(cap));
  }
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Engine::~Engine() {
  if (!impl_) return;
  impl_->EndBackgroundSave();
  if (impl_->event_log) (void)impl_->event_log->Close();
  if (impl_->log) impl_->log->Stop();
  if (impl_->dead) (void)impl_->dead->Close();
}

const std::vector<std::string>& Engine::feature_names() const { return impl_->feature_names; }

void Engine::Impl::Forbid(Decision* out) {
  n_rejected.fetch_add(1, std::memory_order_relaxed);
  out->status = Decision::Status::kRejected;
  out->http_status = 403;
  static constexpr std::string_view kWhy = "a label event needs a key with role label or admin";
  out->error.assign(kWhy);
  std::string& j = out->json;
  j.assign("{");
  AppendKey("error", &j);
  AppendJsonString("forbidden", &j);
  AppendKey("message", &j);
  AppendJsonString(kWhy, &j);
  j.push_back('}');
}

void Engine::Impl::Reject(std::string_view raw, Decision* out) {
  n_rejected.fetch_add(1, std::memory_order_relaxed);
  out->status = Decision::Status::kRejected;
  out->http_status = 400;
  out->error.clear();
  for (const event::Violation& v : violations) {
    if (v.rule == event::Rule::kOutlier || v.rule == event::Rule::kUnseenCategory) continue;
    if (!out->error.empty()) out->error += "; ";
    if (!v.field.empty()) StrAppend(&out->error, "field '", v.field, "': ");
    StrAppend(&out->error, "rule ", event::RuleName(v.rule), ": ", v.reason);
  }
  std::string& j = out->json;
  j.assign("{");
  AppendKey("error", &j);
  AppendJsonString("invalid_event", &j);
  if (!out->event_id.empty()) {
    AppendKey("event_id", &j);
    AppendJsonString(out->event_id, &j);
  }
  AppendKey("violations", &j);
  j.push_back('[');
  for (const event::Violation& v : violations) {
    if (j.back() != '[') j.push_back(',');
    j.push_back('{');
    AppendKey("field", &j);
    AppendJsonString(v.field, &j);
    AppendKey("rule", &j);
    AppendJsonString(event::RuleName(v.rule), &j);
    AppendKey("value", &j);
    AppendJsonString(v.value, &j);
    AppendKey("reason", &j);
    AppendJsonString(v.reason, &j);
    j.push_back('}');
  }
  j.append("]}");
  if (dead) {
    event::Rejection r;
    r.record_no = records;
    r.line_no = records;
    r.event_id = out->event_id;
    r.violations = violations;
    WriteDeadLetter(&r, raw, rec.type);
  }
}

void Engine::Impl::WriteDeadLetter(event::Rejection* rej, std::string_view raw,
                                   const event::EventTypeSpec* type) {
  event::Rejection& r = *rej;
  r.received_ms = core::WallNowMs();
  // Cut as the readers cut a record (before masking, which sees a cut value
  // as a value all the same).
  const size_t max = static_cast<size_t>(schema->max_record_bytes);
  r.raw_truncated = raw.size() > max;
  r.raw_bytes = raw.size();
  r.raw = event::MaskJsonText(r.raw_truncated ? raw.substr(0, max) : raw, type, *schema, *hasher);
  // To the OS at once: a rejection survives the process. One that cannot
  // be written (a full disk) is counted and reported; the client has its
  // 400 with every violation all the same.
  if (absl::Status st = dead->Write(r); !st.ok() || !(st = dead->Flush()).ok()) {
    std::lock_guard<std::mutex> lock(dead_mu);
    dead_error = std::string(st.message());
  }
}

std::string Engine::Impl::DecodedEventId() const {
  if (!rec.event_id.empty() && rec.type == nullptr) {
    // An id read without its type's field spec: cut to a printable length.
    return validator->Printable(nullptr, rec.event_id, nullptr);
  }
  if (!rec.event_id.empty()) return std::string(rec.event_id);
  if (rec.type && rec.type->id_field >= 0 && rec[rec.type->id_field].present()) {
    const event::FieldSpec* idf = &rec.type->fields[static_cast<size_t>(rec.type->id_field)];
    return validator->Printable(idf, rec[rec.type->id_field].text, &rec);
  }
  return std::string();
}

std::string Engine::Impl::RejectBody(std::string_view body, std::string_view source,
                                     std::string_view reason, bool not_a_label) {
  std::string event_id;
  if (not_a_label) {
    // An event all the same: named by its id, as an invalid one is.
    buf.assign(body);
    buf.append(64, '\0');
    violations.clear();
    rec.raw = std::string_view(buf.data(), body.size());
    (void)validator->DecodeJson(rec.raw, buf.size(), &rec, &violations);
    event_id = DecodedEventId();
  }
  if (!dead) return event_id;
  event::Rejection r;
  r.file = std::string(source);
  r.event_id = event_id;
  r.violations.push_back(
      event::Violation{not_a_label ? event::Rule::kUnknownEventType : event::Rule::kMalformedJson,
                       not_a_label ? "event_type" : "", std::string(), std::string(reason)});
  // Events of any type may be in it: pii keys are masked by name wherever they are.
  WriteDeadLetter(&r, body, nullptr);
  return event_id;
}

void Engine::Impl::RenderRetry(std::string_view stored_doc, bool with_features, Decision* out) {
  n_retries.fetch_add(1, std::memory_order_relaxed);
  out->status = Decision::Status::kRetry;
  // An event id names one event: a retry is of the same type. (Not of the
  // same content: what is kept is the answer, not the event.) Another type
  // under a taken id is a client's mistake, not this decision.
  std::string& j = out->json;
  j.assign("\"event_type\":");
  AppendJsonString(out->event_type, &j);
  if (stored_doc.find(j) == std::string_view::npos) return RenderIdTaken(out);
  out->http_status = 200;
  // The stored decision's action, score and model in their fields too: a
  // caller that reads `action` must not take a retried block for no
  // decision. (Render writes them first, in this order, right after
  // "scored"; quotes within strings are escaped, so the key is found once.)
  static constexpr std::string_view kAction = "\"scored\":true,\"action\":\"";
  if (const size_t a = stored_doc.find(kAction); a != std::string_view::npos) {
    std::string_view rest = stored_doc.substr(a + kAction.size());
    out->action.assign(rest.substr(0, rest.find('"')));
    static constexpr std::string_view kScore = "\",\"score\":";
    rest.remove_prefix(std::min(rest.size(), out->action.size() + kScore.size()));
    double score = std::numeric_limits<double>::quiet_NaN();
    std::from_chars(rest.data(), rest.data() + rest.size(), score);  // (null: NaN)
    out->score = score;
    static constexpr std::string_view kModel = ",\"model\":\"";
    const size_t m = rest.find(kModel);
    if (m != std::string_view::npos) {
      rest.remove_prefix(m + kModel.size());
      out->model.assign(rest.substr(0, rest.find('"')));
    }
  }
  Expand(stored_doc, with_features, &out->json);
}

void Engine::Impl::RenderIdTaken(Decision* out) {
  out->status = Decision::Status::kRetry;
  out->http_status = 409;
  std::string& j = out->json;
  j.assign("{");
  AppendKey("event_id", &j);
  AppendJsonString(out->event_id, &j);
  j.append(
      ",\"retry\":true,\"error\":\"event_id_taken\",\"message\":\"this event id was taken by an "
      "event of another type (an event id names one event); it is not applied\"}");
}

void Engine::Impl::Remember(const Decision& d) {
  const size_t cap = static_cast<size_t>(std::max<int64_t>(config.limits.recent_decisions, 0));
  if (cap == 0 || recent.contains(d.event_id)) return;
  if (recent_ring.size() < cap) {
    recent_ring.push_back(d.event_id);
    recent.emplace(d.event_id, stored);
    return;
  }
  std::string& oldest = recent_ring[recent_head];
  recent_head = (recent_head + 1) % cap;
  auto node = recent.extract(oldest);
  oldest.assign(d.event_id);
  if (node) {
    node.key().assign(d.event_id);
    node.mapped().assign(stored);
    recent.insert(std::move(node));
  } else {
    recent.emplace(d.event_id, stored);
  }
}

void Engine::Impl::RecoverLabels() {
  if (label_candidates.empty() || !log) return;
  // The writer replays the journal the crash left while the event log is
  // replayed: a label there is not lost. Once it is replayed, the store
  // holds every label that was not.
  if (const absl::Status st = log->Flush(absl::Seconds(30)); !st.ok()) {
    label_recovery_warning = StrCat(
        label_candidates.size(), " labels after the store's last decision could not ",
        "be looked for in the store (", st.message(), "): any the crash lost are not stored");
  } else {
    for (store::LabelRow& l : label_candidates) {
      if (auto s = store->HasLabel(l.label_id); s.ok() && !*s) {
        log->SubmitLabel(std::move(l));
        ++labels_recovered;
      }
    }
  }
  label_candidates = {};
  label_candidate_ids = {};
}

void Engine::Impl::StoreLabel(std::string_view raw) {
  if (!log) return;
  // Through the decision log's writer: a synchronous write here made every
  // request wait for a transaction (an fsync) under the sequencer. While
  // the store fails, labels wait in the journal with the decisions.
  log->SubmitLabel(LabelRowOf(raw));
}

store::LabelRow Engine::Impl::LabelRowOf(std::string_view raw) const {
  store::LabelRow l;
  l.label_id = std::string(rec.event_id);
  l.time_ms = rec.time_ms;
  auto text = [&](int f) { return f >= 0 && rec[f].present() ? std::string(rec[f].text) : std::string(); };
  l.kind = text(label_kind);
  l.target_event_id = text(label_target_event);
  l.target_key = text(label_target_key);
  l.target_value = text(label_target_value);
  l.value = label_value >= 0 && rec[label_value].present() ? rec[label_value].d : 0;
  l.json = std::string(raw);
  return l;
}

// Resizes `v` to `n`, moving what it drops to `spare` and taking from there
// what it adds: no allocation once both have been as large.
template <typename T>
void ResizeKeeping(std::vector<T>& v, std::vector<T>& spare, size_t n) {
  while (v.size() > n) {
    spare.push_back(std::move(v.back()));
    v.pop_back();
  }
  while (v.size() < n) {
    if (spare.empty()) {
      v.emplace_back();
    } else {
      v.push_back(std::move(spare.back()));
      spare.pop_back();
    }
  }
}

void Engine::Impl::Score(const Runtime& rt, const Runtime::Type& tr, Decision* out,
                         bool count_hits) {
  auto t_model = std::chrono::steady_clock::now();
  // The deciding model: the champion, or an A/B challenger for this user.
  const LoadedModel* decider = tr.champion.get();
  int deciding_challenger = -1;
  out->arm = tr.champion_name;
  out->propensity = 1;
  if (tr.arms) {
    int uf = unit_field[static_cast<size_t>(rec.type->index)];
    uint64_t unit = uf >= 0 && rec[uf].present() ? rec[uf].hash : rec.id_hash;
    int arm = tr.arms->Assign(unit);
    out->arm = tr.arms->name(arm);
    out->propensity = tr.arms->share(arm);
    deciding_challenger = tr.ab_model[static_cast<size_t>(arm)];
    if (deciding_challenger >= 0) decider = tr.challengers[static_cast<size_t>(deciding_challenger)].model.get();
  }
  auto score_with = [&](const LoadedModel& m, bool reasons) -> double {
    for (size_t i = 0; i < m.num_features(); ++i) {
      int s = m.spec_index[i];
      row[i] = s >= 0 ? static_cast<float>(values[static_cast<size_t>(s)]) : std::numeric_limits<float>::quiet_NaN();
    }
    const model::Forest& f = *m.bundle.forest;
    const bool explain = reasons && config.reasons > 0;
    // With reasons, one walk of the trees gives both.
    const float margin = explain ? f.MarginAndPathContributions(row.data(), contrib.data()) : f.Margin(row.data());
    double score = f.Transform(margin);
    if (m.bundle.calibration) score = m.bundle.calibration->Apply(score);
    if (explain) {
      size_t n = f.num_features();
      order.clear();
      for (uint32_t i = 0; i < n; ++i) order.push_back(i);
      size_t k = std::min<size_t>(static_cast<size_t>(config.reasons), n);
      std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(k), order.end(),
                        [&](uint32_t a, uint32_t b) { return std::fabs(contrib[a]) > std::fabs(contrib[b]); });
      ResizeKeeping(out->reasons, spare_reasons, k);
      for (size_t r = 0; r < k; ++r) {
        uint32_t i = order[r];
        out->reasons[r].feature.assign(m.bundle.layout.feature_names[i]);
        // The feature's value, not the float the trees compare (608.34, not
        // 608.3400268554688).
        const int s = m.spec_index[i];
        out->reasons[r].value =
            s >= 0 ? values[static_cast<size_t>(s)] : std::numeric_limits<double>::quiet_NaN();
        out->reasons[r].contribution = contrib[i];
      }
    }
    return score;
  };
  // Reasons, shadow scores and rules are resized by ResizeKeeping: their
  // strings keep their buffers from one decision to the next.
  out->score = std::numeric_limits<double>::quiet_NaN();
  out->model.clear();
  if (decider) {
    out->score = score_with(*decider, true);
    out->model.assign(decider->label);
  } else {
    ResizeKeeping(out->reasons, spare_reasons, 0);
  }
  // Every challenger that did not decide is scored in shadow (an A/B arm
  // included, for the users of other arms), and the champion too when an
  // A/B arm decided: logged for comparison, never acted on.
  size_t n_shadow = 0;
  auto add_shadow = [&](const LoadedModel& lm) {
    if (out->shadow.size() <= n_shadow) ResizeKeeping(out->shadow, spare_shadows, n_shadow + 1);
    out->shadow[n_shadow].model.assign(lm.label);
    out->shadow[n_shadow].score = score_with(lm, false);
    ++n_shadow;
  };
  for (size_t i = 0; i < tr.challengers.size(); ++i) {
    if (static_cast<int>(i) == deciding_challenger || !tr.challengers[i].model) continue;
    add_shadow(*tr.challengers[i].model);
  }
  if (deciding_challenger >= 0 && tr.champion) add_shadow(*tr.champion);
  ResizeKeeping(out->shadow, spare_shadows, n_shadow);

  auto t_policy = std::chrono::steady_clock::now();
  out->timings.model_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t_policy - t_model).count();
  const policy::Policy& pol = *rt.policy;
  policy::Outcome o = count_hits ? pol.Decide(rec, values.data(), out->score, tr.configured)
                                 : pol.DecideShadow(rec, values.data(), out->score, tr.configured);
  const auto& rules = pol.rules_of(rec.type->index);
  ResizeKeeping(out->rules, spare_rules, static_cast<size_t>(o.num_listed()));
  for (int i = 0; i < o.num_listed(); ++i) {
    const policy::RuleInfo& r = rules[static_cast<size_t>(o.fired[static_cast<size_t>(i)].rule)];
    out->rules[static_cast<size_t>(i)].name.assign(r.name);
    out->rules[static_cast<size_t>(i)].action.assign(policy::ActionName(r.action));
    out->rules[static_cast<size_t>(i)].reason.assign(r.reason);
  }
  out->rules_not_listed = o.num_fired - o.num_listed();
  // What the policy would have decided with each shadow score: the same
  // event and features, hit counters untouched, before the holdout (which
  // acts only on the real decision). Fired rules differ only through a rule
  // that reads model.score: listed then, so that an offline comparison sees
  // why the actions differ.
  for (Decision::Shadow& s : out->shadow) {
    const policy::Outcome so = pol.DecideShadow(rec, values.data(), s.score, tr.configured);
    s.action.assign(policy::ActionName(so.action));
    s.decided_by.assign(so.decided_by);
    s.rules_differ =
        so.num_fired != o.num_fired ||
        !std::equal(so.fired.begin(), so.fired.begin() + so.num_listed(), o.fired.begin(),
                    [](policy::FiredRule a, policy::FiredRule b) { return a.rule == b.rule; });
    ResizeKeeping(s.rules, spare_names, s.rules_differ ? static_cast<size_t>(so.num_listed()) : 0);
    for (size_t i = 0; i < s.rules.size(); ++i)
      s.rules[i].assign(rules[static_cast<size_t>(so.fired[i].rule)].name);
  }
  // The holdout lets through only blocks the model's thresholds decided, never
  // a deny list or a block rule; the decision keeps what would have decided.
  if (tr.holdout) out->propensity *= tr.holdout->Apply(&o, rec.id_hash);
  out->holdout = o.held_out;
  policy::Action action = o.action;
  out->decided_by.assign(o.decided_by);
  out->path.assign(policy::PathName(o.path));
  out->action.assign(policy::ActionName(action));
  out->policy.assign(rt.policy_version);
  out->timings.policy_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t_policy).count();
}

void Engine::Impl::Render(Decision* out, bool late, bool with_features, bool recovered) {
  std::string& j = out->json;
  j.assign("{");
  AppendKey("event_id", &j);
  AppendJsonString(out->event_id, &j);
  AppendKey("event_type", &j);
  AppendJsonString(out->event_type, &j);
  AppendKey("scored", &j);
  bool scored = out->status == Decision::Status::kDecided;
  j.append(scored ? "true" : "false");
  if (scored) {
    AppendKey("action", &j);
    AppendJsonString(out->action, &j);
    AppendKey("score", &j);
    AppendJsonNumber(out->score, &j);
    AppendKey("model", &j);
    AppendJsonString(out->model, &j);
    AppendKey("policy", &j);
    AppendJsonString(out->policy, &j);
    AppendKey("reasons", &j);
    j.push_back('[');
    for (const Decision::Reason& r : out->reasons) {
      if (j.back() != '[') j.push_back(',');
      j.push_back('{');
      AppendKey("feature", &j);
      AppendJsonString(r.feature, &j);
      AppendKey("value", &j);
      AppendJsonNumber(r.value, &j);
      AppendKey("contribution", &j);
      AppendJsonNumber(r.contribution, &j);
      j.push_back('}');
    }
    j.push_back(']');
    AppendKey("rules", &j);
    j.push_back('[');
    for (const Decision::Rule& r : out->rules) {
      if (j.back() != '[') j.push_back(',');
      j.push_back('{');
      AppendKey("name", &j);
      AppendJsonString(r.name, &j);
      AppendKey("action", &j);
      AppendJsonString(r.action, &j);
      AppendKey("reason", &j);
      AppendJsonString(r.reason, &j);
      j.push_back('}');
    }
    j.push_back(']');
    if (out->rules_not_listed > 0) {
      AppendKey("rules_not_listed", &j);
      serve::AppendJsonInt(out->rules_not_listed, &j);
    }
    AppendKey("decided_by", &j);
    AppendJsonString(out->decided_by, &j);
    AppendKey("path", &j);
    AppendJsonString(out->path, &j);
    AppendKey("experiment", &j);
    j.push_back('{');
    AppendKey("arm", &j);
    AppendJsonString(out->arm, &j);
    AppendKey("propensity", &j);
    AppendJsonNumber(out->propensity, &j);
    AppendKey("holdout", &j);
    j.append(out->holdout ? "true" : "false");
    j.push_back('}');
    AppendKey("shadow", &j);
    j.push_back('[');
    for (const Decision::Shadow& s : out->shadow) {
      if (j.back() != '[') j.push_back(',');
      j.push_back('{');
      AppendKey("model", &j);
      AppendJsonString(s.model, &j);
      AppendKey("score", &j);
      AppendJsonNumber(s.score, &j);
      AppendKey("action", &j);
      AppendJsonString(s.action, &j);
      AppendKey("decided_by", &j);
      AppendJsonString(s.decided_by, &j);
      if (s.rules_differ) {
        AppendKey("rules", &j);
        j.push_back('[');
        for (const std::string& r : s.rules) {
          if (j.back() != '[') j.push_back(',');
          AppendJsonString(r, &j);
        }
        j.push_back(']');
      }
      j.push_back('}');
    }
    j.push_back(']');
  }
  if (late) {
    AppendKey("late", &j);
    j.append("true");
  }
  if (recovered) {
    AppendKey("recovered", &j);
    j.append("true");
  }
  AppendKey("latency_us", &j);
  serve::AppendJsonInt(out->latency_us, &j);
  // What the store and the retry memory keep: the answer and the feature
  // values as an array in spec order (their names are the spec's), less
  // than half the size of the named object. Expand() gives the names back,
  // for an answer that asks for the features.
  stored.assign(j);
  if (scored) {
    AppendKey("feature_values", &stored);
    stored.push_back('[');
    for (size_t i = 0; i < feature_names.size(); ++i) {
      if (i) stored.push_back(',');
      AppendJsonNumber(out->features[i], &stored);
    }
    stored.push_back(']');
  }
  stored.push_back('}');
  if (with_features && scored) {
    Expand(stored, true, &j);
  } else {
    j.push_back('}');
  }
}

void Engine::Impl::Expand(std::string_view doc, bool with_features, std::string* out) const {
  static constexpr std::string_view kValues = ",\"feature_values\":[";
  size_t f = doc.rfind(kValues);
  if (f == std::string_view::npos) {
    out->assign(doc);
    return;
  }
  std::string_view values = doc.substr(f + kValues.size());
  values = values.substr(0, values.find(']'));
  out->assign(doc.substr(0, f));
  if (with_features) {
    size_t n = values.empty() ? 0 : static_cast<size_t>(std::count(values.begin(), values.end(), ',')) + 1;
    if (n == feature_names.size()) {
      AppendKey("features", out);
      out->push_back('{');
      for (size_t i = 0; i < n; ++i) {
        size_t comma = values.find(',');
        AppendKey(feature_names[i], out);
        out->append(values.substr(0, comma));
        values = comma == std::string_view::npos ? std::string_view() : values.substr(comma + 1);
      }
      out->push_back('}');
    } else {
      // Stored under another spec: the values without names.
      out->append(doc.substr(f, kValues.size() + values.size() + 1));
    }
  }
  out->push_back('}');
}

absl::Status Engine::Decide(std::string_view event_json, Decision* out, bool with_features,
                            bool may_label) {
  Impl& m = *impl_;
  auto t0 = std::chrono::steady_clock::now();
  m.n_events.fetch_add(1, std::memory_order_relaxed);
  ++m.records;
  out->event_id.clear();
  out->event_type.clear();
  out->event_time_ms = 0;
  out->action.clear();
  out->score = std::numeric_limits<double>::quiet_NaN();
  out->model.clear();
  out->policy.clear();
  out->rules_not_listed = 0;
  out->decided_by.clear();
  out->path.clear();
  out->arm.clear();
  out->propensity = 1;
  out->holdout = false;
  out->error.clear();
  out->http_status = 200;

  // Offline (vigil decide), the line as read is what backfill's reader
  // holds to the schema's max_record_bytes; with an event log, the line it
  // writes is (below).
  if (!m.event_log && event_json.size() > static_cast<size_t>(m.schema->max_record_bytes)) {
    m.rec.type = nullptr;
    m.RejectTooLarge(event_json, event_json.size(), "", out);
    return absl::OkStatus();
  }

  // simdjson reads up to 64 bytes past the end: a padded copy.
  m.buf.assign(event_json);
  m.buf.append(64, '\0');
  std::string_view text(m.buf.data(), event_json.size());
  m.violations.clear();
  m.rec.raw = text;
  m.rec.record_no = m.records;
  m.rec.line_no = m.records;
  if (!m.validator->DecodeJson(text, m.buf.size(), &m.rec, &m.violations)) {
    out->event_id = m.DecodedEventId();
    m.Reject(text, out);
    return absl::OkStatus();
  }
  out->event_id.assign(m.rec.event_id);
  out->event_type.assign(m.rec.type->name);
  out->event_time_ms = m.rec.time_ms;

  // Before the retry memory: a refused label learns nothing of earlier ones.
  if (m.rec.type->is_label && !may_label) {
    m.Forbid(out);
    return absl::OkStatus();
  }

  // A retried event id: the stored decision, feature state untouched.
  if (auto it = m.recent.find(out->event_id); it != m.recent.end()) {
    m.RenderRetry(it->second, with_features, out);
    return absl::OkStatus();
  }
  // With an event log, checked now and remembered once the log has it: an
  // event the log cannot take is refused (503), and must not look like a
  // duplicate when it is sent again. (One more lookup of the id, in a slot
  // the first brought into the cache.)
  if (!(m.event_log ? m.validator->Check(m.rec, &m.violations)
                    : m.validator->CheckAndCommit(m.rec, &m.violations))) {
    bool duplicate = std::any_of(m.violations.begin(), m.violations.end(), [](const event::Violation& v) {
      return v.rule == event::Rule::kDuplicateEventId;
    });
    if (!duplicate) {
      m.Reject(text, out);
      return absl::OkStatus();
    }
    // The first event under this id, when its type is known, tells a retry
    // from a client's mistake before any lookup: an unscored event has no
    // stored decision to compare with.
    if (const int first = m.validator->SeenType(m.rec); first >= 0 && first != m.rec.type->index) {
      m.n_retries.fetch_add(1, std::memory_order_relaxed);
      m.RenderIdTaken(out);
      return absl::OkStatus();
    }
    std::optional<std::string> stored;
    if (m.log) {
      if (auto p = m.log->FindPending(out->event_id)) stored = p->json;
    }
    if (!stored && m.store) {
      auto s = m.store->GetDecision(out->event_id);
      if (s.ok() && s->has_value()) stored = (*s)->json;
    }
    if (stored) {
      m.RenderRetry(*stored, with_features, out);
    } else {
      // Seen before and not a stored decision: not applied again. An
      // unscored event has none; a scored one's is gone (lost in a crash
      // before it reached the store, or no longer kept): 409, so that a
      // client does not take the answer for a decision.
      m.n_retries.fetch_add(1, std::memory_order_relaxed);
      out->status = Decision::Status::kRetry;
      const int type = m.rec.type->index;
      // (Offline, without a store, a scored id seen before is a duplicate
      // in the file: said as for an unscored one.)
      const bool scored_type = m.store && type >= 0 && m.spec->score_on[static_cast<size_t>(type)];
      out->json.assign("{");
      AppendKey("event_id", &out->json);
      AppendJsonString(out->event_id, &out->json);
      if (scored_type) {
        m.n_retries_unavailable.fetch_add(1, std::memory_order_relaxed);
        out->http_status = 409;
        out->json.append(
            ",\"scored\":true,\"retry\":true,\"error\":\"decision_unavailable\",\"message\":\"this "
            "event was "
            "taken before, but its decision is not stored (lost in a crash before it reached the "
            "store, or no "
            "longer kept); it is not applied again. vigil decide over the event log recomputes "
            "it\"}");
      } else {
        out->json.append(",\"scored\":false,\"retry\":true}");
      }
    }
    return absl::OkStatus();
  }

  // Accepted: into the event log first, in the order the engine sees it.
  if (m.event_log) {
    m.line.resize(text.size());
    size_t len = 0;
    if (simdjson::minify(text.data(), text.size(), m.line.data(), len) != simdjson::SUCCESS) {
      return absl::InternalError(StrCat("event ", out->event_id, ": minify failed after a valid parse"));
    }
    m.line.resize(len);
    // The log is read back (at a restart, by backfill) with the schema's
    // max_record_bytes: a longer line would be acknowledged here and refused
    // there. (Its minified length: white space as posted does not count.)
    if (m.line.size() > static_cast<size_t>(m.schema->max_record_bytes)) {
      m.RejectTooLarge(text, m.line.size(), " as logged (minified)", out);
      return absl::OkStatus();
    }
    // To the operating system before the answer: an acknowledged event is in the log.
    absl::Status logged = m.event_log->Append(m.line);
    if (logged.ok()) logged = m.event_log->Flush();
    if (!logged.ok()) return m.EventLogFailed(std::move(logged));
    if (m.event_log_failing.load(std::memory_order_relaxed)) m.event_log_failing.store(false, std::memory_order_relaxed);
    m.validator->Commit(m.rec);
  }

  auto t1 = std::chrono::steady_clock::now();
  out->timings.parse_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
  feature::FeatureEngine::Result r = m.features->Process(m.rec, m.values);
  auto t2 = std::chrono::steady_clock::now();
  out->timings.features_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t2 - t1).count();
  out->timings.model_ns = out->timings.policy_ns = 0;
  bool late = r == feature::FeatureEngine::Result::kTooLate;
  if (late) m.n_too_late.fetch_add(1, std::memory_order_relaxed);
  bool scored = m.rec.type->index >= 0 && m.spec->score_on[static_cast<size_t>(m.rec.type->index)];
  if (m.rec.type->is_label) {
    m.n_labels.fetch_add(1, std::memory_order_relaxed);
    m.StoreLabel(text);
  }

  if (!scored) {
    m.n_not_scored.fetch_add(1, std::memory_order_relaxed);
    out->status = Decision::Status::kNotScored;
    out->features.clear();
  } else {
    m.n_decided.fetch_add(1, std::memory_order_relaxed);
    out->status = Decision::Status::kDecided;
    out->features.assign(m.values.begin(), m.values.end());
    const std::shared_ptr<const Runtime>& rt = m.reader->Get();
    m.Score(*rt, rt->types[static_cast<size_t>(m.rec.type->index)], out);
  }
  out->latency_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  m.Render(out, late, with_features);
  if (scored) {
    if (m.log) m.SubmitDecision(*out);
    m.Remember(*out);
  }
  // Now and then the state is saved (event_log: save_state_s), so that a
  // restart after a crash replays only the log written since. The fork
  // pauses this event while the page tables are copied (23 ms for
  // bench/serve.sh's 240 MB of state), and while the child writes, every
  // page the server writes to is copied first (docs/api.md, "Saves while
  // serving").
  if (m.save_every.count() > 0 && t0 >= m.next_save) {
    m.next_save = t0 + m.save_every;
    (void)m.SaveInBackground();  // the outcome is in Stats
  }
  return absl::OkStatus();
}

std::string Engine::RejectBody(std::string_view body, std::string_view source,
                               std::string_view reason, bool not_a_label) {
  return impl_->RejectBody(body, source, reason, not_a_label);
}

absl::StatusOr<std::string> Engine::GetDecision(std::string_view event_id) {
  Impl& m = *impl_;
  std::optional<std::string> doc;
  if (m.log) {
    if (auto p = m.log->FindPending(event_id)) doc = p->json;
  }
  if (!doc && m.store) {
    VIGIL_ASSIGN_OR_RETURN(auto s, m.store->GetDecision(event_id));
    if (s) doc = s->json;
  }
  if (!doc) return absl::NotFoundError(StrCat("no decision for event '", event_id, "'"));
  // Labels that arrived for it: the store's, then those still on their way
  // to it. Looked for in the other order (a label moves from the queue to
  // the store, so it cannot slip between the two looks), and listed once.
  nlohmann::ordered_json labels = nlohmann::ordered_json::array();
  std::vector<store::LabelRow> pending;
  if (m.log) pending = m.log->FindPendingLabels(event_id);
  std::vector<store::LabelRow> rows;
  if (m.store) {
    auto stored = m.store->LabelsForEvent(event_id);
    if (stored.ok()) rows = *std::move(stored);
  }
  for (store::LabelRow& p : pending) {
    const bool stored = std::any_of(rows.begin(), rows.end(),
                                    [&](const store::LabelRow& l) { return l.label_id == p.label_id; });
    if (!stored) rows.push_back(std::move(p));
  }
  for (const store::LabelRow& l : rows) {
    labels.push_back({{"label_id", l.label_id}, {"kind", l.kind}, {"value", l.value},
                      {"time", core::FormatTimestamp(l.time_ms)}});
  }
  // Exact TreeSHAP reasons, when the model that decided is still loaded.
  std::string full;
  m.Expand(*doc, /*with_features=*/true, &full);
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(full, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::DataLossError(StrCat("the stored decision of '", event_id, "' is not JSON"));
  std::string label = j.value("model", "");
  std::shared_ptr<const Runtime> rt = m.runtime.Load();
  const LoadedModel* model = nullptr;
  for (const Runtime::Type& t : rt->types) {
    if (t.champion && t.champion->label == label) model = t.champion.get();
    for (const auto& c : t.challengers)
      if (c.model && c.model->label == label) model = c.model.get();
  }
  if (model && j.contains("features") && j["features"].is_object()) {
    const auto& feats = j["features"];
    std::vector<float> row(model->num_features(), std::numeric_limits<float>::quiet_NaN());
    std::vector<double> value(row.size(), std::numeric_limits<double>::quiet_NaN());  // as stored
    for (size_t i = 0; i < model->num_features(); ++i) {
      int s = model->spec_index[i];
      if (s < 0) continue;
      auto it = feats.find(m.feature_names[static_cast<size_t>(s)]);
      if (it != feats.end() && it->is_number()) {
        value[i] = it->get<double>();
        row[i] = static_cast<float>(value[i]);
      }
    }
    const model::Forest& f = *model->bundle.forest;
    std::vector<double> shap(f.num_features() + 1);
    f.ShapContributions(row.data(), shap.data());
    std::vector<uint32_t> idx(f.num_features());
    for (uint32_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) { return std::fabs(shap[a]) > std::fabs(shap[b]); });
    nlohmann::ordered_json exact = nlohmann::ordered_json::array();
    for (uint32_t i : idx) {
      if (shap[i] == 0) break;
      exact.push_back({{"feature", model->bundle.layout.feature_names[i]},
                       {"value", std::isnan(value[i]) ? nlohmann::ordered_json()
                                                      : nlohmann::ordered_json(value[i])},
                       {"contribution", shap[i]}});
    }
    j["exact_reasons"] = std::move(exact);
    j["bias"] = shap[f.num_features()];
    j["labels"] = std::move(labels);
  } else {
    j["exact_reasons"] = nullptr;
    j["exact_reasons_note"] = model ? "no features stored" : "the model that decided is no longer loaded";
    j["labels"] = std::move(labels);
  }
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

absl::Status Engine::Reload() {
  Impl& m = *impl_;
  std::lock_guard<std::mutex> lock(m.reload_mu);
  // vigil.yaml is read again for its models, challengers, holdouts and
  // policy; the other settings (store, logs, limits, listen) need a restart.
  VIGIL_ASSIGN_OR_RETURN(serve::ServeConfig cfg, serve::LoadServeConfig(m.options.config_path));
  std::shared_ptr<const Runtime> current = m.runtime.Load();
  VIGIL_ASSIGN_OR_RETURN(auto next, m.LoadRuntime(cfg, current.get()));
  // New models must fit the scratch rows sized at start.
  for (const Runtime::Type& t : next->types) {
    auto fits = [&](const std::shared_ptr<const LoadedModel>& lm) { return !lm || lm->num_features() <= m.row.size(); };
    bool ok = fits(t.champion);
    for (const auto& c : t.challengers) ok = ok && fits(c.model);
    if (!ok) return absl::FailedPreconditionError("a reloaded model has more inputs than the spec had at start: restart to use it");
  }
  std::vector<std::string> errors = next->errors;
  m.runtime.Set(std::move(next));
  if (!errors.empty()) {
    std::string msg = "reloaded, keeping the last good version of:";
    for (const std::string& e : errors) StrAppend(&msg, " ", e, ";");
    return absl::UnavailableError(msg);
  }
  return absl::OkStatus();
}

std::string Engine::ModelsJson() const {
  std::shared_ptr<const Runtime> rt = impl_->runtime.Load();
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < rt->types.size(); ++i) {
    const Runtime::Type& t = rt->types[i];
    if (!t.configured) continue;
    auto one = [&](const std::shared_ptr<const LoadedModel>& m, const char* role) {
      nlohmann::ordered_json j;
      j["event_type"] = impl_->schema->types[i].name;
      j["role"] = role;
      if (m) {
        j["name"] = m->name;
        j["version"] = m->version;
        j["path"] = m->path;
        j["trees"] = m->bundle.forest->num_trees();
        j["features"] = m->num_features();
      } else {
        j["name"] = nullptr;
        j["status"] = "unavailable: the policy's fallback applies";
      }
      out.push_back(std::move(j));
    };
    one(t.champion, "champion");
    for (const auto& c : t.challengers) one(c.model, c.ab ? "ab" : "shadow");
  }
  nlohmann::ordered_json doc;
  doc["models"] = std::move(out);
  doc["policy_hash"] = rt->policy->content_hash();
  doc["feature_spec_hash"] = impl_->spec->content_hash;
  if (!rt->errors.empty()) doc["reload_errors"] = rt->errors;
  if (!rt->warnings.empty()) doc["warnings"] = rt->warnings;
  return doc.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::vector<std::string> Engine::ConfigWarnings() const { return impl_->runtime.Load()->warnings; }

std::vector<RuleHits> Engine::RuleHitCounts() const {
  std::shared_ptr<const Runtime> rt = impl_->runtime.Load();
  std::vector<RuleHits> out;
  for (const event::EventTypeSpec& t : impl_->schema->types) {
    const auto& rules = rt->policy->rules_of(t.index);
    for (size_t i = 0; i < rules.size(); ++i) {
      out.push_back({t.name, rules[i].name, policy::ActionName(rules[i].action),
                     rt->policy->hits(t.index, static_cast<int>(i))});
    }
  }
  return out;
}

EngineStats Engine::Stats() const {
  const Impl& m = *impl_;
  EngineStats s;
  s.events = m.n_events.load(std::memory_order_relaxed);
  s.decided = m.n_decided.load(std::memory_order_relaxed);
  s.not_scored = m.n_not_scored.load(std::memory_order_relaxed);
  s.rejected = m.n_rejected.load(std::memory_order_relaxed);
  s.retries = m.n_retries.load(std::memory_order_relaxed);
  s.retries_unavailable = m.n_retries_unavailable.load(std::memory_order_relaxed);
  s.decisions_recovered = m.recovered;
  s.labels_recovered = m.labels_recovered;
  s.recovered_warning = m.recovered_warning;
  if (!m.label_recovery_warning.empty()) {
    s.recovered_warning +=
        StrCat(s.recovered_warning.empty() ? "" : "; ", m.label_recovery_warning);
  }
  s.labels = m.n_labels.load(std::memory_order_relaxed);
  s.too_late = m.n_too_late.load(std::memory_order_relaxed);
  s.entries_bucketed = m.features->bucketed();
  if (m.dead) {
    s.dead_letters = m.dead->written();
    s.dead_letters_dropped = m.dead->dropped();
    std::lock_guard<std::mutex> lock(m.dead_mu);
    s.dead_letter_error = m.dead_error;
  }
  s.event_log_errors = m.n_event_log_errors.load(std::memory_order_relaxed);
  if (m.event_log_failing.load(std::memory_order_relaxed)) {
    std::lock_guard<std::mutex> lock(m.event_log_mu);
    s.event_log_error = m.event_log_error;
  }
  s.replayed = m.replayed;
  s.replay_rejected = m.replay_rejected;
  s.replay_seconds = m.replay_seconds;
  s.state_restored = m.state_restored;
  s.state_events = m.state_events;
  s.state_not_used = m.state_not_used;
  {
    std::lock_guard<std::mutex> lock(m.save_mu);
    s.state_saves = m.saves;
    s.state_save_errors = m.save_errors;
    s.state_save_error = m.save_error;
    s.state_last_save_seconds = m.last_save_seconds;
    s.state_last_fork_us = m.last_fork_us;
    s.state_saving = m.save_running;
  }
  // When the newest saved state was written, whichever process wrote it
  // (this one, a save in the background, or the run before: an alert on
  // its age is right from the start): the file's own time.
  if (struct stat st; m.event_log && ::stat(m.StatePath().c_str(), &st) == 0) {
    s.state_last_save_ms = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000 + st.st_mtim.tv_nsec / 1000000;
  }
  if (m.log) {
    store::DecisionLogStats l = m.log->Stats();
    s.decisions_queued = l.queue_depth;
    s.decisions_stored = l.stored + l.replayed;
    s.decisions_journaled = l.journaled;
    s.decisions_queue_full = l.queue_full;
    s.journal_pending = l.journal_pending;
    s.decisions_lost = l.lost;
    s.decisions_refused = l.refused;
    s.decision_writer_boosts = l.writer_boosts;
    s.labels_stored = l.labels_stored + l.labels_replayed;
    s.labels_journaled = l.labels_journaled;
    s.labels_lost = l.labels_lost;
    s.store_errors = l.store_errors;
    s.store_error = l.last_error;
  }
  return s;
}

absl::StatusOr<int64_t> Engine::SaveState() { return impl_->SaveState(); }

absl::Status Engine::Ready() const {
  const Impl& m = *impl_;
  if (!m.event_log_failing.load(std::memory_order_relaxed)) return absl::OkStatus();
  std::string error;
  bool stopped;
  {
    std::lock_guard<std::mutex> lock(m.event_log_mu);
    error = m.event_log_error;
    stopped = m.event_log_stopped;
  }
  struct statvfs fs_stat;
  const bool known = ::statvfs(m.config.event_log_dir.c_str(), &fs_stat) == 0;
  const uint64_t free_bytes = known ? static_cast<uint64_t>(fs_stat.f_bavail) * fs_stat.f_frsize : 0;
  return serve::EventLogReadiness(stopped, known, free_bytes, error, known && fs_stat.f_files > 0,
                                  known ? static_cast<uint64_t>(fs_stat.f_favail) : 0);
}

absl::Status Engine::SaveStateInBackground() { return impl_->SaveInBackground(); }

absl::Status Engine::Flush() {
  Impl& m = *impl_;
  // Not the event log: Decide hands each event to the OS before it answers,
  // and the log is the Decide thread's alone (Flush may run beside it).
  if (m.log) return m.log->Flush(absl::Seconds(30));
  return absl::OkStatus();
}

}  // namespace vigil
