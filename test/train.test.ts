// The training helpers: AdamW (against the adamw_step op applied by hand and
// PyTorch's formula), gradient clipping, the EMA, checkpoint state round
// trips, the learning-rate schedule and the progress line.
import { Writable } from 'node:stream';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { AdamW, warmupCosine } from '../lib/train/optimizer.js';
import { formatSeconds, Progress } from '../lib/train/progress.js';
import { assertClose, assertRejects } from './helpers.js';

const t = suite('train');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

/** torch.optim.AdamW for one scalar, in float64. */
function adamwRef(p: number, grads: number[], lr: number, wd: number, b1 = 0.9, b2 = 0.999, eps = 1e-8): number {
  let m = 0, v = 0;
  grads.forEach((g, i) => {
    const step = i + 1;
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const mh = m / (1 - b1 ** step), vh = v / (1 - b2 ** step);
    p -= (lr * mh) / (Math.sqrt(vh) + eps);
  });
  return p;
}

t('AdamW follows torch.optim.AdamW over several steps; parameters without a gradient stay put', async () => {
  const params = new Map<string, Tensor>([['a', tensor(new Float32Array([1, -2, 0.5]))], ['b', tensor(new Float32Array([3]))]]);
  const opt = await AdamW.create(params, { weightDecay: 0.1 });
  const gs = [[0.5, -1, 2], [0.1, 0.3, -0.2], [-0.4, 0.2, 0.9]];
  for (const g of gs) {
    const grad = tensor(new Float32Array(g));
    await opt.update(new Map([['a', grad]]), 0.01);
    grad.dispose();
  }
  assert.is(opt.step, 3);
  const want = [1, -2, 0.5].map((p, i) => adamwRef(p, gs.map((g) => g[i]), 0.01, 0.1));
  assertClose(f32(params.get('a')!), Float32Array.from(want), 1e-5, 1e-7, 'a');
  assert.equal(Array.from(f32(params.get('b')!)), [3], 'b had no gradient');
  opt.dispose();
});

t('clipping scales the gradients to maxGradNorm and reports the norm before; a non-finite gradient skips the step', async () => {
  const params = new Map<string, Tensor>([['w', tensor(new Float32Array([0, 0]))]]);
  const opt = await AdamW.create(params, { maxGradNorm: 1, weightDecay: 0 });
  const g = tensor(new Float32Array([3, 4]));
  const r = await opt.update(new Map([['w', g]]), 0.1);
  assertClose(new Float32Array([r.gradNorm]), new Float32Array([5]), 1e-6, 0, 'norm');
  // The first Adam step moves each entry by about lr·sign(g) whatever the scale: check the moments saw the clipped gradient.
  const state = opt.stateTensors();
  assertClose(f32(state.get('adam_m/w')!), new Float32Array([0.1 * 0.6, 0.1 * 0.8]), 1e-5, 1e-8, 'first moment of the clipped gradient');
  const before = Array.from(f32(params.get('w')!));
  const bad = tensor(new Float32Array([NaN, 1]));
  const r2 = await opt.update(new Map([['w', bad]]), 0.1);
  assert.ok(Number.isNaN(r2.gradNorm));
  assert.is(opt.step, 1, 'the step was skipped');
  assert.equal(Array.from(f32(params.get('w')!)), before);
  g.dispose();
  bad.dispose();
  opt.dispose();
});

t('the EMA is the bias-corrected d·ema + (1−d)·param: the initial weights do not leak into it', async () => {
  const params = new Map<string, Tensor>([['w', tensor(new Float32Array([1]))]]);
  const opt = await AdamW.create(params, { emaDecay: 0.5, weightDecay: 0 });
  let ema = 0;
  const seen: number[] = [];
  for (const gv of [1, -1, 2]) {
    const g = tensor(new Float32Array([gv]));
    await opt.update(new Map([['w', g]]), 0.1);
    g.dispose();
    seen.push(f32(params.get('w')!)[0]);
    ema = 0.5 * ema + 0.5 * seen.at(-1)!;
  }
  // (1 − d)·Σ d^(n−k)·θ_k / (1 − d^n): weights 1/7, 2/7, 4/7 on the three steps' parameters.
  const want = (seen[0] + 2 * seen[1] + 4 * seen[2]) / 7;
  assertClose(new Float32Array([ema / (1 - 0.5 ** 3)]), new Float32Array([want]), 1e-6, 0, 'closed form');
  const avg = await opt.averagedWeights();
  assertClose(f32(avg.get('w')!), new Float32Array([want]), 1e-6, 0, 'averagedWeights');
  avg.get('w')!.dispose();
  opt.dispose();
});

