// A training progress line: step/total, a bar, the smoothed loss, seconds per
// step and the ETA. On a terminal it redraws one line; elsewhere (CI, logs)
// it prints a line at most every `every` steps.
import type { Writable } from 'node:stream';

export interface ProgressOptions {
  label?: string;
  stream?: Writable & { isTTY?: boolean };
  /** Non-terminal output: print every this many steps (default total/20). */
  every?: number;
  /** Print nothing. */
  quiet?: boolean;
  /** When the work began (performance.now()), for a bar made after its first step (default: now). */
  startedAt?: number;
}

export interface ProgressUpdate {
  loss?: number;
  [key: string]: number | undefined;
}

export class Progress {
  readonly total: number;
  #start: number;
  #first: number;
  #loss: number | undefined;
  #lastPrinted: number;
  readonly #o: Required<Omit<ProgressOptions, 'stream' | 'startedAt'>> & { stream: ProgressOptions['stream'] };

  /** `first` is the step a resumed run starts at (its ETA counts from there). */
  constructor(total: number, first = 0, options: ProgressOptions = {}) {
    this.total = total;
    this.#first = first;
    this.#start = options.startedAt ?? performance.now();
    this.#lastPrinted = first;
    this.#o = { label: options.label ?? 'train', stream: options.stream ?? process.stderr, every: options.every ?? Math.max(1, Math.round(total / 20)), quiet: options.quiet ?? false };
  }

  /** The loss smoothed over about 20 steps. */
  get smoothedLoss(): number | undefined {
    return this.#loss;
  }

  /** Seconds per step since this run started. */
  secondsPerStep(step: number): number {
    const done = step - this.#first;
    return done > 0 ? (performance.now() - this.#start) / 1000 / done : NaN;
  }

  update(step: number, u: ProgressUpdate = {}): void {
    if (u.loss !== undefined && Number.isFinite(u.loss)) this.#loss = this.#loss === undefined ? u.loss : 0.95 * this.#loss + 0.05 * u.loss;
    if (this.#o.quiet) return;
    const tty = this.#o.stream?.isTTY === true;
    if (!tty && step !== this.total && step - this.#lastPrinted < this.#o.every) return;
    this.#lastPrinted = step;
    const sps = this.secondsPerStep(step);
    const eta = Number.isFinite(sps) ? formatSeconds((this.total - step) * sps) : '?';
    const width = 24;
    const filled = Math.round((width * step) / this.total);
    const extra = Object.entries(u).filter(([k, v]) => k !== 'loss' && v !== undefined).map(([k, v]) => `${k} ${fmt(v!)}`);
    const line = [`${this.#o.label} ${step}/${this.total}`, `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`,
      this.#loss === undefined ? '' : `loss ${fmt(this.#loss)}`, ...extra, Number.isFinite(sps) ? `${sps.toFixed(2)} s/step` : '', `ETA ${eta}`].filter(Boolean).join('  ');
    this.#o.stream?.write(tty ? `\r${line}\x1b[K${step === this.total ? '\n' : ''}` : `${line}\n`);
  }
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : v.toFixed(4);
}

export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : m > 0 ? `${m}m${String(Math.round(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`;
}
