// Element-wise and reduction ops at UNet activation sizes: GB/s moved, vs PyTorch.
import { add, mul, randn, sum } from '../lib/index.js';
import { type BenchCase } from './cases.js';

export function elementwiseCases(device: string): BenchCase[] {
  const act = [2, 320, 64, 64];
  const n = act.reduce((a, b) => a * b, 1);
  const tensors = (shapes: number[][]) => async () => Promise.all(shapes.map((s, i) => randn(s, { seed: i + 1, device })));
  const shapeStr = (s: number[]) => JSON.stringify(s);
  const mk = (name: string, shapes: number[][], bytes: number, run: (ts: Awaited<ReturnType<ReturnType<typeof tensors>>>) => Promise<{ dispose(): void }>, torchRun: string): BenchCase => ({
    suite: 'elementwise',
    name,
    device,
    params: { shapes, dtype: 'f32' },
    bytes,
    async prepare() {
      const ts = await tensors(shapes)();
      return { step: async () => (await run(ts)).dispose(), dispose: () => ts.forEach((t) => t.dispose()) };
    },
    torch: { setup: shapes.map((s, i) => `t${i} = torch.randn(${shapeStr(s)}, device=device)`).join('\n'), run: torchRun },
  });
  return [
    mk('add-2x320x64x64', [act, act], 12 * n, ([a, b]) => add(a, b), 'torch.add(t0, t1)'),
    mk('mul-broadcast-channel', [act, [1, 320, 1, 1]], 8 * n, ([a, b]) => mul(a, b), 'torch.mul(t0, t1)'),
    mk('sum-all-2x320x64x64', [act], 4 * n, ([a]) => sum(a), 'torch.sum(t0)'),
    mk('sum-last-4096x320', [[4096, 320]], 4 * 4096 * 320, ([a]) => sum(a, { dim: -1 }), 'torch.sum(t0, dim=-1)'),
    mk('sum-spatial-2x320x64x64', [act], 4 * n, ([a]) => sum(a, { dim: [2, 3] }), 'torch.sum(t0, dim=(2, 3))'),
  ];
}
