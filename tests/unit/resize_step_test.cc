// The compiled Resize step (steps_resize.cc) against the reference kernel:
// bit-exact for every mode, coordinate mode and nearest_mode, up and down,
// integer and fractional scales, scales or sizes; the plan shows the step;
// DQ -> Resize(nearest) -> Q runs on the codes; bad scales are a named
// error; a planned run allocates nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "alloc_counter.h"
#include "kernel_walk.h"
#include "kernels/resize_filter.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

struct Form {
  std::string mode = "nearest";
  std::string transform = "half_pixel";
  std::string nearest_mode = "round_prefer_floor";
  float cubic_a = -0.75f;
  int exclude_outside = 0;
};

// x [shape] -> Resize(form, scales or sizes) -> y. `use_sizes`: `target` are
// sizes; else scales.
Model resize_model(const Shape& shape, const Form& form, bool use_sizes, const std::vector<double>& target,
                   int64_t opset = 19, DType dtype = DType::kFloat32) {
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = opset;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(dtype, shape)});
  Node n;
  if (opset < 11) {
    std::vector<float> s(target.begin(), target.end());
    g.initializers["scales"] = Tensor::from_vector(s, {static_cast<int64_t>(s.size())});
    n = make_node("resize_node", "Resize", {"x", "scales"}, {"y"});
  } else if (use_sizes) {
    std::vector<int64_t> s;
    for (double v : target) s.push_back(static_cast<int64_t>(v));
    g.initializers["sizes"] = Tensor::from_vector(s, {static_cast<int64_t>(s.size())});
    n = make_node("resize_node", "Resize", {"x", "", "", "sizes"}, {"y"});
  } else {
    std::vector<float> s(target.begin(), target.end());
    g.initializers["scales"] = Tensor::from_vector(s, {static_cast<int64_t>(s.size())});
    n = make_node("resize_node", "Resize", {"x", "", "scales"}, {"y"});
  }
  n.attributes["mode"] = string_attr(form.mode);
  if (opset >= 11) {
    n.attributes["coordinate_transformation_mode"] = string_attr(form.transform);
    n.attributes["nearest_mode"] = string_attr(form.nearest_mode);
    n.attributes["cubic_coeff_a"] = float_attr(form.cubic_a);
    n.attributes["exclude_outside"] = int_attr(form.exclude_outside);
  }
  g.nodes.push_back(n);
  g.outputs.push_back({"y", TypeInfo{}});
  return m;
}

Tensor input_of(const Shape& shape) {
  Tensor x(DType::kFloat32, shape);
  float* d = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    // Values of mixed magnitude and sign (products and sums round), a -0.
    d[i] = std::sin(static_cast<float>(i) * 1.37f) * (1.0f + static_cast<float>(i % 7) * 3.1f);
  }
  d[1] = -0.0f;
  return x;
}

std::string expect_same_at(const Model& m, const Tensor& x, const std::string& what, Isa isa) {
  ReferenceExecutor reference(m);
  const Tensor want = reference.run({{"x", x}}).at("y");
  CompileOptions options = default_compile_options(1);
  options.isa = isa;
  CompiledModel compiled(m, options);
  const Tensor got = compiled.run({{"x", x}}).at("y");
  EXPECT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(got.dtype(), want.dtype()) << what;
  if (got.shape() == want.shape() && got.dtype() == want.dtype()) {
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what;
    if (got.dtype() == DType::kFloat32) {
      int64_t bad = 0;
      for (int64_t i = 0; i < got.numel() && bad < 3; ++i) {
        uint32_t a, b;
        std::memcpy(&a, got.data<float>() + i, 4);
        std::memcpy(&b, want.data<float>() + i, 4);
        if (a != b) {
          ADD_FAILURE() << what << ": element " << i << " " << got.data<float>()[i] << " vs " << want.data<float>()[i];
          ++bad;
        }
      }
    }
  }
  // Two threads split the rows: the same bytes.
  options.threads = 2;
  CompiledModel two(m, options);
  const Tensor got2 = two.run({{"x", x}}).at("y");
  if (got2.shape() == want.shape()) {
    EXPECT_EQ(std::memcmp(got2.raw(), want.raw(), want.nbytes()), 0) << what;
  }
  return compiled.describe_plan();
}

// Compiled == reference bit for bit, with every filter table entry the
// CPU and KVANT_ISA allow (tests/unit/kernel_walk.h); returns the plan of the
// last (the generic entry's).
std::string expect_same(const Model& m, const Tensor& x, const std::string& what) {
  Isa allowed = Isa::kRef;
  std::string why;
  if (!test::allowed_isa(allowed, why)) allowed = Isa::kRef;
  std::string plan;
  for (const ResizeFilterKernel* k : test::runnable_entries(resize_filter_kernels(), allowed)) {
    plan = expect_same_at(m, x, what + " " + k->name, k->isa);
  }
  return plan;
}

struct Target {
  bool sizes;
  std::vector<double> values;  // per dim of [2, 3, 7, 8]
};

