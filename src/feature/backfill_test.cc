#include "feature/backfill.h"

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/numbers.h"
#include "core/strings.h"
#include "event/validator.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::feature {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kSchema = R"(
time_bounds: {max_behind_latest: off, max_ahead_of_latest: off}
event_types:
  deposit:
    fields:
      user: {type: string, required: true, role: entity}
      card: {type: string, role: entity}
      amount: {type: decimal, required: true, role: amount, currency: USD}
      fraud: {type: int, role: label, known_after: 1d}
  login:
    fields:
      user: {type: string, required: true, role: entity}
      ok: {type: bool, required: true}
)";

constexpr std::string_view kFeatures = R"y(
score_on: [deposit]
lateness: 2h
passthrough: [amount, fraud]
identity:
  account: user
  links: [card]
  rebuild_every: 6h
  link_ttl: 1d
  max_degree: 8
  counters: {deposits: {on: [deposit]}, amount: {on: [deposit], of: amount}}
features:
  - {name: n_1h, agg: count, key: user, window: 1h}
  - {name: avg_1d, agg: mean, of: amount, key: user, window: 1d}
  - {name: max_1d, agg: max, of: amount, key: user, window: 1d}
  - {name: sd_1d, agg: stddev, of: amount, key: user, window: 1d}
  - {name: cards_1d, agg: distinct_count, of: card, key: user, window: 1d}
  - {name: fails_1h, agg: count, key: user, window: 1h, on: [login], where: "not event.ok"}
  - {name: since, agg: time_since_last, key: user}
  - {name: age, agg: first_seen, key: user}
  - {name: risk, agg: mean, of: fraud, key: card, window: 7d, lag: 1d, default: 0}
  - {name: decay, agg: decayed_sum, of: amount, key: user, window: lifetime, half_life: 6h}
  - {name: cv, agg: gap_cv, key: user, window: 1d}
  - {name: rel, expr: "ratio(event.amount, features.avg_1d, 1)"}
  - {name: night, expr: "hour_of_day(event.time) < 6"}
  - {name: card_chargebacks, agg: count, key: card, on: [label], window: 7d}
  - {name: ring, agg: cluster_size}
  - {name: ring_accounts, agg: cluster_accounts}
  - {name: ring_amount, agg: cluster_counter, counter: amount}
)y";

std::string Stream(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s;
  int64_t now = 1704067200000;
  for (int i = 0; i < n; ++i) {
    now += static_cast<int64_t>(rng() % 600000);
    int64_t t = now;
    const int r = static_cast<int>(rng() % 20);
    if (r == 0) t -= static_cast<int64_t>(rng() % 11000000);  // late: some within 2h, some beyond
    const std::string user = StrCat("u", rng() % 40);
    if (i > 10 && rng() % 25 == 0) {
      // A chargeback naming an earlier deposit (or a login: then no card).
      s += StrCat(R"({"event_type":"label","event_id":"x)", i, R"(","time":)", t,
                  R"(,"kind":"chargeback","target_event_id":"d)", i - 1 - rng() % 10,
                  R"(","value":1})", "\n");
    } else if (rng() % 3 == 0) {
      s += StrCat(R"({"event_type":"login","event_id":"l)", i, R"(","time":)", t, R"(,"user":")",
                  user, R"(","ok":)", rng() % 4 ? "true" : "false", "}\n");
    } else {
      s += StrCat(R"({"event_type":"deposit","event_id":"d)", i, R"(","time":)", t,
                  R"(,"user":")", user, R"(","card":"c)", rng() % 60, R"(","amount":")",
                  rng() % 100000 / 100.0, R"(","fraud":)", rng() % 50 == 0 ? 1 : 0, "}\n");
    }
  }
  return s;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string TempPath(const char* name) {
  return StrCat(testing::TempDir(), "/vigil_backfill_", getpid(), "_", name);
}

struct Fixture {
  event::PiiHasher hasher{"k"};
  std::shared_ptr<const event::Schema> schema;
  std::shared_ptr<const FeatureSpec> spec;
  Fixture() {
    schema = *event::Schema::LoadString(kSchema, "s.yaml");
    auto s = FeatureSpec::LoadString(kFeatures, "f.yaml", schema);
    EXPECT_TRUE(s.ok()) << s.status();
    spec = *s;
  }
};

