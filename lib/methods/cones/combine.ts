// Several Cones subjects in one model (Liu et al. 2023, §3.3; DESIGN §1.2):
// their neuron sets united and shut together, then, optionally, a few steps
// of fine-tuning on prompts naming every subject. The fine-tuning trains a
// small LoRA on the cross-attention K/V, the united neurons staying shut
// ((W + s·B·A) ⊙ (1 − m), the adapter formula applyConcepts uses), with two
// terms:
//   diffusion   each subject's images under its own prompt (the one its
//               neurons were found with), so every subject stays what its
//               neurons make of it;
//   attention   Attend-and-Excite's loss (pipeline/excite.ts) on a
//               multi-subject prompt at a noisy latent of the first sampling
//               steps (t in the upper half of the schedule), so that no
//               subject word is left without a region of the image.
// The result is one Cones concept: the united indices plus the LoRA factors
// (about 2·rank·(in + out) floats per K/V matrix: tens of KB at rank 4 for SD1.5).
import { loadImagesWithCaptions, squarePixels, type RgbImage } from '../../concepts/data.js';
import type { ConesConcept, LoraFactors } from '../../concepts/types.js';
import { randn, tensor, zeros } from '../../creation.js';
import { checkUsableDevice } from '../../device.js';
import { ImprintError, invalidArgument } from '../../errors.js';
import { ClipTextEncoder } from '../../models/clip-text.js';
import type { UNetAdapter } from '../../models/unet.js';
import { exciteMaps, promptFocus } from '../../pipeline/excite.js';
import type { Tensor } from '../../tensor.js';
import { denoisingStep } from '../../train/denoising-step.js';
import { encodeLatent } from '../../train/latent-cache.js';
import { AdamW } from '../../train/optimizer.js';
import { batchTensors, type Sample } from '../../train/prior-batch.js';
import { Progress } from '../../train/progress.js';
import { SeededRandom } from '../../train/random.js';
import { onDevice } from '../../train/run-state.js';
import { disposeTrainingModel, loadTrainingModel } from '../../train/training-model.js';
import { checkBoolean, checkInt, checkNumberIn, checkOptions, checkString, describe, isPlainObject } from '../../validate.js';

export interface CombineSubjectsOptions {
  /** The base model the concepts were found on (a diffusers folder). */
  model: string;
  /** The subjects' Cones concepts (findNeurons on this model), at least two. */
  concepts: readonly ConesConcept[];
  /** Prompts naming every subject, e.g. 'photo of a dog and a cat'. Without them only the union is made. */
  prompts?: readonly string[];
  /** The words of every prompt that name the subjects (Attend-and-Excite's subject tokens); needed with prompts. */
  excite?: readonly string[];
  /** Per concept, its subject's images (a folder, paths or encoded Buffers); needed with prompts. */
  images?: ReadonlyArray<string | ReadonlyArray<string | Buffer | Uint8Array>>;
  /** Fine-tuning steps (default 10 with prompts). */
  steps?: number;
  /** AdamW learning rate of the LoRA factors (default 5e-4). */
  lr?: number;
  /** LoRA rank (default 4). */
  rank?: number;
  /** Weight of the attention term beside the diffusion term (default 1). */
  attentionWeight?: number;
  seed?: number;
  /** Image side (default the model's). */
  resolution?: number;
  device?: string;
  onProgress?: (info: { step: number; steps: number; diffusion: number; attention: number }) => void;
  quiet?: boolean;
}

export interface CombineSubjectsResult {
  /** The united neurons (and, after fine-tuning, the LoRA factors of the cross-attention K/V). */
  concept: ConesConcept;
  /** Per weight, the entries shut and how many of them more than one concept shuts. */
  shut: Record<string, { count: number; overlap: number }>;
  /** Per fine-tuning step: the diffusion loss and the attention loss (before the step's update). */
  losses: { diffusion: number; attention: number }[];
  secondsPerStep: number;
}

const OPTION_KEYS = ['model', 'concepts', 'prompts', 'excite', 'images', 'steps', 'lr', 'rank', 'attentionWeight', 'seed', 'resolution', 'device', 'onProgress', 'quiet'];

