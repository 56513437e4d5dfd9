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

/** Runs a script in a child process under `env`: its stdout, trimmed. */
function childOutput(script: string, env: Record<string, string>): { stdout: string; stderr: string; status: number | null } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)), env: { ...process.env, ...env }, encoding: 'utf8',
  });
  return { stdout: r.stdout.trim(), stderr: r.stderr, status: r.status };
}

dev('IMPRINT_CPU_ISA caps the kernels\' instruction set and IMPRINT_BLAS=none the GEMM library, at load; the built-in GEMM gives the same bits at every width', () => {
  const script = `
    import { createHash } from 'node:crypto';
    import { buildInfo, devices, matmul, tensor } from './lib/index.js';
    const [m, k, n] = [70, 300, 90];
    const a = tensor(Float32Array.from({ length: m * k }, (_, i) => Math.sin(i * 0.37)), { shape: [m, k] });
    const b = tensor(Float32Array.from({ length: k * n }, (_, i) => Math.cos(i * 0.11)), { shape: [k, n] });
    const c = await matmul(a, b);
    console.log(JSON.stringify({ simd: devices().cpu.simd, detected: devices().cpu.simdDetected, blas: buildInfo().blas,
      digest: createHash('sha256').update(c.dataSync()).digest('hex') }));`;
  const best = JSON.parse(childOutput(script, { IMPRINT_BLAS: 'none' }).stdout);
  const down = JSON.parse(childOutput(script, { IMPRINT_BLAS: 'none', IMPRINT_CPU_ISA: 'sse2' }).stdout);
  assert.is(best.simd, best.detected, 'unset: the CPU\'s best');
  assert.is(down.simd, /^(neon|none)$/.test(best.detected) ? best.detected : 'sse2', 'forced down');
  assert.is(down.detected, best.detected);
  assert.match(best.blas, /^imprint \(built-in/, 'IMPRINT_BLAS=none: the built-in GEMM');
  assert.is(down.digest, best.digest, 'each element sums in the same order at any vector width');
  const bad = childOutput(script, { IMPRINT_CPU_ISA: 'avx9000' });
  assert.is.not(bad.status, 0);
  assert.match(bad.stderr, /IMPRINT_CPU_ISA=avx9000 is not one of avx512, avx2/);
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
