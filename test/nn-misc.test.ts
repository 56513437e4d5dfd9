// The misc ops (embedding, timestep embedding, concat/split, masked MSE,
// AdamW, gradient clipping): PyTorch golden values, finite differences,
// sizes that take the multithreaded paths, and bad inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { nn } from '../lib/index.js';
import * as misc from '../lib/nn/index.js';
import { fixtureTensor, loadFixture } from './fixtures.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray, seeded } from './helpers.js';

const fx = loadFixture('misc');
const get = (k: string): Tensor<'f32'> => fixtureTensor(fx, k);
const f32 = (t: Tensor): Float32Array => t.dataSync() as Float32Array;
const idsOf = (t: Tensor<'f32'>, dtype: 'i32' | 'i64'): Tensor<'i32' | 'i64'> =>
  dtype === 'i32'
    ? tensor(Int32Array.from(f32(t)), { shape: [...t.shape] })
    : tensor(BigInt64Array.from(f32(t), (v) => BigInt(v)), { shape: [...t.shape] });

const t = suite('nn.misc');

// ---- embedding ---------------------------------------------------------------

t('embedding forward and backward match PyTorch for i32 and i64 ids', async () => {
  const table = get('embedding.table');
  const dy = get('embedding.dy');
  for (const dtype of ['i32', 'i64'] as const) {
    const ids = idsOf(get('embedding.ids'), dtype);
    const y = await misc.embedding(ids, table);
    assert.equal(y.shape, [2, 4, 5]);
    assertClose(f32(y), f32(get('embedding.y')), 0, 0, `${dtype} y (a gather is exact)`);
    const dtable = await misc.embeddingBackward(dy, ids, { vocab: 7 });
    assert.equal(dtable.shape, [7, 5]);
    assertClose(f32(dtable), f32(get('embedding.dtable')), 1e-6, 1e-6, `${dtype} dtable`);
  }
});

t('embedding gradient: repeated ids accumulate, masked rows stay exactly zero', async () => {
  const ids = idsOf(get('embedding.ids'), 'i64');
  const dy = f32(get('embedding.dy'));
  const rowMask = tensor(Uint8Array.from(f32(get('embedding.row_mask'))), { shape: [7] });
  const masked = f32(await misc.embeddingBackward(get('embedding.dy'), ids, { vocab: 7, rowMask }));
  assertClose(masked, f32(get('embedding.dtable_masked')), 1e-6, 1e-6, 'masked dtable');
  // Row 3 appears at positions 0, 3 and 5: its gradient is the sum of those dy rows.
  for (let c = 0; c < 5; c++) {
    const expected = dy[0 * 5 + c] + dy[3 * 5 + c] + dy[5 * 5 + c];
    assert.ok(Math.abs(masked[3 * 5 + c] - expected) < 1e-6, `row 3 col ${c}: ${masked[3 * 5 + c]} vs ${expected}`);
  }
  // Rows 0, 1 and 5 have ids but are outside the mask; 2 and 4 have none.
  for (const r of [0, 1, 2, 4, 5]) {
    for (let c = 0; c < 5; c++) assert.is(Object.is(masked[r * 5 + c], 0), true, `row ${r} col ${c} is ${masked[r * 5 + c]}`);
  }
  assert.ok(masked.slice(30, 35).some((v) => v !== 0), 'row 6 (in the mask, used once) gets its gradient');
});

t('embedding: scalar ids, finite differences for the table', async () => {
  const table = tensor(randomArray(12, 3), { shape: [4, 3] });
  const y = await misc.embedding(tensor(new Int32Array([2]), { shape: [] }), table);
  assert.equal(y.shape, [3]);
  assert.equal(Array.from(f32(y)), Array.from(f32(table).slice(6, 9)));
  const ids = tensor(new Int32Array([1, 3, 3, 0, 1, 1]), { shape: [3, 2] });
  await gradcheck('dtable', f32(table), [4, 3], (tb) => misc.embedding(ids, tb), (dy) => misc.embeddingBackward(dy, ids, { vocab: 4 }));
});

t('embedding at scale: a CLIP-sized table, many repeats of one id, matches a reference', async () => {
  const [V, D, n] = [3000, 96, 700];
  const next = seeded(5);
  // Half the positions are the padding id 7, the rest spread over the table.
  const idv = Int32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 7 : Math.floor(next() * V)));
  const ids = tensor(idv, { shape: [n] });
  const table = tensor(randomArray(V * D, 6), { shape: [V, D] });
  const y = f32(await misc.embedding(ids, table));
  const tv = f32(table);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < D; c++) if (y[i * D + c] !== tv[idv[i] * D + c]) assert.unreachable(`y[${i}, ${c}]`);
  }
  const dyv = randomArray(n * D, 7);
  const maskv = Uint8Array.from({ length: V }, (_, r) => (r % 3 === 1 || r === 7 ? 1 : 0));
  const ref = new Float64Array(V * D);
  for (let i = 0; i < n; i++) {
    if (!maskv[idv[i]]) continue;
    for (let c = 0; c < D; c++) ref[idv[i] * D + c] += dyv[i * D + c];
  }
  const dtable = f32(await misc.embeddingBackward(tensor(dyv, { shape: [n, D] }), ids, { vocab: V, rowMask: tensor(maskv, { shape: [V] }) }));
  assertClose(dtable, ref, 1e-6, 1e-6, 'dtable');
});

