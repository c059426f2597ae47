#include "event/validator.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/hash.h"
#include "core/strings.h"
#include "core/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::event {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kSchema = R"(
name: test
limits: {max_string_length: 16}
duplicates: {memory: 3}
time_bounds: {max_ahead_of_latest: 1d, max_behind_latest: 2h}
labels: {kinds: [chargeback]}
csv: {event_type: deposit}
event_types:
  deposit:
    fields:
      user_id: {type: string, required: true, role: entity, entity: user}
      email: {type: string, pii: hash}
      phone: {type: string, pii: redact}
      amount: {type: decimal, required: true, min: 0, max: 1000000, role: amount, currency_field: asset}
      asset: {type: enum, values: [USD, BTC], required: true}
      method: {type: string, pattern: "card|bank"}
      risk: {type: float, min: 0, max: 1}
      n: {type: int, min: -5, max: 5}
      first: bool
      seen_at: {type: timestamp, min: "2000-01-01"}
      note: {type: string, nullable: true}
      kyc: {type: int, required: true, allowed: [0, 1, 2]}
)";

class ValidatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Schema::LoadString(kSchema, "test.yaml");
    ASSERT_TRUE(s.ok()) << s.status();
    schema_ = *s;
    v_ = std::make_unique<Validator>(schema_, &hasher_);
    ASSERT_TRUE(v_->SetCsvHeader(
                      "user_id,email,phone,amount,asset,method,risk,n,first,seen_at,note,kyc,"
                      "event_id,time")
                    .ok());
  }
  // Decodes and commits one JSON record; returns its violations.
  std::vector<Violation> Json(std::string line) {
    std::vector<Violation> out;
    line.append(64, ' ');  // readable padding, as LineReader guarantees
    std::string_view text(line.data(), line.size() - 64);
    if (v_->DecodeJson(text, line.size(), &rec_, &out)) v_->CheckAndCommit(rec_, &out);
    return out;
  }
  // Decodes and commits a CSV row: `body` and then a fresh id and a time.
  std::vector<Violation> Csv(std::string_view body) {
    std::vector<Violation> out;
    line_ = StrCat(body, ",c", ++csv_rows_, ",2024-01-01 00:00:00");
    if (v_->DecodeCsv(line_, &rec_, &out)) v_->CheckAndCommit(rec_, &out);
    return out;
  }
  static std::string Deposit(std::string_view extra, std::string_view id = "e1",
                             std::string_view time = "2024-01-01T00:00:00Z") {
    return StrCat(R"({"event_type":"deposit","event_id":")", id, R"(","time":")", time,
                  R"(","user_id":"u1","amount":"10.50","asset":"USD","kyc":1)", extra, "}");
  }
  void ExpectOne(const std::vector<Violation>& v, Rule rule, std::string_view field,
                 std::string_view reason_part) {
    ASSERT_EQ(v.size(), 1u) << (v.empty() ? std::string("no violation") : v[1].reason);
    EXPECT_EQ(v[0].rule, rule) << RuleName(v[0].rule) << ": " << v[0].reason;
    EXPECT_EQ(v[0].field, field);
    EXPECT_THAT(v[0].reason, HasSubstr(std::string(reason_part)));
  }

  PiiHasher hasher_{"test-key"};
  std::shared_ptr<const Schema> schema_;
  std::unique_ptr<Validator> v_;
  Record rec_;
  std::string line_;
  int csv_rows_ = 0;
};

TEST_F(ValidatorTest, ValidRecordIsTypedWithViewsAndHashedKeys) {
  auto v = Json(Deposit(R"(,"risk":0.25,"n":-3,"first":true,"seen_at":1704067200,"note":null)"));
  ASSERT_TRUE(v.empty()) << v[0].reason;
  const EventTypeSpec& t = *rec_.type;
  EXPECT_EQ(t.name, "deposit");
  EXPECT_EQ(rec_.event_id, "e1");
  EXPECT_EQ(rec_.time_ms, 1704067200000);
  EXPECT_EQ(rec_[t.Find("amount")->index].dec.ToString(), "10.50");
  EXPECT_EQ(rec_[t.Find("risk")->index].d, 0.25);
  EXPECT_EQ(rec_[t.Find("n")->index].i, -3);
  EXPECT_TRUE(rec_[t.Find("first")->index].b);
  EXPECT_EQ(rec_[t.Find("seen_at")->index].i, 1704067200000);
  EXPECT_EQ(rec_[t.Find("note")->index].state, Value::State::kNull);
  EXPECT_EQ(rec_[t.Find("user_id")->index].hash, core::Hash64("u1"));
}

TEST_F(ValidatorTest, JsonNumbersForDecimalsKeepEveryDigit) {
  // 18 significant digits: a double keeps about 16.
  ASSERT_TRUE(Json(R"({"event_type":"deposit","event_id":"d1","time":1,"user_id":"u","asset":"USD",)"
                   R"("kyc":1,"amount": 123456.789012345678})")
                  .empty());
  EXPECT_EQ(rec_[rec_.type->Find("amount")->index].dec.ToString(), "123456.789012345678");
  ExpectOne(Json(R"({"event_type":"deposit","event_id":"d2","time":1,"user_id":"u","asset":"USD",)"
                 R"("kyc":1,"amount":1000000.0000000001})"),
            Rule::kMax, "amount", "1000000.0000000001 is above the maximum 1000000");
}

TEST_F(ValidatorTest, IntegerKeysAreHashedByValue) {
  ASSERT_TRUE(Json(Deposit(R"(,"n":3)")).empty());
  EXPECT_EQ(rec_[rec_.type->Find("n")->index].hash, core::HashInt(3));
}

