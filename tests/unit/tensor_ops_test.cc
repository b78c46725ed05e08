// Unit tests for the data-movement, shape, gather and reduce reference
// kernels: the opset-dependent forms (attribute vs input), the edge cases
// of the index arithmetic, and the errors on bad indices.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "op_test_util.h"
#include "ops/op_registry.h"

namespace kvant {
namespace {

std::vector<int64_t> i64(const Tensor& t) { return t.to_int64_vector(); }
std::vector<float> f32(const Tensor& t) { return t.to_float_vector(); }
Tensor iota_f(Shape shape) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::iota(t.data<float>(), t.data<float>() + t.numel(), 0.0f);
  return t;
}

TEST(Reshape, ZeroCopiesDimAndMinusOneIsInferred) {
  const Tensor x = iota_f({2, 3, 4});
  const Tensor y = run_op("Reshape", 13, {x, ivec({0, -1})})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 12}));
  EXPECT_EQ(f32(y), f32(x));
  EXPECT_EQ(run_op("Reshape", 13, {x, ivec({-1, 0, 2})})[0].shape(), (Shape{4, 3, 2}));
  // Before opset 5 the shape is an attribute.
  EXPECT_EQ(run_op("Reshape", 4, {x}, {{"shape", ints_attr({4, 0, -1})}})[0].shape(), (Shape{4, 3, 2}));
}

TEST(Reshape, AllowZeroKeepsZeroAsADim) {
  const Tensor empty(DType::kFloat32, {0, 3});
  // allowzero = 1: 0 is a real 0-sized dim.
  EXPECT_EQ(run_op("Reshape", 14, {empty, ivec({3, 0})}, {{"allowzero", int_attr(1)}})[0].shape(), (Shape{3, 0}));
  // allowzero = 0: 0 copies input dim 1 (3), giving [3,3] != 0 elements.
  const std::string msg = error_of([&] { run_op("Reshape", 14, {empty, ivec({3, 0})}); });
  EXPECT_NE(msg.find("n0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot reshape"), std::string::npos) << msg;
  // Two -1 are rejected.
  EXPECT_NE(error_of([&] {
              run_op("Reshape", 14, {iota_f({4}), ivec({-1, -1})});
            }).find("more than one -1"),
            std::string::npos);
}

TEST(Slice, NegativeStepsWalkBackwardAndClamp) {
  const Tensor x = iota_f({10});
  const int64_t kMin = std::numeric_limits<int64_t>::min(), kMax = std::numeric_limits<int64_t>::max();
  // From the last element down past the front, every second.
  Tensor y = run_op("Slice", 13, {x, ivec({-1}), ivec({kMin}), ivec({0}), ivec({-2})})[0];
  EXPECT_EQ(f32(y), (std::vector<float>{9, 7, 5, 3, 1}));
  // A start beyond the end clamps to the last element.
  y = run_op("Slice", 13, {x, ivec({kMax}), ivec({6}), Tensor(), ivec({-1})})[0];
  EXPECT_EQ(f32(y), (std::vector<float>{9, 8, 7}));
  // Reverse the last axis of a matrix (negative axis, INT64_MIN step).
  const Tensor m = iota_f({2, 3});
  y = run_op("Slice", 13, {m, ivec({-1}), ivec({kMin}), ivec({-1}), ivec({-1})})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  EXPECT_EQ(f32(y), (std::vector<float>{2, 1, 0, 5, 4, 3}));
  y = run_op("Slice", 13, {m, ivec({2}), ivec({0}), ivec({1}), ivec({kMin})})[0];
  EXPECT_EQ(f32(y), (std::vector<float>{2, 5}));
  // Empty when start and end cross in the step's direction.
  EXPECT_EQ(run_op("Slice", 13, {x, ivec({2}), ivec({5}), Tensor(), ivec({-1})})[0].numel(), 0);
  // Opset 9: attributes, step 1.
  y = run_op("Slice", 9, {m}, {{"starts", ints_attr({1})}, {"ends", ints_attr({100})}, {"axes", ints_attr({1})}})[0];
  EXPECT_EQ(f32(y), (std::vector<float>{1, 2, 4, 5}));
  EXPECT_NE(error_of([&] {
              run_op("Slice", 13, {x, ivec({0}), ivec({5}), Tensor(), ivec({0})});
            }).find("step"),
            std::string::npos);
}

