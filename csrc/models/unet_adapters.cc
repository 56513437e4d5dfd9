// The attention adapters (see unet_adapters.h): parsing the op's records and
// inputs, wiring each kind into the run's weights, and mapping gradients
// back. Materialising uses the registered ops, so any device works.
#include "models/unet_adapters.h"

#include <cmath>
#include <sstream>

#include "models/model_util.h"
#include "ops/op_util.h"

namespace imprint {
namespace models {
namespace {

Tensor add(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Add, a, b)).front(); }
Tensor mul(const Tensor& a, const Tensor& b) { return run_now(ops::binary(BinaryOp::Mul, a, b)).front(); }

// 1 - m in `like`'s dtype: exactly 1 where open, 0 where shut.
Tensor keep(const Tensor& mask, const Tensor& like) {
  const Tensor m = run_now(ops::cast(mask, like.dtype)).front();
  const Tensor one = run_now(ops::full(m.shape, like.dtype, like.device, 1.0)).front();
  return add(one, scaled(m, -1.0));
}

// W_eff for `w` under the materialised kinds of `a`.
Tensor adapted_weight(const Tensor& w, const AttentionAdapter& a) {
  Tensor eff = w;
  if (a.has_delta()) eff = add(eff, a.delta);
  if (a.has_lora()) eff = add(eff, scaled(run_now(ops::matmul(a.lora_b, a.lora_a, false, false)).front(), a.scale));
  if (a.has_mask()) eff = mul(eff, keep(a.mask, w));
  return eff;
}

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

const char* kind_name(double kind) {
  return kind == 1 ? "delta" : kind == 2 ? "LoRA" : kind == 3 ? "mask" : "per-sample LoRA";
}

}  // namespace

