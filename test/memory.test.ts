// Memory accounting per device, the memory limit, out-of-memory errors that
// leave the process running, and the garbage-collection safety net.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { emptyCache, full, memoryStats, resetPeakMemory, setMemoryLimit, tensor, zeros } from '../lib/index.js';
import { assertRejects, settleGarbage } from './helpers.js';

const mem = suite('memory');

mem.before.each(async () => {
  await settleGarbage();
});

mem('live and peak bytes follow allocation and dispose', async () => {
  const before = memoryStats('cpu');
  resetPeakMemory('cpu');
  const t = await zeros([1000, 250]); // 1 MB
  const during = memoryStats('cpu');
  assert.is(during.liveBytes - before.liveBytes, 1_000_000);
  assert.is(during.liveAllocations - before.liveAllocations, 1);
  assert.ok(during.peakBytes >= during.liveBytes);
  t.dispose();
  const after = memoryStats('cpu');
  assert.is(after.liveBytes, before.liveBytes);
  assert.is(after.peakBytes, during.peakBytes, 'peak remembers the high-water mark');
  assert.ok(after.deviceTotalBytes > 0 && after.deviceFreeBytes > 0);
});

mem('a memory limit turns allocations past it into OUT_OF_MEMORY, and the process goes on', async () => {
  const live = memoryStats('cpu').liveBytes;
  setMemoryLimit('cpu', live + 1_000_000);
  try {
    const ok = await zeros([100_000]); // 400 kB fits
    await assertRejects(() => zeros([1000, 1000]), 'OUT_OF_MEMORY', /cannot allocate 3\.8\d* MiB/, /limit of/, /on cpu/);
    assert.throws(() => tensor(new Float32Array(500_000)), /out of memory/);
    assert.is(memoryStats('cpu').liveBytes, live + 400_000, 'a refused allocation holds nothing');
    ok.dispose();
  } finally {
    setMemoryLimit('cpu', 0);
  }
  const big = await zeros([1000, 1000]);
  assert.is(big.numel, 1_000_000);
  big.dispose();
});

mem('sizes beyond any memory are refused before allocating', async () => {
  await assertRejects(() => full([2 ** 26, 2 ** 26, 2 ** 4], 1), 'OUT_OF_MEMORY', /too large to address/);
  // Within addressing, beyond this machine: the allocator's failure is an error too.
  await assertRejects(() => zeros([2 ** 20, 2 ** 20, 256]), 'OUT_OF_MEMORY', /cannot allocate/);
});

mem('tensors dropped without dispose are freed by the garbage collector', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  assert.ok(gc, 'run the tests with node --expose-gc (npm test does)');
  const before = memoryStats('cpu');
  let held: unknown[] | null = [];
  for (let i = 0; i < 20; i++) held.push(await zeros([1024, 256])); // 1 MiB each, never disposed
  assert.ok(memoryStats('cpu').liveBytes >= before.liveBytes + 20 * 2 ** 20);
  held = null; // now unreachable
  for (let i = 0; i < 10 && memoryStats('cpu').liveBytes > before.liveBytes; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 10));
  }
  const after = memoryStats('cpu');
  assert.ok(after.liveBytes <= before.liveBytes, `live bytes ${after.liveBytes} vs ${before.liveBytes} before`);
  assert.ok(after.collectedWithoutDispose >= before.collectedWithoutDispose + 20);
});

mem('large freed blocks are cached for reuse and given back by emptyCache', async () => {
  emptyCache('cpu');
  assert.is(memoryStats('cpu').cachedBytes, 0);
  const a = await zeros([1024, 1024]); // 4 MiB
  a.dispose();
  const cached = memoryStats('cpu').cachedBytes;
  assert.ok(cached >= 4 * 2 ** 20, `cached ${cached}`);
  const b = await full([1024, 1024], 3); // same size class: takes the cached block
  assert.ok(memoryStats('cpu').cachedBytes < cached, 'the cached block was reused');
  assert.equal(Array.from(b.dataSync().subarray(0, 3)), [3, 3, 3], 'a reused block holds the new values');
  b.dispose();
  emptyCache('cpu');
  assert.is(memoryStats('cpu').cachedBytes, 0);
});

mem('bad arguments', async () => {
  await assertRejects(() => memoryStats('gpu'), 'INVALID_ARGUMENT', /device must be 'cpu', 'cuda' or 'cuda:N'/);
  await assertRejects(() => setMemoryLimit('cpu', -1), 'INVALID_ARGUMENT', /non-negative integer/);
});

mem.run();
