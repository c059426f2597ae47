// `vigil simulate`: a crypto exchange's traffic with labelled attacks.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "core/config.h"
#include "core/strings.h"
#include "core/time.h"
#include "sim/simulator.h"

namespace vigil::cli {
namespace {

struct SimulateArgs {
  int64_t users = 10000;
  int64_t days = 90;
  int64_t seed = 1;
  std::string start;
  std::string config;
  std::string out;
  bool users_set = false, days_set = false, seed_set = false;
};

int Run(const SimulateArgs& a) {
  sim::SimConfig c;
  if (!a.config.empty()) {
    auto y = core::ConfigNode::LoadFile(a.config);
    if (!y.ok()) {
      PrintError("simulate", y.status());
      return kExitError;
    }
    if (auto st = c.Merge(*y); !st.ok()) {
      PrintError("simulate", st);
      return kExitError;
    }
  }
  // Flags win over the config file.
  if (a.users_set || a.config.empty()) c.users = a.users;
  if (a.days_set || a.config.empty()) c.days = a.days;
  if (a.seed_set || a.config.empty()) c.seed = static_cast<uint64_t>(a.seed);
  if (!a.start.empty()) {
    auto t = core::ParseTimestamp(a.start);
    if (!t.ok()) {
      PrintError("simulate", absl::InvalidArgumentError(StrCat("--start ", t.status().message())));
      return kExitError;
    }
    c.start_ms = *t;
  }
  Progress progress("simulate");
  const bool tty = isatty(STDERR_FILENO);
  auto stats = sim::Simulate(c, a.out, [&](int64_t day, int64_t events) {
    if (tty) std::fprintf(stderr, "\rsimulate: day %lld/%lld, %s events   ", static_cast<long long>(day),
                          static_cast<long long>(c.days), Thousands(events).c_str());
  });
  if (tty) std::fprintf(stderr, "\r%72s\r", "");
  if (!stats.ok()) {
    PrintError("simulate", stats.status());
    return kExitError;
  }
  const double secs = progress.Seconds();
  std::fprintf(stderr,
               "simulate: %s events (%s labels; %s more would arrive after the last day) for %s "
               "users over %lld days in %.2f s (%.2f M events/s), %.1f MB\n",
               Thousands(stats->events).c_str(), Thousands(stats->labels).c_str(),
               Thousands(stats->labels_after_end).c_str(), Thousands(c.users).c_str(),
               static_cast<long long>(c.days), secs,
               secs > 0 ? static_cast<double>(stats->events) / secs / 1e6 : 0.0,
               static_cast<double>(stats->bytes) / 1e6);
  std::string by;
  for (const auto& [k, v] : stats->by_scenario) StrAppend(&by, by.empty() ? "" : ", ", k, " ", Thousands(v));
  std::fprintf(stderr, "          attacker events: %s\n", by.c_str());
  std::fprintf(stderr, "          genuine: %.2f events per active user-day\n",
               stats->active_user_days > 0 ? static_cast<double>(stats->genuine_events) /
                                                 static_cast<double>(stats->active_user_days)
                                           : 0.0);
  return kExitOk;
}

}  // namespace

Runner AddSimulateCommand(CLI::App& app) {
  auto a = std::make_shared<SimulateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "simulate",
      "Simulate a crypto exchange: genuine users (sign-ups, logins, deposits, trades, withdrawals,\n"
      "promotions, referrals, API keys, KYC) and five labelled attacks — bots, promotion abuse\n"
      "rings, stolen cards, account takeovers, fake sign-ups — with label events arriving days\n"
      "or weeks later, drift from a configured day and a group attribute whose base rates\n"
      "differ. Deterministic per seed (gzip too), streaming, in time order. docs/simulator.md.");
  cmd->add_option("--users", a->users, "genuine users (default 10000)")->each([a](const std::string&) { a->users_set = true; });
  cmd->add_option("--days", a->days, "days to simulate (default 90)")->each([a](const std::string&) { a->days_set = true; });
  cmd->add_option("--seed", a->seed, "random seed (default 1)")->each([a](const std::string&) { a->seed_set = true; });
  cmd->add_option("--start", a->start, "first day, UTC (default 2024-01-01)");
  cmd->add_option("--config", a->config, "sim.yaml: rates, attack volumes, drift day, group base rates");
  cmd->add_option("--out", a->out, "events.jsonl, events.jsonl.gz, or - for standard output")->required();
  cmd->footer(
      "Example:\n"
      "  vigil simulate --users 10000 --days 90 --seed 7 --out events.jsonl.gz");
  return [a] { return Run(*a); };
}

}  // namespace vigil::cli
