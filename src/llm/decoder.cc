#include "llm/decoder.h"

#include <cstring>
#include <limits>
#include <regex>

#include "ir/limits.h"
#include "kvant/status.h"

namespace kvant::llm {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// Bytes counted against the memory budget (ir/limits.h) for as long as the
// block lives.
std::shared_ptr<std::byte> budgeted_block(int64_t bytes, const std::string& what) {
  reserve_memory(bytes, what);
  try {
    return std::shared_ptr<std::byte>(new std::byte[static_cast<size_t>(std::max<int64_t>(bytes, 1))],
                                      [bytes](std::byte* p) {
                                        delete[] p;
                                        release_memory(bytes);
                                      });
  } catch (...) {
    release_memory(bytes);
    throw;
  }
}

struct CacheName {
  int layer = -1;
  bool value = false;
};

// past_key_values.3.key, past.3.key, past_key.3, past_key_values_3_key ...
CacheName parse_cache_name(const std::string& name, const std::string& prefix) {
  static const std::regex dotted("^(\\w+?)[._](\\d+)[._](key|value)$");
  static const std::regex suffixed("^(\\w+?)_(key|value)s?[._](\\d+)$");
  std::smatch m;
  if (std::regex_match(name, m, dotted)) {
    const std::string head = m[1];
    if (head == prefix || head == prefix + "_key_values" || head == prefix + "_key_value") {
      return {std::stoi(m[2]), m[3] == "value"};
    }
  }
  if (std::regex_match(name, m, suffixed) && m[1] == prefix) return {std::stoi(m[3]), m[2] == "value"};
  return {};
}

std::string dims_text(const TypeInfo& type) { return type.to_string(); }

// Rows of a position-embedding table: a Gather on a 2-D initializer whose
// indices are position_ids, or are computed (not input_ids) when the
// model has no position_ids input.
int64_t find_position_table(const Graph& graph, const DecoderSignature& sig, std::string& source) {
  for (const Node& node : graph.nodes) {
    if (node.op_type != "Gather" || node.inputs.size() < 2) continue;
    auto table = graph.initializers.find(node.inputs[0]);
    if (table == graph.initializers.end() || table->second.rank() != 2) continue;
    const std::string& indices = node.inputs[1];
    if (indices == sig.input_ids) continue;  // the token embedding
    const bool by_position =
        sig.position_ids.empty() ? graph.find_input(indices) == nullptr : indices == sig.position_ids;
    if (!by_position || graph.initializers.count(indices)) continue;
    source = "the position embedding \"" + node.inputs[0] + "\" has " + std::to_string(table->second.dim(0)) + " rows";
    return table->second.dim(0);
  }
  return -1;
}

}  // namespace

