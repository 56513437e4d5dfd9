// Philox streams on the GPU. Each element calls the very functions the CPU
// calls (core/philox.h) with the same explicitly rounded affine transform as
// csrc/cpu/random.cc, so rand/randn give bit-identical values on both devices.
#include <type_traits>

#include "core/philox.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

template <class T>
__global__ void random_kernel(RandomArgs p) {
  T* out = static_cast<T*>(p.out);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    const uint64_t idx = static_cast<uint64_t>(i);
    const float v = p.kind == RandomKind::Uniform
                        ? philox::add_rn(p.a, philox::mul_rn(philox::uniform_at(p.seed, p.offset, idx),
                                                             philox::add_rn(p.b, -p.a)))
                        : philox::add_rn(p.a, philox::mul_rn(philox::normal_at(p.seed, p.offset, idx), p.b));
    out[i] = store<T>(v);
  }
}

}  // namespace

void launch_random(const RandomArgs& args, cudaStream_t stream) {
  if (args.numel <= 0) return;
  switch (args.dtype) {
    case DType::F32: random_kernel<float><<<grid_size(args.numel), kThreads, 0, stream>>>(args); break;
    case DType::F16: random_kernel<f16><<<grid_size(args.numel), kThreads, 0, stream>>>(args); break;
    case DType::BF16: random_kernel<bf16><<<grid_size(args.numel), kThreads, 0, stream>>>(args); break;
    default: fail(ErrorCode::Internal, std::string("cuda random reached with dtype ") + dtype_name(args.dtype));
  }
  check_launch(args.kind == RandomKind::Uniform ? "rand kernel" : "randn kernel");
}

}  // namespace cuda
}  // namespace imprint
