// The input every event-reading command shares: a schema, an event file, its
// format, and the pii key. Backfill, decide and the other commands that read
// event files take the same options the same way.
#ifndef VIGIL_CLI_EVENT_INPUT_H_
#define VIGIL_CLI_EVENT_INPUT_H_

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "event/event_reader.h"
#include "event/pii.h"
#include "event/schema.h"

namespace vigil::cli {

struct EventInputArgs {
  std::string schema;
  std::string events;
  std::string format = "auto";
};

// Adds --schema, --events and --format to `cmd`.
void AddEventInputOptions(CLI::App* cmd, EventInputArgs* args);

struct EventInput {
  std::shared_ptr<const event::Schema> schema;
  std::unique_ptr<event::PiiHasher> hasher;  // the reader points at it
  std::unique_ptr<event::EventReader> reader;
};

// Loads the schema and the pii key and opens the events. On failure prints
// "vigil <command>: <what went wrong>" to standard error and returns nullopt.
// `quiet` leaves out the warning about a missing pii key (a second pass).
std::optional<EventInput> OpenEventInput(const EventInputArgs& args, const char* command,
                                         bool quiet = false);

// Prints "vigil <command>: <status message>" to standard error.
void PrintError(const char* command, const absl::Status& status);

}  // namespace vigil::cli

#endif  // VIGIL_CLI_EVENT_INPUT_H_
