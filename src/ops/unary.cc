#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

}  // namespace

std::span<const OpDef> unary_ops() { return {}; }

}  // namespace kvant
