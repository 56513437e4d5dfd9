// Test runner: every test/*.test.ts file through uvu, then one closing line
// "N passed, N failed" that CI reads. Filter with arguments: npm test -- ops random
declare global {
  // uvu's runner globals (see uvu/run)
  var UVU_DEFER: number;
  var UVU_INDEX: number;
  var UVU_QUEUE: unknown[][];
}
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

type Outcome = [errors: string, ran: number, skipped: number, total: number];

const dir = dirname(fileURLToPath(import.meta.url));
const filters = process.argv.slice(2);
const files = readdirSync(dir)
  .filter((f) => f.endsWith('.test.ts'))
  .filter((f) => filters.length === 0 || filters.some((p) => f.includes(p)))
  .sort();

globalThis.UVU_DEFER = 1;
const uvu = await import('uvu');
globalThis.UVU_QUEUE ??= [];
for (const [index, file] of files.entries()) {
  globalThis.UVU_INDEX = index;
  globalThis.UVU_QUEUE.push([file]);
  await import(pathToFileURL(join(dir, file)).href);
}

let passed = 0;
let failed = 0;
let skipped = 0;
for (const group of globalThis.UVU_QUEUE) {
  for (let i = 1; i < group.length; i++) {
    const runSuite = group[i] as () => Promise<Outcome>;
    group[i] = async () => {
      const outcome = await runSuite();
      const [, ran, skip, total] = outcome;
      passed += ran;
      skipped += skip;
      failed += total - ran;
      return outcome;
    };
  }
}
await uvu.exec(false);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
