// `imprint train` (lib/cli/commands-train.ts) on the tiny model: one concept
// from flags and two from a JSON file, the written file's layout, and bad
// flags; on the embedded world model (no --model), its own default lr.
import { writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { TRAIN_COMMANDS } from '../lib/cli/commands-train.js';
import { CONCEPT_FORMAT } from '../lib/concepts/concept-file.js';
import { loadSafetensors, readSafetensorsHeader } from '../lib/io/safetensors.js';
import { WORLD_TEACH_LR } from '../lib/world/teach.js';
import { conceptFolder, removeTempFolders, tempFolder, tinyModelFolder } from './cd-fixture.js';
import { assertRejects } from './helpers.js';

const t = suite('cd-train.cli');
t.after(removeTempFolders);
const train = TRAIN_COMMANDS.train;

// The command prints one JSON line; keep it off the test output.
async function quietly<T>(f: () => Promise<T>): Promise<T> {
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    return await f();
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
}

const small = { steps: '1', resolution: '16', 'num-reg-images': '1', 'reg-steps': '1', 'batch-size': '1' };

t('one concept from flags: the file holds every K/V delta, the token row and the metadata', async () => {
  const model = await tinyModelFolder();
  const images = await conceptFolder(2, [200, 0, 0]);
  const dir = await tempFolder('imprint-cd-cli-');
  const out = join(dir, 'dog.safetensors');
  await quietly(() => train.run({ model, method: 'custom-diffusion', class: 'dog', images, initializer: 'x', token: '<dog1>', out, 'work-dir': dir, ...small }, []));
  const h = readSafetensorsHeader(out);
  assert.is(h.metadata.format, CONCEPT_FORMAT);
  assert.is(h.metadata.method, 'custom-diffusion');
  assert.is(h.metadata.mode, 'kv');
  assert.equal(JSON.parse(h.metadata.tokens), [{ token: '<dog1>', classWord: 'dog', prompt: 'photo of a <dog1> dog' }]);
  assert.match(h.metadata.base_fingerprint, /^sha256:/);
  const names = Object.keys(h.tensors);
  assert.ok(names.includes('token/<dog1>'));
  const deltas = names.filter((n) => n.startsWith('delta/'));
  assert.ok(deltas.length > 0 && deltas.every((n) => /\.attn2\.to_[kv]\.weight$/.test(n)));
  const loaded = await loadSafetensors(out);
  assert.equal(loaded.get('token/<dog1>')!.shape, [32]);
  // With --model, SD's base lr 1e-5 (scaled by batch 1 and × 2 for the prior).
  assert.is(Number(readSafetensorsHeader(join(dir, 'checkpoint.safetensors')).metadata.lr), 1e-5 * 1 * 2);
});

t('without --model the embedded world model trains at the world lr (1e-3), not SD\'s 1e-5; --lr still overrides it', async () => {
  const images = await conceptFolder(1, [200, 0, 0]);
  const lrOf = async (extra: Record<string, string>): Promise<number> => {
    const dir = await tempFolder('imprint-cd-cli-');
    await quietly(() => train.run({ class: 'shape', images, out: join(dir, 'c.safetensors'), 'work-dir': dir, ...small, ...extra }, []));
    return Number(readSafetensorsHeader(join(dir, 'checkpoint.safetensors')).metadata.lr);
  };
  assert.is(WORLD_TEACH_LR, 1e-3);
  assert.is(await lrOf({}), WORLD_TEACH_LR * 1 * 2, 'scaled by batch 1 and × 2 for the prior');
  assert.is(await lrOf({ lr: '5e-4' }), 5e-4 * 1 * 2);
});

t('several concepts from a JSON file, image folders relative to it; cross mode', async () => {
  const model = await tinyModelFolder();
  const red = await conceptFolder(1, [200, 0, 0]);
  const blue = await conceptFolder(1, [0, 0, 200]);
  const dir = await tempFolder('imprint-cd-cli-');
  const file = join(dir, 'concepts.json');
  writeFileSync(file, JSON.stringify([
    { classWord: 'dog', images: join('..', basename(red)), initializer: 'x', numRegImages: 1 },
    { classWord: 'cat', images: blue, initializer: 'z', numRegImages: 1 },
  ]));
  const out = join(dir, 'both.safetensors');
  await quietly(() => train.run({ model, concepts: file, out, mode: 'cross', steps: '2', resolution: '16', 'reg-steps': '1', 'batch-size': '1', 'work-dir': dir }, []));
  const h = readSafetensorsHeader(out);
  assert.equal(JSON.parse(h.metadata.tokens).map((x: { token: string }) => x.token), ['<new1>', '<new2>']);
  assert.is(h.metadata.mode, 'cross');
  assert.ok(Object.keys(h.tensors).some((n) => n.endsWith('attn2.to_q.weight')));
});

t('bad flags and files are refused with clear errors', async () => {
  const model = await tinyModelFolder();
  const images = await conceptFolder(1, [200, 0, 0]);
  const dir = await tempFolder('imprint-cd-cli-');
  await assertRejects(() => train.run({ model, images }, []), 'INVALID_ARGUMENT', /give --class and --images/);
  await assertRejects(() => train.run({ model, class: 'dog', images, steps: 'lots' }, []), 'INVALID_ARGUMENT', /--steps must be a number, got 'lots'/);
  await assertRejects(() => train.run({ model: dir, class: 'dog', images }, []), 'INVALID_ARGUMENT', /not a diffusers model folder/);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, '[{"classWord": ');
  await assertRejects(() => train.run({ model, concepts: bad }, []), 'INVALID_ARGUMENT', /--concepts .*bad\.json/);
  writeFileSync(bad, '{"classWord": "dog"}');
  await assertRejects(() => train.run({ model, concepts: bad }, []), 'INVALID_ARGUMENT', /non-empty JSON array/);
  await assertRejects(() => train.run({ model, concepts: bad, class: 'dog' }, []), 'INVALID_ARGUMENT', /drop --class/);
  await assertRejects(() => train.run({ model, class: 'dog', images, initializer: 'x', mode: 'all', ...small }, []), 'INVALID_ARGUMENT', /mode must be 'kv' or 'cross'/);
  // --method names one of lib/methods' methods; an unknown one is refused before the model loads.
  await assertRejects(() => train.run({ model: dir, method: 'dreambooth', class: 'dog', images }, []), 'INVALID_ARGUMENT', /--method: method must be one of 'custom-diffusion', 'cones', 'tuning-encoder', got 'dreambooth'/);
});

t.run();
