// diffusers' UNet2DConditionModel (SD 1.x/2.x) run as one native graph
// (csrc/models/unet.h): predicts the noise in a latent sample at a timestep,
// conditioned on text-encoder hidden states.
import { ImprintError, invalidArgument } from '../errors.js';
import { runOp } from '../nn/run.js';
import { tensor } from '../creation.js';
import { Tensor } from '../tensor.js';
import { checkOptions, describe, type FloatDType } from '../validate.js';
import { parseUNetConfig, type UNetConfig } from './configs.js';
import { unetLayout } from './layout-unet.js';
import { describeTensor, sameShape, takeWeights } from './weights.js';

// As the native errors describe tensors: "f32[2, 4, 64, 64] on cpu".
const desc = describeTensor;

/**
 * Which UNet weights get gradients in forwardBackward: a preset over the
 * UNet's own weights, or a list of names, which may also name adapter
 * parameters as `${weight}#delta`, `${weight}#lora.a`, `${weight}#lora.b`.
 */
export type UNetTrainable = 'kv' | 'cross' | 'all' | 'none' | readonly string[];

/** forwardBackward / lossBackward options. */
export interface UNetBackwardOptions {
  /** Which weights (and adapter parameters, by name) get gradients; default 'kv'. */
  trainable?: UNetTrainable;
  adapters?: readonly UNetAdapter[];
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

/**
 * Adapters on one attention projection weight (attn1/attn2 to_q, to_k, to_v,
 * to_out.0.weight), e.g. 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'.
 * The graph runs with W_eff = (W + delta + scale·B·A) ⊙ (1 - mask):
 * delta has W's shape (Custom Diffusion), lora.a is [rank, in] and lora.b
 * [out, rank] (scale defaults to 1), mask is u8 with W's shape, 1 = shut
 * (Cones). Several entries for one weight merge if each kind appears once.
 */
export interface UNetAdapter {
  weight: string;
  delta?: Tensor;
  lora?: { a: Tensor; b: Tensor; scale?: number };
  mask?: Tensor;
}

// The native op's view of the adapters: the `adapters` records, the inputs
// after the weights, and each input's name (`${weight}#delta`, ...).
interface AdapterInputs {
  record: number[];
  inputs: Tensor[];
  names: string[];
}

const PROJECTION = /\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$/;

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
    options: { adapters?: readonly UNetAdapter[] } = {},
  ): Promise<Tensor<D>> {
    const fn = 'UNet2DConditionModel.forward';
    this.#weights.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${this.#names[i]}' has been disposed`, 'DISPOSED');
    });
    if (options === null || typeof options !== 'object') throw invalidArgument(`${fn}: options must be an object, got ${describe(options)}`);
    checkOptions(fn, options, ['adapters']);
    const ad = this.#adapters(fn, options.adapters);
    const N = this.#checkSample(fn, sample);
    this.#checkContext(fn, encoderHiddenStates, N);
    const t = await this.#timesteps(fn, timestep, N);
    try {
      const [out] = await runOp<D>('unet_forward', [sample, t.tensor, encoderHiddenStates, ...this.#weights, ...ad.inputs], {
        ...this.#attrs(),
        adapters: ad.record,
      });
      return out;
    } finally {
      if (t.owned) t.tensor.dispose();
    }
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
  ): Promise<{ loss?: Tensor<D>; out: Tensor<D>; dSample: Tensor<D>; dContext: Tensor<D>; grads: Map<string, Tensor<D>> }> {
    const c = this.config;
    this.#weights.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${this.#names[i]}' has been disposed`, 'DISPOSED');
    });
    if (options === null || typeof options !== 'object') throw invalidArgument(`${fn}: options must be an object, got ${describe(options)}`);
    checkOptions(fn, options, mseLoss ? ['trainable', 'adapters', 'checkpoint', 'detachStartToken', 'mask'] : ['trainable', 'adapters', 'checkpoint', 'detachStartToken']);
    const checkpoint = options.checkpoint ?? false;
    if (typeof checkpoint !== 'boolean') throw invalidArgument(`${fn}: checkpoint must be a boolean, got ${describe(checkpoint)}`);
    const detach = options.detachStartToken ?? false;
    if (typeof detach !== 'boolean') throw invalidArgument(`${fn}: detachStartToken must be a boolean, got ${describe(detach)}`);
    const ad = this.#adapters(fn, options.adapters);
    const indices = this.#trainable(fn, options.trainable ?? 'kv', ad.names);
    const paramNames = [...this.#names, ...ad.names];
    const N = this.#checkSample(fn, sample);
    this.#checkContext(fn, encoderHiddenStates, N);
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
      const inputs = [sample, t.tensor, encoderHiddenStates, dy, ...this.#weights, ...ad.inputs, ...(mask ? [mask] : [])];
      const [out, dSample, dContext, ...g] = await runOp<D>('unet_forward_backward', inputs, {
        ...this.#attrs(),
        trainable: indices,
        adapters: ad.record,
        checkpoint,
        mseLoss,
        lossMask: mask !== undefined,
        detachFirstToken: detach,
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

  // Checks `spec` (UNetAdapter[] or undefined) and lays it out for the native op.
  #adapters(fn: string, spec: unknown): AdapterInputs {
    const none: AdapterInputs = { record: [], inputs: [], names: [] };
    if (spec === undefined) return none;
    if (!Array.isArray(spec)) throw invalidArgument(`${fn}: adapters must be an array of UNetAdapter, got ${describe(spec)}`);
    const merged = new Map<number, { delta?: Tensor; lora?: { a: Tensor; b: Tensor; scale: number }; mask?: Tensor }>();
    spec.forEach((entry: unknown, k) => {
      const at = `adapters[${k}]`;
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw invalidArgument(`${fn}: ${at} must be an object { weight, delta?, lora?, mask? }, got ${describe(entry)}`);
      checkOptions(`${fn}: ${at}`, entry, ['weight', 'delta', 'lora', 'mask']);
      const e = entry as Partial<UNetAdapter>;
      if (typeof e.weight !== 'string') throw invalidArgument(`${fn}: ${at}.weight must be a weight name, got ${describe(e.weight)}`);
      const wi = this.#names.indexOf(e.weight);
      if (wi < 0) throw invalidArgument(`${fn}: ${at}.weight '${e.weight}' is not a weight of this UNet`);
      if (!PROJECTION.test(e.weight)) {
        throw invalidArgument(`${fn}: ${at}.weight '${e.weight}' is not an attention projection weight (attn1/attn2 to_q, to_k, to_v, to_out.0.weight); only those take adapters`);
      }
      if (e.delta === undefined && e.lora === undefined && e.mask === undefined) throw invalidArgument(`${fn}: ${at} ('${e.weight}') has no delta, lora or mask`);
      const W = this.#weights[wi];
      const who = `${at} ('${e.weight}', ${desc(W)})`;
      const slot = merged.get(wi) ?? {};
      const twice = (kind: string): ImprintError => invalidArgument(`${fn}: ${who} gives a second ${kind} for this weight; merge them into one`);
      const live = (what: string, t: unknown, dtype: string | null): Tensor => {
        if (!(t instanceof Tensor)) throw invalidArgument(`${fn}: ${who} ${what} must be a Tensor, got ${describe(t)}`);
        if (t.disposed) throw new ImprintError(`${fn}: ${who} ${what} has been disposed`, 'DISPOSED');
        if (t.device !== W.device) throw new ImprintError(`${fn}: ${who} ${what} is on ${t.device} but the weight is on ${W.device}; move it`, 'DEVICE_MISMATCH');
        if (dtype !== null && t.dtype !== dtype) throw new ImprintError(`${fn}: ${who} ${what} must be ${dtype}, got ${desc(t)}`, 'DTYPE_MISMATCH');
        return t;
      };
      if (e.delta !== undefined) {
        if (slot.delta) throw twice('delta');
        const d = live('delta', e.delta, W.dtype);
        if (!sameShape(d.shape, W.shape)) throw new ImprintError(`${fn}: ${who} delta must have the weight's shape [${W.shape.join(', ')}], got ${desc(d)}`, 'SHAPE_MISMATCH');
        slot.delta = d;
      }
      if (e.lora !== undefined) {
        if (slot.lora) throw twice('lora');
        const l = e.lora as unknown;
        if (l === null || typeof l !== 'object') throw invalidArgument(`${fn}: ${who} lora must be { a, b, scale? }, got ${describe(l)}`);
        checkOptions(`${fn}: ${who} lora`, l, ['a', 'b', 'scale']);
        const { a: la, b: lb, scale = 1 } = l as { a: unknown; b: unknown; scale?: unknown };
        const a = live('lora.a', la, W.dtype), b = live('lora.b', lb, W.dtype);
        const [out, inn] = W.shape;
        if (a.ndim !== 2 || a.shape[0] < 1 || a.shape[1] !== inn) throw new ImprintError(`${fn}: ${who} lora.a must be [rank, ${inn}] with rank >= 1, got ${desc(a)}`, 'SHAPE_MISMATCH');
        if (b.ndim !== 2 || b.shape[0] !== out || b.shape[1] < 1) throw new ImprintError(`${fn}: ${who} lora.b must be [${out}, rank], got ${desc(b)}`, 'SHAPE_MISMATCH');
        if (a.shape[0] !== b.shape[1]) throw new ImprintError(`${fn}: ${who} lora rank mismatch: a is ${desc(a)} (rank ${a.shape[0]}) but b is ${desc(b)} (rank ${b.shape[1]})`, 'SHAPE_MISMATCH');
        if (typeof scale !== 'number' || !Number.isFinite(scale)) throw invalidArgument(`${fn}: ${who} lora.scale must be a finite number, got ${describe(scale)}`);
        slot.lora = { a, b, scale };
      }
      if (e.mask !== undefined) {
        if (slot.mask) throw twice('mask');
        const m = live('mask', e.mask, 'u8');
        if (!sameShape(m.shape, W.shape)) throw new ImprintError(`${fn}: ${who} mask must have the weight's shape [${W.shape.join(', ')}], got ${desc(m)}`, 'SHAPE_MISMATCH');
        // 1 shuts a neuron, 0 leaves it; the native op computes 1 - mask, so other values would scale weights.
        if (m.device === 'cpu' && (m.dataSync() as Uint8Array).some((v) => v > 1)) throw invalidArgument(`${fn}: ${who} mask entries must be 0 (open) or 1 (shut)`);
        slot.mask = m;
      }
      merged.set(wi, slot);
    });
    const out: AdapterInputs = { record: [], inputs: [], names: [] };
    for (const [wi, a] of [...merged].sort((x, y) => x[0] - y[0])) {
      const n = this.#names[wi];
      if (a.delta) out.record.push(wi, 1), out.inputs.push(a.delta), out.names.push(`${n}#delta`);
      if (a.lora) out.record.push(wi, 2, a.lora.scale), out.inputs.push(a.lora.a, a.lora.b), out.names.push(`${n}#lora.a`, `${n}#lora.b`);
      if (a.mask) out.record.push(wi, 3), out.inputs.push(a.mask), out.names.push(`${n}#mask`);
    }
    return out;
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
