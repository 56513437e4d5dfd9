// Parity cases for the nn ops' CUDA kernels: group and layer norm, the
// activations, softmax and fused attention, forward and backward, at Stable
// Diffusion and CLIP shapes and at odd sizes that end tiles part-way.
//
// The CPU kernels compute in f32 only. For f16/bf16 cases the CPU run widens
// the (exactly representable) inputs to f32 and rounds the outputs back to
// their dtype, which is the CUDA kernels' own contract: f32 arithmetic on the
// stored values, one round-to-nearest-even on store. Saved statistics (mean,
// rstd, lse) are f32 on both devices.
#include <algorithm>
#include <cmath>

#include "ops/ops.h"
#include "parity.h"

namespace imprint {
namespace parity {
namespace {

// Runs `op` as JavaScript would on the inputs' device; `inputs` may hold
// nullptr for an optional input left out. Outputs listed in f32_outputs are
// f32 on every device; the others have `dtype` (the storage dtype).
Tensors run_stored(const std::string& op, const std::vector<const Tensor*>& inputs, const ops::Attrs& op_attrs,
                   DType dtype, const std::vector<size_t>& f32_outputs = {}) {
  const Tensor* first = nullptr;
  for (const Tensor* t : inputs) {
    if (t) {
      first = t;
      break;
    }
  }
  if (dtype == DType::F32 || !first || !first->device.is_cpu()) return run_op(op, inputs, op_attrs);
  std::vector<Tensor> widened;
  widened.reserve(inputs.size());
  std::vector<const Tensor*> wide_inputs;
  for (const Tensor* t : inputs) {
    if (t && t->dtype == dtype) {
      widened.push_back(run_launch(ops::cast(*t, DType::F32)));
      wide_inputs.push_back(&widened.back());
    } else {
      wide_inputs.push_back(t);
    }
  }
  Tensors outs = run_op(op, wide_inputs, op_attrs);
  for (size_t i = 0; i < outs.size(); ++i) {
    if (std::find(f32_outputs.begin(), f32_outputs.end(), i) != f32_outputs.end()) continue;
    outs[i] = run_launch(ops::cast(outs[i], dtype));
  }
  return outs;
}

// Long f32 reductions (gradients summed over thousands of terms in another
// order) get a little more room than the element-wise default.
constexpr Tolerance kF32Sums{1e-3, 1e-4};

Tolerance sums_tolerance(DType dtype) { return dtype == DType::F32 ? kF32Sums : default_tolerance(dtype); }

// --- group norm ---------------------------------------------------------------

ParityCase group_norm_case(DType dtype, Shape shape, int64_t groups, bool affine) {
  ParityCase c;
  const int64_t channels = shape[1];
  c.inputs = {normal(shape, dtype, 0.5, 2.0), normal({channels}, dtype, 1.0, 0.2), normal({channels}, dtype, 0, 0.5)};
  c.run = [dtype, groups, affine](const Tensors& in) {
    const Tensor* w = affine ? &in[1] : nullptr;
    const Tensor* b = affine ? &in[2] : nullptr;
    return run_stored("group_norm_forward", {&in[0], w, b}, attrs({{"groups", static_cast<double>(groups)}}), dtype,
                      {1, 2});
  };
  return c;
}

// The fused GroupNorm + SiLU: silu(y), y when kept, then the statistics.
ParityCase group_norm_silu_case(DType dtype, Shape shape, int64_t groups, bool keep_norm) {
  ParityCase c;
  const int64_t channels = shape[1];
  c.inputs = {normal(shape, dtype, 0.5, 2.0), normal({channels}, dtype, 1.0, 0.2), normal({channels}, dtype, 0, 0.5)};
  c.run = [dtype, groups, keep_norm](const Tensors& in) {
    const ops::Attrs a = attrs({{"groups", static_cast<double>(groups)}, {"keepNorm", keep_norm ? 1.0 : 0.0}});
    return run_stored("group_norm_silu_forward", {&in[0], &in[1], &in[2]}, a, dtype,
                      keep_norm ? std::vector<size_t>{2, 3} : std::vector<size_t>{1, 2});
  };
  return c;
}

// dx, dweight, dbias from the forward's own statistics (the usual training step).
ParityCase group_norm_backward_case(DType dtype, Shape shape, int64_t groups, bool affine) {
  ParityCase c;
  const int64_t channels = shape[1];
  c.inputs = {normal(shape, dtype, 0.5, 2.0), normal({channels}, dtype, 1.0, 0.2), normal(shape, dtype)};
  c.run = [dtype, groups, affine](const Tensors& in) {
    const Tensor* w = affine ? &in[1] : nullptr;
    const ops::Attrs a = attrs({{"groups", static_cast<double>(groups)}});
    const Tensors fwd = run_stored("group_norm_forward", {&in[0], w, nullptr}, a, dtype, {1, 2});
    const ops::Attrs ab = attrs({{"groups", static_cast<double>(groups)}, {"weightGrad", 1}, {"biasGrad", 1}});
    return run_stored("group_norm_backward", {&in[2], &in[0], &fwd[1], &fwd[2], w}, ab, dtype);
  };
  c.tolerances = {default_tolerance(dtype), sums_tolerance(dtype), sums_tolerance(dtype)};
  return c;
}

}  // namespace

IMPRINT_PARITY_CASE(group_norm_sd_320_bf16) { return group_norm_case(DType::BF16, {2, 320, 64, 64}, 32, true); }
IMPRINT_PARITY_CASE(group_norm_sd_1280_f32) { return group_norm_case(DType::F32, {1, 1280, 8, 8}, 32, true); }
IMPRINT_PARITY_CASE(group_norm_sd_640_f16) { return group_norm_case(DType::F16, {2, 640, 16, 16}, 32, true); }
IMPRINT_PARITY_CASE(group_norm_odd_f32) { return group_norm_case(DType::F32, {3, 6, 5, 7}, 3, true); }
IMPRINT_PARITY_CASE(group_norm_no_affine_f32) { return group_norm_case(DType::F32, {2, 12, 33}, 4, false); }
IMPRINT_PARITY_CASE(group_norm_silu_sd_320_bf16) { return group_norm_silu_case(DType::BF16, {2, 320, 64, 64}, 32, true); }
IMPRINT_PARITY_CASE(group_norm_silu_inference_sd_640_f16) {
  return group_norm_silu_case(DType::F16, {1, 640, 32, 32}, 32, false);
}
IMPRINT_PARITY_CASE(group_norm_silu_odd_f32) { return group_norm_silu_case(DType::F32, {3, 6, 5, 7}, 3, true); }
IMPRINT_PARITY_CASE(group_norm_backward_sd_320_bf16) {
  return group_norm_backward_case(DType::BF16, {2, 320, 64, 64}, 32, true);
}
IMPRINT_PARITY_CASE(group_norm_backward_sd_1280_f32) {
  return group_norm_backward_case(DType::F32, {1, 1280, 8, 8}, 32, true);
}
IMPRINT_PARITY_CASE(group_norm_backward_odd_f32) { return group_norm_backward_case(DType::F32, {3, 6, 5, 7}, 3, true); }
IMPRINT_PARITY_CASE(group_norm_backward_no_affine_f16) {
  return group_norm_backward_case(DType::F16, {2, 12, 33}, 4, false);
}

// --- layer norm ---------------------------------------------------------------

namespace {

ParityCase layer_norm_case(DType dtype, Shape shape, bool affine) {
  ParityCase c;
  const int64_t d = shape.back();
  c.inputs = {normal(shape, dtype, -0.3, 1.5), normal({d}, dtype, 1.0, 0.2), normal({d}, dtype, 0, 0.5)};
  c.run = [dtype, affine](const Tensors& in) {
    return run_stored("layer_norm_forward", {&in[0], affine ? &in[1] : nullptr, affine ? &in[2] : nullptr}, {}, dtype,
                      {1, 2});
  };
  return c;
}

ParityCase layer_norm_backward_case(DType dtype, Shape shape, bool affine) {
  ParityCase c;
  const int64_t d = shape.back();
  c.inputs = {normal(shape, dtype, -0.3, 1.5), normal({d}, dtype, 1.0, 0.2), normal(shape, dtype)};
  c.run = [dtype, affine](const Tensors& in) {
    const Tensor* w = affine ? &in[1] : nullptr;
    const Tensors fwd = run_stored("layer_norm_forward", {&in[0], w, nullptr}, {}, dtype, {1, 2});
    return run_stored("layer_norm_backward", {&in[2], &in[0], &fwd[1], &fwd[2], w},
                      attrs({{"weightGrad", 1}, {"biasGrad", 1}}), dtype);
  };
  c.tolerances = {default_tolerance(dtype), sums_tolerance(dtype), sums_tolerance(dtype)};
  return c;
}

}  // namespace

IMPRINT_PARITY_CASE(layer_norm_clip_768_f32) { return layer_norm_case(DType::F32, {2, 77, 768}, true); }
IMPRINT_PARITY_CASE(layer_norm_sd_320_bf16) { return layer_norm_case(DType::BF16, {2, 256, 320}, true); }
IMPRINT_PARITY_CASE(layer_norm_77_f16) { return layer_norm_case(DType::F16, {3, 5, 77}, true); }
IMPRINT_PARITY_CASE(layer_norm_1280_no_affine_f32) { return layer_norm_case(DType::F32, {33, 1280}, false); }
IMPRINT_PARITY_CASE(layer_norm_backward_clip_768_f32) {
  return layer_norm_backward_case(DType::F32, {2, 77, 768}, true);
}
IMPRINT_PARITY_CASE(layer_norm_backward_sd_320_bf16) {
  return layer_norm_backward_case(DType::BF16, {2, 256, 320}, true);
}
IMPRINT_PARITY_CASE(layer_norm_backward_77_f16) { return layer_norm_backward_case(DType::F16, {3, 5, 77}, true); }
IMPRINT_PARITY_CASE(layer_norm_backward_rows_f32) {
  return layer_norm_backward_case(DType::F32, {4100, 64}, true);  // many row chunks
}
IMPRINT_PARITY_CASE(layer_norm_backward_no_affine_f32) {
  return layer_norm_backward_case(DType::F32, {7, 1280}, false);
}

// --- activations ----------------------------------------------------------------

namespace {

// x spans GELU's and SiLU's curved part and both tails.
ParityCase act_forward_case(const char* op, DType dtype) {
  ParityCase c;
  c.inputs = {normal({2, 640, 7, 9}, dtype, 0, 3)};
  c.run = [op, dtype](const Tensors& in) { return run_stored(op, {&in[0]}, {}, dtype); };
  return c;
}

ParityCase act_backward_case(const char* op, DType dtype) {
  ParityCase c;
  c.inputs = {normal({2, 640, 7, 9}, dtype), normal({2, 640, 7, 9}, dtype, 0, 3)};
  c.run = [op, dtype](const Tensors& in) { return run_stored(op, {&in[0], &in[1]}, {}, dtype); };
  return c;
}

}  // namespace

#define IMPRINT_ACT_CASES(name, dtype)                                                                        \
  IMPRINT_PARITY_CASE(silu_forward_##name) { return act_forward_case("silu_forward", dtype); }               \
  IMPRINT_PARITY_CASE(silu_backward_##name) { return act_backward_case("silu_backward", dtype); }            \
  IMPRINT_PARITY_CASE(gelu_forward_##name) { return act_forward_case("gelu_forward", dtype); }               \
  IMPRINT_PARITY_CASE(gelu_backward_##name) { return act_backward_case("gelu_backward", dtype); }            \
  IMPRINT_PARITY_CASE(quick_gelu_forward_##name) { return act_forward_case("quick_gelu_forward", dtype); }   \
  IMPRINT_PARITY_CASE(quick_gelu_backward_##name) { return act_backward_case("quick_gelu_backward", dtype); } \
  IMPRINT_PARITY_CASE(geglu_forward_##name) {                                                                 \
    ParityCase c;                                                                                             \
    c.inputs = {normal({2, 77, 2 * 1280}, dtype, 0, 2)};                                                      \
    c.run = [](const Tensors& in) { return run_stored("geglu_forward", {&in[0]}, {}, dtype); };               \
    return c;                                                                                                 \
  }                                                                                                           \
  IMPRINT_PARITY_CASE(geglu_backward_##name) {                                                                \
    ParityCase c;                                                                                             \
    c.inputs = {normal({3, 33, 40}, dtype), normal({3, 33, 80}, dtype, 0, 2)};                                \
    c.run = [](const Tensors& in) { return run_stored("geglu_backward", {&in[0], &in[1]}, {}, dtype); };      \
    return c;                                                                                                 \
  }                                                                                                           \
  IMPRINT_PARITY_CASE(scale_forward_##name) {                                                                 \
    ParityCase c;                                                                                             \
    c.inputs = {normal({5, 1001}, dtype)};                                                                    \
    c.run = [](const Tensors& in) {                                                                           \
      return run_stored("scale_forward", {&in[0]}, attrs({{"factor", 0.18215}}), dtype);                      \
    };                                                                                                        \
    return c;                                                                                                 \
  }                                                                                                           \
  IMPRINT_PARITY_CASE(softmax_forward_last_##name) {                                                          \
    ParityCase c;                                                                                             \
    c.inputs = {normal({2, 8, 77, 77}, dtype, 0, 4)};                                                         \
    c.run = [](const Tensors& in) { return run_stored("softmax_forward", {&in[0]}, {}, dtype); };             \
    return c;                                                                                                 \
  }                                                                                                           \
  IMPRINT_PARITY_CASE(softmax_forward_middle_##name) {                                                        \
    ParityCase c;                                                                                             \
    c.inputs = {normal({3, 50, 37}, dtype, 0, 4)};                                                            \
    c.run = [](const Tensors& in) {                                                                           \
      return run_stored("softmax_forward", {&in[0]}, attrs({{"dim", 1}}), dtype);                             \
    };                                                                                                        \
    return c;                                                                                                 \
  }                                                                                                           \
  IMPRINT_PARITY_CASE(softmax_backward_last_##name) {                                                         \
    ParityCase c;                                                                                             \
    c.inputs = {normal({4, 4096}, dtype, 0, 4), normal({4, 4096}, dtype)};                                    \
    c.run = [](const Tensors& in) {                                                                           \
      const Tensors y = run_stored("softmax_forward", {&in[0]}, {}, dtype);                                  \
      return run_stored("softmax_backward", {&in[1], &y[0]}, {}, dtype);                                      \
    };                                                                                                        \
    return c;                                                                                                 \
  }                                                                                                           \
  IMPRINT_PARITY_CASE(softmax_backward_middle_##name) {                                                       \
    ParityCase c;                                                                                             \
    c.inputs = {normal({3, 50, 37}, dtype, 0, 4), normal({3, 50, 37}, dtype)};                                \
    c.run = [](const Tensors& in) {                                                                           \
      const Tensors y = run_stored("softmax_forward", {&in[0]}, attrs({{"dim", 1}}), dtype);                 \
      return run_stored("softmax_backward", {&in[1], &y[0]}, attrs({{"dim", 1}}), dtype);                     \
    };                                                                                                        \
    return c;                                                                                                 \
  }

IMPRINT_ACT_CASES(f32, DType::F32)
IMPRINT_ACT_CASES(f16, DType::F16)
IMPRINT_ACT_CASES(bf16, DType::BF16)

#undef IMPRINT_ACT_CASES

// --- attention ------------------------------------------------------------------

namespace {

struct AttnShape {
  int64_t batch, heads, nq, nk, d, dv;
  bool causal;
};

ParityCase attention_case(DType dtype, AttnShape s) {
  ParityCase c;
  c.inputs = {normal({s.batch, s.heads, s.nq, s.d}, dtype), normal({s.batch, s.heads, s.nk, s.d}, dtype),
              normal({s.batch, s.heads, s.nk, s.dv}, dtype)};
  c.run = [dtype, s](const Tensors& in) {
    Tensors outs = run_stored("attention_forward", {&in[0], &in[1], &in[2]},
                              attrs({{"causal", s.causal ? 1.0 : 0.0}}), dtype, {1});
    // lse is −inf for rows that see no key, which no tolerance compares: o (0 there) checks them.
    if (s.causal && s.nq > s.nk) outs.pop_back();
    return outs;
  };
  return c;
}

// dq, dk, dv from the forward's own o and lse and a random upstream gradient.
ParityCase attention_backward_case(DType dtype, AttnShape s) {
  ParityCase c;
  c.inputs = {normal({s.batch, s.heads, s.nq, s.d}, dtype), normal({s.batch, s.heads, s.nk, s.d}, dtype),
              normal({s.batch, s.heads, s.nk, s.dv}, dtype), normal({s.batch, s.heads, s.nq, s.dv}, dtype)};
  c.run = [dtype, s](const Tensors& in) {
    const ops::Attrs a = attrs({{"causal", s.causal ? 1.0 : 0.0}});
    const Tensors fwd = run_stored("attention_forward", {&in[0], &in[1], &in[2]}, a, dtype, {1});
    return run_stored("attention_backward", {&in[3], &in[0], &in[1], &in[2], &fwd[0], &fwd[1]}, a, dtype);
  };
  c.tolerances = {sums_tolerance(dtype), sums_tolerance(dtype), sums_tolerance(dtype)};
  return c;
}

// Attend-and-Excite's token maps and their gradients, from the forward's own lse.
ParityCase token_map_case(DType dtype, AttnShape s, std::vector<double> tokens) {
  ParityCase c;
  const int64_t count = static_cast<int64_t>(tokens.size());
  c.inputs = {normal({s.batch, s.heads, s.nq, s.d}, dtype), normal({s.batch, s.heads, s.nk, s.d}, dtype),
              normal({s.batch, s.heads, s.nk, s.dv}, dtype), normal({s.batch, count, s.nq}, DType::F32)};
  c.run = [dtype, tokens](const Tensors& in) {
    const Tensors fwd = run_stored("attention_forward", {&in[0], &in[1], &in[2]}, attrs({}), dtype, {1});
    const ops::Attrs a = attrs({}, {{"tokens", tokens}});
    const Tensor maps = run_op("attention_token_map_forward", {&in[0], &in[1], &fwd[1]}, a)[0];
    const Tensors grads = run_op("attention_token_map_backward", {&in[3], &in[0], &in[1], &fwd[1]}, a);
    return Tensors{maps, grads[0], grads[1]};
  };
  c.tolerances = {sums_tolerance(dtype), sums_tolerance(dtype), sums_tolerance(dtype)};
  return c;
}

}  // namespace

#define IMPRINT_ATTN_CASES(name, dtype, ...)                                                                    \
  IMPRINT_PARITY_CASE(attention_forward_##name) { return attention_case(dtype, AttnShape{__VA_ARGS__}); }      \
  IMPRINT_PARITY_CASE(attention_backward_##name) { return attention_backward_case(dtype, AttnShape{__VA_ARGS__}); }

// SD 1.x self-attention at 64×64 latents (head dim 40), then the deeper levels.
IMPRINT_ATTN_CASES(sd_self_4096_d40_bf16, DType::BF16, 1, 2, 4096, 4096, 40, 40, false)
IMPRINT_ATTN_CASES(sd_self_1024_d80_f16, DType::F16, 1, 2, 1024, 1024, 80, 80, false)
IMPRINT_ATTN_CASES(sd_self_256_d160_f32, DType::F32, 1, 2, 256, 256, 160, 160, false)
IMPRINT_ATTN_CASES(sd_self_64_d160_bf16, DType::BF16, 2, 2, 64, 64, 160, 160, false)
IMPRINT_ATTN_CASES(sd_self_256_d64_f32, DType::F32, 1, 3, 256, 256, 64, 64, false)
// Cross-attention against CLIP's 77 text tokens.
IMPRINT_ATTN_CASES(sd_cross_4096x77_d40_f16, DType::F16, 1, 2, 4096, 77, 40, 40, false)
IMPRINT_ATTN_CASES(sd_cross_1024x77_d80_bf16, DType::BF16, 1, 2, 1024, 77, 80, 80, false)
// CLIP's causal text encoder.
IMPRINT_ATTN_CASES(clip_causal_77_d64_f32, DType::F32, 2, 4, 77, 77, 64, 64, true)
IMPRINT_ATTN_CASES(clip_causal_77_d64_bf16, DType::BF16, 1, 4, 77, 77, 64, 64, true)
// Odd sizes: partial tiles everywhere, d ≠ dv, and a causal mask with more
// queries than keys (the first rows see no key: o = 0, lse = −inf, no gradient).
IMPRINT_ATTN_CASES(odd_33x17_d24_f32, DType::F32, 2, 3, 33, 17, 24, 24, false)
IMPRINT_ATTN_CASES(odd_33x17_d24_dv20_causal_f32, DType::F32, 1, 2, 33, 17, 24, 20, true)
IMPRINT_ATTN_CASES(odd_17x33_d72_causal_f32, DType::F32, 1, 2, 17, 33, 72, 72, true)
IMPRINT_ATTN_CASES(odd_100x100_d96_dv40_causal_f16, DType::F16, 1, 1, 100, 100, 96, 40, true)

#undef IMPRINT_ATTN_CASES

// Token maps at SD's 16×16 cross-attention (Attend-and-Excite's layers), at 64×64, and at odd sizes.
IMPRINT_PARITY_CASE(attention_token_map_cross_256x77_d80_f16) {
  return token_map_case(DType::F16, AttnShape{2, 8, 256, 77, 80, 80, false}, {2, 5});
}
IMPRINT_PARITY_CASE(attention_token_map_cross_4096x77_d40_bf16) {
  return token_map_case(DType::BF16, AttnShape{1, 8, 4096, 77, 40, 40, false}, {4, 4, 9});
}
IMPRINT_PARITY_CASE(attention_token_map_odd_33x17_d24_f32) {
  return token_map_case(DType::F32, AttnShape{2, 3, 33, 17, 24, 24, false}, {0, 16, 7});
}
IMPRINT_PARITY_CASE(attention_token_map_wide_d160_f32) {
  return token_map_case(DType::F32, AttnShape{1, 2, 129, 130, 160, 160, false}, {129});
}

}  // namespace parity
}  // namespace imprint
