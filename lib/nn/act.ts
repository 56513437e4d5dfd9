// Activations: SiLU, GELU, quick-GELU, GEGLU, softmax and scale, forward and
// backward, as torch.nn.functional computes them. Backward functions take the
// upstream gradient dy first, then what the forward needs.
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkOptions, describe, type FloatDType } from '../validate.js';
import { runOp } from './run.js';

async function one<D extends FloatDType>(name: string, inputs: Tensor<D>[], attrs = {}): Promise<Tensor<D>> {
  const [out] = await runOp<D>(name, inputs, attrs);
  return out;
}

/** SiLU (swish): x·σ(x), as F.silu. */
export async function silu<D extends FloatDType>(x: Tensor<D>): Promise<Tensor<D>> {
  return one('silu_forward', [x]);
}

/** Gradient of silu() at x for the upstream gradient dy. */
export async function siluBackward<D extends FloatDType>(dy: Tensor<D>, x: Tensor<D>): Promise<Tensor<D>> {
  return one('silu_backward', [dy, x]);
}

/** GELU, exact form: 0.5·x·(1 + erf(x/√2)), as F.gelu (approximate='none'). */
export async function gelu<D extends FloatDType>(x: Tensor<D>): Promise<Tensor<D>> {
  return one('gelu_forward', [x]);
}

/** Gradient of gelu() at x for the upstream gradient dy. */
export async function geluBackward<D extends FloatDType>(dy: Tensor<D>, x: Tensor<D>): Promise<Tensor<D>> {
  return one('gelu_backward', [dy, x]);
}

/** CLIP's quick GELU: x·σ(1.702·x). */
export async function quickGelu<D extends FloatDType>(x: Tensor<D>): Promise<Tensor<D>> {
  return one('quick_gelu_forward', [x]);
}

/** Gradient of quickGelu() at x for the upstream gradient dy. */
export async function quickGeluBackward<D extends FloatDType>(dy: Tensor<D>, x: Tensor<D>): Promise<Tensor<D>> {
  return one('quick_gelu_backward', [dy, x]);
}

/**
 * GEGLU as in diffusers: x [..., 2F] splits into value = x[..., :F] and
 * gate = x[..., F:]; returns value·gelu(gate) [..., F].
 */
export async function geglu<D extends FloatDType>(x: Tensor<D>): Promise<Tensor<D>> {
  return one('geglu_forward', [x]);
}

/** Gradient of geglu() for dy [..., F]: dx [..., 2F] (value half, then gate half). */
export async function gegluBackward<D extends FloatDType>(dy: Tensor<D>, x: Tensor<D>): Promise<Tensor<D>> {
  return one('geglu_backward', [dy, x]);
}

export interface SoftmaxOptions {
  /** The axis to normalise over; negative counts from the end (default -1). */
  dim?: number;
}

function softmaxDim(fn: string, options: SoftmaxOptions | undefined): number {
  const o = checkOptions(fn, options, ['dim']);
  if (o.dim === undefined) return -1;
  if (!Number.isSafeInteger(o.dim)) throw invalidArgument(`${fn}: dim must be an integer, got ${describe(o.dim)}`);
  return o.dim as number;
}

/**
 * Softmax along `dim` (default the last), as F.softmax: numerically stable
 * (the row maximum is subtracted). A row that is all -inf, or holds +inf or
 * NaN, comes out NaN, as in PyTorch.
 */
export async function softmax<D extends FloatDType>(x: Tensor<D>, options?: SoftmaxOptions): Promise<Tensor<D>> {
  return one('softmax_forward', [x], { dim: softmaxDim('softmax', options) });
}

/** Gradient of softmax() from its output y and the upstream gradient dy: y·(dy − Σ dy·y). */
export async function softmaxBackward<D extends FloatDType>(dy: Tensor<D>, y: Tensor<D>, options?: SoftmaxOptions): Promise<Tensor<D>> {
  return one('softmax_backward', [dy, y], { dim: softmaxDim('softmaxBackward', options) });
}

/**
 * x·factor. Its backward is the same op: dx = scale(dy, factor), so there is
 * no scaleBackward.
 */
export async function scale<D extends FloatDType>(x: Tensor<D>, factor: number): Promise<Tensor<D>> {
  if (typeof factor !== 'number' || !Number.isFinite(factor)) {
    throw invalidArgument(`scale: factor must be a finite number, got ${describe(factor)}`);
  }
  return one('scale_forward', [x], { factor });
}
