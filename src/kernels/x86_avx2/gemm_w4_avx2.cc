// 4-bit-weight GEMM entries gemm_w4a32_avx2 and gemm_w4a8_avx2 (gemm_w4.h).
// W4A32: 8 codes per ymm, widened (vpmovzxbd), masked or shifted to a nibble
// and converted to float; per block the FMAs sum x * code and the adds sum x
// in 8-lane partial sums, then tot += scale * sum(x code) - scale * zero *
// sum(x), which is sum x * w up to float rounding without a subtract and a
// multiply per weight (AVX2 has no 16-entry lookup to dequantize with).
// Decode (1 row of x): 4 rows of W at a time, the block scales applied in
// vectors and the zero-point terms per 8-row group (decode()); tiles of 2 by
// 2 for 2-3 rows of x;
// blocks of 16 one row at a time. Prefill (4 rows of x or more) dequantizes
// panels of 4 x 512 weights into an L1 buffer and runs 3 x 4 dot-product
// tiles of FMAs against it (see prefill()). W4A8: kernels/gemm_w4a8_body.inc with
// vpmaddubsw pair sums added in int16, one vpmaddwd per 32 values (dot32).
#include <immintrin.h>

#include <cstddef>

#include "kernels/gemm_w4_kernels.h"

namespace kvant {
namespace {

float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

size_t param_index(const W4View& w, int row, int b) {
  return (static_cast<size_t>(row / 8) * static_cast<size_t>(w.k_blocks) + static_cast<size_t>(b)) * 8 +
         static_cast<size_t>(row % 8);
}

// tot += s * acc - (s * zero) * xsum: one block's s * sum x * (code - zero).
__m256 scale_block(const W4View& w, int row, int b, __m256 acc, __m256 xsum, __m256 tot) {
  const size_t p = param_index(w, row, b);
  const float s = w.scale[p];
  tot = _mm256_fmadd_ps(acc, _mm256_set1_ps(s), tot);
  return _mm256_fnmadd_ps(xsum, _mm256_set1_ps(s * static_cast<float>(w.zero[p])), tot);
}

// The 32 codes of chunk c of a row as floats: k..k+7, k+8..k+15 (low
// nibbles), k+16..k+23, k+24..k+31 (high nibbles).
void codes32(const uint8_t* row, int c, __m256* f) {
  const __m256i mask = _mm256_set1_epi32(15);
  const __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c * 16)));
  const __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c * 16 + 8)));
  f[0] = _mm256_cvtepi32_ps(_mm256_and_si256(v0, mask));
  f[1] = _mm256_cvtepi32_ps(_mm256_and_si256(v1, mask));
  f[2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4));
  f[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4));
}

// Blocks of 32 or more values: per block, acc = sum x * code and xsum = sum x
// (8 lanes each), then tot += s * acc - s * zero * xsum.
template <int MR, int NR>
void tile(const W4A32Args& a, int m0, int n0) {
  const W4View& w = a.w;
  const size_t row_bytes = static_cast<size_t>(w.k_padded / 2);
  const uint8_t* rows[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.codes + static_cast<size_t>(n0 + r) * row_bytes;
  const float* xs[MR];
  for (int i = 0; i < MR; ++i) xs[i] = a.x + static_cast<int64_t>(m0 + i) * a.ldx;
  __m256 tot[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int r = 0; r < NR; ++r) tot[i][r] = _mm256_setzero_ps();
  }
  const int per_block = w.block / 32;
  for (int b = 0; b < w.k_blocks; ++b) {
    __m256 acc[MR][NR], xsum[MR];
    for (int i = 0; i < MR; ++i) {
      xsum[i] = _mm256_setzero_ps();
      for (int r = 0; r < NR; ++r) acc[i][r] = _mm256_setzero_ps();
    }
    for (int c = b * per_block; c < (b + 1) * per_block; ++c) {
      const int k = c * 32;
      for (int i = 0; i < MR; ++i) {
        const float* x = xs[i] + k;
        xsum[i] =
            _mm256_add_ps(xsum[i], _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                                                 _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24))));
      }
      for (int r = 0; r < NR; ++r) {
        __m256 f[4];
        codes32(rows[r], c, f);
        for (int i = 0; i < MR; ++i) {
          const float* x = xs[i] + k;
          acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), f[0], acc[i][r]);
          acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), f[1], acc[i][r]);
          acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), f[2], acc[i][r]);
          acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), f[3], acc[i][r]);
        }
      }
    }
    for (int i = 0; i < MR; ++i) {
      for (int r = 0; r < NR; ++r) tot[i][r] = scale_block(w, n0 + r, b, acc[i][r], xsum[i], tot[i][r]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* y = a.y + static_cast<int64_t>(m0 + i) * a.ldy;
    for (int r = 0; r < NR; ++r) {
      const float s = hsum(tot[i][r]);
      y[n0 + r] = a.bias ? s + a.bias[n0 + r] : s;
    }
  }
}

