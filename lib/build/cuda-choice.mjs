// Whether a source build compiles the CUDA backend, and for which GPU
// architectures (lib/build/build-native.mjs passes the answer to CMake).
//   IMPRINT_CUDA=off   never
//   IMPRINT_CUDA=on    always (CMake fails when nvcc is missing)
//   IMPRINT_CUDA=auto  (default) when a GPU is visible and nvcc is installed; a
//                      prebuilt binary (npm run prebuild) instead whenever nvcc is
//                      installed, as it is built for other machines
// Architectures: IMPRINT_CUDA_ARCHS when set; else the visible GPUs' own (a
// source build runs where it is built); else CMake's full list (prebuilt
// binaries, or no GPU to ask).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { delimiter, join } from 'node:path';

function output(command, args) {
  try {
    const r = spawnSync(command, args, { encoding: 'utf8', timeout: 20000, stdio: ['ignore', 'pipe', 'ignore'] });
    return r.status === 0 ? r.stdout : undefined;
  } catch {
    return undefined;
  }
}

/** The nvcc CMake would use (CUDACXX, PATH, /usr/local/cuda), or undefined. */
export function findNvcc(env = process.env) {
  if (env.CUDACXX && existsSync(env.CUDACXX)) return env.CUDACXX;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'nvcc'))) return join(dir, 'nvcc');
  }
  return existsSync('/usr/local/cuda/bin/nvcc') ? '/usr/local/cuda/bin/nvcc' : undefined;
}

/**
 * The NVIDIA GPUs this machine shows: [{ name, arch }] with arch like '90'
 * (compute capability 9.0), or undefined where nvidia-smi could not tell it.
 * Empty when there is none; never throws.
 */
export function visibleGpus() {
  for (const smi of ['nvidia-smi', '/usr/lib/wsl/lib/nvidia-smi']) {
    const caps = output(smi, ['--query-gpu=name,compute_cap', '--format=csv,noheader']);
    if (caps !== undefined) {
      const gpus = caps.split('\n').map((l) => l.trim()).filter(Boolean).map((line) => {
        const cut = line.lastIndexOf(',');
        const cap = line.slice(cut + 1).trim();
        return { name: line.slice(0, cut).trim(), arch: /^\d+\.\d+$/.test(cap) ? cap.replace('.', '') : undefined };
      });
      if (gpus.length > 0) return gpus;
    }
    // Drivers older than compute_cap in --query-gpu still list the GPUs.
    const list = output(smi, ['-L']);
    if (list !== undefined) {
      const names = list.split('\n').filter((l) => /^GPU \d+/.test(l)).map((l) => l.replace(/^GPU \d+:\s*/, '').replace(/\s*\(UUID.*$/, ''));
      if (names.length > 0) return names.map((name) => ({ name, arch: undefined }));
    }
  }
  // No working nvidia-smi: a device node still says a GPU is there.
  try {
    return readdirSync('/dev').filter((f) => /^nvidia\d+$/.test(f)).map((f) => ({ name: `/dev/${f}`, arch: undefined }));
  } catch {
    return [];
  }
}

/** The real architectures nvcc compiles for (['75', '80', ...]), or undefined when it does not say. */
function nvccArchs(nvcc) {
  const text = output(nvcc, ['--list-gpu-arch']);
  const archs = text?.match(/compute_\d+/g)?.map((a) => a.slice('compute_'.length));
  return archs?.length ? archs : undefined;
}

/**
 * The decision: { cuda: 'on' | 'off', archs: string | undefined (undefined:
 * CMake's default list), why: one line for the build log }.
 *   cuda: the IMPRINT_CUDA value (auto, on, off); prebuild: building a binary
 *   for other machines; env: the environment (IMPRINT_CUDA_ARCHS, PATH, CUDACXX).
 */
export function chooseCuda({ cuda = 'auto', prebuild = false, env = process.env, gpus = undefined, nvcc = undefined } = {}) {
  // gpus and nvcc ('' for none) are found here when not given.
  const fixedArchs = env.IMPRINT_CUDA_ARCHS?.trim() || undefined;
  const all = 'every architecture of the default list (IMPRINT_CUDA_ARCHS to choose)';
  if (cuda === 'off') return { cuda: 'off', archs: undefined, why: 'IMPRINT_CUDA=off: building without CUDA' };
  if (nvcc === undefined) nvcc = findNvcc(env);
  if (prebuild) {
    if (cuda === 'auto' && !nvcc) return { cuda: 'off', archs: undefined, why: 'prebuilt binary: no nvcc found, building without CUDA' };
    return { cuda: 'on', archs: fixedArchs, why: `prebuilt binary: building with CUDA for ${fixedArchs ? `${fixedArchs} (IMPRINT_CUDA_ARCHS)` : all}` };
  }
  gpus ??= visibleGpus();
  if (cuda === 'auto') {
    if (gpus.length === 0) return { cuda: 'off', archs: undefined, why: 'no GPU visible: building without CUDA (IMPRINT_CUDA=on to force)' };
    if (!nvcc) {
      return { cuda: 'off', archs: undefined, why: `GPU visible (${gpus[0].name}) but no nvcc (CUDA toolkit) found: building without CUDA (install the toolkit, then npm rebuild imprint)` };
    }
  }
  const forced = cuda === 'on' ? 'IMPRINT_CUDA=on' : `GPU visible (${[...new Set(gpus.map((g) => g.name))].join(', ')})`;
  if (fixedArchs) return { cuda: 'on', archs: fixedArchs, why: `${forced}: building with CUDA for ${fixedArchs} (IMPRINT_CUDA_ARCHS)` };
  const own = [...new Set(gpus.map((g) => g.arch))];
  if (own.length === 0 || own.includes(undefined)) {
    const why = gpus.length === 0 ? `${forced}, no GPU visible` : `${forced}, compute capability unknown`;
    return { cuda: 'on', archs: undefined, why: `${why}: building with CUDA for ${all}` };
  }
  const supported = nvcc ? nvccArchs(nvcc) : undefined;
  const usable = supported ? own.filter((a) => supported.includes(a)) : own;
  if (usable.length < own.length) {
    const newest = supported ? Math.max(...supported.map(Number)) : 0;
    const missing = own.filter((a) => !usable.includes(a));
    // A GPU newer than nvcc runs the default list's PTX; an older one none of it.
    if (cuda === 'auto' && missing.every((a) => Number(a) < newest) && usable.length === 0) {
      return { cuda: 'off', archs: undefined, why: `GPU visible but nvcc cannot compile for its architecture sm_${missing.join(', sm_')}: building without CUDA` };
    }
    return { cuda: 'on', archs: undefined, why: `${forced}: nvcc cannot compile for sm_${missing.join(', sm_')}: building with CUDA for ${all}` };
  }
  return { cuda: 'on', archs: usable.join(';'), why: `${forced}: building with CUDA for sm_${usable.join(', sm_')}, the GPU here (IMPRINT_CUDA_ARCHS to choose others)` };
}
