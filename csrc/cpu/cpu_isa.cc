#include "cpu/cpu_isa.h"

#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace imprint {
namespace cpu {

CpuIsa cpu_isa_detected() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::kAvx2;
  if (__builtin_cpu_supports("avx")) return CpuIsa::kAvx;
  if (__builtin_cpu_supports("sse4.2")) return CpuIsa::kSse42;
#endif
  return CpuIsa::kBaseline;
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx: return "avx";
    case CpuIsa::kSse42: return "sse4.2";
    case CpuIsa::kBaseline: break;
  }
#if defined(__x86_64__) || defined(__i386__)
  return "sse2";
#elif defined(__aarch64__)
  return "neon";
#else
  return "none";
#endif
}

namespace {

// The level IMPRINT_CPU_ISA names; an unknown name caps nothing (lib/native.ts
// refuses it before the addon loads, naming the variable).
CpuIsa requested_cap() {
  const char* v = std::getenv("IMPRINT_CPU_ISA");
  if (v == nullptr || *v == '\0') return CpuIsa::kAvx512;
  for (CpuIsa isa : {CpuIsa::kAvx512, CpuIsa::kAvx2, CpuIsa::kAvx, CpuIsa::kSse42}) {
    if (std::strcmp(v, cpu_isa_name(isa)) == 0) return isa;
  }
  if (std::strcmp(v, "baseline") == 0 || std::strcmp(v, cpu_isa_name(CpuIsa::kBaseline)) == 0) return CpuIsa::kBaseline;
  return CpuIsa::kAvx512;
}

}  // namespace

CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    const CpuIsa detected = cpu_isa_detected(), cap = requested_cap();
    return static_cast<int>(cap) < static_cast<int>(detected) ? cap : detected;
  }();
  return isa;
}

}  // namespace cpu
}  // namespace imprint
