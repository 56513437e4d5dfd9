// npm run bench -- [suite] [--out FILE]
// Suites: matmul (cpu and cuda), cpu, cuda, all (default). Prints JSON Lines;
// --out also appends them to FILE (default dir bench/results/).
import { appendFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { benchMatmul } from './matmul.js';

const SUITES = ['all', 'matmul', 'cpu', 'cuda'];
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
let outFile: string | null = null;
if (outIndex >= 0) {
  const given = args[outIndex + 1];
  outFile = given && !given.startsWith('--') ? given : join(dirname(fileURLToPath(import.meta.url)), 'results', `bench-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`);
  args.splice(outIndex, given && !given.startsWith('--') ? 2 : 1);
}
const suite = args[0] ?? 'all';
if (!SUITES.includes(suite)) {
  console.error(`bench: unknown suite '${suite}' (one of: ${SUITES.join(', ')})`);
  process.exit(2);
}
if (outFile) mkdirSync(dirname(outFile), { recursive: true });

const emit = (record: object): void => {
  const line = JSON.stringify(record);
  console.log(line);
  if (outFile) appendFileSync(outFile, line + '\n');
};

await benchMatmul(suite === 'matmul' || suite === 'all' ? 'all' : suite, emit);
