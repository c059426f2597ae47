#include "store/store.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/store_test_util.h"

namespace vigil::store {
namespace {

using ::testing::HasSubstr;
using testing::Row;
using testing::SqliteLock;
using testing::TempDir;

std::unique_ptr<Store> MustOpen(const std::string& url) {
  auto store = OpenStore(url);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

void ExpectSameDecision(const DecisionRow& got, const DecisionRow& want) {
  EXPECT_EQ(got.event_id, want.event_id);
  EXPECT_EQ(got.event_time_ms, want.event_time_ms);
  EXPECT_EQ(got.event_type, want.event_type);
  EXPECT_EQ(got.action, want.action);
  if (std::isnan(want.score)) {
    EXPECT_TRUE(std::isnan(got.score)) << got.score;
  } else {
    EXPECT_EQ(got.score, want.score);
  }
  EXPECT_EQ(got.model, want.model);
  EXPECT_EQ(got.arm, want.arm);
  EXPECT_EQ(got.decided_at_ms, want.decided_at_ms);
  EXPECT_EQ(got.json, want.json);
}

LabelRow Label(std::string id, std::string target, int64_t time_ms) {
  LabelRow l;
  l.label_id = std::move(id);
  l.kind = "chargeback";
  l.time_ms = time_ms;
  l.target_event_id = std::move(target);
  l.value = 1;
  l.json = StrCat("{\"event_id\":\"", l.label_id, "\"}");
  return l;
}

TEST(OpenStoreTest, UnknownSchemeIsInvalidArgumentNamingUrlAndSupportedSchemes) {
  auto store = OpenStore("postgres://db.example/vigil");
  ASSERT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("postgres://db.example/vigil"));
  EXPECT_THAT(store.status().message(), HasSubstr("sqlite:PATH"));
}

TEST(OpenStoreTest, SqliteWithoutPathIsInvalidArgument) {
  auto store = OpenStore("sqlite:");
  ASSERT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("no file path"));
}

TEST(OpenStoreTest, SqliteUrlWithAHostIsInvalidArgument) {
  auto store = OpenStore("sqlite://dbhost/vigil.db");
  ASSERT_EQ(store.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(store.status().message(), HasSubstr("not a host"));
}

TEST(OpenStoreTest, MissingDirectoryIsUnavailableNamingUrlAndSqliteMessage) {
  TempDir dir;
  const std::string url = StrCat("sqlite:", dir.File("no/such/dir/vigil.db"));
  auto store = OpenStore(url);
  ASSERT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(), HasSubstr(url));
  EXPECT_THAT(store.status().message(), HasSubstr("unable to open"));
}

TEST(OpenStoreTest, FileThatIsNotADatabaseIsDataLoss) {
  TempDir dir;
  const std::string path = dir.File("junk.db");
  std::ofstream(path) << std::string(4096, 'x');
  auto store = OpenStore(StrCat("sqlite:", path));
  ASSERT_EQ(store.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(store.status().message(), HasSubstr("not a database"));
}

TEST(StoreFileTest, PathIsThatOfASqliteFileOnly) {
  EXPECT_EQ(StoreFilePath("sqlite:/var/lib/vigil/vigil.db"), "/var/lib/vigil/vigil.db");
  EXPECT_EQ(StoreFilePath("sqlite::memory:"), "");
  EXPECT_EQ(StoreFilePath("postgresql://db/vigil"), "");
}

TEST(StoreFileTest, CheckAcceptsADatabaseAMissingFileAndAnEmptyOne) {
  TempDir dir;
  const std::string db = dir.File("vigil.db");
  EXPECT_TRUE(CheckStoreFile(StrCat("sqlite:", db)).ok());  // missing: OpenStore creates it
  std::ofstream(db).close();
  EXPECT_TRUE(CheckStoreFile(StrCat("sqlite:", db)).ok());  // empty: SQLite takes it
  std::filesystem::remove(db);
  ASSERT_TRUE(OpenStore(StrCat("sqlite:", db)).ok());
  EXPECT_TRUE(CheckStoreFile(StrCat("sqlite:", db)).ok());
}

TEST(StoreFileTest, CheckRefusesAFileThatIsNotADatabaseWithoutChangingIt) {
  TempDir dir;
  const std::string path = dir.File("notes.txt");
  std::ofstream(path) << "SQLite format 2 and then some";
  const absl::Status st = CheckStoreFile(StrCat("sqlite:", path));
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr(path));
  EXPECT_THAT(st.message(), HasSubstr("not an SQLite database"));
  EXPECT_EQ(std::filesystem::file_size(path), 29u);
}

TEST(SqliteStoreTest, CreatesTheFileInWalModeAndReportsItsUrl) {
  TempDir dir;
  const std::string path = dir.File("vigil.db");
  auto store = MustOpen(StrCat("sqlite:", path));
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->url(), StrCat("sqlite:", path));
  EXPECT_TRUE(testing::Exists(path));
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(s), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(s, 0)), "wal");
  sqlite3_finalize(s);
  sqlite3_close_v2(db);
}

