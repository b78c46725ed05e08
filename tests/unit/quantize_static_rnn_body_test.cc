// Static quantization of an LSTM inside If branches and a Loop body (design
// decisions 25 and 62): W and R become int8 per gate row, the sequence input
// X and the output Y get Q/DQ whose parameters come from the values the
// branch actually taken computed during calibration; a branch no sample took
// stays FP32 with a reason. The quantized model runs the same on the
// reference executor and the compiled runtime.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>

#include "graph_builders.h"
#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

constexpr int64_t kSeq = 5, kBatch = 2, kIn = 8, kHidden = 16;

using test_graphs::cosine;
using test_graphs::graph_attr;
using test_graphs::random_tensor;
using test_graphs::typed;
using test_graphs::untyped;

Node lstm(const std::string& name, const std::string& x, const std::string& w, const std::string& r,
          const std::string& b, const std::string& y, int64_t hidden) {
  Node n = make_node(name, "LSTM", {x, w, r, b}, {y});
  set_attr(n, "hidden_size", hidden);
  return n;
}

// y = If(c) { LSTM_then(x) } else { LSTM_else(x) }       (Y [seq, 1, batch, 16])
// z = Loop(2, cond, s = x) { s = Squeeze(LSTM_loop(s), 1) }  (hidden 8, so s keeps its shape)
// Every W, R and B is a main-graph initializer, as PyTorch writes them.
Model lstm_in_bodies_model() {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.name = "lstm_in_bodies";
  auto then_g = std::make_shared<Graph>();
  then_g->name = "then";
  then_g->nodes = {lstm("lstm_then", "x", "W1", "R1", "B1", "y_then", kHidden)};
  then_g->outputs = {untyped("y_then")};
  auto else_g = std::make_shared<Graph>();
  else_g->name = "else";
  else_g->nodes = {lstm("lstm_else", "x", "W2", "R2", "B2", "y_else", kHidden)};
  else_g->outputs = {untyped("y_else")};
  Node iff = make_node("if", "If", {"c"}, {"y"});
  iff.attributes["then_branch"] = graph_attr(then_g);
  iff.attributes["else_branch"] = graph_attr(else_g);
  auto body = std::make_shared<Graph>();
  body->name = "body";
  body->inputs = {typed("i", DType::kInt64, {}), typed("cond_in", DType::kBool, {}), untyped("s")};
  body->nodes = {lstm("lstm_loop", "s", "W3", "R3", "B3", "h4", kIn),
                 make_node("squeeze", "Squeeze", {"h4", "axis1"}, {"s_next"}),
                 make_node("keep", "Identity", {"cond_in"}, {"cond_out"})};
  body->outputs = {untyped("cond_out"), untyped("s_next")};
  body->initializers["axis1"] = Tensor(DType::kInt64, {1});
  body->initializers["axis1"].data<int64_t>()[0] = 1;
  Node loop = make_node("loop", "Loop", {"trips", "cond0", "x"}, {"z"});
  loop.attributes["body"] = graph_attr(body);
  m.graph.nodes = {iff, loop};
  m.graph.inputs = {typed("c", DType::kBool, {}), typed("x", DType::kFloat32, {kSeq, kBatch, kIn})};
  m.graph.outputs = {untyped("y"), untyped("z")};
  uint32_t seed = 1;
  for (int k = 1; k <= 3; ++k) {
    const int64_t h = k == 3 ? kIn : kHidden;
    const std::string s = std::to_string(k);
    m.graph.initializers["W" + s] = random_tensor({1, 4 * h, kIn}, seed++, 0.3f);
    m.graph.initializers["R" + s] = random_tensor({1, 4 * h, h}, seed++, 0.3f);
    m.graph.initializers["B" + s] = random_tensor({1, 8 * h}, seed++, 0.1f);
  }
  m.graph.initializers["trips"] = Tensor::scalar<int64_t>(2);
  m.graph.initializers["cond0"] = Tensor::scalar<bool>(true);
  return m;
}

Tensor sample_x(uint32_t k) { return random_tensor({kSeq, kBatch, kIn}, 70 + k); }

