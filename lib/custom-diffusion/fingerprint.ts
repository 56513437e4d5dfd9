// A base model's fingerprint: SHA-256 over the names, shapes and f32 values of
// the UNet's cross-attention projections (the matrices concepts change) and
// the text encoder's token-embedding shape. Loading a concept onto a model
// with another fingerprint is refused unless forced: its deltas would be
// added to different weights. The same model loaded from fp16 or fp32 files
// differs in its values, so the fingerprint is taken after widening to f32
// and rounding to fp16 precision, which both share.
import { createHash } from 'node:crypto';

import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { describe } from '../validate.js';

const ATTN2 = /\.attn2\.to_(q|k|v|out\.0)\.weight$/;

/** Rounds f32 values to fp16 precision (round to nearest even on the 13 dropped mantissa bits). */
function toHalfPrecision(values: Float32Array): Uint32Array {
  const bits = new Uint32Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const lsb = (b >>> 13) & 1;
    bits[i] = ((b + 0x0fff + lsb) >>> 13) << 13;
  }
  return bits;
}

export async function modelFingerprint(unetWeights: Map<string, Tensor>, tokenEmbedding: Tensor): Promise<string> {
  const fn = 'modelFingerprint';
  if (!(unetWeights instanceof Map)) throw invalidArgument(`${fn}: unetWeights must be a Map of name → Tensor, got ${describe(unetWeights)}`);
  const names = [...unetWeights.keys()].filter((n) => ATTN2.test(n)).sort();
  if (names.length === 0) throw invalidArgument(`${fn}: the UNet has no cross-attention (attn2) weights`);
  const h = createHash('sha256');
  h.update(`token_embedding ${tokenEmbedding.shape.join('x')}\n`);
  for (const n of names) {
    const w = unetWeights.get(n)!;
    h.update(`${n} ${w.shape.join('x')}\n`);
    const f32 = w.dtype === 'f32' ? w : await w.cast('f32');
    try {
      h.update(toHalfPrecision(f32.dataSync() as Float32Array));
    } finally {
      if (f32 !== w) f32.dispose();
    }
  }
  return `sha256:${h.digest('hex').slice(0, 32)}`;
}
