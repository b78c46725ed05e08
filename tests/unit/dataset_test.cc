// The dataset readers (io/dataset.h): every format written here by hand or
// with the same libraries kvant reads them with, the shaping rules, input
// matching, and the bad-input messages.
#include "io/dataset.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

// clang-format off
#include <cstdio>  // before jpeglib.h, which uses FILE and size_t
#include <jpeglib.h>
// clang-format on
#include <png.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/dataset_internal.h"
#include "io/npy.h"
#include "onnx/tensor_proto.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

// An input whose dims are given as numbers; -1 is the symbol "N" (or "?"
// after the first dim).
ValueInfo input(const std::string& name, std::vector<int64_t> dims, DType dtype = DType::kFloat32) {
  ValueInfo v;
  v.name = name;
  v.type.dtype = dtype;
  v.type.has_shape = true;
  for (size_t i = 0; i < dims.size(); ++i) {
    Dim d;
    d.value = dims[i];
    if (dims[i] < 0) d.param = i == 0 ? "N" : "";
    v.type.dims.push_back(d);
  }
  return v;
}

std::vector<float> iota(size_t n, float start = 0) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i);
  return v;
}

void put(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

std::string raw_deflate(const std::string& data) {
  z_stream s{};
  EXPECT_EQ(deflateInit2(&s, Z_BEST_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&s, data.size()), '\0');
  s.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  s.avail_in = static_cast<uInt>(data.size());
  s.next_out = reinterpret_cast<Bytef*>(out.data());
  s.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&s, Z_FINISH), Z_STREAM_END);
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

struct ZipItem {
  std::string name;
  std::string data;
  bool deflated = false;
};

// A zip archive as NumPy's savez writes it; `zip64` puts the sizes in zip64
// extra fields of the local and central headers, as Python's zipfile does
// with force_zip64 (which savez uses).
std::string make_zip(const std::vector<ZipItem>& items, bool zip64 = false) {
  std::string out, dir;
  for (const auto& item : items) {
    const std::string packed = item.deflated ? raw_deflate(item.data) : item.data;
    const uint32_t crc = static_cast<uint32_t>(
        crc32(0, reinterpret_cast<const Bytef*>(item.data.data()), static_cast<uInt>(item.data.size())));
    const uint64_t offset = out.size();
    const uint16_t method = item.deflated ? 8 : 0;
    put(out, 0x04034b50, 4), put(out, 20, 2), put(out, 0, 2), put(out, method, 2), put(out, 0, 4);
    put(out, crc, 4);
    put(out, zip64 ? 0xFFFFFFFF : packed.size(), 4), put(out, zip64 ? 0xFFFFFFFF : item.data.size(), 4);
    put(out, item.name.size(), 2), put(out, zip64 ? 20 : 0, 2);
    out += item.name;
    if (zip64) put(out, 1, 2), put(out, 16, 2), put(out, item.data.size(), 8), put(out, packed.size(), 8);
    out += packed;
    put(dir, 0x02014b50, 4), put(dir, 45, 2), put(dir, 20, 2), put(dir, 0, 2), put(dir, method, 2), put(dir, 0, 4);
    put(dir, crc, 4);
    put(dir, zip64 ? 0xFFFFFFFF : packed.size(), 4), put(dir, zip64 ? 0xFFFFFFFF : item.data.size(), 4);
    put(dir, item.name.size(), 2), put(dir, zip64 ? 20 : 0, 2), put(dir, 0, 2), put(dir, 0, 2), put(dir, 0, 2);
    put(dir, 0, 4), put(dir, offset, 4);
    dir += item.name;
    if (zip64) put(dir, 1, 2), put(dir, 16, 2), put(dir, item.data.size(), 8), put(dir, packed.size(), 8);
  }
  const uint64_t dir_offset = out.size();
  out += dir;
  put(out, 0x06054b50, 4), put(out, 0, 4), put(out, items.size(), 2), put(out, items.size(), 2);
  put(out, dir.size(), 4), put(out, dir_offset, 4), put(out, 0, 2);
  return out;
}

std::string npy_bytes(const Tensor& t) { return encode_npy(t).value(); }

