// The CLIP vision transformer (the tuning encoder's backbone) against float64
// PyTorch (test/fixtures/gen_clip_vision.py: CLIPVisionModel written out in
// torch, two tiny random models, quick_gelu and erf GELU): outputs and every
// weight gradient, gradients of one output alone, the layout check, bad input.
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors } from '../lib/io/safetensors.js';
import { ClipVisionModel } from '../lib/models/clip-vision.js';
import { assertClose, assertRejects } from './helpers.js';

const t = suite('models.clip-vision');
const fx = await loadSafetensors(fileURLToPath(new URL('./fixtures/clip_vision.safetensors', import.meta.url)));
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const base = { hidden_size: 32, intermediate_size: 48, num_attention_heads: 4, num_channels: 3, image_size: 16, patch_size: 4, layer_norm_eps: 1e-5 };

function model(tag: 'quick' | 'gelu') {
  const get = (k: string): Tensor => {
    const v = fx.get(`${tag}/${k}`);
    if (!v) throw new Error(`fixture entry ${tag}/${k} missing`);
    return v;
  };
  const weights = new Map([...fx].filter(([k]) => k.startsWith(`${tag}/weights/`)).map(([k, v]) => [k.slice(`${tag}/weights/`.length), v]));
  const config = { ...base, hidden_act: tag === 'quick' ? 'quick_gelu' : 'gelu', num_hidden_layers: tag === 'quick' ? 2 : 1 };
  return { get, weights, config, vit: ClipVisionModel.fromWeights(config, weights) };
}

for (const tag of ['quick', 'gelu'] as const) {
  t(`${tag}: outputs and every weight gradient match float64 autograd`, async () => {
    const m = model(tag);
    const r = await m.vit.forwardBackward(m.get('pixel_values'), { dLast: m.get('d_last'), dPooled: m.get('d_pooled'), trainable: 'all' });
    assertClose(f32(r.lastHiddenState), f32(m.get('last_hidden_state')), 1e-4, 1e-4, 'last_hidden_state');
    assertClose(f32(r.pooled), f32(m.get('pooled')), 1e-4, 1e-4, 'pooled');
    assert.equal([...r.grads.keys()], m.vit.weightNames);
    for (const [n, g] of r.grads) {
      const want = m.get(`grads/${n}`);
      assert.equal(g.shape, want.shape, n);
      // Sums over a batch of 2 × 17 tokens of products of O(1) terms, in f32: 1e-4 relative to the gradient's scale.
      assertClose(f32(g), f32(want), 1e-4, 1e-4 * Math.max(1, ...f32(want).map(Math.abs)), n);
    }
    const f = await m.vit.forward(m.get('pixel_values'));
    assert.equal(f32(f.lastHiddenState), f32(r.lastHiddenState), 'forward = forwardBackward\'s forward, bit for bit');
    assert.equal(f32(f.pooled), f32(r.pooled));
  });
}

t('one output alone: the pooled gradient is the both-outputs gradient less the last-state one (linearity)', async () => {
  const m = model('quick');
  const px = m.get('pixel_values');
  const names = ['vision_model.embeddings.class_embedding', 'vision_model.embeddings.patch_embedding.weight', 'vision_model.encoder.layers.1.mlp.fc2.weight', 'vision_model.post_layernorm.weight'];
  const both = await m.vit.forwardBackward(px, { dLast: m.get('d_last'), dPooled: m.get('d_pooled'), trainable: names });
  const last = await m.vit.forwardBackward(px, { dLast: m.get('d_last'), trainable: names });
  const pooled = await m.vit.forwardBackward(px, { dPooled: m.get('d_pooled'), trainable: names });
  assert.equal([...pooled.grads.keys()], names);
  for (const n of names) {
    const a = f32(last.grads.get(n)!), b = f32(pooled.grads.get(n)!), s = f32(both.grads.get(n)!);
    const scale = Math.max(1, ...s.map(Math.abs));
    assertClose(Float32Array.from(a, (v, i) => v + b[i]), s, 1e-5, 1e-5 * scale, n);
  }
  assert.ok(f32(last.grads.get('vision_model.post_layernorm.weight')!).every((v) => v === 0), 'without dPooled the post norm gets no gradient');
});

t('the layout is checked by name and shape; bad inputs are named', async () => {
  const m = model('quick');
  const short = new Map(m.weights);
  short.delete('vision_model.pre_layrnorm.bias');
  assert.throws(() => ClipVisionModel.fromWeights(m.config, short), /vision_model\.pre_layrnorm\.bias/);
  assert.throws(() => ClipVisionModel.fromWeights({ ...m.config, patch_size: 8 }, m.weights), /patch_embedding\.weight/);
  assert.throws(() => ClipVisionModel.fromWeights({ ...m.config, patch_size: 5 }, m.weights), /'patch_size' must be a divisor of image_size 16/);
  await assertRejects(() => m.vit.forward(tensor(new Float32Array(3 * 8 * 8), { shape: [1, 3, 8, 8] })), 'SHAPE_MISMATCH', /pixelValues must be \[batch, 3, 16, 16\]/);
  await assertRejects(() => m.vit.forwardBackward(m.get('pixel_values'), { trainable: 'all' }), 'INVALID_ARGUMENT', /give dLast, dPooled or both/);
  await assertRejects(() => m.vit.forwardBackward(m.get('pixel_values'), { dPooled: tensor(new Float32Array(32), { shape: [1, 32] }), trainable: 'all' }), 'SHAPE_MISMATCH', /dPooled must be \[2, 32\]/);
  await assertRejects(() => m.vit.forwardBackward(m.get('pixel_values'), { dPooled: m.get('d_pooled'), trainable: ['vision_model.nope'] }), 'INVALID_ARGUMENT', /'vision_model\.nope' is not a weight/);
});

t.run();
