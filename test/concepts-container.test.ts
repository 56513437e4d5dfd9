// The one concept container, whatever the method: a file holding each kind
// (token rows, dense ΔW, LoRA factors, neuron sets) round-trips bit-exactly;
// version 1 Custom Diffusion files still load; hostile neuron sets are refused
// naming the entry; applyConcepts dispatches per kind — W0 + ΔW, W0 + s·B·A
// (against a float64 product), entries shut to zero — composes kinds of
// different methods, and restore() gives the UNet back bit-exactly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { randn, UNet2DConditionModel, type Tensor } from '../lib/index.js';
import { applyConcepts, unetWeightMap } from '../lib/concepts/apply.js';
import { CONCEPT_VERSION, decodeNeuronIndices, encodeNeuronIndices, loadConcept, saveConcept } from '../lib/concepts/concept-file.js';
import { modelFingerprint } from '../lib/concepts/fingerprint.js';
import type { ConesConcept, ConceptWeights, TuningEncoderConcept } from '../lib/concepts/types.js';
import { saveSafetensors } from '../lib/io/safetensors.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import type { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import type { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { disposeAll, randomConcept, tinyPipeline, tinyUnet } from './cd-fixtures.js';
import { assertRejects } from './helpers.js';

const t = suite('concepts.container');
const root = mkdtempSync(join(tmpdir(), 'imprint-container-'));
const tokDir = join(root, 'tokenizer');
t.after(() => rmSync(root, { recursive: true, force: true }));
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const bytes = (x: Tensor): Buffer => Buffer.from(f32(x).buffer.slice(0));

const K = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';
const Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight';
const V = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_v.weight';

async function loraConcept(weights: Map<string, Tensor>, fingerprint: string, token = '<te1>'): Promise<TuningEncoderConcept> {
  const lora = new Map();
  for (const [i, n] of [Q, V].entries()) {
    const [out, inp] = weights.get(n)!.shape;
    lora.set(n, { a: await randn([2, inp], { seed: 10 + i, std: 0.3 }), b: await randn([out, 2], { seed: 20 + i, std: 0.3 }), scale: 0.75 });
  }
  return { method: 'tuning-encoder', tokens: [{ token, classWord: 'toy', embedding: await randn([32], { seed: 5 }) }], lora, baseFingerprint: fingerprint, settings: { rank: '2' } };
}

function conesConcept(fingerprint: string): ConesConcept {
  return { method: 'cones', tokens: [], neurons: new Map([[K, Int32Array.from([0, 3, 7, 100])], [Q, Int32Array.from([1, 2])]]), baseFingerprint: fingerprint, settings: { rho: '2e-5', passes: '3' } };
}

async function fingerprintOf(pipe: StableDiffusionPipeline): Promise<string> {
  return modelFingerprint(unetWeightMap(pipe.unet as UNet2DConditionModel), (pipe.textEncoder as ClipTextEncoder).tokenEmbedding);
}

function assertSameParts(a: ConceptWeights, b: ConceptWeights): void {
  assert.is(b.method, a.method);
  assert.is(b.baseFingerprint, a.baseFingerprint);
  assert.equal(b.settings, a.settings);
  assert.equal(b.tokens.map((tk) => [tk.token, tk.classWord]), a.tokens.map((tk) => [tk.token, tk.classWord]));
  a.tokens.forEach((tk, i) => assert.ok(bytes(tk.embedding).equals(bytes(b.tokens[i].embedding)), `token ${tk.token}`));
  assert.equal([...(b.deltas?.keys() ?? [])].sort(), [...(a.deltas?.keys() ?? [])].sort());
  for (const [n, d] of a.deltas ?? []) assert.ok(bytes(d).equals(bytes(b.deltas!.get(n)!)), `delta ${n}`);
  assert.equal([...(b.lora?.keys() ?? [])].sort(), [...(a.lora?.keys() ?? [])].sort());
  for (const [n, f] of a.lora ?? []) {
    const g = b.lora!.get(n)!;
    assert.ok(bytes(f.a).equals(bytes(g.a)) && bytes(f.b).equals(bytes(g.b)), `lora ${n}`);
    assert.is(g.scale, f.scale);
  }
  const sets = (c: ConceptWeights): Array<[string, number[]]> => [...(c.neurons ?? [])].map(([n, i]): [string, number[]] => [n, [...i]]).sort((x, y) => x[0].localeCompare(y[0]));
  assert.equal(sets(b), sets(a));
}

