#include "feature/engine.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "core/bytes.h"
#include "core/file.h"
#include "core/hash.h"
#include "core/incremental_map.h"
#include "core/remap_vector.h"
#include "core/sealed.h"
#include "core/sketch.h"
#include "core/strings.h"
#include "core/time.h"
#include "feature/identity_graph.h"

namespace vigil::feature {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kNone = INT64_MIN;

// 16 bytes: the entries are most of the engine's memory and of its cache
// misses. (The hashes of values for windowed distinct counts live beside
// them, in WindowDistinct, in the streams that have such counts.)
struct Entry {
  int64_t t;
  double v;  // the value read (1 for streams without `of`)
};

// Adds x to sum with Neumaier's compensation in comp.
inline void AddCompensated(double x, double& sum, double& comp) {
  const double t = sum + x;
  comp += std::fabs(sum) >= std::fabs(x) ? (sum - t) + x : (x - t) + sum;
  sum = t;
}

// One window (lag, width) over an entity's entries: [lo, hi) absolute
// indices of the entries in (q − width, q], with running sums. 48 bytes:
// a stream's cursors are read on every event (its distinct counts, when
// it has any, are in WindowDistinct).
struct Cursor {
  int64_t lo = 0;
  int64_t hi = 0;
  int64_t q = kNone;
  // The window's sum, with Neumaier's compensation: values leave as they
  // came, so a large one leaving does not take small ones with it.
  double sum = 0;
  double comp = 0;
  bool valid = false;
  void Add(double x) { AddCompensated(x, sum, comp); }
  double Sum() const { return sum + comp; }
};

// The windowed distinct counts of an entity whose stream has any: the hash
// of each entry's value (hashes[i] belongs to buf[i]) and, per cursor, value
// hash -> count in the window (empty for cursors without a distinct count).
struct WindowDistinct {
  std::vector<uint64_t> hashes;
  std::vector<absl::flat_hash_map<uint64_t, int32_t>> counts;
};

// erase, not clear(): clear() frees a large table, and the hot path must not
// allocate it again.
inline void ClearCounts(absl::flat_hash_map<uint64_t, int32_t>& m) { m.erase(m.begin(), m.end()); }

struct Decay {
  double sum = 0;
  int64_t ref = kNone;
};

struct Lifetime {
  // Read or written by every event of the entity: first.
  int64_t n = 0;
  int64_t first_t = kNone, last_t = kNone;
  double last_v = kNaN;
  // Kept only when read (StreamPlan::life_moments, life_gaps).
  double sum = 0, mean = 0, m2 = 0;
  double sum_comp = 0;  // sum's compensation (Neumaier), as a window's
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  int64_t gaps = 0;
  double gap_mean = 0, gap_m2 = 0;
  // The sum with its compensation. Once the running sum itself is past a
  // double it reads inf (or NaN) from then on, as a plain sum would (the
  // compensation is then inf − inf); near the limit, sum + compensation may
  // read inf while it lasts.
  double Sum() const { return std::isfinite(sum) ? sum + sum_comp : sum; }
};

// One time bucket of an entity over the per-key cap: entries merged, with
// their count and moments. It lies in one aligned cell of 2^level ms (the
// cell holding t_min); docs/features.md ("Over the per-key cap") has the
// rule that picks the level and the error bound it gives.
struct Bucket {
  int64_t t_min;  // time of its oldest entry
  int64_t t_max;  // time of its latest entry
  int64_t n;
  double sum;
  double m2;  // sum of squared deviations from its mean
  double min, max;
  double last_v;  // value of its latest entry (ties: the one given last)
  int32_t level;
  // The time a window places it at: in (q - width, q] or not, as a whole.
  int64_t Rep() const { return t_min + (t_max - t_min) / 2; }
};

// The running totals of an entity's buckets before bucket i, and bucket
// i's Rep(): a window's buckets are a range found by binary search, and
// their count and sum a difference. Derived from the buckets (rebuilt when
// they change, never written to a snapshot): the same buckets give the
// same bits.
struct BucketPrefix {
  int64_t rep;
  int64_t n;
  double sum, comp;
};

// The bucket tier of an entity over the per-key cap: its oldest entries,
// merged into time buckets, all older than (or as old as) buf.front().
// Allocated when the entity first goes over the cap, freed when its last
// bucket ages out.
struct BucketTier {
  std::vector<Bucket> buckets;       // time-ordered, disjoint
  std::vector<BucketPrefix> prefix;  // buckets.size() + 1
  // The first prefix whose totals an overflow spoilt (a sum past a double,
  // or a bucket's own that did), or SIZE_MAX: windows ending there or later
  // sum their buckets again. (A string field's buckets sum to NaN, which
  // nothing reads: they spoil nothing.)
  size_t overflow_at = SIZE_MAX;
  // Per cursor, the buckets in its window for the current event (set in
  // Process before the features read them).
  struct Part {
    int64_t lo = 0, hi = 0;  // [lo, hi) indices into buckets
    int64_t n = 0;
    double sum = 0;
  };
  std::vector<Part> parts;
};

// What every event of the entity reads (buf, base, tier, cursors, the start
// of life) comes first: the first 96 bytes. `tier` is null for every entity
// under the per-key cap: their only extra work is that test, on a line
// already read.
struct EntityState {
  std::vector<Entry> buf;  // time-ordered; buf[i] has absolute index base + i
  int64_t base = 0;
  std::unique_ptr<BucketTier> tier;  // entries merged past the per-key cap, or null
  std::vector<Cursor> cursors;
  Lifetime life;
  std::unique_ptr<WindowDistinct> distinct;  // streams with a windowed distinct count
  std::vector<Decay> decays;
  // Distinct values over the whole history, for lifetime distinct_count.
  std::unique_ptr<absl::flat_hash_set<uint64_t>> life_distinct;
  // Past distinct_exact_limit values, a HyperLogLog instead (about 1.6 %).
  std::unique_ptr<core::DistinctCounter> life_hll;
};

// The entity states of one stream: a map of key -> index (16-byte slots)
// and the states in chunks that never move. A lookup probes a line of small
// slots, where a map of the 224-byte states themselves had a slot span up to
// five lines, and absl's prefetch fetched the first line of the probe's
// group, most often another slot's; once the index is known, Process fetches
// all of a state's lines at once. Growing adds a chunk and copies no state;
// a chunk's states are made one at a time as entities come, so that no
// event pays for writing a whole chunk. A swept entity's state is reset (its
// memory freed) and its place reused. Pointers to states stay valid until
// the entity is erased.
class EntityTable {
 public:
  EntityTable() = default;
  EntityTable(EntityTable&& o) noexcept
      : index_(std::move(o.index_)),
        chunks_(std::move(o.chunks_)),
        free_(std::move(o.free_)),
        used_(std::exchange(o.used_, 0)) {}
  EntityTable& operator=(EntityTable&&) = delete;
  ~EntityTable() {
    for (uint32_t i = 0; i < used_; ++i) std::destroy_at(&At(i));
  }

  EntityState* find(uint64_t key) {
    const uint32_t* i = index_.find(key);
    return i ? &At(*i) : nullptr;
  }
  const EntityState* find(uint64_t key) const { return const_cast<EntityTable*>(this)->find(key); }
  // The state of `key`, made when absent (then `true`).
  std::pair<EntityState*, bool> try_emplace(uint64_t key) {
    auto [i, fresh] = index_.try_emplace(key, 0u);
    if (fresh) *i = Allocate();
    return {&At(*i), fresh};
  }
  void prefetch(uint64_t key) const { index_.prefetch(key); }
  // Erases every entity for which pred(key, state) holds; how many.
  template <typename Pred>
  size_t erase_if(Pred pred) {
    return index_.erase_if([&](uint64_t k, uint32_t i) {
      EntityState& e = At(i);
      if (!pred(k, std::as_const(e))) return false;
      e = EntityState{};
      free_.push_back(i);
      return true;
    });
  }
  // Calls f(key, state) for every entity.
  template <typename F>
  void for_each(F f) const {
    index_.for_each([&](uint64_t k, uint32_t i) { f(k, At(i)); });
  }
  size_t size() const { return index_.size(); }
  void reserve(size_t n) { index_.reserve(n); }
  // The index's slots and the chunks' room for states, in bytes.
  size_t memory_bytes() const {
    return index_.capacity() * (sizeof(std::pair<uint64_t, uint32_t>) + 1) +
           chunks_.size() * kChunk * sizeof(EntityState) + free_.capacity() * sizeof(uint32_t);
  }

 private:
  static constexpr uint32_t kChunkBits = 9;  // 512 states, 112 KiB
  static constexpr uint32_t kChunk = 1u << kChunkBits;
  EntityState& At(uint32_t i) { return chunks_[i >> kChunkBits].get()[i & (kChunk - 1)]; }
  const EntityState& At(uint32_t i) const {
    return chunks_[i >> kChunkBits].get()[i & (kChunk - 1)];
  }
  uint32_t Allocate() {
    if (!free_.empty()) {
      const uint32_t i = free_.back();
      free_.pop_back();
      return i;
    }
    if ((used_ >> kChunkBits) == chunks_.size()) {
      chunks_.emplace_back(std::allocator<EntityState>().allocate(kChunk));
    }
    std::construct_at(&At(used_));
    return used_++;
  }
  // A chunk's storage; its states are made and destroyed by the table.
  struct FreeChunk {
    void operator()(EntityState* p) const { std::allocator<EntityState>().deallocate(p, kChunk); }
  };

