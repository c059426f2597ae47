// API keys (serve/auth.h): the key format, its hash, the keys file, what
// Authenticate answers for each role, and the per-key token bucket.
#include "serve/auth.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "core/testing/temp_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::serve {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

class KeysFileTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = (dir_ / "keys.txt").string(); }
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }

  vigil::testing::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  std::string path_;
};

TEST(ApiKeyTest, IsVkAnd64LowercaseHexDigitsAndNeverRepeats) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    auto key = NewApiKey();
    ASSERT_TRUE(key.ok()) << key.status();
    EXPECT_THAT(*key, ::testing::MatchesRegex("vk_[0-9a-f]{64}"));
    EXPECT_TRUE(seen.insert(*key).second);
  }
}

TEST(ApiKeyTest, HashesToTheLowercaseHexSha256) {
  // SHA-256("abc") and SHA-256("") (FIPS 180-2).
  EXPECT_EQ(KeyHash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(KeyHash(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(ApiKeyTest, ParsesAndNamesRoles) {
  for (Role r : {Role::kScore, Role::kLabel, Role::kAdmin}) EXPECT_EQ(ParseRole(RoleName(r)), r);
  EXPECT_EQ(ParseRole("Admin"), std::nullopt);
  EXPECT_EQ(ParseRole(""), std::nullopt);
}

TEST_F(KeysFileTest, RoundTripsKeysWithRolesAndNames) {
  store::KeyRow a{.sha256_hex = KeyHash("vk_a"), .role = "score", .name = "checkout service"};
  store::KeyRow b{.sha256_hex = KeyHash("vk_b"), .role = "admin", .name = ""};
  ASSERT_TRUE(AppendKeysFile(path_, a).ok());
  ASSERT_TRUE(AppendKeysFile(path_, b).ok());
  auto rows = ReadKeysFile(path_);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].sha256_hex, a.sha256_hex);
  EXPECT_EQ((*rows)[0].role, "score");
  EXPECT_EQ((*rows)[0].name, "checkout service");
  EXPECT_EQ((*rows)[1].sha256_hex, b.sha256_hex);
  EXPECT_EQ((*rows)[1].role, "admin");
  EXPECT_EQ((*rows)[1].name, "");
}

TEST_F(KeysFileTest, SkipsCommentsBlankLinesAndLineEndSpaces) {
  Write("# keys of the test\n\n" + KeyHash("vk_a") + " label  \r\n   \n" + KeyHash("vk_b") + " score ops team\n");
  auto rows = ReadKeysFile(path_);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].role, "label");
  EXPECT_EQ((*rows)[1].name, "ops team");
}

// Not "no keys": the caller decides what a missing file means (at start, no
// keys yet; on a reload, an error that keeps the keys it had).
TEST_F(KeysFileTest, AMissingFileIsNotFoundNamingIt) {
  const std::string path = (dir_ / "none.txt").string();
  absl::Status s = ReadKeysFile(path).status();
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr(path));
  EXPECT_THAT(Msg(s), HasSubstr("does not exist"));
}

