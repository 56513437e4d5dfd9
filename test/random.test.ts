// Philox RNG: known-answer vectors, the documented stream layout, and the
// uniform and normal transforms against a double-precision reference.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { rand, randn } from '../lib/index.js';
import { native } from '../lib/native.js';
import { assertClose, assertRejects } from './helpers.js';

const rng = suite('philox');

rng('Philox4x32-10 matches the Random123 known-answer vectors', () => {
  const hex = (ws: number[]) => ws.map((w) => w.toString(16).padStart(8, '0'));
  assert.equal(hex(native.philoxBlock([0, 0, 0, 0], [0, 0])), ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
  const ones = 0xffffffff;
  assert.equal(hex(native.philoxBlock([ones, ones, ones, ones], [ones, ones])), ['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
  assert.equal(
    hex(native.philoxBlock([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    ['d16cfe09', '94fdcceb', '5001e420', '24126ea1'],
  );
});

// Element i of a stream is lane i%4 of block (offset + i/4), key = seed.
function block(seed: bigint, index: bigint): number[] {
  const lo = (x: bigint) => Number(x & 0xffffffffn);
  const hi = (x: bigint) => Number((x >> 32n) & 0xffffffffn);
  return native.philoxBlock([lo(index), hi(index), 0, 0], [lo(seed), hi(seed)]);
}

rng('rand follows the stream layout: 24-bit uniforms in [0, 1)', async () => {
  const seed = 0x1234_5678_9abcn;
  const t = await rand([10], { seed, offset: 3 });
  const expected = Array.from({ length: 10 }, (_, i) => (block(seed, 3n + BigInt(i >> 2))[i & 3] >>> 8) / 2 ** 24);
  assert.equal(Array.from(t.dataSync()), expected);
});

rng('randn is Box-Muller on lane pairs, within 2e-6 of a double-precision reference', async () => {
  const seed = 42n;
  const n = 4096;
  const t = await randn([n], { seed });
  const expected = Array.from({ length: n }, (_, i) => {
    const b = block(seed, BigInt(i >> 2));
    const pair = i & 2;
    const u1 = ((b[pair] >>> 8) + 1) / 2 ** 24;
    const u2 = (b[pair + 1] >>> 8) / 2 ** 24;
    const r = Math.sqrt(-2 * Math.log(u1));
    return (i & 1) ? r * Math.sin(2 * Math.PI * u2) : r * Math.cos(2 * Math.PI * u2);
  });
  assertClose(t.dataSync(), expected, 2e-6, 2e-6, 'randn');
});

rng('same seed and offset repeat; offsets continue a stream; seeds differ', async () => {
  const a = Array.from((await randn([64], { seed: 7 })).dataSync());
  const b = Array.from((await randn([64], { seed: 7 })).dataSync());
  assert.equal(a, b);
  const tail = Array.from((await randn([16], { seed: 7, offset: 12 })).dataSync());
  assert.equal(tail, a.slice(48), 'offset k starts at element 4k');
  const other = Array.from((await randn([64], { seed: 8 })).dataSync());
  assert.ok(other.some((v, i) => v !== a[i]));
});

rng('moments: uniform mean 1/2 var 1/12; normal mean, std and affine options', async () => {
  const n = 200_000;
  const u = (await rand([n], { seed: 1, low: -2, high: 4 })).dataSync();
  let mean = 0;
  for (const v of u) mean += v / n;
  assert.ok(Math.abs(mean - 1) < 0.03, `uniform mean ${mean}`);
  assert.ok(u.every((v) => v >= -2 && v < 4));
  const z = (await randn([n], { seed: 2, mean: 3, std: 0.5 })).dataSync();
  let m = 0;
  let s2 = 0;
  for (const v of z) m += v / n;
  for (const v of z) s2 += (v - m) ** 2 / n;
  assert.ok(Math.abs(m - 3) < 0.01, `normal mean ${m}`);
  assert.ok(Math.abs(Math.sqrt(s2) - 0.5) < 0.01, `normal std ${Math.sqrt(s2)}`);
});

rng('half-precision output is the rounded f32 stream', async () => {
  const f32 = await randn([100], { seed: 5 });
  const bf = await randn([100], { seed: 5, dtype: 'bf16' });
  const rounded = await f32.cast('bf16');
  assert.equal(Array.from(bf.dataSync()), Array.from(rounded.dataSync()));
});

rng('bad options', async () => {
  await assertRejects(() => rand([2], { dtype: 'i32' as never }), 'DTYPE_MISMATCH', /rand: dtype i32 is not supported/);
  await assertRejects(() => randn([2], { seed: -1 }), 'INVALID_ARGUMENT', /seed must be a non-negative integer/);
  await assertRejects(() => randn([2], { seed: 2n ** 64n }), 'INVALID_ARGUMENT', /seed must be in \[0, 2\^64\)/);
  await assertRejects(() => rand([2], { low: 1, high: 1 }), 'INVALID_ARGUMENT', /high \(1\) must be greater than low \(1\)/);
  await assertRejects(() => randn([2], { std: -1 }), 'INVALID_ARGUMENT', /std must not be negative/);
  // The addon itself refuses bad arguments too, for callers that bypass lib/.
  await assertRejects(() => native.randn([2], 'f32', 'cpu', -5, 0, 0, 1), 'INVALID_ARGUMENT', /seed/);
});

rng.run();
