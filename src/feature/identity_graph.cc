#include "feature/identity_graph.h"

#include <algorithm>
#include <numeric>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "core/hash.h"
#include "core/strings.h"

namespace vigil::feature {

namespace {

constexpr int64_t kNoTime = std::numeric_limits<int64_t>::min();
constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();

std::pair<uint64_t, uint64_t> LinkKeyOf(uint64_t x, uint64_t y) {
  return x < y ? std::pair{x, y} : std::pair{y, x};
}

// Floor division (event times may be negative, before 1970).
int64_t FloorDiv(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

// a - b, clamped to the int64 range (times come from events).
int64_t SatSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<int64_t>::min() : std::numeric_limits<int64_t>::max();
  }
  return r;
}

// ---------------------------------------------------------------------------
// Snapshot encoding: little-endian whatever the host, so a snapshot moves
// between machines.
//
//   header   "VIGILIDG"  u32 version  u64 body_bytes
//   body     i64 link_ttl_ms  i32 max_degree  i64 rebuild_every_ms  i32 counters
//            i64 epoch_ms  i64 rebuilds
//            u64 n_stop   { u64 id }                      ids increasing
//            u64 n_nodes  { u64 id  u8 flags  u32 leader  f64 counter[counters]
//                           [f64 sum[counters] if leader is itself]
//                           [i64 hub_last_seen if flags has hub] }   in layout order
//            u64 n_links  { u32 a  u32 b  i64 last_seen }  a < b, (a, b) increasing
//   trailer  u64 core::Hash64 of header and body
//
// Nodes are written in the graph's layout order (ids distinct), which the
// restored graph keeps: the order of a rebuild's sums depends on it. A
// cluster is named by its leader, the position of its first node, so the
// bytes do not depend on which node the union-find happened to make the
// root. Version 1 wrote nodes in id order; it is read as such a layout.

constexpr char kMagic[8] = {'V', 'I', 'G', 'I', 'L', 'I', 'D', 'G'};
constexpr uint32_t kVersion = 2;
constexpr uint32_t kOldestVersion = 1;
constexpr size_t kHeaderBytes = sizeof kMagic + 4 + 8;
constexpr size_t kTrailerBytes = 8;
constexpr std::string_view kWhat = "identity graph snapshot";

class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}
  void U8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void U32(uint32_t v) { Le(v, 4); }
  void U64(uint64_t v) { Le(v, 8); }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void I64(int64_t v) { U64(static_cast<uint64_t>(v)); }
  void F64(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    U64(u);
  }

 private:
  void Le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out_->push_back(static_cast<char>(v >> (8 * i)));
  }
  std::string* out_;
};

