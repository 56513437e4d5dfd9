// Dense float64 matrix helpers for the concept tools (truncated SVD, the
// closed-form merge), independent of the engine's f32 kernels. The O(n³)
// decompositions (symmetricEigen, svd, solve) run in LAPACK where the addon
// has it (csrc/cpu/lapack.h; seconds instead of minutes for an SD1.5 concept)
// and otherwise in the JavaScript routines here (…Js), which are also the
// reference the tests hold LAPACK to. Products and sums stay plain loops.
import { ImprintError, invalidArgument } from '../errors.js';
import { tensor } from '../creation.js';
import { nativeLinalg } from '../native.js';
import type { Tensor } from '../tensor.js';

const { lapack, name: lapackName } = nativeLinalg();

/**
 * Which routines symmetricEigen, svd and solve run: 'lapack' (the addon's,
 * from OpenBLAS) or 'js' (a build without LAPACK, or IMPRINT_BLAS=none at run
 * time), and what provides them or why LAPACK does not.
 */
export function linalgBackend(): { backend: 'lapack' | 'js'; detail: string } {
  return { backend: lapack ? 'lapack' : 'js', detail: lapackName };
}

/** A row-major float64 matrix. */
export interface Mat {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function mat(rows: number, cols: number, data?: ArrayLike<number>): Mat {
  if (data !== undefined && data.length !== rows * cols) throw invalidArgument(`mat: ${rows}×${cols} needs ${rows * cols} values, got ${data.length}`);
  return { rows, cols, data: data === undefined ? new Float64Array(rows * cols) : Float64Array.from(data) };
}

export function identity(n: number): Mat {
  const m = mat(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

/** A 2-D tensor (any float dtype, any device) as a float64 matrix; a 1-D tensor becomes one row. */
export async function fromTensor(t: Tensor): Promise<Mat> {
  if (t.ndim !== 1 && t.ndim !== 2) throw invalidArgument(`fromTensor: expected a 1-D or 2-D tensor, got [${t.shape.join(', ')}]`);
  const values = (await t.data()) as Float32Array;
  return t.ndim === 2 ? mat(t.shape[0], t.shape[1], values) : mat(1, t.shape[0], values);
}

/** An f32 CPU tensor of `shape` (default [rows, cols]) holding the matrix. */
export function toTensor(m: Mat, shape: readonly number[] = [m.rows, m.cols]): Tensor<'f32'> {
  return tensor(Float32Array.from(m.data), { shape });
}

export function transpose(a: Mat): Mat {
  const out = mat(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) out.data[j * a.rows + i] = a.data[i * a.cols + j];
  return out;
}

/** a·b (transpose b first with transB: a·bᵀ, both row-major, the cache-friendly case). */
export function matmul(a: Mat, b: Mat, transB = false): Mat {
  const inner = transB ? b.cols : b.rows;
  const n = transB ? b.rows : b.cols;
  if (a.cols !== inner) throw invalidArgument(`matmul: ${a.rows}×${a.cols} times ${transB ? `(${b.rows}×${b.cols})ᵀ` : `${b.rows}×${b.cols}`} do not conform`);
  const out = mat(a.rows, n);
  const A = a.data;
  const B = b.data;
  const C = out.data;
  const k = a.cols;
  if (transB) {
    for (let i = 0; i < a.rows; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += A[i * k + p] * B[j * k + p];
        C[i * n + j] = s;
      }
    }
  } else {
    for (let i = 0; i < a.rows; i++) {
      for (let p = 0; p < k; p++) {
        const x = A[i * k + p];
        if (x === 0) continue;
        const row = p * n;
        const o = i * n;
        for (let j = 0; j < n; j++) C[o + j] += x * B[row + j];
      }
    }
  }
  return out;
}

/** aᵀ·a, the Gram matrix of the columns (symmetric, cols×cols). */
export function gramColumns(a: Mat): Mat {
  const n = a.cols;
  const out = mat(n, n);
  const G = out.data;
  for (let r = 0; r < a.rows; r++) {
    const o = r * n;
    for (let i = 0; i < n; i++) {
      const x = a.data[o + i];
      if (x === 0) continue;
      for (let j = i; j < n; j++) G[i * n + j] += x * a.data[o + j];
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) G[i * n + j] = G[j * n + i];
  return out;
}

/** a + s·b (same shapes). */
export function addScaled(a: Mat, b: Mat, s = 1): Mat {
  if (a.rows !== b.rows || a.cols !== b.cols) throw invalidArgument(`addScaled: ${a.rows}×${a.cols} and ${b.rows}×${b.cols} differ`);
  const out = mat(a.rows, a.cols);
  for (let i = 0; i < out.data.length; i++) out.data[i] = a.data[i] + s * b.data[i];
  return out;
}

export function frobenius(a: Mat): number {
  let s = 0;
  for (const v of a.data) s += v * v;
  return Math.sqrt(s);
}

/** A pivot at most this fraction of the largest |entry| makes a matrix singular for solve. */
const PIVOT_TOLERANCE = 1e-12;

/** Checks solve's operands; returns max|a| (positive and finite). */
function checkSolve(a: Mat, b: Mat, what: string): number {
  const n = a.rows;
  if (a.cols !== n) throw invalidArgument(`solve: ${what} must be square, got ${a.rows}×${a.cols}`);
  if (b.rows !== n) throw invalidArgument(`solve: ${what} is ${n}×${n} but the right-hand side has ${b.rows} rows`);
  let scale = 0;
  for (const v of a.data) scale = Math.max(scale, Math.abs(v));
  if (!(scale > 0) || !Number.isFinite(scale)) throw invalidArgument(`solve: ${what} is ${scale === 0 ? 'zero' : 'not finite'}`);
  return scale;
}

const singular = (what: string, n: number, k: number): ImprintError =>
  invalidArgument(`solve: ${what} (${n}×${n}) is singular or nearly so (pivot ${k})`);

/**
 * X with a·X = b for square a, by LU with partial pivoting (LAPACK dgetrf/dgetrs
 * where available, else solveJs). A pivot below 1e-12 of the largest entry of a
 * means a is (numerically) singular: an INVALID_ARGUMENT naming `what`, never a
 * result full of Infinity.
 */
export function solve(a: Mat, b: Mat, what = 'the matrix'): Mat {
  if (!lapack) return solveJs(a, b, what);
  checkSolve(a, b, what);
  const n = a.rows;
  const { x, singularPivot } = lapack.linalgSolve(a.data, n, b.data, b.cols, PIVOT_TOLERANCE);
  if (x === null) throw singular(what, n, singularPivot);
  return { rows: n, cols: b.cols, data: x };
}

/** solve in JavaScript: Gaussian elimination with partial pivoting (the fallback and the tests' reference). */
export function solveJs(a: Mat, b: Mat, what = 'the matrix'): Mat {
  const scale = checkSolve(a, b, what);
  const n = a.rows;
  const A = Float64Array.from(a.data);
  const m = b.cols;
  const X = Float64Array.from(b.data);
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(A[i * n + k]) > Math.abs(A[p * n + k])) p = i;
    if (Math.abs(A[p * n + k]) <= PIVOT_TOLERANCE * scale) throw singular(what, n, k);
    if (p !== k) {
      for (let j = 0; j < n; j++) [A[k * n + j], A[p * n + j]] = [A[p * n + j], A[k * n + j]];
      for (let j = 0; j < m; j++) [X[k * m + j], X[p * m + j]] = [X[p * m + j], X[k * m + j]];
    }
    const pivot = A[k * n + k];
    for (let i = k + 1; i < n; i++) {
      const f = A[i * n + k] / pivot;
      if (f === 0) continue;
      for (let j = k; j < n; j++) A[i * n + j] -= f * A[k * n + j];
      for (let j = 0; j < m; j++) X[i * m + j] -= f * X[k * m + j];
    }
  }
  for (let k = n - 1; k >= 0; k--) {
    const pivot = A[k * n + k];
    for (let j = 0; j < m; j++) {
      let s = X[k * m + j];
      for (let i = k + 1; i < n; i++) s -= A[k * n + i] * X[i * m + j];
      X[k * m + j] = s / pivot;
    }
  }
  return { rows: n, cols: m, data: X };
}

/**
 * Eigen-decomposition of a symmetric matrix (LAPACK dsyevd where available,
 * else symmetricEigenJs). Returns the eigenvalues in descending order and the
 * matching unit eigenvectors as the rows of `vectors` (so
 * a = vectorsᵀ·diag(values)·vectors); each vector's sign is arbitrary. LAPACK
 * reads only the lower triangle, so a product that is symmetric up to rounding
 * counts as that triangle's symmetric matrix.
 */
export function symmetricEigen(a: Mat): { values: Float64Array; vectors: Mat } {
  if (!lapack) return symmetricEigenJs(a);
  const n = a.rows;
  if (a.cols !== n) throw invalidArgument(`symmetricEigen: the matrix must be square, got ${a.rows}×${a.cols}`);
  const { values, vectors } = lapack.linalgSymmetricEigen(a.data, n);
  return { values, vectors: { rows: n, cols: n, data: vectors } };
}

/**
 * symmetricEigen in JavaScript (the fallback and the tests' reference):
 * Householder reduction to tridiagonal form, then implicit QL iterations with
 * Wilkinson-style shifts.
 */
export function symmetricEigenJs(a: Mat): { values: Float64Array; vectors: Mat } {
  const n = a.rows;
  if (a.cols !== n) throw invalidArgument(`symmetricEigen: the matrix must be square, got ${a.rows}×${a.cols}`);
  const A = Float64Array.from(a.data);
  // P holds Qᵀ (row i is column i of Q) so that both the Householder
  // accumulation and the QL rotations touch contiguous rows.
  const P = identity(n).data;
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  const v = new Float64Array(n);
  const w = new Float64Array(n);
  const vP = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Householder vector zeroing A[k+2.., k]: H·x = alpha·e1 for x = A[k+1.., k].
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += A[i * n + k] * A[i * n + k];
    const x0 = A[(k + 1) * n + k];
    if (norm2 - x0 * x0 <= 1e-300) continue; // already tridiagonal in this column
    const alpha = x0 > 0 ? -Math.sqrt(norm2) : Math.sqrt(norm2);
    for (let i = k + 1; i < n; i++) v[i] = A[i * n + k];
    v[k + 1] -= alpha;
    let vv = 0;
    for (let i = k + 1; i < n; i++) vv += v[i] * v[i];
    const beta = 2 / vv;
    // Trailing block B ← H·B·H = B − v·wᵀ − w·vᵀ with p = β·B·v, w = p − (β·vᵀp/2)·v.
    let vp = 0;
    for (let i = k + 1; i < n; i++) {
      let s = 0;
      for (let j = k + 1; j < n; j++) s += A[i * n + j] * v[j];
      w[i] = beta * s;
      vp += v[i] * w[i];
    }
    const K = (beta * vp) / 2;
    for (let i = k + 1; i < n; i++) w[i] -= K * v[i];
    for (let i = k + 1; i < n; i++) for (let j = k + 1; j < n; j++) A[i * n + j] -= v[i] * w[j] + w[i] * v[j];
    A[(k + 1) * n + k] = alpha;
    A[k * n + k + 1] = alpha;
    for (let i = k + 2; i < n; i++) A[i * n + k] = A[k * n + i] = 0;
    // Qᵀ ← H·Qᵀ.
    vP.fill(0);
    for (let i = k + 1; i < n; i++) {
      const vi = v[i];
      for (let j = 0; j < n; j++) vP[j] += vi * P[i * n + j];
    }
    for (let i = k + 1; i < n; i++) {
      const f = beta * v[i];
      for (let j = 0; j < n; j++) P[i * n + j] -= f * vP[j];
    }
  }
  for (let i = 0; i < n; i++) d[i] = A[i * n + i];
  for (let i = 0; i < n - 1; i++) e[i] = A[i * n + i + 1];
  ql(d, e, P, n);
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => d[y] - d[x]);
  const values = Float64Array.from(order, (i) => d[i]);
  const vectors = mat(n, n);
  order.forEach((src, dst) => vectors.data.set(P.subarray(src * n, src * n + n), dst * n));
  return { values, vectors };
}

