// classify: compile an image classifier with kvant and print its top 5.
//
//   classify MODEL.onnx IMAGE.npy [SCORES.npy] [--threads N]
//
// IMAGE.npy is the preprocessed image, as the model's input expects it (e.g.
// float32 [1,3,224,224], or [1,1,28,28] for models/fashion_mnist_cnn.onnx
// with models/samples/*.npy). The model may be FP32 or quantized (INT8 from
// `kvant quantize`). The scores are also written to SCORES.npy when given.
#include <kvant/kvant.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

namespace {

int fail(const kvant::Status& status) {
  std::fprintf(stderr, "classify: %s\n", status.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args;
  kvant::SessionOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) {
      options.threads = std::atoi(argv[++i]);
    } else {
      args.push_back(arg);
    }
  }
  if (args.size() < 2 || args.size() > 3) {
    std::fprintf(stderr, "usage: classify MODEL.onnx IMAGE.npy [SCORES.npy] [--threads N]\n");
    return 2;
  }

  auto model = kvant::OnnxModel::load(args[0]);
  if (!model.ok()) return fail(model.status());
  if (model->inputs().size() != 1) return fail(kvant::invalid_argument(args[0] + ": a classifier has one input"));
  auto session = kvant::Session::create(*model, options);
  if (!session.ok()) return fail(session.status());
  auto image = kvant::load_npy(args[1]);
  if (!image.ok()) return fail(image.status());

  // One input, one output: the class scores.
  auto outputs = session->run({{session->inputs()[0].name, image->view()}});
  if (!outputs.ok()) return fail(outputs.status());
  const std::string& name = session->outputs()[0].name;
  const kvant::OwnedTensor& scores = outputs->at(name);
  if (scores.dtype() != kvant::DataType::kFloat32) {
    return fail(kvant::invalid_argument("output \"" + name + "\" is " + kvant::data_type_name(scores.dtype()) +
                                        ", not float32 scores"));
  }
  if (args.size() == 3) {
    kvant::Status saved = kvant::save_npy(args[2], scores.view());
    if (!saved.ok()) return fail(saved);
  }

  // Top 5 of the first row, with softmax probabilities.
  const int64_t classes = scores.shape().empty() ? 1 : scores.shape().back();
  const float* row = scores.data_as<float>();
  std::vector<int64_t> order(static_cast<size_t>(classes));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return row[a] > row[b]; });
  const float top = row[order[0]];
  double sum = 0;
  for (int64_t k = 0; k < classes; ++k) sum += std::exp(static_cast<double>(row[k] - top));
  std::printf("%s: %s %s\n", args[1].c_str(), name.c_str(), scores.shape().size() ? "scores" : "score");
  for (size_t r = 0; r < order.size() && r < 5; ++r) {
    const int64_t k = order[r];
    std::printf("  #%zu  class %lld  score %.6f  p %.4f\n", r + 1, static_cast<long long>(k), row[k],
                std::exp(static_cast<double>(row[k] - top)) / sum);
  }
  return 0;
}