TEST(SqliteStoreTest, DecisionRoundTripsEveryField) {
  TempDir dir;
  auto store = MustOpen(StrCat("sqlite:", dir.File("vigil.db")));
  ASSERT_NE(store, nullptr);
  DecisionRow scored = Row(1);
  scored.score = 0.1234567890123456789;
  scored.event_time_ms = -5;  // before 1970: still exact
  scored.decided_at_ms = std::numeric_limits<int64_t>::max();
  scored.json = std::string("{\"note\":\"caf\xc3\xa9 \\u0000\"}") + std::string(1, '\0') + "tail";
  DecisionRow unscored = Row(2);
  unscored.score = std::numeric_limits<double>::quiet_NaN();
  unscored.action = "";
  unscored.model = "";
  const DecisionRow rows[] = {scored, unscored};
  ASSERT_TRUE(store->PutDecisions(rows).ok());

  auto got = store->GetDecision(scored.event_id);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  ExpectSameDecision(**got, scored);
  got = store->GetDecision(unscored.event_id);
  ASSERT_TRUE(got.ok() && got->has_value());
  ExpectSameDecision(**got, unscored);
  EXPECT_EQ(*store->CountDecisions(), 2);
}

TEST(SqliteStoreTest, GetDecisionOfAnUnknownIdIsNullopt) {
  TempDir dir;
  auto store = MustOpen(StrCat("sqlite:", dir.File("vigil.db")));
  ASSERT_NE(store, nullptr);
  auto got = store->GetDecision("never-seen");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());
}

TEST(SqliteStoreTest, PutDecisionsLeavesAnAlreadyStoredEventIdAsItIs) {
  TempDir dir;
  auto store = MustOpen(StrCat("sqlite:", dir.File("vigil.db")));
  ASSERT_NE(store, nullptr);
  const DecisionRow first = Row(1);
  ASSERT_TRUE(store->PutDecisions(std::span(&first, 1)).ok());
  DecisionRow again = Row(1);
  again.action = "review";
  again.json = "{\"second\":true}";
  // Also a duplicate inside one batch.
  const DecisionRow batch[] = {again, Row(2), Row(2)};
  ASSERT_TRUE(store->PutDecisions(batch).ok());
  EXPECT_EQ(*store->CountDecisions(), 2);
  auto got = store->GetDecision(first.event_id);
  ASSERT_TRUE(got.ok() && got->has_value());
  ExpectSameDecision(**got, first);
}

