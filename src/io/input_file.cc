#include "io/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kvant {

namespace fs = std::filesystem;

namespace {

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

[[noreturn]] void refuse(const fs::path& file, mode_t mode) {
  throw Error(ErrorCode::kInvalidArgument,
              file.string() + ": is " + kind_of(mode) + ", not a regular file; kvant reads only regular files");
}

}  // namespace

InputFile::InputFile(const fs::path& file) : path_(file) {
  fd_ = ::open(file.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) throw Error(ErrorCode::kNotFound, file.string() + ": no such file");
    struct stat st;
    if (::stat(file.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) refuse(file, st.st_mode);
    throw Error(ErrorCode::kNotFound, file.string() + ": cannot be opened (" + std::strerror(err) + ")");
  }
  struct stat st;
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    const mode_t mode = st.st_mode;
    ::close(fd_);
    fd_ = -1;
    refuse(file, mode);
  }
  // Regular files never block; reads are plain blocking reads again.
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

size_t InputFile::read_up_to(uint64_t offset, void* out, size_t size) const {
  char* p = static_cast<char*>(out);
  size_t done = 0;
  while (done < size) {
    const ssize_t n =
        ::pread(fd_, p + done, std::min<size_t>(size - done, size_t{1} << 30), static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      throw Error(ErrorCode::kInvalidArgument, path_.string() + ": read error (" + std::strerror(errno) + ")");
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return done;
}

void InputFile::read_at(uint64_t offset, void* out, size_t size) const {
  const size_t got = read_up_to(offset, out, size);
  if (got != size) {
    throw Error(ErrorCode::kInvalidArgument, path_.string() + ": read " + std::to_string(got) + " of " +
                                                 std::to_string(size) + " bytes at offset " + std::to_string(offset) +
                                                 " (file truncated or changed while reading?)");
  }
}

std::string InputFile::read_all() const {
  std::string bytes(static_cast<size_t>(size_), '\0');
  read_at(0, bytes.data(), bytes.size());
  return bytes;
}

void check_regular_input(const fs::path& file) { InputFile probe(file); }

}  // namespace kvant