t('a file of each kind round-trips bit-exactly (LoRA + tokens, neuron sets, dense deltas of another method) as version 2', async () => {
  const w = (await tinyUnet('sd1-tiny')).weights;
  const te = await loraConcept(w, 'sha256:fp');
  const cones = conesConcept('sha256:fp');
  // Dense deltas on any UNet weight (a self-attention one too) for a method other than Custom Diffusion.
  const dense: TuningEncoderConcept = { ...(await loraConcept(w, 'sha256:fp', '<te2>')), deltas: new Map([[Q, await randn(w.get(Q)!.shape, { seed: 9 })]]) };
  for (const [i, c] of [te, cones, dense].entries()) {
    const path = join(root, `kind-${i}.safetensors`);
    await saveConcept(path, c);
    const back = await loadConcept(path);
    assert.is(back.file.version, CONCEPT_VERSION);
    assertSameParts(c, back);
    disposeAll(back);
  }
  await assertRejects(() => loadConcept(join(root, 'kind-1.safetensors'), { method: 'custom-diffusion' }), 'INVALID_ARGUMENT', /holds a 'cones' concept, expected 'custom-diffusion'/);
  disposeAll(te);
  disposeAll(dense);
});

t('neuron sets are stored as LEB128 gaps: a round trip over large gaps, and about a byte a neuron when dense', () => {
  const idx = Int32Array.from([0, 1, 127, 128, 16_383, 16_384, 2_097_151, 2 ** 31 - 1]);
  assert.equal([...decodeNeuronIndices('x', encodeNeuronIndices(idx))], [...idx]);
  const dense = Int32Array.from({ length: 1000 }, (_, i) => i * 50);
  assert.is(encodeNeuronIndices(dense).length, 1000, 'gaps below 128 take one byte');
});

t('a version 1 Custom Diffusion file (written before the container) still loads', async () => {
  const w = (await tinyUnet('sd1-tiny')).weights;
  const cd = await randomConcept(w, { limit: 2 });
  const path = join(root, 'v1.safetensors');
  const tensors = new Map<string, Tensor>([['token/<new1>', cd.tokens[0].embedding], ...[...cd.deltas].map(([n, d]) => [`delta/${n}`, d] as [string, Tensor])]);
  await saveSafetensors(path, tensors, {
    format: 'imprint-concept', version: '1', method: 'custom-diffusion', mode: 'kv',
    tokens: JSON.stringify([{ token: '<new1>', classWord: 'dog' }]), base_fingerprint: cd.baseFingerprint, compression: 'none',
  });
  const back = await loadConcept(path, { method: 'custom-diffusion' });
  assert.is(back.file.version, '1');
  assert.is(back.mode, 'kv');
  assertSameParts(cd, back);
  disposeAll(back);
  disposeAll(cd);
});

t('hostile neuron sets are refused naming the entry: unsorted, duplicated, negative; the wrong dtype; a set without its encoding', async () => {
  const cases: Array<[string, Int32Array, RegExp]> = [
    ['unsorted', Int32Array.from([5, 2]), /strictly ascending .*position 1 holds 2 after 5/],
    ['duplicated', Int32Array.from([2, 2]), /strictly ascending/],
    ['negative', Int32Array.from([-1, 4]), /index -1 at position 0 is negative/],
  ];
  const meta = { format: 'imprint-concept', version: '2', method: 'cones', tokens: '[]', base_fingerprint: 'sha256:fp', compression: 'none', neuron_encoding: 'i32' };
  const { tensor } = await import('../lib/index.js');
  for (const [what, idx, re] of cases) {
    const path = join(root, `bad-${what}.safetensors`);
    await saveSafetensors(path, new Map([[`neurons/${K}`, tensor(idx, { shape: [idx.length] })]]), meta);
    await assertRejects(() => loadConcept(path), 'INVALID_ARGUMENT', new RegExp(`neurons/${K.replace(/\./g, '\\.')}`), re);
    // In memory the same checks hold.
    await assertRejects(() => saveConcept(path, { ...conesConcept('sha256:fp'), neurons: new Map([[K, idx]]) }), 'INVALID_ARGUMENT', re);
  }
  const f = join(root, 'bad-dtype.safetensors');
  await saveSafetensors(f, new Map([[`neurons/${K}`, tensor(new Float32Array([1, 2]), { shape: [2] })]]), meta);
  await assertRejects(() => loadConcept(f), 'INVALID_ARGUMENT', /1-D I32/);
  // The written encoding: LEB128 gaps. Cut short, a zero gap (a duplicate) and a set past 2^31 are refused.
  const varint = { ...meta, neuron_encoding: 'delta-varint' };
  const bytes: Array<[string, number[], RegExp]> = [
    ['cut', [5, 0x83], /cut short/],
    ['zero-gap', [5, 0], /strictly ascending/],
    ['huge', [0xff, 0xff, 0xff, 0xff, 0x0f, 0xff, 0xff, 0xff, 0xff, 0x0f], /past 2\^31 - 1/],
  ];
  for (const [what, b, re] of bytes) {
    const path = join(root, `bad-varint-${what}.safetensors`);
    await saveSafetensors(path, new Map([[`neurons/${K}`, tensor(Uint8Array.from(b), { shape: [b.length], dtype: 'u8' })]]), varint);
    await assertRejects(() => loadConcept(path), 'INVALID_ARGUMENT', re);
  }
  const g = join(root, 'bad-encoding.safetensors');
  await saveSafetensors(g, new Map([[`neurons/${K}`, tensor(Int32Array.from([1, 2]), { shape: [2] })]]), { ...meta, neuron_encoding: 'varint' });
  await assertRejects(() => loadConcept(g), 'INVALID_ARGUMENT', /neuron_encoding 'varint' is not supported/);
});

