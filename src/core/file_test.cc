#include "core/file.h"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "core/strings.h"
#include "core/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace vigil::core {
namespace {

namespace fs = std::filesystem;

// A process id that was in use and no longer is: a child that has exited.
pid_t DeadPid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

TEST(WriteFileAtomicTest, ReplacesTheFileWholeAndLeavesNoTemporary) {
  testing::TempDir dir;
  const std::string path = dir.File("state.snap");
  ASSERT_TRUE(WriteFileAtomic(path, "old").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "new bytes").ok());
  auto got = ReadFile(path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "new bytes");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

// In two steps: nothing takes the name until the commit, and until then the
// temporary is one a later start removes once its writer is gone.
TEST(WriteFileAtomicTest, ATemporaryTakesTheNameOnlyWhenCommitted) {
  testing::TempDir dir;
  const std::string path = dir.File("state.snap");
  ASSERT_TRUE(WriteFileAtomic(path, "old").ok());
  auto tmp = WriteTemporary(path, "new");
  ASSERT_TRUE(tmp.ok()) << tmp.status();
  EXPECT_EQ(*tmp, StrCat(path, ".", ::getpid(), ".tmp"));
  EXPECT_EQ(*ReadFile(path), "old");
  ASSERT_TRUE(CommitTemporary(*tmp, path).ok());
  EXPECT_EQ(*ReadFile(path), "new");
  EXPECT_FALSE(fs::exists(*tmp));
}

// A process that died while it wrote (a server killed, a save in the
// background killed) leaves its own temporary file; the next start removes
// it, but never that of a process still running, nor anything else.
TEST(WriteFileAtomicTest, StaleTemporariesOfDeadProcessesAreRemovedAndNothingElse) {
  testing::TempDir dir;
  const std::string path = dir.File("state.snap");
  const std::string dead = StrCat(path, ".", DeadPid(), ".tmp");
  const std::string mine = StrCat(path, ".", ::getpid(), ".tmp");
  for (const std::string& f : {dead, mine, path, path + ".tmp", path + ".x1.tmp", dir.File("other.1.tmp")}) {
    std::ofstream(f) << "x";
  }
  EXPECT_EQ(RemoveStaleTemporaries(path), 1);
  EXPECT_FALSE(fs::exists(dead));
  for (const std::string& f : {mine, path, path + ".tmp", path + ".x1.tmp", dir.File("other.1.tmp")}) {
    EXPECT_TRUE(fs::exists(f)) << f;
  }
}

// A folder opens and reads as nothing: said, not read as an empty file
// (an empty list of deny-listed domains, silently).
// Out of memory, the stream just stops reading: what it read is not the
// file (a saved state read so was taken for a corrupt one).
TEST(ReadFileTest, AReadCutShortByMemoryIsAnErrorNotTheFile) {
  testing::TempDir dir;
  const std::string path = dir.File("big");
  {
    std::ofstream out(path, std::ios::binary);
    const std::string block(1 << 20, 'x');
    for (int i = 0; i < 64; ++i) out << block;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    long pages = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%ld", &pages) != 1) pages = 0;
      std::fclose(f);
    }
    // Room for the file once, not for the stream's growing copies of it.
    const rlim_t limit = static_cast<rlim_t>(pages) * 4096 + (80 << 20);
    const rlimit lim{limit, limit};
    if (pages == 0 || setrlimit(RLIMIT_AS, &lim) != 0) _exit(3);
    const absl::StatusOr<std::string> r = ReadFile(path);
    if (r.ok()) _exit(r->size() == (64u << 20) ? 1 : 2);  // 1: it fit after all
    _exit(r.status().code() == absl::StatusCode::kResourceExhausted ? 0 : 4);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_NE(WEXITSTATUS(status), 2) << "a part of the file passed for the whole";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: it fit; 3: no limit set; 4: another error";
}

TEST(ReadFileTest, ADirectoryIsAnErrorNotAnEmptyFile) {
  vigil::testing::TempDir dir;
  auto got = ReadFile(dir.path());
  ASSERT_FALSE(got.ok());
  EXPECT_NE(std::string(got.status().message()).find("is a directory"), std::string::npos)
      << got.status();
}

}  // namespace
}  // namespace vigil::core

namespace vigil::core {
namespace {

// In a child (its descriptors are its own): opens some, low and high,
// closes all but `keep` and says by its exit status whether exactly those
// went (0), or which survived or went wrongly (the descriptor, < 255).
int CloseInChild(bool use_close_range) {
  const pid_t pid = fork();
  if (pid == 0) {
    int fds[4];
    for (int& fd : fds) fd = ::dup(1);
    const int high = ::fcntl(1, F_DUPFD, 200);
    const int keep = fds[1];
    CloseDescriptorsExcept(keep, use_close_range);
    if (::fcntl(keep, F_GETFD) < 0) _exit(keep);
    for (int fd : {fds[0], fds[2], fds[3], high}) {
      if (::fcntl(fd, F_GETFD) >= 0) _exit(fd);
    }
    for (int fd : {0, 1, 2}) {
      if (::fcntl(fd, F_GETFD) < 0) _exit(fd);
    }
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(CloseDescriptorsExceptTest, ClosesAllButTheOneKeptAndTheStandardThree) {
  EXPECT_EQ(CloseInChild(/*use_close_range=*/true), 0);
}

// The way of kernels before 5.9, which have no close_range(2).
TEST(CloseDescriptorsExceptTest, OneByOneClosesTheSame) {
  EXPECT_EQ(CloseInChild(/*use_close_range=*/false), 0);
}

}  // namespace
}  // namespace vigil::core
