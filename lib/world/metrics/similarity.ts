// Concept descriptors and similarity for the world's metrics: image
// alignment, colour-invariant shape alignment, and concept presence.
//
// Image alignment: the main object's coverage, centred and scaled to a fixed
// grid (soft IoU: shape), and its palette histogram (intersection: colour and
// pattern), combined by geometric mean, so both must agree.
// Shape alignment: colour-invariant: the same normalised coverage compared by
// its silhouette (soft IoU) and its outline (soft IoU of the mask's gradient
// magnitude, so holes and corners count), combined by geometric mean. A
// silhouette alone lets a solid square pass for a frame and a diamond for a
// cross of the same colour; the outline does not.
import { invalidArgument } from '../../errors.js';
import { describe } from '../../validate.js';
import { PALETTE_NAMES, type PaletteName } from '../scene.js';
import { analyzeImage, checkImage, type ImageAnalysis } from './analysis.js';

/** Side of the normalised mask grid the descriptors compare. */
const GRID = 24;

export interface ConceptDescriptor {
  /** The main object's mask, centred and scaled so its longer side spans 90% of a GRID×GRID grid (bilinear, soft). */
  mask: Float32Array;
  /** Fraction of the object's clean pixels nearest to each palette colour (colour and pattern statistics). */
  colourHistogram: Readonly<Record<PaletteName, number>>;
}

function descriptorOf(analysis: ImageAnalysis, r: number, objectIndex = 0): ConceptDescriptor | null {
  const obj = analysis.objects[objectIndex];
  if (obj === undefined) return null;
  const { x0, y0, width, height, values } = obj.coverage;
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= width || y >= height ? 0 : values[y * width + x]);
  // Centre and scale from the fitted box, in window pixels.
  const scale = (obj.extent * r) / (GRID * 0.9); // image pixels per grid cell
  const midX = obj.cx * r - x0;
  const midY = obj.cy * r - y0;
  const mask = new Float32Array(GRID * GRID);
  for (let gy = 0; gy < GRID; gy++) {
    for (let gx = 0; gx < GRID; gx++) {
      // Pixel centres sit at k + 0.5: bilinear between the four nearest.
      const x = midX + (gx + 0.5 - GRID / 2) * scale - 0.5;
      const y = midY + (gy + 0.5 - GRID / 2) * scale - 0.5;
      const xi = Math.floor(x);
      const yi = Math.floor(y);
      const fx = x - xi;
      const fy = y - yi;
      mask[gy * GRID + gx] = (1 - fy) * ((1 - fx) * at(xi, yi) + fx * at(xi + 1, yi)) + fy * ((1 - fx) * at(xi, yi + 1) + fx * at(xi + 1, yi + 1));
    }
  }
  return { mask, colourHistogram: obj.colourHistogram };
}

/** The main (largest) object's position-, size- and background-free description; null when there is no object. */
export function conceptDescriptor(image: Uint8Array, resolution = 32): ConceptDescriptor | null {
  const r = checkImage('conceptDescriptor', image, resolution);
  return descriptorOf(analyzeImage(image, r), r);
}

/** Geometric mean of the soft-mask IoU (shape) and the colour-histogram intersection (colour and pattern). */
export function descriptorSimilarity(a: ConceptDescriptor | null, b: ConceptDescriptor | null): number {
  if (a === null || b === null) return 0;
  const shape = softIoU(a.mask, b.mask);
  let colour = 0;
  for (const name of PALETTE_NAMES) colour += Math.min(a.colourHistogram[name], b.colourHistogram[name]);
  return Math.sqrt(shape * colour);
}

/** Σ min / Σ max of two non-negative maps (soft IoU); 0 when both are empty. */
function softIoU(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let both = 0;
  let either = 0;
  for (let i = 0; i < a.length; i++) {
    both += Math.min(a[i], b[i]);
    either += Math.max(a[i], b[i]);
  }
  return either > 0 ? both / either : 0;
}

