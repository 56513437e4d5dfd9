// Devices and the build: what devices() reports, the thread pool, and what a
// CUDA request does on a machine or build without CUDA.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { buildInfo, devices, matmul, memoryStats, numThreads, randn, setNumThreads, tensor, zeros } from '../lib/index.js';
import { assertRejects } from './helpers.js';

const dev = suite('devices');

dev('devices() describes the CPU and the CUDA capability', () => {
  const { cpu, cuda } = devices();
  assert.ok(cpu.cores >= 1);
  assert.is(cpu.threads, numThreads());
  assert.match(cpu.simd, /^(avx512|avx2|avx|sse4\.2|sse2|neon|none)$/);
  assert.is(cuda.built, buildInfo().cuda);
  if (cuda.available) {
    assert.ok(cuda.devices.length > 0);
    for (const d of cuda.devices) {
      assert.match(d.computeCapability, /^\d+\.\d+$/);
      assert.ok(d.totalMemory > 0 && d.name.length > 0);
    }
  } else {
    assert.is(cuda.devices.length, 0);
    assert.type(cuda.reason, 'string');
    assert.ok(cuda.reason!.length > 10, 'the reason says why');
    if (!cuda.built) assert.match(cuda.reason!, /compiled without CUDA/);
  }
});

dev('buildInfo names the CPU GEMM', () => {
  assert.match(buildInfo().blas, /OpenBLAS|imprint/);
});

dev('a CUDA request without a usable GPU is an error naming the reason, never a crash', async () => {
  const { cuda } = devices();
  if (cuda.available) {
    const n = cuda.devices.length;
    await assertRejects(() => zeros([2], { device: `cuda:${n}` }), 'INVALID_ARGUMENT', new RegExp(`cuda:${n} does not exist`));
    return;
  }
  const code = cuda.built ? 'CUDA_UNAVAILABLE' : 'CUDA_NOT_BUILT';
  await assertRejects(() => zeros([2], { device: 'cuda' }), code, /cuda:0/);
  await assertRejects(() => tensor([1]).to('cuda:1'), code);
  await assertRejects(() => randn([2], { device: 'cuda:0', seed: 1 }), code);
  await assertRejects(() => memoryStats('cuda:0'), code);
  // Still healthy afterwards.
  assert.equal(Array.from((await zeros([2])).dataSync()), [0, 0]);
});

dev('the thread pool size can change and results do not depend on it', async () => {
  const a = await randn([300, 200], { seed: 11 });
  const b = await randn([200, 100], { seed: 12 });
  const original = numThreads();
  const reference = (await matmul(a, b)).dataSync();
  try {
    setNumThreads(1);
    assert.is(numThreads(), 1);
    const single = (await matmul(a, b)).dataSync();
    for (let i = 0; i < single.length; i++) assert.ok(Math.abs(single[i] - reference[i]) < 1e-4);
  } finally {
    setNumThreads(original);
  }
  assert.is(numThreads(), original);
  await assertRejects(() => setNumThreads(0), 'INVALID_ARGUMENT', /from 1 to 1024/);
});

dev('IMPRINT_NUM_THREADS sizes the pool', () => {
  const lib = fileURLToPath(new URL('../lib/index.ts', import.meta.url));
  const child = spawnSync(process.execPath, ['--import', 'tsx', '-e', `import('${lib}').then(m => console.log(m.numThreads()))`], {
    env: { ...process.env, IMPRINT_NUM_THREADS: '3' },
    encoding: 'utf8',
  });
  assert.is(child.status, 0, child.stderr);
  assert.is(child.stdout.trim(), '3');
});

dev.run();