uint64_t LoadLe(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

// Reads the body; every read checks its bound. `base` is the body's offset in
// the snapshot, so errors name the byte of the snapshot.
class Reader {
 public:
  Reader(std::string_view in, size_t base) : in_(in), base_(base) {}

  bool U8(uint8_t* v, std::string_view field) {
    if (!Need(1, field)) return false;
    *v = static_cast<uint8_t>(in_[pos_++]);
    return true;
  }
  bool U32(uint32_t* v, std::string_view field) {
    if (!Need(4, field)) return false;
    *v = static_cast<uint32_t>(LoadLe(in_.data() + pos_, 4));
    pos_ += 4;
    return true;
  }
  bool U64(uint64_t* v, std::string_view field) {
    if (!Need(8, field)) return false;
    *v = LoadLe(in_.data() + pos_, 8);
    pos_ += 8;
    return true;
  }
  bool I32(int32_t* v, std::string_view field) {
    uint32_t u;
    if (!U32(&u, field)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool I64(int64_t* v, std::string_view field) {
    uint64_t u;
    if (!U64(&u, field)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool F64(double* v, std::string_view field) {
    uint64_t u;
    if (!U64(&u, field)) return false;
    std::memcpy(v, &u, 8);
    return true;
  }
  // A count of items of at least `min_item_bytes` each, checked against the
  // bytes left, so a corrupt count cannot make the caller allocate wildly.
  bool Count(uint64_t* n, size_t min_item_bytes, std::string_view field) {
    const size_t at = pos_;
    if (!U64(n, field)) return false;
    if (*n > (in_.size() - pos_) / min_item_bytes) {
      pos_ = at;
      return Fail(StrCat(field, " is ", *n, ", more than the ", in_.size() - pos_ - 8,
                         " bytes left can hold"));
    }
    return true;
  }
  bool Fail(std::string_view why) {
    if (error_.empty()) error_ = StrCat(kWhat, ": corrupt at byte ", base_ + pos_, ": ", why);
    return false;
  }
  bool at_end() const { return pos_ == in_.size(); }
  absl::Status status() const { return absl::InvalidArgumentError(error_); }

 private:
  bool Need(size_t n, std::string_view field) {
    if (n <= in_.size() - pos_) return true;
    return Fail(StrCat("truncated reading ", field));
  }
  std::string_view in_;
  size_t base_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

IdentityGraph::IdentityGraph(const IdentityGraphOptions& o)
    : opts_(o),
      ncounters_(o.counters > 0 ? static_cast<size_t>(o.counters) : 0),
      epoch_ms_(kNoTime) {
  opts_.max_degree = std::max(opts_.max_degree, 1);
  opts_.counters = static_cast<int32_t>(ncounters_);
}

void IdentityGraph::AddStopNode(uint64_t node) { stop_.insert(node); }

uint32_t IdentityGraph::FindOrAdd(uint64_t id) {
  const auto [at, inserted] = index_.try_emplace(id, static_cast<uint32_t>(nodes_.size()));
  if (inserted) {
    const uint32_t x = *at;
    nodes_.push_back(Node{id, x, 0, 1, 0, 0});
    counters_.resize(counters_.size() + ncounters_, 0.0);
    sums_.resize(sums_.size() + ncounters_, 0.0);
    ++clusters_;
  }
  return *at;
}

uint32_t IdentityGraph::Find(uint32_t x) {
  while (nodes_[x].parent != x) {
    nodes_[x].parent = nodes_[nodes_[x].parent].parent;
    x = nodes_[x].parent;
  }
  return x;
}

uint32_t IdentityGraph::FindConst(uint32_t x) const {
  while (nodes_[x].parent != x) x = nodes_[x].parent;
  return x;
}

void IdentityGraph::Union(uint32_t a, uint32_t b) {
  a = Find(a);
  b = Find(b);
  if (a == b) return;
  if (nodes_[a].size < nodes_[b].size) std::swap(a, b);
  nodes_[b].parent = a;
  nodes_[a].size += nodes_[b].size;
  nodes_[a].accounts += nodes_[b].accounts;
  // IEEE addition is commutative, so the sum does not depend on which root
  // wins the tie: a restored graph (whose roots may differ) stays bit-equal.
  double* sa = Sums(a);
  const double* sb = Sums(b);
  for (size_t k = 0; k < ncounters_; ++k) sa[k] += sb[k];
  --clusters_;
}

void IdentityGraph::MakeHub(uint32_t x, int64_t t_ms) {
  nodes_[x].flags |= kHub;
  hub_seen_[x] = t_ms;
}

void IdentityGraph::Link(uint32_t a, uint32_t b, int64_t t_ms) {
  const LinkKey key = LinkKeyOf(nodes_[a].id, nodes_[b].id);
  if (LinkRec* l = links_.find(key)) {
    // Already joined: a link is only ever held with its ends in one cluster.
    l->seen = std::max(l->seen, t_ms);
    return;
  }
  const auto cap = static_cast<uint32_t>(opts_.max_degree);
  bool refused = false;
  if (nodes_[a].degree >= cap) {
    MakeHub(a, t_ms);
    refused = true;
  }
  if (nodes_[b].degree >= cap) {
    MakeHub(b, t_ms);
    refused = true;
  }
  if (refused) return;
  links_.try_emplace(key, LinkRec{t_ms, a, b});
  ++nodes_[a].degree;
  ++nodes_[b].degree;
  Union(a, b);
}

void IdentityGraph::Observe(std::span<const uint64_t> nodes, int64_t t_ms) {
  MaybeRebuild(t_ms);
  if (nodes.empty() || IsStop(nodes[0])) return;
  const uint64_t account_id = nodes[0];
  const uint32_t a = FindOrAdd(account_id);
  if (!(nodes_[a].flags & kAccount)) {
    nodes_[a].flags |= kAccount;
    ++nodes_[Find(a)].accounts;
  }
  if (nodes_[a].flags & kHub) hub_seen_[a] = std::max(hub_seen_[a], t_ms);
  for (size_t i = 1; i < nodes.size(); ++i) {
    const uint64_t id = nodes[i];
    if (id == account_id || IsStop(id)) continue;
    const uint32_t b = FindOrAdd(id);
    if (nodes_[b].flags & kHub) {
      // Keeps the hub's status alive while it keeps turning up.
      hub_seen_[b] = std::max(hub_seen_[b], t_ms);
      continue;
    }
    // nodes_[a] may have become a hub earlier in this loop.
    if (nodes_[a].flags & kHub) continue;
    Link(a, b, t_ms);
  }
}

void IdentityGraph::Add(uint64_t node, int counter, double v) {
  if (counter < 0 || static_cast<size_t>(counter) >= ncounters_ || !std::isfinite(v)) return;
  if (IsStop(node)) return;  // counts nothing, and is not stored
  uint32_t x;
  if (const uint32_t* at = index_.find(node)) {
    x = *at;
  } else {
    if (v == 0) return;
    x = FindOrAdd(node);
  }
  NodeCounters(x)[counter] += v;
  Sums(Find(x))[counter] += v;
}

int64_t IdentityGraph::ClusterSize(uint64_t node) const {
  const uint32_t* at = index_.find(node);
  if (at == nullptr) return 1;
  return nodes_[FindConst(*at)].size;
}

int64_t IdentityGraph::ClusterAccounts(uint64_t node) const {
  const uint32_t* at = index_.find(node);
  if (at == nullptr) return 0;
  return nodes_[FindConst(*at)].accounts;
}

double IdentityGraph::ClusterCounter(uint64_t node, int counter) const {
  if (counter < 0 || static_cast<size_t>(counter) >= ncounters_) return 0;
  const uint32_t* at = index_.find(node);
  if (at == nullptr) return 0;
  return sums_[size_t{FindConst(*at)} * ncounters_ + static_cast<size_t>(counter)];
}

bool IdentityGraph::IsHub(uint64_t node) const {
  const uint32_t* at = index_.find(node);
  return at != nullptr && (nodes_[*at].flags & kHub);
}

void IdentityGraph::MaybeRebuild(int64_t now_ms) {
  const int64_t every = opts_.rebuild_every_ms;
  if (every <= 0) return;
  if (epoch_ms_ == kNoTime) {
    // Nothing can be stale yet: the first call only starts the clock.
    epoch_ms_ = now_ms;
    return;
  }
  if (FloorDiv(now_ms, every) > FloorDiv(epoch_ms_, every)) Rebuild(now_ms);
}

void IdentityGraph::Rebuild(int64_t now_ms) {
  // Expired: not seen for link_ttl_ms, i.e. last seen at or before `cutoff`.
  const int64_t cutoff = SatSub(now_ms, opts_.link_ttl_ms);
  const size_t n = nodes_.size();
  RebuildScratch& w = scratch_;

  // A hub is seen through its refusals and sightings, and through its
  // links, which are newer when a late event made it a hub: their times
  // count where this rebuild drops them (below) and, when some hub would
  // lapse, before it decides (then only, as it takes a pass).
  const auto sighting = [this](uint32_t x, int64_t t) {
    if (!(nodes_[x].flags & kHub)) return;
    int64_t& seen = hub_seen_.find(x)->second;
    seen = std::max(seen, t);
  };
  bool lapsing = false;
  for (const auto& [x, seen] : hub_seen_) lapsing |= seen <= cutoff;
  if (lapsing) {
    links_.for_each([&](const LinkKey&, const LinkRec& l) {
      sighting(l.a, l.seen);
      sighting(l.b, l.seen);
    });
  }
  for (const auto& [x, seen] : hub_seen_) {
    if (seen <= cutoff) nodes_[x].flags &= static_cast<uint8_t>(~kHub);
  }
  auto& blocked = w.blocked;
  blocked.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    blocked[i] = (nodes_[i].flags & kHub) || IsStop(nodes_[i].id);
  }

  const auto dead = [&](const LinkRec& l) { return l.seen <= cutoff || blocked[l.a] || blocked[l.b]; };
  auto& degree = w.degree;
  degree.assign(n, 0);
  links_.for_each([&](const LinkKey&, const LinkRec& l) {
    if (dead(l)) return;
    ++degree[l.a];
    ++degree[l.b];
  });

  // Keep what still carries information, in the layout's order: the new
  // layout, and so the order of every sum below, is a function of the calls
  // alone (nodes are added in call order), and copying it reads the old
  // layout front to back.
  auto& order = w.order;
  order.clear();
  order.reserve(n);
  auto& remap = w.remap;
  remap.assign(n, kNone);
  for (uint32_t i = 0; i < n; ++i) {
    bool keep = degree[i] > 0 || (nodes_[i].flags & kHub);
    const double* c = NodeCounters(i);
    for (size_t k = 0; !keep && k < ncounters_; ++k) keep = c[k] != 0;
    if (keep) {
      remap[i] = static_cast<uint32_t>(order.size());
      order.push_back(i);
    }
  }

  auto& nodes = w.nodes;
  nodes.clear();
  nodes.reserve(order.size());
  auto& counters = w.counters;
  counters.clear();
  counters.reserve(order.size() * ncounters_);
  absl::flat_hash_map<uint32_t, int64_t> hub_seen;
  for (uint32_t k = 0; k < order.size(); ++k) {
    const uint32_t old = order[k];
    const Node& o = nodes_[old];
    nodes.push_back(Node{o.id, k, degree[old], 1, (o.flags & kAccount) ? 1u : 0u, o.flags});
    const double* c = NodeCounters(old);
    counters.append(c, ncounters_);
    if (o.flags & kHub) hub_seen.emplace(k, hub_seen_.at(old));
  }

  // The old layout's vectors become the next rebuild's scratch (emptied:
  // so that a shrink below gives their room back in this rebuild).
  nodes_.swap(nodes);
  counters_.swap(counters);
  nodes.clear();
  counters.clear();
  sums_.assign(counters_.size(), 0.0);
  // Renumbering in place is cheaper than rebuilding the map: no hashing.
  index_.erase_if([&remap](uint64_t, uint32_t& x) {
    const uint32_t k = remap[x];
    if (k == kNone) return true;
    x = k;
    return false;
  });
  if (index_.size() < index_.capacity() / 4) index_.shrink_to_fit();  // give back memory
  // The arrays too, when the graph kept under a quarter of their room (a
  // mass expiry): down to twice what it holds, so that it can grow back
  // without a growth at once.
  const size_t kept = order.size();
  const auto shrink = [kept](auto& v, size_t per_node) {
    if (v.capacity() / 4 > kept * per_node) v.shrink_to_fit(2 * kept * per_node);
  };
  shrink(nodes_, 1);
  shrink(counters_, ncounters_);
  shrink(sums_, ncounters_);
  shrink(w.nodes, 1);
  shrink(w.counters, ncounters_);
  order.clear();
  shrink(w.order, 1);
  hub_seen_ = std::move(hub_seen);
  // The clusters, by union-find over the live links on arrays of 4 bytes a
  // node (a fraction of the nodes' 32), in the links' map order: no value
  // a cluster reports depends on which node ends up its root, or on the
  // order of the unions (see Union), so they need no sort. The same pass
  // erases the dead links and renumbers the live ones.
  const auto m = static_cast<uint32_t>(nodes_.size());
  auto& parent = w.parent;
  auto& size = w.size;
  parent.resize(m);
  std::iota(parent.begin(), parent.end(), 0u);
  size.assign(m, 1);
  shrink(parent, 1);
  shrink(size, 1);
  const auto find = [&parent](uint32_t x) {
    while (parent[x] != x) {
      parent[x] = parent[parent[x]];
      x = parent[x];
    }
    return x;
  };
  clusters_ = static_cast<int64_t>(m);
  links_.erase_if([&](const LinkKey&, LinkRec& l) {
    if (dead(l)) {  // blocked is in the old numbering, as l is until here
      // (Hubs are kept: a hub end is renumbered, into the new layout.)
      for (const uint32_t end : {l.a, l.b}) {
        if (remap[end] != kNone) sighting(remap[end], l.seen);
      }
      return true;
    }
    l.a = remap[l.a];
    l.b = remap[l.b];
    uint32_t a = find(l.a), b = find(l.b);
    if (a != b) {
      if (size[a] < size[b]) std::swap(a, b);
      parent[b] = a;
      size[a] += size[b];
      --clusters_;
    }
    return false;
  });
  if (links_.size() < links_.capacity() / 4) links_.shrink_to_fit();
  // Their last use, in the old numbering.
  for (auto* v : {&degree, &remap}) {
    v->clear();
    shrink(*v, 1);
  }
  blocked.clear();
  shrink(blocked, 1);
  // Roots' accounts and counter sums, summed in layout order.
  for (uint32_t k = 0; k < m; ++k) {
    const uint32_t r = find(k);
    Node& node = nodes_[k];
    node.parent = r;
    node.size = size[k];
    if (r != k) {
      nodes_[r].accounts += node.accounts;
      node.accounts = 0;
    }
    double* s = Sums(r);
    const double* c = NodeCounters(k);
    for (size_t j = 0; j < ncounters_; ++j) s[j] += c[j];
  }
  epoch_ms_ = std::max(epoch_ms_, now_ms);
  ++rebuilds_;
}

IdentityGraph::Stats IdentityGraph::stats() const {
  Stats s;
  s.nodes = static_cast<int64_t>(nodes_.size());
  s.links = static_cast<int64_t>(links_.size());
  s.hubs = static_cast<int64_t>(hub_seen_.size());
  s.clusters = clusters_;
  s.rebuilds = rebuilds_;
  // A flat_hash_map slot is the pair plus one control byte.
  s.memory_bytes =
      static_cast<int64_t>(nodes_.capacity() * sizeof(Node) +
                           (counters_.capacity() + sums_.capacity()) * sizeof(double) +
                           index_.capacity() * (sizeof(std::pair<const uint64_t, uint32_t>) + 1) +
                           links_.capacity() * (sizeof(std::pair<const LinkKey, LinkRec>) + 1) +
                           hub_seen_.capacity() * (sizeof(std::pair<const uint32_t, int64_t>) + 1) +
                           stop_.capacity() * (sizeof(uint64_t) + 1));
  const RebuildScratch& w = scratch_;
  s.memory_bytes += static_cast<int64_t>(
      w.blocked.capacity() +
      (w.degree.capacity() + w.order.capacity() + w.remap.capacity() + w.parent.capacity() + w.size.capacity()) *
          sizeof(uint32_t) +
      w.nodes.capacity() * sizeof(Node) +
      w.counters.capacity() * sizeof(double));
  return s;
}

void IdentityGraph::SerializeTo(std::string* out) const {
  out->clear();
  AppendTo(out);
}

void IdentityGraph::AppendTo(std::string* out) const {
  const size_t start = out->size();
  const size_t n = nodes_.size();
  // The leader of a cluster is its first node in the layout.
  std::vector<uint32_t> leader_of_root(n, kNone);
  for (uint32_t k = 0; k < n; ++k) {
    uint32_t& l = leader_of_root[FindConst(k)];
    if (l == kNone) l = k;
  }
  std::vector<uint64_t> stops(stop_.begin(), stop_.end());
  std::sort(stops.begin(), stops.end());
  struct Rec {
    uint32_t a, b;
    int64_t seen;
  };
  std::vector<Rec> links;
  links.reserve(links_.size());
  links_.for_each([&](const LinkKey&, const LinkRec& l) {
    uint32_t a = l.a, b = l.b;
    if (a > b) std::swap(a, b);
    links.push_back({a, b, l.seen});
  });
  std::sort(links.begin(), links.end(),
            [](const Rec& x, const Rec& y) { return x.a != y.a ? x.a < y.a : x.b < y.b; });

  out->append(kMagic, sizeof kMagic);
  Writer w(out);
  w.U32(kVersion);
  w.U64(0);  // body length, patched below
  const size_t body_start = out->size();
  w.I64(opts_.link_ttl_ms);
  w.I32(opts_.max_degree);
  w.I64(opts_.rebuild_every_ms);
  w.I32(opts_.counters);
  w.I64(epoch_ms_);
  w.I64(rebuilds_);
  w.U64(stops.size());
  for (uint64_t id : stops) w.U64(id);
  w.U64(n);
  for (uint32_t k = 0; k < n; ++k) {
    const uint32_t x = k;
    const uint32_t root = FindConst(x);
    const uint32_t leader = leader_of_root[root];
    w.U64(nodes_[x].id);
    w.U8(nodes_[x].flags);
    w.U32(leader);
    const double* c = counters_.data() + size_t{x} * ncounters_;
    for (size_t j = 0; j < ncounters_; ++j) w.F64(c[j]);
    if (leader == k) {
      const double* s = sums_.data() + size_t{root} * ncounters_;
      for (size_t j = 0; j < ncounters_; ++j) w.F64(s[j]);
    }
    if (nodes_[x].flags & kHub) w.I64(hub_seen_.at(x));
  }
  w.U64(links.size());
  for (const Rec& l : links) {
    w.U32(l.a);
    w.U32(l.b);
    w.I64(l.seen);
  }
  const uint64_t body_bytes = out->size() - body_start;
  for (int i = 0; i < 8; ++i) {
    (*out)[body_start - 8 + i] = static_cast<char>(body_bytes >> (8 * i));
  }
  w.U64(core::Hash64(std::string_view(*out).substr(start)));
}

absl::Status IdentityGraph::ParseFrom(std::string_view in) {
  if (in.size() < kHeaderBytes) {
    return absl::InvalidArgumentError(StrCat(kWhat, ": truncated: ", in.size(),
                                             " bytes, shorter than the ", kHeaderBytes,
                                             "-byte header"));
  }
  if (std::memcmp(in.data(), kMagic, sizeof kMagic) != 0) {
    return absl::InvalidArgumentError(
        StrCat(kWhat, ": not an identity graph snapshot (bad magic)"));
  }
  const auto version = static_cast<uint32_t>(LoadLe(in.data() + sizeof kMagic, 4));
  if (version < kOldestVersion || version > kVersion) {
    return absl::InvalidArgumentError(StrCat(kWhat, ": version ", version,
                                             "; this vigil reads versions ", kOldestVersion,
                                             " to ", kVersion));
  }
  const uint64_t body_bytes = LoadLe(in.data() + sizeof kMagic + 4, 8);
  const size_t avail = in.size() - kHeaderBytes;
  if (avail < kTrailerBytes || body_bytes > avail - kTrailerBytes) {
    return absl::InvalidArgumentError(
        StrCat(kWhat, ": truncated: the header announces ", body_bytes,
               " bytes of state and an 8-byte checksum, only ", avail, " bytes follow it"));
  }
  if (body_bytes < avail - kTrailerBytes) {
    return absl::InvalidArgumentError(
        StrCat(kWhat, ": ", avail - kTrailerBytes - body_bytes,
               " unexpected bytes after the checksum (the header announces ", body_bytes,
               " bytes of state)"));
  }
  const size_t sealed = kHeaderBytes + body_bytes;
  if (LoadLe(in.data() + sealed, 8) != core::Hash64(in.substr(0, sealed))) {
    return absl::InvalidArgumentError(
        StrCat(kWhat, ": checksum mismatch (the snapshot is corrupt)"));
  }

  Reader r(in.substr(kHeaderBytes, body_bytes), kHeaderBytes);
  IdentityGraphOptions snap_opts;
  if (!r.I64(&snap_opts.link_ttl_ms, "link_ttl_ms") ||
      !r.I32(&snap_opts.max_degree, "max_degree") ||
      !r.I64(&snap_opts.rebuild_every_ms, "rebuild_every_ms") ||
      !r.I32(&snap_opts.counters, "counters")) {
    return r.status();
  }
  if (snap_opts.counters != opts_.counters) {
    return absl::FailedPreconditionError(StrCat(kWhat, ": taken with ", snap_opts.counters,
                                                " cluster counters; this graph is configured with ",
                                                opts_.counters));
  }
  const size_t nc = ncounters_;
  IdentityGraph g(opts_);
  if (!r.I64(&g.epoch_ms_, "epoch_ms") || !r.I64(&g.rebuilds_, "rebuilds")) return r.status();
  if (g.rebuilds_ < 0) {
    r.Fail(StrCat("negative rebuild count ", g.rebuilds_));
    return r.status();
  }

  uint64_t n_stop;
  if (!r.Count(&n_stop, 8, "stop node count")) return r.status();
  g.stop_.reserve(n_stop);
  for (uint64_t i = 0, prev = 0; i < n_stop; ++i) {
    uint64_t id;
    if (!r.U64(&id, "stop node id")) return r.status();
    if (i > 0 && id <= prev) {
      r.Fail(StrCat("stop node ", i, " is not after stop node ", i - 1, " (ids must increase)"));
      return r.status();
    }
    g.stop_.insert(id);
    prev = id;
  }

  uint64_t n;
  if (!r.Count(&n, 8 + 1 + 4 + 8 * nc, "node count")) return r.status();
  if (n >= kNone) {
    r.Fail(StrCat("node count ", n, " beyond the limit of ", kNone - 1));
    return r.status();
  }
  g.nodes_.reserve(n);
  g.counters_.reserve(n * nc);
  g.sums_.assign(n * nc, 0.0);
  g.index_.reserve(n);
  for (uint32_t k = 0; k < n; ++k) {
    uint64_t id;
    uint8_t flags;
    uint32_t leader;
    if (!r.U64(&id, "node id") || !r.U8(&flags, "node flags") || !r.U32(&leader, "node leader")) {
      return r.status();
    }
    if (const uint32_t* same = g.index_.find(id)) {
      r.Fail(StrCat("node ", k, " repeats the id of node ", *same));
      return r.status();
    }
    if (flags & ~(kAccount | kHub)) {
      r.Fail(StrCat("node ", k, " has unknown flags ", static_cast<int>(flags)));
      return r.status();
    }
    // The leader is the cluster's first node in the layout, so it comes first.
    if (leader > k || (leader < k && g.nodes_[leader].parent != leader)) {
      r.Fail(
          StrCat("node ", k, " names node ", leader, " as its cluster leader, which is not one"));
      return r.status();
    }
    g.nodes_.push_back(Node{id, leader, 0, 0, 0, flags});
    g.index_.try_emplace(id, k);
    for (size_t j = 0; j < nc; ++j) {
      double v;
      if (!r.F64(&v, "node counter")) return r.status();
      g.counters_.push_back(v);
    }
    if (leader == k) {
      ++g.clusters_;
      for (size_t j = 0; j < nc; ++j) {
        if (!r.F64(&g.sums_[size_t{k} * nc + j], "cluster counter")) return r.status();
      }
    }
    Node& root = g.nodes_[leader];
    ++root.size;
    if (flags & kAccount) ++root.accounts;
    if (flags & kHub) {
      int64_t seen;
      if (!r.I64(&seen, "hub last-seen time")) return r.status();
      g.hub_seen_.emplace(k, seen);
    }
  }

  uint64_t n_links;
  if (!r.Count(&n_links, 16, "link count")) return r.status();
  g.links_.reserve(n_links);
  uint64_t prev_key = 0;
  for (uint64_t i = 0; i < n_links; ++i) {
    uint32_t a, b;
    int64_t seen;
    if (!r.U32(&a, "link end") || !r.U32(&b, "link end") || !r.I64(&seen, "link last-seen time")) {
      return r.status();
    }
    if (a >= b || b >= n) {
      r.Fail(StrCat("link ", i, " joins nodes ", a, " and ", b, " (needs a < b < ", n, ")"));
      return r.status();
    }
    const uint64_t key = (uint64_t{a} << 32) | b;
    if (i > 0 && key <= prev_key) {
      r.Fail(StrCat("link ", i, " is not after link ", i - 1, " (links must be sorted)"));
      return r.status();
    }
    // Every link held was made by a union (or kept by a rebuild's union).
    if (g.nodes_[a].parent != g.nodes_[b].parent) {
      r.Fail(StrCat("link ", i, " joins nodes ", a, " and ", b, " of different clusters"));
      return r.status();
    }
    g.links_.try_emplace(LinkKeyOf(g.nodes_[a].id, g.nodes_[b].id), LinkRec{seen, a, b});
    ++g.nodes_[a].degree;
    ++g.nodes_[b].degree;
    prev_key = key;
  }
  if (!r.at_end()) {
    r.Fail("bytes after the last link");
    return r.status();
  }
  *this = std::move(g);
  return absl::OkStatus();
}

}  // namespace vigil::feature
