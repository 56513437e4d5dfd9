// GEMM on the GPU: the dispatcher every CUDA caller goes through (gemm():
// cuBLAS, else the tensor-core kernel, else the SIMT kernel here), the
// Backend::matmul entry (launch_matmul), and the SIMT kernel itself, which
// handles every case: f32, GPUs without the tensor-core paths, and batch
// layouts that are not one plain stride. f32 accumulation for every element
// type (f16/bf16 widen to f32 on load and are rounded to nearest even on
// store, as on the CPU).
//
// SIMT kernel: classic shared-memory tiling. A block of 256 threads owns a
// 64x64 tile of C and walks k in steps of 16. Each step stages a 64x16 panel
// of A and a 16x64 panel of B in shared memory (converted to f32, zero-padded
// at the edges), and every thread accumulates a 4x4 micro-tile of C in
// registers, reading four A values and four B values per k to do sixteen FMAs.
#include <climits>

#include "cuda_check.cuh"
#include "element.cuh"
#include "gemm.cuh"
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

// The SIMT kernel's view of a product: Gemm's row strides and alpha/beta, and
// MatmulArgs' per-dimension batch strides (a plain stride is one dimension).
struct SimtParams {
  const void* a;
  const void* b;
  void* c;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  bool trans_a, trans_b;
  float alpha, beta;
  int64_t batch;
  int batch_ndim;
  int64_t batch_shape[kMaxDims];
  int64_t a_batch_strides[kMaxDims];
  int64_t b_batch_strides[kMaxDims];
  int64_t stride_c;
};

// Element offset of batch index b for per-dimension strides: the batch index is
// decomposed over batch_shape, innermost dim first (csrc/cpu/matmul.cc).
__device__ __forceinline__ int64_t batch_offset(const SimtParams& p, int64_t b, const int64_t* strides) {
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
__device__ __forceinline__ void stage_a(const SimtParams& p, const T* a, int64_t row0, int64_t k0,
                                        float (*As)[BM + kPad]) {
  for (int e = threadIdx.x; e < BM * BK; e += kMatmulThreads) {
    const int kk = p.trans_a ? e / BM : e % BK;
    const int i = p.trans_a ? e % BM : e / BK;
    const int64_t row = row0 + i, col = k0 + kk;
    float v = 0.0f;
    if (row < p.m && col < p.k) v = load(p.trans_a ? a[col * p.lda + row] : a[row * p.lda + col]);
    As[kk][i] = v;
  }
}

// Stages op(B)[k0 : k0+BK, col0 : col0+BN] as Bs[kk][j]: along n when B is
// [k, n], along k when it is stored [n, k].
template <class T>
__device__ __forceinline__ void stage_b(const SimtParams& p, const T* b, int64_t k0, int64_t col0,
                                        float (*Bs)[BN + kPad]) {
  for (int e = threadIdx.x; e < BK * BN; e += kMatmulThreads) {
    const int kk = p.trans_b ? e % BK : e / BN;
    const int j = p.trans_b ? e / BK : e % BN;
    const int64_t row = k0 + kk, col = col0 + j;
    float v = 0.0f;
    if (row < p.k && col < p.n) v = load(p.trans_b ? b[col * p.ldb + row] : b[row * p.ldb + col]);
    Bs[kk][j] = v;
  }
}

// grid.x strides over the C tiles of one matrix (row-major order of tiles),
// grid.z over batch entries, so any m, n and batch fit the grid limits.
template <class T, class TOut>
__global__ void __launch_bounds__(kMatmulThreads) matmul_kernel(SimtParams p, int64_t tiles_n, int64_t tiles) {
  __shared__ __align__(16) float As[BK][BM + kPad];
  __shared__ __align__(16) float Bs[BK][BN + kPad];
  const int tx = threadIdx.x % (BN / TN);  // micro-tile column
  const int ty = threadIdx.x / (BN / TN);  // micro-tile row

  for (int64_t batch = blockIdx.z; batch < p.batch; batch += gridDim.z) {
    const T* a = static_cast<const T*>(p.a) + batch_offset(p, batch, p.a_batch_strides);
    const T* b = static_cast<const T*>(p.b) + batch_offset(p, batch, p.b_batch_strides);
    TOut* c = static_cast<TOut*>(p.c) + batch * p.stride_c;

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
          if (col >= p.n) continue;
          TOut* out = c + row * p.ldc + col;
          // beta 0 never reads C (it may be uninitialised), as in BLAS.
          float v = p.alpha * acc[i][j];
          if (p.beta != 0.0f) v += p.beta * load(*out);
          *out = store<TOut>(v);
        }
      }
    }
  }
}

