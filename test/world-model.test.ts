// The embedded world model shipped in the package (lib/world/model): it is
// a diffusers folder that loads with no network, within the size budget, and
// draws what its prompts ask, measured by the world's geometric metrics
// (the thresholds sit below the figures measured when it was trained; see
// the README's table).
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { PIXEL_SPACE } from '../lib/pipeline/pixel-space.js';
import { evaluate } from '../lib/world/evaluate.js';
import { textAlignment } from '../lib/world/metrics.js';
import { WORLD_TEXT_ENCODER_CONFIG, WORLD_UNET_CONFIG } from '../lib/world/model-config.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { readSafetensorsHeader } from '../lib/io/safetensors.js';

const t = suite('world.model');
const dir = worldModelDir();

function folderBytes(d: string): number {
  return readdirSync(d, { withFileTypes: true }).reduce((a, e) => a + (e.isDirectory() ? folderBytes(join(d, e.name)) : statSync(join(d, e.name)).size), 0);
}

t('the shipped model is a complete diffusers folder of at most 20 MB, fp16 on disk, configs as the code defines them', () => {
  const bytes = folderBytes(dir);
  assert.ok(bytes <= 20 * 1024 * 1024, `${(bytes / 2 ** 20).toFixed(1)} MB`);
  assert.equal(JSON.parse(readFileSync(join(dir, 'unet', 'config.json'), 'utf8')), WORLD_UNET_CONFIG);
  assert.equal(JSON.parse(readFileSync(join(dir, 'text_encoder', 'config.json'), 'utf8')), WORLD_TEXT_ENCODER_CONFIG);
  const h = readSafetensorsHeader(join(dir, 'unet', 'diffusion_pytorch_model.safetensors'));
  assert.ok(Object.values(h.tensors).every((e) => e.dtype === 'F16'));
});

const PROMPTS = ['a red circle', 'a blue square', 'a yellow triangle', 'a green circle on the left', 'a white square on the right', 'a purple triangle on a gray background'];
const MEASURED_FLOOR = 0.6;  // overall text alignment must stay at or above this (see the README for the measured figure)

t('it loads as f32 with no network, is deterministic for a seed, and draws what the prompts ask', async () => {
  const pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler: 'dpm++2m' });
  assert.is(pipe.vae, PIXEL_SPACE);
  const a = await pipe.generate({ prompt: 'a red circle', width: 32, height: 32, steps: 10, seed: 3 });
  const b = await pipe.generate({ prompt: 'a red circle', width: 32, height: 32, steps: 10, seed: 3 });
  assert.equal(Array.from(a.images.dataSync() as Float32Array), Array.from(b.images.dataSync() as Float32Array), 'same seed, same image');
  const r = await evaluate({ model: pipe, prompts: PROMPTS, imagesPerPrompt: 2, steps: 20, seed: 0 });
  pipe.dispose();
  assert.ok(r.textAlignment.mean >= MEASURED_FLOOR, `text alignment ${r.textAlignment.mean.toFixed(3)} ≥ ${MEASURED_FLOOR}`);
  // The same images score clearly lower against the other prompts: the scores follow the prompts, not the image style.
  let other = 0;
  let n = 0;
  r.images.forEach((img, i) => {
    const own = Math.floor(i / 2);
    PROMPTS.forEach((p, k) => {
      if (k !== own) {
        other += textAlignment(img, p, r.resolution);
        n++;
      }
    });
  });
  assert.ok(other / n < r.textAlignment.mean - 0.2, `own prompts ${r.textAlignment.mean.toFixed(3)} vs other prompts ${(other / n).toFixed(3)}`);
});

t.run();
