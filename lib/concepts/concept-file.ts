// Imprint's concept file: one .safetensors holding a Custom Diffusion concept
// (ΔW per trained matrix, full or as truncated-SVD factors, and one embedding
// row per token) with its metadata. Loading checks everything before any
// tensor is handed out, so a damaged or foreign file is a clear error naming
// the file and the entry, never deltas silently applied to the wrong place.
import { stat } from 'node:fs/promises';

import { ImprintError, invalidArgument } from '../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, type SafetensorsHeader } from '../io/safetensors.js';
import { Tensor } from '../tensor.js';
import { checkOptions, describe, isPlainObject } from '../validate.js';
import { addScaled, frobenius, fromTensor, matmul, toTensor } from './linalg.js';
import { checkTruncation, truncatedSvd, type TruncationOptions } from './svd.js';
import type { ConceptToken, ConceptWeights, CustomDiffusionMode } from './types.js';

export const CONCEPT_FORMAT = 'imprint-concept';
export const CONCEPT_VERSION = '1';

/** The weights each mode trains (diffusers UNet names); 'cross' may carry the out-projection bias too. */
const TRAINED: Record<CustomDiffusionMode, RegExp> = {
  kv: /\.attn2\.to_(k|v)\.weight$/,
  cross: /\.attn2\.(to_(q|k|v|out\.0)\.weight|to_out\.0\.bias)$/,
};

export interface SaveConceptOptions {
  /** Store each 2-D ΔW as truncated-SVD factors (an empty object: energy 0.99). */
  compress?: TruncationOptions;
}

export interface SaveConceptResult {
  path: string;
  /** The file's size. */
  bytes: number;
  /** Per compressed matrix, the rank kept. */
  ranks?: Record<string, number>;
  /** ‖ΔW − ΔŴ‖_F / ‖ΔW‖_F over all matrices together, measured on the stored (f32) factors. */
  relativeError?: number;
}

/** The file's metadata as loadConcept read it. */
export interface ConceptFileInfo {
  path: string;
  format: string;
  version: string;
  compression: 'none' | 'svd';
  ranks?: Record<string, number>;
  metadata: Record<string, string>;
}

export type LoadedConcept = ConceptWeights & { file: ConceptFileInfo };

/** A token's training prompt, when given, is a string that names the token as a word. */
export function checkTokenPrompt(fn: string, prompt: unknown, token: string, what: string): string | undefined {
  if (prompt === undefined) return undefined;
  if (typeof prompt !== 'string' || !prompt.split(/\s+/).includes(token)) {
    throw invalidArgument(`${fn}: ${what} must be a prompt that contains '${token}' as a word, got ${describe(prompt)}`);
  }
  return prompt;
}

/** The {token, classWord[, prompt]} entries stored in file metadata. */
export function tokenMetadata(tokens: readonly ConceptToken[]): Array<{ token: string; classWord: string; prompt?: string }> {
  return tokens.map((tk) => ({ token: tk.token, classWord: tk.classWord, ...(tk.prompt === undefined ? {} : { prompt: tk.prompt }) }));
}

