// Pretrains the embedded world model with Imprint's own training loop: every
// UNet and text-encoder weight trainable, AdamW with warm-up and cosine decay,
// DDPM noise (v-prediction targets, the schedule of model-config.ts), captions
// dropped 10% of the time so classifier-free guidance works, an EMA of the
// weights that is what ships. The shipped model is several runs of it, each
// from the one before (SHIPPED_RECIPE in recipe.ts; npm run pretrain:world).
// The loss is the plain MSE by default:
// weighing object pixels more (`objectWeight`) makes colours bind faster but
// biases the model, because the weight depends on the image: the optimum of a
// weighted MSE is the weighted posterior mean, which leans toward object
// colour wherever the noisy input leaves the pixel uncertain, so objects grow
// into blobs that fill the picture (measured: at weight 4, 41/52 colours right
// but 8/52 shapes, 4/24 positions, 0/8 sizes after 2000 steps).
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { invalidArgument } from '../errors.js';
import { randn, tensor } from '../creation.js';
import { loadSafetensors, saveSafetensors } from '../io/safetensors.js';
import { parseClipTextConfig, parseUNetConfig } from '../models/configs.js';
import { initWeights } from '../models/init.js';
import { clipTextLayout } from '../models/layout-clip.js';
import { unetLayout } from '../models/layout-unet.js';
import { UNet2DConditionModel } from '../models/unet.js';
import { DDPMTraining } from '../schedulers/ddpm.js';
import type { Tensor } from '../tensor.js';
import { ClipTokenizer } from '../tokenizer/clip.js';
import { AdamW, warmupCosine } from '../train/optimizer.js';
import { denoisingStep } from '../train/denoising-step.js';
import { Progress } from '../train/progress.js';
import { RunState } from '../train/run-state.js';
import { checkInt, checkOptions, describe } from '../validate.js';
import { WORLD_MODEL_INDEX, WORLD_RESOLUTION, WORLD_SCHEDULER_CONFIG, WORLD_TEXT_ENCODER_CONFIG, WORLD_UNET_CONFIG } from './model-config.js';
import { SeededRandom } from '../train/random.js';
import { layoutSample, PALETTE, worldSample, type WorldSample } from './scene.js';
import { worldModelDir } from './model-path.js';

export interface PretrainOptions {
  /**
   * Where the finished diffusers folder goes (required: nothing is written
   * into the package unless named, so the shipped lib/world/model is only
   * replaced on purpose); a new folder gets initFrom's or the packaged tokenizer.
   */
  outDir?: string;
  /** Checkpoints (default `${outDir}/../world-pretrain`). */
  workDir?: string;
  steps?: number;
  batchSize?: number;
  /** Peak learning rate (default 1e-3). */
  lr?: number;
  warmup?: number;
  /**
   * Steps where an earlier, shorter plan of this run ended (ascending, below
   * `steps`): the lr follows warm-up and cosine decay toward the first of them,
   * then on each the decay is stretched to the next end (the lr rises, then
   * decays again: a warm restart). This is what resuming a finished run with a
   * larger `steps` does; naming the ends makes such a run one command
   * (e.g. steps 10000, restartsAt [4000, 6000]: see the README's world section).
   */
  restartsAt?: readonly number[];
  seed?: number;
  /** Write a checkpoint every this many steps (default 250). */
  checkpointEvery?: number;
  /** Continue from the checkpoint in workDir when there is one (default true). */
  resume?: boolean;
  /** Extra loss weight of object pixels: they weigh 1 + objectWeight, the background 1 (default 0, the plain MSE; see the note above on its bias). */
  objectWeight?: number;
  /**
   * Share of the samples whose timestep is drawn from [HIGH_NOISE_FROM, 999]
   * instead of [0, 999] (default 0): see sampleTimesteps.
   */
  highNoiseFraction?: number;
  /**
   * Share of the samples replaced by layout samples (one object, every
   * attribute named; see layoutSample) at timesteps [HIGH_NOISE_FROM, 999]
   * (default 0). Why: the world's own captions name a position 60% of the time
   * and often leave the background out, and with them even 100% high-noise
   * training left the first-phase model ignoring position words, while layout
   * samples taught them: the shipped model's later phases use 0.2 (see the
   * README's world section and recipe.ts).
   */
  layoutFraction?: number;
  /** Probability of training on the empty caption (default 0.1). */
  uncondProb?: number;
  /** Stored dtype of the shipped weights (default 'f16', half the size; loaded as f32). */
  saveDtype?: 'f16' | 'f32';
  quiet?: boolean;
  /** Stop after this many steps of this run (to split pretraining over sessions); default: run to the end. */
  maxStepsThisRun?: number;
  /**
   * A world model folder (diffusers layout, as this function writes) whose UNet
   * and text-encoder weights start the run instead of the random init: a
   * further phase of pretraining with other settings (e.g. a larger
   * highNoiseFraction). The optimizer state and the EMA start fresh.
   */
  initFrom?: string;
}

