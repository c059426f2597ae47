// The persistence interface of `vigil serve`: decisions, labels and API keys
// (as hashes) in a database. One abstract class, one factory (OpenStore) that
// picks the backend from a URL; SQLite is the default backend
// (store/sqlite_store.cc, the only file that includes sqlite3.h) and
// PostgreSQL will implement the same class, so the interface speaks in rows,
// not SQL. The tables are described in docs/store.md.
//
// Writes are idempotent: a row whose id is already stored is left as it is,
// so a batch replayed after a partial failure never duplicates anything.
// Scoring never calls a Store directly: decisions reach it through
// store/decision_log.h, which never blocks.
//
// Errors: Unavailable when the database cannot be reached, is locked or out
// of space (worth retrying), DataLoss when it is corrupt, InvalidArgument
// only when the database refuses a row itself (retrying will not help; the
// decision log sets such a row aside); every message names the store's URL
// and carries the database's own message.
//
// Thread-safety: every method may be called from any thread;
// implementations serialise internally.
#ifndef VIGIL_STORE_STORE_H_
#define VIGIL_STORE_STORE_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace vigil::store {

// One decision as `vigil serve` answered it.
struct DecisionRow {
  std::string event_id;
  int64_t event_time_ms = 0;
  std::string event_type;
  std::string action;  // allow | challenge | review | block | "" (not scored)
  double score = std::numeric_limits<double>::quiet_NaN();  // NaN when no model scored
  std::string model;                                        // "name@version" or ""
  std::string arm;                                          // experiment arm or ""
  int64_t decided_at_ms = 0;                                // wall clock
  std::string json;  // the whole decision document as served (opaque to the store)
};

// One label (fraud confirmed, chargeback, ...) for an event or an entity.
struct LabelRow {
  std::string label_id;  // the label event's own event_id
  std::string kind;
  int64_t time_ms = 0;
  std::string target_event_id;  // or ""
  std::string target_key;       // entity label: field name, or ""
  std::string target_value;     // entity label: value, or ""
  double value = 0;
  std::string json;  // the label event as received
};

// One API key, known only by its hash.
struct KeyRow {
  std::string sha256_hex;  // 64 lowercase hex chars of SHA-256(key); the key itself is never stored
  std::string role;        // score | label | admin
  std::string name;        // optional note
  int64_t created_ms = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // For messages, e.g. "sqlite:/var/lib/vigil/vigil.db".
  virtual std::string url() const = 0;

  // Stores all rows in one transaction: all of them or, on error, none. A
  // row whose event_id is already stored is left as it is (idempotent:
  // replay after a partial failure never duplicates). A NaN score is stored
  // as NULL and read back as NaN.
  virtual absl::Status PutDecisions(std::span<const DecisionRow> rows) = 0;
  // The stored decision, or nullopt when there is none.
  virtual absl::StatusOr<std::optional<DecisionRow>> GetDecision(std::string_view event_id) = 0;
  virtual absl::StatusOr<int64_t> CountDecisions() = 0;
  // The event id of the decision stored last (nullopt: none). Every decision
  // submitted before it reached the store or its journal first; one replayed
  // from a journal may have been stored after later ones.
  virtual absl::StatusOr<std::optional<std::string>> NewestDecisionId() = 0;

  // Like PutDecisions, idempotent by label_id.
  virtual absl::Status PutLabels(std::span<const LabelRow> rows) = 0;
  // Whether a label of this label_id is stored.
  virtual absl::StatusOr<bool> HasLabel(std::string_view label_id) = 0;
  // The labels whose target_event_id is `event_id`, oldest first (time_ms,
  // then label_id).
  virtual absl::StatusOr<std::vector<LabelRow>> LabelsForEvent(std::string_view event_id) = 0;

  // Adds a key, or for a sha256_hex already stored replaces its role and
  // name (created_ms stays the first one). InvalidArgument when sha256_hex
  // is not 64 lowercase hex characters (so a raw key is never stored by
  // mistake) or role is not score, label or admin.
  virtual absl::Status PutKey(const KeyRow& key) = 0;
  // Every key, oldest first (created_ms, then sha256_hex).
  virtual absl::StatusOr<std::vector<KeyRow>> Keys() = 0;
};

// Opens (and creates when missing) the store at `url`:
//   "sqlite:PATH"  a SQLite file, created with its schema when missing; WAL
//                  mode; a 50 ms busy timeout, so a locked database fails fast
//                  (Unavailable) rather than blocking. "sqlite::memory:" is a
//                  private in-memory database (tests).
// Anything else: InvalidArgument naming the URL and the supported schemes.
// Errors name the URL and SQLite's message.
absl::StatusOr<std::unique_ptr<Store>> OpenStore(std::string_view url);

// The local file the store at `url` keeps its data in (PATH of
// "sqlite:PATH"), or "" when it has none (an in-memory database, a server).
std::string StoreFilePath(std::string_view url);

// Checks, reading only its first bytes, that the file of the store at `url`
// is a database of its backend, when it exists and is not empty (OpenStore
// creates it otherwise). FailedPrecondition naming the file when it is not.
absl::Status CheckStoreFile(std::string_view url);

// Whether `s` is a valid KeyRow::sha256_hex: 64 lowercase hex characters.
bool IsSha256Hex(std::string_view s);

// Whether `role` is a KeyRow::role: score, label or admin.
bool IsKeyRole(std::string_view role);

}  // namespace vigil::store

#endif  // VIGIL_STORE_STORE_H_
