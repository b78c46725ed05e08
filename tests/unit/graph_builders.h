// Small builders shared by the tests that write graphs with subgraphs by
// hand (quantization inside If/Loop bodies): value infos with and without a
// type, normal random float tensors, cosine similarity, a graph attribute.
#pragma once

#include <cmath>
#include <memory>
#include <random>
#include <string>

#include "ir/graph.h"
#include "ir/tensor.h"

namespace kvant::test_graphs {

inline ValueInfo typed(const std::string& name, DType dtype, const Shape& shape) {
  ValueInfo v;
  v.name = name;
  v.type.dtype = dtype;
  v.type.has_shape = true;
  for (int64_t d : shape) v.type.dims.push_back(Dim{d, ""});
  return v;
}

inline ValueInfo untyped(const std::string& name) {
  ValueInfo v;
  v.name = name;
  return v;
}

inline Tensor random_tensor(const Shape& shape, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Tensor t(DType::kFloat32, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

inline double cosine(const Tensor& a, const Tensor& b) {
  double dot = 0, na = 0, nb = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double x = a.get_as_double(i), y = b.get_as_double(i);
    dot += x * y;
    na += x * x;
    nb += y * y;
  }
  return dot / std::sqrt(na * nb);
}

inline Attribute graph_attr(std::shared_ptr<Graph> g) {
  Attribute a;
  a.kind = Attribute::Kind::kGraph;
  a.g = std::move(g);
  return a;
}

}  // namespace kvant::test_graphs
