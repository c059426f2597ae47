#include "event/validator.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/strings/ascii.h"
#include "core/hash.h"
#include "core/numbers.h"
#include "core/strings.h"
#include "core/time.h"
#include "simdjson.h"

namespace vigil::event {
namespace {

namespace sj = simdjson;
namespace dom = simdjson::dom;

constexpr size_t kMaxPrintable = 64;

std::string_view TrimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool LooksNonFinite(std::string_view s) {
  std::string l = absl::AsciiStrToLower(std::string(s));
  if (!l.empty() && (l[0] == '-' || l[0] == '+')) l.erase(0, 1);
  return l == "nan" || l == "inf" || l == "infinity";
}

// The text of the number that follows the top-level key `key` in `json`, or
// "" when it cannot be found plainly (escaped key, nested, not a number).
// simdjson's DOM keeps numbers as doubles; an exact decimal needs its digits.
std::string_view FindTopLevelNumber(std::string_view json, std::string_view key) {
  int depth = 0;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    } else if (c == '"') {
      const size_t b = i + 1;
      size_t e = b;
      while (e < json.size() && json[e] != '"') e += json[e] == '\\' ? 2 : 1;
      if (e >= json.size()) return {};
      i = e;
      if (depth != 1 || json.substr(b, e - b) != key) continue;
      size_t k = e + 1;
      while (k < json.size() && (json[k] == ' ' || json[k] == '\t')) ++k;
      if (k >= json.size() || json[k] != ':') continue;  // a value, not a key
      ++k;
      while (k < json.size() && (json[k] == ' ' || json[k] == '\t')) ++k;
      size_t n = k;
      while (n < json.size() && (std::isdigit(static_cast<unsigned char>(json[n])) ||
                                 json[n] == '-' || json[n] == '+' || json[n] == '.' ||
                                 json[n] == 'e' || json[n] == 'E')) {
        ++n;
      }
      return json.substr(k, n - k);
    }
  }
  return {};
}

std::string FormatDouble(double d) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return std::string(buf, p);
}


}  // namespace

struct Validator::JsonParser {
  dom::parser parser;
};

const char* RuleName(Rule r) {
  switch (r) {
    case Rule::kMalformedJson: return "malformed_json";
    case Rule::kMalformedCsv: return "malformed_csv";
    case Rule::kColumnCount: return "column_count";
    case Rule::kInvalidUtf8: return "invalid_utf8";
    case Rule::kRecordTooLarge: return "record_too_large";
    case Rule::kUnknownEventType: return "unknown_event_type";
    case Rule::kDuplicateField: return "duplicate_field";
    case Rule::kUnknownField: return "unknown_field";
    case Rule::kRequired: return "required";
    case Rule::kNotNull: return "not_null";
    case Rule::kType: return "type";
    case Rule::kNotFinite: return "not_finite";
    case Rule::kMin: return "min";
    case Rule::kMax: return "max";
    case Rule::kMaxLength: return "max_length";
    case Rule::kPattern: return "pattern";
    case Rule::kAllowed: return "allowed";
    case Rule::kTimestamp: return "timestamp";
    case Rule::kTimeBounds: return "time_bounds";
    case Rule::kDuplicateEventId: return "duplicate_event_id";
    case Rule::kLabelTarget: return "label_target";
    case Rule::kOutlier: return "outlier";
    case Rule::kUnseenCategory: return "unseen_category";
  }
  return "?";
}

uint64_t KeyHashOfText(FieldType type, std::string_view text) noexcept {
  if (type == FieldType::kInt) {
    int64_t v = 0;
    std::from_chars(text.data() + (!text.empty() && text[0] == '+'), text.data() + text.size(), v);
    return core::HashInt(static_cast<uint64_t>(v));
  }
  if (type == FieldType::kBool) {
    const bool b = text == "true" || text == "1" || text == "True" || text == "TRUE";
    return core::HashInt(b ? 1 : 0);
  }
  if (type == FieldType::kFloat || type == FieldType::kDecimal) {
    double d = 0;
    const char* b = text.data() + (!text.empty() && text[0] == '+');
    if (std::from_chars(b, text.data() + text.size(), d).ec == std::errc())
      return core::HashDouble(d);
  }
  if (type == FieldType::kTimestamp) {
    int64_t ms = 0;
    if (core::ParseTimestamp(text, &ms) == core::TimeError::kOk)
      return core::HashDouble(static_cast<double>(ms));
  }
  return core::Hash64(text);
}

bool KeyTextAlike(FieldType a, FieldType b) noexcept {
  auto cls = [](FieldType t) {
    return t == FieldType::kEnum      ? FieldType::kString
           : t == FieldType::kDecimal ? FieldType::kFloat
                                      : t;
  };
  return cls(a) == cls(b);
}

DedupWindow::DedupWindow(size_t capacity) : capacity_(capacity) {
  // Sized up front for up to a million ids, so that the first million
  // records do not pay for growing.
  if (capacity > 0) {
    runs_cap_ = std::bit_ceil(std::min<size_t>(capacity, 1 << 20));
    runs_ = std::make_unique_for_overwrite<Run[]>(runs_cap_);
  }
  ring_.reserve(std::min<size_t>(capacity, 1 << 20));
  set_.reserve(std::min<size_t>(capacity, 1 << 20));
}

bool DedupWindow::AsNumber(std::string_view id, uint64_t* n) {
  if (id.empty() || id.size() > 19 || (id[0] == '0' && id.size() > 1)) return false;
  uint64_t v = 0;
  for (char c : id) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  *n = v;
  return true;
}

int DedupWindow::InSequence(uint64_t n) const {
  // Runs read oldest first are increasing and disjoint: the last run that
  // starts at or before n is the only one that may hold it.
  size_t lo = 0, hi = runs_n_;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (RunAt(mid).first <= n) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo == 0) return -1;
  const Run& r = RunAt(lo - 1);
  return n - r.first < r.count ? r.type : -1;
}

