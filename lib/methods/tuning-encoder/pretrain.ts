// Pretraining the tuning encoder (DESIGN §1.3) on a set of images of one
// domain (class-agnostic, no masks): each step draws a batch, runs
// encoderStep and moves every encoder parameter with AdamW under linear
// warm-up and cosine decay; checkpoints and exact resume come from the
// shared run state. The UNet and text encoder stay frozen.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';

import { loadImagesWithCaptions, squarePixels, type RgbImage } from '../../concepts/data.js';
import { randn, tensor } from '../../creation.js';
import { checkUsableDevice } from '../../device.js';
import { invalidArgument } from '../../errors.js';
import type { AutoencoderKL } from '../../models/vae.js';
import { scale } from '../../nn/act.js';
import { PIXEL_SPACE } from '../../pipeline/pixel-space.js';
import { AdamW, warmupCosine } from '../../train/optimizer.js';
import { Progress } from '../../train/progress.js';
import { SeededRandom } from '../../train/random.js';
import { RunState } from '../../train/run-state.js';
import { disposeTrainingModel, loadTrainingModel, type TrainingModel } from '../../train/training-model.js';
import type { Tensor } from '../../tensor.js';
import { checkBoolean, checkInt, checkNumberIn, checkOptions, checkString, describe, isPlainObject } from '../../validate.js';
import { TuningEncoder, type TuningEncoderSpec } from './model.js';
import { EncoderStepContext, encoderStep, type EncoderStepOptions } from './step.js';

/** The losses' weights and the dual path's α, shared by pretraining and personalization. */
export interface EncoderLossOptions {
  /** Dual-path blend α (default 0.5 in pretraining). */
  alpha?: number;
  contrastiveWeight?: number;
  temperature?: number;
  neighbours?: number;
  embeddingL2?: number;
  loraL2?: number;
}

export interface PretrainEncoderOptions extends EncoderLossOptions {
  /** A diffusers model folder (or the embedded world's). */
  model: string;
  /** The domain's images: a folder, a list, or a function giving step `step`'s batch (e.g. a procedural source). */
  images: string | ReadonlyArray<string | Buffer | Uint8Array> | ((step: number, batch: number) => RgbImage[]);
  /** For a function source: a name for what it generates, kept in the settings so that a work dir resumes only with the same source (default 'generated'). */
  imagesId?: string;
  /** The domain's class word (v* starts from its embedding), e.g. 'dog'. */
  classWord: string;
  /** The ViT's CLIPVisionConfig (default: 2 layers, width 64, patches of resolution/8, at the model's resolution). */
  vision?: Record<string, unknown>;
  /** Trunk width (default 128). */
  hidden?: number;
  /** LoRA rank (default 4). */
  rank?: number;
  /** Channels of the 3×3 convolution over each UNet feature map (default none: the maps are averaged straight into the trunk). */
  conv?: number;
  /** The constant s of the predicted ΔW = s·up·down (default 1). */
  loraScale?: number;
  steps?: number;
  batchSize?: number;
  /** Peak learning rate (default 1e-3 ... the paper's 1e-4 is for SD-size encoders). */
  lr?: number;
  warmup?: number;
  seed?: number;
  resolution?: number;
  workDir?: string;
  checkpointEvery?: number;
  resume?: boolean;
  /** Stop after this many steps in this call (the schedule stays the `steps` one; resume later with workDir). */
  maxStepsThisRun?: number;
  device?: string;
  onProgress?: (info: { step: number; steps: number; loss: number; diffusion: number }) => void;
  quiet?: boolean;
}

export interface PretrainEncoderResult {
  encoder: TuningEncoder;
  losses: number[];
  /** Steps done in all (resumed ones included). */
  steps: number;
  baseFingerprint: string;
  secondsPerStep: number;
  settings: Record<string, string>;
}

const OPTION_KEYS = ['model', 'images', 'imagesId', 'classWord', 'vision', 'hidden', 'rank', 'conv', 'loraScale', 'steps', 'batchSize', 'lr', 'warmup', 'seed', 'resolution', 'workDir', 'checkpointEvery', 'resume', 'maxStepsThisRun',
  'device', 'onProgress', 'quiet', 'alpha', 'contrastiveWeight', 'temperature', 'neighbours', 'embeddingL2', 'loraL2'];

