// Regularization images for prior preservation: a user folder with captions,
// or images the base model itself samples from the class prompt. Generated
// sets are cached on disk under workDir, keyed by the base model's
// fingerprint, the prompt, the count, the resolution and the seed, so later
// runs (and resumed runs) reuse them instead of sampling again.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { invalidArgument } from '../errors.js';
import { tensorToImages } from '../pipeline/images.js';
import type { StableDiffusionPipeline } from '../pipeline/txt2img.js';
import { removeStaleTemporaries } from '../train/run-state.js';
import { decodeImage, loadCaptionedFolder, type CaptionedImage } from './data.js';

export interface GeneratedRegularization {
  pipeline: StableDiffusionPipeline;
  fingerprint: string;
  prompt: string;
  count: number;
  resolution: number;
  seed: number;
  /** Sampling steps per image. */
  steps: number;
  /** Where the cache folders live (workDir/regularization). */
  cacheRoot: string;
  /** Told when an image is sampled (not when the cache answers). */
  onGenerated?: (index: number, count: number) => void;
}

/** The cache folder of one generated set. */
export function regularizationCacheDir(g: Pick<GeneratedRegularization, 'fingerprint' | 'prompt' | 'count' | 'resolution' | 'seed' | 'steps' | 'cacheRoot'>): string {
  const key = createHash('sha256').update(JSON.stringify([g.fingerprint, g.prompt, g.count, g.resolution, g.seed, g.steps])).digest('hex').slice(0, 24);
  return join(g.cacheRoot, key);
}

/** The generated set, from the cache when it is complete, else sampled now (image i with seed + i) and cached. */
export async function generatedRegularization(fn: string, g: GeneratedRegularization): Promise<CaptionedImage[]> {
  const dir = regularizationCacheDir(g);
  const done = join(dir, 'complete.json');
  const name = (i: number): string => join(dir, `${String(i).padStart(4, '0')}.png`);
  // A killed run's half-sampled sets (<key>.tmp-<pid> of processes that ended) are removed first.
  removeStaleTemporaries(g.cacheRoot);
  if (!existsSync(done)) {
    // Sampled into a fresh folder, renamed into place when whole: an interrupted run leaves no partial set behind.
    const tmp = `${dir}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    for (let i = 0; i < g.count; i++) {
      const r = await g.pipeline.generate({ prompt: g.prompt, width: g.resolution, height: g.resolution, steps: g.steps, seed: g.seed + i, onWarning: () => {} });
      try {
        const [png] = await tensorToImages(r.images);
        writeFileSync(join(tmp, `${String(i).padStart(4, '0')}.png`), png);
      } finally {
        r.images.dispose();
        r.latents.dispose();
      }
      g.onGenerated?.(i, g.count);
    }
    writeFileSync(join(tmp, 'complete.json'), JSON.stringify({ prompt: g.prompt, count: g.count, resolution: g.resolution, seed: g.seed, steps: g.steps, fingerprint: g.fingerprint }) + '\n');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(g.cacheRoot, { recursive: true });
    renameSync(tmp, dir);
  }
  let meta: { prompt?: unknown };
  try {
    meta = JSON.parse(readFileSync(done, 'utf8')) as { prompt?: unknown };
  } catch (e) {
    throw invalidArgument(`${fn}: the regularization cache ${done} is damaged (${(e as Error).message}); remove the folder ${dir} and it is sampled again`);
  }
  if (meta === null || typeof meta !== 'object' || meta.prompt !== g.prompt) {
    throw invalidArgument(`${fn}: the regularization cache ${done} does not hold the prompt '${g.prompt}'; remove the folder ${dir} and it is sampled again`);
  }
  const out: CaptionedImage[] = [];
  for (let i = 0; i < g.count; i++) out.push({ image: await decodeImage(fn, name(i), name(i)), caption: g.prompt });
  return out;
}

/** A user folder of regularization images (captions in same-name .txt files, else the class prompt), at most `count`. */
export function folderRegularization(fn: string, what: string, dir: string, classPrompt: string, count: number): Promise<CaptionedImage[]> {
  return loadCaptionedFolder(fn, what, dir, classPrompt, count);
}
