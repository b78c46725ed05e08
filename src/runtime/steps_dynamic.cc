// Compiled steps for dynamic quantization and float matmuls of two
// activations; the math is in steps.h.
#include <algorithm>
#include <cmath>

#include "kernels/gemm_s8.h"
#include "kernels/sgemm.h"
#include "ops/op_registry.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

class DynamicGemmStep : public Step {
 public:
  explicit DynamicGemmStep(DynamicGemmParams p) : p_(std::move(p)) {
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
    return static_cast<size_t>(m * p_.n) * 4 + static_cast<size_t>(m * p_.k) + 64;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const int k = p_.k, n = p_.n;
    const int64_t total = in[0]->numel();
    const int64_t m = total / k;
    const float* x = in[0]->data<float>();
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < total; ++i) {
      if (std::isnan(x[i])) throw Error(ErrorCode::kInvalidArgument, name + ": x contains NaN");
      lo = std::min(lo, x[i]);
      hi = std::max(hi, x[i]);
    }
    const float scale = (hi - lo) / 255.0f;
    if (!std::isfinite(scale)) throw Error(ErrorCode::kInvalidArgument, name + ": x contains infinite values");
    int32_t zp = 0;
    int32_t* acc = reinterpret_cast<int32_t*>(scratch);
    uint8_t* xq = reinterpret_cast<uint8_t*>(scratch + static_cast<size_t>(m * n) * 4);
    if (scale > 0.0f) {
      zp = static_cast<int32_t>(std::clamp(std::nearbyint(static_cast<double>(0.0f - lo / scale)), 0.0, 255.0));
      for (int64_t i = 0; i < total; ++i) {
        const double v = std::nearbyint(static_cast<double>(x[i] / scale)) + zp;
        xq[i] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
    } else {
      std::fill(xq, xq + total, uint8_t{0});
    }
    float* y = out[0]->data<float>();
    const int64_t tiles = (m + 7) / 8;
    parallel_for(pool, tiles, [&](int64_t tb, int64_t te) {
      const int64_t r0 = tb * 8, r1 = std::min(m, te * 8);
      const int rows = static_cast<int>(r1 - r0);
      int32_t* c = acc + r0 * n;
      gemm_u8s8_s32(xq + r0 * k, k, rows, static_cast<uint8_t>(zp), packed_, c, n);
      // The same float operations per element as before, with the branches
      // out of the inner loop so it vectorises.
      const bool per_channel = p_.w_scale.size() != 1;
      const float* bias = p_.bias.empty() ? nullptr : p_.bias.data();
      const float clamp_lo = p_.clamp.lo, clamp_hi = p_.clamp.hi;
      for (int r = 0; r < rows; ++r) {
        float* yr = y + (r0 + r) * n;
        const int32_t* cr = c + static_cast<int64_t>(r) * n;
        if (per_channel) {
          for (int j = 0; j < n; ++j) yr[j] = static_cast<float>(cr[j]) * (scale * p_.w_scale[static_cast<size_t>(j)]);
        } else {
          const float mul = scale * p_.w_scale[0];
          for (int j = 0; j < n; ++j) yr[j] = static_cast<float>(cr[j]) * mul;
        }
        if (bias != nullptr) {
          for (int j = 0; j < n; ++j) yr[j] += bias[j];
        }
        if (p_.clamp.active()) {
          for (int j = 0; j < n; ++j) yr[j] = std::min(std::max(yr[j], clamp_lo), clamp_hi);
        }
      }
    });
  }

 private:
  DynamicGemmParams p_;
  PackedB packed_;
};

class BatchedMatMulStep : public Step {
 public:
  explicit BatchedMatMulStep(const Node& node) : node_(node) {}
  std::string kernel() const override { return std::string("sgemm_batched_") + sgemm_path_name(sgemm_default_path()); }
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