/** The step options from the loss options, with the phase's default α. */
export function stepOptions(fn: string, o: EncoderLossOptions, alpha: number): EncoderStepOptions {
  return {
    alpha: checkNumberIn(fn, 'alpha', o.alpha, 0, 1, alpha),
    contrastiveWeight: checkNumberIn(fn, 'contrastiveWeight', o.contrastiveWeight, 0, 1e6, 0.01),
    temperature: checkNumberIn(fn, 'temperature', o.temperature, 1e-6, 1e6, 0.07),
    neighbours: checkInt(fn, 'neighbours', o.neighbours, 1, 256, 8),
    embeddingL2: checkNumberIn(fn, 'embeddingL2', o.embeddingL2, 0, 1e6, 1e-4),
    loraL2: checkNumberIn(fn, 'loraL2', o.loraL2, 0, 1e6, 1e-4),
  };
}

/** The encoder's spec for a training model: LoRA on every cross-attention K/V. */
export function encoderSpecFor(m: TrainingModel, o: { vision?: Record<string, unknown>; hidden: number; rank: number; conv?: number; loraScale?: number }): TuningEncoderSpec {
  const c = m.unet.config;
  const targets = m.unet.weightNames.filter((n) => /\.attn2\.to_[kv]\.weight$/.test(n)).map((w) => {
    const [out, inp] = m.unet.weights[m.unet.weightNames.indexOf(w)].shape;
    return { weight: w, in: inp, out };
  });
  const side = m.resolution;
  return {
    vision: o.vision ?? { hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 4, image_size: side, patch_size: Math.max(1, side / 8), num_channels: 3 },
    featureChannels: [...c.blockOutChannels, c.blockOutChannels[c.blockOutChannels.length - 1]],
    hidden: o.hidden, tokenDim: m.encoder.config.hiddenSize, rank: o.rank, targets, ...(o.conv ? { conv: o.conv } : {}),
    ...(o.loraScale !== undefined && o.loraScale !== 1 ? { loraScale: o.loraScale } : {}),
  };
}

/** Pretrains a tuning encoder; see PretrainEncoderOptions. */
export async function pretrainEncoder(options: PretrainEncoderOptions): Promise<PretrainEncoderResult> {
  const fn = 'pretrainEncoder';
  if (!isPlainObject(options)) throw invalidArgument(`${fn}: options must be an object { model, images, classWord, ... }, got ${describe(options)}`);
  const o = checkOptions(fn, options, OPTION_KEYS);
  const modelDir = checkString(fn, 'model', o.model);
  const classWord = checkString(fn, 'classWord', o.classWord);
  const steps = checkInt(fn, 'steps', o.steps, 1, 10_000_000, 2000);
  const batch = checkInt(fn, 'batchSize', o.batchSize, 1, 1024, 4);
  const lr = checkNumberIn(fn, 'lr', o.lr, 0, 1, 1e-3);
  const warmup = checkInt(fn, 'warmup', o.warmup, 0, steps, Math.min(100, Math.floor(steps / 10)));
  const seed = checkInt(fn, 'seed', o.seed, 0, 2 ** 31, 0);
  const hidden = checkInt(fn, 'hidden', o.hidden, 1, 1 << 16, 128);
  const rank = checkInt(fn, 'rank', o.rank, 1, 256, 4);
  const conv = o.conv === undefined ? undefined : checkInt(fn, 'conv', o.conv, 1, 4096);
  const loraScale = checkNumberIn(fn, 'loraScale', o.loraScale, 1e-6, 1e6, 1);
  const every = checkInt(fn, 'checkpointEvery', o.checkpointEvery, 1, 10_000_000, 250);
  const resume = checkBoolean(fn, 'resume', o.resume, true);
  const maxThisRun = checkInt(fn, 'maxStepsThisRun', o.maxStepsThisRun, 1, 10_000_000, 10_000_000);
  const quiet = checkBoolean(fn, 'quiet', o.quiet, false);
  const workDir = o.workDir === undefined ? undefined : checkString(fn, 'workDir', o.workDir);
  const onProgress = o.onProgress as PretrainEncoderOptions['onProgress'];
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgument(`${fn}: onProgress must be a function, got ${describe(onProgress)}`);
  const so = stepOptions(fn, o as EncoderLossOptions, 0.5);
  const device = checkUsableDevice(fn, o.device ?? 'cpu');
  if (device !== 'cpu') throw invalidArgument(`${fn}: the tuning encoder trains on the CPU for now (device '${device}')`);
  const source = o.images as PretrainEncoderOptions['images'];
  if (o.imagesId !== undefined && typeof source !== 'function') throw invalidArgument(`${fn}: imagesId names a function source; images is a folder or list, whose digest is recorded instead`);
  const imagesId = checkString(fn, 'imagesId', o.imagesId, 'generated');
  let pool: RgbImage[] | undefined;
  if (typeof source !== 'function') pool = (await loadImagesWithCaptions(fn, 'images', source)).map((s) => s.image);

  const m = await loadTrainingModel(fn, modelDir, device, o.resolution);
  let encoder: TuningEncoder | undefined;
  let opt: AdamW | undefined;
  let ctx: EncoderStepContext | undefined;
  try {
    ctx = await EncoderStepContext.create({ unet: m.unet, textConfig: m.rawText, textWeights: m.model.textEncoder.weights, tokenizer: m.tokenizer, ddpm: m.ddpm });
    const spec = encoderSpecFor(m, { ...(o.vision ? { vision: o.vision as Record<string, unknown> } : {}), hidden, rank, conv, loraScale });
    encoder = await TuningEncoder.create(spec, { seed });
    opt = await AdamW.create(encoder.params as Map<string, Tensor>, { weightDecay: 0, maxGradNorm: 1 });
    const settings = {
      seed: String(seed), batch: String(batch), lr: String(lr), steps: String(steps), classWord, spec: JSON.stringify(spec),
      losses: JSON.stringify(so), data: typeof source === 'function' ? imagesId : digest(pool!),
    };
    const run = new RunState(fn, workDir, { method: 'tuning-encoder', fingerprint: m.fingerprint, ...settings }, { lossHint: 'Lower lr?' });
    const start = run.resumeStep(resume);
    if (start > steps) throw invalidArgument(`${fn}: the checkpoint in ${workDir} is at step ${start}, past steps ${steps}`);
    if (start > 0) await run.restore(opt, start);
    const root = new SeededRandom(seed);
    const progress = new Progress(steps, start, { label: 'pretrain encoder', quiet });
    const losses: number[] = [];
    const T = m.ddpm.config.numTrainTimesteps;
    const end = Math.min(steps, start + maxThisRun);
    if (workDir !== undefined) mkdirSync(workDir, { recursive: true });
    for (let step = start; step < end; step++) {
      const rng = root.fork(`step ${step}`);
      const images = typeof source === 'function' ? source(step, batch) : Array.from({ length: batch }, () => pool![rng.int(0, pool!.length - 1)]);
      if (!Array.isArray(images) || images.length !== batch) throw invalidArgument(`${fn}: images(${step}, ${batch}) must return ${batch} images`);
      const owned: Tensor[] = [];
      try {
        const px = new Float32Array(batch * 3 * m.resolution * m.resolution);
        for (const [i, im] of images.entries()) px.set(await squarePixels(im, m.resolution), i * px.length / batch);
        const pixels = tensor(px, { shape: [batch, 3, m.resolution, m.resolution] });
        owned.push(pixels);
        const x0 = await latents(m, pixels);
        if (x0 !== pixels) owned.push(x0);
        const noise = (await randn(x0.shape, { seed: seed * 1_000_003 + step })) as Tensor<'f32'>;
        owned.push(noise);
        const timesteps = images.map(() => rng.int(0, T - 1));
        const r = await encoderStep(ctx, encoder, { pixels, x0, noise, timesteps, classWord }, so);
        owned.push(...r.grads.values());
        run.guard(step, r.loss, Infinity);
        await opt.update(r.grads as Map<string, Tensor>, warmupCosine(step, steps, lr, warmup));
        losses.push(r.loss);
        progress.update(step + 1, { loss: r.loss, diffusion: r.diffusion });
        onProgress?.({ step: step + 1, steps, loss: r.loss, diffusion: r.diffusion });
      } finally {
        for (const t of owned) if (!t.disposed) t.dispose();
      }
      if (workDir !== undefined && ((step + 1) % every === 0 || step + 1 === end)) await run.save(opt, step + 1);
    }
    const result = { encoder, losses, steps: end, baseFingerprint: m.fingerprint, secondsPerStep: progress.secondsPerStep(steps), settings };
    opt.disposeState();
    opt = undefined;  // the encoder owns the parameters now
    return result;
  } catch (e) {
    if (opt) opt.dispose();
    else encoder?.dispose();
    throw e;
  } finally {
    ctx?.dispose();
    disposeTrainingModel(m);
  }
}

/** The latents of pixels [B, 3, R, R] in [-1, 1] (the pixels themselves in pixel space). */
export async function latents(m: TrainingModel, pixels: Tensor<'f32'>): Promise<Tensor<'f32'>> {
  if (m.vae === PIXEL_SPACE) return pixels;
  const vae = m.vae as AutoencoderKL;
  const { mean, logvar } = await vae.encode(pixels);
  logvar.dispose();
  try {
    return (await scale(mean as Tensor<'f32'>, vae.scalingFactor)) as Tensor<'f32'>;
  } finally {
    mean.dispose();
  }
}

function digest(images: readonly RgbImage[]): string {
  const h = createHash('sha256');
  for (const im of images) h.update(`${im.width}x${im.height}:`).update(im.data);
  return `sha256:${h.digest('hex').slice(0, 32)}`;
}
