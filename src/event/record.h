// A parsed event: compact, typed values in a vector indexed by field, with
// strings as views into the reader's buffer (no std::string per field) and
// entity keys hashed. A Record is reused from one event to the next; its
// views stay valid until the next Decode call on the Validator that filled it.
//
// Thread-safety: none; one Record per thread.
#ifndef VIGIL_EVENT_RECORD_H_
#define VIGIL_EVENT_RECORD_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/hash.h"
#include "event/decimal.h"
#include "event/schema.h"

namespace vigil::event {

struct Value {
  enum class State : uint8_t { kMissing, kNull, kPresent };
  State state = State::kMissing;
  bool b = false;
  int64_t i = 0;      // int; bool as 0/1; timestamp in ms
  double d = 0;       // float; decimal and int also as double
  Decimal dec;        // decimal
  std::string_view text;  // strings unescaped; other types their literal text
  uint64_t hash = 0;  // string, enum: core::Hash64(text); int, bool: core::HashInt(i)

  bool present() const { return state == State::kPresent; }
};

struct Record {
  const EventTypeSpec* type = nullptr;
  int64_t record_no = 0;  // 1-based count of records read (CSV: data rows)
  int64_t line_no = 0;    // 1-based line where the record starts
  int64_t time_ms = 0;
  // Also set when a JSON record is rejected before its type is known (no
  // event_type, or an unknown one) and has a string under the name of some
  // type's id field.
  std::string_view event_id;
  uint64_t id_hash = 0;
  // By FieldSpec::index. Only the first type->fields.size() entries belong
  // to this record: the vector is sized for the largest type and reused, so
  // entries past them hold an earlier record's leftovers.
  std::vector<Value> values;
  std::string_view raw;       // the record's text

  const Value& operator[](int field) const { return values[static_cast<size_t>(field)]; }
};

// The rules a record can break. Names are stable: reports and dead-letter
// files use them.
enum class Rule : uint8_t {
  kMalformedJson,
  kMalformedCsv,
  kColumnCount,
  kInvalidUtf8,
  kRecordTooLarge,
  kUnknownEventType,
  kDuplicateField,
  kUnknownField,
  kRequired,
  kNotNull,
  kType,
  kNotFinite,
  kMin,
  kMax,
  kMaxLength,
  kPattern,
  kAllowed,
  kTimestamp,
  kTimeBounds,
  kDuplicateEventId,
  kLabelTarget,
  // Warnings (never reject):
  kOutlier,
  kUnseenCategory,
};
inline constexpr int kRuleCount = static_cast<int>(Rule::kUnseenCategory) + 1;
const char* RuleName(Rule r);

// Whether field `fi` (-1: the type has none) holds a value that keys an
// entity, links an identity node or is counted: present and, for a string
// or an enum, not "" (a client that sends "" for a device it does not know,
// as an empty CSV cell is absent: else every such event would be one
// entity). Hot path.
inline bool HasKeyValue(const Record& rec, int fi) noexcept {
  if (fi < 0 || !rec[fi].present()) return false;
  if (!rec[fi].text.empty()) return true;
  const FieldType ft = rec.type->fields[static_cast<size_t>(fi)].type;
  return ft != FieldType::kString && ft != FieldType::kEnum;
}

// The hash of field `fi`'s value as a key (an entity, an identity node, a
// value counted by distinct_count): Value::hash for strings, enums, ints and
// bools; for floats, decimals and timestamps, which carry none, the number's
// (core::HashDouble: equal numbers, one key). REQUIRES: the field is present.
inline uint64_t KeyHash(const Record& rec, int fi) noexcept {
  const Value& v = rec[fi];
  switch (rec.type->fields[static_cast<size_t>(fi)].type) {
    case FieldType::kString:
    case FieldType::kEnum:
    case FieldType::kInt:
    case FieldType::kBool:
      return v.hash;
    default:
      return core::HashDouble(v.d);
  }
}

// KeyHash for a value of a field of `type` written as `text`, for keys that
// arrive as text elsewhere (a label's target_entity.value, a stop list), so
// that they meet the records they name. Hot path: no allocation.
uint64_t KeyHashOfText(FieldType type, std::string_view text) noexcept;
// Whether a key written as text reads alike for fields of types `a` and `b`
// (KeyHashOfText): strings and enums (the text's hash), floats and decimals
// (the number's); any other type only with itself (an int reads "true" as
// 0, a float reads a timestamp's text as its year).
bool KeyTextAlike(FieldType a, FieldType b) noexcept;

struct Violation {
  Rule rule;
  std::string field;   // empty for whole-record rules
  std::string value;   // offending value, truncated, masked when pii
  std::string reason;  // a sentence a user can act on
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_RECORD_H_