/** Gradient magnitude of a GRID×GRID mask (central differences, zero outside): its outline, inner edges (holes) included. */
function outlineOf(mask: Float32Array): Float32Array {
  const at = (x: number, y: number) => (x < 0 || y < 0 || x >= GRID || y >= GRID ? 0 : mask[y * GRID + x]);
  const out = new Float32Array(GRID * GRID);
  for (let y = 0; y < GRID; y++) {
    for (let x = 0; x < GRID; x++) out[y * GRID + x] = Math.hypot(at(x + 1, y) - at(x - 1, y), at(x, y + 1) - at(x, y - 1)) / 2;
  }
  return out;
}

/** Colour-invariant shape similarity in [0, 1]: geometric mean of the silhouettes' and the outlines' soft IoU. */
export function shapeSimilarity(a: ConceptDescriptor | null, b: ConceptDescriptor | null): number {
  if (a === null || b === null) return 0;
  return Math.sqrt(softIoU(a.mask, b.mask) * softIoU(outlineOf(a.mask), outlineOf(b.mask)));
}

/** Checks an image and its references and describes them, for the image and shape scores. */
function describedReferences(fn: string, image: Uint8Array, references: readonly Uint8Array[], resolution: number): { own: ConceptDescriptor | null; refs: (ConceptDescriptor | null)[] } {
  const r = checkImage(fn, image, resolution);
  if (!Array.isArray(references) || references.length === 0) {
    throw invalidArgument(`${fn}: references must be a non-empty array of concept images, got ${describe(references)}`);
  }
  references.forEach((ref, i) => checkImage(fn, ref, r, `references[${i}]`));
  const own = conceptDescriptor(image, r);
  return { own, refs: own === null ? [] : references.map((ref) => conceptDescriptor(ref, r)) };
}

/**
 * How much the image's main object has the concept's shape, whatever its
 * colour: mean shapeSimilarity to each reference image, in [0, 1].
 */
export function shapeAlignment(image: Uint8Array, references: readonly Uint8Array[], resolution = 32): number {
  const { own, refs } = describedReferences('shapeAlignment', image, references, resolution);
  if (own === null) return 0;
  return refs.reduce((sum, ref) => sum + shapeSimilarity(own, ref), 0) / refs.length;
}

/** How much the image's main object looks like the concept: mean similarity to each reference image, in [0, 1]. */
export function imageAlignment(image: Uint8Array, references: readonly Uint8Array[], resolution = 32): number {
  const { own, refs } = describedReferences('imageAlignment', image, references, resolution);
  if (own === null) return 0;
  return refs.reduce((sum, ref) => sum + descriptorSimilarity(own, ref), 0) / refs.length;
}

/**
 * Multi-concept images: for each concept (its reference images), the best
 * image alignment any detected object reaches (objects largest first, at
 * most `maxObjects`). Two concepts "both appear" when both scores are high.
 */
export function conceptPresence(image: Uint8Array, conceptReferences: readonly (readonly Uint8Array[])[], resolution = 32, maxObjects = 3): number[] {
  const fn = 'conceptPresence';
  const r = checkImage(fn, image, resolution);
  if (!Array.isArray(conceptReferences) || conceptReferences.length === 0) {
    throw invalidArgument(`${fn}: conceptReferences must be a non-empty array of reference-image arrays, got ${describe(conceptReferences)}`);
  }
  const refs = conceptReferences.map((set, k) => {
    if (!Array.isArray(set) || set.length === 0) throw invalidArgument(`${fn}: conceptReferences[${k}] must be a non-empty array of images`);
    return set.map((ref, i) => (checkImage(fn, ref, r, `conceptReferences[${k}][${i}]`), conceptDescriptor(ref, r)));
  });
  const analysis = analyzeImage(image, r);
  const own = analysis.objects.slice(0, maxObjects).map((_, i) => descriptorOf(analysis, r, i));
  return refs.map((set) => Math.max(0, ...own.map((d) => set.reduce((a, ref) => a + descriptorSimilarity(d, ref), 0) / set.length)));
}
