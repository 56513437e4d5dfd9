// Launch descriptions for the method kernels (DESIGN.md §1.2 Cones, §1.3
// tuning encoder), shared by the CPU kernels (csrc/cpu/method_*.cc) and the
// CUDA ones (cuda/method_*.cu). The plans in csrc/ops/method.cc validate
// shapes and fill these. Float inputs are f32, f16 or bf16; arithmetic is f32.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// The most neighbours token_topk_cosine returns per query (one CUDA block
// sorts 1024 candidates and keeps k of them; k ≤ 256 keeps each merge pass
// shrinking the candidate list at least fourfold).
constexpr int64_t kTokenTopkMaxK = 256;

// Euclidean norms of the rows of a [rows, dim] matrix, f32 out. A cosine is
// dot / (‖a‖·‖b‖), and 0 when either norm is 0.
struct RowNormsArgs {
  DType dtype;
  const void* x;  // [rows, dim]
  float* norms;   // [rows]
  int64_t rows, dim;
};

// For each query b: the k vocabulary rows of highest cosine similarity,
// sorted by similarity descending, equal similarities by lower row first.
struct TokenTopkArgs {
  DType dtype;                // queries and vocab
  const void* queries;        // [batch, dim]
  const void* vocab;          // [vocab_size, dim]
  const float* vocab_norms;   // [vocab_size], or nullptr: the kernel computes them
  int32_t* indices;           // [batch, k]
  float* similarities;        // [batch, k]
  int64_t batch, vocab_size, dim, k;
};

// Contrastive nearest-neighbour loss (the plan's comment in csrc/ops/method.cc
// gives the formula). Forward writes the mean loss (f32, shape []); backward
// writes dqueries [batch, dim] in the queries' dtype, scaled by grad_scale.
struct ContrastiveNnArgs {
  DType dtype;             // queries and neighbours (and dqueries)
  const void* queries;     // [batch, dim]
  const void* neighbours;  // [batch, k, dim]
  void* out;               // forward: float loss []; backward: dqueries [batch, dim]
  int64_t batch, k, dim;
  double temperature;
  double grad_scale;       // backward only
};

// One Cones statistic step over numel elements, into new tensors:
//   stat_out = stat + θ·g;  theta_out = θ − ρ·θ·θ·g   (f32 arithmetic, θ rounded on store)
struct NeuronStatStepArgs {
  DType dtype;           // theta, grad, theta_out
  const void* theta;
  const void* grad;
  const float* stat;
  void* theta_out;
  float* stat_out;
  int64_t numel;
  double rho;
};

// Sparse neuron masking of a flat weight at n sorted, unique, in-range
// indices (checked by the op before the kernel runs). weight_out starts as a
// copy of weight; then
//   apply:   saved[i] = weight[indices[i]], weight_out[indices[i]] = 0
//   restore: weight_out[indices[i]] = saved[i]
struct NeuronMaskArgs {
  DType dtype;            // weight, saved, weight_out
  const void* weight;     // [numel]
  const int64_t* indices; // [n]
  const void* saved_in;   // restore: [n]; apply: nullptr
  void* saved_out;        // apply: [n]; restore: nullptr
  void* weight_out;       // [numel]
  int64_t numel, n;
};

}  // namespace imprint
