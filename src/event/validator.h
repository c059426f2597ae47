// Decodes raw records (a CSV row or a JSON object) into typed Records and
// checks them against the schema: types, required, null, bounds, lengths,
// patterns, allowed values, UTF-8, NaN/Inf, unknown fields, label shape; and,
// across records, time bounds and duplicate event ids.
//
// Usage: for each record, DecodeCsv/DecodeJson, then (when that succeeded)
// CheckAndCommit, which applies the stateful checks and remembers the event.
//
// Thread-safety: none. One Validator per input stream.
#ifndef VIGIL_EVENT_VALIDATOR_H_
#define VIGIL_EVENT_VALIDATOR_H_

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "core/bytes.h"
#include "core/hash.h"
#include "core/time.h"
#include "event/pii.h"
#include "event/record.h"
#include "event/schema.h"

namespace vigil::event {

// Remembers recent event ids to catch duplicates in bounded memory. Ids
// that are canonical decimal numbers and arrive in increasing order (database
// sequences, the handbook's TRANSACTION_ID) are kept, as numbers, in a sorted
// ring of runs (consecutive ids of one type: 16 bytes a run, so a sequence
// with no gap takes one run whatever its length, and at worst, every id a
// run of its own, 16 bytes an id): appending is sequential and
// cache-friendly, a repeat is found by binary search. Other ids go, as 64-bit hashes, to a hash
// set, where a false duplicate has a probability of about n²/2^65 for n ids remembered (1e-7 for
// two million). Each of the two keeps its last `capacity` ids. Beside each id it keeps the index of
// its event type (one byte), so that a server can tell a retry from another event under a taken id.
class DedupWindow {
 public:
  // The type of an id remembered without one (a snapshot from before types
  // were kept, or a schema's 255th type and later).
  static constexpr int kUnknownType = -1;

  explicit DedupWindow(size_t capacity);
  // True when the id (its text `id` and its hash `h`) is new, and then
  // remembers it with `type` (an EventTypeSpec::index); false for a duplicate.
  bool Insert(uint64_t h, std::string_view id, int type);
  // Insert for an id that is the text of an int field whose value is
  // `value` (parsed already): the same, without reading the digits again.
  bool InsertInt(uint64_t h, std::string_view id, int64_t value, int type);
  bool Contains(uint64_t h, std::string_view id) const { return TypeOf(h, id) != kNotSeen; }
  // The type the id was remembered with: kUnknownType when not known,
  // kNotSeen when the id is not remembered.
  static constexpr int kNotSeen = -2;
  int TypeOf(uint64_t h, std::string_view id) const;
  // Starts loading `h`'s slot: the set is large and each lookup a cache miss,
  // so the decoder asks for it as soon as it has the id.
  void Prefetch(uint64_t h) const { set_.prefetch(h); }

  // The remembered ids and their types, oldest first, for a snapshot.
  void SerializeTo(core::ByteWriter& w) const;
  // Replaces the remembered ids with those of a snapshot (`with_types`: one
  // written by SerializeTo; else an older one, of ids alone, whose types are
  // unknown); false (the reader says why) when it is corrupt or holds more
  // ids than this window.
  bool Restore(core::ByteReader& r, bool with_types);

 private:
  // The id as a number, when it is canonical decimal (no sign, no leading zero).
  static bool AsNumber(std::string_view id, uint64_t* n);
  // Consecutive increasing numeric ids of one type: first .. first + count - 1.
  struct Run {
    uint64_t first;
    uint32_t count;
    uint8_t type;
  };
  Run& RunAt(size_t i) { return runs_[(runs_head_ + i) & (runs_cap_ - 1)]; }
  const Run& RunAt(size_t i) const { return runs_[(runs_head_ + i) & (runs_cap_ - 1)]; }
  // Appends id n (larger than every id in sequence) of type byte tb, having
  // forgotten the oldest when capacity_ are held. REQUIRES: capacity_ > 0.
  void AppendToSequence(uint64_t n, uint8_t tb);
  // The type byte of n in sequence, or -1.
  int InSequence(uint64_t n) const;
  // Insert, once it is known whether the id is a number, and which.
  bool InsertKnown(uint64_t h, bool numeric, uint64_t n, int type);
  static uint8_t TypeByte(int type) {
    return type >= 0 && type < 255 ? static_cast<uint8_t>(type) : 255;
  }
  static int TypeOfByte(uint8_t b) { return b == 255 ? kUnknownType : b; }