/** Checks a ConceptWeights object in full (tokens, deltas, shapes); `fn` names the caller in errors. */
export function checkConcept(fn: string, concept: unknown, what = 'concept'): ConceptWeights {
  if (!isPlainObject(concept)) throw invalidArgument(`${fn}: ${what} must be a ConceptWeights object, got ${describe(concept)}`);
  const c = concept as unknown as ConceptWeights;
  if (c.method !== 'custom-diffusion') throw invalidArgument(`${fn}: ${what}.method must be 'custom-diffusion', got ${describe(c.method)}`);
  if (c.mode !== 'kv' && c.mode !== 'cross') throw invalidArgument(`${fn}: ${what}.mode must be 'kv' or 'cross', got ${describe(c.mode)}`);
  if (typeof c.baseFingerprint !== 'string') throw invalidArgument(`${fn}: ${what}.baseFingerprint must be a string, got ${describe(c.baseFingerprint)}`);
  if (!Array.isArray(c.tokens)) throw invalidArgument(`${fn}: ${what}.tokens must be an array, got ${describe(c.tokens)}`);
  const seen = new Set<string>();
  let hidden: number | undefined;
  c.tokens.forEach((tk: ConceptToken, i) => {
    if (!isPlainObject(tk)) throw invalidArgument(`${fn}: ${what}.tokens[${i}] must be an object, got ${describe(tk)}`);
    checkTokenName(fn, tk.token, `${what}.tokens[${i}].token`);
    if (seen.has(tk.token)) throw invalidArgument(`${fn}: ${what} defines token '${tk.token}' twice`);
    seen.add(tk.token);
    if (typeof tk.classWord !== 'string') throw invalidArgument(`${fn}: ${what}.tokens[${i}].classWord must be a string, got ${describe(tk.classWord)}`);
    checkTokenPrompt(fn, tk.prompt, tk.token, `${what}.tokens[${i}].prompt`);
    const e = tk.embedding;
    if (!(e instanceof Tensor) || e.disposed || e.ndim !== 1 || e.dtype !== 'f32') {
      throw invalidArgument(`${fn}: ${what}.tokens[${i}].embedding ('${tk.token}') must be a live f32 tensor [hidden], got ${e instanceof Tensor ? `${e.disposed ? 'a disposed tensor' : `${e.dtype}[${e.shape.join(', ')}]`}` : describe(e)}`);
    }
    if (hidden !== undefined && e.shape[0] !== hidden) throw invalidArgument(`${fn}: ${what}: token embeddings differ in width (${hidden} and ${e.shape[0]} for '${tk.token}')`);
    hidden = e.shape[0];
  });
  if (!(c.deltas instanceof Map) || c.deltas.size === 0) throw invalidArgument(`${fn}: ${what}.deltas must be a non-empty Map of weight name → ΔW, got ${describe(c.deltas)}`);
  for (const [name, d] of c.deltas) {
    if (typeof name !== 'string' || !TRAINED[c.mode].test(name)) {
      throw invalidArgument(`${fn}: ${what}.deltas has '${String(name)}', which mode '${c.mode}' does not train (expected ${c.mode === 'kv' ? 'attn2.to_k/to_v weights' : 'attn2 to_q/to_k/to_v/to_out.0 weights or to_out.0.bias'})`);
    }
    const bias = name.endsWith('.bias');
    if (!(d instanceof Tensor) || d.disposed || d.dtype !== 'f32' || d.ndim !== (bias ? 1 : 2)) {
      throw invalidArgument(`${fn}: ${what}.deltas '${name}' must be a live f32 ${bias ? '1-D' : '2-D'} tensor, got ${d instanceof Tensor ? `${d.disposed ? 'a disposed tensor' : `${d.dtype}[${d.shape.join(', ')}]`}` : describe(d)}`);
    }
  }
  return c;
}

/** Token strings become tensor and file names: printable, no whitespace or path separators. */
export function checkTokenName(fn: string, token: unknown, what: string): string {
  if (typeof token !== 'string' || token.length === 0 || token.length > 100 || /[\s/\\\u0000-\u001f]/.test(token) || token === '.' || token === '..') {
    throw invalidArgument(`${fn}: ${what} must be a non-empty token of at most 100 characters without whitespace or slashes, got ${describe(token)}`);
  }
  return token;
}

/**
 * Writes `concept` to `path` (atomically). Full ΔW by default; with
 * `compress`, each 2-D ΔW as `.u` [out, r] (U·diag(σ)) and `.v` [r, in]
 * factors, a 1-D bias delta in full.
 */
