// The small ops around the models: token embedding (with a row-masked
// gradient for training only new tokens), the UNet's sinusoidal timestep
// embedding, nearest resize to a size, concat/split, the (masked) MSE loss, one AdamW step and
// gradient-norm clipping. Each follows its PyTorch counterpart.
import { invalidArgument } from '../errors.js';
import { Tensor } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, describe, type DType, type FloatDType } from '../validate.js';
import { runOp } from './run.js';

export type IdDType = 'i32' | 'i64';

function checkInteger(fn: string, name: string, value: unknown, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw invalidArgument(`${fn}: ${name} must be an integer, got ${describe(value)}`);
  }
  return value;
}

function checkTensor(fn: string, name: string, value: unknown): Tensor | undefined {
  if (value === undefined || value === null) return undefined;
  if (!(value instanceof Tensor)) throw invalidArgument(`${fn}: ${name} must be a Tensor, got ${describe(value)}`);
  return value;
}

function checkTensorList(fn: string, name: string, value: unknown): Tensor[] {
  if (!Array.isArray(value)) throw invalidArgument(`${fn}: ${name} must be an array of Tensors, got ${describe(value)}`);
  value.forEach((t, i) => {
    if (!(t instanceof Tensor)) throw invalidArgument(`${fn}: ${name}[${i}] must be a Tensor, got ${describe(t)}`);
  });
  return value as Tensor[];
}

/** table [vocab, dim] rows picked by ids (i32 or i64, any shape) → [...ids.shape, dim], as F.embedding. Out-of-range ids reject. */
export async function embedding<D extends FloatDType>(ids: Tensor<IdDType>, table: Tensor<D>): Promise<Tensor<D>> {
  const [out] = await runOp<D>('embedding_forward', [ids, table]);
  return out;
}

export interface EmbeddingBackwardOptions {
  /** Rows of the table (required: the gradient is [vocab, dim]). */
  vocab: number;
  /** u8 [vocab]: 1 = the row gets its gradient, 0 = the row stays exactly 0 (train only new tokens). */
  rowMask?: Tensor<'u8'> | null;
}

/** Gradient of embedding() for the table: dy [...ids.shape, dim] summed into the rows the ids name → [vocab, dim]. */
export async function embeddingBackward<D extends FloatDType>(dy: Tensor<D>, ids: Tensor<IdDType>, options: EmbeddingBackwardOptions): Promise<Tensor<D>> {
  const fn = 'embeddingBackward';
  if (options === undefined) throw invalidArgument(`${fn}: options { vocab } are required`);
  const o = checkOptions(fn, options, ['vocab', 'rowMask']);
  const vocab = checkInteger(fn, 'vocab', o.vocab);
  const rowMask = checkTensor(fn, 'rowMask', o.rowMask);
  const [dtable] = await runOp<D>('embedding_backward', [dy, ids, rowMask], { vocab });
  return dtable;
}

export interface TimestepEmbeddingOptions {
  /** Embedding width (an odd width gets a zero last column). */
  dim: number;
  /** [cos, sin] instead of [sin, cos] (default true, as the SD UNet). */
  flipSinToCos?: boolean;
  /** diffusers' downscale_freq_shift (default 0, as the SD UNet's freq_shift). */
  freqShift?: number;
  /** Longest period (default 10000). */
  maxPeriod?: number;
  /** Multiplies the arguments (default 1). */
  scale?: number;
}

/** diffusers' get_timestep_embedding for timesteps f32 [N] → [N, dim]. No gradient flows to the timesteps. */
export async function timestepEmbedding<D extends FloatDType>(timesteps: Tensor<D>, options: TimestepEmbeddingOptions): Promise<Tensor<D>> {
  const fn = 'timestepEmbedding';
  if (options === undefined) throw invalidArgument(`${fn}: options { dim } are required`);
  const o = checkOptions(fn, options, ['dim', 'flipSinToCos', 'freqShift', 'maxPeriod', 'scale']);
  const [out] = await runOp<D>('timestep_embedding_forward', [timesteps], {
    dim: checkInteger(fn, 'dim', o.dim),
    flipSinToCos: checkBoolean(fn, 'flipSinToCos', o.flipSinToCos, true),
    freqShift: checkNumber(fn, 'freqShift', o.freqShift, 0),
    maxPeriod: checkNumber(fn, 'maxPeriod', o.maxPeriod, 10000),
    scale: checkNumber(fn, 'scale', o.scale, 1),
  });
  return out;
}

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

