// Interop with diffusers' Custom Diffusion files, both ways. diffusers stores
// FULL trained weights (W0 + ΔW) under its attention processors' names,
// `<attn2 path>.processor.to_k_custom_diffusion.weight` (the processor's own
// nn.Linear layers, read by UNet2DConditionModel.load_attn_procs), and each
// token as `<token>.safetensors` = {"<token>": [hidden]}, the file layout
// load_textual_inversion reads. A small imprint-concept.json beside them keeps
// what diffusers has no place for (class words, mode, base fingerprint).
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';

import { ImprintError, invalidArgument } from '../../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../../io/safetensors.js';
import { Tensor } from '../../tensor.js';
import { checkOptions, checkPath, describe, isPlainObject } from '../../validate.js';
import { checkCustomDiffusion, checkTokenName, checkTokenPrompt, tokenMetadata } from '../../concepts/concept-file.js';
import { modelFingerprint } from '../../concepts/fingerprint.js';
import { addScaled, fromTensor, toTensor } from '../../concepts/linalg.js';
import type { ConceptToken, ConceptWeights, CustomDiffusionConcept, CustomDiffusionMode } from '../../concepts/types.js';

export const DIFFUSERS_WEIGHTS_FILE = 'pytorch_custom_diffusion_weights.safetensors';
export const SIDECAR_FILE = 'imprint-concept.json';

/** UNet parameter suffix → processor parameter suffix, per mode. */
const KV_KEYS: Array<[string, string]> = [
  ['to_k.weight', 'processor.to_k_custom_diffusion.weight'],
  ['to_v.weight', 'processor.to_v_custom_diffusion.weight'],
];
const CROSS_KEYS: Array<[string, string]> = [
  ...KV_KEYS,
  ['to_q.weight', 'processor.to_q_custom_diffusion.weight'],
  ['to_out.0.weight', 'processor.to_out_custom_diffusion.0.weight'],
  ['to_out.0.bias', 'processor.to_out_custom_diffusion.0.bias'],
];

/** The cross-attention layers of a UNet, by their 'xxx.attn2' prefix. */
function crossAttentionLayers(fn: string, base: Map<string, Tensor>): string[] {
  if (!(base instanceof Map)) throw invalidArgument(`${fn}: baseUnetWeights must be a Map of name → Tensor, got ${describe(base)}`);
  const layers = [...base.keys()].filter((n) => /\.attn2\.to_k\.weight$/.test(n)).map((n) => n.slice(0, -'.to_k.weight'.length)).sort();
  if (layers.length === 0) throw invalidArgument(`${fn}: baseUnetWeights has no cross-attention (attn2) weights`);
  return layers;
}

function baseWeight(fn: string, base: Map<string, Tensor>, name: string): Tensor {
  const w = base.get(name);
  if (!(w instanceof Tensor)) throw invalidArgument(`${fn}: baseUnetWeights lacks '${name}'`);
  if (w.disposed) throw new ImprintError(`${fn}: base weight '${name}' has been disposed`, 'DISPOSED');
  return w;
}

/**
 * Writes `concept` as diffusers Custom Diffusion files into `dir` (made if
 * needed): the full weights of every cross-attention layer (W0 + ΔW, W0
 * where the concept has no delta) and one token file per token. Returns the
 * paths written.
 */
