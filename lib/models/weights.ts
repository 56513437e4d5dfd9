// Taking a model's weights out of a name → Tensor map: each named weight must
// be present, a live float tensor of the layout's shape, and share the first
// weight's dtype and device. Errors name the weight and what is wrong.
import { ImprintError, invalidArgument } from '../errors.js';
import { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';
import type { Layout } from './configs.js';

export const describeTensor = (t: Tensor): string => `${t.dtype}[${t.shape.join(', ')}] on ${t.device}`;
export const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/**
 * The weights `names` (in that order) from `weights`, checked against
 * `layout`. `firstLabel` is how errors refer to the first weight when another
 * one's dtype or device differs from it ("conv_in.weight", "the token embedding").
 */
export function takeWeights(fn: string, weights: unknown, names: readonly string[], layout: Layout, firstLabel: string): Tensor<FloatDType>[] {
  if (!(weights instanceof Map)) throw invalidArgument(`${fn}: weights must be a Map of name → Tensor, got ${describe(weights)}`);
  let first: Tensor | undefined;
  return names.map((name) => {
    const shape = layout[name];
    const t = weights.get(name) as unknown;
    if (t === undefined) throw invalidArgument(`${fn}: weight '${name}' is missing`);
    if (!(t instanceof Tensor)) throw invalidArgument(`${fn}: weight '${name}' must be a Tensor, got ${describe(t)}`);
    if (t.disposed) throw new ImprintError(`${fn}: weight '${name}' has been disposed`, 'DISPOSED');
    if (!sameShape(t.shape, shape)) {
      throw new ImprintError(`${fn}: weight '${name}' must have shape [${shape.join(', ')}] for this config, got ${describeTensor(t)}`, 'SHAPE_MISMATCH');
    }
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
      throw new ImprintError(`${fn}: weight '${name}' must be a float tensor, got ${describeTensor(t)}`, 'DTYPE_MISMATCH');
    }
    first ??= t;
    if (t.dtype !== first.dtype) {
      throw new ImprintError(`${fn}: weight '${name}' is ${t.dtype} but ${firstLabel} is ${first.dtype}; cast them to one dtype`, 'DTYPE_MISMATCH');
    }
    if (t.device !== first.device) {
      throw new ImprintError(`${fn}: weight '${name}' is on ${t.device} but ${firstLabel} is on ${first.device}; move them to one device`, 'DEVICE_MISMATCH');
    }
    return t as Tensor<FloatDType>;
  });
}
