// The method ops' plans (kernels in csrc/cpu/method_*.cc and cuda/method_*.cu).
//
// Tuning encoder (DESIGN.md §1.3):
// token_vocab_norms(vocab [V, D]) → norms f32 [V]
//   (compute once per vocabulary and pass to token_topk_cosine)
// token_topk_cosine(queries [B, D], vocab [V, D], vocabNorms? f32 [V]; k)
//   → indices i32 [B, k], similarities f32 [B, k]: the k vocabulary rows of
//   highest cosine similarity to each query, sorted descending, equal
//   similarities by lower index first; 1 ≤ k ≤ min(V, 256). A zero row has
//   cosine 0 with everything; a NaN similarity (non-finite inputs) ranks last.
// contrastive_nn_loss_forward(queries [B, D], neighbours [B, k, D]; temperature) → loss f32 []
// contrastive_nn_loss_backward(queries, neighbours; temperature, gradScale = 1) → dqueries [B, D]
//   The design's contrastive nearest-neighbour loss with cosine logits: with
//   unit vectors q̂_b = q_b/‖q_b‖ and n̂_bj = n_bj/‖n_bj‖ (a zero row stays 0),
//     L_b = −log( Σ_j exp(q̂_b·n̂_bj/τ) / (Σ_j exp(q̂_b·n̂_bj/τ) + Σ_{c≠b} exp(q̂_b·q̂_c/τ)) )
//   the positives being query b's k nearest vocabulary embeddings and the
//   negatives the other queries of the batch; loss = (1/B) Σ_b L_b. The
//   neighbours are constants (frozen vocabulary); dqueries is the full
//   gradient, including each query's part as another query's negative.
//   With B = 1 there are no negatives and the loss is 0.
//
// Concept neurons (DESIGN.md §1.2):
// neuron_stat_step(theta, grad, stat f32; rho) → theta, stat (new tensors):
//   stat + θ·g and θ − ρ·θ·θ·g in one pass (f32 arithmetic, θ rounded to its dtype)
// neuron_mask_apply(weight, indices i64 [n]) → weight with the indexed
//   elements (flat, row-major) set to 0, and saved [n] (their previous values)
// neuron_mask_restore(weight, indices i64 [n], saved [n]) → weight with saved
//   put back at the indices
//   Indices must be sorted ascending without repeats and within the weight;
//   the op checks them on the host before the kernel runs and names the first
//   offending position.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/args/method.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

void check_nonempty(const char* op, const Tensor& t, const char* name) {
  if (t.numel() == 0) fail(ErrorCode::ShapeMismatch, std::string(op) + ": " + name + " must not be empty, got " + t.describe());
}

double positive_temperature(const char* op, const Attrs& attrs) {
  const double temperature = attrs.get_number(op, "temperature");
  if (!(temperature > 0) || !std::isfinite(temperature)) {
    bad_attr(op, "temperature must be a finite number > 0, got " + std::to_string(temperature));
  }
  return temperature;
}

// ---- tuning encoder ----------------------------------------------------------

Launch token_vocab_norms(const OpInputs& inputs, const Attrs&) {
  const char* op = "token_vocab_norms";
  const Tensor& vocab = input(op, inputs, 0, "vocab");
  check_float(op, vocab, "vocab");
  check_ndim(op, vocab, "vocab", 2, "[V, D]");
  Tensor norms = Tensor::empty({vocab.shape[0]}, DType::F32, vocab.device);
  RowNormsArgs args{vocab.dtype, vocab.data(), static_cast<float*>(norms.data()), vocab.shape[0], vocab.shape[1]};
  return kernel_launch("token_vocab_norms", vocab.device, {norms}, {vocab}, args);
}

