// AVX2 entry of kernels/lookup_u8.h: vpshufb looks 32 indices up in a
// 16-byte table (their low 4 bits) and gives 0 where an index has its top
// bit set. For the low half of the table (codes 0..127), step k (0..7) shifts
// the codes down by 16k: the codes below 16k wrap to 144 or more and read 0,
// the others read chunk k at their low nibble. So step k's table holds chunk k
// XOR chunk k-1, and the XOR of the steps code x reaches (k = 0..x/16) leaves
// chunk x/16 alone: table[x]. The high half works on x - 128 likewise, and the
// top bit of x picks the half. Exact for every code: it only moves bytes.
#include <immintrin.h>

#include <cstring>

#include "kernels/lookup_u8.h"

namespace kvant {

namespace {

struct HalfTables {
  __m256i step[8];  // chunk k XOR chunk k-1 of one half, in both lanes
};

void load_half(const uint8_t* half, HalfTables& t) {
  __m128i prev = _mm_setzero_si128();
  for (int k = 0; k < 8; ++k) {
    const __m128i cur = _mm_loadu_si128(reinterpret_cast<const __m128i*>(half + 16 * k));
    t.step[k] = _mm256_broadcastsi128_si256(_mm_xor_si128(cur, prev));
    prev = cur;
  }
}

// table[x] for 32 codes of the half t holds; x already within that half's
// 0..127 where it matters (other lanes give bytes the caller drops).
__m256i lookup_half(const HalfTables& t, __m256i x) {
  const __m256i sixteen = _mm256_set1_epi8(16);
  __m256i acc = _mm256_shuffle_epi8(t.step[0], x);
  for (int k = 1; k < 8; ++k) {
    x = _mm256_sub_epi8(x, sixteen);
    acc = _mm256_xor_si256(acc, _mm256_shuffle_epi8(t.step[k], x));
  }
  return acc;
}

__m256i lookup32(const HalfTables& low, const HalfTables& high, __m256i x) {
  const __m256i from_low = lookup_half(low, x);
  const __m256i from_high = lookup_half(high, _mm256_xor_si256(x, _mm256_set1_epi8(static_cast<char>(0x80))));
  return _mm256_blendv_epi8(from_low, from_high, x);  // the top bit of each code picks
}

// Below this many codes per plane the scalar loop is faster (measured on
// AMD EPYC, AVX2: docs/kernels.md).
constexpr int64_t kMinVectorPlane = 64;

}  // namespace

void lookup_u8_planes_avx2(const uint8_t* tables, const uint8_t* x, uint8_t* y, int64_t inner, int64_t planes) {
  for (int64_t p = 0; p < planes; ++p) {
    if (inner < kMinVectorPlane) {
      lookup_u8_ref(tables + 256 * p, x + inner * p, y + inner * p, inner);
    } else {
      lookup_u8_avx2(tables + 256 * p, x + inner * p, y + inner * p, inner);
    }
  }
}

void lookup_u8_avx2(const uint8_t* table, const uint8_t* x, uint8_t* y, int64_t n) {
  HalfTables low, high;
  load_half(table, low);
  load_half(table + 128, high);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), lookup32(low, high, codes));
  }
  if (i < n) {  // the last 1..31 codes through a buffer, so nothing past n is read or written
    const auto left = static_cast<size_t>(n - i);
    alignas(32) uint8_t buf[32] = {};
    std::memcpy(buf, x + i, left);
    const __m256i codes = _mm256_load_si256(reinterpret_cast<const __m256i*>(buf));
    _mm256_store_si256(reinterpret_cast<__m256i*>(buf), lookup32(low, high, codes));
    std::memcpy(y + i, buf, left);
  }
}

}  // namespace kvant
