// The SQLite backend of store::Store (store.h). sqlite_store.cc is the only
// file in vigil that includes sqlite3.h.
//
// Two connections per store file, in WAL mode with synchronous=FULL (a
// committed batch survives a power cut) and a 50 ms busy timeout: one
// writes, one reads, so that a read (GET /v1/decisions, a retry older than
// the retry memory) does not wait for a write in progress: WAL readers see
// the last commit. When another process holds the write lock, a write fails
// fast with Unavailable instead of blocking its caller. Writes use BEGIN
// IMMEDIATE so that a busy database is detected when the transaction
// starts. An in-memory database (":memory:") has one connection for both.
//
// Thread-safety: every method may be called from any thread; one mutex
// serialises the writes, another the reads.
#ifndef VIGIL_STORE_SQLITE_STORE_H_
#define VIGIL_STORE_SQLITE_STORE_H_

#include <memory>
#include <string>

#include "core/status.h"
#include "store/store.h"

namespace vigil::store {

// How long a statement waits for another connection's lock before failing.
inline constexpr int kSqliteBusyTimeoutMs = 50;
// The same while the store is opened (WAL mode, the schema): a start waits
// out another process's write (`vigil keys create`, an analyst's shell).
inline constexpr int kSqliteOpenBusyTimeoutMs = 10'000;

// Opens the SQLite database at `path` (":memory:" for a private in-memory
// one), creating the file and the schema when missing. `url` is what
// messages and Store::url() say. Unavailable when the file cannot be opened
// or is locked, DataLoss when it is not a database, FailedPrecondition when
// its schema is newer than this build knows.
absl::StatusOr<std::unique_ptr<Store>> OpenSqliteStore(std::string url, std::string path);

}  // namespace vigil::store

#endif  // VIGIL_STORE_SQLITE_STORE_H_
