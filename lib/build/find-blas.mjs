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
else if (include && lib) console.log('openblas');
else {
  // stderr reaches the terminal (gyp reads only stdout): a build without OpenBLAS works but trains several times slower.
  console.error("imprint: OpenBLAS not found; CPU matrix products use Imprint's own GEMM kernel, about 3.7x slower in training (apt-get install libopenblas-dev, then rebuild)");
  console.log('none');
}
