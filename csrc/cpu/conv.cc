// conv2d on the CPU as GEMMs over im2col tiles (NCHW, f32).
//   forward:  y_img[Cout, pixels] = W[Cout, K] · col[K, pixels], K = Cin·kh·kw
//   backward: dW[:, block] = Σ_img dy_img · col_blockᵀ;  dcol = W[:, block]ᵀ · dy_img, scattered back
//             into dx by col2im;  db = Σ dy.
// A 1x1, stride-1, unpadded convolution is a plain GEMM on x itself (no im2col).
//
// Work is split into items that write disjoint outputs: the forward into
// (image, output-row tile) items, the backward into input-channel blocks (so
// col2im and the dW columns of one block never race). Each pool thread takes
// items one at a time and runs single-threaded GEMMs on its own buffers; with
// fewer items than threads, the items run one by one and BLAS threads each GEMM.
//
// Memory bound, per pool thread: the forward's im2col tile holds at most
// max(kColBudget, K·Wo) floats; the backward's holds at most
// max(kColBudget, block·kh·kw·Wo) floats, plus Cout·block·kh·kw floats and as
// many doubles for the dW block when it sums over several tiles.
#include "core/args/conv.h"
#include "core/kernel_registry.h"
#include "core/thread_pool.h"
#include "cpu/blas.h"
#include "cpu/nn_util.h"

#include <algorithm>
#include <atomic>
#include <vector>

namespace imprint {
namespace cpu {
namespace {

// Floats of im2col per pool thread: big enough for efficient GEMMs, small
// enough to stay near the cache and far below the whole image's im2col.
constexpr int64_t kColBudget = int64_t{1} << 20;

// A forward tile split only to busy more threads keeps at least this many
// output pixels; narrower GEMMs spend more time packing W than multiplying.
constexpr int64_t kMinSplitPixels = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Start of part t when [0, total) is cut into `parts` near-equal ranges.
int64_t part_start(int64_t total, int64_t parts, int64_t t) { return total * t / parts; }

bool is_direct(const Conv2dGeometry& g) {
  return g.kh == 1 && g.kw == 1 && g.stride == 1 && g.pad_top == 0 && g.pad_bottom == 0 && g.pad_left == 0 &&
         g.pad_right == 0;
}

// Output columns [lo, hi) of kernel column j whose input column lies inside x
// (the rest read padding).
struct ColRange {
  int64_t lo, hi;
};
ColRange valid_cols(const Conv2dGeometry& g, int64_t j) {
  const int64_t first = g.pad_left - j;  // ow·stride must reach this to be inside x
  const int64_t lo = std::min(g.wo, first <= 0 ? 0 : ceil_div(first, g.stride));
  const int64_t end = g.w + g.pad_left - j;  // ow·stride must stay below this
  const int64_t hi = end <= 0 ? 0 : std::min(g.wo, ceil_div(end, g.stride));
  return {lo, std::max(lo, hi)};
}

// col[((c - c0)·kh + i)·kw + j][(oh - oh0)·Wo + ow] = padded x_img[c][oh·s + i][ow·s + j]
// for channels [c0, c1) and output rows [oh0, oh1).
void im2col(const Conv2dGeometry& g, const float* x_img, int64_t c0, int64_t c1, int64_t oh0, int64_t oh1, float* col) {
  const int64_t tile = (oh1 - oh0) * g.wo, s = g.stride;
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        float* dst = col + (((c - c0) * g.kh + i) * g.kw + j) * tile;
        const ColRange r = valid_cols(g, j);
        for (int64_t oh = oh0; oh < oh1; ++oh, dst += g.wo) {
          const int64_t ih = oh * s + i - g.pad_top;
          if (ih < 0 || ih >= g.h) {
            std::fill(dst, dst + g.wo, 0.0f);
            continue;
          }
          std::fill(dst, dst + r.lo, 0.0f);
          std::fill(dst + r.hi, dst + g.wo, 0.0f);
          const int64_t count = r.hi - r.lo;
          if (count == 0) continue;
          // src[q·s] is x_img[c][ih][(r.lo + q)·s + j − pad_left], inside the row.
          const float* src = x_img + (c * g.h + ih) * g.w + (r.lo * s + j - g.pad_left);
          float* out = dst + r.lo;
          if (s == 1) {
            std::copy(src, src + count, out);
          } else {
            for (int64_t q = 0; q < count; ++q) out[q] = src[q * s];
          }
        }
      }
    }
  }
}

