// FP32 channels-last pooling: the table, the portable entry and the driver
// (divisor counts once per shape, rows split over the pool). The math is in
// pool_nhwc.h.
#include "kernels/pool_nhwc.h"

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>

#include "kernels/kernel_table.h"
#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

// Best first (kernel_table.h).
constexpr PoolNhwcKernel kPoolNhwcKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx2, "pool_nhwc_f32_avx2", maxpool_nhwc_rows_avx2, avgpool_nhwc_rows_avx2},
#endif
    {Isa::kRef, "pool_nhwc_f32_generic", maxpool_nhwc_rows_generic, avgpool_nhwc_rows_generic},
};

// The taps [lo, hi) of one axis whose input position o * stride - pad + t *
// dil lies in [0, in) (contiguous: the position grows with t).
inline void tap_range(int o, int stride, int pad, int dil, int k, int in, int& lo, int& hi) {
  const int start = o * stride - pad;
  lo = 0;
  while (lo < k && start + lo * dil < 0) ++lo;
  hi = k;
  while (hi > lo && start + (hi - 1) * dil >= in) --hi;
}

template <bool kAverage>
void pool_rows_generic(const PoolNhwcRows& r) {
  const ptrdiff_t c = r.c;
  for (int oy = r.oy0; oy < r.oy1; ++oy) {
    int ky0, ky1;
    tap_range(oy, r.sh, r.pad_top, r.dh, r.kh, r.h_in, ky0, ky1);
    for (int ox = 0; ox < r.w_out; ++ox) {
      int kx0, kx1;
      tap_range(ox, r.sw, r.pad_left, r.dw, r.kw, r.w_in, kx0, kx1);
      float* out = r.out + (static_cast<ptrdiff_t>(oy) * r.w_out + ox) * c;
      const bool any = ky0 < ky1 && kx0 < kx1;
      float divisor = 0.0f;
      if constexpr (kAverage) divisor = static_cast<float>(static_cast<int64_t>(r.row_count[oy]) * r.col_count[ox]);
      for (ptrdiff_t ch = 0; ch < c; ++ch) {
        float acc = kAverage ? 0.0f : -std::numeric_limits<float>::infinity();
        bool first = true;
        for (int ky = ky0; ky < ky1 && any; ++ky) {
          const int iy = oy * r.sh - r.pad_top + ky * r.dh;
          for (int kx = kx0; kx < kx1; ++kx) {
            const int ix = ox * r.sw - r.pad_left + kx * r.dw;
            const float v = r.x[(static_cast<ptrdiff_t>(iy) * r.w_in + ix) * c + ch];
            if constexpr (kAverage) {
              acc += v;
            } else {
              acc = first || v > acc ? v : acc;
              first = false;
            }
          }
        }
        if constexpr (kAverage) acc = divisor > 0.0f ? acc / divisor : 0.0f;
        out[ch] = acc;
      }
    }
  }
}

[[noreturn]] void invalid(const std::string& what) { throw Error(ErrorCode::kInvalidArgument, "PoolNhwc: " + what); }

}  // namespace

std::span<const PoolNhwcKernel> pool_nhwc_kernels() { return kPoolNhwcKernels; }

void maxpool_nhwc_rows_generic(const PoolNhwcRows& r) { pool_rows_generic<false>(r); }
void avgpool_nhwc_rows_generic(const PoolNhwcRows& r) { pool_rows_generic<true>(r); }

PoolNhwc::PoolNhwc(const PoolNhwcShape& shape, bool average, bool count_include_pad, Isa allowed)
    : shape_(shape), average_(average) {
  const PoolNhwcShape& s = shape_;
  if (s.batch < 1 || s.c < 1 || s.h_in < 1 || s.w_in < 1 || s.h_out < 1 || s.w_out < 1 || s.kh < 1 || s.kw < 1 ||
      s.stride_h < 1 || s.stride_w < 1 || s.dil_h < 1 || s.dil_w < 1) {
    invalid("sizes, kernel, strides and dilations must be at least 1");
  }
  if (s.pad_top < 0 || s.pad_left < 0 || s.pad_bottom < 0 || s.pad_right < 0) invalid("pads must not be negative");
  kernel_ = pick_kernel(pool_nhwc_kernels(), allowed, [](const PoolNhwcKernel&) { return true; });
  if (!average_) return;
  // Divisor factors: per axis, the taps inside the input, or with
  // count_include_pad inside [-pad_begin, in + pad_end) (the overhang of
  // ceil_mode past the end pad never counts).
  auto count = [&](std::vector<int32_t>& v, int out, int stride, int pad, int pad_end, int dil, int k, int in) {
    v.assign(static_cast<size_t>(out), 0);
    for (int o = 0; o < out; ++o) {
      for (int t = 0; t < k; ++t) {
        const int at = o * stride - pad + t * dil;
        const bool counts = count_include_pad ? at >= -pad && at < in + pad_end : at >= 0 && at < in;
        v[static_cast<size_t>(o)] += counts ? 1 : 0;
      }
    }
  };
  count(rows_, s.h_out, s.stride_h, s.pad_top, s.pad_bottom, s.dil_h, s.kh, s.h_in);
  count(cols_, s.w_out, s.stride_w, s.pad_left, s.pad_right, s.dil_w, s.kw, s.w_in);
}

void PoolNhwc::run(const float* x, float* y, ThreadPool* pool) const {
  const PoolNhwcShape& s = shape_;
  PoolNhwcRows base;
  base.c = s.c;
  base.h_in = s.h_in;
  base.w_in = s.w_in;
  base.h_out = s.h_out;
  base.w_out = s.w_out;
  base.kh = s.kh;
  base.kw = s.kw;
  base.sh = s.stride_h;
  base.sw = s.stride_w;
  base.dh = s.dil_h;
  base.dw = s.dil_w;
  base.pad_top = s.pad_top;
  base.pad_left = s.pad_left;
  base.row_count = rows_.data();
  base.col_count = cols_.data();
  const ptrdiff_t in_image = static_cast<ptrdiff_t>(s.h_in) * s.w_in * s.c;
  const ptrdiff_t out_image = static_cast<ptrdiff_t>(s.h_out) * s.w_out * s.c;
  // Blocks of output rows: a few per thread, at least 4 rows of work each.
  const int64_t rows = static_cast<int64_t>(s.batch) * s.h_out;
  constexpr int kRowsPerTask = 4;
  const int64_t tasks = (rows + kRowsPerTask - 1) / kRowsPerTask;
  auto* const fn = average_ ? kernel_->avg_rows : kernel_->max_rows;
  parallel_for(pool, tasks, [&](int64_t t0, int64_t t1) {
    for (int64_t r = t0 * kRowsPerTask; r < std::min(rows, t1 * kRowsPerTask);) {
      const int64_t b = r / s.h_out;
      const int oy0 = static_cast<int>(r % s.h_out);
      const int oy1 = static_cast<int>(std::min<int64_t>(s.h_out, oy0 + std::min(rows, t1 * kRowsPerTask) - r));
      PoolNhwcRows a = base;
      a.x = x + b * in_image;
      a.out = y + b * out_image;
      a.oy0 = oy0;
      a.oy1 = oy1;
      fn(a);
      r += oy1 - oy0;
    }
  });
}

}  // namespace kvant
