// `vigil validate`: streams an event file through the schema and reports.
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/strings.h"
#include "cli/commands.h"
#include "cli/event_input.h"
#include "cli/progress.h"
#include "event/dead_letter.h"
#include "event/event_reader.h"
#include "event/profile.h"
#include "event/schema.h"
#include "nlohmann/json.hpp"

namespace vigil::cli {
namespace {

struct ValidateArgs {
  EventInputArgs input;
  std::string dead_letter;
  std::string report;
  std::string profile;
  double outlier_k = 3.0;
  int examples = 5;
};

std::string DefaultDeadLetterPath(const std::string& events) {
  if (events == "-") return "stdin.dead-letter.jsonl";
  std::string base = events.substr(events.find_last_of('/') + 1);
  for (const char* ext : {".gz", ".csv", ".jsonl", ".ndjson", ".json"}) {
    const std::string e(ext);
    if (base.size() > e.size() && base.compare(base.size() - e.size(), e.size(), e) == 0) {
      base.resize(base.size() - e.size());
    }
  }
  return base + ".dead-letter.jsonl";
}

// Counts by rule and field, and keeps a few examples.
struct Tally {
  int64_t records = 0;  // records with at least one violation
  std::map<std::string, int64_t> by_rule, by_field;
  std::vector<std::string> examples;

