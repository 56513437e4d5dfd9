// Image analysis for the world's metrics: the background, the objects on it
// (segmented and measured: colour, box, size, position, shape, holes).
//
// Pipeline (analyzeImage): background = dominant colour of the border pixels;
// foreground = pixels far from it (an anti-aliased edge pixel counts when it is
// at least half as far as its neighbourhood's strongest pixel, i.e. at least
// half covered); 4-connected components, specks dropped, and on a noisy image
// (noise measured on the border) only components that survive a median filter.
// Per object: palette colour by majority vote of its clean pixels; a soft
// coverage map (distance from the background over the object colour's,
// ramped past the noise) → a sub-pixel box → size and position words; shape by
// the best IoU of the coverage with the circle, square and triangle inscribed
// in that box ('unknown' when no template fits clearly, or with a hole).
import { invalidArgument } from '../../errors.js';
import { describe } from '../../validate.js';
import {
  PALETTE, PALETTE_NAMES, checkResolution, positionOf, sizeOf,
  type PaletteName, type Position, type RGB, type Size, type WorldShape,
} from '../scene.js';

export interface DetectedObject {
  /**
   * Nearest palette colour of the majority of the object's clean pixels: those
   * inside it, and edge pixels near a palette colour (other edge pixels blend
   * with the background).
   */
  colour: PaletteName;
  /** RGB distance from the mean of the pixels that voted for `colour` to the palette colour. */
  colourDistance: number;
  /** Mean RGB of the clean pixels (every colour of a patterned object mixed). */
  meanColour: RGB;
  /** Fraction of the clean pixels nearest to each palette colour. */
  colourHistogram: Readonly<Record<PaletteName, number>>;
  /** Foreground pixels. */
  area: number;
  /** Inclusive pixel bounds. */
  bbox: { x0: number; y0: number; x1: number; y1: number };
  /** Centre and longer side of the box fitted to the soft coverage (sub-pixel), as fractions of the image side. */
  cx: number;
  cy: number;
  extent: number;
  position: Position;
  size: Size;
  shape: WorldShape | 'unknown';
  /** Best IoU of the coverage with each world shape inscribed in the fitted box (a little grown or shrunk). */
  shapeScores: Readonly<Record<WorldShape, number>>;
  /** Enclosed background regions (a ring has one). */
  holes: number;
  /** Indices (y·resolution + x) of the object's pixels. */
  pixels: Int32Array;
  /** Estimated fraction of each pixel the object covers, over its pixel box plus a one-pixel margin (row-major). */
  coverage: { x0: number; y0: number; width: number; height: number; values: Float64Array };
}

export interface ImageAnalysis {
  background: RGB;
  /** Nearest palette colour of the background. */
  backgroundColour: PaletteName;
  /** Largest first. */
  objects: DetectedObject[];
}

/** Below this RGB distance from the background a pixel is background, whatever its neighbours. */
const FOREGROUND_DISTANCE = 45;
/** Border pixels this close to a candidate count towards it being the background. */
const BACKGROUND_RADIUS = 48;
/** A template IoU this high names the shape outright (a heart reaches 0.80 as a circle). */
const SHAPE_CLEAR_IOU = 0.82;
/** Below SHAPE_CLEAR_IOU (a blurred small triangle), the best shape needs this IoU and this lead over the next. */
const SHAPE_MIN_IOU = 0.75;
const SHAPE_MIN_MARGIN = 0.1;
const MAX_DETECTED = 8;
/** A hole smaller than this fraction of the object's area is noise (a ring's is about 40%). */
const HOLE_MIN_FRACTION = 0.03;
/** An edge pixel this close to a palette colour votes on the object's colour. */
const CLEAN_PIXEL_DISTANCE = 40;
/** Border noise (σ per channel, 0-255 units) above which components must survive a median filter. */
const NOISE_FOR_MEDIAN = 3;

export function checkImage(fn: string, image: unknown, resolution: unknown, what = 'image'): number {
  const r = checkResolution(fn, resolution);
  if (!(image instanceof Uint8Array)) throw invalidArgument(`${fn}: ${what} must be a Uint8Array of HWC RGB bytes, got ${describe(image)}`);
  if (image.length !== r * r * 3) {
    throw invalidArgument(`${fn}: ${what} has ${image.length} bytes, expected ${r}·${r}·3 = ${r * r * 3} for resolution ${r}`);
  }
  return r;
}

