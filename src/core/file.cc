#include "core/file.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/strings.h"

namespace vigil::core {

absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(StrCat(path, ": cannot open: ", std::strerror(errno)));
  // A folder opens, and reads as nothing: an empty list or spec, silently.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::FailedPreconditionError(StrCat(path, ": is a directory, not a file"));
  }
  // A read cut short because memory ran out stops the stream quietly
  // (failbit, as for an empty file): it must not pass for the whole file.
  // (Short of the size alone is no sign: files under /sys say 4096 bytes.)
  const bool regular = std::filesystem::is_regular_file(path, ec);
  const uintmax_t size = regular ? std::filesystem::file_size(path, ec) : 0;
  if (max_bytes != SIZE_MAX) {
    // In steps, so that what never ends is not read whole first.
    std::string out;
    char buf[1 << 16];
    while (in.read(buf, sizeof buf) || in.gcount() > 0) {
      if (out.size() + static_cast<size_t>(in.gcount()) > max_bytes) {
        return absl::ResourceExhaustedError(
            StrCat(path, ": more than ", max_bytes, " bytes; not a file of this kind"));
      }
      out.append(buf, static_cast<size_t>(in.gcount()));
    }
    if (in.bad()) return absl::DataLossError(StrCat(path, ": read error"));
    return out;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return absl::DataLossError(StrCat(path, ": read error"));
  const bool stopped = ss.fail();
  std::string out = std::move(ss).str();
  if (stopped && regular && !ec && out.size() < size) {
    return absl::ResourceExhaustedError(
        StrCat(path, ": read ", out.size(), " of its ", size, " bytes (out of memory?)"));
  }
  return out;
}

absl::StatusOr<std::string> WriteTemporary(const std::string& path, std::string_view bytes) {
  const std::string tmp = StrCat(path, ".", ::getpid(), ".tmp");
  auto fail = [&](const std::string& what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::DataLossError(StrCat(what, ": ", std::strerror(err)));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
  if (fd < 0) return fail(StrCat(tmp, ": cannot create"));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      ::close(fd);
      return fail(StrCat(tmp, ": cannot write"));
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    ::close(fd);
    return fail(StrCat(tmp, ": cannot sync"));
  }
  if (::close(fd) != 0) return fail(StrCat(tmp, ": cannot close"));
  return tmp;
}

absl::Status CommitTemporary(const std::string& tmp, const std::string& path) {
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::DataLossError(StrCat(path, ": cannot rename into place: ", std::strerror(err)));
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = std::filesystem::path(".");
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);  // the rename itself; best effort (some file systems refuse)
    ::close(dfd);
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomic(const std::string& path, std::string_view bytes) {
  VIGIL_ASSIGN_OR_RETURN(const std::string tmp, WriteTemporary(path, bytes));
  return CommitTemporary(tmp, path);
}

int RemoveStaleTemporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path p(path);
  const std::string prefix = p.filename().string() + ".";
  std::error_code ec;
  int removed = 0;
  for (const fs::directory_entry& e :
       fs::directory_iterator(p.parent_path().empty() ? fs::path(".") : p.parent_path(), ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() <= prefix.size() + 4 || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - 4, 4, ".tmp") != 0) {
      continue;
    }
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - 4);
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    const auto pid = static_cast<pid_t>(std::stol(digits));
    // kill(pid, 0): ESRCH when no such process. (A reused pid only keeps a
    // stale file until a later start.)
    if (::kill(pid, 0) == 0 || errno != ESRCH) continue;
    if (fs::remove(e.path(), ec)) ++removed;
  }
  return removed;
}

void CloseDescriptorsExcept(int keep, bool use_close_range) {
  if (use_close_range) {
    bool closed = keep <= 3 || ::close_range(3, static_cast<unsigned>(keep - 1), 0) == 0;
    closed = ::close_range(static_cast<unsigned>(std::max(keep + 1, 3)), ~0U, 0) == 0 && closed;
    if (closed) return;
  }
  const int max_fd = static_cast<int>(std::min<long>(::sysconf(_SC_OPEN_MAX), 1 << 20));
  for (int fd = 3; fd < max_fd; ++fd) {
    if (fd != keep) ::close(fd);
  }
}

}  // namespace vigil::core
