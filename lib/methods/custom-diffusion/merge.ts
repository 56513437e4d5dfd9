// The closed-form merge of separately trained Custom Diffusion concepts
// (Kumari et al. 2022, §3.2; DESIGN.md §1.1). For every K/V matrix W (base
// W0, applied to text features c): minimise ‖(W − W0)·C_regᵀ‖² subject to
// W·C_tgtᵀ = V, i.e. change W as little as possible on generic captions while
// each concept's target captions map exactly as its own fine-tuned matrix
// W_i maps them. With M = C_regᵀC_reg and d = C_tgt·M⁻¹:
//   W = W0 + (V − W0·C_tgtᵀ)·(d·C_tgtᵀ)⁻¹·d.
// Everything is float64 JavaScript. M is d×d for the feature width d (768 for
// SD 1.x) and accumulated caption by caption, so C_reg is never stored.
import { ImprintError, invalidArgument } from '../../errors.js';
import { tensor } from '../../creation.js';
import { ClipTextEncoder } from '../../models/clip-text.js';
import { UNet2DConditionModel } from '../../models/unet.js';
import { StableDiffusionPipeline } from '../../pipeline/txt2img.js';
import type { Tensor } from '../../tensor.js';
import { ClipTokenizer } from '../../tokenizer/clip.js';
import { checkBoolean, checkNumber, checkOptions, describe, isPlainObject } from '../../validate.js';
import { unetWeightMap } from '../../concepts/apply.js';
import { genericCaptions } from '../../concepts/captions.js';
import { checkCustomDiffusion } from '../../concepts/concept-file.js';
import { modelFingerprint } from '../../concepts/fingerprint.js';
import { fromTensor, gramColumns, mat, matmul, solve, symmetricEigen, toTensor, transpose, type Mat } from '../../concepts/linalg.js';
import type { ConceptToken, CustomDiffusionConcept, CustomDiffusionMode } from '../../concepts/types.js';

export interface MergeBase {
  unet: UNet2DConditionModel;
  textEncoder: ClipTextEncoder;
  tokenizer: ClipTokenizer;
  /** Condition on the text encoder's penultimate layer (as the pipeline does); default false. */
  penultimate?: boolean;
}

export interface MergeOptions {
  /** Generic captions for C_reg; default genericCaptions(1000). */
  regCaptions?: string[];
  /**
   * Target captions per token, '{token}' and '{class}' replaced. Default:
   * '{token} {class}' and the prompt the token was trained with (its
   * `prompt`, recorded in concept files), or 'photo of a {token} {class}'
   * for tokens without one. The merge keeps a token's outputs on these
   * captions, so they should be the ones it learned from: on the world model,
   * 'photo of a …' targets for concepts trained on "a <new1> shape" left the
   * merged star at image alignment 0.022 instead of 0.509.
   */
  targetTemplates?: string[];
  /**
   * Added to M as ridge·mean(diag M)·I, so M is invertible when the
   * regularization features do not span every direction (few captions, or a
   * rank-deficient encoder). The constraints hold exactly for any ridge; it
   * only changes how the rest of the change is spread. Default 1e-6.
   */
  ridge?: number;
  /** Merge concepts whose base fingerprint differs from this model's. Default false. */
  force?: boolean;
}

export interface Residuals {
  /** ‖W·C_tgtᵀ − V‖_F / ‖V‖_F: how far the targets are from the fine-tuned outputs (0 when met exactly). */
  targetRelative: number;
  /** ‖(W − W0)·C_regᵀ‖_F / ‖W0·C_regᵀ‖_F: how much generic captions' keys/values moved. */
  regRelative: number;
}

export interface MatrixResidual extends Residuals {
  /** 'closed-form' for K/V (they read text features); 'sum' for to_q/to_out, whose inputs are image features. */
  method: 'closed-form' | 'sum';
  /** The same residuals for the plain sum of the concepts' deltas, for comparison. */
  naive: Residuals;
}

export interface MergeResult {
  concept: CustomDiffusionConcept;
  residuals: { matrices: Record<string, MatrixResidual>; overall: Residuals & { naive: Residuals } };
}

const DEFAULT_TEMPLATES = ['{token} {class}', 'photo of a {token} {class}'];

/** The target captions of a token: the given templates filled in, or the defaults (see MergeOptions.targetTemplates). */
function targetCaptions(tk: ConceptToken, templates: readonly string[] | undefined): string[] {
  const fill = (tpl: string): string => tpl.replaceAll('{token}', tk.token).replaceAll('{class}', tk.classWord).replace(/\s+/g, ' ').trim();
  if (templates !== undefined) return templates.map(fill);
  return [fill(DEFAULT_TEMPLATES[0]), tk.prompt?.replace(/\s+/g, ' ').trim() ?? fill(DEFAULT_TEMPLATES[1])];
}
const TEXT_INPUT = /\.attn2\.to_(k|v)\.weight$/;
const BATCH = 32;

