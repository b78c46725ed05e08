// FP32 conv: path choice, weight prepacking, the im2col tile packer, the
// depthwise driver and the thread split. The math and the layouts are in
// sconv.h and sgemm.h.
#include "kernels/sconv.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernels/kernel_table.h"
#include "kernels/sgemm_kernels.h"
#include "kernels/vmath.h"
#include "kernels/vmath_kernels.h"
#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

constexpr int kTileFloats = 32768;  // packed B tile: kl x tile_n <= 128 KiB (L2)
constexpr int kMaxSegments = 64;    // output-row pieces in one im2col tile

int round_up(int v, int m) { return (v + m - 1) / m * m; }

// How the GEMM-shaped convolutions share out their work: `n` output pixels
// in tiles of `tile_n` for each of `outer` (images x groups) GEMMs of `m`
// rows. With threads, the tiles narrow so that their count over all GEMMs
// divides evenly among them (a tile's width does not change how any output
// is computed); too few tiles for the threads and the output rows are split
// too. Work items: (GEMM, tile, row split).
struct WorkSplit {
  int tile_w = 0, n_tiles = 0, m_panels = 0, m_split = 1;
  int64_t items = 0;
};

WorkSplit split_work(int n, int64_t outer, int m, int tile_n, int threads) {
  WorkSplit w;
  w.tile_w = tile_n;
  w.n_tiles = (n + w.tile_w - 1) / w.tile_w;
  if (threads > 1) {
    int want = w.n_tiles;
    while ((outer * want) % threads != 0) ++want;
    w.tile_w = std::max(kSgemmNr, round_up((n + want - 1) / want, kSgemmNr));
    w.n_tiles = (n + w.tile_w - 1) / w.tile_w;
  }
  w.m_panels = (m + kSgemmMr - 1) / kSgemmMr;
  const int64_t units = outer * w.n_tiles;
  if (units < 2 * threads) {
    w.m_split = static_cast<int>(std::min<int64_t>(w.m_panels, (2 * threads + units - 1) / units));
  }
  w.items = units * w.m_split;
  return w;
}

[[noreturn]] void invalid(const std::string& what) {
  std::string msg = "SConv: ";
  msg += what;
  throw Error(ErrorCode::kInvalidArgument, msg);
}

float activate(float v, SgemmActivation act) {
  if (act.kind == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
  if (act.kind == SgemmActivation::Kind::kClip) v = std::min(std::max(v, act.lo), act.hi);
  return v;
}

// act as the micro-kernels' epilogue applies it (vmaxps / vminps: the bound
// when v is NaN), so a residual added outside the kernel ends the same way.
float epilogue_act(float v, SgemmActivation act) {
  if (act.kind == SgemmActivation::Kind::kNone) return v;
  const float lo = act.kind == SgemmActivation::Kind::kRelu ? 0.0f : act.lo;
  v = v > lo ? v : lo;
  if (act.kind == SgemmActivation::Kind::kClip) v = v < act.hi ? v : act.hi;
  return v;
}

}  // namespace

