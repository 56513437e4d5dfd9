// The CUDA parity suite: each case runs the same computation on the CPU and on
// cuda:0 from the same inputs and compares every output, with a tolerance per
// dtype. It needs only the native build (no Node.js): GPU machines often have
// CMake and nvcc but no package registry. Run it with ctest or directly:
//   imprint_parity              every case, CPU against cuda:0
//   imprint_parity --cpu-only   every case on the CPU only (checks the cases
//                               themselves; what CI runs when it has no GPU)
//   imprint_parity <filter>     the cases whose name contains <filter>
//   imprint_parity --bench [filter]
//                               the native benchmark: times each case on
//                               cuda:0 (median of 10 runs after 2 warm-ups;
//                               every op synchronises), one JSON line per case
//
// A case file registers its cases with IMPRINT_PARITY_CASE:
//
//   IMPRINT_PARITY_CASE(silu_forward_bf16) {
//     ParityCase c;
//     c.inputs = {normal({2, 64, 8, 8}, DType::BF16)};
//     c.run = [](const Tensors& in) { return run_op("silu_forward", {&in[0]}, {}); };
//     return c;
//   }
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "ops/op_registry.h"

namespace imprint {
namespace parity {

using Tensors = std::vector<Tensor>;

// How a case's input is filled (on the CPU, from a seed derived from the
// case name and the input's position, so both devices see the same values).
struct InputSpec {
  enum class Fill { Normal, Uniform, Integers, Mask, Constant };
  Shape shape;
  DType dtype = DType::F32;
  Fill fill = Fill::Normal;
  double a = 0, b = 1;  // Normal: mean a, std b; Uniform: [a, b); Integers: [a, b); Mask: P(1) = a; Constant: a
};

InputSpec normal(const Shape& shape, DType dtype = DType::F32, double mean = 0, double std = 1);
InputSpec uniform(const Shape& shape, DType dtype, double lo, double hi);
// Integers in [lo, hi), stored as `dtype` (I32, I64 or a float type).
InputSpec integers(const Shape& shape, DType dtype, int64_t lo, int64_t hi);
// U8 (or float) 0/1 values, 1 with probability p.
InputSpec mask(const Shape& shape, DType dtype, double p);
InputSpec constant(const Shape& shape, DType dtype, double value);

// |cuda − cpu| ≤ atol + rtol·|cpu| elementwise, after both are widened to f32.
struct Tolerance {
  double rtol, atol;
};
// The defaults by output dtype: f32 1e-4/1e-5, f16 1e-2/1e-3, bf16 2e-2/1e-2.
Tolerance default_tolerance(DType dtype);

struct ParityCase {
  std::vector<InputSpec> inputs;
  // Computes the outputs from inputs that all live on one device; it runs
  // once with CPU inputs and once with the same values on cuda:0.
  std::function<Tensors(const Tensors& inputs)> run;
  // Per-output tolerance; empty: default_tolerance of each output's dtype.
  std::vector<Tolerance> tolerances;
  // Outputs not to compare (e.g. scratch or an RNG-dependent output), by index.
  std::vector<size_t> skip_outputs;
};

using CaseFactory = ParityCase (*)();
void register_case(const char* name, CaseFactory factory);

struct CaseRegistrar {
  CaseRegistrar(const char* name, CaseFactory f) { register_case(name, f); }
};

#define IMPRINT_PARITY_CASE(name)                                                               \
  static ::imprint::parity::ParityCase imprint_parity_case_##name();                            \
  static ::imprint::parity::CaseRegistrar imprint_parity_reg_##name(#name, imprint_parity_case_##name); \
  static ::imprint::parity::ParityCase imprint_parity_case_##name()

// Runs the registered nn op `op` now, on the calling thread, and returns all
// its outputs (the op's Launch, run and synchronised).
Tensors run_op(const std::string& op, const ops::OpInputs& inputs, const ops::Attrs& attrs);
// Attribute lists for run_op: attrs({{"groups", 8}, {"eps", 1e-5}}, {{"stride", {1, 1}}}).
ops::Attrs attrs(std::initializer_list<std::pair<const char*, double>> numbers,
                 std::initializer_list<std::pair<const char*, std::vector<double>>> lists = {});
// Runs one of the device-independent launches of ops.h (matmul, binary, ...) now.
Tensor run_launch(ops::Launch launch);

}  // namespace parity
}  // namespace imprint
