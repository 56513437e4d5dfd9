// Custom Diffusion on the embedded world: teach the model held-out concepts
// (shapes and patterns its pretraining never showed) from their instance
// images, then measure it the way the Custom Diffusion paper does: image
// alignment (does the subject look like the concept?) and text alignment (is
// the rest of the prompt still followed?), against the untrained model.
import sharp from 'sharp';

import { invalidArgument } from '../errors.js';
import { applyConcepts } from '../concepts/apply.js';
import { methodByName, METHODS, type FindNeuronsOptions, type MethodName, type MethodTrainResult, type FindNeuronsResult, type TrainCustomDiffusionOptions, type TrainCustomDiffusionResult } from '../methods/index.js';
import type { ConceptWeights } from '../concepts/types.js';
import { StableDiffusionPipeline } from '../pipeline/txt2img.js';
import { checkBoolean, checkOptions, describe } from '../validate.js';
import { conceptById, conceptImages, type ConceptImage } from './concepts.js';
import { evaluate, type EvaluateOptions, type EvaluateResult } from './evaluate.js';
import { WORLD_RESOLUTION } from './model-config.js';
import { backgroundPhrase, POSITION_PHRASE, type Position, type Scene } from './scene.js';
import { worldEncoderPath, worldModelDir } from './model-path.js';

/** Scenes the concept never appeared in during training: position, background, size, a second object. */
export const COMPOSITION_TEMPLATES: readonly string[] = Object.freeze([
  'a {} on the left',
  'a {} on the right',
  'a {} at the top',
  'a {} on a blue background',
  'a {} on a white background',
  'a small {}',
]);

export interface TeachWorldOptions {
  /** World concept ids (see CONCEPTS), trained jointly when several. */
  concepts: readonly string[];
  /** The personalization method (default 'custom-diffusion'; see lib/methods). Cones takes one concept, steps as its passes. */
  method?: MethodName;
  /** Cones' own settings (passes come from steps). */
  neurons?: Pick<FindNeuronsOptions, 'rho' | 'topFraction' | 'threshold' | 'layers' | 'priorLossWeight' | 'batchSize'>;
  /** Method 'tuning-encoder': an encoder file (default the shipped world encoder); steps are its tuning steps (default 12). */
  encoder?: string;
  /** The modifier token of each concept (default <new1>, <new2>, ... in order); e.g. ['<new2>'] to merge with a <new1> trained apart. */
  tokens?: readonly string[];
  model?: string;
  steps?: number;
  /** Base learning rate before the batch scaling (default WORLD_TEACH_LR, 1e-3). */
  lr?: number;
  /** Regularization images generated from the class prompt (default 24). */
  numRegImages?: number;
  seed?: number;
  workDir?: string;
  quiet?: boolean;
  mode?: TrainCustomDiffusionOptions['mode'];
  /**
   * Each instance image's prompt names its position and background ("a <new1>
   * shape on the left on a blue background"), so the token learns the object
   * alone and the scene words keep their meaning; the five images are joined
   * by their mirror images, "left" and "right" swapped (default true).
   * Augmentation and random flips would make those words wrong, so they
   * default to off with it. Figures in the README.
   */
  captions?: boolean;
  /** The paper's rescale-and-paste augmentation (default: on without captions, off with them); see trainCustomDiffusion. */
  augment?: boolean;
  /** Random horizontal flips (default: as augment). */
  hflip?: boolean;
}

/** "a <new1> shape on the left on a blue background": an instance's scene in the world's grammar, with the token before the class word. */
export function instanceCaption(scene: Scene, token: string, classWord: string): string {
  return `a ${token} ${classWord} ${POSITION_PHRASE[scene.objects[0].position]} ${backgroundPhrase(scene.background)}`;
}

/** The instances the world's concepts are taught from (seed 0, the model's resolution). */
function instances(id: string, count: number): ConceptImage[] {
  return conceptImages(id, { count, resolution: WORLD_RESOLUTION, seed: 0 });
}

