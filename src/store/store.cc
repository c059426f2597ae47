#include "store/store.h"

#include <cstdio>
#include <cstring>
#include <filesystem>

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

std::string StoreFilePath(std::string_view url) {
  constexpr std::string_view kSqlite = "sqlite:";
  if (!StartsWith(url, kSqlite)) return "";
  const std::string_view path = url.substr(kSqlite.size());
  return path == ":memory:" ? "" : std::string(path);
}

absl::Status CheckStoreFile(std::string_view url) {
  const std::string path = StoreFilePath(url);
  std::error_code ec;
  if (path.empty() || !std::filesystem::is_regular_file(path, ec)) return absl::OkStatus();
  if (std::filesystem::file_size(path, ec) == 0 || ec) return absl::OkStatus();
  // An SQLite database starts so (sqlite.org/fileformat.html, "The Database Header").
  char head[16] = {};
  std::FILE* f = std::fopen(path.c_str(), "rb");
  const bool read = f && std::fread(head, 1, sizeof head, f) == sizeof head;
  if (f) std::fclose(f);
  if (!read || std::memcmp(head, "SQLite format 3", 16) != 0) {
    return absl::FailedPreconditionError(StrCat("the store ", path, " is not an SQLite database"));
  }
  return absl::OkStatus();
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