// The decision stored last, whatever its id: what a restart after a crash
// recovers after. A row already stored does not become the newest again.
TEST(SqliteStoreTest, NewestDecisionIdIsTheLastOneStored) {
  TempDir dir;
  auto store = MustOpen(StrCat("sqlite:", dir.File("vigil.db")));
  ASSERT_NE(store, nullptr);
  auto newest = store->NewestDecisionId();
  ASSERT_TRUE(newest.ok()) << newest.status();
  EXPECT_FALSE(newest->has_value());
  const DecisionRow first[] = {Row(9), Row(3)};
  ASSERT_TRUE(store->PutDecisions(first).ok());
  EXPECT_EQ(**store->NewestDecisionId(), Row(3).event_id);
  const DecisionRow later[] = {Row(1), Row(9)};
  ASSERT_TRUE(store->PutDecisions(later).ok());
  EXPECT_EQ(**store->NewestDecisionId(), Row(1).event_id);
}

TEST(SqliteStoreTest, EmptyBatchIsOk) {
  auto store = MustOpen("sqlite::memory:");
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(store->PutDecisions({}).ok());
  EXPECT_TRUE(store->PutLabels({}).ok());
  EXPECT_EQ(*store->CountDecisions(), 0);
}

TEST(SqliteStoreTest, LabelsRoundTripOldestFirstAndAreIdempotentByLabelId) {
  TempDir dir;
  auto store = MustOpen(StrCat("sqlite:", dir.File("vigil.db")));
  ASSERT_NE(store, nullptr);
  LabelRow late = Label("l2", "e1", 200);
  LabelRow early = Label("l1", "e1", 100);
  early.value = 0.5;
  LabelRow entity = Label("l3", "", 150);
  entity.target_key = "card_id";
  entity.target_value = "c-9";
  const LabelRow rows[] = {late, early, entity};
  ASSERT_TRUE(store->PutLabels(rows).ok());
  LabelRow changed = late;
  changed.kind = "refund";
  ASSERT_TRUE(store->PutLabels(std::span(&changed, 1)).ok());

  auto got = store->LabelsForEvent("e1");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].label_id, "l1");
  EXPECT_EQ((*got)[0].value, 0.5);
  EXPECT_EQ((*got)[0].time_ms, 100);
  EXPECT_EQ((*got)[0].json, early.json);
  EXPECT_EQ((*got)[1].label_id, "l2");
  EXPECT_EQ((*got)[1].kind, "chargeback");
  EXPECT_TRUE(store->LabelsForEvent("e2")->empty());
  for (const char* id : {"l1", "l2", "l3"}) EXPECT_TRUE(*store->HasLabel(id)) << id;
  EXPECT_FALSE(*store->HasLabel("l4"));
  EXPECT_FALSE(*store->HasLabel("e1"));
}

TEST(SqliteStoreTest, KeysRoundTripAndPutKeyReplacesRoleKeepingCreatedTime) {
  TempDir dir;
  auto store = MustOpen(StrCat("sqlite:", dir.File("vigil.db")));
  ASSERT_NE(store, nullptr);
  const KeyRow a{std::string(64, 'a'), "score", "checkout", 1000};
  const KeyRow b{std::string(64, '0'), "admin", "", 500};
  ASSERT_TRUE(store->PutKey(a).ok());
  ASSERT_TRUE(store->PutKey(b).ok());
  ASSERT_TRUE(store->PutKey(KeyRow{a.sha256_hex, "label", "labels feed", 9999}).ok());

  auto keys = store->Keys();
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].sha256_hex, b.sha256_hex);
  EXPECT_EQ((*keys)[0].role, "admin");
  EXPECT_EQ((*keys)[1].sha256_hex, a.sha256_hex);
  EXPECT_EQ((*keys)[1].role, "label");
  EXPECT_EQ((*keys)[1].name, "labels feed");
  EXPECT_EQ((*keys)[1].created_ms, 1000);
}

