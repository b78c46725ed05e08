// Helpers for quantizing inside If/Loop/Scan bodies (design decision 25),
// shared by the dynamic and static algorithms (subgraphs.cc).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_set>
#include <vector>

#include "ir/graph.h"
#include "passes/pass.h"  // collect_names

namespace kvant {

// The bodies a node holds, each replaced by a copy first (a copied Model
// shares its subgraphs with the original, so a body is copied before it is
// changed).
std::vector<Graph*> unshare_bodies(Node& node);

// Copies every initializer of an enclosing graph (`outer`, outermost first)
// that `body` reads into `body` under a fresh name, re-points the reads, and
// folds the body's constant nodes (PyTorch slices and concatenates an LSTM's
// weights inside the body). Returns true if anything was copied.
bool localize_outer_constants(Graph& body, const std::vector<const Graph*>& outer, int64_t opset,
                              std::unordered_set<std::string>& used);

}  // namespace kvant