TEST(Gather, NegativeIndicesCountFromTheEnd) {
  const Tensor x = iota_f({3, 2});
  const Tensor idx = Tensor::from_vector<int64_t>({-1, 0}, {2});
  Tensor y = run_op("Gather", 13, {x, idx})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(f32(y), (std::vector<float>{4, 5, 0, 1}));
  y = run_op("Gather", 13, {x, Tensor::from_vector<int32_t>({-2}, {1})}, {{"axis", int_attr(1)}})[0];
  EXPECT_EQ(y.shape(), (Shape{3, 1}));
  EXPECT_EQ(f32(y), (std::vector<float>{0, 2, 4}));
}

TEST(Gather, OutOfRangeIndexIsANamedError) {
  const Tensor x = iota_f({3, 2});
  for (int64_t bad : {3, -4}) {
    const std::string msg = error_of([&] { run_op("Gather", 13, {x, ivec({0, bad})}); });
    EXPECT_NE(msg.find("node \"n0\" (Gather)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("index " + std::to_string(bad) + " is out of range"), std::string::npos) << msg;
  }
  const std::string msg = error_of([&] {
    run_op("GatherElements", 13, {x, Tensor::from_vector<int64_t>({0, 7}, {1, 2})}, {{"axis", int_attr(0)}});
  });
  EXPECT_NE(msg.find("index 7"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] {
              run_op("ScatterND", 13, {x, Tensor::from_vector<int64_t>({5}, {1, 1}), iota_f({1, 2})});
            }).find("index 5"),
            std::string::npos);
}

TEST(Split, AttributeBefore13InputFrom13) {
  const Tensor x = iota_f({6});
  auto parts = run_op("Split", 11, {x}, {{"split", ints_attr({2, 4})}}, 2);
  EXPECT_EQ(f32(parts[0]), (std::vector<float>{0, 1}));
  EXPECT_EQ(f32(parts[1]), (std::vector<float>{2, 3, 4, 5}));
  parts = run_op("Split", 13, {x, ivec({4, 2})}, {}, 2);
  EXPECT_EQ(f32(parts[0]), (std::vector<float>{0, 1, 2, 3}));
  EXPECT_EQ(f32(parts[1]), (std::vector<float>{4, 5}));
  // No split: equal parts.
  parts = run_op("Split", 13, {x}, {}, 3);
  EXPECT_EQ(f32(parts[2]), (std::vector<float>{4, 5}));
  // Opset 18 num_outputs: ceil-sized chunks, the last one smaller.
  parts = run_op("Split", 18, {iota_f({7})}, {{"num_outputs", int_attr(3)}}, 3);
  EXPECT_EQ(parts[0].numel(), 3);
  EXPECT_EQ(parts[1].numel(), 3);
  EXPECT_EQ(f32(parts[2]), (std::vector<float>{6}));
  // A split that does not sum to the dim is an error.
  EXPECT_NE(error_of([&] { run_op("Split", 13, {x, ivec({4, 3})}, {}, 2); }).find("does not sum"), std::string::npos);
}

TEST(ReduceSum, AxesAttributeBefore13InputFrom13) {
  const Tensor x = iota_f({2, 3});
  Tensor y = run_op("ReduceSum", 11, {x}, {{"axes", ints_attr({1})}, {"keepdims", int_attr(0)}})[0];
  EXPECT_EQ(y.shape(), (Shape{2}));
  EXPECT_EQ(f32(y), (std::vector<float>{3, 12}));
  y = run_op("ReduceSum", 13, {x, ivec({-2})})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 3}));
  EXPECT_EQ(f32(y), (std::vector<float>{3, 5, 7}));
  // No axes: all of them; with noop_with_empty_axes: the input itself.
  EXPECT_EQ(f32(run_op("ReduceSum", 13, {x})[0]), (std::vector<float>{15}));
  y = run_op("ReduceSum", 13, {x, ivec({})}, {{"noop_with_empty_axes", int_attr(1)}})[0];
  EXPECT_EQ(y.shape(), x.shape());
  EXPECT_EQ(f32(y), f32(x));
  // ReduceMean keeps its axes attribute until opset 18.
  y = run_op("ReduceMean", 13, {x}, {{"axes", ints_attr({0})}})[0];
  EXPECT_EQ(f32(y), (std::vector<float>{1.5f, 2.5f, 3.5f}));
  y = run_op("ReduceMean", 18, {x, ivec({0})})[0];
  EXPECT_EQ(f32(y), (std::vector<float>{1.5f, 2.5f, 3.5f}));
  EXPECT_NE(error_of([&] { run_op("ReduceSum", 13, {x, ivec({2})}); }).find("axis 2"), std::string::npos);
}

