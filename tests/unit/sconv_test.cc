// SConv (kernels/sconv.h) against an independent double-precision loop
// oracle of ONNX Conv + bias + activation, on odd shapes (channels 1, 3, 17,
// 63; sizes 1, 3, 7, 14; kernels 1..7; strides 1, 2; padding; dilation 2;
// groups 2 and depthwise; batch 2; with and without bias; relu and clip), for
// every ISA level with an entry in the sgemm or depthwise kernel tables that
// this CPU and KVANT_ISA allow (so every entry runs: the coverage test fails
// otherwise) and 1, 2, 3 threads, which must agree bit-for-bit. One case is
// also checked against kvant's reference Conv op.
//
// Tolerance: float summation of K products errs by at most about
// K * 2^-24 * sum |w x|; the blocked order errs far less, so 1e-5 of
// sum |w x| + |bias| (plus 1e-5 absolute) is required. That is below the size
// of one average product for K <= 3087 (the largest here), so a missing,
// doubled or misplaced tap fails.
#include "kernels/sconv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "alloc_counter.h"
#include "kernel_walk.h"
#include "kernels/sgemm_kernels.h"
#include "kernels/vmath.h"
#include "kernels/vmath_kernels.h"
#include "ops/op_registry.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

struct Case {
  ConvShape s;
  int pad_bottom = 0, pad_right = 0;
  bool bias = true;
  SgemmActivation act;
};

// Fills h_out / w_out from the padding; false when the output would be empty.
bool finish(Case& c) {
  ConvShape& s = c.s;
  const int eh = (s.kh - 1) * s.dil_h + 1, ew = (s.kw - 1) * s.dil_w + 1;
  const int ih = s.h_in + s.pad_top + c.pad_bottom, iw = s.w_in + s.pad_left + c.pad_right;
  if (ih < eh || iw < ew) return false;
  s.h_out = (ih - eh) / s.stride_h + 1;
  s.w_out = (iw - ew) / s.stride_w + 1;
  return true;
}

std::string describe(const Case& c) {
  const ConvShape& s = c.s;
  std::string d = "b" + std::to_string(s.batch);
  d += " c" + std::to_string(s.c_in) + "->" + std::to_string(s.c_out);
  d += " " + std::to_string(s.h_in) + "x" + std::to_string(s.w_in);
  d += " k" + std::to_string(s.kh) + "x" + std::to_string(s.kw);
  d += " s" + std::to_string(s.stride_h) + "," + std::to_string(s.stride_w);
  d += " d" + std::to_string(s.dil_h) + "," + std::to_string(s.dil_w);
  d += " p" + std::to_string(s.pad_top) + "," + std::to_string(s.pad_left) + "," + std::to_string(c.pad_bottom) + "," +
       std::to_string(c.pad_right);
  d += " g" + std::to_string(s.group);
  d += c.bias ? " bias" : " nobias";
  d += " act" + std::to_string(static_cast<int>(c.act.kind));
  return d;
}

struct Data {
  std::vector<float> x, w, b;
};

Data make_data(const ConvShape& s, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Data d;
  d.x.resize(static_cast<size_t>(s.batch) * s.c_in * s.h_in * s.w_in);
  d.w.resize(static_cast<size_t>(s.c_out) * (s.c_in / s.group) * s.kh * s.kw);
  d.b.resize(static_cast<size_t>(s.c_out));
  for (float& v : d.x) v = dist(rng);
  for (float& v : d.w) v = dist(rng);
  for (float& v : d.b) v = dist(rng);
  return d;
}

// Double-precision oracle; mag receives sum |w x| + |bias| per output.
std::vector<double> oracle(const Case& c, const Data& d, std::vector<double>& mag) {
  const ConvShape& s = c.s;
  const int cg = s.c_in / s.group, mg = s.c_out / s.group;
  std::vector<double> y(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out);
  mag.assign(y.size(), 0.0);
  size_t i = 0;
  for (int b = 0; b < s.batch; ++b)
    for (int o = 0; o < s.c_out; ++o)
      for (int oy = 0; oy < s.h_out; ++oy)
        for (int ox = 0; ox < s.w_out; ++ox, ++i) {
          const int g = o / mg;
          double sum = c.bias ? d.b[o] : 0.0, m = c.bias ? std::fabs(d.b[o]) : 0.0;
          for (int ci = 0; ci < cg; ++ci)
            for (int ky = 0; ky < s.kh; ++ky)
              for (int kx = 0; kx < s.kw; ++kx) {
                const int iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
                const int ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
                if (iy < 0 || iy >= s.h_in || ix < 0 || ix >= s.w_in) continue;
                const double p =
                    static_cast<double>(d.w[((static_cast<size_t>(o) * cg + ci) * s.kh + ky) * s.kw + kx]) *
                    d.x[((static_cast<size_t>(b) * s.c_in + g * cg + ci) * s.h_in + iy) * s.w_in + ix];
                sum += p;
                m += std::fabs(p);
              }
          if (c.act.kind == SgemmActivation::Kind::kRelu) sum = std::max(sum, 0.0);
          if (c.act.kind == SgemmActivation::Kind::kClip) {
            sum = std::min(std::max(sum, static_cast<double>(c.act.lo)), static_cast<double>(c.act.hi));
          }
          y[i] = sum;
          mag[i] = m;
        }
  return y;
}

