#include "store/sqlite_store.h"

#include <sqlite3.h>

#include <cmath>
#include <limits>
#include <mutex>
#include <optional>

#include "core/strings.h"

namespace vigil::store {
namespace {

// The schema version this build writes and reads (table vigil_schema).
constexpr int64_t kSchemaVersion = 1;

// Plain SQL types and ON CONFLICT so that the PostgreSQL backend can use the
// same statements. docs/store.md describes the tables.
constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS vigil_schema (
  version BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
  event_id      TEXT PRIMARY KEY,
  event_time_ms BIGINT NOT NULL,
  event_type    TEXT NOT NULL,
  action        TEXT NOT NULL,
  score         DOUBLE PRECISION,
  model         TEXT NOT NULL,
  arm           TEXT NOT NULL,
  decided_at_ms BIGINT NOT NULL,
  json          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
  label_id        TEXT PRIMARY KEY,
  kind            TEXT NOT NULL,
  time_ms         BIGINT NOT NULL,
  target_event_id TEXT NOT NULL,
  target_key      TEXT NOT NULL,
  target_value    TEXT NOT NULL,
  value           DOUBLE PRECISION NOT NULL,
  json            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_by_target_event ON labels (target_event_id);
CREATE TABLE IF NOT EXISTS api_keys (
  sha256_hex TEXT PRIMARY KEY,
  role       TEXT NOT NULL,
  name       TEXT NOT NULL,
  created_ms BIGINT NOT NULL
);
)sql";

constexpr const char* kInsertDecision =
    "INSERT INTO decisions (event_id, event_time_ms, event_type, action, score, model, arm, "
    "decided_at_ms, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING";
constexpr const char* kGetDecision =
    "SELECT event_id, event_time_ms, event_type, action, score, model, arm, decided_at_ms, json "
    "FROM decisions WHERE event_id = ?";
constexpr const char* kCountDecisions = "SELECT COUNT(*) FROM decisions";
// The rowid grows with each insert: the newest row.
constexpr const char* kNewestDecision =
    "SELECT event_id FROM decisions ORDER BY rowid DESC LIMIT 1";
constexpr const char* kInsertLabel =
    "INSERT INTO labels (label_id, kind, time_ms, target_event_id, target_key, target_value, "
    "value, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (label_id) DO NOTHING";
constexpr const char* kHasLabel = "SELECT 1 FROM labels WHERE label_id = ?";
constexpr const char* kLabelsForEvent =
    "SELECT label_id, kind, time_ms, target_event_id, target_key, target_value, value, json "
    "FROM labels WHERE target_event_id = ? ORDER BY time_ms, label_id";
constexpr const char* kUpsertKey =
    "INSERT INTO api_keys (sha256_hex, role, name, created_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (sha256_hex) DO UPDATE SET role = excluded.role, name = excluded.name";
constexpr const char* kKeys =
    "SELECT sha256_hex, role, name, created_ms FROM api_keys ORDER BY created_ms, sha256_hex";

struct StmtDeleter {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Stmt = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

struct DbDeleter {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using Db = std::unique_ptr<sqlite3, DbDeleter>;

// SQLite's primary result code as a status code: a database that is busy,
// unreachable or full is Unavailable (retry later), a corrupt one DataLoss.
absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_PROTOCOL:
    case SQLITE_NOLFS:
    case SQLITE_AUTH:
      return absl::StatusCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_CONSTRAINT:
    case SQLITE_TOOBIG:
    case SQLITE_MISMATCH:
    case SQLITE_RANGE:
      return absl::StatusCode::kInvalidArgument;
    default:
      return absl::StatusCode::kInternal;
  }
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  // SQLITE_STATIC: the row outlives the step; the statement is reset before
  // the caller's row goes away.
  sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
}

void BindDouble(sqlite3_stmt* s, int i, double v) {
  if (std::isnan(v)) {
    sqlite3_bind_null(s, i);
  } else {
    sqlite3_bind_double(s, i, v);
  }
}

std::string ColumnText(sqlite3_stmt* s, int i) {
  const unsigned char* p = sqlite3_column_text(s, i);
  if (p == nullptr) return std::string();
  return std::string(reinterpret_cast<const char*>(p),
                     static_cast<size_t>(sqlite3_column_bytes(s, i)));
}

double ColumnDouble(sqlite3_stmt* s, int i) {
  if (sqlite3_column_type(s, i) == SQLITE_NULL) return std::numeric_limits<double>::quiet_NaN();
  return sqlite3_column_double(s, i);
}

// Resets a statement when it goes out of scope, so that it releases its read
// lock and its bindings whatever path the caller takes.
class ResetOnExit {
 public:
  explicit ResetOnExit(sqlite3_stmt* s) : s_(s) {}
  ~ResetOnExit() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;

