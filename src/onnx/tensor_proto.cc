// TensorProto -> Tensor with every size checked before anything is allocated.
//
// Data comes from exactly one of: external data (a side file inside the
// model's folder), raw_data (little-endian bytes), or the typed repeated
// field the ONNX spec assigns to the dtype (float_data, int32_data, ...).
// Invariant enforced here: bytes/values present == bytes/values the dims need.
#include "onnx/tensor_proto.h"

#include <cstring>
#include <memory>
#include <system_error>

#include "io/input_file.h"
#include "ir/limits.h"

namespace kvant {

namespace {

struct Where {
  const onnx::TensorProto& proto;
  const std::string& label;

  [[noreturn]] void bad(const std::string& message) const {
    const std::string name = proto.name().empty() ? "" : " \"" + proto.name() + "\"";
    throw Error(ErrorCode::kInvalidArgument, label + name + ": " + message);
  }
};

uint64_t parse_number(const Where& where, const std::string& key, const std::string& s) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) {
    where.bad("external data " + key + " \"" + s + "\" is not a number");
  }
  return std::stoull(s);
}

// Reads `expected` bytes at the proto's offset of a file inside base_dir.
std::string read_external(const Where& where, const std::filesystem::path& base_dir, uint64_t expected) {
  std::string location;
  uint64_t offset = 0;
  bool has_length = false;
  uint64_t length = 0;
  for (const auto& kv : where.proto.external_data()) {
    if (kv.key() == "location") {
      location = kv.value();
    } else if (kv.key() == "offset") {
      offset = parse_number(where, kv.key(), kv.value());
    } else if (kv.key() == "length") {
      length = parse_number(where, kv.key(), kv.value());
      has_length = true;
    }
  }
  if (location.empty()) where.bad("external data has no location");
  if (base_dir.empty()) {
    where.bad("external data \"" + location + "\" cannot be read for a model loaded from memory");
  }
  const std::filesystem::path rel(location);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory() ||
      location.find('\0') != std::string::npos) {
    where.bad("external data path \"" + location + "\" must be relative to the model's folder");
  }
  for (const auto& part : rel) {
    if (part == "..") where.bad("external data path \"" + location + "\" escapes the model's folder");
  }
  // Symbolic links are resolved: the target must still lie inside the folder.
  std::error_code ec;
  const auto base = std::filesystem::weakly_canonical(base_dir, ec);
  if (ec) where.bad("the model's folder \"" + base_dir.string() + "\" cannot be resolved: " + ec.message());
  const auto full = std::filesystem::weakly_canonical(base_dir / rel, ec);
  if (ec) where.bad("external data file \"" + location + "\" cannot be resolved: " + ec.message());
  const std::string base_s = base.string() + "/";
  if (full.string().rfind(base_s, 0) != 0) {
    where.bad("external data path \"" + location + "\" escapes the model's folder (through a link)");
  }
  if (!std::filesystem::exists(full, ec)) {
    where.bad("external data file \"" + (base_dir / rel).string() + "\" does not exist");
  }
  std::unique_ptr<InputFile> in;
  try {
    in = std::make_unique<InputFile>(full);  // a FIFO, device or folder is named as such
  } catch (const Error& e) {
    where.bad(std::string("external data ") + e.what());
  }
  const uint64_t file_size = in->size();
  const uint64_t want = has_length ? length : expected;
  if (want != expected) {
    where.bad("external data length " + std::to_string(want) + " does not match the " + std::to_string(expected) +
              " bytes its dims need");
  }
  if (offset > file_size || file_size - offset < want) {
    where.bad("external data file \"" + location + "\" holds " + std::to_string(file_size) + " bytes; offset " +
              std::to_string(offset) + " + length " + std::to_string(want) + " runs past its end");
  }
  try {
    check_memory(static_cast<int64_t>(want), "external data \"" + location + "\"");
  } catch (const Error& e) {
    where.bad(e.what());
  }
  std::string bytes(want, '\0');
  try {
    in->read_at(offset, bytes.data(), bytes.size());
  } catch (const Error& e) {
    where.bad(std::string("failed to read external data: ") + e.what());
  }
  return bytes;
}

// The number of entries in the typed field that holds `dtype` (-1: none).
int64_t typed_field_size(const onnx::TensorProto& proto, DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return proto.float_data_size();
    case DType::kFloat64: return proto.double_data_size();
    case DType::kInt64: return proto.int64_data_size();
    case DType::kUInt32:
    case DType::kUInt64: return proto.uint64_data_size();
    case DType::kInt32:
    case DType::kInt16:
    case DType::kUInt16:
    case DType::kInt8:
    case DType::kUInt8:
    case DType::kBool:
    case DType::kFloat16:
    case DType::kBFloat16:
    case DType::kInt4:
    case DType::kUInt4: return proto.int32_data_size();
    default: return -1;
  }
}