// IDX: magic, big-endian dims, bytes.
std::string make_idx(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string out{0, 0, 8, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((d >> s) & 0xFF));
  }
  return out + std::string(data.begin(), data.end());
}

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvant_dataset_" + std::to_string(getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path file(const std::string& name, const std::string& bytes) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
  fs::path npy(const std::string& name, const Tensor& t) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    EXPECT_TRUE(write_npy(p, t).ok());
    return p;
  }
  fs::path gz(const std::string& name, const std::string& bytes) {
    const fs::path p = dir_ / name;
    gzFile f = gzopen(p.string().c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
    return p;
  }
  fs::path pb(const std::string& name, const Tensor& t, const std::string& tensor_name) {
    onnx::TensorProto proto;
    tensor_to_proto(t, proto);
    proto.set_name(tensor_name);
    return file(name, proto.SerializeAsString());
  }
  fs::path png(const std::string& name, int width, int height, int channels, const std::vector<uint8_t>& pixels) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    png_image image;
    std::memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = static_cast<png_uint_32>(width);
    image.height = static_cast<png_uint_32>(height);
    image.format = channels == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
    EXPECT_TRUE(png_image_write_to_file(&image, p.string().c_str(), 0, pixels.data(), 0, nullptr));
    return p;
  }
  fs::path jpeg(const std::string& name, int width, int height, int channels, const std::vector<uint8_t>& pixels) {
    const fs::path p = dir_ / name;
    fs::create_directories(p.parent_path());
    FILE* f = std::fopen(p.string().c_str(), "wb");
    if (!f) {
      ADD_FAILURE() << "cannot write " << p;
      return p;
    }
    jpeg_compress_struct info;
    jpeg_error_mgr errors;
    info.err = jpeg_std_error(&errors);
    jpeg_create_compress(&info);
    jpeg_stdio_dest(&info, f);
    info.image_width = static_cast<JDIMENSION>(width);
    info.image_height = static_cast<JDIMENSION>(height);
    info.input_components = channels;
    info.in_color_space = channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&info);
    jpeg_set_quality(&info, 100, TRUE);
    jpeg_start_compress(&info, TRUE);
    while (info.next_scanline < info.image_height) {
      JSAMPROW row = const_cast<JSAMPROW>(pixels.data() + info.next_scanline * static_cast<size_t>(width * channels));
      jpeg_write_scanlines(&info, &row, 1);
    }
    jpeg_finish_compress(&info);
    jpeg_destroy_compress(&info);
    std::fclose(f);
    return p;
  }

  // All samples of `path` for `inputs`.
  std::vector<std::map<std::string, Tensor>> read_all(const fs::path& path, const std::vector<ValueInfo>& inputs,
                                                      const DatasetOptions& options = {}) {
    auto source = open_dataset(path.string(), inputs, options);
    std::vector<std::map<std::string, Tensor>> out;
    while (auto s = source->next()) out.push_back(*s);
    return out;
  }
  // The message of the Error open_dataset (and reading every sample) throws.
  std::string error_of(const fs::path& path, const std::vector<ValueInfo>& inputs, const DatasetOptions& options = {}) {
    try {
      read_all(path, inputs, options);
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error for " << path;
    return "";
  }

  std::string error_of_labels(const fs::path& path) {
    try {
      read_labels(path.string());
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error for " << path;
    return "";
  }

  fs::path dir_;
};

// Asserts that `message` contains every one of `parts`.
#define EXPECT_MENTIONS(message, ...)                                                                 \
  for (const std::string part : {__VA_ARGS__}) {                                                      \
    EXPECT_NE((message).find(part), std::string::npos) << "\"" << part << "\" not in: " << (message); \
  }

// ---- .npy and the shaping rules ---------------------------------------------

TEST_F(DatasetTest, NpyOneSampleIsReshapedToTheInput) {
  const auto p = npy("x.npy", Tensor::from_vector(iota(12), {3, 4}));
  const auto samples = read_all(p, {input("x", {-1, 1, 3, 4})});
  ASSERT_EQ(samples.size(), 1u);
  const Tensor& t = samples[0].at("x");
  EXPECT_EQ(t.shape(), (Shape{1, 1, 3, 4}));
  EXPECT_EQ(t.to_float_vector(), iota(12));
}

TEST_F(DatasetTest, NpyBatchIsSplitAlongTheFirstDim) {
  const auto p = npy("x.npy", Tensor::from_vector(iota(5 * 12), {5, 1, 3, 4}));
  auto source = open_dataset(p.string(), {input("x", {-1, 1, 3, 4})}, {});
  EXPECT_EQ(source->size(), 5);
  std::vector<Tensor> got;
  while (auto s = source->next()) got.push_back(s->at("x"));
  ASSERT_EQ(got.size(), 5u);
  EXPECT_EQ(got[3].shape(), (Shape{1, 1, 3, 4}));
  EXPECT_EQ(got[3].to_float_vector(), iota(12, 36));
  source->reset();
  EXPECT_EQ(source->next()->at("x").to_float_vector(), iota(12));
}

TEST_F(DatasetTest, NpyBatchWithoutChannelDimFeedsRank4Input) {
  const auto samples = read_all(npy("x.npy", Tensor::from_vector(iota(60), {5, 3, 4})), {input("x", {-1, 1, 3, 4})});
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[4].at("x").shape(), (Shape{1, 1, 3, 4}));
}