Launch token_topk_cosine(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "token_topk_cosine";
  const Tensor& queries = input(op, inputs, 0, "queries");
  const Tensor& vocab = input(op, inputs, 1, "vocab");
  const Tensor* vocab_norms = optional_input(inputs, 2);
  check_float(op, queries, "queries");
  check_ndim(op, queries, "queries", 2, "[B, D]");
  check_matches(op, queries, "queries", vocab, "vocab");
  check_ndim(op, vocab, "vocab", 2, "[V, D]");
  check_nonempty(op, queries, "queries");
  check_nonempty(op, vocab, "vocab");
  const int64_t B = queries.shape[0], D = queries.shape[1], V = vocab.shape[0];
  if (vocab.shape[1] != D) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": vocab rows must have the queries' width " + std::to_string(D) +
                                       ", got vocab " + vocab.describe() + " and queries " + queries.describe());
  }
  // The CUDA kernels put the batch on grid.y and return i32 indices.
  if (B > 65535) fail(ErrorCode::ShapeMismatch, std::string(op) + ": at most 65535 queries per call, got " + queries.describe());
  if (V > INT32_MAX) fail(ErrorCode::ShapeMismatch, std::string(op) + ": vocab has more rows than i32 indices reach: " + vocab.describe());
  if (vocab_norms) {
    check_device(op, vocab, "vocab", *vocab_norms, "vocabNorms");
    if (vocab_norms->dtype != DType::F32) {
      fail(ErrorCode::DtypeMismatch, std::string(op) + ": vocabNorms must be f32 (from token_vocab_norms), got " + vocab_norms->describe());
    }
    check_shape(op, *vocab_norms, "vocabNorms", {V});
  }
  const int64_t k = attrs.get_int(op, "k");
  const int64_t max_k = std::min<int64_t>(V, kTokenTopkMaxK);
  if (k < 1 || k > max_k) {
    bad_attr(op, "k must be in [1, " + std::to_string(max_k) + "] (at most the vocab's " + std::to_string(V) +
                     " rows and at most " + std::to_string(kTokenTopkMaxK) + "), got " + std::to_string(k));
  }
  Tensor indices = Tensor::empty({B, k}, DType::I32, queries.device);
  Tensor similarities = Tensor::empty({B, k}, DType::F32, queries.device);
  TokenTopkArgs args{};
  args.dtype = queries.dtype;
  args.queries = queries.data();
  args.vocab = vocab.data();
  args.vocab_norms = vocab_norms ? static_cast<const float*>(vocab_norms->data()) : nullptr;
  args.indices = static_cast<int32_t*>(indices.data());
  args.similarities = static_cast<float*>(similarities.data());
  args.batch = B;
  args.vocab_size = V;
  args.dim = D;
  args.k = k;
  std::vector<Tensor> keep = {queries, vocab};
  if (vocab_norms) keep.push_back(*vocab_norms);
  return kernel_launch("token_topk_cosine", queries.device, {indices, similarities}, keep, args);
}

ContrastiveNnArgs check_contrastive(const char* op, const Tensor& queries, const Tensor& neighbours, const Attrs& attrs) {
  check_float(op, queries, "queries");
  check_ndim(op, queries, "queries", 2, "[B, D]");
  check_matches(op, queries, "queries", neighbours, "neighbours");
  check_ndim(op, neighbours, "neighbours", 3, "[B, k, D]");
  check_nonempty(op, queries, "queries");
  check_nonempty(op, neighbours, "neighbours");
  const int64_t B = queries.shape[0], D = queries.shape[1];
  if (neighbours.shape[0] != B || neighbours.shape[2] != D) {
    fail(ErrorCode::ShapeMismatch, std::string(op) + ": neighbours must be [B, k, D] = [" + std::to_string(B) + ", k, " +
                                       std::to_string(D) + "] for queries " + queries.describe() + ", got " +
                                       neighbours.describe());
  }
  if (B > 65535) fail(ErrorCode::ShapeMismatch, std::string(op) + ": at most 65535 queries per call, got " + queries.describe());
  ContrastiveNnArgs args{};
  args.dtype = queries.dtype;
  args.queries = queries.data();
  args.neighbours = neighbours.data();
  args.batch = B;
  args.k = neighbours.shape[1];
  args.dim = D;
  args.temperature = positive_temperature(op, attrs);
  args.grad_scale = 1.0;
  return args;
}

