// Loading diffusers folders: a pipeline folder (model_index.json, then unet/,
// vae/ and text_encoder/) or one component folder, from single or sharded
// safetensors, with variants; each validated against its layout before any
// tensor data is read. Pickle weights are never opened.
import { readdirSync } from 'node:fs';
import { basename, extname, join } from 'node:path';

import { checkUsableDevice } from '../device.js';
import { invalidArgument } from '../errors.js';
import { PICKLE_EXT, pickleHint } from '../io/pickle.js';
import { readSafetensorsHeader } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import { checkDType, checkOptions, checkPath, describe, isPlainObject, type Device, type DType } from '../validate.js';
import { checkAgainstLayout } from './checkpoint-layout.js';
import { isDir, isFile, loadNamed, type LoadedComponent } from './checkpoint-files.js';
import {
  parseClipTextConfig,
  parseUNetConfig,
  parseVaeConfig,
  readJsonFile,
  type ClipTextConfig,
  type Layout,
  type UNetConfig,
  type VaeConfig,
} from './configs.js';
import { clipTextLayout } from './layout-clip.js';
import { unetLayout } from './layout-unet.js';
import { vaeLayout } from './layout-vae.js';

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
  const path = checkPath(fn, 'dir', dir);
  if (!isDir(path)) throw invalidArgument(`${fn}: ${path} is not a folder`);
  return path;
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
