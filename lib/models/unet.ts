// diffusers' UNet2DConditionModel (SD 1.x/2.x) run as one native graph
// (csrc/models/unet.h): predicts the noise in a latent sample at a timestep,
// conditioned on text-encoder hidden states.
import { ImprintError, invalidArgument } from '../errors.js';
import { TOKEN_MAP_MAX_TOKENS } from '../nn/attn.js';
import { runOp } from '../nn/run.js';
import { tensor, zeros } from '../creation.js';
import { Tensor } from '../tensor.js';
import { checkOptions, describe, isPlainObject, type FloatDType } from '../validate.js';
import { parseUNetConfig, type UNetConfig } from './configs.js';
import { unetLayout } from './layout-unet.js';
import { packAdapters, packDualPath, type UNetAdapter, type UNetDualPath } from './unet-adapters.js';
import { describeTensor, sameShape, takeWeights } from './weights.js';

// As the native errors describe tensors: "f32[2, 4, 64, 64] on cpu".
const desc = describeTensor;

/**
 * Which UNet weights get gradients in forwardBackward: a preset over the
 * UNet's own weights, or a list of names, which may also name adapter
 * parameters as `${weight}#delta`, `${weight}#lora.a`, `${weight}#lora.b`.
 */
export type UNetTrainable = 'kv' | 'cross' | 'all' | 'none' | readonly string[];

export type { UNetAdapter, UNetDualPath } from './unet-adapters.js';

/**
 * Attend-and-Excite's probe: the cross-attentions over a grid of `queries`
 * positions (h·w of their latent grid; focusQueries gives the usual 16×16)
 * report how much each position attends to the context positions `tokens`
 * (1–77), averaged over heads and over those layers.
 */
export interface UNetFocus {
  tokens: readonly number[];
  queries: number;
}

/**
 * The probe's grid for a sample of h×w latents: of the grids the UNet's
 * down-block cross-attentions run at (the latent grid halved, rounding up,
 * per down block), the one closest to 16×16 (Attend-and-Excite's choice for
 * SD's 64×64 latents), the larger on a tie.
 */
export function focusGrid(config: UNetConfig, h: number, w: number): { height: number; width: number; queries: number } {
  let best: { height: number; width: number; queries: number; distance: number } | undefined;
  let side = [h, w];
  config.downBlockTypes.forEach((type, i) => {
    if (i > 0) side = side.map((x) => Math.ceil(x / 2));
    if (type !== 'CrossAttnDownBlock2D') return;
    const distance = Math.abs(Math.log2(Math.sqrt(side[0] * side[1]) / 16));
    if (!best || distance < best.distance - 1e-9) best = { height: side[0], width: side[1], queries: side[0] * side[1], distance };
  });
  if (!best) throw invalidArgument('focusGrid: this UNet has no cross-attention in its down blocks');
  const { height, width, queries } = best as { height: number; width: number; queries: number };
  return { height, width, queries };
}

/** focusGrid's query count (h'·w'), for UNetFocus.queries. */
export function focusQueries(config: UNetConfig, h: number, w: number): number {
  return focusGrid(config, h, w).queries;
}

/** forwardBackward / lossBackward options. */
export interface UNetBackwardOptions {
  /** Which weights (and adapter parameters, by name) get gradients; default 'kv'. */
  trainable?: UNetTrainable;
  adapters?: readonly UNetAdapter[];
  /** The tuning encoder's dual path (see UNetDualPath); the hard context gets no gradient. */
  dual?: UNetDualPath;
  /** Keep only each layer's input and recompute its activations in the backward (less memory, one more forward). */
  checkpoint?: boolean;
  /**
   * Every cross-attention treats its key/value at context position 0 (the
   * start-of-text token) as constants: they pass no gradient to to_k/to_v or
   * to encoderHiddenStates (Custom Diffusion). Default false.
   */
  detachStartToken?: boolean;
}

/** lossBackward options: forwardBackward's, plus a loss mask. */
export interface UNetLossOptions extends UNetBackwardOptions {
  /**
   * [N, 1 or out_channels, h, w], the weights' dtype and device: the loss
   * becomes sum((out − target)²·mask) / sum(mask broadcast to out's shape).
   */
  mask?: Tensor;
}

