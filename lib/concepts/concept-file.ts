// Imprint's concept file: one .safetensors holding a concept of any method
// (token embedding rows; dense ΔW per weight, full or as truncated-SVD
// factors; LoRA factors; sparse neuron index sets) with its metadata.
// Version 2; version 1 files (Custom Diffusion only) still load. Loading checks everything before any
// tensor is handed out, so a damaged or foreign file is a clear error naming
// the file and the entry, never deltas silently applied to the wrong place.
import { stat } from 'node:fs/promises';

import { ImprintError, invalidArgument } from '../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors, type SafetensorsHeader } from '../io/safetensors.js';
import { tensor } from '../creation.js';
import { Tensor } from '../tensor.js';
import { checkOptions, describe, isPlainObject } from '../validate.js';
import { addScaled, frobenius, fromTensor, matmul, toTensor } from './linalg.js';
import { checkTruncation, truncatedSvd, type TruncationOptions } from './svd.js';
import { CONCEPT_METHODS, type ConceptMethod, type ConceptToken, type ConceptWeights, type CustomDiffusionConcept, type CustomDiffusionMode, type LoraFactors } from './types.js';

export const CONCEPT_FORMAT = 'imprint-concept';
export const CONCEPT_VERSION = '2';
/** Versions loadConcept reads: 1 (Custom Diffusion, before the other methods) and 2. */
const READABLE_VERSIONS = ['1', CONCEPT_VERSION];
/**
 * How neuron index sets are stored: 'delta-varint' (written): the gaps
 * between sorted flat indices (the first index itself) as unsigned LEB128
 * bytes, a U8 entry, about 1-2 bytes a neuron; 'i32' (read): the indices as I32.
 */
const NEURON_ENCODING = 'delta-varint';
const NEURON_ENCODINGS = ['delta-varint', 'i32'];

/** Sorted indices → LEB128 bytes of their gaps (the first gap from 0). */
export function encodeNeuronIndices(idx: Int32Array): Uint8Array {
  const out: number[] = [];
  let prev = 0;
  for (const v of idx) {
    let gap = v - prev;
    prev = v;
    while (gap >= 0x80) out.push((gap & 0x7f) | 0x80), (gap >>>= 7);
    out.push(gap);
  }
  return Uint8Array.from(out);
}

/** The inverse of encodeNeuronIndices; a cut-short or oversized stream is an error naming `what`. */
export function decodeNeuronIndices(what: string, bytes: Uint8Array): Int32Array {
  const out: number[] = [];
  let prev = 0;
  for (let i = 0; i < bytes.length;) {
    let gap = 0;
    let shift = 0;
    for (;;) {
      if (i >= bytes.length) throw invalidArgument(`${what}: the index stream is cut short (a varint runs past the last byte)`);
      const b = bytes[i++];
      gap += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) break;
      if (shift > 35) throw invalidArgument(`${what}: a varint at byte ${i} is longer than 5 bytes`);
    }
    prev += gap;
    if (prev > 0x7fffffff) throw invalidArgument(`${what}: index ${prev} (neuron ${out.length}) is past 2^31 - 1`);
    out.push(prev);
  }
  return Int32Array.from(out);
}
/** A weight or bias of the UNet, by diffusers name (what non-Custom-Diffusion parts may target). */
const UNET_PARAM = /^[A-Za-z0-9_.]+\.(weight|bias)$/;

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

export interface LoadConceptOptions {
  /** Refuse a file of another method. */
  method?: ConceptMethod;
}

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

const tensorDesc = (t: unknown): string => (t instanceof Tensor ? (t.disposed ? 'a disposed tensor' : `${t.dtype}[${t.shape.join(', ')}]`) : describe(t));

