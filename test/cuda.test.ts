// CUDA parity: every op on the GPU against the CPU reference, and the RNG bit
// for bit. Runs where a GPU is usable; elsewhere these tests are reported as
// skipped (device.test.ts checks what a CUDA request does without a GPU).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { add, devices, matmul, memoryStats, mul, rand, randn, sum, tensor, type FloatDType, type Tensor } from '../lib/index.js';
import { assertClose, assertRejects, numel, randomArray } from './helpers.js';

const cuda = devices().cuda;
const gpu = suite(`cuda parity${cuda.available ? '' : ` (skipped: ${cuda.reason})`}`);
const it = cuda.available ? gpu : gpu.skip;
const DEV = 'cuda:0';

async function both(data: Float32Array, shape: number[], dtype: FloatDType = 'f32'): Promise<[Tensor<FloatDType>, Tensor<FloatDType>]> {
  const cpu = tensor(data, { shape, dtype });
  return [cpu, await cpu.to(DEV)];
}

it('copies round-trip between host and device for every dtype', async () => {
  const sources = [
    tensor(randomArray(1000, 1)), tensor(randomArray(10, 2), { dtype: 'f16' }), tensor(randomArray(10, 3), { dtype: 'bf16' }),
    tensor(new Int32Array([1, -2, 3])), tensor(new BigInt64Array([1n, -(2n ** 62n)])), tensor(new Uint8Array([0, 255])),
  ];
  for (const t of sources) {
    const back = await (await t.to(DEV)).to('cpu');
    assert.equal(Array.from(back.dataSync() as ArrayLike<unknown>), Array.from(t.dataSync() as ArrayLike<unknown>), t.dtype);
  }
});

it('matmul matches the CPU in f32, f16 and bf16, with transposes and broadcast batches', async () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[1, 1], [1, 1], false, false], [[65, 130], [130, 67], false, false], [[3, 40, 77], [3, 40, 64], true, false],
    [[2, 1, 33, 17], [4, 19, 17], false, true], [[8, 256, 40], [8, 77, 40], false, true],
  ];
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    for (const [i, [sa, sb, ta, tb]] of cases.entries()) {
      const [a, ag] = await both(randomArray(numel(sa), i), sa, dtype);
      const [b, bg] = await both(randomArray(numel(sb), 50 + i), sb, dtype);
      const ref = await matmul(a, b, { transposeA: ta, transposeB: tb });
      const out = await matmul(ag, bg, { transposeA: ta, transposeB: tb });
      assert.equal(out.shape, ref.shape);
      const tol = dtype === 'f32' ? 1e-5 : dtype === 'f16' ? 2e-3 : 1e-2;
      assertClose(await out.data(), ref.dataSync(), tol, tol, `${dtype} case ${i}`);
    }
  }
});

it('add, mul, sum and cast match the CPU', async () => {
  const [a, ag] = await both(randomArray(4 * 5 * 6, 1), [4, 5, 6]);
  const [b, bg] = await both(randomArray(5 * 1, 2), [5, 1]);
  for (const op of [add, mul]) assert.equal(Array.from(await (await op(ag, bg)).data()), Array.from((await op(a, b)).dataSync()));
  for (const dim of [undefined, 0, [1, 2], -1]) {
    assertClose(await (await sum(ag, { dim })).data(), (await sum(a, { dim })).dataSync(), 1e-6, 1e-6, `sum ${dim}`);
  }
  const big = tensor(new Float32Array([1.5, -1.5, 3e9, NaN, 70000]));
  for (const dtype of ['i32', 'u8', 'f16', 'bf16', 'i64'] as const) {
    const here = await big.cast(dtype);
    const there = await (await (await big.to(DEV)).cast(dtype)).to('cpu');
    assert.equal(Array.from(there.dataSync() as ArrayLike<unknown>), Array.from(here.dataSync() as ArrayLike<unknown>), dtype);
  }
});

it('rand and randn are bit-identical to the CPU for the same seed and offset', async () => {
  for (const dtype of ['f32', 'bf16', 'f16'] as const) {
    const opts = { seed: 123456789n, offset: 7, dtype };
    const c = await randn([100_003], opts);
    const g = await randn([100_003], { ...opts, device: DEV });
    assert.equal(Array.from(await g.data()), Array.from(c.dataSync()), `randn ${dtype}`);
    const cu = await rand([1001], { ...opts, low: -3, high: 5 });
    const gu = await rand([1001], { ...opts, low: -3, high: 5, device: DEV });
    assert.equal(Array.from(await gu.data()), Array.from(cu.dataSync()), `rand ${dtype}`);
  }
});

it('mixing devices is a DEVICE_MISMATCH naming both; GPU memory is accounted', async () => {
  const [a, ag] = await both(new Float32Array(6), [2, 3]);
  await assertRejects(() => add(a, ag), 'DEVICE_MISMATCH', /on cpu/, /on cuda:0/);
  const before = memoryStats(DEV).liveBytes;
  const t = await randn([1024, 1024], { seed: 1, device: DEV });
  assert.is(memoryStats(DEV).liveBytes - before, 4 * 2 ** 20);
  t.dispose();
  assert.is(memoryStats(DEV).liveBytes, before);
  assert.ok(memoryStats(DEV).deviceTotalBytes > 0);
});

it('an allocation larger than the GPU is OUT_OF_MEMORY naming the free memory, and the GPU stays usable', async () => {
  await assertRejects(() => randn([2 ** 20, 2 ** 20, 64], { seed: 1, device: DEV }), 'OUT_OF_MEMORY', /cuda:0/, /free of/);
  const ok = await sum(await randn([1000], { seed: 2, device: DEV }));
  assert.is((await ok.data()).length, 1);
});

gpu.run();
