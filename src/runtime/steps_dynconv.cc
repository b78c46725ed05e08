// The dynamic convolution step (steps_conv.h): ONNX Runtime's quantize_dynamic
// pattern for Conv run as one step. Per call: the input's range, scale and
// zero point and its uint8 codes exactly as DynamicQuantizeLinear computes
// them (dynamic_quant.h), then one of three exact integer convolutions:
//
//   gemm    the NHWC GEMM of the INT8 convolution (qconv_gemm.h) with the
//           call's zero point, its int32 accumulators dequantized per block
//           (y = float(acc) * mult[m] + bias[m], multiply then add) and
//           stored transposed into the NCHW planes (dequant_t);
//   dw16    depthwise convolutions on x86 (AVX2 and up) with stride 1
//           along W: the INT8 convolution's depthwise kernel
//           (x86_avx2/qconv_avx2.h: codes minus the zero point as int16, tap
//           pairs by vpmaddwd into int32) with the same float epilogue
//           (depthwise_channel_f32);
//   float   the other depthwise convolutions (strided ones on x86, where
//           dw16's plane fill gathers per element and measured slower; all
//           at the reference ISA level) and convolutions with at most 4
//           input channels per group (RGB stems): the codes minus the zero
//           point as floats (integers in [-255, 255]) through the FP32 conv
//           (sconv.h) with the integer weights w - w_zp as floats. Every
//           product and partial sum is an integer of magnitude at most
//           255 * sum_k |w - w_zp|, checked per channel at compile time to be
//           <= 2^24, so the float sums are the int32 accumulators exactly (in
//           any order, with FMA or not); the same epilogue follows. Over the
//           bound, a strided depthwise conv keeps dw16, the rest the GEMM.
// (A depthwise conv has K = kh * kw: a GEMM per channel would be all overhead.)
// Either way the output is bit-identical to the reference graph's
// ConvInteger -> Cast -> Mul -> Add [-> Relu|Clip].
//
// NHWC (params.nhwc, an NhwcConvInteger of the layout pass): x and y are
// [N, H, W, C]; the codes keep x's layout, the GEMM reads them as its rows
// (no transpose) and dequantizes each block into y's rows (dequant, then the
// block's range for the next step); the float path runs SConvNhwc and the
// same epilogue per pixel; depthwise convs take the float path when it is
// exact, else the GEMM (dw16 reads NCHW planes).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "kernels/dynamic_quant.h"
#include "kernels/qconv_gemm.h"
#include "kernels/sconv.h"
#include "kernels/sconv_nhwc.h"
#include "runtime/steps_conv.h"

#if defined(__x86_64__)
#include "kernels/x86_avx2/qconv_avx2.h"
#endif

