// The UNet's attention adapters on the TypeScript side, mirroring
// csrc/models/unet_adapters.h: what a caller may put on an attention
// projection weight, checked here with messages that name the entry, and laid
// out as the native op's `adapters` records and inputs. The kinds and their
// execution paths:
//   delta, LoRA (shared), mask    materialised once per run: W_eff = (W + ΔW + s·B·A) ⊙ (1 − m)
//   per-sample LoRA               linear_lowrank in the graph: y = x·W_effᵀ + s·(x·downₙᵀ)·upₙᵀ
//   dual path (UNetDualPath)      every attention twice, α·adapted(C_soft) + (1 − α)·plain(C_hard)
import { ImprintError, invalidArgument } from '../errors.js';
import { Tensor } from '../tensor.js';
import { checkOptions, describe } from '../validate.js';
import { describeTensor as desc, sameShape } from './weights.js';

/**
 * Adapters on one attention projection weight (attn1/attn2 to_q, to_k, to_v,
 * to_out.0.weight), e.g. 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'.
 * The graph runs with W_eff = (W + delta + scale·B·A) ⊙ (1 - mask):
 * delta has W's shape (Custom Diffusion), lora.a is [rank, in] and lora.b
 * [out, rank] (scale defaults to 1), mask is u8 with W's shape, 1 = shut
 * (Cones). sampleLora: one LoRA per batch element, down [N, rank, in] and up
 * [N, out, rank] (the tuning encoder's predictions), applied on top of W_eff
 * without merging. Several entries for one weight merge if each kind appears once.
 */
export interface UNetAdapter {
  weight: string;
  delta?: Tensor;
  lora?: { a: Tensor; b: Tensor; scale?: number };
  mask?: Tensor;
  sampleLora?: { down: Tensor; up: Tensor; scale?: number };
}

/**
 * The dual path of the tuning encoder (DESIGN §1.3): every attention runs on
 * the adapted weights with the prompt's context and on the plain weights with
 * `hardContext` (the prompt with the learned word replaced by its nearest real
 * token, encoderHiddenStates' shape), blended α·adapted + (1 − α)·plain.
 * At α = 1 the model is the adapted one, at α = 0 the plain one on hardContext.
 */
export interface UNetDualPath {
  alpha: number;
  hardContext: Tensor;
}

/** The native op's view of the adapters: the `adapters` records, the inputs after the weights, and each input's name (`${weight}#delta`, ...). */
export interface AdapterInputs {
  record: number[];
  inputs: Tensor[];
  names: string[];
}

export const PROJECTION = /\.attn[12]\.(to_q|to_k|to_v|to_out\.0)\.weight$/;

interface Slot {
  delta?: Tensor;
  lora?: { a: Tensor; b: Tensor; scale: number };
  mask?: Tensor;
  sampleLora?: { down: Tensor; up: Tensor; scale: number };
}

/**
 * Checks `spec` (UNetAdapter[] or undefined) against the UNet's weights
 * (names[i] is weights[i]) and a batch of `batch` samples, and lays it out
 * for the native op: per weight in layout order, delta, lora (a, b), mask,
 * sampleLora (down, up).
 */