TEST(Reduce, NonAdjacentAxesMatchNaiveSums) {
  const Tensor x = iota_f({2, 3, 4});
  // axes {0, 2}: not one contiguous block, takes the general path.
  const Tensor y = run_op("ReduceSum", 13, {x, ivec({0, 2})}, {{"keepdims", int_attr(0)}})[0];
  ASSERT_EQ(y.shape(), (Shape{3}));
  for (int64_t j = 0; j < 3; ++j) {
    float want = 0;
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t k = 0; k < 4; ++k) want += static_cast<float>((i * 3 + j) * 4 + k);
    EXPECT_EQ(y.data<float>()[j], want);
  }
  // Max/Min/LogSumExp over the middle axis (the [outer, reduced, inner] path).
  EXPECT_EQ(f32(run_op("ReduceMax", 13, {x}, {{"axes", ints_attr({1})}, {"keepdims", int_attr(0)}})[0]),
            (std::vector<float>{8, 9, 10, 11, 20, 21, 22, 23}));
  EXPECT_EQ(f32(run_op("ReduceMin", 13, {x}, {{"axes", ints_attr({1})}, {"keepdims", int_attr(0)}})[0]),
            (std::vector<float>{0, 1, 2, 3, 12, 13, 14, 15}));
  const Tensor big = Tensor::from_vector<float>({1000, 1000}, {2});
  EXPECT_NEAR(f32(run_op("ReduceLogSumExp", 13, {big})[0])[0], 1000 + std::log(2.0f), 1e-3);
  // An empty set reduces to the identity of the reduction.
  const Tensor empty(DType::kFloat32, {0, 2});
  EXPECT_EQ(f32(run_op("ReduceSum", 13, {empty, ivec({0})})[0]), (std::vector<float>{0, 0}));
  EXPECT_EQ(f32(run_op("ReduceProd", 13, {empty}, {{"axes", ints_attr({0})}})[0]), (std::vector<float>{1, 1}));
}

TEST(TopK, TiesGoToTheLowerIndex) {
  const Tensor x = Tensor::from_vector<float>({1, 3, 3, 2, 3, 1}, {6});
  auto out = run_op("TopK", 11, {x, ivec({2})}, {}, 2);
  EXPECT_EQ(f32(out[0]), (std::vector<float>{3, 3}));
  EXPECT_EQ(i64(out[1]), (std::vector<int64_t>{1, 2}));
  out = run_op("TopK", 11, {x, ivec({3})}, {{"largest", int_attr(0)}}, 2);
  EXPECT_EQ(f32(out[0]), (std::vector<float>{1, 1, 2}));
  EXPECT_EQ(i64(out[1]), (std::vector<int64_t>{0, 5, 3}));
  // Opset 1-9: k is an attribute; along axis 0 of a matrix.
  const Tensor m = Tensor::from_vector<int32_t>({5, 1, 5, 2, 0, 2}, {3, 2});
  out = run_op("TopK", 9, {m}, {{"k", int_attr(2)}, {"axis", int_attr(0)}}, 2);
  EXPECT_EQ(i64(out[0]), (std::vector<int64_t>{5, 2, 5, 2}));
  EXPECT_EQ(i64(out[1]), (std::vector<int64_t>{0, 1, 1, 2}));
  EXPECT_NE(error_of([&] { run_op("TopK", 11, {x, ivec({7})}, {}, 2); }).find("k 7"), std::string::npos);
}

