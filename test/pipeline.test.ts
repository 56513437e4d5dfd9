// Text-to-image pipeline: the tiny SD 1.x parity models end to end, the
// classifier-free guidance math on a fake UNet, image I/O round trips,
// fromPretrained on an assembled diffusers folder, and bad input.
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import {
  AutoencoderKL,
  ClipTextEncoder,
  ClipTokenizer,
  UNet2DConditionModel,
  loadDiffusersComponent,
  memoryStats,
  randn,
  readJsonFile,
  schedulers,
  tensor,
  type Tensor,
} from '../lib/index.js';
import { imageGrid, imageToTensor, saveImages, tensorToImages } from '../lib/pipeline/images.js';
import { exciteGradient, exciteLoss } from '../lib/pipeline/excite.js';
import { combine } from '../lib/schedulers/combine.js';
import { StableDiffusionPipeline, type PromptTokenizer } from '../lib/pipeline/txt2img.js';
import { byteToChar } from '../lib/tokenizer/bytes.js';
import { assertClose, assertRejects, randomArray, settleGarbage } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const tinyDir = join(REFERENCE, 'parity', 'sd1-tiny');
const t = suite('pipeline');

const SCHED_CONFIG = {
  _class_name: 'PNDMScheduler',
  beta_start: 0.00085,
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  clip_sample: false,
};

// The tiny text encoder has 1000 token rows; real CLIP ids are folded into range.
class FoldedTokenizer implements PromptTokenizer {
  constructor(readonly inner: ClipTokenizer) {}
  encodePadded(text: string, options?: Parameters<ClipTokenizer['encodePadded']>[1]) {
    const r = this.inner.encodePadded(text, options);
    return { ...r, ids: r.ids.map((id) => id % 1000) };
  }
}

let tiny: { tokenizer: PromptTokenizer; textEncoder: ClipTextEncoder; unet: UNet2DConditionModel; vae: AutoencoderKL } | undefined;
async function tinyParts() {
  if (tiny === undefined) {
    const te = await loadDiffusersComponent(join(tinyDir, 'text_encoder'), 'text_encoder');
    const un = await loadDiffusersComponent(join(tinyDir, 'unet'), 'unet');
    const va = await loadDiffusersComponent(join(tinyDir, 'vae'), 'vae');
    tiny = {
      tokenizer: new FoldedTokenizer(await ClipTokenizer.fromBpeGz(join(REFERENCE, 'clip', 'bpe_simple_vocab_16e6.txt.gz'))),
      textEncoder: ClipTextEncoder.fromWeights(readJsonFile(join(tinyDir, 'text_encoder', 'config.json')), te.weights),
      unet: UNet2DConditionModel.fromWeights(readJsonFile(join(tinyDir, 'unet', 'config.json')), un.weights),
      vae: AutoencoderKL.fromWeights(readJsonFile(join(tinyDir, 'vae', 'config.json')), va.weights),
    };
  }
  return tiny;
}

async function tinyPipe(scheduler: schedulers.DDIMScheduler | schedulers.EulerAncestralDiscreteScheduler = schedulers.DDIMScheduler.fromConfig({ ...SCHED_CONFIG, _class_name: undefined, set_alpha_to_one: false })) {
  return StableDiffusionPipeline.fromComponents({ ...(await tinyParts()), scheduler });
}

const liveBaseline = settleGarbage;

const sameData = (a: Tensor, b: Tensor): boolean => {
  const x = a.dataSync();
  const y = b.dataSync();
  return x.length === y.length && x.every((v, i) => v === y[i]);
};

function disposeResult(r: { images: Tensor; latents: Tensor }): void {
  r.images.dispose();
  r.latents.dispose();
}

