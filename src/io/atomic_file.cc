#include "io/atomic_file.h"

#include <unistd.h>

#include <atomic>
#include <fstream>
#include <string>

namespace kvant {

namespace {
std::atomic<uint64_t> g_temp_counter{0};
}  // namespace

Status write_file_atomic(const std::filesystem::path& file, std::string_view bytes) {
  std::filesystem::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  std::string temp_name = ".";
  temp_name.append(file.filename().string());
  temp_name.append(".tmp-");
  temp_name.append(std::to_string(::getpid()));
  temp_name.append("-");
  temp_name.append(std::to_string(g_temp_counter.fetch_add(1)));
  const std::filesystem::path temp = dir / temp_name;
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) return invalid_argument(file.string() + ": cannot create a file in " + dir.string());
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      out.close();
      std::error_code ignored;
      std::filesystem::remove(temp, ignored);
      return invalid_argument(file.string() + ": write failed (disk full?)");
    }
  }
  std::error_code ec;
  std::filesystem::rename(temp, file, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(temp, ignored);
    return invalid_argument(file.string() + ": cannot be written (" + ec.message() + ")");
  }
  return Status::ok_status();
}

}  // namespace kvant