TEST_F(ValidatorTest, MalformedJson) {
  ExpectOne(Json(R"({"event_type":"deposit",)"), Rule::kMalformedJson, "", "invalid JSON");
  ExpectOne(Json(R"([1,2])"), Rule::kMalformedJson, "", "JSON object");
}

TEST_F(ValidatorTest, InvalidUtf8) {
  ExpectOne(Json(Deposit(",\"note\":\"caf\xC3\x28\"")), Rule::kInvalidUtf8, "", "UTF-8");
  // The record still names its event by a readable id (the answer and the
  // dead letter do), but not by one whose own bytes are invalid.
  EXPECT_EQ(rec_.event_id, "e1");
  ExpectOne(Json(Deposit(",\"note\":\"x\"",
                         "e\xff"
                         "2")),
            Rule::kInvalidUtf8, "", "UTF-8");
  EXPECT_EQ(rec_.event_id, "");
  ExpectOne(Json(Deposit(",\"note\":\"\xF0\x9F\x98\"", "e3")), Rule::kInvalidUtf8, "", "UTF-8");
  EXPECT_EQ(rec_.event_id, "e3");
  ExpectOne(Csv("u1,\xff\xfe,,1,USD,card,,,,,,1"), Rule::kInvalidUtf8, "", "UTF-8");
}

TEST_F(ValidatorTest, UnknownEventTypeListsTheKnownOnes) {
  ExpectOne(Json(R"({"event_type":"withdrawal","event_id":"x","time":1})"),
            Rule::kUnknownEventType, "event_type", "(deposit, label)");
}

TEST_F(ValidatorTest, MissingEventTypeIsRequired) {
  ExpectOne(Json(R"({"event_id":"x"})"), Rule::kRequired, "event_type", "event_type");
}

TEST_F(ValidatorTest, DuplicateField) {
  ExpectOne(Json(Deposit(R"(,"n":1,"n":2)")), Rule::kDuplicateField, "n", "twice");
}

// The first event_type chooses the type; a second, even of another known
// type, must not pass unnoticed (nor the same one twice).
TEST_F(ValidatorTest, RepeatedEventTypeIsADuplicateField) {
  ExpectOne(Json(Deposit(R"(,"event_type":"label")")), Rule::kDuplicateField, "event_type",
            "twice");
  ExpectOne(Json(Deposit(R"(,"event_type":"deposit")")), Rule::kDuplicateField, "event_type",
            "twice");
}

TEST_F(ValidatorTest, UnknownField) {
  ExpectOne(Json(Deposit(R"(,"colour":"red")")), Rule::kUnknownField, "colour", "not in event type 'deposit'");
}

TEST_F(ValidatorTest, RequiredAndNotNull) {
  ExpectOne(Json(R"({"event_type":"deposit","event_id":"e","time":1,"amount":1,"asset":"USD","kyc":0})"),
            Rule::kRequired, "user_id", "missing required field 'user_id'");
  auto v = Json(R"({"event_type":"deposit","event_id":"e","time":1,"user_id":null,"amount":1,"asset":"USD","kyc":0})");
  ExpectOne(v, Rule::kNotNull, "user_id", "null");
}

TEST_F(ValidatorTest, WrongTypes) {
  ExpectOne(Json(Deposit(R"(,"n":"3")")), Rule::kType, "n", "expected int, found a string");
  ExpectOne(Json(Deposit(R"(,"n":3.5)")), Rule::kType, "n", "expected an integer");
  ExpectOne(Json(Deposit(R"(,"first":1)")), Rule::kType, "first", "expected bool");
  ExpectOne(Json(Deposit(R"(,"note":{"a":1})")), Rule::kType, "note", "found an object");
  ExpectOne(Json(Deposit(R"(,"method":7)")), Rule::kType, "method", "found a number");
  ExpectOne(Csv("u1,,,ten,USD,,,,,,,1"), Rule::kType, "amount", "expected a decimal");
}

TEST_F(ValidatorTest, NotFinite) {
  ExpectOne(Json(Deposit(R"(,"risk":"NaN")")), Rule::kNotFinite, "risk", "not a finite");
  ExpectOne(Csv("u1,,,1,USD,,inf,,,,,1"), Rule::kNotFinite, "risk", "not a finite");
  ExpectOne(Csv("u1,,,-Infinity,USD,,,,,,,1"), Rule::kNotFinite, "amount", "not a finite");
}

TEST_F(ValidatorTest, MinAndMaxAreExactForDecimals) {
  ExpectOne(Json(Deposit(R"(,"n":6)")), Rule::kMax, "n", "above the maximum 5");
  ExpectOne(Json(Deposit(R"(,"risk":-0.1)")), Rule::kMin, "risk", "below the minimum 0");
  ExpectOne(Csv("u1,,,-0.01,USD,,,,,,,1"), Rule::kMin, "amount", "-0.01 is below the minimum 0");
  EXPECT_TRUE(Csv("u1,,,1000000.000,USD,,,,,,,1").empty());
  ExpectOne(Csv("u1,,,1000000.001,USD,,,,,,,2"), Rule::kMax, "amount", "above the maximum 1000000");
  ExpectOne(Json(Deposit(R"(,"seen_at":"1999-12-31T23:59:59Z")")), Rule::kMin, "seen_at",
            "below the minimum 2000-01-01T00:00:00.000Z");
}

TEST_F(ValidatorTest, MaxLengthPatternAndAllowed) {
  ExpectOne(Json(Deposit(R"(,"note":"0123456789abcdefg")")), Rule::kMaxLength, "note",
            "17 bytes long; the limit is 16");
  ExpectOne(Json(Deposit(R"(,"method":"cash")")), Rule::kPattern, "method", "card|bank");
  ExpectOne(Json(Deposit(R"(,"method":"cards")")), Rule::kPattern, "method", "pattern");
  ExpectOne(Csv("u1,,,1,EUR,,,,,,,1"), Rule::kAllowed, "asset", "(USD, BTC)");
  ExpectOne(Csv("u1,,,1,USD,,,,,,,7"), Rule::kAllowed, "kyc", "(0, 1, 2)");
}

