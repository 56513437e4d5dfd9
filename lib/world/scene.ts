// The procedural world the embedded model is pretrained on: scenes of one or
// two flat coloured shapes on a plain background, their captions from a small
// grammar, an anti-aliased renderer, and the caption parser the metrics use.
// Every caption word is true of its image, so the words can be learned.
import { invalidArgument } from '../errors.js';
import { checkInt, checkOptions, describe, isPlainObject } from '../validate.js';
import { SeededRandom } from '../train/random.js';

export type RGB = readonly [number, number, number];

/** Object colours; well separated in RGB (nearest pair about 90 apart). */
export const COLOURS = ['red', 'green', 'blue', 'yellow', 'purple', 'orange', 'white', 'black'] as const;
export type ColourName = (typeof COLOURS)[number];
/** Background colours: a subset of the object colours plus gray. */
export const BACKGROUNDS = ['gray', 'white', 'black', 'blue', 'green'] as const;
export type BackgroundName = (typeof BACKGROUNDS)[number];
export type PaletteName = ColourName | 'gray';

export const PALETTE: Readonly<Record<PaletteName, RGB>> = Object.freeze({
  red: [220, 40, 40],
  green: [40, 170, 60],
  blue: [40, 80, 220],
  yellow: [240, 220, 40],
  purple: [150, 60, 190],
  orange: [250, 130, 20],
  white: [245, 245, 245],
  black: [20, 20, 20],
  gray: [128, 128, 128],
});
export const PALETTE_NAMES = Object.keys(PALETTE) as readonly PaletteName[];

/** The shapes of the pretraining world. */
export const SHAPES = ['circle', 'square', 'triangle'] as const;
export type WorldShape = (typeof SHAPES)[number];
/** Shapes only the held-out concepts use (see concepts.ts); the sampler never draws them. */
export const CONCEPT_SHAPES = ['star', 'ring', 'cross', 'heart'] as const;
export type ShapeName = WorldShape | (typeof CONCEPT_SHAPES)[number];
/** The class word a caption may use instead of the shape name. */
export const GENERIC_NOUN = 'shape';

export const SIZES = ['small', 'large'] as const;
export type Size = (typeof SIZES)[number];
/** Bounding-box side as a fraction of the image side, before jitter. */
export const SIZE_EXTENT: Readonly<Record<Size, number>> = Object.freeze({ small: 0.3, large: 0.55 });
const SIZE_JITTER = 0.03;

export const POSITIONS = ['left', 'right', 'top', 'bottom', 'center'] as const;
export type Position = (typeof POSITIONS)[number];
/** Where an object's centre is placed for each position word, as fractions of the side. */
export const POSITION_ANCHOR: Readonly<Record<Position, readonly [number, number]>> = Object.freeze({
  left: [0.27, 0.5],
  right: [0.73, 0.5],
  top: [0.5, 0.27],
  bottom: [0.5, 0.73],
  center: [0.5, 0.5],
});
const POSITION_JITTER = 0.04;
/** Gap kept between an object and the image edge, as a fraction of the side. */
const EDGE_MARGIN = 0.03;
export const POSITION_PHRASE: Readonly<Record<Position, string>> = {
  left: 'on the left',
  right: 'on the right',
  top: 'at the top',
  bottom: 'at the bottom',
  center: 'in the center',
};

export type PatternKind = 'stripes' | 'checker';
export interface Pattern {
  kind: PatternKind;
  colour: PaletteName;
}

export interface WorldObject {
  shape: ShapeName;
  colour: ColourName;
  size: Size;
  position: Position;
  /** Centre of the bounding box, as fractions of the image side (x to the right, y down). */
  cx: number;
  cy: number;
  /** Side of the bounding box, as a fraction of the image side. */
  extent: number;
  /** A second colour drawn over part of the object (held-out concepts only). */
  pattern?: Pattern;
  /** The held-out concept this object shows, if any. */
  concept?: string;
  /**
   * A procedural outline drawn instead of `shape` (polygon vertices in the
   * object's box [-1, 1]², v down; `hole`: a polygon cut out of it). Only the
   * tuning encoder's pretraining scenes have one: captions name `shape`.
   */
  outline?: { vertices: ReadonlyArray<readonly [number, number]>; hole?: ReadonlyArray<readonly [number, number]> };
}

export interface Scene {
  background: BackgroundName;
  objects: WorldObject[];
}

