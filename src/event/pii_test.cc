#include "event/pii.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::event {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::shared_ptr<const Schema> TestSchema() {
  auto s = Schema::LoadString(R"(
event_types:
  signup:
    fields:
      user_id: {type: string, role: entity}
      email: {type: string, pii: hash, role: entity}
      phone: {type: string, pii: redact}
      name: string
)", "s.yaml");
  EXPECT_TRUE(s.ok()) << s.status();
  return *s;
}

TEST(PiiHasherTest, KeyedStableAndDistinct) {
  PiiHasher a("k1"), b("k2");
  EXPECT_EQ(a.Hash("alice@example.com"), a.Hash("alice@example.com"));
  EXPECT_NE(a.Hash("alice@example.com"), b.Hash("alice@example.com"));
  EXPECT_NE(a.Hash("alice@example.com"), a.Hash("bob@example.com"));
  EXPECT_THAT(a.Hash("x"), testing::StartsWith("hmac:"));
  EXPECT_EQ(a.Hash("x").size(), 5u + 32u);
  EXPECT_EQ(a.Mask("x", PiiMode::kRedact), "[redacted]");
}

TEST(PiiHasherTest, MissingKeyWarnsAndStillHashes) {
  unsetenv("VIGIL_TEST_NO_SUCH_KEY");
  std::string warning;
  PiiHasher h = PiiHasher::FromEnv("VIGIL_TEST_NO_SUCH_KEY", &warning);
  EXPECT_THAT(warning, HasSubstr("VIGIL_TEST_NO_SUCH_KEY is not set"));
  EXPECT_THAT(h.Hash("secret"), Not(HasSubstr("secret")));
}

TEST(Sha256Test, KnownVector) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(MaskJsonTextTest, MasksPiiKeysEvenInBrokenJson) {
  auto schema = TestSchema();
  PiiHasher h("k");
  const std::string ok = MaskJsonText(
      R"({"event_type":"signup","email":"alice@example.com","phone":"+1 555 0100","name":"Al"})",
      schema->FindType("signup"), *schema, h);
  EXPECT_THAT(ok, Not(HasSubstr("alice@example.com")));
  EXPECT_THAT(ok, Not(HasSubstr("555")));
  EXPECT_THAT(ok, HasSubstr(h.Hash("alice@example.com")));
  EXPECT_THAT(ok, HasSubstr(R"("name":"Al")"));
  const std::string broken = MaskJsonText(R"({"email": "alice@example.com", "phone": 5550100, )",
                                          nullptr, *schema, h);
  EXPECT_THAT(broken, Not(HasSubstr("alice@example.com")));
  EXPECT_THAT(broken, Not(HasSubstr("5550100")));
  const std::string unterminated = MaskJsonText(R"({"email": "alice@exam)", nullptr, *schema, h);
  EXPECT_THAT(unterminated, Not(HasSubstr("alice")));
}

// JSON that a reader takes as an e-mail is masked whatever its spelling:
// white space before the colon, an escaped key, an array or an object under
// the key.
TEST(MaskJsonTextTest, MasksPiiUnderEveryKeySpellingAndShape) {
  auto schema = TestSchema();
  PiiHasher h("k");
  for (const char* text :
       {"{\"email\"\n: \"ann@x.com\"}", "{\"email\"\r\n:\"ann@x.com\"}",
        "{\"em\\u0061il\": \"ann@x.com\"}", "{\"email\": [\"ann@x.com\", [\"ann@x.com\"]]}",
        "{\"email\": {\"a\": {\"b\": \"ann@x.com\"}}}", "[{\"email\"\r\n: \"ann@x.com\",]",
        "{\"phone\":\t5550100\t}"}) {
    for (const EventTypeSpec* type :
         {schema->FindType("signup"), static_cast<const EventTypeSpec*>(nullptr)}) {
      const std::string masked = MaskJsonText(text, type, *schema, h);
      EXPECT_THAT(masked, Not(HasSubstr("ann@x.com"))) << text;
      EXPECT_THAT(masked, Not(HasSubstr("5550100"))) << text;
    }
  }
  // Text before the object (a BOM, junk glued to its brace) hides nothing,
  // and objects in an array under a pii key are under it too.
  for (const char* text :
       {"\xEF\xBB\xBF{\"event_type\":\"signup\",\"email\":\"ann@x.com\",\"x\":1}",
        "x{\"email\":\"ann@x.com\",\"x\":1}", "{\"email\":[{\"a\":\"ann@x.com\"}]}",
        "{\"email\":[[{\"a\":[\"ann@x.com\"]}]]}", "5{\"email\" :\"ann@x.com\"}"}) {
    EXPECT_THAT(MaskJsonText(text, nullptr, *schema, h), Not(HasSubstr("ann@x.com"))) << text;
  }
  // Nested past any event's depth: every value there is masked, and the
  // scan stays linear (a hostile body of 8,000 levels once took seconds).
  std::string deep;
  for (int i = 0; i < 8000; ++i) deep += "{\"a\":";
  deep += "\"ann@x.com\"";
  for (int i = 0; i < 8000; ++i) deep += "}";
  EXPECT_THAT(MaskJsonText(deep, nullptr, *schema, h), Not(HasSubstr("ann@x.com")));
  std::string wide = "{\"" + std::string(40000, 'k') + "\":";
  for (int i = 0; i < 20000; ++i) wide += "[";
  wide += "1";
  for (int i = 0; i < 20000; ++i) wide += "]";
  wide += "}";
  EXPECT_EQ(MaskJsonText(wide, nullptr, *schema, h).size(),
            wide.size() - 1 + 2 + h.Hash("1").size());
  // Other keys and values are left as they are, arrays of them too.
  const std::string other =
      MaskJsonText(R"({"name": ["Al", {"x": 1}], "user_id": "u1", "email": "a@b"})",
                   schema->FindType("signup"), *schema, h);
  EXPECT_THAT(other, HasSubstr(R"("name": ["Al", {"x": 1}], "user_id": "u1")"));
  EXPECT_THAT(other, Not(HasSubstr("a@b")));
}

TEST(MaskJsonTextTest, MasksALabelsEntityValueWhenItsKeyIsPii) {
  auto schema = TestSchema();
  PiiHasher h("k");
  const std::string s = MaskJsonText(
      R"({"event_type":"label","target_entity":{"value":"alice@example.com","key":"email"}})",
      schema->FindType("label"), *schema, h);
  EXPECT_THAT(s, Not(HasSubstr("alice@example.com")));
  const std::string t = MaskJsonText(
      R"({"event_type":"label","target_entity":{"key":"user_id","value":"u1"}})",
      schema->FindType("label"), *schema, h);
  EXPECT_THAT(t, HasSubstr("u1"));
}

TEST(MaskCsvLineTest, MasksPiiColumnsQuotedOrNot) {
  auto schema = TestSchema();
  const EventTypeSpec* t = schema->FindType("signup");
  std::vector<const FieldSpec*> cols = {t->Find("user_id"), t->Find("email"), t->Find("phone"),
                                        t->Find("name")};
  PiiHasher h("k");
  const std::string s = MaskCsvLine(R"(u1,"alice@example.com",+1 555,"Al, Jr")", cols, h);
  EXPECT_THAT(s, Not(HasSubstr("alice")));
  EXPECT_THAT(s, Not(HasSubstr("555")));
  EXPECT_THAT(s, HasSubstr(R"("Al, Jr")"));
  EXPECT_THAT(s, testing::StartsWith("u1,hmac:"));
}

}  // namespace
}  // namespace vigil::event