export class UNet2DConditionModel<D extends FloatDType = FloatDType> {
  readonly config: UNetConfig;
  /** The weights in the native op's input order (unetLayout's order), and their names. */
  readonly #weights: Tensor<D>[];
  readonly #names: string[];

  private constructor(config: UNetConfig, weights: Tensor<D>[], names: string[]) {
    this.config = config;
    this.#weights = weights;
    this.#names = names;
  }

  /**
   * A UNet over `weights` named as diffusers' UNet2DConditionModel state dict
   * (conv_in.weight, down_blocks.0.resnets.0.norm1.weight, ...), e.g. from
   * loadSafetensors(unet/diffusion_pytorch_model.safetensors), with `config`
   * the parsed or raw unet/config.json. Every weight is checked for name,
   * shape, dtype and device; other entries are ignored. The tensors are used,
   * not copied: keep them undisposed while running.
   */
  static fromWeights(config: unknown, weights: Map<string, Tensor>): UNet2DConditionModel {
    const fn = 'UNet2DConditionModel.fromWeights';
    const c = parseUNetConfig(config, fn);
    const layout = unetLayout(c);
    const names = Object.keys(layout);
    const list = takeWeights(fn, weights, names, layout, 'conv_in.weight');
    return new UNet2DConditionModel(c, list, names);
  }