// Decode (M = 1, blocks of 32 or more), NR rows of W at a time: per block
// and row two 8-lane sums of x * code (two FMA chains), then tot = fma(sum,
// scale[row, b], tot), the scale broadcast from memory; the zero-point term
// of the 8-row group, sum_b scale * zero * (sum of x over block b), is one
// vector per group (decode_group). sum x * w up to float rounding.
template <int NR>
void decode_rows(const W4A32Args& a, int n, float* out) {
  const W4View& w = a.w;
  const size_t row_bytes = static_cast<size_t>(w.k_padded / 2);
  const uint8_t* rows[NR];
  const float* sp[NR];
  __m256 tot[NR];
  for (int r = 0; r < NR; ++r) {
    rows[r] = w.codes + static_cast<size_t>(n + r) * row_bytes;
    sp[r] = w.scale + param_index(w, n + r, 0);
    tot[r] = _mm256_setzero_ps();
  }
  const int per_block = w.block / 32;
  for (int b = 0; b < w.k_blocks; ++b) {
    __m256 a0[NR], a1[NR];
    for (int r = 0; r < NR; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    for (int c = b * per_block; c < (b + 1) * per_block; ++c) {
      const float* x = a.x + c * 32;
      for (int r = 0; r < NR; ++r) {
        __m256 f[4];
        codes32(rows[r], c, f);
        a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), f[0], a0[r]);
        a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), f[1], a1[r]);
        a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), f[2], a0[r]);
        a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), f[3], a1[r]);
      }
    }
    for (int r = 0; r < NR; ++r)
      tot[r] = _mm256_fmadd_ps(_mm256_add_ps(a0[r], a1[r]), _mm256_broadcast_ss(sp[r] + b * 8), tot[r]);
  }
  for (int r = 0; r < NR; ++r) out[r] = hsum(tot[r]);
}

// Rows [n0, n1) of one 8-row group (n0 a multiple of 8); xsum[b]: the sum
// of x over block b.
void decode_group(const W4A32Args& a, int n0, int n1, const float* xsum) {
  const W4View& w = a.w;
  const float* scale = w.scale + param_index(w, n0, 0);
  const uint8_t* zero = w.zero + param_index(w, n0, 0);
  __m256 zt = _mm256_setzero_ps();
  for (int b = 0; b < w.k_blocks; ++b) {
    const __m256 z =
        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zero + b * 8))));
    zt = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(scale + b * 8), z), _mm256_set1_ps(xsum[b]), zt);
  }
  float zs[8], out[8];
  _mm256_storeu_ps(zs, zt);
  int n = n0;
  for (; n + 4 <= n1; n += 4) decode_rows<4>(a, n, out + (n - n0));
  for (; n < n1; ++n) decode_rows<1>(a, n, out + (n - n0));
  for (n = n0; n < n1; ++n) {
    const float v = out[n - n0] - zs[n - n0];
    a.y[n] = a.bias ? v + a.bias[n] : v;
  }
}

