// FP32 channels-last MaxPool / AveragePool (kernels/pool_nhwc.h) against the
// NCHW reference operators (ops/pool.cc), input transposed in and output
// transposed back: bit for bit, for every table entry this CPU and KVANT_ISA
// allow, 1 and 3 threads, on odd shapes (channels 1, 3, 8, 17, 40 for the
// 32/8/masked channel blocks; maps 1..13; kernels 1..5; strides 1..3; pads
// up to kernel - 1; dilation 1..2; ceil_mode; count_include_pad) with NaN,
// infinities and signed zeros in the input (MaxPool keeps a NaN first tap
// and skips a later one, as the reference does). Then the layout pass's
// twins compiled: a Conv -> MaxPool -> Conv -> AveragePool -> Conv chain runs
// NHWC end to end with these steps and no fallback.
#include "kernels/pool_nhwc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_walk.h"
#include "nhwc_chain_check.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "runtime/thread_pool.h"
#include "test_graphs.h"

namespace kvant {
namespace {

struct PoolCase {
  int batch, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr;
  bool ceil = false;
};

std::string describe(const PoolCase& p) {
  char buf[200];
  std::snprintf(buf, sizeof buf, "b%d c%d %dx%d k%dx%d s%d,%d d%d,%d p%d,%d,%d,%d%s", p.batch, p.c, p.h, p.w, p.kh,
                p.kw, p.sh, p.sw, p.dh, p.dw, p.pt, p.pl, p.pb, p.pr, p.ceil ? " ceil" : "");
  return buf;
}

Node pool_node(const PoolCase& p, bool average, bool include_pad) {
  Node n = make_node("pool", average ? "AveragePool" : "MaxPool", {"x"}, {"y"});
  set_attr(n, "kernel_shape", std::vector<int64_t>{p.kh, p.kw});
  set_attr(n, "strides", std::vector<int64_t>{p.sh, p.sw});
  set_attr(n, "pads", std::vector<int64_t>{p.pt, p.pl, p.pb, p.pr});
  if (!average || p.dh > 1 || p.dw > 1) set_attr(n, "dilations", std::vector<int64_t>{p.dh, p.dw});
  set_attr(n, "ceil_mode", int64_t{p.ceil ? 1 : 0});
  if (average) set_attr(n, "count_include_pad", int64_t{include_pad ? 1 : 0});
  return n;
}

// x [n, c, h, w] <-> [n, h, w, c].
std::vector<float> to_nhwc(const float* v, int n, int c, int h, int w) {
  std::vector<float> out(static_cast<size_t>(n) * c * h * w);
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) out[(static_cast<size_t>(b) * h * w + i) * c + ch] = v[(b * c + ch) * h * w + i];
  return out;
}
std::vector<float> to_nchw(const std::vector<float>& v, int n, int c, int h, int w) {
  std::vector<float> out(v.size());
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) out[(static_cast<size_t>(b) * c + ch) * h * w + i] = v[(b * h * w + i) * c + ch];
  return out;
}

Tensor random_x(const PoolCase& p, std::mt19937& rng) {
  Tensor x(DType::kFloat32, {p.batch, p.c, p.h, p.w});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 0.0f, -0.0f};
  for (int64_t i = 0; i < x.numel(); ++i) {
    const unsigned r = rng() % 64;
    x.data<float>()[i] = r < 5 ? specials[r] : normal(rng);
  }
  return x;
}

