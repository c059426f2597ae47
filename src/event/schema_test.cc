#include "event/schema.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::event {
namespace {

using ::testing::HasSubstr;

absl::Status LoadError(std::string_view yaml) {
  auto s = Schema::LoadString(yaml, "s.yaml");
  return s.ok() ? absl::OkStatus() : s.status();
}

TEST(SchemaTest, LoadsTypesFieldsRolesAndAddsIdAndTimeForJson) {
  auto s = Schema::LoadString(R"(
name: ex
event_types:
  deposit:
    fields:
      user_id: {type: string, required: true, role: entity, entity: user}
      amount: {type: decimal, min: 0, role: amount, currency_field: asset}
      asset: {type: enum, values: [USD, BTC]}
)", "s.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  const EventTypeSpec* t = (*s)->FindType("deposit");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->fields[t->id_field].name, "event_id");
  EXPECT_EQ(t->fields[t->time_field].name, "time");
  EXPECT_EQ(t->Find("user_id")->entity, "user");
  EXPECT_EQ(t->Find("amount")->min_decimal->ToString(), "0");
  EXPECT_NE((*s)->FindType("label"), nullptr);  // built in
  EXPECT_EQ((*s)->csv_type, t->index);          // the only declared type
  EXPECT_EQ((*s)->content_hash.size(), 64u);
}

TEST(SchemaTest, CsvColumnsTakeTheIdAndTimeRoles) {
  auto s = Schema::LoadString(R"(
event_types:
  tx:
    fields:
      TRANSACTION_ID: {type: int, role: event_id}
      TX_DATETIME: {type: timestamp, role: event_time}
)", "s.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  const EventTypeSpec* t = (*s)->FindType("tx");
  EXPECT_EQ(t->fields.size(), 2u);
  EXPECT_EQ(t->json_keys.at("event_id"), t->id_field);
  EXPECT_EQ(t->json_keys.at("time"), t->time_field);
  EXPECT_TRUE(t->fields[t->id_field].required);
}

TEST(SchemaTest, UnknownTypeNamesFileLineAndChoices) {
  auto st = LoadError("event_types:\n  a:\n    fields:\n      x: {type: integer}\n");
  EXPECT_THAT(st.message(), HasSubstr("s.yaml:4:"));
  EXPECT_THAT(st.message(), HasSubstr("unknown type 'integer'"));
}

// A scalar or a map where a list belongs read as no list: `kinds:
// chargeback` lifted the restriction on label kinds without a word.
TEST(SchemaTest, AScalarWhereAListOrAMapBelongsIsRefused) {
  const std::string types = "event_types:\n  a:\n    fields:\n      x: {type: int}\n";
  EXPECT_THAT(LoadError("labels: {kinds: chargeback}\n" + types).message(),
              HasSubstr("s.yaml:1:17: labels.kinds: expected a list"));
  EXPECT_THAT(LoadError("currencies: {reference: USD, rates: [1, 2]}\n" + types).message(),
              HasSubstr("currencies.rates: expected a map"));
}

// The short form `amount: decimal` is the type alone: it was parsed again as
// YAML, which doubled the position in its errors and let a quoted
// "int\nmin: 5" set a minimum.
TEST(SchemaTest, TheShortFormOfAFieldIsItsTypeAlone) {
  auto st = LoadError("event_types:\n  a:\n    fields:\n      x: strin\n");
  EXPECT_THAT(st.message(), HasSubstr("s.yaml:4:10: field 'x': unknown type 'strin'"));
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      x: \"int\\nmin: 5\"\n").message(),
              HasSubstr("unknown type 'int\nmin: 5'"));
  auto ok = Schema::LoadString("event_types:\n  a:\n    fields:\n      x: int\n", "s.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status();
}

TEST(SchemaTest, TypoInAFieldSettingSuggestsTheKey) {
  auto st = LoadError("event_types:\n  a:\n    fields:\n      x: {type: int, requird: true}\n");
  EXPECT_THAT(st.message(), HasSubstr("did you mean 'required'"));
}

