// The public C++ API (include/kvant/kvant.h): errors come back as Status
// naming the problem, never as a crash or an exception; the three ways to
// run give the same bytes; quantize_static with a caller's reader writes what
// `kvant quantize --calib` writes for the same data.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "alloc_counter.h"
#include "io/dataset.h"
#include "kvant/kvant.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "quant/quantize.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

const std::string kRoot = KVANT_SOURCE_DIR;
const std::string kCnn = kRoot + "/models/fashion_mnist_cnn.onnx";
std::string sample_path(int i) { return kRoot + "/models/samples/fashion_mnist_" + std::to_string(i) + ".npy"; }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

OwnedTensor sample(int i) {
  auto t = load_npy(sample_path(i));
  EXPECT_TRUE(t.ok()) << t.status().message();
  return *t;
}

std::vector<uint8_t> bytes_of(const OwnedTensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// The three samples, in order; rewind() says whether it can start over.
class SampleReader : public CalibrationDataReader {
 public:
  explicit SampleReader(bool can_rewind) : can_rewind_(can_rewind) {}
  std::optional<Tensors> get_next() override {
    if (next_ >= 3) return std::nullopt;
    ++calls_;
    return Tensors{{"image", sample(next_++)}};
  }
  bool rewind() override {
    if (can_rewind_) next_ = 0;
    return can_rewind_;
  }
  int calls_ = 0;

 private:
  bool can_rewind_;
  int next_ = 0;
};

TEST(Api, LoadErrorsNameTheProblem) {
  auto missing = OnnxModel::load("/nonexistent/model.onnx");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.status().message(), "/nonexistent/model.onnx")) << missing.status().message();

  const std::string junk = "this is not a protobuf model";
  auto corrupt = OnnxModel::load_from_bytes(junk.data(), junk.size(), {}, "junk.onnx");
  ASSERT_FALSE(corrupt.ok());
  EXPECT_EQ(corrupt.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(corrupt.status().message().rfind("junk.onnx", 0), 0u) << corrupt.status().message();

  auto null_bytes = OnnxModel::load_from_bytes(nullptr, 10);
  EXPECT_FALSE(null_bytes.ok());

  OnnxModel empty;
  EXPECT_FALSE(Session::create(empty).ok());
  EXPECT_TRUE(contains(empty.save("/tmp/never.onnx").message(), "empty"));
}

TEST(Api, ModelDescribesItsInputsAndOutputs) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok()) << model.status().message();
  ASSERT_EQ(model->inputs().size(), 1u);
  const TensorInfo& in = model->inputs()[0];
  EXPECT_EQ(in.name, "image");
  EXPECT_EQ(in.dtype, DataType::kFloat32);
  EXPECT_EQ(in.shape, (std::vector<int64_t>{-1, 1, 28, 28}));
  EXPECT_EQ(in.dim_names[0], "N");
  ASSERT_EQ(model->outputs().size(), 1u);
  EXPECT_EQ(model->outputs()[0].name, "logits");
  EXPECT_FALSE(model->is_quantized());

  // The same model from its bytes.
  std::ifstream file(kCnn, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  auto from_bytes = OnnxModel::load_from_bytes(bytes.data(), bytes.size());
  ASSERT_TRUE(from_bytes.ok()) << from_bytes.status().message();
  EXPECT_EQ(from_bytes->inputs()[0].shape, in.shape);
  auto a = model->to_bytes(), b = from_bytes->to_bytes();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
}

