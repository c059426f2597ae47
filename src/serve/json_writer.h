// Appending JSON text to a reused buffer, for decision documents: no
// allocation once the buffer has grown, numbers as shortest round-trip
// decimals, non-finite numbers as null.
//
// Thread-safety: free functions over the caller's buffer.
#ifndef VIGIL_SERVE_JSON_WRITER_H_
#define VIGIL_SERVE_JSON_WRITER_H_

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/numbers.h"

namespace vigil::serve {

// `s` as a JSON string, quotes included; control characters escaped.
inline void AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

inline void AppendJsonNumber(double v, std::string* out) {
  if (!std::isfinite(v)) {
    out->append("null");
    return;
  }
  core::AppendShortestDouble(v, out);
}

inline void AppendJsonInt(int64_t v, std::string* out) { out->append(std::to_string(v)); }

// `"key":` with a leading comma unless it opens the object.
inline void AppendKey(std::string_view key, std::string* out) {
  if (out->back() != '{' && out->back() != '[') out->push_back(',');
  AppendJsonString(key, out);
  out->push_back(':');
}

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_JSON_WRITER_H_
