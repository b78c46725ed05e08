#include "ir/tensor.h"

#include <gtest/gtest.h>

#include <cmath>

namespace kvant {
namespace {

TEST(Tensor, AllocatesZeroedAndAligned) {
  Tensor t(DType::kFloat32, {2, 3});
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.nbytes(), 24u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 64, 0u);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(t.data<float>()[i], 0.0f);
}

TEST(Tensor, Int4PacksTwoPerByte) {
  Tensor t(DType::kInt4, {3});
  EXPECT_EQ(t.nbytes(), 2u);
  static_cast<uint8_t*>(t.raw())[0] = 0xF7;  // low nibble 7, high nibble -1
  EXPECT_EQ(t.get_as_int64(0), 7);
  EXPECT_EQ(t.get_as_int64(1), -1);
}

TEST(Tensor, RejectsOverflowingShape) {
  EXPECT_THROW(Tensor(DType::kFloat32, {int64_t{1} << 40, int64_t{1} << 40}), Error);
  EXPECT_THROW(Tensor(DType::kFloat32, {-1}), Error);
}

TEST(Tensor, WrongTypeAccessThrows) {
  Tensor t(DType::kInt8, {1});
  EXPECT_THROW(t.data<float>(), Error);
}

TEST(Float16, RoundTripsAndRounds) {
  EXPECT_EQ(to_float(to_float16(1.0f)), 1.0f);
  EXPECT_EQ(to_float(to_float16(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(to_float(to_float16(1e6f))));
  EXPECT_EQ(to_float(to_float16(5.960464477539063e-08f)), 5.960464477539063e-08f);  // smallest subnormal
  EXPECT_EQ(to_float16(1.0f + 1.0f / 2048).bits, to_float16(1.0f).bits);            // tie rounds to even
}

}  // namespace
}  // namespace kvant
