// The tiny reference models (fixtures/reference/parity): a component's
// config.json, its weights and the reference case, loaded once per test file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadSafetensors, type Tensor } from '../lib/index.js';

/** The reference data the tests check against (see fixtures/reference/SOURCE.md). */
export const REFERENCE = fileURLToPath(new URL('./fixtures/reference', import.meta.url));
export const PARITY = join(REFERENCE, 'parity');

export type TinyName = 'sd1-tiny' | 'sd2-tiny';

/**
 * The reductions of the tiny models, for tolerances between two runs that sum
 * in another order (helpers.reorderedTolerance). UNet: the longest sum is the
 * up block's 3×3 conv over its skip concat (64 + 64 channels); about 64 layers
 * lie between input and output (convs, projections, attention, norms).
 * VAE encoder: a 3×3 conv over 64 channels; about 16 layers.
 */
export const TINY_UNET_REDUCTION = { terms: 9 * 128, depth: 64 } as const;
export const TINY_VAE_ENCODER_REDUCTION = { terms: 9 * 64, depth: 16 } as const;
type Component = 'unet' | 'text_encoder' | 'vae';
const WEIGHTS: Record<Component, string> = {
  unet: 'diffusion_pytorch_model.safetensors',
  vae: 'diffusion_pytorch_model.safetensors',
  text_encoder: 'model.safetensors',
};

export interface TinyModel<C> {
  config: C;
  weights: Map<string, Tensor>;
  case_: Map<string, Tensor>;
}

/** A loader with its own cache, so one file disposing a weight cannot affect another file. */
export function tinyModelLoader<C = Record<string, unknown>>(component: Component): (name: TinyName) => Promise<TinyModel<C>> {
  const cache = new Map<TinyName, TinyModel<C>>();
  return async (name) => {
    let m = cache.get(name);
    if (!m) {
      const dir = join(PARITY, name);
      m = {
        config: JSON.parse(readFileSync(join(dir, component, 'config.json'), 'utf8')) as C,
        weights: await loadSafetensors(join(dir, component, WEIGHTS[component])),
        case_: await loadSafetensors(join(dir, `${component}_case.safetensors`)),
      };
      cache.set(name, m);
    }
    return m;
  };
}
