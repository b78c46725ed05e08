// The SampleSource implementations behind open_dataset: groups of arrays
// (.npy, .npz, .pb), IDX images, and image files.

#include "io/dataset_internal.h"
#include "io/input_file.h"
#include "onnx/tensor_proto.h"

namespace kvant {

namespace {

class GroupSource : public SampleSource {
 public:
  GroupSource(std::vector<ValueInfo> inputs, std::vector<GroupLoader> groups, bool allow_batch)
      : inputs_(std::move(inputs)), groups_(std::move(groups)), allow_batch_(allow_batch) {
    if (!groups_.empty()) load(0);
  }

  std::optional<std::map<std::string, Tensor>> next() override {
    while (index_ >= count_) {
      if (group_ + 1 >= groups_.size()) return std::nullopt;
      load(group_ + 1);
    }
    std::map<std::string, Tensor> feed;
    for (size_t i = 0; i < inputs_.size(); ++i) {
      feed[inputs_[i].name] = take_sample(arrays_[i].tensor, plans_[i], index_, inputs_[i]);
    }
    ++index_;
    return feed;
  }

  void reset() override {
    if (groups_.empty()) return;
    if (group_ == 0) {
      index_ = 0;
    } else {
      load(0);
    }
  }

  int64_t size() const override {
    if (!allow_batch_) return static_cast<int64_t>(groups_.size());
    if (groups_.size() == 1) return count_;
    return -1;
  }

 private:
  void load(size_t group) {
    arrays_.clear();
    plans_.clear();
    arrays_ = groups_[group]();
    for (size_t i = 0; i < inputs_.size(); ++i) {
      plans_.push_back(plan_samples(arrays_[i].tensor, inputs_[i], arrays_[i].where, allow_batch_));
      if (plans_[i].count != plans_[0].count) {
        data_error(arrays_[i].where + ": " + std::to_string(plans_[i].count) + " samples for input \"" +
                   inputs_[i].name + "\", but " + arrays_[0].where + " has " + std::to_string(plans_[0].count) +
                   " for input \"" + inputs_[0].name + "\"");
      }
    }
    group_ = group;
    index_ = 0;
    count_ = plans_.empty() ? 0 : plans_[0].count;
  }

  std::vector<ValueInfo> inputs_;
  std::vector<GroupLoader> groups_;
  bool allow_batch_;
  size_t group_ = 0;
  int64_t index_ = 0, count_ = 0;
  std::vector<LoadedArray> arrays_;
  std::vector<SamplePlan> plans_;
};

// Every image of an IDX file is a sample: pixel / 255, then (x - mean) / std.
class IdxSource : public SampleSource {
 public:
  IdxSource(const std::filesystem::path& file, ValueInfo input, const Preprocess& preprocess)
      : name_(file.string()), input_(std::move(input)) {
    if (preprocess.mean.size() > 1 || preprocess.std.size() > 1) {
      data_error(name_ + ": IDX images have one channel, but preprocess gives several mean/std values");
    }
    mean_ = preprocess.mean.empty() ? 0.0f : preprocess.mean[0];
    std_ = preprocess.std.empty() ? 1.0f : preprocess.std[0];
    array_ = read_idx(file);
    if (array_.shape.size() < 2) {
      data_error(name_ + ": IDX array of shape " + shape_to_string(array_.shape) + " holds no images (a label file?)");
    }
    image_shape_.assign(array_.shape.begin() + 1, array_.shape.end());
    image_size_ = checked_numel(image_shape_);
    check_dtype(DType::kFloat32, input_, name_);
    plan_ = plan_samples(Tensor(DType::kFloat32, image_shape_), input_, name_, false);
  }

  std::optional<std::map<std::string, Tensor>> next() override {
    if (pos_ >= array_.shape[0]) return std::nullopt;
    Tensor image(DType::kFloat32, plan_.sample_shape);
    float* out = image.data<float>();
    const uint8_t* in = array_.data.data() + pos_ * image_size_;
    for (int64_t i = 0; i < image_size_; ++i) out[i] = (static_cast<float>(in[i]) / 255.0f - mean_) / std_;
    ++pos_;
    return std::map<std::string, Tensor>{{input_.name, image}};
  }
  void reset() override { pos_ = 0; }
  int64_t size() const override { return array_.shape[0]; }

 private:
  std::string name_;
  ValueInfo input_;
  float mean_ = 0, std_ = 1;
  IdxArray array_;
  Shape image_shape_;
  int64_t image_size_ = 0;
  SamplePlan plan_;
  int64_t pos_ = 0;
};

// One image file per sample, decoded when reached.
class ImageSource : public SampleSource {
 public:
  ImageSource(std::vector<std::filesystem::path> files, ValueInfo input, Preprocess preprocess)
      : files_(std::move(files)), input_(std::move(input)), preprocess_(std::move(preprocess)) {
    check_dtype(DType::kFloat32, input_, files_.front().string());
    first_ = make(0);  // errors in the first image, or in the setup, show at open
  }

  std::optional<std::map<std::string, Tensor>> next() override {
    if (pos_ >= files_.size()) return std::nullopt;
    Tensor sample = pos_ == 0 ? first_ : make(pos_);
    ++pos_;
    return std::map<std::string, Tensor>{{input_.name, sample}};
  }
  void reset() override { pos_ = 0; }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }

 private:
  Tensor make(size_t i) const {
    const std::string where = files_[i].string();
    Tensor t = preprocess_image(decode_image(files_[i]), preprocess_, input_, where);
    const SamplePlan plan = plan_samples(t, input_, where, false);
    return t.reshaped(plan.sample_shape);
  }

  std::vector<std::filesystem::path> files_;
  ValueInfo input_;
  Preprocess preprocess_;
  Tensor first_;
  size_t pos_ = 0;
};

}  // namespace

std::unique_ptr<SampleSource> make_group_source(std::vector<ValueInfo> inputs, std::vector<GroupLoader> groups,
                                                bool allow_batch) {
  return std::make_unique<GroupSource>(std::move(inputs), std::move(groups), allow_batch);
}

std::unique_ptr<SampleSource> make_idx_source(const std::filesystem::path& file, const ValueInfo& input,
                                              const Preprocess& preprocess) {
  return std::make_unique<IdxSource>(file, input, preprocess);
}

std::unique_ptr<SampleSource> make_image_source(std::vector<std::filesystem::path> files, const ValueInfo& input,
                                                const Preprocess& preprocess) {
  return std::make_unique<ImageSource>(std::move(files), input, preprocess);
}

LoadedArray load_pb(const std::filesystem::path& file, std::string* name) {
  const std::string bytes = InputFile(file).read_all();  // refuses FIFOs, devices
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) data_error(file.string() + ": not a serialized ONNX TensorProto");
  if (name) *name = proto.name();
  try {
    return {tensor_from_proto(proto, file.parent_path()), file.string()};
  } catch (const Error& e) {
    throw Error(e.code(), file.string() + ": " + e.what());
  }
}

}  // namespace kvant
