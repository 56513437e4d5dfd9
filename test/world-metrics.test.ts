// Geometric metrics of the shapes world: what analyzeImage measures on scenes
// with known answers, text alignment as an exact fraction of the caption's
// attributes, image alignment's invariances, the validation thresholds on
// ground truth (clean and noisy), and bad input.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import {
  BACKGROUNDS, COLOURS, CONCEPTS, PALETTE, POSITIONS, SHAPES, SIZES, SeededRandom,
  analyzeImage, conceptDescriptor, conceptImages, conceptPresence, descriptorSimilarity, formatValidation, imageAlignment, placeObject,
  renderScene, shapeAlignment, textAlignment, validateMetrics, withNoise, worldSample, attributeMatches,
  type Scene, type WorldObject,
} from '../lib/world/index.js';
import { assertRejects } from './helpers.js';

const t = suite('world-metrics');

const redCircle: WorldObject = { shape: 'circle', colour: 'red', size: 'large', position: 'center', cx: 0.5, cy: 0.5, extent: 0.55 };
const redCircleImage = renderScene({ background: 'gray', objects: [redCircle] }, 32);
const emptyImage = renderScene({ background: 'gray', objects: [] }, 32);

t('text alignment is the exact fraction of requested attributes the image shows', () => {
  assert.is(textAlignment(redCircleImage, 'a red circle'), 1);
  assert.is(textAlignment(redCircleImage, 'a large red circle in the center on a gray background'), 1);
  // count ✓, shape ✗, colour ✗
  assert.is(textAlignment(redCircleImage, 'a blue square'), 1 / 3);
  assert.is(textAlignment(redCircleImage, 'a red square'), 2 / 3);
  // count ✓, colour ✓, shape ✓, size ✗
  assert.is(textAlignment(redCircleImage, 'a small red circle'), 3 / 4);
  // count ✗; the circle earns colour and shape; the square earns nothing
  assert.is(textAlignment(redCircleImage, 'a red circle and a blue square'), 2 / 5);
  assert.is(textAlignment(redCircleImage, 'a red circle on the left on a white background'), 3 / 5);
  assert.is(textAlignment(redCircleImage, 'photo of a <new1> shape'), 1, 'the class word matches any object');
  assert.is(textAlignment(redCircleImage, 'photo'), 1, 'nothing measurable asked');
  assert.is(textAlignment(emptyImage, 'a red circle'), 0);
  assert.is(textAlignment(emptyImage, 'on a gray background'), 1);
});

t('text alignment matches requested to detected objects in the best order', () => {
  const scene: Scene = {
    background: 'white',
    objects: [
      { shape: 'circle', colour: 'blue', size: 'small', position: 'left', cx: 0.27, cy: 0.5, extent: 0.3 },
      { shape: 'square', colour: 'red', size: 'large', position: 'right', cx: 0.7, cy: 0.5, extent: 0.52 },
    ],
  };
  const image = renderScene(scene, 32);
  assert.is(textAlignment(image, 'a blue circle on the left and a red square on the right on a white background'), 1);
  assert.is(textAlignment(image, 'a large red square on the right and a small blue circle on the left'), 1);
  // Swapped colours: each object keeps its shape and position but loses its colour.
  assert.is(textAlignment(image, 'a red circle on the left and a blue square on the right'), 5 / 7);
  // One object asked for: the count is wrong, the rest matches the square.
  assert.is(textAlignment(image, 'a red square'), 2 / 3);
});

t('analyzeImage: background, colour, shape, size and position of every world shape at 32 and 64 pixels', () => {
  const rng = new SeededRandom(17);
  let checked = 0;
  for (const r of [32, 64]) {
    for (const shape of SHAPES) {
      for (const size of SIZES) {
        for (const position of POSITIONS) {
          for (const background of BACKGROUNDS) {
            const colours = COLOURS.filter((c) => c !== background);
            const colour = colours[checked % colours.length];
            const obj = placeObject(rng, shape, colour, size, position);
            const a = analyzeImage(renderScene({ background, objects: [obj] }, r), r);
            const what = `${size} ${colour} ${shape} ${position} on ${background} at ${r}`;
            assert.equal([...a.background], [...PALETTE[background]], what);
            assert.is(a.backgroundColour, background, what);
            assert.is(a.objects.length, 1, what);
            const d = a.objects[0];
            assert.equal([d.shape, d.colour, d.size, d.position], [shape, colour, size, position], what);
            assert.is(d.holes, 0, what);
            assert.ok(d.colourDistance < 15, `${what}: voting pixels are near the palette colour: ${d.colourDistance}`);
            assert.ok(Math.abs(d.extent - obj.extent) <= 1.5 / r, `${what}: extent ${d.extent} vs ${obj.extent}`);
            assert.ok(Math.abs(d.cx - obj.cx) <= 1 / r && Math.abs(d.cy - obj.cy) <= 1 / r, `${what}: centre`);
            checked++;
          }
        }
      }
    }
  }
  assert.is(checked, 2 * 3 * 2 * 5 * 5);
});

