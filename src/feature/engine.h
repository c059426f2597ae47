// The feature engine: one engine for serving and for backfill. It takes
// events in the order it is given them and, for each, first applies the
// event to its state and then reads the event's features. A window
// (t − lag − w, t − lag] sees the current event (when lag is 0) and every
// event given before it with a time in range, never one given after it, even
// at the same millisecond; time_since_last and first_seen exclude the
// current event. Events more than `lateness` behind the latest time seen are
// counted and not applied; later ones within it are applied at their own
// time. Because backfill and serving run this same code over the same order,
// they agree bit for bit.
//
// State: per stream (docs/features.md), a map from the entity's key hash to
// its recent entries (time-ordered) and lifetime statistics. Windowed sums
// and counts move with two cursors (amortised O(1) per event); min, max,
// stddev, gaps and windowed decayed sums scan the window. Past
// limits.max_entries_per_key entries, an entity's oldest entries are merged
// into time buckets, and windows reaching back into them are approximate
// within the bound docs/features.md states ("Over the per-key cap").
//
// Thread-safety: none (but bucketed()). One engine per thread (serving shards by entity).
#ifndef VIGIL_FEATURE_ENGINE_H_
#define VIGIL_FEATURE_ENGINE_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "event/record.h"
#include "feature/spec.h"

namespace vigil::feature {

struct EngineStats {
  int64_t events = 0;         // given to Process
  int64_t applied = 0;        // applied to state
  int64_t too_late = 0;       // beyond the lateness bound: not applied
  int64_t late_applied = 0;   // behind the latest time, within the bound
  int64_t expired = 0;        // entities forgotten after entity_ttl without an event
  int64_t bucketed = 0;       // entries merged into time buckets by the per-key cap
  int64_t entities = 0;       // live entity states over all streams
  int64_t entries = 0;        // buffered entries over all entities (raw, not in buckets)
  int64_t buckets = 0;        // time buckets over all entities past the per-key cap
  int64_t memory_bytes = 0;   // approximate
};

class FeatureEngine {
 public:
  explicit FeatureEngine(std::shared_ptr<const FeatureSpec> spec);
  ~FeatureEngine();
  FeatureEngine(const FeatureEngine&) = delete;
  FeatureEngine& operator=(const FeatureEngine&) = delete;

  const FeatureSpec& spec() const { return *spec_; }
  size_t num_features() const { return spec_->features.size(); }

  enum class Result {
    kScored,     // applied; `out` holds the features
    kNotScored,  // applied; the type is not in score_on, `out` untouched
    kTooLate,    // beyond the lateness bound: not applied; `out` all NaN if scored type
  };
  // Applies `rec` and, for a scored event type, writes its features to `out`
  // (NaN = missing) in spec order. REQUIRES: out.size() >= num_features(),
  // `rec` valid against the spec's schema.
  // Hot path: no allocation once the entities exist.
  Result Process(const event::Record& rec, std::span<double> out);

  // Read-ahead, for a caller that sees events before it processes them (a
  // backfill reading a file): before each Process, the stream keys of the
  // event kReadAhead events later (from ReadAheadFields and StreamKey; 0
  // where a stream has none or the caller cannot tell). The engine fetches
  // into the cache, in stages, what that event's streams will read: their
  // index slots now, their states one event later, their newest entries and
  // cursors the next, the entries those cursors stand at the last. Hints
  // only: a key that is wrong, missing or out of step costs a useless fetch
  // and changes no value.
  static constexpr int kReadAhead = 4;
  void ReadAhead(std::span<const uint64_t> keys);
  // Per stream, the fields of an event of `type` (by index) whose
  // event::KeyHash values make its key, in order: empty where the key cannot
  // be read ahead (a key expression, a stream fed by label events).
  std::vector<std::vector<int>> ReadAheadFields(int type) const;
  // A stream's key from its key fields' KeyHash values, as Process makes it.
  static uint64_t StreamKey(std::span<const uint64_t> field_hashes);

  int64_t latest_time_ms() const { return latest_ms_; }
  // Walks every entity (for the memory estimate): not per event.
  EngineStats Stats() const;
  // Events given to Process so far (Stats().events, without the walk).
  int64_t events() const;
  // EngineStats::bucketed, without the walk over every entity Stats() does.
  // The one call that may run on another thread while Process runs (a
  // server's metrics).
  int64_t bucketed() const;

  // Snapshot: the whole state as bytes (versioned, checksummed, entities in
  // key order), and back. Processing after Restore gives exactly what an
  // uninterrupted run gives. Restore fails with FailedPrecondition for a
  // snapshot of another spec, InvalidArgument for corrupt or truncated
  // bytes; on failure the engine is left empty.
  void SerializeTo(std::string* out) const;
  // The same bytes appended to *out.
  void AppendTo(std::string* out) const;
  absl::Status Restore(std::string_view snapshot);
  // The same to and from a file (written to a temporary name, then renamed).
  absl::Status SaveSnapshot(const std::string& path) const;
  absl::Status LoadSnapshot(const std::string& path);

 private:
  struct Impl;
  std::shared_ptr<const FeatureSpec> spec_;
  std::unique_ptr<Impl> impl_;
  int64_t latest_ms_ = INT64_MIN;
};

}  // namespace vigil::feature

#endif  // VIGIL_FEATURE_ENGINE_H_
