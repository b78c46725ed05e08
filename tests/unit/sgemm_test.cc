// sgemm (kernels/sgemm.h) against a double-accumulated oracle, for every
// micro-kernel table entry this CPU and KVANT_ISA allow (tests/unit/
// kernel_walk.h): odd and tiny shapes (every M/N/K tail of the 6x16 and 12x32
// tiles and the 256 K block), all transposes (A read in place and packed),
// alpha/beta incl. beta 0 over NaN, strides wider than the rows, the packed
// path with bias and activations; the FMA entries bit-identical to each
// other; the table's coverage; and kvant's reference Gemm operator against
// sgemm.
//
// Tolerance: float accumulation over K terms errs by at most about
// K * 2^-24 * sum_k |a_k b_k|; the kernels' blocked order errs far less in
// practice, so 1e-5 of sum |alpha a b| + |beta c| (plus 1e-6 absolute) is
// stated, and it catches any wrong or missing term.
#include "kernels/sgemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel_walk.h"
#include "kernels/sgemm_kernels.h"
#include "ops/op_registry.h"

namespace kvant {
namespace {

const std::vector<int> kSizes = {1, 2, 3, 5, 6, 7, 11, 12, 13, 15, 16, 17, 25, 31, 33, 64, 100, 257};
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<float> random_vector(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

struct Problem {
  bool trans_a = false, trans_b = false;
  int M = 0, N = 0, K = 0;
  float alpha = 1.0f, beta = 0.0f;
  int lda = 0, ldb = 0, ldc = 0;
  std::vector<float> A, B, C;
};

Problem make_problem(bool trans_a, bool trans_b, int M, int N, int K, float alpha, float beta, int pad,
                     std::mt19937& rng) {
  Problem p;
  p.trans_a = trans_a;
  p.trans_b = trans_b;
  p.M = M;
  p.N = N;
  p.K = K;
  p.alpha = alpha;
  p.beta = beta;
  p.lda = (trans_a ? M : K) + pad;
  p.ldb = (trans_b ? K : N) + pad;
  p.ldc = N + pad;
  p.A = random_vector(static_cast<size_t>(trans_a ? K : M) * p.lda, rng);
  p.B = random_vector(static_cast<size_t>(trans_b ? N : K) * p.ldb, rng);
  p.C = random_vector(static_cast<size_t>(M) * p.ldc, rng);
  if (beta == 0.0f) std::fill(p.C.begin(), p.C.end(), kNaN);
  return p;
}

float a_at(const Problem& p, int i, int k) { return p.trans_a ? p.A[k * p.lda + i] : p.A[i * p.lda + k]; }
float b_at(const Problem& p, int k, int j) { return p.trans_b ? p.B[j * p.ldb + k] : p.B[k * p.ldb + j]; }

// Checks got (ldc = p.ldc) against the double oracle of p; the padding
// columns past N must be untouched (equal to p.C's).
void expect_matches_oracle(const Problem& p, const std::vector<float>& got, const std::vector<float>* bias,
                           SgemmActivation act, const std::string& what) {
  int bad = 0;
  for (int i = 0; i < p.M; ++i) {
    for (int j = 0; j < p.N; ++j) {
      double sum = 0.0, mag = 0.0;
      for (int k = 0; k < p.K; ++k) {
        const double prod = static_cast<double>(a_at(p, i, k)) * b_at(p, k, j);
        sum += prod;
        mag += std::fabs(prod);
      }
      const float c = p.C[i * p.ldc + j];
      double want = p.alpha * sum + (p.beta == 0.0f ? 0.0 : static_cast<double>(p.beta) * c);
      double scale = std::fabs(p.alpha) * mag + (p.beta == 0.0f ? 0.0 : std::fabs(p.beta * c));
      if (bias != nullptr) {
        want += (*bias)[j];
        scale += std::fabs((*bias)[j]);
      }
      if (act.kind == SgemmActivation::Kind::kRelu) want = std::max(want, 0.0);
      if (act.kind == SgemmActivation::Kind::kClip) want = std::min(std::max(want, double{act.lo}), double{act.hi});
      const float g = got[i * p.ldc + j];
      const double tol = 1e-5 * scale + 1e-6;
      if (!(std::fabs(g - want) <= tol) && ++bad <= 3) {
        ADD_FAILURE() << what << ": C[" << i << "," << j << "] = " << g << ", want " << want << " (tol " << tol << ")";
      }
    }
    for (int j = p.N; j < p.ldc; ++j) {
      const float c = p.C[i * p.ldc + j], g = got[i * p.ldc + j];
      if (!(g == c || (std::isnan(g) && std::isnan(c))) && ++bad <= 3) {
        ADD_FAILURE() << what << ": padding C[" << i << "," << j << "] was written";
      }
    }
  }
  EXPECT_EQ(bad, 0) << what;
}

std::string describe(const Problem& p) {
  return std::string(p.trans_a ? "At" : "A") + (p.trans_b ? "Bt" : "B") + " M=" + std::to_string(p.M) +
         " N=" + std::to_string(p.N) + " K=" + std::to_string(p.K) + " alpha=" + std::to_string(p.alpha) +
         " beta=" + std::to_string(p.beta) + " lda=" + std::to_string(p.lda) + " ldb=" + std::to_string(p.ldb) +
         " ldc=" + std::to_string(p.ldc);
}

// The entries these tests run: those KVANT_ISA (or the CPU's best) allows.
std::vector<const SgemmKernel*> runnable_kernels() {
  Isa allowed = Isa::kRef;
  std::string why;
  if (!test::allowed_isa(allowed, why)) return {};
  return test::runnable_entries(sgemm_kernels(), allowed);
}

class SgemmTest : public ::testing::TestWithParam<const SgemmKernel*> {};
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(SgemmTest);

TEST_P(SgemmTest, AllShapesTransposesAndScalars) {
  const SgemmKernel& kernel = *GetParam();
  struct Scalars {
    float alpha, beta;
  };
  const Scalars cases[] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -2.0f}, {-1.5f, 0.0f}};
  const unsigned seed = 1234;
  std::mt19937 rng(seed);
  int index = 0;
  for (int M : kSizes) {
    for (int N : kSizes) {
      for (int K : kSizes) {
        for (int t = 0; t < 4; ++t, ++index) {
          const Scalars s = cases[index % 4];
          const int pad = (index / 4) % 2 == 0 ? 0 : 3;
          Problem p = make_problem(t & 1, t & 2, M, N, K, s.alpha, s.beta, pad, rng);
          std::vector<float> got = p.C;
          sgemm(kernel, p.trans_a, p.trans_b, M, N, K, p.alpha, p.A.data(), p.lda, p.B.data(), p.ldb, p.beta,
                got.data(), p.ldc);
          expect_matches_oracle(p, got, nullptr, SgemmActivation::none(),
                                std::string(kernel.name) + " seed " + std::to_string(seed) + " " + describe(p));
          if (HasFailure()) return;
        }
      }
    }
  }
}

TEST_P(SgemmTest, EmptyKScalesC) {
  std::vector<float> c = {kNaN, kNaN, kNaN};
  const float a = 1.0f, b = 1.0f;
  sgemm(*GetParam(), false, false, 1, 3, 0, 1.0f, &a, 1, &b, 3, 0.0f, c.data(), 3);
  EXPECT_EQ(c, (std::vector<float>{0, 0, 0}));
  c = {1, 2, 3};
  sgemm(*GetParam(), false, false, 1, 3, 0, 1.0f, &a, 1, &b, 3, 2.0f, c.data(), 3);
  EXPECT_EQ(c, (std::vector<float>{2, 4, 6}));
}

TEST_P(SgemmTest, PackedWithBiasAndActivations) {
  const SgemmKernel& kernel = *GetParam();
  const SgemmActivation acts[] = {SgemmActivation::none(), SgemmActivation::relu(),
                                  SgemmActivation::clip(-0.25f, 0.5f)};
  const std::vector<int> sizes = {1, 3, 6, 7, 12, 13, 16, 17, 33, 100, 257};
  std::mt19937 rng(99);
  int index = 0;
  for (int M : sizes) {
    for (int N : sizes) {
      for (int K : sizes) {
        for (int trans_b = 0; trans_b < 2; ++trans_b, ++index) {
          const SgemmActivation act = acts[index % 3];
          const bool with_bias = (index / 3) % 2 == 0;
          const int pad = index % 2 == 0 ? 0 : 5;
          Problem p = make_problem(false, trans_b, M, N, K, 1.0f, 0.0f, pad, rng);
          const std::vector<float> bias = random_vector(static_cast<size_t>(N), rng);
          const PackedSgemmB packed = sgemm_pack_b(kernel, p.B.data(), K, N, trans_b, p.ldb);
          std::vector<float> got = p.C;
          sgemm_packed(M, N, K, p.A.data(), p.lda, packed, got.data(), p.ldc, with_bias ? bias.data() : nullptr, act);
          expect_matches_oracle(p, got, with_bias ? &bias : nullptr, act,
                                std::string("packed ") + kernel.name + " act " +
                                    std::to_string(static_cast<int>(act.kind)) + (with_bias ? " bias " : " ") +
                                    describe(p));
          if (HasFailure()) return;
        }
      }
    }
  }
}

// Each output's K-sum order depends only on K: a row computed alone (M = 1,
// unpacked B) equals the same row inside a large product, bit for bit.
TEST_P(SgemmTest, RowResultsDoNotDependOnM) {
  const SgemmKernel& kernel = *GetParam();
  std::mt19937 rng(7);
  const int M = 157, N = 45, K = 600;
  const std::vector<float> a = random_vector(static_cast<size_t>(M) * K, rng);
  const std::vector<float> b = random_vector(static_cast<size_t>(K) * N, rng);
  std::vector<float> all(static_cast<size_t>(M) * N);
  sgemm(kernel, false, false, M, N, K, 1.0f, a.data(), K, b.data(), N, 0.0f, all.data(), N);
  const PackedSgemmB packed = sgemm_pack_b(kernel, b.data(), K, N, false);
  std::vector<float> all_packed(all.size());
  sgemm_packed(M, N, K, a.data(), K, packed, all_packed.data(), N, nullptr, SgemmActivation::none());
  EXPECT_EQ(all, all_packed);
  // A transposed (packed per call) gives the same bits as A read in place.
  std::vector<float> at(a.size());
  for (int i = 0; i < M; ++i)
    for (int k = 0; k < K; ++k) at[static_cast<size_t>(k) * M + i] = a[static_cast<size_t>(i) * K + k];
  std::vector<float> all_t(all.size());
  sgemm(kernel, true, false, M, N, K, 1.0f, at.data(), M, b.data(), N, 0.0f, all_t.data(), N);
  EXPECT_EQ(all, all_t);
  for (int i : {0, 5, 6, 11, 12, 143, 144, 156}) {
    std::vector<float> row(static_cast<size_t>(N));
    sgemm(kernel, false, false, 1, N, K, 1.0f, a.data() + static_cast<size_t>(i) * K, K, b.data(), N, 0.0f, row.data(),
          N);
    EXPECT_EQ(row, std::vector<float>(all.begin() + i * N, all.begin() + (i + 1) * N)) << "row " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Entries, SgemmTest, ::testing::ValuesIn(runnable_kernels()),
                         [](const ::testing::TestParamInfo<const SgemmKernel*>& info) {
                           return std::string(info.param->name);
                         });

// Every entry the CPU supports runs (above), the portable one last; the
// default is the first runnable entry (the best).
TEST(Sgemm, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const auto kernels = test::runnable_entries(sgemm_kernels(), allowed);
  ASSERT_FALSE(kernels.empty());
  EXPECT_EQ(kernels.back()->isa, Isa::kRef);
  test::check_coverage(sgemm_kernels(), allowed, "sgemm table");
  EXPECT_EQ(&sgemm_pick(allowed), kernels.front());
  EXPECT_EQ(&sgemm_default_kernel(), kernels.front());
  const std::vector<float> b(12, 1.0f);
  EXPECT_STREQ(sgemm_pack_b(b.data(), 3, 4, false).kernel_name(), kernels.front()->name);
}

// The FMA entries compute each element as the same FMA chain and epilogue,
// so they agree bit for bit (a model's FP32 output does not depend on which
// of them the CPU picked); checked on tails of every tile, all transposes,
// beta and the packed path's bias and activation.
TEST(Sgemm, FmaEntriesAreBitIdentical) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::vector<const SgemmKernel*> fma;
  for (const SgemmKernel* k : test::runnable_entries(sgemm_kernels(), allowed)) {
    if (k->isa != Isa::kRef) fma.push_back(k);
  }
  if (fma.size() < 2) GTEST_SKIP() << "fewer than two FMA entries run here";
  std::mt19937 rng(77);
  const int sizes[] = {1, 5, 7, 12, 13, 17, 31, 33, 300};
  int index = 0;
  for (int M : sizes) {
    for (int N : sizes) {
      for (int K : {1, 17, 256, 300}) {
        const bool ta = index % 2 == 1, tb = index % 3 == 1;
        Problem p = make_problem(ta, tb, M, N, K, 0.75f, index % 2 == 0 ? 0.0f : 1.5f, index % 4, rng);
        const std::vector<float> bias = random_vector(static_cast<size_t>(N), rng);
        const SgemmActivation act = index % 3 == 0 ? SgemmActivation::relu() : SgemmActivation::clip(-0.5f, 0.5f);
        ++index;
        std::vector<float> want = p.C, want_packed = p.C;
        sgemm(*fma[0], ta, tb, M, N, K, p.alpha, p.A.data(), p.lda, p.B.data(), p.ldb, p.beta, want.data(), p.ldc);
        const PackedSgemmB packed0 = sgemm_pack_b(*fma[0], p.B.data(), K, N, tb, p.ldb);
        if (!ta) sgemm_packed(M, N, K, p.A.data(), p.lda, packed0, want_packed.data(), p.ldc, bias.data(), act);
        for (size_t e = 1; e < fma.size(); ++e) {
          std::vector<float> got = p.C, got_packed = p.C;
          sgemm(*fma[e], ta, tb, M, N, K, p.alpha, p.A.data(), p.lda, p.B.data(), p.ldb, p.beta, got.data(), p.ldc);
          ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
              << fma[e]->name << " vs " << fma[0]->name << " " << describe(p);
          if (ta) continue;
          const PackedSgemmB packed = sgemm_pack_b(*fma[e], p.B.data(), K, N, tb, p.ldb);
          sgemm_packed(M, N, K, p.A.data(), p.lda, packed, got_packed.data(), p.ldc, bias.data(), act);
          ASSERT_EQ(std::memcmp(got_packed.data(), want_packed.data(), got.size() * sizeof(float)), 0)
              << "packed " << fma[e]->name << " vs " << fma[0]->name << " " << describe(p);
        }
      }
    }
  }
}

TEST(Sgemm, PackedRejectsWrongShape) {
  const std::vector<float> b(12, 1.0f);
  const PackedSgemmB packed = sgemm_pack_b(b.data(), 3, 4, false);
  std::vector<float> a(6), c(8);
  EXPECT_THROW(sgemm_packed(2, 4, 2, a.data(), 2, packed, c.data(), 4, nullptr, SgemmActivation::none()), Error);
}

// kvant's reference Gemm operator (src/ops/gemm.cc) and sgemm agree.
TEST(Sgemm, MatchesReferenceGemmOperator) {
  std::mt19937 rng(5);
  struct Case {
    int M, N, K;
    bool trans_a, trans_b;
    float alpha, beta;
  };
  const Case cases[] = {{1, 7, 5, false, false, 1.0f, 1.0f},
                        {17, 33, 31, true, false, 0.5f, 2.0f},
                        {64, 16, 257, false, true, -1.0f, 0.5f},
                        {100, 65, 300, true, true, 1.25f, 0.0f}};
  const OpDef* gemm_op = find_op("", "Gemm");
  ASSERT_NE(gemm_op, nullptr);
  for (const Case& cs : cases) {
    const std::vector<float> a = random_vector(static_cast<size_t>(cs.M) * cs.K, rng);
    const std::vector<float> b = random_vector(static_cast<size_t>(cs.K) * cs.N, rng);
    const std::vector<float> c = random_vector(static_cast<size_t>(cs.M) * cs.N, rng);
    Node node;
    node.name = "gemm";
    node.op_type = "Gemm";
    node.inputs = {"a", "b", "c"};
    node.outputs = {"y"};
    set_attr(node, "transA", int64_t{cs.trans_a});
    set_attr(node, "transB", int64_t{cs.trans_b});
    node.attributes["alpha"] = float_attr(cs.alpha);
    node.attributes["beta"] = float_attr(cs.beta);
    const Tensor ta = Tensor::from_vector<float>(a, cs.trans_a ? Shape{cs.K, cs.M} : Shape{cs.M, cs.K});
    const Tensor tb = Tensor::from_vector<float>(b, cs.trans_b ? Shape{cs.N, cs.K} : Shape{cs.K, cs.N});
    const Tensor tc = Tensor::from_vector<float>(c, {cs.M, cs.N});
    KernelContext ctx{node, 17, {&ta, &tb, &tc}, {}, nullptr};
    ctx.outputs.resize(1);
    gemm_op->run(ctx);
    const std::vector<float> want = ctx.outputs[0].to_float_vector();

    std::vector<float> got = c;
    sgemm(cs.trans_a, cs.trans_b, cs.M, cs.N, cs.K, cs.alpha, a.data(), cs.trans_a ? cs.M : cs.K, b.data(),
          cs.trans_b ? cs.K : cs.N, cs.beta, got.data(), cs.N);
    ASSERT_EQ(want.size(), got.size());
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-5 * (std::fabs(cs.alpha) * cs.K + std::fabs(cs.beta))) << "element " << i;
    }
  }
}

}  // namespace
}  // namespace kvant
