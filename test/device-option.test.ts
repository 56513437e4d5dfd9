// The `device` option of the pipeline, the loader and Custom Diffusion
// training, on the CPU: 'cpu' given explicitly changes nothing (bit for bit),
// and a device that is not usable here is refused before any work, with the
// reason devices() gives. test/cuda-models.test.ts runs the same paths on a GPU.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { devices, tensor } from '../lib/index.js';
import { trainCustomDiffusion, type TrainCustomDiffusionOptions } from '../lib/methods/custom-diffusion/train.js';
import { checkUsableDevice } from '../lib/device.js';
import { loadDiffusersModel } from '../lib/models/checkpoint.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { readJsonFile } from '../lib/models/configs.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { imageToTensor, tensorToImages, tensorToRgb } from '../lib/pipeline/images.js';
import { PIXEL_SPACE } from '../lib/pipeline/pixel-space.js';
import { schedulerFromConfig, StableDiffusionPipeline, type GenerateOptions } from '../lib/pipeline/txt2img.js';
import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { conceptFolder, removeTempFolders, squarePng, tinyModelFolder } from './cd-fixture.js';
import { assertRejects } from './helpers.js';

const t = suite('device-option');
t.after(removeTempFolders);
const world = worldModelDir();
const cuda = devices().cuda;
const SAMPLE: GenerateOptions = { prompt: ['a red circle', 'a blue square'], width: 32, height: 32, steps: 4, seed: 7, guidanceScale: 3 };

const bits = (x: { dataSync(): ArrayLike<number | bigint> }): number[] => Array.from(x.dataSync() as ArrayLike<number>);

t("device 'cpu' given explicitly generates the same images, bit for bit, as the default; results are on the host", async () => {
  const plain = await StableDiffusionPipeline.fromPretrained(world, { scheduler: 'dpm++2m' });
  const cpu = await StableDiffusionPipeline.fromPretrained(world, { scheduler: 'dpm++2m', device: 'cpu' });
  try {
    assert.is(plain.device, 'cpu');
    assert.is(cpu.device, 'cpu');
    const a = await plain.generate(SAMPLE);
    const b = await cpu.generate(SAMPLE);
    for (const r of [a, b]) {
      assert.is(r.images.device, 'cpu');
      assert.is(r.latents.device, 'cpu');
    }
    assert.equal(b.images.shape, [2, 3, 32, 32]);
    assert.equal(bits(b.images), bits(a.images));
    assert.equal(bits(b.latents), bits(a.latents));
  } finally {
    plain.dispose();
    cpu.dispose();
  }
});

t("fromComponents takes the UNet's device by default and refuses components elsewhere", async () => {
  const m = await loadDiffusersModel(world);
  try {
    const unet = UNet2DConditionModel.fromWeights(readJsonFile(`${world}/unet/config.json`), m.unet.weights);
    const textEncoder = ClipTextEncoder.fromWeights(readJsonFile(`${world}/text_encoder/config.json`), m.textEncoder.weights);
    const parts = { tokenizer: await ClipTokenizer.fromFolder(m.tokenizerDir!), textEncoder, unet, vae: PIXEL_SPACE, scheduler: schedulerFromConfig('ddim', m.schedulerConfig!) };
    assert.is(StableDiffusionPipeline.fromComponents(parts).device, 'cpu');
    assert.is(StableDiffusionPipeline.fromComponents({ ...parts, device: 'cpu' }).device, 'cpu');
    // A component that says it lives elsewhere is a DEVICE_MISMATCH naming both devices.
    const elsewhere = { config: unet.config, device: 'cuda:3', forward: unet.forward.bind(unet) };
    await assertRejects(() => StableDiffusionPipeline.fromComponents({ ...parts, unet: elsewhere, device: 'cpu' }), 'DEVICE_MISMATCH', /unet is on cuda:3/, /device is cpu/);
    const pipe = StableDiffusionPipeline.fromComponents(parts);
    await assertRejects(() => pipe.replaceUnet(elsewhere), 'DEVICE_MISMATCH', /cuda:3/);
  } finally {
    for (const part of [m.unet, m.textEncoder]) for (const w of part.weights.values()) w.dispose();
  }
});

t('bad device strings are INVALID_ARGUMENT naming the accepted forms', async () => {
  for (const bad of ['gpu', 'CUDA:0', 'cuda:', 'cuda:-1', 'cuda0', 3, null]) {
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(world, { device: bad as string }), 'INVALID_ARGUMENT', /fromPretrained: device must be 'cpu', 'cuda' or 'cuda:N'/);
  }
  await assertRejects(() => loadDiffusersModel(world, { device: 'tpu' as never }), 'INVALID_ARGUMENT', /loadDiffusersModel: device must be/);
  await assertRejects(() => trainCustomDiffusion({ model: world, concepts: [{ classWord: 'dog', images: [] }], device: 'metal' }), 'INVALID_ARGUMENT', /trainCustomDiffusion: device must be/);
  await assertRejects(() => imageToTensor(Buffer.alloc(0), { width: 8, height: 8, device: 'gpu:0' }), 'INVALID_ARGUMENT', /imageToTensor: device must be/);
});

