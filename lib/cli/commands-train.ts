// `imprint train`: a personalization method from the command line (--method,
// Custom Diffusion by default; lib/methods lists them). One concept from
// flags (--token --class --images --initializer) or several from a JSON file
// (--concepts), trained jointly; the result is written to --out.
//
// The result is an Imprint concept file (lib/concepts/concept-file.ts).
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import { invalidArgument } from '../errors.js';
import { saveEncoder } from '../methods/tuning-encoder/encoder-file.js';
import type { PersonalizeOptions } from '../methods/tuning-encoder/personalize.js';
import { pretrainEncoder, type PretrainEncoderOptions, type PretrainEncoderResult } from '../methods/tuning-encoder/pretrain.js';
import { pretrainWorldEncoder, WORLD_ENCODER_TUNING } from '../world/encoder.js';
import { disposeConcept, saveConcept } from '../concepts/concept-file.js';
import type { ConceptSpec, TrainCustomDiffusionOptions } from '../methods/custom-diffusion/train.js';
import { DEFAULT_METHOD, methodByName, METHOD_NAMES, METHODS, type FindNeuronsOptions, type MethodTrainResult } from '../methods/index.js';
import { isPlainObject } from '../validate.js';
import { worldModelDir } from '../world/model-path.js';
import { WORLD_TEACH_LR } from '../world/teach.js';
import { checkOutputFolder, deviceFlags, int, need, num, positive, quietFlag, readFlagFile, str, type Command, type Values } from './flags.js';

/** Concepts from a JSON file: an array of ConceptSpec; relative image and folder paths are read from the file's folder. */
export function readConceptsFile(path: string): ConceptSpec[] {
  const text = readFlagFile('concepts', path);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw invalidArgument(`--concepts ${path}: ${(e as Error).message}`);
  }
  if (!Array.isArray(json) || json.length === 0) throw invalidArgument(`--concepts ${path} must hold a non-empty JSON array of { token, classWord, images, ... }`);
  const base = dirname(resolve(path));
  const at = (p: unknown): unknown => (typeof p === 'string' && !isAbsolute(p) ? join(base, p) : p);
  return json.map((c: unknown, i) => {
    if (!isPlainObject(c)) throw invalidArgument(`--concepts ${path}: entry ${i} must be an object { token, classWord, images, ... }`);
    const out: Record<string, unknown> = { ...c };
    if (typeof c.images === 'string') out.images = at(c.images);
    else if (Array.isArray(c.images)) out.images = c.images.map(at);
    if (c.regImages !== undefined) out.regImages = at(c.regImages);
    return out as unknown as ConceptSpec;
  });
}