export async function saveConcept(path: string, concept: ConceptWeights, options?: SaveConceptOptions): Promise<SaveConceptResult> {
  const fn = 'saveConcept';
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument(`${fn}: path must be a non-empty string, got ${describe(path)}`);
  const o = checkOptions(fn, options, ['compress']);
  let compress: TruncationOptions | undefined;
  if (o.compress !== undefined) {
    if (!isPlainObject(o.compress)) throw invalidArgument(`${fn}: compress must be an object ({ energy?, rank? }), got ${describe(o.compress)}`);
    checkOptions(`${fn}: compress`, o.compress, ['energy', 'rank']);
    compress = checkTruncation(fn, o.compress as TruncationOptions);
  }
  const c = checkConcept(fn, concept);
  const tensors = new Map<string, Tensor>();
  const made: Tensor[] = [];
  const ranks: Record<string, number> = {};
  let errorSq = 0;
  let totalSq = 0;
  try {
    for (const tk of c.tokens) tensors.set(`token/${tk.token}`, await onCpu(tk.embedding, made));
    for (const [name, d] of c.deltas) {
      if (compress === undefined || d.ndim !== 2) {
        tensors.set(`delta/${name}`, await onCpu(d, made));
        continue;
      }
      const x = await fromTensor(d);
      const svd = truncatedSvd(x, compress);
      const u = toTensor(svd.u);
      const v = toTensor(svd.v);
      made.push(u, v);
      tensors.set(`delta/${name}.u`, u);
      tensors.set(`delta/${name}.v`, v);
      ranks[name] = svd.rank;
      // The error of what is stored: the f32 factors, multiplied out in float64.
      const approx = matmul(await fromTensor(u), await fromTensor(v));
      errorSq += frobenius(addScaled(x, approx, -1)) ** 2;
      totalSq += frobenius(x) ** 2;
    }
    const metadata: Record<string, string> = {
      format: CONCEPT_FORMAT,
      version: CONCEPT_VERSION,
      method: c.method,
      mode: c.mode,
      tokens: JSON.stringify(tokenMetadata(c.tokens)),
      base_fingerprint: c.baseFingerprint,
      compression: compress === undefined ? 'none' : 'svd',
    };
    if (compress !== undefined) metadata.ranks = JSON.stringify(ranks);
    await saveSafetensors(path, tensors, metadata);
  } finally {
    for (const t of made) t.dispose();
  }
  const bytes = (await stat(path)).size;
  if (compress === undefined) return { path, bytes };
  return { path, bytes, ranks, relativeError: totalSq === 0 ? 0 : Math.sqrt(errorSq / totalSq) };
}

async function onCpu(t: Tensor, made: Tensor[]): Promise<Tensor> {
  if (t.device === 'cpu') return t;
  const c = await t.to('cpu');
  made.push(c);
  return c;
}

function parseJson(path: string, key: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidArgument(`${path}: metadata '${key}' is not valid JSON (${(e as Error).message})`);
  }
}