t('embedding: out-of-range ids reject naming the first bad id and the vocab', async () => {
  const table = tensor(new Float32Array(12), { shape: [4, 3] });
  await assertRejects(() => misc.embedding(tensor(new Int32Array([0, 3, 4, -1])), table), 'INVALID_ARGUMENT',
    /embedding_forward/, /ids\[2\] = 4 is out of range for a table of 4 rows/, /0 to 3/);
  await assertRejects(() => misc.embedding(tensor(new BigInt64Array([-1n, 9n])), table), 'INVALID_ARGUMENT', /ids\[0\] = -1/);
  await assertRejects(() => misc.embedding(tensor(new BigInt64Array([1n << 40n])), table), 'INVALID_ARGUMENT', /ids\[0\] = 1099511627776/);
  const dy = tensor(new Float32Array(6), { shape: [2, 3] });
  await assertRejects(() => misc.embeddingBackward(dy, tensor(new Int32Array([1, 5])), { vocab: 4 }), 'INVALID_ARGUMENT',
    /embedding_backward: ids\[1\] = 5 is out of range for a table of 4 rows/);
});

t('embedding: bad shapes, dtypes and options name the problem', async () => {
  const table = tensor(new Float32Array(12), { shape: [4, 3] });
  const ids = tensor(new Int32Array([0, 1]));
  await assertRejects(() => misc.embedding(tensor([0, 1]) as never, table), 'DTYPE_MISMATCH', /embedding_forward: ids must be i32 or i64, got f32\[2\] on cpu/);
  await assertRejects(() => misc.embedding(ids, tensor(new Float32Array(12), { shape: [12] })), 'SHAPE_MISMATCH', /table must be 2-D \[vocab, dim\], got f32\[12\]/);
  await assertRejects(() => misc.embedding(ids, tensor(new Int32Array(12), { shape: [4, 3] }) as never), 'DTYPE_MISMATCH', /embedding_forward: .*i32\[4, 3\]/);
  const h = tensor(new Float32Array(12), { shape: [4, 3], dtype: 'f16' });
  await assertRejects(() => misc.embedding(ids, h), 'UNSUPPORTED', /embedding_forward on cpu supports f32 only/);
  const dy = tensor(new Float32Array(6), { shape: [2, 3] });
  await assertRejects(() => misc.embeddingBackward(tensor(new Float32Array(6), { shape: [3, 2] }), ids, { vocab: 4 }), 'SHAPE_MISMATCH',
    /embedding_backward: dy must have shape ids' shape \+ \[dim\] = \[2, dim\], got f32\[3, 2\]/);
  await assertRejects(() => misc.embeddingBackward(dy, ids, { vocab: 4, rowMask: tensor(new Uint8Array(3)) }), 'SHAPE_MISMATCH', /rowMask must have shape \[4\], got u8\[3\]/);
  await assertRejects(() => misc.embeddingBackward(dy, ids, { vocab: 4, rowMask: tensor([1, 0, 1, 1]) as never }), 'DTYPE_MISMATCH', /rowMask must be u8 .*got f32\[4\]/);
  await assertRejects(() => misc.embeddingBackward(dy, ids, { vocab: 2.5 }), 'INVALID_ARGUMENT', /embeddingBackward: vocab must be an integer/);
  await assertRejects(() => misc.embeddingBackward(dy, ids, { vocab: 4, rowMask: [1] as never }), 'INVALID_ARGUMENT', /rowMask must be a Tensor/);
  await assertRejects(() => nn.runOp('embedding_backward', [dy, ids]), 'INVALID_ARGUMENT', /attribute 'vocab' \(an integer\) is required/);
  await assertRejects(() => nn.runOp('embedding_backward', [dy, ids], { vocab: -1 }), 'INVALID_ARGUMENT', /vocab must be >= 0/);
});

// ---- timestep embedding --------------------------------------------------------

const TIMESTEP_CASES = [
  { dim: 320, flipSinToCos: true, freqShift: 0, maxPeriod: 10000, scale: 1 },
  { dim: 7, flipSinToCos: false, freqShift: 1, maxPeriod: 10000, scale: 1 },
  { dim: 8, flipSinToCos: true, freqShift: 1, maxPeriod: 100, scale: 2.5 },
];

t("timestep embedding matches diffusers' get_timestep_embedding", async () => {
  const ts = get('timestep.t');
  for (const [i, options] of TIMESTEP_CASES.entries()) {
    const y = await misc.timestepEmbedding(ts, options);
    assert.equal(y.shape, [5, options.dim]);
    // Arguments reach 999: f32 rounding of sin/cos is the only difference from float64.
    assertClose(f32(y), f32(get(`timestep.case${i}`)), 1e-6, 1e-6, `case ${i}`);
  }
  // Defaults are the SD UNet's (flip true, shift 0, period 10000, scale 1).
  assertClose(f32(await misc.timestepEmbedding(ts, { dim: 320 })), f32(get('timestep.case0')), 1e-6, 1e-6, 'defaults');
  const odd = f32(await misc.timestepEmbedding(ts, TIMESTEP_CASES[1]));
  for (let r = 0; r < 5; r++) assert.is(odd[r * 7 + 6], 0, 'odd dim pads a zero column');
});

t('timestep embedding: bad inputs and attributes', async () => {
  await assertRejects(() => misc.timestepEmbedding(tensor([[1, 2]]), { dim: 4 }), 'SHAPE_MISMATCH', /timesteps must be 1-D \[N\], got f32\[1, 2\]/);
  await assertRejects(() => misc.timestepEmbedding(tensor([1]), { dim: 0 }), 'INVALID_ARGUMENT', /dim must be >= 1/);
  await assertRejects(() => misc.timestepEmbedding(tensor([1]), { dim: 2, freqShift: 1 }), 'INVALID_ARGUMENT', /freqShift 1.* equals dim \/ 2 = 1/);
  await assertRejects(() => misc.timestepEmbedding(tensor([1]), { dim: 4, maxPeriod: 0 }), 'INVALID_ARGUMENT', /maxPeriod must be > 0/);
  await assertRejects(() => misc.timestepEmbedding(tensor([1]), { dim: 4, flip: true } as never), 'INVALID_ARGUMENT', /unknown option 'flip'/);
  await assertRejects(() => misc.timestepEmbedding(tensor(new Int32Array([1])) as never, { dim: 4 }), 'DTYPE_MISMATCH', /i32\[1\]/);
});

// ---- concat / split --------------------------------------------------------------

const CONCAT_CASES: [number, number][] = [[3, 1], [2, 0], [2, -1]]; // pieces, dim (as gen_misc.py)

t('concat and split (its backward) match torch.cat and torch.split', async () => {
  for (const [i, [pieces, dim]] of CONCAT_CASES.entries()) {
    const xs = Array.from({ length: pieces }, (_, j) => get(`concat${i}.x${j}`));
    const y = await misc.concat(xs, { dim });
    assert.equal(y.shape, get(`concat${i}.y`).shape, `case ${i} shape`);
    assertClose(f32(y), f32(get(`concat${i}.y`)), 0, 0, `case ${i} y`);
    const d = dim < 0 ? dim + xs[0].ndim : dim;
    const grads = await misc.split(get(`concat${i}.dy`), xs.map((x) => x.shape[d]), { dim });
    assert.is(grads.length, pieces);
    for (let j = 0; j < pieces; j++) {
      assert.equal(grads[j].shape, xs[j].shape, `case ${i} dx${j} shape`);
      assertClose(f32(grads[j]), f32(get(`concat${i}.dx${j}`)), 0, 0, `case ${i} dx${j}`);
    }
  }
});

t('concat: finite differences through split for a middle piece', async () => {
  const [a, c] = [tensor(randomArray(8, 1), { shape: [2, 1, 4] }), tensor(randomArray(16, 2), { shape: [2, 2, 4] })];
  await gradcheck('dx', randomArray(24, 3), [2, 3, 4], (x) => misc.concat([a, x, c], { dim: 1 }),
    async (dy) => (await misc.split(dy, [1, 3, 2], { dim: 1 }))[1]);
});

t('concat/split at UNet skip size (multithreaded), any dtype, default dim 0', async () => {
  const a = tensor(randomArray(2 * 64 * 16 * 16, 1), { shape: [2, 64, 16, 16] });
  const b = tensor(randomArray(2 * 32 * 16 * 16, 2), { shape: [2, 32, 16, 16] });
  const y = f32(await misc.concat([a, b], { dim: 1 }));
  const [av, bv] = [f32(a), f32(b)];
  const plane = 16 * 16;
  for (let n = 0; n < 2; n++) {
    for (let c = 0; c < 96; c++) {
      for (let p = 0; p < plane; p++) {
        const want = c < 64 ? av[(n * 64 + c) * plane + p] : bv[(n * 32 + c - 64) * plane + p];
        if (y[(n * 96 + c) * plane + p] !== want) assert.unreachable(`y[${n}, ${c}, ${p}]`);
      }
    }
  }
  const [a2, empty, b2] = await misc.split(tensor(y, { shape: [2, 96, 16, 16] }), [64, 0, 32], { dim: 1 });
  assert.equal(Array.from(f32(a2)), Array.from(av));
  assert.equal(Array.from(f32(b2)), Array.from(bv));
  assert.equal(empty.shape, [2, 0, 16, 16]);
  const ids = await misc.concat([tensor(new BigInt64Array([1n, 2n])), tensor(new BigInt64Array([3n]))]);
  assert.equal(ids.dtype, 'i64');
  assert.equal(Array.from(ids.dataSync() as BigInt64Array), [1n, 2n, 3n]);
  const halves = await misc.split(tensor(new Uint16Array([1, 2, 3, 4]), { shape: [2, 2], dtype: 'bf16' }), [1, 1], { dim: -1 });
  assert.equal(halves.map((h) => h.dtype), ['bf16', 'bf16']);
});

t('concat/split: bad inputs name the tensor, shape and dim', async () => {
  const a = tensor(new Float32Array(6), { shape: [2, 3] });
  await assertRejects(() => misc.concat([a, tensor(new Float32Array(8), { shape: [4, 2] })], { dim: 1 }), 'SHAPE_MISMATCH',
    /concat_forward: tensors\[1\] is f32\[4, 2\] on cpu but tensors\[0\] is f32\[2, 3\] on cpu; shapes must match except along dim 1/);
  await assertRejects(() => misc.concat([a, tensor(new Float32Array(6), { shape: [2, 3, 1] })]), 'SHAPE_MISMATCH', /tensors\[1\] is f32\[2, 3, 1\]/);
  await assertRejects(() => misc.concat([a, tensor(new Int32Array(6), { shape: [2, 3] }) as never]), 'DTYPE_MISMATCH', /tensors\[1\] is i32\[2, 3\]/);
  await assertRejects(() => misc.concat([a], { dim: 2 }), 'INVALID_ARGUMENT', /dim 2 is out of range for 2-D tensors \(expected -2 to 1\)/);
  await assertRejects(() => misc.concat([]), 'INVALID_ARGUMENT', /at least one/);
  await assertRejects(() => misc.concat([tensor(new Float32Array(1), { shape: [] })]), 'SHAPE_MISMATCH', /0-D/);
  await assertRejects(() => misc.split(a, [2, 2], { dim: 1 }), 'SHAPE_MISMATCH', /split_forward: sizes \[2, 2\] add up to more than 3 but x \(f32\[2, 3\] on cpu\) has 3 along dim 1/);
  await assertRejects(() => misc.split(a, [1, 1], { dim: -1 }), 'SHAPE_MISMATCH', /sizes \[1, 1\] add up to 2 but x/);
  await assertRejects(() => misc.split(a, [2 ** 53 - 1, 2 ** 53 - 1, 5]), 'SHAPE_MISMATCH', /add up to more than 2/);
  await assertRejects(() => misc.split(a, [-1, 4], { dim: 1 }), 'INVALID_ARGUMENT', /sizes\[0\] must be a non-negative integer/);
  await assertRejects(() => nn.runOp('split_forward', [a], { dim: 1 }), 'INVALID_ARGUMENT', /attribute 'sizes' \(a list of integers\) is required/);
});

// ---- MSE loss ----------------------------------------------------------------------

t('mse loss and its gradient match PyTorch, with and without broadcast masks', async () => {
  for (let i = 0; i < 5; i++) {
    const [pred, target] = [get(`mse${i}.pred`), get(`mse${i}.target`)];
    const mask = i === 0 ? undefined : get(`mse${i}.mask`);
    const loss = await misc.mseLoss(pred, target, { mask });
    assert.equal(loss.shape, []);
    assertClose(f32(loss), f32(get(`mse${i}.loss`)), 1e-6, 1e-7, `case ${i} loss`);
    const dpred = await misc.mseLossBackward(pred, target, { mask, gradScale: 0.5 });
    assertClose(f32(dpred), f32(get(`mse${i}.dpred_half`)), 1e-5, 1e-7, `case ${i} dpred`);
  }
});

t('mse: finite differences, and a large masked loss against a double reference', async () => {
  const shape = [2, 3, 4, 5];
  const target = tensor(randomArray(120, 2), { shape });
  const mask = tensor(Float32Array.from(randomArray(40, 3), (v) => Math.max(v, 0)), { shape: [2, 1, 4, 5] });
  await gradcheck('dpred', randomArray(120, 1), shape, (p) => misc.mseLoss(p, target, { mask }),
    async (dy) => misc.mseLossBackward(tensor(randomArray(120, 1), { shape }), target, { mask, gradScale: f32(dy)[0] }));
  // [3, 4, 96, 96] with a [3, 1, 96, 96] mask: several blocks and threads.
  const [N, C, HW] = [3, 4, 96 * 96];
  const p = randomArray(N * C * HW, 4);
  const q = randomArray(N * C * HW, 5);
  const m = Float32Array.from(randomArray(N * HW, 6), (v) => (v > 0 ? v : 0));
  let num = 0;
  let den = 0;
  for (let n = 0; n < N; n++) {
    for (let c = 0; c < C; c++) {
      for (let j = 0; j < HW; j++) {
        const d = p[(n * C + c) * HW + j] - q[(n * C + c) * HW + j];
        num += d * d * m[n * HW + j];
        den += m[n * HW + j];
      }
    }
  }
  const big = [N, C, 96, 96];
  const mt = tensor(m, { shape: [N, 1, 96, 96] });
  const loss = f32(await misc.mseLoss(tensor(p, { shape: big }), tensor(q, { shape: big }), { mask: mt }))[0];
  assert.ok(Math.abs(loss - num / den) <= 1e-6 * Math.abs(num / den), `masked loss ${loss} vs ${num / den}`);
  let sq = 0;
  for (let i = 0; i < p.length; i++) sq += (p[i] - q[i]) ** 2;
  const plain = f32(await misc.mseLoss(tensor(p, { shape: big }), tensor(q, { shape: big })))[0];
  assert.ok(Math.abs(plain - sq / p.length) <= 1e-6 * (sq / p.length), `loss ${plain} vs ${sq / p.length}`);
  const dp = f32(await misc.mseLossBackward(tensor(p, { shape: big }), tensor(q, { shape: big }), { mask: mt }));
  const ref = Float64Array.from(dp, (_, i) => (2 * (p[i] - q[i]) * m[Math.floor(i / (C * HW)) * HW + (i % HW)]) / den);
  assertClose(dp, ref, 1e-5, 1e-9, 'large masked dpred');
});

t('mse: an all-zero mask gives NaN as in PyTorch; bad masks name the shapes', async () => {
  const p = tensor(randomArray(6, 1), { shape: [2, 3] });
  const q = tensor(randomArray(6, 2), { shape: [2, 3] });
  const zero = tensor(new Float32Array(2), { shape: [2, 1] });
  assert.ok(Number.isNaN(f32(await misc.mseLoss(p, q, { mask: zero }))[0]));
  await assertRejects(() => misc.mseLoss(p, q, { mask: tensor(new Float32Array(2), { shape: [1, 2] }) }), 'SHAPE_MISMATCH',
    /mse_loss_forward: mask f32\[1, 2\] on cpu does not broadcast to pred's shape \[2, 3\]/);
  await assertRejects(() => misc.mseLoss(p, q, { mask: tensor(new Float32Array(6), { shape: [1, 2, 3] }) }), 'SHAPE_MISMATCH', /does not broadcast/);
  await assertRejects(() => misc.mseLoss(p, tensor(new Float32Array(3), { shape: [3] })), 'SHAPE_MISMATCH', /target must have shape \[2, 3\], got f32\[3\]/);
  await assertRejects(() => misc.mseLoss(p, q, { mask: tensor(new Uint8Array(6), { shape: [2, 3] }) as never }), 'DTYPE_MISMATCH', /mask is u8\[2, 3\]/);
  await assertRejects(() => misc.mseLossBackward(p, q, { gradScale: NaN }), 'INVALID_ARGUMENT', /gradScale must be a finite number/);
});

// ---- AdamW ---------------------------------------------------------------------------

const ADAMW_CASES = [{ lr: 1e-2 }, { lr: 0.1, beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0.1 }];

t('adamw: five steps match torch.optim.AdamW', async () => {
  for (const [i, options] of ADAMW_CASES.entries()) {
    let param = get(`adamw${i}.param0`);
    let expAvg = tensor(new Float32Array(21), { shape: [3, 7] });
    let expAvgSq = tensor(new Float32Array(21), { shape: [3, 7] });
    const before = Array.from(f32(param));
    for (let step = 1; step <= 5; step++) {
      const r = await misc.adamwStep({ param, grad: get(`adamw${i}.grad${step}`), expAvg, expAvgSq }, { ...options, step });
      if (step === 1) assert.equal(Array.from(f32(param)), before, 'inputs are unchanged');
      ({ param, expAvg, expAvgSq } = r);
      assertClose(f32(param), f32(get(`adamw${i}.param${step}`)), 1e-5, 1e-6, `case ${i} step ${step} param`);
      assertClose(f32(expAvg), f32(get(`adamw${i}.exp_avg${step}`)), 1e-5, 1e-6, `case ${i} step ${step} expAvg`);
      assertClose(f32(expAvgSq), f32(get(`adamw${i}.exp_avg_sq${step}`)), 1e-5, 1e-6, `case ${i} step ${step} expAvgSq`);
    }
  }
});

t('adamw: a large tensor (multithreaded) matches a double reference', async () => {
  const n = 100_003;
  const [p, g, m] = [randomArray(n, 1), randomArray(n, 2), randomArray(n, 3, 0.1)];
  const v = Float32Array.from(randomArray(n, 4), (x) => x * x * 0.01);
  const [lr, b1, b2, eps, wd, step] = [3e-3, 0.9, 0.999, 1e-8, 1e-2, 7];
  const r = await misc.adamwStep(
    { param: tensor(p), grad: tensor(g), expAvg: tensor(m), expAvgSq: tensor(v) },
    { lr, step },
  );
  const [po, mo, vo] = [f32(r.param), f32(r.expAvg), f32(r.expAvgSq)];
  for (let i = 0; i < n; i++) {
    const mi = b1 * m[i] + (1 - b1) * g[i];
    const vi = b2 * v[i] + (1 - b2) * g[i] * g[i];
    const pi = p[i] * (1 - lr * wd) - (lr / (1 - b1 ** step)) * (mi / (Math.sqrt(vi) / Math.sqrt(1 - b2 ** step) + eps));
    for (const [got, want, what] of [[mo[i], mi, 'm'], [vo[i], vi, 'v'], [po[i], pi, 'p']] as const) {
      if (!(Math.abs(got - want) <= 1e-6 + 1e-5 * Math.abs(want))) assert.unreachable(`${what}[${i}] = ${got}, expected ${want}`);
    }
  }
});

t('adamw: mixed precision reads a half grad as f32 and writes the new f32 master rounded into the copy', async () => {
  const n = 4099;  // not a multiple of the CPU's slice
  const [p, m] = [randomArray(n, 11), randomArray(n, 12, 0.1)];
  const v = Float32Array.from(randomArray(n, 13), (x) => x * x * 0.01);
  const g = randomArray(n, 14);
  for (const dtype of ['bf16', 'f16'] as const) {
    const gHalf = await tensor(g).cast(dtype);
    const gWide = await gHalf.cast('f32');  // the grad's exact value
    const options = { lr: 1e-3, step: 4 };
    const want = await misc.adamwStep({ param: tensor(p), grad: gWide, expAvg: tensor(m), expAvgSq: tensor(v) }, options);
    const copyIn = await tensor(new Float32Array(n)).cast(dtype);
    const got = await misc.adamwStep({ param: tensor(p), grad: gHalf, expAvg: tensor(m), expAvgSq: tensor(v), copy: copyIn }, options);
    assert.is(got.param.dtype, 'f32', 'the master stays f32');
    assert.is(got.copy?.dtype, dtype);
    for (const k of ['param', 'expAvg', 'expAvgSq'] as const) assert.equal(Array.from(f32(got[k])), Array.from(f32(want[k])), `${dtype} ${k}`);
    const rounded = await want.param.cast(dtype);
    assert.equal(Array.from(f32(got.copy!)), Array.from(f32(rounded)), `${dtype} copy is the master rounded`);
    assert.equal(Array.from(f32(copyIn)), new Array(n).fill(0), 'the copy input is untouched');
  }
});

t('adamw: mixed precision needs an f32 master on the same device, of the same shape', async () => {
  const z = (shape: number[], dtype: 'f32' | 'bf16' = 'f32') => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape, dtype });
  const state = { param: z([2, 3]), grad: z([2, 3], 'bf16'), expAvg: z([2, 3]), expAvgSq: z([2, 3]) };
  await assertRejects(() => misc.adamwStep({ ...state, copy: z([3, 2], 'bf16') }, { lr: 1e-3, step: 1 }), 'SHAPE_MISMATCH', /copy must have shape \[2, 3\]/);
  const half = { param: z([2, 3], 'bf16'), grad: z([2, 3], 'bf16'), expAvg: z([2, 3], 'bf16'), expAvgSq: z([2, 3], 'bf16') };
  await assertRejects(() => misc.adamwStep({ ...half, copy: z([2, 3]) }, { lr: 1e-3, step: 1 }), 'DTYPE_MISMATCH', /copy is f32\[2, 3\] on cpu but param is bf16\[2, 3\] on cpu; mixed precision needs an f32 param/);
  await assertRejects(() => misc.adamwStep({ ...half, copy: z([2, 3], 'bf16') }, { lr: 1e-3, step: 1 }), 'DTYPE_MISMATCH', /copy is bf16\[2, 3\] on cpu but param is bf16\[2, 3\] on cpu; mixed precision needs an f32 param/);
  await assertRejects(() => misc.adamwStep({ ...half, grad: z([2, 3]) }, { lr: 1e-3, step: 1 }), 'DTYPE_MISMATCH', /grad is f32\[2, 3\] on cpu but param is bf16/);
  await assertRejects(() => misc.adamwStep({ ...state, copy: 'w' as never }, { lr: 1e-3, step: 1 }), 'INVALID_ARGUMENT', /copy must be a Tensor/);
});

