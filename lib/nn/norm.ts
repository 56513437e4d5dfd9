// Normalisation layers: group norm (the UNet's and VAE's GroupNorm) and layer
// norm over the last dimension (the transformers' LayerNorm), as
// torch.nn.functional.group_norm and layer_norm. The forward functions return
// the per-slice mean and rstd = 1/sqrt(var + eps) (biased variance, f32) that
// the backward functions take back.
import { invalidArgument } from '../errors.js';
import { Tensor } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, describe, type FloatDType } from '../validate.js';
import { runOp } from './run.js';

/** Statistics saved by a forward pass for its backward pass. */
export interface NormStats {
  /** Mean per normalised slice: [N, groups] for group norm, [rows] for layer norm. */
  mean: Tensor<'f32'>;
  /** 1/sqrt(var + eps) per slice, same shape as mean. */
  rstd: Tensor<'f32'>;
}

export interface NormOutput<D extends FloatDType = FloatDType> extends NormStats {
  y: Tensor<D>;
}

export interface NormGrads<D extends FloatDType = FloatDType> {
  dx: Tensor<D>;
  dweight?: Tensor<D>;
  dbias?: Tensor<D>;
}

export interface GroupNormOptions<D extends FloatDType = FloatDType> {
  /** Number of channel groups; must divide C. */
  groups: number;
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Per-channel scale [C] (default none: 1). */
  weight?: Tensor<D> | null;
  /** Per-channel shift [C] (default none: 0). */
  bias?: Tensor<D> | null;
}

export interface GroupNormBackwardOptions<D extends FloatDType = FloatDType> {
  /** The forward's groups. */
  groups: number;
  /** The forward's weight [C], if it had one. */
  weight?: Tensor<D> | null;
  /** Compute dweight (default: true when weight is given; without one, the gradient of a unit scale). */
  weightGrad?: boolean;
  /** Compute dbias (default: true when weight is given; without one, the gradient of a zero shift). */
  biasGrad?: boolean;
}

export interface LayerNormOptions<D extends FloatDType = FloatDType> {
  /** Added to the variance (default 1e-5). */
  eps?: number;
  /** Scale [D] (default none: 1). */
  weight?: Tensor<D> | null;
  /** Shift [D] (default none: 0). */
  bias?: Tensor<D> | null;
}

export interface LayerNormBackwardOptions<D extends FloatDType = FloatDType> {
  /** The forward's weight [D], if it had one. */
  weight?: Tensor<D> | null;
  /** Compute dweight (default: true when weight is given; without one, the gradient of a unit scale). */
  weightGrad?: boolean;
  /** Compute dbias (default: true when weight is given; without one, the gradient of a zero shift). */
  biasGrad?: boolean;
}

// groups is required; the native op checks that it is a positive integer dividing C.
function checkGroups(fn: string, groups: unknown): number {
  if (typeof groups !== 'number' || !Number.isSafeInteger(groups) || groups < 1) {
    throw invalidArgument(`${fn}: groups must be a positive integer, got ${describe(groups)}`);
  }
  return groups;
}

function checkEps(fn: string, eps: unknown): number {
  const value = checkNumber(fn, 'eps', eps, 1e-5);
  if (value < 0) throw invalidArgument(`${fn}: eps must be >= 0, got ${value}`);
  return value;
}

// weight or bias: a Tensor, or null/undefined for none.
function checkParam<D extends FloatDType>(fn: string, name: string, value: unknown): Tensor<D> | undefined {
  if (value == null) return undefined;
  if (!(value instanceof Tensor)) throw invalidArgument(`${fn}: ${name} must be a Tensor, got ${describe(value)}`);
  return value as Tensor<D>;
}

function checkSaved(fn: string, saved: unknown): NormStats {
  const s = saved as Partial<NormStats> | null | undefined;
  if (!(s?.mean instanceof Tensor) || !(s.rstd instanceof Tensor)) {
    throw invalidArgument(`${fn}: saved must be the forward's { mean, rstd } tensors, got ${describe(saved)}`);
  }
  return { mean: s.mean, rstd: s.rstd };
}

// Unpacks dx, then dweight and dbias in the order the op returns those asked for.
function grads<D extends FloatDType>(outputs: Tensor<D>[], weightGrad: boolean, biasGrad: boolean): NormGrads<D> {
  const [dx, ...rest] = outputs;
  return { dx, dweight: weightGrad ? rest.shift() : undefined, dbias: biasGrad ? rest.shift() : undefined };
}

/** Group norm of x [N, C, *spatial] over groups of C/groups channels and all positions. */
export async function groupNorm<D extends FloatDType>(x: Tensor<D>, options: GroupNormOptions<D>): Promise<NormOutput<D>> {
  const o = checkOptions('groupNorm', options ?? {}, ['groups', 'eps', 'weight', 'bias']);
  const groups = checkGroups('groupNorm', o.groups);
  const eps = checkEps('groupNorm', o.eps);
  const weight = checkParam('groupNorm', 'weight', o.weight);
  const bias = checkParam('groupNorm', 'bias', o.bias);
  const [y, mean, rstd] = await runOp('group_norm_forward', [x, weight, bias], { groups, eps });
  return { y: y as Tensor<D>, mean: mean as Tensor<'f32'>, rstd: rstd as Tensor<'f32'> };
}

