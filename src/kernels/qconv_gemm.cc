// The NHWC GEMM path of the INT8 convolution; the scheme is in qconv_gemm.h.
#include "kernels/qconv_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {

namespace {

constexpr size_t kBlockBytes = 160 * 1024;  // im2col rows of one item (L2)
constexpr size_t kAccBytes = 64 * 1024;     // int32 accumulators of one item

size_t round64(size_t x) { return (x + 63) / 64 * 64; }

// The im2col runs are short (kw * c_in bytes, 21 for a 7x7 conv on RGB):
// inline 8-byte moves, the last one overlapping, instead of library calls.
inline void copy_run(uint8_t* dst, const uint8_t* src, size_t n) {
  if (n < 8) {
    for (size_t i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
  size_t i = 0;
  for (; i + 8 <= n; i += 8) std::memcpy(dst + i, src + i, 8);
  std::memcpy(dst + n - 8, src + n - 8, 8);
}
inline void fill_run(uint8_t* dst, uint8_t value, size_t n) {
  const uint64_t word = 0x0101010101010101ull * value;
  if (n < 8) {
    for (size_t i = 0; i < n; ++i) dst[i] = value;
    return;
  }
  size_t i = 0;
  for (; i + 8 <= n; i += 8) std::memcpy(dst + i, &word, 8);
  std::memcpy(dst + n - 8, &word, 8);
}

}  // namespace

QConvGemm::QConvGemm(const QConvParams& p, const int8_t* weights, const std::vector<int32_t>& w_zp, Isa allowed)
    : p_(p) {
  const ConvShape& s = p_.shape;
  cin_g_ = s.c_in / s.group;
  cout_g_ = s.c_out / s.group;
  const int taps = s.kh * s.kw;
  k_ = cin_g_ * taps;
  direct_ = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
            s.h_out == s.h_in && s.w_out == s.w_in;
  x_fill_ = static_cast<uint8_t>(p_.x_zp + (p_.x_signed ? 128 : 0));

  // Rows in place. Live taps: those that read some input pixel for some
  // output pixel; the others read only padding (x_zp: they add 0) and are
  // dropped, with their rows of B (DeepLabV3's ASPP: 3x3 convs of
  // dilation 12-36 on an 8x8 map keep only the centre tap).
  const char* rows_env = std::getenv("KVANT_QCONV_ROWS");
  const bool rows_allowed = rows_env == nullptr || std::string(rows_env) != "0";
  if (rows_allowed && p_.nhwc && !p_.dequant && s.group == 1 && !direct_ &&
      std::all_of(w_zp.begin(), w_zp.end(), [](int32_t z) { return z == 0; })) {
    // Whether tap k reads an input position (not padding) for some output position.
    auto live = [](int out, int stride, int pad, int dil, int in, int k) {
      for (int o = 0; o < out; ++o) {
        const int64_t i = static_cast<int64_t>(o) * stride - pad + static_cast<int64_t>(k) * dil;
        if (i >= 0 && i < in) return true;
      }
      return false;
    };
    std::vector<int> live_y, live_x;
    for (int ky = 0; ky < s.kh; ++ky) {
      if (live(s.h_out, s.stride_h, s.pad_top, s.dil_h, s.h_in, ky)) live_y.push_back(ky);
    }
    for (int kx = 0; kx < s.kw; ++kx) {
      if (live(s.w_out, s.stride_w, s.pad_left, s.dil_w, s.w_in, kx)) live_x.push_back(kx);
    }
    if (!live_y.empty() && !live_x.empty()) {
      // One segment per live kernel row (its kw taps one run of kw * c_in
      // bytes) when every tap of a row is live and there is no dilation
      // along W; else one per live tap (c_in bytes). Runs padded to 4 bytes
      // with zero rows of B.
      const bool row_runs = s.dil_w == 1 && static_cast<int>(live_x.size()) == s.kw;
      const int run = row_runs ? s.kw * s.c_in : s.c_in;
      const int seg_k = (run + 3) / 4 * 4;
      iy_min_ = live_y.front() * s.dil_h - s.pad_top;
      ix_min_ = live_x.front() * s.dil_w - s.pad_left;
      padded_h_ = (s.h_out - 1) * s.stride_h + (live_y.back() - live_y.front()) * s.dil_h + 1;
      padded_w_ = (s.w_out - 1) * s.stride_w + (live_x.back() - live_x.front()) * s.dil_w + 1;
      const int64_t pixel = s.c_in, row = static_cast<int64_t>(padded_w_) * pixel;
      std::vector<std::pair<int, int>> taps;  // (ky, kx) in B's row order
      for (int ky : live_y) {
        if (row_runs) {
          seg_offsets_.push_back((ky - live_y.front()) * s.dil_h * row);
          for (int kx = 0; kx < s.kw; ++kx) taps.emplace_back(ky, kx);
          continue;
        }
        for (int kx : live_x) {
          seg_offsets_.push_back((ky - live_y.front()) * s.dil_h * row + (kx - live_x.front()) * s.dil_w * pixel);
          taps.emplace_back(ky, kx);
        }
      }
      const int segments = static_cast<int>(seg_offsets_.size());
      const int per_segment = row_runs ? s.kw : 1;
      std::vector<int8_t> b(static_cast<size_t>(segments) * seg_k * s.c_out, 0);
      for (size_t t = 0; t < taps.size(); ++t) {
        const auto [ky, kx] = taps[t];
        const size_t k0 = (t / static_cast<size_t>(per_segment)) * static_cast<size_t>(seg_k) +
                          (t % static_cast<size_t>(per_segment)) * static_cast<size_t>(s.c_in);
        for (int m = 0; m < s.c_out; ++m) {
          for (int c = 0; c < s.c_in; ++c) {
            b[(k0 + static_cast<size_t>(c)) * s.c_out + m] =
                weights[((static_cast<int64_t>(m) * s.c_in + c) * s.kh + ky) * s.kw + kx];
          }
        }
      }
      PackedB packed = pack_b_s8(b.data(), segments * seg_k, s.c_out, allowed);
      if (gemm_u8s8_has_segments(packed, seg_k)) {
        rows_ = true;
        seg_k_ = seg_k;
        packed_.push_back(std::move(packed));
      } else {
        seg_offsets_.clear();
      }
    }
  }

  // B [K, cout_g] per group, k = tap * cin_g + c; w_zp as int8 per column.
  std::vector<int8_t> b(rows_ ? 0 : static_cast<size_t>(k_) * cout_g_);
  std::vector<int8_t> zp(static_cast<size_t>(cout_g_));
  for (int g = 0; g < (rows_ ? 0 : s.group); ++g) {
    bool any_zp = false;
    for (int m = 0; m < cout_g_; ++m) {
      const int mg = g * cout_g_ + m;
      zp[static_cast<size_t>(m)] = static_cast<int8_t>(w_zp[static_cast<size_t>(mg)]);
      any_zp = any_zp || w_zp[static_cast<size_t>(mg)] != 0;
      for (int c = 0; c < cin_g_; ++c) {
        for (int t = 0; t < taps; ++t) {
          b[static_cast<size_t>(t * cin_g_ + c) * cout_g_ + m] =
              weights[(static_cast<int64_t>(mg) * cin_g_ + c) * taps + t];
        }
      }
    }
    packed_.push_back(pack_b_s8(b.data(), k_, cout_g_, allowed, any_zp ? zp.data() : nullptr));
  }
  transpose_ = &pick_transpose_u8(allowed);

  const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
  const int slots = std::max(1, p_.max_threads);
  int rows = static_cast<int>(
      std::min(kBlockBytes / static_cast<size_t>(std::max(k_, 1)), kAccBytes / (4 * static_cast<size_t>(cout_g_))));
  rows = std::clamp(rows / 32 * 32, 32, 1024);
  // Enough items to keep the slots busy, while blocks stay whole tiles.
  while (rows > 32 && static_cast<int64_t>(s.group) * ((hw + rows - 1) / rows) < 2 * slots) rows -= 32;
  block_rows_ = static_cast<int>(std::min<int64_t>(rows, hw));
  // The NHWC copy of an NCHW input, or of an int8 NHWC one flipped to uint8.
  const bool copy_input = !p_.nhwc || p_.x_signed;
  shared_bytes_ = copy_input ? round64(static_cast<size_t>(s.c_in) * s.h_in * s.w_in) : 0;
  slot_bytes_ = (direct_ ? 0 : round64(static_cast<size_t>(block_rows_) * k_)) +
                round64(static_cast<size_t>(block_rows_) * cout_g_ * 4) +
                (p_.nhwc ? 0 : round64(static_cast<size_t>(block_rows_) * cout_g_));
  name_ = std::string(direct_ ? "qconv_1x1_nhwc+" : "qconv_im2col_nhwc+") + packed_.front().kernel_name();
  if (rows_) {
    // The padded image (plus the up to 3 bytes a last run reads past its
    // end) shared; per slot, one row pointer per output pixel of a block.
    shared_bytes_ = round64(static_cast<size_t>(padded_h_) * padded_w_ * s.c_in + 4);
    slot_bytes_ = round64(static_cast<size_t>(block_rows_) * sizeof(const uint8_t*));
    name_ = std::string("qconv_rows_nhwc+") + packed_.front().kernel_name();
  }
}

size_t QConvGemm::scratch_bytes(int slots) const { return shared_bytes_ + slot_bytes_ * static_cast<size_t>(slots); }

void QConvGemm::im2col_rows(const uint8_t* x_nhwc, int g, int p0, int rows, uint8_t fill, uint8_t* out) const {
  const ConvShape& s = p_.shape;
  const size_t run = static_cast<size_t>(cin_g_);
  // One group and no dilation along W: a kernel row's taps read kw
  // neighbouring pixels, kw * c_in contiguous bytes (fewer, filled around,
  // at the borders): one copy per kernel row instead of one per tap.
  const bool row_runs = s.group == 1 && s.dil_w == 1;
  for (int r = 0; r < rows; ++r) {
    const int p = p0 + r;
    const int oy = p / s.w_out, ox = p % s.w_out;
    uint8_t* dst = out + static_cast<int64_t>(r) * k_;
    const int ix0 = ox * s.stride_w - s.pad_left;
    for (int ky = 0; ky < s.kh; ++ky) {
      const int iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
      if (iy < 0 || iy >= s.h_in) {
        fill_run(dst, fill, run * static_cast<size_t>(s.kw));
        dst += run * static_cast<size_t>(s.kw);
        continue;
      }
      const uint8_t* row = x_nhwc + static_cast<int64_t>(iy) * s.w_in * s.c_in + g * cin_g_;
      if (row_runs) {
        const int lo = std::clamp(-ix0, 0, s.kw), hi = std::clamp(s.w_in - ix0, lo, s.kw);
        fill_run(dst, fill, run * static_cast<size_t>(lo));
        copy_run(dst + run * static_cast<size_t>(lo), row + static_cast<int64_t>(ix0 + lo) * s.c_in,
                 run * static_cast<size_t>(hi - lo));
        fill_run(dst + run * static_cast<size_t>(hi), fill, run * static_cast<size_t>(s.kw - hi));
        dst += run * static_cast<size_t>(s.kw);
        continue;
      }
      for (int kx = 0; kx < s.kw; ++kx, dst += run) {
        const int ix = ix0 + kx * s.dil_w;
        if (ix < 0 || ix >= s.w_in) {
          fill_run(dst, fill, run);
        } else {
          copy_run(dst, row + static_cast<int64_t>(ix) * s.c_in, run);
        }
      }
    }
  }
}

void QConvGemm::run_rows(const uint8_t* x, uint8_t* y, uint8_t* scratch, int slots, ThreadPool* pool,
                         const int32_t* bias, const float* mult, int32_t lo, int32_t hi) const {
  const ConvShape& s = p_.shape;
  const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
  const int64_t pixel = s.c_in;
  const int64_t padded_row = static_cast<int64_t>(padded_w_) * pixel;
  const uint8_t flip = p_.x_signed ? 0x80 : 0;
  const int blocks = static_cast<int>((hw + block_rows_ - 1) / block_rows_);
  // Padded pixel (py, px) is input pixel (py + iy_min_, px + ix_min_);
  // the input columns that exist are padded columns [px0, px1).
  const int px0 = std::clamp(-ix_min_, 0, padded_w_);
  const int px1 = std::clamp(s.w_in - ix_min_, px0, padded_w_);
  uint8_t* padded = scratch;
  for (int b = 0; b < s.batch; ++b) {
    const uint8_t* xb = x + static_cast<int64_t>(b) * s.c_in * s.h_in * s.w_in;
    uint8_t* yb = y + static_cast<int64_t>(b) * s.c_out * hw;
    parallel_for(pool, padded_h_, [&](int64_t begin, int64_t end) {
      for (int64_t py = begin; py < end; ++py) {
        uint8_t* dst = padded + py * padded_row;
        const int64_t iy = py + iy_min_;
        if (iy < 0 || iy >= s.h_in) {
          std::memset(dst, x_fill_, static_cast<size_t>(padded_row));
          continue;
        }
        const uint8_t* src = xb + (iy * s.w_in + (px0 + ix_min_)) * pixel;
        const size_t bytes = static_cast<size_t>((px1 - px0) * pixel);
        std::memset(dst, x_fill_, static_cast<size_t>(px0 * pixel));
        if (flip != 0) {
          for (size_t i = 0; i < bytes; ++i) dst[px0 * pixel + static_cast<int64_t>(i)] = src[i] ^ flip;
        } else {
          std::memcpy(dst + px0 * pixel, src, bytes);
        }
        std::memset(dst + px1 * pixel, x_fill_, static_cast<size_t>((padded_w_ - px1) * pixel));
      }
    });
    // The up to 3 bytes a last run reads past the image (met by zero rows of B).
    std::memset(padded + static_cast<int64_t>(padded_h_) * padded_row, x_fill_, 4);
    parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
      for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
        auto* rows =
            reinterpret_cast<const uint8_t**>(scratch + shared_bytes_ + static_cast<size_t>(slot) * slot_bytes_);
        int64_t begin = 0, end = 0;
        chunk_range(blocks, slots, static_cast<int>(slot), begin, end);
        for (int64_t item = begin; item < end; ++item) {
          const int p0 = static_cast<int>(item) * block_rows_;
          const int count = static_cast<int>(std::min<int64_t>(block_rows_, hw - p0));
          for (int r = 0; r < count; ++r) {
            const int p = p0 + r;
            const int oy = p / s.w_out, ox = p % s.w_out;
            rows[r] = padded + static_cast<int64_t>(oy) * s.stride_h * padded_row +
                      static_cast<int64_t>(ox) * s.stride_w * pixel;
          }
          gemm_u8s8_segments_requant(
              QGemmRowSegments{rows, count, seg_offsets_.data(), static_cast<int>(seg_offsets_.size()), seg_k_},
              x_fill_, packed_.front(),
              QGemmRequant{bias, mult, p_.y_zp, lo, hi, p_.y_signed, yb + static_cast<int64_t>(p0) * s.c_out, s.c_out});
        }
      }
    });
  }
}

