// Custom Diffusion end to end on the embedded world model: teach it held-out
// concepts from their five instance images, then measure the paper's two
// figures on the composition prompts (README, "Custom Diffusion on the
// world"). Measured on this machine (CPU, seed 0, 4 images × 6 prompts,
// DPM-Solver++ 2M 25 steps, the three-phase world model):
//   single 'star' (250 steps, captioned instances and their mirrors, the
//   default): image alignment 0.128 → 0.701, text 0.854 → 0.771
//   merged star + ring (closed form of two such singles, default targets:
//   the training prompts): image alignment star 0.128 → 0.568, ring 0.030 →
//   0.237; text 0.729 and 0.750.
//   joint 'star' + 'ring' (500 steps, captioned, the default): image
//   alignment star 0.128 → 0.647, ring 0.030 → 0.700, text 0.854 → 0.771
//   and 0.688 (the ring's prompts lose the most).
// Both concepts in one image (prompts naming both, presence ≥ 0.4) is not
// asserted on this model: the joint pair shows it in 2 of 12 images in the
// CMake (OpenBLAS) build and in 0 of 12 in the node-gyp build (the same
// training, rounded differently), the merged pair in 0 (3 and 2 of 12 on the
// previous, two-phase model); README, "Custom Diffusion on the world".
// The thresholds below sit under those figures; the trainer's SD default lr
// (1e-5 here) failed them on the first-phase model (image alignment 0.005:
// it drew empty scenes).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { disposeConcept } from '../lib/custom-diffusion/concept-file.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { mergeConcepts } from '../lib/custom-diffusion/merge.js';
import { readSafetensorsHeader } from '../lib/io/safetensors.js';
import type { ConceptWeights } from '../lib/custom-diffusion/types.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { mirroredInstances, scoreWorldConcept, teachWorldConcepts } from '../lib/world/teach.js';
import { assertRejects } from './helpers.js';

const t = suite('custom-diffusion.world');
let star: ConceptWeights | undefined;  // the single concept of the first test, merged in the last
t.after(() => {
  if (star) disposeConcept(star);
});

t('a single concept: image alignment rises clearly, text alignment stays close to the base model', async () => {
  star = (await teachWorldConcepts({ concepts: ['star'], quiet: true })).concept;
  const s = await scoreWorldConcept(star, 0, 'star');
  const img = [s.base.imageAlignment!.mean, s.trained.imageAlignment!.mean];
  const text = [s.base.textAlignment.mean, s.trained.textAlignment.mean];
  assert.ok(img[1] >= img[0] + 0.25, `image alignment ${img[0].toFixed(3)} → ${img[1].toFixed(3)}, want a rise ≥ 0.25 (measured +0.573)`);
  assert.ok(text[1] >= text[0] - 0.1, `text alignment ${text[0].toFixed(3)} → ${text[1].toFixed(3)}, want a drop ≤ 0.1 (measured 0.083)`);
  assert.is(star.tokens[0].prompt, 'a <new1> shape', 'trained on a prompt in the world grammar');
});

t('two concepts trained jointly: both are learned', async () => {
  const ids = ['star', 'ring'];
  const r = await teachWorldConcepts({ concepts: ids, quiet: true });
  try {
    for (const [i, id] of ids.entries()) {
      const s = await scoreWorldConcept(r.concept, i, id);
      const img = [s.base.imageAlignment!.mean, s.trained.imageAlignment!.mean];
      assert.ok(img[1] >= img[0] + 0.25, `${id}: image alignment ${img[0].toFixed(3)} → ${img[1].toFixed(3)}, want a rise ≥ 0.25 (measured +0.519, +0.670)`);
      // A drop ≤ 0.2: the jointly trained ring costs its prompts 0.166 (measured).
      assert.ok(s.trained.textAlignment.mean >= s.base.textAlignment.mean - 0.2, `${id}: text alignment ${s.base.textAlignment.mean.toFixed(3)} → ${s.trained.textAlignment.mean.toFixed(3)}`);
    }
  } finally {
    disposeConcept(r.concept);
  }
});

