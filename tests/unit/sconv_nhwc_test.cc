// SConvNhwc (kernels/sconv_nhwc.h) against SConv (NCHW, tested against a
// double oracle in sconv_test.cc), input transposed in and output transposed
// back, on odd shapes (channels 1, 3, 8, 17, 63; sizes 1, 3, 7, 17; kernels
// 1..5; strides 1..3; asymmetric padding; dilation 2; groups 2, 3 and
// depthwise; batch 2; bias or not; relu, clip, SiLU; a fused residual), for
// every ISA level with an entry in the sgemm or NHWC depthwise tables that
// this CPU and KVANT_ISA allow, and 1, 2, 3 threads (bit-identical).
//
// The bound: the 1x1 and depthwise paths sum each output in SConv's order, so
// where both sides run FMA entries (or both the portable ones) the bits must
// match. The im2col path sums the same K products in (ky, kx, c) order instead
// of (c, ky, kx): each float sum errs by at most (K + 1) 2^-24 M, M =
// sum |w x| + |bias| + |residual| (the bias and residual adds included), so
// the two differ by at most 2 (K + 2) 2^-24 M; relu and clip do not widen it;
// SiLU (slope <= 1.1) widens it by 1.1 plus its own few-ulp rounding. This
// is below one average product M / K for every K here, so a missing, doubled
// or misplaced tap fails.
#include "kernels/sconv_nhwc.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "alloc_counter.h"
#include "kernel_walk.h"
#include "kernels/sconv.h"
#include "kernels/sconv_nhwc_kernels.h"
#include "kernels/sgemm_kernels.h"
#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

struct Case {
  ConvShape s;
  int pad_bottom = 0, pad_right = 0;
  bool bias = true;
  bool residual = false;
  SgemmActivation act;
  SConvEpilogue epilogue = SConvEpilogue::kNone;
};

Case make(int batch, int c_in, int c_out, int h, int w, int kh, int kw, int stride_h, int stride_w, int dil, int pt,
          int pl, int pb, int pr, int group) {
  Case c;
  ConvShape& s = c.s;
  s.batch = batch;
  s.c_in = c_in;
  s.c_out = c_out;
  s.h_in = h;
  s.w_in = w;
  s.kh = kh;
  s.kw = kw;
  s.stride_h = stride_h;
  s.stride_w = stride_w;
  s.dil_h = s.dil_w = dil;
  s.pad_top = pt;
  s.pad_left = pl;
  c.pad_bottom = pb;
  c.pad_right = pr;
  s.group = group;
  const int eh = (kh - 1) * dil + 1, ew = (kw - 1) * dil + 1;
  s.h_out = (h + pt + pb - eh) / stride_h + 1;
  s.w_out = (w + pl + pr - ew) / stride_w + 1;
  return c;
}

bool valid(const Case& c) {
  const ConvShape& s = c.s;
  return s.h_out >= 1 && s.w_out >= 1 && s.h_in + s.pad_top + c.pad_bottom >= (s.kh - 1) * s.dil_h + 1 &&
         s.w_in + s.pad_left + c.pad_right >= (s.kw - 1) * s.dil_w + 1;
}

std::string describe(const Case& c) {
  const ConvShape& s = c.s;
  std::string d = "b" + std::to_string(s.batch) + " c" + std::to_string(s.c_in) + "->" + std::to_string(s.c_out) + " " +
                  std::to_string(s.h_in) + "x" + std::to_string(s.w_in) + " k" + std::to_string(s.kh) + "x" +
                  std::to_string(s.kw) + " s" + std::to_string(s.stride_h) + "," + std::to_string(s.stride_w) + " d" +
                  std::to_string(s.dil_h) + " p" + std::to_string(s.pad_top) + "," + std::to_string(s.pad_left) + "," +
                  std::to_string(c.pad_bottom) + "," + std::to_string(c.pad_right) + " g" + std::to_string(s.group);
  d += c.bias ? " bias" : " nobias";
  d += c.residual ? " residual" : "";
  d += " act" + std::to_string(static_cast<int>(c.act.kind));
  d += c.epilogue == SConvEpilogue::kSilu ? " silu" : c.epilogue == SConvEpilogue::kHardSwish ? " hardswish" : "";
  return d;
}

// [n, c, h, w] -> [n, h, w, c] and back.
std::vector<float> to_nhwc(const std::vector<float>& v, int n, int c, int h, int w) {
  std::vector<float> out(v.size());
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) {
        out[(static_cast<size_t>(b) * h * w + i) * c + ch] = v[(static_cast<size_t>(b) * c + ch) * h * w + i];
      }
  return out;
}
std::vector<float> to_nchw(const std::vector<float>& v, int n, int c, int h, int w) {
  std::vector<float> out(v.size());
  for (int b = 0; b < n; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < h * w; ++i) {
        out[(static_cast<size_t>(b) * c + ch) * h * w + i] = v[(static_cast<size_t>(b) * h * w + i) * c + ch];
      }
  return out;
}