 private:
  sqlite3_stmt* s_;
};

void BindDecision(sqlite3_stmt* s, const DecisionRow& r) {
  BindText(s, 1, r.event_id);
  sqlite3_bind_int64(s, 2, r.event_time_ms);
  BindText(s, 3, r.event_type);
  BindText(s, 4, r.action);
  BindDouble(s, 5, r.score);
  BindText(s, 6, r.model);
  BindText(s, 7, r.arm);
  sqlite3_bind_int64(s, 8, r.decided_at_ms);
  BindText(s, 9, r.json);
}

DecisionRow ReadDecision(sqlite3_stmt* s) {
  DecisionRow r;
  r.event_id = ColumnText(s, 0);
  r.event_time_ms = sqlite3_column_int64(s, 1);
  r.event_type = ColumnText(s, 2);
  r.action = ColumnText(s, 3);
  r.score = ColumnDouble(s, 4);
  r.model = ColumnText(s, 5);
  r.arm = ColumnText(s, 6);
  r.decided_at_ms = sqlite3_column_int64(s, 7);
  r.json = ColumnText(s, 8);
  return r;
}

void BindLabel(sqlite3_stmt* s, const LabelRow& r) {
  BindText(s, 1, r.label_id);
  BindText(s, 2, r.kind);
  sqlite3_bind_int64(s, 3, r.time_ms);
  BindText(s, 4, r.target_event_id);
  BindText(s, 5, r.target_key);
  BindText(s, 6, r.target_value);
  sqlite3_bind_double(s, 7, r.value);
  BindText(s, 8, r.json);
}

LabelRow ReadLabel(sqlite3_stmt* s) {
  LabelRow r;
  r.label_id = ColumnText(s, 0);
  r.kind = ColumnText(s, 1);
  r.time_ms = sqlite3_column_int64(s, 2);
  r.target_event_id = ColumnText(s, 3);
  r.target_key = ColumnText(s, 4);
  r.target_value = ColumnText(s, 5);
  r.value = sqlite3_column_double(s, 6);
  r.json = ColumnText(s, 7);
  return r;
}

class SqliteStore final : public Store {
 public:
  SqliteStore(std::string url, Db db) : url_(std::move(url)), db_(std::move(db)) {}

