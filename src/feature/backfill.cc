#include "feature/backfill.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "core/hash.h"
#include "core/numbers.h"
#include "core/string_map.h"
#include "core/strings.h"
#include "core/time.h"
#include "nlohmann/json.hpp"

namespace vigil::feature {
namespace {

// Buffered output to a plain file, standard output, or gzip. A file is
// written as <path>.partial and renamed to <path> by Commit: a backfill that
// fails or is killed midway leaves no file that looks whole (and an earlier
// run's output stays as it was); the destructor removes the partial file
// unless it was committed.
class Sink {
 public:
  static absl::StatusOr<std::unique_ptr<Sink>> Open(const std::string& path) {
    auto s = std::unique_ptr<Sink>(new Sink(path));
    if (path == "-") {
      s->file_ = stdout;
    } else {
      s->partial_ = path + ".partial";
      if (EndsWith(path, ".gz")) {
        s->gz_ = gzopen(s->partial_.c_str(), "wb4");
      } else {
        s->file_ = std::fopen(s->partial_.c_str(), "wb");
      }
      if (!s->gz_ && !s->file_) {
        return absl::InvalidArgumentError(StrCat(path, ": cannot create: ", strerror(errno)));
      }
    }
    s->buf_.resize(kSize);
    return s;
  }
  ~Sink() {
    (void)Close();
    if (!partial_.empty()) std::remove(partial_.c_str());
  }
  // Closes, then gives the file its name.
  absl::Status Commit() {
    VIGIL_RETURN_IF_ERROR(Close());
    if (partial_.empty()) return absl::OkStatus();
    if (std::rename(partial_.c_str(), path_.c_str()) != 0) {
      return absl::DataLossError(
          StrCat(path_, ": cannot rename ", partial_, " to it: ", strerror(errno)));
    }
    partial_.clear();
    return absl::OkStatus();
  }

  // Where to write up to `n` bytes (written out first when the buffer has
  // less room); End() with the end of what was written. Rows are written in
  // place, with no call per character.
  absl::StatusOr<char*> Begin(size_t n) {
    if (len_ + n > buf_.size()) {
      VIGIL_RETURN_IF_ERROR(Flush());
      if (n > buf_.size()) buf_.resize(n);
    }
    return buf_.data() + len_;
  }
  // Begin without a Status, for when the buffer has room (nullptr: call Begin).
  char* TryBegin(size_t n) { return len_ + n <= buf_.size() ? buf_.data() + len_ : nullptr; }
  void End(const char* end) { len_ = static_cast<size_t>(end - buf_.data()); }
  absl::Status Append(std::string_view text) {
    VIGIL_ASSIGN_OR_RETURN(char* p, Begin(text.size()));
    std::memcpy(p, text.data(), text.size());
    End(p + text.size());
    return absl::OkStatus();
  }
  absl::Status Flush() {
    if (len_ == 0) return absl::OkStatus();
    bool ok;
    if (gz_) {
      ok = gzwrite(gz_, buf_.data(), static_cast<unsigned>(len_)) == static_cast<int>(len_);
    } else {
      ok = std::fwrite(buf_.data(), 1, len_, file_) == len_;
    }
    len_ = 0;
    if (!ok) return absl::DataLossError(StrCat(path_, ": write failed: ", strerror(errno)));
    return absl::OkStatus();
  }
  absl::Status Close() {
    absl::Status st = Flush();
    if (gz_) {
      if (gzclose(gz_) != Z_OK && st.ok()) st = absl::DataLossError(StrCat(path_, ": write failed"));
      gz_ = nullptr;
    }
    if (file_) {
      const bool bad = std::fflush(file_) != 0 || (file_ != stdout && std::fclose(file_) != 0);
      if (bad && st.ok()) st = absl::DataLossError(StrCat(path_, ": write failed: ", strerror(errno)));
      file_ = nullptr;
    }
    return st;
  }