export async function exportDiffusers(concept: ConceptWeights, baseUnetWeights: Map<string, Tensor>, dir: string): Promise<string[]> {
  const fn = 'exportDiffusers';
  const c = checkCustomDiffusion(fn, concept);
  checkPath(fn, 'dir', dir);
  const layers = crossAttentionLayers(fn, baseUnetWeights);
  const keys = c.mode === 'kv' ? KV_KEYS : CROSS_KEYS;
  const used = new Set<string>();
  const out = new Map<string, Tensor>();
  try {
    for (const layer of layers) {
      for (const [param, key] of keys) {
        const name = `${layer}.${param}`;
        const w0 = baseWeight(fn, baseUnetWeights, name);
        const delta = c.deltas.get(name);
        if (delta !== undefined) {
          if (delta.shape.length !== w0.shape.length || delta.shape.some((d, i) => d !== w0.shape[i])) {
            throw new ImprintError(`${fn}: ΔW '${name}' is [${delta.shape.join(', ')}] but the base weight is [${w0.shape.join(', ')}]`, 'SHAPE_MISMATCH');
          }
          used.add(name);
        }
        const sum = delta === undefined ? await fromTensor(w0) : addScaled(await fromTensor(w0), await fromTensor(delta));
        out.set(`${layer}.${key}`, toTensor(sum, w0.shape));
      }
    }
    const unknown = [...c.deltas.keys()].filter((n) => !used.has(n));
    if (unknown.length > 0) throw invalidArgument(`${fn}: the concept has deltas for '${unknown[0]}'${unknown.length > 1 ? ` and ${unknown.length - 1} more` : ''}, which the base UNet does not have`);
    await mkdir(dir, { recursive: true });
    const paths = [join(dir, DIFFUSERS_WEIGHTS_FILE)];
    // diffusers itself tags its safetensors files with format 'pt'.
    await saveSafetensors(paths[0], out, { format: 'pt' });
    for (const tk of c.tokens) {
      const p = join(dir, `${tk.token}.safetensors`);
      const row = tk.embedding.device === 'cpu' ? tk.embedding : await tk.embedding.to('cpu');
      try {
        await saveSafetensors(p, new Map([[tk.token, row]]), { format: 'pt' });
      } finally {
        if (row !== tk.embedding) row.dispose();
      }
      paths.push(p);
    }
    const sidecar = join(dir, SIDECAR_FILE);
    const tmp = `${sidecar}.tmp-${process.pid}`;
    await writeFile(tmp, JSON.stringify({
      method: c.method, mode: c.mode, baseFingerprint: c.baseFingerprint,
      tokens: tokenMetadata(c.tokens),
    }, null, 2) + '\n');
    await rename(tmp, sidecar);
    paths.push(sidecar);
    return paths;
  } finally {
    for (const t of out.values()) t.dispose();
  }
}

export interface ImportDiffusersOptions {
  /** Class word per token (e.g. { '<new1>': 'dog' }); default: imprint-concept.json's, else ''. */
  classWords?: Record<string, string>;
  /** The base text encoder's token embedding, to compute the base fingerprint (else imprint-concept.json's, else 'unknown'). */
  tokenEmbedding?: Tensor;
}

interface Sidecar {
  mode?: CustomDiffusionMode;
  baseFingerprint?: string;
  classWords: Record<string, string>;
  /** Training prompt per token, where the exporter recorded one. */
  prompts: Record<string, string>;
}

