// The shapes world: the seeded generator, scene sampling, captions (every word
// true of its scene, every word one CLIP token), rendering against closed-form
// pixel facts, the caption parser, held-out concepts, and bad input.
import { join } from 'node:path';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import {
  BACKGROUNDS, COLOURS, CONCEPT_SHAPES, CONCEPTS, PALETTE, PALETTE_NAMES, POSITIONS, SHAPES, SIZES, SeededRandom,
  captionOf, conceptImages, layoutSample, parseCaption, renderScene, sampleScene, worldSample,
  type Scene, type WorldObject,
} from '../lib/world/index.js';
import { textAlignment } from '../lib/world/metrics.js';
import { conceptCaptions, mirroredInstances } from '../lib/world/teach.js';
import { assertRejects } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const t = suite('world-scene');

const pixel = (image: Uint8Array, r: number, x: number, y: number) => Array.from(image.subarray((y * r + x) * 3, (y * r + x) * 3 + 3));

t('SeededRandom: same seed, same stream; forks depend on the label only, not on draws', () => {
  const a = new SeededRandom(42);
  const b = new SeededRandom(42);
  const xs = Array.from({ length: 50 }, () => a.next());
  assert.equal(xs, Array.from({ length: 50 }, () => b.next()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.not.equal(xs, Array.from({ length: 50 }, () => new SeededRandom(43).next()));
  // Seeds beyond 2^32 differ from their low 32 bits.
  assert.is.not(new SeededRandom(2 ** 32 + 5).next(), new SeededRandom(5).next());
  const fresh = new SeededRandom(42).fork('x').next();
  assert.is(a.fork('x').next(), fresh, 'fork ignores how far the parent was drawn');
  assert.is.not(new SeededRandom(42).fork('y').next(), fresh);
  assert.is.not(new SeededRandom(42).fork(1).next(), new SeededRandom(42).fork('1').next());
});

t('SeededRandom: int covers both ends uniformly, pick and normal behave', () => {
  const rng = new SeededRandom(7);
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 8000; i++) counts[rng.int(2, 5) - 2]++;
  for (const c of counts) assert.ok(c > 1800 && c < 2200, `int(2, 5) counts ${counts}`);
  const seen = new Set(Array.from({ length: 200 }, () => rng.pick(['a', 'b', 'c'])));
  assert.equal([...seen].sort(), ['a', 'b', 'c']);
  const zs = Array.from({ length: 20000 }, () => rng.normal());
  const mean = zs.reduce((s, z) => s + z, 0) / zs.length;
  const variance = zs.reduce((s, z) => s + (z - mean) ** 2, 0) / zs.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.05, `normal mean ${mean} variance ${variance}`);
});

t('worldSample is deterministic per (seed, index) and independent of other indices', () => {
  const a = worldSample(7, 3);
  const b = worldSample(7, 3);
  assert.equal(a.image, b.image);
  assert.is(a.caption, b.caption);
  assert.equal(a.scene, b.scene);
  assert.is(a.image.length, 32 * 32 * 3);
  const c = worldSample(7, 4);
  const d = worldSample(8, 3);
  assert.ok(c.caption !== a.caption || !Buffer.from(c.image).equals(Buffer.from(a.image)), 'index 4 differs from index 3');
  assert.ok(d.caption !== a.caption || !Buffer.from(d.image).equals(Buffer.from(a.image)), 'seed 8 differs from seed 7');
  const big = worldSample(7, 3, 64);
  assert.equal(big.scene, a.scene, 'the resolution changes the pixels, not the scene');
  assert.is(big.image.length, 64 * 64 * 3);
});