 private:
  static constexpr size_t kSize = 1 << 20;
  explicit Sink(std::string path) : path_(std::move(path)) {}
  std::string path_;
  std::string partial_;  // what is written until Commit ("" for standard output, or once committed)
  FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  std::string buf_;  // its first len_ bytes are to be written
  size_t len_ = 0;
};

// Writes a CSV cell, quoted when it holds a comma, quote or line break, and
// returns the end. REQUIRES: CellRoom(v) bytes at `out`.
size_t CellRoom(std::string_view v) { return 2 * v.size() + 2; }
char* WriteCell(std::string_view v, char* out) {
  // (Not find_first_of: it calls memchr once per character.)
  static constexpr auto kSpecial = [] {
    std::array<bool, 256> t{};
    t[','] = t['"'] = t['\r'] = t['\n'] = true;
    return t;
  }();
  bool special = false;
  for (char c : v) special |= kSpecial[static_cast<unsigned char>(c)];
  if (!special) {
    std::memcpy(out, v.data(), v.size());
    return out + v.size();
  }
  *out++ = '"';
  for (char c : v) {
    if (c == '"') *out++ = '"';
    *out++ = c;
  }
  *out++ = '"';
  return out;
}
// n bytes (sizeof(Word) <= n <= 2 * sizeof(Word)) as two overlapping words.
template <typename Word>
void CopyTwoWords(const char* in, size_t n, char* out) {
  Word a, b;
  std::memcpy(&a, in, sizeof a);
  std::memcpy(&b, in + n - sizeof b, sizeof b);
  std::memcpy(out, &a, sizeof a);
  std::memcpy(out + n - sizeof b, &b, sizeof b);
}

// Copies `v` at `out` and returns the end: a cell that needs no quotes.
// Up to 16 bytes in two overlapping fixed-size copies, not a call to memcpy.
// REQUIRES: v.size() bytes at `out`.
char* WritePlain(std::string_view v, char* out) {
  const char* in = v.data();
  const size_t n = v.size();
  if (n > 16) {
    std::memcpy(out, in, n);
  } else if (n >= 8) {
    CopyTwoWords<uint64_t>(in, n, out);
  } else if (n >= 4) {
    CopyTwoWords<uint32_t>(in, n, out);
  } else if (n > 0) {
    out[0] = in[0];
    out[n / 2] = in[n / 2];
    out[n - 1] = in[n - 1];
  }
  return out + n;
}

// Whether every value of a field of this type has a text that WriteCell
// writes as it is: the validator accepts only digits, signs, a point and
// an exponent for numbers, and fixed words for booleans.
bool PlainText(event::FieldType t) {
  return t == event::FieldType::kInt || t == event::FieldType::kDecimal ||
         t == event::FieldType::kFloat || t == event::FieldType::kBool;
}

void AppendCell(std::string_view v, std::string* out) {
  const size_t at = out->size();
  out->resize(at + CellRoom(v));
  out->resize(static_cast<size_t>(WriteCell(v, out->data() + at) - out->data()));
}

// Label events of the kinds the spec lists, by what they name.
struct LabelHit {
  int64_t t;
  int kind;
  int value;
};

class LabelIndex {
 public:
  explicit LabelIndex(const FeatureSpec& spec) : spec_(spec) {}

  // Pass 1: every valid label event, and the end of the data.
  absl::Status Collect(event::EventReader& reader) {
    const event::Schema& schema = *spec_.schema;
    const event::EventTypeSpec& lt = schema.types[schema.label_type];
    const int kind = lt.Find("kind")->index, target = lt.Find("target_event_id")->index,
              key = lt.Find("target_entity.key")->index, val = lt.Find("target_entity.value")->index,
              value = lt.Find("value")->index;
    event::Record rec;
    event::Rejection rej;
    while (true) {
      const auto r = reader.Next(&rec, &rej);
      if (r == event::EventReader::Result::kEnd) break;
      if (r != event::EventReader::Result::kRecord) continue;
      end_ = std::max(end_, rec.time_ms);
      if (rec.type->index != schema.label_type) continue;
      int k = -1;
      for (size_t i = 0; i < spec_.label_kinds.size(); ++i) {
        if (spec_.label_kinds[i].kind == rec[kind].text) k = static_cast<int>(i);
      }
      if (k < 0) continue;
      const LabelHit hit{rec.time_ms, k, static_cast<int>(rec[value].i)};
      if (rec[target].present()) {
        by_event_[core::Hash64(rec[target].text)].push_back(hit);
      } else {
        auto [it, fresh] = key_index_.try_emplace(std::string(rec[key].text),
                                                  static_cast<int>(key_index_.size()));
        if (fresh) key_names_.push_back(it->first);
        for (uint64_t h : EntityHashes(it->first, rec[val].text)) {
          by_entity_[{it->second, h}].push_back(hit);
        }
      }
    }
    // Labels in time order (a label may be written after a later one: within
    // the schema's lateness), ties in file order: "a later 0" is later in
    // time, as the store orders them.
    auto by_time = [](const LabelHit& a, const LabelHit& b) { return a.t < b.t; };
    for (auto& [id, hits] : by_event_) std::stable_sort(hits.begin(), hits.end(), by_time);
    for (auto& [entity, hits] : by_entity_) std::stable_sort(hits.begin(), hits.end(), by_time);
    return reader.status();
  }

