// The CLIP text encoder's backward pass against float64 PyTorch autograd
// (test/fixtures/gen_clip_text_grad.py over shared sd1-tiny), a finite
// difference of the token-embedding gradient, row masks, and bad input.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors } from '../lib/io/safetensors.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { ClipTextTrainer, TOKEN_EMBEDDING, clipTextWeightNames } from '../lib/models/clip-text-backward.js';
import { parseClipTextConfig } from '../lib/models/configs.js';
import { runOp } from '../lib/nn/run.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const dir = join(REFERENCE, 'parity/sd1-tiny');
const t = suite('models.clip-text-backward');

const config = JSON.parse(readFileSync(join(dir, 'text_encoder/config.json'), 'utf8')) as Record<string, unknown>;
const weights = await loadSafetensors(join(dir, 'text_encoder/model.safetensors'));
const fx = await loadSafetensors(fileURLToPath(new URL('./fixtures/clip_text_grad.safetensors', import.meta.url)));
const get = (k: string): Tensor => {
  const v = fx.get(k);
  if (!v) throw new Error(`fixture entry ${k} missing`);
  return v;
};
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const ids = get('input_ids');
const dLast = get('d_last');
const dPen = get('d_penultimate');
const trainer = ClipTextTrainer.fromWeights(config, weights);
const names = clipTextWeightNames(parseClipTextConfig(config));
const V = 1000;
const H = 32;

t('every weight gradient matches float64 autograd (last + penultimate outputs)', async () => {
  const r = await trainer.forwardBackward(ids, { dLast, dPenultimate: dPen, trainable: names });
  assertClose(f32(r.lastHiddenState), f32(get('last_hidden_state')), 1e-4, 1e-4, 'last_hidden_state');
  assertClose(f32(r.penultimate!), f32(get('penultimate')), 1e-4, 1e-4, 'penultimate');
  assert.equal([...r.grads.keys()], names);
  for (const n of names) {
    const want = get(`both/${n}`);
    assert.equal(r.grads.get(n)!.shape, want.shape, n);
    assertClose(f32(r.grads.get(n)!), f32(want), 1e-4, 1e-4, n);
  }
});

t("'embeddings' without the penultimate output: only token rows of the ids are non-zero", async () => {
  const r = await trainer.forwardBackward(ids, { dLast, trainable: 'embeddings' });
  assert.is(r.penultimate, undefined);
  assert.equal([...r.grads.keys()], [TOKEN_EMBEDDING]);
  const g = r.grads.get(TOKEN_EMBEDDING)!;
  assert.equal(g.shape, [V, H]);
  const data = f32(g);
  const rows = [...(get('last_only/token_rows').dataSync() as BigInt64Array)].map(Number);
  const want = f32(get(`last_only/${TOKEN_EMBEDDING}`));
  const got = new Float32Array(rows.length * H);
  rows.forEach((row, k) => got.set(data.subarray(row * H, (row + 1) * H), k * H));
  assertClose(got, want, 1e-4, 1e-4, 'used rows');
  const used = new Set(rows);
  for (let v = 0; v < V; v++) if (!used.has(v)) for (let j = 0; j < H; j++) assert.is(data[v * H + j], 0, `row ${v}`);
});

t('rowMask: masked rows equal the full gradient, every other row is exactly zero', async () => {
  const full = f32(get(`both/${TOKEN_EMBEDDING}`));
  const idList = [...(ids.dataSync() as BigInt64Array)].map(Number);
  const keep = new Set([idList[0], idList[5], idList[11]]);  // idList[5] appears twice in the probe
  const mask = new Uint8Array(V);
  for (const v of keep) mask[v] = 1;
  const r = await trainer.forwardBackward(ids, { dLast, dPenultimate: dPen, trainable: 'embeddings', rowMask: tensor(mask, { shape: [V] }) });
  const g = f32(r.grads.get(TOKEN_EMBEDDING)!);
  let nonzero = 0;
  for (let v = 0; v < V; v++) {
    const row = g.subarray(v * H, (v + 1) * H);
    if (keep.has(v)) {
      assertClose(row, full.subarray(v * H, (v + 1) * H), 1e-4, 1e-4, `row ${v}`);
      nonzero += row.some((x) => x !== 0) ? 1 : 0;
    } else {
      for (let j = 0; j < H; j++) assert.is(row[j], 0, `row ${v} must be exactly 0`);
    }
  }
  assert.is(nonzero, keep.size);
});

