// linearLowRank (projection + low-rank modulation, LoRA unmerged): the forward
// against nn.linear with the merged weight W + s·up·down computed here in
// JavaScript; every gradient against finite differences; per-sample weights
// against a loop of shared ones; bad shapes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { nn, tensor, type Tensor } from '../lib/index.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const t = suite('nn.linearLowRank');

// W + s·up·down for W [out, in], up [out, r], down [r, in], in double.
function merged(w: Float32Array, up: Float32Array, down: Float32Array, out: number, inn: number, r: number, s: number): Float32Array {
  const m = new Float32Array(out * inn);
  for (let o = 0; o < out; o++)
    for (let i = 0; i < inn; i++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += up[o * r + k] * down[k * inn + i];
      m[o * inn + i] = w[o * inn + i] + s * acc;
    }
  return m;
}

const [OUT, IN, R] = [6, 5, 3];
const wData = randomArray(OUT * IN, 1);
const downData = randomArray(R * IN, 2);
const upData = randomArray(OUT * R, 3);
const w = tensor(wData, { shape: [OUT, IN] });
const bias = tensor(randomArray(OUT, 4), { shape: [OUT] });

t('forward equals linear with the merged weight; u = x·downᵀ', async () => {
  const x = tensor(randomArray(2 * 4 * IN, 5), { shape: [2, 4, IN] });
  const s = 0.75;
  const { y, u } = await nn.linearLowRank(x, w, { down: tensor(downData, { shape: [R, IN] }), up: tensor(upData, { shape: [OUT, R] }), scale: s }, bias);
  assert.equal(y.shape, [2, 4, OUT]);
  assert.equal(u.shape, [2, 4, R]);
  const ref = await nn.linear(x, tensor(merged(wData, upData, downData, OUT, IN, R, s), { shape: [OUT, IN] }), bias);
  assertClose(y.dataSync(), ref.dataSync(), 1e-5, 1e-5, 'y');
  const uRef = await nn.linear(x, tensor(downData, { shape: [R, IN] }));
  assertClose(u.dataSync(), uRef.dataSync(), 1e-6, 1e-6, 'u');
});

t('finite differences agree for x, down and up (shared), and W and b when asked for', async () => {
  const xs = [3, IN];
  const x0 = randomArray(3 * IN, 6);
  const x = tensor(x0, { shape: xs });
  const s = 1.5;
  const lr = (down: Tensor<'f32'>, up: Tensor<'f32'>) => ({ down, up, scale: s });
  const down = tensor(downData, { shape: [R, IN] }), up = tensor(upData, { shape: [OUT, R] });
  const grads = async (dy: Tensor<'f32'>) => {
    const { u } = await nn.linearLowRank(x, w, lr(down, up), bias);
    return nn.linearLowRankBackward(dy, x, w, lr(down, up), u, { weightGrad: true, biasGrad: true });
  };
  await gradcheck('dx', x0, xs, async (xt) => (await nn.linearLowRank(xt, w, lr(down, up), bias)).y, async (dy) => (await grads(dy)).dx);
  await gradcheck('ddown', downData, [R, IN], async (d) => (await nn.linearLowRank(x, w, lr(d, up), bias)).y, async (dy) => (await grads(dy)).ddown);
  await gradcheck('dup', upData, [OUT, R], async (p) => (await nn.linearLowRank(x, w, lr(down, p), bias)).y, async (dy) => (await grads(dy)).dup);
  await gradcheck('dweight', wData, [OUT, IN], async (wt) => (await nn.linearLowRank(x, wt, lr(down, up), bias)).y, async (dy) => (await grads(dy)).dweight!);
  await gradcheck('dbias', bias.dataSync() as Float32Array, [OUT], async (b) => (await nn.linearLowRank(x, w, lr(down, up), b)).y, async (dy) => (await grads(dy)).dbias!);
  const plain = await grads(tensor(randomArray(3 * OUT, 7), { shape: [3, OUT] }));
  assert.ok(plain.dweight && plain.dbias);
  const lean = await nn.linearLowRankBackward(tensor(randomArray(3 * OUT, 7), { shape: [3, OUT] }), x, w, lr(down, up), (await nn.linearLowRank(x, w, lr(down, up))).u);
  assert.is(lean.dweight, undefined, 'W is frozen by default');
  assert.is(lean.dbias, undefined);
});

