#include "event/profile.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/file.h"
#include "core/strings.h"
#include "core/time.h"
#include "nlohmann/json.hpp"

namespace vigil::event {
namespace {

using Json = nlohmann::ordered_json;

bool IsNumeric(FieldType t) {
  return t == FieldType::kInt || t == FieldType::kFloat || t == FieldType::kDecimal ||
         t == FieldType::kTimestamp;
}
bool IsCategorical(FieldType t) {
  return t == FieldType::kString || t == FieldType::kEnum || t == FieldType::kBool ||
         t == FieldType::kInt;
}

// JSON has no NaN: write null.
Json Num(double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); }
double NumOr(const Json& j, double def) { return j.is_number() ? j.get<double>() : def; }

}  // namespace

double ColumnStats::Quantile(double q) const {
  constexpr size_t n = std::size(kProfileQuantiles);
  if (quantiles.size() != n) return NAN;
  if (q <= 0) return quantiles.front();
  if (q >= 1) return quantiles.back();
  for (size_t i = 1; i < n; ++i) {
    if (q <= kProfileQuantiles[i]) {
      const double a = kProfileQuantiles[i - 1], b = kProfileQuantiles[i];
      const double w = (q - a) / (b - a);
      return quantiles[i - 1] + w * (quantiles[i] - quantiles[i - 1]);
    }
  }
  return quantiles.back();
}

ColumnProfiler::ColumnProfiler(bool numeric, bool categorical)
    : numeric_(numeric), categorical_(categorical), top_(64) {}

void ColumnProfiler::AddNumber(double v) noexcept {
  if (std::isnan(v)) {
    ++missing_;
    return;
  }
  ++count_;
  const double d = v - mean_;
  mean_ += d / static_cast<double>(count_);
  m2_ += d * (v - mean_);
  quantiles_.Add(v);
}

void ColumnProfiler::AddCategory(std::string_view v) {
  if (!numeric_) ++count_;
  distinct_.Add(v);
  if (categorical_) top_.Add(v);
}

void ColumnProfiler::Merge(const ColumnProfiler& o) {
  // Chan et al.'s parallel variance.
  const int64_t n = count_ + o.count_;
  if (numeric_ && n > 0) {
    const double d = o.mean_ - mean_;
    m2_ += o.m2_ + d * d * static_cast<double>(count_) * static_cast<double>(o.count_) /
                       static_cast<double>(n);
    mean_ += d * static_cast<double>(o.count_) / static_cast<double>(n);
  }
  count_ = n;
  missing_ += o.missing_;
  quantiles_.Merge(o.quantiles_);
  distinct_.Merge(o.distinct_);
  top_.Merge(o.top_);
}

ColumnStats ColumnProfiler::Stats(std::string name, std::string type, std::string role) const {
  ColumnStats s;
  s.name = std::move(name);
  s.type = std::move(type);
  s.role = std::move(role);
  s.count = count_;
  s.missing = missing_;
  s.numeric = numeric_;
  if (numeric_ && count_ > 0) {
    s.min = quantiles_.min();
    s.max = quantiles_.max();
    s.mean = mean_;
    s.std = count_ > 1 ? std::sqrt(m2_ / static_cast<double>(count_ - 1)) : 0;
    for (double q : kProfileQuantiles) s.quantiles.push_back(quantiles_.Quantile(q));
  }
  s.distinct = std::round(distinct_.Estimate());
  if (categorical_) {
    const bool complete = top_.exact();
    for (const auto& e : top_.Top(complete ? top_.capacity() : kProfileTopK)) {
      s.top.push_back({e.value, static_cast<int64_t>(e.count)});
    }
    s.top_complete = complete;
    if (complete) s.distinct = static_cast<double>(top_.size());
  }
  return s;
}