t('adamw: bad hyperparameters and shapes', async () => {
  const z = (shape: number[]) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape });
  const state = { param: z([2, 3]), grad: z([2, 3]), expAvg: z([2, 3]), expAvgSq: z([2, 3]) };
  await assertRejects(() => misc.adamwStep(state, { lr: 1e-3, step: 0 }), 'INVALID_ARGUMENT', /adamw_step: step must be >= 1/);
  await assertRejects(() => misc.adamwStep(state, { lr: 1e-3, step: 1, beta1: 1 }), 'INVALID_ARGUMENT', /beta1 must be in \[0, 1\)/);
  await assertRejects(() => misc.adamwStep(state, { lr: -1, step: 1 }), 'INVALID_ARGUMENT', /lr must be >= 0/);
  await assertRejects(() => misc.adamwStep(state, { step: 1 } as never), 'INVALID_ARGUMENT', /adamwStep: lr is required/);
  await assertRejects(() => misc.adamwStep({ ...state, expAvgSq: z([3, 2]) }, { lr: 1e-3, step: 1 }), 'SHAPE_MISMATCH', /expAvgSq must have shape \[2, 3\], got f32\[3, 2\]/);
  await assertRejects(() => misc.adamwStep({ ...state, grad: undefined } as never, { lr: 1e-3, step: 1 }), 'INVALID_ARGUMENT', /grad is required/);
  await assertRejects(() => nn.runOp('adamw_step', [state.param, state.grad, state.expAvg, state.expAvgSq], { lr: 1e-3 }), 'INVALID_ARGUMENT', /attribute 'step' \(an integer\) is required/);
});

