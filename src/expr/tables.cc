#include "expr/tables.h"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <utility>

#include "core/file.h"
#include "core/strings.h"

namespace vigil::expr {
namespace {

using core::ReadFile;

bool IsIdentStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsIdentChar(char c) { return IsIdentStart(c) || (c >= '0' && c <= '9'); }

// "a", "a.b_2": what the expression language can name after `lists.`.
bool IsDottedIdent(std::string_view s) {
  for (std::string_view part : StrSplit(s, '.')) {
    if (part.empty() || !IsIdentStart(part[0])) return false;
    for (char c : part) {
      if (!IsIdentChar(c)) return false;
    }
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// The cells of a CSV line (RFC 4180, one line): each trimmed; a cell in
// double quotes may hold commas, and "" stands for a quote. False for a
// quote left open or text after a closing quote.
bool SplitCsvLine(std::string_view line, std::vector<std::string>* cells) {
  cells->clear();
  size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::string cell;
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i == line.size()) return false;
        if (line[i] != '"') {
          cell.push_back(line[i]);
        } else if (i + 1 < line.size() && line[i + 1] == '"') {
          cell.push_back('"');
          ++i;
        } else {
          break;
        }
      }
      ++i;
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
      if (i < line.size() && line[i] != ',') return false;
      cell = std::string(Trim(cell));
    } else {
      const size_t end = std::min(line.find(',', i), line.size());
      cell = std::string(Trim(line.substr(i, end - i)));
      i = end;
    }
    cells->push_back(std::move(cell));
    if (i >= line.size()) return true;
    ++i;  // the comma
  }
}

void LowerAscii(std::string* s) {
  for (char& c : *s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
}


// `path` as written in the config file `config_file`: relative paths are
// relative to that file's directory.
std::string Resolve(const std::string& config_file, const std::string& path) {
  std::filesystem::path p(path);
  if (p.is_relative()) p = std::filesystem::path(config_file).parent_path() / p;
  return p.string();
}

// A dotted-quad address, or a 32-bit unsigned integer (as some IP databases
// write them).
bool ParseAddress(std::string_view s, uint32_t* addr) {
  if (ParseIpv4(s, addr)) return true;
  if (s.empty() || s.size() > 10) return false;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > 0xFFFFFFFFull) return false;
  *addr = static_cast<uint32_t>(v);
  return true;
}

// Entries of a list file: one per line, trimmed, lower-cased; blank lines
// and '#' lines skipped.
absl::StatusOr<StringSet> ParseList(std::string_view path, std::string_view text) {
  StringSet set;
  int line_no = 0;
  for (std::string_view line : StrSplit(StripUtf8Bom(text), '\n')) {
    ++line_no;
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.size() > kMaxListEntryBytes) {
      return absl::InvalidArgumentError(StrCat(
          path, ":", line_no, ": entry is ", line.size(), " bytes; list entries are at most ",
          kMaxListEntryBytes, " bytes (a longer string can never match)"));
    }
    std::string entry(line);
    LowerAscii(&entry);
    set.insert(std::move(entry));
  }
  return set;
}

template <typename Map>
absl::Status CheckListName(std::string_view name, const Map& lists) {
  if (!IsDottedIdent(name)) {
    return absl::InvalidArgumentError(StrCat(
        "list name '", name,
        "' must be letters, digits and '_' (not starting with a digit), parts joined by '.'"));
  }
  if (lists.contains(name)) {
    return absl::InvalidArgumentError(StrCat("list '", name, "' is defined twice"));
  }
  return absl::OkStatus();
}

}  // namespace

bool ParseIpv4(std::string_view s, uint32_t* addr) noexcept {
  uint32_t out = 0;
  size_t i = 0;
  for (int octet = 0; octet < 4; ++octet) {
    if (octet > 0) {
      if (i >= s.size() || s[i] != '.') return false;
      ++i;
    }
    const size_t start = i;
    uint32_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i - start < 3) {
      v = v * 10 + static_cast<uint32_t>(s[i] - '0');
      ++i;
    }
    const size_t len = i - start;
    if (len == 0 || v > 255 || (len > 1 && s[start] == '0')) return false;
    out = (out << 8) | v;
  }
  if (i != s.size()) return false;
  *addr = out;
  return true;
}

