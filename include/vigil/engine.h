// vigil's decision pipeline, callable in-process: one event (JSON) in, one
// decision out — parse, validate, features, models, policy — exactly what
// `vigil serve` does for POST /v1/events, which wraps this class.
//
//   auto engine = vigil::Engine::Open({.config_path = "vigil.yaml"});
//   vigil::Decision d;
//   absl::Status s = (*engine)->Decide(R"({"event_id": ...})", &d);
//   if (d.action == "block") ...  // decided now, or a retry of a decided event
//
// The feature state is one ordered sequence (the order of Decide calls is the
// order of the event log, which backfill replays), so an Engine is used by one
// thread at a time; a caller with several threads serialises its calls (the
// HTTP server does, with one lock around Decide). From an event already
// received, Decide allocates only the copies a decision log and the retry
// memory keep, and where the feature state grows: a new entity, or an
// entity's window holding more entries than it ever has (its buffer
// doubles). A rejected event, and a retry of an unscored one, allocate
// their message (docs/api.md, "Hot path").
//
// Thread-safety: Decide, RejectBody, SaveState and SaveStateInBackground from
// one thread at a time (one of them at a time); GetDecision, Reload, ModelsJson,
// RuleHitCounts, Stats, Flush, Ready, ConfigWarnings and feature_names from
// any thread, concurrently with Decide. The destructor only once every other
// call has returned (Flush may wait up to 30 s).
//
// Signals: the engine changes no signal's disposition. Under a file size
// limit (RLIMIT_FSIZE) a process that embeds it ignores SIGXFSZ, as `vigil`
// does, so that a write past the limit fails (the event log answers 503 and
// goes on in a new file) instead of killing the process.
#ifndef VIGIL_ENGINE_H_
#define VIGIL_ENGINE_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace vigil {

// One decision. Reused from call to call: its strings and vectors keep their
// capacity, so a warm Decision costs no allocation. `reasons`, `rules`,
// `shadow` and `features` hold this event's values only when status is
// kDecided (otherwise they keep an earlier decision's).
struct Decision {
  enum class Status {
    kDecided,    // a scored event type: action, score, reasons...
    kNotScored,  // applied to feature state and logged; not a scored type
    kRejected,   // invalid: `error` says the field and the rule; dead-lettered. Or
                 // a label event Decide may not apply (403; not dead-lettered)
    kRetry,      // an event id seen before: `json` is the stored decision (and its action,
                 // score and model in their fields), state unchanged; 409
                 // event_id_taken for an event of another type under that id
                 // (409 decision_unavailable when a scored event's decision is not stored)
  };
  struct Reason {
    std::string feature;
    double value = 0;
    double contribution = 0;  // to the margin (log-odds)
  };
  struct Rule {
    std::string name, action, reason;
  };
  // A model scored in shadow (a challenger, or the champion when an A/B arm
  // decided) and what the policy would have decided with its score: the
  // same event, features and rules (Policy::DecideShadow, rule hit counters
  // untouched), before any holdout. Logged for comparison, never acted on.
  struct Shadow {
    std::string model;  // name@version
    double score = 0;
    std::string action;      // allow | challenge | review | block
    std::string decided_by;  // as Decision::decided_by
    // Whether the rules that fired are not the decision's (only a rule that
    // reads model.score can tell the scores apart), and then the names of
    // those that fired with this score (empty otherwise).
    bool rules_differ = false;
    std::vector<std::string> rules;
  };

  Status status = Status::kRejected;
  std::string event_id;
  std::string event_type;
  int64_t event_time_ms = 0;  // the event's time (ms since the epoch, UTC); 0 when rejected
  // allow | challenge | review | block: kDecided, or kRetry of a scored
  // event (the stored decision's); "" otherwise.
  std::string action;
  double score = std::numeric_limits<double>::quiet_NaN();  // NaN: no model score
  std::string model;   // name@version of the model that decided, or ""
  // The policy that decided: name@version, the version being the first 12
  // hex digits of its content hash (GET /v1/admin/models: policy_hash); the
  // version alone for a policy without a name.
  std::string policy;
  std::vector<Reason> reasons;
  // Every rule that fired, in file order, up to 32; past 32 the deciding
  // rule takes the last place, and rules_not_listed counts the others.
  std::vector<Rule> rules;
  int rules_not_listed = 0;
  std::string decided_by;   // "threshold", "rule:<name>", "on_model_unavailable", "default"
  std::string path;         // model | rules_only | fail_open | fail_closed
  std::string arm;          // the experiment arm
  double propensity = 1;    // probability of this arm (times the holdout's draw)
  bool holdout = false;     // a would-be block let through by the random holdout
  std::vector<Shadow> shadow;
  std::vector<double> features;  // in feature_names() order (NaN = missing)
  int64_t latency_us = 0;
  // Where the time went, in ns: decode and validate, features, models, policy.
  struct Timings {
    int64_t parse_ns = 0, features_ns = 0, model_ns = 0, policy_ns = 0;
  } timings;
  int http_status = 200;  // what the HTTP API answers: 200, 400 or 403 (kRejected), 503
  std::string error;      // kRejected: "field 'amount': rule min: ..." (every violation)
  std::string json;  // the answer document (docs/api.md); features only when asked
};

