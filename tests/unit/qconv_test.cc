// QConv (kernels/qconv.h) against two oracles, bit-exactly: an independent
// triple loop written here (int64 products of values minus zero points,
// requantized in float, rounded half to even, clamped), and on a subset the
// registered reference operator QLinearConv (src/ops/qlinear.cc). Random
// shapes cover every path (1x1 GEMM, im2col, depthwise, grouped, ref), odd
// sizes, strides, padding, dilation, batch 2, per-tensor and per-channel
// scales, zero points, int8/uint8 in and out, bias, a fused Relu/Clip clamp,
// and 1, 2 and 3 threads, on every Isa the CPU supports.
#include "kernels/qconv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_s8_kernels.h"
#include "kernels/qdw_nhwc.h"
#include "ops/op_registry.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

struct Case {
  QConvParams params;
  int pad_bottom = 0, pad_right = 0;
  std::vector<uint8_t> x;  // raw bytes (int8 when x_signed)
  std::vector<int8_t> w;
};

int32_t x_value(const Case& c, int64_t i) {
  return c.params.x_signed ? int32_t{static_cast<int8_t>(c.x[static_cast<size_t>(i)])}
                           : int32_t{c.x[static_cast<size_t>(i)]};
}

// The obvious loops; returns the output bytes.
std::vector<uint8_t> oracle(const Case& c) {
  const QConvParams& p = c.params;
  const ConvShape& s = p.shape;
  const int cin_g = s.c_in / s.group, cout_g = s.c_out / s.group;
  const int y_min = p.y_signed ? -128 : 0;
  const int lo = std::max(y_min, p.out_min), hi = std::min(y_min + 255, p.out_max);
  std::vector<uint8_t> y(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out);
  size_t at = 0;
  for (int b = 0; b < s.batch; ++b) {
    for (int m = 0; m < s.c_out; ++m) {
      const int g = m / cout_g;
      const int32_t wzp = p.w_zp.empty() ? 0 : p.w_zp[p.w_zp.size() == 1 ? 0 : static_cast<size_t>(m)];
      const float ws = p.w_scale[p.w_scale.size() == 1 ? 0 : static_cast<size_t>(m)];
      const float multiplier = p.x_scale * ws / p.y_scale;
      for (int oy = 0; oy < s.h_out; ++oy) {
        for (int ox = 0; ox < s.w_out; ++ox) {
          int64_t acc = p.bias.empty() ? 0 : p.bias[static_cast<size_t>(m)];
          for (int ci = 0; ci < cin_g; ++ci) {
            for (int ky = 0; ky < s.kh; ++ky) {
              for (int kx = 0; kx < s.kw; ++kx) {
                const int iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
                const int ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
                const bool inside = iy >= 0 && iy < s.h_in && ix >= 0 && ix < s.w_in;
                const int64_t xi = ((static_cast<int64_t>(b) * s.c_in + g * cin_g + ci) * s.h_in + iy) * s.w_in + ix;
                const int32_t xv = inside ? x_value(c, xi) : p.x_zp;
                const int32_t wv = c.w[((static_cast<size_t>(m) * cin_g + ci) * s.kh + ky) * s.kw + kx];
                acc += static_cast<int64_t>(xv - p.x_zp) * (wv - wzp);
              }
            }
          }
          const double q = std::nearbyint(static_cast<double>(static_cast<float>(acc) * multiplier)) + p.y_zp;
          y[at++] =
              static_cast<uint8_t>(static_cast<int>(std::clamp(q, static_cast<double>(lo), static_cast<double>(hi))));
        }
      }
    }
  }
  return y;
}