t('tiny SD: shapes, finite values, onStep, determinism per seed, seeds and guidance differ', async () => {
  const pipe = await tinyPipe();
  assert.is(pipe.sizeMultiple, 2); // the VAE factor; the UNet takes odd latent sizes
  const calls: string[] = [];
  const a = await pipe.generate({ prompt: ['a red cube', 'a blue ball'], steps: 3, width: 16, height: 24, seed: 7, numImages: 2, onStep: (i, n) => calls.push(`${i}/${n}`) });
  assert.equal(a.images.shape, [4, 3, 24, 16]);
  assert.equal(a.latents.shape, [4, 4, 12, 8]);
  assert.equal(calls, ['1/3', '2/3', '3/3']);
  assert.ok(a.images.dataSync().every(Number.isFinite));
  const b = await pipe.generate({ prompt: ['a red cube', 'a blue ball'], steps: 3, width: 16, height: 24, seed: 7, numImages: 2 });
  assert.ok(sameData(a.images, b.images), 'same seed gives the same images');
  assert.ok(sameData(a.latents, b.latents));
  const c = await pipe.generate({ prompt: ['a red cube', 'a blue ball'], steps: 3, width: 16, height: 24, seed: 8, numImages: 2 });
  assert.not.ok(sameData(a.latents, c.latents), 'another seed gives other latents');
  const d = await pipe.generate({ prompt: ['a red cube', 'a blue ball'], steps: 3, width: 16, height: 24, seed: 7, numImages: 2, guidanceScale: 1 });
  assert.not.ok(sameData(a.latents, d.latents), 'guidance 1 and 7.5 differ');
  // Images of one prompt differ (distinct noise), images of two prompts too.
  const lat = a.latents.dataSync();
  const per = 4 * 12 * 8;
  assert.not.ok(lat.slice(0, per).every((v, i) => v === lat[per + i]));
  for (const r of [a, b, c, d]) disposeResult(r);
});

t('euler ancestral is deterministic for a seed and its step noise follows the seed', async () => {
  const make = () => schedulers.EulerAncestralDiscreteScheduler.fromConfig({ beta_start: 0.00085, beta_end: 0.012, beta_schedule: 'scaled_linear' });
  const pipe = await tinyPipe(make());
  const a = await pipe.generate({ prompt: 'x', steps: 2, width: 8, height: 8, seed: 3 });
  const b = await pipe.generate({ prompt: 'x', steps: 2, width: 8, height: 8, seed: 3 });
  const c = await pipe.generate({ prompt: 'x', steps: 2, width: 8, height: 8, seed: 4 });
  assert.ok(sameData(a.latents, b.latents));
  assert.not.ok(sameData(a.latents, c.latents));
  for (const r of [a, b, c]) disposeResult(r);
});

t('every intermediate is disposed: liveBytes returns to its start', async () => {
  const pipe = await tinyPipe();
  const warm = await pipe.generate({ prompt: 'warm up', steps: 1, width: 8, height: 8, seed: 1 });
  disposeResult(warm);
  const before = await liveBaseline();
  const r = await pipe.generate({ prompt: ['one', 'two'], negativePrompt: ['bad', 'worse'], steps: 4, width: 16, height: 16, seed: 1 });
  assert.ok(memoryStats().liveBytes > before);
  disposeResult(r);
  assert.is(memoryStats().liveBytes, before);
  // A failing run (UNet error mid-way) leaks nothing either.
  const broken = StableDiffusionPipeline.fromComponents({
    ...(await tinyParts()),
    unet: { config: (await tinyParts()).unet.config, forward: async () => { throw new Error('boom'); } },
    scheduler: schedulers.DDIMScheduler.fromConfig({}),
  });
  await broken.generate({ prompt: 'x', steps: 2, width: 8, height: 8, seed: 1 }).then(() => assert.unreachable('should fail'), (e: Error) => assert.is(e.message, 'boom'));
  assert.is(memoryStats().liveBytes, before);
});

t('penultimate conditioning changes the result; out-of-range token ids fail without leaking', async () => {
  const parts = await tinyParts();
  const make = (penultimate: boolean) => StableDiffusionPipeline.fromComponents({ ...parts, penultimate, scheduler: schedulers.DDIMScheduler.fromConfig({}) });
  const a = await make(false).generate({ prompt: 'a dog', steps: 1, width: 8, height: 8, seed: 2 });
  const b = await make(true).generate({ prompt: 'a dog', steps: 1, width: 8, height: 8, seed: 2 });
  assert.not.ok(sameData(a.latents, b.latents));
  disposeResult(a);
  disposeResult(b);
  const before = await liveBaseline();
  // The real CLIP vocabulary (49408) overflows the tiny encoder's 1000 rows.
  const raw = StableDiffusionPipeline.fromComponents({ ...parts, tokenizer: (parts.tokenizer as FoldedTokenizer).inner, scheduler: schedulers.DDIMScheduler.fromConfig({}) });
  await assertRejects(() => raw.generate({ prompt: 'a dog', steps: 1, width: 8, height: 8, seed: 2 }), 'INVALID_ARGUMENT', /49406|vocab|range/);
  assert.is(memoryStats().liveBytes, before);
});

