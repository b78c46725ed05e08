// The shaping and dtype rules of io/dataset_internal.h.
#include <cstring>
#include <optional>

#include "io/dataset_internal.h"

namespace kvant {

void data_error(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

std::string describe_input(const ValueInfo& input) {
  return "input \"" + input.name + "\" (" + input.type.to_string() + ")";
}

namespace {

bool batch_dim_free(const ValueInfo& input) {
  const auto& dims = input.type.dims;
  return !dims.empty() && (!dims[0].known() || dims[0].value == 1);
}

// E for an array of shape `found` (see plan_samples in the header), or nullopt
// when an unknown dim cannot be taken from `found`.
std::optional<Shape> resolve_sample_shape(const ValueInfo& input, Shape found) {
  const auto& dims = input.type.dims;
  if (batch_dim_free(input) && found.size() + 1 == dims.size()) found.insert(found.begin(), 1);
  Shape shape(dims.size());
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i].known()) {
      shape[i] = dims[i].value;
    } else if (i == 0) {
      shape[i] = 1;
    } else if (found.size() == dims.size()) {
      shape[i] = found[i];
    } else {
      return std::nullopt;
    }
  }
  return shape;
}

// The per-sample shape for messages: unknown dims other than the batch by name.
std::string expected_text(const ValueInfo& input) {
  std::string s = "[";
  const auto& dims = input.type.dims;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    if (dims[i].known()) {
      s += std::to_string(dims[i].value);
    } else if (i == 0) {
      s += '1';
    } else {
      s += dims[i].param.empty() ? "?" : dims[i].param;
    }
  }
  return s + "]";
}

}  // namespace

void check_dtype(DType found, const ValueInfo& input, const std::string& where) {
  const DType want = input.type.dtype;
  if (want == DType::kUndefined || want == found) return;
  if (want == DType::kFloat32 && (found == DType::kFloat64 || found == DType::kFloat16)) return;
  data_error(where + ": dtype " + dtype_name(found) + ", but input \"" + input.name + "\" expects " + dtype_name(want));
}

SamplePlan plan_samples(const Tensor& array, const ValueInfo& input, const std::string& where, bool allow_batch) {
  check_dtype(array.dtype(), input, where);
  if (!input.type.has_shape) return {1, array.shape()};
  if (auto shape = resolve_sample_shape(input, array.shape()); shape && checked_numel(*shape) == array.numel()) {
    return {1, *shape};
  }
  if (allow_batch && array.rank() >= 1 && array.dim(0) > 1) {
    const Shape rest(array.shape().begin() + 1, array.shape().end());
    Shape candidate = rest;
    if (array.rank() == static_cast<int>(input.type.dims.size())) candidate.insert(candidate.begin(), 1);
    if (auto shape = resolve_sample_shape(input, candidate);
        shape && checked_numel(*shape) * array.dim(0) == array.numel()) {
      return {array.dim(0), *shape};
    }
  }
  std::string message = where + ": shape " + shape_to_string(array.shape()) + " does not fit " + describe_input(input) +
                        "; expected " + expected_text(input) + " per sample";
  if (allow_batch) message += ", or a batch [n," + expected_text(input).substr(1);
  data_error(message);
}

Tensor take_sample(const Tensor& array, const SamplePlan& plan, int64_t index, const ValueInfo& input) {
  Tensor sample;
  if (plan.count == 1) {
    sample = array.reshaped(plan.sample_shape);
  } else {
    sample = Tensor(array.dtype(), plan.sample_shape);
    const size_t bytes = sample.nbytes();
    std::memcpy(sample.raw(), static_cast<const std::byte*>(array.raw()) + static_cast<size_t>(index) * bytes, bytes);
  }
  if (input.type.dtype == DType::kFloat32 && sample.dtype() != DType::kFloat32) {
    return Tensor::from_vector(sample.to_float_vector(), sample.shape());
  }
  return sample;
}

}  // namespace kvant