  // `path`: for the reading connection (a file's; an in-memory database
  // reads on its one connection).
  absl::Status Init(const std::string& path) {
    sqlite3_extended_result_codes(db_.get(), 1);
    sqlite3_busy_timeout(db_.get(), kSqliteOpenBusyTimeoutMs);
    bool in_memory = false;
    VIGIL_RETURN_IF_ERROR(SetJournalMode(&in_memory));
    VIGIL_RETURN_IF_ERROR(Exec("PRAGMA synchronous=FULL", "set synchronous=FULL"));
    VIGIL_RETURN_IF_ERROR(CreateSchema());
    sqlite3_busy_timeout(db_.get(), kSqliteBusyTimeoutMs);
    VIGIL_RETURN_IF_ERROR(Prepare(db_.get(), kInsertDecision, &insert_decision_));
    VIGIL_RETURN_IF_ERROR(Prepare(db_.get(), kInsertLabel, &insert_label_));
    VIGIL_RETURN_IF_ERROR(Prepare(db_.get(), kUpsertKey, &upsert_key_));
    // Reads on a connection of their own: in WAL mode they do not wait for
    // a write in progress (the decision log's writer commits at idle
    // priority while GET /v1/decisions and retries read).
    sqlite3* rdb = db_.get();
    if (!in_memory) {
      sqlite3* raw = nullptr;
      const int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
      read_db_.reset(raw);
      if (rc != SQLITE_OK) {
        return absl::Status(CodeFor(rc), StrCat(url_, ": cannot open '", path, "' for reading: ",
                                                raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
      }
      sqlite3_extended_result_codes(raw, 1);
      sqlite3_busy_timeout(raw, kSqliteBusyTimeoutMs);
      rdb = raw;
      read_mu_ = &own_read_mu_;
    }
    VIGIL_RETURN_IF_ERROR(Prepare(rdb, kGetDecision, &get_decision_));
    VIGIL_RETURN_IF_ERROR(Prepare(rdb, kCountDecisions, &count_decisions_));
    VIGIL_RETURN_IF_ERROR(Prepare(rdb, kNewestDecision, &newest_decision_));
    VIGIL_RETURN_IF_ERROR(Prepare(rdb, kHasLabel, &has_label_));
    VIGIL_RETURN_IF_ERROR(Prepare(rdb, kLabelsForEvent, &labels_for_event_));
    VIGIL_RETURN_IF_ERROR(Prepare(rdb, kKeys, &keys_));
    return absl::OkStatus();
  }

  std::string url() const override { return url_; }

  absl::Status PutDecisions(std::span<const DecisionRow> rows) override {
    std::lock_guard<std::mutex> lock(mu_);
    return PutRows(rows, insert_decision_.get(), "decisions",
                   [](sqlite3_stmt* s, const DecisionRow& r) {
                     BindDecision(s, r);
                     return StrCat("event_id '", r.event_id, "'");
                   });
  }

  absl::StatusOr<std::optional<DecisionRow>> GetDecision(std::string_view event_id) override {
    std::lock_guard<std::mutex> lock(*read_mu_);
    sqlite3_stmt* s = get_decision_.get();
    ResetOnExit reset(s);
    sqlite3_bind_text64(s, 1, event_id.data(), event_id.size(), SQLITE_STATIC, SQLITE_UTF8);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return std::optional<DecisionRow>();
    if (rc != SQLITE_ROW) return Error(s, StrCat("read decision '", event_id, "'"), rc);
    return std::optional<DecisionRow>(ReadDecision(s));
  }

  absl::StatusOr<int64_t> CountDecisions() override {
    std::lock_guard<std::mutex> lock(*read_mu_);
    sqlite3_stmt* s = count_decisions_.get();
    ResetOnExit reset(s);
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return Error(s, "count decisions", rc);
    return sqlite3_column_int64(s, 0);
  }

  absl::StatusOr<std::optional<std::string>> NewestDecisionId() override {
    std::lock_guard<std::mutex> lock(*read_mu_);
    sqlite3_stmt* s = newest_decision_.get();
    ResetOnExit reset(s);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return std::optional<std::string>();
    if (rc != SQLITE_ROW) return Error(s, "find the newest decision", rc);
    return std::optional<std::string>(ColumnText(s, 0));
  }

  absl::Status PutLabels(std::span<const LabelRow> rows) override {
    std::lock_guard<std::mutex> lock(mu_);
    return PutRows(rows, insert_label_.get(), "labels", [](sqlite3_stmt* s, const LabelRow& r) {
      BindLabel(s, r);
      return StrCat("label_id '", r.label_id, "'");
    });
  }

  absl::StatusOr<bool> HasLabel(std::string_view label_id) override {
    std::lock_guard<std::mutex> lock(*read_mu_);
    sqlite3_stmt* s = has_label_.get();
    ResetOnExit reset(s);
    sqlite3_bind_text64(s, 1, label_id.data(), label_id.size(), SQLITE_STATIC, SQLITE_UTF8);
    const int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) return false;
    if (rc != SQLITE_ROW) return Error(s, StrCat("read label '", label_id, "'"), rc);
    return true;
  }

  absl::StatusOr<std::vector<LabelRow>> LabelsForEvent(std::string_view event_id) override {
    std::lock_guard<std::mutex> lock(*read_mu_);
    sqlite3_stmt* s = labels_for_event_.get();
    ResetOnExit reset(s);
    sqlite3_bind_text64(s, 1, event_id.data(), event_id.size(), SQLITE_STATIC, SQLITE_UTF8);
    std::vector<LabelRow> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(ReadLabel(s));
    if (rc != SQLITE_DONE) return Error(s, StrCat("read labels of event '", event_id, "'"), rc);
    return out;
  }

  absl::Status PutKey(const KeyRow& key) override {
    // The value is not echoed: a string that is not a hash may be a key.
    if (!IsSha256Hex(key.sha256_hex)) {
      return absl::InvalidArgumentError(StrCat(
          url_,
          ": key sha256_hex must be 64 lowercase hex characters (the SHA-256 of the key), got ",
          key.sha256_hex.size(), " characters"));
    }
    if (!IsKeyRole(key.role)) {
      return absl::InvalidArgumentError(
          StrCat(url_, ": key role '", key.role, "' is not one of score, label, admin"));
    }
    std::lock_guard<std::mutex> lock(mu_);
    sqlite3_stmt* s = upsert_key_.get();
    ResetOnExit reset(s);
    BindText(s, 1, key.sha256_hex);
    BindText(s, 2, key.role);
    BindText(s, 3, key.name);
    sqlite3_bind_int64(s, 4, key.created_ms);
    const int rc = sqlite3_step(s);
    if (rc != SQLITE_DONE) return Error("insert into api_keys", rc);
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<KeyRow>> Keys() override {
    std::lock_guard<std::mutex> lock(*read_mu_);
    sqlite3_stmt* s = keys_.get();
    ResetOnExit reset(s);
    std::vector<KeyRow> out;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
      KeyRow k;
      k.sha256_hex = ColumnText(s, 0);
      k.role = ColumnText(s, 1);
      k.name = ColumnText(s, 2);
      k.created_ms = sqlite3_column_int64(s, 3);
      out.push_back(std::move(k));
    }
    if (rc != SQLITE_DONE) return Error(s, "read api_keys", rc);
    return out;
  }

 private:
  // "<url>: <what>: <SQLite's message>", coded by CodeFor.
  // REQUIRES: called right after the failing call, before any other on db_.
  absl::Status Error(std::string_view what, int rc) const {
    return absl::Status(CodeFor(rc), StrCat(url_, ": ", what, ": ", sqlite3_errmsg(db_.get())));
  }
  // The same for a statement of either connection.
  absl::Status Error(sqlite3_stmt* s, std::string_view what, int rc) const {
    return absl::Status(CodeFor(rc), StrCat(url_, ": ", what, ": ", sqlite3_errmsg(sqlite3_db_handle(s))));
  }

  absl::Status Exec(const char* sql, std::string_view what) {
    const int rc = sqlite3_exec(db_.get(), sql, nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) return Error(what, rc);
    return absl::OkStatus();
  }

  absl::Status Prepare(sqlite3* db, const char* sql, Stmt* out) {
    sqlite3_stmt* s = nullptr;
    const int rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      return absl::Status(CodeFor(rc), StrCat(url_, ": prepare '", sql, "': ", sqlite3_errmsg(db)));
    }
    out->reset(s);
    return absl::OkStatus();
  }