// The same case through the registered QLinearConv operator (no out_min /
// out_max there: its result is clamped afterwards, clamps compose).
std::vector<uint8_t> run_reference_op(const Case& c) {
  const QConvParams& p = c.params;
  const ConvShape& s = p.shape;
  const Shape x_shape{s.batch, s.c_in, s.h_in, s.w_in};
  Tensor x = p.x_signed ? Tensor::from_vector<int8_t>(std::vector<int8_t>(c.x.begin(), c.x.end()), x_shape)
                        : Tensor::from_vector<uint8_t>(c.x, x_shape);
  Tensor x_zp = p.x_signed ? Tensor::scalar<int8_t>(static_cast<int8_t>(p.x_zp))
                           : Tensor::scalar<uint8_t>(static_cast<uint8_t>(p.x_zp));
  Tensor xs = Tensor::scalar<float>(p.x_scale);
  Tensor w = Tensor::from_vector<int8_t>(c.w, {s.c_out, s.c_in / s.group, s.kh, s.kw});
  Tensor ws = Tensor::from_vector<float>(p.w_scale, {static_cast<int64_t>(p.w_scale.size())});
  std::vector<int8_t> wzp_values(p.w_zp.begin(), p.w_zp.end());
  if (wzp_values.empty()) wzp_values.push_back(0);
  Tensor wzp = Tensor::from_vector<int8_t>(wzp_values, {static_cast<int64_t>(wzp_values.size())});
  Tensor ys = Tensor::scalar<float>(p.y_scale);
  Tensor y_zp = p.y_signed ? Tensor::scalar<int8_t>(static_cast<int8_t>(p.y_zp))
                           : Tensor::scalar<uint8_t>(static_cast<uint8_t>(p.y_zp));
  Tensor bias;
  if (!p.bias.empty()) bias = Tensor::from_vector<int32_t>(p.bias, {s.c_out});
  std::vector<const Tensor*> inputs = {&x, &xs, &x_zp, &w, &ws, &wzp, &ys, &y_zp};
  if (!p.bias.empty()) inputs.push_back(&bias);
  Node node;
  node.name = "conv";
  node.op_type = "QLinearConv";
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::string name = "in";
    name += std::to_string(i);
    node.inputs.push_back(name);
  }
  node.outputs = {"y"};
  node.attributes = {{"kernel_shape", ints_attr({s.kh, s.kw})},
                     {"strides", ints_attr({s.stride_h, s.stride_w})},
                     {"dilations", ints_attr({s.dil_h, s.dil_w})},
                     {"pads", ints_attr({s.pad_top, s.pad_left, c.pad_bottom, c.pad_right})},
                     {"group", int_attr(s.group)}};
  const OpDef* def = find_op("", "QLinearConv");
  EXPECT_NE(def, nullptr);
  KernelContext ctx{node, 13, inputs, {}, nullptr};
  ctx.outputs.resize(1);
  def->run(ctx);
  const Tensor& y = ctx.outputs[0];
  EXPECT_EQ(y.shape(), (Shape{s.batch, s.c_out, s.h_out, s.w_out}));
  const int y_min = p.y_signed ? -128 : 0;
  const int lo = std::max(y_min, p.out_min), hi = std::min(y_min + 255, p.out_max);
  std::vector<uint8_t> out(static_cast<size_t>(y.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int v = p.y_signed ? int{y.data<int8_t>()[i]} : int{y.data<uint8_t>()[i]};
    out[i] = static_cast<uint8_t>(std::clamp(v, lo, hi));
  }
  return out;
}

struct Options {
  int c_in, c_out, h, w, k, stride, pad, dil, group, batch;
};

