// Weight-only INT4 matmul step: y[..., N] = x[..., K] W^T + bias with W kept
// 4-bit packed (kernels/gemm_w4.h):
//   W4A32 (default): y = x . dequant(W) + bias, dequant exactly as
//     DequantizeLinear / MatMulNBits compute it, float sums in another order
//     than the reference (within float rounding of the QDQ simulation);
//   W4A8 (MatMulNBits accuracy_level 4, "int8 compute" in ONNX Runtime's
//     terms): x quantized per row and block to int8 (scale max|x| / 127),
//     integer dot products per block, float block scales (gemm_w4.h); the
//     weight is re-laid out once here (w4_interleave, 8 rows interleaved).
//   8-bit weights: gemv_w8 (int8 rows widened in registers, a scale per row
//     or per block), one x row at a time (M > 1 re-reads the weights: the
//     FP32 sgemm is faster for long prompts; INT8 here saves memory).
// Split across threads by groups of 8 output columns.
#include "runtime/steps_wq.h"

#include <algorithm>
#include <cmath>

#include "kernels/gemm_w4_kernels.h"
#include "kernels/gemv_w8_kernels.h"

namespace kvant {

namespace {

bool good_block(int64_t block) { return block >= 16 && block <= (1 << 20) && (block & (block - 1)) == 0; }

class WqGemmStep : public Step {
 public:
  explicit WqGemmStep(WqGemmParams p) : p_(std::move(p)) {
    if (p_.w8) {
      w8_ = p_.w8->block > 0 ? &gemv_w8_blocked_pick(p_.isa) : &gemv_w8_pick(p_.isa);
    } else if (p_.int8_activations) {
      a8_ = &gemm_w4a8_pick(p_.isa, p_.w.block);
      w4_interleave(p_.w, false);  // W4A8 reads only the interleaved layout
    } else {
      a32_ = &gemm_w4a32_pick(p_.isa);
    }
  }
  int k() const { return p_.w8 ? p_.w8->k : p_.w.k; }
  int n() const { return p_.w8 ? p_.w8->n : p_.w.n; }
  std::string kernel() const override {
    if (w8_ != nullptr) return std::string(gemv_w8_name(*w8_)) + (p_.w8->block > 0 ? "_blocked" : "");
    return a8_ != nullptr ? std::string(gemm_w4_name(*a8_)) : std::string(gemm_w4_name(*a32_));
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() < 1 || x.shape().back() != k()) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": input " + x.describe() + " does not match the weight's K " + std::to_string(k()));
    }
    Shape shape = x.shape();
    shape.back() = n();
    out.assign(1, {DType::kFloat32, shape});
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    if (w8_ != nullptr) return 0;
    const size_t m = static_cast<size_t>(in[0]->numel() / std::max(1, p_.w.k));
    const size_t kp = static_cast<size_t>(p_.w.k_padded), kb = static_cast<size_t>(p_.w.k_blocks);
    if (a8_ != nullptr) return (m * kp + 63) / 64 * 64 + m * kb * 8 + 64;
    return p_.w.k == p_.w.k_padded ? 0 : m * kp * sizeof(float);
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    if (w8_ != nullptr) {
      run_w8(*in[0], *out[0], pool);
      return;
    }
    const W4Matrix& w = p_.w;
    const int m = static_cast<int>(in[0]->numel() / w.k);
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    const float* bias = p_.bias.empty() ? nullptr : p_.bias.data();
    const int64_t groups = (w.n + 7) / 8;
    if (m == 0) return;
    if (a8_ != nullptr) {
      const size_t kp = static_cast<size_t>(w.k_padded), kb = static_cast<size_t>(w.k_blocks);
      int8_t* xq = reinterpret_cast<int8_t*>(scratch);
      float* xs = reinterpret_cast<float*>(scratch + (static_cast<size_t>(m) * kp + 63) / 64 * 64);
      int32_t* xsum = reinterpret_cast<int32_t*>(xs + static_cast<size_t>(m) * kb);
      w4_quantize_x(w, x, w.k, m, xq, xs, xsum);
      parallel_for(pool, groups, [&](int64_t g0, int64_t g1) {
        gemm_w4a8(*a8_, w, xq, xs, xsum, m, y, w.n, bias, static_cast<int>(g0 * 8),
                  static_cast<int>(std::min<int64_t>(w.n, g1 * 8)));
      });
      return;
    }
    int64_t ld = 0;
    const float* xp = w4_pad_x(w, x, w.k, m, reinterpret_cast<float*>(scratch), ld);
    parallel_for(pool, groups, [&](int64_t g0, int64_t g1) {
      gemm_w4a32(*a32_, w, xp, ld, m, y, w.n, bias, static_cast<int>(g0 * 8),
                 static_cast<int>(std::min<int64_t>(w.n, g1 * 8)));
    });
  }

 private:
  void run_w8(const Tensor& xt, Tensor& yt, ThreadPool* pool) const {
    const W8Matrix& w = *p_.w8;
    const int64_t m = xt.numel() / w.k;
    const int64_t per_row = w.block > 0 ? (w.k + w.block - 1) / w.block : 1;
    const float* bias = p_.bias.empty() ? nullptr : p_.bias.data();
    parallel_for(pool, (w.n + 7) / 8, [&](int64_t g0, int64_t g1) {
      const int n0 = static_cast<int>(g0 * 8), n1 = static_cast<int>(std::min<int64_t>(w.n, g1 * 8));
      GemvW8Args a;
      a.w = w.w.data() + static_cast<int64_t>(n0) * w.k;
      a.scale = w.scale.data() + n0 * per_row;
      a.n = n1 - n0;
      a.k = w.k;
      a.block = w.block;
      for (int64_t r = 0; r < m; ++r) {
        a.x = xt.data<float>() + r * w.k;
        a.y = yt.data<float>() + r * w.n + n0;
        (w.block > 0 ? w8_->row_blocked : w8_->row)(a);
        if (bias != nullptr) {
          for (int j = 0; j < a.n; ++j) a.y[j] += bias[n0 + j];
        }
      }
    });
  }

  WqGemmParams p_;
  const GemvW8Kernel* w8_ = nullptr;
  const GemmW4A32Kernel* a32_ = nullptr;
  const GemmW4A8Kernel* a8_ = nullptr;
};

}  // namespace