  core::IncrementalMap<uint64_t, uint32_t> index_;
  std::vector<std::unique_ptr<EntityState, FreeChunk>> chunks_;
  std::vector<uint32_t> free_;  // indices of erased states, to reuse
  uint32_t used_ = 0;           // indices handed out so far
};

// A bucket spans at most 1/kBucketSlack of its age: of how far its cell's
// end lies behind the latest time seen when it was formed. Hence the error
// bound in docs/features.md ("Over the per-key cap").
constexpr int64_t kBucketSlack = 64;
constexpr int kMaxBucketLevel = 48;  // cells of 2^48 ms: 8,900 years

// Whether the aligned cell of 2^level ms holding t may be one bucket when
// the latest time is `now`. (The cells of one level tile time; each lies in
// one cell of every coarser level.)
inline bool CellFits(int64_t t, int level, int64_t now) {
  const int64_t width = int64_t{1} << level;
  const int64_t end = ((t >> level) << level) + width;
  return end <= now - kBucketSlack * width;
}

// The coarsest level from `level` up whose cell holding t fits (`level`
// when none above it does). Fitting is monotone: a coarser cell ends no
// earlier and is wider, so the levels that fit are 0..L.
int CoarsestLevel(int64_t t, int level, int64_t now) {
  const int64_t age = now - t;
  if (age <= kBucketSlack) return level;
  // kBucketSlack * 2^L < age is necessary: start there and come down.
  int l = std::min<int>(
      kMaxBucketLevel,
      static_cast<int>(std::bit_width(static_cast<uint64_t>(age / kBucketSlack))) - 1);
  while (l > level && !CellFits(t, l, now)) --l;
  return std::max(l, level);
}

Bucket SingleEntryBucket(int64_t t, double v) { return Bucket{t, t, 1, v, 0, v, v, v, 0}; }

// Adds bucket b, later in time than a, to a (moments by Chan et al.).
void Absorb(Bucket& a, const Bucket& b) {
  const double na = static_cast<double>(a.n), nb = static_cast<double>(b.n);
  const double d = b.sum / nb - a.sum / na;
  a.m2 += b.m2 + d * d * (na * nb / (na + nb));
  a.sum += b.sum;
  a.n += b.n;
  a.min = std::min(a.min, b.min);
  a.max = std::max(a.max, b.max);
  a.t_max = b.t_max;
  a.last_v = b.last_v;
}

void RebuildPrefix(BucketTier& bt) {
  bt.prefix.resize(bt.buckets.size() + 1);
  bt.overflow_at = SIZE_MAX;
  int64_t n = 0;
  double sum = 0, comp = 0;
  for (size_t i = 0; i < bt.buckets.size(); ++i) {
    const Bucket& b = bt.buckets[i];
    bt.prefix[i] = BucketPrefix{b.Rep(), n, sum, comp};
    n += b.n;
    AddCompensated(b.sum, sum, comp);
    // (A number field's buckets have a min; a string field's, NaN.)
    if (bt.overflow_at == SIZE_MAX &&
        (std::isinf(sum) || (!std::isfinite(b.sum) && !std::isnan(b.min)))) {
      bt.overflow_at = i + 1;
    }
  }
  bt.prefix.back() = BucketPrefix{std::numeric_limits<int64_t>::max(), n, sum, comp};
}

// Merges the k entries (time-ordered, none older than the buckets) into the
// buckets, and every bucket into the coarsest cell that fits now: in one
// pass, in place, so that the tier holds a bounded number of buckets after
// every merge (docs/features.md gives the bound).
void MergeIntoBuckets(BucketTier& bt, const Entry* entries, size_t k, int64_t now) {
  size_t w = 0;
  auto place = [&](Bucket b) {
    b.level = CoarsestLevel(b.t_min, b.level, now);
    if (w > 0) {
      Bucket& p = bt.buckets[w - 1];
      // (Items in one cell that fits all coarsen to it: whether a cell fits
      // depends on the cell alone.)
      if (p.level == b.level && (p.t_min >> p.level) == (b.t_min >> b.level)) {
        Absorb(p, b);
        return;
      }
    }
    if (w < bt.buckets.size()) {
      bt.buckets[w] = b;
    } else {
      bt.buckets.push_back(b);
    }
    ++w;
  };
  const size_t old = bt.buckets.size();
  for (size_t i = 0; i < old; ++i) place(bt.buckets[i]);  // a copy: place writes at w <= i
  for (size_t i = 0; i < k; ++i) place(SingleEntryBucket(entries[i].t, entries[i].v));
  bt.buckets.resize(w);
  RebuildPrefix(bt);
}

// A late entry older than the newest bucket: into the bucket whose time
// range holds it, or a new bucket of its own between two (the next merge
// coarsens it).
void InsertIntoBuckets(BucketTier& bt, int64_t t, double v) {
  auto it = std::lower_bound(bt.buckets.begin(), bt.buckets.end(), t,
                             [](const Bucket& b, int64_t x) { return b.t_max < x; });
  if (it != bt.buckets.end() && it->t_min <= t) {
    const double mean = it->sum / static_cast<double>(it->n);
    ++it->n;
    it->sum += v;
    it->m2 += (v - mean) * (v - it->sum / static_cast<double>(it->n));
    it->min = std::min(it->min, v);
    it->max = std::max(it->max, v);
    if (t >= it->t_max) it->last_v = v;  // (t <= t_max: the lower bound)
  } else {
    bt.buckets.insert(it, SingleEntryBucket(t, v));
  }
  RebuildPrefix(bt);
}

// Event id -> entity key for a label-fed stream, for the last `capacity`
// events: a label naming an event finds its entity here.
// Both grow without a pause (a plain map doubling, or rehashing away the
// tombstones the ring's evictions leave, at a million ids held up its event
// for milliseconds; so did the ring's vector doubling).
struct EventIndex {
  size_t capacity = 0;
  size_t next = 0;
  core::RemapVector<uint64_t> ring;  // ids in arrival order
  core::IncrementalMap<uint64_t, uint64_t> keys;

  void Put(uint64_t id, uint64_t key) {
    if (capacity == 0) return;
    if (auto [k, inserted] = keys.try_emplace(id, key); !inserted) {
      *k = key;  // known id: key updated
      return;
    }
    if (ring.size() < capacity) {
      ring.push_back(id);
    } else {
      keys.erase(ring[next]);
      ring[next] = id;
      next = (next + 1) % capacity;
    }
  }
};

// How a feature reads its stream.
struct FeaturePlan {
  int stream = -1;
  int cursor = -1;  // -1: lifetime
  int decay = -1;   // lifetime decayed sums
};

struct StreamPlan {
  std::vector<std::pair<int64_t, int64_t>> windows;  // (lag, width) per cursor
  std::vector<int64_t> half_lives;                   // lifetime decayed sums
  std::vector<uint8_t> cursor_distinct;  // cursor keeps distinct counts (not vector<bool>: read per event)
  bool window_distinct = false;          // any cursor does: entities have a WindowDistinct
  bool needs_buffer = false;
  // Lifetime statistics beyond count, first, last: kept only when read.
  bool life_moments = false;  // sum, mean, m2, min, max
  bool life_gaps = false;     // gap mean and variance
  bool life_distinct = false;
  size_t keys = 0;
  // The buckets a merge leaves at most (docs/features.md, "Memory"), plus
  // cap / 4: late events put among the buckets past it merge them again.
  size_t max_buckets = 0;
};

// A new entity of the stream: its cursors, decayed sums, distinct counts.
void InitEntity(const StreamPlan& sp, EntityState& e) {
  e.cursors.resize(sp.windows.size());
  e.decays.resize(sp.half_lives.size());
  if (sp.window_distinct) {
    e.distinct = std::make_unique<WindowDistinct>();
    e.distinct->counts.resize(sp.windows.size());
  }
}

// A count, sum or mean over a window, read straight off its cursor.
struct WindowRead {
  int feature;
  int stream;
  int cursor;
  Agg agg;
  double empty_value;
};

// Per stream, what the current event found.
// Where a stream's key starts before its fields' hashes are combined in.
constexpr uint64_t kKeySeed = 0x9e3779b97f4a7c15ull;

struct Scratch {
  bool has_key = false;
  uint64_t key = 0;
  EntityState* entity = nullptr;
  int64_t pre_last = kNone;   // the entity's latest time before this event
  int64_t pre_first = kNone;  // its first time before this event
  int64_t pre_n = 0;
};

}  // namespace

struct FeatureEngine::Impl {
  const FeatureSpec& spec;
  std::vector<StreamPlan> streams;
  std::vector<FeaturePlan> features;
  // The aggregate features, flat, in the order of the spec: those read off a
  // window's cursor, and the others (Compute).
  std::vector<WindowRead> window_reads;
  std::vector<int> computed;
  // Per stream. Its index is incremental: a table of 100 k+ entities that
  // doubled in one step held up the event (and a server's queue) for 10-50 ms.
  std::vector<EntityTable> entities;
  std::vector<Scratch> scratch;
  // ReadAhead's stages, per stream: [d] for the event d + 1 events ahead of
  // the next Process (keys, and the states found for the nearer two).
  std::array<std::vector<uint64_t>, kReadAhead> ahead_keys;
  std::array<std::vector<const EntityState*>, kReadAhead> ahead_states;
  std::vector<EventIndex> event_index;  // per stream; used by label-fed streams
  int label_fields[3] = {-1, -1, -1};   // target_event_id, target_entity.key, .value
  EngineStats stats;
  // stats.bucketed for readers on other threads (bucketed()).
  std::atomic<int64_t> bucketed_shown{0};
  int64_t last_sweep = kNone;
  std::unique_ptr<IdentityGraph> graph;
  std::vector<uint64_t> nodes;  // the current event's graph nodes
  uint64_t account = 0;         // its account node
  bool has_account = false;

