// The shipped world model's pretraining as one call: its phases in order,
// each a pretrainWorld run started from the previous phase's model. The
// intermediate models and every phase's checkpoints live under workDir, so an
// interrupted recipe resumes where it stopped (a finished phase only rewrites
// its averaged weights, a few seconds) and `npm run pretrain:world` is one command.
import { join } from 'node:path';

import { invalidArgument } from '../errors.js';
import { checkOptions, describe } from '../validate.js';
import { checkOutDir, pretrainWorld, type PretrainOptions, type PretrainResult } from './pretrain.js';

/** The options the recipe sets for every phase: where it reads and writes, and how it reports. */
const SET_BY_RECIPE = ['outDir', 'workDir', 'initFrom', 'resume', 'quiet', 'maxStepsThisRun'] as const;

/** What a phase may set: everything else. */
export type PhaseOptions = Omit<PretrainOptions, (typeof SET_BY_RECIPE)[number]>;

export interface PretrainPhase {
  /** Why the phase is there (printed when it starts). */
  purpose: string;
  options: PhaseOptions;
}

/**
 * The phases of the model in lib/world/model (figures: the README's world section).
 * Phase 1 learns the world from random weights; phase 2 adds layout samples
 * (one object, every attribute named, at high noise), which taught position
 * words; phase 3 is the same mix for longer at a lower peak lr, which made
 * the shapes (shape right in 20 of 52 objects after phase 2, 46 after phase 3).
 */
export const SHIPPED_RECIPE: readonly PretrainPhase[] = [
  { purpose: 'the world from random weights', options: { steps: 4000 } },
  { purpose: 'position words, from layout samples', options: { steps: 6000, layoutFraction: 0.2, seed: 2 } },
  { purpose: 'shapes: the same mix, longer, at a lower lr', options: { steps: 8000, layoutFraction: 0.2, seed: 3, lr: 6e-4 } },
];

export interface RecipeOptions {
  /** Where the last phase's model goes (required, as for pretrainWorld: the packaged lib/world/model only when named). */
  outDir?: string;
  /** The earlier phases' models (phaseN/) and every phase's checkpoints (phaseN-work/) (default `${outDir}/../world-pretrain`). */
  workDir?: string;
  /** Default SHIPPED_RECIPE. */
  phases?: readonly PretrainPhase[];
  /** Continue from each phase's checkpoint when there is one (default true). */
  resume?: boolean;
  quiet?: boolean;
}

/** Runs the phases in order; returns each phase's result. */
export async function pretrainWorldRecipe(options: RecipeOptions = {}): Promise<PretrainResult[]> {
  const fn = 'pretrainWorldRecipe';
  const o = checkOptions(fn, options, ['outDir', 'workDir', 'phases', 'resume', 'quiet']);
  const phases = (o.phases ?? SHIPPED_RECIPE) as readonly PretrainPhase[];
  if (!Array.isArray(phases) || phases.length === 0) throw invalidArgument(`${fn}: phases must be a non-empty array of { purpose, options }, got ${describe(phases)}`);
  phases.forEach((p: unknown, i) => {
    const phase = p as Partial<PretrainPhase> | null;
    if (phase === null || typeof phase !== 'object' || typeof phase.purpose !== 'string' || phase.options === null || typeof phase.options !== 'object') {
      throw invalidArgument(`${fn}: phases[${i}] must be { purpose: string, options: object }, got ${describe(p)}`);
    }
    const clash = SET_BY_RECIPE.find((k) => k in phase.options!);
    if (clash !== undefined) throw invalidArgument(`${fn}: phases[${i}].options.${clash} is the recipe's to set (each phase starts from the one before and writes under workDir; give outDir, workDir, resume and quiet to the recipe)`);
  });
  const outDir = checkOutDir(fn, o.outDir);
  const workDir = (o.workDir as string | undefined) ?? join(outDir, '..', 'world-pretrain');
  const results: PretrainResult[] = [];
  let previous: string | undefined;
  for (const [i, phase] of phases.entries()) {
    const last = i === phases.length - 1;
    const phaseOut = last ? outDir : join(workDir, `phase${i + 1}`);
    if (o.quiet !== true) process.stderr.write(`phase ${i + 1} of ${phases.length}: ${phase.purpose} → ${phaseOut}\n`);
    results.push(await pretrainWorld({
      ...phase.options,
      outDir: phaseOut,
      workDir: join(workDir, `phase${i + 1}-work`),
      ...(previous === undefined ? {} : { initFrom: previous }),
      ...(o.resume === undefined ? {} : { resume: o.resume as boolean }),
      ...(o.quiet === undefined ? {} : { quiet: o.quiet as boolean }),
    }));
    previous = phaseOut;
  }
  return results;
}