Case make_case(const Options& o, std::mt19937& rng) {
  std::uniform_int_distribution<int> byte(0, 255), coin(0, 1), small(0, 3);
  Case c;
  QConvParams& p = c.params;
  ConvShape& s = p.shape;
  s.batch = o.batch;
  s.c_in = o.c_in;
  s.c_out = o.c_out;
  s.h_in = o.h;
  s.w_in = o.w;
  s.kh = o.k;
  s.kw = o.k == 1 ? 1 : std::max(1, o.k - 2 * coin(rng));  // sometimes non-square
  s.stride_h = o.stride;
  s.stride_w = o.stride == 1 ? 1 : 1 + coin(rng);
  s.dil_h = s.dil_w = o.dil;
  s.pad_top = o.pad;
  s.pad_left = o.pad == 0 ? 0 : small(rng) % (o.pad + 1);
  c.pad_bottom = o.pad == 0 ? 0 : small(rng) % (o.pad + 1);
  c.pad_right = o.pad;
  s.group = o.group;
  const int eh = (s.kh - 1) * s.dil_h + 1, ew = (s.kw - 1) * s.dil_w + 1;
  // Grow the input until the kernel fits once.
  s.h_in = std::max(s.h_in, eh - s.pad_top - c.pad_bottom);
  s.w_in = std::max(s.w_in, ew - s.pad_left - c.pad_right);
  s.h_out = (s.h_in + s.pad_top + c.pad_bottom - eh) / s.stride_h + 1;
  s.w_out = (s.w_in + s.pad_left + c.pad_right - ew) / s.stride_w + 1;
  p.x_signed = coin(rng);
  p.y_signed = coin(rng);
  p.x_scale = 0.02f + 0.01f * small(rng);
  p.y_scale = 0.3f + 0.7f * static_cast<float>(byte(rng)) / 255.0f;
  const int x_min = p.x_signed ? -128 : 0, y_min = p.y_signed ? -128 : 0;
  p.x_zp = coin(rng) ? (p.x_signed ? 0 : 0) : x_min + byte(rng);
  p.y_zp = y_min + byte(rng) / 2 + 64;
  const bool per_channel = coin(rng);
  const int n_scale = per_channel ? s.c_out : 1;
  for (int i = 0; i < n_scale; ++i) p.w_scale.push_back(0.005f + 0.01f * static_cast<float>(byte(rng)) / 255.0f);
  switch (small(rng)) {
    case 0: break;
    case 1: p.w_zp = {byte(rng) / 4 - 32}; break;
    default:
      for (int i = 0; i < s.c_out; ++i) p.w_zp.push_back(byte(rng) - 128);
  }
  if (coin(rng)) {
    std::uniform_int_distribution<int> b(-20000, 20000);
    for (int i = 0; i < s.c_out; ++i) p.bias.push_back(b(rng));
  }
  switch (small(rng)) {
    case 0: p.out_min = p.y_zp; break;  // Relu
    case 1:
      p.out_min = p.y_zp - 40;
      p.out_max = p.y_zp + 30;
      break;  // Clip
    default: break;
  }
  c.x.resize(static_cast<size_t>(s.batch) * s.c_in * s.h_in * s.w_in);
  for (auto& v : c.x) v = static_cast<uint8_t>(byte(rng));
  // Extremes in places, to hit the largest products.
  for (size_t i = 0; i < c.x.size(); i += 7) c.x[i] = p.x_signed ? 0x80 : 0xFF;
  c.w.resize(static_cast<size_t>(s.c_out) * (s.c_in / s.group) * s.kh * s.kw);
  for (auto& v : c.w) v = static_cast<int8_t>(byte(rng) - 128);
  for (size_t i = 0; i < c.w.size(); i += 5) c.w[i] = -128;
  return c;
}

// make_case with 7-bit weights: every w - w_zp in [-64, 64] (w_zp moved into
// [-64, 63] so that fits int8), with -64 and 64 in places.
Case make_case7(const Options& o, std::mt19937& rng) {
  Case c = make_case(o, rng);
  QConvParams& p = c.params;
  for (int32_t& zp : p.w_zp) zp = std::clamp(zp, -64, 63);
  std::uniform_int_distribution<int> d(-64, 64);
  const size_t per_row = c.w.size() / static_cast<size_t>(p.shape.c_out);
  for (size_t i = 0; i < c.w.size(); ++i) {
    const size_t m = i / per_row;
    const int zp = p.w_zp.empty() ? 0 : p.w_zp[p.w_zp.size() == 1 ? 0 : m];
    int v = d(rng);
    if (i % 5 == 0) v = -64;
    if (i % 5 == 3) v = 64;
    c.w[i] = static_cast<int8_t>(zp + v);
  }
  return c;
}

