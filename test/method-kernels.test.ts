// The method kernels (lib/nn/method.ts): nearest-token search against a
// brute-force top-k, the contrastive nearest-neighbour loss against its
// formula and finite differences, the Cones statistic step against its f32
// arithmetic, neuron masking round trips, and bad inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import * as method from '../lib/nn/method.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const f32 = (t: Tensor): Float32Array => t.dataSync() as Float32Array;
const i32 = (t: Tensor): Int32Array => t.dataSync() as Int32Array;
const mat = (data: Float32Array, rows: number, cols: number): Tensor<'f32'> => tensor(data, { shape: [rows, cols] });
const i64 = (values: number[]): Tensor<'i64'> => tensor(BigInt64Array.from(values, (v) => BigInt(v)), { shape: [values.length] });

const t = suite('method kernels');

// ---- references ------------------------------------------------------------------

function rowNorm(x: ArrayLike<number>, row: number, dim: number): number {
  let s = 0;
  for (let d = 0; d < dim; d++) s += x[row * dim + d] ** 2;
  return Math.sqrt(s);
}

function cosine(a: ArrayLike<number>, ra: number, b: ArrayLike<number>, rb: number, dim: number): number {
  let dot = 0;
  for (let d = 0; d < dim; d++) dot += a[ra * dim + d] * b[rb * dim + d];
  const denom = rowNorm(a, ra, dim) * rowNorm(b, rb, dim);
  return denom > 0 ? dot / denom : 0;
}

/** Brute force: every cosine, sorted descending, ties by lower index. */
function refTopk(q: ArrayLike<number>, v: ArrayLike<number>, B: number, V: number, D: number, k: number): { indices: number[][]; sims: number[][] } {
  const indices: number[][] = [];
  const sims: number[][] = [];
  for (let b = 0; b < B; b++) {
    const all = Array.from({ length: V }, (_, i) => ({ i, s: cosine(q, b, v, i, D) }));
    all.sort((x, y) => y.s - x.s || x.i - y.i);
    indices.push(all.slice(0, k).map((e) => e.i));
    sims.push(all.slice(0, k).map((e) => e.s));
  }
  return { indices, sims };
}

/** The loss of csrc/ops/method.cc in double precision. */
function refContrastive(q: ArrayLike<number>, n: ArrayLike<number>, B: number, K: number, D: number, tau: number): number {
  let total = 0;
  for (let b = 0; b < B; b++) {
    let pos = 0;
    let neg = 0;
    for (let j = 0; j < K; j++) pos += Math.exp(cosine(q, b, n, b * K + j, D) / tau);
    for (let c = 0; c < B; c++) if (c !== b) neg += Math.exp(cosine(q, b, q, c, D) / tau);
    total += -Math.log(pos / (pos + neg));
  }
  return total / B;
}

// ---- token_topk_cosine -------------------------------------------------------------

t('tokenTopkCosine matches a brute-force top-k, with and without precomputed norms', async () => {
  const B = 5, V = 300, D = 24, k = 7;
  const q = randomArray(B * D, 1);
  const v = randomArray(V * D, 2);
  const ref = refTopk(q, v, B, V, D, k);
  const vocab = mat(v, V, D);
  const norms = await method.tokenVocabNorms(vocab);
  assert.equal(norms.shape, [V]);
  assertClose(f32(norms), Array.from({ length: V }, (_, r) => rowNorm(v, r, D)), 1e-6, 1e-6, 'norms');
  for (const vocabNorms of [undefined, norms]) {
    const out = await method.tokenTopkCosine(mat(q, B, D), vocab, { k, vocabNorms });
    assert.equal(out.indices.shape, [B, k]);
    assert.equal(out.similarities.shape, [B, k]);
    assert.equal(Array.from(i32(out.indices)), ref.indices.flat(), `indices (norms ${vocabNorms ? 'given' : 'computed'})`);
    assertClose(f32(out.similarities), ref.sims.flat(), 1e-5, 1e-6, 'similarities');
  }
});

