// Imprint's own tensor-core GEMM for f16/bf16 storage (f32 accumulation), the
// fallback when cuBLAS is not installed. WMMA 16x16x16 fragments with f32
// accumulators: a block of 8 warps owns a 128x128 tile of C and walks k in
// steps of 32; each step stages a 128x32 panel of op(A) and a 32x128 panel of
// op(B) in shared memory (zero-padded outside the matrices, transposed while
// staging when an operand is stored transposed; the next step's panels are
// loaded into registers meanwhile), and each warp multiplies its 64x32 part as
// 4x2 fragments. The epilogue goes through a small per-warp
// staging tile, because a fragment's element layout is unspecified: there the
// edges are masked, alpha and beta applied, and C rounded once.
//
// bf16 fragments need sm_80: the sm_75 build compiles the bf16 kernel empty and
// the host never launches it there (gemm() then takes the SIMT kernel).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <atomic>
#include <cstring>
#include <type_traits>

#include "cuda_check.cuh"
#include "element.cuh"
#include "gemm.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int BM = 128;                      // tile rows of C
constexpr int BN = 128;                      // tile columns of C
constexpr int BK = 32;                       // k per step
constexpr int WM = 64;                       // warp tile rows
constexpr int WN = 32;                       // warp tile columns
constexpr int FM = WM / 16;                  // fragments per warp, down
constexpr int FN = WN / 16;                  // fragments per warp, across
constexpr int kWarpsN = BN / WN;             // 4
constexpr int kTcThreads = 32 * (BM / WM) * kWarpsN;  // 256
// Shared rows are padded by 8 halves (16 bytes): fragment loads then spread over
// banks, and every fragment still starts 32-byte aligned as WMMA requires.
constexpr int kSkew = 8;
constexpr int kLdA = BK + kSkew;  // As is [BM][kLdA]: op(A) rows, k along the row
constexpr int kLdB = BN + kSkew;  // Bs is [BK][kLdB]: k rows, op(B) columns along the row

static_assert(BM * BK % (8 * kTcThreads) == 0 && BK * BN % (8 * kTcThreads) == 0, "panels split into 8-wide groups");
static_assert(kLdA % 8 == 0 && kLdB % 8 == 0 && (16 * kLdA * 2) % 32 == 0 && (16 * kLdB * 2) % 32 == 0,
              "WMMA needs ldm a multiple of 8 and 32-byte aligned fragments");

template <class T> struct WmmaType;
template <> struct WmmaType<f16> { using type = __half; };
template <> struct WmmaType<bf16> { using type = __nv_bfloat16; };

// Whether this compilation pass may instantiate WMMA for T: bf16 fragments
// exist only from sm_80 (the host pass and sm_80+ device passes say yes).
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
constexpr bool kBf16Fragments = false;
#else
constexpr bool kBf16Fragments = true;
#endif
template <class T>
constexpr bool kHasFragments = std::is_same<T, f16>::value || kBf16Fragments;

struct TcParams {
  const uint16_t* a;
  const uint16_t* b;
  void* c;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  int64_t stride_a, stride_b, stride_c;
  int64_t batch;
  float alpha, beta;
  bool trans_a, trans_b;
  bool vec_a, vec_b;  // the operand allows 16-byte loads (aligned base, ld and batch stride)
};

// A panel is the rows x cols window at (r0, c0) of a row-major [rows_total,
// cols_total] matrix (row stride ld), with zeros outside the matrix. Threads
// take groups of 8 adjacent elements of one source row: a 16-byte load when
// the group lies inside the matrix and `vec` allows it. Loading into registers
// and storing to shared memory are separate steps, so the next panel's global
// loads are in flight while the tensor cores work on the current one.
constexpr int kGroupsPerThread = BM * BK / (8 * kTcThreads);  // 2, for either operand
static_assert(BM * BK == BK * BN, "both panels have the same number of groups");

struct PanelView {
  const uint16_t* src;
  int64_t ld, rows_total, cols_total, r0, c0;
  int rows, cols;
  bool transpose;  // stored as dst[c][r] instead of dst[r][c]
  bool vec;
};

