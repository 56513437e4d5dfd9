// The VAE graphs against diffusers' AutoencoderKL outputs for the tiny SD1 VAE
// in shared/reference/parity (vae_case), against the same steps composed from
// nn ops, and bad configs, weights and inputs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors } from '../lib/io/safetensors.js';
import { parseVaeConfig } from '../lib/models/configs.js';
import { vaeLayout } from '../lib/models/layout-vae.js';
import { AutoencoderKL } from '../lib/models/vae.js';
import { runOp } from '../lib/nn/run.js';
import { assertClose, assertCloseReordered, assertRejects } from './helpers.js';
import { REFERENCE, TINY_VAE_ENCODER_REDUCTION } from './tiny-models.js';

const dir = join(REFERENCE, 'parity/sd1-tiny');
const t = suite('models.vae');

interface Model {
  config: Record<string, unknown>;
  weights: Map<string, Tensor>;
  case_: Map<string, Tensor>;
}
let cached: Model | undefined;
async function model(): Promise<Model> {
  cached ??= {
    config: JSON.parse(readFileSync(join(dir, 'vae/config.json'), 'utf8')),
    weights: await loadSafetensors(join(dir, 'vae/diffusion_pytorch_model.safetensors')),
    case_: await loadSafetensors(join(dir, 'vae_case.safetensors')),
  };
  return cached;
}

const RTOL = 1e-4;
const ATOL = 1e-5;
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

t('encode: mean and logvar match diffusers (unscaled, logvar clamped)', async () => {
  const m = await model();
  const vae = AutoencoderKL.fromWeights(m.config, m.weights);
  assert.is(vae.scalingFactor, 0.18215);
  assert.is(vae.factor, 2);
  const { mean, logvar } = await vae.encode(m.case_.get('image')!);
  assert.equal(mean.shape, [1, 4, 16, 16]);
  assert.equal(logvar.shape, [1, 4, 16, 16]);
  assertClose(f32(mean), f32(m.case_.get('latent_mean')!), RTOL, ATOL, 'latent_mean');
  assertClose(f32(logvar), f32(m.case_.get('latent_logvar')!), RTOL, ATOL, 'latent_logvar');
});

t('decode: the image matches diffusers', async () => {
  const m = await model();
  const vae = AutoencoderKL.fromWeights(m.config, m.weights);
  const out = await vae.decode(m.case_.get('latent')!);
  assert.equal(out.shape, [1, 3, 32, 32]);
  assertClose(f32(out), f32(m.case_.get('decoded')!), RTOL, ATOL, 'decoded');
});

t('a batch encodes each sample as alone; non-square sizes give the matching latent and image shapes', async () => {
  const m = await model();
  const vae = AutoencoderKL.fromWeights(m.config, m.weights);
  const img = f32(m.case_.get('image')!);
  const half = img.map((v) => v * 0.5);
  const both = new Float32Array(img.length * 2);
  both.set(img);
  both.set(half, img.length);
  const out = await vae.encode(tensor(both, { shape: [2, 3, 32, 32] }));
  const alone = await vae.encode(tensor(half, { shape: [1, 3, 32, 32] }));
  const n = 4 * 16 * 16;
  assertClose(f32(out.mean).subarray(0, n), f32(m.case_.get('latent_mean')!), RTOL, ATOL, 'sample 0 mean');
  assertClose(f32(out.logvar).subarray(0, n), f32(m.case_.get('latent_logvar')!), RTOL, ATOL, 'sample 0 logvar');
  // Batch 1 and batch 2 may take other GEMM kernels: equal up to the order of the sums.
  assertCloseReordered(f32(out.mean).subarray(n), f32(alone.mean), TINY_VAE_ENCODER_REDUCTION, 'sample 1 mean');
  assertCloseReordered(f32(out.logvar).subarray(n), f32(alone.logvar), TINY_VAE_ENCODER_REDUCTION, 'sample 1 logvar');
  const wide = await vae.encode(tensor(new Float32Array(3 * 8 * 16).fill(0.25), { shape: [1, 3, 8, 16] }));
  assert.equal(wide.mean.shape, [1, 4, 4, 8]);
  const img2 = await vae.decode(tensor(new Float32Array(4 * 3 * 5).fill(0.1), { shape: [1, 4, 3, 5] }));
  assert.equal(img2.shape, [1, 3, 6, 10]);
  assert.ok(f32(img2).every(Number.isFinite));
});