TEST_F(DatasetTest, UnknownDimsTakeTheSamplesOwnShape) {
  const auto samples =
      read_all(npy("x.npy", Tensor::from_vector(iota(2 * 3 * 5 * 6), {2, 3, 5, 6})), {input("x", {-1, 3, -1, -1})});
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1].at("x").shape(), (Shape{1, 3, 5, 6}));
  // A single image without the batch dim.
  const auto one =
      read_all(npy("y.npy", Tensor::from_vector(iota(3 * 5 * 6), {3, 5, 6})), {input("x", {-1, 3, -1, -1})});
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].at("x").shape(), (Shape{1, 3, 5, 6}));
}

TEST_F(DatasetTest, FixedBatchInputTakesWholeArraysAndRankPlusOneBatches) {
  // [2,4] is one sample of a fixed-batch [2,4] input; [3,2,4] is three.
  EXPECT_EQ(read_all(npy("a.npy", Tensor::from_vector(iota(8), {2, 4})), {input("x", {2, 4})}).size(), 1u);
  const auto samples = read_all(npy("b.npy", Tensor::from_vector(iota(24), {3, 2, 4})), {input("x", {2, 4})});
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[2].at("x").to_float_vector(), iota(8, 16));
}

TEST_F(DatasetTest, Float64IsConvertedAndInt64PassesThrough) {
  const auto f = read_all(npy("f.npy", Tensor::from_vector<double>({1.5, 2.5}, {2})), {input("x", {1, 2})});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].at("x").dtype(), DType::kFloat32);
  EXPECT_EQ(f[0].at("x").to_float_vector(), (std::vector<float>{1.5f, 2.5f}));
  const auto ids = read_all(npy("i.npy", Tensor::from_vector<int64_t>({7, 8, 9, 10, 11, 12}, {2, 3})),
                            {input("ids", {-1, 3}, DType::kInt64)});
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[1].at("ids").dtype(), DType::kInt64);
  EXPECT_EQ(ids[1].at("ids").to_int64_vector(), (std::vector<int64_t>{10, 11, 12}));
}

TEST_F(DatasetTest, WrongDtypeNamesFileAndInput) {
  const auto p = npy("x.npy", Tensor::from_vector<int32_t>({1, 2}, {2}));
  EXPECT_MENTIONS(error_of(p, {input("image", {1, 2})}), "x.npy", "dtype int32", "\"image\"", "float32");
}

TEST_F(DatasetTest, WrongShapeNamesFileExpectedAndFound) {
  const auto p = npy("x.npy", Tensor::from_vector(iota(15), {3, 5}));
  EXPECT_MENTIONS(error_of(p, {input("image", {-1, 1, 28, 28})}), "x.npy", "[3,5]", "[1,1,28,28]", "\"image\"");
}

