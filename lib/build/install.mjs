// npm install hook: use a prebuilt binary from prebuilds/ when one loads on
// this machine (node-gyp-build picks it by platform, arch and libc; an earlier
// build in build/Release comes first), else build from source
// (lib/build/build-native.mjs, whose last line says what was built).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { summaryLine } from './summary.mjs';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

// `npm rebuild imprint` (after installing OpenBLAS, CMake or the CUDA toolkit)
// builds again: the binary an earlier build left in build/ does not count then.
if (process.env.npm_command === 'rebuild') process.env.PREBUILDS_ONLY = '1';
if (!process.env.IMPRINT_BUILD_FROM_SOURCE) {
  try {
    const prebuilt = require('node-gyp-build').path(root);
    const info = require(prebuilt).buildInfo();
    console.log(summaryLine('using', prebuilt, info));
    process.exit(0);
  } catch {
    // no matching prebuilt binary: fall through to a source build
  }
}
const result = spawnSync(process.execPath, [join(root, 'lib', 'build', 'build-native.mjs')], { stdio: 'inherit' });
process.exit(result.status ?? 1);