export interface PretrainResult {
  steps: number;
  outDir: string;
  /** Mean loss of the last 50 steps. */
  finalLoss: number;
  secondsPerStep: number;
}

const UNET = 'unet/';
const TEXT = 'text_encoder/';
/** The weight file of each part in the diffusers folder that saveWorldModel writes. */
const WEIGHT_FILES = [[UNET, 'diffusion_pytorch_model.safetensors'], [TEXT, 'model.safetensors']] as const;
/** Settings added after the first checkpoints were written: what those runs used, for a checkpoint without them. */
const SETTINGS_BEFORE_RECORDED: Readonly<Record<string, string>> = { objectWeight: '0', highNoiseFraction: '0', layoutFraction: '0', initFrom: 'none' };

/** The output folder, required: the only natural default is the package's own lib/world/model, which must not be overwritten by accident. */
export function checkOutDir(fn: string, outDir: unknown): string {
  if (outDir === undefined) throw invalidArgument(`${fn}: outDir is required (the folder the trained model is written to; the packaged lib/world/model is only written when named)`);
  if (typeof outDir !== 'string' || outDir === '') throw invalidArgument(`${fn}: outDir must be a folder path, got ${describe(outDir)}`);
  return outDir;
}

const keep = <T extends Tensor>(owned: Tensor[], t: T): T => (owned.push(t), t);

/** Images (HWC RGB bytes) → one [N, 3, R, R] f32 tensor in [-1, 1]. */
export function imagesToTensor(images: readonly Uint8Array[], resolution: number): Tensor<'f32'> {
  const n = images.length;
  const plane = resolution * resolution;
  const out = new Float32Array(n * 3 * plane);
  images.forEach((img, b) => {
    if (img.length !== plane * 3) throw invalidArgument(`imagesToTensor: image ${b} has ${img.length} bytes, expected ${plane * 3} (${resolution}×${resolution} RGB)`);
    for (let p = 0; p < plane; p++) for (let c = 0; c < 3; c++) out[(b * 3 + c) * plane + p] = img[p * 3 + c] / 127.5 - 1;
  });
  return tensor(out, { shape: [n, 3, resolution, resolution] });
}

/**
 * Per-pixel loss weights [N, 1, R, R]: 1 + objectWeight where the render
 * differs from the scene's background colour (objects never share it), 1
 * elsewhere. Anti-aliased edges count as object.
 */
export function lossWeights(samples: readonly WorldSample[], resolution: number, objectWeight: number): Tensor<'f32'> {
  const plane = resolution * resolution;
  const out = new Float32Array(samples.length * plane);
  samples.forEach((s, b) => {
    const bg = PALETTE[s.scene.background];
    for (let p = 0; p < plane; p++) {
      const object = s.image[p * 3] !== bg[0] || s.image[p * 3 + 1] !== bg[1] || s.image[p * 3 + 2] !== bg[2];
      out[b * plane + p] = object ? 1 + objectWeight : 1;
    }
  });
  return tensor(out, { shape: [samples.length, 1, resolution, resolution] });
}