DecoderSignature detect_decoder(const Graph& graph, const std::string& file) {
  DecoderSignature sig;
  const std::string where = file + ": ";
  std::map<int, CachePair> pairs;
  std::map<std::string, const ValueInfo*> present_outputs;
  for (const ValueInfo& in : graph.inputs) {
    if (graph.initializers.count(in.name)) continue;  // an overridable constant, not a feed
    if (in.name == "input_ids") {
      sig.input_ids = in.name;
    } else if (in.name == "attention_mask") {
      sig.attention_mask = in.name;
    } else if (in.name == "position_ids") {
      sig.position_ids = in.name;
    } else if (const CacheName c = parse_cache_name(in.name, "past"); c.layer >= 0) {
      CachePair& p = pairs[c.layer];
      p.layer = c.layer;
      (c.value ? p.value_in : p.key_in) = in.name;
      if (in.type.dtype != DType::kFloat32) {
        fail(where + "past input \"" + in.name + "\" is " + dims_text(in.type) + "; kvant generate needs float32");
      }
      if (!in.type.has_shape || in.type.dims.size() != 4 || !in.type.dims[1].known() || !in.type.dims[3].known()) {
        fail(where + "past input \"" + in.name + "\" is declared " + dims_text(in.type) +
             "; kvant needs [batch, kv_heads, past, head_dim] with kv_heads and head_dim fixed numbers");
      }
      const int64_t heads = in.type.dims[1].value, dim = in.type.dims[3].value;
      if ((p.kv_heads && p.kv_heads != heads) || (p.head_dim && p.head_dim != dim)) {
        fail(where + "the key and value inputs of layer " + std::to_string(c.layer) + " differ in shape");
      }
      p.kv_heads = heads;
      p.head_dim = dim;
    } else {
      fail(where + "input \"" + in.name + "\" (" + dims_text(in.type) +
           ") is not one a decoder takes (input_ids, attention_mask, position_ids, past_key_values.N.key/value)");
    }
  }
  if (sig.input_ids.empty()) {
    fail(where +
         "the model has no input named \"input_ids\"; kvant generate and perplexity run decoders exported "
         "with input_ids [batch, seq]");
  }
  const ValueInfo* ids = graph.find_input(sig.input_ids);
  if (ids->type.dtype != DType::kInt64) {
    fail(where + "input_ids is " + dims_text(ids->type) + "; token ids must be int64");
  }
  if (ids->type.has_shape && ids->type.dims.size() != 2) {
    fail(where + "input_ids is " + dims_text(ids->type) + "; it must have rank 2 [batch, seq]");
  }
  for (const std::string& name : {sig.attention_mask, sig.position_ids}) {
    if (name.empty()) continue;
    const ValueInfo* in = graph.find_input(name);
    if (in->type.dtype != DType::kInt64) fail(where + name + " is " + dims_text(in->type) + "; it must be int64");
  }
  for (const ValueInfo& out : graph.outputs) {
    if (out.name == "logits") sig.logits = out.name;
    if (const CacheName c = parse_cache_name(out.name, "present"); c.layer >= 0) {
      auto it = pairs.find(c.layer);
      if (it != pairs.end()) (c.value ? it->second.value_out : it->second.key_out) = out.name;
    }
  }
  if (sig.logits.empty()) {
    std::string names;
    for (const ValueInfo& out : graph.outputs) names += (names.empty() ? "" : ", ") + out.name;
    fail(where + "the model has no output named \"logits\" (outputs: " + names + ")");
  }
  for (const ValueInfo& out : graph.outputs) {
    if (out.name != sig.logits) continue;
    if (out.type.dtype != DType::kFloat32 && out.type.dtype != DType::kUndefined) {
      fail(where + "logits output \"" + out.name + "\" is " + dims_text(out.type) + "; kvant needs float32 logits");
    }
    if (out.type.has_shape && out.type.dims.size() != 3) {
      fail(where + "logits output \"" + out.name + "\" is " + dims_text(out.type) +
           "; kvant needs [batch, seq, vocab] (a logit row per position)");
    }
    if (out.type.has_shape && out.type.dims.size() == 3 && out.type.dims[2].known()) sig.vocab = out.type.dims[2].value;
  }
  for (auto& [layer, p] : pairs) {
    const std::string l = std::to_string(layer);
    if (p.key_in.empty() || p.value_in.empty()) fail(where + "layer " + l + " has a past key or value input, not both");
    if (p.key_out.empty() || p.value_out.empty()) {
      fail(where + "past input \"" + p.key_in + "\" has no matching present output (present." + l + ".key/value)");
    }
    sig.cache.push_back(p);
  }
  // Position limits the model declares.
  auto limit = [&](int64_t n, const std::string& source) {
    if (n > 0 && (sig.max_positions < 0 || n < sig.max_positions)) {
      sig.max_positions = n;
      sig.max_positions_source = source;
    }
  };
  if (!sig.attention_mask.empty()) {
    const ValueInfo* mask = graph.find_input(sig.attention_mask);
    if (mask->type.has_shape && mask->type.dims.size() == 2 && mask->type.dims[1].known()) {
      limit(mask->type.dims[1].value,
            "attention_mask has a fixed length of " + std::to_string(mask->type.dims[1].value));
    }
  }
  std::string source;
  limit(find_position_table(graph, sig, source), source);
  return sig;
}

