// The identity graph links the keys seen together in events (an account and
// its devices, cards, wallets, IP ranges) and answers, for any key, how big
// its connected cluster is and what the cluster has done (cluster counters,
// e.g. promo redemptions summed over every account in it). It exists to find
// rings: many accounts that share hardware or payment instruments.
//
// Model. Nodes are 64-bit ids the caller makes from (key kind, value), e.g.
// core::HashCombine(core::Hash64("device_id"), core::Hash64(value)). Each
// Observe() links the event's first node (the account) to each of the others,
// a star, and stamps each link with the event's time. Clusters are kept by a
// union-find (union by size, path halving): between rebuilds they only grow.
// Once per `rebuild_every_ms` of EVENT time the partition is recomputed from
// the live links only, which is how expired links, hubs and stop nodes stop
// joining accounts. docs/identity-graph.md explains the guardrails.
//
// Determinism: every answer is a function of the sequence of calls alone,
// never of the wall clock, of hash-table iteration order or of the process,
// so backfill and serving agree bit for bit; a snapshot restored with
// ParseFrom continues exactly as the uninterrupted graph would.
//
// Ownership and thread-safety: the graph owns all its memory. Not
// thread-safe: one graph per engine, which sees every event in order
// (docs/identity-graph.md, "One graph must see every event").
// The const readers do not compress paths, so they may run concurrently with
// each other, but never with a non-const call.
#ifndef VIGIL_FEATURE_IDENTITY_GRAPH_H_
#define VIGIL_FEATURE_IDENTITY_GRAPH_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "core/incremental_map.h"
#include "core/remap_vector.h"
#include "core/status.h"

namespace vigil::feature {

struct IdentityGraphOptions {
  // A link not seen again for this long (event time) is dropped at the next
  // rebuild; so is a hub's hub status. <= 0: links die at every rebuild.
  int64_t link_ttl_ms = 90LL * 86400000;
  // A node that would get more distinct neighbours than this becomes a hub:
  // it takes no new links and, from the next rebuild, its links join
  // nothing. Its links held count, expired ones too until the rebuild that
  // drops them (docs/identity-graph.md, "Limits"). Values below 1 are taken
  // as 1.
  int32_t max_degree = 50;
  // The partition is rebuilt from the live links when an event's time enters
  // a new period of this length (periods are aligned to multiples of it, so
  // the default rebuilds at each UTC midnight of event time). <= 0: only an
  // explicit Rebuild() rebuilds.
  int64_t rebuild_every_ms = 86400000;
  // Number of per-node counters summed per cluster. Negative is taken as 0.
  int32_t counters = 0;
};

class IdentityGraph {
 public:
  explicit IdentityGraph(const IdentityGraphOptions& o);

  const IdentityGraphOptions& options() const { return opts_; }

  // Marks `node` as one that never links (an exchange's hot wallet, a known
  // NAT address). Meant to be set once, before the stream; a node stopped
  // later keeps the links it has until the next rebuild drops them.
  void AddStopNode(uint64_t node);

  // The nodes seen together in one event at `t_ms`: links nodes[0] (the
  // account) to each of the others, or refreshes the link's last-seen time,
  // and joins their clusters at once. First calls MaybeRebuild(t_ms).
  // nodes[0] is marked as an account (see ClusterAccounts). A stop node as
  // nodes[0] makes the call a no-op; elsewhere it is skipped. Repeated ids
  // and ids equal to nodes[0] are ignored. A new link that would give either
  // end more than max_degree distinct neighbours is refused and that end
  // becomes a hub; links touching a hub are neither made nor refreshed.
  // Hot path: no allocation once the nodes and the links exist (a rebuild,
  // once per period, allocates).
  void Observe(std::span<const uint64_t> nodes, int64_t t_ms);

  // Adds `v` to counter `counter` of `node` (and so to its cluster's). An
  // unseen node is created unless `v` is 0. Ignored when `counter` is out of
  // [0, counters), `v` is not finite or `node` is a stop node.
  // Hot path: no allocation once the node exists.
  void Add(uint64_t node, int counter, double v);

  // The number of nodes (accounts, devices, cards, ...) in `node`'s cluster;
  // 1 for a node the graph does not hold.
  int64_t ClusterSize(uint64_t node) const;
  // The number of accounts in `node`'s cluster: nodes that were nodes[0] of
  // some Observe() since they last entered the graph. 0 for a node the graph
  // does not hold.
  int64_t ClusterAccounts(uint64_t node) const;
  // The sum of counter `counter` over `node`'s cluster; 0 for a node the
  // graph does not hold or a counter out of range. Sums are accumulated in
  // call order between rebuilds and recomputed at a rebuild in the order the
  // nodes were added, so the last bits may change at a rebuild (exact for
  // integers < 2^53).
  double ClusterCounter(uint64_t node, int counter) const;
  // Whether `node` is a hub (see max_degree).
  bool IsHub(uint64_t node) const;

