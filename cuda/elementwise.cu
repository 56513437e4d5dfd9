// Broadcast binary ops (add, mul), fill and dtype casts on the GPU: the same
// semantics as csrc/cpu/elementwise.cc, one grid-stride thread per element.
#include <cstring>
#include <type_traits>

#include "cuda_check.cuh"
#include "element.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// --- binary ------------------------------------------------------------------

// Integer add/mul wrap around (two's complement) like the CPU: computing in the
// unsigned type keeps overflow defined.
template <class C>
__device__ __forceinline__ C apply(BinaryOp op, C x, C y) {
  if constexpr (std::is_integral<C>::value) {
    using U = typename std::make_unsigned<C>::type;
    const U r = op == BinaryOp::Add ? static_cast<U>(static_cast<U>(x) + static_cast<U>(y))
                                    : static_cast<U>(static_cast<U>(x) * static_cast<U>(y));
    return static_cast<C>(r);
  } else {
    return op == BinaryOp::Add ? x + y : x * y;
  }
}

// The args travel by value (kernel parameter space), shape and strides included.
// Element i is decomposed over the (collapsed) shape, innermost dim first; the
// outermost dim needs no division because its index is what remains.
template <class T>
__global__ void binary_kernel(BinaryArgs p) {
  using C = typename Compute<T>::type;
  const T* a = static_cast<const T*>(p.a);
  const T* b = static_cast<const T*>(p.b);
  T* out = static_cast<T*>(p.out);
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p.numel; i += step) {
    int64_t rem = i, ao = 0, bo = 0;
    for (int d = p.ndim - 1; d > 0; --d) {
      const int64_t q = rem / p.shape[d];
      const int64_t idx = rem - q * p.shape[d];
      ao += idx * p.a_strides[d];
      bo += idx * p.b_strides[d];
      rem = q;
    }
    ao += rem * p.a_strides[0];
    bo += rem * p.b_strides[0];
    out[i] = store<T>(apply<C>(p.op, load(a[ao]), load(b[bo])));
  }
}

// Drops size-1 dims and merges neighbours that both operands walk as one
// (outer stride == inner stride * inner size). Contiguous or scalar operands
// collapse to one dim, so the common cases need no index division at all.
BinaryArgs collapse(const BinaryArgs& args) {
  BinaryArgs p = args;
  int n = 0;
  for (int d = 0; d < args.ndim; ++d) {
    const int64_t size = args.shape[d], as = args.a_strides[d], bs = args.b_strides[d];
    if (size == 1) continue;
    if (n > 0 && p.a_strides[n - 1] == as * size && p.b_strides[n - 1] == bs * size) {
      p.shape[n - 1] *= size;
      p.a_strides[n - 1] = as;
      p.b_strides[n - 1] = bs;
    } else {
      p.shape[n] = size;
      p.a_strides[n] = as;
      p.b_strides[n] = bs;
      ++n;
    }
  }
  if (n == 0) {  // a scalar (or all dims of size 1): one element at offset 0
    p.shape[0] = 1;
    p.a_strides[0] = 0;
    p.b_strides[0] = 0;
    n = 1;
  }
  p.ndim = n;
  return p;
}

// --- cast --------------------------------------------------------------------

// One element of csrc/cpu/elementwise.cc's cast_typed: to f16/bf16 through
// float; float to integer truncates toward zero, saturates, and maps NaN to 0;
// everything else is a plain C++ conversion (integers wrap modulo 2^bits).
template <class Dst, class V>
__device__ __forceinline__ Dst cast_value(V v) {
  if constexpr (is_half<Dst>) {
    return store<Dst>(static_cast<float>(v));
  } else if constexpr (std::is_integral<Dst>::value && std::is_floating_point<V>::value) {
    const double x = static_cast<double>(v);
    const double lo = static_cast<double>(IntLimits<Dst>::min);
    const double hi = static_cast<double>(IntLimits<Dst>::max);
    return x != x ? Dst(0) : x <= lo ? IntLimits<Dst>::min : x >= hi ? IntLimits<Dst>::max : static_cast<Dst>(x);
  } else {
    return static_cast<Dst>(v);
  }
}

template <class Src, class Dst>
__global__ void cast_kernel(const Src* in, Dst* out, int64_t n) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    out[i] = cast_value<Dst>(load(in[i]));
  }
}

// --- fill --------------------------------------------------------------------

// Fill works on raw words of the element's size: the value is converted once
// on the host, exactly as the CPU does, and the kernel only copies bits.
template <class W>
__global__ void fill_kernel(W* out, int64_t n, W value) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) out[i] = value;
}

template <size_t N> struct Word;
template <> struct Word<1> { using type = uint8_t; };
template <> struct Word<2> { using type = uint16_t; };
template <> struct Word<4> { using type = uint32_t; };
template <> struct Word<8> { using type = unsigned long long; };

template <class T>
void fill_typed(const FillArgs& args, cudaStream_t stream) {
  using C = typename Compute<T>::type;
  using W = typename Word<sizeof(T)>::type;
  const T value = store<T>(static_cast<C>(args.value));
  W word;
  std::memcpy(&word, &value, sizeof(W));
  // A value whose bytes are all equal (zero above all) is a plain memset.
  unsigned char bytes[sizeof(W)];
  std::memcpy(bytes, &word, sizeof(W));
  bool uniform = true;
  for (size_t i = 1; i < sizeof(W); ++i) uniform = uniform && bytes[i] == bytes[0];
  if (uniform) {
    check(cudaMemsetAsync(args.out, bytes[0], static_cast<size_t>(args.numel) * sizeof(W), stream),
          "fill: cudaMemsetAsync");
    return;
  }
  fill_kernel<W><<<grid_size(args.numel), kThreads, 0, stream>>>(static_cast<W*>(args.out), args.numel, word);
  check_launch("fill kernel");
}

}  // namespace

void launch_binary(const BinaryArgs& args, cudaStream_t stream) {
  if (args.numel <= 0) return;
  const BinaryArgs p = collapse(args);
  IMPRINT_CUDA_DISPATCH(args.dtype, T, {
    binary_kernel<T><<<grid_size(p.numel), kThreads, 0, stream>>>(p);
    check_launch(args.op == BinaryOp::Add ? "add kernel" : "mul kernel");
  });
}

void launch_cast(const CastArgs& args, cudaStream_t stream) {
  if (args.numel <= 0) return;
  IMPRINT_CUDA_DISPATCH(args.src_dtype, S, IMPRINT_CUDA_DISPATCH(args.dst_dtype, D, {
    cast_kernel<S, D><<<grid_size(args.numel), kThreads, 0, stream>>>(static_cast<const S*>(args.in),
                                                                       static_cast<D*>(args.out), args.numel);
    check_launch("cast kernel");
  }));
}

void launch_fill(const FillArgs& args, cudaStream_t stream) {
  if (args.numel <= 0) return;
  IMPRINT_CUDA_DISPATCH(args.dtype, T, fill_typed<T>(args, stream));
}

}  // namespace cuda
}  // namespace imprint
