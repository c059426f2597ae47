#include "core/config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/file.h"
#include "core/strings.h"
#include "core/time.h"
#include "yaml-cpp/yaml.h"

namespace vigil::core {

struct ConfigNode::Impl {
  std::shared_ptr<const std::string> file;
  std::shared_ptr<const SourceText> source;  // the document's text (null: none)
  YAML::Node node;
  bool missing = false;  // an absent key (a default YAML::Node counts as defined)
  // Position to report when `node` is undefined (a missing key): its parent's.
  int line = 0;
  int column = 0;
  std::string key;  // the key it was looked up by, when it was (for "'share' is required")
};

namespace {

// The 1-based line where a second YAML document starts in `text`, or 0: a
// `---` marker after a document's content, or content after a `...` end
// marker. (Such markers at the start of a line are never part of a scalar.)
int SecondDocumentLine(std::string_view text) {
  bool content = false, ended = false;
  int line = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view l = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    auto marker = [&](std::string_view m) {
      return l.substr(0, 3) == m && (l.size() == 3 || l[3] == ' ' || l[3] == '\t');
    };
    if (marker("---")) {
      if (content || ended) return line;
      l.remove_prefix(3);  // "--- {a: 1}" starts the document with content
    } else if (marker("...")) {
      ended = true;
      continue;
    }
    const size_t first = l.find_first_not_of(" \t");
    if (first == std::string_view::npos || l[first] == '#' || (!content && l[first] == '%'))
      continue;
    if (ended) return line;
    content = true;
  }
  return 0;
}

std::string FormatWhere(const std::string& file, int line, int col) {
  if (line <= 0) return file;
  return StrCat(file, ":", line, ":", col);
}

absl::StatusOr<ConfigNode> Fail(const std::string& file, const YAML::Exception& e) {
  return absl::InvalidArgumentError(
      StrCat(FormatWhere(file, e.mark.line + 1, e.mark.column + 1), ": ", e.msg));
}

// The collections of a document met so far in a walk, numbered in the order
// met. REQUIRES: the nodes were parsed from text (Mark() is the position).
class CollectionIds {
 public:
  // The number of `n` when it was met before; else -1, and it is numbered.
  int64_t FindOrAdd(const YAML::Node& n) {
    // Two collections can start at the same offset (a flow map as the first
    // key of a block map); `is` tells them apart.
    std::vector<std::pair<YAML::Node, int64_t>>& same_start = seen_[n.Mark().pos];
    for (const auto& [v, id] : same_start) {
      if (v.is(n)) return id;
    }
    same_start.emplace_back(n, count_++);
    return -1;
  }

 private:
  int64_t count_ = 0;
  std::unordered_map<int, std::vector<std::pair<YAML::Node, int64_t>>> seen_;  // by Mark().pos
};

// Fails at the first key, in document order, that a mapping anywhere in the
// document gives twice. yaml-cpp keeps both entries and ConfigNode::operator[]
// returns the first, so a second `window:` or a second top-level `features:`
// would otherwise be ignored without a word. Keys compare by their text, as
// operator[] matches them. Each collection is visited once even where aliases
// share it: an alias of an ancestor makes the tree a cycle, and nested
// aliases would otherwise make the walk exponential.
class DuplicateKeyCheck {
 public:
  explicit DuplicateKeyCheck(const std::string& file) : file_(file) {}

  absl::Status Visit(const YAML::Node& n) {
    if (!n.IsMap() && !n.IsSequence()) return absl::OkStatus();
    if (visited_.FindOrAdd(n) >= 0) return absl::OkStatus();
    if (n.IsSequence()) {
      for (auto it = n.begin(); it != n.end(); ++it) VIGIL_RETURN_IF_ERROR(Visit(*it));
      return absl::OkStatus();
    }
    std::unordered_map<std::string, YAML::Mark> first;  // key -> its first position
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (it->first.IsScalar()) {
        const YAML::Mark m = it->first.Mark();
        auto [f, inserted] = first.try_emplace(it->first.Scalar(), m);
        if (!inserted) {
          return absl::InvalidArgumentError(
              StrCat(FormatWhere(file_, m.line + 1, m.column + 1), ": '", it->first.Scalar(),
                     "' given twice in this mapping (first at ", f->second.line + 1, ":",
                     f->second.column + 1, ")"));
        }
      } else {
        VIGIL_RETURN_IF_ERROR(Visit(it->first));  // a complex key may hold a mapping
      }
      VIGIL_RETURN_IF_ERROR(Visit(it->second));
    }
    return absl::OkStatus();
  }

