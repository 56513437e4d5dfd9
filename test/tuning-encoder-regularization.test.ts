// The tuning encoder's word-embedding regularization against a brute-force
// reference written here from DESIGN §1.3: every cosine to the vocabulary,
// the k nearest rows as positives, the batch's other predictions as
// negatives, L2 on v*; its gradient against central differences of that
// reference; the nearest row (the hard context's word); bad input.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor } from '../lib/creation.js';
import { embeddingRegularization } from '../lib/methods/tuning-encoder/regularization.js';
import { assertRejects, randomArray } from './helpers.js';

const t = suite('tuning-encoder.regularization');
const V = 60, D = 8, B = 3, K = 4, TAU = 0.2, WL = 0.05;

const cos = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / Math.sqrt(aa * bb);
};
const row = (x: ArrayLike<number>, r: number): number[] => Array.from({ length: D }, (_, i) => x[r * D + i]);

/** The k nearest rows of each prediction by cosine (ties by lower index). */
function nearestRows(v: ArrayLike<number>, table: ArrayLike<number>): number[][] {
  return Array.from({ length: B }, (_, b) => Array.from({ length: V }, (_, r) => r)
    .map((r) => [r, cos(row(v, b), row(table, r))] as const)
    .sort((p, q) => q[1] - p[1] || p[0] - q[0]).slice(0, K).map(([r]) => r));
}

/** contrastive + WL·mean‖v‖² in float64, the positives fixed. */
function reference(v: ArrayLike<number>, table: ArrayLike<number>, pos: number[][]): { contrastive: number; total: number } {
  let lc = 0, l2 = 0;
  for (let b = 0; b < B; b++) {
    const vb = row(v, b);
    const p = pos[b].reduce((s, r) => s + Math.exp(cos(vb, row(table, r)) / TAU), 0);
    let n = 0;
    for (let o = 0; o < B; o++) if (o !== b) n += Math.exp(cos(vb, row(v, o)) / TAU);
    lc += -Math.log(p / (p + n)) / B;
    l2 += vb.reduce((s, x) => s + x * x, 0) / B;
  }
  return { contrastive: lc, total: lc + WL * l2 };
}

t('loss, gradient and nearest rows match the brute-force reference (central differences)', async () => {
  const table = randomArray(V * D, 3), v = Float32Array.from(randomArray(B * D, 4));
  const r = await embeddingRegularization(tensor(v, { shape: [B, D] }), tensor(table, { shape: [V, D] }), { k: K, temperature: TAU, l2Weight: WL });
  const pos = nearestRows(v, table);
  const want = reference(v, table, pos);
  assert.ok(Math.abs(r.contrastive - want.contrastive) <= 1e-5 * Math.abs(want.contrastive) + 1e-6, `contrastive ${r.contrastive} vs ${want.contrastive}`);
  assert.ok(Math.abs(r.loss - want.total) <= 1e-5 * Math.abs(want.total) + 1e-6, `loss ${r.loss} vs ${want.total}`);
  assert.equal(r.nearest, pos.map((p) => p[0]));
  r.nearest.forEach((n, b) => assert.ok(Math.abs(r.nearestCosine[b] - cos(row(v, b), row(table, n))) < 1e-5));
  const g = r.dEmbeddings.dataSync() as Float32Array;
  assert.equal(r.dEmbeddings.shape, [B, D]);
  const x = Float64Array.from(v);
  for (let i = 0; i < B * D; i++) {
    const h = 1e-4;
    const up = Float64Array.from(x), down = Float64Array.from(x);
    up[i] += h, down[i] -= h;
    const numeric = (reference(up, table, pos).total - reference(down, table, pos).total) / (2 * h);
    assert.ok(Math.abs(g[i] - numeric) <= 1e-3 * Math.abs(numeric) + 1e-4, `d v[${i}]: ${g[i]} vs finite difference ${numeric}`);
  }
});

t('weights: contrastiveWeight 0 leaves only the L2 gradient 2·l2Weight·v/B', async () => {
  const v = Float32Array.from(randomArray(B * D, 7));
  const r = await embeddingRegularization(tensor(v, { shape: [B, D] }), tensor(randomArray(V * D, 8), { shape: [V, D] }), { contrastiveWeight: 0, l2Weight: 0.5 });
  const g = r.dEmbeddings.dataSync() as Float32Array;
  v.forEach((x, i) => assert.ok(Math.abs(g[i] - (2 * 0.5 * x) / B) < 1e-6, `${i}`));
});

t('bad input is named', async () => {
  const v = tensor(new Float32Array(B * D), { shape: [B, D] });
  await assertRejects(() => embeddingRegularization(v, tensor(new Float32Array(V * 5), { shape: [V, 5] })), 'INVALID_ARGUMENT', /table must be a Tensor \[vocab, 8\]/);
  await assertRejects(() => embeddingRegularization(v, tensor(new Float32Array(V * D), { shape: [V, D] }), { k: 0 }), 'INVALID_ARGUMENT', /k must be/);
  await assertRejects(() => embeddingRegularization(v, tensor(new Float32Array(V * D), { shape: [V, D] }), { temperature: 0 }), 'INVALID_ARGUMENT', /temperature must be/);
});

t.run();
