// GPTQ weight rounding (Frantar et al., 2022, "GPTQ: Accurate Post-Training
// Quantization for Generative Pre-trained Transformers"; gptq.cc).
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"
#include "quant/quant_params.h"
#include "quant/quantize.h"

namespace kvant {

// Second moment of a layer input x [.., K] over the calibration set:
// h = sum over rows x x^T (K x K, row-major), and how many rows it summed.
struct InputMoment {
  int64_t k = 0;
  int64_t rows = 0;
  std::vector<double> h;
};

// Adds the rows of x [rows, K] (K = m.k, m.h sized K x K) to m's upper
// triangle; mirror_moment fills the lower one once all rows are in.
void accumulate_moment(InputMoment& m, const float* x, int64_t rows);
void mirror_moment(InputMoment& m);

// Runs `model` on at most options.max_samples calibration samples and sums
// the moment of each tensor named in `inputs` (graph inputs or node outputs
// with last dim K). Throws Error naming the sample that fails, a tensor that
// never appears, or a non-finite input value.
std::map<std::string, InputMoment> collect_input_moments(const Model& model, SampleSource& calibration,
                                                         const std::set<std::string>& inputs,
                                                         const QuantizeOptions& options);

// Quantizes a MatMul-style weight `w` whose reduction axis is `k_axis` (0 for
// [K, N], 1 for [N, K] as Gemm with transB) in groups of `group_size` along
// K, choosing each value's rounding so that the layer's output error on the
// inputs behind `moment` is small (GPTQ's column-by-column update with the
// inverse Hessian's Cholesky factor). `w` is replaced by the dequantized
// values, so quantize_tensor(w, result) gives back the chosen integers.
// Group scales come from the group's values as updated when the group
// starts (min/max, or least-squares clipping with mse_clip). `damp` adds
// damp * mean(diag H) to H's diagonal (GPTQ's default 0.01).
QuantParams gptq_quantize(Tensor& w, int k_axis, const InputMoment& moment, int group_size, DType storage,
                          Symmetry symmetry, bool mse_clip, double damp);

}  // namespace kvant