function distance(a: ArrayLike<number>, b: ArrayLike<number>): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

function nearestPalette(rgb: ArrayLike<number>): PaletteName {
  let best: PaletteName = PALETTE_NAMES[0];
  let bestD = Infinity;
  for (const name of PALETTE_NAMES) {
    const d = distance(rgb, PALETTE[name]);
    if (d < bestD) [best, bestD] = [name, d];
  }
  return best;
}

function pixelAt(image: Uint8Array, p: number): [number, number, number] {
  return [image[p * 3], image[p * 3 + 1], image[p * 3 + 2]];
}

/** The dominant border colour: the border pixel with the most border pixels near it, averaged with those. */
function borderBackground(image: Uint8Array, r: number): RGB {
  const border: number[] = [];
  for (let i = 0; i < r; i++) border.push(i, (r - 1) * r + i);
  for (let i = 1; i < r - 1; i++) border.push(i * r, i * r + r - 1);
  const colours = border.map((p) => pixelAt(image, p));
  let best = colours[0];
  let bestCount = -1;
  for (const c of colours) {
    let n = 0;
    for (const o of colours) if (distance(c, o) <= BACKGROUND_RADIUS) n++;
    if (n > bestCount) [best, bestCount] = [c, n];
  }
  const sum = [0, 0, 0];
  let n = 0;
  for (const o of colours) {
    if (distance(best, o) > BACKGROUND_RADIUS) continue;
    sum[0] += o[0];
    sum[1] += o[1];
    sum[2] += o[2];
    n++;
  }
  return [sum[0] / n, sum[1] / n, sum[2] / n];
}

function foregroundMask(dist: Float64Array, r: number): Uint8Array {
  const mask = new Uint8Array(r * r);
  for (let y = 0; y < r; y++) {
    for (let x = 0; x < r; x++) {
      const p = y * r + x;
      if (dist[p] <= FOREGROUND_DISTANCE) continue;
      let strongest = 0;
      for (let yy = Math.max(0, y - 1); yy <= Math.min(r - 1, y + 1); yy++) {
        for (let xx = Math.max(0, x - 1); xx <= Math.min(r - 1, x + 1); xx++) strongest = Math.max(strongest, dist[yy * r + xx]);
      }
      if (dist[p] >= 0.5 * strongest) mask[p] = 1;
    }
  }
  return mask;
}

/** Noise level of the border's background pixels: 1.4826 × the median absolute deviation per channel (σ for Gaussian noise). */
function borderNoise(image: Uint8Array, r: number, bg: RGB): number {
  const deviations: number[] = [];
  for (let i = 0; i < r; i++) {
    for (const p of [i, (r - 1) * r + i, i * r, i * r + r - 1]) {
      const c = pixelAt(image, p);
      if (distance(c, bg) > BACKGROUND_RADIUS) continue;
      for (let k = 0; k < 3; k++) deviations.push(Math.abs(c[k] - bg[k]));
    }
  }
  deviations.sort((a, b) => a - b);
  return 1.4826 * (deviations[deviations.length >> 1] ?? 0);
}

/**
 * Per-channel median of each pixel and its four neighbours (clipped at the
 * image edge): removes isolated noise, yet keeps a square's corner (3 of 5 inside).
 */
function medianPlus(image: Uint8Array, r: number): Uint8Array {
  const out = new Uint8Array(image.length);
  const window: number[] = [];
  for (let y = 0; y < r; y++) {
    for (let x = 0; x < r; x++) {
      const p = y * r + x;
      const around = [p, x > 0 ? p - 1 : -1, x < r - 1 ? p + 1 : -1, y > 0 ? p - r : -1, y < r - 1 ? p + r : -1];
      for (let k = 0; k < 3; k++) {
        window.length = 0;
        for (const q of around) if (q >= 0) window.push(image[q * 3 + k]);
        window.sort((a, b) => a - b);
        out[p * 3 + k] = window[window.length >> 1];
      }
    }
  }
  return out;
}

