// INT8 GEMM: the reference kernel, the kernel table, packing and the
// requantize epilogue. The math is in gemm_s8.h, the entries' layouts in
// gemm_s8_kernels.h.
#include "kernels/gemm_s8.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/gemm_s8_kernels.h"
#include "kernels/kernel_table.h"
#include "kernels/layout_u8.h"
#include "kvant/status.h"

namespace kvant {

namespace {

[[noreturn]] void fail(ErrorCode code, const std::string& message) { throw Error(code, "gemm_u8s8_s32: " + message); }

int64_t round_up(int64_t x, int64_t to) { return (x + to - 1) / to * to; }

// The reference entry: B kept row-major [K, N].
int64_t ref_packed_bytes(int K, int N) { return static_cast<int64_t>(K) * N; }
void ref_pack(const int8_t* B, int ldb, int K, int N, int8_t* packed) {
  for (int k = 0; k < K; ++k)
    std::copy(B + static_cast<int64_t>(k) * ldb, B + static_cast<int64_t>(k) * ldb + N,
              packed + static_cast<int64_t>(k) * N);
}
void ref_run(const QGemmArgs& g) {
  int32_t corr[kQGemmPanelCols], bzp[kQGemmPanelCols];
  for (int n0 = 0; n0 < g.n; n0 += kQGemmPanelCols) {
    const int cols = std::min(kQGemmPanelCols, g.n - n0);
    qgemm_panel_corrections(g, n0, cols, corr, bzp);
    for (int m = 0; m < g.m; ++m) {
      const uint8_t* a = g.a + static_cast<int64_t>(m) * g.lda;
      int32_t rowsum = 0;
      if (g.b_zp != nullptr) qgemm_row_sums(a, g.lda, 1, g.k, &rowsum);
      for (int i = 0; i < cols; ++i) {
        uint32_t sum = 0;
        for (int k = 0; k < g.k; ++k) {
          sum += static_cast<uint32_t>(int32_t{a[k]} * g.packed[static_cast<int64_t>(k) * g.n + n0 + i]);
        }
        sum += static_cast<uint32_t>(corr[i]) - static_cast<uint32_t>(bzp[i]) * static_cast<uint32_t>(rowsum);
        g.c[static_cast<int64_t>(m) * g.ldc + n0 + i] = static_cast<int32_t>(sum);
      }
    }
  }
}

// Best first (kernel_table.h).
constexpr QGemmKernel kQGemmKernels[] = {
#if defined(__x86_64__)
    {Isa::kAmx, "qgemm_u8s8_amx_32x32", false, qgemm_amx_packed_bytes, qgemm_amx_pack, qgemm_u8s8_amx,
     qgemm_u8s8_amx_requant, nullptr},
    {Isa::kAvx512Vnni, "qgemm_u8s8_avx512vnni_6x64", false, qgemm_quads_packed_bytes, qgemm_quads_pack,
     qgemm_u8s8_avx512vnni, nullptr, nullptr},
    {Isa::kAvxVnni, "qgemm_u8s8_avxvnni_6x16", false, qgemm_quads_packed_bytes, qgemm_quads_pack, qgemm_u8s8_avxvnni,
     nullptr, nullptr},
    {Isa::kAvx2, "qgemm_u8s7_avx2_4x16", true, qgemm_quads_packed_bytes, qgemm_quads_pack, qgemm_u8s7_avx2,
     qgemm_u8s7_avx2_requant, qgemm_u8s7_avx2_dequant},
    {Isa::kAvx2, "qgemm_u8s8_avx2_6x16", false, qgemm_avx2_packed_bytes, qgemm_avx2_pack, qgemm_u8s8_avx2, nullptr,
     nullptr},
#endif
    {Isa::kRef, "qgemm_u8s8_ref", false, ref_packed_bytes, ref_pack, ref_run, nullptr, nullptr},
};

bool fits_7bit(const int8_t* B, int K, int N, int ldb) {
  for (int k = 0; k < K; ++k) {
    const int8_t* row = B + static_cast<int64_t>(k) * ldb;
    if (!std::all_of(row, row + N, [](int8_t v) { return v >= -64 && v <= 64; })) return false;
  }
  return true;
}

}  // namespace

void qgemm_pack_panels(const int8_t* B, int ldb, int K, int N, int group, int k_align, int8_t* packed) {
  const int64_t groups = round_up(K, k_align) / group;
  const int panels = static_cast<int>(round_up(N, kQGemmPanelCols) / kQGemmPanelCols);
  const int64_t group_bytes = static_cast<int64_t>(group) * kQGemmPanelCols;
  // Row by row: each of B's rows is read contiguously (16 columns) and
  // written at a stride of `group` bytes. Activation x activation MatMuls
  // pack B on every call (repack_b_s8), so this loop is on their run time:
  // reading B down its columns, as a panel is laid out, cost 6% of Swin-T's.
  for (int j = 0; j < panels; ++j) {
    int8_t* panel = packed + static_cast<int64_t>(j) * groups * group_bytes;
    const int n0 = j * kQGemmPanelCols;
    const int cols = std::min(kQGemmPanelCols, N - n0);
    if (cols < kQGemmPanelCols || K < groups * group) {
      std::memset(panel, 0, static_cast<size_t>(groups * group_bytes));
    }
    for (int64_t k = 0; k < K; ++k) {
      const int8_t* row = B + k * ldb + n0;
      int8_t* out = panel + (k / group) * group_bytes + k % group;
      for (int col = 0; col < cols; ++col) out[group * col] = row[col];
    }
  }
}

int64_t qgemm_panels_bytes(int K, int N, int k_align) { return round_up(K, k_align) * round_up(N, kQGemmPanelCols); }

void qgemm_panel_corrections(const QGemmArgs& g, int n0, int cols, int32_t* corr, int32_t* bzp) {
  for (int i = 0; i < kQGemmPanelCols; ++i) {
    const bool inside = i < cols;
    const uint32_t z = inside && g.b_zp != nullptr ? static_cast<uint32_t>(g.b_zp[n0 + i]) : 0u;
    const uint32_t s = inside ? static_cast<uint32_t>(g.col_sums[n0 + i]) : 0u;
    const uint32_t azp = g.a_zp;
    corr[i] = inside ? static_cast<int32_t>(static_cast<uint32_t>(g.k) * azp * z - azp * s) : 0;
    bzp[i] = static_cast<int32_t>(z);
  }
}

void qgemm_row_sums(const uint8_t* a, int lda, int rows, int K, int32_t* sums) {
  for (int r = 0; r < rows; ++r) {
    const uint8_t* row = a + static_cast<int64_t>(r) * lda;
    int32_t sum = 0;
    for (int k = 0; k < K; ++k) sum += row[k];
    sums[r] = sum;
  }
}

std::span<const QGemmKernel> qgemm_kernels() { return kQGemmKernels; }
const char* qgemm_kernel_name(const QGemmKernel& kernel) { return kernel.name; }
Isa qgemm_kernel_isa(const QGemmKernel& kernel) { return kernel.isa; }
const char* PackedB::kernel_name() const { return kernel != nullptr ? kernel->name : "none"; }
Isa PackedB::isa() const { return kernel != nullptr ? kernel->isa : Isa::kRef; }

void gemm_u8s8_s32_reference(const uint8_t* A, int lda, const int8_t* B, int ldb, int M, int N, int K, uint8_t a_zp,
                             const int8_t* b_zp, int32_t* C, int ldc) {
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      const int32_t bz = b_zp != nullptr ? b_zp[n] : 0;
      int32_t sum = 0;
      for (int k = 0; k < K; ++k) {
        const int32_t a = static_cast<int32_t>(A[static_cast<int64_t>(m) * lda + k]) - a_zp;
        const int32_t b = static_cast<int32_t>(B[static_cast<int64_t>(k) * ldb + n]) - bz;
        sum += a * b;
      }
      C[static_cast<int64_t>(m) * ldc + n] = sum;
    }
  }
}

