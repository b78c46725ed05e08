// Transpose as a kernel step (any dtype, any rank up to 8): the output is
// walked in order; dims of size 1 are dropped and input-adjacent dims that
// stay adjacent are merged first, so the common cases are a few long runs:
// a permutation that keeps the last axis last copies contiguous rows
// (BERT's [B, S, H, D] -> [B, H, S, D]); otherwise the innermost output
// axis is a strided gather. 8-bit codes whose last two output axes are a
// matrix transpose run blocks: 16x16 byte transposes where both are 16 or
// more, an interleave of up to 8 input rows where the innermost output axis
// is short (the channel shuffle's [.., 2, C/2] -> [.., C/2, 2] of every NHWC
// pixel, an RGB input's NCHW -> NHWC); 32-bit elements whose last two
// axes swap run 16x16 blocks too (the FP32 NCHW <-> NHWC edges).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/layout_u8.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

// d[i] = s[i * stride]: element copies of a known size (a memcpy of a
// run-time size per element costs a call per byte).
template <typename T>
void gather(const T* s, int64_t stride, int64_t n, T* d) {
  for (int64_t i = 0; i < n; ++i) d[i] = s[i * stride];
}

// d[i * B + b] = s[i + b * stride], i < a, b < B: B rows interleaved.
template <int B>
void interleave(const uint8_t* s, int64_t stride, int64_t a, uint8_t* d) {
  for (int64_t i = 0; i < a; ++i) {
    for (int b = 0; b < B; ++b) d[i * B + b] = s[i + b * stride];
  }
}
void interleave_rows(const uint8_t* s, int64_t stride, int64_t a, int64_t rows, uint8_t* d) {
  switch (rows) {
    case 2: return interleave<2>(s, stride, a, d);
    case 3: return interleave<3>(s, stride, a, d);
    case 4: return interleave<4>(s, stride, a, d);
    default:
      for (int64_t i = 0; i < a; ++i) {
        for (int64_t b = 0; b < rows; ++b) d[i * rows + b] = s[i + b * stride];
      }
  }
}