  explicit Impl(const FeatureSpec& s) : spec(s) {
    streams.resize(s.streams.size());
    for (int d = 0; d < kReadAhead; ++d) {
      ahead_keys[d].assign(s.streams.size(), 0);
      ahead_states[d].assign(s.streams.size(), nullptr);
    }
    for (size_t i = 0; i < s.streams.size(); ++i) streams[i].keys = s.streams[i].key_fields.size();
    for (const FeatureDef& f : s.features) {
      FeaturePlan p;
      // A count, sum or mean over a window is read straight off its cursor
      // (most features: a WindowRead), without Compute.
      bool windowed_sum = false;
      if (f.is_aggregate && f.stream >= 0) {
        p.stream = f.stream;
        StreamPlan& sp = streams[f.stream];
        if (f.window_ms > 0) {
          const std::pair<int64_t, int64_t> w{f.lag_ms, f.window_ms};
          auto it = std::find(sp.windows.begin(), sp.windows.end(), w);
          p.cursor = static_cast<int>(it - sp.windows.begin());
          if (it == sp.windows.end()) {
            sp.windows.push_back(w);
            sp.cursor_distinct.push_back(false);
          }
          if (f.agg == Agg::kDistinctCount) sp.cursor_distinct[p.cursor] = sp.window_distinct = true;
          sp.needs_buffer = true;
          windowed_sum = f.agg == Agg::kCount || f.agg == Agg::kSum || f.agg == Agg::kMean;
        } else if (f.agg == Agg::kDecayedSum) {
          p.decay = static_cast<int>(sp.half_lives.size());
          sp.half_lives.push_back(f.half_life_ms);
        } else if (f.agg == Agg::kDistinctCount) {
          sp.life_distinct = true;
        } else if (f.agg == Agg::kGapCv) {
          sp.life_gaps = true;
        } else if (f.agg == Agg::kSum || f.agg == Agg::kMean || f.agg == Agg::kMin ||
                   f.agg == Agg::kMax || f.agg == Agg::kStddev) {
          sp.life_moments = true;
        }
      }
      features.push_back(p);
      if (f.is_aggregate) {
        if (windowed_sum) {
          window_reads.push_back(WindowRead{f.index, p.stream, p.cursor, f.agg, f.empty_value});
        } else {
          computed.push_back(f.index);
        }
      }
    }
    for (size_t i = 0; i < s.streams.size(); ++i) {
      const double reach = static_cast<double>(s.streams[i].max_reach_ms + s.lateness_ms);
      const int levels = reach > 64 ? static_cast<int>(std::log2(reach / 64)) : 0;
      streams[i].max_buckets =
          static_cast<size_t>(65 * (levels + 3) + std::max<int64_t>(s.max_entries_per_key / 4, 1));
    }
    entities.resize(s.streams.size());
    scratch.resize(s.streams.size());
    event_index.resize(s.streams.size());
    for (const Stream& st : s.streams) {
      if (st.label_fed) event_index[st.index].capacity = static_cast<size_t>(s.label_join_memory);
    }
    const event::EventTypeSpec& lt = s.schema->types[s.schema->label_type];
    label_fields[0] = lt.Find("target_event_id")->index;
    label_fields[1] = lt.Find("target_entity.key")->index;
    label_fields[2] = lt.Find("target_entity.value")->index;
    if (s.identity.enabled) {
      IdentityGraphOptions o;
      o.link_ttl_ms = s.identity.link_ttl_ms;
      o.max_degree = s.identity.max_degree;
      o.rebuild_every_ms = s.identity.rebuild_every_ms;
      o.counters = static_cast<int32_t>(s.identity.counters.size());
      graph = std::make_unique<IdentityGraph>(o);
      for (uint64_t n : s.identity.stop_nodes) graph->AddStopNode(n);
      nodes.reserve(1 + s.identity.links.size());
    }
  }

  // Links the event's account to its devices, cards... and counts it.
  void Observe(const event::Record& rec, int type, int64_t t) {
    const IdentitySpec& g = spec.identity;
    has_account = false;
    // A field links when it has a value ("" is none).
    const int ai = g.account_index[type];
    if (!event::HasKeyValue(rec, ai)) return;
    has_account = true;
    account = core::HashCombine(g.account_kind, event::KeyHash(rec, ai));
    nodes.clear();
    nodes.push_back(account);
    const size_t nl = g.links.size();
    for (size_t i = 0; i < nl; ++i) {
      const int li = g.link_index[static_cast<size_t>(type) * nl + i];
      if (event::HasKeyValue(rec, li))
        nodes.push_back(core::HashCombine(g.link_kind[i], event::KeyHash(rec, li)));
    }
    graph->Observe(nodes, t);
    for (size_t c = 0; c < g.counters.size(); ++c) {
      const IdentitySpec::Counter& counter = g.counters[c];
      if (!counter.on_type[type]) continue;
      double v = 1;
      if (!counter.of.empty()) {
        const int oi = counter.of_index[type];
        if (oi < 0 || !rec[oi].present()) continue;
        v = rec[oi].d;
      }
      graph->Add(account, static_cast<int>(c), v);
    }
  }

  EntityState& NewEntity(int s, uint64_t key) {
    auto [e, fresh] = entities[s].try_emplace(key);
    if (fresh) InitEntity(streams[s], *e);
    return *e;
  }

  static double Decayed(const Decay& d, int64_t t, int64_t half_life) {
    if (d.ref == kNone) return 0;
    return d.sum * std::exp2(-static_cast<double>(t - d.ref) / static_cast<double>(half_life));
  }

  void Insert(int s, EntityState& e, int64_t t, double v, uint64_t h, int64_t latest,
              int64_t lateness) {
    const StreamPlan& sp = streams[s];
    Lifetime& l = e.life;
    // The latest time before this event: also that of the buffer's last
    // entry when there is one (every event applied is buffered, and entries
    // leave from the front), which is then not read (a cache miss).
    const int64_t prev_last = l.last_t;
    // Lifetime statistics (order-independent, except gaps and `last`, which
    // follow time order for events that arrive in order).
    ++l.n;
    if (sp.life_moments) {
      AddCompensated(v, l.sum, l.sum_comp);
      const double d = v - l.mean;
      l.mean += d / static_cast<double>(l.n);
      l.m2 += d * (v - l.mean);
      l.min = std::min(l.min, v);
      l.max = std::max(l.max, v);
    }
    if (l.first_t == kNone || t < l.first_t) l.first_t = t;
    if (l.last_t == kNone || t >= l.last_t) {
      if (l.last_t != kNone && sp.life_gaps) {
        const double g = static_cast<double>(t - l.last_t);
        ++l.gaps;
        const double gd = g - l.gap_mean;
        l.gap_mean += gd / static_cast<double>(l.gaps);
        l.gap_m2 += gd * (g - l.gap_mean);
      }
      l.last_t = t;
      l.last_v = v;
    }
    for (size_t i = 0; i < sp.half_lives.size(); ++i) {
      Decay& dc = e.decays[i];
      const double hl = static_cast<double>(sp.half_lives[i]);
      if (dc.ref == kNone) {
        dc.sum = v;
        dc.ref = t;
      } else if (t >= dc.ref) {
        dc.sum = dc.sum * std::exp2(-static_cast<double>(t - dc.ref) / hl) + v;
        dc.ref = t;
      } else {
        dc.sum += v * std::exp2(-static_cast<double>(dc.ref - t) / hl);
      }
    }
    if (sp.life_distinct) {
      if (e.life_hll) {
        e.life_hll->AddHash(h);
      } else {
        if (!e.life_distinct) e.life_distinct = std::make_unique<absl::flat_hash_set<uint64_t>>();
        e.life_distinct->insert(h);
        if (static_cast<int64_t>(e.life_distinct->size()) > spec.distinct_exact_limit) {
          e.life_hll = std::make_unique<core::DistinctCounter>(12);
          for (uint64_t x : *e.life_distinct) e.life_hll->AddHash(x);
          e.life_distinct.reset();
        }
      }
    }
    if (!sp.needs_buffer) return;

    if (static_cast<int64_t>(e.buf.size()) >= spec.max_entries_per_key) {
      SpillToBuckets(e, latest);
    }
    if (e.buf.empty() || t >= prev_last) {
      e.buf.push_back(Entry{t, v});
      if (e.distinct) e.distinct->hashes.push_back(h);
    } else if (e.tier && t < e.tier->buckets.back().t_max) [[unlikely]] {
      // Late, and older than the newest bucket: into the buckets (its value
      // hash is not kept there). The raw entries and cursors are unchanged.
      // Such events never reach the raw entries' next merge: past the
      // bound, the buckets merge again here.
      InsertIntoBuckets(*e.tier, t, v);
      if (e.tier->buckets.size() > sp.max_buckets) MergeIntoBuckets(*e.tier, nullptr, 0, latest);
    } else {
      // Within the lateness bound: in time order, after entries of the same
      // time (they were given first). Cursors start over.
      auto pos = std::upper_bound(e.buf.begin(), e.buf.end(), t,
                                  [](int64_t x, const Entry& en) { return x < en.t; });
      if (e.distinct) e.distinct->hashes.insert(e.distinct->hashes.begin() + (pos - e.buf.begin()), h);
      e.buf.insert(pos, Entry{t, v});
      for (Cursor& c : e.cursors) c.valid = false;
    }
    // Forget entries no future window can read: older than the latest time
    // less the lateness bound and the stream's reach. Checked every 32
    // entries: reading the oldest entry costs a cache miss.
    if ((e.base + static_cast<int64_t>(e.buf.size())) % 32 != 0) return;
    const int64_t cutoff = latest - lateness - spec.streams[s].max_reach_ms;
    size_t k = 0;
    while (k < e.buf.size() && e.buf[k].t <= cutoff) ++k;
    if (k > 0) {
      EraseFront(e, k);
      // A cursor that no event has moved for a while (its scored events are
      // rare) may still count what was dropped: it starts over when read.
      for (Cursor& c : e.cursors) {
        if (c.valid && c.lo < e.base) c.valid = false;
      }
    }
    if (e.tier) DropOldBuckets(e, cutoff);
  }

