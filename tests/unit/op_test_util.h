// Helpers for tests that run one reference operator on its own.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ops/op_registry.h"

namespace kvant {

// Runs one node of `op_type` at `opset`. An undefined Tensor in `inputs` is an
// omitted optional input.
inline std::vector<Tensor> run_op(const std::string& op_type, int64_t opset, const std::vector<Tensor>& inputs,
                                  std::map<std::string, Attribute> attrs = {}, size_t num_outputs = 1) {
  const OpDef* def = find_op("", op_type);
  if (def == nullptr) throw Error(ErrorCode::kNotFound, "no operator " + op_type);
  Node node;
  node.name = "n0";
  node.op_type = op_type;
  for (size_t i = 0; i < inputs.size(); ++i) node.inputs.push_back(inputs[i].defined() ? "in" + std::to_string(i) : "");
  for (size_t i = 0; i < num_outputs; ++i) node.outputs.push_back("out" + std::to_string(i));
  node.attributes = std::move(attrs);
  KernelContext ctx{node, opset, {}, {}, nullptr};
  for (const Tensor& t : inputs) ctx.inputs.push_back(t.defined() ? &t : nullptr);
  ctx.outputs.resize(num_outputs);
  def->run(ctx);
  return ctx.outputs;
}

inline Tensor ivec(std::vector<int64_t> v) {
  const auto n = static_cast<int64_t>(v.size());
  return Tensor::from_vector(v, {n});
}
// The message of the Error `fn` throws, with its code checked.
template <typename Fn>
std::string error_of(Fn&& fn, ErrorCode code = ErrorCode::kInvalidArgument) {
  try {
    fn();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no error thrown";
  return {};
}
}  // namespace kvant