 private:
  const std::string& file_;
  CollectionIds visited_;
};

}  // namespace

ConfigNode::ConfigNode() : impl_(std::make_unique<Impl>()) {
  impl_->file = std::make_shared<const std::string>("<none>");
}
ConfigNode::ConfigNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ConfigNode::~ConfigNode() = default;
ConfigNode::ConfigNode(const ConfigNode& o) : impl_(std::make_unique<Impl>(*o.impl_)) {}
// A new Impl, not *impl_ = *o.impl_: assigning a YAML::Node that holds a
// node writes over that node's contents in the document (yaml-cpp's
// assignment), so that sorting ConfigNodes (the policy's thresholds) wrote
// one item over another. Copying one makes a new handle to the same node.
ConfigNode& ConfigNode::operator=(const ConfigNode& o) {
  if (this != &o) impl_ = std::make_unique<Impl>(*o.impl_);
  return *this;
}

std::unique_ptr<ConfigNode::Impl> ConfigNode::Child() const {
  auto impl = std::make_unique<Impl>();
  impl->file = impl_->file;
  impl->source = impl_->source;
  return impl;
}

const SourceText& ConfigNode::source() const {
  static const SourceText* const kNone = new SourceText("");
  return impl_->source ? *impl_->source : *kNone;
}

absl::StatusOr<ConfigNode> ConfigNode::LoadString(std::string_view text, std::string_view name) {
  auto impl = std::make_unique<Impl>();
  impl->file = std::make_shared<const std::string>(name);
  try {
    // One document per file: YAML::Load reads the first and drops the rest
    // (a deny rule after a `---` would be lost without a word).
    // (YAML::LoadAll is not used to count them: some inputs make it
    // allocate without end.)
    // yaml-cpp takes any bytes in a string; every name and value read from
    // it ends up in JSON (answers, logs, meta files), which must be UTF-8.
    if (const size_t bad = FirstInvalidUtf8(text); bad != std::string_view::npos) {
      const SourceText src(text);
      const int line = src.LineOf(bad), col = src.ColumnOf(bad);
      const auto b = static_cast<unsigned char>(text[bad]);
      const char hex[] = {"0123456789abcdef"[b >> 4], "0123456789abcdef"[b & 15], '\0'};
      return absl::InvalidArgumentError(StrCat(FormatWhere(*impl->file, line, col), ": byte 0x",
                                               hex, " is not UTF-8; a vigil file is UTF-8 text"));
    }
    if (const int line = SecondDocumentLine(text); line > 0) {
      return absl::InvalidArgumentError(StrCat(FormatWhere(*impl->file, line, 1),
                                               ": a second YAML document; a vigil file holds one"));
    }
    impl->node = YAML::Load(std::string(text));
    VIGIL_RETURN_IF_ERROR(DuplicateKeyCheck(*impl->file).Visit(impl->node));
    impl->source = std::make_shared<const SourceText>(text);
  } catch (const YAML::Exception& e) {
    return Fail(*impl->file, e);
  }
  impl->line = 1;
  impl->column = 1;
  return ConfigNode(std::move(impl));
}

absl::StatusOr<ConfigNode> ConfigNode::LoadFile(const std::string& path) {
  VIGIL_ASSIGN_OR_RETURN(std::string text, ReadFile(path, kMaxConfigBytes));
  return LoadString(text, path);
}

bool ConfigNode::IsDefined() const { return !impl_->missing && impl_->node.IsDefined(); }
bool ConfigNode::IsNull() const { return IsDefined() && impl_->node.IsNull(); }
bool ConfigNode::IsMap() const { return IsDefined() && impl_->node.IsMap(); }
bool ConfigNode::IsSequence() const { return IsDefined() && impl_->node.IsSequence(); }
bool ConfigNode::IsScalar() const { return IsDefined() && impl_->node.IsScalar(); }

