// Custom Diffusion's augmentation: plans for chosen random draws (scale,
// offsets, prompt prefix, flip) against the rule by hand, the pasted or
// cropped pixels and the loss mask exactly, and the draw frequencies of the
// real generator.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { augmentImage, augmentMask, composeAugmented, LARGE_PREFIXES, planAugmentation, SMALL_PREFIXES, type AugmentSettings } from '../lib/methods/custom-diffusion/augment.js';
import { SeededRandom } from '../lib/train/random.js';

const t = suite('cd-train.augment');

// A generator that answers with scripted draws and records the ranges asked for.
function scripted(chances: boolean[], ints: number[], picks: number[]) {
  const calls: string[] = [];
  const rng = {
    chance: (p: number) => (calls.push(`chance ${p}`), chances.shift()!),
    int: (lo: number, hi: number) => {
      calls.push(`int ${lo} ${hi}`);
      const v = ints.shift()!;
      assert.ok(v >= lo && v <= hi, `scripted ${v} within [${lo}, ${hi}]`);
      return v;
    },
    pick: <T>(xs: readonly T[]) => (calls.push(`pick ${xs.join('|')}`), xs[picks.shift()!]),
  };
  return { rng: rng as unknown as SeededRandom, calls };
}

const S: AugmentSettings = { resolution: 16, factor: 2, augment: true, hflip: true };
const maskRows = (m: Float32Array, side: number): string[] => Array.from({ length: side }, (_, r) => Array.from(m.subarray(r * side, (r + 1) * side)).join(''));

t('a small scale: pasted on black at (top, left), "very small" prompt, mask = the box shrunk by one latent pixel', () => {
  const { rng, calls } = scripted([true, true], [8, 3, 5], [1]);
  const plan = planAugmentation(rng, S);
  assert.equal(plan, { flip: true, scale: 8, kind: 'paste', top: 3, left: 5, prefix: 'very small ' });
  assert.equal(calls, ['chance 0.5', 'chance 0.66', 'int 5 16', 'int 0 8', 'int 0 8', `pick ${SMALL_PREFIXES.join('|')}`]);
  // Box rows 3..10, cols 5..12 → latent rows 1..5, cols 2..6 → shrunk: rows 2..3 (floor(3/2)+1 .. floor(11/2)-1), cols 3..4.
  const mask = augmentMask(plan, S);
  const want = Array.from({ length: 8 }, (_, r) => Array.from({ length: 8 }, (_, c) => (r >= 2 && r < 4 && c >= 3 && c < 5 ? 1 : 0)).join(''));
  assert.equal(maskRows(mask, 8), want);
  const scaled = Uint8Array.from({ length: 8 * 8 * 3 }, (_, i) => (i * 7) % 256);
  const out = composeAugmented(scaled, plan, 16);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    const inside = y >= 3 && y < 11 && x >= 5 && x < 13;
    const want1 = inside ? scaled[((y - 3) * 8 + (x - 5)) * 3 + c] / 127.5 - 1 : -1;
    assert.is(out[c * 256 + y * 16 + x], Math.fround(want1), `c${c} y${y} x${x}`);
  }
});

t('a large scale: the res×res window at (top, left), "zoomed in" prompt, mask all ones', () => {
  const { rng, calls } = scripted([false, false], [20, 4, 1], [0]);
  const plan = planAugmentation(rng, S);
  assert.equal(plan, { flip: false, scale: 20, kind: 'crop', top: 4, left: 1, prefix: 'zoomed in ' });
  // [1.2, 1.4)·16 → 19 … 21 (floor(1.4·16) − 1).
  assert.equal(calls, ['chance 0.5', 'chance 0.66', 'int 19 21', 'int 0 4', 'int 0 4', `pick ${LARGE_PREFIXES.join('|')}`]);
  assert.ok(augmentMask(plan, S).every((v) => v === 1));
  const scaled = Uint8Array.from({ length: 20 * 20 * 3 }, (_, i) => (i * 13) % 256);
  const out = composeAugmented(scaled, plan, 16);
  for (let c = 0; c < 3; c++) for (let y = 0; y < 16; y++) for (let x = 0; x < 16; x++) {
    assert.is(out[c * 256 + y * 16 + x], Math.fround(scaled[((y + 4) * 20 + x + 1) * 3 + c] / 127.5 - 1));
  }
});