const Target kTargets[] = {
    {false, {1, 1, 2, 2}},      // x2 up
    {false, {1, 1, 0.5, 0.5}},  // down
    {false, {1, 1, 1.7, 0.6}},  // fractional, up and down
    {false, {1, 1, 3, 1}},      // H only
    {false, {1, 1, 1, 2.5}},    // W only
    {true, {2, 3, 14, 16}},     // sizes x2
    {true, {2, 3, 11, 5}},      // sizes, fractional
    {true, {2, 3, 1, 1}},       // to one pixel
};

std::string describe(const Form& f, const Target& t) {
  std::string s = f.mode + "/" + f.transform + "/" + f.nearest_mode + (t.sizes ? " sizes" : " scales");
  for (double v : t.values) s += " " + std::to_string(v);
  return s;
}

const char* const kTransforms[] = {"half_pixel",    "half_pixel_symmetric", "pytorch_half_pixel",
                                   "align_corners", "asymmetric",           "tf_half_pixel_for_nn"};

TEST(ResizeStep, NearestEveryRoundingAndCoordinateModeIsExact) {
  const Shape shape = {2, 3, 7, 8};
  const Tensor x = input_of(shape);
  for (const char* nm : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}) {
    for (const char* t : kTransforms) {
      for (const Target& target : kTargets) {
        Form f;
        f.mode = "nearest";
        f.transform = t;
        f.nearest_mode = nm;
        const std::string what = describe(f, target);
        const std::string plan = expect_same(resize_model(shape, f, target.sizes, target.values), x, what);
        EXPECT_NE(plan.find("resize_nearest_float32"), std::string::npos) << what << "\n" << plan;
        EXPECT_EQ(plan.find("reference Resize"), std::string::npos) << what << "\n" << plan;
      }
    }
  }
}

TEST(ResizeStep, LinearAndCubicEveryCoordinateModeAreExact) {
  const Shape shape = {2, 3, 7, 8};
  const Tensor x = input_of(shape);
  Form linear;
  linear.mode = "linear";
  Form cubic;
  cubic.mode = "cubic";
  Form cubic_excl;  // PyTorch's bicubic coefficient, taps outside dropped
  cubic_excl.mode = "cubic";
  cubic_excl.cubic_a = -0.5f;
  cubic_excl.exclude_outside = 1;
  for (Form f : {linear, cubic, cubic_excl}) {
    for (const char* t : kTransforms) {
      f.transform = t;
      for (const Target& target : kTargets) {
        const std::string what = describe(f, target);
        const std::string plan = expect_same(resize_model(shape, f, target.sizes, target.values), x, what);
        EXPECT_NE(plan.find("resize_" + f.mode + "_float32"), std::string::npos) << what << "\n" << plan;
        EXPECT_EQ(plan.find("reference Resize"), std::string::npos) << what << "\n" << plan;
      }
    }
  }
}

// Opset 10 (scales as input 1, asymmetric, floor), rank 3 and rank 5 (only
// the last two axes resized), and a leading axis resized (the reference
// runs inside the step).
TEST(ResizeStep, OtherOpsetsRanksAndLeadingAxes) {
  Form nearest;
  Form linear;
  linear.mode = "linear";
  for (const Form& f : {nearest, linear}) {
    {
      const Shape shape = {2, 3, 5, 6};
      const std::string plan =
          expect_same(resize_model(shape, f, false, {1, 1, 2, 1.5}, 10), input_of(shape), "opset 10");
      EXPECT_NE(plan.find("resize_" + f.mode), std::string::npos) << plan;
    }
    {
      const Shape shape = {3, 5, 6};
      const std::string plan = expect_same(resize_model(shape, f, false, {1, 2, 0.7}), input_of(shape), "rank 3");
      EXPECT_NE(plan.find("resize_" + f.mode), std::string::npos) << plan;
    }
    {
      const Shape shape = {2, 2, 3, 4, 5};
      const std::string plan = expect_same(resize_model(shape, f, true, {2, 2, 3, 9, 3}), input_of(shape), "rank 5");
      EXPECT_NE(plan.find("resize_" + f.mode), std::string::npos) << plan;
    }
    {
      const Shape shape = {2, 3, 4, 5};
      const std::string plan = expect_same(resize_model(shape, f, false, {1, 2, 2, 2}), input_of(shape), "C resized");
      EXPECT_NE(plan.find("reference Resize inside a kernel step"), std::string::npos) << plan;
    }
  }
}

