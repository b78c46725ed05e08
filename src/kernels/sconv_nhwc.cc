// FP32 channels-last conv: path choice, weight packing, the im2col row
// copies, the portable depthwise entry and the thread split. The math is in
// sconv_nhwc.h, the depthwise entries' contract in sconv_nhwc_kernels.h.
#include "kernels/sconv_nhwc.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/kernel_table.h"
#include "kernels/sconv_nhwc_kernels.h"
#include "kernels/sgemm_kernels.h"
#include "kernels/vmath.h"
#include "kernels/vmath_kernels.h"
#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

constexpr int kTileFloats = 32768;  // im2col tile: rows x K floats (128 KiB) when K allows
constexpr int kMinTileRows = 72;    // ... but at least this many rows (the packed B streams once per tile)
constexpr int kMaxTileRows = 288;

int round_up(int v, int m) { return (v + m - 1) / m * m; }

[[noreturn]] void invalid(const std::string& what) { throw Error(ErrorCode::kInvalidArgument, "SConvNhwc: " + what); }

// Best first (kernel_table.h).
constexpr DwNhwcKernel kDwNhwcKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx2, "dwconv_nhwc_f32_avx2", dwconv_nhwc_rows_avx2},
#endif
    {Isa::kRef, "dwconv_nhwc_f32_generic", dwconv_nhwc_rows_generic},
};

// Short runs (a stem conv's 3 channels) as plain loops: a library call per
// 12-36 bytes costs more than the copy.
inline void copy_floats(float* dst, const float* src, int n) {
  if (n >= 64) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  for (int i = 0; i < n; ++i) dst[i] = src[i];
}
inline void zero_floats(float* dst, int n) {
  if (n >= 64) {
    std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  for (int i = 0; i < n; ++i) dst[i] = 0.0f;
}

Isa default_allowed_isa() {
  static const Isa isa = selected_isa();
  return isa;
}

}  // namespace

std::span<const DwNhwcKernel> dwconv_nhwc_kernels() { return kDwNhwcKernels; }

