// FP32 GEMM: reference, packing, the blocked driver and its two micro-kernels
// (portable C++ and AVX2+FMA). The layout and loop nest are described in
// sgemm.h.
//
// Micro-kernel contract: acc[MR x 16] = sum_k a[k * 6 + r] * b[k * b_stride + j]
// over the K block, then for the r < mr, j < nr elements of the tile
//   v = alpha * acc;  if load_c: v += beta * C;  v += bias[j];  v = act(v)
// where the driver passes beta = 1 and no bias/act for all but the first/last
// K block, so C carries the partial sums between K blocks.
#include "kernels/sgemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

constexpr int kMc = 144;   // M block: 144 x 256 floats of packed A = 144 KiB (L2)
constexpr int kNc = 2048;  // N block: 256 x 2048 floats of packed B = 2 MiB (L3)

struct Epilogue {
  float alpha = 1.0f;
  float beta = 0.0f;  // read only when load_c
  bool load_c = false;
  const float* bias = nullptr;      // the tile's first column; nr values
  const float* row_bias = nullptr;  // the tile's first row; mr values (one per row)
  SgemmActivation::Kind act = SgemmActivation::Kind::kNone;
  float lo = 0.0f;
  float hi = 0.0f;
};

using MicroKernel = void (*)(int mr, int kl, const float* a, const float* b, int b_stride, float* c, int ldc, int nr,
                             const Epilogue& ep);

// ---- portable micro-kernel ----

template <int MR>
void tile_generic(int kl, const float* a, const float* b, int b_stride, float* c, int ldc, int nr, const Epilogue& ep) {
  float acc[MR][kSgemmNr] = {};
  for (int k = 0; k < kl; ++k) {
    const float* bk = b + static_cast<size_t>(k) * static_cast<size_t>(b_stride);
    for (int r = 0; r < MR; ++r) {
      const float av = a[k * kSgemmMr + r];
      for (int j = 0; j < kSgemmNr; ++j) acc[r][j] += av * bk[j];
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* row = c + static_cast<size_t>(r) * static_cast<size_t>(ldc);
    for (int j = 0; j < nr; ++j) {
      float v = ep.alpha * acc[r][j];
      if (ep.load_c) v += ep.beta * row[j];
      if (ep.bias != nullptr) v += ep.bias[j];
      if (ep.row_bias != nullptr) v += ep.row_bias[r];
      if (ep.act == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
      if (ep.act == SgemmActivation::Kind::kClip) v = std::min(std::max(v, ep.lo), ep.hi);
      row[j] = v;
    }
  }
}

void kernel_generic(int mr, int kl, const float* a, const float* b, int b_stride, float* c, int ldc, int nr,
                    const Epilogue& ep) {
  switch (mr) {
    case 1: return tile_generic<1>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 2: return tile_generic<2>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 3: return tile_generic<3>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 4: return tile_generic<4>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 5: return tile_generic<5>(kl, a, b, b_stride, c, ldc, nr, ep);
    default: return tile_generic<6>(kl, a, b, b_stride, c, ldc, nr, ep);
  }
}

// ---- AVX2 + FMA micro-kernel: 6 x 16 = 12 ymm accumulators, 2 for B, 1 for A ----

template <int MR>
__attribute__((target("avx2,fma"))) void tile_avx2(int kl, const float* a, const float* b, int b_stride, float* c,
                                                   int ldc, int nr, const Epilogue& ep) {
  __m256 acc0[MR];
  __m256 acc1[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    acc0[r] = _mm256_setzero_ps();
    acc1[r] = _mm256_setzero_ps();
  }
  const size_t bs = static_cast<size_t>(b_stride);
  for (int k = 0; k < kl; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
    const __m256 b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      acc0[r] = _mm256_fmadd_ps(av, b0, acc0[r]);
      acc1[r] = _mm256_fmadd_ps(av, b1, acc1[r]);
    }
    a += kSgemmMr;
    b += bs;
  }

  // A partial tile goes through a 16-wide buffer so the vector epilogue
  // below is the only one (same rounding for every tile).
  alignas(32) float buf[MR * kSgemmNr];
  alignas(32) float bias_buf[kSgemmNr];
  float* out = c;
  size_t ldo = static_cast<size_t>(ldc);
  const float* bias = ep.bias;
  if (nr < kSgemmNr) {
    out = buf;
    ldo = kSgemmNr;
    std::memset(buf, 0, sizeof(buf));
    if (ep.load_c) {
      for (int r = 0; r < MR; ++r)
        std::memcpy(buf + r * kSgemmNr, c + static_cast<size_t>(r) * ldc, nr * sizeof(float));
    }
    if (bias != nullptr) {
      std::memset(bias_buf, 0, sizeof(bias_buf));
      std::memcpy(bias_buf, bias, static_cast<size_t>(nr) * sizeof(float));
      bias = bias_buf;
    }
  }
  const __m256 alpha = _mm256_set1_ps(ep.alpha);
  const __m256 beta = _mm256_set1_ps(ep.beta);
  const __m256 lo = _mm256_set1_ps(ep.act == SgemmActivation::Kind::kRelu ? 0.0f : ep.lo);
  const __m256 hi = _mm256_set1_ps(ep.hi);
  __m256 bias0 = _mm256_setzero_ps();
  __m256 bias1 = _mm256_setzero_ps();
  if (bias != nullptr) {
    bias0 = _mm256_loadu_ps(bias);
    bias1 = _mm256_loadu_ps(bias + 8);
  }
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    float* row = out + r * ldo;
    __m256 v0 = _mm256_mul_ps(alpha, acc0[r]);
    __m256 v1 = _mm256_mul_ps(alpha, acc1[r]);
    if (ep.load_c) {
      v0 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(row), v0);
      v1 = _mm256_fmadd_ps(beta, _mm256_loadu_ps(row + 8), v1);
    }
    if (bias != nullptr) {
      v0 = _mm256_add_ps(v0, bias0);
      v1 = _mm256_add_ps(v1, bias1);
    }
    if (ep.row_bias != nullptr) {
      const __m256 rb = _mm256_broadcast_ss(ep.row_bias + r);
      v0 = _mm256_add_ps(v0, rb);
      v1 = _mm256_add_ps(v1, rb);
    }
    if (ep.act != SgemmActivation::Kind::kNone) {
      v0 = _mm256_max_ps(v0, lo);
      v1 = _mm256_max_ps(v1, lo);
    }
    if (ep.act == SgemmActivation::Kind::kClip) {
      v0 = _mm256_min_ps(v0, hi);
      v1 = _mm256_min_ps(v1, hi);
    }
    _mm256_storeu_ps(row, v0);
    _mm256_storeu_ps(row + 8, v1);
  }
  if (nr < kSgemmNr) {
    for (int r = 0; r < MR; ++r) std::memcpy(c + static_cast<size_t>(r) * ldc, buf + r * kSgemmNr, nr * sizeof(float));
  }
}

