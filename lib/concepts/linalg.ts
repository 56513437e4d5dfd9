// Dense float64 matrix helpers for the concept tools (truncated SVD, the
// closed-form merge). The matrices are small (at most a few thousand on a
// side), so plain row-major JavaScript loops are enough and keep the results
// independent of the engine's f32 kernels.
import { ImprintError, invalidArgument } from '../errors.js';
import { tensor } from '../creation.js';
import type { Tensor } from '../tensor.js';

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

/**
 * X with a·X = b for square a, by LU with partial pivoting. A pivot below
 * 1e-12 of the largest entry of a means a is (numerically) singular: an
 * INVALID_ARGUMENT naming `what`, never a result full of Infinity.
 */
export function solve(a: Mat, b: Mat, what = 'the matrix'): Mat {
  const n = a.rows;
  if (a.cols !== n) throw invalidArgument(`solve: ${what} must be square, got ${a.rows}×${a.cols}`);
  if (b.rows !== n) throw invalidArgument(`solve: ${what} is ${n}×${n} but the right-hand side has ${b.rows} rows`);
  const A = Float64Array.from(a.data);
  const m = b.cols;
  const X = Float64Array.from(b.data);
  let scale = 0;
  for (const v of A) scale = Math.max(scale, Math.abs(v));
  if (!(scale > 0) || !Number.isFinite(scale)) throw invalidArgument(`solve: ${what} is ${scale === 0 ? 'zero' : 'not finite'}`);
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(A[i * n + k]) > Math.abs(A[p * n + k])) p = i;
    if (Math.abs(A[p * n + k]) <= 1e-12 * scale) throw invalidArgument(`solve: ${what} (${n}×${n}) is singular or nearly so (pivot ${k})`);
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
 * Eigen-decomposition of a symmetric matrix: Householder reduction to
 * tridiagonal form, then implicit QL iterations with Wilkinson-style shifts.
 * Returns the eigenvalues in descending order and the matching unit
 * eigenvectors as the rows of `vectors` (so a = vectorsᵀ·diag(values)·vectors).
 */
export function symmetricEigen(a: Mat): { values: Float64Array; vectors: Mat } {
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
