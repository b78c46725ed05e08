// Resize's separable filter passes (linear and cubic), in double with the
// reference's operations (ops/resize.cc: products weight * value, summed in
// tap order from 0.0, one rounding to float at the end), so every entry is
// bit-exact with the reference kernel:
//   h_pass  t[i] = 0 + sum_k w[k] * double(rows[k][i])           i in [0, n)
//   w_pass  y[o] = float(0 + sum_k w[k m + o] * t[idx[k m + o]])  o in [0, m)
// Tables of the W pass are planar (tap k's entries for every o, then k + 1).
// Optional windows for the vector entries: for each group g of 4 outputs
// (o = 4g .. 4g + 3) whose taps all lie in t[base[g] .. base[g] + W - 1],
// with W = 4 for 1 or 2 taps and W = 8 for more, base[g] >= 0 and
// ctrl[(g taps + k) 8 ..] picks tap k of the 4 outputs from the window:
// int32 pairs (2 off, 2 off + 1) for each output's offset off in [0, W)
// (the vpermd control within each half; off >= 4 selects the upper half).
// base[g] < 0 or base null: the taps are gathered. The generic entry
// ignores them.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

struct ResizeFilterKernel {
  Isa isa;
  const char* name;  // "resize_filter_<isa>"
  void (*h_pass)(const float* const* rows, const double* w, int taps, double* t, int64_t n);
  void (*w_pass)(const double* t, const int64_t* idx, const double* w, int taps, float* y, int64_t m,
                 const int64_t* base, const int32_t* ctrl);
};

std::span<const ResizeFilterKernel> resize_filter_kernels();
// The first entry `allowed`, the CPU and the build accept.
const ResizeFilterKernel& resize_filter_pick(Isa allowed);

// kernels/resize_filter.cc
void resize_h_pass_generic(const float* const* rows, const double* w, int taps, double* t, int64_t n);
void resize_w_pass_generic(const double* t, const int64_t* idx, const double* w, int taps, float* y, int64_t m,
                           const int64_t* base, const int32_t* ctrl);
// x86_avx2/resize_filter_avx2.cc (4 doubles a lane group; tails through the generic functions)
void resize_h_pass_avx2(const float* const* rows, const double* w, int taps, double* t, int64_t n);
void resize_w_pass_avx2(const double* t, const int64_t* idx, const double* w, int taps, float* y, int64_t m,
                        const int64_t* base, const int32_t* ctrl);

}  // namespace kvant