/** What the header promises, validated; returns the tokens, the delta layout and the ranks. */
function readLayout(path: string, header: SafetensorsHeader) {
  const meta = header.metadata;
  const need = (key: string): string => {
    const v = meta[key];
    if (v === undefined) throw invalidArgument(`${path}: metadata '${key}' is missing (not an Imprint concept file?)`);
    return v;
  };
  if (meta.format !== CONCEPT_FORMAT) throw invalidArgument(`${path}: not an Imprint concept file (metadata format is ${meta.format === undefined ? 'missing' : `'${meta.format}'`}, expected '${CONCEPT_FORMAT}')`);
  if (need('version') !== CONCEPT_VERSION) throw invalidArgument(`${path}: concept file version '${meta.version}' is not supported (this Imprint reads version ${CONCEPT_VERSION})`);
  if (need('method') !== 'custom-diffusion') throw invalidArgument(`${path}: metadata method '${meta.method}' is not supported (expected 'custom-diffusion')`);
  const mode = need('mode');
  if (mode !== 'kv' && mode !== 'cross') throw invalidArgument(`${path}: metadata mode must be 'kv' or 'cross', got '${mode}'`);
  const compression = need('compression');
  if (compression !== 'none' && compression !== 'svd') throw invalidArgument(`${path}: metadata compression must be 'none' or 'svd', got '${compression}'`);
  const baseFingerprint = need('base_fingerprint');

  const rawTokens = parseJson(path, 'tokens', need('tokens'));
  if (!Array.isArray(rawTokens)) throw invalidArgument(`${path}: metadata 'tokens' must be a JSON list of {token, classWord}`);
  const tokens = rawTokens.map((e: unknown, i) => {
    if (!isPlainObject(e) || typeof e.classWord !== 'string') throw invalidArgument(`${path}: metadata tokens[${i}] must be {token, classWord} with string values`);
    const token = checkTokenName(path, e.token, `metadata tokens[${i}].token`);
    const prompt = checkTokenPrompt(path, e.prompt, token, `metadata tokens[${i}].prompt`);
    return { token, classWord: e.classWord, ...(prompt === undefined ? {} : { prompt }) };
  });
  if (new Set(tokens.map((tk) => tk.token)).size !== tokens.length) throw invalidArgument(`${path}: metadata 'tokens' lists a token twice`);

  let ranks: Record<string, number> | undefined;
  if (compression === 'svd') {
    const raw = parseJson(path, 'ranks', need('ranks'));
    if (!isPlainObject(raw)) throw invalidArgument(`${path}: metadata 'ranks' must be a JSON object of weight name → rank`);
    ranks = Object.create(null) as Record<string, number>;
    for (const [k, r] of Object.entries(raw)) {
      if (typeof r !== 'number' || !Number.isSafeInteger(r) || r < 1) throw invalidArgument(`${path}: metadata ranks['${k}'] must be an integer ≥ 1, got ${describe(r)}`);
      ranks[k] = r;
    }
  }

  const entries = header.tensors;
  const float = (name: string): number[] => {
    const e = entries[name];
    if (e === undefined) return [];
    if (!['F32', 'F16', 'BF16', 'F64'].includes(e.dtype)) throw invalidArgument(`${path}: entry '${name}' has dtype ${e.dtype}, expected a float type`);
    return e.shape;
  };
  // Tokens: exactly those the metadata lists, all rows of one width.
  let hidden: number | undefined;
  for (const tk of tokens) {
    const name = `token/${tk.token}`;
    if (entries[name] === undefined) throw invalidArgument(`${path}: entry '${name}' is missing (metadata lists token '${tk.token}')`);
    const s = float(name);
    if (s.length !== 1 || s[0] < 1) throw invalidArgument(`${path}: entry '${name}' must be 1-D [hidden], got [${s.join(', ')}]`);
    if (hidden !== undefined && s[0] !== hidden) throw invalidArgument(`${path}: entry '${name}' has width ${s[0]} but other token rows have ${hidden}`);
    hidden = s[0];
  }
  const full = new Map<string, string>();
  const factored = new Map<string, { u: string; v: string; shape: [number, number]; rank: number }>();
  for (const name of Object.keys(entries)) {
    if (name.startsWith('token/')) {
      if (!tokens.some((tk) => `token/${tk.token}` === name)) throw invalidArgument(`${path}: entry '${name}' is a token the metadata does not list`);
      continue;
    }
    if (!name.startsWith('delta/')) throw invalidArgument(`${path}: unexpected entry '${name}' (entries are delta/<weight> or token/<token>)`);
    const rest = name.slice('delta/'.length);
    const factor = /\.(u|v)$/.exec(rest);
    const weight = factor ? rest.slice(0, -2) : rest;
    if (!TRAINED[mode].test(weight)) throw invalidArgument(`${path}: entry '${name}' is not a weight that mode '${mode}' trains`);
    if (!factor) {
      if (full.has(weight) || factored.has(weight)) throw invalidArgument(`${path}: weight '${weight}' is stored twice`);
      const s = float(name);
      const bias = weight.endsWith('.bias');
      if (s.length !== (bias ? 1 : 2) || s.some((x) => x < 1)) throw invalidArgument(`${path}: entry '${name}' must be ${bias ? '1-D' : '2-D'}, got [${s.join(', ')}]`);
      if (compression === 'svd' && !bias) throw invalidArgument(`${path}: entry '${name}' is a full matrix in an SVD-compressed file (expected '${name}.u' and '${name}.v')`);
      full.set(weight, name);
      continue;
    }
    if (compression !== 'svd') throw invalidArgument(`${path}: entry '${name}' is an SVD factor but the file's compression is 'none'`);
    if (factored.has(weight) || full.has(weight)) {
      if (factor[1] === 'v') continue; // the pair was checked from its .u
      throw invalidArgument(`${path}: weight '${weight}' is stored twice`);
    }
    const uName = `delta/${weight}.u`;
    const vName = `delta/${weight}.v`;
    if (entries[uName] === undefined) throw invalidArgument(`${path}: entry '${uName}' is missing (its pair '${vName}' is present)`);
    if (entries[vName] === undefined) throw invalidArgument(`${path}: entry '${vName}' is missing (its pair '${uName}' is present)`);
    const su = float(uName);
    const sv = float(vName);
    if (su.length !== 2 || sv.length !== 2 || su[1] !== sv[0] || su.some((x) => x < 1) || sv.some((x) => x < 1)) {
      throw invalidArgument(`${path}: '${uName}' [${su.join(', ')}] and '${vName}' [${sv.join(', ')}] must be [out, r] and [r, in]`);
    }
    const rank = ranks![weight];
    if (rank !== su[1]) throw invalidArgument(`${path}: metadata ranks['${weight}'] is ${rank ?? 'missing'} but the factors have rank ${su[1]}`);
    factored.set(weight, { u: uName, v: vName, shape: [su[0], sv[1]], rank });
  }
  if (full.size + factored.size === 0) throw invalidArgument(`${path}: the file holds no deltas`);
  for (const k of Object.keys(ranks ?? {})) if (!factored.has(k)) throw invalidArgument(`${path}: metadata ranks names '${k}', which has no factors in the file`);
  return { mode: mode as CustomDiffusionMode, tokens, baseFingerprint, compression: compression as 'none' | 'svd', ranks, full, factored, meta };
}

