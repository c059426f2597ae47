// Google Benchmark of vigil::Engine::Decide — the whole decision pipeline of
// `vigil serve` without HTTP (parse, validate, features, model, policy, the
// answer document, the retry memory) — on the exchange example, one thread.
// bench/serve.sh runs it (scripts/bench.sh through it); the HTTP figures
// come from the same script.
//
//   BM_Decide/exchange       examples/exchange as configured (123 trees)
//   BM_Decide/<name>         the same with VIGIL_BENCH_MODEL (a bundle) as the
//                            champion of every scored type (vigil serve --model)
//
// The stream: the exchange simulator (src/sim, as `vigil simulate --users
// 2000 --days 14`), generated in-process. The first VIGIL_BENCH_WARM_DAYS
// days (default 7) warm the feature state up untimed; every event of the
// remaining days is timed, one Decide at a time, between two steady_clock
// reads, in stream order (logins and other unscored events included: they
// build the state scored events read). Counters: p50/p99/p99.9/max in µs for
// scored events (the decisions a caller waits for) and for all events, the
// mean per stage of a scored decision, events/s per core (events over the sum
// of the timed calls), and how often the thread was preempted meanwhile (on a
// shared machine a preemption shows up in a sample as milliseconds) and how
// many page faults the timed calls took (on a VM, 10 µs or more each).
//
// The engine is opened offline (EngineOptions::offline: no store, no decision
// log, no event log), so nothing is written; the retry memory is kept, as in
// `vigil serve`, and holds 10,000 decisions (limits.recent_decisions; the
// default is 100,000): full before the warm-up ends, as on a server that has
// run a while, so that each decision replaces the oldest there (a memory
// still filling would measure a cheaper insert instead). The memory is set
// up as `vigil serve` has it under bench/serve.sh: jemalloc with vigil's
// options (vigil_jemalloc) and VIGIL_BENCH_PRETOUCH_MB pretouched
// (limits.pretouch_mb).
//
// The machine's own stalls: before the timed run, one second of reading the
// clock in a loop on the same core counts the gaps of 20 µs or more (on the
// benchmark VM, about a thousand a second of some 40 µs each: the host's
// timer interrupts). A call of t µs meets one with a probability of about
// t × rate (the summary prints it for the mean scored call), and a scored
// p99 near 50 µs there is mostly calls that did.
//
// Environment: VIGIL_BENCH_USERS (2000), VIGIL_BENCH_DAYS (14),
// VIGIL_BENCH_WARM_DAYS (7), VIGIL_BENCH_MODEL (a bundle directory, optional),
// VIGIL_BENCH_MODEL_NAME (its label, default "override"),
// VIGIL_BENCH_PRETOUCH_MB (1024; 0: off). Each benchmark
// runs exactly once over the stream (Iterations = timed events).
#include <benchmark/benchmark.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/memory.h"
#include "core/time.h"
#include "sim/simulator.h"
#include "vigil/engine.h"

#ifndef VIGIL_SOURCE_DIR
#error "VIGIL_SOURCE_DIR must point at the repository (CMake defines it)"
#endif

namespace {

// limits.recent_decisions: fewer than the warm-up's scored events.
constexpr size_t kRecentDecisions = 10000;

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoll(v, nullptr, 10) : fallback;
}

struct Stream {
  std::vector<std::string> warm;   // untimed, in order
  std::vector<std::string> timed;  // timed, in order
  std::string config_path;
};

// The simulated stream, split at the first event of day `warm_days`.
const Stream& GetStream() {
  static Stream* s = [] {
    auto* s = new Stream;
    vigil::sim::SimConfig c;
    c.users = EnvInt("VIGIL_BENCH_USERS", 2000);
    c.days = EnvInt("VIGIL_BENCH_DAYS", 14);
    c.seed = 1;
    const int64_t split_ms = c.start_ms + EnvInt("VIGIL_BENCH_WARM_DAYS", 7) * 86400000;
    bool timed = false;
    vigil::sim::SimulateTo(c, [&](std::string_view line) {
      // Events are in time order: every one from the first at or after the split is timed.
      if (!timed) {
        auto p = line.find("\"time\":\"");
        if (p != std::string_view::npos) {
          auto q = line.find('"', p + 8);
          auto t = vigil::core::ParseTimestamp(line.substr(p + 8, q - (p + 8)));
          timed = t.ok() && *t >= split_ms;
        }
      }
      (timed ? s->timed : s->warm).emplace_back(line);
    });
    // A vigil.yaml over examples/exchange with absolute paths, in a temp folder.
    char tmpl[] = "/tmp/vigil-engine-bench.XXXXXX";
    const char* dir = mkdtemp(tmpl);
    if (!dir) return s;
    const std::string ex = std::string(VIGIL_SOURCE_DIR) + "/examples/exchange";
    const std::string d = dir;
    s->config_path = d + "/vigil.yaml";
    std::ofstream f(s->config_path);
    f << "schema: " << ex << "/schema.yaml\nfeatures: " << ex << "/features.yaml\npolicy: " << ex
      << "/policy.yaml\nmodels:\n  withdrawal:\n    champion: {name: exchange, bundle: " << ex
      << "/model}\n    holdout: 0.01\n";
    for (const char* t : {"deposit", "trade", "promo_redeem", "signup", "api_key_create"}) {
      f << "  " << t << ": {champion: {name: exchange, bundle: " << ex << "/model}}\n";
    }
    f << "store: sqlite:" << d << "/var/vigil.db\njournal: " << d << "/var/journal.jsonl\n"
      << "event_log: {dir: " << d << "/var/eventlog}\ndead_letter: " << d
      << "/var/dead-letter.jsonl\n"
      << "keys_file: " << d << "/var/keys.txt\nlisten: 127.0.0.1:0\nreasons: 3\n"
      << "limits: {recent_decisions: " << kRecentDecisions << "}\n";
    return s;
  }();
  return *s;
}