export interface DimOptions {
  /** The dim to join or cut along (default 0; negative counts from the end). */
  dim?: number;
}

/** torch.cat: tensors of one dtype, device and rank, equal sizes except along dim. Its backward is split(). */
export async function concat<D extends DType>(tensors: Tensor<D>[], options?: DimOptions): Promise<Tensor<D>> {
  const list = checkTensorList('concat', 'tensors', tensors);
  if (list.length === 0) throw invalidArgument('concat: tensors must hold at least one Tensor');
  const o = checkOptions('concat', options, ['dim']);
  const [out] = await runOp<D>('concat_forward', list, { dim: checkInteger('concat', 'dim', o.dim, 0) });
  return out;
}

/** torch.split with a list of sizes (which must add up to x's size along dim): the pieces, in order. */
export async function split<D extends DType>(x: Tensor<D>, sizes: number[], options?: DimOptions): Promise<Tensor<D>[]> {
  if (!Array.isArray(sizes) || sizes.length === 0) throw invalidArgument(`split: sizes must be a non-empty array of integers, got ${describe(sizes)}`);
  sizes.forEach((s, i) => {
    if (!Number.isSafeInteger(s) || s < 0) throw invalidArgument(`split: sizes[${i}] must be a non-negative integer, got ${describe(s)}`);
  });
  const o = checkOptions('split', options, ['dim']);
  return runOp<D>('split_forward', [x], { dim: checkInteger('split', 'dim', o.dim, 0), sizes });
}

export interface MseLossOptions {
  /**
   * Weights broadcast to pred's shape (e.g. [N, 1, H, W] for [N, C, H, W]), same dtype as pred.
   * The loss is then Σ (pred − target)²·mask / Σ mask_broadcast, i.e.
   * ((pred − target)²·mask).sum() / mask.expand_as(pred).sum() (NaN when the mask sums to 0).
   */
  mask?: Tensor | null;
}

/** mean((pred − target)²), or the masked mean (see MseLossOptions.mask), as a 0-D tensor. */
export async function mseLoss<D extends FloatDType>(pred: Tensor<D>, target: Tensor<D>, options?: MseLossOptions): Promise<Tensor<D>> {
  const o = checkOptions('mseLoss', options, ['mask']);
  const mask = checkTensor('mseLoss', 'mask', o.mask);
  const [loss] = await runOp<D>('mse_loss_forward', [pred, target, mask]);
  return loss;
}

export interface MseLossBackwardOptions extends MseLossOptions {
  /** The upstream gradient of the loss (default 1). */
  gradScale?: number;
}

/** Gradient of mseLoss() for pred: gradScale · 2 (pred − target)·mask / Σ mask_broadcast. */
export async function mseLossBackward<D extends FloatDType>(pred: Tensor<D>, target: Tensor<D>, options?: MseLossBackwardOptions): Promise<Tensor<D>> {
  const o = checkOptions('mseLossBackward', options, ['mask', 'gradScale']);
  const mask = checkTensor('mseLossBackward', 'mask', o.mask);
  const gradScale = checkNumber('mseLossBackward', 'gradScale', o.gradScale, 1);
  const [dpred] = await runOp<D>('mse_loss_backward', [pred, target, mask], { gradScale });
  return dpred;
}