TEST_F(KeysFileTest, AFileThatCannotBeReadIsAnErrorNotAnEmptyKeySet) {
  // A folder opens, and fails at the first read.
  fs::create_directory(dir_ / "keys.d");
  const std::string path = (dir_ / "keys.d").string();
  absl::Status s = ReadKeysFile(path).status();
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(absl::IsNotFound(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr("cannot read the keys file " + path));
  EXPECT_THAT(Msg(s), HasSubstr("it is a directory"));
}

TEST_F(KeysFileTest, NamesTheLineOfAMalformedKey) {
  const std::string good = KeyHash("vk_a") + " score\n";
  Write("# header\n" + good + KeyHash("vk_b") + "\n");
  absl::Status s = ReadKeysFile(path_).status();
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(Msg(s), HasSubstr(path_ + ":3:"));
  EXPECT_THAT(Msg(s), HasSubstr("expected '<sha256> <role> [name]'"));

  Write(good + "ABCDEF score\n");
  s = ReadKeysFile(path_).status();
  EXPECT_THAT(Msg(s), HasSubstr(path_ + ":2:"));
  EXPECT_THAT(Msg(s), HasSubstr("64 lowercase hex digits"));

  std::string upper = KeyHash("vk_b");
  for (char& c : upper) c = static_cast<char>(std::toupper(c));
  Write(good + KeyHash("vk_c") + " label\n" + upper + " score\n");
  EXPECT_THAT(Msg(ReadKeysFile(path_).status()), HasSubstr(path_ + ":3:"));

  // One key, one line: a second role for it is not for the order to settle.
  Write(good + KeyHash("vk_c") + " label\n" + KeyHash("vk_a") + " admin\n");
  s = ReadKeysFile(path_).status();
  EXPECT_THAT(Msg(s), HasSubstr(path_ + ":3: the key hash of line 1 again"));

  Write(good + KeyHash("vk_b") + " root\n");
  s = ReadKeysFile(path_).status();
  EXPECT_THAT(Msg(s), HasSubstr(path_ + ":2:"));
  EXPECT_THAT(Msg(s), HasSubstr("role 'root'"));
}

// A file edited by hand: a BOM before the first line is no part of the
// hash, and a last line without its line break keeps its name when a key is
// appended.
TEST_F(KeysFileTest, ReadsAHandEditedFileAndAppendsOnALineOfItsOwn) {
  Write("\xEF\xBB\xBF" + KeyHash("vk_a") + " score checkout");
  store::KeyRow b{.sha256_hex = KeyHash("vk_b"), .role = "admin", .name = ""};
  ASSERT_TRUE(AppendKeysFile(path_, b).ok());
  auto rows = ReadKeysFile(path_);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].sha256_hex, KeyHash("vk_a"));
  EXPECT_EQ((*rows)[0].name, "checkout");
  EXPECT_EQ((*rows)[1].sha256_hex, KeyHash("vk_b"));
  EXPECT_EQ((*rows)[1].role, "admin");
}

TEST_F(KeysFileTest, AppendingToAnUnwritablePlaceFailsNamingIt) {
  const std::string path = (dir_ / "no-such-dir" / "keys.txt").string();
  absl::Status s = AppendKeysFile(path, {.sha256_hex = KeyHash("x"), .role = "score", .name = ""});
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(Msg(s), HasSubstr(path));
}

class AuthenticateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auth_.SetKeys({{.sha256_hex = KeyHash("vk_score"), .role = "score", .name = ""},
                   {.sha256_hex = KeyHash("vk_label"), .role = "label", .name = ""},
                   {.sha256_hex = KeyHash("vk_admin"), .role = "admin", .name = ""}});
  }
  Auth::Result Check(std::string_view header, Role needed) {
    id_.clear();
    return auth_.Authenticate(header, needed, &id_);
  }
  Auth auth_{Auth::Limits{}};
  std::string id_;
};

TEST_F(AuthenticateTest, AcceptsAKeyForItsOwnRoleAndGivesItsId) {
  EXPECT_EQ(auth_.num_keys(), 3u);
  EXPECT_EQ(Check("Bearer vk_score", Role::kScore), Auth::Result::kOk);
  // The id is the start of the key's hash: never the key itself.
  EXPECT_EQ(id_, KeyHash("vk_score").substr(0, 16));
  EXPECT_EQ(Check("Bearer vk_label", Role::kLabel), Auth::Result::kOk);
  EXPECT_EQ(id_, KeyHash("vk_label").substr(0, 16));
}

TEST_F(AuthenticateTest, AnswersMissingWithoutABearerKey) {
  for (const char* h :
       {"", "Bearer", "Bearer ", "Bearer   ", "Bearervk_score", "Basic dms6c2NvcmU=", "vk_score"}) {
    EXPECT_EQ(Check(h, Role::kScore), Auth::Result::kMissing) << "'" << h << "'";
  }
}

// RFC 7235: the scheme is case-insensitive, and one or more spaces follow it.
TEST_F(AuthenticateTest, AcceptsTheBearerSchemeInAnyCase) {
  for (const char* h :
       {"bearer vk_score", "BEARER vk_score", "bEaReR vk_score", "Bearer  vk_score"}) {
    EXPECT_EQ(Check(h, Role::kScore), Auth::Result::kOk) << "'" << h << "'";
  }
}