TEST_F(DatasetTest, MissingPathAndEmptyFolder) {
  try {
    open_dataset((dir_ / "nope.npy").string(), {input("x", {1})}, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_MENTIONS(std::string(e.what()), "nope.npy");
  }
  fs::create_directories(dir_ / "empty");
  EXPECT_MENTIONS(error_of(dir_ / "empty", {input("x", {1})}), "empty", "folder is empty");
  EXPECT_MENTIONS(error_of(file("notes.txt", "hello"), {input("x", {1})}), "notes.txt", "unrecognized");
  EXPECT_MENTIONS(error_of(file("zero.npy", ""), {input("x", {1})}), "zero.npy", "empty");
}

TEST_F(DatasetTest, NpyFolderInNameOrderWithBatchFiles) {
  npy("d/10.npy", Tensor::from_vector<float>({10}, {1}));
  npy("d/2.npy", Tensor::from_vector<float>({2, 3}, {2, 1}));  // a batch of two
  npy("d/1.npy", Tensor::from_vector<float>({1}, {1}));
  file("d/readme.txt", "ignored");
  std::vector<float> seen;
  for (const auto& s : read_all(dir_ / "d", {input("x", {-1, 1})})) seen.push_back(s.at("x").to_float_vector()[0]);
  EXPECT_EQ(seen, (std::vector<float>{1, 2, 3, 10}));
  DatasetOptions limited;
  limited.limit = 2;
  EXPECT_EQ(read_all(dir_ / "d", {input("x", {-1, 1})}, limited).size(), 2u);
}

TEST_F(DatasetTest, BadFileLaterInAFolderNamesIt) {
  npy("d/0.npy", Tensor::from_vector<float>({1}, {1}));
  npy("d/1.npy", Tensor::from_vector<float>({1, 2, 3}, {3, 1, 1}));
  npy("d/2.npy", Tensor::from_vector<float>({1, 2}, {1, 2}));
  EXPECT_MENTIONS(error_of(dir_ / "d", {input("x", {-1, 1})}), "2.npy", "[1,2]");
}

// ---- Several inputs ------------------------------------------------------------

TEST_F(DatasetTest, MultiInputSubfolders) {
  for (int k = 0; k < 2; ++k) {
    npy("d/ids/" + std::to_string(k) + ".npy", Tensor::from_vector<int64_t>({k, k}, {1, 2}));
    npy("d/mask/" + std::to_string(k) + ".npy", Tensor::from_vector<float>({1.0f * k, 0}, {1, 2}));
  }
  const auto samples = read_all(dir_ / "d", {input("ids", {-1, 2}, DType::kInt64), input("mask", {-1, 2})});
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[1].at("ids").to_int64_vector(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(samples[1].at("mask").to_float_vector(), (std::vector<float>{1, 0}));
}

TEST_F(DatasetTest, MultiInputFilesMatchedByName) {
  npy("d/ids_0.npy", Tensor::from_vector<int64_t>({1, 2, 3, 4}, {2, 2}));
  npy("d/0_attention_mask.npy", Tensor::from_vector<float>({5, 6, 7, 8}, {2, 2}));
  npy("d/ids_1.npy", Tensor::from_vector<int64_t>({9, 9}, {1, 2}));
  npy("d/1_attention_mask.npy", Tensor::from_vector<float>({0, 0}, {1, 2}));
  const auto samples = read_all(dir_ / "d", {input("ids", {-1, 2}, DType::kInt64), input("attention_mask", {-1, 2})});
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[1].at("ids").to_int64_vector(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(samples[1].at("attention_mask").to_float_vector(), (std::vector<float>{7, 8}));
  EXPECT_EQ(samples[2].at("ids").to_int64_vector(), (std::vector<int64_t>{9, 9}));
}

TEST_F(DatasetTest, MultiInputErrorsNameTheInputOrFile) {
  const std::vector<ValueInfo> inputs = {input("ids", {-1, 2}, DType::kInt64), input("mask", {-1, 2})};
  npy("a/ids_0.npy", Tensor::from_vector<int64_t>({1, 2}, {1, 2}));
  EXPECT_MENTIONS(error_of(dir_ / "a", inputs), "no .npy files for input(s) \"mask\"");
  npy("b/ids_0.npy", Tensor::from_vector<int64_t>({1, 2}, {1, 2}));
  npy("b/other.npy", Tensor::from_vector<float>({1, 2}, {1, 2}));
  EXPECT_MENTIONS(error_of(dir_ / "b", inputs), "other.npy", "matches no input");
  EXPECT_MENTIONS(error_of(npy("one.npy", Tensor::from_vector<float>({1, 2}, {1, 2})), inputs), "one.npy", "ids",
                  "mask");
  npy("c/ids/0.npy", Tensor::from_vector<int64_t>({1, 2}, {1, 2}));
  EXPECT_MENTIONS(error_of(dir_ / "c", inputs), "\"mask\"");
  // Arrays that give different sample counts.
  npy("e/ids_0.npy", Tensor::from_vector<int64_t>({1, 2, 3, 4}, {2, 2}));
  npy("e/mask_0.npy", Tensor::from_vector<float>({1, 2}, {1, 2}));
  EXPECT_MENTIONS(error_of(dir_ / "e", inputs), "mask_0.npy", "1 samples", "ids_0.npy");
}

// ---- .npz ----------------------------------------------------------------------

TEST_F(DatasetTest, NpzStoredAndDeflated) {
  for (bool deflated : {false, true}) {
    for (bool zip64 : {false, true}) {
      const auto p =
          file("a.npz",
               make_zip({{"mask.npy", npy_bytes(Tensor::from_vector(iota(6), {3, 2})), deflated},
                         {"labels.npy", npy_bytes(Tensor::from_vector<int64_t>({1}, {1})), false},
                         {"ids.npy", npy_bytes(Tensor::from_vector<int64_t>({1, 2, 3, 4, 5, 6}, {3, 2})), deflated}},
                        zip64));
      const auto samples = read_all(p, {input("ids", {-1, 2}, DType::kInt64), input("mask", {-1, 2})});
      ASSERT_EQ(samples.size(), 3u);
      EXPECT_EQ(samples[2].at("ids").to_int64_vector(), (std::vector<int64_t>{5, 6}));
      EXPECT_EQ(samples[2].at("mask").to_float_vector(), (std::vector<float>{4, 5}));
    }
  }
}

TEST_F(DatasetTest, NpzOneArrayFeedsAOneInputModelWhateverItsName) {
  const auto p = file("a.npz", make_zip({{"arr_0.npy", npy_bytes(Tensor::from_vector(iota(8), {2, 4})), true}}));
  EXPECT_EQ(read_all(p, {input("x", {-1, 4})}).size(), 2u);
  const auto q = file("b.npz", make_zip({{"arr_0.npy", npy_bytes(Tensor::from_vector(iota(4), {1, 4}))},
                                         {"arr_1.npy", npy_bytes(Tensor::from_vector(iota(4), {1, 4}))}}));
  EXPECT_MENTIONS(error_of(q, {input("x", {-1, 4})}), "b.npz", "\"x\"", "arr_0, arr_1");
}

TEST_F(DatasetTest, NpzHostileArchivesGiveErrors) {
  const std::string good = make_zip({{"x.npy", npy_bytes(Tensor::from_vector(iota(64), {4, 16})), true}});
  const std::vector<ValueInfo> inputs = {input("x", {-1, 16})};
  // Truncated anywhere: never a crash.
  for (size_t n = 4; n < good.size(); n += 7) {
    const auto p = file("t.npz", good.substr(0, n));
    EXPECT_THROW(read_all(p, inputs), Error) << n;
  }
  // Every byte flipped in turn: an error or (rarely) a valid reading, never a crash.
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    const auto p = file("f.npz", bad);
    try {
      read_all(p, inputs);
    } catch (const Error&) {
    }
  }
  // A deflated entry that claims 4 GiB.
  std::string huge = good;
  const size_t dir = huge.rfind(std::string("PK\x01\x02", 4));
  for (int k = 0; k < 4; ++k) huge[dir + 24 + static_cast<size_t>(k)] = '\xff';
  EXPECT_MENTIONS(error_of(file("h.npz", huge), inputs), "h.npz", "x.npy", "impossible");
  // A bad CRC.
  std::string crc = make_zip({{"x.npy", npy_bytes(Tensor::from_vector(iota(16), {1, 16}))}});
  crc[crc.rfind(std::string("PK\x01\x02", 4)) + 16] ^= 1;
  EXPECT_MENTIONS(error_of(file("c.npz", crc), inputs), "c.npz", "CRC");
}

// ---- ONNX test data (.pb) ------------------------------------------------------

TEST_F(DatasetTest, PbTestDataSetsMatchedByNameThenOrder) {
  const std::vector<ValueInfo> inputs = {input("a", {1, 2}), input("b", {1, 2})};
  for (int k = 0; k < 3; ++k) {
    const std::string set = "m/test_data_set_" + std::to_string(k) + "/";
    // input_0 is named "b": names win over order.
    pb(set + "input_0.pb", Tensor::from_vector<float>({1.0f * k, 1}, {1, 2}), "b");
    pb(set + "input_1.pb", Tensor::from_vector<float>({1.0f * k, 0}, {1, 2}), "other");
    pb(set + "output_0.pb", Tensor::from_vector<float>({0}, {1}), "y");
  }
  file("m/model.onnx", "not read");
  const auto samples = read_all(dir_ / "m", inputs);
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(samples[2].at("b").to_float_vector(), (std::vector<float>{2, 1}));
  EXPECT_EQ(samples[2].at("a").to_float_vector(), (std::vector<float>{2, 0}));

  pb("flat/input_0.pb", Tensor::from_vector<float>({3, 4}, {2}), "");
  const auto flat = read_all(dir_ / "flat", {input("x", {1, 2})});
  ASSERT_EQ(flat.size(), 1u);
  EXPECT_EQ(flat[0].at("x").shape(), (Shape{1, 2}));
  EXPECT_EQ(read_all(dir_ / "flat" / "input_0.pb", {input("x", {1, 2})}).size(), 1u);

  EXPECT_MENTIONS(error_of(dir_ / "flat", inputs), "flat", "no tensor for input(s) \"b\"");
  file("bad/input_0.pb", "\xff\xff\xff garbage");
  EXPECT_MENTIONS(error_of(dir_ / "bad", {input("x", {1, 2})}), "input_0.pb");
}

// ---- IDX -----------------------------------------------------------------------

TEST_F(DatasetTest, IdxPlainAndGzipWithMeanStd) {
  std::vector<uint8_t> pixels(3 * 2 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 10);
  const std::string idx = make_idx({3, 2, 3}, pixels);
  DatasetOptions options;
  options.preprocess.mean = {0.5f};
  options.preprocess.std = {0.25f};
  for (const auto& p : {file("plain-images-idx3-ubyte", idx), gz("z-images-idx3-ubyte.gz", idx)}) {
    auto source = open_dataset(p.string(), {input("x", {-1, 1, 2, 3})}, options);
    EXPECT_EQ(source->size(), 3);
    std::vector<Tensor> got;
    while (auto s = source->next()) got.push_back(s->at("x"));
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[1].shape(), (Shape{1, 1, 2, 3}));
    EXPECT_FLOAT_EQ(got[1].to_float_vector()[2], (80 / 255.0f - 0.5f) / 0.25f);
  }
  gz("z-labels-idx1-ubyte.gz", make_idx({3}, {4, 0, 9}));
  const auto labels = sibling_labels((dir_ / "z-images-idx3-ubyte.gz").string());
  ASSERT_TRUE(labels.has_value());
  EXPECT_EQ(read_labels(*labels), (std::vector<int64_t>{4, 0, 9}));
  EXPECT_FALSE(sibling_labels((dir_ / "plain-images-idx3-ubyte").string()).has_value());
}

TEST_F(DatasetTest, IdxHostileHeadersGiveErrors) {
  const std::vector<ValueInfo> inputs = {input("x", {-1, 1, 2, 2})};
  EXPECT_MENTIONS(error_of(file("t-images-idx3-ubyte", make_idx({100, 2, 2}, {1, 2, 3, 4, 5})), inputs),
                  "t-images-idx3-ubyte", "truncated", "400 bytes");
  EXPECT_MENTIONS(error_of(gz("h-images-idx3-ubyte.gz", make_idx({0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF}, {})), inputs),
                  "h-images-idx3-ubyte.gz", "too large");
  EXPECT_MENTIONS(error_of(gz("b.gz", make_idx({4000000, 2, 2}, {1})), inputs), "b.gz", "truncated");
  EXPECT_MENTIONS(error_of(gz("l.gz", make_idx({4}, {1, 2, 3, 4})), inputs), "l.gz", "label");
  EXPECT_MENTIONS(error_of(file("s-images-idx3-ubyte", make_idx({1, 3, 3}, std::vector<uint8_t>(9))), inputs), "[3,3]",
                  "[1,1,2,2]");
  EXPECT_MENTIONS(error_of(file("g.gz", "\x1f\x8b not really gzip"), inputs), "g.gz");
}

TEST_F(DatasetTest, IdxRealFashionMnist) {
  const std::string images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz";
  if (!fs::exists(images)) GTEST_SKIP() << images << " is not installed";
  auto source = open_dataset(images, {input("x", {-1, 1, 28, 28})}, {});
  EXPECT_EQ(source->size(), 10000);
  int64_t n = 0;
  float max_value = 0;
  while (auto s = source->next()) {
    const Tensor& t = s->at("x");
    ASSERT_EQ(t.shape(), (Shape{1, 1, 28, 28}));
    if (n == 0) {
      for (float v : t.to_float_vector()) max_value = std::max(max_value, v);
    }
    ++n;
  }
  EXPECT_EQ(n, 10000);
  EXPECT_GT(max_value, 0.5f);
  EXPECT_LE(max_value, 1.0f);
  const auto labels_path = sibling_labels(images);
  ASSERT_TRUE(labels_path.has_value());
  const auto labels = read_labels(*labels_path);
  ASSERT_EQ(labels.size(), 10000u);
  EXPECT_EQ(*std::min_element(labels.begin(), labels.end()), 0);
  EXPECT_EQ(*std::max_element(labels.begin(), labels.end()), 9);
}

// ---- Labels --------------------------------------------------------------------

TEST_F(DatasetTest, LabelsFromTextAndNpy) {
  EXPECT_EQ(read_labels(file("l.txt", "3\n 1 \n\n2\r\n").string()), (std::vector<int64_t>{3, 1, 2}));
  EXPECT_MENTIONS(error_of_labels(file("bad.txt", "1\ncat\n")), "bad.txt:2", "cat");
  EXPECT_EQ(read_labels(npy("u8.npy", Tensor::from_vector<uint8_t>({1, 7}, {2})).string()),
            (std::vector<int64_t>{1, 7}));
  EXPECT_EQ(read_labels(npy("i16.npy", Tensor::from_vector<int16_t>({-1, 5}, {2, 1})).string()),
            (std::vector<int64_t>{-1, 5}));
  EXPECT_MENTIONS(error_of_labels(npy("f.npy", Tensor::from_vector<float>({1}, {1}))), "f.npy", "integers");
  EXPECT_MENTIONS(error_of_labels(file("e.txt", "\n")), "e.txt", "no labels");
  EXPECT_MENTIONS(error_of_labels(dir_ / "missing.txt"), "missing.txt");
}

// ---- Images --------------------------------------------------------------------

TEST_F(DatasetTest, ImagePngGrayFolder) {
  png("imgs/b.png", 4, 2, 1, {0, 51, 102, 153, 204, 255, 0, 0});
  png("imgs/a.png", 4, 2, 1, std::vector<uint8_t>(8, 255));
  const auto samples = read_all(dir_ / "imgs", {input("x", {-1, 1, 2, 4})});
  ASSERT_EQ(samples.size(), 2u);
  EXPECT_EQ(samples[0].at("x").to_float_vector(), std::vector<float>(8, 1.0f));
  const auto b = samples[1].at("x").to_float_vector();
  EXPECT_FLOAT_EQ(b[1], 0.2f);
  EXPECT_FLOAT_EQ(b[5], 1.0f);
  // A [N,H,W] input takes gray images too.
  EXPECT_EQ(read_all(dir_ / "imgs" / "b.png", {input("x", {-1, 2, 4})})[0].at("x").shape(), (Shape{1, 2, 4}));
}

TEST_F(DatasetTest, ImageRgbLayoutsAndMeanStd) {
  // 2x2 RGB: pixel (y, x) = (10 * (2y + x), 100, 200).
  std::vector<uint8_t> pixels(12);
  for (size_t i = 0; i < 4; ++i) {
    pixels[3 * i] = static_cast<uint8_t>(10 * i);
    pixels[3 * i + 1] = 100;
    pixels[3 * i + 2] = 200;
  }
  png("rgb/0.png", 2, 2, 3, pixels);
  DatasetOptions options;
  options.preprocess = parse_preprocess("mean=0:0.5:0,std=1:1:2");
  const auto nchw = read_all(dir_ / "rgb", {input("x", {1, 3, 2, 2})}, options)[0].at("x").to_float_vector();
  EXPECT_FLOAT_EQ(nchw[3], 30 / 255.0f);          // channel 0, pixel (1,1)
  EXPECT_FLOAT_EQ(nchw[4], 100 / 255.0f - 0.5f);  // channel 1, pixel (0,0)
  EXPECT_FLOAT_EQ(nchw[8], 200 / 255.0f / 2);     // channel 2
  options.preprocess.layout = Layout::kNHWC;
  const auto nhwc = read_all(dir_ / "rgb", {input("x", {1, 2, 2, 3})}, options)[0].at("x").to_float_vector();
  EXPECT_FLOAT_EQ(nhwc[9], 30 / 255.0f);  // pixel (1,1), channel 0
  EXPECT_FLOAT_EQ(nhwc[1], 100 / 255.0f - 0.5f);
}

TEST_F(DatasetTest, ImageGrayRgbConversions) {
  png("g/0.png", 1, 1, 1, {90});
  const auto rgb = read_all(dir_ / "g", {input("x", {1, 3, 1, 1})})[0].at("x").to_float_vector();
  EXPECT_EQ(rgb, std::vector<float>(3, 90 / 255.0f));
  png("c/0.png", 1, 1, 3, {100, 200, 50});
  const auto gray = read_all(dir_ / "c", {input("x", {1, 1, 1, 1})})[0].at("x").to_float_vector();
  EXPECT_NEAR(gray[0], (0.299f * 100 + 0.587f * 200 + 0.114f * 50) / 255.0f, 1e-6f);
}

TEST_F(DatasetTest, ImagePngAlphaIsCompositedOnBlack) {
  const fs::path p = dir_ / "a" / "0.png";
  fs::create_directories(p.parent_path());
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = 2;
  image.height = 1;
  image.format = PNG_FORMAT_RGBA;
  const uint8_t pixels[] = {255, 0, 0, 255, 255, 0, 0, 0};  // opaque red, transparent red
  ASSERT_TRUE(png_image_write_to_file(&image, p.string().c_str(), 0, pixels, 0, nullptr));
  const auto v = read_all(dir_ / "a", {input("x", {1, 3, 1, 2})})[0].at("x").to_float_vector();
  EXPECT_EQ(v, (std::vector<float>{1, 0, 0, 0, 0, 0}));
}

TEST_F(DatasetTest, ImageJpegRgbAndGray) {
  jpeg("j/0.jpg", 8, 8, 3, [] {
    std::vector<uint8_t> p(64 * 3);
    for (size_t i = 0; i < p.size(); i += 3) p[i] = 200, p[i + 1] = 40, p[i + 2] = 120;
    return p;
  }());
  jpeg("j/1.JPEG", 8, 8, 1, std::vector<uint8_t>(64, 77));
  const auto samples = read_all(dir_ / "j", {input("x", {-1, 3, 8, 8})});
  ASSERT_EQ(samples.size(), 2u);
  const auto a = samples[0].at("x").to_float_vector();
  EXPECT_NEAR(a[0], 200 / 255.0f, 3 / 255.0f);
  EXPECT_NEAR(a[64], 40 / 255.0f, 3 / 255.0f);
  EXPECT_NEAR(a[128], 120 / 255.0f, 3 / 255.0f);
  EXPECT_NEAR(samples[1].at("x").to_float_vector()[100], 77 / 255.0f, 1 / 255.0f);
}

TEST_F(DatasetTest, ImageResizeAndCenterCrop) {
  // 4x8 (HxW) gray image of 2x2 blocks, values 10 * block column.
  std::vector<uint8_t> pixels(32);
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 8; ++x) pixels[static_cast<size_t>(y * 8 + x)] = static_cast<uint8_t>(10 * (x / 2));
  }
  png("r/0.png", 8, 4, 1, pixels);
  DatasetOptions options;
  options.preprocess = parse_preprocess("resize=2,crop=2");
  // Resized to 2x4 (each output pixel the average of one block), cropped to
  // the middle two columns: blocks 1 and 2.
  const auto out = read_all(dir_ / "r", {input("x", {-1, 1, -1, -1})}, options)[0].at("x");
  EXPECT_EQ(out.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(out.to_float_vector(), (std::vector<float>{10 / 255.0f, 20 / 255.0f, 10 / 255.0f, 20 / 255.0f}));
  // Without crop=, the model's H x W is the crop.
  options.preprocess = parse_preprocess("resize=2");
  EXPECT_EQ(read_all(dir_ / "r", {input("x", {-1, 1, 2, 2})}, options)[0].at("x").to_float_vector(),
            out.to_float_vector());
}