void DedupWindow::AppendToSequence(uint64_t n, uint8_t tb) {
  if (seq_ids_ == capacity_) {  // forget the oldest first: the run may go, and its room
    Run& oldest = RunAt(0);
    ++oldest.first;
    --seq_ids_;
    if (--oldest.count == 0) {
      runs_head_ = (runs_head_ + 1) & (runs_cap_ - 1);
      --runs_n_;
    }
  }
  Run* last = runs_n_ > 0 ? &RunAt(runs_n_ - 1) : nullptr;
  if (last && n - last->first == last->count && last->type == tb && last->count < UINT32_MAX) {
    ++last->count;
  } else {
    if (runs_n_ == runs_cap_) {
      // More runs than the room taken up front (a window of over a million
      // ids, many not consecutive): twice the room, in order.
      const size_t cap = std::max<size_t>(16, runs_cap_ * 2);
      auto bigger = std::make_unique_for_overwrite<Run[]>(cap);
      for (size_t i = 0; i < runs_n_; ++i) bigger[i] = RunAt(i);
      runs_ = std::move(bigger);
      runs_cap_ = cap;
      runs_head_ = 0;
    }
    RunAt(runs_n_++) = Run{n, 1, tb};
  }
  ++seq_ids_;
}

int DedupWindow::TypeOf(uint64_t h, std::string_view id) const {
  if (capacity_ == 0) return kNotSeen;
  uint64_t n;
  if (AsNumber(id, &n)) {
    if (const int tb = InSequence(n); tb >= 0) return TypeOfByte(static_cast<uint8_t>(tb));
  }
  const auto it = set_.find(h);
  return it == set_.end() ? kNotSeen : TypeOfByte(it->second);
}

bool DedupWindow::Insert(uint64_t h, std::string_view id, int type) {
  if (capacity_ == 0) return true;
  uint64_t n = 0;
  const bool numeric = AsNumber(id, &n);
  return InsertKnown(h, numeric, n, type);
}

bool DedupWindow::InsertInt(uint64_t h, std::string_view id, int64_t value, int type) {
  if (capacity_ == 0) return true;
  // What AsNumber finds: a text that parsed as an int and starts with a
  // digit is all digits, at most 19 of them; canonical without a leading 0.
  const bool numeric = !id.empty() && id[0] >= '0' && id[0] <= '9' && (id[0] != '0' || id.size() == 1);
  return InsertKnown(h, numeric, static_cast<uint64_t>(value), type);
}

bool DedupWindow::InsertKnown(uint64_t h, bool numeric, uint64_t n, int type) {
  const uint8_t tb = TypeByte(type);
  if (numeric) {
    const Run* last = runs_n_ > 0 ? &RunAt(runs_n_ - 1) : nullptr;
    if (!last || n - last->first >= last->count) {
      if (!last || n > last->first) {
        // Larger than every numeric id in sequence; those out of sequence
        // went to the set and are smaller than the newest at their time, so
        // smaller.
        AppendToSequence(n, tb);
        return true;
      }
      if (InSequence(n) >= 0) return false;
    } else {
      return false;  // in the newest run
    }
  }
  if (!set_.try_emplace(h, tb).second) return false;
  if (ring_.size() < capacity_) {
    ring_.push_back(h);
  } else {
    set_.erase(ring_[next_]);
    ring_[next_] = h;
    next_ = (next_ + 1) % capacity_;
  }
  return true;
}

void DedupWindow::SerializeTo(core::ByteWriter& w) const {
  // Each id, then its type byte.
  w.U64(seq_ids_);
  for (size_t i = 0; i < runs_n_; ++i) {
    const Run& r = RunAt(i);
    for (uint64_t k = 0; k < r.count; ++k) {
      w.U64(r.first + k);
      w.U8(r.type);
    }
  }
  // Oldest first: from next_ once the ring is full (next_ is 0 before).
  w.U64(ring_.size());
  for (size_t i = 0; i < ring_.size(); ++i) {
    const uint64_t h = ring_[(next_ + i) % ring_.size()];
    w.U64(h);
    w.U8(set_.at(h));
  }
}

bool DedupWindow::Restore(core::ByteReader& r, bool with_types) {
  runs_head_ = runs_n_ = seq_ids_ = 0;
  ring_.clear();
  set_.clear();
  next_ = 0;
  const size_t each = with_types ? 9 : 8;
  auto type = [&](uint8_t* b) { return !with_types || r.U8(b); };
  uint64_t n;
  if (!r.Count(&n, each)) return false;
  if (n > capacity_) return r.Fail("more numeric ids than the duplicate window holds");
  uint64_t prev = 0;
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t v;
    uint8_t b = 255;
    if (!r.U64(&v) || !type(&b)) return false;
    if (i > 0 && v <= prev) return r.Fail("numeric ids out of order");
    AppendToSequence(v, b);
    prev = v;
  }
  if (!r.Count(&n, each)) return false;
  if (n > capacity_) return r.Fail("more ids than the duplicate window holds");
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t h;
    uint8_t b = 255;
    if (!r.U64(&h) || !type(&b)) return false;
    if (!set_.try_emplace(h, b).second) return r.Fail("an id twice in the duplicate window");
    ring_.push_back(h);
  }
  return true;
}

namespace {
constexpr uint64_t kValidatorMagicV1 = 0x314C41564C494756;  // "VGILVAL1": ids without types
constexpr uint64_t kValidatorMagic = 0x324C41564C494756;    // "VGILVAL2"
}  // namespace

void Validator::AppendTo(std::string* out) const {
  core::ByteWriter w(out);
  w.U64(kValidatorMagic);
  w.I64(latest_ms_);
  dedup_.SerializeTo(w);
}

absl::Status Validator::Restore(std::string_view snapshot) {
  core::ByteReader r(snapshot, "validator snapshot");
  uint64_t magic = 0;
  bool ok = r.U64(&magic);
  if (ok && magic != kValidatorMagic && magic != kValidatorMagicV1)
    ok = r.Fail("not a validator snapshot");
  int64_t latest = INT64_MIN;
  ok = ok && r.I64(&latest) && dedup_.Restore(r, magic == kValidatorMagic);
  if (ok && !r.at_end()) ok = r.Fail("bytes after the end");
  if (!ok) {
    dedup_ = DedupWindow(static_cast<size_t>(schema_->duplicate_memory));
    latest_ms_ = INT64_MIN;
    return r.status();
  }
  latest_ms_ = latest;
  return absl::OkStatus();
}

Validator::Validator(std::shared_ptr<const Schema> schema, const PiiHasher* hasher)
    : schema_(std::move(schema)),
      hasher_(hasher),
      json_(std::make_unique<JsonParser>()),
      dedup_(static_cast<size_t>(schema_->duplicate_memory)) {
  for (const EventTypeSpec& t : schema_->types) max_fields_ = std::max(max_fields_, t.fields.size());
  // Up to 32 bytes of number text per field; views into it must stay valid.
  numbers_.reserve(32 * (max_fields_ + 1) * 2);
  if (json_->parser.allocate(static_cast<size_t>(schema_->max_record_bytes)) != sj::SUCCESS) {
    // Not fatal: parse() allocates on demand.
  }
}

