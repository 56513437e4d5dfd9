// attn suite: fused attention forward and backward (dq, dk, dv) on the SD
// attention shapes, vs PyTorch's explicit softmax(q·kᵀ·scale)·v (1.13 has no
// fused kernel). params.score_bytes is the f32 [Nq, Nk] score matrix that the
// unfused form holds, to set against peak_bytes. Flops: the forward's two
// matmuls; the backward's four (no recompute counted). The cross-attention
// also runs with a rank-4 LoRA on K and V applied inside the kernel, vs PyTorch
// adding s·u·upᵀ to K and V before the same attention.
import { attention, attentionBackward } from '../lib/nn/attn.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchPair } from './helpers.js';

const ATTNS: { name: string; q: number[]; kv: number[] }[] = [
  { name: 'sd-self-8x4096x40', q: [1, 8, 4096, 40], kv: [1, 8, 4096, 40] },
  { name: 'sd-cross-2x8x4096x40-kv77', q: [2, 8, 4096, 40], kv: [2, 8, 77, 40] },
  { name: 'sd-self-8x1024x80', q: [1, 8, 1024, 80], kv: [1, 8, 1024, 80] },
  { name: 'sd-self-8x256x160', q: [1, 8, 256, 160], kv: [1, 8, 256, 160] },
];

const KV_RANK = 4;

function kvLoraCases(device: string, a: { name: string; q: number[]; kv: number[] }): BenchCase[] {
  const [batch, heads, keys, d] = a.kv;
  const u = [batch, keys, KV_RANK], up = [heads * d, KV_RANK];
  const scores = numel(a.q.slice(0, 3)) * keys;
  const flops = 4 * scores * d;
  const scale = 1 / Math.sqrt(d);
  // (u @ upᵀ) [batch, keys, heads·d] → [batch, heads, keys, d]
  const lora = (uu: string, pp: string) => `(0.5 * (${uu} @ ${pp}.T)).view(${batch}, ${keys}, ${heads}, ${d}).transpose(1, 2)`;
  const expr = `torch.softmax(q @ (k + ${lora('ku', 'kp')}).transpose(-1, -2) * ${scale}, -1) @ (v + ${lora('vu', 'vp')})`;
  const torch = torchPair({ q: a.q, k: a.kv, v: a.kv, ku: u, kp: up, vu: u, vp: up }, expr, ['q', 'ku', 'kp', 'vu', 'vp']);
  const base = { suite: 'attn', device, params: { q: a.q, kv: a.kv, kv_lora_rank: KV_RANK, dtype: 'f32' } };
  const adapter = async () => {
    const [ku, kp, vu, vp] = await randnEach(device, u, up, u, up);
    return { tensors: [ku, kp, vu, vp], kv: { kLora: { u: ku, up: kp, scale: 0.5 }, vLora: { u: vu, up: vp, scale: 0.5 } } };
  };
  return [
    {
      ...base,
      name: `${a.name}-kv-lora-forward`,
      flops,
      async prepare() {
        const [q, k, v] = await randnEach(device, a.q, a.kv, a.kv);
        const ad = await adapter();
        return opStep([q, k, v, ...ad.tensors], () => attention(q, k, v, { kv: ad.kv }));
      },
      torch: torch.forward,
    },
    {
      ...base,
      name: `${a.name}-kv-lora-backward`,
      flops: 2 * flops,
      async prepare() {
        const [q, k, v, dO] = await randnEach(device, a.q, a.kv, a.kv, a.q);
        const ad = await adapter();
        const saved = await attention(q, k, v, { kv: ad.kv });
        return opStep([q, k, v, dO, saved, ...ad.tensors], () => attentionBackward(dO, q, k, v, saved, { kv: ad.kv }));
      },
      torch: torch.backward,
    },
  ];
}

export function attnCases(device: string): BenchCase[] {
  return ATTNS.flatMap((a): BenchCase[] => {
    const keys = a.kv[2];
    const scores = numel(a.q.slice(0, 3)) * keys;
    const flops = 4 * scores * a.q[3];
    const scale = 1 / Math.sqrt(a.q[3]);
    const torch = torchPair({ q: a.q, k: a.kv, v: a.kv }, `torch.softmax(q @ k.transpose(-1, -2) * ${scale}, -1) @ v`, ['q', 'k', 'v']);
    const base = { suite: 'attn', device, params: { q: a.q, kv: a.kv, dtype: 'f32', score_bytes: 4 * scores } };
    return [
      {
        ...base,
        name: `${a.name}-forward`,
        flops,
        async prepare() {
          const [q, k, v] = await randnEach(device, a.q, a.kv, a.kv);
          return opStep([q, k, v], () => attention(q, k, v));
        },
        torch: torch.forward,
      },
      {
        ...base,
        name: `${a.name}-backward`,
        flops: 2 * flops,
        async prepare() {
          const [q, k, v, dO] = await randnEach(device, a.q, a.kv, a.kv, a.q);
          const saved = await attention(q, k, v);
          return opStep([q, k, v, dO, saved], () => attentionBackward(dO, q, k, v, saved));
        },
        torch: torch.backward,
      },
      ...(a.kv[2] === 77 ? kvLoraCases(device, a) : []),
    ];
  });
}
