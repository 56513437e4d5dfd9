// Checking checkpoints against the expected layouts and loading Stable
// Diffusion weights: diffusers folders (single or sharded safetensors, with
// variants) and single-file LDM checkpoints. Headers are validated before any
// tensor data is read; pickle files (.bin/.ckpt/.pt/.pth) are never opened.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';

import { devices } from '../device.js';
import { ImprintError, invalidArgument } from '../errors.js';
import { PICKLE_EXT, pickleHint, pickleReason } from '../io/pickle.js';
import { loadSafetensors, readSafetensorsHeader } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import { checkDType, checkDevice, checkOptions, describe, isPlainObject, type Device, type DType } from '../validate.js';
import {
  parseClipTextConfig,
  parseUNetConfig,
  parseVaeConfig,
  readJsonFile,
  SD15_CONFIGS,
  type ClipTextConfig,
  type Layout,
  type UNetConfig,
  type VaeConfig,
} from './configs.js';
import { clipTextLayout } from './layout-clip.js';
import { unetLayout } from './layout-unet.js';
import { vaeLayout } from './layout-vae.js';
import { clipLdmName, isVaeAttnLinear, ldmNameMap, unetLdmName, vaeLdmName } from './ldm-names.js';

/** Anything with tensor shapes by name: a SafetensorsHeader or its `tensors` record. */
export type HeaderLike = { tensors: Record<string, { shape: readonly number[] }> } | Record<string, { shape: readonly number[] }>;

export interface LayoutDiff {
  missing: string[];
  unexpected: string[];
  misshaped: { name: string; expected: number[]; found: number[] }[];
}

export interface CheckOptions {
  /** Named in the error message (the checkpoint file or folder). */
  file?: string;
  /** Names that may be present without being in the layout (buffers such as position_ids). */
  ignore?: readonly string[];
}

const LIST_LIMIT = 10;

/**
 * A device option checked before any work: 'cpu', 'cuda' or 'cuda:N' that
 * exists here. A CUDA device on a build or machine without one is refused
 * with devices()' reason (CUDA_NOT_BUILT / CUDA_UNAVAILABLE).
 */
export function checkUsableDevice(fn: string, device: unknown): Device {
  const d = checkDevice(fn, device) as Device;
  if (d === 'cpu') return d;
  const cuda = devices().cuda;
  if (!cuda.built) throw new ImprintError(`${fn}: device '${d}' is not usable: ${cuda.reason ?? 'this build of Imprint has no CUDA'}`, 'CUDA_NOT_BUILT');
  if (!cuda.available) throw new ImprintError(`${fn}: device '${d}' is not usable: ${cuda.reason ?? 'no usable GPU'}`, 'CUDA_UNAVAILABLE');
  const index = Number(d.slice('cuda:'.length));
  if (index >= cuda.devices.length) {
    const have = cuda.devices.map((g) => `${g.device} (${g.name})`).join(', ');
    throw invalidArgument(`${fn}: device '${d}' does not exist; this machine has ${cuda.devices.length} GPU${cuda.devices.length === 1 ? '' : 's'}: ${have}`);
  }
  return d;
}

/**
 * Named tensors of one safetensors file on `device`. On the CPU in one read;
 * elsewhere one tensor at a time (read to the host, copied, host copy freed),
 * so the host never holds more than one weight of a multi-GB checkpoint.
 */