t('analyzeImage: a pixel-aligned square is measured exactly', () => {
  const square: WorldObject = { shape: 'square', colour: 'green', size: 'small', position: 'left', cx: 0.375, cy: 0.5, extent: 0.25 };
  const a = analyzeImage(renderScene({ background: 'black', objects: [square] }, 32), 32);
  const d = a.objects[0];
  assert.equal(d.bbox, { x0: 8, y0: 12, x1: 15, y1: 19 });
  assert.is(d.area, 64);
  assert.is(d.cx, 0.375);
  assert.is(d.cy, 0.5);
  assert.is(d.extent, 0.25);
  assert.is(d.shapeScores.square, 1);
  // The inscribed circle covers π/4 of the square; a slightly larger fitted box does a little better.
  assert.ok(d.shapeScores.circle > Math.PI / 4 - 0.01 && d.shapeScores.circle < 0.86, `circle IoU ${d.shapeScores.circle}`);
  assert.equal(d.colourHistogram.green, 1);
  assert.is(d.pixels.length, 64);
});

t('held-out concepts are not world shapes: the ring has a hole; star, cross and heart are unknown', () => {
  for (const spec of CONCEPTS) {
    for (const r of [32, 64]) {
      for (const { image, scene } of conceptImages(spec.id, { count: 5, resolution: r })) {
        const a = analyzeImage(image, r);
        assert.is(a.objects.length, 1, spec.id);
        const d = a.objects[0];
        const expected = spec.id === 'striped-square' ? 'square' : spec.id === 'checker-circle' ? 'circle' : 'unknown';
        assert.is(d.shape, expected, `${spec.id} at ${r}: ${JSON.stringify(d.shapeScores)}`);
        assert.is(d.holes, spec.id === 'ring' ? 1 : 0, spec.id);
        if (spec.pattern?.kind === 'checker') {
          // Half and half, and at small sizes many pixels blend two cells: both colours show, neither need win.
          const h = d.colourHistogram;
          assert.ok(h[spec.colour] + h[spec.pattern.colour] >= 0.4 && h[spec.colour] > 0.1 && h[spec.pattern.colour] > 0.1, JSON.stringify(h));
        } else {
          assert.is(d.colour, spec.colour, spec.id);
        }
        assert.is(d.position, scene.objects[0].position, spec.id);
        assert.is(a.backgroundColour, scene.background, spec.id);
        // The prompts a personalisation run is scored with: every word they name is true of the instance.
        const { position, size } = scene.objects[0];
        const where = { left: 'on the left', right: 'on the right', top: 'at the top', bottom: 'at the bottom', center: 'in the center' }[position];
        const prompt = `photo of a ${size} <new1> ${spec.classWord} ${where} on a ${scene.background} background`;
        assert.is(textAlignment(image, prompt, r), 1, prompt);
      }
    }
  }
});

