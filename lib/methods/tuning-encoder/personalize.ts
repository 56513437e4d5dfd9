// Personalization with a pretrained tuning encoder (DESIGN §1.3): one image,
// one forward pass of the encoder (v* and a LoRA per cross-attention K/V),
// then at most a few steps (default 12) of the LoRA factors and the
// embedding on that image, with an L2 pull toward the encoder's predictions
// and the dual path; the result is a concept of the shared container (one
// token, LoRA factors), usable by applyConcepts and `imprint sample`.
// lr, noise draws per step and pull weight default to the encoder file's
// `tuning` (the world's: 1e-2, 8, 0), else 2e-3, 2, 1.
import { loadImagesWithCaptions, squarePixels } from '../../concepts/data.js';
import type { LoraFactors, TuningEncoderConcept } from '../../concepts/types.js';
import { randn, tensor } from '../../creation.js';
import { checkUsableDevice } from '../../device.js';
import { ImprintError, invalidArgument } from '../../errors.js';
import type { UNetAdapter } from '../../models/unet.js';
import { concat } from '../../nn/concat.js';
import { tokenTopkCosine } from '../../nn/method.js';
import { AdamW } from '../../train/optimizer.js';
import { Progress } from '../../train/progress.js';
import { SeededRandom } from '../../train/random.js';
import { disposeTrainingModel, loadTrainingModel } from '../../train/training-model.js';
import type { Tensor } from '../../tensor.js';
import { checkBoolean, checkInt, checkNumberIn, checkOptions, checkString, describe, isPlainObject } from '../../validate.js';
import { loadEncoder, type EncoderTuning } from './encoder-file.js';
import { disposePrediction, TuningEncoder } from './model.js';
import { latents, stepOptions, type EncoderLossOptions } from './pretrain.js';
import { addedRowsGradient, EncoderStepContext } from './step.js';

export interface PersonalizeOptions extends EncoderLossOptions {
  /** The base model the encoder was pretrained on. */
  model: string;
  /** A pretrained encoder: its file (saveEncoder) or the instance. */
  encoder: string | TuningEncoder;
  /** The one image: a path or encoded bytes. */
  image: string | Buffer | Uint8Array;
  /** The new token (default '<new1>'). */
  token?: string;
  /** The class word (default the encoder file's). */
  classWord?: string;
  /** Tuning steps after the prediction (default 12; 0: the prediction alone). */
  steps?: number;
  /** Learning rate of the tuning (default: the encoder file's `tuning.lr`, else 2e-3). */
  lr?: number;
  /** Weight of the L2 pull toward the encoder's predictions (default: the file's, else 1). */
  pullWeight?: number;
  /** Noise draws of the image per step (default: the file's, else 2). */
  batchSize?: number;
  seed?: number;
  resolution?: number;
  device?: string;
  onProgress?: (info: { step: number; steps: number; loss: number }) => void;
  quiet?: boolean;
}

export interface PersonalizeResult {
  concept: TuningEncoderConcept;
  /** The diffusion loss of each tuning step. */
  losses: number[];
  secondsPerStep: number;
}

const OPTION_KEYS = ['model', 'encoder', 'image', 'token', 'classWord', 'steps', 'lr', 'pullWeight', 'batchSize', 'seed', 'resolution', 'device', 'onProgress', 'quiet',
  'alpha', 'contrastiveWeight', 'temperature', 'neighbours', 'embeddingL2', 'loraL2'];

