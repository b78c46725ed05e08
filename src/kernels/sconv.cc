// FP32 conv: path choice, weight prepacking, the im2col tile packer, the
// depthwise driver and the thread split. The math and the layouts are in
// sconv.h and sgemm.h.
#include "kernels/sconv.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/x86_avx2/sconv_dw_avx2.h"
#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

constexpr int kTileFloats = 32768;  // packed B tile: kl x tile_n <= 128 KiB (L2)

int round_up(int v, int m) { return (v + m - 1) / m * m; }

[[noreturn]] void invalid(const std::string& what) {
  std::string msg = "SConv: ";
  msg += what;
  throw Error(ErrorCode::kInvalidArgument, msg);
}

void validate(const ConvShape& s) {
  if (s.batch < 1 || s.c_in < 1 || s.h_in < 1 || s.w_in < 1 || s.c_out < 1 || s.h_out < 1 || s.w_out < 1) {
    invalid("every size must be >= 1");
  }
  if (s.kh < 1 || s.kw < 1 || s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1) {
    invalid("kernel, stride and dilation must be >= 1");
  }
  if (s.pad_top < 0 || s.pad_left < 0) invalid("padding must be >= 0");
  if (s.group < 1 || s.c_in % s.group != 0 || s.c_out % s.group != 0) {
    invalid("group must divide c_in and c_out");
  }
}

float activate(float v, SgemmActivation act) {
  if (act.kind == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
  if (act.kind == SgemmActivation::Kind::kClip) v = std::min(std::max(v, act.lo), act.hi);
  return v;
}

// Portable depthwise plane kernel, same contract and tap order as
// sconv_dw_plane_avx2 (any stride).
void dw_plane_generic(const DwPlane& p) {
  const int taps = p.kh * p.kw;
  for (int oy = 0; oy < p.h_out; ++oy) {
    for (int ox = 0; ox < p.w_out; ++ox) {
      const float* b = p.plane + static_cast<size_t>(oy) * p.sh * p.wp + static_cast<size_t>(ox) * p.sw;
      float acc = 0.0f;
      for (int t = 0; t < taps; ++t) acc += p.w[t] * b[(t / p.kw) * p.dh * p.wp + (t % p.kw) * p.dw];
      p.out[static_cast<size_t>(oy) * p.w_out + ox] = activate(acc + p.bias, p.act);
    }
  }
}

void copy16(float* dst, const float* src) { std::memcpy(dst, src, kSgemmNr * sizeof(float)); }

void copy16_stride2(float* __restrict dst, const float* __restrict src) {
  for (int c = 0; c < kSgemmNr; ++c) dst[c] = src[2 * c];
}

}  // namespace

SConv::SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act)
    : SConv(shape, weights, bias, act, sgemm_default_path()) {}

