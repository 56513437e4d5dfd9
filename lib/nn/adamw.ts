// One torch.optim.AdamW step (also mixed precision: an f32 master beside the
// model's f16/bf16 weight).
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkNumber, checkOptions, type FloatDType } from '../validate.js';
import { checkInteger, checkTensor } from './check.js';
import { runOp } from './run.js';

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
