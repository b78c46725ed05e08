// Unit tests for the detection, signal and selection reference kernels
// (NonMaxSuppression, RoiAlign, GridSample, DFT, STFT, windows, Unique,
// Compress, ReverseSequence, MaxUnpool, Det): the semantics the ONNX
// conformance cases leave open, and a named error for each kind of bad input.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "op_test_util.h"

namespace kvant {
namespace {

Tensor fvec(std::vector<float> v, Shape shape) { return Tensor::from_vector(v, std::move(shape)); }
Tensor f_scalar(float v) { return Tensor::from_vector<float>({v}, {1}); }
Tensor i_scalar(int64_t v) { return Tensor::from_vector<int64_t>({v}, {}); }
Tensor bools(std::initializer_list<bool> v) {
  Tensor t(DType::kBool, {static_cast<int64_t>(v.size())});
  std::copy(v.begin(), v.end(), t.data<bool>());
  return t;
}

TEST(NonMaxSuppression, ThresholdsAndPerClassLimit) {
  // Three boxes: 0 and 1 overlap with IoU 0.6, box 2 is apart.
  const Tensor boxes = fvec({0, 0, 10, 10, 0, 2.5f, 10, 12.5f, 20, 20, 30, 30}, {1, 3, 4});
  const Tensor scores = fvec({0.9f, 0.8f, 0.1f}, {1, 1, 3});
  auto select = [&](float iou, float score_threshold, int64_t limit) {
    return run_op(
               "NonMaxSuppression", 11,
               {boxes, scores, Tensor::from_vector<int64_t>({limit}, {1}), f_scalar(iou), f_scalar(score_threshold)})[0]
        .to_int64_vector();
  };
  EXPECT_EQ(select(0.5f, 0.0f, 10), (std::vector<int64_t>{0, 0, 0, 0, 0, 2}));           // box 1 suppressed
  EXPECT_EQ(select(0.7f, 0.0f, 10), (std::vector<int64_t>{0, 0, 0, 0, 0, 1, 0, 0, 2}));  // IoU 0.6 kept
  EXPECT_EQ(select(0.7f, 0.1f, 10), (std::vector<int64_t>{0, 0, 0, 0, 0, 1}));           // score 0.1 is not > 0.1
  EXPECT_EQ(select(0.7f, 0.0f, 1), (std::vector<int64_t>{0, 0, 0}));
  EXPECT_TRUE(select(0.7f, 0.0f, 0).empty());  // 0 boxes per class: none
}

TEST(NonMaxSuppression, BadShapesAreNamed) {
  const Tensor boxes = fvec({0, 0, 1, 1}, {1, 1, 4});
  std::string msg = error_of([&] {
    run_op("NonMaxSuppression", 11, {fvec({0, 0, 1}, {1, 1, 3}), fvec({1}, {1, 1, 1})});
  });
  EXPECT_NE(msg.find("boxes"), std::string::npos) << msg;
  msg = error_of([&] { run_op("NonMaxSuppression", 11, {boxes, fvec({1, 1}, {1, 1, 2})}); });
  EXPECT_NE(msg.find("scores"), std::string::npos) << msg;
  msg = error_of([&] {
    run_op("NonMaxSuppression", 11,
           {boxes, fvec({1}, {1, 1, 1}), Tensor::from_vector<int64_t>({1}, {1}), f_scalar(1.5f)});
  });
  EXPECT_NE(msg.find("iou_threshold"), std::string::npos) << msg;
}

TEST(RoiAlign, ConstantImageAveragesToItsValueAndBadBatchIsNamed) {
  const Tensor x = fvec(std::vector<float>(2 * 8 * 8, 3.0f), {1, 2, 8, 8});
  const Tensor rois = fvec({1, 1, 6, 5}, {1, 4});
  const Tensor y = run_op("RoiAlign", 16, {x, rois, Tensor::from_vector<int64_t>({0}, {1})},
                          {{"output_height", int_attr(2)}, {"output_width", int_attr(3)}})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 2, 2, 3}));
  for (float v : y.to_float_vector()) EXPECT_NEAR(v, 3.0f, 1e-6f);
  const std::string msg = error_of([&] { run_op("RoiAlign", 16, {x, rois, Tensor::from_vector<int64_t>({1}, {1})}); });
  EXPECT_NE(msg.find("batch_indices"), std::string::npos) << msg;
}

