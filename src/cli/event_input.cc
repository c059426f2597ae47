#include "cli/event_input.h"

#include <algorithm>

#include "event/event_log.h"

namespace vigil::cli {

void AddEventInputOptions(CLI::App* cmd, EventInputArgs* a, EventsArity arity) {
  cmd->add_option("--schema", a->schema, "schema YAML (see docs/schema.md)")->required();
  if (arity == EventsArity::kMany) {
    cmd->add_option("--events", a->events_list,
                    "events: .csv, .jsonl, optionally .gz, - for stdin, or a directory (its "
                    "*.jsonl[.gz] in name order); several (--events A B, or --events A --events B) "
                    "are read as one stream, in the order given")
        ->required();
  } else {
    cmd->add_option("--events", a->events,
                    "events: .csv, .jsonl, optionally .gz, - for stdin, or a directory (its "
                    "*.jsonl[.gz] in name order)")
        ->required();
  }
  cmd->add_option("--format", a->format, "csv, jsonl or auto (from the name, else the content)")
      ->check(CLI::IsMember({"auto", "csv", "jsonl"}));
}

void PrintError(const char* command, const absl::Status& status) {
  std::fprintf(stderr, "vigil %s: %s\n", command, std::string(status.message()).c_str());
}

std::optional<EventInput> OpenEventInput(const EventInputArgs& a, const char* command, bool quiet,
                                         const std::vector<std::string>* files,
                                         std::shared_ptr<const event::Schema> loaded) {
  EventInput in;
  if (loaded) {
    in.schema = std::move(loaded);
  } else {
    auto schema = event::Schema::Load(a.schema);
    if (!schema.ok()) {
      PrintError(command, schema.status());
      return std::nullopt;
    }
    in.schema = *schema;
  }
  std::string warning;
  in.hasher = std::make_unique<event::PiiHasher>(
      event::PiiHasher::FromEnv(in.schema->pii_key_env, &warning));
  if (in.schema->has_pii && !warning.empty() && !quiet) {
    std::fprintf(stderr, "vigil %s: warning: %s\n", command, warning.c_str());
  }
  event::Format format = event::Format::kAuto;
  if (a.format == "csv") format = event::Format::kCsv;
  if (a.format == "jsonl") format = event::Format::kJsonLines;
  if (files) {
    in.files = *files;
  } else {
    auto expanded = event::ExpandEventPaths(a.events_list.empty()
                                                ? std::vector<std::string>{a.events}
                                                : a.events_list);
    if (!expanded.ok()) {
      PrintError(command, expanded.status());
      return std::nullopt;
    }
    in.files = std::move(*expanded);
  }
  auto reader = event::EventReader::OpenFiles(in.files, in.schema, in.hasher.get(), format);
  if (!reader.ok()) {
    PrintError(command, reader.status());
    return std::nullopt;
  }
  in.reader = std::move(*reader);
  // A live server's event log: its events were checked against that
  // server's clock when it took them; read as it took them.
  const size_t logs =
      static_cast<size_t>(std::count_if(in.files.begin(), in.files.end(), [](const std::string& f) {
        return event::IsEventLogFile(f);
      }));
  if (logs == in.files.size()) {
    in.reader->mutable_validator().SetReplaying(true);
  } else if (logs > 0 && !quiet) {
    std::fprintf(stderr,
                 "vigil %s: warning: %zu of the %zu files are event-log files and the others are "
                 "not: all are checked as plain files, the time bounds included\n",
                 command, logs, in.files.size());
  }
  return in;
}

}  // namespace vigil::cli