  // Over the per-key cap (once per cap/4 events of the entity, out of line):
  // the oldest quarter of the entries goes into time buckets at once, so
  // that the cursors start over rarely. `now`: the latest time seen.
  __attribute__((noinline)) void SpillToBuckets(EntityState& e, int64_t now) {
    const size_t k = e.buf.size() / 4;
    if (!e.tier) {
      e.tier = std::make_unique<BucketTier>();
      e.tier->parts.resize(e.cursors.size());
    }
    MergeIntoBuckets(*e.tier, e.buf.data(), k, now);
    EraseFront(e, k);
    stats.bucketed += static_cast<int64_t>(k);
    bucketed_shown.store(stats.bucketed, std::memory_order_relaxed);
    for (Cursor& c : e.cursors) c.valid = false;
  }

  // Forgets the buckets no window can read any more (all their entries at
  // or before cutoff), and the tier with the last of them.
  static void DropOldBuckets(EntityState& e, int64_t cutoff) {
    BucketTier& bt = *e.tier;
    size_t k = 0;
    while (k < bt.buckets.size() && bt.buckets[k].t_max <= cutoff) ++k;
    if (k == 0) return;
    if (k == bt.buckets.size()) {
      e.tier.reset();
      return;
    }
    bt.buckets.erase(bt.buckets.begin(), bt.buckets.begin() + static_cast<ptrdiff_t>(k));
    RebuildPrefix(bt);  // (rebuilt, not shifted: the same buckets, the same sums after a restore)
  }

  // The buckets in each window of the entity for the event at t: a range
  // by binary search, its count and sum from the prefix totals.
  static void ReadBuckets(EntityState& e, const StreamPlan& sp, int64_t t) {
    BucketTier& bt = *e.tier;
    const BucketPrefix* const p = bt.prefix.data();
    const BucketPrefix* const end = p + bt.buckets.size();
    auto after = [p, end](int64_t x) {
      return std::upper_bound(p, end, x,
                              [](int64_t y, const BucketPrefix& b) { return y < b.rep; }) -
             p;
    };
    for (size_t i = 0; i < sp.windows.size(); ++i) {
      const auto [lag, width] = sp.windows[i];
      const int64_t q = t - lag;
      BucketTier::Part& part = bt.parts[i];
      part.lo = after(q - width);
      part.hi = std::max(part.lo, after(q));
      const BucketPrefix& a = p[part.lo];
      const BucketPrefix& b = p[part.hi];
      part.n = b.n - a.n;
      part.sum = (b.sum - a.sum) + (b.comp - a.comp);
      // Running totals that overflowed tell nothing of the buckets after
      // (inf − inf): those in the window, summed again.
      if (static_cast<size_t>(part.hi) >= bt.overflow_at) [[unlikely]] {
        double comp;
        Resum(bt.buckets.data() + part.lo, bt.buckets.data() + part.hi, part.sum, comp);
        part.sum += comp;
      }
    }
  }

  // Forgets the entity's oldest k entries.
  static void EraseFront(EntityState& e, size_t k) {
    e.buf.erase(e.buf.begin(), e.buf.begin() + static_cast<ptrdiff_t>(k));
    if (e.distinct) {
      e.distinct->hashes.erase(e.distinct->hashes.begin(),
                               e.distinct->hashes.begin() + static_cast<ptrdiff_t>(k));
    }
    e.base += static_cast<int64_t>(k);
  }

  // The sum of the entries (or buckets) [lo, hi) again, for a running sum
  // that reached ±inf: values whose sum overflows a double. Finite values
  // never bring it back (and inf − inf left its compensation NaN), so it
  // would otherwise stay there for as long as the entity lives. Compensated
  // when that is finite, else plain: inf while the window's values
  // overflow. (A NaN sum is the sum of a string field's entries, which
  // nothing reads: left be.)
  static double ValueOf(const Entry& x) { return x.v; }
  static double ValueOf(const Bucket& x) { return x.sum; }
  template <typename T>
  __attribute__((noinline, cold)) static void Resum(const T* lo, const T* hi, double& sum,
                                                    double& comp) {
    sum = comp = 0;
    for (const T* p = lo; p < hi; ++p) AddCompensated(ValueOf(*p), sum, comp);
    if (std::isfinite(sum + comp)) return;
    sum = comp = 0;
    for (const T* p = lo; p < hi; ++p) sum += ValueOf(*p);
  }

  // Moves the cursor to the window (q − width, q]. A template over the
  // distinct counts: the loops without them stay small.
  template <bool distinct>
  __attribute__((always_inline)) static void Advance(EntityState& e, size_t ci, int64_t q,
                                                     int64_t width) {
    Cursor& c = e.cursors[ci];
    // (Only read when `distinct`: then the stream keeps them.)
    absl::flat_hash_map<uint64_t, int32_t>* counts = nullptr;
    const uint64_t* hashes = nullptr;
    if constexpr (distinct) {
      counts = &e.distinct->counts[ci];
      hashes = e.distinct->hashes.data();
    }
    if (!c.valid || q < c.q || c.lo < e.base) {
      // Start over: binary search both ends and sum the range.
      auto first = std::upper_bound(e.buf.begin(), e.buf.end(), q - width,
                                    [](int64_t x, const Entry& en) { return x < en.t; });
      auto last = std::upper_bound(first, e.buf.end(), q,
                                   [](int64_t x, const Entry& en) { return x < en.t; });
      c.lo = e.base + (first - e.buf.begin());
      c.hi = e.base + (last - e.buf.begin());
      c.sum = c.comp = 0;
      if constexpr (distinct) ClearCounts(*counts);
      for (int64_t i = c.lo; i < c.hi; ++i) {
        const size_t at = static_cast<size_t>(i - e.base);
        c.Add(e.buf[at].v);
        if constexpr (distinct) ++(*counts)[hashes[at]];
      }
      if (std::isinf(c.sum)) [[unlikely]] {
        Resum(e.buf.data() + (c.lo - e.base), e.buf.data() + (c.hi - e.base), c.sum, c.comp);
      }
      c.valid = true;
      c.q = q;
      return;
    }
    // The usual step, on locals: stores to the cursor's int64 and double
    // fields could alias the buffer's base and the sums, which made the
    // compiler reload them each time round.
    // (Pointers, not indices: no multiplication by sizeof(Entry) per test.)
    const Entry* const buf = e.buf.data();
    const Entry* const end = buf + e.buf.size();
    const int64_t base = e.base;
    const Entry* lo = buf + (c.lo - base);
    const Entry* hi = buf + (c.hi - base);
    double sum = c.sum, comp = c.comp;
    while (hi < end && hi->t <= q) {
      AddCompensated(hi->v, sum, comp);
      if constexpr (distinct) ++(*counts)[hashes[hi - buf]];
      ++hi;
    }
    const int64_t from = q - width;
    while (lo < hi && lo->t <= from) {
      AddCompensated(-lo->v, sum, comp);
      if constexpr (distinct) {
        auto it = counts->find(hashes[lo - buf]);
        if (--it->second == 0) counts->erase(it);
      }
      ++lo;
    }
    if (lo == hi) {
      sum = comp = 0;  // nothing left behind by an empty window
    } else if (std::isinf(sum)) [[unlikely]] {
      Resum(lo, hi, sum, comp);
    }
    c.lo = base + (lo - buf);
    c.hi = base + (hi - buf);
    c.sum = sum;
    c.comp = comp;
    c.q = q;
  }

  // The entity a label event names in a label-fed stream: its
  // target_entity when the key is the stream's, else the entity of the event
  // it labels, if that event is remembered.
  bool LabelKey(const Stream& st, const event::Record& rec, uint64_t* key) {
    const event::Value& tk = rec[label_fields[1]];
    if (tk.present()) {
      if (tk.text != st.key_fields[0] || rec[label_fields[2]].text.empty()) return false;
      *key =
          core::HashCombine(kKeySeed, event::KeyHashOfText(st.key_type, rec[label_fields[2]].text));
      return true;
    }
    const event::Value& te = rec[label_fields[0]];
    if (!te.present()) return false;
    const EventIndex& idx = event_index[st.index];
    const uint64_t* k = idx.keys.find(core::Hash64(te.text));
    if (k == nullptr) return false;
    *key = *k;
    return true;
  }

  // Forgets entities without an event for entity_ttl.
  void Sweep(int64_t latest) {
    const int64_t cutoff = latest - spec.entity_ttl_ms;
    for (auto& m : entities) {
      stats.expired += static_cast<int64_t>(
          m.erase_if([cutoff](uint64_t, const EntityState& e) { return e.life.last_t < cutoff; }));
    }
    last_sweep = latest;
  }

  // The coefficient of variation of the gaps between the cursor's raw
  // entries; `empty` for fewer than three or no spread of time.
  static double GapCv(const EntityState& e, const Cursor& c, double empty) {
    const int64_t n = c.hi - c.lo;
    if (n < 3) return empty;
    auto at = [&](int64_t i) -> const Entry& { return e.buf[static_cast<size_t>(i - e.base)]; };
    const double mean =
        static_cast<double>(at(c.hi - 1).t - at(c.lo).t) / static_cast<double>(n - 1);
    if (mean <= 0) return empty;
    double ss = 0;
    for (int64_t i = c.lo + 1; i < c.hi; ++i) {
      const double g = static_cast<double>(at(i).t - at(i - 1).t) - mean;
      ss += g * g;
    }
    return std::sqrt(ss / static_cast<double>(n - 1)) / mean;
  }