export interface AdamwState<D extends FloatDType = FloatDType> {
  /** The parameter; with `copy`, its f32 master. */
  param: Tensor<D>;
  /** Same dtype as param, or any float dtype when param is f32 (a half-precision model's gradient). */
  grad: Tensor;
  /** First moment (zeros before the first step). */
  expAvg: Tensor<D>;
  /** Second moment (zeros before the first step). */
  expAvgSq: Tensor<D>;
  /**
   * Mixed precision: the model's f16/bf16 weight whose f32 master `param` is.
   * Only its dtype is read; the step returns the updated param rounded to it
   * as `copy`, so the master never loses the small updates the copy would.
   */
  copy?: Tensor;
}

export interface AdamwOptions {
  lr: number;
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.999. */
  beta2?: number;
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (default 1e-2). */
  weightDecay?: number;
  /** This step's number, counting from 1 (for the bias corrections). */
  step: number;
}

export interface AdamwResult<D extends FloatDType = FloatDType> {
  param: Tensor<D>;
  expAvg: Tensor<D>;
  expAvgSq: Tensor<D>;
  /** The new param in the dtype of state.copy (only when a copy was given). */
  copy?: Tensor<FloatDType>;
}

/**
 * One torch.optim.AdamW step, in f32 arithmetic whatever the storage. Returns
 * new tensors; the inputs are unchanged.
 */
export async function adamwStep<D extends FloatDType>(state: AdamwState<D>, options: AdamwOptions): Promise<AdamwResult<D>> {
  const fn = 'adamwStep';
  const s = checkOptions(fn, state, ['param', 'grad', 'expAvg', 'expAvgSq', 'copy']);
  if (options === undefined) throw invalidArgument(`${fn}: options { lr, step } are required`);
  const o = checkOptions(fn, options, ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'step']);
  if (o.lr === undefined) throw invalidArgument(`${fn}: lr is required`);
  const inputs = (['param', 'grad', 'expAvg', 'expAvgSq'] as const).map((k) => {
    const t = checkTensor(fn, k, s[k]);
    if (!t) throw invalidArgument(`${fn}: ${k} is required`);
    return t;
  });
  const copyIn = checkTensor(fn, 'copy', s.copy);
  if (copyIn) inputs.push(copyIn);
  const [param, expAvg, expAvgSq, copy] = await runOp<D>('adamw_step', inputs, {
    lr: checkNumber(fn, 'lr', o.lr, 0),
    beta1: checkNumber(fn, 'beta1', o.beta1, 0.9),
    beta2: checkNumber(fn, 'beta2', o.beta2, 0.999),
    eps: checkNumber(fn, 'eps', o.eps, 1e-8),
    weightDecay: checkNumber(fn, 'weightDecay', o.weightDecay, 1e-2),
    step: checkInteger(fn, 'step', o.step),
  });
  return copy ? { param, expAvg, expAvgSq, copy } : { param, expAvg, expAvgSq };
}

export interface ClipGradNormOptions {
  maxNorm: number;
  /** p of the norm (default 2; Infinity for the largest magnitude). */
  normType?: number;
}

/**
 * torch.nn.utils.clip_grad_norm_: the total norm of all grads together (computed
 * in double) and the grads scaled by min(1, maxNorm / (totalNorm + 1e-6)), as new tensors.
 */
export async function clipGradNorm<D extends FloatDType>(grads: Tensor<D>[], options: ClipGradNormOptions): Promise<{ totalNorm: Tensor<D>; grads: Tensor<D>[] }> {
  const fn = 'clipGradNorm';
  const list = checkTensorList(fn, 'grads', grads);
  if (options === undefined) throw invalidArgument(`${fn}: options { maxNorm } are required`);
  const o = checkOptions(fn, options, ['maxNorm', 'normType']);
  if (o.maxNorm === undefined) throw invalidArgument(`${fn}: maxNorm is required`);
  const maxNorm = checkNumber(fn, 'maxNorm', o.maxNorm, 0);
  const normType = o.normType === Infinity ? Infinity : checkNumber(fn, 'normType', o.normType, 2);
  const [totalNorm, ...clipped] = await runOp<D>('clip_grad_norm', list, { maxNorm, normType });
  return { totalNorm, grads: clipped };
}