// The service's path: each event arrives alone and is decoded, validated and
// processed; its features are printed the way backfill prints them.
// With `snapshot_at` >= 0, the engine is snapshotted after that many events
// and processing goes on in a new engine restored from the snapshot.
std::vector<std::string> Online(const Fixture& fx, const std::string& stream, int snapshot_at = -1) {
  event::Validator v(fx.schema, &fx.hasher);
  auto engine = std::make_unique<FeatureEngine>(fx.spec);
  int seen = 0;
  std::vector<std::string> rows;
  std::vector<double> out(fx.spec->features.size());
  std::istringstream in(stream);
  std::string line;
  event::Record rec;
  std::vector<event::Violation> errs;
  while (std::getline(in, line)) {
    std::string padded = line + std::string(64, ' ');
    EXPECT_TRUE(v.DecodeJson(std::string_view(padded.data(), line.size()), padded.size(), &rec, &errs));
    EXPECT_TRUE(v.CheckAndCommit(rec, &errs));
    if (seen++ == snapshot_at) {
      std::string snap;
      engine->SerializeTo(&snap);
      engine = std::make_unique<FeatureEngine>(fx.spec);
      const absl::Status st = engine->Restore(snap);
      EXPECT_TRUE(st.ok()) << st;
    }
    if (engine->Process(rec, out) != FeatureEngine::Result::kScored) continue;
    std::string row;
    for (size_t i = 0; i < out.size(); ++i) {
      if (i) row += ',';
      core::AppendShortestDouble(out[i], &row);
    }
    rows.push_back(row);
  }
  return rows;
}

TEST(BackfillTest, ServingAndBackfillAgreeBitForBitWithLateEvents) {
  Fixture fx;
  const std::string stream = Stream(5000, 7);
  auto reader = event::EventReader::FromString(stream, fx.schema, &fx.hasher);
  ASSERT_TRUE(reader.ok());
  BackfillOptions opts;
  opts.out = TempPath("parity.csv");
  auto res = Backfill(**reader, fx.spec, opts, nullptr);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->rejected, 0);
  EXPECT_GT(res->too_late, 10);               // beyond the bound: no row
  EXPECT_GT(res->engine.late_applied, 50);    // within it: applied at their time

  std::vector<std::string> offline;
  std::istringstream csv(ReadAll(opts.out));
  std::string line;
  std::getline(csv, line);  // header
  while (std::getline(csv, line)) {
    // Drop event_id, event_time, event_type and the two passthrough fields.
    size_t at = 0;
    for (int i = 0; i < 5; ++i) at = line.find(',', at) + 1;
    offline.push_back(line.substr(at));
  }
  // Event by event as served; and again with a snapshot and restore in the
  // middle. Online rows include the too-late events (all NaN); backfill
  // writes none.
  for (int snapshot_at : {-1, 2500}) {
    const std::vector<std::string> online = Online(fx, stream, snapshot_at);
    std::vector<std::string> online_applied;
    const std::string all_nan(fx.spec->features.size() - 1, ',');
    for (const std::string& r : online) {
      if (r != all_nan) online_applied.push_back(r);
    }
    ASSERT_EQ(offline.size(), online_applied.size());
    for (size_t i = 0; i < offline.size(); ++i) {
      ASSERT_EQ(offline[i], online_applied[i]) << "row " << i << ", snapshot at " << snapshot_at;
    }
  }
  EXPECT_EQ(static_cast<int64_t>(offline.size()), res->rows);
  // Not vacuous: chargebacks reached cards through the deposits they name.
  const int cb = fx.spec->FeatureIndex("card_chargebacks");
  int with_chargebacks = 0;
  for (const std::string& row : offline) {
    const std::vector<std::string_view> cells = StrSplit(row, ',');
    if (!cells[cb].empty() && cells[cb] != "0") ++with_chargebacks;
  }
  EXPECT_GT(with_chargebacks, 5);
}

