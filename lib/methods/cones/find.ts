// Concept neurons (Cones, Liu et al. 2023; DESIGN §1.2): the weights of the
// cross-attention K/V (optionally also the self-attention's) whose shutting
// makes the base model draw the user's subject for a prompt that names its
// class. With the concept-implanting loss L (the diffusion loss on the
// subject's images under that prompt, plus prior preservation on class
// images), each step accumulates S += θ ⊙ ∂L/∂θ and then moves
// θ ← θ − ρ·θ²·∂L/∂θ (a gradient step on a multiplicative mask), the next
// gradient being taken at the moved weights; both in one fused kernel per
// matrix (neuron_stat_step). S estimates how much L falls when a weight is
// set to zero; the concept neurons are those with S above a threshold, or the
// top fraction. Only their indices are kept: the base weights never change.
// The method's policy only: batches, steps and checkpoints come from lib/train.
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { loadImagesWithCaptions, squarePixels, type CaptionedImage, type RgbImage } from '../../concepts/data.js';
import { folderRegularization, generatedRegularization } from '../../concepts/regularization.js';
import type { ConesConcept } from '../../concepts/types.js';
import { tensor } from '../../creation.js';
import { checkUsableDevice } from '../../device.js';
import { invalidArgument } from '../../errors.js';
import { neuronStatStep, NEURON_STAT_RHO } from '../../nn/method.js';
import { combine } from '../../schedulers/combine.js';
import type { Tensor } from '../../tensor.js';
import { denoisingStep } from '../../train/denoising-step.js';
import { encodeLatent, LatentCache } from '../../train/latent-cache.js';
import { batchTensors, priorPreservationBatch, type Sample } from '../../train/prior-batch.js';
import { Progress } from '../../train/progress.js';
import { SeededRandom } from '../../train/random.js';
import { onDevice, RunState } from '../../train/run-state.js';
import { basePipeline, disposeTrainingModel, loadTrainingModel } from '../../train/training-model.js';
import { checkBoolean, checkInt, checkNumberIn, checkOptions, checkString, describe, isPlainObject } from '../../validate.js';

/** Which attention projections hold candidate neurons. */
export type NeuronLayers = 'kv' | 'kv+self';

export interface FindNeuronsOptions {
  /** A diffusers model folder (or a pixel-space model such as the embedded world's). */
  model: string;
  /** The subject's images: a folder, a list of paths, or encoded image Buffers. */
  images: string | ReadonlyArray<string | Buffer | Uint8Array>;
  /** The subject's class, e.g. 'dog'. */
  classWord: string;
  /** The prompt the subject is implanted under (default `photo of a ${classWord}`): generation with the neurons shut and this prompt draws the subject. */
  prompt?: string;
  /** Prompt of the generated regularization images (default: `prompt`). */
  classPrompt?: string;
  /** A folder of regularization images (captions in same-name .txt files); default: sampled by the base model and cached. */
  regImages?: string;
  /** How many regularization images (default 50). */
  numRegImages?: number;
  /** Weight of the prior-preservation loss (default 1; 0 turns it off). */
  priorLossWeight?: number;
  /** Candidate weights: 'kv' (cross-attention to_k/to_v, default) or 'kv+self' (self-attention's too). */
  layers?: NeuronLayers;
  /** Statistic steps (batches), default 200. */
  passes?: number;
  /** Step size ρ of the multiplicative-mask update (default 2e-5). */
  rho?: number;
  /** Keep the neurons with S ≥ threshold. */
  threshold?: number;
  /** Or keep this fraction of the candidates with the largest S (default 0.005 when no threshold is given). */
  topFraction?: number;
  /** Subject images per step (default 1); with prior preservation as many regularization images join them. */
  batchSize?: number;
  seed?: number;
  /** Image side (default the model's). */
  resolution?: number;
  /** Sampling steps per generated regularization image (default 30). */
  regSteps?: number;
  /** Checkpoints and the regularization/latent caches (shared with Custom Diffusion's). */
  workDir?: string;
  checkpointEvery?: number;
  resume?: boolean;
  device?: string;
  onProgress?: (info: { step: number; steps: number; loss: number; candidates: number }) => void;
  quiet?: boolean;
}

export interface FindNeuronsResult {
  concept: ConesConcept;
  /** The loss of every step this run took. */
  losses: number[];
  /** Statistic steps done in total (resumed ones included). */
  steps: number;
  /** Neurons found, and the candidates searched. */
  counts: { neurons: number; candidates: number };
  /** The statistic S per candidate weight (flat, row-major): selectNeurons picks other thresholds from it without a rerun. */
  stats: Map<string, Float32Array>;
  secondsPerStep: number;
}

