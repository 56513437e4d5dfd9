// Parity cases for the method kernels (csrc/ops/method.cc): nearest-token
// search over the CLIP vocabulary (49408 × 768), the contrastive
// nearest-neighbour loss, the Cones statistic step and neuron masks, at
// Stable Diffusion's sizes and at sizes that hit tile and chunk edges.
//
// Top-k indices are only compared where the similarities are exact on both
// devices: integer-valued inputs make every dot product and norm exact, so
// equal cosines are truly equal and the tie rule (lower index first) decides
// alike. With normal inputs two near-equal cosines may legitimately swap, so
// those cases compare the similarities only.
#include <cstdint>
#include <vector>

#include "ops/ops.h"
#include "parity.h"

namespace imprint {
namespace parity {
namespace {

constexpr int64_t kClipVocab = 49408;
constexpr int64_t kClipWidth = 768;

// Exact cosines: sims compared to within rounding of the final division.
const Tolerance kExactIndices{0, 0};
const Tolerance kExactSims{1e-6, 1e-7};

ParityCase topk_integers(DType dtype, int64_t B, int64_t V, int64_t D, int64_t k, bool norms_given) {
  ParityCase c;
  c.inputs = {integers({B, D}, dtype, -3, 4), integers({V, D}, dtype, -3, 4)};
  c.run = [k, norms_given](const Tensors& in) {
    ops::Attrs a = attrs({{"k", static_cast<double>(k)}});
    if (!norms_given) return run_op("token_topk_cosine", {&in[0], &in[1]}, a);
    const Tensor norms = run_op("token_vocab_norms", {&in[1]}, {})[0];
    return run_op("token_topk_cosine", {&in[0], &in[1], &norms}, a);
  };
  c.tolerances = {kExactIndices, kExactSims};
  return c;
}

ParityCase topk_normal(DType dtype, int64_t B, int64_t V, int64_t D, int64_t k) {
  ParityCase c;
  c.inputs = {normal({B, D}, dtype), normal({V, D}, dtype, 0, 0.02)};
  c.run = [k](const Tensors& in) { return run_op("token_topk_cosine", {&in[0], &in[1]}, attrs({{"k", static_cast<double>(k)}})); };
  c.skip_outputs = {0};
  c.tolerances = {kExactIndices, {1e-4, 1e-5}};
  return c;
}

// Forward loss and backward dqueries from one run.
ParityCase contrastive(DType dtype, int64_t B, int64_t k, int64_t D, double temperature, Tolerance grad_tolerance) {
  ParityCase c;
  c.inputs = {normal({B, D}, dtype), normal({B, k, D}, dtype, 0, 0.5)};
  c.run = [temperature](const Tensors& in) {
    const Tensor loss = run_op("contrastive_nn_loss_forward", {&in[0], &in[1]}, attrs({{"temperature", temperature}}))[0];
    const Tensor dq = run_op("contrastive_nn_loss_backward", {&in[0], &in[1]},
                             attrs({{"temperature", temperature}, {"gradScale", 0.75}}))[0];
    return Tensors{loss, dq};
  };
  c.tolerances = {{1e-4, 1e-5}, grad_tolerance};
  return c;
}

ParityCase stat_step(DType dtype, const Shape& shape, double rho) {
  ParityCase c;
  c.inputs = {normal(shape, dtype, 0, 0.05), normal(shape, dtype, 0, 2), normal(shape, DType::F32)};
  c.run = [rho](const Tensors& in) { return run_op("neuron_stat_step", {&in[0], &in[1], &in[2]}, attrs({{"rho", rho}})); };
  // The same rounded f32 operations in the same order on both devices.
  c.tolerances = {{1e-6, 1e-7}, {1e-6, 1e-7}};
  if (dtype != DType::F32) c.tolerances[0] = default_tolerance(dtype);
  return c;
}

// Sorted unique flat indices into `numel` elements: about one in `every`,
// jittered, always including the first and the last element.
Tensor mask_indices(int64_t numel, int64_t every, const Device& device) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i * every < numel; ++i) idx.push_back(i * every + (i * i * 31 + 7 * i) % every);
  while (!idx.empty() && idx.back() >= numel) idx.pop_back();
  if (idx.empty() || idx.front() != 0) idx.insert(idx.begin(), 0);
  if (idx.back() != numel - 1) idx.push_back(numel - 1);
  const Tensor host = ops::from_host(idx.data(), idx.size() * sizeof(int64_t), {static_cast<int64_t>(idx.size())},
                                     DType::I64, DType::I64);
  return device.is_cpu() ? host : run_launch(ops::to_device(host, device));
}

// Apply, then restore into the masked weight: (masked, saved, restored) must be bit-identical.
ParityCase mask_round_trip(DType dtype, const Shape& shape, int64_t every) {
  ParityCase c;
  c.inputs = {normal(shape, dtype)};
  c.run = [every](const Tensors& in) {
    const Tensor indices = mask_indices(in[0].numel(), every, in[0].device);
    const Tensors applied = run_op("neuron_mask_apply", {&in[0], &indices}, {});
    const Tensor restored = run_op("neuron_mask_restore", {&applied[0], &indices, &applied[1]}, {})[0];
    return Tensors{applied[0], applied[1], restored};
  };
  c.tolerances = {{0, 0}, {0, 0}, {0, 0}};
  return c;
}

}  // namespace