TEST_F(ValidatorTest, TimestampsThatDoNotParse) {
  ExpectOne(Json(Deposit("", "e1", "yesterday")), Rule::kTimestamp, "time", "not a valid time");
  ExpectOne(Json(Deposit("", "e1", "2024-01-01T00:00:00")), Rule::kTimestamp, "time", "without a zone");
  ExpectOne(Json(Deposit("", "e1", "2024-02-30 00:00:00")), Rule::kTimestamp, "time", "out of range");
}

TEST_F(ValidatorTest, TimeBoundsAreRelativeToTheLatestValidTime) {
  EXPECT_TRUE(Json(Deposit("", "a", "2024-01-10T00:00:00Z")).empty());
  ExpectOne(Json(Deposit("", "b", "2024-01-12T00:00:00Z")), Rule::kTimeBounds, "time",
            "max_ahead_of_latest");
  ExpectOne(Json(Deposit("", "c", "2024-01-09T21:00:00Z")), Rule::kTimeBounds, "time",
            "3.0 hours behind");
  // Within bounds, late events are fine and do not move the latest time back.
  EXPECT_TRUE(Json(Deposit("", "d", "2024-01-09T23:00:00Z")).empty());
  EXPECT_EQ(v_->latest_time_ms(), 1704844800000);
}

// The clock bounds event times: one event stamped in the future cannot move
// the latest time (and so push every later event "behind" it). On a live
// server (SetLive) a stream that resumes after a pause longer than
// max_ahead_of_latest is taken up again; in a file the same jump is refused
// (a wrong year in old data must not move the latest time); a replay of
// what a live server took (SetReplaying) takes it all again.
TEST(ValidatorClockTest, LiveTheClockBoundsTheFutureAndLetsAStreamResumeFilesKeepTheirBound) {
  auto schema = Schema::LoadString(R"(
time_bounds: {max_ahead_of_latest: 1d, max_behind_latest: 1h, max_ahead_of_wall_clock: 5m}
event_types:
  ping:
    fields:
      user: {type: string, required: true}
)",
                                   "clock.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  PiiHasher hasher("k");
  Record rec;
  int n = 0;
  auto post = [&](Validator& v, int64_t t_ms) {
    std::vector<Violation> out;
    std::string line = StrCat(R"({"event_type":"ping","event_id":"p)", ++n, R"(","time":)", t_ms,
                              R"(,"user":"u"})");
    const size_t size = line.size();
    line.append(64, ' ');
    if (v.DecodeJson(std::string_view(line.data(), size), line.size(), &rec, &out))
      v.CheckAndCommit(rec, &out);
    return out;
  };
  const int64_t now = core::WallNowMs();
  const int64_t day = 86400000;
  Validator live(*schema, &hasher);
  live.SetLive(0);  // the schema's bound
  EXPECT_TRUE(post(live, now - 30 * day).empty());
  // 30 days after the latest time seen, but not in the future: taken.
  EXPECT_TRUE(post(live, now - 1000).empty());
  EXPECT_EQ(live.latest_time_ms(), now - 1000);
  // 23 hours ahead of the clock: refused, and the latest time stays.
  const std::vector<Violation> future = post(live, now + 23 * 3600000LL);
  ASSERT_EQ(future.size(), 1u);
  EXPECT_EQ(future[0].rule, Rule::kTimeBounds);
  EXPECT_THAT(future[0].reason, HasSubstr("ahead of the wall clock"));
  EXPECT_EQ(live.latest_time_ms(), now - 1000);
  EXPECT_TRUE(post(live, now).empty()) << "the stream goes on";

  // Past max_ahead_of_latest measured from the clock (the later): named so.
  Validator paused(*schema, &hasher);
  paused.SetLive(0);
  EXPECT_TRUE(post(paused, now - 30 * day).empty());
  const std::vector<Violation> far = post(paused, now + 2 * day);
  ASSERT_EQ(far.size(), 2u);
  EXPECT_THAT(far[0].reason, HasSubstr("2.0 days ahead of the server's clock"));
  EXPECT_THAT(far[0].reason, HasSubstr("later than the latest event time seen"));
  EXPECT_THAT(far[0].reason, HasSubstr("max_ahead_of_latest"));
  EXPECT_THAT(far[1].reason, HasSubstr("ahead of the wall clock"));

  Validator file(*schema, &hasher);
  EXPECT_TRUE(post(file, now - 30 * day).empty());
  const std::vector<Violation> jump = post(file, now - 1000);
  ASSERT_EQ(jump.size(), 1u);
  EXPECT_THAT(jump[0].reason, HasSubstr("max_ahead_of_latest"));
  EXPECT_EQ(file.latest_time_ms(), now - 30 * day);

  Validator replay(*schema, &hasher);
  replay.SetReplaying(true);
  EXPECT_TRUE(post(replay, now - 30 * day).empty());
  EXPECT_TRUE(post(replay, now - 1000).empty());
  EXPECT_FALSE(post(replay, now - 1000 - 2 * 3600000LL).empty())
      << "behind the latest: still refused";
}

TEST_F(ValidatorTest, WithoutTheClockAStreamThatJumpsFurtherThanMaxAheadOfLatestIsRefused) {
  EXPECT_TRUE(Json(Deposit("", "a", "2024-01-10T00:00:00Z")).empty());
  ExpectOne(Json(Deposit("", "b", "2024-02-10T00:00:00Z")), Rule::kTimeBounds, "time",
            "31.0 days ahead of the latest event time seen");
}

