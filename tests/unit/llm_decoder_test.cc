// The decoder loop's parts (src/llm): sampling, the strided perplexity
// windows, the byte tokenizer, and reading a decoder's signature.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>

#include "alloc_counter.h"
#include "api/api_internal.h"
#include "ir/limits.h"
#include "kvant/status.h"
#include "llm/decoder.h"
#include "llm/perplexity.h"
#include "llm/sampling.h"
#include "llm/tokenizer.h"
#include "runtime/compiled_model.h"

namespace kvant::llm {
namespace {

namespace fs = std::filesystem;

std::vector<float> random_logits(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(Sampling, TemperatureZeroIsArgmaxLowestIdOnTies) {
  const std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f, 2.9f};
  Sampler greedy({0.0f, 0, 1.0f, 7});
  for (int i = 0; i < 5; ++i) EXPECT_EQ(greedy.sample(logits.data(), 5), 1);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> r = random_logits(1000, seed);
    EXPECT_EQ(greedy.sample(r.data(), 1000), std::max_element(r.begin(), r.end()) - r.begin()) << "seed " << seed;
  }
}

TEST(Sampling, SameSeedSameTokensOtherSeedOthers) {
  const std::vector<float> logits = random_logits(300, 1);
  for (const SamplingOptions& o : {SamplingOptions{1.0f, 0, 1.0f, 42}, SamplingOptions{0.8f, 40, 1.0f, 42},
                                   SamplingOptions{1.2f, 0, 0.9f, 42}, SamplingOptions{1.0f, 50, 0.8f, 42}}) {
    Sampler a(o), b(o);
    SamplingOptions other = o;
    other.seed = 43;
    Sampler c(other);
    std::vector<int64_t> ta, tb, tc;
    for (int i = 0; i < 200; ++i) {
      ta.push_back(a.sample(logits.data(), 300));
      tb.push_back(b.sample(logits.data(), 300));
      tc.push_back(c.sample(logits.data(), 300));
    }
    EXPECT_EQ(ta, tb) << "temperature " << o.temperature << " top_k " << o.top_k << " top_p " << o.top_p;
    EXPECT_NE(ta, tc) << "another seed gave the same 200 tokens";
  }
}

TEST(Sampling, TopKKeepsOnlyTheKLargest) {
  const std::vector<float> logits = random_logits(500, 3);
  std::vector<int64_t> order(500);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  const std::set<int64_t> top5(order.begin(), order.begin() + 5);
  Sampler s({5.0f, 5, 1.0f, 9});  // hot: without the limit, anything could come
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) seen.insert(s.sample(logits.data(), 500));
  for (int64_t id : seen) EXPECT_TRUE(top5.count(id)) << id << " is not among the 5 largest";
  EXPECT_EQ(seen.size(), 5u);
  Sampler one({5.0f, 1, 1.0f, 9});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(one.sample(logits.data(), 500), order[0]);
}

TEST(Sampling, TopPKeepsTheNucleusAndItsProportions) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1.
  const std::vector<float> logits = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  Sampler s({1.0f, 0, 0.75f, 11});  // 0.5 + 0.3 reaches 0.75: ids 1 and 3 only
  int counts[4] = {0, 0, 0, 0};
  const int draws = 8000;
  for (int i = 0; i < draws; ++i) ++counts[s.sample(logits.data(), 4)];
  EXPECT_EQ(counts[0], 0);
  EXPECT_EQ(counts[2], 0);
  // Renormalized: 0.5 / 0.8 = 0.625; 5 standard deviations is 0.027.
  EXPECT_NEAR(counts[1] / static_cast<double>(draws), 0.625, 0.03);
  Sampler tiny({1.0f, 0, 0.01f, 11});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(tiny.sample(logits.data(), 4), 1);
}