void check(const PoolCase& p, std::mt19937& rng, ThreadPool* pool3, Isa allowed) {
  const Tensor x = random_x(p, rng);
  const std::vector<float> x_nhwc = to_nhwc(x.data<float>(), p.batch, p.c, p.h, p.w);
  for (int kind = 0; kind < 3; ++kind) {  // max, average, average with count_include_pad
    const bool average = kind > 0, include_pad = kind == 2;
    const Node node = pool_node(p, average, include_pad);
    KernelContext ctx{node, 13, {&x}, {}, nullptr};
    ctx.outputs.resize(1);
    find_op("", node.op_type)->run(ctx);
    const Tensor& want = ctx.outputs[0];
    KernelContext geo{node, 13, {}, {}, nullptr};
    const WindowGeometry g = window_geometry(geo, {p.h, p.w}, {p.kh, p.kw}, p.ceil);
    PoolNhwcShape s;
    s.batch = p.batch;
    s.c = p.c;
    s.h_in = p.h;
    s.w_in = p.w;
    s.h_out = static_cast<int>(g.out[0]);
    s.w_out = static_cast<int>(g.out[1]);
    s.kh = p.kh;
    s.kw = p.kw;
    s.stride_h = p.sh;
    s.stride_w = p.sw;
    s.dil_h = p.dh;
    s.dil_w = p.dw;
    s.pad_top = p.pt;
    s.pad_left = p.pl;
    s.pad_bottom = static_cast<int>(g.pads_end[0]);
    s.pad_right = static_cast<int>(g.pads_end[1]);
    ASSERT_EQ(want.shape(), (Shape{p.batch, p.c, s.h_out, s.w_out})) << describe(p);
    for (const PoolNhwcKernel* e : test::runnable_entries(pool_nhwc_kernels(), allowed)) {
      const PoolNhwc pool(s, average, include_pad, e->isa);
      ASSERT_STREQ(pool.kernel_name(), e->name);
      for (ThreadPool* tp : {static_cast<ThreadPool*>(nullptr), pool3}) {
        std::vector<float> y(static_cast<size_t>(want.numel()), 12345.0f);
        pool.run(x_nhwc.data(), y.data(), tp);
        const std::vector<float> got = to_nchw(y, p.batch, p.c, s.h_out, s.w_out);
        for (int64_t i = 0; i < want.numel(); ++i) {
          // A NaN's sign and payload are not bits to compare: x86 gives the
          // default NaN (sign set) for inf + -inf but passes an input NaN on,
          // and which operand comes first in a commutative add is the
          // compiler's choice (an -O1 build gave -nan where -O2 gave nan).
          if (std::isnan(got[static_cast<size_t>(i)]) && std::isnan(want.data<float>()[i])) continue;
          ASSERT_EQ(std::memcmp(&got[static_cast<size_t>(i)], want.data<float>() + i, sizeof(float)), 0)
              << describe(p) << " " << node.op_type << (include_pad ? " count_include_pad" : "") << " " << e->name
              << (tp ? " 3 threads" : " 1 thread") << " element " << i << ": got " << got[static_cast<size_t>(i)]
              << ", want " << want.data<float>()[i];
        }
      }
    }
  }
}

TEST(PoolNhwc, MatchesTheReferenceBitForBit) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  test::check_coverage(pool_nhwc_kernels(), allowed, "pool_nhwc");
  ThreadPool pool3(3);
  std::mt19937 rng(11);
  // batch, c, h, w, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, ceil
  const PoolCase named[] = {
      {1, 64, 20, 20, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1},       // the ResNet stem's MaxPool, smaller
      {2, 17, 9, 11, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0, true},  // GoogLeNet / SqueezeNet: ceil_mode
      {1, 40, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},         // inception branch: stride 1, same size
      {1, 3, 5, 6, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, true},    // odd size, partial last window
      {1, 8, 13, 6, 3, 2, 2, 1, 2, 1, 2, 0, 1, 1},         // dilation, asymmetric pads
      {1, 1, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1},          // 1x1 map, padding only around it
      {1, 17, 4, 4, 5, 5, 3, 3, 1, 1, 2, 2, 2, 2, true},   // overhang past the end pad
      {1, 8, 3, 3, 2, 2, 1, 1, 2, 2, 1, 1, 1, 1},          // dilated, windows of one tap
      {1, 33, 6, 5, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0},         // 1x1 window, stride 2
  };
  for (const PoolCase& p : named) {
    check(p, rng, &pool3, allowed);
    if (HasFatalFailure()) return;
  }
  const int chans[] = {1, 3, 8, 17, 40};
  for (int run = 0; run < 80;) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    PoolCase p{1 + pick(2),
               chans[pick(5)],
               1 + pick(13),
               1 + pick(13),
               1 + pick(5),
               1 + pick(5),
               1 + pick(3),
               1 + pick(3),
               1 + pick(2),
               1 + pick(2),
               0,
               0,
               0,
               0,
               pick(2) == 1};
    p.pt = pick(p.kh);
    p.pl = pick(p.kw);
    p.pb = pick(p.kh);
    p.pr = pick(p.kw);
    if (p.h + p.pt + p.pb < (p.kh - 1) * p.dh + 1 || p.w + p.pl + p.pr < (p.kw - 1) * p.dw + 1) continue;
    check(p, rng, &pool3, allowed);
    if (HasFatalFailure()) return;
    ++run;
  }
}

