// Static quantization of an LSTM/GRU in the main graph (design decision 69):
// as inside If/Loop/Scan bodies (decision 62, quantize_static_rnn_body_test.cc),
// W and R become int8 per gate row, the bias stays FP32, and the sequence
// input X and the output Y get Q/DQ with calibrated parameters; the compiled
// runtime runs the result like the QDQ simulation; --exclude keeps it FP32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "graph_builders.h"
#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

constexpr int64_t kSeq = 5, kBatch = 2, kIn = 8, kHidden = 16;

using test_graphs::cosine;
using test_graphs::random_tensor;
using test_graphs::typed;
using test_graphs::untyped;

// x [5, 2, 8] -> LSTM or GRU (hidden 16) -> y [5, 1, 2, 16] -> Squeeze(1) -> s (an output)
//             -> MatMul(s, W2 [16, 3]) -> z (an output)
Model rnn_model(const std::string& op) {
  const int64_t gates = op == "LSTM" ? 4 : 3;
  Model m;
  m.opset_imports[""] = 13;
  m.graph.name = "main_rnn";
  Node rnn = make_node("rnn", op, {"x", "W", "R", "B"}, {"y"});
  set_attr(rnn, "hidden_size", kHidden);
  m.graph.nodes = {rnn, make_node("squeeze", "Squeeze", {"y", "axis1"}, {"s"}),
                   make_node("head", "MatMul", {"s", "W2"}, {"z"})};
  m.graph.inputs = {typed("x", DType::kFloat32, {kSeq, kBatch, kIn})};
  m.graph.outputs = {untyped("s"), untyped("z")};
  m.graph.initializers["W"] = random_tensor({1, gates * kHidden, kIn}, 1, 0.3f);
  m.graph.initializers["R"] = random_tensor({1, gates * kHidden, kHidden}, 2, 0.3f);
  m.graph.initializers["B"] = random_tensor({1, 2 * gates * kHidden}, 3, 0.1f);
  m.graph.initializers["W2"] = random_tensor({kHidden, 3}, 4, 0.5f);
  m.graph.initializers["axis1"] = Tensor(DType::kInt64, {1});
  m.graph.initializers["axis1"].data<int64_t>()[0] = 1;
  return m;
}

Tensor sample_x(uint32_t k) { return random_tensor({kSeq, kBatch, kIn}, 90 + k); }

VectorSource samples(uint32_t n) {
  std::vector<std::map<std::string, Tensor>> v;
  for (uint32_t k = 0; k < n; ++k) v.push_back({{"x", sample_x(k)}});
  return VectorSource(v);
}

const Node* producer(const Graph& g, const std::string& value) {
  for (const Node& n : g.nodes) {
    if (std::find(n.outputs.begin(), n.outputs.end(), value) != n.outputs.end()) return &n;
  }
  return nullptr;
}

// The scale of the QuantizeLinear named after `value`; -1 if none.
float q_scale_of(const Graph& g, const std::string& value) {
  for (const Node& n : g.nodes) {
    if (n.op_type == "QuantizeLinear" && n.name == value + "/QuantizeLinear")
      return g.initializers.at(n.inputs[1]).data<float>()[0];
  }
  return -1.0f;
}

TEST(QuantizeStaticRnn, MainGraphLstmAndGruGetInt8WeightsAndCalibratedXAndY) {
  for (const std::string op : {"LSTM", "GRU"}) {
    SCOPED_TRACE(op);
    const Model fp32 = rnn_model(op);
    VectorSource calib = samples(3);
    QuantizeSummary summary;
    const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
    const Graph& g = q.graph;
    EXPECT_EQ(summary.quantized_nodes, 3) << "the RNN, the Squeeze and the MatMul";
    const Node* rnn = nullptr;
    for (const Node& n : g.nodes) {
      if (n.op_type == op) rnn = &n;
    }
    ASSERT_NE(rnn, nullptr);
    const int64_t rows = (op == "LSTM" ? 4 : 3) * kHidden;
    for (size_t k : {size_t{1}, size_t{2}}) {  // W and R: int8, one scale per gate row
      const Node* dq = producer(g, rnn->inputs[k]);
      ASSERT_TRUE(dq && dq->op_type == "DequantizeLinear") << print_graph(g);
      EXPECT_EQ(g.initializers.at(dq->inputs[0]).dtype(), DType::kInt8);
      EXPECT_EQ(g.initializers.at(dq->inputs[1]).numel(), rows);
    }
    EXPECT_EQ(producer(g, rnn->inputs[3]), nullptr) << "the bias stays an FP32 initializer";
    EXPECT_EQ(g.initializers.at(rnn->inputs[3]).dtype(), DType::kFloat32);
    for (const char* w : {"W", "R"}) EXPECT_EQ(g.initializers.count(w), 0u) << w << ": the float weight is gone";
    // X: the samples' range (uint8, asymmetric); Y: the RNN's own, within (-1, 1).
    float lo = 0, hi = 0;
    for (uint32_t k = 0; k < 3; ++k) {
      const Tensor x = sample_x(k);
      for (int64_t i = 0; i < x.numel(); ++i) {
        lo = std::min(lo, x.data<float>()[i]);
        hi = std::max(hi, x.data<float>()[i]);
      }
    }
    EXPECT_NEAR(q_scale_of(g, "x"), (hi - lo) / 255.0f, 1e-6f * (hi - lo)) << print_graph(g);
    const float y_scale = q_scale_of(g, "y");
    EXPECT_GT(y_scale, 0.0f);
    EXPECT_LE(y_scale, 2.0f / 255.0f);
    // The simulation is close to FP32 and not equal to it; the compiled
    // runtime runs the quantized model within one step of y's grid (s
    // shares y's parameters through the Squeeze).
    CompiledModel compiled(q);
    const std::map<std::string, Tensor> feeds = {{"x", sample_x(1)}};
    const auto want = ReferenceExecutor(fp32).run(feeds);
    const auto got = ReferenceExecutor(q).run(feeds);
    const auto fast = compiled.run(feeds);
    for (const char* out : {"s", "z"}) {
      EXPECT_GT(cosine(want.at(out), got.at(out)), 0.999) << out;
      EXPECT_LT(cosine(want.at(out), got.at(out)), 1.0 - 1e-9) << out << ": no quantization error?";
      EXPECT_GT(cosine(want.at(out), fast.at(out)), 0.999) << out;
    }
    ASSERT_EQ(fast.at("s").shape(), got.at("s").shape());
    for (int64_t i = 0; i < got.at("s").numel(); ++i) {
      ASSERT_NEAR(fast.at("s").get_as_double(i), got.at("s").get_as_double(i), 1.001 * y_scale) << "s[" << i << "]";
    }
  }
}

TEST(QuantizeStaticRnn, ExcludedMainGraphLstmStaysFloat) {
  QuantizeOptions options;
  options.exclude = {"rnn"};
  VectorSource calib = samples(3);
  QuantizeSummary summary;
  const Model q = quantize_static(rnn_model("LSTM"), calib, options, &summary);
  EXPECT_TRUE(q.graph.initializers.count("W") && q.graph.initializers.count("R"));
  EXPECT_EQ(q.graph.initializers.at("W").dtype(), DType::kFloat32);
  EXPECT_LT(q_scale_of(q.graph, "x"), 0.0f) << "nothing else reads x";
  EXPECT_GT(q_scale_of(q.graph, "s"), 0.0f) << "the MatMul's input is still quantized";
  ASSERT_EQ(summary.kept_fp32.size(), 1u);
  EXPECT_EQ(summary.kept_fp32[0], "rnn");
}

}  // namespace
}  // namespace kvant
