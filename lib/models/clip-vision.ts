// The CLIP vision transformer (transformers' CLIPVisionModel), the tuning
// encoder's image backbone (DESIGN §1.3), run as one native graph
// (csrc/models/clip_vision.h): patch convolution, class token, positions,
// pre-norm, full-attention CLIP layers; last_hidden_state and the pooled,
// post-normed class token. forwardBackward adds the backward for given
// output gradients, with gradients of the chosen weights.
import { ImprintError, invalidArgument } from '../errors.js';
import { runOp } from '../nn/run.js';
import { Tensor } from '../tensor.js';
import { checkOptions, describe, type FloatDType } from '../validate.js';
import { parseClipVisionConfig, type ClipVisionConfig } from './configs.js';
import { clipVisionLayout, clipVisionWeightNames } from './layout-clip-vision.js';
import { describeTensor as desc, sameShape, takeWeights } from './weights.js';

export interface ClipVisionOutputs<D extends FloatDType = FloatDType> {
  /** [batch, 1 + patches, hidden_size]: the last layer's output (no final norm, as transformers). */
  lastHiddenState: Tensor<D>;
  /** [batch, hidden_size]: post_layernorm of the class token's row. */
  pooled: Tensor<D>;
}

export interface ClipVisionBackwardOptions {
  /** Gradient of lastHiddenState (absent: zero). */
  dLast?: Tensor;
  /** Gradient of pooled (absent: zero). At least one of the two. */
  dPooled?: Tensor;
  /** 'all', 'none', or full weight names (vision_model....). */
  trainable: 'all' | 'none' | readonly string[];
}

export class ClipVisionModel<D extends FloatDType = FloatDType> {
  readonly config: ClipVisionConfig;
  readonly #weights: Tensor<D>[];
  readonly #names: string[];

  private constructor(config: ClipVisionConfig, weights: Tensor<D>[], names: string[]) {
    this.config = config;
    this.#weights = weights;
    this.#names = names;
  }

  /**
   * A model over `weights` named as transformers' CLIPVisionModel state dict
   * (vision_model.embeddings.class_embedding, ...), e.g. from
   * loadSafetensors(model.safetensors); each is checked against `config`
   * (config.json, or a CLIPModel's vision_config) for name, shape, dtype and
   * device; other entries (a CLIPModel's text half, position_ids) are
   * ignored. The tensors are used, not copied.
   */
  static fromWeights(config: unknown, weights: Map<string, Tensor>): ClipVisionModel {
    const fn = 'ClipVisionModel.fromWeights';
    const c = parseClipVisionConfig(config, fn);
    const names = clipVisionWeightNames(c);
    return new ClipVisionModel(c, takeWeights(fn, weights, names, clipVisionLayout(c), 'the class embedding'), names);
  }

  get weightNames(): readonly string[] {
    return this.#names;
  }

  get dtype(): D {
    return this.#weights[0].dtype;
  }

  get device(): string {
    return this.#weights[0].device;
  }

  /** Runs the model on pixel values [batch, channels, image_size, image_size] (CLIP-normalised, the weights' dtype and device). */
  async forward(pixelValues: Tensor): Promise<ClipVisionOutputs<D>> {
    const fn = 'ClipVisionModel.forward';
    this.#check(fn, pixelValues);
    const [lastHiddenState, pooled] = await runOp<D>('clip_vision_forward', [pixelValues, ...this.#weights], this.#attrs());
    return { lastHiddenState, pooled };
  }

  /** The forward, then the backward of Σ lastHiddenState·dLast + Σ pooled·dPooled: the outputs and the trainable weights' gradients by name. */
  async forwardBackward(pixelValues: Tensor, options: ClipVisionBackwardOptions): Promise<ClipVisionOutputs<D> & { grads: Map<string, Tensor<D>> }> {
    const fn = 'ClipVisionModel.forwardBackward';
    const o = checkOptions(fn, options, ['dLast', 'dPooled', 'trainable']);
    this.#check(fn, pixelValues);
    const N = pixelValues.shape[0], H = this.config.hiddenSize;
    const grid = this.config.imageSize / this.config.patchSize;
    const check = (name: string, d: unknown, shape: number[]): Tensor | undefined => {
      if (d === undefined) return undefined;
      if (!(d instanceof Tensor) || d.disposed) throw invalidArgument(`${fn}: ${name} must be a live Tensor [${shape.join(', ')}], got ${describe(d)}`);
      if (d.dtype !== this.dtype || d.device !== this.device) throw new ImprintError(`${fn}: ${name} is ${desc(d)} but the weights are ${this.dtype} on ${this.device}`, 'DTYPE_MISMATCH');
      if (!sameShape(d.shape, shape)) throw new ImprintError(`${fn}: ${name} must be [${shape.join(', ')}], got ${desc(d)}`, 'SHAPE_MISMATCH');
      return d;
    };
    const dLast = check('dLast', o.dLast, [N, grid * grid + 1, H]);
    const dPooled = check('dPooled', o.dPooled, [N, H]);
    if (!dLast && !dPooled) throw invalidArgument(`${fn}: give dLast, dPooled or both`);
    const trainable = this.#trainable(fn, o.trainable);
    const [lastHiddenState, pooled, ...g] = await runOp<D>('clip_vision_forward_backward', [pixelValues, dLast ?? null, dPooled ?? null, ...this.#weights], {
      ...this.#attrs(), trainable,
    });
    return { lastHiddenState, pooled, grads: new Map(trainable.map((i, k) => [this.#names[i], g[k]])) };
  }

  #trainable(fn: string, spec: unknown): number[] {
    if (spec === 'all') return this.#names.map((_, i) => i);
    if (spec === 'none') return [];
    if (!Array.isArray(spec)) throw invalidArgument(`${fn}: trainable must be 'all', 'none' or a list of weight names, got ${describe(spec)}`);
    const idx = spec.map((n) => {
      const i = this.#names.indexOf(n as string);
      if (i < 0) throw invalidArgument(`${fn}: trainable '${String(n)}' is not a weight of this model`);
      return i;
    });
    return [...new Set(idx)].sort((a, b) => a - b);
  }

  #attrs(): Record<string, number | boolean> {
    const c = this.config;
    return { layers: c.numHiddenLayers, heads: c.numAttentionHeads, patch: c.patchSize, eps: c.layerNormEps, quickGelu: c.hiddenAct === 'quick_gelu' };
  }

  #check(fn: string, pixels: unknown): void {
    this.#weights.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${this.#names[i]}' has been disposed`, 'DISPOSED');
    });
    const c = this.config;
    const want = `[batch, ${c.numChannels}, ${c.imageSize}, ${c.imageSize}]`;
    if (!(pixels instanceof Tensor) || pixels.disposed) throw invalidArgument(`${fn}: pixelValues must be a live Tensor ${want}, got ${describe(pixels)}`);
    if (pixels.ndim !== 4 || pixels.shape[0] < 1 || pixels.shape[1] !== c.numChannels || pixels.shape[2] !== c.imageSize || pixels.shape[3] !== c.imageSize) {
      throw new ImprintError(`${fn}: pixelValues must be ${want} (the model's image_size), got ${desc(pixels)}`, 'SHAPE_MISMATCH');
    }
  }
}