struct EngineOptions {
  std::string config_path;     // vigil.yaml
  std::string model_override;  // a bundle to use as the champion of every scored type
  // Offline (vigil decide): no store, no decision log, no event log, no dead-letter file.
  bool offline = false;
  // Offline over a live server's event log: its events were checked against
  // that server's clock when it took them, and are not checked again
  // (event::Validator::SetReplaying).
  bool event_log_input = false;
};

struct EngineStats {
  int64_t events = 0, decided = 0, not_scored = 0, rejected = 0, retries = 0, labels = 0;
  int64_t too_late = 0;
  // Of the retries: scored events whose decision was not stored (answered
  // 409 decision_unavailable: lost in a crash, or no longer kept).
  int64_t retries_unavailable = 0;
  // At start: decisions lost in a crash (still queued for the store when the
  // process died) made again from the event log, marked "recovered".
  int64_t decisions_recovered = 0;
  // At start: labels lost in a crash the same way, stored from the event log.
  int64_t labels_recovered = 0;
  // Set when the model or the policy that made the store's last decision is
  // not loaded now: the recovered decisions may differ from those answered.
  std::string recovered_warning;
  // Feature entries of busy keys merged into time buckets by the spec's
  // limits.max_entries_per_key (windows reaching them are approximate, within
  // docs/features.md's bound).
  int64_t entries_bucketed = 0;
  // Rejected events written to the dead-letter file, and those a failed
  // write (a full disk) lost, with the last such error.
  int64_t dead_letters = 0, dead_letters_dropped = 0;
  std::string dead_letter_error;
  // Events the event log could not take (answered 503), and the error of the
  // last one while the log is failing ("" once a write succeeded again).
  int64_t event_log_errors = 0;
  std::string event_log_error;
  // At start: events of the event log replayed into the feature state, those
  // the current schema rejected, and the time it took.
  int64_t replayed = 0, replay_rejected = 0;
  double replay_seconds = 0;
  // The state saved at the last clean stop (SaveState): restored when
  // `state_restored`, with the events it had applied; otherwise
  // `state_not_used` says why not ("" when there was none).
  bool state_restored = false;
  int64_t state_events = 0;
  std::string state_not_used;
  // Saves of the state since Open (SaveState, SaveStateInBackground): those
  // completed and those that failed (the last error); when the newest saved
  // state was written (its file's time, ms since the epoch, whichever run
  // wrote it; 0: there is none); how long the last save took, the pause
  // the last background save's fork cost the Decide thread, and whether one
  // is running now.
  int64_t state_saves = 0, state_save_errors = 0;
  std::string state_save_error;
  int64_t state_last_save_ms = 0;
  double state_last_save_seconds = 0;
  int64_t state_last_fork_us = 0;
  bool state_saving = false;
  int64_t decisions_queued = 0, decisions_stored = 0, decisions_journaled = 0;
  int64_t decisions_queue_full = 0, journal_pending = 0, decisions_lost = 0, decisions_refused = 0;
  // Times the decision writer (idle priority) fell behind and was raised.
  int64_t decision_writer_boosts = 0;
  // Labels take the decisions' way: stored (from the queue or replayed from
  // the journal), journaled, or lost (the journal failed too).
  int64_t labels_stored = 0, labels_journaled = 0, labels_lost = 0;
  int64_t store_errors = 0;
  std::string store_error;  // the last one; "" once the store takes writes again
};

// Hits of one policy rule since start (or the last reload of the policy).
struct RuleHits {
  std::string event_type, rule, action;
  int64_t hits = 0;
};

