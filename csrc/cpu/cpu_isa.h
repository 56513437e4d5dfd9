// The instruction set Imprint's own CPU kernels use: the best the CPU has, or
// less when IMPRINT_CPU_ISA asks (read once), so the other code paths and their
// summation orders can be tested on any machine. BLAS libraries dispatch on
// their own and are not affected.
#pragma once

namespace imprint {
namespace cpu {

// Ordered: a level includes every level before it.
enum class CpuIsa { kBaseline = 0, kSse42 = 1, kAvx = 2, kAvx2 = 3, kAvx512 = 4 };

// What the CPU supports (x86-64: AVX2 counts only with FMA).
CpuIsa cpu_isa_detected();
// What the kernels use: the detected level, capped by IMPRINT_CPU_ISA.
CpuIsa cpu_isa();
// "avx512", "avx2", "avx", "sse4.2", or the architecture's baseline ("sse2", "neon", "none").
const char* cpu_isa_name(CpuIsa isa);

}  // namespace cpu
}  // namespace imprint
