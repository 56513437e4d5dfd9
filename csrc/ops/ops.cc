#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

// Right-aligned broadcast of two shapes; throws naming both operands.
Shape broadcast_shapes(const char* op, const Shape& x, const Shape& y, const Tensor& a, const Tensor& b,
                       const char* what) {
  const size_t nd = std::max(x.size(), y.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    const int64_t dx = i < nd - x.size() ? 1 : x[i - (nd - x.size())];
    const int64_t dy = i < nd - y.size() ? 1 : y[i - (nd - y.size())];
    if (dx != dy && dx != 1 && dy != 1) {
      fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + what + " " + shape_str(x) + " and " + shape_str(y) +
                                         " do not broadcast (" + both(a, b) + ")");
    }
    out[i] = dx == 1 ? dy : dx;
  }
  return out;
}

// Strides of a contiguous tensor of `shape` as seen through the broadcast `out` shape.
void broadcast_strides(const Shape& shape, const Shape& out, int64_t* strides) {
  const Shape own = contiguous_strides(shape);
  const size_t lead = out.size() - shape.size();
  for (size_t i = 0; i < out.size(); ++i) {
    strides[i] = (i < lead || shape[i - lead] == 1) ? 0 : own[i - lead];
  }
}

// Merges neighbouring dims that walk memory as one (stride[d] == shape[d+1] *
// stride[d+1]) and drops size-1 dims, so kernels do fewer index divisions.
// The iteration order (and the output's row-major layout) is unchanged.
void collapse_dims(int& ndim, int64_t* shape, int64_t* strides) {
  int out = 0;
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] == 1) continue;
    if (out > 0 && strides[out - 1] == shape[d] * strides[d]) {
      shape[out - 1] *= shape[d];
      strides[out - 1] = strides[d];
    } else {
      shape[out] = shape[d];
      strides[out] = strides[d];
      ++out;
    }
  }
  ndim = out;
}

// The same for a broadcast binary op: a dim merges into its left neighbour
// when both operands (and the contiguous output) walk them as one.
void collapse_binary_dims(BinaryArgs& args) {
  int out = 0;
  for (int d = 0; d < args.ndim; ++d) {
    const int64_t n = args.shape[d];
    if (n == 1) continue;
    if (out > 0 && args.a_strides[out - 1] == n * args.a_strides[d] && args.b_strides[out - 1] == n * args.b_strides[d]) {
      args.shape[out - 1] *= n;
      args.a_strides[out - 1] = args.a_strides[d];
      args.b_strides[out - 1] = args.b_strides[d];
    } else {
      args.shape[out] = n;
      args.a_strides[out] = args.a_strides[d];
      args.b_strides[out] = args.b_strides[d];
      ++out;
    }
  }
  args.ndim = out;
}

Launch make_launch(Tensor out, std::vector<Tensor> inputs, std::function<void(Backend&)> body) {
  Launch launch;
  launch.queue = out.device;
  launch.output = out;
  launch.outputs = {out};
  launch.inputs = std::move(inputs);
  Backend* backend = &backend_for(out.device);
  launch.run = [backend, body = std::move(body)] {
    body(*backend);
    backend->synchronize();
  };
  return launch;
}

}  // namespace

Launch matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_same_device_and_dtype("matmul", a, b);
  check_float("matmul", a);
  if (a.ndim() < 2 || b.ndim() < 2) {
    fail(ErrorCode::ShapeMismatch, "matmul: both inputs need at least 2 dimensions (" + both(a, b) + ")");
  }
  const int64_t m = trans_a ? a.shape[a.ndim() - 1] : a.shape[a.ndim() - 2];
  const int64_t ka = trans_a ? a.shape[a.ndim() - 2] : a.shape[a.ndim() - 1];
  const int64_t kb = trans_b ? b.shape[b.ndim() - 1] : b.shape[b.ndim() - 2];
  const int64_t n = trans_b ? b.shape[b.ndim() - 2] : b.shape[b.ndim() - 1];
  if (ka != kb) {
    fail(ErrorCode::ShapeMismatch, "matmul: inner dimensions differ, " + std::to_string(ka) + " vs " +
                                       std::to_string(kb) + " (" + both(a, b) + ", transposeA=" +
                                       (trans_a ? "true" : "false") + ", transposeB=" + (trans_b ? "true" : "false") +
                                       ")");
  }
  const Shape a_batch(a.shape.begin(), a.shape.end() - 2), b_batch(b.shape.begin(), b.shape.end() - 2);
  const Shape batch = broadcast_shapes("matmul", a_batch, b_batch, a, b, "batch dimensions");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.dtype, a.device);

  MatmulArgs args{};
  args.dtype = a.dtype;
  args.a = a.data();
  args.b = b.data();
  args.c = out.data();
  args.m = m;
  args.n = n;
  args.k = ka;
  args.trans_a = trans_a;
  args.trans_b = trans_b;
  args.batch_ndim = static_cast<int>(batch.size());
  args.batch = 1;
  for (size_t i = 0; i < batch.size(); ++i) {
    args.batch_shape[i] = batch[i];
    args.batch *= batch[i];
  }
  // Batch strides in elements: a matrix is m*k (resp. k*n) elements.
  broadcast_strides(a_batch, batch, args.a_batch_strides);
  broadcast_strides(b_batch, batch, args.b_batch_strides);
  for (size_t i = 0; i < batch.size(); ++i) {
    args.a_batch_strides[i] *= m * ka;
    args.b_batch_strides[i] *= ka * n;
  }
  const bool empty = out.numel() == 0;
  const bool zero_k = ka == 0;
  return make_launch(out, {a, b}, [args, empty, zero_k, out](Backend& backend) {
    if (empty) return;
    if (zero_k) {
      FillArgs fill{args.dtype, args.c, out.numel(), 0.0};
      backend.fill(fill);
      return;
    }
    backend.matmul(args);
  });
}