/** A thin SVD a = u·diag(s)·vt, or its leading part. */
export interface Svd {
  /** Every singular value, descending (min(rows, cols) of them). */
  s: Float64Array;
  /** [rows, r]: the first r left singular vectors as columns. */
  u: Mat;
  /** [r, cols]: the first r right singular vectors as rows. */
  vt: Mat;
}

/**
 * Thin SVD of a (LAPACK dgesdd where available, else svdJs). `keep` picks r,
 * how many singular vectors to return, from the singular values (default: all
 * min(rows, cols)); the JavaScript path forms only those. Signs are arbitrary.
 */
export function svd(a: Mat, keep?: (s: Float64Array) => number): Svd {
  if (!lapack) return svdJs(a, keep);
  const { rows: m, cols: n } = a;
  const k = Math.min(m, n);
  const full = lapack.linalgSvd(a.data, m, n);
  const r = keepCount(keep, full.s, k);
  if (r === k) return { s: full.s, u: { rows: m, cols: k, data: full.u }, vt: { rows: k, cols: n, data: full.vt } };
  const u = mat(m, r);
  for (let i = 0; i < m; i++) u.data.set(full.u.subarray(i * k, i * k + r), i * r);
  return { s: full.s, u, vt: { rows: r, cols: n, data: full.vt.slice(0, r * n) } };
}