// The ISA levels of the sgemm and depthwise entries that may run here: an
// SConv built for each level picks each of them once.
std::vector<Isa> levels() {
  Isa allowed = Isa::kRef;
  std::string why;
  if (!test::allowed_isa(allowed, why)) return {};
  std::vector<Isa> out;
  auto add = [&](Isa isa) {
    if (std::find(out.begin(), out.end(), isa) == out.end()) out.push_back(isa);
  };
  for (const SgemmKernel* k : test::runnable_entries(sgemm_kernels(), allowed)) add(k->isa);
  for (const DwConvKernel* k : test::runnable_entries(dwconv_kernels(), allowed)) add(k->isa);
  for (const Im2colKernel* k : test::runnable_entries(im2col_kernels(), allowed)) add(k->isa);
  return out;
}

std::vector<float> run_conv(const SConv& conv, const Data& d, ThreadPool* pool) {
  const ConvShape& s = conv.shape();
  std::vector<float> y(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out, std::nanf(""));
  void* scratch = std::aligned_alloc(64, (conv.scratch_bytes() + 63) / 64 * 64 + 64);
  conv.run(d.x.data(), y.data(), scratch, pool);
  std::free(scratch);
  return y;
}

// Checks one case on every path and thread count.
void check_case(const Case& c, std::mt19937& rng, ThreadPool* pool2, ThreadPool* pool3) {
  const Data d = make_data(c.s, rng);
  std::vector<double> mag;
  const std::vector<double> want = oracle(c, d, mag);
  for (Isa isa : levels()) {
    const SConv conv(c.s, d.w.data(), c.bias ? d.b.data() : nullptr, c.act, isa);
    const std::string what = describe(c) + " level " + isa_name(isa) + " " + conv.kernel_name();
    const std::vector<float> got = run_conv(conv, d, nullptr);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_LE(std::fabs(got[i] - want[i]), 1e-5 * mag[i] + 1e-5)
          << what << " element " << i << " got " << got[i] << " want " << want[i];
    }
    for (ThreadPool* pool : {pool2, pool3}) {
      const std::vector<float> threaded = run_conv(conv, d, pool);
      ASSERT_EQ(std::memcmp(threaded.data(), got.data(), got.size() * sizeof(float)), 0)
          << what << " differs with " << pool->size() << " threads";
    }
  }
}

Case make_case(int batch, int c_in, int c_out, int h, int w, int k, int stride, int dil, int pad, int group, bool bias,
               SgemmActivation act) {
  Case c;
  c.s.batch = batch;
  c.s.c_in = c_in;
  c.s.c_out = c_out;
  c.s.h_in = h;
  c.s.w_in = w;
  c.s.kh = c.s.kw = k;
  c.s.stride_h = c.s.stride_w = stride;
  c.s.dil_h = c.s.dil_w = dil;
  c.s.pad_top = c.s.pad_left = c.pad_bottom = c.pad_right = pad;
  c.s.group = group;
  c.bias = bias;
  c.act = act;
  return c;
}