TEST(Api, CallerBuffersAndZeroCopyGiveTheReturnedTensors) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  auto session = Session::create(*model);
  ASSERT_TRUE(session.ok()) << session.status().message();
  const OwnedTensor input = sample(0);

  auto returned = session->run({{"image", input.view()}});
  ASSERT_TRUE(returned.ok()) << returned.status().message();
  const OwnedTensor& logits = returned->at("logits");
  ASSERT_EQ(logits.shape(), (std::vector<int64_t>{1, 10}));

  std::vector<float> buffer(10, -1.0f);
  Status s = session->run({{"image", input.view()}},
                          {{"logits", MutableTensorView{buffer.data(), DataType::kFloat32, {1, 10}}}});
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(std::memcmp(buffer.data(), logits.data(), 40), 0);

  ASSERT_TRUE(session->prepare({{"image", {1, 1, 28, 28}}}).ok());
  auto in_buffer = session->input_buffer("image");
  ASSERT_TRUE(in_buffer.ok()) << in_buffer.status().message();
  ASSERT_EQ(in_buffer->shape, input.shape());
  std::memcpy(in_buffer->data, input.data(), input.nbytes());
  ASSERT_TRUE(session->run().ok());
  auto out_buffer = session->output_buffer("logits");
  ASSERT_TRUE(out_buffer.ok());
  EXPECT_EQ(std::memcmp(out_buffer->data, logits.data(), 40), 0);
  // Zero copy: the next run reads the same bytes and writes in place,
  // allocating nothing.
  const long before = test::allocation_count();
  ASSERT_TRUE(session->run().ok());
  EXPECT_EQ(test::allocation_count(), before);
  EXPECT_EQ(session->input_buffer("image")->data, in_buffer->data);
  EXPECT_EQ(session->output_buffer("logits")->data, out_buffer->data);
  EXPECT_EQ(std::memcmp(out_buffer->data, logits.data(), 40), 0);

  // A batch of two after a batch of one: planned again.
  auto pair = OwnedTensor::create(DataType::kFloat32, {2, 1, 28, 28});
  ASSERT_TRUE(pair.ok());
  std::memcpy(pair->data(), input.data(), input.nbytes());
  std::memcpy(static_cast<char*>(pair->data()) + input.nbytes(), sample(1).data(), input.nbytes());
  auto both = session->run({{"image", pair->view()}});
  ASSERT_TRUE(both.ok()) << both.status().message();
  EXPECT_EQ(std::memcmp(both->at("logits").data(), logits.data(), 40), 0);

  // The reference executor agrees within float rounding.
  SessionOptions reference;
  reference.reference = true;
  auto ref = Session::create(*model, reference);
  ASSERT_TRUE(ref.ok());
  auto ref_out = ref->run({{"image", input.view()}});
  ASSERT_TRUE(ref_out.ok());
  for (int k = 0; k < 10; ++k) {
    EXPECT_NEAR(ref_out->at("logits").data_as<float>()[k], logits.data_as<float>()[k], 1e-4f);
  }
  EXPECT_FALSE(ref->prepare({{"image", {1, 1, 28, 28}}}).ok());
}

TEST(Api, BadFeedsAreStatusesNotCrashes) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  auto session = Session::create(*model);
  ASSERT_TRUE(session.ok());
  const OwnedTensor input = sample(0);

  auto wrong_name = session->run({{"pixels", input.view()}});
  ASSERT_FALSE(wrong_name.ok());
  EXPECT_TRUE(contains(wrong_name.status().message(), "image")) << wrong_name.status().message();

  auto wrong_shape = session->run({{"image", TensorView{input.data(), DataType::kFloat32, {1, 28, 28, 1}}}});
  ASSERT_FALSE(wrong_shape.ok());
  EXPECT_TRUE(contains(wrong_shape.status().message(), "image")) << wrong_shape.status().message();

  auto wrong_type = session->run({{"image", TensorView{input.data(), DataType::kInt32, {1, 1, 28, 28}}}});
  EXPECT_FALSE(wrong_type.ok());
  auto null_data = session->run({{"image", TensorView{nullptr, DataType::kFloat32, {1, 1, 28, 28}}}});
  ASSERT_FALSE(null_data.ok());
  EXPECT_TRUE(contains(null_data.status().message(), "null")) << null_data.status().message();
  auto bad_type_code = session->run({{"image", TensorView{input.data(), static_cast<DataType>(99), {1}}}});
  EXPECT_FALSE(bad_type_code.ok());
  auto missing = session->run(Feeds{});
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.status().message(), "image")) << missing.status().message();

  // Output buffers: an unknown name, or a wrong shape, writes nothing.
  std::vector<float> buffer(10, -1.0f);
  Status unknown = session->run({{"image", input.view()}},
                                {{"probs", MutableTensorView{buffer.data(), DataType::kFloat32, {1, 10}}}});
  EXPECT_EQ(unknown.code(), ErrorCode::kNotFound);
  EXPECT_TRUE(contains(unknown.message(), "logits")) << unknown.message();
  Status short_buffer = session->run({{"image", input.view()}},
                                     {{"logits", MutableTensorView{buffer.data(), DataType::kFloat32, {1, 5}}}});
  ASSERT_FALSE(short_buffer.ok());
  EXPECT_TRUE(contains(short_buffer.message(), "float32[1,10]")) << short_buffer.message();
  EXPECT_EQ(buffer[0], -1.0f);

  EXPECT_EQ(session->input_index("nope").status().code(), ErrorCode::kNotFound);
  EXPECT_EQ(*session->output_index("logits"), 0u);

  SessionOptions bad_isa;
  bad_isa.isa = "avx9000";
  auto no_isa = Session::create(*model, bad_isa);
  ASSERT_FALSE(no_isa.ok());
  EXPECT_TRUE(contains(no_isa.status().message(), "avx9000")) << no_isa.status().message();
  SessionOptions no_threads;
  no_threads.threads = 0;
  EXPECT_FALSE(Session::create(*model, no_threads).ok());

  EXPECT_FALSE(OwnedTensor::create(DataType::kFloat32, {2, -1}).ok());
  EXPECT_FALSE(byte_size(DataType::kUndefined, {1}).ok());
  EXPECT_EQ(*byte_size(DataType::kInt4, {3}), 2u);
}

