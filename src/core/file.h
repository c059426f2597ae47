// Whole small files (configuration, models, tables) read into memory.
//
// Thread-safety: a plain function.
#ifndef VIGIL_CORE_FILE_H_
#define VIGIL_CORE_FILE_H_

#include <string>

#include "core/status.h"

namespace vigil::core {

// The file's bytes. NotFound "<path>: cannot open: <reason>" when it cannot
// be opened, DataLoss "<path>: read error" when reading fails.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace vigil::core

#endif  // VIGIL_CORE_FILE_H_
