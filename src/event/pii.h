// Sensitive values. A schema field marked `pii: hash` is replaced, wherever
// vigil writes it (dead-letter files, logs, reports, decision logs), by a
// keyed HMAC-SHA-256 so that joins on it still work; `pii: redact` by a fixed
// marker. The key comes from an environment variable (VIGIL_PII_KEY by
// default); without it a random per-process key is used, and a warning says
// that hashes will not join across runs.
//
// Thread-safety: PiiHasher is immutable after construction.
#ifndef VIGIL_EVENT_PII_H_
#define VIGIL_EVENT_PII_H_

#include <string>
#include <string_view>

#include "event/schema.h"

namespace vigil::event {

// Lower-case hex SHA-256 of `bytes`.
std::string Sha256Hex(std::string_view bytes);

// SHA-256 over bytes given piece by piece (a file as it is read).
// Thread-safety: one thread.
class Sha256Stream {
 public:
  Sha256Stream();
  ~Sha256Stream();
  Sha256Stream(const Sha256Stream&) = delete;
  Sha256Stream& operator=(const Sha256Stream&) = delete;
  void Update(std::string_view bytes);
  std::string Hex();  // ends the stream

 private:
  void* ctx_;  // EVP_MD_CTX
};

inline constexpr std::string_view kRedacted = "[redacted]";

class PiiHasher {
 public:
  // Reads the key from `env_var`. `*warning` is set when it is unset.
  static PiiHasher FromEnv(const std::string& env_var, std::string* warning);
  explicit PiiHasher(std::string key) : key_(std::move(key)) {}

  // "hmac:" + the first 128 bits of HMAC-SHA-256(key, value), hex.
  std::string Hash(std::string_view value) const;
  // The form of `value` that may be written out for a field in `mode`.
  std::string Mask(std::string_view value, PiiMode mode) const;

 private:
  std::string key_;
};

struct Record;

// How `field` of `rec` must be masked: its own `pii` mode; for a label's
// target_entity.value, the mode of the entity key it names (hash while that
// key is not known yet); for a field the type does not declare (`field`
// null), the mode of any pii field of the same name.
PiiMode EffectivePii(const FieldSpec* field, std::string_view name, const Record* rec,
                     const Schema& schema);

// The record text with every pii field's value masked: CSV by column (using
// `csv_fields`, the field of each column or nullptr), JSON by key wherever the
// key appears, even in text that does not parse.
std::string MaskCsvLine(std::string_view line, const std::vector<const FieldSpec*>& csv_fields,
                        const PiiHasher& hasher);
std::string MaskJsonText(std::string_view text, const EventTypeSpec* type, const Schema& schema,
                         const PiiHasher& hasher);

}  // namespace vigil::event

#endif  // VIGIL_EVENT_PII_H_