// A heap buffer owned without a standard-library template: this file is
// compiled with AVX2 flags, and an instantiation such as std::vector<float>'s
// would be a weak symbol the linker may pick for every file
// (isa_objects_have_no_weak_symbols).
struct FloatBuffer {
  explicit FloatBuffer(size_t n) : p(n > 0 ? new float[n] : nullptr) {}
  ~FloatBuffer() { delete[] p; }
  FloatBuffer(const FloatBuffer&) = delete;
  FloatBuffer& operator=(const FloatBuffer&) = delete;
  float* p;
};

void decode(const W4A32Args& a) {
  const W4View& w = a.w;
  constexpr int kStackBlocks = 2048;
  float stack[kStackBlocks];
  const FloatBuffer heap(w.k_blocks > kStackBlocks ? static_cast<size_t>(w.k_blocks) : 0);
  float* xsum = heap.p != nullptr ? heap.p : stack;
  for (int b = 0; b < w.k_blocks; ++b) {
    __m256 s = _mm256_setzero_ps();
    for (int k = b * w.block; k < (b + 1) * w.block; k += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(a.x + k));
    xsum[b] = hsum(s);
  }
  for (int n0 = a.n0; n0 < a.n1; n0 += 8) decode_group(a, n0, n0 + 8 < a.n1 ? n0 + 8 : a.n1, xsum);
}

// Blocks of 16: the two halves of each 32-value chunk are two blocks.
void row16(const W4A32Args& a, int m, int n) {
  const W4View& w = a.w;
  const uint8_t* row = w.codes + static_cast<size_t>(n) * static_cast<size_t>(w.k_padded / 2);
  const float* x = a.x + static_cast<int64_t>(m) * a.ldx;
  __m256 tot = _mm256_setzero_ps();
  for (int c = 0; c < w.k_padded / 32; ++c) {
    const float* xk = x + c * 32;
    __m256 f[4];
    codes32(row, c, f);
    const __m256 x0 = _mm256_loadu_ps(xk), x1 = _mm256_loadu_ps(xk + 8);
    const __m256 x2 = _mm256_loadu_ps(xk + 16), x3 = _mm256_loadu_ps(xk + 24);
    const __m256 lo = _mm256_fmadd_ps(x1, f[1], _mm256_mul_ps(x0, f[0]));
    const __m256 hi = _mm256_fmadd_ps(x3, f[3], _mm256_mul_ps(x2, f[2]));
    const int b = 2 * c;
    tot = scale_block(w, n, b, lo, _mm256_add_ps(x0, x1), tot);
    tot = scale_block(w, n, b + 1 < w.k_blocks ? b + 1 : b, hi, _mm256_add_ps(x2, x3), tot);
  }
  const float s = hsum(tot);
  a.y[static_cast<int64_t>(m) * a.ldy + n] = a.bias ? s + a.bias[n] : s;
}

// Prefill (M >= 4): per panel of 4 rows of W and 512 values of k, the
// panel is dequantized once into an L1 buffer, exactly as the reference
// does ((float(code) - float(zero)) * scale), and every 3 rows of x run
// against it: 12 dot products in 8-lane partial sums, x and w both loaded
// from cache, so the FMAs, not the unpacking, set the pace.
constexpr int kPanelRows = 4, kPanelK = 512;