TEST(SConv, NamedShapesMatchOracleOnEveryPathAndThreadCount) {
  ThreadPool pool2(2), pool3(3);
  std::mt19937 rng(11);
  const SgemmActivation relu = SgemmActivation::relu(), none = SgemmActivation::none();
  const SgemmActivation clip = SgemmActivation::clip(-0.5f, 0.75f);
  std::vector<Case> cases = {
      make_case(1, 17, 63, 14, 14, 1, 1, 1, 0, 1, true, relu),      // 1x1 path, tails in M and N
      make_case(2, 64, 40, 20, 20, 1, 1, 1, 0, 1, false, none),     // 1x1, batch 2, N > one tile
      make_case(1, 300, 13, 7, 7, 1, 1, 1, 0, 1, true, clip),       // 1x1, K > 256
      make_case(1, 63, 17, 14, 14, 3, 1, 1, 1, 1, true, relu),      // im2col, K = 567 (3 blocks)
      make_case(1, 64, 64, 30, 30, 3, 1, 1, 1, 1, true, none),      // im2col, many tiles
      make_case(1, 3, 17, 14, 14, 7, 2, 1, 3, 1, true, relu),       // stem-like 7x7/2
      make_case(2, 3, 3, 7, 7, 5, 2, 2, 2, 1, false, clip),         // dilation 2, stride 2
      make_case(1, 1, 1, 1, 1, 1, 1, 1, 0, 1, true, none),          // 1 x 1 x 1
      make_case(1, 1, 3, 1, 1, 3, 1, 1, 1, 1, true, relu),          // kernel larger than the input
      make_case(1, 17, 17, 3, 3, 1, 2, 1, 0, 1, true, none),        // 1x1 stride 2: im2col
      make_case(1, 4, 6, 7, 7, 3, 1, 1, 1, 2, true, relu),          // group 2
      make_case(2, 34, 126, 14, 14, 3, 2, 1, 1, 2, true, clip),     // group 2, K = 153
      make_case(1, 32, 32, 14, 14, 3, 1, 1, 1, 32, true, relu),     // depthwise 3x3 s1
      make_case(2, 17, 17, 7, 7, 3, 2, 1, 1, 17, false, clip),      // depthwise s2
      make_case(1, 3, 3, 14, 14, 5, 1, 2, 4, 3, true, none),        // depthwise dilated
      make_case(1, 63, 63, 14, 14, 7, 2, 1, 3, 63, true, relu),     // depthwise 7x7/2
      make_case(1, 8, 8, 3, 3, 3, 1, 1, 2, 8, true, none),          // depthwise, padding > half kernel
      make_case(1, 576, 576, 14, 14, 3, 1, 1, 1, 576, true, clip),  // MobileNetV2 14x14 dw
  };
  Case asym = make_case(1, 5, 7, 9, 11, 3, 1, 1, 0, 1, true, relu);  // asymmetric padding and kernel
  asym.s.kw = 2;
  asym.s.stride_w = 2;
  asym.s.pad_top = 2;
  asym.pad_right = 1;
  cases.push_back(asym);
  Case dw_asym = make_case(1, 6, 6, 8, 9, 3, 2, 1, 0, 6, true, none);
  dw_asym.s.stride_w = 1;
  dw_asym.s.pad_left = 1;
  dw_asym.pad_bottom = 2;
  cases.push_back(dw_asym);
  Case dw_s3 = make_case(1, 4, 4, 9, 9, 3, 3, 1, 1, 4, true, relu);  // stride 3: portable kernel
  cases.push_back(dw_s3);
  cases.push_back(make_case(1, 5, 7, 11, 11, 3, 3, 1, 1, 1, true, clip));   // im2col stride 3: portable packer
  cases.push_back(make_case(1, 5, 5, 40, 37, 3, 2, 1, 1, 5, true, relu));   // depthwise stride 2, 19 columns
  cases.push_back(make_case(1, 3, 13, 41, 40, 3, 2, 1, 1, 1, true, relu));  // stride 2, rows wider than a panel
  cases.push_back(make_case(1, 7, 9, 37, 35, 5, 1, 2, 3, 1, false, none));  // dilated, rows over 2 panels
  // Implicit GEMM (stride 1, rows of at least 3 (kw - 1) dil_w outputs):
  cases.push_back(make_case(1, 63, 17, 30, 29, 3, 1, 1, 1, 1, true, relu));   // K = 567, odd width
  cases.push_back(make_case(2, 17, 40, 26, 50, 3, 1, 1, 1, 1, false, clip));  // batch 2, many tiles
  cases.push_back(make_case(1, 5, 7, 20, 61, 3, 1, 2, 2, 1, true, none));     // dilation 2
  cases.push_back(make_case(1, 300, 13, 5, 40, 3, 1, 1, 0, 1, true, relu));   // no padding, K = 2700
  cases.push_back(make_case(1, 1, 1, 3, 25, 3, 1, 1, 1, 1, true, clip));      // one channel, 3 rows
  cases.push_back(make_case(1, 3, 65, 9, 100, 5, 1, 1, 1, 1, true, relu));    // 5x5, padding < half kernel
  cases.push_back(make_case(1, 3, 17, 40, 40, 7, 2, 1, 3, 1, true, relu));    // stem-like 7x7/2: 4 phase planes
  cases.push_back(make_case(1, 17, 20, 15, 15, 1, 3, 1, 1, 1, false, none));  // padded 1x1 stride 3: im2col
  cases.push_back(make_case(2, 9, 13, 17, 19, 3, 2, 1, 1, 1, true, clip));    // 3x3/2, odd sizes, batch 2
  cases.push_back(make_case(1, 5, 7, 20, 31, 3, 3, 2, 2, 1, true, relu));     // stride 3, dilation 2
  cases.push_back(make_case(1, 4, 6, 30, 30, 5, 4, 1, 2, 1, true, none));     // stride 4
  Case imp_s21 = make_case(1, 7, 9, 16, 21, 3, 1, 1, 1, 1, true, relu);       // stride 2 x 1
  imp_s21.s.stride_h = 2;
  cases.push_back(imp_s21);
  Case imp_asym = make_case(1, 6, 11, 12, 33, 3, 1, 1, 0, 1, true, relu);  // asymmetric padding
  imp_asym.s.pad_top = 2;
  imp_asym.s.pad_left = 1;
  imp_asym.pad_bottom = 0;
  imp_asym.pad_right = 3;
  cases.push_back(imp_asym);
  for (Case& c : cases) {
    ASSERT_TRUE(finish(c)) << describe(c);
    check_case(c, rng, &pool2, &pool3);
    if (HasFatalFailure()) return;
  }
}

TEST(SConv, RandomShapesMatchOracle) {
  ThreadPool pool2(2), pool3(3);
  std::mt19937 rng(5);
  const int chans[] = {1, 3, 17, 63};
  const int sizes[] = {1, 3, 7, 14};
  const int kernels[] = {1, 3, 5, 7};
  int done = 0;
  for (int trial = 0; done < 60 && trial < 1000; ++trial) {
    Case c;
    c.s.batch = 1 + static_cast<int>(rng() % 2);
    c.s.c_in = chans[rng() % 4];
    c.s.c_out = chans[rng() % 4];
    c.s.h_in = sizes[rng() % 4];
    c.s.w_in = sizes[rng() % 4];
    c.s.kh = kernels[rng() % 4];
    c.s.kw = kernels[rng() % 4];
    c.s.stride_h = 1 + static_cast<int>(rng() % 2);
    c.s.stride_w = 1 + static_cast<int>(rng() % 2);
    c.s.dil_h = 1 + static_cast<int>(rng() % 2);
    c.s.dil_w = 1 + static_cast<int>(rng() % 2);
    c.s.pad_top = static_cast<int>(rng() % c.s.kh);
    c.s.pad_left = static_cast<int>(rng() % c.s.kw);
    c.pad_bottom = static_cast<int>(rng() % c.s.kh);
    c.pad_right = static_cast<int>(rng() % c.s.kw);
    const int g = static_cast<int>(rng() % 3);
    if (g == 1 && c.s.c_in % 2 == 0 && c.s.c_out % 2 == 0) c.s.group = 2;
    if (g == 2) c.s.c_out = c.s.group = c.s.c_in;  // depthwise (plain conv when c_in == 1)
    c.bias = rng() % 2 == 0;
    const int a = static_cast<int>(rng() % 3);
    c.act = a == 0 ? SgemmActivation::none() : a == 1 ? SgemmActivation::relu() : SgemmActivation::clip(-0.3f, 0.4f);
    if (!finish(c)) continue;
    check_case(c, rng, &pool2, &pool3);
    if (HasFatalFailure()) return;
    ++done;
  }
  EXPECT_EQ(done, 60);
}