/** Writes a trained concept in the layout described at the top of this file (atomically). */
export const TRAIN_COMMANDS: Record<string, Command> = {
  train: {
    summary: 'teach the model new concepts (one from flags, several from --concepts) with a personalization method and write the concept file',
    options: {
      method: { type: 'string', arg: METHOD_NAMES.join('|'), help: 'the personalization method', default: DEFAULT_METHOD },
      model: { type: 'string', arg: 'dir', help: 'diffusers model folder', default: 'the embedded world model' },
      token: { type: 'string', arg: 'word', help: 'the new token', default: '<new1>' },
      class: { type: 'string', arg: 'word', help: "the concept's class, e.g. dog" },
      images: { type: 'string', arg: 'dir', help: "folder of the concept's images (an image's same-name .txt, naming the token, is its prompt)" },
      initializer: { type: 'string', arg: 'word', help: 'an existing one-token word the new token starts from', default: 'pll' },
      prompt: { type: 'string', arg: 'text', help: 'instance prompt', default: 'photo of a <token> <class>' },
      'class-prompt': { type: 'string', arg: 'text', help: 'prompt of the regularization images', default: 'photo of a <class>' },
      'reg-images': { type: 'string', arg: 'dir', help: 'regularization images with .txt captions', default: 'sampled by the model' },
      'num-reg-images': { type: 'string', arg: 'n', help: 'regularization images', default: 200 },
      concepts: { type: 'string', arg: 'file', help: 'JSON array of concepts { token, classWord, images, initializer, instancePrompts, ... } (instead of the flags above)' },
      out: { type: 'string', arg: 'file', help: 'concept file to write', default: 'concept.safetensors' },
      mode: { type: 'string', arg: 'kv|cross', help: "what trains: attn2 K/V, or all of attn2 ('cross', for faces)", default: 'kv' },
      steps: { type: 'string', arg: 'n', help: 'training steps (cones: statistic passes)', default: '250, 500 for several concepts; cones 200' },
      'batch-size': { type: 'string', arg: 'n', help: 'instance images per step (tuning-encoder: noise draws of the image)', default: "2; tuning-encoder: the encoder file's, else 2" },
      lr: { type: 'string', arg: 'x', help: 'base learning rate', default: `1e-5 with --model, ${WORLD_TEACH_LR} on the embedded world model; tuning-encoder: the encoder file's, else 2e-3` },
      'no-scale-lr': { type: 'boolean', help: 'use --lr as is (not × batch, × 2 with prior preservation)' },
      'prior-loss-weight': { type: 'string', arg: 'w', help: 'regularization loss weight (0 = no prior preservation)', default: 1 },
      'no-augment': { type: 'boolean', help: 'no random scale, paste or crop' },
      'no-hflip': { type: 'boolean', help: 'no random horizontal flips' },
      resolution: { type: 'string', arg: 'px', help: 'training image side', default: "the model's" },
      seed: { type: 'string', arg: 'n', help: 'random seed', default: 0 },
      'reg-steps': { type: 'string', arg: 'n', help: 'sampling steps per generated regularization image', default: 30 },
      'work-dir': { type: 'string', arg: 'dir', help: 'checkpoints and regularization cache' },
      'checkpoint-every': { type: 'string', arg: 'n', help: 'steps between checkpoints', default: 50 },
      fresh: { type: 'boolean', help: 'ignore an existing checkpoint in --work-dir' },
      rho: { type: 'string', arg: 'x', help: 'cones: step size of the multiplicative-mask update', default: '2e-5' },
      'top-fraction': { type: 'string', arg: 'f', help: 'cones: keep this fraction of the candidates with the largest statistic', default: 0.005 },
      threshold: { type: 'string', arg: 's', help: 'cones: keep the neurons whose statistic is at least this (instead of --top-fraction)' },
      layers: { type: 'string', arg: 'kv|kv+self', help: 'cones: candidate weights (cross-attention K/V, or self-attention K/V too)', default: 'kv' },
      encoder: { type: 'string', arg: 'file', help: 'tuning-encoder: the pretrained encoder (imprint pretrain-encoder)' },
      image: { type: 'string', arg: 'file', help: "tuning-encoder: the concept's one image" },
      'pull-weight': { type: 'string', arg: 'w', help: "tuning-encoder: L2 pull toward the encoder's predictions", default: "the encoder file's, else 1" },
      device: deviceFlags.device,
      ...quietFlag,
    },
    async run(v) {
      // Checked first: a wrong name should not wait for the model to load.
      const method = methodByName('--method', str(v, 'method') ?? DEFAULT_METHOD);
      const out = str(v, 'out') ?? 'concept.safetensors';
      checkOutputFolder('out', out);
      const model = str(v, 'model') ?? worldModelDir();
      if (!existsSync(join(model, 'model_index.json'))) throw invalidArgument(`--model ${model} is not a diffusers model folder (no model_index.json)`);
      if (method.name === 'cones') {
        await findNeuronsFromFlags(v, model, out);
        return;
      }
      if (method.name === 'tuning-encoder') {
        await personalizeFromFlags(v, model, out);
        return;
      }
      const cdOnly = ['rho', 'top-fraction', 'threshold', 'layers'].filter((f) => v[f] !== undefined);
      if (cdOnly.length > 0) throw invalidArgument(`${cdOnly.map((f) => `--${f}`).join(', ')} ${cdOnly.length > 1 ? 'are' : 'is'} for --method cones`);
      const teOnly = ['encoder', 'image', 'pull-weight'].filter((f) => v[f] !== undefined);
      if (teOnly.length > 0) throw invalidArgument(`${teOnly.map((f) => `--${f}`).join(', ')} ${teOnly.length > 1 ? 'are' : 'is'} for --method tuning-encoder`);
      const file = str(v, 'concepts');
      let concepts: ConceptSpec[];
      if (file !== undefined) {
        const clash = ['token', 'class', 'images', 'initializer', 'prompt', 'class-prompt', 'reg-images', 'num-reg-images'].filter((f) => v[f] !== undefined);
        if (clash.length > 0) throw invalidArgument(`--concepts describes every concept; drop ${clash.map((f) => `--${f}`).join(', ')}`);
        concepts = readConceptsFile(file);
      } else {
        const classWord = str(v, 'class');
        const images = str(v, 'images');
        if (classWord === undefined || images === undefined) throw invalidArgument('give --class and --images (or --concepts with a JSON file)');
        const c: Record<string, unknown> = { classWord, images };
        const copy = (flag: string, key: string): void => {
          if (str(v, flag) !== undefined) c[key] = str(v, flag);
        };
        copy('token', 'token');
        copy('initializer', 'initializer');
        copy('prompt', 'instancePrompt');
        copy('class-prompt', 'classPrompt');
        copy('reg-images', 'regImages');
        if (int(v, 'num-reg-images') !== undefined) c.numRegImages = int(v, 'num-reg-images');
        concepts = [c as unknown as ConceptSpec];
      }
      const o: TrainCustomDiffusionOptions = {
        model, concepts, scaleLr: v['no-scale-lr'] !== true, augment: v['no-augment'] !== true, hflip: v['no-hflip'] !== true, resume: v.fresh !== true, quiet: v.quiet === true,
      };
      // The embedded world model is tiny and was pretrained at 1e-3: SD's 1e-5 would barely move it (see WORLD_TEACH_LR).
      if (str(v, 'model') === undefined) o.lr = WORLD_TEACH_LR;
      const mode = str(v, 'mode');
      if (mode !== undefined) o.mode = mode as TrainCustomDiffusionOptions['mode'];
      const work = str(v, 'work-dir');
      if (work !== undefined) o.workDir = work;
      const device = str(v, 'device');
      if (device !== undefined) o.device = device;
      const numeric: Array<[keyof TrainCustomDiffusionOptions, number | undefined]> = [['steps', int(v, 'steps')], ['batchSize', int(v, 'batch-size')], ['lr', positive(v, 'lr')],
        ['priorLossWeight', num(v, 'prior-loss-weight')], ['resolution', int(v, 'resolution')], ['seed', int(v, 'seed', 0)], ['regSteps', int(v, 'reg-steps')], ['checkpointEvery', int(v, 'checkpoint-every')]];
      for (const [key, value] of numeric) if (value !== undefined) (o as unknown as Record<string, unknown>)[key] = value;
      await saveResult(out, await METHODS['custom-diffusion'].train(o));
    },
  },
};

