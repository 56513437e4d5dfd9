// The concept commands, run as the CLI runs them (flag values as strings) on
// a diffusers folder of the tiny SD1 model: merge writes a concept file and
// prints residuals, sample writes PNGs with concepts applied, export/import
// convert to diffusers files and back; bad flags are clear errors.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import type { Tensor } from '../lib/index.js';
import { CONCEPT_COMMANDS } from '../lib/cli/commands-concepts.js';
import { unetWeightMap } from '../lib/concepts/apply.js';
import { genericCaptions } from '../lib/concepts/captions.js';
import { loadConcept, saveConcept } from '../lib/concepts/concept-file.js';
import { modelFingerprint } from '../lib/concepts/fingerprint.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { disposeAll, randomConcept, tinyModelFolder } from './cd-fixtures.js';
import { assertClose, assertRejects } from './helpers.js';

const t = suite('cd.cli');
const root = mkdtempSync(join(tmpdir(), 'imprint-cdcli-'));
t.after(() => rmSync(root, { recursive: true, force: true }));
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
let model = '';
const files: string[] = [];

/** Runs a command, returning what it printed (its progress on stderr is dropped). */
async function run(name: string, values: Record<string, string | boolean | string[]>, positionals: string[] = []): Promise<string> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const errWrite = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((chunk: string) => {
    chunks.push(String(chunk));
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    await CONCEPT_COMMANDS[name].run(values, positionals);
  } finally {
    process.stdout.write = write;
    process.stderr.write = errWrite;
  }
  return chunks.join('');
}

t.before(async () => {
  model = await tinyModelFolder(join(root, 'model'));
  const pipe = await StableDiffusionPipeline.fromPretrained(model);
  const weights = unetWeightMap(pipe.unet as UNet2DConditionModel);
  const fp = await modelFingerprint(weights, (pipe.textEncoder as ClipTextEncoder).tokenEmbedding);
  for (const [i, pair] of ([['<new1>', 'dog'], ['<new2>', 'toy']] as Array<[string, string]>).entries()) {
    const c = await randomConcept(weights, { fingerprint: fp, seed: 30 + i, scale: 0.1, tokens: [pair] });
    files.push(join(root, `c${i + 1}.safetensors`));
    await saveConcept(files[i], c);
    disposeAll(c);
  }
  pipe.dispose();
});

t('merge: writes the merged concept file and prints the residual table', async () => {
  const captions = join(root, 'captions.txt');
  writeFileSync(captions, genericCaptions(120, 2).join('\n'));
  const out = join(root, 'merged.safetensors');
  const printed = await run('merge', { model, out, 'reg-captions': captions }, files);
  assert.match(printed, /matrix\s+method\s+target\s+reg/);
  assert.match(printed, /down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn2\.to_k\.weight\s+closed-form/);
  const overall = /overall \(closed-form matrices\)\s+(\S+)\s+(\S+)/.exec(printed)!;
  assert.ok(Number(overall[1]) < 1e-4, `target residual ${overall[1]}`);
  assert.match(printed, /merged 2 concepts \(<new1>, <new2>\)/);
  const merged = await loadConcept(out, { method: 'custom-diffusion' });
  assert.equal(merged.tokens.map((tk) => [tk.token, tk.classWord]), [['<new1>', 'dog'], ['<new2>', 'toy']]);
  assert.is(merged.deltas.size, 12);
  // --target replaces the default target captions, so the merge solves other constraints.
  const custom = join(root, 'merged-target.safetensors');
  await run('merge', { model, out: custom, 'reg-captions': captions, target: ['{token} {class}', '{token} {class} x'] }, files);
  const other = await loadConcept(custom, { method: 'custom-diffusion' });
  const name = [...merged.deltas.keys()][0];
  const gap = Math.max(...Array.from(f32(other.deltas.get(name)!), (x, i) => Math.abs(x - f32(merged.deltas.get(name)!)[i])));
  assert.ok(gap > 1e-4, `--target changes the merged deltas (max difference ${gap})`);
  disposeAll(other);
  disposeAll(merged);
  await assertRejects(() => run('merge', { model, out: join(root, 'bad.safetensors'), 'reg-captions': captions, target: ['{class} alone'] }, files), 'INVALID_ARGUMENT', /must contain '\{token\}'/);
  assert.not.ok(existsSync(join(root, 'bad.safetensors')), 'nothing written');
  // Compressed output.
  const small = join(root, 'merged-r2.safetensors');
  assert.match(await run('merge', { model, out: small, 'reg-captions': captions, rank: '2' }, files), /SVD relative error/);
  assert.is((await loadConcept(small, { method: 'custom-diffusion' })).file.compression, 'svd');
});

