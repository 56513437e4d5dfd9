// Batched matmul: f32 goes straight to sgemm; f16/bf16 are widened to f32
// panels, multiplied with f32 accumulation and rounded back.
#include <vector>

#include "core/thread_pool.h"
#include "cpu/blas.h"
#include "cpu/element.h"
#include "cpu/kernels.h"

namespace imprint {
namespace cpu {

int64_t batch_offset(const MatmulArgs& args, int64_t b, const int64_t* strides) {
  int64_t offset = 0;
  for (int d = args.batch_ndim - 1; d >= 0; --d) {
    offset += (b % args.batch_shape[d]) * strides[d];
    b /= args.batch_shape[d];
  }
  return offset;
}

namespace {

template <class T>
void matmul_typed(const MatmulArgs& args) {
  const int64_t m = args.m, n = args.n, k = args.k;
  const int64_t lda = args.trans_a ? m : k, ldb = args.trans_b ? k : n;
  const T* a = static_cast<const T*>(args.a);
  const T* b = static_cast<const T*>(args.b);
  T* c = static_cast<T*>(args.c);

  auto one = [&](int64_t batch) {
    const T* ab = a + batch_offset(args, batch, args.a_batch_strides);
    const T* bb = b + batch_offset(args, batch, args.b_batch_strides);
    T* cb = c + batch * m * n;
    if constexpr (std::is_same<T, float>::value) {
      sgemm(args.trans_a, args.trans_b, m, n, k, ab, lda, bb, ldb, cb, n);
    } else {
      std::vector<float> af(static_cast<size_t>(m * k)), bf(static_cast<size_t>(k * n)), cf(static_cast<size_t>(m * n));
      load_span(ab, m * k, af.data());
      load_span(bb, k * n, bf.data());
      sgemm(args.trans_a, args.trans_b, m, n, k, af.data(), lda, bf.data(), ldb, cf.data(), n);
      for (int64_t i = 0; i < m * n; ++i) cb[i] = store<T>(cf[i]);
    }
  };

  // Many small products: one single-threaded GEMM per pool thread beats
  // threading inside each tiny GEMM.
  const int threads = num_threads();
  const bool small = m * n * k < (int64_t{1} << 18);
  if (args.batch >= threads && small && threads > 1) {
    SerialBlasScope serial;
    parallel_for(args.batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) one(i);
    });
  } else {
    for (int64_t i = 0; i < args.batch; ++i) one(i);
  }
}

}  // namespace

void matmul(const MatmulArgs& args) {
  switch (args.dtype) {
    case DType::F32: matmul_typed<float>(args); break;
    case DType::F16: matmul_typed<f16_t>(args); break;
    case DType::BF16: matmul_typed<bf16_t>(args); break;
    default: fail(ErrorCode::Internal, "cpu matmul reached with a non-float dtype");
  }
}

}  // namespace cpu
}  // namespace imprint