TEST(GridSample, IdentityGridWithAlignCornersReproducesTheImage) {
  const Tensor x = fvec({1, 2, 3, 4, 5, 6}, {1, 1, 2, 3});
  std::vector<float> grid;
  for (int yy = 0; yy < 2; ++yy) {
    for (int xx = 0; xx < 3; ++xx) grid.insert(grid.end(), {-1.0f + xx * 1.0f, -1.0f + yy * 2.0f});
  }
  for (const char* mode : {"bilinear", "nearest", "bicubic"}) {
    const Tensor y = run_op("GridSample", 16, {x, fvec(grid, {1, 2, 3, 2})},
                            {{"align_corners", int_attr(1)}, {"mode", string_attr(mode)}})[0];
    const std::vector<float> got = y.to_float_vector();
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], static_cast<float>(i + 1), 1e-5f) << mode;
  }
  // Far outside: zeros padding reads 0, border the nearest edge pixel.
  const Tensor far = fvec({5.0f, 5.0f}, {1, 1, 1, 2});
  EXPECT_EQ(run_op("GridSample", 16, {x, far})[0].to_float_vector(), (std::vector<float>{0.0f}));
  EXPECT_EQ(run_op("GridSample", 16, {x, far}, {{"padding_mode", string_attr("border")}})[0].to_float_vector(),
            (std::vector<float>{6.0f}));
  const std::string msg = error_of([&] { run_op("GridSample", 16, {x, far}, {{"mode", string_attr("area")}}); });
  EXPECT_NE(msg.find("mode"), std::string::npos) << msg;
}

TEST(Dft, InverseUndoesForwardAndBadLengthIsNamed) {
  const Tensor x = fvec({1, -2, 3, 0.5f, 4}, {1, 5, 1});
  const Tensor spectrum = run_op("DFT", 17, {x})[0];
  EXPECT_EQ(spectrum.shape(), (Shape{1, 5, 2}));
  const Tensor back = run_op("DFT", 17, {spectrum}, {{"inverse", int_attr(1)}})[0];
  const std::vector<float> got = back.to_float_vector();
  const std::vector<float> want = x.to_float_vector();
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_NEAR(got[2 * i], want[i], 1e-5f);
    EXPECT_NEAR(got[2 * i + 1], 0.0f, 1e-5f);
  }
  EXPECT_EQ(run_op("DFT", 17, {x}, {{"onesided", int_attr(1)}})[0].shape(), (Shape{1, 3, 2}));
  const std::string msg = error_of([&] { run_op("DFT", 17, {x, i_scalar(0)}); });
  EXPECT_NE(msg.find("dft_length"), std::string::npos) << msg;
}

TEST(Stft, FrameLongerThanTheSignalIsNamed) {
  const Tensor signal = fvec({1, 2, 3, 4}, {1, 4, 1});
  const Tensor y = run_op("STFT", 17, {signal, i_scalar(2), Tensor(), i_scalar(2)})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 2, 2, 2}));         // 2 frames, 2 / 2 + 1 bins
  EXPECT_NEAR(y.to_float_vector()[0], 3.0f, 1e-6f);  // DC of frame 0: 1 + 2
  const std::string msg = error_of([&] { run_op("STFT", 17, {signal, i_scalar(1), Tensor(), i_scalar(8)}); });
  EXPECT_NE(msg.find("frame length"), std::string::npos) << msg;
}

