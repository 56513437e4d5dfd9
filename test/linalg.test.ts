// lib/concepts/linalg.ts's LAPACK path (symmetricEigen, svd, solve through the
// addon) against its JavaScript reference (symmetricEigenJs, svdJs, solveJs) on
// random matrices, and the fallback: with IMPRINT_BLAS=none the same calls
// run the JavaScript routines. In a build without LAPACK both sides are the
// JavaScript routines and the comparisons hold trivially.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import {
  addScaled, frobenius, linalgBackend, mat, matmul, solve, solveJs, svd, svdJs, symmetricEigen, symmetricEigenJs, transpose, type Mat,
} from '../lib/concepts/linalg.js';
import { truncatedSvd } from '../lib/concepts/svd.js';
import { nativeLinalg } from '../lib/native.js';
import { assertRejects, seeded } from './helpers.js';

const t = suite('linalg');

/** Unit roundoff of float64 (2⁻⁵³). */
const F64_UNIT_ROUNDOFF = 2 ** -53;
/** Confidence of the probabilistic bound, as in helpers.ts's reorderedTolerance (fails with probability ≈ 3e-8). */
const LAMBDA = 6;

/**
 * How far two backward-stable float64 decompositions of a matrix of width n
 * (Householder reductions, LU with pivoting) may disagree, relative to the
 * matrix's scale. Each is exact for a matrix within λ·√n·u·‖A‖ of the input:
 * every entry passes through inner products of length n whose rounding errors
 * add as independent, mean-zero terms (Higham and Mary, SISC 2019; the reasoning
 * of reorderedTolerance, with u = 2⁻⁵³). Two of them: twice that. Measured
 * errors sit 5-20× below; a wrong sign, order or pivot errs by O(1).
 */
const stable = (n: number): number => 2 * LAMBDA * Math.sqrt(Math.max(n, 1)) * F64_UNIT_ROUNDOFF;

function randomMat(rows: number, cols: number, seed: number): Mat {
  const next = seeded(seed);
  return mat(rows, cols, Array.from({ length: rows * cols }, () => next() * 2 - 1));
}

const randomSymmetric = (n: number, seed: number): Mat => {
  const b = randomMat(n, n, seed);
  return addScaled(b, transpose(b));
};

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** max |x·xᵀ − I| over the rows of x (orthonormal rows give 0). */
function rowOrthonormality(x: Mat): number {
  const g = matmul(x, x, true);
  let m = 0;
  for (let i = 0; i < x.rows; i++) for (let j = 0; j < x.rows; j++) m = Math.max(m, Math.abs(g.data[i * x.rows + j] - (i === j ? 1 : 0)));
  return m;
}

const relErr = (a: Mat, b: Mat): number => frobenius(addScaled(a, b, -1)) / frobenius(b);

/**
 * Without LAPACK svd is svdJs, which squares the matrix (Gram route): σᵢ² errs
 * by tol·σ₁², so σᵢ by tol·σ₁²/σᵢ and its singular vectors by tol·(σ₁/σᵢ)².
 */
const squared = linalgBackend().backend === 'js';

t('the backend: LAPACK where the addon runs it, named; JavaScript otherwise (always under IMPRINT_BLAS=none)', () => {
  const { backend, detail } = linalgBackend();
  const native = nativeLinalg();
  assert.is(backend, native.lapack ? 'lapack' : 'js');
  if (backend === 'lapack') assert.match(detail, /^LAPACK from OpenBLAS/);
  else assert.match(detail, /^none: /);
  if (process.env.IMPRINT_BLAS === 'none') assert.is(backend, 'js');
});