__device__ __forceinline__ void load_panel(const PanelView& v, uint4 (&regs)[kGroupsPerThread]) {
  const int groups_per_row = v.cols / 8;
#pragma unroll
  for (int t = 0; t < kGroupsPerThread; ++t) {
    const int gidx = threadIdx.x + t * kTcThreads;
    const int r = gidx / groups_per_row, c = (gidx % groups_per_row) * 8;
    const int64_t row = v.r0 + r, col = v.c0 + c;
    if (row < v.rows_total && v.vec && col + 8 <= v.cols_total) {
      regs[t] = *reinterpret_cast<const uint4*>(v.src + row * v.ld + col);
    } else {
      alignas(16) uint16_t e[8];
#pragma unroll
      for (int q = 0; q < 8; ++q) e[q] = row < v.rows_total && col + q < v.cols_total ? v.src[row * v.ld + col + q] : 0;
      regs[t] = *reinterpret_cast<const uint4*>(e);
    }
  }
}

__device__ __forceinline__ void store_panel(const PanelView& v, const uint4 (&regs)[kGroupsPerThread], uint16_t* dst,
                                            int dst_ld) {
  const int groups_per_row = v.cols / 8;
#pragma unroll
  for (int t = 0; t < kGroupsPerThread; ++t) {
    const int gidx = threadIdx.x + t * kTcThreads;
    const int r = gidx / groups_per_row, c = (gidx % groups_per_row) * 8;
    if (!v.transpose) {
      *reinterpret_cast<uint4*>(dst + r * dst_ld + c) = regs[t];
    } else {
      alignas(16) uint16_t e[8];
      *reinterpret_cast<uint4*>(e) = regs[t];
#pragma unroll
      for (int q = 0; q < 8; ++q) dst[(c + q) * dst_ld + r] = e[q];
    }
  }
}

// op(A)[row0.., k0..] as As[i][kk]: A is [m, k], or [k, m] read transposed.
__device__ __forceinline__ PanelView a_panel(const TcParams& p, const uint16_t* a, int64_t row0, int64_t k0) {
  if (!p.trans_a) return {a, p.lda, p.m, p.k, row0, k0, BM, BK, false, p.vec_a};
  return {a, p.lda, p.k, p.m, k0, row0, BK, BM, true, p.vec_a};
}

// op(B)[k0.., col0..] as Bs[kk][j]: B is [k, n], or [n, k] read transposed.
__device__ __forceinline__ PanelView b_panel(const TcParams& p, const uint16_t* b, int64_t k0, int64_t col0) {
  if (!p.trans_b) return {b, p.ldb, p.k, p.n, k0, col0, BK, BN, false, p.vec_b};
  return {b, p.ldb, p.n, p.k, col0, k0, BN, BK, true, p.vec_b};
}

template <class T, class TOut>
__device__ __forceinline__ void tc_body(const TcParams& p, int64_t tiles_n, int64_t tiles) {
  using WT = typename WmmaType<T>::type;
  __shared__ __align__(32) uint16_t As[BM * kLdA];
  __shared__ __align__(32) uint16_t Bs[BK * kLdB];
  __shared__ __align__(32) float Cs[kTcThreads / 32][16 * 16];  // per-warp epilogue staging
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = warp / kWarpsN, wn = warp % kWarpsN;

  for (int64_t batch = blockIdx.z; batch < p.batch; batch += gridDim.z) {
    const uint16_t* a = p.a + batch * p.stride_a;
    const uint16_t* b = p.b + batch * p.stride_b;
    TOut* c = static_cast<TOut*>(p.c) + batch * p.stride_c;

    for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
      const int64_t row0 = (tile / tiles_n) * BM, col0 = (tile % tiles_n) * BN;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[FM][FN];
#pragma unroll
      for (int i = 0; i < FM; ++i)
#pragma unroll
        for (int j = 0; j < FN; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

      uint4 a_regs[kGroupsPerThread], b_regs[kGroupsPerThread];
      load_panel(a_panel(p, a, row0, 0), a_regs);
      load_panel(b_panel(p, b, 0, col0), b_regs);
      for (int64_t k0 = 0; k0 < p.k; k0 += BK) {
        store_panel(a_panel(p, a, row0, k0), a_regs, As, kLdA);
        store_panel(b_panel(p, b, k0, col0), b_regs, Bs, kLdB);
        __syncthreads();
        if (k0 + BK < p.k) {  // the next panels' loads overlap this step's MMAs
          load_panel(a_panel(p, a, row0, k0 + BK), a_regs);
          load_panel(b_panel(p, b, k0 + BK, col0), b_regs);
        }
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, WT, wmma::row_major> af[FM];
          wmma::fragment<wmma::matrix_b, 16, 16, 16, WT, wmma::row_major> bf[FN];
#pragma unroll
          for (int i = 0; i < FM; ++i)
            wmma::load_matrix_sync(af[i], reinterpret_cast<const WT*>(As + (wm * WM + i * 16) * kLdA + kk), kLdA);
#pragma unroll
          for (int j = 0; j < FN; ++j)
            wmma::load_matrix_sync(bf[j], reinterpret_cast<const WT*>(Bs + kk * kLdB + wn * WN + j * 16), kLdB);
#pragma unroll
          for (int i = 0; i < FM; ++i)
#pragma unroll
            for (int j = 0; j < FN; ++j) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
        }
        __syncthreads();  // the panels are restaged next step
      }

      float* stage_c = Cs[warp];
#pragma unroll
      for (int i = 0; i < FM; ++i) {
#pragma unroll
        for (int j = 0; j < FN; ++j) {
          wmma::store_matrix_sync(stage_c, acc[i][j], 16, wmma::mem_row_major);
          __syncwarp();
          const int64_t frag_row = row0 + wm * WM + i * 16, frag_col = col0 + wn * WN + j * 16;
          for (int e = lane; e < 256; e += 32) {
            const int64_t row = frag_row + e / 16, col = frag_col + e % 16;
            if (row < p.m && col < p.n) {
              TOut* out = c + row * p.ldc + col;
              float v = p.alpha * stage_c[e];
              if (p.beta != 0.0f) v += p.beta * load(*out);
              *out = store<TOut>(v);
            }
          }
          __syncwarp();  // the staging tile is rewritten by the next fragment
        }
      }
    }
  }
}