export async function pretrainWorld(options: PretrainOptions = {}): Promise<PretrainResult> {
  const fn = 'pretrainWorld';
  const o = checkOptions(fn, options, ['outDir', 'workDir', 'steps', 'batchSize', 'lr', 'warmup', 'restartsAt', 'seed', 'checkpointEvery', 'resume', 'objectWeight', 'highNoiseFraction', 'layoutFraction', 'uncondProb', 'saveDtype', 'quiet', 'maxStepsThisRun', 'initFrom']);
  const steps = checkInt(fn, 'steps', o.steps ?? 4000, 1, 10_000_000);
  const batch = checkInt(fn, 'batchSize', o.batchSize ?? 16, 1, 4096);
  const warmup = checkInt(fn, 'warmup', o.warmup ?? Math.min(200, steps), 0, steps);
  const restartsAt = o.restartsAt ?? [];
  if (!Array.isArray(restartsAt)) throw invalidArgument(`${fn}: restartsAt must be an array of step numbers, got ${describe(restartsAt)}`);
  restartsAt.forEach((r, i) => {
    const [lo, after] = i === 0 ? [warmup, 'warmup'] : [restartsAt[i - 1] as number, `restartsAt[${i - 1}]`];
    if (!Number.isSafeInteger(r) || (r as number) <= lo || (r as number) >= steps) {
      throw invalidArgument(`${fn}: restartsAt[${i}] must be an integer above ${after} (${lo}) and below steps (${steps}), got ${describe(r)}`);
    }
  });
  const planEnds = [...(restartsAt as number[]), steps];
  const seed = checkInt(fn, 'seed', o.seed ?? 0, 0, 2 ** 31);
  const every = checkInt(fn, 'checkpointEvery', o.checkpointEvery ?? 250, 1, 10_000_000);
  const lr = o.lr ?? 1e-3;
  if (typeof lr !== 'number' || !(lr > 0 && lr < 1)) throw invalidArgument(`${fn}: lr must be in (0, 1), got ${describe(lr)}`);
  const uncond = o.uncondProb ?? 0.1;
  if (typeof uncond !== 'number' || !(uncond >= 0 && uncond <= 1)) throw invalidArgument(`${fn}: uncondProb must be in [0, 1], got ${describe(uncond)}`);
  const objectWeight = o.objectWeight ?? 0;
  if (typeof objectWeight !== 'number' || !(objectWeight >= 0 && objectWeight <= 100)) throw invalidArgument(`${fn}: objectWeight must be in [0, 100], got ${describe(objectWeight)}`);
  const highNoise = o.highNoiseFraction ?? 0;
  if (typeof highNoise !== 'number' || !(highNoise >= 0 && highNoise <= 1)) throw invalidArgument(`${fn}: highNoiseFraction must be in [0, 1], got ${describe(highNoise)}`);
  const layoutShare = o.layoutFraction ?? 0;
  if (typeof layoutShare !== 'number' || !(layoutShare >= 0 && layoutShare <= 1)) throw invalidArgument(`${fn}: layoutFraction must be in [0, 1], got ${describe(layoutShare)}`);
  const saveDtype = o.saveDtype ?? 'f16';
  if (saveDtype !== 'f16' && saveDtype !== 'f32') throw invalidArgument(`${fn}: saveDtype must be 'f16' or 'f32', got ${describe(saveDtype)}`);
  const maxThisRun = o.maxStepsThisRun === undefined ? Infinity : checkInt(fn, 'maxStepsThisRun', o.maxStepsThisRun, 1, 10_000_000);
  const initFrom = o.initFrom;
  if (initFrom !== undefined && typeof initFrom !== 'string') throw invalidArgument(`${fn}: initFrom must be a world model folder, got ${describe(initFrom)}`);
  const outDir = checkOutDir(fn, o.outDir);
  const workDir = (o.workDir as string | undefined) ?? join(outDir, '..', 'world-pretrain');
  const tokDir = join(outDir, 'tokenizer');
  if (!existsSync(join(tokDir, 'vocab.json'))) copyTokenizer(fn, tokDir, initFrom);

  const tokenizer = await ClipTokenizer.fromFolder(tokDir);
  const unetCfg = parseUNetConfig(WORLD_UNET_CONFIG, fn);
  const textCfg = parseClipTextConfig(WORLD_TEXT_ENCODER_CONFIG, fn);
  const ddpm = DDPMTraining.fromConfig(WORLD_SCHEDULER_CONFIG);
  const params = new Map<string, Tensor>();
  for (const [n, t] of await initWeights(unetLayout(unetCfg), { seed })) params.set(UNET + n, t);
  for (const [n, t] of await initWeights(clipTextLayout(textCfg), { seed: seed + 1 })) params.set(TEXT + n, t);
  if (initFrom !== undefined) await overwriteFromModel(fn, params, initFrom);
  const opt = await AdamW.create(params, { weightDecay: 1e-2, maxGradNorm: 1, emaDecay: 0.999 });

  // What a checkpoint must have been written with to be resumed (stored in its metadata).
  const run = new RunState(fn, workDir, {
    seed: String(seed), batch: String(batch), objectWeight: String(objectWeight), highNoiseFraction: String(highNoise), layoutFraction: String(layoutShare), initFrom: initFrom ?? 'none',
  }, { recordedSince: SETTINGS_BEFORE_RECORDED, startOver: 'remove it or pass the same settings' });
  const start = run.resumeStep(o.resume !== false);
  if (start > 0) await run.restore(opt, start);

  const split = (prefix: string): Map<string, Tensor> =>
    new Map([...opt.params].filter(([n]) => n.startsWith(prefix)).map(([n, t]) => [n.slice(prefix.length), t]));
  const textNames = [...split(TEXT).keys()];
  const progress = new Progress(steps, start, { label: 'pretrain world', quiet: o.quiet === true });
  const losses: number[] = [];
  const end = Math.min(steps, start + maxThisRun);
  mkdirSync(workDir, { recursive: true });

  for (let step = start; step < end; step++) {
    const { samples, captions, timesteps } = pretrainBatch(seed, step, batch, { uncondProb: uncond, highNoiseFraction: highNoise, layoutFraction: layoutShare });
    const ids = new Int32Array(batch * 77);
    captions.forEach((c, i) => ids.set(tokenizer.encodePadded(c).ids, i * 77));
    const x0 = imagesToTensor(samples.map((s) => s.image), WORLD_RESOLUTION);
    const owned: Tensor[] = [x0];
    try {
      const b = {
        ids: keep(owned, tensor(ids, { shape: [batch, 77] })), x0, timesteps,
        noise: keep(owned, await randn(x0.shape, { seed: seed * 1_000_003 + step })) as Tensor<'f32'>,
        ...(objectWeight > 0 ? { mask: keep(owned, lossWeights(samples, WORLD_RESOLUTION, objectWeight)) } : {}),
      };
      const unet = UNet2DConditionModel.fromWeights(WORLD_UNET_CONFIG, split(UNET));
      const g = await denoisingStep({ unet, textConfig: WORLD_TEXT_ENCODER_CONFIG, textWeights: split(TEXT), ddpm }, b, { unet: 'all', text: textNames }, owned);
      run.guard(step, g.loss, Infinity);
      const grads = new Map<string, Tensor>();
      for (const [n, t] of g.unet) grads.set(UNET + n, t);
      for (const [n, t] of g.text) grads.set(TEXT + n, t);
      const { gradNorm } = await opt.update(grads, scheduleLr(step, planEnds, lr, warmup));
      losses.push(g.loss);
      if (losses.length > 50) losses.shift();
      progress.update(step + 1, { loss: g.loss, gradNorm });
    } finally {
      for (const t of owned) if (!t.disposed) t.dispose();
    }
    if ((step + 1) % every === 0 || step + 1 === end) await run.save(opt, step + 1);
  }

  if (end === steps) {
    const averaged = await opt.averagedWeights();
    try {
      await saveWorldModel(outDir, averaged, saveDtype);
    } finally {
      for (const t of averaged.values()) t.dispose();
    }
  }
  const result = { steps: end, outDir, finalLoss: losses.reduce((a, b) => a + b, 0) / Math.max(1, losses.length), secondsPerStep: progress.secondsPerStep(end) };
  opt.dispose();
  return result;
}