/** The position word for a bounding-box centre: 'center' within 0.12 of the middle, else the dominant direction. */
export function positionOf(cx: number, cy: number): Position {
  const dx = cx - 0.5;
  const dy = cy - 0.5;
  if (Math.max(Math.abs(dx), Math.abs(dy)) < 0.12) return 'center';
  if (Math.abs(dx) >= Math.abs(dy)) return dx < 0 ? 'left' : 'right';
  return dy < 0 ? 'top' : 'bottom';
}

/** The size word for a bounding-box side (fraction of the image side): halfway between the two sizes. */
export function sizeOf(extent: number): Size {
  return extent < (SIZE_EXTENT.small + SIZE_EXTENT.large) / 2 ? 'small' : 'large';
}

function checkRandom(fn: string, rng: unknown): SeededRandom {
  if (!(rng instanceof SeededRandom)) throw invalidArgument(`${fn}: rng must be a SeededRandom, got ${describe(rng)}`);
  return rng;
}

/** Places an object of `size` near the anchor of `position`, jittered and kept inside the image. */
export function placeObject(
  rng: SeededRandom, shape: ShapeName, colour: ColourName, size: Size, position: Position,
): WorldObject {
  const extent = SIZE_EXTENT[size] + rng.uniform(-SIZE_JITTER, SIZE_JITTER);
  const [ax, ay] = POSITION_ANCHOR[position];
  const lo = extent / 2 + EDGE_MARGIN;
  const clamp = (v: number) => Math.min(1 - lo, Math.max(lo, v));
  const cx = clamp(ax + rng.uniform(-POSITION_JITTER, POSITION_JITTER));
  const cy = clamp(ay + rng.uniform(-POSITION_JITTER, POSITION_JITTER));
  return { shape, colour, size, position, cx, cy, extent };
}

/** True when the two objects' bounding boxes are at least `gap` apart on some axis. */
function separated(a: WorldObject, b: WorldObject, gap: number): boolean {
  const half = (a.extent + b.extent) / 2 + gap;
  return Math.abs(a.cx - b.cx) >= half || Math.abs(a.cy - b.cy) >= half;
}

export interface SampleSceneOptions {
  /** Force one or two objects (default: one about 60% of the time). */
  objectCount?: 1 | 2;
}

/** A random pretraining scene: world shapes and colours only, never a held-out concept. */
export function sampleScene(rng: SeededRandom, options?: SampleSceneOptions): Scene {
  checkRandom('sampleScene', rng);
  const o = checkOptions('sampleScene', options, ['objectCount']);
  if (o.objectCount !== undefined && o.objectCount !== 1 && o.objectCount !== 2) {
    throw invalidArgument(`sampleScene: objectCount must be 1 or 2, got ${describe(o.objectCount)}`);
  }
  const count = (o.objectCount as 1 | 2 | undefined) ?? (rng.chance(0.6) ? 1 : 2);
  const background = rng.pick(BACKGROUNDS);
  const colours = COLOURS.filter((c) => c !== background);
  if (count === 1) {
    const obj = placeObject(rng, rng.pick(SHAPES), rng.pick(colours), rng.pick(SIZES), rng.pick(POSITIONS));
    return { background, objects: [obj] };
  }
  const pair: [Position, Position] = rng.chance(0.5) ? ['left', 'right'] : ['top', 'bottom'];
  if (rng.chance(0.5)) pair.reverse(); // caption order varies too
  const shapes = [rng.pick(SHAPES), rng.pick(SHAPES)];
  const cols = [rng.pick(colours), rng.pick(colours)];
  // Two large objects cannot sit side by side; redraw sizes and jitter until the boxes keep a gap.
  for (let attempt = 0; attempt < 20; attempt++) {
    const a = placeObject(rng, shapes[0], cols[0], rng.pick(SIZES), pair[0]);
    const b = placeObject(rng, shapes[1], cols[1], rng.pick(SIZES), pair[1]);
    if (separated(a, b, 0.05)) return { background, objects: [a, b] };
  }
  const exact = (shape: ShapeName, colour: ColourName, position: Position): WorldObject => {
    const [cx, cy] = POSITION_ANCHOR[position];
    return { shape, colour, size: 'small', position, cx, cy, extent: SIZE_EXTENT.small };
  };
  return { background, objects: [exact(shapes[0], cols[0], pair[0]), exact(shapes[1], cols[1], pair[1])] };
}

function article(firstWord: string): string {
  return /^[aeiou]/.test(firstWord) ? 'an' : 'a';
}

/** "on a blue background", "on a white background": the caption's background phrase. */
export function backgroundPhrase(background: string): string {
  return `on ${article(background)} ${background} background`;
}