// Depthwise odd shapes: 1x1 planes, widths 1, 3, 17, 63 (tails of every
// vector width), strides 1 and 2 per axis, asymmetric padding, dilation.
TEST(SConv, DepthwiseOddShapesMatchOracle) {
  ThreadPool pool2(2), pool3(3);
  std::mt19937 rng(23);
  const SgemmActivation relu = SgemmActivation::relu(), none = SgemmActivation::none();
  const SgemmActivation clip = SgemmActivation::clip(0.0f, 6.0f);
  int done = 0;
  for (int w : {1, 3, 17, 63, 101}) {  // 101: the in-place entry at both strides
    for (int h : {1, 2, 9}) {
      for (int stride : {1, 2}) {
        for (int k : {3, 5}) {
          Case c = make_case(1, 5, 5, h, w, k, stride, 1, k / 2, 5, true, stride == 1 ? clip : relu);
          c.pad_bottom = k / 2 - 1 + (w % 2);  // asymmetric: one less or equal
          c.pad_right = k / 2 + 1;
          if (w == 17 || (w == 101 && k == 3)) c.s.dil_w = 2;
          if (h == 9) c.s.stride_w = 3 - stride;  // stride 1 x 2 and 2 x 1
          if (!finish(c)) continue;
          SCOPED_TRACE(describe(c));
          check_case(c, rng, &pool2, &pool3);
          if (HasFatalFailure()) return;
          ++done;
        }
      }
    }
  }
  Case one = make_case(2, 7, 7, 1, 1, 1, 1, 1, 0, 7, false, none);  // 1x1 kernel on 1x1 planes
  ASSERT_TRUE(finish(one));
  check_case(one, rng, &pool2, &pool3);
  EXPECT_GE(done, 40);
}

// The SiLU and hard swish epilogues (sconv.h) on every path, level and
// thread count: bit for bit one silu pass of the level's vmath entry, or one
// hard_swish_f32 pass (alpha 0.2 here: the parameters reach the store), over
// the plain conv's output.
TEST(SConv, SiluEpilogueIsTheSiluPassBitForBit) {
  ThreadPool pool3(3);
  std::mt19937 rng(29);
  const SgemmActivation relu = SgemmActivation::relu(), none = SgemmActivation::none();
  const SgemmActivation clip = SgemmActivation::clip(-0.5f, 0.75f);
  std::vector<Case> cases = {
      make_case(1, 17, 63, 14, 14, 1, 1, 1, 0, 1, true, none),   // 1x1, tails in M and N
      make_case(2, 64, 40, 20, 20, 1, 1, 1, 0, 1, false, relu),  // 1x1, batch 2, N > one tile
      make_case(1, 63, 17, 14, 14, 3, 1, 1, 1, 1, true, none),   // im2col or implicit
      make_case(1, 3, 17, 40, 40, 3, 2, 1, 1, 1, true, none),    // stem-like 3x3/2
      make_case(1, 5, 7, 11, 11, 3, 3, 1, 1, 1, true, clip),     // im2col stride 3
      make_case(1, 4, 6, 7, 7, 3, 1, 1, 1, 2, true, none),       // group 2
      make_case(1, 32, 32, 14, 14, 3, 1, 1, 1, 32, true, none),  // depthwise 3x3 s1
      make_case(2, 17, 17, 13, 19, 5, 2, 1, 2, 17, true, none),  // depthwise 5x5 s2
      make_case(1, 9, 9, 1, 1, 3, 1, 1, 1, 9, false, clip),      // depthwise on 1x1 planes
      make_case(1, 40, 10, 1, 1, 1, 1, 1, 0, 1, true, none),     // squeeze-excite 1x1 on 1x1
  };
  for (Case& c : cases) {
    ASSERT_TRUE(finish(c)) << describe(c);
    const Data d = make_data(c.s, rng);
    for (Isa isa : levels()) {
      const float* b = c.bias ? d.b.data() : nullptr;
      const SConv plain(c.s, d.w.data(), b, c.act, isa);
      const std::vector<float> out = run_conv(plain, d, nullptr);
      for (SConvEpilogue ep : {SConvEpilogue::kSilu, SConvEpilogue::kHardSwish}) {
        const HardSwishParams hs{0.2f, 0.5f};
        const SConv fused(c.s, d.w.data(), b, c.act, isa, ep, hs);
        EXPECT_STREQ(fused.kernel_name(), plain.kernel_name());
        std::vector<float> want = out;
        if (ep == SConvEpilogue::kSilu) {
          vmath_pick(isa).silu(want.data(), want.data(), static_cast<int64_t>(want.size()));
        } else {
          hard_swish_f32(want.data(), want.data(), static_cast<int64_t>(want.size()), hs.alpha, hs.beta);
        }
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool3}) {
          const std::vector<float> got = run_conv(fused, d, pool);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
              << describe(c) << " level " << isa_name(isa) << " " << plain.kernel_name() << " threads "
              << (pool == nullptr ? 1 : pool->size()) << (ep == SConvEpilogue::kSilu ? " silu" : " hard swish");
        }
      }
    }
  }
}

