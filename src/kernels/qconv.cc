// INT8 convolution: parameter checks, path choice, weight packing, the
// reference loops and the threaded drivers. The math is in qconv.h; the SIMD
// pieces are in x86_avx2/qconv_avx2.cc.
#include "kernels/qconv.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>

#include "kernels/gemm_s8.h"
#include "kernels/qconv_gemm.h"
#include "kernels/qdw_nhwc.h"
#include "kvant/status.h"

#if defined(__x86_64__)
#include "kernels/x86_avx2/qconv_avx2.h"
#endif

namespace kvant {

namespace {

[[noreturn]] void fail(ErrorCode code, const std::string& message) {
  std::string m = "QConv: ";
  m += message;
  throw Error(code, m);
}

constexpr int kRowBlock = 6;               // = qconv_avx2::kRowBlock
constexpr int kCols = 16;                  // = qconv_avx2::kCols
constexpr size_t kTileBytes = 160 * 1024;  // im2col + packed X per slot (L2)

#if defined(__x86_64__)
static_assert(kRowBlock == qconv_avx2::kRowBlock && kCols == qconv_avx2::kCols);
#endif

int round_up(int x, int to) { return (x + to - 1) / to * to; }
size_t round64(size_t x) { return (x + 63) / 64 * 64; }

}  // namespace

QConv::QConv(const QConvParams& params, const int8_t* weights, Isa isa) : p_(params), isa_(isa) {
  const ConvShape& s = p_.shape;
  if (s.batch < 1 || s.c_in < 1 || s.h_in < 1 || s.w_in < 1 || s.c_out < 1 || s.h_out < 1 || s.w_out < 1 || s.kh < 1 ||
      s.kw < 1 || s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1 || s.pad_top < 0 || s.pad_left < 0 ||
      s.group < 1) {
    fail(ErrorCode::kInvalidArgument, "every size, stride and dilation must be >= 1 and pads >= 0");
  }
  if (s.c_in % s.group != 0 || s.c_out % s.group != 0) {
    fail(ErrorCode::kInvalidArgument, "c_in and c_out must be multiples of group");
  }
  const int c_out = s.c_out;
  if (p_.w_scale.size() != 1 && p_.w_scale.size() != static_cast<size_t>(c_out)) {
    fail(ErrorCode::kInvalidArgument, "w_scale must hold 1 or c_out values");
  }
  if (p_.w_zp.size() > 1 && p_.w_zp.size() != static_cast<size_t>(c_out)) {
    fail(ErrorCode::kInvalidArgument, "w_zp must hold 0, 1 or c_out values");
  }
  if (!p_.bias.empty() && p_.bias.size() != static_cast<size_t>(c_out)) {
    fail(ErrorCode::kInvalidArgument, "bias must hold 0 or c_out values");
  }
  const int x_min = p_.x_signed ? -128 : 0;
  if (p_.x_zp < x_min || p_.x_zp > x_min + 255) fail(ErrorCode::kInvalidArgument, "x_zp outside x's type");
  const int y_min = p_.y_signed ? -128 : 0;
  if (p_.y_zp < y_min || p_.y_zp > y_min + 255) fail(ErrorCode::kInvalidArgument, "y_zp outside y's type");
  lo_ = std::max(y_min, p_.out_min);
  hi_ = std::min(y_min + 255, p_.out_max);
  if (lo_ > hi_) fail(ErrorCode::kInvalidArgument, "out_min/out_max leave no output value");
  if (isa_ != Isa::kRef) {
#if defined(__x86_64__)
    if (!cpu_supports(cpu_features(), isa_)) {
      fail(ErrorCode::kUnsupported, std::string("this CPU cannot run ") + isa_name(isa_));
    }
#else
    fail(ErrorCode::kUnsupported, std::string("no kernels for ") + isa_name(isa_));
#endif
  }

  const int cin_g = s.c_in / s.group;
  const int cout_g = c_out / s.group;
  const int taps = s.kh * s.kw;
  w_zp_.assign(static_cast<size_t>(c_out), 0);
  for (int m = 0; m < c_out; ++m) {
    if (!p_.w_zp.empty()) w_zp_[static_cast<size_t>(m)] = p_.w_zp[p_.w_zp.size() == 1 ? 0 : static_cast<size_t>(m)];
    if (w_zp_[static_cast<size_t>(m)] < -128 || w_zp_[static_cast<size_t>(m)] > 127) {
      fail(ErrorCode::kInvalidArgument, "w_zp outside int8");
    }
  }
  // Padded by a row block so kernels may read past c_out.
  bias_.assign(static_cast<size_t>(c_out + kRowBlock), 0);
  if (!p_.bias.empty()) std::copy(p_.bias.begin(), p_.bias.end(), bias_.begin());
  multiplier_.assign(static_cast<size_t>(c_out + kRowBlock), 0.0f);
  for (int m = 0; m < c_out; ++m) {
    const float ws = p_.w_scale[p_.w_scale.size() == 1 ? 0 : static_cast<size_t>(m)];
    multiplier_[static_cast<size_t>(m)] = p_.x_scale * ws / p_.y_scale;
  }
  slots_ = p_.max_threads > 0 ? p_.max_threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  const bool depthwise = s.group == s.c_in && s.group == c_out;
  if (p_.nhwc) {
    if (depthwise && taps <= kQDwMaxTaps) {
      path_ = Path::kDepthwiseNhwc;
      bool fit_s8 = true;
      for (int c = 0; c < c_out && fit_s8; ++c) {
        for (int t = 0; t < taps; ++t) {
          const int v = weights[static_cast<int64_t>(c) * taps + t] - w_zp_[static_cast<size_t>(c)];
          fit_s8 = fit_s8 && v >= -128 && v <= 127;
        }
      }
      dw_nhwc_ = &pick_qdw_nhwc(isa_, p_.x_signed, fit_s8, c_out);
      dw_nhwc_weights_ = pack_qdw_nhwc(*dw_nhwc_, weights, w_zp_.data(), c_out, taps);
      dw_nhwc_bias_ = qdw_nhwc_bias(bias_.data(), weights, w_zp_.data(), p_.x_zp, c_out, taps);
      slot_bytes_ = round64(static_cast<size_t>(c_out) + 64);  // the x_zp row
      return;
    }
    path_ = Path::kGemmNhwc;
    gemm_ = std::make_unique<QConvGemm>(p_, weights, w_zp_, isa_);
    return;
  }
  if (isa_ == Isa::kRef) {
    path_ = Path::kRef;
    weights_.assign(weights, weights + static_cast<int64_t>(c_out) * cin_g * taps);  // only this path reads them
    return;
  }
  const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
  if (s.group == s.c_in && s.group == c_out) {
    // Depthwise: tap pairs (w - w_zp) and their offsets in the padded plane
    // [rows][stride_w phases][width] (qconv_avx2::depthwise_fill).
    path_ = Path::kDepthwise;
    dw_rows_ = (s.h_out - 1) * s.stride_h + (s.kh - 1) * s.dil_h + 1;
    dw_width_ = round_up(s.w_out, kCols) + ((s.kw - 1) * s.dil_w) / s.stride_w;
    const int npairs = (taps + 1) / 2;
    dw_offsets_.assign(static_cast<size_t>(2 * npairs), 0);
    for (int t = 0; t < 2 * npairs; ++t) {
      const int tap = std::min(t, taps - 1);
      const int ky = tap / s.kw, kx = tap % s.kw;
      const int col = kx * s.dil_w;
      dw_offsets_[static_cast<size_t>(t)] =
          (ky * s.dil_h * s.stride_w + col % s.stride_w) * dw_width_ + col / s.stride_w;
    }
    dw_weights_.assign(static_cast<size_t>(c_out) * npairs, 0);
    for (int c = 0; c < c_out; ++c) {
      for (int t = 0; t < npairs; ++t) {
        const int32_t zp = w_zp_[static_cast<size_t>(c)];
        const int32_t w0 = weights[static_cast<int64_t>(c) * taps + 2 * t] - zp;
        const int32_t w1 = 2 * t + 1 < taps ? weights[static_cast<int64_t>(c) * taps + 2 * t + 1] - zp : 0;
        dw_weights_[static_cast<size_t>(c) * npairs + t] =
            static_cast<int32_t>((static_cast<uint32_t>(w1) << 16) | (static_cast<uint32_t>(w0) & 0xFFFF));
      }
    }
    // + 16 values of slack: depthwise_fill stores whole vectors.
    slot_bytes_ = round64(sizeof(int16_t) * (static_cast<size_t>(dw_rows_) * s.stride_w * dw_width_ + 16));
    return;
  }
  if (qgemm_kernel_isa(pick_qgemm(isa_, false)) >= Isa::kAvxVnni) {
    path_ = Path::kGemmNhwc;
    gemm_ = std::make_unique<QConvGemm>(p_, weights, w_zp_, isa_);
    return;
  }
  direct_ = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
            s.h_out == s.h_in && s.w_out == s.w_in;
  path_ = s.group > 1 ? Path::kGrouped : (direct_ ? Path::kGemm1x1 : Path::kIm2col);
  k_ = cin_g * taps;
  pairs_ = (k_ + 1) / 2;
  quads_ = (k_ + 3) / 4;
  m_blocks_ = (cout_g + kRowBlock - 1) / kRowBlock;
  u8s7_ = true;
  for (int m = 0; m < c_out && u8s7_; ++m) {
    const int8_t* wrow = weights + static_cast<int64_t>(m) * k_;
    const int32_t zp = w_zp_[static_cast<size_t>(m)];
    for (int k = 0; k < k_; ++k) {
      if (std::abs(wrow[k] - zp) > 64) {
        u8s7_ = false;
        break;
      }
    }
  }
  if (u8s7_) {
    // Raw activation bytes: int8 ones are flipped to x + 128, their zero point too.
    const int32_t xzp = p_.x_zp + (p_.x_signed ? 128 : 0);
    bias_u8s7_ = bias_;
    packed_w8_.assign(static_cast<size_t>(s.group) * m_blocks_ * quads_ * kRowBlock * 4, 0);
    for (int g = 0; g < s.group; ++g) {
      for (int m = 0; m < cout_g; ++m) {
        const int mg = g * cout_g + m;
        const int8_t* wrow = weights + static_cast<int64_t>(mg) * k_;
        int8_t* blk =
            packed_w8_.data() + (static_cast<int64_t>(g) * m_blocks_ + m / kRowBlock) * quads_ * kRowBlock * 4;
        int64_t colsum = 0;
        for (int k = 0; k < k_; ++k) {
          const int v = wrow[k] - w_zp_[static_cast<size_t>(mg)];
          colsum += v;
          blk[((k / 4) * kRowBlock + m % kRowBlock) * 4 + k % 4] = static_cast<int8_t>(v);
        }
        // Wraps like the int32 accumulator does: exact under qconv.h's limits.
        bias_u8s7_[static_cast<size_t>(mg)] = static_cast<int32_t>(
            static_cast<uint32_t>(bias_u8s7_[static_cast<size_t>(mg)]) - static_cast<uint32_t>(xzp * colsum));
      }
    }
  }
  // Packed W: [group][block][pair][row][2] of w - w_zp, zero outside.
  if (!u8s7_) packed_w_.assign(static_cast<size_t>(s.group) * m_blocks_ * pairs_ * kRowBlock * 2, 0);
  for (int g = 0; g < s.group && !u8s7_; ++g) {
    for (int m = 0; m < cout_g; ++m) {
      const int mg = g * cout_g + m;
      const int8_t* wrow = weights + static_cast<int64_t>(mg) * k_;
      int16_t* blk = packed_w_.data() + (static_cast<int64_t>(g) * m_blocks_ + m / kRowBlock) * pairs_ * kRowBlock * 2;
      for (int k = 0; k < k_; ++k) {
        blk[((k / 2) * kRowBlock + m % kRowBlock) * 2 + k % 2] =
            static_cast<int16_t>(wrow[k] - w_zp_[static_cast<size_t>(mg)]);
      }
    }
  }
  // Tile of output positions: im2col rows (unless direct) plus packed X fit kTileBytes.
  const bool im2col = !direct_;
  const size_t col_bytes = static_cast<size_t>(pairs_) * 4 + (im2col ? static_cast<size_t>(k_) : 0);
  int cols = static_cast<int>(std::max<size_t>(kTileBytes / col_bytes / kCols, 1)) * kCols;
  cols = static_cast<int>(std::min<int64_t>(cols, round_up(static_cast<int>(hw), kCols)));
  tiles_ = static_cast<int>((hw + cols - 1) / cols);
  tile_cols_ = round_up(static_cast<int>((hw + tiles_ - 1) / tiles_), kCols / 2);  // a last half panel is cheap
  slot_bytes_ = round64(static_cast<size_t>(pairs_) * 4 * round_up(tile_cols_, kCols)) +
                (im2col ? round64(static_cast<size_t>(k_) * tile_cols_) : 0);
}

QConv::~QConv() = default;
QConv::QConv(QConv&&) noexcept = default;

size_t QConv::scratch_bytes() const {
  if (gemm_) return gemm_->scratch_bytes(slots_);
  return path_ == Path::kDepthwiseNhwc ? slot_bytes_ : slot_bytes_ * static_cast<size_t>(slots_);
}

const char* QConv::kernel_name() const {
  switch (path_) {
    case Path::kRef: return "qconv_ref";
    case Path::kGemm1x1: return u8s7_ ? "qconv_1x1_gemm_u8s7_avx2" : "qconv_1x1_gemm_avx2";
    case Path::kIm2col: return u8s7_ ? "qconv_im2col_u8s7_avx2" : "qconv_im2col_avx2";
    case Path::kDepthwise: return "qconv_depthwise_avx2";
    case Path::kGrouped: return u8s7_ ? "qconv_grouped_u8s7_avx2" : "qconv_grouped_avx2";
    case Path::kGemmNhwc: return gemm_->name();
    case Path::kDepthwiseNhwc: return dw_nhwc_->name;
  }
  return "qconv_unknown";
}

void QConv::run(const void* x, void* y, void* scratch, ThreadPool* pool) const {
  const auto* xb = static_cast<const uint8_t*>(x);
  auto* yb = static_cast<uint8_t*>(y);
  switch (path_) {
    case Path::kRef: run_ref(xb, yb); return;
    case Path::kDepthwise: run_depthwise(xb, yb, static_cast<uint8_t*>(scratch), pool); return;
    case Path::kDepthwiseNhwc: run_depthwise_nhwc(xb, yb, static_cast<uint8_t*>(scratch), pool); return;
    case Path::kGemmNhwc:
      gemm_->run(xb, yb, static_cast<uint8_t*>(scratch), std::min(slots_, pool != nullptr ? pool->size() : 1), pool,
                 bias_.data(), multiplier_.data(), lo_, hi_);
      return;
    default: run_gemm(xb, yb, static_cast<uint8_t*>(scratch), pool); return;
  }
}

void QConv::run_ref(const uint8_t* x, uint8_t* y) const {
  const ConvShape& s = p_.shape;
  const int cin_g = s.c_in / s.group;
  const int cout_g = s.c_out / s.group;
  auto x_at = [&](int64_t i) { return p_.x_signed ? int32_t{static_cast<int8_t>(x[i])} : int32_t{x[i]}; };
  for (int b = 0; b < s.batch; ++b) {
    for (int m = 0; m < s.c_out; ++m) {
      const int g = m / cout_g;
      const int32_t wzp = w_zp_[static_cast<size_t>(m)];
      for (int oy = 0; oy < s.h_out; ++oy) {
        for (int ox = 0; ox < s.w_out; ++ox) {
          int64_t acc = 0;
          for (int c = 0; c < cin_g; ++c) {
            const int64_t plane = (static_cast<int64_t>(b) * s.c_in + g * cin_g + c) * s.h_in;
            for (int ky = 0; ky < s.kh; ++ky) {
              const int iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
              if (iy < 0 || iy >= s.h_in) continue;
              for (int kx = 0; kx < s.kw; ++kx) {
                const int ix = ox * s.stride_w - s.pad_left + kx * s.dil_w;
                if (ix < 0 || ix >= s.w_in) continue;
                const int32_t xv = x_at((plane + iy) * s.w_in + ix) - p_.x_zp;
                const int32_t wv = weights_[((static_cast<size_t>(m) * cin_g + c) * s.kh + ky) * s.kw + kx] - wzp;
                acc += xv * wv;
              }
            }
          }
          const int64_t sum = static_cast<int64_t>(static_cast<int32_t>(acc)) + bias_[static_cast<size_t>(m)];
          const float real = static_cast<float>(sum) * multiplier_[static_cast<size_t>(m)];
          const float q = std::nearbyint(real) + static_cast<float>(p_.y_zp);
          const int32_t v = static_cast<int32_t>(std::clamp(q, static_cast<float>(lo_), static_cast<float>(hi_)));
          y[((static_cast<int64_t>(b) * s.c_out + m) * s.h_out + oy) * s.w_out + ox] = static_cast<uint8_t>(v);
        }
      }
    }
  }
}

void QConv::run_depthwise_nhwc(const uint8_t* x, uint8_t* y, uint8_t* scratch, ThreadPool* pool) const {
  const ConvShape& s = p_.shape;
  std::fill(scratch, scratch + s.c_out, static_cast<uint8_t>(p_.x_zp));
  const int64_t image_in = static_cast<int64_t>(s.h_in) * s.w_in * s.c_in;
  const int64_t image_out = static_cast<int64_t>(s.h_out) * s.w_out * s.c_out;
  const int64_t items = static_cast<int64_t>(s.batch) * s.h_out;  // output rows
  parallel_for(pool, std::min<int64_t>(items, pool != nullptr ? pool->size() : 1), [&](int64_t begin, int64_t end) {
    const int parts = pool != nullptr ? std::min<int>(pool->size(), static_cast<int>(items)) : 1;
    for (int64_t part = begin; part < end; ++part) {
      int64_t r0 = 0, r1 = 0;
      chunk_range(items, parts, static_cast<int>(part), r0, r1);
      for (int64_t r = r0; r < r1;) {
        const int b = static_cast<int>(r / s.h_out);
        const int row = static_cast<int>(r % s.h_out);
        const int rows = static_cast<int>(std::min<int64_t>(r1 - r, s.h_out - row));
        const QDwArgs args{x + b * image_in,
                           &s,
                           p_.x_signed,
                           p_.y_signed,
                           p_.x_zp,
                           dw_nhwc_weights_.data(),
                           dw_nhwc_bias_.data(),
                           multiplier_.data(),
                           p_.y_zp,
                           lo_,
                           hi_,
                           scratch,
                           y + b * image_out,
                           row,
                           row + rows};
        dw_nhwc_->run(args);
        r += rows;
      }
    }
  });
}

#if defined(__x86_64__)

void QConv::run_gemm(const uint8_t* x, uint8_t* y, uint8_t* scratch, ThreadPool* pool) const {
  const ConvShape& s = p_.shape;
  const int cin_g = s.c_in / s.group;
  const int cout_g = s.c_out / s.group;
  const int64_t hw_in = static_cast<int64_t>(s.h_in) * s.w_in;
  const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
  const int slots = std::min(slots_, pool != nullptr ? pool->size() : 1);
  // Items (image, group, tile, part of the output channels), the part
  // innermost so a slot packs each X tile once. Parts only when there are
  // too few tiles to keep the slots busy.
  const int64_t tiles_total = static_cast<int64_t>(s.batch) * s.group * tiles_;
  int parts = 1;
  if (tiles_total < 2 * slots) {
    parts = static_cast<int>(std::min<int64_t>(m_blocks_, (2 * slots + tiles_total - 1) / tiles_total));
  }
  const int64_t items = tiles_total * parts;
  const size_t xpack_bytes = round64(static_cast<size_t>(pairs_) * 4 * round_up(tile_cols_, kCols));
  parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
    for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
      uint8_t* mine = scratch + slot * slot_bytes_;
      auto* xpack = reinterpret_cast<int16_t*>(mine);
      uint8_t* cols_buf = mine + xpack_bytes;
      int64_t begin = 0, end = 0;
      chunk_range(items, slots, static_cast<int>(slot), begin, end);
      int64_t packed_tile = -1;
      for (int64_t item = begin; item < end; ++item) {
        const int64_t tile_id = item / parts;
        const int part = static_cast<int>(item % parts);
        const int tile = static_cast<int>(tile_id % tiles_);
        const int g = static_cast<int>((tile_id / tiles_) % s.group);
        const int b = static_cast<int>(tile_id / tiles_ / s.group);
        const int n0 = tile * tile_cols_;
        const int ncols = static_cast<int>(std::min<int64_t>(tile_cols_, hw - n0));
        if (ncols <= 0) continue;
        const uint8_t* xg = x + (static_cast<int64_t>(b) * s.c_in + static_cast<int64_t>(g) * cin_g) * hw_in;
        if (tile_id != packed_tile && u8s7_) {
          auto* xpack8 = reinterpret_cast<uint8_t*>(xpack);
          if (direct_) {
            qconv_avx2::pack_x_u8(xg + n0, hw_in, k_, ncols, p_.x_signed, xpack8);
          } else {
            qconv_avx2::im2col(xg, s, cin_g, n0, ncols, static_cast<uint8_t>(p_.x_zp), cols_buf, tile_cols_);
            qconv_avx2::pack_x_u8(cols_buf, tile_cols_, k_, ncols, p_.x_signed, xpack8);
          }
          packed_tile = tile_id;
        } else if (tile_id != packed_tile) {
          if (direct_) {
            qconv_avx2::pack_x(xg + n0, hw_in, k_, ncols, p_.x_signed, p_.x_zp, xpack);
          } else {
            qconv_avx2::im2col(xg, s, cin_g, n0, ncols, static_cast<uint8_t>(p_.x_zp), cols_buf, tile_cols_);
            qconv_avx2::pack_x(cols_buf, tile_cols_, k_, ncols, p_.x_signed, p_.x_zp, xpack);
          }
          packed_tile = tile_id;
        }
        int64_t blk_begin = 0, blk_end = 0;
        chunk_range(m_blocks_, parts, part, blk_begin, blk_end);
        const int mg0 = g * cout_g;
        const qconv_avx2::Requant rq{
            multiplier_.data() + mg0,          bias_.data() + mg0, p_.y_zp, static_cast<float>(lo_ - p_.y_zp),
            static_cast<float>(hi_ - p_.y_zp), p_.y_signed};
        if (u8s7_) {
          const qconv_avx2::Requant rq8{
              multiplier_.data() + mg0, bias_u8s7_.data() + mg0, rq.y_zp, rq.lo, rq.hi, rq.y_signed};
          const int8_t* wg8 = packed_w8_.data() + static_cast<int64_t>(g) * m_blocks_ * quads_ * kRowBlock * 4;
          uint8_t* yg8 = y + (static_cast<int64_t>(b) * s.c_out + mg0) * hw + n0;
          qconv_avx2::gemm_requant_u8(wg8, static_cast<int>(blk_begin), static_cast<int>(blk_end), cout_g, quads_,
                                      reinterpret_cast<const uint8_t*>(xpack), ncols, rq8, yg8, hw);
          continue;
        }
        const int16_t* wg = packed_w_.data() + static_cast<int64_t>(g) * m_blocks_ * pairs_ * kRowBlock * 2;
        uint8_t* yg = y + (static_cast<int64_t>(b) * s.c_out + mg0) * hw + n0;
        qconv_avx2::gemm_requant(wg, static_cast<int>(blk_begin), static_cast<int>(blk_end), cout_g, pairs_, xpack,
                                 ncols, rq, yg, hw);
      }
    }
  });
}