t('quant_conv splits into mean (first half) and logvar (second half), logvar clamped to [-30, 20]', async () => {
  const m = await model();
  const w = new Map(m.weights);
  // A zero quant_conv makes the moments its bias: the clamp and the split are then exact.
  w.set('quant_conv.weight', tensor(new Float32Array(64), { shape: [8, 8, 1, 1] }));
  w.set('quant_conv.bias', tensor(Float32Array.from([1, 2, 3, 4, 100, -100, 5, -29.5]), { shape: [8] }));
  const vae = AutoencoderKL.fromWeights(m.config, w);
  const { mean, logvar } = await vae.encode(tensor(new Float32Array(3 * 4 * 4), { shape: [1, 3, 4, 4] }));
  const per = (x: Tensor): number[] => [0, 1, 2, 3].map((c) => f32(x)[c * 4]);
  assert.equal(per(mean), [1, 2, 3, 4]);
  assert.equal(per(logvar), [20, -30, 5, -29.5]);
  assert.ok(f32(logvar).every((v, i) => v === per(logvar)[Math.floor(i / 4)]));
});

t('the VAE expects exactly the weights of the tiny checkpoint (vaeLayout)', async () => {
  const m = await model();
  assert.equal(Object.keys(vaeLayout(parseVaeConfig(m.config))).sort(), [...m.weights.keys()].sort());
});

t('bad configs name the field; a config that does not fit the weights names the weight', async () => {
  const m = await model();
  const bad = (patch: Record<string, unknown>): unknown => ({ ...m.config, ...patch });
  await assertRejects(() => AutoencoderKL.fromWeights(null, m.weights), 'INVALID_ARGUMENT', /config must be a JSON object/);
  await assertRejects(() => AutoencoderKL.fromWeights(bad({ layers_per_block: 0 }), m.weights), 'INVALID_ARGUMENT', /'layers_per_block' must be an integer/);
  await assertRejects(() => AutoencoderKL.fromWeights(bad({ norm_num_groups: 5 }), m.weights), 'INVALID_ARGUMENT', /norm_num_groups/);
  await assertRejects(() => AutoencoderKL.fromWeights(bad({ down_block_types: ['DownBlock2D', 'DownEncoderBlock2D'] }), m.weights), 'INVALID_ARGUMENT', /down_block_types/);
  await assertRejects(
    () => AutoencoderKL.fromWeights(bad({ block_out_channels: [32, 64, 64], down_block_types: undefined, up_block_types: undefined }), m.weights),
    'INVALID_ARGUMENT', /weight 'encoder\.down_blocks\.1\.downsamplers\.0\.conv\.weight' is missing/);
  await assertRejects(() => AutoencoderKL.fromWeights(bad({ latent_channels: 8 }), m.weights), 'SHAPE_MISMATCH', /'encoder\.conv_out\.weight' must have shape \[16, 64, 3, 3\]/);
});