t('the vocabulary: every caption word is one CLIP token; palette colours are far apart', async () => {
  const tok = await ClipTokenizer.fromBpeGz(join(REFERENCE, 'clip/bpe_simple_vocab_16e6.txt.gz'));
  const words = new Set<string>();
  for (let i = 0; i < 500; i++) for (const w of worldSample(3, i).caption.split(' ')) words.add(w);
  for (const w of [...SHAPES, ...COLOURS, ...BACKGROUNDS, ...SIZES, ...POSITIONS, 'shape', 'background']) words.add(w);
  for (const w of words) assert.is(tok.encode(w).length, 3, `'${w}' is one token between start and end`);
  for (const a of PALETTE_NAMES) {
    for (const b of PALETTE_NAMES) {
      if (a === b) continue;
      const d = Math.hypot(...PALETTE[a].map((v, k) => v - PALETTE[b][k]));
      assert.ok(d >= 90, `${a} and ${b} are ${d.toFixed(1)} apart`);
    }
  }
});

/** The requested attributes of the caption must all be true of the scene's objects, in caption order. */
function assertCaptionTrue(caption: string, scene: Scene): void {
  const parsed = parseCaption(caption);
  assert.is(parsed.objects.length, scene.objects.length, `object count of '${caption}'`);
  parsed.objects.forEach((req, i) => {
    const obj = scene.objects[i];
    if (req.shape !== undefined) assert.is(req.shape, obj.shape, caption);
    if (req.colour !== undefined) assert.is(req.colour, obj.colour, caption);
    if (req.size !== undefined) assert.is(req.size, obj.size, caption);
    if (req.position !== undefined) assert.is(req.position, obj.position, caption);
  });
  if (parsed.background !== undefined) assert.is(parsed.background, scene.background, caption);
}

t('every caption word is true of its scene, and the grammar uses every word and omission', () => {
  const vocabulary = new Set<string>([
    ...SHAPES, ...COLOURS, ...BACKGROUNDS, ...SIZES, ...POSITIONS, 'shape', 'background', 'a', 'an', 'and', 'on', 'the', 'at', 'in',
  ]);
  const used = new Set<string>();
  let withoutPosition = 0;
  let withoutSize = 0;
  let withBackground = 0;
  const n = 2000;
  for (let i = 0; i < n; i++) {
    const { caption, scene } = worldSample(11, i);
    assertCaptionTrue(caption, scene);
    for (const w of caption.split(' ')) {
      assert.ok(vocabulary.has(w), `unexpected word '${w}' in '${caption}'`);
      used.add(w);
    }
    const parsed = parseCaption(caption);
    if (parsed.objects.some((o) => o.position === undefined)) withoutPosition++;
    if (parsed.objects.some((o) => o.size === undefined)) withoutSize++;
    if (parsed.background !== undefined) withBackground++;
    assert.ok(!/\ba [aeiou]|\ban [^aeiou]/.test(caption), `article in '${caption}'`);
  }
  assert.equal([...vocabulary].filter((w) => !used.has(w)), [], 'every word appears');
  assert.ok(withoutPosition > n * 0.2 && withoutSize > n * 0.3 && withBackground > n * 0.35 && withBackground < n * 0.65);
});

t('layoutSample: one object, every attribute named and true; deterministic per (seed, index); all positions occur', () => {
  const positions = new Set<string>();
  for (let i = 0; i < 300; i++) {
    const { caption, scene, image } = layoutSample(5, i);
    assert.is(scene.objects.length, 1);
    assertCaptionTrue(caption, scene);
    const o = scene.objects[0];
    assert.equal(parseCaption(caption), { objects: [{ size: o.size, colour: o.colour, shape: o.shape, position: o.position }], background: scene.background }, caption);
    assert.equal(image, renderScene(scene, 32));
    positions.add(o.position);
  }
  assert.equal([...positions].sort(), [...POSITIONS].sort());
  assert.equal(layoutSample(5, 7), layoutSample(5, 7));
  assert.not.equal(layoutSample(5, 7).caption + layoutSample(5, 8).caption + layoutSample(6, 7).caption, layoutSample(5, 7).caption.repeat(3), 'other indices and seeds give other samples');
  assert.throws(() => layoutSample(-1, 0), /layoutSample: seed must be a non-negative integer, got number -1/);
});

