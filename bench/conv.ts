// conv suite: conv2d forward and backward (dx + dweight) and nearest 2x
// upsampling on SD-sized shapes, vs PyTorch. Asymmetric padding (the SD VAE's
// downsampler) runs in PyTorch as F.pad + unpadded conv2d, as diffusers does.
import { conv2d, conv2dBackward, type Conv2dPadding } from '../lib/nn/conv.js';
import { upsampleNearest2x, upsampleNearest2xBackward } from '../lib/nn/resample.js';
import type { BenchCase } from './cases.js';
import { numel, opStep, randnEach, torchPair } from './helpers.js';

const CONVS: { name: string; x: number[]; w: number[]; stride: number; padding: [number, number, number, number] }[] = [
  { name: 'unet-3x3-320-64x64', x: [1, 320, 64, 64], w: [320, 320, 3, 3], stride: 1, padding: [1, 1, 1, 1] },
  { name: 'vae-down-3x3s2-128-128x128', x: [1, 128, 128, 128], w: [128, 128, 3, 3], stride: 2, padding: [0, 1, 0, 1] },
  { name: 'unet-1x1-640to320-32x32', x: [1, 640, 32, 32], w: [320, 640, 1, 1], stride: 1, padding: [0, 0, 0, 0] },
];
const UPSAMPLE = [1, 320, 64, 64];

export function convCases(device: string): BenchCase[] {
  const cases: BenchCase[] = [];
  for (const c of CONVS) {
    const [top, bottom, left, right] = c.padding;
    const symmetric = top === bottom && left === right && top === left;
    const options = { stride: c.stride, padding: c.padding as Conv2dPadding };
    const out = (size: number, before: number, after: number) => Math.floor((size + before + after - c.w[2]) / c.stride) + 1;
    const y = [c.x[0], c.w[0], out(c.x[2], top, bottom), out(c.x[3], left, right)];
    const flops = 2 * numel(y) * c.w[1] * c.w[2] * c.w[3];
    const input = symmetric ? 'x' : `F.pad(x, (${left}, ${right}, ${top}, ${bottom}))`;
    const torch = torchPair({ x: c.x, w: c.w, b: [c.w[0]] }, `F.conv2d(${input}, w, b, stride=${c.stride}, padding=${symmetric ? top : 0})`, ['x', 'w']);
    const base = { suite: 'conv', device, params: { x: c.x, weight: c.w, stride: c.stride, padding: c.padding, dtype: 'f32' } };
    cases.push(
      {
        ...base,
        name: `${c.name}-forward`,
        flops,
        async prepare() {
          const [x, w, b] = await randnEach(device, c.x, c.w, [c.w[0]]);
          return opStep([x, w, b], () => conv2d(x, w, b, options));
        },
        torch: torch.forward,
      },
      {
        ...base,
        name: `${c.name}-backward`,
        flops: 2 * flops,
        async prepare() {
          const [x, w, dy] = await randnEach(device, c.x, c.w, y);
          return opStep([x, w, dy], () => conv2dBackward(dy, x, w, options));
        },
        torch: torch.backward,
      },
    );
  }
  const up = torchPair({ x: UPSAMPLE }, 'F.interpolate(x, scale_factor=2, mode="nearest")', ['x']);
  const bytes = 4 * 5 * numel(UPSAMPLE); // read n, write 4n (backward: read 4n, write n)
  const base = { suite: 'conv', device, params: { x: UPSAMPLE, dtype: 'f32' }, bytes };
  cases.push(
    {
      ...base,
      name: 'upsample-nearest2x-forward',
      async prepare() {
        const [x] = await randnEach(device, UPSAMPLE);
        return opStep(x, () => upsampleNearest2x(x));
      },
      torch: up.forward,
    },
    {
      ...base,
      name: 'upsample-nearest2x-backward',
      async prepare() {
        const [dy] = await randnEach(device, [UPSAMPLE[0], UPSAMPLE[1], 2 * UPSAMPLE[2], 2 * UPSAMPLE[3]]);
        return opStep(dy, () => upsampleNearest2xBackward(dy));
      },
      torch: up.backward,
    },
  );
  return cases;
}
