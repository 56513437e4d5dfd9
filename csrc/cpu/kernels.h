// CPU kernels: the reference implementation of every op, and the CPU backend's
// compute. Each takes the launch description from core/kernel_args.h.
#pragma once
#include "core/kernel_args.h"

namespace imprint {
namespace cpu {

void matmul(const MatmulArgs& args);
void binary(const BinaryArgs& args);
void sum(const SumArgs& args);
void random(const RandomArgs& args);
void cast(const CastArgs& args);
void fill(const FillArgs& args);

// Element offset of batch index `b` for the given per-dimension strides.
int64_t batch_offset(const MatmulArgs& args, int64_t b, const int64_t* strides);

}  // namespace cpu
}  // namespace imprint
