// The UNet2DConditionModel graph against diffusers 0.21 outputs for the tiny
// SD1 (1x1-conv projections, 2 heads) and SD2 (linear projections, per-block
// heads) UNets in shared/reference/parity, and bad weights and inputs.
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { parseUNetConfig } from '../lib/models/configs.js';
import { unetLayout } from '../lib/models/layout-unet.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { runOp } from '../lib/nn/run.js';
import { REFERENCE, TINY_UNET_REDUCTION, tinyModelLoader, type TinyModel } from './tiny-models.js';
import { assertClose, assertCloseReordered, assertRejects } from './helpers.js';

const t = suite('models.unet');

const model = tinyModelLoader<Record<string, unknown>>('unet');

const RTOL = 1e-4;
const ATOL = 1e-5;
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const get = (m: TinyModel<Record<string, unknown>>, k: string): Tensor => m.case_.get(k)!;

for (const name of ['sd1-tiny', 'sd2-tiny'] as const) {
  t(`${name}: the noise prediction matches diffusers (i64 timestep tensor)`, async () => {
    const m = await model(name);
    const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
    const out = await unet.forward(get(m, 'sample'), get(m, 'timestep'), get(m, 'encoder_hidden_states'));
    assert.equal(out.shape, [2, 4, 16, 16]);
    assertClose(f32(out), f32(get(m, 'out')), RTOL, ATOL, `${name} out`);
  });
}

