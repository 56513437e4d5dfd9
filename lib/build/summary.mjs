// The last line of an install: what the addon was built with, or, when it
// lacks OpenBLAS, a notice (CPU training then runs several times slower).
//   verb: 'built' (this install compiled it) or 'using' (an existing binary);
//   info: the addon's buildInfo(); blas: the IMPRINT_BLAS build setting.
export function summaryLine(verb, file, info, blas = 'auto') {
  const cuda = `CUDA backend: ${info.cuda ? 'on' : 'off'}`;
  // "OpenBLAS linked but off" (IMPRINT_BLAS=none at run time) still counts as linked.
  if (/openblas/i.test(info.blas)) return `imprint: ${verb} ${file} (CPU GEMM: OpenBLAS; ${cuda})`;
  const head = verb === 'built' ? 'imprint: built WITHOUT OpenBLAS' : `imprint: using ${file}, built WITHOUT OpenBLAS`;
  if (blas === 'none') return `${head}, as IMPRINT_BLAS=none asked: CPU training is several times slower (${cuda})`;
  return `${head}: CPU training is several times slower; apt-get install libopenblas-dev (or your system's OpenBLAS package), then npm rebuild imprint`;
}