TEST(SqliteStoreTest, PutKeyRefusesARawKeyWithoutEchoingIt) {
  auto store = MustOpen("sqlite::memory:");
  ASSERT_NE(store, nullptr);
  const absl::Status st = store->PutKey(KeyRow{"vk_live_SECRET", "score", "", 1});
  ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("64 lowercase hex"));
  EXPECT_THAT(st.message(), ::testing::Not(HasSubstr("SECRET")));
  EXPECT_EQ(store->PutKey(KeyRow{std::string(64, 'A'), "score", "", 1}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(store->Keys()->empty());
}

TEST(SqliteStoreTest, PutKeyRefusesAnUnknownRole) {
  auto store = MustOpen("sqlite::memory:");
  ASSERT_NE(store, nullptr);
  const absl::Status st = store->PutKey(KeyRow{std::string(64, 'f'), "root", "", 1});
  ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("'root'"));
}

TEST(SqliteStoreTest, ReopeningTheFileKeepsEveryRow) {
  TempDir dir;
  const std::string url = StrCat("sqlite:", dir.File("vigil.db"));
  {
    auto store = MustOpen(url);
    ASSERT_NE(store, nullptr);
    const DecisionRow rows[] = {Row(1), Row(2), Row(3)};
    ASSERT_TRUE(store->PutDecisions(rows).ok());
    ASSERT_TRUE(store->PutKey(KeyRow{std::string(64, 'b'), "admin", "ops", 7}).ok());
  }
  auto store = MustOpen(url);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(*store->CountDecisions(), 3);
  EXPECT_EQ(store->Keys()->size(), 1u);
}

TEST(SqliteStoreTest, LockedDatabaseFailsFastWithUnavailableAndStoresNothingOfTheBatch) {
  TempDir dir;
  const std::string path = dir.File("vigil.db");
  auto store = MustOpen(StrCat("sqlite:", path));
  ASSERT_NE(store, nullptr);
  SqliteLock lock(path);
  const DecisionRow rows[] = {Row(1), Row(2)};
  const auto t0 = std::chrono::steady_clock::now();
  const absl::Status st = store->PutDecisions(rows);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(st.code(), absl::StatusCode::kUnavailable) << st;
  EXPECT_THAT(st.message(), HasSubstr(StrCat("sqlite:", path)));
  EXPECT_THAT(st.message(), HasSubstr("locked"));
  EXPECT_LT(took, std::chrono::seconds(2));  // the busy timeout is 50 ms; a sanity bound
  // WAL: readers are not blocked by the writer's lock.
  EXPECT_EQ(*store->CountDecisions(), 0);
  lock.Release();
  ASSERT_TRUE(store->PutDecisions(rows).ok());
  EXPECT_EQ(*store->CountDecisions(), 2);
}

