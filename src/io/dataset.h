// Reading calibration and evaluation data from disk (`kvant quantize --calib
// DATA`, `kvant eval --data DATA`). One DATA argument may be:
//   - a .npy file: one sample, or a batch whose first dim is split into samples;
//   - a .npz archive: arrays named after the model's inputs (or one array for
//     a one-input model), split along the first dim like a .npy batch;
//   - a folder of .npy files (sorted by name), each a sample or a batch; with
//     several model inputs, either one subfolder per input name or files named
//     <input>_<anything>.npy / <anything>_<input>.npy matched by name;
//   - a folder of ONNX test-data tensors (input_0.pb, ..., or
//     test_data_set_N/input_K.pb folders), matched to inputs by order/name;
//   - an IDX image file (MNIST/Fashion-MNIST, plain or .gz): every image one
//     sample, pixels / 255 then Preprocess mean/std;
//   - a folder of PNG/JPEG images, decoded, resized/cropped/normalized by
//     Preprocess into the model input's layout.
// Each sample is reshaped to the model input's shape with batch 1 when its
// element count matches (an image of 28x28 feeds [N,1,28,28] or [N,28,28]);
// anything else is an error naming the file, the expected and the found shape.
// Samples are read lazily: memory does not grow with the number of samples.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"

namespace kvant {

enum class Layout { kNCHW, kNHWC };

// Image preprocessing, as ImageNet pipelines do it:
// resize (shorter side, bilinear) -> center crop -> pixel / 255 ->
// (x - mean[c]) / std[c] -> layout.
struct Preprocess {
  int64_t resize = 0;      // shorter side after resizing; 0: no resize
  int64_t crop = 0;        // center crop to crop x crop; 0: the model input's H x W
  std::vector<float> mean;  // one value, or one per channel; empty: 0
  std::vector<float> std;   // one value, or one per channel; empty: 1
  Layout layout = Layout::kNCHW;
};

// Parses "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nchw".
// Throws Error naming the bad item.
Preprocess parse_preprocess(const std::string& spec);

struct DatasetOptions {
  Preprocess preprocess;
  int64_t limit = -1;  // at most this many samples; -1: all
};

// Opens DATA for a model whose (non-initializer) inputs are `inputs`.
// Throws Error on a missing path, an empty folder, an unreadable file, or data
// that cannot feed the inputs (wrong shape, dtype or number of inputs); NaN
// and Inf are reported by the consumer with the sample index.
std::unique_ptr<SampleSource> open_dataset(const std::string& path, const std::vector<ValueInfo>& inputs,
                                           const DatasetOptions& options);

// Class labels, one per sample: an IDX label file (plain or .gz), a .npy of
// integers, or a text file with one integer per line. Throws Error.
std::vector<int64_t> read_labels(const std::string& path);

// For an IDX image file named like "<prefix>-images-idx3-ubyte[.gz]", the
// label file beside it ("<prefix>-labels-idx1-ubyte[.gz]") if it exists.
std::optional<std::string> sibling_labels(const std::string& data_path);

}  // namespace kvant
