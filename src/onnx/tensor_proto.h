// TensorProto <-> Tensor. Internal to src/onnx (includes the ONNX protos).
#pragma once

#include <filesystem>

#include "ir/tensor.h"
#include "onnx/onnx_pb.h"

namespace kvant {

// Throws Error(kInvalidArgument) when the proto's data does not match its
// dims, when external data is missing, escapes `base_dir` or is too short.
Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::filesystem::path& base_dir);

// Writes dims, data_type and raw_data.
void tensor_to_proto(const Tensor& tensor, onnx::TensorProto& proto);

}  // namespace kvant