std::string describe(const Case& c) {
  const QConvParams& p = c.params;
  const ConvShape& s = p.shape;
  std::string d = "b";
  for (int v : {s.batch, s.c_in, s.h_in, s.w_in}) {
    d += " ";
    d += std::to_string(v);
  }
  d += " -> c_out ";
  d += std::to_string(s.c_out) + " " + std::to_string(s.h_out) + "x" + std::to_string(s.w_out);
  d += " k " + std::to_string(s.kh) + "x" + std::to_string(s.kw) + " s " + std::to_string(s.stride_h) + "," +
       std::to_string(s.stride_w) + " d " + std::to_string(s.dil_h) + " pad " + std::to_string(s.pad_top) + "," +
       std::to_string(s.pad_left) + "," + std::to_string(c.pad_bottom) + "," + std::to_string(c.pad_right);
  d += " g " + std::to_string(s.group) + " xs " + std::to_string(p.x_signed) + " ys " + std::to_string(p.y_signed);
  d += " xzp " + std::to_string(p.x_zp) + " wzp# " + std::to_string(p.w_zp.size()) + " ws# " +
       std::to_string(p.w_scale.size()) + " bias " + std::to_string(!p.bias.empty()) + " clamp " +
       std::to_string(p.out_min) + ".." + std::to_string(p.out_max);
  return d;
}

// Every level this CPU runs: each picks other paths and GEMM entries.
std::vector<Isa> isas() {
  std::vector<Isa> v;
  for (Isa isa : kAllIsas) {
    if (isa_implemented(isa) && cpu_supports(cpu_features(), isa)) v.push_back(isa);
  }
  return v;
}

struct AlignedFree {
  void operator()(void* p) const { ::operator delete (p, std::align_val_t{64}); }
};

// [batch, c, h, w] bytes <-> [batch, h, w, c].
std::vector<uint8_t> to_nhwc(const std::vector<uint8_t>& v, int batch, int c, int h, int w, bool back = false) {
  std::vector<uint8_t> out(v.size());
  for (int b = 0; b < batch; ++b) {
    for (int ch = 0; ch < c; ++ch) {
      for (int p = 0; p < h * w; ++p) {
        const size_t nchw = (static_cast<size_t>(b) * c + ch) * h * w + p;
        const size_t nhwc = (static_cast<size_t>(b) * h * w + p) * c + ch;
        if (back) {
          out[nchw] = v[nhwc];
        } else {
          out[nhwc] = v[nchw];
        }
      }
    }
  }
  return out;
}

// Runs `c` on every Isa, in NCHW and NHWC, with 1, 2 and 3 threads; all must
// equal `expected` (NCHW).
void check(const Case& c, const std::vector<uint8_t>& expected, std::vector<std::string>* names = nullptr) {
  static ThreadPool pool2(2), pool3(3);
  const ConvShape& s = c.params.shape;
  for (bool nhwc : {false, true}) {
    const std::vector<uint8_t> x = nhwc ? to_nhwc(c.x, s.batch, s.c_in, s.h_in, s.w_in) : c.x;
    for (Isa isa : isas()) {
      for (int max_threads : {3, 2}) {  // 2: scratch for two slots, run with a pool of 3 too
        QConvParams params = c.params;
        params.max_threads = max_threads;
        params.nhwc = nhwc;
        const QConv conv(params, c.w.data(), isa);
        if (names != nullptr) names->push_back(conv.kernel_name());
        // Exactly scratch_bytes(), so a memory checker sees any overrun.
        const size_t bytes = std::max<size_t>(conv.scratch_bytes(), 1);
        std::unique_ptr<void, AlignedFree> scratch(::operator new (bytes, std::align_val_t{64}));
        auto* aligned = static_cast<uint8_t*>(scratch.get());
        for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
          std::vector<uint8_t> y(expected.size(), 0xA5);
          conv.run(x.data(), y.data(), aligned, pool);
          if (nhwc) y = to_nhwc(y, s.batch, s.c_out, s.h_out, s.w_out, true);
          const int threads = pool == nullptr ? 1 : pool->size();
          size_t bad = 0;
          while (bad < y.size() && y[bad] == expected[bad]) ++bad;
          ASSERT_EQ(bad, y.size()) << conv.kernel_name() << (nhwc ? " NHWC" : " NCHW") << " threads " << threads
                                   << ": first mismatch at " << bad << " got " << int{y[bad]} << " want "
                                   << int{expected[bad]} << " max_threads " << max_threads << "\n  " << describe(c);
        }
      }
    }
  }
}

