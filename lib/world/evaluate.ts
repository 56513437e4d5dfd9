// `imprint eval`: generate images for a prompt set, score each with the
// world's geometric metrics (text alignment: does the image show what the
// prompt asks; image alignment: does the subject look like a concept's
// instance images), and summarise per prompt and overall.
import { writeFile, rename } from 'node:fs/promises';

import { invalidArgument } from '../errors.js';
import { rgbGrid, tensorToRgb } from '../pipeline/images.js';
import { StableDiffusionPipeline, type SchedulerName } from '../pipeline/txt2img.js';
import { checkInt, checkOptions, describe } from '../validate.js';
import { conceptById, conceptImages } from './concepts.js';
import { imageAlignment, shapeAlignment } from './metrics/similarity.js';
import { attributeMatches, emptyTallies, textAlignment, WORLD_ATTRIBUTES, type AttributeTallies } from './metrics/text-alignment.js';
import { stat, type Stat } from './metrics/validation.js';
import { WORLD_RESOLUTION } from './model-config.js';
import { worldModelDir } from './model-path.js';

/** The fixed prompt set the README's figures use: shape, colour, size, position, background, two objects. */
export const WORLD_EVAL_PROMPTS: readonly string[] = Object.freeze([
  'a red circle',
  'a blue square',
  'a yellow triangle',
  'a large green circle',
  'a small purple square',
  'an orange triangle on the left',
  'a white circle on the right',
  'a red square at the top',
  'a blue triangle at the bottom',
  'a yellow circle on a blue background',
  'a black square on a white background',
  'a red circle on the left and a green square on the right',
]);

export interface EvaluateOptions {
  /** A diffusers folder (default: the embedded world model), or a loaded pipeline. */
  model?: string | StableDiffusionPipeline;
  prompts?: readonly string[];
  imagesPerPrompt?: number;
  steps?: number;
  guidanceScale?: number;
  scheduler?: SchedulerName;
  seed?: number;
  /** Score image alignment against this held-out concept's instance images (world concept id, e.g. 'star'). */
  concept?: string;
  /** Write a grid (one row per prompt, upscaled 4×) here. */
  gridPath?: string;
  /** Called after every denoising step with the steps done and the steps in all, over every prompt (for a progress bar). */
  onProgress?: (done: number, total: number) => void;
}

export interface PromptScores {
  prompt: string;
  textAlignment: Stat;
  imageAlignment?: Stat;
  /** Colour-invariant shape score against the concept (see shapeAlignment). */
  shapeAlignment?: Stat;
}

export interface EvaluateResult {
  rows: PromptScores[];
  textAlignment: Stat;
  imageAlignment?: Stat;
  shapeAlignment?: Stat;
  /** Over every image: how often each attribute was asked for and shown. */
  attributes: AttributeTallies;
  /** Every image, HWC RGB bytes, prompt by prompt. */
  images: Uint8Array[];
  resolution: number;
}

/** [N, 3, H, W] in [-1, 1] → HWC RGB bytes per image, as the metrics read them, and the grid of such images (see pipeline/images.ts). */
export { rgbGrid, tensorToRgb };

