// The world model's pretraining loop: a few steps on a tiny budget learn
// (the loss falls on a repeated batch is not asserted here; the shipped
// model's quality is), resume from a checkpoint gives bit-identical weights,
// the written folder loads as a pixel-space pipeline, and bad options fail.
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { loadSafetensors } from '../lib/io/safetensors.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { PIXEL_SPACE } from '../lib/pipeline/pixel-space.js';
import { HIGH_NOISE_FROM, imagesToTensor, lossWeights, pretrainBatch, pretrainWorld, sampleTimesteps, scheduleLr } from '../lib/world/pretrain.js';
import { SeededRandom } from '../lib/train/random.js';
import { warmupCosine } from '../lib/train/optimizer.js';
import { layoutSample, PALETTE, renderScene, worldSample, type Scene } from '../lib/world/scene.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { pretrainWorldRecipe, SHIPPED_RECIPE } from '../lib/world/recipe.js';
import { assertRejects } from './helpers.js';

const t = suite('world.pretrain');
const work = mkdtempSync(join(tmpdir(), 'imprint-pretrain-'));

function folder(name: string): string {
  const dir = join(work, name, 'model');
  cpSync(join(worldModelDir(), 'tokenizer'), join(dir, 'tokenizer'), { recursive: true });
  return dir;
}

/** A loaded tensor's raw bytes, for bit-exact comparisons of two runs' weights. */
function bytesOf(weights: Map<string, { dataSync(): unknown }>, name: string): Buffer {
  return Buffer.from((weights.get(name)!.dataSync() as Float32Array).buffer);
}

const common = { steps: 3, batchSize: 2, warmup: 1, checkpointEvery: 1, saveDtype: 'f32' as const, quiet: true };

t('sampleTimesteps: uniform over [0, 999] at fraction 0 (one draw each, as before the option), only high noise at 1, the share in between', () => {
  const plain = sampleTimesteps(new SeededRandom(3).fork('t'), 4000, 0);
  const before = new SeededRandom(3).fork('t');
  assert.equal(plain, Array.from({ length: 4000 }, () => before.int(0, 999)), 'fraction 0 consumes the generator as the runs before the option did');
  assert.ok(plain.some((t) => t < 100) && plain.some((t) => t > 900), 'the whole range');
  const high = sampleTimesteps(new SeededRandom(3).fork('t'), 4000, 1);
  assert.ok(high.every((t) => Number.isInteger(t) && t >= HIGH_NOISE_FROM && t <= 999), 'fraction 1: only [HIGH_NOISE_FROM, 999]');
  assert.ok(new Set(high).size === 1000 - HIGH_NOISE_FROM, 'every high-noise timestep occurs');
  // At 0.25 the share at or above HIGH_NOISE_FROM is 0.25 + 0.75 · 0.05 = 0.2875 (binomial sd over 8000 draws: 0.005).
  const mixed = sampleTimesteps(new SeededRandom(3).fork('t'), 8000, 0.25);
  const share = mixed.filter((t) => t >= HIGH_NOISE_FROM).length / mixed.length;
  assert.ok(Math.abs(share - 0.2875) < 0.02, `share at high noise ${share}`);
  assert.ok(mixed.filter((t) => t < 500).length / mixed.length > 0.3, 'the rest stays uniform');
});

t('pretrainBatch: world samples at fraction 0; layout samples at high noise where drawn, keeping the dropped captions', () => {
  const opts = { uncondProb: 0.1, highNoiseFraction: 0, layoutFraction: 0 };
  const plain = pretrainBatch(4, 9, 64, opts);
  // The stream of the runs before layoutFraction: worldSample by index, then the caption drops, then the timesteps.
  const rng = new SeededRandom(4).fork('step 9');
  const world = Array.from({ length: 64 }, (_, i) => worldSample(4, 9 * 64 + i));
  assert.equal(plain.captions, world.map((w) => (rng.chance(0.1) ? '' : w.caption)));
  assert.equal(plain.timesteps, sampleTimesteps(rng, 64, 0));
  assert.ok(plain.captions.includes(''), 'some captions dropped');
  const all = pretrainBatch(4, 9, 64, { ...opts, layoutFraction: 1 });
  all.samples.forEach((s, i) => {
    assert.equal(s, layoutSample(4, 9 * 64 + i), `sample ${i}`);
    assert.is(all.captions[i], plain.captions[i] === '' ? '' : s.caption, `caption ${i}`);
    assert.ok(all.timesteps[i] >= HIGH_NOISE_FROM && all.timesteps[i] <= 999, `timestep ${all.timesteps[i]}`);
  });
  const half = pretrainBatch(4, 9, 64, { ...opts, layoutFraction: 0.5 });
  const layouts = half.samples.filter((s, i) => s.caption === layoutSample(4, 9 * 64 + i).caption).length;
  assert.ok(layouts > 16 && layouts < 48, `${layouts} of 64 layout samples at 0.5`);
  half.samples.forEach((s, i) => {
    if (s.caption !== layoutSample(4, 9 * 64 + i).caption) assert.equal(s, world[i], `sample ${i} stays the world's`);
  });
});

