// Benchmarks of FeatureEngine::Process, the per-event cost of features when
// serving (bench/README.md says what each figure means, with figures from a
// run):
//
//   memory   bytes of state per entity per window feature, with 1 M distinct
//            entities each seen once: FeatureEngine::Stats().memory_bytes
//            (the engine's own estimate) beside what the process really
//            holds (malloc's bytes in use, and VmRSS from /proc/self/status).
//   latency  bench/features-30.yaml (30 features over user, device, IP and
//            card) on a synthetic exchange stream: whole blocks of calls
//            timed for events/s per core, then, over the same events with a
//            fresh engine, every Process() call timed on its own (p50, p99,
//            p99.9, max) while counting preemptions.
//
// Events are generated as JSON Lines (deterministic seed) and decoded by the
// Validator in blocks, outside the timed region; their string views are
// copied into a per-block arena so that a block of Records stays valid while
// it is processed. Only Process() is inside a timed region. The process is
// single-threaded: scripts/bench.sh pins it to one core with taskset.
//
// Usage: engine_benchmark [--mode all|memory|latency] [--json FILE]
//          [--schema FILE] [--spec FILE] [--users N] [--events N] [--days N]
//          [--entities N] [--seed N]
#include <malloc.h>
#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <numbers>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/time.h"
#include "event/pii.h"
#include "event/record.h"
#include "event/schema.h"
#include "event/validator.h"
#include "feature/engine.h"
#include "feature/spec.h"

#ifndef VIGIL_SOURCE_DIR
#define VIGIL_SOURCE_DIR "."
#endif

namespace vigil::feature {
namespace {

using event::Record;
using event::Validator;
using event::Violation;

// --- options ---------------------------------------------------------------

struct Options {
  std::string mode = "all";
  std::string json;  // results file, or "" for none
  std::string schema = VIGIL_SOURCE_DIR "/bench/exchange-schema.yaml";
  std::string spec = VIGIL_SOURCE_DIR "/bench/features-30.yaml";
  int64_t users = 100'000;
  int64_t events = 1'200'000;
  int64_t days = 9;  // the last (days - 7) are timed; the first 7 fill the 7-day windows
  int64_t entities = 1'000'000;
  uint64_t seed = 20240301;
};

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "engine_benchmark: %s\n", what.c_str());
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(std::string(a) + " needs a value");
      return argv[++i];
    };
    auto number = [&]() -> int64_t {
      const std::string v = value();
      char* end = nullptr;
      const long long n = std::strtoll(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n <= 0)
        Die(std::string(a) + ": not a positive integer: " + v);
      return n;
    };
    if (a == "--mode") {
      o.mode = value();
      if (o.mode != "all" && o.mode != "memory" && o.mode != "latency")
        Die("--mode: all, memory or latency");
    } else if (a == "--json") {
      o.json = value();
    } else if (a == "--schema") {
      o.schema = value();
    } else if (a == "--spec") {
      o.spec = value();
    } else if (a == "--users") {
      o.users = number();
    } else if (a == "--events") {
      o.events = number();
    } else if (a == "--days") {
      o.days = number();
      if (o.days < 8) Die("--days: at least 8 (7 to fill the windows, then the timed days)");
    } else if (a == "--entities") {
      o.entities = number();
    } else if (a == "--seed") {
      o.seed = static_cast<uint64_t>(number());
    } else if (a == "--help" || a == "-h") {
      std::printf(
          "usage: engine_benchmark [--mode all|memory|latency] [--json FILE] [--schema FILE]\n"
          "         [--spec FILE] [--users N] [--events N] [--days N] [--entities N] [--seed N]\n");
      std::exit(0);
    } else {
      Die("unknown argument " + std::string(a) + " (--help)");
    }
  }
  return o;
}

// --- clocks and process memory ----------------------------------------------

int64_t NowNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
int64_t WallNs() { return NowNs(CLOCK_MONOTONIC); }
int64_t CpuNs() { return NowNs(CLOCK_THREAD_CPUTIME_ID); }

// VmRSS of this process in bytes (0 if /proc is not there).
int64_t RssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoll(line.c_str() + 6, nullptr, 10) * 1024;
  }
  return 0;
}

// Times this thread was descheduled against its will (another process took the core).
int64_t InvoluntarySwitches() {
  rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_nivcsw;
}

// Bytes malloc has handed out and not had back (chunks, with their headers):
// in the main arena's heap plus in mmap'ed chunks.
int64_t MallocInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return static_cast<int64_t>(mi.uordblks + mi.hblkhd);
}

// --- deterministic random numbers -----------------------------------------