TEST(SConv, PicksThePathByShape) {
  std::vector<float> w(64 * 64 * 9, 0.5f);
  const SgemmActivation none = SgemmActivation::none();
  const std::string gemm = std::string("/") + sgemm_default_kernel().name;
  std::string dw = "/", im2col = "/";
  for (const DwConvKernel& k : dwconv_kernels()) {
    if (isa_allows(selected_isa(), k.isa, cpu_features()) && k.accepts(1, 8)) {  // the 8x8 case below
      dw += k.name;
      break;
    }
  }
  for (const Im2colKernel& k : im2col_kernels()) {
    if (isa_allows(selected_isa(), k.isa, cpu_features())) {
      im2col += std::string(k.name) + "+" + sgemm_default_kernel().name;
      break;
    }
  }
  Case c = make_case(1, 64, 64, 8, 8, 1, 1, 1, 0, 1, false, none);
  ASSERT_TRUE(finish(c));
  EXPECT_EQ(SConv(c.s, w.data(), nullptr, none).kernel_name(), "sconv_1x1" + gemm);
  c = make_case(1, 64, 64, 8, 8, 3, 5, 1, 1, 1, false, none);  // stride 5: im2col
  ASSERT_TRUE(finish(c));
  EXPECT_EQ(SConv(c.s, w.data(), nullptr, none).kernel_name(), "sconv_im2col" + im2col);
  if (sgemm_default_kernel().b_row_table) {  // rows of 6 or more outputs: implicit GEMM
    c = make_case(1, 64, 64, 8, 6, 3, 1, 1, 1, 1, false, none);
    ASSERT_TRUE(finish(c));
    EXPECT_EQ(SConv(c.s, w.data(), nullptr, none).kernel_name(), "sconv_implicit" + gemm);
    c = make_case(1, 64, 64, 8, 24, 3, 2, 1, 1, 1, false, none);  // stride 2: implicit, 4 phase planes
    ASSERT_TRUE(finish(c));
    EXPECT_EQ(SConv(c.s, w.data(), nullptr, none).kernel_name(), "sconv_implicit" + gemm);
    c = make_case(1, 64, 64, 8, 5, 3, 1, 1, 1, 1, false, none);  // rows of 5: im2col
    ASSERT_TRUE(finish(c));
    EXPECT_EQ(SConv(c.s, w.data(), nullptr, none).kernel_name(), "sconv_im2col" + im2col);
  }
  c = make_case(1, 64, 64, 8, 8, 3, 1, 1, 1, 64, false, none);
  ASSERT_TRUE(finish(c));
  EXPECT_EQ(SConv(c.s, w.data(), nullptr, none).kernel_name(), "sconv_depthwise" + dw);
  c = make_case(1, 64, 64, 8, 8, 3, 1, 1, 1, 4, false, none);
  ASSERT_TRUE(finish(c));
  EXPECT_EQ(SConv(c.s, w.data(), nullptr, none).kernel_name(), "sconv_group_im2col" + im2col);
}

// Every depthwise and im2col entry the CPU supports runs in the tests above
// (levels()), the portable one last.
TEST(SConv, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const auto kernels = test::runnable_entries(dwconv_kernels(), allowed);
  ASSERT_FALSE(kernels.empty());
  EXPECT_EQ(kernels.back()->isa, Isa::kRef);
  test::check_coverage(dwconv_kernels(), allowed, "depthwise conv table");
  test::check_coverage(im2col_kernels(), allowed, "im2col packer table");
  EXPECT_EQ(test::runnable_entries(im2col_kernels(), allowed).back()->isa, Isa::kRef);
  // Stride 3 takes the portable entry (the SIMD ones load stride 1 or 2).
  std::vector<float> w(5 * 4 * 9, 0.5f);  // the largest weight below: 5 x 4 x 3 x 3
  Case c = make_case(1, 4, 4, 9, 9, 3, 3, 1, 1, 4, true, SgemmActivation::none());
  ASSERT_TRUE(finish(c));
  EXPECT_EQ(SConv(c.s, w.data(), nullptr, SgemmActivation::none(), allowed).kernel_name(),
            std::string("sconv_depthwise/dwconv_f32_generic"));
  // In place on the AVX2 level for rows of 48 outputs or more, padded below.
  if (isa_allows(allowed, Isa::kAvx2, cpu_features())) {
    c = make_case(1, 4, 4, 20, 48, 3, 1, 1, 1, 4, true, SgemmActivation::none());
    ASSERT_TRUE(finish(c));
    EXPECT_EQ(SConv(c.s, w.data(), nullptr, SgemmActivation::none(), Isa::kAvx2).kernel_name(),
              std::string("sconv_depthwise/dwconv_f32_avx2_inplace"));
    c = make_case(1, 4, 4, 20, 47, 3, 1, 1, 1, 4, true, SgemmActivation::none());
    ASSERT_TRUE(finish(c));
    EXPECT_EQ(SConv(c.s, w.data(), nullptr, SgemmActivation::none(), Isa::kAvx2).kernel_name(),
              std::string("sconv_depthwise/dwconv_f32_avx2"));
  }
  // Stride 2 on rows of at most 8 outputs: AVX2 (the AVX-512 entry declines).
  if (isa_allows(allowed, Isa::kAvx512, cpu_features())) {
    c = make_case(1, 4, 4, 14, 14, 3, 2, 1, 1, 4, true, SgemmActivation::none());
    ASSERT_TRUE(finish(c));
    EXPECT_EQ(SConv(c.s, w.data(), nullptr, SgemmActivation::none(), allowed).kernel_name(),
              std::string("sconv_depthwise/dwconv_f32_avx2"));
  }
  // Stride 3 im2col (grouped: a group-1 conv takes the implicit GEMM): the
  // first entry that takes any stride (the AVX-512 packer loads stride 1 or 2).
  c = make_case(1, 4, 6, 9, 9, 3, 3, 1, 1, 2, true, SgemmActivation::none());
  ASSERT_TRUE(finish(c));
  const char* any_stride = isa_allows(allowed, Isa::kAvx2, cpu_features()) ? "im2col_f32_avx2" : "im2col_f32_generic";
  EXPECT_EQ(std::string(SConv(c.s, w.data(), nullptr, SgemmActivation::none(), allowed).kernel_name())
                .rfind(std::string("sconv_group_im2col/") + any_stride + "+", 0),
            0u);
}

