// A small zip reader for .npz archives (PKWARE APPNOTE.TXT, sections 4.3-4.5).
//
//   [local header 30 B + name + extra][data] ...   one per entry
//   [central directory: 46 B + name + extra + comment per entry]
//   [zip64 end record 56 B][zip64 locator 20 B]    only in zip64 archives
//   [end of central directory 22 B + comment <= 65535 B]
//
// Sizes and offsets come from the central directory (NumPy writes entries
// with force_zip64, whose local headers hold 0xFFFFFFFF placeholders); the
// local header is read only for its name and extra lengths. Methods: 0
// (stored) and 8 (deflate, inflated by zlib as a raw stream). Encrypted and
// multi-disk archives are refused. Every offset and size is checked against
// the file's size before it is used. A .npy member is streamed: its header is
// inflated first, then the data straight into the tensor (allocated against
// the memory budget, ir/limits.h), after checking the declared size against
// deflate's largest ratio (1032:1); it must fill it exactly, CRC included.
#include <zlib.h>

#include <algorithm>
#include <vector>

#include "io/dataset_internal.h"
#include "io/input_file.h"
#include "io/npy.h"

namespace kvant {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kZip64EndSig = 0x06064b50;
constexpr uint32_t kZip64LocatorSig = 0x07064b50;
constexpr uint64_t kMaxDeflateRatio = 1032;

uint64_t le(const std::string& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + static_cast<size_t>(i)]);
  return v;
}

}  // namespace

std::string ZipReader::read_at(uint64_t offset, uint64_t size) const {
  if (offset > file_size_ || size > file_size_ - offset) {
    data_error(file_.string() + ": corrupt zip: a record at offset " + std::to_string(offset) + " of " +
               std::to_string(size) + " bytes runs past the end of the file (" + std::to_string(file_size_) +
               " bytes)");
  }
  std::string bytes(static_cast<size_t>(size), '\0');
  in_->read_at(offset, bytes.data(), bytes.size());
  return bytes;
}