class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {  // splitmix64
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1p-53; }  // [0, 1)
  uint64_t Below(uint64_t n) { return Next() % n; }
  double Normal() {  // Box–Muller
    const double u = 1.0 - Uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * std::numbers::pi * Uniform());
  }

 private:
  uint64_t s_;
};

uint64_t Mix(uint64_t x) {
  Rng r(x);
  return r.Next();
}

// --- the synthetic exchange -------------------------------------------------

// Activity follows a Zipf-like law with a flattened head: user of rank r
// (0-based) has weight 1 / (r + kZipfOffset)^kZipfExponent. With 100 k users
// the busiest account makes about 0.2 % of the events (a trading bot), the
// median one a handful over the period.
constexpr double kZipfExponent = 1.1;
constexpr double kZipfOffset = 100;
// 2024-03-01T00:00:00Z.
constexpr int64_t kStartMs = 1709251200000;

struct Asset {
  const char* name;
  double usd;  // USD per unit
  int decimals;
  double share;
};
constexpr Asset kAssets[] = {
    {"USD", 1, 2, 0.30},     {"USDT", 1, 2, 0.30},   {"EUR", 1.08, 2, 0.10},
    {"BTC", 60000, 8, 0.20}, {"ETH", 3000, 8, 0.10},
};

// Writes JSON Lines events in time order. Every user has one to three own
// devices, a home IP address, and most have a card; events also come through
// shared carrier (CGNAT) and VPN addresses, a few accounts share "farm"
// devices, and a small ring deposits with a pool of stolen cards.
class Exchange {
 public:
  Exchange(int64_t users, int64_t events, int64_t days, uint64_t seed)
      : users_(users),
        events_(events),
        rng_(seed),
        cdf_(static_cast<size_t>(users)),
        counts_(static_cast<size_t>(users)) {
    double total = 0;
    for (int64_t r = 0; r < users; ++r) {
      total += 1.0 / std::pow(static_cast<double>(r) + kZipfOffset, kZipfExponent);
      cdf_[static_cast<size_t>(r)] = total;
    }
    for (double& c : cdf_) c /= total;
    mean_gap_ms_ = static_cast<double>(days * core::kMsPerDay) / static_cast<double>(events);
    t_ = kStartMs;
  }

  int64_t generated() const { return n_; }
  int64_t time_ms() const { return t_; }
  const std::vector<int64_t>& counts() const { return counts_; }
  double top_share() const { return cdf_[0]; }

