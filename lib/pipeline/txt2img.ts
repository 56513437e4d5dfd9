// Text-to-image sampling: prompt → CLIP embeddings → scheduler loop over the
// UNet with classifier-free guidance → VAE decode. Every intermediate tensor
// is disposed as soon as the next one exists, so memory stays flat over steps.
import { join } from 'node:path';

import { ImprintError, invalidArgument } from '../errors.js';
import { randn } from '../creation.js';
import { Tensor } from '../tensor.js';
import { checkBoolean, checkInt, checkNumberIn, checkOptions, describe, type DType, type FloatDType } from '../validate.js';
import { ClipTokenizer, type EncodeOptions, type PaddedIds } from '../tokenizer/clip.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { UNet2DConditionModel } from '../models/unet.js';
import { AutoencoderKL } from '../models/vae.js';
import { PIXEL_SPACE } from './pixel-space.js';
import { checkUsableDevice } from '../device.js';
import { loadDiffusersModel } from '../models/checkpoint.js';
import { readJsonFile } from '../models/configs.js';
import { concat, split } from '../nn/concat.js';
import { combine } from '../schedulers/combine.js';
import { DDIMScheduler } from '../schedulers/ddim.js';
import { EulerDiscreteScheduler } from '../schedulers/euler.js';
import { EulerAncestralDiscreteScheduler } from '../schedulers/euler-ancestral.js';
import { DPMSolverMultistepScheduler } from '../schedulers/dpm-solver.js';
import { exciteGradient, promptFocus, type ExciteProbe } from './excite.js';

/** What the pipeline needs of a tokenizer (ClipTokenizer, or a wrapper around it). */
export interface PromptTokenizer {
  encodePadded(text: string, options?: EncodeOptions): PaddedIds;
}

/** What the pipeline needs of a text encoder. */
export interface PromptEncoder {
  readonly config: { maxPositionEmbeddings: number; hiddenSize?: number };
  encode(ids: number[][], options?: { penultimate?: boolean }): Promise<{ lastHiddenState: Tensor; penultimate?: Tensor }>;
}

/** What the pipeline needs of a denoiser: UNet2DConditionModel's forward signature. */
export interface Denoiser {
  /** sampleSize (latent pixels; UNet2DConditionModel has it) gives generate()'s default image size. */
  readonly config: { inChannels: number; blockOutChannels: number[]; sampleSize?: number };
  /** Where its weights live (UNet2DConditionModel has it); generate() makes its tensors there. */
  readonly device?: string;
  forward(sample: Tensor, timestep: number, context: Tensor): Promise<Tensor>;
}

export type Scheduler = DDIMScheduler | EulerDiscreteScheduler | EulerAncestralDiscreteScheduler | DPMSolverMultistepScheduler;
export type SchedulerName = 'ddim' | 'euler' | 'euler-a' | 'dpm++2m' | 'dpm++2m-karras';

export interface PipelineComponents {
  tokenizer: PromptTokenizer;
  textEncoder: PromptEncoder;
  unet: Denoiser;
  vae: AutoencoderKL | { readonly factor: number; readonly scalingFactor: number; decode(latent: Tensor): Promise<Tensor> };
  scheduler: Scheduler;
  /** Condition on the penultimate layer's hidden states (SD 2.x); default false. */
  penultimate?: boolean;
  /**
   * Where the components' weights live and generate() computes: 'cpu' or
   * 'cuda:N'. Default: the UNet's device (UNet2DConditionModel.device), else
   * 'cpu'. Components on another device are refused.
   */
  device?: string;
}

export interface FromPretrainedOptions {
  scheduler?: SchedulerName;
  /**
   * The weights' dtype after loading (default 'f32', the CPU's compute dtype:
   * fp16/bf16 files are widened). On a GPU pass 'bf16' (or 'f16'): half the
   * memory and the tensor cores: `{ device: 'cuda:0', dtype: 'bf16' }` holds
   * SD 1.5's weights in about 2 GB instead of 4. Images come back on the host
   * in this dtype.
   */
  dtype?: DType;
  /**
   * 'cpu' (default) or 'cuda:N' (CUDA builds with a usable GPU; a device that
   * is not usable is refused up front with the reason devices() gives). The
   * weights are read on the host and moved one tensor at a time.
   */
  device?: string;
}

