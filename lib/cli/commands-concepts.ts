// The CLI's concept commands: sample with concept files of any method, merge
// Custom Diffusion concept files in closed form, and convert those to and
// from diffusers' files. Each
// parses its flags and calls one API entry point; the API's errors name the
// problem.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { invalidArgument } from '../errors.js';
import { applyConcepts, unetWeightMap } from '../concepts/apply.js';
import { readCaptionFile } from '../concepts/captions.js';
import { disposeConcept, loadConcept, saveConcept, type SaveConceptOptions } from '../concepts/concept-file.js';
import { exportDiffusers, importDiffusers } from '../methods/custom-diffusion/diffusers-format.js';
import { mergeConcepts, type MergeResult } from '../methods/custom-diffusion/merge.js';
import type { ConceptWeights, ConesConcept, CustomDiffusionConcept } from '../concepts/types.js';
import { combineSubjects } from '../methods/cones/combine.js';
import { ClipTextEncoder } from '../models/clip-text.js';
import { UNet2DConditionModel } from '../models/unet.js';
import { StableDiffusionPipeline, type SchedulerName } from '../pipeline/txt2img.js';
import { checkOutputFolder, deviceFlags, deviceOptions, exciteFlags, exciteOptions, int, list, modelDir, need, num, progress, quietFlag, saveGenerated, str, type Command, type OptionSpec, type Values } from './flags.js';

function compression(values: Values): SaveConceptOptions {
  const energy = num(values, 'energy');
  const rank = num(values, 'rank');
  if (energy === undefined && rank === undefined) return {};
  return { compress: { ...(energy === undefined ? {} : { energy }), ...(rank === undefined ? {} : { rank }) } };
}

async function loadAll(paths: string[]): Promise<ConceptWeights[]> {
  const out: ConceptWeights[] = [];
  try {
    for (const p of paths) out.push(await loadConcept(p));
  } catch (e) {
    out.forEach(disposeConcept);
    throw e;
  }
  return out;
}

function describeSave(r: { path: string; bytes: number; relativeError?: number }): string {
  const size = r.bytes >= 1 << 20 ? `${(r.bytes / (1 << 20)).toFixed(1)} MiB` : `${(r.bytes / 1024).toFixed(1)} KiB`;
  return `${r.path}: ${size}${r.relativeError === undefined ? '' : `, SVD relative error ${r.relativeError.toExponential(2)}`}`;
}

/** The residual table `merge` prints. */
export function formatResiduals(r: MergeResult['residuals']): string {
  const fmt = (x: number): string => (Number.isNaN(x) ? '—' : x.toExponential(2));
  const rows = Object.entries(r.matrices).map(([name, m]) => [name, m.method, fmt(m.targetRelative), fmt(m.regRelative), fmt(m.naive.targetRelative), fmt(m.naive.regRelative)]);
  rows.push(['overall (closed-form matrices)', '', fmt(r.overall.targetRelative), fmt(r.overall.regRelative), fmt(r.overall.naive.targetRelative), fmt(r.overall.naive.regRelative)]);
  const head = ['matrix', 'method', 'target', 'reg', 'sum: target', 'sum: reg'];
  const width = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(width[i]) : c.padStart(width[i]))).join('  ');
  return [line(head), ...rows.map(line), '', 'target = ‖W·C_tgtᵀ − V‖/‖V‖ (0: every concept keeps its outputs); reg = ‖ΔW·C_regᵀ‖/‖W0·C_regᵀ‖ (how much generic captions move); sum = adding the deltas instead'].join('\n');
}

const modelFlag: OptionSpec = { type: 'string', arg: 'dir', help: 'diffusers model folder (the base the concepts were trained on)', default: 'the embedded world model' };
const compressFlags: Record<string, OptionSpec> = {
  energy: { type: 'string', arg: 'fraction', help: 'store ΔW as truncated SVD keeping this fraction of Σσ² (e.g. 0.99)' },
  rank: { type: 'string', arg: 'r', help: 'store ΔW as truncated SVD of at most this rank' },
};