TEST(Transpose, MatchesNaiveIndexingForEveryDtypeWidth) {
  const Shape shape{2, 3, 4, 5};
  const std::vector<int64_t> perm{2, 0, 3, 1};
  Tensor x(DType::kInt16, shape);
  std::iota(x.data<int16_t>(), x.data<int16_t>() + x.numel(), int16_t{0});
  const Tensor y = run_op("Transpose", 13, {x}, {{"perm", ints_attr(perm)}})[0];
  EXPECT_EQ(y.shape(), (Shape{4, 2, 5, 3}));
  int64_t n = 0;
  for (int64_t a = 0; a < 4; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t c = 0; c < 5; ++c)
        for (int64_t d = 0; d < 3; ++d) {
          // output (a, b, c, d) = input (b, d, a, c)
          EXPECT_EQ(y.get_as_int64(n++), ((b * 3 + d) * 4 + a) * 5 + c);
        }
  Tensor flags(DType::kBool, {2, 3});
  flags.data<bool>()[1] = true;  // (0, 1)
  const Tensor t = run_op("Transpose", 13, {flags})[0];
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_EQ(i64(t), (std::vector<int64_t>{0, 0, 1, 0, 0, 0}));
}

// Transpose against index arithmetic, for shapes large enough to take the
// tiled path (a source-contiguous dim and a strided last dim, both >= 8).
void expect_transpose_matches_naive(const Shape& shape, const std::vector<int64_t>& perm, DType dtype) {
  Tensor x(dtype, shape);
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (dtype == DType::kFloat32) x.data<float>()[i] = static_cast<float>(i);
    if (dtype == DType::kUInt8) x.data<uint8_t>()[i] = static_cast<uint8_t>(i * 7);
    if (dtype == DType::kFloat64) x.data<double>()[i] = static_cast<double>(i);
  }
  const Tensor y = run_op("Transpose", 13, {x}, {{"perm", ints_attr(perm)}})[0];
  const size_t rank = shape.size();
  std::vector<int64_t> in_strides(rank, 1);
  for (size_t d = rank - 1; d-- > 0;) in_strides[d] = in_strides[d + 1] * shape[d + 1];
  std::vector<int64_t> index(rank, 0);  // output multi-index
  for (int64_t n = 0; n < y.numel(); ++n) {
    int64_t src = 0;
    for (size_t d = 0; d < rank; ++d) src += index[d] * in_strides[static_cast<size_t>(perm[d])];
    ASSERT_EQ(y.get_as_double(n), x.get_as_double(src)) << "output element " << n;
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < y.shape()[d]) break;
      index[d] = 0;
    }
  }
}

TEST(Transpose, TiledPathMatchesNaive) {
  expect_transpose_matches_naive({3, 20, 17}, {0, 2, 1}, DType::kFloat32);
  expect_transpose_matches_naive({2, 9, 3, 10}, {0, 2, 3, 1}, DType::kFloat32);
  expect_transpose_matches_naive({2, 33, 4, 19}, {3, 0, 2, 1}, DType::kUInt8);
  expect_transpose_matches_naive({1, 40, 12, 16}, {0, 2, 1, 3}, DType::kFloat64);
  expect_transpose_matches_naive({1, 12, 40, 16}, {0, 1, 3, 2}, DType::kFloat32);
}

TEST(Concat, Float16AndEmptyInputs) {
  Tensor a(DType::kFloat16, {1, 2});
  a.data<Float16>()[0] = to_float16(1.5f);
  a.data<Float16>()[1] = to_float16(-2.0f);
  const Tensor empty(DType::kFloat16, {1, 0});
  const Tensor y = run_op("Concat", 13, {a, empty, a}, {{"axis", int_attr(-1)}})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 4}));
  EXPECT_EQ(f32(y), (std::vector<float>{1.5f, -2, 1.5f, -2}));
  EXPECT_NE(error_of([&] {
              run_op("Concat", 13, {a, iota_f({1, 2})}, {{"axis", int_attr(0)}});
            }).find("does not match"),
            std::string::npos);
}