double Percentile(const std::vector<int64_t>& sorted_ns, double q) {
  if (sorted_ns.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted_ns.size() - 1) + 0.5);
  return static_cast<double>(sorted_ns[std::min(i, sorted_ns.size() - 1)]) / 1e3;
}

// Gaps of at least 20 µs between consecutive clock reads over `seconds` of
// spinning on this thread: how often the machine takes the core away
// (interrupts, the host), and the median gap.
struct Stalls {
  double per_s = 0;
  double median_us = 0;
};
Stalls MeasureStalls(double seconds) {
  using Clock = std::chrono::steady_clock;
  std::vector<int64_t> gaps_ns;
  gaps_ns.reserve(1 << 16);
  const auto start = Clock::now();
  const auto end =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto prev = start;
  while (prev < end) {
    const auto t = Clock::now();
    const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t - prev).count();
    if (ns >= 20000 && gaps_ns.size() < gaps_ns.capacity()) gaps_ns.push_back(ns);
    prev = t;
  }
  Stalls s;
  s.per_s = static_cast<double>(gaps_ns.size()) / seconds;
  if (!gaps_ns.empty()) {
    std::nth_element(gaps_ns.begin(), gaps_ns.begin() + gaps_ns.size() / 2, gaps_ns.end());
    s.median_us = static_cast<double>(gaps_ns[gaps_ns.size() / 2]) / 1e3;
  }
  return s;
}

rusage ThreadUsage() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u;
}

// What main() prints after the run: one summary line per benchmark.
std::vector<std::string>* Summaries() {
  static auto* v = new std::vector<std::string>;
  return v;
}

