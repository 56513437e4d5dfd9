// npm install hook: use a prebuilt binary from prebuilds/ when one loads on
// this machine (node-gyp-build picks it by platform, arch and libc), else
// build from source.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

if (!process.env.IMPRINT_BUILD_FROM_SOURCE) {
  try {
    const prebuilt = require('node-gyp-build').path(root);
    require(prebuilt);
    console.log(`imprint: using ${prebuilt}`);
    process.exit(0);
  } catch {
    // no matching prebuilt binary: fall through to a source build
  }
}
const result = spawnSync(process.execPath, [join(root, 'lib', 'build', 'build-native.mjs')], { stdio: 'inherit' });
process.exit(result.status ?? 1);