// The portable depthwise entry (sconv_kernels.h), any stride.
void dwconv_plane_generic(const DwPlane& p) {
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

int dw_zero_margin(int w_in, int w_out, int pad_left, int kw, int dil_w, int stride_w, int pixels) {
  const int vectors = (w_out + pixels - 1) / pixels;
  const int right = vectors * pixels * stride_w - pad_left + (kw - 1) * dil_w - w_in;
  return round_up(std::max({pad_left, right, 0}), 16);
}

namespace {

// The SIMD entries load stride 1 or 2. With stride 2 a row of at most 8
// outputs fills half a zmm and pays a vpermt2ps per tap (on the FMA port):
// the AVX2 entry is faster there (kvant_bench_sconv effb0_dw5x5s2_672_14:
// 11.0 vs 9.6 GFLOPS on the Xeon of docs/kernels.md).
#if defined(__x86_64__)
bool dw_avx512_accepts(int stride_w, int w_out) { return stride_w == 1 || (stride_w == 2 && w_out > 8); }
bool dw_avx2_accepts(int stride_w, int) { return stride_w <= 2; }
// In place pays on rows of at least 6 vectors: its border vectors mask their
// loads, the padded copy costs a pass over the plane. Interleaved
// kvant_bench_sconv on the AVX2 EPYC (docs/kernels.md): 112- and 56-wide
// rows 1.08-1.28x faster in place, 28-wide even to 1.07x slower, 14- and
// 7-wide 1.17-1.4x slower (all border vectors).
bool dw_avx2_inplace_accepts(int stride_w, int w_out) { return stride_w <= 2 && w_out >= 48; }
#endif
bool dw_any(int, int) { return true; }

// Best first (kernel_table.h).
constexpr DwConvKernel kDwConvKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "dwconv_f32_avx512", dw_avx512_accepts, 16, dwconv_plane_avx512},
    {Isa::kAvx2, "dwconv_f32_avx2_inplace", dw_avx2_inplace_accepts, 8, dwconv_plane_inplace_avx2, true},
    {Isa::kAvx2, "dwconv_f32_avx2", dw_avx2_accepts, 8, dwconv_plane_avx2},
#endif
    {Isa::kRef, "dwconv_f32_generic", dw_any, 1, dwconv_plane_generic},
};

#include "kernels/im2col_copy.inc"

}  // namespace

// The portable im2col entry (sconv_kernels.h), any stride.
void im2col_pack_generic(const Im2colTile& t) { im2col_pack_copies(t); }

namespace {

// Best first (kernel_table.h).
constexpr Im2colKernel kIm2colKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "im2col_f32_avx512", 2, im2col_pack_avx512},
    {Isa::kAvx2, "im2col_f32_avx2", 0, im2col_pack_avx2},
#endif
    {Isa::kRef, "im2col_f32_generic", 0, im2col_pack_generic},
};

// Rows [k0, k0 + kl) of the im2col matrix of one image's group (x points at
// its first channel) for output pixels [n0, n0 + nc), as 16-column panels
// (sgemm_packed_a_block's b_tile), zero past nc.
void pack_tile_body(const ConvShape& s, bool pointwise, const Im2colKernel& im2col, const float* x, int n0, int nc,
                    int k0, int kl, float* dst) {
  const ptrdiff_t w_in = s.w_in;
  const ptrdiff_t plane = static_cast<ptrdiff_t>(s.h_in) * w_in;
  if (pointwise) {
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
  int64_t off[kSgemmKc];
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
  // Output-row segments of the tile: columns [c0, c1) of output row oy from
  // column ox0; at most kMaxSegments (tile_n_ <= 1024 and w_out >= 1 would
  // allow more, so tiles are cut to fit: see the constructor).
  int seg_c0[kMaxSegments + 1], seg_iy[kMaxSegments], seg_ix[kMaxSegments];
  int segs = 0;
  for (int c = 0; c < nc; ++segs) {
    const int n = n0 + c;
    const int oy = n / s.w_out, ox = n % s.w_out;
    seg_c0[segs] = c;
    seg_iy[segs] = oy * s.stride_h - s.pad_top;
    seg_ix[segs] = ox * s.stride_w - s.pad_left;
    c += std::min(nc - c, s.w_out - ox);
  }
  seg_c0[segs] = nc;
  Im2colTile t;
  t.x = x;
  t.h_in = s.h_in;
  t.w_in = s.w_in;
  t.stride_w = s.stride_w;
  t.kl = kl;
  t.row_dy = dy;
  t.row_dx = dx;
  t.row_off = off;
  t.segs = segs;
  t.seg_c0 = seg_c0;
  t.seg_iy = seg_iy;
  t.seg_ix = seg_ix;
  t.nc = nc;
  t.dst = dst;
  im2col.pack(t);
}

// The kernel taps t in [lo, hi) of one axis (input size `in`, `out`
// outputs) that read inside the input for some output; lo is capped so that
// the padding pad - lo * dil stays >= 0. Dead taps between live ones (stride
// > 1) stay in the range.
void live_range(int in, int out, int k, int stride, int dil, int pad, int& lo, int& hi) {
  lo = k;
  hi = 0;
  for (int t = 0; t < k; ++t) {
    for (int o = 0; o < out; ++o) {
      const int64_t i = static_cast<int64_t>(o) * stride - pad + static_cast<int64_t>(t) * dil;
      if (i >= 0 && i < in) {
        lo = std::min(lo, t);
        hi = t + 1;
        break;
      }
    }
  }
  if (hi == 0) lo = 0;  // no tap reads the input: keep one, it reads zeros
  if (hi == 0) hi = 1;
  lo = std::min(lo, pad / dil);
}

}  // namespace

