#include "event/event_reader.h"

#include "event/dead_letter.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::event {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<const Schema> TxSchema(std::string_view extra = "") {
  auto s = Schema::LoadString(std::string(extra) + R"(
event_types:
  tx:
    fields:
      id: {type: int, role: event_id}
      ts: {type: timestamp, role: event_time}
      card: {type: string, role: entity, pii: hash}
      amount: {type: decimal, min: 0, required: true, role: amount, currency: EUR}
)", "s.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

struct Counts {
  int valid = 0;
  std::vector<Rejection> rejected;
};

Counts ReadAll(EventReader& r) {
  Counts c;
  Record rec;
  Rejection rej;
  while (true) {
    auto res = r.Next(&rec, &rej);
    if (res == EventReader::Result::kEnd) break;
    if (res == EventReader::Result::kRecord) {
      ++c.valid;
    } else {
      c.rejected.push_back(rej);
    }
  }
  return c;
}

TEST(EventReaderTest, SniffsCsvAndJsonAndNumbersRecords) {
  PiiHasher h("k");
  auto csv = EventReader::FromString("id,ts,card,amount\n1,2024-01-01 00:00:00,c1,5\n2,2024-01-01 00:00:01,c2,-1\n",
                                     TxSchema(), &h);
  ASSERT_TRUE(csv.ok()) << csv.status();
  EXPECT_EQ((*csv)->format(), Format::kCsv);
  Counts c = ReadAll(**csv);
  EXPECT_EQ(c.valid, 1);
  ASSERT_EQ(c.rejected.size(), 1u);
  EXPECT_EQ(c.rejected[0].record_no, 2);
  EXPECT_EQ(c.rejected[0].line_no, 3);
  EXPECT_EQ(c.rejected[0].event_id, "2");

  auto json = EventReader::FromString(
      "\n{\"event_type\":\"tx\",\"event_id\":1,\"time\":1,\"amount\":2}\n\n"
      "{\"event_type\":\"tx\",\"id\":2,\"ts\":2,\"amount\":3}\n",
      TxSchema(), &h);
  ASSERT_TRUE(json.ok());
  EXPECT_EQ((*json)->format(), Format::kJsonLines);
  c = ReadAll(**json);
  EXPECT_EQ(c.valid, 2);  // blank lines are not records; own names and standard names both work
  EXPECT_EQ((*json)->records_read(), 2);
}

// What editors and other tools leave in files: a byte-order mark before a
// JSON Lines file's first record, blank lines in a CSV file (a trailing
// one above all). Neither is a record.
// Read-ahead: the key hashes peeked off a CSV row's raw text are those the
// row has once decoded (event::KeyHash), for ints, floats and strings, in
// any column order; 0 where they cannot be told (an empty or quoted cell, a
// field without a column, JSON input).
TEST(EventReaderTest, PeekedKeyHashesAreThoseOfTheRecordDecodedLater) {
  auto schema = Schema::LoadString(R"(
event_types:
  tx:
    fields:
      id: {type: int, role: event_id}
      ts: {type: timestamp, role: event_time}
      user: {type: string}
      terminal: {type: int}
      score: {type: float}
      shop: {type: string}
)",
                                   "s.yaml");
  ASSERT_TRUE(schema.ok()) << schema.status();
  const EventTypeSpec& t = (*schema)->types[0];
  const std::vector<int> fields = {t.Find("user")->index, t.Find("terminal")->index,
                                   t.Find("score")->index, t.Find("shop")->index};
  std::string csv = "terminal,id,user,ts,score\n";
  for (int i = 0; i < 40; ++i) {
    const std::string user = i % 7 == 3    ? "\"u,q\""
                             : i % 11 == 5 ? ""
                                           : "u" + std::to_string(i % 5);
    csv += std::to_string(100 + i % 9) + "," + std::to_string(i + 1) + "," + user +
           ",2024-01-01 00:00:" + std::to_string(10 + i) + "," + std::to_string(i * 0.25) +
           (i % 2 ? "\r\n" : "\n");
  }
  PiiHasher h("k");
  for (size_t ahead : {1, 2, 3}) {
    SCOPED_TRACE(ahead);
    auto r = EventReader::FromString(csv, *schema, &h);
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<std::vector<uint64_t>> peeked, decoded;
    Record rec;
    Rejection rej;
    while ((*r)->Next(&rec, &rej) == EventReader::Result::kRecord) {
      std::vector<uint64_t> want(fields.size(), 0);
      // Columns from a quoted cell on (the user's, third) cannot be told.
      const bool quoted = rec[fields[0]].text.find(',') != std::string_view::npos;
      for (size_t i = 0; i < fields.size(); ++i) {
        if (HasKeyValue(rec, fields[i]) && !(quoted && (i == 0 || i == 2)))
          want[i] = KeyHash(rec, fields[i]);
      }
      decoded.push_back(want);
      std::vector<uint64_t> got(fields.size(), 7);
      (*r)->PeekKeyHashes(ahead, fields, got);
      peeked.push_back(got);
    }
    ASSERT_TRUE((*r)->status().ok()) << (*r)->status();
    ASSERT_EQ(decoded.size(), 40u);
    int told = 0;
    for (size_t n = 0; n < decoded.size(); ++n) {
      if (n + ahead >= decoded.size()) {
        EXPECT_EQ(peeked[n], std::vector<uint64_t>(fields.size(), 0)) << n;  // past the end
        continue;
      }
      EXPECT_EQ(peeked[n], decoded[n + ahead])
          << "record " << n + 1 << " peeking at " << n + 1 + ahead;
      told += peeked[n][0] != 0 && peeked[n][1] != 0 && peeked[n][2] != 0;
    }
    EXPECT_GT(told, 25);
    EXPECT_EQ(peeked[0][3], 0u);  // shop: no column
  }
  auto json = EventReader::FromString(R"({"event_type":"tx","id":1,"ts":1,"terminal":5}
{"event_type":"tx","id":2,"ts":2,"terminal":6}
)",
                                      *schema, &h);
  ASSERT_TRUE(json.ok()) << json.status();
  Record rec;
  Rejection rej;
  ASSERT_EQ((*json)->Next(&rec, &rej), EventReader::Result::kRecord);
  std::vector<uint64_t> got(fields.size(), 7);
  (*json)->PeekKeyHashes(1, fields, got);
  EXPECT_EQ(got, std::vector<uint64_t>(fields.size(), 0));
}

