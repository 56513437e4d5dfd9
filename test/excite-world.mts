// Attend-and-Excite on the embedded world: Custom Diffusion's merged pair
// (star as <new1>, ring as <new2>, trained apart and merged in closed form),
// sampled on prompts naming both, with and without generate({ excite }).
// Counts the images in which both concepts are found (conceptPresence ≥ τ for
// each), per training seed. npm run quality:excite [-- --seeds 0,1,2 --scales 20]
import { disposeConcept } from '../lib/concepts/concept-file.js';
import { applyConcepts } from '../lib/concepts/apply.js';
import { mergeConcepts } from '../lib/methods/custom-diffusion/merge.js';
import { tensorToRgb } from '../lib/pipeline/images.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { conceptImages } from '../lib/world/concepts.js';
import { conceptPresence, stat } from '../lib/world/metrics.js';
import { WORLD_RESOLUTION } from '../lib/world/model-config.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { teachWorldConcepts } from '../lib/world/teach.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const seeds = arg('seeds', '0,1,2').split(',').map(Number);
const scales = arg('scales', '20').split(',').map(Number);
const THRESHOLDS = [0.2, 0.3, 0.4];
const PROMPTS = [
  'a <new1> shape on the left and a <new2> shape on the right',
  'a <new2> shape on the left and a <new1> shape on the right',
  'a <new1> shape at the top and a <new2> shape at the bottom',
  'a <new2> shape at the top and a <new1> shape at the bottom',
];
const PER_PROMPT = 3;
const r = WORLD_RESOLUTION;
const refs = [conceptImages('star', { resolution: r, seed: 1 }).map((c) => c.image), conceptImages('ring', { resolution: r, seed: 1 }).map((c) => c.image)];

type Row = { seed: number; scale: number; both: Record<number, number>; loss: number[] };
const rows: Row[] = [];
for (const seed of seeds) {
  const t0 = Date.now();
  const star = (await teachWorldConcepts({ concepts: ['star'], seed, quiet: true })).concept;
  const ring = (await teachWorldConcepts({ concepts: ['ring'], tokens: ['<new2>'], seed, quiet: true })).concept;
  const pipe = await StableDiffusionPipeline.fromPretrained(worldModelDir(), { scheduler: 'dpm++2m' });
  try {
    const merged = await mergeConcepts(pipe, [star, ring]);
    await applyConcepts(pipe, [merged.concept]);
    disposeConcept(merged.concept);
    for (const scale of [0, ...scales]) {
      const both: Record<number, number> = Object.fromEntries(THRESHOLDS.map((t) => [t, 0]));
      const losses: number[] = [];
      for (const [k, prompt] of PROMPTS.entries()) {
        const out = await pipe.generate({
          prompt, numImages: PER_PROMPT, width: r, height: r, steps: 25, guidanceScale: 4, seed: seed * 1000 + k,
          ...(scale > 0 ? { excite: ['<new1>', '<new2>'], exciteScale: scale, onExcite: (i: { step: number; loss: number[] }) => { if (i.step === 1) losses.push(...i.loss); } } : {}),
        });
        for (const im of tensorToRgb(out.images)) {
          const [s, g] = conceptPresence(im, refs, r);
          for (const t of THRESHOLDS) if (s >= t && g >= t) both[t]++;
        }
        out.images.dispose(), out.latents.dispose();
      }
      rows.push({ seed, scale, both, loss: losses });
      console.error(`seed ${seed} scale ${scale}: both (τ ${THRESHOLDS.join('/')}) ${THRESHOLDS.map((t) => both[t]).join('/')} of ${PROMPTS.length * PER_PROMPT}${losses.length ? `, first-step loss ${stat(losses).mean.toFixed(3)}` : ''}`);
    }
  } finally {
    pipe.dispose();
    disposeConcept(star), disposeConcept(ring);
  }
  console.error(`seed ${seed} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
console.log(JSON.stringify(rows));