t('applyConcepts dispatches per kind, composes methods, and restore() gives the UNet back bit-exactly', async () => {
  const pipe = await tinyPipeline(tokDir);
  const fp = await fingerprintOf(pipe);
  const before = unetWeightMap(pipe.unet as UNet2DConditionModel);
  const saved = new Map([...before].map(([n, t]) => [n, bytes(t)]));
  const cd = await randomConcept(before, { fingerprint: fp, limit: 3 });
  const te = await loraConcept(before, fp);
  const cones = conesConcept(fp);
  for (const set of [[cd], [te], [cones], [cd, te, cones]] as ConceptWeights[][]) {
    const r = await applyConcepts(pipe, set, { scale: 0.5 });
    const now = unetWeightMap(pipe.unet as UNet2DConditionModel);
    for (const [n, w0t] of before) {
      const w0 = f32(w0t);
      const got = f32(now.get(n)!);
      const want = Float64Array.from(w0);
      let touched = false;
      for (const c of set) {
        const d = c.deltas?.get(n);
        if (d) (touched = true, f32(d).forEach((x, k) => (want[k] += 0.5 * x)));
        const l = c.lora?.get(n);
        if (l) {
          touched = true;
          const [rank, cols] = l.a.shape;
          const a = f32(l.a);
          const b = f32(l.b);
          for (let o = 0; o < l.b.shape[0]; o++) for (let k = 0; k < cols; k++) {
            let s = 0;
            for (let q = 0; q < rank; q++) s += b[o * rank + q] * a[q * cols + k];
            want[o * cols + k] += 0.5 * l.scale * s;
          }
        }
      }
      for (const c of set) for (const k of c.neurons?.get(n) ?? []) (touched = true, (want[k] = 0));
      assert.is(r.weights.includes(n), touched, `${n} listed as changed`);
      if (!touched) {
        assert.ok(bytes(now.get(n)!).equals(saved.get(n)!), `${n} untouched`);
        continue;
      }
      // One f32 rounding of an exactly accumulated sum (float64 over ≤ 3 terms of rank ≤ 2): within 2 ulp.
      for (let k = 0; k < got.length; k++) {
        const tol = 2 * 2 ** -23 * Math.max(Math.abs(want[k]), Math.abs(w0[k]), 1e-30);
        if (Math.abs(got[k] - want[k]) > tol) assert.unreachable(`${n}[${k}] = ${got[k]}, expected ${want[k]}`);
      }
    }
    if (set.includes(cones)) assert.equal(r.shut[K], { count: 4, overlap: 0 });
    await r.restore();
    const after = unetWeightMap(pipe.unet as UNet2DConditionModel);
    for (const [n, b] of saved) assert.ok(bytes(after.get(n)!).equals(b), `${n} restored bit-exactly`);
    assert.ok([...now.entries()].filter(([n]) => r.weights.includes(n)).every(([, t]) => t.disposed), 'the applied weights were freed');
    await assertRejects(() => r.restore(), 'INVALID_ARGUMENT', /already called/);
    assert.is(await fingerprintOf(pipe), fp, 'the restored pipeline is the base model again (tokens removed)');
    assert.is((pipe.tokenizer as ClipTokenizer).vocabSize, 1000);
  }
  // Overlapping neuron sets are united and counted.
  const twice = await applyConcepts(pipe, [cones, { ...conesConcept(fp), neurons: new Map([[K, Int32Array.from([3, 4])]]) }]);
  assert.equal(twice.shut[K], { count: 5, overlap: 1 });
  await twice.restore();
  // An index past the weight's end is refused before anything changes.
  const big = { ...conesConcept(fp), neurons: new Map([[K, Int32Array.from([1 << 30])]]) };
  await assertRejects(() => applyConcepts(pipe, [big]), 'SHAPE_MISMATCH', /has index 1073741824, but the UNet's weight/);
  const lora = await loraConcept(before, fp, '<bad>');
  lora.lora.set(K, { a: await randn([2, 5], { seed: 1 }), b: await randn([7, 2], { seed: 2 }), scale: 1 });
  await assertRejects(() => applyConcepts(pipe, [lora]), 'SHAPE_MISMATCH', /LoRA '.*to_k\.weight' gives/);
  assert.ok((pipe.unet as UNet2DConditionModel) !== undefined && unetWeightMap(pipe.unet as UNet2DConditionModel).get(K) === before.get(K), 'the UNet is the base one');
  pipe.dispose();
  disposeAll(cd);
  disposeAll(te);
});

t.run();