// Fakes whose outputs are known in closed form, to check the guidance arithmetic exactly.
function fakePipe(record: { batches: number[]; timesteps: number[] }) {
  const tokenizer: PromptTokenizer = {
    encodePadded: (text, o) => {
      const ids = new Int32Array(o?.maxLength ?? 8);
      ids[1] = text.length;
      return { ids, length: 2, truncated: false };
    },
  };
  const textEncoder = {
    config: { maxPositionEmbeddings: 8 },
    encode: async (ids: number[][]) => {
      // Every entry of row b holds the length of its text.
      const data = new Float32Array(ids.length * 8 * 4);
      ids.forEach((row, b) => data.fill(row[1], b * 32, (b + 1) * 32));
      return { lastHiddenState: tensor(data, { shape: [ids.length, 8, 4] }) };
    },
  };
  const unet = {
    config: { inChannels: 4, blockOutChannels: [8] },
    // ε = 2·x + (text length of the row's context)
    forward: async (sample: Tensor, ts: number, ctx: Tensor) => {
      record.batches.push(sample.shape[0]);
      record.timesteps.push(ts);
      const x = sample.dataSync() as Float32Array;
      const c = ctx.dataSync() as Float32Array;
      const per = x.length / sample.shape[0];
      return tensor(x.map((v, i) => 2 * v + c[Math.floor(i / per) * 32]), { shape: sample.shape });
    },
  };
  // The "scheduler" returns ε itself, so the pipeline's latents are the guided ε.
  const scheduler = {
    initNoiseSigma: 1,
    setTimesteps: () => [500],
    scaleModelInput: (x: Tensor) => x,
    step: async (eps: Tensor) => tensor(eps.dataSync() as Float32Array, { shape: eps.shape }),
  } as unknown as schedulers.DDIMScheduler;
  const vae = { factor: 2, scalingFactor: 0.5, decode: async (z: Tensor) => tensor(z.dataSync() as Float32Array, { shape: z.shape }) };
  return StableDiffusionPipeline.fromComponents({ tokenizer, textEncoder, unet, vae, scheduler });
}

t('classifier-free guidance: ε = ε_u + g·(ε_c − ε_u) on a fake UNet; g ≤ 1 skips the unconditional half', async () => {
  const record = { batches: [] as number[], timesteps: [] as number[] };
  const pipe = fakePipe(record);
  // The pipeline's initial latents: randn with the same seed (initNoiseSigma 1).
  const noise = await randn([2, 4, 2, 2], { seed: 11 });
  const x0 = noise.dataSync() as Float32Array;
  noise.dispose();
  for (const g of [7.5, 3, 1, 0.5]) {
    record.batches.length = 0;
    const r = await pipe.generate({ prompt: ['abc', 'hello'], negativePrompt: ['z', 'zzzz'], steps: 1, guidanceScale: g, width: 4, height: 4, seed: 11 });
    assert.equal(record.batches, [g > 1 ? 4 : 2]);
    assert.equal(record.timesteps.at(-1), 500);
    const per = 16;
    const cond = [3, 5];
    const uncond = [1, 4];
    const want = Array.from(x0, (x, i) => {
      const b = Math.floor(i / per);
      const ec = 2 * x + cond[b];
      const eu = 2 * x + uncond[b];
      return g > 1 ? eu + g * (ec - eu) : ec;
    });
    assertClose(r.latents.dataSync() as Float32Array, want, 1e-5, 1e-5, `g=${g} latents`);
    // The VAE sees latents / scalingFactor.
    assertClose(r.images.dataSync() as Float32Array, want.map((v) => v / 0.5), 1e-5, 1e-5, `g=${g} decoded`);
    disposeResult(r);
  }
});