std::unique_ptr<Step> make_wq_gemm_step(WqGemmParams params) { return std::make_unique<WqGemmStep>(std::move(params)); }

std::optional<W4Matrix> w4_from_matmul_nbits(int64_t K, int64_t N, int64_t block, const Tensor& b, const Tensor& scales,
                                             const Tensor* zero_points) {
  if (K <= 0 || N <= 0 || K > (1 << 30) || N > (1 << 30) || !good_block(block)) return std::nullopt;
  const int64_t kb = (K + block - 1) / block, blob = block / 2, zp_row = (kb + 1) / 2;
  if (b.dtype() != DType::kUInt8 || b.numel() != N * kb * blob) return std::nullopt;
  if (scales.dtype() != DType::kFloat32 || scales.numel() != N * kb) return std::nullopt;
  if (zero_points != nullptr && (zero_points->dtype() != DType::kUInt8 || zero_points->numel() != N * zp_row))
    return std::nullopt;
  const uint8_t* codes = b.data<uint8_t>();
  const float* s = scales.data<float>();
  const uint8_t* zp = zero_points ? zero_points->data<uint8_t>() : nullptr;
  return w4_pack(
      static_cast<int>(N), static_cast<int>(K), static_cast<int>(block),
      [&](int n, int k) {
        const uint8_t byte = codes[(static_cast<int64_t>(n) * kb + k / block) * blob + (k % block) / 2];
        return (k % 2 == 0) ? (byte & 15) : (byte >> 4);
      },
      [&](int n, int blk) { return s[static_cast<int64_t>(n) * kb + blk]; },
      [&](int n, int blk) {
        if (zp == nullptr) return 8;
        const uint8_t byte = zp[static_cast<int64_t>(n) * zp_row + blk / 2];
        return (blk % 2 == 0) ? (byte & 15) : (byte >> 4);
      });
}

std::optional<W4Matrix> w4_from_blocked_dq(const Tensor& q, const Tensor& scale, const Tensor* zero_point, int64_t axis,
                                           int64_t block, bool trans_b) {
  if (q.dtype() != DType::kInt4 && q.dtype() != DType::kUInt4) return std::nullopt;
  if (q.rank() != 2 || !good_block(block)) return std::nullopt;
  if (axis < 0) axis += 2;
  if (axis != (trans_b ? 1 : 0)) return std::nullopt;
  const int64_t K = q.dim(axis), N = q.dim(1 - axis);
  if (K <= 0 || N <= 0 || K > (1 << 30) || N > (1 << 30)) return std::nullopt;
  const int64_t kb = (K + block - 1) / block;
  // scale / zero point: [kb, N] (axis 0) or [N, kb] (axis 1).
  const Shape want = trans_b ? Shape{N, kb} : Shape{kb, N};
  if (scale.dtype() != DType::kFloat32 || scale.shape() != want) return std::nullopt;
  if (zero_point != nullptr && (zero_point->dtype() != q.dtype() || zero_point->shape() != want)) return std::nullopt;
  // Codes as 0..15: int4 q and zero point shifted by 8 (the difference is unchanged).
  const int shift = q.dtype() == DType::kInt4 ? 8 : 0;
  const float* s = scale.data<float>();
  auto param = [&](int n, int blk) { return trans_b ? static_cast<int64_t>(n) * kb + blk : blk * N + n; };
  return w4_pack(
      static_cast<int>(N), static_cast<int>(K), static_cast<int>(block),
      [&](int n, int k) {
        const int64_t i = trans_b ? static_cast<int64_t>(n) * K + k : static_cast<int64_t>(k) * N + n;
        return static_cast<int>(q.get_as_int64(i)) + shift;
      },
      [&](int n, int blk) { return s[param(n, blk)]; },
      [&](int n, int blk) {
        return (zero_point ? static_cast<int>(zero_point->get_as_int64(param(n, blk))) : 0) + shift;
      });
}

