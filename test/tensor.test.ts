// Tensors: creation from JavaScript data, dtypes and their conversions,
// metadata, reading back, dispose, and bad input.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { ImprintError, Tensor, tensor, full, zeros, ones } from '../lib/index.js';
import { assertRejects } from './helpers.js';

const create = suite('tensor creation');

create('nested arrays infer shape and default to f32', async () => {
  const t = tensor([[1, 2, 3], [4, 5, 6]]);
  assert.equal(t.shape, [2, 3]);
  assert.is(t.dtype, 'f32');
  assert.is(t.device, 'cpu');
  assert.is(t.numel, 6);
  assert.is(t.nbytes, 24);
  assert.equal(Array.from(t.dataSync()), [1, 2, 3, 4, 5, 6]);
  assert.equal(await t.toArray(), [[1, 2, 3], [4, 5, 6]]);
  t.dispose();
});

create('typed arrays keep their type; shape option reshapes flat data', () => {
  const cases: [ArrayLike<number> | BigInt64Array, string][] = [
    [new Float32Array([1.5, -2, 3, 4]), 'f32'],
    [new Int32Array([1, -2, 2147483647, -2147483648]), 'i32'],
    [new Uint8Array([0, 1, 254, 255]), 'u8'],
  ];
  for (const [data, dtype] of cases) {
    const t = tensor(data as Float32Array, { shape: [2, 2] });
    assert.is(t.dtype, dtype);
    assert.equal(t.shape, [2, 2]);
    assert.equal(Array.from(t.dataSync() as ArrayLike<number>), Array.from(data as ArrayLike<number>));
  }
  const big = tensor(new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n]));
  assert.is(big.dtype, 'i64');
  assert.equal(Array.from(big.dataSync() as BigInt64Array), [-(2n ** 63n), 2n ** 63n - 1n, 0n]);
});

create('scalars (shape []) and empty tensors', async () => {
  const s = tensor([5], { shape: [] });
  assert.equal(s.shape, []);
  assert.is(s.numel, 1);
  assert.equal(await s.toArray(), 5);
  const e = tensor(new Float32Array(0), { shape: [0, 3] });
  assert.is(e.numel, 0);
  assert.is(e.dataSync().length, 0);
});

create('the data is copied: later writes to the source do not change the tensor', () => {
  const src = new Float32Array([1, 2, 3]);
  const t = tensor(src);
  src[0] = 100;
  assert.is(t.dataSync()[0], 1);
});

create('full, zeros and ones for every dtype', async () => {
  for (const dtype of ['f32', 'f16', 'bf16', 'i32', 'i64', 'u8'] as const) {
    const t = await full([2, 3], 7, { dtype });
    assert.is(t.dtype, dtype);
    const values = Array.from(t.dataSync() as ArrayLike<number | bigint>, Number);
    assert.equal(values, [7, 7, 7, 7, 7, 7], dtype);
  }
  assert.equal(Array.from((await zeros([3])).dataSync()), [0, 0, 0]);
  assert.equal(Array.from((await ones([2], { dtype: 'bf16' })).dataSync()), [1, 1]);
  await assertRejects(() => full([2], 1.5, { dtype: 'i32' }), 'INVALID_ARGUMENT', /not representable as i32/);
  await assertRejects(() => full([2], 256, { dtype: 'u8' }), 'INVALID_ARGUMENT', /u8/);
});

const halves = suite('f16 and bf16');

// Bit patterns from the IEEE 754 binary16 and bfloat16 definitions, round to nearest even.
const F16_CASES: [number, number][] = [
  [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e6, 0x7c00], [-Infinity, 0xfc00],
  [2 ** -24, 0x0001], [2 ** -25, 0x0000], [1.5 * 2 ** -25, 0x0001], [2 ** -14, 0x0400], [0.1, 0x2e66],
  [1 / 3, 0x3555], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0, 0], [-0, 0x8000],
];
const BF16_CASES: [number, number][] = [
  [1, 0x3f80], [0.1, 0x3dcd], [1 + 2 ** -8, 0x3f80], [1 + 3 * 2 ** -8, 0x3f82], [-3.5, 0xc060],
  [3.4e38, 0x7f80], [Infinity, 0x7f80], [2 ** -133, 0x0001],
];

halves('f32 → f16 and bf16 round to nearest even (bit patterns)', () => {
  for (const [dtype, cases] of [['f16', F16_CASES], ['bf16', BF16_CASES]] as const) {
    const t = tensor(Float32Array.from(cases.map((c) => c[0])), { dtype });
    const bits = new Uint16Array(t.handle.dataSync());
    cases.forEach(([value, expected], i) => {
      assert.is(bits[i], expected, `${dtype}(${value}) = 0x${bits[i].toString(16)}, expected 0x${expected.toString(16)}`);
    });
  }
});

