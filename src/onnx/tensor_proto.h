// TensorProto <-> Tensor. Internal to src/onnx (includes the ONNX protos).
#pragma once

#include <filesystem>
#include <string>

#include "ir/tensor.h"
#include "onnx/onnx_pb.h"

namespace kvant {

// Throws Error(kInvalidArgument) when the proto's data does not match its
// dims, when external data is missing, escapes `base_dir` or is too short.
// Messages start with `<label> "<name>": ` (label: "tensor", "initializer",
// ...). Nothing is allocated before the bytes that back it have been seen, so
// dims that promise more data than the file holds cost no memory.
Tensor tensor_from_proto(const onnx::TensorProto& proto, const std::filesystem::path& base_dir,
                         const std::string& label = "tensor");

// Writes dims, data_type and raw_data.
void tensor_to_proto(const Tensor& tensor, onnx::TensorProto& proto);

}  // namespace kvant
