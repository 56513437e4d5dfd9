// A diffusers folder around the tiny SD1 reference model for Custom Diffusion
// tests: unet/, vae/, text_encoder/ linked from fixtures/reference/parity,
// a byte-level tokenizer padded to the encoder's 1000 rows (one merge makes
// 'ca' a token), a DDPM-style scheduler config, and small PNG concept images.
// Every folder made here (and by tempFolder) is removed by removeTempFolders,
// which the suites using them run as an after hook, or at the latest on exit.
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

import { byteToChar } from '../lib/tokenizer/bytes.js';
import { PARITY } from './tiny-models.js';

export const SCHEDULER_CONFIG = {
  _class_name: 'PNDMScheduler', beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1,
};

const made: string[] = [];

/** A fresh folder in the system temp dir, its name starting with prefix; removed by removeTempFolders. */
export async function tempFolder(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

/** Removes every folder made so far by this module (a suite's after hook). */
export function removeTempFolders(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}
process.once('exit', removeTempFolders);  // a suite that stopped before its after hook

/** A fresh temp folder holding the tiny model; returns its path. */
export async function tinyModelFolder(): Promise<string> {
  const dir = await tempFolder('imprint-cd-model-');
  await writeFile(join(dir, 'model_index.json'), JSON.stringify({
    _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'],
    text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'PNDMScheduler'],
  }));
  for (const part of ['unet', 'vae', 'text_encoder']) await symlink(join(PARITY, 'sd1-tiny', part), join(dir, part));
  const tok = join(dir, 'tokenizer');
  await mkdir(tok);
  const vocab: Record<string, number> = {};
  let id = 0;
  for (const c of byteToChar) vocab[c] = id++;
  for (const c of byteToChar) vocab[`${c}</w>`] = id++;
  vocab['ca'] = id++;
  vocab['<|startoftext|>'] = id++;
  vocab['<|endoftext|>'] = id++;
  while (id < 1000) vocab[`<unused${id}>`] = id++;  // the encoder's 1000 rows: new tokens take ids 1000, 1001, ...
  await writeFile(join(tok, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(tok, 'merges.txt'), '#version: 0.2\nc a\n');
  await mkdir(join(dir, 'scheduler'));
  await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(SCHEDULER_CONFIG));
  return dir;
}

/** A w×h PNG: a coloured square of the given colour on grey, its corner at (x, y). */
export function squarePng(w: number, h: number, colour: [number, number, number], x: number, y: number, side: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3, 128);
  for (let r = y; r < Math.min(h, y + side); r++) for (let c = x; c < Math.min(w, x + side); c++) px.set(colour, (r * w + c) * 3);
  return sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

/** A folder of n concept images (PNG) named 00.png, 01.png, ... */
export async function conceptFolder(n: number, colour: [number, number, number]): Promise<string> {
  const dir = await tempFolder('imprint-cd-images-');
  for (let i = 0; i < n; i++) await writeFile(join(dir, `${String(i).padStart(2, '0')}.png`), await squarePng(24, 20, colour, 3 + i, 4, 10));
  return dir;
}
