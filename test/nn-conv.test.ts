// conv2d and nearest 2x upsampling: PyTorch golden values for forward and
// every gradient, a double-precision reference on shapes large enough to cross
// the kernels' tile and channel-block boundaries (under several thread counts),
// finite differences, edge sizes and bad inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { numThreads, setNumThreads, tensor } from '../lib/index.js';
import { conv2d, conv2dBackward } from '../lib/nn/conv.js';
import { upsampleNearest2x, upsampleNearest2xBackward } from '../lib/nn/resample.js';
import { runOp } from '../lib/nn/run.js';
import { fixtureTensor, loadFixture } from './fixtures.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const fx = loadFixture('conv');
const t = suite('nn.conv');

type Pad4 = [number, number, number, number];

interface ConvCase {
  n: number;
  cin: number;
  h: number;
  w: number;
  cout: number;
  kh: number;
  kw: number;
  stride: number;
  padding: Pad4;
}

const outSize = (c: ConvCase): [number, number] => [
  Math.floor((c.h + c.padding[0] + c.padding[1] - c.kh) / c.stride) + 1,
  Math.floor((c.w + c.padding[2] + c.padding[3] - c.kw) / c.stride) + 1,
];

/** Direct convolution in double: y, and for dy the gradients dx, dw, db. */
function refConv(c: ConvCase, x: Float32Array, wt: Float32Array, b: Float32Array | null, dy: Float32Array) {
  const [ho, wo] = outSize(c);
  const y = new Float64Array(c.n * c.cout * ho * wo);
  const dx = new Float64Array(x.length);
  const dw = new Float64Array(wt.length);
  const db = new Float64Array(c.cout);
  for (let n = 0; n < c.n; n++) {
    for (let co = 0; co < c.cout; co++) {
      for (let oh = 0; oh < ho; oh++) {
        for (let ow = 0; ow < wo; ow++) {
          const yi = ((n * c.cout + co) * ho + oh) * wo + ow;
          const g = dy[yi];
          let acc = b ? b[co] : 0;
          db[co] += g;
          for (let ci = 0; ci < c.cin; ci++) {
            for (let i = 0; i < c.kh; i++) {
              const ih = oh * c.stride + i - c.padding[0];
              if (ih < 0 || ih >= c.h) continue;
              for (let j = 0; j < c.kw; j++) {
                const iw = ow * c.stride + j - c.padding[2];
                if (iw < 0 || iw >= c.w) continue;
                const xi = ((n * c.cin + ci) * c.h + ih) * c.w + iw;
                const wi = ((co * c.cin + ci) * c.kh + i) * c.kw + j;
                acc += x[xi] * wt[wi];
                dx[xi] += g * wt[wi];
                dw[wi] += g * x[xi];
              }
            }
          }
          y[yi] = acc;
        }
      }
    }
  }
  return { y, dx, dw, db };
}

const caseCount = [...fx.keys()].filter((k) => /^case\d+\.params$/.test(k)).length;

t('conv2d forward and backward match PyTorch (11 cases, tolerance 1e-5)', async () => {
  assert.is(caseCount, 11);
  for (let i = 0; i < caseCount; i++) {
    const get = (k: string) => fixtureTensor(fx, `case${i}.${k}`);
    const [stride, top, bottom, left, right, hasBias] = get('params').dataSync();
    const padding: Pad4 = [top, bottom, left, right];
    const [x, w, dy] = [get('x'), get('w'), get('dy')];
    const b = hasBias ? get('b') : undefined;
    const what = `case ${i} (x [${x.shape}], w [${w.shape}], stride ${stride}, padding [${padding}])`;
    const y = await conv2d(x, w, b, { stride, padding });
    assert.equal(y.shape, get('y').shape, `${what} y shape`);
    assertClose(y.dataSync(), get('y').dataSync(), 1e-5, 1e-5, `${what} y`);
    const g = await conv2dBackward(dy, x, w, { stride, padding, biasGrad: !!hasBias });
    assertClose(g.dx!.dataSync(), get('dx').dataSync(), 1e-5, 1e-5, `${what} dx`);
    assertClose(g.dweight!.dataSync(), get('dw').dataSync(), 1e-5, 1e-5, `${what} dw`);
    if (hasBias) assertClose(g.dbias!.dataSync(), get('db').dataSync(), 1e-5, 1e-5, `${what} db`);
  }
});

