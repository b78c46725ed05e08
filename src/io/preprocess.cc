// Image preprocessing: parse_preprocess (io/dataset.h) and preprocess_image
// (io/dataset_internal.h).
//
// Resize and crop are one pass: output pixel (y, x) of the crop is pixel
// (y + top, x + left) of the resized image, sampled from the source by
// bilinear interpolation with half-pixel centres,
//   src = (dst + 0.5) * in_size / out_size - 0.5, clamped to [0, in_size - 1],
// without antialiasing (PIL's and torchvision's resize filter first when
// shrinking, so their values differ slightly on large reductions).
// Resize: the shorter side becomes `resize`, the longer one
// round(longer * resize / shorter). Crop offsets: top = (H - crop_h) / 2,
// left = (W - crop_w) / 2, rounded down.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "io/dataset_internal.h"

namespace kvant {

namespace {

[[noreturn]] void bad_spec(const std::string& item, const std::string& why) {
  throw Error(ErrorCode::kInvalidArgument, "preprocess: \"" + item + "\": " + why);
}

int64_t parse_size(const std::string& item, const std::string& value) {
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 0 || v > 65536) bad_spec(item, "expected a size from 0 to 65536");
  return v;
}

std::vector<float> parse_floats(const std::string& item, const std::string& value, bool positive) {
  std::vector<float> out;
  std::stringstream ss(value);
  std::string part;
  while (std::getline(ss, part, ':')) {
    char* end = nullptr;
    const float v = std::strtof(part.c_str(), &end);
    if (part.empty() || *end != '\0' || !std::isfinite(v)) bad_spec(item, "\"" + part + "\" is not a number");
    if (positive && !(v > 0)) bad_spec(item, "std must be positive");
    out.push_back(v);
  }
  if (out.empty()) bad_spec(item, "expected numbers separated by ':'");
  return out;
}

float channel_value(const std::vector<float>& values, int64_t c, float fallback) {
  if (values.empty()) return fallback;
  return values.size() == 1 ? values[0] : values[static_cast<size_t>(c)];
}

}  // namespace

Preprocess parse_preprocess(const std::string& spec) {
  Preprocess p;
  std::stringstream ss(spec);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    if (eq == std::string::npos) bad_spec(item, "expected key=value");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "resize") {
      p.resize = parse_size(item, value);
    } else if (key == "crop") {
      p.crop = parse_size(item, value);
    } else if (key == "mean") {
      p.mean = parse_floats(item, value, false);
    } else if (key == "std") {
      p.std = parse_floats(item, value, true);
    } else if (key == "layout") {
      if (value == "nchw" || value == "NCHW") {
        p.layout = Layout::kNCHW;
      } else if (value == "nhwc" || value == "NHWC") {
        p.layout = Layout::kNHWC;
      } else {
        bad_spec(item, "layout is nchw or nhwc");
      }
    } else {
      bad_spec(item, "unknown key (resize, crop, mean, std, layout)");
    }
  }
  return p;
}

