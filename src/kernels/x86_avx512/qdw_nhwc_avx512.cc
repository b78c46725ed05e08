// The AVX-512 (F/BW) depthwise entry: the body of qdw_nhwc_avx512.inl with
// vpmaddwd + vpaddd.
#define KVANT_QDW_FUNCTION qdw_nhwc_avx512
#define KVANT_QDW_DOT(acc, x, w) _mm512_add_epi32(acc, _mm512_madd_epi16(x, w))
#include "kernels/x86_avx512/qdw_nhwc_avx512.inl"
