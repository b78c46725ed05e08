// FP32 GEMM micro-kernel sgemm_f32_avx2_6x16 (sgemm_kernels.h has the
// contract): 6 rows x 16 columns = 12 ymm accumulators, 2 for the B row,
// 1 for the broadcast A element. Tiles of at most 8 columns use only the left
// ymm, with the same FMAs and epilogue as the full tile's first vector, so a
// column's result does not depend on the tile holding it. A partial tile goes
// through a 16-wide buffer so that the vector epilogue is the only one.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "kernels/sgemm_kernels.h"

namespace kvant {
namespace {

// NV: 1 or 2 ymm per row; DIRECT: A row-major (a_ld) instead of packed;
// ROWS: B rows through the row table (t.b_rows) instead of b_stride apart.
template <int MR, int NV, bool DIRECT, bool ROWS>
void tile(const SgemmTile& t, const SgemmEpilogue& ep) {
  constexpr int kWidth = 8 * NV;
  __m256 acc[MR][NV];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_setzero_ps();
  }
  const float* a = t.a;
  const float* b = t.b;
  const int64_t bs = t.b_stride;
  const int64_t* rows = t.b_rows;
  const int64_t lda = t.a_ld;
  const int kl = t.kl;  // a local: the loop must not reload it through t
  const float* pf = t.prefetch;
  const int pf_k = t.prefetch_lines < kl ? t.prefetch_lines : kl;
  // One k step; the first pf_k steps also prefetch a line (two loops, so
  // that the others carry no test).
  auto step = [&](int k) __attribute__((always_inline)) {
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = _mm256_loadu_ps((ROWS ? t.b + rows[k] : b) + 8 * v);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(DIRECT ? a + r * lda + k : a + r);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);
    }
    if (!DIRECT) a += kSgemmMr;
    if (!ROWS) b += bs;
  };
  int k = 0;
  for (; k < pf_k; ++k) {
    _mm_prefetch(reinterpret_cast<const char*>(pf + 16 * k), _MM_HINT_T1);
    step(k);
  }
  for (; k < kl; ++k) step(k);

  alignas(32) float buf[MR * kWidth];
  alignas(32) float bias_buf[kWidth];
  float* out = t.c;
  int64_t ldo = t.ldc;
  const float* bias = ep.bias;
  const float* res = ep.residual;
  int64_t res_ld = ep.residual_ld;
  alignas(32) float res_buf[MR * kWidth];
  const int nr = t.nr;
  if (nr < kWidth) {
    out = buf;
    ldo = kWidth;
    std::memset(buf, 0, sizeof(buf));
    if (ep.load_c) {
      for (int r = 0; r < MR; ++r)
        std::memcpy(buf + r * kWidth, t.c + r * t.ldc, static_cast<size_t>(nr) * sizeof(float));
    }
    if (bias != nullptr) {
      std::memset(bias_buf, 0, sizeof(bias_buf));
      std::memcpy(bias_buf, bias, static_cast<size_t>(nr) * sizeof(float));
      bias = bias_buf;
    }
    if (res != nullptr) {
      std::memset(res_buf, 0, sizeof(res_buf));
      for (int r = 0; r < MR; ++r)
        std::memcpy(res_buf + r * kWidth, res + r * res_ld, static_cast<size_t>(nr) * sizeof(float));
      res = res_buf;
      res_ld = kWidth;
    }
  }
  const __m256 alpha = _mm256_set1_ps(ep.alpha);
  const __m256 beta = _mm256_set1_ps(ep.beta);
  const __m256 lo = _mm256_set1_ps(ep.lo);
  const __m256 hi = _mm256_set1_ps(ep.hi);
  __m256 bias_v[NV];
#pragma GCC unroll 2
  for (int v = 0; v < NV; ++v) bias_v[v] = bias != nullptr ? _mm256_loadu_ps(bias + 8 * v) : _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    float* row = out + r * ldo;
    const __m256 rb = ep.row_bias != nullptr ? _mm256_broadcast_ss(ep.row_bias + r) : _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      __m256 x = _mm256_mul_ps(alpha, acc[r][v]);
      if (ep.load_c) x = _mm256_fmadd_ps(beta, _mm256_loadu_ps(row + 8 * v), x);
      if (bias != nullptr) x = _mm256_add_ps(x, bias_v[v]);
      if (ep.row_bias != nullptr) x = _mm256_add_ps(x, rb);
      if (res != nullptr) x = _mm256_add_ps(x, _mm256_loadu_ps(res + r * res_ld + 8 * v));
      if (ep.act != SgemmActivation::Kind::kNone) x = _mm256_max_ps(x, lo);
      if (ep.act == SgemmActivation::Kind::kClip) x = _mm256_min_ps(x, hi);
      _mm256_storeu_ps(row + 8 * v, x);
    }
  }
  if (nr < kWidth) {
    for (int r = 0; r < MR; ++r)
      std::memcpy(t.c + r * t.ldc, buf + r * kWidth, static_cast<size_t>(nr) * sizeof(float));
  }
}