TEST(SConv, RejectsInconsistentShapes) {
  std::vector<float> w(64, 1.0f);
  Case c = make_case(1, 6, 4, 5, 5, 1, 1, 1, 0, 4, false, SgemmActivation::none());  // 4 does not divide 6
  ASSERT_TRUE(finish(c));
  EXPECT_THROW(SConv(c.s, w.data(), nullptr, SgemmActivation::none()), Error);
  c = make_case(1, 4, 4, 5, 5, 1, 0, 1, 0, 1, false, SgemmActivation::none());  // stride 0
  c.s.h_out = c.s.w_out = 5;
  EXPECT_THROW(SConv(c.s, w.data(), nullptr, SgemmActivation::none()), Error);
}

TEST(SConv, RunAllocatesNothing) {
  ThreadPool pool(3);
  std::mt19937 rng(3);
  const Case cases[] = {
      [] {
        Case c = make_case(1, 32, 40, 14, 14, 1, 1, 1, 0, 1, true, SgemmActivation::relu());
        finish(c);
        return c;
      }(),
      [] {
        Case c = make_case(2, 17, 40, 9, 9, 3, 2, 1, 1, 1, true, SgemmActivation::none());
        finish(c);
        return c;
      }(),
      [] {
        Case c = make_case(1, 24, 24, 9, 9, 3, 1, 1, 1, 24, true, SgemmActivation::none());
        finish(c);
        return c;
      }(),
      [] {
        Case c = make_case(1, 4, 6, 9, 9, 3, 1, 1, 1, 2, false, SgemmActivation::none());
        finish(c);
        return c;
      }(),
      [] {  // depthwise in place (AVX2)
        Case c = make_case(2, 6, 6, 9, 50, 3, 1, 1, 1, 6, true, SgemmActivation::relu());
        finish(c);
        return c;
      }(),
      [] {  // implicit GEMM
        Case c = make_case(2, 9, 13, 6, 30, 3, 1, 1, 1, 1, true, SgemmActivation::relu());
        finish(c);
        return c;
      }(),
  };
  for (const Case& c : cases) {
    const Data d = make_data(c.s, rng);
    const SConv conv(c.s, d.w.data(), d.b.data(), c.act);
    std::vector<float> y(static_cast<size_t>(c.s.batch) * c.s.c_out * c.s.h_out * c.s.w_out);
    void* scratch = std::aligned_alloc(64, conv.scratch_bytes());
    const long before = test::allocation_count();
    conv.run(d.x.data(), y.data(), scratch, nullptr);
    conv.run(d.x.data(), y.data(), scratch, &pool);
    const long after = test::allocation_count();
    std::free(scratch);
    EXPECT_EQ(after, before) << describe(c) << " " << conv.kernel_name();
  }
}

// A residual Add fused into the store (SConv::run's residual): bit-identical
// to the conv without act, then y = act(conv + residual) in the order the
// Add (+ Relu|Clip) step computes it, on every path (1x1 with K over one
// 256 block, 7x7 planes of 49 columns, implicit GEMM at strides 1 and 2,
// im2col, grouped), every level and 1, 2, 3 threads; the depthwise path
// refuses it.
TEST(SConv, FusedResidualIsBitIdenticalToConvThenAdd) {
  ThreadPool pool2(2), pool3(3);
  std::mt19937 rng(29);
  const SgemmActivation relu = SgemmActivation::relu(), none = SgemmActivation::none();
  const SgemmActivation clip = SgemmActivation::clip(-0.5f, 0.75f);
  const Case cases[] = {
      make_case(1, 17, 13, 7, 7, 1, 1, 1, 0, 1, true, relu),    // 1x1, 49 columns
      make_case(2, 300, 9, 5, 3, 1, 1, 1, 0, 1, true, relu),    // 1x1, two K blocks
      make_case(1, 6, 20, 9, 11, 1, 1, 1, 0, 1, false, none),   // 1x1, no bias
      make_case(2, 5, 7, 9, 13, 3, 1, 1, 1, 1, true, relu),     // implicit
      make_case(1, 40, 11, 14, 14, 3, 2, 1, 1, 1, true, clip),  // implicit, stride 2, K 360
      make_case(1, 8, 14, 9, 9, 1, 2, 1, 0, 1, true, relu),     // 1x1 stride 2: im2col
      make_case(1, 4, 6, 7, 9, 3, 1, 1, 1, 2, true, relu),      // grouped
      make_case(1, 3, 5, 8, 4, 3, 1, 1, 1, 1, true, none),      // rows of 4: im2col
  };
  for (Case c : cases) {
    ASSERT_TRUE(finish(c));
    const Data d = make_data(c.s, rng);
    const size_t ny = static_cast<size_t>(c.s.batch) * c.s.c_out * c.s.h_out * c.s.w_out;
    std::vector<float> residual(ny);
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    for (float& v : residual) v = dist(rng);
    const float lo = c.act.kind == SgemmActivation::Kind::kClip ? c.act.lo : 0.0f;
    for (Isa isa : levels()) {
      const SConv plain(c.s, d.w.data(), c.bias ? d.b.data() : nullptr, none, isa);
      const SConv fused(c.s, d.w.data(), c.bias ? d.b.data() : nullptr, c.act, isa);
      const std::string what = describe(c) + " level " + isa_name(isa) + " " + fused.kernel_name();
      ASSERT_TRUE(fused.supports_residual()) << what;
      std::vector<float> want = run_conv(plain, d, nullptr);
      for (size_t i = 0; i < ny; ++i) {  // the Add step, then its clamp (steps_elementwise.cc)
        float v = want[i] + residual[i];
        if (c.act.kind != SgemmActivation::Kind::kNone) v = std::max(v, lo);
        if (c.act.kind == SgemmActivation::Kind::kClip) v = std::min(v, c.act.hi);
        want[i] = v;
      }
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
        std::vector<float> got(ny, std::nanf(""));
        void* scratch = std::aligned_alloc(64, (fused.scratch_bytes() + 63) / 64 * 64 + 64);
        fused.run(d.x.data(), got.data(), scratch, pool, residual.data());
        std::free(scratch);
        for (size_t i = 0; i < ny; ++i) {
          ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
              << what << " threads " << (pool == nullptr ? 1 : pool->size()) << " element " << i << " got " << got[i]
              << " want " << want[i];
        }
      }
    }
  }
  Case dw = make_case(1, 8, 8, 6, 6, 3, 1, 1, 1, 8, true, relu);
  ASSERT_TRUE(finish(dw));
  const Data d = make_data(dw.s, rng);
  const SConv conv(dw.s, d.w.data(), d.b.data(), relu);
  EXPECT_FALSE(conv.supports_residual());
  std::vector<float> y(8 * 36), residual(8 * 36, 1.0f);
  void* scratch = std::aligned_alloc(64, conv.scratch_bytes());
  EXPECT_THROW(conv.run(d.x.data(), y.data(), scratch, nullptr, residual.data()), Error);
  std::free(scratch);
}