ZipReader::ZipReader(std::filesystem::path file) : file_(std::move(file)), in_(std::make_shared<InputFile>(file_)) {
  const std::string name = file_.string();
  file_size_ = in_->size();
  if (file_size_ < 22) data_error(name + ": not a zip archive (too short)");

  // The end record is the last 22 bytes plus a comment of up to 65535 bytes.
  const uint64_t tail_size = std::min<uint64_t>(file_size_, 22 + 65535);
  const uint64_t tail_start = file_size_ - tail_size;
  const std::string tail = read_at(tail_start, tail_size);
  size_t end = std::string::npos;
  for (size_t i = tail.size() - 22 + 1; i-- > 0;) {
    if (le(tail, i, 4) == kEndSig && i + 22 + le(tail, i + 20, 2) == tail.size()) {
      end = i;
      break;
    }
  }
  if (end == std::string::npos) data_error(name + ": not a zip archive (no end of central directory record)");
  if (le(tail, end + 4, 2) != 0 || le(tail, end + 6, 2) != 0)
    data_error(name + ": multi-disk zip archives are not supported");
  uint64_t count = le(tail, end + 10, 2);
  uint64_t dir_size = le(tail, end + 12, 4);
  uint64_t dir_offset = le(tail, end + 16, 4);
  if (count == 0xFFFF || dir_size == 0xFFFFFFFF || dir_offset == 0xFFFFFFFF) {
    const uint64_t end_at = tail_start + end;
    if (end_at < 20) data_error(name + ": corrupt zip64 archive (no zip64 locator)");
    const std::string locator = read_at(end_at - 20, 20);
    if (le(locator, 0, 4) != kZip64LocatorSig) data_error(name + ": corrupt zip64 archive (no zip64 locator)");
    const std::string end64 = read_at(le(locator, 8, 8), 56);
    if (le(end64, 0, 4) != kZip64EndSig) data_error(name + ": corrupt zip64 archive (bad zip64 end record)");
    count = le(end64, 32, 8);
    dir_size = le(end64, 40, 8);
    dir_offset = le(end64, 48, 8);
  }
  const std::string dir = read_at(dir_offset, dir_size);
  // Each entry takes at least 46 bytes, which bounds `count` by the file.
  if (count > dir.size() / 46)
    data_error(name + ": corrupt zip: " + std::to_string(count) + " entries do not fit the central directory");
  size_t at = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (dir.size() - at < 46 || le(dir, at, 4) != kCentralSig) {
      data_error(name + ": corrupt zip: bad central directory entry " + std::to_string(i));
    }
    ZipEntry entry;
    const uint64_t flags = le(dir, at + 8, 2);
    entry.method = static_cast<uint16_t>(le(dir, at + 10, 2));
    entry.crc32 = static_cast<uint32_t>(le(dir, at + 16, 4));
    entry.compressed_size = le(dir, at + 20, 4);
    entry.uncompressed_size = le(dir, at + 24, 4);
    const size_t name_len = le(dir, at + 28, 2), extra_len = le(dir, at + 30, 2), comment_len = le(dir, at + 32, 2);
    entry.local_header_offset = le(dir, at + 42, 4);
    if (dir.size() - at - 46 < name_len + extra_len + comment_len) {
      data_error(name + ": corrupt zip: central directory entry " + std::to_string(i) + " is truncated");
    }
    entry.name = dir.substr(at + 46, name_len);
    if (flags & 1) data_error(name + ": entry \"" + entry.name + "\" is encrypted");
    // Zip64 extra field (id 1): 8-byte values for the fields set to 0xFFFFFFFF,
    // in the order uncompressed size, compressed size, local header offset.
    size_t x = at + 46 + name_len;
    const size_t x_end = x + extra_len;
    while (x_end - x >= 4) {
      const uint64_t id = le(dir, x, 2), len = le(dir, x + 2, 2);
      if (x_end - x - 4 < len) break;
      if (id == 1) {
        size_t f = x + 4;
        auto take = [&](uint64_t& field) {
          if (field != 0xFFFFFFFF) return;
          if (x + 4 + len - f < 8) data_error(name + ": corrupt zip64 extra field in \"" + entry.name + "\"");
          field = le(dir, f, 8);
          f += 8;
        };
        take(entry.uncompressed_size);
        take(entry.compressed_size);
        take(entry.local_header_offset);
      }
      x += 4 + len;
    }
    at += 46 + name_len + extra_len + comment_len;
    // NumPy reads the last of two members with one name, a zip reader that
    // stops at the first one the first: refuse the ambiguity.
    for (const ZipEntry& e : entries_) {
      if (e.name == entry.name) data_error(name + ": the archive holds two members named \"" + entry.name + "\"");
    }
    entries_.push_back(std::move(entry));
  }
}

// A member's bytes, read in order: stored bytes straight from the file, or
// deflate inflated 256 KiB of input at a time into the caller's buffer, so
// nothing but that chunk is ever held besides the destination. The CRC and
// the byte count are checked once the member is read to its end.
class ZipReader::MemberStream {
 public:
  MemberStream(const ZipReader& zip, const ZipEntry& entry, const std::string& where)
      : zip_(zip), entry_(entry), where_(where) {
    const std::string local = zip.read_at(entry.local_header_offset, 30);
    if (le(local, 0, 4) != kLocalSig) data_error(where + ": corrupt zip (bad local header)");
    offset_ = entry.local_header_offset + 30 + le(local, 26, 2) + le(local, 28, 2);
    zip.read_at(offset_, 0);  // the data's start lies inside the file
    if (entry.compressed_size > zip.file_size_ - offset_) {
      data_error(where + ": corrupt zip (the member runs past the end of the file)");
    }
    if (entry.method == 0) {
      if (entry.compressed_size != entry.uncompressed_size) data_error(where + ": corrupt zip (stored sizes differ)");
    } else if (entry.method == 8) {
      if (entry.uncompressed_size / kMaxDeflateRatio > entry.compressed_size + 1) {
        data_error(where + ": corrupt zip (declared size " + std::to_string(entry.uncompressed_size) +
                   " is impossible for " + std::to_string(entry.compressed_size) + " deflated bytes)");
      }
      if (inflateInit2(&z_, -MAX_WBITS) != Z_OK) throw Error(ErrorCode::kInternal, where + ": zlib init failed");
      inflating_ = true;
    } else {
      data_error(where + ": compression method " + std::to_string(entry.method) +
                 " is not supported (only stored and deflate)");
    }
  }
  ~MemberStream() {
    if (inflating_) inflateEnd(&z_);
  }