function png(image: Uint8Array): Promise<Buffer> {
  return sharp(Buffer.from(image), { raw: { width: WORLD_RESOLUTION, height: WORLD_RESOLUTION, channels: 3 } }).png().toBuffer();
}

/** The prompts of conceptPngs(id, count)'s images, in order (see instanceCaption). */
export function conceptCaptions(id: string, token: string, count = 5): string[] {
  const { classWord } = conceptById(id, 'conceptCaptions');
  return instances(id, count).map((c) => instanceCaption(c.scene, token, classWord));
}

/** The instance images of a world concept as PNG buffers, the form the trainer reads. */
export async function conceptPngs(id: string, count = 5): Promise<Buffer[]> {
  return Promise.all(instances(id, count).map((c) => png(c.image)));
}

const MIRRORED: Readonly<Record<Position, Position>> = { left: 'right', right: 'left', top: 'top', bottom: 'bottom', center: 'center' };

/** conceptPngs and conceptCaptions, plus each image mirrored left to right, captioned as the mirrored scene (left and right swapped). */
export async function mirroredInstances(id: string, token: string, count = 5): Promise<{ images: Buffer[]; prompts: string[] }> {
  const { classWord } = conceptById(id, 'mirroredInstances');
  const list = instances(id, count);
  const pngs = await Promise.all(list.map((c) => png(c.image)));
  const flipped = await Promise.all(pngs.map((p) => sharp(p).flop().png().toBuffer()));
  const mirror = (scene: Scene): Scene => ({ ...scene, objects: scene.objects.map((o) => ({ ...o, position: MIRRORED[o.position] })) });
  return {
    images: [...pngs, ...flipped],
    prompts: [...list.map((c) => instanceCaption(c.scene, token, classWord)), ...list.map((c) => instanceCaption(mirror(c.scene), token, classWord))],
  };
}

/**
 * The base learning rate for teaching the world model (before the batch
 * scaling): it is tiny and was pretrained at 1e-3, and SD's 1e-5 barely moves
 * it in 250 steps (measured on 'star' with the first-phase model and
 * captions: false: image alignment 0.329 → 0.005 at 1e-5, 0.417 at 2.5e-4,
 * 0.604 at 1e-3). `imprint train` uses it too when no --model is given.
 */
export const WORLD_TEACH_LR = 1e-3;

