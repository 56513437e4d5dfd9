// Several Cones subjects on the embedded world: the neurons of the striped
// square ("a square"), the checker circle ("a circle") and, for three, the
// star ("a shape"), found apart with the world defaults, then sampled on
// prompts naming every subject: the base model, the united neurons, the
// united neurons fine-tuned on those prompts (combineSubjects), each with and
// without generate({ excite }). Counts the images in which every subject is
// found (conceptPresence ≥ τ for each), per search seed.
// npm run quality:cones-multi [-- --seeds 0,1,2 --subjects 2,3]
import { applyConcepts } from '../lib/concepts/apply.js';
import { disposeConcept } from '../lib/concepts/concept-file.js';
import type { ConesConcept, ConceptWeights } from '../lib/concepts/types.js';
import { combineSubjects } from '../lib/methods/cones/combine.js';
import { tensorToRgb } from '../lib/pipeline/images.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { conceptById, conceptImages } from '../lib/world/concepts.js';
import { conceptPresence } from '../lib/world/metrics.js';
import { WORLD_RESOLUTION } from '../lib/world/model-config.js';
import { worldModelDir } from '../lib/world/model-path.js';
import { conceptPngs, teachWorldConcepts } from '../lib/world/teach.js';

const arg = (name: string, fallback: string): string => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const seeds = arg('seeds', '0,1,2').split(',').map(Number);
const counts = arg('subjects', '2,3').split(',').map(Number);
const THRESHOLDS = [0.2, 0.3, 0.4];
const IDS = ['striped-square', 'checker-circle', 'star'];
const PROMPTS: Record<number, string[]> = {
  2: [
    'a square on the left and a circle on the right',
    'a circle on the left and a square on the right',
    'a square at the top and a circle at the bottom',
    'a circle at the top and a square at the bottom',
  ],
  3: [
    'a square on the left and a circle on the right and a shape at the top',
    'a circle on the left and a shape on the right and a square at the bottom',
    'a shape on the left and a square on the right and a circle at the top',
    'a square at the top and a shape at the bottom and a circle in the center',
  ],
};
const PER_PROMPT = 3;
const r = WORLD_RESOLUTION;
const model = worldModelDir();

type Row = { seed: number; subjects: number; variant: string; all: Record<number, number>; of: number };
const rows: Row[] = [];
for (const seed of seeds) {
  const t0 = Date.now();
  const found: ConesConcept[] = [];
  for (const id of IDS) found.push((await teachWorldConcepts({ concepts: [id], method: 'cones', seed, quiet: true })).concept as ConesConcept);
  try {
    for (const n of counts) {
      const ids = IDS.slice(0, n);
      const refs = ids.map((id) => conceptImages(id, { resolution: r, seed: 1 }).map((c) => c.image));
      const words = ids.map((id) => conceptById(id, 'quality').classWord);
      const prompts = PROMPTS[n];
      const united = await combineSubjects({ model, concepts: found.slice(0, n) });
      const tuned = await combineSubjects({
        model, concepts: found.slice(0, n), prompts, excite: words, images: await Promise.all(ids.map((id) => conceptPngs(id))), seed, quiet: true,
      });
      const variants: [string, ConceptWeights | undefined][] = [['base', undefined], ['united', united.concept], ['fine-tuned', tuned.concept]];
      for (const [name, concept] of variants) {
        const pipe = await StableDiffusionPipeline.fromPretrained(model, { scheduler: 'dpm++2m' });
        try {
          if (concept) await applyConcepts(pipe, [concept]);
          for (const excite of [false, true]) {
            const all: Record<number, number> = Object.fromEntries(THRESHOLDS.map((t) => [t, 0]));
            for (const [k, prompt] of prompts.entries()) {
              const out = await pipe.generate({
                prompt, numImages: PER_PROMPT, width: r, height: r, steps: 25, guidanceScale: 4, seed: seed * 1000 + k, ...(excite ? { excite: words } : {}),
              });
              for (const im of tensorToRgb(out.images)) {
                const s = conceptPresence(im, refs, r);
                for (const t of THRESHOLDS) if (s.every((v) => v >= t)) all[t]++;
              }
              out.images.dispose(), out.latents.dispose();
            }
            const variant = `${name}${excite ? ' + excite' : ''}`;
            rows.push({ seed, subjects: n, variant, all, of: prompts.length * PER_PROMPT });
            console.error(`seed ${seed}, ${n} subjects, ${variant}: all shown (τ ${THRESHOLDS.join('/')}) ${THRESHOLDS.map((t) => all[t]).join('/')} of ${prompts.length * PER_PROMPT}`);
          }
        } finally {
          pipe.dispose();
        }
      }
      console.error(`seed ${seed}, ${n} subjects: fine-tuning losses ${JSON.stringify(tuned.losses.map((l) => [+l.diffusion.toFixed(4), +l.attention.toFixed(3)]))}`);
      disposeConcept(united.concept), disposeConcept(tuned.concept);
    }
  } finally {
    found.forEach(disposeConcept);
  }
  console.error(`seed ${seed} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
console.log(JSON.stringify(rows));
