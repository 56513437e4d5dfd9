// Fused scaled-dot-product attention, o = softmax(q·kᵀ·scale + mask)·v, as
// torch.nn.functional.scaled_dot_product_attention, without building the
// [queries, keys] score matrix.
import { invalidArgument } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { checkBoolean, checkNumber, checkOptions, describe, isPlainObject, type FloatDType } from '../validate.js';
import { runOp } from './run.js';

export interface AttentionOptions {
  /** Multiplies q·kᵀ (default 1/√head_dim). */
  scale?: number;
  /**
   * Query i sees only keys j ≤ i + (keys − queries): the usual causal mask
   * when queries = keys, aligned to the last key otherwise (default false).
   * Queries that see no key get o = 0, lse = -Infinity and no gradient.
   */
  causal?: boolean;
  /** K/V adapters applied inside the kernel as it loads K and V (never written out); see KvAdapter. */
  kv?: KvAdapter;
}

/** A LoRA on a K or V projection: u = context·downᵀ [batch, keys, rank], up [heads·head_dim, rank]. */
export interface KvLora<D extends FloatDType = FloatDType> {
  u: Tensor<D>;
  up: Tensor<D>;
  /** Multiplies u·upᵀ (default 1). */
  scale?: number;
}

/**
 * K_eff = k + kDelta + scale·u·upᵀ (per head), V_eff likewise: a delta K/V
 * (Custom Diffusion's context·ΔWᵀ beside a cached base K/V, [batch, heads,
 * keys, dim]) and/or a LoRA. A replacement K/V is simply passed as k or v.
 */
export interface KvAdapter<D extends FloatDType = FloatDType> {
  kDelta?: Tensor<D>;
  vDelta?: Tensor<D>;
  kLora?: KvLora<D>;
  vLora?: KvLora<D>;
}

export interface AttentionOutputs<D extends FloatDType = FloatDType> {
  /** [batch, heads, queries, value_dim] */
  o: Tensor<D>;
  /** [batch, heads, queries], f32: log Σ_j exp(scale·q·k_j) per query, kept for attentionBackward. */
  lse: Tensor<'f32'>;
}

export interface AttentionGrads<D extends FloatDType = FloatDType> {
  dq: Tensor<D>;
  /** With K/V adapters: the gradient of K_eff, which is also kDelta's. */
  dk: Tensor<D>;
  dv: Tensor<D>;
  /** With options.kv.kLora: the gradients of u and up. */
  dkLora?: { du: Tensor<D>; dup: Tensor<D> };
  dvLora?: { du: Tensor<D>; dup: Tensor<D> };
}

const OPTION_NAMES = ['scale', 'causal', 'kv'] as const;

interface AttentionCall {
  attrs: { scale?: number; causal: boolean; kScale: number; vScale: number };
  /** The adapter inputs in the op's order: kDelta, vDelta, kU, kUp, vU, vUp. */
  adapters: (Tensor | undefined)[];
  kLora: boolean;
  vLora: boolean;
}

function checkKvLora(fn: string, name: string, value: unknown): { u?: Tensor; up?: Tensor; scale: number } {
  if (value === undefined) return { scale: 1 };
  const o = checkOptions(`${fn}: kv.${name}`, value, ['u', 'up', 'scale']);
  if (o.u === undefined || o.up === undefined) throw invalidArgument(`${fn}: kv.${name} needs both u and up`);
  return { u: o.u as Tensor, up: o.up as Tensor, scale: checkNumber(fn, `kv.${name}.scale`, o.scale, 1) };
}

function attentionCall(fn: string, options: AttentionOptions | undefined): AttentionCall {
  const o = checkOptions(fn, options, OPTION_NAMES);
  // Left out, the native op defaults scale from head_dim.
  const scale = o.scale === undefined ? undefined : checkNumber(fn, 'scale', o.scale, 0);
  const kv = o.kv === undefined ? {} : checkOptions(`${fn}: kv`, o.kv, ['kDelta', 'vDelta', 'kLora', 'vLora']);
  const kLora = checkKvLora(fn, 'kLora', kv.kLora), vLora = checkKvLora(fn, 'vLora', kv.vLora);
  return {
    attrs: { scale, causal: checkBoolean(fn, 'causal', o.causal, false), kScale: kLora.scale, vScale: vLora.scale },
    adapters: [kv.kDelta as Tensor | undefined, kv.vDelta as Tensor | undefined, kLora.u, kLora.up, vLora.u, vLora.up],
    kLora: kLora.u !== undefined,
    vLora: vLora.u !== undefined,
  };
}

/** q [batch, heads, queries, head_dim], k [batch, heads, keys, head_dim], v [batch, heads, keys, value_dim]. */
export async function attention<D extends FloatDType>(q: Tensor<D>, k: Tensor<D>, v: Tensor<D>, options?: AttentionOptions): Promise<AttentionOutputs<D>> {
  const call = attentionCall('attention', options);
  const [o, lse] = await runOp('attention_forward', [q, k, v, ...call.adapters], call.attrs);
  return { o: o as Tensor<D>, lse: lse as Tensor<'f32'> };
}

/** Gradients of attention() for the upstream gradient dO [batch, heads, queries, value_dim]; `saved` is what attention() returned. */
export async function attentionBackward<D extends FloatDType>(
  dO: Tensor<D>, q: Tensor<D>, k: Tensor<D>, v: Tensor<D>, saved: AttentionOutputs<D>, options?: AttentionOptions,
): Promise<AttentionGrads<D>> {
  const call = attentionCall('attentionBackward', options);
  if (!isPlainObject(saved)) {
    throw invalidArgument(`attentionBackward: saved must be the { o, lse } that attention() returned, got ${describe(saved)}`);
  }
  const [dq, dk, dv, ...rest] = await runOp<D>('attention_backward', [dO, q, k, v, saved.o, saved.lse, ...call.adapters], call.attrs);
  const dkLora = call.kLora ? { du: rest.shift()!, dup: rest.shift()! } : undefined;
  const dvLora = call.vLora ? { du: rest.shift()!, dup: rest.shift()! } : undefined;
  return { dq, dk, dv, ...(dkLora && { dkLora }), ...(dvLora && { dvLora }) };
}
