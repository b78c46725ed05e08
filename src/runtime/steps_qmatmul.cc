// DQ(a) , DQ(b) -> MatMul -> Q with both operands computed (attention's
// Q K^T and probabilities x V in a static-quantized transformer), one scale
// and zero point each, as an integer batched GEMM:
//
//   acc[m, n] = sum_k (a[m, k] - a_zp) * (b[k, n] - b_zp)            (int32, exact)
//   y[m, n]   = clamp(nearbyint(float(acc) * (a_scale * b_scale / y_scale)) + y_zp)
//
// ONNX QLinearMatMul's requantization (decision 42): within one output code
// of the QDQ simulation, which dequantizes, multiplies in float and
// quantizes (they differ only where the exact product lies within float
// rounding of a half step).
//
// The GEMM is gemm_s8.h's u8 x s8 kernel: uint8 codes of a are A as they
// are (int8 codes: + 128, zero point + 128); uint8 codes of b become int8 by
// - 128 (zero point - 128), so (b - b_zp) is unchanged; the entry is the one
// for full 8-bit B (on AVX2 the int16-widening kernel: vpmaddubsw's int16
// pair sums could saturate). B changes every call, so each batch's [K, N]
// slice is packed again (repack_b_s8, into per-thread buffers grown at
// plan time): K * N bytes against the M * K * N products.
//
// Batch dims broadcast as MatMul's do. Work items are (batch, row block):
// whole batches when there are at least as many as threads, else each
// batch's rows split (each block packs its batch's B). K above gemm_s8.h's
// exactness bound (33025) runs a plain int64 loop with the same epilogue.
#include "runtime/steps_qmatmul.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm_s8.h"

