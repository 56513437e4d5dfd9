// Sum over any set of dimensions on the GPU, as csrc/cpu/reduce.cc defines it:
// floats accumulate in double (like the CPU, so results agree closely) and are
// written in their own dtype; integers accumulate in 64 bits with wraparound
// and are written as int64.
//
// Two block shapes share the work:
//  - rows: one block per output, its threads striding over the reduced
//    elements, then block_sum (block_reduce.cuh: warp shuffles, then the warps'
//    sums in order). Best when the reduced elements are adjacent in memory
//    (summing the last dims).
//  - cols: a block of bx outputs x by reducers, adjacent threads taking
//    adjacent outputs, then a shared-memory tree over by. Best when the kept
//    elements are adjacent (summing leading dims), and for tiny reductions.
// When there are too few outputs to fill the GPU, the reduction is also split
// into chunks (grid.y) whose partial sums a second kernel adds in a fixed
// order, so results stay deterministic.
#include <type_traits>

#include "block_reduce.cuh"
#include "cuda_check.cuh"
#include "element.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// Accumulator: double for floats, unsigned 64-bit for integers (wraps like
// two's complement without undefined overflow).
template <class T>
using Acc = typename std::conditional<std::is_integral<T>::value, unsigned long long, double>::type;
// Output element: floats keep their dtype, integers become int64.
template <class T>
using Out = typename std::conditional<std::is_integral<T>::value, int64_t, T>::type;

constexpr int kBlock = 256;        // threads per block for both shapes
constexpr int kMaxSplits = 1024;   // chunks one output's reduction may be split into
constexpr int64_t kMinPerThread = 16;  // reduced elements each thread should at least get per chunk

template <class T>
__device__ __forceinline__ Acc<T> to_acc(T v) {
  return static_cast<Acc<T>>(load(v));
}

template <class T>
__device__ __forceinline__ void write_out(Out<T>* out, int64_t o, Acc<T> v) {
  if constexpr (std::is_integral<T>::value) {
    out[o] = static_cast<int64_t>(v);
  } else {
    // double -> float, then (f16/bf16) float -> 16 bits: the CPU's two roundings.
    out[o] = store<T>(static_cast<float>(v));
  }
}

// Input offset of output o's first element, and of reduced index r relative to
// it: the index is decomposed innermost dim first; the outermost index is what
// remains, so a single dim needs no division.
__device__ __forceinline__ int64_t out_base(const SumArgs& p, int64_t o) {
  if (p.out_ndim == 0) return 0;
  int64_t base = 0;
  for (int d = p.out_ndim - 1; d > 0; --d) {
    const int64_t q = o / p.out_shape[d];
    base += (o - q * p.out_shape[d]) * p.in_out_strides[d];
    o = q;
  }
  return base + o * p.in_out_strides[0];
}

__device__ __forceinline__ int64_t r_offset(const SumArgs& p, int64_t r) {
  if (p.r_ndim == 0) return 0;
  int64_t offset = 0;
  for (int d = p.r_ndim - 1; d > 0; --d) {
    const int64_t q = r / p.r_shape[d];
    offset += (r - q * p.r_shape[d]) * p.r_strides[d];
    r = q;
  }
  return offset + r * p.r_strides[0];
}

// Chunk blockIdx.y (of gridDim.y) of the reduction is [r0, r1). With one chunk
// the result goes straight to `out`; otherwise to partials[o * chunks + chunk].
__device__ __forceinline__ void chunk_range(const SumArgs& p, int64_t chunk, int64_t* r0, int64_t* r1) {
  *r0 = static_cast<int64_t>(blockIdx.y) * chunk;
  *r1 = min(p.r_numel, *r0 + chunk);
}