TEST(EventReaderTest, ByteOrderMarksAndBlankLinesAreNotRecords) {
  PiiHasher h("k");
  auto json = EventReader::FromString(
      "\xEF\xBB\xBF{\"event_type\":\"tx\",\"event_id\":1,\"time\":1,\"amount\":2}\n"
      "{\"event_type\":\"tx\",\"event_id\":2,\"time\":2,\"amount\":3}\n",
      TxSchema(), &h);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ((*json)->format(), Format::kJsonLines);
  Counts c = ReadAll(**json);
  EXPECT_EQ(c.valid, 2);
  EXPECT_TRUE(c.rejected.empty()) << c.rejected[0].violations[0].reason;

  auto csv = EventReader::FromString(
      "\xEF\xBB\xBFid,ts,amount\n1,2024-01-01 00:00:00,5\n\n2,2024-01-01 00:00:01,6\r\n\r\n\n",
      TxSchema(), &h);
  ASSERT_TRUE(csv.ok()) << csv.status();
  c = ReadAll(**csv);
  EXPECT_EQ(c.valid, 2);
  EXPECT_TRUE(c.rejected.empty()) << c.rejected[0].violations[0].reason;
  EXPECT_EQ((*csv)->records_read(), 2);
}

TEST(EventReaderTest, BadHeaderFailsBeforeAnyRecord) {
  PiiHasher h("k");
  auto r = EventReader::FromString("id,ts,amount,shoe\n", TxSchema(), &h);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("'shoe'"));
  auto empty = EventReader::FromString("", TxSchema(), &h, Format::kCsv);
  EXPECT_THAT(empty.status().message(), HasSubstr("empty file"));
}

TEST(EventReaderTest, RecordTooLargeIsRejectedWithItsSizeAndReadingGoesOn) {
  PiiHasher h("k");
  const std::string big = "{\"event_type\":\"tx\",\"pad\":\"" + std::string(500, 'x') + "\"}";
  auto r = EventReader::FromString(big + "\n{\"event_type\":\"tx\",\"id\":2,\"ts\":2,\"amount\":3}\n",
                                   TxSchema("limits: {max_record_bytes: 100}\n"), &h);
  ASSERT_TRUE(r.ok());
  Counts c = ReadAll(**r);
  EXPECT_EQ(c.valid, 1);
  ASSERT_EQ(c.rejected.size(), 1u);
  EXPECT_EQ(c.rejected[0].violations[0].rule, Rule::kRecordTooLarge);
  EXPECT_THAT(c.rejected[0].violations[0].reason, HasSubstr(std::to_string(big.size()) + " bytes; the limit is 100"));
  EXPECT_TRUE(c.rejected[0].raw_truncated);
  EXPECT_EQ(c.rejected[0].raw.size(), 100u);
}

TEST(EventReaderTest, RejectionRawTextIsMaskedAndDeadLetterHasTheDocumentedShape) {
  PiiHasher h("k");
  auto r = EventReader::FromString("id,ts,card,amount\n7,2024-01-01 00:00:00,4111111111111111,x\n",
                                   TxSchema(), &h);
  ASSERT_TRUE(r.ok());
  Counts c = ReadAll(**r);
  ASSERT_EQ(c.rejected.size(), 1u);
  const std::string line = RejectionToJson(c.rejected[0]);
  EXPECT_THAT(line, testing::Not(HasSubstr("4111111111111111")));
  EXPECT_EQ(line.rfind("{\"file\":\"<memory>\",\"record_no\":1,", 0), 0u) << line;
  for (const char* key : {"\"record_no\":1", "\"line\":2", "\"event_id\":\"7\"", "\"field\":\"amount\"",
                          "\"rule\":\"type\"", "\"value\":\"x\"", "\"reason\":", "\"raw\":\"7,2024"}) {
    EXPECT_THAT(line, HasSubstr(key));
  }
}

TEST(EventReaderTest, InvalidUtf8RawIsKeptExactlyInBase64) {
  PiiHasher h("k");
  auto r = EventReader::FromString("id,ts,card,amount\n1,2024-01-01 00:00:00,c,1\xff\n", TxSchema(), &h);
  ASSERT_TRUE(r.ok());
  Counts c = ReadAll(**r);
  ASSERT_EQ(c.rejected.size(), 1u);
  EXPECT_EQ(c.rejected[0].violations[0].rule, Rule::kInvalidUtf8);
  EXPECT_THAT(RejectionToJson(c.rejected[0]), HasSubstr("\"raw_base64\""));
}

}  // namespace
}  // namespace vigil::event
