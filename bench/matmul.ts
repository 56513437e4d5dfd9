// matmul suite: GFLOP/s on SD-shaped and square problems, per device, with
// PyTorch's time for the same shapes from the same run.
import { matmul, randn } from '../lib/index.js';
import { torchDtype, type BenchCase } from './cases.js';

const SHAPES: { name: string; a: number[]; b: number[]; transposeB?: boolean }[] = [
  { name: 'square-256', a: [256, 256], b: [256, 256] },
  { name: 'square-512', a: [512, 512], b: [512, 512] },
  { name: 'square-1024', a: [1024, 1024], b: [1024, 1024] },
  { name: 'sd-proj-4096x320x320', a: [4096, 320], b: [320, 320] },
  { name: 'sd-cross-kv-77x768x320', a: [77, 768], b: [768, 320] },
  { name: 'sd-attn-scores-8x4096x40x77', a: [8, 4096, 40], b: [8, 77, 40], transposeB: true },
];

export function matmulCases(device: string, dtype: 'f32' | 'f16' | 'bf16'): BenchCase[] {
  return SHAPES.map((s) => {
    const m = s.a[s.a.length - 2];
    const k = s.a[s.a.length - 1];
    const n = s.transposeB ? s.b[s.b.length - 2] : s.b[s.b.length - 1];
    const batch = s.a.slice(0, -2).reduce((x, y) => x * y, 1);
    return {
      suite: 'matmul',
      name: s.name,
      device,
      params: { a: s.a, b: s.b, transposeB: s.transposeB ?? false, dtype },
      flops: 2 * batch * m * n * k,
      async prepare() {
        const a = await randn(s.a, { seed: 1, device, dtype });
        const b = await randn(s.b, { seed: 2, device, dtype });
        return {
          step: async () => (await matmul(a, b, { transposeB: s.transposeB })).dispose(),
          dispose: () => [a, b].forEach((t) => t.dispose()),
        };
      },
      torch: {
        setup: `a = torch.randn(${JSON.stringify(s.a)}, dtype=torch.${torchDtype(dtype)}, device=device)\nb = torch.randn(${JSON.stringify(s.b)}, dtype=torch.${torchDtype(dtype)}, device=device)`,
        run: s.transposeB ? 'torch.matmul(a, b.transpose(-1, -2))' : 'torch.matmul(a, b)',
      },
    };
  });
}
