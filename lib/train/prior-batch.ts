// The batch of a step with prior preservation (DreamBooth / Custom Diffusion):
// `batch` instance samples of one concept and as many of its regularization
// samples, with per-pixel loss weights that make the one native masked loss
// equal (masked mean over the instances + w · mean over the regularization
// images) / (1 + w); lossScale = 1 + w undoes the division.
import { randn, tensor } from '../creation.js';
import { concat } from '../nn/concat.js';
import type { Tensor } from '../tensor.js';
import type { ClipTokenizer } from '../tokenizer/clip.js';
import type { Device } from '../validate.js';
import type { DenoisingBatch } from './denoising-step.js';
import type { SeededRandom } from './random.js';
import { onDevice } from './run-state.js';

/** A pre-encoded training sample: its latent [1, C, h, w], loss mask [h·w] (1 = counts) and prompt. */
export interface Sample {
  latent: Tensor;
  mask: Float32Array;
  prompt: string;
}

export interface PriorBatch {
  /** The instance samples, then the regularization samples. */
  picked: Sample[];
  timesteps: number[];
  /** [N·h·w] loss weights. */
  maskData: Float32Array;
  lossScale: number;
}

/**
 * Draws the samples and timesteps from `rng` in a fixed order (instances,
 * regularization samples, timesteps), so a step is reproducible from its seed.
 * Without `regs` (prior preservation off) only instances are drawn.
 */
export function priorPreservationBatch(
  rng: SeededRandom, instances: readonly Sample[], regs: readonly Sample[] | undefined,
  o: { batch: number; priorWeight: number; plane: number; numTrainTimesteps: number },
): PriorBatch {
  const picked: Sample[] = [];
  for (let k = 0; k < o.batch; k++) picked.push(instances[rng.int(0, instances.length - 1)]);
  const nInst = picked.length;
  if (regs) for (let k = 0; k < o.batch; k++) picked.push(regs[rng.int(0, regs.length - 1)]);
  const N = picked.length;
  const timesteps = picked.map(() => rng.int(0, o.numTrainTimesteps - 1));
  const maskData = new Float32Array(N * o.plane);
  let instSum = 0;
  for (let k = 0; k < nInst; k++) for (const m of picked[k].mask) instSum += m;
  picked.forEach((s, k) => {
    const w = k < nInst ? 1 / instSum : o.priorWeight / ((N - nInst) * o.plane);
    for (let p = 0; p < o.plane; p++) maskData[k * o.plane + p] = s.mask[p] * w;
  });
  return { picked, timesteps, maskData, lossScale: regs ? 1 + o.priorWeight : 1 };
}

/**
 * The tensors of a drawn batch on `device`: token ids of the prompts, the
 * latents, Philox noise from `noiseSeed` (the same on every device) and the
 * loss weights. All are pushed to `owned`.
 */
export async function batchTensors(
  b: PriorBatch, tokenizer: ClipTokenizer, o: { tokens: number; latentSide: number; noiseSeed: number; device: Device }, owned: Tensor[],
): Promise<DenoisingBatch> {
  const keep = <T extends Tensor>(t: T): T => (owned.push(t), t);
  const N = b.picked.length;
  const idData = new Int32Array(N * o.tokens);
  b.picked.forEach((s, k) => idData.set(tokenizer.encodePadded(s.prompt, { maxLength: o.tokens }).ids, k * o.tokens));
  const ids = keep(await onDevice(tensor(idData, { shape: [N, o.tokens] }), o.device));
  const x0 = keep(await concat(b.picked.map((s) => s.latent), { dim: 0 })) as Tensor<'f32'>;
  const noise = keep(await randn(x0.shape, { seed: o.noiseSeed, device: o.device })) as Tensor<'f32'>;
  const mask = keep(await onDevice(tensor(b.maskData, { shape: [N, 1, o.latentSide, o.latentSide] }), o.device));
  return { ids, x0, noise, timesteps: b.timesteps, mask };
}
