// matmul, add, mul and sum against plain-JavaScript double-precision references.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { add, matmul, mul, sum, tensor, type DType } from '../lib/index.js';
import { assertClose, assertRejects, numel, randomArray, refBinary, refMatmul } from './helpers.js';

const DEVICE = process.env.IMPRINT_TEST_DEVICE ?? 'cpu';
const onDevice = async (data: Float32Array, shape: number[], dtype: DType = 'f32') => {
  const t = tensor(data, { shape, dtype });
  return DEVICE === 'cpu' ? t : t.to(DEVICE);
};

// Tolerances: f32 with f32 accumulation; f16/bf16 inputs are compared against
// the reference computed on the same rounded inputs, so only output rounding
// (2^-11 and 2^-8 relative) remains.
const TOL: Record<string, [number, number]> = { f32: [1e-5, 1e-5], f16: [2e-3, 2e-3], bf16: [1e-2, 1e-2] };

const mm = suite(`matmul (${DEVICE})`);

const MATMUL_CASES: { a: number[]; b: number[]; ta?: boolean; tb?: boolean }[] = [
  { a: [1, 1], b: [1, 1] },
  { a: [3, 5], b: [5, 7] },
  { a: [17, 33], b: [33, 9] },
  { a: [64, 128], b: [128, 65] },
  { a: [5, 3], b: [5, 7], ta: true },
  { a: [3, 5], b: [7, 5], tb: true },
  { a: [5, 3], b: [7, 5], ta: true, tb: true },
  { a: [4, 3, 5], b: [4, 5, 2] },
  { a: [2, 1, 3, 5], b: [3, 5, 4] },
  { a: [6, 8], b: [2, 3, 8, 4] },
  { a: [2, 40, 77], b: [2, 40, 77], tb: true },
];

mm('f32 shapes, transposes and broadcast batches match the reference', async () => {
  for (const [i, c] of MATMUL_CASES.entries()) {
    const ad = randomArray(numel(c.a), 10 + i);
    const bd = randomArray(numel(c.b), 100 + i);
    const a = await onDevice(ad, c.a);
    const b = await onDevice(bd, c.b);
    const out = await matmul(a, b, { transposeA: c.ta, transposeB: c.tb });
    const ref = refMatmul(ad, c.a, bd, c.b, c.ta, c.tb);
    assert.equal(out.shape, ref.shape, `case ${i} shape`);
    assertClose(await out.data() as Float32Array, ref.out, ...TOL.f32, `case ${i}`);
  }
});

mm('f16 and bf16 accumulate in f32', async () => {
  for (const dtype of ['f16', 'bf16'] as const) {
    const shapeA = [3, 37, 64];
    const shapeB = [3, 64, 21];
    const a = await onDevice(randomArray(numel(shapeA), 1), shapeA, dtype);
    const b = await onDevice(randomArray(numel(shapeB), 2), shapeB, dtype);
    const out = await matmul(a, b);
    assert.is(out.dtype, dtype);
    // Reference on the rounded inputs, read back as f32.
    const ref = refMatmul(await a.data() as Float32Array, shapeA, await b.data() as Float32Array, shapeB);
    assertClose(await out.data() as Float32Array, ref.out, ...TOL[dtype], dtype);
  }
});

mm('a large product (k = 1000) stays accurate', async () => {
  const [m, k, n] = [96, 1000, 80];
  const ad = randomArray(m * k, 7);
  const bd = randomArray(k * n, 8);
  const out = await matmul(await onDevice(ad, [m, k]), await onDevice(bd, [k, n]));
  assertClose(await out.data() as Float32Array, refMatmul(ad, [m, k], bd, [k, n]).out, 1e-4, 1e-4, 'k=1000');
});

mm('k = 0 gives zeros; an empty batch gives an empty result', async () => {
  const z = await matmul(await onDevice(new Float32Array(0), [2, 0]), await onDevice(new Float32Array(0), [0, 3]));
  assert.equal(z.shape, [2, 3]);
  assert.equal(Array.from(await z.data() as Float32Array), [0, 0, 0, 0, 0, 0]);
  const e = await matmul(await onDevice(new Float32Array(0), [0, 2, 2]), await onDevice(new Float32Array(4), [2, 2]));
  assert.equal(e.shape, [0, 2, 2]);
});

