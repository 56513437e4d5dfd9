// The bias half of a linear layer on the CPU, shared by linear and the
// low-rank linear: adding b to every row, and its gradient, the column sums of dy.
#pragma once
#include <cstdint>

namespace imprint {
namespace cpu {

// y[i, j] += b[j] for rows × out.
void add_bias_rows(float* y, const float* b, int64_t rows, int64_t out);
// db[j] = Σ_i dy[i, j], summed in double (the sum runs over every row).
void bias_grad(const float* dy, int64_t rows, int64_t out, float* db);

}  // namespace cpu
}  // namespace imprint