t('finite difference of the token-embedding gradient along a random direction', async () => {
  const tok = weights.get(TOKEN_EMBEDDING)!;
  const base = tok.dataSync() as Float32Array;
  const dir = randomArray(V * H, 7);
  const r = await trainer.forwardBackward(ids, { dLast, dPenultimate: dPen, trainable: 'embeddings' });
  const g = f32(r.grads.get(TOKEN_EMBEDDING)!);
  let analytic = 0;
  for (let i = 0; i < g.length; i++) analytic += g[i] * dir[i];
  const loss = async (h: number): Promise<number> => {
    const w = new Map(weights);
    w.set(TOKEN_EMBEDDING, tensor(base.map((x, i) => x + h * dir[i]), { shape: [V, H] }));
    const out = await ClipTextEncoder.fromWeights(config, w).encode(ids, { penultimate: true });
    const [a, b, da, db] = [f32(out.lastHiddenState), f32(out.penultimate!), f32(dLast), f32(dPen)];
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i] * da[i] + b[i] * db[i];
    return s;
  };
  const h = 1e-2;
  const numeric = ((await loss(h)) - (await loss(-h))) / (2 * h);
  assert.ok(Math.abs(analytic) > 1e-2, `direction too weak: ${analytic}`);
  assert.ok(Math.abs(numeric - analytic) <= 2e-3 * Math.abs(analytic) + 1e-3, `numeric ${numeric} vs analytic ${analytic}`);
});

t("'none' returns outputs and no gradients; a bias alone can be trained", async () => {
  const r = await trainer.forwardBackward(ids, { dLast, trainable: 'none' });
  assert.is(r.grads.size, 0);
  assertClose(f32(r.lastHiddenState), f32(get('last_hidden_state')), 1e-4, 1e-4);
  const bias = 'text_model.encoder.layers.1.mlp.fc1.bias';
  const r2 = await trainer.forwardBackward(ids, { dLast, dPenultimate: dPen, trainable: [bias, 'text_model.final_layer_norm.weight'] });
  assert.equal([...r2.grads.keys()], [bias, 'text_model.final_layer_norm.weight']);
  assertClose(f32(r2.grads.get(bias)!), f32(get(`both/${bias}`)), 1e-4, 1e-4, bias);
  // The final layer norm serves both outputs: its gradient sums the two.
  assertClose(f32(r2.grads.get('text_model.final_layer_norm.weight')!),
    f32(get('both/text_model.final_layer_norm.weight')), 1e-4, 1e-4, 'final LN');
});

t('sd2-tiny (GELU, 3 layers): chosen weight gradients and the token rows match float64 autograd', async () => {
  const sd2 = join(REFERENCE, 'parity/sd2-tiny/text_encoder');
  const cfg2 = JSON.parse(readFileSync(join(sd2, 'config.json'), 'utf8')) as Record<string, unknown>;
  const tr = ClipTextTrainer.fromWeights(cfg2, await loadSafetensors(join(sd2, 'model.safetensors')));
  const chosen = [...fx.keys()].filter((k) => k.startsWith('sd2/both/')).map((k) => k.slice('sd2/both/'.length));
  assert.ok(chosen.length > 30);
  const ids2 = get('sd2/input_ids');
  const r = await tr.forwardBackward(ids2, { dLast: get('sd2/d_last'), dPenultimate: get('sd2/d_penultimate'), trainable: chosen });
  assertClose(f32(r.lastHiddenState), f32(get('sd2/last_hidden_state')), 1e-4, 1e-4, 'sd2 last_hidden_state');
  assertClose(f32(r.penultimate!), f32(get('sd2/penultimate')), 1e-4, 1e-4, 'sd2 penultimate');
  for (const n of chosen) assertClose(f32(r.grads.get(n)!), f32(get(`sd2/both/${n}`)), 1e-4, 1e-4, `sd2 ${n}`);
  const e = await tr.forwardBackward(ids2, { dLast: get('sd2/d_last'), trainable: 'embeddings' });
  const g = f32(e.grads.get(TOKEN_EMBEDDING)!);
  const rows = [...(get('sd2/last_only/token_rows').dataSync() as BigInt64Array)].map(Number);
  const got = new Float32Array(rows.length * 48);
  rows.forEach((row, k) => got.set(g.subarray(row * 48, (row + 1) * 48), k * 48));
  assertClose(got, f32(get(`sd2/last_only/${TOKEN_EMBEDDING}`)), 1e-4, 1e-4, 'sd2 token rows');
});