void dwconv_nhwc_rows_generic(const DwNhwcRows& r) {
  const ptrdiff_t c = r.c;
  for (int oy = r.oy0; oy < r.oy1; ++oy) {
    for (int ox = 0; ox < r.w_out; ++ox) {
      float* out = r.out + (static_cast<ptrdiff_t>(oy) * r.w_out + ox) * c;
      for (ptrdiff_t ch = 0; ch < c; ++ch) {
        float acc = 0.0f;
        for (int ky = 0; ky < r.kh; ++ky) {
          const int iy = oy * r.sh - r.pad_top + ky * r.dh;
          if (iy < 0 || iy >= r.h_in) continue;
          for (int kx = 0; kx < r.kw; ++kx) {
            const int ix = ox * r.sw - r.pad_left + kx * r.dw;
            if (ix < 0 || ix >= r.w_in) continue;
            acc += r.w[static_cast<ptrdiff_t>(ky * r.kw + kx) * c + ch] *
                   r.x[(static_cast<ptrdiff_t>(iy) * r.w_in + ix) * c + ch];
          }
        }
        float v = acc + r.bias[ch];
        if (r.act.kind == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
        if (r.act.kind == SgemmActivation::Kind::kClip) v = std::min(std::max(v, r.act.lo), r.act.hi);
        out[ch] = v;
      }
    }
  }
}

SConvNhwc::SConvNhwc(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act,
                     SConvEpilogue epilogue)
    : SConvNhwc(shape, weights, bias, act, default_allowed_isa(), epilogue) {}

SConvNhwc::SConvNhwc(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, Isa allowed,
                     SConvEpilogue epilogue, HardSwishParams hard_swish)
    : given_(shape), shape_(shape), act_(act), hard_swish_(epilogue == SConvEpilogue::kHardSwish), hs_(hard_swish) {
  validate_conv_shape(shape_, "SConvNhwc");
  if (epilogue == SConvEpilogue::kSilu) silu_ = &vmath_pick(allowed);
  std::vector<float> live_weights;
  const bool live = SConv::live_taps(given_, weights, shape_, live_weights);
  setup(live ? live_weights.data() : weights, bias, allowed);
  if (live) name_ += "+live-taps";
}

void SConvNhwc::setup(const float* weights, const float* bias, Isa allowed) {
  const ConvShape& s = shape_;
  const int taps = s.kh * s.kw;
  if (s.group == s.c_in && s.group == s.c_out && s.group > 1) {
    kind_ = Kind::kDepthwise;
    dw_ = pick_kernel(dwconv_nhwc_kernels(), allowed, [](const DwNhwcKernel&) { return true; });
    name_ = std::string("sconv_nhwc_depthwise/") + dw_->name;
    const size_t c = static_cast<size_t>(s.c_out);
    dw_weights_.resize(c * static_cast<size_t>(taps));
    for (size_t ch = 0; ch < c; ++ch) {
      for (int t = 0; t < taps; ++t) dw_weights_[static_cast<size_t>(t) * c + ch] = weights[ch * taps + t];
    }
    if (bias != nullptr) {
      bias_.assign(bias, bias + s.c_out);
    } else {
      bias_.assign(c, 0.0f);
    }
    return;
  }
  if (bias != nullptr) bias_.assign(bias, bias + s.c_out);
  const bool pointwise = taps == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
                         s.h_out == s.h_in && s.w_out == s.w_in && s.group == 1;
  kind_ = pointwise ? Kind::k1x1 : Kind::kIm2col;
  const SgemmKernel& gemm = sgemm_pick(allowed);
  const int cg = s.c_in / s.group, mg = s.c_out / s.group;
  k_ = cg * taps;
  // B of group g: [k = (ky, kx, c)][o] = W[g mg + o, c, ky, kx].
  std::vector<float> b(static_cast<size_t>(k_) * static_cast<size_t>(mg));
  for (int g = 0; g < s.group; ++g) {
    for (int o = 0; o < mg; ++o) {
      const float* wo = weights + static_cast<size_t>(g * mg + o) * static_cast<size_t>(k_);
      for (int c = 0; c < cg; ++c) {
        for (int t = 0; t < taps; ++t) {
          b[(static_cast<size_t>(t) * cg + c) * mg + o] = wo[static_cast<size_t>(c) * taps + t];
        }
      }
    }
    packed_.push_back(sgemm_pack_b(gemm, b.data(), k_, mg, false));
  }
  name_ = std::string(pointwise ? "sconv_nhwc_1x1/" : "sconv_nhwc_im2col/") + gemm.name;
  if (!pointwise) {
    const int n = s.h_out * s.w_out;
    tile_rows_ = std::clamp(kTileFloats / k_ / kSgemmMr * kSgemmMr, kMinTileRows, kMaxTileRows);
    tile_rows_ = std::min(tile_rows_, round_up(n, kSgemmMr));
  }
}

size_t SConvNhwc::scratch_bytes(int threads) const {
  if (kind_ != Kind::kIm2col) return 0;
  return static_cast<size_t>(std::clamp(threads, 1, kSConvMaxThreads)) * static_cast<size_t>(tile_rows_) *
         static_cast<size_t>(k_) * sizeof(float);
}

void SConvNhwc::run(const float* x, float* y, void* scratch, ThreadPool* pool, const float* residual) const {
  const int threads = pool == nullptr ? 1 : std::min(pool->size(), kSConvMaxThreads);
  if (kind_ == Kind::kDepthwise) {
    if (residual != nullptr) invalid("the depthwise path has no fused residual Add");
    return run_depthwise(x, y, threads, pool);
  }
  if (kind_ == Kind::k1x1) return run_1x1(x, y, threads, pool, residual);
  run_im2col(x, y, static_cast<float*>(scratch), threads, pool, residual);
}

void SConvNhwc::finish(float* y, int64_t n) const {
  if (silu_ != nullptr) silu_->silu(y, y, n);
  if (hard_swish_) hard_swish_f32(y, y, n, hs_);
}

void SConvNhwc::run_1x1(const float* x, float* y, int threads, ThreadPool* pool, const float* residual) const {
  const ConvShape& s = shape_;
  const int m = s.batch * s.h_out * s.w_out;
  const int n = s.c_out;
  const float* bias = bias_.empty() ? nullptr : bias_.data();
  // Row chunks of at most 144 pixels (the GEMM's M block), each the GEMM and
  // its epilogue while the chunk is in cache; fewer chunks than threads and
  // the threaded GEMM splits the columns too.
  constexpr int kChunk = 144;
  const int chunks = (m + kChunk - 1) / kChunk;
  if (threads > 1 && chunks < 2 * threads) {
    sgemm_packed(m, n, k_, x, s.c_in, packed_[0], y, n, bias, act_, pool, residual);
    if (has_epilogue()) {
      pool->parallel_for(
          m, [&](int64_t begin, int64_t end) { finish(y + static_cast<size_t>(begin) * n, (end - begin) * n); });
    }
    return;
  }
  parallel_for(threads > 1 ? pool : nullptr, chunks, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int m0 = static_cast<int>(i) * kChunk;
      const int rows = std::min(kChunk, m - m0);
      const size_t off = static_cast<size_t>(m0) * static_cast<size_t>(n);
      sgemm_packed(rows, n, k_, x + static_cast<size_t>(m0) * s.c_in, s.c_in, packed_[0], y + off, n, bias, act_,
                   nullptr, residual == nullptr ? nullptr : residual + off);
      finish(y + off, static_cast<int64_t>(rows) * n);
    }
  });
}