t('timesteps as numbers, f32 tensors and one broadcast value agree with the reference', async () => {
  const m = await model('sd2-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  const ts = Array.from(get(m, 'timestep').dataSync() as BigInt64Array, Number);
  const [s, e] = [get(m, 'sample'), get(m, 'encoder_hidden_states')];
  const expected = f32(get(m, 'out'));
  assertClose(f32(await unet.forward(s, ts, e)), expected, RTOL, ATOL, 'number[]');
  assertClose(f32(await unet.forward(s, tensor(Float32Array.from(ts)), e)), expected, RTOL, ATOL, 'f32 tensor');
  // One value for the whole batch equals running each row at that value.
  const one = await unet.forward(s, ts[0], e);
  const twice = await unet.forward(s, [ts[0], ts[0]], e);
  assert.equal(Array.from(f32(one)), Array.from(f32(twice)));
  // And row 0 of that is row 0 of the reference (row 0 ran at ts[0] there too).
  const half = expected.length / 2;
  assertClose(f32(one).subarray(0, half), expected.subarray(0, half), RTOL, ATOL, 'broadcast row 0');
  if (ts[0] !== ts[1]) {
    // The timestep matters: row 1 at the wrong time differs from the reference.
    const diff = f32(one).subarray(half).some((v, i) => Math.abs(v - expected[half + i]) > 1e-3);
    assert.ok(diff, 'row 1 at timestep[0] should differ from row 1 at timestep[1]');
  }
});

t('encoderFeatures: each down block\'s output and the mid block\'s, untouched by the up path, moved by the down path', async () => {
  const m = await model('sd1-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  const [s, ts, e] = [get(m, 'sample'), get(m, 'timestep'), get(m, 'encoder_hidden_states')];
  const f = await unet.encoderFeatures(s, ts, e);
  const c = unet.config;
  // Down blocks halve the grid except the last; the mid block keeps the last block's channels and grid.
  const sides = c.blockOutChannels.map((_, i) => 16 / 2 ** Math.min(i + 1, c.blockOutChannels.length - 1));
  assert.equal(f.map((x) => x.shape), [...c.blockOutChannels.map((ch, i) => [2, ch, sides[i], sides[i]]), [2, c.blockOutChannels.at(-1)!, sides.at(-1)!, sides.at(-1)!]]);
  assert.ok(f.every((x) => f32(x).every(Number.isFinite) && f32(x).some((v) => v !== 0)));
  // Odd sides: (h - 1) / 2 + 1 per downsample, as the convolution gives.
  const odd = await unet.encoderFeatures(tensor(new Float32Array(4 * 7 * 9).fill(0.3), { shape: [1, 4, 7, 9] }), 10, tensor(f32(e).subarray(0, e.shape[1] * e.shape[2]), { shape: [1, e.shape[1], e.shape[2]] }));
  assert.equal(odd[0].shape.slice(2), c.blockOutChannels.length > 1 ? [4, 5] : [7, 9]);
  // The up path and the output head do not reach the features; a down-path weight does.
  const scaled = async (names: string[]) => new Map(await Promise.all(names.map(async (n) => [n, tensor(Float32Array.from(f32(m.weights.get(n)!), (v) => 1.5 * v + 0.01), { shape: m.weights.get(n)!.shape })] as const)));
  const up = unet.weightNames.filter((n) => /^(up_blocks|conv_norm_out|conv_out)\./.test(n));
  const upChanged = unet.withWeights(await scaled(up));
  const g = await upChanged.encoderFeatures(s, ts, e);
  f.forEach((x, i) => assert.equal(f32(g[i]), f32(x), `feature ${i}: bit-identical with the up path changed`));
  assert.not.equal(f32(await upChanged.forward(s, ts, e)), f32(await unet.forward(s, ts, e)), 'the prediction does change');
  const downChanged = unet.withWeights(await scaled(['down_blocks.0.resnets.0.conv1.weight']));
  const d = await downChanged.encoderFeatures(s, ts, e);
  d.forEach((x, i) => assert.not.equal(f32(x), f32(f[i]), `feature ${i} moves with a down-block weight`));
});

t('a smaller sample (8x8) runs; each batch row is independent of the others', async () => {
  const m = await model('sd1-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  const full = await unet.forward(get(m, 'sample'), get(m, 'timestep'), get(m, 'encoder_hidden_states'));
  const s = f32(get(m, 'sample'));
  const e = f32(get(m, 'encoder_hidden_states'));
  const ts = Array.from(get(m, 'timestep').dataSync() as BigInt64Array, Number);
  const row1 = await unet.forward(tensor(s.slice(s.length / 2), { shape: [1, 4, 16, 16] }), [ts[1]],
    tensor(e.slice(e.length / 2), { shape: [1, 7, 32] }));
  const fr = f32(full);
  // Batch 1 and batch 2 may take other GEMM kernels: equal up to the order of the sums.
  assertCloseReordered(f32(row1), fr.subarray(fr.length / 2), TINY_UNET_REDUCTION, 'row 1 alone');
  const small = await unet.forward(tensor(s.slice(0, 4 * 64), { shape: [1, 4, 8, 8] }), 10, tensor(e.slice(0, 7 * 32), { shape: [1, 7, 32] }));
  assert.equal(small.shape, [1, 4, 8, 8]);
  assert.ok(f32(small).every(Number.isFinite));
});

t('the UNet expects exactly the weights of the tiny checkpoints (unetLayout)', async () => {
  for (const name of ['sd1-tiny', 'sd2-tiny'] as const) {
    const m = await model(name);
    assert.equal(Object.keys(unetLayout(parseUNetConfig(m.config))).sort(), [...m.weights.keys()].sort(), name);
  }
});

t('missing, wrong-shaped, wrong-dtype and non-tensor weights are named', async () => {
  const m = await model('sd1-tiny');
  const without = new Map(m.weights);
  without.delete('up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight');
  await assertRejects(() => UNet2DConditionModel.fromWeights(m.config, without), 'INVALID_ARGUMENT', /weight 'up_blocks\.1\.attentions\.2\.transformer_blocks\.0\.attn2\.to_k\.weight' is missing/);
  const reshaped = new Map(m.weights);
  reshaped.set('down_blocks.1.resnets.0.conv_shortcut.weight', tensor(new Float32Array(64 * 32), { shape: [64, 32] }));
  await assertRejects(() => UNet2DConditionModel.fromWeights(m.config, reshaped), 'SHAPE_MISMATCH', /conv_shortcut\.weight' must have shape \[64, 32, 1, 1\] for this config, got f32\[64, 32\]/);
  const ints = new Map(m.weights);
  ints.set('conv_out.bias', tensor(new Int32Array(4)));
  await assertRejects(() => UNet2DConditionModel.fromWeights(m.config, ints), 'DTYPE_MISMATCH', /conv_out\.bias' must be a float tensor/);
  const halves = new Map(m.weights);
  halves.set('mid_block.resnets.1.norm2.bias', tensor(new Float32Array(64), { dtype: 'f16' }));
  await assertRejects(() => UNet2DConditionModel.fromWeights(m.config, halves), 'DTYPE_MISMATCH', /mid_block\.resnets\.1\.norm2\.bias' is f16 but conv_in\.weight is f32/);
  const junk = new Map<string, unknown>(m.weights);
  junk.set('time_embedding.linear_1.weight', [[1, 2]]);
  await assertRejects(() => UNet2DConditionModel.fromWeights(m.config, junk as Map<string, Tensor>), 'INVALID_ARGUMENT', /time_embedding\.linear_1\.weight' must be a Tensor, got an array/);
  await assertRejects(() => UNet2DConditionModel.fromWeights(m.config, {} as Map<string, Tensor>), 'INVALID_ARGUMENT', /weights must be a Map/);
  // An SD2 config over SD1 weights: linear projections expected where 1x1 convs are stored.
  await assertRejects(() => UNet2DConditionModel.fromWeights({ ...m.config, use_linear_projection: true }, m.weights), 'SHAPE_MISMATCH', /down_blocks\.0\.attentions\.0\.proj_in\.weight' must have shape \[32, 32\]/);
  await assertRejects(() => UNet2DConditionModel.fromWeights({ ...m.config, attention_head_dim: 3 }, m.weights), 'INVALID_ARGUMENT', /attention_head_dim/);
});

t('bad inputs: sample channels, batch, empty h/w, context width, timestep, dtype', async () => {
  const m = await model('sd2-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  const s = get(m, 'sample'), e = get(m, 'encoder_hidden_states'), ts = get(m, 'timestep');
  const zeros = (...shape: number[]): Tensor => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape });
  await assertRejects(() => unet.forward(zeros(2, 3, 16, 16), ts, e), 'SHAPE_MISMATCH', /sample must be \[N, 4, h, w\] \(in_channels 4\), got f32\[2, 3, 16, 16\]/);
  await assertRejects(() => unet.forward(zeros(2, 4, 16), ts, e), 'SHAPE_MISMATCH', /sample must be \[N, 4, h, w\]/);
  await assertRejects(() => unet.forward(zeros(2, 4, 0, 16), ts, e), 'SHAPE_MISMATCH', /sample's batch, height and width must be positive, got f32\[2, 4, 0, 16\]/);
  await assertRejects(() => unet.forward(s, ts, zeros(2, 9, 32)), 'SHAPE_MISMATCH', /encoderHiddenStates must be \[2, tokens, 48\] .*got f32\[2, 9, 32\]/);
  await assertRejects(() => unet.forward(s, ts, zeros(3, 9, 48)), 'SHAPE_MISMATCH', /encoderHiddenStates must be \[2, tokens, 48\]/);
  await assertRejects(() => unet.forward(s, ts, zeros(2, 0, 48)), 'SHAPE_MISMATCH', /encoderHiddenStates must be/);
  await assertRejects(() => unet.forward(s, [1, 2, 3], e), 'INVALID_ARGUMENT', /timestep must be a finite number, 2 finite numbers or a tensor, got/);
  await assertRejects(() => unet.forward(s, Number.NaN, e), 'INVALID_ARGUMENT', /timestep must be a finite number/);
  await assertRejects(() => unet.forward(s, 'late' as unknown as number, e), 'INVALID_ARGUMENT', /timestep must be/);
  await assertRejects(() => unet.forward(s, zeros(3), e), 'SHAPE_MISMATCH', /timestep must be \[2\], \[1\] or a scalar tensor, got f32\[3\]/);
  await assertRejects(() => unet.forward(s, zeros(2, 1), e), 'SHAPE_MISMATCH', /timestep must be \[2\]/);
  await assertRejects(() => unet.forward(tensor(new Float32Array(2 * 4 * 256), { shape: [2, 4, 16, 16], dtype: 'f16' }), ts, e), 'DTYPE_MISMATCH', /sample is f16\[2, 4, 16, 16\] on cpu but the weights are f32/);
  await assertRejects(() => unet.forward(null as unknown as Tensor, ts, e), 'INVALID_ARGUMENT', /sample must be a Tensor/);
  await assertRejects(() => unet.forward(s, ts, [[1]] as unknown as Tensor), 'INVALID_ARGUMENT', /encoderHiddenStates must be a Tensor/);
});

t('the native op checks its inputs itself (names the weight, the input, the attr)', async () => {
  const m = await model('sd1-tiny');
  const c = parseUNetConfig(m.config);
  const names = Object.keys(unetLayout(c));
  const ws = names.map((k) => m.weights.get(k)!);
  const s = get(m, 'sample'), e = get(m, 'encoder_hidden_states');
  const ts = tensor(new Float32Array([1, 500]));
  const attrs = { blockOutChannels: c.blockOutChannels, layersPerBlock: c.layersPerBlock, crossDown: [1, 0], crossUp: [0, 1], heads: c.heads, transformerLayers: [1, 1] };
  const out = await runOp('unet_forward', [s, ts, e, ...ws], attrs);
  assert.equal(out[0].shape, [2, 4, 16, 16]);
  await assertRejects(() => runOp('unet_forward', [s, ts, e, ...ws.slice(0, -1)], attrs), 'INVALID_ARGUMENT', /conv_out\.bias \(input \d+\) is missing/);
  await assertRejects(() => runOp('unet_forward', [s, ts, e, ...ws, ws[0]], attrs), 'INVALID_ARGUMENT', /expected \d+ inputs for this config, got \d+/);
  // Swapped weights: the first misfit is named with its expected shape.
  const swapped = [...ws];
  [swapped[0], swapped[1]] = [swapped[1], swapped[0]];
  await assertRejects(() => runOp('unet_forward', [s, ts, e, ...swapped], attrs), 'SHAPE_MISMATCH', /conv_in\.weight must be \[32, in_channels, k, k\]/);
  await assertRejects(() => runOp('unet_forward', [s, ts, e, ...ws], { ...attrs, crossDown: [0, 0] }), 'SHAPE_MISMATCH', /down_blocks\.0\.resnets\.1\.conv1\.weight must be \[32, 32, 3, 3\], got f32\[32, 32, 1, 1\]/);
  await assertRejects(() => runOp('unet_forward', [s, ts, e, ...ws], { ...attrs, heads: [3, 2] }), 'INVALID_ARGUMENT', /down_blocks\.0\.attentions\.0: heads must be >= 1 and divide its 32 channels, got 3/);
  await assertRejects(() => runOp('unet_forward', [s, ts, e, ...ws], { ...attrs, heads: [2] }), 'INVALID_ARGUMENT', /heads must list 2 values/);
  await assertRejects(() => runOp('unet_forward', [s, ts, e, ...ws], { ...attrs, groups: 5 }), 'INVALID_ARGUMENT', /down_blocks\.0\.resnets\.0\.norm1: 32 channels are not divisible by groups 5/);
  const zeros = (...shape: number[]): Tensor => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape });
  await assertRejects(() => runOp('unet_forward', [zeros(2, 4, 16, 0), ts, e, ...ws], attrs), 'SHAPE_MISMATCH', /sample.s batch, height and width must be positive, got f32\[2, 4, 16, 0\]/);
  await assertRejects(() => runOp('unet_forward', [s, ts, zeros(2, 7, 16), ...ws], attrs), 'SHAPE_MISMATCH', /encoder_hidden_states must be \[2, tokens, 32\]/);
  await assertRejects(() => runOp('unet_forward', [s, zeros(4), e, ...ws], attrs), 'SHAPE_MISMATCH', /timestep must be \[2\], \[1\] or a scalar/);
  await assertRejects(() => runOp('unet_forward', [s, get(m, 'timestep'), e, ...ws], attrs), 'DTYPE_MISMATCH', /timestep is i64/);
});

t('a weight disposed after fromWeights is named; f16 weights on the CPU are refused cleanly', async () => {
  const m = await model('sd1-tiny');
  const copy = new Map(m.weights);
  const bias = tensor(f32(m.weights.get('conv_out.bias')!).slice(), { shape: [4] });
  copy.set('conv_out.bias', bias);
  const unet = UNet2DConditionModel.fromWeights(m.config, copy);
  bias.dispose();
  await assertRejects(() => unet.forward(get(m, 'sample'), 1, get(m, 'encoder_hidden_states')), 'DISPOSED', /weight 'conv_out\.bias' has been disposed/);
  const halves = new Map<string, Tensor>();
  for (const [k, v] of m.weights) halves.set(k, await v.cast('f16'));
  const u16 = UNet2DConditionModel.fromWeights(m.config, halves);
  assert.is(u16.dtype, 'f16');
  const s16 = await get(m, 'sample').cast('f16'), e16 = await get(m, 'encoder_hidden_states').cast('f16');
  await assertRejects(() => u16.forward(s16, get(m, 'timestep'), e16), 'UNSUPPORTED', /supports f32 only, got f16/);
  await assertRejects(() => u16.forward(get(m, 'sample'), 1, e16), 'DTYPE_MISMATCH', /sample is f32\[2, 4, 16, 16\] on cpu but the weights are f16/);
});


t('fromWeights takes the parsed config that loadDiffusersComponent returns', async () => {
  const { loadDiffusersComponent } = await import('../lib/models/checkpoint.js');
  const { UNet2DConditionModel } = await import('../lib/models/unet.js');
  const { AutoencoderKL } = await import('../lib/models/vae.js');
  const { ClipTextEncoder } = await import('../lib/models/clip-text.js');
  const dir = join(REFERENCE, 'parity/sd1-tiny');
  const u = await loadDiffusersComponent(join(dir, 'unet'), 'unet');
  assert.equal(UNet2DConditionModel.fromWeights(u.config, u.weights).config.blockOutChannels, u.config.blockOutChannels);
  const v = await loadDiffusersComponent(join(dir, 'vae'), 'vae');
  assert.is(AutoencoderKL.fromWeights(v.config, v.weights).scalingFactor, v.config.scalingFactor);
  const c = await loadDiffusersComponent(join(dir, 'text_encoder'), 'text_encoder');
  assert.is(ClipTextEncoder.fromWeights(c.config, c.weights).config.hiddenSize, c.config.hiddenSize);
});

t.run();
