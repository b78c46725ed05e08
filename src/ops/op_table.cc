#include "ops/op_registry.h"

namespace kvant {

namespace {

constexpr std::span<const OpDef> (*kFamilies[])() = {
    unary_ops,  binary_ops,  activation_ops, cast_ops,  conv_ops,      gemm_ops,   pool_ops,         norm_ops,
    resize_ops, pad_ops,     tensor_ops,     shape_ops, gather_ops,    reduce_ops, control_flow_ops, rnn_ops,
    quant_ops,  qlinear_ops, contrib_ops,    nhwc_ops,  detection_ops, signal_ops, select_ops,       loss_ops,
};

}  // namespace

const OpDef* find_op(std::string_view domain, std::string_view op_type) {
  for (auto family : kFamilies) {
    for (const OpDef& def : family()) {
      if (def.op_type == op_type && def.domain == domain) return &def;
    }
  }
  return nullptr;
}

std::vector<const OpDef*> all_ops() {
  std::vector<const OpDef*> out;
  for (auto family : kFamilies) {
    for (const OpDef& def : family()) out.push_back(&def);
  }
  return out;
}

const Tensor& KernelContext::input(size_t i) const {
  if (!has_input(i)) fail("input " + std::to_string(i) + " is required but missing");
  return *inputs[i];
}

void KernelContext::set_output(size_t i, Tensor t) {
  if (i < outputs.size()) outputs[i] = std::move(t);
}

void KernelContext::fail(const std::string& message) const {
  throw Error(ErrorCode::kInvalidArgument, node.describe() + ": " + message);
}

void KernelContext::unsupported(const std::string& message) const {
  throw Error(ErrorCode::kUnsupported, node.describe() + ": " + message);
}

}  // namespace kvant
