// Ops on tensors. Each runs on the inputs' device, off the JavaScript thread,
// and resolves to a new tensor. Shape, dtype and device errors reject with an
// ImprintError that names all three.
import { ImprintError } from './errors.js';
import { native } from './native.js';
import { Tensor, type SumOf } from './tensor.js';
import { checkBoolean, checkOptions, checkTensor, describe, type DType } from './validate.js';

export interface MatmulOptions {
  /** Use aᵀ: `a` is stored [..., K, M]. */
  transposeA?: boolean;
  /** Use bᵀ: `b` is stored [..., N, K]. */
  transposeB?: boolean;
}

export interface SumOptions {
  /** Dimension(s) to sum over; all when omitted. Negative counts from the end. */
  dim?: number | number[];
  /** Keep summed dimensions with size 1. */
  keepDim?: boolean;
}

/**
 * Batched matrix product: a [..., M, K] · b [..., K, N] → [..., M, N], with
 * broadcasting over the batch dimensions and f32 accumulation.
 */
export async function matmul<D extends DType>(a: Tensor<D>, b: Tensor<D>, options?: MatmulOptions): Promise<Tensor<D>> {
  const o = checkOptions('matmul', options, ['transposeA', 'transposeB']);
  const ta = checkBoolean('matmul', 'transposeA', o.transposeA, false);
  const tb = checkBoolean('matmul', 'transposeB', o.transposeB, false);
  return new Tensor<D>(await native.matmul(checkTensor('matmul', 'a', a).handle, checkTensor('matmul', 'b', b).handle, ta, tb));
}

/** Element-wise a + b with broadcasting. Integers wrap around. */
export async function add<D extends DType>(a: Tensor<D>, b: Tensor<D>): Promise<Tensor<D>> {
  return new Tensor<D>(await native.add(checkTensor('add', 'a', a).handle, checkTensor('add', 'b', b).handle));
}

/** Element-wise a · b with broadcasting. Integers wrap around. */
export async function mul<D extends DType>(a: Tensor<D>, b: Tensor<D>): Promise<Tensor<D>> {
  return new Tensor<D>(await native.mul(checkTensor('mul', 'a', a).handle, checkTensor('mul', 'b', b).handle));
}

/** Sum over dimensions. Floats keep their dtype; integers sum into i64. */
export async function sum<D extends DType>(a: Tensor<D>, options?: SumOptions): Promise<Tensor<SumOf<D>>> {
  const o = checkOptions('sum', options, ['dim', 'keepDim']);
  const dims = o.dim === undefined ? [] : Array.isArray(o.dim) ? o.dim : [o.dim];
  for (const d of dims) {
    if (!Number.isSafeInteger(d)) {
      throw new ImprintError(`sum: dim must be an integer or an array of integers, got ${describe(d)}`, 'INVALID_ARGUMENT');
    }
  }
  const keepDim = checkBoolean('sum', 'keepDim', o.keepDim, false);
  return new Tensor<SumOf<D>>(await native.sum(checkTensor('sum', 'input', a).handle, dims as number[], keepDim));
}