template <int NV, bool DIRECT, bool ROWS>
void by_rows(const SgemmTile& t, const SgemmEpilogue& ep) {
  switch (t.mr) {
    case 1: return tile<1, NV, DIRECT, ROWS>(t, ep);
    case 2: return tile<2, NV, DIRECT, ROWS>(t, ep);
    case 3: return tile<3, NV, DIRECT, ROWS>(t, ep);
    case 4: return tile<4, NV, DIRECT, ROWS>(t, ep);
    case 5: return tile<5, NV, DIRECT, ROWS>(t, ep);
    default: return tile<6, NV, DIRECT, ROWS>(t, ep);
  }
}

// The narrow tail: NR (<= 4) columns of P 6-row panels, one ymm per (panel,
// column) holding the panel's 6 rows in lanes 0-5: per k, P masked loads of
// A, NR broadcasts of B, P x NR FMAs (the tile's fma(a, b, acc), operands
// swapped: the same bits). rows: rows of these panels to store (<= 6 P).
template <int NR, int P>
void narrow_panels(const SgemmTile& t, const SgemmEpilogue& ep, const float* a, int row0, int rows) {
  const __m256i mask6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
  __m256 acc[P][NR];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) acc[p][j] = _mm256_setzero_ps();
  }
  const int kl = t.kl;
  const int64_t a_panel = t.a_panel;
  const float* b = t.b;
  const int64_t bs = t.b_stride;
  const int64_t* b_rows = t.b_rows;
  for (int k = 0; k < kl; ++k) {
    const float* bk = b_rows != nullptr ? t.b + b_rows[k] : b + k * bs;
    __m256 bv[NR];
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) bv[j] = _mm256_broadcast_ss(bk + j);
#pragma GCC unroll 8
    for (int p = 0; p < P; ++p) {
      const __m256 av = _mm256_maskload_ps(a + p * a_panel + k * kSgemmMr, mask6);
#pragma GCC unroll 4
      for (int j = 0; j < NR; ++j) acc[p][j] = _mm256_fmadd_ps(bv[j], av, acc[p][j]);
    }
  }
  // The tile's epilogue, element by element (vmaxps / vminps: the bound
  // when v is NaN).
  // (Every accumulator stored at once, fully unrolled, so that they stay
  // in registers through the k loop.)
  alignas(32) float v8s[P][NR][8];
#pragma GCC unroll 8
  for (int p = 0; p < P; ++p) {
#pragma GCC unroll 4
    for (int j = 0; j < NR; ++j) _mm256_store_ps(v8s[p][j], acc[p][j]);
  }
  for (int p = 0; p < P; ++p) {
    const float(&v8)[NR][8] = v8s[p];
    for (int r = 0; r < kSgemmMr && p * kSgemmMr + r < rows; ++r) {
      const int row = row0 + p * kSgemmMr + r;
      float* crow = t.c + static_cast<int64_t>(row) * t.ldc;
      for (int j = 0; j < NR; ++j) {
        float v = ep.alpha * v8[j][r];
        if (ep.load_c) v = std::fma(ep.beta, crow[j], v);
        if (ep.bias != nullptr) v += ep.bias[j];
        if (ep.row_bias != nullptr) v += ep.row_bias[row];
        if (ep.residual != nullptr) v += ep.residual[static_cast<int64_t>(row) * ep.residual_ld + j];
        if (ep.act != SgemmActivation::Kind::kNone) v = v > ep.lo ? v : ep.lo;
        if (ep.act == SgemmActivation::Kind::kClip) v = v < ep.hi ? v : ep.hi;
        crow[j] = v;
      }
    }
  }
}

template <int NR>
void narrow(const SgemmTile& t, const SgemmEpilogue& ep) {
  // Panels per pass: accumulators, NR broadcasts, the A vector and the
  // mask within the 16 ymm registers (more spill to the stack); each
  // divides the driver's 12-panel chunks.
  constexpr int kP = NR <= 2 ? 6 : NR == 3 ? 3 : 2;
  const int panels = (t.mr + kSgemmMr - 1) / kSgemmMr;
  int p = 0;
  for (; p + kP <= panels; p += kP) {
    narrow_panels<NR, kP>(t, ep, t.a + p * t.a_panel, p * kSgemmMr, t.mr - p * kSgemmMr);
  }
  for (; p < panels; ++p) narrow_panels<NR, 1>(t, ep, t.a + p * t.a_panel, p * kSgemmMr, t.mr - p * kSgemmMr);
}

}  // namespace

void sgemm_narrow_avx2(const SgemmTile& t, const SgemmEpilogue& ep) {
  switch (t.nr) {
    case 1: return narrow<1>(t, ep);
    case 2: return narrow<2>(t, ep);
    case 3: return narrow<3>(t, ep);
    default: return narrow<4>(t, ep);
  }
}

void sgemm_tile_avx2(const SgemmTile& t, const SgemmEpilogue& ep) {
  if (t.b_rows != nullptr) {  // packed A only (the conv's weight)
    return t.nr <= 8 ? by_rows<1, false, true>(t, ep) : by_rows<2, false, true>(t, ep);
  }
  const bool direct = t.a_ld > 0;
  if (t.nr <= 8) return direct ? by_rows<1, true, false>(t, ep) : by_rows<1, false, false>(t, ep);
  return direct ? by_rows<2, true, false>(t, ep) : by_rows<2, false, false>(t, ep);
}

}  // namespace kvant
