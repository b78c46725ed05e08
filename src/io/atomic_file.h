// Writing a whole file so that readers only ever see the old file or the
// complete new one: the bytes go to a temporary file in the same folder,
// which is renamed over `file` once fully written. A failure (disk full, no
// permission) removes the temporary file and leaves `file` as it was.
#pragma once

#include <filesystem>
#include <string_view>

#include "kvant/status.h"

namespace kvant {

Status write_file_atomic(const std::filesystem::path& file, std::string_view bytes);

}  // namespace kvant
