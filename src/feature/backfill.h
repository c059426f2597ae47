// Backfill: replays an event file through the FeatureEngine, in file order,
// and writes one CSV row per scored event — exactly what a server would have
// computed for it at that instant — plus `<out>.meta.json`, which names the
// id, time, label and feature columns so that training can never take an id,
// a label or ground truth for a feature. docs/features.md describes the
// columns.
//
// Thread-safety: one backfill per thread; the writer is internal.
#ifndef VIGIL_FEATURE_BACKFILL_H_
#define VIGIL_FEATURE_BACKFILL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "event/dead_letter.h"
#include "event/event_reader.h"
#include "event/pii.h"
#include "feature/engine.h"
#include "feature/spec.h"

namespace vigil::feature {

struct BackfillOptions {
  std::string out;                 // .csv, .csv.gz (gzip) or - (standard output, no meta file)
  std::optional<int64_t> as_of_ms; // the end of the data for labels (default: latest event time)
  // When the spec defines training labels (labels:), a second reader over
  // the same events: a first pass collects the label events, so that each
  // row can be labelled from labels that arrive after it.
  event::EventReader* label_pass = nullptr;
  // Called every 4,096 records and at the end (records read, rows written).
  std::function<void(int64_t records, int64_t rows)> progress;
  // Masks passthrough fields marked `pii` (hash or redact), as everything
  // else vigil writes does; null: a hasher keyed from the schema's
  // pii.key_env variable.
  const event::PiiHasher* pii = nullptr;
};

struct BackfillResult {
  int64_t read = 0;
  int64_t rejected = 0;
  int64_t rows = 0;
  int64_t too_late = 0;  // scored events beyond the lateness bound: no row
  EngineStats engine;
  std::string meta_path;
};

// Training labels: `label` is 1 when a label event of a kind the spec lists
// names the row's event (target_event_id), or its entity (target_entity, for
// rows in [label time − horizon, label time]), within the kind's horizon
// after the row, and no later 0 for that kind and target overrode it; 0 when
// every horizon passed without one; empty when some horizon had not passed
// by the end of the data (the latest event time, or as_of).
// `label_delay_ms` is the delay of the label that made it 1.
//
// Runs `reader` through a new engine for `spec`; rejected records go to
// `dead` when given. Fails on an I/O error (reading or writing), naming it.
absl::StatusOr<BackfillResult> Backfill(event::EventReader& reader,
                                        std::shared_ptr<const FeatureSpec> spec,
                                        const BackfillOptions& options,
                                        event::DeadLetterWriter* dead);

}  // namespace vigil::feature

#endif  // VIGIL_FEATURE_BACKFILL_H_