/**
 * Reads a concept file written by saveConcept, checking it in full; ΔW of
 * compressed matrices is rebuilt as u·v. The caller owns (and disposes) the
 * returned tensors.
 */
export async function loadConcept(path: string): Promise<LoadedConcept> {
  const fn = 'loadConcept';
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument(`${fn}: path must be a non-empty string, got ${describe(path)}`);
  let header: SafetensorsHeader;
  try {
    header = readSafetensorsHeader(path);
  } catch (e) {
    if (e instanceof ImprintError) throw new ImprintError(`${fn}: ${path}: ${e.message}`, e.code);
    throw e;
  }
  const layout = readLayout(path, header);
  let loaded: Map<string, Tensor>;
  try {
    loaded = await loadSafetensors(path, { dtype: 'f32' });
  } catch (e) {
    if (e instanceof ImprintError) throw new ImprintError(`${fn}: ${path}: ${e.message}`, e.code);
    throw e;
  }
  const deltas = new Map<string, Tensor<'f32'>>();
  try {
    for (const [weight, name] of layout.full) deltas.set(weight, loaded.get(name) as Tensor<'f32'>);
    for (const [weight, f] of layout.factored) {
      const product = matmul(await fromTensor(loaded.get(f.u)!), await fromTensor(loaded.get(f.v)!));
      for (const x of product.data) if (!Number.isFinite(x)) throw invalidArgument(`${path}: the factors of '${weight}' hold non-finite values`);
      deltas.set(weight, toTensor(product));
    }
    for (const [weight, d] of deltas) {
      if (!(d.dataSync() as Float32Array).every(Number.isFinite)) throw invalidArgument(`${path}: entry 'delta/${weight}' holds non-finite values`);
    }
    for (const tk of layout.tokens) {
      if (!(loaded.get(`token/${tk.token}`)!.dataSync() as Float32Array).every(Number.isFinite)) throw invalidArgument(`${path}: entry 'token/${tk.token}' holds non-finite values`);
    }
  } catch (e) {
    for (const t of [...loaded.values(), ...deltas.values()]) if (!t.disposed) t.dispose();
    throw e;
  }
  for (const f of layout.factored.values()) {
    loaded.get(f.u)!.dispose();
    loaded.get(f.v)!.dispose();
  }
  const tokens = layout.tokens.map((tk) => ({ ...tk, embedding: loaded.get(`token/${tk.token}`) as Tensor<'f32'> }));
  return {
    method: 'custom-diffusion',
    mode: layout.mode,
    tokens,
    deltas,
    baseFingerprint: layout.baseFingerprint,
    file: {
      path,
      format: CONCEPT_FORMAT,
      version: CONCEPT_VERSION,
      compression: layout.compression,
      ...(layout.ranks === undefined ? {} : { ranks: { ...layout.ranks } }),
      metadata: { ...layout.meta },
    },
  };
}

/** Frees a concept's tensors (its deltas and token rows). */
export function disposeConcept(concept: ConceptWeights): void {
  for (const d of concept.deltas.values()) if (!d.disposed) d.dispose();
  for (const tk of concept.tokens) if (!tk.embedding.disposed) tk.embedding.dispose();
}
