// For tests: a fresh folder, removed with its contents at the end.
//
// Thread-safety: one object per test; distinct objects are independent.
#ifndef VIGIL_CORE_TESTING_TEMP_DIR_H_
#define VIGIL_CORE_TESTING_TEMP_DIR_H_

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace vigil::testing {

// A folder made by mkdtemp under $TMPDIR (or /tmp), removed with its contents
// when the object goes away (kept when VIGIL_KEEP_TEST_DIRS is set, to debug).
// A test cannot go on without it: mkdtemp failing aborts, naming the reason.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/vigil-test.XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::fprintf(stderr, "mkdtemp(%s): %s\n", tmpl.c_str(), std::strerror(errno));
      std::abort();
    }
    path_ = tmpl;
  }
  ~TempDir() {
    if (std::getenv("VIGIL_KEEP_TEST_DIRS") != nullptr) {
      std::fprintf(stderr, "kept %s\n", path_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

}  // namespace vigil::testing

#endif  // VIGIL_CORE_TESTING_TEMP_DIR_H_
