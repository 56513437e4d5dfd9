// The tuning encoder for the embedded world (DESIGN §1.3): pretrained on
// single-object scenes of the world's own shapes (circle, square, triangle
// in every colour, size, place and background; never the held-out concept
// shapes), class word 'shape', with the world's small ViT at 32 px.
// `imprint encoder pretrain` without --model runs this.
import type { RgbImage } from '../concepts/data.js';
import { pretrainEncoder, type PretrainEncoderOptions, type PretrainEncoderResult } from '../methods/tuning-encoder/pretrain.js';
import { SeededRandom } from '../train/random.js';
import { WORLD_RESOLUTION } from './model-config.js';
import { worldModelDir } from './model-path.js';
import { renderScene, sampleScene } from './scene.js';

/** Step `step`'s batch of single-object world scenes (seeded by `seed`). */
export function worldEncoderImages(seed: number): (step: number, batch: number) => RgbImage[] {
  return (step, batch) => {
    const rng = new SeededRandom(seed * 1_000_003 + step + 17);
    return Array.from({ length: batch }, (_, i) => ({
      name: `world scene ${step}/${i}`, width: WORLD_RESOLUTION, height: WORLD_RESOLUTION, data: Buffer.from(renderScene(sampleScene(rng, { objectCount: 1 }), WORLD_RESOLUTION)),
    }));
  };
}

/** Pretrains the world's encoder; options as pretrainEncoder's, with the world's model, images and class word. */
export function pretrainWorldEncoder(options: Partial<Omit<PretrainEncoderOptions, 'model' | 'images' | 'classWord'>> = {}): Promise<PretrainEncoderResult> {
  return pretrainEncoder({ steps: 2000, batchSize: 8, lr: 1e-3, ...options, model: worldModelDir(), images: worldEncoderImages(options.seed ?? 0), classWord: 'shape' });
}