class Engine {
 public:
  // Loads vigil.yaml and everything it names, checked: errors name the file,
  // line and problem. A bundle whose features don't match the spec is an
  // error. Opens the store, the decision log, the event log.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  ~Engine();

  // Decides one event (a JSON object). A non-OK status only for a failure of
  // vigil itself (the event log cannot be written); a bad event is a
  // kRejected decision. `with_features` adds the features to `json`.
  // Without `may_label` (a caller whose key has no label role), a label
  // event is refused, neither applied nor remembered: kRejected, 403,
  // "forbidden".
  absl::Status Decide(std::string_view event_json, Decision* out, bool with_features = false,
                      bool may_label = true);

  // Writes a request body that holds no event to decide (a POST
  // /v1/events:batch or /v1/labels body that is not valid JSON, not an
  // array, or has an element that is not an object) to the dead-letter file
  // as one record: rule malformed_json, `reason` (what was wrong, where),
  // `source` (the request, e.g. "POST /v1/labels") as its file, the body as
  // its raw text (pii masked, cut at the schema's max_record_bytes). Counted
  // in Stats().dead_letters (or dead_letters_dropped); not an event, so not
  // in `events` or `rejected`. Nothing offline (no dead-letter file).
  // `not_a_label`: an element of a POST /v1/labels body that is no label
  // event, written as one dead letter of rule unknown_event_type instead,
  // named by its event id when it has a readable one (as an invalid event
  // is); returns that id ("" when none, and always without `not_a_label`).
  // Thread-safety: as Decide (one thread at a time, not during a Decide).
  std::string RejectBody(std::string_view body, std::string_view source, std::string_view reason,
                         bool not_a_label = false);

  // The stored decision of `event_id` (JSON, features included) with exact
  // TreeSHAP reasons added when its model is loaded; NotFound if none.
  absl::StatusOr<std::string> GetDecision(std::string_view event_id);

  // Reloads the models and the policy named by the configuration. On any
  // failure the running ones stay and the error is returned.
  absl::Status Reload();
  // The loaded models, as JSON (name, version, path, event types, role),
  // with "warnings" (ConfigWarnings) when there are any.
  std::string ModelsJson() const;
  // What the loaded configuration leaves undecided, one sentence each: a
  // scored event type the policy does not cover (every such event is
  // allowed), a type whose thresholds never apply (no model configured).
  // Empty for a configuration without such gaps. Updated by Reload.
  std::vector<std::string> ConfigWarnings() const;

  const std::vector<std::string>& feature_names() const;
  std::vector<RuleHits> RuleHitCounts() const;
  EngineStats Stats() const;
  // Everything submitted so far is in the store or the journal.
  absl::Status Flush();
  // Whether events can be taken (GET /readyz): Unavailable, saying why, when
  // the event log has stopped (a write error other than want of room, or a
  // failed sync: only a restart helps), or when its last write failed for
  // want of room and the disk still has less than 1 MiB free. A log short of
  // room but with room again is ready: the next event retries.
  absl::Status Ready() const;
  // Saves the feature state and the duplicate-id window beside the event
  // log (<event log>/state.snap), so that the next Open restores them and
  // replays only the event log written after (the rest of the file the
  // state ended in included). Not while a Decide runs: at a clean stop, or
  // between calls (it takes about a second per 150 MB of state). A save
  // running in the background is stopped first (it would write an older
  // state over this one). The decisions and labels submitted so far are
  // waited for (a minute at most, else Unavailable): a state may stand only
  // where every decision of its events is in the store or the journal, or a
  // crash would lose the queued ones for good. Returns the bytes written.
  absl::StatusOr<int64_t> SaveState();
  // Saves the state as SaveState does, but in a child process (fork): it
  // returns once the child is started, and deciding goes on while the child
  // writes the state as it was at the call (copy-on-write). Decide calls it
  // by itself every vigil.yaml `event_log: {save_state_s}` (600 s by
  // default). Not while a Decide runs. FailedPrecondition when a save is
  // running already or there is no event log; Unavailable when the fork
  // fails. The child's state takes its place once the decisions and labels
  // of its events are in the store or the journal (SaveState). How the save
  // ends is in Stats. Destroying the Engine stops a save still running (the
  // state saved before stays).
  absl::Status SaveStateInBackground();

  struct Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace vigil

#endif  // VIGIL_ENGINE_H_
