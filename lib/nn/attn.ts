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

// ---- attention paid to chosen key tokens ------------------------------------------

/** At most this many tokens per attentionTokenMap call. */
export const TOKEN_MAP_MAX_TOKENS = 77;

function tokenMapAttrs(fn: string, tokens: unknown, options: { scale?: number } | undefined): { tokens: number[]; scale?: number } {
  const o = checkOptions(fn, options, ['scale']);
  if (!Array.isArray(tokens) || tokens.length === 0 || tokens.length > TOKEN_MAP_MAX_TOKENS) {
    throw invalidArgument(`${fn}: tokens must be an array of 1 to ${TOKEN_MAP_MAX_TOKENS} key indices, got ${describe(tokens)}`);
  }
  tokens.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0) throw invalidArgument(`${fn}: tokens[${i}] must be a key index (an integer ≥ 0), got ${describe(t)}`);
  });
  const scale = o.scale === undefined ? undefined : checkNumber(fn, 'scale', o.scale, 0);
  return { tokens: tokens as number[], scale };
}

/**
 * How much each query attends to the key tokens `tokens`, averaged over heads:
 * maps f32 [batch, tokens.length, queries], maps[b, t, i] = mean_h exp(scale·q·k_tokens[t] − lse),
 * from attention()'s saved lse, without the [queries, keys] score matrix. For a
 * cross-attention it is the map of where the image looks at a prompt token
 * (Attend-and-Excite). q [batch, heads, queries, head_dim], k [batch, heads, keys, head_dim].
 */
export async function attentionTokenMap<D extends FloatDType>(
  q: Tensor<D>, k: Tensor<D>, lse: Tensor<'f32'>, tokens: number[], options?: { scale?: number },
): Promise<Tensor<'f32'>> {
  const [maps] = await runOp<'f32'>('attention_token_map_forward', [q, k, lse], tokenMapAttrs('attentionTokenMap', tokens, options));
  return maps;
}

/**
 * Gradients of attentionTokenMap for dMaps f32 [batch, tokens.length, queries]:
 * dq and dk, including the part through lse (raising one token's share lowers the others').
 */
export async function attentionTokenMapBackward<D extends FloatDType>(
  dMaps: Tensor<'f32'>, q: Tensor<D>, k: Tensor<D>, lse: Tensor<'f32'>, tokens: number[], options?: { scale?: number },
): Promise<{ dq: Tensor<D>; dk: Tensor<D> }> {
  const attrs = tokenMapAttrs('attentionTokenMapBackward', tokens, options);
  const [dq, dk] = await runOp<D>('attention_token_map_backward', [dMaps, q, k, lse], attrs);
  return { dq, dk };
}