const ColumnStats* Profile::Find(std::string_view name) const {
  for (const ColumnStats& c : columns) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::string Profile::ToJson() const {
  Json j;
  j["format"] = format;
  j["source"] = source;
  j["schema_hash"] = schema_hash;
  j["records"] = records;
  j["records_by_type"] = records_by_type;
  j["quantile_levels"] = std::vector<double>(std::begin(kProfileQuantiles), std::end(kProfileQuantiles));
  Json cols = Json::object();
  for (const ColumnStats& c : columns) {
    Json o;
    o["type"] = c.type;
    if (!c.role.empty() && c.role != "none") o["role"] = c.role;
    o["count"] = c.count;
    o["missing"] = c.missing;
    o["missing_rate"] = c.missing_rate();
    if (c.numeric && c.count > 0) {
      o["min"] = Num(c.min);
      o["max"] = Num(c.max);
      o["mean"] = Num(c.mean);
      o["std"] = Num(c.std);
      Json q = Json::array();
      for (double v : c.quantiles) q.push_back(Num(v));
      o["quantiles"] = q;
    }
    o["distinct"] = c.distinct;
    if (!c.top.empty() || c.top_complete) {
      Json t = Json::array();
      for (const auto& e : c.top) {
        const int64_t total = c.count;
        t.push_back({{"value", e.value},
                     {"count", e.count},
                     {"frequency", total > 0 ? static_cast<double>(e.count) / static_cast<double>(total) : 0.0}});
      }
      o["top"] = t;
      o["top_complete"] = c.top_complete;
    }
    cols[c.name] = o;
  }
  j["columns"] = cols;
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::StatusOr<Profile> Profile::FromJson(std::string_view text, std::string_view name) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(StrCat(name, ": not a JSON profile"));
  }
  Profile p;
  p.format = j.value("format", "");
  if (p.format != "vigil.profile/1") {
    return absl::InvalidArgumentError(
        StrCat(name, ": format is '", p.format, "'; this vigil reads vigil.profile/1"));
  }
  p.source = j.value("source", "");
  p.schema_hash = j.value("schema_hash", "");
  p.records = j.value("records", int64_t{0});
  if (j.contains("records_by_type") && j["records_by_type"].is_object()) {
    for (const auto& [k, v] : j["records_by_type"].items()) {
      if (v.is_number_integer()) p.records_by_type[k] = v.get<int64_t>();
    }
  }
  if (!j.contains("columns") || !j["columns"].is_object()) {
    return absl::InvalidArgumentError(StrCat(name, ": no `columns` object"));
  }
  for (const auto& [cname, o] : j["columns"].items()) {
    if (!o.is_object()) return absl::InvalidArgumentError(StrCat(name, ": column '", cname, "' is not an object"));
    ColumnStats c;
    c.name = cname;
    c.type = o.value("type", "");
    c.role = o.value("role", "none");
    c.count = o.value("count", int64_t{0});
    c.missing = o.value("missing", int64_t{0});
    if (o.contains("quantiles") && o["quantiles"].is_array()) {
      c.numeric = true;
      c.min = NumOr(o.value("min", Json()), NAN);
      c.max = NumOr(o.value("max", Json()), NAN);
      c.mean = NumOr(o.value("mean", Json()), NAN);
      c.std = NumOr(o.value("std", Json()), NAN);
      for (const Json& q : o["quantiles"]) c.quantiles.push_back(NumOr(q, NAN));
      if (c.quantiles.size() != std::size(kProfileQuantiles)) {
        return absl::InvalidArgumentError(StrCat(name, ": column '", cname, "' has ",
                                                       c.quantiles.size(), " quantiles; expected ",
                                                       std::size(kProfileQuantiles)));
      }
    }
    c.distinct = o.value("distinct", 0.0);
    if (o.contains("top") && o["top"].is_array()) {
      for (const Json& t : o["top"]) {
        if (!t.is_object() || !t.contains("value") || !t["value"].is_string()) continue;
        c.top.push_back({t["value"].get<std::string>(), t.value("count", int64_t{0})});
      }
      c.top_complete = o.value("top_complete", false);
    }
    p.columns.push_back(std::move(c));
  }
  return p;
}

absl::StatusOr<Profile> Profile::Load(const std::string& path) {
  VIGIL_ASSIGN_OR_RETURN(std::string text, core::ReadFile(path));
  return FromJson(text, path);
}

absl::Status Profile::Save(const std::string& path) const {
  std::ofstream out(path, std::ios::binary);
  out << ToJson();
  out.close();
  if (!out) return absl::DataLossError(StrCat(path, ": cannot write profile"));
  return absl::OkStatus();
}

ProfileBuilder::ProfileBuilder(std::shared_ptr<const Schema> schema, const PiiHasher* hasher)
    : schema_(std::move(schema)), hasher_(hasher) {
  for (const EventTypeSpec& t : schema_->types) {
    std::vector<ColumnProfiler> cols;
    for (const FieldSpec& f : t.fields) {
      const bool categorical = IsCategorical(f.type) && f.pii != PiiMode::kRedact &&
                               f.role != Role::kEventId;
      cols.emplace_back(IsNumeric(f.type), categorical);
    }
    cols_.push_back(std::move(cols));
  }
  records_.assign(schema_->types.size(), 0);
}

