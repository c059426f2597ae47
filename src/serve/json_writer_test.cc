#include "serve/json_writer.h"

#include <cstdint>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace vigil::serve {
namespace {

std::string Str(std::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

TEST(JsonWriterTest, PlainTextIsQuotedAsIs) {
  EXPECT_EQ(Str(""), "\"\"");
  EXPECT_EQ(Str("withdrawal"), "\"withdrawal\"");
  EXPECT_EQ(Str("Zürich €"), "\"Zürich €\"");  // UTF-8 passes through
}

TEST(JsonWriterTest, QuotesBackslashesAndControlCharactersAreEscapedWhereverTheyAre) {
  EXPECT_EQ(Str("\"a\\b\""), R"("\"a\\b\"")");
  EXPECT_EQ(Str("a\nb\rc\td"), R"("a\nb\rc\td")");
  EXPECT_EQ(Str(std::string_view("\x01x\x1f", 3)), R"("\u0001x\u001f")");
  EXPECT_EQ(Str(std::string_view("\0", 1)), R"("\u0000")");
  // Every byte below 0x80 round-trips through a JSON parser.
  std::string all;
  for (int c = 1; c < 0x80; ++c) all.push_back(static_cast<char>(c));
  EXPECT_EQ(nlohmann::json::parse(Str(all)).get<std::string>(), all);
}

TEST(JsonWriterTest, KeysGetACommaExceptFirstInAnObjectOrArray) {
  std::string out = "{";
  AppendKey("a", &out);
  out.append("1");
  AppendKey(std::string_view("b\"c"), &out);  // a key from a spec: escaped
  out.append("[");
  AppendKey("d", &out);
  out.append("2");
  AppendKey("e", &out);
  out.append("3]}");
  EXPECT_EQ(out, R"({"a":1,"b\"c":["d":2,"e":3]})");
}

TEST(JsonWriterTest, IntsAndNumbers) {
  std::string out;
  AppendJsonInt(0, &out);
  out.push_back(' ');
  AppendJsonInt(INT64_MIN, &out);
  out.push_back(' ');
  AppendJsonInt(INT64_MAX, &out);
  out.push_back(' ');
  AppendJsonNumber(0.1, &out);
  out.push_back(' ');
  AppendJsonNumber(std::nan(""), &out);
  EXPECT_EQ(out, "0 -9223372036854775808 9223372036854775807 0.1 null");
}

}  // namespace
}  // namespace vigil::serve