TEST(Sampling, BadOptionsAndNaNAreErrors) {
  EXPECT_THROW(Sampler({-1.0f, 0, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler({NAN, 0, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, -2, 1.0f, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, 0, 0.0f, 0}), Error);
  EXPECT_THROW(Sampler({1.0f, 0, 1.5f, 0}), Error);
  const std::vector<float> logits = {0.0f, NAN, 1.0f};
  Sampler s({0.0f, 0, 1.0f, 0});
  try {
    s.sample(logits.data(), 3);
    FAIL() << "a NaN logit was sampled";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN logit (token id 1)"), std::string::npos) << e.what();
  }
}

TEST(PerplexityWindows, HuggingFaceStridedArithmetic) {
  // n 10, context 4, stride 2: windows [0,4) [2,6) [4,8) [6,10).
  const std::vector<Window> w = strided_windows(10, 4, 2);
  ASSERT_EQ(w.size(), 4u);
  const int64_t want[4][3] = {{0, 4, 1}, {2, 6, 4}, {4, 8, 6}, {6, 10, 8}};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(w[i].begin, want[i][0]) << i;
    EXPECT_EQ(w[i].end, want[i][1]) << i;
    EXPECT_EQ(w[i].first_target, want[i][2]) << i;
  }
  // The last window is cut at n, and scores only what is new: n 11 gives
  // [6,10) then [8,11) scoring 10 alone.
  const std::vector<Window> cut = strided_windows(11, 4, 2);
  ASSERT_EQ(cut.size(), 5u);
  EXPECT_EQ(cut[4].begin, 8);
  EXPECT_EQ(cut[4].end, 11);
  EXPECT_EQ(cut[4].first_target, 10);
  // Shorter than the context: one window.
  const std::vector<Window> one = strided_windows(5, 512, 256);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].end, 5);
  EXPECT_EQ(one[0].first_target, 1);
}

TEST(PerplexityWindows, EveryTokenButTheFirstScoredOnceWithItsContext) {
  for (int64_t n : {int64_t{2}, int64_t{3}, int64_t{17}, int64_t{100}, int64_t{513}}) {
    for (int64_t context : {int64_t{2}, int64_t{5}, int64_t{16}, int64_t{64}}) {
      for (int64_t stride : {int64_t{1}, int64_t{2}, int64_t{3}, context / 2, context - 1}) {
        if (stride < 1 || stride >= context) continue;  // disjoint windows: below
        std::vector<int> scored(static_cast<size_t>(n), 0);
        for (const Window& w : strided_windows(n, context, stride)) {
          ASSERT_LE(w.end - w.begin, context);
          ASSERT_GT(w.first_target, w.begin);  // a target needs the token before it in the window
          for (int64_t t = w.first_target; t < w.end; ++t) {
            ++scored[static_cast<size_t>(t)];
            // At least context - stride tokens of history, or all of it.
            EXPECT_GE(t - w.begin, std::min(t, context - stride)) << n << " " << context << " " << stride;
          }
        }
        EXPECT_EQ(scored[0], 0);
        for (int64_t t = 1; t < n; ++t)
          EXPECT_EQ(scored[static_cast<size_t>(t)], 1) << n << " " << context << " " << stride << " t " << t;
      }
    }
  }
  // Disjoint windows: each window's first token goes unscored.
  int64_t count = 0;
  for (const Window& w : strided_windows(12, 4, 4)) count += w.end - w.first_target;
  EXPECT_EQ(count, 9);
  EXPECT_THROW(strided_windows(10, 1, 1), Error);
  EXPECT_THROW(strided_windows(10, 4, 5), Error);
  EXPECT_THROW(strided_windows(10, 4, 0), Error);
  EXPECT_THROW(strided_windows(1, 4, 2), Error);
}

TEST(PerplexityWindows, TokenNllIsMinusLogSoftmax) {
  const std::vector<float> row = {1.0f, 2.0f, 3.0f, 1000.0f};
  EXPECT_NEAR(token_nll(row.data(), 3, 2), -std::log(std::exp(3.0) / (std::exp(1.0) + std::exp(2.0) + std::exp(3.0))),
              1e-12);
  EXPECT_NEAR(token_nll(row.data(), 4, 3), 0.0, 1e-12);  // no overflow at 1000
  EXPECT_NEAR(token_nll(row.data(), 4, 0), 999.0, 1e-9);
}