TEST(SqueezeUnsqueeze, AxesAttributeBefore13InputFrom13) {
  const Tensor x = iota_f({1, 3, 1});
  EXPECT_EQ(run_op("Squeeze", 11, {x}, {{"axes", ints_attr({0})}})[0].shape(), (Shape{3, 1}));
  EXPECT_EQ(run_op("Squeeze", 13, {x, ivec({-1})})[0].shape(), (Shape{1, 3}));
  EXPECT_EQ(run_op("Squeeze", 13, {x})[0].shape(), (Shape{3}));
  EXPECT_EQ(run_op("Unsqueeze", 11, {x}, {{"axes", ints_attr({0, 4})}})[0].shape(), (Shape{1, 1, 3, 1, 1}));
  EXPECT_EQ(run_op("Unsqueeze", 13, {x, ivec({-1, 1})})[0].shape(), (Shape{1, 1, 3, 1, 1}));
  EXPECT_NE(error_of([&] { run_op("Squeeze", 13, {x, ivec({1})}); }).find("not 1"), std::string::npos);
}

TEST(ExpandTile, BroadcastAndRepeat) {
  const Tensor x = iota_f({3, 1});
  Tensor y = run_op("Expand", 13, {x, ivec({2, 1, 2})})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 3, 2}));
  EXPECT_EQ(f32(y), (std::vector<float>{0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2}));
  y = run_op("Tile", 13, {iota_f({2, 2}), ivec({2, 1})})[0];
  EXPECT_EQ(y.shape(), (Shape{4, 2}));
  EXPECT_EQ(f32(y), (std::vector<float>{0, 1, 2, 3, 0, 1, 2, 3}));
}

TEST(ScatterElements, ReductionAddAccumulatesDuplicates) {
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5}, {1, 5});
  const Tensor idx = Tensor::from_vector<int64_t>({1, 1, -1}, {1, 3});
  const Tensor upd = Tensor::from_vector<float>({10, 20, 30}, {1, 3});
  Tensor y = run_op("ScatterElements", 16, {x, idx, upd}, {{"axis", int_attr(1)}, {"reduction", [] {
                                                                                     Attribute a;
                                                                                     a.kind = Attribute::Kind::kString;
                                                                                     a.s = "add";
                                                                                     return a;
                                                                                   }()}})[0];
  EXPECT_EQ(f32(y), (std::vector<float>{1, 32, 3, 4, 35}));
}

TEST(ArgMax, SelectLastIndex) {
  const Tensor x = Tensor::from_vector<float>({2, 7, 7, 1}, {4});
  EXPECT_EQ(i64(run_op("ArgMax", 13, {x})[0]), (std::vector<int64_t>{1}));
  EXPECT_EQ(i64(run_op("ArgMax", 13, {x}, {{"select_last_index", int_attr(1)}})[0]), (std::vector<int64_t>{2}));
  EXPECT_EQ(i64(run_op("ArgMin", 13, {x}, {{"keepdims", int_attr(0)}})[0]), (std::vector<int64_t>{3}));
}

}  // namespace
}  // namespace kvant

