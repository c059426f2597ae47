#include "model/dataset.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/file.h"
#include "core/string_map.h"
#include "core/strings.h"
#include "core/time.h"
#include "event/line_reader.h"
#include "event/pii.h"
#include "nlohmann/json.hpp"

namespace vigil::model {
namespace {

bool IsDate(std::string_view s) {
  return s.size() == 10 && s[4] == '-' && s[7] == '-';
}

}  // namespace

bool IsMissingCell(std::string_view v) {
  // pandas.read_csv's default na_values, so a table means the same to both.
  static constexpr std::string_view kMissing[] = {
      "",     "#N/A", "#N/A N/A", "#NA",  "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
      "<NA>", "N/A",  "NA",       "NULL", "NaN",     "None",     "n/a",  "nan",  "null"};
  if (v.size() > 8) return false;
  for (std::string_view m : kMissing) {
    if (v == m) return true;
  }
  return false;
}

namespace {

// A number cell: from_chars' grammar, plus a leading '+'.
bool ParseNumber(std::string_view s, double* out) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

absl::StatusOr<TimeRange> ParseTimeRange(std::string_view text) {
  TimeRange r;
  r.text = std::string(text);
  const size_t dots = text.find("..");
  if (dots == std::string_view::npos) {
    return absl::InvalidArgumentError(
        StrCat("range '", text, "': expected FROM..TO, for example 2018-07-25..2018-07-31"));
  }
  std::string_view from = text.substr(0, dots), to = text.substr(dots + 2);
  if (from.empty() || to.empty()) {
    return absl::InvalidArgumentError(StrCat("range '", text, "': FROM and TO are both needed"));
  }
  auto f = core::ParseTimestamp(from);
  if (!f.ok()) return absl::InvalidArgumentError(StrCat("range '", text, "': FROM ", f.status().message()));
  auto t = core::ParseTimestamp(to);
  if (!t.ok()) return absl::InvalidArgumentError(StrCat("range '", text, "': TO ", t.status().message()));
  r.from_ms = *f;
  r.to_ms = IsDate(to) ? core::DayStart(*t) + core::kMsPerDay : *t + 1;
  if (r.to_ms <= r.from_ms) {
    return absl::InvalidArgumentError(StrCat("range '", text, "': TO is before FROM"));
  }
  return r;
}

// ---------------------------------------------------------------- CsvTable

namespace {

// Splits one CSV record; quoted cells with "" are unescaped into `scratch`
// (reserved up front so earlier views stay valid).
void SplitRecord(std::string_view rec, std::vector<std::string_view>* cells, std::string* scratch) {
  cells->clear();
  scratch->clear();
  scratch->reserve(rec.size());
  size_t i = 0;
  while (true) {
    if (i < rec.size() && rec[i] == '"') {
      size_t j = i + 1;
      bool escaped = false;
      while (j < rec.size()) {
        if (rec[j] == '"') {
          if (j + 1 < rec.size() && rec[j + 1] == '"') {
            escaped = true;
            j += 2;
            continue;
          }
          break;
        }
        ++j;
      }
      std::string_view inner = rec.substr(i + 1, j - i - 1);
      if (escaped) {
        const size_t start = scratch->size();
        for (size_t k = 0; k < inner.size(); ++k) {
          scratch->push_back(inner[k]);
          if (inner[k] == '"') ++k;
        }
        cells->emplace_back(scratch->data() + start, scratch->size() - start);
      } else {
        cells->push_back(inner);
      }
      i = std::min(j + 1, rec.size());
      // Anything between the closing quote and the comma is ignored.
      const size_t comma = rec.find(',', i);
      if (comma == std::string_view::npos) return;
      i = comma + 1;
    } else {
      const size_t comma = rec.find(',', i);
      if (comma == std::string_view::npos) {
        cells->push_back(rec.substr(std::min(i, rec.size())));
        return;
      }
      cells->push_back(rec.substr(i, comma - i));
      i = comma + 1;
    }
  }
}

}  // namespace

absl::StatusOr<CsvTable> CsvTable::Read(const std::string& path) {
  event::LineReaderOptions o;
  o.csv_quotes = true;
  o.max_record_bytes = 16 << 20;
  auto reader = event::LineReader::Open(path, o);
  if (!reader.ok()) return reader.status();
  return Load(**reader, path);
}

absl::StatusOr<CsvTable> CsvTable::FromString(std::string text, std::string name) {
  event::LineReaderOptions o;
  o.csv_quotes = true;
  auto reader = event::LineReader::FromString(std::move(text), o);
  return Load(*reader, std::move(name));
}

absl::StatusOr<CsvTable> CsvTable::Load(event::LineReader& reader, std::string name) {
  CsvTable t;
  t.path_ = std::move(name);
  event::LineReader::Line line;
  std::vector<std::string_view> cells;
  std::string scratch;
  event::Sha256Stream hash;
  bool have_header = false;
  size_t width = 0;
  t.offsets_.push_back(0);
  while (reader.Next(&line)) {
    hash.Update(line.text);
    hash.Update("\n");
    if (line.truncated) {
      return absl::InvalidArgumentError(
          StrCat(t.path_, ":", line.line_no, ": record longer than 16 MB"));
    }
    if (!have_header) {
      SplitRecord(line.text, &cells, &scratch);
      for (std::string_view c : cells) t.header_.emplace_back(c);
      if (t.header_.empty() || (t.header_.size() == 1 && t.header_[0].empty())) {
        return absl::InvalidArgumentError(StrCat(t.path_, ": empty header"));
      }
      width = t.header_.size();
      have_header = true;
      continue;
    }
    if (line.text.empty()) continue;
    SplitRecord(line.text, &cells, &scratch);
    if (cells.size() != width) {
      return absl::InvalidArgumentError(StrCat(t.path_, ":", line.line_no, ": ", cells.size(),
                                               " cells where the header has ", width));
    }
    t.text_.append(line.text);
    t.offsets_.push_back(t.text_.size());
    t.lines_.push_back(line.line_no);
  }
  if (!reader.status().ok()) return reader.status();
  if (!have_header) return absl::InvalidArgumentError(StrCat(t.path_, ": empty file (no header)"));
  t.hash_ = hash.Hex();
  return t;
}

int CsvTable::Column(std::string_view name) const {
  for (size_t i = 0; i < header_.size(); ++i) {
    if (header_[i] == name) return static_cast<int>(i);
  }
  return -1;
}

void CsvTable::Split(size_t row, std::vector<std::string_view>* cells, std::string* scratch) const {
  SplitRecord(std::string_view(text_).substr(offsets_[row], offsets_[row + 1] - offsets_[row]),
              cells, scratch);
}

std::string_view CsvTable::Cell(size_t row, int col, std::vector<std::string_view>* cells,
                                std::string* scratch) const {
  Split(row, cells, scratch);
  return (*cells)[static_cast<size_t>(col)];
}

// ---------------------------------------------------------------- columns

absl::StatusOr<TableColumns> ResolveColumns(const CsvTable& table, const ColumnOptions& options) {
  TableColumns c;
  nlohmann::json meta;
  const std::string meta_path = table.path() + ".meta.json";
  if (std::filesystem::exists(meta_path)) {
    VIGIL_ASSIGN_OR_RETURN(std::string text, core::ReadFile(meta_path));
    meta = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (meta.is_discarded() || !meta.is_object()) {
      return absl::InvalidArgumentError(StrCat(meta_path, ": not a JSON object"));
    }
    c.from_meta = true;
  }
  auto meta_str = [&](const char* key, std::string fallback) {
    if (c.from_meta && meta.contains(key) && meta[key].is_string()) return meta[key].get<std::string>();
    return fallback;
  };
  c.id_name = !options.id.empty() ? options.id : meta_str("id_column", "event_id");
  c.time_name = !options.time.empty() ? options.time : meta_str("time_column", "event_time");
  c.label_name = options.label;
  c.spec_hash = meta_str("spec_hash", "");
  c.spec_legacy_hash = meta_str("spec_legacy_hash", "");
  c.schema_hash = meta_str("schema_hash", "");

  auto need = [&](const std::string& name, const char* what, const char* flag) -> absl::StatusOr<int> {
    const int col = table.Column(name);
    if (col < 0) {
      return absl::InvalidArgumentError(StrCat(table.path(), ": no ", what, " column '", name,
                                               "' (name it with ", flag, "); columns: ",
                                               StrJoin(table.header(), ", ")));
    }
    return col;
  };
  c.time = table.Column(c.time_name);
  if (c.time < 0 && !options.time_optional) {
    VIGIL_ASSIGN_OR_RETURN(c.time, need(c.time_name, "time", "--time"));
  }
  c.id = table.Column(c.id_name);
  if (!options.id.empty() && c.id < 0) {
    VIGIL_ASSIGN_OR_RETURN(c.id, need(c.id_name, "id", "--id"));
  }
  if (!c.label_name.empty()) {
    VIGIL_ASSIGN_OR_RETURN(c.label, need(c.label_name, "label", "--label"));
  }

  if (c.from_meta && meta.contains("feature_columns") && meta["feature_columns"].is_array()) {
    for (const auto& f : meta["feature_columns"]) {
      if (!f.is_string()) return absl::InvalidArgumentError(StrCat(meta_path, ": feature_columns holds a non-string"));
      const std::string name = f.get<std::string>();
      if (std::find(options.drop.begin(), options.drop.end(), name) != options.drop.end()) continue;
      const int col = table.Column(name);
      if (col < 0) {
        return absl::InvalidArgumentError(
            StrCat(table.path(), ": feature column '", name, "' listed in ", meta_path, " is missing"));
      }
      if (col == c.label) {
        return absl::InvalidArgumentError(StrCat("--label ", name, " is a feature column in ", meta_path,
                                                 "; a label is never a feature"));
      }
      c.inputs.push_back(col);
    }
    return c;
  }
  for (const std::string& d : options.drop) {
    if (table.Column(d) < 0) {
      return absl::InvalidArgumentError(StrCat("--drop ", d, ": no such column in ", table.path()));
    }
  }
  for (size_t i = 0; i < table.header().size(); ++i) {
    const int col = static_cast<int>(i);
    if (col == c.id || col == c.time || col == c.label) continue;
    if (std::find(options.drop.begin(), options.drop.end(), table.header()[i]) != options.drop.end()) continue;
    c.inputs.push_back(col);
  }
  return c;
}

// ---------------------------------------------------------------- layout

bool FeatureLayout::has_categorical() const {
  for (const Input& in : inputs) {
    if (in.categorical) return true;
  }
  return false;
}

nlohmann::ordered_json FeatureLayout::ToJson() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::array();
  for (const Input& in : inputs) {
    nlohmann::ordered_json e;
    e["column"] = in.column;
    e["type"] = in.categorical ? "categorical" : "numeric";
    if (in.categorical) e["categories"] = in.categories;
    j.push_back(e);
  }
  return j;
}

absl::StatusOr<FeatureLayout> FeatureLayout::FromJson(const nlohmann::ordered_json& j) {
  FeatureLayout l;
  if (!j.is_array()) return absl::InvalidArgumentError("inputs: expected an array");
  for (const auto& e : j) {
    if (!e.is_object() || !e.contains("column") || !e["column"].is_string()) {
      return absl::InvalidArgumentError("inputs: every entry needs a string 'column'");
    }
    Input in;
    in.column = e["column"].get<std::string>();
    in.categorical = e.value("type", "numeric") == "categorical";
    in.first = l.feature_names.size();
    if (in.categorical) {
      if (!e.contains("categories") || !e["categories"].is_array()) {
        return absl::InvalidArgumentError(StrCat("inputs: ", in.column, ": categories missing"));
      }
      for (const auto& c : e["categories"]) {
        if (!c.is_string()) return absl::InvalidArgumentError(StrCat("inputs: ", in.column, ": non-string category"));
        in.categories.push_back(c.get<std::string>());
        l.feature_names.push_back(StrCat(in.column, "=", in.categories.back()));
      }
    } else {
      l.feature_names.push_back(in.column);
    }
    l.inputs.push_back(std::move(in));
  }
  return l;
}

FeatureLayout FeatureLayout::Numeric(std::vector<std::string> names) {
  FeatureLayout l;
  for (std::string& n : names) {
    Input in;
    in.column = n;
    in.first = l.feature_names.size();
    l.feature_names.push_back(std::move(n));
    l.inputs.push_back(std::move(in));
  }
  return l;
}

absl::StatusOr<FeatureLayout> InferLayout(const CsvTable& table, const std::vector<int>& inputs,
                                          const std::vector<uint32_t>& rows, bool numeric_only) {
  const size_t n = inputs.size();
  std::vector<bool> numeric(n, true);
  std::vector<std::vector<std::pair<std::string, int64_t>>> counts(n);
  std::vector<StringMap<size_t>> where(n);
  std::vector<std::string_view> cells;
  std::string scratch;
  for (uint32_t r : rows) {
    table.Split(r, &cells, &scratch);
    for (size_t k = 0; k < n; ++k) {
      std::string_view v = cells[static_cast<size_t>(inputs[k])];
      if (IsMissingCell(v)) continue;
      double d;
      if (numeric[k] && ParseNumber(v, &d)) continue;
      if (numeric_only) {
        return absl::InvalidArgumentError(StrCat(table.path(), ":", table.line_of(r), ": column ",
                                                 table.header()[static_cast<size_t>(inputs[k])],
                                                 ": '", v, "' is text in a numeric column"));
      }
      numeric[k] = false;
    }
  }
  FeatureLayout l;
  for (size_t k = 0; k < n; ++k) {
    FeatureLayout::Input in;
    in.column = table.header()[static_cast<size_t>(inputs[k])];
    in.first = l.feature_names.size();
    in.categorical = !numeric[k];
    if (in.categorical) {
      // Every present value is a category, numbers included.
      for (uint32_t r : rows) {
        std::string_view v = table.Cell(r, inputs[k], &cells, &scratch);
        if (IsMissingCell(v)) continue;
        auto it = where[k].find(v);
        if (it == where[k].end()) {
          where[k].emplace(std::string(v), counts[k].size());
          counts[k].emplace_back(std::string(v), 1);
        } else {
          ++counts[k][it->second].second;
        }
      }
      std::stable_sort(counts[k].begin(), counts[k].end(),
                       [](const auto& a, const auto& b) { return a.second > b.second; });
      if (counts[k].size() > kMaxCategories) counts[k].resize(kMaxCategories);
      // A stable order for the features: by value.
      std::sort(counts[k].begin(), counts[k].end());
      for (auto& [value, count] : counts[k]) {
        in.categories.push_back(value);
        l.feature_names.push_back(StrCat(in.column, "=", value));
      }
    } else {
      l.feature_names.push_back(in.column);
    }
    l.inputs.push_back(std::move(in));
  }
  return l;
}

// ---------------------------------------------------------------- rows

absl::StatusOr<RowSelection> SelectRows(const CsvTable& table, int time_col, int label_col,
                                        const TimeRange& range) {
  RowSelection s;
  s.first_ms = std::numeric_limits<int64_t>::max();
  s.last_ms = std::numeric_limits<int64_t>::min();
  std::vector<std::string_view> cells;
  std::string scratch;
  for (size_t r = 0; r < table.rows(); ++r) {
    table.Split(r, &cells, &scratch);
    std::string_view tv = cells[static_cast<size_t>(time_col)];
    int64_t t = 0;
    if (core::ParseTimestamp(tv, &t) != core::TimeError::kOk) {
      return absl::InvalidArgumentError(StrCat(table.path(), ":", table.line_of(r), ": column ",
                                               table.header()[static_cast<size_t>(time_col)],
                                               ": '", tv, "' is not a time"));
    }
    s.first_ms = std::min(s.first_ms, t);
    s.last_ms = std::max(s.last_ms, t);
    if (!range.Contains(t)) continue;
    if (label_col >= 0 && IsMissingCell(cells[static_cast<size_t>(label_col)])) {
      ++s.unlabelled;
      continue;
    }
    s.rows.push_back(static_cast<uint32_t>(r));
  }
  return s;
}

bool ParseLabel(std::string_view v, float* out) {
  if (v == "0" || v == "0.0" || v == "false" || v == "False") {
    *out = 0;
    return true;
  }
  if (v == "1" || v == "1.0" || v == "true" || v == "True") {
    *out = 1;
    return true;
  }
  return false;
}

size_t Dataset::positives() const {
  size_t p = 0;
  for (float y : label) p += y > 0.5f;
  return p;
}

absl::StatusOr<Dataset> BuildDataset(const CsvTable& table, const FeatureLayout& layout,
                                     const std::vector<uint32_t>& rows, int label_col,
                                     int time_col) {
  // Map every input to its column here: scoring files may order them freely.
  std::vector<int> cols;
  std::vector<StringMap<size_t>> cats(layout.inputs.size());
  for (size_t k = 0; k < layout.inputs.size(); ++k) {
    const FeatureLayout::Input& in = layout.inputs[k];
    const int col = table.Column(in.column);
    if (col < 0) {
      return absl::InvalidArgumentError(
          StrCat(table.path(), ": feature column '", in.column, "' is missing (the model needs ",
                 layout.inputs.size(), " columns: ", in.column, " and others)"));
    }
    cols.push_back(col);
    for (size_t c = 0; c < in.categories.size(); ++c) cats[k].emplace(in.categories[c], c);
  }
  Dataset d;
  d.rows = rows.size();
  d.cols = layout.num_features();
  d.x.assign(d.rows * d.cols, std::numeric_limits<float>::quiet_NaN());
  if (label_col >= 0) d.label.resize(d.rows);
  if (time_col >= 0) d.time_ms.resize(d.rows);
  d.source_rows = rows;
  std::vector<std::string_view> cells;
  std::string scratch;
  for (size_t i = 0; i < rows.size(); ++i) {
    const uint32_t r = rows[i];
    table.Split(r, &cells, &scratch);
    float* x = d.x.data() + i * d.cols;
    for (size_t k = 0; k < cols.size(); ++k) {
      const FeatureLayout::Input& in = layout.inputs[k];
      std::string_view v = cells[static_cast<size_t>(cols[k])];
      if (in.categorical) {
        for (size_t c = 0; c < in.categories.size(); ++c) x[in.first + c] = 0;
        if (IsMissingCell(v)) continue;
        if (auto it = cats[k].find(v); it != cats[k].end()) x[in.first + it->second] = 1;
        continue;
      }
      if (IsMissingCell(v)) continue;
      double num;
      if (!ParseNumber(v, &num)) {
        return absl::InvalidArgumentError(StrCat(table.path(), ":", table.line_of(r), ": column ",
                                                 in.column, ": '", v,
                                                 "' is text in a numeric column"));
      }
      // Through double, as pandas reads a CSV: the same float32 XGBoost sees.
      x[in.first] = static_cast<float>(num);
    }
    if (label_col >= 0) {
      std::string_view v = cells[static_cast<size_t>(label_col)];
      if (!ParseLabel(v, &d.label[i])) {
        return absl::InvalidArgumentError(StrCat(table.path(), ":", table.line_of(r), ": label ",
                                                 table.header()[static_cast<size_t>(label_col)],
                                                 ": '", v, "' is not 0 or 1"));
      }
    }
    if (time_col >= 0) {
      int64_t t = 0;
      if (core::ParseTimestamp(cells[static_cast<size_t>(time_col)], &t) != core::TimeError::kOk) {
        return absl::InvalidArgumentError(StrCat(table.path(), ":", table.line_of(r), ": column ",
                                                 table.header()[static_cast<size_t>(time_col)],
                                                 ": '", cells[static_cast<size_t>(time_col)],
                                                 "' is not a time"));
      }
      d.time_ms[i] = t;
    }
  }
  return d;
}

}  // namespace vigil::model
