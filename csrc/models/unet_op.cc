// unet_forward: diffusers' UNet2DConditionModel (models/unet.h) as one op of
// the registry, so JavaScript runs it through nnOp.
// Inputs, in order:
//   0 sample [N, in_channels, h, w] (h, w ≥ 1; sides that are not multiples of 2^(blocks-1)
//     are handled as diffusers' forward_upsample_size does)
//   1 timestep [N] or [1] (or []), the weights' float dtype
//   2 encoder_hidden_states [N, T, cross_attention_dim]
//   then every weight in the order of lib/models/layout-unet.ts (unetLayout):
//     conv_in.{weight,bias}, time_embedding.linear_1/linear_2.{weight,bias};
//     per down block i, per layer j: resnets.j (norm1, conv1, time_emb_proj,
//       norm2, conv2, [conv_shortcut] — weight then bias each), then for
//       CrossAttnDownBlock2D attentions.j (norm, proj_in, per transformer
//       block: norm1, attn1.to_q/to_k/to_v.weight, attn1.to_out.0.{weight,bias},
//       norm2, attn2.(same), norm3, ff.net.0.proj, ff.net.2; then proj_out);
//       then downsamplers.0.conv except in the last block;
//     mid_block.resnets.0, mid_block.attentions.0, mid_block.resnets.1;
//     per up block: layers_per_block + 1 layers as above, upsamplers.0.conv
//       except in the last block;
//     conv_norm_out.{weight,bias}, conv_out.{weight,bias}.
// Attrs: blockOutChannels (list), layersPerBlock, crossDown / crossUp (lists
//   of 0/1 per block: Cross-attention block or not), heads (list per down
//   block), transformerLayers (list per down block), linearProjection = false,
//   groups = 32, eps = 1e-5, flipSinToCos = true, freqShift = 0.
// Output: the noise prediction [N, out_channels, h, w].
//
// Attention adapters (models/unet_adapters.h), on both ops: attr `adapters`,
//   a flat list of records [weightIndex, kind, ...] for attention projection
//   weights (attn1/attn2 to_q, to_k, to_v, to_out.0.weight): kind 1 delta
//   (1 input, W's shape), kind 2 LoRA [weightIndex, 2, scale] (2 inputs: A
//   [r, in], B [out, r]), kind 3 mask (1 u8 input, W's shape, 1 = shut, 0 =
//   open; other values are not checked here). The adapter inputs follow the
//   weights in record order. At most one record of each kind per weight.
//
// unet_forward_backward: the forward keeping its activations, then the
// backward of sum(out · dy) (models/unet_backward.h).
// Inputs: sample, timestep, encoder_hidden_states, 3 dy (out's shape), then
//   the weights as above, then the adapter inputs. Attrs: as above, plus
//   trainable: the indices (ascending) of the weights that get gradients, the
//   rest being frozen; indices from the weight count on address the adapter
//   inputs in order (masks are not trainable); checkpoint = false: keep only
//   each layer's input and recompute its activations in the backward.
// Outputs: out, d_sample, d_encoder_hidden_states, then each trainable
//   weight's or adapter input's gradient in the order of `trainable`.
// With attr mseLoss = true, input 3 is a target instead of dy: the backward
//   is that of mean((out - target)²), whose value is the last output. With
//   lossMask = true as well, one more input comes LAST (after any adapter
//   inputs): a mask [N, 1 or out_channels, h, w], and the loss is
//   sum((out - target)² · mask) / sum(mask broadcast to out's shape).
// Attr detachFirstToken = true: every cross-attention's key/value at context
//   position 0 (start of text) pass no gradient (to to_k/to_v or the context).
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "models/unet.h"
#include "models/model_util.h"
#include "models/unet_adapters.h"
#include "models/unet_backward.h"
#include "ops/op_util.h"

namespace imprint {
namespace ops {
namespace {

// The op being planned (unet_forward or unet_forward_backward share the parsing), for error messages.
thread_local const char* kOp = "unet_forward";

std::string prefix() { return std::string(kOp) + ": "; }

// Takes the weights in order, checking each against its expected shape and
// the first weight's dtype and device; errors name the weight.
class WeightReader {
 public:
  WeightReader(const OpInputs& inputs, size_t first) : inputs_(inputs), next_(first) {}

  Tensor take(const std::string& name, const Shape& shape) {
    const Tensor t = take_any(name);
    if (t.shape != shape) {
      fail(ErrorCode::ShapeMismatch, prefix() + name + " must be " + shape_str(shape) + ", got " + t.describe());
    }
    return t;
  }

  Tensor take_any(const std::string& name) {
    if (next_ >= inputs_.size()) {
      fail(ErrorCode::InvalidArgument, prefix() + "too few inputs for this config: " + name + " (input " +
                                           std::to_string(next_) + ") is missing");
    }
    const Tensor& t = input(kOp, inputs_, next_, name.c_str());
    ++next_;
    names_.push_back(name);
    if (!ref_) {
      if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16) {
        fail(ErrorCode::DtypeMismatch, prefix() + name + " must be a float tensor, got " + t.describe());
      }
      ref_ = std::make_unique<Tensor>(t);
    } else if (t.dtype != ref_->dtype || t.device != ref_->device) {
      fail(ErrorCode::DtypeMismatch, prefix() + name + " is " + t.describe() + " but conv_in.weight is " +
                                         ref_->describe() + "; every weight must share one dtype and device");
    }
    return t;
  }