// Rows [p0, p0 + np) of group g's im2col matrix of one image (xb), K = (ky,
// kx, c) wide, zero for taps outside the input.
void SConvNhwc::im2col_tile(const float* xb, int g, int p0, int np, float* dst) const {
  const ConvShape& s = shape_;
  const int cg = s.c_in / s.group;
  const bool whole_rows = s.dil_w == 1 && s.group == 1;  // a kernel row's taps are one contiguous run
  for (int i = 0; i < np; ++i) {
    const int p = p0 + i;
    const int oy = p / s.w_out, ox = p % s.w_out;
    float* d = dst + static_cast<size_t>(i) * static_cast<size_t>(k_);
    const int ix0 = ox * s.stride_w - s.pad_left;
    for (int ky = 0; ky < s.kh; ++ky) {
      float* dk = d + static_cast<size_t>(ky) * s.kw * cg;
      const int iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
      if (iy < 0 || iy >= s.h_in) {
        zero_floats(dk, s.kw * cg);
        continue;
      }
      const float* row = xb + static_cast<size_t>(iy) * s.w_in * s.c_in + static_cast<size_t>(g) * cg;
      if (whole_rows && ix0 >= 0 && ix0 + s.kw <= s.w_in) {
        copy_floats(dk, row + static_cast<size_t>(ix0) * s.c_in, s.kw * cg);
        continue;
      }
      for (int kx = 0; kx < s.kw; ++kx) {
        const int ix = ix0 + kx * s.dil_w;
        if (ix < 0 || ix >= s.w_in) {
          zero_floats(dk + static_cast<size_t>(kx) * cg, cg);
        } else {
          copy_floats(dk + static_cast<size_t>(kx) * cg, row + static_cast<size_t>(ix) * s.c_in, cg);
        }
      }
    }
  }
}

