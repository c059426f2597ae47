// Reference data that expressions read: named string lists (disposable
// e-mail domains, deny lists) and lookup tables (card BIN prefix -> country,
// IPv4 range -> country). Both are loaded on the control plane and then
// immutable; an expression compiled against them keeps a shared reference to
// the lists and tables it uses, so a `Lists` or `Tables` may be destroyed or
// replaced (hot reload) while expressions compiled from it are still in use.
//
// Thread-safety: loading is single-threaded; after that, every const method
// may be called from any number of threads.
#ifndef VIGIL_EXPR_TABLES_H_
#define VIGIL_EXPR_TABLES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "core/string_map.h"

namespace vigil::expr {

// The longest string `in lists.<name>` can match: the left side is
// lower-cased into a stack buffer of this size, so that the lookup does not
// allocate. List entries longer than this are refused when loading.
inline constexpr size_t kMaxListEntryBytes = 256;

// Parses a canonical dotted-quad IPv4 address ("10.0.0.1": four decimal
// octets 0..255, no leading zeros, no spaces). Hot path: no allocation.
// Returns false when `s` is not such an address.
bool ParseIpv4(std::string_view s, uint32_t* addr) noexcept;

// Named sets of lower-cased strings.
class Lists {
 public:
  Lists() = default;

  // Reads a YAML map of list name -> file path, such as
  //   lists:
  //     disposable_domains: lists/disposable_domains.txt
  // Relative paths are resolved against the directory of the YAML file.
  // Errors as for Add, or at the node for a value that is not a path.
  static absl::StatusOr<Lists> Load(const core::ConfigNode& node);

  // Adds the list `name` from the text file at `path`: one entry per line,
  // surrounding blanks trimmed, entries lower-cased (ASCII); blank lines and
  // lines starting with '#' are skipped. Fails with NotFound for an
  // unreadable file, InvalidArgument "path:line: ..." for an entry longer
  // than kMaxListEntryBytes, and InvalidArgument for a name that is not
  // dotted identifiers or is already used.
  absl::Status Add(std::string_view name, const std::string& path);

  // Adds the list `name` from `entries` (lower-cased here). `where` names
  // the origin in messages. Errors as for Add.
  absl::Status AddEntries(std::string_view name, const std::vector<std::string>& entries,
                          std::string_view where = "<entries>");

  // Adds every list of `other`, shared, not copied. InvalidArgument naming
  // the first name both have.
  absl::Status Merge(const Lists& other);

  // The list called `name`, or null.
  std::shared_ptr<const StringSet> Find(std::string_view name) const;
  // Every list name, sorted.
  std::vector<std::string> Names() const;
  size_t size() const { return lists_.size(); }

 private:
  absl::Status Put(std::string_view name, StringSet set);

  StringMap<std::shared_ptr<const StringSet>> lists_;
};

// One lookup table, of one of two kinds:
//   prefix:   digit-string prefix -> value; the longest matching prefix wins
//             (card BIN -> issuing country);
//   ip_range: [first, last] IPv4 address range -> value, ranges disjoint,
//             found by binary search (IP -> country).
class Table {
 public:
  enum class Kind : uint8_t { kPrefix, kIpRange };

  // Builds a table from its YAML spec, one of
  //   {kind: prefix,   entries: {"4111": US, "5500": GB}}
  //   {kind: ip_range, entries: [["1.2.3.0", "1.2.3.255", AU], ...]}
  //   {kind: prefix | ip_range, file: path.csv}
  // A CSV file has rows `prefix,value` or `first,last,value` (cells may be
  // double-quoted; addresses dotted-quad or a 32-bit integer); blank lines
  // and lines starting with '#' are skipped; rows whose addresses hold ':'
  // (IPv6) are skipped. A relative path is resolved against the directory of
  // the YAML file. Every error names file:line(:col): a prefix that is not
  // 1..19 digits, a repeated prefix, a malformed address, first > last, or
  // two ranges that overlap (naming both).
  static absl::StatusOr<std::shared_ptr<const Table>> FromConfig(std::string_view name,
                                                                 const core::ConfigNode& spec);

  Kind kind() const { return kind_; }
  const std::string& name() const { return name_; }
  size_t size() const { return kind_ == Kind::kPrefix ? prefixes_.size() : ranges_.size(); }

  // Prefix tables: the value of the longest entry that is a prefix of `key`
  // (only its leading characters are compared, so a masked card number such
  // as "411111******1234" works). False when none matches or the table is an
  // ip_range table. `*value` stays valid as long as the table lives.
  // Hot path: no allocation.
  bool LookupPrefix(std::string_view key, std::string_view* value) const noexcept;

  // IP range tables: the value of the range holding `addr`. False when no
  // range holds it or the table is a prefix table. Hot path: no allocation.
  bool LookupIp(uint32_t addr, std::string_view* value) const noexcept;

 private:
  struct Range {
    uint32_t first;
    uint32_t last;
    uint32_t value;  // index into values_
  };

  uint32_t Intern(std::string_view value);
  absl::Status AddPrefix(std::string_view prefix, std::string_view value, std::string_view where);

  std::string name_;
  Kind kind_ = Kind::kPrefix;
  std::vector<std::string> values_;      // distinct values
  StringMap<uint32_t> value_index_;      // value -> index in values_ (building only)
  StringMap<uint32_t> prefixes_;         // prefix -> index in values_
  std::vector<uint8_t> prefix_lengths_;  // distinct prefix lengths, longest first
  std::vector<Range> ranges_;            // sorted by first, disjoint
};

// Named tables.
class Tables {
 public:
  Tables() = default;

  // Reads a YAML map of table name -> table spec (see Table::FromConfig),
  // the `tables:` section of a config.
  static absl::StatusOr<Tables> Load(const core::ConfigNode& node);

  // Adds the table `name`. Fails as Table::FromConfig does, or when the name
  // is already used.
  absl::Status Add(std::string_view name, const core::ConfigNode& spec);

  // The table called `name`, or null.
  std::shared_ptr<const Table> Find(std::string_view name) const;
  // Every table name, sorted.
  std::vector<std::string> Names() const;
  size_t size() const { return tables_.size(); }

 private:
  StringMap<std::shared_ptr<const Table>> tables_;
};

}  // namespace vigil::expr

#endif  // VIGIL_EXPR_TABLES_H_
