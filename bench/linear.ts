// linear suite: y = x·Wᵀ + b forward and backward (dx, dweight, dbias) on the
// SD attention projections, vs PyTorch's F.linear. Flops: 2·M·K·N forward,
// twice that backward (dx and dweight). Then the projection with a rank-16
// low-rank modulation left unmerged (linearLowRank, LoRA's form), vs PEFT's
// F.linear(x, w, b) + s·F.linear(F.linear(x, A), B); its backward trains A and B.
import { linear, linearBackward, linearLowRank, linearLowRankBackward } from '../lib/nn/linear.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchPair } from './helpers.js';

const LINEARS: { name: string; x: number[]; out: number }[] = [
  { name: 'sd-proj-2x4096x320-320', x: [2, 4096, 320], out: 320 },
  { name: 'sd-cross-kv-2x77x768-320', x: [2, 77, 768], out: 320 },
];

const LOW_RANK = 16;

function lowRankCases(device: string, l: { name: string; x: number[]; out: number }): BenchCase[] {
  const inF = l.x[l.x.length - 1], r = LOW_RANK;
  const w = [l.out, inF], down = [r, inF], up = [l.out, r];
  const y = [...l.x.slice(0, -1), l.out];
  const rows = numel(l.x) / inF;
  const flops = 2 * rows * (inF * l.out + r * (inF + l.out));
  const torch = torchPair({ x: l.x, w, b: [l.out], a: down, u: up }, 'F.linear(x, w, b) + 0.5 * F.linear(F.linear(x, a), u)', ['x', 'a', 'u']);
  const base = { suite: 'linear', device, params: { x: l.x, weight: w, rank: r, dtype: 'f32' } };
  return [
    {
      ...base,
      name: `${l.name}-lowrank${r}-forward`,
      flops,
      async prepare() {
        const [x, weight, bias, a, b] = await randnEach(device, l.x, w, [l.out], down, up);
        return opStep([x, weight, bias, a, b], () => linearLowRank(x, weight, { down: a, up: b, scale: 0.5 }, bias));
      },
      torch: torch.forward,
    },
    {
      ...base,
      name: `${l.name}-lowrank${r}-backward`,
      flops: flops + 2 * rows * r * (inF + l.out),  // dx, then dA and dB
      async prepare() {
        const [x, weight, a, b, dy] = await randnEach(device, l.x, w, down, up, y);
        const { u } = await linearLowRank(x, weight, { down: a, up: b, scale: 0.5 });
        return opStep([x, weight, a, b, dy, u], () => linearLowRankBackward(dy, x, weight, { down: a, up: b, scale: 0.5 }, u));
      },
      torch: torch.backward,
    },
  ];
}

export function linearCases(device: string): BenchCase[] {
  return LINEARS.flatMap((l): BenchCase[] => {
    const w = [l.out, l.x[l.x.length - 1]];
    const y = [...l.x.slice(0, -1), l.out];
    const flops = 2 * numel(l.x) * l.out;
    const torch = torchPair({ x: l.x, w, b: [l.out] }, 'F.linear(x, w, b)', ['x', 'w', 'b']);
    const base = { suite: 'linear', device, params: { x: l.x, weight: w, dtype: 'f32' } };
    return [
      {
        ...base,
        name: `${l.name}-forward`,
        flops,
        async prepare() {
          const [x, weight, bias] = await randnEach(device, l.x, w, [l.out]);
          return opStep([x, weight, bias], () => linear(x, weight, bias));
        },
        torch: torch.forward,
      },
      {
        ...base,
        name: `${l.name}-backward`,
        flops: 2 * flops,
        async prepare() {
          const [x, weight, dy] = await randnEach(device, l.x, w, y);
          return opStep([x, weight, dy], () => linearBackward(dy, x, weight, { biasGrad: true }));
        },
        torch: torch.backward,
      },
      ...lowRankCases(device, l),
    ];
  });
}
