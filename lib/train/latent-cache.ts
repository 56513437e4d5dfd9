// Training samples encoded once: every image a run trains on goes through the
// VAE a single time (pixel-space models use the pixels), and with a workDir the
// latents are also kept on disk, keyed by everything they depend on, so a
// resumed run skips the VAE.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { tensor } from '../creation.js';
import { loadSafetensors } from '../io/safetensors.js';
import type { AutoencoderKL } from '../models/vae.js';
import { scale as scaleTensor } from '../nn/act.js';
import { PIXEL_SPACE } from '../pipeline/pixel-space.js';
import type { Tensor } from '../tensor.js';
import type { Device } from '../validate.js';
import { onDevice, saveFromAnyDevice } from './run-state.js';

/** An image's size and bytes, as far as the cache key needs them. */
interface KeyedImage {
  width: number;
  height: number;
  data: Uint8Array;
}

/** The VAE's scaled posterior mean of [1, 3, R, R] pixels in [-1, 1] (the pixels themselves for a pixel-space model), on `device`. */
export async function encodeLatent(vae: AutoencoderKL | typeof PIXEL_SPACE, pixels: Float32Array, resolution: number, device: Device): Promise<Tensor> {
  const img = await onDevice(tensor(pixels, { shape: [1, 3, resolution, resolution] }), device);
  if (vae === PIXEL_SPACE) return img;
  const v = vae as AutoencoderKL;
  try {
    const { mean, logvar } = await v.encode(img);
    logvar.dispose();
    const scaled = await scaleTensor(mean, v.scalingFactor);
    mean.dispose();
    return scaled;
  } finally {
    img.dispose();
  }
}

export class LatentCache {
  readonly #computed = new Map<string, Tensor>();

  private constructor(readonly file: string | undefined, private readonly cached: Map<string, Tensor> | undefined, private readonly owned: Tensor[]) {}

  /**
   * The cache of a run: `settings` (JSON-serialisable) and the images' sizes
   * and bytes, group by group, name its file in workDir; an existing file is
   * loaded onto `device`. Every tensor it holds is pushed to `owned`.
   */
  static async open(workDir: string | undefined, settings: unknown, imageGroups: readonly (readonly KeyedImage[])[], device: Device, owned: Tensor[]): Promise<LatentCache> {
    if (workDir === undefined) return new LatentCache(undefined, undefined, owned);
    const h = createHash('sha256').update(JSON.stringify(settings));
    for (const group of imageGroups) for (const im of group) h.update(`${im.width}x${im.height}`).update(im.data);
    const file = join(workDir, `latents-${h.digest('hex').slice(0, 24)}.safetensors`);
    const cached = existsSync(file) ? await loadSafetensors(file, { device }) : undefined;
    if (cached) owned.push(...cached.values());
    return new LatentCache(file, cached, owned);
  }

  /** The latent named `name`: from the file, or `encode()`d now (and saved by save()). */
  async latentOf(name: string, encode: () => Promise<Tensor>): Promise<Tensor> {
    const hit = this.cached?.get(name);
    if (hit) return hit;
    const latent = await encode();
    this.owned.push(latent);
    this.#computed.set(name, latent);
    return latent;
  }

  /** Writes the file when latents were computed in this run (atomic). */
  async save(): Promise<void> {
    if (this.file === undefined || this.#computed.size === 0) return;
    mkdirSync(join(this.file, '..'), { recursive: true });
    await saveFromAnyDevice(this.file, this.cached ? new Map([...this.cached, ...this.#computed]) : this.#computed);
  }
}
