// Detection and spatial-sampling reference kernels: NonMaxSuppression,
// RoiAlign and GridSample (opset 16, 4-D).
//
// NonMaxSuppression(boxes [B, S, 4], scores [B, K, S], max_output_boxes_per_class,
//                   iou_threshold, score_threshold) -> selected [n, 3] int64
//   For each batch b and class k, independently: the boxes whose score is
//   greater than score_threshold (all boxes when it is omitted), in order of
//   decreasing score (equal scores: lower box index first), are taken one by
//   one; a box is kept unless its IoU with a box kept before is greater than
//   iou_threshold; at most max_output_boxes_per_class are kept (0 or omitted:
//   none). Rows (b, k, box) in that order. center_point_box = 0: a box is two
//   opposite corners (y1, x1, y2, x2) in either order; 1: (xc, yc, w, h). A box
//   of zero area overlaps nothing.
//
// RoiAlign(X [N, C, H, W], rois [R, 4] (x1, y1, x2, y2), batch_indices [R])
//   -> Y [R, C, output_height, output_width]
//   Each RoI, scaled by spatial_scale and shifted by -0.5 (coordinate mode
//   half_pixel; output_half_pixel: no shift, and the RoI at least 1 x 1), is
//   cut into output_height x output_width bins; each bin averages (mode avg)
//   a grid of sampling_ratio^2 points (0: ceil(bin size) points per side),
//   each bilinearly interpolated from X; a point more than one pixel outside X
//   counts as 0, one closer is clamped to the border. Mode max takes, over the
//   points of a bin, the largest of the four weighted corner terms w_i * x_i
//   (what ONNX Runtime computes and the ONNX test data holds, rather than the
//   max of the interpolated values).
//
// GridSample(X [N, C, H, W], grid [N, Ho, Wo, 2] of (x, y) in [-1, 1])
//   -> Y [N, C, Ho, Wo], as torch.nn.functional.grid_sample:
//   x -> ((x + 1) / 2) * (W - 1) with align_corners, ((x + 1) * W - 1) / 2
//   without; mode bilinear | nearest (round half to even) | bicubic (A =
//   -0.75, 4 x 4 taps); padding_mode zeros (taps outside read 0) | border
//   (coordinates clamped into the image) | reflection (coordinates mirrored
//   at the border: at the pixel centres with align_corners, at the image edge
//   without, then clamped). For bilinear and nearest the padding maps the
//   sample point; for bicubic it maps each tap, as PyTorch does.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/validate.h"