/** Writes the concept (atomically) and prints the one-line JSON summary. */
async function saveResult(out: string, r: MethodTrainResult, extra: Record<string, unknown> = {}): Promise<void> {
  let saved: { bytes: number };
  try {
    saved = await saveConcept(out, r.concept);
  } finally {
    disposeConcept(r.concept);
  }
  process.stdout.write(`${JSON.stringify({ out, method: r.concept.method, bytes: saved.bytes, steps: r.steps, finalLoss: r.losses.at(-1), secondsPerStep: r.secondsPerStep, ...extra })}\n`);
}

/** `imprint train --method tuning-encoder`: one image → the encoder's prediction → --steps tuning steps (default 12). */
async function personalizeFromFlags(v: Values, model: string, out: string): Promise<void> {
  const unused = ['concepts', 'images', 'initializer', 'prompt', 'class-prompt', 'reg-images', 'num-reg-images', 'mode', 'no-scale-lr', 'prior-loss-weight', 'no-augment', 'no-hflip',
    'reg-steps', 'work-dir', 'checkpoint-every', 'fresh', 'rho', 'top-fraction', 'threshold', 'layers'].filter((f) => v[f] !== undefined);
  if (unused.length > 0) throw invalidArgument(`${unused.map((f) => `--${f}`).join(', ')} ${unused.length > 1 ? 'are' : 'is'} not used by --method tuning-encoder`);
  const encoder = need(v, 'encoder', '<file>: a pretrained encoder (imprint pretrain-encoder writes one)');
  const image = need(v, 'image', "<file>: the concept's one image");
  const o: PersonalizeOptions = { model, encoder, image, quiet: v.quiet === true };
  for (const [key, flag] of [['token', 'token'], ['classWord', 'class'], ['device', 'device']] as const) if (str(v, flag) !== undefined) o[key] = str(v, flag)!;
  const numeric: Array<[keyof PersonalizeOptions, number | undefined]> = [['steps', int(v, 'steps', 0)], ['batchSize', int(v, 'batch-size')], ['lr', positive(v, 'lr')],
    ['pullWeight', num(v, 'pull-weight')], ['resolution', int(v, 'resolution')], ['seed', int(v, 'seed', 0)]];
  for (const [key, value] of numeric) if (value !== undefined) (o as unknown as Record<string, unknown>)[key] = value;
  await saveResult(out, await METHODS['tuning-encoder'].train(o));
}

