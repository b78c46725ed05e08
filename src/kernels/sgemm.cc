// FP32 GEMM: reference, the micro-kernel table, packing and the blocked
// driver. The layout and loop nest are described in sgemm.h, the entries'
// contract in sgemm_kernels.h; the SIMD micro-kernels live in the per-ISA
// folders (x86_avx2/sgemm_avx2.cc, x86_avx512/sgemm_avx512.cc).
#include "kernels/sgemm.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/kernel_table.h"
#include "kernels/sgemm_kernels.h"
#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

constexpr int kMc = 144;   // M block: 144 x 256 floats of A = 144 KiB (L2)
constexpr int kNc = 2048;  // N block: 256 x 2048 floats of packed B = 2 MiB (L3)

using AlignedVector = std::vector<float, AlignedAllocator<float>>;

// ---- the portable entry: 6 x 16, plain multiply-add ----

template <int MR>
void tile_generic(const SgemmTile& t, const SgemmEpilogue& ep) {
  float acc[MR][kSgemmNr] = {};
  for (int k = 0; k < t.kl; ++k) {
    const float* bk = t.b_rows != nullptr ? t.b + t.b_rows[k] : t.b + k * t.b_stride;
    for (int r = 0; r < MR; ++r) {
      const float av = t.a_ld > 0 ? t.a[r * t.a_ld + k] : t.a[k * kSgemmMr + r];
      for (int j = 0; j < kSgemmNr; ++j) acc[r][j] += av * bk[j];
    }
  }
  for (int r = 0; r < MR; ++r) {
    float* row = t.c + r * t.ldc;
    for (int j = 0; j < t.nr; ++j) {
      float v = ep.alpha * acc[r][j];
      if (ep.load_c) v += ep.beta * row[j];
      if (ep.bias != nullptr) v += ep.bias[j];
      if (ep.row_bias != nullptr) v += ep.row_bias[r];
      if (ep.residual != nullptr) v += ep.residual[r * ep.residual_ld + j];
      if (ep.act == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
      if (ep.act == SgemmActivation::Kind::kClip) v = std::min(std::max(v, ep.lo), ep.hi);
      row[j] = v;
    }
  }
}

}  // namespace

void sgemm_tile_generic(const SgemmTile& t, const SgemmEpilogue& ep) {
  switch (t.mr) {
    case 1: return tile_generic<1>(t, ep);
    case 2: return tile_generic<2>(t, ep);
    case 3: return tile_generic<3>(t, ep);
    case 4: return tile_generic<4>(t, ep);
    case 5: return tile_generic<5>(t, ep);
    default: return tile_generic<6>(t, ep);
  }
}

namespace {

// Best first (kernel_table.h).
constexpr SgemmKernel kSgemmKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "sgemm_f32_avx512_12x32", 12, 32, sgemm_tile_avx512, false},
    {Isa::kAvx2, "sgemm_f32_avx2_6x16", 6, 16, sgemm_tile_avx2, true, sgemm_narrow_avx2},
#endif
    {Isa::kRef, "sgemm_f32_generic_6x16", 6, 16, sgemm_tile_generic, true},
};

// ---- packing ----

