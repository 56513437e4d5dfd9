// Sampling with concepts of any method: their tokens join the pipeline's
// tokenizer and text encoder with the learned rows, and each UNet weight a
// concept touches becomes (W0 + scale·(ΣΔW + Σ s·B·A)) ⊙ (1 − shut): dense
// deltas (Custom Diffusion), LoRA factors (the tuning encoder) and neuron sets
// (Cones) dispatched per kind, in the adapter formula of the UNet op. Like
// diffusers' load_attn_procs + load_textual_inversion, this changes the
// pipeline in place, and restore() puts the UNet weights back bit-exactly.
// Nothing is changed when any check fails: a concept for another base model,
// a token defined twice, a part that does not fit the UNet are all refused
// before the first mutation.
import { ImprintError, invalidArgument } from '../errors.js';
import { tensor } from '../creation.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { UNet2DConditionModel } from '../models/unet.js';
import { StableDiffusionPipeline } from '../pipeline/txt2img.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, describe } from '../validate.js';
import { checkConcept } from './concept-file.js';
import { modelFingerprint } from './fingerprint.js';
import type { ConceptWeights } from './types.js';

export interface ApplyConceptsOptions {
  /** Apply concepts trained on another base model (their fingerprint differs). Default false. */
  force?: boolean;
  /** Multiplies every ΔW and LoRA update (1 = as trained, 0 = tokens only); neuron sets are shut whatever the scale. Default 1. */
  scale?: number;
}

export interface ApplyConceptsResult {
  /** The tokens added, in order, and their ids. */
  tokens: string[];
  ids: number[];
  /** The UNet weights that changed. */
  weights: string[];
  /** The pipeline's base-model fingerprint before the concepts were applied. */
  baseFingerprint: string;
  /** Entries shut (set to zero) per weight by neuron sets (the union over concepts), and how many were shut by more than one concept. */
  shut: Record<string, { count: number; overlap: number }>;
  /**
   * Puts the pipeline back as it was: the UNet it had before (its weights
   * bit-exactly as they were, the ones made here freed) and the tokenizer and
   * token embedding without the added tokens. Call it before any other
   * change of the pipeline's UNet or tokens.
   */
  restore(): Promise<void>;
}

/** The UNet's weights by name. */
export function unetWeightMap(unet: UNet2DConditionModel): Map<string, Tensor> {
  return new Map(unet.weightNames.map((n, i) => [n, unet.weights[i] as Tensor]));
}

/**
 * Applies `concepts` to `pipeline` (in place): each concept's tokens are
 * added with their embedding rows, and every trained UNet matrix becomes
 * W0 + scale·ΣΔW. Apply all concepts in one call: the result has a new
 * fingerprint, so a second call needs `force`. Several concepts changing the
 * same matrix are summed here; mergeConcepts' closed-form merge keeps each
 * concept's behaviour better. The pipeline owns the new UNet tensors and
 * token table (its dispose() frees them); the previous UNet is not changed.
 */
