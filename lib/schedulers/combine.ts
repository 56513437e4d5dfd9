// Tensor side of the schedulers: every update is a linear combination of
// same-shaped tensors with float64 coefficients, done with the package's
// mul/add so it runs on whatever device the tensors live on.
import { ImprintError, invalidArgument } from '../errors.js';
import { full, tensor } from '../creation.js';
import { add, mul } from '../ops.js';
import { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';

const show = (t: Tensor): string => `${t.dtype}[${t.shape.join(', ')}] on ${t.device}`;

/** Checks that `value` is a live float tensor. */
export function checkFloatTensor(fn: string, name: string, value: unknown): Tensor<FloatDType> {
  if (!(value instanceof Tensor)) throw invalidArgument(`${fn}: ${name} must be a Tensor, got ${describe(value)}`);
  if (value.disposed) throw new ImprintError(`${fn}: ${name} has been disposed`, 'DISPOSED');
  if (value.dtype !== 'f32' && value.dtype !== 'f16' && value.dtype !== 'bf16') {
    throw new ImprintError(`${fn}: ${name} must be f32, f16 or bf16, got ${show(value)}`, 'DTYPE_MISMATCH');
  }
  return value as Tensor<FloatDType>;
}

/** Checks that `other` has the shape, dtype and device of `ref` (no silent broadcasting). */
export function checkLike(fn: string, name: string, other: Tensor, refName: string, ref: Tensor): void {
  if (other.shape.length !== ref.shape.length || other.shape.some((d, i) => d !== ref.shape[i])) {
    throw new ImprintError(`${fn}: ${name} ${show(other)} must have the shape of ${refName} ${show(ref)}`, 'SHAPE_MISMATCH');
  }
  if (other.dtype !== ref.dtype) throw new ImprintError(`${fn}: ${name} ${show(other)} must have the dtype of ${refName} ${show(ref)}`, 'DTYPE_MISMATCH');
  if (other.device !== ref.device) throw new ImprintError(`${fn}: ${name} ${show(other)} must be on the device of ${refName} ${show(ref)}`, 'DEVICE_MISMATCH');
}

/** Σ cᵢ·xᵢ for scalar cᵢ; a new tensor, temporaries disposed. */
export async function combine<D extends FloatDType>(terms: ReadonlyArray<readonly [number, Tensor<D>]>): Promise<Tensor<D>> {
  let acc: Tensor<D> | undefined;
  try {
    for (const [c, x] of terms) {
      const scale = await full<D>([], c, { dtype: x.dtype, device: x.device });
      let term: Tensor<D>;
      try {
        term = await mul(x, scale);
      } finally {
        scale.dispose();
      }
      if (!acc) {
        acc = term;
        continue;
      }
      try {
        const next = await add(acc, term);
        acc.dispose();
        acc = next;
      } finally {
        term.dispose();
      }
    }
  } catch (e) {
    acc?.dispose();
    throw e;
  }
  if (!acc) throw new ImprintError('combine: no terms', 'INTERNAL');
  return acc;
}

/**
 * a[b]·x + c[b]·y with one coefficient per batch entry (dimension 0), for
 * training batches whose samples sit at different timesteps.
 */
export async function combinePerSample<D extends FloatDType>(a: ArrayLike<number>, x: Tensor<D>, c: ArrayLike<number>, y: Tensor<D>): Promise<Tensor<D>> {
  const shape = [x.shape[0], ...x.shape.slice(1).map(() => 1)];
  const coef = async (v: ArrayLike<number>): Promise<Tensor<D>> => {
    const cpu = tensor(Float32Array.from(v), { shape, dtype: x.dtype }) as Tensor<D>;
    if (x.device === 'cpu') return cpu;
    try {
      return await cpu.to(x.device);
    } finally {
      cpu.dispose();
    }
  };
  const ca = await coef(a);
  const cc = await coef(c);
  let ax: Tensor<D> | undefined;
  let cy: Tensor<D> | undefined;
  try {
    ax = await mul(x, ca);
    cy = await mul(y, cc);
    return await add(ax, cy);
  } finally {
    ca.dispose();
    cc.dispose();
    ax?.dispose();
    cy?.dispose();
  }
}
