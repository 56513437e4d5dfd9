// The UNet's memory modes: unet_forward (sampling) keeps no activations, and
// forwardBackward({ checkpoint: true }) keeps only each layer's input and
// recomputes the layer before its backward. Both must leave every number
// unchanged and cost clearly less CPU memory at a sample size where
// activations dominate.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { memoryStats, resetPeakMemory, tensor, type Tensor } from '../lib/index.js';
import { UNet2DConditionModel, type UNetTrainable } from '../lib/models/unet.js';
import { tinyModelLoader, type TinyName } from './tiny-models.js';
import { assertRejects, randomArray, settleGarbage } from './helpers.js';

const t = suite('models.unet-checkpoint');

const loadTiny = tinyModelLoader('unet');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

async function tiny(name: TinyName) {
  const m = await loadTiny(name);
  return { ...m, unet: UNet2DConditionModel.fromWeights(m.config, m.weights) };
}

// Inputs for the tiny models at 2×4×size×size (context [2, 7, cross_attention_dim]).
function inputs(size: number, cross: number) {
  return {
    sample: tensor(randomArray(2 * 4 * size * size, 11), { shape: [2, 4, size, size] }),
    context: tensor(randomArray(2 * 7 * cross, 12), { shape: [2, 7, cross] }),
    probe: tensor(randomArray(2 * 4 * size * size, 13), { shape: [2, 4, size, size] }),
  };
}

function assertSame(a: Tensor, b: Tensor, what: string): void {
  const x = f32(a), y = f32(b);
  assert.is(x.length, y.length, `${what}: length`);
  for (let i = 0; i < x.length; i++) {
    if (x[i] !== y[i]) assert.unreachable(`${what}: element ${i} is ${x[i]} with checkpointing, ${y[i]} without`);
  }
}

// Peak CPU bytes above the live bytes before `fn`, with the peak reset first.
async function peakOf<T>(fn: () => Promise<T>): Promise<{ peak: number; result: T }> {
  const base = await settleGarbage();
  resetPeakMemory('cpu');
  const result = await fn();
  return { peak: memoryStats('cpu').peakBytes - base, result };
}

const dispose = (...ts: Tensor[]): void => ts.forEach((x) => x.dispose());

for (const name of ['sd1-tiny', 'sd2-tiny'] as const) {
  t(`${name}: checkpointed gradients equal the plain ones bit for bit (trainable 'all')`, async () => {
    const m = await tiny(name);
    const { sample, context, probe } = inputs(16, name === 'sd1-tiny' ? 32 : 48);
    const run = (checkpoint: boolean, trainable: UNetTrainable) => m.unet.forwardBackward(sample, [3, 700], context, probe, { trainable, checkpoint });
    const plain = await run(false, 'all');
    const ckpt = await run(true, 'all');
    assertSame(ckpt.out, plain.out, 'out');
    assertSame(ckpt.dSample, plain.dSample, 'dSample');
    assertSame(ckpt.dContext, plain.dContext, 'dContext');
    assert.is(ckpt.grads.size, m.unet.weightNames.length);
    for (const [n, g] of plain.grads) assertSame(ckpt.grads.get(n)!, g, n);
    // A frozen UNet still passes input gradients through the recomputed layers.
    const none = await run(true, 'none');
    assertSame(none.dSample, plain.dSample, "dSample under 'none'");
    assertSame(none.dContext, plain.dContext, "dContext under 'none'");
  });
}

t('sd1-tiny: the inference forward equals the training forward exactly', async () => {
  const m = await tiny('sd1-tiny');
  const { sample, context, probe } = inputs(16, 32);
  const out = await m.unet.forward(sample, 250, context);
  const r = await m.unet.forwardBackward(sample, 250, context, probe, { trainable: 'none' });
  assertSame(out, r.out, 'forward vs forwardBackward out');
});

// At 2×4×64×64 the tiny UNet's activations are hundreds of MB against about a
// MB of weights. Measured here: forward 23 MB, forwardBackward 271 MB,
// checkpointed forwardBackward 93 MB (trainable 'kv'; peaks above the live bytes before).
t('sd1-tiny at 2×4×64×64: forward peaks far below forwardBackward; checkpointing lowers the backward peak', async () => {
  const m = await tiny('sd1-tiny');
  const { sample, context, probe } = inputs(64, 32);
  const fwd = await peakOf(() => m.unet.forward(sample, 500, context));
  const full = await peakOf(() => m.unet.forwardBackward(sample, 500, context, probe, { trainable: 'kv' }));
  const ckpt = await peakOf(() => m.unet.forwardBackward(sample, 500, context, probe, { trainable: 'kv', checkpoint: true }));
  const mb = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MB`;
  const figures = `forward ${mb(fwd.peak)}, forwardBackward ${mb(full.peak)}, checkpointed ${mb(ckpt.peak)}`;
  assert.ok(fwd.peak > 0 && full.peak > 0 && ckpt.peak > 0, figures);
  assert.ok(fwd.peak < 0.6 * full.peak, `inference keeps no activations: ${figures}`);
  assert.ok(ckpt.peak < 0.7 * full.peak, `checkpointing saves memory: ${figures}`);
  // Same numbers all the same.
  assertSame(fwd.result, full.result.out, 'forward vs forwardBackward out at 64×64');
  assertSame(ckpt.result.dSample, full.result.dSample, 'dSample at 64×64');
  for (const [n, g] of full.result.grads) assertSame(ckpt.result.grads.get(n)!, g, n);
  dispose(fwd.result, full.result.out, full.result.dSample, full.result.dContext, ckpt.result.out, ckpt.result.dSample, ckpt.result.dContext);
});

t('checkpoint must be a boolean; unknown options are named', async () => {
  const m = await tiny('sd1-tiny');
  const { sample, context, probe } = inputs(16, 32);
  await assertRejects(() => m.unet.forwardBackward(sample, 1, context, probe, { checkpoint: 'yes' as never }), 'INVALID_ARGUMENT', /checkpoint must be a boolean, got/);
  await assertRejects(() => m.unet.forwardBackward(sample, 1, context, probe, { checkpiont: true } as never), 'INVALID_ARGUMENT', /unknown option 'checkpiont'/);
  await assertRejects(() => m.unet.forward(sample, 1, context, { checkpoint: true } as never), 'INVALID_ARGUMENT', /forward: unknown option 'checkpoint'/);
  await assertRejects(() => m.unet.forward(sample, 1, context, 3 as never), 'INVALID_ARGUMENT', /options must be an object/);
});

t.run();
