#include "event/schema.h"


#include "core/file.h"
#include "core/strings.h"
#include "core/config.h"
#include "event/pii.h"
#include "re2/re2.h"

namespace vigil::event {

bool FieldSpec::MatchesPattern(std::string_view text) const {
  if (fixed_pattern) return fixed_pattern->FullMatch(text);
  return RE2::FullMatch(re2::StringPiece(text.data(), text.size()), *pattern);
}

namespace {

using core::ConfigNode;

const FieldType kTypes[] = {FieldType::kString,  FieldType::kInt,       FieldType::kFloat,
                            FieldType::kDecimal, FieldType::kBool,      FieldType::kTimestamp,
                            FieldType::kEnum};
const Role kRoles[] = {Role::kNone,   Role::kEventId, Role::kEventTime,  Role::kEntity,
                       Role::kAmount, Role::kLabel,   Role::kGroundTruth};

absl::StatusOr<int64_t> OptionalDuration(const ConfigNode& n, std::string_view key, int64_t def) {
  ConfigNode v = n[key];
  if (v.IsDefined() && v.IsScalar() && (v.Text() == "off" || v.Text() == "false")) return 0;
  return n.GetDurationMs(key, def);
}

absl::Status ParseBound(const ConfigNode& n, FieldSpec* f, bool is_min) {
  if (!n.IsDefined() || n.IsNull()) return absl::OkStatus();
  const std::string text = n.Text();
  switch (f->type) {
    case FieldType::kInt:
    case FieldType::kFloat: {
      VIGIL_ASSIGN_OR_RETURN(double d, n.Double());
      (is_min ? f->min : f->max) = d;
      return absl::OkStatus();
    }
    case FieldType::kDecimal: {
      Decimal d;
      if (!ParseDecimal(text, &d)) return n.Error(StrCat("'", text, "' is not a decimal"));
      (is_min ? f->min_decimal : f->max_decimal) = d;
      (is_min ? f->min : f->max) = d.ToDouble();
      return absl::OkStatus();
    }
    case FieldType::kTimestamp: {
      auto ms = core::ParseTimestamp(text);
      if (!ms.ok()) return n.Error(std::string(ms.status().message()));
      (is_min ? f->min : f->max) = static_cast<double>(*ms);
      return absl::OkStatus();
    }
    default:
      return n.Error(StrCat(is_min ? "min" : "max", " applies to int, float, decimal and "
                                  "timestamp fields, not to ", FieldTypeName(f->type)));
  }
}

absl::StatusOr<FieldSpec> ParseField(const std::string& name, const ConfigNode& n,
                                     const Schema& schema) {
  FieldSpec f;
  f.name = name;
  f.config_where = n.Where();
  const ConfigNode& node = n;
  // Short form: `amount: decimal`, the type alone (every setting below then
  // reads as absent: a scalar has no keys). Not parsed again as YAML: a
  // quoted "int\nmin: 5" would have set a minimum.
  const bool short_form = n.IsScalar();
  if (!short_form && !n.IsMap()) {
    return n.Error(StrCat("field '", name, "': expected a map of settings or a type name"));
  }
  if (!short_form) {
    VIGIL_RETURN_IF_ERROR(
        node.CheckKeys({"type", "required", "nullable", "min", "max", "max_length", "pattern",
                        "allowed", "values", "role", "entity", "currency", "currency_field",
                        "known_after", "pii", "unit", "description"}));
  }
  std::string type = n.Text();
  if (!short_form) {
    VIGIL_ASSIGN_OR_RETURN(type, node.GetString("type", ""));
  }
  if (type.empty()) return n.Error(StrCat("field '", name, "' needs a type"));
  bool found = false;
  for (FieldType t : kTypes) {
    if (type == FieldTypeName(t)) {
      f.type = t;
      found = true;
    }
  }
  if (!found) {
    return node["type"].Error(StrCat("field '", name, "': unknown type '", type,
                                           "' (string, int, float, decimal, bool, timestamp, enum)"));
  }
  VIGIL_ASSIGN_OR_RETURN(f.required, node.GetBool("required", false));
  VIGIL_ASSIGN_OR_RETURN(f.nullable, node.GetBool("nullable", false));
  VIGIL_RETURN_IF_ERROR(ParseBound(node["min"], &f, true));
  VIGIL_RETURN_IF_ERROR(ParseBound(node["max"], &f, false));
  if (f.min && f.max && *f.min > *f.max) {
    return node["max"].Error(StrCat("field '", name, "': max is below min"));
  }
  const bool stringy = f.type == FieldType::kString || f.type == FieldType::kEnum;
  VIGIL_ASSIGN_OR_RETURN(f.max_length, node.GetInt("max_length", stringy ? schema.default_max_string_length : 0));
  if (node["max_length"].IsDefined() && !stringy) {
    return node["max_length"].Error("max_length applies to string and enum fields");
  }
  // 0 would refuse every value but the empty string.
  if (stringy && f.max_length < 1) {
    return node["max_length"].Error(
        StrCat("field '", name, "': max_length must be at least 1 (bytes)"));
  }
  VIGIL_ASSIGN_OR_RETURN(f.pattern_text, node.GetString("pattern", ""));
  if (!f.pattern_text.empty()) {
    if (!stringy) return node["pattern"].Error("pattern applies to string and enum fields");
    RE2::Options opts;
    opts.set_log_errors(false);
    auto re = std::make_shared<re2::RE2>(f.pattern_text, opts);
    if (!re->ok()) {
      return node["pattern"].Error(StrCat("field '", name, "': bad pattern: ", re->error()));
    }
    f.pattern = std::move(re);
    f.fixed_pattern = FixedPattern::Compile(f.pattern_text);
  }
  ConfigNode allowed = node["allowed"].IsDefined() ? node["allowed"] : node["values"];
  if (allowed.IsDefined()) {
    if (!allowed.IsSequence() || allowed.size() == 0) {
      return allowed.Error("allowed: expected a non-empty list of values");
    }
    for (const ConfigNode& v : allowed.Items()) {
      VIGIL_ASSIGN_OR_RETURN(std::string s, v.String());
      f.allowed_list.push_back(s);
      if (f.type == FieldType::kInt) {
        VIGIL_ASSIGN_OR_RETURN(int64_t i, v.Int());
        f.allowed_ints.insert(i);
      } else if (stringy) {
        f.allowed_strings.insert(s);
      } else if (f.type == FieldType::kBool) {
        VIGIL_ASSIGN_OR_RETURN(bool b, v.Bool());
        f.allowed_ints.insert(b ? 1 : 0);
      } else {
        return v.Error(StrCat("allowed applies to string, enum, int and bool fields, not to ",
                                    FieldTypeName(f.type)));
      }
    }
  } else if (f.type == FieldType::kEnum) {
    return n.Error(StrCat("enum field '", name, "' needs `values: [...]`"));
  }
  VIGIL_ASSIGN_OR_RETURN(std::string role, node.GetString("role", "none"));
  found = false;
  for (Role r : kRoles) {
    if (role == RoleName(r)) {
      f.role = r;
      found = true;
    }
  }
  if (!found) {
    return node["role"].Error(StrCat(
        "field '", name, "': unknown role '", role,
        "' (event_id, event_time, entity, amount, label, ground_truth)"));
  }
  VIGIL_ASSIGN_OR_RETURN(f.entity, node.GetString("entity", ""));
  if (!f.entity.empty() && f.role != Role::kEntity) {
    return node["entity"].Error("entity: only for fields with role: entity");
  }
  if (f.role == Role::kEntity && f.entity.empty()) f.entity = name;
  VIGIL_ASSIGN_OR_RETURN(f.currency, node.GetString("currency", ""));
  VIGIL_ASSIGN_OR_RETURN(f.currency_field, node.GetString("currency_field", ""));
  if ((!f.currency.empty() || !f.currency_field.empty()) && f.role != Role::kAmount) {
    return n.Error("currency and currency_field are for fields with role: amount");
  }
  if (f.role == Role::kAmount) {
    if (f.type != FieldType::kDecimal && f.type != FieldType::kFloat && f.type != FieldType::kInt) {
      return n.Error(StrCat("amount field '", name, "' must be decimal, float or int"));
    }
    if (f.currency.empty() == f.currency_field.empty()) {
      return n.Error(StrCat("amount field '", name,
                                  "' needs exactly one of currency (fixed) or currency_field "
                                  "(the field naming its currency or asset)"));
    }
  }
  if (node["known_after"].IsDefined()) {
    if (f.role != Role::kLabel) return node["known_after"].Error("known_after: only for role: label");
    VIGIL_ASSIGN_OR_RETURN(f.known_after_ms, node.GetDurationMs("known_after", 0));
  } else if (f.role == Role::kLabel) {
    return n.Error(StrCat("label field '", name,
                                "' needs known_after: the delay after which it is known (e.g. 7d)"));
  }
  if ((f.role == Role::kEventId || f.role == Role::kEntity) && f.type == FieldType::kString) {
    f.id_like = true;
  }
  if (f.role == Role::kEventTime && f.type != FieldType::kTimestamp) {
    return n.Error(StrCat("event_time field '", name, "' must have type timestamp"));
  }
  if (f.role == Role::kEventId && f.type != FieldType::kString && f.type != FieldType::kInt) {
    return n.Error(StrCat("event_id field '", name, "' must be a string or an int"));
  }
  VIGIL_ASSIGN_OR_RETURN(std::string pii, node.GetString("pii", "none"));
  if (pii == "hash") {
    f.pii = PiiMode::kHash;
  } else if (pii == "redact") {
    f.pii = PiiMode::kRedact;
  } else if (pii != "none") {
    return node["pii"].Error(StrCat("pii: '", pii, "' (hash, redact or none)"));
  }
  VIGIL_ASSIGN_OR_RETURN(std::string unit, node.GetString("unit", "auto"));
  if (unit == "s") {
    f.epoch_unit = core::EpochUnit::kSeconds;
  } else if (unit == "ms") {
    f.epoch_unit = core::EpochUnit::kMilliseconds;
  } else if (unit != "auto") {
    return node["unit"].Error(StrCat("unit: '", unit, "' (s, ms or auto)"));
  }
  if (node["unit"].IsDefined() && f.type != FieldType::kTimestamp) {
    return node["unit"].Error("unit: only for timestamp fields");
  }
  return f;
}

FieldSpec Builtin(std::string name, FieldType type, bool required, Role role = Role::kNone) {
  FieldSpec f;
  f.name = std::move(name);
  f.type = type;
  f.required = required;
  f.role = role;
  f.config_where = "<built-in label event>";
  if (type == FieldType::kString) f.max_length = 512;
  return f;
}

// Indexes fields, adds the implicit id/time fields, checks roles.
absl::Status FinishType(EventTypeSpec* t, const ConfigNode& where) {
  auto role_field = [&](Role r) {
    int idx = -1;
    for (const FieldSpec& f : t->fields) {
      if (f.role != r) continue;
      if (idx >= 0) return -2;
      idx = f.index;
    }
    return idx;
  };
  for (size_t i = 0; i < t->fields.size(); ++i) t->fields[i].index = static_cast<int>(i);
  t->id_field = role_field(Role::kEventId);
  t->time_field = role_field(Role::kEventTime);
  if (t->id_field == -2) return where.Error(StrCat("event type '", t->name, "' has two event_id fields"));
  if (t->time_field == -2) return where.Error(StrCat("event type '", t->name, "' has two event_time fields"));
  if (t->id_field < 0) {
    FieldSpec f = Builtin("event_id", FieldType::kString, true, Role::kEventId);
    f.id_like = true;
    f.index = static_cast<int>(t->fields.size());
    t->id_field = f.index;
    t->fields.push_back(std::move(f));
  }
  if (t->time_field < 0) {
    FieldSpec f = Builtin("time", FieldType::kTimestamp, true, Role::kEventTime);
    f.index = static_cast<int>(t->fields.size());
    t->time_field = f.index;
    t->fields.push_back(std::move(f));
  }
  t->fields[t->id_field].required = true;
  t->fields[t->time_field].required = true;
  for (const FieldSpec& f : t->fields) {
    if (f.name == "event_type") {
      return where.Error(StrCat("event type '", t->name,
                                      "': 'event_type' is reserved for the event's type"));
    }
    if (!t->json_keys.emplace(f.name, f.index).second) {
      return where.Error(StrCat("event type '", t->name, "': field '", f.name, "' twice"));
    }
    for (size_t dot = f.name.find('.'); dot != std::string::npos; dot = f.name.find('.', dot + 1)) {
      t->object_prefixes.insert(f.name.substr(0, dot));
    }
  }
  t->json_keys.emplace("event_id", t->id_field);
  t->json_keys.emplace("time", t->time_field);
  for (const FieldSpec& f : t->fields) {
    if (f.role == Role::kAmount && !f.currency_field.empty() && !t->Find(f.currency_field)) {
      return where.Error(StrCat("event type '", t->name, "': amount field '", f.name,
                                      "' names currency_field '", f.currency_field,
                                      "', which is not a field of this type"));
    }
  }
  return absl::OkStatus();
}

EventTypeSpec MakeLabelType(const Schema& s) {
  EventTypeSpec t;
  t.name = "label";
  t.is_label = true;
  t.fields.push_back(Builtin("event_id", FieldType::kString, true, Role::kEventId));
  t.fields.back().id_like = true;
  t.fields.push_back(Builtin("time", FieldType::kTimestamp, true, Role::kEventTime));
  FieldSpec kind = Builtin("kind", FieldType::kString, true);
  kind.max_length = 64;
  for (const std::string& k : s.label_kinds) {
    kind.allowed_strings.insert(k);
    kind.allowed_list.push_back(k);
  }
  t.fields.push_back(std::move(kind));
  t.fields.push_back(Builtin("target_event_id", FieldType::kString, false));
  t.fields.back().id_like = true;
  t.fields.back().nullable = true;
  t.fields.push_back(Builtin("target_entity.key", FieldType::kString, false));
  t.fields.push_back(Builtin("target_entity.value", FieldType::kString, false));
  t.fields.back().id_like = true;
  FieldSpec value = Builtin("value", FieldType::kInt, true);
  value.allowed_ints = {0, 1};
  value.allowed_list = {"0", "1"};
  t.fields.push_back(std::move(value));
  return t;
}

absl::StatusOr<std::shared_ptr<const Schema>> Build(const ConfigNode& root, std::string file,
                                                    std::string_view text) {
  auto s = std::make_shared<Schema>();
  s->file = std::move(file);
  s->content_hash = Sha256Hex(root.CanonicalText());
  s->text_hash = Sha256Hex(text);
  if (!root.IsMap()) return root.Error("a schema is a map with at least `event_types:`");
  VIGIL_RETURN_IF_ERROR(root.CheckKeys({"name", "version", "description", "unknown_fields",
                                        "limits", "duplicates", "time_bounds", "csv", "pii",
                                        "labels", "currencies", "event_types"}));
  VIGIL_ASSIGN_OR_RETURN(s->name, root.GetString("name", "schema"));
  VIGIL_ASSIGN_OR_RETURN(int64_t version, root.GetInt("version", 1));
  if (version != 1) return root["version"].Error("this vigil reads schema version 1");
  VIGIL_ASSIGN_OR_RETURN(std::string unknown, root.GetString("unknown_fields", "reject"));
  if (unknown != "reject" && unknown != "ignore") {
    return root["unknown_fields"].Error("unknown_fields: reject or ignore");
  }
  const ConfigNode limits = root["limits"];
  VIGIL_RETURN_IF_ERROR(limits.CheckKeys({"max_record_bytes", "max_string_length"}));
  VIGIL_ASSIGN_OR_RETURN(s->max_record_bytes, limits.GetInt("max_record_bytes", s->max_record_bytes));
  if (s->max_record_bytes < 64 || s->max_record_bytes > (64 << 20)) {
    return limits["max_record_bytes"].Error("max_record_bytes: between 64 and 67108864");
  }
  VIGIL_ASSIGN_OR_RETURN(s->default_max_string_length,
                         limits.GetInt("max_string_length", s->default_max_string_length));
  if (s->default_max_string_length < 1) {
    return limits["max_string_length"].Error("max_string_length must be at least 1 (bytes)");
  }
  const ConfigNode dup = root["duplicates"];
  VIGIL_RETURN_IF_ERROR(dup.CheckKeys({"memory"}));
  VIGIL_ASSIGN_OR_RETURN(s->duplicate_memory, dup.GetInt("memory", s->duplicate_memory));
  if (s->duplicate_memory < 0) return dup["memory"].Error("memory: 0 (off) or more event ids");
  const ConfigNode tb = root["time_bounds"];
  VIGIL_RETURN_IF_ERROR(tb.CheckKeys({"max_ahead_of_latest", "max_behind_latest",
                                      "max_ahead_of_wall_clock", "max_behind_wall_clock"}));
  VIGIL_ASSIGN_OR_RETURN(s->max_ahead_of_latest_ms,
                         OptionalDuration(tb, "max_ahead_of_latest", s->max_ahead_of_latest_ms));
  VIGIL_ASSIGN_OR_RETURN(s->max_behind_latest_ms,
                         OptionalDuration(tb, "max_behind_latest", s->max_behind_latest_ms));
  VIGIL_ASSIGN_OR_RETURN(s->max_ahead_of_wall_clock_ms,
                         OptionalDuration(tb, "max_ahead_of_wall_clock", 0));
  VIGIL_ASSIGN_OR_RETURN(s->max_behind_wall_clock_ms,
                         OptionalDuration(tb, "max_behind_wall_clock", 0));
  VIGIL_RETURN_IF_ERROR(root["pii"].CheckKeys({"key_env"}));
  VIGIL_ASSIGN_OR_RETURN(s->pii_key_env, root["pii"].GetString("key_env", s->pii_key_env));
  const ConfigNode labels = root["labels"];
  VIGIL_RETURN_IF_ERROR(labels.CheckKeys({"kinds"}));
  VIGIL_ASSIGN_OR_RETURN(const std::vector<ConfigNode> kinds,
                         labels["kinds"].ListItems("labels.kinds"));
  for (const ConfigNode& k : kinds) {
    VIGIL_ASSIGN_OR_RETURN(std::string kind, k.String());
    s->label_kinds.push_back(kind);
  }
  const ConfigNode cur = root["currencies"];
  VIGIL_RETURN_IF_ERROR(cur.CheckKeys({"reference", "rates"}));
  VIGIL_ASSIGN_OR_RETURN(s->reference_currency, cur.GetString("reference", ""));
  VIGIL_ASSIGN_OR_RETURN(const auto rates, cur["rates"].MapEntries("currencies.rates"));
  for (const auto& [code, rate] : rates) {
    VIGIL_ASSIGN_OR_RETURN(double r, rate.Double());
    if (!(r > 0)) return rate.Error(StrCat("rate for ", code, " must be positive"));
    s->rates[code] = r;
  }
  if (!s->rates.empty() && s->reference_currency.empty()) {
    return cur.Error("currencies: rates need a `reference` currency");
  }

  const ConfigNode types = root["event_types"];
  if (!types.IsMap() || types.size() == 0) {
    return types.Error("event_types: expected a map of event type names to their fields");
  }
  for (const auto& [tname, tnode] : types.Entries()) {
    if (tname == "label") {
      return tnode.Error("event type 'label' is built in (see docs/schema.md); choose another name");
    }
    EventTypeSpec t;
    t.name = tname;
    t.unknown_fields = unknown == "reject" ? UnknownFields::kReject : UnknownFields::kIgnore;
    VIGIL_RETURN_IF_ERROR(tnode.CheckKeys({"description", "fields", "unknown_fields"}));
    VIGIL_ASSIGN_OR_RETURN(std::string tu, tnode.GetString("unknown_fields", unknown));
    if (tu != "reject" && tu != "ignore") return tnode["unknown_fields"].Error("reject or ignore");
    t.unknown_fields = tu == "reject" ? UnknownFields::kReject : UnknownFields::kIgnore;
    const ConfigNode fields = tnode["fields"];
    if (!fields.IsMap()) return tnode.Error(StrCat("event type '", tname, "' needs `fields:`"));
    for (const auto& [fname, fnode] : fields.Entries()) {
      VIGIL_ASSIGN_OR_RETURN(FieldSpec f, ParseField(fname, fnode, *s));
      t.fields.push_back(std::move(f));
    }
    VIGIL_RETURN_IF_ERROR(FinishType(&t, tnode));
    t.index = static_cast<int>(s->types.size());
    s->type_index[t.name] = t.index;
    s->types.push_back(std::move(t));
  }
  EventTypeSpec lt = MakeLabelType(*s);
  VIGIL_RETURN_IF_ERROR(FinishType(&lt, root));
  lt.index = static_cast<int>(s->types.size());
  s->label_type = lt.index;
  s->type_index["label"] = lt.index;
  s->types.push_back(std::move(lt));

  for (const EventTypeSpec& t : s->types) {
    for (const FieldSpec& f : t.fields) {
      if (f.role == Role::kEntity) s->entity_fields.insert(f.name);
      if (f.pii == PiiMode::kNone) continue;
      s->has_pii = true;
      for (std::string n : {f.name, f.name.substr(f.name.rfind('.') + 1)}) {
        PiiMode& m = s->pii_by_name[n];
        if (m != PiiMode::kHash) m = f.pii;
      }
    }
  }
  const ConfigNode csv = root["csv"];
  VIGIL_RETURN_IF_ERROR(csv.CheckKeys({"event_type"}));
  VIGIL_ASSIGN_OR_RETURN(std::string csv_type, csv.GetString("event_type", ""));
  if (!csv_type.empty()) {
    const EventTypeSpec* t = s->FindType(csv_type);
    if (!t) return csv["event_type"].Error(StrCat("csv.event_type: no event type '", csv_type, "'"));
    s->csv_type = t->index;
  } else if (s->types.size() == 2) {
    s->csv_type = 0;  // the only declared type
  }
  return std::shared_ptr<const Schema>(std::move(s));
}

}  // namespace

const char* FieldTypeName(FieldType t) {
  switch (t) {
    case FieldType::kString: return "string";
    case FieldType::kInt: return "int";
    case FieldType::kFloat: return "float";
    case FieldType::kDecimal: return "decimal";
    case FieldType::kBool: return "bool";
    case FieldType::kTimestamp: return "timestamp";
    case FieldType::kEnum: return "enum";
  }
  return "?";
}

const char* RoleName(Role r) {
  switch (r) {
    case Role::kNone: return "none";
    case Role::kEventId: return "event_id";
    case Role::kEventTime: return "event_time";
    case Role::kEntity: return "entity";
    case Role::kAmount: return "amount";
    case Role::kLabel: return "label";
    case Role::kGroundTruth: return "ground_truth";
  }
  return "?";
}

const FieldSpec* EventTypeSpec::Find(std::string_view name) const {
  for (const FieldSpec& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const EventTypeSpec* Schema::FindType(std::string_view name) const {
  auto it = type_index.find(name);
  return it == type_index.end() ? nullptr : &types[it->second];
}

absl::StatusOr<std::shared_ptr<const Schema>> Schema::Load(const std::string& path) {
  VIGIL_ASSIGN_OR_RETURN(const std::string text, core::ReadFile(path));
  VIGIL_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadString(text, path));
  return Build(root, path, text);
}

absl::StatusOr<std::shared_ptr<const Schema>> Schema::LoadString(std::string_view yaml,
                                                                 std::string_view name) {
  VIGIL_ASSIGN_OR_RETURN(ConfigNode root, ConfigNode::LoadString(yaml, name));
  return Build(root, std::string(name), yaml);
}

}  // namespace vigil::event