TEST(Api, CheckInputNamesTheMismatch) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  const TensorInfo& image = model->inputs()[0];  // float32[N,1,28,28]
  const OwnedTensor input = sample(0);
  std::map<std::string, int64_t> dims;
  EXPECT_TRUE(check_input(image, input.view(), &dims).ok());
  EXPECT_EQ(dims.at("N"), 1);
  Status rank = check_input(image, TensorView{input.data(), DataType::kFloat32, {1, 784}});
  EXPECT_TRUE(contains(rank.message(), "input \"image\": expected float32[N,1,28,28], got float32[1,784] (wrong rank)"))
      << rank.message();
  Status dim = check_input(image, TensorView{input.data(), DataType::kFloat32, {1, 1, 28, 27}});
  EXPECT_TRUE(contains(dim.message(), "dimension 3 differs")) << dim.message();
  // N was bound to 1 by the first input checked.
  Status batch = check_input(image, TensorView{input.data(), DataType::kFloat32, {0, 1, 28, 28}}, &dims);
  EXPECT_TRUE(contains(batch.message(), "\"N\" is 1 in another input")) << batch.message();
}

TEST(Api, DistinctSessionsRunConcurrently) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  const OwnedTensor input = sample(2);
  auto one = Session::create(*model);
  ASSERT_TRUE(one.ok());
  auto expected = one->run({{"image", input.view()}});
  ASSERT_TRUE(expected.ok());
  std::vector<std::vector<uint8_t>> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      auto session = Session::create(*model);
      if (!session.ok()) return;
      for (int k = 0; k < 5; ++k) {
        auto out = session->run({{"image", input.view()}});
        if (out.ok()) results[t] = bytes_of(out->at("logits"));
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : results) EXPECT_EQ(r, bytes_of(expected->at("logits")));
}