  // Appends the next event (one line, no newline) to `out`; returns its time.
  int64_t Next(std::string* out) {
    t_ += static_cast<int64_t>(-std::log(1.0 - rng_.Uniform()) * mean_gap_ms_);
    const int64_t u = static_cast<int64_t>(
        std::upper_bound(cdf_.begin(), cdf_.end(), rng_.Uniform()) - cdf_.begin());
    const int64_t user = std::min(u, users_ - 1);
    ++counts_[static_cast<size_t>(user)];
    const uint64_t h = Mix(static_cast<uint64_t>(user));
    const double pick = rng_.Uniform();
    const char* type = pick < 0.45 ? "login" : pick < 0.80 ? "deposit" : "withdrawal";
    char buf[512];
    int n =
        std::snprintf(buf, sizeof buf,
                      "{\"event_type\":\"%s\",\"event_id\":\"e%" PRId64 "\",\"time\":\"", type, n_);
    out->append(buf, static_cast<size_t>(n));
    core::AppendTimestamp(t_, out);
    n = std::snprintf(buf, sizeof buf, "\",\"user_id\":\"u%" PRId64 "\"", user);
    out->append(buf, static_cast<size_t>(n));

    // Device: own ones; 1 % of accounts also use one of 40 shared farm devices.
    const bool api = type[0] != 'l' && rng_.Uniform() < 0.10;
    if (!api) {
      if (h % 100 == 0 && rng_.Uniform() < 0.5) {
        n = std::snprintf(buf, sizeof buf, ",\"device_id\":\"f%" PRIu64 "\"", (h >> 8) % 40);
      } else {
        const uint64_t own = 1 + (h % 3 == 0) + (h % 7 == 0);
        n = std::snprintf(buf, sizeof buf, ",\"device_id\":\"d%" PRId64 "-%" PRIu64 "\"", user,
                          rng_.Below(own));
      }
      out->append(buf, static_cast<size_t>(n));
    }
    // IP: home 70 %, one of 500 carrier addresses 25 %, one of 50 VPN exits 5 %.
    const double ip = rng_.Uniform();
    if (ip < 0.70) {
      n = std::snprintf(buf, sizeof buf, ",\"ip\":\"10.%" PRId64 ".%" PRId64 ".%" PRId64 "\"",
                        (user >> 16) & 255, (user >> 8) & 255, user & 255);
    } else if (ip < 0.95) {
      const uint64_t k = rng_.Below(500);
      n = std::snprintf(buf, sizeof buf, ",\"ip\":\"100.64.%" PRIu64 ".%" PRIu64 "\"", k / 250,
                        k % 250 + 1);
    } else {
      n = std::snprintf(buf, sizeof buf, ",\"ip\":\"185.220.101.%" PRIu64 "\"", rng_.Below(50) + 1);
    }
    out->append(buf, static_cast<size_t>(n));

    if (type[0] == 'l') {
      n = std::snprintf(buf, sizeof buf, ",\"success\":%s}",
                        rng_.Uniform() < 0.93 ? "true" : "false");
      out->append(buf, static_cast<size_t>(n));
    } else {
      if (type[0] == 'd') {
        const bool has_card = h % 10 < 6;
        const bool ring = h % 50 == 7;
        const double m = rng_.Uniform();
        if ((has_card || ring) && m < 0.6) {
          if (ring) {
            n = std::snprintf(buf, sizeof buf, ",\"method\":\"card\",\"card_id\":\"s%" PRIu64 "\"",
                              rng_.Below(200));
          } else {
            n = std::snprintf(buf, sizeof buf, ",\"method\":\"card\",\"card_id\":\"c%" PRId64 "\"",
                              user);
          }
        } else {
          n = std::snprintf(buf, sizeof buf, ",\"method\":\"%s\"", m < 0.8 ? "bank" : "crypto");
        }
      } else {
        n = std::snprintf(buf, sizeof buf, ",\"wallet\":\"w%" PRId64 "-%" PRIu64 "\"", user,
                          rng_.Below(2));
      }
      out->append(buf, static_cast<size_t>(n));
      double a = rng_.Uniform();
      const Asset* asset = &kAssets[0];
      for (const Asset& x : kAssets) {
        asset = &x;
        if (a < x.share) break;
        a -= x.share;
      }
      // Log-normal amounts: median about 90 USD, a long tail.
      const double usd = std::round(std::exp(4.5 + 1.3 * rng_.Normal()) * 100) / 100;
      n = std::snprintf(buf, sizeof buf, ",\"amount\":%.*f,\"asset\":\"%s\",\"amount_usd\":%.2f}",
                        asset->decimals, usd / asset->usd, asset->name, usd);
      out->append(buf, static_cast<size_t>(n));
    }
    ++n_;
    return t_;
  }

 private:
  int64_t users_;
  int64_t events_;
  Rng rng_;
  std::vector<double> cdf_;
  std::vector<int64_t> counts_;
  double mean_gap_ms_ = 0;
  int64_t t_ = 0;
  int64_t n_ = 0;
};

// simdjson may read this far past a record (Validator::DecodeJson REQUIRES).
constexpr size_t kJsonPadding = 64;

// A block of decoded events whose string views point into the block's own
// arena, so that all of them stay valid until the block is refilled.
class Block {
 public:
  static constexpr size_t kSize = 4096;

  Block(std::shared_ptr<const event::Schema> schema, const event::PiiHasher* hasher)
      : validator_(std::move(schema), hasher), records_(kSize) {}

  // Decodes up to kSize events from `gen`, stopping before the first event at
  // or after `end_ms` (which is then kept for the next call). Returns the
  // number decoded.
  size_t Fill(Exchange& gen, int64_t end_ms, int64_t limit) {
    json_.clear();
    spans_.clear();
    if (!pending_.empty()) {
      if (pending_t_ >= end_ms) return 0;
      spans_.emplace_back(0, pending_.size());
      json_ += pending_;
      json_ += '\n';
      pending_.clear();
    }
    while (spans_.size() < kSize && gen.generated() < limit) {
      std::string line;
      const int64_t t = gen.Next(&line);
      if (t >= end_ms) {
        pending_ = std::move(line);
        pending_t_ = t;
        break;
      }
      spans_.emplace_back(json_.size(), line.size());
      json_ += line;
      json_ += '\n';
    }
    json_.append(kJsonPadding, ' ');
    // Every string view of a record is at most as long as its line, plus
    // numbers re-printed by the decoder (a few dozen bytes each).
    arena_.clear();
    arena_.reserve(2 * json_.size() + spans_.size() * 256);
    const char* const arena_start = arena_.data();
    for (size_t i = 0; i < spans_.size(); ++i) {
      const std::string_view line(json_.data() + spans_[i].first, spans_[i].second);
      Record& rec = records_[i];
      const size_t readable = static_cast<size_t>(json_.data() + json_.size() - line.data());
      if (!validator_.DecodeJson(line, readable, &rec, &violations_)) {
        Die("generated event rejected: " + std::string(line) + ": " +
            (violations_.empty() ? "?" : violations_[0].reason));
      }
      rec.raw = {};
      rec.event_id = Keep(rec.event_id);
      // Only the type's own fields are reset by a decode: values beyond them,
      // and absent ones, may keep views from an earlier record.
      for (size_t f = 0; f < rec.values.size(); ++f) {
        event::Value& v = rec.values[f];
        v.text = f < rec.type->fields.size() && v.present() ? Keep(v.text) : std::string_view();
      }
    }
    if (arena_.data() != arena_start) Die("block arena reallocated: views would dangle");
    return spans_.size();
  }

