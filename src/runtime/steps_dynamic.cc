// Compiled steps for dynamic quantization and float matmuls of two
// activations; the math is in steps.h.
#include <algorithm>
#include <cmath>

#include "kernels/dynamic_quant.h"
#include "kernels/gemm_s8.h"
#include "kernels/sgemm.h"
#include "ops/op_registry.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

class DynamicGemmStep : public Step {
 public:
  explicit DynamicGemmStep(DynamicGemmParams p) : p_(std::move(p)), fq_(&pick_float_quant(p_.isa)) {
    packed_ = pack_b_s8(p_.weight.data(), p_.k, p_.n, p_.isa, p_.w_zp.empty() ? nullptr : p_.w_zp.data());
    p_.weight = {};
  }
  std::string kernel() const override { return std::string("dynamic_") + packed_.kernel_name(); }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() < 1 || x.shape().back() != p_.k) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": input " + x.describe() + " does not match the weight's K " + std::to_string(p_.k));
    }
    Shape s = x.shape();
    s.back() = p_.n;
    out.assign(1, {DType::kFloat32, s});
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    const int64_t m = in[0]->numel() / p_.k;
    return static_cast<size_t>(m * p_.n) * 4 + static_cast<size_t>(m * p_.k) + static_cast<size_t>(p_.n) * 4 + 192;
  }
  // x quantized as DynamicQuantizeLinear does (dynamic_quant.h, bit for bit),
  // the GEMM over row blocks, then y = float(acc) * (x_scale * w_scale[n])
  // [+ bias[n]] [clamped], the simulation's float operations.
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const int k = p_.k, n = p_.n;
    const int64_t total = in[0]->numel();
    const int64_t m = total / k;
    const float* x = in[0]->data<float>();
    float lo = 0.0f, hi = 0.0f;
    if (!fq_->range(x, total, &lo, &hi)) throw Error(ErrorCode::kInvalidArgument, name + ": x contains NaN");
    const float scale = (hi - lo) / 255.0f;
    if (!std::isfinite(scale)) throw Error(ErrorCode::kInvalidArgument, name + ": x contains infinite values");
    int32_t zp = 0;
    int32_t* acc = reinterpret_cast<int32_t*>(scratch);
    uint8_t* xq = reinterpret_cast<uint8_t*>(scratch + static_cast<size_t>(m * n) * 4);
    float* mult = reinterpret_cast<float*>(
        scratch + (static_cast<size_t>(m * n) * 4 + static_cast<size_t>(m * k) + 63) / 64 * 64);
    if (scale > 0.0f) {
      zp = static_cast<int32_t>(std::clamp(std::nearbyint(static_cast<double>(0.0f - lo / scale)), 0.0, 255.0));
      constexpr int64_t kChunk = 16384;
      parallel_for(pool, (total + kChunk - 1) / kChunk, [&](int64_t b, int64_t e) {
        const int64_t i0 = b * kChunk, i1 = std::min(total, e * kChunk);
        fq_->quantize(x + i0, i1 - i0, scale, zp, xq + i0);
      });
    } else {
      std::fill(xq, xq + total, uint8_t{0});
    }
    const bool per_channel = p_.w_scale.size() != 1;
    for (int j = 0; j < n; ++j) mult[j] = scale * p_.w_scale[per_channel ? static_cast<size_t>(j) : 0];
    float* y = out[0]->data<float>();
    const int64_t tiles = (m + 7) / 8;
    parallel_for(pool, tiles, [&](int64_t tb, int64_t te) {
      const int64_t r0 = tb * 8, r1 = std::min(m, te * 8);
      const int rows = static_cast<int>(r1 - r0);
      gemm_u8s8_dequant(xq + r0 * k, k, rows, static_cast<uint8_t>(zp), packed_,
                        DequantRowsArgs{nullptr, n, rows, n, nullptr, mult, p_.bias.empty() ? nullptr : p_.bias.data(),
                                        p_.clamp.lo, p_.clamp.hi, y + r0 * n, n},
                        acc + r0 * n, *fq_);
    });
  }

 private:
  DynamicGemmParams p_;
  const FloatQuantKernel* fq_;
  PackedB packed_;
};