t('symmetricEigen: eigenvalues, reconstruction and orthonormal vectors agree with the JavaScript reference', () => {
  for (const n of [1, 2, 5, 50, 200]) {
    const a = randomSymmetric(n, 100 + n);
    const scale = frobenius(a);
    const tol = stable(n);
    const got = symmetricEigen(a);
    const ref = symmetricEigenJs(a);
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(got.values[i] - ref.values[i]) <= tol * scale, `n=${n} λ${i}: ${got.values[i]} vs ${ref.values[i]}`);
      if (i > 0) assert.ok(got.values[i] <= got.values[i - 1], `n=${n}: descending`);
    }
    const scaled = mat(n, n, got.vectors.data.map((x, k) => x * got.values[Math.floor(k / n)]));
    assert.ok(relErr(matmul(transpose(got.vectors), scaled), a) <= tol, `n=${n}: vectorsᵀ·diag·vectors = a`);
    assert.ok(rowOrthonormality(got.vectors) <= tol, `n=${n}: orthonormal rows`);
  }
});

t('symmetricEigen: with eigenvalues 1 apart, each vector matches the reference up to its sign', () => {
  const n = 40;
  // Q·diag(1..n)·Qᵀ from the reference's own orthonormal vectors of a random matrix.
  const q = symmetricEigenJs(randomSymmetric(n, 7)).vectors;
  const lambdas = Array.from({ length: n }, (_, i) => n - i);
  const a = matmul(transpose(q), mat(n, n, q.data.map((x, k) => x * lambdas[Math.floor(k / n)])));
  const got = symmetricEigen(a);
  const ref = symmetricEigenJs(a);
  // An eigenvector moves by at most ‖E‖/gap under a perturbation E; gap 1, ‖E‖ ≤ stable(n)·‖a‖.
  const tol = stable(n) * frobenius(a);
  for (let i = 0; i < n; i++) {
    const g = got.vectors.data.subarray(i * n, i * n + n);
    const r = ref.vectors.data.subarray(i * n, i * n + n);
    const sign = g.reduce((s, x, k) => s + x * r[k], 0) < 0 ? -1 : 1;
    assert.ok(maxAbs(g.map((x, k) => x - sign * r[k])) <= tol, `vector ${i}`);
  }
});

t('svd: singular values, reconstruction and orthonormal factors agree with the JavaScript reference (tall, wide, square)', () => {
  for (const [m, n] of [[1, 1], [5, 3], [3, 5], [60, 40], [40, 60], [50, 50], [320, 768]]) {
    const a = randomMat(m, n, 7 * m + n);
    const k = Math.min(m, n);
    const tol = stable(Math.max(m, n));
    const got = svd(a);
    const ref = svdJs(a);
    assert.is(got.s.length, k);
    assert.equal([got.u.rows, got.u.cols, got.vt.rows, got.vt.cols], [m, k, k, n]);
    const s1 = got.s[0];
    for (let i = 0; i < k; i++) {
      // The reference squares a (Gram matrix): its σᵢ errs by up to tol·σ₁²/σᵢ on top.
      assert.ok(Math.abs(got.s[i] - ref.s[i]) <= tol * s1 * (1 + s1 / got.s[i]), `${m}×${n} σ${i}: ${got.s[i]} vs ${ref.s[i]}`);
    }
    const us = mat(m, k, got.u.data.map((x, q) => x * got.s[q % k]));
    assert.ok(relErr(matmul(us, got.vt), a) <= tol, `${m}×${n}: u·diag(s)·vt = a`);
    const vectorTol = squared ? tol * (s1 / got.s[k - 1]) ** 2 : tol;
    assert.ok(rowOrthonormality(transpose(got.u)) <= vectorTol, `${m}×${n}: orthonormal u columns`);
    assert.ok(rowOrthonormality(got.vt) <= vectorTol, `${m}×${n}: orthonormal vt rows`);
  }
});

t('svd: keep returns the leading singular vectors only, the same as the full result\'s', () => {
  const a = randomMat(30, 20, 3);
  const full = svd(a);
  const part = svd(a, (s) => (assert.is(s.length, 20), 4));
  assert.equal([part.u.rows, part.u.cols, part.vt.rows, part.vt.cols], [30, 4, 4, 20]);
  assert.equal(Array.from(part.s), Array.from(full.s));
  for (let i = 0; i < 30; i++) assert.equal(Array.from(part.u.data.subarray(i * 4, i * 4 + 4)), Array.from(full.u.data.subarray(i * 20, i * 20 + 4)));
  assert.equal(Array.from(part.vt.data), Array.from(full.vt.data.subarray(0, 4 * 20)));
  assert.throws(() => svd(a, () => 21), /keep must pick an integer from 0 to 20/);
});

