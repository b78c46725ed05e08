// Resize and Upsample reference kernels (ONNX Resize opsets 10-19, Upsample 7-9).
//
// Every mode is separable, so the kernel resizes one axis at a time. For output
// coordinate o along an axis of input length n, output length m and scale s
// (given, or m / n when sizes are given), the source coordinate x is
//   half_pixel:           (o + 0.5) / s - 0.5
//   half_pixel_symmetric: n / 2 * (1 - m / (s n)) + (o + 0.5) / s - 0.5
//   pytorch_half_pixel:   s n > 1 ? (o + 0.5) / s - 0.5 : 0
//   align_corners:        s n > 1 ? o (n - 1) / (s n - 1) : 0
//   asymmetric:           o / s
//   tf_half_pixel_for_nn: (o + 0.5) / s
//   tf_crop_and_resize:   s n > 1 ? start (n - 1) + o (end - start) (n - 1) / (s n - 1) : (start + end) (n - 1) / 2,
//                         and x outside [0, n - 1] gives extrapolation_value.
// (s n, the unrounded output length, is what ONNX's reference uses; it is m when sizes are given.)
// Then with x0 = floor(x) and r = x - x0 (taken in (0, 1]: an integral x uses x0 = x - 1, r = 1):
//   nearest: one tap at round(x) per nearest_mode (round_prefer_floor/ceil, floor, ceil);
//   linear:  taps x0 + j weighted max(0, 1 - |(j - r) s'|);
//   cubic:   taps x0 + j weighted by Keys' kernel with coefficient a at (j - r) s';
// with s' = min(s, 1) under antialias (opset 18+, widening the kernel when
// downscaling) and 1 otherwise; antialiased weights are normalised to sum 1.
// Tap indices are clamped to [0, n - 1]; with exclude_outside taps outside are
// dropped and the rest renormalised. Opset 10 Resize and Upsample are
// asymmetric with floor rounding for nearest.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ir/limits.h"
#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

struct ResizeAttrs {
  std::string mode = "nearest";
  std::string transform = "half_pixel";
  std::string nearest_mode = "round_prefer_floor";
  double cubic_a = -0.75;
  bool exclude_outside = false;
  double extrapolation = 0;
  bool antialias = false;
};

struct Tap {
  int64_t index;
  double weight;
};

