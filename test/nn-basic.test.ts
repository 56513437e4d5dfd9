// Backward passes of add, mul and matmul (with transposes and broadcast batch
// dims) against PyTorch autograd, finite differences, and reshape.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { add, matmul, mul, nn, tensor } from '../lib/index.js';
import { fixtureTensor, loadFixture } from './fixtures.js';
import { gradcheck } from './gradcheck.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';

const fx = loadFixture('basic');
const get = (k: string) => fixtureTensor(fx, k);
const t = suite('nn basic backward');

t('add and mul backward sum over broadcast dims like PyTorch', async () => {
  for (let i = 0; i < 3; i++) {
    const [a, b] = [get(`add${i}.a`), get(`add${i}.b`)];
    const ga = await nn.addBackward(get(`add${i}.dy`), a.shape, b.shape);
    assertClose(ga.da.dataSync(), get(`add${i}.da`).dataSync(), 1e-6, 1e-6, `add ${i} da`);
    assertClose(ga.db.dataSync(), get(`add${i}.db`).dataSync(), 1e-5, 1e-5, `add ${i} db`);
    assert.equal(ga.db.shape, b.shape);
    const gm = await nn.mulBackward(get(`mul${i}.dy`), get(`mul${i}.a`), get(`mul${i}.b`));
    assertClose(gm.da.dataSync(), get(`mul${i}.da`).dataSync(), 1e-5, 1e-5, `mul ${i} da`);
    assertClose(gm.db.dataSync(), get(`mul${i}.db`).dataSync(), 1e-5, 1e-5, `mul ${i} db`);
  }
});

t('matmul backward with transposes and broadcast batches matches PyTorch', async () => {
  const flags: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true], [false, false], [false, true]];
  for (const [i, [ta, tb]] of flags.entries()) {
    const g = await nn.matmulBackward(get(`matmul${i}.dy`), get(`matmul${i}.a`), get(`matmul${i}.b`), { transposeA: ta, transposeB: tb });
    assert.equal(g.da!.shape, get(`matmul${i}.a`).shape);
    assert.equal(g.db!.shape, get(`matmul${i}.b`).shape);
    assertClose(g.da!.dataSync(), get(`matmul${i}.da`).dataSync(), 1e-5, 1e-5, `matmul ${i} da`);
    assertClose(g.db!.dataSync(), get(`matmul${i}.db`).dataSync(), 1e-5, 1e-5, `matmul ${i} db`);
  }
});

t('finite differences: matmul with a broadcast batch', async () => {
  const [sa, sb] = [[2, 1, 3, 4], [3, 4, 5]];
  const a0 = randomArray(24, 1);
  const b = tensor(randomArray(60, 2), { shape: sb });
  await gradcheck('da', a0, sa, (a) => matmul(a, b), async (dy) => (await nn.matmulBackward(dy, tensor(a0, { shape: sa }), b, { bGrad: false })).da!);
  const a = tensor(a0, { shape: sa });
  await gradcheck('db', b.dataSync(), sb, (bt) => matmul(a, bt), async (dy) => (await nn.matmulBackward(dy, a, b, { aGrad: false })).db!);
});

t('finite differences: add and mul with broadcasting', async () => {
  const [sa, sb] = [[2, 1, 4], [3, 1]];
  const a0 = randomArray(8, 3);
  const b0 = randomArray(3, 4);
  const a = tensor(a0, { shape: sa });
  const b = tensor(b0, { shape: sb });
  await gradcheck('mul da', a0, sa, (x) => mul(x, b), async (dy) => (await nn.mulBackward(dy, a, b)).da);
  await gradcheck('mul db', b0, sb, (x) => mul(a, x), async (dy) => (await nn.mulBackward(dy, a, b)).db);
  await gradcheck('add db', b0, sb, (x) => add(a, x), async (dy) => (await nn.addBackward(dy, sa, sb)).db);
});

t('reshape shares data, infers -1, and refuses sizes that do not fit', async () => {
  const x = tensor([[1, 2, 3], [4, 5, 6]]);
  const r = x.reshape([3, -1]);
  assert.equal(r.shape, [3, 2]);
  assert.equal(Array.from(r.dataSync()), [1, 2, 3, 4, 5, 6]);
  x.dispose();
  assert.equal(Array.from(r.dataSync()), [1, 2, 3, 4, 5, 6], 'the view keeps the memory alive');
  await assertRejects(() => r.reshape([4, 2]), 'SHAPE_MISMATCH', /reshape: f32\[3, 2\] on cpu has 6 elements, shape \[4, 2\] holds 8/);
  await assertRejects(() => r.reshape([-1, -1]), 'INVALID_ARGUMENT', /at most one dimension can be -1/);
  await assertRejects(() => r.reshape([4, -1]), 'SHAPE_MISMATCH', /do not fit/);
});

t.run();
