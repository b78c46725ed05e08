// Shared check of the FP32 NHWC layout tests: a hand-written float chain,
// saved and loaded (so ONNX shape inference types it), compiled at 1 and 3
// threads, must show the given kernels in its plan, run with no reference
// fallback and at most two transposes (the edges), match the reference
// executor within float rounding, and give the same bytes at both thread
// counts.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "onnx/reader.h"
#include "onnx/writer.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant::test {

inline void expect_fp32_nhwc_chain(const Model& m, const std::string& input, const Tensor& x,
                                   const std::vector<std::string>& in_plan,
                                   const std::vector<std::string>& not_in_plan = {}) {
  auto bytes = serialize_onnx(m);
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  auto shaped = load_onnx_bytes(bytes->data(), bytes->size());
  ASSERT_TRUE(shaped.ok()) << shaped.status().message();
  const std::string output = m.graph.outputs.at(0).name;
  const Tensor want = ReferenceExecutor(*shaped).run({{input, x}}).at(output);
  float peak = 0.0f;
  for (int64_t i = 0; i < want.numel(); ++i) peak = std::max(peak, std::fabs(want.data<float>()[i]));
  std::vector<float> first;
  for (int threads : {1, 3}) {
    CompiledModel compiled(*shaped, default_compile_options(threads));
    const Tensor got = compiled.run({{input, x}}).at(output);
    const std::string plan = compiled.describe_plan();
    for (const std::string& k : in_plan) EXPECT_NE(plan.find(k), std::string::npos) << k << "\n" << plan;
    for (const std::string& k : not_in_plan) EXPECT_EQ(plan.find(k), std::string::npos) << k << "\n" << plan;
    EXPECT_EQ(compiled.stats().fallback_steps, 0) << plan;
    size_t transposes = 0;
    for (size_t at = plan.find(" transpose "); at != std::string::npos; at = plan.find(" transpose ", at + 1)) {
      ++transposes;
    }
    EXPECT_LE(transposes, 2u) << plan;
    ASSERT_EQ(got.shape(), want.shape());
    for (int64_t i = 0; i < want.numel(); ++i) {
      ASSERT_LE(std::fabs(got.data<float>()[i] - want.data<float>()[i]), 1e-5f * peak + 1e-7f)
          << "threads " << threads << " element " << i;
    }
    std::vector<float> y(got.data<float>(), got.data<float>() + got.numel());
    if (first.empty()) {
      first = y;
    } else {
      EXPECT_EQ(std::memcmp(first.data(), y.data(), y.size() * sizeof(float)), 0) << "1 vs 3 threads";
    }
  }
}

}  // namespace kvant::test