/** `merge` of Cones files: the union of their neuron sets, fine-tuned on multi-subject prompts when --prompt is given. */
async function mergeCones(v: Values, files: string[], concepts: ConceptWeights[], out: string): Promise<void> {
  try {
    const other = concepts.findIndex((c) => c.method !== 'cones');
    if (other >= 0) throw invalidArgument(`${files[other]} is a ${concepts[other].method} concept: merge Cones files with Cones files only`);
    const cdFlags = ['reg-captions', 'target', 'ridge', 'force', 'energy', 'rank'].filter((f) => v[f] !== undefined);
    if (cdFlags.length > 0) throw invalidArgument(`${cdFlags.map((f) => `--${f}`).join(', ')} ${cdFlags.length > 1 ? 'are' : 'is'} not used for Cones concept files`);
    const prompts = list(v, 'prompt');
    const tune = prompts.length > 0;
    const r = await combineSubjects({
      model: modelDir(v), concepts: concepts as ConesConcept[],
      ...(tune ? {
        prompts, excite: list(v, 'excite'), images: list(v, 'images'),
        ...defined({ steps: int(v, 'steps'), lr: num(v, 'lr'), rank: int(v, 'lora-rank'), attentionWeight: num(v, 'attention-weight'), seed: int(v, 'seed', 0) }),
        quiet: v.quiet === true,
      } : {}),
      ...defined({ device: str(v, 'device') }),
    });
    try {
      const saved = await saveConcept(out, r.concept);
      const shut = Object.values(r.shut).reduce((a, s) => ({ count: a.count + s.count, overlap: a.overlap + s.overlap }), { count: 0, overlap: 0 });
      const last = r.losses[r.losses.length - 1];
      process.stdout.write(`united ${concepts.length} neuron sets: ${shut.count} neurons shut, ${shut.overlap} shared${last ? `; fine-tuned ${r.losses.length} steps (diffusion ${last.diffusion.toFixed(4)}, attention ${last.attention.toFixed(4)})` : ''} → ${describeSave(saved)}\n`);
    } finally {
      disposeConcept(r.concept);
    }
  } finally {
    concepts.forEach(disposeConcept);
  }
}

/** The entries of `o` that are not undefined. */
function defined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as Partial<T>;
}