const OPTION_KEYS = ['model', 'images', 'classWord', 'prompt', 'classPrompt', 'regImages', 'numRegImages', 'priorLossWeight', 'layers', 'passes', 'rho', 'threshold',
  'topFraction', 'batchSize', 'seed', 'resolution', 'regSteps', 'workDir', 'checkpointEvery', 'resume', 'device', 'onProgress', 'quiet'];

/** The candidate weights of `layers`. */
export function candidateWeights(names: readonly string[], layers: NeuronLayers): string[] {
  const re = layers === 'kv' ? /\.attn2\.to_[kv]\.weight$/ : /\.attn[12]\.to_[kv]\.weight$/;
  return names.filter((n) => re.test(n));
}

/**
 * The neurons of `stats` (S per weight): those with S ≥ threshold, or the
 * top `topFraction` of all candidates by S (ties broken by weight order then
 * index, so the choice is deterministic). Sorted flat indices per weight.
 */
export function selectNeurons(stats: ReadonlyMap<string, Float32Array>, rule: { threshold: number } | { topFraction: number }): Map<string, Int32Array> {
  const names = [...stats.keys()];
  let keep: (w: number, k: number, s: number) => boolean;
  if ('threshold' in rule) keep = (_w, _k, s) => s >= rule.threshold;
  else {
    const total = names.reduce((n, k) => n + stats.get(k)!.length, 0);
    const count = Math.min(total, Math.max(0, Math.round(rule.topFraction * total)));
    // The count-th largest S (over every candidate), then ties by position.
    const all = new Float32Array(total);
    let o = 0;
    for (const n of names) all.set(stats.get(n)!, o), (o += stats.get(n)!.length);
    const sorted = Float32Array.from(all).sort();
    const cut = count === 0 ? Infinity : sorted[total - count];
    let above = 0;
    for (const v of all) if (v > cut) above++;
    let tiesLeft = count - above;
    keep = (_w, _k, s) => s > cut || (s === cut && tiesLeft-- > 0);
  }
  const out = new Map<string, Int32Array>();
  names.forEach((n, w) => {
    const s = stats.get(n)!;
    const idx: number[] = [];
    for (let k = 0; k < s.length; k++) if (keep(w, k, s[k])) idx.push(k);
    if (idx.length > 0) out.set(n, Int32Array.from(idx));
  });
  return out;
}

/**
 * One statistic update over every candidate weight (DESIGN.md §1.2), the fused
 * neuron_stat_step per matrix: S += θ⊙∂L/∂θ and θ ← θ − ρθ²∂L/∂θ. Returns the
 * new θ and S and disposes the old ones; `grads` holds ∂L/∂θ for every name of `theta`.
 */
export async function statisticStep(
  theta: ReadonlyMap<string, Tensor>, stat: ReadonlyMap<string, Tensor<'f32'>>, grads: ReadonlyMap<string, Tensor>, rho: number,
): Promise<{ theta: Map<string, Tensor>; stat: Map<string, Tensor<'f32'>> }> {
  const nextTheta = new Map<string, Tensor>();
  const nextStat = new Map<string, Tensor<'f32'>>();
  for (const [n, t] of theta) {
    const grad = grads.get(n);
    if (!grad) throw invalidArgument(`statisticStep: no gradient for '${n}'`);
    const r = await neuronStatStep({ theta: t as Tensor<'f32'>, grad: grad as Tensor<'f32'>, stat: stat.get(n)! }, { rho });
    nextTheta.set(n, r.theta), nextStat.set(n, r.stat);
  }
  for (const t of [...theta.values(), ...stat.values()]) t.dispose();
  return { theta: nextTheta, stat: nextStat };
}