TEST_F(AuthenticateTest, AnswersUnknownForAKeyItDoesNotHold) {
  EXPECT_EQ(Check("Bearer vk_nobody", Role::kScore), Auth::Result::kUnknown);
  EXPECT_EQ(Check("Bearer vk_score ", Role::kScore), Auth::Result::kUnknown);  // not trimmed
  EXPECT_EQ(Check("Bearer " + KeyHash("vk_score"), Role::kScore), Auth::Result::kUnknown);  // the hash is no key
  EXPECT_EQ(id_, "");
}

TEST_F(AuthenticateTest, ForbidsAKeyOfAnotherRoleAndLetsAdminEverywhere) {
  EXPECT_EQ(Check("Bearer vk_score", Role::kLabel), Auth::Result::kForbidden);
  EXPECT_EQ(Check("Bearer vk_score", Role::kAdmin), Auth::Result::kForbidden);
  EXPECT_EQ(Check("Bearer vk_label", Role::kScore), Auth::Result::kForbidden);
  EXPECT_EQ(Check("Bearer vk_label", Role::kAdmin), Auth::Result::kForbidden);
  for (Role r : {Role::kScore, Role::kLabel, Role::kAdmin}) {
    EXPECT_EQ(Check("Bearer vk_admin", r), Auth::Result::kOk) << RoleName(r);
  }
}

TEST_F(AuthenticateTest, ForgetsKeysOnSetKeysAndSkipsMalformedRows) {
  auth_.SetKeys({{.sha256_hex = KeyHash("vk_new"), .role = "score", .name = ""},
                 {.sha256_hex = "not-a-hash", .role = "admin", .name = ""},
                 {.sha256_hex = KeyHash("vk_bad_role"), .role = "root", .name = ""}});
  EXPECT_EQ(auth_.num_keys(), 1u);
  EXPECT_EQ(Check("Bearer vk_new", Role::kScore), Auth::Result::kOk);
  EXPECT_EQ(Check("Bearer vk_score", Role::kScore), Auth::Result::kUnknown);
  EXPECT_EQ(Check("Bearer vk_bad_role", Role::kScore), Auth::Result::kUnknown);
}

TEST(RateLimitTest, AllowsEverythingWhenOff) {
  Auth auth(Auth::Limits{});
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(auth.Allow("k"));
}

// A bucket of `burst` tokens refilled at 1 per second: the test takes far
// less than a second, so exactly `burst` requests pass.
TEST(RateLimitTest, AllowsExactlyTheBurstAtOnceThenRefuses) {
  Auth auth(Auth::Limits{.rate_per_key = 1, .burst = 3});
  EXPECT_TRUE(auth.Allow("k"));
  EXPECT_TRUE(auth.Allow("k"));
  EXPECT_TRUE(auth.Allow("k"));
  EXPECT_FALSE(auth.Allow("k"));
  EXPECT_FALSE(auth.Allow("k"));
  // Buckets are per key.
  EXPECT_TRUE(auth.Allow("other"));
}

TEST(RateLimitTest, DefaultsTheBurstToOneSecondsWorth) {
  Auth auth(Auth::Limits{.rate_per_key = 5, .burst = 0});
  int allowed = 0;
  for (int i = 0; i < 20; ++i) allowed += auth.Allow("k");
  // 5 at once, and at most one more refilled while the loop ran (5 per second).
  EXPECT_GE(allowed, 5);
  EXPECT_LE(allowed, 6);
}

// One request every two seconds: a bucket of one second's worth (half a
// token) would never hold a whole one.
TEST(RateLimitTest, AllowsOneRequestAtOnceAtARateBelowOnePerSecond) {
  Auth auth(Auth::Limits{.rate_per_key = 0.5, .burst = 0});
  EXPECT_TRUE(auth.Allow("k"));
  EXPECT_FALSE(auth.Allow("k"));
}

TEST(RateLimitTest, RefillsAtTheRate) {
  // 1000 per second, a bucket of 1: empty after one request, full again
  // after a few milliseconds.
  Auth auth(Auth::Limits{.rate_per_key = 1000, .burst = 1});
  ASSERT_TRUE(auth.Allow("k"));
  auto start = std::chrono::steady_clock::now();
  bool refilled = false;
  while (!refilled && std::chrono::steady_clock::now() - start < std::chrono::seconds(5)) {
    refilled = auth.Allow("k");
  }
  EXPECT_TRUE(refilled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

}  // namespace
}  // namespace vigil::serve