export interface GroupNormSiluOptions<D extends FloatDType = FloatDType> extends GroupNormOptions<D> {
  /** Also return the norm's output y, which SiLU's backward needs (default true; false saves a pass in inference). */
  keepNorm?: boolean;
}

export interface GroupNormSiluOutput<D extends FloatDType = FloatDType> extends NormStats {
  /** silu(groupNorm(x)). */
  act: Tensor<D>;
  /** groupNorm(x), when keepNorm. */
  y?: Tensor<D>;
}

/**
 * silu(groupNorm(x)) in one pass, as every UNet and VAE resnet applies them:
 * bit-identical to groupNorm then silu, with one read and write of the
 * activation less (and two less without keepNorm).
 */
export async function groupNormSilu<D extends FloatDType>(x: Tensor<D>, options: GroupNormSiluOptions<D>): Promise<GroupNormSiluOutput<D>> {
  const o = checkOptions('groupNormSilu', options ?? {}, ['groups', 'eps', 'weight', 'bias', 'keepNorm']);
  const groups = checkGroups('groupNormSilu', o.groups);
  const eps = checkEps('groupNormSilu', o.eps);
  const weight = checkParam('groupNormSilu', 'weight', o.weight);
  const bias = checkParam('groupNormSilu', 'bias', o.bias);
  const keepNorm = checkBoolean('groupNormSilu', 'keepNorm', o.keepNorm, true);
  const out = await runOp('group_norm_silu_forward', [x, weight, bias], { groups, eps, keepNorm });
  const [act, ...rest] = out;
  const y = keepNorm ? rest.shift() : undefined;
  const [mean, rstd] = rest;
  return { act: act as Tensor<D>, ...(y === undefined ? {} : { y: y as Tensor<D> }), mean: mean as Tensor<'f32'>, rstd: rstd as Tensor<'f32'> };
}

/** Gradients of groupNorm() for the upstream gradient dy, from its input and saved statistics. */
export async function groupNormBackward<D extends FloatDType>(
  dy: Tensor<D>, x: Tensor<D>, saved: NormStats, options: GroupNormBackwardOptions<D>,
): Promise<NormGrads<D>> {
  const o = checkOptions('groupNormBackward', options ?? {}, ['groups', 'weight', 'weightGrad', 'biasGrad']);
  const groups = checkGroups('groupNormBackward', o.groups);
  const { mean, rstd } = checkSaved('groupNormBackward', saved);
  const weight = checkParam('groupNormBackward', 'weight', o.weight);
  const weightGrad = checkBoolean('groupNormBackward', 'weightGrad', o.weightGrad, weight !== undefined);
  const biasGrad = checkBoolean('groupNormBackward', 'biasGrad', o.biasGrad, weight !== undefined);
  const outputs = await runOp<D>('group_norm_backward', [dy, x, mean, rstd, weight], { groups, weightGrad, biasGrad });
  return grads(outputs, weightGrad, biasGrad);
}

/** Layer norm of x [..., D] over its last dimension. */
export async function layerNorm<D extends FloatDType>(x: Tensor<D>, options?: LayerNormOptions<D>): Promise<NormOutput<D>> {
  const o = checkOptions('layerNorm', options, ['eps', 'weight', 'bias']);
  const eps = checkEps('layerNorm', o.eps);
  const weight = checkParam('layerNorm', 'weight', o.weight);
  const bias = checkParam('layerNorm', 'bias', o.bias);
  const [y, mean, rstd] = await runOp('layer_norm_forward', [x, weight, bias], { eps });
  return { y: y as Tensor<D>, mean: mean as Tensor<'f32'>, rstd: rstd as Tensor<'f32'> };
}

/** Gradients of layerNorm() for the upstream gradient dy, from its input and saved statistics. */
export async function layerNormBackward<D extends FloatDType>(
  dy: Tensor<D>, x: Tensor<D>, saved: NormStats, options?: LayerNormBackwardOptions<D>,
): Promise<NormGrads<D>> {
  const o = checkOptions('layerNormBackward', options, ['weight', 'weightGrad', 'biasGrad']);
  const { mean, rstd } = checkSaved('layerNormBackward', saved);
  const weight = checkParam('layerNormBackward', 'weight', o.weight);
  const weightGrad = checkBoolean('layerNormBackward', 'weightGrad', o.weightGrad, weight !== undefined);
  const biasGrad = checkBoolean('layerNormBackward', 'biasGrad', o.biasGrad, weight !== undefined);
  const outputs = await runOp<D>('layer_norm_backward', [dy, x, mean, rstd, weight], { weightGrad, biasGrad });
  return grads(outputs, weightGrad, biasGrad);
}