  // An in-memory database reports "memory" and cannot use WAL; a file must.
  absl::Status SetJournalMode(bool* in_memory) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db_.get(), "PRAGMA journal_mode=WAL", -1, &raw, nullptr);
    if (rc != SQLITE_OK) return Error("set journal_mode=WAL", rc);
    Stmt s(raw);
    rc = sqlite3_step(s.get());
    if (rc != SQLITE_ROW) return Error("set journal_mode=WAL", rc);
    const std::string mode = ColumnText(s.get(), 0);
    *in_memory = mode == "memory";
    if (mode != "wal" && mode != "memory") {
      return absl::FailedPreconditionError(StrCat(url_, ": cannot use WAL mode (journal_mode is '",
                                                  mode,
                                                  "'); is the file on a network file system?"));
    }
    return absl::OkStatus();
  }

  absl::Status CreateSchema() {
    // There already (every start but the first): read, not written, so that
    // a start does not wait for another writer's lock (a backup, an
    // analyst's shell), nor fail when it is held longer than the busy timeout.
    if (absl::StatusOr<std::optional<int64_t>> v = SchemaVersion(); v.ok() && v->has_value()) {
      if (**v == kSchemaVersion) return absl::OkStatus();
      if (**v > kSchemaVersion) return NewerSchema(**v);
    }
    VIGIL_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE", "create schema: begin transaction"));
    absl::Status st = CreateSchemaInTransaction();
    if (!st.ok()) {
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      return st;
    }
    st = Exec("COMMIT", "create schema: commit");
    if (!st.ok()) sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    return st;
  }