/** Replaces the initial weights in `params` by those of the world model folder `dir` (same names and shapes, cast to f32). */
async function overwriteFromModel(fn: string, params: Map<string, Tensor>, dir: string): Promise<void> {
  for (const [prefix, file] of WEIGHT_FILES) {
    const path = join(dir, prefix, file);
    if (!existsSync(path)) throw invalidArgument(`${fn}: initFrom ${dir} has no ${prefix}${file}`);
    const loaded = await loadSafetensors(path, { dtype: 'f32' });
    const names = [...params.keys()].filter((n) => n.startsWith(prefix));
    // All checked before any is replaced, so a bad file leaves params whole.
    for (const n of names) {
      const src = loaded.get(n.slice(prefix.length));
      const want = params.get(n)!.shape;
      if (src === undefined || src.shape.join() !== want.join()) {
        for (const t of loaded.values()) t.dispose();
        throw invalidArgument(`${fn}: ${path}: tensor ${n.slice(prefix.length)} ${src === undefined ? 'is missing' : `has shape [${src.shape}], expected [${want}]`}`);
      }
    }
    for (const n of names) {
      params.get(n)!.dispose();
      params.set(n, loaded.get(n.slice(prefix.length))!);
      loaded.delete(n.slice(prefix.length));
    }
    for (const t of loaded.values()) t.dispose();
  }
}