/** Teaches the world model concepts <new1>, <new2>, ... (one token per concept, in order, unless `tokens` names them). */
export async function teachWorldConcepts(options: TeachWorldOptions & { method?: 'custom-diffusion' }): Promise<TrainCustomDiffusionResult>;
export async function teachWorldConcepts(options: TeachWorldOptions & { method: 'cones' }): Promise<FindNeuronsResult>;
export async function teachWorldConcepts(options: TeachWorldOptions): Promise<MethodTrainResult>;
export async function teachWorldConcepts(options: TeachWorldOptions): Promise<MethodTrainResult> {
  const fn = 'teachWorldConcepts';
  const o = checkOptions(fn, options, ['concepts', 'method', 'tokens', 'model', 'steps', 'lr', 'numRegImages', 'seed', 'workDir', 'quiet', 'mode', 'captions', 'augment', 'hflip', 'neurons', 'encoder']);
  const captions = checkBoolean(fn, 'captions', o.captions, true);
  const method = methodByName(fn, o.method);
  const ids = o.concepts as readonly string[];
  if (!Array.isArray(ids) || ids.length === 0) throw invalidArgument(`${fn}: concepts must be a non-empty list of world concept ids, got ${describe(ids)}`);
  if (method.name === 'cones') return findWorldNeurons(fn, ids, o);
  if (method.name === 'tuning-encoder') return personalizeWorld(fn, ids, o);
  if (o.encoder !== undefined) throw invalidArgument(`${fn}: encoder is for method 'tuning-encoder'`);
  const tokens = (o.tokens ?? ids.map((_, i) => `<new${i + 1}>`)) as readonly string[];
  if (!Array.isArray(tokens) || tokens.length !== ids.length || !tokens.every((t) => typeof t === 'string')) {
    throw invalidArgument(`${fn}: tokens must be one string per concept (${ids.length}), got ${describe(tokens)}`);
  }
  const specs = await Promise.all(ids.map(async (id, i) => {
    const c = conceptById(id, fn);
    // Prompts in the world's own grammar: its captions never say "photo of", so
    // the trainer's default prompts would be out of distribution for this model.
    return {
      token: tokens[i], classWord: c.classWord, numRegImages: (o.numRegImages ?? 24) as number,
      instancePrompt: `a ${tokens[i]} ${c.classWord}`, classPrompt: `a ${c.classWord}`,
      ...(captions ? await mirroredInstances(id, tokens[i]).then((m) => ({ images: m.images, instancePrompts: m.prompts })) : { images: await conceptPngs(id) }),
    };
  }));
  const train: TrainCustomDiffusionOptions = {
    model: (o.model ?? worldModelDir()) as string,
    concepts: specs,
    steps: (o.steps ?? (ids.length > 1 ? 500 : 250)) as number,
    seed: (o.seed ?? 0) as number,
    regSteps: 20,
    quiet: o.quiet === true,
  };
  // See WORLD_TEACH_LR (scaled by batch and prior as usual).
  train.lr = (o.lr ?? WORLD_TEACH_LR) as number;
  if (o.mode !== undefined) train.mode = o.mode as TrainCustomDiffusionOptions['mode'];
  if (o.workDir !== undefined) train.workDir = o.workDir as string;
  const augment = (o.augment ?? !captions) as boolean;
  train.augment = augment;
  train.hflip = (o.hflip ?? augment) as boolean;
  return METHODS['custom-diffusion'].train(train);
}

/** The tuning encoder on the world: one concept from its first instance image, with a pretrained world encoder (`encoder`: its file). */
async function personalizeWorld(fn: string, ids: readonly string[], o: Record<string, unknown>): Promise<MethodTrainResult> {
  if (ids.length !== 1) throw invalidArgument(`${fn}: the tuning encoder personalizes one concept at a time (got ${ids.length})`);
  const unused = ['lr', 'mode', 'captions', 'augment', 'hflip', 'numRegImages', 'workDir', 'neurons'].filter((k) => o[k] !== undefined);
  if (unused.length > 0) throw invalidArgument(`${fn}: ${unused.join(', ')} ${unused.length > 1 ? 'are' : 'is'} not used by method 'tuning-encoder'`);
  const encoder = o.encoder ?? worldEncoderPath();
  if (typeof encoder !== 'string') throw invalidArgument(`${fn}: encoder must be the file of a world encoder (imprint pretrain-encoder writes one), got ${describe(encoder)}`);
  const c = conceptById(ids[0], fn);
  const tokens = o.tokens as string[] | undefined;
  return METHODS['tuning-encoder'].train({
    model: (o.model ?? worldModelDir()) as string, encoder, image: (await conceptPngs(ids[0], 1))[0], classWord: c.classWord,
    ...(tokens ? { token: tokens[0] } : {}), ...(o.steps !== undefined ? { steps: o.steps as number } : {}), seed: (o.seed ?? 0) as number, quiet: o.quiet === true,
  });
}

