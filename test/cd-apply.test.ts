// Sampling with concepts on the tiny SD1 pipeline: a concept for another base
// model is refused unless forced; a zero delta changes no pixel; applying ΔW
// samples exactly as a UNet built by hand from W0 + ΔW; the token rows are the
// concept's embeddings; failed applications change nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { add, memoryStats, tensor, UNet2DConditionModel, zeros, type Tensor } from '../lib/index.js';
import { applyConcepts, unetWeightMap } from '../lib/concepts/apply.js';
import { modelFingerprint } from '../lib/concepts/fingerprint.js';
import type { CustomDiffusionConcept } from '../lib/concepts/types.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { disposeAll, randomConcept, tinyPipeline, tinyUnet } from './cd-fixtures.js';
import { assertRejects, settleGarbage } from './helpers.js';

const t = suite('cd.apply');
const root = mkdtempSync(join(tmpdir(), 'imprint-cdapply-'));
const tokDir = join(root, 'tokenizer');
t.after(() => rmSync(root, { recursive: true, force: true }));
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const GEN = { steps: 2, width: 8, height: 8, seed: 3, guidanceScale: 3 };

async function fingerprintOf(pipe: StableDiffusionPipeline): Promise<string> {
  return modelFingerprint(unetWeightMap(pipe.unet as UNet2DConditionModel), (pipe.textEncoder as ClipTextEncoder).tokenEmbedding);
}

async function images(pipe: StableDiffusionPipeline, prompt: string): Promise<Float32Array> {
  const r = await pipe.generate({ ...GEN, prompt });
  const data = f32(r.images);
  r.images.dispose();
  r.latents.dispose();
  return data;
}

t('a concept for another base model is refused with both fingerprints named; force applies it', async () => {
  const pipe = await tinyPipeline(tokDir);
  const c = await randomConcept((await tinyUnet('sd1-tiny')).weights, { fingerprint: 'sha256:0123456789abcdef' });
  const fp = await fingerprintOf(pipe);
  await assertRejects(() => applyConcepts(pipe, [c]), 'INVALID_ARGUMENT', /sha256:0123456789abcdef/, new RegExp(fp), /force: true/);
  assert.is((pipe.tokenizer as ClipTokenizer).vocabSize, 1000, 'nothing was added');
  const r = await applyConcepts(pipe, [c], { force: true });
  assert.equal(r.tokens, ['<new1>']);
  assert.equal(r.ids, [1000]);
  assert.is(r.baseFingerprint, fp);
  assert.is(r.weights.length, 12);
  assert.is.not(await fingerprintOf(pipe), fp, 'the applied model has another fingerprint');
  pipe.dispose();
  disposeAll(c);
});

t('a zero delta changes nothing in generated output; the token rows are the concept embeddings', async () => {
  const base = await tinyPipeline(tokDir);
  const pipe = await tinyPipeline(tokDir);
  const weights = (await tinyUnet('sd1-tiny')).weights;
  const c = await randomConcept(weights, { fingerprint: await fingerprintOf(pipe), tokens: [['<new1>', 'dog'], ['<new2>', 'cat']] });
  for (const [n, d] of c.deltas) {
    c.deltas.set(n, await zeros(d.shape));
    d.dispose();
  }
  await applyConcepts(pipe, [c]);
  assert.equal(Array.from(await images(pipe, 'a photo of a dog')), Array.from(await images(base, 'a photo of a dog')));
  const table = (pipe.textEncoder as ClipTextEncoder).tokenEmbedding;
  assert.equal(table.shape, [1002, 32]);
  const rows = f32(table);
  c.tokens.forEach((tk, i) => assert.equal(Array.from(rows.subarray((1000 + i) * 32, (1001 + i) * 32)), Array.from(f32(tk.embedding)), tk.token));
  const tok = pipe.tokenizer as ClipTokenizer;
  assert.equal(tok.encode('a <new2> cat').slice(0, 3), [tok.tokenToId('<|startoftext|>'), tok.tokenToId('a</w>'), 1001]);
  assert.is.not(Array.from(await images(pipe, 'a <new2> cat')).join(), Array.from(await images(pipe, 'a <new1> cat')).join(), 'the two tokens condition differently');
  pipe.dispose();
  base.dispose();
  disposeAll(c);
});