t('lossWeights: 1 + objectWeight exactly where the render differs from the background, 1 elsewhere', () => {
  const scene: Scene = { background: 'blue', objects: [{ shape: 'square', colour: 'red', size: 'small', position: 'center', cx: 0.5, cy: 0.5, extent: 0.25 }] };
  const image = renderScene(scene, 16);
  const w = lossWeights([{ image, caption: 'a red square', scene }], 16, 3);
  assert.equal(w.shape, [1, 1, 16, 16]);
  const values = w.dataSync() as Float32Array;
  const bg = PALETTE.blue;
  let objects = 0;
  for (let p = 0; p < 256; p++) {
    const isBg = image[p * 3] === bg[0] && image[p * 3 + 1] === bg[1] && image[p * 3 + 2] === bg[2];
    assert.is(values[p], isBg ? 1 : 4, `pixel ${p}`);
    if (!isBg) objects++;
  }
  // A 0.25-wide square on 16 pixels covers 4×4 pixels.
  assert.is(objects, 16);
  w.dispose();
});

t('an interrupted run resumed from its checkpoint ends with the same weights as an uninterrupted one', async () => {
  const a = folder('straight');
  const ra = await pretrainWorld({ ...common, outDir: a, workDir: join(work, 'straight', 'ckpt') });
  assert.is(ra.steps, 3);
  assert.ok(Number.isFinite(ra.finalLoss) && ra.finalLoss > 0);
  const b = folder('resumed');
  const first = await pretrainWorld({ ...common, outDir: b, workDir: join(work, 'resumed', 'ckpt'), maxStepsThisRun: 1 });
  assert.is(first.steps, 1);
  assert.not.ok(existsSync(join(b, 'unet')), 'an unfinished run writes no model');
  await pretrainWorld({ ...common, outDir: b, workDir: join(work, 'resumed', 'ckpt') });
  for (const [part, file] of [['unet', 'diffusion_pytorch_model.safetensors'], ['text_encoder', 'model.safetensors']]) {
    const wa = await loadSafetensors(join(a, part, file));
    const wb = await loadSafetensors(join(b, part, file));
    assert.equal([...wa.keys()].sort(), [...wb.keys()].sort());
    for (const k of wa.keys()) assert.ok(bytesOf(wa, k).equals(bytesOf(wb, k)), `${part} ${k}`);
  }
  // The folder is a pixel-space diffusers pipeline.
  const pipe = await StableDiffusionPipeline.fromPretrained(a);
  assert.is(pipe.vae, PIXEL_SPACE);
  const r = await pipe.generate({ prompt: 'a red circle', width: 32, height: 32, steps: 2, seed: 1 });
  assert.equal(r.images.shape, [1, 3, 32, 32]);
  pipe.dispose();
});

t('restartsAt: one run follows the lr of a run finished, then extended twice by resuming with more steps', async () => {
  // The lr itself: before the first end, the decay toward it; after, toward the next.
  assert.is(scheduleLr(3999, [4000, 6000, 10000], 1e-3, 200), warmupCosine(3999, 4000, 1e-3, 200));
  assert.is(scheduleLr(4000, [4000, 6000, 10000], 1e-3, 200), warmupCosine(4000, 6000, 1e-3, 200));
  assert.is(scheduleLr(6000, [4000, 6000, 10000], 1e-3, 200), warmupCosine(6000, 10000, 1e-3, 200));
  assert.ok(scheduleLr(4000, [4000, 6000, 10000], 1e-3, 200) > 2 * scheduleLr(3999, [4000, 6000, 10000], 1e-3, 200), 'the lr rises at a restart');
  // The weights: one 4-step run restarting at 2 and 3 equals 2 steps, resumed to 3, resumed to 4.
  const one = folder('restarts-one');
  await pretrainWorld({ ...common, steps: 4, restartsAt: [2, 3], outDir: one, workDir: join(work, 'restarts-one', 'ckpt') });
  const chain = folder('restarts-chain');
  for (const steps of [2, 3, 4]) await pretrainWorld({ ...common, steps, outDir: chain, workDir: join(work, 'restarts-chain', 'ckpt') });
  const plain = folder('restarts-plain');
  await pretrainWorld({ ...common, steps: 4, outDir: plain, workDir: join(work, 'restarts-plain', 'ckpt') });
  const file = join('unet', 'diffusion_pytorch_model.safetensors');
  const [wo, wc, wp] = await Promise.all([one, chain, plain].map((d) => loadSafetensors(join(d, file))));
  let differsFromPlain = false;
  for (const k of wo.keys()) {
    assert.ok(bytesOf(wo, k).equals(bytesOf(wc, k)), `unet ${k}`);
    if (!bytesOf(wo, k).equals(bytesOf(wp, k))) differsFromPlain = true;
  }
  assert.ok(differsFromPlain, 'the restarts change the weights (else this test could not fail)');
  await assertRejects(() => pretrainWorld({ ...common, steps: 4, restartsAt: [3, 2] }), 'INVALID_ARGUMENT', /restartsAt\[1\] must be an integer above restartsAt\[0\] \(3\) and below steps \(4\), got number 2/);
  await assertRejects(() => pretrainWorld({ ...common, layoutFraction: -0.5 }), 'INVALID_ARGUMENT', /layoutFraction must be in \[0, 1\], got number -0.5/);
  await assertRejects(() => pretrainWorld({ ...common, highNoiseFraction: 1.5 }), 'INVALID_ARGUMENT', /highNoiseFraction must be in \[0, 1\], got number 1.5/);
  await assertRejects(() => pretrainWorld({ ...common, steps: 4, restartsAt: [4] }), 'INVALID_ARGUMENT', /restartsAt\[0\] must be an integer above warmup \(1\) and below steps \(4\), got number 4/);
});

