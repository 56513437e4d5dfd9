// Builds the native addon from source: cmake-js (CPU + CUDA when nvcc is found)
// when CMake is installed, else node-gyp (CPU only, binding.gyp).
//   IMPRINT_CUDA=auto|on|off   IMPRINT_BLAS=auto|openblas|none   IMPRINT_BUILD=cmake|gyp
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
const tool = process.env.IMPRINT_BUILD ?? (has('cmake') ? 'cmake' : 'gyp');
const jobs = String(Math.max(1, availableParallelism()));

if (tool === 'cmake') {
  const cmakeJs = join(dirname(require.resolve('cmake-js/package.json')), 'bin', 'cmake-js');
  const extra = process.argv.slice(2);
  run(process.execPath, [cmakeJs, 'rebuild', `--CDIMPRINT_CUDA=${cuda}`, `--CDIMPRINT_BLAS=${blas}`, ...extra], {
    CMAKE_BUILD_PARALLEL_LEVEL: jobs,
  });
} else {
  if (cuda === 'on') {
    console.error('imprint: IMPRINT_CUDA=on needs CMake (the node-gyp build is CPU only)');
    process.exit(1);
  }
  const gyp = process.env.npm_config_node_gyp ?? join(dirname(require.resolve('node-gyp/package.json')), 'bin', 'node-gyp.js');
  run(process.execPath, [gyp, 'rebuild', `--jobs=${jobs}`]);
}
