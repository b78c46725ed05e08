// A decoder-only language model exported to ONNX, run one forward pass at a
// time with its key/value cache kept between passes (`kvant generate`,
// `kvant perplexity`).
//
// The export convention (Hugging Face Optimum's, bench/llm/make_decoder.py's):
//   inputs   input_ids int64 [B, seq]
//            attention_mask int64 [B, past + seq]          (optional)
//            position_ids int64 [B, seq]                    (optional)
//            past_key_values.N.key/value float [B, kv_heads, past, head_dim]
//              (also past.N.key/value, past_key.N/past_value.N; optional)
//   outputs  logits float [B, seq, vocab]
//            present.N.key/value float [B, kv_heads, past + seq, head_dim]
//              (also present_key.N/present_value.N)
// Batch B (every row the same length). kv_heads and head_dim come from the
// declared past shapes.
//
// The cache: one buffer per past input, allocated once for the longest
// sequence the run may reach (`max_total` positions), holding [B, kv_heads,
// past, head_dim] contiguously. Each pass feeds views over those buffers
// (no allocation for the cache; the compiled model copies feeds into its
// arena) and copies the model's present outputs back into them (the
// compiled runtime writes present into its own arena; design decision 50).
// Before the first one-token pass the compiled model is planned for the
// longest cache, so later tokens run on that placement without planning
// (design decision 55). The input_ids,
// attention_mask and position_ids feeds are views over buffers of
// max_total entries too.
//
// A model without past inputs is run on the whole prefix every pass
// (`recomputes()`), which the caller should warn about.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/compiled_model.h"

namespace kvant::llm {

struct CachePair {
  int layer = 0;
  std::string key_in, value_in, key_out, value_out;
  int64_t kv_heads = 0, head_dim = 0;
};

struct DecoderSignature {
  std::string input_ids, attention_mask, position_ids;  // empty: the model has no such input
  std::string logits;
  std::vector<CachePair> cache;  // by layer; empty: no past inputs
  int64_t vocab = -1;            // the logits' declared last dim; -1 when symbolic
  // The longest sequence the model accepts (past + new), when it says so: a
  // fixed dim of attention_mask, a position-embedding table's rows (a Gather
  // on a 2-D initializer indexed by position_ids or by computed positions).
  // -1 when nothing limits it.
  int64_t max_positions = -1;
  std::string max_positions_source;  // what set it, for messages
};

// Reads the convention above from the graph's declared inputs and outputs.
// Throws Error naming what is missing or malformed (no input_ids, no logits
// output, ids not int64, a past input without its present output, a
// kv_heads or head_dim that is not a fixed number, ...). `file` prefixes
// the messages.
DecoderSignature detect_decoder(const Graph& graph, const std::string& file);

class Decoder {
 public:
  // Compiles the model; the cache holds at most `max_total` positions of
  // `batch` sequences. Throws Error when the cache would not fit the memory
  // budget, or the model fixes another batch.
  Decoder(const Model& model, DecoderSignature signature, int64_t max_total, int threads, int64_t batch = 1);
  ~Decoder();

  bool recomputes() const { return signature_.cache.empty(); }
  const DecoderSignature& signature() const { return signature_; }
  int64_t cached() const { return length_; }  // positions seen since reset()
  int64_t max_total() const { return max_total_; }
  int64_t batch() const { return batch_; }
  // The vocabulary: declared, or learned from the first pass (-1 before).
  int64_t vocab() const { return vocab_; }
  size_t cache_bytes() const;
  // Planning runs of the compiled model so far (CompiledModel::plans()).
  int plans() const { return compiled_->plans(); }

  void reset() { length_ = 0; }
  // Appends `n` ids to each sequence (`ids` is [batch, n] row-major) and
  // runs one pass. Returns the logits of the first sequence's n positions,
  // [n, vocab] row-major (logits(b) for the others), valid until the next
  // call. Throws Error when the sequence would pass max_total.
  const float* forward(const int64_t* ids, int64_t n);
  // Sequence b's logits of the last forward's n positions, [n, vocab].
  const float* logits(int64_t b) const;

 private:
  DecoderSignature signature_;
  int64_t max_total_ = 0;
  int64_t batch_ = 1;
  int64_t length_ = 0;
  const float* last_logits_ = nullptr;  // [batch, fed, vocab] of the last forward
  int64_t last_fed_ = 0, last_n_ = 0;
  std::vector<int64_t> history_;  // [batch, max_total]: the ids so far, for a model that recomputes
  int64_t vocab_ = -1;
  std::unique_ptr<CompiledModel> compiled_;
  size_t logits_output_ = 0;
  struct CacheSlot {
    std::string input;  // past_key_values.N.key
    size_t output = 0;  // index of present.N.key among the model's outputs
    std::string output_name;
    int64_t kv_heads = 0, head_dim = 0;
    std::shared_ptr<std::byte> data;  // float [batch, kv_heads, length_, head_dim], room for max_total_
  };
  std::vector<CacheSlot> slots_;
  std::shared_ptr<std::byte> ids_, mask_, positions_;  // int64 [batch, max_total]
  std::map<std::string, Tensor> feeds_;
  void reserve_for_decode();
  int reserved_plan_ = -1;  // compiled_->plans() after the decode reservation
  bool reserve_failed_ = false;
};

}  // namespace kvant::llm
