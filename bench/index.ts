// npm run bench -- [suite] [--out FILE]
// Suites: all (default), cpu, cuda, matmul, elementwise, nn (every nn family)
// and each nn family alone: conv, norm, act, attn, misc, linear; train (UNet
// training steps, bench/train.ts); concepts (compressing an SD1.5 concept's ΔW
// by truncated SVD, LAPACK against lib's JavaScript routines, bench/concepts.ts;
// all and cpu run it without the whole concept's 2-minute JavaScript peer);
// methods (seconds per step of Custom Diffusion and Cones on the world model, bench/methods.ts).
// The nn op families run on the CPU only for
// now; on a usable GPU, cuda (and all, train) add SD1.5-shaped UNet forwards
// and Custom Diffusion steps in bf16 with their model-FLOP utilisation. Without
// one, `cuda` prints one JSON line saying why and exits 0. Prints JSON Lines;
// --out also appends them to FILE (default: a new file in bench/results/).
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { devices, emptyCache } from '../lib/index.js';
import { actCases } from './act.js';
import { attnCases } from './attn.js';
import { runCases, type BenchCase } from './cases.js';
import { runConceptCases } from './concepts.js';
import { runMethodCases } from './methods.js';
import { convCases } from './conv.js';
import { elementwiseCases } from './elementwise.js';
import { linearCases } from './linear.js';
import { matmulCases } from './matmul.js';
import { miscCases } from './misc.js';
import { normCases } from './norm.js';
import { bf16Peak, cudaModelCases, PEAK_SOURCE, trainCases } from './train.js';

const NN_FAMILIES: Record<string, (device: string) => BenchCase[]> = {
  conv: convCases,
  norm: normCases,
  act: actCases,
  attn: attnCases,
  misc: miscCases,
  linear: linearCases,
};
const SUITES = ['all', 'cpu', 'cuda', 'matmul', 'elementwise', 'nn', 'train', 'concepts', 'methods', ...Object.keys(NN_FAMILIES)];
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
let outFile: string | null = null;
if (outIndex >= 0) {
  const given = args[outIndex + 1];
  const explicit = given !== undefined && !given.startsWith('--');
  outFile = explicit ? given : join(dirname(fileURLToPath(import.meta.url)), 'results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`);
  args.splice(outIndex, explicit ? 2 : 1);
}
const suite = args[0] ?? 'all';
if (!SUITES.includes(suite)) {
  console.error(`bench: unknown suite '${suite}' (one of: ${SUITES.join(', ')})`);
  process.exit(2);
}
if (outFile) mkdirSync(dirname(outFile), { recursive: true });
const cuda = devices().cuda;

/** Model-FLOP utilisation of a bf16 GPU record against its GPU's dense bf16 peak (when the GPU is in the table). */
function withMfu(record: Record<string, unknown>): Record<string, unknown> {
  const device = record.device;
  const params = record.params as Record<string, unknown> | undefined;
  if (typeof device !== 'string' || !device.startsWith('cuda') || params?.dtype !== 'bf16' || typeof record.gflops !== 'number') return record;
  const gpu = cuda.devices.find((d) => d.device === device)?.name ?? '';
  const peak = bf16Peak(gpu);
  if (!peak) return { ...record, gpu, mfu: null, mfu_note: `no bf16 peak known for '${gpu}'` };
  return { ...record, gpu, peak_model: peak.model, peak_tflops: peak.tflops, peak_source: PEAK_SOURCE, mfu: (record.gflops as number) / (peak.tflops * 1e3) };
}

const emit = (record: object): void => {
  const line = JSON.stringify(withMfu(record as Record<string, unknown>));
  console.log(line);
  if (outFile) appendFileSync(outFile, line + '\n');
};

const targets: { device: string; dtypes: ('f32' | 'bf16')[] }[] = [];
if (suite !== 'cuda') targets.push({ device: 'cpu', dtypes: ['f32'] });
if (suite !== 'cpu' && cuda.available) targets.push({ device: 'cuda:0', dtypes: ['f32', 'bf16'] });
if (suite === 'cuda' && !cuda.available) {
  emit({ suite: 'cuda', skipped: true, reason: `no usable CUDA device: ${cuda.reason ?? 'unknown'}` });
  process.exit(0);
}

const broad = ['all', 'cpu', 'cuda'].includes(suite);
const cases: BenchCase[] = [];
for (const { device, dtypes } of targets) {
  if (broad || suite === 'matmul') for (const dtype of dtypes) cases.push(...matmulCases(device, dtype));
  if (broad || suite === 'elementwise') cases.push(...elementwiseCases(device));
  if (device !== 'cpu') continue;  // the model cases below run apart, see modelCases
  for (const [family, familyCases] of Object.entries(NN_FAMILIES)) {
    if (broad || suite === 'nn' || suite === family) cases.push(...familyCases(device));
  }
  if (broad || suite === 'train') cases.push(...trainCases(suite === 'train'));
}
await runCases(cases, emit);
if (['all', 'cpu', 'concepts'].includes(suite)) await runConceptCases(emit, suite === 'concepts');
if (['all', 'cpu', 'methods'].includes(suite)) await runMethodCases(emit);

// GPU model cases one at a time: a case that fails (e.g. OUT_OF_MEMORY at batch 8 on a small GPU)
// is reported as a JSON line with its error, its tensors are freed, and the next case still runs.
const gpuTarget = targets.find((t) => t.device !== 'cpu');
const modelCases = gpuTarget && ['all', 'cuda', 'train'].includes(suite) ? cudaModelCases(gpuTarget.device) : [];
for (const c of modelCases) {
  let cleanup: (() => void) | undefined;
  const guarded: BenchCase = {
    ...c,
    async prepare() {
      const p = await c.prepare();
      cleanup = p.dispose;
      return { step: p.step, dispose: () => { cleanup = undefined; p.dispose(); } };
    },
  };
  try {
    await runCases([guarded], emit);
  } catch (e) {
    cleanup?.();
    const err = e as Error & { code?: string };
    emit({ suite: c.suite, name: c.name, device: c.device, params: c.params, error: err.message, code: err.code ?? null });
  }
  emptyCache(c.device);
}