ConfigNode ConfigNode::operator[](std::string_view key) const {
  auto impl = Child();
  impl->line = line();
  impl->column = column();
  impl->missing = true;
  impl->key = std::string(key);
  if (IsMap()) {
    // yaml-cpp's non-const operator[] would insert; search instead.
    for (auto it = impl_->node.begin(); it != impl_->node.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == key) {
        impl->node = it->second;
        impl->missing = false;
        if (it->second.Mark().line >= 0 && !it->second.IsNull()) {
          impl->line = it->second.Mark().line + 1;
          impl->column = it->second.Mark().column + 1;
        } else {
          impl->line = it->first.Mark().line + 1;
          impl->column = it->first.Mark().column + 1;
        }
        break;
      }
    }
  }
  return ConfigNode(std::move(impl));
}

std::vector<std::pair<std::string, ConfigNode>> ConfigNode::Entries() const {
  std::vector<std::pair<std::string, ConfigNode>> out;
  if (!IsMap()) return out;
  for (auto it = impl_->node.begin(); it != impl_->node.end(); ++it) {
    auto impl = Child();
    impl->node = it->second;
    const YAML::Mark m = (it->second.IsNull() || it->second.Mark().line < 0) ? it->first.Mark()
                                                                           : it->second.Mark();
    impl->line = m.line + 1;
    impl->column = m.column + 1;
    out.emplace_back(it->first.IsScalar() ? it->first.Scalar() : std::string("<complex key>"),
                     ConfigNode(std::move(impl)));
  }
  return out;
}

std::vector<ConfigNode> ConfigNode::Items() const {
  std::vector<ConfigNode> out;
  if (!IsSequence()) return out;
  for (auto it = impl_->node.begin(); it != impl_->node.end(); ++it) {
    auto impl = Child();
    impl->node = static_cast<const YAML::Node&>(*it);
    impl->line = it->Mark().line + 1;
    impl->column = it->Mark().column + 1;
    out.push_back(ConfigNode(std::move(impl)));
  }
  return out;
}

absl::StatusOr<std::vector<ConfigNode>> ConfigNode::ListItems(std::string_view what) const {
  if (IsDefined() && !IsNull() && !IsSequence()) {
    return Error(StrCat(what, ": expected a list ([a, b] or one `- item` a line)"));
  }
  return Items();
}

absl::StatusOr<std::vector<std::pair<std::string, ConfigNode>>> ConfigNode::MapEntries(
    std::string_view what) const {
  if (IsDefined() && !IsNull() && !IsMap()) {
    return Error(StrCat(what, ": expected a map ({key: value} or one `key: value` a line)"));
  }
  return Entries();
}

size_t ConfigNode::size() const { return IsDefined() ? impl_->node.size() : 0; }

std::string ConfigNode::Text() const { return IsScalar() ? impl_->node.Scalar() : std::string(); }

namespace {

// Each scalar with its length, so that no text can pass for structure. A
// collection met again (through an alias) is written as "@k", the k-th
// collection written: an alias of an ancestor makes the tree a cycle, and
// nested aliases would make the text exponential (as DuplicateKeyCheck).
class Canonical {
 public:
  explicit Canonical(std::string* out) : out_(out) {}

  void Append(const YAML::Node& n) {
    if (!n.IsDefined() || n.IsNull()) {
      out_->push_back('~');
      return;
    }
    if (n.IsScalar()) {
      const std::string& s = n.Scalar();
      absl::StrAppend(out_, s.size(), ":", s);
      return;
    }
    if (!n.IsSequence() && !n.IsMap()) return;
    if (const int64_t id = ids_.FindOrAdd(n); id >= 0) {
      absl::StrAppend(out_, "@", id);
      return;
    }
    if (n.IsSequence()) {
      out_->push_back('[');
      for (const YAML::Node& item : n) {
        Append(item);
        out_->push_back(',');
      }
      out_->push_back(']');
      return;
    }
    out_->push_back('{');
    for (const auto& kv : n) {
      Append(kv.first);
      out_->push_back('=');
      Append(kv.second);
      out_->push_back(';');
    }
    out_->push_back('}');
  }

