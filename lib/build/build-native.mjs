// Builds the native addon from source: cmake-js (CPU, plus CUDA where
// lib/build/cuda-choice.mjs says so) when CMake is installed, else node-gyp
// (CPU only, binding.gyp). Ends with one line saying what was built; a build
// without OpenBLAS ends with a notice instead.
//   IMPRINT_CUDA=auto|on|off   IMPRINT_CUDA_ARCHS   IMPRINT_BLAS=auto|openblas|none   IMPRINT_BUILD=cmake|gyp
//   --prebuild (lib/build/cmake-as-node-gyp.mjs): a binary for other machines; other arguments go to cmake-js
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { chooseCuda } from './cuda-choice.mjs';
import { summaryLine } from './summary.mjs';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function has(command) {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).status === 0;
}

function run(command, args, env = {}) {
  console.log(`imprint: ${[command, ...args].join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (result.status !== 0) process.exit(result.status ?? 1);
}

const cuda = process.env.IMPRINT_CUDA ?? 'auto';
const blas = process.env.IMPRINT_BLAS ?? 'auto';
for (const [name, value, allowed] of [['IMPRINT_CUDA', cuda, ['auto', 'on', 'off']], ['IMPRINT_BLAS', blas, ['auto', 'openblas', 'none']]]) {
  if (!allowed.includes(value)) {
    console.error(`imprint: ${name}=${value} is not one of ${allowed.join(', ')}`);
    process.exit(1);
  }
}
const args = process.argv.slice(2);
const prebuild = args.includes('--prebuild');
const extra = args.filter((a) => a !== '--prebuild');
const tool = process.env.IMPRINT_BUILD ?? (has('cmake') ? 'cmake' : 'gyp');
if (!['cmake', 'gyp'].includes(tool)) {
  console.error(`imprint: IMPRINT_BUILD=${tool} is not one of cmake, gyp`);
  process.exit(1);
}
const jobs = String(Math.max(1, availableParallelism()));

if (tool === 'cmake') {
  const choice = chooseCuda({ cuda, prebuild });
  console.log(`imprint: ${choice.why}`);
  const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const cudaArgs = [`--CDIMPRINT_CUDA=${choice.cuda}`, ...(choice.archs ? [`--CDIMPRINT_CUDA_ARCHS=${choice.archs}`] : [])];
  run(process.execPath, [cmakeJs, 'rebuild', ...cudaArgs, `--CDIMPRINT_BLAS=${blas}`, ...extra], {
    CMAKE_BUILD_PARALLEL_LEVEL: jobs,
  });
} else {
  if (cuda === 'on') {
    console.error('imprint: IMPRINT_CUDA=on needs CMake (the node-gyp build is CPU only)');
    process.exit(1);
  }
  console.log(`imprint: ${process.env.IMPRINT_BUILD ? 'IMPRINT_BUILD=gyp' : 'no CMake'}: building with node-gyp, CPU only (CMake builds the CUDA backend)`);
  const gyp = process.env.npm_config_node_gyp ?? join(dirname(require.resolve('node-gyp/package.json')), 'bin', 'node-gyp.js');
  run(process.execPath, [gyp, 'rebuild', `--jobs=${jobs}`]);
}

// What was built, read from the addon itself (in a child process: IMPRINT_BLAS
// is also a run-time switch, and a broken binary must not take this script down).
const addon = join(root, 'build', process.argv.includes('--debug') ? 'Debug' : 'Release', 'imprint.node');
const env = { ...process.env };
delete env.IMPRINT_BLAS;
const probe = spawnSync(process.execPath, ['-e', 'const b = require(process.argv[1]).buildInfo(); console.log(JSON.stringify(b))', addon], { encoding: 'utf8', env });
let info;
try {
  info = JSON.parse(probe.stdout);
} catch {
  console.error(`imprint: the built addon ${addon} does not load:\n${probe.stderr}`);
  process.exit(1);
}
console.log(summaryLine('built', addon, info, blas));