// grid.x strides over C's tiles (row-major order of tiles), grid.z over batches.
template <class T, class TOut>
__global__ void __launch_bounds__(kTcThreads, 2) tensor_core_kernel(TcParams p, int64_t tiles_n, int64_t tiles) {
  if constexpr (kHasFragments<T>) tc_body<T, TOut>(p, tiles_n, tiles);
}

bool vector_ok(const void* base, int64_t ld, int64_t stride, int64_t batch) {
  return reinterpret_cast<uintptr_t>(base) % 16 == 0 && ld % 8 == 0 && (batch == 1 || stride % 8 == 0);
}

template <class T, class TOut>
void launch_tensor_core(const Gemm& g, cudaStream_t stream) {
  TcParams p{static_cast<const uint16_t*>(g.a), static_cast<const uint16_t*>(g.b), g.c, g.m, g.n, g.k,
             g.lda, g.ldb, g.ldc, g.stride_a, g.stride_b, g.stride_c, g.batch, g.alpha, g.beta,
             g.trans_a, g.trans_b, vector_ok(g.a, g.lda, g.stride_a, g.batch), vector_ok(g.b, g.ldb, g.stride_b, g.batch)};
  const int64_t tiles_n = (g.n + BN - 1) / BN, tiles = (g.m + BM - 1) / BM * tiles_n;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tiles, 0x7fffffff)), 1,
                  static_cast<unsigned>(std::min<int64_t>(g.batch, 65535)));
  tensor_core_kernel<T, TOut><<<grid, kTcThreads, 0, stream>>>(p, tiles_n, tiles);
  check_launch("tensor-core gemm kernel");
}

constexpr int kMaxDevices = 64;
std::atomic<int> g_device_sm[kMaxDevices];  // 0 until asked

}  // namespace

int device_sm() {
  int device = 0;
  IMPRINT_CUDA_CHECK(cudaGetDevice(&device));
  if (device >= 0 && device < kMaxDevices) {
    const int known = g_device_sm[device].load(std::memory_order_relaxed);
    if (known != 0) return known;
  }
  int major = 0, minor = 0;
  IMPRINT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  IMPRINT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
  const int sm = major * 10 + minor;
  if (device >= 0 && device < kMaxDevices) g_device_sm[device].store(sm, std::memory_order_relaxed);
  return sm;
}

bool tensor_core_gemm(const Gemm& g, cudaStream_t stream) {
  if (g.ab_dtype != DType::F16 && g.ab_dtype != DType::BF16) return false;
  if (g.c_dtype != g.ab_dtype && g.c_dtype != DType::F32) return false;
  if (device_sm() < (g.ab_dtype == DType::F16 ? 75 : 80)) return false;
  const bool f32_out = g.c_dtype == DType::F32;
  if (g.ab_dtype == DType::F16) {
    if (f32_out) launch_tensor_core<f16, float>(g, stream);
    else launch_tensor_core<f16, f16>(g, stream);
  } else {
    if (f32_out) launch_tensor_core<bf16, float>(g, stream);
    else launch_tensor_core<bf16, bf16>(g, stream);
  }
  return true;
}

}  // namespace cuda
}  // namespace imprint