/** 4-connected components of `mask` as lists of pixel indices. */
function components(mask: Uint8Array, r: number): Int32Array[] {
  const label = new Int32Array(r * r).fill(-1);
  const out: Int32Array[] = [];
  const stack: number[] = [];
  for (let start = 0; start < r * r; start++) {
    if (!mask[start] || label[start] >= 0) continue;
    const pixels: number[] = [];
    label[start] = out.length;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop()!;
      pixels.push(p);
      const x = p % r;
      const y = (p - x) / r;
      const next = [x > 0 ? p - 1 : -1, x < r - 1 ? p + 1 : -1, y > 0 ? p - r : -1, y < r - 1 ? p + r : -1];
      for (const q of next) {
        if (q >= 0 && mask[q] && label[q] < 0) {
          label[q] = out.length;
          stack.push(q);
        }
      }
    }
    out.push(Int32Array.from(pixels));
  }
  return out;
}

/** Coverage of window pixel (x, y) by the world shape inscribed in the box at (ox, oy) of size bw×bh, from 4×4 samples. */
function templateCoverage(shape: WorldShape, x: number, y: number, ox: number, oy: number, bw: number, bh: number): number {
  let inside = 0;
  for (let sy = 0; sy < 4; sy++) {
    for (let sx = 0; sx < 4; sx++) {
      const u = ((x + (sx + 0.5) / 4 - ox) / bw) * 2 - 1;
      const v = ((y + (sy + 0.5) / 4 - oy) / bh) * 2 - 1;
      if (u < -1 || u > 1 || v < -1 || v > 1) continue;
      if (shape === 'square' || (shape === 'circle' && u * u + v * v <= 1) || (shape === 'triangle' && Math.abs(u) <= (v + 1) / 2)) inside++;
    }
  }
  return inside / 16;
}

/** Growths (pixels) of the estimated box tried on each axis, to absorb the estimate's error. */
const BOX_GROWTH = [-0.5, 0, 0.5, 1] as const;

/** A box in window pixels: centre and size. */
interface SoftBox {
  cx: number;
  cy: number;
  bw: number;
  bh: number;
}

/**
 * The object's box estimated from its soft mask (W×H window): per axis, the
 * size is the sum of the column (row) maxima and the centre their weighted
 * mean, so a half-covered edge column counts half.
 */
function softBox(soft: Float64Array, W: number, H: number): SoftBox {
  const colMax = new Float64Array(W);
  const rowMax = new Float64Array(H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      colMax[x] = Math.max(colMax[x], soft[y * W + x]);
      rowMax[y] = Math.max(rowMax[y], soft[y * W + x]);
    }
  }
  const span = (profile: Float64Array): [number, number] => {
    let sum = 0;
    let moment = 0;
    profile.forEach((v, i) => {
      sum += v;
      moment += (i + 0.5) * v;
    });
    return [moment / sum, sum];
  };
  const [cx, bw] = span(colMax);
  const [cy, bh] = span(rowMax);
  return { cx, cy, bw, bh };
}

/**
 * Best IoU of the object's soft mask with `shape` inscribed in `box` grown by
 * BOX_GROWTH: the width's growth first, then the height's with the best width.
 */
function templateIoU(shape: WorldShape, soft: Float64Array, W: number, H: number, box: SoftBox): number {
  const { cx, cy, bw, bh } = box;
  const iou = (boxW: number, boxH: number): number => {
    let both = 0;
    let either = 0;
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const t = templateCoverage(shape, x, y, cx - boxW / 2, cy - boxH / 2, boxW, boxH);
        const m = soft[y * W + x];
        both += Math.min(t, m);
        either += Math.max(t, m);
      }
    }
    return both / either;
  };
  let bestW = bw;
  let best = -1;
  for (const g of BOX_GROWTH) {
    const v = iou(bw + g, bh);
    if (v > best) [best, bestW] = [v, bw + g];
  }
  for (const g of BOX_GROWTH) if (g !== 0) best = Math.max(best, iou(bestW, bh + g));
  return best;
}

