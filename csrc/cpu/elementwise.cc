// Broadcast binary ops (add, mul), fill and dtype casts.
#include <algorithm>
#include <limits>
#include <type_traits>

#include "core/thread_pool.h"
#include "cpu/element.h"
#include "cpu/kernels.h"

namespace imprint {
namespace cpu {
namespace {

constexpr int64_t kGrain = 1 << 15;

// Integer add/mul wrap around (two's complement), as in PyTorch; computing in
// the unsigned type avoids signed-overflow undefined behaviour.
template <class C>
inline C apply(BinaryOp op, C x, C y) {
  if constexpr (std::is_integral<C>::value) {
    using U = typename std::make_unsigned<C>::type;
    U r = op == BinaryOp::Add ? static_cast<U>(static_cast<U>(x) + static_cast<U>(y))
                              : static_cast<U>(static_cast<U>(x) * static_cast<U>(y));
    return static_cast<C>(r);
  } else {
    return op == BinaryOp::Add ? x + y : x * y;
  }
}

template <class T>
void binary_typed(const BinaryArgs& args) {
  const T* a = static_cast<const T*>(args.a);
  const T* b = static_cast<const T*>(args.b);
  T* out = static_cast<T*>(args.out);
  const int nd = args.ndim;
  // Rows along the last dimension; each row walks a and b with fixed strides.
  const int64_t cols = nd == 0 ? 1 : args.shape[nd - 1];
  const int64_t as = nd == 0 ? 0 : args.a_strides[nd - 1];
  const int64_t bs = nd == 0 ? 0 : args.b_strides[nd - 1];
  using C = typename Compute<T>::type;
  if (nd <= 1) {
    // One run of elements (after dim merging): split it across threads directly.
    parallel_for(args.numel, kGrain, [&](int64_t i0, int64_t i1) {
      if (as == 1 && bs == 1) {
        for (int64_t j = i0; j < i1; ++j) out[j] = store<T>(apply<C>(args.op, load(a[j]), load(b[j])));
      } else {
        for (int64_t j = i0; j < i1; ++j) out[j] = store<T>(apply<C>(args.op, load(a[j * as]), load(b[j * bs])));
      }
    });
    return;
  }
  const int64_t rows = cols == 0 ? 0 : args.numel / cols;
  const int64_t grain_rows = std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1));
  parallel_for(rows, grain_rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t ao = 0, bo = 0, rem = r;
      for (int d = nd - 2; d >= 0; --d) {
        const int64_t idx = rem % args.shape[d];
        rem /= args.shape[d];
        ao += idx * args.a_strides[d];
        bo += idx * args.b_strides[d];
      }
      const T* ar = a + ao;
      const T* br = b + bo;
      T* orow = out + r * cols;
      if (as == 1 && bs == 1) {
        for (int64_t j = 0; j < cols; ++j) orow[j] = store<T>(apply<C>(args.op, load(ar[j]), load(br[j])));
      } else {
        for (int64_t j = 0; j < cols; ++j)
          orow[j] = store<T>(apply<C>(args.op, load(ar[j * as]), load(br[j * bs])));
      }
    }
  });
}

template <class Src, class Dst>
void cast_typed(const Src* in, Dst* out, int64_t n) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      auto v = load(in[i]);
      if constexpr (std::is_same<Dst, f16_t>::value || std::is_same<Dst, bf16_t>::value) {
        out[i] = store<Dst>(static_cast<float>(v));
      } else if constexpr (std::is_integral<Dst>::value && std::is_floating_point<decltype(v)>::value) {
        // Float to integer truncates toward zero and saturates; NaN becomes 0
        // (defined, unlike a plain out-of-range cast).
        const double x = static_cast<double>(v);
        const double lo = static_cast<double>(std::numeric_limits<Dst>::min());
        const double hi = static_cast<double>(std::numeric_limits<Dst>::max());
        out[i] = x != x ? Dst(0) : x <= lo ? std::numeric_limits<Dst>::min()
                                 : x >= hi ? std::numeric_limits<Dst>::max() : static_cast<Dst>(x);
      } else {
        out[i] = static_cast<Dst>(v);
      }
    }
  });
}

}  // namespace

void binary(const BinaryArgs& args) { IMPRINT_CPU_DISPATCH(args.dtype, T, binary_typed<T>(args)); }

void cast(const CastArgs& args) {
  IMPRINT_CPU_DISPATCH(args.src_dtype, S,
                       IMPRINT_CPU_DISPATCH(args.dst_dtype, D,
                                            cast_typed<S, D>(static_cast<const S*>(args.in), static_cast<D*>(args.out),
                                                             args.numel)));
}

void fill(const FillArgs& args) {
  IMPRINT_CPU_DISPATCH(args.dtype, T, {
    using C = typename Compute<T>::type;
    const T value = store<T>(static_cast<C>(args.value));
    T* out = static_cast<T*>(args.out);
    parallel_for(args.numel, kGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) out[i] = value;
    });
  });
}

}  // namespace cpu
}  // namespace imprint
