// Attention with K/V adapters applied inside the kernel: outputs against plain
// attention on K and V adapted here in JavaScript; dk and dv against plain
// attention's; kDelta and the LoRA factors' gradients against finite
// differences; bad adapter shapes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { nn, tensor, type Tensor } from '../lib/index.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const t = suite('nn.attention K/V adapters');

const [B, H, NQ, NK, D, DV, RK, RV] = [2, 2, 5, 7, 4, 3, 2, 3];

// base + delta + s·u·upᵀ per head, [B, H, NK, dim].
function adapt(base: Float32Array, dim: number, delta?: Float32Array, lora?: { u: Float32Array; up: Float32Array; r: number; s: number }): Float32Array {
  const out = Float32Array.from(base);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let j = 0; j < NK; j++)
        for (let c = 0; c < dim; c++) {
          const at = ((b * H + h) * NK + j) * dim + c;
          let v = out[at] + (delta ? delta[at] : 0);
          if (lora) for (let k = 0; k < lora.r; k++) v += lora.s * lora.u[(b * NK + j) * lora.r + k] * lora.up[(h * dim + c) * lora.r + k];
          out[at] = v;
        }
  return out;
}

const qData = randomArray(B * H * NQ * D, 1), kData = randomArray(B * H * NK * D, 2), vData = randomArray(B * H * NK * DV, 3);
const kDeltaData = randomArray(B * H * NK * D, 4, 0.5), vDeltaData = randomArray(B * H * NK * DV, 5, 0.5);
const kuData = randomArray(B * NK * RK, 6), kupData = randomArray(H * D * RK, 7, 0.5);
const vuData = randomArray(B * NK * RV, 8), vupData = randomArray(H * DV * RV, 9, 0.5);
const q = tensor(qData, { shape: [B, H, NQ, D] }), k = tensor(kData, { shape: [B, H, NK, D] }), v = tensor(vData, { shape: [B, H, NK, DV] });
const dO = tensor(randomArray(B * H * NQ * DV, 10), { shape: [B, H, NQ, DV] });

const adapter = (over: { kDelta?: Tensor<'f32'>; kU?: Tensor<'f32'>; kUp?: Tensor<'f32'>; vU?: Tensor<'f32'>; vUp?: Tensor<'f32'> } = {}): nn.KvAdapter => ({
  kDelta: over.kDelta ?? tensor(kDeltaData, { shape: [B, H, NK, D] }),
  vDelta: tensor(vDeltaData, { shape: [B, H, NK, DV] }),
  kLora: { u: over.kU ?? tensor(kuData, { shape: [B, NK, RK] }), up: over.kUp ?? tensor(kupData, { shape: [H * D, RK] }), scale: 0.7 },
  vLora: { u: over.vU ?? tensor(vuData, { shape: [B, NK, RV] }), up: over.vUp ?? tensor(vupData, { shape: [H * DV, RV] }), scale: 1.3 },
});

t('every adapter at once equals plain attention on K and V adapted here, causal or not; dk and dv too', async () => {
  const kEff = tensor(adapt(kData, D, kDeltaData, { u: kuData, up: kupData, r: RK, s: 0.7 }), { shape: [B, H, NK, D] });
  const vEff = tensor(adapt(vData, DV, vDeltaData, { u: vuData, up: vupData, r: RV, s: 1.3 }), { shape: [B, H, NK, DV] });
  for (const causal of [false, true]) {
    const got = await nn.attention(q, k, v, { causal, kv: adapter() });
    const ref = await nn.attention(q, kEff, vEff, { causal });
    assertClose(got.o.dataSync(), ref.o.dataSync(), 1e-5, 1e-6, `o (causal ${causal})`);
    assertClose(got.lse.dataSync(), ref.lse.dataSync(), 1e-5, 1e-6, `lse (causal ${causal})`);
    const g = await nn.attentionBackward(dO, q, k, v, got, { causal, kv: adapter() });
    const gr = await nn.attentionBackward(dO, q, kEff, vEff, ref, { causal });
    assertClose(g.dq.dataSync(), gr.dq.dataSync(), 1e-5, 1e-6, 'dq');
    assertClose(g.dk.dataSync(), gr.dk.dataSync(), 1e-5, 1e-6, 'dk');
    assertClose(g.dv.dataSync(), gr.dv.dataSync(), 1e-5, 1e-6, 'dv');
    assert.equal(g.dkLora!.du.shape, [B, NK, RK]);
    assert.equal(g.dvLora!.dup.shape, [H * DV, RV]);
  }
  const plain = await nn.attentionBackward(dO, q, k, v, await nn.attention(q, k, v));
  assert.is(plain.dkLora, undefined);
});

t('finite differences agree for kDelta and both LoRAs\' u and up', async () => {
  const out = async (kv: nn.KvAdapter) => (await nn.attention(q, k, v, { kv })).o;
  const grads = async (dy: Tensor<'f32'>) => {
    const kv = adapter();
    return nn.attentionBackward(dy, q, k, v, await nn.attention(q, k, v, { kv }), { kv });
  };
  await gradcheck('kDelta', kDeltaData, [B, H, NK, D], (x) => out(adapter({ kDelta: x })), async (dy) => (await grads(dy)).dk);
  await gradcheck('kLora.u', kuData, [B, NK, RK], (x) => out(adapter({ kU: x })), async (dy) => (await grads(dy)).dkLora!.du);
  await gradcheck('kLora.up', kupData, [H * D, RK], (x) => out(adapter({ kUp: x })), async (dy) => (await grads(dy)).dkLora!.dup);
  await gradcheck('vLora.u', vuData, [B, NK, RV], (x) => out(adapter({ vU: x })), async (dy) => (await grads(dy)).dvLora!.du);
  await gradcheck('vLora.up', vupData, [H * DV, RV], (x) => out(adapter({ vUp: x })), async (dy) => (await grads(dy)).dvLora!.dup);
});

t('bad adapters name the problem', async () => {
  const bad = (kv: unknown) => nn.attention(q, k, v, { kv } as never);
  await assertRejects(() => bad({ kDelta: tensor(new Float32Array(B * H * NK * DV), { shape: [B, H, NK, DV] }) }), 'SHAPE_MISMATCH', /kDelta must have shape \[2, 2, 7, 4\], got f32\[2, 2, 7, 3\]/);
  await assertRejects(() => bad({ kLora: { u: tensor(kuData, { shape: [B, NK, RK] }) } }), 'INVALID_ARGUMENT', /kv.kLora needs both u and up/);
  await assertRejects(() => bad({ vLora: { u: tensor(new Float32Array(NK * RV), { shape: [1, NK, RV] }), up: tensor(vupData, { shape: [H * DV, RV] }) } }), 'SHAPE_MISMATCH', /vU must be \[batch 2, keys 7, rank ≥ 1\], got f32\[1, 7, 3\]/);
  await assertRejects(() => bad({ kLora: { u: tensor(kuData, { shape: [B, NK, RK] }), up: tensor(new Float32Array(H * D * 3), { shape: [H * D, 3] }) } }), 'SHAPE_MISMATCH', /kUp must have shape \[8, 2\], got f32\[8, 3\]/);
  await assertRejects(() => bad({ kSomething: 1 }), 'INVALID_ARGUMENT', /kSomething/);
});

t.run();
