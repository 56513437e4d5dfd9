// Attention adapters on the UNet: a delta, LoRA A/B and a neuron mask on
// attention projection weights give W_eff = (W + ΔW + s·B·A) ⊙ (1 - mask).
// Checked against the same W_eff built in JavaScript and passed as a plain
// weight (withWeights), gradients against the weight gradient and its
// closed forms and against finite differences, and bad adapters.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { parseUNetConfig } from '../lib/models/configs.js';
import { unetLayout } from '../lib/models/layout-unet.js';
import { UNet2DConditionModel, type UNetAdapter } from '../lib/models/unet.js';
import { runOp } from '../lib/nn/run.js';
import { tinyModelLoader } from './tiny-models.js';
import { assertClose, assertRejects, randomArray, refMatmul } from './helpers.js';

const t = suite('models.unet-adapters');

const loadTiny = tinyModelLoader('unet');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

async function sd1() {
  const m = await loadTiny('sd1-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  const get = (k: string): Tensor => m.case_.get(k)!;
  return { ...m, unet, sample: get('sample'), ts: get('timestep'), ctx: get('encoder_hidden_states'), probe: get('probe') };
}

const K = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';  // [32, 32]
const Q1 = 'down_blocks.0.attentions.1.transformer_blocks.0.attn1.to_q.weight';  // [32, 32]
const OUT = 'up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_out.0.weight';  // [32, 32]
const V = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight';  // [64, 32]

const like = (w: Tensor, seed: number, scale: number): Tensor => tensor(randomArray(w.shape[0] * w.shape[1], seed, scale), { shape: w.shape });
const plus = (a: Tensor, b: Tensor): Tensor => tensor(Float32Array.from(f32(a), (v, i) => v + f32(b)[i]), { shape: a.shape });
// A mask shutting about a third of the entries.
const maskFor = (w: Tensor, seed: number): Tensor => tensor(Uint8Array.from(randomArray(w.shape[0] * w.shape[1], seed), (v) => (v > 0.33 ? 1 : 0)), { shape: w.shape, dtype: 'u8' });

function assertSame(a: Tensor | Float32Array, b: Tensor | Float32Array, what: string): void {
  const x = a instanceof Float32Array ? a : f32(a), y = b instanceof Float32Array ? b : f32(b);
  assert.is(x.length, y.length, `${what}: length`);
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i]) assert.unreachable(`${what}: element ${i} is ${x[i]}, expected ${y[i]}`);
  }
}

// W + s·B·A in double, rounded once to f32.
function loraWeight(w: Tensor, a: Tensor, b: Tensor, s: number): Tensor {
  const ba = refMatmul(f32(b), b.shape, f32(a), a.shape).out;
  return tensor(Float32Array.from(f32(w), (v, i) => v + s * ba[i]), { shape: w.shape });
}

t('a delta equals passing W + ΔW as the weight (two weights at once, exactly)', async () => {
  const m = await sd1();
  const w = (n: string): Tensor => m.weights.get(n)!;
  const dk = like(w(K), 1, 0.05), dq = like(w(Q1), 2, 0.05);
  const out = await m.unet.forward(m.sample, m.ts, m.ctx, { adapters: [{ weight: K, delta: dk }, { weight: Q1, delta: dq }] });
  const ref = await m.unet.withWeights(new Map([[K, plus(w(K), dk)], [Q1, plus(w(Q1), dq)]])).forward(m.sample, m.ts, m.ctx);
  assertSame(out, ref, 'delta forward');
  const plain = await m.unet.forward(m.sample, m.ts, m.ctx);
  assert.ok(f32(plain).some((v, i) => Math.abs(v - f32(out)[i]) > 1e-4), 'the delta changes the output');
});

