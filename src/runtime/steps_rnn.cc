// Compiled LSTM (ONNX semantics, see src/ops/rnn.cc), for the common form:
// layout 0, default activations (Sigmoid, Tanh, Tanh), no clip, no
// peepholes, no sequence_lens, input_forget 0; forward, reverse or
// bidirectional. Per direction:
//   XW = X[T*B, I] W^T + (Wb + Rb)                 one packed GEMM for all steps
//   for each step t:  G = H_{t-1} R^T + XW[t]      packed GEMM, M = batch
//     i, o, f = sigmoid(G_i, G_o, G_f), c~ = tanh(G_c)
//     C_t = f C_{t-1} + i c~,  H_t = o tanh(C_t)
// W and R are packed once at compile time. A recurrent weight given as a
// symmetric DQ(int8) (dynamic/weight-only INT8) stays int8 and runs through
// gemv_w8 (float activations, int8 weights widened in registers: the batch-1
// recurrence is bound by weight traffic); the input projection W, one GEMM
// over all steps, is dequantized once. Both compute what the QDQ graph says,
// up to float summation order.
// sigmoid and tanh use the vectorised exp (vmath.h).
#include <algorithm>
#include <cstring>

#include "kernels/gemv_w8.h"
#include "kernels/sgemm.h"
#include "kernels/vmath.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