t('a CUDA device that is not usable here is refused up front with the reason devices() gives', async () => {
  if (cuda.available) {
    // On a GPU machine: an index past the last GPU is refused, naming the GPUs there are.
    const n = cuda.devices.length;
    await assertRejects(() => StableDiffusionPipeline.fromPretrained(world, { device: `cuda:${n}` }), 'INVALID_ARGUMENT', new RegExp(`'cuda:${n}' does not exist`), new RegExp(cuda.devices[0].name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    return;
  }
  const code = cuda.built ? 'CUDA_UNAVAILABLE' : 'CUDA_NOT_BUILT';
  const reason = new RegExp(cuda.reason!.slice(0, 40).replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  assert.throws(() => checkUsableDevice('here', 'cuda'), (e: Error & { code?: string }) => e.code === code && /here: device 'cuda:0' is not usable/.test(e.message));
  await assertRejects(() => StableDiffusionPipeline.fromPretrained(world, { device: 'cuda:0' }), code, /StableDiffusionPipeline\.fromPretrained: device 'cuda:0' is not usable/, reason);
  await assertRejects(() => loadDiffusersModel(world, { device: 'cuda:1' }), code, /loadDiffusersModel: device 'cuda:1' is not usable/, reason);
  // Refused before the images are read or the model is loaded: nothing here exists.
  await assertRejects(() => trainCustomDiffusion({ model: '/nonexistent-model', concepts: [{ classWord: 'dog', images: '/nonexistent-images' }], device: 'cuda:0' }), code, /trainCustomDiffusion: device 'cuda:0' is not usable/, reason);
  const m = await loadDiffusersModel(world);
  try {
    const unet = UNet2DConditionModel.fromWeights(readJsonFile(`${world}/unet/config.json`), m.unet.weights);
    const textEncoder = ClipTextEncoder.fromWeights(readJsonFile(`${world}/text_encoder/config.json`), m.textEncoder.weights);
    const parts = { tokenizer: await ClipTokenizer.fromFolder(m.tokenizerDir!), textEncoder, unet, vae: PIXEL_SPACE, scheduler: schedulerFromConfig('ddim', m.schedulerConfig!) };
    await assertRejects(() => StableDiffusionPipeline.fromComponents({ ...parts, device: 'cuda:0' }), code, reason);
  } finally {
    for (const part of [m.unet, m.textEncoder]) for (const w of part.weights.values()) w.dispose();
  }
});

t('image helpers: imageToTensor on the cpu explicitly, half-precision images convert as their f32 values', async () => {
  const png = await squarePng(8, 8, [200, 30, 30], 2, 2, 4);
  const a = await imageToTensor(png, { width: 8, height: 8 });
  const b = await imageToTensor(png, { width: 8, height: 8, device: 'cpu' });
  assert.is(b.device, 'cpu');
  assert.equal(bits(b), bits(a));
  const half = await a.cast('bf16');
  const widened = await half.cast('f32');
  assert.equal(tensorToRgb(half).map((x) => Array.from(x)), tensorToRgb(widened).map((x) => Array.from(x)));
  assert.equal((await tensorToImages(half)).map((x) => x.toString('hex')), (await tensorToImages(widened)).map((x) => x.toString('hex')));
  await assertRejects(() => tensorToImages(tensor(new Int32Array(3 * 4), { shape: [1, 3, 2, 2] })), 'DTYPE_MISMATCH', /f32, f16 or bf16/);
});

t("trainCustomDiffusion with device 'cpu' equals a run without it, bit for bit", async () => {
  const options: TrainCustomDiffusionOptions = {
    model: await tinyModelFolder(), concepts: [{ classWord: 'dog', images: await conceptFolder(2, [220, 20, 20]), initializer: 'x', numRegImages: 2 }],
    steps: 2, resolution: 16, regSteps: 2, augmentVariants: 2, batchSize: 2, lr: 1e-3, scaleLr: false, quiet: true, seed: 5,
  };
  const a = await trainCustomDiffusion(options);
  const b = await trainCustomDiffusion({ ...options, device: 'cpu' });
  assert.equal(b.losses, a.losses);
  assert.equal([...b.concept.deltas.keys()], [...a.concept.deltas.keys()]);
  for (const [n, d] of b.concept.deltas) {
    assert.is(d.device, 'cpu');
    assert.equal(bits(d), bits(a.concept.deltas.get(n)!), n);
  }
  assert.equal(b.concept.tokens.map((x) => bits(x.embedding)), a.concept.tokens.map((x) => bits(x.embedding)));
  assert.is(b.concept.baseFingerprint, a.concept.baseFingerprint);
});

t.run();