t('images: tensor → PNG → tensor round trips to 1/127.5; clamps; reads files, buffers, grey and alpha', async () => {
  const x = tensor(randomArray(2 * 3 * 5 * 7, 4, 1.2), { shape: [2, 3, 5, 7] });
  const pngs = await tensorToImages(x);
  assert.is(pngs.length, 2);
  const meta = await sharp(pngs[1]).metadata();
  assert.equal([meta.format, meta.width, meta.height], ['png', 7, 5]);
  const xs = x.dataSync();
  for (let i = 0; i < 2; i++) {
    const back = await imageToTensor(pngs[i], { width: 7, height: 5 });
    assert.equal(back.shape, [1, 3, 5, 7]);
    const want = Array.from(xs.slice(i * 105, (i + 1) * 105), (v) => Math.min(1, Math.max(-1, v)));
    assertClose(back.dataSync() as Float32Array, want, 0, 0.5 / 127.5 + 1e-6, `image ${i}`);
    back.dispose();
  }
  const dir = await mkdtemp(join(tmpdir(), 'imprint-pipe-'));
  try {
    const paths = await saveImages(x, join(dir, 'img-{i}.png'));
    assert.equal(paths, [join(dir, 'img-0.png'), join(dir, 'img-1.png')]);
    assert.ok((await readFile(paths[0])).equals(pngs[0]));
    const fromFile = await imageToTensor(paths[1], { width: 7, height: 5 });
    const fromBuf = await imageToTensor(pngs[1], { width: 7, height: 5 });
    assert.ok(sameData(fromFile, fromBuf));
    // Grey + alpha: 2 channels in, 3 out; transparent pixels become white.
    const ga = await sharp(Buffer.from([0, 0, 128, 255]), { raw: { width: 2, height: 1, channels: 2 } }).png().toBuffer();
    const g = await imageToTensor(ga, { width: 2, height: 1, fit: 'fill' });
    assertClose(g.dataSync() as Float32Array, [1, 128 / 127.5 - 1, 1, 128 / 127.5 - 1, 1, 128 / 127.5 - 1], 0, 1e-6, 'grey alpha');
    for (const u of [fromFile, fromBuf, g]) u.dispose();
    await assertRejects(() => saveImages(x, join(dir, 'same.png')), 'INVALID_ARGUMENT', /\{i\}/);
    await assertRejects(() => saveImages(x, join(dir, 'missing', 'img-{i}.png')), 'INVALID_ARGUMENT', /cannot write/, /img-0\.png/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  x.dispose();
});

t('images: bad input is refused with the reason', async () => {
  await assertRejects(() => imageToTensor(Buffer.from('not an image at all'), { width: 4, height: 4 }), 'INVALID_ARGUMENT', /cannot decode/, /buffer of 19 bytes/);
  await assertRejects(() => imageToTensor('/nonexistent/x.png', { width: 4, height: 4 }), 'INVALID_ARGUMENT', /cannot decode '\/nonexistent\/x\.png'/);
  const png = await sharp({ create: { width: 4, height: 2, channels: 3, background: '#808080' } }).png().toBuffer();
  const truncated = png.subarray(0, png.length - 20);
  await assertRejects(() => imageToTensor(truncated, { width: 4, height: 2 }), 'INVALID_ARGUMENT', /cannot decode/);
  await assertRejects(() => imageToTensor(png, { width: 0, height: 2 }), 'INVALID_ARGUMENT', /width must be an integer/);
  await assertRejects(() => imageToTensor(png, { width: 4, height: 1e9 }), 'INVALID_ARGUMENT', /height/);
  await assertRejects(() => imageToTensor(png, { width: 4, height: 4, fit: 'stretch' as never }), 'INVALID_ARGUMENT', /fit must be one of/);
  await assertRejects(() => imageToTensor(png, { width: 4, height: 4, fit: 'inside' }), 'INVALID_ARGUMENT', /resized to \d+×\d+ with fit 'inside'/);
  await assertRejects(() => imageToTensor(42 as never, { width: 4, height: 4 }), 'INVALID_ARGUMENT', /path or a Buffer/);
  const bad = tensor(new Float32Array(8), { shape: [1, 2, 2, 2] });
  await assertRejects(() => tensorToImages(bad), 'SHAPE_MISMATCH', /\[N, 3, H, W\]/);
  bad.dispose();
  await assertRejects(() => tensorToImages(bad), 'DISPOSED');
  await assertRejects(() => tensorToImages([1, 2] as never), 'INVALID_ARGUMENT', /must be a Tensor/);
  const ints = tensor(new Int32Array(12), { shape: [1, 3, 2, 2] });
  await assertRejects(() => tensorToImages(ints), 'DTYPE_MISMATCH');
  ints.dispose();
});

t('generate: bad options are refused before any work', async () => {
  const pipe = await tinyPipe();
  const base = { prompt: 'x', width: 8, height: 8, steps: 1, seed: 1 };
  const before = await liveBaseline();
  await assertRejects(() => pipe.generate({ ...base, width: 9 }), 'INVALID_ARGUMENT', /multiples of 2/, /9×8/);
  await assertRejects(() => pipe.generate({ ...base, steps: 0 }), 'INVALID_ARGUMENT', /steps must be an integer/);
  await assertRejects(() => pipe.generate({ ...base, steps: 2.5 }), 'INVALID_ARGUMENT', /steps/);
  await assertRejects(() => pipe.generate({ ...base, prompt: [] }), 'INVALID_ARGUMENT', /prompt must not be an empty list/);
  await assertRejects(() => pipe.generate({ ...base, prompt: ['a', 3 as never] }), 'INVALID_ARGUMENT', /prompt\[1\] must be a string/);
  await assertRejects(() => pipe.generate({ ...base, guidanceScale: NaN }), 'INVALID_ARGUMENT', /guidanceScale must be a finite number/);
  await assertRejects(() => pipe.generate({ ...base, negativePrompt: ['a', 'b'] }), 'INVALID_ARGUMENT', /one per prompt \(1\), got 2/);
  await assertRejects(() => pipe.generate({ ...base, seed: -1 }), 'INVALID_ARGUMENT', /seed/);
  await assertRejects(() => pipe.generate({ ...base, numImages: 0 }), 'INVALID_ARGUMENT', /numImages/);
  await assertRejects(() => pipe.generate({ ...base, onStep: 'no' as never }), 'INVALID_ARGUMENT', /onStep/);
  await assertRejects(() => pipe.generate({ ...base, strength: 1 } as never), 'INVALID_ARGUMENT', /strength/);
  await assertRejects(() => pipe.generate(undefined as never), 'INVALID_ARGUMENT', /prompt must be/);
  assert.is(memoryStats().liveBytes, before);
  const parts = await tinyParts();
  assert.throws(() => StableDiffusionPipeline.fromComponents({ ...parts, scheduler: {} as never }), /scheduler must be a scheduler/);
  assert.throws(() => StableDiffusionPipeline.fromComponents({ ...parts, unet: null as never, scheduler: schedulers.DDIMScheduler.fromConfig({}) }), /unet must be a UNet2DConditionModel/);
});

// A byte-level vocabulary (no merges) that fits the tiny encoder's 1000 rows.
async function writeTinyTokenizer(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const vocab: Record<string, number> = {};
  let id = 0;
  for (const c of byteToChar) vocab[c] = id++;
  for (const c of byteToChar) vocab[`${c}</w>`] = id++;
  vocab['ca'] = id++;
  vocab['<|startoftext|>'] = id++;
  vocab['<|endoftext|>'] = id++;
  await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
  await writeFile(join(dir, 'merges.txt'), '#version: 0.2\nc a\n');
}

t('fromPretrained: an assembled diffusers folder samples end to end, for every scheduler', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'imprint-sd-'));
  try {
    await writeFile(join(dir, 'model_index.json'), JSON.stringify({
      _class_name: 'StableDiffusionPipeline',
      unet: ['diffusers', 'UNet2DConditionModel'],
      vae: ['diffusers', 'AutoencoderKL'],
      text_encoder: ['transformers', 'CLIPTextModel'],
      tokenizer: ['transformers', 'CLIPTokenizer'],
      scheduler: ['diffusers', 'PNDMScheduler'],
    }));
    for (const part of ['unet', 'vae', 'text_encoder']) await symlink(join(tinyDir, part), join(dir, part));
    await writeTinyTokenizer(join(dir, 'tokenizer'));
    await mkdir(join(dir, 'scheduler'));
    await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(SCHED_CONFIG));
    const before = await liveBaseline();
    let first: Float32Array | undefined;
    for (const scheduler of ['ddim', 'euler', 'euler-a', 'dpm++2m', 'dpm++2m-karras'] as const) {
      const pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler });
      const r = await pipe.generate({ prompt: 'a cat', steps: 2, width: 8, height: 8, seed: 5 });
      assert.equal(r.images.shape, [1, 3, 8, 8], scheduler);
      assert.ok(r.images.dataSync().every(Number.isFinite), scheduler);
      const img = r.images.dataSync() as Float32Array;
      if (first === undefined) first = img;
      else assert.not.ok(img.every((v, i) => v === first![i]), `${scheduler} differs from ddim`);
      disposeResult(r);
      pipe.dispose();
      assert.is(memoryStats().liveBytes, before, `${scheduler}: dispose frees the loaded weights`);
    }

    await assertRejects(() => StableDiffusionPipeline.fromPretrained(dir, { scheduler: 'pndm' as never }), 'INVALID_ARGUMENT', /scheduler must be one of/);
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(dir, { scheduler: 'toString' as never }), 'INVALID_ARGUMENT', /scheduler must be one of/);
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(dir, { dtype: 'i32' }), 'INVALID_ARGUMENT');
    await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify({ ...SCHED_CONFIG, beta_schedule: 'cosine' }));
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(dir), 'INVALID_ARGUMENT', /scheduler_config\.json/, /beta_schedule/);
    await writeFile(join(dir, 'scheduler', 'scheduler_config.json'), JSON.stringify(SCHED_CONFIG));
    await rm(join(dir, 'tokenizer'), { recursive: true });
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(dir), 'INVALID_ARGUMENT', /tokenizer is missing/);
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(join(dir, 'nope')), 'INVALID_ARGUMENT');
    await writeTinyTokenizer(join(dir, 'tokenizer'));
    await writeFile(join(dir, 'tokenizer', 'vocab.json'), '{"a": 0, "b": 0}');
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(dir), 'INVALID_ARGUMENT', /vocab\.json/, /share id 0/);
    // Failed loads release the weights they had loaded.
    assert.is(memoryStats().liveBytes, before);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});