t('per-sample down and up: each sample as its own shared-weight run, gradients by finite differences', async () => {
  const N = 3, T = 2, s = 0.5;
  const x0 = randomArray(N * T * IN, 8);
  const x = tensor(x0, { shape: [N, T, IN] });
  const downs = randomArray(N * R * IN, 9), ups = randomArray(N * OUT * R, 10);
  const dyData = randomArray(N * T * OUT, 11);
  const per = { down: tensor(downs, { shape: [N, R, IN] }), up: tensor(ups, { shape: [N, OUT, R] }), scale: s };
  const { y, u } = await nn.linearLowRank(x, w, per);
  const g = await nn.linearLowRankBackward(tensor(dyData, { shape: [N, T, OUT] }), x, w, per, u);
  assert.equal(g.ddown.shape, [N, R, IN]);
  assert.equal(g.dup.shape, [N, OUT, R]);
  for (let n = 0; n < N; n++) {
    const xn = tensor(x0.slice(n * T * IN, (n + 1) * T * IN), { shape: [T, IN] });
    const one = { down: tensor(downs.slice(n * R * IN, (n + 1) * R * IN), { shape: [R, IN] }), up: tensor(ups.slice(n * OUT * R, (n + 1) * OUT * R), { shape: [OUT, R] }), scale: s };
    const r = await nn.linearLowRank(xn, w, one);
    assertClose(y.dataSync().slice(n * T * OUT, (n + 1) * T * OUT), r.y.dataSync(), 1e-6, 1e-6, `sample ${n} y`);
    const gr = await nn.linearLowRankBackward(tensor(dyData.slice(n * T * OUT, (n + 1) * T * OUT), { shape: [T, OUT] }), xn, w, one, r.u);
    assertClose(g.dx.dataSync().slice(n * T * IN, (n + 1) * T * IN), gr.dx.dataSync(), 1e-6, 1e-6, `sample ${n} dx`);
    assertClose(g.ddown.dataSync().slice(n * R * IN, (n + 1) * R * IN), gr.ddown.dataSync(), 1e-6, 1e-6, `sample ${n} ddown`);
    assertClose(g.dup.dataSync().slice(n * OUT * R, (n + 1) * OUT * R), gr.dup.dataSync(), 1e-6, 1e-6, `sample ${n} dup`);
  }
  // Shared up with per-sample down: the up gradient sums over every sample.
  const mixed = { down: per.down, up: tensor(upData, { shape: [OUT, R] }), scale: s };
  await gradcheck('dup (shared, with per-sample down)', upData, [OUT, R], async (p) => (await nn.linearLowRank(x, w, { ...mixed, up: p })).y,
    async (dy) => (await nn.linearLowRankBackward(dy, x, w, mixed, (await nn.linearLowRank(x, w, mixed)).u)).dup);
  await gradcheck('ddown (per sample)', downs, [N, R, IN], async (d) => (await nn.linearLowRank(x, w, { ...mixed, down: d })).y,
    async (dy) => (await nn.linearLowRankBackward(dy, x, w, mixed, (await nn.linearLowRank(x, w, mixed)).u)).ddown);
});

t('bad shapes and options name the problem', async () => {
  const x = tensor(new Float32Array(2 * IN), { shape: [2, IN] });
  const down = tensor(downData, { shape: [R, IN] }), up = tensor(upData, { shape: [OUT, R] });
  await assertRejects(() => nn.linearLowRank(x, w, { down: tensor(new Float32Array(R * 4), { shape: [R, 4] }), up }), 'SHAPE_MISMATCH', /down must end in \[rank, in_features\] = \[3, 5\], got f32\[3, 4\]/);
  await assertRejects(() => nn.linearLowRank(x, w, { down, up: tensor(new Float32Array(OUT * 2), { shape: [OUT, 2] }) }), 'SHAPE_MISMATCH', /up must end in \[out_features, rank\] = \[6, 3\] \(rank 3/);
  await assertRejects(() => nn.linearLowRank(x, w, { down: tensor(new Float32Array(3 * R * IN), { shape: [3, R, IN] }), up }), 'SHAPE_MISMATCH', /per-sample low-rank weights need x \[samples = 3, \.\.\., in_features\], got f32\[2, 5\]/);
  await assertRejects(() => nn.linearLowRank(x, w, { down, up, scale: NaN }), 'INVALID_ARGUMENT', /lowRank.scale must be a finite number/);
  await assertRejects(() => nn.linearLowRank(x, w, { down } as never), 'INVALID_ARGUMENT', /needs both down and up/);
  const { u } = await nn.linearLowRank(x, w, { down, up });
  await assertRejects(() => nn.linearLowRankBackward(tensor(new Float32Array(2 * OUT), { shape: [2, OUT] }), x, w, { down, up }, tensor(new Float32Array(4), { shape: [2, 2] })), 'SHAPE_MISMATCH', /u must have shape \[2, 3\]/);
  assert.equal(u.shape, [2, R]);
});

t.run();