template <class T, class TOut>
void launch_simt(const SimtParams& p, cudaStream_t stream) {
  const int64_t tiles_m = (p.m + BM - 1) / BM, tiles_n = (p.n + BN - 1) / BN;
  const int64_t tiles = tiles_m * tiles_n;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tiles, 0x7fffffff)),
                  1, static_cast<unsigned>(std::min<int64_t>(p.batch, 65535)));
  matmul_kernel<T, TOut><<<grid, kMatmulThreads, 0, stream>>>(p, tiles_n, tiles);
  check_launch("matmul kernel");
}

void simt_gemm(const SimtParams& p, DType ab_dtype, DType c_dtype, cudaStream_t stream) {
  const bool f32_out = c_dtype == DType::F32;
  switch (ab_dtype) {
    case DType::F32: launch_simt<float, float>(p, stream); break;
    case DType::F16: f32_out ? launch_simt<f16, float>(p, stream) : launch_simt<f16, f16>(p, stream); break;
    case DType::BF16: f32_out ? launch_simt<bf16, float>(p, stream) : launch_simt<bf16, bf16>(p, stream); break;
    default: fail(ErrorCode::Internal, std::string("cuda gemm reached with dtype ") + dtype_name(ab_dtype));
  }
}

// C = beta·C for an empty product (k = 0): zeros when beta is 0 (C is not read).
template <class T>
__global__ void scale_kernel(T* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, int64_t batch, float beta) {
  const int64_t total = batch * m * n;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t col = i % n, row = i / n % m, b = i / (m * n);
    T* out = c + b * stride_c + row * ldc + col;
    *out = store<T>(beta == 0.0f ? 0.0f : beta * load(*out));
  }
}

void scale_c(const Gemm& g, cudaStream_t stream) {
  const int64_t total = g.batch * g.m * g.n;
  switch (g.c_dtype) {
    case DType::F32:
      scale_kernel<<<grid_size(total), kThreads, 0, stream>>>(static_cast<float*>(g.c), g.m, g.n, g.ldc, g.stride_c,
                                                              g.batch, g.beta);
      break;
    case DType::F16:
      scale_kernel<<<grid_size(total), kThreads, 0, stream>>>(static_cast<f16*>(g.c), g.m, g.n, g.ldc, g.stride_c,
                                                              g.batch, g.beta);
      break;
    case DType::BF16:
      scale_kernel<<<grid_size(total), kThreads, 0, stream>>>(static_cast<bf16*>(g.c), g.m, g.n, g.ldc, g.stride_c,
                                                              g.batch, g.beta);
      break;
    default: fail(ErrorCode::Internal, std::string("cuda gemm reached with output dtype ") + dtype_name(g.c_dtype));
  }
  check_launch("gemm scale kernel");
}

// The same plain stride for every batch index (offset(b) = b·stride), or false.
bool plain_stride(const MatmulArgs& args, const int64_t* strides, int64_t* stride) {
  int64_t step = -1, span = 1;  // step: stride of one batch index; span: batch indices per unit of dim d
  for (int d = args.batch_ndim - 1; d >= 0; --d) {
    if (args.batch_shape[d] == 1) continue;  // a size-1 dim never moves the offset
    if (step < 0) step = strides[d];
    if (strides[d] != step * span) return false;
    span *= args.batch_shape[d];
  }
  *stride = step < 0 ? 0 : step;
  return true;
}

}  // namespace

