// The model a training run works on, loaded and checked once for every
// method: f32 weights on the run's device (or the caller's preloaded ones),
// the UNet, text encoder and VAE (or pixel space) built over them, the DDPM
// training schedule, the tokenizer, the base model's fingerprint and the
// training resolution. Errors name the model folder and what is missing.
import { join } from 'node:path';

import { modelFingerprint } from '../concepts/fingerprint.js';
import { ImprintError, invalidArgument } from '../errors.js';
import { loadDiffusersModel, type LoadedDiffusersModel } from '../models/checkpoint.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { readJsonFile } from '../models/configs.js';
import { UNet2DConditionModel } from '../models/unet.js';
import { AutoencoderKL } from '../models/vae.js';
import { PIXEL_SPACE } from '../pipeline/pixel-space.js';
import { schedulerFromConfig, StableDiffusionPipeline } from '../pipeline/txt2img.js';
import { DDPMTraining } from '../schedulers/ddpm.js';
import type { Tensor } from '../tensor.js';
import { ClipTokenizer } from '../tokenizer/clip.js';
import { checkInt, type Device } from '../validate.js';

export interface TrainingModel {
  model: LoadedDiffusersModel;
  /** The text encoder's raw config.json (a method that adds tokens grows vocab_size). */
  rawText: Record<string, unknown>;
  unet: UNet2DConditionModel;
  encoder: ClipTextEncoder;
  vae: AutoencoderKL | typeof PIXEL_SPACE;
  ddpm: DDPMTraining;
  tokenizer: ClipTokenizer;
  /** The VAE's downsampling factor (1 in pixel space). */
  factor: number;
  resolution: number;
  fingerprint: string;
  /** Tensors loaded here (none for preloaded weights): free them with disposeTrainingModel. */
  owned: Tensor[];
}

/**
 * Loads `modelDir` in f32 onto `device` (or checks `preloaded`, which the
 * caller keeps), builds its parts and picks the resolution (`resolution`, or
 * the UNet's sample_size × the VAE factor).
 */
export async function loadTrainingModel(fn: string, modelDir: string, device: Device, resolution: unknown, preloaded?: LoadedDiffusersModel): Promise<TrainingModel> {
  let model: LoadedDiffusersModel;
  try {
    model = preloaded ?? await loadDiffusersModel(modelDir, { dtype: 'f32', device });
  } catch (e) {
    if (e instanceof ImprintError) throw new ImprintError(`${fn}: model ${modelDir}: ${e.message}`, e.code);
    throw e;
  }
  const owned: Tensor[] = preloaded ? [] : [...model.unet.weights.values(), ...model.textEncoder.weights.values(), ...(model.vae?.weights.values() ?? [])];
  try {
    if (model.tokenizerDir === undefined) throw invalidArgument(`${fn}: ${join(modelDir, 'tokenizer')} is missing (training needs the CLIP tokenizer)`);
    if (model.schedulerConfig === undefined) throw invalidArgument(`${fn}: ${join(modelDir, 'scheduler', 'scheduler_config.json')} is missing`);
    const rawUnet = readJsonFile(join(modelDir, 'unet', 'config.json'));
    const rawText = readJsonFile(join(modelDir, 'text_encoder', 'config.json')) as Record<string, unknown>;
    const unet = UNet2DConditionModel.fromWeights(rawUnet, model.unet.weights);
    const encoder = ClipTextEncoder.fromWeights(rawText, model.textEncoder.weights);
    if (unet.dtype !== 'f32' || encoder.dtype !== 'f32') throw invalidArgument(`${fn}: training needs f32 weights, got a ${unet.dtype} UNet and a ${encoder.dtype} text encoder (load with dtype 'f32')`);
    for (const [part, at] of [['UNet', unet.device], ['text encoder', encoder.device]] as const) {
      if (at !== device) throw new ImprintError(`${fn}: the ${part} weights are on ${at} but training runs on ${device} (load them with loadDiffusersModel(model, { device: '${device}' }))`, 'DEVICE_MISMATCH');
    }
    const vae = model.vae ? AutoencoderKL.fromWeights(readJsonFile(join(modelDir, 'vae', 'config.json')), model.vae.weights) : PIXEL_SPACE;
    if (vae !== PIXEL_SPACE && (vae as AutoencoderKL).device !== device) {
      throw new ImprintError(`${fn}: the VAE weights are on ${(vae as AutoencoderKL).device} but training runs on ${device}`, 'DEVICE_MISMATCH');
    }
    const ddpm = DDPMTraining.fromConfig(model.schedulerConfig);
    const tokenizer = await ClipTokenizer.fromFolder(model.tokenizerDir);
    if (tokenizer.vocabSize !== encoder.config.vocabSize) {
      throw invalidArgument(`${fn}: the tokenizer has ${tokenizer.vocabSize} tokens but the text encoder's vocab_size is ${encoder.config.vocabSize}`);
    }
    const factor = vae.factor;
    const sampleSize = (rawUnet as { sample_size?: unknown }).sample_size;
    const defaultRes = typeof sampleSize === 'number' && Number.isSafeInteger(sampleSize) ? sampleSize * factor : 512;
    const res = checkInt(fn, 'resolution', resolution, factor, 4096, defaultRes);
    if (res % factor !== 0) throw invalidArgument(`${fn}: resolution must be a multiple of the VAE factor ${factor}, got ${res}`);
    const fingerprint = await modelFingerprint(model.unet.weights, encoder.tokenEmbedding);
    return { model, rawText, unet, encoder, vae, ddpm, tokenizer, factor, resolution: res, fingerprint, owned };
  } catch (e) {
    for (const t of owned) if (!t.disposed) t.dispose();
    throw e;
  }
}

/** A pipeline over the base model (DDIM), for sampling regularization images. */
export function basePipeline(m: TrainingModel, device: Device): StableDiffusionPipeline {
  return StableDiffusionPipeline.fromComponents({
    tokenizer: m.tokenizer, textEncoder: m.encoder, unet: m.unet, vae: m.vae, scheduler: schedulerFromConfig('ddim', m.model.schedulerConfig!), device,
  });
}

/** Frees what loadTrainingModel loaded (nothing of preloaded weights). */
export function disposeTrainingModel(m: TrainingModel): void {
  for (const t of m.owned) if (!t.disposed) t.dispose();
}