t('symmetric padding as one number equals the four-sided list', async () => {
  const x = fixtureTensor(fx, 'case0.x');
  const w = fixtureTensor(fx, 'case0.w');
  const a = await conv2d(x, w, null, { padding: 1 });
  const b = await conv2d(x, w, null, { padding: [1, 1, 1, 1] });
  assert.equal(a.dataSync(), b.dataSync());
});

// Large enough that the forward splits images into several row tiles and the
// backward into channel blocks and row tiles, and sums dW over images.
const LARGE: ConvCase[] = [
  { n: 1, cin: 40, h: 64, w: 48, cout: 6, kh: 3, kw: 3, stride: 1, padding: [1, 1, 1, 1] },
  { n: 3, cin: 72, h: 40, w: 40, cout: 5, kh: 3, kw: 3, stride: 2, padding: [0, 1, 0, 1] },
  { n: 3, cin: 600, h: 6, w: 5, cout: 7, kh: 1, kw: 1, stride: 1, padding: [0, 0, 0, 0] },
];

t('large shapes match a double-precision reference with 1, 2 and 3 threads', async () => {
  const original = numThreads();
  try {
    for (const [ci, c] of LARGE.entries()) {
      const [ho, wo] = outSize(c);
      const xs = [c.n, c.cin, c.h, c.w];
      const ws = [c.cout, c.cin, c.kh, c.kw];
      const ys = [c.n, c.cout, ho, wo];
      const x0 = randomArray(xs.reduce((p, q) => p * q), 10 + ci);
      const w0 = randomArray(ws.reduce((p, q) => p * q), 20 + ci, 0.1);
      const b0 = randomArray(c.cout, 30 + ci);
      const dy0 = randomArray(ys.reduce((p, q) => p * q), 40 + ci);
      const ref = refConv(c, x0, w0, b0, dy0);
      const [x, w, b, dy] = [tensor(x0, { shape: xs }), tensor(w0, { shape: ws }), tensor(b0), tensor(dy0, { shape: ys })];
      for (const threads of [1, 2, 3]) {
        setNumThreads(threads);
        const what = `large case ${ci}, ${threads} threads`;
        const y = await conv2d(x, w, b, { stride: c.stride, padding: c.padding });
        assertClose(y.dataSync(), ref.y, 1e-4, 1e-4, `${what} y`);
        const g = await conv2dBackward(dy, x, w, { stride: c.stride, padding: c.padding, biasGrad: true });
        assertClose(g.dx!.dataSync(), ref.dx, 1e-4, 1e-4, `${what} dx`);
        assertClose(g.dweight!.dataSync(), ref.dw, 1e-4, 1e-3, `${what} dw`);
        assertClose(g.dbias!.dataSync(), ref.db, 1e-5, 1e-4, `${what} db`);
      }
    }
  } finally {
    setNumThreads(original);
  }
});

// Strides past the kernel, padding wider than the kernel, kernels wider than x.
const ODD: ConvCase[] = [
  { n: 2, cin: 3, h: 5, w: 4, cout: 2, kh: 2, kw: 2, stride: 3, padding: [2, 3, 0, 4] },
  { n: 1, cin: 4, h: 3, w: 5, cout: 3, kh: 1, kw: 1, stride: 1, padding: [1, 0, 0, 2] },
  { n: 2, cin: 2, h: 3, w: 3, cout: 3, kh: 5, kw: 5, stride: 1, padding: [2, 2, 2, 2] },
  { n: 1, cin: 3, h: 9, w: 9, cout: 2, kh: 3, kw: 3, stride: 4, padding: [1, 1, 1, 1] },
  { n: 1, cin: 2, h: 4, w: 6, cout: 2, kh: 1, kw: 4, stride: 2, padding: [0, 0, 3, 0] },
];

