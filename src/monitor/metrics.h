// The one metrics registry of a vigil process, and its Prometheus text
// exposition (format 0.0.4, what /metrics serves). docs/monitoring.md.
//
// A Registry owns every metric registered in it: Counter, Gauge and
// Histogram objects live exactly as long as the Registry, at fixed
// addresses, so the serving code looks each one up once at start-up and
// keeps the raw pointer. Values owned elsewhere (a queue's depth, per-rule
// hit counts) are exported by collectors: callbacks run at render time
// that append exposition lines themselves, with the Append* helpers below.
//
// Counter and Histogram are sharded: each holds kShards cache-line-aligned
// cells and a thread updates the cell of its own shard (threads are
// numbered round-robin the first time they touch any metric), so threads
// serving requests on different cores do not bounce one cache line between
// them. With two threads on two cores, a shared counter increment cost about
// 3x a sharded one and a histogram observation 4-17x (metrics_benchmark);
// the gap grows with the core count. Reading sums the shards.
//
// Thread-safety: the Registry's methods may be called from any thread; the
// ones returning metrics take a mutex and are meant for start-up. The update
// methods of the metrics (Inc, Set, Add, Observe) and their readers are
// lock-free (relaxed atomics) and allocation-free: hot path. A rendering
// that runs while updates happen reads the shards one after the other: a
// counter never reads more than it was incremented, nor less than at an
// earlier rendering; values of different series (or a histogram's _sum
// against its _count) are not taken at one instant.
//
// Memory: a Counter is kShards cache lines (1 KB); a Histogram with n bounds
// kShards x ceil((n + 2) / 8) lines (LatencyBuckets: 3 KB); a Gauge one line.
#ifndef VIGIL_MONITOR_METRICS_H_
#define VIGIL_MONITOR_METRICS_H_

#include <atomic>
#include <bit>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace vigil::monitor {

// Label names and values of one series, e.g. {{"route", "/v1/decide"}}.
// Order does not matter: a series is identified by its sorted labels.
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };
// "counter", "gauge", "histogram": the word of a # TYPE line.
const char* MetricTypeName(MetricType t);

inline constexpr size_t kCacheLine = 64;
// Cells per Counter / Histogram. Threads beyond this share cells (still
// correct, just contended again).
inline constexpr uint32_t kShards = 16;

namespace metrics_internal {
// This thread's shard, numbered on first use; kShards means not yet.
inline thread_local uint32_t tls_shard = kShards;
uint32_t AssignShard() noexcept;
inline uint32_t Shard() noexcept {
  const uint32_t s = tls_shard;
  return s < kShards ? s : AssignShard();
}
// Adds `d` to a double stored as its bits in `a` (relaxed).
inline void AddDouble(std::atomic<uint64_t>* a, double d) noexcept {
  uint64_t old = a->load(std::memory_order_relaxed);
  while (!a->compare_exchange_weak(old, std::bit_cast<uint64_t>(std::bit_cast<double>(old) + d),
                                   std::memory_order_relaxed)) {
  }
}
}  // namespace metrics_internal

// A monotonically increasing count. Rendered as an integer.
class Counter {
 public:
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // REQUIRES: n >= 0 (a counter never goes down).
  // Hot path: one relaxed fetch_add on this thread's shard.
  void Inc(int64_t n = 1) noexcept {
    cells_[metrics_internal::Shard()].v.fetch_add(n, std::memory_order_relaxed);
  }
  // The sum over the shards.
  int64_t value() const noexcept;

 private:
  friend class Registry;
  Counter() = default;
  struct alignas(kCacheLine) Cell {
    std::atomic<int64_t> v{0};
  };
  Cell cells_[kShards];
};

// A value that goes up and down. One cell: Set has to be global, so a Gauge
// updated from many threads at once (Add) is contended; keep those rare.
class alignas(kCacheLine) Gauge {
 public:
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  // Hot path: one relaxed store.
  void Set(double v) noexcept {
    bits_.store(std::bit_cast<uint64_t>(v), std::memory_order_relaxed);
  }
  // Hot path: a compare-and-swap loop.
  void Add(double d) noexcept { metrics_internal::AddDouble(&bits_, d); }
  double value() const noexcept {
    return std::bit_cast<double>(bits_.load(std::memory_order_relaxed));
  }

 private:
  friend class Registry;
  Gauge() = default;
  std::atomic<uint64_t> bits_{std::bit_cast<uint64_t>(0.0)};
};

// A distribution: how many observations fell at or below each upper bound
// (fixed at registration), their count and their sum.
class Histogram {
 public:
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // Counts `v` in the first bucket whose upper bound is >= v (+Inf past the
  // last) and adds it to the sum. NaN is ignored: it would turn _sum into
  // NaN for the life of the process.
  // Hot path: a search over the bounds, one fetch_add and one
  // compare-and-swap on this thread's shard; no allocation.
  void Observe(double v) noexcept {
    if (v != v) return;
    size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;  // few bounds: a scan beats bisection
    std::atomic<uint64_t>* cell = shard(metrics_internal::Shard());
    cell[1 + i].fetch_add(1, std::memory_order_relaxed);
    metrics_internal::AddDouble(&cell[0], v);
  }

  struct Snapshot {
    std::vector<double> upper_bounds;  // without +Inf
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    uint64_t count = 0;
    double sum = 0;
  };
  // Sums the shards. The count is the +Inf bucket, so buckets and count
  // always agree; the sum may be a few observations ahead or behind.
  Snapshot Collect() const;
  const std::vector<double>& upper_bounds() const { return bounds_; }

