// The input every event-reading command shares: a schema, the event files,
// their format, and the pii key. Backfill, decide and the other commands that
// read event files take the same options the same way.
//
// --events names a file (.csv, .jsonl, optionally .gz), - for standard input,
// or a directory, read as its *.jsonl and *.jsonl.gz files in name order (a
// rotated event log, docs/monitoring.md). Commands that take several
// (EventsArity::kMany: backfill) accept several: --events A B, or --events A
// --events B; all the files are read as one stream, in the order given
// (event/event_reader.h).
#ifndef VIGIL_CLI_EVENT_INPUT_H_
#define VIGIL_CLI_EVENT_INPUT_H_

#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "event/event_reader.h"
#include "event/pii.h"
#include "event/schema.h"

namespace vigil::cli {

struct EventInputArgs {
  std::string schema;
  std::string events;                    // --events of a one-input command
  std::vector<std::string> events_list;  // --events of a kMany command; wins when not empty
  std::string format = "auto";
};

enum class EventsArity { kOne, kMany };

// Adds --schema, --events (once, or repeatable with kMany) and --format to
// `cmd`.
void AddEventInputOptions(CLI::App* cmd, EventInputArgs* args,
                          EventsArity arity = EventsArity::kOne);

struct EventInput {
  std::shared_ptr<const event::Schema> schema;
  std::unique_ptr<event::PiiHasher> hasher;  // the reader points at it
  std::unique_ptr<event::EventReader> reader;
  // The files read, directories expanded. Open a second pass over exactly
  // these (a directory may have gained a file since).
  std::vector<std::string> files;
};

// Loads the schema and the pii key and opens the events. On failure prints
// "vigil <command>: <what went wrong>" to standard error and returns nullopt.
// `quiet` leaves out the warning about a missing pii key (a second pass).
// `files`, when given, replaces the --events of `args` (a second pass).
// `schema`, when given, is the one loaded from args.schema already (a file
// read twice could be a pipe, `--schema <(...)`, empty the second time).
std::optional<EventInput> OpenEventInput(const EventInputArgs& args, const char* command,
                                         bool quiet = false,
                                         const std::vector<std::string>* files = nullptr,
                                         std::shared_ptr<const event::Schema> schema = nullptr);

// Prints "vigil <command>: <status message>" to standard error.
void PrintError(const char* command, const absl::Status& status);

}  // namespace vigil::cli

#endif  // VIGIL_CLI_EVENT_INPUT_H_
