// The UNet backward (unet_forward_backward) against diffusers 0.21 autograd
// gradients of sum(out · probe) for the tiny SD1 and SD2 UNets in
// shared/reference/parity: sample, encoder_hidden_states and every attn2
// to_k/to_v weight; a finite-difference check; and bad inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { parseUNetConfig } from '../lib/models/configs.js';
import { unetLayout } from '../lib/models/layout-unet.js';
import { UNet2DConditionModel, type UNetTrainable } from '../lib/models/unet.js';
import { runOp } from '../lib/nn/run.js';
import { tinyModelLoader, type TinyModel } from './tiny-models.js';
import { assertClose, assertRejects } from './helpers.js';

const t = suite('models.unet-backward');

const loadTiny = tinyModelLoader('unet');
interface Model extends TinyModel<Record<string, unknown>> {
  unet: UNet2DConditionModel;
}
const cache = new Map<string, Model>();
async function model(name: 'sd1-tiny' | 'sd2-tiny'): Promise<Model> {
  let m = cache.get(name);
  if (!m) {
    const t = await loadTiny(name);
    m = { ...t, unet: UNet2DConditionModel.fromWeights(t.config, t.weights) };
    cache.set(name, m);
  }
  return m;
}

// Gradients sum many products: relative 1e-4 of the largest entry, as absolute floor.
const RTOL = 1e-4;
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const get = (m: Model, k: string): Tensor => m.case_.get(k)!;
const atol = (x: Float32Array): number => 1e-4 * x.reduce((a, v) => Math.max(a, Math.abs(v)), 0);

async function run(m: Model, trainable: UNetTrainable = 'kv') {
  return m.unet.forwardBackward(get(m, 'sample'), get(m, 'timestep'), get(m, 'encoder_hidden_states'), get(m, 'probe'), { trainable });
}

for (const name of ['sd1-tiny', 'sd2-tiny'] as const) {
  t(`${name}: out, d_sample, d_encoder_hidden_states and every attn2 K/V gradient match diffusers`, async () => {
    const m = await model(name);
    const r = await run(m, 'kv');
    assertClose(f32(r.out), f32(get(m, 'out')), RTOL, 1e-5, `${name} out`);
    const ds = f32(get(m, 'grad.sample'));
    assertClose(f32(r.dSample), ds, RTOL, atol(ds), `${name} grad.sample`);
    const dc = f32(get(m, 'grad.encoder_hidden_states'));
    assertClose(f32(r.dContext), dc, RTOL, atol(dc), `${name} grad.encoder_hidden_states`);
    const refNames = [...m.case_.keys()].filter((k) => k.startsWith('grad.') && k.includes('.attn2.')).map((k) => k.slice(5)).sort();
    assert.ok(refNames.length >= 8, 'the reference lists the K/V weights');
    assert.equal([...r.grads.keys()].sort(), refNames, 'exactly the attn2 K/V weights get gradients');
    for (const n of refNames) {
      const g = f32(get(m, `grad.${n}`));
      assertClose(f32(r.grads.get(n)!), g, RTOL, atol(g), `${name} grad.${n}`);
    }
  });
}

t('frozen weights get no gradient outputs; input gradients do not depend on the trainable set', async () => {
  const m = await model('sd1-tiny');
  const none = await run(m, 'none');
  assert.equal(none.grads.size, 0);
  const ds = f32(get(m, 'grad.sample'));
  assertClose(f32(none.dSample), ds, RTOL, atol(ds), 'grad.sample with nothing trainable');
  const kName = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight';
  const one = await run(m, [kName]);
  assert.equal([...one.grads.keys()], [kName]);
  const g = f32(get(m, `grad.${kName}`));
  assertClose(f32(one.grads.get(kName)!), g, RTOL, atol(g), kName);
  const kv = [...m.case_.keys()].filter((k) => k.includes('.attn2.')).length;  // 2 per transformer
  const cross = await run(m, 'cross');
  assert.is(cross.grads.size, (5 * kv) / 2, "'cross': to_q, to_k, to_v, to_out.0 weight and bias of every transformer");
  assert.ok([...cross.grads.keys()].every((n) => n.includes('.attn2.')));
  assertClose(f32(cross.grads.get(kName)!), g, RTOL, atol(g), `${kName} under 'cross'`);
});

