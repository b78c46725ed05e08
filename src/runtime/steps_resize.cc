// Resize as a kernel step (ONNX Resize, opsets 10-19), bit-exact against the
// reference kernel in ops/resize.cc.
//
// The step resizes the last two axes (H, W) of a tensor of any rank whose
// other axes keep their size with scale 1 (NCHW feature maps): every output
// plane is computed from one input plane. Per output coordinate of each of
// the two axes, the source taps (index, weight) are computed once per plan
// with the reference's own formulas and double arithmetic (axis_taps below
// mirrors ops/resize.cc line by line), and kept in the step.
//
//   nearest   y[oh, ow] = x[ih(oh), iw(ow)] + 0.0f      float32
//             y[oh, ow] = x[ih(oh), iw(ow)]             uint8 / int8 (codes: also DQ -> Resize -> Q)
//             An output row whose source row is the previous row's is a
//             memcpy of that row (x2 upsampling writes half the rows so).
//   linear,   t[w]      = 0 + sum_i wh_i(oh) * double(x[h_i(oh), w])   (H pass; skipped when H keeps
//   cubic     y[oh, ow] = float(0 + sum_j ww_j(ow) * t[w_j(ow)])          its size with scale 1)
//             the two passes are a kernel table (kernels/resize_filter.h: AVX2, generic).
//
// That is the reference's order of operations exactly: it converts to
// double, resizes axis by axis in order (H before W) accumulating from 0.0,
// and converts back; so the products, sums and the final rounding are the
// same, and so is the sign of zero (0.0 + -0.0 = +0.0: the "+ 0.0f" of the
// nearest copy). No FMA: this file is built without -mfma.
//
// Other forms (a leading axis resized, another dtype, an empty input, rank
// above 8) run the reference kernel inside the step, which then allocates
// per run; the compiler does not match forms known to need it
// (tf_crop_and_resize, antialias, axes, keep_aspect_ratio_policy).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/resize_filter.h"
#include "ops/op_registry.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

enum class Mode { kNearest, kLinear, kCubic };
enum class Transform {
  kHalfPixel,
  kHalfPixelSymmetric,
  kPytorchHalfPixel,
  kAlignCorners,
  kAsymmetric,
  kTfHalfPixelForNn,
  kUnsupported
};
enum class Rounding { kPreferFloor, kPreferCeil, kFloor, kCeil, kUnsupported };

struct ResizeFacts {
  Mode mode = Mode::kNearest;
  Transform transform = Transform::kHalfPixel;
  Rounding rounding = Rounding::kPreferFloor;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  bool supported = true;  // false: the reference runs inside the step
};

// One axis: per output coordinate o, `taps` (index, weight) pairs, planar:
// tap k of o at [k * m + o].
struct AxisTable {
  int64_t n = 0, m = 0;
  double scale = 1.0;
  bool identity = true;  // the reference skips this axis
  int taps = 1;
  std::vector<int64_t> index;
  std::vector<double> weight;
};