t('LoRA equals W + s·B·A materialised in JavaScript; a mask equals zeroing the shut entries', async () => {
  const m = await sd1();
  const w = m.weights.get(V)!;  // [64, 32]
  const a = tensor(randomArray(3 * 32, 3, 0.3), { shape: [3, 32] }), b = tensor(randomArray(64 * 3, 4, 0.3), { shape: [64, 3] });
  const lora = await m.unet.forward(m.sample, m.ts, m.ctx, { adapters: [{ weight: V, lora: { a, b, scale: 0.7 } }] });
  const loraRef = await m.unet.withWeights(new Map([[V, loraWeight(w, a, b, 0.7)]])).forward(m.sample, m.ts, m.ctx);
  assertClose(f32(lora), f32(loraRef), 1e-4, 1e-5, 'LoRA forward');  // B·A rounds differently in f32 GEMMs (OpenBLAS or the built-in one) than in JS
  const base = await m.unet.forward(m.sample, m.ts, m.ctx);
  assert.ok(f32(base).some((v, i) => Math.abs(v - f32(lora)[i]) > 1e-4), 'the LoRA changes the output');
  // scale defaults to 1
  const one = await m.unet.forward(m.sample, m.ts, m.ctx, { adapters: [{ weight: V, lora: { a, b } }] });
  const oneRef = await m.unet.withWeights(new Map([[V, loraWeight(w, a, b, 1)]])).forward(m.sample, m.ts, m.ctx);
  assertClose(f32(one), f32(oneRef), 1e-4, 1e-5, 'LoRA forward, scale 1');

  const mw = m.weights.get(OUT)!;
  const mask = maskFor(mw, 5);
  const shut = mask.dataSync() as Uint8Array;
  const masked = await m.unet.forward(m.sample, m.ts, m.ctx, { adapters: [{ weight: OUT, mask }] });
  const zeroed = tensor(Float32Array.from(f32(mw), (v, i) => (shut[i] ? 0 : v)), { shape: mw.shape });
  assertSame(masked, await m.unet.withWeights(new Map([[OUT, zeroed]])).forward(m.sample, m.ts, m.ctx), 'mask forward');
});

t('all three on one weight, given as separate entries, merge into (W + ΔW + s·B·A) ⊙ (1 - mask)', async () => {
  const m = await sd1();
  const w = m.weights.get(K)!;
  const d = like(w, 6, 0.05), mask = maskFor(w, 7);
  const a = tensor(randomArray(2 * 32, 8, 0.3), { shape: [2, 32] }), b = tensor(randomArray(32 * 2, 9, 0.3), { shape: [32, 2] });
  const adapters: UNetAdapter[] = [{ weight: K, delta: d, mask }, { weight: K, lora: { a, b, scale: -0.5 } }];
  const out = await m.unet.forward(m.sample, m.ts, m.ctx, { adapters });
  const ba = refMatmul(f32(b), b.shape, f32(a), a.shape).out;
  const shut = mask.dataSync() as Uint8Array;
  const eff = tensor(Float32Array.from(f32(w), (v, i) => (shut[i] ? 0 : v + f32(d)[i] - 0.5 * ba[i])), { shape: w.shape });
  assertClose(f32(out), f32(await m.unet.withWeights(new Map([[K, eff]])).forward(m.sample, m.ts, m.ctx)), 1e-4, 1e-5, 'merged adapters');  // ΔW and s·B·A rounded separately here
});

t('gradients: delta = weight gradient; masked weight gradient is zero where shut and the plain one elsewhere', async () => {
  const m = await sd1();
  const w = m.weights.get(K)!;
  const d = like(w, 10, 0.05);
  const r = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: [{ weight: K, delta: d }], trainable: [K, `${K}#delta`, V] });
  assert.equal([...r.grads.keys()], [K, V, `${K}#delta`], 'weights in layout order, then adapter parameters');
  const ref = await m.unet.withWeights(new Map([[K, plus(w, d)]])).forwardBackward(m.sample, m.ts, m.ctx, m.probe, { trainable: [K, V] });
  assertSame(r.grads.get(K)!, ref.grads.get(K)!, 'dW with a delta');
  assertSame(r.grads.get(`${K}#delta`)!, ref.grads.get(K)!, 'dΔ = dW');
  assertSame(r.grads.get(V)!, ref.grads.get(V)!, 'an unadapted weight next to it');
  assertSame(r.dSample, ref.dSample, 'dSample');
  // Only the delta trains: W itself gets no gradient output.
  const onlyDelta = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: [{ weight: K, delta: d }], trainable: [`${K}#delta`] });
  assert.equal([...onlyDelta.grads.keys()], [`${K}#delta`]);
  assertSame(onlyDelta.grads.get(`${K}#delta`)!, ref.grads.get(K)!, 'dΔ alone');

  const mask = maskFor(w, 11);
  const shut = mask.dataSync() as Uint8Array;
  const mr = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: [{ weight: K, mask }], trainable: [K] });
  const zeroed = tensor(Float32Array.from(f32(w), (v, i) => (shut[i] ? 0 : v)), { shape: w.shape });
  const plain = await m.unet.withWeights(new Map([[K, zeroed]])).forwardBackward(m.sample, m.ts, m.ctx, m.probe, { trainable: [K] });
  const g = f32(mr.grads.get(K)!), gp = f32(plain.grads.get(K)!);
  assert.ok(shut.some((s) => s === 1) && shut.some((s) => s === 0));
  shut.forEach((s, i) => {
    if (s && g[i] !== 0) assert.unreachable(`masked entry ${i} has gradient ${g[i]}`);
    if (!s && g[i] !== gp[i]) assert.unreachable(`open entry ${i}: ${g[i]} vs ${gp[i]}`);
  });
  assert.ok(gp.some((v, i) => shut[i] === 1 && v !== 0), 'the plain gradient is nonzero where the mask shuts');
});