Decoder::Decoder(const Model& model, DecoderSignature signature, int64_t max_total, int threads, int64_t batch)
    : signature_(std::move(signature)), max_total_(max_total), batch_(batch), vocab_(signature_.vocab) {
  if (max_total_ < 1) fail("the decoder needs room for at least one position");
  constexpr int64_t kMaxBatch = 4096;
  if (batch_ < 1 || batch_ > kMaxBatch) {
    fail("the batch must lie in [1, " + std::to_string(kMaxBatch) + "], got " + std::to_string(batch_));
  }
  const ValueInfo* ids = model.graph.find_input(signature_.input_ids);
  if (ids->type.has_shape && ids->type.dims.size() == 2 && ids->type.dims[1].known() && recomputes()) {
    fail("input_ids has a fixed length of " + std::to_string(ids->type.dims[1].value) +
         " and the model has no past inputs: kvant needs a sequence axis that can grow");
  }
  if (ids->type.has_shape && ids->type.dims.size() == 2 && ids->type.dims[0].known() &&
      ids->type.dims[0].value != batch_) {
    fail("input_ids has a fixed batch of " + std::to_string(ids->type.dims[0].value) + "; this run has " +
         std::to_string(batch_) + (batch_ == 1 ? " sequence" : " sequences"));
  }
  const int64_t rows = max_total_ * batch_;  // at most 2^12 x (2^20 + a prompt)
  // Every buffer is checked against the memory budget before the compile.
  constexpr int64_t kMaxElements = int64_t{1} << 40;
  int64_t total = 0;
  for (const CachePair& p : signature_.cache) {
    if (p.kv_heads <= 0 || p.head_dim <= 0 || p.kv_heads > kMaxElements / p.head_dim ||
        p.kv_heads * p.head_dim > kMaxElements / rows) {
      fail("past input \"" + p.key_in + "\": a cache of " + std::to_string(max_total_) + " positions is too large");
    }
    total += 2 * p.kv_heads * p.head_dim * rows * 4;
  }
  check_memory(total, "a key/value cache of " + std::to_string(max_total_) + " positions");
  ids_ = budgeted_block(rows * 8, "the input_ids buffer");
  if (recomputes()) {
    check_memory(rows * 8, "the token history");
    history_.resize(static_cast<size_t>(rows));
  }
  if (!signature_.attention_mask.empty()) {
    mask_ = budgeted_block(rows * 8, "the attention_mask buffer");
    auto* ones = reinterpret_cast<int64_t*>(mask_.get());
    for (int64_t i = 0; i < rows; ++i) ones[i] = 1;
  }
  if (!signature_.position_ids.empty()) positions_ = budgeted_block(rows * 8, "the position_ids buffer");
  std::map<std::string, size_t> output_index;
  for (size_t i = 0; i < model.graph.outputs.size(); ++i) output_index[model.graph.outputs[i].name] = i;
  logits_output_ = output_index.at(signature_.logits);
  for (const CachePair& p : signature_.cache) {
    for (int v = 0; v < 2; ++v) {
      CacheSlot slot;
      slot.input = v ? p.value_in : p.key_in;
      slot.output_name = v ? p.value_out : p.key_out;
      slot.output = output_index.at(slot.output_name);
      slot.kv_heads = p.kv_heads;
      slot.head_dim = p.head_dim;
      slot.data = budgeted_block(p.kv_heads * p.head_dim * rows * 4, "the key/value cache");
      slots_.push_back(std::move(slot));
    }
  }
  CompileOptions options = default_compile_options(threads);
  compiled_ = std::make_unique<CompiledModel>(model, options);
}

Decoder::~Decoder() = default;

size_t Decoder::cache_bytes() const {
  size_t bytes = 0;
  for (const CacheSlot& s : slots_) bytes += static_cast<size_t>(s.kv_heads * s.head_dim * max_total_ * batch_ * 4);
  return bytes;
}

// One token after the longest cache this run allows: the planning run at
// these shapes places every tensor at its largest decode size, so each later
// token's shapes fit that placement and run without a plan (CompiledModel::
// run_in_place, design decision 55). Done again when something else (a
// prompt pass) has planned since; not again when the placement did not hold
// a token (the model then plans per token as before).
void Decoder::reserve_for_decode() {
  if (reserved_plan_ == compiled_->plans() || reserve_failed_) return;
  const int64_t past = max_total_ - 1;
  std::map<std::string, Shape> shapes;
  const int64_t b = batch_;
  shapes[signature_.input_ids] = {b, 1};
  if (mask_) shapes[signature_.attention_mask] = {b, max_total_};
  if (positions_) shapes[signature_.position_ids] = {b, 1};
  for (const CacheSlot& s : slots_) shapes[s.input] = {b, s.kv_heads, past, s.head_dim};
  compiled_->prepare(shapes);
  reserved_plan_ = compiled_->plans();
}

