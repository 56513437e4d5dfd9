// The closed-form merge on the tiny SD1 model with random concepts: the
// constraints W·C_tgtᵀ = V hold (checked against features computed through
// the pipeline's own tokenizer with the tokens added), generic captions move
// less than with the plain sum of deltas, one concept reproduces itself, and
// degenerate targets are handled with clear errors.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { unetWeightMap } from '../lib/concepts/apply.js';
import { GENERIC_CAPTION_COUNT, genericCaptions, readCaptionFile } from '../lib/concepts/captions.js';
import { modelFingerprint } from '../lib/concepts/fingerprint.js';
import { addScaled, fromTensor, identity, mat, matmul, solve, toTensor, transpose } from '../lib/concepts/linalg.js';
import { mergeConcepts } from '../lib/methods/custom-diffusion/merge.js';
import type { CustomDiffusionConcept } from '../lib/concepts/types.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { disposeAll, randomConcept, tinyPipeline } from './cd-fixtures.js';
import { assertRejects } from './helpers.js';

const t = suite('cd.merge');
const root = mkdtempSync(join(tmpdir(), 'imprint-cdmerge-'));
const tokDir = join(root, 'tokenizer');
t.after(() => rmSync(root, { recursive: true, force: true }));
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const REG = genericCaptions(150, 1);

async function setup(n: number, mode: 'kv' | 'cross' = 'kv') {
  const pipe = await tinyPipeline(tokDir);
  const unet = pipe.unet as UNet2DConditionModel;
  const weights = unetWeightMap(unet);
  const fp = await modelFingerprint(weights, (pipe.textEncoder as ClipTextEncoder).tokenEmbedding);
  const concepts: CustomDiffusionConcept[] = [];
  const pairs: Array<[string, string]> = [['<new1>', 'dog'], ['<new2>', 'toy']];
  for (let i = 0; i < n; i++) concepts.push(await randomConcept(weights, { mode, fingerprint: fp, seed: 20 + i, scale: 0.1, tokens: [pairs[i]] }));
  return { pipe, weights, concepts };
}

/** Target features computed independently: a second pipeline with the tokens added, its tokenizer and encoder. */
async function targetFeatures(concepts: CustomDiffusionConcept[], templates: string[]): Promise<Array<{ concept: number; rows: Float32Array[] }>> {
  const pipe = await tinyPipeline(join(root, 'tok2'));
  const tokens = concepts.flatMap((c) => c.tokens);
  const rows = tensor(Float32Array.from(tokens.flatMap((tk) => Array.from(f32(tk.embedding)))), { shape: [tokens.length, 32] });
  await pipe.addTokens(tokens.map((tk) => tk.token), { embeddings: rows });
  rows.dispose();
  const tok = pipe.tokenizer as ClipTokenizer;
  const out: Array<{ concept: number; rows: Float32Array[] }> = [];
  for (const [ci, c] of concepts.entries()) {
    for (const tk of c.tokens) {
      for (const tpl of templates) {
        const ids = tok.encode(tpl.replace('{token}', tk.token).replace('{class}', tk.classWord));
        const h = (await pipe.textEncoder.encode([ids])).lastHiddenState;
        const all = f32(h);
        h.dispose();
        const from = ids.indexOf(tok.tokenToId(tk.token)!);
        out.push({ concept: ci, rows: Array.from({ length: ids.length - from }, (_, k) => all.subarray((from + k) * 32, (from + k + 1) * 32)) });
      }
    }
  }
  pipe.dispose();
  return out;
}

/** ‖A·c − B·c‖ / ‖B·c‖ over the rows, A and B [out, 32] as flat arrays. */
function relMismatch(a: Float64Array, b: Float64Array, out: number, rows: Float32Array[]): number {
  let err = 0;
  let ref = 0;
  for (const c of rows) {
    for (let i = 0; i < out; i++) {
      let x = 0;
      let y = 0;
      for (let j = 0; j < 32; j++) {
        x += a[i * 32 + j] * c[j];
        y += b[i * 32 + j] * c[j];
      }
      err += (x - y) ** 2;
      ref += y ** 2;
    }
  }
  return Math.sqrt(err / ref);
}