t('the sampler never draws a held-out concept; scenes keep their invariants (10,000 scenes)', () => {
  const rng = new SeededRandom(2024);
  let single = 0;
  for (let i = 0; i < 10_000; i++) {
    const scene = sampleScene(rng.fork(i));
    assert.ok((BACKGROUNDS as readonly string[]).includes(scene.background));
    if (scene.objects.length === 1) single++;
    else assert.is(scene.objects.length, 2);
    for (const obj of scene.objects) {
      assert.ok((SHAPES as readonly string[]).includes(obj.shape), `shape ${obj.shape}`);
      assert.ok(!(CONCEPT_SHAPES as readonly string[]).includes(obj.shape));
      assert.is(obj.pattern, undefined);
      assert.is(obj.concept, undefined);
      assert.is.not(obj.colour, scene.background);
      // Kept inside the image.
      assert.ok(obj.cx - obj.extent / 2 > 0 && obj.cx + obj.extent / 2 < 1 && obj.cy - obj.extent / 2 > 0 && obj.cy + obj.extent / 2 < 1);
    }
    if (scene.objects.length === 2) {
      const [a, b] = scene.objects;
      const pair = [a.position, b.position].sort().join('/');
      assert.ok(pair === 'left/right' || pair === 'bottom/top', pair);
      const gap = Math.max(Math.abs(a.cx - b.cx), Math.abs(a.cy - b.cy)) - (a.extent + b.extent) / 2;
      assert.ok(gap > 0.04, `objects overlap: gap ${gap}`);
    }
  }
  assert.ok(single > 5700 && single < 6300, `one object in ${single} of 10,000 scenes`);
  const two = sampleScene(new SeededRandom(1), { objectCount: 2 });
  assert.is(two.objects.length, 2);
});

const redSquare = (over: Partial<WorldObject> = {}): WorldObject => ({
  shape: 'square', colour: 'red', size: 'small', position: 'left', cx: 0.375, cy: 0.5, extent: 0.25, ...over,
});

t('renderScene: a pixel-aligned square is exact; backgrounds are the palette colour', () => {
  // At 32 px the square spans x, y ∈ [8, 16) exactly: no partial pixels.
  const image = renderScene({ background: 'gray', objects: [redSquare()] }, 32);
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      const inside = x >= 8 && x < 16 && y >= 12 && y < 20;
      assert.equal(pixel(image, 32, x, y), inside ? [...PALETTE.red] : [...PALETTE.gray], `pixel ${x},${y}`);
    }
  }
  // At 64 px: [16, 32) — twice the pixels per side.
  const big = renderScene({ background: 'white', objects: [redSquare()] }, 64);
  let red = 0;
  for (let p = 0; p < 64 * 64; p++) if (big[p * 3] === PALETTE.red[0] && big[p * 3 + 1] === PALETTE.red[1]) red++;
  assert.is(red, 16 * 16);
});

t('renderScene: anti-aliased edges blend by coverage; a circle covers about π/4 of its box', () => {
  const obj = redSquare({ cx: (8.5 + 16) / 2 / 32, extent: 7.5 / 32 }); // spans [8.5, 16) in pixels
  const img = renderScene({ background: 'black', objects: [obj] }, 32);
  const edge = pixel(img, 32, 8, 16);
  assert.equal(edge, [0, 1, 2].map((k) => Math.round((PALETTE.red[k] + PALETTE.black[k]) / 2)), 'half-covered pixel');
  assert.equal(pixel(img, 32, 9, 16), [...PALETTE.red]);

  const circle = renderScene({ background: 'black', objects: [{ ...redSquare(), shape: 'circle', cx: 0.5, cy: 0.5, extent: 0.5 }] }, 64);
  let covered = 0;
  for (let p = 0; p < 64 * 64; p++) covered += (circle[p * 3] - PALETTE.black[0]) / (PALETTE.red[0] - PALETTE.black[0]);
  const expected = Math.PI * 16 * 16;
  assert.ok(Math.abs(covered - expected) < 8, `circle area ${covered} vs π·16² = ${expected}`);
});