// The adjoint of im2col: dx_img[c][...] += every col entry that read it.
void col2im_add(const Conv2dGeometry& g, const float* col, int64_t c0, int64_t c1, int64_t oh0, int64_t oh1,
                float* dx_img) {
  const int64_t tile = (oh1 - oh0) * g.wo, s = g.stride;
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t i = 0; i < g.kh; ++i) {
      for (int64_t j = 0; j < g.kw; ++j) {
        const float* src = col + (((c - c0) * g.kh + i) * g.kw + j) * tile;
        const ColRange r = valid_cols(g, j);
        const int64_t count = r.hi - r.lo;
        if (count == 0) continue;
        for (int64_t oh = oh0; oh < oh1; ++oh, src += g.wo) {
          const int64_t ih = oh * s + i - g.pad_top;
          if (ih < 0 || ih >= g.h) continue;
          float* dst = dx_img + (c * g.h + ih) * g.w + (r.lo * s + j - g.pad_left);
          const float* in = src + r.lo;
          if (s == 1) {
            for (int64_t q = 0; q < count; ++q) dst[q] += in[q];
          } else {
            for (int64_t q = 0; q < count; ++q) dst[q * s] += in[q];
          }
        }
      }
    }
  }
}


// Calls worker(next) on up to `threads` pool threads; each worker pulls item
// indices from next() (−1 when none are left), so a thread slowed by other load
// simply takes fewer items. Each worker owns its scratch buffers.
template <class Worker>
void run_items(int64_t items, int64_t threads, const Worker& worker) {
  std::atomic<int64_t> counter{0};
  auto next = [&]() -> int64_t {
    const int64_t item = counter.fetch_add(1);
    return item < items ? item : -1;
  };
  SerialBlasScope blas(threads > 1);
  parallel_for(threads, 1, [&](int64_t, int64_t) { worker(next); });
}

void conv2d_forward_cpu(const Conv2dForwardArgs& a) {
  require_f32("conv2d_forward", a.dtype);
  const Conv2dGeometry& g = a.g;
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  const float* bias = static_cast<const float*>(a.bias);
  float* y = static_cast<float*>(a.y);
  const int64_t k = g.cin * g.kh * g.kw, pixels = g.ho * g.wo, plane = g.h * g.w;
  if (g.n == 0 || g.cout == 0) return;
  const bool direct = is_direct(g);

  // Row tiles: bounded by the im2col budget, and split further (down to
  // kMinSplitPixels) when there are fewer images than threads. Too few items
  // for the pool: run them one by one with BLAS's own threads instead.
  const int64_t threads = num_threads();
  int64_t tiles = direct ? 1 : ceil_div(g.ho, std::max<int64_t>(1, kColBudget / std::max<int64_t>(1, k * g.wo)));
  if (g.n * tiles < threads) {
    const int64_t splittable = std::max<int64_t>(1, pixels / kMinSplitPixels);
    tiles = std::max(tiles, std::min(ceil_div(threads, g.n), splittable));
  }
  if (g.n * tiles >= threads && g.n % threads != 0) tiles = ceil_div(tiles, threads) * threads;  // even shares
  tiles = std::min(tiles, g.ho);
  const int64_t items = g.n * tiles;
  const int64_t max_rows = ceil_div(g.ho, tiles);

  run_items(items, items >= threads ? threads : 1, [&](auto next) {
    std::vector<float> col(direct || k == 0 ? 0 : static_cast<size_t>(k * max_rows * g.wo));
    for (int64_t item; (item = next()) >= 0;) {
      const int64_t img = item / tiles, t = item % tiles;
      const int64_t oh0 = part_start(g.ho, tiles, t), oh1 = part_start(g.ho, tiles, t + 1);
      const int64_t p0 = oh0 * g.wo, count = (oh1 - oh0) * g.wo;
      float* y_tile = y + img * g.cout * pixels + p0;
      if (k == 0) {
        for (int64_t co = 0; co < g.cout; ++co) std::fill(y_tile + co * pixels, y_tile + co * pixels + count, 0.0f);
      } else if (direct) {
        sgemm(false, false, g.cout, count, k, w, k, x + img * g.cin * plane + p0, plane, y_tile, pixels);
      } else {
        im2col(g, x + img * g.cin * plane, 0, g.cin, oh0, oh1, col.data());
        sgemm(false, false, g.cout, count, k, w, k, col.data(), count, y_tile, pixels);
      }
      if (bias) {
        for (int64_t co = 0; co < g.cout; ++co) {
          float* row = y_tile + co * pixels;
          const float b = bias[co];
          for (int64_t p = 0; p < count; ++p) row[p] += b;
        }
      }
    }
  });
}

// db[co] = Σ over images and pixels of dy, summed in double.
void conv2d_bias_grad(const Conv2dGeometry& g, const float* dy, float* db) {
  const int64_t pixels = g.ho * g.wo;
  parallel_for(g.cout, std::max<int64_t>(1, 65536 / std::max<int64_t>(1, g.n * pixels)), [&](int64_t c0, int64_t c1) {
    for (int64_t co = c0; co < c1; ++co) {
      double acc = 0;
      for (int64_t img = 0; img < g.n; ++img) {
        const float* row = dy + (img * g.cout + co) * pixels;
        double part = 0;
        for (int64_t p = 0; p < pixels; ++p) part += row[p];
        acc += part;
      }
      db[co] = static_cast<float>(acc);
    }
  });
}

