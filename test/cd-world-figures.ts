// Custom Diffusion's figures on the embedded world over several training
// seeds: each seed trains 'star' and 'ring' apart (merged in closed form) and
// jointly, and scores every concept on its composition prompts against the
// untrained model (scoreWorldConcept; scoring seed = training seed, so the
// spread covers both). Computed once per process and shared by the tests of
// test/cd-world.test.ts; `npm run quality:cd` prints the same table.
import { disposeConcept } from '../lib/concepts/concept-file.js';
import { mergeConcepts } from '../lib/methods/custom-diffusion/merge.js';
import type { CustomDiffusionConcept } from '../lib/concepts/types.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import type { EvaluateResult } from '../lib/world/evaluate.js';
import { stat, type Stat } from '../lib/world/metrics.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { scoreWorldConcept, teachWorldConcepts } from '../lib/world/teach.js';

/** Training (and scoring) seeds: at least 3, so a figure's spread is known. */
export const SEEDS = [0, 1, 2] as const;
export const CONCEPT_IDS = ['star', 'ring'] as const;
export const METHODS = ['single', 'merged', 'joint'] as const;
export type Method = (typeof METHODS)[number];
export type ConceptId = (typeof CONCEPT_IDS)[number];

/** One concept under one method and seed: the change each score makes from the untrained model. */
export interface Figure {
  imageBase: number;
  image: number;
  shapeBase: number;
  shape: number;
  textBase: number;
  text: number;
}

export interface Figures {
  /** figures[method][concept][k]: seed SEEDS[k]. */
  bySeed: Record<Method, Record<ConceptId, Figure[]>>;
  /** Seconds spent training and scoring per seed. */
  seconds: number[];
}

/** The untrained model's scores per concept and seed, shared by the three methods. */
const bases = new Map<string, EvaluateResult>();

async function score(concept: CustomDiffusionConcept, tokenIndex: number, id: ConceptId, seed: number): Promise<Figure> {
  const key = `${id}:${seed}`;
  const base = bases.get(key);
  const s = await scoreWorldConcept(concept, tokenIndex, id, { seed, ...(base ? { base } : {}) });
  bases.set(key, s.base);
  return {
    imageBase: s.base.imageAlignment!.mean, image: s.trained.imageAlignment!.mean,
    shapeBase: s.base.shapeAlignment!.mean, shape: s.trained.shapeAlignment!.mean,
    textBase: s.base.textAlignment.mean, text: s.trained.textAlignment.mean,
  };
}

async function measure(progress: (line: string) => void): Promise<Figures> {
  const empty = (): Record<ConceptId, Figure[]> => ({ star: [], ring: [] });
  const bySeed: Figures['bySeed'] = { single: empty(), merged: empty(), joint: empty() };
  const seconds: number[] = [];
  for (const seed of SEEDS) {
    const t0 = Date.now();
    const star = (await teachWorldConcepts({ concepts: ['star'], seed, quiet: true })).concept;
    const ring = (await teachWorldConcepts({ concepts: ['ring'], tokens: ['<new2>'], seed, quiet: true })).concept;
    try {
      bySeed.single.star.push(await score(star, 0, 'star', seed));
      bySeed.single.ring.push(await score(ring, 0, 'ring', seed));
      const pipe = await StableDiffusionPipeline.fromPretrained(worldModelDir(), { scheduler: 'dpm++2m' });
      const merged = await mergeConcepts(pipe, [star, ring]).finally(() => pipe.dispose());
      try {
        if (!(merged.residuals.overall.targetRelative < 1e-4)) throw new Error(`seed ${seed}: merge target residual ${merged.residuals.overall.targetRelative}`);
        bySeed.merged.star.push(await score(merged.concept, 0, 'star', seed));
        bySeed.merged.ring.push(await score(merged.concept, 1, 'ring', seed));
      } finally {
        disposeConcept(merged.concept);
      }
    } finally {
      disposeConcept(star);
      disposeConcept(ring);
    }
    const joint = (await teachWorldConcepts({ concepts: [...CONCEPT_IDS], seed, quiet: true })).concept;
    try {
      for (const [i, id] of CONCEPT_IDS.entries()) bySeed.joint[id].push(await score(joint, i, id, seed));
    } finally {
      disposeConcept(joint);
    }
    seconds.push((Date.now() - t0) / 1000);
    progress(`cd-world: seed ${seed} done in ${seconds.at(-1)!.toFixed(0)} s`);
  }
  return { bySeed, seconds };
}

let pending: Promise<Figures> | undefined;

/** The figures, measured on first use (about 6 minutes a seed on 2 cores). */
export function cdWorldFigures(progress: (line: string) => void = () => {}): Promise<Figures> {
  pending ??= measure(progress);
  return pending;
}

/** Mean ± std over seeds of one score's rise (or, for text, its change) under a method. */
export function change(f: Figures, method: Method, id: ConceptId, key: 'image' | 'shape' | 'text'): Stat {
  return stat(f.bySeed[method][id].map((x) => x[key] - x[`${key}Base`]));
}

/** Mean ± std over seeds of one score itself. */
export function level(f: Figures, method: Method, id: ConceptId, key: keyof Figure): Stat {
  return stat(f.bySeed[method][id].map((x) => x[key]));
}

const pm = (s: Stat): string => `${s.mean.toFixed(3)} ± ${s.std.toFixed(3)}`;

/** The README's table: per method and concept, each score of the untrained and the taught model, mean ± std over the seeds. */
export function formatFigures(f: Figures): string {
  const lines = [
    `Custom Diffusion on the world model, ${SEEDS.length} seeds (${SEEDS.join(', ')}), mean ± std (population)`,
    '| method | concept | image base → taught | shape base → taught | text base → taught |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const m of METHODS) {
    for (const id of CONCEPT_IDS) {
      const cell = (k: 'image' | 'shape' | 'text') => `${pm(level(f, m, id, `${k}Base`))} → ${pm(level(f, m, id, k))}`;
      lines.push(`| ${m} | ${id} | ${cell('image')} | ${cell('shape')} | ${cell('text')} |`);
    }
  }
  lines.push(`seconds per seed: ${f.seconds.map((s) => s.toFixed(0)).join(', ')}`);
  return lines.join('\n');
}
