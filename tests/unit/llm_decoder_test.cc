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

#include "kvant/status.h"
#include "llm/decoder.h"
#include "llm/perplexity.h"
#include "llm/sampling.h"
#include "llm/tokenizer.h"

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

}  // namespace
}  // namespace kvant::llm
