// vigil.yaml: what `vigil serve`, `vigil decide` and the in-process Engine
// run — the schema, the feature spec, the models per scored event type
// (a champion and optional challengers), the policy, the store, the event
// log, the listen address, API keys and limits (docs/api.md, "vigil.yaml").
// Relative paths are relative to the file's folder. Every error names
// file:line:col and the problem.
//
// Thread-safety: a loaded ServeConfig is a value.
#ifndef VIGIL_SERVE_CONFIG_H_
#define VIGIL_SERVE_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace vigil::serve {

struct ModelRef {
  std::string name;    // as decisions report it
  std::string bundle;  // path of the bundle (absolute after loading)
  enum class Mode { kChampion, kShadow, kAb } mode = Mode::kChampion;
  double share = 0;    // kAb: the share of users it decides for
  std::string where;   // file:line:col of its declaration
};

// The name a bundle gets when none is given: its folder's (or file's) name,
// a trailing slash or not ("models/w1/" is w1).
std::string ModelNameOfBundle(const std::string& bundle);
// Why `name` cannot name a model (it shows in decisions and /metrics as
// name@version: letters, digits, '.', '_' and '-'), or "" when it can.
std::string BadModelName(std::string_view name);

struct TypeModels {
  std::string event_type;
  ModelRef champion;
  std::vector<ModelRef> challengers;
  double holdout = 0;  // share of would-be blocks let through, marked
  std::string where;
};

struct Limits {
  int64_t max_body_bytes = 64 * 1024;  // 413 beyond it, checked before parsing
  int64_t max_batch = 100;             // events per POST /v1/events:batch
  double rate_per_key = 0;             // requests per second per API key; 0 = off
  double burst_per_key = 0;            // bucket size; 0 = one second's worth
  int64_t threads = 1;                 // HTTP event loops, each a thread serving many connections
  int64_t recent_decisions = 100000;   // decisions kept in memory for retries and GETs
  int64_t queue_capacity = 65536;      // decisions waiting for the store
  // Events stamped more than this ahead of the server's clock are refused
  // (when the schema sets no time_bounds.max_ahead_of_wall_clock); 0 = off.
  int64_t max_ahead_of_clock_s = 300;
  // MiB of memory `vigil serve` writes to once at start, before it opens the
  // engine, and gives back to its allocator (which keeps it): the state's
  // growth then reuses pages already mapped instead of faulting new ones in
  // while scoring (JVM's AlwaysPreTouch). 0 = off.
  int64_t pretouch_mb = 0;
};

struct ServeConfig {
  std::string file;  // the config file
  std::string dir;   // its folder
  std::string schema, features, policy;
  std::vector<TypeModels> models;
  std::string store = "sqlite:vigil.db";
  std::string journal;          // default: <dir>/decisions.journal.jsonl
  std::string event_log_dir;    // default: <dir>/eventlog
  int64_t event_log_rotate_bytes = 256ll << 20;
  bool event_log_rotate_daily = true;
  int64_t event_log_sync_ms = 0;  // 0: never fsync the event log (EventLogOptions)
  // How often the engine saves its state in the background while deciding
  // (Engine::SaveStateInBackground); 0: only at a clean stop.
  int64_t event_log_save_state_s = 600;
  // A save in the background still running this long after it began is
  // killed (storage that does not answer), so that saves go on; 0: three
  // intervals, and at least a minute (never, when save_state_s is 0).
  int64_t event_log_save_timeout_s = 0;
  std::string dead_letter;      // default: <dir>/dead-letter.jsonl
  std::string listen = "127.0.0.1:8080";
  std::string keys_file;        // "": keys live in the store
  std::string tls_cert, tls_key;
  int64_t reasons = 3;          // top features per decision
  uint64_t experiment_salt = 0; // mixes arm and holdout hashes (default: fixed)
  Limits limits;
};

absl::StatusOr<ServeConfig> LoadServeConfig(const std::string& path);

// Creates the folders of the store file, journal, event log, dead-letter
// file and keys file. Fails naming the folder.
absl::Status EnsureStateDirs(const ServeConfig& config);

// What a start would find wrong with the state paths, changing nothing
// (vigil serve --check): the event log folder and every state file's folder
// that exist are folders, the journal, dead-letter and keys files that exist
// are files, and a store file that exists is an SQLite database.
absl::Status CheckStatePaths(const ServeConfig& config);

// "HOST:PORT" split; InvalidArgument naming the text otherwise.
absl::Status ParseListen(std::string_view text, std::string* host, int* port);

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_CONFIG_H_
