// The tuning encoder on the embedded world: a pretrained world encoder
// (the shipped one, or --encoder FILE) personalizes held-out concepts
// from ONE image each, per personalization seed, for: the prediction alone
// (0 steps), 12 steps with the dual path (α 0.7), 12 steps without it (α 1);
// variant 3 (not run by default) tunes 200 steps at lr 5e-3 without the pull:
// the reach of the adapter itself.
// Prints one JSON line per run and the means ± std per variant.
// npm run quality:encoder [-- --encoder FILE (default the shipped one) --concepts star,ring --seeds 0,1,2 --variants 0,1,2]
import { worldEncoderPath } from '../lib/world/model-path.js';
import { arg, ENCODER_VARIANTS, evaluateEncoder, printSummary } from './encoder-eval.js';

const encoder = arg('encoder', worldEncoderPath());
const ids = arg('concepts', 'star,ring,cross,heart').split(',');
const seeds = arg('seeds', '0,1,2').split(',').map(Number);
const variants = arg('variants', '0,1,2').split(',').map((i) => ENCODER_VARIANTS[Number(i)]);
printSummary(await evaluateEncoder(encoder, encoder, ids, seeds, variants));