TEST(QConv, OracleAgreesWithQLinearConvOperator) {
  std::mt19937 rng(7);
  const Options opts[] = {{3, 5, 7, 7, 3, 1, 1, 1, 1, 2},
                          {4, 6, 14, 14, 5, 2, 2, 1, 2, 1},
                          {6, 6, 7, 3, 3, 2, 1, 2, 6, 2},
                          {17, 8, 3, 14, 1, 1, 0, 1, 1, 1}};
  for (const Options& o : opts) {
    const Case c = make_case(o, rng);
    SCOPED_TRACE(describe(c));
    EXPECT_EQ(oracle(c), run_reference_op(c));
  }
}

TEST(QConv, RandomShapesEveryPathMatchesOracle) {
  std::mt19937 rng(2024);
  const int channels[] = {1, 3, 17, 63};
  const int sizes[] = {1, 3, 7, 14};
  const int kernels[] = {1, 3, 5, 7};
  std::vector<std::string> names;
  for (int i = 0; i < 300; ++i) {
    std::uniform_int_distribution<int> pick(0, 3), coin(0, 1);
    Options o{};
    o.c_in = channels[pick(rng)];
    o.c_out = channels[pick(rng)];
    o.h = sizes[pick(rng)];
    o.w = sizes[pick(rng)];
    o.k = kernels[pick(rng)];
    o.stride = 1 + coin(rng);
    o.pad = pick(rng) == 0 ? 0 : o.k / 2;
    o.dil = pick(rng) == 0 ? 2 : 1;
    o.batch = 1 + coin(rng);
    o.group = 1;
    switch (pick(rng)) {
      case 0: o.group = o.c_out = o.c_in; break;  // depthwise
      case 1:                                     // two groups
        o.c_in = 2 * std::max(1, o.c_in / 2);
        o.c_out = 2 * std::max(1, o.c_out / 2);
        o.group = 2;
        break;
      case 2:  // 1x1 stride 1 no padding
        o.k = 1;
        o.stride = 1;
        o.pad = 0;
        o.dil = 1;
        break;
      default: break;
    }
    const Case c = make_case(o, rng);
    SCOPED_TRACE(describe(c));
    const std::vector<uint8_t> expected = oracle(c);
    if (i < 60) {
      EXPECT_EQ(expected, run_reference_op(c));  // the oracle itself, against the operator
    }
    check(c, expected, &names);
    if (HasFatalFailure()) return;
  }
  if (cpu_supports(cpu_features(), Isa::kAvx2)) {
    for (const char* want :
         {"qconv_ref", "qconv_1x1_gemm_avx2", "qconv_im2col_avx2", "qconv_depthwise_avx2", "qconv_grouped_avx2"}) {
      EXPECT_NE(std::find(names.begin(), names.end(), std::string(want)), names.end()) << want << " never ran";
    }
  }
  for (const QDwKernel& k : qdw_nhwc_kernels()) {
    if (!isa_allows(best_isa(cpu_features()), k.isa, cpu_features())) continue;
    EXPECT_NE(std::find(names.begin(), names.end(), std::string(k.name)), names.end()) << k.name << " never ran";
  }
  // The NHWC GEMM path with every vpdpbusd / AMX entry of the GEMM table the
  // CPU runs (tests/unit/kernel_walk.h fails the table walk when one is left out).
  for (const QGemmKernel& k : qgemm_kernels()) {
    if (k.isa < Isa::kAvxVnni || !isa_allows(best_isa(cpu_features()), k.isa, cpu_features())) continue;
    for (const char* form : {"qconv_1x1_nhwc+", "qconv_im2col_nhwc+"}) {
      const std::string want = std::string(form) + k.name;
      EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want << " never ran";
    }
  }
}

