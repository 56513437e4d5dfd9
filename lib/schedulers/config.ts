// Scheduler configuration: diffusers' scheduler_config.json fields, checked
// field by field, and the noise schedule derived from them (betas, ᾱ_t, σ_t,
// inference timesteps). All schedule math is float64 in plain JS numbers.
import { invalidArgument } from '../errors.js';
import { describe, isPlainObject } from '../validate.js';

export type PredictionType = 'epsilon' | 'v_prediction' | 'sample';
export type TimestepSpacing = 'leading' | 'trailing' | 'linspace';

/** The fields every scheduler shares, after validation. */
export interface ScheduleConfig {
  numTrainTimesteps: number;
  betaStart: number;
  betaEnd: number;
  betaSchedule: 'scaled_linear' | 'linear' | 'squaredcos_cap_v2';
  trainedBetas: number[] | null;
  predictionType: PredictionType;
  timestepSpacing: TimestepSpacing;
  stepsOffset: number;
}

/** A parsed scheduler_config.json: an object, or its JSON text (Python's -Infinity/NaN tokens allowed). */
export type ConfigInput = Record<string, unknown> | string;

/**
 * Reads the JSON text or object. Python's json writes -Infinity (DPM-Solver's
 * lambda_min_clipped), which JSON.parse refuses, so those tokens become numbers here.
 */
export function configObject(fn: string, input: unknown): Record<string, unknown> {
  if (typeof input === 'string') {
    const quoted = input.replace(/([:[,]\s*)(-?Infinity|NaN)(?=\s*[,}\]])/g, '$1"__$2__"');
    let parsed: unknown;
    try {
      parsed = JSON.parse(quoted, (_k, v) => (v === '__Infinity__' ? Infinity : v === '__-Infinity__' ? -Infinity : v === '__NaN__' ? NaN : v));
    } catch (e) {
      throw invalidArgument(`${fn}: config is not valid JSON (${(e as Error).message})`);
    }
    input = parsed;
  }
  if (!isPlainObject(input)) throw invalidArgument(`${fn}: config must be an object or JSON text, got ${describe(input)}`);
  return input;
}

/** Field readers: each names the function and the field. `null` counts as absent, as in diffusers. */
export class Fields {
  constructor(readonly fn: string, readonly json: Record<string, unknown>) {}

  private get(name: string): unknown {
    const v = this.json[name];
    return v === null ? undefined : v;
  }

  number(name: string, fallback: number, check?: (v: number) => boolean, expected?: string): number {
    const v = this.get(name);
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || Number.isNaN(v) || (check && !check(v))) {
      throw invalidArgument(`${this.fn}: config field ${name} must be ${expected ?? 'a finite number'}, got ${describe(v)}`);
    }
    return v;
  }

  integer(name: string, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    return this.number(name, fallback, (v) => Number.isSafeInteger(v) && v >= min && v <= max, `an integer in [${min}, ${max}]`);
  }

  boolean(name: string, fallback: boolean): boolean {
    const v = this.get(name);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw invalidArgument(`${this.fn}: config field ${name} must be true or false, got ${describe(v)}`);
    return v;
  }

  choice<T extends string>(name: string, fallback: T, allowed: readonly T[]): T {
    const v = this.get(name);
    if (v === undefined) return fallback;
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
      throw invalidArgument(`${this.fn}: config field ${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(v)}`);
    }
    return v as T;
  }

  /** A feature this package does not implement: only its off value is accepted. */
  refuse(name: string, off: unknown): void {
    const v = this.get(name);
    if (v !== undefined && v !== off) {
      throw invalidArgument(`${this.fn}: config field ${name}=${JSON.stringify(v)} is not supported (only ${JSON.stringify(off)})`);
    }
  }
}

export function readScheduleConfig(f: Fields, defaults: { spacing: TimestepSpacing; stepsOffset: number }): ScheduleConfig {
  const numTrainTimesteps = f.integer('num_train_timesteps', 1000, 2, 100000);
  const betaStart = f.number('beta_start', 0.00085, (v) => Number.isFinite(v) && v > 0 && v < 1, 'a number in (0, 1)');
  const betaEnd = f.number('beta_end', 0.012, (v) => Number.isFinite(v) && v > 0 && v < 1, 'a number in (0, 1)');
  const betaSchedule = f.choice('beta_schedule', 'scaled_linear', ['scaled_linear', 'linear', 'squaredcos_cap_v2'] as const);
  let trainedBetas: number[] | null = null;
  const tb = f.json.trained_betas;
  if (tb !== undefined && tb !== null) {
    if (!Array.isArray(tb) || tb.length !== numTrainTimesteps) {
      throw invalidArgument(`${f.fn}: config field trained_betas must be an array of num_train_timesteps (${numTrainTimesteps}) numbers, got ${describe(tb)}`);
    }
    tb.forEach((b, i) => {
      if (typeof b !== 'number' || !(b > 0 && b < 1)) throw invalidArgument(`${f.fn}: config field trained_betas[${i}] must be a number in (0, 1), got ${describe(b)}`);
    });
    trainedBetas = [...(tb as number[])];
  }
  const predictionType = f.choice('prediction_type', 'epsilon', ['epsilon', 'v_prediction', 'sample'] as const);
  const timestepSpacing = f.choice('timestep_spacing', defaults.spacing, ['leading', 'trailing', 'linspace'] as const);
  const stepsOffset = f.integer('steps_offset', defaults.stepsOffset, 0, numTrainTimesteps - 1);
  f.refuse('thresholding', false);
  f.refuse('rescale_betas_zero_snr', false);
  return { numTrainTimesteps, betaStart, betaEnd, betaSchedule, trainedBetas, predictionType, timestepSpacing, stepsOffset };
}