Validator::~Validator() = default;

std::string Validator::Printable(const FieldSpec* f, std::string_view value, const Record* rec) const {
  const PiiMode mode = f ? EffectivePii(f, f->name, rec, *schema_) : PiiMode::kNone;
  if (mode != PiiMode::kNone) return hasher_->Mask(value, mode);
  if (value.size() <= kMaxPrintable) return std::string(value);
  return StrCat(value.substr(0, kMaxPrintable), "…(", value.size(), " bytes)");
}

void Validator::Add(std::vector<Violation>* out, Rule rule, const FieldSpec* f,
                    std::string_view value, std::string reason) const {
  out->push_back(Violation{rule, f ? f->name : std::string(), std::string(value), std::move(reason)});
}

absl::Status Validator::SetCsvHeader(std::string_view header) {
  if (schema_->csv_type < 0) {
    return absl::InvalidArgumentError(StrCat(
        schema_->file, ": the schema declares several event types; set csv.event_type to the one "
                       "a CSV file holds"));
  }
  const EventTypeSpec& t = schema_->types[schema_->csv_type];
  header = TrimRight(header);
  header = StripUtf8Bom(header);
  csv_fields_.clear();
  csv_id_column_ = -1;
  std::vector<bool> seen(t.fields.size(), false);
  size_t col = 0;
  for (std::string_view cell : StrSplit(header, ',')) {
    ++col;
    if (cell.size() >= 2 && cell.front() == '"' && cell.back() == '"') cell = cell.substr(1, cell.size() - 2);
    auto it = t.json_keys.find(cell);
    if (it == t.json_keys.end()) {
      if (t.unknown_fields == UnknownFields::kReject) {
        return absl::InvalidArgumentError(StrCat(
            "CSV header, column ", col, " '", cell, "': not a field of event type '", t.name,
            "' (the schema rejects unknown fields; add it to ", schema_->file,
            " or set unknown_fields: ignore)"));
      }
      csv_fields_.push_back(nullptr);
      continue;
    }
    if (seen[it->second]) {
      return absl::InvalidArgumentError(
          StrCat("CSV header, column ", col, " '", cell, "': field appears twice"));
    }
    seen[it->second] = true;
    if (it->second == t.id_field) csv_id_column_ = static_cast<int>(csv_fields_.size());
    csv_fields_.push_back(&t.fields[it->second]);
  }
  std::vector<std::string> missing;
  csv_all_fields_ = true;
  for (const FieldSpec& f : t.fields) {
    if (f.required && !seen[f.index]) missing.push_back(f.name);
    if (!seen[f.index]) csv_all_fields_ = false;
  }
  csv_columns_.clear();
  for (const FieldSpec* f : csv_fields_) csv_columns_.push_back(PlanCsvColumn(f));
  cells_.at.assign(csv_fields_.size() + 1, std::string_view());
  if (!missing.empty()) {
    return absl::InvalidArgumentError(StrCat("CSV header lacks required column(s) of '",
                                                   t.name, "': ", StrJoin(missing, ", ")));
  }
  return absl::OkStatus();
}

Validator::CsvColumn Validator::PlanCsvColumn(const FieldSpec* f) const {
  CsvColumn c;
  if (!f) return c;
  c.kind = CsvColumn::Kind::kGeneral;
  c.index = f->index;
  c.field = f;
  if (!csv_fast_path_) return c;
  c.min = f->min ? *f->min : -std::numeric_limits<double>::infinity();
  c.max = f->max ? *f->max : std::numeric_limits<double>::infinity();
  switch (f->type) {
    case FieldType::kInt:
      for (int64_t a : f->allowed_ints) {
        if (a < 0 || a >= 64) return c;  // the general path reads the set
        c.allowed_mask |= uint64_t{1} << a;
      }
      c.kind = CsvColumn::Kind::kInt;
      break;
    case FieldType::kDecimal:
      if (f->min_decimal) {
        c.min_decimal = &*f->min_decimal;
        c.min_zero = f->min_decimal->units == 0;
      }
      if (f->max_decimal) c.max_decimal = &*f->max_decimal;
      c.kind = CsvColumn::Kind::kDecimal;
      break;
    case FieldType::kTimestamp:
      c.kind = CsvColumn::Kind::kTimestamp;
      break;
    case FieldType::kString:
    case FieldType::kEnum:
      if (!f->pattern && f->allowed_strings.empty()) c.kind = CsvColumn::Kind::kString;
      c.max_length = f->max_length;
      break;
    default:
      break;
  }
  return c;
}

inline bool Validator::DecodeIntCell(const CsvColumn& c, std::string_view s, const char* readable_end,
                                     Value* v) {
  // What SetFromText and CheckValue do for a valid int.
  const size_t plus = s[0] == '+';
  int64_t i;
  if (core::ParseInt64InBuffer(s.substr(plus), readable_end, &i) != core::ParseIntError::kOk) return false;
  const double d = static_cast<double>(i);
  if (d < c.min || d > c.max) return false;
  if (c.allowed_mask != 0 && (static_cast<uint64_t>(i) >= 64 || !((c.allowed_mask >> i) & 1))) {
    return false;
  }
  v->state = Value::State::kPresent;
  v->text = s;
  v->i = i;
  v->d = d;
  v->hash = core::HashInt(static_cast<uint64_t>(i));
  return true;
}

inline bool Validator::DecodeDecimalCell(const CsvColumn& c, std::string_view s, Value* v) {
  // What SetFromText and CheckValue do for a valid decimal.
  Decimal dec;
  if (!ParseDecimal(s, &dec)) return false;
  if (c.min_decimal && (c.min_zero ? dec.units < 0 : CompareDecimal(dec, *c.min_decimal) < 0)) {
    return false;
  }
  if (c.max_decimal && CompareDecimal(dec, *c.max_decimal) > 0) return false;
  v->state = Value::State::kPresent;
  v->text = s;
  v->dec = dec;
  v->d = dec.ToDouble();
  return true;
}