TEST_F(DatasetTest, ImageErrorsNameTheFile) {
  png("i/0.png", 4, 4, 1, std::vector<uint8_t>(16));
  EXPECT_MENTIONS(error_of(dir_ / "i", {input("x", {1, 1, 8, 8})}), "0.png", "smaller than the crop");
  EXPECT_MENTIONS(error_of(dir_ / "i", {input("x", {1, 2, 4, 4})}), "0.png", "2 channels");
  EXPECT_MENTIONS(error_of(dir_ / "i", {input("x", {1, 1, 4, 4}), input("y", {1})}), "one input", "x, y");
  EXPECT_MENTIONS(error_of(dir_ / "i", {input("x", {1, 1, 4, 4}, DType::kInt64)}), "0.png", "int64");
  file("bad/0.png", "\x89PNG\r\n\x1a\n truncated");
  EXPECT_MENTIONS(error_of(dir_ / "bad", {input("x", {1, 1, 4, 4})}), "0.png", "bad PNG");
  file("badj/0.jpg", "\xff\xd8\xff\xe0 truncated");
  EXPECT_MENTIONS(error_of(dir_ / "badj", {input("x", {1, 1, 4, 4})}), "0.jpg", "bad JPEG");
  file("none/a.txt", "x");
  EXPECT_MENTIONS(error_of(dir_ / "none", {input("x", {1})}), "none", "no .npy");
}

// ---- parse_preprocess ---------------------------------------------------------

TEST(PreprocessTest, ParsesEveryKey) {
  const Preprocess p = parse_preprocess("resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,layout=nhwc");
  EXPECT_EQ(p.resize, 256);
  EXPECT_EQ(p.crop, 224);
  EXPECT_EQ(p.mean, (std::vector<float>{0.485f, 0.456f, 0.406f}));
  EXPECT_EQ(p.std, (std::vector<float>{0.229f, 0.224f, 0.225f}));
  EXPECT_EQ(p.layout, Layout::kNHWC);
  EXPECT_EQ(parse_preprocess("").resize, 0);
}

TEST(PreprocessTest, BadItemsAreNamed) {
  for (const std::string spec : {"resize=abc", "crop=-1", "size=3", "mean=1:x", "std=0", "layout=chw", "resize"}) {
    try {
      parse_preprocess(spec);
      ADD_FAILURE() << spec;
    } catch (const Error& e) {
      const std::string item = spec.substr(0, spec.find('=') == std::string::npos ? spec.size() : spec.find('='));
      EXPECT_NE(std::string(e.what()).find(item), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace kvant
