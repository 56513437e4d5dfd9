// methods suite: seconds per training step of each personalization method on
// the embedded world model (CPU), one concept ('star'), prior preservation on
// 8 generated class images. Custom Diffusion's step is the peer: a Cones pass
// is the same denoising step without the text-encoder backward and AdamW,
// plus the fused statistic update (neuron_stat_step) on every K/V matrix.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { disposeConcept } from '../lib/concepts/concept-file.js';
import { teachWorldConcepts } from '../lib/world/teach.js';

const STEPS = 30;

export async function runMethodCases(emit: (record: object) => void): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'imprint-bench-methods-'));
  try {
    const common = { concepts: ['star'], steps: STEPS, numRegImages: 8, quiet: true };
    const cd = await teachWorldConcepts({ ...common, method: 'custom-diffusion', workDir: join(work, 'cd') });
    disposeConcept(cd.concept);
    const cones = await teachWorldConcepts({ ...common, method: 'cones', workDir: join(work, 'cones') });
    disposeConcept(cones.concept);
    emit({
      suite: 'methods', name: 'world-step', device: 'cpu', params: { model: 'embedded world', concept: 'star', steps: STEPS, batch: '1 + 1 prior (cones), 2 + 2 (custom diffusion)' },
      imprint_s: cones.secondsPerStep, peer: 'custom diffusion step', peer_s: cd.secondsPerStep, ratio: cones.secondsPerStep / cd.secondsPerStep,
      cones_candidates: cones.counts.candidates, cones_neurons: cones.counts.neurons,
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
