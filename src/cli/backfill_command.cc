// `vigil backfill`: point-in-time features for every scored event of a file,
// or of several read as one stream (a rotated event log).
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "core/time.h"
#include "event/dead_letter.h"
#include "feature/backfill.h"
#include "feature/spec.h"

namespace vigil::cli {
namespace {

struct BackfillArgs {
  EventInputArgs input;
  std::string features;
  std::string out;
  std::string as_of;
  std::string dead_letter;
};

int Run(const BackfillArgs& a) {
  // The configuration first: a mistake in the spec is reported before the
  // events are opened.
  auto schema = event::Schema::Load(a.input.schema);
  if (!schema.ok()) {
    PrintError("backfill", schema.status());
    return kExitError;
  }
  // Each read once (either may be a pipe: `--features <(...)`).
  auto spec = feature::FeatureSpec::Load(a.features, *schema);
  if (!spec.ok()) {
    PrintError("backfill", spec.status());
    return kExitError;
  }
  std::optional<EventInput> in = OpenEventInput(a.input, "backfill", false, nullptr, *schema);
  if (!in) return kExitError;
  feature::BackfillOptions opts;
  opts.out = a.out;
  opts.pii = in->hasher.get();
  if (!a.as_of.empty()) {
    auto t = core::ParseTimestamp(a.as_of);
    if (!t.ok()) {
      PrintError("backfill", absl::InvalidArgumentError(StrCat("--as-of ", t.status().message())));
      return kExitError;
    }
    opts.as_of_ms = *t;
  }
  std::unique_ptr<event::DeadLetterWriter> dead;
  if (!a.dead_letter.empty()) {
    auto d = event::DeadLetterWriter::Open(a.dead_letter);
    if (!d.ok()) {
      PrintError("backfill", d.status());
      return kExitError;
    }
    dead = std::move(*d);
  }
  // Training labels need a first pass over the same files (exactly these: a
  // directory being written to may have gained one since).
  std::optional<EventInput> label_pass;
  if (!(*spec)->label_kinds.empty() && in->files != std::vector<std::string>{"-"}) {
    label_pass = OpenEventInput(a.input, "backfill", /*quiet=*/true, &in->files, in->schema);
    if (!label_pass) return kExitError;
    opts.label_pass = label_pass->reader.get();
  }
  Progress progress("backfill");
  event::EventReader& reader = *in->reader;
  opts.progress = [&](int64_t records, int64_t rows) {
    progress.Update(records, reader.bytes_read(), rows);
  };
  auto res = feature::Backfill(reader, *spec, opts, dead.get());
  progress.Done();
  if (!res.ok()) {
    PrintError("backfill", res.status());
    return kExitError;
  }
  // The last dead letters are written here: a failure is the run's.
  if (dead) {
    if (absl::Status st = dead->Close(); !st.ok()) {
      PrintError("backfill", st);
      return kExitError;
    }
  }
  const double secs = progress.Seconds();
  std::fprintf(stderr,
               "backfill: %s events read, %s rows written in %.2f s (%.2f M events/s); "
               "%s rejected%s, %s beyond the lateness bound\n"
               "          %s entities, %s buffered entries, about %.1f MB of state\n",
               Thousands(res->read).c_str(), Thousands(res->rows).c_str(), secs,
               secs > 0 ? static_cast<double>(res->read) / secs / 1e6 : 0.0,
               Thousands(res->rejected).c_str(),
               res->rejected > 0 && a.dead_letter.empty()
                   ? " (run `vigil validate` for why, or pass --dead-letter)"
                   : "",
               Thousands(res->too_late).c_str(), Thousands(res->engine.entities).c_str(),
               Thousands(res->engine.entries).c_str(),
               static_cast<double>(res->engine.memory_bytes) / 1e6);
  if (res->engine.bucketed > 0) {
    std::fprintf(
        stderr,
        "          %s entries of busy keys merged into time buckets (limits.max_entries_per_key): "
        "windows reaching them are within the bound of docs/features.md, not exact\n",
        Thousands(res->engine.bucketed).c_str());
  }
  if (!res->meta_path.empty()) std::fprintf(stderr, "          columns: %s\n", res->meta_path.c_str());
  return kExitOk;
}

}  // namespace

Runner AddBackfillCommand(CLI::App& app) {
  auto args = std::make_shared<BackfillArgs>();
  CLI::App* cmd = app.add_subcommand(
      "backfill",
      "Compute point-in-time features for every scored event of a file, or of several read as\n"
      "one stream in the order given (a directory: its *.jsonl[.gz] files in name order, as the\n"
      "server's event log writes them), with the same engine that serves live traffic: each row\n"
      "holds exactly what the server would have seen at that instant (no leakage from the\n"
      "future). Writes a CSV (event_id, event_time, event_type, passthrough fields, features in\n"
      "spec order; doubles as shortest round-trip decimals) and <out>.meta.json naming the id,\n"
      "time, label and feature columns. docs/features.md.");
  AddEventInputOptions(cmd, &args->input, EventsArity::kMany);
  cmd->add_option("--features", args->features, "feature spec YAML")->required();
  cmd->add_option("--out", args->out, "features CSV to write (.csv, .csv.gz, or - for stdout)")
      ->required();
  cmd->add_option("--as-of", args->as_of,
                  "the end of the data, for training labels (default: the latest event time)");
  cmd->add_option("--dead-letter", args->dead_letter, "where rejected events go (JSON Lines)");
  cmd->footer(
      "Example:\n"
      "  vigil backfill --schema examples/handbook/schema.yaml \\\n"
      "      --features examples/handbook/features.yaml \\\n"
      "      --events transactions.csv.gz --out features.csv\n"
      "  vigil backfill --schema examples/exchange/schema.yaml \\\n"
      "      --features examples/exchange/features.yaml \\\n"
      "      --events /var/lib/vigil/events --out features.csv   # the server's event log");
  return [args] { return Run(*args); };
}

}  // namespace vigil::cli
