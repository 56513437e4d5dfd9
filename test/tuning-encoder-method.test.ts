// The tuning encoder end to end on the tiny SD1 model: pretraining is
// reproducible from its seed and resumes exactly; the encoder file round-trips
// and is refused for another model; personalization gives a concept of one
// token and LoRA factors on every cross-attention K/V that saves, loads and
// samples; 0 steps keep the prediction, the pull holds the tuning to it; an
// encoder file's tuning settings are checked and are personalize's defaults;
// a generated pretraining source's imagesId guards resuming.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { applyConcepts } from '../lib/concepts/apply.js';
import { ENCODER_COMMANDS, TRAIN_COMMANDS } from '../lib/cli/commands-train.js';
import { disposeConcept, loadConcept, saveConcept } from '../lib/concepts/concept-file.js';
import { loadEncoder, saveEncoder } from '../lib/methods/tuning-encoder/encoder-file.js';
import { personalize } from '../lib/methods/tuning-encoder/personalize.js';
import { pretrainEncoder, type PretrainEncoderOptions } from '../lib/methods/tuning-encoder/pretrain.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import type { Tensor } from '../lib/tensor.js';
import { conceptFolder, removeTempFolders, tempFolder, tinyModelFolder } from './cd-fixture.js';
import { assertRejects } from './helpers.js';

const t = suite('tuning-encoder.method');
t.after(removeTempFolders);
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

let fx: { model: string; images: string; options: PretrainEncoderOptions } | undefined;
async function setup() {
  if (!fx) {
    const model = await tinyModelFolder(), images = await conceptFolder(3, [220, 20, 20]);
    fx = {
      model, images, options: {
        model, images, classWord: 'dog', resolution: 16, steps: 3, batchSize: 2, hidden: 8, rank: 2, seed: 1, quiet: true,
        vision: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, image_size: 16, patch_size: 4, num_channels: 3 },
      },
    };
  }
  return fx;
}

t('pretraining: reproducible from its seed, resumes to exactly the uninterrupted result', async () => {
  const f = await setup();
  const a = await pretrainEncoder(f.options);
  const b = await pretrainEncoder(f.options);
  assert.is(a.losses.length, 3);
  assert.ok(a.losses.every(Number.isFinite));
  assert.equal(a.losses, b.losses);
  const work = await tempFolder('imprint-encoder-work-');
  const part = await pretrainEncoder({ ...f.options, workDir: work, checkpointEvery: 1, maxStepsThisRun: 2 });
  assert.is(part.steps, 2);
  part.encoder.dispose();
  await assertRejects(() => pretrainEncoder({ ...f.options, seed: 2, workDir: work }), 'INVALID_ARGUMENT', /written by another run/);
  const resumed = await pretrainEncoder({ ...f.options, workDir: work });
  assert.is(resumed.steps, 3);
  assert.equal(resumed.losses, a.losses.slice(2));
  for (const [n, p] of a.encoder.params) assert.equal(f32(resumed.encoder.params.get(n)!), f32(p), `${n}: resumed = uninterrupted`);
  a.encoder.dispose(), b.encoder.dispose(), resumed.encoder.dispose();
});

t('encoder file round trip; personalization: a concept that saves, loads, applies and samples', async () => {
  const f = await setup();
  const pre = await pretrainEncoder(f.options);
  const dir = await tempFolder('imprint-encoder-file-');
  const file = join(dir, 'encoder.safetensors');
  await saveEncoder(file, pre.encoder, { classWord: 'dog', baseFingerprint: pre.baseFingerprint, settings: pre.settings });
  const back = await loadEncoder(file);
  assert.is(back.info.classWord, 'dog');
  for (const [n, p] of pre.encoder.params) assert.equal(f32(back.encoder.params.get(n)!), f32(p), n);
  back.encoder.dispose();
  const image = join(f.images, '00.png');
  const zero = await personalize({ model: f.model, encoder: file, image, steps: 0, quiet: true });
  assert.equal(zero.losses, []);
  const tuned = await personalize({ model: f.model, encoder: file, image, steps: 3, pullWeight: 0, lr: 1e-2, quiet: true });
  const held = await personalize({ model: f.model, encoder: file, image, steps: 3, pullWeight: 1e4, lr: 1e-2, quiet: true });
  assert.is(tuned.losses.length, 3);
  const c = tuned.concept;
  assert.is(c.method, 'tuning-encoder');
  assert.equal(c.tokens.map((tk) => [tk.token, tk.classWord, tk.prompt]), [['<new1>', 'dog', 'a <new1> dog']]);
  assert.equal([...c.lora.keys()], pre.encoder.spec.targets.map((x) => x.weight));
  // Without the pull the tuning moves every factor away from the prediction; a strong pull keeps it near.
  const dist = (x: typeof c) => [...x.lora].reduce((s, [n, l]) => s + f32(l.b).reduce((a, v, i) => a + (v - f32(zero.concept.lora.get(n)!.b)[i]) ** 2, 0), 0);
  assert.ok(dist(held.concept) < 0.1 * dist(c), `pull: ${dist(held.concept)} vs free ${dist(c)}`);
  const path = join(dir, 'concept.safetensors');
  await saveConcept(path, c);
  const loaded = await loadConcept(path, { method: 'tuning-encoder' });
  const pipe = await StableDiffusionPipeline.fromPretrained(f.model);
  try {
    const applied = await applyConcepts(pipe, [loaded]);
    assert.equal(applied.tokens, ['<new1>']);
    const out = await pipe.generate({ prompt: 'a <new1> dog', width: 16, height: 16, steps: 2, seed: 1 });
    assert.ok(f32(out.images).every(Number.isFinite));
    await applied.restore();
  } finally {
    pipe.dispose();
  }
  await assertRejects(() => personalize({ model: f.model, encoder: file, image, steps: 0, token: 'two words' }), 'INVALID_ARGUMENT', /token must be one word/);
  await assertRejects(() => loadEncoder(path), 'INVALID_ARGUMENT', /is not a tuning encoder file/);
  for (const x of [zero, tuned, held]) disposeConcept(x.concept);
  disposeConcept(loaded);
  pre.encoder.dispose();
});