  // Feature `f` over a window that holds buckets (`part`, not empty) and
  // the raw entries of its cursor (perhaps none): docs/features.md
  // ("Over the per-key cap") says what each aggregate reads of the buckets.
  // Out of line: only entities over the per-key cap come here.
  __attribute__((noinline)) double ComputeWithBuckets(const FeatureDef& f, const FeaturePlan& p,
                                                      int64_t t, const EntityState& e,
                                                      const BucketTier::Part& part) const {
    const Cursor& c = e.cursors[p.cursor];
    const int64_t lag = streams[p.stream].windows[p.cursor].first;
    const int64_t n_raw = c.hi - c.lo;
    const int64_t n = n_raw + part.n;
    const Bucket* const b = e.tier->buckets.data();
    auto at = [&](int64_t i) -> const Entry& { return e.buf[static_cast<size_t>(i - e.base)]; };
    switch (f.agg) {
      case Agg::kMin: {
        double m = b[part.lo].min;
        for (int64_t i = part.lo + 1; i < part.hi; ++i) m = std::min(m, b[i].min);
        for (int64_t i = c.lo; i < c.hi; ++i) m = std::min(m, at(i).v);
        return m;
      }
      case Agg::kMax: {
        double m = b[part.lo].max;
        for (int64_t i = part.lo + 1; i < part.hi; ++i) m = std::max(m, b[i].max);
        for (int64_t i = c.lo; i < c.hi; ++i) m = std::max(m, at(i).v);
        return m;
      }
      case Agg::kStddev: {
        if (n < 2) return f.empty_value;
        const double mean = (c.Sum() + part.sum) / static_cast<double>(n);
        double ss = 0;
        for (int64_t i = part.lo; i < part.hi; ++i) {
          const double d = b[i].sum / static_cast<double>(b[i].n) - mean;
          ss += b[i].m2 + static_cast<double>(b[i].n) * d * d;
        }
        for (int64_t i = c.lo; i < c.hi; ++i) ss += (at(i).v - mean) * (at(i).v - mean);
        return std::sqrt(ss / static_cast<double>(n - 1));
      }
      case Agg::kLast:
        return n_raw > 0 ? at(c.hi - 1).v : b[part.hi - 1].last_v;
      // The raw entries' distinct values only: the buckets keep none.
      case Agg::kDistinctCount:
        return static_cast<double>(e.distinct->counts[p.cursor].size());
      case Agg::kDecayedSum: {
        // A bucket's sum decays from its Rep() time.
        double s = 0;
        const double hl = static_cast<double>(f.half_life_ms);
        for (int64_t i = part.lo; i < part.hi; ++i) {
          s += b[i].sum * std::exp2(-static_cast<double>(t - lag - b[i].Rep()) / hl);
        }
        for (int64_t i = c.lo; i < c.hi; ++i) {
          s += at(i).v * std::exp2(-static_cast<double>(t - lag - at(i).t) / hl);
        }
        return s;
      }
      case Agg::kGapMean: {
        if (n < 2) return f.empty_value;
        const int64_t last_t = n_raw > 0 ? at(c.hi - 1).t : b[part.hi - 1].t_max;
        return static_cast<double>(last_t - b[part.lo].t_min) / static_cast<double>(n - 1);
      }
      case Agg::kGapCv:
        // The gaps between the raw entries only: the buckets keep no gaps.
        return GapCv(e, c, f.empty_value);
      default:
        return kNaN;
    }
  }

  // Feature `f` for the event at `t`. REQUIRES: Process moved the entity's
  // windows to this event.
  double Compute(const FeatureDef& f, const FeaturePlan& p, int64_t t) const {
    switch (f.agg) {
      case Agg::kClusterSize:
        return has_account ? static_cast<double>(graph->ClusterSize(account)) : f.empty_value;
      case Agg::kClusterAccounts:
        return has_account ? static_cast<double>(graph->ClusterAccounts(account)) : f.empty_value;
      case Agg::kClusterCounter:
        return has_account ? graph->ClusterCounter(account, f.counter) : f.empty_value;
      default:
        break;
    }
    const Scratch& sc = scratch[p.stream];
    if (!sc.has_key) return kNaN;
    EntityState* e = sc.entity;
    if (f.agg == Agg::kTimeSinceLast) {
      return sc.pre_last == kNone || sc.pre_last > t ? kNaN : static_cast<double>(t - sc.pre_last);
    }
    if (f.agg == Agg::kFirstSeen) {
      // Not seen before t (a late event older than every event of the
      // entity given before it): missing, as for time_since_last.
      return sc.pre_first == kNone || sc.pre_first > t ? kNaN
                                                       : static_cast<double>(t - sc.pre_first);
    }
    if (!e) return f.empty_value;
    if (p.cursor < 0) {
      const Lifetime& l = e->life;
      if (l.n == 0) return f.empty_value;
      switch (f.agg) {
        case Agg::kCount: return static_cast<double>(l.n);
        case Agg::kSum:
          return l.Sum();
        case Agg::kMean:
          return l.Sum() / static_cast<double>(l.n);
        case Agg::kMin: return l.min;
        case Agg::kMax: return l.max;
        case Agg::kStddev: return l.n > 1 ? std::sqrt(l.m2 / static_cast<double>(l.n - 1)) : f.empty_value;
        case Agg::kLast: return l.last_v;
        case Agg::kDecayedSum: return Decayed(e->decays[p.decay], t, f.half_life_ms);
        case Agg::kGapMean:
          return l.n > 1 ? static_cast<double>(l.last_t - l.first_t) / static_cast<double>(l.n - 1)
                         : f.empty_value;
        case Agg::kGapCv:
          return l.gaps > 1 && l.gap_mean > 0
                     ? std::sqrt(l.gap_m2 / static_cast<double>(l.gaps)) / l.gap_mean
                     : f.empty_value;
        case Agg::kDistinctCount:
          if (e->life_hll) return std::round(e->life_hll->Estimate());
          return e->life_distinct ? static_cast<double>(e->life_distinct->size()) : 0.0;
        default: return kNaN;
      }
    }
    // The window is where Process moved it for this event. (Its count, sum
    // and mean are read off the cursor in Process: WindowRead.)
    const Cursor& c = e->cursors[p.cursor];
    const int64_t lag = streams[p.stream].windows[p.cursor].first;
    const int64_t n = c.hi - c.lo;
    if (e->tier && e->tier->parts[p.cursor].n > 0) [[unlikely]] {
      return ComputeWithBuckets(f, p, t, *e, e->tier->parts[p.cursor]);
    }
    if (n == 0) return f.empty_value;
    auto at = [&](int64_t i) -> const Entry& { return e->buf[static_cast<size_t>(i - e->base)]; };
    switch (f.agg) {
      case Agg::kMin: {
        double m = at(c.lo).v;
        for (int64_t i = c.lo + 1; i < c.hi; ++i) m = std::min(m, at(i).v);
        return m;
      }
      case Agg::kMax: {
        double m = at(c.lo).v;
        for (int64_t i = c.lo + 1; i < c.hi; ++i) m = std::max(m, at(i).v);
        return m;
      }
      case Agg::kStddev: {
        if (n < 2) return f.empty_value;
        // The sample stddev of the values times `scale`, around `mean`.
        const auto stddev = [&](double mean, double scale) {
          double ss = 0;
          for (int64_t i = c.lo; i < c.hi; ++i) {
            const double d = at(i).v * scale - mean;
            ss += d * d;
          }
          return std::sqrt(ss / static_cast<double>(n - 1));
        };
        const double sd = stddev(c.Sum() / static_cast<double>(n), 1);
        if (std::isfinite(sd)) [[likely]]
          return sd;
        // Values past about 1e154 apart: their squares overflow (or the
        // sum did), though the deviation is a double. Again, scaled by
        // 2^-600 (exact, but for values below about 1e-128, which are
        // nothing beside such a spread).
        constexpr double kDown = 0x1p-600, kUp = 0x1p600;
        double scaled_sum = 0;
        for (int64_t i = c.lo; i < c.hi; ++i) scaled_sum += at(i).v * kDown;
        return stddev(scaled_sum / static_cast<double>(n), kDown) * kUp;
      }
      case Agg::kLast: return at(c.hi - 1).v;
      case Agg::kDistinctCount: return static_cast<double>(e->distinct->counts[p.cursor].size());
      case Agg::kDecayedSum: {
        double s = 0;
        const double hl = static_cast<double>(f.half_life_ms);
        for (int64_t i = c.lo; i < c.hi; ++i) {
          s += at(i).v * std::exp2(-static_cast<double>(t - lag - at(i).t) / hl);
        }
        return s;
      }
      case Agg::kGapMean:
        return n > 1 ? static_cast<double>(at(c.hi - 1).t - at(c.lo).t) / static_cast<double>(n - 1)
                     : f.empty_value;
      case Agg::kGapCv:
        return GapCv(*e, c, f.empty_value);
      default: return kNaN;
    }
  }
};

FeatureEngine::FeatureEngine(std::shared_ptr<const FeatureSpec> spec)
    : spec_(std::move(spec)), impl_(std::make_unique<Impl>(*spec_)) {}

FeatureEngine::~FeatureEngine() = default;

uint64_t FeatureEngine::StreamKey(std::span<const uint64_t> field_hashes) {
  uint64_t key = kKeySeed;
  for (uint64_t h : field_hashes) key = core::HashCombine(key, h);
  return key;
}