Launch contrastive_nn_loss_forward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "contrastive_nn_loss_forward";
  const Tensor& queries = input(op, inputs, 0, "queries");
  const Tensor& neighbours = input(op, inputs, 1, "neighbours");
  ContrastiveNnArgs args = check_contrastive(op, queries, neighbours, attrs);
  Tensor loss = Tensor::empty({}, DType::F32, queries.device);
  args.out = loss.data();
  return kernel_launch("contrastive_nn_loss_forward", queries.device, {loss}, {queries, neighbours}, args);
}

Launch contrastive_nn_loss_backward(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "contrastive_nn_loss_backward";
  const Tensor& queries = input(op, inputs, 0, "queries");
  const Tensor& neighbours = input(op, inputs, 1, "neighbours");
  ContrastiveNnArgs args = check_contrastive(op, queries, neighbours, attrs);
  args.grad_scale = attrs.get_number(op, "gradScale", 1.0);
  if (!std::isfinite(args.grad_scale)) bad_attr(op, "gradScale must be finite, got " + std::to_string(args.grad_scale));
  Tensor dqueries = Tensor::empty(queries.shape, queries.dtype, queries.device);
  args.out = dqueries.data();
  return kernel_launch("contrastive_nn_loss_backward", queries.device, {dqueries}, {queries, neighbours}, args);
}

// ---- concept neurons ---------------------------------------------------------

Launch neuron_stat_step(const OpInputs& inputs, const Attrs& attrs) {
  const char* op = "neuron_stat_step";
  const Tensor& theta = input(op, inputs, 0, "theta");
  const Tensor& grad = input(op, inputs, 1, "grad");
  const Tensor& stat = input(op, inputs, 2, "stat");
  check_float(op, theta, "theta");
  check_matches(op, theta, "theta", grad, "grad");
  check_shape(op, grad, "grad", theta.shape);
  check_device(op, theta, "theta", stat, "stat");
  if (stat.dtype != DType::F32) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": stat must be f32 (the statistic accumulates over many steps), got " +
                                       stat.describe());
  }
  check_shape(op, stat, "stat", theta.shape);
  const double rho = attrs.get_number(op, "rho");
  if (!std::isfinite(rho)) bad_attr(op, "rho must be finite, got " + std::to_string(rho));
  Tensor theta_out = Tensor::empty(theta.shape, theta.dtype, theta.device);
  Tensor stat_out = Tensor::empty(theta.shape, DType::F32, theta.device);
  NeuronStatStepArgs args{};
  args.dtype = theta.dtype;
  args.theta = theta.data();
  args.grad = grad.data();
  args.stat = static_cast<const float*>(stat.data());
  args.theta_out = theta_out.data();
  args.stat_out = static_cast<float*>(stat_out.data());
  args.numel = theta.numel();
  args.rho = rho;
  return kernel_launch("neuron_stat_step", theta.device, {theta_out, stat_out}, {theta, grad, stat}, args);
}

void check_indices(const char* op, const Tensor& weight, const Tensor& indices) {
  check_device(op, weight, "weight", indices, "indices");
  if (indices.dtype != DType::I64) {
    fail(ErrorCode::DtypeMismatch, std::string(op) + ": indices must be i64 (flat indices into weight), got " + indices.describe());
  }
  check_ndim(op, indices, "indices", 1, "[n]");
}

// Indices are data: they are read on the host when the launch runs (after
// the ops before it on the queue), copied from the GPU when they live there.
void check_index_values(const char* op, const Tensor& indices, int64_t numel) {
  const int64_t n = indices.numel();
  if (n == 0) return;
  std::vector<int64_t> host(static_cast<size_t>(n));
  Backend& backend = backend_for(indices.device);
  backend.make_current();
  backend.copy_to_host(host.data(), indices.data(), indices.nbytes());
  backend.synchronize();  // the copy may be queued on the device's stream
  for (int64_t i = 0; i < n; ++i) {
    const int64_t at = host[static_cast<size_t>(i)];
    if (at < 0 || at >= numel) {
      fail(ErrorCode::InvalidArgument, std::string(op) + ": indices[" + std::to_string(i) + "] = " + std::to_string(at) +
                                           " is out of range for a weight of " + std::to_string(numel) + " elements");
    }
    if (i > 0 && at <= host[static_cast<size_t>(i - 1)]) {
      fail(ErrorCode::InvalidArgument, std::string(op) + ": indices must be sorted ascending without repeats, but indices[" +
                                           std::to_string(i) + "] = " + std::to_string(at) + " follows indices[" +
                                           std::to_string(i - 1) + "] = " + std::to_string(host[static_cast<size_t>(i - 1)]));
    }
  }
}

