#include "runtime/steps_conv.h"

namespace kvant {

bool conv_facts(const Node& node, QConvFacts& facts) {
  if (node.inputs.size() < 2) return false;
  const std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  if (!kernel.empty() && kernel.size() != 2) return false;
  facts.strides = node.attr_ints("strides", {1, 1});
  facts.dilations = node.attr_ints("dilations", {1, 1});
  facts.pads = node.attr_ints("pads", {0, 0, 0, 0});
  facts.auto_pad = node.attr_string("auto_pad", "NOTSET");
  facts.group = node.attr_int("group", 1);
  if (facts.strides.size() != 2 || facts.dilations.size() != 2 || facts.pads.size() != 4 || facts.group < 1)
    return false;
  for (int64_t v : facts.strides)
    if (v < 1) return false;
  for (int64_t v : facts.dilations)
    if (v < 1) return false;
  for (int64_t v : facts.pads)
    if (v < 0) return false;
  return facts.auto_pad == "NOTSET" || facts.auto_pad == "VALID" || facts.auto_pad == "SAME_UPPER" ||
         facts.auto_pad == "SAME_LOWER";
}

std::unique_ptr<Step> make_qconv_step(const QConvFacts&, const QuantScalar&, const QuantScalar&,
                                      const std::vector<int8_t>&, const Shape&, const std::vector<float>&,
                                      const std::vector<int32_t>&, const std::vector<int32_t>&, const FloatClamp&,
                                      Isa) {
  return nullptr;  // until the INT8 conv kernels land
}

std::unique_ptr<Step> make_sconv_step(const QConvFacts&, const Tensor&, const Tensor*, const FloatClamp&) {
  return nullptr;  // until the FP32 conv kernels land
}

}  // namespace kvant
