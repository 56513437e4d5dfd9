// The tuning encoder's network (DESIGN §1.3), forward and backward, llm.c
// style: what the backward needs is kept by the forward.
//   image ──ViT──► pooled [B, Hv] ───────────────────────────┐
//   UNet encoder feature i [B, C_i, h, w] ─ conv 3×3, GELU ─ mean ─► [B, c] ─┴─ concat ─► linear, GELU ─► h [B, hidden]
//   h ─ token head ─► offset [B, D]            v* = the class word's embedding + offset
//   h ─ LoRA heads ─► down_j [B, r, in_j], up_j [B, out_j, r] per chosen UNet projection j
// The token head and every up head start at zero, so an untrained encoder
// predicts the class word and no weight change. The UNet features are
// constants (the UNet is frozen); the ViT trains with the rest. The
// convolutions over the feature maps (spec.conv) are the paper's shared
// convolutional network in small; without them (files before it) each
// feature map is averaged straight into the linear layer.
import { full, randn, tensor, zeros } from '../../creation.js';
import { ImprintError, invalidArgument } from '../../errors.js';
import { parseClipVisionConfig, type ClipVisionConfig } from '../../models/configs.js';
import { ClipVisionModel } from '../../models/clip-vision.js';
import { clipVisionLayout } from '../../models/layout-clip-vision.js';
import { gelu, geluBackward, scale } from '../../nn/act.js';
import { concat, split } from '../../nn/concat.js';
import { conv2d, conv2dBackward } from '../../nn/conv.js';
import { linear, linearBackward } from '../../nn/linear.js';
import type { Tensor } from '../../tensor.js';
import { checkInt, checkNumberIn, describe, isPlainObject } from '../../validate.js';

/** A UNet projection the hypernetwork predicts a LoRA for, with its shape [out, in]. */
export interface LoraTarget {
  weight: string;
  in: number;
  out: number;
}

export interface TuningEncoderSpec {
  /** The ViT backbone's CLIPVisionConfig (config.json fields). */
  vision: Record<string, unknown>;
  /** Channels of each UNet encoder feature (UNet2DConditionModel.encoderFeatures), in order. */
  featureChannels: number[];
  /** Width of the trunk. */
  hidden: number;
  /** The text encoder's hidden size (v*'s width). */
  tokenDim: number;
  rank: number;
  targets: LoraTarget[];
  /** Output channels of the 3×3 convolution over each UNet feature map (absent: features are averaged unconvolved). */
  conv?: number;
  /** The constant s of ΔW = s·up·down (default 1): larger makes the heads' outputs move the weights further. */
  loraScale?: number;
}

export interface EncoderPrediction {
  /** v* − the class word's embedding, [B, tokenDim]. */
  offset: Tensor<'f32'>;
  /** Per target: down [B, rank, in] and up [B, out, rank]. */
  down: Tensor<'f32'>[];
  up: Tensor<'f32'>[];
  /** What backward needs; free with disposePrediction. */
  cache: { pixels: Tensor<'f32'>; x: Tensor<'f32'>; pre: Tensor<'f32'>; h: Tensor<'f32'>; features: readonly Tensor[]; convPre: Tensor<'f32'>[] };
}

/** The parameter names and shapes of a spec, in a fixed order (ViT first). */
export function tuningEncoderLayout(spec: TuningEncoderSpec): Record<string, number[]> {
  const v = parseClipVisionConfig(spec.vision, 'tuningEncoderLayout');
  const width = v.hiddenSize + (spec.conv ? spec.conv * spec.featureChannels.length : spec.featureChannels.reduce((a, b) => a + b, 0));
  const out: Record<string, number[]> = { ...clipVisionLayout(v) };
  if (spec.conv) {
    spec.featureChannels.forEach((c, i) => {
      out[`conv.${i}.weight`] = [spec.conv!, c, 3, 3];
      out[`conv.${i}.bias`] = [spec.conv!];
    });
  }
  out['trunk.weight'] = [spec.hidden, width];
  out['trunk.bias'] = [spec.hidden];
  out['token_head.weight'] = [spec.tokenDim, spec.hidden];
  out['token_head.bias'] = [spec.tokenDim];
  spec.targets.forEach((t, j) => {
    out[`lora.${j}.down.weight`] = [spec.rank * t.in, spec.hidden];
    out[`lora.${j}.down.bias`] = [spec.rank * t.in];
    out[`lora.${j}.up.weight`] = [t.out * spec.rank, spec.hidden];
    out[`lora.${j}.up.bias`] = [t.out * spec.rank];
  });
  return out;
}