mm('errors name op, shapes, dtypes and device', async () => {
  const a = await onDevice(new Float32Array(6), [2, 3]);
  const b = await onDevice(new Float32Array(8), [2, 4]);
  await assertRejects(() => matmul(a, b), 'SHAPE_MISMATCH', /matmul: inner dimensions differ, 3 vs 2/, /a is f32\[2, 3\]/, /b is f32\[2, 4\]/);
  await assertRejects(async () => matmul(a, await onDevice(new Float32Array(3), [3])), 'SHAPE_MISMATCH', /at least 2 dimensions/);
  const c = await onDevice(new Float32Array(24), [2, 3, 4]);
  const d = await onDevice(new Float32Array(24), [3, 4, 2]);
  await assertRejects(() => matmul(c, d), 'SHAPE_MISMATCH', /batch dimensions \[2\] and \[3\] do not broadcast/);
  const h = await onDevice(new Float32Array(12), [3, 4], 'f16');
  await assertRejects(() => matmul(a, h), 'DTYPE_MISMATCH', /dtypes differ/, /f16\[3, 4\]/);
  const ints = tensor(new Int32Array(4), { shape: [2, 2] });
  await assertRejects(() => matmul(ints, ints), 'DTYPE_MISMATCH', /i32\[2, 2\] on cpu has dtype i32; this op supports f32, f16 and bf16/);
  if (DEVICE !== 'cpu') await assertRejects(() => matmul(a, tensor(new Float32Array(12), { shape: [3, 4] })), 'DEVICE_MISMATCH', /different devices/);
  await assertRejects(() => matmul(a, b, { transposeA: 'yes' as never }), 'INVALID_ARGUMENT', /transposeA must be a boolean/);
  await assertRejects(() => matmul(a, [1, 2] as never), 'INVALID_ARGUMENT', /b must be a Tensor/);
  await assertRejects(() => matmul(a, b, { transpose: true } as never), 'INVALID_ARGUMENT', /unknown option 'transpose'/);
});

const ew = suite(`add and mul (${DEVICE})`);

const BROADCASTS: [number[], number[]][] = [
  [[7], [7]],
  [[2, 3], [3]],
  [[2, 1, 4], [3, 1]],
  [[1], [5, 2]],
  [[], [2, 2]],
  [[4, 1, 3, 1], [1, 5, 1, 6]],
  [[1000], [1000]],
];

ew('broadcasting matches the reference for add and mul', async () => {
  for (const [i, [sa, sb]] of BROADCASTS.entries()) {
    const ad = randomArray(numel(sa), 20 + i);
    const bd = randomArray(numel(sb), 40 + i);
    const a = await onDevice(ad, sa);
    const b = await onDevice(bd, sb);
    for (const [name, op, f] of [['add', add, (x: number, y: number) => x + y], ['mul', mul, (x: number, y: number) => x * y]] as const) {
      const out = await op(a, b);
      const ref = refBinary(ad, sa, bd, sb, f);
      assert.equal(out.shape, ref.shape, `${name} ${i}`);
      assertClose(await out.data() as Float32Array, ref.out, 1e-6, 1e-7, `${name} ${sa}/${sb}`);
    }
  }
});

ew('integers wrap around like two\'s complement; half types round the f32 result', async () => {
  const big = await (DEVICE === 'cpu' ? tensor(new Int32Array([2147483647, -2147483648, 65536])) : tensor(new Int32Array([2147483647, -2147483648, 65536])).to(DEVICE));
  assert.equal(Array.from(await (await add(big, big)).data() as Int32Array), [-2, 0, 131072]);
  assert.equal(Array.from(await (await mul(big, big)).data() as Int32Array), [1, 0, 0]);
  const bytes = tensor(new Uint8Array([200, 3]));
  const bytesHere = DEVICE === 'cpu' ? bytes : await bytes.to(DEVICE);
  assert.equal(Array.from(await (await add(bytesHere, bytesHere)).data() as Uint8Array), [144, 6]);
  const h = await onDevice(new Float32Array([1, 2048]), [2], 'f16');
  const one = await onDevice(new Float32Array([2 ** -11, 1]), [2], 'f16');
  // 1 + 2^-11 ties to 1 (even); 2048 + 1 ties to 2048 in f16.
  assert.equal(Array.from(await (await add(h, one)).data() as Float32Array), [1, 2048]);
});

