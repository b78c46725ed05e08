// Helpers for the compiled-step tests (fp32_steps_test.cc,
// fp32_conv_steps_test.cc): seeded random tensors, a model shell, and a
// comparison of a model run on the reference executor and compiled with 1
// and 3 threads (0 reference fallbacks, the step's kernel in the plan).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <string>

#include "alloc_counter.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant::test {

inline Tensor random_tensor(const Shape& shape, uint32_t seed, float lo = -3.0f, float hi = 3.0f) {
  Tensor t(DType::kFloat32, shape);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

inline Model one_graph(int64_t opset) {
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = opset;
  return m;
}

// Runs `m` on the reference executor and compiled with 1 and 3 threads;
// calls check(got, want, what) per output and threads; returns the plan.
template <typename Check>
std::string compare(const Model& m, const std::map<std::string, Tensor>& feeds, const std::string& kernel,
                    Check&& check) {
  ReferenceExecutor reference(m);
  const std::map<std::string, Tensor> want = reference.run(feeds);
  std::string plan;
  for (int threads : {1, 3}) {
    CompiledModel compiled(m, default_compile_options(threads));
    const std::map<std::string, Tensor> got = compiled.run(feeds);
    plan = compiled.describe_plan();
    EXPECT_EQ(compiled.stats().fallback_steps, 0) << plan;
    EXPECT_NE(plan.find(kernel), std::string::npos) << kernel << " not in\n" << plan;
    for (const auto& [name, w] : want) {
      const Tensor& g = got.at(name);
      EXPECT_EQ(g.shape(), w.shape()) << name;
      EXPECT_EQ(g.dtype(), w.dtype()) << name;
      if (g.shape() != w.shape() || g.dtype() != w.dtype()) continue;
      check(g, w, name + " threads " + std::to_string(threads));
    }
  }
  return plan;
}

inline void expect_bytes_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what;
  if (got.dtype() != DType::kFloat32) return;
  int bad = 0;
  for (int64_t i = 0; i < got.numel() && bad < 3; ++i) {
    const float a = got.data<float>()[i], b = want.data<float>()[i];
    if (std::memcmp(&a, &b, 4) != 0) {
      ADD_FAILURE() << what << ": element " << i << ": " << a << " vs " << b;
      ++bad;
    }
  }
}

// `m` (one input "x" of `shape`) compiled with 1 and 3 threads, no
// reference fallbacks: a second planned run allocates nothing.
inline void expect_planned_run_allocates_nothing(const Model& m, const Shape& shape) {
  for (int threads : {1, 3}) {
    CompiledModel compiled(m, default_compile_options(threads));
    compiled.prepare({{"x", shape}});
    ASSERT_EQ(compiled.stats().fallback_steps, 0) << compiled.describe_plan();
    const Tensor x = random_tensor(shape, 3);
    std::copy(x.data<float>(), x.data<float>() + x.numel(), compiled.input(0).data<float>());
    compiled.run();
    const long before = allocation_count();
    compiled.run();
    EXPECT_EQ(allocation_count(), before) << "threads " << threads;
  }
}

}  // namespace kvant::test
