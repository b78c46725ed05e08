// Reading calibration and evaluation data from disk (`kvant quantize --calib
// DATA`, `kvant eval --data DATA`). One DATA argument may be:
//   - a .npy file: one sample, or a batch whose first dim is split into
//     samples (rules below); one-input models only;
//   - a .npz archive (stored or deflated, zip64 included): the array named
//     after each input ("<input>.npy" in the zip); a one-input model also takes
//     the single array of a one-array archive, whatever its name. Other arrays
//     (labels, say) are ignored. Split along the first dim like a .npy batch;
//   - a folder of .npy files, each a sample or a batch. One input: every .npy
//     in the folder. Several inputs: one subfolder per input name (the k-th
//     file of each subfolder together), or else files named <input>.npy,
//     <input>_<any>.npy or <any>_<input>.npy (the longest matching input name
//     wins; the k-th file of each input together). Every input needs as many
//     files as the others, and the files taken together must give the same
//     number of samples; a file that matches no input is an error;
//   - ONNX test data: a folder with input_0.pb, input_1.pb, ... (one sample),
//     or with test_data_set_N/ subfolders (one sample each), like the ONNX
//     model zoo's model folders. In a set, input_*.pb are read (if there are
//     none, every .pb but output_*.pb). A tensor whose TensorProto name is an
//     input's name feeds that input; the others feed the remaining inputs in
//     file order. .pb tensors are never split: one set, one sample;
//   - an IDX image file (MNIST/Fashion-MNIST, plain or .gz): every image one
//     sample, pixel / 255 then (x - mean) / std with one mean/std value
//     (resize and crop do not apply); one-input models only;
//   - a PNG/JPEG file or a folder of them (searched recursively), decoded and
//     preprocessed (Preprocess) into the model input's layout; one-input
//     models only. Channels come from the input's shape (dim 1 for NCHW, dim 3
//     for NHWC; a rank-3 input [N,H,W] is one gray channel): a gray image
//     feeding 3 channels is repeated, an RGB image feeding 1 channel becomes
//     0.299 R + 0.587 G + 0.114 B; alpha is composited on black. The crop is
//     `crop`, else the input's H x W, else (both unknown) the whole image.
// Formats are recognised by the file's first bytes (.pb files by extension);
// a folder is read as test data if it holds .pb files or test_data_set_*
// folders, else as .npy files, else as images. Files are taken in name order,
// digit runs compared as numbers (2.npy before 10.npy).
//
// Shaping (per input; D is its declared shape, rank R, and dim 0 is "free"
// when it is 1 or unknown):
//   - the per-sample shape E is D with a free dim 0 set to 1; other unknown
//     dims take the array's own dims when the ranks agree (an array of rank
//     R - 1 counts as [1, ...] when dim 0 is free);
//   - an array with E's element count is one sample, reshaped to E (an image
//     of 28x28 feeds [N,1,28,28] as [1,1,28,28], or [N,28,28] as [1,28,28]);
//   - else an array [n, ...] with n > 1 whose trailing dims make one sample
//     is a batch of n samples ([60,28,28] and [60,1,28,28] are 60 samples of
//     [1,1,28,28]; for a fixed-batch input [2,4], [3,2,4] is 3 samples);
//   - anything else is an error naming the file, the input, the expected and
//     the found shape. An input with no declared shape takes each array as
//     one sample, as is.
// Dtypes: data of the input's own dtype passes unchanged (int64 token ids
// stay int64); a float32 input also takes float64 and float16 data,
// converted. Anything else is an error: "x.npy: dtype int32, but input
// "image" expects float32". IDX and image data are float32 by construction.
//
// Values are not checked here: NaN and Inf are reported by the consumer with
// the sample index.
//
// Memory: samples are made one at a time. A .npy folder holds one group of
// files (the current batch) at a time; a .npz holds its input arrays,
// decompressed; an IDX source holds the file's uint8 pixels (47 MB for 60000
// MNIST images); an image folder holds one decoded image.
//
// Errors: open_dataset reads the first group (file, set, image) at once, so
// most mistakes show before any sample is used; a bad file later in a folder
// throws Error from SampleSource::next(), naming the file.
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
// resize (shorter side, bilinear with half-pixel centres, no antialiasing) ->
// center crop (offsets rounded down) -> pixel / 255 -> (x - mean[c]) / std[c]
// -> layout. Channels in RGB order.
struct Preprocess {
  int64_t resize = 0;       // shorter side after resizing; 0: no resize
  int64_t crop = 0;         // center crop to crop x crop; 0: the model input's H x W
  std::vector<float> mean;  // one value, or one per channel; empty: 0
  std::vector<float> std;   // one value, or one per channel; empty: 1
  Layout layout = Layout::kNCHW;
};

// Parses "resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nchw".
// Items may come in any order and any may be left out; resize and crop are
// 0..65536, std values must be positive, layout is nchw or nhwc. Throws
// Error naming the bad item.
Preprocess parse_preprocess(const std::string& spec);

struct DatasetOptions {
  Preprocess preprocess;
  int64_t limit = -1;  // at most this many samples; -1: all
};

// Opens DATA for a model whose (non-initializer) inputs are `inputs`.
// Throws Error on a missing path (kNotFound), an empty folder, an unreadable file, or data
// that cannot feed the inputs (wrong shape, dtype or number of inputs); NaN
// and Inf are reported by the consumer with the sample index.
std::unique_ptr<SampleSource> open_dataset(const std::string& path, const std::vector<ValueInfo>& inputs,
                                           const DatasetOptions& options);

// Class labels, one per sample: an IDX label file (plain or .gz, rank 1), a
// .npy of any integer dtype (every element, in order), or a text file with
// one integer per line (blank lines skipped). Throws Error naming the file
// (and the line).
std::vector<int64_t> read_labels(const std::string& path);

// For an IDX image file named like "<prefix>-images-idx3-ubyte[.gz]", the
// label file beside it ("<prefix>-labels-idx1-ubyte[.gz]") if it exists.
std::optional<std::string> sibling_labels(const std::string& data_path);

}  // namespace kvant
