#include "core/file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/strings.h"

namespace vigil::core {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(path, ": cannot open: ", std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(StrCat(path, ": read error"));
  return std::move(ss).str();
}

}  // namespace vigil::core