bool SConv::live_taps(const ConvShape& s, const float* weights, ConvShape& reduced, std::vector<float>& live_weights) {
  int y0, y1, x0, x1;
  live_range(s.h_in, s.h_out, s.kh, s.stride_h, s.dil_h, s.pad_top, y0, y1);
  live_range(s.w_in, s.w_out, s.kw, s.stride_w, s.dil_w, s.pad_left, x0, x1);
  if (y0 == 0 && y1 == s.kh && x0 == 0 && x1 == s.kw) return false;
  const size_t filters = static_cast<size_t>(s.c_out) * static_cast<size_t>(s.c_in / s.group);
  const int kh = y1 - y0, kw = x1 - x0;
  live_weights.resize(filters * static_cast<size_t>(kh) * static_cast<size_t>(kw));
  float* dst = live_weights.data();
  for (size_t f = 0; f < filters; ++f) {
    const float* w = weights + f * static_cast<size_t>(s.kh) * static_cast<size_t>(s.kw);
    for (int ky = 0; ky < s.kh; ++ky) {
      for (int kx = 0; kx < s.kw; ++kx) {
        const float v = w[ky * s.kw + kx];
        if (ky >= y0 && ky < y1 && kx >= x0 && kx < x1) {
          *dst++ = v;
        } else if (!std::isfinite(v)) {
          live_weights.clear();  // 0 * inf is NaN: the full conv must run
          return false;
        }
      }
    }
  }
  reduced = s;
  reduced.kh = kh;
  reduced.kw = kw;
  reduced.pad_top = s.pad_top - y0 * s.dil_h;
  reduced.pad_left = s.pad_left - x0 * s.dil_w;
  return true;
}

std::span<const DwConvKernel> dwconv_kernels() { return kDwConvKernels; }
std::span<const Im2colKernel> im2col_kernels() { return kIm2colKernels; }

namespace {
// KVANT_ISA (or the CPU's best), read once.
Isa default_allowed_isa() {
  static const Isa isa = selected_isa();
  return isa;
}
}  // namespace

SConv::SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act)
    : SConv(shape, weights, bias, act, default_allowed_isa()) {}

SConv::SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, Isa allowed)
    : SConv(shape, weights, bias, act, allowed, SConvEpilogue::kNone) {}

SConv::SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act,
             SConvEpilogue epilogue)
    : SConv(shape, weights, bias, act, default_allowed_isa(), epilogue) {}

SConv::SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, Isa allowed,
             SConvEpilogue epilogue, HardSwishParams hard_swish)
    : given_(shape), shape_(shape), act_(act), hard_swish_(epilogue == SConvEpilogue::kHardSwish), hs_(hard_swish) {
  validate_conv_shape(shape_, "SConv");
  if (epilogue == SConvEpilogue::kSilu) silu_ = &vmath_pick(allowed);
  if (bias != nullptr) bias_.assign(bias, bias + shape_.c_out);
  std::vector<float> live_weights;
  const bool live = live_taps(given_, weights, shape_, live_weights);
  setup(live ? live_weights.data() : weights, allowed);
  if (live) name_ += "+live-taps";
}

