// Nearest-neighbour resizing over NCHW tensors: to any size, as
// F.interpolate(x, size=[h, w], mode='nearest'), and the exact 2x of the
// UNet's and VAE's upsamplers, as F.interpolate(scale_factor=2, mode='nearest').
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';
import { runOp } from './run.js';

function checkSize(fn: string, name: string, size: unknown): [number, number] {
  if (!Array.isArray(size) || size.length !== 2) throw invalidArgument(`${fn}: ${name} must be [height, width], got ${describe(size)}`);
  size.forEach((v, i) => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 65536) {
      throw invalidArgument(`${fn}: ${name}[${i}] must be an integer in [1, 65536], got ${describe(v)}`);
    }
  });
  return size as [number, number];
}

/**
 * x [N, C, H, W] resized to [N, C, h, w] by nearest neighbour, as
 * F.interpolate(x, size=[h, w], mode='nearest'): output pixel (i, j) reads
 * input (floor(i·H/h), floor(j·W/w)). The UNet's upsamplers use it to match
 * an odd-sized skip.
 */
export async function upsampleNearest<D extends FloatDType>(x: Tensor<D>, size: [number, number]): Promise<Tensor<D>> {
  const [outH, outW] = checkSize('upsampleNearest', 'size', size);
  const [y] = await runOp<D>('upsample_nearest_forward', [x], { outH, outW });
  return y;
}

/** Gradient of upsampleNearest(x, size): dy [N, C, h, w] → dx [N, C, H, W] for inputSize [H, W]; each input pixel sums the outputs that read it. */
export async function upsampleNearestBackward<D extends FloatDType>(dy: Tensor<D>, inputSize: [number, number]): Promise<Tensor<D>> {
  const [inH, inW] = checkSize('upsampleNearestBackward', 'inputSize', inputSize);
  const [dx] = await runOp<D>('upsample_nearest_backward', [dy], { inH, inW });
  return dx;
}

/** x [N, C, H, W] → [N, C, 2H, 2W], each pixel repeated over a 2x2 block. */
export async function upsampleNearest2x<D extends FloatDType>(x: Tensor<D>): Promise<Tensor<D>> {
  const [y] = await runOp<D>('upsample_nearest2x_forward', [x]);
  return y;
}

/** Gradient of upsampleNearest2x(): dy [N, C, 2H, 2W] → dx [N, C, H, W], the sum of each 2x2 block. */
export async function upsampleNearest2xBackward<D extends FloatDType>(dy: Tensor<D>): Promise<Tensor<D>> {
  const [dx] = await runOp<D>('upsample_nearest2x_backward', [dy]);
  return dx;
}