t('bad input: dy shape and dtype, trainable names, rowMask shape and dtype, ids', async () => {
  const z = (shape: number[]) => tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)), { shape });
  await assertRejects(() => trainer.forwardBackward(ids, { dLast: z([2, 8, 31]), trainable: 'embeddings' }), 'SHAPE_MISMATCH', /dLast must be \[2, 8, 32\]/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast, dPenultimate: z([2, 7, 32]), trainable: 'none' }), 'SHAPE_MISMATCH', /dPenultimate must be \[2, 8, 32\]/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast: tensor(new Int32Array(2 * 8 * 32), { shape: [2, 8, 32] }), trainable: 'none' }), 'DTYPE_MISMATCH', /dLast is i32/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast, trainable: ['text_model.encoder.layers.9.mlp.fc1.weight'] }), 'INVALID_ARGUMENT', /trainable\[0\].*layers\.9.*not a weight/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast, trainable: 'all' as 'none' }), 'INVALID_ARGUMENT', /'embeddings', 'none' or an array/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast, trainable: 'embeddings', rowMask: tensor(new Uint8Array(999), { shape: [999] }) }), 'SHAPE_MISMATCH', /rowMask must be \[1000\]/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast, trainable: 'embeddings', rowMask: z([V]) }), 'DTYPE_MISMATCH', /rowMask must be u8/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast, trainable: 'none', rowMask: tensor(new Uint8Array(V), { shape: [V] }) }), 'INVALID_ARGUMENT', /not trainable/);
  await assertRejects(() => trainer.forwardBackward(ids, { dLast, trainable: 'embeddings', extra: 1 } as never), 'INVALID_ARGUMENT', /extra/);
  const badIds = tensor(new Int32Array(16).fill(1000), { shape: [2, 8] });
  await assertRejects(() => trainer.forwardBackward(badIds, { dLast, trainable: 'embeddings' }), 'INVALID_ARGUMENT', /input_ids\[0\]\[0\] = 1000 is out of range/);
  await assertRejects(() => trainer.forwardBackward([[1]] as never, { dLast, trainable: 'none' }), 'INVALID_ARGUMENT', /inputIds must be/);
});

t('the native op checks its own inputs: count, trainable indices, ids dtype', async () => {
  const ws = names.map((n) => weights.get(n)!);
  const attrs = { layers: 2, heads: 4, quickGelu: true };
  await assertRejects(() => runOp('clip_text_forward_backward', [ids, dLast, null, null, ...ws.slice(1)], attrs), 'INVALID_ARGUMENT', /expected 40 inputs for 2 layers/);
  await assertRejects(() => runOp('clip_text_forward_backward', [ids, dLast, null, null, ...ws], { ...attrs, trainable: [36] }), 'INVALID_ARGUMENT', /trainable\[0\] = 36 is not a weight index \(0 to 35\)/);
  await assertRejects(() => runOp('clip_text_forward_backward', [ids, dLast, null, null, ...ws], { ...attrs, trainable: [3, 3] }), 'INVALID_ARGUMENT', /ascending without repeats/);
  const fIds = tensor(new Float32Array(16), { shape: [2, 8] });
  await assertRejects(() => trainer.forwardBackward(fIds, { dLast, trainable: 'none' }), 'DTYPE_MISMATCH', /input_ids must be i32 or i64/);
});

t.run();
