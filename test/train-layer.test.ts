// The shared training layer (lib/train): the prior-preservation batch's loss
// weights in closed form, the run state's resume check and clean-up of what a
// killed run left, and the denoising step's contract — the loss scale is one
// f32 multiply of loss and every gradient, and only the token rows asked for
// get a gradient.
import { mkdirSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { randn, tensor, type Tensor } from '../lib/index.js';
import { TOKEN_EMBEDDING } from '../lib/models/clip-text-backward.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { DDPMTraining } from '../lib/schedulers/ddpm.js';
import { denoisingStep, type DenoisingBatch } from '../lib/train/denoising-step.js';
import { AdamW } from '../lib/train/optimizer.js';
import { priorPreservationBatch, type Sample } from '../lib/train/prior-batch.js';
import { SeededRandom } from '../lib/train/random.js';
import { removeStaleTemporaries, RunState } from '../lib/train/run-state.js';
import { removeTempFolders, SCHEDULER_CONFIG, tempFolder } from './cd-fixture.js';
import { tinyText, tinyUnet } from './cd-fixtures.js';

const t = suite('train.layer');
t.after(removeTempFolders);
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

t('prior-preservation weights: instances sum to 1 over their mask, regularization to the prior weight; draws follow the seed', () => {
  const plane = 4;
  const sample = (mask: number[], prompt: string): Sample => ({ latent: undefined as unknown as Tensor, mask: Float32Array.from(mask), prompt });
  const instances = [sample([1, 1, 0, 0], 'a'), sample([1, 1, 1, 0], 'b'), sample([0, 1, 0, 0], 'c')];
  const regs = [sample([1, 1, 1, 1], 'r1'), sample([1, 1, 1, 1], 'r2')];
  const o = { batch: 3, priorWeight: 0.5, plane, numTrainTimesteps: 1000 };
  const b = priorPreservationBatch(new SeededRandom(7).fork('step 0'), instances, regs, o);
  assert.is(b.picked.length, 6);
  assert.is(b.lossScale, 1.5);
  const sum = (from: number, to: number): number => {
    let s = 0;
    for (let k = from * plane; k < to * plane; k++) s += b.maskData[k];
    return s;
  };
  // sum(mask·(out − target)²)/sum(mask) in the op then equals (masked mean + w·mean) / (1 + w).
  assert.ok(Math.abs(sum(0, 3) - 1) < 1e-6, `instance weights sum to ${sum(0, 3)}`);
  assert.ok(Math.abs(sum(3, 6) - 0.5) < 1e-6, `regularization weights sum to ${sum(3, 6)}`);
  b.picked.slice(0, 3).forEach((s, k) => s.mask.forEach((m, p) => { if (m === 0) assert.is(b.maskData[k * plane + p], 0); }));
  const again = priorPreservationBatch(new SeededRandom(7).fork('step 0'), instances, regs, o);
  assert.equal(again.picked.map((s) => s.prompt), b.picked.map((s) => s.prompt));
  assert.equal(again.timesteps, b.timesteps);
  const alone = priorPreservationBatch(new SeededRandom(7).fork('step 0'), instances, undefined, o);
  assert.is(alone.picked.length, 3);
  assert.is(alone.lossScale, 1);
  assert.equal(alone.picked.map((s) => s.prompt), b.picked.slice(0, 3).map((s) => s.prompt), 'the instance draws come first either way');
});

t('run state: a checkpoint of other settings is refused naming each difference; older checkpoints get recordedSince values', async () => {
  const dir = await tempFolder('imprint-runstate-');
  const params = new Map<string, Tensor>([['w', tensor(new Float32Array([1, 2]), { shape: [2] })]]);
  const opt = await AdamW.create(params, {});
  const run = new RunState('fit', dir, { seed: '1', lr: '0.1' });
  assert.is(run.resumeStep(true), 0, 'no checkpoint yet');
  await run.save(opt, 3);
  assert.is(new RunState('fit', dir, { seed: '1', lr: '0.1' }).resumeStep(true), 3);
  assert.is(new RunState('fit', dir, { seed: '1', lr: '0.1' }).resumeStep(false), 0, 'resume false starts over');
  assert.throws(() => new RunState('fit', dir, { seed: '2', lr: '0.2' }).resumeStep(true), /fit: .*checkpoint\.safetensors was written by another run \(seed 1 vs 2; lr 0\.1 vs 0\.2\)/);
  // A setting added later: checkpoints without it count as having the old behaviour's value.
  assert.is(new RunState('fit', dir, { seed: '1', lr: '0.1', extra: 'off' }, { recordedSince: { extra: 'off' } }).resumeStep(true), 3);
  assert.throws(() => new RunState('fit', dir, { seed: '1', lr: '0.1', extra: 'on' }, { recordedSince: { extra: 'off' } }).resumeStep(true), /extra off vs on/);
  await run.restore(opt, 3);
  assert.throws(() => run.guard(4, Number.NaN, 10), /the loss is NaN at step 5 \(limit maxLoss 10\); training stopped, the last good checkpoint .* is kept/);
  assert.throws(() => run.guard(4, 11, 10), /limit maxLoss 10/);
  assert.throws(() => run.guard(4, 1, 10, Infinity), /gradient norm is Infinity/);
  run.guard(4, 1, 10, 2);
  opt.dispose();
});

t('what a killed run left (temporaries of dead processes) is removed at the next start; a live process\'s are kept', async () => {
  const dir = await tempFolder('imprint-stale-');
  // A pid that surely ended: a child that has exited.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  mkdirSync(join(dir, 'regularization'), { recursive: true });
  writeFileSync(join(dir, `checkpoint.safetensors.tmp-${dead}`), 'x');
  writeFileSync(join(dir, 'checkpoint.safetensors.tmp'), 'x');
  mkdirSync(join(dir, 'regularization', `abc.tmp-${dead}`));
  writeFileSync(join(dir, `mine.tmp-${process.pid}`), 'x');
  writeFileSync(join(dir, 'keep.safetensors'), 'x');
  new RunState('fit', dir, {});
  assert.equal(readdirSync(dir).sort(), ['keep.safetensors', `mine.tmp-${process.pid}`, 'regularization']);
  assert.equal(removeStaleTemporaries(join(dir, 'regularization')), [`abc.tmp-${dead}`]);
  assert.not.ok(existsSync(join(dir, 'regularization', `abc.tmp-${dead}`)));
});

t('the denoising step: lossScale is one f32 multiply of the loss and of every gradient; only rowMask rows of the token table get a gradient', async () => {
  const u = await tinyUnet('sd1-tiny');
  const te = await tinyText('sd1-tiny');
  const unet = UNet2DConditionModel.fromWeights(u.config, u.weights);
  const ddpm = DDPMTraining.fromConfig(SCHEDULER_CONFIG);
  const vocab = te.weights.get(TOKEN_EMBEDDING)!.shape[0];
  const ids = new Int32Array(2 * 77).fill(vocab - 1);
  ids.set([vocab - 2, 5, 6, vocab - 1], 0);
  ids.set([vocab - 2, 7, vocab - 1], 77);
  const batch: DenoisingBatch = {
    ids: tensor(ids, { shape: [2, 77] }),
    x0: (await randn([2, 4, 8, 8], { seed: 1 })) as Tensor<'f32'>,
    noise: (await randn([2, 4, 8, 8], { seed: 2 })) as Tensor<'f32'>,
    timesteps: [10, 900],
  };
  const rowMask = new Uint8Array(vocab);
  rowMask[6] = 1;
  const mask = tensor(rowMask, { shape: [vocab] });
  const model = { unet, textConfig: te.config, textWeights: te.weights, ddpm };
  const owned: Tensor[] = [];
  const one = await denoisingStep(model, batch, { unet: 'kv', text: 'embeddings', rowMask: mask }, owned);
  const three = await denoisingStep(model, batch, { unet: 'kv', text: 'embeddings', rowMask: mask, lossScale: 3 }, owned);
  assert.ok(one.loss > 0 && Number.isFinite(one.loss));
  assert.is(three.loss, one.loss * 3);
  assert.ok(one.unet.size > 0);
  for (const [n, g] of one.unet) {
    const a = f32(g);
    const b = f32(three.unet.get(n)!);
    for (let k = 0; k < a.length; k++) if (b[k] !== Math.fround(3 * a[k])) assert.unreachable(`${n}[${k}]: ${b[k]} vs 3·${a[k]}`);
  }
  const table = f32(one.text.get(TOKEN_EMBEDDING)!);
  const H = te.weights.get(TOKEN_EMBEDDING)!.shape[1];
  let rowNorm = 0;
  for (let r = 0; r < vocab; r++) {
    let s = 0;
    for (let k = 0; k < H; k++) s += table[r * H + k] ** 2;
    if (r === 6) rowNorm = s;
    else if (s !== 0) assert.unreachable(`row ${r} got a gradient`);
  }
  assert.ok(rowNorm > 0, 'the masked row, used by the prompt, gets one');
  const none = await denoisingStep(model, batch, { unet: 'kv', text: 'none' }, owned);
  assert.is(none.text.size, 0);
  assert.is(none.loss, one.loss, 'the same batch gives the same loss');
  for (const x of [...owned, batch.ids, batch.x0, batch.noise, mask]) if (!x.disposed) x.dispose();
});

t.run();
