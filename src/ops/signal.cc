// Signal-processing reference kernels (opset 17): DFT, STFT, the Hann,
// Hamming and Blackman windows and MelWeightMatrix. Sums run in double.
//
// DFT(x [batch, n1.., 1 | 2], dft_length?) -> [.., 2]
//   Along `axis` (default 1; never the last, which holds real or real+imag),
//   the signal is cut or zero-padded to n = dft_length (default: its length),
//   then X[m] = sum_k x[k] e^(-2 pi i m k / n); inverse = 1 uses e^(+..) and
//   divides by n. onesided = 1 keeps bins 0 .. n/2 (real input only).
//   Direct O(n^2) sums over a table of the n twiddle factors.
// STFT(signal [batch, length, 1 | 2], frame_step, window?, frame_length?)
//   -> [batch, frames, bins, 2]; frame f holds samples f*frame_step ..
//   + frame_length - 1, times the window (none: ones), through the DFT above;
//   frames = (length - frame_length) / frame_step + 1; onesided (default 1)
//   keeps frame_length / 2 + 1 bins.
// HannWindow / HammingWindow / BlackmanWindow(size) -> [size]
//   w[k] = a0 - a1 cos(2 pi k / N) + a2 cos(4 pi k / N), N = size (periodic,
//   the default) or size - 1 (symmetric); Hann a = (1/2, 1/2, 0), Hamming
//   (25/46, 21/46, 0), Blackman (0.42, 0.5, 0.08).
// MelWeightMatrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz,
//   upper_edge_hertz) -> [dft_length / 2 + 1, num_mel_bins]: num_mel_bins + 2
//   points evenly spaced in mel (2595 log10(1 + f / 700)) from lower to upper
//   edge, mapped to DFT bins floor((dft_length + 1) f / sample_rate); filter i
//   rises linearly from point i to point i + 1 and falls to point i + 2.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"

namespace kvant {

namespace {

// Longest signal, frame or filter bank these kernels accept: the direct DFT
// costs n^2 per transform.
constexpr int64_t kMaxSignalLength = int64_t{1} << 20;

int64_t scalar_int(const KernelContext& ctx, size_t i, const char* what) {
  const Tensor& t = ctx.input(i);
  if (t.numel() != 1 || !is_integer(t.dtype()))
    ctx.fail(std::string(what) + " must be one integer, got " + t.describe());
  return t.get_as_int64(0);
}

double scalar_number(const KernelContext& ctx, size_t i, const char* what) {
  const Tensor& t = ctx.input(i);
  if (t.numel() != 1) ctx.fail(std::string(what) + " must hold one value, got " + t.describe());
  return t.get_as_double(0);
}

DType output_dtype(const KernelContext& ctx) {
  const int64_t code = ctx.node.attr_int("output_datatype", static_cast<int64_t>(DType::kFloat32));
  if (code < 0 || code > 64 || !is_known_dtype(static_cast<int32_t>(code))) {
    ctx.fail("output_datatype " + std::to_string(code) + " is not a tensor type");
  }
  const DType d = static_cast<DType>(code);
  if (!is_float(d) && !(is_integer(d) && dtype_bits(d) >= 8)) {
    ctx.fail(std::string("output_datatype ") + dtype_name(d) + " is not supported");
  }
  return d;
}

// One complex transform of length n over `in` (n complex values, zeros past
// the signal), into `out` (bins values); twiddle[k] = e^(sign 2 pi i k / n).
struct Dft {
  explicit Dft(int64_t n, bool inverse) : n_(n), inverse_(inverse), cos_(static_cast<size_t>(n)), sin_(cos_.size()) {
    const double sign = inverse ? 1.0 : -1.0;
    for (int64_t k = 0; k < n; ++k) {
      const double a = 2 * std::numbers::pi * static_cast<double>(k) / static_cast<double>(n);
      cos_[static_cast<size_t>(k)] = std::cos(a);
      sin_[static_cast<size_t>(k)] = sign * std::sin(a);
    }
  }
  void run(const std::vector<double>& re, const std::vector<double>& im, int64_t bins, std::vector<double>& out_re,
           std::vector<double>& out_im) const {
    for (int64_t m = 0; m < bins; ++m) {
      double sr = 0, si = 0;
      int64_t t = 0;  // (m * k) mod n, stepped without overflow
      for (int64_t k = 0; k < n_; ++k) {
        const double c = cos_[static_cast<size_t>(t)], s = sin_[static_cast<size_t>(t)];
        const double xr = re[static_cast<size_t>(k)], xi = im[static_cast<size_t>(k)];
        sr += xr * c - xi * s;
        si += xr * s + xi * c;
        t += m;
        if (t >= n_) t %= n_;
      }
      if (inverse_) {
        sr /= static_cast<double>(n_);
        si /= static_cast<double>(n_);
      }
      out_re[static_cast<size_t>(m)] = sr;
      out_im[static_cast<size_t>(m)] = si;
    }
  }