  /**
   * A UNet sharing this one's tensors except `replacements` (name → tensor,
   * e.g. fine-tuned attn2 K/V weights), each checked as fromWeights checks it.
   */
  withWeights(replacements: Map<string, Tensor>): UNet2DConditionModel {
    const fn = 'UNet2DConditionModel.withWeights';
    if (!(replacements instanceof Map)) throw invalidArgument(`${fn}: replacements must be a Map of name → Tensor, got ${describe(replacements)}`);
    const all = new Map<string, Tensor>(this.#names.map((n, i) => [n, this.#weights[i]]));
    for (const [n, t] of replacements) {
      if (typeof n !== 'string' || !all.has(n)) throw invalidArgument(`${fn}: '${String(n)}' is not a weight of this UNet`);
      all.set(n, t);
    }
    const list = takeWeights(fn, all, this.#names, unetLayout(this.config), 'conv_in.weight');
    return new UNet2DConditionModel(this.config, list, [...this.#names]);
  }

  /** Every weight's diffusers name, in the native op's order. */
  get weightNames(): readonly string[] {
    return this.#names;
  }

  /** The weight tensors, in weightNames' order (used, not copied). */
  get weights(): readonly Tensor<D>[] {
    return this.#weights;
  }

  /** The weights' dtype and device. */
  get dtype(): D {
    return this.#weights[0].dtype;
  }

  get device(): string {
    return this.#weights[0].device;
  }

  /**
   * The noise prediction [N, out_channels, h, w] for `sample` [N, in_channels,
   * h, w] (any h, w ≥ 1, as in diffusers) at `timestep` (a number for the
   * whole batch, N numbers, or a tensor [N], [1] or [] of any numeric dtype),
   * conditioned on `encoderHiddenStates` [N, tokens, cross_attention_dim].
   * sample and encoderHiddenStates must have the weights' dtype and device.
   * adapters: deltas, LoRA and masks on attention projection weights
   * (UNetAdapter). Keeps no activations: memory stays near the skip tensors.
   */
  async forward(
    sample: Tensor,
    timestep: number | number[] | Tensor,
    encoderHiddenStates: Tensor,
    options: { adapters?: readonly UNetAdapter[]; dual?: UNetDualPath } = {},
  ): Promise<Tensor<D>> {
    const [out] = await this.#forward('UNet2DConditionModel.forward', sample, timestep, encoderHiddenStates, options, {});
    return out;
  }

  /**
   * The UNet encoder's features (the tuning encoder's second backbone,
   * DESIGN §1.3): each down block's output, after its downsample, then the
   * mid block's, e.g. for SD1.5 at 64×64 latents [N, 320, 32, 32],
   * [N, 640, 16, 16], [N, 1280, 8, 8], [N, 1280, 8, 8], [N, 1280, 8, 8].
   * The whole forward runs (its prediction is dropped).
   */
  async encoderFeatures(
    sample: Tensor,
    timestep: number | number[] | Tensor,
    encoderHiddenStates: Tensor,
    options: { adapters?: readonly UNetAdapter[]; dual?: UNetDualPath } = {},
  ): Promise<Tensor<D>[]> {
    const [out, ...features] = await this.#forward('UNet2DConditionModel.encoderFeatures', sample, timestep, encoderHiddenStates, options, { encoderFeatures: 1 });
    out.dispose();
    return features;
  }

  async #forward(
    fn: string,
    sample: Tensor,
    timestep: number | number[] | Tensor,
    encoderHiddenStates: Tensor,
    options: { adapters?: readonly UNetAdapter[]; dual?: UNetDualPath },
    extra: Record<string, number | number[]>,
  ): Promise<Tensor<D>[]> {
    this.#weights.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${this.#names[i]}' has been disposed`, 'DISPOSED');
    });
    if (options === null || typeof options !== 'object') throw invalidArgument(`${fn}: options must be an object, got ${describe(options)}`);
    checkOptions(fn, options, ['adapters', 'dual']);
    const N = this.#checkSample(fn, sample);
    const ad = packAdapters(fn, options.adapters, this.#names, this.#weights, N);
    this.#checkContext(fn, encoderHiddenStates, N);
    const dual = packDualPath(fn, options.dual, encoderHiddenStates);
    const t = await this.#timesteps(fn, timestep, N);
    try {
      return await runOp<D>('unet_forward', [sample, t.tensor, encoderHiddenStates, ...this.#weights, ...ad.inputs, ...dual.inputs], {
        ...this.#attrs(),
        adapters: ad.record,
        ...dual.attrs,
        ...extra,
      });
    } finally {
      if (t.owned) t.tensor.dispose();
    }
  }

  /**
   * The forward pass with the attention probe (UNetFocus): the noise
   * prediction and maps f32 [N, tokens.length, queries], the mean over the
   * probed cross-attentions of the attention each position pays to each token.
   */
  async focusForward(
    sample: Tensor, timestep: number | number[] | Tensor, encoderHiddenStates: Tensor, focus: UNetFocus,
    options: { adapters?: readonly UNetAdapter[]; dual?: UNetDualPath } = {},
  ): Promise<{ out: Tensor<D>; maps: Tensor<'f32'> }> {
    const fn = 'UNet2DConditionModel.focusForward';
    const attrs = this.#focusAttrs(fn, focus, encoderHiddenStates);
    const [out, maps] = await this.#forward(fn, sample, timestep, encoderHiddenStates, options, attrs);
    return { out, maps: maps as unknown as Tensor<'f32'> };
  }

  /**
   * The gradient with respect to sample of Σ maps·dFocus, the maps being
   * focusForward's (dFocus f32 [N, tokens.length, queries]): how to move the
   * latents so the probed positions attend more (or less) to the tokens.
   */
  async focusBackward(
    sample: Tensor, timestep: number | number[] | Tensor, encoderHiddenStates: Tensor, focus: UNetFocus, dFocus: Tensor<'f32'>,
    options: { adapters?: readonly UNetAdapter[]; dual?: UNetDualPath } = {},
  ): Promise<Tensor<D>> {
    const r = await this.#focusBackward('UNet2DConditionModel.focusBackward', sample, timestep, encoderHiddenStates, focus, dFocus, { ...options, trainable: 'none' });
    r.out.dispose(), r.dContext.dispose();
    return r.dSample;
  }

  /**
   * focusBackward with weight gradients: the forward, then the backward of
   * Σ maps·dFocus alone (the output gets no gradient) for the `trainable`
   * weights and adapter parameters, as forwardBackward names them. An
   * attention term in a training loss (e.g. Attend-and-Excite's on LoRA
   * factors) is this, with dFocus = ∂term/∂maps at focusForward's maps.
   */
  async focusForwardBackward(
    sample: Tensor, timestep: number | number[] | Tensor, encoderHiddenStates: Tensor, focus: UNetFocus, dFocus: Tensor<'f32'>,
    options: UNetBackwardOptions = {},
  ): Promise<{ out: Tensor<D>; dSample: Tensor<D>; dContext: Tensor<D>; grads: Map<string, Tensor<D>> }> {
    return this.#focusBackward('UNet2DConditionModel.focusForwardBackward', sample, timestep, encoderHiddenStates, focus, dFocus, options);
  }

  async #focusBackward(
    fn: string, sample: Tensor, timestep: number | number[] | Tensor, encoderHiddenStates: Tensor, focus: UNetFocus, dFocus: Tensor<'f32'>, options: UNetBackwardOptions,
  ): Promise<{ out: Tensor<D>; dSample: Tensor<D>; dContext: Tensor<D>; grads: Map<string, Tensor<D>> }> {
    const attrs = this.#focusAttrs(fn, focus, encoderHiddenStates);
    if (!(dFocus instanceof Tensor) || dFocus.disposed) throw invalidArgument(`${fn}: dFocus must be a live f32 Tensor [N, ${focus.tokens.length}, ${focus.queries}], got ${describe(dFocus)}`);
    if (!(sample instanceof Tensor) || sample.ndim !== 4) throw invalidArgument(`${fn}: sample must be a Tensor [N, C, h, w], got ${describe(sample)}`);
    const dy = await zeros([sample.shape[0], this.config.outChannels, sample.shape[2], sample.shape[3]], { dtype: this.dtype, device: this.device });
    try {
      return await this.#backward(fn, 'dy', sample, timestep, encoderHiddenStates, dy, options, false, attrs, dFocus);
    } finally {
      dy.dispose();
    }
  }

  #focusAttrs(fn: string, focus: unknown, context: unknown): { focusTokens: number[]; focusQueries: number } {
    if (!isPlainObject(focus)) throw invalidArgument(`${fn}: focus must be { tokens, queries }, got ${describe(focus)}`);
    checkOptions(fn, focus, ['tokens', 'queries']);
    const { tokens, queries } = focus as { tokens: unknown; queries: unknown };
    const length = context instanceof Tensor ? context.shape[1] : Infinity;
    if (!Array.isArray(tokens) || tokens.length < 1 || tokens.length > TOKEN_MAP_MAX_TOKENS || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < length)) {
      throw invalidArgument(`${fn}: focus.tokens must list 1 to ${TOKEN_MAP_MAX_TOKENS} context positions (integers in [0, ${length})), got ${describe(tokens)}`);
    }
    if (!Number.isInteger(queries) || (queries as number) < 1) throw invalidArgument(`${fn}: focus.queries must be a positive integer (h·w of a cross-attention grid), got ${describe(queries)}`);
    return { focusTokens: tokens as number[], focusQueries: queries as number };
  }

  /**
   * The forward pass, then the backward of sum(out · dy): returns out, the
   * gradients of sample and encoderHiddenStates, and the gradients of the
   * `trainable` weights only (frozen weights cost no weight gradient):
   * 'kv' = every attn2.to_k/to_v weight (Custom Diffusion), 'cross' = every
   * attn2 weight (to_q, to_k, to_v, to_out.0 weight and bias), 'all' = every
   * weight (pretraining), 'none', or a list of weight names and adapter
   * parameters (`${weight}#delta`, `${weight}#lora.a`, `${weight}#lora.b`).
   * adapters: as in forward. checkpoint: keep only each layer's input and
   * recompute its activations in the backward (same gradients, less memory).
   * grads maps each trainable name to its gradient (weights in layout order,
   * then adapter parameters).
   */
  async forwardBackward(
    sample: Tensor,
    timestep: number | number[] | Tensor,
    encoderHiddenStates: Tensor,
    dy: Tensor,
    options: UNetBackwardOptions = {},
  ): Promise<{ out: Tensor<D>; dSample: Tensor<D>; dContext: Tensor<D>; grads: Map<string, Tensor<D>> }> {
    return this.#backward('UNet2DConditionModel.forwardBackward', 'dy', sample, timestep, encoderHiddenStates, dy, options, false);
  }

  async #backward(
    fn: string,
    what: 'dy' | 'target',
    sample: Tensor,
    timestep: number | number[] | Tensor,
    encoderHiddenStates: Tensor,
    dy: Tensor,
    options: UNetLossOptions,
    mseLoss: boolean,
    focusAttrs: Record<string, number | number[]> = {},
    dFocus?: Tensor,
  ): Promise<{ loss?: Tensor<D>; out: Tensor<D>; dSample: Tensor<D>; dContext: Tensor<D>; grads: Map<string, Tensor<D>> }> {
    const c = this.config;
    this.#weights.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${this.#names[i]}' has been disposed`, 'DISPOSED');
    });
    if (options === null || typeof options !== 'object') throw invalidArgument(`${fn}: options must be an object, got ${describe(options)}`);
    checkOptions(fn, options, mseLoss ? ['trainable', 'adapters', 'dual', 'checkpoint', 'detachStartToken', 'mask'] : ['trainable', 'adapters', 'dual', 'checkpoint', 'detachStartToken']);
    const checkpoint = options.checkpoint ?? false;
    if (typeof checkpoint !== 'boolean') throw invalidArgument(`${fn}: checkpoint must be a boolean, got ${describe(checkpoint)}`);
    const detach = options.detachStartToken ?? false;
    if (typeof detach !== 'boolean') throw invalidArgument(`${fn}: detachStartToken must be a boolean, got ${describe(detach)}`);
    const N = this.#checkSample(fn, sample);
    const ad = packAdapters(fn, options.adapters, this.#names, this.#weights, N);
    const indices = this.#trainable(fn, options.trainable ?? 'kv', ad.names);
    const paramNames = [...this.#names, ...ad.names];
    this.#checkContext(fn, encoderHiddenStates, N);
    const dual = packDualPath(fn, options.dual, encoderHiddenStates);
    if (!(dy instanceof Tensor)) throw invalidArgument(`${fn}: ${what} must be a Tensor shaped like the output, got ${describe(dy)}`);
    if (dy.disposed) throw new ImprintError(`${fn}: ${what} has been disposed`, 'DISPOSED');
    this.#checkKind(fn, what, dy);
    const outShape = [N, c.outChannels, sample.shape[2], sample.shape[3]];
    if (!sameShape(dy.shape, outShape)) {
      throw new ImprintError(`${fn}: ${what} must have the output's shape [${outShape.join(', ')}], got ${desc(dy)}`, 'SHAPE_MISMATCH');
    }
    const mask = options.mask;
    if (mask !== undefined) {
      const want = `[${N}, 1 or ${c.outChannels}, ${sample.shape[2]}, ${sample.shape[3]}]`;
      if (!(mask instanceof Tensor)) throw invalidArgument(`${fn}: mask must be a Tensor ${want}, got ${describe(mask)}`);
      if (mask.disposed) throw new ImprintError(`${fn}: mask has been disposed`, 'DISPOSED');
      this.#checkKind(fn, 'mask', mask);
      const [mn, mc, mh, mw] = mask.shape;
      if (mask.ndim !== 4 || mn !== N || (mc !== 1 && mc !== c.outChannels) || mh !== sample.shape[2] || mw !== sample.shape[3]) {
        throw new ImprintError(`${fn}: mask must be ${want}, got ${desc(mask)}`, 'SHAPE_MISMATCH');
      }
    }
    const t = await this.#timesteps(fn, timestep, N);
    try {
      const inputs = [sample, t.tensor, encoderHiddenStates, dy, ...this.#weights, ...ad.inputs, ...dual.inputs, ...(mask ? [mask] : []), ...(dFocus ? [dFocus] : [])];
      const [out, dSample, dContext, ...g] = await runOp<D>('unet_forward_backward', inputs, {
        ...this.#attrs(),
        trainable: indices,
        adapters: ad.record,
        checkpoint,
        mseLoss,
        lossMask: mask !== undefined,
        detachFirstToken: detach,
        ...dual.attrs,
        ...focusAttrs,
      });
      const grads = new Map(indices.map((i, k) => [paramNames[i], g[k]]));
      return mseLoss ? { loss: g[indices.length], out, dSample, dContext, grads } : { out, dSample, dContext, grads };
    } finally {
      if (t.owned) t.tensor.dispose();
    }
  }

  /**
   * A training pass: the forward, the loss mean((out - target)²), and its
   * backward in one native call (no second forward to form dy). Returns the
   * loss (a scalar tensor), the gradients of sample and encoderHiddenStates,
   * and those of the `trainable` weights (as forwardBackward; same options).
   * mask: the masked loss sum((out − target)²·mask) / sum(mask), the mask
   * broadcast over channels when it has one.
   */
  async lossBackward(
    sample: Tensor,
    timestep: number | number[] | Tensor,
    encoderHiddenStates: Tensor,
    target: Tensor,
    options: UNetLossOptions = {},
  ): Promise<{ loss: Tensor<D>; out: Tensor<D>; dSample: Tensor<D>; dContext: Tensor<D>; grads: Map<string, Tensor<D>> }> {
    const fn = 'UNet2DConditionModel.lossBackward';
    const r = await this.#backward(fn, 'target', sample, timestep, encoderHiddenStates, target, options, true);
    return r as typeof r & { loss: Tensor<D> };
  }

  // Indices of the trainable weights (layout order), then of the trainable
  // adapter inputs (after the weights, in `adapterNames`' order), ascending.
  #trainable(fn: string, spec: unknown, adapterNames: readonly string[]): number[] {
    const projections = /\.attn[12]\.(to_q\.weight|to_k\.weight|to_v\.weight|to_out\.0\.weight|to_out\.0\.bias)$/;
    let pick: (name: string) => boolean;
    if (spec === 'kv') pick = (n) => /\.attn2\.to_[kv]\.weight$/.test(n);
    else if (spec === 'cross') pick = (n) => /\.attn2\./.test(n) && projections.test(n);
    else if (spec === 'all') pick = () => true;
    else if (spec === 'none') pick = () => false;
    else if (Array.isArray(spec)) {
      const wanted = new Set<string>();
      for (const n of spec) {
        if (typeof n !== 'string') throw invalidArgument(`${fn}: trainable names must be strings, got ${describe(n)}`);
        if (n.endsWith('#mask') && adapterNames.includes(n)) throw invalidArgument(`${fn}: trainable '${n}': masks are not trainable`);
        if (n.includes('#') && !adapterNames.includes(n)) {
          throw invalidArgument(`${fn}: trainable '${n}' is not a parameter of the given adapters (${adapterNames.filter((a) => !a.endsWith('#mask')).join(', ') || 'none'})`);
        }
        if (!n.includes('#') && !this.#names.includes(n)) throw invalidArgument(`${fn}: trainable weight '${n}' is not a weight of this UNet`);
        wanted.add(n);
      }
      return [...this.#names, ...adapterNames].flatMap((n, i) => (wanted.has(n) ? [i] : []));
    } else {
      throw invalidArgument(`${fn}: trainable must be 'kv', 'cross', 'all', 'none' or a list of weight names, got ${describe(spec)}`);
    }
    return this.#names.flatMap((n, i) => (pick(n) ? [i] : []));
  }

  #attrs(): Record<string, number | number[] | boolean> {
    const c = this.config;
    return {
      blockOutChannels: c.blockOutChannels,
      layersPerBlock: c.layersPerBlock,
      crossDown: c.downBlockTypes.map((b) => (b === 'CrossAttnDownBlock2D' ? 1 : 0)),
      crossUp: c.upBlockTypes.map((b) => (b === 'CrossAttnUpBlock2D' ? 1 : 0)),
      heads: c.heads,
      transformerLayers: c.transformerLayersPerBlock,
      linearProjection: c.useLinearProjection,
      groups: c.normNumGroups,
      eps: c.normEps,
      flipSinToCos: c.flipSinToCos,
      freqShift: c.freqShift,
    };
  }

  #checkSample(fn: string, s: unknown): number {
    const c = this.config;
    if (!(s instanceof Tensor)) throw invalidArgument(`${fn}: sample must be a Tensor [N, ${c.inChannels}, h, w], got ${describe(s)}`);
    if (s.disposed) throw new ImprintError(`${fn}: sample has been disposed`, 'DISPOSED');
    this.#checkKind(fn, 'sample', s);
    if (s.ndim !== 4 || s.shape[1] !== c.inChannels) {
      throw new ImprintError(`${fn}: sample must be [N, ${c.inChannels}, h, w] (in_channels ${c.inChannels}), got ${desc(s)}`, 'SHAPE_MISMATCH');
    }
    // Any positive size: the upsamplers resize to odd-sized skips (diffusers' forward_upsample_size).
    const [n, , h, w] = s.shape;
    if (n < 1 || h < 1 || w < 1) {
      throw new ImprintError(`${fn}: sample's batch, height and width must be positive, got ${desc(s)}`, 'SHAPE_MISMATCH');
    }
    return n;
  }

  #checkContext(fn: string, e: unknown, n: number): void {
    const d = this.config.crossAttentionDim;
    if (!(e instanceof Tensor)) throw invalidArgument(`${fn}: encoderHiddenStates must be a Tensor [${n}, tokens, ${d}], got ${describe(e)}`);
    if (e.disposed) throw new ImprintError(`${fn}: encoderHiddenStates has been disposed`, 'DISPOSED');
    this.#checkKind(fn, 'encoderHiddenStates', e);
    if (e.ndim !== 3 || e.shape[0] !== n || e.shape[1] < 1 || e.shape[2] !== d) {
      throw new ImprintError(`${fn}: encoderHiddenStates must be [${n}, tokens, ${d}] (sample's batch, cross_attention_dim ${d}), got ${desc(e)}`, 'SHAPE_MISMATCH');
    }
  }

  #checkKind(fn: string, what: string, t: Tensor): void {
    if (t.dtype !== this.dtype) {
      throw new ImprintError(`${fn}: ${what} is ${desc(t)} but the weights are ${this.dtype}; cast it`, 'DTYPE_MISMATCH');
    }
    if (t.device !== this.device) {
      throw new ImprintError(`${fn}: ${what} is on ${t.device} but the weights are on ${this.device}; move it`, 'DEVICE_MISMATCH');
    }
  }

  // The timesteps as a tensor of the weights' dtype on their device: [N] or [1].
  async #timesteps(fn: string, ts: unknown, n: number): Promise<{ tensor: Tensor; owned: boolean }> {
    if (ts instanceof Tensor) {
      if (ts.disposed) throw new ImprintError(`${fn}: timestep has been disposed`, 'DISPOSED');
      if (ts.ndim > 1 || (ts.ndim === 1 && ts.shape[0] !== n && ts.shape[0] !== 1)) {
        throw new ImprintError(`${fn}: timestep must be [${n}], [1] or a scalar tensor, got ${desc(ts)}`, 'SHAPE_MISMATCH');
      }
      if (ts.device !== this.device) {
        throw new ImprintError(`${fn}: timestep is on ${ts.device} but the weights are on ${this.device}; move it`, 'DEVICE_MISMATCH');
      }
      if (ts.dtype === this.dtype) return { tensor: ts, owned: false };
      return { tensor: await ts.cast(this.dtype), owned: true };  // e.g. i64 timesteps from a scheduler
    }
    const list = typeof ts === 'number' ? [ts] : ts;
    if (!Array.isArray(list) || (list.length !== n && list.length !== 1) || !list.every((v) => typeof v === 'number' && Number.isFinite(v))) {
      throw invalidArgument(`${fn}: timestep must be a finite number, ${n} finite numbers or a tensor, got ${describe(ts)}`);
    }
    let t: Tensor = tensor(Float32Array.from(list as number[]), { shape: [list.length], dtype: this.dtype });
    if (this.device !== 'cpu') {
      const moved = await t.to(this.device);
      t.dispose();
      t = moved;
    }
    return { tensor: t, owned: true };
  }
}