// xq (8-bit codes) -> DQ -> Resize -> Q -> yq with one scale and zero point:
// nearest is a copy of the codes (no DQ or Q step left); linear keeps float.
// `transpose`: a Transpose to NHWC between the Resize and the Q.
Model qdq_resize_model(DType dtype, const std::string& mode, bool transpose = false) {
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(dtype, {2, 3, 5, 6})});
  g.initializers["s"] = Tensor::from_vector(std::vector<float>{0.0371f}, {});
  Tensor zp(dtype, {});
  if (dtype == DType::kUInt8) zp.data<uint8_t>()[0] = 131;
  if (dtype == DType::kInt8) zp.data<int8_t>()[0] = -7;
  g.initializers["zp"] = zp;
  g.initializers["scales"] = Tensor::from_vector(std::vector<float>{1, 1, 2, 2}, {4});
  g.nodes.push_back(make_node("dq", "DequantizeLinear", {"x", "s", "zp"}, {"xf"}));
  Node r = make_node("up", "Resize", {"xf", "", "scales"}, {"yf"});
  r.attributes["mode"] = string_attr(mode);
  g.nodes.push_back(r);
  if (transpose) {
    Node t = make_node("to_nhwc", "Transpose", {"yf"}, {"yt"});
    t.attributes["perm"] = ints_attr({0, 2, 3, 1});
    g.nodes.push_back(t);
  }
  g.nodes.push_back(make_node("q", "QuantizeLinear", {transpose ? "yt" : "yf", "s", "zp"}, {"y"}));
  g.outputs.push_back({"y", TypeInfo{}});
  return m;
}

TEST(ResizeStep, QdqNearestRunsOnTheCodes) {
  for (DType dtype : {DType::kUInt8, DType::kInt8}) {
    Tensor x(dtype, {2, 3, 5, 6});
    for (int64_t i = 0; i < x.numel(); ++i) static_cast<uint8_t*>(x.raw())[i] = static_cast<uint8_t>(i * 53 + 7);
    const std::string plan = expect_same(qdq_resize_model(dtype, "nearest"), x, "qdq nearest");
    EXPECT_NE(plan.find(std::string("resize_nearest_") + dtype_name(dtype)), std::string::npos) << plan;
    EXPECT_EQ(plan.find("quantize"), std::string::npos) << plan;  // no DQ / Q step
    const std::string lplan = expect_same(qdq_resize_model(dtype, "linear"), x, "qdq linear");
    EXPECT_NE(lplan.find("resize_linear_float32"), std::string::npos) << lplan;
    const std::string tplan = expect_same(qdq_resize_model(dtype, "nearest", true), x, "qdq nearest, transpose");
    EXPECT_NE(tplan.find(std::string("resize_nearest_") + dtype_name(dtype)), std::string::npos) << tplan;
    EXPECT_NE(tplan.find("transpose"), std::string::npos) << tplan;
    EXPECT_EQ(tplan.find("quantize"), std::string::npos) << tplan;
  }
}

TEST(ResizeStep, FilterTableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  test::check_coverage(resize_filter_kernels(), allowed, "resize filter table");
}

TEST(ResizeStep, ScalesOfTheWrongLengthAreANamedError) {
  Form f;
  const Model m = resize_model({2, 3, 4, 5}, f, false, {2, 2});
  try {
    CompiledModel compiled(m, default_compile_options(1));
    compiled.run({{"x", input_of({2, 3, 4, 5})}});
    FAIL() << "2 scales for a rank-4 input were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("resize_node"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("scales"), std::string::npos) << e.what();
  }
}

// sizes from a model input may change between runs with the same shapes:
// the planned step does not take it (the reference Resize does, each run).
TEST(ResizeStep, SizesFromAModelInputStayOnTheReference) {
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {1, 1, 4, 4})});
  g.inputs.push_back({"sizes", type_of(DType::kInt64, {4})});
  g.nodes.push_back(make_node("resize_node", "Resize", {"x", "", "", "sizes"}, {"y"}));
  g.outputs.push_back({"y", TypeInfo{}});
  CompiledModel compiled(m, default_compile_options(1));
  const Tensor x = input_of({1, 1, 4, 4});
  for (int64_t side : {8, 6}) {
    const Tensor sizes = Tensor::from_vector(std::vector<int64_t>{1, 1, side, side}, {4});
    const Tensor y = compiled.run({{"x", x}, {"sizes", sizes}}).at("y");
    EXPECT_EQ(y.shape(), (Shape{1, 1, side, side}));
  }
  EXPECT_NE(compiled.describe_plan().find("reference Resize"), std::string::npos) << compiled.describe_plan();
}

TEST(ResizeStep, APlannedRunAllocatesNothing) {
  Form linear;
  linear.mode = "linear";
  for (const Form& f : {Form{}, linear}) {
    const Model m = resize_model({1, 3, 16, 16}, f, false, {1, 1, 2, 2});
    for (int threads : {1, 2}) {
      CompiledModel compiled(m, default_compile_options(threads));
      compiled.prepare({{"x", {1, 3, 16, 16}}});
      ASSERT_EQ(compiled.stats().fallback_steps, 0) << compiled.describe_plan();
      const Tensor x = input_of({1, 3, 16, 16});
      std::copy(x.data<float>(), x.data<float>() + x.numel(), compiled.input(0).data<float>());
      compiled.run();
      const long before = test::allocation_count();
      compiled.run();
      EXPECT_EQ(test::allocation_count(), before) << f.mode << " threads " << threads;
    }
  }
}

}  // namespace
}  // namespace kvant