halves('NaN stays NaN; raw bits round-trip through Uint16Array', () => {
  const t = tensor(new Float32Array([NaN, 1]), { dtype: 'f16' });
  const back = t.dataSync();
  assert.ok(Number.isNaN(back[0]));
  assert.is(back[1], 1);
  const raw = tensor(new Uint16Array([0x3c00, 0x0001, 0x7bff]), { dtype: 'f16' });
  assert.equal(Array.from(raw.dataSync()), [1, 2 ** -24, 65504]);
  const rawBf = tensor(new Uint16Array([0x3f80, 0xc060]), { dtype: 'bf16' });
  assert.equal(Array.from(rawBf.dataSync()), [1, -3.5]);
});

halves('every f16 value survives f16 → f32 → f16', async () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i).filter((b) => (b & 0x7c00) !== 0x7c00 || (b & 0x3ff) === 0);
  const t = tensor(all, { dtype: 'f16' });
  const wide = await t.cast('f32');
  const narrow = await wide.cast('f16');
  assert.equal(Array.from(new Uint16Array(narrow.handle.dataSync())), Array.from(all));
});

const cast = suite('cast');

cast('float to int truncates toward zero, saturates, and maps NaN to 0', async () => {
  const t = tensor(new Float32Array([1.9, -1.9, 3e9, -3e9, NaN, 300, -5]));
  assert.equal(Array.from((await t.cast('i32')).dataSync()), [1, -1, 2147483647, -2147483648, 0, 300, -5]);
  assert.equal(Array.from((await t.cast('u8')).dataSync()), [1, 0, 255, 0, 0, 255, 0]);
  const i64 = await t.cast('i64');
  assert.equal(Array.from(i64.dataSync() as BigInt64Array).slice(0, 2), [1n, -1n]);
});

cast('int to float and same-dtype cast copies', async () => {
  const t = tensor(new Int32Array([16777217, -3]));
  assert.equal(Array.from((await t.cast('f32')).dataSync()), [16777216, -3]);
  const same = await t.cast('i32');
  assert.is.not(same.handle, t.handle);
  assert.equal(Array.from(same.dataSync()), [16777217, -3]);
});

const lifetime = suite('dispose');

lifetime('dispose frees, is idempotent, and use after dispose is a DISPOSED error', async () => {
  const t = tensor([1, 2, 3]);
  assert.is(t.disposed, false);
  t.dispose();
  t.dispose();
  assert.is(t.disposed, true);
  assert.match(String(t), /disposed/);
  assert.equal(t.shape, [3], 'metadata stays readable');
  await assertRejects(() => t.data(), 'DISPOSED', /dataSync/, /f32\[3\] on cpu/);
  await assertRejects(() => t.add(t), 'DISPOSED', /add/, /after dispose/);
  await assertRejects(() => t.cast('f16'), 'DISPOSED');
});

lifetime('`using` disposes at the end of the scope', () => {
  let t: Tensor;
  {
    using scoped = tensor([1]);
    t = scoped;
    assert.is(t.disposed, false);
  }
  assert.is(t.disposed, true);
});

const bad = suite('bad input to tensor()');

bad('wrong data, shapes and options name the problem', async () => {
  const cases: [() => unknown, RegExp][] = [
    [() => tensor('abc' as never), /data must be a typed array/],
    [() => tensor([[1, 2], [3]]), /ragged nested array at data\[1\]/],
    [() => tensor([[1, 'x' as never]]), /element data\[0\]\[1\] is 'x'/],
    [() => tensor([1], { shape: [-1] }), /shape\[0\] must be a non-negative integer/],
    [() => tensor([1], { shape: [1.5] }), /shape\[0\]/],
    [() => tensor([1], { dtype: 'f64' as never }), /dtype must be one of/],
    [() => tensor([1], { device: 'cpu' } as never), /unknown option 'device'/],
    [() => tensor(new Uint16Array(2)), /raw half-precision bits/],
    [() => tensor([1.5], { dtype: 'i32' }), /1.5 is not a valid i32 value/],
    [() => tensor([1], 5 as never), /options must be an object/],
    [() => tensor([1], { shape: [1, 1, 1, 1, 1, 1, 1, 1, 1] }), /more than 8 dimensions/],
  ];
  for (const [fn, pattern] of cases) await assertRejects(fn, 'INVALID_ARGUMENT', pattern);
  await assertRejects(() => tensor([1, 2, 3], { shape: [2, 2] }), 'SHAPE_MISMATCH', /12 bytes of f32 data do not fill shape \[2, 2\]/);
});

bad('a Tensor cannot be constructed from a foreign object', () => {
  try {
    new Tensor({} as never);
    assert.unreachable();
  } catch (e) {
    assert.instance(e, ImprintError);
  }
});

create.run();
halves.run();
cast.run();
lifetime.run();
bad.run();
