// Custom Diffusion end to end on the embedded world model, over several
// training seeds (test/cd-world-figures.ts): teach it held-out concepts
// ('star', 'ring') from their instance images, apart (then merged in closed
// form) and jointly, and compare each concept's composition prompts with the
// untrained model's: image alignment (shape and colour), shape alignment
// (colour-invariant) and text alignment (README, "Custom Diffusion on the
// world"). Each test asserts on the mean over the seeds; each threshold is
// the lower of the two builds' measured means (CMake/OpenBLAS and
// node-gyp) less twice the larger per-seed standard deviation, so it holds
// on any machine while a broken trainer, merge or metric (rises near 0)
// fails it. MEASURED below holds those figures (2-core AMD EPYC, AVX2, no
// AVX-512; about 6 minutes a seed); README, "Custom Diffusion on the world".
// Both concepts in one image (prompts naming both) is not asserted: on this
// model neither the merge nor joint training draws them together reliably
// (README).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { disposeConcept } from '../lib/concepts/concept-file.js';
import { readSafetensorsHeader } from '../lib/io/safetensors.js';
import { mirroredInstances, teachWorldConcepts } from '../lib/world/teach.js';
import { CONCEPT_IDS, change, cdWorldFigures, formatFigures, SEEDS, type ConceptId, type Figures, type Method } from './cd-world-figures.js';
import { assertRejects } from './helpers.js';

type Score = 'image' | 'shape' | 'text';
/** Per method, concept and score: the mean change over SEEDS (rise; for text, the change, usually a drop) and its per-seed std, CMake then node-gyp. */
const MEASURED: Record<Method, Record<ConceptId, Record<Score, [cmake: [number, number], gyp: [number, number]]>>> = {
  single: {
    star: { image: [[0.551, 0.005], [0.568, 0.028]], shape: [[0.116, 0.012], [0.123, 0.018]], text: [[-0.069, 0.010], [-0.028, 0.043]] },
    ring: { image: [[0.527, 0.052], [0.527, 0.052]], shape: [[0.096, 0.051], [0.096, 0.051]], text: [[-0.021, 0.135], [-0.021, 0.135]] },
  },
  merged: {
    star: { image: [[0.445, 0.089], [0.506, 0.041]], shape: [[0.104, 0.028], [0.109, 0.033]], text: [[-0.139, 0.139], [-0.160, 0.130]] },
    ring: { image: [[0.251, 0.098], [0.262, 0.112]], shape: [[-0.014, 0.074], [-0.003, 0.080]], text: [[-0.125, 0.153], [-0.167, 0.090]] },
  },
  joint: {
    star: { image: [[0.370, 0.078], [0.357, 0.097]], shape: [[0.109, 0.027], [0.111, 0.033]], text: [[-0.174, 0.043], [-0.160, 0.055]] },
    ring: { image: [[0.663, 0.013], [0.655, 0.028]], shape: [[0.112, 0.015], [0.115, 0.013]], text: [[-0.118, 0.043], [-0.125, 0.017]] },
  },
};

/** The lower build mean less twice the larger std (see the header). */
function threshold(method: Method, id: ConceptId, score: Score): number {
  const [[m1, s1], [m2, s2]] = MEASURED[method][id][score];
  return Math.min(m1, m2) - 2 * Math.max(s1, s2);
}

/**
 * A rise is asserted only where its floor is clearly above zero: where the
 * spread reaches zero (the merged ring's shape), the method does not reliably
 * raise that score on this model, and a floor at or below zero would assert
 * nothing. Text changes are always asserted (they bound the drop).
 */
const MIN_RISE = 0.02;

const t = suite('custom-diffusion.world');
let figures: Figures;
t.before(async () => {
  figures = await cdWorldFigures((line) => console.log(line));
  console.log(formatFigures(figures));
});

const WHAT: Record<Method, string> = {
  single: 'one concept trained alone',
  merged: 'two concepts trained apart and merged in closed form',
  joint: 'two concepts trained jointly',
};

for (const method of ['single', 'merged', 'joint'] as const) {
  t(`${WHAT[method]}: image and shape alignment rise, text alignment stays within its margin (mean of ${SEEDS.length} seeds)`, () => {
    for (const id of CONCEPT_IDS) {
      assert.ok(threshold(method, id, 'image') >= MIN_RISE, `${method} ${id}: the image alignment rise is asserted`);
      for (const score of ['image', 'shape', 'text'] as const) {
        const c = change(figures, method, id, score);
        const want = threshold(method, id, score);
        if (score !== 'text' && want < MIN_RISE) continue;
        const what = score === 'text' ? 'change' : 'rise';
        assert.ok(c.mean >= want, `${method} ${id}: ${score} alignment ${what} ${c.mean.toFixed(3)} ± ${c.std.toFixed(3)} over seeds ${SEEDS.join(', ')}, want ≥ ${want.toFixed(3)}`);
      }
    }
  });
}

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