void SConv::setup(const float* weights, Isa allowed) {
  const ConvShape& s = shape_;
  const int taps = s.kh * s.kw;
  if (s.group == s.c_in && s.group == s.c_out && s.group > 1) {
    kind_ = Kind::kDepthwise;
    dw_ = pick_kernel(dwconv_kernels(), allowed, [&](const DwConvKernel& e) { return e.accepts(s.stride_w, s.w_out); });
    name_ = std::string("sconv_depthwise/") + dw_->name;
    dw_weights_.assign(weights, weights + static_cast<size_t>(s.c_out) * taps);
    if (dw_->in_place) {  // a zero row per thread, with margins
      dw_margin_ = dw_zero_margin(s.w_in, s.w_out, s.pad_left, s.kw, s.dil_w, s.stride_w, dw_->pixels);
      slice_floats_ = static_cast<size_t>(round_up(s.w_in, 16) + 2 * dw_margin_);
      return;
    }
    dw_hp_ = (s.h_out - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
    dw_wp_ = round_up(s.w_out, dw_->pixels) * s.stride_w + (s.kw - 1) * s.dil_w + 1;
    slice_floats_ = (static_cast<size_t>(dw_hp_) * static_cast<size_t>(dw_wp_) + 15) / 16 * 16;
    return;
  }
  const bool pointwise = taps == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
                         s.h_out == s.h_in && s.w_out == s.w_in;
  const SgemmKernel& gemm = sgemm_pick(allowed);
  // The implicit GEMM (sconv.h) computes max_qc = (kw - 1) dil_w / stride_w
  // extra columns per output row: taken where that is at most a quarter of
  // the row (3x3: w_out >= 3 (stride 2) or 6 (stride 1); it beat im2col on
  // ResNet-50's 3x3 layers down to 7x7, docs/kernels.md), for strides up
  // to 4 (stride_h stride_w phase planes per channel). Not for 1x1 convs: read
  // in place, their B rows are whole channel planes apart, slower than the
  // packed tile (ResNet-50's 1x1/2 downsample: 10% slower).
  const int max_qa = (s.kh - 1) * s.dil_h / s.stride_h;
  const int max_qc = (s.kw - 1) * s.dil_w / s.stride_w;
  const bool implicit = gemm.b_row_table && s.group == 1 && taps > 1 && s.stride_h <= 4 && s.stride_w <= 4 &&
                        static_cast<int64_t>(max_qc) * 3 <= s.w_out;
  kind_ = s.group > 1 ? Kind::kGroup : pointwise ? Kind::k1x1 : implicit ? Kind::kImplicit : Kind::kIm2col;
  const int m = s.c_out / s.group;
  k_ = s.c_in / s.group * taps;
  im2col_ = pick_kernel(im2col_kernels(), allowed,
                        [&](const Im2colKernel& e) { return e.max_stride_w == 0 || s.stride_w <= e.max_stride_w; });
  for (int g = 0; g < s.group; ++g) {
    packed_.push_back(sgemm_pack_a(gemm, weights + static_cast<size_t>(g) * m * k_, m, k_, k_));
  }
  if (kind_ == Kind::kImplicit) {
    name_ = std::string("sconv_implicit/") + gemm.name;
    imp_wp_ = s.w_out + max_qc;
    imp_hp_ = s.h_out + max_qa;
    const int64_t grid = static_cast<int64_t>(s.h_out) * imp_wp_;
    // A tile's last panel reads up to 15 grid columns past the grid, each
    // row shifted by up to max_qa wq + max_qc: that slack follows each phase
    // plane (zero).
    phase_ = static_cast<size_t>(round_up(static_cast<int>((grid + 15) / 16 * 16) + max_qa * imp_wp_ + max_qc, 16));
    plane_ = phase_ * static_cast<size_t>(s.stride_h) * static_cast<size_t>(s.stride_w);
    pad_floats_ = static_cast<size_t>(s.batch) * static_cast<size_t>(s.c_in) * plane_;
    phase_used_.assign(static_cast<size_t>(s.stride_h) * static_cast<size_t>(s.stride_w), 0);
    b_rows_.resize(static_cast<size_t>(k_));
    for (int k = 0; k < k_; ++k) {
      const int ch = k / taps, ky = (k % taps) / s.kw, kx = k % s.kw;
      const int ya = ky * s.dil_h, xa = kx * s.dil_w;
      const int phase = (ya % s.stride_h) * s.stride_w + xa % s.stride_w;
      phase_used_[static_cast<size_t>(phase)] = 1;
      b_rows_[static_cast<size_t>(k)] = static_cast<int64_t>(ch) * static_cast<int64_t>(plane_) +
                                        static_cast<int64_t>(phase) * static_cast<int64_t>(phase_) +
                                        static_cast<int64_t>(ya / s.stride_h) * imp_wp_ + xa / s.stride_w;
    }
    // The per-thread output tile, m x tile_n_ floats, stays in L2.
    tile_n_ = std::clamp(kTileFloats / m / kSgemmNr * kSgemmNr, 2 * kSgemmNr, 512);
    tile_n_ = std::min(tile_n_, static_cast<int>((grid + 15) / 16 * 16));
    slice_floats_ = static_cast<size_t>(m) * static_cast<size_t>(tile_n_);
    return;
  }
  name_ = kind_ == Kind::k1x1 ? "sconv_1x1/" : kind_ == Kind::kGroup ? "sconv_group_im2col/" : "sconv_im2col/";
  if (kind_ != Kind::k1x1) name_ += std::string(im2col_->name) + "+";
  name_ += gemm.name;
  const int kl = std::min(k_, kSgemmKc);
  const int n = s.h_out * s.w_out;
  tile_n_ = std::clamp(kTileFloats / kl / kSgemmNr * kSgemmNr, kSgemmNr, 1024);
  tile_n_ = std::min(tile_n_, round_up(n, kSgemmNr));
  // A tile spans at most kMaxSegments output rows (pack_tile's bound).
  if (kind_ != Kind::k1x1) {
    tile_n_ = std::min(tile_n_, std::max(kSgemmNr, (kMaxSegments - 1) * s.w_out / kSgemmNr * kSgemmNr));
  }
  slice_floats_ = static_cast<size_t>(kl) * static_cast<size_t>(tile_n_);
}

size_t SConv::scratch_bytes(int threads) const {
  return (pad_floats_ + static_cast<size_t>(std::clamp(threads, 1, kSConvMaxThreads)) * slice_floats_) * sizeof(float);
}

void SConv::run(const float* x, float* y, void* scratch, ThreadPool* pool, const float* residual) const {
  const int threads = pool == nullptr ? 1 : std::min(pool->size(), kSConvMaxThreads);
  float* buf = static_cast<float*>(scratch);
  if (kind_ == Kind::kDepthwise) {
    if (residual != nullptr) invalid("the depthwise path has no fused residual Add");
    return run_depthwise(x, y, buf, threads, pool);
  }
  if (kind_ == Kind::kImplicit) return run_implicit(x, y, buf, threads, pool, residual);
  run_gemm(x, y, buf, threads, pool, residual);
}

void hard_swish_f32(const float* x, float* y, int64_t n, float alpha, float beta) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * std::max(0.0f, std::min(1.0f, alpha * x[i] + beta));
}