struct Data {
  std::vector<float> x, w, b, r;  // NCHW
};

Data make_data(const ConvShape& s, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Data d;
  d.x.resize(static_cast<size_t>(s.batch) * s.c_in * s.h_in * s.w_in);
  d.w.resize(static_cast<size_t>(s.c_out) * (s.c_in / s.group) * s.kh * s.kw);
  d.b.resize(static_cast<size_t>(s.c_out));
  d.r.resize(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out);
  for (auto* v : {&d.x, &d.w, &d.b, &d.r}) {
    for (float& f : *v) f = dist(rng);
  }
  return d;
}

// sum |w x| + |bias| + |residual| per output (NCHW order).
std::vector<double> magnitude(const Case& c, const Data& d) {
  const ConvShape& s = c.s;
  const int cg = s.c_in / s.group, mg = s.c_out / s.group;
  std::vector<double> mag(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out);
  size_t i = 0;
  for (int b = 0; b < s.batch; ++b)
    for (int o = 0; o < s.c_out; ++o)
      for (int oy = 0; oy < s.h_out; ++oy)
        for (int ox = 0; ox < s.w_out; ++ox, ++i) {
          double m = (c.bias ? std::fabs(d.b[o]) : 0.0) + (c.residual ? std::fabs(d.r[i]) : 0.0);
          for (int ci = 0; ci < cg; ++ci)
            for (int ky = 0; ky < s.kh; ++ky)
              for (int kx = 0; kx < s.kw; ++kx) {
                const int iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
                const int ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
                if (iy < 0 || iy >= s.h_in || ix < 0 || ix >= s.w_in) continue;
                m += std::fabs(static_cast<double>(d.w[((static_cast<size_t>(o) * cg + ci) * s.kh + ky) * s.kw + kx]) *
                               d.x[((static_cast<size_t>(b) * s.c_in + o / mg * cg + ci) * s.h_in + iy) * s.w_in + ix]);
              }
          mag[i] = m;
        }
  return mag;
}

std::vector<Isa> levels() {
  Isa allowed = Isa::kRef;
  std::string why;
  if (!test::allowed_isa(allowed, why)) return {};
  std::vector<Isa> out;
  auto add = [&](Isa isa) {
    if (std::find(out.begin(), out.end(), isa) == out.end()) out.push_back(isa);
  };
  for (const SgemmKernel* k : test::runnable_entries(sgemm_kernels(), allowed)) add(k->isa);
  for (const DwNhwcKernel* k : test::runnable_entries(dwconv_nhwc_kernels(), allowed)) add(k->isa);
  return out;
}

struct Scratch {
  explicit Scratch(size_t bytes) : p(std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64)) {}
  ~Scratch() { std::free(p); }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* p;
};

bool generic(const char* name) { return std::string(name).find("generic") != std::string::npos; }

