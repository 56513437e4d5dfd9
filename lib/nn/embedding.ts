// Token embedding (with a row-masked gradient for training only new tokens)
// and the UNet's sinusoidal timestep embedding, as their PyTorch counterparts.
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, type FloatDType } from '../validate.js';
import { checkInteger, checkTensor } from './check.js';
import { runOp } from './run.js';

export type IdDType = 'i32' | 'i64';

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
