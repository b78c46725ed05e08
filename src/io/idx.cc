// IDX files (the MNIST format, http://yann.lecun.com/exdb/mnist/), plain or
// gzip-compressed: zlib's gzread reads both, so one path serves the two.
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <memory>

#include "io/dataset_internal.h"
#include "io/input_file.h"

namespace kvant {

namespace {

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

// Reads up to `size` bytes; returns how many were read.
size_t gz_read(gzFile file, void* out, size_t size, const std::string& name) {
  size_t done = 0;
  while (done < size) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(size - done, 1u << 20));
    const int got = gzread(file, static_cast<char*>(out) + done, chunk);
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file, &code);
      data_error(name + ": cannot decompress (" + std::string(message ? message : "zlib error") + ")");
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return done;
}

}  // namespace

IdxArray read_idx(const std::filesystem::path& file) {
  const std::string name = file.string();
  const InputFile in(file);  // refuses FIFOs, devices (io/input_file.h)
  const int fd = ::dup(in.fd());
  GzFile gz(fd < 0 ? nullptr : gzdopen(fd, "rb"));
  if (!gz) {
    if (fd >= 0) ::close(fd);
    throw Error(ErrorCode::kNotFound, name + ": cannot be opened");
  }

  uint8_t magic[4];
  if (gz_read(gz.get(), magic, 4, name) != 4) data_error(name + ": too short for an IDX file");
  if (magic[0] != 0 || magic[1] != 0) data_error(name + ": not an IDX file (bad magic number)");
  if (magic[2] != 0x08) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02x", magic[2]);
    data_error(name + ": IDX element type " + hex + " is not supported (only 0x08, unsigned byte)");
  }
  const int rank = magic[3];
  if (rank < 1) data_error(name + ": IDX rank 0");
  IdxArray array;
  for (int i = 0; i < rank; ++i) {
    uint8_t b[4];
    if (gz_read(gz.get(), b, 4, name) != 4) data_error(name + ": truncated IDX header");
    array.shape.push_back(
        static_cast<int64_t>((uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]}));
  }
  int64_t numel = 0;
  try {
    numel = checked_numel(array.shape);
  } catch (const Error& e) {
    data_error(name + ": IDX shape " + shape_to_string(array.shape) + " is too large");
  }
  // Grow with the data actually present, so a lying header allocates nothing
  // beyond what the file holds, and never beyond the memory budget.
  const size_t want = static_cast<size_t>(numel);
  try {
    array.reservation = MemoryReservation(numel, name + ": IDX data of shape " + shape_to_string(array.shape));
  } catch (const Error& e) {
    data_error(e.what());
  }
  size_t have = 0;
  while (have < want) {
    const size_t step = std::min<size_t>(want - have, size_t{16} << 20);
    array.data.resize(have + step);
    const size_t got = gz_read(gz.get(), array.data.data() + have, step, name);
    have += got;
    if (got < step) {
      data_error(name + ": truncated IDX file: shape " + shape_to_string(array.shape) + " needs " +
                 std::to_string(want) + " bytes of data, the file holds " + std::to_string(have));
    }
  }
  return array;
}

}  // namespace kvant
