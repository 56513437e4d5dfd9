// Used by binding.gyp: prints "openblas" when OpenBLAS headers and library are
// installed (Debian: libopenblas-dev), else "none"; with --include, prints the
// directory holding cblas.h. IMPRINT_BLAS=none gives "none", IMPRINT_BLAS=openblas
// fails where there is none (as in the CMake build).
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

const wanted = process.env.IMPRINT_BLAS ?? 'auto';
if (process.argv.includes('--include')) console.log(include ?? '/usr/include');
else if (wanted === 'none') console.log('none');
else if (include && lib) console.log('openblas');
else if (wanted === 'openblas') {
  // gyp stops on a failing command: the build fails, as the CMake build does.
  console.error('imprint: IMPRINT_BLAS=openblas but OpenBLAS was not found (apt-get install libopenblas-dev)');
  process.exit(1);
} else {
  // stderr reaches the terminal (gyp reads only stdout); lib/build/build-native.mjs repeats it as the build's last line.
  console.error("imprint: OpenBLAS not found; CPU matrix products use Imprint's own GEMM kernel, about 3.7x slower in training (apt-get install libopenblas-dev, then rebuild)");
  console.log('none');
}