  // Rebuilds when `now_ms` is in a later rebuild period than the last
  // rebuild (or than the first call, which only starts the clock).
  void MaybeRebuild(int64_t now_ms);
  // Drops expired links, links touching hubs or stop nodes, and the hub
  // status of hubs not seen for link_ttl_ms; drops nodes left with no link,
  // no counter and no hub status; then recomputes the partition, cluster
  // sizes, accounts and counters from the remaining links.
  // Cost: O(N + L) for N nodes and L links, two passes over each, no
  // sorting and no hashing of the links kept (they are renumbered in place);
  // reuses its working vectors (grows them when the graph has outgrown them)
  // and gives memory back when it keeps under a quarter of their room.
  void Rebuild(int64_t now_ms);

  struct Stats {
    int64_t nodes = 0;     // nodes held (stop nodes are not held)
    int64_t links = 0;     // links held (some may be expired or hub links until the next rebuild)
    int64_t hubs = 0;      // nodes with hub status
    int64_t clusters = 0;  // clusters among the nodes held
    int64_t rebuilds = 0;  // rebuilds done
    int64_t memory_bytes = 0;  // approximate heap held
  };
  Stats stats() const;

  // Snapshot: the whole state as bytes (versioned, checksummed, little-endian;
  // nodes in the graph's layout, which the restored graph keeps: the same
  // calls give the same bytes), and back. Processing
  // after ParseFrom gives exactly what the uninterrupted graph gives, provided
  // the options are the same. The snapshot records the options; only
  // `counters` must match (FailedPrecondition otherwise): the others are taken
  // from this graph's options. Returns InvalidArgument naming what is wrong
  // and where for truncated or corrupt bytes. On failure the graph is left
  // unchanged.
  void SerializeTo(std::string* out) const;
  // The same bytes appended to *out.
  void AppendTo(std::string* out) const;
  absl::Status ParseFrom(std::string_view in);

 private:
  struct Node {
    uint64_t id;
    uint32_t parent;
    uint32_t degree;    // links held that touch this node
    uint32_t size;      // at a root: nodes in the cluster
    uint32_t accounts;  // at a root: accounts in the cluster
    uint8_t flags;      // kAccount | kHub
  };
  static constexpr uint8_t kAccount = 1;
  static constexpr uint8_t kHub = 2;

  uint32_t FindOrAdd(uint64_t id);
  uint32_t Find(uint32_t x);             // with path halving
  uint32_t FindConst(uint32_t x) const;  // no compression: depth <= log2(N)
  void Union(uint32_t a, uint32_t b);
  void Link(uint32_t a, uint32_t b, int64_t t_ms);
  void MakeHub(uint32_t x, int64_t t_ms);
  bool IsStop(uint64_t id) const { return !stop_.empty() && stop_.contains(id); }
  double* NodeCounters(uint32_t x) { return counters_.data() + size_t{x} * ncounters_; }
  double* Sums(uint32_t x) { return sums_.data() + size_t{x} * ncounters_; }

  IdentityGraphOptions opts_;
  size_t ncounters_;
  // The per-node arrays grow by mremap, never by copying (core/remap_vector.h):
  // a vector doubling at a few hundred thousand nodes held up its event for
  // milliseconds.
  core::RemapVector<Node> nodes_;
  core::RemapVector<double> counters_;  // per node, ncounters_ each
  core::RemapVector<double> sums_;      // per node, ncounters_ each; meaningful at roots
  // Incremental (core/incremental_map.h): a million-node table that doubled
  // in one step held up the event for tens of milliseconds.
  core::IncrementalMap<uint64_t, uint32_t> index_;  // node id -> index in nodes_
  // A link is keyed by its ends' node ids, which a rebuild does not change,
  // and carries their indices, which it renumbers in place: so a rebuild
  // erases the dead links from the map instead of making a new map (the
  // re-insertion of every live link was most of a rebuild's time).
  struct LinkRec {
    int64_t seen;  // last seen
    uint32_t a, b;  // the ends' indices in nodes_
  };
  using LinkKey = std::pair<uint64_t, uint64_t>;  // (smaller node id, larger)
  core::IncrementalMap<LinkKey, LinkRec> links_;
  absl::flat_hash_map<uint32_t, int64_t> hub_seen_;  // hub index -> last seen
  // Rebuild's working memory, kept from one rebuild to the next: fresh
  // vectors of this size cost more in page faults than the rebuild's own
  // work. Not part of the state: a copy of the graph starts without it.
  struct RebuildScratch {
    RebuildScratch() = default;
    RebuildScratch(const RebuildScratch&) {}
    RebuildScratch& operator=(const RebuildScratch&) { return *this; }
    RebuildScratch(RebuildScratch&&) noexcept = default;
    RebuildScratch& operator=(RebuildScratch&&) noexcept = default;
    // Remapped, so that a graph that outgrew them faults in only the new room.
    core::RemapVector<uint8_t> blocked;
    core::RemapVector<uint32_t> degree, order, remap, parent, size;
    core::RemapVector<Node> nodes;
    core::RemapVector<double> counters;
  };
  RebuildScratch scratch_;
  absl::flat_hash_set<uint64_t> stop_;
  int64_t epoch_ms_;  // time of the last rebuild (or first call); kNoTime before
  int64_t rebuilds_ = 0;
  int64_t clusters_ = 0;
};

}  // namespace vigil::feature

#endif  // VIGIL_FEATURE_IDENTITY_GRAPH_H_
