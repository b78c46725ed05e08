// How kvant writes every file: models, external data, .npy outputs, reports
// (docs/security.md).
//
//   1. A temporary file is created beside the target, in the same folder, as
//      ".<name>.kvant-<16 random hex digits>" with
//      open(O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600): it
//      never follows a planted link and never opens a file that exists (a
//      name taken is retried with new random digits).
//   2. The bytes are written, fsync'd, and the file gets its final mode:
//      that of the regular file it replaces, else 0666 less the umask, as a
//      plain create would give.
//   3. The target is checked again with lstat: anything that exists and is
//      not a regular file (a symbolic link, FIFO, device, socket, folder) is
//      refused, never replaced.
//   4. rename(temporary, target), then the folder is fsync'd.
// On any failure the temporary is removed and the target is left as it was;
// readers only ever see the old file or the complete new one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "kvant/status.h"

namespace kvant {

class OutputFile {
 public:
  // Creates the temporary (step 1). Throws Error naming `target` when its
  // folder is missing or not writable, or when the target exists and is not
  // a regular file.
  explicit OutputFile(std::filesystem::path target);
  ~OutputFile();  // removes the temporary unless commit() succeeded
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  // The open temporary file, for writers that take a descriptor (protobuf).
  int fd() const { return fd_; }
  const std::filesystem::path& target() const { return target_; }
  // Bytes written so far (the temporary's size).
  int64_t size() const;
  // Appends bytes; throws Error naming the target on a short write.
  void write(const void* data, size_t size);
  void write(std::string_view bytes) { write(bytes.data(), bytes.size()); }
  // Steps 2-4. Throws Error naming the target; the temporary is removed.
  void commit();

 private:
  void discard() noexcept;

  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  unsigned mode_ = 0;  // the final permission bits
  bool committed_ = false;
};

// Checks, before any work is done, that `target` may be written: its folder
// exists, and it is absent or a regular file (then only with `overwrite`).
// `option` names where the path came from ("-o", "--report"); throws Error.
void check_output_target(const std::filesystem::path& target, bool overwrite, const std::string& option);

// "a symbolic link", "a FIFO", "a character device", ... for the file at
// `path` as lstat sees it; empty when it does not exist, "a regular file".
std::string file_kind(const std::filesystem::path& path);

}  // namespace kvant