PackedB pack_b_s8(const QGemmKernel& kernel, const int8_t* B, int K, int N, const int8_t* b_zp, int ldb) {
  if (K < 0 || N < 0) fail(ErrorCode::kInvalidArgument, "negative K or N");
  if (ldb < 0) ldb = N;
  if (ldb < N) fail(ErrorCode::kInvalidArgument, "ldb smaller than N");
  if (!isa_allows(kernel.isa, kernel.isa, cpu_features())) {
    fail(ErrorCode::kUnsupported, std::string(kernel.name) + ": this CPU or build cannot run it");
  }
  PackedB packed;
  packed.kernel = &kernel;
  packed.k = K;
  packed.n = N;
  packed.fits_7bit = fits_7bit(B, K, N, ldb);
  if (kernel.needs_7bit && !packed.fits_7bit) {
    fail(ErrorCode::kInvalidArgument, std::string(kernel.name) + ": B has values outside [-64, 64]");
  }
  packed.col_sums.assign(static_cast<size_t>(N), 0);
  for (int k = 0; k < K; ++k) {
    for (int n = 0; n < N; ++n) packed.col_sums[static_cast<size_t>(n)] += B[static_cast<int64_t>(k) * ldb + n];
  }
  if (b_zp != nullptr && std::any_of(b_zp, b_zp + N, [](int8_t z) { return z != 0; })) {
    packed.zero_point.assign(b_zp, b_zp + N);
  }
  packed.data.resize(static_cast<size_t>(kernel.packed_bytes(K, N)));
  kernel.pack(B, ldb, K, N, packed.data.data());
  return packed;
}