 private:
  int64_t n_;
  bool inverse_;
  std::vector<double> cos_, sin_;
};

template <typename T>
void run_dft(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 3 || (x.shape().back() != 1 && x.shape().back() != 2)) {
    ctx.fail("input " + x.describe() + " must be [batch, signal dims.., 1 or 2]");
  }
  const int64_t rank = x.rank();
  // Opset 20 moved axis from an attribute (default 1) to input 2 (default -2).
  int64_t axis = ctx.node.attr_int("axis", 1);
  if (ctx.opset >= 20) axis = ctx.has_input(2) && ctx.input(2).numel() > 0 ? scalar_int(ctx, 2, "axis") : -2;
  const int64_t given_axis = axis;
  if (axis < 0) axis += rank;
  if (axis < 1 || axis >= rank - 1) {
    ctx.fail("axis " + std::to_string(given_axis) + " must be a signal axis of " + x.describe());
  }
  const bool inverse = ctx.node.attr_int("inverse", 0) != 0;
  const bool onesided = ctx.node.attr_int("onesided", 0) != 0;
  const bool complex_in = x.shape().back() == 2;
  if (onesided && (inverse || complex_in)) ctx.fail("onesided = 1 needs a real input and inverse = 0");
  const int64_t length = x.dim(static_cast<int>(axis));
  int64_t n = length;
  if (ctx.has_input(1) && ctx.input(1).numel() > 0) n = scalar_int(ctx, 1, "dft_length");
  if (n < 1 || n > kMaxSignalLength) {
    ctx.fail("dft_length must be in [1, " + std::to_string(kMaxSignalLength) + "], got " + std::to_string(n));
  }
  const int64_t bins = onesided ? n / 2 + 1 : n;
  Shape out_shape = x.shape();
  out_shape[static_cast<size_t>(axis)] = bins;
  out_shape.back() = 2;
  Tensor y(x.dtype(), out_shape);
  const int64_t outer = shape_product(x.shape(), 0, static_cast<size_t>(axis));
  const int64_t inner = shape_product(x.shape(), static_cast<size_t>(axis) + 1, static_cast<size_t>(rank) - 1);
  const int64_t comps = x.shape().back();
  const T* in = x.data<T>();
  T* out = y.data<T>();
  const Dft dft(n, inverse);
  std::vector<double> re(static_cast<size_t>(n)), im(re.size()), out_re(static_cast<size_t>(bins)),
      out_im(out_re.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j = 0; j < inner; ++j) {
      for (int64_t k = 0; k < n; ++k) {
        const bool inside = k < length;
        const int64_t at = ((o * length + k) * inner + j) * comps;
        re[static_cast<size_t>(k)] = inside ? static_cast<double>(to_compute(in[at])) : 0.0;
        im[static_cast<size_t>(k)] = inside && complex_in ? static_cast<double>(to_compute(in[at + 1])) : 0.0;
      }
      dft.run(re, im, bins, out_re, out_im);
      for (int64_t m = 0; m < bins; ++m) {
        const int64_t at = ((o * bins + m) * inner + j) * 2;
        out[at] = from_compute<T>(static_cast<compute_t<T>>(out_re[static_cast<size_t>(m)]));
        out[at + 1] = from_compute<T>(static_cast<compute_t<T>>(out_im[static_cast<size_t>(m)]));
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

void dft(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_dft(ctx, tag); });
}

template <typename T>
void run_stft(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() != 3 || (x.dim(2) != 1 && x.dim(2) != 2)) {
    ctx.fail("signal " + x.describe() + " must be [batch, length, 1 or 2]");
  }
  const int64_t step = scalar_int(ctx, 1, "frame_step");
  if (step < 1) ctx.fail("frame_step must be positive, got " + std::to_string(step));
  const bool has_window = ctx.has_input(2) && ctx.input(2).numel() > 0;
  int64_t frame = -1;
  if (has_window) {
    const Tensor& w = ctx.input(2);
    if (w.rank() != 1) ctx.fail("window " + w.describe() + " must be 1-D");
    frame = w.dim(0);
  }
  if (ctx.has_input(3) && ctx.input(3).numel() > 0) {
    const int64_t fl = scalar_int(ctx, 3, "frame_length");
    if (frame >= 0 && fl != frame) {
      ctx.fail("frame_length " + std::to_string(fl) + " differs from the window's length " + std::to_string(frame));
    }
    frame = fl;
  }
  if (frame < 0) ctx.fail("needs a window or a frame_length");
  const int64_t length = x.dim(1);
  if (frame < 1 || frame > length || frame > kMaxSignalLength) {
    ctx.fail("frame length " + std::to_string(frame) + " must be in [1, signal length " + std::to_string(length) + "]");
  }
  const bool onesided = ctx.node.attr_int("onesided", 1) != 0;
  const bool complex_in = x.dim(2) == 2;
  if (onesided && complex_in) ctx.fail("onesided = 1 needs a real signal");
  const int64_t frames = (length - frame) / step + 1;
  const int64_t bins = onesided ? frame / 2 + 1 : frame;
  const int64_t batch = x.dim(0);
  Tensor y(x.dtype(), {batch, frames, bins, 2});
  std::vector<double> window(static_cast<size_t>(frame), 1.0);
  if (has_window) {
    for (int64_t k = 0; k < frame; ++k) window[static_cast<size_t>(k)] = ctx.input(2).get_as_double(k);
  }
  const T* in = x.data<T>();
  T* out = y.data<T>();
  const int64_t comps = x.dim(2);
  const Dft dft(frame, false);
  std::vector<double> re(static_cast<size_t>(frame)), im(re.size()), out_re(static_cast<size_t>(bins)),
      out_im(out_re.size());
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t f = 0; f < frames; ++f) {
      for (int64_t k = 0; k < frame; ++k) {
        const int64_t at = (b * length + f * step + k) * comps;
        const double w = window[static_cast<size_t>(k)];
        re[static_cast<size_t>(k)] = w * static_cast<double>(to_compute(in[at]));
        im[static_cast<size_t>(k)] = complex_in ? w * static_cast<double>(to_compute(in[at + 1])) : 0.0;
      }
      dft.run(re, im, bins, out_re, out_im);
      for (int64_t m = 0; m < bins; ++m) {
        const int64_t at = ((b * frames + f) * bins + m) * 2;
        out[at] = from_compute<T>(static_cast<compute_t<T>>(out_re[static_cast<size_t>(m)]));
        out[at + 1] = from_compute<T>(static_cast<compute_t<T>>(out_im[static_cast<size_t>(m)]));
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

void stft(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_stft(ctx, tag); });
}

// Writes `values` (double) as a tensor of `dtype`.
Tensor typed_tensor(const KernelContext& ctx, DType dtype, const std::vector<double>& values, Shape shape) {
  Tensor t(dtype, std::move(shape));
  dispatch<NumericTypes>(dtype, ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) out[i] = from_compute<T>(static_cast<compute_t<T>>(values[i]));
  });
  return t;
}

