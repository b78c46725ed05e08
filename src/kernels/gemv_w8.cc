// int8-weight GEMV: the portable entry, the table and the driver (gemv_w8.h).
#include "kernels/gemv_w8.h"

#include <algorithm>

#include "kernels/gemv_w8_kernels.h"
#include "kernels/kernel_table.h"

namespace kvant {

void gemv_w8_row_generic(const GemvW8Args& a) {
  for (int n = 0; n < a.n; ++n) {
    const int8_t* row = a.w + static_cast<int64_t>(n) * a.k;
    float lanes[8] = {};
    int k = 0;
    for (; k + 8 <= a.k; k += 8) {
      for (int l = 0; l < 8; ++l) lanes[l] += a.x[k + l] * static_cast<float>(row[k + l]);
    }
    float sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for (; k < a.k; ++k) sum += a.x[k] * static_cast<float>(row[k]);
    const float v = sum * a.scale[n];
    a.y[n] = a.accumulate ? a.y[n] + v : v;
  }
}

// Per block: 8 partial sums (the AVX2 order), their sum times the block's
// scale added to the row's total.
void gemv_w8_row_blocked_generic(const GemvW8Args& a) {
  const int blocks = (a.k + a.block - 1) / a.block;
  for (int n = 0; n < a.n; ++n) {
    const int8_t* row = a.w + static_cast<int64_t>(n) * a.k;
    float total = 0.0f;
    for (int b = 0; b < blocks; ++b) {
      const int k0 = b * a.block, k1 = std::min(a.k, k0 + a.block);
      float lanes[8] = {};
      int k = k0;
      for (; k + 8 <= k1; k += 8) {
        for (int l = 0; l < 8; ++l) lanes[l] += a.x[k + l] * static_cast<float>(row[k + l]);
      }
      float sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
      for (; k < k1; ++k) sum += a.x[k] * static_cast<float>(row[k]);
      total += sum * a.scale[static_cast<int64_t>(n) * blocks + b];
    }
    a.y[n] = a.accumulate ? a.y[n] + total : total;
  }
}

namespace {

// Best first (kernel_table.h).
constexpr GemvW8Kernel kGemvW8Kernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "gemv_w8_avx512", gemv_w8_row_avx512, nullptr},
    {Isa::kAvx2, "gemv_w8_avx2", gemv_w8_row_avx2, gemv_w8_row_blocked_avx2},
#endif
    {Isa::kRef, "gemv_w8_generic", gemv_w8_row_generic, gemv_w8_row_blocked_generic},
};

}  // namespace

std::span<const GemvW8Kernel> gemv_w8_kernels() { return kGemvW8Kernels; }

const GemvW8Kernel& gemv_w8_pick(Isa allowed) {
  return *pick_kernel(gemv_w8_kernels(), allowed, [](const GemvW8Kernel&) { return true; });
}

const GemvW8Kernel& gemv_w8_blocked_pick(Isa allowed) {
  return *pick_kernel(gemv_w8_kernels(), allowed, [](const GemvW8Kernel& e) { return e.row_blocked != nullptr; });
}

const GemvW8Kernel& gemv_w8_default() {
  static const GemvW8Kernel& kernel = gemv_w8_pick(selected_isa());
  return kernel;
}

const char* gemv_w8_name(const GemvW8Kernel& kernel) { return kernel.name; }

void gemv_w8(const W8Matrix& w, const float* x, int ldx, int M, float* y, int ldy, bool accumulate) {
  gemv_w8(gemv_w8_default(), w, x, ldx, M, y, ldy, accumulate);
}

void gemv_w8(const GemvW8Kernel& kernel, const W8Matrix& w, const float* x, int ldx, int M, float* y, int ldy,
             bool accumulate) {
  GemvW8Args a;
  a.w = w.w.data();
  a.scale = w.scale.data();
  a.n = w.n;
  a.k = w.k;
  a.block = w.block;
  a.accumulate = accumulate;
  for (int m = 0; m < M; ++m) {
    a.x = x + static_cast<int64_t>(m) * ldx;
    a.y = y + static_cast<int64_t>(m) * ldy;
    (w.block > 0 ? kernel.row_blocked : kernel.row)(a);
  }
}

}  // namespace kvant