void QConv::run_depthwise(const uint8_t* x, uint8_t* y, uint8_t* scratch, ThreadPool* pool) const {
  const ConvShape& s = p_.shape;
  const int64_t hw_in = static_cast<int64_t>(s.h_in) * s.w_in;
  const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
  const int slots = std::min(slots_, pool != nullptr ? pool->size() : 1);
  const int64_t items = static_cast<int64_t>(s.batch) * s.c_out;
  const int npairs = static_cast<int>(dw_offsets_.size() / 2);
  parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
    for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
      auto* plane = reinterpret_cast<int16_t*>(scratch + slot * slot_bytes_);
      int64_t begin = 0, end = 0;
      chunk_range(items, slots, static_cast<int>(slot), begin, end);
      for (int64_t item = begin; item < end; ++item) {
        const int c = static_cast<int>(item % s.c_out);
        qconv_avx2::depthwise_fill(x + item * hw_in, s, p_.x_signed, p_.x_zp, dw_rows_, dw_width_, plane);
        const qconv_avx2::Requant rq{multiplier_.data() + c,
                                     bias_.data() + c,
                                     p_.y_zp,
                                     static_cast<float>(lo_ - p_.y_zp),
                                     static_cast<float>(hi_ - p_.y_zp),
                                     p_.y_signed};
        qconv_avx2::depthwise_channel(plane, static_cast<int64_t>(s.stride_w) * dw_width_,
                                      dw_weights_.data() + static_cast<int64_t>(c) * npairs, dw_offsets_.data(), npairs,
                                      s, rq, y + item * hw);
      }
    }
  });
}

#else

void QConv::run_gemm(const uint8_t*, uint8_t*, uint8_t*, ThreadPool*) const {
  fail(ErrorCode::kUnsupported, "no SIMD kernels in this build");
}
void QConv::run_depthwise(const uint8_t*, uint8_t*, uint8_t*, ThreadPool*) const {
  fail(ErrorCode::kUnsupported, "no SIMD kernels in this build");
}

#endif

}  // namespace kvant
