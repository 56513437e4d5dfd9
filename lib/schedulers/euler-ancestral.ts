// Euler ancestral: an Euler step down to σ_down, then fresh noise of size
// σ_up, with σ_down² + σ_up² = σ_next² (diffusers' EulerAncestralDiscreteScheduler).
import { randn } from '../creation.js';
import type { Tensor } from '../tensor.js';
import { checkOptions, checkU64, type FloatDType } from '../validate.js';
import { checkFloatTensor, checkLike, combine } from './combine.js';
import type { ConfigInput } from './config.js';
import { EulerDiscreteScheduler, readEulerConfig } from './euler.js';

export interface AncestralStepOptions {
  /** Unit-variance noise shaped like the sample; drawn with randn when absent. */
  noise?: Tensor;
  /** randn seed when `noise` is absent (default: random). */
  seed?: number | bigint;
  /** randn offset when `noise` is absent (default 0); advance it per step for a fresh stream. */
  offset?: number | bigint;
}

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
    let noise: Tensor<D>;
    let owned = false;
    if (o.noise !== undefined) {
      noise = checkFloatTensor(fn, 'noise', o.noise) as Tensor<D>;
      checkLike(fn, 'noise', noise, 'sample', sample);
    } else {
      const seed = o.seed === undefined ? undefined : checkU64(fn, 'seed', o.seed, 0);
      const offset = checkU64(fn, 'offset', o.offset, 0);
      noise = (await randn(sample.shape, { dtype: sample.dtype, device: sample.device, seed, offset })) as Tensor<D>;
      owned = true;
    }
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
