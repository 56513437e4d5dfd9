// The tuning encoder's pretraining scenes (lib/world/encoder.ts): procedural
// outlines drawn by the renderer (with holes), the mix of procedural and world
// shapes, determinism per seed and step, and bad outlines named.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { encoderScene, proceduralOutline, worldEncoderImages } from '../lib/world/encoder.js';
import { PALETTE, SeededRandom, renderScene, type Scene } from '../lib/world/index.js';

const t = suite('world-encoder-scenes');
const R = 32;
const pixel = (image: Uint8Array, x: number, y: number) => Array.from(image.subarray((y * R + x) * 3, (y * R + x) * 3 + 3));

t('an outline is drawn in place of the shape, and its hole shows the background', () => {
  const square = [[-1, -1], [1, -1], [1, 1], [-1, 1]] as const;
  const hole = [[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]] as const;
  const obj = { shape: 'circle', colour: 'red', size: 'large', position: 'center', cx: 0.5, cy: 0.5, extent: 0.75 } as const;
  const img = renderScene({ background: 'blue', objects: [{ ...obj, outline: { vertices: square, hole } }] } as Scene, R);
  assert.equal(pixel(img, 16, 16), [...PALETTE.blue], 'the hole');
  assert.equal(pixel(img, 6, 16), [...PALETTE.red], 'the ring of the square, left (u ≈ -0.8)');
  // A circle would leave the box's corner empty; the square outline fills it.
  assert.equal(pixel(img, 5, 5), [...PALETTE.red], 'the corner');
  const circle = renderScene({ background: 'blue', objects: [obj] } as Scene, R);
  assert.equal(pixel(circle, 5, 5), [...PALETTE.blue], 'the circle leaves the corner');
});

t('procedural outlines fill their box and stay inside it; some have holes', () => {
  const rng = new SeededRandom(7);
  let holes = 0;
  for (let i = 0; i < 300; i++) {
    const o = proceduralOutline(rng);
    assert.ok(o.vertices.length >= 3 && o.vertices.length <= 12);
    const us = o.vertices.map((p) => p[0]), vs = o.vertices.map((p) => p[1]);
    for (const c of [...us, ...vs]) assert.ok(c >= -1 && c <= 1);
    assert.ok(Math.abs(Math.min(...us) + 1) < 1e-9 && Math.abs(Math.max(...us) - 1) < 1e-9, 'spans u');
    assert.ok(Math.abs(Math.min(...vs) + 1) < 1e-9 && Math.abs(Math.max(...vs) - 1) < 1e-9, 'spans v');
    if (o.hole) holes++, assert.ok(o.hole.every((p) => Math.abs(p[0]) < 0.61 && Math.abs(p[1]) < 0.61), 'the hole is the outline shrunk');
  }
  // One in six: 50 expected, binomial std 6.5.
  assert.ok(holes > 25 && holes < 75, `${holes} holes in 300`);
});

t('the mix: about one scene in four is a world shape, the rest procedural, one object each', () => {
  const rng = new SeededRandom(3);
  const scenes = Array.from({ length: 400 }, () => encoderScene(rng));
  assert.ok(scenes.every((s) => s.objects.length === 1));
  const world = scenes.filter((s) => s.objects[0].outline === undefined).length;
  const patterned = scenes.filter((s) => s.objects[0].outline && s.objects[0].pattern).length;
  // 100 expected (std 8.7); patterns on 20% of the 300 procedural ones (60, std 6.9).
  assert.ok(world > 65 && world < 135, `${world} world shapes in 400`);
  assert.ok(patterned > 35 && patterned < 85, `${patterned} patterned`);
  assert.ok(scenes.every((s) => s.objects[0].colour !== s.background));
});

t('worldEncoderImages: the same batch for a seed and step, another for another seed or step', () => {
  const a = worldEncoderImages(0)(5, 4), b = worldEncoderImages(0)(5, 4);
  assert.equal(a.map((im) => [im.width, im.height, im.data.length]), Array(4).fill([R, R, R * R * 3]));
  assert.ok(a.every((im, i) => im.data.equals(b[i].data)));
  assert.not.ok(worldEncoderImages(1)(5, 4)[0].data.equals(a[0].data));
  assert.not.ok(worldEncoderImages(0)(6, 4)[0].data.equals(a[0].data));
});

t('a bad outline is named', () => {
  const obj = { shape: 'square', colour: 'red', size: 'large', position: 'center', cx: 0.5, cy: 0.5, extent: 0.5 };
  for (const outline of [{ vertices: [[0, 0], [2, 0], [0, 1]] }, { vertices: [[0, 0], [1, 0]] }, { vertices: [[0, 0], [1, 0], [0, 1]], hole: 'x' }, [[0, 0]]]) {
    assert.throws(() => renderScene({ background: 'blue', objects: [{ ...obj, outline }] } as unknown as Scene, R), /scene\.objects\[0\]\.outline must be \{ vertices, hole\? \}/);
  }
});

t.run();