t('sd1-tiny: d_sample agrees with a central finite difference along a random direction', async () => {
  const m = await model('sd1-tiny');
  const s = f32(get(m, 'sample'));
  const p = f32(get(m, 'probe'));
  let seed = 12345;
  const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  const dir = Float32Array.from(s, () => rnd());
  const r = await run(m, 'none');
  const analytic = f32(r.dSample).reduce((a, v, i) => a + v * dir[i], 0);
  const eps = 1e-2;
  const loss = async (sign: number): Promise<number> => {
    const x = tensor(Float32Array.from(s, (v, i) => v + sign * eps * dir[i]), { shape: get(m, 'sample').shape });
    const out = f32(await m.unet.forward(x, get(m, 'timestep'), get(m, 'encoder_hidden_states')));
    return out.reduce((a, v, i) => a + v * p[i], 0);
  };
  const numeric = ((await loss(1)) - (await loss(-1))) / (2 * eps);
  assert.ok(Math.abs(analytic) > 1e-3, `a direction with a visible slope (${analytic})`);
  assert.ok(Math.abs(numeric - analytic) <= 2e-2 * Math.abs(analytic), `finite difference ${numeric} vs analytic ${analytic}`);
});

// No reference holds to_q / to_out gradients: check 'cross' ones by central differences of the loss.
t("sd1-tiny: 'cross' gradients of attn2.to_q and to_out.0 agree with finite differences", async () => {
  const m = await model('sd1-tiny');
  const p = f32(get(m, 'probe'));
  const r = await run(m, 'cross');
  const base = 'down_blocks.0.attentions.1.transformer_blocks.0.attn2.';
  for (const n of [`${base}to_q.weight`, `${base}to_out.0.weight`, `${base}to_out.0.bias`]) {
    const w = m.weights.get(n)!;
    const v = f32(w);
    let seed = 777;
    const dir = Float32Array.from(v, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
    const analytic = f32(r.grads.get(n)!).reduce((a, g, i) => a + g * dir[i], 0);
    const eps = 1e-2;
    const loss = async (sign: number): Promise<number> => {
      const ws = new Map(m.weights);
      ws.set(n, tensor(Float32Array.from(v, (x, i) => x + sign * eps * dir[i]), { shape: w.shape }));
      const unet = UNet2DConditionModel.fromWeights(m.config, ws);
      const out = f32(await unet.forward(get(m, 'sample'), get(m, 'timestep'), get(m, 'encoder_hidden_states')));
      return out.reduce((a, o, i) => a + o * p[i], 0);
    };
    const numeric = ((await loss(1)) - (await loss(-1))) / (2 * eps);
    assert.ok(Math.abs(analytic) > 1e-3, `${n}: a direction with a visible slope (${analytic})`);
    assert.ok(Math.abs(numeric - analytic) <= 2e-2 * Math.abs(analytic), `${n}: finite difference ${numeric} vs analytic ${analytic}`);
  }
});

// (Block 0 has one channel per norm group, which cancels per-channel shifts
// such as conv1's bias and the time projection: those are checked in block 1.)
// Pretraining trains everything: every kind of weight (convs, norms, the
// time-embedding MLP, resnet time projections, feed-forward, projections,
// resamplers) against central differences of the loss, with one timestep
// for the whole batch (the broadcast time projection) and with one per sample.
for (const [label, timestep] of [['per-sample timesteps', null], ['one timestep', 321]] as const) {
  t(`sd1-tiny: 'all' gradients agree with finite differences (${label})`, async () => {
    const m = await model('sd1-tiny');
    const p = f32(get(m, 'probe'));
    const ts = timestep ?? get(m, 'timestep');
    const r = await m.unet.forwardBackward(get(m, 'sample'), ts, get(m, 'encoder_hidden_states'), get(m, 'probe'), { trainable: 'all' });
    assert.is(r.grads.size, m.unet.weightNames.length, 'every weight gets a gradient');
    const names = [
      'conv_in.weight', 'conv_in.bias', 'time_embedding.linear_1.weight', 'time_embedding.linear_1.bias',
      'time_embedding.linear_2.weight', 'time_embedding.linear_2.bias',
      'down_blocks.0.resnets.0.norm1.weight', 'down_blocks.0.resnets.0.norm2.bias', 'down_blocks.0.resnets.0.conv2.bias', 'down_blocks.0.resnets.0.conv1.weight',
      'down_blocks.1.resnets.0.time_emb_proj.weight', 'down_blocks.1.resnets.0.time_emb_proj.bias', 'down_blocks.1.resnets.1.conv1.bias',
      'down_blocks.0.attentions.0.norm.weight', 'down_blocks.0.attentions.0.proj_in.weight', 'down_blocks.0.attentions.0.proj_out.bias',
      'down_blocks.0.attentions.0.transformer_blocks.0.norm1.weight', 'down_blocks.0.attentions.0.transformer_blocks.0.norm3.bias',
      'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.bias', 'down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight',
      'down_blocks.0.downsamplers.0.conv.weight', 'mid_block.resnets.1.conv2.weight', 'up_blocks.0.resnets.0.conv_shortcut.weight',
      'up_blocks.0.upsamplers.0.conv.bias', 'conv_norm_out.weight', 'conv_out.bias',
    ];
    for (const n of names) {
      assert.ok(m.weights.has(n), `${n} is a weight of the tiny model`);
      const w = m.weights.get(n)!;
      const v = f32(w);
      let seed = 4242;
      const dir = Float32Array.from(v, () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1);
      const analytic = f32(r.grads.get(n)!).reduce((a, g, i) => a + g * dir[i], 0);
      // A step that moves the loss (about 50, in f32) by about 0.3: far above
      // round-off, small enough for the extrapolation below to absorb the bend.
      const eps = Math.min(0.1, 0.15 / Math.max(Math.abs(analytic), 1e-6));
      const loss = async (sign: number): Promise<number> => {
        const ws = new Map(m.weights);
        ws.set(n, tensor(Float32Array.from(v, (x, i) => x + sign * eps * dir[i]), { shape: w.shape }));
        const unet = UNet2DConditionModel.fromWeights(m.config, ws);
        const out = f32(await unet.forward(get(m, 'sample'), ts, get(m, 'encoder_hidden_states')));
        return out.reduce((a, o, i) => a + o * p[i], 0);
      };
      // Central differences at eps and eps/2, Richardson-extrapolated: the
      // O(eps²) bend of the loss cancels while f32 round-off stays small.
      const central = async (h: number): Promise<number> => ((await loss(h)) - (await loss(-h))) / (2 * h * eps);
      const d1 = await central(1);
      const dHalf = await central(0.5);
      const numeric = (4 * dHalf - d1) / 3;
      // The loss's f32 round-off (its digits depend on the GEMM kernel and SIMD
      // width) divided by the step shows in how far the two estimates differ:
      // that spread widens the tolerance, a wrong gradient would not fit in it.
      const spread = Math.abs(d1 - dHalf);
      assert.ok(Math.abs(analytic) > 1e-4, `${n}: a direction with a visible slope (${analytic})`);
      assert.ok(Math.abs(numeric - analytic) <= 2e-2 * Math.abs(analytic) + 1e-4 + 2 * spread,
        `${n}: finite difference ${numeric} vs analytic ${analytic} (estimates at eps and eps/2 differ by ${spread})`);
    }
    // Training more weights does not change the gradients of the others.
    const kv = await run(m, 'kv');
    const k = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight';
    if (timestep === null) assertClose(f32(r.grads.get(k)!), f32(kv.grads.get(k)!), 1e-5, 1e-7, `${k} under 'all' and 'kv'`);
    assertClose(f32(r.dSample), f32((await m.unet.forwardBackward(get(m, 'sample'), ts, get(m, 'encoder_hidden_states'), get(m, 'probe'), { trainable: 'none' })).dSample), 1e-5, 1e-7, 'dSample');
  });
}

t('lossBackward: the MSE loss and its backward in one call equal forwardBackward with dy = 2(out - target)/n', async () => {
  const m = await model('sd2-tiny');
  const s = get(m, 'sample'), ts = get(m, 'timestep'), e = get(m, 'encoder_hidden_states');
  const target = get(m, 'probe');
  const r = await m.unet.lossBackward(s, ts, e, target, { trainable: 'cross' });
  const out = f32(r.out), tg = f32(target);
  const n = out.length;
  let loss = 0;
  for (let i = 0; i < n; i++) loss += (out[i] - tg[i]) ** 2 / n;
  assert.equal(r.loss.shape, []);
  assertClose(f32(r.loss), new Float32Array([loss]), 1e-5, 0, 'loss');
  const dy = tensor(Float32Array.from(out, (o, i) => (2 * (o - tg[i])) / n), { shape: target.shape });
  const ref = await m.unet.forwardBackward(s, ts, e, dy, { trainable: 'cross' });
  assertClose(f32(r.dSample), f32(ref.dSample), 1e-4, 1e-9, 'dSample');
  assertClose(f32(r.dContext), f32(ref.dContext), 1e-4, 1e-9, 'dContext');
  assert.equal([...r.grads.keys()], [...ref.grads.keys()]);
  for (const [k, g] of r.grads) assertClose(f32(g), f32(ref.grads.get(k)!), 1e-4, 1e-9, k);
  await assertRejects(() => m.unet.lossBackward(s, ts, e, tensor(new Float32Array(4), { shape: [1, 4] })), 'SHAPE_MISMATCH', /lossBackward: target must have the output's shape/);
});

t('the native op checks dy and the trainable indices itself', async () => {
  const m = await model('sd1-tiny');
  const c = parseUNetConfig(m.config);
  const names = Object.keys(unetLayout(c));
  const ws = names.map((k) => m.weights.get(k)!);
  const s = get(m, 'sample'), e = get(m, 'encoder_hidden_states'), p = get(m, 'probe');
  const ts = tensor(new Float32Array([1, 500]));
  const attrs = { blockOutChannels: c.blockOutChannels, layersPerBlock: c.layersPerBlock, crossDown: [1, 0], crossUp: [0, 1], heads: c.heads, transformerLayers: [1, 1] };
  const k = names.indexOf('mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight');
  const v = names.indexOf('mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight');
  const outs = await runOp('unet_forward_backward', [s, ts, e, p, ...ws], { ...attrs, trainable: [k, v] });
  assert.is(outs.length, 5, 'out, d_sample, d_context and the two trainable gradients');
  assert.equal(outs[3].shape, ws[k].shape);
  const none = await runOp('unet_forward_backward', [s, ts, e, p, ...ws], attrs);
  assert.is(none.length, 3, 'nothing trainable by default: no weight gradients');
  const op = (dy: Tensor, trainable: number[]) => runOp('unet_forward_backward', [s, ts, e, dy, ...ws], { ...attrs, trainable });
  await assertRejects(() => op(tensor(new Float32Array(4), { shape: [1, 4] }), []), 'SHAPE_MISMATCH', /unet_forward_backward: dy must have the output's shape \[2, 4, 16, 16\]/);
  await assertRejects(() => op(p, [v, k]), 'INVALID_ARGUMENT', /trainable must list ascending weight indices/);
  await assertRejects(() => op(p, [ws.length]), 'INVALID_ARGUMENT', /trainable must list ascending weight indices in \[0, \d+\)/);
  await assertRejects(() => op(p, [-1]), 'INVALID_ARGUMENT', /trainable must list ascending/);
  // A weight passed twice (tied storage) cannot be told apart: refused rather than mis-attributed.
  const tied = [...ws];
  tied[v] = ws[k];
  await assertRejects(() => runOp('unet_forward_backward', [s, ts, e, p, ...tied], { ...attrs, trainable: [k, v] }), 'INVALID_ARGUMENT', /shares its storage/);
  await assertRejects(() => runOp('unet_forward_backward', [s, ts, e, ...ws], attrs), 'SHAPE_MISMATCH');
});

t('bad inputs: dy shape, unknown or untrainable names, bad trainable spec', async () => {
  const m = await model('sd1-tiny');
  const s = get(m, 'sample'), ts = get(m, 'timestep'), e = get(m, 'encoder_hidden_states');
  const wrong = tensor(new Float32Array(2 * 4 * 8 * 8), { shape: [2, 4, 8, 8] });
  await assertRejects(() => m.unet.forwardBackward(s, ts, e, wrong), 'SHAPE_MISMATCH', /dy must have the output's shape \[2, 4, 16, 16\]/);
  const p = get(m, 'probe');
  await assertRejects(() => m.unet.forwardBackward(s, ts, e, p, { trainable: ['no.such.weight'] }), 'INVALID_ARGUMENT', /'no.such.weight' is not a weight/);
  await assertRejects(() => m.unet.forwardBackward(s, ts, e, p, { trainable: 'everything' as never }), 'INVALID_ARGUMENT', /trainable must be/);
  await assertRejects(() => m.unet.forwardBackward(s, ts, e, p, { trainable: [3 as never] }), 'INVALID_ARGUMENT', /must be strings/);
  await assertRejects(() => m.unet.forwardBackward(s, ts, e, 'dy' as never), 'INVALID_ARGUMENT', /dy must be a Tensor/);
});

t.run();
