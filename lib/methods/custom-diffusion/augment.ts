// Custom Diffusion's augmentation of instance images (DESIGN §1.1): a random
// scale, then either a paste onto a black canvas ("a far away" / "very small"
// prompts below 0.6·res, the loss masked to the pasted box shrunk by one
// latent pixel) or a random crop ("zoomed in" / "close up" above res, mask all
// ones), and an optional horizontal flip. The plan is drawn from a seeded
// generator, so a seed always gives the same images, prompts and masks.
import sharp from 'sharp';

import { invalidArgument } from '../../errors.js';
import type { RgbImage } from '../../concepts/data.js';
import type { SeededRandom } from '../../train/random.js';

export const SMALL_PREFIXES = ['a far away ', 'very small '] as const;
export const LARGE_PREFIXES = ['zoomed in ', 'close up '] as const;

export interface AugmentSettings {
  /** The training images' side in pixels. */
  resolution: number;
  /** Pixels per latent pixel (the VAE factor; 1 in pixel space). */
  factor: number;
  /** Random scale, paste or crop; false: the image fills the canvas, mask all ones. */
  augment: boolean;
  hflip: boolean;
}

export interface AugmentPlan {
  flip: boolean;
  /** Side the image is resized to before the paste or crop. */
  scale: number;
  /** 'paste': scale ≤ res, put at (top, left) on black; 'crop': scale > res, the res×res window at (top, left); 'none': no augmentation. */
  kind: 'paste' | 'crop' | 'none';
  top: number;
  left: number;
  /** Put in front of the instance prompt ('' or one of the prefixes). */
  prefix: string;
}

/** Draws one augmentation (the order of draws is part of the seed's meaning: flip, scale, top, left, prefix). */
export function planAugmentation(rng: SeededRandom, s: AugmentSettings): AugmentPlan {
  const res = s.resolution;
  const flip = s.hflip && rng.chance(0.5);
  if (!s.augment) return { flip, scale: res, kind: 'none', top: 0, left: 0, prefix: '' };
  // About 2/3 of the time in [res/3, res], else in [1.2, 1.4)·res, as the reference implementation draws.
  const scale = rng.chance(0.66) ? rng.int(Math.floor(res / 3), res) : rng.int(Math.floor(1.2 * res), Math.max(Math.floor(1.2 * res), Math.floor(1.4 * res) - 1));
  const slack = Math.abs(scale - res);
  const top = rng.int(0, slack);
  const left = rng.int(0, slack);
  let prefix = '';
  if (scale < 0.6 * res) prefix = rng.pick(SMALL_PREFIXES);
  else if (scale > res) prefix = rng.pick(LARGE_PREFIXES);
  return { flip, scale, kind: scale > res ? 'crop' : 'paste', top, left, prefix };
}

/**
 * The loss mask [res/f × res/f] (row-major, 1 = counted): the pasted box
 * shrunk by one latent pixel on every side; all ones for a crop or no augmentation.
 */
export function augmentMask(plan: AugmentPlan, s: AugmentSettings): Float32Array {
  const side = s.resolution / s.factor;
  const mask = new Float32Array(side * side);
  if (plan.kind !== 'paste') return mask.fill(1);
  const f = s.factor;
  const r0 = Math.floor(plan.top / f) + 1, r1 = Math.floor((plan.top + plan.scale) / f) - 1;
  const c0 = Math.floor(plan.left / f) + 1, c1 = Math.floor((plan.left + plan.scale) / f) - 1;
  for (let r = Math.max(0, r0); r < Math.min(side, r1); r++) for (let c = Math.max(0, c0); c < Math.min(side, c1); c++) mask[r * side + c] = 1;
  return mask;
}

/**
 * Places a scale×scale RGB image (HWC bytes, already resized and flipped) on
 * the res×res canvas per the plan: [3, res, res] f32 in [-1, 1], black (−1) outside a paste.
 */
export function composeAugmented(scaled: Uint8Array, plan: AugmentPlan, resolution: number): Float32Array {
  const res = resolution, sc = plan.scale;
  if (scaled.length !== sc * sc * 3) throw invalidArgument(`composeAugmented: the image has ${scaled.length} bytes, expected ${sc}×${sc}×3`);
  const plane = res * res;
  const out = new Float32Array(3 * plane).fill(-1);
  for (let y = 0; y < res; y++) {
    for (let x = 0; x < res; x++) {
      let sy: number, sx: number;
      if (plan.kind === 'crop') {
        sy = y + plan.top, sx = x + plan.left;
      } else {
        sy = y - plan.top, sx = x - plan.left;
        if (sy < 0 || sx < 0 || sy >= sc || sx >= sc) continue;
      }
      const at = (sy * sc + sx) * 3;
      for (let c = 0; c < 3; c++) out[c * plane + y * res + x] = scaled[at + c] / 127.5 - 1;
    }
  }
  return out;
}

/** The source centre-cropped to a square, resized to the plan's scale (Lanczos) and flipped when planned: HWC bytes. */
export async function resizeForPlan(image: RgbImage, plan: AugmentPlan): Promise<Uint8Array> {
  let img = sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).resize(plan.scale, plan.scale, { fit: 'cover' });
  if (plan.flip) img = img.flop();
  const { data } = await img.raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}

/** One augmented training image: [3, res, res] in [-1, 1], its loss mask and prompt prefix. */
export async function augmentImage(image: RgbImage, plan: AugmentPlan, s: AugmentSettings): Promise<{ pixels: Float32Array; mask: Float32Array }> {
  const scaled = await resizeForPlan(image, plan);
  return { pixels: composeAugmented(scaled, plan, s.resolution), mask: augmentMask(plan, s) };
}