/** Enclosed background regions of at least `minSize` pixels (smaller ones are noise). */
function countHoles(objMask: Uint8Array, w: number, h: number, minSize: number): number {
  // Flood the non-object pixels from a one-pixel frame around the box; what stays unreached is enclosed.
  const W = w + 2;
  const H = h + 2;
  const seen = new Uint8Array(W * H);
  const solid = (x: number, y: number) => x >= 1 && y >= 1 && x <= w && y <= h && objMask[(y - 1) * w + (x - 1)] === 1;
  const flood = (sx: number, sy: number): number => {
    let n = 0;
    const stack = [sy * W + sx];
    seen[sy * W + sx] = 1;
    while (stack.length > 0) {
      const p = stack.pop()!;
      n++;
      const x = p % W;
      const y = (p - x) / W;
      for (const [nx, ny] of [[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]]) {
        if (nx < 0 || ny < 0 || nx >= W || ny >= H || seen[ny * W + nx] || solid(nx, ny)) continue;
        seen[ny * W + nx] = 1;
        stack.push(ny * W + nx);
      }
    }
    return n;
  };
  flood(0, 0);
  let holes = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (seen[y * W + x] || solid(x, y)) continue;
      if (flood(x, y) >= minSize) holes++;
    }
  }
  return holes;
}

/** What the object measurements read: the image, its background, distances from it, and the kept components. */
interface Frame {
  image: Uint8Array;
  r: number;
  background: RGB;
  /** RGB distance of each pixel from the background. */
  dist: Float64Array;
  mask: Uint8Array;
  /** Component index of each pixel, -1 for background. */
  owner: Int32Array;
  /** Distances from the background up to this are noise: soft coverage starts above it. */
  noiseFloor: number;
}