/** One image → a concept; see PersonalizeOptions. */
export async function personalize(options: PersonalizeOptions): Promise<PersonalizeResult> {
  const fn = 'personalize';
  if (!isPlainObject(options)) throw invalidArgument(`${fn}: options must be an object { model, encoder, image, ... }, got ${describe(options)}`);
  const o = checkOptions(fn, options, OPTION_KEYS);
  const modelDir = checkString(fn, 'model', o.model);
  const token = checkString(fn, 'token', o.token, '<new1>');
  const steps = checkInt(fn, 'steps', o.steps, 0, 1000, 12);
  // Checked now, resolved against the encoder file's tuning once it is read.
  const lrOption = o.lr === undefined ? undefined : checkNumberIn(fn, 'lr', o.lr, 0, 1);
  const pullOption = o.pullWeight === undefined ? undefined : checkNumberIn(fn, 'pullWeight', o.pullWeight, 0, 1e6);
  const batchOption = o.batchSize === undefined ? undefined : checkInt(fn, 'batchSize', o.batchSize, 1, 64);
  const seed = checkInt(fn, 'seed', o.seed, 0, 2 ** 31, 0);
  const quiet = checkBoolean(fn, 'quiet', o.quiet, false);
  const onProgress = o.onProgress as PersonalizeOptions['onProgress'];
  if (onProgress !== undefined && typeof onProgress !== 'function') throw invalidArgument(`${fn}: onProgress must be a function, got ${describe(onProgress)}`);
  const so = stepOptions(fn, o as EncoderLossOptions, 1);
  const device = checkUsableDevice(fn, o.device ?? 'cpu');
  if (device !== 'cpu') throw invalidArgument(`${fn}: the tuning encoder runs on the CPU for now (device '${device}')`);
  let encoder: TuningEncoder, fileClass = '', fileBase = '', tuning: EncoderTuning = {};
  const ownEncoder = typeof o.encoder === 'string';
  if (typeof o.encoder === 'string') {
    const l = await loadEncoder(o.encoder);
    encoder = l.encoder, fileClass = l.info.classWord, fileBase = l.info.baseFingerprint, tuning = l.info.tuning ?? {};
  } else if (o.encoder instanceof TuningEncoder) encoder = o.encoder;
  else throw invalidArgument(`${fn}: encoder must be an encoder file's path or a TuningEncoder, got ${describe(o.encoder)}`);
  const lr = lrOption ?? tuning.lr ?? 2e-3;
  const pull = pullOption ?? tuning.pullWeight ?? 1;
  const B = batchOption ?? tuning.batchSize ?? 2;
  const classWord = checkString(fn, 'classWord', o.classWord ?? (fileClass || undefined));
  const [image] = (await loadImagesWithCaptions(fn, 'image', [o.image as string | Buffer])).map((s) => s.image);

  const m = await loadTrainingModel(fn, modelDir, device, o.resolution ?? encoder.vision.imageSize);
  const owned: Tensor[] = [];
  const keep = <T extends Tensor>(t: T): T => (owned.push(t), t);
  let opt: AdamW | undefined;
  let ctx: EncoderStepContext | undefined;
  try {
    if (fileBase && fileBase !== m.fingerprint) throw invalidArgument(`${fn}: the encoder was pretrained on base model ${fileBase}, but ${modelDir} is ${m.fingerprint}`);
    if (!/^\S+$/.test(token)) throw invalidArgument(`${fn}: token must be one word without spaces, got '${token}'`);
    const R = m.resolution, T = m.ddpm.config.numTrainTimesteps;
    const loraScale = encoder.spec.loraScale ?? 1;  // ΔW = s·B·A, as the encoder was pretrained
    ctx = await EncoderStepContext.create({ unet: m.unet, textConfig: m.rawText, textWeights: m.model.textEncoder.weights, tokenizer: m.tokenizer, ddpm: m.ddpm });
    const base = ctx.base;
    const V = base.config.vocabSize, H = base.config.hiddenSize;
    const pixels = keep(tensor(await squarePixels(image, R), { shape: [1, 3, R, R] }));
    const x0 = await latents(m, pixels);
    if (x0 !== pixels) keep(x0);

    // The prediction: the encoder on the image and the UNet features of a noisy version (t = T/2, empty prompt).
    const noise0 = keep((await randn(x0.shape, { seed: seed * 7 + 1 })) as Tensor<'f32'>);
    const noisy0 = keep(await m.ddpm.addNoise(x0, noise0, [Math.floor(T / 2)]));
    const features = await m.unet.encoderFeatures(noisy0, [Math.floor(T / 2)], await ctx.emptyContext(1));
    owned.push(...features);
    const pred = await encoder.forward(pixels, features);
    const classIds = m.tokenizer.encode(classWord).slice(1, -1);
    const table = base.tokenEmbedding as Tensor<'f32'>;
    const classRow = Float32Array.from(((await table.data()) as Float32Array).subarray(classIds[0] * H, (classIds[0] + 1) * H));
    const offset = (await pred.offset.data()) as Float32Array;
    const params = new Map<string, Tensor>();
    params.set('embedding', tensor(Float32Array.from(classRow, (v, i) => v + offset[i]), { shape: [1, H] }));
    encoder.spec.targets.forEach((t, j) => {
      params.set(`${t.weight}#lora.a`, tensor(Float32Array.from(pred.down[j].dataSync() as Float32Array), { shape: [encoder.spec.rank, t.in] }));
      params.set(`${t.weight}#lora.b`, tensor(Float32Array.from(pred.up[j].dataSync() as Float32Array), { shape: [t.out, encoder.spec.rank] }));
    });
    disposePrediction(pred);
    const start = new Map([...params].map(([n, p]) => [n, Float32Array.from(p.dataSync() as Float32Array)]));
    opt = await AdamW.create(params, { weightDecay: 0 });

    const root = new SeededRandom(seed);
    const progress = new Progress(Math.max(1, steps), 0, { label: 'personalize', quiet: quiet || steps === 0 });
    const losses: number[] = [];
    const names = encoder.spec.targets.flatMap((t) => [`${t.weight}#lora.a`, `${t.weight}#lora.b`]);
    let hard: { token: number; context: Tensor } | undefined;
    for (let step = 0; step < steps; step++) {
      const rng = root.fork(`step ${step}`);
      const stepOwned: Tensor[] = [];
      const sk = <X extends Tensor>(t: X): X => (stepOwned.push(t), t);
      try {
        const xb = sk(await concat(Array.from({ length: B }, () => x0)));
        const noise = sk((await randn(xb.shape, { seed: seed * 1_000_003 + step })) as Tensor<'f32'>);
        const ts = Array.from({ length: B }, () => rng.int(0, T - 1));
        const noisy = sk(await m.ddpm.addNoise(xb, noise, ts));
        const target = sk(await m.ddpm.target(xb, noise, ts));
        const v = opt.params.get('embedding')! as Tensor<'f32'>;
        const grown = await base.withTokenRows(v);
        sk(grown.tokenEmbedding);
        const ids = sk(ctx.promptIds(classWord, Array(B).fill(V)));
        const soft = sk((await grown.encode(ids)).lastHiddenState);
        if (so.alpha < 1) {  // at α = 1 the hard path weighs nothing and is skipped
          const near = await tokenTopkCosine(v, table, { k: 1, vocabNorms: ctx.vocabNorms });
          sk(near.indices), sk(near.similarities);
          const nearest = (near.indices.dataSync() as Int32Array)[0];
          if (hard?.token !== nearest) {  // the hard context changes only when v*'s nearest word does
            if (hard) hard.context.dispose();
            const hardIds = sk(ctx.promptIds(classWord, Array(B).fill(nearest)));
            hard = { token: nearest, context: keep((await base.encode(hardIds)).lastHiddenState) };
          }
        }
        const adapters: UNetAdapter[] = encoder.spec.targets.map((t) => ({ weight: t.weight, lora: { a: opt!.params.get(`${t.weight}#lora.a`)!, b: opt!.params.get(`${t.weight}#lora.b`)!, scale: loraScale } }));
        const r = await m.unet.lossBackward(noisy, ts, soft, target, { trainable: names, adapters, ...(hard ? { dual: { alpha: so.alpha, hardContext: hard.context } } : {}) });
        stepOwned.push(r.out, r.dSample, r.dContext, r.loss, ...r.grads.values());
        const loss = ((await r.loss.data()) as Float32Array)[0];
        if (!Number.isFinite(loss)) throw new ImprintError(`${fn}: the loss is not finite at step ${step + 1}; lower lr`, 'INVALID_ARGUMENT');
        const row = sk(await addedRowsGradient(ctx, grown, ids, r.dContext));
        // The pull toward the predictions: pull·‖θ − θ₀‖², gradient 2·pull·(θ − θ₀).
        const grads = new Map<string, Tensor>();
        const withPull = (name: string, g: Tensor): Tensor => {
          const gv = Float32Array.from(g.dataSync() as Float32Array), p = opt!.params.get(name)!.dataSync() as Float32Array, p0 = start.get(name)!;
          for (let i = 0; i < gv.length; i++) gv[i] += 2 * pull * (p[i] - p0[i]);
          return sk(tensor(gv, { shape: g.shape }));
        };
        grads.set('embedding', withPull('embedding', row));
        for (const n of names) grads.set(n, withPull(n, r.grads.get(n)!));
        await opt.update(grads, lr);
        losses.push(loss);
        progress.update(step + 1, { loss });
        onProgress?.({ step: step + 1, steps, loss });
      } finally {
        for (const t of stepOwned) if (!t.disposed) t.dispose();
      }
    }
    const lora = new Map<string, LoraFactors>();
    for (const t of encoder.spec.targets) {
      lora.set(t.weight, { a: opt.params.get(`${t.weight}#lora.a`)! as Tensor<'f32'>, b: opt.params.get(`${t.weight}#lora.b`)! as Tensor<'f32'>, scale: loraScale });
    }
    const embeddingRow = tensor(Float32Array.from(opt.params.get('embedding')!.dataSync() as Float32Array), { shape: [H] });
    const concept: TuningEncoderConcept = {
      method: 'tuning-encoder', tokens: [{ token, classWord, embedding: embeddingRow, prompt: `a ${token} ${classWord}` }], lora, baseFingerprint: m.fingerprint,
      settings: { steps: String(steps), lr: String(lr), batchSize: String(B), pullWeight: String(pull), alpha: String(so.alpha), seed: String(seed) },
    };
    opt.params.get('embedding')!.dispose();
    opt.disposeState();
    opt = undefined;  // the LoRA factors belong to the concept now
    return { concept, losses, secondsPerStep: progress.secondsPerStep(Math.max(1, steps)) };
  } finally {
    if (opt) opt.dispose();
    for (const t of owned) if (!t.disposed) t.dispose();
    ctx?.dispose();
    disposeTrainingModel(m);
    if (ownEncoder) encoder.dispose();
  }
}