  const Record& operator[](size_t i) const { return records_[i]; }

 private:
  std::string_view Keep(std::string_view s) {
    const size_t at = arena_.size();
    arena_.append(s);
    return {arena_.data() + at, s.size()};
  }

  Validator validator_;
  std::vector<Record> records_;
  std::vector<Violation> violations_;
  std::string json_;
  std::vector<std::pair<size_t, size_t>> spans_;
  std::string arena_;
  std::string pending_;
  int64_t pending_t_ = 0;
};

std::shared_ptr<const event::Schema> LoadSchema(const std::string& path) {
  auto s = event::Schema::Load(path);
  if (!s.ok()) Die(std::string(s.status().message()));
  return *s;
}

std::shared_ptr<const FeatureSpec> LoadSpec(const std::string& path,
                                            std::shared_ptr<const event::Schema> schema) {
  auto s = FeatureSpec::Load(path, std::move(schema));
  if (!s.ok()) Die(std::string(s.status().message()));
  return *s;
}

int64_t WindowFeatures(const FeatureSpec& spec) {
  int64_t n = 0;
  for (const FeatureDef& f : spec.features) n += f.is_aggregate && f.window_ms > 0;
  return n;
}

// --- memory ------------------------------------------------------------------

struct MemoryResult {
  std::string name;
  int64_t entities = 0;
  int64_t window_features = 0;
  int64_t cursors = 0;   // distinct (lag, window) pairs of the stream
  double insert_ns = 0;  // Process() per new entity, wall
  EngineStats stats;
  int64_t malloc_delta = 0;
  int64_t rss_delta = 0;  // after malloc_trim(0)
  int64_t rss_delta_untrimmed = 0;
};

// One deposit per entity, a distinct user each, 10 ms apart (1 M span
// under 3 hours: every entry stays inside the 1-day window).
MemoryResult MeasureMemory(const std::string& name, std::string_view yaml, int64_t cursors,
                           std::shared_ptr<const event::Schema> schema, int64_t entities) {
  auto spec_or = FeatureSpec::LoadString(yaml, name, schema);
  if (!spec_or.ok()) Die(std::string(spec_or.status().message()));
  std::shared_ptr<const FeatureSpec> spec = *spec_or;
  const event::PiiHasher hasher("engine-benchmark-key");
  Validator validator(schema, &hasher);
  Record rec;
  std::vector<Violation> violations;
  std::vector<double> out(spec->features.size());
  std::string line;
  line.reserve(512);

  MemoryResult r;
  r.name = name;
  r.entities = entities;
  r.window_features = WindowFeatures(*spec);
  r.cursors = cursors;
  malloc_trim(0);
  const int64_t heap0 = MallocInUse();
  const int64_t rss0 = RssBytes();
  auto engine = std::make_unique<FeatureEngine>(spec);
  int64_t process_ns = 0;
  for (int64_t i = 0; i < entities; ++i) {
    line.clear();
    line += "{\"event_type\":\"deposit\",\"event_id\":\"m";
    line += std::to_string(i);
    line += "\",\"time\":\"";
    core::AppendTimestamp(kStartMs + 10 * i, &line);
    line += "\",\"user_id\":\"u";
    line += std::to_string(i);
    line += "\",\"ip\":\"10.0.0.1\",\"method\":\"bank\",\"amount\":";
    line += std::to_string(10 + i % 1000);
    line += ",\"asset\":\"USD\",\"amount_usd\":";
    line += std::to_string(10 + i % 1000);
    line += "}";
    const size_t size = line.size();
    line.append(kJsonPadding, ' ');
    if (!validator.DecodeJson(std::string_view(line.data(), size), line.size(), &rec,
                              &violations)) {
      Die("memory: event rejected: " + line);
    }
    const int64_t t0 = WallNs();
    engine->Process(rec, out);
    process_ns += WallNs() - t0;
  }
  r.stats = engine->Stats();
  r.rss_delta_untrimmed = RssBytes() - rss0;
  r.malloc_delta = MallocInUse() - heap0;
  malloc_trim(0);
  r.rss_delta = RssBytes() - rss0;
  r.insert_ns = static_cast<double>(process_ns) / static_cast<double>(entities);
  if (r.stats.entities != entities) {
    Die("memory: " + std::to_string(r.stats.entities) + " entities, expected " +
        std::to_string(entities));
  }
  engine.reset();
  return r;
}