  size_t used() const { return next_; }
  const Tensor& ref() const { return *ref_; }
  const std::vector<std::string>& names() const { return names_; }

 private:
  const OpInputs& inputs_;
  size_t next_;
  std::vector<std::string> names_;
  std::unique_ptr<Tensor> ref_;
};

struct Dims {
  int64_t temb, cross, groups;
};

void check_groups(const std::string& name, int64_t channels, int64_t groups) {
  if (channels % groups != 0) {
    fail(ErrorCode::InvalidArgument, prefix() + name + ": " + std::to_string(channels) +
                                         " channels are not divisible by groups " + std::to_string(groups));
  }
}

models::ResnetWeights read_resnet(WeightReader& r, const std::string& p, int64_t cin, int64_t cout, const Dims& d) {
  check_groups(p + ".norm1", cin, d.groups);
  check_groups(p + ".norm2", cout, d.groups);
  models::ResnetWeights w;
  w.norm1_w = r.take(p + ".norm1.weight", {cin});
  w.norm1_b = r.take(p + ".norm1.bias", {cin});
  w.conv1_w = r.take(p + ".conv1.weight", {cout, cin, 3, 3});
  w.conv1_b = r.take(p + ".conv1.bias", {cout});
  w.temb_w = r.take(p + ".time_emb_proj.weight", {cout, d.temb});
  w.temb_b = r.take(p + ".time_emb_proj.bias", {cout});
  w.norm2_w = r.take(p + ".norm2.weight", {cout});
  w.norm2_b = r.take(p + ".norm2.bias", {cout});
  w.conv2_w = r.take(p + ".conv2.weight", {cout, cout, 3, 3});
  w.conv2_b = r.take(p + ".conv2.bias", {cout});
  w.has_shortcut = cin != cout;
  if (w.has_shortcut) {
    w.shortcut_w = r.take(p + ".conv_shortcut.weight", {cout, cin, 1, 1});
    w.shortcut_b = r.take(p + ".conv_shortcut.bias", {cout});
  }
  return w;
}

// kv < 0: the key width is not known yet (cross_attention_dim, taken from the first to_k).
models::AttentionWeights read_attention(WeightReader& r, const std::string& p, int64_t c, int64_t& kv) {
  models::AttentionWeights w;
  w.q_w = r.take(p + ".to_q.weight", {c, c});
  if (kv < 0) {
    w.k_w = r.take_any(p + ".to_k.weight");
    if (w.k_w.ndim() != 2 || w.k_w.shape[0] != c || w.k_w.shape[1] < 1) {
      fail(ErrorCode::ShapeMismatch, prefix() + p + ".to_k.weight must be [" + std::to_string(c) +
                                         ", cross_attention_dim], got " + w.k_w.describe());
    }
    kv = w.k_w.shape[1];
  } else {
    w.k_w = r.take(p + ".to_k.weight", {c, kv});
  }
  w.v_w = r.take(p + ".to_v.weight", {c, kv});
  w.out_w = r.take(p + ".to_out.0.weight", {c, c});
  w.out_b = r.take(p + ".to_out.0.bias", {c});
  return w;
}

models::TransformerWeights read_transformer(WeightReader& r, const std::string& p, int64_t c, int64_t heads,
                                            int64_t depth, bool linear, Dims& d) {
  if (heads < 1 || c % heads != 0) {
    fail(ErrorCode::InvalidArgument, prefix() + p + ": heads must be >= 1 and divide its " + std::to_string(c) +
                                         " channels, got " + std::to_string(heads));
  }
  if (depth < 1 || depth > 64) {
    fail(ErrorCode::InvalidArgument, prefix() + p + ": transformer layers must be 1 to 64, got " + std::to_string(depth));
  }
  check_groups(p + ".norm", c, d.groups);
  const Shape proj = linear ? Shape{c, c} : Shape{c, c, 1, 1};
  models::TransformerWeights w;
  w.heads = heads;
  w.norm_w = r.take(p + ".norm.weight", {c});
  w.norm_b = r.take(p + ".norm.bias", {c});
  w.proj_in_w = r.take(p + ".proj_in.weight", proj);
  w.proj_in_b = r.take(p + ".proj_in.bias", {c});
  for (int64_t i = 0; i < depth; ++i) {
    const std::string b = p + ".transformer_blocks." + std::to_string(i);
    models::TransformerBlockWeights t;
    t.norm1_w = r.take(b + ".norm1.weight", {c});
    t.norm1_b = r.take(b + ".norm1.bias", {c});
    int64_t self_kv = c;
    t.attn1 = read_attention(r, b + ".attn1", c, self_kv);
    t.norm2_w = r.take(b + ".norm2.weight", {c});
    t.norm2_b = r.take(b + ".norm2.bias", {c});
    t.attn2 = read_attention(r, b + ".attn2", c, d.cross);
    t.norm3_w = r.take(b + ".norm3.weight", {c});
    t.norm3_b = r.take(b + ".norm3.bias", {c});
    t.ff1_w = r.take(b + ".ff.net.0.proj.weight", {8 * c, c});
    t.ff1_b = r.take(b + ".ff.net.0.proj.bias", {8 * c});
    t.ff2_w = r.take(b + ".ff.net.2.weight", {c, 4 * c});
    t.ff2_b = r.take(b + ".ff.net.2.bias", {c});
    w.blocks.push_back(t);
  }
  w.proj_out_w = r.take(p + ".proj_out.weight", proj);
  w.proj_out_b = r.take(p + ".proj_out.bias", {c});
  return w;
}

std::vector<int64_t> per_block(const Attrs& attrs, const char* name, size_t n) {
  std::vector<int64_t> v = attrs.get_ints(kOp, name);
  if (v.size() != n) {
    fail(ErrorCode::InvalidArgument, prefix() + name + " must list " + std::to_string(n) + " values (one per block), got " +
                                         std::to_string(v.size()));
  }
  return v;
}

// One adapter input (after the weights): which adapter and which part.
enum class AdapterPart { Delta, LoraA, LoraB, Mask };
struct AdapterInput {
  size_t adapter;  // index into Parsed::adapters
  AdapterPart part;
};

struct Parsed {
  models::UNetConfig config;
  std::shared_ptr<models::UNetWeights> w;
  Tensor sample, timestep, context;
  Shape out_shape;
  size_t first = 0, count = 0;  // the weights are inputs [first, first + count)
  std::vector<models::AttentionAdapter> adapters;  // by weight index, ascending
  std::vector<AdapterInput> adapter_inputs;        // inputs [first + count, ...), in order
};

// A number from an attr list as people write it ("3", "0.5").
std::string num_str(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

bool is_projection(const std::string& name) {
  auto ends = [&](const std::string& tail) {
    return name.size() > tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  for (const char* attn : {".attn1.", ".attn2."}) {
    for (const char* proj : {"to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight"}) {
      if (ends(std::string(attn) + proj)) return true;
    }
  }
  return false;
}

// Reads the `adapters` records and their inputs (from p.first + p.count on),
// checking each against its weight; errors name the weight by index and name.
void parse_adapters(const OpInputs& inputs, const Attrs& attrs, const std::vector<std::string>& names, Parsed& p) {
  if (attrs.numbers.count("adapters")) {
    fail(ErrorCode::InvalidArgument, prefix() + "adapters must be a list of numbers ([weightIndex, kind, ...] records)");
  }
  const auto it = attrs.lists.find("adapters");
  const std::vector<double> rec = it == attrs.lists.end() ? std::vector<double>{} : it->second;
  std::map<size_t, models::AttentionAdapter> by_weight;
  struct Pending {
    size_t weight;
    AdapterPart part;
  };
  std::vector<Pending> order;
  size_t next = p.first + p.count;
  for (size_t pos = 0; pos < rec.size();) {
    if (pos + 2 > rec.size()) {
      fail(ErrorCode::InvalidArgument, prefix() + "adapters: the record at position " + std::to_string(pos) +
                                           " is cut short (records are [weightIndex, kind, ...])");
    }
    const double wi = rec[pos], kind = rec[pos + 1];
    if (!(wi >= 0) || wi >= static_cast<double>(p.count) || wi != std::floor(wi)) {
      fail(ErrorCode::InvalidArgument, prefix() + "adapters: the record at position " + std::to_string(pos) +
                                           " names weight " + num_str(wi) + "; weight indices are integers in [0, " +
                                           std::to_string(p.count) + ")");
    }
    const size_t w = static_cast<size_t>(wi);
    const std::string who = "adapters: weight " + std::to_string(w) + " (" + names[w] + ")";
    if (!is_projection(names[w])) {
      fail(ErrorCode::InvalidArgument, prefix() + who + " is not an attention projection weight (attn1/attn2 to_q, to_k, "
                                                      "to_v, to_out.0.weight); only those take adapters");
    }
    if (kind != 1 && kind != 2 && kind != 3) {
      fail(ErrorCode::InvalidArgument, prefix() + who + ": adapter kind must be 1 (delta), 2 (LoRA) or 3 (mask), got " +
                                           num_str(kind));
    }
    pos += 2;
    const Tensor& W = *inputs[p.first + w];
    models::AttentionAdapter& a = by_weight[w];
    a.weight = w;
    a.name = names[w];
    const char* kind_name = kind == 1 ? "delta" : kind == 2 ? "LoRA" : "mask";
    if ((kind == 1 && a.has_delta()) || (kind == 2 && a.has_lora()) || (kind == 3 && a.has_mask())) {
      fail(ErrorCode::InvalidArgument, prefix() + who + " has two " + kind_name + " adapters; merge them into one");
    }
    auto take = [&](const char* part) -> const Tensor& {
      if (next >= inputs.size()) {
        fail(ErrorCode::InvalidArgument, prefix() + who + " " + part + ": its input (input " + std::to_string(next) +
                                             ") is missing; each record's inputs follow the weights in record order");
      }
      const Tensor& t = input(kOp, inputs, next++, part);
      if (t.device != W.device) {
        fail(ErrorCode::DeviceMismatch, prefix() + who + " " + part + " is " + t.describe() + " but the weight is " +
                                            W.describe());
      }
      if (std::string(part) != "mask" && t.dtype != W.dtype) {
        fail(ErrorCode::DtypeMismatch, prefix() + who + " " + part + " must have the weight's dtype (" + W.describe() +
                                           "), got " + t.describe());
      }
      return t;
    };
    if (kind == 1) {
      a.delta = take("delta");
      if (a.delta.shape != W.shape) {
        fail(ErrorCode::ShapeMismatch, prefix() + who + " delta must have the weight's shape " + shape_str(W.shape) +
                                           ", got " + a.delta.describe());
      }
      order.push_back({w, AdapterPart::Delta});
    } else if (kind == 2) {
      if (pos >= rec.size() || !std::isfinite(rec[pos])) {
        fail(ErrorCode::InvalidArgument, prefix() + who + " LoRA: the record needs a finite scale after the kind");
      }
      a.scale = rec[pos++];
      a.lora_a = take("lora A");
      a.lora_b = take("lora B");
      const Tensor &A = a.lora_a, &B = a.lora_b;
      const int64_t out = W.shape[0], in = W.shape[1];
      if (A.ndim() != 2 || A.shape[0] < 1 || A.shape[1] != in) {
        fail(ErrorCode::ShapeMismatch, prefix() + who + " lora A must be [rank, " + std::to_string(in) +
                                           "] with rank >= 1, got " + A.describe());
      }
      if (B.ndim() != 2 || B.shape[0] != out || B.shape[1] < 1) {
        fail(ErrorCode::ShapeMismatch, prefix() + who + " lora B must be [" + std::to_string(out) + ", rank], got " +
                                           B.describe());
      }
      if (A.shape[0] != B.shape[1]) {
        fail(ErrorCode::ShapeMismatch, prefix() + who + " LoRA rank mismatch: A is " + A.describe() + " (rank " +
                                           std::to_string(A.shape[0]) + ") but B is " + B.describe() + " (rank " +
                                           std::to_string(B.shape[1]) + ")");
      }
      order.push_back({w, AdapterPart::LoraA});
      order.push_back({w, AdapterPart::LoraB});
    } else {
      a.mask = take("mask");
      if (a.mask.dtype != DType::U8) {
        fail(ErrorCode::DtypeMismatch, prefix() + who + " mask must be u8 (1 = shut), got " + a.mask.describe());
      }
      if (a.mask.shape != W.shape) {
        fail(ErrorCode::ShapeMismatch, prefix() + who + " mask must have the weight's shape " + shape_str(W.shape) +
                                           ", got " + a.mask.describe());
      }
      order.push_back({w, AdapterPart::Mask});
    }
  }
  if (next != inputs.size()) {
    fail(ErrorCode::InvalidArgument, prefix() + "expected " + std::to_string(next) + " inputs for this config" +
                                         (rec.empty() ? "" : " and these adapters") + ", got " +
                                         std::to_string(inputs.size()));
  }
  // An adapted weight gets its own W_eff; a weight stored twice could not tell which use is adapted.
  for (const auto& [w, a] : by_weight) {
    for (size_t j = 0; j < p.count; ++j) {
      if (j != w && inputs[p.first + j]->data() == inputs[p.first + w]->data()) {
        fail(ErrorCode::InvalidArgument, prefix() + "adapters: weight " + std::to_string(w) + " (" + a.name +
                                             ") shares its storage with weight " + std::to_string(j) + " (" + names[j] +
                                             "); an adapted weight needs its own tensor");
      }
    }
  }
  std::map<size_t, size_t> slot;
  for (auto& [w, a] : by_weight) {
    slot[w] = p.adapters.size();
    p.adapters.push_back(a);
  }
  for (const Pending& o : order) p.adapter_inputs.push_back({slot[o.weight], o.part});
}

// Reads the attrs, the data inputs 0-2 and the weights from input `first` on, checking them all.
Parsed parse(const OpInputs& inputs, const Attrs& attrs, size_t first) {
  models::UNetConfig config;
  const std::vector<int64_t> ch = attrs.get_ints(kOp, "blockOutChannels");
  const size_t n = ch.size();
  if (n < 1 || n > 8) fail(ErrorCode::InvalidArgument, prefix() + "blockOutChannels must list 1 to 8 channel counts");
  for (int64_t c : ch) {
    if (c < 1 || c > (1 << 20)) fail(ErrorCode::InvalidArgument, prefix() + "blockOutChannels must be positive integers");
  }
  const int64_t L = attrs.get_int(kOp, "layersPerBlock");
  if (L < 1 || L > 64) fail(ErrorCode::InvalidArgument, prefix() + "layersPerBlock must be 1 to 64, got " + std::to_string(L));
  const std::vector<int64_t> cross_down = per_block(attrs, "crossDown", n);
  const std::vector<int64_t> cross_up = per_block(attrs, "crossUp", n);
  const std::vector<int64_t> heads = per_block(attrs, "heads", n);
  const std::vector<int64_t> depth = per_block(attrs, "transformerLayers", n);
  config.linear_projection = attrs.get_bool(kOp, "linearProjection", false);
  config.groups = attrs.get_int(kOp, "groups", 32);
  config.eps = attrs.get_number(kOp, "eps", 1e-5);
  config.flip_sin_to_cos = attrs.get_bool(kOp, "flipSinToCos", true);
  config.freq_shift = attrs.get_number(kOp, "freqShift", 0.0);
  if (config.groups < 1) fail(ErrorCode::InvalidArgument, prefix() + "groups must be >= 1");
  if (!(config.eps > 0) || !std::isfinite(config.eps)) {
    fail(ErrorCode::InvalidArgument, prefix() + "eps must be a positive number, got " + std::to_string(config.eps));
  }

  const Tensor& sample = input(kOp, inputs, 0, "sample");
  const Tensor& timestep = input(kOp, inputs, 1, "timestep");
  const Tensor& context = input(kOp, inputs, 2, "encoder_hidden_states");

  auto w = std::make_shared<models::UNetWeights>();
  WeightReader r(inputs, first);
  w->conv_in_w = r.take_any("conv_in.weight");
  const Tensor& ci = w->conv_in_w;
  if (ci.ndim() != 4 || ci.shape[0] != ch[0] || ci.shape[2] != ci.shape[3] || ci.shape[2] % 2 == 0) {
    fail(ErrorCode::ShapeMismatch, prefix() + "conv_in.weight must be [" + std::to_string(ch[0]) +
                                       ", in_channels, k, k] with k odd, got " + ci.describe());
  }
  w->conv_in_b = r.take("conv_in.bias", {ch[0]});
  w->time1_w = r.take_any("time_embedding.linear_1.weight");
  if (w->time1_w.ndim() != 2 || w->time1_w.shape[1] != ch[0] || w->time1_w.shape[0] < 1) {
    fail(ErrorCode::ShapeMismatch, prefix() + "time_embedding.linear_1.weight must be [time_embedding_dim, " +
                                       std::to_string(ch[0]) + "], got " + w->time1_w.describe());
  }
  Dims d{w->time1_w.shape[0], -1, config.groups};
  if (ch[0] % 2 != 0) fail(ErrorCode::InvalidArgument, prefix() + "blockOutChannels[0] must be even (the timestep embedding's width)");
  w->time1_b = r.take("time_embedding.linear_1.bias", {d.temb});
  w->time2_w = r.take("time_embedding.linear_2.weight", {d.temb, d.temb});
  w->time2_b = r.take("time_embedding.linear_2.bias", {d.temb});

  for (size_t i = 0; i < n; ++i) {
    const std::string p = "down_blocks." + std::to_string(i);
    models::UNetBlockWeights b;
    int64_t cin = i == 0 ? ch[0] : ch[i - 1];
    for (int64_t j = 0; j < L; ++j) {
      b.resnets.push_back(read_resnet(r, p + ".resnets." + std::to_string(j), cin, ch[i], d));
      if (cross_down[i]) {
        b.attentions.push_back(read_transformer(r, p + ".attentions." + std::to_string(j), ch[i], heads[i], depth[i],
                                                config.linear_projection, d));
      }
      cin = ch[i];
    }
    if (i + 1 < n) {
      b.has_resample = true;
      b.resample_w = r.take(p + ".downsamplers.0.conv.weight", {ch[i], ch[i], 3, 3});
      b.resample_b = r.take(p + ".downsamplers.0.conv.bias", {ch[i]});
    }
    w->down.push_back(std::move(b));
  }
  const int64_t cm = ch[n - 1];
  w->mid_res0 = read_resnet(r, "mid_block.resnets.0", cm, cm, d);
  w->mid_attn = read_transformer(r, "mid_block.attentions.0", cm, heads[n - 1], depth[n - 1], config.linear_projection, d);
  w->mid_res1 = read_resnet(r, "mid_block.resnets.1", cm, cm, d);
  // Up blocks mirror the down path: reversed channels, heads and depths.
  int64_t prev = cm;
  for (size_t i = 0; i < n; ++i) {
    const std::string p = "up_blocks." + std::to_string(i);
    const size_t k = n - 1 - i;
    const int64_t cout = ch[k], skip_in = ch[k == 0 ? 0 : k - 1];
    models::UNetBlockWeights b;
    for (int64_t j = 0; j <= L; ++j) {
      const int64_t skip = j == L ? skip_in : cout;
      const int64_t cin = j == 0 ? prev : cout;
      b.resnets.push_back(read_resnet(r, p + ".resnets." + std::to_string(j), cin + skip, cout, d));
      if (cross_up[i]) {
        b.attentions.push_back(read_transformer(r, p + ".attentions." + std::to_string(j), cout, heads[k], depth[k],
                                                config.linear_projection, d));
      }
    }
    if (i + 1 < n) {
      b.has_resample = true;
      b.resample_w = r.take(p + ".upsamplers.0.conv.weight", {cout, cout, 3, 3});
      b.resample_b = r.take(p + ".upsamplers.0.conv.bias", {cout});
    }
    w->up.push_back(std::move(b));
    prev = cout;
  }
  check_groups("conv_norm_out", ch[0], config.groups);
  w->norm_out_w = r.take("conv_norm_out.weight", {ch[0]});
  w->norm_out_b = r.take("conv_norm_out.bias", {ch[0]});
  w->conv_out_w = r.take_any("conv_out.weight");
  const Tensor& co = w->conv_out_w;
  if (co.ndim() != 4 || co.shape[1] != ch[0] || co.shape[2] != co.shape[3] || co.shape[2] % 2 == 0 || co.shape[0] < 1) {
    fail(ErrorCode::ShapeMismatch, prefix() + "conv_out.weight must be [out_channels, " + std::to_string(ch[0]) +
                                       ", k, k] with k odd, got " + co.describe());
  }
  w->conv_out_b = r.take("conv_out.bias", {co.shape[0]});
  Parsed parsed;
  parsed.first = first;
  parsed.count = r.used() - first;
  parse_adapters(inputs, attrs, r.names(), parsed);

  // The data inputs, against the weights.
  const Tensor& ref = r.ref();
  check_matches(kOp, ref, "conv_in.weight", sample, "sample");
  if (sample.ndim() != 4 || sample.shape[1] != ci.shape[1]) {
    fail(ErrorCode::ShapeMismatch, prefix() + "sample must be [N, " + std::to_string(ci.shape[1]) +
                                       ", h, w] (conv_in's in_channels), got " + sample.describe());
  }
  const int64_t N = sample.shape[0], H = sample.shape[2], W = sample.shape[3];
  // Any size: odd sides after a downsampler are matched by resizing the upsampler's input to the skip's size.
  if (N < 1 || H < 1 || W < 1) {
    fail(ErrorCode::ShapeMismatch, prefix() + "sample's batch, height and width must be positive, got " + sample.describe());
  }
  check_matches(kOp, ref, "conv_in.weight", timestep, "timestep");
  const bool t_ok = timestep.ndim() == 0 || (timestep.ndim() == 1 && (timestep.shape[0] == N || timestep.shape[0] == 1));
  if (!t_ok) {
    fail(ErrorCode::ShapeMismatch, prefix() + "timestep must be [" + std::to_string(N) + "], [1] or a scalar, got " +
                                       timestep.describe());
  }
  check_matches(kOp, ref, "conv_in.weight", context, "encoder_hidden_states");
  const int64_t cross = d.cross;
  if (context.ndim() != 3 || context.shape[0] != N || context.shape[1] < 1 || context.shape[2] != cross) {
    fail(ErrorCode::ShapeMismatch, prefix() + "encoder_hidden_states must be [" + std::to_string(N) + ", tokens, " +
                                       std::to_string(cross) + "] (batch as sample's, cross_attention_dim as the "
                                       "weights'), got " + context.describe());
  }

  parsed.config = config;
  parsed.w = w;
  parsed.sample = sample, parsed.timestep = timestep, parsed.context = context;
  parsed.out_shape = {N, co.shape[0], H, W};
  return parsed;
}

// The adapters with the weights they adapt, as the graph's run needs them.
struct Adapted {
  std::vector<models::AttentionAdapter> adapters;
  std::vector<Tensor> originals;  // originals[i]: the weight adapters[i] adapts

  Adapted(const Parsed& p, const OpInputs& inputs) : adapters(p.adapters) {
    for (const models::AttentionAdapter& a : adapters) originals.push_back(*inputs[p.first + a.weight]);
  }

  // On the device queue: the weights with every adapted projection replaced
  // by its W_eff (effective[i] for adapters[i]).
  models::UNetWeights materialise(const models::UNetWeights& w, std::vector<Tensor>& effective) const {
    models::UNetWeights out = w;
    if (adapters.empty()) return out;
    std::map<const void*, Tensor> swap;
    for (size_t i = 0; i < adapters.size(); ++i) {
      effective.push_back(models::adapted_weight(originals[i], adapters[i]));
      swap[originals[i].data()] = effective.back();
    }
    models::replace_projections(out, swap);
    return out;
  }
};

Launch unet_forward(const OpInputs& inputs, const Attrs& attrs) {
  kOp = "unet_forward";
  const Parsed p = parse(inputs, attrs, 3);
  const Tensor& ref = p.sample;
  Launch launch;
  launch.queue = ref.device;
  launch.output = Tensor::empty(p.out_shape, ref.dtype, ref.device);
  launch.outputs.push_back(launch.output);
  for (const Tensor* t : inputs) launch.inputs.push_back(*t);
  Tensor out = launch.output;
  const auto w = p.w;
  const models::UNetConfig config = p.config;
  const Tensor s = p.sample, ts = p.timestep, ctx = p.context;
  const auto adapted = std::make_shared<Adapted>(p, inputs);
  launch.run = [config, w, s, ts, ctx, out, adapted]() mutable {
    std::vector<Tensor> effective;
    const models::UNetWeights run_w = adapted->materialise(*w, effective);
    models::unet_forward(config, run_w, s, ts, ctx, out);  // inference: keeps no activations
  };
  return launch;
}

void copy_into(Tensor& dst, const Tensor& src) {
  backend_for(dst.device).copy_on_device(dst.data(), src.data(), dst.nbytes());
}

// Where one trainable entry's gradient comes from.
struct GradSource {
  const void* weight = nullptr;  // a plain weight: its gradient from the backward
  int adapter = -1;              // else adapters[adapter] ...
  int part = 0;                  // ... 0 the adapted weight itself, 1 delta, 2 lora A, 3 lora B
};

Launch unet_forward_backward(const OpInputs& all_inputs, const Attrs& attrs) {
  kOp = "unet_forward_backward";
  // With mseLoss, input 3 is the target and dy = d mean((out - target)²) / d out;
  // with lossMask too, the last input is a mask broadcast to out's shape and
  // the loss is sum((out - target)² · mask) / sum(mask broadcast).
  const bool mse = attrs.get_bool(kOp, "mseLoss", false);
  const bool loss_mask = attrs.get_bool(kOp, "lossMask", false);
  if (loss_mask && !mse) fail(ErrorCode::InvalidArgument, prefix() + "lossMask needs mseLoss = true");
  OpInputs inputs = all_inputs;
  const Tensor* mask = nullptr;
  if (loss_mask) {
    if (inputs.size() < 5) fail(ErrorCode::InvalidArgument, prefix() + "lossMask: the mask (the last input) is missing");
    mask = &input(kOp, inputs, inputs.size() - 1, "mask");
    inputs.pop_back();
  }
  const bool detach_first = attrs.get_bool(kOp, "detachFirstToken", false);
  const Parsed p = parse(inputs, attrs, 4);
  const Tensor& ref = p.sample;
  const char* dy_name = mse ? "target" : "dy";
  const Tensor& dy = input(kOp, inputs, 3, dy_name);
  check_matches(kOp, ref, "sample", dy, dy_name);
  if (dy.shape != p.out_shape) {
    fail(ErrorCode::ShapeMismatch, prefix() + dy_name + " must have the output's shape " + shape_str(p.out_shape) +
                                       ", got " + dy.describe());
  }
  Tensor mask_t;
  if (mask) {
    check_matches(kOp, ref, "sample", *mask, "mask");
    const int lead = static_cast<int>(p.out_shape.size()) - mask->ndim();
    bool fits = lead == 0;
    for (int i = 0; fits && i < mask->ndim(); ++i) fits = mask->shape[i] == 1 || mask->shape[i] == p.out_shape[i];
    if (!fits || mask->shape[0] != p.out_shape[0] || mask->shape[2] != p.out_shape[2] || mask->shape[3] != p.out_shape[3]) {
      fail(ErrorCode::ShapeMismatch, prefix() + "mask must be [" + std::to_string(p.out_shape[0]) + ", 1 or " +
                                         std::to_string(p.out_shape[1]) + ", " + std::to_string(p.out_shape[2]) + ", " +
                                         std::to_string(p.out_shape[3]) + "] (the output's batch and size), got " +
                                         mask->describe());
    }
    mask_t = *mask;
  }
  const bool checkpoint = attrs.get_bool(kOp, "checkpoint", false);
  const std::vector<int64_t> idx = attrs.get_ints(kOp, "trainable", {});
  const int64_t count = static_cast<int64_t>(p.count);
  const int64_t total = count + static_cast<int64_t>(p.adapter_inputs.size());
  std::map<size_t, int> adapter_of;  // weight index → its adapter
  for (size_t i = 0; i < p.adapters.size(); ++i) adapter_of[p.adapters[i].weight] = static_cast<int>(i);
  std::set<const void*> seen;
  std::vector<Tensor> grads;
  std::vector<GradSource> sources;
  for (size_t i = 0; i < idx.size(); ++i) {
    if (idx[i] < 0 || idx[i] >= total || (i > 0 && idx[i] <= idx[i - 1])) {
      fail(ErrorCode::InvalidArgument, prefix() + "trainable must list ascending weight indices in [0, " +
                                           std::to_string(total) + "), got " + std::to_string(idx[i]) + " at position " +
                                           std::to_string(i) +
                                           (p.adapter_inputs.empty() ? "" : " (indices from " + std::to_string(count) +
                                                                                " address the adapter inputs)"));
    }
    const size_t at = p.first + static_cast<size_t>(idx[i]);
    const Tensor& t = *inputs[at];
    GradSource src;
    if (idx[i] < count) {
      auto a = adapter_of.find(static_cast<size_t>(idx[i]));
      if (a == adapter_of.end()) src.weight = t.data();
      else src.adapter = a->second, src.part = 0;
    } else {
      const AdapterInput& ai = p.adapter_inputs[static_cast<size_t>(idx[i] - count)];
      if (ai.part == AdapterPart::Mask) {
        fail(ErrorCode::InvalidArgument, prefix() + "trainable index " + std::to_string(idx[i]) + " is the mask of weight " +
                                             std::to_string(p.adapters[ai.adapter].weight) + " (" +
                                             p.adapters[ai.adapter].name + "); masks are not trainable");
      }
      src.adapter = static_cast<int>(ai.adapter);
      src.part = ai.part == AdapterPart::Delta ? 1 : ai.part == AdapterPart::LoraA ? 2 : 3;
    }
    if (!seen.insert(t.data()).second) {
      fail(ErrorCode::InvalidArgument, prefix() + "weight " + std::to_string(idx[i]) +
                                           " shares its storage with another trainable weight");
    }
    sources.push_back(src);
    grads.push_back(Tensor::empty(t.shape, t.dtype, t.device));
  }

  Launch launch;
  launch.queue = ref.device;
  launch.output = Tensor::empty(p.out_shape, ref.dtype, ref.device);
  launch.outputs = {launch.output, Tensor::empty(ref.shape, ref.dtype, ref.device),
                    Tensor::empty(p.context.shape, ref.dtype, ref.device)};
  for (const Tensor& g : grads) launch.outputs.push_back(g);
  if (mse) launch.outputs.push_back(Tensor::empty({}, ref.dtype, ref.device));  // the loss, last
  for (const Tensor* t : all_inputs) launch.inputs.push_back(*t);
  const auto w = p.w;
  const models::UNetConfig config = p.config;
  const Tensor s = p.sample, ts = p.timestep, ctx = p.context, d = dy;
  const auto adapted = std::make_shared<Adapted>(p, inputs);
  std::vector<Tensor> outs = launch.outputs;
  launch.run = [config, w, s, ts, ctx, d, sources, outs, adapted, checkpoint, mse, mask_t, detach_first]() mutable {
    std::vector<Tensor> effective;
    const models::UNetWeights run_w = adapted->materialise(*w, effective);
    // The backward sees W_eff in place of each adapted weight: it trains when
    // the weight or any of its adapter parameters does.
    std::set<const void*> trainable;
    for (const GradSource& g : sources) trainable.insert(g.adapter < 0 ? g.weight : effective[g.adapter].data());
    Tensor out = outs[0];
    models::UNetGrads g;
    {
      models::UNetActivations acts;
      acts.checkpointed = checkpoint;
      models::unet_forward(config, run_w, s, ts, ctx, out, &acts);
      Tensor dy = d;
      if (mse) {
        ops::OpInputs loss_in = {&out, &d};
        if (mask_t.data()) loss_in.push_back(&mask_t);
        copy_into(outs.back(), models::run_op("mse_loss_forward", loss_in).front());
        dy = models::run_op("mse_loss_backward", loss_in).front();
      }
      g = models::unet_backward(config, run_w, acts, s, ctx, dy, trainable, detach_first);
    }
    copy_into(outs[1], g.d_sample);
    if (g.d_context.data()) {
      copy_into(outs[2], g.d_context);
    } else {  // no transformer: the context does not reach the output
      const std::vector<char> zeros(outs[2].nbytes(), 0);  // all-zero bits are 0.0 in every float dtype
      backend_for(s.device).copy_from_host(outs[2].data(), zeros.data(), zeros.size());
    }
    std::map<int, Tensor> masked;  // per adapter: dW' = dW_eff ⊙ (1 - m)
    for (size_t i = 0; i < sources.size(); ++i) {
      const GradSource& src = sources[i];
      if (src.adapter < 0) {
        copy_into(outs[3 + i], g.weights.at(src.weight));
        continue;
      }
      const models::AttentionAdapter& a = adapted->adapters[src.adapter];
      if (!masked.count(src.adapter)) {
        masked[src.adapter] = models::masked_gradient(g.weights.at(effective[src.adapter].data()), a);
      }
      const Tensor& dm = masked[src.adapter];
      copy_into(outs[3 + i], src.part == 2 ? models::lora_a_gradient(dm, a) : src.part == 3 ? models::lora_b_gradient(dm, a) : dm);
    }
    backend_for(s.device).synchronize();
  };
  return launch;
}

}  // namespace

IMPRINT_REGISTER_OP(unet_forward, unet_forward);
IMPRINT_REGISTER_OP(unet_forward_backward, unet_forward_backward);

}  // namespace ops
}  // namespace imprint