export interface GenerateOptions {
  prompt: string | string[];
  /** One for all prompts, or one per prompt; default "". */
  negativePrompt?: string | string[];
  /** Default 30. */
  steps?: number;
  /** Default 7.5; ≤ 1 skips the unconditional half of the batch. */
  guidanceScale?: number;
  /** Image width in pixels, a multiple of sizeMultiple; default the UNet's sample_size × the VAE factor (512 for SD 1.5, 32 for the world model; required for a denoiser without sampleSize). */
  width?: number;
  /** Image height, likewise. */
  height?: number;
  /**
   * DDIM's η (finite, ≥ 0; default 0). As diffusers passes eta only to a
   * scheduler whose step takes it, the other schedulers ignore it.
   */
  eta?: number;
  /** randn seed of the initial latents (and the ancestral / DDIM η noise); default random. */
  seed?: number | bigint;
  /** Images per prompt; default 1. */
  numImages?: number;
  onStep?: (i: number, total: number) => void;
  /** Called with a message when a prompt is cut to the text encoder's length; default: process.emitWarning. */
  onWarning?: (message: string) => void;
  /**
   * Attend-and-Excite (pipeline/excite.ts): words of the prompt (e.g. two
   * concepts' tokens, ['<new1>', '<new2>']) that must each get a strong
   * attention peak; the first exciteSteps steps move the latents to that end
   * (two UNet forwards and one backward more per guided step). Needs a UNet2DConditionModel.
   */
  excite?: string[];
  /** Steps guided (default: the first half). */
  exciteSteps?: number;
  /** Step size α at the first guided step, decaying to α/√2 (default 20, the paper's). */
  exciteScale?: number;
  /** Called per guided step with the loss of each image before its update (1 − the weakest subject's peak). */
  onExcite?: (info: { step: number; loss: number[] }) => void;
}

export interface AddTokensOptions {
  /**
   * Where the new embedding rows start: a word that is one token (its row,
   * for every new token), or one token id per new token. Default: the mean
   * of all rows.
   */
  initializer?: string | number[];
  /**
   * The new rows themselves, [tokens, hidden_size] (e.g. a concept's learned
   * embeddings); instead of `initializer`.
   */
  embeddings?: Tensor;
}

export interface GenerateResult {
  /** [N, 3, H, W] in roughly [-1, 1], N = prompts × numImages; on the CPU whatever the pipeline's device (in the weights' dtype). */
  images: Tensor;
  /** The final latents [N, C, H/f, W/f], before the scaling factor is undone; on the CPU too. */
  latents: Tensor;
}

const SCHEDULERS: Record<SchedulerName, (config: Record<string, unknown>) => Scheduler> = {
  ddim: (c) => DDIMScheduler.fromConfig(c),
  euler: (c) => EulerDiscreteScheduler.fromConfig({ ...c, use_karras_sigmas: false }),
  'euler-a': (c) => EulerAncestralDiscreteScheduler.fromConfig(c),
  'dpm++2m': (c) => DPMSolverMultistepScheduler.fromConfig({ ...c, use_karras_sigmas: false }),
  'dpm++2m-karras': (c) => DPMSolverMultistepScheduler.fromConfig({ ...c, use_karras_sigmas: true }),
};

// Only what every scheduler reads is carried over from another scheduler's config.
const SHARED_FIELDS = ['num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'trained_betas', 'prediction_type', 'timestep_spacing', 'steps_offset'];

function sharedFields(c: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of SHARED_FIELDS) if (k in c) out[k] = c[k];
  return out;
}

/** Builds the named scheduler from a scheduler_config.json written for any scheduler. */
export function schedulerFromConfig(name: SchedulerName, config: Record<string, unknown>): Scheduler {
  // hasOwn, so 'toString' or '__proto__' is not mistaken for a scheduler.
  if (!Object.hasOwn(SCHEDULERS, name)) throw invalidArgument(`scheduler must be one of ${Object.keys(SCHEDULERS).join(', ')}, got ${describe(name)}`);
  return SCHEDULERS[name](sharedFields(config));
}

function checkPrompts(fn: string, name: string, v: unknown): string[] {
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list)) throw invalidArgument(`${fn}: ${name} must be a string or an array of strings, got ${describe(v)}`);
  if (list.length === 0) throw invalidArgument(`${fn}: ${name} must not be an empty list`);
  list.forEach((p, i) => {
    if (typeof p !== 'string') throw invalidArgument(`${fn}: ${name}[${i}] must be a string, got ${describe(p)}`);
  });
  return list as string[];
}

/** A host copy of a device tensor; the device copy is freed (also when the copy fails). */
async function toHost<T extends Tensor>(t: T): Promise<T> {
  try {
    return (await t.to('cpu')) as T;
  } finally {
    t.dispose();
  }
}