std::vector<std::vector<int>> FeatureEngine::ReadAheadFields(int type) const {
  std::vector<std::vector<int>> fields(spec_->streams.size());
  for (const Stream& st : spec_->streams) {
    if (st.label_fed) continue;
    const size_t keys = st.key_fields.size();
    std::vector<int> f;
    for (size_t k = 0; k < keys; ++k) {
      const int fi = st.key_field_index[static_cast<size_t>(type) * keys + k];
      if (st.key_exprs[k] || fi < 0) break;
      f.push_back(fi);
    }
    if (f.size() == keys) fields[st.index] = std::move(f);
  }
  return fields;
}

void FeatureEngine::ReadAhead(std::span<const uint64_t> keys) {
  static_assert(kReadAhead == 4, "one stage per event ahead");
  Impl& im = *impl_;
  // One step nearer for each stage: the event that was d + 1 ahead is d ahead.
  std::rotate(im.ahead_keys.begin(), im.ahead_keys.begin() + 1, im.ahead_keys.end());
  std::rotate(im.ahead_states.begin(), im.ahead_states.begin() + 1, im.ahead_states.end());
  const size_t streams = im.entities.size();
  // Four ahead: its index slots.
  std::vector<uint64_t>& far = im.ahead_keys[3];
  for (size_t s = 0; s < streams; ++s) {
    far[s] = s < keys.size() ? keys[s] : 0;
    if (far[s] != 0) im.entities[s].prefetch(far[s]);
  }
  // Three ahead: the slot came; find the state and fetch its lines.
  for (size_t s = 0; s < streams; ++s) {
    const uint64_t key = im.ahead_keys[2][s];
    const EntityState* e = key != 0 ? im.entities[s].find(key) : nullptr;
    im.ahead_states[2][s] = e;
    if (e == nullptr) continue;
    const char* p = reinterpret_cast<const char*>(e);
    for (size_t b = 0; b < sizeof(EntityState); b += 64) __builtin_prefetch(p + b);
  }
  // Two ahead: the state came; its newest entry and its cursors. (A state
  // found a step ago may have been swept since: its storage stays, reset,
  // so reading it is safe, and at worst fetches nothing useful.)
  for (size_t s = 0; s < streams; ++s) {
    const EntityState* e = im.ahead_states[1][s];
    if (e == nullptr) continue;
    if (!e->buf.empty()) __builtin_prefetch(&e->buf.back());
    const char* cur = reinterpret_cast<const char*>(e->cursors.data());
    const char* const cur_end =
        reinterpret_cast<const char*>(e->cursors.data() + e->cursors.size());
    for (; cur < cur_end; cur += 64) __builtin_prefetch(cur);
  }
  // One ahead: the cursors came; the entries they stand at (where the
  // windows' oldest entries leave).
  for (size_t s = 0; s < streams; ++s) {
    const EntityState* e = im.ahead_states[0][s];
    if (e == nullptr) continue;
    const Entry* const buf = e->buf.data();
    const uint64_t n = e->buf.size();
    for (const Cursor& c : e->cursors) {
      const uint64_t i = static_cast<uint64_t>(c.lo - e->base);  // (below base wraps past n)
      if (c.valid && i < n) __builtin_prefetch(buf + i);
    }
  }
}

FeatureEngine::Result FeatureEngine::Process(const event::Record& rec, std::span<double> out) {
  Impl& im = *impl_;
  const int64_t t = rec.time_ms;
  const int type = rec.type->index;
  const bool scored = spec_->score_on[type];
  ++im.stats.events;
  if (latest_ms_ != INT64_MIN && t < latest_ms_ - spec_->lateness_ms) {
    ++im.stats.too_late;
    if (scored) std::fill(out.begin(), out.begin() + num_features(), kNaN);
    return Result::kTooLate;
  }
  if (latest_ms_ != INT64_MIN && t < latest_ms_) ++im.stats.late_applied;
  latest_ms_ = std::max(latest_ms_, t);
  ++im.stats.applied;
  // Idle entities go in a sweep every sixteenth of the TTL (at least an
  // hour) of event time: the same in backfill and serving, since the clock
  // is the events'. An entity lives between ttl and ttl * 17/16 idle.
  if (im.last_sweep == kNone) im.last_sweep = latest_ms_;
  if (latest_ms_ - im.last_sweep >= std::max(core::kMsPerHour, spec_->entity_ttl_ms / 16)) {
    im.Sweep(latest_ms_);
  }

  // Passes over the streams, each asking for what the next one reads, so
  // that the cache misses of several streams overlap: the keys (prefetching
  // each one's index slot); the lookups (each state's lines); each state's
  // newest entry and cursors; the entries the cursors stand at; then the
  // updates.
  for (const Stream& st : spec_->streams) {
    Scratch& sc = im.scratch[st.index];
    sc = Scratch{};
    if (st.label_fed && type == spec_->schema->label_type) {
      sc.has_key = im.LabelKey(st, rec, &sc.key);
      if (sc.has_key) im.entities[st.index].prefetch(sc.key);
      continue;
    }
    const size_t keys = st.key_fields.size();
    uint64_t key = kKeySeed;
    // An empty string is no key, as null is (event::HasKeyValue).
    for (size_t k = 0; k < keys; ++k) {
      if (st.key_exprs[k]) {
        const expr::Value kv = st.key_exprs[k]->Eval(rec, nullptr);
        if (kv.kind == expr::Kind::kString && !kv.str.empty()) {
          key = core::HashCombine(key, core::Hash64(kv.str));
        } else if (kv.kind == expr::Kind::kNumber) {
          key = core::HashCombine(key, core::HashDouble(kv.num));
        } else {
          break;  // null or "": no key
        }
      } else {
        const int fi = st.key_field_index[static_cast<size_t>(type) * keys + k];
        if (!event::HasKeyValue(rec, fi)) break;
        key = core::HashCombine(key, event::KeyHash(rec, fi));
      }
      if (k + 1 == keys) sc.has_key = true;
    }
    if (!sc.has_key) continue;
    sc.key = key;
    im.entities[st.index].prefetch(key);
  }
  for (const Stream& st : spec_->streams) {
    Scratch& sc = im.scratch[st.index];
    if (!sc.has_key) continue;
    EntityState* found = im.entities[st.index].find(sc.key);
    if (found == nullptr) continue;
    sc.entity = found;
    const char* p = reinterpret_cast<const char*>(found);
    for (size_t b = 0; b < sizeof(EntityState); b += 64) __builtin_prefetch(p + b);
  }
  for (const Stream& st : spec_->streams) {
    Scratch& sc = im.scratch[st.index];
    if (!sc.entity) continue;
    EntityState& e = *sc.entity;
    if (!e.buf.empty()) __builtin_prefetch(&e.buf.back());
    // The cursors live in their own block: fetch it before reading it below.
    const char* cur = reinterpret_cast<const char*>(e.cursors.data());
    const char* const cur_end = reinterpret_cast<const char*>(e.cursors.data() + e.cursors.size());
    for (; cur < cur_end; cur += 64) __builtin_prefetch(cur);
  }
  for (const Stream& st : spec_->streams) {
    const Scratch& sc = im.scratch[st.index];
    if (!sc.entity) continue;
    const EntityState& e = *sc.entity;
    const Entry* const buf = e.buf.data();
    const uint64_t n = e.buf.size();
    const int64_t base = e.base;
    for (const Cursor& c : e.cursors) {
      // (Unsigned: below base wraps to beyond n.)
      const uint64_t i = static_cast<uint64_t>(c.lo - base);
      if (c.valid && i < n) __builtin_prefetch(buf + i);
    }
  }
  for (const Stream& st : spec_->streams) {
    Scratch& sc = im.scratch[st.index];
    if (!sc.has_key) continue;
    bool applies = st.on_type[type];
    double v = 1;
    uint64_t vh = 0;
    if (applies && !st.of.empty()) {
      const int of = st.of_field_index[type];
      if (!event::HasKeyValue(rec, of)) {  // absent, null or ""
        applies = false;
      } else {
        const event::Value& val = rec[of];
        const event::FieldType ft = rec.type->fields[of].type;
        const bool stringy = ft == event::FieldType::kString || ft == event::FieldType::kEnum;
        v = stringy ? kNaN : val.d;
        vh = event::KeyHash(rec, of);
      }
    }
    if (applies && st.where && !st.where->EvalBool(rec, out.data())) applies = false;
    if (st.label_fed && type != spec_->schema->label_type) im.event_index[st.index].Put(rec.id_hash, sc.key);
    EntityState* e = sc.entity;
    if (applies && !e) e = &im.NewEntity(st.index, sc.key);
    if (e) {
      sc.pre_last = e->life.last_t;
      sc.pre_first = e->life.first_t;
      sc.pre_n = e->life.n;
      if (applies) im.Insert(st.index, *e, t, v, vh, latest_ms_, spec_->lateness_ms);
    }
    sc.entity = e;
  }
  if (im.graph) im.Observe(rec, type, t);
  if (!scored) return Result::kNotScored;
  // Each window once (features sharing it read it as it is), then the
  // features: counts, sums and means off their cursor, the rest in Compute.
  for (const Stream& st : spec_->streams) {
    const Scratch& sc = im.scratch[st.index];
    if (!sc.entity) continue;
    const StreamPlan& sp = im.streams[st.index];
    for (size_t i = 0; i < sp.windows.size(); ++i) {
      const auto [lag, width] = sp.windows[i];
      if (sp.cursor_distinct[i]) {
        Impl::Advance<true>(*sc.entity, i, t - lag, width);
      } else {
        Impl::Advance<false>(*sc.entity, i, t - lag, width);
      }
    }
    if (sc.entity->tier) [[unlikely]]
      Impl::ReadBuckets(*sc.entity, sp, t);
  }
  // (Compute reads no feature: the two loops may run in either order.)
  for (const WindowRead& r : im.window_reads) {
    const Scratch& sc = im.scratch[static_cast<size_t>(r.stream)];
    double v = kNaN;
    if (sc.entity) {
      const Cursor& c = sc.entity->cursors[static_cast<size_t>(r.cursor)];
      int64_t n = c.hi - c.lo;
      double sum = c.Sum();
      if (sc.entity->tier) [[unlikely]] {
        // The window's buckets, for an entity over the per-key cap.
        const BucketTier::Part& part = sc.entity->tier->parts[static_cast<size_t>(r.cursor)];
        if (part.n > 0) {
          n += part.n;
          sum += part.sum;
        }
      }
      v = n == 0                 ? r.empty_value
          : r.agg == Agg::kCount ? static_cast<double>(n)
          : r.agg == Agg::kSum   ? sum
                                 : sum / static_cast<double>(n);
    } else if (sc.has_key) {
      v = r.empty_value;
    }
    out[static_cast<size_t>(r.feature)] = v;
  }
  for (int i : im.computed) {
    out[static_cast<size_t>(i)] = im.Compute(spec_->features[static_cast<size_t>(i)],
                                             im.features[static_cast<size_t>(i)], t);
  }
  for (int i : spec_->eval_order) out[i] = spec_->features[i].expr->EvalNumber(rec, out.data());
  return Result::kScored;
}

