// Configuration files (YAML) read into a tree whose every node knows where it
// came from, so that an error can name the file, line and column. This is the
// only place vigil includes yaml-cpp; its exceptions stop here.
//
// A ConfigNode is a cheap handle into a document; it stays valid as long as
// any handle to the same document lives. Thread-safety: read-only use from
// several threads is safe; loading is independent per document.
#ifndef VIGIL_CORE_CONFIG_H_
#define VIGIL_CORE_CONFIG_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace vigil::core {

class SourceText;

// The most a configuration file may hold: more is a file named by mistake
// (a log, /dev/zero), read no further.
inline constexpr size_t kMaxConfigBytes = 16 << 20;
// The longest duration a configuration may give (100 years).
inline constexpr int64_t kMaxConfigDurationMs = 36500LL * 86400000LL;

class ConfigNode {
 public:
  // Parses the YAML file at `path`. Syntax errors, a byte that is not UTF-8,
  // and a mapping anywhere in the document that gives a key twice, come
  // back as InvalidArgument "path:line:col: ..."; an unreadable file as
  // NotFound; one of more than kMaxConfigBytes as ResourceExhausted.
  static absl::StatusOr<ConfigNode> LoadFile(const std::string& path);
  // Parses `text`; `name` stands for the file in messages.
  static absl::StatusOr<ConfigNode> LoadString(std::string_view text, std::string_view name);

  ConfigNode();
  ~ConfigNode();
  ConfigNode(const ConfigNode&);
  ConfigNode& operator=(const ConfigNode&);

  bool IsDefined() const;  // false for a key that is absent
  bool IsNull() const;     // `~`, `null`, or an empty value
  bool IsMap() const;
  bool IsSequence() const;
  bool IsScalar() const;

  // The child at `key` of a map; an undefined node (IsDefined() false) when
  // absent or when this is not a map.
  ConfigNode operator[](std::string_view key) const;
  // A map's entries in file order; a sequence's items.
  std::vector<std::pair<std::string, ConfigNode>> Entries() const;
  std::vector<ConfigNode> Items() const;
  // The same, for a node that must be a list (or a map): none when it is
  // absent or null, an error at the node naming `what` when it is anything
  // else (a scalar where a list belongs must not read as an empty list).
  absl::StatusOr<std::vector<ConfigNode>> ListItems(std::string_view what) const;
  absl::StatusOr<std::vector<std::pair<std::string, ConfigNode>>> MapEntries(
      std::string_view what) const;
  size_t size() const;

  // Typed reads. Each fails with an error at this node's position when the
  // node is absent, not a scalar, or does not convert exactly.
  absl::StatusOr<std::string> String() const;
  absl::StatusOr<int64_t> Int() const;
  absl::StatusOr<double> Double() const;
  absl::StatusOr<bool> Bool() const;
  // The scalar text as written (no conversion). Empty for non-scalars.
  std::string Text() const;
  // True for a scalar written in quotes ('…' or "…"): its text starts one
  // column after column().
  bool Quoted() const;

  // Reads with a default when the key is absent.
  absl::StatusOr<std::string> GetString(std::string_view key, std::string_view def) const;
  absl::StatusOr<int64_t> GetInt(std::string_view key, int64_t def) const;
  absl::StatusOr<double> GetDouble(std::string_view key, double def) const;
  absl::StatusOr<bool> GetBool(std::string_view key, bool def) const;
  // A duration ("7d"; see core/time.h) with a default; at most
  // kMaxConfigDurationMs either way.
  absl::StatusOr<int64_t> GetDurationMs(std::string_view key, int64_t def) const;

  // Fails, naming the first key of this map that is not in `allowed` (with
  // the closest allowed key as a suggestion). A typo in a config is an error.
  absl::Status CheckKeys(std::initializer_list<std::string_view> allowed) const;
  absl::Status CheckKeys(const std::vector<std::string_view>& allowed) const;

  // "file:line:col" of this node (1-based), or of its parent for an absent key.
  std::string Where() const;
  const std::string& file() const;
  int line() const;    // 1-based, 0 when unknown
  int column() const;  // 1-based, 0 when unknown
  // InvalidArgument("file:line:col: message").
  absl::Status Error(std::string_view message) const;
  // The same at the key `key` of this map (where its text starts), not at
  // its value, which YAML places a line below in a block map; at this node
  // when the map has no such key.
  absl::Status KeyError(std::string_view key, std::string_view message) const;
  // The text of the document the node is in (empty for a node not loaded
  // from one).
  const SourceText& source() const;