// Layer shapes of the benchmark, smaller spatially: wide rows (32-wide
// depthwise blocks), many channels (several row blocks and tiles), big K.
TEST(QConv, NetworkLikeLayersMatchOracle) {
  std::mt19937 rng(99);
  const Options opts[] = {
      {64, 64, 20, 20, 3, 1, 1, 1, 1, 1},  {64, 256, 30, 30, 1, 1, 0, 1, 1, 1}, {512, 40, 7, 7, 3, 1, 1, 1, 1, 1},
      {32, 32, 40, 37, 3, 1, 1, 1, 32, 1}, {96, 96, 45, 45, 3, 2, 1, 1, 96, 2}, {576, 576, 14, 14, 3, 1, 1, 1, 576, 1},
      {24, 144, 56, 56, 1, 1, 0, 1, 1, 1}, {16, 16, 33, 70, 7, 2, 3, 1, 16, 1},
  };
  for (const Options& o : opts) {
    const Case c = make_case(o, rng);
    SCOPED_TRACE(describe(c));
    check(c, oracle(c));
    if (HasFatalFailure()) return;
  }
}

// The 7-bit weight path (vpmaddubsw on raw activation bytes, zero-point
// correction folded into the bias) against the same oracle, on random shapes
// of every GEMM path.
TEST(QConv, SevenBitWeightsMatchOracle) {
  std::mt19937 rng(77);
  const int channels[] = {1, 3, 17, 63};
  const int sizes[] = {1, 3, 7, 14};
  const int kernels[] = {1, 3, 5, 7};
  std::vector<std::string> names;
  for (int i = 0; i < 200; ++i) {
    std::uniform_int_distribution<int> pick(0, 3), coin(0, 1);
    Options o{};
    o.c_in = channels[pick(rng)];
    o.c_out = channels[pick(rng)];
    o.h = sizes[pick(rng)];
    o.w = sizes[pick(rng)];
    o.k = kernels[pick(rng)];
    o.stride = 1 + coin(rng);
    o.pad = pick(rng) == 0 ? 0 : o.k / 2;
    o.dil = pick(rng) == 0 ? 2 : 1;
    o.batch = 1 + coin(rng);
    o.group = 1;
    switch (pick(rng)) {
      case 0:
        o.c_in = 2 * std::max(1, o.c_in / 2);
        o.c_out = 2 * std::max(1, o.c_out / 2);
        o.group = 2;
        break;
      case 1:
      case 2:
        o.k = 1;
        o.stride = 1;
        o.pad = 0;
        o.dil = 1;
        break;
      default: break;
    }
    const Case c = make_case7(o, rng);
    SCOPED_TRACE(describe(c));
    if (i < 20) {
      EXPECT_EQ(oracle(c), run_reference_op(c));
    }
    check(c, oracle(c), &names);
    if (HasFatalFailure()) return;
  }
  // Network-like sizes: several row blocks, tiles and a large K.
  const Options big[] = {{64, 64, 20, 20, 3, 1, 1, 1, 1, 1},
                         {64, 256, 30, 30, 1, 1, 0, 1, 1, 1},
                         {512, 40, 7, 7, 3, 1, 1, 1, 1, 1},
                         {24, 144, 56, 56, 1, 1, 0, 1, 1, 1},
                         {64, 32, 17, 23, 3, 2, 1, 1, 4, 1},
                         // U-Net-like few-channel 3x3 convs (NHWC: rows in
                         // place, runs of 9 and 48 bytes), odd widths, stride 2.
                         {3, 16, 64, 64, 3, 1, 1, 1, 1, 1},
                         {16, 16, 31, 29, 3, 1, 1, 1, 1, 2},
                         {32, 16, 13, 40, 3, 2, 1, 1, 1, 1},
                         {5, 7, 9, 11, 5, 2, 2, 1, 1, 1},
                         // Dilated: one segment per tap (runs of c_in bytes,
                         // 5 -> 8 with zero rows); DeepLabV3's ASPP, where
                         // only the centre tap reads the 8x8 map (the other
                         // taps are dropped); some taps dead at 9x9.
                         {5, 7, 10, 13, 3, 2, 2, 2, 1, 1},
                         {32, 16, 8, 8, 3, 1, 12, 12, 1, 1},
                         {16, 8, 9, 9, 3, 1, 6, 6, 1, 2}};
  for (const Options& o : big) {
    const Case c = make_case7(o, rng);
    SCOPED_TRACE(describe(c));
    check(c, oracle(c), &names);
    if (HasFatalFailure()) return;
  }
  if (cpu_supports(cpu_features(), Isa::kAvx2)) {
    for (const char* want : {"qconv_1x1_gemm_u8s7_avx2", "qconv_im2col_u8s7_avx2", "qconv_grouped_u8s7_avx2",
                             "qconv_rows_nhwc+qgemm_u8s7_avx2_4x16"}) {
      EXPECT_NE(std::find(names.begin(), names.end(), std::string(want)), names.end()) << want << " never ran";
    }
    for (const std::string& n : names) {
      // c_in = c_out = 1 is depthwise, which keeps its int16 kernels; the
      // NHWC GEMM path is exact on any weights and needs no 7-bit one.
      EXPECT_TRUE(n == "qconv_ref" || n == "qconv_depthwise_avx2" || n.find("u8s7") != std::string::npos ||
                  n.find("_nhwc+") != std::string::npos || n.rfind("qdw_nhwc_", 0) == 0)
          << n << " ran on 7-bit weights";
    }
  }
}

