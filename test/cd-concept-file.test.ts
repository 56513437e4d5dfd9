// Imprint's concept file: exact round trips, SVD compression (the reported
// error is the error of what was stored, the file shrinks) and damaged or
// hostile files, each refused with an error naming the file and the entry.
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { memoryStats, tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../lib/io/safetensors.js';
import { loadConcept, saveConcept } from '../lib/concepts/concept-file.js';
import type { CustomDiffusionConcept } from '../lib/concepts/types.js';
import { disposeAll, randomConcept } from './cd-fixtures.js';
import { assertRejects, seeded, settleGarbage } from './helpers.js';
import { tinyModelLoader } from './tiny-models.js';

const t = suite('cd.concept-file');
const unet = tinyModelLoader('unet');
const dir = mkdtempSync(join(tmpdir(), 'imprint-cdfile-'));
t.after(() => rmSync(dir, { recursive: true, force: true }));
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

/** A rank-3 matrix plus 1% noise: compressible, with a known-good low-rank part. */
function lowRank(out: number, inn: number, seed: number): Tensor<'f32'> {
  const next = seeded(seed);
  const a = Array.from({ length: out * 3 }, () => next() - 0.5);
  const b = Array.from({ length: 3 * inn }, () => next() - 0.5);
  const x = new Float32Array(out * inn);
  for (let i = 0; i < out; i++) for (let j = 0; j < inn; j++) {
    let s = 0;
    for (let k = 0; k < 3; k++) s += a[i * 3 + k] * b[k * inn + j];
    x[i * inn + j] = s + 0.01 * (next() - 0.5);
  }
  return tensor(x, { shape: [out, inn] });
}

async function concept(): Promise<CustomDiffusionConcept> {
  const m = await unet('sd1-tiny');
  return randomConcept(m.weights, { mode: 'cross', tokens: [['<new1>', 'dog'], ['<new2>', 'toy']], fingerprint: 'sha256:abc' });
}

t('uncompressed: save → load gives identical deltas, tokens, class words, mode and fingerprint', async () => {
  const c = await concept();
  const path = join(dir, 'full.safetensors');
  const r = await saveConcept(path, c);
  assert.is(r.path, path);
  assert.is(r.bytes, statSync(path).size);
  assert.is(r.ranks, undefined);
  const h = readSafetensorsHeader(path);
  assert.is(h.metadata.format, 'imprint-concept');
  assert.is(h.metadata.version, '2');
  assert.is(h.metadata.method, 'custom-diffusion');
  assert.is(h.metadata.compression, 'none');
  assert.equal(JSON.parse(h.metadata.tokens), [{ token: '<new1>', classWord: 'dog' }, { token: '<new2>', classWord: 'toy' }]);
  assert.ok(h.tensors['delta/down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'] !== undefined);
  assert.equal(h.tensors['token/<new2>'].shape, [32]);
  const back = await loadConcept(path, { method: 'custom-diffusion' });
  assert.is(back.mode, 'cross');
  assert.is(back.baseFingerprint, 'sha256:abc');
  assert.is(back.file.compression, 'none');
  assert.equal([...back.deltas.keys()].sort(), [...c.deltas.keys()].sort());
  assert.is(back.deltas.size, 24, 'q, k, v, out of 6 cross-attention layers');
  for (const [n, d] of c.deltas) assert.equal(Array.from(f32(back.deltas.get(n)!)), Array.from(f32(d)), n);
  assert.equal(back.tokens.map((tk) => [tk.token, tk.classWord]), [['<new1>', 'dog'], ['<new2>', 'toy']]);
  back.tokens.forEach((tk, i) => assert.equal(Array.from(f32(tk.embedding)), Array.from(f32(c.tokens[i].embedding))));
  assert.equal(back.tokens.map((tk) => tk.prompt), [undefined, undefined], 'no training prompt recorded');
  disposeAll(back);
  // A token's training prompt is recorded and read back; one that does not name the token is refused.
  c.tokens[0].prompt = 'photo of a <new1> dog';
  const withPrompt = join(dir, 'prompt.safetensors');
  await saveConcept(withPrompt, c);
  assert.equal(JSON.parse(readSafetensorsHeader(withPrompt).metadata.tokens)[0], { token: '<new1>', classWord: 'dog', prompt: 'photo of a <new1> dog' });
  const back2 = await loadConcept(withPrompt, { method: 'custom-diffusion' });
  assert.equal(back2.tokens.map((tk) => tk.prompt), ['photo of a <new1> dog', undefined]);
  disposeAll(back2);
  c.tokens[0].prompt = 'photo of a dog';
  await assertRejects(() => saveConcept(join(dir, 'bad-prompt.safetensors'), c), 'INVALID_ARGUMENT', /tokens\[0\]\.prompt must be a prompt that contains '<new1>' as a word/);
  delete c.tokens[0].prompt;
  disposeAll(c);
});

t('compressed: the reported error equals the error recomputed from the loaded deltas; the file is smaller', async () => {
  const c = await concept();
  // Replace the deltas with compressible ones.
  for (const [i, [n, d]] of [...c.deltas].entries()) {
    c.deltas.set(n, lowRank(d.shape[0], d.shape[1], 40 + i));
    d.dispose();
  }
  const full = await saveConcept(join(dir, 'ref.safetensors'), c);
  for (const compress of [{ energy: 0.999 }, { rank: 2 }, {}]) {
    const path = join(dir, 'svd.safetensors');
    const r = await saveConcept(path, c, { compress });
    assert.ok(r.bytes < full.bytes / 2, `${JSON.stringify(compress)}: ${r.bytes} < ${full.bytes}/2`);
    const back = await loadConcept(path, { method: 'custom-diffusion' });
    assert.is(back.file.compression, 'svd');
    assert.equal(back.file.ranks, r.ranks);
    let err = 0;
    let total = 0;
    for (const [n, d] of c.deltas) {
      const x = f32(d);
      const y = f32(back.deltas.get(n)!);
      assert.equal(back.deltas.get(n)!.shape, d.shape);
      for (let k = 0; k < x.length; k++) {
        err += (x[k] - y[k]) ** 2;
        total += x[k] ** 2;
      }
      if ('rank' in compress) assert.is(r.ranks![n], 2, n);
      else assert.is(r.ranks![n], 3, `${n}: energy keeps the rank-3 part`);
    }
    const recomputed = Math.sqrt(err / total);
    assert.ok(Math.abs(recomputed - r.relativeError!) < 1e-6, `${JSON.stringify(compress)}: reported ${r.relativeError} vs ${recomputed}`);
    assert.ok(r.relativeError! < ('rank' in compress ? 0.5 : 0.02), `error ${r.relativeError}`);
    const h = readSafetensorsHeader(path);
    const k = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';
    assert.equal(h.tensors[`delta/${k}.u`].shape, [32, r.ranks![k]]);
    assert.equal(h.tensors[`delta/${k}.v`].shape, [r.ranks![k], 32]);
    assert.equal(JSON.parse(h.metadata.ranks), r.ranks);
    disposeAll(back);
  }
  disposeAll(c);
});

t('saveConcept refuses bad input with the option named', async () => {
  const c = await concept();
  const p = join(dir, 'x.safetensors');
  await assertRejects(() => saveConcept(p, {} as never), 'INVALID_ARGUMENT', /method/);
  await assertRejects(() => saveConcept(p, null as never), 'INVALID_ARGUMENT', /ConceptWeights/);
  await assertRejects(() => saveConcept('', c), 'INVALID_ARGUMENT', /path/);
  await assertRejects(() => saveConcept(p, c, { compress: { energy: 1.5 } }), 'INVALID_ARGUMENT', /compress\.energy/);
  await assertRejects(() => saveConcept(p, c, { compress: { rank: 0 } }), 'INVALID_ARGUMENT', /compress\.rank/);
  await assertRejects(() => saveConcept(p, c, { compress: { ranks: 2 } as never }), 'INVALID_ARGUMENT', /unknown option 'ranks'/);
  await assertRejects(() => saveConcept(p, c, { level: 3 } as never), 'INVALID_ARGUMENT', /unknown option 'level'/);
  await assertRejects(() => saveConcept(p, { ...c, mode: 'all' as never }), 'INVALID_ARGUMENT', /mode/);
  await assertRejects(() => saveConcept(p, { ...c, mode: 'kv' }), 'INVALID_ARGUMENT', /attn2\.to_out\.0\.weight', which mode 'kv' does not train/);
  await assertRejects(() => saveConcept(p, { ...c, tokens: [c.tokens[0], c.tokens[0]] }), 'INVALID_ARGUMENT', /'<new1>' twice/);
  await assertRejects(() => saveConcept(p, { ...c, tokens: [{ ...c.tokens[0], token: '../evil' }] }), 'INVALID_ARGUMENT', /slashes/);
  await assertRejects(() => saveConcept(p, { ...c, deltas: new Map() }), 'INVALID_ARGUMENT', /non-empty Map/);
  const bad = tensor([1, 2, 3]);
  await assertRejects(() => saveConcept(p, { ...c, tokens: [c.tokens[0], { token: '<x>', classWord: 'y', embedding: bad }] }), 'INVALID_ARGUMENT', /differ in width/);
  bad.dispose();
  await assertRejects(() => saveConcept(p, { ...c, tokens: [{ ...c.tokens[0], embedding: bad }] }), 'INVALID_ARGUMENT', /disposed/);
  disposeAll(c);
});

/** Writes a file from a saved good one with changed tensors and metadata. */
async function variant(name: string, edit: (tensors: Map<string, Tensor>, meta: Record<string, string>) => void): Promise<string> {
  const source = join(dir, 'svd-good.safetensors');
  const tensors = await loadSafetensors(source);
  const meta = { ...readSafetensorsHeader(source).metadata };
  edit(tensors, meta);
  const path = join(dir, name);
  await saveSafetensors(path, tensors, meta);
  for (const x of tensors.values()) if (!x.disposed) x.dispose();
  return path;
}

t('damaged and hostile files: each refused with the file and the entry named', async () => {
  const c = await concept();
  await saveConcept(join(dir, 'svd-good.safetensors'), c, { compress: { rank: 2 } });
  disposeAll(c);
  const K = 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight';
  const cases: Array<[string, (t: Map<string, Tensor>, m: Record<string, string>) => void, RegExp[]]> = [
    ['format.safetensors', (_, m) => (m.format = 'lora'), [/not an Imprint concept file/, /'lora'/]],
    ['noformat.safetensors', (_, m) => delete m.format, [/format is missing/]],
    ['version.safetensors', (_, m) => (m.version = '7'), [/version '7' is not supported/]],
    ['mode.safetensors', (_, m) => (m.mode = 'full'), [/mode must be 'kv' or 'cross'/]],
    ['json.safetensors', (_, m) => (m.tokens = '[{"token": "<new1>",'), [/metadata 'tokens' is not valid JSON/]],
    ['tokens.safetensors', (_, m) => (m.tokens = '{"token": "<new1>"}'), [/JSON list/]],
    ['ranksjson.safetensors', (_, m) => (m.ranks = 'nope'), [/metadata 'ranks' is not valid JSON/]],
    ['missing-v.safetensors', (t) => t.delete(`delta/${K}.v`), [new RegExp(`delta/${K.replace(/\./g, '\\.')}\\.v' is missing`)]],
    ['missing-u.safetensors', (t) => t.delete(`delta/${K}.u`), [/\.u' is missing/]],
    ['shape.safetensors', (t) => t.set(`delta/${K}.v`, tensor(new Float32Array(3 * 32), { shape: [3, 32] })), [/must be \[out, r\] and \[r, in\]/]],
    ['rank.safetensors', (_, m) => (m.ranks = JSON.stringify({ ...JSON.parse(m.ranks), [K]: 3 })), [/ranks\[.*\] is 3 but the factors have rank 2/]],
    ['token-missing.safetensors', (t) => t.delete('token/<new2>'), [/'token\/<new2>' is missing/]],
    ['token-extra.safetensors', (t) => t.set('token/<new3>', tensor(new Float32Array(32))), [/'token\/<new3>' is a token the metadata does not list/]],
    ['token-width.safetensors', (t) => t.set('token/<new2>', tensor(new Float32Array(16))), [/width 16 but other token rows have 32/]],
    ['token-dtype.safetensors', (t) => t.set('token/<new2>', tensor(new Int32Array(32))), [/dtype I32, expected a float type/]],
    ['stray.safetensors', (t) => t.set('lora_up', tensor(new Float32Array(2))), [/unexpected entry 'lora_up'/]],
    ['full-in-svd.safetensors', (t) => t.set(`delta/${K}`, tensor(new Float32Array(32 * 32), { shape: [32, 32] })), [/full matrix in an SVD-compressed file/]],
    ['kv-q.safetensors', (_, m) => (m.mode = 'kv'), [/attn2\.to_out\.0\.weight\.u' is not a weight that mode 'kv' trains/]],
    ['nan.safetensors', (t) => t.set('token/<new1>', tensor(new Float32Array(32).fill(NaN))), [/'token\/<new1>' holds non-finite values/]],
    ['none-with-factors.safetensors', (_, m) => (m.compression = 'none'), [/SVD factor but the file's compression is 'none'/]],
  ];
  for (const [name, edit, patterns] of cases) {
    const path = await variant(name, edit);
    const before = await settleGarbage();
    await assertRejects(() => loadConcept(path, { method: 'custom-diffusion' }), 'INVALID_ARGUMENT', new RegExp(name.replace('.', '\\.')), ...patterns);
    assert.is(memoryStats().liveBytes, before, `${name}: a refused file leaves no tensor behind`);
  }
  // A truncated file and a file that is not safetensors at all.
  const truncated = join(dir, 'truncated.safetensors');
  writeFileSync(truncated, readFileSync(join(dir, 'svd-good.safetensors')));
  truncateSync(truncated, statSync(truncated).size - 100);
  await assertRejects(() => loadConcept(truncated, { method: 'custom-diffusion' }), 'INVALID_ARGUMENT', /truncated\.safetensors/);
  const text = join(dir, 'text.safetensors');
  writeFileSync(text, 'hello, not a tensor file');
  await assertRejects(() => loadConcept(text, { method: 'custom-diffusion' }), 'INVALID_ARGUMENT', /text\.safetensors/);
  await assertRejects(() => loadConcept(join(dir, 'absent.safetensors')), 'INVALID_ARGUMENT', /absent\.safetensors/);
  await assertRejects(() => loadConcept(42 as never, { method: 'custom-diffusion' }), 'INVALID_ARGUMENT', /path must be/);
});

t.run();
