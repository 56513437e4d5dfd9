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

function load(): NativeAddon {
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