class LstmStep : public Step {
 public:
  LstmStep(const Tensor& w, const Tensor& r, const Tensor* b, bool reverse_only, std::vector<W8Matrix> r8)
      : dirs_(static_cast<int>(w.dim(0))),
        hidden_(static_cast<int>(r.dim(2))),
        input_(static_cast<int>(w.dim(2))),
        reverse_only_(reverse_only),
        r8_(std::move(r8)) {
    const int g = 4 * hidden_;
    for (int d = 0; d < dirs_; ++d) {
      w_.push_back(sgemm_pack_b(w.data<float>() + static_cast<int64_t>(d) * g * input_, input_, g, true));
      if (r8_.empty())
        r_.push_back(sgemm_pack_b(r.data<float>() + static_cast<int64_t>(d) * g * hidden_, hidden_, g, true));
      std::vector<float> bias(static_cast<size_t>(g), 0.0f);
      if (b != nullptr) {
        const float* bd = b->data<float>() + static_cast<int64_t>(d) * 2 * g;
        for (int j = 0; j < g; ++j) bias[static_cast<size_t>(j)] = bd[j] + bd[g + j];
      }
      bias_.push_back(std::move(bias));
    }
  }
  std::string kernel() const override {
    std::string s = std::string(r8_.empty() ? "lstm_f32/" : "lstm_f32_w8/") + w_[0].kernel_name();
    if (!r8_.empty()) s += std::string("+") + gemv_w8_name(gemv_w8_default());
    return s + "+" + vmath_name(vmath_default());
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() != 3 || x.dim(2) != input_) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": X must be float32 [seq, batch, " + std::to_string(input_) + "], got " + x.describe());
    }
    const int64_t t = x.dim(0), batch = x.dim(1);
    for (size_t i = 1; i < 3; ++i) {
      if (in.size() > i && in[i] != nullptr &&
          (in[i]->dtype() != DType::kFloat32 || in[i]->shape() != Shape{dirs_, batch, hidden_})) {
        throw Error(ErrorCode::kInvalidArgument, name + ": initial state " + in[i]->describe() + " is not float32 [" +
                                                     std::to_string(dirs_) + "," + std::to_string(batch) + "," +
                                                     std::to_string(hidden_) + "]");
      }
    }
    out.assign(3, {DType::kFloat32, {dirs_, batch, hidden_}});
    out[0].shape = {t, dirs_, batch, hidden_};
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    const int64_t t = in[0]->dim(0), batch = in[0]->dim(1);
    return static_cast<size_t>((t * batch * 4 * hidden_ + batch * 4 * hidden_ + 3 * batch * hidden_) * 4) + 256;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const Tensor& x = *in[0];
    const int t_len = static_cast<int>(x.dim(0)), batch = static_cast<int>(x.dim(1)), h = hidden_, g = 4 * hidden_;
    float* xw = reinterpret_cast<float*>(scratch);
    float* gates = xw + static_cast<int64_t>(t_len) * batch * g;
    float* hs = gates + static_cast<int64_t>(batch) * g;
    float* cs = hs + static_cast<int64_t>(batch) * h;
    float* tmp = cs + static_cast<int64_t>(batch) * h;
    const Tensor* h0 = in.size() > 1 ? in[1] : nullptr;
    const Tensor* c0 = in.size() > 2 ? in[2] : nullptr;
    for (int d = 0; d < dirs_; ++d) {
      const bool reverse = reverse_only_ || d == 1;
      sgemm_packed(t_len * batch, g, input_, x.data<float>(), input_, w_[static_cast<size_t>(d)], xw, g,
                   bias_[static_cast<size_t>(d)].data(), SgemmActivation::none(), pool);
      const int64_t state = static_cast<int64_t>(batch) * h;
      if (h0 != nullptr) {
        std::memcpy(hs, h0->data<float>() + d * state, static_cast<size_t>(state) * 4);
      } else {
        std::fill(hs, hs + state, 0.0f);
      }
      if (c0 != nullptr) {
        std::memcpy(cs, c0->data<float>() + d * state, static_cast<size_t>(state) * 4);
      } else {
        std::fill(cs, cs + state, 0.0f);
      }
      for (int s = 0; s < t_len; ++s) {
        const int t = reverse ? t_len - 1 - s : s;
        if (r8_.empty()) {
          sgemm_packed(batch, g, h, hs, h, r_[static_cast<size_t>(d)], gates, g, nullptr, SgemmActivation::none(),
                       pool);
        } else {
          gemv_w8(r8_[static_cast<size_t>(d)], hs, h, batch, gates, g, false);
        }
        const float* xt = xw + static_cast<int64_t>(t) * batch * g;
        for (int64_t i = 0; i < static_cast<int64_t>(batch) * g; ++i) gates[i] += xt[i];
        for (int b = 0; b < batch; ++b) {
          float* gb = gates + static_cast<int64_t>(b) * g;
          // i, o, f: sigmoid(x) = 1 / (1 + e^-x); c~: tanh(x) = 1 - 2 / (e^2x + 1).
          for (int j = 0; j < 3 * h; ++j) gb[j] = -gb[j];
          for (int j = 3 * h; j < g; ++j) gb[j] = 2.0f * gb[j];
          exp_f32(gb, gb, g);
          for (int j = 0; j < 3 * h; ++j) gb[j] = 1.0f / (1.0f + gb[j]);
          for (int j = 3 * h; j < g; ++j) gb[j] = 1.0f - 2.0f / (gb[j] + 1.0f);
          float* cb = cs + static_cast<int64_t>(b) * h;
          float* hb = hs + static_cast<int64_t>(b) * h;
          for (int j = 0; j < h; ++j) {
            cb[j] = gb[2 * h + j] * cb[j] + gb[j] * gb[3 * h + j];
            tmp[j] = 2.0f * cb[j];
          }
          exp_f32(tmp, tmp, h);
          for (int j = 0; j < h; ++j) hb[j] = gb[h + j] * (1.0f - 2.0f / (tmp[j] + 1.0f));
        }
        if (out[0] != nullptr) {
          float* y = out[0]->data<float>() + (static_cast<int64_t>(t) * dirs_ + d) * state;
          std::memcpy(y, hs, static_cast<size_t>(state) * 4);
        }
      }
      if (out.size() > 1 && out[1] != nullptr)
        std::memcpy(out[1]->data<float>() + d * state, hs, static_cast<size_t>(state) * 4);
      if (out.size() > 2 && out[2] != nullptr)
        std::memcpy(out[2]->data<float>() + d * state, cs, static_cast<size_t>(state) * 4);
    }
  }

 private:
  int dirs_, hidden_, input_;
  bool reverse_only_;
  std::vector<PackedSgemmB> w_, r_;
  std::vector<std::vector<float>> bias_;
  std::vector<W8Matrix> r8_;
};

}  // namespace

std::unique_ptr<Step> make_lstm_step(const Tensor& w, const Tensor& r, const Tensor* b, bool reverse_only,
                                     std::vector<W8Matrix> r8) {
  return std::make_unique<LstmStep>(w, r, b, reverse_only, std::move(r8));
}

}  // namespace kvant
