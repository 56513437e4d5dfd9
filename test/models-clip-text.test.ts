// The CLIP text encoder graph against transformers' CLIPTextModel outputs for
// the tiny SD1 (quick_gelu) and SD2 (gelu) text encoders in
// shared/reference/parity, and bad configs, weights and ids.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { nn, tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors } from '../lib/io/safetensors.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { parseClipTextConfig } from '../lib/models/configs.js';
import { clipTextLayout } from '../lib/models/layout-clip.js';
import { runOp } from '../lib/nn/run.js';
import { PARITY, tinyModelLoader } from './tiny-models.js';
import { assertClose, assertRejects } from './helpers.js';

const parity = PARITY;
const t = suite('models.clip-text');

const model = tinyModelLoader<{ hidden_size: number; num_attention_heads: number; num_hidden_layers: number; [field: string]: unknown }>('text_encoder');

const RTOL = 1e-4;
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const ATOL = 1e-5;

for (const name of ['sd1-tiny', 'sd2-tiny'] as const) {
  t(`${name}: last_hidden_state and penultimate_normed match transformers (i64 ids tensor)`, async () => {
    const m = await model(name);
    const enc = ClipTextEncoder.fromWeights(m.config, m.weights);
    const ids = m.case_.get('input_ids')!;
    assert.equal(ids.shape, [2, 77]);
    const out = await enc.encode(ids, { penultimate: true });
    assert.equal(out.lastHiddenState.shape, [2, 77, m.config.hidden_size]);
    assertClose(f32(out.lastHiddenState), f32(m.case_.get('last_hidden_state')!), RTOL, ATOL, 'last_hidden_state');
    assertClose(f32(out.penultimate!), f32(m.case_.get('penultimate_normed')!), RTOL, ATOL, 'penultimate_normed');
  });
}

t('number[][] ids and i32 tensors give the same result; penultimate only when asked', async () => {
  const m = await model('sd1-tiny');
  const enc = ClipTextEncoder.fromWeights(m.config, m.weights);
  const ids64 = m.case_.get('input_ids')!.dataSync() as BigInt64Array;
  const rows = [0, 1].map((b) => Array.from(ids64.subarray(b * 77, (b + 1) * 77), Number));
  const out = await enc.encode(rows);
  assert.is(out.penultimate, undefined);
  assertClose(f32(out.lastHiddenState), f32(m.case_.get('last_hidden_state')!), RTOL, ATOL, 'from arrays');
  const i32 = tensor(Int32Array.from(rows.flat()), { shape: [2, 77] });
  const out32 = await enc.encode(i32, { penultimate: false });
  assert.equal(Array.from(f32(out32.lastHiddenState)), Array.from(f32(out.lastHiddenState)));
});

t('causal: a prefix encodes to the prefix of the full output; each row is independent of the batch', async () => {
  const m = await model('sd2-tiny');
  const enc = ClipTextEncoder.fromWeights(m.config, m.weights);
  const full = f32(m.case_.get('last_hidden_state')!);
  const ids64 = m.case_.get('input_ids')!.dataSync() as BigInt64Array;
  const H = m.config.hidden_size;
  const row1 = Array.from(ids64.subarray(77, 77 + 10), Number);
  const out = await enc.encode([row1], { penultimate: true });
  assert.equal(out.lastHiddenState.shape, [1, 10, H]);
  assertClose(f32(out.lastHiddenState), full.subarray(77 * H, 87 * H), RTOL, ATOL, 'prefix of row 1');
  assertClose(f32(out.penultimate!), f32(m.case_.get('penultimate_normed')!).subarray(77 * H, 87 * H), RTOL, ATOL, 'penultimate prefix');
});