/** Checks a ConceptWeights object in full (method, tokens, and each part it holds); `fn` names the caller in errors. */
export function checkConcept(fn: string, concept: unknown, what = 'concept'): ConceptWeights {
  if (!isPlainObject(concept)) throw invalidArgument(`${fn}: ${what} must be a ConceptWeights object, got ${describe(concept)}`);
  const c = concept as unknown as ConceptWeights;
  if (!CONCEPT_METHODS.includes(c.method)) throw invalidArgument(`${fn}: ${what}.method must be one of ${CONCEPT_METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(c.method)}`);
  const cd = c.method === 'custom-diffusion';
  if (cd && c.mode !== 'kv' && c.mode !== 'cross') throw invalidArgument(`${fn}: ${what}.mode must be 'kv' or 'cross', got ${describe(c.mode)}`);
  if (typeof c.baseFingerprint !== 'string') throw invalidArgument(`${fn}: ${what}.baseFingerprint must be a string, got ${describe(c.baseFingerprint)}`);
  if (!Array.isArray(c.tokens)) throw invalidArgument(`${fn}: ${what}.tokens must be an array, got ${describe(c.tokens)}`);
  if (c.settings !== undefined && (!isPlainObject(c.settings) || Object.values(c.settings).some((v) => typeof v !== 'string'))) {
    throw invalidArgument(`${fn}: ${what}.settings must be an object of strings, got ${describe(c.settings)}`);
  }
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
      throw invalidArgument(`${fn}: ${what}.tokens[${i}].embedding ('${tk.token}') must be a live f32 tensor [hidden], got ${tensorDesc(e)}`);
    }
    if (hidden !== undefined && e.shape[0] !== hidden) throw invalidArgument(`${fn}: ${what}: token embeddings differ in width (${hidden} and ${e.shape[0]} for '${tk.token}')`);
    hidden = e.shape[0];
  });
  const mapOf = (key: 'deltas' | 'lora' | 'neurons', required: boolean, kind: string): void => {
    const m = c[key];
    if (m === undefined && !required) return;
    if (!(m instanceof Map) || m.size === 0) throw invalidArgument(`${fn}: ${what}.${key} must be a non-empty Map of weight name → ${kind}, got ${describe(m)}`);
  };
  mapOf('deltas', cd, 'ΔW');
  mapOf('lora', c.method === 'tuning-encoder', '{ a, b, scale }');
  mapOf('neurons', c.method === 'cones', 'sorted Int32Array of flat indices');
  for (const [name, d] of c.deltas ?? []) {
    if (cd ? typeof name !== 'string' || !TRAINED[(c as CustomDiffusionConcept).mode].test(name) : !UNET_PARAM.test(name)) {
      const expected = !cd ? 'a UNet weight or bias name' : c.mode === 'kv' ? 'attn2.to_k/to_v weights' : 'attn2 to_q/to_k/to_v/to_out.0 weights or to_out.0.bias';
      throw invalidArgument(`${fn}: ${what}.deltas has '${String(name)}', which ${cd ? `mode '${c.mode}' does not train` : 'is not a UNet parameter name'} (expected ${expected})`);
    }
    const bias = name.endsWith('.bias');
    if (!(d instanceof Tensor) || d.disposed || d.dtype !== 'f32' || d.ndim !== (bias ? 1 : 2)) {
      throw invalidArgument(`${fn}: ${what}.deltas '${name}' must be a live f32 ${bias ? '1-D' : '2-D'} tensor, got ${tensorDesc(d)}`);
    }
  }
  for (const [name, f] of c.lora ?? []) {
    if (typeof name !== 'string' || !/\.weight$/.test(name)) throw invalidArgument(`${fn}: ${what}.lora has '${String(name)}', expected a UNet weight name`);
    if (!isPlainObject(f)) throw invalidArgument(`${fn}: ${what}.lora '${name}' must be { a, b, scale }, got ${describe(f)}`);
    const { a, b, scale } = f as LoraFactors;
    const live = (t: unknown): boolean => t instanceof Tensor && !t.disposed && t.dtype === 'f32' && t.ndim === 2;
    if (!live(a) || !live(b) || a.shape[0] !== b.shape[1]) {
      throw invalidArgument(`${fn}: ${what}.lora '${name}' must have live f32 a [rank, in] and b [out, rank] of one rank, got a ${tensorDesc(a)} and b ${tensorDesc(b)}`);
    }
    if (typeof scale !== 'number' || !Number.isFinite(scale)) throw invalidArgument(`${fn}: ${what}.lora '${name}'.scale must be a finite number, got ${describe(scale)}`);
  }
  for (const [name, idx] of c.neurons ?? []) {
    if (typeof name !== 'string' || !UNET_PARAM.test(name)) throw invalidArgument(`${fn}: ${what}.neurons has '${String(name)}', expected a UNet weight name`);
    checkNeuronIndices(`${fn}: ${what}.neurons '${name}'`, idx);
  }
  return c;
}

/** A neuron index set: an Int32Array of strictly ascending, non-negative flat indices. */
export function checkNeuronIndices(what: string, idx: unknown): Int32Array {
  if (!(idx instanceof Int32Array) || idx.length === 0) throw invalidArgument(`${what} must be a non-empty Int32Array of flat indices, got ${describe(idx)}`);
  for (let k = 0; k < idx.length; k++) {
    if (idx[k] < 0) throw invalidArgument(`${what}: index ${idx[k]} at position ${k} is negative`);
    if (k > 0 && idx[k] <= idx[k - 1]) throw invalidArgument(`${what}: indices must be strictly ascending (no duplicates), but position ${k} holds ${idx[k]} after ${idx[k - 1]}`);
  }
  return idx;
}