void dequant_panel(const W4View& w, int n0, int rows, int k0, int k1, float* buf) {
  const __m256i mask = _mm256_set1_epi32(15);
  for (int r = 0; r < rows; ++r) {
    const uint8_t* row = w.codes + static_cast<size_t>(n0 + r) * static_cast<size_t>(w.k_padded / 2);
    float* out = buf + r * kPanelK;
    for (int k = k0; k < k1; k += 32) {
      const int c = k / 32;
      const int blo = k / w.block, bhi = (k + 16) / w.block < w.k_blocks ? (k + 16) / w.block : w.k_blocks - 1;
      const size_t plo = param_index(w, n0 + r, blo), phi = param_index(w, n0 + r, bhi);
      const __m256 zlo = _mm256_set1_ps(static_cast<float>(w.zero[plo])), slo = _mm256_set1_ps(w.scale[plo]);
      const __m256 zhi = _mm256_set1_ps(static_cast<float>(w.zero[phi])), shi = _mm256_set1_ps(w.scale[phi]);
      const __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c * 16)));
      const __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + c * 16 + 8)));
      float* o = out + (k - k0);
      _mm256_storeu_ps(o, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v0, mask)), zlo), slo));
      _mm256_storeu_ps(o + 8, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v1, mask)), zlo), slo));
      _mm256_storeu_ps(o + 16, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), zhi), shi));
      _mm256_storeu_ps(o + 24, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), zhi), shi));
    }
  }
}

// y[m0 .. m0+MR, n0 .. n0+NR] (+)= x[., k0:k1] . buf[., 0:k1-k0]
template <int MR, int NR>
void panel_tile(const W4A32Args& a, int m0, int n0, int k0, int k1, const float* buf, bool first) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int r = 0; r < NR; ++r) acc[i][r] = _mm256_setzero_ps();
  }
  const float* xs[MR];
  for (int i = 0; i < MR; ++i) xs[i] = a.x + static_cast<int64_t>(m0 + i) * a.ldx + k0;
  for (int k = 0; k < k1 - k0; k += 8) {
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = _mm256_loadu_ps(buf + r * kPanelK + k);
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_loadu_ps(xs[i] + k);
      for (int r = 0; r < NR; ++r) acc[i][r] = _mm256_fmadd_ps(xv, wv[r], acc[i][r]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* y = a.y + static_cast<int64_t>(m0 + i) * a.ldy + n0;
    for (int r = 0; r < NR; ++r) {
      const float s = hsum(acc[i][r]);
      y[r] = first ? s : y[r] + s;
    }
  }
}

template <int NR>
void panel_rows(const W4A32Args& a, int n0, int k0, int k1, const float* buf, bool first) {
  int m = 0;
  for (; m + 3 <= a.m; m += 3) panel_tile<3, NR>(a, m, n0, k0, k1, buf, first);
  for (; m < a.m; ++m) panel_tile<1, NR>(a, m, n0, k0, k1, buf, first);
}

void prefill(const W4A32Args& a) {
  alignas(64) float buf[kPanelRows * kPanelK];
  for (int n0 = a.n0; n0 < a.n1; n0 += kPanelRows) {
    const int rows = a.n1 - n0 < kPanelRows ? a.n1 - n0 : kPanelRows;
    for (int k0 = 0; k0 < a.w.k_padded; k0 += kPanelK) {
      const int k1 = a.w.k_padded - k0 < kPanelK ? a.w.k_padded : k0 + kPanelK;
      dequant_panel(a.w, n0, rows, k0, k1, buf);
      if (rows == kPanelRows) {
        panel_rows<kPanelRows>(a, n0, k0, k1, buf, k0 == 0);
      } else {
        for (int r = 0; r < rows; ++r) panel_rows<1>(a, n0 + r, k0, k1, buf + r * kPanelK, k0 == 0);
      }
    }
    if (a.bias != nullptr) {
      for (int m = 0; m < a.m; ++m) {
        float* y = a.y + static_cast<int64_t>(m) * a.ldy;
        for (int r = 0; r < rows; ++r) y[n0 + r] += a.bias[n0 + r];
      }
    }
  }
}

// Long prompts (M >= 16): panels of 16 rows of W x 256 k dequantized
// exactly (dequant_panel), transposed to [k][16] (8 x 8 register
// transposes), and 6 x 16 outer-product tiles against them: per k one
// broadcast x per row of x, two vectors of W rows, 12 FMAs (the FP32
// sgemm's micro-kernel shape), partial sums kept in y across k panels.
constexpr int kWideRows = 16, kWideK = 256, kWideMr = 6;

