// What every CLI command shares: the command shape, flag readers that turn
// strings into checked values (errors name the flag), the model folder
// lookup, checks of input and output paths made before any work, progress
// on stderr, and atomic file writes.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import { invalidArgument } from '../errors.js';
import { imageGrid, saveImages } from '../pipeline/images.js';
import type { Tensor } from '../tensor.js';
import { Progress } from '../train/progress.js';
import { CONCEPT_IDS } from '../world/concepts.js';
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
  dtype: { type: 'string', arg: 'type', help: 'weights and compute dtype: f32, or f16 or bf16 on a GPU', default: 'f32' },
};

/** The device/dtype options for fromPretrained and the trainers, only those given. */
export function deviceOptions(values: Values): { device?: string; dtype?: 'f32' | 'f16' | 'bf16' } {
  const out: { device?: string; dtype?: 'f32' | 'f16' | 'bf16' } = {};
  const device = str(values, 'device');
  const dtype = str(values, 'dtype');
  if (dtype !== undefined && !['f32', 'f16', 'bf16'].includes(dtype)) throw invalidArgument(`--dtype must be f32, f16 or bf16, got '${dtype}'`);
  // The CPU kernels compute in f32 only; the API's own error says "cast to f32 first", advice for programs.
  if (dtype !== undefined && dtype !== 'f32' && (device ?? 'cpu') === 'cpu') throw invalidArgument(`--dtype ${dtype} needs a GPU (--device cuda:0); the CPU computes in f32: use --dtype f32`);
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

/** A count, size or seed flag: undefined when absent, else an integer ≥ min (1 unless told: 0 for seeds). */
export function int(values: Values, flag: string, min = 1): number | undefined {
  const n = num(values, flag);
  if (n !== undefined && (!Number.isSafeInteger(n) || n < min)) {
    const what = min === 1 ? 'a positive integer' : min === 0 ? 'a non-negative integer' : `an integer ≥ ${min}`;
    throw invalidArgument(`--${flag} must be ${what}, got ${String(values[flag])}`);
  }
  return n;
}

/** A flag that must be above zero (a learning rate): undefined when absent. */
export function positive(values: Values, flag: string): number | undefined {
  const n = num(values, flag);
  if (n !== undefined && !(n > 0)) throw invalidArgument(`--${flag} must be above 0, got ${String(values[flag])}`);
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

/** The text of the file a flag names; a missing file or a folder is a one-line error naming both. */
export function readFlagFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a folder, not a file' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw invalidArgument(`--${flag} ${path}: ${why}`);
  }
}

/**
 * Refuses an output path whose folder does not exist, before any work:
 * otherwise the write fails at the end, naming its temporary file. A '{i}'
 * pattern is checked as its first file.
 */
export function checkOutputFolder(flag: string, path: string | undefined): void {
  if (path === undefined) return;
  const dir = dirname(path.replaceAll('{i}', '0'));
  let stat;
  try {
    stat = statSync(dir);
  } catch {
    throw invalidArgument(`--${flag} ${path}: folder ${dir} does not exist`);
  }
  if (!stat.isDirectory()) throw invalidArgument(`--${flag} ${path}: ${dir} is not a folder`);
}

/** A held-out world concept id flag (--teach, --concept), checked before any work. */
export function conceptFlag(values: Values, flag: string): string | undefined {
  const id = str(values, flag);
  if (id !== undefined && !CONCEPT_IDS.includes(id)) throw invalidArgument(`--${flag} must be one of ${CONCEPT_IDS.join(', ')}, got '${id}'`);
  return id;
}

/**
 * An image side (--width, --height): the flag or `fallback`, which must be a
 * multiple of the model's VAE factor (StableDiffusionPipeline.sizeMultiple:
 * 8 for Stable Diffusion, 1 for the pixel-space world model, whose UNet takes
 * any size).
 */
export function imageSide(values: Values, flag: string, multiple: number, fallback: number): number {
  const n = int(values, flag) ?? fallback;
  if (n % multiple !== 0) throw invalidArgument(`--${flag} ${n} must be a multiple of ${multiple} (the model's VAE shrinks images ${multiple}× per side)`);
  return n;
}

/** --quiet: for the commands that show progress. */
/** Attend-and-Excite at sampling time (generate and sample). */
export const exciteFlags: Record<string, OptionSpec> = {
  excite: { type: 'string', arg: 'word', help: 'a word of the prompt that must show (repeat for each subject, e.g. --excite "<new1>" --excite "<new2>"): Attend-and-Excite on the first half of the steps', multiple: true },
  'excite-scale': { type: 'string', arg: 'x', help: 'Attend-and-Excite step size', default: 20 },
};

/** generate()'s excite options from exciteFlags (none without --excite). */
export function exciteOptions(values: Values): { excite?: string[]; exciteScale?: number } {
  const words = list(values, 'excite');
  const scale = num(values, 'excite-scale');
  if (words.length === 0) {
    if (scale !== undefined) throw invalidArgument('--excite-scale needs --excite');
    return {};
  }
  return { excite: words, ...(scale === undefined ? {} : { exciteScale: scale }) };
}

export const quietFlag: Record<string, OptionSpec> = { quiet: { type: 'boolean', help: 'no progress on stderr' } };

/**
 * Progress on stderr (stdout keeps the result) for work counted in steps:
 * the training bar of lib/train/progress.ts, redrawn in place on a terminal,
 * a plain line about every 10% elsewhere; nothing with --quiet. Make it just
 * before the work (its clock starts then) and call it with (done, total).
 */
export function progress(values: Values, label: string): (done: number, total: number) => void {
  let bar: Progress | undefined;
  let started = performance.now();
  return (done, total) => {
    if (values.quiet === true) return;
    bar ??= new Progress(total, 0, { label, every: Math.max(1, Math.round(total / 10)), startedAt: started });
    bar.update(done);
    if (done >= total) {
      // A later call starts a new bar (the same reporter reused for the next piece of work).
      bar = undefined;
      started = performance.now();
    }
  };
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
    const [, , h, w] = images.shape;
    // The cells as generated (any width and height), small ones upscaled to be seen.
    await writeAtomic(grid, await imageGrid(images, { gap: 2, scale: Math.max(h, w) <= 64 ? 4 : 1 }));
    paths.push(grid);
  }
  return paths;
}
