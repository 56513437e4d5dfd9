// The two UNet backward options Custom Diffusion needs: the masked loss
// (checked against forwardBackward with dy formed by hand from the mask) and
// the start-of-text detachment (checked against its closed form: detaching
// removes exactly dK₀·c₀ᵀ from each to_k gradient and dV₀·c₀ᵀ from each
// to_v gradient, where the removed rows are what the plain run sends back to
// context row 0, and context row 0 then gets no gradient at all).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { tinyModelLoader } from './tiny-models.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const t = suite('cd-train.native');
const loadTiny = tinyModelLoader('unet');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

async function sd1() {
  const m = await loadTiny('sd1-tiny');
  const unet = UNet2DConditionModel.fromWeights(m.config, m.weights);
  return { unet, weights: m.weights };
}

t('lossBackward with a mask equals forwardBackward with dy = 2·mask·(out − target)/sum(mask broadcast)', async () => {
  const { unet } = await sd1();
  const N = 2, C = 4, H = 8, W = 8;
  const sample = tensor(randomArray(N * C * H * W, 1), { shape: [N, C, H, W] });
  const ctx = tensor(randomArray(N * 5 * 32, 2), { shape: [N, 5, 32] });
  const target = tensor(randomArray(N * C * H * W, 3), { shape: [N, C, H, W] });
  for (const channels of [1, C]) {
    const m = new Float32Array(N * channels * H * W);
    // A box in sample 0, weights in (0, 1] in sample 1, zeros elsewhere.
    for (let n = 0; n < N; n++) for (let c = 0; c < channels; c++) for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const i = ((n * channels + c) * H + y) * W + x;
      m[i] = n === 0 ? (y >= 2 && y < 6 && x >= 1 && x < 5 ? 1 : 0) : ((x + y + c) % 3) / 2;
    }
    const mask = tensor(m, { shape: [N, channels, H, W] });
    const r = await unet.lossBackward(sample, [10, 700], ctx, target, { trainable: 'kv', mask });
    const out = f32(r.out), tg = f32(target);
    let num = 0, den = 0;
    const dy = new Float32Array(out.length);
    for (let i = 0; i < out.length; i++) {
      const n = Math.floor(i / (C * H * W)), c = Math.floor(i / (H * W)) % C, p = i % (H * W);
      const mv = m[(n * channels + (channels === 1 ? 0 : c)) * H * W + p];
      num += (out[i] - tg[i]) ** 2 * mv;
      den += mv;
    }
    for (let i = 0; i < out.length; i++) {
      const n = Math.floor(i / (C * H * W)), c = Math.floor(i / (H * W)) % C, p = i % (H * W);
      dy[i] = (2 * m[(n * channels + (channels === 1 ? 0 : c)) * H * W + p] * (out[i] - tg[i])) / den;
    }
    assertClose(f32(r.loss), [num / den], 1e-5, 1e-7, `loss, mask channels ${channels}`);
    const ref = await unet.forwardBackward(sample, [10, 700], ctx, tensor(dy, { shape: [N, C, H, W] }), { trainable: 'kv' });
    assert.ok(ref.grads.size > 0);
    for (const [name, g] of ref.grads) assertClose(f32(r.grads.get(name)!), f32(g), 1e-4, 1e-7, `${name}, mask channels ${channels}`);
    assertClose(f32(r.dContext), f32(ref.dContext), 1e-4, 1e-7, 'dContext');
    // A mask of ones is the plain mean.
    const plain = await unet.lossBackward(sample, [10, 700], ctx, target, { trainable: 'kv' });
    const ones = await unet.lossBackward(sample, [10, 700], ctx, target, { trainable: 'kv', mask: tensor(new Float32Array(N * channels * H * W).fill(1), { shape: [N, channels, H, W] }) });
    assertClose(f32(ones.loss), f32(plain.loss), 1e-6, 0);
  }
});

t('lossBackward: bad masks are refused with the expected shape', async () => {
  const { unet } = await sd1();
  const sample = tensor(randomArray(4 * 64, 1), { shape: [1, 4, 8, 8] });
  const ctx = tensor(randomArray(5 * 32, 2), { shape: [1, 5, 32] });
  const target = tensor(randomArray(4 * 64, 3), { shape: [1, 4, 8, 8] });
  await assertRejects(() => unet.lossBackward(sample, 5, ctx, target, { mask: tensor(new Float32Array(64), { shape: [1, 2, 8, 4] }) }), 'SHAPE_MISMATCH', /mask must be \[1, 1 or 4, 8, 8\]/);
  await assertRejects(() => unet.lossBackward(sample, 5, ctx, target, { mask: tensor(new Float32Array(64), { shape: [64] }) }), 'SHAPE_MISMATCH', /mask must be/);
  await assertRejects(() => unet.lossBackward(sample, 5, ctx, target, { mask: [1, 2] as never }), 'INVALID_ARGUMENT', /mask must be a Tensor/);
  await assertRejects(() => unet.lossBackward(sample, 5, ctx, target, { mask: tensor(new Int32Array(64), { shape: [1, 1, 8, 8] }) }), 'DTYPE_MISMATCH', /mask/);
  await assertRejects(() => unet.lossBackward(sample, 5, ctx, target, { detachStartToken: 'yes' as never }), 'INVALID_ARGUMENT', /detachStartToken must be a boolean/);
  await assertRejects(() => unet.forwardBackward(sample, 5, ctx, target, { mask: target } as never), 'INVALID_ARGUMENT', /mask/);
});

