// Attend-and-Excite (Chefer et al., 2023) as sampling-time guidance: on the
// first steps, move the latents so that every subject token gets a strong
// peak of attention somewhere in the image, which keeps one subject from
// swallowing another in multi-subject prompts. Method-independent: it works on
// the base model and on any concept applied to it.
//
// The loss, per image, as the paper's: from the probe of
// UNet2DConditionModel.focusForward at the 16×16 cross-attentions, read for
// every token of the prompt but the start and end tokens,
//   a_t = softmax over those tokens of (100 · map_t)   per position: which
//                                       token dominates where (the start
//                                       token, which takes most attention,
//                                       left out)
//   peak_s = max over positions of (G ∗ a_s), G a 3×3 Gaussian (σ 0.5)
//   L = max over subjects of (1 − peak_s)   the most neglected subject
// and the update z ← z − α·∂L/∂z with α decaying from `scale` to scale/√2 over
// the guided steps, as the paper's step size (the gradient is taken at the
// UNet's input, which schedulers such as Euler scale from z; the scale folds
// into α). One update per step (the paper adds iterative refinement at a few
// steps; left out).
import { tensor } from '../creation.js';
import { invalidArgument } from '../errors.js';
import { focusGrid, type UNet2DConditionModel, type UNetAdapter, type UNetFocus } from '../models/unet.js';
import type { EncodeOptions, PaddedIds } from '../tokenizer/clip.js';
import type { Tensor } from '../tensor.js';

/** 3×3 Gaussian, σ = 0.5, normalised. */
const GAUSS = (() => {
  const g1 = [Math.exp(-2), 1, Math.exp(-2)];
  const k = g1.flatMap((a) => g1.map((b) => a * b));
  const s = k.reduce((x, y) => x + y, 0);
  return k.map((v) => v / s);
})();

/** The paper's sharpening of the token maps before the softmax over tokens. */
const SHARPEN = 100;

export interface ExciteLoss {
  /** L per image. */
  loss: number[];
  /** Which subject (index into `subjects`) is the most neglected, per image. */
  neglected: number[];
  /** ∂(Σ_images L)/∂maps, the maps' shape. */
  dMaps: Float32Array;
}

/**
 * The loss and its gradient from maps [N, T, h·w] (the prompt's tokens, start
 * and end left out) on an h×w grid; `subjects` index into the T tokens.
 */
export function exciteLoss(maps: Float32Array, images: number, tokens: number, subjects: readonly number[], h: number, w: number): ExciteLoss {
  const q = h * w;
  if (maps.length !== images * tokens * q) throw invalidArgument(`exciteLoss: maps hold ${maps.length} values, expected ${images}·${tokens}·${q}`);
  for (const s of subjects) if (!Number.isInteger(s) || s < 0 || s >= tokens) throw invalidArgument(`exciteLoss: subject ${s} is not one of the ${tokens} tokens`);
  const dMaps = new Float32Array(maps.length);
  const loss: number[] = [];
  const neglected: number[] = [];
  const a = new Float64Array(tokens * q);
  for (let n = 0; n < images; n++) {
    const base = n * tokens * q;
    // a_t[i] = softmax_t(100·map_t[i]) per position.
    for (let i = 0; i < q; i++) {
      let max = -Infinity;
      for (let t = 0; t < tokens; t++) max = Math.max(max, SHARPEN * maps[base + t * q + i]);
      let sum = 0;
      for (let t = 0; t < tokens; t++) sum += (a[t * q + i] = Math.exp(SHARPEN * maps[base + t * q + i] - max));
      for (let t = 0; t < tokens; t++) a[t * q + i] /= sum;
    }
    let worst = -Infinity, worstS = 0, worstAt = 0;
    subjects.forEach((subject, s) => {
      let peak = -Infinity, at = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          let v = 0;
          for (let dy = -1; dy <= 1; dy++) {
            for (let dx = -1; dx <= 1; dx++) {
              const yy = y + dy, xx = x + dx;
              if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;  // zero padding
              v += GAUSS[(dy + 1) * 3 + dx + 1] * a[subject * q + yy * w + xx];
            }
          }
          if (v > peak) peak = v, at = y * w + x;
        }
      }
      if (1 - peak > worst) worst = 1 - peak, worstS = s, worstAt = at;
    });
    loss.push(worst);
    neglected.push(worstS);
    // g = ∂L/∂a_s* at the peak's neighbours; ∂L/∂map_t[j] = 100·a_t[j]·(g_t[j] − a_s*[j]·g_s*[j]).
    const sStar = subjects[worstS];
    const y = Math.floor(worstAt / w), x = worstAt % w;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const yy = y + dy, xx = x + dx;
        if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
        const j = yy * w + xx;
        const g = -GAUSS[(dy + 1) * 3 + dx + 1];
        const ag = a[sStar * q + j] * g;
        for (let t = 0; t < tokens; t++) dMaps[base + t * q + j] += SHARPEN * a[t * q + j] * ((t === sStar ? g : 0) - ag);
      }
    }
  }
  return { loss, neglected, dMaps };
}