t('unusual strides, paddings and kernel sizes match a double-precision reference', async () => {
  for (const [ci, c] of ODD.entries()) {
    const [ho, wo] = outSize(c);
    const xs = [c.n, c.cin, c.h, c.w];
    const ws = [c.cout, c.cin, c.kh, c.kw];
    const ys = [c.n, c.cout, ho, wo];
    const x0 = randomArray(xs.reduce((p, q) => p * q), 50 + ci);
    const w0 = randomArray(ws.reduce((p, q) => p * q), 60 + ci);
    const b0 = randomArray(c.cout, 70 + ci);
    const dy0 = randomArray(ys.reduce((p, q) => p * q), 80 + ci);
    const ref = refConv(c, x0, w0, b0, dy0);
    const [x, w] = [tensor(x0, { shape: xs }), tensor(w0, { shape: ws })];
    const what = `odd case ${ci} (x [${xs}], w [${ws}], stride ${c.stride}, padding [${c.padding}])`;
    const y = await conv2d(x, w, tensor(b0), { stride: c.stride, padding: c.padding });
    assert.equal(y.shape, ys, `${what} y shape`);
    assertClose(y.dataSync(), ref.y, 1e-5, 1e-5, `${what} y`);
    const g = await conv2dBackward(tensor(dy0, { shape: ys }), x, w, { stride: c.stride, padding: c.padding, biasGrad: true });
    assertClose(g.dx!.dataSync(), ref.dx, 1e-5, 1e-5, `${what} dx`);
    assertClose(g.dweight!.dataSync(), ref.dw, 1e-5, 1e-5, `${what} dw`);
    assertClose(g.dbias!.dataSync(), ref.db, 1e-5, 1e-5, `${what} db`);
  }
});

t('finite differences agree for x, weight and bias (3x3 stride 2, asymmetric padding)', async () => {
  const opts = { stride: 2, padding: [0, 1, 0, 1] as Pad4 };
  const xs = [2, 3, 7, 6];
  const ws = [4, 3, 3, 3];
  const x0 = randomArray(2 * 3 * 7 * 6, 1);
  const w0 = randomArray(4 * 27, 2);
  const b0 = randomArray(4, 3);
  const x = tensor(x0, { shape: xs });
  const w = tensor(w0, { shape: ws });
  const b = tensor(b0);
  await gradcheck('dx', x0, xs, (xt) => conv2d(xt, w, b, opts), async (dy) => (await conv2dBackward(dy, x, w, opts)).dx!);
  await gradcheck('dweight', w0, ws, (wt) => conv2d(x, wt, b, opts), async (dy) => (await conv2dBackward(dy, x, w, opts)).dweight!);
  await gradcheck('dbias', b0, [4], (bt) => conv2d(x, w, bt, opts), async (dy) => (await conv2dBackward(dy, x, w, { ...opts, weightGrad: false, biasGrad: true })).dbias!);
});

t('finite differences agree for a 1x1 convolution (the direct GEMM path)', async () => {
  const xs = [2, 5, 3, 4];
  const ws = [3, 5, 1, 1];
  const x0 = randomArray(2 * 5 * 12, 4);
  const w0 = randomArray(15, 5);
  const x = tensor(x0, { shape: xs });
  const w = tensor(w0, { shape: ws });
  await gradcheck('dx', x0, xs, (xt) => conv2d(xt, w), async (dy) => (await conv2dBackward(dy, x, w)).dx!);
  await gradcheck('dweight', w0, ws, (wt) => conv2d(x, wt), async (dy) => (await conv2dBackward(dy, x, w)).dweight!);
});