// ---- token_vocab_norms ------------------------------------------------------------

IMPRINT_PARITY_CASE(token_vocab_norms_clip_f32) {
  ParityCase c;
  c.inputs = {normal({kClipVocab, kClipWidth}, DType::F32, 0, 0.02)};
  c.run = [](const Tensors& in) { return run_op("token_vocab_norms", {&in[0]}, {}); };
  return c;
}

IMPRINT_PARITY_CASE(token_vocab_norms_odd_bf16) {
  ParityCase c;
  c.inputs = {normal({1001, 77}, DType::BF16)};
  c.run = [](const Tensors& in) { return run_op("token_vocab_norms", {&in[0]}, {}); };
  return c;
}

// ---- token_topk_cosine -----------------------------------------------------------

// The tuning encoder's search: 64 queries over the whole CLIP vocabulary, k = 64.
IMPRINT_PARITY_CASE(token_topk_cosine_clip_bf16_integers) { return topk_integers(DType::BF16, 64, kClipVocab, kClipWidth, 64, false); }
IMPRINT_PARITY_CASE(token_topk_cosine_clip_f32_integers_norms_given) { return topk_integers(DType::F32, 16, kClipVocab, kClipWidth, 64, true); }
IMPRINT_PARITY_CASE(token_topk_cosine_clip_f32_normal) { return topk_normal(DType::F32, 64, kClipVocab, kClipWidth, 64); }
IMPRINT_PARITY_CASE(token_topk_cosine_clip_bf16_normal_k256) { return topk_normal(DType::BF16, 8, kClipVocab, kClipWidth, 256); }
// 65 queries: two query tiles; 5000 rows: three top-k passes (5 chunks → 2 → 1).
IMPRINT_PARITY_CASE(token_topk_cosine_two_query_tiles_f16_integers) { return topk_integers(DType::F16, 65, 5000, 80, 256, false); }
// One chunk (a single pass) and a vocabulary that fills it exactly plus one row (a last chunk of 1).
IMPRINT_PARITY_CASE(token_topk_cosine_one_chunk_f32_integers) { return topk_integers(DType::F32, 3, 1000, 40, 200, false); }
IMPRINT_PARITY_CASE(token_topk_cosine_chunk_plus_one_bf16_integers) { return topk_integers(DType::BF16, 5, 1025, 64, 256, true); }
// k = V, and a width that is not a multiple of the 16-wide tile step.
IMPRINT_PARITY_CASE(token_topk_cosine_k_equals_vocab_f32_integers) { return topk_integers(DType::F32, 7, 200, 13, 200, false); }
// Few distinct values on a narrow width: many exact ties, decided by the lower index.
IMPRINT_PARITY_CASE(token_topk_cosine_ties_bf16) {
  ParityCase c;
  c.inputs = {integers({9, 3}, DType::BF16, -1, 2), integers({3000, 3}, DType::BF16, -1, 2)};
  c.run = [](const Tensors& in) { return run_op("token_topk_cosine", {&in[0], &in[1]}, attrs({{"k", 100}})); };
  c.tolerances = {kExactIndices, kExactSims};
  return c;
}