class BatchedMatMulStep : public Step {
 public:
  explicit BatchedMatMulStep(const Node& node) : node_(node) {}
  std::string kernel() const override {
    return std::string("sgemm_batched/") + sgemm_kernel_name(sgemm_default_kernel());
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    use_reference_ = a.rank() < 2 || b.rank() < 2 || a.dtype() != DType::kFloat32 || b.dtype() != DType::kFloat32;
    if (use_reference_) {  // 1-D operands and other types: the reference op, copied into place
      std::vector<Tensor> r = reference(in);
      out.assign(1, {r[0].dtype(), r[0].shape()});
      return;
    }
    if (a.dtype() != DType::kFloat32 || b.dtype() != DType::kFloat32 || a.rank() < 2 || b.rank() < 2 ||
        a.shape().back() != b.dim(b.rank() - 2)) {
      throw Error(ErrorCode::kInvalidArgument, name + ": cannot multiply " + a.describe() + " by " + b.describe());
    }
    const size_t batch_rank = static_cast<size_t>(std::max(a.rank(), b.rank()) - 2);
    Shape s(batch_rank);
    for (size_t i = 0; i < batch_rank; ++i) {
      const int64_t da = dim_from_end(a.shape(), batch_rank - i + 2);
      const int64_t db = dim_from_end(b.shape(), batch_rank - i + 2);
      if (da != db && da != 1 && db != 1)
        throw Error(ErrorCode::kInvalidArgument, name + ": batch dims do not broadcast");
      s[i] = std::max(da, db);
    }
    s.push_back(a.dim(a.rank() - 2));
    s.push_back(b.dim(b.rank() - 1));
    out.assign(1, {DType::kFloat32, s});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    if (use_reference_) {
      std::vector<Tensor> r = reference(in);
      std::copy_n(static_cast<const std::byte*>(r[0].raw()), r[0].nbytes(), static_cast<std::byte*>(out[0]->raw()));
      return;
    }
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    Tensor& y = *out[0];
    const int m = static_cast<int>(a.dim(a.rank() - 2)), k = static_cast<int>(a.shape().back());
    const int n = static_cast<int>(b.shape().back());
    const int yr = y.rank();
    const int64_t batches = y.numel() / (static_cast<int64_t>(m) * n);
    parallel_for(pool, batches, [&](int64_t b0, int64_t b1) {
      for (int64_t bi = b0; bi < b1; ++bi) {
        // Offsets of a and b for output batch bi, dims broadcast from the right.
        int64_t rest = bi, off_a = 0, off_b = 0, stride_a = static_cast<int64_t>(m) * k,
                stride_b = static_cast<int64_t>(k) * n;
        for (int d = yr - 3; d >= 0; --d) {
          const int64_t size = y.dim(d), idx = rest % size;
          rest /= size;
          const int from_end = yr - d;
          const int64_t da = dim_from_end(a.shape(), static_cast<size_t>(from_end));
          const int64_t db = dim_from_end(b.shape(), static_cast<size_t>(from_end));
          if (da != 1) off_a += idx * stride_a;
          if (db != 1) off_b += idx * stride_b;
          stride_a *= da;
          stride_b *= db;
        }
        sgemm(false, false, m, n, k, 1.0f, a.data<float>() + off_a, k, b.data<float>() + off_b, n, 0.0f,
              y.data<float>() + bi * m * n, n);
      }
    });
  }

 private:
  std::vector<Tensor> reference(std::span<const Tensor* const> in) const {
    KernelContext ctx{node_, 13, {in.begin(), in.end()}, {}, nullptr};
    ctx.outputs.resize(1);
    find_op("", "MatMul")->run(ctx);
    return std::move(ctx.outputs);
  }
  Node node_;
  mutable bool use_reference_ = false;
  // Dim `from_end` counted from the right (1 = last); 1 past the rank.
  static int64_t dim_from_end(const Shape& s, size_t from_end) {
    return from_end <= s.size() ? s[s.size() - from_end] : 1;
  }
};

}  // namespace

std::unique_ptr<Step> make_dynamic_gemm_step(DynamicGemmParams params) {
  return std::make_unique<DynamicGemmStep>(std::move(params));
}
std::unique_ptr<Step> make_batched_matmul_step(const Node& node) { return std::make_unique<BatchedMatMulStep>(node); }

}  // namespace kvant
