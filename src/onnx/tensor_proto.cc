#include "onnx/tensor_proto.h"

#include <cstring>
#include <fstream>
#include <system_error>

namespace kvant {

namespace {

[[noreturn]] void bad(const onnx::TensorProto& proto, const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, "tensor \"" + proto.name() + "\": " + message);
}

// Reads `length` bytes at `offset` of a file inside base_dir.
std::string read_external(const onnx::TensorProto& proto, const std::filesystem::path& base_dir, size_t expected) {
  std::string location;
  uint64_t offset = 0;
  int64_t length = -1;
  for (const auto& kv : proto.external_data()) {
    if (kv.key() == "location") {
      location = kv.value();
    } else if (kv.key() == "offset" || kv.key() == "length") {
      uint64_t v = 0;
      const std::string& s = kv.value();
      if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) {
        bad(proto, "external data " + kv.key() + " \"" + s + "\" is not a number");
      }
      v = std::stoull(s);
      if (kv.key() == "offset") {
        offset = v;
      } else {
        length = static_cast<int64_t>(v);
      }
    }
  }
  if (location.empty()) bad(proto, "external data has no location");
  if (base_dir.empty()) bad(proto, "external data \"" + location + "\" cannot be read for a model loaded from memory");
  const std::filesystem::path rel(location);
  if (rel.is_absolute() || location.find('\0') != std::string::npos) {
    bad(proto, "external data path \"" + location + "\" must be relative to the model's folder");
  }
  for (const auto& part : rel) {
    if (part == "..") bad(proto, "external data path \"" + location + "\" escapes the model's folder");
  }
  std::error_code ec;
  const auto base = std::filesystem::weakly_canonical(base_dir, ec);
  const auto full = std::filesystem::weakly_canonical(base_dir / rel, ec);
  if (ec) bad(proto, "external data file \"" + location + "\" cannot be resolved: " + ec.message());
  const std::string base_s = base.string() + "/";
  if (full.string().rfind(base_s, 0) != 0) {
    bad(proto, "external data path \"" + location + "\" escapes the model's folder (through a link)");
  }
  if (!std::filesystem::is_regular_file(full, ec)) {
    bad(proto, "external data file \"" + (base_dir / rel).string() + "\" does not exist");
  }
  const uint64_t file_size = std::filesystem::file_size(full, ec);
  if (ec) bad(proto, "cannot read external data file \"" + full.string() + "\"");
  const uint64_t want = length >= 0 ? static_cast<uint64_t>(length) : expected;
  if (want != expected) {
    bad(proto, "external data length " + std::to_string(want) + " does not match the " + std::to_string(expected) +
                   " bytes its dims need");
  }
  if (offset > file_size || file_size - offset < want) {
    bad(proto, "external data file \"" + location + "\" holds " + std::to_string(file_size) + " bytes; offset " +
                   std::to_string(offset) + " + length " + std::to_string(want) + " runs past its end");
  }
  std::ifstream in(full, std::ios::binary);
  std::string bytes(want, '\0');
  in.seekg(static_cast<std::streamoff>(offset));
  in.read(bytes.data(), static_cast<std::streamsize>(want));
  if (!in) bad(proto, "failed to read external data file \"" + full.string() + "\"");
  return bytes;
}

template <typename Src, typename Dst>
void copy_field(const onnx::TensorProto& proto, const Src& field, Dst* out, int64_t n) {
  if (static_cast<int64_t>(field.size()) != n) {
    bad(proto, "holds " + std::to_string(field.size()) + " values but its dims need " + std::to_string(n));
  }
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Dst>(field.Get(static_cast<int>(i)));
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::filesystem::path& base_dir) {
  if (!is_known_dtype(proto.data_type())) {
    bad(proto, "unknown data type code " + std::to_string(proto.data_type()));
  }
  const auto dtype = static_cast<DType>(proto.data_type());
  if (dtype == DType::kString) {
    throw Error(ErrorCode::kUnsupported, "tensor \"" + proto.name() + "\": string tensors are not supported");
  }
  if (proto.has_segment()) bad(proto, "segmented tensors are not supported");
  Shape shape(proto.dims().begin(), proto.dims().end());
  int64_t n = 0;
  try {
    n = checked_numel(shape, dtype);
  } catch (const Error& e) {
    bad(proto, e.what());
  }
  const size_t nbytes = static_cast<size_t>((n * dtype_bits(dtype) + 7) / 8);

  const bool external = proto.data_location() == onnx::TensorProto::EXTERNAL;
  std::string external_bytes;
  const std::string* raw = nullptr;
  if (external) {
    external_bytes = read_external(proto, base_dir, nbytes);
    raw = &external_bytes;
  } else if (proto.has_raw_data()) {
    raw = &proto.raw_data();
    if (raw->size() != nbytes) {
      bad(proto, "raw_data holds " + std::to_string(raw->size()) + " bytes but " + dtype_name(dtype) +
                     shape_to_string(shape) + " needs " + std::to_string(nbytes));
    }
  }
  Tensor t(dtype, shape);
  if (raw != nullptr) {
    if (nbytes) std::memcpy(t.raw(), raw->data(), nbytes);
    return t;
  }
  switch (dtype) {
    case DType::kFloat32: copy_field(proto, proto.float_data(), t.data<float>(), n); break;
    case DType::kFloat64: copy_field(proto, proto.double_data(), t.data<double>(), n); break;
    case DType::kInt64: copy_field(proto, proto.int64_data(), t.data<int64_t>(), n); break;
    case DType::kUInt32: copy_field(proto, proto.uint64_data(), t.data<uint32_t>(), n); break;
    case DType::kUInt64: copy_field(proto, proto.uint64_data(), t.data<uint64_t>(), n); break;
    case DType::kInt32: copy_field(proto, proto.int32_data(), t.data<int32_t>(), n); break;
    case DType::kInt16: copy_field(proto, proto.int32_data(), t.data<int16_t>(), n); break;
    case DType::kUInt16: copy_field(proto, proto.int32_data(), t.data<uint16_t>(), n); break;
    case DType::kInt8: copy_field(proto, proto.int32_data(), t.data<int8_t>(), n); break;
    case DType::kUInt8: copy_field(proto, proto.int32_data(), t.data<uint8_t>(), n); break;
    case DType::kBool: copy_field(proto, proto.int32_data(), t.data<bool>(), n); break;
    case DType::kFloat16:
    case DType::kBFloat16: copy_field(proto, proto.int32_data(), static_cast<uint16_t*>(t.raw()), n); break;
    case DType::kInt4:
    case DType::kUInt4: {
      // int32_data holds the packed bytes, one byte per value.
      const int64_t packed = (n + 1) / 2;
      copy_field(proto, proto.int32_data(), static_cast<uint8_t*>(t.raw()), packed);
      break;
    }
    default: bad(proto, std::string("cannot read data of type ") + dtype_name(dtype));
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