t('truncatedSvd: on low rank plus noise, the truncation error and the factors\' product match the JavaScript reference', () => {
  const [m, n, r] = [160, 96, 8];
  // Rank-8 signal (σ ≈ 1 … 0.2) plus 1e-3 noise: a clear gap after σ₈.
  const x = addScaled(matmul(randomMat(m, r, 1), mat(r, n, randomMat(r, n, 2).data.map((v, k) => v * 0.8 ** Math.floor(k / n)))), randomMat(m, n, 3), 1e-3);
  const got = truncatedSvd(x, { rank: r });
  const ref = svdJs(x, () => r);
  const refU = mat(m, r, ref.u.data.map((v, k) => v * ref.s[k % r]));
  const tol = stable(Math.max(m, n));
  const s = got.singularValues;
  // The rank-r product moves by ‖E‖·σ₁/(σ_r − σ_{r+1}) (Wedin); the reference's Gram route by σ₁²/(σ_r² − σ_{r+1}²) more.
  const gap = s[r - 1] - s[r];
  const bound = tol * frobenius(x) * (s[0] / gap) * (1 + s[0] ** 2 / (s[r - 1] ** 2 - s[r] ** 2));
  assert.ok(frobenius(addScaled(matmul(got.u, got.v), matmul(refU, ref.vt), -1)) <= bound, 'u·v');
  const err = (p: Mat): number => relErr(p, x);
  const total = s.reduce((acc, v) => acc + v * v, 0);
  const tail = Math.sqrt(s.slice(r).reduce((acc, v) => acc + v * v, 0) / total);
  // Squared: each dropped σᵢ² errs by tol·σ₁², the tail (a square root) by that sum over 2·tail.
  const tailTol = tol + (squared ? ((s.length - r) * tol * s[0] ** 2) / total / (2 * tail) : 0);
  assert.ok(Math.abs(err(matmul(got.u, got.v)) - tail) <= tailTol, 'error = dropped energy');
});

t('solve: residuals at rounding level, the solution matches the reference within the condition number', () => {
  for (const n of [1, 3, 30, 300]) {
    // Diagonally weighted: well conditioned, but pivoting still swaps rows.
    const a = addScaled(randomMat(n, n, 5 + n), mat(n, n, Array.from({ length: n * n }, (_, k) => (k % (n + 1) === 0 ? Math.sqrt(n) : 0))));
    const b = randomMat(n, 4, 6 + n);
    const tol = stable(n);
    const x = solve(a, b);
    const ref = solveJs(a, b);
    assert.ok(frobenius(addScaled(matmul(a, x), b, -1)) <= tol * frobenius(a) * frobenius(x), `n=${n}: residual`);
    const s = svd(a).s;
    assert.ok(relErr(x, ref) <= tol * (s[0] / s[n - 1]), `n=${n}: x vs the reference (cond ${(s[0] / s[n - 1]).toFixed(1)})`);
  }
});

t('solve: singular and nearly singular matrices are refused alike on both paths, naming the pivot', async () => {
  // Row 2 = 2 · row 1 (exact zero pivot); and a pivot at 1e-14 of the scale (below the 1e-12 threshold).
  const cases: Mat[] = [mat(2, 2, [1, 2, 2, 4]), mat(3, 3, [4, 1, 0, 1, 3, 0, 0, 0, 4e-14])];
  for (const a of cases) {
    const b = mat(a.rows, 1);
    const n = a.rows;
    for (const f of [solve, solveJs]) {
      await assertRejects(() => f(a, b, 'the constraint matrix'), 'INVALID_ARGUMENT', /the constraint matrix/, new RegExp(`\\(${n}×${n}\\) is singular or nearly so \\(pivot ${n - 1}\\)`));
    }
  }
  await assertRejects(() => solve(mat(2, 2, [1, NaN, 0, 1]), mat(2, 1)), 'INVALID_ARGUMENT', /not finite/);
});