void cosine_window(KernelContext& ctx, double a0, double a1, double a2) {
  const int64_t size = scalar_int(ctx, 0, "size");
  if (size < 0 || size > kMaxSignalLength) ctx.fail("size must be in [0, 2^20], got " + std::to_string(size));
  const bool periodic = ctx.node.attr_int("periodic", 1) != 0;
  const int64_t span = periodic ? size : size - 1;
  std::vector<double> w(static_cast<size_t>(size), 1.0);
  for (int64_t k = 0; k < size && span > 0; ++k) {
    const double a = 2 * std::numbers::pi * static_cast<double>(k) / static_cast<double>(span);
    w[static_cast<size_t>(k)] = a0 - a1 * std::cos(a) + a2 * std::cos(2 * a);
  }
  ctx.set_output(0, typed_tensor(ctx, output_dtype(ctx), w, {size}));
}

void hann_window(KernelContext& ctx) { cosine_window(ctx, 0.5, 0.5, 0.0); }
void hamming_window(KernelContext& ctx) { cosine_window(ctx, 25.0 / 46.0, 21.0 / 46.0, 0.0); }
void blackman_window(KernelContext& ctx) { cosine_window(ctx, 0.42, 0.5, 0.08); }

void mel_weight_matrix(KernelContext& ctx) {
  const int64_t mels = scalar_int(ctx, 0, "num_mel_bins");
  const int64_t dft_length = scalar_int(ctx, 1, "dft_length");
  const int64_t rate = scalar_int(ctx, 2, "sample_rate");
  const double lower = scalar_number(ctx, 3, "lower_edge_hertz");
  const double upper = scalar_number(ctx, 4, "upper_edge_hertz");
  if (mels < 1 || mels > 65536) ctx.fail("num_mel_bins must be in [1, 65536], got " + std::to_string(mels));
  if (dft_length < 1 || dft_length > kMaxSignalLength)
    ctx.fail("dft_length must be in [1, 2^20], got " + std::to_string(dft_length));
  if (rate < 1) ctx.fail("sample_rate must be positive, got " + std::to_string(rate));
  if (!(lower >= 0 && lower <= upper && std::isfinite(upper))) {
    ctx.fail("need 0 <= lower_edge_hertz <= upper_edge_hertz, got " + std::to_string(lower) + " and " +
             std::to_string(upper));
  }
  const int64_t spectrum = dft_length / 2 + 1;
  auto to_mel = [](double f) { return 2595.0 * std::log10(1.0 + f / 700.0); };
  const double low_mel = to_mel(lower), high_mel = to_mel(upper);
  const double mel_step = (high_mel - low_mel) / static_cast<double>(mels + 2);
  std::vector<int64_t> points(static_cast<size_t>(mels + 2));
  for (int64_t i = 0; i < mels + 2; ++i) {
    const double hz = 700.0 * (std::pow(10.0, (static_cast<double>(i) * mel_step + low_mel) / 2595.0) - 1.0);
    const double bin = std::floor(static_cast<double>(dft_length + 1) * hz / static_cast<double>(rate));
    points[static_cast<size_t>(i)] = static_cast<int64_t>(std::clamp(bin, 0.0, static_cast<double>(spectrum - 1)));
  }
  std::vector<double> w(static_cast<size_t>(spectrum * mels), 0.0);
  auto at = [&](int64_t bin, int64_t mel) -> double& { return w[static_cast<size_t>(bin * mels + mel)]; };
  for (int64_t i = 0; i < mels; ++i) {
    const int64_t left = points[static_cast<size_t>(i)], center = points[static_cast<size_t>(i + 1)],
                  right = points[static_cast<size_t>(i + 2)];
    if (center == left) {
      at(center, i) = 1;
    } else {
      for (int64_t j = left; j <= center; ++j)
        at(j, i) = static_cast<double>(j - left) / static_cast<double>(center - left);
    }
    for (int64_t j = center; j < right; ++j)
      at(j, i) = static_cast<double>(right - j) / static_cast<double>(right - center);
  }
  ctx.set_output(0, typed_tensor(ctx, output_dtype(ctx), w, {spectrum, mels}));
}

constexpr OpDef kSignalOps[] = {
    {"DFT", "", dft},
    {"STFT", "", stft},
    {"HannWindow", "", hann_window},
    {"HammingWindow", "", hamming_window},
    {"BlackmanWindow", "", blackman_window},
    {"MelWeightMatrix", "", mel_weight_matrix},
};

}  // namespace

std::span<const OpDef> signal_ops() { return kSignalOps; }

}  // namespace kvant
