// npm run bench -- [suite] [--out FILE]
// Suites: all (default), cpu, cuda, matmul, elementwise, nn (every nn family)
// and each nn family alone: conv, norm, act, attn, misc, linear; train (UNet
// training steps, bench/train.ts). The nn ops run
// on the CPU only for now. Prints JSON Lines; --out also appends them to FILE
// (default: a new file in bench/results/).
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { devices } from '../lib/index.js';
import { actCases } from './act.js';
import { attnCases } from './attn.js';
import { runCases, type BenchCase } from './cases.js';
import { convCases } from './conv.js';
import { elementwiseCases } from './elementwise.js';
import { linearCases } from './linear.js';
import { matmulCases } from './matmul.js';
import { miscCases } from './misc.js';
import { normCases } from './norm.js';
import { trainCases } from './train.js';

const NN_FAMILIES: Record<string, (device: string) => BenchCase[]> = {
  conv: convCases,
  norm: normCases,
  act: actCases,
  attn: attnCases,
  misc: miscCases,
  linear: linearCases,
};
const SUITES = ['all', 'cpu', 'cuda', 'matmul', 'elementwise', 'nn', 'train', ...Object.keys(NN_FAMILIES)];
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
const emit = (record: object): void => {
  const line = JSON.stringify(record);
  console.log(line);
  if (outFile) appendFileSync(outFile, line + '\n');
};

const cuda = devices().cuda;
const targets: { device: string; dtypes: ('f32' | 'bf16')[] }[] = [];
if (suite !== 'cuda') targets.push({ device: 'cpu', dtypes: ['f32'] });
if (suite !== 'cpu' && cuda.available) targets.push({ device: 'cuda:0', dtypes: ['f32', 'bf16'] });
if (suite === 'cuda' && !cuda.available) process.stderr.write(`bench: no CUDA device (${cuda.reason})\n`);

const broad = ['all', 'cpu', 'cuda'].includes(suite);
const cases: BenchCase[] = [];
for (const { device, dtypes } of targets) {
  if (broad || suite === 'matmul') for (const dtype of dtypes) cases.push(...matmulCases(device, dtype));
  if (broad || suite === 'elementwise') cases.push(...elementwiseCases(device));
  if (device !== 'cpu') continue;
  for (const [family, familyCases] of Object.entries(NN_FAMILIES)) {
    if (broad || suite === 'nn' || suite === family) cases.push(...familyCases(device));
  }
  if (broad || suite === 'train') cases.push(...trainCases(suite === 'train'));
}
await runCases(cases, emit);
