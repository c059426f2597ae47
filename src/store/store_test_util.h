// Helpers shared by the store tests: a temporary directory, decision rows,
// and a second SQLite connection that holds the database's write lock the
// way another process would.
//
// Thread-safety: none; used from the test's main thread.
#ifndef VIGIL_STORE_STORE_TEST_UTIL_H_
#define VIGIL_STORE_STORE_TEST_UTIL_H_

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/strings.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "store/store.h"

namespace vigil::store::testing {

using vigil::testing::TempDir;

inline DecisionRow Row(int64_t i, std::string_view prefix = "e") {
  DecisionRow r;
  r.event_id = StrCat(prefix, i);
  r.event_time_ms = 1700000000000 + i;
  r.event_type = "payment";
  r.action = i % 3 == 0 ? "block" : "allow";
  r.score =
      i % 5 == 0 ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(i % 1000) / 1000;
  r.model = "fraud@3";
  r.arm = i % 2 == 0 ? "control" : "";
  r.decided_at_ms = 1700000000500 + i;
  r.json = StrCat("{\"event_id\":\"", r.event_id, "\",\"action\":\"", r.action, "\"}");
  return r;
}

// A chargeback label "lab<i>" for the event `target` ("": an entity label).
inline LabelRow Label(int i, std::string_view target) {
  LabelRow l;
  l.label_id = StrCat("lab", i);
  l.kind = "chargeback";
  l.time_ms = 1000 + i;
  l.target_event_id = std::string(target);
  l.value = 0.5 * i;
  l.json = StrCat(R"({"event_id":"lab)", i, R"("})");
  return l;
}

// A connection of its own to a SQLite file that takes the write lock with
// BEGIN EXCLUSIVE, as another process writing the database would: the
// store's writes then fail with SQLITE_BUSY after its busy timeout.
class SqliteLock {
 public:
  explicit SqliteLock(const std::string& path) {
    EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    Exec("BEGIN EXCLUSIVE");
  }
  ~SqliteLock() {
    Release();
    sqlite3_close_v2(db_);
  }
  void Release() {
    if (held_) Exec("ROLLBACK");
    held_ = false;
  }
  void Commit() {
    Exec("COMMIT");
    held_ = false;
  }
  void Exec(const char* sql) {
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db_, sql, nullptr, nullptr, &err), SQLITE_OK)
        << sql << ": " << (err ? err : "");
    sqlite3_free(err);
  }

 private:
  sqlite3* db_ = nullptr;
  bool held_ = true;
};

// Makes the database refuse (SQLITE_CONSTRAINT, from a trigger) any
// decision whose event_id is `event_id`, as a database can refuse one row.
inline void RefuseEventId(const std::string& db_path, const std::string& event_id) {
  SqliteLock writer(db_path);
  writer.Exec(StrCat("CREATE TRIGGER refuse_", event_id,
                     " BEFORE INSERT ON decisions WHEN NEW.event_id = '", event_id,
                     "' BEGIN SELECT RAISE(ABORT, 'no ", event_id, " here'); END")
                  .c_str());
  writer.Commit();
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool Exists(const std::string& path) { return std::filesystem::exists(path); }

}  // namespace vigil::store::testing

#endif  // VIGIL_STORE_STORE_TEST_UTIL_H_
