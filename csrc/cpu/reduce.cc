// Sum over any set of dimensions. Floats accumulate in double, integers in
// int64, so the CPU result is the accurate reference for the GPU's.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/kernels.h"

namespace imprint {
namespace cpu {
namespace {

template <class T>
using Acc = typename std::conditional<std::is_integral<T>::value, int64_t, double>::type;

// Contiguous f32 run: 16 float lanes over blocks of 256 elements (vectorised),
// each block's total added in double. Each lane sums at most 16 values, so the
// float error stays near 2^-24 relative while the long sum keeps double's range.
double contiguous_f32_sum(const float* x, int64_t n) {
  constexpr int64_t kLanes = 16, kBlock = 256;
  double total = 0;
  for (int64_t i = 0; i < n; i += kBlock) {
    const int64_t len = std::min(kBlock, n - i), full = len - len % kLanes;
    float lanes[kLanes] = {};
    for (int64_t j = 0; j < full; j += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] += x[i + j + l];
    double block = 0;
    for (int64_t l = 0; l < kLanes; ++l) block += lanes[l];
    for (int64_t j = full; j < len; ++j) block += x[i + j];
    total += block;
  }
  return total;
}

// Sum of the reduced sub-space [r0, r1) starting at input offset `base`.
template <class T>
Acc<T> partial_sum(const SumArgs& args, const T* in, int64_t base, int64_t r0, int64_t r1) {
  Acc<T> acc = 0;
  const int nd = args.r_ndim;
  const int64_t inner = nd == 0 ? 1 : args.r_shape[nd - 1];
  const int64_t inner_stride = nd == 0 ? 0 : args.r_strides[nd - 1];
  int64_t r = r0;
  while (r < r1) {
    // Offset of reduced index r, then run along the innermost reduced dim.
    int64_t rem = r / inner, offset = base;
    for (int d = nd - 2; d >= 0; --d) {
      offset += (rem % args.r_shape[d]) * args.r_strides[d];
      rem /= args.r_shape[d];
    }
    const int64_t j0 = r % inner, j1 = std::min(inner, j0 + (r1 - r));
    if (std::is_same<T, float>::value && inner_stride == 1) {
      acc += contiguous_f32_sum(reinterpret_cast<const float*>(in) + offset + j0, j1 - j0);
    } else {
      for (int64_t j = j0; j < j1; ++j) acc += static_cast<Acc<T>>(load(in[offset + j * inner_stride]));
    }
    r += j1 - j0;
  }
  return acc;
}

template <class T>
int64_t out_base(const SumArgs& args, int64_t o) {
  int64_t base = 0;
  for (int d = args.out_ndim - 1; d >= 0; --d) {
    base += (o % args.out_shape[d]) * args.in_out_strides[d];
    o /= args.out_shape[d];
  }
  return base;
}

template <class T, class O>
void write(O* out, int64_t i, Acc<T> v) {
  if constexpr (std::is_same<O, f16_t>::value || std::is_same<O, bf16_t>::value) out[i] = store<O>(static_cast<float>(v));
  else out[i] = static_cast<O>(v);
}

template <class T, class O>
void sum_typed(const SumArgs& args) {
  const T* in = static_cast<const T*>(args.in);
  O* out = static_cast<O*>(args.out);
  if (args.out_numel == 1) {
    // One output: split the reduction across threads, then add the partials.
    const int64_t chunks = std::min<int64_t>(num_threads() * 4, std::max<int64_t>(1, args.r_numel / 4096));
    std::vector<Acc<T>> partials(static_cast<size_t>(chunks), 0);
    parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c)
        partials[c] = partial_sum<T>(args, in, 0, args.r_numel * c / chunks, args.r_numel * (c + 1) / chunks);
    });
    Acc<T> total = 0;
    for (Acc<T> p : partials) total += p;
    write<T, O>(out, 0, total);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(args.r_numel, 1));
  parallel_for(args.out_numel, grain, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o) write<T, O>(out, o, partial_sum<T>(args, in, out_base<T>(args, o), 0, args.r_numel));
  });
}

}  // namespace

void sum(const SumArgs& args) {
  IMPRINT_CPU_DISPATCH(args.in_dtype, T, IMPRINT_CPU_DISPATCH(args.out_dtype, O, sum_typed<T, O>(args)));
}

}  // namespace cpu
}  // namespace imprint