double keys_cubic(double x, double a) {
  x = std::fabs(x);
  if (x <= 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return 0;
}

// The reference's axis_taps (ops/resize.cc) without antialias and
// tf_crop_and_resize, with the same double arithmetic in the same order.
void axis_taps(const ResizeFacts& f, AxisTable& t) {
  const int64_t n = t.n, m = t.m;
  const double scale = t.scale;
  t.taps = f.mode == Mode::kNearest ? 1 : f.mode == Mode::kLinear ? 2 : 4;
  t.index.assign(static_cast<size_t>(m * t.taps), 0);
  t.weight.assign(static_cast<size_t>(m * t.taps), 0.0);
  const double dn = static_cast<double>(n), dm = scale * dn;
  for (int64_t o = 0; o < m; ++o) {
    const double d_o = static_cast<double>(o);
    double x = 0;
    switch (f.transform) {
      case Transform::kHalfPixel: x = (d_o + 0.5) / scale - 0.5; break;
      case Transform::kHalfPixelSymmetric:
        x = dn / 2 * (1 - static_cast<double>(m) / dm) + (d_o + 0.5) / scale - 0.5;
        break;
      case Transform::kPytorchHalfPixel: x = dm > 1 ? (d_o + 0.5) / scale - 0.5 : 0; break;
      case Transform::kAlignCorners: x = dm > 1 ? d_o * (dn - 1) / (dm - 1) : 0; break;
      case Transform::kAsymmetric: x = d_o / scale; break;
      case Transform::kTfHalfPixelForNn: x = (d_o + 0.5) / scale; break;
      case Transform::kUnsupported: break;
    }
    int64_t* idx = t.index.data() + o;  // tap k at idx[k * m]
    double* w = t.weight.data() + o;
    if (f.mode == Mode::kNearest) {
      double r = 0;
      switch (f.rounding) {
        case Rounding::kPreferFloor: r = (x - std::floor(x) == 0.5) ? std::floor(x) : std::round(x); break;
        case Rounding::kPreferCeil:
          r = std::round(x);
          if (x - std::floor(x) == 0.5) r = std::ceil(x);
          break;
        case Rounding::kFloor: r = std::floor(x); break;
        case Rounding::kCeil: r = std::ceil(x); break;
        case Rounding::kUnsupported: break;
      }
      idx[0] = std::clamp<int64_t>(static_cast<int64_t>(r), 0, n - 1);
      w[0] = 1.0;
      continue;
    }
    int64_t x0 = static_cast<int64_t>(std::floor(x));
    double ratio = x - static_cast<double>(x0);
    if (ratio == 0) {
      x0 -= 1;
      ratio = 1;
    }
    const bool cubic = f.mode == Mode::kCubic;
    const int64_t start = cubic ? -1 : 0;  // floor(-2 / 1) + 1, floor(-1 / 1) + 1
    double sum = 0;
    for (int64_t j = start; j < start + t.taps; ++j) {
      const double arg = (static_cast<double>(j) - ratio) * 1.0;
      double wj = cubic ? keys_cubic(arg, f.cubic_a) : std::clamp(1 - std::fabs(arg), 0.0, 1.0);
      const int64_t i = x0 + j;
      if (f.exclude_outside && (i < 0 || i >= n)) wj = 0;
      sum += wj;
      idx[(j - start) * m] = std::clamp<int64_t>(i, 0, n - 1);
      w[(j - start) * m] = wj;
    }
    if (f.exclude_outside && sum != 0) {
      for (int k = 0; k < t.taps; ++k) w[k * m] /= sum;
    }
  }
}

class ResizeStep : public Step {
 public:
  ResizeStep(const Node& node, int64_t opset, ResizeFacts facts, int threads, Isa isa)
      : node_(node), opset_(opset), facts_(facts), threads_(std::max(threads, 1)), filter_(&resize_filter_pick(isa)) {}

  std::string kernel() const override {
    if (delegate_) return "reference Resize inside a kernel step";
    const char* mode = facts_.mode == Mode::kNearest ? "nearest" : facts_.mode == Mode::kLinear ? "linear" : "cubic";
    std::string k = std::string("resize_") + mode + "_" + dtype_name(dtype_);
    return facts_.mode == Mode::kNearest ? k : k + "/" + filter_->name;
  }

  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    Geometry g;
    resolve(in, g);
    const Shape shape = g.out_shape();
    checked_numel(shape, in[0]->dtype());
    out.assign(1, {in[0]->dtype(), shape});
    prepare(g, in[0]->dtype());
  }

  size_t scratch_bytes(std::span<const Tensor* const>) const override {
    if (delegate_ || facts_.mode == Mode::kNearest) return 0;
    return static_cast<size_t>(threads_) * row_bytes();
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    Geometry g;
    resolve(in, g);
    bool same = out[0]->rank() == g.rank;
    for (int d = 0; same && d < g.rank; ++d) same = out[0]->dim(d) == g.out[d];
    if (!same) {
      throw Error(ErrorCode::kInvalidArgument, name + ": Resize's output shape " + shape_to_string(g.out_shape()) +
                                                   " differs from the planned " + shape_to_string(out[0]->shape()));
    }
    // Scales that changed after planning (the compiler takes only values the
    // input shapes fix, so this is rare): the reference, not tables and
    // scratch sized for another geometry.
    if (delegate_ || !same_geometry(g, in[0]->dtype())) {
      run_reference(in, *out[0]);
      return;
    }
    if (out[0]->numel() == 0) return;
    if (!g.any_resized) {
      std::memcpy(out[0]->raw(), in[0]->raw(), in[0]->nbytes());
      return;
    }
    const int64_t rows = planes_ * h_.m;
    const int chunks = static_cast<int>(std::min<int64_t>(threads_, std::max<int64_t>(rows / 8, 1)));
    const auto* x = static_cast<const std::byte*>(in[0]->raw());
    auto* y = static_cast<std::byte*>(out[0]->raw());
    parallel_for(pool, chunks, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        int64_t begin = 0, end = 0;
        chunk_range(rows, chunks, static_cast<int>(c), begin, end);
        if (facts_.mode == Mode::kNearest) {
          if (dtype_ == DType::kFloat32) {
            nearest_rows<float>(reinterpret_cast<const float*>(x), reinterpret_cast<float*>(y), begin, end);
          } else {
            nearest_rows<uint8_t>(reinterpret_cast<const uint8_t*>(x), reinterpret_cast<uint8_t*>(y), begin, end);
          }
        } else {
          double* tmp = reinterpret_cast<double*>(scratch + static_cast<size_t>(c) * row_bytes());
          filter_rows(reinterpret_cast<const float*>(x), reinterpret_cast<float*>(y), tmp, begin, end);
        }
      }
    });
  }

 private:
  struct Geometry {
    int rank = 0;
    int64_t in[8] = {}, out[8] = {};
    double scale[8] = {};
    bool any_resized = false;  // some axis is not skipped by the reference
    bool leading_ok = true;    // every axis before H and W is skipped, none is empty
    Shape out_shape() const { return Shape(out, out + rank); }
  };

  // The output shape and per-axis scales, as the reference's
  // run_resize_common computes them (no allocation).
  void resolve(std::span<const Tensor* const> in, Geometry& g) const {
    const Tensor& x = *in[0];
    const int rank = x.rank();
    auto present = [&](size_t i) { return in.size() > i && in[i] != nullptr && in[i]->numel() > 0; };
    const Tensor* scales = nullptr;
    const Tensor* sizes = nullptr;
    if (opset_ < 11) {
      if (!present(1)) throw Error(ErrorCode::kInvalidArgument, name + ": Resize needs scales");
      scales = in[1];
    } else {
      if (present(2)) scales = in[2];
      if (present(3)) sizes = in[3];
      if ((scales == nullptr) == (sizes == nullptr)) {
        throw Error(ErrorCode::kInvalidArgument, name + ": Resize needs exactly one of scales and sizes");
      }
      if (present(1) && in[1]->numel() != 2 * static_cast<int64_t>(rank)) {
        throw Error(ErrorCode::kInvalidArgument, name + ": Resize's roi must have 2 * rank values");
      }
    }
    const Tensor* given = scales != nullptr ? scales : sizes;
    if (given->numel() != rank) {
      throw Error(ErrorCode::kInvalidArgument, name + ": Resize's " + (scales != nullptr ? "scales" : "sizes") +
                                                   " has " + std::to_string(given->numel()) +
                                                   " values; it must have one per dim of its input " + x.describe());
    }
    if (rank > 8) throw Error(ErrorCode::kUnsupported, name + ": Resize of rank above 8");
    g.rank = rank;
    for (int d = 0; d < rank; ++d) {
      const int64_t n = x.dim(d);
      g.in[d] = n;
      if (sizes != nullptr) {
        const int64_t m = sizes->get_as_int64(d);
        if (m < 0) throw Error(ErrorCode::kInvalidArgument, name + ": Resize's sizes must be non-negative");
        g.out[d] = m;
        g.scale[d] = n != 0 ? static_cast<double>(m) / static_cast<double>(n) : 1.0;
      } else {
        const double s = scales->get_as_double(d);
        const double o = std::floor(static_cast<double>(n) * s);
        if (!(s > 0) || !std::isfinite(o) || o > 1e12) {
          throw Error(ErrorCode::kInvalidArgument, name + ": Resize's scales must be positive and give a sane " +
                                                       "output size (scale " + std::to_string(s) + ")");
        }
        g.out[d] = static_cast<int64_t>(o);
        g.scale[d] = s;
      }
      const bool identity = n == g.out[d] && g.scale[d] == 1.0;
      if (!identity) g.any_resized = true;
      if (!identity && d < rank - 2) g.leading_ok = false;
      if (n == 0) g.leading_ok = false;  // the reference's errors and empty outputs
    }
  }

  bool supports(const Geometry& g, DType dtype) const {
    if (!facts_.supported || !g.leading_ok || g.rank < 1) return false;
    if (dtype == DType::kFloat32) return true;
    return facts_.mode == Mode::kNearest && (dtype == DType::kUInt8 || dtype == DType::kInt8);
  }

  bool same_geometry(const Geometry& g, DType dtype) const {
    if (dtype != dtype_ || g.rank != rank_) return false;
    for (int d = 0; d < g.rank; ++d) {
      if (g.in[d] != in_[d] || g.scale[d] != scale_[d]) return false;
    }
    return true;
  }

  // Tables for this geometry (at planning).
  void prepare(const Geometry& g, DType dtype) const {
    dtype_ = dtype;
    rank_ = g.rank;
    std::copy(g.in, g.in + 8, in_);
    std::copy(g.scale, g.scale + 8, scale_);
    delegate_ = !supports(g, dtype);
    if (delegate_) return;
    const int r = g.rank;
    planes_ = 1;
    for (int d = 0; d < r - 2; ++d) planes_ *= g.in[d];
    auto axis = [&](int d, AxisTable& t) {
      if (d < 0) {
        t = AxisTable{1, 1, 1.0, true, 1, {0}, {1.0}};
        return;
      }
      t.n = g.in[d];
      t.m = g.out[d];
      t.scale = g.scale[d];
      t.identity = t.n == t.m && t.scale == 1.0;
      if (t.identity) {  // skipped by the reference (its taps could differ: tf_half_pixel_for_nn + ceil)
        t.taps = 1;
        t.index.resize(static_cast<size_t>(t.m));
        for (int64_t o = 0; o < t.m; ++o) t.index[static_cast<size_t>(o)] = o;
        t.weight.assign(static_cast<size_t>(t.m), 1.0);
        return;
      }
      axis_taps(facts_, t);
    };
    axis(r - 2, h_);
    axis(r - 1, w_);
    windows(w_, w_base_, w_ctrl_);
    // W upsampled x2 by nearest with iw(ow) = ow / 2: a duplicating loop.
    w_double_ = facts_.mode == Mode::kNearest && w_.m == 2 * w_.n;
    for (int64_t o = 0; w_double_ && o < w_.m; ++o) w_double_ = w_.index[static_cast<size_t>(o)] == o / 2;
  }

  // The 4- or 8-value windows of the W pass (kernels/resize_filter.h).
  static void windows(const AxisTable& t, std::vector<int64_t>& base, std::vector<int32_t>& ctrl) {
    const int64_t groups = t.m / 4;
    base.assign(static_cast<size_t>(groups), -1);
    ctrl.assign(static_cast<size_t>(groups * t.taps * 8), 0);
    const int64_t width = t.taps <= 2 ? 4 : 8;
    if (t.n < width) return;
    for (int64_t g = 0; g < groups; ++g) {
      int64_t lo = t.n, hi = -1;
      for (int k = 0; k < t.taps; ++k) {
        for (int64_t j = 0; j < 4; ++j) {
          const int64_t i = t.index[static_cast<size_t>(k * t.m + 4 * g + j)];
          lo = std::min(lo, i);
          hi = std::max(hi, i);
        }
      }
      const int64_t b = std::min(lo, t.n - width);
      if (hi - b >= width) continue;
      base[static_cast<size_t>(g)] = b;
      for (int k = 0; k < t.taps; ++k) {
        for (int64_t j = 0; j < 4; ++j) {
          const auto off = static_cast<int32_t>(t.index[static_cast<size_t>(k * t.m + 4 * g + j)] - b);
          int32_t* c = ctrl.data() + (g * t.taps + k) * 8 + 2 * j;
          c[0] = 2 * off;
          c[1] = 2 * off + 1;
        }
      }
    }
  }

  size_t row_bytes() const { return (static_cast<size_t>(std::max<int64_t>(w_.n, 1)) * sizeof(double) + 63) / 64 * 64; }

  // Rows [begin, end) of planes_ * h_.m output rows.
  template <typename T>
  void nearest_rows(const T* x, T* y, int64_t begin, int64_t end) const {
    const int64_t nh = h_.n, nw = w_.n, mh = h_.m, mw = w_.m;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t p = r / mh, oh = r % mh;
      T* dst = y + r * mw;
      const int64_t ih = h_.index[static_cast<size_t>(oh)];
      if (r > begin && oh > 0 && h_.index[static_cast<size_t>(oh - 1)] == ih) {
        std::memcpy(dst, dst - mw, static_cast<size_t>(mw) * sizeof(T));
        continue;
      }
      const T* src = x + (p * nh + ih) * nw;
      if constexpr (std::is_same_v<T, float>) {
        // + 0.0f: the reference's accumulation from 0.0 turns -0 into +0.
        if (w_double_) {
          for (int64_t i = 0; i < nw; ++i) {
            const float v = src[i] + 0.0f;
            dst[2 * i] = v;
            dst[2 * i + 1] = v;
          }
        } else {
          const int64_t* iw = w_.index.data();
          for (int64_t o = 0; o < mw; ++o) dst[o] = src[iw[o]] + 0.0f;
        }
      } else {
        if (w_double_) {
          for (int64_t i = 0; i < nw; ++i) {
            dst[2 * i] = src[i];
            dst[2 * i + 1] = src[i];
          }
        } else {
          const int64_t* iw = w_.index.data();
          for (int64_t o = 0; o < mw; ++o) dst[o] = src[iw[o]];
        }
      }
    }
  }

  void filter_rows(const float* x, float* y, double* tmp, int64_t begin, int64_t end) const {
    const int64_t nh = h_.n, nw = w_.n, mh = h_.m, mw = w_.m;
    const int th = h_.taps;
    for (int64_t r = begin; r < end; ++r) {
      const int64_t p = r / mh, oh = r % mh;
      const float* plane = x + p * nh * nw;
      float* dst = y + r * mw;
      // H pass into tmp (double), as the reference's first resized axis.
      if (h_.identity) {
        const float* src = plane + oh * nw;
        for (int64_t i = 0; i < nw; ++i) tmp[i] = static_cast<double>(src[i]);
      } else {
        const float* rows[4];
        double hw[4];
        for (int k = 0; k < th; ++k) {
          rows[k] = plane + h_.index[static_cast<size_t>(k * mh + oh)] * nw;
          hw[k] = h_.weight[static_cast<size_t>(k * mh + oh)];
        }
        filter_->h_pass(rows, hw, th, tmp, nw);
      }
      if (w_.identity) {
        for (int64_t o = 0; o < mw; ++o) dst[o] = static_cast<float>(tmp[o]);
      } else {
        filter_->w_pass(tmp, w_.index.data(), w_.weight.data(), w_.taps, dst, mw, w_base_.data(), w_ctrl_.data());
      }
    }
  }

  void run_reference(std::span<const Tensor* const> in, Tensor& out) const {
    const OpDef* op = find_op("", "Resize");
    if (op == nullptr) throw Error(ErrorCode::kInternal, name + ": no reference Resize");
    KernelContext ctx{node_, opset_, {in.begin(), in.end()}, {}, nullptr};
    ctx.outputs.resize(1);
    op->run(ctx);
    const Tensor& r = ctx.outputs[0];
    if (r.dtype() != out.dtype() || r.shape() != out.shape()) {
      throw Error(ErrorCode::kInternal, name + ": the reference Resize gave " + r.describe());
    }
    if (r.nbytes() > 0) std::memcpy(out.raw(), r.raw(), r.nbytes());
  }

  Node node_;
  int64_t opset_;
  ResizeFacts facts_;
  int threads_;
  const ResizeFilterKernel* filter_;
  // Fixed by the plan's shapes (infer).
  mutable DType dtype_ = DType::kUndefined;
  mutable int rank_ = -1;
  mutable int64_t in_[8] = {};
  mutable double scale_[8] = {};
  mutable bool delegate_ = false;
  mutable int64_t planes_ = 1;
  mutable AxisTable h_, w_;
  mutable bool w_double_ = false;
  mutable std::vector<int64_t> w_base_;
  mutable std::vector<int32_t> w_ctrl_;
};

}  // namespace