t('LoRA gradients: the closed form from the weight gradient and Richardson finite differences (with a mask)', async () => {
  const m = await sd1();
  const w = m.weights.get(K)!;
  const s = 0.8, r = 2;
  const a = tensor(randomArray(r * 32, 20, 0.3), { shape: [r, 32] }), b = tensor(randomArray(32 * r, 21, 0.3), { shape: [32, r] });
  const mask = maskFor(w, 22);
  const adapters = (la: Tensor, lb: Tensor): UNetAdapter[] => [{ weight: K, lora: { a: la, b: lb, scale: s }, mask }];
  const res = await m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { adapters: adapters(a, b), trainable: [K, `${K}#lora.a`, `${K}#lora.b`], checkpoint: true });
  // dW' (the masked dW_eff) is W's gradient; dA = s·Bᵀ·dW', dB = s·dW'·Aᵀ.
  const dW = f32(res.grads.get(K)!);
  const dA = refMatmul(f32(b), b.shape, dW, w.shape, true, false).out.map((v) => s * v);
  const dB = refMatmul(dW, w.shape, f32(a), a.shape, false, true).out.map((v) => s * v);
  const ga = f32(res.grads.get(`${K}#lora.a`)!), gb = f32(res.grads.get(`${K}#lora.b`)!);
  const scaleOf = (x: ArrayLike<number>): number => Array.from(x).reduce((acc, v) => Math.max(acc, Math.abs(v)), 0);
  assertClose(ga, dA, 1e-5, 1e-6 * scaleOf(dA), 'dA closed form');
  assertClose(gb, dB, 1e-5, 1e-6 * scaleOf(dB), 'dB closed form');

  const p = f32(m.probe);
  for (const which of ['a', 'b'] as const) {
    const x = which === 'a' ? a : b;
    const v = f32(x);
    const dir = randomArray(v.length, which === 'a' ? 30 : 31);
    const analytic = f32(res.grads.get(`${K}#lora.${which}`)!).reduce((acc, g, i) => acc + g * dir[i], 0);
    const eps = Math.min(0.1, 0.15 / Math.max(Math.abs(analytic), 1e-6));
    const loss = async (h: number): Promise<number> => {
      const moved = tensor(Float32Array.from(v, (e, i) => e + h * eps * dir[i]), { shape: x.shape });
      const out = f32(await m.unet.forward(m.sample, m.ts, m.ctx, { adapters: which === 'a' ? adapters(moved, b) : adapters(a, moved) }));
      return out.reduce((acc, o, i) => acc + o * p[i], 0);
    };
    // Central differences at eps and eps/2, Richardson-extrapolated (as in models-unet-backward).
    const central = async (h: number): Promise<number> => ((await loss(h)) - (await loss(-h))) / (2 * h * eps);
    const d1 = await central(1);
    const numeric = (4 * (await central(0.5)) - d1) / 3;
    assert.ok(Math.abs(analytic) > 1e-4, `lora.${which}: a direction with a visible slope (${analytic})`);
    assert.ok(Math.abs(numeric - analytic) <= 2e-2 * Math.abs(analytic) + 1e-4, `lora.${which}: finite difference ${numeric} vs analytic ${analytic}`);
  }
});

