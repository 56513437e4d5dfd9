// One denoising training step, the one every method and the world pretraining
// take: text encode (with the caller's token table, so trainable token rows
// are just rows of it) → DDPM noisy sample and target → UNet loss + backward
// for the trainable weights, adapters and loss mask → text-encoder backward
// from the context gradient → gradients by name. A method decides what
// trains and what the loss adds; this file decides nothing.
import { ClipTextEncoder } from '../models/clip-text.js';
import { ClipTextTrainer } from '../models/clip-text-backward.js';
import type { UNet2DConditionModel, UNetAdapter, UNetTrainable } from '../models/unet.js';
import { scale as scaleTensor } from '../nn/act.js';
import type { DDPMTraining } from '../schedulers/ddpm.js';
import type { Tensor } from '../tensor.js';

export interface DenoisingModel {
  /** The UNet with the current values of its trainable weights. */
  unet: UNet2DConditionModel;
  /** The text encoder's raw config (vocab_size as its token table has). */
  textConfig: unknown;
  /** Its weights by name, the token table included. */
  textWeights: Map<string, Tensor>;
  ddpm: DDPMTraining;
}

export interface DenoisingBatch {
  /** Token ids [N, tokens] (int32). */
  ids: Tensor;
  /** Clean latents [N, C, h, w]. */
  x0: Tensor<'f32'>;
  /** The noise added, x0's shape. */
  noise: Tensor<'f32'>;
  timesteps: number[];
  /** Loss weights [N, 1|C, h, w]: the loss is sum((out − target)²·mask) / sum(mask). */
  mask?: Tensor;
}

export interface DenoisingTrainable {
  /** UNet weights that get a gradient. */
  unet: UNetTrainable;
  /** Text-encoder weights that get one: none, all of the token table ('embeddings', restricted to rowMask's rows), or these names. */
  text: 'none' | 'embeddings' | readonly string[];
  /** u8 [vocab]: the token rows that get a gradient (with text 'embeddings'). */
  rowMask?: Tensor;
  /** Adapters on the UNet's attention projections (see UNet2DConditionModel.lossBackward). */
  adapters?: readonly UNetAdapter[];
  /** No gradient through the start-of-text position's key/value. */
  detachStartToken?: boolean;
  /** Multiplies the loss and every gradient (e.g. 1 + prior weight, undoing the mask's normalisation). */
  lossScale?: number;
}

export interface DenoisingStepResult {
  /** The step's loss (times lossScale). */
  loss: number;
  /** Gradients of the trainable UNet weights (and adapter factors), by name. */
  unet: Map<string, Tensor>;
  /** Gradients of the trainable text-encoder weights, by full name. */
  text: Map<string, Tensor>;
}

/**
 * Runs one step. Every tensor it makes, the gradients included, is pushed to
 * `owned`: the caller frees them after the optimizer update.
 */
export async function denoisingStep(model: DenoisingModel, batch: DenoisingBatch, trainable: DenoisingTrainable, owned: Tensor[]): Promise<DenoisingStepResult> {
  const keep = <T extends Tensor>(t: T): T => (owned.push(t), t);
  const lossScale = trainable.lossScale ?? 1;
  const encoder = ClipTextEncoder.fromWeights(model.textConfig, model.textWeights);
  const { lastHiddenState: context } = await encoder.encode(batch.ids);
  keep(context);
  const noisy = keep(await model.ddpm.addNoise(batch.x0, batch.noise, batch.timesteps));
  const target = keep(await model.ddpm.target(batch.x0, batch.noise, batch.timesteps));
  const r = await model.unet.lossBackward(noisy, batch.timesteps, context, target, {
    trainable: trainable.unet,
    ...(batch.mask ? { mask: batch.mask } : {}),
    ...(trainable.adapters ? { adapters: trainable.adapters } : {}),
    ...(trainable.detachStartToken ? { detachStartToken: true } : {}),
  });
  [r.out, r.dSample, r.dContext, r.loss, ...r.grads.values()].forEach(keep);
  const loss = ((await r.loss.data()) as Float32Array)[0] * lossScale;
  const up = async (t: Tensor): Promise<Tensor> => (lossScale === 1 ? t : keep(await scaleTensor(t as Tensor<'f32'>, lossScale)));
  const unet = new Map<string, Tensor>();
  for (const [n, g] of r.grads) unet.set(n, await up(g));
  const text = new Map<string, Tensor>();
  if (trainable.text !== 'none') {
    const trainer = ClipTextTrainer.fromWeights(model.textConfig, model.textWeights);
    const tr = await trainer.forwardBackward(batch.ids, { dLast: await up(r.dContext), trainable: trainable.text, ...(trainable.rowMask ? { rowMask: trainable.rowMask } : {}) });
    keep(tr.lastHiddenState);
    for (const [n, g] of tr.grads) text.set(n, keep(g));
  }
  return { loss, unet, text };
}