void ProfileBuilder::Add(const Record& rec) {
  const EventTypeSpec& t = *rec.type;
  ++records_[t.index];
  std::vector<ColumnProfiler>& cols = cols_[t.index];
  for (const FieldSpec& f : t.fields) {
    const Value& v = rec[f.index];
    ColumnProfiler& c = cols[f.index];
    if (!v.present()) {
      c.AddMissing();
      continue;
    }
    if (IsNumeric(f.type)) c.AddNumber(f.type == FieldType::kTimestamp ? static_cast<double>(v.i) : v.d);
    const PiiMode pii = EffectivePii(&f, f.name, &rec, *schema_);
    if (pii == PiiMode::kHash) {
      c.AddCategory(hasher_->Hash(v.text));
    } else if (pii == PiiMode::kRedact) {
      c.AddCategory(v.text);  // counted for distinct only; no values kept
    } else {
      c.AddCategory(f.type == FieldType::kBool ? (v.b ? "true" : "false") : v.text);
    }
  }
}

Profile ProfileBuilder::Finish(std::string source) const {
  Profile p;
  p.source = std::move(source);
  p.schema_hash = schema_->content_hash;
  for (const EventTypeSpec& t : schema_->types) {
    p.records += records_[t.index];
    if (records_[t.index] == 0) continue;
    p.records_by_type[t.name] = records_[t.index];
    for (const FieldSpec& f : t.fields) {
      p.columns.push_back(cols_[t.index][f.index].Stats(StrCat(t.name, ".", f.name),
                                                        FieldTypeName(f.type), RoleName(f.role)));
    }
  }
  return p;
}

OutlierChecker::OutlierChecker(Profile profile, const Schema& schema, double k)
    : profile_(std::move(profile)) {
  for (const EventTypeSpec& t : schema.types) {
    std::vector<Check_> checks(t.fields.size());
    for (const FieldSpec& f : t.fields) {
      if (f.role == Role::kEventId || f.role == Role::kEventTime || f.role == Role::kEntity ||
          f.type == FieldType::kTimestamp || f.pii != PiiMode::kNone) {
        continue;
      }
      const ColumnStats* s = profile_.Find(StrCat(t.name, ".", f.name));
      if (!s || s->count == 0) continue;
      Check_& c = checks[f.index];
      c.stats = s;
      if (s->numeric && s->quantiles.size() == std::size(kProfileQuantiles) &&
          f.type != FieldType::kBool) {
        const double p1 = s->Quantile(0.01), p99 = s->Quantile(0.99);
        const double span = p99 - p1;
        if (std::isfinite(span)) {
          c.lo = p1 - k * span;
          c.hi = p99 + k * span;
          c.range = span > 0;
        }
      }
      if (s->top_complete && (f.type == FieldType::kString || f.type == FieldType::kEnum ||
                              f.type == FieldType::kBool)) {
        c.categories = true;
        for (const auto& e : s->top) c.seen.insert(e.value);
      }
    }
    checks_.push_back(std::move(checks));
  }
}

bool OutlierChecker::Check(const Record& rec, const Validator& v,
                           std::vector<Violation>* warnings) const {
  warnings->clear();
  const std::vector<Check_>& checks = checks_[rec.type->index];
  for (const FieldSpec& f : rec.type->fields) {
    const Check_& c = checks[f.index];
    if (!c.stats || !rec[f.index].present()) continue;
    const Value& val = rec[f.index];
    if (c.range && (val.d < c.lo || val.d > c.hi)) {
      warnings->push_back(Violation{
          Rule::kOutlier, f.name, v.Printable(&f, val.text, &rec),
          StrCat("field '", f.name, "': ", v.Printable(&f, val.text, &rec),
                       " is far outside the profile's robust range [", c.lo, ", ", c.hi, "]")});
    }
    if (c.categories) {
      const std::string_view text = f.type == FieldType::kBool ? (val.b ? "true" : "false") : val.text;
      if (!c.seen.contains(text)) {
        warnings->push_back(Violation{
            Rule::kUnseenCategory, f.name, v.Printable(&f, text, &rec),
            StrCat("field '", f.name, "': '", v.Printable(&f, text, &rec),
                         "' never occurs in the profile")});
      }
    }
  }
  return !warnings->empty();
}

}  // namespace vigil::event
