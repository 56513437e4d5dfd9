// Backward passes of the basic ops (add, mul, matmul), composed from
// forward ops: each gradient is summed over the dimensions its input was
// broadcast along, so it has the input's shape. (scale's backward is scale
// itself; a residual add's is addBackward.)
import { matmul as matmulOp, mul as mulOp, sum } from '../ops.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkOptions, checkShape, type FloatDType } from '../validate.js';

/** Sums `t` over the dims along which `shape` was broadcast to t's shape; a reshaped view when there are none. */
export async function sumToShape<D extends FloatDType>(t: Tensor<D>, shape: readonly number[]): Promise<Tensor<D>> {
  const target = checkShape('sumToShape', shape);
  const lead = t.ndim - target.length;
  const dims: number[] = [];
  for (let i = 0; i < t.ndim; i++) {
    if (i < lead || (target[i - lead] === 1 && t.shape[i] !== 1)) dims.push(i);
  }
  if (dims.length === 0) return t.reshape(target);
  const reduced = await sum(t, { dim: dims, keepDim: true });
  const view = reduced.reshape(target);
  reduced.dispose();
  return view as Tensor<D>;
}

export interface BinaryGrads<D extends FloatDType> {
  da: Tensor<D>;
  db: Tensor<D>;
}

/** Gradients of add(a, b) for upstream dy: dy summed to each input's shape. */
export async function addBackward<D extends FloatDType>(dy: Tensor<D>, aShape: readonly number[], bShape: readonly number[]): Promise<BinaryGrads<D>> {
  return { da: await sumToShape(dy, aShape), db: await sumToShape(dy, bShape) };
}

/** Gradients of mul(a, b): dy·b and dy·a, summed to each input's shape. */
export async function mulBackward<D extends FloatDType>(dy: Tensor<D>, a: Tensor<D>, b: Tensor<D>): Promise<BinaryGrads<D>> {
  const dyb = await mulOp(dy, b);
  const dya = await mulOp(dy, a);
  try {
    return { da: await sumToShape(dyb, a.shape), db: await sumToShape(dya, b.shape) };
  } finally {
    dyb.dispose();
    dya.dispose();
  }
}

export interface MatmulBackwardOptions {
  transposeA?: boolean;
  transposeB?: boolean;
  /** Compute da (default true). */
  aGrad?: boolean;
  /** Compute db (default true). */
  bGrad?: boolean;
}

/**
 * Gradients of matmul(a, b, { transposeA, transposeB }) for upstream dc: with
 * C = op(A)·op(B), d op(A) = dC·op(B)ᵀ and d op(B) = op(A)ᵀ·dC, transposed back
 * to the stored layout and summed over broadcast batch dims.
 */
export async function matmulBackward<D extends FloatDType>(
  dc: Tensor<D>,
  a: Tensor<D>,
  b: Tensor<D>,
  options?: MatmulBackwardOptions,
): Promise<{ da?: Tensor<D>; db?: Tensor<D> }> {
  const o = checkOptions('matmulBackward', options, ['transposeA', 'transposeB', 'aGrad', 'bGrad']);
  const ta = checkBoolean('matmulBackward', 'transposeA', o.transposeA, false);
  const tb = checkBoolean('matmulBackward', 'transposeB', o.transposeB, false);
  const reduce = async (full: Tensor<D>, shape: readonly number[]) => {
    const r = await sumToShape(full, shape);
    full.dispose();
    return r;
  };
  const out: { da?: Tensor<D>; db?: Tensor<D> } = {};
  if (checkBoolean('matmulBackward', 'aGrad', o.aGrad, true)) {
    const full = ta ? await matmulOp(b, dc, { transposeA: tb, transposeB: true }) : await matmulOp(dc, b, { transposeB: !tb });
    out.da = await reduce(full, a.shape);
  }
  if (checkBoolean('matmulBackward', 'bGrad', o.bGrad, true)) {
    const full = tb ? await matmulOp(dc, a, { transposeA: true, transposeB: ta }) : await matmulOp(a, dc, { transposeA: !ta });
    out.db = await reduce(full, b.shape);
  }
  return out;
}