export interface PretrainBatch {
  samples: WorldSample[];
  /** The samples' captions, '' where dropped for classifier-free guidance. */
  captions: string[];
  timesteps: number[];
}

/**
 * The batch of `step`: world samples (caption dropped with probability
 * uncondProb, timesteps from sampleTimesteps), each replaced with probability
 * layoutFraction by a layout sample at a timestep in [HIGH_NOISE_FROM, 999].
 */
export function pretrainBatch(
  seed: number, step: number, batch: number,
  o: { uncondProb: number; highNoiseFraction: number; layoutFraction: number },
): PretrainBatch {
  const rng = new SeededRandom(seed).fork(`step ${step}`);
  const dropped = Array.from({ length: batch }, () => rng.chance(o.uncondProb));
  const timesteps = sampleTimesteps(rng, batch, o.highNoiseFraction);
  // Layout draws come last and only when asked for, so runs without them consume the generator as before.
  const samples = Array.from({ length: batch }, (_, i) => {
    if (o.layoutFraction > 0 && rng.chance(o.layoutFraction)) {
      timesteps[i] = rng.int(HIGH_NOISE_FROM, 999);
      return layoutSample(seed, step * batch + i, WORLD_RESOLUTION);
    }
    return worldSample(seed, step * batch + i, WORLD_RESOLUTION);
  });
  return { samples, captions: samples.map((s, i) => (dropped[i] ? '' : s.caption)), timesteps };
}

/** Where the high-noise timesteps of sampleTimesteps start. */
export const HIGH_NOISE_FROM = 950;

