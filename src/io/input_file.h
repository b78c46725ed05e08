// How kvant opens every file it reads: models, external data, .npy/.npz,
// IDX, .pb tensors, images, labels (docs/security.md).
//
// The file is opened with O_RDONLY | O_NONBLOCK | O_CLOEXEC, so opening a
// FIFO cannot block, then fstat'ed: anything but a regular file (a FIFO,
// character or block device such as /dev/zero, socket, folder) is refused
// with an error naming the file and what it is. A link to a regular file is
// followed. Checking the open descriptor, not the name, leaves no window in
// which the file could be swapped for a FIFO after the check.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "kvant/status.h"

namespace kvant {

class InputFile {
 public:
  // Throws Error(kNotFound) when the file is missing or cannot be opened,
  // Error(kInvalidArgument) when it is not a regular file. Messages start
  // with "<file>: ".
  explicit InputFile(const std::filesystem::path& file);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  int fd() const { return fd_; }
  uint64_t size() const { return size_; }
  const std::filesystem::path& path() const { return path_; }
  // Exactly `size` bytes at `offset` (pread); throws naming the file when
  // the file holds fewer.
  void read_at(uint64_t offset, void* out, size_t size) const;
  // Up to `size` bytes at `offset`; returns how many were read.
  size_t read_up_to(uint64_t offset, void* out, size_t size) const;
  // The whole file.
  std::string read_all() const;

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// Throws as InputFile does unless `file` is (a link to) a regular file: for
// readers that must open by name (zlib's gzopen is given a descriptor
// instead where possible).
void check_regular_input(const std::filesystem::path& file);

}  // namespace kvant
