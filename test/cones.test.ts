// Concept neurons (lib/methods/cones) on the tiny SD1 model: the selection
// rules (threshold, top fraction with deterministic ties), a search that is
// reproducible from its seed, resumes to exactly the uninterrupted result,
// never writes the base weights, and yields a concept of sorted indices that
// round-trips through the concept file and shuts exactly its neurons when
// applied; plus bad options and the CLI's --method cones.
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { applyConcepts, unetWeightMap } from '../lib/concepts/apply.js';
import { loadConcept, saveConcept } from '../lib/concepts/concept-file.js';
import { TRAIN_COMMANDS } from '../lib/cli/commands-train.js';
import { readSafetensorsHeader } from '../lib/io/safetensors.js';
import { candidateWeights, findNeurons, selectNeurons, type FindNeuronsOptions } from '../lib/methods/cones/find.js';
import type { UNet2DConditionModel } from '../lib/models/unet.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import type { Tensor } from '../lib/tensor.js';
import { conceptFolder, removeTempFolders, tempFolder, tinyModelFolder } from './cd-fixture.js';
import { assertRejects } from './helpers.js';

const t = suite('cones');
t.after(removeTempFolders);
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

let fixture: { model: string; red: string } | undefined;
async function setup(): Promise<{ model: string; red: string }> {
  fixture ??= { model: await tinyModelFolder(), red: await conceptFolder(2, [220, 20, 20]) };
  return fixture;
}

async function base(extra: Partial<FindNeuronsOptions> = {}): Promise<FindNeuronsOptions> {
  const f = await setup();
  return { model: f.model, images: f.red, classWord: 'dog', numRegImages: 2, regSteps: 2, resolution: 16, passes: 4, rho: 0.05, topFraction: 0.01, seed: 5, quiet: true, ...extra };
}

t('selection: a threshold keeps S ≥ it; a top fraction counts over every weight, ties by position', () => {
  const stats = new Map([['a', Float32Array.from([0.5, -1, 2, 0.5])], ['b', Float32Array.from([3, 0.5, 0])]]);
  assert.equal([...selectNeurons(stats, { threshold: 0.5 })].map(([n, i]) => [n, [...i]]), [['a', [0, 2, 3]], ['b', [0, 1]]]);
  // 7 candidates, 3/7 of them: 3 and 2, then one of the three 0.5s (the first by position).
  assert.equal([...selectNeurons(stats, { topFraction: 3 / 7 })].map(([n, i]) => [n, [...i]]), [['a', [0, 2]], ['b', [0]]]);
  assert.equal(selectNeurons(stats, { topFraction: 0 }).size, 0);
  assert.equal([...selectNeurons(stats, { topFraction: 1 })].map(([, i]) => i.length), [4, 3]);
});

t('a search is reproducible, resumes exactly, leaves the base weights alone and gives sorted indices of K/V weights', async () => {
  const o = await base();
  const before = await StableDiffusionPipeline.fromPretrained(o.model);
  const w0 = new Map([...unetWeightMap(before.unet as UNet2DConditionModel)].map(([n, w]) => [n, Float32Array.from(f32(w))]));
  before.dispose();
  const a = await findNeurons(o);
  const b = await findNeurons(o);
  assert.equal([...a.stats.keys()], [...b.stats.keys()]);
  for (const [n, s] of a.stats) assert.equal([...s], [...b.stats.get(n)!], `${n}: the same statistic from the same seed`);
  const names = [...a.stats.keys()];
  assert.ok(names.length > 0 && names.every((n) => /\.attn2\.to_[kv]\.weight$/.test(n)), 'candidates: cross-attention K/V');
  assert.ok([...a.stats.values()].some((s) => s.some((v) => v !== 0)), 'the statistic moved');
  const c = a.concept;
  assert.is(c.method, 'cones');
  assert.is(c.tokens.length, 0);
  assert.is(a.counts.neurons, Math.round(0.01 * a.counts.candidates));
  for (const [n, idx] of c.neurons) {
    assert.ok(names.includes(n));
    for (let k = 1; k < idx.length; k++) assert.ok(idx[k] > idx[k - 1], `${n} sorted`);
  }
  assert.equal(c.settings, { prompt: 'photo of a dog', classWord: 'dog', layers: 'kv', passes: '4', rho: '0.05', seed: '5', topFraction: '0.01' });
  // Interrupted after 2 passes, then resumed to 4: the statistic of the uninterrupted run, bit for bit.
  const work = await tempFolder('imprint-cones-work-');
  await findNeurons({ ...o, passes: 2, workDir: work, checkpointEvery: 1 });
  assert.equal(Number(readSafetensorsHeader(join(work, 'checkpoint.safetensors')).metadata.step), 2);
  const resumed = await findNeurons({ ...o, workDir: work });
  for (const [n, s] of a.stats) assert.equal([...resumed.stats.get(n)!], [...s], `${n}: resumed = uninterrupted`);
  await assertRejects(() => findNeurons({ ...o, rho: 0.1, workDir: work }), 'INVALID_ARGUMENT', /written by another run .*rho 0\.05 vs 0\.1/);
  // The model on disk is untouched.
  const after = await StableDiffusionPipeline.fromPretrained(o.model);
  for (const [n, w] of unetWeightMap(after.unet as UNet2DConditionModel)) assert.equal([...f32(w)].slice(0, 64), [...w0.get(n)!].slice(0, 64));
  after.dispose();
  // The self-attention option widens the candidates.
  assert.ok(candidateWeights([...w0.keys()], 'kv+self').length === 2 * candidateWeights([...w0.keys()], 'kv').length);
});