function checkStrings(fn: string, name: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0) throw invalidArgument(`${fn}: ${name} must be a non-empty array of strings, got ${describe(v)}`);
  v.forEach((s, i) => {
    if (typeof s !== 'string' || s.trim() === '') throw invalidArgument(`${fn}: ${name}[${i}] must be a non-blank string, got ${describe(s)}`);
  });
  return v as string[];
}

function baseParts(fn: string, base: unknown): MergeBase {
  if (base instanceof StableDiffusionPipeline) {
    return { unet: base.unet as UNet2DConditionModel, textEncoder: base.textEncoder as ClipTextEncoder, tokenizer: base.tokenizer as ClipTokenizer, penultimate: base.penultimate };
  }
  if (!isPlainObject(base)) throw invalidArgument(`${fn}: base must be a StableDiffusionPipeline or { unet, textEncoder, tokenizer }, got ${describe(base)}`);
  checkOptions(`${fn}: base`, base, ['unet', 'textEncoder', 'tokenizer', 'penultimate']);
  return base as unknown as MergeBase;
}

/** Token ids of a caption in which added tokens appear verbatim (their ids given), without touching the tokenizer. */
function encodeWithTokens(tokenizer: ClipTokenizer, caption: string, added: Map<string, number>, maxLength: number): number[] {
  const names = [...added.keys()].sort((a, b) => b.length - a.length);
  const pattern = names.length === 0 ? null : new RegExp(names.map((n) => n.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  const content: number[] = [];
  let last = 0;
  const plain = (text: string): void => {
    if (text.trim() !== '') content.push(...tokenizer.encode(text).slice(1, -1));
  };
  for (const m of pattern === null ? [] : caption.matchAll(pattern)) {
    plain(caption.slice(last, m.index));
    content.push(added.get(m[0])!);
    last = m.index! + m[0].length;
  }
  plain(caption.slice(last));
  const ids = tokenizer.encode('');
  // Cut to the encoder's length, keeping the end token last (as padding to 77 does).
  return [ids[0], ...content.slice(0, maxLength - 2), ids[ids.length - 1]];
}

/**
 * The encoder's features of each caption, positions 1 .. the end token
 * (start-of-text, the same for every caption, is left out), as float64 rows.
 */
async function captionFeatures(encoder: ClipTextEncoder, rows: number[][], penultimate: boolean): Promise<Mat[]> {
  const out: Mat[] = [];
  const d = encoder.config.hiddenSize;
  for (let b = 0; b < rows.length; b += BATCH) {
    const batch = rows.slice(b, b + BATCH);
    const len = Math.max(...batch.map((r) => r.length));
    // Padded with the end token: the encoder is causal, so padding changes no earlier position.
    const padded = batch.map((r) => [...r, ...Array<number>(len - r.length).fill(r[r.length - 1])]);
    const enc = await encoder.encode(padded, { penultimate });
    const h = penultimate ? enc.penultimate! : enc.lastHiddenState;
    let values: Float32Array;
    try {
      values = (await h.data()) as Float32Array;
    } finally {
      enc.lastHiddenState.dispose();
      enc.penultimate?.dispose();
    }
    batch.forEach((r, i) => {
      const n = r.length - 1;
      out.push(mat(n, d, values.subarray((i * len + 1) * d, (i * len + 1 + n) * d)));
    });
  }
  return out;
}

/** Refuses a symmetric positive semi-definite matrix whose condition number is beyond what f32 features support. */
function checkConditioned(a: Mat, what: string): void {
  const { values } = symmetricEigen(a);
  const top = values[0];
  const bottom = values[values.length - 1];
  if (!(top > 0) || !(bottom > 1e-10 * top)) {
    throw new ImprintError(`solve: ${what} is singular or nearly so (eigenvalues ${top.toExponential(2)} … ${bottom.toExponential(2)})`, 'INVALID_ARGUMENT');
  }
}

/** tr(X·M·Xᵀ) = ‖X·C_regᵀ‖² for M = C_regᵀC_reg. */
function quadTrace(x: Mat, m: Mat): number {
  const xm = matmul(x, m);
  let s = 0;
  for (let i = 0; i < x.data.length; i++) s += xm.data[i] * x.data[i];
  return Math.max(s, 0);
}

/**
 * Merges separately trained concepts into one (see the file comment). K/V
 * matrices are merged in closed form; to_q/to_out deltas ('cross' mode) act
 * on image features, which captions do not describe, so they are summed. The
 * result's tokens are every concept's (copied), its fingerprint the base's.
 * Target features are taken from each concept token's position to the end
 * token: earlier positions do not depend on the concept (the encoder is
 * causal) and are left to the regularization term, so concepts whose captions
 * share a prefix do not make contradictory constraints. Repeated captions
 * count once; targets whose features are (nearly) linearly dependent are
 * refused with an error rather than solved into huge weights.
 */
export async function mergeConcepts(base: MergeBase | StableDiffusionPipeline, concepts: CustomDiffusionConcept[], options?: MergeOptions): Promise<MergeResult> {
  const fn = 'mergeConcepts';
  const o = checkOptions(fn, options, ['regCaptions', 'targetTemplates', 'ridge', 'force']);
  const regCaptions = o.regCaptions === undefined ? genericCaptions(1000) : checkStrings(fn, 'regCaptions', o.regCaptions);
  const templates = o.targetTemplates === undefined ? undefined : checkStrings(fn, 'targetTemplates', o.targetTemplates);
  templates?.forEach((tpl, i) => {
    if (!tpl.includes('{token}')) throw invalidArgument(`${fn}: targetTemplates[${i}] must contain '{token}', got ${describe(tpl)}`);
  });
  const ridge = checkNumber(fn, 'ridge', o.ridge, 1e-6);
  if (ridge < 0) throw invalidArgument(`${fn}: ridge must be ≥ 0, got ${ridge}`);
  const force = checkBoolean(fn, 'force', o.force, false);
  const { unet, textEncoder, tokenizer, penultimate = false } = baseParts(fn, base);
  if (!(unet instanceof UNet2DConditionModel)) throw invalidArgument(`${fn}: base.unet must be a UNet2DConditionModel, got ${describe(unet)}`);
  if (!(textEncoder instanceof ClipTextEncoder)) throw invalidArgument(`${fn}: base.textEncoder must be a ClipTextEncoder, got ${describe(textEncoder)}`);
  if (!(tokenizer instanceof ClipTokenizer)) throw invalidArgument(`${fn}: base.tokenizer must be a ClipTokenizer, got ${describe(tokenizer)}`);
  if (typeof penultimate !== 'boolean') throw invalidArgument(`${fn}: base.penultimate must be a boolean, got ${describe(penultimate)}`);
  if (tokenizer.vocabSize !== textEncoder.config.vocabSize) {
    throw invalidArgument(`${fn}: the tokenizer has ${tokenizer.vocabSize} tokens but the text encoder's vocab_size is ${textEncoder.config.vocabSize}`);
  }
  if (!Array.isArray(concepts) || concepts.length === 0) throw invalidArgument(`${fn}: concepts must be a non-empty array of ConceptWeights, got ${describe(concepts)}`);
  concepts.forEach((c, i) => checkCustomDiffusion(fn, c, `concepts[${i}]`));

  const W0s = unetWeightMap(unet);
  const baseFingerprint = await modelFingerprint(W0s, textEncoder.tokenEmbedding);
  concepts.forEach((c, i) => {
    if (c.baseFingerprint !== baseFingerprint && !force) {
      throw invalidArgument(`${fn}: concepts[${i}] was trained on base model ${c.baseFingerprint}, but this model is ${baseFingerprint}. Pass force: true to merge it anyway`);
    }
  });
  const H = textEncoder.config.hiddenSize;
  const tokens: Array<ConceptToken & { concept: number }> = [];
  concepts.forEach((c, i) => {
    for (const tk of c.tokens) {
      const prev = tokens.find((x) => x.token === tk.token);
      if (prev !== undefined) throw invalidArgument(`${fn}: token '${tk.token}' is defined by both concepts[${prev.concept}] and concepts[${i}]; rename one before merging`);
      if (tokenizer.tokenToId(tk.token) !== undefined) throw invalidArgument(`${fn}: token '${tk.token}' is already in the base tokenizer's vocabulary; merge onto the base model without concepts applied`);
      if (tk.embedding.shape[0] !== H) throw new ImprintError(`${fn}: concepts[${i}] token '${tk.token}' has width ${tk.embedding.shape[0]}, but the text encoder's hidden size is ${H}`, 'SHAPE_MISMATCH');
      tokens.push({ ...tk, concept: i });
    }
    if (c.tokens.length === 0) throw invalidArgument(`${fn}: concepts[${i}] has no tokens, so it has no target captions`);
  });
  for (const [i, c] of concepts.entries()) {
    for (const [name, dw] of c.deltas) {
      const w0 = W0s.get(name);
      if (w0 === undefined) throw invalidArgument(`${fn}: concepts[${i}] has a delta for '${name}', which this UNet does not have`);
      if (w0.shape.some((x, k) => x !== dw.shape[k]) || w0.shape.length !== dw.shape.length) {
        throw new ImprintError(`${fn}: concepts[${i}] delta '${name}' is [${dw.shape.join(', ')}] but the UNet's weight is [${w0.shape.join(', ')}]`, 'SHAPE_MISMATCH');
      }
    }
  }

  // Features: the encoder with every concept token's row appended.
  const flat = new Float32Array(tokens.length * H);
  for (const [r, tk] of tokens.entries()) flat.set((await tk.embedding.data()) as Float32Array, r * H);
  const rows = tensor(flat, { shape: [tokens.length, H] });
  let encoder: ClipTextEncoder;
  try {
    encoder = await textEncoder.withTokenRows(rows);
  } finally {
    rows.dispose();
  }
  const V0 = textEncoder.config.vocabSize;
  const added = new Map(tokens.map((tk, k) => [tk.token, V0 + k]));
  const maxLength = textEncoder.config.maxPositionEmbeddings;
  let M: Mat;
  const targetRows: number[][] = [];
  const targetOwner: number[] = [];
  try {
    M = mat(H, H);
    const regIds = regCaptions.map((cap) => encodeWithTokens(tokenizer, cap, new Map(), maxLength));
    for (const f of await captionFeatures(encoder, regIds, penultimate)) {
      const g = gramColumns(f);
      for (let k = 0; k < g.data.length; k++) M.data[k] += g.data[k];
    }
    // Targets: per token, per template, the rows from the token's position on.
    const captions: Array<{ ids: number[]; from: number; concept: number }> = [];
    for (const tk of tokens) {
      for (const text of targetCaptions(tk, templates)) {
        const ids = encodeWithTokens(tokenizer, text, added, maxLength);
        const from = ids.indexOf(added.get(tk.token)!);
        if (from < 0) throw invalidArgument(`${fn}: the target caption "${text}" is longer than the text encoder's ${maxLength} tokens; the concept token was cut off`);
        captions.push({ ids, from, concept: tk.concept });
      }
    }
    const feats = await captionFeatures(encoder, captions.map((c) => c.ids), penultimate);
    // The encoder is causal: equal id prefixes give equal features, so a
    // repeated caption (or a shared prefix) adds each constraint once.
    const seen = new Set<string>();
    feats.forEach((f, k) => {
      const { ids, from } = captions[k];
      // Feature row j is position j + 1.
      for (let j = from - 1; j < f.rows; j++) {
        const key = ids.slice(0, j + 2).join(',');
        if (seen.has(key)) continue;
        seen.add(key);
        const row = Array.from(f.data.subarray(j * H, (j + 1) * H));
        targetRows.push(row);
        targetOwner.push(captions[k].concept);
      }
    });
  } finally {
    encoder.tokenEmbedding.dispose();
  }
  const T = targetRows.length;
  if (T > H) {
    throw invalidArgument(`${fn}: the target captions give ${T} feature rows but the features have only ${H} dimensions, so the constraints cannot all hold; use fewer or shorter targetTemplates, or merge fewer concepts at once`);
  }
  let meanDiag = 0;
  for (let i = 0; i < H; i++) meanDiag += M.data[i * H + i] / H;
  const scaleRidge = ridge * (meanDiag > 0 ? meanDiag : 1);
  const Mr = mat(H, H, M.data);
  for (let i = 0; i < H; i++) Mr.data[i * H + i] += scaleRidge;
  const C = mat(T, H, targetRows.flat()); // C_tgt [T, H]
  // dᵀ = M⁻¹·C_tgtᵀ (M symmetric); A = d·C_tgtᵀ; S = A⁻¹·d, shared by every matrix.
  let S: Mat;
  try {
    checkConditioned(Mr, 'M = C_regᵀC_reg (+ ridge)');
    const dT = solve(Mr, transpose(C), 'M = C_regᵀC_reg (+ ridge)');
    const d = transpose(dT);
    const A = matmul(d, C, true);
    // Features come from f32: rows equal up to rounding make A singular up to
    // rounding, which LU's pivot test would let through, so its eigenvalues decide.
    checkConditioned(A, `the target constraint matrix d·C_tgtᵀ (${T}×${T})`);
    S = solve(A, d, `the target constraint matrix d·C_tgtᵀ (${T}×${T})`);
  } catch (e) {
    if (e instanceof ImprintError) {
      throw invalidArgument(`${fn}: ${e.message.replace(/^solve: /, '')}. The target captions' features are (nearly) linearly dependent, or the regularization captions do not cover them; try other targetTemplates or a larger ridge`);
    }
    throw e;
  }

  // Per matrix: ΔW_merged = R·S with R = [ΔW_i·C_iᵀ]_i (columns of concept i's rows).
  const names = [...new Set(concepts.flatMap((c) => [...c.deltas.keys()]))].sort();
  const deltas = new Map<string, Tensor<'f32'>>();
  const matrices: Record<string, MatrixResidual> = {};
  const sums = { tErr: 0, tRef: 0, rErr: 0, rRef: 0, ntErr: 0, nrErr: 0 };
  try {
    for (const name of names) {
      const w0 = W0s.get(name)!;
      const perConcept: Array<Mat | undefined> = [];
      for (const c of concepts) perConcept.push(c.deltas.has(name) ? await fromTensor(c.deltas.get(name)!) : undefined);
      const first = perConcept.find((x) => x !== undefined)!;
      const naive = mat(first.rows, first.cols);
      for (const x of perConcept) if (x !== undefined) for (let k = 0; k < naive.data.length; k++) naive.data[k] += x.data[k];
      if (!TEXT_INPUT.test(name)) {
        deltas.set(name, toTensor(naive, w0.shape));
        matrices[name] = { method: 'sum', targetRelative: NaN, regRelative: NaN, naive: { targetRelative: NaN, regRelative: NaN } };
        continue;
      }
      const W0 = await fromTensor(w0);
      const out = W0.rows;
      // R [out, T]: column t is ΔW_owner(t)·c_t.
      const R = mat(out, T);
      for (let t = 0; t < T; t++) {
        const dw = perConcept[targetOwner[t]];
        if (dw === undefined) continue;
        const c = targetRows[t];
        for (let a = 0; a < out; a++) {
          let s = 0;
          for (let b = 0; b < H; b++) s += dw.data[a * H + b] * c[b];
          R.data[a * T + t] = s;
        }
      }
      const merged = matmul(R, S);
      deltas.set(name, toTensor(merged, w0.shape));
      // V = W0·C_tgtᵀ + R; residuals of merged and naive ΔW.
      const W0C = matmul(W0, C, true);
      const residual = (dW: Mat): { err: number; ref: number } => {
        const got = matmul(dW, C, true);
        let err = 0;
        let ref = 0;
        for (let k = 0; k < got.data.length; k++) {
          err += (got.data[k] - R.data[k]) ** 2;
          ref += (W0C.data[k] + R.data[k]) ** 2;
        }
        return { err, ref };
      };
      const tm = residual(merged);
      const tn = residual(naive);
      const regRef = quadTrace(W0, M);
      const rm = quadTrace(merged, M);
      const rn = quadTrace(naive, M);
      const rel = (a: number, b: number): number => (b > 0 ? Math.sqrt(a / b) : 0);
      matrices[name] = {
        method: 'closed-form',
        targetRelative: rel(tm.err, tm.ref),
        regRelative: rel(rm, regRef),
        naive: { targetRelative: rel(tn.err, tn.ref), regRelative: rel(rn, regRef) },
      };
      sums.tErr += tm.err;
      sums.tRef += tm.ref;
      sums.ntErr += tn.err;
      sums.rErr += rm;
      sums.nrErr += rn;
      sums.rRef += regRef;
    }
  } catch (e) {
    for (const t of deltas.values()) t.dispose();
    throw e;
  }
  const rel = (a: number, b: number): number => (b > 0 ? Math.sqrt(a / b) : 0);
  const mode: CustomDiffusionMode = concepts.some((c) => c.mode === 'cross') ? 'cross' : 'kv';
  const mergedTokens: ConceptToken[] = [];
  for (const tk of tokens) {
    mergedTokens.push({ token: tk.token, classWord: tk.classWord, embedding: tensor((await tk.embedding.data()) as Float32Array), ...(tk.prompt === undefined ? {} : { prompt: tk.prompt }) });
  }
  return {
    concept: { method: 'custom-diffusion', mode, tokens: mergedTokens, deltas, baseFingerprint },
    residuals: {
      matrices,
      overall: {
        targetRelative: rel(sums.tErr, sums.tRef),
        regRelative: rel(sums.rErr, sums.rRef),
        naive: { targetRelative: rel(sums.ntErr, sums.tRef), regRelative: rel(sums.nrErr, sums.rRef) },
      },
    },
  };
}