function objectPhrase(obj: WorldObject, rng: SeededRandom): string {
  const words: string[] = [];
  if (rng.chance(0.5)) words.push(obj.size);
  if (rng.chance(0.92)) words.push(obj.colour);
  words.push(rng.chance(0.1) ? GENERIC_NOUN : obj.shape);
  let phrase = `${article(words[0])} ${words.join(' ')}`;
  if (rng.chance(0.6)) phrase += ` ${POSITION_PHRASE[obj.position]}`;
  return phrase;
}

/**
 * A caption of `scene` from the grammar "a [size] [colour] (shape|'shape') [position]
 * (and ...) [on a <colour> background]", attributes left out at random; every word is true.
 */
export function captionOf(scene: Scene, rng: SeededRandom): string {
  checkScene('captionOf', scene);
  checkRandom('captionOf', rng);
  let caption = scene.objects.map((obj) => objectPhrase(obj, rng)).join(' and ');
  if (caption === '' || rng.chance(0.5)) {
    caption += `${caption === '' ? '' : ' '}${backgroundPhrase(scene.background)}`;
  }
  return caption;
}

export interface RequestedObject {
  shape?: WorldShape;
  colour?: PaletteName;
  size?: Size;
  position?: Position;
}

export interface ParsedCaption {
  objects: RequestedObject[];
  background?: PaletteName;
}

const WORD_SYNONYMS: Readonly<Record<string, string>> = { grey: 'gray', centre: 'center', middle: 'center' };
const MAX_CAPTION_CHARS = 10_000;

/**
 * What a caption asks for: objects with the attributes it names, and the
 * background. Words outside the world's vocabulary ("photo", "of", "<new1>")
 * are ignored, so "a <new1> shape on the left" asks for one object on the left.
 */
export function parseCaption(text: string): ParsedCaption {
  if (typeof text !== 'string') throw invalidArgument(`parseCaption: caption must be a string, got ${describe(text)}`);
  if (text.length > MAX_CAPTION_CHARS) {
    throw invalidArgument(`parseCaption: caption has ${text.length} characters, more than ${MAX_CAPTION_CHARS}`);
  }
  const words = (text.toLowerCase().match(/<[^<>\s]*>|[a-z]+/g) ?? []).map((w) => WORD_SYNONYMS[w] ?? w);
  const objects: RequestedObject[] = [];
  let background: PaletteName | undefined;
  let pending: RequestedObject = {};
  let pendingUsed = false;
  const flush = () => {
    if (pendingUsed) objects.push(pending);
    pending = {};
    pendingUsed = false;
  };
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if ((PALETTE_NAMES as readonly string[]).includes(w)) {
      if (words[i + 1] === 'background') {
        background = w as PaletteName;
        i++;
      } else {
        pending.colour = w as PaletteName;
        pendingUsed = true;
      }
    } else if ((SIZES as readonly string[]).includes(w)) {
      pending.size = w as Size;
      pendingUsed = true;
    } else if ((SHAPES as readonly string[]).includes(w) || w === GENERIC_NOUN) {
      if (w !== GENERIC_NOUN) pending.shape = w as WorldShape;
      pendingUsed = true;
      flush();
    } else if ((POSITIONS as readonly string[]).includes(w)) {
      // A position follows its noun ("a circle on the left"), unless adjectives already wait for the next noun.
      const last = objects[objects.length - 1];
      if (!pendingUsed && last !== undefined && last.position === undefined) last.position = w as Position;
      else {
        pending.position = w as Position;
        pendingUsed = true;
      }
    }
  }
  flush();
  return background === undefined ? { objects } : { objects, background };
}

// --- rendering -------------------------------------------------------------

/** Star outline: 10 vertices, inner radius 0.45, scaled and shifted so its bounding box is centred in [-1, 1]². */
const STAR_VERTICES: ReadonlyArray<readonly [number, number]> = (() => {
  const shift = (1 - Math.cos(Math.PI / 5)) / 2; // the top tip reaches 1, the lower tips only cos 36°
  const scale = 1 / Math.sin((2 * Math.PI) / 5); // the widest points are the two side tips
  return Array.from({ length: 10 }, (_, k) => {
    const r = k % 2 === 0 ? 1 : 0.45;
    const a = -Math.PI / 2 + (k * Math.PI) / 5;
    return [r * Math.cos(a) * scale, (r * Math.sin(a) + shift) * scale] as const;
  });
})();

