// attn suite: fused attention forward and backward (dq, dk, dv) on the SD
// attention shapes, vs PyTorch's explicit softmax(q·kᵀ·scale)·v (1.13 has no
// fused kernel). params.score_bytes is the f32 [Nq, Nk] score matrix that the
// unfused form holds, to set against peak_bytes. Flops: the forward's two
// matmuls; the backward's four (no recompute counted).
import { attention, attentionBackward } from '../lib/nn/attn.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchPair } from './helpers.js';

const ATTNS: { name: string; q: number[]; kv: number[] }[] = [
  { name: 'sd-self-8x4096x40', q: [1, 8, 4096, 40], kv: [1, 8, 4096, 40] },
  { name: 'sd-cross-2x8x4096x40-kv77', q: [2, 8, 4096, 40], kv: [2, 8, 77, 40] },
  { name: 'sd-self-8x1024x80', q: [1, 8, 1024, 80], kv: [1, 8, 1024, 80] },
  { name: 'sd-self-8x256x160', q: [1, 8, 256, 160], kv: [1, 8, 256, 160] },
];

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
    ];
  });
}