TEST(PoolNhwc, RejectsBadShapes) {
  PoolNhwcShape s;
  s.kh = 0;
  EXPECT_THROW(PoolNhwc(s, false, false, Isa::kRef), Error);
  s = PoolNhwcShape{};
  s.pad_top = -1;
  EXPECT_THROW(PoolNhwc(s, true, true, Isa::kRef), Error);
}

// The layout pass's NhwcMaxPool / NhwcAveragePool twins compile to the FP32
// NHWC pool steps: Conv -> Relu -> MaxPool -> Conv -> AveragePool -> Conv is
// one NHWC group (a Transpose at each end only), with no fallback; outputs
// within float rounding of the reference executor (the convs' sums run in
// another order; the pools are exact), the same bits for 1 and 3 threads.
TEST(PoolNhwc, LayoutTwinsCompileToNhwcPoolSteps) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {1, 5, 11, 13})});
  std::mt19937 rng(3);
  auto& init = m.graph.initializers;
  init["w0"] = uniform({16, 5, 3, 3}, rng, -0.5f, 0.5f);
  init["w1"] = uniform({17, 16, 1, 1}, rng, -0.5f, 0.5f);
  init["w2"] = uniform({8, 17, 1, 1}, rng, -0.5f, 0.5f);
  Node c0 = make_node("c0", "Conv", {"x", "w0"}, {"a"});
  set_attr(c0, "pads", std::vector<int64_t>{1, 1, 1, 1});
  Node mp = make_node("mp", "MaxPool", {"r"}, {"p"});
  set_attr(mp, "kernel_shape", std::vector<int64_t>{3, 3});
  set_attr(mp, "strides", std::vector<int64_t>{2, 2});
  set_attr(mp, "ceil_mode", int64_t{1});
  Node ap = make_node("ap", "AveragePool", {"b"}, {"q"});
  set_attr(ap, "kernel_shape", std::vector<int64_t>{3, 3});
  set_attr(ap, "pads", std::vector<int64_t>{1, 1, 1, 1});
  set_attr(ap, "count_include_pad", int64_t{1});
  m.graph.nodes = {c0, make_node("r0", "Relu", {"a"}, {"r"}),      mp, make_node("c1", "Conv", {"p", "w1"}, {"b"}),
                   ap, make_node("c2", "Conv", {"q", "w2"}, {"y"})};
  m.graph.outputs.push_back({"y", type_of(DType::kFloat32, {1, 8, 5, 6})});
  const Tensor x = uniform({1, 5, 11, 13}, rng, -1.0f, 1.0f);
  test::expect_fp32_nhwc_chain(m, "x", x, {"maxpool_nhwc_f32/pool_nhwc_f32_", "avgpool_nhwc_f32/pool_nhwc_f32_"});
}

}  // namespace
}  // namespace kvant
