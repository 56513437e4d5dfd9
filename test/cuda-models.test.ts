// The models on a GPU from JavaScript, against the CPU: the embedded world
// model samples on cuda:0 (f32 and bf16), the UNet's training pass and the
// CLIP encoder give the CPU's numbers, and Custom Diffusion trains there.
// Runs where a GPU is usable; elsewhere reported as skipped with the reason
// (test/device-option.test.ts covers the same code paths on the CPU).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { devices, memoryStats, randn, type Tensor } from '../lib/index.js';
import { trainCustomDiffusion, type TrainCustomDiffusionOptions } from '../lib/methods/custom-diffusion/train.js';
import { loadDiffusersModel } from '../lib/models/checkpoint.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { readJsonFile } from '../lib/models/configs.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { tensorToRgb } from '../lib/pipeline/images.js';
import { StableDiffusionPipeline, type GenerateOptions } from '../lib/pipeline/txt2img.js';
import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { textAlignment } from '../lib/world/metrics.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { conceptPngs } from '../lib/world/teach.js';
import { assertClose } from './helpers.js';

const cuda = devices().cuda;
const gpu = suite(`cuda models${cuda.available ? '' : ` (skipped: ${cuda.reason})`}`);
const it = cuda.available ? gpu : gpu.skip;
const DEV = 'cuda:0';
const world = worldModelDir();
const PROMPTS = ['a red circle', 'a blue square on the left', 'a yellow triangle at the top'];
const PER_PROMPT = 2;
const SAMPLE: GenerateOptions = { prompt: PROMPTS, numImages: PER_PROMPT, width: 32, height: 32, steps: 8, guidanceScale: 4, seed: 11 };

/** Mean |a − b| over two lists of 8-bit images. */
function meanAbs(a: Uint8Array[], b: Uint8Array[]): number {
  let sum = 0;
  let n = 0;
  a.forEach((img, i) => {
    for (let p = 0; p < img.length; p++) sum += Math.abs(img[p] - b[i][p]);
    n += img.length;
  });
  return sum / n;
}