// ---- gradient clipping -------------------------------------------------------------------

const CLIP_CASES = [[1.0, 2], [100.0, 2], [0.5, 1], [0.7, 3], [0.25, Infinity]]; // maxNorm, normType (as gen_misc.py)

t('clipGradNorm matches torch.nn.utils.clip_grad_norm_ (norms 1, 2, 3 and inf)', async () => {
  const grads = [0, 1, 2].map((j) => get(`clip.g${j}`));
  for (const [i, [maxNorm, normType]] of CLIP_CASES.entries()) {
    const r = await misc.clipGradNorm(grads, { maxNorm, normType });
    assert.equal(r.totalNorm.shape, []);
    assertClose(f32(r.totalNorm), f32(get(`clip${i}.total`)), 1e-6, 0, `case ${i} total`);
    for (let j = 0; j < 3; j++) {
      assert.equal(r.grads[j].shape, grads[j].shape);
      assertClose(f32(r.grads[j]), f32(get(`clip${i}.g${j}`)), 1e-6, 1e-7, `case ${i} grad ${j}`);
    }
  }
  const none = await misc.clipGradNorm([], { maxNorm: 1 });
  assert.equal(Array.from(f32(none.totalNorm)), [0]);
  assert.is(none.grads.length, 0);
});

t('clipGradNorm over many blocks matches a double reference; a NaN gradient shows', async () => {
  const sizes = [150_000, 3, 70_000];
  const gs = sizes.map((n, j) => randomArray(n, 10 + j));
  let sq = 0;
  for (const g of gs) for (const x of g) sq += x * x;
  const total = Math.sqrt(sq);
  const r = await misc.clipGradNorm(gs.map((g) => tensor(g)), { maxNorm: 2 });
  assert.ok(Math.abs(f32(r.totalNorm)[0] - total) <= 1e-6 * total, `total ${f32(r.totalNorm)[0]} vs ${total}`);
  const coef = 2 / (total + 1e-6);
  gs.forEach((g, j) => assertClose(f32(r.grads[j]), Float64Array.from(g, (x) => x * coef), 1e-6, 1e-9, `grad ${j}`));
  const bad = await misc.clipGradNorm([tensor([1, NaN, 2])], { maxNorm: 1 });
  assert.ok(Number.isNaN(f32(bad.totalNorm)[0]));
  assert.ok(f32(bad.grads[0]).every(Number.isNaN));
});

