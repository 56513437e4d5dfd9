// Gradient-norm clipping, as torch.nn.utils.clip_grad_norm_.
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkNumber, checkOptions, type FloatDType } from '../validate.js';
import { checkTensorList } from './check.js';
import { runOp } from './run.js';

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
