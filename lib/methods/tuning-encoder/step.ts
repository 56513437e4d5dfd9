// One training step of the tuning encoder (DESIGN §1.3), used by the
// pretraining: the UNet encoder features of the noisy sample (empty prompt),
// the encoder's prediction (v* = class word + offset, a LoRA per chosen
// projection and image), the prompt "a S* <class>" with each image's own v*
// as S* (one added token row per image), the dual path (α·adapted with
// C_soft + (1 − α)·plain with C_hard, where C_hard puts v*'s nearest real
// word in S*'s place), the diffusion loss, the embedding regularization
// (contrastive nearest-neighbour + L2 on v*) and L2 on the predicted LoRA
// factors; the gradients flow back through the UNet's per-sample LoRA inputs
// and the text encoder's added rows into the encoder.
import { tensor } from '../../creation.js';
import { ClipTextTrainer, TOKEN_EMBEDDING } from '../../models/clip-text-backward.js';
import { ClipTextEncoder } from '../../models/clip-text.js';
import type { UNet2DConditionModel, UNetAdapter } from '../../models/unet.js';
import { split } from '../../nn/concat.js';
import { embedding } from '../../nn/embedding.js';
import { tokenVocabNorms } from '../../nn/method.js';
import type { DDPMTraining } from '../../schedulers/ddpm.js';
import type { Tensor } from '../../tensor.js';
import type { ClipTokenizer } from '../../tokenizer/clip.js';
import { disposePrediction, type TuningEncoder } from './model.js';
import { embeddingRegularization } from './regularization.js';

export interface EncoderStepModel {
  unet: UNet2DConditionModel;
  textConfig: Record<string, unknown>;
  textWeights: Map<string, Tensor>;
  tokenizer: ClipTokenizer;
  ddpm: DDPMTraining;
}

/**
 * What every step of a run shares, built once: the frozen models, the text
 * encoder, the token table's row norms (for the nearest-word search) and the
 * empty prompt's context (the UNet features' condition) per batch size.
 */
export class EncoderStepContext {
  readonly model: EncoderStepModel;
  readonly base: ClipTextEncoder;
  readonly maxLength: number;
  readonly vocabNorms: Tensor<'f32'>;
  readonly #empty = new Map<number, Tensor>();

  private constructor(model: EncoderStepModel, base: ClipTextEncoder, vocabNorms: Tensor<'f32'>) {
    this.model = model;
    this.base = base;
    this.maxLength = base.config.maxPositionEmbeddings;
    this.vocabNorms = vocabNorms;
  }

  static async create(model: EncoderStepModel): Promise<EncoderStepContext> {
    const base = ClipTextEncoder.fromWeights(model.textConfig, model.textWeights);
    return new EncoderStepContext(model, base, await tokenVocabNorms(base.tokenEmbedding));
  }

  /** The empty prompt's last hidden state, [B, tokens, hidden] (kept until dispose). */
  async emptyContext(B: number): Promise<Tensor> {
    let c = this.#empty.get(B);
    if (!c) {
      const ids = Array.from(this.model.tokenizer.encodePadded('', { maxLength: this.maxLength }).ids);
      c = (await this.base.encode(Array.from({ length: B }, () => ids))).lastHiddenState;
      this.#empty.set(B, c);
    }
    return c;
  }

  /** Token ids [B, tokens] of `a <token> <classWord>`, one row per token id. */
  promptIds(classWord: string, tokenIds: readonly number[]): Tensor<'i32'> {
    const L = this.maxLength;
    const ids = new Int32Array(tokenIds.length * L);
    tokenIds.forEach((id, b) => ids.set(placeholderIds(this.model.tokenizer, L, classWord, id), b * L));
    return tensor(ids, { shape: [tokenIds.length, L] });
  }