async function loadNamed(file: string, names: string[], dtype: DType | undefined, device: Device): Promise<Map<string, Tensor>> {
  if (device === 'cpu') return loadSafetensors(file, { names, dtype });
  const out = new Map<string, Tensor>();
  try {
    for (const name of names) {
      const [host] = (await loadSafetensors(file, { names: [name], dtype })).values();
      try {
        out.set(name, await host.to(device));
      } finally {
        host.dispose();
      }
    }
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

function shapesOf(fn: string, header: unknown): Map<string, readonly number[]> {
  if (!isPlainObject(header)) throw invalidArgument(`${fn}: header must be an object of name → { shape }, got ${describe(header)}`);
  // A wrapper's `tensors` holds entries; a tensor that happens to be named 'tensors' has a shape.
  const entries = isPlainObject(header.tensors) && !Array.isArray(header.tensors.shape) ? header.tensors : header;
  const out = new Map<string, readonly number[]>();
  for (const [name, info] of Object.entries(entries)) {
    const shape = isPlainObject(info) ? info.shape : undefined;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw invalidArgument(`${fn}: entry '${name}' has no valid shape (got ${describe(shape)})`);
    }
    out.set(name, shape as number[]);
  }
  return out;
}

function checkIgnore(fn: string, ignore: unknown): readonly string[] {
  if (ignore === undefined) return [];
  if (!Array.isArray(ignore) || ignore.some((n) => typeof n !== 'string')) throw invalidArgument(`${fn}: ignore must be an array of tensor names, got ${describe(ignore)}`);
  return ignore as string[];
}

/** What differs between a checkpoint header and a layout (empty lists: they match). */
export function diffAgainstLayout(header: HeaderLike, layout: Layout, options?: { ignore?: readonly string[] }): LayoutDiff {
  const fn = 'diffAgainstLayout';
  const found = shapesOf(fn, header);
  if (!isPlainObject(layout)) throw invalidArgument(`${fn}: layout must be an object of name → shape, got ${describe(layout)}`);
  const ignore = new Set(checkIgnore(fn, options?.ignore));
  const diff: LayoutDiff = { missing: [], unexpected: [], misshaped: [] };
  for (const [name, expected] of Object.entries(layout)) {
    if (!Array.isArray(expected)) throw invalidArgument(`${fn}: layout entry '${name}' must be a shape array, got ${describe(expected)}`);
    const shape = found.get(name);
    if (shape === undefined) diff.missing.push(name);
    else if (shape.length !== expected.length || shape.some((d, i) => d !== expected[i])) diff.misshaped.push({ name, expected: [...expected], found: [...shape] });
  }
  for (const name of found.keys()) {
    if (!Object.hasOwn(layout, name) && !ignore.has(name)) diff.unexpected.push(name);
  }
  return diff;
}

function listing(items: string[]): string {
  const shown = items.slice(0, LIST_LIMIT).join('\n    ');
  return items.length > LIST_LIMIT ? `${shown}\n    … and ${items.length - LIST_LIMIT} more` : shown;
}

/**
 * Throws INVALID_ARGUMENT listing every missing, unexpected and mis-shaped
 * tensor (lists truncated with counts) unless the header matches the layout.
 */
export function checkAgainstLayout(header: HeaderLike, layout: Layout, options?: CheckOptions): void {
  const o = checkOptions('checkAgainstLayout', options, ['file', 'ignore']);
  if (o.file !== undefined && typeof o.file !== 'string') throw invalidArgument(`checkAgainstLayout: file must be a string, got ${describe(o.file)}`);
  const file = o.file ?? 'checkpoint';
  const d = diffAgainstLayout(header, layout, { ignore: o.ignore as string[] | undefined });
  if (d.missing.length + d.unexpected.length + d.misshaped.length === 0) return;
  const parts: string[] = [];
  if (d.missing.length) parts.push(`  missing (${d.missing.length}):\n    ${listing(d.missing)}`);
  if (d.misshaped.length) {
    const lines = d.misshaped.map((m) => `${m.name}: expected [${m.expected.join(', ')}], found [${m.found.join(', ')}]`);
    parts.push(`  wrong shape (${d.misshaped.length}):\n    ${listing(lines)}`);
  }
  if (d.unexpected.length) parts.push(`  unexpected (${d.unexpected.length}):\n    ${listing(d.unexpected)}`);
  const total = Object.keys(layout).length;
  throw invalidArgument(`${file} does not match the expected layout (${total} tensors): ${d.missing.length} missing, ${d.misshaped.length} with a wrong shape, ${d.unexpected.length} unexpected\n${parts.join('\n')}`);
}

// --- diffusers folders -------------------------------------------------------

export type ComponentKind = 'unet' | 'vae' | 'text_encoder';

export interface LoadOptions {
  /** Convert floats on load (default: the file's dtype). */
  dtype?: DType;
  /**
   * Where the weights go: 'cpu' (default) or 'cuda:N'. Files are read on the
   * host and each tensor is copied to the device on its own, then freed.
   */
  device?: Device;
  /** Weights variant, e.g. 'fp16' → diffusion_pytorch_model.fp16.safetensors. */
  variant?: string;
}

export interface LoadedComponent<C> {
  config: C;
  /** Parameters in layout order, named as diffusers/transformers name them. */
  weights: Map<string, Tensor>;
  /** The safetensors files read. */
  files: string[];
}

export interface LoadedDiffusersModel {
  unet: LoadedComponent<UNetConfig>;
  /** Absent for pixel-space models (model_index.json lists "vae": [null, null], as DeepFloyd IF does). */
  vae?: LoadedComponent<VaeConfig>;
  textEncoder: LoadedComponent<ClipTextConfig>;
  /** The tokenizer/ folder, when the model has one (read it with the CLIP tokenizer's loader). */
  tokenizerDir?: string;
  /** scheduler/scheduler_config.json, when present. */
  schedulerConfig?: Record<string, unknown>;
}

const COMPONENTS: Record<ComponentKind, { weights: string; library: string; cls: string }> = {
  unet: { weights: 'diffusion_pytorch_model', library: 'diffusers', cls: 'UNet2DConditionModel' },
  vae: { weights: 'diffusion_pytorch_model', library: 'diffusers', cls: 'AutoencoderKL' },
  text_encoder: { weights: 'model', library: 'transformers', cls: 'CLIPTextModel' },
};

// Buffers some exporters save next to the parameters; never loaded.
const IGNORED: Record<ComponentKind, string[]> = { unet: [], vae: [], text_encoder: ['text_model.embeddings.position_ids'] };

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function checkVariant(fn: string, variant: unknown): string | null {
  if (variant === undefined) return null;
  if (typeof variant !== 'string' || !/^[A-Za-z0-9_-]{1,32}$/.test(variant)) {
    throw invalidArgument(`${fn}: variant must be a short name of letters, digits, '_' or '-' (e.g. 'fp16'), got ${describe(variant)}`);
  }
  return variant;
}

interface WeightSource {
  /** Shape and shard of every tensor. */
  shapes: Record<string, { shape: number[] }>;
  shardOf: Map<string, string>;
  files: string[];
}

function fromFiles(files: string[]): WeightSource {
  const shapes: Record<string, { shape: number[] }> = Object.create(null);
  const shardOf = new Map<string, string>();
  for (const file of files) {
    const h = readSafetensorsHeader(file);
    for (const [name, info] of Object.entries(h.tensors)) {
      const other = shardOf.get(name);
      if (other !== undefined) throw invalidArgument(`tensor '${name}' is in two shards: ${other} and ${file}`);
      shapes[name] = { shape: info.shape };
      shardOf.set(name, file);
    }
  }
  return { shapes, shardOf, files };
}

function fromIndex(dir: string, indexPath: string): WeightSource {
  const index = readJsonFile(indexPath);
  if (!isPlainObject(index) || !isPlainObject(index.weight_map)) throw invalidArgument(`${indexPath}: expected an object with a 'weight_map' object of tensor name → shard file`);
  const listed = new Map<string, string>();
  for (const [name, shard] of Object.entries(index.weight_map)) {
    // Shard names come from the file: plain names in this folder only.
    if (typeof shard !== 'string' || basename(shard) !== shard || shard.startsWith('.') || !shard.endsWith('.safetensors')) {
      throw invalidArgument(`${indexPath}: weight_map['${name}'] must name a .safetensors file in the same folder, got ${describe(shard)}`);
    }
    listed.set(name, join(dir, shard));
  }
  if (listed.size === 0) throw invalidArgument(`${indexPath}: weight_map is empty`);
  const shards = [...new Set(listed.values())];
  for (const s of shards) if (!isFile(s)) throw invalidArgument(`${indexPath}: shard ${basename(s)} does not exist`);
  const src = fromFiles(shards);
  for (const [name, shard] of listed) {
    const actual = src.shardOf.get(name);
    if (actual !== shard) {
      throw invalidArgument(`${indexPath}: weight_map puts '${name}' in ${basename(shard)}, but ${actual === undefined ? 'no shard holds it' : `it is in ${basename(actual)}`}`);
    }
  }
  return src;
}

function findWeights(dir: string, kind: ComponentKind, variant: string | null): WeightSource {
  const base = COMPONENTS[kind].weights;
  const v = variant === null ? '' : `.${variant}`;
  const single = join(dir, `${base}${v}.safetensors`);
  if (isFile(single)) return fromFiles([single]);
  const index = join(dir, `${base}.safetensors.index${v}.json`);
  if (isFile(index)) return fromIndex(dir, index);
  const present = readdirSync(dir);
  const pickles = present.filter((f) => PICKLE_EXT.includes(extname(f).toLowerCase()));
  if (pickles.length > 0 && !present.some((f) => f.endsWith('.safetensors'))) {
    throw invalidArgument(pickleHint(`${dir} holds only pickle weights (${pickles.join(', ')})`, { ...COMPONENTS[kind], dir }));
  }
  throw invalidArgument(
    `${dir}: no ${variant === null ? '' : `'${variant}' variant `}weights found: expected ${basename(single)} or ${basename(index)} ` +
      `(the folder holds: ${present.length ? present.join(', ') : 'nothing'})`,
  );
}

async function loadChecked(src: WeightSource, layout: Layout, dtype: DType | undefined, device: Device): Promise<Map<string, Tensor>> {
  const loaded = new Map<string, Tensor>();
  try {
    for (const file of src.files) {
      const names = Object.keys(layout).filter((n) => src.shardOf.get(n) === file);
      if (names.length === 0) continue;
      const part = await loadNamed(file, names, dtype, device);
      for (const [n, t] of part) loaded.set(n, t);
    }
  } catch (e) {
    for (const t of loaded.values()) t.dispose();
    throw e;
  }
  return new Map(Object.keys(layout).map((n) => [n, loaded.get(n)!]));
}

function parseConfig(kind: ComponentKind, raw: unknown, where: string): { config: UNetConfig | VaeConfig | ClipTextConfig; layout: Layout } {
  if (kind === 'unet') {
    const config = parseUNetConfig(raw, where);
    return { config, layout: unetLayout(config) };
  }
  if (kind === 'vae') {
    const config = parseVaeConfig(raw, where);
    return { config, layout: vaeLayout(config) };
  }
  const config = parseClipTextConfig(raw, where);
  return { config, layout: clipTextLayout(config) };
}

function loadOpts(fn: string, options: unknown): { dtype?: DType; device: Device; variant: string | null } {
  const o = checkOptions(fn, options, ['dtype', 'device', 'variant']);
  return {
    dtype: o.dtype === undefined ? undefined : checkDType(fn, o.dtype, 'f32'),
    device: checkUsableDevice(fn, o.device),
    variant: checkVariant(fn, o.variant),
  };
}

function checkDir(fn: string, dir: unknown): string {
  if (typeof dir !== 'string' || dir.length === 0) throw invalidArgument(`${fn}: dir must be a non-empty string, got ${describe(dir)}`);
  if (!isDir(dir)) throw invalidArgument(`${fn}: ${dir} is not a folder`);
  return dir;
}

/** Loads one component folder (unet/, vae/ or text_encoder/): config.json, then weights validated against its layout. */
export async function loadDiffusersComponent(dir: string, kind: 'unet', options?: LoadOptions): Promise<LoadedComponent<UNetConfig>>;
export async function loadDiffusersComponent(dir: string, kind: 'vae', options?: LoadOptions): Promise<LoadedComponent<VaeConfig>>;
export async function loadDiffusersComponent(dir: string, kind: 'text_encoder', options?: LoadOptions): Promise<LoadedComponent<ClipTextConfig>>;
export async function loadDiffusersComponent(dir: string, kind: ComponentKind, options?: LoadOptions): Promise<LoadedComponent<UNetConfig | VaeConfig | ClipTextConfig>> {
  const fn = 'loadDiffusersComponent';
  checkDir(fn, dir);
  if (typeof kind !== 'string' || !Object.hasOwn(COMPONENTS, kind)) throw invalidArgument(`${fn}: kind must be 'unet', 'vae' or 'text_encoder', got ${describe(kind)}`);
  const o = loadOpts(fn, options);
  const configPath = join(dir, 'config.json');
  if (!isFile(configPath)) throw invalidArgument(`${fn}: ${configPath} is missing`);
  const { config, layout } = parseConfig(kind, readJsonFile(configPath), configPath);
  const src = findWeights(dir, kind, o.variant);
  checkAgainstLayout({ tensors: src.shapes }, layout, { file: src.files.length === 1 ? src.files[0] : `${dir} (${src.files.length} shards)`, ignore: IGNORED[kind] });
  const weights = await loadChecked(src, layout, o.dtype, o.device);
  return { config, weights, files: src.files };
}

function disposeAll(parts: (LoadedComponent<unknown> | undefined)[]): void {
  for (const p of parts) for (const t of p?.weights.values() ?? []) t.dispose();
}

/**
 * Loads a Stable Diffusion pipeline folder: model_index.json, then unet/,
 * vae/ and text_encoder/, each validated against its layout before loading.
 */
export async function loadDiffusersModel(dir: string, options?: LoadOptions): Promise<LoadedDiffusersModel> {
  const fn = 'loadDiffusersModel';
  checkDir(fn, dir);
  loadOpts(fn, options);
  const indexPath = join(dir, 'model_index.json');
  if (!isFile(indexPath)) throw invalidArgument(`${fn}: ${indexPath} is missing (is ${dir} a diffusers pipeline folder?)`);
  const index = readJsonFile(indexPath);
  if (!isPlainObject(index)) throw invalidArgument(`${indexPath}: expected a JSON object, got ${describe(index)}`);
  const pixelSpace = Array.isArray(index.vae) && index.vae.length === 2 && index.vae[0] === null && index.vae[1] === null;
  for (const kind of Object.keys(COMPONENTS) as ComponentKind[]) {
    const entry = index[kind];
    const { library, cls } = COMPONENTS[kind];
    if (kind === 'vae' && pixelSpace) continue;
    if (!Array.isArray(entry) || entry.length !== 2 || entry[0] !== library || entry[1] !== cls) {
      const alt = kind === 'vae' ? ' (or [null, null] for a pixel-space model)' : '';
      throw invalidArgument(`${indexPath}: '${kind}' must be ["${library}", "${cls}"]${alt}, got ${entry === undefined ? 'nothing' : JSON.stringify(entry)}`);
    }
    if (!isDir(join(dir, kind))) throw invalidArgument(`${fn}: ${join(dir, kind)} is missing (model_index.json lists '${kind}')`);
  }
  // Small JSON first, so a bad scheduler config fails before any weights are loaded.
  const schedPath = join(dir, 'scheduler', 'scheduler_config.json');
  let schedulerConfig: Record<string, unknown> | undefined;
  if (isFile(schedPath)) {
    const sched = readJsonFile(schedPath);
    if (!isPlainObject(sched)) throw invalidArgument(`${schedPath}: expected a JSON object, got ${describe(sched)}`);
    schedulerConfig = sched;
  }
  const out: Partial<LoadedDiffusersModel> = {};
  try {
    out.unet = await loadDiffusersComponent(join(dir, 'unet'), 'unet', options);
    if (!pixelSpace) out.vae = await loadDiffusersComponent(join(dir, 'vae'), 'vae', options);
    out.textEncoder = await loadDiffusersComponent(join(dir, 'text_encoder'), 'text_encoder', options);
  } catch (e) {
    disposeAll([out.unet, out.vae, out.textEncoder]);
    throw e;
  }
  const result: LoadedDiffusersModel = { unet: out.unet, textEncoder: out.textEncoder };
  if (out.vae) result.vae = out.vae;
  if (isDir(join(dir, 'tokenizer'))) result.tokenizerDir = join(dir, 'tokenizer');
  if (schedulerConfig !== undefined) result.schedulerConfig = schedulerConfig;
  return result;
}

// --- single-file LDM checkpoints ----------------------------------------------

export interface SingleFileOptions {
  dtype?: DType;
  device?: Device;
  /** config.json contents for the parts (default: SD 1.5's). */
  configs?: { unet?: unknown; vae?: unknown; textEncoder?: unknown };
}

export interface LoadedSingleFile {
  unet: LoadedComponent<UNetConfig>;
  vae: LoadedComponent<VaeConfig>;
  textEncoder: LoadedComponent<ClipTextConfig>;
  /** Keys of the file that belong to no part and were not loaded (EMA copies and known buffers are left out of this list). */
  unknownKeys: string[];
}

// Not parameters: schedule buffers and CLIP's position ids, saved by LDM training code.
const LDM_BUFFERS = /^(betas|alphas_cumprod|alphas_cumprod_prev|sqrt_alphas_cumprod|sqrt_one_minus_alphas_cumprod|log_one_minus_alphas_cumprod|sqrt_recip_alphas_cumprod|sqrt_recipm1_alphas_cumprod|posterior_variance|posterior_log_variance_clipped|posterior_mean_coef1|posterior_mean_coef2|model_ema\..*|cond_stage_model\.transformer\.text_model\.embeddings\.position_ids)$/;

/** Refuses pickle checkpoints by extension and by their first bytes (see io/pickle.ts). */
function refusePickle(path: string): void {
  const reason = pickleReason(path);
  if (reason !== undefined) throw invalidArgument(pickleHint(reason));
}

/**
 * Loads an SD 1.x single-file checkpoint (.safetensors with CompVis/LDM
 * names) into diffusers-named UNet, VAE and text encoder weights.
 */
export async function loadSingleFileCheckpoint(path: string, options?: SingleFileOptions): Promise<LoadedSingleFile> {
  const fn = 'loadSingleFileCheckpoint';
  if (typeof path !== 'string' || path.length === 0) throw invalidArgument(`${fn}: path must be a non-empty string, got ${describe(path)}`);
  const o = checkOptions(fn, options, ['dtype', 'device', 'configs']);
  const dtype = o.dtype === undefined ? undefined : checkDType(fn, o.dtype, 'f32');
  const device = checkUsableDevice(fn, o.device);
  const configs = o.configs === undefined ? {} : o.configs;
  if (!isPlainObject(configs)) throw invalidArgument(`${fn}: configs must be an object with unet, vae and textEncoder configs, got ${describe(configs)}`);
  checkOptions(`${fn} configs`, configs, ['unet', 'vae', 'textEncoder']);
  if (!isFile(path) && existsSync(path)) throw invalidArgument(`${fn}: ${path} is not a file`);
  refusePickle(path);

  const unetCfg = parseUNetConfig(configs.unet ?? SD15_CONFIGS.unet, `${fn} UNet config`);
  const vaeCfg = parseVaeConfig(configs.vae ?? SD15_CONFIGS.vae, `${fn} VAE config`);
  const clipCfg = parseClipTextConfig(configs.textEncoder ?? SD15_CONFIGS.textEncoder, `${fn} text encoder config`);
  const parts = [
    { key: 'unet', label: 'UNet', layout: unetLayout(unetCfg), config: unetCfg as unknown, toLdm: (n: string) => unetLdmName(n, unetCfg) },
    { key: 'vae', label: 'VAE', layout: vaeLayout(vaeCfg), config: vaeCfg as unknown, toLdm: (n: string) => vaeLdmName(n, vaeCfg) },
    { key: 'textEncoder', label: 'text encoder', layout: clipTextLayout(clipCfg), config: clipCfg as unknown, toLdm: clipLdmName },
  ] as const;

  const header = readSafetensorsHeader(path);
  const owner = new Map<string, { part: number; name: string }>();
  parts.forEach((p, i) => {
    for (const [ldm, name] of ldmNameMap(p.layout, p.toLdm)) owner.set(ldm, { part: i, name });
  });
  const found: Record<string, { shape: number[] }>[] = parts.map(() => Object.create(null));
  const unknownKeys: string[] = [];
  for (const [key, info] of Object.entries(header.tensors)) {
    const o2 = owner.get(key);
    if (o2 === undefined) {
      if (!LDM_BUFFERS.test(key)) unknownKeys.push(key);
      continue;
    }
    let shape = info.shape;
    if (o2.part === 1 && isVaeAttnLinear(o2.name) && shape.length === 4 && shape[2] === 1 && shape[3] === 1) shape = shape.slice(0, 2);
    found[o2.part][o2.name] = { shape };
  }
  // Unknown keys are reported only when a part is incomplete; otherwise returned.
  parts.forEach((p, i) => {
    try {
      checkAgainstLayout({ tensors: found[i] }, p.layout, { file: `${path} (${p.label}, SD 1.x single-file names)` });
    } catch (e) {
      if (unknownKeys.length > 0) (e as Error).message += `\n  keys of no known part (${unknownKeys.length}):\n    ${listing(unknownKeys)}`;
      throw e;
    }
  });

  const names = [...owner.keys()].filter((k) => Object.hasOwn(header.tensors, k));
  const loaded = await loadNamed(path, names, dtype, device);
  const weights = parts.map(() => new Map<string, Tensor>());
  for (const [key, t] of loaded) {
    const { part, name } = owner.get(key)!;
    if (part === 1 && isVaeAttnLinear(name) && t.ndim === 4) {
      // Copy-free: the reshaped tensor shares the storage.
      weights[part].set(name, t.reshape(t.shape.slice(0, 2)));
      t.dispose();
    } else weights[part].set(name, t);
  }
  const ordered = parts.map((p, i) => new Map(Object.keys(p.layout).map((n) => [n, weights[i].get(n)!])));
  return {
    unet: { config: unetCfg, weights: ordered[0], files: [path] },
    vae: { config: vaeCfg, weights: ordered[1], files: [path] },
    textEncoder: { config: clipCfg, weights: ordered[2], files: [path] },
    unknownKeys,
  };
}
