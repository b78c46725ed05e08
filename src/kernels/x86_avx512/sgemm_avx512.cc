// FP32 GEMM micro-kernel sgemm_f32_avx512_12x32 (sgemm_kernels.h has the
// contract): 12 rows x 32 columns = 24 zmm accumulators, 2 zmm for the B row
// (two adjacent 16-column panels), 1 for the broadcast A element: 31 of the
// 32 registers. Per k: 2 B loads and 12 broadcasts feed 24 FMAs, so the two
// FMA ports, not the loads, bound it; the B panels (kl x 32 floats = 32 KiB)
// stay in L1 while row groups of A stream from L2. Rows 0-5 and 6-11 are two
// 6-row panels of packed A, or 12 rows of A read in place.
// Column tails use masks (loads of C and bias, stores), so a tile's columns
// are computed exactly as in a full tile: element results do not depend on the
// tile, and equal the AVX2 entry's (same FMA chain, same epilogue).
#include <immintrin.h>

// GCC 12 reports the _mm512_undefined_ps() inside _mm512_max_ps, _mm512_min_ps
// and _mm512_reduce_add_ps as (maybe-)uninitialized: a false positive, the
// pass-through operand is unused without a mask.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "kernels/sgemm_kernels.h"

namespace kvant {
namespace {

inline __mmask16 column_mask(int cols) {
  return cols >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (cols > 0 ? cols : 0)) - 1u);
}

// NV: 1 or 2 zmm per row; DIRECT: A row-major (a_ld) instead of packed.
template <int MR, int NV, bool DIRECT>
void tile(const SgemmTile& t, const SgemmEpilogue& ep) {
  __m512 acc[MR][NV];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  }
  const float* b = t.b;
  const int64_t bs = t.b_stride;
  const int64_t bp = t.b_panel;
  const int kl = t.kl;  // a local: the loops must not reload it through t
  const float* pf = t.prefetch;
  const int pf_k = t.prefetch_lines < kl ? t.prefetch_lines : kl;
  // One k step; the first pf_k steps also prefetch a line (two loops, so
  // that the others carry no test). A(r, k): row pointers (direct) or two
  // 6-row panels (packed).
  const float* ar[DIRECT ? MR : 1];
#pragma GCC unroll 12
  for (int r = 0; r < (DIRECT ? MR : 1); ++r) ar[r] = t.a + r * t.a_ld;
  const float* a0 = t.a;
  const float* a1 = t.a + t.a_panel;
  auto step = [&](int k) __attribute__((always_inline)) {
    __m512 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm512_loadu_ps(b + v * bp);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      __m512 av;
      if constexpr (DIRECT) {
        av = _mm512_set1_ps(ar[r][k]);
      } else {
        av = _mm512_set1_ps(r < kSgemmMr ? a0[r] : a1[r - kSgemmMr]);
      }
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
    }
    if constexpr (!DIRECT) {
      (void)k;
      a0 += kSgemmMr;
      a1 += kSgemmMr;
    }
    b += bs;
  };
  int k = 0;
  for (; k < pf_k; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * k), _MM_HINT_T1);
    step(k);
  }
  for (; k < kl; ++k) step(k);

  __mmask16 mask[NV];
  __m512 bias[NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) {
    mask[v] = column_mask(t.nr - 16 * v);
    bias[v] = ep.bias != nullptr ? _mm512_maskz_loadu_ps(mask[v], ep.bias + 16 * v) : _mm512_setzero_ps();
  }
  const __m512 alpha = _mm512_set1_ps(ep.alpha);
  const __m512 beta = _mm512_set1_ps(ep.beta);
  const __m512 lo = _mm512_set1_ps(ep.lo);
  const __m512 hi = _mm512_set1_ps(ep.hi);
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    float* row = t.c + r * t.ldc;
    const __m512 rb = ep.row_bias != nullptr ? _mm512_set1_ps(ep.row_bias[r]) : _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      __m512 x = _mm512_mul_ps(alpha, acc[r][v]);
      if (ep.load_c) x = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask[v], row + 16 * v), x);
      if (ep.bias != nullptr) x = _mm512_add_ps(x, bias[v]);
      if (ep.row_bias != nullptr) x = _mm512_add_ps(x, rb);
      if (ep.residual != nullptr) {
        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask[v], ep.residual + r * ep.residual_ld + 16 * v));
      }
      if (ep.act != SgemmActivation::Kind::kNone) x = _mm512_max_ps(x, lo);
      if (ep.act == SgemmActivation::Kind::kClip) x = _mm512_min_ps(x, hi);
      _mm512_mask_storeu_ps(row + 16 * v, mask[v], x);
    }
  }
}

template <int NV, bool DIRECT>
void by_rows(const SgemmTile& t, const SgemmEpilogue& ep) {
  switch (t.mr) {
    case 1: return tile<1, NV, DIRECT>(t, ep);
    case 2: return tile<2, NV, DIRECT>(t, ep);
    case 3: return tile<3, NV, DIRECT>(t, ep);
    case 4: return tile<4, NV, DIRECT>(t, ep);
    case 5: return tile<5, NV, DIRECT>(t, ep);
    case 6: return tile<6, NV, DIRECT>(t, ep);
    case 7: return tile<7, NV, DIRECT>(t, ep);
    case 8: return tile<8, NV, DIRECT>(t, ep);
    case 9: return tile<9, NV, DIRECT>(t, ep);
    case 10: return tile<10, NV, DIRECT>(t, ep);
    case 11: return tile<11, NV, DIRECT>(t, ep);
    default: return tile<12, NV, DIRECT>(t, ep);
  }
}

}  // namespace

void sgemm_tile_avx512(const SgemmTile& t, const SgemmEpilogue& ep) {
  const bool direct = t.a_ld > 0;
  if (t.nr <= 16) return direct ? by_rows<1, true>(t, ep) : by_rows<1, false>(t, ep);
  return direct ? by_rows<2, true>(t, ep) : by_rows<2, false>(t, ep);
}

}  // namespace kvant
