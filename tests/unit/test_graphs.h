// Small helpers for tests that build graphs by hand.
#pragma once

#include <random>

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

// A float32 tensor of `shape` drawn uniformly from [lo, hi).
inline Tensor uniform(Shape shape, std::mt19937& rng, float lo, float hi) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

}  // namespace kvant
