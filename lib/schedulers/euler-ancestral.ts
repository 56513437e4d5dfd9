// Euler ancestral: an Euler step down to σ_down, then fresh noise of size
// σ_up, with σ_down² + σ_up² = σ_next² (diffusers' EulerAncestralDiscreteScheduler).
import type { Tensor } from '../tensor.js';
import { checkOptions, type FloatDType } from '../validate.js';
import { combine } from './combine.js';
import type { ConfigInput } from './config.js';
import { EulerDiscreteScheduler, readEulerConfig } from './euler.js';
import { stepNoise, type StepNoiseOptions } from './step-noise.js';

export type AncestralStepOptions = StepNoiseOptions;

export class EulerAncestralDiscreteScheduler extends EulerDiscreteScheduler {
  static override fromConfig(json: ConfigInput): EulerAncestralDiscreteScheduler {
    // diffusers has no Karras sigmas for the ancestral sampler; refused by name.
    return new EulerAncestralDiscreteScheduler(readEulerConfig('EulerAncestralDiscreteScheduler.fromConfig', json, false));
  }

  /** σ_up and σ_down of step i (from σ_i to σ_{i+1}). */
  ancestralSigmas(i: number): { sigmaUp: number; sigmaDown: number } {
    const from = this.sigmaList[i];
    const to = this.sigmaList[i + 1];
    const sigmaUp = Math.sqrt((to * to * (from * from - to * to)) / (from * from));
    return { sigmaUp, sigmaDown: Math.sqrt(to * to - sigmaUp * sigmaUp) };
  }

  override async step<D extends FloatDType>(modelOutput: Tensor<D>, t: number, sample: Tensor<D>, options?: AncestralStepOptions): Promise<Tensor<D>> {
    const fn = 'EulerAncestralDiscreteScheduler.step';
    const o = checkOptions(fn, options, ['noise', 'seed', 'offset']);
    const i = this.checkStep(fn, modelOutput, t, sample);
    const { noise, owned } = await stepNoise(fn, o, sample);
    try {
      const sigma = this.sigmaList[i];
      const [p, q] = this.x0Coefs(sigma);
      const { sigmaUp, sigmaDown } = this.ancestralSigmas(i);
      const k = (sigmaDown - sigma) / sigma;
      return await combine([[1 + k * (1 - p), sample], [-k * q, modelOutput], [sigmaUp, noise]]);
    } finally {
      if (owned) noise.dispose();
    }
  }
}