void QConvGemm::run(const uint8_t* x, uint8_t* y, uint8_t* scratch, int slots, ThreadPool* pool, const int32_t* bias,
                    const float* mult, int32_t lo, int32_t hi) const {
  if (rows_) {
    run_rows(x, y, scratch, slots, pool, bias, mult, lo, hi);
    return;
  }
  const ConvShape& s = p_.shape;
  const int64_t hw_in = static_cast<int64_t>(s.h_in) * s.w_in;
  const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
  const int blocks = static_cast<int>((hw + block_rows_ - 1) / block_rows_);
  const int64_t items = static_cast<int64_t>(s.group) * blocks;
  const uint8_t flip = p_.x_signed ? 0x80 : 0;
  for (int b = 0; b < s.batch; ++b) {
    const uint8_t* xb = x + static_cast<int64_t>(b) * s.c_in * hw_in;
    uint8_t* yb = y + static_cast<int64_t>(b) * s.c_out * hw;
    const uint8_t* x_nhwc = xb;
    if (!p_.nhwc) {
      // NCHW planes -> NHWC rows, 16 channels per piece of work.
      parallel_for(pool, (s.c_in + 15) / 16, [&](int64_t begin, int64_t end) {
        const int c0 = static_cast<int>(begin * 16);
        const int c1 = static_cast<int>(std::min<int64_t>(end * 16, s.c_in));
        transpose_->run(xb + c0 * hw_in, hw_in, c1 - c0, static_cast<int>(hw_in), scratch + c0, s.c_in, flip);
      });
      x_nhwc = scratch;
    } else if (p_.x_signed) {
      const int64_t bytes = hw_in * s.c_in;
      parallel_for(pool, (bytes + 4095) / 4096, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin * 4096; i < std::min(bytes, end * 4096); ++i) scratch[i] = xb[i] ^ 0x80u;
      });
      x_nhwc = scratch;
    }
    parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
      for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
        uint8_t* mine = scratch + shared_bytes_ + static_cast<size_t>(slot) * slot_bytes_;
        uint8_t* cols = mine;
        auto* acc = reinterpret_cast<int32_t*>(mine + (direct_ ? 0 : round64(static_cast<size_t>(block_rows_) * k_)));
        uint8_t* out_rows = reinterpret_cast<uint8_t*>(acc) + round64(static_cast<size_t>(block_rows_) * cout_g_ * 4);
        int64_t begin = 0, end = 0;
        chunk_range(items, slots, static_cast<int>(slot), begin, end);
        for (int64_t item = begin; item < end; ++item) {
          const int g = static_cast<int>(item / blocks);
          const int p0 = static_cast<int>(item % blocks) * block_rows_;
          const int rows = static_cast<int>(std::min<int64_t>(block_rows_, hw - p0));
          int lda = 0;
          const uint8_t* a = a_rows(x_nhwc, g, p0, rows, x_fill_, cols, lda);
          const int mg0 = g * cout_g_;
          // Requantized straight into the output rows (NHWC) or into a block
          // that is transposed into the NCHW planes.
          uint8_t* dst = p_.nhwc ? yb + static_cast<int64_t>(p0) * s.c_out + mg0 : out_rows;
          const int64_t ldy = p_.nhwc ? s.c_out : cout_g_;
          gemm_u8s8_requant(a, lda, rows, x_fill_, packed_[static_cast<size_t>(g)],
                            QGemmRequant{bias + mg0, mult + mg0, p_.y_zp, lo, hi, p_.y_signed, dst, ldy}, acc);
          if (p_.nhwc) continue;
          transpose_->run(out_rows, cout_g_, rows, cout_g_, yb + mg0 * hw + p0, hw, 0);
        }
      }
    });
  }
}

