// Used by binding.gyp: prints "openblas" when OpenBLAS headers and library are
// installed (Debian: libopenblas-dev), else "none"; with --include, prints the
// directory holding cblas.h.
import { existsSync } from 'node:fs';

const includeDirs = [
  '/usr/include/x86_64-linux-gnu/openblas-pthread',
  '/usr/include/aarch64-linux-gnu/openblas-pthread',
  '/usr/include/openblas',
  '/usr/local/include/openblas',
  '/usr/include',
  '/opt/homebrew/opt/openblas/include',
];
const libDirs = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib', '/usr/lib64'];
const libNames = ['libopenblas.so', 'libopenblas.dylib', 'libopenblas.a'];

const include = includeDirs.find((d) => existsSync(`${d}/cblas.h`) && existsSync(`${d}/openblas_config.h`));
const lib = libDirs.some((d) => libNames.some((n) => existsSync(`${d}/${n}`)));

if (process.argv.includes('--include')) console.log(include ?? '/usr/include');
else console.log(include && lib ? 'openblas' : 'none');
