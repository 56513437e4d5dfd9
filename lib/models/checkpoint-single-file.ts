// Loading SD 1.x single-file checkpoints: one .safetensors with CompVis/LDM
// names, mapped to diffusers names and split into UNet, VAE and text encoder
// weights, each validated against its layout before any tensor data is read.
// Pickle checkpoints are refused by extension and by their first bytes.
import { existsSync } from 'node:fs';

import { checkUsableDevice } from '../device.js';
import { invalidArgument } from '../errors.js';
import { pickleHint, pickleReason } from '../io/pickle.js';
import { readSafetensorsHeader } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import { checkDType, checkOptions, checkPath, describe, isPlainObject, type Device, type DType } from '../validate.js';
import { checkAgainstLayout, listing } from './checkpoint-layout.js';
import { isFile, loadNamed, type LoadedComponent } from './checkpoint-files.js';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig, SD15_CONFIGS, type ClipTextConfig, type UNetConfig, type VaeConfig } from './configs.js';
import { clipTextLayout } from './layout-clip.js';
import { unetLayout } from './layout-unet.js';
import { vaeLayout } from './layout-vae.js';
import { clipLdmName, isVaeAttnLinear, ldmNameMap, unetLdmName, vaeLdmName } from './ldm-names.js';

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
  checkPath(fn, 'path', path);
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
