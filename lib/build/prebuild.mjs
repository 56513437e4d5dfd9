// npm run prebuild: writes prebuilds/<platform>-<arch>/ with prebuildify, for
// publishing. The binary is an N-API build (one per platform, any Node
// version), built by CMake with the CUDA backend when nvcc is found and with
// OpenBLAS linked statically; node-gyp-build loads it at install time.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const prebuildify = require('prebuildify');

prebuildify(
  { cwd: root, napi: true, strip: true, tagLibc: true, targets: [], nodeGyp: join(root, 'lib', 'build', 'cmake-as-node-gyp.mjs') },
  (err) => {
    if (err) {
      console.error(`imprint: prebuild failed: ${err.message ?? err}`);
      process.exit(1);
    }
    console.log(`imprint: wrote ${join(root, 'prebuilds')}`);
  },
);
