// ONNX Runtime contrib operators (domain com.microsoft) that kvant writes and
// must therefore also run: MatMulNBits, the weight-only INT4/INT8 export of
// `kvant quantize --mode weight-only --format ort`.
//
//   MatMulNBits(A float [..., K], B uint8 [N, k_blocks, blob], scales float
//               [N * k_blocks] or [N, k_blocks], zero_points uint8 packed
//               [N * ceil(k_blocks * bits / 8)] (optional), g_idx (unsupported),
//               bias float [N] (optional))  attributes K, N, bits, block_size
//   k_blocks = ceil(K / block_size), blob = block_size * bits / 8. The codes
//   of column n, block b are packed low bits first along K; the zero points
//   of one column likewise. Without zero_points the zero point is 2^(bits-1).
//   Y[..., n] = sum_k A[..., k] * (code[n, k] - zp[n, k / block_size]) * scale[n, k / block_size] + bias[n]
#include "ops/op_registry.h"

namespace kvant {

namespace {

int packed_code(const uint8_t* bytes, int64_t index, int bits) {
  const int per_byte = 8 / bits;
  const uint8_t byte = bytes[index / per_byte];
  return (byte >> ((index % per_byte) * bits)) & ((1 << bits) - 1);
}

void matmul_nbits(KernelContext& ctx) {
  const Node& node = ctx.node;
  const int64_t K = node.attr_int("K", -1), N = node.attr_int("N", -1);
  const int64_t bits = node.attr_int("bits", 4), block = node.attr_int("block_size", -1);
  if (K <= 0 || N <= 0) ctx.fail("attributes K and N must be positive");
  if (bits != 2 && bits != 4 && bits != 8) ctx.unsupported("bits " + std::to_string(bits) + " (2, 4 or 8)");
  if (block < 16 || (block & (block - 1)) != 0) ctx.fail("block_size must be a power of two >= 16");
  const int64_t k_blocks = (K + block - 1) / block, blob = block * bits / 8;
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  const Tensor& scales = ctx.input(2);
  if (a.dtype() != DType::kFloat32) ctx.unsupported("A of type " + std::string(dtype_name(a.dtype())));
  if (a.rank() < 1 || a.shape().back() != K) ctx.fail("A " + a.describe() + " must end in K = " + std::to_string(K));
  if (b.dtype() != DType::kUInt8 || b.numel() != N * k_blocks * blob) {
    ctx.fail("B must be uint8 [N, k_blocks, blob] = [" + std::to_string(N) + ", " + std::to_string(k_blocks) + ", " +
             std::to_string(blob) + "], got " + b.describe());
  }
  if (scales.dtype() != DType::kFloat32 || scales.numel() != N * k_blocks) {
    ctx.fail("scales must be float32 with N * k_blocks = " + std::to_string(N * k_blocks) + " values, got " +
             scales.describe());
  }
  const uint8_t* zp = nullptr;
  const int64_t zp_row = (k_blocks * bits + 7) / 8;
  if (ctx.has_input(3)) {
    const Tensor& z = ctx.input(3);
    if (z.dtype() != DType::kUInt8) ctx.unsupported("zero_points of type " + std::string(dtype_name(z.dtype())));
    if (z.numel() != N * zp_row) {
      ctx.fail("zero_points must hold N * ceil(k_blocks * bits / 8) = " + std::to_string(N * zp_row) + " bytes, got " +
               z.describe());
    }
    zp = z.data<uint8_t>();
  }
  if (ctx.has_input(4)) ctx.unsupported("g_idx (act-order) input");
  const float* bias = nullptr;
  if (ctx.has_input(5)) {
    const Tensor& bt = ctx.input(5);
    if (bt.dtype() != DType::kFloat32 || bt.numel() != N) ctx.fail("bias must be float32 [N], got " + bt.describe());
    bias = bt.data<float>();
  }
  // Dequantize B to float [N, K] once, then a plain row-by-column product.
  std::vector<float> w(static_cast<size_t>(N * K));
  const uint8_t* codes = b.data<uint8_t>();
  const float* s = scales.data<float>();
  const int default_zp = 1 << (bits - 1);
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t blk = 0; blk < k_blocks; ++blk) {
      const int z = zp ? packed_code(zp + n * zp_row, blk, static_cast<int>(bits)) : default_zp;
      const float scale = s[n * k_blocks + blk];
      const uint8_t* blob_bytes = codes + (n * k_blocks + blk) * blob;
      for (int64_t j = 0; j < block && blk * block + j < K; ++j) {
        w[static_cast<size_t>(n * K + blk * block + j)] =
            static_cast<float>(packed_code(blob_bytes, j, static_cast<int>(bits)) - z) * scale;
      }
    }
  }
  Shape out_shape = a.shape();
  out_shape.back() = N;
  Tensor y(DType::kFloat32, out_shape);
  const int64_t rows = a.numel() / K;
  const float* av = a.data<float>();
  float* yv = y.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = bias ? bias[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(av[r * K + k]) * w[static_cast<size_t>(n * K + k)];
      yv[r * N + n] = static_cast<float>(acc);
    }
  }
  ctx.set_output(0, std::move(y));
}

constexpr OpDef kContribOps[] = {
    {"MatMulNBits", "com.microsoft", matmul_nbits},
};

}  // namespace

std::span<const OpDef> contrib_ops() { return kContribOps; }

}  // namespace kvant
