#include "store/store.h"

#include "core/strings.h"
#include "store/sqlite_store.h"

namespace vigil::store {

absl::StatusOr<std::unique_ptr<Store>> OpenStore(std::string_view url) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (StartsWith(url, kSqlite)) {
    const std::string_view path = url.substr(kSqlite.size());
    if (path.empty()) {
      return absl::InvalidArgumentError(
          StrCat("store URL '", url,
                 "': no file path after 'sqlite:' (e.g. sqlite:/var/lib/vigil/vigil.db)"));
    }
    // "sqlite://host/x.db" reads like a URL with a host; as a path it would
    // silently mean "/host/x.db". A path of three or more slashes is fine.
    if (StartsWith(path, "//") && !StartsWith(path, "///")) {
      return absl::InvalidArgumentError(
          StrCat("store URL '", url,
                 "': sqlite: takes a file path, not a host (write sqlite:PATH, e.g. "
                 "sqlite:/var/lib/vigil/vigil.db)"));
    }
    return OpenSqliteStore(std::string(url), std::string(path));
  }
  return absl::InvalidArgumentError(
      StrCat("store URL '", url, "': unsupported scheme; supported: sqlite:PATH"));
}

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (const char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsKeyRole(std::string_view role) {
  return role == "score" || role == "label" || role == "admin";
}

}  // namespace vigil::store
