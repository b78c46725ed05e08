#include "ir/graph.h"

#include <algorithm>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace kvant {

std::string TypeInfo::to_string() const {
  std::string s = dtype_name(dtype);
  if (!has_shape) return s + "[?]";
  s += '[';
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += ',';
    if (dims[i].known()) {
      s += std::to_string(dims[i].value);
    } else {
      s += dims[i].param.empty() ? "?" : dims[i].param;
    }
  }
  return s + ']';
}

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  return out;
}

std::string Node::describe() const { return "node \"" + printable(name) + "\" (" + printable(op_type) + ")"; }

namespace {

const Attribute* find_kind(const Node& node, const std::string& key, Attribute::Kind kind, const char* kind_name) {
  auto it = node.attributes.find(key);
  if (it == node.attributes.end()) return nullptr;
  if (it->second.kind != kind) {
    throw Error(ErrorCode::kInvalidArgument, node.describe() + ": attribute \"" + key + "\" should be " + kind_name);
  }
  return &it->second;
}

}  // namespace

int64_t Node::attr_int(const std::string& key, int64_t fallback) const {
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kInt, "an int");
  return a ? a->i : fallback;
}
float Node::attr_float(const std::string& key, float fallback) const {
  auto it = attributes.find(key);
  if (it != attributes.end() && it->second.kind == Attribute::Kind::kInt) return static_cast<float>(it->second.i);
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kFloat, "a float");
  return a ? a->f : fallback;
}
std::string Node::attr_string(const std::string& key, const std::string& fallback) const {
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kString, "a string");
  return a ? a->s : fallback;
}
std::vector<int64_t> Node::attr_ints(const std::string& key, std::vector<int64_t> fallback) const {
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kInts, "a list of ints");
  return a ? a->ints : fallback;
}
std::vector<float> Node::attr_floats(const std::string& key, std::vector<float> fallback) const {
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kFloats, "a list of floats");
  return a ? a->floats : fallback;
}
std::vector<std::string> Node::attr_strings(const std::string& key, std::vector<std::string> fallback) const {
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kStrings, "a list of strings");
  return a ? a->strings : fallback;
}
const Tensor* Node::attr_tensor(const std::string& key) const {
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kTensor, "a tensor");
  return a ? &a->t : nullptr;
}
const Graph* Node::attr_graph(const std::string& key) const {
  const Attribute* a = find_kind(*this, key, Attribute::Kind::kGraph, "a graph");
  return a ? a->g.get() : nullptr;
}
size_t Node::num_present_inputs() const {
  size_t n = inputs.size();
  while (n > 0 && inputs[n - 1].empty()) --n;
  return n;
}

const ValueInfo* Graph::find_input(const std::string& key) const {
  for (const auto& v : inputs) {
    if (v.name == key) return &v;
  }
  return nullptr;
}

std::vector<std::string> Graph::captured_values() const {
  std::unordered_set<std::string> defined;
  for (const auto& v : inputs) defined.insert(v.name);
  for (const auto& [k, v] : initializers) defined.insert(k);
  for (const auto& n : nodes) {
    for (const auto& o : n.outputs) defined.insert(o);
  }
  std::set<std::string> captured;
  auto use = [&](const std::string& name) {
    if (!name.empty() && !defined.count(name)) captured.insert(name);
  };
  for (const auto& n : nodes) {
    for (const auto& i : n.inputs) use(i);
    for (const auto& [key, attr] : n.attributes) {
      if (attr.g) {
        for (const auto& c : attr.g->captured_values()) use(c);
      }
      for (const auto& g : attr.graphs) {
        for (const auto& c : g->captured_values()) use(c);
      }
    }
  }
  for (const auto& o : outputs) use(o.name);
  return {captured.begin(), captured.end()};
}

Node make_node(std::string name, std::string op_type, std::vector<std::string> inputs,
               std::vector<std::string> outputs) {
  Node n;
  n.name = std::move(name);
  n.op_type = std::move(op_type);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  return n;
}

Attribute int_attr(int64_t value) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = value;
  return a;
}

Attribute ints_attr(std::vector<int64_t> values) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(values);
  return a;
}

Attribute float_attr(float value) {
  Attribute a;
  a.kind = Attribute::Kind::kFloat;
  a.f = value;
  return a;
}

Attribute floats_attr(std::vector<float> values) {
  Attribute a;
  a.kind = Attribute::Kind::kFloats;
  a.floats = std::move(values);
  return a;
}

Attribute string_attr(std::string value) {
  Attribute a;
  a.kind = Attribute::Kind::kString;
  a.s = std::move(value);
  return a;
}