TEST(BackfillTest, NumericIdsAndPassthroughCellsAreCopiedAsTheyAreAndStringsQuoted) {
  // Ids and passthrough fields of numeric and bool types are copied without
  // the scan for characters that need quotes (their texts have none);
  // strings are still quoted. Every length from 1 to 20 characters.
  auto schema = event::Schema::LoadString(R"(
csv: {event_type: pay}
time_bounds: {max_behind_latest: off, max_ahead_of_latest: off}
event_types:
  pay:
    fields:
      id: {type: int, required: true, role: event_id}
      at: {type: timestamp, required: true, role: event_time}
      who: {type: int, required: true, role: entity}
      amount: {type: decimal}
      rate: {type: float}
      ok: {type: bool}
      note: {type: string}
)", "p.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto spec = FeatureSpec::LoadString(R"(
score_on: [pay]
passthrough: [who, amount, rate, ok, note]
features:
  - {name: n, agg: count, key: who, window: 1h}
)", "p.yaml", *schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  std::mt19937_64 rng(29);
  auto digits = [&rng](size_t n) {
    std::string d;
    for (size_t i = 0; i < n; ++i) d += static_cast<char>('0' + (i == 0 ? 1 + rng() % 9 : rng() % 10));
    return d;
  };
  const std::vector<std::string> notes = {"", "a", "a,b", "say \"hi\"", "x y", "0123456789abcdefghij"};
  std::string input = "id,at,who,amount,rate,ok,note\n";
  std::vector<std::string> expected;  // each row but its last column (the count)
  for (int i = 0; i < 2000; ++i) {
    const std::string id = StrCat(digits(static_cast<size_t>(i) % 14), i), who = digits(1 + rng() % 18);
    const std::string amount = rng() % 2 ? StrCat("-", digits(1 + rng() % 9), ".", digits(1 + rng() % 8))
                                         : digits(1 + rng() % 17);
    const std::string rate = StrCat(digits(1 + rng() % 5), "e-", rng() % 20);
    const std::string ok = rng() % 2 ? "true" : "0";
    const std::string note = notes[rng() % notes.size()];
    std::string cell = note;
    if (note.find_first_of(",\"") != std::string::npos) {
      cell = "\"";
      for (char c : note) cell += c == '"' ? std::string("\"\"") : std::string(1, c);
      cell += '"';
    }
    input += StrCat(id, ",2024-01-01 00:00:0", i % 10, ",", who, ",", amount, ",", rate, ",", ok, ",",
                    cell, "\n");
    expected.push_back(StrCat(id, ",2024-01-01T00:00:0", i % 10, ".000Z,pay,", who, ",", amount, ",",
                              rate, ",", ok, ",", cell, ","));
  }
  event::PiiHasher hasher("k");
  auto reader = event::EventReader::FromString(input, *schema, &hasher, event::Format::kCsv);
  ASSERT_TRUE(reader.ok()) << reader.status();
  BackfillOptions opts;
  opts.out = TempPath("plain.csv");
  auto res = Backfill(**reader, *spec, opts, nullptr);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->rows, 2000);
  std::istringstream out(ReadAll(opts.out));
  std::string line;
  std::getline(out, line);  // the header
  for (const std::string& want : expected) {
    ASSERT_TRUE(std::getline(out, line));
    ASSERT_EQ(line.substr(0, line.rfind(',') + 1), want);
  }
}

// A passthrough field marked pii is written masked, as everywhere else
// vigil writes: hashed (the same value, the same hash: joins still work) or
// redacted; its features are computed from the value itself.
TEST(BackfillTest, PiiPassthroughFieldsAreMaskedNotWrittenInClear) {
  auto schema = event::Schema::LoadString(R"(
time_bounds: {max_behind_latest: off, max_ahead_of_latest: off}
event_types:
  signup:
    fields:
      user: {type: string, required: true, role: entity}
      email: {type: string, required: true, pii: hash}
      phone: {type: string, pii: redact}
      plan: {type: string}
)",
                                          "s.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto spec = FeatureSpec::LoadString(R"(
score_on: [signup]
passthrough: [email, phone, plan]
features:
  - {name: same_email, agg: count, key: email, window: 1d}
)",
                                      "s.yaml", *schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  event::PiiHasher hasher("k");
  auto reader = event::EventReader::FromString(
      R"({"event_type":"signup","event_id":"s1","time":"2024-01-01T00:00:00Z","user":"u1","email":"a@b.com","phone":"+1 555","plan":"pro"})"
      "\n"
      R"({"event_type":"signup","event_id":"s2","time":"2024-01-01T00:01:00Z","user":"u2","email":"a@b.com","plan":"free"})"
      "\n",
      *schema, &hasher);
  ASSERT_TRUE(reader.ok()) << reader.status();
  BackfillOptions opts;
  opts.out = TempPath("pii.csv");
  opts.pii = &hasher;
  auto res = Backfill(**reader, *spec, opts, nullptr);
  ASSERT_TRUE(res.ok()) << res.status();
  const std::string csv = ReadAll(opts.out);
  EXPECT_THAT(csv, Not(HasSubstr("a@b.com")));
  EXPECT_THAT(csv, Not(HasSubstr("555")));
  const std::string email = hasher.Mask("a@b.com", event::PiiMode::kHash);
  const std::string phone = hasher.Mask("+1 555", event::PiiMode::kRedact);
  EXPECT_THAT(csv, HasSubstr(StrCat("\ns1,2024-01-01T00:00:00.000Z,signup,", email, ",", phone,
                                    ",pro,1\n")));
  EXPECT_THAT(csv, HasSubstr(StrCat("\ns2,2024-01-01T00:01:00.000Z,signup,", email, ",,free,2\n")));
}

