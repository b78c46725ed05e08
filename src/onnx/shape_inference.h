// ONNX type/shape information: conversion of TypeProto to kvant's TypeInfo,
// input-shape overrides, and ONNX's own shape inference (libonnx).
// Internal to src/onnx (includes the ONNX protos).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "onnx/onnx_pb.h"

namespace kvant {

TypeInfo type_from_proto(const onnx::TypeProto& type);
ValueInfo value_from_proto(const onnx::ValueInfoProto& value);

// Replaces the declared dims of the named graph inputs. Throws
// Error(kInvalidArgument) for a name that is not a graph input (listing the
// inputs), a rank that differs from the declared one, or a negative dim.
void override_input_shapes(onnx::ModelProto& model, const std::map<std::string, std::vector<int64_t>>& shapes);

// Runs ONNX shape inference on `model` in place. Never throws: returns an
// empty string on success, otherwise a warning saying why it failed.
std::string run_shape_inference(onnx::ModelProto& model);

// Copies the value_info of an inferred graph (and of its subgraphs, matched
// through the node that owns them) into `graph`; fills in graph output types
// the file left without dtype or shape.
void copy_inferred_types(const onnx::GraphProto& proto, Graph& graph);

}  // namespace kvant
