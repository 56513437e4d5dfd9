// Attend-and-Excite's probe on the tiny SD1 UNet: focusForward's maps are
// attention shares (a position's shares over every context token sum to 1)
// and leave the prediction bit-identical; focusBackward's sample gradient
// matches central finite differences of the maps; bad probes are named.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { focusQueries, UNet2DConditionModel } from '../lib/models/unet.js';
import { tinyModelLoader } from './tiny-models.js';
import { assertRejects, randomArray } from './helpers.js';

const t = suite('models.unet-focus');
const loadTiny = tinyModelLoader('unet');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

async function sd1() {
  const m = await loadTiny('sd1-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  const sample = m.case_.get('sample')!, ts = m.case_.get('timestep')!, ctx = m.case_.get('encoder_hidden_states')!;
  return { unet, sample, ts, ctx, queries: focusQueries(unet.config, sample.shape[2], sample.shape[3]) };
}

t('the grid: the cross-attention grid nearest 16×16', async () => {
  const { unet } = await sd1();
  // Tiny SD1: cross-attention only in down block 0 (the full latent grid).
  assert.is(focusQueries(unet.config, 16, 16), 256);
  assert.is(focusQueries(unet.config, 8, 12), 96);
  const sd = { ...unet.config, downBlockTypes: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'] as typeof unet.config.downBlockTypes };
  assert.is(focusQueries(sd, 64, 64), 256, 'SD at 512 px: 16×16');
  assert.is(focusQueries(sd, 96, 64), 24 * 16, 'a 768×512 image: its 24×16 grid');
});

t('the maps are attention shares (every token: sum 1 per position) and the prediction is unchanged', async () => {
  const m = await sd1();
  const all = Array.from({ length: m.ctx.shape[1] }, (_, i) => i);
  const { out, maps } = await m.unet.focusForward(m.sample, m.ts, m.ctx, { tokens: all, queries: m.queries });
  assert.equal(maps.shape, [2, all.length, m.queries]);
  const plain = await m.unet.forward(m.sample, m.ts, m.ctx);
  const a = f32(out), b = f32(plain);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.unreachable(`output element ${i}: ${a[i]} with the probe, ${b[i]} without`);
  const v = f32(maps);
  for (let n = 0; n < 2; n++) {
    for (let q = 0; q < m.queries; q++) {
      let sum = 0;
      for (let k = 0; k < all.length; k++) sum += v[(n * all.length + k) * m.queries + q];
      // A mean over heads and layers of softmax rows: 1 within a few f32 roundings of 7 terms.
      assert.ok(Math.abs(sum - 1) < 1e-5, `image ${n} position ${q}: shares sum to ${sum}`);
    }
  }
});

t('focusBackward is the sample gradient of Σ maps·dFocus (central differences along random directions)', async () => {
  const m = await sd1();
  const focus = { tokens: [1, 3, 3], queries: m.queries };
  const probe = tensor(randomArray(2 * 3 * m.queries, 21), { shape: [2, 3, m.queries] });
  const x0 = f32(m.sample);
  const grad = f32(await m.unet.focusBackward(m.sample, m.ts, m.ctx, focus, probe));
  const loss = async (x: Float32Array): Promise<number> => {
    const { out, maps } = await m.unet.focusForward(tensor(x, { shape: m.sample.shape }), m.ts, m.ctx, focus);
    out.dispose();
    const v = f32(maps), p = f32(probe);
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * p[i];
    return s;
  };
  for (let d = 0; d < 3; d++) {
    const dir = randomArray(x0.length, 30 + d);
    let analytic = 0;
    for (let i = 0; i < x0.length; i++) analytic += grad[i] * dir[i];
    // Richardson: (4·D(h/2) − D(h))/3 cancels the O(h²) term of the central difference.
    const central = async (h: number) => ((await loss(Float32Array.from(x0, (v, i) => v + h * dir[i]))) - (await loss(Float32Array.from(x0, (v, i) => v - h * dir[i])))) / (2 * h);
    const numeric = (4 * (await central(0.01)) - (await central(0.02))) / 3;
    assert.ok(Math.abs(numeric) > 1e-3, `direction ${d}: the derivative ${numeric} is large enough to test`);
    assert.ok(Math.abs(numeric - analytic) <= 0.02 * Math.abs(numeric) + 1e-4, `direction ${d}: finite difference ${numeric}, analytic ${analytic}`);
  }
});

t('focusForwardBackward: the LoRA factors\' gradients of Σ maps·dFocus match central differences; the output gets no gradient', async () => {
  const m = await sd1();
  const focus = { tokens: [2, 4], queries: m.queries };
  const probe = tensor(randomArray(2 * 2 * m.queries, 41), { shape: [2, 2, m.queries] });
  const K = m.unet.weightNames.find((n) => /\.attn2\.to_k\.weight$/.test(n))!;
  const [out, inp] = m.unet.weights[m.unet.weightNames.indexOf(K)].shape;
  const a = Float32Array.from(randomArray(2 * inp, 42), (v) => 0.3 * v), b = Float32Array.from(randomArray(out * 2, 43), (v) => 0.3 * v);
  const adapters = (bv: Float32Array) => [{ weight: K, lora: { a: tensor(a, { shape: [2, inp] }), b: tensor(bv, { shape: [out, 2] }) } }];
  const r = await m.unet.focusForwardBackward(m.sample, m.ts, m.ctx, focus, probe, { trainable: [`${K}#lora.a`, `${K}#lora.b`], adapters: adapters(b) });
  assert.equal([...r.grads.keys()], [`${K}#lora.a`, `${K}#lora.b`]);
  const gb = f32(r.grads.get(`${K}#lora.b`)!);
  const loss = async (bv: Float32Array): Promise<number> => {
    const { out: y, maps } = await m.unet.focusForward(m.sample, m.ts, m.ctx, focus, { adapters: adapters(bv) });
    y.dispose();
    const v = f32(maps), p = f32(probe);
    let s = 0;
    for (let i = 0; i < v.length; i++) s += v[i] * p[i];
    return s;
  };
  for (let d = 0; d < 2; d++) {
    const dir = randomArray(b.length, 50 + d);
    let analytic = 0;
    for (let i = 0; i < b.length; i++) analytic += gb[i] * dir[i];
    const central = async (h: number) => ((await loss(Float32Array.from(b, (v, i) => v + h * dir[i]))) - (await loss(Float32Array.from(b, (v, i) => v - h * dir[i])))) / (2 * h);
    const numeric = (4 * (await central(0.01)) - (await central(0.02))) / 3;
    assert.ok(Math.abs(numeric) > 1e-3, `direction ${d}: the derivative ${numeric} is large enough to test`);
    assert.ok(Math.abs(numeric - analytic) <= 0.02 * Math.abs(numeric) + 1e-4, `direction ${d}: finite difference ${numeric}, analytic ${analytic}`);
  }
  // dFocus = 0: nothing flows (the output term is absent, not an MSE or a dy of ones).
  const none = await m.unet.focusForwardBackward(m.sample, m.ts, m.ctx, focus, tensor(new Float32Array(2 * 2 * m.queries), { shape: [2, 2, m.queries] }), { trainable: [`${K}#lora.b`], adapters: adapters(b) });
  assert.ok(f32(none.grads.get(`${K}#lora.b`)!).every((v) => v === 0), 'zero dFocus, zero gradient');
  assert.ok(f32(none.dSample).every((v) => v === 0), 'zero dFocus, zero sample gradient');
});

t('bad probes are named', async () => {
  const m = await sd1();
  await assertRejects(() => m.unet.focusForward(m.sample, m.ts, m.ctx, { tokens: [7], queries: m.queries }), 'INVALID_ARGUMENT', /focus\.tokens must list 1 to 77 context positions/);
  await assertRejects(() => m.unet.focusForward(m.sample, m.ts, m.ctx, { tokens: [], queries: m.queries }), 'INVALID_ARGUMENT', /focus\.tokens/);
  await assertRejects(() => m.unet.focusForward(m.sample, m.ts, m.ctx, { tokens: [1], queries: 100 }), 'INVALID_ARGUMENT', /no cross-attention has focusQueries = 100/);
  const wrong = tensor(new Float32Array(2 * 2 * m.queries), { shape: [2, 2, m.queries] });
  await assertRejects(() => m.unet.focusBackward(m.sample, m.ts, m.ctx, { tokens: [1], queries: m.queries }, wrong), 'SHAPE_MISMATCH', /dFocus/);
});

t.run();