  size_t read(void* out, size_t n) {
    auto* dst = static_cast<unsigned char*>(out);
    size_t done = 0;
    if (!inflating_) {
      n = static_cast<size_t>(std::min<uint64_t>(n, entry_.compressed_size - consumed_));
      zip_.in_->read_at(offset_ + consumed_, dst, n);
      consumed_ += n;
      done = n;
    } else {
      while (done < n && !ended_) {
        if (z_.avail_in == 0 && consumed_ < entry_.compressed_size) {
          chunk_.resize(static_cast<size_t>(std::min<uint64_t>(entry_.compressed_size - consumed_, 256 << 10)));
          zip_.in_->read_at(offset_ + consumed_, chunk_.data(), chunk_.size());
          consumed_ += chunk_.size();
          z_.next_in = chunk_.data();
          z_.avail_in = static_cast<uInt>(chunk_.size());
        }
        z_.next_out = dst + done;
        z_.avail_out = static_cast<uInt>(std::min<size_t>(n - done, 1u << 30));
        const uInt before = z_.avail_out;
        const int rc = inflate(&z_, Z_NO_FLUSH);
        done += before - z_.avail_out;
        if (rc == Z_STREAM_END) {
          ended_ = true;
        } else if (rc != Z_OK && !(rc == Z_BUF_ERROR && z_.avail_out == 0)) {
          data_error(where_ + ": corrupt deflate data (" + (rc == Z_DATA_ERROR ? "invalid stream" : "truncated") + ")");
        } else if (before == z_.avail_out && z_.avail_in == 0 && consumed_ >= entry_.compressed_size) {
          data_error(where_ + ": corrupt deflate data (truncated)");
        }
      }
    }
    produced_ += done;
    if (produced_ > entry_.uncompressed_size) {
      data_error(where_ + ": corrupt deflate data (more than the declared " + std::to_string(entry_.uncompressed_size) +
                 " bytes)");
    }
    crc_ = crc32_z(crc_, dst, done);
    return done;
  }

  // After the last read: everything declared came, and the CRC matches.
  void finish() {
    if (produced_ != entry_.uncompressed_size) {
      data_error(where_ + ": corrupt zip (inflated " + std::to_string(produced_) + " bytes, expected " +
                 std::to_string(entry_.uncompressed_size) + ")");
    }
    if (crc_ != entry_.crc32) data_error(where_ + ": CRC mismatch (corrupt archive)");
  }

 private:
  const ZipReader& zip_;
  const ZipEntry& entry_;
  std::string where_;
  uint64_t offset_ = 0, consumed_ = 0, produced_ = 0;
  z_stream z_{};
  bool inflating_ = false, ended_ = false;
  std::vector<unsigned char> chunk_;
  uLong crc_ = crc32_z(0L, nullptr, 0);
};

Tensor ZipReader::read_npy_member(const ZipEntry& entry, const std::string& where) const {
  MemberStream stream(*this, entry, where);
  try {
    Tensor t = read_npy_stream([&](void* out, size_t n) { return stream.read(out, n); }, entry.uncompressed_size);
    stream.finish();
    return t;
  } catch (const Error& e) {
    const std::string message = e.what();
    throw Error(e.code(), message.starts_with(where) ? message : where + ": " + message);
  }
}

}  // namespace kvant
