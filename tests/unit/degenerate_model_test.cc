// No degenerate or invalid model is ever written (issue 15, defects 3, 4, 5).
//
// Defect 3 (before: scale 0 from minmax/moving-average on data near 1e-44,
// ~3.7e-41 from every calibrator on data near 1e-38, weight scale 0 on weights
// near 1e-44, and exit 0): every scale is raised to kMinScale with a warning
// naming the tensor, and save_onnx refuses a zero/subnormal/NaN scale.
// Defect 4 (before: static quantization at opset 11 wrote a per-axis bias
// DequantizeLinear with `axis`, invalid below opset 13; the file was written):
// opset-11 static quantization writes a valid per-tensor model, and
// save_onnx refuses Q/DQ forms the declared opset lacks, writing nothing.
// Defect 5 (before: NaN weights became 0 in dynamic and weight-only mode):
// an error naming the initializer, unless allow_nonfinite.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "io/sample_source.h"
#include "onnx/writer.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

Tensor random_tensor(Shape shape, std::mt19937& rng, float scale) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng) * scale;
  return t;
}

// x[1,2,6,6] -> Conv(4x2x3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4x3) -> y
Model conv_model(int64_t opset, float weight_scale = 1.0f) {
  std::mt19937 rng(7);
  Model m;
  m.opset_imports[""] = opset;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {2, ""}, {6, ""}, {6, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {3, ""}}}});
  g.initializers["W"] = random_tensor({4, 2, 3, 3}, rng, weight_scale);
  g.initializers["b"] = random_tensor({4}, rng, weight_scale);
  g.initializers["W2"] = random_tensor({4, 3}, rng, weight_scale);
  g.initializers["b2"] = random_tensor({3}, rng, weight_scale);
  Node conv = make_node("conv", "Conv", {"x", "W", "b"}, {"c"});
  set_attr(conv, "pads", {1, 1, 1, 1});
  g.nodes = {conv, make_node("relu", "Relu", {"c"}, {"r"}), make_node("gap", "GlobalAveragePool", {"r"}, {"p"}),
             make_node("flatten", "Flatten", {"p"}, {"f"}), make_node("fc", "Gemm", {"f", "W2", "b2"}, {"y"})};
  return m;
}

VectorSource samples(float scale) {
  std::mt19937 rng(3);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < 8; ++i) v.push_back({{"x", random_tensor({1, 2, 6, 6}, rng, scale)}});
  return VectorSource(v);
}

// Every scale input of every Q/DQ/MatMulNBits: finite and a normal float.
void expect_normal_scales(const Model& m, const std::string& label) {
  int checked = 0;
  for (const Node& n : m.graph.nodes) {
    const size_t at = n.op_type == "MatMulNBits" ? 2 : (n.op_type.find("uantizeLinear") != std::string::npos ? 1 : 0);
    if (at == 0 || n.inputs.size() <= at) continue;
    auto s = m.graph.initializers.find(n.inputs[at]);
    if (s == m.graph.initializers.end()) continue;
    for (int64_t i = 0; i < s->second.numel(); ++i) {
      const float v = s->second.data<float>()[i];
      EXPECT_TRUE(std::isfinite(v) && v >= std::numeric_limits<float>::min())
          << label << ": " << n.describe() << " scale[" << i << "] = " << v;
      ++checked;
    }
  }
  EXPECT_GT(checked, 0) << label;
}

bool mentions(const std::vector<std::string>& lines, const std::string& needle) {
  for (const auto& l : lines) {
    if (l.find(needle) != std::string::npos) return true;
  }
  return false;
}

fs::path temp_file(const std::string& name) {
  return fs::temp_directory_path() / ("kvant_degenerate_" + std::to_string(::getpid()) + "_" + name);
}

TEST(DegenerateScales, ChooseQparamsRaisesScalesBelowTheSmallestNormalFloat) {
  for (DType storage : {DType::kUInt8, DType::kInt8, DType::kInt4, DType::kUInt4}) {
    for (Symmetry symmetry : {Symmetry::kAffine, Symmetry::kSymmetric}) {
      for (float hi : {1e-44f, 3e-41f, 1e-38f}) {
        float scale = 0;
        int32_t zp = 0;
        EXPECT_TRUE(choose_qparams(-hi / 2, hi, storage, symmetry, false, &scale, &zp)) << hi;
        EXPECT_EQ(scale, kMinScale) << dtype_name(storage) << " " << hi;
        const QuantRange r = quant_range(storage);
        EXPECT_GE(zp, r.qmin);
        EXPECT_LE(zp, r.qmax);
      }
      float scale = 0;
      int32_t zp = 0;
      EXPECT_FALSE(choose_qparams(-1, 1, storage, symmetry, false, &scale, &zp));
      EXPECT_FALSE(choose_qparams(0, 0, storage, symmetry, false, &scale, &zp));
      EXPECT_EQ(scale, 1.0f) << "an exactly-zero range keeps scale 1";
    }
  }
}