bool Validator::DecodeCell(CsvColumn& c, std::string_view s, Value* v) {
  // Each case does what SetFromText and CheckValue do for a valid value.
  // (Ints and decimals are decoded in DecodeCsv's loop itself.)
  switch (c.kind) {
    case CsvColumn::Kind::kTimestamp: {
      int64_t ms;
      if (c.timestamps.Parse(s, &ms, c.field->epoch_unit) != core::TimeError::kOk) return false;
      const double d = static_cast<double>(ms);
      if (d < c.min || d > c.max) return false;
      v->state = Value::State::kPresent;
      v->text = s;
      v->i = ms;
      v->d = d;
      return true;
    }
    case CsvColumn::Kind::kString:
      if (c.max_length > 0 && static_cast<int64_t>(s.size()) > c.max_length) return false;
      v->state = Value::State::kPresent;
      v->text = s;
      v->hash = core::Hash64(s);
      return true;
    default:
      return false;
  }
}

void Validator::PrepareRecord(const EventTypeSpec* type, Record* rec) {
  rec->type = type;
  if (rec->values.size() < max_fields_) rec->values.resize(max_fields_);
  if (type) {
    for (size_t i = 0; i < type->fields.size(); ++i) rec->values[i].state = Value::State::kMissing;
  }
  rec->event_id = {};
  rec->id_hash = 0;
  rec->time_ms = 0;
}

void Validator::BoundError(const FieldSpec& f, const Value& v, bool below, const std::string& limit,
                           std::vector<Violation>* out) const {
  Add(out, below ? Rule::kMin : Rule::kMax, &f, Printable(&f, v.text, nullptr),
      StrCat("field '", f.name, "': ", Printable(&f, v.text, nullptr), " is ",
             below ? "below the minimum " : "above the maximum ", limit));
}

void Validator::RuleError(const FieldSpec& f, const Value& v, Rule rule,
                          std::vector<Violation>* out) const {
  const std::string shown = Printable(&f, v.text, nullptr);
  switch (rule) {
    case Rule::kMaxLength:
      Add(out, rule, &f, shown,
          StrCat("field '", f.name, "' is ", v.text.size(), " bytes long; the limit is ", f.max_length));
      break;
    case Rule::kPattern:
      Add(out, rule, &f, shown,
          StrCat("field '", f.name, "': ", shown, " does not match the pattern ", f.pattern_text));
      break;
    default:  // kAllowed
      Add(out, rule, &f, shown,
          StrCat("field '", f.name, "': ", shown, " is not one of the allowed values (",
                 StrJoin(f.allowed_list, ", "), ")"));
      break;
  }
}

bool Validator::TypeError(const FieldSpec& f, std::string_view s, std::string_view expected,
                          std::vector<Violation>* out) const {
  Add(out, Rule::kType, &f, Printable(&f, s, nullptr),
      StrCat("field '", f.name, "': expected ", expected, ", found '", Printable(&f, s, nullptr), "'"));
  return false;
}

bool Validator::NotFiniteError(const FieldSpec& f, std::string_view s, std::vector<Violation>* out) const {
  Add(out, Rule::kNotFinite, &f, Printable(&f, s, nullptr),
      StrCat("field '", f.name, "': ", Printable(&f, s, nullptr), " is not a finite number"));
  return false;
}

bool Validator::CheckValue(const FieldSpec& f, Value* v, std::vector<Violation>* out) {
  const size_t before = out->size();
  auto bound = [this, &f, v, out](bool below, const std::string& limit) {
    BoundError(f, *v, below, limit, out);
  };
  switch (f.type) {
    case FieldType::kString:
    case FieldType::kEnum:
      if (f.max_length > 0 && static_cast<int64_t>(v->text.size()) > f.max_length) {
        RuleError(f, *v, Rule::kMaxLength, out);
      }
      if (f.pattern && !f.MatchesPattern(v->text)) {
        RuleError(f, *v, Rule::kPattern, out);
      }
      if (!f.allowed_strings.empty() && !f.allowed_strings.contains(v->text)) {
        RuleError(f, *v, Rule::kAllowed, out);
      }
      v->hash = core::Hash64(v->text);
      break;
    case FieldType::kInt:
    case FieldType::kBool:
      v->hash = core::HashInt(static_cast<uint64_t>(v->i));
      if (f.min && static_cast<double>(v->i) < *f.min) bound(true, FormatDouble(*f.min));
      if (f.max && static_cast<double>(v->i) > *f.max) bound(false, FormatDouble(*f.max));
      if (!f.allowed_ints.empty() && !f.allowed_ints.contains(v->i)) RuleError(f, *v, Rule::kAllowed, out);
      break;
    case FieldType::kFloat:
      if (f.min && v->d < *f.min) bound(true, FormatDouble(*f.min));
      if (f.max && v->d > *f.max) bound(false, FormatDouble(*f.max));
      break;
    case FieldType::kDecimal:
      if (f.min_decimal && CompareDecimal(v->dec, *f.min_decimal) < 0) {
        bound(true, f.min_decimal->ToString());
      }
      if (f.max_decimal && CompareDecimal(v->dec, *f.max_decimal) > 0) {
        bound(false, f.max_decimal->ToString());
      }
      break;
    case FieldType::kTimestamp:
      if (f.min && static_cast<double>(v->i) < *f.min) {
        bound(true, core::FormatTimestamp(static_cast<int64_t>(*f.min)));
      }
      if (f.max && static_cast<double>(v->i) > *f.max) {
        bound(false, core::FormatTimestamp(static_cast<int64_t>(*f.max)));
      }
      break;
  }
  return out->size() == before;
}