/**
 * Training timesteps: uniform over [0, 999], except that each is drawn from
 * [HIGH_NOISE_FROM, 999] with probability highNoiseFraction. Why: at 32×32
 * under the cosine schedule an object stays visible in x_t up to t ≈ 900 (√ᾱ
 * ≈ 0.15 over ~100 pixels), so only the top ~5% of timesteps need the caption
 * to say where it goes; with uniform sampling that signal is diluted, and the
 * models ignored position words entirely (measured: the x0 prediction at
 * t = 999 the same to 3 decimals for left/right/top/bottom after 4000 and 10000
 * steps; a fresh UNet trained only at t ≥ 950 on the four positions learned
 * them within 150 steps). Not yet enough on the full world: a 4000-step run at
 * 0.25 still ignored position words. With highNoiseFraction 0 the generator is consumed
 * exactly as before (one draw per sample), so earlier runs reproduce.
 */
export function sampleTimesteps(rng: SeededRandom, batch: number, highNoiseFraction: number): number[] {
  if (highNoiseFraction === 0) return Array.from({ length: batch }, () => rng.int(0, 999));
  return Array.from({ length: batch }, () => (rng.chance(highNoiseFraction) ? rng.int(HIGH_NOISE_FROM, 999) : rng.int(0, 999)));
}

/**
 * Puts the CLIP tokenizer into a new model folder: initFrom's when it has
 * one, else the packaged model's (the same vocabulary), copied under a
 * temporary name first so an interrupted copy leaves no half folder.
 */
function copyTokenizer(fn: string, tokDir: string, initFrom: string | undefined): void {
  const from = [initFrom, worldModelDir()].filter((d): d is string => d !== undefined).map((d) => join(d, 'tokenizer')).find((d) => existsSync(join(d, 'vocab.json')));
  if (from === undefined || resolve(from) === resolve(tokDir)) throw invalidArgument(`${fn}: ${tokDir} must hold the CLIP tokenizer (vocab.json, merges.txt)`);
  const tmp = `${tokDir}.tmp-${process.pid}`;
  mkdirSync(join(tokDir, '..'), { recursive: true });
  rmSync(tmp, { recursive: true, force: true });
  cpSync(from, tmp, { recursive: true });
  renameSync(tmp, tokDir);
}

/** The lr of `step` when the run was planned to end at planEnds[0], then extended to each later end in turn. */
export function scheduleLr(step: number, planEnds: readonly number[], lr: number, warmup: number): number {
  const end = planEnds.find((e) => step < e) ?? planEnds[planEnds.length - 1];
  return warmupCosine(step, end, lr, warmup);
}

/** Writes the diffusers folder (configs, weights named unet/… and text_encoder/…, stored in `dtype`); the tokenizer/ folder is already there. */
export async function saveWorldModel(outDir: string, weights: Map<string, Tensor>, dtype: 'f16' | 'f32'): Promise<void> {
  const json = async (path: string, value: unknown): Promise<void> => {
    mkdirSync(join(path, '..'), { recursive: true });
    await writeFile(`${path}.tmp`, JSON.stringify(value, null, 2) + '\n');
    await rename(`${path}.tmp`, path);
  };
  const part = async (prefix: string, file: string): Promise<void> => {
    const out = new Map<string, Tensor>();
    for (const [n, t] of weights) if (n.startsWith(prefix)) out.set(n.slice(prefix.length), dtype === 'f32' ? t : await t.cast(dtype));
    mkdirSync(join(outDir, prefix), { recursive: true });
    await saveSafetensors(join(outDir, prefix, file), out, { format: 'pt' });
    if (dtype !== 'f32') for (const t of out.values()) t.dispose();
  };
  await json(join(outDir, 'model_index.json'), WORLD_MODEL_INDEX);
  await json(join(outDir, 'unet', 'config.json'), WORLD_UNET_CONFIG);
  await json(join(outDir, 'text_encoder', 'config.json'), WORLD_TEXT_ENCODER_CONFIG);
  await json(join(outDir, 'scheduler', 'scheduler_config.json'), WORLD_SCHEDULER_CONFIG);
  for (const [prefix, file] of WEIGHT_FILES) await part(prefix, file);
}
