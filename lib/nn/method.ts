// The method kernels (DESIGN.md §1.2, §1.3): the tuning encoder's
// nearest-token search over the vocabulary and its contrastive
// nearest-neighbour loss, and Cones' gradient-statistic step and sparse
// neuron masking. Each wraps one native op of csrc/ops/method.cc; the ops
// check shapes, dtypes and devices and return new tensors.
import { invalidArgument } from '../errors.js';
import { Tensor } from '../tensor.js';
import { checkNumber, checkOptions, describe, type FloatDType } from '../validate.js';
import { runOp } from './run.js';

function checkTensor(fn: string, name: string, value: unknown, required: true): Tensor;
function checkTensor(fn: string, name: string, value: unknown, required: false): Tensor | undefined;
function checkTensor(fn: string, name: string, value: unknown, required: boolean): Tensor | undefined {
  if (value === undefined || value === null) {
    if (required) throw invalidArgument(`${fn}: ${name} is required`);
    return undefined;
  }
  if (!(value instanceof Tensor)) throw invalidArgument(`${fn}: ${name} must be a Tensor, got ${describe(value)}`);
  return value;
}

function checkInteger(fn: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) {
    throw invalidArgument(`${fn}: ${name} must be an integer, got ${describe(value)}`);
  }
  return value;
}

function checkRequiredNumber(fn: string, name: string, value: unknown): number {
  if (value === undefined) throw invalidArgument(`${fn}: ${name} is required`);
  return checkNumber(fn, name, value, 0);
}

// ---- tuning encoder: nearest tokens -------------------------------------------------

/** The most neighbours tokenTopkCosine returns per query. */
export const TOKEN_TOPK_MAX_K = 256;

/** Row norms of the vocabulary embeddings [V, D] → f32 [V]; compute once and pass to tokenTopkCosine. */
export async function tokenVocabNorms(vocab: Tensor<FloatDType>): Promise<Tensor<'f32'>> {
  const [norms] = await runOp<'f32'>('token_vocab_norms', [checkTensor('tokenVocabNorms', 'vocab', vocab, true)]);
  return norms;
}

export interface TokenTopkOptions {
  /** Neighbours per query: 1 ≤ k ≤ min(V, 256). */
  k: number;
  /** f32 [V] from tokenVocabNorms (computed on each call when omitted). */
  vocabNorms?: Tensor<'f32'> | null;
}

export interface TokenTopk {
  /** i32 [B, k]: vocabulary rows, most similar first. */
  indices: Tensor<'i32'>;
  /** f32 [B, k]: their cosine similarities, descending. */
  similarities: Tensor<'f32'>;
}

/**
 * The k vocabulary embeddings nearest to each query by cosine similarity:
 * queries [B, D] and vocab [V, D] (one float dtype and device) → indices and
 * similarities [B, k], sorted descending, equal similarities by lower index.
 * A zero row has similarity 0 with every row.
 */
export async function tokenTopkCosine<D extends FloatDType>(queries: Tensor<D>, vocab: Tensor<D>, options: TokenTopkOptions): Promise<TokenTopk> {
  const fn = 'tokenTopkCosine';
  if (options === undefined) throw invalidArgument(`${fn}: options { k } are required`);
  const o = checkOptions(fn, options, ['k', 'vocabNorms']);
  const inputs = [checkTensor(fn, 'queries', queries, true), checkTensor(fn, 'vocab', vocab, true), checkTensor(fn, 'vocabNorms', o.vocabNorms, false)];
  const [indices, similarities] = await runOp('token_topk_cosine', inputs, { k: checkInteger(fn, 'k', o.k) });
  return { indices: indices as Tensor<'i32'>, similarities: similarities as Tensor<'f32'> };
}

// ---- tuning encoder: contrastive loss -------------------------------------------------

export interface ContrastiveNnOptions {
  /** τ of the logits cos/τ (> 0). */
  temperature: number;
}

export interface ContrastiveNnBackwardOptions extends ContrastiveNnOptions {
  /** d loss (default 1): the gradient is scaled by it. */
  gradScale?: number;
}

/**
 * The tuning encoder's contrastive nearest-neighbour loss (DESIGN.md §1.3)
 * with cosine logits: for query b, positives are its neighbours [b, j, :]
 * (e.g. the vocabulary rows tokenTopkCosine found), negatives the batch's
 * other queries, and L_b = −log(Σ_pos e^{cos/τ} / (Σ_pos e^{cos/τ} + Σ_neg e^{cos/τ})).
 * queries [B, D], neighbours [B, k, D] → the mean over b, f32 []. With B = 1 it is 0.
 */
