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
// shared machine a preemption shows up in a sample as milliseconds).
//
// The engine is opened offline (EngineOptions::offline: no store, no decision
// log, no event log), so nothing is written; the retry memory is kept, as in
// `vigil serve`.
//
// Environment: VIGIL_BENCH_USERS (2000), VIGIL_BENCH_DAYS (14),
// VIGIL_BENCH_WARM_DAYS (7), VIGIL_BENCH_MODEL (a bundle directory, optional),
// VIGIL_BENCH_MODEL_NAME (its label, default "override"). Each benchmark
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

#include "core/time.h"
#include "sim/simulator.h"
#include "vigil/engine.h"

#ifndef VIGIL_SOURCE_DIR
#error "VIGIL_SOURCE_DIR must point at the repository (CMake defines it)"
#endif

namespace {

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
      << "event_log: {dir: " << d << "/var/eventlog}\ndead_letter: " << d << "/var/dead-letter.jsonl\n"
      << "keys_file: " << d << "/var/keys.txt\nlisten: 127.0.0.1:0\nreasons: 3\n";
    return s;
  }();
  return *s;
}

double Percentile(const std::vector<int64_t>& sorted_ns, double q) {
  if (sorted_ns.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted_ns.size() - 1) + 0.5);
  return static_cast<double>(sorted_ns[std::min(i, sorted_ns.size() - 1)]) / 1e3;
}

long InvoluntarySwitches() {
  rusage u{};
  getrusage(RUSAGE_THREAD, &u);
  return u.ru_nivcsw;
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
  for (const std::string& e : s.warm) {
    if (!(*engine)->Decide(e, &d).ok()) {
      state.SkipWithError("Decide failed during warm-up");
      return;
    }
  }
  const size_t n = s.timed.size();
  std::vector<int64_t> all_ns(n), scored_ns;
  scored_ns.reserve(n);
  int64_t stage_ns[4] = {}, sum_ns = 0, rejected = 0, not_ok = 0;
  size_t i = 0;
  const long switches0 = InvoluntarySwitches();
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
  const long switches = InvoluntarySwitches() - switches0;
  if (not_ok || rejected) {
    state.SkipWithError("some timed events were not decided (failed, rejected or retried)");
    return;
  }
  std::sort(all_ns.begin(), all_ns.end());
  std::sort(scored_ns.begin(), scored_ns.end());
  const double ns_scored = static_cast<double>(std::max<size_t>(scored_ns.size(), 1));
  auto& c = state.counters;
  c["scored"] = static_cast<double>(scored_ns.size());
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
  state.SetItemsProcessed(static_cast<int64_t>(n));
  char line[512];
  std::snprintf(line, sizeof line,
                "decide-bench: %s: %zu events timed (%zu scored) after %zu warm-up; scored p50 %.1f µs, "
                "p99 %.1f µs, p99.9 %.1f µs; all events p50 %.1f µs, p99 %.1f µs, max %.0f µs; "
                "%.0f k events/s per core; scored stages parse %.1f, features %.1f, model %.1f, policy %.1f µs; "
                "preempted %ld times; goal p99 <= 50 µs: %s",
                label.c_str(), n, scored_ns.size(), s.warm.size(), c["p50_us"].value, c["p99_us"].value,
                c["p999_us"].value, c["all_p50_us"].value, c["all_p99_us"].value, c["max_us"].value,
                c["events_per_s"].value / 1e3, c["parse_us"].value, c["features_us"].value,
                c["model_us"].value, c["policy_us"].value, switches,
                c["p99_us"].value <= 50 ? "PASS" : "FALL SHORT");
  Summaries()->push_back(line);
}

}  // namespace

int main(int argc, char** argv) {
  // The exchange schema hashes PII with an HMAC key from the environment.
  setenv("VIGIL_PII_KEY", "engine-benchmark-key", /*overwrite=*/0);
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