  absl::Status NewerSchema(int64_t version) const {
    return absl::FailedPreconditionError(StrCat(url_, ": schema version ", version,
                                                " is newer than this vigil knows (", kSchemaVersion,
                                                "); upgrade vigil"));
  }

  // The schema's version: nullopt before one is written; an error when
  // there is no schema table yet.
  absl::StatusOr<std::optional<int64_t>> SchemaVersion() {
    sqlite3_stmt* raw = nullptr;
    int rc =
        sqlite3_prepare_v2(db_.get(), "SELECT MAX(version) FROM vigil_schema", -1, &raw, nullptr);
    if (rc != SQLITE_OK) return Error("read schema version", rc);
    Stmt s(raw);
    rc = sqlite3_step(s.get());
    if (rc != SQLITE_ROW) return Error("read schema version", rc);
    if (sqlite3_column_type(s.get(), 0) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_int64(s.get(), 0);
  }

  absl::Status CreateSchemaInTransaction() {
    VIGIL_RETURN_IF_ERROR(Exec(kSchema, "create schema"));
    VIGIL_ASSIGN_OR_RETURN(const std::optional<int64_t> version, SchemaVersion());
    if (!version) {
      return Exec(
          StrCat("INSERT INTO vigil_schema (version) VALUES (", kSchemaVersion, ")").c_str(),
          "write schema version");
    }
    if (*version > kSchemaVersion) return NewerSchema(*version);
    return absl::OkStatus();
  }

  // All rows in one BEGIN IMMEDIATE transaction. `bind` binds one row and
  // returns how to name it in a message.
  // REQUIRES: mu_ held.
  template <typename Row, typename Bind>
  absl::Status PutRows(std::span<const Row> rows, sqlite3_stmt* s, std::string_view table,
                       Bind bind) {
    if (rows.empty()) return absl::OkStatus();
    VIGIL_RETURN_IF_ERROR(
        Exec("BEGIN IMMEDIATE", StrCat("insert into ", table, ": begin transaction")));
    absl::Status st;
    for (const Row& row : rows) {
      ResetOnExit reset(s);
      const std::string name = bind(s, row);
      const int rc = sqlite3_step(s);
      if (rc != SQLITE_DONE) {
        st = Error(StrCat("insert into ", table, " (", name, ")"), rc);
        break;
      }
    }
    if (st.ok()) st = Exec("COMMIT", StrCat("insert into ", table, ": commit"));
    // A failed COMMIT may leave the transaction open (SQLITE_BUSY); a failed
    // statement may have rolled it back already.
    if (!st.ok() && !sqlite3_get_autocommit(db_.get())) {
      sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    }
    return st;
  }

  const std::string url_;
  std::mutex mu_;
  Db db_;  // guarded by mu_ after Init: writes
  // Reads (the statements below prepared on it): a file's own read-only
  // connection, guarded by own_read_mu_; in memory, db_ and mu_.
  Db read_db_;
  std::mutex own_read_mu_;
  std::mutex* read_mu_ = &mu_;
  Stmt insert_decision_;
  Stmt get_decision_;
  Stmt count_decisions_;
  Stmt newest_decision_;
  Stmt insert_label_;
  Stmt has_label_;
  Stmt labels_for_event_;
  Stmt upsert_key_;
  Stmt keys_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(std::string url, std::string path) {
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  Db db(raw);  // closed on every path, also when the open failed
  if (rc != SQLITE_OK) {
    return absl::Status(CodeFor(rc), StrCat(url, ": cannot open '", path,
                                            "': ", raw ? sqlite3_errmsg(raw) : sqlite3_errstr(rc)));
  }
  auto store = std::make_unique<SqliteStore>(std::move(url), std::move(db));
  VIGIL_RETURN_IF_ERROR(store->Init(path));
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace vigil::store