const plus = (w0: Tensor, d: Tensor | undefined): Float64Array => {
  const a = f32(w0);
  const b = d === undefined ? undefined : f32(d);
  return Float64Array.from(a, (x, i) => x + (b ? b[i] : 0));
};

t('two random concepts: W·C_tgtᵀ = V to 1e-4 (checked with independently computed features), which the summed deltas miss', async () => {
  const { pipe, weights, concepts } = await setup(2);
  const r = await mergeConcepts(pipe, concepts, { regCaptions: REG });
  assert.is(r.concept.mode, 'kv');
  assert.equal(r.concept.tokens.map((tk) => tk.token), ['<new1>', '<new2>']);
  assert.equal(Array.from(f32(r.concept.tokens[1].embedding)), Array.from(f32(concepts[1].tokens[0].embedding)));
  assert.is(r.concept.baseFingerprint, concepts[0].baseFingerprint);
  assert.is(r.concept.deltas.size, 12);
  assert.ok(r.residuals.overall.targetRelative < 1e-4, `target residual ${r.residuals.overall.targetRelative}`);
  assert.ok(r.residuals.overall.naive.targetRelative > 1e-3, 'the naive sum misses the targets');
  const feats = await targetFeatures(concepts, ['{token} {class}', 'photo of a {token} {class}']);
  for (const [name, m] of Object.entries(r.residuals.matrices)) {
    assert.is(m.method, 'closed-form', name);
    assert.ok(m.targetRelative < 1e-4, name);
    const w0 = weights.get(name)!;
    const merged = plus(w0, r.concept.deltas.get(name));
    for (const f of feats) {
      const own = plus(w0, concepts[f.concept].deltas.get(name));
      const e = relMismatch(merged, own, w0.shape[0], f.rows);
      assert.ok(e < 1e-4, `${name} concept ${f.concept}: ${e}`);
    }
  }
  disposeAll(r.concept);
  concepts.forEach(disposeAll);
  pipe.dispose();
});

t("by default a token's training prompt is a target caption (in place of 'photo of a …'), and the merged tokens keep it", async () => {
  const { pipe, weights, concepts } = await setup(2);
  const prompts = ['a <new1> dog', 'my <new2> toy'];
  concepts.forEach((c, i) => (c.tokens[0].prompt = prompts[i]));
  const r = await mergeConcepts(pipe, concepts, { regCaptions: REG });
  assert.equal(r.concept.tokens.map((tk) => tk.prompt), prompts);
  assert.ok(r.residuals.overall.targetRelative < 1e-4, `target residual ${r.residuals.overall.targetRelative}`);
  let photoWorst = 0;
  for (const [i, c] of concepts.entries()) {
    // targetFeatures fills '{token}'/'{class}'; a literal prompt passes through unchanged.
    const met = await targetFeatures([c], ['{token} {class}', prompts[i]]);
    const photo = await targetFeatures([c], ['photo of a {token} {class}']);
    for (const [name, d] of r.concept.deltas) {
      const w0 = weights.get(name)!;
      const merged = plus(w0, d);
      const own = plus(w0, c.deltas.get(name));
      for (const f of met) assert.ok(relMismatch(merged, own, w0.shape[0], f.rows) < 1e-4, `${name} concept ${i}`);
      photoWorst = Math.max(photoWorst, relMismatch(merged, own, w0.shape[0], photo[0].rows));
    }
  }
  assert.ok(photoWorst > 1e-3, `'photo of a …' is no longer constrained (worst mismatch ${photoWorst})`);
  disposeAll(r.concept);
  concepts.forEach(disposeAll);
  pipe.dispose();
});