TEST(ByteTokenizer, Utf8BytesAreTheIds) {
  auto t = make_byte_tokenizer();
  const std::string text = "h\xc3\xa9llo\n";  // "héllo"
  const std::vector<int64_t> ids = t->encode(text);
  EXPECT_EQ(ids, (std::vector<int64_t>{104, 0xc3, 0xa9, 108, 108, 111, 10}));
  EXPECT_EQ(t->decode(ids), text);
  EXPECT_EQ(t->decode({65, 300, 66}), "A<300>B");
  EXPECT_EQ(t->vocab_size(), 256);
  EXPECT_NO_THROW(check_vocab_fits(*t, 512, ""));
  try {
    check_vocab_fits(*t, 100, "pass --tokens");
    FAIL() << "a 100-entry vocabulary took byte ids";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("100 entries"), std::string::npos) << e.what();
  }
}

TEST(SentencePieceTokenizer, NotAModelIsOneClearError) {
  const fs::path file = fs::temp_directory_path() / ("kvant_llm_not_spm_" + std::to_string(::getpid()) + ".model");
  std::ofstream(file) << "this is not a SentencePiece model\n";
  try {
    load_sentencepiece(file.string());
    FAIL() << "a text file loaded as a tokenizer";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(have_sentencepiece() ? "not a SentencePiece model" : "built without SentencePiece"),
              std::string::npos)
        << m;
  }
  fs::remove(file);
  EXPECT_THROW(load_sentencepiece((fs::temp_directory_path() / "kvant_no_such_tokenizer.model").string()), Error);
}

ValueInfo info(const std::string& name, DType dtype, std::vector<Dim> dims) { return {name, {dtype, true, dims}}; }

Graph decoder_graph() {
  Graph g;
  const Dim b{-1, "batch"}, seq{-1, "seq"}, past{-1, "past"}, total{-1, "total"};
  g.inputs = {info("input_ids", DType::kInt64, {b, seq}),
              info("past_key_values.0.key", DType::kFloat32, {b, {2, ""}, past, {8, ""}}),
              info("past_key_values.0.value", DType::kFloat32, {b, {2, ""}, past, {8, ""}})};
  g.outputs = {info("logits", DType::kFloat32, {b, seq, {50, ""}}),
               info("present.0.key", DType::kFloat32, {b, {2, ""}, total, {8, ""}}),
               info("present.0.value", DType::kFloat32, {b, {2, ""}, total, {8, ""}})};
  return g;
}