export async function contrastiveNnLoss<D extends FloatDType>(queries: Tensor<D>, neighbours: Tensor<D>, options: ContrastiveNnOptions): Promise<Tensor<'f32'>> {
  const fn = 'contrastiveNnLoss';
  if (options === undefined) throw invalidArgument(`${fn}: options { temperature } are required`);
  const o = checkOptions(fn, options, ['temperature']);
  const [loss] = await runOp<'f32'>('contrastive_nn_loss_forward', [checkTensor(fn, 'queries', queries, true), checkTensor(fn, 'neighbours', neighbours, true)], {
    temperature: checkRequiredNumber(fn, 'temperature', o.temperature),
  });
  return loss;
}

/** Gradient of contrastiveNnLoss for the queries (the neighbours are constants) → dqueries [B, D] in the queries' dtype. */
export async function contrastiveNnLossBackward<D extends FloatDType>(queries: Tensor<D>, neighbours: Tensor<D>, options: ContrastiveNnBackwardOptions): Promise<Tensor<D>> {
  const fn = 'contrastiveNnLossBackward';
  if (options === undefined) throw invalidArgument(`${fn}: options { temperature } are required`);
  const o = checkOptions(fn, options, ['temperature', 'gradScale']);
  const [dqueries] = await runOp<D>('contrastive_nn_loss_backward', [checkTensor(fn, 'queries', queries, true), checkTensor(fn, 'neighbours', neighbours, true)], {
    temperature: checkRequiredNumber(fn, 'temperature', o.temperature),
    gradScale: checkNumber(fn, 'gradScale', o.gradScale, 1),
  });
  return dqueries;
}

// ---- Cones: concept neurons ------------------------------------------------------------

export interface NeuronStatState<D extends FloatDType> {
  /** The weights θ (any shape). */
  theta: Tensor<D>;
  /** ∂L/∂θ, same shape and dtype. */
  grad: Tensor<D>;
  /** The accumulated statistic S, f32, same shape. */
  stat: Tensor<'f32'>;
}

export interface NeuronStatOptions {
  /** Step size ρ of the multiplicative-mask update (default 2e-5, the design's value). */
  rho?: number;
}

/** The Cones default step size ρ. */
export const NEURON_STAT_RHO = 2e-5;

/**
 * One Cones statistic step in one pass (DESIGN.md §1.2): stat + θ·g and
 * θ − ρ·θ·θ·g, as new tensors (f32 arithmetic; θ keeps its dtype).
 */
export async function neuronStatStep<D extends FloatDType>(state: NeuronStatState<D>, options: NeuronStatOptions = {}): Promise<{ theta: Tensor<D>; stat: Tensor<'f32'> }> {
  const fn = 'neuronStatStep';
  const s = checkOptions(fn, state, ['theta', 'grad', 'stat']);
  const o = checkOptions(fn, options, ['rho']);
  const inputs = [checkTensor(fn, 'theta', s.theta, true), checkTensor(fn, 'grad', s.grad, true), checkTensor(fn, 'stat', s.stat, true)];
  const [theta, stat] = await runOp('neuron_stat_step', inputs, { rho: checkNumber(fn, 'rho', o.rho, NEURON_STAT_RHO) });
  return { theta: theta as Tensor<D>, stat: stat as Tensor<'f32'> };
}

/**
 * Shuts neurons: weight with the elements at `indices` (i64 [n], flat
 * row-major positions, sorted ascending without repeats) set to 0, and
 * `saved` [n] holding their previous values for neuronMaskRestore. Bad
 * indices reject naming the first offending position.
 */
export async function neuronMaskApply<D extends FloatDType>(weight: Tensor<D>, indices: Tensor<'i64'>): Promise<{ weight: Tensor<D>; saved: Tensor<D> }> {
  const fn = 'neuronMaskApply';
  const [masked, saved] = await runOp<D>('neuron_mask_apply', [checkTensor(fn, 'weight', weight, true), checkTensor(fn, 'indices', indices, true)]);
  return { weight: masked, saved };
}

/** Undoes neuronMaskApply: weight with `saved` [n] put back at `indices`. */
export async function neuronMaskRestore<D extends FloatDType>(weight: Tensor<D>, indices: Tensor<'i64'>, saved: Tensor<D>): Promise<Tensor<D>> {
  const fn = 'neuronMaskRestore';
  const [restored] = await runOp<D>('neuron_mask_restore', [
    checkTensor(fn, 'weight', weight, true),
    checkTensor(fn, 'indices', indices, true),
    checkTensor(fn, 'saved', saved, true),
  ]);
  return restored;
}
