// The integer MatMul of two quantized activations (steps_qmatmul.cc):
// DQ(a) , DQ(b) -> MatMul -> Q compiled into one step, checked
//   - bit for bit against the exact integer formula (int64 sums, then
//     QLinearMatMul's float requantization), and
//   - within one output code of the QDQ simulation (the reference executor
//     on the same graph; DESIGN.md §2), with few codes differing,
// over uint8 and int8 codes, extreme zero points, broadcast batch dims,
// fewer batches than threads (rows split), K past the int32 bound, threads
// 1 and 3 and the reference ISA level; and a planned run allocates nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "alloc_counter.h"
#include "kernel_walk.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_s8_kernels.h"
#include "op_test_util.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "step_compare.h"
#include "test_graphs.h"

namespace kvant {
namespace {

struct Operand {
  Shape shape;
  bool is_signed;
  float scale;
  int32_t zero_point;
};

struct Case {
  const char* what;
  Operand a, b;
  bool y_signed;
  float y_scale;
  int32_t y_zp;
};

Tensor random_codes(const Operand& o, uint32_t seed) {
  Tensor t(o.is_signed ? DType::kInt8 : DType::kUInt8, o.shape);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> v(0, 255);
  for (int64_t i = 0; i < t.numel(); ++i) {
    int c = i % 13 == 0 ? 0 : (i % 11 == 0 ? 255 : v(rng));  // the extremes too
    if (o.is_signed) {
      t.data<int8_t>()[i] = static_cast<int8_t>(c - 128);
    } else {
      t.data<uint8_t>()[i] = static_cast<uint8_t>(c);
    }
  }
  return t;
}

Tensor scalar_zp(bool is_signed, int32_t zp) {
  return is_signed ? Tensor::scalar<int8_t>(static_cast<int8_t>(zp))
                   : Tensor::scalar<uint8_t>(static_cast<uint8_t>(zp));
}

// a, b codes -> DQ -> MatMul -> Q -> y
Model qmatmul_model(const Case& c) {
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"a", type_of(c.a.is_signed ? DType::kInt8 : DType::kUInt8, c.a.shape)});
  m.graph.inputs.push_back({"b", type_of(c.b.is_signed ? DType::kInt8 : DType::kUInt8, c.b.shape)});
  auto& init = m.graph.initializers;
  init["as"] = Tensor::scalar<float>(c.a.scale);
  init["az"] = scalar_zp(c.a.is_signed, c.a.zero_point);
  init["bs"] = Tensor::scalar<float>(c.b.scale);
  init["bz"] = scalar_zp(c.b.is_signed, c.b.zero_point);
  init["ys"] = Tensor::scalar<float>(c.y_scale);
  init["yz"] = scalar_zp(c.y_signed, c.y_zp);
  m.graph.nodes.push_back(make_node("dqa", "DequantizeLinear", {"a", "as", "az"}, {"af"}));
  m.graph.nodes.push_back(make_node("dqb", "DequantizeLinear", {"b", "bs", "bz"}, {"bf"}));
  m.graph.nodes.push_back(make_node("mm", "MatMul", {"af", "bf"}, {"yf"}));
  m.graph.nodes.push_back(make_node("q", "QuantizeLinear", {"yf", "ys", "yz"}, {"y"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  return m;
}

int64_t code_at(const Tensor& t, int64_t i) { return t.get_as_int64(i); }

// The exact integer result, with QLinearMatMul's requantization.
Tensor exact(const Case& c, const Tensor& a, const Tensor& b, const Shape& y_shape) {
  Tensor y(c.y_signed ? DType::kInt8 : DType::kUInt8, y_shape);
  const int64_t m = a.dim(a.rank() - 2), k = a.shape().back(), n = b.shape().back();
  const int64_t batches = y.numel() / (m * n);
  const float mult = c.a.scale * c.b.scale / c.y_scale;
  const int64_t qmin = c.y_signed ? -128 : 0, qmax = c.y_signed ? 127 : 255;
  const int yr = static_cast<int>(y_shape.size());
  for (int64_t bi = 0; bi < batches; ++bi) {
    int64_t rest = bi, off_a = 0, off_b = 0, sa = m * k, sb = k * n;
    for (int d = yr - 3; d >= 0; --d) {
      const int64_t idx = rest % y_shape[static_cast<size_t>(d)];
      rest /= y_shape[static_cast<size_t>(d)];
      const int from_end = yr - d;
      const int64_t da = from_end <= a.rank() ? a.dim(a.rank() - from_end) : 1;
      const int64_t db = from_end <= b.rank() ? b.dim(b.rank() - from_end) : 1;
      if (da != 1) off_a += idx * sa;
      if (db != 1) off_b += idx * sb;
      sa *= da;
      sb *= db;
    }
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < n; ++j) {
        int64_t acc = 0;
        for (int64_t i = 0; i < k; ++i) {
          acc += (code_at(a, off_a + r * k + i) - c.a.zero_point) * (code_at(b, off_b + i * n + j) - c.b.zero_point);
        }
        const float v = std::nearbyint(static_cast<float>(acc) * mult) + static_cast<float>(c.y_zp);
        const auto q = static_cast<int64_t>(std::clamp(v, static_cast<float>(qmin), static_cast<float>(qmax)));
        if (c.y_signed) {
          y.data<int8_t>()[(bi * m + r) * n + j] = static_cast<int8_t>(q);
        } else {
          y.data<uint8_t>()[(bi * m + r) * n + j] = static_cast<uint8_t>(q);
        }
      }
    }
  }
  return y;
}

const Case kCases[] = {
    // what, a {shape, signed, scale, zp}, b {...}, y signed, y scale, y zp
    {"attention scores [1, 4, 17, 24] x [1, 4, 24, 17]",
     {{1, 4, 17, 24}, false, 0.05f, 130},
     {{1, 4, 24, 17}, false, 0.04f, 120},
     false,
     0.6f,
     128},
    {"probabilities x values, int8 values",
     {{2, 3, 9, 9}, false, 1.0f / 255, 0},
     {{2, 3, 9, 16}, true, 0.03f, -5},
     true,
     0.02f,
     3},
    {"int8 x int8, zero points at the ends",
     {{2, 5, 33}, true, 0.02f, -128},
     {{2, 33, 7}, true, 0.03f, 127},
     false,
     0.5f,
     0},
    {"uint8 zero points 0 and 255", {{3, 6, 40}, false, 0.01f, 0}, {{3, 40, 19}, false, 0.02f, 255}, true, 0.3f, -7},
    {"b broadcast over the batch [3, 2, 8, 12] x [12, 5]",
     {{3, 2, 8, 12}, false, 0.1f, 100},
     {{12, 5}, false, 0.1f, 90},
     false,
     2.0f,
     128},
    {"a broadcast [7, 20] x [2, 3, 20, 6]",
     {{7, 20}, false, 0.1f, 100},
     {{2, 3, 20, 6}, true, 0.1f, 0},
     false,
     3.0f,
     100},
    {"one batch, rows split over threads",
     {{1, 50, 64}, false, 0.02f, 128},
     {{1, 64, 33}, false, 0.02f, 128},
     false,
     0.8f,
     128},
    {"2-D, one column", {{13, 17}, false, 0.05f, 7}, {{17, 1}, false, 0.05f, 250}, false, 0.5f, 128},
    {"K past the int32 bound (33100)",
     {{1, 2, 33100}, false, 0.001f, 128},
     {{1, 33100, 3}, false, 0.001f, 128},
     false,
     0.05f,
     128},
};

TEST(QMatMul, ExactAndWithinOneCodeOfTheSimulation) {
  for (const Case& c : kCases) {
    const Model model = qmatmul_model(c);
    const Tensor a = random_codes(c.a, 1), b = random_codes(c.b, 2);
    const Tensor want = ReferenceExecutor(model).run({{"a", a}, {"b", b}}).at("y");
    const Tensor ideal = exact(c, a, b, want.shape());
    for (int threads : {1, 3}) {
      for (bool ref : {false, true}) {
        const std::string what = std::string(c.what) + " threads " + std::to_string(threads) + (ref ? " isa ref" : "");
        CompileOptions options = default_compile_options(threads);
        if (ref) options.isa = Isa::kRef;
        CompiledModel compiled(model, options);
        // Planned and run on other codes first (the packed B changes per call).
        compiled.run({{"a", random_codes(c.a, 7)}, {"b", random_codes(c.b, 8)}});
        const Tensor got = compiled.run({{"a", a}, {"b", b}}).at("y");
        ASSERT_EQ(got.shape(), want.shape()) << what;
        ASSERT_EQ(got.dtype(), want.dtype()) << what;
        const std::string plan = compiled.describe_plan();
        EXPECT_EQ(compiled.stats().fallback_steps, 0) << what << "\n" << plan;
        EXPECT_EQ(compiled.steps().size(), 1u) << what << "\n" << plan;
        EXPECT_NE(plan.find("qmatmul_batched/qgemm_u8s8_"), std::string::npos) << what << "\n" << plan;
        int64_t off_exact = 0, off_sim = 0, worst = 0;
        for (int64_t i = 0; i < want.numel(); ++i) {
          off_exact += got.get_as_int64(i) != ideal.get_as_int64(i) ? 1 : 0;
          const int64_t d = std::abs(got.get_as_int64(i) - want.get_as_int64(i));
          off_sim += d != 0 ? 1 : 0;
          worst = std::max(worst, d);
        }
        EXPECT_EQ(off_exact, 0) << what;
        EXPECT_LE(worst, 1) << what;
        // One code off only at a near-tie of the simulation's float sums:
        // rare, not systematic.
        EXPECT_LE(off_sim, std::max<int64_t>(1, want.numel() / 100))
            << what << ": " << off_sim << " of " << want.numel();
      }
    }
  }
}

// repack_b_s8 into a PackedB that held another B (other sizes, a zero
// point) gives pack_b_s8's bytes, column sums and zero points, for every
// table entry this CPU runs, at odd sizes (the AVX2 pairs packer's full
// panels and its generic tails).
TEST(QMatMul, RepackEqualsAFreshPack) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> value(-64, 64);  // fits every entry, the 7-bit ones too
  const std::vector<const QGemmKernel*> kernels = test::runnable_entries(qgemm_kernels(), allowed);
  EXPECT_GE(kernels.size(), 1u);  // the reference at least
  for (const QGemmKernel* kernel : kernels) {
    PackedB packed;
    for (const auto& [k, n] : {std::pair{64, 128}, {1, 1}, {7, 17}, {64, 16}, {65, 33}, {128, 64}, {2, 31}}) {
      const int ldb = n + 3;  // rows wider than N
      std::vector<int8_t> b(static_cast<size_t>(k * ldb)), zp(static_cast<size_t>(n));
      for (auto& v : b) v = static_cast<int8_t>(value(rng));
      for (auto& v : zp) v = static_cast<int8_t>(value(rng));
      const bool with_zp = (k + n) % 2 == 1;
      const PackedB fresh = pack_b_s8(*kernel, b.data(), k, n, with_zp ? zp.data() : nullptr, ldb);
      repack_b_s8(packed, *kernel, b.data(), k, n, with_zp ? zp.data() : nullptr, ldb);
      const std::string what = std::string(kernel->name) + " K " + std::to_string(k) + " N " + std::to_string(n);
      ASSERT_FALSE(fresh.data.empty()) << what;
      EXPECT_EQ(packed.data, fresh.data) << what;
      EXPECT_EQ(packed.col_sums, fresh.col_sums) << what;
      EXPECT_EQ(packed.zero_point, fresh.zero_point) << what;
      EXPECT_EQ(packed.k, k);
      EXPECT_EQ(packed.n, n);
    }
  }
}

