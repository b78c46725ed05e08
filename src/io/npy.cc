#include "io/npy.h"

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <limits>
#include <optional>

#include "io/atomic_file.h"
#include "io/input_file.h"

namespace kvant {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLen = 6;
// numpy refuses headers over 10000 bytes unless asked; be a little more
// generous, but still bounded so a corrupt length cannot make us read GBs.
constexpr uint32_t kMaxHeaderLen = 1 << 16;

struct DescrEntry {
  char kind;  // 'f', 'i', 'u', 'b'
  int itemsize;
  DType dtype;
};

constexpr DescrEntry kDescrs[] = {
    {'f', 4, DType::kFloat32}, {'f', 8, DType::kFloat64}, {'f', 2, DType::kFloat16}, {'i', 1, DType::kInt8},
    {'u', 1, DType::kUInt8},   {'i', 2, DType::kInt16},   {'u', 2, DType::kUInt16},  {'i', 4, DType::kInt32},
    {'u', 4, DType::kUInt32},  {'i', 8, DType::kInt64},   {'u', 8, DType::kUInt64},  {'b', 1, DType::kBool},
};

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

struct Header {
  DType dtype = DType::kUndefined;
  int itemsize = 0;
  Shape shape;
  size_t data_offset = 0;  // bytes before the data
};

// A parser for the one Python literal numpy writes: a dict with string keys
// whose values are strings, True/False or tuples of non-negative ints.
class HeaderParser {
 public:
  explicit HeaderParser(std::string_view text) : text_(text) {}

  Header parse() {
    Header h;
    bool has_descr = false, has_order = false, has_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = parse_string("a key");
      expect(':');
      skip_space();
      if (key == "descr") {
        if (peek() == '[') fail("structured dtypes (a list as 'descr') are not supported");
        set_descr(parse_string("the 'descr' value"), h);
        has_descr = true;
      } else if (key == "fortran_order") {
        if (parse_bool()) {
          fail(
              "fortran_order=True (column-major) is not supported; save the array in C order "
              "(numpy.ascontiguousarray)");
        }
        has_order = true;
      } else if (key == "shape") {
        h.shape = parse_shape();
        has_shape = true;
      } else {
        fail("unexpected key '" + key + "' in the header");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      skip_space();
      if (peek() != '}') fail("malformed header: expected ',' or '}' at offset " + std::to_string(pos_));
    }
    ++pos_;
    skip_space();
    if (pos_ != text_.size()) fail("malformed header: unexpected text after the dict");
    if (!has_descr || !has_order || !has_shape) {
      fail("malformed header: it must have the keys 'descr', 'fortran_order' and 'shape'");
    }
    return h;
  }

 private:
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\t' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) {
      fail(std::string("malformed header: expected '") + c + "' at offset " + std::to_string(pos_));
    }
    ++pos_;
  }
  std::string parse_string(const char* what) {
    skip_space();
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail(std::string("malformed header: expected a string as ") + what);
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) fail("malformed header: unterminated string");
    std::string s(text_.substr(pos_ + 1, end - pos_ - 1));
    if (s.find('\\') != std::string::npos) fail("malformed header: escapes in strings are not supported");
    pos_ = end + 1;
    return s;
  }
  bool parse_bool() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("malformed header: 'fortran_order' must be True or False");
  }
  Shape parse_shape() {
    Shape shape;
    expect('(');
    while (true) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') fail("malformed header: 'shape' must be a tuple of non-negative ints");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (v > (std::numeric_limits<int64_t>::max() - 9) / 10) fail("the shape in the header is too large");
        v = v * 10 + (peek() - '0');
        ++pos_;
      }
      if (peek() == 'L') ++pos_;  // Python 2 longs
      shape.push_back(v);
      if (shape.size() > 64) fail("the shape in the header has more than 64 dimensions");
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail("malformed header: expected ',' or ')' in 'shape'");
      }
    }
    ++pos_;
    return shape;
  }
  static void set_descr(const std::string& descr, Header& h) {
    if (descr.size() < 3) fail("unsupported dtype '" + descr + "'");
    const char order = descr[0];
    if (order == '>') {
      fail("big-endian data ('" + descr + "') is not supported; convert with arr.astype(arr.dtype.newbyteorder('<'))");
    }
    if (order != '<' && order != '|' && order != '=') fail("unsupported dtype '" + descr + "'");
    const std::string rest = descr.substr(1);
    for (const DescrEntry& e : kDescrs) {
      if (rest.size() == 2 && rest[0] == e.kind && rest[1] - '0' == e.itemsize) {
        h.dtype = e.dtype;
        h.itemsize = e.itemsize;
        return;
      }
    }
    fail("unsupported dtype '" + descr + "' (supported: f2 f4 f8 i1 i2 i4 i8 u1 u2 u4 u8 b1)");
  }

  std::string_view text_;
  size_t pos_ = 0;
};

