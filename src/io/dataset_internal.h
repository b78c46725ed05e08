// Pieces shared by the dataset readers (io/dataset.h). Internal to src/io and
// its tests: the sample-shaping rule, the IDX, zip and image decoders, and
// the SampleSource implementations.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/dataset.h"
#include "ir/graph.h"
#include "ir/limits.h"
#include "ir/tensor.h"

namespace kvant {

// Throws Error(kInvalidArgument, message).
[[noreturn]] void data_error(const std::string& message);

// ---- Shaping: how one array on disk becomes samples for one input ----------
//
// Let the input's declared shape be D (rank R) and call dim 0 "free" when it
// is 1 or not a known number (the batch). The per-sample shape E is D with a
// free dim 0 set to 1; other unknown dims of D take the array's own dims when
// the ranks agree (an array of rank R-1 counts as [1, ...] if dim 0 is free).
//   1. The array is one sample when its element count equals E's: it is
//      reshaped to E ([28,28] feeds [N,1,28,28] as [1,1,28,28]).
//   2. Otherwise, where batches are allowed (.npy, .npz), an array [n, ...]
//      with n > 1 whose trailing dims [...] make one sample by rule 1 is n
//      samples ([60,28,28] is 60 samples of [1,1,28,28]).
//   3. Anything else is an error naming `where`, the input, the expected and
//      the found shape.
// An input without a declared shape takes each array as one sample, as is.
struct SamplePlan {
  int64_t count = 1;  // samples in the array
  Shape sample_shape;
};
SamplePlan plan_samples(const Tensor& array, const ValueInfo& input, const std::string& where, bool allow_batch);

// Sample `index` of `array` (shares storage when the array is one sample),
// converted to the input's dtype where check_dtype allows a conversion.
Tensor take_sample(const Tensor& array, const SamplePlan& plan, int64_t index, const ValueInfo& input);

// The dtype rule: data of the input's own dtype passes unchanged; a float32
// input also takes float16 and float64 data (converted; NumPy's default is
// float64). Anything else throws: `<where>: dtype int32, but input "x"
// expects float32`. An input of unknown dtype takes any data.
void check_dtype(DType found, const ValueInfo& input, const std::string& where);

// "input \"x\" (float32[N,1,28,28])", for messages.
std::string describe_input(const ValueInfo& input);

// ---- IDX (MNIST) files, plain or gzip ----------------------------------------
// Header: 0x00 0x00, type byte (0x08: uint8, the only type read), rank byte,
// then rank big-endian uint32 dims, then the data in C order.
struct IdxArray {
  Shape shape;
  std::vector<uint8_t> data;
  MemoryReservation reservation;  // data's bytes, against the memory budget
};
// The data is read in chunks, so a header that promises more than the file
// holds costs no memory; a short file is an error naming it. The size the
// header declares is checked against the memory budget (ir/limits.h) first:
// a small .gz can inflate to gigabytes.
IdxArray read_idx(const std::filesystem::path& file);

// ---- Zip archives (.npz) -----------------------------------------------------
struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflate
  uint32_t crc32 = 0;
  uint64_t compressed_size = 0;
  uint64_t uncompressed_size = 0;
  uint64_t local_header_offset = 0;
};
// Reads the central directory (zip64 included); entries are extracted one at
// a time. Every offset and size is checked against the file's size.
// Two members with one name are refused (NumPy would read the last).
class InputFile;
class ZipReader {
 public:
  explicit ZipReader(std::filesystem::path file);
  const std::vector<ZipEntry>& entries() const { return entries_; }
  // The entry as a .npy array, inflated straight into the tensor and
  // CRC-checked. Errors start with `where`.
  Tensor read_npy_member(const ZipEntry& entry, const std::string& where) const;

 private:
  class MemberStream;
  std::string read_at(uint64_t offset, uint64_t size) const;
  std::filesystem::path file_;
  std::shared_ptr<InputFile> in_;
  uint64_t file_size_ = 0;
  std::vector<ZipEntry> entries_;
};

// ---- Images -----------------------------------------------------------------
// 8-bit pixels, rows top to bottom, channels interleaved (1: gray, 3: RGB).
struct Image {
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 0;
  std::vector<uint8_t> pixels;
};
bool is_image_file(const std::filesystem::path& file);  // .png .jpg .jpeg, any case
// PNG (palette, 16-bit and alpha reduced to 8-bit gray or RGB) or JPEG
// (gray, RGB; CMYK refused), chosen by the file's first bytes.
Image decode_image(const std::filesystem::path& file);

// Gray <-> RGB (gray -> RGB repeats the value; RGB -> gray is the BT.601 luma
// 0.299 R + 0.587 G + 0.114 B, as PIL's convert("L")), then Preprocess:
// resize, center crop, / 255, mean/std, layout. Returns float32 [1,C,H,W]
// (NCHW) or [1,H,W,C] (NHWC); C and the crop size come from the input's
// declared shape where known. Errors name `where`.
Tensor preprocess_image(const Image& image, const Preprocess& preprocess, const ValueInfo& input,
                        const std::string& where);

// ---- Sources ------------------------------------------------------------------
// One array per model input, plus where it came from (for messages).
struct LoadedArray {
  Tensor tensor;
  std::string where;
};
// A group of arrays that feed all the inputs together (a .npy file, the k-th
// file of each input, a .npz, a test_data_set folder), loaded when reached.
using GroupLoader = std::function<std::vector<LoadedArray>()>;

// Splits each group into samples by plan_samples; the arrays of one group
// must give the same number of samples. Only the current group is held.
// Group 0 is loaded at construction, so its errors come from open_dataset.
std::unique_ptr<SampleSource> make_group_source(std::vector<ValueInfo> inputs, std::vector<GroupLoader> groups,
                                                bool allow_batch);
std::unique_ptr<SampleSource> make_idx_source(const std::filesystem::path& file, const ValueInfo& input,
                                              const Preprocess& preprocess);
std::unique_ptr<SampleSource> make_image_source(std::vector<std::filesystem::path> files, const ValueInfo& input,
                                                const Preprocess& preprocess);

// A .pb TensorProto and its name.
LoadedArray load_pb(const std::filesystem::path& file, std::string* name);

}  // namespace kvant
