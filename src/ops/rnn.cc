// Recurrent reference kernels: RNN, GRU, LSTM (ONNX opsets 7..21).
//
// Shapes (layout 0; layout 1, opset 14+, swaps the first two axes of X, Y,
// Y_h, Y_c, initial_h, initial_c):
//   X [seq, batch, input]    W [dirs, G*H, input]   R [dirs, G*H, H]
//   B [dirs, 2*G*H] = Wb ++ Rb (optional, default 0)
//   sequence_lens [batch] int32 (optional, default seq)
//   initial_h / initial_c [dirs, batch, H] (optional, default 0)
//   P [dirs, 3*H] LSTM peepholes in order i, o, f (optional, default 0)
//   Y [seq, dirs, batch, H]   Y_h / Y_c [dirs, batch, H]   (each optional)
// dirs is 2 for direction "bidirectional" (forward then reverse), else 1.
//
// Equations for one direction, t over the valid steps of a batch entry
// (reverse runs t = len-1 .. 0); f, g, h are the activations, each gate's
// pre-activation is clamped to [-clip, clip] when `clip` is given:
//   RNN  (G=1, default f=Tanh):
//     H_t = f(X_t Wi^T + H_{t-1} Ri^T + Wbi + Rbi)
//   GRU  (G=3, gates z, r, h; default f=Sigmoid, g=Tanh):
//     z = f(X_t Wz^T + H_{t-1} Rz^T + Wbz + Rbz)
//     r = f(X_t Wr^T + H_{t-1} Rr^T + Wbr + Rbr)
//     n = g(X_t Wh^T + (r . H_{t-1}) Rh^T + Rbh + Wbh)          linear_before_reset = 0
//     n = g(X_t Wh^T + r . (H_{t-1} Rh^T + Rbh) + Wbh)          linear_before_reset = 1
//     H_t = (1 - z) . n + z . H_{t-1}
//   LSTM (G=4, gates i, o, f, c; default f=Sigmoid, g=Tanh, h=Tanh):
//     i = f(X_t Wi^T + H_{t-1} Ri^T + Pi . C_{t-1} + Wbi + Rbi)
//     f = f(X_t Wf^T + H_{t-1} Rf^T + Pf . C_{t-1} + Wbf + Rbf)   (1 - i when input_forget)
//     c = g(X_t Wc^T + H_{t-1} Rc^T + Wbc + Rbc)
//     C_t = f . C_{t-1} + i . c
//     o = f(X_t Wo^T + H_{t-1} Ro^T + Po . C_t + Wbo + Rbo)
//     H_t = o . h(C_t)
// A batch entry shorter than seq (sequence_lens) has Y = 0 past its length;
// Y_h / Y_c hold its last computed state (its initial state when the length
// is 0).
//
// activations lists the functions per direction (f[, g[, h]] then the reverse
// direction's); a list for one direction is used for both. activation_alpha
// and activation_beta are consumed in order by the functions that take them
// (Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu);
// missing values take the ONNX operators' defaults.
// Arithmetic is float for every input type (float16/float64 are converted).
#include <algorithm>
#include <cctype>
#include <cmath>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

enum class CellKind { kRnn, kGru, kLstm };

struct Activation {
  enum class Kind {
    kRelu,
    kTanh,
    kSigmoid,
    kAffine,
    kLeakyRelu,
    kThresholdedRelu,
    kScaledTanh,
    kHardSigmoid,
    kElu,
    kSoftsign,
    kSoftplus
  };
  Kind kind = Kind::kTanh;
  float alpha = 0.0f;
  float beta = 0.0f;

  float operator()(float x) const {
    switch (kind) {
      case Kind::kRelu: return std::max(0.0f, x);
      case Kind::kTanh: return std::tanh(x);
      case Kind::kSigmoid: return 1.0f / (1.0f + std::exp(-x));
      case Kind::kAffine: return alpha * x + beta;
      case Kind::kLeakyRelu: return x >= 0.0f ? x : alpha * x;
      case Kind::kThresholdedRelu: return x > alpha ? x : 0.0f;
      case Kind::kScaledTanh: return alpha * std::tanh(beta * x);
      case Kind::kHardSigmoid: return std::clamp(alpha * x + beta, 0.0f, 1.0f);
      case Kind::kElu: return x >= 0.0f ? x : alpha * (std::exp(x) - 1.0f);
      case Kind::kSoftsign: return x / (1.0f + std::fabs(x));
      case Kind::kSoftplus: return std::log1p(std::exp(x));
    }
    return x;
  }
};

