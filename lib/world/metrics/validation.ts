// Checking the world's metrics on ground truth from the generator:
// validateMetrics() measures how far the scores can be trusted, with the
// noise (withNoise) and summary statistics (stat) it uses.
import { invalidArgument } from '../../errors.js';
import { checkInt, checkNumber, checkNumberIn, checkOptions, describe } from '../../validate.js';
import { SeededRandom } from '../../train/random.js';
import { CONCEPTS, conceptImages, conceptScene } from '../concepts.js';
import { checkResolution, renderScene, worldSample } from '../scene.js';
import { imageAlignment, shapeAlignment } from './similarity.js';
import { textAlignment } from './text-alignment.js';

/** A copy of the image with deterministic Gaussian noise of standard deviation `sigma` (0-255 units) per channel. */
export function withNoise(image: Uint8Array, sigma: number, seed = 0): Uint8Array {
  if (!(image instanceof Uint8Array)) throw invalidArgument(`withNoise: image must be a Uint8Array, got ${describe(image)}`);
  checkNumberIn('withNoise', 'sigma', sigma, 0, 255);
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed) || seed < 0) {
    throw invalidArgument(`withNoise: seed must be a non-negative integer, got ${describe(seed)}`);
  }
  const rng = new SeededRandom(seed).fork('noise');
  return Uint8Array.from(image, (v) => Math.min(255, Math.max(0, Math.round(v + sigma * rng.normal()))));
}

export interface Stat {
  mean: number;
  std: number;
  min: number;
  max: number;
  count: number;
}

/** Mean, standard deviation (population), min, max and count of scores. */
export function stat(xs: readonly number[]): Stat {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / n);
  return { mean, std, min: Math.min(...xs), max: Math.max(...xs), count: n };
}

export interface MetricValidation {
  samples: number;
  resolution: number;
  seed: number;
  noise: number;
  /** textAlignment of each ground-truth image with its own caption. */
  textMatching: Stat;
  /** ... with the caption of another random scene. */
  textMismatched: Stat;
  /** ... with its own caption, after Gaussian noise of `noise` is added. */
  textNoisy: Stat;
  /** imageAlignment of held-out instances (another seed) with their own concept's references. */
  imageSame: Stat;
  /** ... with every other concept's references. */
  imageDifferent: Stat;
  /** Fraction of (instance, other concept) pairs where the own concept scores higher. */
  rankedCorrectly: number;
  /** Probability that a random same-concept score exceeds a random different-concept score (ties count half). */
  auc: number;
  /** shapeAlignment of held-out instances with their own concept's references. */
  shapeSame: Stat;
  /** ... of every other concept's shape drawn in this concept's colour and pattern (colour held equal), with this concept's references. */
  shapeDifferent: Stat;
  /** AUC of shapeSame over shapeDifferent. */
  shapeAuc: number;
  /** imageAlignment of those same-colour other shapes: how much of the combined score colour alone buys. */
  imageDifferentSameColour: Stat;
}

export interface ValidateOptions {
  /** Ground-truth scenes for the text scores (default 200). */
  samples?: number;
  resolution?: number;
  seed?: number;
  /** Noise standard deviation for the robustness figure (default 12, in 0-255 units). */
  noise?: number;
  /** Held-out instances per concept for the image scores (default 5). */
  instances?: number;
}

/** Probability that a random score of `same` exceeds a random one of `different` (ties count half). */
function aucOf(same: readonly number[], different: readonly number[]): number {
  let wins = 0;
  for (const a of same) for (const b of different) wins += a > b ? 1 : a === b ? 0.5 : 0;
  return wins / (same.length * different.length);
}