function disposeAll(ts: Array<Tensor | undefined>): void {
  for (const t of ts) if (t !== undefined && !t.disposed) t.dispose();
}

export class StableDiffusionPipeline {
  readonly tokenizer: PromptTokenizer;
  #textEncoder: PromptEncoder;
  #unet: Denoiser;
  readonly vae: PipelineComponents['vae'];
  readonly scheduler: Scheduler;
  readonly penultimate: boolean;
  readonly #device: string;
  /** Image sides must be multiples of this: the VAE factor (8 for SD); the UNet takes any latent size, as in diffusers. */
  readonly sizeMultiple: number;
  /** Weights loaded by fromPretrained, released by dispose(); fromComponents leaves ownership with the caller. */
  #owned: Tensor[] = [];

  private constructor(c: PipelineComponents, device: string) {
    this.#device = device;
    this.tokenizer = c.tokenizer;
    this.#textEncoder = c.textEncoder;
    this.#unet = c.unet;
    this.vae = c.vae;
    this.scheduler = c.scheduler;
    this.penultimate = c.penultimate ?? false;
    this.sizeMultiple = c.vae.factor;
  }

  static fromComponents(components: PipelineComponents): StableDiffusionPipeline {
    const fn = 'StableDiffusionPipeline.fromComponents';
    const c = checkOptions(fn, components, ['tokenizer', 'textEncoder', 'unet', 'vae', 'scheduler', 'penultimate', 'device']);
    const need = (name: string, ok: boolean, what: string): void => {
      if (!ok) throw invalidArgument(`${fn}: ${name} must be ${what}, got ${describe(c[name])}`);
    };
    const has = (o: unknown, m: string): boolean => typeof o === 'object' && o !== null && typeof (o as Record<string, unknown>)[m] === 'function';
    need('tokenizer', has(c.tokenizer, 'encodePadded'), 'a tokenizer with encodePadded (a ClipTokenizer)');
    need('textEncoder', has(c.textEncoder, 'encode') && typeof (c.textEncoder as PromptEncoder).config?.maxPositionEmbeddings === 'number', 'a ClipTextEncoder');
    need('unet', has(c.unet, 'forward') && Array.isArray((c.unet as Denoiser).config?.blockOutChannels), 'a UNet2DConditionModel');
    need('vae', has(c.vae, 'decode') && typeof (c.vae as AutoencoderKL).factor === 'number' && typeof (c.vae as AutoencoderKL).scalingFactor === 'number', 'an AutoencoderKL');
    need('scheduler', has(c.scheduler, 'step') && has(c.scheduler, 'setTimesteps') && has(c.scheduler, 'scaleModelInput'), 'a scheduler (DDIM, Euler, Euler ancestral or DPM-Solver++)');
    checkBoolean(fn, 'penultimate', c.penultimate, false);
    const unetDevice = (c.unet as Denoiser).device;
    const device = checkUsableDevice(fn, c.device ?? (typeof unetDevice === 'string' ? unetDevice : 'cpu'));
    // A component elsewhere would fail at the first op of generate(); say so now, naming it.
    for (const part of ['textEncoder', 'unet', 'vae'] as const) {
      const at = (c[part] as { device?: unknown }).device;
      if (typeof at === 'string' && at !== device) {
        throw new ImprintError(`${fn}: ${part} is on ${at} but the pipeline's device is ${device}; move its weights or pass device '${at}'`, 'DEVICE_MISMATCH');
      }
    }
    return new StableDiffusionPipeline(components, device);
  }

