// Whole small files (configuration, models, tables) read into memory.
//
// Thread-safety: a plain function.
#ifndef VIGIL_CORE_FILE_H_
#define VIGIL_CORE_FILE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/status.h"

namespace vigil::core {

// The file's bytes. NotFound "<path>: cannot open: <reason>" when it cannot
// be opened, DataLoss "<path>: read error" when reading fails,
// ResourceExhausted when it holds more than `max_bytes` (read no further:
// /dev/zero, a pipe that does not end).
absl::StatusOr<std::string> ReadFile(const std::string& path, size_t max_bytes = SIZE_MAX);

// Replaces the file at `path` with `bytes` whole or not at all: written to
// `path`.<pid>.tmp (the process's own: two processes writing the same file,
// a server and its save in the background, never share one), synced,
// renamed over `path`, and the folder synced, so that a crash leaves the old
// file or the new one (and perhaps a .tmp file: RemoveStaleTemporaries).
// DataLoss naming the file and the reason when a step fails (the old file
// is then untouched).
absl::Status WriteFileAtomic(const std::string& path, std::string_view bytes);

// WriteFileAtomic in two steps, for a file that may take its place only
// later (a state saved in a child process, valid once what it covers is
// stored): WriteTemporary writes and syncs `path`.<pid>.tmp and returns its
// name; CommitTemporary renames it over `path` and syncs the folder. Until
// then it is a temporary like any other (RemoveStaleTemporaries).
absl::StatusOr<std::string> WriteTemporary(const std::string& path, std::string_view bytes);
absl::Status CommitTemporary(const std::string& tmp, const std::string& path);

// Deletes the `path`.<pid>.tmp files WriteFileAtomic left behind when a
// process died while writing `path`, but that of a process still running
// (it may be writing now). Returns how many it deleted.
int RemoveStaleTemporaries(const std::string& path);

// Closes every descriptor from 3 up but `keep`: what a child forked from a
// server does before it runs on its own, so that it holds no socket or lock
// of its parent. Async-signal-safe (callable after fork() in a process with
// threads). close_range(2) where the kernel has it (Linux 5.9 on); else, or
// with `use_close_range` false (tests), one by one up to the descriptor limit
// (at most 2^20).
void CloseDescriptorsExcept(int keep, bool use_close_range = true);

}  // namespace vigil::core

#endif  // VIGIL_CORE_FILE_H_
