// Runs one op of the native neural-network library (csrc/ops, by name) and
// wraps its outputs. The typed functions in lib/nn/*.ts are built on this.
import { ImprintError } from '../errors.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { describe, type DType } from '../validate.js';

export type Attrs = Record<string, number | boolean | number[] | undefined>;

/** Outputs are typed as the caller says (the dtype the op produces); ops check their inputs natively. */
export async function runOp<D extends DType = DType>(name: string, inputs: (Tensor | null | undefined)[], attrs: Attrs = {}): Promise<Tensor<D>[]> {
  const handles = inputs.map((t, i) => {
    if (t == null) return null;
    if (!(t instanceof Tensor)) {
      throw new ImprintError(`${name}: input ${i} must be a Tensor, got ${describe(t)}`, 'INVALID_ARGUMENT');
    }
    return t.handle;
  });
  const outputs = await native.nnOp(name, handles, attrs);
  return outputs.map((h) => new Tensor<D>(h));
}