uint32_t read_le(const unsigned char* p, int bytes) {
  uint32_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Bytes of the preamble (magic + version + length field) for a version, and
// the header length it announces. `prefix` must hold at least 12 bytes or the
// whole file.
std::pair<size_t, uint32_t> read_preamble(std::string_view prefix) {
  if (prefix.size() < kMagicLen || std::memcmp(prefix.data(), kMagic, kMagicLen) != 0) {
    fail("not a .npy file (the NumPy magic bytes are missing)");
  }
  if (prefix.size() < 10) fail("truncated .npy file (the header is incomplete)");
  const auto* u = reinterpret_cast<const unsigned char*>(prefix.data());
  const int major = u[6], minor = u[7];
  if ((major != 1 && major != 2 && major != 3) || minor != 0) {
    fail("unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
         " (kvant reads 1.0, 2.0 and 3.0)");
  }
  const size_t length_bytes = major == 1 ? 2 : 4;
  if (prefix.size() < 8 + length_bytes) fail("truncated .npy file (the header is incomplete)");
  const uint32_t header_len = read_le(u + 8, static_cast<int>(length_bytes));
  if (header_len > kMaxHeaderLen) fail("the header length " + std::to_string(header_len) + " is implausibly large");
  return {8 + length_bytes, header_len};
}

Header parse_header(std::string_view bytes) {
  auto [preamble, header_len] = read_preamble(bytes);
  if (bytes.size() < preamble + header_len) fail("truncated .npy file (the header is incomplete)");
  const std::string_view text = bytes.substr(preamble, header_len);
  for (char c : text) {
    if (c == '\0') fail("malformed header: it contains a NUL byte");
  }
  Header h = HeaderParser(text).parse();
  h.data_offset = preamble + header_len;
  return h;
}

// Checks the data length against the shape and allocates the tensor. The
// length is compared before allocating, so a huge shape in a small file is an
// error, not an allocation.
Tensor allocate_checked(const Header& h, uint64_t data_bytes) {
  const int64_t numel = checked_numel(h.shape, h.dtype);  // throws on overflow / absurd size
  const uint64_t expected = static_cast<uint64_t>(numel) * static_cast<uint64_t>(h.itemsize);
  if (data_bytes != expected) {
    fail("the shape " + shape_to_string(h.shape) + " needs " + std::to_string(expected) +
         " bytes of data, the file has " + std::to_string(data_bytes) +
         (data_bytes < expected ? " (truncated file?)" : ""));
  }
  return Tensor(h.dtype, h.shape);
}

void normalize_bools(Tensor& t) {
  auto* p = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = p[i] != 0 ? 1 : 0;
}

std::string header_text(const Tensor& t, const char* descr) {
  std::string shape = "(";
  for (size_t i = 0; i < t.shape().size(); ++i) {
    shape += std::to_string(t.shape()[i]);
    shape += t.shape().size() == 1 ? "," : (i + 1 < t.shape().size() ? ", " : "");
  }
  shape += ")";
  return std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
}

void put_le(std::string& out, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

}  // namespace

const char* npy_descr(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "<f4";
    case DType::kFloat64: return "<f8";
    case DType::kFloat16: return "<f2";
    case DType::kInt8: return "|i1";
    case DType::kUInt8: return "|u1";
    case DType::kInt16: return "<i2";
    case DType::kUInt16: return "<u2";
    case DType::kInt32: return "<i4";
    case DType::kUInt32: return "<u4";
    case DType::kInt64: return "<i8";
    case DType::kUInt64: return "<u8";
    case DType::kBool: return "|b1";
    default: return nullptr;
  }
}