TEST_F(ValidatorTest, DuplicateIdsWithinTheConfiguredMemory) {
  EXPECT_TRUE(Json(Deposit("", "a")).empty());
  ExpectOne(Json(Deposit("", "a")), Rule::kDuplicateEventId, "event_id", "already seen");
  // A rejected record's id is not remembered: a corrected retry passes.
  EXPECT_FALSE(Json(Deposit(R"(,"n":99)", "b")).empty());
  EXPECT_TRUE(Json(Deposit("", "b")).empty());
  for (std::string id : {"c", "d", "e"}) EXPECT_TRUE(Json(Deposit("", id)).empty());
  // Memory is 3 ids: "a" has been forgotten.
  EXPECT_TRUE(Json(Deposit("", "a")).empty());
}

// A server's restart: a validator restored from a snapshot goes on as the
// one it was taken from, numeric and other ids alike, after the window has
// wrapped round, and with the latest time (the time bounds) it had.
TEST_F(ValidatorTest, RestoredFromASnapshotItGoesOnAsTheOriginalWould) {
  auto run = [&](Validator& v, const std::string& id, std::string_view time) {
    std::vector<Violation> out;
    std::string line = Deposit("", id, time);
    line.append(64, ' ');
    if (v.DecodeJson(std::string_view(line.data(), line.size() - 64), line.size(), &rec_, &out)) {
      v.CheckAndCommit(rec_, &out);
    }
    return out.empty() ? std::string("ok") : std::string(RuleName(out[0].rule));
  };
  // Memory 3: numeric ids in sequence, one out of sequence, text ids.
  for (std::string id : {"7", "9", "x", "8", "12", "y", "z", "13"}) run(*v_, id, "2024-01-05T00:00:00Z");
  std::string snap;
  v_->AppendTo(&snap);
  std::string appended = "before";
  v_->AppendTo(&appended);
  EXPECT_EQ(appended, "before" + snap);
  Validator copy(schema_, &hasher_);
  ASSERT_TRUE(copy.Restore(snap).ok()) << copy.Restore(snap);
  EXPECT_EQ(copy.latest_time_ms(), v_->latest_time_ms());
  const char* ids[] = {"13", "12", "9", "8", "z", "y", "x", "14", "8", "w", "z", "13", "15", "y"};
  std::vector<std::string> a, b;
  for (const char* id : ids) {
    a.push_back(run(*v_, id, "2024-01-05T00:00:00Z"));
    b.push_back(run(copy, id, "2024-01-05T00:00:00Z"));
  }
  EXPECT_EQ(a, b);
  EXPECT_NE(std::count(a.begin(), a.end(), "ok"), 0);
  EXPECT_NE(std::count(a.begin(), a.end(), "ok"), static_cast<ptrdiff_t>(a.size()));
  // The time bounds go on from the latest time: 3 hours behind it is too old.
  EXPECT_EQ(run(copy, "old", "2024-01-04T21:00:00Z"), run(*v_, "old", "2024-01-04T21:00:00Z"));
  EXPECT_NE(run(copy, "old2", "2024-01-04T21:00:00Z"), "ok");

  // Corrupt or truncated: refused, naming the problem, and the validator is new.
  for (size_t n : {size_t{0}, size_t{7}, snap.size() - 1}) {
    Validator v(schema_, &hasher_);
    const absl::Status st = v.Restore(std::string_view(snap.data(), n));
    EXPECT_THAT(std::string(st.message()), HasSubstr("validator snapshot")) << n;
    EXPECT_EQ(v.latest_time_ms(), INT64_MIN);
  }
  std::string twice = snap;
  std::memcpy(twice.data() + twice.size() - 9, twice.data() + twice.size() - 18,
              8);  // a ring id twice
  EXPECT_THAT(std::string(copy.Restore(twice).message()), HasSubstr("twice"));
}

TEST_F(ValidatorTest, CsvHeaderErrorsNameTheColumn) {
  EXPECT_THAT(v_->SetCsvHeader("user_id,amount,asset,kyc,color").message(),
              HasSubstr("column 5 'color'"));
  EXPECT_THAT(v_->SetCsvHeader("user_id,amount,asset,kyc,kyc").message(), HasSubstr("twice"));
  EXPECT_THAT(v_->SetCsvHeader("user_id,amount").message(), HasSubstr("asset, kyc"));
}