function describeObject(frame: Frame, id: number, pixels: Int32Array): DetectedObject {
  const { image, r, mask: inMask, owner, dist } = frame;
  let x0 = r, y0 = r, x1 = -1, y1 = -1;
  for (const p of pixels) {
    const x = p % r;
    const y = (p - x) / r;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  const w = x1 - x0 + 1;
  const h = y1 - y0 + 1;
  const objMask = new Uint8Array(w * h);
  for (const p of pixels) objMask[(Math.floor(p / r) - y0) * w + ((p % r) - x0)] = 1;

  // Colour from the inner pixels, and the edge pixels close to a palette colour: other edge pixels are
  // blends with the background (a pattern's outer band can be all edge at small sizes).
  const clean = Array.from(pixels).filter((p) => {
    const x = p % r;
    const y = (p - x) / r;
    const surrounded = x > 0 && y > 0 && x < r - 1 && y < r - 1 && inMask[p - 1] && inMask[p + 1] && inMask[p - r] && inMask[p + r];
    return surrounded || distance(pixelAt(image, p), PALETTE[nearestPalette(pixelAt(image, p))]) <= CLEAN_PIXEL_DISTANCE;
  });
  const voters = clean.length >= 3 ? clean : Array.from(pixels);
  const votes = Object.fromEntries(PALETTE_NAMES.map((n) => [n, 0])) as Record<PaletteName, number>;
  const sums = Object.fromEntries(PALETTE_NAMES.map((n) => [n, [0, 0, 0]])) as Record<PaletteName, number[]>;
  const mean = [0, 0, 0];
  for (const p of voters) {
    const c = pixelAt(image, p);
    const name = nearestPalette(c);
    votes[name]++;
    for (let k = 0; k < 3; k++) {
      sums[name][k] += c[k];
      mean[k] += c[k] / voters.length;
    }
  }
  const colour = PALETTE_NAMES.reduce((a, b) => (votes[b] > votes[a] ? b : a));
  const colourMean = sums[colour].map((s) => s / votes[colour]);
  const colourHistogram = Object.fromEntries(PALETTE_NAMES.map((n) => [n, votes[n] / voters.length])) as Record<PaletteName, number>;

  // Soft coverage: each pixel's distance from the background as a fraction of the object colour's,
  // over the object and the pixels touching it (edge pixels under half covered are not in the mask).
  const floor = Math.min(frame.noiseFloor, FOREGROUND_DISTANCE);
  // Full coverage: the distance of the object's least contrasting colour (a pattern has two) from the background.
  const mainColours = PALETTE_NAMES.filter((n) => n === colour || votes[n] >= Math.max(1, 0.15 * voters.length));
  const contrast = Math.min(...mainColours.map((n) => distance(sums[n].map((v) => v / votes[n]), frame.background)));
  // Coverage ramps from 0 at the noise floor to 1 a noise floor below the object's own distance,
  // so noise neither inflates the margin nor dents the inside (exact d / contrast on a clean image).
  const full = Math.max(contrast - 2 * floor, contrast / 3, 1);
  const soft = new Float64Array((w + 2) * (h + 2));
  for (let y = y0 - 1; y <= y1 + 1; y++) {
    for (let x = x0 - 1; x <= x1 + 1; x++) {
      if (x < 0 || y < 0 || x >= r || y >= r) continue;
      let near = false;
      for (let yy = Math.max(0, y - 1); yy <= Math.min(r - 1, y + 1) && !near; yy++) {
        for (let xx = Math.max(0, x - 1); xx <= Math.min(r - 1, x + 1); xx++) if (owner[yy * r + xx] === id) near = true;
      }
      const p = y * r + x;
      if (near && (owner[p] === id || owner[p] === -1)) soft[(y - y0 + 1) * (w + 2) + (x - x0 + 1)] = Math.min(1, Math.max(0, dist[p] - floor) / full);
    }
  }
  const box = softBox(soft, w + 2, h + 2);
  const shapeScores = {} as Record<WorldShape, number>;
  for (const shape of ['circle', 'square', 'triangle'] as const) shapeScores[shape] = templateIoU(shape, soft, w + 2, h + 2, box);
  const holes = countHoles(objMask, w, h, Math.max(2, Math.ceil(HOLE_MIN_FRACTION * pixels.length)));
  const ranked = (Object.keys(shapeScores) as WorldShape[]).sort((a, b) => shapeScores[b] - shapeScores[a]);
  const [best, second] = [shapeScores[ranked[0]], shapeScores[ranked[1]]];
  const fits = best >= SHAPE_CLEAR_IOU || (best >= SHAPE_MIN_IOU && best - second >= SHAPE_MIN_MARGIN);
  const aspect = box.bw / box.bh;
  const shape = holes === 0 && aspect > 0.7 && aspect < 1 / 0.7 && fits ? ranked[0] : 'unknown';

  // The window starts one pixel before the pixel box.
  const cx = (x0 - 1 + box.cx) / r;
  const cy = (y0 - 1 + box.cy) / r;
  const extent = Math.max(box.bw, box.bh) / r;
  return {
    colour,
    colourDistance: distance(colourMean, PALETTE[colour]),
    meanColour: [mean[0], mean[1], mean[2]],
    colourHistogram,
    area: pixels.length,
    bbox: { x0, y0, x1, y1 },
    cx,
    cy,
    extent,
    position: positionOf(cx, cy),
    size: sizeOf(extent),
    shape,
    shapeScores,
    holes,
    pixels,
    coverage: { x0: x0 - 1, y0: y0 - 1, width: w + 2, height: h + 2, values: soft },
  };
}

/** Background, and the objects on it (largest first), measured. */
export function analyzeImage(image: Uint8Array, resolution = 32): ImageAnalysis {
  const r = checkImage('analyzeImage', image, resolution);
  const background = borderBackground(image, r);
  const noise = borderNoise(image, r, background);
  const dist = new Float64Array(r * r);
  for (let p = 0; p < r * r; p++) dist[p] = distance(pixelAt(image, p), background);
  const mask = foregroundMask(dist, r);
  const minArea = Math.max(4, Math.round((r * r) / 256));
  let kept = components(mask, r).filter((c) => c.length >= minArea);
  if (noise > NOISE_FOR_MEDIAN) {
    // Noisy images (generated ones): a component is real when enough of it survives a median filter,
    // which erases noise specks; it is still measured on the unfiltered image, whose thin parts
    // (a triangle's apex) the filter would erase too.
    const filtered = medianPlus(image, r);
    const filteredDist = new Float64Array(r * r);
    for (let p = 0; p < r * r; p++) filteredDist[p] = distance(pixelAt(filtered, p), background);
    const confirmed = foregroundMask(filteredDist, r);
    kept = kept.filter((c) => c.reduce((n, p) => n + confirmed[p], 0) >= minArea);
  }
  kept = kept.sort((a, b) => b.length - a.length).slice(0, MAX_DETECTED);
  const owner = new Int32Array(r * r).fill(-1);
  kept.forEach((c, id) => c.forEach((p) => (owner[p] = id)));
  const frame: Frame = { image, r, background, dist, mask, owner, noiseFloor: 3 * noise };
  const objects = kept.map((c, id) => describeObject(frame, id, c));
  return { background, backgroundColour: nearestPalette(background), objects };
}