TEST(SchemaTest, LabelNeedsKnownAfterAndAmountNeedsCurrency) {
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      y: {type: int, role: label}\n")
                  .message(),
              HasSubstr("known_after"));
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      m: {type: decimal, role: amount}\n")
                  .message(),
              HasSubstr("currency"));
  EXPECT_THAT(
      LoadError("event_types:\n  a:\n    fields:\n      m: {type: decimal, role: amount, "
                "currency_field: cur}\n")
          .message(),
      HasSubstr("'cur', which is not a field"));
}

TEST(SchemaTest, RefusesBadPatternsBoundsAndReservedNames) {
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      s: {type: string, pattern: '('}\n")
                  .message(),
              HasSubstr("bad pattern"));
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      n: {type: int, min: 5, max: 1}\n")
                  .message(),
              HasSubstr("max is below min"));
  EXPECT_THAT(LoadError("event_types:\n  label:\n    fields:\n      n: int\n").message(),
              HasSubstr("built in"));
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      b: {type: bool, min: 0}\n").message(),
              HasSubstr("min applies to"));
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      e: {type: enum}\n").message(),
              HasSubstr("needs `values"));
  EXPECT_THAT(LoadError("event_types:\n  a:\n    fields:\n      s: {type: string, max_length: 0}\n")
                  .message(),
              HasSubstr("max_length must be at least 1"));
  EXPECT_THAT(
      LoadError(
          "limits: {max_string_length: 0}\nevent_types:\n  a:\n    fields:\n      s: string\n")
          .message(),
      HasSubstr("max_string_length must be at least 1"));
}

TEST(SchemaTest, RefusesASettingGivenTwice) {
  EXPECT_THAT(
      LoadError("event_types:\n  a:\n    fields:\n      x: {type: int, type: string}\n").message(),
      HasSubstr("s.yaml:4:22: 'type' given twice in this mapping (first at 4:11)"));
}

TEST(SchemaTest, SeveralTypesNeedAnExplicitCsvType) {
  auto s = Schema::LoadString("event_types:\n  a: {fields: {x: int}}\n  b: {fields: {y: int}}\n", "s");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->csv_type, -1);
  EXPECT_THAT(LoadError("csv: {event_type: c}\nevent_types:\n  a: {fields: {x: int}}\n").message(),
              HasSubstr("no event type 'c'"));
}

TEST(SchemaTest, TimeBoundsAndLimitsAreRead) {
  auto s = Schema::LoadString(R"(
limits: {max_record_bytes: 1000, max_string_length: 10}
duplicates: {memory: 5}
time_bounds: {max_ahead_of_latest: 2h, max_behind_latest: off, max_ahead_of_wall_clock: 5m}
event_types: {a: {fields: {s: string}}}
)", "s");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->max_record_bytes, 1000);
  EXPECT_EQ((*s)->FindType("a")->Find("s")->max_length, 10);
  EXPECT_EQ((*s)->duplicate_memory, 5);
  EXPECT_EQ((*s)->max_ahead_of_latest_ms, 2 * 3600 * 1000);
  EXPECT_EQ((*s)->max_behind_latest_ms, 0);
  EXPECT_EQ((*s)->max_ahead_of_wall_clock_ms, 5 * 60 * 1000);
}

TEST(SchemaTest, HandbookSchemaLoads) {
  const char* src = std::getenv("VIGIL_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "run under ctest";
  auto s = Schema::Load(std::string(src) + "/examples/handbook/schema.yaml");
  ASSERT_TRUE(s.ok()) << s.status();
  const EventTypeSpec* t = (*s)->FindType("transaction");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->fields[t->id_field].name, "TRANSACTION_ID");
  EXPECT_EQ(t->Find("TX_FRAUD")->role, Role::kLabel);
  EXPECT_EQ(t->Find("TX_FRAUD")->known_after_ms, 7 * 86400000LL);
  EXPECT_EQ(t->Find("TX_FRAUD_SCENARIO")->role, Role::kGroundTruth);
  EXPECT_FALSE(t->Find("TX_AMOUNT")->max_decimal.has_value());
}

}  // namespace
}  // namespace vigil::event