namespace kvant {

namespace {

constexpr int64_t kMaxGemmK = 33025;  // gemm_s8.h: int32 exact up to this K

size_t round64(size_t x) { return (x + 63) / 64 * 64; }

// out[i] = in[i] ^ 0x80 (uint8 codes - 128 as int8, or int8 + 128 as
// uint8), eight bytes at a time.
void flip_sign_bits(const uint8_t* in, int64_t n, uint8_t* out) {
  constexpr uint64_t kSigns = 0x8080808080808080ull;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    std::memcpy(&v, in + i, 8);
    v ^= kSigns;
    std::memcpy(out + i, &v, 8);
  }
  for (; i < n; ++i) out[i] = static_cast<uint8_t>(in[i] ^ 0x80u);
}

int64_t dim_from_end(const Shape& s, size_t from_end) { return from_end <= s.size() ? s[s.size() - from_end] : 1; }

class QMatMulStep : public Step {
 public:
  QMatMulStep(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y, Isa isa, int threads)
      : a_(a), b_(b), y_(y), kernel_(&pick_qgemm(isa, false)), threads_(std::max(1, threads)) {
    mult_ = a_.scale * b_.scale / y_.scale;
  }
  std::string kernel() const override { return std::string("qmatmul_batched/") + qgemm_kernel_name(*kernel_); }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const DType want_a = a_.is_signed ? DType::kInt8 : DType::kUInt8;
    const DType want_b = b_.is_signed ? DType::kInt8 : DType::kUInt8;
    if (a.dtype() != want_a || b.dtype() != want_b || a.rank() < 2 || b.rank() < 2 ||
        a.shape().back() != b.dim(b.rank() - 2)) {
      throw Error(ErrorCode::kInvalidArgument, name + ": cannot multiply " + a.describe() + " by " + b.describe() +
                                                   " (expected " + dtype_name(want_a) + " [..., M, K] and " +
                                                   dtype_name(want_b) + " [..., K, N])");
    }
    const size_t batch_rank = static_cast<size_t>(std::max(a.rank(), b.rank()) - 2);
    Shape s(batch_rank);
    for (size_t i = 0; i < batch_rank; ++i) {
      const int64_t da = dim_from_end(a.shape(), batch_rank - i + 2);
      const int64_t db = dim_from_end(b.shape(), batch_rank - i + 2);
      if (da != db && da != 1 && db != 1) {
        throw Error(ErrorCode::kInvalidArgument,
                    name + ": batch dims of " + a.describe() + " and " + b.describe() + " do not broadcast");
      }
      s[i] = std::max(da, db);
    }
    m_ = a.dim(a.rank() - 2);
    k_ = a.shape().back();
    n_ = b.shape().back();
    s.push_back(m_);
    s.push_back(n_);
    // The operands' element offsets per output batch (dims broadcast from the right).
    int64_t batches = 1;
    for (size_t i = 0; i < batch_rank; ++i) batches *= s[i];
    off_a_.assign(static_cast<size_t>(batches), 0);
    off_b_.assign(static_cast<size_t>(batches), 0);
    for (int64_t bi = 0; bi < batches; ++bi) {
      int64_t rest = bi, stride_a = m_ * k_, stride_b = k_ * n_;
      for (size_t d = batch_rank; d-- > 0;) {
        const int64_t size = s[d], idx = rest % size;
        rest /= size;
        const size_t from_end = batch_rank - d + 2;
        const int64_t da = dim_from_end(a.shape(), from_end), db = dim_from_end(b.shape(), from_end);
        if (da != 1) off_a_[static_cast<size_t>(bi)] += idx * stride_a;
        if (db != 1) off_b_[static_cast<size_t>(bi)] += idx * stride_b;
        stride_a *= da;
        stride_b *= db;
      }
    }
    exact_gemm_ = k_ <= kMaxGemmK;
    row_blocks_ = batches >= threads_ ? 1 : std::clamp<int64_t>((threads_ + batches - 1) / batches, 1, m_ > 0 ? m_ : 1);
    // Per-thread packed B, grown here so that a run allocates nothing.
    const int8_t b_zp = static_cast<int8_t>(b_zero_point());
    b_zp_.assign(static_cast<size_t>(n_), b_zp);
    zero_bias_.assign(static_cast<size_t>(n_), 0);
    mults_.assign(static_cast<size_t>(n_), mult_);
    packed_.resize(static_cast<size_t>(threads_));
    if (exact_gemm_ && k_ > 0 && n_ > 0) {
      std::vector<int8_t> zeros(static_cast<size_t>(k_ * n_), 0);
      for (PackedB& p : packed_) {
        repack_b_s8(p, *kernel_, zeros.data(), static_cast<int>(k_), static_cast<int>(n_), b_zp_.data(),
                    static_cast<int>(n_));
      }
    }
    out.assign(1, {y_.is_signed ? DType::kInt8 : DType::kUInt8, s});
  }
  // Scratch: A as uint8 (int8 codes shifted), then per thread B as int8 and
  // the int32 accumulators of one block.
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    return round64(a_.is_signed ? static_cast<size_t>(in[0]->numel()) : 0) +
           static_cast<size_t>(threads_) * slot_bytes();
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    const int64_t batches = static_cast<int64_t>(off_a_.size());
    const int32_t a_zp = a_.zero_point + (a_.is_signed ? 128 : 0);
    const auto* a_codes = static_cast<const uint8_t*>(a.raw());
    std::byte* slots_base = scratch;
    if (a_.is_signed) {  // int8 codes + 128 as uint8: flip the sign bit
      auto* au = reinterpret_cast<uint8_t*>(scratch);
      flip_sign_bits(a_codes, a.numel(), au);
      a_codes = au;
      slots_base += round64(static_cast<size_t>(a.numel()));
    }
    const auto* b_codes = static_cast<const uint8_t*>(b.raw());
    auto* y = static_cast<uint8_t*>(out[0]->raw());
    int32_t lo = y_.qmin(), hi = y_.qmax();
    const int64_t items = batches * row_blocks_;
    const int slots = static_cast<int>(std::min<int64_t>(
        std::max(1, std::min(threads_, pool != nullptr ? pool->size() : 1)), std::max<int64_t>(items, 1)));
    parallel_for(pool, slots, [&](int64_t slot_begin, int64_t slot_end) {
      for (int64_t slot = slot_begin; slot < slot_end; ++slot) {
        std::byte* mine = slots_base + static_cast<size_t>(slot) * slot_bytes();
        auto* bs = reinterpret_cast<int8_t*>(mine);
        auto* acc = reinterpret_cast<int32_t*>(mine + round64(static_cast<size_t>(k_ * n_)));
        PackedB& packed = packed_[static_cast<size_t>(slot)];
        int64_t begin = 0, end = 0, packed_batch = -1;
        chunk_range(items, slots, static_cast<int>(slot), begin, end);
        for (int64_t item = begin; item < end; ++item) {
          const int64_t bi = item / row_blocks_;
          int64_t r0 = 0, r1 = 0;
          chunk_range(m_, static_cast<int>(row_blocks_), static_cast<int>(item % row_blocks_), r0, r1);
          if (r1 <= r0) continue;
          const uint8_t* bb = b_codes + off_b_[static_cast<size_t>(bi)];
          const uint8_t* ab = a_codes + off_a_[static_cast<size_t>(bi)] + r0 * k_;
          uint8_t* yb = y + (bi * m_ + r0) * n_;
          if (!exact_gemm_) {
            wide_k(ab, a_zp, bb, r1 - r0, yb, lo, hi);
            continue;
          }
          if (bi != packed_batch) {
            const int8_t* bsrc = reinterpret_cast<const int8_t*>(bb);
            if (!b_.is_signed) {  // uint8 codes - 128 as int8: flip the sign bit
              flip_sign_bits(bb, k_ * n_, reinterpret_cast<uint8_t*>(bs));
              bsrc = bs;
            }
            repack_b_s8(packed, *kernel_, bsrc, static_cast<int>(k_), static_cast<int>(n_), b_zp_.data(),
                        static_cast<int>(n_));
            packed_batch = bi;
          }
          const QGemmRequant rq{zero_bias_.data(), mults_.data(), y_.zero_point, lo, hi, y_.is_signed, yb, n_};
          gemm_u8s8_requant(ab, static_cast<int>(k_), static_cast<int>(r1 - r0), static_cast<uint8_t>(a_zp), packed, rq,
                            acc);
        }
      }
    });
  }

 private:
  // b's zero point in the int8 form the kernel reads.
  int32_t b_zero_point() const { return b_.zero_point - (b_.is_signed ? 0 : 128); }
  size_t slot_bytes() const {
    const int64_t rows = (m_ + row_blocks_ - 1) / std::max<int64_t>(row_blocks_, 1);
    return round64(static_cast<size_t>(k_ * n_)) + round64(static_cast<size_t>(rows * n_) * sizeof(int32_t));
  }
  // K past the int32 bound: int64 sums, the same requantization.
  void wide_k(const uint8_t* a, int32_t a_zp, const uint8_t* b, int64_t rows, uint8_t* y, int32_t lo,
              int32_t hi) const {
    const int32_t b_zp = b_zero_point();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t n = 0; n < n_; ++n) {
        int64_t sum = 0;
        for (int64_t k = 0; k < k_; ++k) {
          const int32_t bv = b_.is_signed ? static_cast<int8_t>(b[k * n_ + n]) : b[k * n_ + n] - 128;
          sum += static_cast<int64_t>(a[r * k_ + k] - a_zp) * (bv - b_zp);
        }
        const auto q = static_cast<int32_t>(
            std::clamp<float>(std::nearbyint(static_cast<float>(sum) * mult_) + static_cast<float>(y_.zero_point),
                              static_cast<float>(lo), static_cast<float>(hi)));
        if (y_.is_signed) {
          reinterpret_cast<int8_t*>(y)[r * n_ + n] = static_cast<int8_t>(q);
        } else {
          y[r * n_ + n] = static_cast<uint8_t>(q);
        }
      }
    }
  }

  QuantScalar a_, b_, y_;
  const QGemmKernel* kernel_;
  int threads_;
  float mult_ = 1.0f;
  mutable int64_t m_ = 0, k_ = 0, n_ = 0, row_blocks_ = 1;
  mutable bool exact_gemm_ = true;
  mutable std::vector<int64_t> off_a_, off_b_;
  mutable std::vector<int8_t> b_zp_;
  mutable std::vector<int32_t> zero_bias_;
  mutable std::vector<float> mults_;
  mutable std::vector<PackedB> packed_;
};

}  // namespace

std::unique_ptr<Step> make_qmatmul_step(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y, Isa isa,
                                        int threads) {
  return std::make_unique<QMatMulStep>(a, b, y, isa, threads);
}

}  // namespace kvant
