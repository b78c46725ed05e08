// im2col tile packer im2col_f32_avx2 (sconv_kernels.h has the layout): the
// generic element-copy packer (kernels/im2col_copy.inc) compiled with this
// folder's AVX2 flags, where GCC widens the whole-panel copies and the
// strided gathers. (A vmaskmovps version modelled on the AVX-512 entry was
// slower here: kvant_bench_sconv r50_3x3_64_64_56/avx2 78 GFLOPS vs 86 with
// these copies, on the Xeon of docs/kernels.md.)
#include <cstddef>
#include <cstring>

#include "kernels/sconv_kernels.h"

namespace kvant {
namespace {

#include "kernels/im2col_copy.inc"

}  // namespace

void im2col_pack_avx2(const Im2colTile& t) { im2col_pack_copies(t); }

}  // namespace kvant