  /** Loads a diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/). */
  static async fromPretrained(dir: string, options?: FromPretrainedOptions): Promise<StableDiffusionPipeline> {
    const fn = 'StableDiffusionPipeline.fromPretrained';
    if (typeof dir !== 'string') throw invalidArgument(`${fn}: dir must be a string, got ${describe(dir)}`);
    const o = checkOptions(fn, options, ['scheduler', 'dtype', 'device']);
    const name = (o.scheduler ?? 'ddim') as SchedulerName;
    if (!Object.hasOwn(SCHEDULERS, name)) throw invalidArgument(`${fn}: scheduler must be one of ${Object.keys(SCHEDULERS).join(', ')}, got ${describe(o.scheduler)}`);
    const device = checkUsableDevice(fn, o.device);
    const model = await loadDiffusersModel(dir, { dtype: (o.dtype ?? 'f32') as DType, device });
    const drop = (): void => {
      for (const part of [model.unet, model.vae, model.textEncoder]) for (const w of part?.weights.values() ?? []) if (!w.disposed) w.dispose();
    };
    try {
      if (model.tokenizerDir === undefined) throw invalidArgument(`${fn}: ${join(dir, 'tokenizer')} is missing (the pipeline needs the CLIP tokenizer)`);
      if (model.schedulerConfig === undefined) throw invalidArgument(`${fn}: ${join(dir, 'scheduler', 'scheduler_config.json')} is missing`);
      let scheduler: Scheduler;
      try {
        scheduler = schedulerFromConfig(name, model.schedulerConfig);
      } catch (e) {
        throw invalidArgument(`${join(dir, 'scheduler', 'scheduler_config.json')}: ${(e as Error).message}`);
      }
      const tokenizer = await ClipTokenizer.fromFolder(model.tokenizerDir);
      // fromWeights parses the raw config.json (the loader already validated it).
      const raw = (part: string): unknown => readJsonFile(join(dir, part, 'config.json'));
      const textEncoder = ClipTextEncoder.fromWeights(raw('text_encoder'), model.textEncoder.weights);
      const unet = UNet2DConditionModel.fromWeights(raw('unet'), model.unet.weights);
      const vae = model.vae ? AutoencoderKL.fromWeights(raw('vae'), model.vae.weights) : PIXEL_SPACE;
      if (tokenizer.vocabSize > textEncoder.config.vocabSize) {
        throw invalidArgument(`${fn}: the tokenizer has ${tokenizer.vocabSize} tokens but the text encoder's vocab_size is ${textEncoder.config.vocabSize}`);
      }
      // Diffusers folders of SD 2.x store the encoder already cut to its penultimate layer, so the last layer is right for every folder.
      const pipe = new StableDiffusionPipeline({ tokenizer, textEncoder, unet, vae, scheduler }, device);
      for (const part of [model.unet, model.vae, model.textEncoder]) pipe.#owned.push(...(part?.weights.values() ?? []));
      return pipe;
    } catch (e) {
      drop();
      throw e;
    }
  }

  /** Where the weights live and generate() computes: 'cpu' or 'cuda:N'. */
  get device(): string {
    return this.#device;
  }

  /** The denoiser; replaceUnet swaps it (applyConcepts does, for UNet weights with concepts merged in). */
  get unet(): Denoiser {
    return this.#unet;
  }