/** Cones on the world: one concept's neurons, bound to its class word ("a shape"), with the world's regularization defaults. */
async function findWorldNeurons(fn: string, ids: readonly string[], o: Record<string, unknown>): Promise<MethodTrainResult> {
  if (ids.length !== 1) throw invalidArgument(`${fn}: cones finds one subject's neurons at a time (got ${ids.length} concepts); find each, then apply them together`);
  const unused = ['tokens', 'lr', 'mode', 'captions', 'augment', 'hflip'].filter((k) => o[k] !== undefined);
  if (unused.length > 0) throw invalidArgument(`${fn}: ${unused.join(', ')} ${unused.length > 1 ? 'are' : 'is'} not used by method 'cones'`);
  const c = conceptById(ids[0], fn);
  const extra = (o.neurons ?? {}) as TeachWorldOptions['neurons'];
  return METHODS.cones.train({
    model: (o.model ?? worldModelDir()) as string, images: await conceptPngs(ids[0]), classWord: c.classWord, prompt: `a ${c.classWord}`,
    numRegImages: (o.numRegImages ?? 24) as number, regSteps: 20, seed: (o.seed ?? 0) as number, quiet: o.quiet === true,
    // The world's defaults, from the README's sweep: ρ = 100 (ρ ≤ 1 leaves this model's θ in place, 300 diverges), top 0.5 %.
    passes: (o.steps ?? 200) as number, rho: 100, ...(extra?.threshold === undefined ? { topFraction: 0.005 } : {}),
    ...(o.workDir !== undefined ? { workDir: o.workDir as string } : {}),
    ...extra,
  });
}

export interface ConceptScores {
  /** With the concept applied, prompts naming its token. */
  trained: EvaluateResult;
  /** The untrained model, the same prompts with the class word alone. */
  base: EvaluateResult;
}

export interface ScoreWorldOptions {
  model?: string;
  imagesPerPrompt?: number;
  steps?: number;
  seed?: number;
  gridPath?: string;
  /** The untrained model's scores from an earlier call with the same concept id and options (skips generating them again). */
  base?: EvaluateResult;
  /** Called after every denoising step with the steps done and in all, over both models' prompts (for a progress bar). */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Scores a concept (token i of `concept`, world id `id`) on the composition
 * prompts: the trained model with "<newi> classword", the base model with the
 * class word alone. The base model's scores depend only on the concept and
 * the options, so several concepts' scores can share them (`base`).
 */
export async function scoreWorldConcept(concept: ConceptWeights, tokenIndex: number, id: string, options: ScoreWorldOptions = {}): Promise<ConceptScores> {
  const fn = 'scoreWorldConcept';
  const spec = conceptById(id, fn);
  // A concept without tokens (Cones: neurons bound to the class word) is prompted by its class word alone.
  const tok = concept.tokens.length === 0 ? undefined : concept.tokens[tokenIndex];
  if (!tok && concept.tokens.length > 0) throw invalidArgument(`${fn}: the concept has no token ${tokenIndex} (it has ${concept.tokens.length})`);
  const model = options.model ?? worldModelDir();
  const common = { imagesPerPrompt: options.imagesPerPrompt ?? 4, steps: options.steps ?? 25, seed: options.seed ?? 0, concept: id };
  // One count over both evaluations (the same prompts and steps each): the base model's first, when it is drawn here.
  const report = options.onProgress;
  const parts = options.base === undefined ? 2 : 1;
  const progress = (part: number): Pick<EvaluateOptions, 'onProgress'> => (report === undefined ? {} : { onProgress: (d, t) => report(part * t + d, parts * t) });
  const base = options.base ?? await evaluate({ ...common, model, prompts: COMPOSITION_TEMPLATES.map((t) => t.replace('{}', spec.classWord)), ...progress(0) });
  const pipe = await StableDiffusionPipeline.fromPretrained(model, { scheduler: 'dpm++2m' });
  try {
    await applyConcepts(pipe, [concept]);
    const trained = await evaluate({ ...common, model: pipe, prompts: COMPOSITION_TEMPLATES.map((t) => t.replace('{}', tok ? `${tok.token} ${spec.classWord}` : spec.classWord)), ...(options.gridPath ? { gridPath: options.gridPath } : {}), ...progress(parts - 1) });
    return { trained, base };
  } finally {
    pipe.dispose();
  }
}