t('detachStartToken: to_k/to_v gradients lose exactly the position-0 term, which the plain run sends to context row 0', async () => {
  const { unet, weights } = await sd1();
  const T = 6, D = 32;
  const sample = tensor(randomArray(4 * 64, 11), { shape: [1, 4, 8, 8] });
  const ctxData = randomArray(T * D, 12);
  const ctx = tensor(ctxData, { shape: [1, T, D] });
  const target = tensor(randomArray(4 * 64, 13), { shape: [1, 4, 8, 8] });
  const plain = await unet.lossBackward(sample, 400, ctx, target, { trainable: 'kv' });
  const det = await unet.lossBackward(sample, 400, ctx, target, { trainable: 'kv', detachStartToken: true });
  assertClose(f32(det.loss), f32(plain.loss), 0, 0, 'the forward is unchanged');
  // Context row 0 only feeds K/V: detached, it gets nothing; rows 1.. are untouched.
  const dcP = f32(plain.dContext), dcD = f32(det.dContext);
  assert.ok(dcD.subarray(0, D).every((v) => v === 0), 'row 0 gets no gradient');
  assert.ok(dcP.subarray(0, D).some((v) => v !== 0), 'the plain run does send row 0 a gradient');
  assertClose(dcD.subarray(D), dcP.subarray(D), 1e-5, 1e-8, 'rows 1..');
  // Each difference is a·c₀ᵀ (rank one along c₀), and Σ Wᵀa over all K/V = the plain run's d context row 0.
  const c0 = ctxData.subarray(0, D);
  const c0n = c0.reduce((s, v) => s + v * v, 0);
  const fromDiffs = new Float64Array(D);
  let checked = 0;
  for (const [name, gP] of plain.grads) {
    const p = f32(gP), d = f32(det.grads.get(name)!);
    const rows = p.length / D;
    const w = f32(weights.get(name)!);
    let diffNorm = 0;
    for (let r = 0; r < rows; r++) {
      const diff = Array.from({ length: D }, (_, j) => p[r * D + j] - d[r * D + j]);
      const a = diff.reduce((s, v, j) => s + v * c0[j], 0) / c0n;
      diff.forEach((v, j) => assertClose([v], [a * c0[j]], 1e-3, 1e-7, `${name} row ${r} is along c0`));
      diffNorm += a * a;
      for (let j = 0; j < D; j++) fromDiffs[j] += w[r * D + j] * a;
    }
    assert.ok(diffNorm > 0, `${name}: detaching changes the gradient`);
    checked++;
  }
  assert.is(checked, [...weights.keys()].filter((n) => /attn2\.to_[kv]\.weight$/.test(n)).length, 'every cross-attention to_k and to_v');
  assertClose(Array.from(fromDiffs), dcP.subarray(0, D), 1e-3, 1e-7, 'Σ Wᵀ·a = plain d context row 0');
  // With c₀ = 0 there is nothing to detach: the gradients are the plain ones.
  const zeroed = ctxData.slice();
  zeroed.fill(0, 0, D);
  const z = tensor(zeroed, { shape: [1, T, D] });
  const zp = await unet.lossBackward(sample, 400, z, target, { trainable: 'kv' });
  const zd = await unet.lossBackward(sample, 400, z, target, { trainable: 'kv', detachStartToken: true });
  for (const [name, g] of zp.grads) assertClose(f32(zd.grads.get(name)!), f32(g), 1e-6, 1e-9, name);
});

t('detachStartToken also holds in forwardBackward and under checkpointing', async () => {
  const { unet } = await sd1();
  const sample = tensor(randomArray(4 * 64, 21), { shape: [1, 4, 8, 8] });
  const ctx = tensor(randomArray(4 * 32, 22), { shape: [1, 4, 32] });
  const dy = tensor(randomArray(4 * 64, 23), { shape: [1, 4, 8, 8] });
  const a = await unet.forwardBackward(sample, 50, ctx, dy, { trainable: 'kv', detachStartToken: true });
  const b = await unet.forwardBackward(sample, 50, ctx, dy, { trainable: 'kv', detachStartToken: true, checkpoint: true });
  assert.ok(f32(a.dContext).subarray(0, 32).every((v) => v === 0));
  for (const [name, g] of a.grads) assertClose(f32(b.grads.get(name)!), f32(g), 1e-6, 1e-9, name);
});

t.run();