t('withWeights shares the other tensors, checks the replaced ones, leaves the original alone', async () => {
  const m = await sd1();
  const before = await m.unet.forward(m.sample, m.ts, m.ctx);
  const w = m.weights.get(K)!;
  const other = m.unet.withWeights(new Map([[K, like(w, 40, 0.1)]]));
  assert.is(other.weights[m.unet.weightNames.indexOf(V)], m.unet.weights[m.unet.weightNames.indexOf(V)], 'unreplaced tensors are shared');
  assert.ok(f32(await other.forward(m.sample, m.ts, m.ctx)).some((v, i) => Math.abs(v - f32(before)[i]) > 1e-4));
  assertSame(await m.unet.forward(m.sample, m.ts, m.ctx), before, 'the original model is unchanged');
  const fn = /UNet2DConditionModel\.withWeights/;
  await assertRejects(() => m.unet.withWeights(new Map([[K, tensor(new Float32Array(32 * 16), { shape: [32, 16] })]])), 'SHAPE_MISMATCH', fn, /attn2\.to_k\.weight' must have shape \[32, 32\] for this config, got f32\[32, 16\]/);
  await assertRejects(() => m.unet.withWeights(new Map([['no.such.weight', w]])), 'INVALID_ARGUMENT', fn, /'no\.such\.weight' is not a weight of this UNet/);
  await assertRejects(() => m.unet.withWeights(new Map([[K, tensor(new Float32Array(32 * 32), { shape: [32, 32], dtype: 'f16' })]])), 'DTYPE_MISMATCH', /is f16 but conv_in\.weight is f32/);
  await assertRejects(() => m.unet.withWeights(new Map([[K, 'weights' as never]])), 'INVALID_ARGUMENT', /must be a Tensor, got/);
  await assertRejects(() => m.unet.withWeights({} as never), 'INVALID_ARGUMENT', /replacements must be a Map/);
});

t('bad adapters from JavaScript are named (weight, kind, what was expected)', async () => {
  const m = await sd1();
  const w = m.weights.get(K)!;
  const fwd = (adapters: unknown) => m.unet.forward(m.sample, m.ts, m.ctx, { adapters: adapters as UNetAdapter[] });
  const a2 = tensor(randomArray(2 * 32, 50), { shape: [2, 32] }), b2 = tensor(randomArray(32 * 2, 51), { shape: [32, 2] });
  await assertRejects(() => fwd([{ weight: 'no.such.weight', delta: w }]), 'INVALID_ARGUMENT', /adapters\[0\]\.weight 'no\.such\.weight' is not a weight of this UNet/);
  await assertRejects(() => fwd([{ weight: 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_out.0.bias', delta: w }]), 'INVALID_ARGUMENT', /to_out\.0\.bias' is not an attention projection weight/);
  await assertRejects(() => fwd([{ weight: 'conv_in.weight', delta: w }]), 'INVALID_ARGUMENT', /'conv_in\.weight' is not an attention projection weight/);
  await assertRejects(() => fwd([{ weight: K }]), 'INVALID_ARGUMENT', /has no delta, lora, mask or sampleLora/);
  await assertRejects(() => fwd([{ weight: K, delta: tensor(new Float32Array(64 * 32), { shape: [64, 32] }) }]), 'SHAPE_MISMATCH', /delta must have the weight's shape \[32, 32\], got f32\[64, 32\]/);
  await assertRejects(() => fwd([{ weight: K, delta: tensor(new Float32Array(32 * 32), { shape: [32, 32], dtype: 'f16' }) }]), 'DTYPE_MISMATCH', /delta must be f32, got f16/);
  await assertRejects(() => fwd([{ weight: K, delta: [[1]] }]), 'INVALID_ARGUMENT', /delta must be a Tensor, got/);
  await assertRejects(() => fwd([{ weight: K, lora: { a: a2, b: tensor(randomArray(32 * 3, 52), { shape: [32, 3] }) } }]), 'SHAPE_MISMATCH', /lora rank mismatch: a is f32\[2, 32\] on cpu \(rank 2\) but b is f32\[32, 3\] on cpu \(rank 3\)/);
  await assertRejects(() => fwd([{ weight: K, lora: { a: tensor(randomArray(2 * 16, 53), { shape: [2, 16] }), b: b2 } }]), 'SHAPE_MISMATCH', /lora\.a must be \[rank, 32\] with rank >= 1, got f32\[2, 16\]/);
  await assertRejects(() => fwd([{ weight: K, lora: { a: tensor(new Float32Array(0), { shape: [0, 32] }), b: tensor(new Float32Array(0), { shape: [32, 0] }) } }]), 'SHAPE_MISMATCH', /rank >= 1/);
  await assertRejects(() => fwd([{ weight: K, lora: { a: a2, b: b2, scale: Number.NaN } }]), 'INVALID_ARGUMENT', /lora\.scale must be a finite number/);
  await assertRejects(() => fwd([{ weight: K, lora: { a: a2 } }]), 'INVALID_ARGUMENT', /lora\.b must be a Tensor/);
  await assertRejects(() => fwd([{ weight: K, mask: tensor(new Float32Array(32 * 32), { shape: [32, 32] }) }]), 'DTYPE_MISMATCH', /mask must be u8, got f32\[32, 32\]/);
  await assertRejects(() => fwd([{ weight: K, mask: tensor(new Uint8Array(32 * 32).fill(2), { shape: [32, 32], dtype: 'u8' }) }]), 'INVALID_ARGUMENT', /mask entries must be 0 \(open\) or 1 \(shut\)/);
  await assertRejects(() => fwd([{ weight: K, delta: w }, { weight: K, delta: w }]), 'INVALID_ARGUMENT', /adapters\[1\] .* gives a second delta for this weight; merge them/);
  await assertRejects(() => fwd([{ weight: K, delta: w, extra: 1 }]), 'INVALID_ARGUMENT', /unknown option 'extra'/);
  await assertRejects(() => fwd({ weight: K, delta: w }), 'INVALID_ARGUMENT', /adapters must be an array of UNetAdapter/);
  await assertRejects(() => fwd([null]), 'INVALID_ARGUMENT', /adapters\[0\] must be an object/);
  await assertRejects(() => fwd([{ weight: 3, delta: w }]), 'INVALID_ARGUMENT', /adapters\[0\]\.weight must be a weight name, got/);
  await assertRejects(() => fwd([{ weight: K, lora: null }]), 'INVALID_ARGUMENT', /lora must be \{ a, b, scale\? \}, got null/);
  await assertRejects(() => fwd([{ weight: K, mask: tensor(new Uint8Array(32 * 16), { shape: [32, 16], dtype: 'u8' }) }]), 'SHAPE_MISMATCH', /mask must have the weight's shape \[32, 32\], got u8\[32, 16\]/);
  const gone = like(w, 54, 0.1);
  gone.dispose();
  await assertRejects(() => fwd([{ weight: K, delta: gone }]), 'DISPOSED', /delta has been disposed/);

  const fb = (trainable: string[], adapters: UNetAdapter[]) => m.unet.forwardBackward(m.sample, m.ts, m.ctx, m.probe, { trainable, adapters });
  const mask = maskFor(w, 55);
  await assertRejects(() => fb([`${K}#mask`], [{ weight: K, mask }]), 'INVALID_ARGUMENT', /#mask': masks are not trainable/);
  await assertRejects(() => fb([`${K}#delta`], [{ weight: K, mask }]), 'INVALID_ARGUMENT', /#delta' is not a parameter of the given adapters/);
  await assertRejects(() => fb([`${V}#lora.a`], []), 'INVALID_ARGUMENT', /is not a parameter of the given adapters \(none\)/);
});

t('the native op checks the adapter records and inputs itself (weight index, kind, shapes, dtypes)', async () => {
  const m = await sd1();
  const c = parseUNetConfig(m.config);
  const names = Object.keys(unetLayout(c));
  const ws = names.map((k) => m.weights.get(k)!);
  const ts = tensor(new Float32Array([1, 500]));
  const attrs = { blockOutChannels: c.blockOutChannels, layersPerBlock: c.layersPerBlock, crossDown: [1, 0], crossUp: [0, 1], heads: c.heads, transformerLayers: [1, 1] };
  const k = names.indexOf(K);
  const w = ws[k];
  const d = like(w, 60, 0.05);
  const fwd = (adapters: number[], extra: Tensor[]) => runOp('unet_forward', [m.sample, ts, m.ctx, ...ws, ...extra], { ...attrs, adapters });
  // The native delta agrees with the wrapper's.
  const [viaOp] = await fwd([k, 1], [d]);
  assertSame(viaOp, await m.unet.forward(m.sample, ts, m.ctx, { adapters: [{ weight: K, delta: d }] }), 'native and wrapper delta');
  const a2 = tensor(randomArray(2 * 32, 61), { shape: [2, 32] }), b3 = tensor(randomArray(32 * 3, 62), { shape: [32, 3] });
  await assertRejects(() => fwd([ws.length, 1], [d]), 'INVALID_ARGUMENT', /unet_forward: adapters: the record at position 0 names weight \d+; weight indices are integers in \[0, \d+\)/);
  await assertRejects(() => fwd([0, 1], [d]), 'INVALID_ARGUMENT', /adapters: weight 0 \(conv_in\.weight\) is not an attention projection weight/);
  await assertRejects(() => fwd([k, 5], [d]), 'INVALID_ARGUMENT', new RegExp(`adapters: weight ${k} \\(${K.replace(/\./g, '\\.')}\\): adapter kind must be 1 \\(delta\\), 2 \\(LoRA\\), 3 \\(mask\\) or 4 \\(per-sample LoRA\\)`));
  // Kind 4's factors are checked against the batch.
  await assertRejects(() => fwd([k, 4, 1], [a2, b3]), 'SHAPE_MISMATCH', /per-sample lora down must be \[2 \(the batch\), rank, 32\]/);
  // dualAlpha needs its hard context after the adapter inputs.
  await assertRejects(() => runOp('unet_forward', [m.sample, ts, m.ctx, ...ws], { ...attrs, dualAlpha: 0.5 }), 'INVALID_ARGUMENT', /dualAlpha: the hard context .* is missing/);
  await assertRejects(() => runOp('unet_forward', [m.sample, ts, m.ctx, ...ws, m.sample], { ...attrs, dualAlpha: 0.5 }), 'SHAPE_MISMATCH', /context_hard .* must have encoder_hidden_states' shape/);
  await assertRejects(() => fwd([k, 1, k, 1], [d, d]), 'INVALID_ARGUMENT', new RegExp(`weight ${k} .* has two delta adapters`));
  await assertRejects(() => fwd([k, 1], []), 'INVALID_ARGUMENT', /delta: its input \(input \d+\) is missing/);
  await assertRejects(() => fwd([k], [d]), 'INVALID_ARGUMENT', /cut short/);
  await assertRejects(() => fwd([k, 2], [a2, b3]), 'INVALID_ARGUMENT', /LoRA: the record needs a finite scale/);
  await assertRejects(() => fwd([k, 2, 1], [a2, b3]), 'SHAPE_MISMATCH', /LoRA rank mismatch: A is f32\[2, 32\] on cpu \(rank 2\) but B is f32\[32, 3\] on cpu \(rank 3\)/);
  await assertRejects(() => fwd([k, 1], [tensor(new Float32Array(32), { shape: [32] })]), 'SHAPE_MISMATCH', /delta must have the weight's shape \[32, 32\]/);
  await assertRejects(() => fwd([k, 3], [d]), 'DTYPE_MISMATCH', new RegExp(`weight ${k} .* mask must be u8 \\(1 = shut\\), got f32`));
  await assertRejects(() => fwd([k, 2.5], [d]), 'INVALID_ARGUMENT', /adapter kind must be .* got 2\.5$/);
  await assertRejects(() => fwd([k, 1], [d, d]), 'INVALID_ARGUMENT', /expected \d+ inputs for this config and these adapters, got \d+/);
  const tied = [...ws];
  tied[names.indexOf(Q1)] = w;  // same shape, same storage
  await assertRejects(() => runOp('unet_forward', [m.sample, ts, m.ctx, ...tied, d], { ...attrs, adapters: [k, 1] }), 'INVALID_ARGUMENT', /shares its storage with weight \d+/);
  // Trainable indices past the weights address the adapter inputs; masks are refused.
  const mask = maskFor(w, 63);
  const fb = (trainable: number[]) => runOp('unet_forward_backward', [m.sample, ts, m.ctx, m.probe, ...ws, d, mask], { ...attrs, adapters: [k, 1, k, 3], trainable });
  const outs = await fb([k, ws.length]);
  assert.is(outs.length, 5);
  assertSame(outs[3], outs[4], 'dW and dΔ through the op');
  await assertRejects(() => fb([ws.length + 1]), 'INVALID_ARGUMENT', new RegExp(`trainable index ${ws.length + 1} is the mask of weight ${k} .*masks are not trainable`));
  await assertRejects(() => fb([ws.length + 2]), 'INVALID_ARGUMENT', /trainable must list ascending weight indices in \[0, \d+\), got \d+ at position 0 \(indices from \d+ address the adapter inputs\)/);
});

t.run();