t('renderScene: objects show their colour at their centre, and sit where their position word says', () => {
  const rng = new SeededRandom(5);
  for (let i = 0; i < 300; i++) {
    const scene = sampleScene(rng.fork(i));
    const r = i % 2 === 0 ? 32 : 64;
    const image = renderScene(scene, r);
    assert.equal(pixel(image, r, 0, 0), [...PALETTE[scene.background]], 'corner is background');
    for (const obj of scene.objects) {
      const x = Math.floor(obj.cx * r);
      const y = Math.floor(obj.cy * r);
      assert.equal(pixel(image, r, x, y), [...PALETTE[obj.colour]], `${obj.shape} centre`);
      const dx = obj.cx - 0.5;
      const dy = obj.cy - 0.5;
      const where = { left: -dx, right: dx, top: -dy, bottom: dy, center: 0.1 - Math.max(Math.abs(dx), Math.abs(dy)) }[obj.position];
      assert.ok(where > 0.12 || (obj.position === 'center' && where > 0), `${obj.position} at ${obj.cx}, ${obj.cy}`);
    }
  }
});

t('renderScene: a triangle points up (narrow top rows, wide bottom rows)', () => {
  const tri: WorldObject = { ...redSquare(), shape: 'triangle', cx: 0.5, cy: 0.5, extent: 0.5 };
  const image = renderScene({ background: 'white', objects: [tri] }, 64);
  const width = (y: number) => Array.from({ length: 64 }, (_, x) => pixel(image, 64, x, y)).filter((c) => c[2] < 128).length;
  // Rows 16..47; a row at height fraction f is about f·32 wide.
  assert.ok(width(18) <= 4 && Math.abs(width(32) - 16) <= 2 && Math.abs(width(46) - 30) <= 2, `${width(18)} ${width(32)} ${width(46)}`);
});

t('parseCaption: what a caption asks for; unknown words and concept tokens are ignored', () => {
  assert.equal(parseCaption('a small red circle on the left on a blue background'), {
    objects: [{ size: 'small', colour: 'red', shape: 'circle', position: 'left' }], background: 'blue',
  });
  assert.equal(parseCaption('a blue circle on the left and a red square on the right on a white background'), {
    objects: [{ colour: 'blue', shape: 'circle', position: 'left' }, { colour: 'red', shape: 'square', position: 'right' }],
    background: 'white',
  });
  assert.equal(parseCaption('a red shape at the top'), { objects: [{ colour: 'red', position: 'top' }] });
  assert.equal(parseCaption('photo of a <new1> shape'), { objects: [{}] });
  assert.equal(parseCaption('A <new1> CIRCLE in the middle on a grey background'), {
    objects: [{ shape: 'circle', position: 'center' }], background: 'gray',
  });
  assert.equal(parseCaption('a yellow triangle'), { objects: [{ colour: 'yellow', shape: 'triangle' }] });
  assert.equal(parseCaption('a large green'), { objects: [{ size: 'large', colour: 'green' }] }, 'adjectives without a noun');
  assert.equal(parseCaption(''), { objects: [] });
  assert.equal(parseCaption('photo of <new1>'), { objects: [] });
});

