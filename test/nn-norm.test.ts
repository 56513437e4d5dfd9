// group norm and layer norm: PyTorch golden values for outputs, saved
// statistics and every gradient; finite differences; statistics of data with
// large offsets over many blocks against a double-precision reference; and
// bad inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { groupNorm, groupNormBackward, groupNormSilu, layerNorm, layerNormBackward } from '../lib/nn/norm.js';
import { silu } from '../lib/nn/act.js';
import { runOp } from '../lib/nn/run.js';
import { fixtureTensor, loadFixture } from './fixtures.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray, seeded } from './helpers.js';

const fx = loadFixture('norm');
const t = suite('nn.norm');

const GROUP_CASES = 8;
const LAYER_CASES = 8;
const f32 = (data: ArrayLike<number>, shape: number[]): Tensor<'f32'> => tensor(Float32Array.from(data), { shape });

/** Mean and rstd over consecutive slices of `size` elements, in double. */
function refStats(data: Float32Array, size: number, eps: number): { mean: number[]; rstd: number[] } {
  const mean: number[] = [];
  const rstd: number[] = [];
  for (let s = 0; s < data.length; s += size) {
    let sum = 0;
    for (let i = s; i < s + size; i++) sum += data[i];
    const m = sum / size;
    let sq = 0;
    for (let i = s; i < s + size; i++) sq += (data[i] - m) ** 2;
    mean.push(m);
    rstd.push(1 / Math.sqrt(sq / size + eps));
  }
  return { mean, rstd };
}

/**
 * Forward and backward of a norm in double: slices of `size` consecutive
 * elements are normalised, and element i is scaled and shifted by the
 * parameters at param(i).
 */
function refNorm(x: Float32Array, dy: Float32Array, size: number, w: Float32Array, b: Float32Array, param: (i: number) => number) {
  const { mean, rstd } = refStats(x, size, 1e-5);
  const y = new Float64Array(x.length);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(w.length);
  const db = new Float64Array(w.length);
  for (let s = 0; s * size < x.length; s++) {
    let sumG = 0;
    let sumGXhat = 0;
    for (let i = s * size; i < (s + 1) * size; i++) {
      const xhat = (x[i] - mean[s]) * rstd[s];
      const g = dy[i] * w[param(i)];
      y[i] = xhat * w[param(i)] + b[param(i)];
      sumG += g;
      sumGXhat += g * xhat;
      dw[param(i)] += dy[i] * xhat;
      db[param(i)] += dy[i];
    }
    for (let i = s * size; i < (s + 1) * size; i++) {
      const xhat = (x[i] - mean[s]) * rstd[s];
      dx[i] = rstd[s] * (dy[i] * w[param(i)] - sumG / size - xhat * sumGXhat / size);
    }
  }
  return { y, dx, dw, db, mean, rstd };
}

function assertFinite(values: ArrayLike<number>, what: string): void {
  for (let i = 0; i < values.length; i++) assert.ok(Number.isFinite(values[i]), `${what}: element ${i} is ${values[i]}`);
}

t('group norm: outputs, statistics and gradients match PyTorch (8 cases)', async () => {
  for (let i = 0; i < GROUP_CASES; i++) {
    const get = (k: string) => fixtureTensor(fx, `group${i}.${k}`);
    const has = (k: string) => fx.has(`group${i}.${k}`);
    const x = get('x');
    const groups = get('mean').shape[1];
    const weight = has('w') ? get('w') : undefined;
    const bias = has('b') ? get('b') : undefined;
    const out = await groupNorm(x, { groups, weight, bias });
    const what = `group case ${i} [${x.shape.join(', ')}] groups ${groups}`;
    assertClose(out.y.dataSync(), get('y').dataSync(), 1e-5, 1e-5, `${what} y`);
    assert.equal(out.mean.shape, [x.shape[0], groups]);
    assertClose(out.mean.dataSync(), get('mean').dataSync(), 1e-6, 1e-6, `${what} mean`);
    assertClose(out.rstd.dataSync(), get('rstd').dataSync(), 1e-5, 1e-5, `${what} rstd`);
    // Without a weight the gradients of a unit scale and zero shift are asked for explicitly.
    const g = await groupNormBackward(get('dy'), x, out, { groups, weight, weightGrad: true, biasGrad: true });
    assertClose(g.dx.dataSync(), get('dx').dataSync(), 2e-5, 2e-5, `${what} dx`);
    assertClose(g.dweight!.dataSync(), get('dw').dataSync(), 2e-5, 2e-5, `${what} dweight`);
    assertClose(g.dbias!.dataSync(), get('db').dataSync(), 2e-5, 2e-5, `${what} dbias`);
  }
});

