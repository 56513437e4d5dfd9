// AdamW over a set of named parameters (torch.optim.AdamW semantics, one
// native adamw_step per tensor), with optional global-norm gradient clipping
// and an exponential moving average of the weights. Ops return new tensors,
// so each step replaces the parameters in `params` and disposes the old ones;
// models built over the old tensors must be rebuilt from `params`. The state
// (moments, EMA) lives on each parameter's device. An f16/bf16 parameter trains
// in mixed precision: an f32 master copy, f32 moments and EMA, and the model's
// weight re-rounded from the master after each step (so updates smaller than
// half a bf16 ulp accumulate instead of vanishing).
import { ImprintError, invalidArgument } from '../errors.js';
import { zeros } from '../creation.js';
import { adamwStep } from '../nn/adamw.js';
import { clipGradNorm } from '../nn/clip-grad-norm.js';
import { combine } from '../schedulers/combine.js';
import type { Tensor } from '../tensor.js';
import { checkNumberIn, checkOptions, describe, type FloatDType } from '../validate.js';

export interface AdamWOptions {
  /** Default 0.9 and 0.999. */
  betas?: [number, number];
  /** Default 1e-8. */
  eps?: number;
  /** Decoupled weight decay (default 1e-2). */
  weightDecay?: number;
  /** Clip the global gradient norm to this (default: no clipping). */
  maxGradNorm?: number;
  /**
   * Keep an EMA of the parameters with this decay (e.g. 0.999; default: none).
   * It starts from zero and is read bias-corrected (÷ (1 − decay^steps), as
   * Adam corrects its moments), so the initial weights never leak into it.
   */
  emaDecay?: number;
}

export interface StepResult {
  /** The global gradient norm before clipping (NaN when a gradient is not finite). */
  gradNorm: number;
}

export class AdamW {
  readonly params: Map<string, Tensor<FloatDType>>;
  readonly options: Required<Omit<AdamWOptions, 'maxGradNorm' | 'emaDecay'>> & Pick<AdamWOptions, 'maxGradNorm' | 'emaDecay'>;
  /** Steps taken so far. */
  step = 0;
  readonly #m = new Map<string, Tensor<FloatDType>>();
  readonly #v = new Map<string, Tensor<FloatDType>>();
  readonly #ema = new Map<string, Tensor<FloatDType>>();
  /** f32 masters of the f16/bf16 parameters. */
  readonly #master = new Map<string, Tensor<FloatDType>>();

  private constructor(params: Map<string, Tensor<FloatDType>>, options: AdamW['options']) {
    this.params = params;
    this.options = options;
  }

  /** An optimizer over `params` (the map is updated in place by step()). */
  static async create(params: Map<string, Tensor>, options: AdamWOptions = {}): Promise<AdamW> {
    const fn = 'AdamW.create';
    const o = checkOptions(fn, options, ['betas', 'eps', 'weightDecay', 'maxGradNorm', 'emaDecay']);
    if (!(params instanceof Map) || params.size === 0) throw invalidArgument(`${fn}: params must be a non-empty Map of name → Tensor, got ${describe(params)}`);
    const betas = o.betas ?? [0.9, 0.999];
    if (!Array.isArray(betas) || betas.length !== 2) throw invalidArgument(`${fn}: betas must be [beta1, beta2], got ${describe(betas)}`);
    const opt = new AdamW(params as Map<string, Tensor<FloatDType>>, {
      betas: [checkNumberIn(fn, 'betas[0]', betas[0], 0, 0.999999), checkNumberIn(fn, 'betas[1]', betas[1], 0, 0.999999999)],
      eps: checkNumberIn(fn, 'eps', o.eps ?? 1e-8, 0, 1),
      weightDecay: checkNumberIn(fn, 'weightDecay', o.weightDecay ?? 1e-2, 0, 1),
      ...(o.maxGradNorm === undefined ? {} : { maxGradNorm: checkNumberIn(fn, 'maxGradNorm', o.maxGradNorm, 1e-12, Infinity) }),
      ...(o.emaDecay === undefined ? {} : { emaDecay: checkNumberIn(fn, 'emaDecay', o.emaDecay, 0, 1) }),
    });
    try {
      for (const [name, p] of opt.params) {
        if (p.dtype !== 'f32') opt.#master.set(name, await p.cast('f32'));
        const state = { dtype: 'f32' as const, device: p.device };
        opt.#m.set(name, await zeros(p.shape, state));
        opt.#v.set(name, await zeros(p.shape, state));
        if (opt.options.emaDecay !== undefined) opt.#ema.set(name, await zeros(p.shape, state));
      }
    } catch (e) {
      opt.#disposeState();
      throw e;
    }
    return opt;
  }

