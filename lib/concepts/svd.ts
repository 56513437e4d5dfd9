// Truncated SVD of a weight change ΔW [out, in], for compressed concept files.
// The eigen-decomposition of the smaller Gram matrix (ΔWᵀΔW or ΔWΔWᵀ, at most
// min(out, in)² = 768² for SD's K/V) is far cheaper than a full SVD and
// accurate enough here: squaring only loses relative precision on singular
// values below ~1e-8·σ_max, which truncation drops anyway.
import { invalidArgument } from '../errors.js';
import { describe } from '../validate.js';
import { gramColumns, mat, matmul, symmetricEigen, type Mat } from './linalg.js';

export interface TruncationOptions {
  /** Keep the fewest singular values whose σ² sum to at least this fraction of Σσ², in (0, 1]. */
  energy?: number;
  /** Keep at most this many (an integer ≥ 1). With energy too, the smaller rank wins. */
  rank?: number;
}

export interface TruncatedSvd {
  /** [out, r]: U·diag(σ), the left singular vectors scaled. */
  u: Mat;
  /** [r, in]: Vᵀ, unit rows. */
  v: Mat;
  /** Every singular value of ΔW, descending (min(out, in) of them). */
  singularValues: Float64Array;
  rank: number;
}

/** Checks truncation options (energy in (0, 1], rank a positive integer); an empty object means energy 0.99. */
export function checkTruncation(fn: string, o: TruncationOptions): { energy?: number; rank?: number } {
  const out: { energy?: number; rank?: number } = {};
  if (o.energy !== undefined) {
    if (typeof o.energy !== 'number' || !(o.energy > 0 && o.energy <= 1)) throw invalidArgument(`${fn}: compress.energy must be a number in (0, 1], got ${describe(o.energy)}`);
    out.energy = o.energy;
  }
  if (o.rank !== undefined) {
    if (typeof o.rank !== 'number' || !Number.isSafeInteger(o.rank) || o.rank < 1) throw invalidArgument(`${fn}: compress.rank must be an integer ≥ 1, got ${describe(o.rank)}`);
    out.rank = o.rank;
  }
  if (out.energy === undefined && out.rank === undefined) out.energy = 0.99;
  return out;
}

/** The rank that options pick from descending singular values (at least 1). */
export function chooseRank(singularValues: Float64Array, options: TruncationOptions): number {
  const k = singularValues.length;
  let r = k;
  if (options.energy !== undefined) {
    let total = 0;
    for (const s of singularValues) total += s * s;
    let acc = 0;
    r = 0;
    // A tiny slack, so energy 1 is reached despite rounding in the sums.
    while (r < k && acc < options.energy * total * (1 - 1e-12)) {
      acc += singularValues[r] ** 2;
      r++;
    }
  }
  if (options.rank !== undefined) r = Math.min(r, options.rank);
  return Math.max(1, Math.min(r, k));
}

/** ΔW ≈ u·v with the rank chosen by `options` (all singular values kept when neither is given). */
export function truncatedSvd(x: Mat, options: TruncationOptions = {}): TruncatedSvd {
  const { rows: m, cols: n } = x;
  if (m === 0 || n === 0) throw invalidArgument(`truncatedSvd: the matrix is empty (${m}×${n})`);
  for (const value of x.data) if (!Number.isFinite(value)) throw invalidArgument('truncatedSvd: the matrix has non-finite values');
  const wide = m < n;
  // Eigenvectors of the smaller Gram matrix: right singular vectors (tall/square) or left ones (wide).
  const { values, vectors } = symmetricEigen(wide ? matmul(x, x, true) : gramColumns(x));
  const k = Math.min(m, n);
  const singularValues = Float64Array.from(values.subarray(0, k), (l) => Math.sqrt(Math.max(l, 0)));
  const r = chooseRank(singularValues, options);
  const u = mat(m, r);
  const v = mat(r, n);
  for (let i = 0; i < r; i++) {
    const e = vectors.data.subarray(i * k, i * k + k);
    if (!wide) {
      // v_i = e; column i of u = ΔW·v_i = σ_i·u_i.
      v.data.set(e, i * n);
      for (let a = 0; a < m; a++) {
        let s = 0;
        for (let b = 0; b < n; b++) s += x.data[a * n + b] * e[b];
        u.data[a * r + i] = s;
      }
    } else {
      // u_i = e; column i of u = σ_i·u_i; row i of v = u_iᵀ·ΔW / σ_i (zero for σ_i = 0).
      const sigma = singularValues[i];
      for (let a = 0; a < m; a++) u.data[a * r + i] = e[a] * sigma;
      if (sigma > 0) {
        for (let a = 0; a < m; a++) {
          const f = e[a] / sigma;
          if (f === 0) continue;
          for (let b = 0; b < n; b++) v.data[i * n + b] += f * x.data[a * n + b];
        }
      }
    }
  }
  return { u, v, singularValues, rank: r };
}