  int64_t end() const { return end_; }
  void set_end(int64_t t) { end_ = t; }

  // Appends the label and label_delay_ms cells of a row. Overrides (a later
  // 0) apply per kind and per target: a 0 about the user does not undo a
  // chargeback on the event.
  void AppendCells(const event::Record& row, std::string* out) {
    targets_.clear();
    auto ev = by_event_.find(row.id_hash);
    if (ev != by_event_.end()) targets_.push_back(&ev->second);
    for (size_t i = 0; i < key_names_.size(); ++i) {
      const event::FieldSpec* f = row.type->Find(key_names_[i]);
      if (!f || !row[f->index].present()) continue;
      auto en = by_entity_.find({static_cast<int>(i), row[f->index].hash});
      if (en != by_entity_.end()) targets_.push_back(&en->second);
    }
    bool positive = false, pending = false;
    int64_t delay = 0;
    for (size_t k = 0; k < spec_.label_kinds.size(); ++k) {
      const int64_t horizon = spec_.label_kinds[k].horizon_ms;
      // (Saturated: a horizon of centuries is a spec's right.)
      const int64_t until = row.time_ms > INT64_MAX - horizon ? INT64_MAX : row.time_ms + horizon;
      bool kind_positive = false;
      for (const std::vector<LabelHit>* hits : targets_) {
        int value = 0;
        int64_t first_positive = -1;
        for (const LabelHit& h : *hits) {  // in time order
          if (h.kind != static_cast<int>(k) || h.t < row.time_ms || h.t > until || h.t > end_) {
            continue;
          }
          value = h.value;
          // The delay of the label that made the row 1: a later 0 overrides
          // an earlier 1, and a 1 after it starts again.
          if (h.value != 1) {
            first_positive = -1;
          } else if (first_positive < 0) {
            first_positive = h.t - row.time_ms;
          }
        }
        if (value == 1) {
          if (!positive || first_positive < delay) delay = first_positive;
          positive = kind_positive = true;
        }
      }
      if (!kind_positive && until > end_) pending = true;  // not known yet
    }
    if (positive) {
      out->append("1,");
      StrAppend(out, delay);
    } else if (!pending) {
      out->append("0,");
    } else {
      out->push_back(',');
    }
  }

 private:
  // The hashes a row's entity field carries for `text`: one per type the
  // scored event types give the field (an int in one, a string in another).
  std::vector<uint64_t> EntityHashes(const std::string& key, std::string_view text) const {
    std::vector<uint64_t> out;
    for (const event::EventTypeSpec& t : spec_.schema->types) {
      const event::FieldSpec* f = t.Find(key);
      if (!f || !spec_.score_on[t.index]) continue;
      const uint64_t h = event::KeyHashOfText(f->type, text);
      if (std::find(out.begin(), out.end(), h) == out.end()) out.push_back(h);
    }
    if (out.empty()) out.push_back(core::Hash64(text));
    return out;
  }