t('applying ΔW (scale s) samples exactly as a UNet built by hand from W0 + s·ΔW; two concepts sum', async () => {
  const pipe = await tinyPipeline(tokDir);
  const hand = await tinyPipeline(tokDir);
  const weights = (await tinyUnet('sd1-tiny')).weights;
  const fp = await fingerprintOf(pipe);
  const a = await randomConcept(weights, { fingerprint: fp, seed: 4, scale: 0.2 });
  const b = await randomConcept(weights, { fingerprint: fp, seed: 5, scale: 0.2, tokens: [['<new2>', 'cat']], limit: 3 });
  await applyConcepts(pipe, [a, b], { scale: 0.5 });
  // By hand, with the engine's own f32 ops: W0 + 0.5·ΔA (+ 0.5·ΔB).
  const replaced = new Map<string, Tensor>();
  const half = tensor([0.5]);
  const temps: Tensor[] = [half];
  for (const [n, d] of a.deltas) {
    let sum = d;
    const extra = b.deltas.get(n);
    if (extra !== undefined) temps.push((sum = await add(d, extra)));
    const scaled = await sum.mul(half.reshape([1, 1]) as Tensor<'f32'>);
    temps.push(scaled);
    const w = await add(weights.get(n)! as Tensor<'f32'>, scaled);
    temps.push(w);
    replaced.set(n, w);
  }
  hand.replaceUnet((hand.unet as UNet2DConditionModel).withWeights(replaced));
  // The summed weights agree to f32 rounding (the engine sums in f32, applyConcepts in double).
  const applied = unetWeightMap(pipe.unet as UNet2DConditionModel);
  for (const [n, w] of replaced) {
    const x = f32(applied.get(n)!);
    const y = f32(w);
    assert.ok(x.every((v, i) => Math.abs(v - y[i]) <= 1e-6 * Math.max(1, Math.abs(y[i]))), n);
  }
  const mine = await images(pipe, 'a photo of a dog');
  const theirs = await images(hand, 'a photo of a dog');
  assert.ok(mine.every((v, i) => Math.abs(v - theirs[i]) < 1e-4), 'same images');
  assert.is.not(mine.join(), (await images(await tinyPipeline(tokDir), 'a photo of a dog')).join(), 'and not the base model');
  for (const x of temps) x.dispose();
  pipe.dispose();
  hand.dispose();
  disposeAll(a);
  disposeAll(b);
});