// Dilated and few-channel 7-bit convs without a weight zero point take the
// NHWC rows-in-place path (qconv_gemm.h), taps that read only padding
// dropped (the ASPP-like case keeps the centre tap alone), and still give
// the oracle's bytes.
TEST(QConv, SevenBitNhwcRowsInPlaceIncludingDeadTaps) {
  if (!cpu_supports(cpu_features(), Isa::kAvx2)) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(5);
  const Options opts[] = {{32, 16, 8, 8, 3, 1, 12, 12, 1, 1},
                          {5, 7, 10, 13, 3, 2, 2, 2, 1, 1},
                          {3, 16, 17, 19, 3, 1, 1, 1, 1, 1},
                          {8, 8, 6, 6, 5, 1, 4, 3, 1, 1}};
  for (const Options& o : opts) {
    Case c = make_case7(o, rng);
    QConvParams& p = c.params;
    const size_t per_row = c.w.size() / static_cast<size_t>(p.shape.c_out);
    for (size_t i = 0; i < c.w.size() && !p.w_zp.empty(); ++i) {
      const size_t m = i / per_row;
      c.w[i] = static_cast<int8_t>(c.w[i] - p.w_zp[p.w_zp.size() == 1 ? 0 : m]);
    }
    p.w_zp.clear();
    SCOPED_TRACE(describe(c));
    std::vector<std::string> names;
    check(c, oracle(c), &names);
    if (HasFatalFailure()) return;
    EXPECT_NE(std::find(names.begin(), names.end(), std::string("qconv_rows_nhwc+qgemm_u8s7_avx2_4x16")), names.end());
  }
}