t('a middle scale (0.6·res to res) is pasted without a prefix; no flip draw without hflip; no augmentation', () => {
  const a = scripted([true], [12, 0, 4], []);
  const plan = planAugmentation(a.rng, { ...S, hflip: false });
  assert.equal(plan, { flip: false, scale: 12, kind: 'paste', top: 0, left: 4, prefix: '' });
  assert.equal(a.calls, ['chance 0.66', 'int 5 16', 'int 0 4', 'int 0 4']);
  assert.equal(maskRows(augmentMask(plan, S), 8).slice(0, 6), ['00000000', '00011110', '00011110', '00011110', '00011110', '00000000']);
  const b = scripted([true], [], []);
  const none = planAugmentation(b.rng, { ...S, augment: false });
  assert.equal(none, { flip: true, scale: 16, kind: 'none', top: 0, left: 0, prefix: '' });
  assert.equal(b.calls, ['chance 0.5']);
  assert.ok(augmentMask(none, S).every((v) => v === 1));
  assert.throws(() => composeAugmented(new Uint8Array(10), none, 16), /expected 16×16×3/);
});

t('the real generator: same seed same plans; 2/3 small scales; prefixes follow the scale', () => {
  const res = 60;
  const set = { ...S, resolution: 60, factor: 4 };
  const draw = (seed: number) => planAugmentation(new SeededRandom(seed).fork('x'), set);
  assert.equal(draw(5), draw(5));
  let small = 0, flips = 0;
  const n = 3000;
  for (let i = 0; i < n; i++) {
    const p = draw(i);
    if (p.scale <= res) small++;
    if (p.flip) flips++;
    assert.ok((p.scale >= 20 && p.scale <= 60) || (p.scale >= 72 && p.scale <= 83), `scale ${p.scale}`);
    assert.is(p.prefix !== '' && (SMALL_PREFIXES as readonly string[]).includes(p.prefix), p.scale < 36);
    assert.is(p.prefix !== '' && (LARGE_PREFIXES as readonly string[]).includes(p.prefix), p.scale > 60);
    assert.ok(p.top >= 0 && p.top <= Math.abs(p.scale - res) && p.left >= 0 && p.left <= Math.abs(p.scale - res));
  }
  assert.ok(Math.abs(small / n - 0.66) < 0.04, `small fraction ${small / n}`);
  assert.ok(Math.abs(flips / n - 0.5) < 0.04, `flip fraction ${flips / n}`);
});

t('augmentImage: centre-cropped, resized, flipped when planned', async () => {
  // 8×4: left half red, right half blue; the centre square is 4×4 (columns 2..5).
  const w = 8, h = 4;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set(x < 4 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
  const image = { name: 'test', data: px, width: w, height: h };
  const set: AugmentSettings = { resolution: 4, factor: 1, augment: false, hflip: true };
  const plain = await augmentImage(image, { flip: false, scale: 4, kind: 'none', top: 0, left: 0, prefix: '' }, set);
  const flipped = await augmentImage(image, { flip: true, scale: 4, kind: 'none', top: 0, left: 0, prefix: '' }, set);
  const red = (o: Float32Array, x: number): number => o[0 * 16 + 1 * 4 + x];
  assert.is(red(plain.pixels, 0), 1, 'left is red');
  assert.is(red(plain.pixels, 3), -1, 'right is not');
  assert.is(red(flipped.pixels, 0), -1, 'flipped: left is blue');
  assert.is(red(flipped.pixels, 3), 1);
  assert.ok(plain.mask.every((v) => v === 1));
});

t.run();
