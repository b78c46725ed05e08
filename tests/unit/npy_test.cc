#include "io/npy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

namespace kvant {
namespace {

namespace fs = std::filesystem;

// A .npy file from parts: version, header text (padded and '\n'-ended here
// unless `raw_header`), data bytes.
std::string make_npy(const std::string& header, const std::string& data, int major = 1, bool raw_header = false) {
  std::string h = header;
  if (!raw_header) {
    const size_t preamble = major == 1 ? 10 : 12;
    h.append((64 - (preamble + h.size() + 1) % 64) % 64, ' ');
    h.push_back('\n');
  }
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  const uint32_t len = static_cast<uint32_t>(h.size());
  out.push_back(static_cast<char>(len & 0xFF));
  out.push_back(static_cast<char>((len >> 8) & 0xFF));
  if (major != 1) {
    out.push_back(static_cast<char>((len >> 16) & 0xFF));
    out.push_back(static_cast<char>((len >> 24) & 0xFF));
  }
  return out + h + data;
}

std::string floats(std::initializer_list<float> values) {
  std::string s(values.size() * 4, '\0');
  size_t i = 0;
  for (float v : values) std::memcpy(&s[4 * i++], &v, 4);
  return s;
}

// Message of a failed parse; fails the test if the parse succeeded.
std::string parse_error(const std::string& bytes) {
  auto r = parse_npy(bytes, "x.npy");
  EXPECT_FALSE(r.ok()) << "parsed a malformed file";
  return r.ok() ? "" : r.status().message();
}

Tensor filled(DType dtype, Shape shape) {
  Tensor t(dtype, std::move(shape));
  auto* p = static_cast<unsigned char*>(t.raw());
  for (size_t i = 0; i < t.nbytes(); ++i) p[i] = static_cast<unsigned char>(i * 37 + 11);
  if (dtype == DType::kBool) {
    for (size_t i = 0; i < t.nbytes(); ++i) p[i] &= 1;
  }
  return t;
}

class NpyRoundTrip : public ::testing::TestWithParam<DType> {};

TEST_P(NpyRoundTrip, EncodesAndParsesEveryDtype) {
  for (const Shape& shape : {Shape{2, 3, 5}, Shape{7}, Shape{}, Shape{0, 4}}) {
    const Tensor t = filled(GetParam(), shape);
    auto bytes = encode_npy(t);
    ASSERT_TRUE(bytes.ok()) << bytes.status().message();
    // Data starts 64-byte aligned, as numpy writes it.
    const uint32_t header_len = static_cast<unsigned char>((*bytes)[8]) | static_cast<unsigned char>((*bytes)[9]) << 8;
    EXPECT_EQ((10 + header_len) % 64, 0u);
    auto back = parse_npy(*bytes);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->dtype(), t.dtype());
    EXPECT_EQ(back->shape(), t.shape());
    ASSERT_EQ(back->nbytes(), t.nbytes());
    EXPECT_EQ(std::memcmp(back->raw(), t.raw(), t.nbytes()), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(AllDtypes, NpyRoundTrip,
                         ::testing::Values(DType::kFloat32, DType::kFloat64, DType::kFloat16, DType::kInt8,
                                           DType::kUInt8, DType::kInt16, DType::kUInt16, DType::kInt32, DType::kUInt32,
                                           DType::kInt64, DType::kUInt64, DType::kBool),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Npy, HeaderTextMatchesNumpy) {
  auto bytes = encode_npy(filled(DType::kFloat32, {2, 3}));
  ASSERT_TRUE(bytes.ok());
  EXPECT_NE(bytes->find("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), std::string::npos);
  auto one = encode_npy(filled(DType::kInt8, {4}));
  ASSERT_TRUE(one.ok());
  EXPECT_NE(one->find("'descr': '|i1'"), std::string::npos);
  EXPECT_NE(one->find("'shape': (4,)"), std::string::npos);
}

TEST(Npy, ReadsVersions2And3AndPython2Longs) {
  for (int major : {2, 3}) {
    auto t = parse_npy(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", floats({1, 2}), major));
    ASSERT_TRUE(t.ok()) << t.status().message();
    EXPECT_EQ(t->data<float>()[1], 2.0f);
  }
  auto t = parse_npy(make_npy("{\"descr\": \"<f4\", \"shape\": (1L, 2L), \"fortran_order\": False}", floats({1, 2})));
  ASSERT_TRUE(t.ok()) << t.status().message();
  EXPECT_EQ(t->shape(), (Shape{1, 2}));
}

TEST(Npy, NormalisesBoolBytes) {
  auto t =
      parse_npy(make_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", std::string("\0\x05\x01", 3)));
  ASSERT_TRUE(t.ok()) << t.status().message();
  const auto* p = static_cast<const unsigned char*>(t->raw());
  EXPECT_EQ(p[0], 0);
  EXPECT_EQ(p[1], 1);
  EXPECT_EQ(p[2], 1);
}

TEST(Npy, MalformedFilesGiveClearErrors) {
  const std::string good_header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string data = floats({1, 2});
  const std::string good = make_npy(good_header, data);
  ASSERT_TRUE(parse_npy(good).ok());

  EXPECT_NE(parse_error("").find("magic"), std::string::npos);
  EXPECT_NE(parse_error("PK\x03\x04 a zip file, not npy").find("magic"), std::string::npos);
  EXPECT_NE(parse_error(good.substr(0, 8)).find("truncated"), std::string::npos);
  EXPECT_NE(parse_error(good.substr(0, 30)).find("truncated"), std::string::npos);
  EXPECT_NE(parse_error(good.substr(0, good.size() - 1)).find("needs 8 bytes"), std::string::npos);
  EXPECT_NE(parse_error(good + "x").find("needs 8 bytes"), std::string::npos);
  EXPECT_NE(parse_error(make_npy(good_header, data, 4)).find("version 4.0"), std::string::npos);

  std::string big_len = good;
  big_len[8] = '\xFF';
  big_len[9] = '\xFF';
  EXPECT_NE(parse_error(big_len).find("truncated"), std::string::npos);

  EXPECT_NE(
      parse_error(make_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", data)).find("fortran_order"),
      std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", data)).find("big-endian"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", data)).find("'<c8'"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<U3', 'fortran_order': False, 'shape': (1,), }", data)).find("'<U3'"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", data))
                .find("structured"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<f4', 'shape': (2,), }", data)).find("must have the keys"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", data))
                .find("unexpected key"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", data)).find("'('"),
            std::string::npos);
  EXPECT_NE(
      parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", data)).find("non-negative"),
      std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", data)).find("malformed"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } trailing", data))
                .find("after the dict"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy(std::string("{'descr': '<f4'\0, }", 19), data)).find("NUL"), std::string::npos);
  // Every message names the file.
  EXPECT_EQ(parse_error("").rfind("x.npy: ", 0), 0u);
}

TEST(Npy, HugeShapesAreRejectedWithoutAllocating) {
  const std::string data = floats({1, 2});
  // 2^40 * 2^40 elements overflows; 2^38 float32 elements is 1 TiB: within
  // the tensor limit, but the file does not hold it.
  EXPECT_NE(
      parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", data))
          .find("too large"),
      std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", data))
                .find("too large"),
            std::string::npos);
  EXPECT_NE(parse_error(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (16384, 16384, 1024), }", data))
                .find("needs"),
            std::string::npos);
  std::string many_dims = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 70; ++i) many_dims += "1,";
  EXPECT_NE(parse_error(make_npy(many_dims + "), }", data)).find("64 dimensions"), std::string::npos);
}

TEST(Npy, FilesWriteAtomicallyAndReadBack) {
  const fs::path dir = fs::temp_directory_path() / ("kvant_npy_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const Tensor t = filled(DType::kFloat32, {3, 4});
  ASSERT_TRUE(write_npy(dir / "a.npy", t).ok());
  ASSERT_TRUE(write_npy(dir / "a.npy", t).ok());  // replaces
  auto back = read_npy(dir / "a.npy");
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(std::memcmp(back->raw(), t.raw(), t.nbytes()), 0);
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) ++files;
  EXPECT_EQ(files, 1u) << "a temporary file was left behind";

  Status bad = write_npy(dir / "missing_folder" / "b.npy", t);
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("b.npy"), std::string::npos);
  EXPECT_EQ(write_npy(dir / "c.npy", Tensor(DType::kBFloat16, {2})).code(), ErrorCode::kUnsupported);

  auto missing = read_npy(dir / "nope.npy");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.npy: no such file"), std::string::npos);
  {
    std::ofstream(dir / "trunc.npy", std::ios::binary) << make_npy(
        "{'descr': '<f4', 'fortran_order': False, "
        "'shape': (1000,), }",
        floats({1}));
  }
  auto trunc = read_npy(dir / "trunc.npy");
  ASSERT_FALSE(trunc.ok());
  EXPECT_NE(trunc.status().message().find("truncated"), std::string::npos);
  { std::ofstream(dir / "empty.npy", std::ios::binary); }
  EXPECT_FALSE(read_npy(dir / "empty.npy").ok());
  EXPECT_FALSE(read_npy(dir).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvant
