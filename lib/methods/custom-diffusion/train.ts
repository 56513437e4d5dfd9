// The Custom Diffusion training loop (DESIGN §1.1): one or several concepts,
// each a new token ('<new1>') and a few instance images, trained jointly with
// prior preservation. Only the cross-attention K/V (mode 'kv') or all of
// attn2 (mode 'cross') and the new tokens' embedding rows train; every other
// weight is never written. The key/value of the start-of-text position get
// no gradient. Reproducible: the augmented variants are drawn from the seed
// once, and step k's batch, timesteps and noise come from seeds derived from
// k, so a run resumed from a checkpoint ends exactly where an uninterrupted
// one does. With `device` every tensor of a step lives on that GPU; files
// (latent cache, checkpoints, the concept) are written from host copies.
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ImprintError, invalidArgument } from '../../errors.js';
import { tensor } from '../../creation.js';
import { checkUsableDevice } from '../../device.js';
import type { LoadedDiffusersModel } from '../../models/checkpoint.js';
import { TOKEN_EMBEDDING } from '../../models/clip-text-backward.js';
import { AutoencoderKL } from '../../models/vae.js';
import { concat } from '../../nn/concat.js';
import { embedding } from '../../nn/embedding.js';
import { PIXEL_SPACE } from '../../pipeline/pixel-space.js';
import { combine } from '../../schedulers/combine.js';
import { Tensor } from '../../tensor.js';
import { AdamW } from '../../train/optimizer.js';
import { denoisingStep } from '../../train/denoising-step.js';
import { encodeLatent, LatentCache } from '../../train/latent-cache.js';
import { batchTensors, priorPreservationBatch, type Sample } from '../../train/prior-batch.js';
import { Progress } from '../../train/progress.js';
import { onDevice, RunState } from '../../train/run-state.js';
import { basePipeline, loadTrainingModel } from '../../train/training-model.js';
import { checkBoolean, checkInt, checkNumberIn, checkOptions, checkString, describe, isPlainObject } from '../../validate.js';
import { SeededRandom } from '../../train/random.js';
import { augmentImage, augmentMask, planAugmentation, type AugmentPlan, type AugmentSettings } from './augment.js';
import { loadImagesWithCaptions, type CaptionedImage, type ImageSource, type RgbImage, type SourceImage } from '../../concepts/data.js';
import { folderRegularization, generatedRegularization } from '../../concepts/regularization.js';
import type { CustomDiffusionConcept, CustomDiffusionMode } from '../../concepts/types.js';

/** Rare single-BPE-token words of the CLIP vocabulary the reference implementation starts new tokens from. */
// Rare words that are one token of the CLIP vocabulary ('ktn', the Custom Diffusion repo's choice, is two: k + tn).
export const DEFAULT_INITIALIZERS = ['pll', 'ucd', 'sks'] as const;

export interface ConceptSpec {
  /** The new token; default '<new1>', '<new2>', ... */
  token?: string;
  /** An existing word that is one token; its embedding row starts the new one. Default 'pll', 'ucd', 'sks' by position. */
  initializer?: string;
  /** The class the concept belongs to, e.g. 'dog'. */
  classWord: string;
  /** Default `photo of a ${token} ${classWord}`. */
  instancePrompt?: string;
  /**
   * One prompt per image, in the images' order (a folder's: sorted by file
   * name), each naming the token: captions that say what else is in the
   * picture ("a <new1> toy on a beach") let the token hold the subject alone.
   * Without it an image file's same-name .txt is its prompt, and
   * instancePrompt that of images with neither. Words about where the subject
   * is or how big go stale under augment and hflip: turn those off for them.
   */
  instancePrompts?: readonly string[];
  /** The concept's images: a folder, a list of paths, or encoded image Buffers; an image file's same-name .txt is its prompt (see instancePrompts). */
  images: ImageSource;
  /** Prompt of the generated regularization images (and caption of uncaptioned folder images); default `photo of a ${classWord}`. */
  classPrompt?: string;
  /** A folder of regularization images with same-name .txt captions; default: sampled by the base model from classPrompt. */
  regImages?: string;
  /** How many regularization images (default 200). */
  numRegImages?: number;
}

export interface TrainCustomDiffusionOptions {
  /** A diffusers model folder (model_index.json, unet/, text_encoder/, tokenizer/, scheduler/, vae/ or a pixel-space model). */
  model: string;
  concepts: ConceptSpec[];
  /** 'kv' (default): attn2 to_k/to_v; 'cross': all of attn2. */
  mode?: CustomDiffusionMode;
  /** Default 250 for one concept, 500 for several. */
  steps?: number;
  /** Instance images per step (default 2); with prior preservation as many regularization images join them. */
  batchSize?: number;
  /** Base learning rate (default 1e-5); see scaleLr. */
  lr?: number;
  /** Multiply lr by the total batch and by 2 with prior preservation (default true). */
  scaleLr?: boolean;
  /** Weight of the regularization loss (default 1); 0 turns prior preservation off. */
  priorLossWeight?: number;
  /** Random scale / paste / crop with a loss mask (default true). */
  augment?: boolean;
  /** Random horizontal flips (default true). */
  hflip?: boolean;
  /** Augmented variants drawn (and encoded once) per instance image (default 10). */
  augmentVariants?: number;
  seed?: number;
  /** Image side in pixels (default the UNet's sample_size × the VAE factor); a multiple of the VAE factor. */
  resolution?: number;
  /** Sampling steps per generated regularization image (default 30). */
  regSteps?: number;
  /** Where checkpoints and generated regularization images go; without it no checkpoints are written. */
  workDir?: string;
  /** Write a checkpoint every this many steps (default 50; needs workDir). */
  checkpointEvery?: number;
  /** Continue from workDir's checkpoint when there is one (default true). */
  resume?: boolean;
  /** Stop with an error when a step's loss exceeds this (default 1e3) or is not finite. */
  maxLoss?: number;
  /**
   * Where training runs: 'cpu' (default; for trainCustomDiffusionOnLoaded the
   * loaded weights' device) or 'cuda:N'. The weights are loaded there (f32);
   * the result's tensors are on the CPU either way.
   */
  device?: string;
  /** Called after every step. */
  onProgress?: (info: { step: number; steps: number; loss: number; gradNorm: number; secondsPerStep: number }) => void;
  /** No progress line on stderr. */
  quiet?: boolean;
}

export interface TrainCustomDiffusionResult {
  concept: CustomDiffusionConcept;
  /** Loss of every step this run took. */
  losses: number[];
  /** Steps done in total (resumed ones included). */
  steps: number;
  secondsPerStep: number;
}

const ROWS = 'token_embedding.new_rows';
const CONCEPT_KEYS = ['token', 'initializer', 'classWord', 'instancePrompt', 'instancePrompts', 'images', 'classPrompt', 'regImages', 'numRegImages'];
const OPTION_KEYS = ['model', 'concepts', 'mode', 'steps', 'batchSize', 'lr', 'scaleLr', 'priorLossWeight', 'augment', 'hflip', 'augmentVariants', 'seed',
  'resolution', 'regSteps', 'workDir', 'checkpointEvery', 'resume', 'maxLoss', 'onProgress', 'quiet', 'device'];

interface Concept {
  token: string;
  initializer: string;
  classWord: string;
  instancePrompt: string;
  instancePrompts?: string[];
  classPrompt: string;
  images: ImageSource;
  regImages?: string;
  numRegImages: number;
}

/** `prompt` when it names `token` as a word: without the token in its prompt the token's row would never get a gradient. */
function checkNamesToken(fn: string, what: string, prompt: string, token: string): string {
  if (!prompt.split(/\s+/).includes(token)) throw invalidArgument(`${fn}: ${what} '${prompt}' must contain the token '${token}' as a word`);
  return prompt;
}

/**
 * The prompt of every image of every concept: instancePrompts, else the
 * image file's caption, else instancePrompt.
 */
function imagePrompts(fn: string, concepts: Concept[], loaded: SourceImage[][]): string[][] {
  return concepts.map((c, i) => {
    const list = c.instancePrompts;
    if (list !== undefined && list.length !== loaded[i].length) {
      throw invalidArgument(`${fn}: concepts[${i}].instancePrompts has ${list.length} prompts for ${loaded[i].length} images`);
    }
    return loaded[i].map((im, k) => list?.[k]
      ?? (im.caption === undefined ? c.instancePrompt : checkNamesToken(fn, `concepts[${i}] caption of ${im.image.name}`, im.caption, c.token)));
  });
}

function checkConcepts(fn: string, list: unknown): Concept[] {
  if (!Array.isArray(list) || list.length === 0) throw invalidArgument(`${fn}: concepts must be a non-empty array of { token, classWord, images, ... }, got ${describe(list)}`);
  const seen = new Set<string>();
  return list.map((c: unknown, i) => {
    const at = `concepts[${i}]`;
    if (!isPlainObject(c)) throw invalidArgument(`${fn}: ${at} must be an object { token, classWord, images, ... }, got ${describe(c)}`);
    checkOptions(`${fn}: ${at}`, c, CONCEPT_KEYS);
    const token = checkString(fn, `${at}.token`, c.token, `<new${i + 1}>`);
    if (/\s/.test(token)) throw invalidArgument(`${fn}: ${at}.token '${token}' must not contain whitespace`);
    if (seen.has(token)) throw invalidArgument(`${fn}: ${at}.token '${token}' is used by two concepts`);
    seen.add(token);
    if (c.initializer === undefined && i >= DEFAULT_INITIALIZERS.length) throw invalidArgument(`${fn}: ${at}.initializer is required (defaults exist for the first ${DEFAULT_INITIALIZERS.length} concepts)`);
    const classWord = checkString(fn, `${at}.classWord`, c.classWord);
    if (c.images === undefined) throw invalidArgument(`${fn}: ${at}.images is required (a folder, image paths or image Buffers)`);
    const instancePrompt = checkNamesToken(fn, `${at}.instancePrompt`, checkString(fn, `${at}.instancePrompt`, c.instancePrompt, `photo of a ${token} ${classWord}`), token);
    let instancePrompts: string[] | undefined;
    if (c.instancePrompts !== undefined) {
      if (!Array.isArray(c.instancePrompts) || c.instancePrompts.length === 0) throw invalidArgument(`${fn}: ${at}.instancePrompts must be a non-empty array of prompts, one per image, got ${describe(c.instancePrompts)}`);
      instancePrompts = c.instancePrompts.map((p: unknown, k) => checkNamesToken(fn, `${at}.instancePrompts[${k}]`, checkString(fn, `${at}.instancePrompts[${k}]`, p), token));
    }
    return {
      token,
      initializer: checkString(fn, `${at}.initializer`, c.initializer, DEFAULT_INITIALIZERS[i]),
      classWord,
      instancePrompt,
      ...(instancePrompts ? { instancePrompts } : {}),
      classPrompt: checkString(fn, `${at}.classPrompt`, c.classPrompt, `photo of a ${classWord}`),
      images: c.images as ImageSource,
      regImages: c.regImages === undefined ? undefined : checkString(fn, `${at}.regImages`, c.regImages),
      numRegImages: checkInt(fn, `${at}.numRegImages`, c.numRegImages, 1, 100_000, 200),
    };
  });
}

/**
 * A digest of the training data: the pixels of the instance images and of the
 * regularization images with their captions.
 */
function dataDigest(instanceImages: RgbImage[][], regSets: CaptionedImage[][]): string {
  const h = createHash('sha256');
  for (const list of instanceImages) {
    for (const im of list) h.update(`${im.width}x${im.height}:`).update(im.data);
    h.update('|');
  }
  // The regularization images as read or sampled, captions included: a user
  // folder edited between a run and its resume, or sampled under other
  // settings, is another run's data.
  for (const set of regSets) {
    for (const r of set) h.update(`${r.image.width}x${r.image.height}:${JSON.stringify(r.caption)}:`).update(r.image.data);
    h.update('|');
  }
  return `sha256:${h.digest('hex').slice(0, 32)}`;
}

/** The UNet weights a mode trains. */
export function trainedWeightNames(names: readonly string[], mode: CustomDiffusionMode): string[] {
  const re = mode === 'kv' ? /\.attn2\.to_[kv]\.weight$/ : /\.attn2\.(to_q\.weight|to_k\.weight|to_v\.weight|to_out\.0\.weight|to_out\.0\.bias)$/;
  return names.filter((n) => re.test(n));
}

/** Trains one or several concepts; see TrainCustomDiffusionOptions. */
export function trainCustomDiffusion(options: TrainCustomDiffusionOptions): Promise<TrainCustomDiffusionResult> {
  return train('trainCustomDiffusion', options, undefined);
}

/**
 * As trainCustomDiffusion, over weights already loaded from options.model
 * (loadDiffusersModel(options.model, { device }), f32): configs, tokenizer
 * and scheduler are still read from the folder. Training runs on the
 * weights' device (an options.device that differs is a DEVICE_MISMATCH).
 * The weights stay the caller's and are neither written nor disposed.
 */
export function trainCustomDiffusionOnLoaded(options: TrainCustomDiffusionOptions, loaded: LoadedDiffusersModel): Promise<TrainCustomDiffusionResult> {
  const fn = 'trainCustomDiffusionOnLoaded';
  if (!isPlainObject(loaded) || !isPlainObject(loaded.unet) || !(loaded.unet.weights instanceof Map) || !isPlainObject(loaded.textEncoder) || !(loaded.textEncoder.weights instanceof Map)) {
    throw invalidArgument(`${fn}: loaded must be what loadDiffusersModel returns ({ unet, textEncoder, vae?, tokenizerDir, schedulerConfig }), got ${describe(loaded)}`);
  }
  return train(fn, options, loaded);
}