// dst[j * ldd + i] = src[i * lds + j], i, j < 8.
void transpose8(const float* src, int lds, float* dst, int ldd) {
  __m256 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_ps(dst + j * ldd, _mm256_permute2f128_ps(u[j], u[j + 4], 0x20));
    _mm256_storeu_ps(dst + (j + 4) * ldd, _mm256_permute2f128_ps(u[j], u[j + 4], 0x31));
  }
}

// y[m0 .. m0+MR, n0 .. n0+rows] (+)= x[., k0 : k0+kc] . bt[0:kc][0:rows]
template <int MR>
void wide_tile(const W4A32Args& a, int m0, int n0, int rows, int k0, int kc, const float* bt, bool first) {
  __m256 lo[MR], hi[MR];
  const float* xs[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    lo[i] = _mm256_setzero_ps();
    hi[i] = _mm256_setzero_ps();
    xs[i] = a.x + static_cast<int64_t>(m0 + i) * a.ldx + k0;
  }
  for (int k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(bt + k * kWideRows), b1 = _mm256_loadu_ps(bt + k * kWideRows + 8);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 xv = _mm256_broadcast_ss(xs[i] + k);
      lo[i] = _mm256_fmadd_ps(xv, b0, lo[i]);
      hi[i] = _mm256_fmadd_ps(xv, b1, hi[i]);
    }
  }
  alignas(32) float out[MR][kWideRows];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(out[i], lo[i]);
    _mm256_store_ps(out[i] + 8, hi[i]);
  }
  for (int i = 0; i < MR; ++i) {
    float* y = a.y + static_cast<int64_t>(m0 + i) * a.ldy + n0;
    for (int r = 0; r < rows; ++r) y[r] = first ? out[i][r] : y[r] + out[i][r];
  }
}

void wide_rows(const W4A32Args& a, int n0, int rows, int k0, int kc, const float* bt, bool first) {
  int m = 0;
  for (; m + kWideMr <= a.m; m += kWideMr) wide_tile<kWideMr>(a, m, n0, rows, k0, kc, bt, first);
  switch (a.m - m) {
    case 5: wide_tile<5>(a, m, n0, rows, k0, kc, bt, first); break;
    case 4: wide_tile<4>(a, m, n0, rows, k0, kc, bt, first); break;
    case 3: wide_tile<3>(a, m, n0, rows, k0, kc, bt, first); break;
    case 2: wide_tile<2>(a, m, n0, rows, k0, kc, bt, first); break;
    case 1: wide_tile<1>(a, m, n0, rows, k0, kc, bt, first); break;
    default: break;
  }
}

void prefill_wide(const W4A32Args& a) {
  alignas(64) float rowbuf[kWideRows * kPanelK];  // dequant_panel's layout: row r at r * kPanelK
  alignas(64) float bt[kWideK * kWideRows];
  for (int n0 = a.n0; n0 < a.n1; n0 += kWideRows) {
    const int rows = a.n1 - n0 < kWideRows ? a.n1 - n0 : kWideRows;
    for (int r = rows; r < kWideRows; ++r) {
      for (int k = 0; k < kWideK; ++k) rowbuf[r * kPanelK + k] = 0.0f;  // rows past n1 stay zero
    }
    for (int k0 = 0; k0 < a.w.k_padded; k0 += kWideK) {
      const int kc = a.w.k_padded - k0 < kWideK ? a.w.k_padded - k0 : kWideK;
      for (int q = 0; q * kPanelRows < rows; ++q) {
        const int qr = rows - q * kPanelRows < kPanelRows ? rows - q * kPanelRows : kPanelRows;
        dequant_panel(a.w, n0 + q * kPanelRows, qr, k0, k0 + kc, rowbuf + q * kPanelRows * kPanelK);
      }
      for (int k = 0; k < kc; k += 8) {
        transpose8(rowbuf + k, kPanelK, bt + k * kWideRows, kWideRows);
        transpose8(rowbuf + 8 * kPanelK + k, kPanelK, bt + k * kWideRows + 8, kWideRows);
      }
      wide_rows(a, n0, rows, k0, kc, bt, k0 == 0);
    }
    if (a.bias != nullptr) {
      for (int m = 0; m < a.m; ++m) {
        float* y = a.y + static_cast<int64_t>(m) * a.ldy;
        for (int r = 0; r < rows; ++r) y[n0 + r] += a.bias[n0 + r];
      }
    }
  }
}