// Returns false (after a failure) on a mismatch.
void check_case(const Case& c, std::mt19937& rng, ThreadPool* pool2, ThreadPool* pool3) {
  const ConvShape& s = c.s;
  const Data d = make_data(s, rng);
  const std::vector<double> mag = magnitude(c, d);
  const std::vector<float> x_nhwc = to_nhwc(d.x, s.batch, s.c_in, s.h_in, s.w_in);
  const std::vector<float> r_nhwc = to_nhwc(d.r, s.batch, s.c_out, s.h_out, s.w_out);
  const float* bias = c.bias ? d.b.data() : nullptr;
  for (Isa isa : levels()) {
    const SConv ref(s, d.w.data(), bias, c.act, isa, c.epilogue);
    const SConvNhwc conv(s, d.w.data(), bias, c.act, isa, c.epilogue);
    const std::string what =
        describe(c) + " level " + isa_name(isa) + " " + conv.kernel_name() + " vs " + ref.kernel_name();
    std::vector<float> want(mag.size(), std::nanf(""));
    {
      Scratch scratch(ref.scratch_bytes());
      ref.run(d.x.data(), want.data(), scratch.p, nullptr, c.residual ? d.r.data() : nullptr);
    }
    std::vector<float> first;
    for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), pool2, pool3}) {
      std::vector<float> y(mag.size(), std::nanf(""));
      Scratch scratch(conv.scratch_bytes());
      conv.run(x_nhwc.data(), y.data(), scratch.p, pool, c.residual ? r_nhwc.data() : nullptr);
      if (pool == nullptr) {
        first = y;
      } else {
        ASSERT_EQ(std::memcmp(first.data(), y.data(), y.size() * sizeof(float)), 0)
            << what << " differs with " << pool->size() << " threads";
      }
    }
    const std::vector<float> got = to_nchw(first, s.batch, s.c_out, s.h_out, s.w_out);
    const std::string path = conv.kernel_name();
    const bool same_order = (path.rfind("sconv_nhwc_1x1/", 0) == 0 || path.rfind("sconv_nhwc_depthwise/", 0) == 0) &&
                            generic(conv.kernel_name()) == generic(ref.kernel_name());
    const int k = s.c_in / s.group * s.kh * s.kw;
    const bool silu = c.epilogue != SConvEpilogue::kNone;  // or hard swish (slope <= 1.5 near 0)
    for (size_t i = 0; i < got.size(); ++i) {
      if (same_order) {
        ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
            << what << " element " << i << " got " << got[i] << " want " << want[i] << " (same order: same bits)";
        continue;
      }
      double bound = 2.0 * (k + 2) * std::ldexp(1.0, -24) * mag[i];
      if (silu) bound = 1.5 * bound + 1e-6 * std::fabs(want[i]) + 1e-30;
      ASSERT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), bound)
          << what << " element " << i << " got " << got[i] << " want " << want[i] << " mag " << mag[i];
    }
  }
}

TEST(SConvNhwc, MatchesNchwOnNamedShapes) {
  ThreadPool pool2(2), pool3(3);
  std::mt19937 rng(21);
  const SgemmActivation relu = SgemmActivation::relu(), clip = SgemmActivation::clip(-0.5f, 0.75f);
  std::vector<Case> cases;
  auto add = [&](Case c, SgemmActivation act, bool bias, bool residual, SConvEpilogue ep = SConvEpilogue::kNone) {
    c.act = act;
    c.bias = bias;
    c.residual = residual;
    c.epilogue = ep;
    cases.push_back(c);
  };
  // 1x1 (in place GEMM): tails in M and N, batch folded into M, K > 256.
  add(make(1, 17, 63, 14, 14, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), relu, true, false);
  add(make(2, 64, 40, 20, 20, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), {}, false, true);
  add(make(1, 300, 13, 7, 7, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), clip, true, true);
  add(make(1, 8, 3, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), {}, true, false, SConvEpilogue::kSilu);
  add(make(1, 96, 576, 17, 17, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1), relu, true, true);  // > 2 row chunks per thread
  // im2col: 3x3, 3 K blocks, asymmetric padding, strides, dilation, 1x1 stride 2.
  add(make(1, 63, 17, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), relu, true, true);
  add(make(2, 3, 8, 17, 17, 3, 3, 2, 2, 1, 0, 1, 1, 0, 1), clip, true, false);
  add(make(1, 17, 8, 7, 7, 3, 3, 1, 1, 2, 2, 2, 2, 2, 1), {}, false, true);
  add(make(1, 8, 17, 17, 17, 5, 3, 1, 2, 1, 2, 0, 1, 1, 1), relu, true, false);
  add(make(1, 17, 63, 7, 7, 1, 1, 2, 2, 1, 0, 0, 0, 0, 1), {}, true, false);
  add(make(1, 1, 8, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), relu, true, false);  // 1x1 input, padding only
  add(make(1, 3, 8, 17, 17, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1), {}, true, false, SConvEpilogue::kSilu);
  // Grouped (not depthwise).
  add(make(1, 16, 8, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2), relu, true, true);
  add(make(2, 63, 9, 3, 7, 1, 3, 1, 1, 1, 0, 1, 0, 1, 3), clip, false, false);
  // Depthwise: channel tails, strides 1-3, dilation, asymmetric padding, wide rows (4-pixel blocks).
  for (int ch : {2, 3, 8, 17, 63}) {
    add(make(1, ch, ch, 17, 17, 3, 3, 1, 1, 1, 1, 1, 1, 1, ch), relu, true, false);
    add(make(2, ch, ch, 7, 7, 5, 5, 2, 2, 1, 2, 2, 2, 2, ch), clip, true, false);
    add(make(1, ch, ch, 3, 17, 3, 3, 1, 3, 2, 0, 2, 2, 1, ch), {}, false, false);
  }
  add(make(1, 24, 24, 1, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 24), relu, true, false);
  // Dead taps (decision 57): an ASPP-like dilated conv on a small map runs as
  // 1x1; a dilated depthwise conv keeps its centre tap only; one axis cut.
  add(make(1, 17, 8, 8, 8, 3, 3, 1, 1, 12, 12, 12, 12, 12, 1), relu, true, true);
  add(make(1, 17, 17, 3, 3, 3, 3, 1, 1, 4, 4, 4, 4, 4, 17), {}, true, false);
  add(make(1, 8, 9, 2, 9, 3, 3, 1, 1, 3, 3, 1, 3, 1, 1), clip, true, false);
  add(make(1, 32, 32, 17, 17, 3, 3, 2, 2, 1, 0, 0, 1, 1, 32), {}, true, false, SConvEpilogue::kSilu);
  add(make(1, 17, 24, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1), relu, true, false, SConvEpilogue::kHardSwish);
  add(make(1, 24, 24, 9, 9, 5, 5, 1, 1, 1, 2, 2, 2, 2, 24), {}, true, false, SConvEpilogue::kHardSwish);
  for (const Case& c : cases) {
    ASSERT_TRUE(valid(c)) << describe(c);
    check_case(c, rng, &pool2, &pool3);
    if (HasFatalFailure()) return;
  }
}

