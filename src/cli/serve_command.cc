// `vigil serve` (the decision service), `vigil keys create` (API keys) and
// `vigil decide` (the same engine over event files, offline).

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "core/memory.h"
#include "core/strings.h"
#include "core/time.h"
#include "event/event_log.h"
#include "event/line_reader.h"
#include "monitor/metrics.h"
#include "nlohmann/json.hpp"
#include "serve/auth.h"
#include "serve/config.h"
#include "serve/http_server.h"
#include "store/store.h"
#include "vigil/engine.h"

namespace vigil::cli {
namespace {

struct ServeArgs {
  std::string config, listen, model;
  bool check = false;
};

// What the configuration leaves undecided (Engine::ConfigWarnings), on
// standard error.
void PrintConfigWarnings(const char* command, const Engine& engine) {
  for (const std::string& w : engine.ConfigWarnings())
    std::fprintf(stderr, "%s: warning: %s\n", command, w.c_str());
}

// limits.pretouch_mb (core::Pretouch), at most half of the machine.
void Pretouch(int64_t mb) {
  const core::PretouchResult r = core::Pretouch(mb, core::HalfOfPhysicalMemoryMib());
  if (r.capped) {
    std::fprintf(stderr,
                 "serve: warning: limits.pretouch_mb %lld is over half of this machine's memory; "
                 "pretouching %lld MiB\n",
                 static_cast<long long>(mb), static_cast<long long>(r.touched_mib));
  }
  std::fprintf(stderr, "serve: pretouched %lld MiB in %.2f s (limits.pretouch_mb)\n",
               static_cast<long long>(r.touched_mib), r.seconds);
}

int RunServe(const ServeArgs& a) {
  auto config = serve::LoadServeConfig(a.config);
  if (!config.ok()) {
    PrintError("serve", config.status());
    return kExitError;
  }
  if (!a.listen.empty()) config->listen = a.listen;
  std::string host;
  int port = 0;
  if (auto s = serve::ParseListen(config->listen, &host, &port); !s.ok()) {
    PrintError("serve", s);
    return kExitError;
  }
  // Block the stop signals before any thread starts; one thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  if (!a.check && config->limits.pretouch_mb > 0) Pretouch(config->limits.pretouch_mb);
  EngineOptions eo;
  eo.config_path = a.config;
  eo.model_override = a.model;
  eo.offline = a.check;
  auto engine = Engine::Open(eo);
  if (!engine.ok()) {
    PrintError("serve", engine.status());
    return kExitError;
  }
  PrintConfigWarnings("serve", **engine);
  if (a.check) {
    // What the start would refuse after the engine: the keys, TLS, the host.
    monitor::Registry registry;
    serve::Auth auth({config->limits.rate_per_key, config->limits.burst_per_key});
    serve::HttpServer server(engine->get(), &auth, &registry, *config);
    absl::Status s = serve::CheckStatePaths(*config);
    if (s.ok()) s = server.Check(host);
    if (!s.ok()) {
      PrintError("serve", s);
      return kExitError;
    }
    nlohmann::json models = nlohmann::json::parse((*engine)->ModelsJson());
    std::fprintf(stderr, "serve: %s is valid: %zu features, policy %.12s\n", a.config.c_str(),
                 (*engine)->feature_names().size(), models["policy_hash"].get<std::string>().c_str());
    for (const auto& m : models["models"]) {
      std::fprintf(stderr, "  %-16s %-9s %s@%s  %d trees  %s\n", m["event_type"].get<std::string>().c_str(),
                   m["role"].get<std::string>().c_str(), m["name"].get<std::string>().c_str(),
                   m["version"].get<std::string>().c_str(), m["trees"].get<int>(), m["path"].get<std::string>().c_str());
    }
    return kExitOk;
  }
  if (EngineStats st = (*engine)->Stats(); st.state_restored || st.replayed + st.replay_rejected > 0 ||
                                           !st.state_not_used.empty()) {
    const std::string skipped =
        st.replay_rejected ? StrCat("; ", st.replay_rejected, " no longer valid under the schema, skipped") : "";
    if (!st.state_not_used.empty()) std::fprintf(stderr, "serve: warning: %s\n", st.state_not_used.c_str());
    if (st.state_restored) {
      std::fprintf(stderr, "serve: restored the saved state (%s events), then replayed %s events "
                           "of the event log written since, in %.2f s%s\n",
                   Thousands(st.state_events).c_str(), Thousands(st.replayed).c_str(), st.replay_seconds,
                   skipped.c_str());
    } else {
      std::fprintf(stderr, "serve: replayed %s events of the event log into the features in %.2f s%s\n",
                   Thousands(st.replayed).c_str(), st.replay_seconds, skipped.c_str());
    }
    if (st.decisions_recovered > 0) {
      std::fprintf(
          stderr,
          "serve: made again %s decisions the last run answered but did not store (it stopped "
          "without a clean stop); they are marked \"recovered\"\n",
          Thousands(st.decisions_recovered).c_str());
    }
    if (st.labels_recovered > 0) {
      std::fprintf(stderr, "serve: stored %s labels the last run answered but did not store\n",
                   Thousands(st.labels_recovered).c_str());
    }
    if (!st.recovered_warning.empty())
      std::fprintf(stderr, "serve: warning: %s\n", st.recovered_warning.c_str());
  }
  monitor::Registry registry;
  serve::Auth auth({config->limits.rate_per_key, config->limits.burst_per_key});
  serve::HttpServer server(engine->get(), &auth, &registry, *config);
  if (auto s = server.LoadKeys(); !s.ok()) {
    PrintError("serve", s);
    return kExitError;
  }
  if (absl::Status s = registry.status(); !s.ok()) {
    PrintError("serve", s);  // a metric registered wrongly: a bug, caught at start
    return kExitError;
  }
  if (auth.num_keys() == 0) {
    std::fprintf(stderr, "serve: warning: no API keys yet; every endpoint but /healthz and /readyz will answer 401.\n"
                         "       Create one: vigil keys create --config %s --role score\n", a.config.c_str());
  }
  if (auto s = server.Bind(host, port); !s.ok()) {
    PrintError("serve", s);
    return kExitError;
  }
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    std::fprintf(stderr, "serve: %s: stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.Stop();
  });
  // The port on its own line first: scripts and tests read it.
  const bool v6 = host.find(':') != std::string::npos;
  std::fprintf(stderr, "serve: listening on %s%s%s:%d%s\n", v6 ? "[" : "", host.c_str(),
               v6 ? "]" : "", server.port(), config->tls_cert.empty() ? "" : " (TLS)");
  std::fflush(stderr);
  server.Run();
  // Run returned: stopped by a signal (the waiter is done) or failed.
  pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  absl::Status flushed = (*engine)->Flush();
  // The next start restores this instead of replaying the whole event log.
  if (auto saved = (*engine)->SaveState(); saved.ok()) {
    std::fprintf(stderr, "serve: saved the feature state (%.1f MB) to %s/state.snap in %.2f s\n", *saved / 1e6,
                 config->event_log_dir.c_str(), (*engine)->Stats().state_last_save_seconds);
  } else {
    std::fprintf(stderr, "serve: warning: the feature state was not saved (%s); the next start replays the event "
                         "log from the state saved before, if any\n",
                 std::string(saved.status().message()).c_str());
  }
  EngineStats st = (*engine)->Stats();
  engine->reset();
  std::fprintf(stderr, "serve: stopped after %s events (%s decisions, %s rejected); %s\n",
               Thousands(st.events).c_str(), Thousands(st.decided).c_str(), Thousands(st.rejected).c_str(),
               flushed.ok() ? "every decision is in the store" : std::string(flushed.message()).c_str());
  return kExitOk;
}

struct KeysArgs {
  std::string config, role, name;
};

int RunKeysCreate(const KeysArgs& a) {
  auto config = serve::LoadServeConfig(a.config);
  if (!config.ok()) {
    PrintError("keys", config.status());
    return kExitError;
  }
  if (!serve::ParseRole(a.role)) {
    std::fprintf(stderr, "vigil keys: --role %s: one of score, label, admin\n", a.role.c_str());
    return kExitError;
  }
  // One line per key in the keys file: a line break in the name would make
  // it two, and the file unreadable at the next start.
  if (std::any_of(a.name.begin(), a.name.end(),
                  [](char c) { return (c >= 0 && c < 0x20) || c == 0x7f; })) {
    std::fprintf(
        stderr,
        "vigil keys: --name may not hold a line break, a tab or another control character\n");
    return kExitError;
  }
  auto key = serve::NewApiKey();
  if (!key.ok()) {
    PrintError("keys", key.status());
    return kExitError;
  }
  store::KeyRow row;
  row.sha256_hex = serve::KeyHash(*key);
  row.role = a.role;
  row.name = a.name;
  row.created_ms = core::WallNowMs();
  absl::Status s = serve::EnsureStateDirs(*config);
  std::string where;
  if (!s.ok()) {
  } else if (!config->keys_file.empty()) {
    s = serve::AppendKeysFile(config->keys_file, row);
    where = config->keys_file;
  } else {
    auto st = store::OpenStore(config->store);
    s = st.ok() ? (*st)->PutKey(row) : st.status();
    where = config->store;
  }
  if (!s.ok()) {
    PrintError("keys", s);
    return kExitError;
  }
  std::fprintf(stderr, "keys: a new %s key; only its SHA-256 is kept (%s). It is shown once:\n", a.role.c_str(),
               where.c_str());
  std::printf("%s\n", key->c_str());
  return kExitOk;
}

struct DecideArgs {
  std::string config, out, model, report;
  std::vector<std::string> events;
};

struct DayCounts {
  int64_t events = 0, scored = 0, rejected = 0, holdout = 0;
  std::map<std::string, int64_t> actions;
  // Hits by event type, then rule: names are unique within a policy
  // section only, and a `default` section serves several types.
  std::map<std::string, std::map<std::string, int64_t>> rules;
};

int RunDecide(const DecideArgs& a) {
  Progress progress("decide");
  EngineOptions eo;
  eo.config_path = a.config;
  eo.model_override = a.model;
  eo.offline = true;
  // Files and directories (an event log: its files in write order), read
  // as one stream in the order given, as backfill reads them.
  auto files = event::ExpandEventPaths(a.events);
  if (!files.ok()) {
    PrintError("decide", files.status());
    return kExitError;
  }
  for (const std::string& f : *files) {
    if (f != "-" && event::FormatFromPath(f) == event::Format::kCsv) {
      std::fprintf(stderr,
                   "vigil decide: %s: decide reads JSON Lines (one event object a line), not CSV\n",
                   f.c_str());
      return kExitError;
    }
  }
  // A server's event log is read as it took it (not checked against this
  // machine's clock), unless another file is among it: then every file is
  // checked as a plain file is, which the user should know.
  const size_t logs = static_cast<size_t>(std::count_if(
      files->begin(), files->end(), [](const std::string& f) { return event::IsEventLogFile(f); }));
  eo.event_log_input = logs == files->size();
  if (logs > 0 && !eo.event_log_input) {
    std::fprintf(
        stderr,
        "vigil decide: warning: %zu of the %zu files are event-log files and the others are "
        "not: all are checked as plain files, the time bounds included (docs/api.md)\n",
        logs, files->size());
  }
  for (const std::string& f : *files) {
    if (f != "-" && access(f.c_str(), R_OK) != 0) {
      std::fprintf(stderr, "vigil decide: %s: cannot read: %s\n", f.c_str(), std::strerror(errno));
      return kExitError;
    }
  }
  auto engine = Engine::Open(eo);
  if (!engine.ok()) {
    PrintError("decide", engine.status());
    return kExitError;
  }
  PrintConfigWarnings("vigil decide", **engine);
  FILE* out = a.out == "-" ? stdout : std::fopen(a.out.c_str(), "w");
  if (!out) {
    std::fprintf(stderr, "vigil decide: cannot create %s\n", a.out.c_str());
    return kExitError;
  }
  Decision d;
  std::map<std::string, DayCounts> days;  // by UTC day
  int64_t n = 0, rejected = 0;
  int64_t bytes_before = 0;  // of the files already read
  event::LineReader::Line line;
  std::string day;
  // Every rule hit so far, by (event type, rule). A decision lists at most
  // policy::Outcome::kMaxListed fired rules; the rest of its hits are what
  // the engine's counters gained over this sum.
  std::map<std::pair<std::string, std::string>, int64_t> counted;
  for (const std::string& f : *files) {
    // One file open at a time (a year of a rotated log is hundreds).
    // Whole lines, up to the schema's largest limit: Decide refuses one over
    // this schema's own (record_too_large), as the server did.
    event::LineReaderOptions lo;
    lo.max_record_bytes = 64 << 20;
    auto reader = event::LineReader::Open(f, lo);
    if (!reader.ok()) {
      PrintError("decide", reader.status());
      return kExitError;
    }
    event::LineReader& lines = **reader;
    while (lines.Next(&line)) {
      std::string_view t = line.text;
      if (t.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      ++n;
      if (auto s = (*engine)->Decide(t, &d); !s.ok()) {
        PrintError("decide", s);
        return kExitError;
      }
      // The UTC day of the event's time.
      day = d.status == Decision::Status::kRejected
                ? "rejected"
                : core::FormatTimestamp(d.event_time_ms).substr(0, 10);
      DayCounts& c = days[day];
      ++c.events;
      if (d.status == Decision::Status::kRejected) {
        ++c.rejected;
        ++rejected;
      }
      if (d.status == Decision::Status::kDecided) {
        ++c.scored;
        ++c.actions[d.action];
        if (d.holdout) ++c.holdout;
        if (d.rules_not_listed == 0) {
          for (const Decision::Rule& r : d.rules) {
            ++c.rules[d.event_type][r.name];
            ++counted[{d.event_type, r.name}];
          }
        } else {
          for (const RuleHits& h : (*engine)->RuleHitCounts()) {
            int64_t& k = counted[{h.event_type, h.rule}];
            if (h.hits > k) c.rules[h.event_type][h.rule] += h.hits - k;
            k = h.hits;
          }
        }
        std::fwrite(d.json.data(), 1, d.json.size(), out);
        std::fputc('\n', out);
      } else if (d.status == Decision::Status::kRejected) {
        std::fwrite(d.json.data(), 1, d.json.size(), out);
        std::fputc('\n', out);
      }
      if ((n & 0xfff) == 0) progress.Update(n, bytes_before + lines.bytes_read());
    }
    if (!lines.status().ok()) {
      PrintError("decide", lines.status());
      return kExitError;
    }
    bytes_before += lines.bytes_read();
  }
  if (out != stdout && std::fclose(out) != 0) {
    std::fprintf(stderr, "vigil decide: cannot write %s\n", a.out.c_str());
    return kExitError;
  }
  // Per day: actions, alerts (review + block: what analysts see), top rules.
  std::fprintf(stderr, "%-10s %9s %8s %8s %9s %7s %7s %7s %8s  %s\n", "day", "events", "scored", "allow",
               "challenge", "review", "block", "alerts", "rejected", "rules fired");
  nlohmann::ordered_json report = nlohmann::ordered_json::array();
  for (const auto& [dd, c] : days) {
    auto get = [&](const char* k) {
      auto it = c.actions.find(k);
      return it == c.actions.end() ? int64_t{0} : it->second;
    };
    std::string rules;
    for (const auto& [type, hits] : c.rules) {
      for (const auto& [r, h] : hits)
        StrAppend(&rules, rules.empty() ? "" : ", ", type, "/", r, " ", h);
    }
    std::fprintf(stderr, "%-10s %9lld %8lld %8lld %9lld %7lld %7lld %7lld %8lld  %s\n", dd.c_str(),
                 static_cast<long long>(c.events), static_cast<long long>(c.scored),
                 static_cast<long long>(get("allow")), static_cast<long long>(get("challenge")),
                 static_cast<long long>(get("review")), static_cast<long long>(get("block")),
                 static_cast<long long>(get("review") + get("block")), static_cast<long long>(c.rejected),
                 rules.c_str());
    report.push_back({{"day", dd}, {"events", c.events}, {"scored", c.scored}, {"actions", c.actions},
                      {"alerts", get("review") + get("block")}, {"holdout", c.holdout},
                      {"rejected", c.rejected}, {"rules", c.rules}});
  }
  if (!a.report.empty()) {
    FILE* f = std::fopen(a.report.c_str(), "w");
    std::string text = nlohmann::ordered_json{{"days", report}}.dump(
                           2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) +
                       "\n";
    if (!f || std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fclose(f) != 0) {
      std::fprintf(stderr, "vigil decide: cannot write %s\n", a.report.c_str());
      return kExitError;
    }
  }
  EngineStats st = (*engine)->Stats();
  std::fprintf(stderr, "decide: %s events, %s decisions, %s rejected, %s retried ids in %.2f s; %s\n",
               Thousands(n).c_str(), Thousands(st.decided).c_str(), Thousands(rejected).c_str(),
               Thousands(st.retries).c_str(), progress.Seconds(), a.out.c_str());
  return kExitOk;
}

}  // namespace

Runner AddServeCommand(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "The decision service: POST /v1/events answers each event with a decision (allow,\n"
      "challenge, review, block), its score, reasons and rules, and logs it (docs/api.md).\n"
      "Everything vigil.yaml names is checked at start; a model trained on another feature\n"
      "spec is refused. SIGINT or SIGTERM stops it once every decision is in the store\n"
      "(or in the journal while the store does not take them).");
  cmd->add_option("--config", a->config, "vigil.yaml")->required();
  cmd->add_option("--listen", a->listen, "HOST:PORT, overriding the config's listen (port 0: any free port)");
  cmd->add_option("--model", a->model, "a bundle to use as the champion of every scored event type");
  cmd->add_flag("--check", a->check, "only check the configuration and the models, then exit");
  cmd->footer(
      "Example:\n"
      "  vigil serve --config examples/exchange/vigil.yaml --check\n"
      "  vigil serve --config examples/exchange/vigil.yaml --listen 127.0.0.1:8080");
  return [a] { return RunServe(*a); };
}