void run_a32(const W4A32Args& a) {
  if (a.m >= 16) {
    prefill_wide(a);
    return;
  }
  if (a.m >= 4) {
    prefill(a);
    return;
  }
  if (a.w.block == 16) {
    for (int m = 0; m < a.m; ++m) {
      for (int n = a.n0; n < a.n1; ++n) row16(a, m, n);
    }
    return;
  }
  if (a.m == 1) {
    decode(a);
    return;
  }
  int n = a.n0;
  for (; n + 2 <= a.n1; n += 2) {
    int m = 0;
    for (; m + 2 <= a.m; m += 2) tile<2, 2>(a, m, n);
    for (; m < a.m; ++m) tile<1, 2>(a, m, n);
  }
  for (; n < a.n1; ++n) {
    int m = 0;
    for (; m + 2 <= a.m; m += 2) tile<2, 1>(a, m, n);
    for (; m < a.m; ++m) tile<1, 1>(a, m, n);
  }
}

// acc (row per dword lane) += 32 values of k of 8 interleaved rows (codes8)
// times xq[0..31]: vpmaddubsw pair sums (|c0 x0 + c1 x1| <= 2 * 15 * 127 =
// 3810) added in int16 over the 4 chunks (8 pair sums per lane, at most
// 30480 < 32767: exact), then one vpmaddwd to int32 per 32 values.
#define KVANT_W4A8_DOT32 1
int32_t load_x4(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

__m256i dot32(__m256i acc, const uint8_t* codes, const int8_t* xq) {
  const __m256i mask = _mm256_set1_epi8(15);
  __m256i s = _mm256_setzero_si256();
  for (int c = 0; c < 4; ++c) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes + c * 32));
    const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(v, mask), _mm256_set1_epi32(load_x4(xq + c * 8)));
    const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), mask),
                                            _mm256_set1_epi32(load_x4(xq + c * 8 + 4)));
    s = _mm256_add_epi16(s, _mm256_add_epi16(lo, hi));
  }
  return _mm256_add_epi32(acc, _mm256_madd_epi16(s, _mm256_set1_epi16(1)));
}

#include "kernels/gemm_w4a8_body.inc"

// The VNNI entries' arithmetic (gemm_w4a8_body.inc's own dot32 over
// dot_u8s8) with vpmaddubsw + vpmaddwd standing in for vpdpbusd (equal for
// codes 0..15 and x in -127..127), so that body runs its tests on AVX2-only
// CPUs too (gemm_w4a8_avx2_vnni_body; not a table entry).
#undef KVANT_W4A8_DOT32
namespace vnni_body {
__m256i dot_u8s8(__m256i acc, __m256i codes_u8, __m256i x_s8) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(codes_u8, x_s8), _mm256_set1_epi16(1)));
}
#include "kernels/gemm_w4a8_body.inc"
}  // namespace vnni_body

}  // namespace

void gemm_w4a32_avx2(const W4A32Args& a) { run_a32(a); }

void gemm_w4a8_avx2(const W4A8Args& a) { w4a8_run(a); }

void gemm_w4a8_avx2_vnni_body(const W4A8Args& a) { vnni_body::w4a8_run(a); }

}  // namespace kvant