function insidePolygon(u: number, v: number, vertices: ReadonlyArray<readonly [number, number]>): boolean {
  let inside = false;
  for (let i = 0, j = vertices.length - 1; i < vertices.length; j = i++) {
    const [xi, yi] = vertices[i];
    const [xj, yj] = vertices[j];
    if (yi > v !== yj > v && u < ((xj - xi) * (v - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/** Is the point (u, v) of the object's box [-1, 1]² (v down) inside the shape? */
function insideShape(shape: ShapeName, u: number, v: number): boolean {
  switch (shape) {
    case 'circle':
      return u * u + v * v <= 1;
    case 'square':
      return Math.abs(u) <= 1 && Math.abs(v) <= 1;
    case 'triangle': // apex at the top centre, base along the bottom edge
      return v <= 1 && Math.abs(u) <= (v + 1) / 2;
    case 'star':
      return insidePolygon(u, v, STAR_VERTICES);
    case 'ring': {
      const r2 = u * u + v * v;
      return r2 <= 1 && r2 >= 0.55 * 0.55;
    }
    case 'cross':
      return (Math.abs(u) <= 0.34 && Math.abs(v) <= 1) || (Math.abs(v) <= 0.34 && Math.abs(u) <= 1);
    case 'heart': {
      // (x² + y² - 1)³ ≤ x²y³ (y up) spans x ∈ ±1.139, y ∈ [-1, 1.236]: mapped onto the box.
      const x = u * 1.139;
      const y = 0.118 - v * 1.118;
      const q = x * x + y * y - 1;
      return q * q * q <= x * x * y * y * y;
    }
  }
}

function insideObject(obj: WorldObject, u: number, v: number): boolean {
  if (obj.outline === undefined) return insideShape(obj.shape, u, v);
  return insidePolygon(u, v, obj.outline.vertices) && !(obj.outline.hole !== undefined && insidePolygon(u, v, obj.outline.hole));
}

function patternOn(pattern: Pattern, u: number, v: number): boolean {
  if (pattern.kind === 'stripes') return Math.floor((v + 1) * 2.5) % 2 === 1; // five horizontal bands
  return (Math.floor((u + 1) * 2) + Math.floor((v + 1) * 2)) % 2 === 1; // a 4×4 checkerboard
}

const MAX_OBJECTS = 16;

function checkScene(fn: string, scene: unknown): Scene {
  if (!isPlainObject(scene)) throw invalidArgument(`${fn}: scene must be an object { background, objects }, got ${describe(scene)}`);
  if (!(BACKGROUNDS as readonly unknown[]).includes(scene.background)) {
    throw invalidArgument(`${fn}: scene.background must be one of ${BACKGROUNDS.join(', ')}, got ${describe(scene.background)}`);
  }
  const objects = scene.objects;
  if (!Array.isArray(objects) || objects.length > MAX_OBJECTS) {
    throw invalidArgument(`${fn}: scene.objects must be an array of at most ${MAX_OBJECTS} objects, got ${describe(objects)}`);
  }
  const shapes: readonly string[] = [...SHAPES, ...CONCEPT_SHAPES];
  objects.forEach((obj: unknown, i) => {
    const at = `${fn}: scene.objects[${i}]`;
    if (!isPlainObject(obj)) throw invalidArgument(`${at} must be an object, got ${describe(obj)}`);
    if (!shapes.includes(obj.shape as string)) throw invalidArgument(`${at}.shape must be one of ${shapes.join(', ')}, got ${describe(obj.shape)}`);
    if (!(COLOURS as readonly unknown[]).includes(obj.colour)) {
      throw invalidArgument(`${at}.colour must be one of ${COLOURS.join(', ')}, got ${describe(obj.colour)}`);
    }
    if (!(SIZES as readonly unknown[]).includes(obj.size)) throw invalidArgument(`${at}.size must be 'small' or 'large', got ${describe(obj.size)}`);
    if (!(POSITIONS as readonly unknown[]).includes(obj.position)) {
      throw invalidArgument(`${at}.position must be one of ${POSITIONS.join(', ')}, got ${describe(obj.position)}`);
    }
    for (const key of ['cx', 'cy'] as const) {
      const v = obj[key];
      if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw invalidArgument(`${at}.${key} must be a number in [0, 1], got ${describe(v)}`);
    }
    if (typeof obj.extent !== 'number' || !(obj.extent > 0 && obj.extent <= 1)) {
      throw invalidArgument(`${at}.extent must be a number in (0, 1], got ${describe(obj.extent)}`);
    }
    if (obj.outline !== undefined) checkOutline(at, obj.outline);
    if (obj.pattern !== undefined) {
      const p = obj.pattern;
      if (!isPlainObject(p) || (p.kind !== 'stripes' && p.kind !== 'checker') || !(PALETTE_NAMES as readonly unknown[]).includes(p.colour)) {
        throw invalidArgument(`${at}.pattern must be { kind: 'stripes' | 'checker', colour: <palette colour> }, got ${describe(p)}`);
      }
    }
  });
  return scene as unknown as Scene;
}

function checkOutline(at: string, outline: unknown): void {
  const polygon = (v: unknown): boolean => Array.isArray(v) && v.length >= 3 && v.length <= 256
    && v.every((p) => Array.isArray(p) && p.length === 2 && p.every((c) => typeof c === 'number' && c >= -1 && c <= 1));
  if (!isPlainObject(outline) || !polygon(outline.vertices) || (outline.hole !== undefined && !polygon(outline.hole))) {
    throw invalidArgument(`${at}.outline must be { vertices, hole? }: polygons of 3 to 256 [u, v] points in [-1, 1], got ${describe(outline)}`);
  }
}

export function checkResolution(fn: string, resolution: unknown): number {
  return checkInt(fn, 'resolution', resolution, 8, 1024);
}

const SUPERSAMPLE = 4;

/** The scene as HWC RGB bytes (length resolution²·3), each pixel the mean of 4×4 sub-pixel samples. */
export function renderScene(scene: Scene, resolution = 32): Uint8Array {
  checkScene('renderScene', scene);
  const r = checkResolution('renderScene', resolution);
  const out = new Uint8Array(r * r * 3);
  const bg = PALETTE[scene.background];
  const sub = SUPERSAMPLE;
  const sum = [0, 0, 0];
  for (let py = 0; py < r; py++) {
    for (let px = 0; px < r; px++) {
      sum[0] = sum[1] = sum[2] = 0;
      for (let sy = 0; sy < sub; sy++) {
        for (let sx = 0; sx < sub; sx++) {
          const x = (px + (sx + 0.5) / sub) / r;
          const y = (py + (sy + 0.5) / sub) / r;
          let colour = bg;
          for (const obj of scene.objects) {
            const half = obj.extent / 2;
            const u = (x - obj.cx) / half;
            const v = (y - obj.cy) / half;
            if (u < -1 || u > 1 || v < -1 || v > 1 || !insideObject(obj, u, v)) continue;
            colour = obj.pattern !== undefined && patternOn(obj.pattern, u, v) ? PALETTE[obj.pattern.colour] : PALETTE[obj.colour];
          }
          sum[0] += colour[0];
          sum[1] += colour[1];
          sum[2] += colour[2];
        }
      }
      const o = (py * r + px) * 3;
      const n = sub * sub;
      out[o] = Math.round(sum[0] / n);
      out[o + 1] = Math.round(sum[1] / n);
      out[o + 2] = Math.round(sum[2] / n);
    }
  }
  return out;
}

export interface WorldSample {
  image: Uint8Array;
  caption: string;
  scene: Scene;
}

function checkIndex(fn: string, name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw invalidArgument(`${fn}: ${name} must be a non-negative integer, got ${describe(value)}`);
  }
  return value;
}

/**
 * Sample `index` of the stream for `seed`: its own forked generator, so any
 * batch can be drawn reproducibly without drawing the samples before it.
 */
export function worldSample(seed: number, index: number, resolution = 32): WorldSample {
  checkIndex('worldSample', 'seed', seed);
  checkIndex('worldSample', 'index', index);
  checkResolution('worldSample', resolution);
  const rng = new SeededRandom(seed).fork(index);
  const scene = sampleScene(rng.fork('scene'));
  const caption = captionOf(scene, rng.fork('caption'));
  return { image: renderScene(scene, resolution), caption, scene };
}

/**
 * Sample `index` of the layout stream for `seed`: one object, with a caption
 * that names every attribute ("a small red circle on the left on a gray
 * background"). Pretraining shows these at the highest noise levels, where the
 * caption alone decides the layout (see pretrainWorld's layoutFraction).
 */
export function layoutSample(seed: number, index: number, resolution = 32): WorldSample {
  checkIndex('layoutSample', 'seed', seed);
  checkIndex('layoutSample', 'index', index);
  checkResolution('layoutSample', resolution);
  const rng = new SeededRandom(seed).fork(`layout ${index}`);
  const scene = sampleScene(rng, { objectCount: 1 });
  const obj = scene.objects[0];
  const caption = `a ${obj.size} ${obj.colour} ${obj.shape} ${POSITION_PHRASE[obj.position]} ${backgroundPhrase(scene.background)}`;
  return { image: renderScene(scene, resolution), caption, scene };
}
