// The adapter kinds the tuning encoder needs, on the tiny SD1 UNet:
// - the dual path α·adapted(C_soft) + (1 − α)·plain(C_hard) is the adapted
//   model at α = 1 and the plain model on the hard context at α = 0, forward
//   and backward, exactly (a product by 1 and a sum with 0 by construction);
//   in between its gradients match Richardson finite differences;
// - a per-sample LoRA batch equals running each sample with its own LoRA
//   (outputs, input gradients, per-sample factor gradients, and the shared
//   weights' gradient summed over the batch), and equals the merged LoRA.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { UNet2DConditionModel, type UNetAdapter } from '../lib/models/unet.js';
import { tinyModelLoader, TINY_UNET_REDUCTION } from './tiny-models.js';
import { assertCloseReordered, assertRejects, randomArray } from './helpers.js';

const t = suite('models.unet-dual-path');
const loadTiny = tinyModelLoader('unet');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

const K = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';  // [32, 32]
const Q1 = 'down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight';  // [32, 32]
const V = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight';  // [64, 32]

async function sd1() {
  const m = await loadTiny('sd1-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  const get = (k: string): Tensor => m.case_.get(k)!;
  const ctx = get('encoder_hidden_states');
  // Another context of the same shape: the "hard" prompt.
  const hard = tensor(Float32Array.from(f32(ctx), (v, i) => v + 0.5 * Math.sin(i)), { shape: ctx.shape });
  return { ...m, unet, sample: get('sample'), ts: get('timestep'), ctx, hard, probe: get('probe') };
}

function assertSame(a: Tensor | Float32Array, b: Tensor | Float32Array, what: string): void {
  const x = a instanceof Float32Array ? a : f32(a), y = b instanceof Float32Array ? b : f32(b);
  assert.is(x.length, y.length, `${what}: length`);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) assert.unreachable(`${what}: element ${i} is ${x[i]}, expected ${y[i]}`);
}

// A LoRA on attn2 K (cross), a delta on attn1 Q (self) and a LoRA on the mid block's V.
function adapters(m: Awaited<ReturnType<typeof sd1>>, a?: Tensor): UNetAdapter[] {
  const la = a ?? tensor(randomArray(2 * 32, 1, 0.3), { shape: [2, 32] });
  return [
    { weight: K, lora: { a: la, b: tensor(randomArray(32 * 2, 2, 0.3), { shape: [32, 2] }), scale: 0.8 } },
    { weight: Q1, delta: tensor(randomArray(32 * 32, 3, 0.05), { shape: [32, 32] }) },
    { weight: V, lora: { a: tensor(randomArray(2 * 32, 4, 0.3), { shape: [2, 32] }), b: tensor(randomArray(64 * 2, 5, 0.3), { shape: [64, 2] }) } },
  ];
}