// ---------------------------------------------------------------- Lists

absl::StatusOr<Lists> Lists::Load(const core::ConfigNode& node) {
  Lists out;
  if (node.IsNull() || !node.IsDefined()) return out;
  if (!node.IsMap()) return node.Error("lists: expected a map of list name to file path");
  for (const auto& [name, value] : node.Entries()) {
    VIGIL_ASSIGN_OR_RETURN(std::string path, value.String());
    path = Resolve(value.file(), path);
    // Name and file errors point at the config entry; a bad entry names
    // the list file and its line.
    if (absl::Status s = CheckListName(name, out.lists_); !s.ok()) {
      return value.Error(std::string_view(s.message().data(), s.message().size()));
    }
    auto text = ReadFile(path);
    if (!text.ok()) {
      return absl::NotFoundError(StrCat(value.Where(), ": list '", name, "': cannot read '", path,
                                        "' (", text.status().message(), ")"));
    }
    VIGIL_ASSIGN_OR_RETURN(StringSet set, ParseList(path, *text));
    VIGIL_RETURN_IF_ERROR(out.Put(name, std::move(set)));
  }
  return out;
}

absl::Status Lists::Add(std::string_view name, const std::string& path) {
  VIGIL_RETURN_IF_ERROR(CheckListName(name, lists_));
  VIGIL_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  VIGIL_ASSIGN_OR_RETURN(StringSet set, ParseList(path, text));
  return Put(name, std::move(set));
}

absl::Status Lists::AddEntries(std::string_view name, const std::vector<std::string>& entries,
                               std::string_view where) {
  StringSet set;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (entries[i].size() > kMaxListEntryBytes) {
      return absl::InvalidArgumentError(
          StrCat(where, ": list '", name, "' entry ", i + 1, " is ", entries[i].size(),
                 " bytes; list entries are at most ", kMaxListEntryBytes, " bytes"));
    }
    std::string entry = entries[i];
    LowerAscii(&entry);
    set.insert(std::move(entry));
  }
  return Put(name, std::move(set));
}

absl::Status Lists::Put(std::string_view name, StringSet set) {
  VIGIL_RETURN_IF_ERROR(CheckListName(name, lists_));
  lists_.emplace(std::string(name), std::make_shared<const StringSet>(std::move(set)));
  return absl::OkStatus();
}

absl::Status Lists::Merge(const Lists& other) {
  for (const auto& [name, set] : other.lists_) {
    if (lists_.contains(name))
      return absl::InvalidArgumentError(StrCat("list '", name, "' is named twice"));
  }
  for (const auto& [name, set] : other.lists_) lists_.emplace(name, set);
  return absl::OkStatus();
}

std::shared_ptr<const StringSet> Lists::Find(std::string_view name) const {
  auto it = lists_.find(name);
  return it == lists_.end() ? nullptr : it->second;
}

std::vector<std::string> Lists::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, set] : lists_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

// ---------------------------------------------------------------- Table

uint32_t Table::Intern(std::string_view value) {
  auto it = value_index_.find(value);
  if (it != value_index_.end()) return it->second;
  const auto idx = static_cast<uint32_t>(values_.size());
  values_.emplace_back(value);
  value_index_.emplace(std::string(value), idx);
  return idx;
}

