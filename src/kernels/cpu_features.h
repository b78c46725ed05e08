// CPU feature detection and the choice of instruction set for the integer
// kernels (DESIGN.md §4, STYLE.md §5).
//
// A feature counts as present only when the CPU reports it (CPUID) *and* the
// operating system saves the registers it needs (XGETBV: XCR0 bits 1-2 for
// AVX, 5-7 for AVX-512, 17-18 for AMX tiles; on Linux AMX also needs the
// arch_prctl(ARCH_REQ_XCOMP_PERM) permission, which the probe requests).
//
// ISA levels are ordered (Isa below). A kernel table entry (kernel_table.h)
// belongs to one level; it may run when its level is at most the *allowed*
// level and the CPU supports it. The allowed level is the best the CPU has,
// or what KVANT_ISA=ref|avx2|avxvnni|avx512|avx512vnni|amx (or
// CompileOptions::isa) asks for, so every entry can be reached on one machine
// by tests and benchmarks; asking for a level this CPU or this build lacks
// throws kvant::Error with a message, never SIGILL.
#pragma once

#include <cstdint>
#include <string>

namespace kvant {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512_vnni = false;
  bool avx512_vbmi = false;  // vpermb / vpermi2b (Ice Lake, Zen 4, Sapphire Rapids; not Cascade Lake)
  bool avx_vnni = false;
  bool amx_int8 = false;  // AMX-TILE + AMX-INT8 with OS tile state and Linux permission
};

// ISA levels, slowest first; each level's kernels may also use every
// instruction of the levels it needs (cpu_supports):
//   kAvx2        AVX2 + FMA
//   kAvxVnni     kAvx2 + AVX-VNNI (VEX vpdpbusd on ymm; Alder Lake, Zen 4, SPR)
//   kAvx512      AVX-512 F/BW/VL/DQ (Skylake-SP and later, Zen 4)
//   kAvx512Vnni  kAvx512 + AVX512-VNNI (Cascade Lake and later, Zen 4)
//   kAmx         kAvx512Vnni + AMX-TILE/AMX-INT8 (Sapphire Rapids and later)
// A CPU may have a level without one below it (AVX-VNNI is missing on
// Cascade Lake): entries check their own level, never "everything below".
enum class Isa { kRef, kAvx2, kAvxVnni, kAvx512, kAvx512Vnni, kAmx };
constexpr Isa kAllIsas[] = {Isa::kRef, Isa::kAvx2, Isa::kAvxVnni, Isa::kAvx512, Isa::kAvx512Vnni, Isa::kAmx};

const char* isa_name(Isa isa);  // "ref", "avx2", "avxvnni", "avx512", "avx512vnni", "amx"

// Probed once (thread-safe), then cached.
const CpuFeatures& cpu_features();

// Whether this CPU can run `isa` (features and OS support).
bool cpu_supports(const CpuFeatures& cpu, Isa isa);

// Whether this build has kernels for `isa` (x86-64 builds have every x86
// level; other architectures only kRef).
bool isa_implemented(Isa isa);

// The best ISA that the CPU supports and the build implements.
Isa best_isa(const CpuFeatures& cpu);

// Whether a kernel of level `entry` may run when `allowed` is the allowed
// level: entry <= allowed, the build has it and the CPU supports it.
bool isa_allows(Isa allowed, Isa entry, const CpuFeatures& cpu);

// Features some entries need beyond their level (a bit mask): AVX-512 VBMI
// comes with VNNI on most CPUs but not on Cascade Lake, so it is no level.
enum CpuExtra : uint32_t { kCpuExtraNone = 0, kCpuVbmi = 1u << 0 };
bool cpu_has_extra(const CpuFeatures& cpu, uint32_t extra);

// Parses a KVANT_ISA value against `cpu`: null or empty means best_isa(cpu).
// Throws kvant::Error (kInvalidArgument) for an unknown name, an ISA the CPU
// lacks, or one with no kernels in this build.
Isa isa_from_name(const char* name, const CpuFeatures& cpu);

// isa_from_name(getenv("KVANT_ISA"), cpu_features()); read on every call so
// tests can change the variable.
Isa selected_isa();

// "avx2 fma avx512f ..." for logs and `kvant inspect`.
std::string describe(const CpuFeatures& cpu);

}  // namespace kvant