async function train(fn: string, options: TrainCustomDiffusionOptions, preloaded: LoadedDiffusersModel | undefined): Promise<TrainCustomDiffusionResult> {
  if (!isPlainObject(options)) throw invalidArgument(`${fn}: options must be an object { model, concepts, ... }, got ${describe(options)}`);
  const o = checkOptions(fn, options, OPTION_KEYS);
  const modelDir = checkString(fn, 'model', o.model);
  const concepts = checkConcepts(fn, o.concepts);
  const mode = (o.mode ?? 'kv') as CustomDiffusionMode;
  if (mode !== 'kv' && mode !== 'cross') throw invalidArgument(`${fn}: mode must be 'kv' or 'cross', got ${describe(o.mode)}`);
  const steps = checkInt(fn, 'steps', o.steps, 1, 10_000_000, concepts.length > 1 ? 500 : 250);
  const batch = checkInt(fn, 'batchSize', o.batchSize, 1, 1024, 2);
  const baseLr = checkNumberIn(fn, 'lr', o.lr, 0, 10, 1e-5);
  const scaleLr = checkBoolean(fn, 'scaleLr', o.scaleLr, true);
  const priorWeight = checkNumberIn(fn, 'priorLossWeight', o.priorLossWeight, 0, 1e6, 1);
  const augment = checkBoolean(fn, 'augment', o.augment, true);
  const hflip = checkBoolean(fn, 'hflip', o.hflip, true);
  const variants = checkInt(fn, 'augmentVariants', o.augmentVariants, 1, 10_000, 10);
  const seed = checkInt(fn, 'seed', o.seed, 0, 2 ** 31, 0);
  const regSteps = checkInt(fn, 'regSteps', o.regSteps, 1, 1000, 30);
  const workDir = o.workDir === undefined ? undefined : checkString(fn, 'workDir', o.workDir);
  const every = checkInt(fn, 'checkpointEvery', o.checkpointEvery, 1, 10_000_000, 50);
  const resume = checkBoolean(fn, 'resume', o.resume, true);
  const maxLoss = checkNumberIn(fn, 'maxLoss', o.maxLoss, 0, Infinity, 1e3);
  const quiet = checkBoolean(fn, 'quiet', o.quiet, false);
  const onProgress = o.onProgress as TrainCustomDiffusionOptions['onProgress'];
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgument(`${fn}: onProgress must be a function, got ${describe(onProgress)}`);
  // Checked before any file is read; for preloaded weights the default is where they are.
  const preloadedDevice = preloaded?.unet.weights.values().next().value?.device;
  const device = checkUsableDevice(fn, o.device ?? preloadedDevice ?? 'cpu');
  const prior = priorWeight > 0;
  const lr = scaleLr ? baseLr * batch * (prior ? 2 : 1) : baseLr;

  // Everything the run needs from the files comes first, so bad input fails before any work.
  const loadedImages: SourceImage[][] = [];
  for (let i = 0; i < concepts.length; i++) loadedImages.push(await loadImagesWithCaptions(fn, `concepts[${i}].images`, concepts[i].images));
  const instanceImages: RgbImage[][] = loadedImages.map((list) => list.map((s) => s.image));
  const promptsOfImages = imagePrompts(fn, concepts, loadedImages);

  const m = await loadTrainingModel(fn, modelDir, device, o.resolution, preloaded);
  const { model, rawText, unet: unet0, encoder: encoder0, vae, ddpm, tokenizer, factor, resolution, fingerprint } = m;
  const owned = m.owned;
  const disposeLater: Tensor[] = [];
  try {
    // Tokens: new, and started from one existing token each.
    const initIds = concepts.map((c, i) => {
      if (tokenizer.tokenToId(c.token) !== undefined) throw invalidArgument(`${fn}: concepts[${i}].token '${c.token}' is already in the vocabulary (id ${tokenizer.tokenToId(c.token)}); choose a new token`);
      const content = tokenizer.encode(c.initializer).slice(1, -1);
      if (content.length !== 1) {
        const pieces = content.map((id) => `'${tokenizer.idToToken(id) ?? id}'`).join(', ');
        throw invalidArgument(`${fn}: concepts[${i}].initializer '${c.initializer}' must be a single token of the vocabulary, but it tokenizes to ${content.length} tokens (${pieces})`);
      }
      return content[0];
    });

    // Regularization images (before the tokenizer learns the new tokens: the base model samples them).
    const regSets: CaptionedImage[][] = [];
    if (prior) {
      const pipeline = basePipeline(m, device);
      for (let i = 0; i < concepts.length; i++) {
        const c = concepts[i];
        regSets.push(c.regImages !== undefined
          ? await folderRegularization(fn, `concepts[${i}].regImages`, c.regImages, c.classPrompt, c.numRegImages)
          : await generatedRegularization(fn, {
            pipeline, fingerprint, prompt: c.classPrompt, count: c.numRegImages, resolution, seed, steps: regSteps,
            cacheRoot: join(workDir ?? join(tmpdir(), 'imprint-custom-diffusion'), 'regularization'),
          }));
      }
    }

    const newIds = tokenizer.addTokens(concepts.map((c) => c.token));
    const grownEncoder = await encoder0.addTokenRows(initIds);
    const grownTable = grownEncoder.tokenEmbedding;
    disposeLater.push(grownTable);
    const vocab = grownEncoder.config.vocabSize;
    const hidden = grownEncoder.config.hiddenSize;
    const tokens = grownEncoder.config.maxPositionEmbeddings;  // 77 for CLIP
    newIds.forEach((id, i) => {
      if (id !== encoder0.config.vocabSize + i) throw new ImprintError(`${fn}: token '${concepts[i].token}' got id ${id}, expected ${encoder0.config.vocabSize + i}`, 'INTERNAL');
    });
    const grownRaw = { ...rawText, vocab_size: vocab };
    const rowMaskData = new Uint8Array(vocab);
    for (const id of newIds) rowMaskData[id] = 1;
    const rowMask = await onDevice(tensor(rowMaskData, { shape: [vocab] }), device);
    disposeLater.push(rowMask);
    const newIdTensor = await onDevice(tensor(Int32Array.from(newIds), { shape: [newIds.length] }), device);
    disposeLater.push(newIdTensor);

    // Samples: every instance image's augmented variants and every regularization image, encoded once.
    const settings: AugmentSettings = { resolution, factor, augment, hflip };
    const cache = await LatentCache.open(workDir,
      [fingerprint, resolution, factor, seed, augment, hflip, variants, vae === PIXEL_SPACE ? 1 : (vae as AutoencoderKL).scalingFactor],
      [...instanceImages, ...regSets.map((set) => set.map((r) => r.image))], device, disposeLater);
    const encode = async (pixels: Float32Array): Promise<Tensor> => encodeLatent(vae, pixels, resolution, device);
    const root = new SeededRandom(seed);
    const instances: Sample[][] = [];
    for (let c = 0; c < concepts.length; c++) {
      const list: Sample[] = [];
      for (let i = 0; i < instanceImages[c].length; i++) {
        for (let v = 0; v < variants; v++) {
          const rng = root.fork(`variant ${c} ${i} ${v}`);
          let plan: AugmentPlan = planAugmentation(rng, settings);
          // At tiny resolutions a small paste can leave no latent pixel inside the shrunk box: draw again.
          for (let tries = 0; tries < 100 && augmentMask(plan, settings).every((m) => m === 0); tries++) plan = planAugmentation(rng, settings);
          const mask = augmentMask(plan, settings);
          if (mask.every((m) => m === 0)) mask.fill(1);
          const latent = await cache.latentOf(`instance/${c}/${i}/${v}`, async () => encode((await augmentImage(instanceImages[c][i], plan, settings)).pixels));
          list.push({ latent, mask, prompt: plan.prefix + promptsOfImages[c][i] });
        }
      }
      instances.push(list);
    }
    const latentSide = resolution / factor;
    const regs: Sample[][] = [];
    for (let c = 0; c < regSets.length; c++) {
      const list: Sample[] = [];
      for (let k = 0; k < regSets[c].length; k++) {
        const r = regSets[c][k];
        const whole: AugmentPlan = { flip: false, scale: resolution, kind: 'none', top: 0, left: 0, prefix: '' };
        const latent = await cache.latentOf(`regularization/${c}/${k}`, async () => encode((await augmentImage(r.image, whole, settings)).pixels));
        list.push({ latent, mask: new Float32Array(latentSide * latentSide).fill(1), prompt: r.caption });
      }
      regs.push(list);
    }
    await cache.save();

    // Parameters: the trained UNet matrices and the new embedding rows.
    const trained = trainedWeightNames(unet0.weightNames, mode);
    const base = new Map(unet0.weightNames.map((n, i) => [n, unet0.weights[i] as Tensor]));
    const params = new Map<string, Tensor>();
    for (const n of trained) params.set(n, await combine([[1, base.get(n)! as Tensor<'f32'>]]));
    params.set(ROWS, await embedding(newIdTensor, grownTable));
    const opt = await AdamW.create(params, { betas: [0.9, 0.999], weightDecay: 1e-2, eps: 1e-8, maxGradNorm: 1 });
    try {
      // Everything that shapes the run: resuming under other settings would splice two runs together.
      const run = new RunState(fn, workDir, {
        seed: String(seed), mode, batch: String(batch), tokens: JSON.stringify(concepts.map((c) => c.token)), fingerprint, resolution: String(resolution),
        lr: String(lr), priorLossWeight: String(priorWeight), augment: JSON.stringify({ augment, hflip, variants }),
        prompts: JSON.stringify(concepts.map((c, i) => ({
          instance: c.instancePrompt, class: c.classPrompt, initializer: c.initializer,
          // Only when captions differ, so runs without them keep the identity they always had.
          ...(promptsOfImages[i].some((p) => p !== c.instancePrompt) ? { images: promptsOfImages[i] } : {}),
        }))),
        data: dataDigest(instanceImages, regSets),
      });
      const start = run.resumeStep(resume);
      if (start > 0) await run.restore(opt, start, device);
      if (start > steps) throw invalidArgument(`${fn}: the checkpoint in ${workDir} is at step ${start}, past steps ${steps}`);

      const progress = new Progress(steps, start, { label: 'custom diffusion', quiet });
      const losses: number[] = [];
      for (let step = start; step < steps; step++) {
        const c = step % concepts.length;
        const drawn = priorPreservationBatch(root.fork(`step ${step}`), instances[c], prior ? regs[c] : undefined,
          { batch, priorWeight, plane: latentSide * latentSide, numTrainTimesteps: ddpm.config.numTrainTimesteps });
        const stepOwned: Tensor[] = [];
        let loss: number;
        let gradNorm: number;
        try {
          const b = await batchTensors(drawn, tokenizer, { tokens, latentSide, noiseSeed: seed * 1_000_003 + step, device }, stepOwned);
          // The new ids are the last rows (checked above), so the table is the base table with the learned rows below it.
          const table = await concat([encoder0.tokenEmbedding, opt.params.get(ROWS)!]);
          stepOwned.push(table);
          const textWeights = new Map(model.textEncoder.weights);
          textWeights.set(TOKEN_EMBEDDING, table);
          const unet = unet0.withWeights(new Map(trained.map((n) => [n, opt.params.get(n)!])));
          const g = await denoisingStep({ unet, textConfig: grownRaw, textWeights, ddpm }, b,
            { unet: trained, text: 'embeddings', rowMask, detachStartToken: true, lossScale: drawn.lossScale }, stepOwned);
          loss = g.loss;
          run.guard(step, loss, maxLoss);
          const grads = new Map(g.unet);
          grads.set(ROWS, await embedding(newIdTensor, g.text.get(TOKEN_EMBEDDING)! as Tensor<'f32'>));
          stepOwned.push(grads.get(ROWS)!);
          ({ gradNorm } = await opt.update(grads, lr));
          run.guard(step, loss, maxLoss, gradNorm);
        } finally {
          for (const t of stepOwned) if (!t.disposed) t.dispose();
        }
        losses.push(loss);
        progress.update(step + 1, { loss, gradNorm });
        onProgress?.({ step: step + 1, steps, loss, gradNorm, secondsPerStep: progress.secondsPerStep(step + 1) });
        if (workDir !== undefined && ((step + 1) % every === 0 || step + 1 === steps)) await run.save(opt, step + 1);
      }
      // The result: ΔW = W − W0 and the learned rows.
      const deltas = new Map<string, Tensor<'f32'>>();
      try {
        for (const n of trained) deltas.set(n, await onDevice(await combine([[1, opt.params.get(n)! as Tensor<'f32'>], [-1, base.get(n)! as Tensor<'f32'>]]), 'cpu'));
      } catch (e) {
        for (const d of deltas.values()) d.dispose();
        throw e;
      }
      const rows = Float32Array.from((await opt.params.get(ROWS)!.data()) as Float32Array);
      const concept: CustomDiffusionConcept = {
        method: 'custom-diffusion',
        mode,
        tokens: concepts.map((c, i) => ({ token: c.token, classWord: c.classWord, embedding: tensor(rows.slice(i * hidden, (i + 1) * hidden), { shape: [hidden] }), prompt: c.instancePrompt })),
        deltas,
        baseFingerprint: fingerprint,
      };
      return { concept, losses, steps, secondsPerStep: progress.secondsPerStep(steps) };
    } finally {
      opt.dispose();
    }
  } finally {
    for (const t of [...disposeLater, ...owned]) if (!t.disposed) t.dispose();
  }
}
