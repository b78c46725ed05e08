// 4-bit-weight GEMM entry gemm_w4a8_avx512vnni (gemm_w4.h): kernels/gemm_w4a8_body.inc
// with the EVEX-encoded 256-bit vpdpbusd (AVX512-VNNI + VL).
#include <immintrin.h>

#include "kernels/gemm_w4_kernels.h"

namespace kvant {
namespace {

__m256i dot_u8s8(__m256i acc, __m256i codes_u8, __m256i x_s8) { return _mm256_dpbusd_epi32(acc, codes_u8, x_s8); }

#include "kernels/gemm_w4a8_body.inc"

}  // namespace

void gemm_w4a8_avx512vnni(const W4A8Args& a) { w4a8_run(a); }

}  // namespace kvant