TEST(QMatMul, OtherReadersOfTheDequantizedValuesKeepTheirDQ) {
  // dqa's output is also a model output: the DQ still runs, as its own step.
  const Case c = {"", {{2, 4, 8}, false, 0.1f, 128}, {{2, 8, 3}, false, 0.1f, 128}, false, 1.0f, 128};
  Model m = qmatmul_model(c);
  m.graph.outputs.push_back({"af", TypeInfo{}});
  const Tensor a = random_codes(c.a, 3), b = random_codes(c.b, 4);
  const auto want = ReferenceExecutor(m).run({{"a", a}, {"b", b}});
  CompiledModel compiled(m, default_compile_options(1));
  const auto got = compiled.run({{"a", a}, {"b", b}});
  EXPECT_EQ(compiled.stats().fallback_steps, 0) << compiled.describe_plan();
  EXPECT_EQ(compiled.steps().size(), 2u) << compiled.describe_plan();
  EXPECT_EQ(std::memcmp(got.at("af").raw(), want.at("af").raw(), want.at("af").nbytes()), 0);
  const Tensor ideal = exact(c, a, b, want.at("y").shape());
  EXPECT_EQ(std::memcmp(got.at("y").raw(), ideal.raw(), ideal.nbytes()), 0);
}

TEST(QMatMul, MismatchedInnerDimsAreAnError) {
  const Case c = {"", {{2, 4, 8}, false, 0.1f, 128}, {{2, 8, 3}, false, 0.1f, 128}, false, 1.0f, 128};
  Model m = qmatmul_model(c);
  m.graph.inputs[1].type.has_shape = false;  // any shape: the step checks it
  CompiledModel compiled(m, default_compile_options(1));
  Operand wrong = c.b;
  wrong.shape = {2, 9, 3};
  try {
    compiled.run({{"a", random_codes(c.a, 1)}, {"b", random_codes(wrong, 2)}});
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot multiply"), std::string::npos) << e.what();
  }
}

TEST(QMatMul, APlannedRunAllocatesNothing) {
  const Case c = kCases[0];
  const Model m = qmatmul_model(c);
  for (int threads : {1, 3}) {
    CompiledModel compiled(m, default_compile_options(threads));
    compiled.prepare({{"a", c.a.shape}, {"b", c.b.shape}});
    ASSERT_EQ(compiled.stats().fallback_steps, 0) << compiled.describe_plan();
    const Tensor a = random_codes(c.a, 5), b = random_codes(c.b, 6);
    std::memcpy(compiled.input(0).raw(), a.raw(), a.nbytes());
    std::memcpy(compiled.input(1).raw(), b.raw(), b.nbytes());
    compiled.run();
    const long before = test::allocation_count();
    compiled.run();
    EXPECT_EQ(test::allocation_count(), before) << "threads " << threads;
  }
}

}  // namespace
}  // namespace kvant