t('image alignment: invariant to background and position, separates concepts, 0 without an object', () => {
  const star = (over: Partial<WorldObject>): Scene => ({
    background: 'gray',
    objects: [{ shape: 'star', colour: 'orange', size: 'large', position: 'center', cx: 0.5, cy: 0.5, extent: 0.55, ...over }],
  });
  const base = renderScene(star({}), 32);
  const moved = renderScene(star({ cx: 0.5 - 4 / 32, cy: 0.5 + 3 / 32 }), 32);
  assert.ok(Math.abs(descriptorSimilarity(conceptDescriptor(base), conceptDescriptor(moved)) - 1) < 1e-12, 'whole-pixel shift');
  const onWhite = renderScene({ ...star({}), background: 'white' }, 32);
  assert.ok(descriptorSimilarity(conceptDescriptor(base), conceptDescriptor(onWhite)) > 0.97, 'another background');
  const smaller = renderScene(star({ extent: 0.3, cx: 0.3, cy: 0.3 }), 32);
  assert.ok(imageAlignment(smaller, [base]) > 0.75, 'a smaller instance still matches');
  const recoloured = renderScene(star({ colour: 'blue' }), 32);
  assert.ok(imageAlignment(recoloured, [base]) < 0.3, 'another colour does not');
  for (const shape of ['cross', 'heart', 'circle', 'ring'] as const) {
    const reshaped = renderScene(star({ shape }), 32);
    assert.ok(imageAlignment(reshaped, [base]) < Math.min(0.8, imageAlignment(smaller, [base])), `an orange ${shape} scores lower`);
  }

  assert.is(conceptDescriptor(emptyImage), null);
  assert.is(imageAlignment(emptyImage, [base]), 0);
  assert.is(descriptorSimilarity(null, conceptDescriptor(base)), 0);

  // Every held-out instance is closest to its own concept's references.
  const refs = CONCEPTS.map((c) => conceptImages(c.id, { count: 5 }).map((x) => x.image));
  CONCEPTS.forEach((c, ci) => {
    for (const { image } of conceptImages(c.id, { count: 3, seed: 9 })) {
      const scores = refs.map((rs) => imageAlignment(image, rs));
      assert.is(scores.indexOf(Math.max(...scores)), ci, `${c.id}: ${scores.map((s) => s.toFixed(2))}`);
      assert.ok(scores[ci] >= 0.7, `${c.id}: own score ${scores[ci]}`);
    }
  });
});

t('attributeMatches splits text alignment by attribute under the same object matching', () => {
  const image = renderScene({ background: 'white', objects: [
    { shape: 'circle', colour: 'blue', size: 'small', position: 'left', cx: 0.22, cy: 0.5, extent: 0.3 },
    { shape: 'square', colour: 'red', size: 'large', position: 'right', cx: 0.72, cy: 0.5, extent: 0.45 },
  ] }, 32);
  const t1 = attributeMatches(image, 'a red circle on the left and a green square on the right on a gray background');
  // Best matching: circle→circle (shape, position), square→square (shape, position); colours wrong except none.
  assert.equal(t1.count, { asked: 1, shown: 1 });
  assert.equal(t1.background, { asked: 1, shown: 0 });
  assert.equal(t1.shape, { asked: 2, shown: 2 });
  assert.equal(t1.colour, { asked: 2, shown: 0 });
  assert.equal(t1.position, { asked: 2, shown: 2 });
  assert.equal(t1.size, { asked: 0, shown: 0 });
  // Tallies add up across calls; an empty image shows no object attribute.
  const empty = renderScene({ background: 'gray', objects: [] }, 32);
  attributeMatches(empty, 'a small yellow triangle', 32, t1);
  assert.equal(t1.shape, { asked: 3, shown: 2 });
  assert.equal(t1.size, { asked: 1, shown: 0 });
  assert.equal(t1.count, { asked: 2, shown: 1 });
  assert.throws(() => attributeMatches(image, 42 as unknown as string), /caption must be a string/);
});

t('validateMetrics at 32 pixels meets the targets (own captions, other captions, noise, concepts)', () => {
  const v = validateMetrics({ samples: 200, resolution: 32, seed: 1 });
  const table = formatValidation(v);
  assert.match(table, /text, own caption/);
  assert.match(table, /AUC/);
  assert.ok(v.textMatching.mean >= 0.95, table);
  assert.ok(v.textMismatched.mean <= 0.6, table);
  assert.ok(v.textMatching.mean - v.textMismatched.mean >= 0.4, table);
  assert.ok(v.textNoisy.mean >= 0.85, table);
  assert.ok(v.imageSame.mean >= 0.8, table);
  assert.ok(v.imageDifferent.mean <= 0.5, table);
  assert.ok(v.auc >= 0.95 && v.rankedCorrectly >= 0.95, table);
  assert.is(v.textMatching.count, 200);
  assert.is(v.imageSame.count, CONCEPTS.length * 5);
  assert.is(v.imageDifferent.count, CONCEPTS.length * 5 * (CONCEPTS.length - 1));
  // Shape with colour held equal (measured: same 0.789 ± 0.038, other shapes 0.434 ± 0.085, AUC 1.000;
  // the combined image score gives those other shapes 0.741: colour carries it).
  assert.ok(v.shapeAuc >= 0.95, table);
  assert.ok(v.shapeSame.mean - v.shapeDifferent.mean >= 0.25, table);
  assert.ok(v.imageDifferentSameColour.mean > v.shapeDifferent.mean, table);
  assert.is(v.shapeDifferent.count, CONCEPTS.length * 5 * (CONCEPTS.length - 1));
});