/** `imprint pretrain-encoder`: a tuning encoder for a model and a domain's images (the embedded world's without --model). */
export const ENCODER_COMMANDS: Record<string, Command> = {
  'pretrain-encoder': {
    summary: "pretrain the tuning encoder on a domain's images (without --model: the embedded world, its procedural single-object scenes)",
    options: {
      model: { type: 'string', arg: 'dir', help: 'diffusers model folder', default: 'the embedded world model' },
      images: { type: 'string', arg: 'dir', help: "the domain's images (needed with --model)" },
      class: { type: 'string', arg: 'word', help: "the domain's class word (needed with --model)", default: "'shape' on the world" },
      out: { type: 'string', arg: 'file', help: 'encoder file to write', default: 'encoder.safetensors' },
      steps: { type: 'string', arg: 'n', help: 'training steps', default: 2000 },
      'batch-size': { type: 'string', arg: 'n', help: 'images per step', default: '4 (world: 8)' },
      lr: { type: 'string', arg: 'x', help: 'peak learning rate (warm-up, then cosine)', default: '1e-3' },
      rank: { type: 'string', arg: 'r', help: 'LoRA rank of the predictions', default: 4 },
      conv: { type: 'string', arg: 'c', help: 'channels of a 3×3 convolution over each UNet feature map', default: 'none' },
      'lora-scale': { type: 'string', arg: 's', help: 'the constant s of the predicted ΔW = s·up·down', default: 1 },
      alpha: { type: 'string', arg: 'a', help: 'dual-path blend α (1: no dual path)', default: 0.5 },
      'contrastive-weight': { type: 'string', arg: 'w', help: 'weight of the contrastive nearest-word loss (0: none)', default: 0.01 },
      seed: { type: 'string', arg: 'n', help: 'random seed', default: 0 },
      'work-dir': { type: 'string', arg: 'dir', help: 'checkpoints (a rerun resumes)' },
      'checkpoint-every': { type: 'string', arg: 'n', help: 'steps between checkpoints', default: 250 },
      'max-steps-this-run': { type: 'string', arg: 'n', help: 'stop after this many steps (resume later with the same --work-dir)' },
      fresh: { type: 'boolean', help: 'ignore an existing checkpoint in --work-dir' },
      ...quietFlag,
    },
    async run(v) {
      const out = str(v, 'out') ?? 'encoder.safetensors';
      checkOutputFolder('out', out);
      const model = str(v, 'model');
      const o: Record<string, unknown> = { resume: v.fresh !== true, quiet: v.quiet === true };
      const numeric: Array<[string, number | undefined]> = [['steps', int(v, 'steps')], ['batchSize', int(v, 'batch-size')], ['lr', positive(v, 'lr')], ['rank', int(v, 'rank')],
        ['seed', int(v, 'seed', 0)], ['checkpointEvery', int(v, 'checkpoint-every')], ['maxStepsThisRun', int(v, 'max-steps-this-run')],
        ['alpha', num(v, 'alpha')], ['contrastiveWeight', num(v, 'contrastive-weight')], ['conv', int(v, 'conv')], ['loraScale', positive(v, 'lora-scale')]];
      for (const [key, value] of numeric) if (value !== undefined) o[key] = value;
      if (str(v, 'work-dir') !== undefined) o.workDir = str(v, 'work-dir');
      let r: PretrainEncoderResult;
      let classWord: string;
      if (model === undefined) {
        if (str(v, 'images') !== undefined || str(v, 'class') !== undefined) throw invalidArgument('--images and --class go with --model (the world encoder trains on its own scenes)');
        classWord = 'shape';
        r = await pretrainWorldEncoder(o);
      } else {
        classWord = need(v, 'class', "<word>: the domain's class, e.g. dog");
        r = await pretrainEncoder({ ...o, model, images: need(v, 'images', "<dir>: the domain's images"), classWord } as PretrainEncoderOptions);
      }
      try {
        if (r.steps < (o.steps as number | undefined ?? 2000)) {
          process.stdout.write(`${JSON.stringify({ stoppedAt: r.steps, workDir: o.workDir ?? null, note: 'rerun with the same --work-dir to continue' })}\n`);
          return;
        }
        await saveEncoder(out, r.encoder, { classWord, baseFingerprint: r.baseFingerprint, settings: r.settings, ...(model === undefined ? { tuning: WORLD_ENCODER_TUNING } : {}) });
        process.stdout.write(`${JSON.stringify({ out, steps: r.steps, finalLoss: r.losses.at(-1), secondsPerStep: r.secondsPerStep })}\n`);
      } finally {
        r.encoder.dispose();
      }
    },
  },
};

