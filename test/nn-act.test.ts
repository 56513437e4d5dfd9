// Activations (SiLU, GELU, quick-GELU, GEGLU, softmax, scale): PyTorch golden
// values for forward and gradients, dense accuracy sweeps of the exp and erf
// approximations, finite differences, edge cases and bad inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import * as act from '../lib/nn/act.js';
import { runOp } from '../lib/nn/run.js';
import { fixtureTensor, loadFixture } from './fixtures.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const fx = loadFixture('act');
const get = (key: string) => fixtureTensor(fx, key);
const t = suite('nn.act');

type Unary = (x: Tensor<'f32'>) => Promise<Tensor<'f32'>>;
type UnaryBackward = (dy: Tensor<'f32'>, x: Tensor<'f32'>) => Promise<Tensor<'f32'>>;
const elementwise: [string, Unary, UnaryBackward][] = [
  ['silu', act.silu, act.siluBackward],
  ['gelu', act.gelu, act.geluBackward],
  ['quick_gelu', act.quickGelu, act.quickGeluBackward],
];

// Double-precision references for the sweeps.
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const refSilu = (x: number) => x * sigmoid(x);
const refSiluGrad = (x: number) => sigmoid(x) * (1 + x * (1 - sigmoid(x)));
// The argument 1.702·x is rounded to f32 as in any f32 implementation (at
// x = -40 that rounding alone moves the result by 4e-6 relative).
const alphaX = (x: number) => Math.fround(Math.fround(1.702) * x);
const refQuickGelu = (x: number) => x * sigmoid(alphaX(x));
const refQuickGeluGrad = (x: number) => sigmoid(alphaX(x)) * (1 + alphaX(x) * (1 - sigmoid(alphaX(x))));

const sweep = (from: number, to: number, n: number) => Float32Array.from({ length: n }, (_, i) => from + ((to - from) * i) / (n - 1));
const ones = (n: number, shape = [n]) => tensor(new Float32Array(n).fill(1), { shape });

t('silu, gelu and quick-GELU match PyTorch, edge values included (forward and dx)', async () => {
  for (const [name, forward, backward] of elementwise) {
    const x = get(`${name}.x`);
    const y = await forward(x);
    assert.equal(y.shape, [3, 5, 7]);
    assertClose(y.dataSync(), get(`${name}.y`).dataSync(), 2e-6, 1e-30, `${name} y`);
    const dx = await backward(get(`${name}.dy`), x);
    assertClose(dx.dataSync(), get(`${name}.dx`).dataSync(), 2e-6, 1e-7, `${name} dx`);
  }
});

t('gelu and its derivative are accurate on a dense grid over [-14, 14], tail included', async () => {
  const x = get('gelu_grid.x');
  // Relative 1e-6 (about 8 ulp) even where gelu is 1e-30: no 1 + erf cancellation.
  assertClose((await act.gelu(x)).dataSync(), get('gelu_grid.y').dataSync(), 1e-6, 1e-37, 'gelu');
  assertClose((await act.geluBackward(ones(x.numel), x)).dataSync(), get('gelu_grid.dx').dataSync(), 1e-6, 1e-7, 'gelu dx');
});

t('silu and quick-GELU are accurate over the whole exp range (checks the exp approximation)', async () => {
  const xs = sweep(-89, 89, 40001);
  const x = tensor(xs, { shape: [xs.length] });
  const cases: [string, Unary, UnaryBackward, (v: number) => number, (v: number) => number][] = [
    ['silu', act.silu, act.siluBackward, refSilu, refSiluGrad],
    ['quick_gelu', act.quickGelu, act.quickGeluBackward, refQuickGelu, refQuickGeluGrad],
  ];
  for (const [name, forward, backward, ref, refGrad] of cases) {
    // Results below ~1e-36 may flush to zero (no denormal arithmetic).
    assertClose((await forward(x)).dataSync(), Array.from(xs, ref), 1e-6, 1e-35, `${name} y`);
    assertClose((await backward(ones(xs.length), x)).dataSync(), Array.from(xs, refGrad), 1e-6, 1e-7, `${name} dx`);
  }
});