  size_t capacity_;
  // Increasing numeric ids: runs_n_ runs, oldest first from runs_head_, in a
  // ring of runs_cap_ (a power of two; room for as many runs as ids, up to
  // a million, is taken up front and its pages written only as runs come);
  // seq_ids_ ids in them.
  std::unique_ptr<Run[]> runs_;
  size_t runs_cap_ = 0;
  size_t runs_head_ = 0;
  size_t runs_n_ = 0;
  size_t seq_ids_ = 0;
  // Everything else: hashes (a ring, oldest first from next_) and their types.
  size_t next_ = 0;
  std::vector<uint64_t> ring_;
  absl::flat_hash_map<uint64_t, uint8_t> set_;
};

// Reads each byte of `text` that starts no valid UTF-8 sequence as '?', in
// place: the text keeps its length and every valid byte its offset, so a
// JSON text refused whole for one invalid byte can be read for its structure
// (an id, where each element of an array lies).
void ReplaceInvalidUtf8(std::span<char> text);

class Validator {
 public:
  // `hasher` masks pii values in violations; it must outlive the Validator.
  Validator(std::shared_ptr<const Schema> schema, const PiiHasher* hasher);
  ~Validator();

  const Schema& schema() const { return *schema_; }

  // Reads a CSV header and maps its columns to the fields of the schema's
  // CSV event type. Fails, naming the column, on an unknown column (when the
  // type rejects unknown fields), a repeated column, or a missing required one.
  absl::Status SetCsvHeader(std::string_view header);
  // The field of each CSV column (nullptr for an ignored column).
  const std::vector<const FieldSpec*>& csv_fields() const { return csv_fields_; }

  // Decode and check one record. Return true when valid; otherwise
  // `violations` holds at least one entry. `rec->raw`, `record_no` and
  // `line_no` are the caller's to set.
  // REQUIRES for DecodeJson: `readable` bytes from line.data() may be read
  // (at least line.size() + 64: simdjson reads past the end).
  bool DecodeCsv(std::string_view line, Record* rec, std::vector<Violation>* violations);
  bool DecodeJson(std::string_view line, size_t readable, Record* rec,
                  std::vector<Violation>* violations);

  // Time bounds and duplicate ids for a record that decoded cleanly. When it
  // passes, its time and id are remembered. Returns false with violations.
  bool CheckAndCommit(const Record& rec, std::vector<Violation>* violations);
  // The same in two steps, for a caller that does something that may fail
  // between accepting a record and remembering it (the server writes it to
  // its event log first: an event the log could not take must not be taken
  // for a duplicate when it is sent again). Check remembers nothing; Commit
  // remembers a record Check passed.
  bool Check(const Record& rec, std::vector<Violation>* violations) { return Check(rec, violations, false); }
  void Commit(const Record& rec);

  // Tests: decode every CSV cell the general way, to compare with the
  // inline decoding of common cells (DecodeCell).
  // Call it before SetCsvHeader.
  void set_csv_fast_path_for_testing(bool on) { csv_fast_path_ = on; }

  // Latest valid event time seen, or INT64_MIN.
  int64_t latest_time_ms() const { return latest_ms_; }
  // Whether the event id `id` is among those remembered (duplicates.memory).
  bool Seen(std::string_view id) const { return dedup_.Contains(core::Hash64(id), id); }
  // The type index of the remembered event whose id is rec's, when known:
  // DedupWindow::kUnknownType or kNotSeen otherwise.
  int SeenType(const Record& rec) const { return dedup_.TypeOf(rec.id_hash, rec.event_id); }
  // A live server's validator: events are bounded by its clock (the
  // schema's time_bounds.max_ahead_of_wall_clock, else `clock_ahead_ms`; 0:
  // none), and max_ahead_of_latest is measured from the latest time or the
  // clock, whichever is later, so that a stream resumes after a pause.
  // Files (backfill, validate) are checked against the schema alone.
  void SetLive(int64_t clock_ahead_ms) {
    live_ = true;
    live_clock_ahead_ms_ = clock_ahead_ms;
  }
  // Events a live server accepted (its event log, replayed at its start or
  // by backfill): the checks that depended on its clock then
  // (max_ahead_of_latest and the wall-clock bounds) are not made again, so
  // that the replay takes every event the server took.
  void SetReplaying(bool on) { replaying_ = on; }

  // What CheckAndCommit remembers (the latest time, the duplicate-id
  // window), so that a validator restored from it goes on exactly as this
  // one would (a server's state across a restart), appended to *out.
  void AppendTo(std::string* out) const;
  // InvalidArgument, naming the problem, when the snapshot is corrupt;
  // the validator is then as if new.
  absl::Status Restore(std::string_view snapshot);

  // The value of `field` as it may be written out (truncated, pii masked).
  std::string Printable(const FieldSpec* field, std::string_view value, const Record* rec) const;