double keys_cubic(double x, double a) {
  x = std::fabs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// Taps for each output coordinate along one axis; an empty list means "extrapolate".
std::vector<std::vector<Tap>> axis_taps(const KernelContext& ctx, const ResizeAttrs& at, int64_t n, int64_t m,
                                        double scale, double roi_start, double roi_end) {
  std::vector<std::vector<Tap>> taps(static_cast<size_t>(m));
  // As in ONNX's reference, the "resized length" in the formulas is scale * n (not rounded);
  // it equals m whenever sizes were given.
  const double dn = static_cast<double>(n), dm = scale * dn;
  for (int64_t o = 0; o < m; ++o) {
    const double d_o = static_cast<double>(o);
    double x = 0;
    const std::string& t = at.transform;
    if (t == "half_pixel") {
      x = (d_o + 0.5) / scale - 0.5;
    } else if (t == "half_pixel_symmetric") {
      x = dn / 2 * (1 - static_cast<double>(m) / dm) + (d_o + 0.5) / scale - 0.5;
    } else if (t == "pytorch_half_pixel") {
      x = dm > 1 ? (d_o + 0.5) / scale - 0.5 : 0;
    } else if (t == "align_corners") {
      x = dm > 1 ? d_o * (dn - 1) / (dm - 1) : 0;
    } else if (t == "asymmetric") {
      x = d_o / scale;
    } else if (t == "tf_half_pixel_for_nn") {
      x = (d_o + 0.5) / scale;
    } else if (t == "tf_crop_and_resize") {
      x = dm > 1 ? roi_start * (dn - 1) + d_o * (roi_end - roi_start) * (dn - 1) / (dm - 1)
                 : 0.5 * (roi_start + roi_end) * (dn - 1);
      if (x < 0 || x > dn - 1) continue;  // extrapolate
    } else {
      ctx.fail("coordinate_transformation_mode '" + t + "' is not known");
    }
    std::vector<Tap>& list = taps[static_cast<size_t>(o)];
    if (at.mode == "nearest") {
      double r;
      const std::string& nm = at.nearest_mode;
      if (nm == "round_prefer_floor") {
        r = (x - std::floor(x) == 0.5) ? std::floor(x) : std::round(x);
      } else if (nm == "round_prefer_ceil") {
        r = std::round(x);  // halves round away from zero; x < 0 halves clamp to 0 anyway
        if (x - std::floor(x) == 0.5) r = std::ceil(x);
      } else if (nm == "floor") {
        r = std::floor(x);
      } else if (nm == "ceil") {
        r = std::ceil(x);
      } else {
        ctx.fail("nearest_mode '" + nm + "' is not known");
      }
      list.push_back({std::clamp<int64_t>(static_cast<int64_t>(r), 0, n - 1), 1.0});
      continue;
    }
    int64_t x0 = static_cast<int64_t>(std::floor(x));
    double ratio = x - static_cast<double>(x0);
    if (ratio == 0) {
      x0 -= 1;
      ratio = 1;
    }
    const double s = at.antialias ? std::min(scale, 1.0) : 1.0;
    const bool cubic = at.mode == "cubic";
    // First tap offset relative to x0: 1 - half the footprint.
    const int64_t start = static_cast<int64_t>(std::floor((cubic ? -2.0 : -1.0) / s)) + 1;
    const int64_t end = 2 - start;  // exclusive
    double sum = 0;
    for (int64_t j = start; j < end; ++j) {
      const double arg = (static_cast<double>(j) - ratio) * s;
      double w = cubic ? keys_cubic(arg, at.cubic_a) : std::clamp(1 - std::fabs(arg), 0.0, 1.0);
      const int64_t idx = x0 + j;
      if (at.exclude_outside && (idx < 0 || idx >= n)) w = 0;
      sum += w;
      list.push_back({std::clamp<int64_t>(idx, 0, n - 1), w});
    }
    if ((at.antialias || at.exclude_outside) && sum != 0) {
      for (Tap& tap : list) tap.weight /= sum;
    }
  }
  return taps;
}

template <typename T>
void resize_impl(KernelContext& ctx, const ResizeAttrs& at, const std::vector<double>& scales, const Shape& out_shape,
                 const std::vector<double>& roi, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const size_t rank = x.shape().size();
  Shape shape = x.shape();
  std::vector<double> cur(static_cast<size_t>(x.numel()));
  const T* xd = x.data<T>();
  for (size_t i = 0; i < cur.size(); ++i) cur[i] = static_cast<double>(to_compute(xd[i]));
  for (size_t d = 0; d < rank; ++d) {
    const int64_t n = shape[d], m = out_shape[d];
    const bool identity = n == m && scales[d] == 1.0 && at.transform != "tf_crop_and_resize";
    if (identity) continue;
    if (n == 0 && m > 0) ctx.fail("cannot resize an empty dim to a non-empty one");
    const auto taps = axis_taps(ctx, at, n, m, scales[d], roi.empty() ? 0 : roi[d], roi.empty() ? 1 : roi[d + rank]);
    int64_t outer = 1, inner = 1;
    for (size_t i = 0; i < d; ++i) outer *= shape[i];
    for (size_t i = d + 1; i < rank; ++i) inner *= shape[i];
    std::vector<double> next(static_cast<size_t>(outer * m * inner));
    for (int64_t a = 0; a < outer; ++a) {
      for (int64_t o = 0; o < m; ++o) {
        const std::vector<Tap>& list = taps[static_cast<size_t>(o)];
        double* dst = next.data() + (a * m + o) * inner;
        if (list.empty()) {
          std::fill(dst, dst + inner, at.extrapolation);
          continue;
        }
        std::fill(dst, dst + inner, 0.0);
        for (const Tap& tap : list) {
          const double* src = cur.data() + (a * n + tap.index) * inner;
          for (int64_t i = 0; i < inner; ++i) dst[i] += tap.weight * src[i];
        }
      }
    }
    cur.swap(next);
    shape[d] = m;
  }
  Tensor y(x.dtype(), out_shape);
  T* yd = y.data<T>();
  for (size_t i = 0; i < cur.size(); ++i) {
    if constexpr (std::is_integral_v<T>) {
      const double lo = static_cast<double>(std::numeric_limits<T>::lowest());
      const double hi = static_cast<double>(std::numeric_limits<T>::max());
      yd[i] = static_cast<T>(std::clamp(std::nearbyint(cur[i]), lo, hi));
    } else {
      yd[i] = from_compute<T>(static_cast<compute_t<T>>(cur[i]));
    }
  }
  ctx.set_output(0, std::move(y));
}

// Exactly one of scales and sizes is given (both only when the scales
// belong to sizes chosen by keep_aspect_ratio_policy); both span every dim.
void run_resize_common(KernelContext& ctx, ResizeAttrs at, std::vector<double> scales, Shape sizes,
                       std::vector<double> roi) {
  const Tensor& x = ctx.input(0);
  const size_t rank = x.shape().size();
  if (at.mode == "bilinear") at.mode = "linear";
  if (at.mode != "nearest" && at.mode != "linear" && at.mode != "cubic") {
    ctx.fail("mode '" + at.mode + "' is not one of nearest, linear, cubic");
  }
  Shape out_shape(rank);
  if (!sizes.empty()) {
    if (sizes.size() != rank) ctx.fail("sizes must have one value per input dim (" + std::to_string(rank) + ")");
    const bool derive_scales = scales.empty();  // given too only for keep_aspect_ratio_policy
    if (derive_scales) scales.assign(rank, 1.0);
    for (size_t d = 0; d < rank; ++d) {
      if (sizes[d] < 0) ctx.fail("sizes must be non-negative");
      if (derive_scales && x.shape()[d] != 0) {
        scales[d] = static_cast<double>(sizes[d]) / static_cast<double>(x.shape()[d]);
      }
    }
    out_shape = sizes;
  } else {
    if (scales.size() != rank) ctx.fail("scales must have one value per input dim (" + std::to_string(rank) + ")");
    for (size_t d = 0; d < rank; ++d) {
      const double out = std::floor(static_cast<double>(x.shape()[d]) * scales[d]);
      if (!(scales[d] > 0) || !std::isfinite(out) || out > 1e12) {
        ctx.fail("scales must be positive and give a sane output size (scale " + std::to_string(scales[d]) + ")");
      }
      out_shape[d] = static_cast<int64_t>(out);
    }
  }
  if (!roi.empty() && roi.size() != 2 * rank) ctx.fail("roi must have 2 * rank values");
  // Rejects outputs too large to allocate before any work: the output, and
  // the two double-precision work arrays resize_impl passes between axes.
  const int64_t out_numel = checked_numel(out_shape, x.dtype());
  check_memory(out_numel * (2 * static_cast<int64_t>(sizeof(double)) + dtype_bits(x.dtype()) / 8),
               "Resize to " + shape_to_string(out_shape) + " (output and work buffers)");
  dispatch<NumericTypes>(x.dtype(), ctx, [&](auto tag) { resize_impl(ctx, at, scales, out_shape, roi, tag); });
}

std::vector<double> doubles_of(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = t.get_as_double(static_cast<int64_t>(i));
  return v;
}

void resize(KernelContext& ctx) {
  const Node& node = ctx.node;
  const Tensor& x = ctx.input(0);
  const size_t rank = x.shape().size();
  ResizeAttrs at;
  at.mode = node.attr_string("mode", "nearest");
  if (ctx.opset < 11) {
    at.transform = "asymmetric";
    at.nearest_mode = "floor";
    run_resize_common(ctx, at, doubles_of(ctx.input(1)), {}, {});
    return;
  }
  at.transform = node.attr_string("coordinate_transformation_mode", "half_pixel");
  at.nearest_mode = node.attr_string("nearest_mode", "round_prefer_floor");
  at.cubic_a = node.attr_float("cubic_coeff_a", -0.75f);
  at.exclude_outside = node.attr_int("exclude_outside", 0) != 0;
  at.extrapolation = node.attr_float("extrapolation_value", 0.0f);
  at.antialias = ctx.opset >= 18 && node.attr_int("antialias", 0) != 0;
  if (at.antialias && at.mode == "nearest") at.antialias = false;  // no effect on nearest
  std::vector<double> roi, scales;
  Shape sizes;
  if (ctx.has_input(1) && ctx.input(1).numel() > 0) roi = doubles_of(ctx.input(1));
  if (ctx.has_input(2) && ctx.input(2).numel() > 0) scales = doubles_of(ctx.input(2));
  if (ctx.has_input(3) && ctx.input(3).numel() > 0) sizes = ctx.input(3).to_int64_vector();
  if (scales.empty() == sizes.empty()) ctx.fail("exactly one of scales and sizes must be given");
  // Opset 18 axes: scales/sizes/roi name only these axes; others keep scale 1.
  std::vector<int64_t> axes;
  if (ctx.opset >= 18 && node.has_attr("axes")) {
    for (int64_t a : node.attr_ints("axes")) axes.push_back(normalize_axis(ctx, a, static_cast<int64_t>(rank)));
  } else {
    for (size_t a = 0; a < rank; ++a) axes.push_back(static_cast<int64_t>(a));
  }
  const size_t k = axes.size();
  if ((!scales.empty() && scales.size() != k) || (!sizes.empty() && sizes.size() != k) ||
      (!roi.empty() && roi.size() != 2 * k)) {
    ctx.fail("scales, sizes and roi must have one value (roi: two) per resized axis (" + std::to_string(k) + ")");
  }
  std::vector<double> full_scales;
  Shape full_sizes;
  std::vector<double> full_roi;
  if (!roi.empty()) {
    full_roi.assign(2 * rank, 0.0);
    for (size_t d = 0; d < rank; ++d) full_roi[d + rank] = 1.0;
    for (size_t i = 0; i < k; ++i) {
      full_roi[static_cast<size_t>(axes[i])] = roi[i];
      full_roi[static_cast<size_t>(axes[i]) + rank] = roi[i + k];
    }
  }
  if (!scales.empty()) {
    full_scales.assign(rank, 1.0);
    for (size_t i = 0; i < k; ++i) full_scales[static_cast<size_t>(axes[i])] = scales[i];
    run_resize_common(ctx, at, full_scales, {}, full_roi);
    return;
  }
  full_sizes = x.shape();
  const std::string policy = ctx.opset >= 18 ? node.attr_string("keep_aspect_ratio_policy", "stretch") : "stretch";
  if (policy == "stretch") {
    for (size_t i = 0; i < k; ++i) full_sizes[static_cast<size_t>(axes[i])] = sizes[i];
    run_resize_common(ctx, at, {}, full_sizes, full_roi);
    return;
  }
  if (policy != "not_larger" && policy != "not_smaller") {
    ctx.fail("keep_aspect_ratio_policy '" + policy + "' is not one of stretch, not_larger, not_smaller");
  }
  // One scale for all named axes: the largest that fits (not_larger) or the smallest that covers.
  double scale = policy == "not_larger" ? std::numeric_limits<double>::infinity() : 0.0;
  for (size_t i = 0; i < k; ++i) {
    const int64_t in_dim = x.shape()[static_cast<size_t>(axes[i])];
    if (in_dim == 0 || sizes[i] < 0) ctx.fail("keep_aspect_ratio_policy needs non-empty input dims and sizes >= 0");
    const double r = static_cast<double>(sizes[i]) / static_cast<double>(in_dim);
    scale = policy == "not_larger" ? std::min(scale, r) : std::max(scale, r);
  }
  full_scales.assign(rank, 1.0);
  for (size_t i = 0; i < k; ++i) {
    const size_t a = static_cast<size_t>(axes[i]);
    full_scales[a] = scale;
    full_sizes[a] = static_cast<int64_t>(std::nearbyint(scale * static_cast<double>(x.shape()[a])));
  }
  // The coordinate transform uses the common scale, not sizes / input.
  run_resize_common(ctx, at, full_scales, full_sizes, full_roi);
}

void upsample(KernelContext& ctx) {
  ResizeAttrs at;
  at.mode = ctx.node.attr_string("mode", "nearest");
  at.transform = "asymmetric";
  at.nearest_mode = "floor";
  const std::vector<double> scales =
      ctx.opset < 9 ? [&] {
        std::vector<double> s;
        for (float f : ctx.node.attr_floats("scales")) s.push_back(f);
        return s;
      }()
                    : doubles_of(ctx.input(1));
  run_resize_common(ctx, at, scales, {}, {});
}

}  // namespace

std::span<const OpDef> resize_ops() {
  static constexpr OpDef kOps[] = {
      {"Resize", "", resize},
      {"Upsample", "", upsample},
  };
  return kOps;
}

}  // namespace kvant