t('weight and bias gradients only when asked for', async () => {
  const x = tensor(randomArray(2 * 3 * 5 * 5, 1), { shape: [2, 3, 5, 5] });
  const w = tensor(randomArray(4 * 3 * 9, 2), { shape: [4, 3, 3, 3] });
  const dy = tensor(randomArray(2 * 4 * 25, 3), { shape: [2, 4, 5, 5] });
  const none = await conv2dBackward(dy, x, w, { padding: 1, weightGrad: false });
  assert.is(none.dweight, undefined);
  assert.is(none.dbias, undefined);
  assert.equal(none.dx!.shape, [2, 3, 5, 5]);
  const biasOnly = await conv2dBackward(dy, x, w, { padding: 1, weightGrad: false, biasGrad: true });
  assert.is(biasOnly.dweight, undefined);
  assert.equal(biasOnly.dbias!.shape, [4]);
  assert.equal(biasOnly.dx!.dataSync(), none.dx!.dataSync());
  const dyData = dy.dataSync();
  const expected = [0, 1, 2, 3].map((co) => {
    let s = 0;
    for (let n = 0; n < 2; n++) for (let p = 0; p < 25; p++) s += dyData[(n * 4 + co) * 25 + p];
    return s;
  });
  assertClose(biasOnly.dbias!.dataSync(), expected, 1e-6, 1e-5, 'dbias');
});

t('inputGrad: false leaves out dx and gives the same dweight and dbias, bit for bit', async () => {
  // 3×3 padded (im2col, row tiles), 1×1 unpadded (the direct GEMM), strided.
  for (const [ks, opts] of [[3, { padding: 1 }], [1, {}], [3, { stride: 2, padding: [1, 0, 1, 0] }]] as const) {
    const x = tensor(randomArray(2 * 3 * 9 * 9, 11), { shape: [2, 3, 9, 9] });
    const w = tensor(randomArray(4 * 3 * ks * ks, 12), { shape: [4, 3, ks, ks] });
    const ys = (await conv2d(x, w, null, opts)).shape;
    const dy = tensor(randomArray(ys.reduce((a, b) => a * b, 1), 13), { shape: ys });
    const all = await conv2dBackward(dy, x, w, { ...opts, biasGrad: true });
    const params = await conv2dBackward(dy, x, w, { ...opts, inputGrad: false, biasGrad: true });
    assert.is(params.dx, undefined);
    assert.equal(params.dweight!.dataSync(), all.dweight!.dataSync(), `dweight, kernel ${ks}`);
    assert.equal(params.dbias!.dataSync(), all.dbias!.dataSync(), `dbias, kernel ${ks}`);
    const biasOnly = await conv2dBackward(dy, x, w, { ...opts, inputGrad: false, weightGrad: false, biasGrad: true });
    assert.equal([biasOnly.dx, biasOnly.dweight], [undefined, undefined]);
    assert.equal(biasOnly.dbias!.dataSync(), all.dbias!.dataSync());
    await assertRejects(() => conv2dBackward(dy, x, w, { ...opts, inputGrad: false, weightGrad: false }), 'INVALID_ARGUMENT', /no gradient asked for/);
    if (ks === 1) await assertRejects(() => runOp('conv2d_backward', [dy, x, w], { inputGrad: false, weightGrad: false }), 'INVALID_ARGUMENT', /conv2d_backward: .*no gradient asked for/);
  }
});

t('empty batch and zero input channels', async () => {
  const w = tensor(randomArray(4 * 3 * 9, 2), { shape: [4, 3, 3, 3] });
  const x0 = tensor(new Float32Array(0), { shape: [0, 3, 5, 5] });
  const y0 = await conv2d(x0, w, null, { padding: 1 });
  assert.equal(y0.shape, [0, 4, 5, 5]);
  const g0 = await conv2dBackward(tensor(new Float32Array(0), { shape: [0, 4, 5, 5] }), x0, w, { padding: 1, biasGrad: true });
  assert.equal(g0.dx!.shape, [0, 3, 5, 5]);
  assert.equal(Array.from(g0.dweight!.dataSync()), new Array(108).fill(0));
  assert.equal(Array.from(g0.dbias!.dataSync()), [0, 0, 0, 0]);
  // No input channels: the output is the bias alone.
  const y1 = await conv2d(tensor(new Float32Array(0), { shape: [1, 0, 2, 2] }), tensor(new Float32Array(0), { shape: [2, 0, 1, 1] }), tensor([5, -1]));
  assert.equal(Array.from(y1.dataSync()), [5, 5, 5, 5, -1, -1, -1, -1]);
});

