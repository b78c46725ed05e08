// The kvant IR: a Model holds a Graph of Nodes that read and write named
// values, as ONNX does. Values are identified by name; an empty input name
// marks an omitted optional input. After import, `nodes` is in topological
// order (the importer sorts and rejects cycles).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ir/tensor.h"

namespace kvant {

// One dimension of a static shape: a known size, or a symbol ("batch"), or
// unknown (neither).
struct Dim {
  int64_t value = -1;  // >= 0 when known
  std::string param;   // symbolic name, may be empty
  bool known() const { return value >= 0; }
};

struct TypeInfo {
  DType dtype = DType::kUndefined;
  bool has_shape = false;  // false: rank unknown
  std::vector<Dim> dims;
  std::string to_string() const;  // "float32[batch,3,224,224]"
};

struct ValueInfo {
  std::string name;
  TypeInfo type;
};

struct Graph;

struct Attribute {
  enum class Kind { kUndefined, kFloat, kInt, kString, kTensor, kGraph, kFloats, kInts, kStrings, kTensors, kGraphs };
  Kind kind = Kind::kUndefined;
  float f = 0;
  int64_t i = 0;
  std::string s;
  Tensor t;
  std::shared_ptr<Graph> g;
  std::vector<float> floats;
  std::vector<int64_t> ints;
  std::vector<std::string> strings;
  std::vector<Tensor> tensors;
  std::vector<std::shared_ptr<Graph>> graphs;
};

struct Node {
  std::string name;
  std::string op_type;
  std::string domain;  // "" is the default ONNX domain ("ai.onnx" is mapped to "")
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  std::map<std::string, Attribute> attributes;

  // `node "conv1" (Conv)`, for error messages.
  std::string describe() const;
  bool has_attr(const std::string& key) const { return attributes.count(key) != 0; }
  // Typed attribute access with a default; a present attribute of the wrong
  // kind throws Error naming the node and attribute.
  int64_t attr_int(const std::string& key, int64_t fallback) const;
  float attr_float(const std::string& key, float fallback) const;
  std::string attr_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> attr_ints(const std::string& key, std::vector<int64_t> fallback = {}) const;
  std::vector<float> attr_floats(const std::string& key, std::vector<float> fallback = {}) const;
  std::vector<std::string> attr_strings(const std::string& key, std::vector<std::string> fallback = {}) const;
  const Tensor* attr_tensor(const std::string& key) const;  // nullptr when absent
  const Graph* attr_graph(const std::string& key) const;    // nullptr when absent
  // Number of inputs actually given (trailing omitted ones not counted).
  size_t num_present_inputs() const;
};

struct Graph {
  std::string name;
  std::vector<Node> nodes;
  std::vector<ValueInfo> inputs;  // excludes inputs that are only initializers
  std::vector<ValueInfo> outputs;
  std::map<std::string, Tensor> initializers;
  std::map<std::string, ValueInfo> value_info;  // shapes known for intermediates

  const ValueInfo* find_input(const std::string& name) const;
  // Names of values read by this graph (recursively by its subgraphs) that it
  // does not define itself: the outer-scope values it captures.
  std::vector<std::string> captured_values() const;
};

struct Model {
  Graph graph;
  int64_t ir_version = 0;
  std::map<std::string, int64_t> opset_imports;  // domain ("" = ai.onnx) -> version
  std::string producer_name;
  std::string producer_version;
  std::filesystem::path source_path;  // where it was loaded from, if a file
  // Problems that did not stop the load (e.g. shape inference failed), for
  // the user to see; each names the file.
  std::vector<std::string> warnings;

  int64_t opset(const std::string& domain = "") const;  // 0 when not imported
};

// `text` with control characters (NUL, ESC, newlines: bytes < 0x20 and 0x7f)
// written as \xNN, so that a name from a model cannot forge or garble what
// kvant prints. Other bytes (UTF-8 included) pass unchanged.
std::string printable(std::string_view text);

// A node with no attributes, for graph rewrites and tests.
Node make_node(std::string name, std::string op_type, std::vector<std::string> inputs,
               std::vector<std::string> outputs);
// Attribute values, and setters built on them.
Attribute int_attr(int64_t value);
Attribute ints_attr(std::vector<int64_t> values);
Attribute float_attr(float value);
Attribute floats_attr(std::vector<float> values);
Attribute string_attr(std::string value);
Attribute strings_attr(std::vector<std::string> values);
// Sets an int / ints attribute.
void set_attr(Node& node, const std::string& key, int64_t value);
void set_attr(Node& node, const std::string& key, std::vector<int64_t> values);

// Topologically sorts graph.nodes in place (stable: keeps the file's order
// where it is already valid). Throws Error naming a node on a cycle or an
// input that nothing produces. `outer` lists values visible from enclosing
// scopes (for subgraphs).
void topological_sort(Graph& graph, const std::vector<std::string>& outer = {});

// A readable text dump, one node a line.
std::string print_graph(const Graph& graph);

}  // namespace kvant
