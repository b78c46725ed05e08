// Decoder, Sampler and the perplexity helpers (kvant.h): src/llm's decoder
// loop, sampler and strided windows behind the public types.
#include <optional>

#include "api/api_internal.h"
#include "llm/decoder.h"
#include "llm/perplexity.h"
#include "llm/sampling.h"

namespace kvant {

namespace {

DecoderInfo public_info(const llm::DecoderSignature& sig) {
  DecoderInfo info;
  info.input_ids = sig.input_ids;
  info.attention_mask = sig.attention_mask;
  info.position_ids = sig.position_ids;
  info.logits = sig.logits;
  info.layers = static_cast<int64_t>(sig.cache.size());
  info.vocab = sig.vocab;
  info.max_positions = sig.max_positions;
  info.max_positions_source = sig.max_positions_source;
  return info;
}

}  // namespace

Result<DecoderInfo> decoder_info(const OnnxModel& model) {
  return guarded([&]() -> Result<DecoderInfo> {
    const OnnxModel::Impl& impl = ApiAccess::impl(model, "decoder_info");
    return public_info(llm::detect_decoder(impl.model.graph, impl.display_name));
  });
}

struct Decoder::Impl {
  DecoderInfo info;
  std::optional<llm::Decoder> decoder;
  bool has_logits = false;  // a forward() since create() or reset()
};

Decoder::Decoder() : impl_(std::make_unique<Impl>()) {}
Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

Result<Decoder> Decoder::create(const OnnxModel& model, const DecoderOptions& options) {
  return guarded([&]() -> Result<Decoder> {
    const OnnxModel::Impl& impl = ApiAccess::impl(model, "Decoder::create");
    if (options.max_total < 1) {
      return invalid_argument("DecoderOptions::max_total must be at least 1, got " + std::to_string(options.max_total));
    }
    if (options.batch < 1) {
      return invalid_argument("DecoderOptions::batch must be at least 1, got " + std::to_string(options.batch));
    }
    if (options.threads < 1 || options.threads > 256) {
      return invalid_argument("DecoderOptions::threads must lie in [1, 256], got " + std::to_string(options.threads));
    }
    llm::DecoderSignature sig = llm::detect_decoder(impl.model.graph, impl.display_name);
    Decoder decoder;
    decoder.impl_->info = public_info(sig);
    decoder.impl_->decoder.emplace(impl.model, std::move(sig), options.max_total, options.threads, options.batch);
    return decoder;
  });
}

const DecoderInfo& Decoder::info() const { return impl_->info; }
bool Decoder::recomputes() const { return impl_->decoder->recomputes(); }
int64_t Decoder::length() const { return impl_->decoder->cached(); }
int64_t Decoder::max_total() const { return impl_->decoder->max_total(); }
int64_t Decoder::batch() const { return impl_->decoder->batch(); }
int64_t Decoder::vocab() const { return impl_->decoder->vocab(); }
size_t Decoder::cache_bytes() const { return impl_->decoder->cache_bytes(); }

void Decoder::reset() {
  impl_->decoder->reset();
  impl_->has_logits = false;
}

Result<const float*> Decoder::forward(const int64_t* ids, int64_t n) {
  return guarded([&]() -> Result<const float*> {
    if (n < 1) return invalid_argument("Decoder::forward: n must be at least 1, got " + std::to_string(n));
    if (ids == nullptr) return invalid_argument("Decoder::forward: ids is null");
    llm::Decoder& d = *impl_->decoder;
    const int64_t count = n * d.batch();
    for (int64_t i = 0; i < count; ++i) {
      if (ids[i] < 0 || (d.vocab() > 0 && ids[i] >= d.vocab())) {
        return invalid_argument("Decoder::forward: ids[" + std::to_string(i) + "] is " + std::to_string(ids[i]) +
                                ", outside the model's " +
                                (d.vocab() > 0 ? "vocabulary [0, " + std::to_string(d.vocab()) + ")" : "ids (>= 0)"));
      }
    }
    impl_->has_logits = false;
    const float* logits = d.forward(ids, n);
    impl_->has_logits = true;
    return logits;
  });
}

Result<const float*> Decoder::logits(int64_t b) const {
  return guarded([&]() -> Result<const float*> {
    if (!impl_->has_logits) return invalid_argument("Decoder::logits: no forward() since create() or reset()");
    if (b < 0 || b >= impl_->decoder->batch()) {
      return invalid_argument("Decoder::logits: sequence " + std::to_string(b) + " is outside the batch [0, " +
                              std::to_string(impl_->decoder->batch()) + ")");
    }
    return impl_->decoder->logits(b);
  });
}

struct Sampler::Impl {
  std::optional<llm::Sampler> sampler;
};

Sampler::Sampler() : impl_(std::make_unique<Impl>()) {}
Sampler::~Sampler() = default;
Sampler::Sampler(Sampler&&) noexcept = default;
Sampler& Sampler::operator=(Sampler&&) noexcept = default;

Result<Sampler> Sampler::create(const SamplingOptions& options) {
  return guarded([&]() -> Result<Sampler> {
    llm::SamplingOptions o;
    o.temperature = options.temperature;
    o.top_k = options.top_k;
    o.top_p = options.top_p;
    o.seed = options.seed;
    llm::check_sampling_options(o);
    Sampler sampler;
    sampler.impl_->sampler.emplace(o);
    return sampler;
  });
}

Result<int64_t> Sampler::sample(const float* logits, int64_t vocab) {
  return guarded([&]() -> Result<int64_t> {
    if (vocab < 1) return invalid_argument("Sampler::sample: vocab must be at least 1, got " + std::to_string(vocab));
    if (logits == nullptr) return invalid_argument("Sampler::sample: logits is null");
    return impl_->sampler->sample(logits, vocab);
  });
}

Result<std::vector<PerplexityWindow>> perplexity_windows(int64_t n, int64_t context, int64_t stride) {
  return guarded([&]() -> Result<std::vector<PerplexityWindow>> {
    std::vector<PerplexityWindow> out;
    for (const llm::Window& w : llm::strided_windows(n, context, stride))
      out.push_back({w.begin, w.end, w.first_target});
    return out;
  });
}

double next_token_nll(const float* logits, int64_t vocab, int64_t target) {
  return llm::token_nll(logits, vocab, target);
}

}  // namespace kvant