void expect_error(const Graph& g, const std::string& needle) {
  try {
    detect_decoder(g, "m.onnx");
    FAIL() << "no error; wanted one with '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(DecoderSignature, ReadsTheExportConvention) {
  const DecoderSignature sig = detect_decoder(decoder_graph(), "m.onnx");
  EXPECT_EQ(sig.input_ids, "input_ids");
  EXPECT_EQ(sig.logits, "logits");
  EXPECT_EQ(sig.vocab, 50);
  ASSERT_EQ(sig.cache.size(), 1u);
  EXPECT_EQ(sig.cache[0].kv_heads, 2);
  EXPECT_EQ(sig.cache[0].head_dim, 8);
  EXPECT_EQ(sig.cache[0].value_out, "present.0.value");
  EXPECT_EQ(sig.max_positions, -1);
  // Other names for the cache.
  Graph g = decoder_graph();
  g.inputs[1].name = "past_key.0";
  g.inputs[2].name = "past_value.0";
  g.outputs[1].name = "present_key.0";
  g.outputs[2].name = "present_value.0";
  EXPECT_EQ(detect_decoder(g, "m.onnx").cache.at(0).key_out, "present_key.0");
  // A fixed attention_mask length limits the positions.
  g = decoder_graph();
  g.inputs.push_back(info("attention_mask", DType::kInt64, {{1, ""}, {64, ""}}));
  EXPECT_EQ(detect_decoder(g, "m.onnx").max_positions, 64);
}

TEST(DecoderSignature, BadModelsAreClearErrors) {
  Graph g = decoder_graph();
  g.outputs[0].name = "scores";
  expect_error(g, "no output named \"logits\"");
  g = decoder_graph();
  g.inputs[0].type.dtype = DType::kFloat32;
  expect_error(g, "token ids must be int64");
  g = decoder_graph();
  g.inputs[0].name = "tokens";
  expect_error(g, "input \"tokens\" (int64[batch,seq]) is not one a decoder takes");
  g.inputs.erase(g.inputs.begin());
  expect_error(g, "no input named \"input_ids\"");
  g = decoder_graph();
  g.outputs.pop_back();
  expect_error(g, "no matching present output");
  g = decoder_graph();
  g.inputs[1].type.dims[3] = {-1, "head_dim"};
  expect_error(g, "kv_heads and head_dim fixed numbers");
  g = decoder_graph();
  g.outputs[0].type.dims.pop_back();
  expect_error(g, "[batch, seq, vocab]");
}

// A one-layer attention decoder in the export convention, with the usual
// shape arithmetic (Shape -> Gather -> Concat -> Reshape, steps fixed by the
// input shapes) and a growing key/value cache: input_ids [1, S], past
// [1, 2, P, 8] -> logits [1, S, 50], present [1, 2, P + S, 8]. No causal
// mask: every position attends to every cached one.
Model attention_decoder() {
  constexpr int64_t kVocab = 50, kHidden = 16;
  Model m;
  m.opset_imports[""] = 17;
  Graph& g = m.graph;
  const Dim b{-1, "batch"}, seq{-1, "seq"}, past{-1, "past"}, total{-1, "total"};
  g.inputs = {info("input_ids", DType::kInt64, {b, seq}),
              info("past_key_values.0.key", DType::kFloat32, {b, {2, ""}, past, {8, ""}}),
              info("past_key_values.0.value", DType::kFloat32, {b, {2, ""}, past, {8, ""}})};
  g.outputs = {info("logits", DType::kFloat32, {b, seq, {kVocab, ""}}),
               info("present.0.key", DType::kFloat32, {b, {2, ""}, total, {8, ""}}),
               info("present.0.value", DType::kFloat32, {b, {2, ""}, total, {8, ""}})};
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 0.5f);
  auto weight = [&](const std::string& name, int64_t rows, int64_t cols) {
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (float& x : w) x = dist(rng);
    g.initializers[name] = Tensor::from_vector(w, {rows, cols});
  };
  weight("emb", kVocab, kHidden);
  weight("wq", kHidden, kHidden);
  weight("wk", kHidden, kHidden);
  weight("wv", kHidden, kHidden);
  weight("wo", kHidden, kVocab);
  g.initializers["i0"] = Tensor::from_vector<int64_t>({0}, {1});
  g.initializers["i1"] = Tensor::from_vector<int64_t>({1}, {1});
  g.initializers["heads"] = Tensor::from_vector<int64_t>({2, 8}, {2});
  g.initializers["hidden"] = Tensor::from_vector<int64_t>({kHidden}, {1});
  auto add = [&](const std::string& name, const std::string& op, std::vector<std::string> in,
                 std::vector<std::string> out) -> Node& {
    g.nodes.push_back(make_node(name, op, std::move(in), std::move(out)));
    return g.nodes.back();
  };
  add("embed", "Gather", {"emb", "input_ids"}, {"x"});
  add("shape", "Shape", {"input_ids"}, {"ids_shape"});
  add("batch", "Gather", {"ids_shape", "i0"}, {"bdim"});
  add("length", "Gather", {"ids_shape", "i1"}, {"sdim"});
  set_attr(add("split_shape", "Concat", {"bdim", "sdim", "heads"}, {"shape4"}), "axis", int64_t{0});
  set_attr(add("merge_shape", "Concat", {"bdim", "sdim", "hidden"}, {"shape3"}), "axis", int64_t{0});
  for (const std::string p : {"q", "k", "v"}) {
    add(p + "_proj", "MatMul", {"x", "w" + p}, {p + "_flat"});
    add(p + "_split", "Reshape", {p + "_flat", "shape4"}, {p + "_heads"});
    set_attr(add(p + "_t", "Transpose", {p + "_heads"}, {p + "_new"}), "perm", std::vector<int64_t>{0, 2, 1, 3});
  }
  set_attr(add("cat_k", "Concat", {"past_key_values.0.key", "k_new"}, {"present.0.key"}), "axis", int64_t{2});
  set_attr(add("cat_v", "Concat", {"past_key_values.0.value", "v_new"}, {"present.0.value"}), "axis", int64_t{2});
  set_attr(add("kt", "Transpose", {"present.0.key"}, {"k_t"}), "perm", std::vector<int64_t>{0, 1, 3, 2});
  add("scores", "MatMul", {"q_new", "k_t"}, {"scores"});
  set_attr(add("softmax", "Softmax", {"scores"}, {"probs"}), "axis", int64_t{-1});
  add("mix", "MatMul", {"probs", "present.0.value"}, {"mixed"});
  set_attr(add("mix_t", "Transpose", {"mixed"}, {"mixed_t"}), "perm", std::vector<int64_t>{0, 2, 1, 3});
  add("merge", "Reshape", {"mixed_t", "shape3"}, {"merged"});
  add("head", "MatMul", {"merged", "wo"}, {"logits"});
  return m;
}

