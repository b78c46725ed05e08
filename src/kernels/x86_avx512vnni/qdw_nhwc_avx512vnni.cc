// The AVX-512 VNNI depthwise entry: the body of
// x86_avx512/qdw_nhwc_avx512.inl with vpdpwssd (the int16 pair dot product
// and the accumulation in one instruction; exact, as vpmaddwd + vpaddd).
#define KVANT_QDW_FUNCTION qdw_nhwc_avx512vnni
#define KVANT_QDW_DOT(acc, x, w) _mm512_dpwssd_epi32(acc, x, w)
#include "kernels/x86_avx512/qdw_nhwc_avx512.inl"
