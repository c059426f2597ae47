// API keys: bearer tokens with a role, kept only as their SHA-256 (in the
// store, or a keys file the configuration names), compared in constant time;
// and the optional per-key rate limit (a token bucket per key).
//
// A key is "vk_" + 64 hex digits (256 random bits from OpenSSL's RAND_bytes).
// Roles: score (POST /v1/events, GET /v1/decisions), label (POST /v1/labels),
// admin (everything, including /v1/admin/*). /metrics takes any role.
//
// Thread-safety: Authenticate and Allow from any thread; Load replaces the
// key set under a lock.
#ifndef VIGIL_SERVE_AUTH_H_
#define VIGIL_SERVE_AUTH_H_

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/status.h"
#include "store/store.h"

namespace vigil::serve {

enum class Role : uint8_t { kScore, kLabel, kAdmin };
const char* RoleName(Role r);
std::optional<Role> ParseRole(std::string_view s);

// A new key: "vk_" + 64 lowercase hex digits.
absl::StatusOr<std::string> NewApiKey();
// Lowercase hex SHA-256 of `key`.
std::string KeyHash(std::string_view key);

// Keys file: one key per line, "<sha256 hex> <role> [name]"; '#' comments.
// NotFound when the file does not exist, FailedPrecondition when it cannot be
// opened, DataLoss when reading fails, InvalidArgument naming the line of a
// malformed key: never a partial key set.
absl::StatusOr<std::vector<store::KeyRow>> ReadKeysFile(const std::string& path);
absl::Status AppendKeysFile(const std::string& path, const store::KeyRow& row);

class Auth {
 public:
  struct Limits {
    double rate_per_key = 0;  // requests/s; 0 = off
    double burst = 0;         // 0 = one second's worth
  };
  explicit Auth(Limits limits) : limits_(limits) {}

  void SetKeys(std::vector<store::KeyRow> keys);
  size_t num_keys() const;

  enum class Result { kOk, kMissing, kUnknown, kForbidden };
  // Checks "Authorization: Bearer <key>" against the keys and `needed`
  // (admin passes every check). `key_id` gets the matching key's hash and
  // `role`, when not null, its role.
  Result Authenticate(std::string_view authorization_header, Role needed, std::string* key_id,
                      Role* role = nullptr) const;

  // The rate limit: false when `key_id` has no token left (429). Always true
  // when the limit is off.
  bool Allow(const std::string& key_id);

 private:
  struct Key {
    unsigned char hash[32];
    Role role;
  };
  struct Bucket {
    double tokens = 0;
    std::chrono::steady_clock::time_point last;
  };
  Limits limits_;
  mutable std::mutex mu_;
  std::vector<Key> keys_;
  absl::flat_hash_map<std::string, Bucket> buckets_;
};

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_AUTH_H_