Tensor preprocess_image(const Image& image, const Preprocess& preprocess, const ValueInfo& input,
                        const std::string& where) {
  // Channels, and the crop size where the model fixes it, from the input.
  const auto& dims = input.type.dims;
  const bool nchw = preprocess.layout == Layout::kNCHW;
  int64_t channels = image.channels, model_h = -1, model_w = -1;
  if (input.type.has_shape && dims.size() == 4) {
    const Dim& c = dims[nchw ? 1 : 3];
    if (c.known()) channels = c.value;
    model_h = dims[nchw ? 2 : 1].value;
    model_w = dims[nchw ? 3 : 2].value;
  } else if (input.type.has_shape && dims.size() == 3) {  // [N, H, W]: one gray channel
    channels = 1;
    model_h = dims[1].value;
    model_w = dims[2].value;
  } else if (input.type.has_shape) {
    data_error(where + ": images feed inputs of rank 4 (N,C,H,W or N,H,W,C) or 3 (N,H,W); " + describe_input(input) +
               " has rank " + std::to_string(dims.size()));
  }
  if (channels != 1 && channels != 3) {
    data_error(where + ": " + describe_input(input) + " has " + std::to_string(channels) +
               " channels; images give 1 (gray) or 3 (RGB)");
  }
  for (const auto* values : {&preprocess.mean, &preprocess.std}) {
    if (values->size() > 1 && static_cast<int64_t>(values->size()) != channels) {
      data_error(where + ": preprocess has " + std::to_string(values->size()) + " mean/std values for " +
                 std::to_string(channels) + " channels");
    }
  }

  // Resized size, then the crop inside it.
  int64_t h = image.height, w = image.width;
  if (preprocess.resize > 0) {
    const int64_t shorter = std::min(h, w);
    const double scale = static_cast<double>(preprocess.resize) / static_cast<double>(shorter);
    h = h == shorter ? preprocess.resize : std::max<int64_t>(1, std::llround(static_cast<double>(h) * scale));
    w = w == shorter ? preprocess.resize : std::max<int64_t>(1, std::llround(static_cast<double>(w) * scale));
  }
  int64_t crop_h = h, crop_w = w;
  if (preprocess.crop > 0) {
    crop_h = crop_w = preprocess.crop;
  } else if (model_h > 0 && model_w > 0) {
    crop_h = model_h;
    crop_w = model_w;
  }
  if (crop_h > h || crop_w > w) {
    data_error(where + ": image of " + std::to_string(h) + "x" + std::to_string(w) + " (HxW" +
               (preprocess.resize > 0 ? ", after resize" : "") + ") is smaller than the crop " +
               std::to_string(crop_h) + "x" + std::to_string(crop_w) + "; set resize=");
  }
  const int64_t top = (h - crop_h) / 2, left = (w - crop_w) / 2;

  Tensor out(DType::kFloat32, nchw ? Shape{1, channels, crop_h, crop_w} : Shape{1, crop_h, crop_w, channels});
  if (dims.size() == 3) out = out.reshaped({1, crop_h, crop_w});
  float* dst = out.data<float>();
  const double sy = static_cast<double>(image.height) / static_cast<double>(h);
  const double sx = static_cast<double>(image.width) / static_cast<double>(w);
  const uint8_t* src = image.pixels.data();
  // Pixel value of channel c at source (y, x), with gray <-> RGB conversion.
  auto pixel = [&](int64_t y, int64_t x, int64_t c) -> float {
    const uint8_t* p = src + (y * image.width + x) * image.channels;
    if (image.channels == channels) return p[c];
    if (image.channels == 1) return p[0];
    return 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
  };
  for (int64_t y = 0; y < crop_h; ++y) {
    const double fy = std::clamp((static_cast<double>(y + top) + 0.5) * sy - 0.5, 0.0, double(image.height - 1));
    const int64_t y0 = static_cast<int64_t>(fy), y1 = std::min(y0 + 1, image.height - 1);
    const float wy = static_cast<float>(fy - static_cast<double>(y0));
    for (int64_t x = 0; x < crop_w; ++x) {
      const double fx = std::clamp((static_cast<double>(x + left) + 0.5) * sx - 0.5, 0.0, double(image.width - 1));
      const int64_t x0 = static_cast<int64_t>(fx), x1 = std::min(x0 + 1, image.width - 1);
      const float wx = static_cast<float>(fx - static_cast<double>(x0));
      for (int64_t c = 0; c < channels; ++c) {
        const float top_row = pixel(y0, x0, c) * (1 - wx) + pixel(y0, x1, c) * wx;
        const float bottom_row = pixel(y1, x0, c) * (1 - wx) + pixel(y1, x1, c) * wx;
        const float v = (top_row * (1 - wy) + bottom_row * wy) / 255.0f;
        const float normalized = (v - channel_value(preprocess.mean, c, 0.0f)) / channel_value(preprocess.std, c, 1.0f);
        const int64_t at = nchw ? (c * crop_h + y) * crop_w + x : (y * crop_w + x) * channels + c;
        dst[at] = normalized;
      }
    }
  }
  return out;
}

}  // namespace kvant