t('upsample nearest 2x matches PyTorch forward and backward exactly', async () => {
  for (let i = 0; i < 2; i++) {
    const get = (k: string) => fixtureTensor(fx, `up${i}.${k}`);
    const y = await upsampleNearest2x(get('x'));
    assert.equal(y.shape, get('y').shape);
    assert.equal(y.dataSync(), get('y').dataSync(), `up ${i} y`);
    const dx = await upsampleNearest2xBackward(get('dy'));
    assert.equal(dx.shape, get('x').shape);
    assertClose(dx.dataSync(), get('dx').dataSync(), 1e-6, 1e-6, `up ${i} dx`);
  }
});

t('upsample nearest 2x: every output pixel is its source pixel; finite differences agree', async () => {
  const shape = [2, 3, 4, 5];
  const x0 = randomArray(120, 7);
  const y = (await upsampleNearest2x(tensor(x0, { shape }))).dataSync();
  for (let p = 0; p < 6; p++) {
    for (let i = 0; i < 8; i++) {
      for (let j = 0; j < 10; j++) assert.is(y[(p * 8 + i) * 10 + j], x0[(p * 4 + (i >> 1)) * 5 + (j >> 1)]);
    }
  }
  await gradcheck('dx', x0, shape, (x) => upsampleNearest2x(x), (dy) => upsampleNearest2xBackward(dy));
});

