// qadd against the reference ops DequantizeLinear -> Add (or Mul) -> Relu -> QuantizeLinear:
// bit-exact, on every table entry this CPU and KVANT_ISA allow
// (tests/unit/kernel_walk.h), uint8 and int8, odd lengths (the 8- and
// 16-lane tails), with a guard byte past the end; and the table's coverage.
#include "kernels/qadd.h"

#include <gtest/gtest.h>

#include <random>

#include "kernel_walk.h"
#include "kernels/qadd_kernels.h"
#include "ops/op_registry.h"

namespace kvant {
namespace {

Tensor run_op(const char* op, std::vector<const Tensor*> in) {
  Node node = make_node("n", op, {}, {"y"});
  for (size_t i = 0; i < in.size(); ++i) {
    std::string name = "i";
    name += std::to_string(i);
    node.inputs.push_back(name);
  }
  KernelContext ctx{node, 19, in, {}, nullptr};
  ctx.outputs.resize(1);
  find_op("", op)->run(ctx);
  return ctx.outputs[0];
}

template <typename T>
void check(bool relu, bool multiply, std::mt19937& rng, int64_t n) {
  const DType dt = std::is_signed_v<T> ? DType::kInt8 : DType::kUInt8;
  std::uniform_int_distribution<int> code(std::is_signed_v<T> ? -128 : 0, std::is_signed_v<T> ? 127 : 255);
  std::uniform_real_distribution<float> scale(0.001f, 0.2f);
  Tensor a(dt, {n}), b(dt, {n});
  for (int64_t i = 0; i < n; ++i) {
    a.data<T>()[i] = static_cast<T>(code(rng));
    b.data<T>()[i] = static_cast<T>(code(rng));
  }
  QAddParams p;
  p.a_scale = scale(rng);
  p.b_scale = scale(rng);
  p.y_scale = scale(rng);
  p.a_zp = code(rng);
  p.b_zp = code(rng);
  p.y_zp = code(rng);
  p.qmin = std::is_signed_v<T> ? -128 : 0;
  p.qmax = std::is_signed_v<T> ? 127 : 255;
  if (relu) p.lo = 0.0f;
  p.multiply = multiply;
  auto scalar = [](float v) { return Tensor::scalar<float>(v); };
  auto zp = [&](int32_t v) { return Tensor::scalar<T>(static_cast<T>(v)); };
  const Tensor as = scalar(p.a_scale), bs = scalar(p.b_scale), ys = scalar(p.y_scale);
  const Tensor az = zp(p.a_zp), bz = zp(p.b_zp), yz = zp(p.y_zp);
  const Tensor da = run_op("DequantizeLinear", {&a, &as, &az});
  const Tensor db = run_op("DequantizeLinear", {&b, &bs, &bz});
  Tensor s = run_op(multiply ? "Mul" : "Add", {&da, &db});
  if (relu) s = run_op("Relu", {&s});
  const Tensor want = run_op("QuantizeLinear", {&s, &ys, &yz});
  Isa allowed = Isa::kRef;
  std::string why;
  ASSERT_TRUE(test::allowed_isa(allowed, why)) << why;
  for (const QAddKernel* k : test::runnable_entries(qadd_kernels(), allowed)) {
    Tensor y(dt, {n + 1});
    y.data<T>()[n] = T{42};
    if constexpr (std::is_signed_v<T>) {
      qadd_s8(*k, a.data<int8_t>(), b.data<int8_t>(), y.data<int8_t>(), n, p);
    } else {
      qadd_u8(*k, a.data<uint8_t>(), b.data<uint8_t>(), y.data<uint8_t>(), n, p);
    }
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y.data<T>()[i], want.data<T>()[i]) << k->name << " element " << i;
    ASSERT_EQ(y.data<T>()[n], T{42}) << k->name << " wrote past " << n;
  }
}

TEST(QAdd, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const auto entries = test::runnable_entries(qadd_kernels(), allowed);
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back()->isa, Isa::kRef);
  EXPECT_EQ(&qadd_pick(allowed), entries.front());
  test::check_coverage(qadd_kernels(), allowed, "qadd table");
}

TEST(QAdd, BitExactWithTheQdqSimulation) {
  std::mt19937 rng(5);
  for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 33, 63, 65, 255, 1000}) {
    for (bool relu : {false, true}) {
      for (bool multiply : {false, true}) {
        check<uint8_t>(relu, multiply, rng, n);
        check<int8_t>(relu, multiply, rng, n);
      }
    }
  }
}

}  // namespace
}  // namespace kvant
