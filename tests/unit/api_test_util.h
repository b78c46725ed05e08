// Shared by the API option and sensitivity tests (api_options_test.cc,
// api_sensitivity_test.cc): the bundled CNN and a reader of its three
// bundled samples.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <optional>
#include <string>

#include "kvant/kvant.h"

namespace kvant::api_test {

namespace fs = std::filesystem;

inline const std::string kRoot = KVANT_SOURCE_DIR;
inline const std::string kCnn = kRoot + "/models/fashion_mnist_cnn.onnx";

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The three samples in models/samples, as the CNN's "image" input.
class Samples : public CalibrationDataReader {
 public:
  std::optional<Tensors> get_next() override {
    if (next_ >= 3) return std::nullopt;
    auto t = load_npy(kRoot + "/models/samples/fashion_mnist_" + std::to_string(next_++) + ".npy");
    EXPECT_TRUE(t.ok()) << t.status().message();
    return Tensors{{"image", *t}};
  }

 private:
  int next_ = 0;
};

}  // namespace kvant::api_test