namespace kvant {
namespace {

Tensor f16(std::vector<float> v) {
  Tensor t(DType::kFloat16, {static_cast<int64_t>(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data<Float16>()[i] = to_float16(v[i]);
  return t;
}

TEST(Float16, ReduceTopKAndCumSumComputeInFloat) {
  const Tensor x = f16({0.5f, -2.0f, 3.0f, 3.0f});
  const Tensor mean = run_op("ReduceMean", 13, {x})[0];
  EXPECT_EQ(mean.dtype(), DType::kFloat16);
  EXPECT_EQ(f32(mean), (std::vector<float>{1.125f}));
  const auto top = run_op("TopK", 11, {x, ivec({2})}, {}, 2);
  EXPECT_EQ(f32(top[0]), (std::vector<float>{3, 3}));
  EXPECT_EQ(i64(top[1]), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f32(run_op("CumSum", 11, {x, Tensor::scalar<int64_t>(0)}, {{"reverse", int_attr(1)}})[0]),
            (std::vector<float>{4.5f, 4.0f, 6.0f, 3.0f}));
}

TEST(Dropout, InferenceIsIdentityWithAllTrueMask) {
  const Tensor x = iota_f({2, 2});
  auto out = run_op("Dropout", 13, {x, Tensor::scalar<float>(0.3f)}, {}, 2);
  EXPECT_EQ(f32(out[0]), f32(x));
  EXPECT_EQ(out[1].dtype(), DType::kBool);
  EXPECT_EQ(i64(out[1]), (std::vector<int64_t>{1, 1, 1, 1}));
  // Opset 7-9: the mask has the input's type.
  EXPECT_EQ(run_op("Dropout", 7, {x}, {}, 2)[1].dtype(), DType::kFloat32);
  // Training with a nonzero ratio is random: not supported.
  Tensor train(DType::kBool, {});
  train.data<bool>()[0] = true;
  error_of([&] { run_op("Dropout", 13, {x, Tensor::scalar<float>(0.3f), train}, {}, 2); }, ErrorCode::kUnsupported);
  EXPECT_EQ(f32(run_op("Dropout", 13, {x, Tensor::scalar<float>(0.0f), train})[0]), f32(x));
}

TEST(ShapeOps, ShapeSliceOneHotNonZeroRange) {
  const Tensor x(DType::kFloat32, {2, 3, 4});
  EXPECT_EQ(i64(run_op("Shape", 15, {x}, {{"start", int_attr(-2)}})[0]), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(i64(run_op("Shape", 15, {x}, {{"end", int_attr(-5)}})[0]), (std::vector<int64_t>{}));
  EXPECT_EQ(i64(run_op("Shape", 13, {x}, {{"start", int_attr(1)}})[0]), (std::vector<int64_t>{2, 3, 4}));
  // Negative indices count from depth; out of range gives an all-off row.
  const Tensor oh = run_op("OneHot", 11, {ivec({-1, 1, 5}), Tensor::scalar<float>(3), ivec({0, 9})})[0];
  EXPECT_EQ(oh.shape(), (Shape{3, 3}));
  EXPECT_EQ(i64(oh), (std::vector<int64_t>{0, 0, 9, 0, 9, 0, 0, 0, 0}));
  const Tensor nz = run_op("NonZero", 13, {Tensor::from_vector<int32_t>({0, 7, 3, 0}, {2, 2})})[0];
  EXPECT_EQ(nz.shape(), (Shape{2, 2}));
  EXPECT_EQ(i64(nz), (std::vector<int64_t>{0, 1, 1, 0}));
  EXPECT_EQ(i64(run_op("Range", 11,
                       {Tensor::scalar<int32_t>(10), Tensor::scalar<int32_t>(4), Tensor::scalar<int32_t>(-3)})[0]),
            (std::vector<int64_t>{10, 7}));
  error_of([&] {
    run_op("Range", 11, {Tensor::scalar<int32_t>(0), Tensor::scalar<int32_t>(4), Tensor::scalar<int32_t>(0)});
  });
}

TEST(Constant, ValueIntsAndValueFloat) {
  Attribute ints = ints_attr({4, 5});
  EXPECT_EQ(i64(run_op("Constant", 13, {}, {{"value_ints", ints}})[0]), (std::vector<int64_t>{4, 5}));
  Attribute f;
  f.kind = Attribute::Kind::kFloat;
  f.f = 2.5f;
  const Tensor c = run_op("Constant", 13, {}, {{"value_float", f}})[0];
  EXPECT_EQ(c.shape(), Shape{});
  EXPECT_EQ(f32(c), (std::vector<float>{2.5f}));
}

TEST(GatherND, BatchDimsAndOutOfRange) {
  const Tensor x = iota_f({2, 2, 2});
  // batch_dims = 1: per batch, pick row idx.
  const Tensor y =
      run_op("GatherND", 13, {x, Tensor::from_vector<int64_t>({1, 0}, {2, 1})}, {{"batch_dims", int_attr(1)}})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(f32(y), (std::vector<float>{2, 3, 4, 5}));
  const std::string msg = error_of([&] { run_op("GatherND", 13, {x, Tensor::from_vector<int64_t>({0, 2}, {1, 2})}); });
  EXPECT_NE(msg.find("index 2 is out of range"), std::string::npos) << msg;
}

}  // namespace
}  // namespace kvant