void repack_b_s8(PackedB& packed, const QGemmKernel& kernel, const int8_t* B, int K, int N, const int8_t* b_zp,
                 int ldb) {
  if (K < 0 || N < 0 || ldb < N) fail(ErrorCode::kInvalidArgument, "negative K or N, or ldb < N");
  packed.kernel = &kernel;
  packed.k = K;
  packed.n = N;
  packed.fits_7bit = kernel.needs_7bit && fits_7bit(B, K, N, ldb);
  if (kernel.needs_7bit && !packed.fits_7bit) {
    fail(ErrorCode::kInvalidArgument, std::string(kernel.name) + ": B has values outside [-64, 64]");
  }
  packed.col_sums.assign(static_cast<size_t>(N), 0);
  for (int k = 0; k < K; ++k) {
    for (int n = 0; n < N; ++n) packed.col_sums[static_cast<size_t>(n)] += B[static_cast<int64_t>(k) * ldb + n];
  }
  packed.zero_point.clear();
  if (b_zp != nullptr && std::any_of(b_zp, b_zp + N, [](int8_t z) { return z != 0; })) {
    packed.zero_point.assign(b_zp, b_zp + N);
  }
  packed.data.resize(static_cast<size_t>(kernel.packed_bytes(K, N)));
  kernel.pack(B, ldb, K, N, packed.data.data());
}

const QGemmKernel& pick_qgemm(Isa allowed, bool fits_7bit) {
  return *pick_kernel(qgemm_kernels(), allowed, [&](const QGemmKernel& e) { return !e.needs_7bit || fits_7bit; });
}

PackedB pack_b_s8(const int8_t* B, int K, int N, Isa allowed, const int8_t* b_zp, int ldb) {
  if (K < 0 || N < 0 || (ldb >= 0 && ldb < N)) fail(ErrorCode::kInvalidArgument, "negative K or N, or ldb < N");
  return pack_b_s8(pick_qgemm(allowed, fits_7bit(B, K, N, ldb < 0 ? N : ldb)), B, K, N, b_zp, ldb);
}

namespace {

// The kernel arguments for A (M rows) times packed B into C (ldc).
QGemmArgs qgemm_args(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, int32_t* C, int ldc) {
  return QGemmArgs{
      A, lda, M, b.k, b.n, a_zp, b.data.data(), b.col_sums.data(), b.zero_point.empty() ? nullptr : b.zero_point.data(),
      C, ldc};
}

}  // namespace

void gemm_u8s8_s32(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, int32_t* C, int ldc) {
  if (b.kernel == nullptr) fail(ErrorCode::kInvalidArgument, "B was not packed");
  const int K = b.k;
  const int N = b.n;
  if (M < 0 || lda < K || ldc < N) fail(ErrorCode::kInvalidArgument, "negative M, or lda < K, or ldc < N");
  if (M == 0 || N == 0) return;
  b.kernel->run(qgemm_args(A, lda, M, a_zp, b, C, ldc));
}