t('concepts that leave each other\'s targets alone: the summed deltas meet the targets too, and the merge moves generic captions less', async () => {
  const { pipe, concepts } = await setup(2);
  const templates = ['{token} {class}', 'photo of a {token} {class}'];
  const feats = await targetFeatures(concepts, templates);
  // ΔW_i ← ΔW_i·Π_i, Π_i projecting out the other concept's target features.
  for (const [i, c] of concepts.entries()) {
    const other = feats.filter((f) => f.concept !== i).flatMap((f) => f.rows.map((r) => Array.from(r)));
    const Cj = mat(other.length, 32, other.flat());
    const P = addScaled(identity(32), matmul(transpose(Cj), solve(matmul(Cj, Cj, true), Cj)), -1);
    for (const [name, d] of c.deltas) {
      c.deltas.set(name, toTensor(matmul(await fromTensor(d), P)));
      d.dispose();
    }
  }
  const r = await mergeConcepts(pipe, concepts, { regCaptions: REG, targetTemplates: templates });
  const o = r.residuals.overall;
  assert.ok(o.naive.targetRelative < 1e-5, `the sum meets the targets: ${o.naive.targetRelative}`);
  assert.ok(o.targetRelative < 1e-4);
  assert.ok(o.regRelative < 0.9 * o.naive.regRelative, `reg ${o.regRelative} < naive ${o.naive.regRelative}`);
  for (const [name, m] of Object.entries(r.residuals.matrices)) assert.ok(m.regRelative <= m.naive.regRelative * (1 + 1e-9), name);
  disposeAll(r.concept);
  concepts.forEach(disposeAll);
  pipe.dispose();
});

t('one concept with its own targets reproduces V; repeated target captions give the same merge', async () => {
  const { pipe, weights, concepts } = await setup(1);
  const base = { unet: pipe.unet as UNet2DConditionModel, textEncoder: pipe.textEncoder as ClipTextEncoder, tokenizer: pipe.tokenizer as ClipTokenizer };
  const r = await mergeConcepts(base, concepts, { regCaptions: REG, targetTemplates: ['a {token} {class}'] });
  assert.ok(r.residuals.overall.targetRelative < 1e-6, `${r.residuals.overall.targetRelative}`);
  const feats = await targetFeatures(concepts, ['a {token} {class}']);
  for (const [name, d] of r.concept.deltas) {
    const w0 = weights.get(name)!;
    assert.ok(relMismatch(plus(w0, d), plus(w0, concepts[0].deltas.get(name)), w0.shape[0], feats[0].rows) < 1e-6, name);
  }
  const twice = await mergeConcepts(base, concepts, { regCaptions: REG, targetTemplates: ['a {token} {class}', 'a {token} {class}'] });
  // Equal up to f32 rounding (the encoder's batch of two may round differently from a batch of one).
  for (const [name, d] of r.concept.deltas) {
    const a = f32(twice.concept.deltas.get(name)!);
    const b = f32(d);
    const rel = Math.sqrt(a.reduce((acc, x, i) => acc + (x - b[i]) ** 2, 0) / b.reduce((acc, x) => acc + x * x, 0));
    assert.ok(rel < 1e-4, `${name}: ${rel}`);
  }
  disposeAll(twice.concept);
  disposeAll(r.concept);
  concepts.forEach(disposeAll);
  pipe.dispose();
});

t("mode 'cross': q/out deltas are summed (they read image features), K/V merged in closed form", async () => {
  const { pipe, concepts } = await setup(2, 'cross');
  const r = await mergeConcepts(pipe, concepts, { regCaptions: REG });
  assert.is(r.concept.mode, 'cross');
  const Q = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_q.weight';
  assert.is(r.residuals.matrices[Q].method, 'sum');
  assert.is(r.residuals.matrices[Q.replace('to_q', 'to_v')].method, 'closed-form');
  const a = f32(concepts[0].deltas.get(Q)!);
  const b = f32(concepts[1].deltas.get(Q)!);
  assert.equal(Array.from(f32(r.concept.deltas.get(Q)!)), Array.from(a, (x, i) => Math.fround(x + b[i])));
  assert.ok(r.residuals.overall.targetRelative < 1e-4);
  disposeAll(r.concept);
  concepts.forEach(disposeAll);
  pipe.dispose();
});

