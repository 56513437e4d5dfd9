// modelFingerprint: the same model gives the same fingerprint whether its
// files were fp16 or fp32; any change to a cross-attention weight or to the
// vocabulary size gives another; a UNet without attn2 is refused.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { modelFingerprint } from '../lib/concepts/fingerprint.js';
import { assertRejects } from './helpers.js';
import { tinyModelLoader } from './tiny-models.js';

const t = suite('cd.fingerprint');

t('stable across fp16/f32 storage, sensitive to attn2 weights and the vocabulary size', async () => {
  const unet = await tinyModelLoader('unet')('sd1-tiny');
  const text = await tinyModelLoader('text_encoder')('sd1-tiny');
  const emb = text.weights.get('text_model.embeddings.token_embedding.weight')!;
  const a = await modelFingerprint(unet.weights, emb);
  assert.match(a, /^sha256:[0-9a-f]{32}$/);
  // Through fp16 and back: the values a fp16 checkpoint would hold.
  const half = new Map<string, Tensor>();
  for (const [k, v] of unet.weights) half.set(k, await (await v.cast('f16')).cast('f32'));
  assert.is(await modelFingerprint(half, emb), a, 'fp16-stored copy');
  const k = [...unet.weights.keys()].find((n) => n.endsWith('.attn2.to_k.weight'))!;
  const changed = new Map(unet.weights);
  const w = Float32Array.from(unet.weights.get(k)!.dataSync() as Float32Array);
  w[0] += 0.01;
  changed.set(k, tensor(w, { shape: unet.weights.get(k)!.shape }));
  assert.is.not(await modelFingerprint(changed, emb), a, 'one attn2 weight changed');
  const bigger = tensor(new Float32Array((emb.shape[0] + 1) * emb.shape[1]), { shape: [emb.shape[0] + 1, emb.shape[1]] });
  assert.is.not(await modelFingerprint(unet.weights, bigger), a, 'one more token');
  const noAttn = new Map([...unet.weights].filter(([n]) => !n.includes('.attn2.')));
  await assertRejects(() => modelFingerprint(noAttn, emb), 'INVALID_ARGUMENT', /no cross-attention \(attn2\) weights/);
  await assertRejects(() => modelFingerprint({} as never, emb), 'INVALID_ARGUMENT', /unetWeights must be a Map/);
});

t.run();