  const FeatureSpec& spec_;
  int64_t end_ = INT64_MIN;
  absl::flat_hash_map<uint64_t, std::vector<LabelHit>> by_event_;
  absl::flat_hash_map<std::pair<int, uint64_t>, std::vector<LabelHit>> by_entity_;
  StringMap<int> key_index_;
  std::vector<std::string> key_names_;
  std::vector<const std::vector<LabelHit>*> targets_;
};

}  // namespace

absl::StatusOr<BackfillResult> Backfill(event::EventReader& reader,
                                        std::shared_ptr<const FeatureSpec> spec,
                                        const BackfillOptions& options,
                                        event::DeadLetterWriter* dead) {
  const event::Schema& schema = *spec->schema;
  const bool labelled = !spec->label_kinds.empty();
  LabelIndex labels(*spec);
  if (labelled && !options.label_pass) {
    return absl::InvalidArgumentError(
        StrCat(spec->file,
               ": training labels (labels:) need the events read twice: not from standard input"));
  }
  // Before the label pass, which may take minutes: a bad output path is said at once.
  VIGIL_ASSIGN_OR_RETURN(std::unique_ptr<Sink> sink, Sink::Open(options.out));
  if (labelled) {
    VIGIL_RETURN_IF_ERROR(labels.Collect(*options.label_pass));
    if (options.as_of_ms) labels.set_end(*options.as_of_ms);
  }
  FeatureEngine engine(spec);

  // Passthrough field index per event type (-1: absent).
  const size_t np = spec->passthrough.size();
  // Whether its text never needs quotes, per passthrough field and type,
  // and per type for the event id.
  std::vector<int> pass(schema.types.size() * np, -1);
  std::vector<uint8_t> pass_plain(schema.types.size() * np, 0), id_plain(schema.types.size(), 0),
      type_plain(schema.types.size(), 0);
  // Whether the field may be pii (for a label's target_entity.value, that
  // depends on the record): then masked.
  std::vector<uint8_t> pass_pii(schema.types.size() * np, 0);
  bool any_pii = false;
  for (const event::EventTypeSpec& t : schema.types) {
    for (size_t i = 0; i < np; ++i) {
      const event::FieldSpec* f = t.Find(spec->passthrough[i]);
      if (f) {
        pass[static_cast<size_t>(t.index) * np + i] = f->index;
        pass_plain[static_cast<size_t>(t.index) * np + i] = PlainText(f->type);
        const bool pii =
            schema.has_pii && (f->pii != event::PiiMode::kNone || f->name == "target_entity.value");
        pass_pii[static_cast<size_t>(t.index) * np + i] = pii;
        any_pii |= pii;
      }
    }
    if (t.id_field >= 0) id_plain[static_cast<size_t>(t.index)] = PlainText(t.fields[t.id_field].type);
    // (A schema may name a type `a,b`.)
    type_plain[static_cast<size_t>(t.index)] = CellRoom(t.name) == t.name.size();
  }

  std::string header = "event_id,event_time,event_type";
  for (const std::string& p : spec->passthrough) {
    header.push_back(',');
    AppendCell(p, &header);
  }
  if (labelled) header.append(",label,label_delay_ms");
  for (const FeatureDef& f : spec->features) {
    header.push_back(',');
    AppendCell(f.name, &header);
  }
  header.push_back('\n');
  VIGIL_RETURN_IF_ERROR(sink->Append(header));
  std::string label_cells;
  core::TimestampWriter timestamps;

  std::optional<event::PiiHasher> own_hasher;
  const event::PiiHasher* hasher = options.pii;
  if (any_pii && hasher == nullptr) {
    std::string warning;
    hasher = &own_hasher.emplace(event::PiiHasher::FromEnv(schema.pii_key_env, &warning));
  }
  std::vector<std::string> masked(np);

  // Read-ahead (CSV input): the key fields of each stream, all in one list
  // for the reader, and each stream's place in it.
  const size_t ns = spec->streams.size();
  std::vector<int> ahead_fields, ahead_at(ns + 1, 0);
  if (reader.format() == event::Format::kCsv && schema.csv_type >= 0) {
    const std::vector<std::vector<int>> per_stream = engine.ReadAheadFields(schema.csv_type);
    for (size_t s = 0; s < ns; ++s) {
      ahead_fields.insert(ahead_fields.end(), per_stream[s].begin(), per_stream[s].end());
      ahead_at[s + 1] = static_cast<int>(ahead_fields.size());
    }
  }
  std::vector<uint64_t> ahead_hashes(ahead_fields.size()), ahead_keys(ns);

  BackfillResult res;
  std::vector<double> values(spec->features.size());
  event::Record rec;
  event::Rejection rej;
  while (true) {
    const auto r = reader.Next(&rec, &rej);
    if (r == event::EventReader::Result::kEnd) break;
    if (!ahead_fields.empty()) {
      // While this record is processed, the cache fetches for those after it.
      reader.PeekKeyHashes(FeatureEngine::kReadAhead, ahead_fields, ahead_hashes);
      for (size_t s = 0; s < ns; ++s) {
        const std::span<const uint64_t> h(ahead_hashes.data() + ahead_at[s],
                                          static_cast<size_t>(ahead_at[s + 1] - ahead_at[s]));
        ahead_keys[s] = !h.empty() && std::find(h.begin(), h.end(), 0) == h.end()
                            ? FeatureEngine::StreamKey(h)
                            : 0;
      }
      engine.ReadAhead(ahead_keys);
    }
    if (options.progress && (reader.records_read() & 0xfff) == 0) {
      options.progress(reader.records_read(), res.rows);
    }
    if (r == event::EventReader::Result::kRejected) {
      ++res.rejected;
      if (dead) VIGIL_RETURN_IF_ERROR(dead->Write(rej));
      continue;
    }
    const FeatureEngine::Result er = engine.Process(rec, values);
    if (er == FeatureEngine::Result::kNotScored) continue;
    if (er == FeatureEngine::Result::kTooLate) {
      ++res.too_late;
      continue;
    }
    const int* pt = pass.data() + static_cast<size_t>(rec.type->index) * np;
    const uint8_t* plain = pass_plain.data() + static_cast<size_t>(rec.type->index) * np;
    const uint8_t* pii = pass_pii.data() + static_cast<size_t>(rec.type->index) * np;
    size_t room = CellRoom(rec.event_id) + 64 + CellRoom(rec.type->name) +
                  values.size() * (core::kMaxDoubleChars + 1);
    for (size_t i = 0; i < np; ++i) {
      if (pt[i] < 0) continue;
      std::string_view text = rec[pt[i]].text;
      if (pii[i] && rec[pt[i]].present()) {
        const event::FieldSpec* f = &rec.type->fields[static_cast<size_t>(pt[i])];
        const event::PiiMode mode = event::EffectivePii(f, f->name, &rec, schema);
        masked[i] = mode == event::PiiMode::kNone ? std::string(text) : hasher->Mask(text, mode);
        text = masked[i];
      }
      room += CellRoom(text) + 1;
    }
    if (labelled) {
      label_cells.clear();
      labels.AppendCells(rec, &label_cells);
      room += label_cells.size() + 1;
    }
    char* p = sink->TryBegin(room);
    if (p == nullptr) {
      VIGIL_ASSIGN_OR_RETURN(p, sink->Begin(room));
    }
    p = id_plain[static_cast<size_t>(rec.type->index)] ? WritePlain(rec.event_id, p)
                                                         : WriteCell(rec.event_id, p);
    *p++ = ',';
    p = timestamps.Write(rec.time_ms, p);
    *p++ = ',';
    p = type_plain[static_cast<size_t>(rec.type->index)] ? WritePlain(rec.type->name, p)
                                                         : WriteCell(rec.type->name, p);
    for (size_t i = 0; i < np; ++i) {
      *p++ = ',';
      if (pt[i] >= 0 && rec[pt[i]].present()) {
        if (pii[i]) {
          p = WriteCell(masked[i], p);
        } else {
          p = plain[i] ? WritePlain(rec[pt[i]].text, p) : WriteCell(rec[pt[i]].text, p);
        }
      }
    }
    if (labelled) {
      *p++ = ',';
      std::memcpy(p, label_cells.data(), label_cells.size());
      p += label_cells.size();
    }
    for (double v : values) {
      *p++ = ',';
      p = core::WriteShortestDouble(v, p);
    }
    *p++ = '\n';
    sink->End(p);
    ++res.rows;
  }
  if (!reader.status().ok()) return reader.status();
  res.read = reader.records_read();
  res.engine = engine.Stats();
  res.too_late = res.engine.too_late;
  if (options.progress) options.progress(res.read, res.rows);

  // The meta file is written whole (as .partial) before the output takes
  // its name, and takes its own after: a run that cannot write it leaves the
  // earlier output and meta file as they were.
  std::string meta_partial;
  if (options.out != "-") {
    nlohmann::ordered_json m;
    m["format"] = "vigil.features/1";
    m["spec"] = spec->file;
    m["spec_hash"] = spec->content_hash;
    // What bundles trained before 2026-12 name (FeatureSpec::legacy_hash).
    m["spec_legacy_hash"] = spec->legacy_hash;
    m["schema"] = schema.file;
    m["schema_hash"] = schema.content_hash;
    m["id_column"] = "event_id";
    m["time_column"] = "event_time";
    m["type_column"] = "event_type";
    m["label_column"] = labelled ? nlohmann::ordered_json("label") : nlohmann::ordered_json(nullptr);
    m["label_delay_column"] =
        labelled ? nlohmann::ordered_json("label_delay_ms") : nlohmann::ordered_json(nullptr);
    if (labelled) {
      nlohmann::ordered_json kinds;
      for (const LabelKind& k : spec->label_kinds) kinds[k.kind] = core::FormatDuration(k.horizon_ms);
      m["label_horizons"] = kinds;
      m["labels_as_of"] = labels.end() == INT64_MIN
                              ? nlohmann::ordered_json(nullptr)  // no events
                              : nlohmann::ordered_json(core::FormatTimestamp(labels.end()));
    }
    std::vector<std::string> labels, truth, other;
    for (const std::string& p : spec->passthrough) {
      event::Role role = event::Role::kNone;
      for (const event::EventTypeSpec& t : schema.types) {
        const event::FieldSpec* f = t.Find(p);
        if (f && spec->score_on[t.index] && f->role != event::Role::kNone) role = f->role;
      }
      (role == event::Role::kLabel ? labels
                                   : role == event::Role::kGroundTruth ? truth : other)
          .push_back(p);
    }
    m["label_fields"] = labels;         // labels carried on the event (TX_FRAUD)
    m["ground_truth_fields"] = truth;   // never features
    m["passthrough_fields"] = other;    // not features either
    m["feature_columns"] = spec->FeatureNames();
    m["score_on"] = spec->score_on_names;
    m["rows"] = res.rows;
    m["events_read"] = res.read;
    m["rejected"] = res.rejected;
    m["too_late"] = res.too_late;
    // Past limits.max_entries_per_key: windows reaching these read time
    // buckets, within docs/features.md's bound rather than exact.
    m["entries_bucketed"] = res.engine.bucketed;
    m["latest_event_time"] = engine.latest_time_ms() == INT64_MIN
                                 ? nlohmann::ordered_json(nullptr)
                                 : nlohmann::ordered_json(core::FormatTimestamp(engine.latest_time_ms()));
    m["created"] = core::FormatTimestamp(core::WallNowMs());
    res.meta_path = options.out + ".meta.json";
    meta_partial = res.meta_path + ".partial";
    std::ofstream f(meta_partial);
    f << m.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    f.close();
    std::error_code ec;
    if (!f || std::filesystem::is_directory(res.meta_path, ec)) {  // (a rename onto a folder fails)
      std::remove(meta_partial.c_str());
      return absl::DataLossError(StrCat(res.meta_path, ": cannot write ", meta_partial));
    }
  }
  if (absl::Status st = sink->Commit(); !st.ok()) {
    if (!meta_partial.empty()) std::remove(meta_partial.c_str());
    return st;
  }
  if (!meta_partial.empty() && std::rename(meta_partial.c_str(), res.meta_path.c_str()) != 0) {
    const int err = errno;
    std::remove(meta_partial.c_str());
    return absl::DataLossError(
        StrCat(res.meta_path, ": cannot rename ", meta_partial, " to it: ", strerror(err)));
  }
  return res;
}

}  // namespace vigil::feature