/** The union of the concepts' neuron sets per weight (sorted), with the overlap counts. */
export function uniteNeurons(concepts: readonly ConesConcept[]): { neurons: Map<string, Int32Array>; shut: CombineSubjectsResult['shut'] } {
  const sets = new Map<string, Set<number>>();
  const shut: CombineSubjectsResult['shut'] = {};
  for (const c of concepts) {
    for (const [name, idx] of c.neurons) {
      let set = sets.get(name);
      if (set === undefined) sets.set(name, (set = new Set()));
      const before = set.size;
      for (const k of idx) set.add(k);
      shut[name] = { count: set.size, overlap: (shut[name]?.overlap ?? 0) + before + idx.length - set.size };
    }
  }
  const neurons = new Map([...sets].map(([n, s]) => [n, Int32Array.from(s).sort()]));
  return { neurons, shut };
}

/** Unites several subjects' concept neurons and, with `prompts`, fine-tunes them to appear together; see CombineSubjectsOptions. */
export async function combineSubjects(options: CombineSubjectsOptions): Promise<CombineSubjectsResult> {
  const fn = 'combineSubjects';
  if (!isPlainObject(options)) throw invalidArgument(`${fn}: options must be an object { model, concepts, ... }, got ${describe(options)}`);
  const o = checkOptions(fn, options, OPTION_KEYS);
  const modelDir = checkString(fn, 'model', o.model);
  const concepts = o.concepts as ConesConcept[];
  if (!Array.isArray(concepts) || concepts.length < 2) throw invalidArgument(`${fn}: concepts must list at least two Cones concepts, got ${describe(concepts)}`);
  concepts.forEach((c, i) => {
    if (!isPlainObject(c) || c.method !== 'cones' || !(c.neurons instanceof Map)) throw invalidArgument(`${fn}: concepts[${i}] must be a Cones concept (method 'cones' with neurons), got ${describe(c)}`);
    if (c.baseFingerprint !== concepts[0].baseFingerprint) throw invalidArgument(`${fn}: concepts[${i}] was found on base model ${c.baseFingerprint}, concepts[0] on ${concepts[0].baseFingerprint}`);
  });
  const tune = o.prompts !== undefined;
  for (const k of ['excite', 'images', 'steps', 'lr', 'rank', 'attentionWeight', 'seed', 'resolution', 'onProgress']) {
    if (!tune && o[k] !== undefined) throw invalidArgument(`${fn}: ${k} is for the fine-tuning, which needs prompts`);
  }
  const union = uniteNeurons(concepts);
  const settings: Record<string, string> = {
    combined: JSON.stringify(concepts.map((c) => c.settings?.prompt ?? '')),
  };
  const device = checkUsableDevice(fn, o.device ?? 'cpu');
  const m = await loadTrainingModel(fn, modelDir, device, o.resolution);
  try {
    if (m.fingerprint !== concepts[0].baseFingerprint) throw invalidArgument(`${fn}: the concepts were found on base model ${concepts[0].baseFingerprint}, but ${modelDir} is ${m.fingerprint}`);
    const shapes = new Map(m.unet.weightNames.map((n, i) => [n, m.unet.weights[i].shape]));
    for (const [name, idx] of union.neurons) {
      const shape = shapes.get(name);
      if (!shape) throw invalidArgument(`${fn}: a concept shuts neurons of '${name}', which ${modelDir}'s UNet does not have`);
      if (idx.length > 0 && idx[idx.length - 1] >= shape[0] * shape[1]) {
        throw new ImprintError(`${fn}: a concept shuts index ${idx[idx.length - 1]} of '${name}', which has ${shape[0] * shape[1]} entries`, 'SHAPE_MISMATCH');
      }
    }
    if (!tune) {
      return { concept: { method: 'cones', tokens: [], neurons: union.neurons, baseFingerprint: m.fingerprint, settings }, shut: union.shut, losses: [], secondsPerStep: 0 };
    }
    const prompts = o.prompts as string[];
    if (!Array.isArray(prompts) || prompts.length === 0 || !prompts.every((p) => typeof p === 'string' && p.trim() !== '')) {
      throw invalidArgument(`${fn}: prompts must be a non-empty list of prompts naming every subject, got ${describe(prompts)}`);
    }
    const words = o.excite as string[];
    if (!Array.isArray(words) || words.length < 2 || !words.every((w) => typeof w === 'string' && w.trim() !== '')) {
      throw invalidArgument(`${fn}: excite must list the subjects' words of the prompts (at least two), got ${describe(words)}`);
    }
    const imageSets = o.images as CombineSubjectsOptions['images'];
    if (!Array.isArray(imageSets) || imageSets.length !== concepts.length) {
      throw invalidArgument(`${fn}: images must give each of the ${concepts.length} concepts its subject's images, got ${describe(imageSets)}`);
    }
    const subjectPrompts = concepts.map((c, i) => {
      const p = c.settings?.prompt;
      if (typeof p !== 'string' || p === '') throw invalidArgument(`${fn}: concepts[${i}] does not record the prompt its neurons were found with (settings.prompt)`);
      return p;
    });
    const steps = checkInt(fn, 'steps', o.steps, 1, 100_000, 10);
    const lr = checkNumberIn(fn, 'lr', o.lr, 0, 1, 5e-4);
    const rank = checkInt(fn, 'rank', o.rank, 1, 256, 4);
    const attentionWeight = checkNumberIn(fn, 'attentionWeight', o.attentionWeight, 0, 1e6, 1);
    const seed = checkInt(fn, 'seed', o.seed, 0, 2 ** 31, 0);
    const quiet = checkBoolean(fn, 'quiet', o.quiet, false);
    const onProgress = o.onProgress as CombineSubjectsOptions['onProgress'];
    if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgument(`${fn}: onProgress must be a function, got ${describe(onProgress)}`);
    const maxLength = m.encoder.config.maxPositionEmbeddings;
    const probes = prompts.map((p) => ({ prompt: p, ...promptFocus(fn, m.tokenizer, maxLength, p, words) }));
    for (const p of probes) {
      if (p.tokens.length > 77) throw invalidArgument(`${fn}: prompt "${p.prompt}" is too long for the attention probe`);
    }

    const owned: Tensor[] = [];
    const made: Tensor[] = [];
    const keep = <T extends Tensor>(t: T): T => (owned.push(t), t);
    try {
      // The subjects' latents, one list per subject.
      const latentSide = m.resolution / m.factor;
      const plane = latentSide * latentSide;
      const whole = new Float32Array(plane).fill(1);
      const subjects: Sample[][] = [];
      for (const [i, set] of imageSets.entries()) {
        const images: RgbImage[] = (await loadImagesWithCaptions(fn, `images[${i}]`, set)).map((s) => s.image);
        const list: Sample[] = [];
        for (const im of images) list.push({ latent: keep(await encodeLatent(m.vae, await squarePixels(im, m.resolution), m.resolution, device)), mask: whole, prompt: subjectPrompts[i] });
        subjects.push(list);
      }
      // The united neurons as u8 masks, the LoRA factors on every cross-attention K/V (b = 0: the run starts at the united model).
      const masks = new Map<string, Tensor>();
      for (const [name, idx] of union.neurons) {
        const shape = shapes.get(name)!;
        const data = new Uint8Array(shape[0] * shape[1]);
        for (const k of idx) data[k] = 1;
        masks.set(name, keep(await onDevice(tensor(data, { shape: [...shape], dtype: 'u8' }), device)));
      }
      const targets = m.unet.weightNames.filter((n) => /\.attn2\.to_[kv]\.weight$/.test(n));
      const params = new Map<string, Tensor>();
      for (const [w, name] of targets.entries()) {
        const [out, inp] = shapes.get(name)!;
        params.set(`${name}#lora.a`, await randn([rank, inp], { seed: seed * 7919 + w, std: 1 / Math.sqrt(inp), device }));
        params.set(`${name}#lora.b`, await zeros([out, rank], { device }));
      }
      const opt = await AdamW.create(params, { weightDecay: 0 }).catch((e: unknown) => {
        for (const t of params.values()) t.dispose();
        throw e;
      });
      const trainable = [...params.keys()];
      const adapters = (): UNetAdapter[] => [
        ...targets.map((name) => ({ weight: name, lora: { a: params.get(`${name}#lora.a`)!, b: params.get(`${name}#lora.b`)! }, ...(masks.has(name) ? { mask: masks.get(name)! } : {}) })),
        ...[...masks].filter(([name]) => !targets.includes(name)).map(([name, mask]) => ({ weight: name, mask })),
      ];
      const contexts: Tensor[] = [];
      const encoder = ClipTextEncoder.fromWeights(m.rawText, m.model.textEncoder.weights);
      for (const p of probes) {
        const ids = await onDevice(tensor(m.tokenizer.encodePadded(p.prompt, { maxLength }).ids, { shape: [1, maxLength] }), device);
        try {
          contexts.push(keep((await encoder.encode(ids)).lastHiddenState));
        } finally {
          ids.dispose();
        }
      }

      const root = new SeededRandom(seed);
      const progress = new Progress(steps, 0, { label: 'combine', quiet });
      const losses: CombineSubjectsResult['losses'] = [];
      const T = m.ddpm.config.numTrainTimesteps;
      try {
        for (let step = 0; step < steps; step++) {
          const rng = root.fork(`step ${step}`);
          const stepOwned: Tensor[] = [];
          try {
            // Diffusion term: one image of every subject under its own prompt.
            const picked = subjects.map((list) => list[rng.int(0, list.length - 1)]);
            const drawn = { picked, timesteps: picked.map(() => rng.int(0, T - 1)), maskData: new Float32Array(picked.length * plane).fill(1), lossScale: 1 };
            const b = await batchTensors(drawn, m.tokenizer, { tokens: maxLength, latentSide, noiseSeed: seed * 1_000_003 + step, device }, stepOwned);
            const ad = adapters();
            const g = await denoisingStep({ unet: m.unet, textConfig: m.rawText, textWeights: m.model.textEncoder.weights, ddpm: m.ddpm }, b,
              { unet: trainable, text: 'none', adapters: ad }, stepOwned);
            // Attention term: a multi-subject prompt at a latent of the first sampling steps.
            const k = step % probes.length;
            const t = rng.int(Math.floor(T / 2), T - 1);
            const x = await randn([1, m.unet.config.inChannels, latentSide, latentSide], { seed: seed * 1_000_003 + step, offset: 1 << 20, device });
            stepOwned.push(x);
            const probe = { unet: m.unet, context: contexts[k], tokens: probes[k].tokens, subjects: probes[k].subjects };
            const e = await exciteMaps(probe, x, t, { adapters: ad, weight: attentionWeight });
            stepOwned.push(e.dFocus);
            const a = await m.unet.focusForwardBackward(x, t, contexts[k], e.focus, e.dFocus, { trainable, adapters: ad });
            stepOwned.push(a.out, a.dSample, a.dContext, ...a.grads.values());
            const grads = new Map<string, Tensor>();
            for (const n of trainable) {
              const sum = await g.unet.get(n)!.add(a.grads.get(n)!);
              stepOwned.push(sum);
              grads.set(n, sum);
            }
            const attention = e.loss[0];
            if (!Number.isFinite(g.loss) || !Number.isFinite(attention)) throw invalidArgument(`${fn}: the loss is not finite at step ${step + 1} (diffusion ${g.loss}, attention ${attention}); lower lr`);
            await opt.update(grads, lr);
            losses.push({ diffusion: g.loss, attention });
            progress.update(step + 1, { loss: g.loss, attention });
            onProgress?.({ step: step + 1, steps, diffusion: g.loss, attention });
          } finally {
            for (const t of stepOwned) if (!t.disposed) t.dispose();
          }
        }
        const lora = new Map<string, LoraFactors>();
        for (const name of targets) {
          const host = async (t: Tensor): Promise<Tensor<'f32'>> => {
            const c = tensor(Float32Array.from((await t.data()) as Float32Array), { shape: t.shape });
            made.push(c);
            return c;
          };
          lora.set(name, { a: await host(params.get(`${name}#lora.a`)!), b: await host(params.get(`${name}#lora.b`)!), scale: 1 });
        }
        made.length = 0;  // the concept owns them now
        const concept: ConesConcept = {
          method: 'cones', tokens: [], neurons: union.neurons, lora, baseFingerprint: m.fingerprint,
          settings: { ...settings, prompts: JSON.stringify(prompts), excite: JSON.stringify(words), steps: String(steps), lr: String(lr), rank: String(rank), attentionWeight: String(attentionWeight), seed: String(seed) },
        };
        return { concept, shut: union.shut, losses, secondsPerStep: progress.secondsPerStep(steps) };
      } finally {
        opt.dispose();
      }
    } finally {
      for (const t of [...owned, ...made]) if (!t.disposed) t.dispose();
    }
  } finally {
    disposeTrainingModel(m);
  }
}
