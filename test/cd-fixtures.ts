// Shared by the Custom Diffusion tests: random concepts for the tiny SD1
// UNet (randn deltas on its attn2 matrices, randn token rows), and a tiny
// tokenizer folder whose vocabulary matches the tiny text encoder's 1000 rows.
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { AutoencoderKL, ClipTextEncoder, ClipTokenizer, UNet2DConditionModel, randn, schedulers, type Tensor } from '../lib/index.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { PARITY, tinyModelLoader } from './tiny-models.js';
import type { CustomDiffusionConcept, CustomDiffusionMode } from '../lib/concepts/types.js';
import { byteToChar } from '../lib/tokenizer/bytes.js';

const KV = /\.attn2\.to_(k|v)\.weight$/;
const CROSS = /\.attn2\.to_(q|k|v|out\.0)\.weight$/;

export interface RandomConceptOptions {
  mode?: CustomDiffusionMode;
  tokens?: Array<[token: string, classWord: string]>;
  hidden?: number;
  seed?: number;
  /** std of the deltas; default 0.05. */
  scale?: number;
  fingerprint?: string;
  /** Only the first n trained matrices (default all). */
  limit?: number;
}

export async function randomConcept(unetWeights: Map<string, Tensor>, o: RandomConceptOptions = {}): Promise<CustomDiffusionConcept> {
  const mode = o.mode ?? 'kv';
  const seed = o.seed ?? 1;
  const names = [...unetWeights.keys()].filter((n) => (mode === 'kv' ? KV : CROSS).test(n)).sort().slice(0, o.limit);
  const deltas = new Map<string, Tensor<'f32'>>();
  for (const [i, n] of names.entries()) deltas.set(n, await randn(unetWeights.get(n)!.shape, { seed: seed * 1000 + i, std: o.scale ?? 0.05 }));
  const tokens = [];
  for (const [i, [token, classWord]] of (o.tokens ?? [['<new1>', 'dog']]).entries()) {
    tokens.push({ token, classWord, embedding: await randn([o.hidden ?? 32], { seed: seed * 1000 + 900 + i, std: 0.5 }) });
  }
  return { method: 'custom-diffusion', mode, tokens, deltas, baseFingerprint: o.fingerprint ?? 'sha256:test' };
}

/** The library's concept disposal, under the name these tests use. */
export { disposeConcept as disposeAll } from '../lib/concepts/concept-file.js';

/**
 * A CLIP-style tokenizer folder of exactly `size` ids: the 512 byte symbols
 * (plain and word-final), filler merges' results, then the start and end
 * tokens, so words tokenize letter by letter and ids stay below `size`.
 */
export async function writeTinyTokenizer(dir: string, size = 1000): Promise<void> {
  await mkdir(dir, { recursive: true });
  const vocab: Record<string, number> = {};
  let id = 0;
  for (const c of byteToChar) vocab[c] = id++;
  for (const c of byteToChar) vocab[`${c}</w>`] = id++;
  const merges: string[] = [];
  // Filler entries made by merges of two symbols that prompts here never contain.
  const rare = byteToChar.slice(200, 256);
  for (let i = 0; id < size - 2; i++) {
    const a = rare[Math.floor(i / rare.length) % rare.length];
    const b = rare[i % rare.length];
    if (vocab[a + b] !== undefined) continue;
    vocab[a + b] = id++;
    merges.push(`${a} ${b}`);
  }
  vocab['<|startoftext|>'] = id++;
  vocab['<|endoftext|>'] = id++;
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(dir, 'merges.txt'), `#version: 0.2\n${merges.join('\n')}\n`);
}

export const SCHEDULER_CONFIG = {
  beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear', num_train_timesteps: 1000,
  set_alpha_to_one: false, steps_offset: 1, clip_sample: false,
};

/** The tiny SD1 components with a fresh 1000-id tokenizer (so tokens can be added), as a pipeline the caller disposes. */
export async function tinyPipeline(tokenizerDir: string): Promise<StableDiffusionPipeline> {
  const [u, te, va] = await Promise.all([tinyUnet('sd1-tiny'), tinyText('sd1-tiny'), tinyVae('sd1-tiny')]);
  if (!existsSync(join(tokenizerDir, 'vocab.json'))) await writeTinyTokenizer(tokenizerDir);
  return StableDiffusionPipeline.fromComponents({
    tokenizer: await ClipTokenizer.fromFolder(tokenizerDir),
    textEncoder: ClipTextEncoder.fromWeights(te.config, te.weights),
    unet: UNet2DConditionModel.fromWeights(u.config, u.weights),
    vae: AutoencoderKL.fromWeights(va.config, va.weights),
    scheduler: schedulers.DDIMScheduler.fromConfig(SCHEDULER_CONFIG),
  });
}

const tinyUnet = tinyModelLoader('unet');
const tinyText = tinyModelLoader('text_encoder');
const tinyVae = tinyModelLoader('vae');
export { tinyUnet, tinyText };

/** A diffusers model folder of the tiny SD1 model (symlinked components, the 1000-id tokenizer). */
export async function tinyModelFolder(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model_index.json'), JSON.stringify({
    _class_name: 'StableDiffusionPipeline',
    unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
    text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'DDIMScheduler'],
  }));
  for (const part of ['unet', 'vae', 'text_encoder']) await symlink(join(PARITY, 'sd1-tiny', part), join(dir, part));
  await writeTinyTokenizer(join(dir, 'tokenizer'));
  await mkdir(join(dir, 'scheduler'));
  await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify({ _class_name: 'DDIMScheduler', ...SCHEDULER_CONFIG }));
  return dir;
}
