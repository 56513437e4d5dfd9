// attentionTokenMap: the head-averaged attention a query pays to chosen key
// tokens (Attend-and-Excite's maps), from attention()'s lse. Checked against a
// materialised softmax in double (values and the full gradient, including the
// part through lse), by finite differences of the composed forward
// (attention() for lse, then the map), and for its bad inputs.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { attention, attentionTokenMap, attentionTokenMapBackward } from '../lib/nn/attn.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const t = suite('nn.attention-token-map');
const S = { b: 2, h: 3, nq: 5, nk: 7, d: 4 };
const TOKENS = [2, 5, 2]; // a token listed twice counts twice
const SCALE = 0.7;

/** p[bh, i, j] = softmax_j(scale·q_i·k_j), in double. */
function probabilities(q: Float32Array, k: Float32Array): Float64Array {
  const { b, h, nq, nk, d } = S;
  const p = new Float64Array(b * h * nq * nk);
  for (let bh = 0; bh < b * h; bh++) {
    for (let i = 0; i < nq; i++) {
      const row = (bh * nq + i) * nk;
      let max = -Infinity;
      for (let j = 0; j < nk; j++) {
        let s = 0;
        for (let x = 0; x < d; x++) s += q[(bh * nq + i) * d + x] * k[(bh * nk + j) * d + x];
        p[row + j] = s * SCALE;
        max = Math.max(max, p[row + j]);
      }
      let sum = 0;
      for (let j = 0; j < nk; j++) sum += (p[row + j] = Math.exp(p[row + j] - max));
      for (let j = 0; j < nk; j++) p[row + j] /= sum;
    }
  }
  return p;
}

/** maps [b, T, nq] and, for upstream dm, dq and dk through the softmax Jacobian, in double. */
function reference(q: Float32Array, k: Float32Array, dm: Float32Array) {
  const { b, h, nq, nk, d } = S;
  const T = TOKENS.length;
  const p = probabilities(q, k);
  const maps = new Float64Array(b * T * nq);
  const dq = new Float64Array(q.length);
  const dk = new Float64Array(k.length);
  for (let bh = 0; bh < b * h; bh++) {
    const bi = Math.floor(bh / h);
    for (let i = 0; i < nq; i++) {
      const row = (bh * nq + i) * nk;
      // ∂L/∂p_ij = Σ_t dm_ti/H·[j = τt]; ∂L/∂s_ij = p_ij·(∂L/∂p_ij − Σ_l p_il·∂L/∂p_il).
      const dp = new Float64Array(nk);
      TOKENS.forEach((tok, ti) => {
        maps[(bi * T + ti) * nq + i] += p[row + tok] / h;
        dp[tok] += dm[(bi * T + ti) * nq + i] / h;
      });
      let mean = 0;
      for (let j = 0; j < nk; j++) mean += p[row + j] * dp[j];
      for (let j = 0; j < nk; j++) {
        const ds = p[row + j] * (dp[j] - mean) * SCALE;
        for (let x = 0; x < d; x++) {
          dq[(bh * nq + i) * d + x] += ds * k[(bh * nk + j) * d + x];
          dk[(bh * nk + j) * d + x] += ds * q[(bh * nq + i) * d + x];
        }
      }
    }
  }
  return { maps, dq, dk };
}

const shapeQ = [S.b, S.h, S.nq, S.d];
const shapeK = [S.b, S.h, S.nk, S.d];
const qData = randomArray(S.b * S.h * S.nq * S.d, 11, 1.5);
const kData = randomArray(S.b * S.h * S.nk * S.d, 12, 1.5);
const vData = randomArray(S.b * S.h * S.nk * S.d, 13);

async function lseOf(q: Tensor<'f32'>, k: Tensor<'f32'>): Promise<Tensor<'f32'>> {
  return (await attention(q, k, tensor(vData, { shape: shapeK }), { scale: SCALE })).lse;
}