TEST(BackfillTest, ColumnsAndMetaFile) {
  Fixture fx;
  auto reader = event::EventReader::FromString(
      R"({"event_type":"deposit","event_id":"d1","time":"2024-01-01T05:00:00.5Z","user":"u","amount":"12.50","fraud":0})"
      "\n"
      R"({"event_type":"login","event_id":"l1","time":"2024-01-01T05:01:00Z","user":"u","ok":false})"
      "\n"
      R"({"event_type":"deposit","event_id":"d2","time":"2024-01-01T05:02:00Z","user":"u","card":"c, \"x\"","amount":"7.5"})"
      "\n",
      fx.schema, &fx.hasher);
  ASSERT_TRUE(reader.ok());
  BackfillOptions opts;
  opts.out = TempPath("cols.csv");
  auto res = Backfill(**reader, fx.spec, opts, nullptr);
  ASSERT_TRUE(res.ok()) << res.status();
  const std::string csv = ReadAll(opts.out);
  EXPECT_THAT(csv, testing::StartsWith(
                       "event_id,event_time,event_type,amount,fraud,n_1h,avg_1d,max_1d,sd_1d,"
                       "cards_1d,fails_1h,since,age,risk,decay,cv,rel,night,card_chargebacks,ring,"
                       "ring_accounts,ring_amount\n"));
  // No card on d1: the card-keyed risk is missing, not 0.
  EXPECT_THAT(csv, HasSubstr("\nd1,2024-01-01T05:00:00.500Z,deposit,12.50,0,1,12.5,12.5,,0,0,,,,12.5,,1,1,,1,1,12.5\n"));
  EXPECT_THAT(csv, HasSubstr("\nd2,2024-01-01T05:02:00.000Z,deposit,7.5,,2,10,12.5,"));
  const std::string meta = ReadAll(res->meta_path);
  EXPECT_THAT(meta, HasSubstr("\"label_fields\": [\n    \"fraud\""));
  EXPECT_THAT(meta, HasSubstr("\"spec_hash\": \"" + fx.spec->content_hash));
  EXPECT_THAT(meta, HasSubstr("\"spec_legacy_hash\": \"" + fx.spec->legacy_hash));
  EXPECT_THAT(meta, HasSubstr("\"feature_columns\": [\n    \"n_1h\""));
  EXPECT_THAT(meta, HasSubstr("\"entries_bucketed\": 0"));
  EXPECT_EQ(res->rows, 2);
}

TEST(SnapshotTest, CorruptTruncatedOrForeignSnapshotsAreRefusedNeverCrash) {
  Fixture fx;
  FeatureEngine engine(fx.spec);
  auto reader = event::EventReader::FromString(Stream(300, 3), fx.schema, &fx.hasher);
  ASSERT_TRUE(reader.ok());
  event::Record rec;
  event::Rejection rej;
  std::vector<double> out(fx.spec->features.size());
  while ((*reader)->Next(&rec, &rej) == event::EventReader::Result::kRecord) engine.Process(rec, out);
  std::string snap;
  engine.SerializeTo(&snap);
  FeatureEngine other(fx.spec);
  ASSERT_TRUE(other.Restore(snap).ok());
  std::string again;
  other.SerializeTo(&again);
  EXPECT_EQ(snap, again);  // deterministic bytes
  std::string appended = "what was there";  // AppendTo (the server's saved state) writes the same bytes
  engine.AppendTo(&appended);
  EXPECT_EQ(appended, "what was there" + snap);
  for (size_t n = 0; n < snap.size(); n += 7) {
    EXPECT_FALSE(other.Restore(std::string_view(snap.data(), n)).ok()) << n;
  }
  std::string flipped = snap;
  flipped[flipped.size() / 2] ^= 0x40;
  auto st = other.Restore(flipped);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("checksum"));
  auto spec2 = FeatureSpec::LoadString(
      "score_on: [deposit]\nfeatures:\n  - {name: n, agg: count, key: user, window: 1h}\n", "g.yaml",
      fx.schema);
  ASSERT_TRUE(spec2.ok());
  FeatureEngine foreign(*spec2);
  EXPECT_EQ(foreign.Restore(snap).code(), absl::StatusCode::kFailedPrecondition);
}

