// Compiled GRU (ONNX semantics, src/ops/rnn.cc), the common form: layout 0,
// default activations (Sigmoid, Tanh), no clip, no sequence_lens; forward,
// reverse or bidirectional; linear_before_reset 0 or 1. Per direction, gates
// z, r, h (ONNX order):
//   XW = X[T*B, I] W^T + Wb (+ Rb for z, r; and for h when linear_before_reset = 0)
//                                                one packed GEMM for all steps
//   for each step t:
//     z, r = sigmoid(XW_zr[t] + H_{t-1} R_zr^T)
//     linear_before_reset 0: n = tanh(XW_h[t] + (r . H_{t-1}) R_h^T)
//     linear_before_reset 1: n = tanh(XW_h[t] + r . (H_{t-1} R_h^T + Rb_h))
//     H_t = (1 - z) . n + z . H_{t-1}
// W, R_zr and R_h are packed once at compile time; sigmoid and tanh are the
// vectorised ones of kernels/vmath.h. Equal to the reference up to float
// summation order and vmath's error (vmath.h).
#include <algorithm>
#include <cstring>

#include "kernels/sgemm.h"
#include "kernels/vmath.h"
#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

class GruStep : public Step {
 public:
  GruStep(const Tensor& w, const Tensor& r, const Tensor* b, bool reverse_only, bool linear_before_reset)
      : dirs_(static_cast<int>(w.dim(0))),
        hidden_(static_cast<int>(r.dim(2))),
        input_(static_cast<int>(w.dim(2))),
        reverse_only_(reverse_only),
        lbr_(linear_before_reset) {
    const int h = hidden_, g = 3 * hidden_;
    for (int d = 0; d < dirs_; ++d) {
      w_.push_back(sgemm_pack_b(w.data<float>() + static_cast<int64_t>(d) * g * input_, input_, g, true));
      const float* rd = r.data<float>() + static_cast<int64_t>(d) * g * h;
      r_zr_.push_back(sgemm_pack_b(rd, h, 2 * h, true));
      r_h_.push_back(sgemm_pack_b(rd + static_cast<int64_t>(2) * h * h, h, h, true));
      std::vector<float> bias(static_cast<size_t>(g), 0.0f), rb_h(static_cast<size_t>(h), 0.0f);
      if (b != nullptr) {
        const float* bd = b->data<float>() + static_cast<int64_t>(d) * 2 * g;
        for (int j = 0; j < g; ++j) {
          const bool separate = lbr_ && j >= 2 * h;  // Rb_h goes inside r . (...)
          bias[static_cast<size_t>(j)] = separate ? bd[j] : bd[j] + bd[g + j];
          if (separate) rb_h[static_cast<size_t>(j - 2 * h)] = bd[g + j];
        }
      }
      bias_.push_back(std::move(bias));
      rb_h_.push_back(std::move(rb_h));
    }
  }
  std::string kernel() const override {
    return std::string("gru_f32/") + w_[0].kernel_name() + "+" + vmath_name(vmath_default());
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() != 3 || x.dim(2) != input_) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": X must be float32 [seq, batch, " + std::to_string(input_) + "], got " + x.describe());
    }
    const int64_t batch = x.dim(1);
    if (in.size() > 1 && in[1] != nullptr &&
        (in[1]->dtype() != DType::kFloat32 || in[1]->shape() != Shape{dirs_, batch, hidden_})) {
      throw Error(ErrorCode::kInvalidArgument, name + ": initial_h " + in[1]->describe() + " is not float32 [" +
                                                   std::to_string(dirs_) + "," + std::to_string(batch) + "," +
                                                   std::to_string(hidden_) + "]");
    }
    out.assign(2, {DType::kFloat32, {dirs_, batch, hidden_}});
    out[0].shape = {x.dim(0), dirs_, batch, hidden_};
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    const int64_t t = in[0]->dim(0), batch = in[0]->dim(1);
    return static_cast<size_t>((t * batch * 3 * hidden_ + batch * 2 * hidden_ + 3 * batch * hidden_) * 4) + 256;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const Tensor& x = *in[0];
    const int t_len = static_cast<int>(x.dim(0)), batch = static_cast<int>(x.dim(1)), h = hidden_, g = 3 * hidden_;
    float* xw = reinterpret_cast<float*>(scratch);
    float* zr = xw + static_cast<int64_t>(t_len) * batch * g;  // [batch, 2h]
    float* hn = zr + static_cast<int64_t>(batch) * 2 * h;      // [batch, h]: R_h products
    float* hs = hn + static_cast<int64_t>(batch) * h;          // [batch, h]: the state
    float* rh = hs + static_cast<int64_t>(batch) * h;          // [batch, h]: r . H (linear_before_reset 0)
    const Tensor* h0 = in.size() > 1 ? in[1] : nullptr;
    const int64_t state = static_cast<int64_t>(batch) * h;
    for (int d = 0; d < dirs_; ++d) {
      const auto di = static_cast<size_t>(d);
      const bool reverse = reverse_only_ || d == 1;
      sgemm_packed(t_len * batch, g, input_, x.data<float>(), input_, w_[di], xw, g, bias_[di].data(),
                   SgemmActivation::none(), pool);
      if (h0 != nullptr) {
        std::memcpy(hs, h0->data<float>() + d * state, static_cast<size_t>(state) * 4);
      } else {
        std::fill(hs, hs + state, 0.0f);
      }
      for (int s = 0; s < t_len; ++s) {
        const int t = reverse ? t_len - 1 - s : s;
        const float* xt = xw + static_cast<int64_t>(t) * batch * g;
        sgemm_packed(batch, 2 * h, h, hs, h, r_zr_[di], zr, 2 * h, nullptr, SgemmActivation::none(), pool);
        for (int b = 0; b < batch; ++b) {
          float* zb = zr + static_cast<int64_t>(b) * 2 * h;
          const float* xb = xt + static_cast<int64_t>(b) * g;
          for (int j = 0; j < 2 * h; ++j) zb[j] += xb[j];
          sigmoid_f32(zb, zb, 2 * h);
        }
        if (lbr_) {
          sgemm_packed(batch, h, h, hs, h, r_h_[di], hn, h, rb_h_[di].data(), SgemmActivation::none(), pool);
          for (int b = 0; b < batch; ++b) {
            const float* rb = zr + static_cast<int64_t>(b) * 2 * h + h;
            const float* xb = xt + static_cast<int64_t>(b) * g + 2 * h;
            float* nb = hn + static_cast<int64_t>(b) * h;
            for (int j = 0; j < h; ++j) nb[j] = xb[j] + rb[j] * nb[j];
          }
        } else {
          for (int b = 0; b < batch; ++b) {
            const float* rb = zr + static_cast<int64_t>(b) * 2 * h + h;
            for (int j = 0; j < h; ++j) rh[b * h + j] = rb[j] * hs[b * h + j];
          }
          sgemm_packed(batch, h, h, rh, h, r_h_[di], hn, h, nullptr, SgemmActivation::none(), pool);
          for (int b = 0; b < batch; ++b) {
            const float* xb = xt + static_cast<int64_t>(b) * g + 2 * h;
            float* nb = hn + static_cast<int64_t>(b) * h;
            for (int j = 0; j < h; ++j) nb[j] += xb[j];
          }
        }
        tanh_f32(hn, hn, state);
        for (int b = 0; b < batch; ++b) {
          const float* zb = zr + static_cast<int64_t>(b) * 2 * h;
          const float* nb = hn + static_cast<int64_t>(b) * h;
          float* hb = hs + static_cast<int64_t>(b) * h;
          for (int j = 0; j < h; ++j) hb[j] = (1.0f - zb[j]) * nb[j] + zb[j] * hb[j];
        }
        if (out[0] != nullptr) {
          float* y = out[0]->data<float>() + (static_cast<int64_t>(t) * dirs_ + d) * state;
          std::memcpy(y, hs, static_cast<size_t>(state) * 4);
        }
      }
      if (out.size() > 1 && out[1] != nullptr)
        std::memcpy(out[1]->data<float>() + d * state, hs, static_cast<size_t>(state) * 4);
    }
  }

 private:
  int dirs_, hidden_, input_;
  bool reverse_only_, lbr_;
  std::vector<PackedSgemmB> w_, r_zr_, r_h_;
  std::vector<std::vector<float>> bias_, rb_h_;
};

}  // namespace

std::unique_ptr<Step> make_gru_step(const Tensor& w, const Tensor& r, const Tensor* b, bool reverse_only,
                                    bool linear_before_reset) {
  return std::make_unique<GruStep>(w, r, b, reverse_only, linear_before_reset);
}

}  // namespace kvant