namespace kvant {

namespace {

size_t round64(size_t x) { return (x + 63) / 64 * 64; }

constexpr int64_t kMaxGemmK = 33025;      // gemm_s8.h: int32 exact up to this K
constexpr int64_t kFloatExact = 1 << 24;  // integers floats hold exactly

class DynamicConvStep : public Step {
 public:
  explicit DynamicConvStep(DynamicConvParams p) : p_(std::move(p)), fq_(&pick_float_quant(p_.isa)) {
    const int64_t m = p_.w_shape[0];
    const int64_t k = p_.w_shape[1] * p_.w_shape[2] * p_.w_shape[3];
    zp_.assign(static_cast<size_t>(m), 0);
    for (int64_t j = 0; j < m && !p_.w_zp.empty(); ++j)
      zp_[static_cast<size_t>(j)] = p_.w_zp[p_.w_zp.size() == 1 ? 0 : static_cast<size_t>(j)];
    auto w_at = [&](int64_t j, int64_t i) {
      return int32_t{p_.weight[static_cast<size_t>(j * k + i)]} - zp_[static_cast<size_t>(j)];
    };
    const bool depthwise = p_.facts.group == m && p_.w_shape[1] == 1;
    // A few input channels per group (an RGB stem): the NHWC rows are a few
    // bytes and the im2col copies them one run at a time; the FP32 im2col
    // over NCHW was measured faster (1x3x224x224, 3x3 stride 2 to 32
    // channels: 0.74 ms against 1.24 ms, FP32 0.58 ms).
    const bool narrow = !depthwise && p_.w_shape[1] <= 4;
    bool exact_in_float = depthwise || narrow;
    for (int64_t j = 0; j < m && exact_in_float; ++j) {
      int64_t sum = 0;
      for (int64_t i = 0; i < k; ++i) sum += std::abs(w_at(j, i));
      exact_in_float = 255 * sum <= kFloatExact;
    }
#if defined(__x86_64__)
    // dw16 where its plane fill is fast (stride 1 along W; a strided fill
    // gathers per element), else the float path when it is exact.
    if (depthwise && !p_.nhwc && p_.isa != Isa::kRef && (p_.facts.strides[1] == 1 || !exact_in_float)) {
      // Per channel the int16 tap pairs (lo = the first tap), zero past the last tap.
      path_ = Path::kDw16;
      npairs_ = static_cast<int>((k + 1) / 2);
      dw_pairs_.assign(static_cast<size_t>(m * npairs_), 0);
      for (int64_t j = 0; j < m; ++j) {
        for (int t = 0; t < npairs_; ++t) {
          const int32_t w0 = w_at(j, 2 * t), w1 = 2 * t + 1 < k ? w_at(j, 2 * t + 1) : 0;
          dw_pairs_[static_cast<size_t>(j * npairs_ + t)] =
              static_cast<int32_t>((static_cast<uint32_t>(w1) << 16) | (static_cast<uint32_t>(w0) & 0xFFFFu));
        }
      }
      p_.weight = {};
      return;
    }
#endif
    if (exact_in_float) {
      path_ = Path::kFloat;
      wf_.resize(p_.weight.size());
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t i = 0; i < k; ++i) wf_[static_cast<size_t>(j * k + i)] = static_cast<float>(w_at(j, i));
      }
      p_.weight = {};
    }
  }
  static bool fits(const DynamicConvParams& p) {
    return p.w_shape.size() == 4 && p.facts.group >= 1 && p.w_shape[0] % p.facts.group == 0 &&
           p.w_shape[1] * p.w_shape[2] * p.w_shape[3] <= kMaxGemmK;
  }
  std::string kernel() const override {
    switch (path_) {
      case Path::kFloat:
        if (p_.nhwc)
          return std::string("dynamic_nhwc_exact_f32/") + (sconv_nhwc_ ? sconv_nhwc_->kernel_name() : "sconv");
        return std::string("dynamic_exact_f32/") + (sconv_ ? sconv_->kernel_name() : "sconv");
      case Path::kDw16: return "dynamic_qconv_depthwise_avx2";
      case Path::kGemm: break;
    }
    return std::string(p_.nhwc ? "dynamic_nhwc_" : "dynamic_") + (gemm_ ? gemm_->name() : "qconv");
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32)
      throw Error(ErrorCode::kInvalidArgument, name + ": expected float32 input, got " + in[0]->describe());
    Shape x_shape = in[0]->shape();
    if (p_.nhwc && x_shape.size() == 4) x_shape = {x_shape[0], x_shape[3], x_shape[1], x_shape[2]};
    const ConvShape s = conv_shape(name, p_.facts, x_shape, p_.w_shape);
    if (!shape_ || !same(*shape_, s)) {
      shape_ = s;
      if (path_ == Path::kFloat && p_.nhwc) {
        sconv_nhwc_.emplace(s, wf_.data(), nullptr, SgemmActivation::none(), p_.isa);
      } else if (path_ == Path::kFloat) {
        sconv_.emplace(s, wf_.data(), nullptr, SgemmActivation::none(), p_.isa);
      } else if (path_ == Path::kDw16) {
        plan_depthwise(s);
      } else {
        QConvParams q;
        q.shape = s;
        q.max_threads = p_.threads;
        q.w_scale = {1.0f};
        q.nhwc = p_.nhwc;
        q.dequant = true;
        gemm_ = std::make_unique<QConvGemm>(q, p_.weight.data(), zp_, p_.isa);
      }
    }
    if (use_range_ && (in.size() < 2 || in[1] == nullptr || in[1]->dtype() != DType::kFloat32 || in[1]->numel() != 3))
      throw Error(ErrorCode::kInvalidArgument, name + ": expects the input's range as a second input");
    if (p_.nhwc) {
      out.assign(1, {DType::kFloat32, {s.batch, s.h_out, s.w_out, s.c_out}});
    } else {
      out.assign(1, {DType::kFloat32, {s.batch, s.c_out, s.h_out, s.w_out}});
    }
    if (emit_range_) out.push_back({DType::kFloat32, {3}});
  }
  // Scratch: the multipliers, the codes (uint8, or floats on the float
  // path), the output range per slot, the kernel's scratch.
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    const auto n = static_cast<size_t>(in[0]->numel());
    const size_t head = round64(zp_.size() * 4) + round64(n * (path_ == Path::kFloat ? 4 : 1)) + ranges_bytes();
    switch (path_) {
      case Path::kFloat:
        if (p_.nhwc) return head + (sconv_nhwc_ ? sconv_nhwc_->scratch_bytes(p_.threads) : 0);
        return head + (sconv_ ? sconv_->scratch_bytes(p_.threads) : 0);
      case Path::kDw16: return head + dw_slot_bytes_ * static_cast<size_t>(std::max(1, p_.threads));
      case Path::kGemm: break;
    }
    return head + (gemm_ ? gemm_->scratch_bytes(p_.threads) : 0);
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const int64_t total = in[0]->numel();
    const float* x = in[0]->data<float>();
    float lo = 0.0f, hi = 0.0f;
    if (use_range_) {  // computed by the step that wrote x
      const float* r = in[1]->data<float>();
      if (r[2] != 0.0f) throw Error(ErrorCode::kInvalidArgument, name + ": x contains NaN");
      lo = r[0];
      hi = r[1];
    } else if (!fq_->range(x, total, &lo, &hi)) {
      throw Error(ErrorCode::kInvalidArgument, name + ": x contains NaN");
    }
    const float scale = (hi - lo) / 255.0f;
    if (!std::isfinite(scale)) throw Error(ErrorCode::kInvalidArgument, name + ": x contains infinite values");
    int32_t zp = 0;
    if (scale > 0.0f) {
      zp = static_cast<int32_t>(std::clamp(std::nearbyint(static_cast<double>(0.0f - lo / scale)), 0.0, 255.0));
    }
    const size_t m = zp_.size();
    auto* mult = reinterpret_cast<float*>(scratch);
    const bool per_channel = p_.w_scale.size() != 1;
    for (size_t j = 0; j < m; ++j) mult[j] = scale * p_.w_scale[per_channel ? j : 0];
    const bool float_codes = path_ == Path::kFloat;
    std::byte* codes = scratch + round64(m * 4);
    auto* ranges = reinterpret_cast<float*>(codes + round64(static_cast<size_t>(total) * (float_codes ? 4 : 1)));
    std::byte* rest = reinterpret_cast<std::byte*>(ranges) + ranges_bytes();
    const int slots = std::max(1, std::min(p_.threads, pool != nullptr ? pool->size() : 1));
    for (int i = 0; emit_range_ && i < slots; ++i) std::fill(ranges + 4 * i, ranges + 4 * i + 4, 0.0f);
    auto* xq = reinterpret_cast<uint8_t*>(codes);
    auto* xf = reinterpret_cast<float*>(codes);
    // The codes, in chunks over the pool (all zero when x is: scale 0, zp 0).
    constexpr int64_t kChunk = 16384;
    parallel_for(pool, (total + kChunk - 1) / kChunk, [&](int64_t b, int64_t e) {
      const int64_t i0 = b * kChunk, i1 = std::min(total, e * kChunk);
      if (scale <= 0.0f) {
        if (float_codes) std::fill(xf + i0, xf + i1, 0.0f);
        if (!float_codes) std::fill(xq + i0, xq + i1, uint8_t{0});
      } else if (float_codes) {
        fq_->quantize_centered(x + i0, i1 - i0, scale, zp, xf + i0);
      } else {
        fq_->quantize(x + i0, i1 - i0, scale, zp, xq + i0);
      }
    });
    const float* bias = p_.bias.empty() ? nullptr : p_.bias.data();
    float* y = out[0]->data<float>();
    float* slot_ranges = emit_range_ ? ranges : nullptr;
    if (path_ == Path::kDw16) {
      run_depthwise(xq, zp, mult, bias, y, reinterpret_cast<uint8_t*>(rest), slots, pool, slot_ranges);
    } else if (path_ == Path::kGemm) {
      gemm_->run_dequant(xq, static_cast<uint8_t>(zp), y, reinterpret_cast<uint8_t*>(rest), slots, pool, *fq_, mult,
                         bias, p_.clamp.lo, p_.clamp.hi, slot_ranges);
    } else if (p_.nhwc) {
      sconv_nhwc_->run(xf, y, rest, pool);
      finish_nhwc(mult, bias, y, slots, pool, slot_ranges);
    } else {
      sconv_->run(xf, y, rest, pool);
      const ConvShape& s = *shape_;
      const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
      const int64_t planes = static_cast<int64_t>(s.batch) * s.c_out;
      const float clo = p_.clamp.lo, chi = p_.clamp.hi;
      parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
        for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
          int64_t begin = 0, end = 0;
          chunk_range(planes, slots, static_cast<int>(slot), begin, end);
          for (int64_t plane = begin; plane < end; ++plane) {
            const auto j = static_cast<size_t>(plane % s.c_out);
            const float mj = mult[j], bj = bias != nullptr ? bias[j] : 0.0f;
            float* yp = y + plane * hw;
            // The Cast -> Mul -> Add of the reference: two roundings (this
            // file is compiled without FMA contraction).
            if (bias != nullptr) {
              for (int64_t i = 0; i < hw; ++i) yp[i] = std::min(std::max(yp[i] * mj + bj, clo), chi);
            } else {
              for (int64_t i = 0; i < hw; ++i) yp[i] = std::min(std::max(yp[i] * mj, clo), chi);
            }
            if (slot_ranges != nullptr) widen(slot_ranges + 4 * slot, yp, hw);  // in cache
          }
        }
      });
    }
    if (emit_range_) {  // the slots' ranges into output 1: {lo, hi, nan}
      float* r = out[1]->data<float>();
      r[0] = r[1] = r[2] = 0.0f;
      for (int i = 0; i < slots; ++i) {
        r[0] = std::min(r[0], ranges[4 * i]);
        r[1] = std::max(r[1], ranges[4 * i + 1]);
        r[2] = std::max(r[2], ranges[4 * i + 2]);
      }
    }
  }

  // Fuses the range pass of a following dynamic step (compile.cc): this step
  // writes {min(0, min y), max(0, max y), any NaN} of its output as output 1,
  // measured per block while the values are in cache; a step that reads it
  // as input 1 skips its own pass over x.
  void set_emit_range() { emit_range_ = true; }
  void set_use_range() { use_range_ = true; }

 private:
  size_t ranges_bytes() const { return round64(16 * static_cast<size_t>(std::max(1, p_.threads))); }
  // The float path's epilogue on NHWC rows: y[p, j] = clamp(y[p, j] * mult[j]
  // [+ bias[j]]) (two roundings, as the reference's Mul then Add), pixels
  // split over the slots, each block's range widened while it is in cache.
  void finish_nhwc(const float* mult, const float* bias, float* y, int slots, ThreadPool* pool, float* ranges) const {
    const ConvShape& s = *shape_;
    const int64_t m = s.c_out;
    const int64_t pixels = static_cast<int64_t>(s.batch) * s.h_out * s.w_out;
    const float clo = p_.clamp.lo, chi = p_.clamp.hi;
    constexpr int64_t kBlock = 64;  // pixels per range pass
    parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
      for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
        int64_t begin = 0, end = 0;
        chunk_range(pixels, slots, static_cast<int>(slot), begin, end);
        for (int64_t p0 = begin; p0 < end; p0 += kBlock) {
          const int64_t p1 = std::min(end, p0 + kBlock);
          for (int64_t p = p0; p < p1; ++p) {
            float* row = y + p * m;
            if (bias != nullptr) {
              for (int64_t j = 0; j < m; ++j) row[j] = std::min(std::max(row[j] * mult[j] + bias[j], clo), chi);
            } else {
              for (int64_t j = 0; j < m; ++j) row[j] = std::min(std::max(row[j] * mult[j], clo), chi);
            }
          }
          if (ranges != nullptr) widen(ranges + 4 * slot, y + p0 * m, (p1 - p0) * m);
        }
      }
    });
  }
  // Widens a slot's {lo, hi, nan} by n values at v.
  void widen(float* r, const float* v, int64_t n) const {
    float l = 0.0f, h = 0.0f;
    if (!fq_->range(v, n, &l, &h)) {
      r[2] = 1.0f;
      return;
    }
    r[0] = std::min(r[0], l);
    r[1] = std::max(r[1], h);
  }
  static bool same(const ConvShape& a, const ConvShape& b) {
    return a.batch == b.batch && a.c_in == b.c_in && a.h_in == b.h_in && a.w_in == b.w_in && a.h_out == b.h_out &&
           a.w_out == b.w_out && a.pad_top == b.pad_top && a.pad_left == b.pad_left;
  }
  // The depthwise plane geometry for shape s (as the INT8 convolution's
  // depthwise path lays it out, qconv.cc): padded rows, stride_w phases of
  // `width` int16 each, and the plane offset of every tap.
  void plan_depthwise(const ConvShape& s) const {
    constexpr int kCols = 16;
    dw_rows_ = (s.h_out - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
    dw_width_ = (s.w_out + kCols - 1) / kCols * kCols + ((s.kw - 1) * s.dil_w) / s.stride_w;
    const int taps = s.kh * s.kw;
    dw_offsets_.assign(static_cast<size_t>(2 * npairs_), 0);
    for (int t = 0; t < 2 * npairs_; ++t) {
      const int tap = std::min(t, taps - 1);
      const int ky = tap / s.kw, kx = tap % s.kw;
      const int col = kx * s.dil_w;
      dw_offsets_[static_cast<size_t>(t)] =
          (ky * s.dil_h * s.stride_w + col % s.stride_w) * dw_width_ + col / s.stride_w;
    }
    // + 16 values of slack: the fill stores whole vectors.
    dw_slot_bytes_ = round64(sizeof(int16_t) * (static_cast<size_t>(dw_rows_) * s.stride_w * dw_width_ + 16));
  }
  void run_depthwise(const uint8_t* xq, int32_t zp, const float* mult, const float* bias, float* y, uint8_t* scratch,
                     int slots, ThreadPool* pool, float* ranges) const {
#if defined(__x86_64__)
    const ConvShape& s = *shape_;
    const int64_t hw_in = static_cast<int64_t>(s.h_in) * s.w_in;
    const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
    const int64_t items = static_cast<int64_t>(s.batch) * s.c_out;
    parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
      for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
        auto* plane = reinterpret_cast<int16_t*>(scratch + static_cast<size_t>(slot) * dw_slot_bytes_);
        int64_t begin = 0, end = 0;
        chunk_range(items, slots, static_cast<int>(slot), begin, end);
        for (int64_t item = begin; item < end; ++item) {
          const auto c = static_cast<size_t>(item % s.c_out);
          qconv_avx2::depthwise_fill(xq + item * hw_in, s, false, zp, dw_rows_, dw_width_, plane);
          qconv_avx2::depthwise_channel_f32(
              plane, static_cast<int64_t>(s.stride_w) * dw_width_, dw_pairs_.data() + c * static_cast<size_t>(npairs_),
              dw_offsets_.data(), npairs_, s, mult[c], bias != nullptr ? bias + c : nullptr, p_.clamp.lo, p_.clamp.hi,
              y + item * hw, ranges != nullptr ? ranges + 4 * slot : nullptr);
        }
      }
    });
