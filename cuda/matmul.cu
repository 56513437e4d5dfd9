// Batched GEMM on the GPU: C[b] = op(A[b]) · op(B[b]), row-major, f32
// accumulation for every element type (f16/bf16 widen to f32 on load and are
// rounded to nearest even on store, as on the CPU).
//
// Classic shared-memory tiling: a block of 256 threads owns a 64x64 tile of C
// and walks k in steps of 16. Each step stages a 64x16 panel of A and a 16x64
// panel of B in shared memory (converted to f32, zero-padded at the edges),
// and every thread accumulates a 4x4 micro-tile of C in registers, reading
// four A values and four B values per k to do sixteen FMAs.
#include "cuda_check.cuh"
#include "element.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

constexpr int BM = 64;   // tile rows of C
constexpr int BN = 64;   // tile columns of C
constexpr int BK = 16;   // k per step
constexpr int TM = 4;    // micro-tile rows per thread
constexpr int TN = 4;    // micro-tile columns per thread
constexpr int kMatmulThreads = (BM / TM) * (BN / TN);  // 256
// Shared rows are padded by 4 floats: staging stores then hit distinct banks
// while each row still starts 16-byte aligned for float4 reads.
constexpr int kPad = 4;

static_assert(BM * BK % kMatmulThreads == 0 && BK * BN % kMatmulThreads == 0, "panels split evenly over threads");

// Element offset of batch index b for per-dimension strides: the batch index is
// decomposed over batch_shape, innermost dim first (csrc/cpu/matmul.cc).
__device__ __forceinline__ int64_t batch_offset(const MatmulArgs& p, int64_t b, const int64_t* strides) {
  int64_t offset = 0;
  for (int d = p.batch_ndim - 1; d >= 0; --d) {
    offset += (b % p.batch_shape[d]) * strides[d];
    b /= p.batch_shape[d];
  }
  return offset;
}

// Stages op(A)[row0 : row0+BM, k0 : k0+BK] as As[kk][i]. The thread-to-element
// map follows the storage order, so consecutive threads read consecutive
// addresses: along k when A is [m, k], along m when it is stored [k, m].
template <class T>
__device__ __forceinline__ void stage_a(const MatmulArgs& p, const T* a, int64_t row0, int64_t k0,
                                        float (*As)[BM + kPad]) {
  for (int e = threadIdx.x; e < BM * BK; e += kMatmulThreads) {
    const int kk = p.trans_a ? e / BM : e % BK;
    const int i = p.trans_a ? e % BM : e / BK;
    const int64_t row = row0 + i, col = k0 + kk;
    float v = 0.0f;
    if (row < p.m && col < p.k) v = load(p.trans_a ? a[col * p.m + row] : a[row * p.k + col]);
    As[kk][i] = v;
  }
}

// Stages op(B)[k0 : k0+BK, col0 : col0+BN] as Bs[kk][j]: along n when B is
// [k, n], along k when it is stored [n, k].
template <class T>
__device__ __forceinline__ void stage_b(const MatmulArgs& p, const T* b, int64_t k0, int64_t col0,
                                        float (*Bs)[BN + kPad]) {
  for (int e = threadIdx.x; e < BK * BN; e += kMatmulThreads) {
    const int kk = p.trans_b ? e % BK : e / BN;
    const int j = p.trans_b ? e / BK : e % BN;
    const int64_t row = k0 + kk, col = col0 + j;
    float v = 0.0f;
    if (row < p.k && col < p.n) v = load(p.trans_b ? b[col * p.k + row] : b[row * p.n + col]);
    Bs[kk][j] = v;
  }
}

// grid.x strides over the C tiles of one matrix (row-major order of tiles),
// grid.z over batch entries, so any m, n and batch fit the grid limits.
template <class T>
__global__ void __launch_bounds__(kMatmulThreads) matmul_kernel(MatmulArgs p, int64_t tiles_n, int64_t tiles) {
  __shared__ __align__(16) float As[BK][BM + kPad];
  __shared__ __align__(16) float Bs[BK][BN + kPad];
  const int tx = threadIdx.x % (BN / TN);  // micro-tile column
  const int ty = threadIdx.x / (BN / TN);  // micro-tile row

  for (int64_t batch = blockIdx.z; batch < p.batch; batch += gridDim.z) {
    const T* a = static_cast<const T*>(p.a) + batch_offset(p, batch, p.a_batch_strides);
    const T* b = static_cast<const T*>(p.b) + batch_offset(p, batch, p.b_batch_strides);
    T* c = static_cast<T*>(p.c) + batch * p.m * p.n;

    for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const int64_t row0 = (tile / tiles_n) * BM, col0 = (tile % tiles_n) * BN;
      float acc[TM][TN] = {};

      for (int64_t k0 = 0; k0 < p.k; k0 += BK) {
        stage_a(p, a, row0, k0, As);
        stage_b(p, b, k0, col0, Bs);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
          const float4 av = *reinterpret_cast<const float4*>(&As[kk][ty * TM]);
          const float4 bv = *reinterpret_cast<const float4*>(&Bs[kk][tx * TN]);
          const float ar[TM] = {av.x, av.y, av.z, av.w};
          const float br[TN] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
          for (int i = 0; i < TM; ++i) {
#pragma unroll
            for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(ar[i], br[j], acc[i][j]);
          }
        }
        __syncthreads();  // the panels are restaged next step
      }

#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int64_t row = row0 + ty * TM + i;
        if (row >= p.m) break;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const int64_t col = col0 + tx * TN + j;
          if (col < p.n) c[row * p.n + col] = store<T>(acc[i][j]);
        }
      }
    }
  }
}

template <class T>
void matmul_typed(const MatmulArgs& args, cudaStream_t stream) {
  const int64_t tiles_m = (args.m + BM - 1) / BM, tiles_n = (args.n + BN - 1) / BN;
  const int64_t tiles = tiles_m * tiles_n;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tiles, 0x7fffffff)),
                  1, static_cast<unsigned>(std::min<int64_t>(args.batch, 65535)));
  matmul_kernel<T><<<grid, kMatmulThreads, 0, stream>>>(args, tiles_n, tiles);
  check_launch("matmul kernel");
}

}  // namespace

void launch_matmul(const MatmulArgs& args, cudaStream_t stream) {
  if (args.m <= 0 || args.n <= 0 || args.batch <= 0) return;
  if (args.k <= 0) {  // an empty product is all zeros (the op layer normally handles this)
    launch_fill(FillArgs{args.dtype, args.c, args.batch * args.m * args.n, 0.0}, stream);
    return;
  }
  switch (args.dtype) {
    case DType::F32: matmul_typed<float>(args, stream); break;
    case DType::F16: matmul_typed<f16>(args, stream); break;
    case DType::BF16: matmul_typed<bf16>(args, stream); break;
    default: fail(ErrorCode::Internal, std::string("cuda matmul reached with dtype ") + dtype_name(args.dtype));
  }
}

}  // namespace cuda
}  // namespace imprint