void gemm_u8s8_requant(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, const QGemmRequant& rq,
                       int32_t* acc) {
  if (b.kernel == nullptr) fail(ErrorCode::kInvalidArgument, "B was not packed");
  if (M < 0 || lda < b.k) fail(ErrorCode::kInvalidArgument, "negative M, or lda < K");
  if (M == 0 || b.n == 0) return;
  const QGemmArgs args = qgemm_args(A, lda, M, a_zp, b, acc, b.n);
  if (b.kernel->run_requant != nullptr) {
    b.kernel->run_requant(args, rq);
    return;
  }
  b.kernel->run(args);
  pick_requant_rows(b.kernel->isa)
      .run(RequantRowsArgs{acc, b.n, M, b.n, rq.bias, rq.mult, rq.y_zp, rq.lo, rq.hi, rq.y_signed, rq.y, rq.ldy});
}

bool gemm_u8s8_has_segments(const PackedB& b, int seg_k) {
#if defined(__x86_64__)
  return b.kernel != nullptr && b.kernel->run_requant == qgemm_u8s7_avx2_requant && b.zero_point.empty() && seg_k > 0 &&
         seg_k % 4 == 0 && b.k % seg_k == 0;
#else
  (void)b;
  (void)seg_k;
  return false;
#endif
}

void gemm_u8s8_segments_requant(const QGemmRowSegments& a, uint8_t a_zp, const PackedB& b, const QGemmRequant& rq) {
  if (!gemm_u8s8_has_segments(b, a.seg_k) || a.segments * a.seg_k != b.k || a.m < 0) {
    fail(ErrorCode::kInvalidArgument, std::string(b.kernel_name()) + ": no segment form for these rows");
  }
  if (a.m == 0 || b.n == 0) return;
#if defined(__x86_64__)
  qgemm_u8s7_avx2_segments_requant(qgemm_args(nullptr, 0, a.m, a_zp, b, nullptr, 0), a, rq);
#else
  (void)a_zp;  // unreachable: no entry has the segment form here
  (void)rq;
#endif
}

void gemm_u8s8_dequant(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, const DequantRowsArgs& dq,
                       int32_t* acc, const FloatQuantKernel& fq) {
  if (b.kernel == nullptr) fail(ErrorCode::kInvalidArgument, "B was not packed");
  if (M < 0 || lda < b.k) fail(ErrorCode::kInvalidArgument, "negative M, or lda < K");
  if (M == 0 || b.n == 0) return;
  DequantRowsArgs d = dq;
  d.acc = acc;
  d.acc_stride = b.n;
  d.rows = M;
  d.n = b.n;
  const QGemmArgs args = qgemm_args(A, lda, M, a_zp, b, acc, b.n);
  if (b.kernel->run_dequant != nullptr) {
    b.kernel->run_dequant(args, d);
    return;
  }
  b.kernel->run(args);
  fq.dequant(d);
}

void requantize(const int32_t* acc, int M, int N, const int32_t* bias, const float* multiplier, int32_t y_zp, int qmin,
                int qmax, uint8_t* out) {
  const float lo = static_cast<float>(std::max(qmin, 0));
  const float hi = static_cast<float>(std::min(qmax, 255));
  const float zp = static_cast<float>(y_zp);
  for (int m = 0; m < M; ++m) {
    const int32_t* row = acc + static_cast<int64_t>(m) * N;
    uint8_t* out_row = out + static_cast<int64_t>(m) * N;
    for (int n = 0; n < N; ++n) {
      const int64_t sum = static_cast<int64_t>(row[n]) + (bias != nullptr ? bias[n] : 0);
      // Round first, then add the zero point, as QuantizeLinear does; the
      // clamp happens in float, so huge values cannot overflow an int.
      const float y = std::nearbyint(static_cast<float>(sum) * multiplier[n]) + zp;
      out_row[n] = static_cast<uint8_t>(std::clamp(y, lo, hi));
    }
  }
}

}  // namespace kvant