function keepCount(keep: ((s: Float64Array) => number) | undefined, s: Float64Array, k: number): number {
  if (keep === undefined) return k;
  const r = keep(s);
  if (!Number.isSafeInteger(r) || r < 0 || r > k) throw invalidArgument(`svd: keep must pick an integer from 0 to ${k}, got ${r}`);
  return r;
}

/**
 * svd in JavaScript (the fallback and the tests' reference): eigenvectors of
 * the smaller Gram matrix (aᵀa or aaᵀ, at most min(rows, cols)² entries) give
 * one side, a product the other. Far cheaper than a full JavaScript SVD, and
 * accurate enough for truncation: squaring loses relative precision only on
 * singular values below ~1e-8·σ₁, whose vectors are then inaccurate too (a
 * vector for σ = 0 is returned as zeros).
 */
export function svdJs(a: Mat, keep?: (s: Float64Array) => number): Svd {
  const { rows: m, cols: n } = a;
  for (const value of a.data) if (!Number.isFinite(value)) throw invalidArgument('svd: the matrix has non-finite values');
  const wide = m < n;
  // Eigenvectors of the smaller Gram matrix: right singular vectors (tall/square) or left ones (wide).
  const { values, vectors } = symmetricEigenJs(wide ? matmul(a, a, true) : gramColumns(a));
  const k = Math.min(m, n);
  const s = Float64Array.from(values.subarray(0, k), (l) => Math.sqrt(Math.max(l, 0)));
  const r = keepCount(keep, s, k);
  const u = mat(m, r);
  const vt = mat(r, n);
  for (let i = 0; i < r; i++) {
    const e = vectors.data.subarray(i * k, i * k + k);
    const sigma = s[i];
    if (!wide) {
      // v_i = e; u_i = a·v_i / σ_i.
      vt.data.set(e, i * n);
      if (sigma > 0) {
        for (let p = 0; p < m; p++) {
          let acc = 0;
          for (let q = 0; q < n; q++) acc += a.data[p * n + q] * e[q];
          u.data[p * r + i] = acc / sigma;
        }
      }
    } else {
      // u_i = e; v_iᵀ = u_iᵀ·a / σ_i.
      for (let p = 0; p < m; p++) u.data[p * r + i] = e[p];
      if (sigma > 0) {
        for (let p = 0; p < m; p++) {
          const f = e[p] / sigma;
          if (f === 0) continue;
          for (let q = 0; q < n; q++) vt.data[i * n + q] += f * a.data[p * n + q];
        }
      }
    }
  }
  return { s, u, vt };
}

