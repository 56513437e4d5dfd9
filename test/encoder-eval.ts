// Scores a world tuning encoder on held-out concepts, as Custom Diffusion is
// scored (6 composition prompts × 2 images, the base model with the class
// word alone): each concept personalized from ONE image per seed and
// variant. Shared by quality:encoder and quality:encoder-ablations.
import { disposeConcept } from '../lib/concepts/concept-file.js';
import { personalize } from '../lib/methods/tuning-encoder/personalize.js';
import type { EvaluateResult } from '../lib/world/evaluate.js';
import { stat } from '../lib/world/metrics.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { conceptById } from '../lib/world/concepts.js';
import { conceptPngs, scoreWorldConcept } from '../lib/world/teach.js';

export interface EncoderVariant { name: string; steps: number; alpha: number; lr?: number; pullWeight?: number; batchSize?: number }

// Unset lr, pull and batch: the encoder file's tuning (the world's: lr 1e-2, 8 draws, no pull).
export const ENCODER_VARIANTS: readonly EncoderVariant[] = [
  { name: 'predict only', steps: 0, alpha: 1 },
  { name: '12 steps, dual path α 0.7', steps: 12, alpha: 0.7 },
  { name: '12 steps, no dual path', steps: 12, alpha: 1 },
  // The method's generic defaults, which the world's encoder file overrides.
  { name: '12 steps, generic tuning (lr 2e-3, 2 draws, pull 1)', steps: 12, alpha: 1, lr: 2e-3, batchSize: 2, pullWeight: 1 },
  // Not the method: what the prediction's rank-4 LoRA and token can reach from the one image when tuned long, unpulled.
  { name: '200 steps at lr 5e-3, no pull (the adapter\'s reach)', steps: 200, alpha: 1, lr: 5e-3, batchSize: 2, pullWeight: 0 },
];

export interface EncoderRow {
  encoder: string; id: string; seed: number; variant: string; image: number; shape: number; text: number; seconds: number;
  /** The base model's image, shape and text alignment for the same concept and seed (the class word alone). */
  base: [number, number, number];
}

const f3 = (x: number): string => x.toFixed(3);
const bases = new Map<string, EvaluateResult>();

/** Runs every concept × seed × variant, printing one JSON line each; returns the rows. */
export async function evaluateEncoder(encoder: string, label: string, ids: readonly string[], seeds: readonly number[], variants: readonly EncoderVariant[]): Promise<EncoderRow[]> {
  const rows: EncoderRow[] = [];
  for (const id of ids) {
    const c = conceptById(id, 'evaluateEncoder');
    const image = (await conceptPngs(id, 1))[0];
    for (const seed of seeds) {
      for (const v of variants) {
        const t0 = Date.now();
        const r = await personalize({ model: worldModelDir(), encoder, image, classWord: c.classWord, steps: v.steps, alpha: v.alpha, seed, quiet: true,
          ...(v.lr !== undefined ? { lr: v.lr } : {}), ...(v.pullWeight !== undefined ? { pullWeight: v.pullWeight } : {}),
          ...(v.batchSize !== undefined ? { batchSize: v.batchSize } : {}) });
        const seconds = (Date.now() - t0) / 1000;
        const key = `${id}/${seed}`;
        const s = await scoreWorldConcept(r.concept, 0, id, { imagesPerPrompt: 2, steps: 20, seed, ...(bases.has(key) ? { base: bases.get(key)! } : {}) });
        bases.set(key, s.base);
        disposeConcept(r.concept);
        const base: EncoderRow['base'] = [s.base.imageAlignment!.mean, s.base.shapeAlignment!.mean, s.base.textAlignment.mean];
        const row = { encoder: label, id, seed, variant: v.name, image: s.trained.imageAlignment!.mean, shape: s.trained.shapeAlignment!.mean, text: s.trained.textAlignment.mean, seconds, base };
        rows.push(row);
        console.log(JSON.stringify({ ...row, base: base.map(f3) }));
      }
    }
  }
  return rows;
}

/** Prints mean ± std per encoder and variant, then the base model's (over the concepts and seeds scored so far). */
export function printSummary(rows: readonly EncoderRow[]): void {
  const groups = [...new Set(rows.map((r) => `${r.encoder}\u0000${r.variant}`))];
  for (const g of groups) {
    const [encoder, variant] = g.split('\u0000');
    const rs = rows.filter((r) => r.encoder === encoder && r.variant === variant);
    const m = (k: 'image' | 'shape' | 'text' | 'seconds') => { const x = stat(rs.map((r) => r[k])); return `${f3(x.mean)} ± ${f3(x.std)}`; };
    console.log(JSON.stringify({ encoder, variant, image: m('image'), shape: m('shape'), text: m('text'), seconds: m('seconds') }));
  }
  const base = [...bases.values()];
  const bm = (k: 'imageAlignment' | 'shapeAlignment' | 'textAlignment') => { const x = stat(base.map((b) => b[k]!.mean)); return `${f3(x.mean)} ± ${f3(x.std)}`; };
  console.log(JSON.stringify({ variant: 'base model', image: bm('imageAlignment'), shape: bm('shapeAlignment'), text: bm('textAlignment') }));
}

export const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
