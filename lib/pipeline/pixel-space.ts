// The "VAE" of a pixel-space model (model_index.json lists "vae": [null, null],
// as DeepFloyd IF does): the UNet denoises images in [-1, 1] directly, so
// decoding is the identity. Imprint's embedded world model works this way.
import { combine } from '../schedulers/combine.js';
import type { Tensor } from '../tensor.js';
import type { FloatDType } from '../validate.js';

export const PIXEL_SPACE = {
  factor: 1,
  scalingFactor: 1,
  /** A copy of the sample (callers dispose what they pass in). */
  decode<D extends FloatDType>(sample: Tensor<D>): Promise<Tensor<D>> {
    return combine([[1, sample]]);
  },
} as const;