SConv::SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, SgemmPath path)
    : shape_(shape), act_(act), path_(path == SgemmPath::kRef ? SgemmPath::kGeneric : path) {
  validate(shape_);
  if (!sgemm_path_supported(path_)) throw Error(ErrorCode::kUnsupported, "SConv: this CPU has no AVX2+FMA");
  const ConvShape& s = shape_;
  if (bias != nullptr) bias_.assign(bias, bias + s.c_out);
  const int taps = s.kh * s.kw;
  if (s.group == s.c_in && s.group == s.c_out && s.group > 1) {
    kind_ = Kind::kDepthwise;
    dw_weights_.assign(weights, weights + static_cast<size_t>(s.c_out) * taps);
    dw_hp_ = (s.h_out - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
    dw_wp_ = round_up(s.w_out, 8) * s.stride_w + (s.kw - 1) * s.dil_w + 1;
    slice_floats_ = static_cast<size_t>(round_up(dw_hp_ * dw_wp_, 16));
    return;
  }
  const bool pointwise = taps == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
                         s.h_out == s.h_in && s.w_out == s.w_in;
  kind_ = s.group > 1 ? Kind::kGroup : pointwise ? Kind::k1x1 : Kind::kIm2col;
  const int m = s.c_out / s.group;
  k_ = s.c_in / s.group * taps;
  for (int g = 0; g < s.group; ++g) {
    packed_.push_back(sgemm_pack_a(weights + static_cast<size_t>(g) * m * k_, m, k_, k_));
  }
  const int kl = std::min(k_, kSgemmKc);
  const int n = s.h_out * s.w_out;
  tile_n_ = std::clamp(kTileFloats / kl / kSgemmNr * kSgemmNr, kSgemmNr, 1024);
  tile_n_ = std::min(tile_n_, round_up(n, kSgemmNr));
  slice_floats_ = static_cast<size_t>(kl) * static_cast<size_t>(tile_n_);
}

size_t SConv::scratch_bytes(int threads) const {
  return static_cast<size_t>(std::clamp(threads, 1, kSConvMaxThreads)) * slice_floats_ * sizeof(float);
}

const char* SConv::kernel_name() const {
  const bool avx2 = path_ == SgemmPath::kAvx2;
  switch (kind_) {
    case Kind::k1x1: return avx2 ? "sconv_1x1_avx2" : "sconv_1x1_generic";
    case Kind::kIm2col: return avx2 ? "sconv_im2col_avx2" : "sconv_im2col_generic";
    case Kind::kGroup: return avx2 ? "sconv_group_im2col_avx2" : "sconv_group_im2col_generic";
    case Kind::kDepthwise: return avx2 ? "sconv_depthwise_avx2" : "sconv_depthwise_generic";
  }
  return "?";
}

void SConv::run(const float* x, float* y, void* scratch, ThreadPool* pool) const {
  const int threads = pool == nullptr ? 1 : std::min(pool->size(), kSConvMaxThreads);
  float* buf = static_cast<float*>(scratch);
  if (kind_ == Kind::kDepthwise) return run_depthwise(x, y, buf, threads, pool);
  run_gemm(x, y, buf, threads, pool);
}

// Rows [k0, k0 + kl) of the im2col matrix of one image's group (x points at
// its first channel) for output pixels [n0, n0 + nc), as 16-column panels
// (sgemm_packed_a_block's b_tile), zero past nc.
void SConv::pack_tile(const float* x, int n0, int nc, int k0, int kl, float* dst) const {
  const ConvShape& s = shape_;
  const ptrdiff_t w_in = s.w_in;
  const ptrdiff_t plane = static_cast<ptrdiff_t>(s.h_in) * w_in;
  if (kind_ == Kind::k1x1) {
    // Row by row: each row of X is read as one sequential stream.
    const int full = nc / kSgemmNr * kSgemmNr;
    const size_t panel_stride = static_cast<size_t>(kSgemmNr) * static_cast<size_t>(kl);
    for (int k = 0; k < kl; ++k) {
      const float* src = x + static_cast<ptrdiff_t>(k0 + k) * plane + n0;
      float* d = dst + static_cast<size_t>(k) * kSgemmNr;
      int j0 = 0;
      for (; j0 < full; j0 += kSgemmNr, d += panel_stride) copy16(d, src + j0);
      if (j0 < nc) {
        for (int c = 0; c < kSgemmNr; ++c) d[c] = j0 + c < nc ? src[j0 + c] : 0.0f;
      }
    }
    return;
  }
  // Per row k of the block: its input offset (channel, ky, kx) and tap shift.
  int dy[kSgemmKc], dx[kSgemmKc];
  ptrdiff_t off[kSgemmKc];
  {
    const int taps = s.kh * s.kw;
    int ch = k0 / taps, ky = (k0 % taps) / s.kw, kx = k0 % s.kw;
    for (int k = 0; k < kl; ++k) {
      dy[k] = ky * s.dil_h;
      dx[k] = kx * s.dil_w;
      off[k] = ch * plane + dy[k] * w_in + dx[k];
      if (++kx == s.kw) {
        kx = 0;
        if (++ky == s.kh) {
          ky = 0;
          ++ch;
        }
      }
    }
  }
  const int sw = s.stride_w;
  for (int j0 = 0; j0 < nc; j0 += kSgemmNr) {
    const int cols = std::min(kSgemmNr, nc - j0);
    float* d = dst + static_cast<size_t>(j0) * static_cast<size_t>(kl);
    // Runs of pixels in one output row: first column, length, first input
    // row/column of tap (0, 0).
    int run_col[kSgemmNr], run_len[kSgemmNr], run_iy[kSgemmNr], run_ix[kSgemmNr];
    int runs = 0;
    for (int c = 0; c < cols;) {
      const int n = n0 + j0 + c;
      const int oy = n / s.w_out, ox = n % s.w_out;
      const int len = std::min(cols - c, s.w_out - ox);
      run_col[runs] = c;
      run_len[runs] = len;
      run_iy[runs] = oy * s.stride_h - s.pad_top;
      run_ix[runs] = ox * sw - s.pad_left;
      ++runs;
      c += len;
    }
    const bool one_run = runs == 1 && cols == kSgemmNr;
    for (int k = 0; k < kl; ++k, d += kSgemmNr) {
      if (cols < kSgemmNr) std::memset(d + cols, 0, static_cast<size_t>(kSgemmNr - cols) * sizeof(float));
      for (int r = 0; r < runs; ++r) {
        float* out = d + run_col[r];
        const int len = run_len[r];
        const int iy = run_iy[r] + dy[k];
        if (iy < 0 || iy >= s.h_in) {
          std::memset(out, 0, static_cast<size_t>(len) * sizeof(float));
          continue;
        }
        const int ix = run_ix[r] + dx[k];
        const float* src = x + off[k] + static_cast<ptrdiff_t>(run_iy[r]) * w_in + run_ix[r];
        if (ix >= 0 && ix + (len - 1) * sw < s.w_in) {
          if (sw == 1 && one_run) {
            copy16(out, src);
          } else if (sw == 1) {
            for (int c = 0; c < len; ++c) out[c] = src[c];
          } else if (sw == 2 && one_run) {
            copy16_stride2(out, src);
          } else {
            for (int c = 0; c < len; ++c) out[c] = src[c * sw];
          }
        } else {
          for (int c = 0; c < len; ++c) {
            const int xi = ix + c * sw;
            out[c] = xi >= 0 && xi < s.w_in ? src[c * sw] : 0.0f;
          }
        }
      }
    }
  }
}

void SConv::run_gemm(const float* x, float* y, float* scratch, int threads, ThreadPool* pool) const {
  const ConvShape& s = shape_;
  const int m = s.c_out / s.group;
  const int n = s.h_out * s.w_out;
  const int cg = s.c_in / s.group;
  const size_t in_plane = static_cast<size_t>(s.h_in) * static_cast<size_t>(s.w_in);
  const int n_tiles = (n + tile_n_ - 1) / tile_n_;
  const int m_panels = (m + kSgemmMr - 1) / kSgemmMr;
  const int64_t units = static_cast<int64_t>(s.batch) * s.group * n_tiles;
  // Too few pixel tiles for the threads: also split the output rows.
  int m_split = 1;
  if (units < 2 * threads) {
    m_split = static_cast<int>(std::min<int64_t>(m_panels, (2 * threads + units - 1) / units));
  }
  const int64_t items = units * m_split;
  const float* bias = bias_.empty() ? nullptr : bias_.data();
  auto work = [&](int64_t slice_begin, int64_t slice_end) {
    for (int64_t slice = slice_begin; slice < slice_end; ++slice) {
      float* tile = scratch + static_cast<size_t>(slice) * slice_floats_;
      int64_t i0, i1;
      chunk_range(items, threads, static_cast<int>(slice), i0, i1);
      for (int64_t item = i0; item < i1; ++item) {
        const int ms = static_cast<int>(item % m_split);
        const int64_t unit = item / m_split;
        const int t = static_cast<int>(unit % n_tiles);
        const int g = static_cast<int>((unit / n_tiles) % s.group);
        const int b = static_cast<int>(unit / n_tiles / s.group);
        int64_t p0, p1;
        chunk_range(m_panels, m_split, ms, p0, p1);
        const int m0 = static_cast<int>(p0) * kSgemmMr;
        const int m1 = std::min(m, static_cast<int>(p1) * kSgemmMr);
        if (m0 >= m1) continue;
        const int n0 = t * tile_n_;
        const int nc = std::min(tile_n_, n - n0);
        const float* xg = x + (static_cast<size_t>(b) * s.c_in + static_cast<size_t>(g) * cg) * in_plane;
        float* yg = y + (static_cast<size_t>(b) * s.c_out + static_cast<size_t>(g) * m) * static_cast<size_t>(n) +
                    static_cast<size_t>(n0);
        for (int k0 = 0; k0 < k_; k0 += kSgemmKc) {
          const int kl = std::min(kSgemmKc, k_ - k0);
          pack_tile(xg, n0, nc, k0, kl, tile);
          sgemm_packed_a_block(path_, packed_[g], m0, m1, k0, tile, nc, yg, n, bias == nullptr ? nullptr : bias + g * m,
                               act_);
        }
      }
    }
  };
  parallel_for(threads > 1 ? pool : nullptr, threads, work);
}

void SConv::run_depthwise(const float* x, float* y, float* scratch, int threads, ThreadPool* pool) const {
  const ConvShape& s = shape_;
  const int64_t planes = static_cast<int64_t>(s.batch) * s.c_out;
  const size_t in_plane = static_cast<size_t>(s.h_in) * static_cast<size_t>(s.w_in);
  const size_t out_plane = static_cast<size_t>(s.h_out) * static_cast<size_t>(s.w_out);
  const int taps = s.kh * s.kw;
  const bool avx2 = path_ == SgemmPath::kAvx2 && s.stride_w <= 2;
  auto work = [&](int64_t slice_begin, int64_t slice_end) {
    for (int64_t slice = slice_begin; slice < slice_end; ++slice) {
      float* pad = scratch + static_cast<size_t>(slice) * slice_floats_;
      int64_t i0, i1;
      chunk_range(planes, threads, static_cast<int>(slice), i0, i1);
      for (int64_t i = i0; i < i1; ++i) {
        const int c = static_cast<int>(i % s.c_out);
        const float* src = x + static_cast<size_t>(i) * in_plane;
        // Zero-padded copy: padded (py, px) holds x[py - pad_top, px - pad_left].
        const int x_begin = std::min(s.pad_left, dw_wp_);
        const int x_end = std::min(s.pad_left + s.w_in, dw_wp_);
        for (int py = 0; py < dw_hp_; ++py) {
          float* row = pad + static_cast<size_t>(py) * dw_wp_;
          const int iy = py - s.pad_top;
          if (iy < 0 || iy >= s.h_in) {
            std::memset(row, 0, static_cast<size_t>(dw_wp_) * sizeof(float));
            continue;
          }
          std::memset(row, 0, static_cast<size_t>(x_begin) * sizeof(float));
          if (x_end > x_begin) {
            std::memcpy(row + x_begin, src + static_cast<size_t>(iy) * s.w_in,
                        static_cast<size_t>(x_end - x_begin) * sizeof(float));
          }
          const int tail = std::max(x_end, x_begin);
          std::memset(row + tail, 0, static_cast<size_t>(dw_wp_ - tail) * sizeof(float));
        }
        DwPlane p;
        p.plane = pad;
        p.wp = dw_wp_;
        p.h_out = s.h_out;
        p.w_out = s.w_out;
        p.kh = s.kh;
        p.kw = s.kw;
        p.sh = s.stride_h;
        p.sw = s.stride_w;
        p.dh = s.dil_h;
        p.dw = s.dil_w;
        p.w = dw_weights_.data() + static_cast<size_t>(c) * taps;
        p.bias = bias_.empty() ? 0.0f : bias_[c];
        p.act = act_;
        p.out = y + static_cast<size_t>(i) * out_plane;
        if (avx2) {
          sconv_dw_plane_avx2(p);
        } else {
          dw_plane_generic(p);
        }
      }
    }
  };
  parallel_for(threads > 1 ? pool : nullptr, threads, work);
}

}  // namespace kvant