function checkSpec(fn: string, spec: unknown): TuningEncoderSpec {
  if (!isPlainObject(spec)) throw invalidArgument(`${fn}: spec must be { vision, featureChannels, hidden, tokenDim, rank, targets }, got ${describe(spec)}`);
  const s = spec as unknown as TuningEncoderSpec;
  parseClipVisionConfig(s.vision, `${fn}: spec.vision`);
  if (!Array.isArray(s.featureChannels) || !s.featureChannels.every((c) => Number.isInteger(c) && c > 0)) throw invalidArgument(`${fn}: spec.featureChannels must list positive integers, got ${describe(s.featureChannels)}`);
  checkInt(fn, 'spec.hidden', s.hidden, 1, 1 << 16);
  checkInt(fn, 'spec.tokenDim', s.tokenDim, 1, 1 << 16);
  checkInt(fn, 'spec.rank', s.rank, 1, 1024);
  if (s.conv !== undefined) checkInt(fn, 'spec.conv', s.conv, 1, 1 << 14);
  if (s.loraScale !== undefined) checkNumberIn(fn, 'spec.loraScale', s.loraScale, 1e-6, 1e6);
  if (!Array.isArray(s.targets) || s.targets.length === 0) throw invalidArgument(`${fn}: spec.targets must list at least one UNet projection { weight, in, out }`);
  s.targets.forEach((t, j) => {
    if (!isPlainObject(t) || typeof t.weight !== 'string' || !Number.isInteger(t.in) || t.in < 1 || !Number.isInteger(t.out) || t.out < 1) {
      throw invalidArgument(`${fn}: spec.targets[${j}] must be { weight, in, out }, got ${describe(t)}`);
    }
  });
  return s;
}

export class TuningEncoder {
  readonly spec: TuningEncoderSpec;
  readonly vision: ClipVisionConfig;
  /** Every parameter by name (tuningEncoderLayout's order): the optimizer updates this map in place. */
  readonly params: Map<string, Tensor<'f32'>>;

  private constructor(spec: TuningEncoderSpec, params: Map<string, Tensor<'f32'>>) {
    this.spec = spec;
    this.vision = parseClipVisionConfig(spec.vision);
    this.params = params;
  }

  /**
   * A new encoder: the ViT as transformers initialises CLIP (N(0, 0.02)
   * weights, unit norms, zero biases), the trunk and down heads N(0, 1/√fan_in),
   * the token head and up heads zero (fan_in of a convolution: C·3·3).
   */
  static async create(spec: TuningEncoderSpec, options: { seed?: number } = {}): Promise<TuningEncoder> {
    const fn = 'TuningEncoder.create';
    const s = checkSpec(fn, spec);
    const seed = checkInt(fn, 'seed', options.seed, 0, 2 ** 31, 0);
    const params = new Map<string, Tensor<'f32'>>();
    try {
      let k = 0;
      for (const [name, shape] of Object.entries(tuningEncoderLayout(s))) {
        k++;
        const leaf = name.split('.').slice(-1)[0];
        const isNorm = /(layer_norm\d|layrnorm|layernorm)\.weight$/.test(name);
        let t: Tensor<'f32'>;
        if (isNorm) t = await full(shape, 1);
        else if (leaf === 'bias' || name.startsWith('token_head.') || /\.up\.weight$/.test(name)) t = await zeros(shape);
        else if (name.startsWith('vision_model.')) t = await randn(shape, { seed: seed * 1009 + k, std: 0.02 });
        else t = await randn(shape, { seed: seed * 1009 + k, std: 1 / Math.sqrt(shape.slice(1).reduce((a, b) => a * b, 1)) });
        params.set(name, t);
      }
    } catch (e) {
      for (const t of params.values()) t.dispose();
      throw e;
    }
    return new TuningEncoder(s, params);
  }