// The left 8 columns only, for tiles with nr <= 8: the same FMAs and
// epilogue as tile_avx2's first vector, so each element comes out bit-identical
// to tile_avx2's (a column's result does not depend on the tile holding it).
template <int MR>
__attribute__((target("avx2,fma"))) void tile_avx2_half(int kl, const float* a, const float* b, int b_stride, float* c,
                                                        int ldc, int nr, const Epilogue& ep) {
  __m256 acc[MR];
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) acc[r] = _mm256_setzero_ps();
  const size_t bs = static_cast<size_t>(b_stride);
  for (int k = 0; k < kl; ++k) {
    const __m256 b0 = _mm256_loadu_ps(b);
#pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) acc[r] = _mm256_fmadd_ps(_mm256_broadcast_ss(a + r), b0, acc[r]);
    a += kSgemmMr;
    b += bs;
  }
  alignas(32) float buf[MR * 8];
  alignas(32) float bias_buf[8] = {};
  float* out = c;
  size_t ldo = static_cast<size_t>(ldc);
  const float* bias = ep.bias;
  if (nr < 8) {
    out = buf;
    ldo = 8;
    std::memset(buf, 0, sizeof(buf));
    if (ep.load_c) {
      for (int r = 0; r < MR; ++r) std::memcpy(buf + r * 8, c + static_cast<size_t>(r) * ldc, nr * sizeof(float));
    }
    if (bias != nullptr) {
      std::memcpy(bias_buf, bias, static_cast<size_t>(nr) * sizeof(float));
      bias = bias_buf;
    }
  }
  const __m256 alpha = _mm256_set1_ps(ep.alpha);
  const __m256 beta = _mm256_set1_ps(ep.beta);
  const __m256 lo = _mm256_set1_ps(ep.act == SgemmActivation::Kind::kRelu ? 0.0f : ep.lo);
  const __m256 hi = _mm256_set1_ps(ep.hi);
  const __m256 bias0 = bias != nullptr ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
