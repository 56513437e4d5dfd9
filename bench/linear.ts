// linear suite: y = x·Wᵀ + b forward and backward (dx, dweight, dbias) on the
// SD attention projections, vs PyTorch's F.linear. Flops: 2·M·K·N forward,
// twice that backward (dx and dweight).
import { linear, linearBackward } from '../lib/nn/linear.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchPair } from './helpers.js';

const LINEARS: { name: string; x: number[]; out: number }[] = [
  { name: 'sd-proj-2x4096x320-320', x: [2, 4096, 320], out: 320 },
  { name: 'sd-cross-kv-2x77x768-320', x: [2, 77, 768], out: 320 },
];

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
    ];
  });
}