 private:
  std::string* out_;
  CollectionIds ids_;
};

}  // namespace

std::string ConfigNode::CanonicalText() const {
  std::string out;
  if (IsDefined()) Canonical(&out).Append(impl_->node);
  return out;
}

// yaml-cpp tags a quoted scalar "!" (non-specific) and a plain one "?".
bool ConfigNode::Quoted() const { return IsScalar() && impl_->node.Tag() == "!"; }

absl::StatusOr<std::string> ConfigNode::String() const {
  if (!IsDefined())
    return Error(impl_->key.empty() ? std::string("missing value")
                                    : StrCat("'", impl_->key, "' is required"));
  if (!IsScalar()) return Error("expected a single value (a string), found a list or a map");
  return impl_->node.Scalar();
}

absl::StatusOr<int64_t> ConfigNode::Int() const {
  VIGIL_ASSIGN_OR_RETURN(std::string s, String());
  int64_t v;
  const char* b = s.data();
  if (!s.empty() && s[0] == '+') ++b;
  auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) {
    return Error(StrCat("expected an integer, found '", s, "'"));
  }
  return v;
}

absl::StatusOr<double> ConfigNode::Double() const {
  VIGIL_ASSIGN_OR_RETURN(std::string s, String());
  double v;
  const char* b = s.data();
  if (!s.empty() && s[0] == '+') ++b;
  auto [p, ec] = std::from_chars(b, s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || !std::isfinite(v)) {
    return Error(StrCat("expected a finite number, found '", s, "'"));
  }
  return v;
}

absl::StatusOr<bool> ConfigNode::Bool() const {
  VIGIL_ASSIGN_OR_RETURN(std::string s, String());
  const std::string l = absl::AsciiStrToLower(s);
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  return Error(StrCat("expected true or false, found '", s, "'"));
}

absl::StatusOr<std::string> ConfigNode::GetString(std::string_view key, std::string_view def) const {
  ConfigNode n = (*this)[key];
  if (!n.IsDefined() || n.IsNull()) return std::string(def);
  return n.String();
}
absl::StatusOr<int64_t> ConfigNode::GetInt(std::string_view key, int64_t def) const {
  ConfigNode n = (*this)[key];
  if (!n.IsDefined() || n.IsNull()) return def;
  return n.Int();
}
absl::StatusOr<double> ConfigNode::GetDouble(std::string_view key, double def) const {
  ConfigNode n = (*this)[key];
  if (!n.IsDefined() || n.IsNull()) return def;
  return n.Double();
}
absl::StatusOr<bool> ConfigNode::GetBool(std::string_view key, bool def) const {
  ConfigNode n = (*this)[key];
  if (!n.IsDefined() || n.IsNull()) return def;
  return n.Bool();
}
absl::StatusOr<int64_t> ConfigNode::GetDurationMs(std::string_view key, int64_t def) const {
  ConfigNode n = (*this)[key];
  if (!n.IsDefined() || n.IsNull()) return def;
  VIGIL_ASSIGN_OR_RETURN(std::string s, n.String());
  auto d = ParseDurationMs(s);
  if (!d.ok()) return n.Error(StrCat(key, ": ", d.status().message()));
  // Durations are added to event times (ms since 1970): one near the
  // int64 limit overflowed and refused every event.
  if (*d > kMaxConfigDurationMs || *d < -kMaxConfigDurationMs) {
    return n.Error(StrCat(key, ": at most 36500d"));
  }
  return *d;
}

absl::Status ConfigNode::CheckKeys(std::initializer_list<std::string_view> allowed) const {
  return CheckKeys(std::vector<std::string_view>(allowed));
}

