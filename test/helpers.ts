// Independent references for the tests: plain-JavaScript double-precision
// versions of each op, a seeded generator for inputs, and tolerance checks.
import * as assert from 'uvu/assert';

import { memoryStats } from '../lib/index.js';

/** Deterministic inputs (mulberry32), independent of the engine's RNG. */
export function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(n: number, seed: number, scale = 1): Float32Array {
  const next = seeded(seed);
  return Float32Array.from({ length: n }, () => (next() * 2 - 1) * scale);
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

export function broadcastShape(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  return Array.from({ length: n }, (_, i) => {
    const da = a[i - (n - a.length)] ?? 1;
    const db = b[i - (n - b.length)] ?? 1;
    return da === 1 ? db : da;
  });
}

/** Index of `out` position (as a multi-index) into a broadcast operand of `shape`. */
function operandIndex(idx: number[], shape: readonly number[]): number {
  const lead = idx.length - shape.length;
  const st = stridesOf(shape);
  let off = 0;
  for (let i = 0; i < shape.length; i++) off += (shape[i] === 1 ? 0 : idx[i + lead]) * st[i];
  return off;
}

function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    idx[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return idx;
}

export function refBinary(
  a: ArrayLike<number>, as: readonly number[], b: ArrayLike<number>, bs: readonly number[], f: (x: number, y: number) => number,
): { out: number[]; shape: number[] } {
  const shape = broadcastShape(as, bs);
  const out = Array.from({ length: numel(shape) }, (_, i) => {
    const idx = unravel(i, shape);
    return f(a[operandIndex(idx, as)], b[operandIndex(idx, bs)]);
  });
  return { out, shape };
}

/** Batched matmul in double with optional transposes and batch broadcasting. */
export function refMatmul(
  a: ArrayLike<number>, as: readonly number[], b: ArrayLike<number>, bs: readonly number[], ta = false, tb = false,
): { out: Float64Array; shape: number[] } {
  const m = ta ? as[as.length - 1] : as[as.length - 2];
  const k = ta ? as[as.length - 2] : as[as.length - 1];
  const n = tb ? bs[bs.length - 2] : bs[bs.length - 1];
  const batch = broadcastShape(as.slice(0, -2), bs.slice(0, -2));
  const shape = [...batch, m, n];
  const out = new Float64Array(numel(shape));
  const nb = numel(batch);
  for (let bi = 0; bi < nb; bi++) {
    const idx = unravel(bi, batch);
    const ao = operandIndex(idx, as.slice(0, -2)) * m * k;
    const bo = operandIndex(idx, bs.slice(0, -2)) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) {
          const av = ta ? a[ao + p * m + i] : a[ao + i * k + p];
          const bv = tb ? b[bo + j * k + p] : b[bo + p * n + j];
          acc += av * bv;
        }
        out[bi * m * n + i * n + j] = acc;
      }
    }
  }
  return { out, shape };
}

/** Max |x - y| / (atol + rtol·|y|) must stay ≤ 1. */
export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, atol: number, what = ''): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const x = actual[i];
    const y = expected[i];
    if (!(Math.abs(x - y) <= atol + rtol * Math.abs(y))) {
      assert.unreachable(`${what}: element ${i} is ${x}, expected ${y} (rtol ${rtol}, atol ${atol})`);
    }
  }
}

/** Unit roundoff of float32 (2⁻²⁴): the largest relative error of one rounded operation. */
export const F32_UNIT_ROUNDOFF = 2 ** -24;

/** How a computation reduces: the longest sum behind one output element, and how many such sums are chained. */
export interface Reduction {
  /** Terms added into one element by the longest reduction (a GEMM's k, a conv's C·kh·kw, a norm's group size). */
  terms: number;
  /** Reductions chained from input to output (layers; 1 for a single op). */
  depth?: number;
}

/** Confidence of the probabilistic rounding bound below: it fails with probability under 2·exp(−λ²/2) ≈ 3e-8 per element. */
const LAMBDA = 6;

/**
 * The tolerance for two float32 results of the same math summed in another
 * order: a batch split, another GEMM kernel or SIMD width (OpenBLAS picks by
 * CPU and matrix shape; IMPRINT_CPU_ISA forces Imprint's own kernels down),
 * more threads, checkpointing. A sum of k terms in any order is within
 * λ·√k·u·Σ|terms| of the exact sum with probability ≥ 1 − 2·exp(−λ²/2)
 * (rounding errors as independent, mean-zero: Higham and Mary, "A New
 * Approach to Probabilistic Rounding Error Analysis", SISC 2019; the
 * worst case k·u is never approached by real sums), so two orders differ by
 * at most twice that. A network of normalised layers passes each layer's
 * error on at about the activations' scale, so `depth` such layers add up:
 * 2·depth·λ·√k·u·max|expected|. A wrong batch row, weight or sign errs by
 * the magnitude itself, far above this.
 */
export function reorderedTolerance(expected: ArrayLike<number>, r: Reduction): number {
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  return 2 * (r.depth ?? 1) * LAMBDA * Math.sqrt(r.terms) * F32_UNIT_ROUNDOFF * scale;
}

/** assertClose with the tolerance of a reordered f32 computation (reorderedTolerance): for comparisons that are equal in exact arithmetic only. */
export function assertCloseReordered(actual: ArrayLike<number>, expected: ArrayLike<number>, r: Reduction, what = ''): void {
  assertClose(actual, expected, 0, reorderedTolerance(expected, r), `${what} (reordered sums: k ${r.terms}, depth ${r.depth ?? 1})`);
}

/** Runs fn and asserts it rejects/throws an ImprintError with `code` whose message matches every pattern. */
export async function assertRejects(fn: () => unknown, code: string, ...patterns: RegExp[]): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    const err = e as Error & { code?: string };
    assert.is(err.name, 'ImprintError', `expected an ImprintError, got ${err.name}: ${err.message}`);
    assert.is(err.code, code, `code of: ${err.message}`);
    for (const p of patterns) assert.match(err.message, p);
    return err;
  }
  assert.unreachable(`expected a ${code} error`);
  throw new Error('unreachable');
}

/**
 * Earlier test files leave tensors for the garbage collector; collects them
 * (node --expose-gc) until CPU live bytes stop changing, so their finalizers
 * cannot shift the counts a test compares. Returns the settled live bytes.
 */
export async function settleGarbage(): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  let last = -1;
  for (let i = 0; gc !== undefined && i < 20; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 5));
    const now = memoryStats('cpu').liveBytes;
    if (now === last) break;
    last = now;
  }
  return memoryStats('cpu').liveBytes;
}
