// Weight-only export in ONNX Runtime's own format (`--format ort`):
// MatMul(x, W [K, N]) -> com.microsoft.MatMulNBits(x, B, scales[, zero_points]).
// Same round-to-nearest numerics as the opset-21 blocked DequantizeLinear
// export (weight_only.cc): per column n and block b of `group_size` values
// along K, choose_qparams on the block's [min, max] (int4 symmetric or uint4
// affine; at 4 bits clipped to its least-squared-error ratio first,
// quant/mse_clip.h), codes = quantize_value(w). ORT's layout (ops/contrib.cc): B uint8
// [N, k_blocks, blob] codes low bits first along K, as unsigned codes;
// symmetric int4 q in [-8, 7] is stored as q + 8 with no zero_points input
// (the operator's default zero point is 8); affine stores uint4 codes and
// packed zero points. Gemm (alpha = beta = 1, transA = 0) also maps, with C
// as the bias input (index 5).
#include <algorithm>
#include <cmath>

#include "kvant/status.h"
#include "quant/mse_clip.h"
#include "quant/qdq.h"
#include "quant/quantize.h"

namespace kvant {

namespace {

struct Packed {
  Tensor b, scales, zero_points;  // zero_points undefined when symmetric
};

// w is [K, N] float (column n = output n).
Packed pack_nbits(const Tensor& w, int64_t K, int64_t N, bool k_major, int bits, int block, Symmetry symmetry,
                  bool clip) {
  const int64_t k_blocks = (K + block - 1) / block, blob = block * bits / 8;
  const int64_t zp_row = (k_blocks * bits + 7) / 8;
  const int per_byte = 8 / bits;
  const DType storage = symmetry == Symmetry::kSymmetric ? (bits == 4 ? DType::kInt4 : DType::kInt8)
                                                         : (bits == 4 ? DType::kUInt4 : DType::kUInt8);
  const QuantRange range = quant_range(storage);
  const int32_t offset = symmetry == Symmetry::kSymmetric ? (1 << (bits - 1)) : 0;
  Packed p;
  p.b = Tensor(DType::kUInt8, {N, k_blocks, blob});
  p.scales = Tensor(DType::kFloat32, {N * k_blocks});
  if (symmetry == Symmetry::kAffine) p.zero_points = Tensor(DType::kUInt8, {N * zp_row});
  uint8_t* codes = p.b.data<uint8_t>();
  std::fill(codes, codes + p.b.numel(), 0);
  if (p.zero_points.defined()) std::fill(p.zero_points.data<uint8_t>(), p.zero_points.data<uint8_t>() + N * zp_row, 0);
  const float* wv = w.data<float>();
  auto at = [&](int64_t k, int64_t n) { return k_major ? wv[k * N + n] : wv[n * K + k]; };
  std::vector<float> group;
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t blk = 0; blk < k_blocks; ++blk) {
      const int64_t k0 = blk * block, k1 = std::min(K, k0 + block);
      float lo = 0, hi = 0;
      for (int64_t k = k0; k < k1; ++k) {
        if (!std::isfinite(at(k, n))) continue;  // only with --allow-nonfinite
        lo = std::min(lo, at(k, n));
        hi = std::max(hi, at(k, n));
      }
      if (clip) {
        group.clear();
        for (int64_t k = k0; k < k1; ++k) group.push_back(at(k, n));
        mse_clip_range(group.data(), static_cast<int64_t>(group.size()), 1, storage, symmetry, &lo, &hi);
      }
      float scale = 1;
      int32_t zp = 0;
      choose_qparams(lo, hi, storage, symmetry, false, &scale, &zp);
      p.scales.data<float>()[n * k_blocks + blk] = scale;
      if (p.zero_points.defined()) {
        p.zero_points.data<uint8_t>()[n * zp_row + blk / per_byte] |=
            static_cast<uint8_t>(zp << ((blk % per_byte) * bits));
      }
      // Padding past K keeps the code of 0.0 (the zero point) so it adds nothing.
      const int32_t zero_code = symmetry == Symmetry::kSymmetric ? offset : zp;
      uint8_t* blob_bytes = codes + (n * k_blocks + blk) * blob;
      for (int64_t j = 0; j < block; ++j) {
        const int64_t k = k0 + j;
        const int32_t code = k < K ? quantize_value(at(k, n), scale, zp, range) + offset : zero_code;
        blob_bytes[j / per_byte] |= static_cast<uint8_t>(code << ((j % per_byte) * bits));
      }
    }
  }
  return p;
}

}  // namespace