// kernel_launch with the index check in front of the kernel, on the queue.
Launch mask_launch(const char* op, const Device& device, std::vector<Tensor> outputs, std::vector<Tensor> inputs,
                   const NeuronMaskArgs& args, const Tensor& indices) {
  Launch launch = kernel_launch(op, device, std::move(outputs), std::move(inputs), args);
  std::function<void()> run_kernel = std::move(launch.run);
  const std::string name = op;
  const int64_t numel = args.numel;
  launch.run = [name, indices, numel, run_kernel] {
    check_index_values(name.c_str(), indices, numel);
    run_kernel();
  };
  return launch;
}

Launch neuron_mask_apply(const OpInputs& inputs, const Attrs&) {
  const char* op = "neuron_mask_apply";
  const Tensor& weight = input(op, inputs, 0, "weight");
  const Tensor& indices = input(op, inputs, 1, "indices");
  check_float(op, weight, "weight");
  check_indices(op, weight, indices);
  const int64_t n = indices.shape[0];
  Tensor weight_out = Tensor::empty(weight.shape, weight.dtype, weight.device);
  Tensor saved = Tensor::empty({n}, weight.dtype, weight.device);
  NeuronMaskArgs args{};
  args.dtype = weight.dtype;
  args.weight = weight.data();
  args.indices = static_cast<const int64_t*>(indices.data());
  args.saved_out = saved.data();
  args.weight_out = weight_out.data();
  args.numel = weight.numel();
  args.n = n;
  return mask_launch(op, weight.device, {weight_out, saved}, {weight, indices}, args, indices);
}

Launch neuron_mask_restore(const OpInputs& inputs, const Attrs&) {
  const char* op = "neuron_mask_restore";
  const Tensor& weight = input(op, inputs, 0, "weight");
  const Tensor& indices = input(op, inputs, 1, "indices");
  const Tensor& saved = input(op, inputs, 2, "saved");
  check_float(op, weight, "weight");
  check_indices(op, weight, indices);
  const int64_t n = indices.shape[0];
  check_matches(op, weight, "weight", saved, "saved");
  check_shape(op, saved, "saved", {n});
  Tensor weight_out = Tensor::empty(weight.shape, weight.dtype, weight.device);
  NeuronMaskArgs args{};
  args.dtype = weight.dtype;
  args.weight = weight.data();
  args.indices = static_cast<const int64_t*>(indices.data());
  args.saved_in = saved.data();
  args.weight_out = weight_out.data();
  args.numel = weight.numel();
  args.n = n;
  return mask_launch(op, weight.device, {weight_out}, {weight, indices, saved}, args, indices);
}

}  // namespace

IMPRINT_REGISTER_OP(token_vocab_norms, token_vocab_norms);
IMPRINT_REGISTER_OP(token_topk_cosine, token_topk_cosine);
IMPRINT_REGISTER_OP(contrastive_nn_loss_forward, contrastive_nn_loss_forward);
IMPRINT_REGISTER_OP(contrastive_nn_loss_backward, contrastive_nn_loss_backward);
IMPRINT_REGISTER_OP(neuron_stat_step, neuron_stat_step);
IMPRINT_REGISTER_OP(neuron_mask_apply, neuron_mask_apply);
IMPRINT_REGISTER_OP(neuron_mask_restore, neuron_mask_restore);

}  // namespace ops
}  // namespace imprint