t('clipGradNorm: bad inputs', async () => {
  const a = tensor([1, 2, 3]);
  await assertRejects(() => misc.clipGradNorm([a, tensor(new Float32Array(2), { dtype: 'bf16', shape: [2] }) as never], { maxNorm: 1 }), 'DTYPE_MISMATCH',
    /clip_grad_norm: grads\[1\] is bf16\[2\] on cpu but grads\[0\] is f32\[3\] on cpu/);
  await assertRejects(() => misc.clipGradNorm([tensor(new Int32Array(3))] as never, { maxNorm: 1 }), 'DTYPE_MISMATCH', /i32\[3\]/);
  await assertRejects(() => misc.clipGradNorm([a], { maxNorm: -1 }), 'INVALID_ARGUMENT', /maxNorm must be >= 0/);
  await assertRejects(() => misc.clipGradNorm([a], { maxNorm: 1, normType: 0 }), 'INVALID_ARGUMENT', /normType must be > 0 or Infinity/);
  await assertRejects(() => misc.clipGradNorm([a], {} as never), 'INVALID_ARGUMENT', /clipGradNorm: maxNorm is required/);
  await assertRejects(() => misc.clipGradNorm([a, 3] as never, { maxNorm: 1 }), 'INVALID_ARGUMENT', /grads\[1\] must be a Tensor/);
});