TEST_F(ValidatorTest, CsvQuotingAndColumnCount) {
  EXPECT_TRUE(Csv(R"(u1,,,1,USD,,,,,,"a ""quoted"", note",1)").empty());
  EXPECT_EQ(rec_[rec_.type->Find("note")->index].text, R"(a "quoted", note)");
  ExpectOne(Csv(R"(u1,,,1,USD,,,,,,"open,1)"), Rule::kMalformedCsv, "", "never closed");
  ExpectOne(Csv(R"(u1,,,1,USD,,,,,,ab"c,1)"), Rule::kMalformedCsv, "", "quote inside");
  ExpectOne(Csv("u1,,,1,USD,,,,,,1"), Rule::kColumnCount, "", "13 columns; the header has 14");
}

TEST_F(ValidatorTest, CsvCellsSplitAtEveryCommaWhereverItFallsInTheLine) {
  // Commas at every offset of the 16-byte blocks the splitter reads (strings
  // are at most 16 bytes here), and a quote first seen in a later block.
  for (size_t n = 1; n <= 16; ++n) {
    const std::string a(n, 'u'), b(17 - n, 'x');
    ASSERT_TRUE(Csv(StrCat(a, ",", b, ",", a, ",1,USD,,,,,,", b, ",1")).empty()) << n;
    EXPECT_EQ(rec_[rec_.type->Find("user_id")->index].text, a);
    EXPECT_EQ(rec_[rec_.type->Find("note")->index].text, b);
    EXPECT_EQ(rec_[rec_.type->Find("kyc")->index].i, 1);
    ASSERT_TRUE(Csv(StrCat(a, ",", b, ",", a, ",1,USD,,,,,,\"", b.substr(1), ",\",1")).empty()) << n;
    EXPECT_EQ(rec_[rec_.type->Find("note")->index].text, StrCat(b.substr(1), ","));
  }
}

TEST_F(ValidatorTest, CsvLinesAreCheckedForUtf8WhereverTheByteFalls) {
  // The splitter notes bytes >= 0x80 in its 16-byte blocks and in the tail;
  // only then is the line validated.
  for (size_t n = 1; n <= 16; ++n) {
    const std::string a(n, 'u');
    ASSERT_TRUE(Csv(StrCat(a, ",,,1,USD,,,,,,\xc3\xa9,1")).empty()) << n;
    ExpectOne(Csv(StrCat(a, ",,,1,USD,,,,,,\xff,1")), Rule::kInvalidUtf8, "", "UTF-8");
    ExpectOne(Csv(StrCat(a, "\xc3,,,1,USD,,,,,,", a, ",1")), Rule::kInvalidUtf8, "", "UTF-8");
    ExpectOne(Csv(StrCat(a, ",,,1,USD,,,,,,\"", a, "\xc3\",1")), Rule::kInvalidUtf8, "", "UTF-8");
  }
  std::vector<Violation> out;
  ASSERT_FALSE(v_->DecodeCsv("u1,,,1,USD,,,,,,x,1,c0,2024-01-01 00:00:0\xc3", &rec_, &out));
  ExpectOne(out, Rule::kInvalidUtf8, "", "UTF-8");
}

TEST_F(ValidatorTest, LabelEventsNeedExactlyOneTarget) {
  EXPECT_TRUE(Json(R"({"event_type":"label","event_id":"l1","time":1,"kind":"chargeback","target_event_id":"e1","value":1})").empty());
  EXPECT_TRUE(Json(R"({"event_type":"label","event_id":"l2","time":1,"kind":"chargeback","target_entity":{"key":"user_id","value":"u1"},"value":0})").empty());
  EXPECT_EQ(rec_[rec_.type->Find("target_entity.value")->index].text, "u1");
  ExpectOne(Json(R"({"event_type":"label","event_id":"l3","time":1,"kind":"chargeback","value":1})"),
            Rule::kLabelTarget, "", "exactly one target");
  ExpectOne(Json(R"({"event_type":"label","event_id":"l4","time":1,"kind":"chargeback","target_entity":{"key":"ip","value":"1"},"value":1})"),
            Rule::kLabelTarget, "target_entity.key", "not an entity key of the schema (user_id)");
  ExpectOne(Json(R"({"event_type":"label","event_id":"l5","time":1,"kind":"chargeback","target_event_id":"e1","value":2})"),
            Rule::kAllowed, "value", "(0, 1)");
  ExpectOne(Json(R"({"event_type":"label","event_id":"l6","time":1,"kind":"refund","target_event_id":"e1","value":1})"),
            Rule::kAllowed, "kind", "chargeback");
}

TEST_F(ValidatorTest, PiiValuesAreMaskedInViolations) {
  // The e-mail is over the 16-byte limit: its violation must not show it.
  auto v = Json(Deposit(R"(,"email":"alice@example.com","phone":"+44 20 7946 0958","n":"x")"));
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].rule, Rule::kMaxLength);
  EXPECT_EQ(v[0].value, hasher_.Hash("alice@example.com"));
  EXPECT_THAT(v[0].reason, Not(HasSubstr("alice")));
  v = Json(R"({"event_type":"deposit","event_id":"p","time":1,"user_id":"u","amount":1,"asset":"USD","kyc":1,"email":12,"phone":13})");
  ASSERT_EQ(v.size(), 2u);
  for (const Violation& x : v) {
    EXPECT_THAT(x.value, ::testing::AnyOf(HasSubstr("hmac:"), HasSubstr("[redacted]")));
    EXPECT_THAT(x.reason, ::testing::Not(HasSubstr("12")));
  }
}

TEST_F(ValidatorTest, SeveralViolationsAreAllReported) {
  auto v = Json(Deposit(R"(,"n":9,"method":"cash","risk":2)"));
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].rule, Rule::kMax);
  EXPECT_EQ(v[1].rule, Rule::kPattern);
  EXPECT_EQ(v[2].rule, Rule::kMax);
}

}  // namespace
}  // namespace vigil::event