// Extremes: every activation byte at its maximum (255, or 127 for int8) or
// minimum, weights all -64 or all 64 from their zero point, large K; and one
// weight at 65 from its zero point sends the layer to the int16 path.
TEST(QConv, SevenBitExtremesAndFallback) {
  std::mt19937 rng(5);
  const Options opts[] = {{256, 8, 9, 9, 3, 1, 1, 1, 1, 1}, {1024, 8, 6, 6, 1, 1, 0, 1, 1, 1}};
  for (const Options& o : opts) {
    for (int variant = 0; variant < 8; ++variant) {
      Case c = make_case7(o, rng);
      QConvParams& p = c.params;
      p.x_signed = (variant & 1) != 0;
      const bool x_max = (variant & 2) != 0;
      const int wv = (variant & 4) != 0 ? 64 : -64;
      p.x_zp = p.x_signed ? (x_max ? -128 : 127) : (x_max ? 0 : 255);  // largest |x - x_zp|
      for (auto& v : c.x) v = p.x_signed ? (x_max ? 0x7F : 0x80) : (x_max ? 0xFF : 0x00);
      p.w_zp = {wv > 0 ? -64 : 63};
      p.bias.clear();
      p.x_scale = 1e-4f;
      for (auto& v : c.w) v = static_cast<int8_t>(p.w_zp[0] + wv);
      SCOPED_TRACE(describe(c));
      std::vector<std::string> names;
      check(c, oracle(c), &names);
      if (HasFatalFailure()) return;
      if (cpu_supports(cpu_features(), Isa::kAvx2)) {
        const std::string avx2 = QConv(c.params, c.w.data(), Isa::kAvx2).kernel_name();
        EXPECT_NE(avx2.find("u8s7"), std::string::npos) << avx2;
      }
    }
  }
  for (const Options& o : opts) {
    Case c = make_case7(o, rng);
    const size_t at = c.w.size() / 2;
    const size_t m = at / (c.w.size() / static_cast<size_t>(c.params.shape.c_out));
    const int zp = c.params.w_zp.empty() ? 0 : c.params.w_zp[c.params.w_zp.size() == 1 ? 0 : m];
    c.w[at] = static_cast<int8_t>(zp + 65 <= 127 ? zp + 65 : zp - 65);  // one weight 65 from its zero point
    SCOPED_TRACE(describe(c));
    std::vector<std::string> names;
    check(c, oracle(c), &names);
    if (HasFatalFailure()) return;
    if (cpu_supports(cpu_features(), Isa::kAvx2)) {
      const std::string avx2 = QConv(c.params, c.w.data(), Isa::kAvx2).kernel_name();
      EXPECT_EQ(avx2.find("u8s7"), std::string::npos) << avx2;
      EXPECT_NE(avx2.find("avx2"), std::string::npos) << avx2;
    }
  }
}

TEST(QConv, BadParametersThrow) {
  QConvParams p;
  p.shape = ConvShape{1, 4, 3, 3, 4, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 3};  // 4 % 3 != 0
  p.w_scale = {1.0f};
  std::vector<int8_t> w(16, 1);
  EXPECT_THROW(QConv(p, w.data(), Isa::kRef), Error);
  p.shape.group = 1;
  p.w_scale = {1.0f, 2.0f};  // neither 1 nor c_out
  EXPECT_THROW(QConv(p, w.data(), Isa::kRef), Error);
  p.w_scale = {1.0f};
  p.out_min = 200;
  p.out_max = 100;  // empty clamp
  EXPECT_THROW(QConv(p, w.data(), Isa::kRef), Error);
  p.out_min = 0;
  p.x_zp = 300;
  EXPECT_THROW(QConv(p, w.data(), Isa::kRef), Error);
}

}  // namespace
}  // namespace kvant