export function packAdapters(fn: string, spec: unknown, names: readonly string[], weights: readonly Tensor[], batch: number): AdapterInputs {
  const none: AdapterInputs = { record: [], inputs: [], names: [] };
  if (spec === undefined) return none;
  if (!Array.isArray(spec)) throw invalidArgument(`${fn}: adapters must be an array of UNetAdapter, got ${describe(spec)}`);
  const merged = new Map<number, Slot>();
  spec.forEach((entry: unknown, k) => {
    const at = `adapters[${k}]`;
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw invalidArgument(`${fn}: ${at} must be an object { weight, delta?, lora?, mask?, sampleLora? }, got ${describe(entry)}`);
    checkOptions(`${fn}: ${at}`, entry, ['weight', 'delta', 'lora', 'mask', 'sampleLora']);
    const e = entry as Partial<UNetAdapter>;
    if (typeof e.weight !== 'string') throw invalidArgument(`${fn}: ${at}.weight must be a weight name, got ${describe(e.weight)}`);
    const wi = names.indexOf(e.weight);
    if (wi < 0) throw invalidArgument(`${fn}: ${at}.weight '${e.weight}' is not a weight of this UNet`);
    if (!PROJECTION.test(e.weight)) {
      throw invalidArgument(`${fn}: ${at}.weight '${e.weight}' is not an attention projection weight (attn1/attn2 to_q, to_k, to_v, to_out.0.weight); only those take adapters`);
    }
    if (e.delta === undefined && e.lora === undefined && e.mask === undefined && e.sampleLora === undefined) {
      throw invalidArgument(`${fn}: ${at} ('${e.weight}') has no delta, lora, mask or sampleLora`);
    }
    const W = weights[wi];
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
    const scaleOf = (what: string, v: unknown): number => {
      if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidArgument(`${fn}: ${who} ${what}.scale must be a finite number, got ${describe(v)}`);
      return v;
    };
    const [out, inn] = W.shape;
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
      if (a.ndim !== 2 || a.shape[0] < 1 || a.shape[1] !== inn) throw new ImprintError(`${fn}: ${who} lora.a must be [rank, ${inn}] with rank >= 1, got ${desc(a)}`, 'SHAPE_MISMATCH');
      if (b.ndim !== 2 || b.shape[0] !== out || b.shape[1] < 1) throw new ImprintError(`${fn}: ${who} lora.b must be [${out}, rank], got ${desc(b)}`, 'SHAPE_MISMATCH');
      if (a.shape[0] !== b.shape[1]) throw new ImprintError(`${fn}: ${who} lora rank mismatch: a is ${desc(a)} (rank ${a.shape[0]}) but b is ${desc(b)} (rank ${b.shape[1]})`, 'SHAPE_MISMATCH');
      slot.lora = { a, b, scale: scaleOf('lora', scale) };
    }
    if (e.mask !== undefined) {
      if (slot.mask) throw twice('mask');
      const m = live('mask', e.mask, 'u8');
      if (!sameShape(m.shape, W.shape)) throw new ImprintError(`${fn}: ${who} mask must have the weight's shape [${W.shape.join(', ')}], got ${desc(m)}`, 'SHAPE_MISMATCH');
      // 1 shuts a neuron, 0 leaves it; the native op computes 1 - mask, so other values would scale weights.
      if (m.device === 'cpu' && (m.dataSync() as Uint8Array).some((v) => v > 1)) throw invalidArgument(`${fn}: ${who} mask entries must be 0 (open) or 1 (shut)`);
      slot.mask = m;
    }
    if (e.sampleLora !== undefined) {
      if (slot.sampleLora) throw twice('sampleLora');
      const l = e.sampleLora as unknown;
      if (l === null || typeof l !== 'object') throw invalidArgument(`${fn}: ${who} sampleLora must be { down, up, scale? }, got ${describe(l)}`);
      checkOptions(`${fn}: ${who} sampleLora`, l, ['down', 'up', 'scale']);
      const { down: ld, up: lu, scale = 1 } = l as { down: unknown; up: unknown; scale?: unknown };
      const down = live('sampleLora.down', ld, W.dtype), up = live('sampleLora.up', lu, W.dtype);
      if (down.ndim !== 3 || down.shape[0] !== batch || down.shape[1] < 1 || down.shape[2] !== inn) {
        throw new ImprintError(`${fn}: ${who} sampleLora.down must be [${batch} (the batch), rank, ${inn}], got ${desc(down)}`, 'SHAPE_MISMATCH');
      }
      if (up.ndim !== 3 || up.shape[0] !== batch || up.shape[1] !== out || up.shape[2] !== down.shape[1]) {
        throw new ImprintError(`${fn}: ${who} sampleLora.up must be [${batch}, ${out}, ${down.shape[1]} (down's rank)], got ${desc(up)}`, 'SHAPE_MISMATCH');
      }
      slot.sampleLora = { down, up, scale: scaleOf('sampleLora', scale) };
    }
    merged.set(wi, slot);
  });
  const out: AdapterInputs = { record: [], inputs: [], names: [] };
  for (const [wi, a] of [...merged].sort((x, y) => x[0] - y[0])) {
    const n = names[wi];
    if (a.delta) out.record.push(wi, 1), out.inputs.push(a.delta), out.names.push(`${n}#delta`);
    if (a.lora) out.record.push(wi, 2, a.lora.scale), out.inputs.push(a.lora.a, a.lora.b), out.names.push(`${n}#lora.a`, `${n}#lora.b`);
    if (a.mask) out.record.push(wi, 3), out.inputs.push(a.mask), out.names.push(`${n}#mask`);
    if (a.sampleLora) {
      out.record.push(wi, 4, a.sampleLora.scale);
      out.inputs.push(a.sampleLora.down, a.sampleLora.up);
      out.names.push(`${n}#sample.down`, `${n}#sample.up`);
    }
  }
  return out;
}

/** Checks a dual-path option against the context it pairs with; returns the op's attrs and its extra input. */
export function packDualPath(fn: string, spec: unknown, context: Tensor): { attrs: { dualAlpha?: number }; inputs: Tensor[] } {
  if (spec === undefined) return { attrs: {}, inputs: [] };
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw invalidArgument(`${fn}: dual must be { alpha, hardContext }, got ${describe(spec)}`);
  checkOptions(`${fn}: dual`, spec, ['alpha', 'hardContext']);
  const { alpha, hardContext } = spec as Partial<UNetDualPath>;
  if (typeof alpha !== 'number' || !(alpha >= 0 && alpha <= 1)) throw invalidArgument(`${fn}: dual.alpha must be a number in [0, 1], got ${describe(alpha)}`);
  if (!(hardContext instanceof Tensor)) throw invalidArgument(`${fn}: dual.hardContext must be a Tensor shaped like encoderHiddenStates, got ${describe(hardContext)}`);
  if (hardContext.disposed) throw new ImprintError(`${fn}: dual.hardContext has been disposed`, 'DISPOSED');
  if (!sameShape(hardContext.shape, context.shape) || hardContext.dtype !== context.dtype || hardContext.device !== context.device) {
    throw new ImprintError(`${fn}: dual.hardContext must be like encoderHiddenStates (${desc(context)}), got ${desc(hardContext)}`, 'SHAPE_MISMATCH');
  }
  return { attrs: { dualAlpha: alpha }, inputs: [hardContext] };
}