TEST(Windows, SymmetricHannEndsAtZero) {
  const Tensor w = run_op("HannWindow", 17, {i_scalar(5)}, {{"periodic", int_attr(0)}})[0];
  const std::vector<float> v = w.to_float_vector();
  ASSERT_EQ(v.size(), 5u);
  EXPECT_NEAR(v[0], 0.0f, 1e-7f);
  EXPECT_NEAR(v[2], 1.0f, 1e-7f);
  EXPECT_NEAR(v[4], 0.0f, 1e-7f);
  EXPECT_EQ(run_op("BlackmanWindow", 17, {i_scalar(1)})[0].to_float_vector().size(), 1u);
  const std::string msg = error_of([&] { run_op("HammingWindow", 17, {i_scalar(-3)}); });
  EXPECT_NE(msg.find("size"), std::string::npos) << msg;
}

TEST(Unique, UnsortedKeepsFirstOccurrenceOrder) {
  const Tensor x = fvec({2, 1, 2, 3, 1}, {5});
  const auto sorted = run_op("Unique", 11, {x}, {}, 4);
  EXPECT_EQ(sorted[0].to_float_vector(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(sorted[1].to_int64_vector(), (std::vector<int64_t>{1, 0, 3}));
  EXPECT_EQ(sorted[2].to_int64_vector(), (std::vector<int64_t>{1, 0, 1, 2, 0}));
  EXPECT_EQ(sorted[3].to_int64_vector(), (std::vector<int64_t>{2, 2, 1}));
  const auto unsorted = run_op("Unique", 11, {x}, {{"sorted", int_attr(0)}}, 4);
  EXPECT_EQ(unsorted[0].to_float_vector(), (std::vector<float>{2, 1, 3}));
  EXPECT_EQ(unsorted[2].to_int64_vector(), (std::vector<int64_t>{0, 1, 0, 2, 1}));
}

TEST(CompressAndReverseSequence, SelectAndReverseAndNameBadInput) {
  const Tensor x = fvec({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor cond = bools({true, false, true});
  EXPECT_EQ(run_op("Compress", 11, {x, cond}, {{"axis", int_attr(0)}})[0].to_float_vector(),
            (std::vector<float>{1, 2, 5, 6}));
  const Tensor long_cond = bools({true, false, true, true});
  std::string msg = error_of([&] { run_op("Compress", 11, {x, long_cond}, {{"axis", int_attr(0)}}); });
  EXPECT_NE(msg.find("condition"), std::string::npos) << msg;
  // time_axis 0, batch_axis 1: batch entry 0 reverses its first 3 steps, entry 1 its first 1.
  EXPECT_EQ(run_op("ReverseSequence", 10, {x, ivec({3, 1})})[0].to_float_vector(),
            (std::vector<float>{5, 2, 3, 4, 1, 6}));
  msg = error_of([&] { run_op("ReverseSequence", 10, {x, ivec({4, 1})}); });
  EXPECT_NE(msg.find("sequence_lens"), std::string::npos) << msg;
}

TEST(MaxUnpoolAndDet, IndexOutsideTheOutputIsNamedAndDetIsExact) {
  const Tensor x = fvec({5, 6}, {1, 1, 1, 2});
  const std::string msg = error_of([&] {
    run_op("MaxUnpool", 11, {x, Tensor::from_vector<int64_t>({0, 99}, {1, 1, 1, 2})},
           {{"kernel_shape", ints_attr({2, 2})}, {"strides", ints_attr({2, 2})}});
  });
  EXPECT_NE(msg.find("index 99"), std::string::npos) << msg;
  const Tensor m = fvec({0, 2, 1, 3, 1, 0, 1, 1, 1}, {3, 3});
  // det = 0*(1*1-0*1) - 2*(3*1-0*1) + 1*(3*1-1*1) = -6 + 2 = -4
  EXPECT_NEAR(run_op("Det", 11, {m})[0].to_float_vector()[0], -4.0f, 1e-6f);
}

}  // namespace
}  // namespace kvant