bool Validator::SetFromText(const FieldSpec& f, std::string_view s, Value* v,
                            std::vector<Violation>* out) {
  v->state = Value::State::kPresent;
  v->text = s;
  auto type_error = [this, &f, s, out](std::string_view expected) { return TypeError(f, s, expected, out); };
  switch (f.type) {
    case FieldType::kString:
    case FieldType::kEnum:
      break;
    case FieldType::kInt: {
      const char* b = s.data();
      const char* e = b + s.size();
      if (b != e && *b == '+') ++b;
      const core::ParseIntError pe = core::ParseInt64(std::string_view(b, static_cast<size_t>(e - b)), &v->i);
      if (pe == core::ParseIntError::kOutOfRange) return type_error("an integer within ±9.2e18");
      if (pe != core::ParseIntError::kOk) return type_error("an integer");
      v->d = static_cast<double>(v->i);
      break;
    }
    case FieldType::kFloat: {
      const char* b = s.data();
      const char* e = b + s.size();
      if (b != e && *b == '+') ++b;
      auto [p, ec] = std::from_chars(b, e, v->d);
      if ((ec == std::errc() && p == e && !std::isfinite(v->d)) ||
          ec == std::errc::result_out_of_range) {
        return NotFiniteError(f, s, out);
      }
      if (ec != std::errc() || p != e || b == e) return type_error("a number");
      break;
    }
    case FieldType::kDecimal:
      if (!ParseDecimal(s, &v->dec)) {
        if (LooksNonFinite(s)) return NotFiniteError(f, s, out);
        return type_error("a decimal number (digits, an optional point; at most 18 digits)");
      }
      v->d = v->dec.ToDouble();
      break;
    case FieldType::kBool:
      if (s == "true" || s == "1" || s == "True" || s == "TRUE") {
        v->b = true;
      } else if (s == "false" || s == "0" || s == "False" || s == "FALSE") {
        v->b = false;
      } else {
        return type_error("true or false");
      }
      v->i = v->b;
      v->d = v->i;
      break;
    case FieldType::kTimestamp: {
      const core::TimeError e = core::ParseTimestamp(s, &v->i, f.epoch_unit);
      if (e != core::TimeError::kOk) {
        Add(out, Rule::kTimestamp, &f, Printable(&f, s, nullptr),
            StrCat("field '", f.name, "': '", Printable(&f, s, nullptr),
                         "' is not a valid time: ", core::TimeErrorText(e)));
        return false;
      }
      v->d = static_cast<double>(v->i);
      break;
    }
  }
  return CheckValue(f, v, out);
}

bool Validator::Finish(Record* rec, std::vector<Violation>* out, bool all_present) {
  const EventTypeSpec& t = *rec->type;
  if (!all_present) {
    for (const FieldSpec& f : t.fields) {
      const Value& v = rec->values[f.index];
      if (v.state == Value::State::kMissing && f.required) {
        Add(out, Rule::kRequired, &f, "",
            StrCat("missing required field '", f.name, "' of event type '", t.name, "'"));
      } else if (v.state == Value::State::kNull && !f.nullable && f.required) {
        Add(out, Rule::kNotNull, &f, "null",
            StrCat("field '", f.name, "' is null; it is required and not nullable"));
      }
    }
  }
  if (t.is_label) {
    const FieldSpec* te = t.Find("target_event_id");
    const FieldSpec* tk = t.Find("target_entity.key");
    const FieldSpec* tv = t.Find("target_entity.value");
    const bool by_event = (*rec)[te->index].present();
    const bool has_key = (*rec)[tk->index].present();
    const bool has_value = (*rec)[tv->index].present();
    if (by_event == (has_key || has_value)) {
      Add(out, Rule::kLabelTarget, by_event ? te : nullptr, "",
          "a label names exactly one target: target_event_id, or target_entity {key, value}");
    } else if (!by_event && (!has_key || !has_value)) {
      Add(out, Rule::kLabelTarget, has_key ? tv : tk, "",
          "target_entity needs both key (an entity field of the schema) and value");
    } else if (has_key && !schema_->entity_fields.empty() &&
               !schema_->entity_fields.contains((*rec)[tk->index].text)) {
      std::vector<std::string> keys(schema_->entity_fields.begin(), schema_->entity_fields.end());
      std::sort(keys.begin(), keys.end());
      Add(out, Rule::kLabelTarget, tk, (*rec)[tk->index].text,
          StrCat("target_entity.key '", Printable(nullptr, (*rec)[tk->index].text, nullptr),
                       "' is not an entity key of the schema (", StrJoin(keys, ", "), ")"));
    }
  }
  if (!out->empty()) return false;
  const Value& idv = rec->values[t.id_field];
  rec->event_id = idv.text;
  rec->id_hash = core::Hash64(idv.text);
  rec->time_ms = rec->values[t.time_field].i;
  return true;
}

namespace {

// Splits a CSV line at its commas into `cells` when it has no quote (most
// data), 16 bytes at a time; false, with `cells` cleared, at a quote. When
// it splits, `*ascii` says whether every byte is below 0x80 (then the line
// is valid UTF-8 without a further pass over it).
template <typename Cells>
bool SplitUnquotedCsv(std::string_view line, Cells* cells, bool* ascii) {
  cells->clear();
  const char* cell = line.data();
  const char* p = cell;
  const char* const end = p + line.size();
  unsigned high = 0;  // the bytes or'ed: bit 7 set for a byte >= 0x80
#if defined(__SSE2__)
  const __m128i comma = _mm_set1_epi8(',');
  const __m128i quote = _mm_set1_epi8('"');
  __m128i any = _mm_setzero_si128();
  for (; end - p >= 16; p += 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    any = _mm_or_si128(any, x);
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(x, quote)) != 0) {
      cells->clear();
      return false;
    }
    for (unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, comma))); m != 0;
         m &= m - 1) {
      const char* c = p + __builtin_ctz(m);
      cells->push(std::string_view(cell, static_cast<size_t>(c - cell)));
      cell = c + 1;
    }
  }
  if (p != end && line.size() >= 16) {
    // The last 0..15 bytes: the line's last 16, with the bits of those
    // already read shifted out.
    const int done = static_cast<int>(16 - (end - p));
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(end - 16));
    any = _mm_or_si128(any, x);
    if ((static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, quote))) >> done) != 0) {
      cells->clear();
      return false;
    }
    for (unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(x, comma))) >> done; m != 0;
         m &= m - 1) {
      const char* c = p + __builtin_ctz(m);
      cells->push(std::string_view(cell, static_cast<size_t>(c - cell)));
      cell = c + 1;
    }
    p = end;
  }
  high = _mm_movemask_epi8(any) != 0 ? 0x80 : 0;
#endif
  for (; p != end; ++p) {
    high |= static_cast<unsigned char>(*p);
    if (*p == ',') {
      cells->push(std::string_view(cell, static_cast<size_t>(p - cell)));
      cell = p + 1;
    } else if (*p == '"') {
      cells->clear();
      return false;
    }
  }
  cells->push(std::string_view(cell, static_cast<size_t>(end - cell)));
  *ascii = (high & 0x80) == 0;
  return true;
}

}  // namespace