TEST(BackfillTest, TrainingLabelsFromDelayedLabelEvents) {
  Fixture fx;
  auto spec = FeatureSpec::LoadString(R"y(
score_on: [deposit]
labels:
  chargeback: {horizon: 10d}
  account_takeover: {horizon: 2d}
features:
  - {name: n, agg: count, key: user, window: 1d}
)y", "f.yaml", fx.schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const int64_t t0 = 1704067200000, d = 86400000;
  auto dep = [&](const char* id, int64_t t, const char* user) {
    return StrCat(R"({"event_type":"deposit","event_id":")", id, R"(","time":)", t, R"(,"user":")",
                  user, R"(","amount":"1"})", "\n");
  };
  auto lab = [&](int n, int64_t t, const char* kind, std::string target, int value) {
    return StrCat(R"({"event_type":"label","event_id":"lb)", n, R"(","time":)", t, R"(,"kind":")",
                  kind, R"(",)", target, R"(,"value":)", value, "}\n");
  };
  const std::string events =
      dep("d1", t0, "u1") + dep("d2", t0 + d, "u1") + dep("d3", t0 + 2 * d, "u2") +
      lab(1, t0 + 3 * d, "account_takeover", R"("target_entity":{"key":"user","value":"u2"})", 1) +
      dep("d4", t0 + 3 * d + 1, "u2") + dep("d5", t0 + 4 * d, "u3") +
      dep("d7", t0 + 4 * d + 1, "u5") +
      lab(2, t0 + 5 * d, "chargeback", R"("target_event_id":"d1")", 1) +
      lab(6, t0 + 5 * d + 1, "chargeback", R"("target_event_id":"d7")", 1) +
      lab(3, t0 + 6 * d, "chargeback", R"("target_event_id":"d5")", 1) +
      lab(7, t0 + 6 * d + 1, "chargeback", R"("target_event_id":"d7")", 0) +
      lab(4, t0 + 7 * d, "chargeback", R"("target_event_id":"d5")", 0) +  // dispute won
      // d7: 1, then 0, then 1 again: labelled by the last, 3 days after it.
      lab(8, t0 + 7 * d + 1, "chargeback", R"("target_event_id":"d7")", 1) +
      // A 0 about the user does not undo the chargeback on d1 (another target).
      lab(5, t0 + 8 * d, "chargeback", R"("target_entity":{"key":"user","value":"u1"})", 0) +
      dep("d6", t0 + 11 * d, "u4");
  auto run = [&](std::optional<int64_t> as_of) {
    auto r1 = event::EventReader::FromString(events, fx.schema, &fx.hasher);
    auto r2 = event::EventReader::FromString(events, fx.schema, &fx.hasher);
    BackfillOptions opts;
    opts.out = TempPath("labels.csv");
    opts.label_pass = r1->get();
    opts.as_of_ms = as_of;
    auto res = Backfill(**r2, *spec, opts, nullptr);
    EXPECT_TRUE(res.ok()) << res.status();
    return ReadAll(opts.out);
  };
  const std::string csv = run(t0 + 20 * d);
  EXPECT_THAT(csv, HasSubstr("event_id,event_time,event_type,label,label_delay_ms,n\n"));
  EXPECT_THAT(csv, HasSubstr("\nd1,2024-01-01T00:00:00.000Z,deposit,1,432000000,1\n"));  // 5 days
  EXPECT_THAT(csv, HasSubstr("\nd2,2024-01-02T00:00:00.000Z,deposit,0,,"));
  EXPECT_THAT(csv, HasSubstr("\nd3,2024-01-03T00:00:00.000Z,deposit,1,86400000,"));  // entity label
  EXPECT_THAT(csv, HasSubstr("\nd4,2024-01-04T00:00:00.001Z,deposit,0,,"));  // after the label
  EXPECT_THAT(csv, HasSubstr("\nd5,2024-01-05T00:00:00.000Z,deposit,0,,"));  // overridden by a 0
  EXPECT_THAT(csv, HasSubstr("\nd7,2024-01-05T00:00:00.001Z,deposit,1,259200000,"));
  // Day 11 + a 10-day horizon is past the end (day 20): not known yet.
  EXPECT_THAT(csv, HasSubstr("\nd6,2024-01-12T00:00:00.000Z,deposit,,,"));
  // Without as_of the data ends at d6 (day 11): horizons still open are empty.
  const std::string open = run(std::nullopt);
  EXPECT_THAT(open, HasSubstr("\nd1,2024-01-01T00:00:00.000Z,deposit,1,432000000,1\n"));
  EXPECT_THAT(open, HasSubstr("\nd2,2024-01-02T00:00:00.000Z,deposit,0,,"));  // day 1 + 10d: passed
  EXPECT_THAT(open, HasSubstr("\nd4,2024-01-04T00:00:00.001Z,deposit,,,"));  // not yet
  EXPECT_THAT(open, HasSubstr("\nd6,2024-01-12T00:00:00.000Z,deposit,,,"));
}