/** A shape of colour fg on gray at 32 px, 4×4 supersampled; `inside(u, v)` in the object's own frame, u and v in [-1, 1]. */
function drawn(inside: (u: number, v: number) => boolean, cx: number, cy: number, half: number, fg: readonly number[]): Uint8Array {
  const r = 32;
  const img = new Uint8Array(r * r * 3);
  const bg = PALETTE.gray;
  for (let y = 0; y < r; y++) {
    for (let x = 0; x < r; x++) {
      let cover = 0;
      for (let sy = 0; sy < 4; sy++) for (let sx = 0; sx < 4; sx++) cover += inside((x + (sx + 0.5) / 4 - cx) / half, (y + (sy + 0.5) / 4 - cy) / half) ? 1 / 16 : 0;
      for (let k = 0; k < 3; k++) img[(y * r + x) * 3 + k] = Math.round(bg[k] + cover * (fg[k] - bg[k]));
    }
  }
  return img;
}
const inBox = (u: number, v: number) => Math.abs(u) <= 1 && Math.abs(v) <= 1;
const SHAPES_BY_HAND = {
  frame: (u: number, v: number) => inBox(u, v) && Math.max(Math.abs(u), Math.abs(v)) >= 0.5,
  solid: inBox,
  cross: (u: number, v: number) => inBox(u, v) && (Math.abs(u) <= 0.34 || Math.abs(v) <= 0.34),
  diamond: (u: number, v: number) => Math.abs(u) + Math.abs(v) <= 1,
};
/** Instances at several places and sizes, as a concept's photos vary. */
const instancesOf = (inside: (u: number, v: number) => boolean, shift = 0, fg: readonly number[] = PALETTE.yellow) =>
  [[10, 10, 7], [21, 12, 6], [16, 20, 8], [11, 22, 5], [20, 19, 7]].map(([x, y, h]) => drawn(inside, x + shift, y, h, fg));

t('shape alignment sees shape, not colour: a solid square is no frame, a diamond no cross (same colour)', () => {
  const frames = instancesOf(SHAPES_BY_HAND.frame);
  const crosses = instancesOf(SHAPES_BY_HAND.cross);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const score = (f: typeof shapeAlignment, inside: (u: number, v: number) => boolean, refs: Uint8Array[]) => mean(instancesOf(inside, 1.5).map((img) => f(img, refs)));
  const frameOnFrames = score(shapeAlignment, SHAPES_BY_HAND.frame, frames);
  const solidOnFrames = score(shapeAlignment, SHAPES_BY_HAND.solid, frames);
  const crossOnCrosses = score(shapeAlignment, SHAPES_BY_HAND.cross, crosses);
  const diamondOnCrosses = score(shapeAlignment, SHAPES_BY_HAND.diamond, crosses);
  const figures = `frame ${frameOnFrames.toFixed(3)} solid ${solidOnFrames.toFixed(3)}; cross ${crossOnCrosses.toFixed(3)} diamond ${diamondOnCrosses.toFixed(3)}`;
  assert.ok(frameOnFrames - solidOnFrames >= 0.2, figures);
  assert.ok(crossOnCrosses - diamondOnCrosses >= 0.2, figures);
  // The combined image score, whose colour half is equal here, separates them less.
  const imageGap = score(imageAlignment, SHAPES_BY_HAND.frame, frames) - score(imageAlignment, SHAPES_BY_HAND.solid, frames);
  assert.ok(imageGap < frameOnFrames - solidOnFrames, `image alignment gap ${imageGap.toFixed(3)}; ${figures}`);
  // Colour-invariant: the same frames in another colour score as the yellow ones.
  const red = score(shapeAlignment, SHAPES_BY_HAND.frame, instancesOf(SHAPES_BY_HAND.frame, 0, PALETTE.red));
  assert.ok(Math.abs(red - frameOnFrames) < 0.05, `red frames on red references ${red.toFixed(3)}, yellow ${frameOnFrames.toFixed(3)}`);
  const redOnYellow = mean(instancesOf(SHAPES_BY_HAND.frame, 1.5, PALETTE.red).map((img) => shapeAlignment(img, frames)));
  assert.ok(Math.abs(redOnYellow - frameOnFrames) < 0.05, `red frames on yellow references ${redOnYellow.toFixed(3)}, yellow ${frameOnFrames.toFixed(3)}`);
});

