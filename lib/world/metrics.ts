// Metrics for the shapes world, by deterministic geometric analysis.
//
// The papers score text alignment and image alignment with CLIP embeddings.
// In the shapes world every caption word names a measurable property (a colour
// from a fixed palette, a shape, a size, a position), so the scores can be
// computed exactly instead: find the background, segment the objects, measure
// each one and compare the measurements with what the caption asks for, or with
// the measurements of a concept's reference images. This needs no training and
// no weights, gives the same number on every machine, and every score can be
// audited: analyzeImage() shows what was seen and why a word did or did not match.
//
// One module per purpose under metrics/: image analysis (analysis.ts), text
// alignment (text-alignment.ts), descriptors and similarity (similarity.ts)
// and the validation on ground truth (validation.ts). This module gathers them.
export { analyzeImage, type DetectedObject, type ImageAnalysis } from './metrics/analysis.js';
export {
  attributeMatches, emptyTallies, textAlignment, WORLD_ATTRIBUTES,
  type AttributeTallies, type AttributeTally, type WorldAttribute,
} from './metrics/text-alignment.js';
export {
  conceptDescriptor, conceptPresence, descriptorSimilarity, imageAlignment, shapeAlignment, shapeSimilarity,
  type ConceptDescriptor,
} from './metrics/similarity.js';
export { formatValidation, stat, validateMetrics, withNoise, type MetricValidation, type Stat, type ValidateOptions } from './metrics/validation.js';
