#include "core/sealed.h"

#include <zlib.h>

#include <cstring>
#include <string>

#include "core/bytes.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigil::core {
namespace {

using ::testing::HasSubstr;

TEST(ByteWriterTest, AStringWrittenInPlaceIsTheSameBytesAsStr) {
  std::string a, b;
  ByteWriter wa(&a), wb(&b);
  wa.U32(7);
  wb.U32(7);
  wa.Str("hello, world");
  const size_t at = wb.BeginStr();
  b.append("hello, ");
  wb.U8('w');  // anything the caller writes in between belongs to the string
  b.append("orld");
  wb.EndStr(at);
  EXPECT_EQ(a, b);
  ByteReader r(b, "test");
  uint32_t v = 0;
  std::string s;
  ASSERT_TRUE(r.U32(&v) && r.Str(&s));
  EXPECT_EQ(s, "hello, world");
  EXPECT_TRUE(r.at_end());
}

TEST(SealTest, SealingInPlaceGivesSealsBytesAfterWhatIsAlreadyThere) {
  const std::string payload(100000, 'p');
  std::string sealed;
  Seal("TESTMAGC", 3, "key", payload, &sealed);

  std::string in_place = "prefix";
  const size_t start = BeginSeal("TESTMAGC", 3, "key", &in_place);
  in_place.append(payload);
  EndSeal(start, &in_place);
  EXPECT_EQ(in_place, "prefix" + sealed);

  auto u = Unseal(std::string_view(in_place).substr(6), "TESTMAGC", 3, "test file");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->key, "key");
  EXPECT_EQ(u->payload, payload);
}

TEST(SealTest, UnsealRefusesAnotherMagicOrVersionAndAnyChangedByte) {
  std::string sealed;
  Seal("TESTMAGC", 3, "key", "the payload", &sealed);
  EXPECT_THAT(Unseal(sealed, "OTHERMAG", 3, "f").status().message(), HasSubstr("bad magic"));
  EXPECT_THAT(Unseal(sealed, "TESTMAGC", 4, "f").status().message(), HasSubstr("version 3"));
  std::string flipped = sealed;
  flipped.back() ^= 1;
  EXPECT_THAT(Unseal(flipped, "TESTMAGC", 3, "f").status().message(), HasSubstr("checksum mismatch"));
  EXPECT_THAT(Unseal(sealed.substr(0, sealed.size() - 1), "TESTMAGC", 3, "f").status().message(),
              HasSubstr("beyond the end"));
}

TEST(SealTest, ADamagedVersionOrKeyIsACorruptFileNotAnotherVersionOrKey) {
  std::string sealed;
  Seal("TESTMAGC", 3, "key", "the payload", &sealed);
  std::string version = sealed;
  version[8] ^= 2;  // version 1
  EXPECT_THAT(Unseal(version, "TESTMAGC", 1, "f").status().message(),
              HasSubstr("checksum mismatch"));
  std::string key = sealed;
  key[8 + 4 + 8] ^= 1;  // "jey"
  EXPECT_THAT(Unseal(key, "TESTMAGC", 3, "f").status().message(), HasSubstr("checksum mismatch"));
}

TEST(SealTest, FilesWhoseChecksumCoversThePayloadAloneAreStillRead) {
  // As vigil sealed them before the checksum covered the version and key.
  std::string sealed;
  Seal("TESTMAGC", 3, "key", "the payload", &sealed);
  const size_t crc_at = 8 + 4 + 8 + 3;
  const uint32_t payload_crc =
      static_cast<uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>("the payload"), 11));
  ASSERT_NE(std::memcmp(sealed.data() + crc_at, &payload_crc, 4), 0);
  std::memcpy(sealed.data() + crc_at, &payload_crc, 4);
  auto u = Unseal(sealed, "TESTMAGC", 3, "f");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->key, "key");
  EXPECT_EQ(u->payload, "the payload");
  EXPECT_THAT(Unseal(sealed, "TESTMAGC", 4, "f").status().message(), HasSubstr("version 3"));
}

}  // namespace
}  // namespace vigil::core
