// Fresh noise for the stochastic samplers (Euler ancestral, DDIM with η > 0):
// the caller's tensor, or Philox randn from a seed and offset, so that the
// same seed gives the same noise in every sampler.
import { randn } from '../creation.js';
import type { Tensor } from '../tensor.js';
import { checkU64, type FloatDType } from '../validate.js';
import { checkFloatTensor, checkLike } from './combine.js';

export interface StepNoiseOptions {
  /** Unit-variance noise shaped like the sample; drawn with randn when absent. */
  noise?: Tensor;
  /** randn seed when `noise` is absent (default: random). */
  seed?: number | bigint;
  /** randn offset when `noise` is absent (default 0); advance it per step for a fresh stream. */
  offset?: number | bigint;
}

/** The step's noise and whether the caller must dispose it (true when drawn here). */
export async function stepNoise<D extends FloatDType>(fn: string, o: StepNoiseOptions, sample: Tensor<D>): Promise<{ noise: Tensor<D>; owned: boolean }> {
  if (o.noise !== undefined) {
    const noise = checkFloatTensor(fn, 'noise', o.noise) as Tensor<D>;
    checkLike(fn, 'noise', noise, 'sample', sample);
    return { noise, owned: false };
  }
  const seed = o.seed === undefined ? undefined : checkU64(fn, 'seed', o.seed, 0);
  const offset = checkU64(fn, 'offset', o.offset, 0);
  const noise = (await randn(sample.shape, { dtype: sample.dtype, device: sample.device, seed, offset })) as Tensor<D>;
  return { noise, owned: true };
}