  // What the node says, without what YAML does not mean: comments, layout,
  // quoting, flow or block style, anchor names. Two documents that read the
  // same give the same text (map entries in file order; an alias as a
  // reference to the collection it names, so that a cycle or nested aliases
  // stay short), so that its hash names a config by its meaning: a comment
  // edited does not make a model's feature spec another one.
  std::string CanonicalText() const;

 private:
  struct Impl;
  explicit ConfigNode(std::unique_ptr<Impl> impl);
  // A node of the same document, positioned at this one.
  std::unique_ptr<Impl> Child() const;
  std::unique_ptr<Impl> impl_;
};

// A YAML document's text, for the positions YAML does not give: where a
// scalar's own text starts, and what is at a line and column. Every node of
// a loaded document shares its document's (ConfigNode::source).
// Thread-safety: const after construction.
class SourceText {
 public:
  explicit SourceText(std::string_view text);

  struct Start {
    int line = 1;
    int column = 1;
    // Where the scalar's later lines start: a block scalar's indentation + 1
    // (YAML strips it from every line), else 1.
    int continuation_column = 1;
  };
  // Where the text of scalar `n` starts: one column past the quote of a
  // quoted scalar; the line after `|` or `>` of a block scalar, at its
  // indentation; else `n`'s own position. (Past the first line of a folded
  // `>` block or a plain or quoted scalar over several lines, which YAML
  // joins, only ScalarPositions knows where a byte was written.)
  Start ScalarStart(const ConfigNode& n) const;

  struct Position {
    int line = 1;
    int column = 1;  // characters, not UTF-8 bytes
  };
  // Where each byte of scalar `n`'s value was written, 1-based, whatever
  // its style: plain or quoted over several lines (folded), with escapes,
  // literal `|` or folded `>` blocks with their indicators. A byte an
  // escape or a fold made is placed at the escape or the line break. Empty
  // when the value cannot be traced back to the text (then only
  // ScalarStart is known).
  std::vector<Position> ScalarPositions(const ConfigNode& n) const;

  // The byte offset of 1-based `line`:`col`, or npos outside the text.
  size_t Offset(int line, int col) const;
  // The character there, or 0 outside the text.
  char CharAt(int line, int col) const;
  // The 1-based line of byte offset `pos`.
  int LineOf(size_t pos) const;
  // The 1-based column, in characters, of byte offset `pos`.
  int ColumnOf(size_t pos) const;
  size_t LineStart(int line) const { return line_start_[static_cast<size_t>(line - 1)]; }
  std::string_view text() const { return text_; }

 private:
  // ScalarPositions' readers, by style: each appends the value's bytes to
  // `out` and their source offsets to `at`, from the scalar at `start`;
  // false where the text is not what they read.
  bool TracePlain(size_t start, size_t want, std::string* out, std::vector<size_t>* at) const;
  bool TraceQuoted(size_t start, std::string* out, std::vector<size_t>* at) const;
  // (TraceBlock stops, false, where it strays from `value`.)
  bool TraceBlock(size_t start, int indent, std::string_view value, std::string* out,
                  std::vector<size_t>* at) const;
  // The offset past the line break at `i` (\n or \r\n).
  size_t PastBreak(size_t i) const;
  // The indentation of the first line with text after 1-based `line`: a
  // block scalar's, when `line` holds its | or >.
  int BlockIndent(int line) const;
  // The offset past the anchor and tag (&a !t) that may open a node at `i`.
  size_t PastProperties(size_t i) const;
  // A flow scalar's line breaks from `i` (at a break): one becomes a
  // space, n > 1 become n - 1 newlines; the next line's leading blanks go.
  // Returns the offset after them.
  size_t Fold(size_t i, std::string* out, std::vector<size_t>* at) const;

  std::string text_;
  std::vector<size_t> line_start_;  // byte offset of each line (0-based index)
};

// The closest of `candidates` to `word` by edit distance, or "" if none is
// close; for "did you mean" hints.
std::string ClosestMatch(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace vigil::core

#endif  // VIGIL_CORE_CONFIG_H_