absl::Status ConfigNode::CheckKeys(const std::vector<std::string_view>& allowed) const {
  if (!IsDefined() || IsNull()) return absl::OkStatus();
  if (!IsMap()) return Error("expected a map of keys and values");
  for (const auto& [key, node] : Entries()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string hint = ClosestMatch(key, allowed);
    // At the key, not its value (which may start lines below).
    return KeyError(key, StrCat("unknown key '", key, "'",
                                hint.empty() ? "" : StrCat(" (did you mean '", hint, "'?)"),
                                "; allowed here: ", StrJoin(allowed, ", ")));
  }
  return absl::OkStatus();
}

const std::string& ConfigNode::file() const { return *impl_->file; }
int ConfigNode::line() const {
  if (!impl_->missing && impl_->node.IsDefined() && impl_->node.Mark().line >= 0 && !impl_->node.IsNull()) {
    return impl_->node.Mark().line + 1;
  }
  return impl_->line;
}
int ConfigNode::column() const {
  if (!impl_->missing && impl_->node.IsDefined() && impl_->node.Mark().line >= 0 && !impl_->node.IsNull()) {
    return impl_->node.Mark().column + 1;
  }
  return impl_->column;
}
std::string ConfigNode::Where() const { return FormatWhere(*impl_->file, line(), column()); }

absl::Status ConfigNode::Error(std::string_view message) const {
  return absl::InvalidArgumentError(StrCat(Where(), ": ", message));
}

absl::Status ConfigNode::KeyError(std::string_view key, std::string_view message) const {
  if (IsMap()) {
    for (auto it = impl_->node.begin(); it != impl_->node.end(); ++it) {
      if (!it->first.IsScalar() || it->first.Scalar() != key || it->first.Mark().line < 0) continue;
      auto impl = Child();
      impl->node = it->first;
      const SourceText::Start at = source().ScalarStart(ConfigNode(std::move(impl)));
      return absl::InvalidArgumentError(
          StrCat(FormatWhere(*impl_->file, at.line, at.column), ": ", message));
    }
  }
  return Error(message);
}

std::string ClosestMatch(std::string_view word, const std::vector<std::string_view>& candidates) {
  size_t best = std::string::npos;
  std::string out;
  for (std::string_view c : candidates) {
    // Levenshtein distance, small strings only.
    std::vector<size_t> prev(c.size() + 1), cur(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      cur[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (word[i - 1] != c[j - 1])});
      }
      std::swap(prev, cur);
    }
    const size_t d = prev[c.size()];
    // One edit for short words (anything is two edits from "or"), more for long ones.
    const size_t allowed = word.size() <= 3 ? 1 : std::max<size_t>(2, word.size() / 3);
    if (d < best && d <= allowed) {
      best = d;
      out = std::string(c);
    }
  }
  return out;
}

SourceText::SourceText(std::string_view text) : text_(text) {
  line_start_.push_back(0);
  for (size_t i = 0; i < text_.size(); ++i) {
    if (text_[i] == '\n') line_start_.push_back(i + 1);
  }
}

size_t SourceText::Offset(int line, int col) const {
  if (line < 1 || col < 1 || static_cast<size_t>(line) > line_start_.size())
    return std::string_view::npos;
  const size_t i = line_start_[static_cast<size_t>(line - 1)] + static_cast<size_t>(col - 1);
  return i < text_.size() ? i : std::string_view::npos;
}

char SourceText::CharAt(int line, int col) const {
  const size_t i = Offset(line, col);
  return i == std::string_view::npos ? 0 : text_[i];
}

int SourceText::LineOf(size_t pos) const {
  return static_cast<int>(std::upper_bound(line_start_.begin(), line_start_.end(), pos) -
                          line_start_.begin());
}

namespace {

bool IsBlank(char c) { return c == ' ' || c == '\t'; }
bool IsBreak(char c) { return c == '\n' || c == '\r'; }

// Appends code point `cp` as UTF-8, every byte placed at `where`.
void AppendUtf8(uint32_t cp, size_t where, std::string* out, std::vector<size_t>* at) {
  char b[4];
  int n = 0;
  if (cp < 0x80) {
    b[n++] = static_cast<char>(cp);
  } else if (cp < 0x800) {
    b[n++] = static_cast<char>(0xC0 | (cp >> 6));
    b[n++] = static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    b[n++] = static_cast<char>(0xE0 | (cp >> 12));
    b[n++] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    b[n++] = static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    b[n++] = static_cast<char>(0xF0 | (cp >> 18));
    b[n++] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    b[n++] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    b[n++] = static_cast<char>(0x80 | (cp & 0x3F));
  }
  out->append(b, static_cast<size_t>(n));
  at->insert(at->end(), static_cast<size_t>(n), where);
}

}  // namespace