TEST(SConvNhwc, MatchesNchwOnRandomShapes) {
  ThreadPool pool2(2), pool3(3);
  std::mt19937 rng(5);
  const int chans[] = {1, 3, 8, 17, 63};
  const int sizes[] = {1, 3, 7, 17};
  int run = 0;
  while (run < 60) {
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    const int kind = pick(3);  // 0 dense, 1 grouped, 2 depthwise
    int c_in = chans[pick(5)], c_out = chans[pick(5)], group = 1;
    if (kind == 1) {
      group = 1 + pick(3);
      c_in = group * (1 + pick(9));
      c_out = group * (1 + pick(9));
    } else if (kind == 2) {
      c_out = c_in;
      group = c_in;
    }
    const int k = 1 + pick(5);
    Case c = make(1 + pick(2), c_in, c_out, sizes[pick(4)], sizes[pick(4)], k, 1 + pick(5), 1 + pick(3), 1 + pick(3),
                  1 + pick(2), pick(3), pick(3), pick(3), pick(3), group);
    if (!valid(c) || c.s.pad_top >= (c.s.kh - 1) * c.s.dil_h + 1 || c.s.pad_left >= (c.s.kw - 1) * c.s.dil_w + 1) {
      continue;
    }
    c.act = pick(2) == 0 ? SgemmActivation::relu() : SgemmActivation::none();
    c.bias = pick(2) == 0;
    c.residual = kind != 2 && pick(2) == 0;
    check_case(c, rng, &pool2, &pool3);
    if (HasFatalFailure()) return;
    ++run;
  }
}

// The hard swish epilogue on the three NHWC paths: bit for bit one
// hard_swish_f32 pass over the plain conv's output, 1 and 3 threads.
TEST(SConvNhwc, HardSwishEpilogueIsThePassBitForBit) {
  ThreadPool pool3(3);
  std::mt19937 rng(17);
  const Case cases[] = {make(1, 17, 63, 14, 14, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1),
                        make(1, 8, 17, 17, 17, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
                        make(1, 40, 40, 9, 9, 5, 5, 1, 1, 1, 2, 2, 2, 2, 40)};
  const HardSwishParams hs{1.0f / 6.0f, 0.5f};
  for (const Case& c : cases) {
    const ConvShape& s = c.s;
    const Data d = make_data(s, rng);
    const std::vector<float> x = to_nhwc(d.x, s.batch, s.c_in, s.h_in, s.w_in);
    for (Isa isa : levels()) {
      const SConvNhwc plain(s, d.w.data(), d.b.data(), SgemmActivation::none(), isa);
      const SConvNhwc fused(s, d.w.data(), d.b.data(), SgemmActivation::none(), isa, SConvEpilogue::kHardSwish, hs);
      std::vector<float> want(d.r.size());
      Scratch scratch(std::max(plain.scratch_bytes(), fused.scratch_bytes()));
      plain.run(x.data(), want.data(), scratch.p, nullptr);
      hard_swish_f32(want.data(), want.data(), static_cast<int64_t>(want.size()), hs.alpha, hs.beta);
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool3}) {
        std::vector<float> got(want.size(), std::nanf(""));
        fused.run(x.data(), got.data(), scratch.p, pool);
        ASSERT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
            << describe(c) << " " << fused.kernel_name() << " threads " << (pool == nullptr ? 1 : pool->size());
      }
    }
  }
}