t('the concept file holds only indices, round-trips, and applying it shuts exactly those entries (restore gives them back)', async () => {
  const r = await findNeurons(await base({ topFraction: 0.05 }));
  const dir = await tempFolder('imprint-cones-file-');
  const path = join(dir, 'dog-neurons.safetensors');
  const saved = await saveConcept(path, r.concept);
  const h = readSafetensorsHeader(path);
  assert.is(h.metadata.method, 'cones');
  assert.is(h.metadata.neuron_encoding, 'delta-varint');
  assert.ok(Object.values(h.tensors).every((e) => e.dtype === 'U8'), 'no float values stored');
  assert.ok(saved.bytes < 200 + 4 * r.counts.neurons + 2048, `${saved.bytes} bytes for ${r.counts.neurons} neurons`);
  const back = await loadConcept(path, { method: 'cones' });
  assert.equal([...back.neurons].map(([n, i]) => [n, [...i]]).sort(), [...r.concept.neurons].map(([n, i]) => [n, [...i]]).sort());
  const pipe = await StableDiffusionPipeline.fromPretrained((await setup()).model);
  const w0 = new Map([...unetWeightMap(pipe.unet as UNet2DConditionModel)].map(([n, w]) => [n, Float32Array.from(f32(w))]));
  const applied = await applyConcepts(pipe, [back]);
  const now = unetWeightMap(pipe.unet as UNet2DConditionModel);
  for (const [n, idx] of back.neurons) {
    const got = f32(now.get(n)!);
    const shut = new Set(idx);
    got.forEach((v, k) => assert.is(v, shut.has(k) ? 0 : w0.get(n)![k], `${n}[${k}]`));
  }
  await applied.restore();
  for (const [n, w] of unetWeightMap(pipe.unet as UNet2DConditionModel)) assert.equal([...f32(w)], [...w0.get(n)!]);
  pipe.dispose();
});

t('bad options are named; the CLI trains with --method cones', async () => {
  const o = await base();
  await assertRejects(() => findNeurons({ ...o, threshold: 1, topFraction: 0.1 }), 'INVALID_ARGUMENT', /threshold or topFraction, not both/);
  await assertRejects(() => findNeurons({ ...o, layers: 'qkv' as never }), 'INVALID_ARGUMENT', /layers must be 'kv' or 'kv\+self'/);
  await assertRejects(() => findNeurons({ ...o, passes: 0 }), 'INVALID_ARGUMENT', /passes must be an integer in \[1/);
  await assertRejects(() => findNeurons({ ...o, topFraction: undefined, threshold: 1e9 }), 'INVALID_ARGUMENT', /no neuron passes threshold 1000000000/);
  const dir = await tempFolder('imprint-cones-cli-');
  const out = join(dir, 'n.safetensors');
  const write = process.stdout.write.bind(process.stdout);
  let line = '';
  process.stdout.write = ((s: string) => ((line += s), true)) as typeof process.stdout.write;
  try {
    await TRAIN_COMMANDS.train.run({ method: 'cones', model: o.model, class: 'dog', images: o.images as string, out, steps: '2', resolution: '16', 'num-reg-images': '1', 'reg-steps': '1', 'top-fraction': '0.01', quiet: true }, []);
  } finally {
    process.stdout.write = write;
  }
  const summary = JSON.parse(line) as { method: string; neurons: number; bytes: number };
  assert.is(summary.method, 'cones');
  assert.ok(summary.neurons > 0);
  assert.ok(readSafetensorsHeader(out).metadata.method === 'cones');
  await assertRejects(() => TRAIN_COMMANDS.train.run({ method: 'cones', model: o.model, class: 'dog', images: o.images as string, token: '<x>' }, []), 'INVALID_ARGUMENT', /--token is not used by --method cones/);
  await assertRejects(() => TRAIN_COMMANDS.train.run({ model: o.model, class: 'dog', images: o.images as string, rho: '1' }, []), 'INVALID_ARGUMENT', /--rho is for --method cones/);
});

t.run();