t('validateMetrics at 64 pixels and with stronger noise', () => {
  const big = validateMetrics({ samples: 40, resolution: 64, seed: 2, instances: 3 });
  const table = formatValidation(big);
  assert.ok(big.textMatching.mean >= 0.95 && big.textMismatched.mean <= 0.6 && big.textNoisy.mean >= 0.85, table);
  assert.ok(big.imageSame.mean >= 0.8 && big.imageDifferent.mean <= 0.5 && big.auc >= 0.95, table);
  const noisy = validateMetrics({ samples: 60, resolution: 32, seed: 3, noise: 20, instances: 1 });
  assert.ok(noisy.textNoisy.mean >= 0.85, formatValidation(noisy));
});

t('withNoise is deterministic, bounded and of the requested strength', () => {
  const { image } = worldSample(4, 0);
  const a = withNoise(image, 12, 5);
  assert.equal(a, withNoise(image, 12, 5));
  assert.not.equal(a, withNoise(image, 12, 6));
  assert.equal(withNoise(image, 0, 5), image);
  const flat = renderScene({ background: 'gray', objects: [] }, 64);
  const noisy = withNoise(flat, 12, 1);
  const rms = Math.sqrt(noisy.reduce((s, v, i) => s + (v - flat[i]) ** 2, 0) / flat.length);
  assert.ok(Math.abs(rms - 12) < 0.5, `rms ${rms}`);
  assert.is(textAlignment(noisy, 'on a gray background', 64), 1);
  assert.is(analyzeImage(noisy, 64).objects.length, 0, 'noise alone is no object');
});

/** A [1 2 1]² blur (edges clipped), as a soft generator might draw: the test's own reference filter. */
function blur(image: Uint8Array, r: number): Uint8Array {
  const out = new Uint8Array(image.length);
  for (let y = 0; y < r; y++) {
    for (let x = 0; x < r; x++) {
      for (let k = 0; k < 3; k++) {
        let sum = 0;
        let weight = 0;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            if (x + dx < 0 || y + dy < 0 || x + dx >= r || y + dy >= r) continue;
            const w = (2 - Math.abs(dx)) * (2 - Math.abs(dy));
            sum += w * image[((y + dy) * r + x + dx) * 3 + k];
            weight += w;
          }
        }
        out[(y * r + x) * 3 + k] = Math.round(sum / weight);
      }
    }
  }
  return out;
}

t('blurred ground truth still matches its captions', () => {
  for (const [r, target] of [[32, 0.95], [64, 0.98]] as const) {
    let sum = 0;
    const n = 60;
    for (let i = 0; i < n; i++) {
      const { image, caption } = worldSample(6, i, r);
      sum += textAlignment(blur(image, r), caption, r);
    }
    assert.ok(sum / n >= target, `mean text alignment of blurred images at ${r}: ${sum / n}`);
  }
});

t('hostile images (random bytes, stripes, one colour): finite measurements and scores in [0, 1]', () => {
  const rng = new SeededRandom(5);
  const r = 32;
  const images = [
    Uint8Array.from({ length: r * r * 3 }, () => rng.int(0, 255)),
    Uint8Array.from({ length: r * r * 3 }, (_, k) => (Math.floor(k / 3) % 2) * 255),
    Uint8Array.from({ length: r * r * 3 }, (_, k) => ((k % 3) * 90 + (Math.floor(k / 96) % 7) * 30) % 256),
    new Uint8Array(r * r * 3).fill(255),
  ];
  const star = conceptImages('star', { count: 2 }).map((x) => x.image);
  for (const image of images) {
    for (const o of analyzeImage(image, r).objects) {
      assert.ok([o.cx, o.cy, o.extent, o.colourDistance, ...Object.values(o.shapeScores)].every(Number.isFinite), JSON.stringify(o.shapeScores));
    }
    const text = textAlignment(image, 'a small red circle on the left and a square on a blue background', r);
    const concept = imageAlignment(image, star, r);
    assert.ok(text >= 0 && text <= 1 && concept >= 0 && concept <= 1, `${text} ${concept}`);
  }
});

