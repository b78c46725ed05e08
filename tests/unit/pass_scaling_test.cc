// Passes, the memory planner and compile stay near-linear in the number of
// nodes (issue 15, defect 6). Before, on a57882c: eliminate_identity recounted
// every read and renamed over the whole graph for each node it removed (10k
// Identity nodes: 4.6 s, 20k: over 20 s, where the reference executor runs
// them in 0.03 s); fold_batchnorm recounted reads per Conv/Gemm; the memory
// planner compared each buffer with every buffer placed before it ('inspect
// --plan' on 200k Relu nodes: 15.5 s, here 24.8 s).
//
// Timing is never an absolute here: each bound is a generous ratio to the
// reference executor running the same 200k-node model in the same test
// (it costs O(nodes) with hashing on every node, like the passes). A
// quadratic pass on 200k nodes is thousands of times slower than that.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <string>

#include "passes/pass.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "runtime/memory_plan.h"

namespace kvant {
namespace {

constexpr int kNodes = 200000;
constexpr double kRatio = 25;  // measured ratios are 0.2-9 on a loaded 2-core machine; quadratic ones > 1000

// prefix + i (built by append: GCC 12 warns falsely on name("v", i)).
std::string name(const char* prefix, int i) {
  std::string s = prefix;
  s.append(std::to_string(i));
  return s;
}

template <typename Fn>
double seconds(Fn fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// x -> op -> op -> ... -> y, n nodes, on a float32[1,4].
Model chain(int n, const char* op) {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.inputs = {{"v0", {DType::kFloat32, true, {{1, ""}, {4, ""}}}}};
  m.graph.nodes.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    m.graph.nodes.push_back(make_node(name("n", i), op, {name("v", i)}, {name("v", i + 1)}));
  }
  m.graph.outputs = {{name("v", n), {DType::kFloat32, true, {{1, ""}, {4, ""}}}}};
  return m;
}

std::map<std::string, Tensor> feeds() { return {{"v0", Tensor::from_vector<float>({-1, 2, -3, 4}, {1, 4})}}; }

double reference_seconds(const Model& m) {
  return seconds([&] {
    ReferenceExecutor exec(m);
    exec.run(feeds());
  });
}

TEST(PassScaling, EliminateIdentityOnA200kChain) {
  const Model m = chain(kNodes, "Identity");
  const double reference = reference_seconds(m);
  Graph g = m.graph;
  const double pass = seconds([&] { eliminate_identity(g); });
  EXPECT_EQ(g.nodes.size(), 1u) << "the last Identity (input straight to output) stays";
  EXPECT_EQ(g.nodes[0].inputs[0], "v0");
  std::cout << "eliminate_identity " << pass << " s, reference executor " << reference << " s\n";
  EXPECT_LT(pass, kRatio * reference) << "eliminate_identity " << pass << " s, reference " << reference << " s";
}

TEST(PassScaling, CompileAndPlanA200kReluChain) {
  const Model m = chain(kNodes, "Relu");
  const double reference = reference_seconds(m);
  const double compiled = seconds([&] {
    CompiledModel c(m);
    auto out = c.run(feeds());
    EXPECT_EQ(out.at(name("v", kNodes)).data<float>()[1], 2.0f);
    EXPECT_GT(c.describe_plan().size(), static_cast<size_t>(kNodes));
  });
  std::cout << "compile + plan + run " << compiled << " s, reference executor " << reference << " s\n";
  EXPECT_LT(compiled, kRatio * reference)
      << "compile + plan + run " << compiled << " s, reference " << reference << " s";
  // The planner alone, on a chain's lifetimes (each buffer read by the next step).
  std::vector<BufferRequest> requests;
  for (int i = 0; i < kNodes; ++i) requests.push_back({64, i, i + 1});
  MemoryPlan plan;
  const double planning = seconds([&] { plan = plan_memory(requests); });
  EXPECT_EQ(plan.arena_bytes, 128u) << "two buffers alternate";
  std::cout << "plan_memory " << planning << " s\n";
  EXPECT_LT(planning, kRatio * reference) << "plan_memory " << planning << " s, reference " << reference << " s";
}

TEST(PassScaling, FoldBatchnormAndDeadNodesOnA200kGraph) {
  // x -> (Conv 1x1 -> BatchNormalization) x 50k: 100k nodes (each fold clones two tensors).
  Model m;
  m.opset_imports[""] = 13;
  m.graph.inputs = {{"v0", {DType::kFloat32, true, {{1, ""}, {1, ""}, {1, ""}, {1, ""}}}}};
  m.graph.initializers["w"] = Tensor::from_vector<float>({2}, {1, 1, 1, 1});
  for (const char* p : {"gamma", "beta", "mean", "var"}) m.graph.initializers[p] = Tensor::from_vector<float>({1}, {1});
  const int pairs = kNodes / 4;
  for (int i = 0; i < pairs; ++i) {
    const std::string in = name("v", i), mid = name("c", i), out = name("v", i + 1);
    m.graph.nodes.push_back(make_node(name("conv", i), "Conv", {in, "w"}, {mid}));
    m.graph.nodes.push_back(
        make_node(name("bn", i), "BatchNormalization", {mid, "gamma", "beta", "mean", "var"}, {out}));
  }
  m.graph.outputs = {{name("v", pairs), {DType::kFloat32, false, {}}}};
  const double reference = seconds([&] {
    ReferenceExecutor exec(m);
    exec.run({{"v0", Tensor::from_vector<float>({1}, {1, 1, 1, 1})}});
  });
  Graph g = m.graph;
  const double fold = seconds([&] { EXPECT_TRUE(fold_batchnorm(g)); });
  EXPECT_EQ(g.nodes.size(), static_cast<size_t>(pairs)) << "every BatchNormalization folded";
  std::cout << "fold_batchnorm " << fold << " s, reference executor " << reference << " s\n";
  EXPECT_LT(fold, kRatio * reference) << "fold_batchnorm " << fold << " s, reference " << reference << " s";
  const double dead = seconds([&] { eliminate_dead_nodes(g); });
  std::cout << "eliminate_dead_nodes " << dead << " s\n";
  EXPECT_LT(dead, kRatio * reference) << "eliminate_dead_nodes " << dead << " s, reference " << reference << " s";
}

}  // namespace
}  // namespace kvant