/** PyTorch's nearest source index: o·(in/out) with a float32 scale, floored, capped at in − 1. */
const nearestIndex = (o: number, inSize: number, outSize: number): number =>
  Math.min(Math.floor(Math.fround(o * Math.fround(inSize / outSize))), inSize - 1);

t('upsampleNearest: a hand-worked case, every pixel of odd and 2x resizes, backward sums the readers', async () => {
  // [a b c] → width 4: scale 0.75, columns floor(0, 0.75, 1.5, 2.25) = 0, 0, 1, 2; rows 1 → 2 repeat.
  const small = await misc.upsampleNearest(tensor([[[[1, 2, 3]]]]), [2, 4]);
  assert.equal(small.shape, [1, 1, 2, 4]);
  assert.equal(Array.from(f32(small)), [1, 1, 2, 3, 1, 1, 2, 3]);
  const dSmall = await misc.upsampleNearestBackward(tensor([[[[1, 10, 100, 1000], [2, 20, 200, 2000]]]]), [1, 3]);
  assert.equal(Array.from(f32(dSmall)), [33, 300, 3000]);
  for (const [inH, inW, outH, outW] of [[3, 5, 6, 10], [3, 5, 5, 7], [5, 3, 10, 7], [4, 6, 3, 4], [3, 3, 3, 3], [1, 1, 4, 3]]) {
    const shape = [2, 3, inH, inW];
    const x0 = randomArray(6 * inH * inW, inH * 100 + outW);
    const y = f32(await misc.upsampleNearest(tensor(x0, { shape }), [outH, outW]));
    const dy0 = randomArray(6 * outH * outW, outH * 100 + inW);
    const dx = f32(await misc.upsampleNearestBackward(tensor(dy0, { shape: [2, 3, outH, outW] }), [inH, inW]));
    const want = new Float64Array(6 * inH * inW);
    for (let p = 0; p < 6; p++) {
      for (let i = 0; i < outH; i++) {
        for (let j = 0; j < outW; j++) {
          const src = (p * inH + nearestIndex(i, inH, outH)) * inW + nearestIndex(j, inW, outW);
          assert.is(y[(p * outH + i) * outW + j], x0[src], `${inH}x${inW} → ${outH}x${outW} at ${p},${i},${j}`);
          want[src] += dy0[(p * outH + i) * outW + j];
        }
      }
    }
    assertClose(dx, want, 1e-6, 1e-6, `backward ${inH}x${inW} → ${outH}x${outW}`);
    await gradcheck(`dx ${inH}x${inW} → ${outH}x${outW}`, x0, shape, (x) => misc.upsampleNearest(x, [outH, outW]), (d) => misc.upsampleNearestBackward(d, [inH, inW]));
  }
  // 2x is the upsampleNearest2x op itself, to the bit.
  const x = tensor(randomArray(2 * 3 * 4 * 5, 3), { shape: [2, 3, 4, 5] });
  assert.equal(Array.from(f32(await misc.upsampleNearest(x, [8, 10]))), Array.from(f32(await nn.upsampleNearest2x(x))));
});

