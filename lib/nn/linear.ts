// Linear (fully connected) layer: y = x·Wᵀ + b, as torch.nn.functional.linear.
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkOptions, type FloatDType } from '../validate.js';
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
