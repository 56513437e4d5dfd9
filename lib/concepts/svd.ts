// Truncated SVD of a weight change ΔW [out, in], for compressed concept files:
// the thin SVD of linalg.ts (LAPACK's dgesdd, or the JavaScript Gram-matrix
// route without LAPACK), cut to the rank the options pick.
import { invalidArgument } from '../errors.js';
import { describe } from '../validate.js';
import { svd, type Mat } from './linalg.js';

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
  const { s, u, vt } = svd(x, (values) => chooseRank(values, options));
  // u ← U·diag(σ): the stored factors multiply out to ΔW without a σ vector.
  const r = u.cols;
  for (let a = 0; a < m; a++) for (let i = 0; i < r; i++) u.data[a * r + i] *= s[i];
  return { u, v: vt, singularValues: s, rank: r };
}
