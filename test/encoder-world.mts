// The tuning encoder on the embedded world: a pretrained world encoder
// (the shipped one, or --encoder FILE) personalizes held-out concepts
// from ONE image each; scored as Custom Diffusion is (6 composition prompts ×
// 2 images, the base model with the class word alone), per personalization
// seed, for: the prediction alone (0 steps), 12 steps with the dual path
// (α 0.7), 12 steps without it (α 1). Prints one JSON line per run and the
// means ± std per variant.
// npm run quality:encoder [-- --encoder FILE (default the shipped one) --concepts star,ring --seeds 0,1,2 --variants 0,1,2]
import { disposeConcept } from '../lib/concepts/concept-file.js';
import { personalize } from '../lib/methods/tuning-encoder/personalize.js';
import type { EvaluateResult } from '../lib/world/evaluate.js';
import { stat } from '../lib/world/metrics.js';
import { worldEncoderPath, worldModelDir } from '../lib/world/model-path.js';
import { conceptById } from '../lib/world/concepts.js';
import { conceptPngs, scoreWorldConcept } from '../lib/world/teach.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const encoder = arg('encoder', worldEncoderPath());
const ids = arg('concepts', 'star,ring,cross,heart').split(',');
const seeds = arg('seeds', '0,1,2').split(',').map(Number);
const ALL_VARIANTS = [
  { name: 'predict only', steps: 0, alpha: 1 },
  { name: '12 steps, dual path α 0.7', steps: 12, alpha: 0.7 },
  { name: '12 steps, no dual path', steps: 12, alpha: 1 },
];
const VARIANTS = arg('variants', '0,1,2').split(',').map((i) => ALL_VARIANTS[Number(i)]);
const f3 = (x: number): string => x.toFixed(3);
const rows: { id: string; seed: number; variant: string; image: number; shape: number; text: number; seconds: number }[] = [];
const bases = new Map<string, EvaluateResult>();
for (const id of ids) {
  const c = conceptById(id, 'quality:encoder');
  const image = (await conceptPngs(id, 1))[0];
  for (const seed of seeds) {
    for (const v of VARIANTS) {
      const t0 = Date.now();
      const r = await personalize({ model: worldModelDir(), encoder, image, classWord: c.classWord, steps: v.steps, alpha: v.alpha, seed, quiet: true });
      const seconds = (Date.now() - t0) / 1000;
      const s = await scoreWorldConcept(r.concept, 0, id, { imagesPerPrompt: 2, steps: 20, seed, ...(bases.has(`${id}/${seed}`) ? { base: bases.get(`${id}/${seed}`)! } : {}) });
      bases.set(`${id}/${seed}`, s.base);
      disposeConcept(r.concept);
      const row = { id, seed, variant: v.name, image: s.trained.imageAlignment!.mean, shape: s.trained.shapeAlignment!.mean, text: s.trained.textAlignment.mean, seconds };
      rows.push(row);
      console.log(JSON.stringify({ ...row, base: [f3(s.base.imageAlignment!.mean), f3(s.base.shapeAlignment!.mean), f3(s.base.textAlignment.mean)] }));
    }
  }
}
for (const v of VARIANTS) {
  const rs = rows.filter((r) => r.variant === v.name);
  const m = (k: 'image' | 'shape' | 'text' | 'seconds') => { const x = stat(rs.map((r) => r[k])); return `${f3(x.mean)} ± ${f3(x.std)}`; };
  console.log(JSON.stringify({ variant: v.name, image: m('image'), shape: m('shape'), text: m('text'), seconds: m('seconds') }));
}
const base = [...bases.values()];
const bm = (k: 'imageAlignment' | 'shapeAlignment' | 'textAlignment') => { const x = stat(base.map((b) => b[k]!.mean)); return `${f3(x.mean)} ± ${f3(x.std)}`; };
console.log(JSON.stringify({ variant: 'base model', image: bm('imageAlignment'), shape: bm('shapeAlignment'), text: bm('textAlignment') }));