  /**
   * Samples with `unet` from now on. The pipeline takes ownership of `owned`
   * (tensors made for the new UNet: dispose() frees them); the previous
   * UNet's tensors stay as they were, so a caller's UNet stays usable.
   * `release`: tensors the pipeline owns that only the replaced UNet used
   * (e.g. those an earlier replaceUnet handed over); they are freed now.
   */
  replaceUnet(unet: Denoiser, owned: Tensor[] = [], release: Tensor[] = []): void {
    const fn = 'StableDiffusionPipeline.replaceUnet';
    if (typeof unet?.forward !== 'function' || unet.config?.inChannels !== this.#unet.config.inChannels) {
      throw invalidArgument(`${fn}: unet must be a UNet2DConditionModel with ${this.#unet.config.inChannels} input channels, got ${describe(unet)}`);
    }
    if (!Array.isArray(owned) || owned.some((t) => !(t instanceof Tensor))) throw invalidArgument(`${fn}: owned must be an array of tensors`);
    if (typeof unet.device === 'string' && unet.device !== this.#device) {
      throw new ImprintError(`${fn}: the new UNet is on ${unet.device} but the pipeline's device is ${this.#device}`, 'DEVICE_MISMATCH');
    }
    if (!Array.isArray(release) || release.some((t) => !this.#owned.includes(t))) throw invalidArgument(`${fn}: release must list tensors the pipeline owns`);
    this.#unet = unet;
    this.#owned.push(...owned);
    const freed = new Set(release);
    this.#owned = this.#owned.filter((t) => !freed.has(t));
    for (const t of freed) if (!t.disposed) t.dispose();
  }

  /** The text encoder; addTokens replaces it with one whose embedding table has the new rows. */
  get textEncoder(): PromptEncoder {
    return this.#textEncoder;
  }

  /**
   * Adds concept tokens ('<new1>', a textual-inversion token): to the
   * tokenizer, matched whole in prompts, and as new rows of the text
   * encoder's token embedding (AddTokensOptions: copied per `initializer`,
   * or given as `embeddings`). Returns their ids, which continue the
   * vocabulary. Needs a ClipTokenizer and a ClipTextEncoder of the same
   * vocabulary size. The pipeline owns the grown
   * table (dispose() frees it); a table it loaded itself is freed at once.
   */
  async addTokens(tokens: string[], options?: AddTokensOptions): Promise<number[]> {
    const fn = 'StableDiffusionPipeline.addTokens';
    const o = checkOptions(fn, options, ['initializer', 'embeddings']);
    const tok = this.tokenizer as Partial<ClipTokenizer>;
    if (typeof tok.addTokens !== 'function' || typeof tok.encode !== 'function' || typeof tok.tokenToId !== 'function' || typeof tok.vocabSize !== 'number') {
      throw invalidArgument(`${fn}: the pipeline's tokenizer must be a ClipTokenizer (with addTokens, encode, tokenToId and vocabSize)`);
    }
    const enc = this.#textEncoder;
    if (!(enc instanceof ClipTextEncoder)) throw invalidArgument(`${fn}: the pipeline's text encoder must be a ClipTextEncoder to grow its token embedding`);
    if (tok.vocabSize !== enc.config.vocabSize) {
      throw invalidArgument(`${fn}: the tokenizer has ${tok.vocabSize} tokens but the text encoder's vocab_size is ${enc.config.vocabSize}; new ids would not match the new rows`);
    }
    if (!Array.isArray(tokens) || tokens.length === 0) throw invalidArgument(`${fn}: tokens must be a non-empty array of strings, got ${describe(tokens)}`);
    tokens.forEach((t, i) => {
      if (typeof t !== 'string') throw invalidArgument(`${fn}: tokens[${i}] must be a string, got ${describe(t)}`);
      const id = tok.tokenToId!(t);
      if (id !== undefined) throw invalidArgument(`${fn}: token '${t}' is already in the vocabulary (id ${id})`);
    });
    const init = o.initializer;
    const rows = o.embeddings;
    let sources: Array<number | undefined> = [];
    if (rows !== undefined) {
      if (init !== undefined) throw invalidArgument(`${fn}: give either initializer or embeddings, not both`);
      if (!(rows instanceof Tensor)) throw invalidArgument(`${fn}: embeddings must be a tensor [${tokens.length}, hidden_size], got ${describe(rows)}`);
      if (rows.ndim !== 2 || rows.shape[0] !== tokens.length) {
        throw new ImprintError(`${fn}: embeddings must hold one row per token, [${tokens.length}, hidden_size], got [${rows.shape.join(', ')}]`, 'SHAPE_MISMATCH');
      }
    } else if (init === undefined) {
      sources = tokens.map(() => undefined);
    } else if (typeof init === 'string') {
      const content = tok.encode(init).slice(1, -1);
      if (content.length !== 1) {
        const pieces = content.map((id) => `'${tok.idToToken?.(id) ?? id}'`).join(', ');
        throw invalidArgument(`${fn}: initializer '${init}' must be a single token, but it tokenizes to ${content.length} tokens${pieces === '' ? '' : ` (${pieces})`}`);
      }
      sources = tokens.map(() => content[0]);
    } else if (Array.isArray(init)) {
      if (init.length !== tokens.length) throw invalidArgument(`${fn}: initializer must hold one token id per new token (${tokens.length}), got ${init.length}`);
      init.forEach((id, i) => {
        if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id >= enc.config.vocabSize) {
          throw invalidArgument(`${fn}: initializer[${i}] must be a token id in [0, ${enc.config.vocabSize}), got ${describe(id)}`);
        }
      });
      sources = init;
    } else {
      throw invalidArgument(`${fn}: initializer must be a string (one token) or an array of token ids, got ${describe(init)}`);
    }
    const grown = rows !== undefined ? await enc.withTokenRows(rows as Tensor) : await enc.addTokenRows(sources);
    let ids: number[];
    try {
      ids = tok.addTokens(tokens);
    } catch (e) {
      grown.tokenEmbedding.dispose();
      throw e;
    }
    this.#swapTextEncoder(grown);
    return ids;
  }

  /**
   * Removes tokens addTokens added (the last ones added, in order): from the
   * tokenizer, and their rows from the text encoder's token embedding, the
   * other rows copied bit for bit.
   */
  async removeTokens(tokens: string[]): Promise<void> {
    const fn = 'StableDiffusionPipeline.removeTokens';
    const tok = this.tokenizer as Partial<ClipTokenizer>;
    const enc = this.#textEncoder;
    if (typeof tok.removeTokens !== 'function' || !(enc instanceof ClipTextEncoder)) throw invalidArgument(`${fn}: needs a ClipTokenizer and a ClipTextEncoder`);
    if (!Array.isArray(tokens) || tokens.length === 0) throw invalidArgument(`${fn}: tokens must be a non-empty array of strings, got ${describe(tokens)}`);
    const added = tok.addedTokens ?? [];
    if (tokens.some((t, i) => added[added.length - tokens.length + i] !== t)) throw invalidArgument(`${fn}: tokens must be the last added tokens, in order, got ${describe(tokens)}`);
    const shrunk = await enc.withoutLastTokenRows(tokens.length);
    tok.removeTokens(tokens);
    this.#swapTextEncoder(shrunk);
  }

  /** Samples with `next` (another token table, the other weights shared): the pipeline owns its table and frees the previous one if it owned it. */
  #swapTextEncoder(next: ClipTextEncoder): void {
    const old = (this.#textEncoder as ClipTextEncoder).tokenEmbedding;
    const at = this.#owned.indexOf(old);
    if (at >= 0) {
      this.#owned.splice(at, 1);
      old.dispose();
    }
    this.#owned.push(next.tokenEmbedding);
    this.#textEncoder = next;
  }

  /** Frees the weights fromPretrained loaded and tables addTokens grew (the pipeline is unusable afterwards). */
  dispose(): void {
    disposeAll(this.#owned);
    this.#owned = [];
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  /** Runs the sampler; the caller owns (and disposes) the returned tensors. */
  async generate(options: GenerateOptions): Promise<GenerateResult> {
    const fn = 'StableDiffusionPipeline.generate';
    const o = checkOptions(fn, options, ['prompt', 'negativePrompt', 'steps', 'guidanceScale', 'eta', 'width', 'height', 'seed', 'numImages', 'onStep', 'onWarning', 'excite', 'exciteSteps', 'exciteScale', 'onExcite']);
    const onWarning = o.onWarning ?? ((message: string) => process.emitWarning(message, 'ImprintWarning'));
    if (typeof onWarning !== 'function') throw invalidArgument(`${fn}: onWarning must be a function, got ${describe(onWarning)}`);
    const prompts = checkPrompts(fn, 'prompt', o.prompt);
    const negatives = o.negativePrompt === undefined ? [''] : checkPrompts(fn, 'negativePrompt', o.negativePrompt);
    if (negatives.length !== 1 && negatives.length !== prompts.length) {
      throw invalidArgument(`${fn}: negativePrompt must be one string or one per prompt (${prompts.length}), got ${negatives.length}`);
    }
    const steps = checkInt(fn, 'steps', o.steps, 1, 1000, 30);
    const g = o.guidanceScale ?? 7.5;
    if (typeof g !== 'number' || !Number.isFinite(g)) throw invalidArgument(`${fn}: guidanceScale must be a finite number, got ${describe(o.guidanceScale)}`);
    const eta = o.eta ?? 0;
    if (typeof eta !== 'number' || !Number.isFinite(eta) || eta < 0) throw invalidArgument(`${fn}: eta must be a finite number ≥ 0, got ${describe(o.eta)}`);
    const m = this.sizeMultiple;
    // Default size as diffusers: the UNet's sample_size in latents, times the VAE factor.
    const sample = this.unet.config.sampleSize;
    const side = sample === undefined ? undefined : sample * this.vae.factor;
    const width = checkInt(fn, 'width', o.width, 1, 16384, side);
    const height = checkInt(fn, 'height', o.height, 1, 16384, side);
    if (width % m !== 0 || height % m !== 0) throw invalidArgument(`${fn}: width and height must be multiples of ${m} for this model, got ${width}×${height}`);
    const perPrompt = checkInt(fn, 'numImages', o.numImages, 1, 64, 1);
    const seed = o.seed;
    if (seed !== undefined && !(typeof seed === 'bigint' && seed >= 0n) && !(typeof seed === 'number' && Number.isSafeInteger(seed) && seed >= 0)) {
      throw invalidArgument(`${fn}: seed must be a non-negative integer, got ${describe(seed)}`);
    }
    const onStep = o.onStep;
    if (onStep !== undefined && typeof onStep !== 'function') throw invalidArgument(`${fn}: onStep must be a function, got ${describe(onStep)}`);
    const guided = g > 1;
    const n = prompts.length * perPrompt;
    const excite = this.#exciteOptions(fn, o, prompts, steps);

    // Rows in batch order: each prompt repeated numImages times; unconditional rows first.
    const condTexts = prompts.flatMap((p) => Array<string>(perPrompt).fill(p));
    const uncondTexts = prompts.flatMap((_, i) => Array<string>(perPrompt).fill(negatives.length === 1 ? negatives[0] : negatives[i]));
    const maxLength = this.textEncoder.config.maxPositionEmbeddings;
    const rows = (guided ? [...uncondTexts, ...condTexts] : condTexts).map((t) => {
      const { ids, truncated } = this.tokenizer.encodePadded(t, { maxLength });
      if (truncated) (onWarning as (m: string) => void)(`${fn}: the prompt "${t.length > 60 ? `${t.slice(0, 60)}…` : t}" is longer than ${maxLength} tokens and was truncated`);
      return Array.from(ids);
    });

    const scheduler = this.scheduler;
    const timesteps = scheduler.setTimesteps(steps);
    if (timesteps.length < steps) {
      // Karras sigmas on a short or cosine schedule round to repeated integer timesteps, which diffusers drops too.
      (onWarning as (m: string) => void)(`${fn}: the scheduler gives ${timesteps.length} distinct timesteps for ${steps} steps on this model's noise schedule (several round to the same timestep); ${timesteps.length} steps run`);
    }
    const h = height / this.vae.factor;
    const w = width / this.vae.factor;
    const seedBig = seed === undefined ? undefined : BigInt(seed);
    const latentNumel = n * this.unet.config.inChannels * h * w;

    let context: Tensor | undefined;
    let latents: Tensor<FloatDType> | undefined;
    let exciteContext: Tensor | undefined;  // the conditional rows, split off once for every guided step
    try {
      const enc = await this.textEncoder.encode(rows, { penultimate: this.penultimate });
      if (this.penultimate) {
        enc.lastHiddenState.dispose();
        context = enc.penultimate;
        if (context === undefined) throw new ImprintError(`${fn}: the text encoder returned no penultimate hidden states`, 'INTERNAL');
      } else {
        enc.penultimate?.dispose();
        context = enc.lastHiddenState;
      }
      // Philox gives the same values on every device, so a seed means the same image on the CPU and a GPU.
      const noise = await randn([n, this.unet.config.inChannels, h, w], { dtype: context.dtype as FloatDType, device: this.#device, seed: seedBig });
      try {
        latents = await combine([[scheduler.initNoiseSigma, noise as Tensor<FloatDType>]]);
      } finally {
        noise.dispose();
      }
      if (excite && excite.steps > 0) {
        if (guided) {
          const [uncond, cond] = await split(context, [n, n], { dim: 0 });
          uncond.dispose();
          exciteContext = cond;
        } else {
          exciteContext = context;
        }
      }
      for (let i = 0; i < timesteps.length; i++) {
        const t = timesteps[i];
        if (excite && exciteContext && i < excite.steps) {
          const alpha = excite.scale * Math.sqrt(1 - (0.5 * i) / Math.max(1, excite.steps - 1));
          const probe = { unet: this.unet as UNet2DConditionModel, context: exciteContext, tokens: excite.tokens, subjects: excite.subjects };
          latents = await this.#exciteStep(latents, t, probe, alpha, (loss) => excite.onExcite?.({ step: i + 1, loss }));
        }
        if (excite && i + 1 === excite.steps && exciteContext !== context) {
          exciteContext?.dispose();
          exciteContext = undefined;
        }
        const eps = await this.#guidedNoise(latents, t, context, n, g, guided);
        let next: Tensor<FloatDType>;
        try {
          // Each step's noise continues the seed's stream past the initial latents (offset counts blocks of 4).
          const offset = seedBig === undefined ? undefined : BigInt(Math.ceil(latentNumel / 4) * (i + 1));
          const noise = seedBig === undefined ? {} : { seed: seedBig, offset };
          if (scheduler instanceof EulerAncestralDiscreteScheduler) {
            next = await scheduler.step(eps, t, latents, noise);
          } else if (scheduler instanceof DDIMScheduler) {
            next = await scheduler.step(eps, t, latents, { ...noise, eta });
          } else {
            next = await scheduler.step(eps, t, latents);
          }
        } finally {
          eps.dispose();
        }
        latents.dispose();
        latents = next;
        onStep?.(i + 1, timesteps.length);
      }
      context.dispose();
      context = undefined;
      const unscaled = await combine([[1 / this.vae.scalingFactor, latents]]);
      let images: Tensor;
      try {
        images = await this.vae.decode(unscaled);
      } finally {
        unscaled.dispose();
      }
      if (images.device !== 'cpu') images = await toHost(images);
      try {
        if (latents.device !== 'cpu') latents = await toHost(latents);
      } catch (e) {
        images.dispose();
        throw e;
      }
      return { images, latents };
    } catch (e) {
      disposeAll([exciteContext === context ? undefined : exciteContext, context, latents]);
      throw e;
    } finally {
      // Multistep solvers keep the last prediction between steps; a finished run needs none of it.
      if (scheduler instanceof DPMSolverMultistepScheduler) scheduler.reset();
    }
  }

  /** Checks the excite options: null without excite, else the subjects' context positions (the same in every prompt). */
  #exciteOptions(fn: string, o: Record<string, unknown>, prompts: string[], steps: number) {
    if (o.excite === undefined) {
      for (const k of ['exciteSteps', 'exciteScale', 'onExcite']) if (o[k] !== undefined) throw invalidArgument(`${fn}: ${k} needs excite`);
      return null;
    }
    const words = o.excite;
    if (!Array.isArray(words) || words.length < 1 || words.length > 15 || !words.every((w) => typeof w === 'string' && w.trim() !== '')) {
      throw invalidArgument(`${fn}: excite must list 1 to 15 words of the prompt, got ${describe(words)}`);
    }
    if (!(this.unet instanceof UNet2DConditionModel)) throw invalidArgument(`${fn}: excite needs a UNet2DConditionModel denoiser (it reads the cross-attention)`);
    const maxLength = this.textEncoder.config.maxPositionEmbeddings;
    let first: ReturnType<typeof promptFocus> | undefined;
    for (const prompt of prompts) {
      const found = promptFocus(fn, this.tokenizer, maxLength, prompt, words as string[]);
      if (first && (found.length !== first.length || found.subjects.some((p, i) => p !== first!.subjects[i]))) {
        throw invalidArgument(`${fn}: excite words sit at other token positions in "${prompt}" than in "${prompts[0]}" (or the prompts differ in length); generate such prompts apart`);
      }
      first ??= found;
    }
    const onExcite = o.onExcite;
    if (onExcite !== undefined && typeof onExcite !== 'function') throw invalidArgument(`${fn}: onExcite must be a function, got ${describe(onExcite)}`);
    return {
      // The paper's maps: every token between the start and the end token.
      tokens: first!.tokens,
      subjects: first!.subjects,
      steps: checkInt(fn, 'exciteSteps', o.exciteSteps, 0, steps, Math.ceil(steps / 2)),
      scale: checkNumberIn(fn, 'exciteScale', o.exciteScale, 0, 1e6, 20),
      onExcite: onExcite as ((info: { step: number; loss: number[] }) => void) | undefined,
    };
  }

  /** One Attend-and-Excite update of the latents (the probe holds the conditional rows of the context). */
  async #exciteStep(latents: Tensor<FloatDType>, t: number, probe: ExciteProbe, alpha: number, report: (loss: number[]) => void): Promise<Tensor<FloatDType>> {
    const scaled = await this.scheduler.scaleModelInput(latents, t);
    let grad: Tensor | undefined;
    try {
      const r = await exciteGradient(probe, scaled, t);
      grad = r.grad;
      report(r.loss);
      const next = await combine([[1, latents], [-alpha, grad as Tensor<FloatDType>]]);
      latents.dispose();
      return next;
    } finally {
      grad?.dispose();
      if (scaled !== latents && !scaled.disposed) scaled.dispose();
    }
  }

  /** ε for one step: the UNet on [uncond; cond] combined as ε_u + g·(ε_c − ε_u), or on cond alone. */
  async #guidedNoise(latents: Tensor<FloatDType>, t: number, context: Tensor, n: number, g: number, guided: boolean): Promise<Tensor<FloatDType>> {
    const scaled = await this.scheduler.scaleModelInput(latents, t);
    // DDIM and DPM-Solver hand back `latents` itself, which must outlive this step.
    const ownScaled = scaled !== latents;
    let input: Tensor | undefined;
    let out: Tensor | undefined;
    let parts: Tensor[] = [];
    try {
      input = guided ? await concat([scaled, scaled], { dim: 0 }) : scaled;
      out = await this.unet.forward(input, t, context);
      const want = [guided ? 2 * n : n, ...latents.shape.slice(1)];
      if (out.shape.length !== want.length || out.shape.some((d, i) => d !== want[i])) {
        throw new ImprintError(`StableDiffusionPipeline.generate: the UNet returned [${out.shape.join(', ')}], expected [${want.join(', ')}]`, 'SHAPE_MISMATCH');
      }
      if (!guided) {
        const eps = out;
        out = undefined;
        return eps as Tensor<FloatDType>;
      }
      parts = await split(out, [n, n], { dim: 0 });
      return await combine([[1 - g, parts[0] as Tensor<FloatDType>], [g, parts[1] as Tensor<FloatDType>]]);
    } finally {
      disposeAll([...parts, out]);
      if (input !== undefined && input !== scaled) input.dispose();
      if (ownScaled) scaled.dispose();
    }
  }
}