namespace vigil::event {
namespace {

TEST(DedupWindowTest, IncreasingNumbersOutOfOrderNumbersAndTextIdsAllCatchRepeats) {
  DedupWindow d(100);
  auto ins = [&](std::string_view id) { return d.Insert(core::Hash64(id), id, 0); };
  for (int i = 1; i <= 50; ++i) ASSERT_TRUE(ins(std::to_string(i * 2)));  // in sequence
  EXPECT_FALSE(ins("40"));    // a repeat found in the sequence
  EXPECT_TRUE(ins("41"));     // out of order: the hash set
  EXPECT_FALSE(ins("41"));
  EXPECT_TRUE(ins("0041"));   // not canonical: another id, by its text
  EXPECT_FALSE(ins("0041"));
  EXPECT_TRUE(ins("tx-7"));
  EXPECT_FALSE(ins("tx-7"));
  EXPECT_TRUE(ins("102"));    // the sequence goes on
  EXPECT_FALSE(ins("102"));
  EXPECT_TRUE(d.Contains(core::Hash64("41"), "41"));
  EXPECT_TRUE(d.Contains(core::Hash64("2"), "2"));
  EXPECT_FALSE(d.Contains(core::Hash64("3"), "3"));
}

TEST(DedupWindowTest, InsertIntAgreesWithInsertForEveryShapeOfIntText) {
  // Ids as int fields write them: increasing, repeated, out of order, with
  // '+', '-', leading zeros, 0, 19 digits; InsertInt is told the parsed
  // value and must answer what Insert answers, in the same state.
  std::mt19937_64 rng(37);
  DedupWindow a(64), b(64);
  int64_t next = 1;
  for (int i = 0; i < 200'000; ++i) {
    int64_t v = next;
    const int r = static_cast<int>(rng() % 12);
    if (r == 0) v = next - static_cast<int64_t>(rng() % 100);  // a repeat or out of order
    if (r == 1) v = -static_cast<int64_t>(rng() % 1000);
    if (r == 2) v = 0;
    if (r == 3) v = std::numeric_limits<int64_t>::max() - static_cast<int64_t>(rng() % 3);
    if (r >= 4) next += 1 + static_cast<int64_t>(rng() % 3);
    std::string id = std::to_string(v);
    if (v >= 0 && rng() % 10 == 0) id = "+" + id;
    if (v >= 0 && rng() % 10 == 0) id = "0" + id;
    if (v == 0 && rng() % 4 == 0) id = "-0";
    const uint64_t h = core::Hash64(id);
    ASSERT_EQ(a.Insert(h, id, 0), b.InsertInt(h, id, v, 0)) << id;
  }
}

TEST(DedupWindowTest, EachPartRemembersItsLastCapacityIds) {
  DedupWindow d(10);
  auto ins = [&](uint64_t n) {
    const std::string id = std::to_string(n);
    return d.Insert(core::Hash64(id), id, 0);
  };
  for (uint64_t i = 1; i <= 25; ++i) ASSERT_TRUE(ins(i));
  EXPECT_TRUE(ins(5));    // forgotten: only 16..25 are remembered
  EXPECT_FALSE(ins(20));  // still remembered
  EXPECT_FALSE(ins(25));
}

// The increasing numeric ids are kept as runs of consecutive ids of one
// type. Against a plain model (every id and its type, the last `capacity` of
// each part) over runs, gaps, changes of type, repeats old and new, ids out
// of order and text ids, with windows that wrap many times, one past the
// room taken up front (so the runs' ring grows), and through a snapshot.
TEST(DedupWindowTest, RunsOfConsecutiveIdsAnswerAsEveryIdKeptAlone) {
  struct Model {
    size_t capacity;
    std::deque<uint64_t> seq;
    std::unordered_map<uint64_t, int> seq_type;
    std::deque<std::string> ring;
    std::map<std::string, int> set;
    bool Insert(const std::string& id, int type) {
      uint64_t n = 0;
      const bool numeric = !id.empty() && id.size() <= 19 && (id[0] != '0' || id.size() == 1) &&
                           id.find_first_not_of("0123456789") == std::string::npos;
      if (numeric) {
        n = std::stoull(id);
        if (seq.empty() || n > seq.back()) {
          if (seq.size() == capacity) {
            seq_type.erase(seq.front());
            seq.pop_front();
          }
          seq.push_back(n);
          seq_type[n] = type;
          return true;
        }
        if (seq_type.contains(n)) return false;
      }
      if (!set.emplace(id, type).second) return false;
      if (ring.size() == capacity) {
        set.erase(ring.front());
        ring.pop_front();
      }
      ring.push_back(id);
      return true;
    }
    int TypeOf(const std::string& id) const {
      if (id.find_first_not_of("0123456789") == std::string::npos &&
          (id[0] != '0' || id.size() == 1)) {
        if (const auto at = seq_type.find(std::stoull(id)); at != seq_type.end()) return at->second;
      }
      const auto it = set.find(id);
      return it == set.end() ? DedupWindow::kNotSeen : it->second;
    }
  };
  for (const size_t capacity : {size_t{1}, size_t{7}, size_t{64}, size_t{(1 << 20) + 3}}) {
    SCOPED_TRACE(capacity);
    std::mt19937_64 rng(capacity);
    DedupWindow d(capacity);
    Model m{capacity, {}, {}, {}, {}};
    uint64_t next = 1000;
    int type = 0;
    const int steps = capacity > 100'000 ? 1'200'000 : 20'000;
    std::vector<std::string> probes;
    for (int i = 0; i < steps; ++i) {
      std::string id;
      if (capacity > 100'000) {  // every id a run of its own: the ring outgrows its room
        next += 2;
        id = std::to_string(next);
      } else {
        const int r = static_cast<int>(rng() % 20);
        if (r == 0) type = static_cast<int>(rng() % 3);
        if (r == 1) next += 1 + rng() % 5;                    // a gap
        if (r == 2) id = std::to_string(next - rng() % 200);  // a repeat, or out of order
        if (r == 3) id = "t" + std::to_string(rng() % 50);    // a text id
        if (id.empty()) id = std::to_string(next++);
      }
      ASSERT_EQ(d.Insert(core::Hash64(id), id, type), m.Insert(id, type))
          << "step " << i << " id " << id;
      if (i % 997 == 0) probes.push_back(id);
    }
    std::string snap;
    core::ByteWriter w(&snap);
    d.SerializeTo(w);
    DedupWindow copy(capacity);
    core::ByteReader r(snap, "test");
    ASSERT_TRUE(copy.Restore(r, /*with_types=*/true)) << r.status();
    for (uint64_t k = next - 300; k < next + 3; ++k) probes.push_back(std::to_string(k));
    if (capacity > 100'000) {
      for (uint64_t k = 0; k < 5; ++k)
        probes.push_back(std::to_string(next - 2 * (capacity - 1) + 2 * k - 4));
    }
    for (const std::string& id : probes) {
      EXPECT_EQ(d.TypeOf(core::Hash64(id), id), m.TypeOf(id)) << id;
      EXPECT_EQ(copy.TypeOf(core::Hash64(id), id), m.TypeOf(id)) << id;
    }
  }
}

// A server tells a retry from another event under a taken id by the type
// each id was remembered with: in the sequence, in the set, after either
// wrapped round, and through a snapshot.
TEST(DedupWindowTest, EachIdKeepsTheTypeItCameWith) {
  DedupWindow d(4);
  auto ins = [&](std::string_view id, int type) { return d.Insert(core::Hash64(id), id, type); };
  auto type_of = [&](const DedupWindow& w, std::string_view id) {
    return w.TypeOf(core::Hash64(id), id);
  };
  ASSERT_TRUE(ins("10", 1));  // in sequence
  ASSERT_TRUE(ins("11", 2));
  ASSERT_TRUE(ins("5", 3));  // out of sequence: the set
  ASSERT_TRUE(ins("tx", 4));
  ASSERT_TRUE(ins("big", 300));  // past a byte: remembered, its type unknown
  EXPECT_FALSE(ins("11", 7));    // a duplicate keeps the first type
  EXPECT_EQ(type_of(d, "10"), 1);
  EXPECT_EQ(type_of(d, "11"), 2);
  EXPECT_EQ(type_of(d, "5"), 3);
  EXPECT_EQ(type_of(d, "tx"), 4);
  EXPECT_EQ(type_of(d, "big"), DedupWindow::kUnknownType);
  EXPECT_EQ(type_of(d, "12"), DedupWindow::kNotSeen);
  EXPECT_FALSE(d.Contains(core::Hash64("12"), "12"));
  EXPECT_TRUE(d.Contains(core::Hash64("big"), "big"));
  // Both rings wrap: the types move with their ids.
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(ins(std::to_string(20 + i), 10 + i));
    ASSERT_TRUE(ins("s" + std::to_string(i), 20 + i));
  }
  EXPECT_EQ(type_of(d, "10"), DedupWindow::kNotSeen);
  EXPECT_EQ(type_of(d, "tx"), DedupWindow::kNotSeen);
  for (int i = 2; i < 6; ++i) {
    EXPECT_EQ(type_of(d, std::to_string(20 + i)), 10 + i);
    EXPECT_EQ(type_of(d, "s" + std::to_string(i)), 20 + i);
  }
  std::string snap;
  core::ByteWriter w(&snap);
  d.SerializeTo(w);
  DedupWindow copy(4);
  core::ByteReader r(snap, "test");
  ASSERT_TRUE(copy.Restore(r, /*with_types=*/true)) << r.status();
  EXPECT_TRUE(r.at_end());
  for (int i = 2; i < 6; ++i) {
    EXPECT_EQ(type_of(copy, std::to_string(20 + i)), 10 + i);
    EXPECT_EQ(type_of(copy, "s" + std::to_string(i)), 20 + i);
  }
  // A snapshot of ids alone (before types were kept): remembered, types unknown.
  std::string old;
  core::ByteWriter ow(&old);
  ow.U64(1);
  ow.U64(42);
  ow.U64(1);
  ow.U64(core::Hash64("x"));
  core::ByteReader orr(old, "test");
  ASSERT_TRUE(copy.Restore(orr, /*with_types=*/false)) << orr.status();
  EXPECT_EQ(type_of(copy, "42"), DedupWindow::kUnknownType);
  EXPECT_EQ(type_of(copy, "x"), DedupWindow::kUnknownType);
  EXPECT_EQ(type_of(copy, "s5"), DedupWindow::kNotSeen);
}

}  // namespace
}  // namespace vigil::event

