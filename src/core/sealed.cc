#include "core/sealed.h"

#include <zlib.h>

#include <cstring>

#include "core/bytes.h"
#include "core/strings.h"

namespace vigil::core {
namespace {

// crc32_z: crc32 takes a 32-bit length, which would check only the size
// modulo 4 GiB of a larger payload.
uint32_t Crc32(std::string_view s) {
  return static_cast<uint32_t>(crc32_z(0, reinterpret_cast<const Bytef*>(s.data()), s.size()));
}

}  // namespace

void Seal(std::string_view magic, uint32_t version, std::string_view key, std::string_view payload,
          std::string* out) {
  out->clear();
  out->reserve(magic.size() + 4 + 8 + key.size() + 4 + 8 + payload.size());
  const size_t start = BeginSeal(magic, version, key, out);
  out->append(payload);
  EndSeal(start, out);
}

size_t BeginSeal(std::string_view magic, uint32_t version, std::string_view key, std::string* out) {
  out->append(magic);
  ByteWriter w(out);
  w.U32(version);
  w.Str(key);
  w.U32(0);  // the checksum, filled in by EndSeal
  return w.BeginStr();
}

void EndSeal(size_t start, std::string* out) {
  ByteWriter(out).EndStr(start);
  const uint32_t crc = Crc32(std::string_view(*out).substr(start));
  std::memcpy(out->data() + start - 8 - 4, &crc, 4);
}

absl::StatusOr<Unsealed> Unseal(std::string_view in, std::string_view magic, uint32_t version,
                                std::string_view what) {
  if (in.size() < magic.size() || in.substr(0, magic.size()) != magic) {
    return absl::InvalidArgumentError(StrCat(what, ": not a vigil ", what, " (bad magic)"));
  }
  in.remove_prefix(magic.size());
  ByteReader r(in, what);
  uint32_t got_version = 0, crc = 0;
  if (!r.U32(&got_version)) return r.status();
  if (got_version != version) {
    return absl::InvalidArgumentError(
        StrCat(what, ": version ", got_version, "; this vigil reads version ", version));
  }
  Unsealed u;
  if (!r.StrView(&u.key) || !r.U32(&crc) || !r.StrView(&u.payload)) return r.status();
  if (!r.at_end()) return absl::InvalidArgumentError(StrCat(what, ": bytes after the end"));
  if (crc != Crc32(u.payload)) {
    return absl::InvalidArgumentError(StrCat(what, ": checksum mismatch (the file is corrupt)"));
  }
  return u;
}

}  // namespace vigil::core