  /** An encoder over `params` (named and shaped as tuningEncoderLayout, f32 on the CPU); the tensors are used, not copied. */
  static fromParams(spec: TuningEncoderSpec, params: Map<string, Tensor>): TuningEncoder {
    const fn = 'TuningEncoder.fromParams';
    const s = checkSpec(fn, spec);
    const out = new Map<string, Tensor<'f32'>>();
    for (const [name, shape] of Object.entries(tuningEncoderLayout(s))) {
      const t = params.get(name);
      if (!t) throw invalidArgument(`${fn}: parameter '${name}' is missing`);
      if (t.dtype !== 'f32' || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
        throw new ImprintError(`${fn}: parameter '${name}' must be f32 [${shape.join(', ')}], got ${t.dtype}[${t.shape.join(', ')}]`, 'SHAPE_MISMATCH');
      }
      out.set(name, t as Tensor<'f32'>);
    }
    return new TuningEncoder(s, out);
  }

  #vit(): ClipVisionModel {
    const vit = new Map([...this.params].filter(([n]) => n.startsWith('vision_model.')));
    return ClipVisionModel.fromWeights(this.spec.vision, vit as Map<string, Tensor>);
  }

  /**
   * Predicts from pixel values [B, C, side, side] (the ViT's input) and the
   * UNet encoder features of the noisy sample (constants).
   */
  async forward(pixels: Tensor<'f32'>, features: readonly Tensor[]): Promise<EncoderPrediction> {
    const fn = 'TuningEncoder.forward';
    const s = this.spec;
    if (!Array.isArray(features) || features.length !== s.featureChannels.length) throw invalidArgument(`${fn}: features must be the ${s.featureChannels.length} UNet encoder features, got ${describe(features)}`);
    const B = pixels.shape[0];
    features.forEach((f, i) => {
      if (f.ndim !== 4 || f.shape[0] !== B || f.shape[1] !== s.featureChannels[i]) {
        throw new ImprintError(`${fn}: features[${i}] must be [${B}, ${s.featureChannels[i]}, h, w], got ${f.dtype}[${f.shape.join(', ')}]`, 'SHAPE_MISMATCH');
      }
    });
    const temps: Tensor[] = [];
    try {
      const { pooled, lastHiddenState } = await this.#vit().forward(pixels);
      temps.push(pooled, lastHiddenState);
      const p = (n: string) => this.params.get(n)!;
      const means: Tensor<'f32'>[] = [], convPre: Tensor<'f32'>[] = [];
      for (const [i, f] of features.entries()) {
        let map = f as Tensor<'f32'>;
        if (s.conv) {
          const c = await conv2d(map, p(`conv.${i}.weight`), p(`conv.${i}.bias`), { padding: 1 });
          convPre.push(c);
          map = await gelu(c);
          temps.push(map);
        }
        const summed = (await map.sum({ dim: [2, 3] })) as Tensor<'f32'>;
        temps.push(summed);
        means.push(await scale(summed, 1 / (f.shape[2] * f.shape[3])));
        temps.push(means[means.length - 1]);
      }
      const x = await concat([pooled as Tensor<'f32'>, ...means], { dim: 1 });
      const pre = await linear(x, p('trunk.weight'), p('trunk.bias'));
      const h = await gelu(pre);
      const offset = await linear(h, p('token_head.weight'), p('token_head.bias'));
      const down: Tensor<'f32'>[] = [], up: Tensor<'f32'>[] = [];
      for (const [j, t] of s.targets.entries()) {
        down.push((await linear(h, p(`lora.${j}.down.weight`), p(`lora.${j}.down.bias`))).reshape([B, s.rank, t.in]));
        up.push((await linear(h, p(`lora.${j}.up.weight`), p(`lora.${j}.up.bias`))).reshape([B, t.out, s.rank]));
      }
      return { offset, down, up, cache: { pixels, x, pre, h, features, convPre } };
    } finally {
      for (const t of temps) if (!t.disposed) t.dispose();
    }
  }

  /**
   * The gradients of every parameter for the gradients of the prediction
   * (dOffset [B, tokenDim]; per target dDown and dUp, or none): a map by
   * name, tuningEncoderLayout's order. Frees nothing of the prediction.
   */
  async backward(pred: EncoderPrediction, d: { dOffset?: Tensor<'f32'>; dDown?: (Tensor<'f32'> | undefined)[]; dUp?: (Tensor<'f32'> | undefined)[] }): Promise<Map<string, Tensor<'f32'>>> {
    const s = this.spec;
    const { h, pre, x, pixels, features, convPre } = pred.cache;
    const B = h.shape[0];
    const grads = new Map<string, Tensor<'f32'>>();
    const temps: Tensor[] = [];
    const p = (n: string) => this.params.get(n)!;
    let dh: Tensor<'f32'> | undefined;
    const head = async (dy: Tensor<'f32'> | undefined, name: string, width: number): Promise<void> => {
      if (!dy) {
        grads.set(`${name}.weight`, await zeros(p(`${name}.weight`).shape));
        grads.set(`${name}.bias`, await zeros([width]));
        return;
      }
      const g = await linearBackward(dy.reshape([B, width]), h, p(`${name}.weight`), { biasGrad: true });
      grads.set(`${name}.weight`, g.dweight!), grads.set(`${name}.bias`, g.dbias!);
      if (!dh) dh = g.dx;
      else {
        const sum = await dh.add(g.dx);
        temps.push(dh, g.dx);
        dh = sum;
      }
    };
    try {
      await head(d.dOffset, 'token_head', s.tokenDim);
      for (const [j, t] of s.targets.entries()) {
        await head(d.dDown?.[j], `lora.${j}.down`, s.rank * t.in);
        await head(d.dUp?.[j], `lora.${j}.up`, t.out * s.rank);
      }
      const dPre = dh ? await geluBackward(dh, pre) : await zeros(pre.shape);
      if (dh) temps.push(dh);
      temps.push(dPre);
      const trunk = await linearBackward(dPre, x, p('trunk.weight'), { biasGrad: true });
      grads.set('trunk.weight', trunk.dweight!), grads.set('trunk.bias', trunk.dbias!);
      const [dPooled, ...rest] = await split(trunk.dx, [this.vision.hiddenSize, ...(s.conv ? s.featureChannels.map(() => s.conv!) : s.featureChannels)], { dim: 1 });
      temps.push(trunk.dx, ...rest);
      // Through each convolution: the mean spreads dMean/(h·w) over the map, then GELU and the conv (its weights only: the features are constants).
      if (s.conv) {
        for (const [i, dMean] of rest.entries()) {
          const [B_, c, hh, ww] = convPre[i].shape;
          const dm = (await dMean.data()) as Float32Array, spread = new Float32Array(B_ * c * hh * ww);
          for (let k = 0; k < B_ * c; k++) spread.fill(dm[k] / (hh * ww), k * hh * ww, (k + 1) * hh * ww);
          const dAct = tensor(spread, { shape: convPre[i].shape });
          temps.push(dAct);
          const dc = await geluBackward(dAct, convPre[i]);
          temps.push(dc);
          // The features are constants: no dx.
          const g = await conv2dBackward(dc, features[i] as Tensor<'f32'>, p(`conv.${i}.weight`), { padding: 1, inputGrad: false, biasGrad: true });
          grads.set(`conv.${i}.weight`, g.dweight!), grads.set(`conv.${i}.bias`, g.dbias!);
        }
      }
      const vit = await this.#vit().forwardBackward(pixels, { dPooled, trainable: 'all' });
      temps.push(dPooled, vit.pooled, vit.lastHiddenState);
      const ordered = new Map<string, Tensor<'f32'>>();
      for (const name of this.params.keys()) ordered.set(name, (vit.grads.get(name) ?? grads.get(name)) as Tensor<'f32'>);
      return ordered;
    } catch (e) {
      for (const g of grads.values()) if (!g.disposed) g.dispose();
      throw e;
    } finally {
      for (const t of temps) if (!t.disposed) t.dispose();
    }
  }

  dispose(): void {
    for (const t of this.params.values()) if (!t.disposed) t.dispose();
  }
}

/** Frees a prediction's outputs and cache (not the pixels, which are the caller's). */
export function disposePrediction(pred: EncoderPrediction): void {
  for (const t of [pred.offset, ...pred.down, ...pred.up, pred.cache.x, pred.cache.pre, pred.cache.h, ...pred.cache.convPre]) if (!t.disposed) t.dispose();
}
