// The public API's plan, profile and model statistics (kvant.h:
// Session::plan, set_profiling, profile, model_stats): checked against the
// library's own (CompiledModel's plan text, runtime/model_stats.h's counts)
// and against themselves (counts equal the steps listed, every planned
// output inside the arena, profile steps = plan steps).
#include <gtest/gtest.h>

#include <numeric>
#include <sstream>

#include "api_test_util.h"
#include "onnx/reader.h"
#include "runtime/model_stats.h"

namespace kvant {
namespace {

using api_test::contains;
using api_test::kCnn;
using api_test::Samples;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(ApiPlan, PlanBeforeAndAfterTheFirstRunMatchesDescribe) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto session = Session::create(*model);
  ASSERT_TRUE(session.ok()) << session.status().message();

  auto before = session->plan();
  ASSERT_TRUE(before.ok()) << before.status().message();
  EXPECT_FALSE(before->planned);
  EXPECT_EQ(before->arena_bytes, 0);
  ASSERT_FALSE(before->steps.empty());
  for (const PlanStep& step : before->steps) EXPECT_TRUE(step.outputs.empty()) << step.node;

  ASSERT_TRUE(session->prepare({{"image", {2, 1, 28, 28}}}).ok());
  auto plan = session->plan();
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_TRUE(plan->planned);
  EXPECT_EQ(plan->threads, 1);
  EXPECT_FALSE(plan->isa.empty());
  ASSERT_EQ(plan->steps.size(), before->steps.size());
  int64_t kernels = 0, views = 0, fallbacks = 0;
  for (const PlanStep& step : plan->steps) {
    kernels += step.kind == StepKind::kKernel;
    views += step.kind == StepKind::kView;
    fallbacks += step.kind == StepKind::kFallback;
    ASSERT_FALSE(step.fused.empty());
    EXPECT_EQ(step.fused.front(), step.node);
    for (const PlanValue& v : step.outputs) {
      if (v.arena_offset < 0) continue;
      auto bytes = byte_size(v.dtype, v.shape);
      ASSERT_TRUE(bytes.ok());
      EXPECT_LE(v.arena_offset + static_cast<int64_t>(*bytes), plan->arena_bytes) << v.name;
    }
  }
  EXPECT_EQ(kernels, plan->kernel_steps);
  EXPECT_EQ(views, plan->view_steps);
  EXPECT_EQ(fallbacks, plan->fallback_steps);
  EXPECT_GT(plan->arena_bytes, 0);
  EXPECT_LE(plan->arena_bytes, plan->tensor_bytes);
  // The last step writes the logits for the batch of 2.
  ASSERT_FALSE(plan->steps.back().outputs.empty());
  EXPECT_EQ(plan->steps.back().outputs.back().shape, (std::vector<int64_t>{2, 10}));

  // describe() is the same plan as text: "INDEX  KERNEL  NODE  -> TYPE @OFFSET".
  const auto lines = lines_of(session->describe());
  ASSERT_GE(lines.size(), plan->steps.size() + 2);
  EXPECT_TRUE(contains(lines[0], "ISA " + plan->isa)) << lines[0];
  for (size_t i = 0; i < plan->steps.size(); ++i) {
    const PlanStep& step = plan->steps[i];
    const std::string& line = lines[1 + i];
    EXPECT_EQ(line.rfind("  " + std::to_string(i) + "  ", 0), 0u) << line;
    EXPECT_TRUE(contains(line, step.kernel) && contains(line, step.node)) << line;
    for (const PlanValue& v : step.outputs) {
      if (v.arena_offset >= 0) {
        EXPECT_TRUE(contains(line, "@" + std::to_string(v.arena_offset))) << line;
      }
    }
  }
}

TEST(ApiPlan, ProfileAddsEveryRunPerPlanStep) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  auto session = Session::create(*model);
  ASSERT_TRUE(session.ok());
  auto image = load_npy(api_test::kRoot + "/models/samples/fashion_mnist_0.npy");
  ASSERT_TRUE(image.ok());
  const Feeds feeds{{"image", image->view()}};
  ASSERT_TRUE(session->run(feeds).ok());

