// The (masked) mean squared error and its gradient, as PyTorch computes them.
import type { Tensor } from '../tensor.js';
import { checkNumber, checkOptions, type FloatDType } from '../validate.js';
import { checkTensor } from './check.js';
import { runOp } from './run.js';

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