ew('shape and dtype errors', async () => {
  const a = await onDevice(new Float32Array(6), [2, 3]);
  const b = await onDevice(new Float32Array(4), [4]);
  await assertRejects(() => add(a, b), 'SHAPE_MISMATCH', /add: shapes \[2, 3\] and \[4\] do not broadcast/);
  const ints = tensor(new Int32Array(3));
  await assertRejects(async () => mul(a, DEVICE === 'cpu' ? ints : await ints.to(DEVICE)), 'DTYPE_MISMATCH', /mul: dtypes differ/, /i32\[3\]/);
});

const red = suite(`sum (${DEVICE})`);

red('over all dims, one dim, several dims, negative dims and keepDim', async () => {
  const shape = [3, 4, 5];
  const data = randomArray(60, 3);
  const t = await onDevice(data, shape);
  const at = (i: number, j: number, k: number) => data[i * 20 + j * 5 + k];
  const total = Array.from(data).reduce((s, v) => s + v, 0);
  assertClose(await (await sum(t)).data() as Float32Array, [total], 1e-5, 1e-5, 'all');
  assert.equal((await sum(t)).shape, []);

  const d1 = await sum(t, { dim: 1 });
  assert.equal(d1.shape, [3, 5]);
  const ref1: number[] = [];
  for (let i = 0; i < 3; i++) for (let k = 0; k < 5; k++) ref1.push([0, 1, 2, 3].reduce((s, j) => s + at(i, j, k), 0));
  assertClose(await d1.data() as Float32Array, ref1, 1e-5, 1e-6, 'dim 1');

  const d02 = await sum(t, { dim: [0, -1], keepDim: true });
  assert.equal(d02.shape, [1, 4, 1]);
  const ref02 = [0, 1, 2, 3].map((j) => [0, 1, 2].reduce((s, i) => s + [0, 1, 2, 3, 4].reduce((u, k) => u + at(i, j, k), 0), 0));
  assertClose(await d02.data() as Float32Array, ref02, 1e-5, 1e-6, 'dims 0,2');
});

red('accumulates accurately: a million times 0.1', async () => {
  const t = await onDevice(new Float32Array(1_000_000).fill(0.1), [1_000_000]);
  const [s] = await (await sum(t)).data() as Float32Array;
  // f32(0.1) * 1e6 = 100000.0015; naive f32 accumulation would be off by ~1%.
  assert.ok(Math.abs(s - 100000.0015) < 0.05, `sum = ${s}`);
});

red('integers sum into i64; empty dims sum to zero', async () => {
  const ints = tensor(new Int32Array([2147483647, 2147483647, 5]));
  const s = await sum(DEVICE === 'cpu' ? ints : await ints.to(DEVICE));
  assert.is(s.dtype, 'i64');
  assert.equal(Array.from(await s.data() as BigInt64Array), [4294967299n]);
  const empty = await sum(await onDevice(new Float32Array(0), [3, 0]), { dim: 1 });
  assert.equal(Array.from(await empty.data() as Float32Array), [0, 0, 0]);
});

red('bad dims are errors', async () => {
  const t = await onDevice(new Float32Array(6), [2, 3]);
  await assertRejects(() => sum(t, { dim: 2 }), 'INVALID_ARGUMENT', /dim 2 is out of range for f32\[2, 3\]/);
  await assertRejects(() => sum(t, { dim: [0, -2] }), 'INVALID_ARGUMENT', /listed twice/);
  await assertRejects(() => sum(t, { dim: 0.5 }), 'INVALID_ARGUMENT', /dim must be an integer/);
});

mm.run();
ew.run();
red.run();
