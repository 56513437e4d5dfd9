// Parity cases for the backend's own operations (ops.h): GEMM, broadcast
// binary ops, sums, casts, fills and the counter-based RNG (bit-exact across
// devices by design, so compared with zero tolerance).
#include "ops/ops.h"
#include "parity.h"

namespace imprint {
namespace parity {
namespace {

ParityCase matmul_case(DType dtype, bool ta, bool tb, int64_t m, int64_t n, int64_t k, int64_t batch) {
  ParityCase c;
  const Shape a = ta ? Shape{batch, k, m} : Shape{batch, m, k};
  const Shape b = tb ? Shape{batch, n, k} : Shape{batch, k, n};
  c.inputs = {normal(a, dtype), normal(b, dtype)};
  c.run = [ta, tb](const Tensors& in) { return Tensors{run_launch(ops::matmul(in[0], in[1], ta, tb))}; };
  // Sums of k products: the error grows with √k in the storage dtype.
  if (dtype != DType::F32) c.tolerances = {{3e-2, 3e-2}};
  return c;
}

}  // namespace

IMPRINT_PARITY_CASE(matmul_f32_nn) { return matmul_case(DType::F32, false, false, 77, 65, 129, 2); }
IMPRINT_PARITY_CASE(matmul_f32_tn) { return matmul_case(DType::F32, true, false, 64, 40, 320, 1); }
IMPRINT_PARITY_CASE(matmul_f32_nt) { return matmul_case(DType::F32, false, true, 256, 77, 40, 3); }
IMPRINT_PARITY_CASE(matmul_f16_nt) { return matmul_case(DType::F16, false, true, 256, 128, 64, 2); }
IMPRINT_PARITY_CASE(matmul_bf16_nn) { return matmul_case(DType::BF16, false, false, 100, 96, 160, 2); }

IMPRINT_PARITY_CASE(binary_add_broadcast_f32) {
  ParityCase c;
  c.inputs = {normal({4, 3, 5}), normal({3, 1})};
  c.run = [](const Tensors& in) { return Tensors{run_launch(ops::binary(BinaryOp::Add, in[0], in[1]))}; };
  return c;
}

IMPRINT_PARITY_CASE(binary_mul_bf16) {
  ParityCase c;
  c.inputs = {normal({8, 1, 33}, DType::BF16), normal({8, 7, 33}, DType::BF16)};
  c.run = [](const Tensors& in) { return Tensors{run_launch(ops::binary(BinaryOp::Mul, in[0], in[1]))}; };
  return c;
}

IMPRINT_PARITY_CASE(sum_dims_f32) {
  ParityCase c;
  c.inputs = {normal({6, 130, 7})};
  c.run = [](const Tensors& in) { return Tensors{run_launch(ops::sum(in[0], {1}, false)), run_launch(ops::sum(in[0], {}, false))}; };
  c.tolerances = {{1e-4, 1e-4}, {1e-4, 1e-3}};
  return c;
}

IMPRINT_PARITY_CASE(cast_f32_bf16_f16) {
  ParityCase c;
  c.inputs = {normal({1000}, DType::F32, 0, 100)};
  c.run = [](const Tensors& in) { return Tensors{run_launch(ops::cast(in[0], DType::BF16)), run_launch(ops::cast(in[0], DType::F16))}; };
  c.tolerances = {{0, 0}, {0, 0}};  // round to nearest even on both
  return c;
}

IMPRINT_PARITY_CASE(random_normal_bit_exact) {
  ParityCase c;
  c.inputs = {constant({1}, DType::F32, 0)};
  c.run = [](const Tensors& in) {
    return Tensors{run_launch(ops::random(RandomKind::Normal, {3, 1001}, DType::F32, in[0].device, 42, 7, 0, 1)),
                   run_launch(ops::random(RandomKind::Uniform, {513}, DType::F32, in[0].device, 3, 0, -1, 1))};
  };
  c.tolerances = {{0, 0}, {0, 0}};
  return c;
}

IMPRINT_PARITY_CASE(full_bf16) {
  ParityCase c;
  c.inputs = {constant({1}, DType::F32, 0)};
  c.run = [](const Tensors& in) { return Tensors{run_launch(ops::full({17, 3}, DType::BF16, in[0].device, 0.3))}; };
  c.tolerances = {{0, 0}};
  return c;
}

}  // namespace parity
}  // namespace imprint