 private:
  friend class Registry;
  explicit Histogram(std::vector<double> upper_bounds);
  // Shard s: [sum bits, bucket 0 .. bucket n-1, +Inf], 64-byte aligned.
  std::atomic<uint64_t>* shard(uint32_t s) const noexcept { return cells_ + s * stride_; }

  std::vector<double> bounds_;
  size_t stride_ = 0;  // words per shard, a multiple of a cache line
  std::unique_ptr<std::atomic<uint64_t>[]> storage_;
  std::atomic<uint64_t>* cells_ = nullptr;  // storage_ aligned to a cache line
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The series of family `name` with `labels`, created on the first call;
  // the same name and labels (in any order) return the same object.
  // `help` is the family's # HELP text, taken from its first registration.
  //
  // Never returns nullptr. A registration that cannot be exported — a name
  // not matching [a-zA-Z_:][a-zA-Z0-9_:]*, a counter name not ending in
  // _total, a label name not matching [a-zA-Z_][a-zA-Z0-9_]* or starting
  // with __, a label given twice, "le" on a histogram, a name registered
  // before with another type (or, for histograms, other bounds), a name
  // clashing with a histogram's _bucket/_sum/_count — is a programming
  // error: it returns a working metric that is never rendered, keeps the
  // error in status() and renders it as a comment, so that a start-up check
  // of status() (or a test) catches it without the hot path ever testing for
  // null.
  Counter* GetCounter(std::string_view name, std::string_view help, Labels labels = {});
  Gauge* GetGauge(std::string_view name, std::string_view help, Labels labels = {});
  // `upper_bounds`: finite and strictly increasing; +Inf is implicit.
  Histogram* GetHistogram(std::string_view name, std::string_view help,
                          std::vector<double> upper_bounds, Labels labels = {});

  // Adds a callback run at every Render, after the registered families, in
  // the order added, outside the registry's lock (so it may register
  // metrics). It appends whole families: AppendHeader once per family, then
  // AppendSample lines. REQUIRES: its family names are not registered in
  // this Registry nor written by another collector (Prometheus wants one
  // # TYPE per family), and it does not block.
  void AddCollector(std::function<void(std::string* out)> render_lines);

  // The Prometheus text exposition format 0.0.4: families sorted by name,
  // # HELP and # TYPE once per family, series sorted by labels, label values
  // escaped; histograms as cumulative _bucket{le="..."} lines ending with
  // le="+Inf", then _sum and _count. Then the collectors' lines.
  std::string Render() const;

  // OK, or the first registration error (InvalidArgument naming the metric).
  absl::Status status() const;

 private:
  struct Series;
  struct Family;
  // The family for `name`, created if new; nullptr after recording an error.
  Family* FamilyFor(std::string_view name, std::string_view help, MetricType type,
                    const std::vector<double>* bounds, Labels* labels, std::string* key);
  void RecordError(std::string message);

  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Family>, std::less<>> families_;
  std::vector<std::function<void(std::string*)>> collectors_;
  // Metrics handed out for failed registrations: they work but are not rendered.
  std::vector<std::unique_ptr<Counter>> detached_counters_;
  std::vector<std::unique_ptr<Gauge>> detached_gauges_;
  std::vector<std::unique_ptr<Histogram>> detached_histograms_;
  std::vector<std::string> errors_;
};

// Default latency buckets in seconds for request and stage latencies: 5 µs to
// 1 s in 1-2.5-5 steps (17 bounds).
std::vector<double> LatencyBuckets();

// --- Helpers for collectors: each appends whole lines ending in '\n'. ---

// Whether `name` is a valid metric name, [a-zA-Z_:][a-zA-Z0-9_:]*.
bool IsValidMetricName(std::string_view name);
// Whether `name` is a valid label name, [a-zA-Z_][a-zA-Z0-9_]*, not __*.
bool IsValidLabelName(std::string_view name);

// "# HELP <name> <help>\n# TYPE <name> <type>\n", the help's \ and newlines
// escaped (and bytes that are not UTF-8 replaced by U+FFFD).
// REQUIRES: IsValidMetricName(name).
void AppendHeader(std::string* out, std::string_view name, std::string_view help, MetricType type);

// "<name>{<k>="<v>",...} <value>\n" ("<name> <value>" without labels), the
// labels in the given order, values escaped (\\, \", \n; a byte that is not
// UTF-8 becomes U+FFFD). Doubles as the shortest text reading back the same,
// NaN, +Inf, -Inf; integers as integers. REQUIRES: valid metric and label
// names.
void AppendSample(std::string* out, std::string_view name, const Labels& labels, double value);
void AppendIntSample(std::string* out, std::string_view name, const Labels& labels, int64_t value);
template <std::integral T>
void AppendSample(std::string* out, std::string_view name, const Labels& labels, T value) {
  AppendIntSample(out, name, labels, static_cast<int64_t>(value));
}

// A label value with \ " and newline escaped, and each byte that is not
// UTF-8 replaced by U+FFFD (Prometheus refuses a whole scrape over one),
// appended to `out`.
void AppendEscapedLabelValue(std::string* out, std::string_view value);
// A sample value as Prometheus reads it: shortest round-trip decimal, NaN,
// +Inf or -Inf.
void AppendValue(std::string* out, double value);

}  // namespace vigil::monitor

#endif  // VIGIL_MONITOR_METRICS_H_
