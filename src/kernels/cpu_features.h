// CPU feature detection and the choice of instruction set for the integer
// kernels (DESIGN.md §4, STYLE.md §5).
//
// A feature counts as present only when the CPU reports it (CPUID) *and* the
// operating system saves the registers it needs (XGETBV: XCR0 bits 1-2 for
// AVX, 5-7 for AVX-512, 17-18 for AMX tiles; on Linux AMX also needs the
// arch_prctl(ARCH_REQ_XCOMP_PERM) permission, which the probe requests).
//
// The environment variable KVANT_ISA=ref|avx2|avx512vnni|amx picks a kernel
// family for tests and benchmarks; asking for one that this CPU or this build
// lacks throws kvant::Error with a message, never SIGILL.
#pragma once

#include <string>

namespace kvant {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_vnni = false;
  bool avx_vnni = false;
  bool amx_int8 = false;
};

// Kernel families, slowest first.
enum class Isa { kRef, kAvx2, kAvx512Vnni, kAmx };

const char* isa_name(Isa isa);  // "ref", "avx2", "avx512vnni", "amx"

// Probed once (thread-safe), then cached.
const CpuFeatures& cpu_features();

// Whether this CPU can run `isa` (features and OS support).
bool cpu_supports(const CpuFeatures& cpu, Isa isa);

// Whether this build has gemm kernels for `isa`.
bool isa_implemented(Isa isa);

// The best ISA that the CPU supports and the build implements.
Isa best_isa(const CpuFeatures& cpu);

// Parses a KVANT_ISA value against `cpu`: null or empty means best_isa(cpu).
// Throws kvant::Error (kInvalidArgument) for an unknown name, an ISA the CPU
// lacks, or one with no kernels in this build.
Isa isa_from_name(const char* name, const CpuFeatures& cpu);

// isa_from_name(getenv("KVANT_ISA"), cpu_features()); read on every call so
// tests can change the variable.
Isa selected_isa();

// Whether the float/elementwise AVX2 kernels run: the CPU has AVX2 and
// KVANT_ISA is not "ref". Probed once (the GEMM kernels read selected_isa()
// per call instead).
bool avx2_kernels_enabled();

// "avx2 fma avx512f ..." for logs and `kvant inspect`.
std::string describe(const CpuFeatures& cpu);

}  // namespace kvant