t('the native entries check their arguments; non-finite matrices are refused', async () => {
  const { lapack } = nativeLinalg();
  if (!lapack) return;  // no LAPACK in this build or IMPRINT_BLAS=none: lib never calls them
  await assertRejects(() => lapack.linalgSvd(new Float32Array(4) as unknown as Float64Array, 2, 2), 'INVALID_ARGUMENT', /Float64Array/);
  await assertRejects(() => lapack.linalgSymmetricEigen(new Float64Array(5), 2), 'INVALID_ARGUMENT', /has 5 values, its shape needs 4/);
  await assertRejects(() => lapack.linalgSolve(new Float64Array(4), 2, new Float64Array(2), 1.5, 1e-12), 'INVALID_ARGUMENT', /nrhs must be an integer/);
  await assertRejects(() => symmetricEigen(mat(2, 2, [1, Infinity, Infinity, 1])), 'INVALID_ARGUMENT', /non-finite/);
  await assertRejects(() => svd(mat(2, 2, [1, NaN, 0, 1])), 'INVALID_ARGUMENT', /non-finite/);
});

t('IMPRINT_BLAS=none: the same calls run the JavaScript routines (bit for bit the reference\'s results)', () => {
  const script = `
    import { linalgBackend, mat, solve, svd, symmetricEigen } from './lib/concepts/linalg.js';
    import { truncatedSvd } from './lib/concepts/svd.js';
    import { seeded } from './test/helpers.js';
    const r = (rows, cols, seed) => { const next = seeded(seed); return mat(rows, cols, Array.from({ length: rows * cols }, () => next() * 2 - 1)); };
    const a = r(12, 12, 1);
    const sym = mat(12, 12, a.data.map((v, k) => v + a.data[(k % 12) * 12 + Math.floor(k / 12)]));
    const e = symmetricEigen(sym);
    const s = svd(r(9, 14, 2));
    const x = solve(a, r(12, 3, 3));
    const tr = truncatedSvd(r(20, 11, 4), { rank: 3 });
    const list = (m) => Array.from(m.data ?? m);
    console.log(JSON.stringify({ backend: linalgBackend(), values: list(e.values), vectors: list(e.vectors), s: list(s.s), u: list(s.u), vt: list(s.vt), x: list(x), tu: list(tr.u), tv: list(tr.v) }));
  `;
  const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: fileURLToPath(new URL('..', import.meta.url)), env: { ...process.env, IMPRINT_BLAS: 'none' }, encoding: 'utf8',
  });
  assert.is(child.status, 0, child.stderr);
  const out = JSON.parse(child.stdout.trim());
  assert.is(out.backend.backend, 'js');
  assert.match(out.backend.detail, /^none: .*(IMPRINT_BLAS=none|no LAPACK|no linalg)/);
  const r = (rows: number, cols: number, seed: number): Mat => randomMat(rows, cols, seed);
  const a = r(12, 12, 1);
  const sym = mat(12, 12, a.data.map((v, k) => v + a.data[(k % 12) * 12 + Math.floor(k / 12)]));
  const e = symmetricEigenJs(sym);
  const s = svdJs(r(9, 14, 2));
  const tr = svdJs(r(20, 11, 4), () => 3);
  assert.equal(out.values, Array.from(e.values));
  assert.equal(out.vectors, Array.from(e.vectors.data));
  assert.equal(out.s, Array.from(s.s));
  assert.equal(out.u, Array.from(s.u.data));
  assert.equal(out.vt, Array.from(s.vt.data));
  assert.equal(out.x, Array.from(solveJs(a, r(12, 3, 3)).data));
  assert.equal(out.tu, Array.from(tr.u.data, (v, k) => v * tr.s[k % 3]));
  assert.equal(out.tv, Array.from(tr.vt.data));
});

t.run();