/** `imprint train --method cones`: one subject's concept neurons (--steps statistic passes). */
async function findNeuronsFromFlags(v: Values, model: string, out: string): Promise<void> {
  const cdOnly = ['concepts', 'token', 'initializer', 'mode', 'lr', 'no-scale-lr', 'no-augment', 'no-hflip'].filter((f) => v[f] !== undefined);
  if (cdOnly.length > 0) throw invalidArgument(`${cdOnly.map((f) => `--${f}`).join(', ')} ${cdOnly.length > 1 ? 'are' : 'is'} not used by --method cones`);
  const classWord = str(v, 'class');
  const images = str(v, 'images');
  if (classWord === undefined || images === undefined) throw invalidArgument('give --class and --images (the subject\'s photos)');
  const o: FindNeuronsOptions = { model, images, classWord, resume: v.fresh !== true, quiet: v.quiet === true };
  // The world's captions never say "photo of": its prompt is the class word alone.
  if (str(v, 'model') === undefined) o.prompt = `a ${classWord}`;
  const strings: Array<[keyof FindNeuronsOptions, string]> = [['prompt', 'prompt'], ['classPrompt', 'class-prompt'], ['regImages', 'reg-images'], ['workDir', 'work-dir'], ['device', 'device'], ['layers', 'layers']];
  for (const [key, flag] of strings) if (str(v, flag) !== undefined) (o as unknown as Record<string, unknown>)[key] = str(v, flag);
  const numeric: Array<[keyof FindNeuronsOptions, number | undefined]> = [['passes', int(v, 'steps')], ['batchSize', int(v, 'batch-size')], ['rho', positive(v, 'rho')],
    ['topFraction', num(v, 'top-fraction')], ['threshold', num(v, 'threshold')], ['priorLossWeight', num(v, 'prior-loss-weight')], ['numRegImages', int(v, 'num-reg-images')],
    ['resolution', int(v, 'resolution')], ['seed', int(v, 'seed', 0)], ['regSteps', int(v, 'reg-steps')], ['checkpointEvery', int(v, 'checkpoint-every')]];
  for (const [key, value] of numeric) if (value !== undefined) (o as unknown as Record<string, unknown>)[key] = value;
  const r = await METHODS.cones.train(o);
  await saveResult(out, r, { neurons: r.counts.neurons, candidates: r.counts.candidates });
}
