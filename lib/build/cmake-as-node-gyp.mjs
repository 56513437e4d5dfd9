#!/usr/bin/env node
// prebuildify drives node-gyp; for prebuilt binaries Imprint builds with CMake
// instead (CUDA where nvcc exists, for every architecture of the default list
// or IMPRINT_CUDA_ARCHS, GPU or none; OpenBLAS linked statically so the binary
// needs no BLAS on the user's machine). prebuildify runs this file as its
// "node-gyp": the node-gyp arguments are ignored, and prebuildify then picks up
// build/Release/imprint.node as usual.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const extra = ['--prebuild', '--CDIMPRINT_BLAS_STATIC=ON', '--CDIMPRINT_NATIVE_TESTS=OFF'];
if (process.argv.includes('--debug')) extra.push('--debug');
const result = spawnSync(process.execPath, [join(here, 'build-native.mjs'), ...extra], { stdio: 'inherit' });
process.exit(result.status ?? 1);
