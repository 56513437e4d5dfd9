// The UNet on latent sides that are not multiples of 2^(blocks-1): the
// downsamplers round up (5 → 3) and each upsampler resizes to its skip's size
// (3 → 5) by nearest neighbour, as diffusers' forward_upsample_size does.
// Checked by output shapes, forward = forwardBackward's output, and d_sample
// against central finite differences (entries at the odd edge and a random
// direction); multiples of the factor still match diffusers' reference.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { full, schedulers, tensor, type Tensor } from '../lib/index.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';
import { tinyModelLoader, type TinyName } from './tiny-models.js';

const t = suite('models.unet-sizes');
const loadTiny = tinyModelLoader('unet');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

async function model(name: TinyName) {
  const m = await loadTiny(name);
  return { ...m, unet: UNet2DConditionModel.fromWeights(m.config, m.weights) };
}

const dot = (a: Float32Array, b: Float32Array): number => a.reduce((s, v, i) => s + v * b[i], 0);

t('odd latent sizes run forward and backward with the sample size out (sd1: 2 blocks, sd2: 3 blocks)', async () => {
  for (const [name, h, w] of [['sd1-tiny', 9, 13], ['sd2-tiny', 10, 14], ['sd2-tiny', 12, 20], ['sd2-tiny', 1, 3]] as const) {
    const m = await model(name);
    const e = m.case_.get('encoder_hidden_states')!;
    const n = e.shape[0];
    const sample = tensor(randomArray(n * 4 * h * w, h * w), { shape: [n, 4, h, w] });
    const out = await m.unet.forward(sample, 500, e);
    assert.equal(out.shape, [n, 4, h, w], `${name} ${h}×${w}`);
    assert.ok(f32(out).every(Number.isFinite), `${name} ${h}×${w}: finite`);
    const probe = tensor(randomArray(n * 4 * h * w, 99), { shape: [n, 4, h, w] });
    const r = await m.unet.forwardBackward(sample, 500, e, probe, { trainable: 'kv' });
    assert.equal(Array.from(f32(r.out)), Array.from(f32(out)), `${name} ${h}×${w}: forwardBackward's out is forward's`);
    assert.equal(r.dSample.shape, [n, 4, h, w]);
    assert.ok(f32(r.dSample).every(Number.isFinite) && [...r.grads.values()].every((g) => f32(g).every(Number.isFinite)));
    for (const x of [sample, out, probe, r.out, r.dSample, r.dContext, ...r.grads.values()]) x.dispose();
  }
});

t('multiples of the factor are unchanged: sd1 and sd2 still match diffusers on the reference sample', async () => {
  for (const name of ['sd1-tiny', 'sd2-tiny'] as const) {
    const m = await model(name);
    const out = await m.unet.forward(m.case_.get('sample')!, m.case_.get('timestep')!, m.case_.get('encoder_hidden_states')!);
    assertClose(f32(out), f32(m.case_.get('out')!), 1e-4, 1e-5, `${name} out`);
    out.dispose();
  }
});

t('sd2-tiny on 10×14 (5 → 3 → 5 and 7 → 4 → 7 in the UNet): d_sample agrees with central finite differences', async () => {
  const m = await model('sd2-tiny');
  const e = m.case_.get('encoder_hidden_states')!;
  const n = e.shape[0];
  const [h, w] = [10, 14];
  const shape = [n, 4, h, w];
  const s0 = randomArray(n * 4 * h * w, 5);
  const p = randomArray(n * 4 * h * w, 6);
  const sample = tensor(s0, { shape });
  const probe = tensor(p, { shape });
  const r = await m.unet.forwardBackward(sample, 321, e, probe, { trainable: 'none' });
  const grad = f32(r.dSample);
  const loss = async (x: Float32Array): Promise<number> => {
    const xs = tensor(x, { shape });
    const out = await m.unet.forward(xs, 321, e);
    const l = dot(f32(out), p);
    xs.dispose();
    out.dispose();
    return l;
  };
  const eps = 1e-2;
  const slope = async (dir: Float32Array): Promise<number> =>
    ((await loss(s0.map((v, i) => v + eps * dir[i]))) - (await loss(s0.map((v, i) => v - eps * dir[i])))) / (2 * eps);
  // Entries on the last row and column, where the odd sizes are resized: the largest gradients there.
  const edge: number[] = [];
  for (let c = 0; c < n * 4; c++) {
    for (let j = 0; j < w; j++) edge.push((c * h + h - 1) * w + j);
    for (let i = 0; i < h; i++) edge.push((c * h + i) * w + w - 1);
  }
  edge.sort((a, b) => Math.abs(grad[b]) - Math.abs(grad[a]));
  for (const k of edge.slice(0, 3)) {
    const dir = new Float32Array(s0.length);
    dir[k] = 1;
    const numeric = await slope(dir);
    assert.ok(Math.abs(grad[k]) > 1e-3, `entry ${k}: a visible slope (${grad[k]})`);
    assert.ok(Math.abs(numeric - grad[k]) <= 2e-2 * Math.abs(grad[k]) + 1e-3, `entry ${k}: finite difference ${numeric} vs analytic ${grad[k]}`);
  }
  const dir = randomArray(s0.length, 8);
  const analytic = dot(grad, dir);
  const numeric = await slope(dir);
  assert.ok(Math.abs(analytic) > 1e-3, `a direction with a visible slope (${analytic})`);
  assert.ok(Math.abs(numeric - analytic) <= 2e-2 * Math.abs(analytic), `random direction: finite difference ${numeric} vs analytic ${analytic}`);
  for (const x of [sample, probe, r.out, r.dSample, r.dContext]) x.dispose();
});

t('the pipeline takes any multiple of the VAE factor: 18×26 pixels = 9×13 latents on the tiny SD1 UNet', async () => {
  const m = await model('sd1-tiny');
  const pipe = StableDiffusionPipeline.fromComponents({
    tokenizer: { encodePadded: (_: string, o?: { maxLength?: number }) => ({ ids: new Int32Array(o?.maxLength ?? 8), length: 2, truncated: false }) },
    textEncoder: { config: { maxPositionEmbeddings: 8 }, encode: async (ids: number[][]) => ({ lastHiddenState: await full([ids.length, 8, 32], 0.1) }) },
    unet: m.unet,
    vae: { factor: 2, scalingFactor: 1, decode: async (z: Tensor) => full(z.shape, 0) },
    scheduler: schedulers.DDIMScheduler.fromConfig({}),
  });
  assert.is(pipe.sizeMultiple, 2);
  const r = await pipe.generate({ prompt: 'x', width: 18, height: 26, steps: 2, seed: 4 });
  assert.equal(r.latents.shape, [1, 4, 13, 9]);
  assert.ok(f32(r.latents).every(Number.isFinite));
  await assertRejects(() => pipe.generate({ prompt: 'x', width: 17, height: 26 }), 'INVALID_ARGUMENT', /width and height must be multiples of 2 for this model, got 17×26/);
  r.latents.dispose();
  r.images.dispose();
});

t.run();
