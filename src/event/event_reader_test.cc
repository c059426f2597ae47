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