int64_t FeatureEngine::events() const { return impl_->stats.events; }
int64_t FeatureEngine::bucketed() const {
  return impl_->bucketed_shown.load(std::memory_order_relaxed);
}

EngineStats FeatureEngine::Stats() const {
  // An estimate: table slots, buffers, cursors with their distinct-count
  // tables, lifetime distinct sets and HyperLogLogs, the label join index,
  // the identity graph. Allocator overhead (about 10 %) is not counted.
  EngineStats s = impl_->stats;
  if (impl_->graph) s.memory_bytes += impl_->graph->stats().memory_bytes;
  for (const auto& m : impl_->entities) {
    s.entities += static_cast<int64_t>(m.size());
    s.memory_bytes += static_cast<int64_t>(m.memory_bytes());
    m.for_each([&s](uint64_t, const EntityState& e) {
      s.entries += static_cast<int64_t>(e.buf.size());
      s.memory_bytes += static_cast<int64_t>(e.buf.capacity() * sizeof(Entry) +
                                             e.cursors.capacity() * sizeof(Cursor) +
                                             e.decays.capacity() * sizeof(Decay));
      if (e.distinct) {
        s.memory_bytes += static_cast<int64_t>(sizeof(WindowDistinct) +
                                               e.distinct->hashes.capacity() * sizeof(uint64_t) +
                                               e.distinct->counts.capacity() * sizeof(e.distinct->counts[0]));
        for (const auto& m : e.distinct->counts) {
          s.memory_bytes += static_cast<int64_t>(m.capacity() * (sizeof(uint64_t) + sizeof(int32_t) + 1));
        }
      }
      if (e.life_distinct) {
        s.memory_bytes += static_cast<int64_t>(e.life_distinct->capacity() * (sizeof(uint64_t) + 1));
      }
      if (e.life_hll) s.memory_bytes += static_cast<int64_t>(e.life_hll->registers().size());
      if (e.tier) {
        s.buckets += static_cast<int64_t>(e.tier->buckets.size());
        s.memory_bytes +=
            static_cast<int64_t>(sizeof(BucketTier) + e.tier->buckets.capacity() * sizeof(Bucket) +
                                 e.tier->prefix.capacity() * sizeof(BucketPrefix) +
                                 e.tier->parts.capacity() * sizeof(BucketTier::Part));
      }
    });
  }
  for (const EventIndex& idx : impl_->event_index) {
    s.memory_bytes += static_cast<int64_t>(idx.ring.capacity() * sizeof(uint64_t) +
                                           idx.keys.capacity() * (2 * sizeof(uint64_t) + 1));
  }
  return s;
}

namespace {

constexpr char kMagic[8] = {'V', 'I', 'G', 'I', 'L', 'F', 'E', 'S'};
// Version 2 added the bucket tier of entities past the per-key cap (and
// counts entries bucketed where version 1 counted entries dropped), version
// 3 the lifetime sum's compensation. Versions 1 and 2 are still read, unless
// the spec reads a lifetime sum or mean (Restore).
constexpr uint32_t kSnapshotVersion = 3;
constexpr uint32_t kSnapshotVersion1 = 1;
constexpr uint32_t kSnapshotVersion2 = 2;

template <typename Map>
std::vector<uint64_t> SortedKeys(const Map& m) {
  std::vector<uint64_t> keys;
  keys.reserve(m.size());
  for (const auto& kv : m) {
    if constexpr (std::is_same_v<std::decay_t<decltype(kv)>, uint64_t>) {
      keys.push_back(kv);
    } else {
      keys.push_back(kv.first);
    }
  }
  std::sort(keys.begin(), keys.end());
  return keys;
}

void WriteEntity(const EntityState& e, core::ByteWriter& w) {
  w.I64(e.base);
  w.U64(e.buf.size());
  // (The value hashes are only kept where a window counts distinct values;
  // elsewhere they are written as 0 and not read back.)
  for (size_t i = 0; i < e.buf.size(); ++i) {
    w.I64(e.buf[i].t);
    w.F64(e.buf[i].v);
    w.U64(e.distinct ? e.distinct->hashes[i] : 0);
  }
  const Lifetime& l = e.life;
  w.I64(l.n);
  for (double d : {l.sum, l.mean, l.m2, l.min, l.max}) w.F64(d);
  w.I64(l.first_t);
  w.I64(l.last_t);
  w.F64(l.last_v);
  w.I64(l.gaps);
  w.F64(l.gap_mean);
  w.F64(l.gap_m2);
  w.U64(e.cursors.size());
  for (const Cursor& c : e.cursors) {
    w.I64(c.lo);
    w.I64(c.hi);
    w.I64(c.q);
    w.F64(c.sum);
    w.F64(c.comp);
    w.U8(c.valid);
  }
  w.U64(e.decays.size());
  for (const Decay& d : e.decays) {
    w.F64(d.sum);
    w.I64(d.ref);
  }
  w.U8(e.life_hll ? 2 : e.life_distinct != nullptr);
  if (e.life_hll) {
    w.Str(std::string_view(reinterpret_cast<const char*>(e.life_hll->registers().data()),
                           e.life_hll->registers().size()));
  } else if (e.life_distinct) {
    w.U64(e.life_distinct->size());
    for (uint64_t k : SortedKeys(*e.life_distinct)) w.U64(k);
  }
  // Version 2: the buckets (their prefix totals follow from them).
  w.U8(e.tier != nullptr);
  if (e.tier) {
    w.U64(e.tier->buckets.size());
    for (const Bucket& b : e.tier->buckets) {
      w.I64(b.t_min);
      w.I64(b.t_max);
      w.I64(b.n);
      for (double d : {b.sum, b.m2, b.min, b.max, b.last_v}) w.F64(d);
      w.U8(static_cast<uint8_t>(b.level));
    }
  }
  // Version 3.
  w.F64(l.sum_comp);
}

bool ReadBucketTier(core::ByteReader& r, EntityState* e);

bool ReadEntity(core::ByteReader& r, const StreamPlan& sp, uint32_t version, EntityState* e) {
  InitEntity(sp, *e);
  uint64_t n;
  if (!r.I64(&e->base) || !r.Count(&n, 24)) return false;
  if (e->base < 0 || e->base > (int64_t{1} << 60)) return r.Fail("entry index out of range");
  e->buf.resize(n);
  if (e->distinct) e->distinct->hashes.resize(n);
  for (size_t i = 0; i < n; ++i) {
    uint64_t h;
    if (!r.I64(&e->buf[i].t) || !r.F64(&e->buf[i].v) || !r.U64(&h)) return false;
    if (e->distinct) e->distinct->hashes[i] = h;
  }
  for (size_t i = 1; i < e->buf.size(); ++i) {
    if (e->buf[i].t < e->buf[i - 1].t) return r.Fail("entries out of time order");
  }
  Lifetime& l = e->life;
  if (!r.I64(&l.n) || !r.F64(&l.sum) || !r.F64(&l.mean) || !r.F64(&l.m2) || !r.F64(&l.min) ||
      !r.F64(&l.max) || !r.I64(&l.first_t) || !r.I64(&l.last_t) || !r.F64(&l.last_v) ||
      !r.I64(&l.gaps) || !r.F64(&l.gap_mean) || !r.F64(&l.gap_m2)) {
    return false;
  }
  if (!r.Count(&n, 41)) return false;
  if (n != e->cursors.size()) return r.Fail("cursor count does not match the spec");
  const int64_t end = e->base + static_cast<int64_t>(e->buf.size());
  for (size_t ci = 0; ci < e->cursors.size(); ++ci) {
    Cursor& c = e->cursors[ci];
    uint8_t valid;
    if (!r.I64(&c.lo) || !r.I64(&c.hi) || !r.I64(&c.q) || !r.F64(&c.sum) || !r.F64(&c.comp) ||
        !r.U8(&valid)) {
      return false;
    }
    c.valid = valid != 0;
    if (c.valid && !(e->base <= c.lo && c.lo <= c.hi && c.hi <= end)) {
      return r.Fail("a window cursor points outside its entries");
    }
    // Distinct counts are not stored: they follow from the entries.
    if (c.valid && sp.cursor_distinct[ci]) {
      for (int64_t i = c.lo; i < c.hi; ++i) {
        ++e->distinct->counts[ci][e->distinct->hashes[static_cast<size_t>(i - e->base)]];
      }
    }
  }
  if (!r.Count(&n, 16)) return false;
  if (n != e->decays.size()) return r.Fail("decay count does not match the spec");
  for (Decay& d : e->decays) {
    if (!r.F64(&d.sum) || !r.I64(&d.ref)) return false;
  }
  uint8_t has;
  if (!r.U8(&has)) return false;
  if (has == 2) {
    std::string regs;
    if (!r.Str(&regs)) return false;
    auto hll = core::DistinctCounter::FromRegisters(12, std::vector<uint8_t>(regs.begin(), regs.end()));
    if (!hll.ok()) return r.Fail(std::string(hll.status().message()));
    e->life_hll = std::make_unique<core::DistinctCounter>(std::move(*hll));
  } else if (has == 1) {
    if (!r.Count(&n, 8)) return false;
    e->life_distinct = std::make_unique<absl::flat_hash_set<uint64_t>>();
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t k;
      if (!r.U64(&k)) return false;
      e->life_distinct->insert(k);
    }
  } else if (has != 0) {
    return r.Fail("bad distinct-count state");
  }
  if (version >= 2 && !ReadBucketTier(r, e)) return false;
  // (Before version 3 the lifetime sum had no compensation: 0.)
  return version < 3 || r.F64(&l.sum_comp);
}

