// The Stable Diffusion VAE (diffusers' AutoencoderKL) run as two native graphs
// (csrc/models/vae.h): encode an image to the latent distribution's mean and
// log-variance, decode a latent to an image. The scaling factor is not applied
// here: pipelines multiply latents by it after encoding and divide before decoding.
import { ImprintError, invalidArgument } from '../errors.js';
import { runOp } from '../nn/run.js';
import { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';
import { parseVaeConfig, type VaeConfig } from './configs.js';
import { vaeLayout } from './layout-vae.js';
import { describeTensor, takeWeights } from './weights.js';

export interface VaeLatentDistribution<D extends FloatDType = FloatDType> {
  /** [N, latent_channels, H/f, W/f]: the latent's mean (unscaled). */
  mean: Tensor<D>;
  /** [N, latent_channels, H/f, W/f]: its log-variance, clamped to [-30, 20]. */
  logvar: Tensor<D>;
}

// As the native errors describe tensors: "f32[2, 3] on cpu".
const desc = describeTensor;

// The native ops take the layout's names in its own order (csrc/models/vae_op.cc).
function encoderOrder(layout: Record<string, number[]>): string[] {
  return [...Object.keys(layout).filter((k) => k.startsWith('encoder.')), 'quant_conv.weight', 'quant_conv.bias'];
}
function decoderOrder(layout: Record<string, number[]>): string[] {
  return ['post_quant_conv.weight', 'post_quant_conv.bias', ...Object.keys(layout).filter((k) => k.startsWith('decoder.'))];
}

export class AutoencoderKL<D extends FloatDType = FloatDType> {
  readonly config: VaeConfig;
  /** Latents are multiplied by this after encoding (and divided before decoding) by pipelines. */
  readonly scalingFactor: number;
  /** Spatial downsampling between image and latent: 2^(blocks − 1). */
  readonly factor: number;
  readonly #encoder: Tensor<D>[];
  readonly #decoder: Tensor<D>[];
  readonly #encoderNames: string[];
  readonly #decoderNames: string[];

  private constructor(config: VaeConfig, enc: Tensor<D>[], encNames: string[], dec: Tensor<D>[], decNames: string[]) {
    this.config = config;
    this.scalingFactor = config.scalingFactor;
    this.factor = 2 ** (config.blockOutChannels.length - 1);
    this.#encoder = enc;
    this.#decoder = dec;
    this.#encoderNames = encNames;
    this.#decoderNames = decNames;
  }

  /**
   * A VAE over `weights` named as diffusers' AutoencoderKL state dict
   * (encoder.conv_in.weight, ...), e.g. from
   * loadSafetensors(vae/diffusion_pytorch_model.safetensors). Every weight is
   * checked against `config` (vae/config.json) for name, shape, dtype and
   * device; other entries are ignored. The tensors are used, not copied: keep
   * them undisposed while encoding or decoding.
   */
  static fromWeights(config: unknown, weights: Map<string, Tensor>): AutoencoderKL {
    const fn = 'AutoencoderKL.fromWeights';
    const c = parseVaeConfig(config, fn);
    const layout = vaeLayout(c);
    const take = (names: string[]): Tensor<FloatDType>[] => takeWeights(fn, weights, names, layout, 'encoder.conv_in.weight');
    const encNames = encoderOrder(layout);
    const decNames = decoderOrder(layout);
    const enc = take(encNames);
    const dec = take(decNames);
    return new AutoencoderKL(c, enc, encNames, dec, decNames);
  }

  /** The weights' dtype and device. */
  get dtype(): D {
    return this.#encoder[0].dtype;
  }

  get device(): string {
    return this.#encoder[0].device;
  }

  /**
   * Encodes images [N, in_channels, H, W] (values in [-1, 1]; H and W
   * multiples of `factor`) to the latent distribution. Sample with
   * mean + exp(logvar / 2)·ε, or use the mean, then multiply by scalingFactor.
   */
  async encode(image: Tensor): Promise<VaeLatentDistribution<D>> {
    const fn = 'AutoencoderKL.encode';
    this.#checkLive(fn, this.#encoder, this.#encoderNames);
    this.#checkSample(fn, 'image', image, this.config.inChannels, this.factor);
    const [mean, logvar] = await runOp<D>('vae_encode', [image, ...this.#encoder], this.#attrs());
    return { mean, logvar };
  }

  /** Decodes latents [N, latent_channels, h, w] (already divided by scalingFactor) to images [N, out_channels, h·f, w·f]. */
  async decode(latent: Tensor): Promise<Tensor<D>> {
    const fn = 'AutoencoderKL.decode';
    this.#checkLive(fn, this.#decoder, this.#decoderNames);
    this.#checkSample(fn, 'latent', latent, this.config.latentChannels, 1);
    const [image] = await runOp<D>('vae_decode', [latent, ...this.#decoder], this.#attrs());
    return image;
  }

  #attrs(): Record<string, number | number[]> {
    const c = this.config;
    return {
      blockOutChannels: c.blockOutChannels, layersPerBlock: c.layersPerBlock, latentChannels: c.latentChannels,
      inChannels: c.inChannels, outChannels: c.outChannels, groups: c.normNumGroups, eps: 1e-6,
    };
  }

  // The weights are shared with the caller's Map, so one may have been disposed since.
  #checkLive(fn: string, list: Tensor[], names: string[]): void {
    list.forEach((w, i) => {
      if (w.disposed) throw new ImprintError(`${fn}: weight '${names[i]}' has been disposed`, 'DISPOSED');
    });
  }

  #checkSample(fn: string, name: string, x: unknown, channels: number, multiple: number): void {
    if (!(x instanceof Tensor)) throw invalidArgument(`${fn}: ${name} must be a Tensor, got ${describe(x)}`);
    if (x.disposed) throw new ImprintError(`${fn}: ${name} has been disposed`, 'DISPOSED');
    if (x.ndim !== 4) throw new ImprintError(`${fn}: ${name} must be [N, ${channels}, H, W], got ${desc(x)}`, 'SHAPE_MISMATCH');
    if (x.dtype !== this.dtype) {
      throw new ImprintError(`${fn}: ${name} is ${x.dtype} but the weights are ${this.dtype}; cast it`, 'DTYPE_MISMATCH');
    }
    if (x.device !== this.device) {
      throw new ImprintError(`${fn}: ${name} is on ${x.device} but the weights are on ${this.device}; move it`, 'DEVICE_MISMATCH');
    }
    if (x.shape[1] !== channels) {
      throw new ImprintError(`${fn}: ${name} must have ${channels} channels (dim 1), got ${desc(x)}`, 'SHAPE_MISMATCH');
    }
    const [n, , h, w] = x.shape;
    if (n < 1 || h < 1 || w < 1 || h % multiple !== 0 || w % multiple !== 0) {
      throw new ImprintError(
        `${fn}: ${name}'s batch, height and width must be positive${multiple > 1 ? ` and H, W multiples of ${multiple} (the VAE's downsampling factor)` : ''}, got ${desc(x)}`,
        'SHAPE_MISMATCH',
      );
    }
  }
}