/** Finds the concept neurons of one subject; see FindNeuronsOptions. */
export async function findNeurons(options: FindNeuronsOptions): Promise<FindNeuronsResult> {
  const fn = 'findNeurons';
  if (!isPlainObject(options)) throw invalidArgument(`${fn}: options must be an object { model, images, classWord, ... }, got ${describe(options)}`);
  const o = checkOptions(fn, options, OPTION_KEYS);
  const modelDir = checkString(fn, 'model', o.model);
  const classWord = checkString(fn, 'classWord', o.classWord);
  const prompt = checkString(fn, 'prompt', o.prompt, `photo of a ${classWord}`);
  const classPrompt = checkString(fn, 'classPrompt', o.classPrompt, prompt);
  const layers = (o.layers ?? 'kv') as NeuronLayers;
  if (layers !== 'kv' && layers !== 'kv+self') throw invalidArgument(`${fn}: layers must be 'kv' or 'kv+self', got ${describe(o.layers)}`);
  const passes = checkInt(fn, 'passes', o.passes, 1, 10_000_000, 200);
  const rho = checkNumberIn(fn, 'rho', o.rho, 0, 1e12, NEURON_STAT_RHO);
  if (o.threshold !== undefined && o.topFraction !== undefined) throw invalidArgument(`${fn}: give threshold or topFraction, not both`);
  const rule = o.threshold !== undefined
    ? { threshold: checkNumberIn(fn, 'threshold', o.threshold, -Infinity, Infinity) }
    : { topFraction: checkNumberIn(fn, 'topFraction', o.topFraction, 0, 1, 0.005) };
  const batch = checkInt(fn, 'batchSize', o.batchSize, 1, 1024, 1);
  const priorWeight = checkNumberIn(fn, 'priorLossWeight', o.priorLossWeight, 0, 1e6, 1);
  const numReg = checkInt(fn, 'numRegImages', o.numRegImages, 1, 100_000, 50);
  const seed = checkInt(fn, 'seed', o.seed, 0, 2 ** 31, 0);
  const regSteps = checkInt(fn, 'regSteps', o.regSteps, 1, 1000, 30);
  const workDir = o.workDir === undefined ? undefined : checkString(fn, 'workDir', o.workDir);
  const every = checkInt(fn, 'checkpointEvery', o.checkpointEvery, 1, 10_000_000, 50);
  const resume = checkBoolean(fn, 'resume', o.resume, true);
  const quiet = checkBoolean(fn, 'quiet', o.quiet, false);
  const regImages = o.regImages === undefined ? undefined : checkString(fn, 'regImages', o.regImages);
  const onProgress = o.onProgress as FindNeuronsOptions['onProgress'];
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgument(`${fn}: onProgress must be a function, got ${describe(onProgress)}`);
  const device = checkUsableDevice(fn, o.device ?? 'cpu');
  const prior = priorWeight > 0;

  const subject: RgbImage[] = (await loadImagesWithCaptions(fn, 'images', o.images)).map((s) => s.image);
  const m = await loadTrainingModel(fn, modelDir, device, o.resolution);
  const owned: Tensor[] = [];
  try {
    const { resolution, factor, fingerprint, tokenizer, ddpm } = m;
    const regs: CaptionedImage[] = !prior ? [] : regImages !== undefined
      ? await folderRegularization(fn, 'regImages', regImages, classPrompt, numReg)
      : await generatedRegularization(fn, {
        pipeline: basePipeline(m, device), fingerprint, prompt: classPrompt, count: numReg, resolution, seed, steps: regSteps,
        cacheRoot: join(workDir ?? join(tmpdir(), 'imprint-custom-diffusion'), 'regularization'),
      });

    // Latents, encoded once (and cached beside the checkpoint).
    const cache = await LatentCache.open(workDir, ['cones', fingerprint, resolution, factor], [subject, regs.map((r) => r.image)], device, owned);
    const latentSide = resolution / factor;
    const plane = latentSide * latentSide;
    const whole = new Float32Array(plane).fill(1);
    const instances: Sample[] = [];
    for (const [i, im] of subject.entries()) {
      instances.push({ latent: await cache.latentOf(`subject/${i}`, async () => encodeLatent(m.vae, await squarePixels(im, resolution), resolution, device)), mask: whole, prompt });
    }
    const regSamples: Sample[] = [];
    for (const [k, r] of regs.entries()) {
      regSamples.push({ latent: await cache.latentOf(`regularization/${k}`, async () => encodeLatent(m.vae, await squarePixels(r.image, resolution), resolution, device)), mask: whole, prompt: r.caption });
    }
    await cache.save();

    // The candidates: θ starts at the base weights (copies; the model is never written), S at 0.
    const names = candidateWeights(m.unet.weightNames, layers);
    const base = new Map(m.unet.weightNames.map((n, i) => [n, m.unet.weights[i] as Tensor]));
    let theta = new Map<string, Tensor>();
    let stat = new Map<string, Tensor<'f32'>>();
    for (const n of names) {
      theta.set(n, await combine([[1, base.get(n)! as Tensor<'f32'>]]));
      stat.set(n, await onDevice(tensor(new Float32Array(base.get(n)!.numel), { shape: base.get(n)!.shape }), device));
    }
    const candidates = names.reduce((s, n) => s + base.get(n)!.numel, 0);
    const run = new RunState(fn, workDir, {
      method: 'cones', seed: String(seed), fingerprint, layers, rho: String(rho), batch: String(batch), priorLossWeight: String(priorWeight), resolution: String(resolution),
      prompts: JSON.stringify({ prompt, classPrompt }), data: dataDigest(subject, regs),
    }, { lossHint: 'Lower rho?' });
    const start = run.resumeStep(resume);
    if (start > passes) throw invalidArgument(`${fn}: the checkpoint in ${workDir} is at step ${start}, past passes ${passes}`);
    if (start > 0) {
      const saved = await run.loadTensors(device);
      for (const n of names) {
        const t = saved.get(`theta/${n}`), s = saved.get(`stat/${n}`);
        if (!t || !s) throw invalidArgument(`${fn}: ${run.checkpoint} lacks the state of '${n}'; remove it or pass resume: false`);
        theta.get(n)!.dispose(), stat.get(n)!.dispose();
        theta.set(n, t), stat.set(n, s as Tensor<'f32'>);
      }
      for (const [k, t] of saved) if (!/^(theta|stat)\//.test(k) || !names.includes(k.slice(k.indexOf('/') + 1))) t.dispose();
    }

    const root = new SeededRandom(seed);
    const progress = new Progress(passes, start, { label: 'cones', quiet });
    const losses: number[] = [];
    const tokens = m.encoder.config.maxPositionEmbeddings;
    try {
      for (let step = start; step < passes; step++) {
        const drawn = priorPreservationBatch(root.fork(`step ${step}`), instances, prior ? regSamples : undefined,
          { batch, priorWeight, plane, numTrainTimesteps: ddpm.config.numTrainTimesteps });
        const stepOwned: Tensor[] = [];
        try {
          const b = await batchTensors(drawn, tokenizer, { tokens, latentSide, noiseSeed: seed * 1_000_003 + step, device }, stepOwned);
          const unet = m.unet.withWeights(theta);
          const g = await denoisingStep({ unet, textConfig: m.rawText, textWeights: m.model.textEncoder.weights, ddpm }, b,
            { unet: names, text: 'none', lossScale: drawn.lossScale }, stepOwned);
          run.guard(step, g.loss, Infinity);
          ({ theta, stat } = await statisticStep(theta, stat, g.unet, rho));
          losses.push(g.loss);
          progress.update(step + 1, { loss: g.loss });
        } finally {
          for (const t of stepOwned) if (!t.disposed) t.dispose();
        }
        onProgress?.({ step: step + 1, steps: passes, loss: losses[losses.length - 1], candidates });
        if (workDir !== undefined && ((step + 1) % every === 0 || step + 1 === passes)) {
          await run.saveTensors(new Map([...[...theta].map(([n, t]) => [`theta/${n}`, t] as const), ...[...stat].map(([n, t]) => [`stat/${n}`, t as Tensor] as const)]), step + 1);
        }
      }
      const stats = new Map<string, Float32Array>();
      for (const [n, s] of stat) stats.set(n, Float32Array.from((await s.data()) as Float32Array));
      const neurons = selectNeurons(stats, rule);
      const count = [...neurons.values()].reduce((s, x) => s + x.length, 0);
      if (count === 0) {
        throw invalidArgument(`${fn}: no neuron passes ${'threshold' in rule ? `threshold ${rule.threshold}` : `topFraction ${rule.topFraction}`} (the largest S is ${Math.max(...[...stats.values()].map((s) => s.reduce((a, v) => Math.max(a, v), -Infinity)))}); lower it`);
      }
      const concept: ConesConcept = {
        method: 'cones', tokens: [], neurons, baseFingerprint: fingerprint,
        settings: {
          prompt, classWord, layers, passes: String(passes), rho: String(rho), seed: String(seed),
          ...('threshold' in rule ? { threshold: String(rule.threshold) } : { topFraction: String(rule.topFraction) }),
        },
      };
      return { concept, losses, steps: passes, counts: { neurons: count, candidates }, stats, secondsPerStep: progress.secondsPerStep(passes) };
    } finally {
      for (const t of [...theta.values(), ...stat.values()]) if (!t.disposed) t.dispose();
    }
  } finally {
    for (const t of owned) if (!t.disposed) t.dispose();
    disposeTrainingModel(m);
  }
}

/** A digest of the subject and regularization images (and captions): another folder's content is another run. */
function dataDigest(subject: readonly RgbImage[], regs: readonly CaptionedImage[]): string {
  const h = createHash('sha256');
  for (const im of subject) h.update(`${im.width}x${im.height}:`).update(im.data);
  h.update('|');
  for (const r of regs) h.update(`${r.image.width}x${r.image.height}:${JSON.stringify(r.caption)}:`).update(r.image.data);
  return `sha256:${h.digest('hex').slice(0, 32)}`;
}