// Rows [m0, m0 + ml) x columns [k0, k0 + kl) of op(A) as 6-row panels: panel p
// holds kl x 6 floats at dst + p * kl * 6, element (r, k) at k * 6 + r. Rows of
// a last partial panel past ml are not written (kernels read only mr rows).
void pack_a(bool trans_a, const float* A, int lda, int m0, int ml, int k0, int kl, float* dst) {
  const size_t ld = static_cast<size_t>(lda);
  for (int p = 0; p < ml; p += kSgemmMr) {
    const int rows = std::min(kSgemmMr, ml - p);
    float* d = dst + static_cast<size_t>(p) * static_cast<size_t>(kl);
    if (!trans_a) {
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

void check_runnable(const SgemmKernel& kernel) {
  if (!isa_allows(kernel.isa, kernel.isa, cpu_features())) {
    throw Error(ErrorCode::kUnsupported, std::string("sgemm: ") + kernel.name + ": this CPU or build cannot run it");
  }
}

// Where the driver finds B: a packed whole B, or (small M, B not transposed)
// B itself for full panels, with only a last partial panel packed.
struct BSource {
  const float* packed = nullptr;
  const float* packed_end = nullptr;  // one past the packed array (prefetch bound)
  int padded_n = 0;
  int col0 = 0;  // packed: column of the packed B that is column 0 here (a multiple of 16)
  const float* direct = nullptr;
  int ldb = 0;
};

// C = act(alpha * op(A) B + beta * C + bias) for K == 0: op(A) B is zero.
void store_empty_product(int M, int N, float beta, float* C, int ldc, const float* bias, SgemmActivation act,
                         const float* residual = nullptr) {
  for (int i = 0; i < M; ++i) {
    float* row = C + static_cast<size_t>(i) * static_cast<size_t>(ldc);
    for (int j = 0; j < N; ++j) {
      float v = beta == 0.0f ? 0.0f : beta * row[j];
      if (bias != nullptr) v += bias[j];
      if (residual != nullptr) v += residual[static_cast<size_t>(i) * static_cast<size_t>(ldc) + j];
      if (act.kind == SgemmActivation::Kind::kRelu) v = std::max(v, 0.0f);
      if (act.kind == SgemmActivation::Kind::kClip) v = std::min(std::max(v, act.lo), act.hi);
      row[j] = v;
    }
  }
}

// Rows [0, rows) of the tile t (its a, b, c at row 0 and its first column),
// in groups of the entry's mr. `a_row` floats from one row group's A to the
// next (direct: mr rows of lda; packed: mr / 6 panels).
// `next` / `next_floats`: memory the tiles should prefetch (the next column
// group of packed B), split evenly among the row groups.
void run_rows(const SgemmKernel& kernel, SgemmTile t, int rows, int64_t a_row, const SgemmEpilogue& ep,
              const float* next = nullptr, int64_t next_floats = 0) {
  const float* a = t.a;
  float* c = t.c;
  const int groups = (rows + kernel.mr - 1) / kernel.mr;
  const int64_t lines = next_floats / 16;
  const int64_t per_group = (lines + groups - 1) / groups;
  for (int i = 0, g = 0; i < rows; i += kernel.mr, ++g) {
    t.mr = std::min(kernel.mr, rows - i);
    t.a = a + i / kernel.mr * a_row;
    t.c = c + i * t.ldc;
    SgemmEpilogue e = ep;
    if (e.residual != nullptr) e.residual += i * e.residual_ld;
    const int64_t first = std::min(lines, g * per_group);
    t.prefetch = next == nullptr ? nullptr : next + first * 16;
    t.prefetch_lines = static_cast<int>(std::min(per_group, lines - first));
    kernel.tile(t, e);
  }
}

void run_blocked(const SgemmKernel& kernel, bool trans_a, int M, int N, int K, float alpha, const float* A, int lda,
                 const BSource& src, float beta, float* C, int ldc, const float* bias, SgemmActivation act,
                 const float* residual = nullptr) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return store_empty_product(M, N, beta, C, ldc, bias, act, residual);
  thread_local AlignedVector a_buf;
  if (trans_a) {
    const size_t a_size = static_cast<size_t>(std::min(M, kMc) + kSgemmMr) * static_cast<size_t>(std::min(K, kSgemmKc));
    if (a_buf.size() < a_size) a_buf.resize(a_size);
  }
  alignas(64) float tail_b[kSgemmKc * kSgemmNr];
  for (int n0 = 0; n0 < N; n0 += kNc) {
    const int n_end = std::min(N, n0 + kNc);
    for (int k0 = 0; k0 < K; k0 += kSgemmKc) {
      const int kl = std::min(kSgemmKc, K - k0);
      const bool first = k0 == 0;
      const bool last = k0 + kl == K;
      SgemmEpilogue ep;
      ep.alpha = alpha;
      ep.beta = first ? beta : 1.0f;
      ep.load_c = !first || beta != 0.0f;
      if (last) {
        ep.act = act.kind;
        ep.lo = act.kind == SgemmActivation::Kind::kRelu ? 0.0f : act.lo;
        ep.hi = act.hi;
      }
      for (int m0 = 0; m0 < M; m0 += kMc) {
        const int ml = std::min(kMc, M - m0);
        SgemmTile t;
        t.kl = kl;
        int64_t a_row = 0;
        if (trans_a) {
          pack_a(true, A, lda, m0, ml, k0, kl, a_buf.data());
          t.a = a_buf.data();
          t.a_panel = static_cast<int64_t>(kSgemmMr) * kl;
          a_row = static_cast<int64_t>(kernel.mr) * kl;
        } else {
          t.a = A + static_cast<int64_t>(m0) * lda + k0;
          t.a_ld = lda;
          a_row = static_cast<int64_t>(kernel.mr) * lda;
        }
        t.ldc = ldc;
        for (int j0 = n0; j0 < n_end; j0 += kernel.nr) {
          const int nr = std::min(kernel.nr, N - j0);
          float* c = C + static_cast<int64_t>(m0) * ldc + j0;
          SgemmEpilogue e = ep;
          e.bias = last && bias != nullptr ? bias + j0 : nullptr;
          if (last && residual != nullptr) {
            e.residual = residual + static_cast<int64_t>(m0) * ldc + j0;
            e.residual_ld = ldc;
          }
          if (src.packed != nullptr) {
            t.b = src.packed + static_cast<int64_t>(k0) * src.padded_n + static_cast<int64_t>(src.col0 + j0) * kl;
            t.b_stride = kSgemmNr;
            t.b_panel = static_cast<int64_t>(kSgemmNr) * kl;
            t.nr = nr;
            t.c = c;
            // The next column group (or the next K block's first) follows in
            // memory: packed B is one array in the order the loops read it.
            const float* next = t.b + static_cast<int64_t>((nr + kSgemmNr - 1) / kSgemmNr) * t.b_panel;
            const int64_t left = src.packed_end - next;
            run_rows(kernel, t, ml, a_row, e, next, std::clamp<int64_t>(left, 0, kernel.nr * int64_t{kl}));
            continue;
          }
          // B in place: its full panels, then a last partial one packed.
          const int full = nr / kSgemmNr * kSgemmNr;
          if (full > 0) {
            t.b = src.direct + static_cast<int64_t>(k0) * src.ldb + j0;
            t.b_stride = src.ldb;
            t.b_panel = kSgemmNr;
            t.nr = full;
            t.c = c;
            run_rows(kernel, t, ml, a_row, e);
          }
          if (full < nr) {
            pack_b_panel(false, src.direct, src.ldb, N, j0 + full, k0, kl, tail_b);
            t.b = tail_b;
            t.b_stride = kSgemmNr;
            t.b_panel = static_cast<int64_t>(kSgemmNr) * kl;
            t.nr = nr - full;
            t.c = c + full;
            if (e.bias != nullptr) e.bias += full;
            if (e.residual != nullptr) e.residual += full;
            run_rows(kernel, t, ml, a_row, e);
          }
        }
      }
    }
  }
}

}  // namespace

std::span<const SgemmKernel> sgemm_kernels() { return kSgemmKernels; }

const SgemmKernel& sgemm_pick(Isa allowed) {
  return *pick_kernel(sgemm_kernels(), allowed, [](const SgemmKernel&) { return true; });
}

const SgemmKernel& sgemm_default_kernel() {
  static const SgemmKernel& kernel = sgemm_pick(selected_isa());
  return kernel;
}

const char* sgemm_kernel_name(const SgemmKernel& kernel) { return kernel.name; }
Isa sgemm_kernel_isa(const SgemmKernel& kernel) { return kernel.isa; }
const char* PackedSgemmB::kernel_name() const { return kernel != nullptr ? kernel->name : "none"; }
const char* PackedSgemmA::kernel_name() const { return kernel != nullptr ? kernel->name : "none"; }

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
  sgemm(sgemm_default_kernel(), trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void sgemm(const SgemmKernel& kernel, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
           int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  check_runnable(kernel);
  BSource src;
  if (!trans_b && M <= kSgemmMr) {
    // One row group: every B element is used once, so packing B would only
    // add a pass over it.
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
  src.packed_end = b_buf.data() + b_size;
  src.padded_n = padded_n;
  run_blocked(kernel, trans_a, M, N, K, alpha, A, lda, src, beta, C, ldc, nullptr, SgemmActivation::none());
}

PackedSgemmB sgemm_pack_b(const float* B, int K, int N, bool trans_b, int ldb) {
  return sgemm_pack_b(sgemm_default_kernel(), B, K, N, trans_b, ldb);
}

PackedSgemmB sgemm_pack_b(const SgemmKernel& kernel, const float* B, int K, int N, bool trans_b, int ldb) {
  check_runnable(kernel);
  PackedSgemmB packed;
  packed.kernel = &kernel;
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
  sgemm_packed(M, N, K, A, lda, B, C, ldc, bias, act, nullptr, nullptr);
}

void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C, int ldc,
                  const float* bias, SgemmActivation act, ThreadPool* pool, const float* residual) {
  if (B.kernel == nullptr || B.K != K || B.N != N) {
    throw Error(ErrorCode::kInvalidArgument, "sgemm_packed: B was packed as " + std::to_string(B.K) + "x" +
                                                 std::to_string(B.N) + ", called with K=" + std::to_string(K) +
                                                 " N=" + std::to_string(N));
  }
  BSource src;
  src.packed = B.data.data();
  src.packed_end = B.data.data() + B.data.size();
  src.padded_n = B.padded_n;
  if (pool == nullptr || pool->size() == 1 || M <= 0 || N <= 0) {
    return run_blocked(*B.kernel, false, M, N, K, 1.0f, A, lda, src, 0.0f, C, ldc, bias, act, residual);
  }
  const SgemmKernel& kernel = *B.kernel;
  // Row groups of the entry's tile height, or 16-column panels.
  const int m_panels = (M + kernel.mr - 1) / kernel.mr;
  const int n_panels = (N + kSgemmNr - 1) / kSgemmNr;
  // Rows when there are enough row groups for every thread, else columns.
  if (m_panels >= 2 * pool->size() || m_panels >= n_panels) {
    pool->parallel_for(m_panels, [&](int64_t begin, int64_t end) {
      const int m0 = static_cast<int>(begin) * kernel.mr;
      const int m1 = std::min(M, static_cast<int>(end) * kernel.mr);
      BSource src;
      src.packed = B.data.data();
      src.packed_end = B.data.data() + B.data.size();
      src.padded_n = B.padded_n;
      run_blocked(kernel, false, m1 - m0, N, K, 1.0f, A + static_cast<size_t>(m0) * lda, lda, src, 0.0f,
                  C + static_cast<size_t>(m0) * ldc, ldc, bias, act,
                  residual == nullptr ? nullptr : residual + static_cast<size_t>(m0) * ldc);
    });
  } else {
    pool->parallel_for(n_panels, [&](int64_t begin, int64_t end) {
      const int n0 = static_cast<int>(begin) * kSgemmNr;
      const int n1 = std::min(N, static_cast<int>(end) * kSgemmNr);
      BSource src;
      src.packed = B.data.data();
      src.packed_end = B.data.data() + B.data.size();
      src.padded_n = B.padded_n;
      src.col0 = n0;
      run_blocked(kernel, false, M, n1 - n0, K, 1.0f, A, lda, src, 0.0f, C + n0, ldc,
                  bias == nullptr ? nullptr : bias + n0, act, residual == nullptr ? nullptr : residual + n0);
    });
  }
}

// ---- prepacked A ----

PackedSgemmA sgemm_pack_a(const float* A, int M, int K, int lda) {
  return sgemm_pack_a(sgemm_default_kernel(), A, M, K, lda);
}

PackedSgemmA sgemm_pack_a(const SgemmKernel& kernel, const float* A, int M, int K, int lda) {
  check_runnable(kernel);
  PackedSgemmA packed;
  packed.kernel = &kernel;
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

void sgemm_packed_a_block(const PackedSgemmA& A, int m0, int m1, int k0, const float* b_tile, int nc, float* C, int ldc,
                          const float* row_bias, SgemmActivation act, const int64_t* b_rows, const float* residual) {
  const SgemmKernel& kernel = *A.kernel;
  if (b_rows != nullptr && !kernel.b_row_table) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("sgemm_packed_a_block: ") + kernel.name + " does not read B through a row table");
  }
  const int kl = std::min(kSgemmKc, A.K - k0);
  const bool first = k0 == 0;
  const bool last = k0 + kl == A.K;
  SgemmEpilogue ep;
  ep.load_c = !first;
  ep.beta = 1.0f;
  if (last) {
    ep.act = act.kind;
    ep.lo = act.kind == SgemmActivation::Kind::kRelu ? 0.0f : act.lo;
    ep.hi = act.hi;
    ep.residual_ld = ldc;
  }
  SgemmTile t;
  t.kl = kl;
  t.a_panel = static_cast<int64_t>(kSgemmMr) * kl;
  t.b_stride = kSgemmNr;
  t.b_panel = b_rows != nullptr ? int64_t{kSgemmNr} : static_cast<int64_t>(kSgemmNr) * kl;
  t.b_rows = b_rows;
  t.ldc = ldc;
  const float* a_block = A.data.data() + static_cast<size_t>(k0) * static_cast<size_t>(A.padded_m);
  const float* a_end = A.data.data() + A.data.size();
  // The last 1-4 columns through the entry's narrow kernel, if it has one,
  // after the row groups (sgemm_kernels.h: the same bits).
  const int tail = nc % kernel.nr;
  const int nc_main = kernel.narrow != nullptr && tail <= kSgemmNarrowCols ? nc - tail : nc;
  const int col_groups = std::max(1, (nc_main + kernel.nr - 1) / kernel.nr);
  // Per row group (its A, mr x kl floats, stays in L1), every column group;
  // meanwhile the tiles prefetch the next row group's A (the weight streams
  // from memory once per K block), split evenly among them.
  // Rows in chunks of 72 (12 panels: 72 x 256 floats of A, in L2): each
  // chunk's row groups, then its narrow tail while its A is still cached.
  constexpr int kChunkRows = 72;
  for (int c0 = m0; c0 < m1; c0 += kChunkRows) {
    const int c1 = std::min(m1, c0 + kChunkRows);
    for (int i = c0; i < c1; i += kernel.mr) {
      t.mr = std::min(kernel.mr, m1 - i);
      ep.row_bias = last && row_bias != nullptr ? row_bias + i : nullptr;
      const float* rrow =
          last && residual != nullptr ? residual + static_cast<size_t>(i) * static_cast<size_t>(ldc) : nullptr;
      t.a = a_block + static_cast<size_t>(i) * static_cast<size_t>(kl);
      const float* next = t.a + static_cast<int64_t>(kernel.mr) * kl;
      const int64_t lines = std::clamp<int64_t>(a_end - next, 0, int64_t{kernel.mr} * kl) / 16;
      const int64_t per_group = (lines + col_groups - 1) / col_groups;
      float* crow = C + static_cast<size_t>(i) * static_cast<size_t>(ldc);
      for (int j0 = 0, g = 0; j0 < nc_main; j0 += kernel.nr, ++g) {
        t.nr = std::min(kernel.nr, nc - j0);
        t.b = b_tile + static_cast<size_t>(j0) * static_cast<size_t>(b_rows != nullptr ? 1 : kl);
        t.c = crow + j0;
        ep.residual = rrow != nullptr ? rrow + j0 : nullptr;
        const int64_t first = std::min(lines, g * per_group);
        t.prefetch = next + first * 16;
        t.prefetch_lines = static_cast<int>(std::min(per_group, lines - first));
        kernel.tile(t, ep);
      }
    }
    if (nc_main < nc) {
      t.mr = c1 - c0;
      t.nr = nc - nc_main;
      t.a = a_block + static_cast<size_t>(c0) * static_cast<size_t>(kl);
      t.b = b_tile + static_cast<size_t>(nc_main) * static_cast<size_t>(b_rows != nullptr ? 1 : kl);
      t.c = C + static_cast<size_t>(c0) * static_cast<size_t>(ldc) + nc_main;
      t.prefetch = nullptr;
      t.prefetch_lines = 0;
      ep.row_bias = last && row_bias != nullptr ? row_bias + c0 : nullptr;
      ep.residual = last && residual != nullptr
                        ? residual + static_cast<size_t>(c0) * static_cast<size_t>(ldc) + nc_main
                        : nullptr;
      kernel.narrow(t, ep);
    }
  }
}

void sgemm_packed_a(int M, int N, int K, const PackedSgemmA& A, const float* B, int ldb, float* C, int ldc,
                    const float* row_bias, SgemmActivation act) {
  if (A.kernel == nullptr || A.M != M || A.K != K) {
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
      sgemm_packed_a_block(A, 0, M, k0, b_buf.data(), nc, C + n0, ldc, row_bias, act);
    }
  }
}

}  // namespace kvant
