// The embedded world model shipped in the package (lib/world/model): it is
// a diffusers folder that loads with no network, within the size budget,
// samples deterministically, and its images follow their prompts better than
// other prompts, by the world's geometric metrics: the 12 evaluation prompts
// × 2 images (DPM-Solver++ 2M, 20 steps, guidance 4) over three seeds; the
// figures and floors are in MEASURED below.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { PIXEL_SPACE } from '../lib/pipeline/pixel-space.js';
import { evaluate, WORLD_EVAL_PROMPTS } from '../lib/world/evaluate.js';
import { stat, textAlignment } from '../lib/world/metrics.js';
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

const PROMPTS = WORLD_EVAL_PROMPTS;
/** Sampling seeds: the figures below are means over them. */
const SEEDS = [0, 1, 2] as const;
/**
 * Per figure: the mean over SEEDS and the per-seed std, measured in the CMake
 * (OpenBLAS) and node-gyp builds; each floor is the lower mean less twice the
 * larger std. Fractions of the requested attributes (26 shapes and colours, 12
 * positions a seed); both builds gave the same images here (2-core AMD EPYC,
 * AVX2). The model it replaced (the first two phases: text 0.775 on seed 0,
 * shape 10 of 26) fails the text and shape floors.
 */
const MEASURED: Record<'own' | 'margin' | 'shape' | 'colour' | 'position', [cmake: [number, number], gyp: [number, number]]> = {
  own: [[0.909, 0.010], [0.909, 0.010]],      // per seed 0.914, 0.918, 0.895 (the first two phases: 0.775 on seed 0)
  margin: [[0.562, 0.006], [0.562, 0.006]],   // own prompts less the others (0.350)
  shape: [[0.859, 0.018], [0.859, 0.018]],    // 23, 22, 22 of 26 (the first two phases: 10 on seed 0; chance about 9)
  colour: [[0.885, 0.054], [0.885, 0.054]],   // 22, 22, 25 of 26 (chance about 3)
  position: [[0.889, 0.039], [0.889, 0.039]], // 11, 11, 10 of 12 (the first phase alone: 2)
};
const floor = (k: keyof typeof MEASURED): number => {
  const [[m1, s1], [m2, s2]] = MEASURED[k];
  return Math.min(m1, m2) - 2 * Math.max(s1, s2);
};

t('it loads as f32 with no network and is deterministic for a seed', async () => {
  const pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler: 'dpm++2m' });
  try {
    assert.is(pipe.vae, PIXEL_SPACE);
    const a = await pipe.generate({ prompt: 'a red circle', width: 32, height: 32, steps: 10, seed: 3 });
    const b = await pipe.generate({ prompt: 'a red circle', width: 32, height: 32, steps: 10, seed: 3 });
    assert.equal(Array.from(a.images.dataSync() as Float32Array), Array.from(b.images.dataSync() as Float32Array), 'same seed, same image');
  } finally {
    pipe.dispose();
  }
});

t('a scheduler that gives fewer distinct timesteps than asked says so, and runs that many (Karras sigmas on the cosine schedule)', async () => {
  const pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler: 'dpm++2m-karras' });
  try {
    const warnings: string[] = [];
    let calls = 0;
    const r = await pipe.generate({ prompt: 'a red circle', width: 32, height: 32, steps: 25, seed: 1, onStep: () => calls++, onWarning: (m) => warnings.push(m) });
    r.images.dispose();
    r.latents.dispose();
    assert.ok(calls < 25, `Karras sigmas repeat timesteps on this schedule (${calls} ran)`);
    assert.equal(warnings, [`StableDiffusionPipeline.generate: the scheduler gives ${calls} distinct timesteps for 25 steps on this model's noise schedule (several round to the same timestep); ${calls} steps run`]);
  } finally {
    pipe.dispose();
  }
});

t(`its images follow their prompts (12 evaluation prompts × 2 images, mean of ${SEEDS.length} seeds)`, async () => {
  const pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler: 'dpm++2m' });
  const per: Record<keyof typeof MEASURED, number[]> = { own: [], margin: [], shape: [], colour: [], position: [] };
  try {
    for (const seed of SEEDS) {
      const r = await evaluate({ model: pipe, prompts: PROMPTS, imagesPerPrompt: 2, steps: 20, seed });
      assert.is(r.attributes.shape.asked, 26);
      assert.is(r.attributes.position.asked, 12);
      // The same images score lower against the other prompts: they follow their own prompts.
      let other = 0;
      let n = 0;
      r.images.forEach((img, i) => {
        PROMPTS.forEach((p, k) => {
          if (k !== Math.floor(i / 2)) {
            other += textAlignment(img, p, r.resolution);
            n++;
          }
        });
      });
      per.own.push(r.textAlignment.mean);
      per.margin.push(r.textAlignment.mean - other / n);
      for (const k of ['shape', 'colour', 'position'] as const) per[k].push(r.attributes[k].shown / r.attributes[k].asked);
    }
  } finally {
    pipe.dispose();
  }
  const table = (Object.keys(per) as (keyof typeof MEASURED)[]).map((k) => `${k} ${stat(per[k]).mean.toFixed(3)} ± ${stat(per[k]).std.toFixed(3)} [${per[k].map((v) => v.toFixed(3)).join(', ')}]`).join('; ');
  console.log(`world model over seeds ${SEEDS.join(', ')}: ${table}`);
  for (const k of Object.keys(per) as (keyof typeof MEASURED)[]) {
    assert.ok(stat(per[k]).mean >= floor(k), `${k}: mean ${stat(per[k]).mean.toFixed(3)} over seeds, want ≥ ${floor(k).toFixed(3)} (${table})`);
  }
});

t.run();