Attribute strings_attr(std::vector<std::string> values) {
  Attribute a;
  a.kind = Attribute::Kind::kStrings;
  a.strings = std::move(values);
  return a;
}

void set_attr(Node& node, const std::string& key, int64_t value) { node.attributes[key] = int_attr(value); }

void set_attr(Node& node, const std::string& key, std::vector<int64_t> values) {
  node.attributes[key] = ints_attr(std::move(values));
}

int64_t Model::opset(const std::string& domain) const {
  auto it = opset_imports.find(domain);
  return it == opset_imports.end() ? 0 : it->second;
}

void topological_sort(Graph& graph, const std::vector<std::string>& outer) {
  std::unordered_set<std::string> available(outer.begin(), outer.end());
  for (const auto& v : graph.inputs) available.insert(v.name);
  for (const auto& [k, v] : graph.initializers) available.insert(k);

  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const auto& o : graph.nodes[i].outputs) {
      if (o.empty()) continue;
      if (producer.count(o) || available.count(o)) {
        throw Error(ErrorCode::kInvalidArgument,
                    graph.nodes[i].describe() + ": output \"" + o + "\" is already defined elsewhere in the graph");
      }
      producer[o] = i;
    }
  }
  // Everything a node needs: its inputs plus values its subgraphs capture.
  const size_t n = graph.nodes.size();
  std::vector<std::vector<std::string>> needs(n);
  for (size_t i = 0; i < n; ++i) {
    const Node& node = graph.nodes[i];
    for (const auto& in : node.inputs) {
      if (!in.empty()) needs[i].push_back(in);
    }
    for (const auto& [key, attr] : node.attributes) {
      std::vector<const Graph*> subs;
      if (attr.g) subs.push_back(attr.g.get());
      for (const auto& g : attr.graphs) subs.push_back(g.get());
      for (const Graph* g : subs) {
        for (const auto& c : g->captured_values()) needs[i].push_back(c);
      }
    }
    for (const auto& name : needs[i]) {
      if (!available.count(name) && !producer.count(name)) {
        throw Error(ErrorCode::kInvalidArgument,
                    node.describe() + ": input \"" + name +
                        "\" is not a graph input, an initializer, or the output of any node");
      }
    }
  }
  // Kahn's algorithm, taking the lowest original index first (stable).
  std::vector<int> pending(n, 0);
  std::vector<std::vector<size_t>> consumers(n);
  for (size_t i = 0; i < n; ++i) {
    std::unordered_set<size_t> deps;
    for (const auto& name : needs[i]) {
      auto it = producer.find(name);
      if (it != producer.end() && !available.count(name)) deps.insert(it->second);
    }
    for (size_t d : deps) {
      if (d == i) {
        throw Error(ErrorCode::kInvalidArgument, graph.nodes[i].describe() + " reads its own output (a cycle)");
      }
      consumers[d].push_back(i);
    }
    pending[i] = static_cast<int>(deps.size());
  }
  std::set<size_t> ready;
  for (size_t i = 0; i < n; ++i) {
    if (pending[i] == 0) ready.insert(i);
  }
  std::vector<size_t> order;
  order.reserve(n);
  while (!ready.empty()) {
    const size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    for (size_t c : consumers[i]) {
      if (--pending[c] == 0) ready.insert(c);
    }
  }
  if (order.size() != n) {
    for (size_t i = 0; i < n; ++i) {
      if (pending[i] > 0) {
        throw Error(ErrorCode::kInvalidArgument, "the graph has a cycle through " + graph.nodes[i].describe());
      }
    }
  }
  std::vector<Node> sorted;
  sorted.reserve(n);
  for (size_t i : order) sorted.push_back(std::move(graph.nodes[i]));
  graph.nodes = std::move(sorted);
}

std::string print_graph(const Graph& graph) {
  std::string out = "graph " + graph.name + "\n";
  for (const auto& v : graph.inputs) out += "  input  " + v.name + ": " + v.type.to_string() + "\n";
  for (const auto& [name, t] : graph.initializers) out += "  weight " + name + ": " + t.describe() + "\n";
  for (const auto& node : graph.nodes) {
    out += "  ";
    for (size_t i = 0; i < node.outputs.size(); ++i) out += (i ? ", " : "") + node.outputs[i];
    out += " = " + (node.domain.empty() ? "" : node.domain + ".") + node.op_type + "(";
    for (size_t i = 0; i < node.inputs.size(); ++i) out += (i ? ", " : "") + node.inputs[i];
    out += ")";
    if (!node.name.empty()) out += "  # " + node.name;
    out += "\n";
  }
  for (const auto& v : graph.outputs) out += "  output " + v.name + ": " + v.type.to_string() + "\n";
  return out;
}

}  // namespace kvant