// The oracle above agrees with kvant's reference Conv operator (src/ops).
TEST(SConv, AgreesWithReferenceConvOp) {
  std::mt19937 rng(9);
  Case c = make_case(2, 6, 9, 10, 7, 3, 2, 1, 1, 3, true, SgemmActivation::none());
  c.pad_bottom = 0;
  ASSERT_TRUE(finish(c));
  const Data d = make_data(c.s, rng);
  Node node;
  node.name = "conv";
  node.op_type = "Conv";
  node.inputs = {"x", "w", "b"};
  node.outputs = {"y"};
  node.attributes["group"] = int_attr(c.s.group);
  node.attributes["strides"] = ints_attr({c.s.stride_h, c.s.stride_w});
  node.attributes["pads"] = ints_attr({c.s.pad_top, c.s.pad_left, c.pad_bottom, c.pad_right});
  const Tensor x = Tensor::from_vector(d.x, {c.s.batch, c.s.c_in, c.s.h_in, c.s.w_in});
  const Tensor w = Tensor::from_vector(d.w, {c.s.c_out, c.s.c_in / c.s.group, c.s.kh, c.s.kw});
  const Tensor b = Tensor::from_vector(d.b, {c.s.c_out});
  const OpDef* def = find_op("", "Conv");
  ASSERT_NE(def, nullptr);
  KernelContext ctx{node, 17, {&x, &w, &b}, {}, nullptr};
  ctx.outputs.resize(1);
  def->run(ctx);
  const Tensor& y = ctx.outputs[0];
  ASSERT_EQ(y.shape(), (Shape{c.s.batch, c.s.c_out, c.s.h_out, c.s.w_out}));
  const std::vector<float> ref = y.to_float_vector();
  const SConv conv(c.s, d.w.data(), d.b.data(), c.act);
  const std::vector<float> got = run_conv(conv, d, nullptr);
  float max_ref = 0.0f, max_err = 0.0f;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(ref[i]));
    max_err = std::max(max_err, std::fabs(got[i] - ref[i]));
  }
  EXPECT_LE(max_err, 1e-4f * (max_ref + 1.0f));
}

// Live taps (sconv.h): a dilated conv whose kernel rows or columns read only
// the padding runs over the live taps. Checked against the oracle, and
// against the full conv on the input zero-padded explicitly (no padding, so
// no dead tap: the unreduced path): for K <= 256 (one K block) both sum the
// same non-zero products in the same order, so every output is equal as
// floats (0 ulp; +0 == -0); above, only the oracle's tolerance holds.
std::vector<float> padded_input(const Case& c, const Data& d, ConvShape& full) {
  const ConvShape& s = c.s;
  full = s;
  full.h_in = s.h_in + s.pad_top + c.pad_bottom;
  full.w_in = s.w_in + s.pad_left + c.pad_right;
  full.pad_top = full.pad_left = 0;
  std::vector<float> x(static_cast<size_t>(s.batch) * s.c_in * full.h_in * full.w_in, 0.0f);
  for (int p = 0; p < s.batch * s.c_in; ++p)
    for (int iy = 0; iy < s.h_in; ++iy)
      for (int ix = 0; ix < s.w_in; ++ix) {
        x[(static_cast<size_t>(p) * full.h_in + iy + s.pad_top) * full.w_in + ix + s.pad_left] =
            d.x[(static_cast<size_t>(p) * s.h_in + iy) * s.w_in + ix];
      }
  return x;
}

