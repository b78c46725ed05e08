// Element types. The numeric values are ONNX's TensorProto.DataType codes, so
// converting to and from ONNX is a cast (checked by is_known_dtype).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

namespace kvant {

enum class DType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,  // recognised so that such models get a clear "unsupported" message
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
  kUInt4 = 21,
  kInt4 = 22,
};

bool is_known_dtype(int32_t onnx_code);
const char* dtype_name(DType dtype);  // "float32", "int8", ...
// Bits per element: 4 for int4/uint4 (two per byte, low nibble first), 0 for
// undefined and string.
int dtype_bits(DType dtype);
bool is_float(DType dtype);    // float16, bfloat16, float32, float64
bool is_integer(DType dtype);  // signed or unsigned, including 4-bit
bool is_signed(DType dtype);

// IEEE half and bfloat16 as storage types; arithmetic happens in float.
struct Float16 {
  uint16_t bits = 0;
};
struct BFloat16 {
  uint16_t bits = 0;
};
float to_float(Float16 h);
Float16 to_float16(float f);  // round to nearest even
inline float to_float(BFloat16 b) {
  uint32_t u = static_cast<uint32_t>(b.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
BFloat16 to_bfloat16(float f);  // round to nearest even

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kFloat32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kFloat64;
};
template <>
struct DTypeOf<uint8_t> {
  static constexpr DType value = DType::kUInt8;
};
template <>
struct DTypeOf<int8_t> {
  static constexpr DType value = DType::kInt8;
};
template <>
struct DTypeOf<uint16_t> {
  static constexpr DType value = DType::kUInt16;
};
template <>
struct DTypeOf<int16_t> {
  static constexpr DType value = DType::kInt16;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kInt32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::kInt64;
};
template <>
struct DTypeOf<uint32_t> {
  static constexpr DType value = DType::kUInt32;
};
template <>
struct DTypeOf<uint64_t> {
  static constexpr DType value = DType::kUInt64;
};
template <>
struct DTypeOf<bool> {
  static constexpr DType value = DType::kBool;
};
template <>
struct DTypeOf<Float16> {
  static constexpr DType value = DType::kFloat16;
};
template <>
struct DTypeOf<BFloat16> {
  static constexpr DType value = DType::kBFloat16;
};
template <typename T>
inline constexpr DType dtype_of = DTypeOf<T>::value;

// Calls f(T{}) with the C++ type of `dtype`. Types not listed in the chosen
// set make dispatch throw Error(kUnsupported) naming the type and `what`.
template <typename T>
struct TypeTag {
  using type = T;
};

}  // namespace kvant