size_t SourceText::PastBreak(size_t i) const {
  return i + ((text_[i] == '\r' && i + 1 < text_.size() && text_[i + 1] == '\n') ? 2 : 1);
}

int SourceText::BlockIndent(int line) const {
  for (size_t l = static_cast<size_t>(line); l < line_start_.size(); ++l) {
    size_t i = line_start_[l];
    while (i < text_.size() && text_[i] == ' ') ++i;
    if (i < text_.size() && !IsBreak(text_[i])) return static_cast<int>(i - line_start_[l]);
  }
  return 0;
}

size_t SourceText::Fold(size_t i, std::string* out, std::vector<size_t>* at) const {
  const size_t first = i;
  int breaks = 0;
  while (i < text_.size() && IsBreak(text_[i])) {
    i = PastBreak(i);
    ++breaks;
    while (i < text_.size() && IsBlank(text_[i])) ++i;
  }
  if (breaks == 1) {
    out->push_back(' ');
    at->push_back(first);
  }
  for (int k = 1; k < breaks; ++k) {
    out->push_back('\n');
    at->push_back(first);
  }
  return i;
}

bool SourceText::TracePlain(size_t start, size_t want, std::string* out,
                            std::vector<size_t>* at) const {
  std::vector<size_t> blanks;  // kept only if more text follows on the line
  size_t i = start;
  while (out->size() < want && i < text_.size()) {
    const char c = text_[i];
    if (IsBreak(c)) {
      blanks.clear();
      i = Fold(i, out, at);
    } else if (IsBlank(c)) {
      blanks.push_back(i++);
    } else {
      for (size_t b : blanks) {
        out->push_back(text_[b]);
        at->push_back(b);
      }
      blanks.clear();
      out->push_back(c);
      at->push_back(i++);
    }
  }
  return true;
}

bool SourceText::TraceQuoted(size_t start, std::string* out, std::vector<size_t>* at) const {
  const char quote = text_[start];
  std::vector<size_t> blanks;
  auto flush = [&] {
    for (size_t b : blanks) {
      out->push_back(text_[b]);
      at->push_back(b);
    }
    blanks.clear();
  };
  size_t i = start + 1;
  while (i < text_.size()) {
    const char c = text_[i];
    if (c == quote) {
      if (quote == '\'' && i + 1 < text_.size() && text_[i + 1] == '\'') {  // '' is '
        flush();
        out->push_back('\'');
        at->push_back(i);
        i += 2;
        continue;
      }
      flush();
      return true;
    }
    if (IsBreak(c)) {
      blanks.clear();
      i = Fold(i, out, at);
      continue;
    }
    if (IsBlank(c)) {
      blanks.push_back(i++);
      continue;
    }
    flush();
    if (c != '\\' || quote == '\'') {
      out->push_back(c);
      at->push_back(i++);
      continue;
    }
    // An escape of a double-quoted scalar.
    if (i + 1 >= text_.size()) return false;
    const char e = text_[i + 1];
    if (IsBreak(e)) {  // an escaped line break: joined without a space
      i = PastBreak(i + 1);
      while (i < text_.size() && IsBlank(text_[i])) ++i;
      while (i < text_.size() && IsBreak(text_[i])) {  // each empty line after it is a newline
        out->push_back('\n');
        at->push_back(i);
        i = PastBreak(i);
        while (i < text_.size() && IsBlank(text_[i])) ++i;
      }
      continue;
    }
    static constexpr std::string_view kFrom = "0abt\tnvfre \"/\\N_LP";
    static constexpr uint32_t kTo[] = {0,  7,  8,  9,  9,  10,   11,   12,     13,
                                       27, 32, 34, 47, 92, 0x85, 0xA0, 0x2028, 0x2029};
    if (const size_t k = kFrom.find(e); k != std::string_view::npos) {
      AppendUtf8(kTo[k], i, out, at);
      i += 2;
      continue;
    }
    const int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (digits == 0 || i + 2 + static_cast<size_t>(digits) > text_.size()) return false;
    uint32_t cp = 0;
    for (int d = 0; d < digits; ++d) {
      const char h = text_[i + 2 + static_cast<size_t>(d)];
      const int v = h >= '0' && h <= '9'   ? h - '0'
                    : h >= 'a' && h <= 'f' ? h - 'a' + 10
                    : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                           : -1;
      if (v < 0) return false;
      cp = cp * 16 + static_cast<uint32_t>(v);
    }
    if (cp > 0x10FFFF) return false;
    AppendUtf8(cp, i, out, at);
    i += 2 + static_cast<size_t>(digits);
  }
  return false;  // no closing quote
}

