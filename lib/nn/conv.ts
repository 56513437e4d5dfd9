// 2-D convolution over NCHW tensors, as torch.nn.functional.conv2d. (Nearest
// 2x upsampling is in resample.ts.)
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkOptions, describe, type FloatDType } from '../validate.js';
import { runOp } from './run.js';

/** Zero padding: one number for all four sides, or [top, bottom, left, right]. */
export type Conv2dPadding = number | readonly [number, number, number, number];

export interface Conv2dOptions {
  /** Step of the kernel in both directions (default 1). */
  stride?: number;
  /** Zeros added around x before the kernel slides over it (default 0). */
  padding?: Conv2dPadding;
}

export interface Conv2dBackwardOptions extends Conv2dOptions {
  /** Compute dx (default true; false when x is a constant, e.g. features into a trained convolution). */
  inputGrad?: boolean;
  /** Compute dweight (default true). */
  weightGrad?: boolean;
  /** Compute dbias (default false). */
  biasGrad?: boolean;
}

export interface Conv2dGrads<D extends FloatDType = FloatDType> {
  /** Absent with inputGrad: false. */
  dx?: Tensor<D>;
  dweight?: Tensor<D>;
  dbias?: Tensor<D>;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function checkStride(fn: string, value: unknown): number {
  if (value === undefined) return 1;
  if (!isCount(value) || value < 1) throw invalidArgument(`${fn}: stride must be a positive integer, got ${describe(value)}`);
  return value;
}

function checkPadding(fn: string, value: unknown): number[] {
  if (value === undefined) return [0, 0, 0, 0];
  if (isCount(value)) return [value, value, value, value];
  if (Array.isArray(value) && value.length === 4 && value.every(isCount)) return [...value];
  const got = Array.isArray(value) ? `[${value.map((v) => describe(v)).join(', ')}]` : describe(value);
  throw invalidArgument(`${fn}: padding must be a non-negative integer or [top, bottom, left, right], got ${got}`);
}

/** x [N, Cin, H, W] convolved with weight [Cout, Cin, kh, kw], plus bias [Cout] → [N, Cout, Ho, Wo]. */
export async function conv2d<D extends FloatDType>(x: Tensor<D>, weight: Tensor<D>, bias?: Tensor<D> | null, options?: Conv2dOptions): Promise<Tensor<D>> {
  const o = checkOptions('conv2d', options, ['stride', 'padding']);
  const stride = checkStride('conv2d', o.stride);
  const padding = checkPadding('conv2d', o.padding);
  const [y] = await runOp<D>('conv2d_forward', [x, weight, bias], { stride, padding });
  return y;
}

/** Gradients of conv2d() for the upstream gradient dy [N, Cout, Ho, Wo]; pass the forward's stride and padding. */
export async function conv2dBackward<D extends FloatDType>(dy: Tensor<D>, x: Tensor<D>, weight: Tensor<D>, options?: Conv2dBackwardOptions): Promise<Conv2dGrads<D>> {
  const o = checkOptions('conv2dBackward', options, ['stride', 'padding', 'inputGrad', 'weightGrad', 'biasGrad']);
  const stride = checkStride('conv2dBackward', o.stride);
  const padding = checkPadding('conv2dBackward', o.padding);
  const inputGrad = checkBoolean('conv2dBackward', 'inputGrad', o.inputGrad, true);
  const weightGrad = checkBoolean('conv2dBackward', 'weightGrad', o.weightGrad, true);
  const biasGrad = checkBoolean('conv2dBackward', 'biasGrad', o.biasGrad, false);
  if (!inputGrad && !weightGrad && !biasGrad) throw invalidArgument('conv2dBackward: inputGrad, weightGrad and biasGrad are all false: no gradient asked for');
  const outs = await runOp<D>('conv2d_backward', [dy, x, weight], { stride, padding, inputGrad, weightGrad, biasGrad });
  return { dx: inputGrad ? outs.shift() : undefined, dweight: weightGrad ? outs.shift() : undefined, dbias: biasGrad ? outs.shift() : undefined };
}
