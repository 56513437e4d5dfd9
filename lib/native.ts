// Loads the native addon: $IMPRINT_NATIVE when set (a path to an imprint.node),
// else the prebuilt binary for this platform or the local build, as
// node-gyp-build finds them.
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeAddon } from '../typings/native.js';
import { ImprintError } from './errors.js';

const require = createRequire(import.meta.url);
export const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The values IMPRINT_CPU_ISA takes (csrc/cpu/cpu_isa.cc): a cap on the instruction set of Imprint's own CPU kernels. */
export const CPU_ISA_LEVELS = ['avx512', 'avx2', 'avx', 'sse4.2', 'sse2', 'baseline'] as const;

function checkCpuIsa(): void {
  const v = process.env.IMPRINT_CPU_ISA;
  if (v && !(CPU_ISA_LEVELS as readonly string[]).includes(v)) {
    throw new ImprintError(`IMPRINT_CPU_ISA=${v} is not one of ${CPU_ISA_LEVELS.join(', ')} (unset it to use the CPU's best)`, 'INVALID_ARGUMENT');
  }
}

function load(): NativeAddon {
  checkCpuIsa();
  const explicit = process.env.IMPRINT_NATIVE;
  let path = explicit ? resolve(explicit) : '';
  try {
    if (!path) path = (require('node-gyp-build') as { path(dir: string): string }).path(packageRoot);
    const addon = require(path) as NativeAddon;
    addon.setErrorClass(ImprintError);
    return addon;
  } catch (cause) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    throw new ImprintError(
      `could not load Imprint's native addon${path ? ` from ${path}` : ''}: ${detail}. ` +
        'Build it with `npm run build` (CMake) or `npm run build:gyp` (node-gyp, CPU only).',
      'NATIVE_LOAD_FAILED',
    );
  }
}

export const native: NativeAddon = load();
export const nativePath = (): string =>
  process.env.IMPRINT_NATIVE ? resolve(process.env.IMPRINT_NATIVE) : (require('node-gyp-build') as { path(dir: string): string }).path(packageRoot);

/** The addon's LAPACK entries (declared in typings/native.d.ts), for lib/concepts/linalg.ts. */
export type NativeLinalg = Pick<NativeAddon, 'linalgInfo' | 'linalgSymmetricEigen' | 'linalgSvd' | 'linalgSolve'>;

/** The LAPACK entries when they run, else null; with the reason either way. */
export function nativeLinalg(): { lapack: NativeLinalg | null; name: string } {
  const n = native as NativeAddon & Partial<NativeLinalg>;
  // An addon built before these entries existed (IMPRINT_NATIVE pointing at an old build) has none.
  if (typeof n.linalgInfo !== 'function') return { lapack: null, name: 'none: this addon build has no linalg entries' };
  const info = n.linalgInfo();
  return { lapack: info.lapack ? (n as NativeAddon & NativeLinalg) : null, name: info.name };
}