#pragma GCC unroll 6
  for (int r = 0; r < MR; ++r) {
    float* row = out + r * ldo;
    __m256 v = _mm256_mul_ps(alpha, acc[r]);
    if (ep.load_c) v = _mm256_fmadd_ps(beta, _mm256_loadu_ps(row), v);
    if (bias != nullptr) v = _mm256_add_ps(v, bias0);
    if (ep.row_bias != nullptr) v = _mm256_add_ps(v, _mm256_broadcast_ss(ep.row_bias + r));
    if (ep.act != SgemmActivation::Kind::kNone) v = _mm256_max_ps(v, lo);
    if (ep.act == SgemmActivation::Kind::kClip) v = _mm256_min_ps(v, hi);
    _mm256_storeu_ps(row, v);
  }
  if (nr < 8) {
    for (int r = 0; r < MR; ++r) std::memcpy(c + static_cast<size_t>(r) * ldc, buf + r * 8, nr * sizeof(float));
  }
}

__attribute__((target("avx2,fma"))) void kernel_avx2(int mr, int kl, const float* a, const float* b, int b_stride,
                                                     float* c, int ldc, int nr, const Epilogue& ep) {
  if (nr <= 8) {
    switch (mr) {
      case 1: return tile_avx2_half<1>(kl, a, b, b_stride, c, ldc, nr, ep);
      case 2: return tile_avx2_half<2>(kl, a, b, b_stride, c, ldc, nr, ep);
      case 3: return tile_avx2_half<3>(kl, a, b, b_stride, c, ldc, nr, ep);
      case 4: return tile_avx2_half<4>(kl, a, b, b_stride, c, ldc, nr, ep);
      case 5: return tile_avx2_half<5>(kl, a, b, b_stride, c, ldc, nr, ep);
      default: return tile_avx2_half<6>(kl, a, b, b_stride, c, ldc, nr, ep);
    }
  }
  switch (mr) {
    case 1: return tile_avx2<1>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 2: return tile_avx2<2>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 3: return tile_avx2<3>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 4: return tile_avx2<4>(kl, a, b, b_stride, c, ldc, nr, ep);
    case 5: return tile_avx2<5>(kl, a, b, b_stride, c, ldc, nr, ep);
    default: return tile_avx2<6>(kl, a, b, b_stride, c, ldc, nr, ep);
  }
}

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

SgemmPath detect_path() {
  const char* isa = std::getenv("KVANT_ISA");
  const std::string_view want = isa == nullptr ? "" : isa;
  if (want == "ref") return SgemmPath::kRef;
  if (want == "generic") return SgemmPath::kGeneric;
  return cpu_has_avx2_fma() ? SgemmPath::kAvx2 : SgemmPath::kRef;
}

MicroKernel pick_kernel(SgemmPath path) {
  if (path == SgemmPath::kAvx2) {
    if (!cpu_has_avx2_fma()) throw Error(ErrorCode::kUnsupported, "sgemm: this CPU has no AVX2+FMA");
    return kernel_avx2;
  }
  return kernel_generic;
}

// ---- packing ----

using AlignedVector = std::vector<float, AlignedAllocator<float>>;