void check_live_taps(const Case& c, std::mt19937& rng, ThreadPool* pool3, bool expect_live, bool expect_1x1) {
  SCOPED_TRACE(describe(c));
  const Data d = make_data(c.s, rng);
  ConvShape full_shape;
  Data padded = d;
  padded.x = padded_input(c, d, full_shape);
  std::vector<double> mag;
  const std::vector<double> want = oracle(c, d, mag);
  for (Isa isa : levels()) {
    const SConv conv(c.s, d.w.data(), c.bias ? d.b.data() : nullptr, c.act, isa);
    const SConv full(full_shape, d.w.data(), c.bias ? d.b.data() : nullptr, c.act, isa);
    const std::string what = std::string(isa_name(isa)) + " " + conv.kernel_name() + " vs " + full.kernel_name();
    const std::string name = conv.kernel_name();
    EXPECT_EQ(name.find("+live-taps") != std::string::npos, expect_live) << what;
    EXPECT_EQ(std::string(full.kernel_name()).find("+live-taps"), std::string::npos) << full.kernel_name();
    if (expect_1x1) {
      EXPECT_EQ(name.rfind("sconv_1x1/", 0), 0u) << what;
    }
    EXPECT_EQ(conv.shape().kh, c.s.kh);  // shape() is the given shape
    EXPECT_EQ(conv.shape().pad_top, c.s.pad_top);
    const std::vector<float> want_full = run_conv(full, padded, nullptr);
    // One K block (sgemm.h): each output is one FMA chain over its taps.
    // Over 256, the blocks' partial sums are added and the live taps' block
    // boundaries differ from the full conv's: rounding differs (the oracle
    // check above still holds). The depthwise kernels sum the taps in order.
    const bool exact = c.s.c_in / c.s.group * c.s.kh * c.s.kw <= kSgemmKc || c.s.group == c.s.c_in;
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), pool3}) {
      const std::vector<float> got = run_conv(conv, d, pool);
      for (size_t i = 0; i < want.size(); ++i) {
        ASSERT_LE(std::fabs(got[i] - want[i]), 1e-5 * mag[i] + 1e-5) << what << " element " << i;
        if (exact) {
          ASSERT_EQ(got[i], want_full[i]) << what << " element " << i << (pool ? " 3 threads" : " 1 thread");
        }
      }
    }
  }
}

TEST(SConv, LiveTapsEqualTheFullConv) {
  ThreadPool pool3(3);
  std::mt19937 rng(31);
  const SgemmActivation relu = SgemmActivation::relu(), none = SgemmActivation::none();
  int live = 0, pointwise = 0;
  for (int dil : {2, 6, 12, 36}) {
    for (const auto& [h, w] : {std::pair{4, 4}, std::pair{8, 8}, std::pair{9, 7}, std::pair{33, 33}}) {
      for (int stride : {1, 2}) {
        for (int group : {1, 2}) {
          for (bool asym : {false, true}) {
            // K over one block (c_in / group * 9 > 256) on the 8x8 planes.
            const int c_in = h == 8 && w == 8 ? 64 : 6;
            Case c = make_case(1, c_in, 4, h, w, 3, stride, dil, dil, group, group == 1, group == 1 ? relu : none);
            if (asym) {
              c.s.pad_top = dil / 2;
              c.pad_bottom = dil + 1;
              c.s.pad_left = dil + 2;
              c.pad_right = 0;
            }
            if (!finish(c)) continue;
            ConvShape reduced;
            std::vector<float> lw;
            const Data probe = make_data(c.s, rng);
            const bool expect = SConv::live_taps(c.s, probe.w.data(), reduced, lw);
            // Only the centre tap on a stride-1 map of the same size: 1x1.
            const bool one = expect && reduced.kh == 1 && reduced.kw == 1 && stride == 1 && group == 1 &&
                             reduced.pad_top == 0 && reduced.pad_left == 0 && c.s.h_out == h && c.s.w_out == w;
            check_live_taps(c, rng, &pool3, expect, one);
            if (HasFatalFailure()) return;
            live += expect ? 1 : 0;
            pointwise += one ? 1 : 0;
          }
        }
      }
    }
  }
  EXPECT_GE(live, 40);  // most of these drop taps
  EXPECT_GE(pointwise, 4);
  // ASPP-like: dilation 12 on 8x8, only the centre tap lives -> 1x1 path.
  Case aspp = make_case(2, 40, 24, 8, 8, 3, 1, 12, 12, 1, true, relu);
  ASSERT_TRUE(finish(aspp));
  check_live_taps(aspp, rng, &pool3, true, true);
  // Depthwise, dilation 6 on 4x4.
  Case dw = make_case(1, 8, 8, 4, 4, 3, 1, 6, 6, 8, true, none);
  ASSERT_TRUE(finish(dw));
  check_live_taps(dw, rng, &pool3, true, false);
  // No tap dropped (dilation 2 on 33x33): the unchanged path.
  Case all = make_case(1, 6, 4, 33, 33, 3, 1, 2, 2, 1, true, relu);
  ASSERT_TRUE(finish(all));
  check_live_taps(all, rng, &pool3, false, false);
}

// A non-finite weight in a dead tap: not dropped (0 * inf is NaN, as in the
// full conv).
TEST(SConv, LiveTapsKeepANonFiniteDeadWeight) {
  Case c = make_case(1, 3, 2, 8, 8, 3, 1, 12, 12, 1, true, SgemmActivation::none());
  ASSERT_TRUE(finish(c));
  std::mt19937 rng(7);
  Data d = make_data(c.s, rng);
  ConvShape reduced;
  std::vector<float> lw;
  ASSERT_TRUE(SConv::live_taps(c.s, d.w.data(), reduced, lw));
  d.w[0] = std::numeric_limits<float>::infinity();  // filter 0, channel 0, tap (0, 0): dead
  EXPECT_FALSE(SConv::live_taps(c.s, d.w.data(), reduced, lw));
  for (Isa isa : levels()) {
    const SConv conv(c.s, d.w.data(), d.b.data(), c.act, isa);
    EXPECT_EQ(std::string(conv.kernel_name()).find("+live-taps"), std::string::npos) << conv.kernel_name();
    const std::vector<float> y = run_conv(conv, d, nullptr);
    for (int i = 0; i < 64; ++i) EXPECT_TRUE(std::isnan(y[static_cast<size_t>(i)])) << i;     // output channel 0
    for (int i = 64; i < 128; ++i) EXPECT_FALSE(std::isnan(y[static_cast<size_t>(i)])) << i;  // channel 1
  }
}

}  // namespace
}  // namespace kvant