const float* Decoder::forward(const int64_t* ids, int64_t n) {
  if (n < 1) fail("a decoder pass needs at least one token");
  if (n > max_total_ - length_) {
    fail("the sequence would reach " + std::to_string(length_ + n) + " positions, more than the " +
         std::to_string(max_total_) + " this run was set up for");
  }
  const int64_t past = recomputes() ? 0 : length_;  // positions already in the cache
  const int64_t total = length_ + n;
  const int64_t b = batch_;
  auto* id_buffer = reinterpret_cast<int64_t*>(ids_.get());
  // With a cache the new ids alone are fed; without, the whole prefix
  // (kept per sequence in history_, packed [batch, total] for the pass).
  if (!recomputes()) {
    std::memcpy(id_buffer, ids, static_cast<size_t>(b * n) * 8);
  } else {
    for (int64_t r = 0; r < b; ++r) {
      int64_t* row = history_.data() + r * max_total_;
      std::memcpy(row + length_, ids + r * n, static_cast<size_t>(n) * 8);
      std::memcpy(id_buffer + r * total, row, static_cast<size_t>(total) * 8);
    }
  }
  const int64_t fed = recomputes() ? total : n;
  const int64_t first_position = total - fed;
  feeds_.clear();
  feeds_[signature_.input_ids] = Tensor::view(DType::kInt64, {b, fed}, ids_, ids_.get());
  if (mask_) feeds_[signature_.attention_mask] = Tensor::view(DType::kInt64, {b, total}, mask_, mask_.get());
  if (positions_) {
    auto* pos = reinterpret_cast<int64_t*>(positions_.get());
    for (int64_t r = 0; r < b; ++r) {
      for (int64_t i = 0; i < fed; ++i) pos[r * fed + i] = first_position + i;
    }
    feeds_[signature_.position_ids] = Tensor::view(DType::kInt64, {b, fed}, positions_, positions_.get());
  }
  for (const CacheSlot& s : slots_) {
    feeds_[s.input] = Tensor::view(DType::kFloat32, {b, s.kv_heads, past, s.head_dim}, s.data, s.data.get());
  }
  const bool decode = fed == 1 && !recomputes();
  if (decode) reserve_for_decode();
  compiled_->run_in_place(feeds_);
  if (decode && compiled_->plans() != reserved_plan_) reserve_failed_ = true;

  // Present -> cache: [1, kv_heads, past + n, head_dim], contiguous.
  for (CacheSlot& s : slots_) {
    const Tensor& present = compiled_->output(s.output);
    const Shape want = {b, s.kv_heads, total, s.head_dim};
    if (present.dtype() != DType::kFloat32 || present.shape() != want) {
      fail("output \"" + s.output_name + "\" is " + present.describe() + " after " + std::to_string(total) +
           " positions; expected float32" + shape_to_string(want));
    }
    std::memcpy(s.data.get(), present.raw(), present.nbytes());
  }
  const Tensor& logits = compiled_->output(logits_output_);
  if (logits.dtype() != DType::kFloat32 || logits.rank() != 3 || logits.dim(0) != b || logits.dim(1) != fed ||
      logits.dim(2) < 1) {
    fail("output \"" + signature_.logits + "\" is " + logits.describe() + " for " + std::to_string(fed) +
         " input positions; expected float32[" + std::to_string(b) + "," + std::to_string(fed) + ",vocab]");
  }
  vocab_ = logits.dim(2);
  length_ = total;
  last_logits_ = logits.data<float>();
  last_fed_ = fed;
  last_n_ = n;
  return this->logits(0);
}

const float* Decoder::logits(int64_t b) const {
  if (last_logits_ == nullptr || b < 0 || b >= batch_) {
    fail("no logits for sequence " + std::to_string(b) + " (batch " + std::to_string(batch_) + ")");
  }
  return last_logits_ + (b * last_fed_ + last_fed_ - last_n_) * vocab_;
}

}  // namespace kvant::llm