export const CONCEPT_COMMANDS: Record<string, Command> = {
  merge: {
    summary: 'merge separately trained concept files into one: Custom Diffusion in closed form (§3.2, prints the residuals); Cones by uniting the neuron sets, optionally fine-tuned on multi-subject prompts (--prompt)',
    usage: '<concept.safetensors>... --out merged.safetensors [options]',
    positionals: true,
    options: {
      model: modelFlag,
      out: { type: 'string', arg: 'file', help: 'merged concept file to write' },
      'reg-captions': { type: 'string', arg: 'file', help: 'regularization captions, one per line', default: '1000 built-in generic captions' },
      target: { type: 'string', arg: 'template', help: "target caption template, '{token}' and '{class}' filled in (repeat for several)", multiple: true, default: "'{token} {class}' and each token's training prompt" },
      ridge: { type: 'string', arg: 'x', help: 'ridge added to C_regᵀC_reg, relative to its mean diagonal', default: '1e-6' },
      force: { type: 'boolean', help: 'merge concepts trained on another base model' },
      ...compressFlags,
      prompt: { type: 'string', arg: 'text', help: 'cones: a prompt naming every subject to fine-tune on (repeat for several); without it the sets are only united', multiple: true },
      excite: { type: 'string', arg: 'word', help: 'cones: a word of the prompts naming a subject (repeat for each)', multiple: true },
      images: { type: 'string', arg: 'folder', help: "cones: a subject's images, in the order of the concept files (repeat for each)", multiple: true },
      steps: { type: 'string', arg: 'n', help: 'cones: fine-tuning steps', default: 10 },
      lr: { type: 'string', arg: 'x', help: 'cones: learning rate of the LoRA factors', default: '5e-4' },
      'lora-rank': { type: 'string', arg: 'r', help: 'cones: rank of the LoRA on the cross-attention K/V', default: 4 },
      'attention-weight': { type: 'string', arg: 'x', help: "cones: weight of Attend-and-Excite's term beside the diffusion loss", default: 1 },
      seed: { type: 'string', arg: 'n', help: 'cones: seed of the fine-tuning', default: 0 },
      device: { type: 'string', arg: 'dev', help: "cones: 'cpu' or 'cuda:0' for the fine-tuning", default: 'cpu' },
      ...quietFlag,
    },
    async run(v, files) {
      if (files.length === 0) throw invalidArgument('give the concept files to merge');
      const out = need(v, 'out', '<file> for the merged concept');
      checkOutputFolder('out', out);
      const concepts = await loadAll(files);
      if (concepts.some((c) => c.method === 'cones')) return mergeCones(v, files, concepts, out);
      const conesFlags = ['prompt', 'excite', 'images', 'steps', 'lr', 'lora-rank', 'attention-weight', 'seed', 'device', 'quiet'].filter((f) => v[f] !== undefined);
      if (conesFlags.length > 0) {
        concepts.forEach(disposeConcept);
        throw invalidArgument(`${conesFlags.map((f) => `--${f}`).join(', ')} ${conesFlags.length > 1 ? 'are' : 'is'} for Cones concept files`);
      }
      const reg = str(v, 'reg-captions');
      const ridge = num(v, 'ridge');
      const targets = v.target as string[] | undefined;
      const save = compression(v);
      const pipe = await StableDiffusionPipeline.fromPretrained(modelDir(v)).catch((e: unknown) => {
        concepts.forEach(disposeConcept);
        throw e;
      });
      try {
        const r = await mergeConcepts(pipe, concepts as CustomDiffusionConcept[], {
          ...(reg === undefined ? {} : { regCaptions: await readCaptionFile(reg) }),
          ...(ridge === undefined ? {} : { ridge }), force: v.force === true,
          ...(targets === undefined || targets.length === 0 ? {} : { targetTemplates: targets }),
        });
        try {
          const saved = await saveConcept(out, r.concept, save);
          process.stdout.write(`${formatResiduals(r.residuals)}\n\nmerged ${concepts.length} concepts (${r.concept.tokens.map((t) => t.token).join(', ')}) → ${describeSave(saved)}\n`);
        } finally {
          disposeConcept(r.concept);
        }
      } finally {
        concepts.forEach(disposeConcept);
        pipe.dispose();
      }
    },
  },

  sample: {
    summary: 'text to image with concept files applied (their tokens in the prompts, e.g. "photo of a <new1> dog")',
    options: {
      model: modelFlag,
      concept: { type: 'string', arg: 'file', help: 'concept file of any method (repeat for several; methods may be mixed)', multiple: true },
      prompt: { type: 'string', arg: 'text', help: 'prompt (repeat for several)', multiple: true },
      out: { type: 'string', arg: 'pattern', help: "PNG path, '{i}' replaced by the image index", default: 'imprint-{i}.png' },
      grid: { type: 'string', arg: 'file', help: 'also write all images as one grid PNG' },
      num: { type: 'string', arg: 'n', help: 'images per prompt', default: 1 },
      scale: { type: 'string', arg: 'x', help: 'multiply every ΔW by this', default: 1 },
      force: { type: 'boolean', help: 'apply concepts trained on another base model' },
      steps: { type: 'string', arg: 'n', help: 'denoising steps', default: 25 },
      guidance: { type: 'string', arg: 'scale', help: 'classifier-free guidance scale', default: 4 },
      seed: { type: 'string', arg: 'n', help: 'random seed', default: 0 },
      scheduler: { type: 'string', arg: 'name', help: 'ddim, euler, euler-a, dpm++2m or dpm++2m-karras', default: 'dpm++2m' },
      ...exciteFlags,
      ...deviceFlags,
      ...quietFlag,
    },
    async run(v) {
      const prompts = list(v, 'prompt');
      const excite = exciteOptions(v);
      if (prompts.length === 0) throw invalidArgument("give at least one --prompt 'text'");
      const files = list(v, 'concept');
      if (files.length === 0) throw invalidArgument('give at least one --concept file (or use generate for the base model)');
      const numbers = { num: int(v, 'num') ?? 1, scale: num(v, 'scale') ?? 1, steps: int(v, 'steps') ?? 25, guidance: num(v, 'guidance') ?? 4, seed: int(v, 'seed', 0) ?? 0 };
      checkOutputFolder('out', str(v, 'out'));
      checkOutputFolder('grid', str(v, 'grid'));
      const device = deviceOptions(v);
      const dir = modelDir(v);
      const concepts = await loadAll(files);
      let pipe: StableDiffusionPipeline | undefined;
      try {
        pipe = await StableDiffusionPipeline.fromPretrained(dir, { scheduler: (str(v, 'scheduler') ?? 'dpm++2m') as SchedulerName, ...device });
        const applied = await applyConcepts(pipe, concepts, { force: v.force === true, scale: numbers.scale });
        const config = JSON.parse(readFileSync(join(dir, 'unet', 'config.json'), 'utf8')) as { sample_size?: number };
        const side = (config.sample_size ?? 64) * pipe.vae.factor;
        const r = await pipe.generate({ prompt: prompts, numImages: numbers.num, width: side, height: side, steps: numbers.steps, guidanceScale: numbers.guidance, seed: numbers.seed, ...excite, onStep: progress(v, 'sample') });
        try {
          const paths = await saveGenerated(r.images, v);
          const shut = Object.values(applied.shut).reduce((n, x) => n + x.count, 0);
          process.stdout.write(`concepts: ${applied.tokens.join(', ')} (${applied.weights.length} UNet weights changed${shut > 0 ? `, ${shut} entries shut` : ''})\n${paths.join('\n')}\n`);
        } finally {
          r.images.dispose();
          r.latents.dispose();
        }
      } finally {
        concepts.forEach(disposeConcept);
        pipe?.dispose();
      }
    },
  },

  'export-diffusers': {
    summary: "write a concept file as diffusers' Custom Diffusion files (pytorch_custom_diffusion_weights.safetensors + <token>.safetensors)",
    usage: '<concept.safetensors> --out <dir> [--model <dir>]',
    positionals: true,
    options: {
      model: modelFlag,
      out: { type: 'string', arg: 'dir', help: 'folder to write' },
    },
    async run(v, files) {
      if (files.length !== 1) throw invalidArgument(`give exactly one concept file, got ${files.length}`);
      const out = need(v, 'out', '<dir> to write the diffusers files into');
      const dir = modelDir(v);
      const concept = await loadConcept(files[0]);
      let pipe: StableDiffusionPipeline | undefined;
      try {
        pipe = await StableDiffusionPipeline.fromPretrained(dir);
        const paths = await exportDiffusers(concept, unetWeightMap(pipe.unet as UNet2DConditionModel), out);
        process.stdout.write(`${paths.join('\n')}\nload in diffusers with pipe.unet.load_attn_procs(dir, weight_name="pytorch_custom_diffusion_weights.safetensors") and pipe.load_textual_inversion(dir, weight_name="<token>.safetensors") per token\n`);
      } finally {
        disposeConcept(concept);
        pipe?.dispose();
      }
    },
  },

  'import-diffusers': {
    summary: "read diffusers' Custom Diffusion files back into an Imprint concept file (ΔW = W_file − W0)",
    usage: '<dir> --out <concept.safetensors> [--model <dir>] [--class <token>=<word>]...',
    positionals: true,
    options: {
      model: modelFlag,
      out: { type: 'string', arg: 'file', help: 'concept file to write' },
      class: { type: 'string', arg: 'token=word', help: "a token's class word, e.g. '<new1>=dog' (repeat per token)", multiple: true },
      ...compressFlags,
    },
    async run(v, dirs) {
      if (dirs.length !== 1) throw invalidArgument(`give exactly one folder of diffusers files, got ${dirs.length}`);
      const out = need(v, 'out', '<file> for the concept');
      checkOutputFolder('out', out);
      const classWords: Record<string, string> = {};
      for (const pair of list(v, 'class')) {
        const at = pair.indexOf('=');
        if (at <= 0) throw invalidArgument(`--class must be <token>=<word>, got '${pair}'`);
        classWords[pair.slice(0, at)] = pair.slice(at + 1);
      }
      const save = compression(v);
      const pipe = await StableDiffusionPipeline.fromPretrained(modelDir(v));
      try {
        const concept = await importDiffusers(dirs[0], unetWeightMap(pipe.unet as UNet2DConditionModel), {
          classWords, tokenEmbedding: (pipe.textEncoder as ClipTextEncoder).tokenEmbedding,
        });
        try {
          const saved = await saveConcept(out, concept, save);
          process.stdout.write(`mode ${concept.mode}, tokens ${concept.tokens.map((t) => `${t.token}${t.classWord === '' ? '' : ` (${t.classWord})`}`).join(', ')}, ${concept.deltas.size} matrices → ${describeSave(saved)}\n`);
        } finally {
          disposeConcept(concept);
        }
      } finally {
        pipe.dispose();
      }
    },
  },
};