export async function applyConcepts(pipeline: StableDiffusionPipeline, concepts: ConceptWeights[], options?: ApplyConceptsOptions): Promise<ApplyConceptsResult> {
  const fn = 'applyConcepts';
  if (!(pipeline instanceof StableDiffusionPipeline)) throw invalidArgument(`${fn}: pipeline must be a StableDiffusionPipeline, got ${describe(pipeline)}`);
  const o = checkOptions(fn, options, ['force', 'scale']);
  const force = checkBoolean(fn, 'force', o.force, false);
  const scale = checkNumber(fn, 'scale', o.scale, 1);
  if (!Array.isArray(concepts) || concepts.length === 0) throw invalidArgument(`${fn}: concepts must be a non-empty array of ConceptWeights, got ${describe(concepts)}`);
  concepts.forEach((c, i) => checkConcept(fn, c, `concepts[${i}]`));
  const unet = pipeline.unet;
  const encoder = pipeline.textEncoder;
  if (!(unet instanceof UNet2DConditionModel)) throw invalidArgument(`${fn}: the pipeline's UNet must be a UNet2DConditionModel`);
  if (!(encoder instanceof ClipTextEncoder)) throw invalidArgument(`${fn}: the pipeline's text encoder must be a ClipTextEncoder`);
  const base = unetWeightMap(unet);
  const baseFingerprint = await modelFingerprint(base, encoder.tokenEmbedding);
  concepts.forEach((c, i) => {
    if (c.baseFingerprint !== baseFingerprint && !force) {
      throw invalidArgument(`${fn}: concepts[${i}] (${describeTokens(c)}) was trained on base model ${c.baseFingerprint}, but this pipeline's model is ${baseFingerprint}; its deltas would change other weights. Pass force: true to apply it anyway`);
    }
  });
  // Tokens: distinct across concepts, one width, the encoder's.
  const owner = new Map<string, number>();
  const H = encoder.config.hiddenSize;
  concepts.forEach((c, i) => {
    for (const tk of c.tokens) {
      const prev = owner.get(tk.token);
      if (prev !== undefined) throw invalidArgument(`${fn}: token '${tk.token}' is defined by both concepts[${prev}] and concepts[${i}]; rename one before applying both`);
      owner.set(tk.token, i);
      if (tk.embedding.shape[0] !== H) throw new ImprintError(`${fn}: concepts[${i}] token '${tk.token}' has an embedding of width ${tk.embedding.shape[0]}, but the text encoder's hidden size is ${H}`, 'SHAPE_MISMATCH');
    }
  });
  // Every part must name a UNet weight it fits; deltas and LoRA products are summed per weight in float64.
  const sums = new Map<string, Float64Array>();
  const target = (i: number, kind: string, name: string): Tensor => {
    const w0 = base.get(name);
    if (w0 === undefined) throw invalidArgument(`${fn}: concepts[${i}] has ${kind} for '${name}', which this UNet does not have`);
    return w0;
  };
  const accumulator = (name: string, n: number): Float64Array => {
    let acc = sums.get(name);
    if (acc === undefined) sums.set(name, (acc = new Float64Array(n)));
    return acc;
  };
  const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, k) => x === b[k]);
  for (const [i, c] of concepts.entries()) {
    for (const [name, d] of c.deltas ?? []) {
      const w0 = target(i, 'a delta', name);
      if (!sameShape(w0.shape, d.shape)) {
        throw new ImprintError(`${fn}: concepts[${i}] delta '${name}' is [${d.shape.join(', ')}] but the UNet's weight is [${w0.shape.join(', ')}]`, 'SHAPE_MISMATCH');
      }
      const values = (await d.data()) as Float32Array;
      const acc = accumulator(name, values.length);
      for (let k = 0; k < values.length; k++) acc[k] += values[k];
    }
    for (const [name, f] of c.lora ?? []) {
      const w0 = target(i, 'LoRA factors', name);
      const [rank, cols] = f.a.shape;
      const rows = f.b.shape[0];
      if (!sameShape(w0.shape, [rows, cols])) {
        throw new ImprintError(`${fn}: concepts[${i}] LoRA '${name}' gives [${rows}, ${cols}] (b [${f.b.shape.join(', ')}] · a [${f.a.shape.join(', ')}]) but the UNet's weight is [${w0.shape.join(', ')}]`, 'SHAPE_MISMATCH');
      }
      const a = (await f.a.data()) as Float32Array;
      const b = (await f.b.data()) as Float32Array;
      const acc = accumulator(name, rows * cols);
      for (let o = 0; o < rows; o++) {
        for (let r = 0; r < rank; r++) {
          const bor = b[o * rank + r] * f.scale;
          if (bor === 0) continue;
          for (let k = 0; k < cols; k++) acc[o * cols + k] += bor * a[r * cols + k];
        }
      }
    }
  }
  // Neuron sets: indices within the weight; the union is shut.
  const shutSets = new Map<string, Set<number>>();
  const shut: ApplyConceptsResult['shut'] = {};
  for (const [i, c] of concepts.entries()) {
    for (const [name, idx] of c.neurons ?? []) {
      const w0 = target(i, 'a neuron set', name);
      const n = w0.shape.reduce((x, y) => x * y, 1);
      if (idx[idx.length - 1] >= n) throw new ImprintError(`${fn}: concepts[${i}] neuron set '${name}' has index ${idx[idx.length - 1]}, but the UNet's weight [${w0.shape.join(', ')}] has ${n} entries`, 'SHAPE_MISMATCH');
      let set = shutSets.get(name);
      if (set === undefined) shutSets.set(name, (set = new Set()));
      const before = set.size;
      for (const k of idx) set.add(k);
      shut[name] = { count: set.size, overlap: (shut[name]?.overlap ?? 0) + before + idx.length - set.size };
    }
  }
  const made: Tensor[] = [];
  try {
    const replacements = new Map<string, Tensor>();
    for (const name of new Set([...sums.keys(), ...shutSets.keys()])) {
      const w0 = base.get(name)!;
      const v0 = (await w0.data()) as Float32Array;
      const acc = sums.get(name);
      const out = new Float32Array(v0.length);
      if (acc) for (let k = 0; k < v0.length; k++) out[k] = v0[k] + scale * acc[k];
      else out.set(v0);
      for (const k of shutSets.get(name) ?? []) out[k] = 0;
      let w: Tensor = tensor(out, { shape: w0.shape });
      made.push(w);
      if (w0.dtype !== 'f32') made.push((w = await w.cast(w0.dtype)));
      if (w0.device !== 'cpu') made.push((w = await w.to(w0.device)));
      replacements.set(name, w);
    }
    const merged = unet.withWeights(replacements);
    const tokens = concepts.flatMap((c) => c.tokens);
    let ids: number[] = [];
    if (tokens.length > 0) {
      const flat = new Float32Array(tokens.length * H);
      for (const [r, tk] of tokens.entries()) flat.set((await tk.embedding.data()) as Float32Array, r * H);
      const rows = tensor(flat, { shape: [tokens.length, H] });
      try {
        ids = await pipeline.addTokens(tokens.map((tk) => tk.token), { embeddings: rows });
      } finally {
        rows.dispose();
      }
    }
    const keep = new Set(replacements.values());
    for (const t of made) if (!keep.has(t)) t.dispose();
    pipeline.replaceUnet(merged, [...keep]);
    let restored = false;
    const restore = async (): Promise<void> => {
      if (restored) throw invalidArgument('applyConcepts: restore() was already called');
      if (pipeline.unet !== merged) throw invalidArgument('applyConcepts: restore() must come before another change of the pipeline\'s UNet');
      restored = true;
      pipeline.replaceUnet(unet, [], [...keep]);
      if (tokens.length > 0) await pipeline.removeTokens(tokens.map((tk) => tk.token));
    };
    return { tokens: tokens.map((tk) => tk.token), ids, weights: [...new Set([...sums.keys(), ...shutSets.keys()])], baseFingerprint, shut, restore };
  } catch (e) {
    for (const t of made) if (!t.disposed) t.dispose();
    throw e;
  }
}

function describeTokens(c: ConceptWeights): string {
  return c.tokens.length === 0 ? 'no tokens' : c.tokens.map((tk) => tk.token).join(', ');
}
