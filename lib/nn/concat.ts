// concat and split along one dim (torch.cat and torch.split with sizes), each
// the other's backward. Any dtype.
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkOptions, describe, type DType } from '../validate.js';
import { checkInteger, checkTensorList } from './check.js';
import { runOp } from './run.js';

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
