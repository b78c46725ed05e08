// Resize's filter passes: the scalar entry and the table (resize_filter.h).
#include "kernels/resize_filter.h"

#include "kernels/kernel_table.h"

namespace kvant {

void resize_h_pass_generic(const float* const* rows, const double* w, int taps, double* t, int64_t n) {
  for (int64_t i = 0; i < n; ++i) t[i] = 0.0;
  for (int k = 0; k < taps; ++k) {
    const float* src = rows[k];
    const double wk = w[k];
    for (int64_t i = 0; i < n; ++i) t[i] += wk * static_cast<double>(src[i]);
  }
}

void resize_w_pass_generic(const double* t, const int64_t* idx, const double* w, int taps, float* y, int64_t m,
                           const int64_t* /*base*/, const int32_t* /*ctrl*/) {
  for (int64_t o = 0; o < m; ++o) {
    double acc = 0.0;
    for (int k = 0; k < taps; ++k) acc += w[k * m + o] * t[idx[k * m + o]];
    y[o] = static_cast<float>(acc);
  }
}

namespace {

// Best first (kernel_table.h).
constexpr ResizeFilterKernel kResizeFilterKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx2, "resize_filter_avx2", resize_h_pass_avx2, resize_w_pass_avx2},
#endif
    {Isa::kRef, "resize_filter_generic", resize_h_pass_generic, resize_w_pass_generic},
};

}  // namespace

std::span<const ResizeFilterKernel> resize_filter_kernels() { return kResizeFilterKernels; }

const ResizeFilterKernel& resize_filter_pick(Isa allowed) {
  return *pick_kernel(resize_filter_kernels(), allowed, [](const ResizeFilterKernel&) { return true; });
}

}  // namespace kvant
