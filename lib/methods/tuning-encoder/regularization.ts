// The tuning encoder's word-embedding regularization (DESIGN §1.3): the
// predicted embeddings v* [B, D] are pulled toward real words by the
// contrastive nearest-neighbour loss — positives the k vocabulary rows
// nearest each v* by cosine (the fused top-k op over the whole table),
// negatives the batch's other predictions, temperature τ — plus an L2 term on
// v*. The nearest row of each v* is also the word the dual path's hard
// context puts in its place. Forward and the gradient for v* in one call.
import { tensor } from '../../creation.js';
import { invalidArgument } from '../../errors.js';
import { embedding } from '../../nn/embedding.js';
import { contrastiveNnLoss, contrastiveNnLossBackward, tokenTopkCosine, TOKEN_TOPK_MAX_K } from '../../nn/method.js';
import { Tensor } from '../../tensor.js';
import { checkInt, checkNumberIn, checkOptions, describe, type FloatDType } from '../../validate.js';

export interface EmbeddingRegularizationOptions {
  /** Positives per prediction: the k nearest vocabulary rows (default 8). */
  k?: number;
  /** τ of the contrastive logits cos/τ (default 0.07). */
  temperature?: number;
  /** Weight of the contrastive term (default 1). */
  contrastiveWeight?: number;
  /** Weight of the L2 term mean_b ‖v*_b‖² (default 1e-4). */
  l2Weight?: number;
  /** f32 [V] row norms of the table (tokenVocabNorms), to skip recomputing them. */
  vocabNorms?: Tensor<'f32'>;
}

export interface EmbeddingRegularization {
  /** contrastiveWeight·Lc + l2Weight·mean ‖v*‖². */
  loss: number;
  contrastive: number;
  l2: number;
  /** ∂loss/∂v*, [B, D], v*'s dtype and device. */
  dEmbeddings: Tensor;
  /** The nearest vocabulary row of each prediction (the hard context's word), and its cosine. */
  nearest: number[];
  nearestCosine: number[];
}

/** The regularization of predicted embeddings `embeddings` [B, D] against the token table [V, D]; see the file's comment. */
export async function embeddingRegularization(embeddings: Tensor<FloatDType>, table: Tensor<FloatDType>, options: EmbeddingRegularizationOptions = {}): Promise<EmbeddingRegularization> {
  const fn = 'embeddingRegularization';
  const o = checkOptions(fn, options, ['k', 'temperature', 'contrastiveWeight', 'l2Weight', 'vocabNorms']);
  if (!(embeddings instanceof Tensor) || embeddings.ndim !== 2) throw invalidArgument(`${fn}: embeddings must be a Tensor [batch, hidden], got ${describe(embeddings)}`);
  if (!(table instanceof Tensor) || table.ndim !== 2 || table.shape[1] !== embeddings.shape[1]) {
    throw invalidArgument(`${fn}: table must be a Tensor [vocab, ${embeddings.shape[1]}] (the text encoder's token embedding), got ${describe(table)}`);
  }
  const k = checkInt(fn, 'k', o.k, 1, Math.min(TOKEN_TOPK_MAX_K, table.shape[0]), 8);
  const temperature = checkNumberIn(fn, 'temperature', o.temperature, 1e-6, 1e6, 0.07);
  const wc = checkNumberIn(fn, 'contrastiveWeight', o.contrastiveWeight, 0, 1e6, 1);
  const wl = checkNumberIn(fn, 'l2Weight', o.l2Weight, 0, 1e6, 1e-4);
  const [B, D] = embeddings.shape;
  const top = await tokenTopkCosine(embeddings, table, { k, ...(o.vocabNorms ? { vocabNorms: o.vocabNorms as Tensor<'f32'> } : {}) });
  const owned: Tensor[] = [top.indices, top.similarities];
  try {
    const neighbours = (await embedding(top.indices, table)).reshape([B, k, D]);
    owned.push(neighbours);
    const lossT = await contrastiveNnLoss(embeddings, neighbours, { temperature });
    owned.push(lossT);
    const contrastive = ((await lossT.data()) as Float32Array)[0];
    const dC = await contrastiveNnLossBackward(embeddings, neighbours, { temperature, gradScale: wc });
    owned.push(dC);
    // L2: mean_b ‖v_b‖², gradient 2·v/B, added on the host (B·D values).
    const v = (await embeddings.data()) as Float32Array;
    const d = Float32Array.from((await dC.data()) as Float32Array);
    let sq = 0;
    for (let i = 0; i < v.length; i++) sq += v[i] * v[i], d[i] += (wl * 2 * v[i]) / B;
    const l2 = sq / B;
    let dEmbeddings: Tensor = tensor(d, { shape: [B, D] });
    if (embeddings.dtype !== 'f32') owned.push(dEmbeddings), (dEmbeddings = await dEmbeddings.cast(embeddings.dtype));
    if (embeddings.device !== 'cpu') owned.push(dEmbeddings), (dEmbeddings = await dEmbeddings.to(embeddings.device));
    const ids = (await top.indices.data()) as Int32Array;
    const sims = (await top.similarities.data()) as Float32Array;
    return {
      loss: wc * contrastive + wl * l2, contrastive, l2, dEmbeddings,
      nearest: Array.from({ length: B }, (_, b) => ids[b * k]), nearestCosine: Array.from({ length: B }, (_, b) => sims[b * k]),
    };
  } finally {
    for (const t of owned) if (!t.disposed) t.dispose();
  }
}
