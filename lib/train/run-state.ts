// What every training run keeps about itself: the identity of its settings and
// data (recorded in each checkpoint, so a resume under other settings is
// refused with what differs), atomic checkpoints written from any device, the
// loss/gradient guard, and the clean-up of what a killed run left behind.
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { ImprintError, invalidArgument } from '../errors.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../tensor.js';
import type { Device } from '../validate.js';
import type { AdamW } from './optimizer.js';

/** Everything that shapes a run, as strings (stored as safetensors metadata). */
export type RunIdentity = Readonly<Record<string, string>>;

/** `t` on `device`: itself when already there, else a copy, `t` freed. */
export async function onDevice<T extends Tensor>(t: T, device: string): Promise<T> {
  if (t.device === device) return t;
  try {
    return (await t.to(device)) as T;
  } finally {
    t.dispose();
  }
}

/** Writes named tensors from any device (device tensors through temporary host copies); atomic, as saveSafetensors is. */
export async function saveFromAnyDevice(path: string, tensors: Map<string, Tensor>, metadata?: Record<string, string>): Promise<void> {
  const copies: Tensor[] = [];
  try {
    const host = new Map<string, Tensor>();
    for (const [n, t] of tensors) {
      if (t.device === 'cpu') host.set(n, t);
      else {
        const c = await t.to('cpu');
        copies.push(c);
        host.set(n, c);
      }
    }
    await saveSafetensors(path, host, metadata);
  } finally {
    for (const c of copies) c.dispose();
  }
}

/** Whether process `pid` is running on this machine. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files and folders (`<name>.tmp-<pid>`) that a killed
 * run left in `dir`: those of processes no longer running. Also the
 * `<name>.tmp` of older releases. Returns what was removed.
 */
export function removeStaleTemporaries(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const m = /\.tmp-(\d+)$/.exec(name);
    const stale = m ? Number(m[1]) !== process.pid && !alive(Number(m[1])) : name === 'checkpoint.safetensors.tmp';
    if (!stale) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

export interface RunStateOptions {
  /** Values for identity keys a checkpoint from before they were recorded lacks (what those runs used). */
  recordedSince?: Readonly<Record<string, string>>;
  /** How the refusal tells the user to start over (default 'remove it, pass resume: false, or use the same settings'). */
  startOver?: string;
  /** What the loss guard suggests (default 'Lower lr?'). */
  lossHint?: string;
}

/**
 * The checkpoint of one run in `workDir` (none without a workDir): resume
 * check, restore, save and the loss guard, all naming the file.
 */
export class RunState {
  /** The checkpoint file, undefined without a workDir. */
  readonly checkpoint: string | undefined;

  constructor(readonly fn: string, readonly workDir: string | undefined, readonly identity: RunIdentity, private readonly options: RunStateOptions = {}) {
    this.checkpoint = workDir === undefined ? undefined : join(workDir, 'checkpoint.safetensors');
    if (workDir !== undefined) removeStaleTemporaries(workDir);
  }

  /**
   * The step the run continues from: 0 without a checkpoint (or resume
   * false), else the checkpoint's, after checking that it was written with
   * this identity. Throws naming every setting that differs.
   */
  resumeStep(resume: boolean): number {
    const ckpt = this.checkpoint;
    if (ckpt === undefined || !resume || !existsSync(ckpt)) return 0;
    const meta = readSafetensorsHeader(ckpt).metadata;
    const recorded = (k: string): string | undefined => meta[k] ?? this.options.recordedSince?.[k];
    const differs = Object.entries(this.identity).filter(([k, v]) => recorded(k) !== v).map(([k, v]) => `${k} ${recorded(k) ?? '(none)'} vs ${v}`);
    const start = Number(meta.step);
    if (differs.length > 0 || !Number.isSafeInteger(start) || start < 0) {
      throw invalidArgument(`${this.fn}: ${ckpt} was written by another run (${differs.join('; ') || `step ${meta.step}`}); ${this.options.startOver ?? 'remove it, pass resume: false, or use the same settings'}`);
    }
    return start;
  }

  /** Loads the checkpoint's optimizer state into `opt` at `step` (as resumeStep returned). */
  async restore(opt: AdamW, step: number, device?: Device): Promise<void> {
    opt.restore(await loadSafetensors(this.checkpoint!, device === undefined ? undefined : { device }), step, this.checkpoint!);
  }

  /** Writes the optimizer state at `step` with the identity (atomic: a crash leaves the previous checkpoint whole). */
  async save(opt: AdamW, step: number): Promise<void> {
    await saveFromAnyDevice(this.checkpoint!, opt.stateTensors(), { ...this.identity, step: String(step), rngStep: String(step) });
  }

  /** Writes named tensors (a method's own state, e.g. Cones' statistic) at `step` with the identity, atomically. */
  async saveTensors(tensors: Map<string, Tensor>, step: number): Promise<void> {
    await saveFromAnyDevice(this.checkpoint!, tensors, { ...this.identity, step: String(step), rngStep: String(step) });
  }

  /** The checkpoint's tensors (as saveTensors wrote them), on `device`. */
  async loadTensors(device?: Device): Promise<Map<string, Tensor>> {
    return loadSafetensors(this.checkpoint!, device === undefined ? undefined : { device });
  }

  /** Stops the run when a step's loss is not finite or above maxLoss, or its gradient norm is not finite. */
  guard(step: number, loss: number, maxLoss: number, gradNorm?: number): void {
    const kept = this.checkpoint !== undefined && existsSync(this.checkpoint) ? `, the last good checkpoint ${this.checkpoint} is kept` : '';
    if (!Number.isFinite(loss) || loss > maxLoss) {
      const limit = Number.isFinite(maxLoss) ? ` (limit maxLoss ${maxLoss})` : '';
      throw new ImprintError(`${this.fn}: the loss is ${loss} at step ${step + 1}${limit}; training stopped${kept}. ${this.options.lossHint ?? 'Lower lr?'}`, 'INVALID_ARGUMENT');
    }
    if (gradNorm !== undefined && !Number.isFinite(gradNorm)) {
      throw new ImprintError(`${this.fn}: the gradient norm is ${gradNorm} at step ${step + 1}; training stopped${kept}`, 'INVALID_ARGUMENT');
    }
  }
}