t('special values: ±inf, NaN and -0 behave as in PyTorch', async () => {
  const x = tensor([Infinity, -Infinity, NaN, -0, 0], { shape: [5] });
  const silu = (await act.silu(x)).dataSync();
  assert.equal([silu[0], silu[2]], [Infinity, NaN]);
  assert.ok(Number.isNaN(silu[1]), 'silu(-inf) is NaN, as in PyTorch');
  const gelu = (await act.gelu(x)).dataSync();
  assert.is(gelu[0], Infinity);
  assert.ok(Number.isNaN(gelu[1]) && Number.isNaN(gelu[2]));
  assert.is(gelu[4], 0);
  const dgelu = (await act.geluBackward(ones(5), x)).dataSync();
  assert.is(dgelu[3], 0.5);
  assert.is(dgelu[4], 0.5);
});

t('every chunk of a large tensor is right (multithreaded path)', async () => {
  const n = 300_001;
  const xs = randomArray(n, 7, 8);
  const x = tensor(xs, { shape: [n] });
  assertClose((await act.silu(x)).dataSync(), Array.from(xs, refSilu), 1e-6, 1e-30, 'silu');
  const dy = randomArray(n, 8);
  const dx = (await act.quickGeluBackward(tensor(dy, { shape: [n] }), x)).dataSync();
  assertClose(dx, Array.from(xs, (v, i) => dy[i] * refQuickGeluGrad(v)), 1e-6, 1e-7, 'quick_gelu dx');
});

t('geglu matches PyTorch (diffusers GEGLU: value half times gelu of the gate half)', async () => {
  for (const [i, fshape] of [[0, [2, 3, 5]], [1, [1, 1]]] as const) {
    const x = get(`geglu${i}.x`);
    const y = await act.geglu(x);
    assert.equal(y.shape, fshape);
    assertClose(y.dataSync(), get(`geglu${i}.y`).dataSync(), 2e-6, 1e-30, `case ${i} y`);
    const dx = await act.gegluBackward(get(`geglu${i}.dy`), x);
    assert.equal(dx.shape, x.shape);
    assertClose(dx.dataSync(), get(`geglu${i}.dx`).dataSync(), 2e-6, 1e-7, `case ${i} dx`);
  }
});

t('geglu over many rows agrees with gelu of the gate half', async () => {
  const rows = 97;
  const features = 300;
  const xs = randomArray(rows * 2 * features, 3, 4);
  const y = (await act.geglu(tensor(xs, { shape: [rows, 2 * features] }))).dataSync();
  const gates = Float32Array.from({ length: rows * features }, (_, i) => xs[Math.floor(i / features) * 2 * features + features + (i % features)]);
  const gelu = (await act.gelu(tensor(gates, { shape: [rows * features] }))).dataSync();
  const expected = Array.from(gelu, (g, i) => xs[Math.floor(i / features) * 2 * features + (i % features)] * g);
  assertClose(y, expected, 1e-6, 1e-30, 'geglu');
});

const softmaxDims = [-1, -1, 1, 1, 0, -2];

t('softmax matches PyTorch: rows of ±1e4, -inf except one, long odd rows, inner axes', async () => {
  for (let i = 0; i < softmaxDims.length; i++) {
    const dim = softmaxDims[i];
    const x = get(`softmax${i}.x`);
    const y = await act.softmax(x, { dim });
    const yd = y.dataSync();
    assert.ok(yd.every((v) => Number.isFinite(v)), `case ${i}: no NaN or inf`);
    assertClose(yd, get(`softmax${i}.y`).dataSync(), 1e-5, 1e-7, `case ${i} y`);
    const dx = await act.softmaxBackward(get(`softmax${i}.dy`), y, { dim });
    assertClose(dx.dataSync(), get(`softmax${i}.dx`).dataSync(), 1e-5, 1e-6, `case ${i} dx`);
  }
});

