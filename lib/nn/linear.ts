// Linear (fully connected) layer: y = x·Wᵀ + b, as torch.nn.functional.linear.
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, type FloatDType } from '../validate.js';
import { invalidArgument } from '../errors.js';
import { runOp } from './run.js';

/** x [..., in] · weight [out, in]ᵀ + bias [out] → [..., out]. */
export async function linear<D extends FloatDType>(x: Tensor<D>, weight: Tensor<D>, bias?: Tensor<D> | null): Promise<Tensor<D>> {
  const [y] = await runOp<D>('linear_forward', [x, weight, bias]);
  return y;
}

export interface LinearBackwardOptions {
  /** Compute dweight (default true). */
  weightGrad?: boolean;
  /** Compute dbias (default false). */
  biasGrad?: boolean;
}

export interface LinearGrads<D extends FloatDType = FloatDType> {
  dx: Tensor<D>;
  dweight?: Tensor<D>;
  dbias?: Tensor<D>;
}

/** Gradients of linear() for the upstream gradient dy [..., out]. */
export async function linearBackward<D extends FloatDType>(dy: Tensor<D>, x: Tensor<D>, weight: Tensor<D>, options?: LinearBackwardOptions): Promise<LinearGrads<D>> {
  const o = checkOptions('linearBackward', options, ['weightGrad', 'biasGrad']);
  const weightGrad = checkBoolean('linearBackward', 'weightGrad', o.weightGrad, true);
  const biasGrad = checkBoolean('linearBackward', 'biasGrad', o.biasGrad, false);
  const [dx, ...rest] = await runOp<D>('linear_backward', [dy, x, weight], { weightGrad, biasGrad });
  return { dx, dweight: weightGrad ? rest.shift() : undefined, dbias: biasGrad ? rest.shift() : undefined };
}

/** The low-rank modulation of a projection: LoRA's down [rank, in] and up [out, rank], or per sample [samples, rank, in] and [samples, out, rank]. */
export interface LowRank<D extends FloatDType = FloatDType> {
  down: Tensor<D>;
  up: Tensor<D>;
  /** s in y = x·Wᵀ + b + s·(x·downᵀ)·upᵀ (default 1). */
  scale?: number;
}

export interface LinearLowRankOutput<D extends FloatDType = FloatDType> {
  y: Tensor<D>;
  /** x·downᵀ [..., rank], kept for linearLowRankBackward. */
  u: Tensor<D>;
}

function checkLowRank<D extends FloatDType>(fn: string, lowRank: LowRank<D>): { down: Tensor<D>; up: Tensor<D>; scale: number } {
  const o = checkOptions(fn, lowRank, ['down', 'up', 'scale']);
  if (o.down === undefined || o.up === undefined) throw invalidArgument(`${fn}: lowRank needs both down and up tensors`);
  return { down: o.down as Tensor<D>, up: o.up as Tensor<D>, scale: checkNumber(fn, 'lowRank.scale', o.scale, 1) };
}

/**
 * Projection plus low-rank modulation without merging the weights:
 * y = x·Wᵀ + b + s·(x·downᵀ)·upᵀ. Per-sample down/up (x [samples, ..., in])
 * give each image its own LoRA, as the tuning encoder predicts them.
 */
export async function linearLowRank<D extends FloatDType>(x: Tensor<D>, weight: Tensor<D>, lowRank: LowRank<D>, bias?: Tensor<D> | null): Promise<LinearLowRankOutput<D>> {
  const { down, up, scale } = checkLowRank('linearLowRank', lowRank);
  const [y, u] = await runOp<D>('linear_lowrank_forward', [x, weight, down, up, bias], { scale });
  return { y, u };
}

export interface LinearLowRankGrads<D extends FloatDType = FloatDType> {
  dx: Tensor<D>;
  ddown: Tensor<D>;
  dup: Tensor<D>;
  dweight?: Tensor<D>;
  dbias?: Tensor<D>;
}

/** Gradients of linearLowRank() for dy [..., out]; u is the forward's. W's and b's only when asked for (LoRA trains down and up). */
export async function linearLowRankBackward<D extends FloatDType>(dy: Tensor<D>, x: Tensor<D>, weight: Tensor<D>, lowRank: LowRank<D>, u: Tensor<D>, options?: LinearBackwardOptions): Promise<LinearLowRankGrads<D>> {
  const { down, up, scale } = checkLowRank('linearLowRankBackward', lowRank);
  const o = checkOptions('linearLowRankBackward', options, ['weightGrad', 'biasGrad']);
  const weightGrad = checkBoolean('linearLowRankBackward', 'weightGrad', o.weightGrad, false);
  const biasGrad = checkBoolean('linearLowRankBackward', 'biasGrad', o.biasGrad, false);
  const [dx, ddown, dup, ...rest] = await runOp<D>('linear_lowrank_backward', [dy, x, weight, down, up, u], { scale, weightGrad, biasGrad });
  return { dx, ddown, dup, dweight: weightGrad ? rest.shift() : undefined, dbias: biasGrad ? rest.shift() : undefined };
}