t('two concepts trained apart and merged in closed form: each is kept on its own prompts', async () => {
  assert.ok(star, 'the first test trained the star');
  const ring = (await teachWorldConcepts({ concepts: ['ring'], tokens: ['<new2>'], quiet: true })).concept;
  try {
    const pipe = await StableDiffusionPipeline.fromPretrained(worldModelDir(), { scheduler: 'dpm++2m' });
    const m = await mergeConcepts(pipe, [star!, ring]).finally(() => pipe.dispose());
    try {
      assert.ok(m.residuals.overall.targetRelative < 1e-4, `target residual ${m.residuals.overall.targetRelative}`);
      // The ring keeps less of itself through the merge than the star (measured +0.440 and +0.207).
      for (const [i, id, rise] of [[0, 'star', 0.25], [1, 'ring', 0.15]] as const) {
        const s = await scoreWorldConcept(m.concept, i, id);
        const img = [s.base.imageAlignment!.mean, s.trained.imageAlignment!.mean];
        assert.ok(img[1] >= img[0] + rise, `merged ${id}: image alignment ${img[0].toFixed(3)} → ${img[1].toFixed(3)}, want a rise ≥ ${rise}`);
        // The merged star's prompts lose 0.125 (measured), the ring's 0.104.
        assert.ok(s.trained.textAlignment.mean >= s.base.textAlignment.mean - 0.2, `merged ${id}: text alignment ${s.base.textAlignment.mean.toFixed(3)} → ${s.trained.textAlignment.mean.toFixed(3)}`);
      }
    } finally {
      disposeConcept(m.concept);
    }
  } finally {
    disposeConcept(ring);
  }
});

t('teachWorldConcepts passes lr, steps, captions and augmentation to the trainer (recorded in its checkpoint)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'imprint-cd-world-'));
  const other = await mkdtemp(join(tmpdir(), 'imprint-cd-world-'));
  try {
    const r = await teachWorldConcepts({ concepts: ['ring'], steps: 2, lr: 5e-4, numRegImages: 1, workDir: dir, quiet: true });
    disposeConcept(r.concept);
    assert.is(r.losses.length, 2);
    const meta = readSafetensorsHeader(join(dir, 'checkpoint.safetensors')).metadata;
    assert.equal(JSON.parse(meta.augment), { augment: false, hflip: false, variants: 10 }, 'captions name positions: no augmentation, no flips');
    const prompts = JSON.parse(meta.prompts)[0];
    assert.is(prompts.instance, 'a <new1> shape');
    assert.equal(prompts.images, (await mirroredInstances('ring', '<new1>')).prompts, 'the five instances and their mirrors, each with its caption');
    assert.is(meta.step, '2');
    assert.is(Number(meta.lr), 5e-4 * 2 * 2, 'the base lr, scaled by batch 2 and the prior');
    // Without captions: one prompt for the five images, the paper's augmentation and flips.
    disposeConcept((await teachWorldConcepts({ concepts: ['ring'], steps: 1, numRegImages: 1, captions: false, workDir: other, quiet: true })).concept);
    const plain = readSafetensorsHeader(join(other, 'checkpoint.safetensors')).metadata;
    assert.equal(JSON.parse(plain.augment), { augment: true, hflip: true, variants: 10 });
    assert.is(JSON.parse(plain.prompts)[0].images, undefined);
    await assertRejects(() => teachWorldConcepts({ concepts: ['ring'], augment: 'no' as unknown as boolean, quiet: true }), 'INVALID_ARGUMENT', /augment/);
    await assertRejects(() => teachWorldConcepts({ concepts: ['ring'], captions: 1 as unknown as boolean, quiet: true }), 'INVALID_ARGUMENT', /captions must be a boolean/);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(other, { recursive: true, force: true });
  }
});

t.run();
