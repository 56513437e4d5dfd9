// Seeded randomness for every method and the world: mulberry32 on 32-bit integer math, so a seed
// gives the same scenes on every platform and Node version. fork() derives an
// independent stream from the generator's seed and a label (never from how far
// the parent has been drawn), so sample k of a stream needs no samples before it.
import { invalidArgument } from '../errors.js';
import { describe } from '../validate.js';

/** FNV-1a over the label's UTF-16 code units, folded into a 32-bit key. */
function hashLabel(label: string | number): number {
  const text = typeof label === 'number' ? `#${label}` : `$${label}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A 32-bit finaliser (murmur3's fmix32): spreads nearby keys far apart. */
function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

export class SeededRandom {
  /** The stream's key; forks derive from it. */
  private key: number;
  private state: number;

  /** `seed`: a non-negative safe integer. */
  constructor(seed: number) {
    if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
      throw invalidArgument(`SeededRandom: seed must be a non-negative safe integer, got ${describe(seed)}`);
    }
    // Both 32-bit halves of the seed take part, so seeds beyond 2^32 differ too.
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 4294967296) >>> 0;
    this.key = mix32(lo ^ mix32(hi + 0x9e3779b9));
    this.state = this.key;
  }

  /** A uniform number in [0, 1) with 32 random bits. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** A uniform integer in [lo, hi], both ends included. */
  int(lo: number, hi: number): number {
    if (!Number.isSafeInteger(lo) || !Number.isSafeInteger(hi) || hi < lo) {
      throw invalidArgument(`SeededRandom.int: expected integers lo <= hi, got ${describe(lo)} and ${describe(hi)}`);
    }
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  /** A uniform number in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** A standard normal draw (Box-Muller on two uniforms). */
  normal(): number {
    const u1 = 1 - this.next(); // (0, 1]: log stays finite
    const u2 = this.next();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(xs: readonly T[]): T {
    if (!Array.isArray(xs) || xs.length === 0) {
      throw invalidArgument(`SeededRandom.pick: expected a non-empty array, got ${describe(xs)}`);
    }
    return xs[Math.floor(this.next() * xs.length)];
  }

  /** An independent generator for `label`; the same label always gives the same stream. */
  fork(label: string | number): SeededRandom {
    if (typeof label !== 'string' && !(typeof label === 'number' && Number.isSafeInteger(label))) {
      throw invalidArgument(`SeededRandom.fork: label must be a string or an integer, got ${describe(label)}`);
    }
    const child = new SeededRandom(0);
    const key = mix32(this.key ^ mix32(hashLabel(label)));
    child.key = key;
    child.state = key;
    return child;
  }
}
