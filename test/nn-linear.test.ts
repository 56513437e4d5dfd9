// linear: PyTorch golden values for forward and every gradient, finite
// differences, and bad shapes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { nn, tensor } from '../lib/index.js';
import { fixtureTensor, loadFixture } from './fixtures.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const fx = loadFixture('linear');
const t = suite('nn.linear');

t('forward and backward match PyTorch (3 shapes, tolerance 1e-5)', async () => {
  for (let i = 0; i < 3; i++) {
    const get = (k: string) => fixtureTensor(fx, `case${i}.${k}`);
    const [x, w, b, dy] = [get('x'), get('w'), get('b'), get('dy')];
    const y = await nn.linear(x, w, b);
    assertClose(y.dataSync(), get('y').dataSync(), 1e-5, 1e-5, `case ${i} y`);
    const g = await nn.linearBackward(dy, x, w, { biasGrad: true });
    assertClose(g.dx.dataSync(), get('dx').dataSync(), 1e-5, 1e-5, `case ${i} dx`);
    assertClose(g.dweight!.dataSync(), get('dw').dataSync(), 1e-5, 1e-5, `case ${i} dw`);
    assertClose(g.dbias!.dataSync(), get('db').dataSync(), 1e-5, 1e-5, `case ${i} db`);
  }
});

t('finite differences agree for x and weight; batch dims are flattened', async () => {
  const xs = [2, 3, 7];
  const w = tensor(randomArray(5 * 7, 2), { shape: [5, 7] });
  const x0 = randomArray(42, 1);
  await gradcheck('dx', x0, xs, (x) => nn.linear(x, w), async (dy) => (await nn.linearBackward(dy, tensor(x0, { shape: xs }), w)).dx);
  const x = tensor(x0, { shape: xs });
  await gradcheck('dweight', w.dataSync(), [5, 7], (wt) => nn.linear(x, wt), async (dy) => (await nn.linearBackward(dy, x, w)).dweight!);
});

t('weight gradient only when asked for', async () => {
  const x = tensor(randomArray(6, 1), { shape: [2, 3] });
  const w = tensor(randomArray(12, 2), { shape: [4, 3] });
  const g = await nn.linearBackward(tensor(randomArray(8, 3), { shape: [2, 4] }), x, w, { weightGrad: false });
  assert.is(g.dweight, undefined);
  assert.is(g.dbias, undefined);
  assert.equal(g.dx.shape, [2, 3]);
});

t('bad shapes and dtypes name the problem', async () => {
  const x = tensor(new Float32Array(6), { shape: [2, 3] });
  const w = tensor(new Float32Array(8), { shape: [4, 2] });
  await assertRejects(() => nn.linear(x, w), 'SHAPE_MISMATCH', /last dimension must equal weight's in_features 2/, /f32\[2, 3\]/);
  const w3 = tensor(new Float32Array(12), { shape: [4, 3] });
  await assertRejects(() => nn.linear(x, w3, tensor([1, 2])), 'SHAPE_MISMATCH', /bias must have shape \[4\], got f32\[2\]/);
  await assertRejects(() => nn.linear(x, tensor(new Float32Array(12), { shape: [4, 3], dtype: 'bf16' })), 'DTYPE_MISMATCH', /weight is bf16\[4, 3\]/);
  const h = tensor(new Float32Array(6), { shape: [2, 3], dtype: 'f16' });
  await assertRejects(() => nn.linear(h, tensor(new Float32Array(12), { shape: [4, 3], dtype: 'f16' })), 'UNSUPPORTED', /linear_forward on cpu supports f32 only/);
  await assertRejects(() => nn.linearBackward(tensor(new Float32Array(6), { shape: [2, 3] }), x, w3), 'SHAPE_MISMATCH', /dy must have shape \[2, 4\]/);
  await assertRejects(() => nn.runOp('no_such_op', []), 'INVALID_ARGUMENT', /unknown op 'no_such_op'/);
  await assertRejects(() => nn.runOp('linear_forward', [x]), 'INVALID_ARGUMENT', /input 1 \(weight\) is required/);
});

t.run();