namespace kvant {

namespace {

// ---------------------------------------------------------------- NMS

struct Box {
  double y1, x1, y2, x2;  // y1 <= y2, x1 <= x2
  double area() const { return (y2 - y1) * (x2 - x1); }
};

Box read_box(const std::vector<double>& b, int64_t at, bool center_point) {
  const double* p = b.data() + at * 4;
  if (center_point) {
    const double xc = p[0], yc = p[1], w = p[2], h = p[3];
    return {yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2};
  }
  return {std::min(p[0], p[2]), std::min(p[1], p[3]), std::max(p[0], p[2]), std::max(p[1], p[3])};
}

// IoU(a, b) > threshold; never true when either box has no area.
bool overlaps(const Box& a, const Box& b, double threshold) {
  const double area_a = a.area(), area_b = b.area();
  if (!(area_a > 0) || !(area_b > 0)) return false;
  const double h = std::min(a.y2, b.y2) - std::max(a.y1, b.y1);
  const double w = std::min(a.x2, b.x2) - std::max(a.x1, b.x1);
  if (h <= 0 || w <= 0) return false;
  const double inter = h * w;
  return inter / (area_a + area_b - inter) > threshold;
}

double optional_scalar(const KernelContext& ctx, size_t i, const char* what, double fallback) {
  if (!ctx.has_input(i)) return fallback;
  const Tensor& t = ctx.input(i);
  if (t.numel() == 0) return fallback;
  if (t.numel() != 1) ctx.fail(std::string(what) + " must hold one value, got " + t.describe());
  return t.get_as_double(0);
}

void non_max_suppression(KernelContext& ctx) {
  const Tensor& boxes = ctx.input(0);
  const Tensor& scores = ctx.input(1);
  if (boxes.rank() != 3 || boxes.dim(2) != 4) ctx.fail("boxes " + boxes.describe() + " must be [batch, boxes, 4]");
  if (scores.rank() != 3 || scores.dim(0) != boxes.dim(0) || scores.dim(2) != boxes.dim(1)) {
    ctx.fail("scores " + scores.describe() + " must be [batch, classes, boxes] for boxes " + boxes.describe());
  }
  const double max_out = optional_scalar(ctx, 2, "max_output_boxes_per_class", 0);
  const double iou = optional_scalar(ctx, 3, "iou_threshold", 0);
  const bool has_score_threshold = ctx.has_input(4) && ctx.input(4).numel() > 0;
  const double score_threshold = optional_scalar(ctx, 4, "score_threshold", 0);
  if (std::isnan(iou) || iou < 0 || iou > 1) ctx.fail("iou_threshold must be in [0, 1], got " + std::to_string(iou));
  const int64_t center = ctx.node.attr_int("center_point_box", 0);
  if (center != 0 && center != 1) ctx.fail("center_point_box must be 0 or 1, got " + std::to_string(center));
  const int64_t batches = boxes.dim(0), classes = scores.dim(1), count = boxes.dim(1);
  const int64_t limit = max_out > 0 ? static_cast<int64_t>(std::min<double>(max_out, static_cast<double>(count))) : 0;

  std::vector<double> box_values(static_cast<size_t>(boxes.numel()));
  for (int64_t i = 0; i < boxes.numel(); ++i) box_values[static_cast<size_t>(i)] = boxes.get_as_double(i);
  std::vector<int64_t> selected;  // triples
  std::vector<int64_t> order;
  std::vector<double> score(static_cast<size_t>(count));
  std::vector<Box> kept;
  for (int64_t b = 0; b < batches && limit > 0; ++b) {
    for (int64_t k = 0; k < classes; ++k) {
      const int64_t base = (b * classes + k) * count;
      order.clear();
      for (int64_t i = 0; i < count; ++i) {
        const double s = score[static_cast<size_t>(i)] = scores.get_as_double(base + i);
        if (std::isnan(s)) continue;
        if (has_score_threshold && !(s > score_threshold)) continue;
        order.push_back(i);
      }
      std::stable_sort(order.begin(), order.end(), [&](int64_t l, int64_t r) {
        return score[static_cast<size_t>(l)] > score[static_cast<size_t>(r)];
      });
      kept.clear();
      for (int64_t i : order) {
        const Box candidate = read_box(box_values, b * count + i, center == 1);
        bool suppressed = false;
        for (const Box& k_box : kept) {
          if (overlaps(candidate, k_box, iou)) {
            suppressed = true;
            break;
          }
        }
        if (suppressed) continue;
        kept.push_back(candidate);
        selected.insert(selected.end(), {b, k, i});
        if (static_cast<int64_t>(kept.size()) == limit) break;
      }
    }
  }
  const int64_t n = static_cast<int64_t>(selected.size() / 3);
  ctx.set_output(0, Tensor::from_vector(selected, {n, 3}));
}

// ---------------------------------------------------------------- RoiAlign

// Bilinear weights and corner offsets of one sampling point in an H x W
// plane; `valid` false when the point is more than a pixel outside.
struct Sample {
  bool valid = false;
  int64_t at[4] = {0, 0, 0, 0};
  double w[4] = {0, 0, 0, 0};
};

Sample roi_sample(double y, double x, int64_t height, int64_t width) {
  Sample s;
  if (y < -1.0 || y > static_cast<double>(height) || x < -1.0 || x > static_cast<double>(width)) return s;
  y = std::max(y, 0.0);
  x = std::max(x, 0.0);
  int64_t y0 = static_cast<int64_t>(y), x0 = static_cast<int64_t>(x), y1 = 0, x1 = 0;
  if (y0 >= height - 1) {
    y0 = y1 = height - 1;
    y = static_cast<double>(y0);
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= width - 1) {
    x0 = x1 = width - 1;
    x = static_cast<double>(x0);
  } else {
    x1 = x0 + 1;
  }
  const double ly = y - static_cast<double>(y0), lx = x - static_cast<double>(x0);
  const double hy = 1 - ly, hx = 1 - lx;
  s.valid = true;
  s.at[0] = y0 * width + x0;
  s.at[1] = y0 * width + x1;
  s.at[2] = y1 * width + x0;
  s.at[3] = y1 * width + x1;
  s.w[0] = hy * hx;
  s.w[1] = hy * lx;
  s.w[2] = ly * hx;
  s.w[3] = ly * lx;
  return s;
}

template <typename T>
void run_roi_align(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const Tensor& rois = ctx.input(1);
  const Tensor& batch_indices = ctx.input(2);
  if (x.rank() != 4) ctx.fail("X " + x.describe() + " must be [N, C, H, W]");
  if (rois.rank() != 2 || rois.dim(1) != 4) ctx.fail("rois " + rois.describe() + " must be [num_rois, 4]");
  if (batch_indices.rank() != 1 || batch_indices.dim(0) != rois.dim(0)) {
    ctx.fail("batch_indices " + batch_indices.describe() + " must be [num_rois] for rois " + rois.describe());
  }
  const std::string mode = ctx.node.attr_string("mode", "avg");
  if (mode != "avg" && mode != "max") ctx.fail("mode must be avg or max, got \"" + mode + "\"");
  const std::string coords = ctx.node.attr_string("coordinate_transformation_mode", "half_pixel");
  if (coords != "half_pixel" && coords != "output_half_pixel") {
    ctx.fail("coordinate_transformation_mode must be half_pixel or output_half_pixel, got \"" + coords + "\"");
  }
  const bool half_pixel = ctx.opset >= 16 && coords == "half_pixel";
  const int64_t out_h = ctx.node.attr_int("output_height", 1), out_w = ctx.node.attr_int("output_width", 1);
  const int64_t ratio = ctx.node.attr_int("sampling_ratio", 0);
  const double scale = ctx.node.attr_float("spatial_scale", 1.0f);
  if (out_h < 1 || out_w < 1 || out_h > kMaxWindowValue || out_w > kMaxWindowValue) {
    ctx.fail("output_height and output_width must be in [1, 2^31), got " + std::to_string(out_h) + " x " +
             std::to_string(out_w));
  }
  if (ratio < 0 || ratio > 1024) ctx.fail("sampling_ratio must be in [0, 1024], got " + std::to_string(ratio));
  const int64_t n = x.dim(0), channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t num_rois = rois.dim(0);
  Tensor y(x.dtype(), {num_rois, channels, out_h, out_w});
  const T* in = x.data<T>();
  T* out = y.data<T>();
  const double offset = half_pixel ? 0.5 : 0.0;
  std::vector<Sample> samples;
  for (int64_t r = 0; r < num_rois; ++r) {
    const int64_t b = batch_indices.get_as_int64(r);
    if (b < 0 || b >= n)
      ctx.fail("batch_indices[" + std::to_string(r) + "] = " + std::to_string(b) + " is not in [0, " +
               std::to_string(n) + ")");
    const double x1 = rois.get_as_double(r * 4) * scale - offset, y1 = rois.get_as_double(r * 4 + 1) * scale - offset;
    const double x2 = rois.get_as_double(r * 4 + 2) * scale - offset,
                 y2 = rois.get_as_double(r * 4 + 3) * scale - offset;
    double roi_w = x2 - x1, roi_h = y2 - y1;
    if (!half_pixel) {
      roi_w = std::max(roi_w, 1.0);
      roi_h = std::max(roi_h, 1.0);
    }
    if (!std::isfinite(roi_w) || !std::isfinite(roi_h)) ctx.fail("roi " + std::to_string(r) + " is not finite");
    const double bin_h = roi_h / static_cast<double>(out_h), bin_w = roi_w / static_cast<double>(out_w);
    const int64_t grid_h = ratio > 0 ? ratio : static_cast<int64_t>(std::ceil(std::clamp(bin_h, 0.0, 1024.0)));
    const int64_t grid_w = ratio > 0 ? ratio : static_cast<int64_t>(std::ceil(std::clamp(bin_w, 0.0, 1024.0)));
    const double count = static_cast<double>(std::max<int64_t>(grid_h * grid_w, 1));
    for (int64_t ph = 0; ph < out_h; ++ph) {
      for (int64_t pw = 0; pw < out_w; ++pw) {
        samples.clear();
        for (int64_t iy = 0; iy < grid_h; ++iy) {
          const double sy = y1 + static_cast<double>(ph) * bin_h +
                            (static_cast<double>(iy) + 0.5) * bin_h / static_cast<double>(grid_h);
          for (int64_t ix = 0; ix < grid_w; ++ix) {
            const double sx = x1 + static_cast<double>(pw) * bin_w +
                              (static_cast<double>(ix) + 0.5) * bin_w / static_cast<double>(grid_w);
            samples.push_back(roi_sample(sy, sx, height, width));
          }
        }
        for (int64_t c = 0; c < channels; ++c) {
          const T* plane = in + (b * channels + c) * height * width;
          double acc = 0;
          bool first = true;
          for (const Sample& s : samples) {
            double v = 0;
            if (mode == "avg") {
              if (s.valid) {
                for (int i = 0; i < 4; ++i) v += s.w[i] * static_cast<double>(to_compute(plane[s.at[i]]));
              }
              acc += v;
            } else {
              if (s.valid) {
                v = s.w[0] * static_cast<double>(to_compute(plane[s.at[0]]));
                for (int i = 1; i < 4; ++i) v = std::max(v, s.w[i] * static_cast<double>(to_compute(plane[s.at[i]])));
              }
              acc = first ? v : std::max(acc, v);
              first = false;
            }
          }
          if (mode == "avg") acc /= count;
          out[((r * channels + c) * out_h + ph) * out_w + pw] = from_compute<T>(static_cast<compute_t<T>>(acc));
        }
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

void roi_align(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_roi_align(ctx, tag); });
}

// ---------------------------------------------------------------- GridSample

enum class Padding { kZeros, kBorder, kReflection };

// Mirror `v` into [low2 / 2, high2 / 2] (bounds given doubled, as integers).
double reflect(double v, double low2, double high2) {
  if (low2 == high2) return 0;
  const double low = low2 / 2, span = (high2 - low2) / 2;
  v = std::fabs(v - low);
  const double extra = std::fmod(v, span);
  const double flips = std::floor(v / span);
  return std::fmod(flips, 2.0) == 0 ? extra + low : span - extra + low;
}

double pad_coordinate(double v, int64_t size, Padding padding, bool align_corners) {
  const double last = static_cast<double>(size - 1);
  if (padding == Padding::kBorder) return std::clamp(v, 0.0, last);
  if (padding == Padding::kReflection) {
    v = align_corners ? reflect(v, 0, 2 * last) : reflect(v, -1, 2 * static_cast<double>(size) - 1);
    return std::clamp(v, 0.0, last);
  }
  return v;
}

double cubic_near(double t, double a) { return ((a + 2) * t - (a + 3)) * t * t + 1; }
double cubic_far(double t, double a) { return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a; }

template <typename T>
void run_grid_sample(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const Tensor& grid = ctx.input(1);
  if (x.rank() != 4) ctx.unsupported("only 4-D X [N, C, H, W] is supported, got " + x.describe());
  if (grid.rank() != 4 || grid.dim(0) != x.dim(0) || grid.dim(3) != 2) {
    ctx.fail("grid " + grid.describe() + " must be [N, H_out, W_out, 2] for X " + x.describe());
  }
  const std::string mode = ctx.node.attr_string("mode", "bilinear");
  const std::string pad_name = ctx.node.attr_string("padding_mode", "zeros");
  const bool align = ctx.node.attr_int("align_corners", 0) != 0;
  if (mode != "bilinear" && mode != "nearest" && mode != "bicubic") {
    ctx.fail("mode must be bilinear, nearest or bicubic, got \"" + mode + "\"");
  }
  Padding padding = Padding::kZeros;
  if (pad_name == "border") {
    padding = Padding::kBorder;
  } else if (pad_name == "reflection") {
    padding = Padding::kReflection;
  } else if (pad_name != "zeros") {
    ctx.fail("padding_mode must be zeros, border or reflection, got \"" + pad_name + "\"");
  }
  const int64_t n = x.dim(0), channels = x.dim(1), height = x.dim(2), width = x.dim(3);
  const int64_t out_h = grid.dim(1), out_w = grid.dim(2);
  Tensor y(x.dtype(), {n, channels, out_h, out_w});
  const T* in = x.data<T>();
  T* out = y.data<T>();
  auto unnormalize = [&](double g, int64_t size) {
    const double s = static_cast<double>(size);
    return align ? (g + 1) / 2 * (s - 1) : ((g + 1) * s - 1) / 2;
  };
  // Integer-valued coordinates as doubles: out of range (or NaN) reads 0
  // before any conversion to an integer.
  auto read = [&](const T* plane, double yy, double xx) -> double {
    if (!(yy >= 0 && yy < static_cast<double>(height) && xx >= 0 && xx < static_cast<double>(width))) return 0.0;
    return static_cast<double>(to_compute(plane[static_cast<int64_t>(yy) * width + static_cast<int64_t>(xx)]));
  };
  constexpr double kA = -0.75;
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t oy = 0; oy < out_h; ++oy) {
      for (int64_t ox = 0; ox < out_w; ++ox) {
        const int64_t g_at = ((b * out_h + oy) * out_w + ox) * 2;
        const double gx = unnormalize(grid.get_as_double(g_at), width);
        const double gy = unnormalize(grid.get_as_double(g_at + 1), height);
        for (int64_t c = 0; c < channels; ++c) {
          const T* plane = in + (b * channels + c) * height * width;
          double v = 0;
          if (mode == "bicubic") {
            const double fx = std::floor(gx), fy = std::floor(gy);
            const double tx = gx - fx, ty = gy - fy;
            const double wx[4] = {cubic_far(tx + 1, kA), cubic_near(tx, kA), cubic_near(1 - tx, kA),
                                  cubic_far(2 - tx, kA)};
            const double wy[4] = {cubic_far(ty + 1, kA), cubic_near(ty, kA), cubic_near(1 - ty, kA),
                                  cubic_far(2 - ty, kA)};
            for (int j = 0; j < 4; ++j) {
              double row = 0;
              for (int i = 0; i < 4; ++i) {
                // Each tap's integer coordinate goes through the padding.
                const double tap_x = pad_coordinate(fx - 1 + i, width, padding, align);
                const double tap_y = pad_coordinate(fy - 1 + j, height, padding, align);
                row += wx[i] * read(plane, tap_y, tap_x);
              }
              v += wy[j] * row;
            }
          } else {
            const double px = pad_coordinate(gx, width, padding, align);
            const double py = pad_coordinate(gy, height, padding, align);
            if (mode == "nearest") {
              v = read(plane, std::nearbyint(py), std::nearbyint(px));
            } else {
              const double x0 = std::floor(px), y0 = std::floor(py);
              const double lx = px - x0, ly = py - y0;
              v = (1 - ly) * ((1 - lx) * read(plane, y0, x0) + lx * read(plane, y0, x0 + 1)) +
                  ly * ((1 - lx) * read(plane, y0 + 1, x0) + lx * read(plane, y0 + 1, x0 + 1));
            }
          }
          out[((b * channels + c) * out_h + oy) * out_w + ox] = from_compute<T>(static_cast<compute_t<T>>(v));
        }
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

void grid_sample(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_grid_sample(ctx, tag); });
}

constexpr OpDef kDetectionOps[] = {
    {"NonMaxSuppression", "", non_max_suppression},
    {"RoiAlign", "", roi_align},
    {"GridSample", "", grid_sample},
};

}  // namespace

std::span<const OpDef> detection_ops() { return kDetectionOps; }

}  // namespace kvant
