// conv2d on the GPU, the twin of csrc/cpu/conv.cc (NCHW; stride, asymmetric
// padding, bias; no groups, as on the CPU), as GEMMs over im2col columns:
//   forward:  y_img[Cout, P] = W[Cout, K] · col_img[K, P] (+ bias preset in C),
//             K = Cin·kh·kw, P = Ho·Wo, batched over the images of a chunk
//   backward: dW = Σ_img dy_img · col_imgᵀ, accumulated in f32;
//             dcol_img = Wᵀ · dy_img in f32, gathered into dx by col2im
//             (each dx element sums its own taps: no atomics, one rounding);
//             db = Σ dy in double.
// A 1x1, stride-1, unpadded convolution is a GEMM on x itself (no im2col).
// The im2col scratch holds as many whole images as fit scratch_budget(), so
// large batches run in chunks; when one image does not fit (a VAE at 512 px),
// it runs in tiles of output rows, and dx then sums the tiles in f32.
#include <cstdlib>

#include "core/args/conv.h"
#include "core/backend.h"
#include "core/kernel_registry.h"
#include "cuda_check.cuh"
#include "element.cuh"
#include "float_dispatch.cuh"
#include "gemm.cuh"
#include "kernels.cuh"

namespace imprint {
namespace cuda {
namespace {

// Bytes of im2col (or f32 dcol) scratch one chunk may take; the environment
// variable IMPRINT_CONV_SCRATCH_BYTES overrides it (the parity suite uses a
// tiny budget to reach the row-tiled paths with small shapes).
int64_t scratch_budget() {
  if (const char* env = std::getenv("IMPRINT_CONV_SCRATCH_BYTES")) {
    const long long v = std::atoll(env);
    if (v > 0) return v;
  }
  return int64_t{256} << 20;
}

bool is_direct(const Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad_top == 0 && g.pad_bottom == 0 && g.pad_left == 0 &&
         g.pad_right == 0;
}

// Device memory from the current device's backend, given back when the kernel
// function returns (the work queued on the stream before stays in order).
class Scratch {
 public:
  Scratch(size_t bytes, const char* what) : bytes_(bytes) {
    if (bytes == 0) return;
    int device = 0;
    IMPRINT_CUDA_CHECK(cudaGetDevice(&device));
    backend_ = &cuda_backend(device);
    ptr_ = backend_->raw_allocate(bytes);
    if (ptr_ == nullptr) {
      fail(ErrorCode::OutOfMemory, std::string(what) + ": out of memory allocating " + std::to_string(bytes) +
                                       " bytes of scratch on cuda:" + std::to_string(device));
    }
  }
  ~Scratch() {
    if (ptr_ != nullptr) backend_->raw_free(ptr_, bytes_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* get() const { return ptr_; }

 private:
  size_t bytes_;
  Backend* backend_ = nullptr;
  void* ptr_ = nullptr;
};

// col[img][((c·kh + i)·kw + j)][(oh − oh0)·Wo + ow] = padded x[img][c][oh·s + i][ow·s + j]
// for `images` images and output rows [oh0, oh0 + rows); elements are copied as
// stored (S: float or a 16-bit word).
template <class S>
__global__ void im2col_kernel(Conv2dGeometry g, const S* x, S* col, int64_t images, int64_t oh0, int64_t rows) {
  const int64_t tile = rows * g.wo, k = g.cin * g.kh * g.kw;
  const int64_t total = images * k * tile;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t p = e % tile, kidx = e / tile % k, img = e / (tile * k);
    const int64_t ow = p % g.wo, oh = oh0 + p / g.wo;
    const int64_t j = kidx % g.kw, i = kidx / g.kw % g.kh, c = kidx / (g.kh * g.kw);
    const int64_t ih = oh * g.stride + i - g.pad_top, iw = ow * g.stride + j - g.pad_left;
    S v{};
    if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w) v = x[((img * g.cin + c) * g.h + ih) * g.w + iw];
    col[e] = v;
  }
}

// The adjoint of im2col as a gather: each dx element of `images` images sums,
// in f32 and in the CPU's (i, j) order, the entries of dcol (laid out as
// im2col's col for output rows [oh0, oh0 + rows)) that read it; `accumulate`
// adds that to dx instead of overwriting it (the later row tiles).
template <class T>
__global__ void col2im_kernel(Conv2dGeometry g, const float* dcol, T* dx, int64_t images, int64_t oh0, int64_t rows,
                              bool accumulate) {
  const int64_t tile = rows * g.wo, k = g.cin * g.kh * g.kw, plane = g.h * g.w;
  const int64_t total = images * g.cin * plane;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < total; e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t iw = e % g.w, ih = e / g.w % g.h, c = e / plane % g.cin, img = e / (g.cin * plane);
    const float* dcol_img = dcol + img * k * tile;
    float sum = 0.0f;
    for (int64_t i = 0; i < g.kh; ++i) {
      const int64_t th = ih + g.pad_top - i;  // oh·s for tap row i
      if (th < 0) break;                      // only smaller for larger i
      const int64_t oh = th / g.stride;
      if (th % g.stride != 0 || oh < oh0 || oh >= oh0 + rows) continue;
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t tw = iw + g.pad_left - j;
        if (tw < 0) break;
        const int64_t ow = tw / g.stride;
        if (tw % g.stride != 0 || ow >= g.wo) continue;
        sum += dcol_img[((c * g.kh + i) * g.kw + j) * tile + (oh - oh0) * g.wo + ow];
      }
    }
    dx[e] = store<T>(accumulate ? load(dx[e]) + sum : sum);
  }
}

void im2col(DType dtype, const Conv2dGeometry& g, const void* x, void* col, int64_t images, int64_t oh0, int64_t rows,
            cudaStream_t stream) {
  const int64_t total = images * g.cin * g.kh * g.kw * rows * g.wo;
  if (dtype == DType::F32) {
    im2col_kernel<<<grid_size(total), kThreads, 0, stream>>>(g, static_cast<const float*>(x), static_cast<float*>(col),
                                                             images, oh0, rows);
  } else {
    im2col_kernel<<<grid_size(total), kThreads, 0, stream>>>(g, static_cast<const uint16_t*>(x),
                                                             static_cast<uint16_t*>(col), images, oh0, rows);
  }
  check_launch("im2col kernel");
}

void col2im(DType dtype, const Conv2dGeometry& g, const float* dcol, void* dx, int64_t images, int64_t oh0,
            int64_t rows, bool accumulate, cudaStream_t stream) {
  const int64_t total = images * g.cin * g.h * g.w;
  switch (dtype) {
    case DType::F32:
      col2im_kernel<<<grid_size(total), kThreads, 0, stream>>>(g, dcol, static_cast<float*>(dx), images, oh0, rows,
                                                               accumulate);
      break;
    case DType::F16:
      col2im_kernel<<<grid_size(total), kThreads, 0, stream>>>(g, dcol, static_cast<f16*>(dx), images, oh0, rows,
                                                               accumulate);
      break;
    case DType::BF16:
      col2im_kernel<<<grid_size(total), kThreads, 0, stream>>>(g, dcol, static_cast<bf16*>(dx), images, oh0, rows,
                                                               accumulate);
      break;
    default: fail(ErrorCode::Internal, std::string("cuda col2im reached with dtype ") + dtype_name(dtype));
  }
  check_launch("col2im kernel");
}

// How im2col work is cut: `images` whole images at a time (rows = Ho), or,
// when one image's columns exceed the budget, one image in tiles of `rows`
// output rows. Scratch for a chunk: images·rows·Wo·K values.
struct ColPlan {
  int64_t images, rows;
};

ColPlan plan_cols(const Conv2dGeometry& g, int64_t k, int64_t value_bytes) {
  const int64_t budget = scratch_budget();
  const int64_t row_bytes = std::max<int64_t>(1, k * g.wo * value_bytes);
  if (row_bytes * g.ho <= budget) return {std::max<int64_t>(1, std::min(g.n, budget / (row_bytes * g.ho))), g.ho};
  return {1, std::max<int64_t>(1, std::min(g.ho, budget / row_bytes))};
}

void conv2d_forward_cuda(const Conv2dForwardArgs& a) {
  require_float("conv2d_forward", a.dtype);
  const Conv2dGeometry& g = a.g;
  if (g.n == 0 || g.cout == 0) return;
  const int64_t k = g.cin * g.kh * g.kw, pixels = g.ho * g.wo, plane = g.h * g.w;
  const size_t elem = dtype_size(a.dtype);
  const cudaStream_t stream = current_stream();
  if (a.bias) fill_bias(a.dtype, a.bias, a.y, g.n, g.cout, pixels, stream);

  Gemm gm;  // y_img[Cout, P] = W[Cout, K] · cols_img[K, P], one batch entry per image
  gm.ab_dtype = gm.c_dtype = a.dtype;
  gm.m = g.cout;
  gm.k = k;
  gm.a = a.w;
  gm.lda = k;
  gm.stride_a = 0;
  gm.ldc = pixels;
  gm.stride_c = g.cout * pixels;
  gm.beta = a.bias ? 1.0f : 0.0f;
  if (is_direct(g) || k == 0) {  // x_img [Cin, H·W] is already the columns (or there are none)
    gm.n = pixels;
    gm.b = a.x;
    gm.ldb = pixels;
    gm.stride_b = g.cin * plane;
    gm.c = a.y;
    gm.batch = g.n;
    gemm(gm, stream);
    return;
  }
  const ColPlan plan = plan_cols(g, k, static_cast<int64_t>(elem));
  Scratch col(static_cast<size_t>(plan.images * plan.rows * g.wo * k) * elem, "conv2d_forward im2col");
  gm.b = col.get();
  for (int64_t img0 = 0; img0 < g.n; img0 += plan.images) {
    const int64_t count = std::min(plan.images, g.n - img0);
    for (int64_t oh0 = 0; oh0 < g.ho; oh0 += plan.rows) {
      const int64_t rows = std::min(plan.rows, g.ho - oh0), tile = rows * g.wo;
      im2col(a.dtype, g, static_cast<const char*>(a.x) + static_cast<size_t>(img0 * g.cin * plane) * elem, col.get(),
             count, oh0, rows, stream);
      gm.n = tile;  // columns [oh0·Wo, oh0·Wo + tile) of each y_img
      gm.ldb = tile;
      gm.stride_b = k * tile;
      gm.c = static_cast<char*>(a.y) + static_cast<size_t>(img0 * g.cout * pixels + oh0 * g.wo) * elem;
      gm.batch = count;
      gemm(gm, stream);
    }
  }
}

void conv2d_backward_cuda(const Conv2dBackwardArgs& a) {
  require_float("conv2d_backward", a.dtype);
  const Conv2dGeometry& g = a.g;
  const int64_t k = g.cin * g.kh * g.kw, pixels = g.ho * g.wo, plane = g.h * g.w;
  const size_t elem = dtype_size(a.dtype);
  const cudaStream_t stream = current_stream();
  if (a.dbias) bias_grad(a.dtype, a.dy, a.dbias, g.n, g.cout, pixels, stream);
  if (g.n == 0 || g.cout == 0 || g.cin == 0) {
    // Nothing to multiply: the gradients are empty or all zero.
    if (a.dx) launch_fill(FillArgs{a.dtype, a.dx, g.n * g.cin * plane, 0.0}, stream);
    if (a.dw) launch_fill(FillArgs{a.dtype, a.dw, g.cout * k, 0.0}, stream);
    return;
  }
  if (!a.dx && !a.dw) return;  // the bias gradient alone
  const bool direct = is_direct(g);
  const char* x = static_cast<const char*>(a.x);
  const char* dy = static_cast<const char*>(a.dy);
  char* dx = static_cast<char*>(a.dx);

  // dW sums one GEMM per image (and row tile): in f32, straight into dw for
  // f32, else into a scratch rounded once at the end.
  const bool dw_scratch = a.dw && a.dtype != DType::F32;
  Scratch dw32(dw_scratch ? static_cast<size_t>(g.cout * k) * sizeof(float) : 0, "conv2d_backward weight gradient");
  Gemm gw;  // dW[Cout, K] (+)= dy_img[Cout, tile] · (cols stored [K, tile])ᵀ
  gw.ab_dtype = a.dtype;
  gw.c_dtype = DType::F32;
  gw.trans_b = true;
  gw.m = g.cout;
  gw.n = k;
  gw.lda = pixels;
  gw.c = dw_scratch ? dw32.get() : a.dw;
  gw.ldc = k;
  bool first_dw = true;
  auto add_dw = [&](int64_t img, int64_t oh0, int64_t tile, const void* cols, int64_t ld_cols) {
    gw.k = tile;
    gw.a = dy + static_cast<size_t>(img * g.cout * pixels + oh0 * g.wo) * elem;
    gw.b = cols;
    gw.ldb = ld_cols;
    gw.beta = first_dw ? 0.0f : 1.0f;
    first_dw = false;
    gemm(gw, stream);
  };

  Gemm gx;  // dcols_img[K, tile] = (W stored [Cout, K])ᵀ · dy_img[Cout, tile], one batch entry per image
  gx.ab_dtype = a.dtype;
  gx.trans_a = true;
  gx.m = k;
  gx.k = g.cout;
  gx.a = a.w;
  gx.lda = k;
  gx.stride_a = 0;
  gx.ldb = pixels;
  gx.stride_b = g.cout * pixels;

  if (direct) {
    if (a.dw) {
      for (int64_t img = 0; img < g.n; ++img) {
        add_dw(img, 0, pixels, x + static_cast<size_t>(img * g.cin * plane) * elem, plane);
      }
    }
    if (a.dx) {
      gx.c_dtype = a.dtype;  // dx_img is dcols_img itself
      gx.n = pixels;
      gx.b = a.dy;
      gx.c = a.dx;
      gx.ldc = pixels;
      gx.stride_c = g.cin * plane;
      gx.batch = g.n;
      gemm(gx, stream);
    }
  } else {
    // One buffer per chunk: first the im2col columns (dtype), then dcols (f32).
    const ColPlan plan = plan_cols(g, k, static_cast<int64_t>(sizeof(float)));
    const bool row_tiles = plan.rows < g.ho;
    Scratch cols(static_cast<size_t>(plan.images * plan.rows * g.wo * k) * sizeof(float), "conv2d_backward im2col");
    // Row tiles each add their part to dx: in f32, in dx itself for f32, else in one image's scratch.
    const bool dx_scratch = dx && row_tiles && a.dtype != DType::F32;
    Scratch dx32(dx_scratch ? static_cast<size_t>(g.cin * plane) * sizeof(float) : 0, "conv2d_backward input gradient");
    gx.c_dtype = DType::F32;
    gx.c = cols.get();
    for (int64_t img0 = 0; img0 < g.n; img0 += plan.images) {
      const int64_t count = std::min(plan.images, g.n - img0);
      char* dx_chunk = dx ? dx + static_cast<size_t>(img0 * g.cin * plane) * elem : nullptr;
      for (int64_t oh0 = 0; oh0 < g.ho; oh0 += plan.rows) {
        const int64_t rows = std::min(plan.rows, g.ho - oh0), tile = rows * g.wo;
        if (a.dw) {
          im2col(a.dtype, g, x + static_cast<size_t>(img0 * g.cin * plane) * elem, cols.get(), count, oh0, rows, stream);
          for (int64_t i = 0; i < count; ++i) {
            add_dw(img0 + i, oh0, tile, static_cast<const char*>(cols.get()) + static_cast<size_t>(i * k * tile) * elem,
                   tile);
          }
        }
        if (!dx) continue;  // x is a constant: no dcols
        gx.n = tile;
        gx.b = dy + static_cast<size_t>(img0 * g.cout * pixels + oh0 * g.wo) * elem;
        gx.ldc = tile;
        gx.stride_c = k * tile;
        gx.batch = count;
        gemm(gx, stream);  // stream order: runs after the dW GEMMs are done with the columns
        if (dx_scratch) {
          col2im(DType::F32, g, static_cast<const float*>(cols.get()), dx32.get(), count, oh0, rows, oh0 > 0, stream);
        } else {
          col2im(a.dtype, g, static_cast<const float*>(cols.get()), dx_chunk, count, oh0, rows, oh0 > 0, stream);
        }
      }
      if (dx_scratch) launch_cast(CastArgs{DType::F32, a.dtype, dx32.get(), dx_chunk, g.cin * plane}, stream);
    }
  }
  if (dw_scratch) launch_cast(CastArgs{DType::F32, a.dtype, dw32.get(), a.dw, g.cout * k}, stream);
}

}  // namespace

IMPRINT_REGISTER_KERNEL(conv2d_forward, CUDA, Conv2dForwardArgs, conv2d_forward_cuda);
IMPRINT_REGISTER_KERNEL(conv2d_backward, CUDA, Conv2dBackwardArgs, conv2d_backward_cuda);

}  // namespace cuda
}  // namespace imprint