TEST(DegenerateScales, EveryCalibratorGivesNormalScalesOnTinyData) {
  for (const char* method : {"minmax", "moving-average", "percentile", "entropy", "mse"}) {
    for (float magnitude : {1e-44f, 1e-38f}) {
      char mag[32];
      std::snprintf(mag, sizeof mag, "%g", magnitude);
      const std::string label = std::string(method) + " at " + mag;
      VectorSource calib = samples(magnitude);
      QuantizeOptions options;
      options.calibration.method = parse_calibration_method(method);
      QuantizeSummary summary;
      const Model q = quantize_static(conv_model(13), calib, options, &summary);
      expect_normal_scales(q, label);
      // Histogram calibrators see a zero range at 1e-44 (their bins cannot
      // resolve it): scale 1, nothing raised, nothing to warn about.
      const float x_scale = q.graph.initializers.at("x/scale").data<float>()[0];
      if (x_scale != 1.0f) {
        EXPECT_EQ(x_scale, kMinScale) << label;
        EXPECT_TRUE(mentions(summary.warnings, "tensor \"x\"")) << label << ": no warning names the input";
      }
      const fs::path out = temp_file("calib.onnx");
      const Status s = save_onnx(q, out);
      EXPECT_TRUE(s.ok()) << label << ": " << s.message();
      fs::remove(out);
    }
  }
}

TEST(DegenerateScales, TinyWeightsGiveNormalScalesInEveryMode) {
  const Model m = conv_model(13, 1e-44f);
  QuantizeOptions options;
  options.group_size = 16;
  QuantizeSummary dynamic_summary, weight_summary, nbits_summary, static_summary;
  const Model d = quantize_dynamic(m, options, &dynamic_summary);
  const Model w = quantize_weight_only(m, 4, options, &weight_summary);
  const Model n = quantize_matmul_nbits(conv_model(13, 1e-44f), 4, options, &nbits_summary);
  VectorSource calib = samples(1.0f);
  const Model s = quantize_static(m, calib, options, &static_summary);
  expect_normal_scales(w, "weight-only");
  expect_normal_scales(n, "MatMulNBits");
  expect_normal_scales(s, "static");
  for (const auto& [label, model] :
       {std::pair<std::string, const Model*>{"dynamic", &d}, {"weight-only", &w}, {"static", &s}, {"nbits", &n}}) {
    const fs::path out = temp_file(label + ".onnx");
    const Status saved = save_onnx(*model, out);
    EXPECT_TRUE(saved.ok()) << label << ": " << saved.message();
    fs::remove(out);
  }
  EXPECT_TRUE(mentions(weight_summary.warnings, "\"W\"")) << "weight-only names no tensor";
  EXPECT_TRUE(mentions(static_summary.warnings, "\"W\"")) << "static names no tensor";
  EXPECT_TRUE(mentions(static_summary.warnings, "bias \"b\" kept in FP32")) << "the tiny bias scale";
  EXPECT_TRUE(mentions(nbits_summary.warnings, "fc")) << "MatMulNBits names no node";
  // Dynamic's weight scale feeds a Mul, not a Q/DQ: it must be normal too.
  for (const auto& [name, t] : d.graph.initializers) {
    if (!name.ends_with("/W_scale")) continue;
    for (int64_t i = 0; i < t.numel(); ++i) EXPECT_GE(t.data<float>()[i], kMinScale) << name;
  }
}

// A graph with one DequantizeLinear of a constant, at `opset`.
Model dq_model(int64_t opset, Tensor x, Tensor scale, bool axis_attr, int64_t block = 0) {
  Model m;
  m.opset_imports[""] = opset;
  Graph& g = m.graph;
  g.initializers["xq"] = std::move(x);
  g.initializers["s"] = std::move(scale);
  Node dq = make_node("the_dq", "DequantizeLinear", {"xq", "s"}, {"y"});
  if (axis_attr) set_attr(dq, "axis", 0);
  if (block > 0) set_attr(dq, "block_size", block);
  g.nodes = {dq};
  g.outputs.push_back({"y", {DType::kFloat32, false, {}}});
  return m;
}