void gemm(const Gemm& g, cudaStream_t stream) {
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  const bool lds_ok = g.ldc >= g.n && g.lda >= (g.trans_a ? g.m : g.k) && g.ldb >= (g.trans_b ? g.k : g.n);
  const bool dtypes_ok = (g.ab_dtype == DType::F32 || g.ab_dtype == DType::F16 || g.ab_dtype == DType::BF16) &&
                         (g.c_dtype == g.ab_dtype || g.c_dtype == DType::F32);
  if (!lds_ok || !dtypes_ok) {
    fail(ErrorCode::Internal, "cuda gemm: inconsistent description (" + std::to_string(g.m) + "x" +
                                  std::to_string(g.n) + "x" + std::to_string(g.k) + ", lda " + std::to_string(g.lda) +
                                  ", ldb " + std::to_string(g.ldb) + ", ldc " + std::to_string(g.ldc) + ", " +
                                  dtype_name(g.ab_dtype) + " -> " + dtype_name(g.c_dtype) + ")");
  }
  if (g.k <= 0) {  // BLAS rejects the zero leading dimensions an empty k may bring
    scale_c(g, stream);
    return;
  }
  if (cublas_gemm(g, stream)) return;
  if (tensor_core_gemm(g, stream)) return;
  SimtParams p{g.a, g.b, g.c, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.trans_a, g.trans_b, g.alpha, g.beta,
               g.batch, 1, {g.batch}, {g.stride_a}, {g.stride_b}, g.stride_c};
  simt_gemm(p, g.ab_dtype, g.c_dtype, stream);
}

void launch_matmul(const MatmulArgs& args, cudaStream_t stream) {
  if (args.m <= 0 || args.n <= 0 || args.batch <= 0) return;
  const int64_t lda = args.trans_a ? args.m : args.k, ldb = args.trans_b ? args.k : args.n;
  int64_t stride_a = 0, stride_b = 0;
  if (plain_stride(args, args.a_batch_strides, &stride_a) && plain_stride(args, args.b_batch_strides, &stride_b)) {
    Gemm g;
    g.ab_dtype = g.c_dtype = args.dtype;
    g.trans_a = args.trans_a;
    g.trans_b = args.trans_b;
    g.m = args.m;
    g.n = args.n;
    g.k = args.k;
    g.a = args.a;
    g.lda = lda;
    g.stride_a = stride_a;
    g.b = args.b;
    g.ldb = ldb;
    g.stride_b = stride_b;
    g.c = args.c;
    g.ldc = args.n;
    g.stride_c = args.m * args.n;
    g.batch = args.batch;
    gemm(g, stream);
    return;
  }
  if (args.k <= 0) {  // an empty product is all zeros (the op layer normally handles this)
    launch_fill(FillArgs{args.dtype, args.c, args.batch * args.m * args.n, 0.0}, stream);
    return;
  }
  // Broadcast batch layouts that no single stride describes: the SIMT kernel walks them.
  SimtParams p{args.a, args.b, args.c, args.m, args.n, args.k, lda, ldb, args.n, args.trans_a, args.trans_b,
               1.0f, 0.0f, args.batch, args.batch_ndim, {}, {}, {}, args.m * args.n};
  for (int d = 0; d < args.batch_ndim; ++d) {
    p.batch_shape[d] = args.batch_shape[d];
    p.a_batch_strides[d] = args.a_batch_strides[d];
    p.b_batch_strides[d] = args.b_batch_strides[d];
  }
  simt_gemm(p, args.dtype, args.dtype, stream);
}

}  // namespace cuda
}  // namespace imprint
