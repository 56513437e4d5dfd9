// The personalization methods Imprint has, by the name `imprint train
// --method` and teachWorldConcepts({ method }) take. A method is a folder
// here (custom-diffusion/, cones/, tuning-encoder/) that keeps
// only its policy — what trains, what its loss adds, what it saves — and runs
// on the shared layers: lib/train (the denoising step, run state, prior
// batches, latent cache) and lib/concepts (data, regularization images,
// fingerprint, the concept container and file, applyConcepts).
import { invalidArgument } from '../errors.js';
import type { ConceptMethod, ConceptWeights } from '../concepts/types.js';
import { describe } from '../validate.js';
import { findNeurons, type FindNeuronsOptions } from './cones/find.js';
import { trainCustomDiffusion, type TrainCustomDiffusionOptions } from './custom-diffusion/train.js';
import { personalize, type PersonalizeOptions } from './tuning-encoder/personalize.js';

export type { ConceptSpec, TrainCustomDiffusionOptions, TrainCustomDiffusionResult } from './custom-diffusion/train.js';
export type { FindNeuronsOptions, FindNeuronsResult, NeuronLayers } from './cones/find.js';
export type { PersonalizeOptions, PersonalizeResult } from './tuning-encoder/personalize.js';

export interface MethodTrainResult {
  concept: ConceptWeights;
  losses: number[];
  steps: number;
  secondsPerStep: number;
}

export interface PersonalizationMethod<O> {
  name: ConceptMethod;
  /** One line for `imprint train --help`. */
  summary: string;
  /** Trains concepts from images (the method's own options). */
  train(options: O): Promise<MethodTrainResult>;
}

/** The methods that can train today, by name. */
export const METHODS = {
  'custom-diffusion': {
    name: 'custom-diffusion',
    summary: 'cross-attention K/V fine-tuning + new tokens (Kumari et al. 2023); several concepts jointly or merged in closed form',
    train: trainCustomDiffusion,
  } satisfies PersonalizationMethod<TrainCustomDiffusionOptions>,
  cones: {
    name: 'cones',
    summary: 'concept neurons (Liu et al. 2023): the K/V weights whose shutting draws the subject, stored as sparse indices',
    train: findNeurons,
  } satisfies PersonalizationMethod<FindNeuronsOptions>,
  'tuning-encoder': {
    name: 'tuning-encoder',
    summary: 'a pretrained encoder predicts a word embedding and LoRA weights from one image, then ≤ 12 tuning steps (Arar et al. 2023)',
    train: async (o: PersonalizeOptions) => {
      const r = await personalize(o);
      return { concept: r.concept, losses: r.losses, steps: r.losses.length, secondsPerStep: r.secondsPerStep };
    },
  } satisfies PersonalizationMethod<PersonalizeOptions>,
} as const;

export type MethodName = keyof typeof METHODS;
export const METHOD_NAMES = Object.keys(METHODS) as MethodName[];
export const DEFAULT_METHOD: MethodName = 'custom-diffusion';

/** The method called `name` (default Custom Diffusion), or an error listing those there are. */
export function methodByName(fn: string, name: unknown = DEFAULT_METHOD): (typeof METHODS)[MethodName] {
  if (typeof name !== 'string' || !(name in METHODS)) {
    throw invalidArgument(`${fn}: method must be one of ${METHOD_NAMES.map((m) => `'${m}'`).join(', ')}, got ${describe(name)}`);
  }
  return METHODS[name as MethodName];
}