TEST(Api, QuantizeStaticWithAReaderWritesWhatTheCommandWrites) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());
  SampleReader streaming(true), once(false);
  QuantizationReport report;
  auto a = quantize_static(*model, streaming, {}, &report);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(report.calibration_samples, 3);
  EXPECT_GT(report.quantized_nodes, 0);
  auto b = quantize_static(*model, once, {});
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(once.calls_, 3);  // read once, replayed from memory
  EXPECT_TRUE(a->is_quantized());

  // The command's steps (cmd_quantize.cc) on the same three files.
  const Model original = *load_onnx(kCnn);
  const Model fp32 = prepare_for_quantization(original);
  std::vector<ValueInfo> inputs = fp32.graph.inputs;
  auto data = open_dataset(kRoot + "/models/samples", inputs, DatasetOptions{});
  Model q = kvant::quantize_static(fp32, *data, QuantizeOptions{}, nullptr);
  q.graph.value_info.clear();
  compact_new_names(original, q);
  auto command = serialize_onnx(q);
  ASSERT_TRUE(command.ok());
  auto api_a = a->to_bytes(), api_b = b->to_bytes();
  ASSERT_TRUE(api_a.ok() && api_b.ok());
  EXPECT_EQ(*api_a, *command);
  EXPECT_EQ(*api_b, *command);

  // It runs, and saves.
  auto session = Session::create(*a);
  ASSERT_TRUE(session.ok()) << session.status().message();
  auto out = session->run({{"image", sample(0).view()}});
  ASSERT_TRUE(out.ok()) << out.status().message();
  const fs::path saved = fs::temp_directory_path() / ("kvant_api_test_" + std::to_string(::getpid()) + ".onnx");
  ASSERT_TRUE(a->save(saved.string()).ok());
  std::ifstream file(saved, std::ios::binary);
  const std::string on_disk((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  fs::remove(saved);
  EXPECT_EQ(on_disk, *command);

  // A quantized model is refused, naming what to do.
  auto twice = quantize_dynamic(*a);
  ASSERT_FALSE(twice.ok());
  EXPECT_TRUE(contains(twice.status().message(), "already quantized")) << twice.status().message();
}

TEST(Api, QuantizeErrorsAreStatuses) {
  auto model = OnnxModel::load(kCnn);
  ASSERT_TRUE(model.ok());

  struct Empty : CalibrationDataReader {
    std::optional<Tensors> get_next() override { return std::nullopt; }
  } empty;
  auto none = quantize_static(*model, empty);
  ASSERT_FALSE(none.ok());
  EXPECT_TRUE(contains(none.status().message(), "no samples")) << none.status().message();

  struct Throwing : CalibrationDataReader {
    std::optional<Tensors> get_next() override { throw std::runtime_error("camera unplugged"); }
  } throwing;
  auto thrown = quantize_static(*model, throwing);
  ASSERT_FALSE(thrown.ok());
  EXPECT_TRUE(contains(thrown.status().message(), "camera unplugged"));

  struct WrongName : CalibrationDataReader {
    std::optional<Tensors> get_next() override {
      if (done) return std::nullopt;
      done = true;
      return Tensors{{"pixels", sample(0)}};
    }
    bool done = false;
  } wrong_name;
  auto misnamed = quantize_static(*model, wrong_name);
  ASSERT_FALSE(misnamed.ok());
  EXPECT_TRUE(contains(misnamed.status().message(), "pixels")) << misnamed.status().message();

  SampleReader reader(true);
  QuantizationOptions bits;
  bits.bits = 8;
  auto wrong_mode = quantize_static(*model, reader, bits);
  ASSERT_FALSE(wrong_mode.ok());
  EXPECT_TRUE(contains(wrong_mode.status().message(), "bits")) << wrong_mode.status().message();
  QuantizationOptions exclude;
  exclude.exclude = {"NoSuchNode"};
  auto excluded = quantize_dynamic(*model, exclude);
  ASSERT_FALSE(excluded.ok());
  EXPECT_TRUE(contains(excluded.status().message(), "NoSuchNode")) << excluded.status().message();

  QuantizationReport report;
  auto dynamic = quantize_dynamic(*model, {}, &report);
  ASSERT_TRUE(dynamic.ok()) << dynamic.status().message();
  EXPECT_GT(report.quantized_nodes, 0);
  QuantizationOptions int8;
  int8.bits = 8;
  int8.group_size = 32;
  EXPECT_TRUE(quantize_weight_only(*model, int8).ok());
}

TEST(Api, NpyRoundTrip) {
  const OwnedTensor input = sample(1);
  const fs::path file = fs::temp_directory_path() / ("kvant_api_npy_" + std::to_string(::getpid()) + ".npy");
  ASSERT_TRUE(save_npy(file.string(), input.view()).ok());
  auto back = load_npy(file.string());
  fs::remove(file);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->shape(), input.shape());
  EXPECT_EQ(bytes_of(*back), bytes_of(input));
  auto missing = load_npy("/nonexistent.npy");
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(contains(missing.status().message(), "/nonexistent.npy"));
  auto copy = OwnedTensor::copy_of(input.view());
  ASSERT_TRUE(copy.ok());
  EXPECT_NE(copy->data(), input.data());
  EXPECT_EQ(bytes_of(*copy), bytes_of(input));
}

}  // namespace
}  // namespace kvant