template <class T>
__global__ void __launch_bounds__(kBlock) sum_rows_kernel(SumArgs p, int64_t chunk, Acc<T>* partials) {
  const T* in = static_cast<const T*>(p.in);
  int64_t r0, r1;
  chunk_range(p, chunk, &r0, &r1);
  // The loop bounds depend on the block only, so every thread reaches block_sum.
  for (int64_t o = blockIdx.x; o < p.out_numel; o += gridDim.x) {
    const int64_t base = out_base(p, o);
    Acc<T> acc = 0;
    for (int64_t r = r0 + threadIdx.x; r < r1; r += blockDim.x) acc += to_acc(in[base + r_offset(p, r)]);
    acc = block_sum(acc);
    if (threadIdx.x == 0) {
      if (partials) partials[o * gridDim.y + blockIdx.y] = acc;
      else write_out<T>(static_cast<Out<T>*>(p.out), o, acc);
    }
  }
}

// blockDim = (bx, by), both powers of two, bx * by <= kBlock.
template <class T>
__global__ void __launch_bounds__(kBlock) sum_cols_kernel(SumArgs p, int64_t chunk, Acc<T>* partials) {
  __shared__ Acc<T> tile[kBlock];
  const T* in = static_cast<const T*>(p.in);
  const int tx = threadIdx.x, ty = threadIdx.y, bx = blockDim.x;
  int64_t r0, r1;
  chunk_range(p, chunk, &r0, &r1);
  for (int64_t o0 = static_cast<int64_t>(blockIdx.x) * bx; o0 < p.out_numel; o0 += static_cast<int64_t>(gridDim.x) * bx) {
    const int64_t o = o0 + tx;
    Acc<T> acc = 0;
    if (o < p.out_numel) {
      const int64_t base = out_base(p, o);
      for (int64_t r = r0 + ty; r < r1; r += blockDim.y) acc += to_acc(in[base + r_offset(p, r)]);
    }
    tile[ty * bx + tx] = acc;
    __syncthreads();
    for (int s = blockDim.y / 2; s > 0; s >>= 1) {
      if (ty < s) tile[ty * bx + tx] += tile[(ty + s) * bx + tx];
      __syncthreads();
    }
    if (ty == 0 && o < p.out_numel) {
      if (partials) partials[o * gridDim.y + blockIdx.y] = tile[tx];
      else write_out<T>(static_cast<Out<T>*>(p.out), o, tile[tx]);
    }
    __syncthreads();  // tile is rewritten by the next group of outputs
  }
}

// Adds each output's chunk partials in chunk order (deterministic).
template <class T>
__global__ void sum_partials_kernel(SumArgs p, int64_t chunks, const Acc<T>* partials) {
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; o < p.out_numel; o += step) {
    Acc<T> acc = 0;
    for (int64_t c = 0; c < chunks; ++c) acc += partials[o * chunks + c];
    write_out<T>(static_cast<Out<T>*>(p.out), o, acc);
  }
}

// Drops size-1 dims and merges neighbouring dims that the input walks as one
// (outer stride == inner stride * inner size), separately for the kept and the
// reduced dims. Fewer dims means fewer divisions per element; the order of
// outputs and the set of reduced elements do not change.
void collapse_dims(int* ndim, int64_t* shape, int64_t* strides) {
  int n = 0;
  for (int d = 0; d < *ndim; ++d) {
    const int64_t size = shape[d], stride = strides[d];
    if (size == 1) continue;
    if (n > 0 && strides[n - 1] == stride * size) {
      shape[n - 1] *= size;
      strides[n - 1] = stride;
    } else {
      shape[n] = size;
      strides[n] = stride;
      ++n;
    }
  }
  *ndim = n;
}