absl::Status Table::AddPrefix(std::string_view prefix, std::string_view value,
                              std::string_view where) {
  if (prefix.empty() || prefix.size() > 19 ||
      !std::all_of(prefix.begin(), prefix.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return absl::InvalidArgumentError(
        StrCat(where, ": table '", name_, "': prefix '", prefix, "' must be 1 to 19 digits"));
  }
  if (prefixes_.contains(prefix)) {
    return absl::InvalidArgumentError(
        StrCat(where, ": table '", name_, "': prefix '", prefix, "' appears twice"));
  }
  prefixes_.emplace(std::string(prefix), Intern(value));
  const auto len = static_cast<uint8_t>(prefix.size());
  if (std::find(prefix_lengths_.begin(), prefix_lengths_.end(), len) == prefix_lengths_.end()) {
    prefix_lengths_.push_back(len);
    std::sort(prefix_lengths_.begin(), prefix_lengths_.end(), std::greater<>());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const Table>> Table::FromConfig(std::string_view name,
                                                               const core::ConfigNode& spec) {
  if (!spec.IsMap()) {
    return spec.Error(StrCat("table '", name, "': expected a map with kind and entries or file"));
  }
  VIGIL_RETURN_IF_ERROR(spec.CheckKeys({"kind", "entries", "file"}));
  auto t = std::make_shared<Table>();
  t->name_ = std::string(name);
  const core::ConfigNode kind_node = spec["kind"];
  if (!kind_node.IsDefined()) {
    return spec.Error(StrCat("table '", name, "': missing 'kind' (prefix or ip_range)"));
  }
  VIGIL_ASSIGN_OR_RETURN(std::string kind, kind_node.String());
  if (kind == "prefix") {
    t->kind_ = Kind::kPrefix;
  } else if (kind == "ip_range") {
    t->kind_ = Kind::kIpRange;
  } else {
    return kind_node.Error(
        StrCat("table '", name, "': unknown kind '", kind, "' (prefix or ip_range)"));
  }
  const core::ConfigNode entries = spec["entries"];
  const core::ConfigNode file = spec["file"];
  if (entries.IsDefined() == file.IsDefined()) {
    return spec.Error(StrCat("table '", name, "': give exactly one of 'entries' or 'file'"));
  }

  // Ranges with where they were written, checked for overlaps once sorted.
  std::vector<std::pair<Range, std::string>> ranges;
  auto add_range = [&](std::string_view first, std::string_view last, std::string_view value,
                       std::string where) -> absl::Status {
    Range r{};
    if (!ParseAddress(first, &r.first)) {
      return absl::InvalidArgumentError(
          StrCat(where, ": table '", name, "': '", first, "' is not an IPv4 address"));
    }
    if (!ParseAddress(last, &r.last)) {
      return absl::InvalidArgumentError(
          StrCat(where, ": table '", name, "': '", last, "' is not an IPv4 address"));
    }
    if (r.first > r.last) {
      return absl::InvalidArgumentError(
          StrCat(where, ": table '", name, "': range starts at ", first, ", after its end ", last));
    }
    r.value = t->Intern(value);
    ranges.emplace_back(r, std::move(where));
    return absl::OkStatus();
  };

  if (entries.IsDefined()) {
    if (t->kind_ == Kind::kPrefix) {
      if (!entries.IsMap()) {
        return entries.Error(
            StrCat("table '", name, "': prefix entries are a map such as {\"4111\": US}"));
      }
      for (const auto& [prefix, value] : entries.Entries()) {
        VIGIL_ASSIGN_OR_RETURN(std::string v, value.String());
        VIGIL_RETURN_IF_ERROR(t->AddPrefix(prefix, v, value.Where()));
      }
    } else {
      if (!entries.IsSequence()) {
        return entries.Error(StrCat("table '", name,
                                    "': ip_range entries are a list such as "
                                    "[[\"1.2.3.0\", \"1.2.3.255\", AU]]"));
      }
      for (const core::ConfigNode& item : entries.Items()) {
        if (!item.IsSequence() || item.size() != 3) {
          return item.Error(StrCat("table '", name, "': expected [first, last, value]"));
        }
        const std::vector<core::ConfigNode> cells = item.Items();
        VIGIL_ASSIGN_OR_RETURN(std::string first, cells[0].String());
        VIGIL_ASSIGN_OR_RETURN(std::string last, cells[1].String());
        VIGIL_ASSIGN_OR_RETURN(std::string value, cells[2].String());
        VIGIL_RETURN_IF_ERROR(add_range(first, last, value, item.Where()));
      }
    }
  } else {
    VIGIL_ASSIGN_OR_RETURN(std::string path_text, file.String());
    const std::string path = Resolve(file.file(), path_text);
    auto text = ReadFile(path);
    if (!text.ok()) {
      return absl::NotFoundError(StrCat(file.Where(), ": table '", name, "': cannot read '", path,
                                        "' (", text.status().message(), ")"));
    }
    int line_no = 0;
    const size_t want = t->kind_ == Kind::kPrefix ? 2 : 3;
    std::vector<std::string> cells;
    for (std::string_view line : StrSplit(StripUtf8Bom(*text), '\n')) {
      ++line_no;
      line = Trim(line);
      if (line.empty() || line[0] == '#') continue;
      const std::string where = StrCat(path, ":", line_no);
      if (!SplitCsvLine(line, &cells)) {
        return absl::InvalidArgumentError(
            StrCat(where, ": table '", name,
                   "': a quoted cell is not closed, or text follows its closing quote"));
      }
      if (cells.size() != want) {
        return absl::InvalidArgumentError(
            StrCat(where, ": table '", name, "': expected ", want, " comma-separated cells (",
                   want == 2 ? "prefix,value" : "first,last,value", "), found ", cells.size()));
      }
      if (want == 2) {
        VIGIL_RETURN_IF_ERROR(t->AddPrefix(cells[0], cells[1], where));
      } else {
        if (cells[0].find(':') != std::string::npos) continue;  // IPv6 row
        VIGIL_RETURN_IF_ERROR(add_range(cells[0], cells[1], cells[2], where));
      }
    }
  }

  if (t->kind_ == Kind::kIpRange) {
    std::sort(ranges.begin(), ranges.end(),
              [](const auto& a, const auto& b) { return a.first.first < b.first.first; });
    for (size_t i = 1; i < ranges.size(); ++i) {
      if (ranges[i].first.first <= ranges[i - 1].first.last) {
        return absl::InvalidArgumentError(StrCat(ranges[i].second, ": table '", name,
                                                 "': this range overlaps the one at ",
                                                 ranges[i - 1].second));
      }
    }
    t->ranges_.reserve(ranges.size());
    for (const auto& r : ranges) t->ranges_.push_back(r.first);
  }
  t->value_index_ = {};  // only needed while building
  return std::shared_ptr<const Table>(std::move(t));
}

bool Table::LookupPrefix(std::string_view key, std::string_view* value) const noexcept {
  if (kind_ != Kind::kPrefix) return false;
  for (const uint8_t len : prefix_lengths_) {
    if (len > key.size()) continue;
    auto it = prefixes_.find(key.substr(0, len));
    if (it != prefixes_.end()) {
      *value = values_[it->second];
      return true;
    }
  }
  return false;
}

bool Table::LookupIp(uint32_t addr, std::string_view* value) const noexcept {
  if (kind_ != Kind::kIpRange) return false;
  // The last range starting at or before `addr`.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), addr,
                             [](uint32_t a, const Range& r) { return a < r.first; });
  if (it == ranges_.begin()) return false;
  --it;
  if (addr > it->last) return false;
  *value = values_[it->value];
  return true;
}

// ---------------------------------------------------------------- Tables

absl::StatusOr<Tables> Tables::Load(const core::ConfigNode& node) {
  Tables out;
  if (node.IsNull() || !node.IsDefined()) return out;
  if (!node.IsMap()) return node.Error("tables: expected a map of table name to table");
  for (const auto& [name, spec] : node.Entries()) {
    VIGIL_RETURN_IF_ERROR(out.Add(name, spec));
  }
  return out;
}

absl::Status Tables::Add(std::string_view name, const core::ConfigNode& spec) {
  if (tables_.contains(name)) {
    return spec.Error(StrCat("table '", name, "' is defined twice"));
  }
  VIGIL_ASSIGN_OR_RETURN(std::shared_ptr<const Table> t, Table::FromConfig(name, spec));
  tables_.emplace(std::string(name), std::move(t));
  return absl::OkStatus();
}

std::shared_ptr<const Table> Tables::Find(std::string_view name) const {
  auto it = tables_.find(name);
  return it == tables_.end() ? nullptr : it->second;
}

std::vector<std::string> Tables::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tables_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace vigil::expr