Tensor random_cache(int64_t past, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(2 * past * 8));
  for (float& x : v) x = dist(rng);
  return Tensor::from_vector(v, {1, 2, past, 8});
}

void expect_same_bytes(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << what;
}

// Growing shapes on one compiled model give the bytes a fresh compiled model
// gives for each shape, and after one plan at the largest shape no token
// plans again (design decision 55).
TEST(CompiledModelGrowingShapes, MatchAFreshModelPerShapeWithoutPlanning) {
  const Model m = attention_decoder();
  for (int threads : {1, 2}) {
    CompiledModel grown(m, default_compile_options(threads));
    constexpr int64_t kMax = 40;
    // A prompt pass first (5 tokens), then the reservation at the longest
    // cache, then tokens with a cache growing from 5.
    std::vector<std::pair<int64_t, int64_t>> passes = {{5, 0}};
    for (int64_t past = 5; past < kMax; ++past) passes.push_back({1, past});
    int plans_after_reserve = -1;
    for (size_t i = 0; i < passes.size(); ++i) {
      const auto [seq, past] = passes[i];
      if (i == 1) {
        grown.prepare({{"input_ids", {1, 1}},
                       {"past_key_values.0.key", {1, 2, kMax - 1, 8}},
                       {"past_key_values.0.value", {1, 2, kMax - 1, 8}}});
        plans_after_reserve = grown.plans();
      }
      std::vector<int64_t> ids(static_cast<size_t>(seq));
      for (int64_t t = 0; t < seq; ++t) ids[static_cast<size_t>(t)] = (7 * (past + t) + 3) % 50;
      const std::map<std::string, Tensor> feeds = {{"input_ids", Tensor::from_vector(ids, {1, seq})},
                                                   {"past_key_values.0.key", random_cache(past, 11 + past)},
                                                   {"past_key_values.0.value", random_cache(past, 97 + past)}};
      grown.run_in_place(feeds);
      CompiledModel fresh(m, default_compile_options(threads));
      const std::map<std::string, Tensor> want = fresh.run(feeds);
      const std::string what = "threads " + std::to_string(threads) + ", past " + std::to_string(past);
      expect_same_bytes(grown.output(0), want.at("logits"), what + ": logits");
      expect_same_bytes(grown.output(1), want.at("present.0.key"), what + ": present key");
      expect_same_bytes(grown.output(2), want.at("present.0.value"), what + ": present value");
      if (i >= 1) {
        EXPECT_EQ(grown.plans(), plans_after_reserve) << what << ": planned again";
      }
    }
    // A shape beyond the placement plans anew, and still matches.
    const std::map<std::string, Tensor> big = {{"input_ids", Tensor::from_vector<int64_t>({1, 2}, {1, 2})},
                                               {"past_key_values.0.key", random_cache(kMax + 3, 1)},
                                               {"past_key_values.0.value", random_cache(kMax + 3, 2)}};
    grown.run_in_place(big);
    EXPECT_EQ(grown.plans(), plans_after_reserve + 1);
    CompiledModel fresh(m, default_compile_options(threads));
    expect_same_bytes(grown.output(0), fresh.run(big).at("logits"), "past beyond the placement");
  }
}