t('stateTensors / restore carry a run over exactly; restore refuses a mismatched state', async () => {
  const mk = () => new Map<string, Tensor>([['w', tensor(new Float32Array([1, 2]))]]);
  const grads = [[0.3, -0.1], [0.2, 0.5], [-0.7, 0.1], [0.05, 0.05]];
  const straight = await AdamW.create(mk(), { emaDecay: 0.9 });
  for (const g of grads) await straight.update(new Map([['w', tensor(new Float32Array(g))]]), 0.05);
  const first = await AdamW.create(mk(), { emaDecay: 0.9 });
  for (const g of grads.slice(0, 2)) await first.update(new Map([['w', tensor(new Float32Array(g))]]), 0.05);
  const saved = new Map([...first.stateTensors()].map(([k, v]) => [k, tensor(Float32Array.from(f32(v)), { shape: v.shape })]));
  const second = await AdamW.create(mk(), { emaDecay: 0.9 });
  second.restore(saved, 2);
  for (const g of grads.slice(2)) await second.update(new Map([['w', tensor(new Float32Array(g))]]), 0.05);
  assert.equal(Array.from(f32(second.params.get('w')!)), Array.from(f32(straight.params.get('w')!)));
  assert.equal(Array.from(f32((await second.averagedWeights()).get('w')!)), Array.from(f32((await straight.averagedWeights()).get('w')!)));
  const wrong = new Map(saved);
  wrong.set('adam_v/w', tensor(new Float32Array(3)));
  const third = await AdamW.create(mk());
  assert.throws(() => third.restore(wrong, 2, 'ckpt.safetensors'), /ckpt\.safetensors 'adam_v\/w' is f32\[3\], expected f32\[2\]/);
  wrong.delete('adam_v/w');
  assert.throws(() => third.restore(wrong, 2, 'ckpt.safetensors'), /lacks 'adam_v\/w'/);
  for (const o of [straight, first, second, third]) o.dispose();
});

t('f16/bf16 parameters train on f32 masters: the weights are the f32 run rounded, and small steps add up', async () => {
  // Gradients exact in both half types, so the master sees what the f32 run sees.
  const gs = [[0.5, -1, 2, 0.25], [0.125, 0.75, -0.5, 1], [-0.375, 0.25, 1.5, 0.5]];
  const start = [1, -2, 0.5, 3];
  const ref = await AdamW.create(new Map<string, Tensor>([['w', tensor(Float32Array.from(start))]]), { weightDecay: 0.01, maxGradNorm: 10, emaDecay: 0.9 });
  for (const dtype of ['bf16', 'f16'] as const) {
    const opt = await AdamW.create(new Map<string, Tensor>([['w', tensor(Float32Array.from(start), { dtype })]]), { weightDecay: 0.01, maxGradNorm: 10, emaDecay: 0.9 });
    for (let i = 0; i < 30; i++) {
      const g = gs[i % gs.length];
      const gHalf = tensor(Float32Array.from(g), { dtype });
      await opt.update(new Map([['w', gHalf]]), 1e-3);
      gHalf.dispose();
      if (dtype === 'bf16') {
        const g32 = tensor(Float32Array.from(g));
        await ref.update(new Map([['w', g32]]), 1e-3);
        g32.dispose();
      }
    }
    const w = opt.params.get('w')!;
    assert.is(w.dtype, dtype, 'the model keeps its dtype');
    assert.equal(Array.from(f32(opt.master('w')!)), Array.from(f32(ref.params.get('w')!)), `${dtype}: the master is the f32 run`);
    const rounded = await ref.params.get('w')!.cast(dtype);
    assert.equal(Array.from(f32(w)), Array.from(f32(rounded)), `${dtype}: the weight is the master rounded`);
    // 30 steps of ~1e-3 each: in bf16 (ulp 2^-6 at 3) every single step rounds away; the master keeps them.
    if (dtype === 'bf16') assert.ok(f32(w)[3] < 3, `the weight at 3 moved (${f32(w)[3]})`);
    const state = opt.stateTensors();
    assert.is(state.get('master/w')?.dtype, 'f32');
    assert.is(state.get('adam_m/w')?.dtype, 'f32', 'moments in f32');
    const avg = await opt.averagedWeights();
    assert.is(avg.get('w')!.dtype, dtype, 'the EMA comes back in the parameter dtype');
    const refAvg = await (await ref.averagedWeights()).get('w')!.cast(dtype);
    if (dtype === 'bf16') assert.equal(Array.from(f32(avg.get('w')!)), Array.from(f32(refAvg)), 'the EMA of the master');
    rounded.dispose();
    opt.dispose();
  }
  ref.dispose();
});

