// A base model's fingerprint: SHA-256 over the names, shapes and f32 values of
// the UNet's cross-attention projections (the matrices concepts change) and
// the text encoder's token-embedding shape. Loading a concept onto a model
// with another fingerprint is refused unless forced: its deltas would be
// added to different weights. The same model loaded from fp16 or fp32 files
// differs in its values, so the fingerprint is taken of the values rounded
// to fp16, which both share.
import { createHash } from 'node:crypto';

import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { describe } from '../validate.js';

const ATTN2 = /\.attn2\.to_(q|k|v|out\.0)\.weight$/;

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
    // Through fp16 (round to nearest even, subnormals included): exact for weights that came from fp16 files.
    const half = await w.cast('f16');
    try {
      h.update((await half.data()) as Float32Array);  // data() also reads GPU tensors
    } finally {
      half.dispose();
    }
  }
  return `sha256:${h.digest('hex').slice(0, 32)}`;
}
