// The tuning encoder's pretraining ablations on the embedded world: the
// world encoder pretrained at one budget (--steps, default 500) three ways
// (full; no contrastive loss; no dual path, α 1; with the 3×3 convolutions
// over the UNet feature maps, 32 channels; ΔW scaled by 10) from the same seed, each
// then scored as quality:encoder scores the shipped one, with the method's
// default personalization (12 steps, α 1). Encoders go to --dir (default
// encoder-ablations/), reused when there.
// npm run quality:encoder-ablations [-- --steps 500 --dir DIR --concepts star,ring --seeds 0,1,2 --only full,conv-trunk]
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

import { saveEncoder } from '../lib/methods/tuning-encoder/encoder-file.js';
import { pretrainWorldEncoder, WORLD_ENCODER_TUNING } from '../lib/world/encoder.js';
import { arg, ENCODER_VARIANTS, evaluateEncoder, printSummary, type EncoderRow } from './encoder-eval.js';

const steps = Number(arg('steps', '500'));
const dir = arg('dir', 'encoder-ablations');
const ids = arg('concepts', 'star,ring,cross,heart').split(',');
const seeds = arg('seeds', '0,1,2').split(',').map(Number);
const ABLATIONS = [
  { name: 'full', options: {} },
  { name: 'no contrastive loss', options: { contrastiveWeight: 0 } },
  { name: 'no dual path', options: { alpha: 1 } },
  { name: 'conv trunk', options: { conv: 32 } },
  { name: 'lora scale 10', options: { loraScale: 10 } },
];
const only = arg('only', '').split(',').filter(Boolean);
mkdirSync(dir, { recursive: true });
const rows: EncoderRow[] = [];
for (const a of ABLATIONS.filter((x) => only.length === 0 || only.includes(x.name.replace(/ /g, '-')))) {
  const file = join(dir, `${a.name.replace(/ /g, '-')}-${steps}.safetensors`);
  if (!existsSync(file)) {
    const t0 = Date.now();
    const r = await pretrainWorldEncoder({ steps, ...a.options, quiet: true });
    await saveEncoder(file, r.encoder, { classWord: 'shape', baseFingerprint: r.baseFingerprint, settings: r.settings, tuning: WORLD_ENCODER_TUNING });
    console.log(JSON.stringify({ pretrained: a.name, steps, seconds: (Date.now() - t0) / 1000, finalLoss: r.losses.at(-1) }));
    r.encoder.dispose();
  }
  rows.push(...await evaluateEncoder(file, a.name, ids, seeds, [ENCODER_VARIANTS[2]]));
}
printSummary(rows);