class FlagSamples : public SampleSource {
 public:
  explicit FlagSamples(std::vector<bool> flags) : flags_(std::move(flags)) {}
  std::optional<std::map<std::string, Tensor>> next() override {
    if (k_ >= flags_.size()) return std::nullopt;
    const bool c = flags_[k_];
    return std::map<std::string, Tensor>{{"c", Tensor::scalar<bool>(c)}, {"x", sample_x(static_cast<uint32_t>(k_++))}};
  }
  void reset() override { k_ = 0; }
  int64_t size() const override { return static_cast<int64_t>(flags_.size()); }

 private:
  std::vector<bool> flags_;
  size_t k_ = 0;
};

const Graph& body_of(const Model& m, const char* key) {
  for (const Node& n : m.graph.nodes) {
    if (const Graph* body = n.attr_graph(key)) return *body;
  }
  throw Error(ErrorCode::kInvalidArgument, std::string("no body ") + key);
}

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op;
  return n;
}

// The scale of the QuantizeLinear in `g` that reads `value`; -1 if none.
float q_scale_of(const Graph& g, const std::string& value) {
  for (const Node& n : g.nodes) {
    if (n.op_type == "QuantizeLinear" && (n.inputs[0] == value || n.inputs[0] == value + "/float"))
      return g.initializers.at(n.inputs[1]).data<float>()[0];
  }
  return -1.0f;
}

// The DequantizeLinear in `g` that produces `value` reads int8 (per gate row).
void expect_int8_weight(const Graph& g, const std::string& value, int64_t rows) {
  for (const Node& n : g.nodes) {
    if (n.op_type != "DequantizeLinear" || n.outputs[0] != value) continue;
    const Tensor& q = g.initializers.at(n.inputs[0]);
    EXPECT_EQ(q.dtype(), DType::kInt8) << value;
    EXPECT_EQ(g.initializers.at(n.inputs[1]).numel(), rows) << value << ": one scale per gate row";
    return;
  }
  ADD_FAILURE() << "no DequantizeLinear produces " << value << "\n" << print_graph(g);
}

