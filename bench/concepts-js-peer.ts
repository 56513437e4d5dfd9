// The concepts bench's peer: the same compression with lib's JavaScript
// linear algebra, run by bench/concepts.ts as a child process with
// IMPRINT_BLAS=none (which turns LAPACK off). Prints {"seconds", "runs"}.
//   node --import tsx bench/concepts-js-peer.ts <case name>
import { linalgBackend } from '../lib/concepts/linalg.js';
import { CONCEPT_CASES } from './concepts.js';
import { time } from './measure.js';

const name = process.argv[2];
const c = CONCEPT_CASES.find((x) => x.name === name);
if (!c) {
  console.error(`concepts-js-peer: unknown case '${name}' (one of: ${CONCEPT_CASES.map((x) => x.name).join(', ')})`);
  process.exit(2);
}
const { backend, detail } = linalgBackend();
if (backend !== 'js') {
  console.error(`concepts-js-peer: expected the JavaScript routines (run with IMPRINT_BLAS=none), got ${backend}: ${detail}`);
  process.exit(1);
}
const matrices = c.matrices();
const t = await time(async () => c.step(matrices), c.peerTiming);
console.log(JSON.stringify({ seconds: t.median_s, runs: t.runs }));