template <typename Src, typename Dst>
void copy_field(const Src& field, Dst* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Dst>(field.Get(static_cast<int>(i)));
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::filesystem::path& base_dir,
                         const std::string& label) {
  const Where where{proto, label};
  if (!is_known_dtype(proto.data_type())) {
    where.bad("unknown data type code " + std::to_string(proto.data_type()));
  }
  const auto dtype = static_cast<DType>(proto.data_type());
  if (dtype == DType::kUndefined) where.bad("has no data type");
  if (dtype == DType::kString) {
    throw Error(ErrorCode::kUnsupported, label + " \"" + proto.name() + "\": string tensors are not supported");
  }
  if (proto.has_segment()) where.bad("segmented tensors are not supported");
  Shape shape(proto.dims().begin(), proto.dims().end());
  int64_t n = 0;
  try {
    n = checked_numel(shape, dtype);
  } catch (const Error& e) {
    where.bad(std::string("dims ") + e.what());
  }
  const int bits = dtype_bits(dtype);
  if (bits <= 0) where.bad(std::string("cannot read data of type ") + dtype_name(dtype));
  const uint64_t nbytes = (static_cast<uint64_t>(n) * static_cast<uint64_t>(bits) + 7) / 8;
  const std::string what = std::string(dtype_name(dtype)) + shape_to_string(shape);

  const bool external = proto.data_location() == onnx::TensorProto::EXTERNAL;
  std::string external_bytes;
  const std::string* raw = nullptr;
  if (external) {
    external_bytes = read_external(where, base_dir, nbytes);
    raw = &external_bytes;
  } else if (proto.has_raw_data()) {
    raw = &proto.raw_data();
    if (raw->size() != nbytes) {
      where.bad("raw_data holds " + std::to_string(raw->size()) + " bytes but " + what + " needs " +
                std::to_string(nbytes));
    }
  } else {
    // int4/uint4 store two values per int32_data entry (packed bytes).
    const bool packed = dtype == DType::kInt4 || dtype == DType::kUInt4;
    const int64_t want = packed ? (n + 1) / 2 : n;
    const int64_t have = typed_field_size(proto, dtype);
    if (have < 0) where.bad(std::string("cannot read data of type ") + dtype_name(dtype));
    if (have != want) {
      where.bad("holds " + std::to_string(have) + " values but " + what + " needs " + std::to_string(want));
    }
  }
  // Only now, with the data known to be present, allocate.
  Tensor t(dtype, shape);
  if (raw != nullptr) {
    if (nbytes) std::memcpy(t.raw(), raw->data(), nbytes);
    if (dtype == DType::kBool) {  // a bool must hold 0 or 1; any other byte is read as true
      auto* bytes = static_cast<uint8_t*>(t.raw());
      for (uint64_t i = 0; i < nbytes; ++i) bytes[i] = bytes[i] != 0;
    }
    return t;
  }
  switch (dtype) {
    case DType::kFloat32: copy_field(proto.float_data(), t.data<float>(), n); break;
    case DType::kFloat64: copy_field(proto.double_data(), t.data<double>(), n); break;
    case DType::kInt64: copy_field(proto.int64_data(), t.data<int64_t>(), n); break;
    case DType::kUInt32: copy_field(proto.uint64_data(), t.data<uint32_t>(), n); break;
    case DType::kUInt64: copy_field(proto.uint64_data(), t.data<uint64_t>(), n); break;
    case DType::kInt32: copy_field(proto.int32_data(), t.data<int32_t>(), n); break;
    case DType::kInt16: copy_field(proto.int32_data(), t.data<int16_t>(), n); break;
    case DType::kUInt16: copy_field(proto.int32_data(), t.data<uint16_t>(), n); break;
    case DType::kInt8: copy_field(proto.int32_data(), t.data<int8_t>(), n); break;
    case DType::kUInt8: copy_field(proto.int32_data(), t.data<uint8_t>(), n); break;
    case DType::kBool: {
      bool* out = t.data<bool>();
      for (int64_t i = 0; i < n; ++i) out[i] = proto.int32_data(static_cast<int>(i)) != 0;
      break;
    }
    case DType::kFloat16:
    case DType::kBFloat16: copy_field(proto.int32_data(), static_cast<uint16_t*>(t.raw()), n); break;
    case DType::kInt4:
    case DType::kUInt4: copy_field(proto.int32_data(), static_cast<uint8_t*>(t.raw()), (n + 1) / 2); break;
    default: where.bad(std::string("cannot read data of type ") + dtype_name(dtype));
  }
  return t;
}

void tensor_to_proto(const Tensor& tensor, onnx::TensorProto& proto) {
  proto.clear_dims();
  for (int64_t d : tensor.shape()) proto.add_dims(d);
  proto.set_data_type(static_cast<int32_t>(tensor.dtype()));
  proto.set_raw_data(tensor.raw(), tensor.nbytes());
}

}  // namespace kvant