std::unique_ptr<Step> make_resize_step(const Node& node, int64_t opset, int threads, Isa isa) {
  if (!node.domain.empty() || node.op_type != "Resize" || node.inputs.empty() || node.outputs.size() != 1) {
    return nullptr;
  }
  ResizeFacts f;
  std::string mode = node.attr_string("mode", "nearest");
  if (mode == "bilinear") mode = "linear";
  if (mode == "nearest") {
    f.mode = Mode::kNearest;
  } else if (mode == "linear") {
    f.mode = Mode::kLinear;
  } else if (mode == "cubic") {
    f.mode = Mode::kCubic;
  } else {
    return nullptr;  // the reference names the bad mode
  }
  if (opset < 11) {
    f.transform = Transform::kAsymmetric;
    f.rounding = Rounding::kFloor;
    return std::make_unique<ResizeStep>(node, opset, f, threads, isa);
  }
  const std::string t = node.attr_string("coordinate_transformation_mode", "half_pixel");
  if (t == "half_pixel") {
    f.transform = Transform::kHalfPixel;
  } else if (t == "half_pixel_symmetric") {
    f.transform = Transform::kHalfPixelSymmetric;
  } else if (t == "pytorch_half_pixel") {
    f.transform = Transform::kPytorchHalfPixel;
  } else if (t == "align_corners") {
    f.transform = Transform::kAlignCorners;
  } else if (t == "asymmetric") {
    f.transform = Transform::kAsymmetric;
  } else if (t == "tf_half_pixel_for_nn") {
    f.transform = Transform::kTfHalfPixelForNn;
  } else {
    return nullptr;  // tf_crop_and_resize (roi, extrapolation) or unknown: the reference
  }
  const std::string nm = node.attr_string("nearest_mode", "round_prefer_floor");
  if (nm == "round_prefer_floor") {
    f.rounding = Rounding::kPreferFloor;
  } else if (nm == "round_prefer_ceil") {
    f.rounding = Rounding::kPreferCeil;
  } else if (nm == "floor") {
    f.rounding = Rounding::kFloor;
  } else if (nm == "ceil") {
    f.rounding = Rounding::kCeil;
  } else {
    return nullptr;
  }
  f.cubic_a = node.attr_float("cubic_coeff_a", -0.75f);
  f.exclude_outside = node.attr_int("exclude_outside", 0) != 0;
  if (opset >= 18) {
    if (node.attr_int("antialias", 0) != 0 && f.mode != Mode::kNearest) return nullptr;
    if (node.has_attr("axes")) return nullptr;
    if (node.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch") return nullptr;
  }
  return std::make_unique<ResizeStep>(node, opset, f, threads, isa);
}

}  // namespace kvant