/** Scores the metrics on ground truth from the generator: how well they separate right from wrong. */
export function validateMetrics(options?: ValidateOptions): MetricValidation {
  const fn = 'validateMetrics';
  const o = checkOptions(fn, options, ['samples', 'resolution', 'seed', 'noise', 'instances']);
  const samples = checkInt(fn, 'samples', o.samples ?? 200, 2, 100_000);
  const seed = checkInt(fn, 'seed', o.seed ?? 0, 0, Number.MAX_SAFE_INTEGER - 1);
  const instances = checkInt(fn, 'instances', o.instances ?? 5, 1, 100);
  const resolution = checkResolution(fn, o.resolution ?? 32);
  const noise = checkNumber(fn, 'noise', o.noise, 12);
  if (noise < 0 || noise > 255) throw invalidArgument(`${fn}: noise must be in [0, 255], got ${noise}`);

  const matching: number[] = [];
  const mismatched: number[] = [];
  const noisy: number[] = [];
  for (let i = 0; i < samples; i++) {
    const s = worldSample(seed, i, resolution);
    matching.push(textAlignment(s.image, s.caption, resolution));
    mismatched.push(textAlignment(s.image, worldSample(seed + 1, i, resolution).caption, resolution));
    const noiseSeed = new SeededRandom(seed).fork(`noise:${i}`).int(0, 2 ** 31);
    noisy.push(textAlignment(withNoise(s.image, noise, noiseSeed), s.caption, resolution));
  }

  const references = CONCEPTS.map((c) => conceptImages(c.id, { count: 5, resolution, seed }).map((x) => x.image));
  const same: number[] = [];
  const different: number[] = [];
  let correct = 0;
  let pairs = 0;
  CONCEPTS.forEach((c, ci) => {
    for (const { image } of conceptImages(c.id, { count: instances, resolution, seed: seed + 1 })) {
      const own = imageAlignment(image, references[ci], resolution);
      same.push(own);
      references.forEach((refs, di) => {
        if (di === ci) return;
        const other = imageAlignment(image, refs, resolution);
        different.push(other);
        pairs++;
        if (own > other) correct++;
      });
    }
  });
  // Shape with colour held equal: every other concept's shape in this concept's colour and pattern.
  const shapeSame: number[] = [];
  const shapeDifferent: number[] = [];
  const imageSameColour: number[] = [];
  CONCEPTS.forEach((c, ci) => {
    for (const { image } of conceptImages(c.id, { count: instances, resolution, seed: seed + 1 })) shapeSame.push(shapeAlignment(image, references[ci], resolution));
    for (const other of CONCEPTS) {
      if (other.id === c.id) continue;
      const recoloured = { ...other, colour: c.colour, ...(c.pattern ? { pattern: c.pattern } : { pattern: undefined }) };
      const rng = new SeededRandom(seed + 1).fork(`recoloured:${other.id}:${c.id}`);
      for (let i = 0; i < instances; i++) {
        const image = renderScene(conceptScene(recoloured, rng.fork(i)), resolution);
        shapeDifferent.push(shapeAlignment(image, references[ci], resolution));
        imageSameColour.push(imageAlignment(image, references[ci], resolution));
      }
    }
  });

  return {
    samples, resolution, seed, noise,
    textMatching: stat(matching),
    textMismatched: stat(mismatched),
    textNoisy: stat(noisy),
    imageSame: stat(same),
    imageDifferent: stat(different),
    rankedCorrectly: correct / pairs,
    auc: aucOf(same, different),
    shapeSame: stat(shapeSame),
    shapeDifferent: stat(shapeDifferent),
    shapeAuc: aucOf(shapeSame, shapeDifferent),
    imageDifferentSameColour: stat(imageSameColour),
  };
}

/** A short plain-text table of a validation. */
export function formatValidation(v: MetricValidation): string {
  const row = (name: string, s: Stat) =>
    `${name.padEnd(32)} ${s.mean.toFixed(3).padStart(6)} ${s.std.toFixed(3).padStart(6)} ${s.min.toFixed(3).padStart(6)} ${String(s.count).padStart(6)}`;
  return [
    `metric validation: ${v.samples} scenes at ${v.resolution}×${v.resolution}, seed ${v.seed}`,
    `${'score'.padEnd(32)} ${'mean'.padStart(6)} ${'std'.padStart(6)} ${'min'.padStart(6)} ${'n'.padStart(6)}`,
    row('text, own caption', v.textMatching),
    row('text, other caption', v.textMismatched),
    row(`text, own caption, noise ${v.noise}`, v.textNoisy),
    row('image, same concept', v.imageSame),
    row('image, different concept', v.imageDifferent),
    `ranked correctly ${v.rankedCorrectly.toFixed(3)}   AUC ${v.auc.toFixed(3)}`,
    row('shape, same concept', v.shapeSame),
    row('shape, other shape same colour', v.shapeDifferent),
    row('image, other shape same colour', v.imageDifferentSameColour),
    `shape AUC (colour held equal) ${v.shapeAuc.toFixed(3)}`,
  ].join('\n');
}
