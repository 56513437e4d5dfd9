// The CLIP text encoder's forward and backward pass in one native graph
// (csrc/models/clip_text_backward_op.cc): gradients of the trainable weights
// for given output gradients. With trainable 'embeddings' and a rowMask only
// the chosen token rows get a gradient (textual inversion, Custom Diffusion).
import { ImprintError, invalidArgument } from '../errors.js';
import { runOp } from '../nn/run.js';
import { Tensor } from '../tensor.js';
import { checkOptions, describe, type FloatDType } from '../validate.js';
import { ClipTextEncoder } from './clip-text.js';
import { parseClipTextConfig, type ClipTextConfig } from './configs.js';
import { clipTextWeightNames, TOKEN_EMBEDDING } from './layout-clip.js';

export { clipTextWeightNames, TOKEN_EMBEDDING };


export interface ClipTextBackwardOptions {
  /** Gradient of last_hidden_state, [batch, tokens, hidden_size] in the weights' dtype and device. */
  dLast: Tensor;
  /** Gradient of the normed penultimate state; when given, penultimate is returned too. */
  dPenultimate?: Tensor;
  /** 'embeddings' (the token embedding only), 'none', or full weight names (text_model....). */
  trainable: 'embeddings' | 'none' | readonly string[];
  /** u8 [vocab_size]: token-embedding rows that get a gradient (1); every other row is exactly 0. */
  rowMask?: Tensor;
}

export interface ClipTextBackwardResult<D extends FloatDType = FloatDType> {
  lastHiddenState: Tensor<D>;
  penultimate?: Tensor<D>;
  /** One gradient per trainable weight, by full name, in the weights' order. */
  grads: Map<string, Tensor<D>>;
}

const desc = (t: Tensor): string => `${t.dtype}[${t.shape.join(', ')}] on ${t.device}`;

export class ClipTextTrainer<D extends FloatDType = FloatDType> {
  readonly config: ClipTextConfig;
  readonly #names: string[];
  readonly #weights: Tensor<D>[];

  private constructor(config: ClipTextConfig, names: string[], weights: Tensor<D>[]) {
    this.config = config;
    this.#names = names;
    this.#weights = weights;
  }

  /** As ClipTextEncoder.fromWeights (same checks); the tensors are used, not copied. */
  static fromWeights(config: unknown, weights: Map<string, Tensor>): ClipTextTrainer {
    ClipTextEncoder.fromWeights(config, weights);  // names, shapes, dtypes and devices
    const c = parseClipTextConfig(config, 'ClipTextTrainer.fromWeights');
    const names = clipTextWeightNames(c);
    return new ClipTextTrainer(c, names, names.map((n) => weights.get(n) as Tensor<FloatDType>));
  }

  /** Runs the encoder on ids ([batch, tokens] i32/i64 tensor) and back-propagates the given output gradients. */
  async forwardBackward(inputIds: Tensor, options: ClipTextBackwardOptions): Promise<ClipTextBackwardResult<D>> {
    const fn = 'ClipTextTrainer.forwardBackward';
    const o = checkOptions(fn, options, ['dLast', 'dPenultimate', 'trainable', 'rowMask']);
    if (!(inputIds instanceof Tensor)) throw invalidArgument(`${fn}: inputIds must be an i32/i64 tensor [batch, tokens], got ${describe(inputIds)}`);
    if (!(o.dLast instanceof Tensor)) throw invalidArgument(`${fn}: dLast must be a Tensor [batch, tokens, hidden_size], got ${describe(o.dLast)}`);
    for (const k of ['dPenultimate', 'rowMask'] as const) {
      if (o[k] !== undefined && !(o[k] instanceof Tensor)) throw invalidArgument(`${fn}: ${k} must be a Tensor, got ${describe(o[k])}`);
    }
    this.#weights.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${this.#names[i]}' has been disposed`, 'DISPOSED');
    });
    const trainable = this.#trainable(fn, o.trainable);
    const rowMask = o.rowMask as Tensor | undefined;
    if (rowMask && !trainable.includes(0)) {
      throw invalidArgument(`${fn}: rowMask restricts the token embedding's gradient, but '${TOKEN_EMBEDDING}' is not trainable`);
    }
    if (rowMask && rowMask.dtype !== 'u8') {
      throw new ImprintError(`${fn}: rowMask must be u8 [${this.config.vocabSize}] (1 = the row is trained), got ${desc(rowMask)}`, 'DTYPE_MISMATCH');
    }
    const c = this.config;
    const dPen = o.dPenultimate as Tensor | undefined;
    const outs = await runOp<D>('clip_text_forward_backward', [inputIds, o.dLast, dPen, rowMask, ...this.#weights], {
      layers: c.numHiddenLayers, heads: c.numAttentionHeads, eps: c.layerNormEps,
      quickGelu: c.hiddenAct === 'quick_gelu', trainable,
    });
    const first = dPen ? 2 : 1;
    const grads = new Map<string, Tensor<D>>();
    trainable.forEach((i, k) => grads.set(this.#names[i], outs[first + k]));
    return dPen ? { lastHiddenState: outs[0], penultimate: outs[1], grads } : { lastHiddenState: outs[0], grads };
  }

  /** Weight indices (ascending) for the trainable option. */
  #trainable(fn: string, t: unknown): number[] {
    if (t === 'none') return [];
    if (t === 'embeddings') return [0];
    if (!Array.isArray(t)) {
      throw invalidArgument(`${fn}: trainable must be 'embeddings', 'none' or an array of weight names, got ${describe(t)}`);
    }
    const set = new Set<number>();
    t.forEach((name: unknown, k) => {
      const i = typeof name === 'string' ? this.#names.indexOf(name) : -1;
      if (i < 0) {
        throw invalidArgument(`${fn}: trainable[${k}] = ${describe(name)} is not a weight of this encoder (e.g. '${this.#names[2]}')`);
      }
      set.add(i);
    });
    return [...set].sort((a, b) => a - b);
  }
}