double PerEntityFeature(int64_t bytes, const MemoryResult& r) {
  return static_cast<double>(bytes) / static_cast<double>(r.entities) /
         static_cast<double>(r.window_features);
}

double PerEntity(int64_t bytes, const MemoryResult& r) {
  return static_cast<double>(bytes) / static_cast<double>(r.entities);
}

std::vector<MemoryResult> RunMemory(const Options& o) {
  auto schema = LoadSchema(o.schema);
  std::vector<MemoryResult> results;
  results.push_back(MeasureMemory("count-mean-1d", R"(
name: memory-2
score_on: [deposit]
features:
  - {name: n_1d, agg: count, key: user_id, window: 1d}
  - {name: mean_1d, agg: mean, of: amount_usd, key: user_id, window: 1d}
)",
                                  1, schema, o.entities));
  results.push_back(MeasureMemory("4-aggs-3-windows", R"(
name: memory-12
score_on: [deposit]
features:
  - {name: n_1h, agg: count, key: user_id, window: 1h}
  - {name: sum_1h, agg: sum, of: amount_usd, key: user_id, window: 1h}
  - {name: mean_1h, agg: mean, of: amount_usd, key: user_id, window: 1h}
  - {name: max_1h, agg: max, of: amount_usd, key: user_id, window: 1h}
  - {name: n_1d, agg: count, key: user_id, window: 1d}
  - {name: sum_1d, agg: sum, of: amount_usd, key: user_id, window: 1d}
  - {name: mean_1d, agg: mean, of: amount_usd, key: user_id, window: 1d}
  - {name: max_1d, agg: max, of: amount_usd, key: user_id, window: 1d}
  - {name: n_7d, agg: count, key: user_id, window: 7d}
  - {name: sum_7d, agg: sum, of: amount_usd, key: user_id, window: 7d}
  - {name: mean_7d, agg: mean, of: amount_usd, key: user_id, window: 7d}
  - {name: max_7d, agg: max, of: amount_usd, key: user_id, window: 7d}
)",
                                  3, schema, o.entities));

  std::printf("FeatureEngine memory — %" PRId64
              " distinct entities (key user_id), one deposit each\n",
              o.entities);
  std::printf("  bytes per entity per window feature (per entity in brackets):\n");
  std::printf("  %-18s %8s %8s  %16s %16s %16s  %10s\n", "spec", "features", "windows",
              "Stats() estimate", "malloc in use", "VmRSS delta", "Process()");
  for (const MemoryResult& r : results) {
    auto cell = [&](int64_t bytes) {
      char b[64];
      std::snprintf(b, sizeof b, "%.0f (%.0f)", PerEntityFeature(bytes, r), PerEntity(bytes, r));
      return std::string(b);
    };
    std::printf("  %-18s %8" PRId64 " %8" PRId64 "  %16s %16s %16s  %7.0f ns\n", r.name.c_str(),
                r.window_features, r.cursors, cell(r.stats.memory_bytes).c_str(),
                cell(r.malloc_delta).c_str(), cell(r.rss_delta).c_str(), r.insert_ns);
  }
  std::printf("  (VmRSS after malloc_trim(0); before it: ");
  for (size_t i = 0; i < results.size(); ++i) {
    std::printf("%s%.0f", i ? ", " : "", PerEntity(results[i].rss_delta_untrimmed, results[i]));
  }
  std::printf(" bytes per entity. Process(): wall time per new entity)\n");
  return results;
}

// --- latency and throughput ---------------------------------------------------

struct Percentiles {
  int64_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
  int64_t over_1ms = 0;  // calls that took a millisecond or more
};