AdapterSet parse_adapters(const std::string& prefix, const ops::OpInputs& inputs, const ops::Attrs& attrs, size_t first,
                          const std::vector<std::string>& names, size_t next, int64_t batch) {
  const size_t count = names.size();
  if (attrs.numbers.count("adapters")) {
    fail(ErrorCode::InvalidArgument, prefix + "adapters must be a list of numbers ([weightIndex, kind, ...] records)");
  }
  const auto it = attrs.lists.find("adapters");
  const std::vector<double> rec = it == attrs.lists.end() ? std::vector<double>{} : it->second;
  std::map<size_t, AttentionAdapter> by_weight;
  struct Pending {
    size_t weight;
    AdapterPart part;
  };
  std::vector<Pending> order;
  const char* op = prefix.c_str();
  for (size_t pos = 0; pos < rec.size();) {
    if (pos + 2 > rec.size()) {
      fail(ErrorCode::InvalidArgument, prefix + "adapters: the record at position " + std::to_string(pos) +
                                           " is cut short (records are [weightIndex, kind, ...])");
    }
    const double wi = rec[pos], kind = rec[pos + 1];
    if (!(wi >= 0) || wi >= static_cast<double>(count) || wi != std::floor(wi)) {
      fail(ErrorCode::InvalidArgument, prefix + "adapters: the record at position " + std::to_string(pos) +
                                           " names weight " + num_str(wi) + "; weight indices are integers in [0, " +
                                           std::to_string(count) + ")");
    }
    const size_t w = static_cast<size_t>(wi);
    const std::string who = "adapters: weight " + std::to_string(w) + " (" + names[w] + ")";
    if (!is_projection(names[w])) {
      fail(ErrorCode::InvalidArgument, prefix + who + " is not an attention projection weight (attn1/attn2 to_q, to_k, "
                                                      "to_v, to_out.0.weight); only those take adapters");
    }
    if (kind != 1 && kind != 2 && kind != 3 && kind != 4) {
      fail(ErrorCode::InvalidArgument, prefix + who + ": adapter kind must be 1 (delta), 2 (LoRA), 3 (mask) or 4 "
                                                      "(per-sample LoRA), got " + num_str(kind));
    }
    pos += 2;
    const Tensor& W = *inputs[first + w];
    AttentionAdapter& a = by_weight[w];
    a.weight = w;
    a.name = names[w];
    if ((kind == 1 && a.has_delta()) || (kind == 2 && a.has_lora()) || (kind == 3 && a.has_mask()) ||
        (kind == 4 && a.has_sample_lora())) {
      fail(ErrorCode::InvalidArgument, prefix + who + " has two " + kind_name(kind) + " adapters; merge them into one");
    }
    auto take = [&](const char* part) -> const Tensor& {
      if (next >= inputs.size()) {
        fail(ErrorCode::InvalidArgument, prefix + who + " " + part + ": its input (input " + std::to_string(next) +
                                             ") is missing; each record's inputs follow the weights in record order");
      }
      const Tensor& t = ops::input(op, inputs, next++, part);
      if (t.device != W.device) {
        fail(ErrorCode::DeviceMismatch, prefix + who + " " + part + " is " + t.describe() + " but the weight is " +
                                            W.describe());
      }
      if (std::string(part) != "mask" && t.dtype != W.dtype) {
        fail(ErrorCode::DtypeMismatch, prefix + who + " " + part + " must have the weight's dtype (" + W.describe() +
                                           "), got " + t.describe());
      }
      return t;
    };
    auto scale_after_kind = [&]() {
      if (pos >= rec.size() || !std::isfinite(rec[pos])) {
        fail(ErrorCode::InvalidArgument, prefix + who + " " + kind_name(kind) + ": the record needs a finite scale after the kind");
      }
      return rec[pos++];
    };
    const int64_t out = W.shape[0], in = W.shape[1];
    if (kind == 1) {
      a.delta = take("delta");
      if (a.delta.shape != W.shape) {
        fail(ErrorCode::ShapeMismatch, prefix + who + " delta must have the weight's shape " + shape_str(W.shape) +
                                           ", got " + a.delta.describe());
      }
      order.push_back({w, AdapterPart::Delta});
    } else if (kind == 2) {
      a.scale = scale_after_kind();
      a.lora_a = take("lora A");
      a.lora_b = take("lora B");
      const Tensor &A = a.lora_a, &B = a.lora_b;
      if (A.ndim() != 2 || A.shape[0] < 1 || A.shape[1] != in) {
        fail(ErrorCode::ShapeMismatch, prefix + who + " lora A must be [rank, " + std::to_string(in) +
                                           "] with rank >= 1, got " + A.describe());
      }
      if (B.ndim() != 2 || B.shape[0] != out || B.shape[1] < 1) {
        fail(ErrorCode::ShapeMismatch, prefix + who + " lora B must be [" + std::to_string(out) + ", rank], got " +
                                           B.describe());
      }
      if (A.shape[0] != B.shape[1]) {
        fail(ErrorCode::ShapeMismatch, prefix + who + " LoRA rank mismatch: A is " + A.describe() + " (rank " +
                                           std::to_string(A.shape[0]) + ") but B is " + B.describe() + " (rank " +
                                           std::to_string(B.shape[1]) + ")");
      }
      order.push_back({w, AdapterPart::LoraA});
      order.push_back({w, AdapterPart::LoraB});
    } else if (kind == 3) {
      a.mask = take("mask");
      if (a.mask.dtype != DType::U8) {
        fail(ErrorCode::DtypeMismatch, prefix + who + " mask must be u8 (1 = shut), got " + a.mask.describe());
      }
      if (a.mask.shape != W.shape) {
        fail(ErrorCode::ShapeMismatch, prefix + who + " mask must have the weight's shape " + shape_str(W.shape) +
                                           ", got " + a.mask.describe());
      }
      order.push_back({w, AdapterPart::Mask});
    } else {
      a.sample_scale = scale_after_kind();
      a.sample_down = take("per-sample lora down");
      a.sample_up = take("per-sample lora up");
      const Tensor &D = a.sample_down, &U = a.sample_up;
      if (D.ndim() != 3 || D.shape[0] != batch || D.shape[1] < 1 || D.shape[2] != in) {
        fail(ErrorCode::ShapeMismatch, prefix + who + " per-sample lora down must be [" + std::to_string(batch) +
                                           " (the batch), rank, " + std::to_string(in) + "], got " + D.describe());
      }
      if (U.ndim() != 3 || U.shape[0] != batch || U.shape[1] != out || U.shape[2] != D.shape[1]) {
        fail(ErrorCode::ShapeMismatch, prefix + who + " per-sample lora up must be [" + std::to_string(batch) + ", " +
                                           std::to_string(out) + ", " + std::to_string(D.shape[1]) + " (down's rank)], got " +
                                           U.describe());
      }
      order.push_back({w, AdapterPart::SampleDown});
      order.push_back({w, AdapterPart::SampleUp});
    }
  }
  AdapterSet set;
  const auto dual = attrs.numbers.find("dualAlpha");
  if (dual != attrs.numbers.end()) {
    if (!(dual->second >= 0 && dual->second <= 1)) {
      fail(ErrorCode::InvalidArgument, prefix + "dualAlpha must be in [0, 1], got " + num_str(dual->second));
    }
    set.dual_alpha = dual->second;
    if (next >= inputs.size()) {
      fail(ErrorCode::InvalidArgument, prefix + "dualAlpha: the hard context (input " + std::to_string(next) +
                                           ", after the adapter inputs) is missing");
    }
    set.context_hard = ops::input(op, inputs, next++, "context_hard");
  }
  // An adapted weight gets its own W_eff; a weight stored twice could not tell which use is adapted.
  for (const auto& [w, a] : by_weight) {
    for (size_t j = 0; j < count; ++j) {
      if (j != w && inputs[first + j]->data() == inputs[first + w]->data()) {
        fail(ErrorCode::InvalidArgument, prefix + "adapters: weight " + std::to_string(w) + " (" + a.name +
                                             ") shares its storage with weight " + std::to_string(j) + " (" + names[j] +
                                             "); an adapted weight needs its own tensor");
      }
    }
  }
  std::map<size_t, size_t> slot;
  for (auto& [w, a] : by_weight) {
    slot[w] = set.adapters.size();
    set.adapters.push_back(a);
  }
  for (const Pending& o : order) set.inputs.push_back({slot[o.weight], o.part});
  set.next = next;
  return set;
}