bool SourceText::TraceBlock(size_t start, int indent, std::string_view value, std::string* out,
                            std::vector<size_t>* at) const {
  const bool folded = text_[start] == '>';
  size_t line = static_cast<size_t>(LineOf(start));  // the 0-based index of the next line
  // Folded lines: a break between two lines of text at the block's own
  // indentation is a space; around a more indented line it stays.
  enum Kind { kNone, kText, kMore } prev = kNone;
  std::vector<size_t> empties;  // the breaks of the empty lines since the last line of text
  for (; line < line_start_.size(); ++line) {
    const size_t begin = line_start_[line];
    size_t end = line + 1 < line_start_.size() ? line_start_[line + 1] - 1 : text_.size();
    if (end > begin && text_[end - 1] == '\r') --end;
    size_t i = begin;
    while (i < end && text_[i] == ' ') ++i;
    // An empty line, or spaces only up to the indentation (spaces past it
    // are the line's text).
    if (i == end && static_cast<int>(end - begin) <= indent) {
      empties.push_back(end);
      continue;
    }
    if (static_cast<int>(i - begin) < indent) break;  // the block has ended
    const size_t from = begin + static_cast<size_t>(indent);
    const Kind kind = IsBlank(text_[from]) ? kMore : kText;
    if (!folded) {
      for (size_t e : empties) {
        out->push_back('\n');
        at->push_back(e);
      }
    } else if (prev == kNone) {
      for (size_t e : empties) {
        out->push_back('\n');
        at->push_back(e);
      }
    } else if (prev == kText && kind == kText) {
      if (empties.empty()) {
        out->push_back(' ');
        at->push_back(from - 1);
      }
      for (size_t e : empties) {
        out->push_back('\n');
        at->push_back(e);
      }
    } else {
      out->push_back('\n');
      at->push_back(from - 1);
      for (size_t e : empties) {
        out->push_back('\n');
        at->push_back(e);
      }
    }
    empties.clear();
    const size_t checked = std::min(out->size(), value.size());
    for (size_t k = from; k < end; ++k) {
      out->push_back(text_[k]);
      at->push_back(k);
    }
    if (!folded) {
      out->push_back('\n');
      at->push_back(end);
    }
    prev = kind;
    // Not the value (a wrong indentation): no need to read on; nor past it.
    const size_t upto = std::min(out->size(), value.size());
    if (out->compare(checked, upto - checked, value, checked, upto - checked) != 0) return false;
    if (out->size() > value.size()) break;
  }
  // The last line's break and the empty lines after it: what chomping
  // keeps of them the value says.
  if (folded && prev != kNone) {
    const size_t after = at->back() + 1;
    out->push_back('\n');
    at->push_back(after);
  }
  for (size_t e : empties) {
    out->push_back('\n');
    at->push_back(e);
  }
  return true;
}

