// The CLI's commands: each names its flags (with help text and defaults) and
// runs one API call. Flag values arrive as strings and are converted and
// checked here, before any work; the API validates them too.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { invalidArgument } from '../errors.js';
import { rgbGrid } from '../pipeline/images.js';
import { StableDiffusionPipeline, type SchedulerName } from '../pipeline/txt2img.js';
import { evaluate, formatEvaluation, WORLD_EVAL_PROMPTS } from '../world/evaluate.js';
import { disposeConcept } from '../concepts/concept-file.js';
import { CONCEPT_IDS, conceptById, conceptImages } from '../world/concepts.js';
import { formatValidation, validateMetrics } from '../world/metrics/validation.js';
import { scoreWorldConcept, teachWorldConcepts } from '../world/teach.js';
import { pretrainWorld } from '../world/pretrain.js';
import { pretrainWorldRecipe } from '../world/recipe.js';
import { CONCEPT_COMMANDS } from './commands-concepts.js';
import {
  checkOutputFolder, conceptFlag, deviceFlags, deviceOptions, exciteFlags, exciteOptions, imageSide, int, modelDir, need, num, numList, positive, progress, quietFlag, readFlagFile, str, writeAtomic,
  saveGenerated, type Command, type OptionSpec, type Values,
} from './flags.js';
import { ENCODER_COMMANDS, TRAIN_COMMANDS } from './commands-train.js';

export type { Command } from './flags.js';

const modelFlag: OptionSpec = { type: 'string', arg: 'dir', help: 'diffusers model folder', default: 'the embedded world model' };
const sampling: Record<string, OptionSpec> = {
  steps: { type: 'string', arg: 'n', help: 'denoising steps', default: 25 },
  guidance: { type: 'string', arg: 'scale', help: 'classifier-free guidance scale', default: 4 },
  seed: { type: 'string', arg: 'n', help: 'random seed', default: 0 },
  scheduler: { type: 'string', arg: 'name', help: 'ddim, euler, euler-a, dpm++2m or dpm++2m-karras', default: 'dpm++2m' },
};

/** The sampling flags' values, checked, with their defaults. */
function samplingOptions(v: Values): { steps: number; guidanceScale: number; seed: number; scheduler: SchedulerName } {
  return { steps: int(v, 'steps') ?? 25, guidanceScale: num(v, 'guidance') ?? 4, seed: int(v, 'seed', 0) ?? 0, scheduler: (str(v, 'scheduler') ?? 'dpm++2m') as SchedulerName };
}

/** The pretrain-world flags that apply with --recipe (every other one sets a single run). */
const RECIPE_FLAGS = ['recipe', 'out', 'force', 'work-dir', 'fresh', 'quiet'];