int64_t pow2_ceil(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

int current_device_attribute(cudaDeviceAttr attr, const char* what) {
  int device = 0, value = 0;
  check(cudaGetDevice(&device), "sum: cudaGetDevice");
  check(cudaDeviceGetAttribute(&value, attr, device), what);
  return value;
}

template <class T>
void sum_typed(const SumArgs& args, cudaStream_t stream) {
  SumArgs p = args;
  collapse_dims(&p.out_ndim, p.out_shape, p.in_out_strides);
  collapse_dims(&p.r_ndim, p.r_shape, p.r_strides);

  // Shape of the work: cols when adjacent outputs read adjacent input (the
  // innermost kept dim has stride 1) or when each output sums only a few values.
  const bool outputs_adjacent = p.out_ndim > 0 && p.in_out_strides[p.out_ndim - 1] == 1;
  const bool cols = outputs_adjacent || p.r_numel < 32;
  dim3 block;
  int64_t out_blocks, reducers;
  if (cols) {
    const int bx = static_cast<int>(std::min<int64_t>(32, pow2_ceil(p.out_numel)));
    const int by = static_cast<int>(std::min<int64_t>(kBlock / bx, pow2_ceil(p.r_numel)));
    block = dim3(bx, by);
    out_blocks = (p.out_numel + bx - 1) / bx;
    reducers = by;
  } else {
    const int threads = static_cast<int>(std::min<int64_t>(kBlock, (p.r_numel + 31) / 32 * 32));
    block = dim3(threads);
    out_blocks = p.out_numel;
    reducers = threads;
  }

  // Split the reduction when the outputs alone give too few blocks; the
  // partials live in stream-ordered scratch memory (skipped where the device
  // has no memory pools or no room: one chunk is always correct).
  int64_t chunks = 1;
  const int64_t target_blocks = 4 * static_cast<int64_t>(current_device_attribute(
                                        cudaDevAttrMultiProcessorCount, "sum: cudaDeviceGetAttribute(SM count)"));
  const int64_t min_chunk = reducers * kMinPerThread;
  if (out_blocks < target_blocks && p.r_numel >= 2 * min_chunk) {
    chunks = std::min<int64_t>({(target_blocks + out_blocks - 1) / out_blocks, p.r_numel / min_chunk, kMaxSplits,
                                std::max<int64_t>(1, (int64_t{1} << 20) / p.out_numel)});
  }
  int64_t chunk = p.r_numel;
  Acc<T>* partials = nullptr;
  if (chunks > 1 && current_device_attribute(cudaDevAttrMemoryPoolsSupported,
                                             "sum: cudaDeviceGetAttribute(memory pools)") != 0) {
    chunk = (p.r_numel + chunks - 1) / chunks;
    chunks = (p.r_numel + chunk - 1) / chunk;  // no empty trailing chunk
    const size_t bytes = static_cast<size_t>(p.out_numel * chunks) * sizeof(Acc<T>);
    if (cudaMallocAsync(reinterpret_cast<void**>(&partials), bytes, stream) != cudaSuccess) {
      cudaGetLastError();  // not fatal: fall back to one chunk
      partials = nullptr;
    }
  }
  if (partials == nullptr) {
    chunks = 1;
    chunk = p.r_numel;
  }

  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(out_blocks, int64_t{1} << 20)), static_cast<unsigned>(chunks));
  if (cols) sum_cols_kernel<T><<<grid, block, 0, stream>>>(p, chunk, partials);
  else sum_rows_kernel<T><<<grid, block, 0, stream>>>(p, chunk, partials);
  cudaError_t err = cudaGetLastError();
  if (partials != nullptr) {
    if (err == cudaSuccess) {
      sum_partials_kernel<T><<<grid_size(p.out_numel), kThreads, 0, stream>>>(p, chunks, partials);
      err = cudaGetLastError();
    }
    // Freed in stream order, after the kernels; released even when a launch failed.
    const cudaError_t freed = cudaFreeAsync(partials, stream);
    if (err == cudaSuccess) err = freed;
    else cudaGetLastError();
  }
  check(err, "launching sum kernel");
}

}  // namespace

void launch_sum(const SumArgs& args, cudaStream_t stream) {
  if (args.out_numel <= 0) return;
  if (args.r_numel <= 0) {  // an empty sum is 0 (the op layer normally handles this)
    launch_fill(FillArgs{args.out_dtype, args.out, args.out_numel, 0.0}, stream);
    return;
  }
  const bool int_in = !is_floating(args.in_dtype);
  if (args.out_dtype != (int_in ? DType::I64 : args.in_dtype)) {
    fail(ErrorCode::Internal, std::string("cuda sum: unsupported output dtype ") + dtype_name(args.out_dtype) +
                                  " for input " + dtype_name(args.in_dtype));
  }
  IMPRINT_CUDA_DISPATCH(args.in_dtype, T, sum_typed<T>(args, stream));
}

}  // namespace cuda
}  // namespace imprint