// kvant generate's loop: the Decoder's logits for every token equal a fresh
// compiled model's on the same cache, tokens after the first decode one
// plan nothing, and they allocate no tensor buffer (only shape vectors and
// the feed map's small nodes).
TEST(DecoderCache, TokensRunOnOnePlacementWithTheSameLogits) {
  const Model m = attention_decoder();
  const DecoderSignature sig = detect_decoder(m.graph, "m.onnx");
  constexpr int64_t kMax = 48;
  Decoder decoder(m, sig, kMax, 1);
  CompiledModel fresh(m, default_compile_options(1));
  std::vector<int64_t> ids = {4, 8, 15, 16, 23, 42};
  Tensor key = random_cache(0, 1), value = random_cache(0, 1);
  const float* logits = decoder.forward(ids.data(), static_cast<int64_t>(ids.size()));
  int64_t fed = static_cast<int64_t>(ids.size());
  int plans = -1;
  for (int64_t step = 0; decoder.cached() < kMax; ++step) {
    const std::vector<int64_t> in(ids.end() - fed, ids.end());
    const auto want = fresh.run({{"input_ids", Tensor::from_vector(in, {1, fed})},
                                 {"past_key_values.0.key", key},
                                 {"past_key_values.0.value", value}});
    const Tensor& want_logits = want.at("logits");
    ASSERT_EQ(std::memcmp(logits, want_logits.raw(), want_logits.nbytes()), 0) << "pass " << step;
    key = want.at("present.0.key");
    value = want.at("present.0.value");
    const float* last = want_logits.data<float>() + (fed - 1) * 50;
    ids.push_back(std::max_element(last, last + 50) - last);
    fed = 1;
    if (decoder.cached() == kMax) break;
    if (step == 0) {  // the first token plans once, for the longest cache
      logits = decoder.forward(&ids.back(), 1);
      plans = decoder.plans();
      continue;
    }
    const long calls = test::allocation_count();
    // Tensor buffers are counted against the memory budget (ir/limits.h):
    // with none to spare, a token that allocated one would throw.
    const int64_t budget = memory_budget_bytes();
    set_memory_budget_bytes(memory_in_use_bytes());
    test::reset_largest_allocation();
    try {
      logits = decoder.forward(&ids.back(), 1);
    } catch (const Error& e) {
      set_memory_budget_bytes(budget);
      FAIL() << "token " << step << ": " << e.what();
    }
    set_memory_budget_bytes(budget);
    const size_t largest = test::largest_allocation();
    EXPECT_EQ(decoder.plans(), plans) << "token " << step << " planned";
    EXPECT_LT(largest, 1024u) << "token " << step << " allocated a buffer";
    EXPECT_LT(test::allocation_count() - calls, 200) << "token " << step;
  }
  EXPECT_EQ(decoder.cached(), kMax);
}

// Two sequences in one batch give each sequence's batch-1 logits (to float
// rounding: a matmul of two rows may take another kernel path than one
// row's), and the batch's tokens run on one placement too.
TEST(DecoderCache, BatchRowsMatchBatchOneRuns) {
  const Model m = attention_decoder();
  const DecoderSignature sig = detect_decoder(m.graph, "m.onnx");
  constexpr int64_t kMax = 20, kPrompt = 4;
  Decoder batched(m, sig, kMax, 1, 2);
  Decoder one(m, sig, kMax, 1), other(m, sig, kMax, 1);
  std::vector<int64_t> prompts = {4, 8, 15, 16, 23, 42, 7, 1};  // [2, 4]
  batched.forward(prompts.data(), kPrompt);
  one.forward(prompts.data(), kPrompt);
  other.forward(prompts.data() + kPrompt, kPrompt);
  int plans = -1;
  for (int64_t pass = 0; batched.cached() < kMax; ++pass) {
    int64_t next[2];
    for (int r = 0; r < 2; ++r) {
      Decoder& single = r == 0 ? one : other;
      const int64_t n = pass == 0 ? kPrompt : 1;
      for (int64_t i = 0; i < n * 50; ++i) {
        ASSERT_NEAR(batched.logits(r)[i], single.logits(0)[i], 1e-4f) << "pass " << pass << " row " << r << " at " << i;
      }
      const float* last = single.logits(0) + (n - 1) * 50;
      next[r] = std::max_element(last, last + 50) - last;
    }
    if (batched.cached() == kMax) break;
    batched.forward(next, 1);
    one.forward(&next[0], 1);
    other.forward(&next[1], 1);
    if (pass == 0) plans = batched.plans();
    EXPECT_EQ(batched.plans(), plans) << "pass " << pass;
  }
  EXPECT_THROW(batched.logits(2), Error);
}