namespace {

// A symmetric zero point: every value equals `want` (0 for int8, 128 for uint8).
bool all_equal(const Tensor* zp, int64_t want) {
  if (zp == nullptr) return true;
  for (int64_t i = 0; i < zp->numel(); ++i) {
    if (zp->get_as_int64(i) != want) return false;
  }
  return true;
}

}  // namespace

std::optional<W8Matrix> w8_from_matmul_nbits(int64_t K, int64_t N, int64_t block, const Tensor& b, const Tensor& scales,
                                             const Tensor* zero_points) {
  if (K <= 0 || N <= 0 || K > (1 << 30) || N > (1 << 30) || !good_block(block)) return std::nullopt;
  const int64_t kb = (K + block - 1) / block;
  if (b.dtype() != DType::kUInt8 || b.numel() != N * kb * block) return std::nullopt;
  if (scales.dtype() != DType::kFloat32 || scales.numel() != N * kb) return std::nullopt;
  if (zero_points != nullptr && (zero_points->dtype() != DType::kUInt8 || zero_points->numel() != N * kb))
    return std::nullopt;
  if (!all_equal(zero_points, 128)) return std::nullopt;
  W8Matrix w;
  w.n = static_cast<int>(N);
  w.k = static_cast<int>(K);
  w.block = static_cast<int>(block);
  w.w.resize(static_cast<size_t>(N * K));
  const uint8_t* codes = b.data<uint8_t>();
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k)
      w.w[static_cast<size_t>(n * K + k)] =
          static_cast<int8_t>(int{codes[(n * kb + k / block) * block + k % block]} - 128);
  }
  w.scale.assign(scales.data<float>(), scales.data<float>() + N * kb);
  return w;
}

std::optional<W8Matrix> w8_from_dq(const Tensor& q, const Tensor& scale, const Tensor* zero_point, int64_t axis,
                                   int64_t block, bool trans_b) {
  if ((q.dtype() != DType::kInt8 && q.dtype() != DType::kUInt8) || q.rank() != 2) return std::nullopt;
  if (scale.dtype() != DType::kFloat32 || (zero_point != nullptr && zero_point->dtype() != q.dtype()))
    return std::nullopt;
  const int64_t shift = q.dtype() == DType::kUInt8 ? 128 : 0;
  if (!all_equal(zero_point, shift)) return std::nullopt;
  const int64_t k_axis = trans_b ? 1 : 0;
  const int64_t K = q.dim(k_axis), N = q.dim(1 - k_axis);
  if (K <= 0 || N <= 0 || K > (1 << 30) || N > (1 << 30)) return std::nullopt;
  if (axis < 0) axis += 2;
  W8Matrix w;
  w.n = static_cast<int>(N);
  w.k = static_cast<int>(K);
  const float* s = scale.data<float>();
  if (block > 0) {
    if (!good_block(block) || axis != k_axis) return std::nullopt;
    const int64_t kb = (K + block - 1) / block;
    if (scale.shape() != (trans_b ? Shape{N, kb} : Shape{kb, N})) return std::nullopt;
    w.block = static_cast<int>(block);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t b = 0; b < kb; ++b) w.scale.push_back(s[trans_b ? n * kb + b : b * N + n]);
    }
  } else if (scale.numel() == 1) {
    w.scale.assign(static_cast<size_t>(N), s[0]);
  } else if (scale.rank() == 1 && scale.numel() == N && axis == 1 - k_axis) {
    w.scale.assign(s, s + N);
  } else {
    return std::nullopt;
  }
  w.w.resize(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = 0; k < K; ++k) {
      const int64_t v = q.get_as_int64(trans_b ? n * K + k : k * N + n) - shift;
      w.w[static_cast<size_t>(n * K + k)] = static_cast<int8_t>(v);
    }
  }
  return w;
}

}  // namespace kvant