Percentiles Summarise(std::vector<int32_t>& ns) {
  Percentiles p;
  p.n = static_cast<int64_t>(ns.size());
  if (ns.empty()) return p;
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    const size_t i =
        std::min(ns.size() - 1, static_cast<size_t>(q * static_cast<double>(ns.size())));
    return static_cast<double>(ns[i]);
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  p.max = static_cast<double>(ns.back());
  double sum = 0;
  for (int32_t v : ns) {
    sum += v;
    p.over_1ms += v >= 1'000'000;
  }
  p.mean = sum / static_cast<double>(ns.size());
  return p;
}

struct LatencyResult {
  int64_t events = 0, warmup_events = 0, timed_events = 0, timed_scored = 0;
  int64_t active_users = 0, top_user_events = 0, median_user_events = 0;
  double clock_overhead_ns = 0;
  int64_t preempted = 0;  // involuntary context switches while calls were timed one by one
  Percentiles all, scored;
  double throughput_wall_s = 0, throughput_cpu_s = 0;
  double warmup_wall_s = 0;
  // malloc's bytes in use at the end of the pass less at its start: the
  // engine, plus the block's buffers (a few MB).
  int64_t malloc_delta = 0;
  EngineStats stats;
  double checksum = 0;
};

// One pass over the stream with a fresh engine: warm-up until `timed_from`
// (untimed), then every remaining event either timed call by call (`lat`
// given) or in whole blocks. Returns the engine's stats.
EngineStats Pass(const Options& o, std::shared_ptr<const FeatureSpec> spec, int64_t timed_from,
                 std::vector<int32_t>* lat_all, std::vector<int32_t>* lat_scored,
                 LatencyResult* res) {
  const event::PiiHasher hasher("engine-benchmark-key");
  Exchange gen(o.users, o.events, o.days, o.seed);
  Block block(spec->schema, &hasher);
  const int64_t heap0 = MallocInUse();
  FeatureEngine engine(spec);
  std::vector<double> out(spec->features.size());
  const std::span<double> outs(out);

  // Warm-up.
  int64_t warm_ns = 0, warm_events = 0;
  int64_t n;
  while ((n = static_cast<int64_t>(block.Fill(gen, timed_from, o.events))) > 0) {
    const int64_t t0 = WallNs();
    for (int64_t i = 0; i < n; ++i) engine.Process(block[static_cast<size_t>(i)], outs);
    warm_ns += WallNs() - t0;
    warm_events += n;
  }
  if (lat_all == nullptr) {
    res->warmup_events = warm_events;
    res->warmup_wall_s = static_cast<double>(warm_ns) * 1e-9;
  }

  int64_t wall_ns = 0, cpu_ns = 0, timed = 0, scored = 0;
  double checksum = 0;
  const int64_t switches0 = InvoluntarySwitches();
  while ((n = static_cast<int64_t>(block.Fill(gen, INT64_MAX, o.events))) > 0) {
    if (lat_all != nullptr) {
      for (int64_t i = 0; i < n; ++i) {
        const Record& rec = block[static_cast<size_t>(i)];
        const int64_t t0 = WallNs();
        const FeatureEngine::Result r = engine.Process(rec, outs);
        const int64_t dt = WallNs() - t0;
        const int32_t d = static_cast<int32_t>(std::min<int64_t>(dt, INT32_MAX));
        lat_all->push_back(d);
        if (r == FeatureEngine::Result::kScored) {
          lat_scored->push_back(d);
          ++scored;
          for (double v : out) checksum += std::isnan(v) ? 0 : v;
        }
      }
    } else {
      const int64_t c0 = CpuNs();
      const int64_t t0 = WallNs();
      for (int64_t i = 0; i < n; ++i) engine.Process(block[static_cast<size_t>(i)], outs);
      wall_ns += WallNs() - t0;
      cpu_ns += CpuNs() - c0;
    }
    timed += n;
  }
  if (lat_all == nullptr) {
    res->malloc_delta = MallocInUse() - heap0;
    res->timed_events = timed;
    res->throughput_wall_s = static_cast<double>(wall_ns) * 1e-9;
    res->throughput_cpu_s = static_cast<double>(cpu_ns) * 1e-9;
    res->events = gen.generated();
    std::vector<int64_t> counts;
    for (int64_t c : gen.counts()) {
      if (c > 0) counts.push_back(c);
    }
    std::sort(counts.begin(), counts.end());
    res->active_users = static_cast<int64_t>(counts.size());
    res->top_user_events = counts.empty() ? 0 : counts.back();
    res->median_user_events = counts.empty() ? 0 : counts[counts.size() / 2];
  } else {
    res->timed_scored = scored;
    res->preempted = InvoluntarySwitches() - switches0;
    res->checksum = checksum;
  }
  return engine.Stats();
}

