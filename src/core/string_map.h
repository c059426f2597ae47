// Hash maps and sets keyed by std::string that can be looked up with a
// std::string_view without building a string. (Debian's Abseil has its own
// string_view type, so absl's default string hashing does not accept
// std::string_view.)
//
// Thread-safety: as absl::flat_hash_map.
#ifndef VIGIL_CORE_STRING_MAP_H_
#define VIGIL_CORE_STRING_MAP_H_

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/string_view.h"

namespace vigil {

struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const {
    return absl::Hash<absl::string_view>{}(absl::string_view(s.data(), s.size()));
  }
};

struct StringViewEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const { return a == b; }
};

template <typename V>
using StringMap = absl::flat_hash_map<std::string, V, StringViewHash, StringViewEq>;
using StringSet = absl::flat_hash_set<std::string, StringViewHash, StringViewEq>;

}  // namespace vigil

#endif  // VIGIL_CORE_STRING_MAP_H_
