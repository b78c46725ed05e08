#include "io/atomic_file.h"

#include "io/output_file.h"

namespace kvant {

Status write_file_atomic(const std::filesystem::path& file, std::string_view bytes) {
  try {
    OutputFile out(file);
    out.write(bytes);
    out.commit();
    return Status::ok_status();
  } catch (const Error& e) {
    return e.status();
  }
}

}  // namespace kvant
