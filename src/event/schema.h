// An event schema: the event types a deployment accepts, their fields with
// types and rules, and the roles fields play (id, time, entity keys, amount,
// label, ground truth). Loaded once from YAML (docs/schema.md describes the
// format) and then immutable.
//
// JSON events carry their id, type and time as `event_id`, `event_type` and
// `time`. A CSV file holds one event type (`csv.event_type`, or the only
// declared type) and maps its own columns to those roles: the field with
// `role: event_id` is the id, `role: event_time` the time. In JSON such a
// field may be written under its own name or under the standard one.
//
// Every schema also has the built-in event type `label` (see label.h).
//
// Thread-safety: immutable after Load; share freely across threads.
#ifndef VIGIL_EVENT_SCHEMA_H_
#define VIGIL_EVENT_SCHEMA_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "core/status.h"
#include "core/string_map.h"
#include "core/time.h"
#include "event/decimal.h"
#include "event/fixed_pattern.h"

namespace re2 {
class RE2;
}

namespace vigil::event {

enum class FieldType : uint8_t { kString, kInt, kFloat, kDecimal, kBool, kTimestamp, kEnum };
enum class Role : uint8_t {
  kNone,
  kEventId,
  kEventTime,
  kEntity,       // a key features are computed per (user, device, ip, card, ...)
  kAmount,       // a money amount; travels with its currency
  kLabel,        // a ground-truth label known only after `known_after`
  kGroundTruth,  // simulator truth; never a feature, never read online
};
enum class PiiMode : uint8_t { kNone, kHash, kRedact };
enum class UnknownFields : uint8_t { kReject, kIgnore };

const char* FieldTypeName(FieldType t);
const char* RoleName(Role r);

struct FieldSpec {
  std::string name;
  int index = 0;  // position in Record::values
  FieldType type = FieldType::kString;
  bool required = false;
  bool nullable = false;
  // Bounds. Ints, floats and timestamps (as ms) use the doubles; decimals the
  // exact values. Inclusive.
  std::optional<double> min, max;
  std::optional<Decimal> min_decimal, max_decimal;
  int64_t max_length = 0;  // strings, in bytes; 0 = none
  std::string pattern_text;
  std::shared_ptr<const re2::RE2> pattern;  // full match
  // The same pattern as a table per byte, when it has that shape (set with
  // `pattern`, from it).
  std::optional<FixedPattern> fixed_pattern;
  // Allowed values: strings and enums by text, ints by value, bools by value.
  StringSet allowed_strings;
  absl::flat_hash_set<int64_t> allowed_ints;
  std::vector<std::string> allowed_list;  // as written, for messages and profiles
  Role role = Role::kNone;
  std::string entity;         // entity kind for Role::kEntity (default: the field name)
  std::string currency;       // fixed currency of an amount, or
  std::string currency_field; // the field that names it
  int64_t known_after_ms = 0; // Role::kLabel: delay after which the label is known
  PiiMode pii = PiiMode::kNone;
  core::EpochUnit epoch_unit = core::EpochUnit::kAuto;  // numbers in a timestamp field
  bool id_like = false;  // a string field that also takes JSON numbers as text (ids, keys)
  std::string config_where;   // file:line:col of the declaration

  // Whether the whole of `text` matches `pattern` (which must be set): by
  // the table when the pattern has its shape, else by RE2 (the same answer).
  bool MatchesPattern(std::string_view text) const;
};

struct EventTypeSpec {
  std::string name;
  int index = 0;
  bool is_label = false;  // the built-in label event type
  std::vector<FieldSpec> fields;
  int id_field = -1;
  int time_field = -1;
  UnknownFields unknown_fields = UnknownFields::kReject;
  // JSON keys to field indices: each field's name, plus `event_id` / `time`
  // for the id and time fields. Nested objects use dotted names
  // ("target_entity.key").
  StringMap<int> json_keys;
  // Prefixes of dotted field names, so a nested object can be entered.
  StringSet object_prefixes;

  // The field named `name` (its own name, not an alias), or nullptr.
  const FieldSpec* Find(std::string_view name) const;
};

struct Schema {
  std::string name;
  std::string file;
  // SHA-256, hex, of what the file says (ConfigNode::CanonicalText: a
  // comment or the layout changes nothing).
  std::string content_hash;
  std::string text_hash;  // of the file's bytes: what content_hash was before 2026-12
  std::vector<EventTypeSpec> types;
  StringMap<int> type_index;
  int csv_type = -1;    // the event type a CSV file holds
  int label_type = -1;  // the built-in `label` type
  std::vector<std::string> label_kinds;  // empty: any kind
  // Entity kinds (role: entity) by field name, for label target_entity keys.
  StringSet entity_fields;

  // Limits.
  int64_t max_record_bytes = 1 << 20;
  int64_t default_max_string_length = 4096;
  int64_t duplicate_memory = 2'000'000;  // event ids remembered; 0 = no check

  // Time bounds; 0 = off. Relative to the latest valid event time seen
  // (replay-friendly), and optionally to the wall clock (production).
  int64_t max_ahead_of_latest_ms = core::kMsPerDay;
  int64_t max_behind_latest_ms = 30 * core::kMsPerDay;
  int64_t max_ahead_of_wall_clock_ms = 0;
  int64_t max_behind_wall_clock_ms = 0;

  // Currency conversion to one reference currency (empty: none).
  std::string reference_currency;
  StringMap<double> rates;

  std::string pii_key_env = "VIGIL_PII_KEY";
  bool has_pii = false;
  // Every pii field name (and the last part of a dotted one) in any type,
  // with its mode (hash wins over redact): a field of that name where it is
  // not declared, or in a record whose type is unknown, is masked the same.
  StringMap<PiiMode> pii_by_name;

  // Loads and checks a schema file. Every error names file:line:col.
  static absl::StatusOr<std::shared_ptr<const Schema>> Load(const std::string& path);
  static absl::StatusOr<std::shared_ptr<const Schema>> LoadString(std::string_view yaml,
                                                                  std::string_view name);

  const EventTypeSpec* FindType(std::string_view name) const;
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_SCHEMA_H_