bool Validator::DecodeCsv(std::string_view line, Record* rec, std::vector<Violation>* out) {
  out->clear();
  // PrepareRecord's reset of every field to missing, when some field has no
  // column; otherwise each column sets its field below (missing when empty),
  // or, on a failure before that, the reset is done then.
  const EventTypeSpec* type = &schema_->types[schema_->csv_type];
  PrepareRecord(csv_all_fields_ && csv_fast_path_ ? nullptr : type, rec);
  rec->type = type;
  auto fail = [&] {
    for (size_t i = 0; i < type->fields.size(); ++i) rec->values[i].state = Value::State::kMissing;
    return false;
  };
  bool ascii = false;
  const bool unquoted = SplitUnquotedCsv(line, &cells_, &ascii);
  if (!ascii && !sj::validate_utf8(line.data(), line.size())) {
    cells_.clear();
    Add(out, Rule::kInvalidUtf8, nullptr, "", "the record is not valid UTF-8");
    return fail();
  }
  if (!unquoted) {
    unquoted_.clear();
    unquoted_.reserve(line.size());  // views into it stay valid: no reallocation below
    size_t i = 0;
    while (true) {
      if (i < line.size() && line[i] == '"') {
        const size_t start = unquoted_.size();
        ++i;
        bool closed = false;
        while (i < line.size()) {
          if (line[i] == '"') {
            if (i + 1 < line.size() && line[i + 1] == '"') {
              unquoted_ += '"';
              i += 2;
              continue;
            }
            closed = true;
            ++i;
            break;
          }
          unquoted_ += line[i++];
        }
        if (!closed || (i < line.size() && line[i] != ',')) {
          Add(out, Rule::kMalformedCsv, nullptr, "",
              StrCat("column ", cells_.size() + 1,
                           closed ? ": text after a closing quote" : ": a quote is never closed"));
          return fail();
        }
        cells_.push(std::string_view(unquoted_.data() + start, unquoted_.size() - start));
      } else {
        size_t e = i;
        while (e < line.size() && line[e] != ',') {
          if (line[e] == '"') {
            Add(out, Rule::kMalformedCsv, nullptr, "",
                StrCat("column ", cells_.size() + 1,
                             ": a quote inside an unquoted value (quote the whole value and "
                             "double the quote)"));
            return fail();
          }
          ++e;
        }
        cells_.push(line.substr(i, e - i));
        i = e;
      }
      if (i >= line.size()) break;
      ++i;  // the comma
      if (i == line.size()) {
        cells_.push(std::string_view());
        break;
      }
    }
  }
  if (cells_.size() != csv_fields_.size()) {
    Add(out, Rule::kColumnCount, nullptr, StrCat(cells_.size()),
        StrCat("the row has ", cells_.size(), " columns; the header has ", csv_fields_.size()));
    return fail();
  }
  if (csv_id_column_ >= 0 && schema_->duplicate_memory > 0) {
    dedup_.Prefetch(core::Hash64(cells_.at[static_cast<size_t>(csv_id_column_)]));
  }
  // Cells of an unquoted line are views into it: ints may be read 8 bytes
  // at a time up to its end. (Unquoted cells live in another buffer.)
  const char* const readable_end = unquoted ? line.data() + line.size() : nullptr;
  bool any_empty = false;
  for (size_t i = 0; i < cells_.size(); ++i) {
    CsvColumn& c = csv_columns_[i];
    const std::string_view s = cells_.at[i];
    if (c.kind == CsvColumn::Kind::kIgnored) continue;
    Value* v = &rec->values[static_cast<size_t>(c.index)];
    if (s.empty()) {  // an empty cell is an absent value
      v->state = Value::State::kMissing;
      any_empty = true;
      continue;
    }
    const bool ok = c.kind == CsvColumn::Kind::kInt       ? DecodeIntCell(c, s, readable_end, v)
                    : c.kind == CsvColumn::Kind::kDecimal ? DecodeDecimalCell(c, s, v)
                                                          : DecodeCell(c, s, v);
    if (!ok) SetFromText(*c.field, s, v, out);
  }
  return Finish(rec, out, csv_all_fields_ && !any_empty);
}