t('the graph equals the same steps composed from nn ops (one layer, changed weights)', async () => {
  const m = await model('sd1-tiny');
  const c = { ...m.config, num_hidden_layers: 1 };
  const enc = ClipTextEncoder.fromWeights(c, m.weights);
  const ids = [[49, 3, 998, 0, 7]];
  const out = await enc.encode(ids, { penultimate: true });
  const w = (k: string): Tensor<'f32'> => m.weights.get(`text_model.${k}`)! as Tensor<'f32'>;
  const L = (k: string): Tensor<'f32'> => w(`encoder.layers.0.${k}`);
  const [T, H, heads] = [5, c.hidden_size, c.num_attention_heads];
  const hd = H / heads;
  const tok = await nn.embedding(tensor(Int32Array.from(ids[0]), { shape: [1, T] }), w('embeddings.token_embedding.weight'));
  const pos = await nn.embedding(tensor(Int32Array.from([0, 1, 2, 3, 4]), { shape: [T] }), w('embeddings.position_embedding.weight'));
  const x = await tok.add(pos);
  const ln1 = (await nn.layerNorm(x, { weight: L('layer_norm1.weight'), bias: L('layer_norm1.bias') })).y;
  // The head split by hand, in JavaScript: [1, T, heads, hd] → [1, heads, T, hd].
  const split = (a: Float32Array): Tensor<'f32'> => {
    const o = new Float32Array(a.length);
    for (let s = 0; s < T; s++) for (let h = 0; h < heads; h++) for (let d = 0; d < hd; d++) o[(h * T + s) * hd + d] = a[(s * heads + h) * hd + d];
    return tensor(o, { shape: [1, heads, T, hd] });
  };
  const proj = async (p: string): Promise<Tensor<'f32'>> => split((await nn.linear(ln1, L(`self_attn.${p}.weight`), L(`self_attn.${p}.bias`))).dataSync() as Float32Array);
  const { o } = await nn.attention(await proj('q_proj'), await proj('k_proj'), await proj('v_proj'), { causal: true });
  const od = o.dataSync() as Float32Array;
  const merged = new Float32Array(T * H);
  for (let s = 0; s < T; s++) for (let h = 0; h < heads; h++) for (let d = 0; d < hd; d++) merged[(s * heads + h) * hd + d] = od[(h * T + s) * hd + d];
  const h1 = await x.add(await nn.linear(tensor(merged, { shape: [1, T, H] }), L('self_attn.out_proj.weight'), L('self_attn.out_proj.bias')));
  const ln2 = (await nn.layerNorm(h1, { weight: L('layer_norm2.weight'), bias: L('layer_norm2.bias') })).y;
  const act = await nn.quickGelu(await nn.linear(ln2, L('mlp.fc1.weight'), L('mlp.fc1.bias')));
  const x1 = await h1.add(await nn.linear(act, L('mlp.fc2.weight'), L('mlp.fc2.bias')));
  const fin = (await nn.layerNorm(x1, { weight: w('final_layer_norm.weight'), bias: w('final_layer_norm.bias') })).y;
  const pen = (await nn.layerNorm(x, { weight: w('final_layer_norm.weight'), bias: w('final_layer_norm.bias') })).y;
  assertClose(f32(out.lastHiddenState), f32(fin), 1e-5, 1e-6, 'last');
  assertClose(f32(out.penultimate!), f32(pen), 1e-5, 1e-6, 'penultimate (embeddings, for one layer)');
});

t('the encoder expects exactly the weights of the tiny checkpoints (clipTextLayout)', async () => {
  for (const name of ['sd1-tiny', 'sd2-tiny'] as const) {
    const m = await model(name);
    assert.equal(Object.keys(clipTextLayout(parseClipTextConfig(m.config))).sort(), [...m.weights.keys()].sort(), name);
  }
});

t('bad configs name the field', async () => {
  const m = await model('sd1-tiny');
  const bad = (patch: Record<string, unknown>): unknown => ({ ...m.config, ...patch });
  await assertRejects(() => ClipTextEncoder.fromWeights(null, m.weights), 'INVALID_ARGUMENT', /config must be a JSON object/);
  await assertRejects(() => ClipTextEncoder.fromWeights(bad({ hidden_act: 'relu' }), m.weights), 'INVALID_ARGUMENT', /'hidden_act' must be one of 'quick_gelu', 'gelu', got "relu"/);
  await assertRejects(() => ClipTextEncoder.fromWeights(bad({ num_hidden_layers: 1.5 }), m.weights), 'INVALID_ARGUMENT', /'num_hidden_layers' must be an integer/);
  await assertRejects(() => ClipTextEncoder.fromWeights(bad({ vocab_size: 'big' }), m.weights), 'INVALID_ARGUMENT', /'vocab_size' must be an integer/);
  await assertRejects(() => ClipTextEncoder.fromWeights(bad({ layer_norm_eps: -1 }), m.weights), 'INVALID_ARGUMENT', /'layer_norm_eps' must be a positive number/);
  await assertRejects(() => ClipTextEncoder.fromWeights(bad({ num_attention_heads: 5 }), m.weights), 'INVALID_ARGUMENT', /'num_attention_heads' must be a divisor of hidden_size 32/);
  // A config that does not fit the weights: more layers than stored, or another width.
  await assertRejects(() => ClipTextEncoder.fromWeights(bad({ num_hidden_layers: 3 }), m.weights), 'INVALID_ARGUMENT', /'text_model\.encoder\.layers\.2\.layer_norm1\.weight' is missing/);
  await assertRejects(() => ClipTextEncoder.fromWeights(bad({ intermediate_size: 36 }), m.weights), 'SHAPE_MISMATCH', /'text_model\.encoder\.layers\.0\.mlp\.fc1\.weight' must have shape \[36, 32\]/);
});