/** `concept` as a Custom Diffusion concept, or an error naming its method (for what only Custom Diffusion has: the merge, the diffusers format). */
export function checkCustomDiffusion(fn: string, concept: unknown, what = 'concept'): CustomDiffusionConcept {
  const c = checkConcept(fn, concept, what);
  if (c.method !== 'custom-diffusion') throw invalidArgument(`${fn}: ${what} is a '${c.method}' concept; this works on Custom Diffusion concepts only`);
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
    const loraScales: Record<string, number> = {};
    for (const [name, f] of c.lora ?? []) {
      tensors.set(`lora/${name}.a`, await onCpu(f.a, made));
      tensors.set(`lora/${name}.b`, await onCpu(f.b, made));
      loraScales[name] = f.scale;
    }
    for (const [name, idx] of c.neurons ?? []) {
      const bytes = encodeNeuronIndices(idx);
      const t = tensor(bytes, { shape: [bytes.length], dtype: 'u8' });
      made.push(t);
      tensors.set(`neurons/${name}`, t);
    }
    for (const [name, d] of c.deltas ?? []) {
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
      ...(c.method === 'custom-diffusion' ? { mode: c.mode } : {}),
      tokens: JSON.stringify(tokenMetadata(c.tokens)),
      base_fingerprint: c.baseFingerprint,
      compression: compress === undefined ? 'none' : 'svd',
      ...(c.lora ? { lora_scales: JSON.stringify(loraScales) } : {}),
      ...(c.neurons ? { neuron_encoding: NEURON_ENCODING } : {}),
      ...(c.settings ? { settings: JSON.stringify(c.settings) } : {}),
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
  const version = need('version');
  if (!READABLE_VERSIONS.includes(version)) throw invalidArgument(`${path}: concept file version '${version}' is not supported (this Imprint reads versions ${READABLE_VERSIONS.join(' and ')})`);
  const method = need('method') as ConceptMethod;
  const methods: readonly string[] = version === '1' ? ['custom-diffusion'] : CONCEPT_METHODS;
  if (!methods.includes(method)) throw invalidArgument(`${path}: metadata method '${method}' is not supported by version ${version} files (expected ${methods.map((m) => `'${m}'`).join(', ')})`);
  const cd = method === 'custom-diffusion';
  const mode = cd ? need('mode') : undefined;
  if (cd && mode !== 'kv' && mode !== 'cross') throw invalidArgument(`${path}: metadata mode must be 'kv' or 'cross', got '${mode}'`);
  let settings: Record<string, string> | undefined;
  if (meta.settings !== undefined) {
    const raw = parseJson(path, 'settings', meta.settings);
    if (!isPlainObject(raw) || Object.values(raw).some((v) => typeof v !== 'string')) throw invalidArgument(`${path}: metadata 'settings' must be a JSON object of strings`);
    settings = raw as Record<string, string>;
  }
  let loraScales: Record<string, unknown> | undefined;
  if (meta.lora_scales !== undefined) {
    const raw = parseJson(path, 'lora_scales', meta.lora_scales);
    if (!isPlainObject(raw)) throw invalidArgument(`${path}: metadata 'lora_scales' must be a JSON object of weight name → scale`);
    loraScales = raw;
  }
  if (meta.neuron_encoding !== undefined && !NEURON_ENCODINGS.includes(meta.neuron_encoding)) {
    throw invalidArgument(`${path}: metadata neuron_encoding '${meta.neuron_encoding}' is not supported (this Imprint reads ${NEURON_ENCODINGS.map((x) => `'${x}'`).join(' and ')})`);
  }
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
  const lora = new Map<string, { a: string; b: string; scale: number }>();
  const neurons = new Map<string, string>();
  const factored = new Map<string, { u: string; v: string; shape: [number, number]; rank: number }>();
  for (const name of Object.keys(entries)) {
    if (name.startsWith('token/')) {
      if (!tokens.some((tk) => `token/${tk.token}` === name)) throw invalidArgument(`${path}: entry '${name}' is a token the metadata does not list`);
      continue;
    }
    if (name.startsWith('lora/') && version !== '1') {
      const m = /^lora\/(.+)\.(a|b)$/.exec(name);
      if (!m || !/\.weight$/.test(m[1])) throw invalidArgument(`${path}: entry '${name}' must be lora/<UNet weight>.a or .b`);
      const weight = m[1];
      if (lora.has(weight)) continue;
      const [aName, bName] = [`lora/${weight}.a`, `lora/${weight}.b`];
      for (const [x, y] of [[aName, bName], [bName, aName]]) if (entries[x] === undefined) throw invalidArgument(`${path}: entry '${x}' is missing (its pair '${y}' is present)`);
      const sa = float(aName);
      const sb = float(bName);
      if (sa.length !== 2 || sb.length !== 2 || sa[0] !== sb[1] || sa.some((x) => x < 1) || sb.some((x) => x < 1)) {
        throw invalidArgument(`${path}: '${aName}' [${sa.join(', ')}] and '${bName}' [${sb.join(', ')}] must be [rank, in] and [out, rank]`);
      }
      const scale = loraScales?.[weight];
      if (typeof scale !== 'number' || !Number.isFinite(scale)) throw invalidArgument(`${path}: metadata lora_scales['${weight}'] must be a finite number, got ${describe(scale)}`);
      lora.set(weight, { a: aName, b: bName, scale });
      continue;
    }
    if (name.startsWith('neurons/') && version !== '1') {
      const weight = name.slice('neurons/'.length);
      if (!UNET_PARAM.test(weight)) throw invalidArgument(`${path}: entry '${name}' must be neurons/<UNet weight>`);
      const e = entries[name];
      if (meta.neuron_encoding === undefined) throw invalidArgument(`${path}: metadata 'neuron_encoding' is missing (the file holds neuron sets)`);
      const want = meta.neuron_encoding === 'i32' ? 'I32' : 'U8';
      if (e.dtype !== want || e.shape.length !== 1 || e.shape[0] < 1) {
        throw invalidArgument(`${path}: entry '${name}' must be a non-empty 1-D ${want} list (neuron_encoding '${meta.neuron_encoding}'), got ${e.dtype}[${e.shape.join(', ')}]`);
      }
      neurons.set(weight, name);
      continue;
    }
    if (!name.startsWith('delta/')) throw invalidArgument(`${path}: unexpected entry '${name}' (entries are token/<token>, delta/<weight>${version === '1' ? '' : ', lora/<weight>.a|.b or neurons/<weight>'})`);
    const rest = name.slice('delta/'.length);
    const factor = /\.(u|v)$/.exec(rest);
    const weight = factor ? rest.slice(0, -2) : rest;
    if (cd ? !TRAINED[mode as CustomDiffusionMode].test(weight) : !UNET_PARAM.test(weight)) {
      throw invalidArgument(`${path}: entry '${name}' is not ${cd ? `a weight that mode '${mode}' trains` : 'a UNet parameter'}`);
    }
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
  if (cd && full.size + factored.size === 0) throw invalidArgument(`${path}: the file holds no deltas`);
  if (method === 'cones' && neurons.size === 0) throw invalidArgument(`${path}: the file holds no neuron sets`);
  if (method === 'tuning-encoder' && lora.size === 0) throw invalidArgument(`${path}: the file holds no LoRA factors`);
  for (const k of Object.keys(loraScales ?? {})) if (!lora.has(k)) throw invalidArgument(`${path}: metadata lora_scales names '${k}', which has no factors in the file`);
  for (const k of Object.keys(ranks ?? {})) if (!factored.has(k)) throw invalidArgument(`${path}: metadata ranks names '${k}', which has no factors in the file`);
  return { method, version, mode: mode as CustomDiffusionMode | undefined, tokens, baseFingerprint, compression: compression as 'none' | 'svd', ranks, full, factored, lora, neurons, settings, meta };
}

/**
 * Reads a concept file written by saveConcept, checking it in full; ΔW of
 * compressed matrices is rebuilt as u·v. The caller owns (and disposes) the
 * returned tensors.
 */
export async function loadConcept<M extends ConceptMethod>(path: string, options: { method: M }): Promise<Extract<ConceptWeights, { method: M }> & { file: ConceptFileInfo }>;
export async function loadConcept(path: string, options?: LoadConceptOptions): Promise<LoadedConcept>;
export async function loadConcept(path: string, options?: LoadConceptOptions): Promise<LoadedConcept> {
  const fn = 'loadConcept';
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument(`${fn}: path must be a non-empty string, got ${describe(path)}`);
  const o = checkOptions(fn, options, ['method']);
  if (o.method !== undefined && !CONCEPT_METHODS.includes(o.method as ConceptMethod)) throw invalidArgument(`${fn}: method must be one of ${CONCEPT_METHODS.map((m) => `'${m}'`).join(', ')}, got ${describe(o.method)}`);
  // The reader's messages name the file already: prefix only the function.
  const named = (e: unknown): unknown => (e instanceof ImprintError ? new ImprintError(`${fn}: ${e.message.includes(path) ? '' : `${path}: `}${e.message}`, e.code) : e);
  let header: SafetensorsHeader;
  try {
    header = readSafetensorsHeader(path);
  } catch (e) {
    throw named(e);
  }
  const layout = readLayout(path, header);
  if (o.method !== undefined && layout.method !== o.method) throw invalidArgument(`${fn}: ${path} holds a '${layout.method}' concept, expected '${o.method}'`);
  const neuronNames = [...layout.neurons.values()];
  const floatNames = Object.keys(header.tensors).filter((n) => !n.startsWith('neurons/'));
  const loaded = new Map<string, Tensor>();
  try {
    if (floatNames.length > 0) for (const [n, t] of await loadSafetensors(path, { names: floatNames, dtype: 'f32' })) loaded.set(n, t);
    if (neuronNames.length > 0) for (const [n, t] of await loadSafetensors(path, { names: neuronNames })) loaded.set(n, t);
  } catch (e) {
    for (const t of loaded.values()) t.dispose();
    throw named(e);
  }
  const deltas = new Map<string, Tensor<'f32'>>();
  const lora = new Map<string, LoraFactors>();
  const neurons = new Map<string, Int32Array>();
  const finite = (name: string): Tensor<'f32'> => {
    const t = loaded.get(name) as Tensor<'f32'>;
    if (!(t.dataSync() as Float32Array).every(Number.isFinite)) throw invalidArgument(`${path}: entry '${name}' holds non-finite values`);
    return t;
  };
  try {
    for (const [weight, name] of layout.full) deltas.set(weight, finite(name));
    for (const [weight, f] of layout.factored) {
      const product = matmul(await fromTensor(loaded.get(f.u)!), await fromTensor(loaded.get(f.v)!));
      for (const x of product.data) if (!Number.isFinite(x)) throw invalidArgument(`${path}: the factors of '${weight}' hold non-finite values`);
      deltas.set(weight, toTensor(product));
    }
    for (const [weight, f] of layout.lora) lora.set(weight, { a: finite(f.a), b: finite(f.b), scale: f.scale });
    for (const [weight, name] of layout.neurons) {
      const what = `${path}: entry '${name}'`;
      const raw = loaded.get(name)!.dataSync();
      neurons.set(weight, checkNeuronIndices(what, layout.meta.neuron_encoding === 'i32' ? Int32Array.from(raw as Int32Array) : decodeNeuronIndices(what, raw as Uint8Array)));
    }
    for (const tk of layout.tokens) finite(`token/${tk.token}`);
  } catch (e) {
    for (const t of [...loaded.values(), ...deltas.values()]) if (!t.disposed) t.dispose();
    throw e;
  }
  for (const f of layout.factored.values()) {
    loaded.get(f.u)!.dispose();
    loaded.get(f.v)!.dispose();
  }
  for (const name of layout.neurons.values()) loaded.get(name)!.dispose();
  const tokens = layout.tokens.map((tk) => ({ ...tk, embedding: loaded.get(`token/${tk.token}`) as Tensor<'f32'> }));
  const common = {
    tokens,
    baseFingerprint: layout.baseFingerprint,
    ...(layout.settings ? { settings: layout.settings } : {}),
    ...(deltas.size > 0 ? { deltas } : {}),
    ...(lora.size > 0 ? { lora } : {}),
    ...(neurons.size > 0 ? { neurons } : {}),
    file: {
      path,
      format: CONCEPT_FORMAT,
      version: layout.version,
      compression: layout.compression,
      ...(layout.ranks === undefined ? {} : { ranks: { ...layout.ranks } }),
      metadata: { ...layout.meta },
    },
  };
  if (layout.method === 'custom-diffusion') return { ...common, method: 'custom-diffusion', mode: layout.mode!, deltas };
  if (layout.method === 'cones') return { ...common, method: 'cones', neurons };
  return { ...common, method: 'tuning-encoder', lora };
}

/** Frees a concept's tensors (its token rows, deltas and LoRA factors). */
export function disposeConcept(concept: ConceptWeights): void {
  const all = [...(concept.deltas?.values() ?? []), ...[...(concept.lora?.values() ?? [])].flatMap((f) => [f.a, f.b]), ...concept.tokens.map((tk) => tk.embedding)];
  for (const t of all) if (!t.disposed) t.dispose();
}