export interface ExciteProbe {
  unet: UNet2DConditionModel;
  /** [N, tokens, D]: the conditional context only. */
  context: Tensor;
  /** The context positions of the prompt's tokens, start and end left out (the same in every row). */
  tokens: readonly number[];
  /** The subjects, as indices into `tokens`. */
  subjects: readonly number[];
}

/**
 * focusForward at the probe and exciteLoss of its maps: L per image and
 * weight·∂(Σ L)/∂maps as dFocus on the input's device (the caller frees it),
 * for focusBackward (a latent update) or focusForwardBackward (a training term).
 */
export async function exciteMaps(
  probe: ExciteProbe, input: Tensor, t: number, options: { adapters?: readonly UNetAdapter[]; weight?: number } = {},
): Promise<{ focus: UNetFocus; loss: number[]; dFocus: Tensor<'f32'> }> {
  const [n, , h, w] = input.shape;
  const grid = focusGrid(probe.unet.config, h, w);
  const focus: UNetFocus = { tokens: probe.tokens, queries: grid.queries };
  const { out, maps } = await probe.unet.focusForward(input, t, probe.context, focus, options.adapters ? { adapters: options.adapters } : {});
  out.dispose();
  const r = exciteLoss(maps.dataSync() as Float32Array, n, probe.tokens.length, probe.subjects, grid.height, grid.width);
  maps.dispose();
  const weight = options.weight ?? 1;
  if (weight !== 1) for (let i = 0; i < r.dMaps.length; i++) r.dMaps[i] *= weight;
  const host = tensor(r.dMaps, { shape: [n, probe.tokens.length, grid.queries] });
  if (input.device === 'cpu') return { focus, loss: r.loss, dFocus: host };
  try {
    return { focus, loss: r.loss, dFocus: await host.to(input.device) };
  } finally {
    host.dispose();
  }
}

/**
 * ∂L/∂input of the UNet's input at timestep t (the latents as the UNet sees
 * them), and L per image before any update.
 */
export async function exciteGradient(probe: ExciteProbe, input: Tensor, t: number): Promise<{ grad: Tensor; loss: number[] }> {
  const { focus, loss, dFocus } = await exciteMaps(probe, input, t);
  try {
    return { grad: await probe.unet.focusBackward(input, t, probe.context, focus, dFocus), loss };
  } finally {
    dFocus.dispose();
  }
}

/**
 * The probe's token positions for `prompt` (every token between the start
 * and end tokens) and the subjects `words` among them, with the prompt's
 * token count; an error names a word the prompt lacks.
 */
export function promptFocus(fn: string, tokenizer: { encodePadded(text: string, options?: EncodeOptions): PaddedIds }, maxLength: number, prompt: string, words: readonly string[]): { tokens: number[]; subjects: number[]; length: number } {
  const content = (text: string): number[] => {
    const p = tokenizer.encodePadded(text, { maxLength });
    return Array.from(p.ids.subarray(1, p.length - 1));
  };
  const padded = tokenizer.encodePadded(prompt, { maxLength });
  const positions = subjectPositions(`${fn}: prompt "${prompt}"`, padded.ids, words, content);
  return { tokens: Array.from({ length: padded.length - 2 }, (_, i) => i + 1), subjects: positions.map((p) => p - 1), length: padded.length };
}

/** The positions of `words` in the token ids of a prompt (each word's first token), or an error naming the missing one. */
export function subjectPositions(fn: string, promptIds: ArrayLike<number>, words: readonly string[], encodeWord: (w: string) => number[]): number[] {
  return words.map((word) => {
    const ids = encodeWord(word);
    if (ids.length === 0) throw invalidArgument(`${fn}: excite word '${word}' has no tokens`);
    for (let i = 1; i + ids.length <= promptIds.length; i++) {
      if (ids.every((id, k) => promptIds[i + k] === id)) return i;
    }
    throw invalidArgument(`${fn}: excite word '${word}' is not in the prompt`);
  });
}