/**
 * ᾱ_t = Π(1 − β_s) for t = 0 … N−1, in float64. SD's scaled_linear: β =
 * linspace(√β_start, √β_end, N)²; squaredcos_cap_v2 (Nichol & Dhariwal's
 * cosine schedule, for small images): β_i = min(1 − f((i+1)/N)/f(i/N), 0.999)
 * with f(u) = cos²((u + 0.008)/1.008 · π/2).
 */
export function alphasCumprod(c: ScheduleConfig): Float64Array {
  const n = c.numTrainTimesteps;
  const betas = c.trainedBetas
    ? Float64Array.from(c.trainedBetas)
    : c.betaSchedule === 'linear'
      ? linspace(c.betaStart, c.betaEnd, n)
      : c.betaSchedule === 'squaredcos_cap_v2'
        ? cosineBetas(n)
        : linspace(Math.sqrt(c.betaStart), Math.sqrt(c.betaEnd), n).map((b) => b * b);
  const out = new Float64Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) out[i] = acc *= 1 - betas[i];
  return out;
}

function cosineBetas(n: number): Float64Array {
  const f = (u: number): number => Math.cos(((u + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  return Float64Array.from({ length: n }, (_, i) => Math.min(1 - f((i + 1) / n) / f(i / n), 0.999));
}

/** numpy.linspace: start + i·step, the endpoint exact. */
export function linspace(start: number, stop: number, num: number): Float64Array {
  const out = new Float64Array(num);
  const step = num > 1 ? (stop - start) / (num - 1) : 0;
  for (let i = 0; i < num; i++) out[i] = start + i * step;
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** numpy.round: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy.arange(start, stop, step) for a negative step. */
export function arangeDown(start: number, stop: number, step: number): number[] {
  const n = Math.ceil((stop - start) / step);
  return Array.from({ length: Math.max(n, 0) }, (_, i) => start + i * step);
}

export function checkSteps(fn: string, steps: unknown, max: number): number {
  if (typeof steps !== 'number' || !Number.isSafeInteger(steps) || steps < 1 || steps > max) {
    throw invalidArgument(`${fn}: numInferenceSteps must be an integer in [1, ${max}] (num_train_timesteps), got ${describe(steps)}`);
  }
  return steps;
}

/** σ_t = √((1 − ᾱ_t)/ᾱ_t), the noise level of the variance-exploding view. */
export function sigmasOf(ac: Float64Array): Float64Array {
  return ac.map((a) => Math.sqrt((1 - a) / a));
}

/** Karras et al. (2022) noise levels: ρ = 7 interpolation from `first` to `last` (either order). */
export function karrasSigmas(first: number, last: number, n: number): number[] {
  const rho = 7;
  const a = first ** (1 / rho);
  const b = last ** (1 / rho);
  return Array.from(linspace(0, 1, n), (r) => (a + r * (b - a)) ** rho);
}

/** The fractional train timestep of noise level σ: linear in log σ between neighbours (logSigmas ascending). */
export function sigmaToT(sigma: number, logSigmas: Float64Array): number {
  const ls = Math.log(Math.max(sigma, 1e-10));
  let low = 0;
  for (let i = 0; i < logSigmas.length; i++) if (ls - logSigmas[i] >= 0) low = i;
  low = Math.min(low, logSigmas.length - 2);
  const high = low + 1;
  let w = (logSigmas[low] - ls) / (logSigmas[low] - logSigmas[high]);
  w = Math.min(Math.max(w, 0), 1);
  return (1 - w) * low + w * high;
}

/** Linear interpolation of ys (at 0, 1, …) at fractional x, as numpy.interp. */
export function interp(x: number, ys: ArrayLike<number>): number {
  if (x <= 0) return ys[0];
  if (x >= ys.length - 1) return ys[ys.length - 1];
  const i = Math.floor(x);
  const w = x - i;
  return ys[i] * (1 - w) + ys[i + 1] * w;
}