const uint8_t* QConvGemm::a_rows(const uint8_t* x_nhwc, int g, int p0, int rows, uint8_t fill, uint8_t* cols,
                                 int& lda) const {
  if (direct_) {
    lda = p_.shape.c_in;
    return x_nhwc + static_cast<int64_t>(p0) * p_.shape.c_in + g * cin_g_;
  }
  im2col_rows(x_nhwc, g, p0, rows, fill, cols);
  lda = k_;
  return cols;
}

void QConvGemm::run_dequant(const uint8_t* x, uint8_t x_zp, float* y, uint8_t* scratch, int slots, ThreadPool* pool,
                            const FloatQuantKernel& fq, const float* mult, const float* bias, float lo, float hi,
                            float* ranges) const {
  if (rows_)
    throw Error(ErrorCode::kInvalidArgument,
                "QConvGemm::run_dequant: built for the in-place rows form (QConvParams::dequant not set)");
  const ConvShape& s = p_.shape;
  const int64_t hw_in = static_cast<int64_t>(s.h_in) * s.w_in;
  const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
  const int blocks = static_cast<int>((hw + block_rows_ - 1) / block_rows_);
  const int64_t items = static_cast<int64_t>(s.group) * blocks;
  for (int b = 0; b < s.batch; ++b) {
    const uint8_t* xb = x + static_cast<int64_t>(b) * s.c_in * hw_in;
    float* yb = y + static_cast<int64_t>(b) * s.c_out * hw;
    const uint8_t* x_nhwc = xb;
    if (!p_.nhwc) {
      parallel_for(pool, (s.c_in + 15) / 16, [&](int64_t begin, int64_t end) {
        const int c0 = static_cast<int>(begin * 16);
        const int c1 = static_cast<int>(std::min<int64_t>(end * 16, s.c_in));
        transpose_->run(xb + c0 * hw_in, hw_in, c1 - c0, static_cast<int>(hw_in), scratch + c0, s.c_in, 0);
      });
      x_nhwc = scratch;
    }
    parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
      for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
        uint8_t* mine = scratch + shared_bytes_ + static_cast<size_t>(slot) * slot_bytes_;
        uint8_t* cols = mine;
        auto* acc = reinterpret_cast<int32_t*>(mine + (direct_ ? 0 : round64(static_cast<size_t>(block_rows_) * k_)));
        int64_t begin = 0, end = 0;
        chunk_range(items, slots, static_cast<int>(slot), begin, end);
        for (int64_t item = begin; item < end; ++item) {
          const int g = static_cast<int>(item / blocks);
          const int p0 = static_cast<int>(item % blocks) * block_rows_;
          const int rows = static_cast<int>(std::min<int64_t>(block_rows_, hw - p0));
          int lda = 0;
          const uint8_t* a = a_rows(x_nhwc, g, p0, rows, x_zp, cols, lda);
          const int mg0 = g * cout_g_;
          gemm_u8s8_s32(a, lda, rows, x_zp, packed_[static_cast<size_t>(g)], acc, cout_g_);
          const float* fbias = bias != nullptr ? bias + mg0 : nullptr;
          if (!p_.nhwc) {
            float* out = yb + static_cast<int64_t>(mg0) * hw + p0;
            fq.dequant_t(DequantRowsArgs{acc, cout_g_, rows, cout_g_, nullptr, mult + mg0, fbias, lo, hi, out, hw},
                         ranges != nullptr ? ranges + 4 * slot : nullptr);
            continue;
          }
          // NHWC: the block's rows are output rows (the group's columns of them).
          float* out = yb + static_cast<int64_t>(p0) * s.c_out + mg0;
          fq.dequant(DequantRowsArgs{acc, cout_g_, rows, cout_g_, nullptr, mult + mg0, fbias, lo, hi, out, s.c_out});
          if (ranges == nullptr) continue;
          float* r = ranges + 4 * slot;
          const bool whole = s.group == 1;  // the block is rows * c_out contiguous floats
          for (int i = 0; i < (whole ? 1 : rows); ++i) {
            float l = 0.0f, h = 0.0f;
            if (!fq.range(out + static_cast<int64_t>(i) * s.c_out, whole ? int64_t{rows} * s.c_out : cout_g_, &l, &h)) {
              r[2] = 1.0f;
              continue;
            }
            r[0] = std::min(r[0], l);
            r[1] = std::max(r[1], h);
          }
        }
      }
    });
  }
}

}  // namespace kvant
