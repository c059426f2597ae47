#include "serve/auth.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "core/file.h"
#include "core/strings.h"

namespace vigil::serve {
namespace {

std::string Hex(const unsigned char* p, size_t n) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(p), n));
}

bool FromHex(std::string_view h, unsigned char* out) {
  if (h.size() != 64) return false;
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < 32; ++i) {
    int a = v(h[2 * i]), b = v(h[2 * i + 1]);
    if (a < 0 || b < 0) return false;
    out[i] = static_cast<unsigned char>(a * 16 + b);
  }
  return true;
}

}  // namespace

const char* RoleName(Role r) {
  switch (r) {
    case Role::kScore: return "score";
    case Role::kLabel: return "label";
    case Role::kAdmin: return "admin";
  }
  return "?";
}

std::optional<Role> ParseRole(std::string_view s) {
  if (s == "score") return Role::kScore;
  if (s == "label") return Role::kLabel;
  if (s == "admin") return Role::kAdmin;
  return std::nullopt;
}

absl::StatusOr<std::string> NewApiKey() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return absl::InternalError("OpenSSL RAND_bytes failed");
  return "vk_" + Hex(bytes, sizeof bytes);
}

std::string KeyHash(std::string_view key) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), md);
  return Hex(md, sizeof md);
}

absl::StatusOr<std::vector<store::KeyRow>> ReadKeysFile(const std::string& path) {
  std::vector<store::KeyRow> rows;
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError(
        StrCat("cannot read the keys file ", path, ": it is a directory"));
  }
  std::ifstream in(path);
  if (!in) {
    // A missing file is told apart from one that cannot be read: only the
    // first may mean "no keys yet" (`vigil keys create` makes the file), and
    // only at start (HttpServer::LoadKeys decides).
    const int err = errno;
    if (err == ENOENT)
      return absl::NotFoundError(StrCat("the keys file ", path, " does not exist"));
    return absl::FailedPreconditionError(
        StrCat("cannot read the keys file ", path, ": ", std::strerror(err)));
  }
  std::string line;
  int no = 0;
  absl::flat_hash_map<std::string, int> line_of;  // hash -> its line
  while (std::getline(in, line)) {
    ++no;
    std::string_view l = line;
    if (no == 1) l = StripUtf8Bom(l);
    while (!l.empty() && (l.back() == '\r' || l.back() == ' ')) l.remove_suffix(1);
    if (l.empty() || l[0] == '#') continue;
    size_t a = l.find(' ');
    if (a == std::string_view::npos) return absl::InvalidArgumentError(StrCat(path, ":", no, ": expected '<sha256> <role> [name]'"));
    size_t b = l.find(' ', a + 1);
    store::KeyRow r;
    r.sha256_hex = std::string(l.substr(0, a));
    r.role = std::string(l.substr(a + 1, b == std::string_view::npos ? std::string_view::npos : b - a - 1));
    if (b != std::string_view::npos) r.name = std::string(l.substr(b + 1));
    unsigned char tmp[32];
    if (!FromHex(r.sha256_hex, tmp)) return absl::InvalidArgumentError(StrCat(path, ":", no, ": the key hash must be 64 lowercase hex digits"));
    if (!ParseRole(r.role)) return absl::InvalidArgumentError(StrCat(path, ":", no, ": role '", r.role, "': score, label or admin"));
    // One key, one role: which line would win is not for the file's order to say.
    if (auto [it, added] = line_of.try_emplace(r.sha256_hex, no); !added) {
      return absl::InvalidArgumentError(StrCat(path, ":", no, ": the key hash of line ", it->second,
                                               " again; a key has one line"));
    }
    rows.push_back(std::move(r));
  }
  // A read error (a folder, an I/O error) must not pass for the end of the
  // file: the keys before it would replace every key.
  if (in.bad())
    return absl::DataLossError(StrCat("cannot read the keys file ", path, " after line ", no));
  return rows;
}

absl::Status AppendKeysFile(const std::string& path, const store::KeyRow& row) {
  FILE* f = std::fopen(path.c_str(), "a+");
  if (!f) {
    return absl::FailedPreconditionError(
        StrCat("cannot open the keys file ", path, " for appending: ", std::strerror(errno)));
  }
  // A file edited by hand may lack its last line break: the new key gets a
  // line of its own, not the end of the last one's name.
  bool newline_first = false;
  if (std::fseek(f, -1, SEEK_END) == 0) newline_first = std::fgetc(f) != '\n';
  std::string line = StrCat(newline_first ? "\n" : "", row.sha256_hex, " ", row.role,
                            row.name.empty() ? "" : " ", row.name, "\n");
  bool ok = std::fwrite(line.data(), 1, line.size(), f) == line.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return absl::DataLossError(StrCat("cannot write the keys file ", path));
  return absl::OkStatus();
}

void Auth::SetKeys(std::vector<store::KeyRow> rows) {
  std::vector<Key> keys;
  for (const store::KeyRow& r : rows) {
    Key k;
    auto role = ParseRole(r.role);
    if (!role || !FromHex(r.sha256_hex, k.hash)) continue;
    k.role = *role;
    keys.push_back(k);
  }
  std::lock_guard<std::mutex> lock(mu_);
  keys_ = std::move(keys);
}

size_t Auth::num_keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  return keys_.size();
}

Auth::Result Auth::Authenticate(std::string_view header, Role needed, std::string* key_id,
                                Role* role) const {
  // "Bearer" 1*SP key; the scheme without regard to case (RFC 7235 2.1).
  constexpr absl::string_view kBearer = "Bearer";
  if (header.size() <= kBearer.size() ||
      !absl::StartsWithIgnoreCase(absl::string_view(header.data(), header.size()), kBearer) ||
      header[kBearer.size()] != ' ') {
    return Result::kMissing;
  }
  std::string_view key = header.substr(kBearer.size());
  while (!key.empty() && key.front() == ' ') key.remove_prefix(1);
  if (key.empty()) return Result::kMissing;
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), md);
  std::lock_guard<std::mutex> lock(mu_);
  // Every key is compared, in constant time, whatever matched before.
  const Key* found = nullptr;
  for (const Key& k : keys_) {
    if (CRYPTO_memcmp(k.hash, md, sizeof md) == 0) found = &k;
  }
  if (!found) return Result::kUnknown;
  *key_id = Hex(md, 8);
  if (role) *role = found->role;
  if (found->role == Role::kAdmin || found->role == needed) return Result::kOk;
  return Result::kForbidden;
}

bool Auth::Allow(const std::string& key_id) {
  if (limits_.rate_per_key <= 0) return true;
  // One second's worth by default, but never less than one request: a rate
  // below 1/s would otherwise never hold a whole token.
  double burst = limits_.burst > 0 ? limits_.burst : std::max(1.0, limits_.rate_per_key);
  auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(key_id);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = burst;
  } else {
    double dt = std::chrono::duration<double>(now - b.last).count();
    b.tokens = std::min(burst, b.tokens + dt * limits_.rate_per_key);
  }
  b.last = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

}  // namespace vigil::serve