  dispose(): void {
    for (const t of this.#empty.values()) if (!t.disposed) t.dispose();
    this.#empty.clear();
    if (!this.vocabNorms.disposed) this.vocabNorms.dispose();
  }
}

export interface EncoderStepBatch {
  /** The encoder's view of each image, [B, C, side, side]. */
  pixels: Tensor<'f32'>;
  /** Clean latents [B, C, h, w] and the noise added. */
  x0: Tensor<'f32'>;
  noise: Tensor<'f32'>;
  timesteps: number[];
  /** The class word of each image, e.g. 'shape' (v* starts from its embedding). */
  classWord: string;
}

export interface EncoderStepOptions {
  /** The dual path's blend (1: adapted weights and v* only). */
  alpha: number;
  contrastiveWeight: number;
  temperature: number;
  neighbours: number;
  /** L2 weight on v*'s offset from the class word. */
  embeddingL2: number;
  /** L2 weight on the predicted LoRA factors. */
  loraL2: number;
}

export interface EncoderStepResult {
  loss: number;
  diffusion: number;
  regularization: number;
  /** The encoder's parameter gradients by name. */
  grads: Map<string, Tensor<'f32'>>;
  /** Each image's nearest real token to v*. */
  nearest: number[];
}

/** Token ids of `a <token> <classWord>` padded to maxLength, the token given as an id. */
export function placeholderIds(tokenizer: ClipTokenizer, maxLength: number, classWord: string, tokenId: number): Int32Array {
  const ids = new Int32Array(maxLength).fill(tokenizer.padId);
  const seq = [tokenizer.bosId, ...tokenizer.encode('a').slice(1, -1), tokenId, ...tokenizer.encode(classWord).slice(1, -1), tokenizer.eosId];
  ids.set(seq.slice(0, maxLength));
  return ids;
}

/** The position of the placeholder in placeholderIds' sequence. */
export function placeholderPosition(tokenizer: ClipTokenizer): number {
  return 1 + tokenizer.encode('a').length - 2;
}

/** One step; see the file's comment. The caller applies the gradients. */
export async function encoderStep(ctx: EncoderStepContext, encoder: TuningEncoder, batch: EncoderStepBatch, o: EncoderStepOptions): Promise<EncoderStepResult> {
  const { unet, tokenizer, ddpm } = ctx.model;
  const base = ctx.base;
  const B = batch.x0.shape[0];
  const owned: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => (owned.push(t), t);
  const V = base.config.vocabSize, H = base.config.hiddenSize;
  try {
    const noisy = keep(await ddpm.addNoise(batch.x0, batch.noise, batch.timesteps));
    const target = keep(await ddpm.target(batch.x0, batch.noise, batch.timesteps));
    // UNet encoder features of the noisy sample under the empty prompt (constants).
    const features = await unet.encoderFeatures(noisy, batch.timesteps, await ctx.emptyContext(B));
    owned.push(...features);
    const pred = await encoder.forward(batch.pixels, features);
    try {
      // v* = class word embedding + offset, one added token row per image.
      const classIds = tokenizer.encode(batch.classWord).slice(1, -1);
      const classRow = keep(await embedding(keep(tensor(Int32Array.from(Array(B).fill(classIds[0])), { shape: [B] })), base.tokenEmbedding as Tensor<'f32'>));
      const vStar = keep(await classRow.add(pred.offset));
      const grown = await base.withTokenRows(vStar);
      keep(grown.tokenEmbedding);
      const idTensor = keep(ctx.promptIds(batch.classWord, Array.from({ length: B }, (_, b) => V + b)));
      const soft = keep((await grown.encode(idTensor)).lastHiddenState);
      // The hard context: v*'s nearest real word in its place (no gradient).
      const reg = await embeddingRegularization(vStar, base.tokenEmbedding as Tensor<'f32'>, {
        k: o.neighbours, temperature: o.temperature, contrastiveWeight: o.contrastiveWeight, l2Weight: 0, vocabNorms: ctx.vocabNorms,
      });
      keep(reg.dEmbeddings);
      // At α = 1 the hard path weighs nothing: skip it (the same result, half the attention work).
      const hard = o.alpha < 1 ? keep((await base.encode(keep(ctx.promptIds(batch.classWord, reg.nearest)))).lastHiddenState) : undefined;
      const adapters: UNetAdapter[] = encoder.spec.targets.map((t, j) => ({ weight: t.weight, sampleLora: { down: pred.down[j], up: pred.up[j], scale: encoder.spec.loraScale ?? 1 } }));
      const names = encoder.spec.targets.flatMap((t) => [`${t.weight}#sample.down`, `${t.weight}#sample.up`]);
      const r = await unet.lossBackward(noisy, batch.timesteps, soft, target, { trainable: names, adapters, ...(hard ? { dual: { alpha: o.alpha, hardContext: hard } } : {}) });
      owned.push(r.out, r.dSample, r.dContext, r.loss, ...r.grads.values());
      const diffusion = ((await r.loss.data()) as Float32Array)[0];
      // The added rows' gradient: the text encoder's backward from dContext.
      const rows = keep(await addedRowsGradient(ctx, grown, idTensor, r.dContext));
      // dv*: the text path, the regularization, and L2 on the offset (2·w·offset / B).
      const dv = Float32Array.from((await rows.data()) as Float32Array);
      const dr = (await reg.dEmbeddings.data()) as Float32Array;
      const off = (await pred.offset.data()) as Float32Array;
      let offL2 = 0;
      for (let i = 0; i < dv.length; i++) dv[i] += dr[i] + (2 * o.embeddingL2 * off[i]) / B, offL2 += (off[i] * off[i]) / B;
      // The LoRA factors: the UNet's gradient plus L2 (2·w·x / B).
      let loraL2 = 0;
      const withL2 = async (g: Tensor, x: Tensor): Promise<Tensor<'f32'>> => {
        const gv = Float32Array.from((await g.data()) as Float32Array), xv = (await x.data()) as Float32Array;
        for (let i = 0; i < gv.length; i++) gv[i] += (2 * o.loraL2 * xv[i]) / B, loraL2 += (xv[i] * xv[i]) / B;
        return keep(tensor(gv, { shape: g.shape }));
      };
      const dDown: Tensor<'f32'>[] = [], dUp: Tensor<'f32'>[] = [];
      for (const [j, t] of encoder.spec.targets.entries()) {
        dDown.push(await withL2(r.grads.get(`${t.weight}#sample.down`)!, pred.down[j]));
        dUp.push(await withL2(r.grads.get(`${t.weight}#sample.up`)!, pred.up[j]));
      }
      const grads = await encoder.backward(pred, { dOffset: keep(tensor(dv, { shape: [B, H] })), dDown, dUp });
      const regularization = reg.loss + o.embeddingL2 * offL2 + o.loraL2 * loraL2;
      return { loss: diffusion + regularization, diffusion, regularization, grads, nearest: reg.nearest };
    } finally {
      disposePrediction(pred);
    }
  } finally {
    for (const t of owned) if (!t.disposed) t.dispose();
  }
}

/**
 * The gradient of the rows a text encoder `grown` by withTokenRows added
 * ([n, hidden]), for the gradient dContext of its output on `ids`: the text
 * encoder's backward with only those rows trainable.
 */
export async function addedRowsGradient(ctx: EncoderStepContext, grown: ClipTextEncoder, ids: Tensor, dContext: Tensor): Promise<Tensor> {
  const V = ctx.base.config.vocabSize, n = grown.config.vocabSize - V;
  const textWeights = new Map(ctx.model.textWeights);
  textWeights.set(TOKEN_EMBEDDING, grown.tokenEmbedding);
  const rowMask = tensor(Uint8Array.from({ length: V + n }, (_, i) => (i >= V ? 1 : 0)), { shape: [V + n] });
  const owned: Tensor[] = [rowMask];
  try {
    const tr = await ClipTextTrainer.fromWeights({ ...ctx.model.textConfig, vocab_size: V + n }, textWeights).forwardBackward(ids, { dLast: dContext, trainable: 'embeddings', rowMask });
    const table = tr.grads.get(TOKEN_EMBEDDING)!;
    owned.push(tr.lastHiddenState, table);
    const [rest, rows] = await split(table, [V, n], { dim: 0 });
    rest.dispose();
    return rows;
  } finally {
    for (const t of owned) if (!t.disposed) t.dispose();
  }
}