 private:
  // CheckAndCommit (commit) or Check.
  bool Check(const Record& rec, std::vector<Violation>* violations, bool commit);
  // Remembers the record's id; false when it was remembered already.
  bool InsertId(const Record& rec);
  // How DecodeCsv reads a column: the common field shapes decoded and
  // checked inline (DecodeCell); anything else, and any value that fails a
  // check, through SetFromText, which writes the violations.
  struct CsvColumn {
    enum class Kind : uint8_t { kIgnored, kGeneral, kInt, kDecimal, kTimestamp, kString };
    Kind kind = Kind::kIgnored;
    int index = -1;  // the field's
    const FieldSpec* field = nullptr;
    // kInt and kTimestamp: the bounds as SetFromText compares them (±inf: none).
    double min = 0, max = 0;
    // kInt: allowed values, when all are in [0, 64) (0: no `allowed`).
    uint64_t allowed_mask = 0;
    int64_t max_length = 0;  // kString: as FieldSpec::max_length
    // kDecimal: bounds, when there are some; a minimum of 0 is a sign test.
    bool min_zero = false;
    const Decimal* min_decimal = nullptr;
    const Decimal* max_decimal = nullptr;
    core::TimestampParser timestamps;  // kTimestamp: the last date read
  };
  // Decodes and checks `s` into `v` when it is a valid value of the column;
  // false, with `v` untouched, otherwise.
  // Ints (most cells) and decimals (amounts) inline in DecodeCsv's loop; the
  // other kinds in a call.
  static bool DecodeCell(CsvColumn& c, std::string_view s, Value* v);
  // `readable_end`: bytes up to there may be read past the cell (nullptr: none).
  [[gnu::always_inline]] static inline bool DecodeIntCell(const CsvColumn& c, std::string_view s,
                                                          const char* readable_end, Value* v);
  [[gnu::always_inline]] static inline bool DecodeDecimalCell(const CsvColumn& c, std::string_view s,
                                                              Value* v);
  CsvColumn PlanCsvColumn(const FieldSpec* f) const;  // nullptr: an ignored column

  void PrepareRecord(const EventTypeSpec* type, Record* rec);
  bool SetFromText(const FieldSpec& f, std::string_view text, Value* v, std::vector<Violation>* out);
  bool CheckValue(const FieldSpec& f, Value* v, std::vector<Violation>* out);
  // `all_present`: every field of the type holds a value (the CSV path
  // knows it when no cell is empty); the checks of required fields are skipped.
  bool Finish(Record* rec, std::vector<Violation>* out, bool all_present = false);
  // The violations of a value, out of line: the checks stay small.
  [[gnu::cold, gnu::noinline]] void BoundError(const FieldSpec& f, const Value& v, bool below,
                                               const std::string& limit, std::vector<Violation>* out) const;
  // kMaxLength, kPattern or kAllowed.
  [[gnu::cold, gnu::noinline]] void RuleError(const FieldSpec& f, const Value& v, Rule rule,
                                              std::vector<Violation>* out) const;
  [[gnu::cold, gnu::noinline]] bool TypeError(const FieldSpec& f, std::string_view s,
                                              std::string_view expected, std::vector<Violation>* out) const;
  [[gnu::cold, gnu::noinline]] bool NotFiniteError(const FieldSpec& f, std::string_view s,
                                                   std::vector<Violation>* out) const;
  void Add(std::vector<Violation>* out, Rule rule, const FieldSpec* f, std::string_view value,
           std::string reason) const;
  // Object is simdjson::ondemand::object (a namespace alias, which cannot be
  // forward-declared); instantiated only in validator.cc.
  template <typename Object>
  bool DecodeJsonObject(Object& obj, std::string_view prefix, Record* rec,
                        std::vector<Violation>* out);
  struct JsonParser;

  std::shared_ptr<const Schema> schema_;
  const PiiHasher* hasher_;
  std::unique_ptr<JsonParser> json_;
  std::vector<const FieldSpec*> csv_fields_;
  std::vector<CsvColumn> csv_columns_;  // beside csv_fields_
  bool csv_all_fields_ = false;          // every field of the CSV type has a column
  bool csv_fast_path_ = true;
  int csv_id_column_ = -1;  // the CSV column of the event id
  // The cells of the current CSV row: all counted, the first at.size()
  // kept (SetCsvHeader makes room for one more than its columns: a row
  // with more is refused on its count).
  struct CsvCells {
    std::vector<std::string_view> at;
    size_t n = 0;
    void clear() { n = 0; }
    size_t size() const { return n; }
    void push(std::string_view c) {
      if (n < at.size()) at[n] = c;
      ++n;
    }
  };
  CsvCells cells_;
  std::string_view json_line_;  // the JSON record being decoded
  std::string numbers_;   // JSON numbers as text; reserved, never reallocated mid-record
  std::string unquoted_;  // unescaped CSV cells; reserved, never reallocated mid-record
  std::string repaired_;  // a JSON record with its invalid UTF-8 bytes read as '?'
  // Sets rec->event_id for a JSON record that is not valid UTF-8 when it has
  // a readable one (the answer and the dead letter name the event by it).
  void NoteIdOfInvalidUtf8(std::string_view line, Record* rec);
  DedupWindow dedup_;
  int64_t latest_ms_ = INT64_MIN;
  bool live_ = false;                // SetLive
  int64_t live_clock_ahead_ms_ = 0;  // SetLive
  bool replaying_ = false;           // SetReplaying
  size_t max_fields_ = 0;
};

}  // namespace vigil::event

#endif  // VIGIL_EVENT_VALIDATOR_H_