t('bad input: ImprintError naming the argument', async () => {
  await assertRejects(() => analyzeImage(new Uint8Array(10), 32), 'INVALID_ARGUMENT', /analyzeImage: image has 10 bytes, expected 32·32·3 = 3072/);
  await assertRejects(() => analyzeImage(redCircleImage, 64), 'INVALID_ARGUMENT', /expected 64·64·3 = 12288 for resolution 64/);
  await assertRejects(() => analyzeImage(Array.from(redCircleImage) as unknown as Uint8Array), 'INVALID_ARGUMENT', /must be a Uint8Array/, /an array/);
  await assertRejects(() => analyzeImage(new Float32Array(3072) as unknown as Uint8Array), 'INVALID_ARGUMENT', /Uint8Array.*a Float32Array/);
  await assertRejects(() => analyzeImage(redCircleImage, 0), 'INVALID_ARGUMENT', /resolution must be an integer/);
  await assertRejects(() => textAlignment(redCircleImage, undefined as unknown as string), 'INVALID_ARGUMENT', /textAlignment: caption must be a string/);
  await assertRejects(() => textAlignment(new Uint8Array(3), 'a red circle'), 'INVALID_ARGUMENT', /textAlignment: image has 3 bytes/);
  await assertRejects(() => textAlignment(redCircleImage, 'a circle and '.repeat(7)), 'INVALID_ARGUMENT', /asks for 7 objects, at most 6/);
  await assertRejects(() => imageAlignment(redCircleImage, []), 'INVALID_ARGUMENT', /references must be a non-empty array/);
  await assertRejects(() => imageAlignment(redCircleImage, redCircleImage as unknown as Uint8Array[]), 'INVALID_ARGUMENT', /references must be/);
  await assertRejects(() => imageAlignment(redCircleImage, [redCircleImage, new Uint8Array(5)]), 'INVALID_ARGUMENT', /references\[1\] has 5 bytes/);
  await assertRejects(() => shapeAlignment(redCircleImage, []), 'INVALID_ARGUMENT', /shapeAlignment: references must be a non-empty array/);
  await assertRejects(() => shapeAlignment(redCircleImage, [new Uint8Array(5)]), 'INVALID_ARGUMENT', /shapeAlignment: references\[0\] has 5 bytes/);
  await assertRejects(() => conceptDescriptor(null as unknown as Uint8Array), 'INVALID_ARGUMENT', /conceptDescriptor: image must be a Uint8Array/);
  await assertRejects(() => validateMetrics({ samples: 1.5 }), 'INVALID_ARGUMENT', /validateMetrics: samples must be an integer/);
  await assertRejects(() => validateMetrics({ seed: -1 }), 'INVALID_ARGUMENT', /seed must be an integer/);
  await assertRejects(() => validateMetrics({ noise: Infinity }), 'INVALID_ARGUMENT', /noise must be a finite number/);
  await assertRejects(() => validateMetrics({ noise: -2 }), 'INVALID_ARGUMENT', /noise must be in \[0, 255\]/);
  await assertRejects(() => validateMetrics({ resolution: 4 }), 'INVALID_ARGUMENT', /resolution/);
  await assertRejects(() => validateMetrics({ sample: 3 } as never), 'INVALID_ARGUMENT', /unknown option 'sample'/);
  await assertRejects(() => withNoise(redCircleImage, NaN), 'INVALID_ARGUMENT', /withNoise: sigma/);
  await assertRejects(() => withNoise(redCircleImage, 1, 0.5), 'INVALID_ARGUMENT', /seed/);
});

t('conceptPresence finds each of two concepts in one image, and not a third', () => {
  const pick = (id: string, position: string) =>
    conceptImages(id, { count: 5, resolution: 32, seed: 0 }).map((c) => c.scene.objects[0]).find((o) => o.position === position && o.size === 'small');
  const star = pick('star', 'left');
  const ring = pick('ring', 'right');
  assert.ok(star && ring, 'instances on the left and on the right exist');
  const image = renderScene({ background: 'gray', objects: [star!, ring!] }, 32);
  const refs = (id: string) => conceptImages(id, { count: 5, resolution: 32, seed: 1 }).map((c) => c.image);
  const [s, r, h] = conceptPresence(image, [refs('star'), refs('ring'), refs('heart')], 32);
  assert.ok(s > 0.6 && r > 0.6, `star ${s.toFixed(3)}, ring ${r.toFixed(3)}`);
  assert.ok(h < 0.35, `heart ${h.toFixed(3)}`);
  assert.equal(conceptPresence(emptyImage, [refs('star')], 32), [0]);
  assert.throws(() => conceptPresence(image, [], 32), /conceptReferences must be a non-empty array/);
  assert.throws(() => conceptPresence(image, [[]], 32), /conceptReferences\[0\] must be a non-empty array/);
});

t.run();
