// Small helpers for tests that build graphs by hand.
#pragma once

#include "ir/graph.h"

namespace kvant {

// A known type: `dtype` with the static `shape`.
inline TypeInfo type_of(DType dtype, const Shape& shape) {
  TypeInfo t;
  t.dtype = dtype;
  t.has_shape = true;
  for (int64_t d : shape) t.dims.push_back(Dim{d, ""});
  return t;
}

}  // namespace kvant