t('a checkpoint from other settings is refused, not silently mixed', async () => {
  const dir = folder('mismatch');
  const ckpt = join(work, 'mismatch', 'ckpt');
  await pretrainWorld({ ...common, outDir: dir, workDir: ckpt, maxStepsThisRun: 1 });
  await assertRejects(() => pretrainWorld({ ...common, batchSize: 3, outDir: dir, workDir: ckpt }), 'INVALID_ARGUMENT', /written by another run \(batch 2 vs 3\); remove it or pass the same settings/);
});

t('initFrom starts from a model folder\'s weights (a further phase), and refuses a folder without them', async () => {
  const source = folder('init-source');
  await pretrainWorld({ ...common, steps: 2, outDir: source, workDir: join(work, 'init-source', 'ckpt') });
  // One step at a negligible lr: the result is the source model, not the random init.
  const phase = folder('init-phase');
  await pretrainWorld({ ...common, steps: 1, lr: 1e-9, initFrom: source, outDir: phase, workDir: join(work, 'init-phase', 'ckpt') });
  const fresh = folder('init-fresh');
  await pretrainWorld({ ...common, steps: 1, lr: 1e-9, outDir: fresh, workDir: join(work, 'init-fresh', 'ckpt') });
  for (const [part, file] of [['unet', 'diffusion_pytorch_model.safetensors'], ['text_encoder', 'model.safetensors']]) {
    const [ws, wp, wf] = await Promise.all([source, phase, fresh].map((d) => loadSafetensors(join(d, part, file))));
    let fromSource = 0;
    let fromFresh = 0;
    for (const k of ws.keys()) {
      const [s, p, f] = [ws, wp, wf].map((w) => w.get(k)!.dataSync() as Float32Array);
      for (let i = 0; i < s.length; i++) {
        fromSource = Math.max(fromSource, Math.abs(p[i] - s[i]));
        fromFresh = Math.max(fromFresh, Math.abs(p[i] - f[i]));
      }
    }
    assert.ok(fromSource < 1e-6, `${part}: max |phase − source| ${fromSource}`);
    assert.ok(fromFresh > 1e-3, `${part}: the source differs from the random init (${fromFresh}), else this test could not fail`);
  }
  await assertRejects(() => pretrainWorld({ ...common, initFrom: join(work, 'init-phase', 'ckpt'), outDir: folder('init-bad') }), 'INVALID_ARGUMENT', /initFrom .*init-phase.ckpt has no unet\/diffusion_pytorch_model.safetensors/);
  await assertRejects(() => pretrainWorld({ ...common, initFrom: 3 as never }), 'INVALID_ARGUMENT', /initFrom must be a world model folder, got number 3/);
});

