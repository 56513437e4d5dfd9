// The tuning encoder on the embedded world: a pretrained world encoder
// (the shipped one, or --encoder FILE) personalizes held-out concepts
// from ONE image each, per personalization seed, for: the prediction alone
// (0 steps), 12 steps with the dual path (α 0.7), 12 steps without it (α 1);
// not run by default: variant 3, the method's generic tuning settings in
// place of the file's, and variant 4, 200 steps at lr 5e-3 without the pull
// (the reach of the adapter itself). --control scores, in place of a
// pretrained encoder, one after 3 pretraining steps (the no-pretraining ablation).
// Prints one JSON line per run and the means ± std per variant.
// npm run quality:encoder [-- --encoder FILE (default the shipped one) | --control] [--concepts star,ring --seeds 0,1,2 --variants 0,1,2]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { saveEncoder } from '../lib/methods/tuning-encoder/encoder-file.js';
import { pretrainWorldEncoder, WORLD_ENCODER_TUNING } from '../lib/world/encoder.js';
import { worldEncoderPath } from '../lib/world/model-path.js';
import { arg, ENCODER_VARIANTS, evaluateEncoder, printSummary } from './encoder-eval.js';

let encoder = arg('encoder', worldEncoderPath());
if (process.argv.includes('--control')) {
  const r = await pretrainWorldEncoder({ steps: 3, quiet: true });
  encoder = join(mkdtempSync(join(tmpdir(), 'imprint-control-encoder-')), 'control.safetensors');
  await saveEncoder(encoder, r.encoder, { classWord: 'shape', baseFingerprint: r.baseFingerprint, settings: r.settings, tuning: WORLD_ENCODER_TUNING });
  r.encoder.dispose();
}
const ids = arg('concepts', 'star,ring,cross,heart').split(',');
const seeds = arg('seeds', '0,1,2').split(',').map(Number);
const variants = arg('variants', '0,1,2').split(',').map((i) => ENCODER_VARIANTS[Number(i)]);
try {
  printSummary(await evaluateEncoder(encoder, process.argv.includes('--control') ? 'control (3 pretraining steps)' : encoder, ids, seeds, variants));
} finally {
  if (process.argv.includes('--control')) rmSync(dirname(encoder), { recursive: true, force: true });
}