t('the dual path at α = 1 is the adapted model and at α = 0 the plain model on the hard context, forward and backward, exactly', async () => {
  const m = await sd1();
  const ad = adapters(m);
  const trainable = [`${K}#lora.a`, `${K}#lora.b`, `${Q1}#delta`];
  const adapted = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: ad, trainable });
  const one = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: ad, trainable, dual: { alpha: 1, hardContext: m.hard } });
  assertSame(one.out, adapted.out, 'α = 1 output');
  assertSame(one.dSample, adapted.dSample, 'α = 1 sample gradient');
  assertSame(one.dContext, adapted.dContext, 'α = 1 context gradient');
  for (const n of trainable) assertSame(one.grads.get(n)!, adapted.grads.get(n)!, `α = 1 ${n}`);

  const plain = await m.unet.forwardBackward(m.sample, m.ts, m.hard, m.probe, { trainable: [K] });
  const zero = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: ad, trainable: [K, ...trainable], dual: { alpha: 0, hardContext: m.hard } });
  assertSame(zero.out, plain.out, 'α = 0 output');
  assertSame(zero.dSample, plain.dSample, 'α = 0 sample gradient');
  assert.ok(f32(zero.dContext).every((v) => v === 0), 'α = 0: the (soft) context gets no gradient');
  for (const n of trainable) assert.ok(f32(zero.grads.get(n)!).every((v) => v === 0), `α = 0: ${n} gets no gradient`);
  // W itself is on both paths: at α = 0 its gradient is the plain model's.
  assertSame(zero.grads.get(K)!, plain.grads.get(K)!, 'α = 0 gradient of the adapted weight itself');
  // And the forward alone agrees with forwardBackward's.
  assertSame(await m.unet.forward(m.sample, m.ts, m.ctx, { adapters: ad, dual: { alpha: 0, hardContext: m.hard } }), plain.out, 'α = 0 forward');
  const half = await m.unet.forward(m.sample, m.ts, m.ctx, { adapters: ad, dual: { alpha: 0.5, hardContext: m.hard } });
  assert.ok(f32(half).some((v, i) => Math.abs(v - f32(plain.out)[i]) > 1e-4 && Math.abs(v - f32(adapted.out)[i]) > 1e-4), 'α = 0.5 is neither path');
});

t('at α = 0.4 the LoRA, delta, weight and context gradients match Richardson finite differences', async () => {
  const m = await sd1();
  const dual = { alpha: 0.4, hardContext: m.hard };
  const base = adapters(m);
  const la = base[0].lora!.a;
  const res = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: base, trainable: [K, `${K}#lora.a`, `${Q1}#delta`], dual });
  const p = f32(m.probe);
  const lossWith = async (o: { a?: Tensor; delta?: Tensor; k?: Tensor; ctx?: Tensor }): Promise<number> => {
    const ad = adapters(m, o.a ?? la);
    if (o.delta) ad[1] = { weight: Q1, delta: o.delta };
    const unet = o.k ? m.unet.withWeights(new Map([[K, o.k]])) : m.unet;
    const out = f32(await unet.forward(m.sample, m.ts, o.ctx ?? m.ctx, { adapters: ad, dual }));
    return out.reduce((acc, v, i) => acc + v * p[i], 0);
  };
  const cases: Array<[string, Tensor, Tensor, (x: Tensor) => Parameters<typeof lossWith>[0]]> = [
    ['lora.a', la, res.grads.get(`${K}#lora.a`)!, (x) => ({ a: x })],
    ['delta', base[1].delta!, res.grads.get(`${Q1}#delta`)!, (x) => ({ delta: x })],
    ['the adapted weight W', m.weights.get(K)!, res.grads.get(K)!, (x) => ({ k: x })],
    ['context', m.ctx, res.dContext, (x) => ({ ctx: x })],
  ];
  for (const [what, x, grad, make] of cases) {
    const v = f32(x);
    const dir = randomArray(v.length, 40 + what.length);
    const analytic = f32(grad).reduce((acc, g, i) => acc + g * dir[i], 0);
    const eps = Math.min(0.1, 0.15 / Math.max(Math.abs(analytic), 1e-6));
    const loss = (h: number): Promise<number> => lossWith(make(tensor(Float32Array.from(v, (e, i) => e + h * eps * dir[i]), { shape: x.shape })));
    const central = async (h: number): Promise<number> => ((await loss(h)) - (await loss(-h))) / (2 * h * eps);
    const d1 = await central(1);
    const numeric = (4 * (await central(0.5)) - d1) / 3;
    assert.ok(Math.abs(analytic) > 1e-4, `${what}: a direction with a visible slope (${analytic})`);
    assert.ok(Math.abs(numeric - analytic) <= 2e-2 * Math.abs(analytic) + 1e-4, `${what}: finite difference ${numeric} vs analytic ${analytic}`);
  }
});

