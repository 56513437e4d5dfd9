// Dense linear algebra for the concept tools: the symmetric eigensolver and
// the truncated SVD against matrices built with known decompositions
// (diagonal, rank-1 outer products, random orthogonal × diag × orthogonal),
// and the LU solver against a product it must undo.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { frobenius, mat, matmul, solve, symmetricEigen, transpose, addScaled, type Mat } from '../lib/concepts/linalg.js';
import { chooseRank, truncatedSvd } from '../lib/concepts/svd.js';
import { assertRejects, seeded } from './helpers.js';

const t = suite('cd.svd');

function randomMat(rows: number, cols: number, seed: number): Mat {
  const next = seeded(seed);
  return mat(rows, cols, Array.from({ length: rows * cols }, () => next() * 2 - 1));
}

/** A random orthogonal n×n matrix: Gram-Schmidt on random columns (written independently of linalg.ts). */
function randomOrthogonal(n: number, seed: number): Mat {
  const a = randomMat(n, n, seed);
  const q: number[][] = [];
  for (let j = 0; j < n; j++) {
    let col = Array.from({ length: n }, (_, i) => a.data[i * n + j]);
    for (const prev of q) {
      const dot = col.reduce((s, x, i) => s + x * prev[i], 0);
      col = col.map((x, i) => x - dot * prev[i]);
    }
    const norm = Math.hypot(...col);
    q.push(col.map((x) => x / norm));
  }
  return mat(n, n, Array.from({ length: n * n }, (_, k) => q[k % n][Math.floor(k / n)]));
}

/** U[:, :k]·diag(s)·V[:, :k]ᵀ for orthogonal U (m×m), V (n×n). */
function compose(U: Mat, s: number[], V: Mat): Mat {
  const m = U.rows;
  const n = V.rows;
  const out = mat(m, n);
  s.forEach((sigma, k) => {
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out.data[i * n + j] += U.data[i * m + k] * sigma * V.data[j * n + k];
  });
  return out;
}

const relErr = (a: Mat, b: Mat): number => frobenius(addScaled(a, b, -1)) / frobenius(b);

t('symmetricEigen: a diagonal matrix gives its diagonal, sorted, with unit vectors', () => {
  const d = [3, -1, 7, 0.5, 2];
  const a = mat(5, 5);
  d.forEach((x, i) => (a.data[i * 5 + i] = x));
  const { values, vectors } = symmetricEigen(a);
  assert.equal(Array.from(values), [7, 3, 2, 0.5, -1]);
  const order = [2, 0, 4, 3, 1];
  order.forEach((src, row) => assert.ok(Math.abs(Math.abs(vectors.data[row * 5 + src]) - 1) < 1e-12, `row ${row}`));
});

t('symmetricEigen: Q·diag·Qᵀ for a random orthogonal Q is recovered (values and the reconstruction)', () => {
  for (const n of [1, 2, 3, 17, 40]) {
    const Q = randomOrthogonal(n, 10 + n);
    const lambdas = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? -1 : 1) * (1 + i * 0.37));
    const a = compose(Q, lambdas, Q);
    const { values, vectors } = symmetricEigen(a);
    const sorted = [...lambdas].sort((x, y) => y - x);
    sorted.forEach((l, i) => assert.ok(Math.abs(values[i] - l) < 1e-10, `n=${n} λ${i}: ${values[i]} vs ${l}`));
    // vectorsᵀ·diag·vectors = a, and the vectors are orthonormal.
    const scaled = mat(n, n, vectors.data.map((x, k) => x * values[Math.floor(k / n)]));
    assert.ok(relErr(matmul(transpose(vectors), scaled), a) < 1e-12, `n=${n} reconstruction`);
    const eye = matmul(vectors, vectors, true);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(eye.data[i * n + j] - (i === j ? 1 : 0)) < 1e-12);
  }
});

t('symmetricEigen: repeated eigenvalues and a zero matrix', () => {
  const Q = randomOrthogonal(6, 3);
  const { values } = symmetricEigen(compose(Q, [2, 2, 2, 1, 1, 0], Q));
  [2, 2, 2, 1, 1, 0].forEach((l, i) => assert.ok(Math.abs(values[i] - l) < 1e-12));
  assert.equal(Array.from(symmetricEigen(mat(4, 4)).values), [0, 0, 0, 0]);
});