t('held-out concepts: same identity across instances, varied layout, never a concept colour as background', () => {
  assert.ok(CONCEPTS.length >= 6);
  assert.is(new Set(CONCEPTS.map((c) => c.id)).size, CONCEPTS.length);
  for (const spec of CONCEPTS) {
    const images = conceptImages(spec.id);
    assert.is(images.length, 5);
    assert.equal(conceptImages(spec.id).map((x) => x.image), images.map((x) => x.image), 'deterministic');
    const other = conceptImages(spec.id, { seed: 1 });
    assert.ok(other.some((x, i) => !Buffer.from(x.image).equals(Buffer.from(images[i].image))), 'another seed, other instances');
    for (const { scene, image } of images) {
      assert.is(scene.objects.length, 1);
      const obj = scene.objects[0];
      assert.is(obj.concept, spec.id);
      assert.is(obj.shape, spec.shape);
      assert.is(obj.colour, spec.colour);
      assert.equal(obj.pattern, spec.pattern);
      assert.ok(scene.background !== spec.colour && scene.background !== spec.pattern?.colour);
      assert.equal(pixel(image, 32, 0, 0), [...PALETTE[scene.background]]);
    }
    assert.ok(new Set(images.map((x) => x.scene.objects[0].position)).size === 5, 'five positions');
    assert.is(new Set(images.map((x) => x.scene.objects[0].size)).size, 2, 'both sizes');
    assert.ok(new Set(images.map((x) => x.scene.background)).size >= 3, 'several backgrounds');
    const big = conceptImages(spec.id, { count: 2, resolution: 64 });
    assert.is(big[0].image.length, 64 * 64 * 3);
  }
  // A concept's pattern colour shows up inside it: stripes are white, the checker black.
  const striped = conceptImages('striped-square', { count: 1, resolution: 64 })[0];
  const o = striped.scene.objects[0];
  const top = o.cy - o.extent / 2;
  const band = (k: number) => pixel(striped.image, 64, Math.floor(o.cx * 64), Math.floor((top + (k + 0.5) * o.extent / 5) * 64));
  assert.equal([band(0), band(1), band(2), band(3), band(4)], [PALETTE.blue, PALETTE.white, PALETTE.blue, PALETTE.white, PALETTE.blue].map((c) => [...c]));
});

t('training captions of the held-out concepts: true of their images by the geometric metric; mirrors are flipped pixels with left and right swapped', async () => {
  for (const spec of CONCEPTS) {
    const { images, prompts } = await mirroredInstances(spec.id, '<new3>');
    assert.is(images.length, 10);
    assert.equal(prompts.slice(0, 5), conceptCaptions(spec.id, '<new3>'));
    const raw = await Promise.all(images.map(async (png) => new Uint8Array(await sharp(png).raw().toBuffer())));
    for (let i = 0; i < 10; i++) {
      assert.ok(prompts[i].startsWith(`a <new3> ${spec.classWord} `), prompts[i]);
      // Position and background named, each true: the metric scores every attribute it asks for.
      assert.ok(/ (on the left|on the right|at the top|at the bottom|in the center) on an? [a-z]+ background$/.test(prompts[i]), prompts[i]);
      assert.is(textAlignment(raw[i], prompts[i]), 1, `${spec.id} ${i}: '${prompts[i]}'`);
    }
    for (let i = 0; i < 5; i++) {
      for (let y = 0; y < 32; y++) for (let x = 0; x < 32; x++) assert.equal(pixel(raw[5 + i], 32, x, y), pixel(raw[i], 32, 31 - x, y));
      const swapped = prompts[i].includes('on the left') ? prompts[i].replace('on the left', 'on the right') : prompts[i].replace('on the right', 'on the left');
      assert.is(prompts[5 + i], swapped);
    }
    // Each concept's five instances cover all five positions, so the mirrors name both sides too.
    assert.ok(prompts.some((p) => p.includes('on the left')) && prompts.some((p) => p.includes('on the right')));
    // The metric is not fooled: purple is never a background.
    assert.ok(textAlignment(raw[0], prompts[0].replace(/on an? [a-z]+ background$/, 'on a purple background')) < 1, 'a false background is caught');
  }
});

