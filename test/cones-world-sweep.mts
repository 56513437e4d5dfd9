// npm run quality:cones -- [concept] [passes,...] [rho,...] [topFraction,...]
// The sweep behind the README's Cones table: for each setting, finds the
// concept's neurons on the embedded world model and scores the model with
// them shut on the composition prompts against the base model (2 images a
// prompt, seed 0). One JSON line per setting. A run that diverges stops the
// sweep with the guard's message (lower rho).
import { findNeurons } from '../lib/methods/cones/find.js';
import { conceptById } from '../lib/world/concepts.js';
import { conceptPngs, scoreWorldConcept } from '../lib/world/teach.js';
import { worldModelDir } from '../lib/world/model-path.js';
import type { EvaluateResult } from '../lib/world/evaluate.js';

const [id = 'star', passesList = '200', rhoList = '10,100', fracList = '0.001,0.005'] = process.argv.slice(2);
const c = conceptById(id, 'quality:cones');
const f3 = (x: number): string => x.toFixed(3);
let base: EvaluateResult | undefined;
for (const passes of passesList.split(',').map(Number)) {
  for (const rho of rhoList.split(',').map(Number)) {
    for (const topFraction of fracList.split(',').map(Number)) {
      const t0 = Date.now();
      const r = await findNeurons({
        model: worldModelDir(), images: await conceptPngs(id), classWord: c.classWord, prompt: `a ${c.classWord}`,
        numRegImages: 8, regSteps: 10, passes, rho, topFraction, quiet: true,
      });
      const s = await scoreWorldConcept(r.concept, 0, id, { imagesPerPrompt: 2, steps: 20, ...(base ? { base } : {}) });
      base = s.base;
      console.log(JSON.stringify({
        concept: id, passes, rho, topFraction, neurons: r.counts.neurons,
        image: [f3(s.base.imageAlignment!.mean), f3(s.trained.imageAlignment!.mean)],
        shape: [f3(s.base.shapeAlignment!.mean), f3(s.trained.shapeAlignment!.mean)],
        text: [f3(s.base.textAlignment.mean), f3(s.trained.textAlignment.mean)],
        seconds: (Date.now() - t0) / 1000,
      }));
    }
  }
}