t('refusals change nothing: shared tokens, foreign weights, wrong shapes and widths, bad options', async () => {
  const pipe = await tinyPipeline(tokDir);
  const weights = (await tinyUnet('sd1-tiny')).weights;
  const fp = await fingerprintOf(pipe);
  const a = await randomConcept(weights, { fingerprint: fp, seed: 6 });
  const b = await randomConcept(weights, { fingerprint: fp, seed: 7 });
  const unet = pipe.unet;
  await assertRejects(() => applyConcepts(pipe, [a, b]), 'INVALID_ARGUMENT', /token '<new1>' is defined by both concepts\[0\] and concepts\[1\]/);
  const odd = (await randomConcept(weights, { fingerprint: fp, seed: 8, tokens: [['<x>', 'y']], hidden: 16 }));
  await assertRejects(() => applyConcepts(pipe, [odd]), 'SHAPE_MISMATCH', /width 16, but the text encoder's hidden size is 32/);
  const K = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';
  const foreign: CustomDiffusionConcept = { ...a, deltas: new Map([[K.replace('down_blocks.0', 'down_blocks.7'), a.deltas.get(K)!]]) };
  await assertRejects(() => applyConcepts(pipe, [foreign]), 'INVALID_ARGUMENT', /down_blocks\.7.*which this UNet does not have/);
  const wrong = await zeros([32, 16]);
  await assertRejects(() => applyConcepts(pipe, [{ ...a, deltas: new Map([[K, wrong as Tensor<'f32'>]]) }]), 'SHAPE_MISMATCH', /is \[32, 16\] but the UNet's weight is \[32, 32\]/);
  wrong.dispose();
  await assertRejects(() => applyConcepts(pipe, []), 'INVALID_ARGUMENT', /non-empty array/);
  await assertRejects(() => applyConcepts(pipe, [a], { scale: NaN }), 'INVALID_ARGUMENT', /scale/);
  await assertRejects(() => applyConcepts(pipe, [a], { force: 'yes' as never }), 'INVALID_ARGUMENT', /force/);
  await assertRejects(() => applyConcepts(pipe, [a], { strength: 1 } as never), 'INVALID_ARGUMENT', /unknown option 'strength'/);
  await assertRejects(() => applyConcepts({} as never, [a]), 'INVALID_ARGUMENT', /StableDiffusionPipeline/);
  await assertRejects(() => applyConcepts(pipe, [{ ...a, mode: 'everything' } as never]), 'INVALID_ARGUMENT', /concepts\[0\]\.mode/);
  // A token already in the vocabulary: refused by addTokens, after the UNet tensors were made; they are freed and the UNet kept.
  await assertRejects(() => applyConcepts(pipe, [{ ...a, tokens: [{ ...a.tokens[0], token: 'a' }] }]), 'INVALID_ARGUMENT', /token 'a' is already in the vocabulary/);
  assert.is(pipe.unet, unet, 'the UNet was not replaced');
  assert.is((pipe.tokenizer as ClipTokenizer).vocabSize, 1000);
  assert.is((pipe.textEncoder as ClipTextEncoder).config.vocabSize, 1000);
  pipe.dispose();
  for (const c of [a, b, odd]) disposeAll(c);
});

t('addTokens with explicit rows: rows land at the new ids; wrong counts and widths are refused', async () => {
  const pipe = await tinyPipeline(tokDir);
  const rows = tensor(Float32Array.from({ length: 64 }, (_, i) => i / 64), { shape: [2, 32] });
  await assertRejects(() => pipe.addTokens(['<a>'], { embeddings: rows }), 'SHAPE_MISMATCH', /one row per token, \[1, hidden_size\], got \[2, 32\]/);
  await assertRejects(() => pipe.addTokens(['<a>', '<b>'], { embeddings: rows, initializer: 'a' }), 'INVALID_ARGUMENT', /either initializer or embeddings/);
  await assertRejects(() => pipe.addTokens(['<a>', '<b>'], { embeddings: [1, 2] as never }), 'INVALID_ARGUMENT', /embeddings must be a tensor/);
  const narrow = tensor(new Float32Array(32), { shape: [2, 16] });
  await assertRejects(() => pipe.addTokens(['<a>', '<b>'], { embeddings: narrow }), 'SHAPE_MISMATCH', /hidden_size 32/);
  assert.is((pipe.tokenizer as ClipTokenizer).vocabSize, 1000, 'nothing was added');
  const ids = await pipe.addTokens(['<a>', '<b>'], { embeddings: rows });
  assert.equal(ids, [1000, 1001]);
  assert.equal(Array.from(f32((pipe.textEncoder as ClipTextEncoder).tokenEmbedding).subarray(1000 * 32)), Array.from(f32(rows)));
  rows.dispose();
  narrow.dispose();
  pipe.dispose();
});

t('dispose() frees what applyConcepts made; the base weights stay usable', async () => {
  const weights = (await tinyUnet('sd1-tiny')).weights;
  (await tinyPipeline(tokDir)).dispose(); // every component loaded before the baseline
  const before = await settleGarbage();
  const pipe = await tinyPipeline(tokDir);
  const c = await randomConcept(weights, { fingerprint: await fingerprintOf(pipe), mode: 'cross' });
  await applyConcepts(pipe, [c], { scale: 2 });
  await images(pipe, 'a <new1> dog');
  disposeAll(c);
  pipe.dispose();
  assert.is(memoryStats().liveBytes, before, 'no tensor left behind');
  assert.ok([...weights.values()].every((w) => !w.disposed), 'the base weights are untouched');
  const again = await tinyPipeline(tokDir);
  assert.ok((await images(again, 'a dog')).every(Number.isFinite));
  again.dispose();
});

t.run();