// Parses activations / activation_alpha / activation_beta into
// `per_direction` functions for each of `dirs` directions.
std::vector<Activation> parse_activations(const KernelContext& ctx, const std::vector<std::string>& defaults,
                                          int64_t dirs) {
  const size_t per_direction = defaults.size();
  std::vector<std::string> names = ctx.node.attr_strings("activations", {});
  if (names.empty()) {
    for (int64_t d = 0; d < dirs; ++d) names.insert(names.end(), defaults.begin(), defaults.end());
  } else if (names.size() == per_direction && dirs == 2) {
    names.insert(names.end(), names.begin(), names.end());
  } else if (names.size() != per_direction * static_cast<size_t>(dirs)) {
    ctx.fail("activations lists " + std::to_string(names.size()) + " functions; expected " +
             std::to_string(per_direction * static_cast<size_t>(dirs)));
  }
  const std::vector<float> alphas = ctx.node.attr_floats("activation_alpha", {});
  const std::vector<float> betas = ctx.node.attr_floats("activation_beta", {});
  size_t next_alpha = 0, next_beta = 0;
  auto take = [](const std::vector<float>& list, size_t& next, float fallback) {
    return next < list.size() ? list[next++] : fallback;
  };
  struct Known {
    const char* name;
    Activation::Kind kind;
    bool has_alpha, has_beta;
    float alpha, beta;
  };
  static constexpr Known kKnown[] = {
      {"relu", Activation::Kind::kRelu, false, false, 0, 0},
      {"tanh", Activation::Kind::kTanh, false, false, 0, 0},
      {"sigmoid", Activation::Kind::kSigmoid, false, false, 0, 0},
      {"affine", Activation::Kind::kAffine, true, true, 1.0f, 0.0f},
      {"leakyrelu", Activation::Kind::kLeakyRelu, true, false, 0.01f, 0},
      {"thresholdedrelu", Activation::Kind::kThresholdedRelu, true, false, 1.0f, 0},
      {"scaledtanh", Activation::Kind::kScaledTanh, true, true, 1.0f, 1.0f},
      {"hardsigmoid", Activation::Kind::kHardSigmoid, true, true, 0.2f, 0.5f},
      {"elu", Activation::Kind::kElu, true, false, 1.0f, 0},
      {"softsign", Activation::Kind::kSoftsign, false, false, 0, 0},
      {"softplus", Activation::Kind::kSoftplus, false, false, 0, 0},
  };
  std::vector<Activation> out;
  for (const std::string& name : names) {
    std::string lower = name;
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const Known* found = nullptr;
    for (const Known& k : kKnown) {
      if (lower == k.name) found = &k;
    }
    if (found == nullptr) ctx.unsupported("activation function '" + name + "'");
    Activation act;
    act.kind = found->kind;
    act.alpha = found->has_alpha ? take(alphas, next_alpha, found->alpha) : 0.0f;
    act.beta = found->has_beta ? take(betas, next_beta, found->beta) : 0.0f;
    out.push_back(act);
  }
  return out;
}

// Optional float input as a float vector checked to have `shape`; empty when
// the input is omitted.
std::vector<float> optional_input(const KernelContext& ctx, size_t index, const Shape& shape, const char* what) {
  if (!ctx.has_input(index)) return {};
  const Tensor& t = ctx.input(index);
  if (t.shape() != shape) {
    ctx.fail(std::string(what) + " must have shape " + shape_to_string(shape) + ", got " + t.describe());
  }
  return t.to_float_vector();
}

