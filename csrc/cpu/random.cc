// Philox streams on the CPU: the same per-element function the CUDA kernel calls.
#include "core/philox.h"
#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/kernels.h"

namespace imprint {
namespace cpu {

void random(const RandomArgs& args) {
  IMPRINT_CPU_DISPATCH(args.dtype, T, {
    if constexpr (std::is_same<typename Compute<T>::type, float>::value) {
      T* out = static_cast<T*>(args.out);
      parallel_for(args.numel, 1 << 14, [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) {
          const uint64_t idx = static_cast<uint64_t>(i);
          float v = args.kind == RandomKind::Uniform
                        ? philox::add_rn(args.a, philox::mul_rn(philox::uniform_at(args.seed, args.offset, idx),
                                                                philox::add_rn(args.b, -args.a)))
                        : philox::add_rn(args.a, philox::mul_rn(philox::normal_at(args.seed, args.offset, idx), args.b));
          out[i] = store<T>(v);
        }
      });
    } else {
      fail(ErrorCode::Internal, "cpu random reached with a non-float dtype");
    }
  });
}

}  // namespace cpu
}  // namespace imprint