/** ‖a − b‖ / ‖b‖. */
function relativeError(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < b.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** The world metrics' mean text alignment of each image with its prompt (numImages per prompt, in order). */
function alignment(rgb: Uint8Array[]): number {
  return rgb.reduce((s, img, i) => s + textAlignment(img, PROMPTS[Math.floor(i / PER_PROMPT)], 32), 0) / rgb.length;
}

async function sample(device: string, dtype: 'f32' | 'bf16' = 'f32'): Promise<Uint8Array[]> {
  const pipe = await StableDiffusionPipeline.fromPretrained(world, { scheduler: 'dpm++2m', device, dtype });
  try {
    assert.is(pipe.device, device);
    const r = await pipe.generate(SAMPLE);
    try {
      assert.is(r.images.device, 'cpu', 'images come back on the host');
      assert.is(r.images.dtype, dtype);
      return tensorToRgb(r.images);
    } finally {
      r.images.dispose();
      r.latents.dispose();
    }
  } finally {
    pipe.dispose();
  }
}

let cpuImages: Uint8Array[] | undefined;
const cpuReference = async (): Promise<Uint8Array[]> => (cpuImages ??= await sample('cpu'));

it('the world model generates on cuda:0 in f32 as on the CPU (mean abs < 2 of 255; text alignment within 0.1)', async () => {
  const before = memoryStats(DEV).liveBytes;
  const here = await cpuReference();
  const there = await sample(DEV);
  const diff = meanAbs(there, here);
  assert.ok(diff < 2, `mean abs difference ${diff.toFixed(3)}`);
  const [a, b] = [alignment(there), alignment(here)];
  assert.ok(Math.abs(a - b) < 0.1, `text alignment ${a.toFixed(3)} on ${DEV} vs ${b.toFixed(3)} on the cpu`);
  assert.is(memoryStats(DEV).liveBytes, before, 'dispose() frees every GPU tensor the pipeline made');
});

it('bf16 on cuda:0 generates images close to the CPU f32 ones (mean abs < 8)', async () => {
  const there = await sample(DEV, 'bf16');
  const diff = meanAbs(there, await cpuReference());
  assert.ok(diff < 8, `mean abs difference ${diff.toFixed(3)}`);
});

it("a UNet lossBackward with trainable 'kv' gives the CPU's loss and gradients (rtol 1e-3)", async () => {
  const config = readJsonFile(`${world}/unet/config.json`);
  const cpu = await loadDiffusersModel(world, { dtype: 'f32' });
  const dev = await loadDiffusersModel(world, { dtype: 'f32', device: DEV });
  const owned: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => (owned.push(t), t);
  try {
    for (const w of dev.unet.weights.values()) assert.is(w.device, DEV);
    const run = async (m: typeof cpu, device: string) => {
      const unet = UNet2DConditionModel.fromWeights(config, m.unet.weights);
      // Same seeds, same values on every device (Philox).
      const x = keep(await randn([2, 3, 32, 32], { seed: 1, device }));
      const target = keep(await randn([2, 3, 32, 32], { seed: 2, device }));
      const context = keep(await randn([2, 77, 64], { seed: 3, device }));
      const r = await unet.lossBackward(x, [10, 700], context, target, { trainable: 'kv', detachStartToken: true });
      [r.loss, r.out, r.dSample, r.dContext, ...r.grads.values()].forEach(keep);
      return r;
    };
    const a = await run(cpu, 'cpu');
    const b = await run(dev, DEV);
    assertClose(await b.loss.data(), a.loss.dataSync(), 1e-3, 1e-6, 'loss');
    assert.equal([...b.grads.keys()], [...a.grads.keys()]);
    assert.ok(a.grads.size > 0);
    for (const [n, g] of b.grads) {
      assert.is(g.device, DEV);
      assertClose(await g.data(), a.grads.get(n)!.dataSync(), 1e-3, 1e-5, n);
    }
    assertClose(await b.dContext.data(), a.dContext.dataSync(), 1e-3, 1e-5, 'dContext');
  } finally {
    for (const t of owned) if (!t.disposed) t.dispose();
    for (const m of [cpu, dev]) for (const part of [m.unet, m.textEncoder]) for (const w of part.weights.values()) w.dispose();
  }
});

it('CLIP encode on cuda:0 equals the CPU (1e-4)', async () => {
  const config = readJsonFile(`${world}/text_encoder/config.json`);
  const tokenizer = await ClipTokenizer.fromFolder(`${world}/tokenizer`);
  const ids = PROMPTS.map((p) => Array.from(tokenizer.encodePadded(p, { maxLength: 77 }).ids));
  const cpu = await loadDiffusersModel(world, { dtype: 'f32' });
  const dev = await loadDiffusersModel(world, { dtype: 'f32', device: DEV });
  try {
    const a = await ClipTextEncoder.fromWeights(config, cpu.textEncoder.weights).encode(ids, { penultimate: true });
    const b = await ClipTextEncoder.fromWeights(config, dev.textEncoder.weights).encode(ids, { penultimate: true });
    assert.is(b.lastHiddenState.device, DEV);
    assertClose(await b.lastHiddenState.data(), a.lastHiddenState.dataSync(), 1e-4, 1e-4, 'last hidden state');
    assertClose(await b.penultimate!.data(), a.penultimate!.dataSync(), 1e-4, 1e-4, 'penultimate');
    for (const t of [a.lastHiddenState, a.penultimate!, b.lastHiddenState, b.penultimate!]) t.dispose();
  } finally {
    for (const m of [cpu, dev]) for (const part of [m.unet, m.textEncoder]) for (const w of part.weights.values()) w.dispose();
  }
});

it('Custom Diffusion trains on cuda:0 with the CPU losses; the concept comes back on the host', async () => {
  const options: TrainCustomDiffusionOptions = {
    model: world, concepts: [{ classWord: 'shape', images: await conceptPngs('star', 2) }],
    steps: 3, batchSize: 2, augmentVariants: 2, priorLossWeight: 0, lr: 1e-4, scaleLr: false, quiet: true, seed: 4,
  };
  const a = await trainCustomDiffusion(options);
  const b = await trainCustomDiffusion({ ...options, device: DEV });
  assertClose(b.losses, a.losses, 1e-3, 1e-6, 'losses');
  // Adam divides by √v, so near-zero gradients can step differently elementwise: compare whole tensors by relative norm.
  for (const [n, d] of b.concept.deltas) {
    assert.is(d.device, 'cpu', n);
    const e = relativeError(d.dataSync() as Float32Array, a.concept.deltas.get(n)!.dataSync() as Float32Array);
    assert.ok(e < 2e-2, `${n}: relative error ${e}`);
  }
  const e = relativeError(b.concept.tokens[0].embedding.dataSync() as Float32Array, a.concept.tokens[0].embedding.dataSync() as Float32Array);
  assert.ok(e < 1e-3, `token row: relative error ${e}`);
});

it('the CLIP vision transformer\'s forward and weight gradients on cuda:0 equal the CPU\'s (1e-4)', async () => {
  const { loadSafetensors } = await import('../lib/io/safetensors.js');
  const { ClipVisionModel } = await import('../lib/models/clip-vision.js');
  const { fileURLToPath } = await import('node:url');
  const fx = await loadSafetensors(fileURLToPath(new URL('./fixtures/clip_vision.safetensors', import.meta.url)));
  const config = { hidden_size: 32, intermediate_size: 48, num_attention_heads: 4, num_channels: 3, image_size: 16, patch_size: 4, hidden_act: 'quick_gelu', num_hidden_layers: 2 };
  const cpuWeights = new Map([...fx].filter(([k]) => k.startsWith('quick/weights/')).map(([k, v]) => [k.slice('quick/weights/'.length), v]));
  const devWeights = new Map<string, Tensor>();
  for (const [k, v] of cpuWeights) devWeights.set(k, await v.to(DEV));
  const inputs = ['pixel_values', 'd_last', 'd_pooled'].map((k) => fx.get(`quick/${k}`)!);
  const [px, dl, dp] = await Promise.all(inputs.map((x) => x.to(DEV)));
  const a = await ClipVisionModel.fromWeights(config, cpuWeights).forwardBackward(inputs[0], { dLast: inputs[1], dPooled: inputs[2], trainable: 'all' });
  const b = await ClipVisionModel.fromWeights(config, devWeights).forwardBackward(px, { dLast: dl, dPooled: dp, trainable: 'all' });
  assertClose(await b.pooled.data(), a.pooled.dataSync(), 1e-4, 1e-4, 'pooled');
  assertClose(await b.lastHiddenState.data(), a.lastHiddenState.dataSync(), 1e-4, 1e-4, 'last hidden state');
  for (const [n, g] of a.grads) {
    const want = g.dataSync() as Float32Array;
    assertClose(await b.grads.get(n)!.data(), want, 1e-4, 1e-4 * Math.max(1, ...want.map(Math.abs)), n);
  }
});

gpu.run();