// Rows [m0, m0 + ml) x columns [k0, k0 + kl) of op(A) as 6-row panels: panel p
// holds kl x 6 floats at dst + p * kl * 6, element (r, k) at k * 6 + r. Rows of
// a last partial panel past ml are not written (kernels read only mr rows).
void pack_a(bool trans_a, const float* A, int lda, int m0, int ml, int k0, int kl, float* dst) {
  const size_t ld = static_cast<size_t>(lda);
  for (int p = 0; p < ml; p += kSgemmMr) {
    const int rows = std::min(kSgemmMr, ml - p);
    float* d = dst + static_cast<size_t>(p) * static_cast<size_t>(kl);
    if (!trans_a && rows == kSgemmMr) {
      // Six row streams in, one sequential stream out.
      const float* src[kSgemmMr];
      for (int r = 0; r < kSgemmMr; ++r) src[r] = A + static_cast<size_t>(m0 + p + r) * ld + static_cast<size_t>(k0);
      for (int k = 0; k < kl; ++k) {
        for (int r = 0; r < kSgemmMr; ++r) d[k * kSgemmMr + r] = src[r][k];
      }
    } else if (!trans_a) {
      for (int r = 0; r < rows; ++r) {
        const float* src = A + static_cast<size_t>(m0 + p + r) * ld + static_cast<size_t>(k0);
        for (int k = 0; k < kl; ++k) d[k * kSgemmMr + r] = src[k];
      }
    } else {
      for (int k = 0; k < kl; ++k) {
        const float* src = A + static_cast<size_t>(k0 + k) * ld + static_cast<size_t>(m0 + p);
        for (int r = 0; r < rows; ++r) d[k * kSgemmMr + r] = src[r];
      }
    }
  }
}

// Columns [n0, n0 + 16) x rows [k0, k0 + kl) of op(B) as one kl x 16 panel,
// zero past N.
void pack_b_panel(bool trans_b, const float* B, int ldb, int N, int n0, int k0, int kl, float* dst) {
  const size_t ld = static_cast<size_t>(ldb);
  const int cols = std::min(kSgemmNr, N - n0);
  if (!trans_b) {
    for (int k = 0; k < kl; ++k) {
      const float* src = B + static_cast<size_t>(k0 + k) * ld + static_cast<size_t>(n0);
      float* d = dst + k * kSgemmNr;
      for (int j = 0; j < cols; ++j) d[j] = src[j];
      for (int j = cols; j < kSgemmNr; ++j) d[j] = 0.0f;
    }
  } else {
    for (int j = 0; j < cols; ++j) {
      const float* src = B + static_cast<size_t>(n0 + j) * ld + static_cast<size_t>(k0);
      for (int k = 0; k < kl; ++k) dst[k * kSgemmNr + j] = src[k];
    }
    for (int k = 0; k < kl; ++k) {
      for (int j = cols; j < kSgemmNr; ++j) dst[k * kSgemmNr + j] = 0.0f;
    }
  }
}

void pack_b_into(const float* B, int K, int N, bool trans_b, int ldb, int padded_n, float* dst) {
  for (int k0 = 0; k0 < K; k0 += kSgemmKc) {
    const int kl = std::min(kSgemmKc, K - k0);
    for (int n0 = 0; n0 < N; n0 += kSgemmNr) {
      float* d = dst + static_cast<size_t>(k0) * static_cast<size_t>(padded_n) +
                 static_cast<size_t>(n0) * static_cast<size_t>(kl);
      pack_b_panel(trans_b, B, ldb, N, n0, k0, kl, d);
    }
  }
}

int round_up_16(int n) { return (n + kSgemmNr - 1) / kSgemmNr * kSgemmNr; }

// Where the driver finds B: a packed whole B, or (small M, B not transposed)
// B itself for full panels, with only the last partial panel packed.
struct BSource {
  const float* packed = nullptr;
  int padded_n = 0;
  int col0 = 0;  // packed: column of the packed B that is column 0 here (a multiple of 16)
  const float* direct = nullptr;
  int ldb = 0;
};