// Runs a labelled backfill of `events` to `out` and returns the CSV.
std::string LabelledRun(const Fixture& fx, const std::shared_ptr<const FeatureSpec>& spec,
                        const std::string& events, const std::string& out) {
  auto r1 = event::EventReader::FromString(events, spec->schema, &fx.hasher);
  auto r2 = event::EventReader::FromString(events, spec->schema, &fx.hasher);
  BackfillOptions opts;
  opts.out = out;
  opts.label_pass = r1->get();
  auto res = Backfill(**r2, spec, opts, nullptr);
  EXPECT_TRUE(res.ok()) << res.status();
  return ReadAll(out);
}

TEST(BackfillTest, LabelsCountInTimeOrderAndAHorizonOfCenturiesDoesNotOverflow) {
  Fixture fx;
  auto spec = FeatureSpec::LoadString(R"y(
score_on: [deposit]
labels:
  chargeback: {horizon: 10d}
features:
  - {name: n, agg: count, key: user, window: 1d}
)y",
                                      "f.yaml", fx.schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto forever = FeatureSpec::LoadString(R"y(
score_on: [deposit]
labels:
  takeover: {horizon: 36500d}
features:
  - {name: n, agg: count, key: user, window: 1d}
)y",
                                         "f.yaml", fx.schema);
  ASSERT_TRUE(forever.ok()) << forever.status();
  const int64_t t0 = 1704067200000, d = 86400000;
  auto dep = [&](const char* id, int64_t t) {
    return StrCat(R"({"event_type":"deposit","event_id":")", id, R"(","time":)", t,
                  R"(,"user":"u1","amount":"1"})", "\n");
  };
  auto lab = [&](int n, int64_t t, const char* kind, const char* target, int value) {
    return StrCat(R"({"event_type":"label","event_id":"lb)", n, R"(","time":)", t, R"(,"kind":")",
                  kind, R"(","target_event_id":")", target, R"(","value":)", value, "}\n");
  };
  // d1: a 1 at day 6 written before a 0 of day 5 (late): in time order the
  // 0 comes first and the 1 stands, 6 days after the row. d2: the reverse.
  const std::string events =
      dep("d1", t0) + dep("d2", t0 + 1) + lab(1, t0 + 6 * d, "chargeback", "d1", 1) +
      lab(2, t0 + 5 * d, "chargeback", "d1", 0) + lab(3, t0 + 5 * d, "chargeback", "d2", 0) +
      lab(4, t0 + 4 * d, "chargeback", "d2", 1) + dep("d3", t0 + 20 * d) +
      lab(5, t0 + 30 * d, "takeover", "d3", 1);
  const std::string csv = LabelledRun(fx, *spec, events, TempPath("label_order.csv"));
  EXPECT_THAT(csv, HasSubstr("\nd1,2024-01-01T00:00:00.000Z,deposit,1,518400000,"));
  EXPECT_THAT(csv, HasSubstr("\nd2,2024-01-01T00:00:00.001Z,deposit,0,,"));
  // A horizon as long as time itself: the label 10 days on counts (the
  // horizon added to the row's time saturates), the others never close.
  const std::string open = LabelledRun(fx, *forever, events, TempPath("label_forever.csv"));
  EXPECT_THAT(open, HasSubstr("\nd3,2024-01-21T00:00:00.000Z,deposit,1,864000000,"));
  EXPECT_THAT(open, HasSubstr("\nd1,2024-01-01T00:00:00.000Z,deposit,,,"));
  // No valid event at all: no end of the data to name.
  const std::string none = TempPath("label_none.csv");
  EXPECT_EQ(LabelledRun(fx, *spec,
                        R"({"event_type":"nope","event_id":"z","time":1})"
                        "\n",
                        none),
            "event_id,event_time,event_type,label,label_delay_ms,n\n");
  EXPECT_THAT(ReadAll(none + ".meta.json"), HasSubstr("\"labels_as_of\": null"));
}