t('a half-precision run resumes exactly from its state (master included); f32 and bf16 grads clip together', async () => {
  const mk = () => new Map<string, Tensor>([['h', tensor(new Float32Array([1, 2]), { dtype: 'bf16' })], ['f', tensor(new Float32Array([0.5]))]]);
  const grads = [[[0.5, -0.25], [2]], [[1, 0.75], [-1]], [[-0.5, 0.125], [0.25]]];
  const step = async (o: AdamW, [h, f]: number[][]) => {
    await o.update(new Map<string, Tensor>([['h', tensor(Float32Array.from(h), { dtype: 'bf16' })], ['f', tensor(Float32Array.from(f))]]), 0.01);
  };
  const straight = await AdamW.create(mk(), { maxGradNorm: 0.5 });
  const r = await straight.update(new Map<string, Tensor>([['h', tensor(new Float32Array([3, 0]), { dtype: 'bf16' })], ['f', tensor(new Float32Array([4]))]]), 0.01);
  assertClose(new Float32Array([r.gradNorm]), new Float32Array([5]), 1e-6, 0, 'one norm over both dtypes');
  for (const g of grads) await step(straight, g);
  const first = await AdamW.create(mk(), { maxGradNorm: 0.5 });
  await first.update(new Map<string, Tensor>([['h', tensor(new Float32Array([3, 0]), { dtype: 'bf16' })], ['f', tensor(new Float32Array([4]))]]), 0.01);
  await step(first, grads[0]);
  const saved = new Map([...first.stateTensors()].map(([k, v]) => [k, tensor(Float32Array.from(f32(v)), { shape: v.shape, dtype: v.dtype })]));
  const second = await AdamW.create(mk(), { maxGradNorm: 0.5 });
  second.restore(saved, 2);
  for (const g of grads.slice(1)) await step(second, g);
  for (const n of ['h', 'f']) assert.equal(Array.from(f32(second.params.get(n)!)), Array.from(f32(straight.params.get(n)!)), n);
  assert.equal(Array.from(f32(second.master('h')!)), Array.from(f32(straight.master('h')!)), 'master');
  const lacking = new Map([...saved].filter(([k]) => !k.startsWith('master/')));
  const third = await AdamW.create(mk());
  assert.throws(() => third.restore(lacking, 2, 'ckpt.safetensors'), /ckpt\.safetensors lacks 'master\/h'/);
  for (const o of [straight, first, second, third]) o.dispose();
});

t('bad options and gradients are refused', async () => {
  await assertRejects(() => AdamW.create(new Map()), 'INVALID_ARGUMENT', /params must be a non-empty Map/);
  const params = new Map<string, Tensor>([['w', tensor(new Float32Array([1]))]]);
  await assertRejects(() => AdamW.create(params, { betas: [1.5, 0.9] }), 'INVALID_ARGUMENT', /betas\[0\] must be a number in/);
  await assertRejects(() => AdamW.create(params, { lr: 1 } as never), 'INVALID_ARGUMENT', /lr/);
  const opt = await AdamW.create(params);
  await assertRejects(() => opt.update(new Map([['nope', tensor(new Float32Array([1]))]]), 0.1), 'INVALID_ARGUMENT', /gradient 'nope' has no parameter/);
  await assertRejects(() => opt.update(new Map(), NaN), 'INVALID_ARGUMENT', /lr must be a number/);
  opt.dispose();
});

t('warmupCosine: linear warm-up, cosine to the floor', () => {
  assertClose(new Float64Array([warmupCosine(0, 100, 1, 10)]), new Float64Array([0.1]), 1e-12, 0, 'first warm-up step');
  assertClose(new Float64Array([warmupCosine(9, 100, 1, 10)]), new Float64Array([1]), 1e-12, 0, 'end of warm-up');
  assertClose(new Float64Array([warmupCosine(55, 100, 1, 10, 0.1)]), new Float64Array([0.1 + 0.9 * 0.5]), 1e-12, 0, 'half way');
  assertClose(new Float64Array([warmupCosine(100, 100, 2, 10, 0.1)]), new Float64Array([0.2]), 1e-12, 0, 'the floor');
});

t('Progress prints step, loss and ETA lines on a non-terminal stream, every `every` steps and the last', () => {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _e, cb) { lines.push(String(chunk)); cb(); } });
  const p = new Progress(10, 0, { stream, every: 5, label: 'x' });
  for (let s = 1; s <= 10; s++) p.update(s, { loss: 1 });
  assert.is(lines.length, 2, 'steps 5 and 10');
  assert.match(lines[1], /^x 10\/10 {2}\[#{24}\] {2}loss 1\.0000 .* ETA 0s\n$/);
  assert.is(formatSeconds(3725), '1h02m');
  assert.is(formatSeconds(65), '1m05s');
});

t.run();