Launch binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = op == BinaryOp::Add ? "add" : "mul";
  check_same_device_and_dtype(name, a, b);
  const Shape shape = broadcast_shapes(name, a.shape, b.shape, a, b, "shapes");
  Tensor out = Tensor::empty(shape, a.dtype, a.device);
  BinaryArgs args{};
  args.op = op;
  args.dtype = a.dtype;
  args.a = a.data();
  args.b = b.data();
  args.out = out.data();
  args.ndim = static_cast<int>(shape.size());
  args.numel = out.numel();
  for (size_t i = 0; i < shape.size(); ++i) args.shape[i] = shape[i];
  broadcast_strides(a.shape, shape, args.a_strides);
  broadcast_strides(b.shape, shape, args.b_strides);
  collapse_binary_dims(args);
  return make_launch(out, {a, b}, [args](Backend& backend) {
    if (args.numel > 0) backend.binary(args);
  });
}

Launch sum(const Tensor& a, const std::vector<int64_t>& dims, bool keep_dims) {
  const int nd = a.ndim();
  std::vector<bool> reduced(static_cast<size_t>(nd), dims.empty());
  for (int64_t d : dims) {
    const int64_t dd = d < 0 ? d + nd : d;
    if (dd < 0 || dd >= nd) {
      fail(ErrorCode::InvalidArgument, "sum: dim " + std::to_string(d) + " is out of range for " + a.describe());
    }
    if (reduced[static_cast<size_t>(dd)] && !dims.empty()) {
      fail(ErrorCode::InvalidArgument, "sum: dim " + std::to_string(d) + " is listed twice for " + a.describe());
    }
    reduced[static_cast<size_t>(dd)] = true;
  }
  // Integers sum into int64 (as PyTorch does); floats keep their dtype.
  const DType out_dtype = is_floating(a.dtype) ? a.dtype : DType::I64;
  const Shape strides = contiguous_strides(a.shape);
  SumArgs args{};
  args.in_dtype = a.dtype;
  args.out_dtype = out_dtype;
  args.out_numel = 1;
  args.r_numel = 1;
  Shape out_shape;
  for (int i = 0; i < nd; ++i) {
    if (reduced[static_cast<size_t>(i)]) {
      args.r_shape[args.r_ndim] = a.shape[i];
      args.r_strides[args.r_ndim] = strides[i];
      args.r_ndim += 1;
      args.r_numel *= a.shape[i];
      if (keep_dims) out_shape.push_back(1);
    } else {
      args.out_shape[args.out_ndim] = a.shape[i];
      args.in_out_strides[args.out_ndim] = strides[i];
      args.out_ndim += 1;
      args.out_numel *= a.shape[i];
      out_shape.push_back(a.shape[i]);
    }
  }
  collapse_dims(args.r_ndim, args.r_shape, args.r_strides);
  collapse_dims(args.out_ndim, args.out_shape, args.in_out_strides);
  Tensor out = Tensor::empty(out_shape, out_dtype, a.device);
  args.in = a.data();
  args.out = out.data();
  return make_launch(out, {a}, [args](Backend& backend) {
    if (args.out_numel == 0) return;
    if (args.r_numel == 0) {
      backend.fill(FillArgs{args.out_dtype, args.out, args.out_numel, 0.0});
      return;
    }
    backend.sum(args);
  });
}

Launch cast(const Tensor& a, DType dtype) {
  Tensor out = Tensor::empty(a.shape, dtype, a.device);
  CastArgs args{a.dtype, dtype, a.data(), out.data(), a.numel()};
  return make_launch(out, {a}, [args](Backend& backend) {
    if (args.numel == 0) return;
    if (args.src_dtype == args.dst_dtype) {
      backend.copy_on_device(args.out, args.in, static_cast<size_t>(args.numel) * dtype_size(args.src_dtype));
    } else {
      backend.cast(args);
    }
  });
}

