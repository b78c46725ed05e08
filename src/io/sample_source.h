// A stream of model feeds (input name -> tensor): calibration samples for
// `kvant quantize`, evaluation samples for `kvant eval`. Readers of files on
// disk live in io/dataset.h; tests use VectorSource.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace kvant {

// Each next() yields one feed until it returns nullopt; reset() starts over.
// Implementations read lazily, so memory does not grow with the number of
// samples.
class SampleSource {
 public:
  virtual ~SampleSource() = default;
  virtual std::optional<std::map<std::string, Tensor>> next() = 0;
  virtual void reset() = 0;
  virtual int64_t size() const { return -1; }  // -1 when unknown
};

class VectorSource : public SampleSource {
 public:
  explicit VectorSource(std::vector<std::map<std::string, Tensor>> samples) : samples_(std::move(samples)) {}
  std::optional<std::map<std::string, Tensor>> next() override {
    if (pos_ >= samples_.size()) return std::nullopt;
    return samples_[pos_++];
  }
  void reset() override { pos_ = 0; }
  int64_t size() const override { return static_cast<int64_t>(samples_.size()); }

 private:
  std::vector<std::map<std::string, Tensor>> samples_;
  size_t pos_ = 0;
};

}  // namespace kvant