t('sample: PNGs (and a grid) with concepts applied; another model is refused unless --force', async () => {
  const out = join(root, 'img-{i}.png');
  const grid = join(root, 'grid.png');
  const printed = await run('sample', { model, concept: files, prompt: ['a <new1> dog', 'a <new2> toy'], out, grid, steps: '2', seed: '1' });
  assert.match(printed, /concepts: <new1>, <new2> \(12 UNet weights changed\)/);
  for (const p of ['img-0.png', 'img-1.png', 'grid.png']) assert.ok(existsSync(join(root, p)), p);
  // A concept for another base model.
  const c = await loadConcept(files[0], { method: 'custom-diffusion' });
  const other = join(root, 'other.safetensors');
  await saveConcept(other, { ...c, baseFingerprint: 'sha256:elsewhere' });
  disposeAll(c);
  await assertRejects(() => run('sample', { model, concept: [other], prompt: ['a <new1> dog'], out, steps: '1' }), 'INVALID_ARGUMENT', /sha256:elsewhere/, /force: true/);
  assert.match(await run('sample', { model, concept: [other], prompt: ['a <new1> dog'], out: join(root, 'forced.png'), steps: '1', force: true }), /forced\.png/);
  await assertRejects(() => run('sample', { model, concept: files, out, steps: '1' }), 'INVALID_ARGUMENT', /--prompt/);
  await assertRejects(() => run('sample', { model, prompt: ['x'] }), 'INVALID_ARGUMENT', /--concept/);
  await assertRejects(() => run('sample', { model, concept: files, prompt: ['x'], steps: 'many' }), 'INVALID_ARGUMENT', /--steps must be a number/);
  await assertRejects(() => run('sample', { model: root, concept: files, prompt: ['x'] }), 'INVALID_ARGUMENT', /not a diffusers model folder/);
});

t('export-diffusers → import-diffusers: the diffusers files, then the same deltas and tokens back', async () => {
  const dir = join(root, 'diffusers');
  await run('export-diffusers', { model, out: dir }, [files[0]]);
  assert.equal(readdirSync(dir).sort(), ['<new1>.safetensors', 'imprint-concept.json', 'pytorch_custom_diffusion_weights.safetensors']);
  rmSync(join(dir, 'imprint-concept.json'));
  const back = join(root, 'back.safetensors');
  assert.match(await run('import-diffusers', { model, out: back, class: ['<new1>=puppy'] }, [dir]), /mode kv, tokens <new1> \(puppy\), 12 matrices/);
  const a = await loadConcept(files[0], { method: 'custom-diffusion' });
  const b = await loadConcept(back, { method: 'custom-diffusion' });
  assert.is(b.baseFingerprint, a.baseFingerprint, 'fingerprint of the --model');
  assert.is(b.tokens[0].classWord, 'puppy');
  for (const [n, d] of a.deltas) assertClose(f32(b.deltas.get(n)!), f32(d), 0, 1e-6, n);
  assert.equal(Array.from(f32(b.tokens[0].embedding)), Array.from(f32(a.tokens[0].embedding)));
  disposeAll(a);
  disposeAll(b);
  await assertRejects(() => run('import-diffusers', { model, out: back, class: ['dog'] }, [dir]), 'INVALID_ARGUMENT', /--class must be <token>=<word>/);
  await assertRejects(() => run('import-diffusers', { model }, [dir]), 'INVALID_ARGUMENT', /--out/);
  await assertRejects(() => run('export-diffusers', { model, out: dir }, []), 'INVALID_ARGUMENT', /exactly one concept file/);
  await assertRejects(() => run('merge', { model, out: back, energy: '2' }, files), 'INVALID_ARGUMENT', /compress\.energy/);
  await assertRejects(() => run('merge', { model }, files), 'INVALID_ARGUMENT', /--out/);
  await assertRejects(() => run('merge', { model, out: back }, [join(root, 'missing.safetensors')]), 'INVALID_ARGUMENT', /missing\.safetensors/);
});

t.run();
