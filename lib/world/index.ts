// The procedural shapes world (data for pretraining the embedded model, and
// held-out concepts) and its geometric metrics.
// The seeded generator lives in train/ (every method draws from it); WorldRandom is its earlier name.
export { SeededRandom, SeededRandom as WorldRandom } from '../train/random.js';
export {
  BACKGROUNDS, COLOURS, CONCEPT_SHAPES, GENERIC_NOUN, PALETTE, PALETTE_NAMES, POSITION_ANCHOR, POSITIONS, SHAPES, SIZE_EXTENT, SIZES,
  captionOf, layoutSample, parseCaption, placeObject, positionOf, renderScene, sampleScene, sizeOf, worldSample,
  type BackgroundName, type ColourName, type PaletteName, type ParsedCaption, type Pattern, type PatternKind, type Position,
  type RequestedObject, type RGB, type SampleSceneOptions, type Scene, type ShapeName, type Size, type WorldObject,
  type WorldSample, type WorldShape,
} from './scene.js';
export {
  CONCEPT_IDS, CONCEPTS, conceptById, conceptImages, conceptScene,
  type ConceptImage, type ConceptImageOptions, type ConceptLayout, type ConceptSpec,
} from './concepts.js';
export {
  analyzeImage, attributeMatches, conceptDescriptor, conceptPresence, descriptorSimilarity, emptyTallies, formatValidation, imageAlignment, shapeAlignment, shapeSimilarity, stat, textAlignment,
  validateMetrics, withNoise, WORLD_ATTRIBUTES,
  type AttributeTallies, type AttributeTally, type ConceptDescriptor, type DetectedObject, type ImageAnalysis, type MetricValidation, type Stat, type ValidateOptions, type WorldAttribute,
} from './metrics.js';
export { WORLD_MODEL_INDEX, WORLD_RESOLUTION, WORLD_SCHEDULER_CONFIG, WORLD_TEXT_ENCODER_CONFIG, WORLD_UNET_CONFIG } from './model-config.js';
export { worldEncoderPath, worldModelDir } from './model-path.js';
export { pretrainWorldEncoder, worldEncoderImages, WORLD_ENCODER_TUNING, WORLD_SCENES_ID } from './encoder.js';
export { imagesToTensor, pretrainWorld, type PretrainOptions, type PretrainResult } from './pretrain.js';
export { pretrainWorldRecipe, SHIPPED_RECIPE, type PhaseOptions, type PretrainPhase, type RecipeOptions } from './recipe.js';
export {
  evaluate, formatEvaluation, rgbGrid, tensorToRgb, WORLD_EVAL_PROMPTS,
  type EvaluateOptions, type EvaluateResult, type PromptScores,
} from './evaluate.js';
export { COMPOSITION_TEMPLATES, conceptCaptions, conceptPngs, instanceCaption, scoreWorldConcept, teachWorldConcepts, type ConceptScores, type ScoreWorldOptions, type TeachWorldOptions } from './teach.js';
