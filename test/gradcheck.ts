// Finite-difference gradient checks. For a scalar loss L(x) = Σ f(x)·p with a
// fixed random probe p, the analytic directional derivative ⟨∂L/∂x, v⟩ must
// match (L(x + εv) − L(x − εv)) / 2ε for random directions v. Losses are
// summed in double in JavaScript; with ε around 1e-2 the f32 rounding of the
// op stays far below the tolerance, and the central difference's error is O(ε²).
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { seeded } from './helpers.js';

export interface GradcheckOptions {
  eps?: number;
  rtol?: number;
  atol?: number;
  directions?: number;
  seed?: number;
}

function randomLike(n: number, next: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => next() * 2 - 1);
}

async function dot(t: Tensor, p: Float32Array): Promise<number> {
  const d = (await t.data()) as Float32Array;
  let s = 0;
  for (let i = 0; i < d.length; i++) s += d[i] * p[i];
  return s;
}

/**
 * Checks `grad` (∂L/∂input for L = Σ forward(input)·probe) against central
 * differences of `forward` along random directions. `backward(probe)` returns
 * the analytic gradient for upstream gradient `probe`.
 */
export async function gradcheck(
  what: string,
  input: Float32Array,
  shape: number[],
  forward: (x: Tensor<'f32'>) => Promise<Tensor>,
  backward: (dy: Tensor<'f32'>) => Promise<Tensor>,
  options: GradcheckOptions = {},
): Promise<void> {
  const { eps = 1e-2, rtol = 2e-2, atol = 1e-3, directions = 3, seed = 1 } = options;
  const next = seeded(seed);
  const x = tensor(input, { shape });
  const y0 = await forward(x);
  const probe = randomLike(y0.numel, next);
  const grad = (await (await backward(tensor(probe, { shape: [...y0.shape] }))).data()) as Float32Array;
  assert.is(grad.length, input.length, `${what}: gradient size`);
  for (let d = 0; d < directions; d++) {
    const v = randomLike(input.length, next);
    const plus = Float32Array.from(input, (xi, i) => xi + eps * v[i]);
    const minus = Float32Array.from(input, (xi, i) => xi - eps * v[i]);
    const lp = await dot(await forward(tensor(plus, { shape })), probe);
    const lm = await dot(await forward(tensor(minus, { shape })), probe);
    const numeric = (lp - lm) / (2 * eps);
    let analytic = 0;
    for (let i = 0; i < grad.length; i++) analytic += grad[i] * v[i];
    assert.ok(
      Math.abs(numeric - analytic) <= atol + rtol * Math.abs(numeric),
      `${what}: direction ${d}: finite difference ${numeric}, analytic ${analytic}`,
    );
  }
}