t('image grid: cells land in place, row by row, with the gap black', async () => {
  // Three 2x2 images of solid grey levels -1, 0 and 1 in a 2-column grid with a 1-pixel gap.
  const levels = [-1, 0, 1];
  const data = new Float32Array(3 * 3 * 4);
  levels.forEach((v, i) => data.fill(v, i * 12, i * 12 + 12));
  const png = await imageGrid(tensor(data, { shape: [3, 3, 2, 2] }), { columns: 2, gap: 1 });
  const { data: px, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.equal([info.width, info.height], [5, 5]);
  const at = (x: number, y: number) => px[(y * info.width + x) * info.channels];
  assert.equal([at(0, 0), at(3, 0), at(0, 3), at(2, 2), at(4, 4)], [0, 128, 255, 0, 0]);
  await assertRejects(() => imageGrid(tensor(data, { shape: [3, 3, 2, 2] }), { columns: 0 }), 'INVALID_ARGUMENT', /columns must be a positive integer/);
});

t('a prompt longer than the text encoder is truncated with a warning', async () => {
  const pipe = await tinyPipe();
  const warnings: string[] = [];
  const long = Array.from({ length: 100 }, (_, i) => `w${i}`).join(' ');
  const r = await pipe.generate({ prompt: long, steps: 1, width: 8, height: 8, seed: 1, guidanceScale: 1, onWarning: (m) => warnings.push(m) });
  disposeResult(r);
  assert.is(warnings.length, 1);
  assert.match(warnings[0], /longer than 77 tokens and was truncated/);
  const quiet: string[] = [];
  disposeResult(await pipe.generate({ prompt: 'a dog', steps: 1, width: 8, height: 8, seed: 1, guidanceScale: 1, onWarning: (m) => quiet.push(m) }));
  assert.is(quiet.length, 0);
});

t('width and height default to the UNet\'s sample_size times the VAE factor, as in diffusers', async () => {
  const pipe = await tinyPipe();
  const r = await pipe.generate({ prompt: 'a dog', steps: 1, seed: 1, guidanceScale: 1 });
  const side = pipe.unet.config.sampleSize! * pipe.vae.factor;
  assert.is(side, 32, 'the tiny SD1 model: sample_size 16, VAE factor 2');
  assert.equal(r.images.shape, [1, 3, side, side]);
  disposeResult(r);
  await assertRejects(() => pipe.generate({ prompt: 'a dog', steps: 1, width: side + 1 }), 'INVALID_ARGUMENT', new RegExp(`multiples of ${pipe.sizeMultiple} for this model, got ${side + 1}×${side}`));
});

t('excite: the loss\'s gradient matches finite differences; a small step along it lowers the loss; generate guides the first steps', async () => {
  // exciteLoss against central differences of itself, at random maps where the peaks are unambiguous
  // (maps of 4 tokens on a 4×5 grid, subjects 1 and 3; the ×100 softmax spreads them over a few units).
  const h = 4, w = 5, T = 4, N = 2, subjects = [1, 3];
  const maps = Float32Array.from(randomArray(N * T * h * w, 41), (v) => 0.05 + 0.01 * v);
  const { loss, dMaps, neglected } = exciteLoss(maps, N, T, subjects, h, w);
  assert.is(loss.length, N);
  assert.ok(loss.every((l) => l > 0 && l < 1), `losses in (0, 1): ${loss}`);
  assert.ok(neglected.every((s) => s === 0 || s === 1));
  const total = (m: Float32Array) => exciteLoss(m, N, T, subjects, h, w).loss.reduce((a, b) => a + b, 0);
  let checked = 0;
  for (let at = 0; at < maps.length; at += 7) {
    const eps = 1e-4;
    const plus = Float32Array.from(maps), minus = Float32Array.from(maps);
    plus[at] += eps, minus[at] -= eps;
    const step = (plus[at] - minus[at]) / 2;  // the step f32 could represent
    const numeric = (total(plus) - total(minus)) / (2 * step);
    assert.ok(Math.abs(numeric - dMaps[at]) < 0.02 * Math.abs(dMaps[at]) + 1e-3, `dMaps[${at}]: ${dMaps[at]}, finite difference ${numeric}`);
    if (dMaps[at] !== 0) checked++;
  }
  assert.ok(checked >= 3, `${checked} non-zero gradient entries checked`);

  const pipe = await tinyPipe();
  const parts = await tinyParts();
  // The conditional context of "a cat and a dog"; the subjects are 'cat' (position 2) and 'dog' (position 5).
  const ids = parts.tokenizer.encodePadded('a cat and a dog', { maxLength: parts.textEncoder.config.maxPositionEmbeddings }).ids;
  const context = (await parts.textEncoder.encode([Array.from(ids)])).lastHiddenState;
  const z = await randn([1, 4, 8, 8], { seed: 3 });
  // The tokens between start and end: positions 1-5 ('a cat and a dog'); the subjects are the 2nd and the 5th.
  const probe = { unet: parts.unet, context, tokens: [1, 2, 3, 4, 5], subjects: [1, 4] };
  const g0 = await exciteGradient(probe, z, 500);
  const stepped = await combine([[1, z], [-0.05 / Math.max(...(g0.grad.dataSync() as Float32Array).map(Math.abs)), g0.grad as Tensor<'f32'>]]);
  const g1 = await exciteGradient(probe, stepped, 500);
  assert.ok(g1.loss[0] < g0.loss[0], `a small step along −∂L/∂z lowers L: ${g0.loss[0]} → ${g1.loss[0]}`);

  const calls: Array<{ step: number; loss: number[] }> = [];
  const base = { prompt: 'a cat and a dog', steps: 4, width: 16, height: 16, seed: 5, numImages: 2 };
  const plain = await pipe.generate(base);
  const none = await pipe.generate({ ...base, excite: ['cat', 'dog'], exciteSteps: 0 });
  assert.ok(sameData(plain.latents, none.latents), 'exciteSteps 0 is plain sampling, bit for bit');
  const guided = await pipe.generate({ ...base, excite: ['cat', 'dog'], onExcite: (info) => calls.push(info) });
  assert.equal(calls.map((c) => c.step), [1, 2], 'the first half of the steps are guided');
  assert.ok(calls.every((c) => c.loss.length === 2 && c.loss.every((l) => l > 0 && l <= 1)), 'a loss per image in (0, 1]');
  assert.not.ok(sameData(plain.latents, guided.latents), 'guidance moves the latents');
  for (const r of [plain, none, guided]) disposeResult(r);
  await assertRejects(() => pipe.generate({ ...base, excite: ['horse'] }), 'INVALID_ARGUMENT', /excite word 'horse' is not in the prompt/);
  await assertRejects(() => pipe.generate({ ...base, exciteSteps: 2 }), 'INVALID_ARGUMENT', /exciteSteps needs excite/);
  await assertRejects(() => pipe.generate({ ...base, excite: [] }), 'INVALID_ARGUMENT', /excite must list 1 to 15 words/);
  for (const x of [z, stepped, context, g0.grad, g1.grad]) x.dispose();
});

t.run();