void conv2d_backward_cpu(const Conv2dBackwardArgs& a) {
  require_f32("conv2d_backward", a.dtype);
  const Conv2dGeometry& g = a.g;
  const float* dy = static_cast<const float*>(a.dy);
  const float* x = static_cast<const float*>(a.x);
  const float* w = static_cast<const float*>(a.w);
  float* dx = static_cast<float*>(a.dx);
  float* dw = static_cast<float*>(a.dw);
  const int64_t khw = g.kh * g.kw, k = g.cin * khw, pixels = g.ho * g.wo, plane = g.h * g.w;
  if (a.dbias) conv2d_bias_grad(g, dy, static_cast<float*>(a.dbias));
  if (g.n == 0 || g.cout == 0 || g.cin == 0) {
    // Nothing to multiply: the gradients are empty or all zero.
    if (dx) std::fill(dx, dx + g.n * g.cin * plane, 0.0f);
    if (dw) std::fill(dw, dw + g.cout * k, 0.0f);
    return;
  }
  if (!dx && !dw) return;  // the bias gradient alone
  const bool direct = is_direct(g);
  const int64_t threads = num_threads();

  // Channel blocks: about two per thread, each still a GEMM with a few hundred
  // rows. Fewer blocks than threads: one at a time with BLAS's own threads.
  const int64_t blocks = std::min({2 * threads, std::max<int64_t>(1, k / 256), g.cin});
  const int64_t max_block_k = ceil_div(g.cin, blocks) * khw;
  // Row tiles of each image within a block, bounded by the im2col budget.
  const int64_t rows_in_budget = std::max<int64_t>(1, kColBudget / (max_block_k * g.wo));
  const int64_t tiles = direct ? 1 : ceil_div(g.ho, rows_in_budget);
  const int64_t max_rows = ceil_div(g.ho, tiles);
  // One tile in all: its GEMM writes dW directly; otherwise tiles are summed in double.
  const bool single_tile = g.n * tiles == 1;

  run_items(blocks, blocks >= threads ? threads : 1, [&](auto next) {
    std::vector<float> col(direct ? 0 : static_cast<size_t>(max_block_k * max_rows * g.wo));
    std::vector<float> dw_tile(dw && !single_tile ? static_cast<size_t>(g.cout * max_block_k) : 0);
    std::vector<double> dw_sum(dw_tile.size());
    for (int64_t item; (item = next()) >= 0;) {
      const int64_t c0 = part_start(g.cin, blocks, item), c1 = part_start(g.cin, blocks, item + 1);
      const int64_t bk = (c1 - c0) * khw;
      std::fill(dw_sum.begin(), dw_sum.end(), 0.0);
      for (int64_t img = 0; img < g.n; ++img) {
        const float* x_img = x + img * g.cin * plane;
        const float* dy_img = dy + img * g.cout * pixels;
        float* dx_img = dx ? dx + img * g.cin * plane : nullptr;
        if (dx_img && !direct) std::fill(dx_img + c0 * plane, dx_img + c1 * plane, 0.0f);
        for (int64_t t = 0; t < tiles; ++t) {
          const int64_t oh0 = part_start(g.ho, tiles, t), oh1 = part_start(g.ho, tiles, t + 1);
          const int64_t p0 = oh0 * g.wo, count = (oh1 - oh0) * g.wo;
          // This tile's columns of x for the block: x itself when direct, else im2col.
          const float* cols = x_img + c0 * plane + p0;
          int64_t ld_cols = plane;
          if (!direct) {
            im2col(g, x_img, c0, c1, oh0, oh1, col.data());
            cols = col.data();
            ld_cols = count;
          }
          if (dw) {
            if (single_tile) {
              sgemm(false, true, g.cout, bk, count, dy_img + p0, pixels, cols, ld_cols, dw + c0 * khw, k);
            } else {
              sgemm(false, true, g.cout, bk, count, dy_img + p0, pixels, cols, ld_cols, dw_tile.data(), bk);
              for (int64_t i = 0; i < g.cout * bk; ++i) dw_sum[i] += dw_tile[i];
            }
          }
          if (!dx_img) continue;  // x is a constant: no dcol
          if (direct) {
            sgemm(true, false, bk, count, g.cout, w + c0, k, dy_img + p0, pixels, dx_img + c0 * plane + p0, plane);
          } else {
            // The GEMM above is done with col, so it takes dcol.
            sgemm(true, false, bk, count, g.cout, w + c0 * khw, k, dy_img + p0, pixels, col.data(), count);
            col2im_add(g, col.data(), c0, c1, oh0, oh1, dx_img);
          }
        }
      }
      if (dw && !single_tile) {
        for (int64_t co = 0; co < g.cout; ++co)
          for (int64_t i = 0; i < bk; ++i) dw[co * k + c0 * khw + i] = static_cast<float>(dw_sum[co * bk + i]);
      }
    }
  });
}

}  // namespace

IMPRINT_REGISTER_KERNEL(conv2d_forward, CPU, Conv2dForwardArgs, conv2d_forward_cpu);
IMPRINT_REGISTER_KERNEL(conv2d_backward, CPU, Conv2dBackwardArgs, conv2d_backward_cpu);

}  // namespace cpu
}  // namespace imprint