namespace vigil::event {
namespace {

TEST_F(ValidatorTest, KeyHashOfTextMatchesTheHashRecordsCarry) {
  ASSERT_TRUE(Json(Deposit(R"(,"n":3,"first":true)")).empty());
  const EventTypeSpec& t = *rec_.type;
  EXPECT_EQ(KeyHashOfText(FieldType::kInt, "3"), rec_[t.Find("n")->index].hash);
  EXPECT_EQ(KeyHashOfText(FieldType::kBool, "true"), rec_[t.Find("first")->index].hash);
  EXPECT_EQ(KeyHashOfText(FieldType::kString, "u1"), rec_[t.Find("user_id")->index].hash);
  EXPECT_NE(KeyHashOfText(FieldType::kInt, "3"), KeyHashOfText(FieldType::kString, "3"));
  // Floats and decimals by number, as KeyHash takes them from a record.
  ASSERT_TRUE(Json(Deposit(R"(,"risk":0.25)", "e2")).empty());
  EXPECT_EQ(KeyHashOfText(FieldType::kFloat, "0.250"), KeyHash(rec_, t.Find("risk")->index));
  EXPECT_EQ(KeyHashOfText(FieldType::kDecimal, "12.50"), core::HashDouble(12.5));
  EXPECT_EQ(KeyHashOfText(FieldType::kTimestamp, "1970-01-01T00:00:01Z"), core::HashDouble(1000));
}

TEST(KeyTextAlikeTest, SaysWhichTypesHashAKeysTextAlike) {
  const FieldType all[] = {FieldType::kString,   FieldType::kEnum,  FieldType::kInt,
                           FieldType::kBool,     FieldType::kFloat, FieldType::kDecimal,
                           FieldType::kTimestamp};
  const char* texts[] = {"3", "true", "0.5", "u1", "2024-01-01T00:00:00Z"};
  for (FieldType a : all) {
    for (FieldType b : all) {
      bool same = true;
      for (const char* x : texts) same = same && KeyHashOfText(a, x) == KeyHashOfText(b, x);
      EXPECT_EQ(KeyTextAlike(a, b), same) << FieldTypeName(a) << " " << FieldTypeName(b);
    }
  }
}

TEST(ValidatorCsvTest, InlineCellDecodingMatchesTheGeneralPath) {
  // Rows of valid and invalid cells of every kind DecodeCsv decodes inline,
  // through a validator that does and one that does not: the same values,
  // to the bit, and the same violations.
  constexpr std::string_view kFast = R"(
name: fast
duplicates: {memory: 0}
csv: {event_type: e}
event_types:
  e:
    fields:
      id: {type: int, required: true, min: 0, role: event_id}
      at: {type: timestamp, required: true, role: event_time}
      s: {type: string, max_length: 4}
      k: {type: int, allowed: [0, 1, 3, 63]}
      big: {type: int, allowed: [0, 64]}
      n: {type: int, min: -5, max: 5}
      amt: {type: decimal, min: 0}
      amt2: {type: decimal, min: -1.5, max: 1000}
      ts: {type: timestamp, min: "2000-01-01", max: "2030-01-01"}
      f: {type: float}
      b: {type: bool}
      p: {type: string, pattern: "a+"}
)";
  auto schema = Schema::LoadString(kFast, "fast.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  PiiHasher hasher("k");
  Validator fast(*schema, &hasher), general(*schema, &hasher);
  general.set_csv_fast_path_for_testing(false);
  const std::string header = "id,at,s,k,big,n,amt,amt2,ts,f,b,p";
  ASSERT_TRUE(fast.SetCsvHeader(header).ok());
  ASSERT_TRUE(general.SetCsvHeader(header).ok());
  const std::vector<std::string> ints = {"", "0", "1", "+1", "-1", "3", "5", "6", "-5", "-6", "63", "64",
                                         "+", "-", "1x", "9223372036854775807", "9223372036854775808",
                                         "-9223372036854775808", "99999999999999999999", "007", " 1"};
  const std::vector<std::string> decimals = {"", "0", "0.00", "-0", "-0.01", "57.16", "+57.16", "1000",
                                             "1000.001", "-1.5", "-1.51", ".5", "5.", ".", "-", "1e3",
                                             "1.2.3", "123456789012345678", "1234567890123456789",
                                             "0.000000000000000001", "12345678901234567.8", "nan", "x"};
  const std::vector<std::string> times = {"", "2018-04-01 00:00:31", "2018-04-01T00:00:31Z",
                                          "1999-12-31 23:59:59", "2031-01-01 00:00:00", "2018-02-30 00:00:00",
                                          "2018-04-01", "1522540831", "x", "2018-04-01 24:00:00"};
  const std::vector<std::string> strings = {"", "a", "aa", "abcd", "abcde", "b", "\xc3\xa9", "\xff", "a\xc3"};
  std::mt19937_64 rng(23);
  auto pick = [&rng](const std::vector<std::string>& from) { return from[rng() % from.size()]; };
  Record a, b;
  for (int row = 0; row < 20'000; ++row) {
    std::string id = pick(ints);
    if (row % 3 == 0) id = std::to_string(row);
    std::string line =
        StrCat(id, ",", pick(times), ",", pick(strings), ",", pick(ints), ",", pick(ints), ",",
               pick(ints), ",", pick(decimals), ",", pick(decimals), ",", pick(times), ",",
               pick(decimals), ",", pick(ints), ",", pick(strings));
    if (row % 11 == 0) line = line.substr(0, line.rfind(','));       // a column short
    if (row % 13 == 0) line = StrCat("\"", line);                    // a quote never closed
    if (row % 17 == 0) line = StrCat("\"1\"", line.substr(line.find(',')));  // a quoted id
    std::vector<Violation> va, vb;
    const bool ok_a = fast.DecodeCsv(line, &a, &va);
    const bool ok_b = general.DecodeCsv(line, &b, &vb);
    ASSERT_EQ(ok_a, ok_b) << line;
    ASSERT_EQ(va.size(), vb.size()) << line;
    for (size_t i = 0; i < va.size(); ++i) {
      EXPECT_EQ(va[i].rule, vb[i].rule) << line;
      EXPECT_EQ(va[i].field, vb[i].field) << line;
      EXPECT_EQ(va[i].value, vb[i].value) << line;
      EXPECT_EQ(va[i].reason, vb[i].reason) << line;
    }
    EXPECT_EQ(a.event_id, b.event_id) << line;
    EXPECT_EQ(a.id_hash, b.id_hash) << line;
    EXPECT_EQ(a.time_ms, b.time_ms) << line;
    for (size_t i = 0; i < a.type->fields.size(); ++i) {
      const Value &x = a.values[i], &y = b.values[i];
      ASSERT_EQ(x.state, y.state) << line << " field " << i;
      if (va.size() == 1 && va[0].rule == Rule::kColumnCount) {
        ASSERT_EQ(x.state, Value::State::kMissing) << line << " field " << i;
      }
      EXPECT_EQ(x.text, y.text) << line << " field " << i;
      EXPECT_EQ(x.b, y.b) << line << " field " << i;
      EXPECT_EQ(x.i, y.i) << line << " field " << i;
      EXPECT_EQ(std::memcmp(&x.d, &y.d, sizeof x.d), 0) << line << " field " << i;
      EXPECT_EQ(x.dec.units, y.dec.units) << line << " field " << i;
      EXPECT_EQ(x.dec.scale, y.dec.scale) << line << " field " << i;
      EXPECT_EQ(x.hash, y.hash) << line << " field " << i;
    }
  }
}

}  // namespace
}  // namespace vigil::event