Runner AddKeysCommand(CLI::App& app) {
  auto a = std::make_shared<KeysArgs>();
  CLI::App* cmd = app.add_subcommand("keys", "API keys for vigil serve (only their SHA-256 is kept).");
  CLI::App* create = cmd->add_subcommand(
      "create", "Create a 256-bit key with a role; print it once, alone on standard output.");
  cmd->require_subcommand(1);
  create->add_option("--config", a->config, "vigil.yaml (keys go to its keys_file, else its store)")->required();
  create->add_option("--role", a->role, "score, label or admin")->required();
  create->add_option("--name", a->name, "a note kept beside the hash (who or what uses it)");
  for (CLI::App* c : {cmd, create}) {
    c->footer(
        "Example:\n"
        "  vigil keys create --config vigil.yaml --role score --name checkout\n"
        "  KEY=$(vigil keys create --config vigil.yaml --role admin 2>/dev/null)\n"
        "Exit status: 0 the key was stored and printed, 2 a usage, configuration or I/O error.");
  }
  return [a] { return RunKeysCreate(*a); };
}

Runner AddDecideCommand(CLI::App& app) {
  auto a = std::make_shared<DecideArgs>();
  CLI::App* cmd = app.add_subcommand(
      "decide",
      "Run the serving engine over event files (JSON Lines, plain or gzip) or the event log's\n"
      "directory, in order, without a store or logs: one decision per scored event to --out,\n"
      "and per day the actions, the alerts (review + block) and the rules fired. How a risk\n"
      "team tries a policy or model change on history before it ships.");
  cmd->add_option("--config", a->config, "vigil.yaml")->required();
  cmd->add_option(
         "--events", a->events,
         "events: JSON Lines (.jsonl, optionally .gz; - for stdin), or a directory (the event\n"
         "log of vigil serve: its files in the order written); several (--events A B) are read\n"
         "as one stream, in the order given")
      ->required();
  cmd->add_option("--out", a->out, "decisions, JSON Lines (- for standard output)")->required();
  cmd->add_option("--model", a->model, "a bundle to use as the champion of every scored event type");
  cmd->add_option("--report", a->report, "the per-day summary as JSON");
  cmd->footer(
      "Example:\n"
      "  vigil decide --config examples/exchange/vigil.yaml --events events.jsonl --out "
      "decisions.jsonl\n"
      "  vigil decide --config vigil.yaml --events var/eventlog/ --out decisions.jsonl");
  return [a] { return RunDecide(*a); };
}

}  // namespace vigil::cli
