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

// The checksum of the version (as written: 4 bytes, little-endian) and the
// key. The envelope's checksum covers them and the payload, so that a
// damaged version or key reads as a corrupt file, not as a file of another
// version or spec. (Files sealed before covered the payload alone: still
// read.)
uint32_t HeaderCrc(std::string_view version_bytes, std::string_view key) {
  uLong crc =
      crc32_z(0, reinterpret_cast<const Bytef*>(version_bytes.data()), version_bytes.size());
  return static_cast<uint32_t>(
      crc32_z(crc, reinterpret_cast<const Bytef*>(key.data()), key.size()));
}

uint32_t WholeCrc(uint32_t header_crc, uint32_t payload_crc, size_t payload_size) {
  return static_cast<uint32_t>(
      crc32_combine64(header_crc, payload_crc, static_cast<z_off64_t>(payload_size)));
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
  const size_t at = out->size();
  w.U32(version);
  char version_bytes[4];  // (a copy: appending the key may move *out)
  std::memcpy(version_bytes, out->data() + at, 4);
  w.Str(key);
  // The checksum's slot holds the header's until EndSeal combines it with
  // the payload's.
  w.U32(HeaderCrc(std::string_view(version_bytes, 4), key));
  return w.BeginStr();
}

void EndSeal(size_t start, std::string* out) {
  ByteWriter(out).EndStr(start);
  char* const slot = out->data() + start - 8 - 4;
  uint32_t header_crc;
  std::memcpy(&header_crc, slot, 4);
  const std::string_view payload = std::string_view(*out).substr(start);
  const uint32_t crc = WholeCrc(header_crc, Crc32(payload), payload.size());
  std::memcpy(slot, &crc, 4);
}

absl::StatusOr<Unsealed> Unseal(std::string_view in, std::string_view magic, uint32_t version,
                                std::string_view what) {
  if (in.size() < magic.size() || in.substr(0, magic.size()) != magic) {
    return absl::InvalidArgumentError(StrCat(what, ": not a vigil ", what, " (bad magic)"));
  }
  in.remove_prefix(magic.size());
  ByteReader r(in, what);
  uint32_t got_version = 0, crc = 0;
  Unsealed u;
  if (!r.U32(&got_version) || !r.StrView(&u.key) || !r.U32(&crc) || !r.StrView(&u.payload)) {
    return r.status();
  }
  if (!r.at_end()) return absl::InvalidArgumentError(StrCat(what, ": bytes after the end"));
  const uint32_t payload_crc = Crc32(u.payload);
  if (crc != WholeCrc(HeaderCrc(in.substr(0, 4), u.key), payload_crc, u.payload.size()) &&
      crc != payload_crc) {
    return absl::InvalidArgumentError(StrCat(what, ": checksum mismatch (the file is corrupt)"));
  }
  if (got_version != version) {
    return absl::InvalidArgumentError(
        StrCat(what, ": version ", got_version, "; this vigil reads version ", version));
  }
  return u;
}

}  // namespace vigil::core