t('bad shapes, dtypes and attributes name the problem', async () => {
  const x = tensor(new Float32Array(75), { shape: [1, 3, 5, 5] });
  const w = tensor(new Float32Array(108), { shape: [4, 3, 3, 3] });
  await assertRejects(() => conv2d(tensor(new Float32Array(75), { shape: [3, 5, 5] }), w), 'SHAPE_MISMATCH', /conv2d_forward: x must be 4-D \[N, C, H, W\], got f32\[3, 5, 5\] on cpu/);
  await assertRejects(() => conv2d(x, tensor(new Float32Array(36), { shape: [4, 9] })), 'SHAPE_MISMATCH', /weight must be 4-D/, /f32\[4, 9\]/);
  await assertRejects(
    () => conv2d(x, tensor(new Float32Array(72), { shape: [4, 2, 3, 3] })),
    'SHAPE_MISMATCH',
    /in_channels \(dim 1\) must equal x's channels 3/,
    /x is f32\[1, 3, 5, 5\] on cpu, weight is f32\[4, 2, 3, 3\] on cpu/,
  );
  await assertRejects(() => conv2d(x, w, tensor([1, 2, 3])), 'SHAPE_MISMATCH', /conv2d_forward: bias must have shape \[4\], got f32\[3\] on cpu/);
  await assertRejects(() => conv2d(x, tensor(new Float32Array(108), { shape: [4, 3, 3, 3], dtype: 'bf16' })), 'DTYPE_MISMATCH', /weight is bf16\[4, 3, 3, 3\]/);
  await assertRejects(() => runOp('conv2d_forward', [tensor(new Float32Array(75), { shape: [1, 3, 5, 5], dtype: 'i32' }), w]), 'DTYPE_MISMATCH', /has dtype i32/);
  const h = (s: number[]) => tensor(new Float32Array(s.reduce((p, q) => p * q)), { shape: s, dtype: 'f16' });
  await assertRejects(() => conv2d(h([1, 3, 5, 5]), h([4, 3, 3, 3])), 'UNSUPPORTED', /conv2d_forward on cpu supports f32 only/);
  await assertRejects(() => upsampleNearest2x(h([1, 1, 2, 2])), 'UNSUPPORTED', /upsample_nearest2x_forward on cpu supports f32 only/);
  await assertRejects(
    () => conv2d(tensor(new Float32Array(12), { shape: [1, 3, 2, 2] }), w),
    'SHAPE_MISMATCH',
    /padded input is 2x2 \(x is f32\[1, 3, 2, 2\] on cpu, padding \[0, 0, 0, 0\]\) but the kernel is 3x3/,
  );
  await assertRejects(
    () => conv2dBackward(tensor(new Float32Array(75), { shape: [1, 3, 5, 5] }), x, w, { padding: 1 }),
    'SHAPE_MISMATCH',
    /conv2d_backward: dy must have shape \[1, 4, 5, 5\], got f32\[1, 3, 5, 5\] on cpu/,
  );
  await assertRejects(() => conv2dBackward(tensor(new Float32Array(100), { shape: [1, 4, 5, 5], dtype: 'bf16' }), x, w, { padding: 1 }), 'DTYPE_MISMATCH', /dy is bf16\[1, 4, 5, 5\]/);
  // Attributes, through the wrapper and straight to the native op.
  await assertRejects(() => conv2d(x, w, null, { padding: [1, 1] as unknown as Pad4 }), 'INVALID_ARGUMENT', /conv2d: padding must be a non-negative integer or \[top, bottom, left, right\], got \[number 1, number 1\]/);
  await assertRejects(() => conv2d(x, w, null, { padding: -1 }), 'INVALID_ARGUMENT', /padding must be/, /number -1/);
  await assertRejects(() => conv2d(x, w, null, { stride: 0 }), 'INVALID_ARGUMENT', /conv2d: stride must be a positive integer, got number 0/);
  await assertRejects(() => conv2dBackward(x, x, w, { stride: 1.5 }), 'INVALID_ARGUMENT', /conv2dBackward: stride must be a positive integer/);
  await assertRejects(() => conv2d(x, w, null, { pad: 1 } as never), 'INVALID_ARGUMENT', /unknown option 'pad'/);
  await assertRejects(() => runOp('conv2d_forward', [x, w], { padding: [1, 1] }), 'INVALID_ARGUMENT', /conv2d_forward: padding must be 4 non-negative integers \[top, bottom, left, right\], got \[1, 1\]/);
  await assertRejects(() => runOp('conv2d_forward', [x, w], { padding: [0, 0, -1, 0] }), 'INVALID_ARGUMENT', /got \[0, 0, -1, 0\]/);
  await assertRejects(() => runOp('conv2d_forward', [x, w], { stride: 0 }), 'INVALID_ARGUMENT', /conv2d_forward: stride must be a positive integer, got 0/);
  await assertRejects(() => runOp('conv2d_backward', [x, x, w], { stride: 1.5 }), 'INVALID_ARGUMENT', /conv2d_backward: stride must be an integer/);
  await assertRejects(() => runOp('conv2d_forward', [x]), 'INVALID_ARGUMENT', /input 1 \(weight\) is required/);
  await assertRejects(() => runOp('conv2d_backward', [null, x, w]), 'INVALID_ARGUMENT', /input 0 \(dy\) is required/);
  // Upsampling.
  await assertRejects(() => upsampleNearest2x(tensor(new Float32Array(6), { shape: [2, 3] })), 'SHAPE_MISMATCH', /upsample_nearest2x_forward: x must be 4-D \[N, C, H, W\], got f32\[2, 3\] on cpu/);
  await assertRejects(() => upsampleNearest2xBackward(tensor(new Float32Array(12), { shape: [1, 1, 3, 4] })), 'SHAPE_MISMATCH', /upsample_nearest2x_backward: dy's height and width must be even .*got f32\[1, 1, 3, 4\] on cpu/);
  await assertRejects(() => upsampleNearest2xBackward(tensor(new Float32Array(4), { shape: [1, 4] })), 'SHAPE_MISMATCH', /dy must be 4-D/);
});

t.run();
