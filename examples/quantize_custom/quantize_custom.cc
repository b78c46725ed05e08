// quantize_custom: static INT8 quantization with calibration samples that
// your own C++ code produces, then a run of the quantized model.
//
//   quantize_custom MODEL.onnx OUT.int8.onnx INPUT.npy OUTPUT.npy CALIB.npy...
//   quantize_custom MODEL.onnx OUT.int8.onnx INPUT.npy OUTPUT.npy --random N
//
// The samples come from a kvant::CalibrationDataReader: here one that reads
// .npy files (one sample each, for a one-input model) or one that makes N
// seeded random samples of the input's shape. Anything that can produce
// tensors works the same way: a camera, a database, a data loader.
#include <kvant/kvant.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// One sample per .npy file, in the order given.
class NpyFilesReader : public kvant::CalibrationDataReader {
 public:
  NpyFilesReader(std::string input, std::vector<std::string> files)
      : input_(std::move(input)), files_(std::move(files)) {}

  std::optional<kvant::Tensors> get_next() override {
    if (next_ >= files_.size()) return std::nullopt;
    auto tensor = kvant::load_npy(files_[next_++]);
    // An exception from a reader becomes the Status of quantize_static.
    if (!tensor.ok()) throw std::runtime_error(tensor.status().message());
    return kvant::Tensors{{input_, *tensor}};
  }
  bool rewind() override {
    next_ = 0;
    return true;
  }

 private:
  std::string input_;
  std::vector<std::string> files_;
  size_t next_ = 0;
};

// `count` samples of uniform noise in [-1, 1), the same ones after rewind().
class RandomReader : public kvant::CalibrationDataReader {
 public:
  RandomReader(kvant::TensorInfo input, int count) : input_(std::move(input)), count_(count) {
    for (int64_t& d : input_.shape) d = d < 0 ? 1 : d;  // symbolic dims (the batch): 1
  }

  std::optional<kvant::Tensors> get_next() override {
    if (made_ >= count_) return std::nullopt;
    ++made_;
    auto tensor = kvant::OwnedTensor::create(kvant::DataType::kFloat32, input_.shape);
    if (!tensor.ok()) throw std::runtime_error(tensor.status().message());
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    float* data = tensor->data_as<float>();
    for (int64_t i = 0; i < tensor->numel(); ++i) data[i] = uniform(random_);
    return kvant::Tensors{{input_.name, *tensor}};
  }
  bool rewind() override {
    made_ = 0;
    random_.seed(1);
    return true;
  }

 private:
  kvant::TensorInfo input_;
  int count_;
  int made_ = 0;
  std::mt19937 random_{1};
};

int fail(const kvant::Status& status) {
  std::fprintf(stderr, "quantize_custom: %s\n", status.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr,
                 "usage: quantize_custom MODEL.onnx OUT.onnx INPUT.npy OUTPUT.npy (CALIB.npy... | --random N)\n");
    return 2;
  }
  const std::string model_path = argv[1], out_path = argv[2], input_path = argv[3], output_path = argv[4];

  auto model = kvant::OnnxModel::load(model_path);
  if (!model.ok()) return fail(model.status());
  if (model->inputs().size() != 1) return fail(kvant::invalid_argument(model_path + ": this example feeds one input"));
  const kvant::TensorInfo& input = model->inputs()[0];

  std::unique_ptr<kvant::CalibrationDataReader> reader;
  if (std::string(argv[5]) == "--random") {
    if (argc != 7) return fail(kvant::invalid_argument("--random needs a sample count"));
    reader = std::make_unique<RandomReader>(input, std::atoi(argv[6]));
  } else {
    reader = std::make_unique<NpyFilesReader>(input.name, std::vector<std::string>(argv + 5, argv + argc));
  }

  kvant::QuantizationOptions options;  // per-channel INT8 weights, uint8 activations, min/max ranges
  kvant::QuantizationReport report;
  auto quantized = kvant::quantize_static(*model, *reader, options, &report);
  if (!quantized.ok()) return fail(quantized.status());
  std::printf("quantized %lld nodes on %lld calibration samples; %zu left FP32\n",
              static_cast<long long>(report.quantized_nodes), static_cast<long long>(report.calibration_samples),
              report.kept_fp32.size() + report.fp32_reasons.size());
  for (const std::string& warning : report.warnings) std::printf("warning: %s\n", warning.c_str());
  kvant::Status saved = quantized->save(out_path);
  if (!saved.ok()) return fail(saved);

  // Run the quantized model, straight from memory.
  auto session = kvant::Session::create(*quantized);
  if (!session.ok()) return fail(session.status());
  auto sample = kvant::load_npy(input_path);
  if (!sample.ok()) return fail(sample.status());
  auto outputs = session->run({{input.name, sample->view()}});
  if (!outputs.ok()) return fail(outputs.status());
  const kvant::OwnedTensor& result = outputs->at(session->outputs()[0].name);
  kvant::Status written = kvant::save_npy(output_path, result.view());
  if (!written.ok()) return fail(written);
  std::printf("%s -> %s\n", out_path.c_str(), output_path.c_str());
  return 0;
}