export async function evaluate(options: EvaluateOptions = {}): Promise<EvaluateResult> {
  const fn = 'evaluate';
  const o = checkOptions(fn, options, ['model', 'prompts', 'imagesPerPrompt', 'steps', 'guidanceScale', 'scheduler', 'seed', 'concept', 'gridPath', 'onProgress']);
  const prompts = (o.prompts ?? WORLD_EVAL_PROMPTS) as readonly string[];
  if (!Array.isArray(prompts) || prompts.length === 0 || !prompts.every((p) => typeof p === 'string')) {
    throw invalidArgument(`${fn}: prompts must be a non-empty array of strings, got ${describe(prompts)}`);
  }
  const perPrompt = checkInt(fn, 'imagesPerPrompt', o.imagesPerPrompt ?? 4, 1, 64);
  const references = o.concept === undefined ? undefined : (conceptById(o.concept as string, fn), conceptImages(o.concept as string, { resolution: WORLD_RESOLUTION, seed: 1 }).map((c) => c.image));
  if (o.gridPath !== undefined && (typeof o.gridPath !== 'string' || o.gridPath === '')) throw invalidArgument(`${fn}: gridPath must be a file path, got ${describe(o.gridPath)}`);
  const onProgress = o.onProgress as EvaluateOptions['onProgress'];
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgument(`${fn}: onProgress must be a function, got ${describe(onProgress)}`);
  const model = o.model ?? worldModelDir();
  if (typeof model !== 'string' && !(model instanceof StableDiffusionPipeline)) throw invalidArgument(`${fn}: model must be a folder path or a StableDiffusionPipeline, got ${describe(model)}`);
  const pipe = typeof model === 'string' ? await StableDiffusionPipeline.fromPretrained(model, { scheduler: (o.scheduler ?? 'dpm++2m') as SchedulerName }) : model;
  try {
    const r = WORLD_RESOLUTION;  // the metrics read the world's images
    const rows: PromptScores[] = [];
    const all: Uint8Array[] = [];
    const text: number[] = [];
    const image: number[] = [];
    const shape: number[] = [];
    const attributes = emptyTallies();
    for (let k = 0; k < prompts.length; k++) {
      const out = await pipe.generate({
        prompt: prompts[k], numImages: perPrompt, width: r, height: r,
        steps: (o.steps ?? 25) as number, guidanceScale: (o.guidanceScale ?? 4) as number, seed: ((o.seed ?? 0) as number) * 1000 + k,
        ...(onProgress === undefined ? {} : { onStep: (i: number, n: number) => onProgress(k * n + i, prompts.length * n) }),
      });
      const rgb = tensorToRgb(out.images);
      out.images.dispose();
      out.latents.dispose();
      const ts = rgb.map((img) => textAlignment(img, prompts[k], r));
      for (const img of rgb) attributeMatches(img, prompts[k], r, attributes);
      const row: PromptScores = { prompt: prompts[k], textAlignment: stat(ts) };
      text.push(...ts);
      if (references) {
        const is = rgb.map((img) => imageAlignment(img, references, r));
        row.imageAlignment = stat(is);
        image.push(...is);
        const ss = rgb.map((img) => shapeAlignment(img, references, r));
        row.shapeAlignment = stat(ss);
        shape.push(...ss);
      }
      rows.push(row);
      all.push(...rgb);
    }
    if (o.gridPath !== undefined) {
      const png = await rgbGrid(all, r, perPrompt);
      const tmp = `${o.gridPath}.tmp-${process.pid}`;
      await writeFile(tmp, png);
      await rename(tmp, o.gridPath as string);
    }
    const result: EvaluateResult = { rows, textAlignment: stat(text), attributes, images: all, resolution: r };
    if (references) {
      result.imageAlignment = stat(image);
      result.shapeAlignment = stat(shape);
    }
    return result;
  } finally {
    if (typeof model === 'string') pipe.dispose();
  }
}

/** A table: prompt, text alignment mean ± std (and image alignment), then the overall row. */
export function formatEvaluation(r: EvaluateResult): string {
  const width = Math.max(6, ...r.rows.map((x) => x.prompt.length));
  const cell = (s: Stat | undefined): string => (s ? `${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}` : '').padEnd(15);
  const img = r.imageAlignment !== undefined;
  const scores = (x: { textAlignment: Stat; imageAlignment?: Stat; shapeAlignment?: Stat }) => `${cell(x.textAlignment)}${img ? cell(x.imageAlignment) + cell(x.shapeAlignment) : ''}`;
  const lines = [`${'prompt'.padEnd(width)}  ${'text align'.padEnd(15)}${img ? `${'image align'.padEnd(15)}shape align` : ''}`];
  for (const row of r.rows) lines.push(`${row.prompt.padEnd(width)}  ${scores(row)}`);
  lines.push(`${'overall'.padEnd(width)}  ${scores(r)}`);
  const asked = WORLD_ATTRIBUTES.filter((a) => r.attributes[a].asked > 0);
  if (asked.length > 0) lines.push(`attributes shown: ${asked.map((a) => `${a} ${r.attributes[a].shown}/${r.attributes[a].asked}`).join(', ')}`);
  return lines.join('\n');
}