t('missing, wrong-shaped, wrong-dtype and non-tensor weights are named', async () => {
  const m = await model();
  const without = new Map(m.weights);
  without.delete('encoder.mid_block.attentions.0.to_k.bias');
  await assertRejects(() => AutoencoderKL.fromWeights(m.config, without), 'INVALID_ARGUMENT', /weight 'encoder\.mid_block\.attentions\.0\.to_k\.bias' is missing/);
  const noDecoder = new Map(m.weights);
  noDecoder.delete('post_quant_conv.bias');
  await assertRejects(() => AutoencoderKL.fromWeights(m.config, noDecoder), 'INVALID_ARGUMENT', /weight 'post_quant_conv\.bias' is missing/);
  const reshaped = new Map(m.weights);
  reshaped.set('decoder.up_blocks.1.resnets.0.conv_shortcut.weight', tensor(new Float32Array(32 * 64 * 9), { shape: [32, 64, 3, 3] }));
  await assertRejects(() => AutoencoderKL.fromWeights(m.config, reshaped), 'SHAPE_MISMATCH',
    /'decoder\.up_blocks\.1\.resnets\.0\.conv_shortcut\.weight' must have shape \[32, 64, 1, 1\] for this config, got f32\[32, 64, 3, 3\]/);
  const ints = new Map(m.weights);
  ints.set('decoder.conv_norm_out.bias', tensor(new Int32Array(32)));
  await assertRejects(() => AutoencoderKL.fromWeights(m.config, ints), 'DTYPE_MISMATCH', /'decoder\.conv_norm_out\.bias' must be a float tensor/);
  const halves = new Map(m.weights);
  halves.set('encoder.conv_out.bias', tensor(new Float32Array(8), { dtype: 'f16' }));
  await assertRejects(() => AutoencoderKL.fromWeights(m.config, halves), 'DTYPE_MISMATCH', /'encoder\.conv_out\.bias' is f16 but encoder\.conv_in\.weight is f32/);
  const junk = new Map<string, unknown>(m.weights);
  junk.set('quant_conv.weight', [[1]]);
  await assertRejects(() => AutoencoderKL.fromWeights(m.config, junk as Map<string, Tensor>), 'INVALID_ARGUMENT', /'quant_conv\.weight' must be a Tensor, got an array/);
  await assertRejects(() => AutoencoderKL.fromWeights(m.config, {} as Map<string, Tensor>), 'INVALID_ARGUMENT', /weights must be a Map/);
});

t('bad images and latents: channels, sizes not divisible by the factor, rank, dtype, non-tensors', async () => {
  const m = await model();
  const vae = AutoencoderKL.fromWeights(m.config, m.weights);
  const img = (shape: number[], dtype: 'f32' | 'f16' = 'f32'): Tensor => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape, dtype });
  await assertRejects(() => vae.encode(img([1, 4, 32, 32])), 'SHAPE_MISMATCH', /image must have 3 channels \(dim 1\), got f32\[1, 4, 32, 32\]/);
  await assertRejects(() => vae.encode(img([1, 3, 31, 32])), 'SHAPE_MISMATCH', /multiples of 2 \(the VAE's downsampling factor\), got f32\[1, 3, 31, 32\]/);
  await assertRejects(() => vae.encode(img([1, 3, 32, 7])), 'SHAPE_MISMATCH', /multiples of 2/);
  await assertRejects(() => vae.encode(img([0, 3, 32, 32])), 'SHAPE_MISMATCH', /must be positive/);
  await assertRejects(() => vae.encode(img([3, 32, 32])), 'SHAPE_MISMATCH', /image must be \[N, 3, H, W\]/);
  await assertRejects(() => vae.encode(img([1, 3, 32, 32], 'f16')), 'DTYPE_MISMATCH', /image is f16 but the weights are f32/);
  await assertRejects(() => vae.encode([[1]] as never), 'INVALID_ARGUMENT', /image must be a Tensor, got an array/);
  await assertRejects(() => vae.decode(img([1, 3, 16, 16])), 'SHAPE_MISMATCH', /latent must have 4 channels/);
  await assertRejects(() => vae.decode(img([4, 16, 16])), 'SHAPE_MISMATCH', /latent must be \[N, 4, H, W\]/);
  const gone = img([1, 4, 2, 2]);
  gone.dispose();
  await assertRejects(() => vae.decode(gone), 'DISPOSED', /latent has been disposed/);
});

