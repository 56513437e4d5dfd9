// Native work runs off the JavaScript thread: the event loop keeps turning
// while a large matmul runs, and concurrent ops all complete correctly.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { add, matmul, randn, sum, tensor } from '../lib/index.js';

const loop = suite('async execution');

loop('timers keep firing while a large matmul runs', async () => {
  const n = 1024;
  const a = await randn([4, n, n], { seed: 1 });
  const b = await randn([4, n, n], { seed: 2 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  const started = performance.now();
  const pending = matmul(a, b);
  let settled = false;
  void pending.then(() => (settled = true));
  assert.is(settled, false, 'the op returned before computing');
  const out = await pending;
  const elapsed = performance.now() - started;
  clearInterval(timer);
  assert.equal(out.shape, [4, n, n]);
  // A blocked JavaScript thread would fire the timer zero times during the
  // await; a free one fires it throughout (allowing for a busy 2-core machine:
  // at least once per 25 ms).
  assert.ok(elapsed > 20, `matmul took only ${elapsed} ms; make it larger`);
  assert.ok(ticks >= Math.max(3, elapsed / 25), `${ticks} timer ticks in ${elapsed.toFixed(0)} ms`);
  for (const t of [a, b, out]) t.dispose();
});

loop('many concurrent ops each resolve to the right result', async () => {
  const xs = Array.from({ length: 50 }, (_, i) => tensor([i, 2 * i]));
  const results = await Promise.all(xs.map((x) => add(x, x).then((y) => sum(y))));
  const values = results.map((r) => r.dataSync()[0]);
  assert.equal(values, xs.map((_, i) => 6 * i));
});

loop('inputs disposed while an op is in flight stay valid for that op', async () => {
  const a = await randn([256, 256], { seed: 3 });
  const expected = (await sum(await matmul(a, a))).dataSync()[0];
  const pending = matmul(a, a);
  a.dispose();
  const out = await pending;
  assert.is((await sum(out)).dataSync()[0], expected);
});

loop('the process exits cleanly, also with process.exit() while ops run', () => {
  // Regression: a queue thread still inside OpenBLAS while exit() ran the
  // library's teardown deadlocked; a completion posted after teardown aborted.
  const lib = fileURLToPath(new URL('../lib/index.ts', import.meta.url));
  const script = (exitEarly: boolean) => `
    const im = await import(${JSON.stringify(lib)});
    const a = await im.randn([384, 384], { seed: 1 });
    await im.matmul(a, a);
    ${exitEarly ? 'im.matmul(a, a); im.matmul(a, a); process.exit(0);' : 'void im.matmul(a, a);'}`;
  for (let i = 0; i < 6; i++) {
    const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script(i % 2 === 0)], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.is(child.signal, null, `run ${i} was killed (${child.signal}): hang or crash at exit`);
    assert.is(child.status, 0, `run ${i}: ${child.stderr}`);
  }
});

loop.run();