#else
    (void)xq, (void)zp, (void)mult, (void)bias, (void)y, (void)scratch, (void)slots, (void)pool, (void)ranges;
    throw Error(ErrorCode::kUnsupported, name + ": no depthwise kernel in this build");
#endif
  }

  enum class Path { kGemm, kDw16, kFloat };
  DynamicConvParams p_;
  const FloatQuantKernel* fq_;
  std::vector<int32_t> zp_;  // M values
  Path path_ = Path::kGemm;
  std::vector<float> wf_;          // float path: w - w_zp
  int npairs_ = 0;                 // dw16: tap pairs
  std::vector<int32_t> dw_pairs_;  // dw16: [channel][pair] int16 weight pairs
  mutable std::vector<int32_t> dw_offsets_;
  mutable int dw_rows_ = 0, dw_width_ = 0;
  mutable size_t dw_slot_bytes_ = 0;
  bool emit_range_ = false, use_range_ = false;
  mutable std::optional<ConvShape> shape_;
  mutable std::unique_ptr<QConvGemm> gemm_;
  mutable std::optional<SConv> sconv_;
  mutable std::optional<SConvNhwc> sconv_nhwc_;
};

}  // namespace

bool link_dynamic_conv_range(Step& producer, Step& consumer) {
  auto* p = dynamic_cast<DynamicConvStep*>(&producer);
  auto* c = dynamic_cast<DynamicConvStep*>(&consumer);
  if (p == nullptr || c == nullptr) return false;
  p->set_emit_range();
  c->set_use_range();
  return true;
}

std::unique_ptr<Step> make_dynamic_conv_step(DynamicConvParams params) {
  if (!DynamicConvStep::fits(params)) return nullptr;
  return std::make_unique<DynamicConvStep>(std::move(params));
}

}  // namespace kvant