void hard_swish_op_f32(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * std::max(0.0f, std::min(1.0f, x[i] / 6.0f + 0.5f));
}

void SConv::finish(float* y, int64_t n) const {
  if (silu_ != nullptr) silu_->silu(y, y, n);
  if (hard_swish_) hard_swish_f32(y, y, n, hs_);
}

void SConv::pack_tile(const float* x, int n0, int nc, int k0, int kl, float* dst) const {
  pack_tile_body(shape_, kind_ == Kind::k1x1, *im2col_, x, n0, nc, k0, kl, dst);
}

void SConv::run_gemm(const float* x, float* y, float* scratch, int threads, ThreadPool* pool,
                     const float* residual) const {
  const ConvShape& s = shape_;
  const int m = s.c_out / s.group;
  const int n = s.h_out * s.w_out;
  const int cg = s.c_in / s.group;
  const size_t in_plane = static_cast<size_t>(s.h_in) * static_cast<size_t>(s.w_in);
  const WorkSplit w = split_work(n, static_cast<int64_t>(s.batch) * s.group, m, tile_n_, threads);
  const int tile_w = w.tile_w, n_tiles = w.n_tiles, m_panels = w.m_panels, m_split = w.m_split;
  const int64_t items = w.items;
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
        const int n0 = t * tile_w;
        const int nc = std::min(tile_w, n - n0);
        const float* xg = x + (static_cast<size_t>(b) * s.c_in + static_cast<size_t>(g) * cg) * in_plane;
        const size_t y_off = (static_cast<size_t>(b) * s.c_out + static_cast<size_t>(g) * m) * static_cast<size_t>(n) +
                             static_cast<size_t>(n0);
        float* yg = y + y_off;
        const float* rg = residual == nullptr ? nullptr : residual + y_off;
        for (int k0 = 0; k0 < k_; k0 += kSgemmKc) {
          const int kl = std::min(kSgemmKc, k_ - k0);
          pack_tile(xg, n0, nc, k0, kl, tile);
          sgemm_packed_a_block(packed_[g], m0, m1, k0, tile, nc, yg, n, bias == nullptr ? nullptr : bias + g * m, act_,
                               nullptr, rg);
        }
        if (has_epilogue()) {
          for (int o = m0; o < m1; ++o) finish(yg + static_cast<size_t>(o) * n, nc);
        }
      }
    }
  };
  parallel_for(threads > 1 ? pool : nullptr, threads, work);
}