void BM_Decide(benchmark::State& state, std::string label, std::string model) {
  const Stream& s = GetStream();
  if (s.config_path.empty() || s.timed.empty()) {
    state.SkipWithError("no stream or no temp folder");
    return;
  }
  vigil::EngineOptions o;
  o.config_path = s.config_path;
  o.model_override = model;
  o.offline = true;
  auto engine = vigil::Engine::Open(o);
  if (!engine.ok()) {
    state.SkipWithError(std::string(engine.status().message()).c_str());
    return;
  }
  vigil::Decision d;
  size_t warm_scored = 0;
  for (const std::string& e : s.warm) {
    if (!(*engine)->Decide(e, &d).ok()) {
      state.SkipWithError("Decide failed during warm-up");
      return;
    }
    warm_scored += d.status == vigil::Decision::Status::kDecided;
  }
  if (warm_scored < kRecentDecisions) {
    state.SkipWithError(
        "the warm-up decided fewer events than the retry memory holds: "
        "raise VIGIL_BENCH_WARM_DAYS or VIGIL_BENCH_USERS");
    return;
  }
  const Stalls stalls = MeasureStalls(1.0);
  const size_t n = s.timed.size();
  std::vector<int64_t> all_ns(n), scored_ns;
  scored_ns.reserve(n);
  int64_t stage_ns[4] = {}, sum_ns = 0, rejected = 0, not_ok = 0;
  size_t i = 0;
  const rusage usage0 = ThreadUsage();
  for (auto _ : state) {
    const std::string& e = s.timed[i];
    auto t0 = std::chrono::steady_clock::now();
    absl::Status st = (*engine)->Decide(e, &d);
    auto t1 = std::chrono::steady_clock::now();
    const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
    all_ns[i++] = ns;
    sum_ns += ns;
    not_ok += !st.ok();
    if (d.status == vigil::Decision::Status::kDecided) {
      scored_ns.push_back(ns);
      stage_ns[0] += d.timings.parse_ns;
      stage_ns[1] += d.timings.features_ns;
      stage_ns[2] += d.timings.model_ns;
      stage_ns[3] += d.timings.policy_ns;
    } else if (d.status != vigil::Decision::Status::kNotScored) {
      ++rejected;  // rejected or retried: the stream should have neither
    }
  }
  const rusage usage1 = ThreadUsage();
  const long switches = usage1.ru_nivcsw - usage0.ru_nivcsw;
  const long faults = usage1.ru_minflt - usage0.ru_minflt + usage1.ru_majflt - usage0.ru_majflt;
  if (not_ok || rejected) {
    state.SkipWithError("some timed events were not decided (failed, rejected or retried)");
    return;
  }
  std::sort(all_ns.begin(), all_ns.end());
  std::sort(scored_ns.begin(), scored_ns.end());
  const double ns_scored = static_cast<double>(std::max<size_t>(scored_ns.size(), 1));
  auto& c = state.counters;
  c["scored"] = static_cast<double>(scored_ns.size());
  int64_t scored_sum_ns = 0;
  for (int64_t v : scored_ns) scored_sum_ns += v;
  c["mean_us"] = static_cast<double>(scored_sum_ns) / ns_scored / 1e3;
  c["p50_us"] = Percentile(scored_ns, 0.50);
  c["p99_us"] = Percentile(scored_ns, 0.99);
  c["p999_us"] = Percentile(scored_ns, 0.999);
  c["all_p50_us"] = Percentile(all_ns, 0.50);
  c["all_p99_us"] = Percentile(all_ns, 0.99);
  c["max_us"] = Percentile(all_ns, 1.0);
  c["parse_us"] = static_cast<double>(stage_ns[0]) / ns_scored / 1e3;
  c["features_us"] = static_cast<double>(stage_ns[1]) / ns_scored / 1e3;
  c["model_us"] = static_cast<double>(stage_ns[2]) / ns_scored / 1e3;
  c["policy_us"] = static_cast<double>(stage_ns[3]) / ns_scored / 1e3;
  c["events_per_s"] = sum_ns > 0 ? static_cast<double>(n) * 1e9 / static_cast<double>(sum_ns) : 0;
  c["preempted"] = static_cast<double>(switches);
  c["page_faults"] = static_cast<double>(faults);
  c["stalls_per_s"] = stalls.per_s;
  c["stall_median_us"] = stalls.median_us;
  state.SetItemsProcessed(static_cast<int64_t>(n));
  char line[1024];
  std::snprintf(
      line, sizeof line,
      "decide-bench: %s: %zu events timed (%zu scored) after %zu warm-up; scored p50 %.1f µs, "
      "p99 %.1f µs, p99.9 %.1f µs; all events p50 %.1f µs, p99 %.1f µs, max %.0f µs; "
      "%.0f k events/s per core; scored stages parse %.1f, features %.1f, model %.1f, "
      "policy %.1f µs; preempted %ld times; %ld page faults; this core's stalls of >= 20 µs: "
      "%.0f/s, median %.1f µs (a scored call of the mean length, %.1f µs, meets one with a "
      "probability of %.1f %%); goal p99 <= 50 µs: %s",
      label.c_str(), n, scored_ns.size(), s.warm.size(), c["p50_us"].value, c["p99_us"].value,
      c["p999_us"].value, c["all_p50_us"].value, c["all_p99_us"].value, c["max_us"].value,
      c["events_per_s"].value / 1e3, c["parse_us"].value, c["features_us"].value,
      c["model_us"].value, c["policy_us"].value, switches, faults, stalls.per_s, stalls.median_us,
      c["mean_us"].value, 100 * stalls.per_s * c["mean_us"].value / 1e6,
      c["p99_us"].value <= 50 ? "PASS" : "FALL SHORT");
  Summaries()->push_back(line);
}

}  // namespace

int main(int argc, char** argv) {
  // The exchange schema hashes PII with an HMAC key from the environment.
  setenv("VIGIL_PII_KEY", "engine-benchmark-key", /*overwrite=*/0);
  if (const int64_t mb = EnvInt("VIGIL_BENCH_PRETOUCH_MB", 1024); mb > 0) {
    const auto r = vigil::core::Pretouch(mb, vigil::core::HalfOfPhysicalMemoryMib());
    std::fprintf(stderr, "decide-bench: pretouched %lld MiB in %.2f s (VIGIL_BENCH_PRETOUCH_MB)\n",
                 static_cast<long long>(r.touched_mib), r.seconds);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const Stream& s = GetStream();
  const auto iterations = static_cast<benchmark::IterationCount>(std::max<size_t>(s.timed.size(), 1));
  benchmark::RegisterBenchmark("BM_Decide/exchange", BM_Decide, std::string("exchange"), std::string())
      ->Iterations(iterations)
      ->Unit(benchmark::kMicrosecond);
  if (const char* m = std::getenv("VIGIL_BENCH_MODEL"); m && *m) {
    const char* name = std::getenv("VIGIL_BENCH_MODEL_NAME");
    std::string label = name && *name ? name : "override";
    benchmark::RegisterBenchmark(("BM_Decide/" + label).c_str(), BM_Decide, label, std::string(m))
        ->Iterations(iterations)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (const std::string& l : *Summaries()) std::printf("%s\n", l.c_str());
  if (!s.config_path.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(std::filesystem::path(s.config_path).parent_path(), ec);
  }
  return 0;
}