// Opening waits out another process's write lock (up to 10 s), where a
// write fails after 50 ms: a start must not fail because `vigil keys create`
// was writing at that moment.
// A backup or an analyst's shell holding the write lock does not stop a
// start (a restart after a crash above all): the schema, there already, is
// read, not written; writes fail fast until the lock is let go.
TEST(SqliteStoreTest, OpeningAStoreThatHasItsSchemaDoesNotWaitForAnotherWritersLock) {
  TempDir dir;
  const std::string path = dir.File("vigil.db");
  ASSERT_NE(MustOpen(StrCat("sqlite:", path)), nullptr);
  SqliteLock lock(path);
  const auto t0 = std::chrono::steady_clock::now();
  auto store = OpenStore(StrCat("sqlite:", path));
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  lock.Release();
  EXPECT_TRUE((*store)->PutDecisions(std::span<const DecisionRow>()).ok());
  const DecisionRow rows[] = {Row(1)};
  {
    SqliteLock again(path);  // writes still fail fast
    EXPECT_EQ((*store)->PutDecisions(rows).code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_TRUE((*store)->PutDecisions(rows).ok());
}

// The first start creates the schema: that needs the write lock, and waits
// for another process's for a while rather than fail at once.
TEST(SqliteStoreTest, CreatingTheSchemaWaitsForAnotherWritersLock) {
  TempDir dir;
  const std::string path = dir.File("vigil.db");
  {
    sqlite3* db = nullptr;  // an empty database: no schema yet
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  SqliteLock lock(path);
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    lock.Release();
  });
  auto store = OpenStore(StrCat("sqlite:", path));
  release.join();
  ASSERT_TRUE(store.ok()) << store.status();
  const DecisionRow rows[] = {Row(1)};
  EXPECT_TRUE((*store)->PutDecisions(rows).ok());
}

// Reads have a connection of their own: one does not wait for a write of
// the same store in progress. Here the write waits for another process's
// lock (up to the 50 ms busy timeout), which is let go only once the read
// has returned: had the read waited for the write, the write would have
// timed out. (Several tries: a machine busy enough to delay the read past
// the timeout fails one.)
TEST(SqliteStoreTest, AReadDoesNotWaitForAWriteInProgress) {
  TempDir dir;
  const std::string path = dir.File("vigil.db");
  auto store = MustOpen(StrCat("sqlite:", path));
  ASSERT_NE(store, nullptr);
  const DecisionRow first[] = {Row(0)};
  ASSERT_TRUE(store->PutDecisions(first).ok());
  bool written = false;
  for (int attempt = 0; attempt < 5 && !written; ++attempt) {
    SqliteLock lock(path);
    const DecisionRow rows[] = {Row(1 + attempt)};
    absl::Status put;
    std::thread writer([&] { put = store->PutDecisions(rows); });
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the writer waits for the lock
    auto got = store->GetDecision(Row(0).event_id);
    ASSERT_TRUE(got.ok() && got->has_value()) << got.status();
    lock.Release();
    writer.join();
    written = put.ok();
    if (!written) {
      EXPECT_EQ(put.code(), absl::StatusCode::kUnavailable) << put;
    }
  }
  EXPECT_TRUE(written) << "every read waited for the write";
}

TEST(SqliteStoreTest, RowTheDatabaseRefusesIsInvalidArgumentAndNoRowOfTheBatchIsStored) {
  TempDir dir;
  const std::string path = dir.File("vigil.db");
  auto store = MustOpen(StrCat("sqlite:", path));
  ASSERT_NE(store, nullptr);
  testing::RefuseEventId(path, "poison");
  DecisionRow poison = Row(0);
  poison.event_id = "poison";
  const DecisionRow rows[] = {Row(1), poison, Row(2)};
  const absl::Status st = store->PutDecisions(rows);
  ASSERT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(st.message(), HasSubstr("event_id 'poison'"));
  EXPECT_THAT(st.message(), HasSubstr("no poison here"));
  EXPECT_EQ(*store->CountDecisions(), 0);
}

TEST(SqliteStoreTest, SchemaNewerThanThisBuildIsRefused) {
  TempDir dir;
  const std::string path = dir.File("vigil.db");
  ASSERT_NE(MustOpen(StrCat("sqlite:", path)), nullptr);
  {
    SqliteLock writer(path);
    writer.Exec("INSERT INTO vigil_schema (version) VALUES (99)");
    writer.Commit();
  }
  SqliteLock lock(path);  // said at once, not after waiting for the lock to be let go
  auto store = OpenStore(StrCat("sqlite:", path));
  ASSERT_EQ(store.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store.status().message(), HasSubstr("schema version 99"));
}

TEST(SqliteStoreTest, ManyThreadsWriteAndReadAtOnce) {
  TempDir dir;
  auto store = MustOpen(StrCat("sqlite:", dir.File("vigil.db")));
  ASSERT_NE(store, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < 10; ++b) {
        std::vector<DecisionRow> rows;
        for (int i = 0; i < 20; ++i) rows.push_back(Row(t * 1000 + b * 20 + i));
        EXPECT_TRUE(store->PutDecisions(rows).ok());
        EXPECT_TRUE(store->GetDecision(rows[0].event_id)->has_value());
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(*store->CountDecisions(), 800);
}

}  // namespace
}  // namespace vigil::store
