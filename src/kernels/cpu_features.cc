#include "kernels/cpu_features.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kvant/status.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define KVANT_X86 1
#endif
#if defined(__linux__) && defined(KVANT_X86)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace kvant {

namespace {

#if defined(KVANT_X86)
struct CpuidRegs {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(uint32_t leaf, uint32_t subleaf) {
  CpuidRegs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.eax, &r.ebx, &r.ecx, &r.edx)) return CpuidRegs{};
  return r;
}

uint64_t xgetbv0() {
  uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

bool bit(uint32_t reg, int n) { return ((reg >> n) & 1u) != 0; }

// Linux keeps AMX tile data off until a process asks (kernel 5.16+).
bool request_amx_permission() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuFeatures probe() {
  CpuFeatures f;
  const uint32_t max_leaf = cpuid(0, 0).eax;
  const CpuidRegs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.ecx, 27);
  if (!osxsave) return f;  // no XGETBV: the OS saves no AVX state
  const uint64_t xcr0 = xgetbv0();
  const bool os_avx = (xcr0 & 0x6) == 0x6;                 // XMM, YMM
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;         // XTILECFG, XTILEDATA
  if (!os_avx || max_leaf < 7) return f;
  const CpuidRegs l7 = cpuid(7, 0);
  const CpuidRegs l7s1 = cpuid(7, 1);
  f.fma = bit(l1.ecx, 12);
  f.avx2 = bit(l7.ebx, 5);
  f.avx_vnni = f.avx2 && bit(l7s1.eax, 4);
  if (os_avx512) {
    f.avx512f = bit(l7.ebx, 16);
    f.avx512bw = f.avx512f && bit(l7.ebx, 30);
    f.avx512vl = f.avx512f && bit(l7.ebx, 31);
    f.avx512dq = f.avx512f && bit(l7.ebx, 17);
    f.avx512_vnni = f.avx512f && bit(l7.ecx, 11);
    f.avx512_vbmi = f.avx512f && f.avx512bw && bit(l7.ecx, 1);
  }
  if (os_amx && bit(l7.edx, 24) && bit(l7.edx, 25)) f.amx_int8 = request_amx_permission();
  return f;
}
#else
CpuFeatures probe() { return CpuFeatures{}; }
#endif

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kRef: return "ref";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvxVnni: return "avxvnni";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx512Vnni: return "avx512vnni";
    case Isa::kAmx: return "amx";
  }
  return "?";
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = probe();
  return features;
}

bool cpu_supports(const CpuFeatures& cpu, Isa isa) {
  switch (isa) {
    case Isa::kRef: return true;
    case Isa::kAvx2: return cpu.avx2 && cpu.fma;
    case Isa::kAvxVnni: return cpu.avx2 && cpu.fma && cpu.avx_vnni;
    case Isa::kAvx512: return cpu.avx2 && cpu.fma && cpu.avx512f && cpu.avx512bw && cpu.avx512vl && cpu.avx512dq;
    case Isa::kAvx512Vnni: return cpu_supports(cpu, Isa::kAvx512) && cpu.avx512_vnni;
    case Isa::kAmx: return cpu_supports(cpu, Isa::kAvx512Vnni) && cpu.amx_int8;
  }
  return false;
}

bool isa_implemented(Isa isa) {
#if defined(KVANT_X86)
  (void)isa;
  return true;
#else
  return isa == Isa::kRef;
#endif
}

Isa best_isa(const CpuFeatures& cpu) {
  for (Isa isa : {Isa::kAmx, Isa::kAvx512Vnni, Isa::kAvx512, Isa::kAvxVnni, Isa::kAvx2}) {
    if (isa_implemented(isa) && cpu_supports(cpu, isa)) return isa;
  }
  return Isa::kRef;
}

bool isa_allows(Isa allowed, Isa entry, const CpuFeatures& cpu) {
  return static_cast<int>(entry) <= static_cast<int>(allowed) && isa_implemented(entry) && cpu_supports(cpu, entry);
}

bool cpu_has_extra(const CpuFeatures& cpu, uint32_t extra) { return (extra & kCpuVbmi) == 0 || cpu.avx512_vbmi; }

Isa isa_from_name(const char* name, const CpuFeatures& cpu) {
  if (name == nullptr || name[0] == '\0') return best_isa(cpu);
  for (Isa isa : kAllIsas) {
    if (std::strcmp(name, isa_name(isa)) != 0) continue;
    if (!cpu_supports(cpu, isa)) {
      throw Error(ErrorCode::kInvalidArgument, std::string("KVANT_ISA=") + name + ": this CPU does not support " +
                                                   name + " (it has: " + describe(cpu) + ")");
    }
    if (!isa_implemented(isa)) {
      throw Error(ErrorCode::kUnsupported,
                  std::string("KVANT_ISA=") + name + ": this build of kvant has no " + name + " kernels");
    }
    return isa;
  }
  throw Error(
      ErrorCode::kInvalidArgument,
      std::string("KVANT_ISA=") + name + ": unknown; expected one of ref, avx2, avxvnni, avx512, avx512vnni, amx");
}

Isa selected_isa() { return isa_from_name(std::getenv("KVANT_ISA"), cpu_features()); }

std::string describe(const CpuFeatures& cpu) {
  std::string s;
  auto add = [&s](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(cpu.avx2, "avx2");
  add(cpu.fma, "fma");
  add(cpu.avx512f, "avx512f");
  add(cpu.avx512bw, "avx512bw");
  add(cpu.avx512vl, "avx512vl");
  add(cpu.avx512dq, "avx512dq");
  add(cpu.avx512_vnni, "avx512_vnni");
  add(cpu.avx512_vbmi, "avx512_vbmi");
  add(cpu.avx_vnni, "avx_vnni");
  add(cpu.amx_int8, "amx_int8");
  return s.empty() ? "no SIMD extensions kvant uses" : s;
}

}  // namespace kvant