void expect_refused(const Model& m, const std::string& needle) {
  const fs::path out = temp_file("refused.onnx");
  fs::remove(out);
  const Status s = save_onnx(m, out);
  EXPECT_FALSE(s.ok()) << needle;
  EXPECT_NE(s.message().find("the_dq"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  EXPECT_FALSE(fs::exists(out)) << "a refused model was written";
  fs::remove(out);
}

TEST(ExportCheck, RefusesZeroSubnormalAndNonFiniteScales) {
  const Tensor x = Tensor::from_vector<int8_t>({1, 2, 3, 4}, {4});
  expect_refused(dq_model(13, x, Tensor::scalar<float>(0.0f), false), "not positive");
  expect_refused(dq_model(13, x, Tensor::scalar<float>(3.7e-41f), false), "subnormal");
  expect_refused(dq_model(13, x, Tensor::scalar<float>(NAN), false), "NaN");
  expect_refused(dq_model(13, x, Tensor::scalar<float>(INFINITY), false), "infinite");
  expect_refused(dq_model(13, x, Tensor::from_vector<float>({1, 0, 1, 1}, {4}), true), "element 1");
}

TEST(ExportCheck, RefusesQdqFormsTheOpsetLacks) {
  const Tensor x = Tensor::from_vector<int8_t>({1, 2, 3, 4}, {4});
  expect_refused(dq_model(11, x, Tensor::from_vector<float>({1, 1, 1, 1}, {4}), true), "opset 13");
  expect_refused(dq_model(11, x, Tensor::from_vector<float>({1, 1, 1, 1}, {4}), false), "per-axis");
  expect_refused(dq_model(9, x, Tensor::scalar<float>(1.0f), false), "opset 10");
  expect_refused(dq_model(13, x, Tensor::from_vector<float>({1, 1}, {1, 2}), false), "rank 2");
  expect_refused(dq_model(13, x, Tensor::from_vector<float>({1, 1, 1}, {3}), true), "one value per channel");
  Tensor x2 = Tensor::from_vector<int8_t>({1, 2, 3, 4}, {2, 2});
  expect_refused(dq_model(13, x2, Tensor::from_vector<float>({1, 1}, {2, 1}), true, 2), "opset 21");
  Tensor x4(DType::kInt4, {4});
  expect_refused(dq_model(13, x4, Tensor::scalar<float>(1.0f), false), "int4");
  // The same forms at the opset that has them are written.
  const fs::path out = temp_file("ok.onnx");
  EXPECT_TRUE(save_onnx(dq_model(13, x, Tensor::from_vector<float>({1, 1, 1, 1}, {4}), true), out).ok());
  EXPECT_TRUE(save_onnx(dq_model(21, x4, Tensor::scalar<float>(1.0f), false), out).ok());
  fs::remove(out);
}

TEST(ExportCheck, StaticQuantizationAtOpset11WritesAValidOpset13Model) {
  VectorSource calib = samples(1.0f);
  QuantizeOptions options;  // per channel asked: the opset-11 model is upgraded to 13, which has per-axis DQ
  QuantizeSummary summary;
  const Model q = quantize_static(conv_model(11), calib, options, &summary);
  EXPECT_EQ(q.opset(), 13);
  const fs::path out = temp_file("opset11.onnx");
  const Status s = save_onnx(q, out);
  ASSERT_TRUE(s.ok()) << s.message();
  bool per_axis = false;
  for (const Node& n : q.graph.nodes) per_axis = per_axis || (n.has_attr("axis") && n.op_type == "DequantizeLinear");
  EXPECT_TRUE(per_axis);
  ReferenceExecutor exec(q);
  VectorSource one = samples(1.0f);
  EXPECT_NO_THROW(exec.run(*one.next()));
  fs::remove(out);
}

TEST(NonFiniteWeights, AreAnErrorNamingTheInitializerUnlessAllowed) {
  for (float bad : {NAN, INFINITY}) {
    Model m = conv_model(13);
    m.graph.initializers["W2"].data<float>()[5] = bad;
    QuantizeOptions options;
    options.group_size = 16;
    QuantizeSummary summary;
    auto expect_named = [&](const std::function<void()>& run, const std::string& mode) {
      try {
        run();
        ADD_FAILURE() << mode << ": non-finite weight accepted";
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("initializer \"W2\""), std::string::npos) << mode << ": " << e.what();
        EXPECT_NE(std::string(e.what()).find("--allow-nonfinite"), std::string::npos) << e.what();
      }
    };
    expect_named([&] { quantize_dynamic(m, options, &summary); }, "dynamic");
    expect_named([&] { quantize_weight_only(m, 4, options, &summary); }, "weight-only");
    expect_named([&] { quantize_matmul_nbits(m, 4, options, &summary); }, "nbits");
    expect_named(
        [&] {
          VectorSource calib = samples(1.0f);
          quantize_static(m, calib, options, &summary);
        },
        "static");
    options.allow_nonfinite = true;
    const Model d = quantize_dynamic(m, options, &summary);
    const Model w = quantize_weight_only(m, 4, options, &summary);
    expect_normal_scales(w, "weight-only, allowed");
  }
}

}  // namespace
}  // namespace kvant