template <typename Object>
bool Validator::DecodeJsonObject(Object& obj, std::string_view prefix, Record* rec,
                                 std::vector<Violation>* out) {
  const EventTypeSpec& t = *rec->type;
  char keybuf[256];
  bool event_type_seen = false;
  for (const auto [key, val] : obj) {
    if (prefix.empty() && key == "event_type") {
      // Read by DecodeJson already (the first one); a second is refused like
      // any repeated key, not left to decide which type the event is.
      if (event_type_seen) {
        Add(out, Rule::kDuplicateField, nullptr, "",
            "field 'event_type' appears twice in the record");
        out->back().field = "event_type";
      }
      event_type_seen = true;
      continue;
    }
    std::string_view full = key;
    if (!prefix.empty()) {
      if (prefix.size() + 1 + key.size() > sizeof keybuf) {
        full = "<key too long>";
      } else {
        std::memcpy(keybuf, prefix.data(), prefix.size());
        keybuf[prefix.size()] = '.';
        std::memcpy(keybuf + prefix.size() + 1, key.data(), key.size());
        full = std::string_view(keybuf, prefix.size() + 1 + key.size());
      }
    }
    const dom::element_type jt = val.type();
    auto it = t.json_keys.find(full);
    if (it == t.json_keys.end()) {
      if (jt == dom::element_type::OBJECT && t.object_prefixes.contains(full)) {
        dom::object sub = val.get_object().value_unsafe();
        const std::string sub_prefix(full);
        if (!DecodeJsonObject(sub, sub_prefix, rec, out)) return false;
        continue;
      }
      if (t.unknown_fields == UnknownFields::kReject) {
        const std::string name(full);
        const PiiMode mode = EffectivePii(nullptr, name, rec, *schema_);
        const std::string shown = jt == dom::element_type::OBJECT  ? std::string("{…}")
                                  : jt == dom::element_type::ARRAY ? std::string("[…]")
                                  : jt == dom::element_type::STRING
                                      ? std::string(val.get_string().value_unsafe())
                                      : sj::minify(val);
        out->push_back(Violation{Rule::kUnknownField, name,
                                 mode != PiiMode::kNone ? hasher_->Mask(shown, mode)
                                                        : Printable(nullptr, shown, nullptr),
                                 StrCat("field '", name, "' is not in event type '", t.name,
                                        "' (the schema rejects unknown fields)")});
      }
      continue;
    }
    const FieldSpec& f = t.fields[it->second];
    Value& v = rec->values[f.index];
    if (v.state != Value::State::kMissing) {
      Add(out, Rule::kDuplicateField, &f, "",
          StrCat("field '", f.name, "' appears twice in the record"));
      continue;
    }
    // `shown` is the offending value as text; it is masked if the field is pii.
    auto type_error = [&](std::string_view found, std::string_view shown) {
      v.state = Value::State::kPresent;
      v.text = shown;  // views into the parser's buffer or literals: valid for this record
      Add(out, Rule::kType, &f, Printable(&f, shown, rec),
          StrCat("field '", f.name, "': expected ", FieldTypeName(f.type), ", found ", found));
    };
    switch (jt) {
      case dom::element_type::NULL_VALUE:
        v.state = Value::State::kNull;
        break;
      case dom::element_type::OBJECT:
        type_error("an object", "{…}");
        break;
      case dom::element_type::ARRAY:
        type_error("an array", "[…]");
        break;
      case dom::element_type::STRING: {
        const std::string_view s = val.get_string().value_unsafe();
        if (f.index == t.id_field && schema_->duplicate_memory > 0) dedup_.Prefetch(core::Hash64(s));
        if (f.type == FieldType::kFloat && LooksNonFinite(s)) {
          v.state = Value::State::kPresent;
          Add(out, Rule::kNotFinite, &f, Printable(&f, s, nullptr),
              StrCat("field '", f.name, "': ", Printable(&f, s, nullptr), " is not a finite number"));
        } else if (f.type == FieldType::kInt || f.type == FieldType::kFloat ||
                   f.type == FieldType::kBool) {
          type_error("a string", s);
        } else {
          SetFromText(f, s, &v, out);
        }
        break;
      }
      case dom::element_type::INT64:
      case dom::element_type::UINT64:
      case dom::element_type::DOUBLE: {
        // The number's text, kept for the record's lifetime in numbers_.
        char buf[32];
        std::to_chars_result r;
        if (jt == dom::element_type::INT64) {
          r = std::to_chars(buf, buf + sizeof buf, val.get_int64().value_unsafe());
        } else if (jt == dom::element_type::UINT64) {
          r = std::to_chars(buf, buf + sizeof buf, val.get_uint64().value_unsafe());
        } else {
          r = std::to_chars(buf, buf + sizeof buf, val.get_double().value_unsafe());
        }
        std::string_view tok;
        if (jt == dom::element_type::DOUBLE && prefix.empty() &&
            (f.type == FieldType::kDecimal || f.id_like)) {
          // A double's shortest text may not be what was written.
          tok = FindTopLevelNumber(json_line_, key);
        }
        if (tok.empty()) {
          const size_t at = numbers_.size();
          numbers_.append(buf, static_cast<size_t>(r.ptr - buf));
          tok = std::string_view(numbers_.data() + at, numbers_.size() - at);
        }
        switch (f.type) {
          case FieldType::kInt:
            if (jt != dom::element_type::INT64) {
              v.state = Value::State::kPresent;
              Add(out, Rule::kType, &f, Printable(&f, tok, nullptr),
                  StrCat("field '", f.name, "': expected an integer, found ",
                         Printable(&f, tok, nullptr)));
              break;
            }
            SetFromText(f, tok, &v, out);
            break;
          case FieldType::kFloat:
          case FieldType::kDecimal:
          case FieldType::kTimestamp:
            SetFromText(f, tok, &v, out);
            break;
          case FieldType::kString:
          case FieldType::kEnum:
            if (f.id_like) {
              SetFromText(f, tok, &v, out);
            } else {
              type_error("a number", tok);
            }
            break;
          case FieldType::kBool:
            type_error("a number", tok);
            break;
        }
        break;
      }
      case dom::element_type::BOOL: {
        if (f.type != FieldType::kBool) {
          type_error("a boolean", val.get_bool().value_unsafe() ? "true" : "false");
          break;
        }
        SetFromText(f, val.get_bool().value_unsafe() ? "true" : "false", &v, out);
        break;
      }
    }
  }
  return true;
}

void ReplaceInvalidUtf8(std::span<char> text) {
  for (size_t i = 0; i < text.size();) {
    const auto lead = static_cast<unsigned char>(text[i]);
    const size_t n = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
    if (i + n <= text.size() && sj::validate_utf8(text.data() + i, n)) {
      i += n;
    } else {
      text[i++] = '?';
    }
  }
}

void Validator::NoteIdOfInvalidUtf8(std::string_view line, Record* rec) {
  // Each byte that starts no valid sequence reads as '?'; then the record
  // parses if nothing else is wrong with it.
  repaired_.assign(line);
  ReplaceInvalidUtf8(repaired_);
  dom::element doc;
  dom::object obj;
  if (json_->parser.parse(repaired_.data(), repaired_.size(), /*realloc_if_needed=*/true)
          .get(doc) ||
      doc.get_object().get(obj)) {
    return;
  }
  for (const EventTypeSpec& t : schema_->types) {
    if (t.id_field < 0) continue;
    std::string_view id;
    if (obj.at_key(t.fields[static_cast<size_t>(t.id_field)].name).get_string().get(id) ==
        sj::SUCCESS) {
      // Only an id written as is in the record (no byte of it was invalid).
      if (!id.empty() && line.find(id) != std::string_view::npos) rec->event_id = id;
      return;
    }
  }
}

bool Validator::DecodeJson(std::string_view line, size_t readable, Record* rec,
                           std::vector<Violation>* out) {
  out->clear();
  numbers_.clear();
  json_line_ = line;
  PrepareRecord(nullptr, rec);
  dom::element doc;
  if (auto e = json_->parser.parse(line.data(), line.size(), /*realloc_if_needed=*/readable < line.size() + sj::SIMDJSON_PADDING).get(doc); e) {
    if (e == sj::UTF8_ERROR) {
      Add(out, Rule::kInvalidUtf8, nullptr, "", "the record is not valid UTF-8");
      NoteIdOfInvalidUtf8(line, rec);
    } else {
      Add(out, Rule::kMalformedJson, nullptr, "", StrCat("invalid JSON: ", sj::error_message(e)));
    }
    return false;
  }
  dom::object obj;
  if (doc.get_object().get(obj)) {
    Add(out, Rule::kMalformedJson, nullptr, "", "a record must be a JSON object");
    return false;
  }
  // Without its type, which field is the id is not known: a string under
  // the name some type gives its id still names the event (in the dead
  // letter and the answer), as it would have with a type.
  auto note_id = [&] {
    for (const EventTypeSpec& t : schema_->types) {
      if (t.id_field < 0) continue;
      std::string_view id;
      if (obj.at_key(t.fields[static_cast<size_t>(t.id_field)].name).get_string().get(id) ==
          sj::SUCCESS) {
        rec->event_id = id;
        return;
      }
    }
  };
  dom::element tv;
  if (obj.at_key("event_type").get(tv)) {
    Add(out, Rule::kRequired, nullptr, "",
        "missing required field 'event_type' (every JSON event names its type)");
    out->back().field = "event_type";
    note_id();
    return false;
  }
  std::string_view type_name;
  if (tv.get_string().get(type_name)) {
    Add(out, Rule::kType, nullptr, "", "field 'event_type': expected a string");
    out->back().field = "event_type";
    note_id();
    return false;
  }
  const EventTypeSpec* type = schema_->FindType(type_name);
  if (!type) {
    note_id();
    std::vector<std::string_view> names;
    for (const EventTypeSpec& t : schema_->types) names.push_back(t.name);
    Add(out, Rule::kUnknownEventType, nullptr, Printable(nullptr, type_name, nullptr),
        StrCat("event_type '", Printable(nullptr, type_name, nullptr),
               "' is not in the schema (", StrJoin(names, ", "), ")"));
    out->back().field = "event_type";
    return false;
  }
  PrepareRecord(type, rec);
  if (!DecodeJsonObject(obj, "", rec, out)) return false;
  return Finish(rec, out);
}