async function readSidecar(dir: string): Promise<Sidecar | undefined> {
  const path = join(dir, SIDECAR_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw invalidArgument(`${path}: not valid JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(raw)) throw invalidArgument(`${path}: must hold a JSON object`);
  const classWords = Object.create(null) as Record<string, string>;
  const prompts = Object.create(null) as Record<string, string>;
  if (raw.tokens !== undefined) {
    if (!Array.isArray(raw.tokens)) throw invalidArgument(`${path}: 'tokens' must be a list of {token, classWord}`);
    raw.tokens.forEach((e: unknown, i) => {
      if (!isPlainObject(e) || typeof e.token !== 'string' || typeof e.classWord !== 'string') throw invalidArgument(`${path}: tokens[${i}] must be {token, classWord} with string values`);
      classWords[e.token] = e.classWord;
      const prompt = checkTokenPrompt(path, e.prompt, e.token, `tokens[${i}].prompt`);
      if (prompt !== undefined) prompts[e.token] = prompt;
    });
  }
  if (raw.mode !== undefined && raw.mode !== 'kv' && raw.mode !== 'cross') throw invalidArgument(`${path}: 'mode' must be 'kv' or 'cross', got ${describe(raw.mode)}`);
  if (raw.baseFingerprint !== undefined && typeof raw.baseFingerprint !== 'string') throw invalidArgument(`${path}: 'baseFingerprint' must be a string`);
  return { mode: raw.mode as CustomDiffusionMode | undefined, baseFingerprint: raw.baseFingerprint as string | undefined, classWords, prompts };
}

/** Token files: every other *.safetensors in dir, one tensor each, named as the file or 'emb_params' (A1111). */
async function readTokens(fn: string, dir: string, classWords: Record<string, string>, prompts: Record<string, string> = {}): Promise<ConceptToken[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.safetensors') && f !== DIFFUSERS_WEIGHTS_FILE);
  files.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const tokens: ConceptToken[] = [];
  try {
    for (const file of files) {
      const path = join(dir, file);
      const token = checkTokenName(fn, basename(file, '.safetensors'), `token file name '${file}'`);
      const header = readSafetensorsHeader(path);
      const names = Object.keys(header.tensors);
      const key = names.length === 1 && (names[0] === token || names[0] === 'emb_params') ? names[0] : undefined;
      if (key === undefined) throw invalidArgument(`${path}: a token file must hold one tensor named '${token}', got ${names.length === 0 ? 'none' : names.map((n) => `'${n}'`).join(', ')}`);
      const shape = header.tensors[key].shape;
      if (!(shape.length === 1 || (shape.length === 2 && shape[0] === 1)) || shape[shape.length - 1] < 1) {
        throw invalidArgument(`${path}: '${key}' must be one embedding row, [hidden] or [1, hidden], got [${shape.join(', ')}]`);
      }
      const loaded = (await loadSafetensors(path, { dtype: 'f32' })).get(key)!;
      const row = loaded.ndim === 1 ? loaded : loaded.reshape([shape[1]]);
      if (row !== loaded) loaded.dispose();
      tokens.push({ token, classWord: classWords[token] ?? '', embedding: row as Tensor<'f32'>, ...(prompts[token] === undefined ? {} : { prompt: prompts[token] }) });
      if (!(row.dataSync() as Float32Array).every(Number.isFinite)) throw invalidArgument(`${path}: the embedding holds non-finite values`);
      const width = tokens[0].embedding.shape[0];
      if (row.shape[0] !== width) throw invalidArgument(`${path}: the embedding has width ${row.shape[0]} but ${tokens[0].token}'s has ${width}`);
    }
  } catch (e) {
    for (const tk of tokens) tk.embedding.dispose();
    if (e instanceof ImprintError && !e.message.includes(dir)) throw new ImprintError(`${fn}: ${dir}: ${e.message}`, e.code);
    throw e;
  }
  return tokens;
}

/**
 * Reads diffusers Custom Diffusion files from `dir` back into a concept:
 * ΔW = W_file − W0 for every processor weight, the tokens from their files.
 * The mode is 'cross' when the file has to_q/to_out weights, else 'kv'.
 * The caller owns (and disposes) the returned tensors.
 */