t('bad input: ImprintError naming the argument', async () => {
  await assertRejects(() => worldSample(1.5, 0), 'INVALID_ARGUMENT', /worldSample: seed must be a non-negative integer, got number 1.5/);
  await assertRejects(() => worldSample(-1, 0), 'INVALID_ARGUMENT', /seed/);
  await assertRejects(() => worldSample('1' as unknown as number, 0), 'INVALID_ARGUMENT', /seed.*'1'/);
  await assertRejects(() => worldSample(1, NaN), 'INVALID_ARGUMENT', /index/);
  await assertRejects(() => worldSample(1, 0, 7), 'INVALID_ARGUMENT', /resolution must be an integer in \[8, 1024\]/);
  await assertRejects(() => worldSample(1, 0, 32.5), 'INVALID_ARGUMENT', /resolution/);
  await assertRejects(() => worldSample(1, 0, 1e6), 'INVALID_ARGUMENT', /resolution/);
  await assertRejects(() => new SeededRandom(-3), 'INVALID_ARGUMENT', /SeededRandom: seed/);
  await assertRejects(() => new SeededRandom(1).fork({} as unknown as string), 'INVALID_ARGUMENT', /fork: label/);
  await assertRejects(() => new SeededRandom(1).int(3, 1), 'INVALID_ARGUMENT', /int/);
  await assertRejects(() => new SeededRandom(1).pick([]), 'INVALID_ARGUMENT', /non-empty/);
  await assertRejects(() => sampleScene({} as SeededRandom), 'INVALID_ARGUMENT', /sampleScene: rng must be a SeededRandom/);
  await assertRejects(() => sampleScene(new SeededRandom(1), { objectCount: 3 as 2 }), 'INVALID_ARGUMENT', /objectCount must be 1 or 2/);
  await assertRejects(() => sampleScene(new SeededRandom(1), { count: 1 } as never), 'INVALID_ARGUMENT', /unknown option 'count'/);
  await assertRejects(() => captionOf(null as unknown as Scene, new SeededRandom(1)), 'INVALID_ARGUMENT', /captionOf: scene must be an object/);
  const good: Scene = { background: 'gray', objects: [redSquare()] };
  const bad = (patch: Record<string, unknown>) => ({ ...good, objects: [{ ...redSquare(), ...patch }] }) as unknown as Scene;
  await assertRejects(() => renderScene(bad({ shape: 'hexagon' })), 'INVALID_ARGUMENT', /objects\[0\]\.shape must be one of/, /'hexagon'/);
  await assertRejects(() => renderScene(bad({ colour: 'gray' })), 'INVALID_ARGUMENT', /objects\[0\]\.colour/);
  await assertRejects(() => renderScene(bad({ cx: NaN })), 'INVALID_ARGUMENT', /objects\[0\]\.cx must be a number in \[0, 1\]/);
  await assertRejects(() => renderScene(bad({ extent: 0 })), 'INVALID_ARGUMENT', /extent/);
  await assertRejects(() => renderScene(bad({ pattern: { kind: 'dots', colour: 'red' } })), 'INVALID_ARGUMENT', /pattern/);
  await assertRejects(() => renderScene({ ...good, background: 'red' } as unknown as Scene), 'INVALID_ARGUMENT', /background must be one of/);
  await assertRejects(() => renderScene({ background: 'gray', objects: new Array(1000).fill(redSquare()) }), 'INVALID_ARGUMENT', /at most 16/);
  await assertRejects(() => renderScene({ background: 'gray' } as unknown as Scene), 'INVALID_ARGUMENT', /scene\.objects must be an array/);
  await assertRejects(() => renderScene(good, 0), 'INVALID_ARGUMENT', /renderScene: resolution/);
  await assertRejects(() => parseCaption(42 as unknown as string), 'INVALID_ARGUMENT', /parseCaption: caption must be a string, got number 42/);
  await assertRejects(() => parseCaption('a '.repeat(100_000)), 'INVALID_ARGUMENT', /more than 10000/);
  await assertRejects(() => conceptImages('unicorn'), 'INVALID_ARGUMENT', /conceptImages: unknown concept id 'unicorn' \(expected one of: star/);
  await assertRejects(() => conceptImages(7 as unknown as string), 'INVALID_ARGUMENT', /concept id must be a string/);
  await assertRejects(() => conceptImages('star', { count: 0 }), 'INVALID_ARGUMENT', /count must be an integer in \[1, 1000\]/);
  await assertRejects(() => conceptImages('star', { seed: 0.5 }), 'INVALID_ARGUMENT', /seed must be a non-negative integer/);
  await assertRejects(() => conceptImages('star', { resolution: 33.3 }), 'INVALID_ARGUMENT', /resolution/);
  await assertRejects(() => conceptImages('star', { size: 3 } as never), 'INVALID_ARGUMENT', /unknown option 'size'/);
});

t.run();
