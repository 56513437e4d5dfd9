// Pretraining never writes into the package by default: pretrainWorld and
// pretrainWorldRecipe require outDir (the only natural default would be the
// shipped lib/world/model), with an error that says so.
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { worldModelDir } from '../lib/world/model-path.js';
import { pretrainWorld } from '../lib/world/pretrain.js';
import { pretrainWorldRecipe } from '../lib/world/recipe.js';
import { assertRejects } from './helpers.js';

const t = suite('world.pretrain-out');
const work = mkdtempSync(join(tmpdir(), 'imprint-pretrain-out-'));

function snapshot(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort().map((f) => `${f} ${statSync(join(dir, f)).mtimeMs}`);
}

t('without outDir both refuse, naming outDir, and the packaged model is untouched', async () => {
  const before = snapshot(worldModelDir());
  // Were outDir still defaulting to the package, these would only write a checkpoint, into `work`.
  const scratch = join(work, 'ckpt');
  await assertRejects(() => pretrainWorld({ steps: 2, batchSize: 1, maxStepsThisRun: 1, workDir: scratch, quiet: true }), 'INVALID_ARGUMENT', /^pretrainWorld: outDir is required \(the folder the trained model is written to; the packaged lib\/world\/model is only written when named\)$/);
  await assertRejects(() => pretrainWorld({ outDir: '' }), 'INVALID_ARGUMENT', /outDir must be a folder path, got ''/);
  // A phase pretrainWorld would refuse before writing anything: were outDir not checked first, the message would differ.
  await assertRejects(() => pretrainWorldRecipe({ phases: [{ purpose: 'x', options: { steps: 0 } }], workDir: scratch, quiet: true }), 'INVALID_ARGUMENT', /^pretrainWorldRecipe: outDir is required/);
  assert.not.ok(existsSync(scratch));
  assert.equal(snapshot(worldModelDir()), before);
});

t.after(() => rmSync(work, { recursive: true, force: true }));
t.run();