  void Add(const event::Rejection& r, size_t max_examples) {
    ++records;
    for (const event::Violation& v : r.violations) {
      ++by_rule[event::RuleName(v.rule)];
      ++by_field[v.field.empty() ? "(record)" : v.field];
    }
    if (examples.size() < max_examples && !r.violations.empty()) {
      const event::Violation& v = r.violations[0];
      examples.push_back(StrCat("record ", r.record_no, " (line ", r.line_no,
                                      r.event_id.empty() ? "" : StrCat(", event ", r.event_id),
                                      "): ", v.reason, " [", event::RuleName(v.rule), "]"));
    }
  }
};

std::string Join(const std::map<std::string, int64_t>& m) {
  std::vector<std::pair<int64_t, std::string>> v;
  for (const auto& [k, n] : m) v.emplace_back(-n, k);
  std::sort(v.begin(), v.end());
  std::string s;
  for (size_t i = 0; i < v.size() && i < 8; ++i) {
    StrAppend(&s, i ? ", " : "", v[i].second, " ", Thousands(-v[i].first));
  }
  if (v.size() > 8) StrAppend(&s, ", … (", v.size() - 8, " more)");
  return s;
}

int Run(const ValidateArgs& a) {
  std::unique_ptr<event::OutlierChecker> outliers;
  std::optional<EventInput> in = OpenEventInput(a.input, "validate");
  if (!in) return kExitError;
  event::EventReader& reader = *in->reader;
  if (!a.profile.empty()) {
    auto p = event::Profile::Load(a.profile);
    if (!p.ok()) {
      PrintError("validate", p.status());
      return kExitError;
    }
    outliers = std::make_unique<event::OutlierChecker>(std::move(*p), *in->schema, a.outlier_k);
  }
  const std::string dl_path = a.dead_letter.empty() ? DefaultDeadLetterPath(a.input.events) : a.dead_letter;
  std::unique_ptr<event::DeadLetterWriter> dead;  // opened at the first rejection

  Progress progress("validate");
  event::Record rec;
  event::Rejection rej;
  Tally rejected, warned;
  std::vector<event::Violation> warnings;
  int64_t valid = 0;
  while (true) {
    const auto r = reader.Next(&rec, &rej);
    if (r == event::EventReader::Result::kEnd) break;
    progress.Tick(reader.records_read(), reader.bytes_read());
    if (r == event::EventReader::Result::kRecord) {
      ++valid;
      if (outliers && outliers->Check(rec, reader.validator(), &warnings)) {
        event::Rejection w;
        w.record_no = rec.record_no;
        w.line_no = rec.line_no;
        w.event_id = std::string(rec.event_id);
        w.violations = warnings;
        warned.Add(w, static_cast<size_t>(a.examples));
      }
      continue;
    }
    rejected.Add(rej, static_cast<size_t>(a.examples));
    if (!dead) {
      auto d = event::DeadLetterWriter::Open(dl_path);
      if (!d.ok()) {
        progress.Done();
        PrintError("validate", d.status());
        return kExitError;
      }
      dead = std::move(*d);
    }
    if (auto st = dead->Write(rej); !st.ok()) {
      progress.Done();
      PrintError("validate", st);
      return kExitError;
    }
  }
  progress.Done();
  const double secs = progress.Seconds();
  if (dead) {
    if (auto st = dead->Close(); !st.ok()) {
      PrintError("validate", st);
      return kExitError;
    }
  }
  const int64_t read = reader.records_read();
  const bool io_error = !reader.status().ok();

  std::printf("validate: %s (%s%s) against %s\n", a.input.events.c_str(),
              event::FormatName(reader.format()), reader.gzip() ? ", gzip" : "",
              a.input.schema.c_str());
  std::printf("  read      %s records in %.2f s (%.2f M records/s)\n", Thousands(read).c_str(), secs,
              secs > 0 ? static_cast<double>(read) / secs / 1e6 : 0.0);
  std::printf("  valid     %s\n", Thousands(valid).c_str());
  std::printf("  rejected  %s\n", Thousands(rejected.records).c_str());
  if (rejected.records > 0) {
    std::printf("    by rule:  %s\n", Join(rejected.by_rule).c_str());
    std::printf("    by field: %s\n", Join(rejected.by_field).c_str());
    std::printf("  examples:\n");
    for (const std::string& e : rejected.examples) std::printf("    %s\n", e.c_str());
    std::printf("  dead letters: %s (%s records)\n", dl_path.c_str(), Thousands(dead->written()).c_str());
  }
  std::printf("  warnings  %s\n", Thousands(warned.records).c_str());
  if (warned.records > 0) {
    std::printf("    by rule:  %s\n", Join(warned.by_rule).c_str());
    std::printf("    by field: %s\n", Join(warned.by_field).c_str());
    for (const std::string& e : warned.examples) std::printf("    %s\n", e.c_str());
  }
  if (io_error) {
    std::fprintf(stderr, "vigil validate: stopped after %s records: %s\n", Thousands(read).c_str(),
                 std::string(reader.status().message()).c_str());
  }

  if (!a.report.empty()) {
    nlohmann::ordered_json j;
    j["read"] = read;
    j["valid"] = valid;
    j["rejected"] = rejected.records;
    j["by_rule"] = rejected.by_rule;
    j["by_field"] = rejected.by_field;
    j["warnings"] = {{"records", warned.records},
                     {"by_rule", warned.by_rule},
                     {"by_field", warned.by_field},
                     {"examples", warned.examples}};
    j["examples"] = rejected.examples;
    j["events"] = a.input.events;
    j["schema"] = a.input.schema;
    j["schema_hash"] = in->schema->content_hash;
    j["format"] = event::FormatName(reader.format());
    j["dead_letter"] = dead ? nlohmann::ordered_json(dl_path) : nlohmann::ordered_json(nullptr);
    j["complete"] = !io_error;
    if (io_error) j["error"] = std::string(reader.status().message());
    j["elapsed_s"] = secs;
    std::ofstream out(a.report);
    out << j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
    if (!out) {
      std::fprintf(stderr, "vigil validate: %s: cannot write the report\n", a.report.c_str());
      return kExitError;
    }
  }
  if (io_error) return kExitError;
  return rejected.records > 0 ? kExitRejected : kExitOk;
}

}  // namespace

Runner AddValidateCommand(CLI::App& app) {
  auto args = std::make_shared<ValidateArgs>();
  CLI::App* cmd = app.add_subcommand(
      "validate",
      "Check an event file against a schema: types, required fields, bounds, patterns, allowed\n"
      "values, UTF-8, time bounds, duplicate ids, label shape. Streams files of any size\n"
      "(CSV with a header or JSON Lines; plain, gzip or - for standard input). Every rejected\n"
      "record goes to a dead-letter JSON Lines file with the field, rule, value and reason.\n"
      "Exit status: 0 all valid (warnings allowed), 1 some rejected, 2 usage, config or I/O error.");
  AddEventInputOptions(cmd, &args->input);
  cmd->add_option("--dead-letter", args->dead_letter,
                  "where rejected records go (default: <events name>.dead-letter.jsonl in the "
                  "current folder, created only when a record is rejected)");
  cmd->add_option("--report", args->report,
                  "write a JSON report {read, valid, rejected, by_rule, by_field, warnings}");
  cmd->add_option("--profile", args->profile,
                  "a profile from `vigil profile`: values far outside its robust range and "
                  "unseen categories are counted as warnings (never rejected)");
  cmd->add_option("--outlier-k", args->outlier_k,
                  "how far outside the profile's p1..p99 range counts as an outlier, in "
                  "multiples of that range (default 3)");
  cmd->add_option("--examples", args->examples, "how many example rejections to print (default 5)");
  cmd->footer(
      "Example:\n"
      "  vigil validate --schema examples/handbook/schema.yaml \\\n"
      "      --events transactions.csv.gz --dead-letter rejected.jsonl --report report.json");
  return [args] { return Run(*args); };
}

}  // namespace vigil::cli
