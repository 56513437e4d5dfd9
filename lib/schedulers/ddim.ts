// DDIM (Song et al. 2020) as diffusers' DDIMScheduler computes it: the
// deterministic sampler at η = 0, and with η > 0 a stochastic one that adds
// σ_t·noise (η = 1 is DDPM's posterior variance).
import { ImprintError, invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkOptions, describe, type FloatDType } from '../validate.js';
import { checkFloatTensor, checkLike, combine } from './combine.js';
import {
  alphasCumprod, arangeDown, checkSteps, configObject, Fields, linspace, readScheduleConfig, roundHalfEven,
  type ConfigInput, type ScheduleConfig,
} from './config.js';
import { stepNoise, type StepNoiseOptions } from './step-noise.js';

export interface DDIMConfig extends ScheduleConfig {
  /** ᾱ before the first train step: 1, or ᾱ_0 (SD's setting, false). */
  setAlphaToOne: boolean;
}

/**
 * Coefficients (p, q) and (r, s) with x̂0 = p·x + q·out and ε̂ = r·x + s·out,
 * for the model output kinds; shared by DDIM and the training target.
 */
export function predictions(kind: ScheduleConfig['predictionType'], alphaBar: number): { x0: [number, number]; eps: [number, number] } {
  const a = Math.sqrt(alphaBar);
  const b = Math.sqrt(1 - alphaBar);
  switch (kind) {
    case 'epsilon':
      return { x0: [1 / a, -b / a], eps: [0, 1] };
    case 'sample':
      return { x0: [0, 1], eps: [1 / b, -a / b] };
    case 'v_prediction':
      return { x0: [a, -b], eps: [b, a] };
  }
}

export interface DDIMStepOptions extends StepNoiseOptions {
  /** Weight η of the fresh noise, finite and ≥ 0 (default 0: deterministic; noise options are then unused). */
  eta?: number;
}

export class DDIMScheduler {
  readonly config: DDIMConfig;
  readonly alphasCumprod: Float64Array;
  readonly initNoiseSigma = 1;
  #timesteps: number[] = [];
  #steps = 0;

  constructor(config: DDIMConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(config);
  }

  static fromConfig(json: ConfigInput): DDIMScheduler {
    const fn = 'DDIMScheduler.fromConfig';
    const f = new Fields(fn, configObject(fn, json));
    f.refuse('clip_sample', false);
    const base = readScheduleConfig(f, { spacing: 'leading', stepsOffset: 0 });
    return new DDIMScheduler({ ...base, setAlphaToOne: f.boolean('set_alpha_to_one', true) });
  }

  /** The inference timesteps, high to low, set by setTimesteps. */
  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  setTimesteps(numInferenceSteps: number): readonly number[] {
    const n = this.config.numTrainTimesteps;
    const steps = checkSteps('DDIMScheduler.setTimesteps', numInferenceSteps, n);
    let ts: number[];
    if (this.config.timestepSpacing === 'leading') {
      const ratio = Math.floor(n / steps);
      ts = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + this.config.stepsOffset);
    } else if (this.config.timestepSpacing === 'trailing') {
      ts = arangeDown(n, 0, -n / steps).map((t) => roundHalfEven(t) - 1);
    } else {
      ts = Array.from(linspace(0, n - 1, steps), roundHalfEven).reverse();
    }
    if (ts.some((t) => t < 0 || t >= n)) {
      throw invalidArgument(`DDIMScheduler.setTimesteps: steps_offset ${this.config.stepsOffset} puts timesteps outside [0, ${n - 1}] for ${steps} steps`);
    }
    this.#timesteps = ts;
    this.#steps = steps;
    return ts;
  }

  /** DDIM does not scale the model input; returns `sample` itself. */
  scaleModelInput<D extends FloatDType>(sample: Tensor<D>, _t?: number): Tensor<D> {
    return sample;
  }

  /** x_{t−Δ} from the model output at t; a new tensor. */
  async step<D extends FloatDType>(modelOutput: Tensor<D>, t: number, sample: Tensor<D>, options?: DDIMStepOptions): Promise<Tensor<D>> {
    const fn = 'DDIMScheduler.step';
    const o = checkOptions(fn, options, ['eta', 'noise', 'seed', 'offset']) as DDIMStepOptions;
    const eta = o.eta ?? 0;
    if (typeof eta !== 'number' || !Number.isFinite(eta) || eta < 0) throw invalidArgument(`${fn}: eta must be a finite number ≥ 0, got ${describe(o.eta)}`);
    if (this.#steps === 0) throw new ImprintError(`${fn}: call setTimesteps first`, 'INVALID_ARGUMENT');
    checkFloatTensor(fn, 'modelOutput', modelOutput);
    checkFloatTensor(fn, 'sample', sample);
    checkLike(fn, 'modelOutput', modelOutput, 'sample', sample);
    if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0 || t >= this.config.numTrainTimesteps) {
      throw invalidArgument(`${fn}: timestep must be an integer in [0, ${this.config.numTrainTimesteps - 1}], got ${describe(t)}`);
    }
    const { aT, aPrev } = this.#alphaBars(t);
    const sigma = eta * Math.sqrt((1 - aPrev) / (1 - aT)) * Math.sqrt(1 - aT / aPrev);
    const dirVar = 1 - aPrev - sigma * sigma;
    // η > 1 can ask for more noise than the step has room for; diffusers would return NaN.
    if (dirVar < 0) throw invalidArgument(`${fn}: eta ${eta} is too large for timestep ${t} (σ_t² = ${sigma * sigma} exceeds 1 − ᾱ_prev = ${1 - aPrev})`);
    const { x0, eps } = predictions(this.config.predictionType, aT);
    // σ_t = η·√((1−ᾱ_prev)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_prev);
    // x_prev = √ᾱ_prev·x̂0 + √(1−ᾱ_prev−σ_t²)·ε̂ + σ_t·noise, the first two linear in (sample, modelOutput).
    const sa = Math.sqrt(aPrev);
    const sb = Math.sqrt(dirVar);
    const terms: Array<[number, Tensor<D>]> = [
      [sa * x0[0] + sb * eps[0], sample],
      [sa * x0[1] + sb * eps[1], modelOutput],
    ];
    if (eta === 0) return combine(terms);
    const { noise, owned } = await stepNoise(fn, o, sample);
    try {
      return await combine([...terms, [sigma, noise]]);
    } finally {
      if (owned) noise.dispose();
    }
  }

  /** ᾱ at t and at the step's target t − Δ (before the first train step: 1 or ᾱ_0). */
  #alphaBars(t: number): { aT: number; aPrev: number } {
    const prev = t - Math.floor(this.config.numTrainTimesteps / this.#steps);
    const aPrev = prev >= 0 ? this.alphasCumprod[prev] : this.config.setAlphaToOne ? 1 : this.alphasCumprod[0];
    return { aT: this.alphasCumprod[t], aPrev };
  }
}