UNetWeights adapted_weights(const UNetWeights& w, const AdapterSet& set, const std::vector<Tensor>& originals,
                            std::vector<Tensor>& effective) {
  UNetWeights out = w;
  if (set.adapters.empty() && !set.dual()) return out;
  // By the original projection's storage: its W_eff and its per-sample update.
  std::map<const void*, Tensor> replaced;
  std::map<const void*, std::shared_ptr<const LowRank>> lowrank;
  for (size_t i = 0; i < set.adapters.size(); ++i) {
    const AttentionAdapter& a = set.adapters[i];
    effective.push_back(a.materialised() ? adapted_weight(originals[i], a) : originals[i]);
    replaced[originals[i].data()] = effective.back();
    if (a.has_sample_lora()) lowrank[originals[i].data()] = std::make_shared<const LowRank>(LowRank{a.sample_down, a.sample_up, a.sample_scale});
  }
  auto attention = [&](AttentionWeights& at, bool cross) {
    const AttentionWeights plain = at;
    bool adapted = false;
    auto wire = [&](Tensor& t, std::shared_ptr<const LowRank>& lr) {
      const void* key = t.data();
      if (auto r = replaced.find(key); r != replaced.end()) t = r->second, adapted = true;
      if (auto l = lowrank.find(key); l != lowrank.end()) lr = l->second;
    };
    wire(at.q_w, at.q_lr);
    wire(at.k_w, at.k_lr);
    wire(at.v_w, at.v_lr);
    wire(at.out_w, at.out_lr);
    if (set.dual() && (adapted || cross)) {
      at.dual = std::make_shared<const DualPath>(DualPath{set.dual_alpha, plain, cross ? set.context_hard : Tensor()});
    }
  };
  auto transformer = [&](TransformerWeights& t) {
    for (TransformerBlockWeights& b : t.blocks) {
      attention(b.attn1, false);
      attention(b.attn2, true);
    }
  };
  for (UNetBlockWeights& b : out.down) {
    for (TransformerWeights& t : b.attentions) transformer(t);
  }
  transformer(out.mid_attn);
  for (UNetBlockWeights& b : out.up) {
    for (TransformerWeights& t : b.attentions) transformer(t);
  }
  return out;
}

Tensor masked_gradient(const Tensor& d_eff, const AttentionAdapter& a) {
  return a.has_mask() ? mul(d_eff, keep(a.mask, d_eff)) : d_eff;
}

Tensor lora_a_gradient(const Tensor& d, const AttentionAdapter& a) {
  return scaled(run_now(ops::matmul(a.lora_b, d, true, false)).front(), a.scale);
}

Tensor lora_b_gradient(const Tensor& d, const AttentionAdapter& a) {
  return scaled(run_now(ops::matmul(d, a.lora_a, false, true)).front(), a.scale);
}

}  // namespace models
}  // namespace imprint