void run_recurrent(KernelContext& ctx, CellKind kind) {
  const Node& node = ctx.node;
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const Tensor& r = ctx.input(2);
  if (!is_float(x.dtype())) ctx.unsupported(std::string("X of type ") + dtype_name(x.dtype()));
  const int64_t gates = kind == CellKind::kRnn ? 1 : kind == CellKind::kGru ? 3 : 4;
  const std::string direction = node.attr_string("direction", "forward");
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional") {
    ctx.fail("direction '" + direction + "' is not one of forward, reverse, bidirectional");
  }
  const int64_t dirs = direction == "bidirectional" ? 2 : 1;
  const int64_t layout = ctx.opset >= 14 ? node.attr_int("layout", 0) : 0;
  if (layout != 0 && layout != 1) ctx.fail("layout must be 0 or 1, got " + std::to_string(layout));
  if (x.rank() != 3 || w.rank() != 3 || r.rank() != 3) {
    ctx.fail("X, W and R must have rank 3, got " + x.describe() + ", " + w.describe() + ", " + r.describe());
  }
  const int64_t seq = layout == 0 ? x.dim(0) : x.dim(1);
  const int64_t batch = layout == 0 ? x.dim(1) : x.dim(0);
  const int64_t in = x.dim(2);
  const int64_t hidden = node.attr_int("hidden_size", r.dim(2));
  const int64_t gh = gates * hidden;
  if (w.shape() != Shape{dirs, gh, in}) {
    ctx.fail("W must have shape " + shape_to_string({dirs, gh, in}) + ", got " + w.describe());
  }
  if (r.shape() != Shape{dirs, gh, hidden}) {
    ctx.fail("R must have shape " + shape_to_string({dirs, gh, hidden}) + ", got " + r.describe());
  }
  const Shape state_shape = layout == 0 ? Shape{dirs, batch, hidden} : Shape{batch, dirs, hidden};
  const std::vector<float> bias = optional_input(ctx, 3, {dirs, 2 * gh}, "B");
  std::vector<int64_t> lengths(static_cast<size_t>(batch), seq);
  if (ctx.has_input(4)) {
    const Tensor& sl = ctx.input(4);
    if (sl.shape() != Shape{batch} || !is_integer(sl.dtype())) {
      ctx.fail("sequence_lens must be int32 of shape [" + std::to_string(batch) + "], got " + sl.describe());
    }
    lengths = sl.to_int64_vector();
    for (int64_t len : lengths) {
      if (len < 0 || len > seq) ctx.fail("sequence_lens value " + std::to_string(len) + " is outside [0, seq]");
    }
  }
  const std::vector<float> init_h = optional_input(ctx, 5, state_shape, "initial_h");
  std::vector<float> init_c, peep;
  if (kind == CellKind::kLstm) {
    init_c = optional_input(ctx, 6, state_shape, "initial_c");
    peep = optional_input(ctx, 7, {dirs, 3 * hidden}, "P");
  }
  const bool has_clip = node.has_attr("clip");
  const float clip = node.attr_float("clip", 0.0f);
  if (has_clip && !(clip > 0.0f)) ctx.fail("clip must be positive");
  const bool input_forget = kind == CellKind::kLstm && node.attr_int("input_forget", 0) != 0;
  const bool linear_before_reset = kind == CellKind::kGru && node.attr_int("linear_before_reset", 0) != 0;
  const std::vector<std::string> defaults = kind == CellKind::kRnn ? std::vector<std::string>{"Tanh"}
                                            : kind == CellKind::kGru
                                                ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
  const std::vector<Activation> acts = parse_activations(ctx, defaults, dirs);
  const size_t acts_per_dir = defaults.size();

  const std::vector<float> xv = x.to_float_vector(), wv = w.to_float_vector(), rv = r.to_float_vector();
  std::vector<float> y(static_cast<size_t>(seq * dirs * batch * hidden), 0.0f);
  std::vector<float> y_h(static_cast<size_t>(dirs * batch * hidden), 0.0f), y_c(y_h.size(), 0.0f);
  auto x_at = [&](int64_t t, int64_t b) { return xv.data() + (layout == 0 ? (t * batch + b) : (b * seq + t)) * in; };
  auto y_at = [&](int64_t t, int64_t d, int64_t b) {
    return y.data() + (layout == 0 ? ((t * dirs + d) * batch + b) : ((b * seq + t) * dirs + d)) * hidden;
  };
  auto state_offset = [&](int64_t d, int64_t b) { return (layout == 0 ? d * batch + b : b * dirs + d) * hidden; };
  auto clamp = [&](float v) { return has_clip ? std::clamp(v, -clip, clip) : v; };

  std::vector<float> h(static_cast<size_t>(hidden)), c(h.size()), pre_x(static_cast<size_t>(gh)),
      pre_h(static_cast<size_t>(gh)), h_new(h.size()), reset(h.size()), reset_h(h.size());
  for (int64_t d = 0; d < dirs; ++d) {
    const bool reverse = direction == "reverse" || d == 1;
    const float* wd = wv.data() + d * gh * in;
    const float* rd = rv.data() + d * gh * hidden;
    const float* wb = bias.empty() ? nullptr : bias.data() + d * 2 * gh;
    const float* rb = bias.empty() ? nullptr : wb + gh;
    const float* pd = peep.empty() ? nullptr : peep.data() + d * 3 * hidden;
    const Activation* act = acts.data() + static_cast<size_t>(d) * acts_per_dir;
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t so = state_offset(d, b);
      for (int64_t j = 0; j < hidden; ++j) {
        h[static_cast<size_t>(j)] = init_h.empty() ? 0.0f : init_h[static_cast<size_t>(so + j)];
        c[static_cast<size_t>(j)] = init_c.empty() ? 0.0f : init_c[static_cast<size_t>(so + j)];
      }
      const int64_t len = lengths[static_cast<size_t>(b)];
      for (int64_t step = 0; step < len; ++step) {
        const int64_t t = reverse ? len - 1 - step : step;
        // pre_x = W x_t + Wb, pre_h = R h + Rb (per gate row).
        const float* xt = x_at(t, b);
        for (int64_t g = 0; g < gh; ++g) {
          float sx = wb ? wb[g] : 0.0f, sh = rb ? rb[g] : 0.0f;
          const float* wrow = wd + g * in;
          for (int64_t i = 0; i < in; ++i) sx += wrow[i] * xt[i];
          const float* rrow = rd + g * hidden;
          if (!(kind == CellKind::kGru && !linear_before_reset && g >= 2 * hidden)) {
            for (int64_t i = 0; i < hidden; ++i) sh += rrow[i] * h[static_cast<size_t>(i)];
          }
          pre_x[static_cast<size_t>(g)] = sx;
          pre_h[static_cast<size_t>(g)] = sh;
        }
        auto gate = [&](int64_t index, int64_t j) {
          const size_t at = static_cast<size_t>(index * hidden + j);
          return pre_x[at] + pre_h[at];
        };
        if (kind == CellKind::kGru) {
          for (int64_t j = 0; j < hidden; ++j) {
            const size_t js = static_cast<size_t>(j);
            reset[js] = act[0](clamp(gate(1, j)));
            reset_h[js] = reset[js] * h[js];
          }
        }
        for (int64_t j = 0; j < hidden; ++j) {
          const size_t js = static_cast<size_t>(j);
          if (kind == CellKind::kRnn) {
            h_new[js] = act[0](clamp(gate(0, j)));
          } else if (kind == CellKind::kGru) {
            const float z = act[0](clamp(gate(0, j)));
            float n_pre = pre_x[static_cast<size_t>(2 * hidden + j)];
            if (linear_before_reset) {
              n_pre += reset[js] * pre_h[static_cast<size_t>(2 * hidden + j)];
            } else {
              // (r . H) Rh^T + Rbh: pre_h for this gate holds only Rbh so far.
              const float* rrow = rd + (2 * hidden + j) * hidden;
              float s = pre_h[static_cast<size_t>(2 * hidden + j)];
              for (int64_t i = 0; i < hidden; ++i) s += rrow[i] * reset_h[static_cast<size_t>(i)];
              n_pre += s;
            }
            const float n = act[1](clamp(n_pre));
            h_new[js] = (1.0f - z) * n + z * h[js];
          } else {
            const float c_prev = c[js];
            const float i_gate = act[0](clamp(gate(0, j) + (pd ? pd[j] * c_prev : 0.0f)));
            const float f_gate =
                input_forget ? 1.0f - i_gate : act[0](clamp(gate(2, j) + (pd ? pd[2 * hidden + j] * c_prev : 0.0f)));
            const float c_cand = act[1](clamp(gate(3, j)));
            const float c_new = f_gate * c_prev + i_gate * c_cand;
            const float o_gate = act[0](clamp(gate(1, j) + (pd ? pd[hidden + j] * c_new : 0.0f)));
            c[js] = c_new;
            h_new[js] = o_gate * act[2](c_new);
          }
        }
        h.swap(h_new);
        std::copy(h.begin(), h.end(), y_at(t, d, b));
      }
      std::copy(h.begin(), h.end(), y_h.begin() + so);
      std::copy(c.begin(), c.end(), y_c.begin() + so);
    }
  }

  auto make = [&](const std::vector<float>& values, const Shape& shape) {
    Tensor out(x.dtype(), shape);
    dispatch<FloatTypes>(x.dtype(), ctx, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* p = out.data<T>();
      for (size_t i = 0; i < values.size(); ++i) p[i] = from_compute<T>(static_cast<compute_t<T>>(values[i]));
    });
    return out;
  };
  if (ctx.wants_output(0)) {
    ctx.set_output(0, make(y, layout == 0 ? Shape{seq, dirs, batch, hidden} : Shape{batch, seq, dirs, hidden}));
  }
  if (ctx.wants_output(1)) ctx.set_output(1, make(y_h, state_shape));
  if (kind == CellKind::kLstm && ctx.wants_output(2)) ctx.set_output(2, make(y_c, state_shape));
}

void rnn(KernelContext& ctx) { run_recurrent(ctx, CellKind::kRnn); }
void gru(KernelContext& ctx) { run_recurrent(ctx, CellKind::kGru); }
void lstm(KernelContext& ctx) { run_recurrent(ctx, CellKind::kLstm); }

constexpr OpDef kRnnOps[] = {
    {"RNN", "", rnn},
    {"GRU", "", gru},
    {"LSTM", "", lstm},
};

}  // namespace

std::span<const OpDef> rnn_ops() { return kRnnOps; }

}  // namespace kvant
