// Euler method on the probability-flow ODE in σ (Karras et al. 2022,
// Algorithm 2 without churn), as diffusers' EulerDiscreteScheduler.
import { ImprintError, invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';
import { checkFloatTensor, checkLike, combine } from './combine.js';
import {
  alphasCumprod, arangeDown, checkSteps, configObject, Fields, interp, karrasSigmas, linspace, readScheduleConfig,
  roundHalfEven, sigmasOf, sigmaToT, type ConfigInput, type ScheduleConfig,
} from './config.js';

export interface EulerConfig extends ScheduleConfig {
  useKarrasSigmas: boolean;
}

export class EulerDiscreteScheduler {
  readonly config: EulerConfig;
  readonly alphasCumprod: Float64Array;
  protected sigmaList: number[] = [];
  #timesteps: number[] = [];

  constructor(config: EulerConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(config);
  }

  static fromConfig(json: ConfigInput): EulerDiscreteScheduler {
    return new EulerDiscreteScheduler(readEulerConfig('EulerDiscreteScheduler.fromConfig', json, true));
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  /** σ for each inference step, then a final 0. */
  get sigmas(): readonly number[] {
    return this.sigmaList;
  }

  /** Standard deviation of the starting noise; scale unit-variance noise by it. */
  get initNoiseSigma(): number {
    const max = Math.max(...(this.sigmaList.length ? this.sigmaList : sigmasOf(this.alphasCumprod)));
    return this.config.timestepSpacing === 'leading' ? Math.sqrt(max * max + 1) : max;
  }

  setTimesteps(numInferenceSteps: number): readonly number[] {
    const { numTrainTimesteps: n, timestepSpacing, stepsOffset } = this.config;
    const steps = checkSteps(`${this.constructor.name}.setTimesteps`, numInferenceSteps, n);
    let ts: number[];
    if (timestepSpacing === 'linspace') {
      ts = Array.from(linspace(0, n - 1, steps)).reverse();
    } else if (timestepSpacing === 'leading') {
      const ratio = Math.floor(n / steps);
      ts = Array.from({ length: steps }, (_, i) => (steps - 1 - i) * ratio + stepsOffset);
    } else {
      ts = arangeDown(n, 0, -n / steps).map((t) => roundHalfEven(t) - 1);
    }
    if (ts.some((t) => t < 0 || t > n - 1)) {
      throw invalidArgument(`${this.constructor.name}.setTimesteps: steps_offset ${stepsOffset} puts timesteps outside [0, ${n - 1}] for ${steps} steps`);
    }
    const all = sigmasOf(this.alphasCumprod);
    let sigmas = ts.map((t) => interp(t, all));
    if (this.config.useKarrasSigmas) {
      const logSigmas = all.map(Math.log);
      sigmas = karrasSigmas(sigmas[0], sigmas[sigmas.length - 1], steps);
      ts = sigmas.map((s) => sigmaToT(s, logSigmas));
    }
    this.sigmaList = [...sigmas, 0];
    this.#timesteps = ts;
    this.onSetTimesteps();
    return ts;
  }

  protected onSetTimesteps(): void {}

  /** The model sees x / √(σ² + 1), the variance-preserving scale; a new tensor (DDIM and DPM-Solver return `sample` itself). */
  async scaleModelInput<D extends FloatDType>(sample: Tensor<D>, t: number): Promise<Tensor<D>> {
    const fn = `${this.constructor.name}.scaleModelInput`;
    checkFloatTensor(fn, 'sample', sample);
    const sigma = this.sigmaList[this.stepIndex(fn, t)];
    return combine([[1 / Math.sqrt(sigma * sigma + 1), sample]]);
  }

  /** x at the next σ from the model output at t; a new tensor. */
  async step<D extends FloatDType>(modelOutput: Tensor<D>, t: number, sample: Tensor<D>): Promise<Tensor<D>> {
    const fn = `${this.constructor.name}.step`;
    const i = this.checkStep(fn, modelOutput, t, sample);
    const sigma = this.sigmaList[i];
    const [p, q] = this.x0Coefs(sigma);
    // x + (σ_next − σ)·(x − x̂0)/σ
    const k = (this.sigmaList[i + 1] - sigma) / sigma;
    return combine([[1 + k * (1 - p), sample], [-k * q, modelOutput]]);
  }

  /** x̂0 = p·x + q·out at noise level σ. */
  protected x0Coefs(sigma: number): [number, number] {
    switch (this.config.predictionType) {
      case 'epsilon':
        return [1, -sigma];
      case 'v_prediction':
        return [1 / (sigma * sigma + 1), -sigma / Math.sqrt(sigma * sigma + 1)];
      case 'sample':
        return [0, 1];
    }
  }

  protected checkStep(fn: string, modelOutput: Tensor, t: number, sample: Tensor): number {
    checkFloatTensor(fn, 'modelOutput', modelOutput);
    checkFloatTensor(fn, 'sample', sample);
    checkLike(fn, 'modelOutput', modelOutput, 'sample', sample);
    return this.stepIndex(fn, t);
  }

  /** Position of timestep t in the schedule (t as returned by setTimesteps, float32 rounding tolerated). */
  protected stepIndex(fn: string, t: number): number {
    if (this.#timesteps.length === 0) throw new ImprintError(`${fn}: call setTimesteps first`, 'INVALID_ARGUMENT');
    if (typeof t !== 'number' || !Number.isFinite(t)) throw invalidArgument(`${fn}: timestep must be a number, got ${describe(t)}`);
    const i = this.#timesteps.findIndex((s) => Math.abs(s - t) <= 1e-3);
    if (i < 0) throw invalidArgument(`${fn}: timestep ${t} is not one of the ${this.#timesteps.length} timesteps set by setTimesteps`);
    return i;
  }
}

export function readEulerConfig(fn: string, json: unknown, karras: boolean): EulerConfig {
  const f = new Fields(fn, configObject(fn, json));
  f.choice('interpolation_type', 'linear', ['linear'] as const);
  const base = readScheduleConfig(f, { spacing: 'linspace', stepsOffset: 0 });
  if (!karras) f.refuse('use_karras_sigmas', false);
  return { ...base, useKarrasSigmas: karras && f.boolean('use_karras_sigmas', false) };
}