t('encoder file tuning: recorded, checked on load, the default of personalize, and an option overrides it', async () => {
  const f = await setup();
  const pre = await pretrainEncoder({ ...f.options, steps: 1 });
  const dir = await tempFolder('imprint-encoder-tuning-');
  const file = join(dir, 'tuned.safetensors'), plain = join(dir, 'plain.safetensors');
  const info = { classWord: 'dog', baseFingerprint: pre.baseFingerprint, settings: pre.settings };
  await saveEncoder(file, pre.encoder, { ...info, tuning: { lr: 5e-3, batchSize: 3, pullWeight: 0.25 } });
  await saveEncoder(plain, pre.encoder, info);
  assert.equal((await withLoaded(file)).tuning, { lr: 5e-3, batchSize: 3, pullWeight: 0.25 });
  assert.is((await withLoaded(plain)).tuning, undefined);
  const image = join(f.images, '00.png');
  const settings = async (enc: string, o: object = {}) => {
    const r = await personalize({ model: f.model, encoder: enc, image, steps: 1, quiet: true, ...o });
    const s = r.concept.settings ?? {};
    disposeConcept(r.concept);
    return [s.lr, s.batchSize, s.pullWeight];
  };
  assert.equal(await settings(file), ['0.005', '3', '0.25']);
  assert.equal(await settings(file, { lr: 1e-3, batchSize: 1 }), ['0.001', '1', '0.25']);
  assert.equal(await settings(plain), ['0.002', '2', '1']);  // the method's generic defaults
  // Bad records are refused with the file and the key named, at save and at load.
  await assertRejects(() => saveEncoder(join(dir, 'bad.safetensors'), pre.encoder, { ...info, tuning: { lr: 2 } }), 'INVALID_ARGUMENT', /tuning\.lr must be a number in \[0, 1\]/);
  await assertRejects(() => saveEncoder(join(dir, 'bad.safetensors'), pre.encoder, { ...info, tuning: { batchSize: 2.5 } }), 'INVALID_ARGUMENT', /tuning\.batchSize must be an integer/);
  assert.not.ok(existsSync(join(dir, 'bad.safetensors')));
  // A file whose tuning metadata is wrong (the header rewritten, the tensors kept).
  const raw = readFileSync(file), n = Number(raw.readBigUInt64LE(0));
  const header = JSON.parse(raw.subarray(8, 8 + n).toString('utf8'));
  for (const [bad, why] of [['{"steps":3}', /unknown key 'steps'/], ['{"lr":', /not valid JSON/]] as const) {
    header.__metadata__.tuning = bad;
    const h = Buffer.from(JSON.stringify(header)), len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    const badFile = join(dir, 'bad-meta.safetensors');
    writeFileSync(badFile, Buffer.concat([len, h, raw.subarray(8 + n)]));
    await assertRejects(() => loadEncoder(badFile), 'INVALID_ARGUMENT', new RegExp(`bad-meta\\.safetensors.*${why.source}`));
  }
  pre.encoder.dispose();
});

async function withLoaded(file: string) {
  const l = await loadEncoder(file);
  l.encoder.dispose();
  return l.info;
}

t('pretraining from a function source records its imagesId: a work dir resumes only with the same source', async () => {
  const f = await setup();
  const { loadImagesWithCaptions } = await import('../lib/concepts/data.js');
  const pool = (await loadImagesWithCaptions('test', 'images', f.images)).map((x) => x.image);
  const source = (step: number, batch: number) => Array.from({ length: batch }, (_, i) => pool[(step + i) % pool.length]);
  const o = { ...f.options, images: source, steps: 2 };
  const work = await tempFolder('imprint-encoder-source-');
  const part = await pretrainEncoder({ ...o, imagesId: 'scenes v1', workDir: work, checkpointEvery: 1, maxStepsThisRun: 1 });
  assert.is(part.settings.data, 'scenes v1');
  part.encoder.dispose();
  await assertRejects(() => pretrainEncoder({ ...o, imagesId: 'scenes v2', workDir: work }), 'INVALID_ARGUMENT', /written by another run/);
  const done = await pretrainEncoder({ ...o, imagesId: 'scenes v1', workDir: work });
  assert.is(done.steps, 2);
  done.encoder.dispose();
  const unnamed = await pretrainEncoder({ ...o, steps: 1 });
  assert.is(unnamed.settings.data, 'generated');
  unnamed.encoder.dispose();
  await assertRejects(() => pretrainEncoder({ ...f.options, imagesId: 'x' }), 'INVALID_ARGUMENT', /imagesId names a function source/);
});

