// The tuning encoder for the embedded world (DESIGN §1.3): pretrained on
// single-object scenes of procedural shapes (random polygons, some with a
// hole or a pattern) and, one in four, the world's own shapes, in every
// colour, size, place and background, class word 'shape', with the world's
// small ViT at 32 px. The domain must hold many shapes for the encoder to
// learn to carry a new one (with the world's three alone it learned none);
// the held-out concepts' outlines are never drawn as such.
// `imprint pretrain-encoder` without --model runs this.
import type { RgbImage } from '../concepts/data.js';
import type { EncoderTuning } from '../methods/tuning-encoder/encoder-file.js';
import { pretrainEncoder, type PretrainEncoderOptions, type PretrainEncoderResult } from '../methods/tuning-encoder/pretrain.js';
import { SeededRandom } from '../train/random.js';
import { WORLD_RESOLUTION } from './model-config.js';
import { worldModelDir } from './model-path.js';
import { BACKGROUNDS, COLOURS, PALETTE_NAMES, POSITIONS, SIZES, placeObject, renderScene, sampleScene, type Scene } from './scene.js';

/** Share of the pretraining scenes that show one of the world's own shapes. */
const WORLD_SHAPE_SHARE = 0.25;

/**
 * A random polygon around the centre (3-12 vertices at jittered angles and
 * radii 0.2-1, turned at random), stretched to fill the box [-1, 1]²; one in
 * six has a hole (itself scaled by 0.3-0.6), so hollow shapes are in the domain.
 */
export function proceduralOutline(rng: SeededRandom): NonNullable<Scene['objects'][number]['outline']> {
  const n = rng.int(3, 12);
  const turn = rng.uniform(0, 2 * Math.PI);
  const raw = Array.from({ length: n }, (_, k) => {
    const a = turn + ((k + rng.uniform(-0.3, 0.3)) * 2 * Math.PI) / n;
    const r = rng.uniform(0.2, 1);
    return [r * Math.cos(a), r * Math.sin(a)] as const;
  });
  const xs = raw.map((p) => p[0]), ys = raw.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const fit = (p: readonly [number, number], s: number): readonly [number, number] => {
    const u = ((p[0] - (x0 + x1) / 2) * 2 * s) / (x1 - x0), v = ((p[1] - (y0 + y1) / 2) * 2 * s) / (y1 - y0);
    return [Math.max(-1, Math.min(1, u)), Math.max(-1, Math.min(1, v))] as const;
  };
  const vertices = raw.map((p) => fit(p, 1));
  if (!rng.chance(1 / 6)) return { vertices };
  const s = rng.uniform(0.3, 0.6);
  return { vertices, hole: raw.map((p) => fit(p, s)) };
}

/** One pretraining scene: a procedural shape (a pattern one time in five), or one in four a world shape. */
export function encoderScene(rng: SeededRandom): Scene {
  if (rng.chance(WORLD_SHAPE_SHARE)) return sampleScene(rng, { objectCount: 1 });
  const background = rng.pick(BACKGROUNDS);
  const colours = COLOURS.filter((c) => c !== background);
  const colour = rng.pick(colours);
  const obj = { ...placeObject(rng, 'square', colour, rng.pick(SIZES), rng.pick(POSITIONS)), outline: proceduralOutline(rng) };
  if (rng.chance(0.2)) {
    const second = PALETTE_NAMES.filter((c) => c !== colour && c !== background);
    return { background, objects: [{ ...obj, pattern: { kind: rng.chance(0.5) ? 'stripes' : 'checker', colour: rng.pick(second) } }] };
  }
  return { background, objects: [obj] };
}

/** Names the scene generator in a pretraining's settings: change it when encoderScene changes, so old work dirs are not resumed. */
export const WORLD_SCENES_ID = 'world encoder scenes v2 (procedural outlines)';

/** Step `step`'s batch of pretraining scenes (seeded by `seed`). */
export function worldEncoderImages(seed: number): (step: number, batch: number) => RgbImage[] {
  return (step, batch) => {
    const rng = new SeededRandom(seed * 1_000_003 + step + 17);
    return Array.from({ length: batch }, (_, i) => ({
      name: `world scene ${step}/${i}`, width: WORLD_RESOLUTION, height: WORLD_RESOLUTION, data: Buffer.from(renderScene(encoderScene(rng), WORLD_RESOLUTION)),
    }));
  };
}

/**
 * How the world's encoders personalize (written into their files): 8 noise draws per step at lr 1e-2,
 * no pull. Measured on the held-out concepts (docs/tuning-encoder-world.md): the method's generic
 * 2 draws at 2e-3 with pull 1 leave the prediction where it is; the pull, even at 0.01, holds the
 * LoRA factors near the encoder's small prediction.
 */
export const WORLD_ENCODER_TUNING: Readonly<EncoderTuning> = { lr: 1e-2, batchSize: 8, pullWeight: 0 };

/** Pretrains the world's encoder; options as pretrainEncoder's, with the world's model, images and class word. */
export function pretrainWorldEncoder(options: Partial<Omit<PretrainEncoderOptions, 'model' | 'images' | 'imagesId' | 'classWord'>> = {}): Promise<PretrainEncoderResult> {
  return pretrainEncoder({ steps: 2000, batchSize: 8, lr: 1e-3, ...options, model: worldModelDir(), images: worldEncoderImages(options.seed ?? 0), imagesId: `${WORLD_SCENES_ID} seed ${options.seed ?? 0}`, classWord: 'shape' });
}