void SConvNhwc::run_im2col(const float* x, float* y, float* scratch, int threads, ThreadPool* pool,
                           const float* residual) const {
  const ConvShape& s = shape_;
  const int n = s.h_out * s.w_out;
  const int mg = s.c_out / s.group;
  const int64_t gemms = static_cast<int64_t>(s.batch) * s.group;
  // With threads, tiles narrow until every thread has one (a tile's size
  // does not change how any output is computed).
  int rows = tile_rows_;
  if (threads > 1) {
    const int64_t want = (threads + gemms - 1) / gemms;
    rows = std::min(rows, std::max(kSgemmMr, round_up(static_cast<int>((n + want - 1) / want), kSgemmMr)));
  }
  const int tiles = (n + rows - 1) / rows;
  const int64_t items = gemms * tiles;
  const size_t slice = static_cast<size_t>(tile_rows_) * static_cast<size_t>(k_);
  const size_t in_image = static_cast<size_t>(s.h_in) * s.w_in * s.c_in;
  const size_t out_image = static_cast<size_t>(n) * s.c_out;
  parallel_for(threads > 1 ? pool : nullptr, threads, [&](int64_t slice_begin, int64_t slice_end) {
    for (int64_t sl = slice_begin; sl < slice_end; ++sl) {
      float* tile = scratch + static_cast<size_t>(sl) * slice;
      int64_t i0, i1;
      chunk_range(items, threads, static_cast<int>(sl), i0, i1);
      for (int64_t item = i0; item < i1; ++item) {
        const int t = static_cast<int>(item % tiles);
        const int g = static_cast<int>((item / tiles) % s.group);
        const int b = static_cast<int>(item / tiles / s.group);
        const int p0 = t * rows;
        const int np = std::min(rows, n - p0);
        im2col_tile(x + static_cast<size_t>(b) * in_image, g, p0, np, tile);
        const size_t off =
            static_cast<size_t>(b) * out_image + static_cast<size_t>(p0) * s.c_out + static_cast<size_t>(g) * mg;
        sgemm_packed(np, mg, k_, tile, k_, packed_[static_cast<size_t>(g)], y + off, s.c_out,
                     bias_.empty() ? nullptr : bias_.data() + static_cast<size_t>(g) * mg, act_, nullptr,
                     residual == nullptr ? nullptr : residual + off);
        if (has_epilogue()) {
          for (int i = 0; i < np; ++i) finish(y + off + static_cast<size_t>(i) * s.c_out, mg);
        }
      }
    }
  });
}

void SConvNhwc::run_depthwise(const float* x, float* y, int threads, ThreadPool* pool) const {
  const ConvShape& s = shape_;
  const int64_t rows = static_cast<int64_t>(s.batch) * s.h_out;
  const size_t in_image = static_cast<size_t>(s.h_in) * s.w_in * s.c_in;
  const size_t out_row = static_cast<size_t>(s.w_out) * s.c_out;
  parallel_for(threads > 1 ? pool : nullptr, threads, [&](int64_t slice_begin, int64_t slice_end) {
    for (int64_t sl = slice_begin; sl < slice_end; ++sl) {
      int64_t i0, i1;
      chunk_range(rows, threads, static_cast<int>(sl), i0, i1);
      // Runs of rows within one image.
      for (int64_t i = i0; i < i1;) {
        const int b = static_cast<int>(i / s.h_out);
        const int oy0 = static_cast<int>(i % s.h_out);
        const int oy1 = static_cast<int>(std::min<int64_t>(s.h_out, oy0 + (i1 - i)));
        DwNhwcRows r;
        r.x = x + static_cast<size_t>(b) * in_image;
        r.out = y + static_cast<size_t>(b) * s.h_out * out_row;
        r.c = s.c_out;
        r.h_in = s.h_in;
        r.w_in = s.w_in;
        r.h_out = s.h_out;
        r.w_out = s.w_out;
        r.kh = s.kh;
        r.kw = s.kw;
        r.sh = s.stride_h;
        r.sw = s.stride_w;
        r.dh = s.dil_h;
        r.dw = s.dil_w;
        r.pad_top = s.pad_top;
        r.pad_left = s.pad_left;
        r.w = dw_weights_.data();
        r.bias = bias_.data();
        r.act = act_;
        r.oy0 = oy0;
        r.oy1 = oy1;
        dw_->rows(r);
        finish(r.out + static_cast<size_t>(oy0) * out_row, static_cast<int64_t>(oy1 - oy0) * out_row);
        i += oy1 - oy0;
      }
    }
  });
}

}  // namespace kvant