t('the shipped world encoder: teachWorldConcepts({ method: \'tuning-encoder\' }) personalizes a held-out concept from one image', async () => {
  const { teachWorldConcepts } = await import('../lib/world/teach.js');
  const { worldEncoderPath } = await import('../lib/world/model-path.js');
  const info = (await loadEncoder(worldEncoderPath()));
  assert.is(info.info.classWord, 'shape');
  assert.is(info.info.settings.steps, '2000');
  assert.equal(info.info.tuning, { lr: 1e-2, batchSize: 8, pullWeight: 0 });  // WORLD_ENCODER_TUNING, measured (README)
  info.encoder.dispose();
  const r = await teachWorldConcepts({ concepts: ['star'], method: 'tuning-encoder', steps: 2, quiet: true });
  assert.is(r.concept.method, 'tuning-encoder');
  assert.equal(r.concept.tokens.map((tk) => [tk.token, tk.classWord]), [['<new1>', 'shape']]);
  assert.is(r.losses.length, 2);
  assert.ok(r.losses.every(Number.isFinite));
  disposeConcept(r.concept);
  await assertRejects(() => teachWorldConcepts({ concepts: ['star', 'ring'], method: 'tuning-encoder' }), 'INVALID_ARGUMENT', /one concept at a time/);
  await assertRejects(() => teachWorldConcepts({ concepts: ['star'], encoder: 'x.safetensors' }), 'INVALID_ARGUMENT', /encoder is for method 'tuning-encoder'/);
});

t('the CLI: imprint pretrain-encoder writes an encoder, imprint train --method tuning-encoder a concept; misplaced flags are named', async () => {
  const f = await setup();
  const dir = await tempFolder('imprint-encoder-cli-');
  const enc = join(dir, 'enc.safetensors'), out = join(dir, 'c.safetensors');
  const write = process.stdout.write;
  let printed = '';
  process.stdout.write = ((s: string) => ((printed += s), true)) as typeof process.stdout.write;
  try {
    await ENCODER_COMMANDS['pretrain-encoder'].run({ model: f.model, images: f.images, class: 'dog', out: enc, steps: '2', 'batch-size': '1', alpha: '1', 'contrastive-weight': '0', conv: '3', 'lora-scale': '4', quiet: true }, []);
    const saved = await loadEncoder(enc);
    assert.is(saved.info.classWord, 'dog');
    assert.equal([saved.encoder.spec.conv, saved.encoder.spec.loraScale], [3, 4]);
    const losses = JSON.parse(saved.info.settings.losses);
    assert.equal([losses.alpha, losses.contrastiveWeight], [1, 0]);  // the ablation flags reach the pretraining
    saved.encoder.dispose();
    await TRAIN_COMMANDS.train.run({ method: 'tuning-encoder', model: f.model, encoder: enc, image: join(f.images, '01.png'), out, steps: '2', quiet: true }, []);
  } finally {
    process.stdout.write = write;
  }
  const summary = JSON.parse(printed.trim().split('\n').at(-1)!);
  assert.equal([summary.method, summary.steps], ['tuning-encoder', 2]);
  const c = await loadConcept(out, { method: 'tuning-encoder' });
  assert.is(c.tokens[0].token, '<new1>');
  assert.ok([...c.lora.values()].every((l) => l.scale === 4), 'the concept applies ΔW with the encoder\'s scale');
  disposeConcept(c);
  await assertRejects(() => TRAIN_COMMANDS.train.run({ method: 'tuning-encoder', model: f.model, encoder: enc, image: join(f.images, '01.png'), rho: '1' }, []), 'INVALID_ARGUMENT', /--rho is not used by --method tuning-encoder/);
  await assertRejects(() => TRAIN_COMMANDS.train.run({ model: f.model, class: 'dog', images: f.images, encoder: enc }, []), 'INVALID_ARGUMENT', /--encoder is for --method tuning-encoder/);
  await assertRejects(() => ENCODER_COMMANDS['pretrain-encoder'].run({ images: f.images, out: enc }, []), 'INVALID_ARGUMENT', /--images and --class go with --model/);
  await assertRejects(() => ENCODER_COMMANDS['pretrain-encoder'].run({ model: f.model, images: f.images, class: 'dog', out: enc, alpha: '2', quiet: true }, []), 'INVALID_ARGUMENT', /alpha/);
});

t.run();
