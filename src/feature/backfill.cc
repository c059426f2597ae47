#include "feature/backfill.h"

#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/container/flat_hash_map.h"
#include "core/hash.h"
#include "core/string_map.h"
#include "core/strings.h"
#include "core/time.h"
#include "nlohmann/json.hpp"

namespace vigil::feature {
namespace {

// Buffered output to a plain file, standard output, or gzip.
class Sink {
 public:
  static absl::StatusOr<std::unique_ptr<Sink>> Open(const std::string& path) {
    auto s = std::unique_ptr<Sink>(new Sink(path));
    if (path == "-") {
      s->file_ = stdout;
    } else if (EndsWith(path, ".gz")) {
      s->gz_ = gzopen(path.c_str(), "wb4");
      if (!s->gz_) return absl::InvalidArgumentError(StrCat(path, ": cannot create: ", strerror(errno)));
    } else {
      s->file_ = std::fopen(path.c_str(), "wb");
      if (!s->file_) return absl::InvalidArgumentError(StrCat(path, ": cannot create: ", strerror(errno)));
    }
    s->buf_.reserve(kFlushAt + (1 << 16));
    return s;
  }
  ~Sink() { (void)Close(); }

  std::string* buffer() { return &buf_; }
  absl::Status MaybeFlush() { return buf_.size() >= kFlushAt ? Flush() : absl::OkStatus(); }
  absl::Status Flush() {
    if (buf_.empty()) return absl::OkStatus();
    bool ok;
    if (gz_) {
      ok = gzwrite(gz_, buf_.data(), static_cast<unsigned>(buf_.size())) ==
           static_cast<int>(buf_.size());
    } else {
      ok = std::fwrite(buf_.data(), 1, buf_.size(), file_) == buf_.size();
    }
    buf_.clear();
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
  static constexpr size_t kFlushAt = 1 << 20;
  explicit Sink(std::string path) : path_(std::move(path)) {}
  std::string path_;
  FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  std::string buf_;
};

// A CSV cell: quoted when it holds a comma, quote or line break.
void AppendCell(std::string_view v, std::string* out) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos) {
    out->append(v);
    return;
  }
  out->push_back('"');
  for (char c : v) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
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
        by_entity_[{it->second, EntityHash(it->first, rec[val].text)}].push_back(hit);
      }
    }
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
      bool kind_positive = false;
      for (const std::vector<LabelHit>* hits : targets_) {
        int value = 0;
        int64_t first_positive = -1;
        for (const LabelHit& h : *hits) {  // in file (time) order
          if (h.kind != static_cast<int>(k) || h.t < row.time_ms || h.t > row.time_ms + horizon ||
              h.t > end_) {
            continue;
          }
          value = h.value;
          if (h.value == 1 && first_positive < 0) first_positive = h.t - row.time_ms;
        }
        if (value == 1) {
          if (!positive || first_positive < delay) delay = first_positive;
          positive = kind_positive = true;
        }
      }
      if (!kind_positive && row.time_ms + horizon > end_) pending = true;  // not known yet
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
  // The hash a row's entity field carries for `text`.
  uint64_t EntityHash(const std::string& key, std::string_view text) const {
    for (const event::EventTypeSpec& t : spec_.schema->types) {
      const event::FieldSpec* f = t.Find(key);
      if (f && spec_.score_on[t.index]) return event::KeyHashOfText(f->type, text);
    }
    return core::Hash64(text);
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

void AppendShortestDouble(double v, std::string* out) {
  if (std::isnan(v)) return;
  char buf[32];
  // Counts and flags are most cells: whole numbers print faster as integers,
  // and identically (below 1e15 the shortest form has no exponent; -0 keeps
  // its sign through the general path).
  if (v == std::trunc(v) && std::fabs(v) < 1e15 && !(v == 0 && std::signbit(v))) {
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(v));
    out->append(buf, static_cast<size_t>(r.ptr - buf));
    return;
  }
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, static_cast<size_t>(r.ptr - buf));
}