TEST(SConvNhwc, EveryDepthwiseEntryRuns) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  test::check_coverage(dwconv_nhwc_kernels(), allowed, "dwconv_nhwc");
  for (const DwNhwcKernel* e : test::runnable_entries(dwconv_nhwc_kernels(), allowed)) {
    const ConvShape s = make(1, 17, 17, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 17).s;
    const std::vector<float> w(17 * 9, 0.5f);
    const SConvNhwc conv(s, w.data(), nullptr, SgemmActivation::none(), e->isa);
    EXPECT_NE(std::string(conv.kernel_name()).find(e->name), std::string::npos) << conv.kernel_name();
  }
}

TEST(SConvNhwc, PicksThePathByShape) {
  const std::vector<float> w(64 * 64 * 9, 0.25f);
  auto name = [&](const Case& c) {
    return std::string(SConvNhwc(c.s, w.data(), nullptr, SgemmActivation::none()).kernel_name());
  };
  EXPECT_EQ(name(make(1, 16, 32, 7, 7, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1)).rfind("sconv_nhwc_1x1/", 0), 0u);
  EXPECT_EQ(name(make(1, 16, 32, 7, 7, 1, 1, 2, 2, 1, 0, 0, 0, 0, 1)).rfind("sconv_nhwc_im2col/", 0), 0u);
  EXPECT_EQ(name(make(1, 16, 32, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1)).rfind("sconv_nhwc_im2col/", 0), 0u);
  EXPECT_EQ(name(make(1, 16, 16, 7, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 16)).rfind("sconv_nhwc_depthwise/", 0), 0u);
  // Only the centre tap reads the 8x8 map: the 1x1 path over the live taps,
  // unless a dropped weight is not finite (0 * inf must stay NaN).
  const Case aspp = make(1, 16, 32, 8, 8, 3, 3, 1, 1, 12, 12, 12, 12, 12, 1);
  const std::string live = name(aspp);
  EXPECT_EQ(live.rfind("sconv_nhwc_1x1/", 0), 0u) << live;
  EXPECT_NE(live.find("+live-taps"), std::string::npos) << live;
  std::vector<float> inf_w(w);
  inf_w[0] = std::numeric_limits<float>::infinity();
  const SConvNhwc full(aspp.s, inf_w.data(), nullptr, SgemmActivation::none());
  EXPECT_EQ(std::string(full.kernel_name()).rfind("sconv_nhwc_im2col/", 0), 0u) << full.kernel_name();
  EXPECT_EQ(full.shape().kh, 3);
}

TEST(SConvNhwc, RejectsBadShapesAndADepthwiseResidual) {
  const std::vector<float> w(64, 1.0f);
  Case c = make(1, 6, 4, 5, 5, 1, 1, 1, 1, 1, 0, 0, 0, 0, 4);  // group 4 does not divide c_in 6
  EXPECT_THROW(SConvNhwc(c.s, w.data(), nullptr, SgemmActivation::none()), Error);
  c = make(1, 4, 4, 5, 5, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1);
  c.s.stride_h = 0;
  EXPECT_THROW(SConvNhwc(c.s, w.data(), nullptr, SgemmActivation::none()), Error);
  c = make(1, 4, 4, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 4);
  const SConvNhwc dw(c.s, w.data(), nullptr, SgemmActivation::none());
  EXPECT_FALSE(dw.supports_residual());
  std::vector<float> x(100, 1.0f), y(100), r(100);
  EXPECT_THROW(dw.run(x.data(), y.data(), nullptr, nullptr, r.data()), Error);
}

TEST(SConvNhwc, RunAllocatesNothing) {
  ThreadPool pool(3);
  std::mt19937 rng(3);
  const std::vector<Case> cases = {make(1, 32, 48, 14, 14, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1),
                                   make(1, 16, 24, 14, 14, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1),
                                   make(1, 24, 24, 14, 14, 5, 5, 1, 1, 1, 2, 2, 2, 2, 24)};
  for (const Case& c : cases) {
    const Data d = make_data(c.s, rng);
    const SConvNhwc conv(c.s, d.w.data(), d.b.data(), SgemmActivation::relu(), SConvEpilogue::kSilu);
    Scratch scratch(conv.scratch_bytes());
    std::vector<float> y(d.r.size());
    conv.run(d.x.data(), y.data(), scratch.p, nullptr);  // warm: thread-local buffers, pool start
    conv.run(d.x.data(), y.data(), scratch.p, &pool);
    const long before = test::allocation_count();
    conv.run(d.x.data(), y.data(), scratch.p, nullptr);
    conv.run(d.x.data(), y.data(), scratch.p, &pool);
    EXPECT_EQ(test::allocation_count(), before) << describe(c) << " " << conv.kernel_name();
  }
}

}  // namespace
}  // namespace kvant