void SConv::run_implicit(const float* x, float* y, float* scratch, int threads, ThreadPool* pool,
                         const float* residual) const {
  const ConvShape& s = shape_;
  const int m = s.c_out;
  const int n = s.h_out * s.w_out;
  const int wp = imp_wp_;
  const int grid = s.h_out * wp;
  const int64_t planes = static_cast<int64_t>(s.batch) * s.c_in;
  const size_t in_plane = static_cast<size_t>(s.h_in) * static_cast<size_t>(s.w_in);
  const int sh = s.stride_h, sw = s.stride_w;
  // Phase plane (ra, rc) of a channel: (u, v) holds x[sh u + ra - pad_top,
  // sw v + rc - pad_left], zero outside the input; hq x wq of them, then zero.
  const int hq = imp_hp_, wq = wp;
  float* padded = scratch;
  parallel_for(threads > 1 ? pool : nullptr, threads, [&](int64_t slice_begin, int64_t slice_end) {
    for (int64_t slice = slice_begin; slice < slice_end; ++slice) {
      int64_t i0, i1;
      chunk_range(planes, threads, static_cast<int>(slice), i0, i1);
      for (int64_t i = i0; i < i1; ++i) {
        const float* src = x + static_cast<size_t>(i) * in_plane;
        for (int ra = 0; ra < sh; ++ra) {
          for (int rc = 0; rc < sw; ++rc) {
            if (phase_used_[static_cast<size_t>(ra * sw + rc)] == 0) continue;  // never read
            float* dst = padded + static_cast<size_t>(i) * plane_ + static_cast<size_t>(ra * sw + rc) * phase_;
            // Columns v in [v_lo, v_hi) read the input.
            const int lo_num = s.pad_left - rc, hi_num = s.w_in + s.pad_left - rc;
            const int v_lo = std::min(wq, lo_num <= 0 ? 0 : (lo_num + sw - 1) / sw);
            const int v_hi = std::clamp(hi_num <= 0 ? 0 : (hi_num + sw - 1) / sw, v_lo, wq);
            for (int u = 0; u < hq; ++u) {
              float* row = dst + static_cast<size_t>(u) * wq;
              const int iy = sh * u + ra - s.pad_top;
              if (iy < 0 || iy >= s.h_in) {
                std::memset(row, 0, static_cast<size_t>(wq) * sizeof(float));
                continue;
              }
              std::memset(row, 0, static_cast<size_t>(v_lo) * sizeof(float));
              if (v_lo < v_hi) {
                const float* srow = src + static_cast<size_t>(iy) * s.w_in + (sw * v_lo + rc - s.pad_left);
                if (sw == 1) {
                  std::memcpy(row + v_lo, srow, static_cast<size_t>(v_hi - v_lo) * sizeof(float));
                } else {
                  for (int v = v_lo; v < v_hi; ++v) row[v] = srow[static_cast<ptrdiff_t>(v - v_lo) * sw];
                }
              }
              std::memset(row + v_hi, 0, static_cast<size_t>(wq - v_hi) * sizeof(float));
            }
            const size_t tail = static_cast<size_t>(hq) * wq;
            std::memset(dst + tail, 0, (phase_ - tail) * sizeof(float));
          }
        }
      }
    }
  });
  float* tiles = scratch + pad_floats_;
  const WorkSplit w = split_work(grid, s.batch, m, tile_n_, threads);
  const int tile_w = w.tile_w, n_tiles = w.n_tiles, m_panels = w.m_panels, m_split = w.m_split;
  const int64_t items = w.items;
  const float* bias = bias_.empty() ? nullptr : bias_.data();
  auto work = [&](int64_t slice_begin, int64_t slice_end) {
    for (int64_t slice = slice_begin; slice < slice_end; ++slice) {
      float* tile = tiles + static_cast<size_t>(slice) * slice_floats_;
      int64_t i0, i1;
      chunk_range(items, threads, static_cast<int>(slice), i0, i1);
      for (int64_t item = i0; item < i1; ++item) {
        const int ms = static_cast<int>(item % m_split);
        const int64_t unit = item / m_split;
        const int t = static_cast<int>(unit % n_tiles);
        const int b = static_cast<int>(unit / n_tiles);
        int64_t p0, p1;
        chunk_range(m_panels, m_split, ms, p0, p1);
        const int m0 = static_cast<int>(p0) * kSgemmMr;
        const int m1 = std::min(m, static_cast<int>(p1) * kSgemmMr);
        if (m0 >= m1) continue;
        const int q0 = t * tile_w;
        const int nc = std::min(tile_w, grid - q0);
        const float* xb = padded + static_cast<size_t>(b) * s.c_in * plane_ + static_cast<size_t>(q0);
        // Output row o of the tile at tile + o * tile_w (rows [m0, m1) used).
        float* c = tile;
        // With a residual the tile holds conv + bias; the copy below adds
        // the residual, then act (the epilogue's operations, same order).
        const SgemmActivation tile_act = residual == nullptr ? act_ : SgemmActivation::none();
        for (int k0 = 0; k0 < k_; k0 += kSgemmKc) {
          sgemm_packed_a_block(packed_[0], m0, m1, k0, xb, nc, c, tile_w, bias, tile_act, b_rows_.data() + k0);
        }
        if (has_epilogue()) {
          for (int o = m0; o < m1; ++o) finish(c + static_cast<size_t>(o) * tile_w, nc);
        }
        // Valid grid columns (ox < w_out) to y, one output-row piece at a time.
        float* yb = y + static_cast<size_t>(b) * s.c_out * static_cast<size_t>(n);
        for (int q = q0; q < q0 + nc;) {
          const int oy = q / wp, ox = q % wp;
          const int run = std::min(q0 + nc - q, wp - ox);
          const int valid = std::max(0, std::min(run, s.w_out - ox));
          if (valid > 0 && residual == nullptr) {
            for (int o = m0; o < m1; ++o) {
              std::memcpy(yb + static_cast<size_t>(o) * n + static_cast<size_t>(oy) * s.w_out + ox,
                          c + static_cast<size_t>(o) * tile_w + (q - q0), static_cast<size_t>(valid) * sizeof(float));
            }
          } else if (valid > 0) {
            const size_t out0 = static_cast<size_t>(oy) * s.w_out + static_cast<size_t>(ox);
            const float* rb = residual + static_cast<size_t>(b) * s.c_out * static_cast<size_t>(n);
            for (int o = m0; o < m1; ++o) {
              float* dst = yb + static_cast<size_t>(o) * n + out0;
              const float* r = rb + static_cast<size_t>(o) * n + out0;
              const float* src = c + static_cast<size_t>(o) * tile_w + (q - q0);
              for (int j = 0; j < valid; ++j) dst[j] = epilogue_act(src[j] + r[j], act_);
            }
          }
          q += run;
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
  // The part of the input inside the padded plane: rows [y_begin, y_end),
  // columns from 0, copy_bytes per row, to padded column x_begin.
  const int y_begin = std::min(s.h_in, std::max(0, -s.pad_top));
  const int y_end = std::max(y_begin, std::min(s.h_in, dw_hp_ - s.pad_top));
  const int x_begin = std::min(s.pad_left, dw_wp_);
  const size_t copy_bytes = static_cast<size_t>(std::max(0, std::min(s.w_in, dw_wp_ - s.pad_left))) * sizeof(float);
  auto work = [&](int64_t slice_begin, int64_t slice_end) {
    for (int64_t slice = slice_begin; slice < slice_end; ++slice) {
      float* pad = scratch + static_cast<size_t>(slice) * slice_floats_;
      int64_t i0, i1;
      chunk_range(planes, threads, static_cast<int>(slice), i0, i1);
      if (i0 < i1) std::memset(pad, 0, slice_floats_ * sizeof(float));
      for (int64_t i = i0; i < i1; ++i) {
        const int c = static_cast<int>(i % s.c_out);
        const float* src = x + static_cast<size_t>(i) * in_plane;
        DwPlane p;
        if (dw_->in_place) {  // reads src, `pad` is its zero row
          p.plane = src;
          p.h_in = s.h_in;
          p.w_in = s.w_in;
          p.pad_top = s.pad_top;
          p.pad_left = s.pad_left;
          p.zero_row = pad + dw_margin_;
          p.lo_bound = x;
          p.hi_bound = x + static_cast<size_t>(planes) * in_plane;
        } else {
          // Zero-padded copy: padded (py, px) holds x[py - pad_top, px - pad_left].
          // Only the input's rectangle is written per plane; the border was
          // zeroed once per call above and stays zero.
          for (int iy = y_begin; iy < y_end; ++iy) {
            std::memcpy(pad + static_cast<size_t>(iy + s.pad_top) * dw_wp_ + x_begin,
                        src + static_cast<size_t>(iy) * s.w_in, copy_bytes);
          }
          p.plane = pad;
          p.wp = dw_wp_;
        }
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
        dw_->plane(p);
        finish(p.out, static_cast<int64_t>(out_plane));
      }
    }
  };
  parallel_for(threads > 1 ? pool : nullptr, threads, work);
}

void validate_conv_shape(const ConvShape& s, const char* who) {
  auto fail = [who](const char* what) { throw Error(ErrorCode::kInvalidArgument, std::string(who) + ": " + what); };
  if (s.batch < 1 || s.c_in < 1 || s.h_in < 1 || s.w_in < 1 || s.c_out < 1 || s.h_out < 1 || s.w_out < 1) {
    fail("every size must be >= 1");
  }
  if (s.kh < 1 || s.kw < 1 || s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1) {
    fail("kernel, stride and dilation must be >= 1");
  }
  if (s.pad_top < 0 || s.pad_left < 0) fail("padding must be >= 0");
  if (s.group < 1 || s.c_in % s.group != 0 || s.c_out % s.group != 0) fail("group must divide c_in and c_out");
}

}  // namespace kvant
