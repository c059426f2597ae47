// Appending JSON text to a reused buffer, for decision documents: no
// allocation once the buffer has grown, numbers as shortest round-trip
// decimals, non-finite numbers as null.
//
// Thread-safety: free functions over the caller's buffer.
#ifndef VIGIL_SERVE_JSON_WRITER_H_
#define VIGIL_SERVE_JSON_WRITER_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/numbers.h"

namespace vigil::serve {

// `s` as a JSON string, quotes included; control characters escaped. The
// runs between characters to escape (usually the whole text) are appended
// whole: a character at a time took about 8 % of Decide.
inline void AppendJsonString(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  size_t run = 0;  // start of the run not yet appended
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default: {
        const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
        out->append(u, sizeof u);
      }
    }
  }
  out->append(s.data() + run, s.size() - run);
  out->push_back('"');
}

inline void AppendJsonNumber(double v, std::string* out) {
  if (!std::isfinite(v)) {
    out->append("null");
    return;
  }
  core::AppendShortestDouble(v, out);
}

inline void AppendJsonInt(int64_t v, std::string* out) {
  char buf[20];
  out->append(buf, static_cast<size_t>(core::WriteInt64(v, buf) - buf));
}

// `"key":` with a leading comma unless it opens the object.
inline void AppendKey(std::string_view key, std::string* out) {
  if (out->back() != '{' && out->back() != '[') out->push_back(',');
  AppendJsonString(key, out);
  out->push_back(':');
}

// The same for a key written in the source ("event_id"), which holds no
// character to escape: appended in one piece, without looking for one.
template <size_t N>
inline void AppendKey(const char (&key)[N], std::string* out) {
  char buf[N + 3];
  size_t n = 0;
  if (out->back() != '{' && out->back() != '[') buf[n++] = ',';
  buf[n++] = '"';
  std::memcpy(buf + n, key, N - 1);
  n += N - 1;
  buf[n++] = '"';
  buf[n++] = ':';
  out->append(buf, n);
}

}  // namespace vigil::serve

#endif  // VIGIL_SERVE_JSON_WRITER_H_