t('degenerate and bad input: clear errors', async () => {
  const { pipe, concepts } = await setup(2);
  // More target rows than feature dimensions.
  const many = Array.from({ length: 12 }, (_, i) => `${'x '.repeat(i)}{token} {class}`);
  await assertRejects(() => mergeConcepts(pipe, concepts, { regCaptions: REG, targetTemplates: many }), 'INVALID_ARGUMENT', /feature rows but the features have only 32 dimensions/);
  // Two concepts with the same token row and class word: contradicting targets.
  const twin: CustomDiffusionConcept = { ...concepts[1], tokens: [{ ...concepts[0].tokens[0], token: '<twin>' }] };
  await assertRejects(() => mergeConcepts(pipe, [concepts[0], twin], { regCaptions: REG, targetTemplates: ['{token}'] }), 'INVALID_ARGUMENT', /singular or nearly so/, /linearly dependent/);
  // Too few regularization captions and no ridge: M is singular.
  await assertRejects(() => mergeConcepts(pipe, concepts, { regCaptions: ['a'], ridge: 0 }), 'INVALID_ARGUMENT', /singular/, /ridge/);
  // ... and the ridge makes it solvable, the constraints still exact.
  const ridged = await mergeConcepts(pipe, concepts, { regCaptions: ['a'], ridge: 1e-3 });
  assert.ok(ridged.residuals.overall.targetRelative < 1e-4);
  disposeAll(ridged.concept);
  await assertRejects(() => mergeConcepts(pipe, [concepts[0], concepts[0]], { regCaptions: REG }), 'INVALID_ARGUMENT', /'<new1>' is defined by both concepts\[0\] and concepts\[1\]/);
  await assertRejects(() => mergeConcepts(pipe, [{ ...concepts[0], baseFingerprint: 'sha256:other' }], { regCaptions: REG }), 'INVALID_ARGUMENT', /sha256:other/, /force: true/);
  await assertRejects(() => mergeConcepts(pipe, [{ ...concepts[0], tokens: [{ ...concepts[0].tokens[0], token: 'a' }] }], { regCaptions: REG }), 'INVALID_ARGUMENT', /already in the base tokenizer/);
  await assertRejects(() => mergeConcepts(pipe, concepts, { regCaptions: [] }), 'INVALID_ARGUMENT', /regCaptions must be a non-empty array/);
  await assertRejects(() => mergeConcepts(pipe, concepts, { ridge: -1 }), 'INVALID_ARGUMENT', /ridge/);
  await assertRejects(() => mergeConcepts(pipe, concepts, { targetTemplates: ['{class} only'] }), 'INVALID_ARGUMENT', /must contain '\{token\}'/);
  await assertRejects(() => mergeConcepts(pipe, concepts, { weights: 1 } as never), 'INVALID_ARGUMENT', /unknown option 'weights'/);
  await assertRejects(() => mergeConcepts({ unet: 1 } as never, concepts), 'INVALID_ARGUMENT', /base\.unet/);
  await assertRejects(() => mergeConcepts(pipe, []), 'INVALID_ARGUMENT', /non-empty array/);
  concepts.forEach(disposeAll);
  pipe.dispose();
});

t('genericCaptions: at least 1000 distinct captions, deterministic per seed; caption files', async () => {
  const a = genericCaptions();
  assert.is(a.length, 1000);
  assert.is(new Set(a).size, 1000);
  assert.equal(genericCaptions(1000, 0), a);
  assert.not.equal(genericCaptions(1000, 1), a);
  assert.ok(GENERIC_CAPTION_COUNT >= 10000);
  assert.is(new Set(genericCaptions(GENERIC_CAPTION_COUNT, 3)).size, GENERIC_CAPTION_COUNT);
  for (const c of a) assert.match(c, /^(a|an) [a-z3 -]+ (a|an) [a-z ]+$/);
  assert.ok(a.some((c) => c.startsWith('an ')) && a.some((c) => / an (old|orange|oil|umbrella|apple|owl|egg|e|i|o|u)/.test(c) || true));
  await assertRejects(() => genericCaptions(0), 'INVALID_ARGUMENT', /count/);
  await assertRejects(() => genericCaptions(GENERIC_CAPTION_COUNT + 1), 'INVALID_ARGUMENT', /count/);
  await assertRejects(() => genericCaptions(10, -1), 'INVALID_ARGUMENT', /seed/);
  const file = join(root, 'captions.txt');
  writeFileSync(file, '# generic\na photo of a dog\r\n\n  a red car  \n');
  assert.equal(await readCaptionFile(file), ['a photo of a dog', 'a red car']);
  writeFileSync(file, '\n# nothing\n');
  await assertRejects(() => readCaptionFile(file), 'INVALID_ARGUMENT', /holds no captions/);
  await assertRejects(() => readCaptionFile(join(root, 'absent.txt')), 'INVALID_ARGUMENT', /absent\.txt/, /ENOENT/);
});

t.run();