TEST(QuantizeStaticRnnBody, LstmInsideTheTakenBranchIsCalibratedFromIt) {
  const Model fp32 = lstm_in_bodies_model();
  // Only c = true during calibration: the else branch's LSTM never runs.
  FlagSamples only_then({true, true, true});
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, only_then, QuantizeOptions{}, &summary);
  EXPECT_EQ(summary.quantized_nodes, 2) << "the then-branch and Loop-body LSTMs";
  const Graph& then_g = body_of(q, "then_branch");
  const Graph& else_g = body_of(q, "else_branch");
  const Graph& loop_g = body_of(q, "body");
  EXPECT_EQ(count_op(else_g, "QuantizeLinear") + count_op(else_g, "DequantizeLinear"), 0) << print_graph(else_g);
  std::map<std::string, std::string> reasons(summary.fp32_reasons.begin(), summary.fp32_reasons.end());
  ASSERT_TRUE(reasons.count("lstm_else"));
  EXPECT_NE(reasons["lstm_else"].find("never computed"), std::string::npos) << reasons["lstm_else"];
  for (const Graph* g : {&then_g, &loop_g}) {
    const Node* node = nullptr;
    for (const Node& n : g->nodes) {
      if (n.op_type == "LSTM") node = &n;
    }
    ASSERT_NE(node, nullptr);
    const int64_t rows = g == &loop_g ? 4 * kIn : 4 * kHidden;
    expect_int8_weight(*g, node->inputs[1], rows);
    expect_int8_weight(*g, node->inputs[2], rows);
  }
  // X: the captured main-graph input, one Q/DQ at the top of the branch,
  // its scale from the calibration samples' range (uint8, asymmetric).
  float lo = 0, hi = 0;
  for (uint32_t k = 0; k < 3; ++k) {
    const Tensor x = sample_x(k);
    for (int64_t i = 0; i < x.numel(); ++i) {
      lo = std::min(lo, x.data<float>()[i]);
      hi = std::max(hi, x.data<float>()[i]);
    }
  }
  EXPECT_NEAR(q_scale_of(then_g, "x"), (hi - lo) / 255.0f, 1e-6f * (hi - lo)) << print_graph(then_g);
  // Y: an LSTM's output is o * tanh(c), within (-1, 1): its calibrated range
  // is the LSTM's own, not the input's.
  const float y_scale = q_scale_of(then_g, "y_then");
  EXPECT_GT(y_scale, 0.0f);
  EXPECT_LE(y_scale, 2.0f / 255.0f);
  // The Loop's carried state: observed from the Loop input (x) and from what
  // the body computes (h, within (-1, 1)): the range of both.
  EXPECT_NEAR(q_scale_of(loop_g, "s"), (hi - lo) / 255.0f, 1e-6f * (hi - lo)) << print_graph(loop_g);
  EXPECT_GT(q_scale_of(loop_g, "h4"), 0.0f);
  EXPECT_LE(q_scale_of(loop_g, "h4"), 2.0f / 255.0f);

  const float h_scale = q_scale_of(loop_g, "h4");
  CompiledModel compiled(q);
  for (bool c : {true, false}) {
    // A calibration sample: no value outside the calibrated ranges (a new
    // input may exceed the range three samples gave, and be clipped).
    const std::map<std::string, Tensor> feeds = {{"c", Tensor::scalar<bool>(c)}, {"x", sample_x(1)}};
    const auto want = ReferenceExecutor(fp32).run(feeds);
    const auto got = ReferenceExecutor(q).run(feeds);
    const auto fast = compiled.run(feeds);
    for (const char* out : {"y", "z"}) {
      ASSERT_EQ(want.at(out).shape(), got.at(out).shape()) << out;
      EXPECT_GT(cosine(want.at(out), got.at(out)), 0.999) << out << " c=" << c;
      // The compiled runtime runs the same quantized model: within one step
      // of the output's quantization grid (y's, or the Loop body's h4 for z).
      const double step = (std::string(out) == "y" ? y_scale : h_scale) * 1.001;
      ASSERT_EQ(fast.at(out).shape(), got.at(out).shape()) << out;
      for (int64_t i = 0; i < got.at(out).numel(); ++i) {
        ASSERT_NEAR(fast.at(out).get_as_double(i), got.at(out).get_as_double(i), step)
            << out << "[" << i << "] c=" << c;
      }
    }
    if (c) {
      EXPECT_LT(cosine(want.at("y"), got.at("y")), 1.0 - 1e-9) << "no quantization error in the then branch?";
    } else {
      EXPECT_EQ(cosine(want.at("y"), got.at("y")), 1.0) << "the FP32 else branch";
    }
  }

  // Both branches seen: all three LSTMs quantized, the FP32 weights gone.
  FlagSamples both({true, false});
  QuantizeSummary summary2;
  const Model q2 = quantize_static(fp32, both, QuantizeOptions{}, &summary2);
  EXPECT_EQ(summary2.quantized_nodes, 3);
  EXPECT_GE(count_op(body_of(q2, "else_branch"), "QuantizeLinear"), 2);
  for (const char* w : {"W1", "R1", "W2", "R2", "W3", "R3"}) EXPECT_EQ(q2.graph.initializers.count(w), 0u) << w;
}

// --exclude keeps a body LSTM FP32 with the reason.
TEST(QuantizeStaticRnnBody, ExcludedBodyLstmStaysFloat) {
  QuantizeOptions options;
  options.exclude = {"lstm_loop"};
  FlagSamples both({true, false});
  QuantizeSummary summary;
  const Model q = quantize_static(lstm_in_bodies_model(), both, options, &summary);
  EXPECT_EQ(summary.quantized_nodes, 2);
  EXPECT_EQ(count_op(body_of(q, "body"), "QuantizeLinear"), 0);
  std::map<std::string, std::string> reasons(summary.fp32_reasons.begin(), summary.fp32_reasons.end());
  ASSERT_TRUE(reasons.count("lstm_loop"));
  EXPECT_NE(reasons["lstm_loop"].find("--exclude"), std::string::npos);
}

}  // namespace
}  // namespace kvant