// An entity's bucket tier (snapshot version 2 on).
bool ReadBucketTier(core::ByteReader& r, EntityState* e) {
  uint8_t has;
  uint64_t n;
  if (!r.U8(&has)) return false;
  if (has > 1) return r.Fail("bad bucket state");
  if (has == 0) return true;
  if (!r.Count(&n, 65)) return false;
  if (n == 0) return r.Fail("an empty bucket tier");
  e->tier = std::make_unique<BucketTier>();
  BucketTier& bt = *e->tier;
  bt.buckets.resize(n);
  bt.parts.resize(e->cursors.size());
  for (size_t i = 0; i < n; ++i) {
    Bucket& b = bt.buckets[i];
    uint8_t level;
    if (!r.I64(&b.t_min) || !r.I64(&b.t_max) || !r.I64(&b.n) || !r.F64(&b.sum) || !r.F64(&b.m2) ||
        !r.F64(&b.min) || !r.F64(&b.max) || !r.F64(&b.last_v) || !r.U8(&level)) {
      return false;
    }
    b.level = level;
    if (b.n < 1 || level > kMaxBucketLevel || b.t_min > b.t_max ||
        (b.t_max >> level) != (b.t_min >> level) || (i > 0 && bt.buckets[i - 1].t_max > b.t_min)) {
      return r.Fail("a time bucket out of order or out of its cell");
    }
  }
  if (!e->buf.empty() && bt.buckets.back().t_max > e->buf.front().t) {
    return r.Fail("time buckets newer than the entries");
  }
  RebuildPrefix(bt);
  return true;
}

}  // namespace

void FeatureEngine::SerializeTo(std::string* out) const {
  out->clear();
  AppendTo(out);
}

void FeatureEngine::AppendTo(std::string* out) const {
  // Sealed in place: the state is written once, not once more for each
  // envelope around it.
  const size_t start = core::BeginSeal(std::string_view(kMagic, sizeof kMagic), kSnapshotVersion,
                                       spec_->content_hash, out);
  core::ByteWriter w(out);
  w.I64(latest_ms_);
  const EngineStats& st = impl_->stats;
  for (int64_t v : {st.events, st.applied, st.too_late, st.late_applied, st.expired, st.bucketed,
                    impl_->last_sweep}) {
    w.I64(v);
  }
  w.U64(impl_->entities.size());
  for (const auto& m : impl_->entities) {
    w.U64(m.size());
    std::vector<uint64_t> keys;
    keys.reserve(m.size());
    m.for_each([&keys](uint64_t k, const EntityState&) { keys.push_back(k); });
    std::sort(keys.begin(), keys.end());
    for (uint64_t k : keys) {
      w.U64(k);
      WriteEntity(*m.find(k), w);
    }
  }
  for (const EventIndex& idx : impl_->event_index) {
    // Arrival order matters (the oldest is forgotten first): the ring as is.
    w.U64(idx.next);
    w.U64(idx.ring.size());
    for (uint64_t id : idx.ring) {
      w.U64(id);
      w.U64(*idx.keys.find(id));
    }
  }
  const size_t graph = w.BeginStr();
  if (impl_->graph) impl_->graph->AppendTo(out);
  w.EndStr(graph);
  core::EndSeal(start, out);
}

absl::Status FeatureEngine::Restore(std::string_view snapshot) {
  impl_ = std::make_unique<Impl>(*spec_);
  latest_ms_ = INT64_MIN;
  // The version follows the magic: read versions 1 and 2 as such.
  uint32_t version = kSnapshotVersion;
  if (snapshot.size() >= sizeof kMagic + 4) {
    uint32_t v;
    std::memcpy(&v, snapshot.data() + sizeof kMagic, 4);
    if (v == kSnapshotVersion1 || v == kSnapshotVersion2) version = v;
  }
  VIGIL_ASSIGN_OR_RETURN(
      const core::Unsealed sealed,
      core::Unseal(snapshot, std::string_view(kMagic, sizeof kMagic), version, "feature snapshot"));
  if (sealed.key != spec_->content_hash) {
    return absl::FailedPreconditionError(StrCat("feature snapshot: taken with feature spec ",
                                                sealed.key.substr(0, 12), "…, not this one (",
                                                spec_->content_hash.substr(0, 12), "…)"));
  }
  if (version < 3) {
    // (After the checksum: a damaged version is a corrupt snapshot.) Their
    // lifetime sums carry no compensation: continued from one, a
    // lifetime sum or mean would differ from an uninterrupted run's (and
    // backfill's) for as long as the entity lives.
    for (const FeatureDef& f : spec_->features) {
      if (f.is_aggregate && f.stream >= 0 && f.window_ms <= 0 &&
          (f.agg == Agg::kSum || f.agg == Agg::kMean)) {
        return absl::FailedPreconditionError(
            StrCat("feature snapshot: version ", version,
                   ", from before lifetime sums were compensated, and the "
                   "spec reads one (feature '",
                   f.name, "'): not restored"));
      }
    }
  }
  core::ByteReader pr(sealed.payload, "feature snapshot");
  Impl& im = *impl_;
  int64_t latest;
  EngineStats& st = im.stats;
  uint64_t streams;
  // (Version 1 counted entries dropped by the per-key cap here: not entries
  // bucketed, so not kept.)
  int64_t v1_truncated = 0;
  bool ok = pr.I64(&latest) && pr.I64(&st.events) && pr.I64(&st.applied) && pr.I64(&st.too_late) &&
            pr.I64(&st.late_applied) && pr.I64(&st.expired) &&
            pr.I64(version == kSnapshotVersion1 ? &v1_truncated : &st.bucketed) &&
            pr.I64(&im.last_sweep) && pr.U64(&streams);
  if (ok && streams != im.entities.size()) ok = pr.Fail("stream count does not match the spec");
  for (size_t s = 0; ok && s < im.entities.size(); ++s) {
    uint64_t n;
    ok = pr.Count(&n, 8);
    if (ok) im.entities[s].reserve(n);  // one table, not a growth started halfway
    for (uint64_t i = 0; ok && i < n; ++i) {
      uint64_t key;
      ok = pr.U64(&key);
      if (!ok) break;
      EntityState& e = *im.entities[s].try_emplace(key).first;
      ok = ReadEntity(pr, im.streams[s], version, &e);
    }
  }
  for (size_t s = 0; ok && s < im.event_index.size(); ++s) {
    EventIndex& idx = im.event_index[s];
    uint64_t next, n;
    ok = pr.U64(&next) && pr.Count(&n, 16);
    if (ok && (n > idx.capacity || (n > 0 && next >= std::max<uint64_t>(n, 1)) || (n == 0 && next != 0))) {
      ok = pr.Fail("label index does not fit label_join_memory");
    }
    for (uint64_t i = 0; ok && i < n; ++i) {
      uint64_t id, key;
      ok = pr.U64(&id) && pr.U64(&key);
      if (ok && !idx.keys.try_emplace(id, key).second) ok = pr.Fail("an event id twice in the label index");
      idx.ring.push_back(id);
    }
    idx.next = next;
  }
  std::string graph;
  if (ok) ok = pr.Str(&graph);
  if (ok && !pr.at_end()) ok = pr.Fail("bytes after the end of the state");
  if (ok && im.graph) {
    absl::Status gs = im.graph->ParseFrom(graph);
    if (!gs.ok()) {
      impl_ = std::make_unique<Impl>(*spec_);
      return gs;
    }
    // The spec's stop list wins over the snapshot's: it may have changed.
    for (uint64_t node : spec_->identity.stop_nodes) im.graph->AddStopNode(node);
  } else if (ok && !graph.empty()) {
    ok = pr.Fail("an identity graph the spec does not have");
  }
  if (!ok) {
    impl_ = std::make_unique<Impl>(*spec_);
    return pr.status();
  }
  im.bucketed_shown.store(st.bucketed, std::memory_order_relaxed);
  latest_ms_ = latest;
  return absl::OkStatus();
}

absl::Status FeatureEngine::SaveSnapshot(const std::string& path) const {
  std::string bytes;
  SerializeTo(&bytes);
  return core::WriteFileAtomic(path, bytes);
}

absl::Status FeatureEngine::LoadSnapshot(const std::string& path) {
  VIGIL_ASSIGN_OR_RETURN(std::string bytes, core::ReadFile(path));
  absl::Status st = Restore(bytes);
  if (!st.ok()) return absl::Status(st.code(), StrCat(path, ": ", st.message()));
  return st;
}

}  // namespace vigil::feature