t('the native ops check their inputs themselves (wrong count, shapes, sizes), naming the weight', async () => {
  const m = await model();
  const cfg = parseVaeConfig(m.config);
  const names = Object.keys(vaeLayout(cfg));
  const enc = [...names.filter((k) => k.startsWith('encoder.')), 'quant_conv.weight', 'quant_conv.bias'].map((k) => m.weights.get(k)!);
  const dec = ['post_quant_conv.weight', 'post_quant_conv.bias', ...names.filter((k) => k.startsWith('decoder.'))].map((k) => m.weights.get(k)!);
  const attrs = { blockOutChannels: cfg.blockOutChannels, layersPerBlock: 1, latentChannels: 4 };
  const image = m.case_.get('image')!;
  const latent = m.case_.get('latent')!;
  // The raw op in the documented order gives the reference result.
  const [mean] = await runOp('vae_encode', [image, ...enc], attrs);
  assertClose(f32(mean), f32(m.case_.get('latent_mean')!), RTOL, ATOL, 'raw vae_encode');
  await assertRejects(() => runOp('vae_encode', [image, ...enc.slice(0, -1)], attrs), 'INVALID_ARGUMENT', /vae_encode: too few inputs: quant_conv\.bias \(input \d+\) is missing/);
  await assertRejects(() => runOp('vae_decode', [latent, ...dec, dec[0]], attrs), 'INVALID_ARGUMENT', /vae_decode: expected \d+ weights for this config, got \d+/);
  // Two weights swapped: the first out of place is named.
  const swapped = [...dec];
  [swapped[0], swapped[2]] = [swapped[2], swapped[0]];
  await assertRejects(() => runOp('vae_decode', [latent, ...swapped], attrs), 'SHAPE_MISMATCH', /vae_decode: post_quant_conv\.weight must be \[4, 4, 1, 1\], got f32\[64, 4, 3, 3\]/);
  await assertRejects(() => runOp('vae_encode', [tensor(new Float32Array(3 * 5 * 4), { shape: [1, 3, 5, 4] }), ...enc], attrs), 'SHAPE_MISMATCH', /vae_encode: image's height and width must be positive multiples of 2/);
  await assertRejects(() => runOp('vae_decode', [image, ...dec], attrs), 'SHAPE_MISMATCH', /vae_decode: latent must have 4 channels/);
  await assertRejects(() => runOp('vae_decode', [latent, ...dec], { ...attrs, layersPerBlock: undefined }), 'INVALID_ARGUMENT', /layersPerBlock/);
  await assertRejects(() => runOp('vae_decode', [latent, ...dec], { ...attrs, blockOutChannels: [32, 60] }), 'INVALID_ARGUMENT', /multiple of groups 32, got 60/);
  await assertRejects(() => runOp('vae_decode', [latent, ...dec], { ...attrs, blockOutChannels: [] }), 'INVALID_ARGUMENT', /blockOutChannels must list 1 to 16 widths/);
});

t('a weight disposed after fromWeights is named by encode and decode', async () => {
  const weights = await loadSafetensors(join(dir, 'vae/diffusion_pytorch_model.safetensors'));
  const config = JSON.parse(readFileSync(join(dir, 'vae/config.json'), 'utf8'));
  const vae = AutoencoderKL.fromWeights(config, weights);
  weights.get('encoder.down_blocks.0.resnets.0.conv2.bias')!.dispose();
  weights.get('decoder.mid_block.attentions.0.to_out.0.weight')!.dispose();
  const x = tensor(new Float32Array(3 * 4 * 4), { shape: [1, 3, 4, 4] });
  await assertRejects(() => vae.encode(x), 'DISPOSED', /weight 'encoder\.down_blocks\.0\.resnets\.0\.conv2\.bias' has been disposed/);
  await assertRejects(() => vae.decode(tensor(new Float32Array(4), { shape: [1, 4, 1, 1] })), 'DISPOSED', /weight 'decoder\.mid_block\.attentions\.0\.to_out\.0\.weight' has been disposed/);
  for (const w of weights.values()) w.dispose();
});

t('f16 weights are accepted by fromWeights; on the CPU encode and decode say f32 only (no crash)', async () => {
  const m = await model();
  const half = new Map<string, Tensor>();
  for (const [k, v] of m.weights) half.set(k, await v.cast('f16'));
  const vae = AutoencoderKL.fromWeights(m.config, half);
  assert.is(vae.dtype, 'f16');
  const image = await m.case_.get('image')!.cast('f16');
  const latent = await m.case_.get('latent')!.cast('f16');
  await assertRejects(() => vae.encode(image), 'UNSUPPORTED', /on cpu supports f32 only/);
  await assertRejects(() => vae.decode(latent), 'UNSUPPORTED', /on cpu supports f32 only/);
  await assertRejects(() => vae.decode(m.case_.get('latent')!), 'DTYPE_MISMATCH', /latent is f32 but the weights are f16/);
  for (const v of [...half.values(), image, latent]) v.dispose();
});

t.run();