class TransposeStep : public Step {
 public:
  TransposeStep(std::vector<int64_t> perm, Isa isa) : perm_(std::move(perm)), u8_(&pick_transpose_u8(isa)) {}
  std::string kernel() const override { return "transpose"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    const int rank = x.rank();
    if (rank > 8) throw Error(ErrorCode::kUnsupported, name + ": rank above 8");
    std::vector<int64_t> perm = perm_;
    if (perm.empty()) {
      for (int i = rank - 1; i >= 0; --i) perm.push_back(i);
    }
    if (static_cast<int>(perm.size()) != rank) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": perm has " + std::to_string(perm.size()) + " entries for " + x.describe());
    }
    std::vector<bool> seen(static_cast<size_t>(rank), false);
    Shape s;
    for (int64_t p : perm) {
      if (p < 0 || p >= rank || seen[static_cast<size_t>(p)]) {
        throw Error(ErrorCode::kInvalidArgument, name + ": perm is not a permutation of the axes of " + x.describe());
      }
      seen[static_cast<size_t>(p)] = true;
      s.push_back(x.dim(static_cast<int>(p)));
    }
    out.assign(1, {x.dtype(), s});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const Tensor& x = *in[0];
    Tensor& y = *out[0];
    if (y.numel() == 0) return;
    const int rank = x.rank();
    const size_t elem = x.nbytes() / static_cast<size_t>(x.numel());
    int64_t perm[8];  // no allocation per run
    for (int i = 0; i < rank; ++i) perm[i] = perm_.empty() ? rank - 1 - i : perm_[static_cast<size_t>(i)];
    // Input strides (elements), then the output axes with their input
    // strides, size-1 axes dropped, runs of consecutive input axes merged.
    int64_t in_stride[8];
    int64_t acc = 1;
    for (int i = rank - 1; i >= 0; --i) {
      in_stride[i] = acc;
      acc *= x.dim(i);
    }
    int64_t dims[8], strides[8];
    int n = 0;
    for (int i = 0; i < rank; ++i) {
      const int a = static_cast<int>(perm[i]);
      if (x.dim(a) == 1) continue;
      if (n > 0 && strides[n - 1] == in_stride[a] * x.dim(a)) {
        dims[n - 1] *= x.dim(a);
        strides[n - 1] = in_stride[a];
        continue;
      }
      dims[n] = x.dim(a);
      strides[n] = in_stride[a];
      ++n;
    }
    const auto* src = static_cast<const std::byte*>(x.raw());
    auto* dst = static_cast<std::byte*>(y.raw());
    if (n == 0) {
      std::memcpy(dst, src, elem);
      return;
    }
    const int64_t inner = dims[n - 1];
    const int64_t inner_stride = strides[n - 1];
    if (elem == 1 && n >= 2 && strides[n - 2] == 1 && inner >= 16 && dims[n - 2] >= 16 && inner <= INT32_MAX &&
        dims[n - 2] <= INT32_MAX) {
      transpose_blocks(src, dst, dims, strides, n, false);
      return;
    }
    if (elem == 1 && n >= 2 && strides[n - 2] == 1 && inner >= 2 && inner <= 8) {
      transpose_blocks(src, dst, dims, strides, n, true);
      return;
    }
    if (elem == 4 && n >= 2 && strides[n - 2] == 1 && inner_stride != 1) {
      transpose_blocks_f32(reinterpret_cast<const uint32_t*>(src), reinterpret_cast<uint32_t*>(dst), dims, strides, n);
      return;
    }
    const int64_t rows = y.numel() / inner;
    int64_t idx[8] = {};
    for (int64_t row = 0; row < rows; ++row) {
      int64_t off = 0;
      for (int d = 0; d + 1 < n; ++d) off += idx[d] * strides[d];
      std::byte* out_row = dst + static_cast<size_t>(row * inner) * elem;
      if (inner_stride == 1) {
        std::memcpy(out_row, src + static_cast<size_t>(off) * elem, static_cast<size_t>(inner) * elem);
      } else if (elem == 4) {
        gather(reinterpret_cast<const uint32_t*>(src) + off, inner_stride, inner, reinterpret_cast<uint32_t*>(out_row));
      } else if (elem == 1) {  // 8-bit codes (the layout pass's NCHW <-> NHWC copies)
        gather(reinterpret_cast<const uint8_t*>(src) + off, inner_stride, inner, reinterpret_cast<uint8_t*>(out_row));
      } else if (elem == 2) {
        gather(reinterpret_cast<const uint16_t*>(src) + off, inner_stride, inner, reinterpret_cast<uint16_t*>(out_row));
      } else if (elem == 8) {
        gather(reinterpret_cast<const uint64_t*>(src) + off, inner_stride, inner, reinterpret_cast<uint64_t*>(out_row));
      } else {
        for (int64_t i = 0; i < inner; ++i) {
          std::memcpy(out_row + static_cast<size_t>(i) * elem, src + static_cast<size_t>(off + i * inner_stride) * elem,
                      elem);
        }
      }
      for (int d = n - 2; d >= 0; --d) {
        if (++idx[d] < dims[d]) break;
        idx[d] = 0;
      }
    }
  }

 private:
  // 8-bit codes whose last two output axes are a matrix transpose of the
  // input's (the layout pass's NCHW <-> NHWC copies: output [.., A, B] read
  // at a + b * stride): each [A, B] block through layout_u8.h's 16x16
  // byte transpose.
  // short: the output's last axis has at most 8 entries (interleave_rows).
  void transpose_blocks(const std::byte* src, std::byte* dst, const int64_t* dims, const int64_t* strides, int n,
                        bool short_rows) const {
    const int64_t a = dims[n - 2], b = dims[n - 1];
    int64_t outer = 1;
    for (int d = 0; d + 2 < n; ++d) outer *= dims[d];
    int64_t idx[8] = {};
    for (int64_t o = 0; o < outer; ++o) {
      int64_t off = 0;
      for (int d = 0; d + 2 < n; ++d) off += idx[d] * strides[d];
      if (short_rows) {
        interleave_rows(reinterpret_cast<const uint8_t*>(src) + off, strides[n - 1], a, b,
                        reinterpret_cast<uint8_t*>(dst) + o * a * b);
      } else {
        u8_->run(reinterpret_cast<const uint8_t*>(src) + off, strides[n - 1], static_cast<int>(b), static_cast<int>(a),
                 reinterpret_cast<uint8_t*>(dst) + o * a * b, b, 0);
      }
      for (int d = n - 3; d >= 0; --d) {
        if (++idx[d] < dims[d]) break;
        idx[d] = 0;
      }
    }
  }

  // 32-bit elements whose last two output axes are a matrix transpose of
  // the input's (FP32 NCHW <-> NHWC at the layout pass's edges, e.g. a
  // 3-channel image: one gather of 3 per output row cost a row loop each):
  // 16 x 16 blocks, each output row written contiguously.
  static void transpose_blocks_f32(const uint32_t* src, uint32_t* dst, const int64_t* dims, const int64_t* strides,
                                   int n) {
    const int64_t a = dims[n - 2], b = dims[n - 1], stride = strides[n - 1];
    int64_t outer = 1;
    for (int d = 0; d + 2 < n; ++d) outer *= dims[d];
    int64_t idx[8] = {};
    constexpr int64_t kBlock = 16;
    // Within a block the inner loop runs along the side whose stride is the
    // longer one, so that side is read (or written) contiguously and the
    // other side steps by the shorter stride: 16 accesses 16 KiB apart (an
    // FP32 [16, 64, 64] plane to NHWC read down its planes) fall in one L1
    // set and evict each other (8 ways), which made U-Net's two
    // ConvTranspose-output transposes about 10% of its static run.
    const bool read_across = stride > b;
    for (int64_t o = 0; o < outer; ++o) {
      int64_t off = 0;
      for (int d = 0; d + 2 < n; ++d) off += idx[d] * strides[d];
      const uint32_t* s = src + off;
      uint32_t* t = dst + o * a * b;
      for (int64_t i0 = 0; i0 < a; i0 += kBlock) {
        const int64_t i1 = std::min(a, i0 + kBlock);
        for (int64_t j0 = 0; j0 < b; j0 += kBlock) {
          const int64_t j1 = std::min(b, j0 + kBlock);
          if (read_across) {
            for (int64_t j = j0; j < j1; ++j) {
              for (int64_t i = i0; i < i1; ++i) t[i * b + j] = s[j * stride + i];
            }
          } else {
            for (int64_t i = i0; i < i1; ++i) {
              for (int64_t j = j0; j < j1; ++j) t[i * b + j] = s[j * stride + i];
            }
          }
        }
      }
      for (int d = n - 3; d >= 0; --d) {
        if (++idx[d] < dims[d]) break;
        idx[d] = 0;
      }
    }
  }

  std::vector<int64_t> perm_;
  const TransposeU8Kernel* u8_;  // the byte transpose of kernels/layout_u8.h, picked once
};

}  // namespace

std::unique_ptr<Step> make_transpose_step(std::vector<int64_t> perm, Isa isa) {
  return std::make_unique<TransposeStep>(std::move(perm), isa);
}

}  // namespace kvant