absl::StatusOr<BackfillResult> Backfill(event::EventReader& reader,
                                        std::shared_ptr<const FeatureSpec> spec,
                                        const BackfillOptions& options,
                                        event::DeadLetterWriter* dead) {
  const event::Schema& schema = *spec->schema;
  const bool labelled = !spec->label_kinds.empty();
  LabelIndex labels(*spec);
  if (labelled) {
    if (!options.label_pass) {
      return absl::InvalidArgumentError(StrCat(
          spec->file, ": training labels (labels:) need the events read twice: not from standard input"));
    }
    VIGIL_RETURN_IF_ERROR(labels.Collect(*options.label_pass));
    if (options.as_of_ms) labels.set_end(*options.as_of_ms);
  }
  VIGIL_ASSIGN_OR_RETURN(std::unique_ptr<Sink> sink, Sink::Open(options.out));
  FeatureEngine engine(spec);

  // Passthrough field index per event type (-1: absent).
  const size_t np = spec->passthrough.size();
  std::vector<int> pass(schema.types.size() * np, -1);
  for (const event::EventTypeSpec& t : schema.types) {
    for (size_t i = 0; i < np; ++i) {
      const event::FieldSpec* f = t.Find(spec->passthrough[i]);
      if (f) pass[static_cast<size_t>(t.index) * np + i] = f->index;
    }
  }

  std::string* out = sink->buffer();
  out->append("event_id,event_time,event_type");
  for (const std::string& p : spec->passthrough) {
    out->push_back(',');
    AppendCell(p, out);
  }
  if (labelled) out->append(",label,label_delay_ms");
  for (const FeatureDef& f : spec->features) {
    out->push_back(',');
    AppendCell(f.name, out);
  }
  out->push_back('\n');

  BackfillResult res;
  std::vector<double> values(spec->features.size());
  event::Record rec;
  event::Rejection rej;
  while (true) {
    const auto r = reader.Next(&rec, &rej);
    if (r == event::EventReader::Result::kEnd) break;
    if (options.progress && (reader.records_read() & 0xffff) == 0) {
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
    AppendCell(rec.event_id, out);
    out->push_back(',');
    core::AppendTimestamp(rec.time_ms, out);
    out->push_back(',');
    out->append(rec.type->name);
    const int* pt = pass.data() + static_cast<size_t>(rec.type->index) * np;
    for (size_t i = 0; i < np; ++i) {
      out->push_back(',');
      if (pt[i] >= 0 && rec[pt[i]].present()) AppendCell(rec[pt[i]].text, out);
    }
    if (labelled) {
      out->push_back(',');
      labels.AppendCells(rec, out);
    }
    for (double v : values) {
      out->push_back(',');
      AppendShortestDouble(v, out);
    }
    out->push_back('\n');
    ++res.rows;
    VIGIL_RETURN_IF_ERROR(sink->MaybeFlush());
  }
  if (!reader.status().ok()) return reader.status();
  VIGIL_RETURN_IF_ERROR(sink->Close());
  res.read = reader.records_read();
  res.engine = engine.Stats();
  res.too_late = res.engine.too_late;
  if (options.progress) options.progress(res.read, res.rows);

  if (options.out != "-") {
    nlohmann::ordered_json m;
    m["format"] = "vigil.features/1";
    m["spec"] = spec->file;
    m["spec_hash"] = spec->content_hash;
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
      m["labels_as_of"] = core::FormatTimestamp(labels.end());
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
    m["latest_event_time"] = engine.latest_time_ms() == INT64_MIN
                                 ? nlohmann::ordered_json(nullptr)
                                 : nlohmann::ordered_json(core::FormatTimestamp(engine.latest_time_ms()));
    m["created"] = core::FormatTimestamp(core::WallNowMs());
    res.meta_path = options.out + ".meta.json";
    std::ofstream f(res.meta_path);
    f << m.dump(2) << "\n";
    if (!f) return absl::DataLossError(StrCat(res.meta_path, ": cannot write"));
  }
  return res;
}

}  // namespace vigil::feature