Launch to_device(const Tensor& a, const Device& device) {
  Tensor out = Tensor::empty(a.shape, a.dtype, device);
  Launch launch;
  launch.output = out;
  launch.outputs = {out};
  launch.inputs = {a};
  launch.queue = device.is_cpu() ? a.device : device;  // the GPU side drives the copy
  Backend* src = &backend_for(a.device);
  Backend* dst = &backend_for(device);
  const size_t bytes = a.nbytes();
  const void* in = a.data();
  void* o = out.data();
  launch.run = [src, dst, bytes, in, o] {
    if (bytes == 0) return;
    if (src == dst) {
      src->copy_on_device(o, in, bytes);
    } else if (src->device().is_cpu()) {
      dst->copy_from_host(o, in, bytes);
    } else if (dst->device().is_cpu()) {
      src->copy_to_host(o, in, bytes);
    } else {
      // GPU to GPU through a host bounce buffer: simple and always valid.
      std::vector<unsigned char> staging(bytes);
      src->copy_to_host(staging.data(), in, bytes);
      dst->copy_from_host(o, staging.data(), bytes);
    }
    src->synchronize();
    dst->synchronize();
  };
  return launch;
}

Launch random(RandomKind kind, const Shape& shape, DType dtype, const Device& device, uint64_t seed, uint64_t offset,
              float a, float b) {
  const char* name = kind == RandomKind::Uniform ? "rand" : "randn";
  if (!is_floating(dtype)) {
    fail(ErrorCode::DtypeMismatch, std::string(name) + ": dtype " + dtype_name(dtype) +
                                       " is not supported; use f32, f16 or bf16");
  }
  Tensor out = Tensor::empty(shape, dtype, device);
  RandomArgs args{kind, dtype, out.data(), out.numel(), seed, offset, a, b};
  return make_launch(out, {}, [args](Backend& backend) {
    if (args.numel > 0) backend.random(args);
  });
}

Launch full(const Shape& shape, DType dtype, const Device& device, double value) {
  if (!is_floating(dtype)) {
    double lo = 0, hi = 0;
    switch (dtype) {
      case DType::I32: lo = -2147483648.0; hi = 2147483647.0; break;
      case DType::I64: lo = -9007199254740991.0; hi = 9007199254740991.0; break;
      default: lo = 0; hi = 255; break;
    }
    if (!(value >= lo && value <= hi) || std::floor(value) != value) {
      fail(ErrorCode::InvalidArgument, "full: value " + std::to_string(value) + " is not representable as " +
                                           dtype_name(dtype));
    }
  }
  Tensor out = Tensor::empty(shape, dtype, device);
  FillArgs args{dtype, out.data(), out.numel(), value};
  return make_launch(out, {}, [args](Backend& backend) {
    if (args.numel > 0) backend.fill(args);
  });
}

Tensor reshape(const Tensor& a, const Shape& shape) {
  if (shape_numel(shape, a.dtype) != a.numel()) {
    fail(ErrorCode::ShapeMismatch, "reshape: " + a.describe() + " has " + std::to_string(a.numel()) +
                                       " elements, shape " + shape_str(shape) + " holds " +
                                       std::to_string(shape_numel(shape, a.dtype)));
  }
  Tensor out = a;
  out.shape = shape;
  return out;
}

Tensor from_host(const void* data, size_t bytes, const Shape& shape, DType src_dtype, DType dtype) {
  const int64_t n = shape_numel(shape, src_dtype);
  const size_t expected = static_cast<size_t>(n) * dtype_size(src_dtype);
  if (bytes != expected) {
    fail(ErrorCode::ShapeMismatch, "tensor: " + std::to_string(bytes) + " bytes of " + dtype_name(src_dtype) +
                                       " data do not fill shape " + shape_str(shape) + " (needs " +
                                       std::to_string(expected) + " bytes)");
  }
  Tensor t = Tensor::empty(shape, dtype, Device::cpu());
  if (n == 0) return t;
  if (src_dtype == dtype) std::memcpy(t.data(), data, bytes);
  else cpu_backend().cast(CastArgs{src_dtype, dtype, data, t.data(), n});
  return t;
}

void to_host(const Tensor& t, DType dtype, void* out) {
  if (!t.device.is_cpu()) {
    fail(ErrorCode::DeviceMismatch, "dataSync: " + t.describe() + " is not on the cpu; use await tensor.data()");
  }
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.dtype == dtype) std::memcpy(out, t.data(), t.nbytes());
  else cpu_backend().cast(CastArgs{t.dtype, dtype, t.data(), out, n});
}

}  // namespace ops
}  // namespace imprint