TEST(BackfillTest, AnEntityLabelNamesItsKeyWhateverTypeEachEventTypeGivesIt) {
  Fixture fx;
  auto schema = event::Schema::LoadString(R"(
time_bounds: {max_behind_latest: off, max_ahead_of_latest: off}
event_types:
  deposit:
    fields:
      acct: {type: int, required: true, role: entity}
  withdrawal:
    fields:
      acct: {type: string, required: true, role: entity}
)",
                                          "s.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto spec = FeatureSpec::LoadString(R"y(
score_on: [deposit, withdrawal]
labels:
  bot: {horizon: 5d}
features:
  - {name: n, agg: count, key: acct, window: 1d}
)y",
                                      "f.yaml", *schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::string events =
      R"({"event_type":"deposit","event_id":"x1","time":1704067200000,"acct":42})"
      "\n"
      R"({"event_type":"withdrawal","event_id":"x2","time":1704067200001,"acct":"42"})"
      "\n"
      R"({"event_type":"withdrawal","event_id":"x3","time":1704067200002,"acct":"43"})"
      "\n"
      R"({"event_type":"label","event_id":"lb","time":1704067200010,"kind":"bot",)"
      R"("target_entity":{"key":"acct","value":"42"},"value":1})"
      "\n"
      R"({"event_type":"deposit","event_id":"x4","time":1704672000000,"acct":1})"
      "\n";
  const std::string csv = LabelledRun(fx, *spec, events, TempPath("entity_types.csv"));
  EXPECT_THAT(csv, HasSubstr("\nx1,2024-01-01T00:00:00.000Z,deposit,1,10,"));
  EXPECT_THAT(csv, HasSubstr("\nx2,2024-01-01T00:00:00.001Z,withdrawal,1,9,"));
  EXPECT_THAT(csv, HasSubstr("\nx3,2024-01-01T00:00:00.002Z,withdrawal,0,,"));
}

TEST(BackfillTest,
     ATypeNameThatNeedsQuotesIsQuotedAndAMetaFileThatCannotBeWrittenLeavesTheEarlierOutput) {
  Fixture fx;
  auto schema = event::Schema::LoadString(R"(
event_types:
  "dep,o\"sit":
    fields:
      user: {type: string, required: true, role: entity}
)",
                                          "s.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  auto spec = FeatureSpec::LoadString(R"y(
score_on: ['dep,o"sit']
features:
  - {name: n, agg: count, key: user, window: 1d}
)y",
                                      "f.yaml", *schema);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const std::string events =
      R"({"event_type":"dep,o\"sit","event_id":"x1","time":1704067200000,"user":"u"})"
      "\n";
  const std::string out = TempPath("quoted_type.csv");
  auto run = [&] {
    auto r = event::EventReader::FromString(events, *schema, &fx.hasher);
    BackfillOptions opts;
    opts.out = out;
    return Backfill(**r, *spec, opts, nullptr);
  };
  std::remove((out + ".meta.json").c_str());
  ASSERT_TRUE(run().ok());
  EXPECT_EQ(ReadAll(out),
            "event_id,event_time,event_type,n\nx1,2024-01-01T00:00:00.000Z,\"dep,o\"\"sit\",1\n");
  // The meta file's place taken by a folder: the run fails, and the output
  // written before stays as it was (not replaced by this run's).
  std::remove((out + ".meta.json").c_str());
  std::filesystem::create_directory(out + ".meta.json");
  std::ofstream(out) << "earlier\n";
  auto res = run();
  EXPECT_FALSE(res.ok());
  EXPECT_EQ(ReadAll(out), "earlier\n");
  std::filesystem::remove(out + ".meta.json");
}

}  // namespace
}  // namespace vigil::feature