  /**
   * One step with learning rate `lr`: clips, updates every parameter that has a
   * gradient in `grads` (others are left alone), updates the EMA. The grads
   * are not disposed (the caller owns them).
   */
  async update(grads: Map<string, Tensor>, lr: number): Promise<StepResult> {
    const fn = 'AdamW.update';
    checkNumberIn(fn, 'lr', lr, 0, 10);
    for (const [name, g] of grads) {
      const p = this.params.get(name);
      if (!p) throw invalidArgument(`${fn}: gradient '${name}' has no parameter`);
      if (g.device !== p.device) throw new ImprintError(`${fn}: gradient '${name}' is on ${g.device} but its parameter is on ${p.device}`, 'DEVICE_MISMATCH');
    }
    let names = [...grads.keys()];
    let list = names.map((n) => grads.get(n) as Tensor<FloatDType>);
    let gradNorm = NaN;
    let clipped: Tensor<FloatDType>[] | undefined;
    if (this.options.maxGradNorm !== undefined) {
      // One norm over all grads needs one dtype, and the CPU clips f32 only: then the grads are clipped in f32.
      const widen = list.some((g) => g.dtype !== list[0].dtype) || (list[0].dtype !== 'f32' && list[0].device === 'cpu');
      const widened = widen ? await Promise.all(list.map((g) => g.cast('f32'))) : undefined;
      let r;
      try {
        r = await clipGradNorm(widened ?? list, { maxNorm: this.options.maxGradNorm });
      } finally {
        widened?.forEach((t) => t.dispose());
      }
      try {
        gradNorm = Number((await r.totalNorm.data() as Float32Array)[0]);  // data() also reads a GPU scalar
      } finally {
        r.totalNorm.dispose();
      }
      clipped = r.grads;
      list = clipped;
    }
    if (this.options.maxGradNorm !== undefined && !Number.isFinite(gradNorm)) {
      clipped?.forEach((t) => t.dispose());
      return { gradNorm };  // a non-finite gradient would poison every weight: skip the step, let the caller decide
    }
    this.step += 1;
    const [beta1, beta2] = this.options.betas;
    for (let i = 0; i < names.length; i++) {
      const n = names[i];
      const master = this.#master.get(n);
      const r = await adamwStep(
        { param: master ?? this.params.get(n)!, grad: list[i], expAvg: this.#m.get(n)!, expAvgSq: this.#v.get(n)!, ...(master ? { copy: this.params.get(n)! } : {}) },
        { lr, beta1, beta2, eps: this.options.eps, weightDecay: this.options.weightDecay, step: this.step },
      );
      this.params.get(n)!.dispose();
      this.#m.get(n)!.dispose();
      this.#v.get(n)!.dispose();
      if (master) {
        master.dispose();
        this.#master.set(n, r.param);
        this.params.set(n, r.copy!);
      } else {
        this.params.set(n, r.param);
      }
      this.#m.set(n, r.expAvg);
      this.#v.set(n, r.expAvgSq);
    }
    clipped?.forEach((t) => t.dispose());
    const d = this.options.emaDecay;
    if (d !== undefined) {
      names = [...this.#ema.keys()];
      for (const n of names) {
        const next = await combine([[d, this.#ema.get(n)!], [1 - d, this.#master.get(n) ?? this.params.get(n)!]]);
        this.#ema.get(n)!.dispose();
        this.#ema.set(n, next);
      }
    }
    return { gradNorm };
  }

  /**
   * The bias-corrected EMA of the weights, as new tensors the caller owns, in
   * each parameter's dtype (copies of the parameters when no EMA is kept or
   * no step was taken).
   */
  async averagedWeights(): Promise<Map<string, Tensor<FloatDType>>> {
    const d = this.options.emaDecay;
    const out = new Map<string, Tensor<FloatDType>>();
    for (const [n, p] of this.params) {
      if (d === undefined || this.step === 0) {
        out.set(n, await combine([[1, p]]));
        continue;
      }
      const avg = await combine([[1 / (1 - d ** this.step), this.#ema.get(n)!]]);
      if (avg.dtype === p.dtype) {
        out.set(n, avg);
        continue;
      }
      try {
        out.set(n, await avg.cast(p.dtype));
      } finally {
        avg.dispose();
      }
    }
    return out;
  }

  /** The f32 master of a half-precision parameter (undefined for f32 ones, which are their own). */
  master(name: string): Tensor<FloatDType> | undefined {
    return this.#master.get(name);
  }

  /** Everything a resumed run needs, as named tensors: params, f32 masters, both moments and the EMA. */
  stateTensors(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [n, p] of this.params) out.set(`param/${n}`, p);
    for (const [n, t] of this.#master) out.set(`master/${n}`, t);
    for (const [n, t] of this.#m) out.set(`adam_m/${n}`, t);
    for (const [n, t] of this.#v) out.set(`adam_v/${n}`, t);
    for (const [n, t] of this.#ema) out.set(`ema/${n}`, t);
    return out;
  }

  /**
   * Restores what stateTensors saved (taking ownership of the tensors) and the
   * step count. The tensors must be on the parameters' device (load them with
   * loadSafetensors(file, { device })).
   */
  restore(state: Map<string, Tensor>, step: number, source = 'checkpoint'): void {
    const fn = 'AdamW.restore';
    const kinds: Array<[string, Map<string, Tensor<FloatDType>>]> = [['param', this.params], ['master', this.#master], ['adam_m', this.#m], ['adam_v', this.#v]];
    if (this.options.emaDecay !== undefined) kinds.push(['ema', this.#ema]);
    for (const [kind, map] of kinds) {
      for (const [n, old] of map) {
        const t = state.get(`${kind}/${n}`) as Tensor<FloatDType> | undefined;
        if (!t) throw invalidArgument(`${fn}: ${source} lacks '${kind}/${n}'`);
        if (t.dtype !== old.dtype || t.shape.join(',') !== old.shape.join(',')) {
          throw invalidArgument(`${fn}: ${source} '${kind}/${n}' is ${t.dtype}[${t.shape.join(', ')}], expected ${old.dtype}[${old.shape.join(', ')}]`);
        }
        if (t.device !== old.device) throw new ImprintError(`${fn}: ${source} '${kind}/${n}' is on ${t.device}, but the optimizer's state is on ${old.device}`, 'DEVICE_MISMATCH');
      }
    }
    for (const [kind, map] of kinds) {
      for (const [n, old] of map) {
        old.dispose();
        map.set(n, state.get(`${kind}/${n}`) as Tensor<FloatDType>);
      }
    }
    this.step = step;
  }

  dispose(): void {
    for (const t of this.params.values()) if (!t.disposed) t.dispose();
    this.#disposeState();
  }

  /** Frees the optimizer's own state (moments, masters, EMA) and leaves the parameters to the caller. */
  disposeState(): void {
    this.#disposeState();
  }

  #disposeState(): void {
    for (const map of [this.#master, this.#m, this.#v, this.#ema]) for (const t of map.values()) if (!t.disposed) t.dispose();
  }
}

/** Linear warm-up to `peak` over `warmup` steps, then cosine decay to `peak·floor` at `total`. */
export function warmupCosine(step: number, total: number, peak: number, warmup: number, floor = 0.1): number {
  if (step < warmup) return (peak * (step + 1)) / warmup;
  const p = Math.min(1, (step - warmup) / Math.max(1, total - warmup));
  return peak * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * p)));
}