Model quantize_matmul_nbits(const Model& model, int bits, const QuantizeOptions& options, QuantizeSummary* summary) {
  if (is_quantized_model(model)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the model is already quantized (it has QuantizeLinear/DequantizeLinear or integer operators); "
                "quantize its FP32 original instead");
  }
  if (bits != 4 && bits != 8) {
    throw Error(ErrorCode::kInvalidArgument, "--bits must be 4 or 8, got " + std::to_string(bits));
  }
  const int block = options.group_size;
  if (block < 16 || (block & (block - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "--group-size must be a power of two >= 16 (32, 64, 128), got " + std::to_string(block));
  }
  Model out = model;
  Graph& g = out.graph;
  const std::set<std::string> excluded = resolve_excluded_nodes(g, options.exclude, {"MatMul", "Gemm"});
  std::map<std::string, int> weight_readers;
  for (const Node& n : g.nodes) {
    for (const auto& in : n.inputs) weight_readers[in]++;
  }
  int64_t done = 0;
  for (Node& n : g.nodes) {
    if (n.op_type != "MatMul" && n.op_type != "Gemm") continue;
    if (excluded.count(n.name)) {
      if (summary) summary->kept_fp32.push_back(n.name);
      continue;
    }
    if (n.inputs.size() < 2 || !g.initializers.count(n.inputs[1])) continue;
    const Tensor& w = g.initializers.at(n.inputs[1]);
    if (w.dtype() != DType::kFloat32 || w.rank() != 2) continue;
    bool k_major = true;
    std::string bias;
    if (n.op_type == "Gemm") {
      if (n.attr_int("transA", 0) || n.attr_float("alpha", 1.0f) != 1.0f || n.attr_float("beta", 1.0f) != 1.0f)
        continue;
      k_major = n.attr_int("transB", 0) == 0;
      if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
        auto c = g.initializers.find(n.inputs[2]);
        if (c == g.initializers.end() || c->second.rank() != 1) continue;  // only a per-column bias maps
        bias = n.inputs[2];
      }
    }
    check_finite_weight(w, n.inputs[1], options.allow_nonfinite);
    const int64_t K = k_major ? w.dim(0) : w.dim(1), N = k_major ? w.dim(1) : w.dim(0);
    const Packed p = pack_nbits(w, K, N, k_major, bits, block,
                                options.weight_symmetry == Symmetry::kAffine ? Symmetry::kAffine : Symmetry::kSymmetric,
                                bits == 4 && options.weight_clip_search);
    const std::string base = n.inputs[1];
    const std::string b_name = base + "/nbits", s_name = base + "/nbits_scales", z_name = base + "/nbits_zp";
    g.initializers[b_name] = p.b;
    g.initializers[s_name] = p.scales;
    std::vector<std::string> inputs = {n.inputs[0], b_name, s_name};
    if (p.zero_points.defined()) {
      g.initializers[z_name] = p.zero_points;
      inputs.push_back(z_name);
    }
    if (!bias.empty()) {
      inputs.resize(5);  // zero_points, g_idx omitted where absent
      inputs.push_back(bias);
    }
    if (--weight_readers[base] == 0) g.initializers.erase(base);
    if (summary) summary->layer_outputs.emplace_back(n.name, n.outputs[0]);
    n.op_type = "MatMulNBits";
    n.domain = "com.microsoft";
    n.inputs = inputs;
    n.attributes.clear();
    set_attr(n, "K", K);
    set_attr(n, "N", N);
    set_attr(n, "bits", static_cast<int64_t>(bits));
    set_attr(n, "block_size", static_cast<int64_t>(block));
    set_attr(n, "accuracy_level", options.accuracy_level);
    ++done;
  }
  if (done == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "nothing to quantize: no MatMul/Gemm with a constant 2-D FP32 weight (Gemm: alpha = beta = 1, "
                "transA = 0)");
  }
  out.opset_imports["com.microsoft"] = 1;
  if (summary) {
    summary->quantized_nodes = done;
    for (auto& w : minimum_scale_warnings(g)) summary->warnings.push_back(std::move(w));
  }
  return out;
}

}  // namespace kvant
