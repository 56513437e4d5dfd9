// Launch descriptions for the embedding ops (token embedding and its
// gradient, the sinusoidal timestep embedding), shared by the CPU kernels
// (csrc/cpu/embedding.cc) and the CUDA ones (cuda/embedding.cu). The plans in
// csrc/ops/embedding.cc validate shapes and fill these.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace imprint {

// out[i, :] = table[ids[i], :]. Ids are checked against vocab by the kernel
// (they are data), which throws naming the first bad one.
struct EmbeddingForwardArgs {
  DType dtype;       // table and out
  DType id_dtype;    // I32 or I64
  const void* ids;   // [n]
  const void* table; // [vocab, dim]
  void* out;         // [n, dim]
  int64_t n, vocab, dim;
};

// dtable[v, :] = Σ dy[i, :] over ids[i] == v, for rows with row_mask[v] != 0
// (all rows when row_mask is null); every other row is exactly 0.
struct EmbeddingBackwardArgs {
  DType dtype;
  DType id_dtype;
  const void* dy;           // [n, dim]
  const void* ids;          // [n]
  const uint8_t* row_mask;  // [vocab] or nullptr
  void* dtable;             // [vocab, dim]
  int64_t n, vocab, dim;
};

// diffusers' get_timestep_embedding: freq_j = exp(-ln(max_period)·j / (half - freq_shift)),
// out = [sin(scale·t·freq), cos(scale·t·freq)] (halves swapped when flip_sin_to_cos),
// zero-padded by one column when dim is odd.
struct TimestepEmbeddingArgs {
  DType dtype;
  const void* timesteps;  // [n]
  void* out;              // [n, dim]
  int64_t n, dim;
  bool flip_sin_to_cos;
  double freq_shift, max_period, scale;
};

}  // namespace imprint
