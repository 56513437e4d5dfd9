// Fresh weights for a model layout, initialised as PyTorch initialises the
// modules (so a model trained from them behaves like one trained in
// diffusers/transformers): conv and linear weights and biases
// U(-1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5), norm weights 1 and
// biases 0, embeddings N(0, std). Deterministic for a seed (Philox).
import { invalidArgument } from '../errors.js';
import { ones, rand, randn, zeros } from '../creation.js';
import type { Tensor } from '../tensor.js';
import { describe } from '../validate.js';
import type { Layout } from './configs.js';

export interface InitOptions {
  seed: number;
  /** Standard deviation of embedding tables (names matching /embedding/; default 0.02 as CLIP). */
  embeddingStd?: number;
}

/** Which parameters are norm layers (weight 1, bias 0): their names say so. */
const NORM = /(^|\.)(norm\d*|norm_out|conv_norm_out|layer_norm\d*|final_layer_norm|group_norm|ln_\w+)\.(weight|bias)$/;
const EMBEDDING = /embedding(s)?\.weight$|\.(token|position)_embedding\.weight$/;

export async function initWeights(layout: Layout, options: InitOptions): Promise<Map<string, Tensor>> {
  const fn = 'initWeights';
  if (!Number.isSafeInteger(options?.seed) || options.seed < 0) throw invalidArgument(`${fn}: seed must be a non-negative integer, got ${describe(options?.seed)}`);
  const std = options.embeddingStd ?? 0.02;
  const out = new Map<string, Tensor>();
  let k = 0;
  try {
    for (const [name, shape] of Object.entries(layout)) {
      const seed = options.seed * 100_003 + k++;  // one Philox stream per tensor
      let t: Tensor;
      if (NORM.test(name)) {
        t = name.endsWith('.weight') ? await ones(shape) : await zeros(shape);
      } else if (EMBEDDING.test(name) && shape.length === 2) {
        t = await randn(shape, { seed, std });
      } else {
        // fan_in of a weight [out, in, kh, kw] or [out, in]; a bias takes its weight's.
        const w = name.endsWith('.bias') ? layout[name.slice(0, -5) + '.weight'] : shape;
        if (!w || w.length < 2) throw invalidArgument(`${fn}: cannot tell how to initialise '${name}' [${shape.join(', ')}]`);
        const fanIn = w.slice(1).reduce((a, b) => a * b, 1);
        const bound = 1 / Math.sqrt(fanIn);
        t = await rand(shape, { seed, low: -bound, high: bound });
      }
      out.set(name, t);
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}
