// DPM-Solver++ 2M (Lu et al. 2022): multistep, second order in the data
// prediction, midpoint form, as diffusers' (0.21) DPMSolverMultistepScheduler.
// The solver keeps the last x̂0 predictions between steps; dispose() frees them.
import { ImprintError, invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';
import { checkFloatTensor, checkLike, combine } from './combine.js';
import {
  alphasCumprod, arangeDown, checkSteps, configObject, Fields, karrasSigmas, linspace, readScheduleConfig, roundHalfEven, sigmasOf,
  sigmaToT, type ConfigInput, type ScheduleConfig,
} from './config.js';

export interface DPMSolverConfig extends ScheduleConfig {
  solverOrder: 1 | 2;
  lowerOrderFinal: boolean;
  useKarrasSigmas: boolean;
  lambdaMinClipped: number;
}

export class DPMSolverMultistepScheduler {
  readonly config: DPMSolverConfig;
  readonly alphasCumprod: Float64Array;
  readonly initNoiseSigma = 1;
  /** α_t = √ᾱ_t, σ_t = √(1−ᾱ_t) and λ_t = log(α_t/σ_t) per train step. */
  readonly alphaT: Float64Array;
  readonly sigmaT: Float64Array;
  readonly lambdaT: Float64Array;
  #timesteps: number[] = [];
  #sigmas: number[] = [];
  // x̂0 of the previous step and its timestep, for the second-order update.
  #previous: { t: number; x0: Tensor<FloatDType> } | undefined;
  #lowerOrderNums = 0;

  constructor(config: DPMSolverConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(config);
    this.alphaT = this.alphasCumprod.map(Math.sqrt);
    this.sigmaT = this.alphasCumprod.map((a) => Math.sqrt(1 - a));
    this.lambdaT = this.alphaT.map((a, i) => Math.log(a) - Math.log(this.sigmaT[i]));
  }

  static fromConfig(json: ConfigInput): DPMSolverMultistepScheduler {
    const fn = 'DPMSolverMultistepScheduler.fromConfig';
    const f = new Fields(fn, configObject(fn, json));
    f.choice('algorithm_type', 'dpmsolver++', ['dpmsolver++'] as const);
    f.choice('solver_type', 'midpoint', ['midpoint'] as const);
    f.refuse('variance_type', undefined);
    f.refuse('euler_at_final', false);
    f.refuse('use_lu_lambdas', false);
    f.refuse('final_sigmas_type', 'sigma_min');
    const base = readScheduleConfig(f, { spacing: 'linspace', stepsOffset: 0 });
    return new DPMSolverMultistepScheduler({
      ...base,
      solverOrder: f.integer('solver_order', 2, 1, 2) as 1 | 2,
      lowerOrderFinal: f.boolean('lower_order_final', true),
      useKarrasSigmas: f.boolean('use_karras_sigmas', false),
      lambdaMinClipped: f.number('lambda_min_clipped', -Infinity, (v) => v !== Infinity, 'a number or -Infinity'),
    });
  }

  get timesteps(): readonly number[] {
    return this.#timesteps;
  }

  /** The Karras σ list when use_karras_sigmas (ascending, as diffusers 0.21 stores it), else σ for every train step. */
  get sigmas(): readonly number[] {
    return this.#sigmas;
  }

  setTimesteps(numInferenceSteps: number): readonly number[] {
    const { numTrainTimesteps: n, timestepSpacing, stepsOffset } = this.config;
    const steps = checkSteps('DPMSolverMultistepScheduler.setTimesteps', numInferenceSteps, n);
    // λ_min_clipped cuts the noisiest end off the schedule (λ falls as t rises).
    const clipped = this.lambdaT.filter((l) => l < this.config.lambdaMinClipped).length;
    const last = n - clipped;
    if (last < 1) throw invalidArgument(`DPMSolverMultistepScheduler.setTimesteps: lambda_min_clipped ${this.config.lambdaMinClipped} leaves no timesteps`);
    let ts: number[];
    if (timestepSpacing === 'linspace') {
      ts = Array.from(linspace(0, last - 1, steps + 1), roundHalfEven).reverse().slice(0, -1);
    } else if (timestepSpacing === 'leading') {
      const ratio = Math.floor(last / (steps + 1));
      ts = Array.from({ length: steps }, (_, i) => (steps - i) * ratio + stepsOffset);
    } else {
      ts = arangeDown(last, 0, -n / steps).map((t) => roundHalfEven(t) - 1);
    }
    const all = sigmasOf(this.alphasCumprod);
    let sigmas = Array.from(all);
    if (this.config.useKarrasSigmas) {
      const logSigmas = all.map(Math.log);
      sigmas = karrasSigmas(all[0], all[all.length - 1], steps);
      ts = sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas))).reverse();
    }
    if (ts.some((t) => t < 0 || t > n - 1)) {
      throw invalidArgument(`DPMSolverMultistepScheduler.setTimesteps: steps_offset ${stepsOffset} puts timesteps outside [0, ${n - 1}] for ${steps} steps`);
    }
    this.#timesteps = ts.filter((t, i) => ts.indexOf(t) === i);
    this.#sigmas = sigmas;
    this.reset();
    return this.#timesteps;
  }

  /** DPM-Solver does not scale the model input; returns `sample` itself. */
  scaleModelInput<D extends FloatDType>(sample: Tensor<D>, _t?: number): Tensor<D> {
    return sample;
  }

  async step<D extends FloatDType>(modelOutput: Tensor<D>, t: number, sample: Tensor<D>): Promise<Tensor<D>> {
    const fn = 'DPMSolverMultistepScheduler.step';
    if (this.#timesteps.length === 0) throw new ImprintError(`${fn}: call setTimesteps first`, 'INVALID_ARGUMENT');
    checkFloatTensor(fn, 'modelOutput', modelOutput);
    checkFloatTensor(fn, 'sample', sample);
    checkLike(fn, 'modelOutput', modelOutput, 'sample', sample);
    if (typeof t !== 'number') throw invalidArgument(`${fn}: timestep must be a number, got ${describe(t)}`);
    const i = this.#timesteps.indexOf(t);
    if (i < 0) throw invalidArgument(`${fn}: timestep ${t} is not one of the ${this.#timesteps.length} timesteps set by setTimesteps`);
    const prev = this.#previous;
    if (prev) checkLike(fn, 'sample', sample, 'the previous step\'s sample', prev.x0);
    const count = this.#timesteps.length;
    const next = i === count - 1 ? 0 : this.#timesteps[i + 1];
    // Few steps: the last step drops to first order for stability, as diffusers does.
    const lowerFinal = i === count - 1 && this.config.lowerOrderFinal && count < 15;

    const x0 = await this.dataPrediction(modelOutput, t, sample);
    const h = this.lambdaT[next] - this.lambdaT[t];
    const sigmaRatio = this.sigmaT[next] / this.sigmaT[t];
    const phi = -this.alphaT[next] * Math.expm1(-h);
    let out: Tensor<D>;
    try {
      if (this.config.solverOrder === 1 || this.#lowerOrderNums < 1 || lowerFinal || !prev) {
        out = await combine([[sigmaRatio, sample], [phi, x0]]);
      } else {
        // D1 = (m0 − m1)/r0 with r0 = h_prev/h; midpoint: x = ratio·x + φ·(D0 + D1/2).
        const r0 = (this.lambdaT[t] - this.lambdaT[prev.t]) / h;
        const d1 = 0.5 / r0;
        out = await combine([[sigmaRatio, sample], [phi * (1 + d1), x0], [-phi * d1, prev.x0 as Tensor<D>]]);
      }
    } catch (e) {
      x0.dispose();
      throw e;
    }
    prev?.x0.dispose();
    this.#previous = { t, x0 };
    if (this.#lowerOrderNums < this.config.solverOrder) this.#lowerOrderNums++;
    return out;
  }

  /** Forgets the stored model outputs (a new trajectory); setTimesteps does this too. */
  reset(): void {
    this.#previous?.x0.dispose();
    this.#previous = undefined;
    this.#lowerOrderNums = 0;
  }

  dispose(): void {
    this.reset();
  }

  /** x̂0 from the model output at t (the "++" data-prediction form). */
  private dataPrediction<D extends FloatDType>(modelOutput: Tensor<D>, t: number, sample: Tensor<D>): Promise<Tensor<D>> {
    const a = this.alphaT[t];
    const s = this.sigmaT[t];
    switch (this.config.predictionType) {
      case 'epsilon':
        return combine([[1 / a, sample], [-s / a, modelOutput]]);
      case 'v_prediction':
        return combine([[a, sample], [-s, modelOutput]]);
      case 'sample':
        return combine([[1, modelOutput]]);
    }
  }
}