std::vector<SourceText::Position> SourceText::ScalarPositions(const ConfigNode& n) const {
  if (!n.IsScalar()) return {};
  size_t start = Offset(n.line(), n.column());
  if (start == std::string_view::npos) return {};
  start = PastProperties(start);  // after an anchor or a tag
  if (start >= text_.size()) return {};
  const std::string value = n.Text();
  std::string out;
  std::vector<size_t> at;
  auto matches = [&] {
    return out.size() >= value.size() && out.compare(0, value.size(), value) == 0;
  };
  const char c = text_[start];
  if (c == '"' || c == '\'') {
    if (!TraceQuoted(start, &out, &at)) return {};
  } else if (c == '|' || c == '>') {
    // The block's indentation is its first line of text's, unless an
    // indicator (a digit after the | or >, before or after a chomping sign:
    // |2, >-2) sets it lower: then the one of those that reads the value
    // YAML read.
    const int first = BlockIndent(LineOf(start));
    const std::string_view header = std::string_view(text_).substr(start + 1, 2);
    const bool explicit_indent = header.find_first_of("123456789") != std::string_view::npos;
    const int lowest = explicit_indent ? std::max(1, first - 16) : first;
    bool found = false;
    for (int indent = first; indent >= lowest && indent >= 1 && !found; --indent) {
      out.clear();
      at.clear();
      found = TraceBlock(start, indent, value, &out, &at) && matches();
    }
    if (!found) return {};
  } else {
    TracePlain(start, value.size(), &out, &at);
  }
  if (!matches()) return {};
  // Offsets rarely go back (never but within an escape): columns are
  // counted on from the previous byte's, in one pass over the text.
  std::vector<Position> positions;
  positions.reserve(value.size());
  Position p;
  size_t counted = std::string_view::npos;  // the offset p stands for
  for (size_t k = 0; k < value.size(); ++k) {
    if (counted == std::string_view::npos || at[k] < counted || LineOf(at[k]) != p.line) {
      p.line = LineOf(at[k]);
      p.column = 1;
      counted = line_start_[static_cast<size_t>(p.line - 1)];
    }
    for (; counted < at[k] && counted < text_.size(); ++counted) {
      if ((static_cast<unsigned char>(text_[counted]) & 0xC0) != 0x80) ++p.column;
    }
    counted = at[k];
    Position q = p;  // a character's later bytes are at its column
    if (at[k] < text_.size() && (static_cast<unsigned char>(text_[at[k]]) & 0xC0) == 0x80)
      --q.column;
    positions.push_back(q);
  }
  return positions;
}

size_t SourceText::PastProperties(size_t i) const {
  while (i < text_.size() && (text_[i] == '&' || text_[i] == '!')) {
    // The property (&anchor, !tag, !<uri>), then the blanks, comments and
    // breaks up to the value.
    while (i < text_.size() && !IsBlank(text_[i]) && !IsBreak(text_[i])) ++i;
    while (i < text_.size()) {
      if (IsBlank(text_[i]) || IsBreak(text_[i])) {
        ++i;
      } else if (text_[i] == '#') {
        while (i < text_.size() && !IsBreak(text_[i])) ++i;
      } else {
        break;
      }
    }
  }
  return i;
}

int SourceText::ColumnOf(size_t pos) const {
  int column = 1;
  for (size_t i = LineStart(LineOf(pos)); i < pos && i < text_.size(); ++i) {
    if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) ++column;
  }
  return column;
}

SourceText::Start SourceText::ScalarStart(const ConfigNode& n) const {
  Start s;
  s.line = n.line();
  s.column = n.column();
  size_t at = Offset(n.line(), n.column());
  if (at == std::string_view::npos) return s;
  if (text_[at] == '&' || text_[at] == '!') {  // after an anchor or a tag: the value itself
    at = PastProperties(at);
    if (at >= text_.size()) return s;
    s.line = LineOf(at);
    s.column = ColumnOf(at);
  }
  const char c = text_[at];
  if (c == '"' || c == '\'') {
    s.column += 1;
  } else if (c == '|' || c == '>') {
    // YAML strips the block's indentation, which its first non-blank line
    // sets.
    const int indent = BlockIndent(s.line);
    s.line += 1;
    s.column = indent + 1;
    s.continuation_column = indent + 1;
  }
  return s;
}

}  // namespace vigil::core