export async function importDiffusers(dir: string, baseUnetWeights: Map<string, Tensor>, options?: ImportDiffusersOptions): Promise<CustomDiffusionConcept> {
  const fn = 'importDiffusers';
  checkPath(fn, 'dir', dir);
  const o = checkOptions(fn, options, ['classWords', 'tokenEmbedding']);
  if (o.classWords !== undefined && (!isPlainObject(o.classWords) || Object.values(o.classWords).some((w) => typeof w !== 'string'))) {
    throw invalidArgument(`${fn}: classWords must be an object of token → class word (strings), got ${describe(o.classWords)}`);
  }
  if (o.tokenEmbedding !== undefined && !(o.tokenEmbedding instanceof Tensor && o.tokenEmbedding.ndim === 2)) {
    throw invalidArgument(`${fn}: tokenEmbedding must be the text encoder's token embedding, a 2-D tensor, got ${describe(o.tokenEmbedding)}`);
  }
  const layers = crossAttentionLayers(fn, baseUnetWeights);
  const path = join(dir, DIFFUSERS_WEIGHTS_FILE);
  let header;
  try {
    header = readSafetensorsHeader(path);
  } catch (e) {
    // The reader's messages name the file already: prefix only the function.
    if (e instanceof ImprintError) throw new ImprintError(`${fn}: ${e.message.includes(path) ? '' : `${path}: `}${e.message}`, e.code);
    throw e;
  }
  const fileKeys = Object.keys(header.tensors);
  const mode: CustomDiffusionMode = fileKeys.some((k) => k.endsWith('.processor.to_q_custom_diffusion.weight') || k.includes('.processor.to_out_custom_diffusion.')) ? 'cross' : 'kv';
  // Every expected key: present, shaped as its base weight; no key left over.
  const expected = new Map<string, string>();
  for (const layer of layers) for (const [param, key] of mode === 'kv' ? KV_KEYS : CROSS_KEYS) expected.set(`${layer}.${key}`, `${layer}.${param}`);
  for (const k of fileKeys) {
    if (!expected.has(k)) {
      throw invalidArgument(`${path}: unexpected entry '${k}' (expected '<attn2 layer>.processor.to_{k,v${mode === 'cross' ? ',q' : ''}}_custom_diffusion.weight'${mode === 'cross' ? ' and to_out_custom_diffusion.0.{weight,bias}' : ''} of this UNet's cross-attention layers)`);
    }
  }
  for (const [k, name] of expected) {
    const e = header.tensors[k];
    if (e === undefined) throw invalidArgument(`${path}: entry '${k}' is missing (mode '${mode}' needs it for every cross-attention layer)`);
    const w0 = baseWeight(fn, baseUnetWeights, name);
    if (e.shape.length !== w0.shape.length || e.shape.some((d, i) => d !== w0.shape[i])) {
      throw invalidArgument(`${path}: entry '${k}' is [${e.shape.join(', ')}] but the base weight '${name}' is [${w0.shape.join(', ')}] (a concept for another model?)`);
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(e.dtype)) throw invalidArgument(`${path}: entry '${k}' has dtype ${e.dtype}, expected a float type`);
  }
  const sidecar = await readSidecar(dir);
  const classWords = { ...(sidecar?.classWords ?? {}), ...((o.classWords as Record<string, string> | undefined) ?? {}) };
  const tokens = await readTokens(fn, dir, classWords, sidecar?.prompts);
  const deltas = new Map<string, Tensor<'f32'>>();
  const loaded = await loadSafetensors(path, { dtype: 'f32' });
  try {
    for (const [k, name] of expected) {
      const w = await fromTensor(loaded.get(k)!);
      for (const x of w.data) if (!Number.isFinite(x)) throw invalidArgument(`${path}: entry '${k}' holds non-finite values`);
      const d = addScaled(w, await fromTensor(baseUnetWeights.get(name)!), -1);
      // A bias diffusers copied unchanged is no delta; weights always are (the concept says what was trained).
      if (name.endsWith('.bias') && d.data.every((x) => x === 0)) continue;
      deltas.set(name, toTensor(d, loaded.get(k)!.shape));
    }
    const tokenEmbedding = o.tokenEmbedding as Tensor | undefined;
    const hidden = tokens[0]?.embedding.shape[0];
    if (tokenEmbedding !== undefined && hidden !== undefined && tokenEmbedding.shape[1] !== hidden) {
      throw invalidArgument(`${fn}: the token rows in ${dir} have width ${hidden} but the text encoder's hidden size is ${tokenEmbedding.shape[1]}`);
    }
    const baseFingerprint = tokenEmbedding !== undefined ? await modelFingerprint(baseUnetWeights, tokenEmbedding) : sidecar?.baseFingerprint ?? 'unknown';
    return { method: 'custom-diffusion', mode, tokens, deltas, baseFingerprint };
  } catch (e) {
    for (const d of deltas.values()) d.dispose();
    for (const tk of tokens) tk.embedding.dispose();
    throw e;
  } finally {
    for (const t of loaded.values()) t.dispose();
  }
}
