// `vigil profile`: per-field statistics of an event file.
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "event/event_reader.h"
#include "event/profile.h"
#include "event/schema.h"

namespace vigil::cli {
namespace {

struct ProfileArgs {
  EventInputArgs input;
  std::string out;
};

int Run(const ProfileArgs& a) {
  std::optional<EventInput> in = OpenEventInput(a.input, "profile");
  if (!in) return kExitError;
  event::EventReader& reader = *in->reader;
  event::ProfileBuilder builder(in->schema, in->hasher.get());
  Progress progress("profile");
  event::Record rec;
  event::Rejection rej;
  int64_t rejected = 0;
  while (true) {
    const auto r = reader.Next(&rec, &rej);
    if (r == event::EventReader::Result::kEnd) break;
    progress.Tick(reader.records_read(), reader.bytes_read());
    if (r == event::EventReader::Result::kRecord) {
      builder.Add(rec);
    } else {
      ++rejected;
    }
  }
  progress.Done();
  if (!reader.status().ok()) {
    PrintError("profile", reader.status());
    return kExitError;
  }
  const event::Profile p = builder.Finish(a.input.events);
  if (auto st = p.Save(a.out); !st.ok()) {
    PrintError("profile", st);
    return kExitError;
  }
  std::printf("profile: %s valid records (%s rejected, not profiled; run `vigil validate` for "
              "why), %zu columns in %.2f s -> %s\n",
              Thousands(p.records).c_str(), Thousands(rejected).c_str(), p.columns.size(),
              progress.Seconds(), a.out.c_str());
  return kExitOk;
}

}  // namespace

Runner AddProfileCommand(CLI::App& app) {
  auto args = std::make_shared<ProfileArgs>();
  CLI::App* cmd = app.add_subcommand(
      "profile",
      "Profile every field of an event file: count, missing rate, min, max, mean, std,\n"
      "quantiles (KLL sketch), top categories with frequencies and a distinct-count estimate\n"
      "(HyperLogLog). Only valid records are profiled. The JSON format is in docs/profile.md;\n"
      "`vigil validate --profile` uses it to flag outliers.");
  AddEventInputOptions(cmd, &args->input);
  cmd->add_option("--out", args->out, "profile JSON to write")->required();
  cmd->footer(
      "Example:\n"
      "  vigil profile --schema examples/handbook/schema.yaml --events transactions.csv.gz \\\n"
      "      --out profile.json\n"
      "  vigil validate --schema examples/handbook/schema.yaml --events new.csv --profile profile.json");
  return [args] { return Run(*args); };
}

}  // namespace vigil::cli