// The public Decoder (kvant.h) wraps this one: the same logits, bit for bit,
// pass after pass, and the public Sampler draws the same ids.
TEST(ApiDecoder, ForwardGivesTheInternalDecodersLogitsBitForBit) {
  const Model m = attention_decoder();
  const OnnxModel model = ApiAccess::make_model(attention_decoder(), "m.onnx");
  auto info = ::kvant::decoder_info(model);
  ASSERT_TRUE(info.ok()) << info.status().message();
  EXPECT_EQ(info->input_ids, "input_ids");
  EXPECT_EQ(info->logits, "logits");
  EXPECT_EQ(info->layers, 1);
  EXPECT_EQ(info->vocab, 50);
  constexpr int64_t kMax = 24;
  ::kvant::DecoderOptions options;
  options.max_total = kMax;
  auto api = ::kvant::Decoder::create(model, options);
  ASSERT_TRUE(api.ok()) << api.status().message();
  EXPECT_FALSE(api->recomputes());
  EXPECT_EQ(api->vocab(), 50);
  Decoder internal(m, detect_decoder(m.graph, "m.onnx"), kMax, 1);
  EXPECT_EQ(api->cache_bytes(), internal.cache_bytes());
  ::kvant::SamplingOptions sampling;
  sampling.temperature = 0.8f;
  sampling.top_k = 20;
  sampling.seed = 3;
  auto api_sampler = ::kvant::Sampler::create(sampling);
  ASSERT_TRUE(api_sampler.ok());
  Sampler sampler({0.8f, 20, 1.0f, 3});
  std::vector<int64_t> ids = {4, 8, 15, 16, 23, 42};
  int64_t n = static_cast<int64_t>(ids.size());
  const float* want = internal.forward(ids.data(), n);
  auto got = api->forward(ids.data(), n);
  while (true) {
    ASSERT_TRUE(got.ok()) << got.status().message();
    ASSERT_EQ(std::memcmp(*got, want, static_cast<size_t>(n * 50) * sizeof(float)), 0) << "at " << api->length();
    ASSERT_EQ(*api->logits(0), *got);
    const int64_t id = sampler.sample(want + (n - 1) * 50, 50);
    const auto api_id = api_sampler->sample(*got + (n - 1) * 50, 50);
    ASSERT_TRUE(api_id.ok());
    ASSERT_EQ(*api_id, id);
    if (api->length() == kMax) break;
    ids.push_back(id);
    n = 1;
    want = internal.forward(&ids.back(), 1);
    got = api->forward(&ids.back(), 1);
  }
  EXPECT_EQ(api->length(), kMax);
  EXPECT_EQ(internal.cached(), kMax);
  // Past max_total, a bad id or sequence, and bad options are errors.
  auto past = api->forward(ids.data(), 1);
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.status().message().find("24"), std::string::npos) << past.status().message();
  api->reset();
  EXPECT_EQ(api->length(), 0);
  EXPECT_FALSE(api->logits(0).ok());
  const int64_t bad = 50;
  auto outside = api->forward(&bad, 1);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("vocabulary [0, 50)"), std::string::npos) << outside.status().message();
  ASSERT_TRUE(api->forward(ids.data(), 3).ok());
  EXPECT_FALSE(api->logits(1).ok());
  EXPECT_FALSE(api->forward(ids.data(), 0).ok());
  options.max_total = 0;
  EXPECT_FALSE(::kvant::Decoder::create(model, options).ok());
  sampling.top_p = 0.0f;
  EXPECT_FALSE(::kvant::Sampler::create(sampling).ok());
  EXPECT_FALSE(::kvant::Decoder::create(OnnxModel(), {}).ok());
}

TEST(ApiDecoder, PerplexityHelpersAreTheInternalOnes) {
  const auto windows = ::kvant::perplexity_windows(1000, 128, 48);
  ASSERT_TRUE(windows.ok());
  const auto want = strided_windows(1000, 128, 48);
  ASSERT_EQ(windows->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ((*windows)[i].begin, want[i].begin);
    EXPECT_EQ((*windows)[i].end, want[i].end);
    EXPECT_EQ((*windows)[i].first_target, want[i].first_target);
  }
  EXPECT_FALSE(::kvant::perplexity_windows(1000, 1, 1).ok());
  const std::vector<float> row = {1.0f, 2.0f, 0.5f};
  EXPECT_EQ(::kvant::next_token_nll(row.data(), 3, 1), token_nll(row.data(), 3, 1));
}

}  // namespace
}  // namespace kvant::llm
