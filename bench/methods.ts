// methods suite: seconds per training step of each personalization method,
// Custom Diffusion's step the peer, on the CPU:
//   world-step: the whole methods on the embedded world model, one concept
//     ('star'), prior preservation on 8 generated class images. A Cones pass is
//     the same denoising step without the text-encoder backward and AdamW, plus
//     the fused statistic update (neuron_stat_step) on every K/V matrix.
//   sd1-small-step: the UNet part alone on bench/train.ts's SD1-structured UNet
//     (latents 4×32×32, batch 2): a Cones pass (loss + backward at the current θ,
//     then statisticStep over every cross-attention K/V) against Custom
//     Diffusion's (loss + backward of the same weights, then AdamW).
//   world-personalize: the tuning encoder's whole personalization (model load,
//     prediction, 12 steps) with the shipped world encoder.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { disposeConcept } from '../lib/concepts/concept-file.js';
import { randn, tensor } from '../lib/creation.js';
import { candidateWeights, statisticStep } from '../lib/methods/cones/find.js';
import { parseUNetConfig } from '../lib/models/configs.js';
import { initWeights } from '../lib/models/init.js';
import { unetLayout } from '../lib/models/layout-unet.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { combine } from '../lib/schedulers/combine.js';
import type { Tensor } from '../lib/tensor.js';
import { AdamW } from '../lib/train/optimizer.js';
import { worldEncoderPath } from '../lib/world/model-path.js';
import { teachWorldConcepts } from '../lib/world/teach.js';
import { time } from './measure.js';
import { SD1_SMALL } from './train.js';

const STEPS = 30;

export async function runMethodCases(emit: (record: object) => void): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'imprint-bench-methods-'));
  try {
    const common = { concepts: ['star'], steps: STEPS, numRegImages: 8, quiet: true };
    const cd = await teachWorldConcepts({ ...common, method: 'custom-diffusion', workDir: join(work, 'cd') });
    disposeConcept(cd.concept);
    const cones = await teachWorldConcepts({ ...common, method: 'cones', workDir: join(work, 'cones') });
    disposeConcept(cones.concept);
    emit({
      suite: 'methods', name: 'world-step', device: 'cpu', params: { model: 'embedded world', concept: 'star', steps: STEPS, batch: '1 + 1 prior (cones), 2 + 2 (custom diffusion)' },
      imprint_s: cones.secondsPerStep, peer: 'custom diffusion step', peer_s: cd.secondsPerStep, ratio: cones.secondsPerStep / cd.secondsPerStep,
      cones_candidates: cones.counts.candidates, cones_neurons: cones.counts.neurons,
    });
    // The tuning encoder: one image → prediction + 12 steps (the shipped world encoder), against
    // the whole Custom Diffusion run above (250 steps would be the default; STEPS here).
    if (existsSync(worldEncoderPath())) {
      const t0 = performance.now();
      const te = await teachWorldConcepts({ concepts: ['star'], method: 'tuning-encoder', steps: 12, quiet: true });
      const total = (performance.now() - t0) / 1000;
      const batch = Number(te.concept.settings?.batchSize);  // the encoder file's tuning
      disposeConcept(te.concept);
      emit({
        suite: 'methods', name: 'world-personalize', device: 'cpu', params: { model: 'embedded world', concept: 'star', encoder: 'shipped', tuningSteps: 12, batch },
        imprint_s: total, peer: `custom diffusion, ${STEPS} steps`, peer_s: cd.secondsPerStep * STEPS, ratio: total / (cd.secondsPerStep * STEPS), step_s: te.secondsPerStep,
      });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  await runSd1SmallMethodCase(emit);
}

/** One Cones pass and one Custom Diffusion step of the SD1-structured UNet, timed in the same run. */
export async function runSd1SmallMethodCase(emit: (record: object) => void): Promise<void> {
  const c = parseUNetConfig(SD1_SMALL, 'bench');
  const batch = 2, side = c.sampleSize;
  const weights = await initWeights(unetLayout(c), { seed: 0 });
  const unet = UNet2DConditionModel.fromWeights(SD1_SMALL, weights);
  const x = await randn([batch, c.inChannels, side, side], { seed: 1 });
  const target = await randn([batch, c.inChannels, side, side], { seed: 2 });
  const context = await randn([batch, 77, c.crossAttentionDim], { seed: 3 });
  const t = [100, 400];
  const names = candidateWeights(unet.weightNames, 'kv');
  // Both methods start from copies of the K/V weights, so the timed steps leave the model as it was.
  let theta = new Map<string, Tensor>();
  let stat = new Map<string, Tensor<'f32'>>();
  const params = new Map<string, Tensor>();
  for (const n of names) {
    const w = weights.get(n)!;
    theta.set(n, await combine([[1, w as Tensor<'f32'>]]));
    stat.set(n, tensor(new Float32Array(w.numel), { shape: w.shape }));
    params.set(n, await combine([[1, w as Tensor<'f32'>]]));
  }
  const opt = await AdamW.create(params, { maxGradNorm: 1 });
  const timing = { warmup: 1, minRuns: 3 };
  try {
    const cones = await time(async () => {
      const r = await unet.withWeights(theta).lossBackward(x, t, context, target, { trainable: names });
      ({ theta, stat } = await statisticStep(theta, stat, r.grads, 1e-4));
      for (const v of [r.loss, r.out, r.dSample, r.dContext, ...r.grads.values()]) v.dispose();
    }, timing);
    const cd = await time(async () => {
      const r = await unet.withWeights(params).lossBackward(x, t, context, target, { trainable: names });
      await opt.update(r.grads, 1e-5);
      for (const v of [r.loss, r.out, r.dSample, r.dContext, ...r.grads.values()]) v.dispose();
    }, timing);
    const candidates = names.reduce((s, n) => s + weights.get(n)!.numel, 0);
    emit({
      suite: 'methods', name: 'sd1-small-step', device: 'cpu',
      params: { latent: [c.inChannels, side, side], batch, blockOutChannels: c.blockOutChannels, candidates, dtype: 'f32' },
      imprint_s: cones.median_s, runs: cones.runs, peer: 'custom diffusion step (same UNet, loss + backward + AdamW)', peer_s: cd.median_s, ratio: cones.median_s / cd.median_s,
    });
  } finally {
    opt.dispose();
    for (const v of [x, target, context, ...weights.values(), ...theta.values(), ...stat.values(), ...params.values()]) if (!v.disposed) v.dispose();
  }
}
