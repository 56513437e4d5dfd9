// Stand-ins for an SD1.5 Custom Diffusion concept's weight changes: ΔW of
// attn2.to_k and to_v in each of the UNet's 16 cross-attention layers, [width,
// 768] for widths 320, 640 and 1280, as low rank plus noise (a decaying rank-16
// signal and 1% noise), seeded. Shared by the concepts bench and its
// JavaScript peer (bench/concepts-js-peer.ts).
import { mat, type Mat } from '../lib/concepts/linalg.js';
import { SeededRandom } from '../lib/train/random.js';

/** [name, rows] of every cross-attention layer of SD1.5's UNet (context width 768). */
export const SD15_CROSS_ATTENTION: [string, number][] = [
  ...[0, 1, 2].flatMap((b) => [0, 1].map((a): [string, number] => [`down_blocks.${b}.attentions.${a}`, 320 << b])),
  ['mid_block.attentions.0', 1280],
  ...[1, 2, 3].flatMap((b) => [0, 1, 2].map((a): [string, number] => [`up_blocks.${b}.attentions.${a}`, 1280 >> (b - 1)])),
];
export const CONTEXT_WIDTH = 768;

/** A [rows, cols] low-rank-plus-noise matrix: Σ_j 0.8^j·a_j·b_jᵀ over 16 terms, plus 1% of its scale as noise. */
export function lowRankPlusNoise(rows: number, cols: number, seed: number): Mat {
  const rng = new SeededRandom(seed);
  const centred = (): number => rng.uniform(-1, 1);
  const out = mat(rows, cols);
  const a = new Float64Array(rows);
  const b = new Float64Array(cols);
  for (let j = 0; j < 16; j++) {
    const w = 0.8 ** j;
    for (let i = 0; i < rows; i++) a[i] = centred() * w;
    for (let i = 0; i < cols; i++) b[i] = centred();
    for (let i = 0; i < rows; i++) for (let k = 0; k < cols; k++) out.data[i * cols + k] += a[i] * b[k];
  }
  for (let i = 0; i < out.data.length; i++) out.data[i] += 0.01 * centred();
  return out;
}

/** The 32 K/V deltas of an SD1.5 concept, by diffusers weight name. */
export function sd15KvDeltas(): Map<string, Mat> {
  const out = new Map<string, Mat>();
  SD15_CROSS_ATTENTION.forEach(([layer, rows], i) => {
    for (const [j, proj] of ['to_k', 'to_v'].entries()) {
      out.set(`${layer}.transformer_blocks.0.attn2.${proj}.weight`, lowRankPlusNoise(rows, CONTEXT_WIDTH, 1000 + 2 * i + j));
    }
  });
  return out;
}
