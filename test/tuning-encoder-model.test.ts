// The tuning encoder's network (lib/methods/tuning-encoder/model.ts) on a
// tiny spec: a fresh encoder predicts the class word and no weight change
// (zero token and up heads); the backward's parameter gradients match
// central differences of the forward along random directions, for each part
// (ViT, convolutions, trunk, token head, LoRA heads), with and without the
// convolutions over the feature maps; bad input is named.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor } from '../lib/creation.js';
import { disposePrediction, TuningEncoder, tuningEncoderLayout, type TuningEncoderSpec } from '../lib/methods/tuning-encoder/model.js';
import type { Tensor } from '../lib/tensor.js';
import { assertRejects, randomArray } from './helpers.js';

const t = suite('tuning-encoder.model');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const SPEC: TuningEncoderSpec = {
  vision: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, image_size: 8, patch_size: 4, num_channels: 3 },
  featureChannels: [4, 6], hidden: 12, tokenDim: 10, rank: 2,
  targets: [{ weight: 'a.attn2.to_k.weight', in: 10, out: 8 }, { weight: 'a.attn2.to_v.weight', in: 10, out: 8 }],
};
const B = 2;
const pixels = tensor(randomArray(B * 3 * 8 * 8, 1), { shape: [B, 3, 8, 8] });
const features = [tensor(randomArray(B * 4 * 4 * 4, 2), { shape: [B, 4, 4, 4] }), tensor(randomArray(B * 6 * 2 * 2, 3), { shape: [B, 6, 2, 2] })];

t('a fresh encoder predicts no offset and no weight change (zero token and up heads)', async () => {
  const enc = await TuningEncoder.create(SPEC, { seed: 1 });
  assert.equal([...enc.params.keys()], Object.keys(tuningEncoderLayout(SPEC)));
  const p = await enc.forward(pixels, features);
  assert.equal(p.offset.shape, [B, 10]);
  assert.ok(f32(p.offset).every((v) => v === 0));
  assert.equal(p.down.map((d) => d.shape), [[B, 2, 10], [B, 2, 10]]);
  assert.equal(p.up.map((u) => u.shape), [[B, 8, 2], [B, 8, 2]]);
  assert.ok(p.up.every((u) => f32(u).every((v) => v === 0)) && p.down.every((d) => f32(d).some((v) => v !== 0)));
  disposePrediction(p);
  enc.dispose();
});

for (const spec of [SPEC, { ...SPEC, conv: 5 }]) t(`the backward matches central differences of the forward, part by part (${spec.conv ? 'convolutions' : 'pooled features'})`, async () => {
  const SPEC_ = spec;
  const fresh = await TuningEncoder.create(SPEC_, { seed: 2 });
  let k = 10;
  const params = new Map([...fresh.params].map(([n, w]) => [n, tensor(Float32Array.from(randomArray(w.numel, k++), (v) => 0.3 * v + (/norm\d?\.weight$|layrnorm\.weight$|layernorm\.weight$/.test(n) ? 1 : 0)), { shape: w.shape })]));
  const enc = TuningEncoder.fromParams(SPEC_, params);
  const probes = { offset: randomArray(B * 10, 50), down: [randomArray(B * 20, 51), randomArray(B * 20, 52)], up: [randomArray(B * 16, 53), randomArray(B * 16, 54)] };
  const dot = (a: Float32Array, b: ArrayLike<number>) => a.reduce((s, v, i) => s + v * b[i], 0);
  const loss = async (e: TuningEncoder): Promise<number> => {
    const p = await e.forward(pixels, features);
    const v = dot(f32(p.offset), probes.offset) + p.down.reduce((s, d, j) => s + dot(f32(d), probes.down[j]), 0) + p.up.reduce((s, u, j) => s + dot(f32(u), probes.up[j]), 0);
    disposePrediction(p);
    return v;
  };
  const pred = await enc.forward(pixels, features);
  const T = (x: ArrayLike<number>, shape: number[]) => tensor(Float32Array.from(x), { shape }) as Tensor<'f32'>;
  const grads = await enc.backward(pred, {
    dOffset: T(probes.offset, [B, 10]), dDown: probes.down.map((x) => T(x, [B, 2, 10])), dUp: probes.up.map((x) => T(x, [B, 8, 2])),
  });
  assert.equal([...grads.keys()], [...enc.params.keys()]);
  const groups: Record<string, (n: string) => boolean> = {
    vit: (n) => n.startsWith('vision_model.'), trunk: (n) => n.startsWith('trunk.'), token: (n) => n.startsWith('token_head.'),
    down: (n) => /\.down\./.test(n), up: (n) => /\.up\./.test(n), ...(spec.conv ? { conv: (n: string) => n.startsWith('conv.') } : {}),
  };
  assert.is([...enc.params.keys()].some((n) => n.startsWith('conv.')), Boolean(spec.conv));
  for (const [g, pick] of Object.entries(groups)) {
    const names = [...enc.params.keys()].filter(pick);
    const dirs = new Map(names.map((n, i) => [n, randomArray(enc.params.get(n)!.numel, 100 + i)]));
    let analytic = 0;
    for (const n of names) analytic += dot(f32(grads.get(n)!), dirs.get(n)!);
    const moved = (h: number) => TuningEncoder.fromParams(SPEC_, new Map([...params].map(([n, w]) => [n, dirs.has(n) ? tensor(Float32Array.from(f32(w), (v, i) => v + h * dirs.get(n)![i]), { shape: w.shape }) : w])));
    const central = async (h: number) => ((await loss(moved(h))) - (await loss(moved(-h)))) / (2 * h);
    const numeric = (4 * (await central(0.005)) - (await central(0.01))) / 3;
    assert.ok(Math.abs(numeric) > 1e-3, `${g}: the derivative ${numeric} is large enough to test`);
    assert.ok(Math.abs(numeric - analytic) <= 0.02 * Math.abs(numeric) + 1e-3, `${g}: finite difference ${numeric}, backward ${analytic}`);
  }
  disposePrediction(pred);
});

t('bad input is named', async () => {
  await assertRejects(async () => TuningEncoder.create({ ...SPEC, targets: [] }), 'INVALID_ARGUMENT', /spec\.targets must list at least one/);
  await assertRejects(async () => TuningEncoder.create({ ...SPEC, rank: 0 }), 'INVALID_ARGUMENT', /spec\.rank/);
  await assertRejects(async () => TuningEncoder.create({ ...SPEC, conv: 0 }), 'INVALID_ARGUMENT', /spec\.conv/);
  const enc = await TuningEncoder.create(SPEC);
  await assertRejects(() => enc.forward(pixels, features.slice(0, 1)), 'INVALID_ARGUMENT', /features must be the 2 UNet encoder features/);
  await assertRejects(() => enc.forward(pixels, [features[1], features[0]]), 'SHAPE_MISMATCH', /features\[0\] must be \[2, 4, h, w\]/);
  assert.throws(() => TuningEncoder.fromParams(SPEC, new Map()), /parameter 'vision_model\.embeddings\.class_embedding' is missing/);
  enc.dispose();
});

t.run();