t('the maps and both gradients equal a materialised softmax (double); every key token\'s map sums to 1 over the keys', async () => {
  const q = tensor(qData, { shape: shapeQ });
  const k = tensor(kData, { shape: shapeK });
  const lse = await lseOf(q, k);
  const maps = await attentionTokenMap(q, k, lse, TOKENS, { scale: SCALE });
  assert.equal(maps.shape, [S.b, TOKENS.length, S.nq]);
  assert.is(maps.dtype, 'f32');
  const dmData = randomArray(S.b * TOKENS.length * S.nq, 14);
  const ref = reference(qData, kData, dmData);
  // Each value is a short f32 dot product (d = 4) and one exp against an f32 lse.
  assertClose((await maps.data()) as Float32Array, ref.maps, 1e-5, 1e-6, 'maps');
  const { dq, dk } = await attentionTokenMapBackward(tensor(dmData, { shape: [...maps.shape] }), q, k, lse, TOKENS, { scale: SCALE });
  assertClose((await dq.data()) as Float32Array, ref.dq, 1e-4, 1e-5, 'dq');
  assertClose((await dk.data()) as Float32Array, ref.dk, 1e-4, 1e-5, 'dk');
  // Summed over every key, a query's shares make 1 (per head, so also the head mean).
  const all = await attentionTokenMap(q, k, lse, Array.from({ length: S.nk }, (_, j) => j), { scale: SCALE });
  const a = (await all.data()) as Float32Array;
  for (let b = 0; b < S.b; b++) {
    for (let i = 0; i < S.nq; i++) {
      let sum = 0;
      for (let j = 0; j < S.nk; j++) sum += a[(b * S.nk + j) * S.nq + i];
      assert.ok(Math.abs(sum - 1) < 1e-5, `batch ${b} query ${i}: shares sum to ${sum}`);
    }
  }
});

t('finite differences of attention() then the map, through q and through k', async () => {
  const k = tensor(kData, { shape: shapeK });
  await gradcheck('dq', qData, shapeQ,
    async (x) => attentionTokenMap(x, k, await lseOf(x, k), TOKENS, { scale: SCALE }),
    async (dm) => {
      const q = tensor(qData, { shape: shapeQ });
      return (await attentionTokenMapBackward(dm, q, k, await lseOf(q, k), TOKENS, { scale: SCALE })).dq;
    });
  const q = tensor(qData, { shape: shapeQ });
  await gradcheck('dk', kData, shapeK,
    async (x) => attentionTokenMap(q, x, await lseOf(q, x), TOKENS, { scale: SCALE }),
    async (dm) => {
      const kk = tensor(kData, { shape: shapeK });
      return (await attentionTokenMapBackward(dm, q, kk, await lseOf(q, kk), TOKENS, { scale: SCALE })).dk;
    });
});

t('bf16 inputs give the f32 maps of their rounded values', async () => {
  const q = await tensor(qData, { shape: shapeQ }).cast('bf16');
  const k = await tensor(kData, { shape: shapeK }).cast('bf16');
  const qr = (await (await q.cast('f32')).data()) as Float32Array;
  const kr = (await (await k.cast('f32')).data()) as Float32Array;
  // The CPU's attention is f32 only: lse from the rounded values.
  const lse = await lseOf(tensor(qr, { shape: shapeQ }), tensor(kr, { shape: shapeK }));
  const maps = await attentionTokenMap(q, k, lse, TOKENS, { scale: SCALE });
  const ref = reference(qr, kr, new Float32Array(S.b * TOKENS.length * S.nq));
  assertClose((await maps.data()) as Float32Array, ref.maps, 1e-5, 1e-6, 'bf16 maps');
});

t('bad tokens, lse and dmaps are named', async () => {
  const q = tensor(qData, { shape: shapeQ });
  const k = tensor(kData, { shape: shapeK });
  const lse = await lseOf(q, k);
  await assertRejects(() => attentionTokenMap(q, k, lse, []), 'INVALID_ARGUMENT', /tokens must be an array of 1 to 77/);
  await assertRejects(() => attentionTokenMap(q, k, lse, Array(78).fill(0)), 'INVALID_ARGUMENT', /1 to 77/);
  await assertRejects(() => attentionTokenMap(q, k, lse, [1.5]), 'INVALID_ARGUMENT', /tokens\[0\] must be a key index/);
  await assertRejects(() => attentionTokenMap(q, k, lse, [0, 7]), 'INVALID_ARGUMENT', /tokens\[1\] = 7 is not a key index/);
  const wrongLse = tensor(new Float32Array(S.b * S.h), { shape: [S.b, S.h, 1] });
  await assertRejects(() => attentionTokenMap(q, k, wrongLse, [0]), 'SHAPE_MISMATCH', /lse/);
  const kOther = tensor(new Float32Array(S.b * S.h * S.nk * 3), { shape: [S.b, S.h, S.nk, 3] });
  await assertRejects(() => attentionTokenMap(q, kOther, lse, [0]), 'SHAPE_MISMATCH', /k must be \[batch, heads, keys, head_dim\]/);
  const dm = tensor(new Float32Array(S.b * 2 * S.nq), { shape: [S.b, 2, S.nq] });
  await assertRejects(() => attentionTokenMapBackward(dm, q, k, lse, [0]), 'SHAPE_MISMATCH', /dmaps/);
});

t.run();