// C = act(alpha * op(A) B + beta * C + bias) for K == 0: op(A) B is zero.
void store_empty_product(int M, int N, float beta, float* C, int ldc, const float* bias, SgemmActivation act) {
  for (int i = 0; i < M; ++i) {
    float* row = C + static_cast<size_t>(i) * static_cast<size_t>(ldc);
    for (int j = 0; j < N; ++j) {
      float v = beta == 0.0f ? 0.0f : beta * row[j];
      if (bias != nullptr) v += bias[j];
      if (act.kind == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
      if (act.kind == SgemmActivation::Kind::kClip) v = std::min(std::max(v, act.lo), act.hi);
      row[j] = v;
    }
  }
}

void run_blocked(MicroKernel kernel, bool trans_a, int M, int N, int K, float alpha, const float* A, int lda,
                 const BSource& src, float beta, float* C, int ldc, const float* bias, SgemmActivation act) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return store_empty_product(M, N, beta, C, ldc, bias, act);
  thread_local AlignedVector a_buf;
  const size_t a_size = static_cast<size_t>(std::min(M, kMc) + kSgemmMr) * static_cast<size_t>(std::min(K, kSgemmKc));
  if (a_buf.size() < a_size) a_buf.resize(a_size);
  alignas(64) float tail_b[kSgemmKc * kSgemmNr];
  for (int n0 = 0; n0 < N; n0 += kNc) {
    const int n_end = std::min(N, n0 + kNc);
    for (int k0 = 0; k0 < K; k0 += kSgemmKc) {
      const int kl = std::min(kSgemmKc, K - k0);
      const bool first = k0 == 0;
      const bool last = k0 + kl == K;
      Epilogue ep;
      ep.alpha = alpha;
      ep.beta = first ? beta : 1.0f;
      ep.load_c = !first || beta != 0.0f;
      if (last) {
        ep.act = act.kind;
        ep.lo = act.lo;
        ep.hi = act.hi;
      }
      for (int m0 = 0; m0 < M; m0 += kMc) {
        const int ml = std::min(kMc, M - m0);
        pack_a(trans_a, A, lda, m0, ml, k0, kl, a_buf.data());
        for (int j0 = n0; j0 < n_end; j0 += kSgemmNr) {
          const int nr = std::min(kSgemmNr, N - j0);
          const float* bp = nullptr;
          int b_stride = kSgemmNr;
          if (src.packed != nullptr) {
            bp = src.packed + static_cast<size_t>(k0) * static_cast<size_t>(src.padded_n) +
                 static_cast<size_t>(src.col0 + j0) * static_cast<size_t>(kl);
          } else if (nr == kSgemmNr) {
            bp = src.direct + static_cast<size_t>(k0) * static_cast<size_t>(src.ldb) + static_cast<size_t>(j0);
            b_stride = src.ldb;
          } else {
            pack_b_panel(false, src.direct, src.ldb, N, j0, k0, kl, tail_b);
            bp = tail_b;
          }
          ep.bias = last && bias != nullptr ? bias + j0 : nullptr;
          for (int i = 0; i < ml; i += kSgemmMr) {
            kernel(std::min(kSgemmMr, ml - i), kl, a_buf.data() + static_cast<size_t>(i) * static_cast<size_t>(kl), bp,
                   b_stride, C + static_cast<size_t>(m0 + i) * static_cast<size_t>(ldc) + static_cast<size_t>(j0), ldc,
                   nr, ep);
          }
        }
      }
    }
  }
}

}  // namespace

SgemmPath sgemm_default_path() {
  static const SgemmPath path = detect_path();
  return path;
}

bool sgemm_path_supported(SgemmPath path) { return path != SgemmPath::kAvx2 || cpu_has_avx2_fma(); }

const char* sgemm_path_name(SgemmPath path) {
  switch (path) {
    case SgemmPath::kRef: return "ref";
    case SgemmPath::kGeneric: return "generic";
    case SgemmPath::kAvx2: return "avx2";
  }
  return "?";
}

void sgemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
               int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i) {
    for (int j = 0; j < N; ++j) {
      float sum = 0.0f;
      for (int k = 0; k < K; ++k) {
        const float a = trans_a ? A[static_cast<size_t>(k) * lda + i] : A[static_cast<size_t>(i) * lda + k];
        const float b = trans_b ? B[static_cast<size_t>(j) * ldb + k] : B[static_cast<size_t>(k) * ldb + j];
        sum += a * b;
      }
      float& c = C[static_cast<size_t>(i) * ldc + j];
      c = beta == 0.0f ? alpha * sum : alpha * sum + beta * c;
    }
  }
}

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc) {
  sgemm(sgemm_default_path(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm(SgemmPath path, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  if (path == SgemmPath::kRef) return sgemm_ref(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const MicroKernel kernel = pick_kernel(path);
  BSource src;
  if (!trans_b && M <= kSgemmMr) {
    // One A panel: every B element is used once, so packing B would only add
    // a pass over it.
    src.direct = B;
    src.ldb = ldb;
    run_blocked(kernel, trans_a, M, N, K, alpha, A, lda, src, beta, C, ldc, nullptr, SgemmActivation::none());
    return;
  }
  thread_local AlignedVector b_buf;
  const int padded_n = round_up_16(N);
  const size_t b_size = static_cast<size_t>(std::max(K, 0)) * static_cast<size_t>(std::max(padded_n, 0));
  if (b_buf.size() < b_size) b_buf.resize(b_size);
  pack_b_into(B, K, N, trans_b, ldb, padded_n, b_buf.data());
  src.packed = b_buf.data();
  src.padded_n = padded_n;
  run_blocked(kernel, trans_a, M, N, K, alpha, A, lda, src, beta, C, ldc, nullptr, SgemmActivation::none());
}

PackedSgemmB sgemm_pack_b(const float* B, int K, int N, bool trans_b, int ldb) {
  PackedSgemmB packed;
  packed.K = K;
  packed.N = N;
  packed.padded_n = round_up_16(N);
  if (ldb == 0) ldb = trans_b ? K : N;
  packed.data.resize(static_cast<size_t>(K) * static_cast<size_t>(packed.padded_n));
  pack_b_into(B, K, N, trans_b, ldb, packed.padded_n, packed.data.data());
  return packed;
}

void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C, int ldc,
                  const float* bias, SgemmActivation act) {
  const SgemmPath path = sgemm_default_path() == SgemmPath::kRef ? SgemmPath::kGeneric : sgemm_default_path();
  sgemm_packed(path, M, N, K, A, lda, B, C, ldc, bias, act);
}

void sgemm_packed(SgemmPath path, int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C,
                  int ldc, const float* bias, SgemmActivation act) {
  if (B.K != K || B.N != N) {
    throw Error(ErrorCode::kInvalidArgument, "sgemm_packed: B was packed as " + std::to_string(B.K) + "x" +
                                                 std::to_string(B.N) + ", called with K=" + std::to_string(K) +
                                                 " N=" + std::to_string(N));
  }
  BSource src;
  src.packed = B.data.data();
  src.padded_n = B.padded_n;
  run_blocked(pick_kernel(path), false, M, N, K, 1.0f, A, lda, src, 0.0f, C, ldc, bias, act);
}

void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C, int ldc,
                  const float* bias, SgemmActivation act, ThreadPool* pool) {
  const SgemmPath path = sgemm_default_path() == SgemmPath::kRef ? SgemmPath::kGeneric : sgemm_default_path();
  sgemm_packed(path, M, N, K, A, lda, B, C, ldc, bias, act, pool);
}

void sgemm_packed(SgemmPath path, int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C,
                  int ldc, const float* bias, SgemmActivation act, ThreadPool* pool) {
  if (pool == nullptr || pool->size() == 1 || M <= 0 || N <= 0) {
    return sgemm_packed(path, M, N, K, A, lda, B, C, ldc, bias, act);
  }
  if (B.K != K || B.N != N) sgemm_packed(path, M, N, K, A, lda, B, C, ldc, bias, act);  // throws the message
  const MicroKernel kernel = pick_kernel(path);
  const int m_panels = (M + kSgemmMr - 1) / kSgemmMr;
  const int n_panels = (N + kSgemmNr - 1) / kSgemmNr;
  // Rows when there are enough 6-row panels for every thread, else columns.
  if (m_panels >= 2 * pool->size() || m_panels >= n_panels) {
    pool->parallel_for(m_panels, [&](int64_t begin, int64_t end) {
      const int m0 = static_cast<int>(begin) * kSgemmMr;
      const int m1 = std::min(M, static_cast<int>(end) * kSgemmMr);
      BSource src;
      src.packed = B.data.data();
      src.padded_n = B.padded_n;
      run_blocked(kernel, false, m1 - m0, N, K, 1.0f, A + static_cast<size_t>(m0) * lda, lda, src, 0.0f,
                  C + static_cast<size_t>(m0) * ldc, ldc, bias, act);
    });
  } else {
    pool->parallel_for(n_panels, [&](int64_t begin, int64_t end) {
      const int n0 = static_cast<int>(begin) * kSgemmNr;
      const int n1 = std::min(N, static_cast<int>(end) * kSgemmNr);
      BSource src;
      src.packed = B.data.data();
      src.padded_n = B.padded_n;
      src.col0 = n0;
      run_blocked(kernel, false, M, n1 - n0, K, 1.0f, A, lda, src, 0.0f, C + n0, ldc,
                  bias == nullptr ? nullptr : bias + n0, act);
    });
  }
}

// ---- prepacked A ----

PackedSgemmA sgemm_pack_a(const float* A, int M, int K, int lda) {
  PackedSgemmA packed;
  packed.M = M;
  packed.K = K;
  packed.padded_m = (M + kSgemmMr - 1) / kSgemmMr * kSgemmMr;
  if (lda == 0) lda = K;
  packed.data.assign(static_cast<size_t>(K) * static_cast<size_t>(packed.padded_m), 0.0f);
  for (int k0 = 0; k0 < K; k0 += kSgemmKc) {
    const int kl = std::min(kSgemmKc, K - k0);
    pack_a(false, A, lda, 0, M, k0, kl, packed.data.data() + static_cast<size_t>(k0) * packed.padded_m);
  }
  return packed;
}

void sgemm_packed_a_block(SgemmPath path, const PackedSgemmA& A, int m0, int m1, int k0, const float* b_tile, int nc,
                          float* C, int ldc, const float* row_bias, SgemmActivation act) {
  const MicroKernel kernel = pick_kernel(path);
  const int kl = std::min(kSgemmKc, A.K - k0);
  const bool first = k0 == 0;
  const bool last = k0 + kl == A.K;
  Epilogue ep;
  ep.load_c = !first;
  ep.beta = 1.0f;
  if (last) {
    ep.act = act.kind;
    ep.lo = act.lo;
    ep.hi = act.hi;
  }
  const float* a_block = A.data.data() + static_cast<size_t>(k0) * static_cast<size_t>(A.padded_m);
  for (int i = m0; i < m1; i += kSgemmMr) {
    const int mr = std::min(kSgemmMr, m1 - i);
    ep.row_bias = last && row_bias != nullptr ? row_bias + i : nullptr;
    const float* ap = a_block + static_cast<size_t>(i) * static_cast<size_t>(kl);
    float* crow = C + static_cast<size_t>(i) * static_cast<size_t>(ldc);
    for (int j0 = 0; j0 < nc; j0 += kSgemmNr) {
      kernel(mr, kl, ap, b_tile + static_cast<size_t>(j0) * static_cast<size_t>(kl), kSgemmNr, crow + j0, ldc,
             std::min(kSgemmNr, nc - j0), ep);
    }
  }
}

void sgemm_packed_a(SgemmPath path, int M, int N, int K, const PackedSgemmA& A, const float* B, int ldb, float* C,
                    int ldc, const float* row_bias, SgemmActivation act) {
  if (A.M != M || A.K != K) {
    std::string msg = "sgemm_packed_a: A was packed as ";
    msg += std::to_string(A.M) + "x" + std::to_string(A.K) + ", called with M=" + std::to_string(M) +
           " K=" + std::to_string(K);
    throw Error(ErrorCode::kInvalidArgument, msg);
  }
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    for (int i = 0; i < M; ++i) {
      float* row = C + static_cast<size_t>(i) * ldc;
      for (int j = 0; j < N; ++j) {
        float v = row_bias == nullptr ? 0.0f : row_bias[i];
        if (act.kind == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
        if (act.kind == SgemmActivation::Kind::kClip) v = std::min(std::max(v, act.lo), act.hi);
        row[j] = v;
      }
    }
    return;
  }
  constexpr int kTile = 256;
  thread_local AlignedVector b_buf;
  if (b_buf.size() < static_cast<size_t>(kSgemmKc) * kTile) b_buf.resize(static_cast<size_t>(kSgemmKc) * kTile);
  for (int n0 = 0; n0 < N; n0 += kTile) {
    const int nc = std::min(kTile, N - n0);
    for (int k0 = 0; k0 < K; k0 += kSgemmKc) {
      const int kl = std::min(kSgemmKc, K - k0);
      for (int j0 = 0; j0 < nc; j0 += kSgemmNr) {
        pack_b_panel(false, B + n0, ldb, nc, j0, k0, kl, b_buf.data() + static_cast<size_t>(j0) * kl);
      }
      sgemm_packed_a_block(path, A, 0, M, k0, b_buf.data(), nc, C + n0, ldc, row_bias, act);
    }
  }
}

}  // namespace kvant