t('layer norm: outputs, statistics and gradients match PyTorch (8 cases)', async () => {
  for (let i = 0; i < LAYER_CASES; i++) {
    const get = (k: string) => fixtureTensor(fx, `layer${i}.${k}`);
    const has = (k: string) => fx.has(`layer${i}.${k}`);
    const x = get('x');
    const weight = has('w') ? get('w') : undefined;
    const bias = has('b') ? get('b') : undefined;
    const out = await layerNorm(x, { weight, bias });
    const what = `layer case ${i} [${x.shape.join(', ')}]`;
    assertClose(out.y.dataSync(), get('y').dataSync(), 1e-5, 1e-5, `${what} y`);
    assert.equal(out.mean.shape, [x.numel / x.shape[x.ndim - 1]]);
    assertClose(out.mean.dataSync(), get('mean').dataSync(), 1e-6, 1e-6, `${what} mean`);
    assertClose(out.rstd.dataSync(), get('rstd').dataSync(), 1e-5, 1e-5, `${what} rstd`);
    const g = await layerNormBackward(get('dy'), x, out, { weight, weightGrad: true, biasGrad: true });
    assertClose(g.dx.dataSync(), get('dx').dataSync(), 2e-5, 2e-5, `${what} dx`);
    assertClose(g.dweight!.dataSync(), get('dw').dataSync(), 2e-5, 2e-5, `${what} dweight`);
    assertClose(g.dbias!.dataSync(), get('db').dataSync(), 2e-5, 2e-5, `${what} dbias`);
  }
});