  auto off = session->profile();
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->runs, 0);
  ASSERT_TRUE(session->set_profiling(true).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(session->run(feeds).ok());
  auto profile = session->profile();
  ASSERT_TRUE(profile.ok()) << profile.status().message();
  auto plan = session->plan();
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(profile->runs, 3);
  ASSERT_EQ(profile->steps.size(), plan->steps.size());
  double sum = 0;
  for (size_t i = 0; i < profile->steps.size(); ++i) {
    EXPECT_EQ(profile->steps[i].kernel, plan->steps[i].kernel);
    EXPECT_EQ(profile->steps[i].node, plan->steps[i].node);
    EXPECT_GE(profile->steps[i].ms, 0.0);
    sum += profile->steps[i].ms;
  }
  EXPECT_DOUBLE_EQ(profile->total_ms, sum);
  EXPECT_GT(profile->total_ms, 0.0);
  const std::string text = session->describe_profile(2);
  EXPECT_EQ(text.rfind("profile over 3 runs", 0), 0u) << text;
  EXPECT_TRUE(contains(text, "by kernel") && contains(text, "top steps")) << text;

  ASSERT_TRUE(session->set_profiling(false).ok());  // clears
  ASSERT_TRUE(session->run(feeds).ok());
  EXPECT_EQ(session->profile()->runs, 0);
}

TEST(ApiPlan, TheReferenceExecutorHasNoPlan) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  SessionOptions options;
  options.reference = true;
  auto session = Session::create(*model, options);
  ASSERT_TRUE(session.ok());
  EXPECT_EQ(session->plan().status().code(), ErrorCode::kUnsupported);
  EXPECT_TRUE(contains(session->plan().status().message(), "reference executor"));
  EXPECT_EQ(session->set_profiling(true).code(), ErrorCode::kUnsupported);
  EXPECT_EQ(session->profile().status().code(), ErrorCode::kUnsupported);
}

TEST(ApiStats, ModelStatsAreTheLibrarysCounts) {
  ModelLoadOptions load;
  load.input_shapes = {{"image", {4, 1, 28, 28}}};
  auto model = OnnxModel::load(kCnn, load);
  ASSERT_TRUE(model.ok());
  auto stats = model_stats(*model);
  ASSERT_TRUE(stats.ok()) << stats.status().message();

  LoadOptions internal_load;
  internal_load.input_shapes = load.input_shapes;
  auto internal = load_onnx(kCnn, internal_load);
  ASSERT_TRUE(internal.ok());
  const Graph& graph = internal->graph;
  EXPECT_EQ(stats->nodes, static_cast<int64_t>(graph.nodes.size()));  // no subgraphs in the CNN
  int64_t counted = 0;
  for (const auto& op : stats->operators) counted += op.nodes;
  EXPECT_EQ(counted, stats->nodes);
  for (size_t i = 1; i < stats->operators.size(); ++i) {
    EXPECT_GE(stats->operators[i - 1].nodes, stats->operators[i].nodes);
  }
  const ParamStats params = count_parameters(graph);
  EXPECT_EQ(stats->parameters, params.parameters);
  EXPECT_GT(stats->parameters, 0);
  EXPECT_EQ(stats->initializer_bytes, params.total_bytes);
  const MacStats macs = count_macs(graph);
  EXPECT_EQ(stats->macs, macs.total);
  EXPECT_GT(stats->macs, 0);
  EXPECT_EQ(stats->macs_unknown, 0);
  ASSERT_EQ(stats->layers.size(), macs.layers.size());
  for (size_t i = 0; i < macs.layers.size(); ++i) {
    EXPECT_EQ(stats->layers[i].node, macs.layers[i].node->name);
    EXPECT_EQ(stats->layers[i].macs, macs.layers[i].macs);
  }
  EXPECT_TRUE(stats->quantization.empty());
  EXPECT_TRUE(stats->unsupported.empty());
  ASSERT_EQ(stats->inputs.size(), 1u);
  EXPECT_EQ(type_to_string(stats->inputs[0]), "float32[4,1,28,28]");
  ASSERT_TRUE(stats->layers.front().has_output_type);
  EXPECT_EQ(stats->layers.front().output.shape.front(), 4);

  // The declared symbolic batch dim: MACs unknown, the dim named.
  auto symbolic = OnnxModel::load(kCnn);
  ASSERT_TRUE(symbolic.ok());
  auto symbolic_stats = model_stats(*symbolic);
  ASSERT_TRUE(symbolic_stats.ok());
  EXPECT_EQ(type_to_string(symbolic_stats->inputs[0]), "float32[N,1,28,28]");
  EXPECT_GT(symbolic_stats->macs_unknown, 0);
}

TEST(ApiStats, QuantizedModelsNameTheirFormat) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  Samples samples;
  auto int8 = quantize_static(*model, samples);
  ASSERT_TRUE(int8.ok()) << int8.status().message();
  auto stats = model_stats(*int8);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->quantization, (std::vector<std::string>{"QDQ"}));
  auto dynamic = quantize_dynamic(*model);
  ASSERT_TRUE(dynamic.ok()) << dynamic.status().message();
  EXPECT_EQ(model_stats(*dynamic)->quantization, (std::vector<std::string>{"QOperator"}));
  EXPECT_EQ(model_stats(OnnxModel()).status().code(), ErrorCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvant
