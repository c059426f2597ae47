#include "event/fixed_pattern.h"

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "re2/re2.h"

namespace vigil::event {
namespace {

TEST(FixedPatternTest, IdAndCodeShapesCompile) {
  for (const char* p : {"^e[0-9]{12}$", "^u[0-9]{7}$", "^[A-Z]{2}$", "^d[0-9a-f]{8}$", "^[0-9]{6}$",
                        "abc", "[a-zA-Z_]{3}-[0-9]", "^x[ab]{1000}$"}) {
    EXPECT_TRUE(FixedPattern::Compile(p).has_value()) << p;
  }
  EXPECT_EQ(FixedPattern::Compile("^e[0-9]{12}$")->length(), 13u);
}

TEST(FixedPatternTest, OtherShapesAreLeftToRe2) {
  for (const char* p : {"",       "^$",          "^(a|b)$",
                        "a+",     "a*",          "a?",
                        "a.",     "[^a]",        "\\d{3}",
                        "a{2,3}", "a{0}",        "a{1001}",
                        "[a-]",   "[-a]",        "[]a]",
                        "[z-a]",  "[[:alpha:]]", "(?i)abc",
                        "é",      "a{2}{3}",     "[a",
                        "a{",     "a{x}",        "\\$",
                        "a$b",    "^^a",         "[0-9a-f]{8}|x",
                        "[a\\]]", "a b"}) {
    EXPECT_FALSE(FixedPattern::Compile(p).has_value()) << p;
  }
}

// Every pattern it compiles answers as RE2::FullMatch does, on strings
// made to be near misses: the right length and the wrong one, bytes in and
// out of each class, punctuation, non-ASCII and invalid UTF-8.
TEST(FixedPatternTest, AgreesWithRe2FullMatch) {
  // Each pattern with a text it matches, which near misses start from.
  const std::vector<std::pair<std::string, std::string>> patterns = {
      {"^e[0-9]{12}$", "e000000025004"},
      {"^u[0-9]{7}$", "u0000240"},
      {"^[A-Z]{2}$", "GB"},
      {"^d[0-9a-f]{8}$", "d5ce1ceab"},
      {"^c[0-9a-f]{8}$", "c00ff00ff"},
      {"^[0-9]{6}$", "411111"},
      {"ab-c", "ab-c"},
      {"^[a-cx-z_:]{3}$", "a_z"},
      {"[0-z]{2}", "0z"},
      {"^[A-Za-z0-9]{4}#=@$", "aZ09#=@"},
      {"x-{2}y", "x--y"}};
  const std::string alphabet = "0123456789abcdefxyzABCZ-_:#=@$^[]{}.\\ \n\x7f";
  std::mt19937_64 rng(7);
  for (const auto& [p, example] : patterns) {
    auto fixed = FixedPattern::Compile(p);
    ASSERT_TRUE(fixed.has_value()) << p;
    RE2 re(p);
    ASSERT_TRUE(re.ok()) << p;
    int matches = 0;
    for (int n = 0; n < 20000; ++n) {
      // Start from a string RE2 might accept: each position drawn from the
      // alphabet, then lengths around the pattern's and odd bytes.
      size_t len = fixed->length();
      if (n % 5 == 1) len = rng() % (len + 3);
      std::string s;
      for (size_t i = 0; i < len; ++i) {
        const uint64_t r = rng() % 100;
        if (r < 3) {
          s.push_back(static_cast<char>(0x80 + rng() % 128));  // non-ASCII / invalid UTF-8
        } else if (r < 8) {
          s.push_back(static_cast<char>(rng() % 32));
        } else if (r < 60 && !p.empty()) {
          // A byte the pattern names: likely to match at some position.
          s.push_back(p[rng() % p.size()]);
        } else if (r < 80) {
          s.push_back(static_cast<char>('0' + rng() % 10));
        } else {
          s.push_back(alphabet[rng() % alphabet.size()]);
        }
      }
      if (n % 3 == 0) {  // the example, with at most one byte changed
        s = example;
        if (n % 2 == 0) s[rng() % s.size()] = alphabet[rng() % alphabet.size()];
      }
      const bool want = RE2::FullMatch(s, re);
      matches += want;
      ASSERT_EQ(fixed->FullMatch(s), want) << "pattern " << p << " text '" << s << "'";
    }
    // Both answers were tried: the literal texts match, the rest mostly not.
    EXPECT_GT(matches, 0) << p;
    EXPECT_LT(matches, 20000) << p;
  }
}

TEST(FixedPatternTest, MatchesExactlyTheLengthAndTheClasses) {
  auto f = FixedPattern::Compile("^e[0-9]{12}$");
  ASSERT_TRUE(f.has_value());
  EXPECT_TRUE(f->FullMatch("e000000025004"));
  EXPECT_FALSE(f->FullMatch("e00000002500"));
  EXPECT_FALSE(f->FullMatch("e0000000250041"));
  EXPECT_FALSE(f->FullMatch("E000000025004"));
  EXPECT_FALSE(f->FullMatch("e00000002500x"));
  EXPECT_FALSE(f->FullMatch(std::string("e00000002500\0", 13)));
  EXPECT_FALSE(f->FullMatch(""));
}

}  // namespace
}  // namespace vigil::event