t('upsampleNearest: bad sizes, shapes and dtypes name the problem', async () => {
  const x = tensor(new Float32Array(12), { shape: [1, 1, 3, 4] });
  await assertRejects(() => misc.upsampleNearest(x, 5 as never), 'INVALID_ARGUMENT', /upsampleNearest: size must be \[height, width\], got number 5/);
  await assertRejects(() => misc.upsampleNearest(x, [5] as never), 'INVALID_ARGUMENT', /size must be \[height, width\], got an array/);
  await assertRejects(() => misc.upsampleNearest(x, [0, 4]), 'INVALID_ARGUMENT', /size\[0\] must be an integer in \[1, 65536\], got number 0/);
  await assertRejects(() => misc.upsampleNearest(x, [4, 2.5]), 'INVALID_ARGUMENT', /size\[1\] must be an integer in \[1, 65536\], got number 2\.5/);
  await assertRejects(() => misc.upsampleNearest(x, [4, 1e9]), 'INVALID_ARGUMENT', /size\[1\] must be an integer in \[1, 65536\]/);
  await assertRejects(() => misc.upsampleNearestBackward(x, [3, NaN]), 'INVALID_ARGUMENT', /upsampleNearestBackward: inputSize\[1\] must be an integer/);
  await assertRejects(() => misc.upsampleNearest(tensor(new Float32Array(6), { shape: [2, 3] }), [4, 4]), 'SHAPE_MISMATCH', /upsample_nearest_forward: x must be 4-D \[N, C, H, W\], got f32\[2, 3\] on cpu/);
  await assertRejects(() => misc.upsampleNearestBackward(tensor(new Float32Array(6), { shape: [6] }), [1, 1]), 'SHAPE_MISMATCH', /upsample_nearest_backward: dy must be 4-D/);
  await assertRejects(() => misc.upsampleNearest(tensor(new Int32Array(12), { shape: [1, 1, 3, 4] }) as never, [4, 4]), 'DTYPE_MISMATCH', /i32\[1, 1, 3, 4\]/);
  await assertRejects(() => misc.upsampleNearest(tensor(new Float32Array(0), { shape: [1, 1, 0, 4] }), [4, 4]), 'SHAPE_MISMATCH', /x must have a positive height and width, got f32\[1, 1, 0, 4\]/);
  const half = await x.cast('f16');
  await assertRejects(() => misc.upsampleNearest(half, [5, 5]), 'UNSUPPORTED', /upsample_nearest_forward on cpu supports f32 only/);
  await assertRejects(() => misc.upsampleNearest('x' as never, [5, 5]), 'INVALID_ARGUMENT', /x/);
  half.dispose();
});

t.run();
