// A feature spec: the features vigil computes for the events it scores,
// declared once in YAML (docs/features.md) and computed by one engine online
// and offline. Loaded once, checked against the schema (unknown fields, bad
// windows, type mismatches, cyclic derived features, labels read without
// their lag), and then immutable. The order of features is the spec's order;
// the spec has a content hash that bundles and servers compare.
//
// Thread-safety: immutable after Load; share freely.
#ifndef VIGIL_FEATURE_SPEC_H_
#define VIGIL_FEATURE_SPEC_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/string_map.h"
#include "core/time.h"
#include "event/schema.h"
#include "expr/expr.h"

namespace vigil::feature {

enum class Agg : uint8_t {
  kCount,
  kSum,
  kMean,
  kMin,
  kMax,
  kStddev,
  kDistinctCount,
  kLast,
  kTimeSinceLast,  // ms since the entity's previous event (the current one excluded)
  kFirstSeen,      // ms since the entity's first event (the current one excluded): its age
  kDecayedSum,     // sum of values (or 1 per event) halved every half_life
  kGapMean,        // mean ms between consecutive events in the window
  kGapCv,          // coefficient of variation of those gaps (timing regularity)
  // Identity graph (docs/identity-graph.md), for the event's account:
  kClusterSize,      // nodes (accounts, devices, cards...) in its cluster
  kClusterAccounts,  // accounts in its cluster
  kClusterCounter,   // a cluster counter (promo redemptions in the ring)
};
const char* AggName(Agg a);

// One stream of entries per entity: the events of chosen types that pass a
// filter, keyed by one field or a tuple, with one value field. Aggregates
// that share all of these share the stream (one buffer per entity).
struct Stream {
  int index = 0;
  // A field name, or an expression (text with a parenthesis, such as
  // "ip_prefix(event.ip, 24)") whose value is the key; null: no key.
  std::vector<std::string> key_fields;
  std::vector<std::shared_ptr<const expr::Expr>> key_exprs;  // [k], null for a field
  std::vector<bool> on_type;          // by event type index
  std::vector<int> key_field_index;   // [type * key_fields.size() + k], -1 if absent
  std::string of;                     // value field, or "" (count-like)
  std::vector<int> of_field_index;    // by event type index, -1 if absent
  std::shared_ptr<const expr::Expr> where;  // optional filter
  std::string where_text;
  int64_t max_reach_ms = 0;  // the oldest time any of its windows reads, behind t
  bool lifetime = false;     // some aggregate needs the whole history
  bool distinct = false;     // entries carry a value hash for distinct_count
  bool unit_values = false;  // a decayed_sum without `of` sums 1 per event: `of` must stay empty
  // Fed by label events (on: [label]): a label names its entity directly
  // (target_entity with this stream's key field) or through the event it
  // labels (target_event_id), remembered for label_join_memory events.
  bool label_fed = false;
  event::FieldType key_type = event::FieldType::kString;  // of the key field (labels carry text)
};

struct FeatureDef {
  std::string name;
  int index = 0;
  std::string where;  // file:line:col of its declaration
  // Aggregate features.
  bool is_aggregate = false;
  Agg agg = Agg::kCount;
  int stream = -1;
  int64_t window_ms = 0;  // 0 = lifetime
  int64_t lag_ms = 0;
  int64_t half_life_ms = 0;
  int counter = -1;  // kClusterCounter: index into IdentitySpec::counters
  double empty_value = 0;  // value over an empty window (count and sum 0; others NaN unless `default`)
  // Derived features.
  std::shared_ptr<const expr::Expr> expr;
};

// The identity graph's configuration: which fields link in an event, its
// guardrails and its cluster counters.
struct IdentitySpec {
  bool enabled = false;
  std::string account;              // the account field (first node of every event)
  std::vector<std::string> links;   // fields linked to the account when present
  // Per event type: field index of the account and of each link (-1 absent),
  // and each field's node kind hash (its entity kind).
  std::vector<int> account_index;             // [type]
  std::vector<int> link_index;                // [type * links + i]
  uint64_t account_kind = 0;
  std::vector<uint64_t> link_kind;            // [i]
  int64_t link_ttl_ms = 90 * core::kMsPerDay;
  int32_t max_degree = 50;
  int64_t rebuild_every_ms = core::kMsPerDay;
  std::vector<uint64_t> stop_nodes;           // node ids that never link
  struct Counter {
    std::string name;
    std::vector<bool> on_type;
    std::string of;                // value added (default 1)
    std::vector<int> of_index;     // [type]
  };
  std::vector<Counter> counters;
};

// Training labels from delayed label events (docs/features.md).
struct LabelKind {
  std::string kind;
  int64_t horizon_ms = 0;
};

struct FeatureSpec {
  std::string name;
  std::string file;
  // SHA-256, hex, of what the spec says (ConfigNode::CanonicalText: a
  // comment or the layout changes nothing), the files it loads and the
  // schema's content_hash. A model bundle names it.
  std::string content_hash;
  // The same over the files' bytes: what content_hash was before 2026-12,
  // which the bundles trained then name.
  std::string legacy_hash;
  std::shared_ptr<const event::Schema> schema;
  std::vector<bool> score_on;  // by event type index
  std::vector<std::string> score_on_names;
  int64_t lateness_ms = 0;
  // Limits on state. An entity with no event for entity_ttl is forgotten
  // (checked every ttl/16 of event time, at least hourly); an entity keeps at most
  // max_entries_per_key raw entries per stream, merging its oldest beyond that
  // into time buckets (windows reaching back into them are approximate within
  // the bound docs/features.md states; counted in stats).
  int64_t entity_ttl_ms = 0;
  int64_t max_entries_per_key = 0;
  int64_t label_join_memory = 0;  // event ids remembered per label-fed stream
  int64_t distinct_exact_limit = 0;  // lifetime distinct counts exact up to this, then HLL
  std::vector<std::string> passthrough;  // schema field names copied to backfill rows
  std::vector<FeatureDef> features;
  std::vector<Stream> streams;
  std::vector<int> eval_order;  // derived features in dependency order
  std::vector<LabelKind> label_kinds;  // empty: no `label` column
  IdentitySpec identity;
  std::shared_ptr<const expr::Lists> lists;
  std::shared_ptr<const expr::Tables> tables;

  // Loads `path` against `schema`. Every error names file:line:col.
  static absl::StatusOr<std::shared_ptr<const FeatureSpec>> Load(
      const std::string& path, std::shared_ptr<const event::Schema> schema);
  static absl::StatusOr<std::shared_ptr<const FeatureSpec>> LoadString(
      std::string_view yaml, std::string_view name, std::shared_ptr<const event::Schema> schema);

  int FeatureIndex(std::string_view name) const;  // -1 if none
  std::vector<std::string> FeatureNames() const;
};

}  // namespace vigil::feature

#endif  // VIGIL_FEATURE_SPEC_H_
