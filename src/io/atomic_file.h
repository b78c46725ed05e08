// Writing a whole file so that readers only ever see the old file or the
// complete new one, never through a link and never over anything but a
// regular file (io/output_file.h has the steps). A failure (disk full, no
// permission, a FIFO or link at the target) removes the temporary file and
// leaves `file` as it was.
#pragma once

#include <filesystem>
#include <string_view>

#include "kvant/status.h"

namespace kvant {

Status write_file_atomic(const std::filesystem::path& file, std::string_view bytes);

}  // namespace kvant
