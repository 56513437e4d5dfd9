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
}

export interface AttentionOutputs<D extends FloatDType = FloatDType> {
  /** [batch, heads, queries, value_dim] */
  o: Tensor<D>;
  /** [batch, heads, queries], f32: log Σ_j exp(scale·q·k_j) per query, kept for attentionBackward. */
  lse: Tensor<'f32'>;
}

export interface AttentionGrads<D extends FloatDType = FloatDType> {
  dq: Tensor<D>;
  dk: Tensor<D>;
  dv: Tensor<D>;
}

const OPTION_NAMES = ['scale', 'causal'] as const;

function attentionAttrs(fn: string, options: AttentionOptions | undefined): { scale?: number; causal: boolean } {
  const o = checkOptions(fn, options, OPTION_NAMES);
  // Left out, the native op defaults scale from head_dim.
  const scale = o.scale === undefined ? undefined : checkNumber(fn, 'scale', o.scale, 0);
  return { scale, causal: checkBoolean(fn, 'causal', o.causal, false) };
}

/** q [batch, heads, queries, head_dim], k [batch, heads, keys, head_dim], v [batch, heads, keys, value_dim]. */
export async function attention<D extends FloatDType>(q: Tensor<D>, k: Tensor<D>, v: Tensor<D>, options?: AttentionOptions): Promise<AttentionOutputs<D>> {
  const [o, lse] = await runOp('attention_forward', [q, k, v], attentionAttrs('attention', options));
  return { o: o as Tensor<D>, lse: lse as Tensor<'f32'> };
}

/** Gradients of attention() for the upstream gradient dO [batch, heads, queries, value_dim]; `saved` is what attention() returned. */
export async function attentionBackward<D extends FloatDType>(
  dO: Tensor<D>, q: Tensor<D>, k: Tensor<D>, v: Tensor<D>, saved: AttentionOutputs<D>, options?: AttentionOptions,
): Promise<AttentionGrads<D>> {
  const attrs = attentionAttrs('attentionBackward', options);
  if (!isPlainObject(saved)) {
    throw invalidArgument(`attentionBackward: saved must be the { o, lse } that attention() returned, got ${describe(saved)}`);
  }
  const [dq, dk, dv] = await runOp<D>('attention_backward', [dO, q, k, v, saved.o, saved.lse], attrs);
  return { dq, dk, dv };
}
