// The tiny reference models (../shared/reference/parity): a component's
// config.json, its weights and the reference case, loaded once per test file.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadSafetensors, type Tensor } from '../lib/index.js';

export const SHARED = process.env.IMPRINT_SHARED ?? fileURLToPath(new URL('../../shared', import.meta.url));
export const PARITY = join(SHARED, 'reference/parity');

export type TinyName = 'sd1-tiny' | 'sd2-tiny';
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