/**
 * Implicit QL on the tridiagonal (d diagonal, e[i] coupling i and i+1),
 * rotating the rows of P along: on return d holds eigenvalues and row i of
 * P the eigenvector of d[i].
 */
function ql(d: Float64Array, e: Float64Array, P: Float64Array, n: number): void {
  for (let l = 0; l < n; l++) {
    for (let iter = 0; ; iter++) {
      let m = l;
      for (; m < n - 1; m++) {
        const dd = Math.abs(d[m]) + Math.abs(d[m + 1]);
        if (Math.abs(e[m]) <= Number.EPSILON * dd) break;
      }
      if (m === l) break;
      if (iter === 100) throw new ImprintError(`symmetricEigen: no convergence for eigenvalue ${l} of ${n}`, 'INTERNAL');
      // Shift from the leading 2×2 block's eigenvalue nearer d[l].
      let g = (d[l + 1] - d[l]) / (2 * e[l]);
      let r = Math.hypot(g, 1);
      g = d[m] - d[l] + e[l] / (g + (g >= 0 ? r : -r));
      let s = 1;
      let c = 1;
      let p = 0;
      let i = m - 1;
      let underflow = false;
      for (; i >= l; i--) {
        const f = s * e[i];
        const b = c * e[i];
        r = Math.hypot(f, g);
        e[i + 1] = r;
        if (r === 0) {
          d[i + 1] -= p;
          e[m] = 0;
          underflow = true;
          break;
        }
        s = f / r;
        c = g / r;
        g = d[i + 1] - p;
        r = (d[i] - g) * s + 2 * c * b;
        p = s * r;
        d[i + 1] = g + p;
        g = c * r - b;
        const ri = i * n;
        const rj = (i + 1) * n;
        for (let k = 0; k < n; k++) {
          const pk = P[rj + k];
          P[rj + k] = s * P[ri + k] + c * pk;
          P[ri + k] = c * P[ri + k] - s * pk;
        }
      }
      if (underflow) continue;
      d[l] -= p;
      e[l] = g;
      e[m] = 0;
    }
  }
}