t('tokenTopkCosine: a vocabulary big enough for the threaded path, and bf16 inputs', async () => {
  const B = 3, V = 4099, D = 40, k = 16;
  const q = randomArray(B * D, 3);
  const v = randomArray(V * D, 4);
  const out = await method.tokenTopkCosine(mat(q, B, D), mat(v, V, D), { k });
  const ref = refTopk(q, v, B, V, D, k);
  assert.equal(Array.from(i32(out.indices)), ref.indices.flat(), 'f32 indices');
  // bf16: the reference sees the rounded values the kernel reads.
  const qb = await mat(q, B, D).cast('bf16');
  const vb = await mat(v, V, D).cast('bf16');
  const outB = await method.tokenTopkCosine(qb, vb, { k });
  const refB = refTopk(qb.dataSync() as Float32Array, vb.dataSync() as Float32Array, B, V, D, k);
  assert.equal(Array.from(i32(outB.indices)), refB.indices.flat(), 'bf16 indices');
  assertClose(f32(outB.similarities), refB.sims.flat(), 1e-5, 1e-6, 'bf16 similarities');
});

t('tokenTopkCosine: equal similarities rank by lower index; zero rows have cosine 0; NaN ranks last', async () => {
  // Rows 1, 3 and 4 are the same vector; row 2 is its double (cosine 1 up to rounding is not
  // guaranteed, so it is left out of the tie); rows 0 and 5 are zero.
  const D = 4;
  const a = [1, 2, 3, 4];
  const rows = [[0, 0, 0, 0], a, [-4, 1, 0, 2], a, a, [0, 0, 0, 0], [4, 3, 2, 1]];
  const V = rows.length;
  const out = await method.tokenTopkCosine(mat(Float32Array.from(a), 1, D), mat(Float32Array.from(rows.flat()), V, D), { k: V });
  const idx = Array.from(i32(out.indices));
  const sims = f32(out.similarities);
  assert.equal(idx.slice(0, 3), [1, 3, 4], 'the three equal rows, lowest index first');
  assert.is(sims[0], sims[1]);
  assert.is(sims[1], sims[2]);
  // The zero rows tie at 0: row 0 before row 5.
  const zeroAt = idx.indexOf(0);
  assert.is(idx[zeroAt + 1], 5, `zero rows in order, got ${idx}`);
  assert.is(sims[zeroAt], 0);
  // A zero query: every similarity 0, so the order is the index order.
  const zeros = await method.tokenTopkCosine(mat(new Float32Array(D), 1, D), mat(Float32Array.from(rows.flat()), V, D), { k: V });
  assert.equal(Array.from(i32(zeros.indices)), [0, 1, 2, 3, 4, 5, 6]);
  assert.equal(Array.from(f32(zeros.similarities)), [0, 0, 0, 0, 0, 0, 0]);
  // A row with a NaN has a NaN similarity, ranked last.
  const withNaN = rows.flat();
  withNaN[2 * D + 1] = NaN;
  const nan = await method.tokenTopkCosine(mat(Float32Array.from(a), 1, D), mat(Float32Array.from(withNaN), V, D), { k: V });
  assert.is(i32(nan.indices)[V - 1], 2);
  assert.ok(Number.isNaN(f32(nan.similarities)[V - 1]));
});

t('tokenTopkCosine: k = V returns the whole vocabulary sorted; k = 1 the best row', async () => {
  const B = 2, V = 9, D = 5;
  const q = randomArray(B * D, 5);
  const v = randomArray(V * D, 6);
  const all = await method.tokenTopkCosine(mat(q, B, D), mat(v, V, D), { k: V });
  const ref = refTopk(q, v, B, V, D, V);
  assert.equal(Array.from(i32(all.indices)), ref.indices.flat());
  for (let b = 0; b < B; b++) assert.equal([...ref.indices[b]].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8]);
  const best = await method.tokenTopkCosine(mat(q, B, D), mat(v, V, D), { k: 1 });
  assert.equal(Array.from(i32(best.indices)), [ref.indices[0][0], ref.indices[1][0]]);
});