t('a recipe runs its phases in order, each from the one before: the same weights as the runs one by one', async () => {
  const { quiet: _, ...perPhase } = common;
  const phases = [
    { purpose: 'first', options: { ...perPhase, steps: 2 } },
    { purpose: 'second', options: { ...perPhase, steps: 2, seed: 5, layoutFraction: 0.5 } },
  ];
  const recipeWork = join(work, 'recipe', 'work');
  const out = join(work, 'recipe', 'model');
  const results = await pretrainWorldRecipe({ phases, outDir: out, workDir: recipeWork, quiet: true });
  assert.equal(results.map((r) => [r.steps, r.outDir]), [[2, join(recipeWork, 'phase1')], [2, out]]);
  assert.ok(existsSync(join(recipeWork, 'phase2-work', 'checkpoint.safetensors')));
  // The same two runs by hand, the second from the first's model.
  const first = folder('recipe-by-hand-1');
  await pretrainWorld({ ...common, ...phases[0].options, outDir: first, workDir: join(work, 'recipe-by-hand-1', 'ckpt') });
  const second = folder('recipe-by-hand-2');
  await pretrainWorld({ ...common, ...phases[1].options, initFrom: first, outDir: second, workDir: join(work, 'recipe-by-hand-2', 'ckpt') });
  // And the second phase alone from random weights, which must differ (else this test could not fail).
  const alone = folder('recipe-alone');
  await pretrainWorld({ ...common, ...phases[1].options, outDir: alone, workDir: join(work, 'recipe-alone', 'ckpt') });
  const file = join('unet', 'diffusion_pytorch_model.safetensors');
  const [wr, wh, wa] = await Promise.all([out, second, alone].map((d) => loadSafetensors(join(d, file))));
  const name = [...wr.keys()][0];
  for (const k of wr.keys()) assert.ok(bytesOf(wr, k).equals(bytesOf(wh, k)), `recipe vs by hand: ${k}`);
  assert.not.ok(bytesOf(wr, name).equals(bytesOf(wa, name)), 'the second phase alone gives other weights');
  // Run again: every phase resumes at its end, so the model is rewritten unchanged.
  await pretrainWorldRecipe({ phases, outDir: out, workDir: recipeWork, quiet: true });
  const again = await loadSafetensors(join(out, file));
  for (const k of wr.keys()) assert.ok(bytesOf(again, k).equals(bytesOf(wr, k)), `rerun: ${k}`);
});

t('recipe options are checked: the shipped phases leave paths to the recipe; bad phases are refused', async () => {
  assert.ok(SHIPPED_RECIPE.length >= 2);
  for (const p of SHIPPED_RECIPE) for (const k of ['outDir', 'workDir', 'initFrom']) assert.not.ok(k in p.options, `${p.purpose}: ${k}`);
  await assertRejects(() => pretrainWorldRecipe({ phases: [] }), 'INVALID_ARGUMENT', /phases must be a non-empty array/);
  await assertRejects(() => pretrainWorldRecipe({ phases: [{ purpose: 'x' }] as never }), 'INVALID_ARGUMENT', /phases\[0\] must be \{ purpose: string, options: object \}/);
  await assertRejects(() => pretrainWorldRecipe({ phases: [{ purpose: 'x', options: { initFrom: 'a' } }] as never }), 'INVALID_ARGUMENT', /phases\[0\]\.options\.initFrom is the recipe's to set/);
  await assertRejects(() => pretrainWorldRecipe({ bogus: 1 } as never), 'INVALID_ARGUMENT', /bogus/);
});

t('imagesToTensor maps bytes to [-1, 1] channel planes; bad options are refused', async () => {
  const img = new Uint8Array(2 * 2 * 3);
  img.set([255, 0, 127.5], 0);
  const x = imagesToTensor([img], 2);
  assert.equal(x.shape, [1, 3, 2, 2]);
  const d = x.dataSync() as Float32Array;
  assert.equal([d[0], d[4], d[5]], [1, -1, -1]);
  assert.throws(() => imagesToTensor([new Uint8Array(5)], 2), /image 0 has 5 bytes, expected 12/);
  await assertRejects(() => pretrainWorld({ steps: 0 }), 'INVALID_ARGUMENT', /steps must be an integer in \[1/);
  await assertRejects(() => pretrainWorld({ lr: -1 }), 'INVALID_ARGUMENT', /lr must be in \(0, 1\)/);
  await assertRejects(() => pretrainWorld({ bogus: 1 } as never), 'INVALID_ARGUMENT', /bogus/);
});

t('a new out folder gets the packaged tokenizer, byte for byte, and nothing half-copied', async () => {
  const out = join(work, 'new', 'model');
  await pretrainWorld({ ...common, steps: 1, outDir: out, workDir: join(work, 'new', 'work') });
  const packaged = join(worldModelDir(), 'tokenizer');
  const names = readdirSync(packaged).sort();
  assert.equal(readdirSync(join(out, 'tokenizer')).sort(), names);
  for (const n of names) assert.ok(readFileSync(join(out, 'tokenizer', n)).equals(readFileSync(join(packaged, n))), n);
  assert.equal(readdirSync(out).filter((n) => n.includes('.tmp')), []);
});

t.after(() => rmSync(work, { recursive: true, force: true }));
t.run();