t('softmax rows sum to one and the -inf entries get exactly zero', async () => {
  const y = (await act.softmax(get('softmax1.x'))).dataSync();
  const x = get('softmax1.x').dataSync();
  for (let r = 0; r < 7; r++) {
    let s = 0;
    for (let j = 0; j < 6; j++) s += y[r * 6 + j];
    assert.ok(Math.abs(s - 1) < 1e-6, `row ${r} sums to ${s}`);
  }
  x.forEach((v, i) => {
    if (v === -Infinity) assert.is(y[i], 0, `element ${i}`);
  });
  assert.is(y[1 * 6 + 2], 1, 'the one finite entry of a -inf row');
});

t('softmax: a fully masked row is NaN as in PyTorch; 0-D and empty tensors', async () => {
  const y = (await act.softmax(tensor([-Infinity, -Infinity, 1, 2], { shape: [2, 2] }))).dataSync();
  assert.ok(Number.isNaN(y[0]) && Number.isNaN(y[1]));
  assertClose(y.subarray(2), [1 / (1 + Math.E), Math.E / (1 + Math.E)], 1e-6, 0, 'other row');
  const scalar = await act.softmax(tensor([3], { shape: [] }));
  assert.equal(scalar.shape, []);
  assert.equal(Array.from(scalar.dataSync()), [1]);
  const empty = await act.softmax(tensor(new Float32Array(0), { shape: [3, 0] }));
  assert.equal(empty.shape, [3, 0]);
  const dx = await act.softmaxBackward(tensor(new Float32Array(0), { shape: [0, 4] }), tensor(new Float32Array(0), { shape: [0, 4] }), { dim: 0 });
  assert.equal(dx.shape, [0, 4]);
});

t('softmax over many rows and many column blocks (multithreaded paths)', async () => {
  const rows = 600;
  const n = 77;
  const xs = randomArray(rows * n, 11, 6);
  const y = (await act.softmax(tensor(xs, { shape: [rows, n] }))).dataSync();
  // The same data with the axis moved first: [n, rows] with dim 0.
  const xt = Float32Array.from({ length: rows * n }, (_, i) => xs[(i % rows) * n + Math.floor(i / rows)]);
  const yt = (await act.softmax(tensor(xt, { shape: [n, rows] }), { dim: 0 })).dataSync();
  const expected = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++) {
    let m = -Infinity;
    for (let j = 0; j < n; j++) m = Math.max(m, xs[r * n + j]);
    let s = 0;
    for (let j = 0; j < n; j++) s += Math.exp(xs[r * n + j] - m);
    for (let j = 0; j < n; j++) expected[r * n + j] = Math.exp(xs[r * n + j] - m) / s;
  }
  assertClose(y, expected, 1e-5, 1e-9, 'rows');
  assertClose(Array.from(yt, (_, i) => yt[(i % n) * rows + Math.floor(i / n)]), expected, 1e-5, 1e-9, 'columns');
});

t('scale multiplies by the factor and is its own backward', async () => {
  const xs = randomArray(70_000, 5, 3);
  const x = tensor(xs, { shape: [7, 10_000] });
  const y = await act.scale(x, -0.125);
  assert.equal(y.shape, [7, 10_000]);
  assertClose(y.dataSync(), Array.from(xs, (v) => v * -0.125), 0, 0, 'scale');
  await gradcheck('scale dx', randomArray(12, 6), [3, 4], (v) => act.scale(v, 2.5), (dy) => act.scale(dy, 2.5));
});