export const COMMANDS: Record<string, Command> = {
  demo: {
    summary: 'the embedded world model draws 12 prompts (scores and a grid); with --teach, then learns a held-out concept (Custom Diffusion) and draws it in new scenes',
    options: {
      out: { type: 'string', arg: 'file', help: 'grid PNG to write', default: 'imprint-demo.png' },
      num: { type: 'string', arg: 'n', help: 'images per prompt', default: 4 },
      teach: { type: 'string', arg: 'id', help: `then teach this held-out world concept: ${CONCEPT_IDS.join(', ')}` },
      'train-steps': { type: 'string', arg: 'n', help: 'Custom Diffusion steps', default: 250 },
      ...sampling,
      ...quietFlag,
    },
    async run(v) {
      // Every flag is checked before the first image is drawn.
      const out = str(v, 'out') ?? 'imprint-demo.png';
      checkOutputFolder('out', out);
      const id = conceptFlag(v, 'teach');
      const trainSteps = int(v, 'train-steps') ?? 250;
      const n = int(v, 'num') ?? 4;
      const sample = samplingOptions(v);
      const dir = modelDir({});
      process.stdout.write(`1. the embedded world model (${dir}) draws ${WORLD_EVAL_PROMPTS.length} prompts\n`);
      const t0 = performance.now();
      const r = await evaluate({ ...sample, imagesPerPrompt: n, model: dir, prompts: WORLD_EVAL_PROMPTS, onProgress: progress(v, 'drawing') });
      process.stdout.write(`${formatEvaluation(r)}\n(text alignment: the fraction of the prompt's attributes the image shows; 'imprint validate-metrics' checks the metric)\n\n`);
      let images = r.images;
      // The grid's rows, in order, for the legend file beside it.
      const rows = [...WORLD_EVAL_PROMPTS];
      if (id !== undefined) {
        const spec = conceptById(id);
        process.stdout.write(`2. Custom Diffusion: teaching <new1> ${spec.classWord} = ${spec.description} from ${conceptImages(id).length} images it has never seen (and their mirror images), each captioned with its position and background\n`);
        const trained = await teachWorldConcepts({ concepts: [id], model: dir, steps: trainSteps, quiet: v.quiet === true });
        try {
          const s = await scoreWorldConcept(trained.concept, 0, id, { model: dir, imagesPerPrompt: n, steps: sample.steps, seed: sample.seed, onProgress: progress(v, 'scoring') });
          process.stdout.write(`\nthe taught model, prompts with <new1> ${spec.classWord}:\n${formatEvaluation(s.trained)}\n`);
          process.stdout.write(`\nthe base model, the same prompts with "${spec.classWord}" alone:\n${formatEvaluation(s.base)}\n`);
          process.stdout.write(`(image alignment: how closely the drawn object matches the concept's images, 0 to 1)\n\n`);
          const shown = conceptImages(id).map((c) => c.image).slice(0, n);
          images = [...images, ...shown, ...s.trained.images];
          rows.push(`the concept's training images (${shown.length} of ${conceptImages(id).length})`, ...s.trained.rows.map((row) => row.prompt));
        } finally {
          disposeConcept(trained.concept);
        }
      }
      await writeAtomic(out, await rgbGrid(images, r.resolution, n));
      const legend = `${out.replace(/\.png$/i, '')}.txt`;
      await writeAtomic(legend, Buffer.from(rows.map((row, i) => `row ${i + 1}: ${row}\n`).join('')));
      process.stdout.write(`done in ${((performance.now() - t0) / 1000).toFixed(0)} s; ${out}: one row per prompt${id === undefined ? '' : ", then the concept's images and the taught model's scenes"} (${legend} names each row)\n`);
    },
  },

  generate: {
    summary: 'text to image: write one PNG per image (and optionally a grid)',
    options: {
      model: modelFlag,
      prompt: { type: 'string', arg: 'text', help: 'prompt (repeat for several)', multiple: true },
      negative: { type: 'string', arg: 'text', help: 'negative prompt' },
      width: { type: 'string', arg: 'px', help: "image width, a multiple of the model's VAE factor (8 for Stable Diffusion)", default: 'the model’s sample size' },
      height: { type: 'string', arg: 'px', help: 'image height, likewise', default: 'the model’s sample size' },
      num: { type: 'string', arg: 'n', help: 'images per prompt', default: 1 },
      out: { type: 'string', arg: 'pattern', help: "PNG path, '{i}' replaced by the image index", default: 'imprint-{i}.png' },
      grid: { type: 'string', arg: 'file', help: 'also write all images as one grid PNG' },
      ...sampling,
      ...exciteFlags,
      ...deviceFlags,
      ...quietFlag,
    },
    async run(v) {
      const prompts = (v.prompt as string[] | undefined) ?? [];
      if (prompts.length === 0) throw invalidArgument("give at least one --prompt 'text'");
      checkOutputFolder('out', str(v, 'out'));
      checkOutputFolder('grid', str(v, 'grid'));
      const sample = samplingOptions(v);
      const excite = exciteOptions(v);
      const numImages = int(v, 'num') ?? 1;
      const device = deviceOptions(v);
      const dir = modelDir(v);
      // Width and height are checked before loading too (a positive integer), the multiple once the VAE is known.
      int(v, 'width');
      int(v, 'height');
      const pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler: sample.scheduler, ...device });
      try {
        const config = JSON.parse(readFileSync(join(dir, 'unet', 'config.json'), 'utf8')) as { sample_size?: number };
        const side = (config.sample_size ?? 64) * pipe.vae.factor;
        const width = imageSide(v, 'width', pipe.sizeMultiple, side);
        const height = imageSide(v, 'height', pipe.sizeMultiple, side);
        const negative = str(v, 'negative');
        const r = await pipe.generate({
          prompt: prompts, numImages, width, height, steps: sample.steps, guidanceScale: sample.guidanceScale, seed: sample.seed,
          ...(negative === undefined ? {} : { negativePrompt: negative }), ...excite, onStep: progress(v, 'generate'),
        });
        const paths = await saveGenerated(r.images, v);
        r.images.dispose();
        r.latents.dispose();
        process.stdout.write(paths.join('\n') + '\n');
      } finally {
        pipe.dispose();
      }
    },
  },

  eval: {
    summary: 'generate for a prompt set, score text (and concept image) alignment, print a table, write a grid',
    options: {
      model: modelFlag,
      prompts: { type: 'string', arg: 'file', help: 'prompts, one per line', default: 'the built-in world prompt set' },
      concept: { type: 'string', arg: 'id', help: `score image alignment against this held-out world concept: ${CONCEPT_IDS.join(', ')}` },
      num: { type: 'string', arg: 'n', help: 'images per prompt', default: 4 },
      grid: { type: 'string', arg: 'file', help: 'grid PNG to write (one row per prompt)' },
      json: { type: 'boolean', help: 'print the scores as JSON instead of a table' },
      ...sampling,
      ...quietFlag,
    },
    async run(v) {
      const file = str(v, 'prompts');
      const prompts = file === undefined ? WORLD_EVAL_PROMPTS : readFlagFile('prompts', file).split('\n').map((l) => l.trim()).filter(Boolean);
      if (prompts.length === 0) throw invalidArgument(`--prompts ${file} holds no prompts (one per line)`);
      const concept = conceptFlag(v, 'concept');
      const grid = str(v, 'grid');
      checkOutputFolder('grid', grid);
      const r = await evaluate({
        ...samplingOptions(v), model: modelDir(v), prompts, imagesPerPrompt: int(v, 'num') ?? 4,
        ...(concept === undefined ? {} : { concept }), ...(grid === undefined ? {} : { gridPath: grid }), onProgress: progress(v, 'eval'),
      });
      if (v.json) {
        const { images: _images, ...scores } = r;
        process.stdout.write(JSON.stringify(scores) + '\n');
      } else {
        process.stdout.write(formatEvaluation(r) + '\n');
      }
    },
  },

  'validate-metrics': {
    summary: "check the world metrics on ground-truth images (matching vs mismatched captions, same vs other concept)",
    options: {
      samples: { type: 'string', arg: 'n', help: 'ground-truth scenes', default: 200 },
      seed: { type: 'string', arg: 'n', help: 'world seed', default: 0 },
    },
    async run(v) {
      const samples = int(v, 'samples');
      const seed = int(v, 'seed', 0);
      process.stdout.write(formatValidation(validateMetrics({ ...(samples === undefined ? {} : { samples }), ...(seed === undefined ? {} : { seed }) })) + '\n');
    },
  },

  'pretrain-world': {
    summary: "pretrain a world model from scratch (about 45 minutes on 2 CPU cores), or a further phase with --init-from, or all the shipped model's phases with --recipe shipped (what 'npm run pretrain:world' runs); resumes from its checkpoints",
    options: {
      recipe: { type: 'string', arg: 'name', help: "run a recipe's phases in order, each from the one before: 'shipped' (the embedded model; earlier phases and checkpoints under --work-dir); the per-run flags below --quiet don't apply" },
      out: { type: 'string', arg: 'dir', help: 'where the diffusers folder goes, required (a new one gets the tokenizer of --init-from or of the packaged model)' },
      force: { type: 'boolean', help: 'overwrite a model already in --out' },
      'work-dir': { type: 'string', arg: 'dir', help: 'checkpoint folder', default: '<out>/../world-pretrain' },
      fresh: { type: 'boolean', help: 'ignore an existing checkpoint' },
      ...quietFlag,
      steps: { type: 'string', arg: 'n', help: 'training steps', default: 4000 },
      'batch-size': { type: 'string', arg: 'n', help: 'images per step', default: 16 },
      lr: { type: 'string', arg: 'x', help: 'peak learning rate', default: 0.001 },
      'restarts-at': { type: 'string', arg: 'n,n', help: 'steps where the cosine lr decay restarts toward the next end (as if the run had been extended by resuming)' },
      'object-weight': { type: 'string', arg: 'x', help: 'extra loss weight of object pixels (biases object sizes; see lib/world/pretrain.ts)', default: 0 },
      'high-noise-fraction': { type: 'string', arg: 'x', help: 'share of samples at timesteps 950-999, where the caption alone decides the layout (see lib/world/pretrain.ts)', default: 0 },
      'layout-fraction': { type: 'string', arg: 'x', help: 'share of samples replaced by one-object scenes with every attribute named, at timesteps 950-999 (teaches position words)', default: 0 },
      seed: { type: 'string', arg: 'n', help: 'world and initialisation seed', default: 0 },
      'max-steps-this-run': { type: 'string', arg: 'n', help: 'stop after this many steps (resume later)' },
      'init-from': { type: 'string', arg: 'dir', help: 'start from this world model folder instead of random weights (a further phase)' },
    },
    async run(v) {
      const recipe = str(v, 'recipe');
      if (recipe !== undefined) {
        if (recipe !== 'shipped') throw invalidArgument(`--recipe must be 'shipped', got '${recipe}'`);
        // Every flag but these sets one run, which the recipe sets per phase.
        const perRun = Object.keys(COMMANDS['pretrain-world'].options).find((f) => !RECIPE_FLAGS.includes(f) && v[f] !== undefined);
        if (perRun !== undefined) throw invalidArgument(`--${perRun} does not apply with --recipe (the recipe sets each phase's settings: lib/world/recipe.ts)`);
      }
      // Nothing defaults to the package's own lib/world/model, and a finished model is replaced only on purpose.
      const out = need(v, 'out', '<dir> for the trained model (nothing is written into the package unless named)');
      const existing = ['model_index.json', 'unet'].find((f) => existsSync(join(out, f)));
      if (existing !== undefined && v.force !== true) throw invalidArgument(`--out ${out} already holds a model (${existing}); give --force to overwrite it, or another --out`);
      const work = str(v, 'work-dir');
      const common = { outDir: out, ...(work === undefined ? {} : { workDir: work }), resume: v.fresh !== true, quiet: v.quiet === true };
      if (recipe !== undefined) {
        process.stdout.write(`${JSON.stringify(await pretrainWorldRecipe(common))}\n`);
        return;
      }
      const pick = (key: string, value: number | undefined): Record<string, number> => (value === undefined ? {} : { [key]: value });
      const restartsAt = numList(v, 'restarts-at');
      const initFrom = str(v, 'init-from');
      const r = await pretrainWorld({
        ...common, ...(restartsAt === undefined ? {} : { restartsAt }), ...(initFrom === undefined ? {} : { initFrom }),
        ...pick('steps', int(v, 'steps')), ...pick('batchSize', int(v, 'batch-size')), ...pick('lr', positive(v, 'lr')), ...pick('objectWeight', num(v, 'object-weight')),
        ...pick('highNoiseFraction', num(v, 'high-noise-fraction')), ...pick('layoutFraction', num(v, 'layout-fraction')), ...pick('seed', int(v, 'seed', 0)),
        ...pick('maxStepsThisRun', int(v, 'max-steps-this-run')),
      });
      process.stdout.write(`${JSON.stringify(r)}\n`);
    },
  },

  ...TRAIN_COMMANDS,
  ...ENCODER_COMMANDS,
  ...CONCEPT_COMMANDS,
};
