// The exchange simulator: genuine users of a crypto exchange and five
// labelled attacks (bots, promotion abuse, stolen cards, account takeover,
// fake sign-ups), written as JSON Lines in time order with label events
// arriving later, the way a risk team receives them. docs/simulator.md
// describes the events, the attacks and every setting.
//
// Deterministic: the same config (seed included) gives the same bytes.
// Streaming: one day is generated, sorted and written at a time, so memory
// grows with the number of users, not of days.
//
// Thread-safety: one Simulator per thread.
#ifndef VIGIL_SIM_SIMULATOR_H_
#define VIGIL_SIM_SIMULATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/config.h"
#include "core/status.h"

namespace vigil::sim {

// Every setting, with its default. YAML keys have the same names.
struct SimConfig {
  int64_t users = 10000;       // genuine users
  int64_t days = 90;
  uint64_t seed = 1;
  int64_t start_ms = 1704067200000;  // 2024-01-01T00:00:00Z
  // Genuine traffic.
  double existing_share = 0.6;       // users signed up before the start
  double sessions_median = 0.3;      // sessions per active user-day (lognormal median)
  double sessions_sigma = 1.0;       // its spread: heavy-tailed activity
  double weekend_factor = 0.8;       // activity on Saturdays and Sundays
  double family_share = 0.06;        // users sharing a device and home IP with family
  double office_share = 0.05;        // users behind an office NAT
  double mobile_share = 0.35;        // sessions from a carrier's shared mobile IPs
  double pro_share = 0.2;            // segment "pro" (the group attribute), else "retail"
  // Genuine look-alikes, so that no single signal means fraud:
  double travel_share = 0.03;        // sessions from abroad (sometimes on a new phone)
  double vpn_user_share = 0.04;      // users who often connect through a VPN
  double api_trader_share = 0.15;    // "pro" users trading through the API on a schedule
  double small_card_share = 0.05;    // card deposits of $1-5 (checking a new card)
  // Attacks: volumes per 10,000 genuine users (over the period, or per day).
  double bot_accounts = 40;          // scripted accounts, created in bursts
  double promo_rings = 12;           // rings of 5..15 accounts
  double card_fraud_per_day = 5;     // stolen-card attacks a day
  double takeovers_per_day = 3;      // account takeovers a day
  double fake_signup_bursts = 10;    // bursts of 10..30 fake sign-ups
  // Share of attacks by careful attackers, who hide the obvious signals (a
  // card used from its own country, a ring spread over several networks,
  // fake sign-ups with ordinary mail domains, takeovers without a VPN, bots
  // with jitter and device ids): detection needs more than one feature.
  double evasive_share = 0.3;
  // Share of attacker accounts in the young age bands (genuine: about 0.45):
  // base rates differ by group, for fairness reports to find.
  double attacker_young_share = 0.75;
  // Labels: the share of attacks found and reported (with realistic delays:
  // chargebacks 10-60 days, takeover confirmations 1-14, abuse findings 1-21).
  double chargeback_rate = 0.9;
  double takeover_confirm_rate = 0.85;
  double abuse_found_rate = 0.7;
  // Drift from this day on (default two thirds in): bots add jitter and move
  // to residential proxies, card fraud moves country and tests with larger
  // amounts, and a new country opens for sign-ups.
  int64_t drift_day = -1;
  std::string new_country = "BR";

  // Reads the YAML settings over the defaults; errors name file:line:col.
  absl::Status Merge(const core::ConfigNode& yaml);
};

struct SimStats {
  int64_t events = 0;
  int64_t labels = 0;
  int64_t labels_after_end = 0;  // would arrive after the last day: not written
  int64_t events_after_end = 0;  // actions spilling past the last midnight: not written
  int64_t bytes = 0;
  std::map<std::string, int64_t> by_type;
  std::map<std::string, int64_t> by_scenario;  // attacker events
  int64_t active_user_days = 0;  // genuine users with an event, summed over days
  int64_t genuine_events = 0;
};

// Writes the simulation to `out` (.jsonl, .jsonl.gz or - for standard
// output). `progress(day, events)` is called after each day.
absl::StatusOr<SimStats> Simulate(const SimConfig& config, const std::string& out,
                                  const std::function<void(int64_t, int64_t)>& progress = {});

// The same into a callback per line (tests and benchmarks).
SimStats SimulateTo(const SimConfig& config, const std::function<void(std::string_view)>& line);

}  // namespace vigil::sim

#endif  // VIGIL_SIM_SIMULATOR_H_