t('truncatedSvd: a rank-1 outer product a·bᵀ has σ₁ = |a|·|b|, rank 1 by energy, exact reconstruction', () => {
  for (const [m, n] of [[7, 4], [4, 7], [5, 5]]) {
    const a = randomMat(m, 1, m);
    const b = randomMat(1, n, n + 100);
    const x = matmul(a, b);
    const r = truncatedSvd(x, { energy: 0.999999 });
    assert.is(r.rank, 1, `${m}×${n}`);
    assert.ok(Math.abs(r.singularValues[0] - frobenius(a) * frobenius(b)) < 1e-12, `${m}×${n} σ₁`);
    for (let i = 1; i < r.singularValues.length; i++) assert.ok(r.singularValues[i] < 1e-7, `${m}×${n} σ${i + 1} ≈ 0`);
    assert.ok(relErr(matmul(r.u, r.v), x) < 1e-12, `${m}×${n} reconstruction`);
  }
});

t('truncatedSvd: U·diag(s)·Vᵀ built in the test: singular values, truncation error = tail energy', () => {
  for (const [m, n] of [[30, 12], [12, 30], [16, 16]]) {
    const k = Math.min(m, n);
    const U = randomOrthogonal(m, 7 * m + n);
    const V = randomOrthogonal(n, 11 * n + m);
    const s = Array.from({ length: k }, (_, i) => 10 * 0.6 ** i);
    const x = compose(U, s, V);
    const full = truncatedSvd(x);
    assert.is(full.rank, k);
    s.forEach((sigma, i) => assert.ok(Math.abs(full.singularValues[i] - sigma) < 1e-9 * s[0], `${m}×${n} σ${i}`));
    assert.ok(relErr(matmul(full.u, full.v), x) < 1e-9, `${m}×${n} full rank reconstructs`);
    for (const rank of [1, 3, 5]) {
      const r = truncatedSvd(x, { rank });
      const tail = Math.sqrt(s.slice(rank).reduce((a, b) => a + b * b, 0) / s.reduce((a, b) => a + b * b, 0));
      assert.ok(Math.abs(relErr(matmul(r.u, r.v), x) - tail) < 1e-9, `${m}×${n} rank ${rank}: error is the dropped energy`);
      // Rows of v are unit and orthogonal.
      const vvT = matmul(r.v, r.v, true);
      for (let i = 0; i < rank; i++) for (let j = 0; j < rank; j++) assert.ok(Math.abs(vvT.data[i * rank + j] - (i === j ? 1 : 0)) < 1e-9);
    }
  }
});

t('chooseRank: energy picks the fewest values reaching the fraction; rank caps it; at least 1', () => {
  const s = Float64Array.from([3, 2, 1, 0]); // energies 9, 4, 1 of 14
  assert.is(chooseRank(s, { energy: 9 / 14 }), 1);
  assert.is(chooseRank(s, { energy: 0.7 }), 2);
  assert.is(chooseRank(s, { energy: 13 / 14 }), 2);
  assert.is(chooseRank(s, { energy: 0.99 }), 3);
  assert.is(chooseRank(s, { energy: 1 }), 3);
  assert.is(chooseRank(s, { energy: 1, rank: 2 }), 2);
  assert.is(chooseRank(s, { rank: 10 }), 4);
  assert.is(chooseRank(Float64Array.from([0, 0]), { energy: 0.9 }), 1);
});

t('truncatedSvd: a zero matrix gives rank 1 with a zero factor; bad input is refused', async () => {
  const r = truncatedSvd(mat(3, 5), { energy: 0.9 });
  assert.is(r.rank, 1);
  assert.ok(r.u.data.every((x) => x === 0) || r.v.data.every((x) => x === 0));
  await assertRejects(() => truncatedSvd(mat(2, 2, [1, NaN, 0, 1])), 'INVALID_ARGUMENT', /non-finite/);
  await assertRejects(() => truncatedSvd(mat(0, 3)), 'INVALID_ARGUMENT', /empty/);
});

t('solve: undoes a·x for a random well-conditioned a, refuses singular matrices', async () => {
  const a = addScaled(randomMat(9, 9, 5), mat(9, 9, Array.from({ length: 81 }, (_, k) => (k % 10 === 0 ? 5 : 0))));
  const x = randomMat(9, 4, 6);
  const back = solve(a, matmul(a, x));
  assert.ok(relErr(back, x) < 1e-12);
  await assertRejects(() => solve(mat(2, 2, [1, 2, 2, 4]), mat(2, 1, [1, 1]), 'the constraint matrix'), 'INVALID_ARGUMENT', /the constraint matrix/, /singular/);
  await assertRejects(() => solve(mat(2, 2), mat(2, 1)), 'INVALID_ARGUMENT', /zero/);
  await assertRejects(() => solve(mat(2, 3), mat(2, 1)), 'INVALID_ARGUMENT', /square/);
});

t.run();
