// What every CLI command shares: the command shape, flag readers that turn
// strings into checked values (errors name the flag), the model folder
// lookup, and atomic file writes.
import { existsSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { invalidArgument } from '../errors.js';
import { saveImages } from '../pipeline/images.js';
import type { Tensor } from '../tensor.js';
import { rgbGrid, tensorToRgb } from '../world/evaluate.js';
import { worldModelDir } from '../world/model-path.js';

export type Values = Record<string, string | boolean | string[] | undefined>;

export interface OptionSpec {
  type: 'string' | 'boolean';
  help: string;
  arg?: string;
  default?: string | number;
  multiple?: boolean;
}

export interface Command {
  summary: string;
  usage?: string;
  positionals?: boolean;
  options: Record<string, OptionSpec>;
  run(values: Values, positionals: string[]): Promise<void>;
}

/** Where the model runs: --device cpu|cuda:N and --dtype f32|f16|bf16 (checked by the API, which names the problem). */
export const deviceFlags: Record<string, OptionSpec> = {
  device: { type: 'string', arg: 'dev', help: "'cpu' or 'cuda:0' (GPU; with --dtype bf16 for speed)", default: 'cpu' },
  dtype: { type: 'string', arg: 'type', help: 'weights and compute dtype: f32, f16 or bf16', default: 'f32' },
};

/** The device/dtype options for fromPretrained and the trainers, only those given. */
export function deviceOptions(values: Values): { device?: string; dtype?: 'f32' | 'f16' | 'bf16' } {
  const out: { device?: string; dtype?: 'f32' | 'f16' | 'bf16' } = {};
  const device = str(values, 'device');
  const dtype = str(values, 'dtype');
  if (device !== undefined) out.device = device;
  if (dtype !== undefined) out.dtype = dtype as 'f32' | 'f16' | 'bf16';
  return out;
}

/** A numeric flag: undefined when absent, else a finite number (or a clear error naming the flag). */
export function num(values: Values, flag: string): number | undefined {
  const v = values[flag];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) throw invalidArgument(`--${flag} must be a number, got '${String(v)}'`);
  return n;
}

/** A comma-separated numeric flag ('4000,6000'): undefined when absent, else its numbers (a clear error naming the flag for any that is not). */
export function numList(values: Values, flag: string): number[] | undefined {
  const v = str(values, flag);
  return v === undefined ? undefined : v.split(',').map((x) => num({ [flag]: x }, flag)!);
}

export function str(values: Values, flag: string): string | undefined {
  const v = values[flag];
  return typeof v === 'string' ? v : undefined;
}

/** A repeatable flag's values (none when absent). */
export function list(values: Values, flag: string): string[] {
  const v = values[flag];
  return Array.isArray(v) ? v : typeof v === 'string' ? [v] : [];
}

/** A required string flag. */
export function need(values: Values, flag: string, what: string): string {
  const v = str(values, flag);
  if (v === undefined || v === '') throw invalidArgument(`give --${flag} ${what}`);
  return v;
}

/** The model folder: --model, else the embedded world model (which must have been pretrained). */
export function modelDir(values: Values): string {
  const dir = str(values, 'model') ?? worldModelDir();
  if (!existsSync(join(dir, 'model_index.json'))) {
    throw invalidArgument(dir === worldModelDir()
      ? `the embedded world model is missing from ${dir} (run 'npm run pretrain:world' to train it)`
      : `${dir} is not a diffusers model folder (no model_index.json)`);
  }
  return dir;
}

/** Writes to a temporary name beside `path`, then renames: no half-written file. */
export async function writeAtomic(path: string, data: Buffer): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

/**
 * Generated images [N, 3, H, W] as PNGs per --out (a pattern with '{i}',
 * default 'imprint-{i}.png') and, with --grid, one grid (small images
 * upscaled 4×). Returns the paths written.
 */
export async function saveGenerated(images: Tensor, values: Values): Promise<string[]> {
  const pattern = str(values, 'out') ?? 'imprint-{i}.png';
  const paths = await saveImages(images, images.shape[0] === 1 ? pattern.replace('{i}', '0') : pattern);
  const grid = str(values, 'grid');
  if (grid !== undefined) {
    const [n, , h] = images.shape;
    await writeAtomic(grid, await rgbGrid(tensorToRgb(images), h, Math.ceil(Math.sqrt(n)), h <= 64 ? 4 : 1));
    paths.push(grid);
  }
  return paths;
}