// Cost of the two clock reads around each call: the median of back-to-back pairs.
double ClockOverheadNs() {
  std::vector<int32_t> d(100'000);
  for (int32_t& x : d) {
    const int64_t t0 = WallNs();
    x = static_cast<int32_t>(WallNs() - t0);
  }
  std::sort(d.begin(), d.end());
  return d[d.size() / 2];
}

LatencyResult RunLatency(const Options& o) {
  auto schema = LoadSchema(o.schema);
  auto spec = LoadSpec(o.spec, schema);
  LatencyResult res;
  const int64_t timed_from = kStartMs + 7 * core::kMsPerDay;
  res.clock_overhead_ns = ClockOverheadNs();

  // Throughput first: whole blocks of calls, no clock inside.
  Pass(o, spec, timed_from, nullptr, nullptr, &res);
  // Latency: the same events, a fresh engine, each call timed.
  std::vector<int32_t> all, scored;
  all.reserve(static_cast<size_t>(res.timed_events));
  scored.reserve(static_cast<size_t>(res.timed_events));
  res.stats = Pass(o, spec, timed_from, &all, &scored, &res);
  res.all = Summarise(all);
  res.scored = Summarise(scored);

  const int64_t features = static_cast<int64_t>(spec->features.size());
  const double eps_wall = static_cast<double>(res.timed_events) / res.throughput_wall_s;
  const double eps_cpu = static_cast<double>(res.timed_events) / res.throughput_cpu_s;
  std::printf("FeatureEngine::Process — %s: %" PRId64 " features (%zu streams)\n", o.spec.c_str(),
              features, spec->streams.size());
  std::printf("  stream: %" PRId64 " events over %" PRId64 " days, %" PRId64
              " active users of %" PRId64 " (Zipf-like: busiest %" PRId64 " events, median %" PRId64
              "), seed %" PRIu64 "\n",
              res.events, o.days, res.active_users, o.users, res.top_user_events,
              res.median_user_events, o.seed);
  std::printf("  warm-up: the first 7 days, %" PRId64
              " events (%.2f M events/s while state grows);"
              " timed: the last %" PRId64 " days, %" PRId64 " events, %" PRId64 " scored\n",
              res.warmup_events, static_cast<double>(res.warmup_events) / res.warmup_wall_s / 1e6,
              o.days - 7, res.timed_events, res.timed_scored);
  std::printf("  state at the end: %" PRId64 " entities, %" PRId64
              " entries; Stats() estimate %.1f MB,"
              " malloc in use %.1f MB\n",
              res.stats.entities, res.stats.entries,
              static_cast<double>(res.stats.memory_bytes) / 1e6,
              static_cast<double>(res.malloc_delta) / 1e6);
  std::printf(
      "  throughput, one core: %.2f M events/s wall, %.2f M events/s CPU"
      " (%.0f ns of CPU per event; blocks of %zu calls)\n",
      eps_wall / 1e6, eps_cpu / 1e6, 1e9 / eps_cpu, Block::kSize);
  std::printf(
      "  latency per call, ns (clock pair costs %.0f ns, included; the process was preempted "
      "%" PRId64 " times meanwhile):\n",
      res.clock_overhead_ns, res.preempted);
  std::printf("  %-28s %9s %8s %8s %8s %8s %9s %8s %7s\n", "", "calls", "p50", "p90", "p99",
              "p99.9", "max", "mean", ">=1ms");
  const std::pair<const char*, const Percentiles*> rows[] = {
      {"scored (deposit, withdrawal)", &res.scored}, {"all (logins too)", &res.all}};
  for (const auto& [label, p] : rows) {
    std::printf("  %-28s %9" PRId64 " %8.0f %8.0f %8.0f %8.0f %9.0f %8.0f %7" PRId64 "\n", label,
                p->n, p->p50, p->p90, p->p99, p->p999, p->max, p->mean, p->over_1ms);
  }
  std::printf("  feature checksum %.6e (same seed, same engine: same value)\n", res.checksum);
  return res;
}

// --- JSON ----------------------------------------------------------------------

void WriteJson(const Options& o, const std::vector<MemoryResult>& mem, const LatencyResult* lat) {
  FILE* f = std::fopen(o.json.c_str(), "w");
  if (!f) Die(o.json + ": cannot create: " + std::strerror(errno));
  std::string load;
  {
    std::ifstream la("/proc/loadavg");
    std::string a, b, c;
    if (la >> a >> b >> c) load = a + " " + b + " " + c;
  }
  std::fprintf(f, "{\n  \"benchmark\": \"engine_benchmark\",\n");
  std::fprintf(f, "  \"load_at_end\": \"%s\",\n", load.c_str());
  std::fprintf(f, "  \"memory\": [");
  for (size_t i = 0; i < mem.size(); ++i) {
    const MemoryResult& r = mem[i];
    std::fprintf(
        f,
        "%s\n    {\"spec\": \"%s\", \"entities\": %" PRId64 ", \"window_features\": %" PRId64
        ", \"windows\": %" PRId64 ", \"entries\": %" PRId64
        ",\n"
        "     \"stats_memory_bytes\": %" PRId64 ", \"malloc_delta_bytes\": %" PRId64
        ", \"rss_delta_bytes\": %" PRId64 ", \"rss_delta_untrimmed_bytes\": %" PRId64
        ",\n"
        "     \"bytes_per_entity_per_window_feature\": {\"stats\": %.1f, \"malloc\": %.1f, "
        "\"rss\": %.1f},\n     \"process_ns_per_new_entity\": %.1f}",
        i ? "," : "", r.name.c_str(), r.entities, r.window_features, r.cursors, r.stats.entries,
        r.stats.memory_bytes, r.malloc_delta, r.rss_delta, r.rss_delta_untrimmed,
        PerEntityFeature(r.stats.memory_bytes, r), PerEntityFeature(r.malloc_delta, r),
        PerEntityFeature(r.rss_delta, r), r.insert_ns);
  }
  std::fprintf(f, "%s],\n", mem.empty() ? "" : "\n  ");
  if (lat) {
    auto pct = [&](const Percentiles& p) {
      char b[384];
      std::snprintf(
          b, sizeof b,
          "{\"calls\": %" PRId64
          ", \"p50_ns\": %.0f, \"p90_ns\": %.0f, \"p99_ns\": %.0f, "
          "\"p999_ns\": %.0f, \"max_ns\": %.0f, \"mean_ns\": %.1f, \"calls_over_1ms\": %" PRId64
          "}",
          p.n, p.p50, p.p90, p.p99, p.p999, p.max, p.mean, p.over_1ms);
      return std::string(b);
    };
    std::fprintf(f, "  \"latency\": {\n");
    std::fprintf(f,
                 "    \"spec\": \"%s\", \"users\": %" PRId64 ", \"events\": %" PRId64
                 ", \"days\": %" PRId64 ", \"seed\": %" PRIu64 ",\n",
                 o.spec.c_str(), o.users, lat->events, o.days, o.seed);
    std::fprintf(f,
                 "    \"warmup_events\": %" PRId64 ", \"timed_events\": %" PRId64
                 ", \"timed_scored\": %" PRId64 ",\n",
                 lat->warmup_events, lat->timed_events, lat->timed_scored);
    std::fprintf(f, "    \"events_per_s_wall\": %.0f, \"events_per_s_cpu\": %.0f,\n",
                 static_cast<double>(lat->timed_events) / lat->throughput_wall_s,
                 static_cast<double>(lat->timed_events) / lat->throughput_cpu_s);
    std::fprintf(
        f, "    \"clock_overhead_ns\": %.0f, \"involuntary_context_switches\": %" PRId64 ",\n",
        lat->clock_overhead_ns, lat->preempted);
    std::fprintf(f, "    \"scored\": %s,\n", pct(lat->scored).c_str());
    std::fprintf(f, "    \"all\": %s,\n", pct(lat->all).c_str());
    std::fprintf(
        f,
        "    \"entities\": %" PRId64 ", \"entries\": %" PRId64 ", \"stats_memory_bytes\": %" PRId64
        ", \"malloc_delta_bytes\": %" PRId64 "\n  }\n",
        lat->stats.entities, lat->stats.entries, lat->stats.memory_bytes, lat->malloc_delta);
  } else {
    std::fprintf(f, "  \"latency\": null\n");
  }
  std::fprintf(f, "}\n");
  if (std::fclose(f) != 0) Die(o.json + ": write failed");
}

}  // namespace
}  // namespace vigil::feature

int main(int argc, char** argv) {
  using namespace vigil::feature;
  const Options o = ParseOptions(argc, argv);
  std::vector<MemoryResult> mem;
  std::unique_ptr<LatencyResult> lat;
  // Memory first, in a fresh process, so that the RSS delta is the engine's.
  if (o.mode == "all" || o.mode == "memory") {
    mem = RunMemory(o);
    std::printf("\n");
  }
  if (o.mode == "all" || o.mode == "latency") lat = std::make_unique<LatencyResult>(RunLatency(o));
  if (!o.json.empty()) WriteJson(o, mem, lat.get());
  return 0;
}
