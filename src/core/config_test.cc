#include "core/config.h"

#include <algorithm>

#include "core/strings.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::core {
namespace {

using ::testing::HasSubstr;

TEST(ConfigNodeTest, CanonicalTextKeepsWhatTheDocumentSaysAndNothingElse) {
  auto canon = [](std::string_view yaml) {
    auto n = ConfigNode::LoadString(yaml, "c.yaml");
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? n->CanonicalText() : std::string();
  };
  const std::string block =
      canon("# a comment\na:\n  b: 1   # another\n  c:\n    - x\n    - 'y z'\nd: ~\n");
  EXPECT_EQ(block, canon("a: {b: 1, c: [x, \"y z\"]}\nd:\n"));
  // Aliases: the anchor's name is not the document; a cycle or nested
  // aliases do not make the text endless or exponential.
  EXPECT_EQ(canon("x: &b {b: 1}\ny: *b\n"), canon("x: &other {b: 1}\ny: *other\n"));
  EXPECT_EQ(canon("d: &self {e: 1, f: *self}\n"), "{1:d={1:e=1:1;1:f=@1;};}");
  std::string laughs = "a0: &a0 [x, x]\n";
  for (int i = 1; i < 40; ++i)
    laughs += StrCat("a", i, ": &a", i, " [*a", i - 1, ", *a", i - 1, "]\n");
  EXPECT_LT(canon(laughs).size(), 2000u);
  EXPECT_NE(block, canon("a: {b: 2, c: [x, y z]}\nd: ~\n"));
  EXPECT_NE(block, canon("a: {c: [x, y z], b: 1}\nd: ~\n"));  // file order is kept
  EXPECT_NE(block, canon("a: {b: 1, c: [x, y, z]}\nd: ~\n"));
  // A scalar's text cannot pass for structure.
  EXPECT_NE(canon("a: '1;b=2'\n"), canon("a: 1\nb: 2\n"));
}

// Assigning one node to another rebinds it; the document is not changed
// (yaml-cpp's own assignment writes over the node assigned to).
TEST(ConfigNodeTest, AssigningNodesLeavesTheDocumentAsItWas) {
  auto root = ConfigNode::LoadString("items: [{v: 1}, {v: 2}]\n", "c.yaml");
  ASSERT_TRUE(root.ok());
  const std::string before = root->CanonicalText();
  std::vector<ConfigNode> items = (*root)["items"].Items();
  ASSERT_EQ(items.size(), 2u);
  std::swap(items[0], items[1]);
  items[0] = items[1];
  EXPECT_EQ(root->CanonicalText(), before);
  EXPECT_EQ(items[0]["v"].Text(), "1");
}

TEST(ConfigNodeTest, SyntaxErrorNamesFileLineAndColumn) {
  auto r = ConfigNode::LoadString("a: 1\nb: [1, 2\n", "x.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("x.yaml:"));
}

// Names and values end up in JSON (answers, logs, meta files): a byte that
// is not UTF-8 aborted backfill's meta file and made invalid JSON answers.
TEST(ConfigNodeTest, ABytesThatIsNotUtf8IsRefusedWhereItIs) {
  auto r = ConfigNode::LoadString("a: 1\nname: user_\xff_1d\n", "x.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("x.yaml:2:12: byte 0xff is not UTF-8"));
  // Columns count characters; a surrogate, an overlong form and a sequence
  // cut short are not UTF-8 either.
  EXPECT_THAT(ConfigNode::LoadString("n: \xc3\xa9\xed\xa0\x80\n", "x.yaml").status().message(),
              HasSubstr("x.yaml:1:5: byte 0xed"));
  EXPECT_THAT(ConfigNode::LoadString("n: \xc0\xaf\n", "x.yaml").status().message(),
              HasSubstr("x.yaml:1:4: byte 0xc0"));
  EXPECT_THAT(ConfigNode::LoadString("n: \xe2\x82", "x.yaml").status().message(),
              HasSubstr("x.yaml:1:4: byte 0xe2"));
  // UTF-8 of every length, and a byte-order mark, load.
  auto ok = ConfigNode::LoadString("\xef\xbb\xbfn: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"\n",
                                   "x.yaml");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)["n"].Text(), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
}

// Durations are added to event times: max_ahead_of_latest: 106751991167d
// overflowed and refused 29 of 30 events.
TEST(ConfigNodeTest, ADurationOfMoreThanACenturyIsRefused) {
  auto n = ConfigNode::LoadString("a: 36500d\nb: 36501d\nc: 106751991167d\n", "x.yaml");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n->GetDurationMs("a", 0), kMaxConfigDurationMs);
  EXPECT_THAT(n->GetDurationMs("b", 0).status().message(),
              HasSubstr("x.yaml:2:4: b: at most 36500d"));
  EXPECT_THAT(n->GetDurationMs("c", 0).status().message(), HasSubstr("at most 36500d"));
}

// A path that names no configuration (/dev/zero, a log) is read no further
// than kMaxConfigBytes: it took 2.4 GB before.
TEST(ConfigNodeTest, AFileLargerThanAnyConfigurationIsNotReadWhole) {
  auto r = ConfigNode::LoadFile("/dev/zero");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(r.status().message(), HasSubstr("/dev/zero: more than 16777216 bytes"));
}

// A second document after `---` would be dropped by a one-document reader:
// a policy's deny rule there was lost without a word.
TEST(ConfigNodeTest, ASecondYamlDocumentIsAnError) {
  auto r = ConfigNode::LoadString("a: 1\n---\nb: 2\n", "x.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("x.yaml:2:1: a second YAML document"));
  EXPECT_THAT(ConfigNode::LoadString("a: 1\n...\nb: 2\n", "x.yaml").status().message(),
              HasSubstr("x.yaml:3:1: a second YAML document"));
  EXPECT_THAT(ConfigNode::LoadString("a: |\n  x\n--- b\n", "x.yaml").status().message(),
              HasSubstr("x.yaml:3:1: a second YAML document"));
  // One document, with or without its markers, an indented or quoted ---,
  // and an empty file, load.
  EXPECT_TRUE(ConfigNode::LoadString("%YAML 1.2\n---\na: 1\n...\n", "x.yaml").ok());
  EXPECT_TRUE(ConfigNode::LoadString("--- {a: 1}\n", "x.yaml").ok());
  EXPECT_TRUE(ConfigNode::LoadString("a: |\n  ---\n  x\nb: '---'\n", "x.yaml").ok());
  EXPECT_TRUE(ConfigNode::LoadString("# nothing\n", "x.yaml").ok());
  EXPECT_TRUE(ConfigNode::LoadString("", "x.yaml").ok());
  // What made YAML::LoadAll allocate without end (20 GB) loads or fails at once.
  (void)ConfigNode::LoadString(std::string_view("\0,\0\0\0\xfe"
                                                "0",
                                                7),
                               "x.yaml");
}

TEST(ConfigNodeTest, TypeErrorNamesPositionOfTheValue) {
  auto r = ConfigNode::LoadString("name: x\nsize: ten\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  auto v = (*r)["size"].Int();
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("s.yaml:2:7"));
  EXPECT_THAT(v.status().message(), HasSubstr("'ten'"));
}

TEST(ConfigNodeTest, UnknownKeySuggestsTheClosest) {
  auto r = ConfigNode::LoadString("nmae: x\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  auto st = r->CheckKeys({"name", "fields"});
  EXPECT_THAT(st.message(), HasSubstr("s.yaml:1:1"));  // at the key
  EXPECT_THAT(st.message(), HasSubstr("did you mean 'name'"));
  // At the key, not at its value lines below.
  r = ConfigNode::LoadString("name: x\nlimitz:\n\n\n  a: 1\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->CheckKeys({"name", "limits"}).message(),
              HasSubstr("s.yaml:2:1: unknown key 'limitz'"));
}

// A required value that is absent is named: "'share' is required", not
// "missing value" at its parent.
TEST(ConfigNodeTest, AMissingRequiredValueIsNamed) {
  auto r = ConfigNode::LoadString("challenger: {name: x, mode: ab}\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_THAT((*r)["challenger"]["share"].Double().status().message(),
              HasSubstr("'share' is required"));
  EXPECT_THAT((*r)["challenger"]["bundle"].String().status().message(),
              HasSubstr("s.yaml:1:13: 'bundle' is required"));
}

TEST(ConfigNodeTest, DefaultsApplyOnlyWhenAbsent) {
  auto r = ConfigNode::LoadString("a: 3\nd: 7d\nf: 0.5\nb: yes\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r->GetInt("a", 1), 3);
  EXPECT_EQ(*r->GetInt("missing", 1), 1);
  EXPECT_EQ(*r->GetDurationMs("d", 0), 7 * 86400000LL);
  EXPECT_EQ(*r->GetDouble("f", 0), 0.5);
  EXPECT_TRUE(*r->GetBool("b", false));
  EXPECT_FALSE(r->GetDurationMs("a", 0).ok());
}

TEST(ConfigNodeTest, EntriesKeepFileOrderAndPositions) {
  auto r = ConfigNode::LoadString("z: 1\na:\n  - x\n  - y\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  auto e = r->Entries();
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].first, "z");
  EXPECT_EQ(e[1].first, "a");
  auto items = e[1].second.Items();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[1].Where(), "s.yaml:4:5");
}

TEST(ConfigNodeTest, QuotedScalarsAreKnown) {
  auto r = ConfigNode::LoadString("a: 'x'\nb: \"y\"\nc: z\n", "s.yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)["a"].Quoted());
  EXPECT_TRUE((*r)["b"].Quoted());
  EXPECT_FALSE((*r)["c"].Quoted());
}

// "line:col" of byte `k` of the value of `k:` in `yaml`, as
// SourceText::ScalarPositions places it ("" when it places nothing), after
// checking that every byte it places at a character of the text other than
// a break, a blank or an escape is that character.
std::string PositionOf(const std::string& yaml, size_t k) {
  auto r = ConfigNode::LoadString(yaml, "x.yaml");
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return "?";
  const ConfigNode n = (*r)["k"];
  const SourceText& text = n.source();  // the document's own
  const std::vector<SourceText::Position> at = text.ScalarPositions(n);
  if (at.empty()) return "";
  const std::string value = n.Text();
  EXPECT_EQ(at.size(), value.size()) << yaml;
  for (size_t i = 0; i < at.size() && i < value.size(); ++i) {
    const size_t line = text.LineStart(at[i].line);
    const size_t upto = std::min(yaml.size(), line + static_cast<size_t>(at[i].column));
    if (std::any_of(yaml.begin() + static_cast<ptrdiff_t>(line),
                    yaml.begin() + static_cast<ptrdiff_t>(upto),
                    [](char b) { return (static_cast<unsigned char>(b) & 0x80) != 0; })) {
      continue;  // columns count characters: CharAt reads bytes
    }
    const char c = text.CharAt(at[i].line, at[i].column);
    if (c == '\\' || c == '\n' || c == '\r' || c == ' ' || c == '\t' || c == 0) continue;
    EXPECT_EQ(c, value[i]) << yaml << " byte " << i;
  }
  return k < at.size() ? std::to_string(at[k].line) + ":" + std::to_string(at[k].column) : "end";
}

// The offset of the first `what` in k's value.
size_t ValueOffset(const std::string& yaml, std::string_view what) {
  auto r = ConfigNode::LoadString(yaml, "x.yaml");
  return r.ok() ? (*r)["k"].Text().find(what) : std::string::npos;
}

TEST(SourceTextTest, PlacesEveryByteOfAScalarWhateverItsStyle) {
  const struct {
    const char* yaml;
    const char* token;
    const char* at;
  } cases[] = {
      {"k: event.a > 1\n", "1", "1:14"},
      // Plain and quoted over several lines: folded into one.
      {"k: event.a > 1\n   and features.nope > 5\n", "nope", "2:17"},
      {"a: 1\nk: event.a > 1   \n\n    and  nope\n", "nope", "4:10"},
      {"k: 'it''s and\n  ''x'''\n", "'x'", "2:3"},
      {"k: \"a \\\"q\\\" \n  b\\tc\"\n", "c", "2:6"},
      {"k: \"a \\\"q\\\" \n  b\\tc\"\n", "\t", "2:4"},
      {"k: \"ab\\\n   cd\"\n", "cd", "2:4"},
      {"k: \"\\u00e9 \\x41 z\"\n", "z", "1:17"},
      {"k: 'é x'\n", "x", "1:7"},
      {"k: \"one\r\n  two\"\r\n", "two", "2:3"},
      // Literal blocks keep lines; folded blocks join them.
      {"k: |\n  event.a > 1\n  and features.nope > 5\n", "nope", "3:16"},
      {"a: x\nk: >\n    event.a > 1\n    and nope\n", "nope", "4:9"},
      {"k: >-  # a comment\n  one\n\n  two\n    more\n  three\n", "three", "6:3"},
      {"k: >\n  one\n   more\n  two\n", "two", "4:3"},
      {"k: |2\n    indented\n  nope\n", "nope", "3:3"},
      {"k: |2\n    indented\n  nope\n", "indented", "2:5"},
      {"m:\n  k: |+\n    a\n\n    b\n\n", "b", "5:5"},
      // Spaces past the indentation on an otherwise empty line are text.
      {"k: >\n  a\n  b\n      \n", "b", "3:3"},
      {"k: >\n  a\n      \n  b\n", "b", "4:3"},
      // After an anchor or a tag.
      {"k: &x features.zzz > 5\n", "zzz", "1:16"},
      {"k: !!str >\n  one\n  two\n", "two", "3:3"},
      // Empty lines after an escaped line break are newlines.
      {"k: \"a and \\\n\n   b\"\n", "b", "3:4"},
      // A character's later UTF-8 bytes are at its column.
      {"k: 'a\xc3\xa9 x'\n", "x", "1:8"},
      {"k: 'a\xc3\xa9 x'\n", "\xa9", "1:6"},
  };
  for (const auto& c : cases) {
    if (std::string_view(c.yaml).substr(0, 2) == "m:") {
      // Nested: k under m.
      auto r = ConfigNode::LoadString(c.yaml, "x.yaml");
      ASSERT_TRUE(r.ok());
      const ConfigNode n = (*r)["m"]["k"];
      const SourceText& text = n.source();
      const auto at = text.ScalarPositions(n);
      const size_t off = n.Text().find(c.token);
      ASSERT_LT(off, at.size()) << c.yaml;
      EXPECT_EQ(std::to_string(at[off].line) + ":" + std::to_string(at[off].column), c.at)
          << c.yaml;
      continue;
    }
    const size_t k = ValueOffset(c.yaml, c.token);
    ASSERT_NE(k, std::string::npos) << c.yaml << " has no " << c.token;
    EXPECT_EQ(PositionOf(c.yaml, k), c.at) << c.yaml;
  }
  // Not a scalar: nothing.
  auto r = ConfigNode::LoadString("k: [1, 2]\n", "x.yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)["k"].source().ScalarPositions((*r)["k"]).empty());
}

TEST(ConfigNodeTest, KeyErrorNamesTheKeyNotItsValue) {
  auto r = ConfigNode::LoadString(
      "types:\n  'quoted': {a: 1}\n  plain:\n    a: 1\n  &x anchored: 2\n", "x.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  const ConfigNode types = (*r)["types"];
  EXPECT_EQ(types.KeyError("quoted", "no").message(), "x.yaml:2:4: no");  // past the quote
  EXPECT_EQ(types.KeyError("plain", "no").message(), "x.yaml:3:3: no");
  EXPECT_EQ(types.KeyError("anchored", "no").message(), "x.yaml:5:6: no");
  // No such key, or not a map: at the node itself.
  EXPECT_EQ(types.KeyError("absent", "no").message(), "x.yaml:2:3: no");
  EXPECT_EQ(types["plain"]["a"].KeyError("a", "no").message(), "x.yaml:4:8: no");
}

TEST(ClosestMatchTest, ShortWordsNeedACloseMatch) {
  EXPECT_EQ(ClosestMatch("x", {"or", "and"}), "");
  EXPECT_EQ(ClosestMatch("cnt", {"count", "sum"}), "");
  EXPECT_EQ(ClosestMatch("requird", {"required", "nullable"}), "required");
}

TEST(ConfigNodeTest, KeyTwiceAtTopLevelFailsNamingBothPositions) {
  auto r = ConfigNode::LoadString("features: []\nname: x\nfeatures: [a]\n", "f.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(),
            "f.yaml:3:1: 'features' given twice in this mapping (first at 1:1)");
}

TEST(ConfigNodeTest, KeyTwiceInANestedFlowMappingFails) {
  auto r = ConfigNode::LoadString(
      "features:\n  - {name: a, window: 1h, expr: x}\n  - {name: b, window: 1h, window: 2h}\n",
      "f.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "f.yaml:3:27: 'window' given twice in this mapping (first at 3:15)");
}

TEST(ConfigNodeTest, KeyTwiceInABlockMappingInsideAListFails) {
  auto r = ConfigNode::LoadString(
      "reasons:\n"
      "  - name: a\n"
      "    text: first\n"
      "  - name: b\n"
      "    text: second\n"
      "    \"name\": c\n",
      "vigil.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "vigil.yaml:6:5: 'name' given twice in this mapping (first at 4:5)");
}

TEST(ConfigNodeTest, SameKeyInDifferentMappingsAndSharedAliasesLoad) {
  // `b` shares `a`'s map and `d` contains itself: each is checked once.
  auto r = ConfigNode::LoadString(
      "a: &w {window: 1h, n: {window: 2h}}\n"
      "b: *w\n"
      "c: [{window: 1h}, {window: 2h}]\n"
      "d: &self {e: 1, f: *self}\n",
      "f.yaml");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)["b"]["window"].Text(), "1h");
  EXPECT_EQ((*r)["d"]["f"]["f"]["e"].Text(), "1");
}

TEST(ConfigNodeTest, MissingFileIsNotFound) {
  auto r = ConfigNode::LoadFile("/nonexistent/vigil.yaml");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace vigil::core