t('missing, wrong-shaped, wrong-dtype and non-tensor weights are named', async () => {
  const m = await model('sd1-tiny');
  const without = new Map(m.weights);
  without.delete('text_model.encoder.layers.1.self_attn.v_proj.bias');
  await assertRejects(() => ClipTextEncoder.fromWeights(m.config, without), 'INVALID_ARGUMENT', /weight 'text_model\.encoder\.layers\.1\.self_attn\.v_proj\.bias' is missing/);
  const reshaped = new Map(m.weights);
  reshaped.set('text_model.encoder.layers.0.self_attn.q_proj.weight', tensor(new Float32Array(32 * 32), { shape: [16, 64] }));
  await assertRejects(() => ClipTextEncoder.fromWeights(m.config, reshaped), 'SHAPE_MISMATCH', /q_proj\.weight' must have shape \[32, 32\] for this config, got f32\[16, 64\]/);
  const ints = new Map(m.weights);
  ints.set('text_model.final_layer_norm.bias', tensor(new Int32Array(32)));
  await assertRejects(() => ClipTextEncoder.fromWeights(m.config, ints), 'DTYPE_MISMATCH', /final_layer_norm\.bias' must be a float tensor/);
  const halves = new Map(m.weights);
  halves.set('text_model.final_layer_norm.bias', tensor(new Float32Array(32), { dtype: 'f16' }));
  await assertRejects(() => ClipTextEncoder.fromWeights(m.config, halves), 'DTYPE_MISMATCH', /final_layer_norm\.bias' is f16 but the token embedding is f32/);
  const junk = new Map<string, unknown>(m.weights);
  junk.set('text_model.embeddings.position_embedding.weight', [[1, 2]]);
  await assertRejects(() => ClipTextEncoder.fromWeights(m.config, junk as Map<string, Tensor>), 'INVALID_ARGUMENT', /position_embedding\.weight' must be a Tensor, got an array/);
  await assertRejects(() => ClipTextEncoder.fromWeights(m.config, {} as Map<string, Tensor>), 'INVALID_ARGUMENT', /weights must be a Map/);
});

t('bad ids: out of range (names the id and vocab size), too many tokens, ragged, wrong dtype or rank', async () => {
  const m = await model('sd1-tiny');
  const enc = ClipTextEncoder.fromWeights(m.config, m.weights);
  await assertRejects(() => enc.encode([[1, 2], [3, 1000]]), 'INVALID_ARGUMENT', /inputIds\[1\]\[1\] = number 1000 is not a token id for vocab_size 1000/);
  await assertRejects(() => enc.encode([[-1]]), 'INVALID_ARGUMENT', /inputIds\[0\]\[0\] = number -1 .*vocab_size 1000/);
  await assertRejects(() => enc.encode([[0.5]]), 'INVALID_ARGUMENT', /inputIds\[0\]\[0\] = number 0\.5/);
  // Tensor ids are data: the native graph checks them before any step runs.
  await assertRejects(() => enc.encode(tensor(new Int32Array([5, 7, 1234]), { shape: [1, 3] })), 'INVALID_ARGUMENT', /input_ids\[0\]\[2\] = 1234 is out of range for vocab_size 1000/);
  await assertRejects(() => enc.encode(tensor(new BigInt64Array([-3n]), { shape: [1, 1] })), 'INVALID_ARGUMENT', /input_ids\[0\]\[0\] = -3 is out of range/);
  await assertRejects(() => enc.encode([new Array(78).fill(0)]), 'SHAPE_MISMATCH', /78 tokens but max_position_embeddings is 77/);
  await assertRejects(() => enc.encode(tensor(new Int32Array(78), { shape: [1, 78] })), 'SHAPE_MISMATCH', /78 tokens but max_position_embeddings is 77/);
  await assertRejects(() => enc.encode([[1, 2], [3]]), 'SHAPE_MISMATCH', /inputIds\[1\] must be an array of 2 token ids/);
  await assertRejects(() => enc.encode([]), 'INVALID_ARGUMENT', /non-empty array/);
  await assertRejects(() => enc.encode([[]]), 'SHAPE_MISMATCH', /at least one token/);
  await assertRejects(() => enc.encode(tensor(new Float32Array(3), { shape: [1, 3] })), 'DTYPE_MISMATCH', /must be an i32 or i64 tensor/);
  await assertRejects(() => enc.encode(tensor(new Int32Array(3))), 'SHAPE_MISMATCH', /\[batch, tokens\]/);
  await assertRejects(() => enc.encode([[1]], { penultimate: 1 } as never), 'INVALID_ARGUMENT', /penultimate/);
});

t('a weight disposed after fromWeights is named by encode', async () => {
  const dir = join(parity, 'sd1-tiny');
  const weights = await loadSafetensors(join(dir, 'text_encoder/model.safetensors'));
  const config = JSON.parse(readFileSync(join(dir, 'text_encoder/config.json'), 'utf8'));
  const enc = ClipTextEncoder.fromWeights(config, weights);
  weights.get('text_model.encoder.layers.1.mlp.fc2.bias')!.dispose();
  await assertRejects(() => enc.encode([[1, 2]]), 'DISPOSED', /weight 'text_model\.encoder\.layers\.1\.mlp\.fc2\.bias' has been disposed/);
  weights.get('text_model.final_layer_norm.weight')!.dispose();
  await assertRejects(() => ClipTextEncoder.fromWeights(config, weights), 'DISPOSED', /weight 'text_model\.encoder\.layers\.1\.mlp\.fc2\.bias' has been disposed/);
  for (const w of weights.values()) w.dispose();
});

t('an empty batch gives empty outputs', async () => {
  const m = await model('sd2-tiny');
  const enc = ClipTextEncoder.fromWeights(m.config, m.weights);
  const out = await enc.encode(tensor(new Int32Array(0), { shape: [0, 5] }), { penultimate: true });
  assert.equal(out.lastHiddenState.shape, [0, 5, 48]);
  assert.equal(out.penultimate!.shape, [0, 5, 48]);
});

t('f16 weights are accepted by fromWeights; on the CPU encode says f32 only (no crash)', async () => {
  const m = await model('sd1-tiny');
  const half = new Map<string, Tensor>();
  for (const [k, v] of m.weights) half.set(k, await v.cast('f16'));
  const enc = ClipTextEncoder.fromWeights(m.config, half);
  assert.is(enc.dtype, 'f16');
  await assertRejects(() => enc.encode([[1, 2]]), 'UNSUPPORTED', /on cpu supports f32 only/);
  for (const v of half.values()) v.dispose();
});

t('the native op checks its own inputs (count, shapes, attrs)', async () => {
  const m = await model('sd1-tiny');
  const ids = tensor(new Int32Array([1, 2]), { shape: [1, 2] });
  const ws = ClipTextEncoder.fromWeights(m.config, m.weights);
  assert.is(ws.dtype, 'f32');
  const names = [...m.weights.keys()];
  assert.ok(names.length > 0);
  const tok = m.weights.get('text_model.embeddings.token_embedding.weight')!;
  await assertRejects(() => runOp('clip_text_forward', [ids, tok], { layers: 2, heads: 4 }), 'INVALID_ARGUMENT', /expected 37 inputs for 2 layers/);
  await assertRejects(() => runOp('clip_text_forward', [ids], { heads: 4 }), 'INVALID_ARGUMENT', /layers/);
  const inputs: Tensor[] = [ids, tok, m.weights.get('text_model.embeddings.position_embedding.weight')!];
  const order = ['layer_norm1.weight', 'layer_norm1.bias', 'self_attn.q_proj.weight', 'self_attn.q_proj.bias', 'self_attn.k_proj.weight', 'self_attn.k_proj.bias',
    'self_attn.v_proj.weight', 'self_attn.v_proj.bias', 'self_attn.out_proj.weight', 'self_attn.out_proj.bias', 'layer_norm2.weight', 'layer_norm2.bias',
    'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias'];
  for (let l = 0; l < 2; l++) for (const p of order) inputs.push(m.weights.get(`text_model.encoder.layers.${l}.${p}`)!);
  inputs.push(m.weights.get('text_model.final_layer_norm.weight')!, m.weights.get('text_model.final_layer_norm.bias')!);
  const [y] = await runOp('clip_text_forward', inputs, { layers: 2, heads: 4, quickGelu: true });
  assert.equal(y.shape, [1, 2, 32]);
  const swapped = [...inputs];
  [swapped[5], swapped[6]] = [swapped[6], swapped[5]];  // q_proj.weight and .bias exchanged
  await assertRejects(() => runOp('clip_text_forward', swapped, { layers: 2, heads: 4 }), 'SHAPE_MISMATCH', /encoder\.layers\.0\.self_attn\.q_proj\.weight must be \[32, 32\]/);
  await assertRejects(() => runOp('clip_text_forward', inputs, { layers: 2, heads: 5 }), 'INVALID_ARGUMENT', /heads must be >= 1 and divide hidden_size 32, got 5/);
  await assertRejects(() => runOp('clip_text_forward', inputs, { layers: 2, heads: 4, eps: 0 }), 'INVALID_ARGUMENT', /eps must be a positive number/);
  const long = [tensor(new Int32Array(78), { shape: [1, 78] }), ...inputs.slice(1)];
  await assertRejects(() => runOp('clip_text_forward', long, { layers: 2, heads: 4 }), 'SHAPE_MISMATCH', /78 tokens but max_position_embeddings is 77/);
});

t.run();