// ---- contrastive_nn_loss -----------------------------------------------------------

IMPRINT_PARITY_CASE(contrastive_nn_loss_clip_f32) { return contrastive(DType::F32, 64, 64, kClipWidth, 0.07, {1e-3, 1e-6}); }
IMPRINT_PARITY_CASE(contrastive_nn_loss_clip_bf16) { return contrastive(DType::BF16, 64, 64, kClipWidth, 0.07, {2e-2, 1e-6}); }
IMPRINT_PARITY_CASE(contrastive_nn_loss_clip_f16) { return contrastive(DType::F16, 16, 8, kClipWidth, 0.1, {1e-2, 1e-6}); }
// Odd sizes: 77-wide rows (one block's threads cover them in one step), 300 queries (more rows than threads).
IMPRINT_PARITY_CASE(contrastive_nn_loss_odd_f32) { return contrastive(DType::F32, 5, 3, 77, 0.5, {1e-3, 1e-6}); }
IMPRINT_PARITY_CASE(contrastive_nn_loss_many_queries_f32) { return contrastive(DType::F32, 300, 2, 40, 0.2, {1e-3, 1e-6}); }
// τ = 0.005: near one-hot softmax weights, so gradient terms cancel; compared with a wider atol.
IMPRINT_PARITY_CASE(contrastive_nn_loss_small_temperature_bf16) { return contrastive(DType::BF16, 8, 4, 160, 0.005, {2e-2, 1e-4}); }
IMPRINT_PARITY_CASE(contrastive_nn_loss_one_query_f32) { return contrastive(DType::F32, 1, 4, 64, 0.07, {1e-3, 1e-6}); }

// ---- neuron_stat_step --------------------------------------------------------------

// Cross-attention K/V projections of SD1.x (320/640/1280 out × 768 text width).
IMPRINT_PARITY_CASE(neuron_stat_step_k320_f32) { return stat_step(DType::F32, {320, 768}, 2e-5); }
IMPRINT_PARITY_CASE(neuron_stat_step_v640_bf16) { return stat_step(DType::BF16, {640, 768}, 0.05); }
IMPRINT_PARITY_CASE(neuron_stat_step_k1280_f16) { return stat_step(DType::F16, {1280, 768}, 0.05); }
// More elements than one grid covers: the grid-stride loop goes round.
IMPRINT_PARITY_CASE(neuron_stat_step_grid_stride_f32) { return stat_step(DType::F32, {5120, 4099}, 0.01); }

// ---- neuron masks ------------------------------------------------------------------

IMPRINT_PARITY_CASE(neuron_mask_k1280_bf16) { return mask_round_trip(DType::BF16, {1280, 768}, 7); }
IMPRINT_PARITY_CASE(neuron_mask_v320_f32) { return mask_round_trip(DType::F32, {320, 768}, 97); }
IMPRINT_PARITY_CASE(neuron_mask_odd_f16) { return mask_round_trip(DType::F16, {33, 77}, 2); }
IMPRINT_PARITY_CASE(neuron_mask_no_indices_f32) {
  ParityCase c;
  c.inputs = {normal({40, 77})};
  c.run = [](const Tensors& in) {
    const Tensor host = ops::from_host(nullptr, 0, {0}, DType::I64, DType::I64);
    const Tensor indices = in[0].device.is_cpu() ? host : run_launch(ops::to_device(host, in[0].device));
    const Tensors applied = run_op("neuron_mask_apply", {&in[0], &indices}, {});
    return Tensors{applied[0]};
  };
  c.tolerances = {{0, 0}};
  return c;
}

}  // namespace parity
}  // namespace imprint