bool Validator::CheckAndCommit(const Record& rec, std::vector<Violation>* out) {
  return Check(rec, out, /*commit=*/true);
}

void Validator::Commit(const Record& rec) {
  (void)InsertId(rec);
  if (rec.time_ms > latest_ms_) latest_ms_ = rec.time_ms;
}

bool Validator::InsertId(const Record& rec) {
  const FieldSpec& idf = rec.type->fields[rec.type->id_field];
  const Value& idv = rec.values[static_cast<size_t>(idf.index)];
  // An int id (the handbook's): its number is known.
  const bool int_id = idf.type == FieldType::kInt && idv.present() &&
                      idv.text.data() == rec.event_id.data() && idv.text.size() == rec.event_id.size();
  const int type = rec.type->index;
  return int_id ? dedup_.InsertInt(rec.id_hash, rec.event_id, idv.i, type)
                : dedup_.Insert(rec.id_hash, rec.event_id, type);
}

bool Validator::Check(const Record& rec, std::vector<Violation>* out, bool commit) {
  out->clear();
  const int64_t t = rec.time_ms;
  const FieldSpec* tf = &rec.type->fields[rec.type->time_field];
  auto bounds = [&](std::string_view what, int64_t delta, int64_t limit, std::string_view setting) {
    Add(out, Rule::kTimeBounds, tf, core::FormatTimestamp(t),
        StrCat("event time ", core::FormatTimestamp(t), " is ", core::HumanDuration(delta), " ",
               what, "; the limit is ", core::FormatDuration(limit), " (", setting, ")"));
  };
  // The clock's bound on how far ahead an event may be: the schema's, or on
  // a live server the one it sets. A live server also measures
  // max_ahead_of_latest from the latest time or its clock, whichever is
  // later: the latest time is never ahead of the clock by more than the
  // bound, and an event up to now is not "ahead" of a latest time the stream
  // left behind (after a pause longer than max_ahead_of_latest every event
  // would be refused from then on). A replay of what a live server accepted
  // makes none of the checks that depended on its clock.
  const int64_t clock_ahead = schema_->max_ahead_of_wall_clock_ms > 0
                                  ? schema_->max_ahead_of_wall_clock_ms
                              : live_ ? live_clock_ahead_ms_
                                      : 0;
  const bool clock_checks =
      !replaying_ && (clock_ahead > 0 || schema_->max_behind_wall_clock_ms > 0);
  const int64_t now = clock_checks ? core::WallNowMs() : 0;
  if (latest_ms_ != INT64_MIN) {
    const int64_t ahead_of = live_ && clock_ahead > 0 ? std::max(latest_ms_, now) : latest_ms_;
    if (!replaying_ && schema_->max_ahead_of_latest_ms > 0 &&
        t > ahead_of + schema_->max_ahead_of_latest_ms) {
      // (Named as measured: from the clock when it is the later.)
      bounds(ahead_of == latest_ms_
                 ? StrCat("ahead of the latest event time seen (",
                          core::FormatTimestamp(latest_ms_), ")")
                 : StrCat("ahead of the server's clock (", core::FormatTimestamp(ahead_of),
                          "), later than the latest event time seen (",
                          core::FormatTimestamp(latest_ms_), ")"),
             t - ahead_of, schema_->max_ahead_of_latest_ms, "time_bounds.max_ahead_of_latest");
    }
    if (schema_->max_behind_latest_ms > 0 && t < latest_ms_ - schema_->max_behind_latest_ms) {
      bounds(StrCat("behind the latest event time seen (", core::FormatTimestamp(latest_ms_), ")"),
             latest_ms_ - t, schema_->max_behind_latest_ms, "time_bounds.max_behind_latest");
    }
  }
  if (clock_checks) {
    if (clock_ahead > 0 && t > now + clock_ahead) {
      bounds("ahead of the wall clock", t - now, clock_ahead,
             schema_->max_ahead_of_wall_clock_ms > 0 ? "time_bounds.max_ahead_of_wall_clock"
                                                     : "limits.max_ahead_of_clock_s of vigil.yaml");
    }
    if (schema_->max_behind_wall_clock_ms > 0 && t < now - schema_->max_behind_wall_clock_ms) {
      bounds("behind the wall clock", now - t, schema_->max_behind_wall_clock_ms,
             "time_bounds.max_behind_wall_clock");
    }
  }
  // A valid record committed costs one hash lookup: the insert, whose
  // failure is the duplicate. A record already rejected, or only checked, is
  // only looked up (a rejected id is not remembered, so that a corrected
  // retry passes).
  const bool duplicate = out->empty() && commit ? !InsertId(rec) : dedup_.Contains(rec.id_hash, rec.event_id);
  if (duplicate) {
    const FieldSpec* idf = &rec.type->fields[rec.type->id_field];
    Add(out, Rule::kDuplicateEventId, idf, Printable(idf, rec.event_id, &rec),
        StrCat("event id ", Printable(idf, rec.event_id, &rec),
               " was already seen (among the last ", schema_->duplicate_memory, " ids)"));
  }
  if (!out->empty()) return false;
  if (commit && t > latest_ms_) latest_ms_ = t;
  return true;
}

}  // namespace vigil::event