t('a per-sample LoRA batch equals each sample run with its own LoRA, and the merged LoRA', async () => {
  const m = await sd1();
  const r = 3;
  const down = tensor(randomArray(2 * r * 32, 7, 0.3), { shape: [2, r, 32] });
  const up = tensor(randomArray(2 * 64 * r, 8, 0.3), { shape: [2, 64, r] });
  const slice = (x: Tensor, n: number): Tensor => {
    const per = x.numel / x.shape[0];
    return tensor(f32(x).slice(n * per, (n + 1) * per), { shape: [1, ...x.shape.slice(1)] });
  };
  const trainable = [V, `${V}#sample.down`, `${V}#sample.up`];
  const batch = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: [{ weight: V, sampleLora: { down, up, scale: 0.6 } }], trainable });
  // Reductions reordered by the batch split: the tiny UNet's depth and width bound the differences.
  const close = (a: Float32Array, b: Float32Array, what: string): void => assertCloseReordered(a, b, TINY_UNET_REDUCTION, what);
  const dW = new Float64Array(64 * 32);
  for (let n = 0; n < 2; n++) {
    const one = await m.unet.forwardBackward(slice(m.sample, n), slice(m.ts, n).reshape([1]), slice(m.ctx, n), slice(m.probe, n), {
      adapters: [{ weight: V, sampleLora: { down: slice(down, n), up: slice(up, n), scale: 0.6 } }], trainable,
    });
    close(f32(slice(batch.out, n)), f32(one.out), `sample ${n} output`);
    close(f32(slice(batch.dSample, n)), f32(one.dSample), `sample ${n} input gradient`);
    close(f32(slice(batch.grads.get(`${V}#sample.down`)!, n)), f32(one.grads.get(`${V}#sample.down`)!), `sample ${n} down gradient`);
    close(f32(slice(batch.grads.get(`${V}#sample.up`)!, n)), f32(one.grads.get(`${V}#sample.up`)!), `sample ${n} up gradient`);
    f32(one.grads.get(V)!).forEach((g, i) => (dW[i] += g));
    // The same LoRA as a shared (merged) adapter on that sample alone.
    const merged = await m.unet.forward(slice(m.sample, n), slice(m.ts, n).reshape([1]), slice(m.ctx, n), {
      adapters: [{ weight: V, lora: { a: slice(down, n).reshape([r, 32]), b: slice(up, n).reshape([64, r]), scale: 0.6 } }],
    });
    close(f32(one.out), f32(merged), `sample ${n}: per-sample LoRA vs merged LoRA`);
  }
  close(f32(batch.grads.get(V)!), Float32Array.from(dW), 'the shared weight\'s gradient is the sum over samples');
  const plain = await m.unet.forward(m.sample, m.ts, m.ctx);
  assert.ok(f32(plain).some((v, i) => Math.abs(v - f32(batch.out)[i]) > 1e-4), 'the per-sample LoRA changes the output');
});

t('bad per-sample LoRA and dual-path options are named', async () => {
  const m = await sd1();
  const down = tensor(new Float32Array(3 * 2 * 32), { shape: [3, 2, 32] });
  const up = tensor(new Float32Array(2 * 64 * 2), { shape: [2, 64, 2] });
  await assertRejects(() => m.unet.forward(m.sample, m.ts, m.ctx, { adapters: [{ weight: V, sampleLora: { down, up } }] }), 'SHAPE_MISMATCH', /sampleLora\.down must be \[2 \(the batch\), rank, 32\]/);
  await assertRejects(() => m.unet.forward(m.sample, m.ts, m.ctx, { dual: { alpha: 1.5, hardContext: m.hard } }), 'INVALID_ARGUMENT', /dual\.alpha must be a number in \[0, 1\]/);
  await assertRejects(() => m.unet.forward(m.sample, m.ts, m.ctx, { dual: { alpha: 0.5, hardContext: m.sample } }), 'SHAPE_MISMATCH', /dual\.hardContext must be like encoderHiddenStates/);
});

t.run();