t('finite differences agree with every backward', async () => {
  const shape = [2, 3, 4];
  const xs = randomArray(24, 21, 3);
  const x = tensor(xs, { shape });
  for (const [name, forward, backward] of elementwise) {
    await gradcheck(name, xs, shape, forward, (dy) => backward(dy, x));
  }
  const gx = randomArray(2 * 3 * 8, 22, 2);
  const g = tensor(gx, { shape: [2, 3, 8] });
  await gradcheck('geglu', gx, [2, 3, 8], act.geglu, (dy) => act.gegluBackward(dy, g));
  for (const dim of [-1, 0, 1]) {
    const y = await act.softmax(x, { dim });
    await gradcheck(`softmax dim ${dim}`, xs, shape, (v) => act.softmax(v, { dim }), (dy) => act.softmaxBackward(dy, y, { dim }));
  }
});

t('bad inputs name the op, the argument and the tensor', async () => {
  const x = tensor(new Float32Array(6), { shape: [2, 3] });
  const ints = tensor(new Int32Array(6), { shape: [2, 3] });
  await assertRejects(() => act.silu(ints as never), 'DTYPE_MISMATCH', /silu_forward: x must be a float tensor/, /i32\[2, 3\] on cpu/);
  await assertRejects(() => act.softmaxBackward(x, ints as never), 'DTYPE_MISMATCH', /softmax_backward: y must be a float tensor/);
  const half = tensor(new Float32Array(6), { shape: [2, 3], dtype: 'f16' });
  await assertRejects(() => act.gelu(half), 'UNSUPPORTED', /gelu_forward on cpu supports f32 only/);
  await assertRejects(() => act.siluBackward(tensor(new Float32Array(6), { shape: [3, 2] }), x), 'SHAPE_MISMATCH',
    /silu_backward: dy must have shape \[2, 3\], got f32\[3, 2\] on cpu/);
  await assertRejects(() => act.quickGeluBackward(half, x), 'DTYPE_MISMATCH', /quick_gelu_backward: dy is f16\[2, 3\] on cpu but x is f32\[2, 3\]/);
  await assertRejects(() => act.geglu(x), 'SHAPE_MISMATCH', /geglu_forward: x must be \[\.\.\., 2·features\]/, /got f32\[2, 3\] on cpu/);
  await assertRejects(() => act.geglu(tensor([1], { shape: [] })), 'SHAPE_MISMATCH', /geglu_forward: .*got f32\[\] on cpu/);
  const x4 = tensor(new Float32Array(8), { shape: [2, 4] });
  await assertRejects(() => act.gegluBackward(x4, x4), 'SHAPE_MISMATCH', /geglu_backward: dy must have shape \[2, 2\], got f32\[2, 4\]/);
  await assertRejects(() => act.softmax(x, { dim: 2 }), 'INVALID_ARGUMENT', /softmax_forward: dim 2 is out of range for x f32\[2, 3\] on cpu \(expected -2 to 1\)/);
  await assertRejects(() => act.softmaxBackward(x, x, { dim: -3 }), 'INVALID_ARGUMENT', /softmax_backward: dim -3 is out of range for y f32\[2, 3\]/);
  await assertRejects(() => act.softmax(x, { dim: 0.5 }), 'INVALID_ARGUMENT', /softmax: dim must be an integer, got number 0.5/);
  await assertRejects(() => act.softmax(x, { axis: 1 } as never), 'INVALID_ARGUMENT', /softmax: unknown option 'axis'/);
  await assertRejects(() => act.scale(x, NaN), 'INVALID_ARGUMENT', /scale: factor must be a finite number, got number NaN/);
  await assertRejects(() => runOp('scale_forward', [x]), 'INVALID_ARGUMENT', /scale_forward: attribute 'factor' \(a number\) is required/);
  await assertRejects(() => runOp('softmax_forward', [x], { dim: 1.5 }), 'INVALID_ARGUMENT', /softmax_forward: dim must be an integer/);
  await assertRejects(() => runOp('gelu_backward', [x]), 'INVALID_ARGUMENT', /gelu_backward: input 1 \(x\) is required/);
});

t.run();