t('tokenTopkCosine rejects bad inputs naming the problem', async () => {
  const q = mat(randomArray(8, 7), 2, 4);
  const v = mat(randomArray(20, 8), 5, 4);
  await assertRejects(() => method.tokenTopkCosine(q, v, { k: 0 }), 'INVALID_ARGUMENT', /token_topk_cosine: k must be in \[1, 5\]/);
  await assertRejects(() => method.tokenTopkCosine(q, v, { k: 6 }), 'INVALID_ARGUMENT', /k must be in \[1, 5\]/, /got 6/);
  const big = mat(randomArray(300 * 4, 9), 300, 4);
  await assertRejects(() => method.tokenTopkCosine(q, big, { k: 257 }), 'INVALID_ARGUMENT', /at most 256/);
  await assertRejects(() => method.tokenTopkCosine(q, mat(randomArray(15, 8), 5, 3), { k: 2 }), 'SHAPE_MISMATCH', /vocab rows must have the queries' width 4/);
  await assertRejects(() => method.tokenTopkCosine(tensor(randomArray(4, 1), { shape: [4] }), v, { k: 2 }), 'SHAPE_MISMATCH', /queries must be 2-D \[B, D\]/);
  await assertRejects(async () => method.tokenTopkCosine(q, await v.cast('bf16'), { k: 2 }), 'DTYPE_MISMATCH', /vocab is bf16/);
  const badNorms = tensor(new Float32Array(4), { shape: [4] });
  await assertRejects(() => method.tokenTopkCosine(q, v, { k: 2, vocabNorms: badNorms }), 'SHAPE_MISMATCH', /vocabNorms must have shape \[5\]/);
  const i32Norms = tensor(new Int32Array(5), { shape: [5] }) as unknown as Tensor<'f32'>;
  await assertRejects(() => method.tokenTopkCosine(q, v, { k: 2, vocabNorms: i32Norms }), 'DTYPE_MISMATCH', /vocabNorms must be f32/);
  await assertRejects(() => method.tokenTopkCosine(q, v, { k: 1.5 }), 'INVALID_ARGUMENT', /k must be an integer/);
  await assertRejects(() => method.tokenTopkCosine(q, v, {} as method.TokenTopkOptions), 'INVALID_ARGUMENT', /k must be an integer/);
});

// ---- contrastive_nn_loss -------------------------------------------------------------

t('contrastiveNnLoss matches its formula; the gradient matches finite differences', async () => {
  const B = 4, K = 3, D = 6, tau = 0.5;
  const q = randomArray(B * D, 11);
  const n = randomArray(B * K * D, 12);
  const queries = mat(q, B, D);
  const neighbours = tensor(n, { shape: [B, K, D] });
  const loss = await method.contrastiveNnLoss(queries, neighbours, { temperature: tau });
  assert.equal(loss.shape, []);
  assert.is(loss.dtype, 'f32');
  const ref = refContrastive(q, n, B, K, D, tau);
  assertClose(f32(loss), [ref], 1e-5, 1e-6, 'loss');
  const grad = f32(await method.contrastiveNnLossBackward(queries, neighbours, { temperature: tau }));
  const qd = Float64Array.from(q);
  const h = 1e-5;
  const fd = Array.from({ length: B * D }, (_, i) => {
    const save = qd[i];
    qd[i] = save + h;
    const up = refContrastive(qd, n, B, K, D, tau);
    qd[i] = save - h;
    const down = refContrastive(qd, n, B, K, D, tau);
    qd[i] = save;
    return (up - down) / (2 * h);
  });
  assertClose(grad, fd, 1e-3, 1e-5, 'dqueries');
  const scaled = f32(await method.contrastiveNnLossBackward(queries, neighbours, { temperature: tau, gradScale: -2.5 }));
  assertClose(scaled, Array.from(grad, (g) => -2.5 * g), 1e-5, 1e-7, 'gradScale');
});

t('contrastiveNnLoss: a small temperature stays finite; one query has no negatives (loss 0)', async () => {
  const B = 3, K = 2, D = 5;
  const q = randomArray(B * D, 13);
  const n = randomArray(B * K * D, 14);
  const tau = 0.005;
  const loss = f32(await method.contrastiveNnLoss(mat(q, B, D), tensor(n, { shape: [B, K, D] }), { temperature: tau }))[0];
  assert.ok(Number.isFinite(loss), `loss ${loss}`);
  assertClose([loss], [refContrastive(q, n, B, K, D, tau)], 1e-3, 1e-3, 'loss at τ = 0.005');
  const grad = f32(await method.contrastiveNnLossBackward(mat(q, B, D), tensor(n, { shape: [B, K, D] }), { temperature: tau }));
  assert.ok(grad.every(Number.isFinite), 'finite gradient');
  const one = mat(q.slice(0, D), 1, D);
  const oneN = tensor(n.slice(0, K * D), { shape: [1, K, D] });
  assert.equal(Array.from(f32(await method.contrastiveNnLoss(one, oneN, { temperature: 0.1 }))), [0]);
  assert.ok(f32(await method.contrastiveNnLossBackward(one, oneN, { temperature: 0.1 })).every((g) => g === 0));
});

t('contrastiveNnLoss: bf16 inputs agree with f32 on the rounded values', async () => {
  const B = 4, K = 5, D = 40;
  const queries = await mat(randomArray(B * D, 15), B, D).cast('bf16');
  const neighbours = await tensor(randomArray(B * K * D, 16), { shape: [B, K, D] }).cast('bf16');
  const lossB = f32(await method.contrastiveNnLoss(queries, neighbours, { temperature: 0.2 }))[0];
  const q32 = await queries.cast('f32');
  const n32 = await neighbours.cast('f32');
  const loss32 = f32(await method.contrastiveNnLoss(q32, n32, { temperature: 0.2 }))[0];
  assertClose([lossB], [loss32], 1e-6, 1e-6, 'loss');
  const gB = await method.contrastiveNnLossBackward(queries, neighbours, { temperature: 0.2 });
  assert.is(gB.dtype, 'bf16');
  const g32 = f32(await method.contrastiveNnLossBackward(q32, n32, { temperature: 0.2 }));
  assertClose(gB.dataSync() as Float32Array, g32, 1e-2, 1e-4, 'bf16 dqueries (rounded on store)');
});

t('contrastiveNnLoss rejects bad inputs', async () => {
  const q = mat(randomArray(8, 1), 2, 4);
  const n = tensor(randomArray(24, 2), { shape: [2, 3, 4] });
  await assertRejects(() => method.contrastiveNnLoss(q, tensor(randomArray(24, 2), { shape: [3, 2, 4] }), { temperature: 1 }), 'SHAPE_MISMATCH', /neighbours must be \[B, k, D\] = \[2, k, 4\]/);
  await assertRejects(() => method.contrastiveNnLoss(q, tensor(randomArray(24, 2), { shape: [2, 12] }), { temperature: 1 }), 'SHAPE_MISMATCH', /neighbours must be 3-D/);
  await assertRejects(() => method.contrastiveNnLoss(q, n, { temperature: 0 }), 'INVALID_ARGUMENT', /temperature must be a finite number > 0/);
  await assertRejects(() => method.contrastiveNnLoss(q, n, {} as method.ContrastiveNnOptions), 'INVALID_ARGUMENT', /temperature is required/);
  await assertRejects(async () => method.contrastiveNnLossBackward(q, await n.cast('f16'), { temperature: 1 }), 'DTYPE_MISMATCH', /neighbours is f16/);
});

// ---- neuron_stat_step ----------------------------------------------------------------

t('neuronStatStep: stat + θ·g and θ − ρ·θ·θ·g in f32 arithmetic', async () => {
  const n = 70001; // past one thread chunk
  const theta = randomArray(n, 21);
  const grad = randomArray(n, 22, 3);
  const stat = randomArray(n, 23);
  const rho = 0.05;
  const out = await method.neuronStatStep({ theta: tensor(theta), grad: tensor(grad), stat: tensor(stat) }, { rho });
  const fr = Math.fround;
  const r = fr(rho);
  const expStat = Array.from(stat, (s, i) => fr(s + fr(theta[i] * grad[i])));
  const expTheta = Array.from(theta, (th, i) => fr(th - fr(fr(fr(r * th) * th) * grad[i])));
  assert.equal(Array.from(f32(out.stat)), expStat, 'stat (bit exact)');
  assert.equal(Array.from(f32(out.theta)), expTheta, 'theta (bit exact)');
  // The default ρ is the design's 2e-5.
  const dflt = await method.neuronStatStep({ theta: tensor(theta.slice(0, 10)), grad: tensor(grad.slice(0, 10)), stat: tensor(stat.slice(0, 10)) });
  const rd = fr(2e-5);
  assert.equal(Array.from(f32(dflt.theta)), Array.from(theta.slice(0, 10), (th, i) => fr(th - fr(fr(fr(rd * th) * th) * grad[i]))));
});

t('neuronStatStep: bf16 θ and g with an f32 statistic', async () => {
  const shape = [3, 5];
  const theta = await tensor(randomArray(15, 24), { shape }).cast('bf16');
  const grad = await tensor(randomArray(15, 25), { shape }).cast('bf16');
  const stat = tensor(randomArray(15, 26), { shape });
  const out = await method.neuronStatStep({ theta, grad, stat }, { rho: 0.1 });
  assert.is(out.theta.dtype, 'bf16');
  assert.is(out.stat.dtype, 'f32');
  const th = theta.dataSync() as Float32Array;
  const g = grad.dataSync() as Float32Array;
  const s = f32(stat);
  const fr = Math.fround;
  assert.equal(Array.from(f32(out.stat)), Array.from(s, (v, i) => fr(v + fr(th[i] * g[i]))));
  const expected = await tensor(Float32Array.from(th, (v, i) => fr(v - fr(fr(fr(fr(0.1) * v) * v) * g[i]))), { shape }).cast('bf16');
  assert.equal(Array.from(out.theta.dataSync() as Float32Array), Array.from(expected.dataSync() as Float32Array), 'θ rounded once to bf16');
});

t('neuronStatStep rejects bad inputs', async () => {
  const a = tensor(randomArray(6, 1), { shape: [2, 3] });
  await assertRejects(() => method.neuronStatStep({ theta: a, grad: tensor(randomArray(6, 2), { shape: [3, 2] }), stat: a }), 'SHAPE_MISMATCH', /grad must have shape \[2, 3\]/);
  await assertRejects(async () => method.neuronStatStep({ theta: a, grad: a, stat: await a.cast('bf16') as unknown as Tensor<'f32'> }), 'DTYPE_MISMATCH', /stat must be f32/);
  await assertRejects(() => method.neuronStatStep({ theta: a, grad: a } as method.NeuronStatState<'f32'>), 'INVALID_ARGUMENT', /stat is required/);
});

// ---- neuron masks ----------------------------------------------------------------------

t('neuronMaskApply zeroes the indexed weights and saves them; neuronMaskRestore puts them back', async () => {
  const shape = [40, 33];
  const w = randomArray(40 * 33, 31);
  const weight = tensor(w, { shape });
  const idx = [0, 5, 6, 100, 777, 1319];
  const { weight: masked, saved } = await method.neuronMaskApply(weight, i64(idx));
  assert.equal(masked.shape, shape);
  assert.equal(saved.shape, [idx.length]);
  assert.equal(Array.from(f32(saved)), idx.map((i) => w[i]));
  const expected = Float32Array.from(w);
  for (const i of idx) expected[i] = 0;
  assert.equal(Array.from(f32(masked)), Array.from(expected));
  const restored = await method.neuronMaskRestore(masked, i64(idx), saved);
  assert.equal(Array.from(f32(restored)), Array.from(w), 'round trip is exact');
  assert.equal(Array.from(f32(weight)), Array.from(w), 'the input is unchanged');
  // bf16, and no indices at all.
  const wb = await weight.cast('bf16');
  const mb = await method.neuronMaskApply(wb, i64(idx));
  assert.is(mb.saved.dtype, 'bf16');
  const back = await method.neuronMaskRestore(mb.weight, i64(idx), mb.saved);
  assert.equal(Array.from(back.dataSync() as Float32Array), Array.from(wb.dataSync() as Float32Array));
  const none = await method.neuronMaskApply(weight, i64([]));
  assert.equal(none.saved.shape, [0]);
  assert.equal(Array.from(f32(none.weight)), Array.from(w));
});

t('neuron masks reject unsorted, repeated and out-of-range indices naming the first offending position', async () => {
  const weight = tensor(randomArray(20, 32), { shape: [4, 5] });
  await assertRejects(() => method.neuronMaskApply(weight, i64([1, 4, 3, 2])), 'INVALID_ARGUMENT', /neuron_mask_apply: indices must be sorted ascending without repeats, but indices\[2\] = 3 follows indices\[1\] = 4/);
  await assertRejects(() => method.neuronMaskApply(weight, i64([1, 4, 4])), 'INVALID_ARGUMENT', /indices\[2\] = 4 follows indices\[1\] = 4/);
  await assertRejects(() => method.neuronMaskApply(weight, i64([1, 20])), 'INVALID_ARGUMENT', /indices\[1\] = 20 is out of range for a weight of 20 elements/);
  await assertRejects(() => method.neuronMaskApply(weight, i64([-1, 2])), 'INVALID_ARGUMENT', /indices\[0\] = -1 is out of range/);
  const saved = tensor(new Float32Array(2), { shape: [2] });
  await assertRejects(() => method.neuronMaskRestore(weight, i64([3, 1]), saved), 'INVALID_ARGUMENT', /neuron_mask_restore: .*indices\[1\] = 1 follows indices\[0\] = 3/);
  await assertRejects(() => method.neuronMaskRestore(weight, i64([1, 2, 3]), saved), 'SHAPE_MISMATCH', /saved must have shape \[3\]/);
  const asI32 = tensor(new Int32Array([1, 2]), { shape: [2] }) as unknown as Tensor<'i64'>;
  await assertRejects(() => method.neuronMaskApply(weight, asI32), 'DTYPE_MISMATCH', /indices must be i64/);
  await assertRejects(() => method.neuronMaskApply(weight, tensor(BigInt64Array.from([1n, 2n]), { shape: [1, 2] })), 'SHAPE_MISMATCH', /indices must be 1-D/);
});

t.run();