Result<Tensor> parse_npy(std::string_view bytes, const std::string& display_name) {
  try {
    const Header h = parse_header(bytes);
    Tensor t = allocate_checked(h, bytes.size() - h.data_offset);
    if (t.nbytes() > 0) std::memcpy(t.raw(), bytes.data() + h.data_offset, t.nbytes());
    if (h.dtype == DType::kBool) normalize_bools(t);
    return t;
  } catch (const Error& e) {
    return Status(e.code(), display_name + ": " + e.what());
  }
}

Tensor read_npy_stream(const NpyByteReader& read, uint64_t total_size) {
  // Preamble first, then the header it announces, then the data straight
  // into the tensor.
  std::string head(static_cast<size_t>(std::min<uint64_t>(total_size, 12)), '\0');
  if (head.empty()) fail("the file is empty");
  if (read(head.data(), head.size()) != head.size()) fail("read error in the header");
  auto [preamble, header_len] = read_preamble(head);
  if (total_size < preamble + header_len) fail("truncated .npy file (the header is incomplete)");
  const size_t have = head.size();
  head.resize(preamble + header_len);
  if (head.size() > have && read(head.data() + have, head.size() - have) != head.size() - have) {
    fail("read error in the header");
  }
  const Header h = parse_header(head);
  Tensor t = allocate_checked(h, total_size - h.data_offset);
  if (read(t.raw(), t.nbytes()) != t.nbytes()) fail("read error in the data (file changed while reading?)");
  if (h.dtype == DType::kBool) normalize_bools(t);
  return t;
}

Result<Tensor> read_npy(const std::filesystem::path& file) {
  const std::string name = file.string();
  try {
    const InputFile in(file);  // refuses FIFOs, devices, folders (io/input_file.h)
    uint64_t offset = 0;
    return read_npy_stream(
        [&](void* out, size_t n) {
          const size_t got = in.read_up_to(offset, out, n);
          offset += got;
          return got;
        },
        in.size());
  } catch (const Error& e) {
    const std::string message = e.what();
    return Status(e.code(), message.starts_with(name + ": ") ? message : name + ": " + message);
  }
}

Result<std::string> encode_npy(const Tensor& tensor) {
  const char* descr = npy_descr(tensor.dtype());
  if (descr == nullptr) {
    return unsupported(std::string("NumPy has no type for ") + dtype_name(tensor.dtype()) + " tensors");
  }
  std::string header = header_text(tensor, descr);
  // Pad with spaces so that the data starts at a multiple of 64 bytes, and end
  // with '\n', as numpy does.
  auto padded = [&](size_t preamble) {
    std::string h = header;
    const size_t total = preamble + h.size() + 1;
    h.append((64 - total % 64) % 64, ' ');
    h.push_back('\n');
    return h;
  };
  std::string out(kMagic, kMagicLen);
  std::string h = padded(10);
  if (h.size() <= 0xFFFF) {
    out += '\x01';
    out += '\x00';
    put_le(out, static_cast<uint32_t>(h.size()), 2);
  } else {
    h = padded(12);
    out += '\x02';
    out += '\x00';
    put_le(out, static_cast<uint32_t>(h.size()), 4);
  }
  out += h;
  out.append(static_cast<const char*>(tensor.raw()), tensor.nbytes());
  return out;
}

Status write_npy(const std::filesystem::path& file, const Tensor& tensor) {
  auto bytes = encode_npy(tensor);
  if (!bytes.ok()) return Status(bytes.status().code(), file.string() + ": " + bytes.status().message());
  return write_file_atomic(file, *bytes);
}

}  // namespace kvant
