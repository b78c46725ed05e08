#include "io/output_file.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

namespace kvant {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const fs::path& target, const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, target.string() + ": " + message);
}

std::string errno_text(int err) { return std::strerror(err); }

std::string kind_of(mode_t mode) {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// Why an existing non-regular target is refused, e.g. "is a symbolic link
// (to /etc/passwd); kvant only replaces regular files".
std::string refusal(const fs::path& target, mode_t mode) {
  std::string what = "is " + kind_of(mode);
  if (S_ISLNK(mode)) {
    std::error_code ec;
    const fs::path to = fs::read_symlink(target, ec);
    if (!ec) what += " (to " + to.string() + ")";
  }
  return what + "; kvant only writes regular files and never writes through a link, so it leaves it alone";
}

// The permission bits a plain creat(path, 0666) would give: 0666 & ~umask.
// umask() can only be read by setting it, so it is set back at once, under a
// lock (kvant creates files from one thread; the lock covers library users).
unsigned default_mode() {
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  const mode_t mask = ::umask(077);
  ::umask(mask);
  return 0666u & ~static_cast<unsigned>(mask);
}

std::string random_suffix() {
  uint64_t bits = 0;
  if (::getrandom(&bits, sizeof bits, 0) != static_cast<ssize_t>(sizeof bits)) {
    std::random_device device;
    bits = (static_cast<uint64_t>(device()) << 32) ^ device();
  }
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(bits));
  return text;
}

fs::path folder_of(const fs::path& target) {
  const fs::path dir = target.parent_path();
  return dir.empty() ? fs::path(".") : dir;
}

}  // namespace

std::string file_kind(const fs::path& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return "";
  return kind_of(st.st_mode);
}

void check_output_target(const fs::path& target, bool overwrite, const std::string& option) {
  const std::string label = option.empty() ? target.string() : option + " " + target.string();
  if (target.empty() || !target.has_filename()) {
    throw Error(ErrorCode::kInvalidArgument, label + ": not a file name");
  }
  const fs::path dir = folder_of(target);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error(ErrorCode::kNotFound, label + ": folder " + dir.string() + " does not exist");
  }
  struct stat st;
  if (::lstat(target.c_str(), &st) != 0) return;
  if (!S_ISREG(st.st_mode)) throw Error(ErrorCode::kInvalidArgument, label + " " + refusal(target, st.st_mode));
  if (!overwrite) throw Error(ErrorCode::kInvalidArgument, label + " already exists; pass --force to overwrite it");
}

OutputFile::OutputFile(fs::path target) : target_(std::move(target)) {
  if (target_.empty() || !target_.has_filename()) fail(target_, "not a file name");
  const fs::path dir = folder_of(target_);
  struct stat st;
  if (::lstat(target_.c_str(), &st) == 0) {
    if (!S_ISREG(st.st_mode)) fail(target_, refusal(target_, st.st_mode));
    mode_ = st.st_mode & 07777;
  } else {
    mode_ = default_mode();
  }
  std::string base = target_.filename().string();
  if (base.size() > 200) base.resize(200);
  base.insert(base.begin(), '.');
  base.append(".kvant-");
  for (int attempt = 0; attempt < 100; ++attempt) {
    const fs::path temp = dir / (base + random_suffix());
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      fd_ = fd;
      temp_ = temp;
      return;
    }
    if (errno == EEXIST) continue;  // a name taken (or planted): draw another
    const int err = errno;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) fail(target_, "folder " + dir.string() + " does not exist");
    fail(target_, "cannot create a file in " + dir.string() + " (" + errno_text(err) + ")");
  }
  fail(target_, "cannot create a temporary file in " + dir.string() + " (100 names taken)");
}

OutputFile::~OutputFile() {
  if (!committed_) discard();
}

void OutputFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
}

int64_t OutputFile::size() const {
  struct stat st;
  if (fd_ < 0 || ::fstat(fd_, &st) != 0) return 0;
  return static_cast<int64_t>(st.st_size);
}

void OutputFile::write(const void* data, size_t size) {
  if (fd_ < 0) fail(target_, "write after the file was closed");
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd_, p, std::min<size_t>(size, size_t{1} << 30));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      discard();
      fail(target_, "write failed (" + errno_text(err) + ")");
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void OutputFile::commit() {
  if (fd_ < 0) fail(target_, "commit after the file was closed");
  if (::fsync(fd_) != 0 || ::fchmod(fd_, static_cast<mode_t>(mode_)) != 0) {
    const int err = errno;
    discard();
    fail(target_, "cannot finish writing (" + errno_text(err) + ")");
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int err = errno;
    discard();
    fail(target_, "cannot finish writing (" + errno_text(err) + ")");
  }
  // Checked again now: something may have been put there since we started.
  struct stat st;
  if (::lstat(target_.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    const std::string why = refusal(target_, st.st_mode);
    discard();
    fail(target_, why);
  }
  if (::rename(temp_.c_str(), target_.c_str()) != 0) {
    const int err = errno;
    discard();
    fail(target_, "cannot be written (" + errno_text(err) + ")");
  }
  committed_ = true;
  temp_.clear();
  const int dir = ::open(folder_of(target_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);  // best effort: some file systems refuse fsync on folders
    ::close(dir);
  }
}

}  // namespace kvant