t('groupNormSilu: bit-identical to groupNorm then silu (with and without the norm kept), and its errors', async () => {
  const rnd = seeded(41);
  for (const [shape, groups] of [[[2, 8, 5, 7], 4], [[1, 32, 64, 64], 8], [[3, 6, 11], 3]] as Array<[number[], number]>) {
    const n = shape.reduce((a, b) => a * b);
    const x = tensor(Float32Array.from({ length: n }, () => (rnd() - 0.3) * 4), { shape });
    const weight = tensor(Float32Array.from({ length: shape[1] }, () => 0.5 + rnd()), { shape: [shape[1]] });
    const bias = tensor(Float32Array.from({ length: shape[1] }, () => rnd() - 0.5), { shape: [shape[1]] });
    const ref = await groupNorm(x, { groups, weight, bias });
    const refAct = await silu(ref.y);
    const fused = await groupNormSilu(x, { groups, weight, bias });
    assert.equal(Array.from(fused.act.dataSync()), Array.from(refAct.dataSync()), `act ${shape}`);
    assert.equal(Array.from(fused.y!.dataSync()), Array.from(ref.y.dataSync()), `y ${shape}`);
    assert.equal(Array.from(fused.mean.dataSync()), Array.from(ref.mean.dataSync()));
    assert.equal(Array.from(fused.rstd.dataSync()), Array.from(ref.rstd.dataSync()));
    const lean = await groupNormSilu(x, { groups, weight, bias, keepNorm: false });
    assert.is(lean.y, undefined);
    assert.equal(Array.from(lean.act.dataSync()), Array.from(refAct.dataSync()), `act without y ${shape}`);
    for (const t of [x, weight, bias, ref.y, ref.mean, ref.rstd, refAct, fused.act, fused.y!, fused.mean, fused.rstd, lean.act, lean.mean, lean.rstd]) t.dispose();
  }
  const x = tensor(new Float32Array(2 * 6 * 4), { shape: [2, 6, 4] });
  await assertRejects(() => groupNormSilu(x, { groups: 4 }), 'INVALID_ARGUMENT', /group_norm_silu_forward: x's 6 channels \(dim 1\) are not divisible by groups 4/);
  await assertRejects(() => groupNormSilu(x, { groups: 3, keepNorm: 1 as unknown as boolean }), 'INVALID_ARGUMENT', /keepNorm/);
  x.dispose();
});

t('constant input: variance 0 gives y = bias, finite statistics and gradients', async () => {
  const bias = f32([0.5, -1, 2, 3], [4]);
  const weight = f32([1, 2, 3, 4], [4]);
  const x = tensor(new Float32Array(4 * 9).fill(7.25), { shape: [1, 4, 3, 3] });
  const out = await groupNorm(x, { groups: 2, weight, bias });
  assert.equal(Array.from(out.y.dataSync()), [0.5, -1, 2, 3].flatMap((b) => new Array<number>(9).fill(b)));
  assert.equal(Array.from(out.mean.dataSync()), [7.25, 7.25]);
  assertClose(out.rstd.dataSync(), [1 / Math.sqrt(1e-5), 1 / Math.sqrt(1e-5)], 1e-6, 0);
  const g = await groupNormBackward(tensor(randomArray(36, 3), { shape: [1, 4, 3, 3] }), x, out, { groups: 2, weight });
  assertFinite(g.dx.dataSync(), 'group dx');
  assertFinite(g.dweight!.dataSync(), 'group dweight');

  const row = tensor(new Float32Array(8).fill(-3), { shape: [1, 8] });
  const ln = await layerNorm(row, { bias: f32([1, 2, 3, 4, 5, 6, 7, 8], [8]) });
  assert.equal(Array.from(ln.y.dataSync()), [1, 2, 3, 4, 5, 6, 7, 8]);
  const lg = await layerNormBackward(tensor(randomArray(8, 4), { shape: [1, 8] }), row, ln, { weightGrad: true });
  assertFinite(lg.dx.dataSync(), 'layer dx');
  assertFinite(lg.dweight!.dataSync(), 'layer dweight');
});

t('statistics stay accurate for offsets of 1e4 over many blocks and mixed channel means', async () => {
  // Group slices of 2 channels × 1024 positions: channel means 1e4 and 1e4 + 3, spread 1.
  const next = seeded(11);
  const shape = [2, 4, 32, 32];
  const data = Float32Array.from({ length: 2 * 4 * 1024 }, (_, i) => 1e4 + 3 * (Math.floor(i / 1024) % 2) + (next() * 2 - 1));
  const out = await groupNorm(tensor(data, { shape }), { groups: 2 });
  const ref = refStats(data, 2048, 1e-5);
  assertClose(out.mean.dataSync(), ref.mean, 1e-7, 0, 'group mean');
  assertClose(out.rstd.dataSync(), ref.rstd, 2e-6, 0, 'group rstd');
  // y = (x − mean)·rstd, computed in double for the very same f32 inputs.
  const y = out.y.dataSync();
  const refY = Array.from(data, (v, i) => (v - ref.mean[Math.floor(i / 2048)]) * ref.rstd[Math.floor(i / 2048)]);
  assertClose(y, refY, 1e-5, 2e-5, 'group y');

  // Layer norm rows of 3000 (several blocks and a tail), mean −1e4, spread 0.01.
  const rows = Float32Array.from({ length: 2 * 3000 }, () => -1e4 + 0.01 * (next() * 2 - 1));
  const ln = await layerNorm(tensor(rows, { shape: [2, 3000] }));
  const lref = refStats(rows, 3000, 1e-5);
  assertClose(ln.mean.dataSync(), lref.mean, 1e-7, 0, 'layer mean');
  assertClose(ln.rstd.dataSync(), lref.rstd, 2e-6, 0, 'layer rstd');
  const refRow = Array.from(rows, (v, i) => (v - lref.mean[Math.floor(i / 3000)]) * lref.rstd[Math.floor(i / 3000)]);
  assertClose(ln.y.dataSync(), refRow, 1e-4, 1e-4, 'layer y');
});

t('inputs split across threads and row parts match a double-precision reference', async () => {
  // Group norm: 32 groups of 2 and of 10 channels, several slices per task.
  for (const shape of [[2, 64, 16, 16], [1, 320, 8, 8]]) {
    const n = shape.reduce((a, c) => a * c, 1);
    const [c, inner] = [shape[1], shape[2] * shape[3]];
    const x = randomArray(n, 21, 3);
    const dy = randomArray(n, 22);
    const w = randomArray(c, 23);
    const b = randomArray(c, 24);
    const ref = refNorm(x, dy, (c / 32) * inner, w, b, (i) => Math.floor(i / inner) % c);
    const weight = tensor(w, { shape: [c] });
    const out = await groupNorm(tensor(x, { shape }), { groups: 32, weight, bias: tensor(b, { shape: [c] }) });
    assertClose(out.y.dataSync(), ref.y, 1e-5, 1e-5, `group [${shape.join(', ')}] y`);
    assertClose(out.rstd.dataSync(), ref.rstd, 1e-6, 0, `group [${shape.join(', ')}] rstd`);
    const g = await groupNormBackward(tensor(dy, { shape }), tensor(x, { shape }), out, { groups: 32, weight });
    assertClose(g.dx.dataSync(), ref.dx, 1e-5, 1e-5, `group [${shape.join(', ')}] dx`);
    assertClose(g.dweight!.dataSync(), ref.dw, 1e-5, 1e-5, `group [${shape.join(', ')}] dweight`);
    assertClose(g.dbias!.dataSync(), ref.db, 1e-5, 1e-5, `group [${shape.join(', ')}] dbias`);
  }
  // Layer norm: 300 rows (9 parts for the parameter gradients) of a width off the lane grid.
  const [rows, d] = [300, 200];
  const x = randomArray(rows * d, 31, 3);
  const dy = randomArray(rows * d, 32);
  const w = randomArray(d, 33);
  const b = randomArray(d, 34);
  const ref = refNorm(x, dy, d, w, b, (i) => i % d);
  const weight = tensor(w, { shape: [d] });
  const out = await layerNorm(tensor(x, { shape: [rows, d] }), { weight, bias: tensor(b, { shape: [d] }) });
  assertClose(out.y.dataSync(), ref.y, 1e-5, 1e-5, 'layer y');
  assertClose(out.mean.dataSync(), ref.mean, 1e-6, 1e-6, 'layer mean');
  const g = await layerNormBackward(tensor(dy, { shape: [rows, d] }), tensor(x, { shape: [rows, d] }), out, { weight });
  assertClose(g.dx.dataSync(), ref.dx, 1e-5, 1e-5, 'layer dx');
  assertClose(g.dweight!.dataSync(), ref.dw, 1e-5, 1e-5, 'layer dweight');
  assertClose(g.dbias!.dataSync(), ref.db, 1e-5, 1e-5, 'layer dbias');
});

t('group norm: finite differences agree for x, weight and bias', async () => {
  const shape = [2, 6, 3, 2];
  const x0 = randomArray(72, 5, 2);
  const x = tensor(x0, { shape });
  const weight = tensor(randomArray(6, 6), { shape: [6] });
  const bias = tensor(randomArray(6, 7), { shape: [6] });
  const saved = await groupNorm(x, { groups: 3, weight, bias });
  const back = (dy: Tensor<'f32'>) => groupNormBackward(dy, x, saved, { groups: 3, weight });
  await gradcheck('dx', x0, shape, async (xt) => (await groupNorm(xt, { groups: 3, weight, bias })).y, async (dy) => (await back(dy)).dx);
  await gradcheck('dweight', weight.dataSync(), [6], async (wt) => (await groupNorm(x, { groups: 3, weight: wt, bias })).y, async (dy) => (await back(dy)).dweight!);
  await gradcheck('dbias', bias.dataSync(), [6], async (bt) => (await groupNorm(x, { groups: 3, weight, bias: bt })).y, async (dy) => (await back(dy)).dbias!);
});

t('layer norm: finite differences agree for x, weight and bias', async () => {
  const shape = [3, 4, 10];
  const x0 = randomArray(120, 8, 2);
  const x = tensor(x0, { shape });
  const weight = tensor(randomArray(10, 9), { shape: [10] });
  const bias = tensor(randomArray(10, 10), { shape: [10] });
  const saved = await layerNorm(x, { weight, bias });
  const back = (dy: Tensor<'f32'>) => layerNormBackward(dy, x, saved, { weight });
  await gradcheck('dx', x0, shape, async (xt) => (await layerNorm(xt, { weight, bias })).y, async (dy) => (await back(dy)).dx);
  await gradcheck('dweight', weight.dataSync(), [10], async (wt) => (await layerNorm(x, { weight: wt, bias })).y, async (dy) => (await back(dy)).dweight!);
  await gradcheck('dbias', bias.dataSync(), [10], async (bt) => (await layerNorm(x, { weight, bias: bt })).y, async (dy) => (await back(dy)).dbias!);
});

t('parameter gradients only when asked for; by default only with a weight', async () => {
  const x = tensor(randomArray(24, 1), { shape: [2, 4, 3] });
  const dy = tensor(randomArray(24, 2), { shape: [2, 4, 3] });
  const weight = tensor(randomArray(4, 3), { shape: [4] });
  const plain = await groupNorm(x, { groups: 2 });
  let g = await groupNormBackward(dy, x, plain, { groups: 2 });
  assert.equal([g.dweight, g.dbias], [undefined, undefined]);
  const scaled = await groupNorm(x, { groups: 2, weight });
  g = await groupNormBackward(dy, x, scaled, { groups: 2, weight });
  assert.equal([g.dweight!.shape, g.dbias!.shape], [[4], [4]]);
  g = await groupNormBackward(dy, x, scaled, { groups: 2, weight, weightGrad: false });
  assert.is(g.dweight, undefined);
  // dbias is Σ dy over samples and positions whichever other outputs are asked for.
  const dyData = dy.dataSync();
  const expected = [0, 1, 2, 3].map((c) => [0, 1].reduce((s, n) => s + [0, 1, 2].reduce((a, p) => a + dyData[n * 12 + c * 3 + p], 0), 0));
  assertClose(g.dbias!.dataSync(), expected, 1e-6, 1e-6, 'dbias');

  const lx = tensor(randomArray(12, 4), { shape: [3, 4] });
  const ldy = tensor(randomArray(12, 5), { shape: [3, 4] });
  const ln = await layerNorm(lx);
  let lg = await layerNormBackward(ldy, lx, ln);
  assert.equal([lg.dweight, lg.dbias], [undefined, undefined]);
  assert.equal(lg.dx.shape, [3, 4]);
  lg = await layerNormBackward(ldy, lx, ln, { biasGrad: true });
  assert.is(lg.dweight, undefined);
  const ldyData = ldy.dataSync();
  assertClose(lg.dbias!.dataSync(), [0, 1, 2, 3].map((j) => ldyData[j] + ldyData[4 + j] + ldyData[8 + j]), 1e-6, 1e-6, 'layer dbias');
});

t('empty tensors: no crash, statistics of an empty slice are mean 0 and rstd 1/sqrt(eps)', async () => {
  const gx = tensor(new Float32Array(0), { shape: [2, 4, 0] });
  const g = await groupNorm(gx, { groups: 2, eps: 0.25 });
  assert.equal(Array.from(g.mean.dataSync()), [0, 0, 0, 0]);
  assert.equal(Array.from(g.rstd.dataSync()), [2, 2, 2, 2]);
  const gg = await groupNormBackward(tensor(new Float32Array(0), { shape: [2, 4, 0] }), gx, g, { groups: 2, weightGrad: true });
  assert.equal(Array.from(gg.dweight!.dataSync()), [0, 0, 0, 0]);
  const lx = tensor(new Float32Array(0), { shape: [3, 0] });
  const l = await layerNorm(lx, { eps: 4 });
  assert.equal(Array.from(l.rstd.dataSync()), [0.5, 0.5, 0.5]);
  const none = await layerNorm(tensor(new Float32Array(0), { shape: [0, 5] }));
  assert.equal(none.mean.shape, [0]);
  const ng = await layerNormBackward(tensor(new Float32Array(0), { shape: [0, 5] }), tensor(new Float32Array(0), { shape: [0, 5] }), none, { weightGrad: true });
  assert.equal(Array.from(ng.dweight!.dataSync()), [0, 0, 0, 0, 0]);
});

t('group norm: bad inputs and attributes name the problem', async () => {
  const x = tensor(new Float32Array(36), { shape: [2, 6, 3] });
  await assertRejects(() => groupNorm(x, { groups: 4 }), 'INVALID_ARGUMENT', /group_norm_forward: x's 6 channels \(dim 1\) are not divisible by groups 4/, /f32\[2, 6, 3\] on cpu/);
  await assertRejects(() => groupNorm(x, { groups: 0 }), 'INVALID_ARGUMENT', /groupNorm: groups must be a positive integer, got number 0/);
  await assertRejects(() => runOp('group_norm_forward', [x], { groups: -2 }), 'INVALID_ARGUMENT', /group_norm_forward: groups must be a positive integer, got -2/);
  await assertRejects(() => runOp('group_norm_forward', [x]), 'INVALID_ARGUMENT', /group_norm_forward: attribute 'groups' \(an integer\) is required/);
  await assertRejects(() => runOp('group_norm_forward', [x], { groups: 2, eps: -1 }), 'INVALID_ARGUMENT', /group_norm_forward: eps must be >= 0/);
  await assertRejects(() => groupNorm(x, { groups: 2, eps: -1 }), 'INVALID_ARGUMENT', /groupNorm: eps must be >= 0/);
  await assertRejects(() => groupNorm(tensor(new Float32Array(6), { shape: [6] }), { groups: 2 }), 'SHAPE_MISMATCH', /group_norm_forward: x must be at least 2-D \[N, C, \*spatial\], got f32\[6\]/);
  await assertRejects(() => groupNorm(x, { groups: 2, weight: f32([1, 2, 3], [3]) }), 'SHAPE_MISMATCH', /group_norm_forward: weight must have shape \[6\], got f32\[3\]/);
  const bf = tensor(new Float32Array(6), { shape: [6], dtype: 'bf16' });
  await assertRejects(() => runOp('group_norm_forward', [x, null, bf], { groups: 2 }), 'DTYPE_MISMATCH', /group_norm_forward: bias is bf16\[6\] on cpu but x is f32\[2, 6, 3\]/);
  await assertRejects(() => groupNorm(x, { groups: 2, weight: [1, 2] as unknown as Tensor<'f32'> }), 'INVALID_ARGUMENT', /groupNorm: weight must be a Tensor, got an array/);
  await assertRejects(() => groupNorm(x, { groups: 2, gropus: 3 } as never), 'INVALID_ARGUMENT', /groupNorm: unknown option 'gropus'/);
  const h = tensor(new Float32Array(36), { shape: [2, 6, 3], dtype: 'f16' });
  await assertRejects(() => groupNorm(h, { groups: 2 }), 'UNSUPPORTED', /group_norm_forward on cpu supports f32 only, got f16/);
  await assertRejects(() => groupNorm(tensor(new Int32Array(36), { shape: [2, 6, 3] }) as never, { groups: 2 }), 'DTYPE_MISMATCH', /group_norm_forward: i32\[2, 6, 3\] on cpu has dtype i32/);

  const saved = await groupNorm(x, { groups: 2 });
  const dy = tensor(new Float32Array(36), { shape: [2, 6, 3] });
  await assertRejects(() => groupNormBackward(tensor(new Float32Array(36), { shape: [2, 3, 6] }), x, saved, { groups: 2 }), 'SHAPE_MISMATCH', /group_norm_backward: dy must have shape \[2, 6, 3\], got f32\[2, 3, 6\]/);
  await assertRejects(() => groupNormBackward(dy, x, saved, { groups: 3 }), 'SHAPE_MISMATCH', /group_norm_backward: mean must have shape \[2, 3\], got f32\[2, 2\]/);
  await assertRejects(() => groupNormBackward(dy, x, { mean: saved.mean, rstd: h as never }, { groups: 2 }), 'DTYPE_MISMATCH', /group_norm_backward: rstd must be f32 \(as the forward saves it\), got f16\[2, 6, 3\]/);
  await assertRejects(() => groupNormBackward(dy, x, { mean: saved.mean } as never, { groups: 2 }), 'INVALID_ARGUMENT', /groupNormBackward: saved must be the forward's \{ mean, rstd \} tensors/);
  await assertRejects(() => runOp('group_norm_backward', [dy, x, saved.mean], { groups: 2 }), 'INVALID_ARGUMENT', /group_norm_backward: input 3 \(rstd\) is required/);
  await assertRejects(() => groupNormBackward(dy, x, saved, { groups: 4 }), 'INVALID_ARGUMENT', /group_norm_backward: x's 6 channels \(dim 1\) are not divisible by groups 4/);
  await assertRejects(() => groupNormBackward(dy, x, saved, { groups: 2, weight: f32([1], [1]) }), 'SHAPE_MISMATCH', /group_norm_backward: weight must have shape \[6\], got f32\[1\]/);
});

t('layer norm: bad inputs and attributes name the problem', async () => {
  const x = tensor(new Float32Array(12), { shape: [3, 4] });
  await assertRejects(() => layerNorm(x, { weight: f32([1, 2, 3], [3]) }), 'SHAPE_MISMATCH', /layer_norm_forward: weight must have shape \[4\], got f32\[3\]/);
  await assertRejects(() => layerNorm(x, { bias: f32([1, 2, 3, 4], [1, 4]) }), 'SHAPE_MISMATCH', /layer_norm_forward: bias must have shape \[4\], got f32\[1, 4\]/);
  await assertRejects(() => runOp('layer_norm_forward', [tensor(new Float32Array(1), { shape: [] })]), 'SHAPE_MISMATCH', /layer_norm_forward: x must have at least 1 dimension \[\.\.\., D\], got f32\[\]/);
  await assertRejects(() => layerNorm(x, { eps: Number.NaN }), 'INVALID_ARGUMENT', /layerNorm: eps must be a finite number/);
  await assertRejects(() => layerNorm(tensor(new Float32Array(12), { shape: [3, 4], dtype: 'f16' })), 'UNSUPPORTED', /layer_norm_forward on cpu supports f32 only, got f16/);
  const saved = await layerNorm(x);
  await assertRejects(() => layerNormBackward(tensor(new Float32Array(12), { shape: [4, 3] }), x, saved), 'SHAPE_MISMATCH', /layer_norm_backward: dy must have shape \[3, 4\], got f32\[4, 3\]/);
  await assertRejects(() => layerNormBackward(x, tensor(new Float32Array(12), { shape: [2, 6] }), saved), 'SHAPE_MISMATCH', /layer_norm_backward: dy must have shape \[2, 6\], got f32\[3, 4\]/);
  const x62 = tensor(new Float32Array(12), { shape: [6, 2] });
  await assertRejects(() => layerNormBackward(x62, x62, saved), 'SHAPE_MISMATCH', /layer_norm_backward: mean must have shape \[6\], got f32\[3\]/);
  const b16 = tensor(new Float32Array(12), { shape: [3, 4], dtype: 'bf16' });
  await assertRejects(() => layerNormBackward(b16, x, saved), 'DTYPE_MISMATCH', /layer_norm_backward: dy is bf16\[3, 4\] on cpu but x is f32\[3, 4\] on cpu/);
  await assertRejects(() => layerNormBackward(x, x, saved, { weightGrad: 1 as never }), 'INVALID_ARGUMENT', /layerNormBackward: weightGrad must be a boolean, got number 1/);
  await assertRejects(() => runOp('layer_norm_backward', [x, x, saved.mean, saved.rstd], { biasGrad: 2 }), 'INVALID_ARGUMENT', /layer_norm_backward: biasGrad must be a boolean/);
});

t.run();
