// The Custom Diffusion training loop on the tiny SD1 model (resolution 16,
// a few steps): what trains and what stays frozen, every new token learning
// in a joint run, learning itself (a fixed evaluation batch's loss falls),
// resume equivalence, the loss guard keeping the last checkpoint, the
// regularization cache, and bad input.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { randn, tensor, type Tensor } from '../lib/index.js';
import { trainCustomDiffusion, trainCustomDiffusionOnLoaded, trainedWeightNames, type ConceptSpec, type TrainCustomDiffusionOptions } from '../lib/methods/custom-diffusion/train.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../lib/io/safetensors.js';
import { loadDiffusersModel } from '../lib/models/checkpoint.js';
import { ClipTextEncoder } from '../lib/models/clip-text.js';
import { TOKEN_EMBEDDING } from '../lib/models/clip-text-backward.js';
import { readJsonFile } from '../lib/models/configs.js';
import { UNet2DConditionModel } from '../lib/models/unet.js';
import { AutoencoderKL } from '../lib/models/vae.js';
import { imageToTensor } from '../lib/pipeline/images.js';
import { DDPMTraining } from '../lib/schedulers/ddpm.js';
import { ClipTokenizer } from '../lib/tokenizer/clip.js';
import { conceptFolder, removeTempFolders, SCHEDULER_CONFIG, squarePng, tempFolder, tinyModelFolder } from './cd-fixture.js';
import { assertRejects, settleGarbage } from './helpers.js';

const t = suite('cd-train');
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const work = (): Promise<string> => tempFolder('imprint-cd-work-');
t.after(removeTempFolders);

let fixture: { model: string; red: string; blue: string } | undefined;
async function setup(): Promise<{ model: string; red: string; blue: string }> {
  fixture ??= { model: await tinyModelFolder(), red: await conceptFolder(2, [220, 20, 20]), blue: await conceptFolder(2, [20, 20, 220]) };
  return fixture;
}

// Small and fast: 16-pixel images, two variants per image, two sampled regularization images.
async function base(extra: Partial<TrainCustomDiffusionOptions> = {}): Promise<TrainCustomDiffusionOptions> {
  const f = await setup();
  return {
    model: f.model, concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', numRegImages: 2 }],
    steps: 2, resolution: 16, regSteps: 2, augmentVariants: 2, batchSize: 1, lr: 1e-3, scaleLr: false, quiet: true, seed: 3, ...extra,
  };
}

// The base rows of single-character tokens ('x</w>' etc.) in the tiny encoder.
async function baseRow(word: string): Promise<Float32Array> {
  const f = await setup();
  const tok = await ClipTokenizer.fromFolder(join(f.model, 'tokenizer'));
  const id = tok.encode(word)[1];
  const m = await loadDiffusersModel(f.model);
  const table = f32(m.textEncoder.weights.get(TOKEN_EMBEDDING)!);
  const hidden = m.textEncoder.weights.get(TOKEN_EMBEDDING)!.shape[1];
  return table.slice(id * hidden, (id + 1) * hidden);
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

t('kv mode: only attn2 to_k/to_v change, every one of them; the checkpoint holds nothing else', async () => {
  const dir = await work();
  const r = await trainCustomDiffusion(await base({ workDir: dir }));
  const m = await loadDiffusersModel((await setup()).model);
  const names = [...m.unet.weights.keys()];
  const kv = names.filter((n) => /\.attn2\.to_[kv]\.weight$/.test(n));
  assert.equal([...r.concept.deltas.keys()].sort(), kv.sort());
  for (const [n, d] of r.concept.deltas) {
    assert.equal(d.shape, m.unet.weights.get(n)!.shape, n);
    assert.ok(f32(d).some((v) => v !== 0), `${n} changed`);
  }
  // What the optimizer held (and so could ever write): the trained matrices and the new rows, nothing else.
  const saved = Object.keys(readSafetensorsHeader(join(dir, 'checkpoint.safetensors')).tensors).filter((k) => k.startsWith('param/'));
  assert.equal(saved.sort(), [...kv.map((n) => `param/${n}`), 'param/token_embedding.new_rows'].sort());
  assert.is(r.concept.method, 'custom-diffusion');
  assert.is(r.concept.mode, 'kv');
  assert.equal(r.concept.tokens.map((x) => [x.token, x.classWord]), [['<new1>', 'dog']]);
  assert.match(r.concept.baseFingerprint, /^sha256:[0-9a-f]{32}$/);
  assert.is(r.losses.length, 2);
  assert.ok(r.losses.every(Number.isFinite));
});

t('on loaded weights: every weight of the model (trained ones included) keeps its bytes, and stays the caller\'s', async () => {
  const f = await setup();
  const loaded = await loadDiffusersModel(f.model);
  const fresh = await loadDiffusersModel(f.model);
  const r = await trainCustomDiffusionOnLoaded(await base({ mode: 'cross', steps: 3 }), loaded);
  assert.ok(r.concept.deltas.size > 0 && [...r.concept.deltas.values()].every((d) => f32(d).some((v) => v !== 0)));
  let compared = 0;
  for (const part of ['unet', 'textEncoder', 'vae'] as const) {
    for (const [n, w] of loaded[part]!.weights) {
      assert.not.ok(w.disposed, `${part} ${n} is not disposed`);
      assert.ok(Buffer.from(f32(w).buffer).equals(Buffer.from(f32(fresh[part]!.weights.get(n)!).buffer)), `${part} ${n} unchanged`);
      compared++;
    }
  }
  assert.ok(compared > 100);
  await assertRejects(() => trainCustomDiffusionOnLoaded(base() as never, {} as never), 'INVALID_ARGUMENT', /loaded must be what loadDiffusersModel returns/);
  const half = await loadDiffusersModel(f.model, { dtype: 'f16' });
  await assertRejects(async () => trainCustomDiffusionOnLoaded(await base(), half), 'INVALID_ARGUMENT', /training needs f32 weights/);
});

t('cross mode trains q, k, v, out (weight and bias) of every attn2, never attn1', async () => {
  const r = await trainCustomDiffusion(await base({ mode: 'cross', steps: 1 }));
  const keys = [...r.concept.deltas.keys()];
  assert.ok(keys.length > 0 && keys.every((n) => /\.attn2\.(to_q\.weight|to_k\.weight|to_v\.weight|to_out\.0\.weight|to_out\.0\.bias)$/.test(n)));
  const m = await loadDiffusersModel((await setup()).model);
  assert.equal(keys.sort(), trainedWeightNames([...m.unet.weights.keys()], 'cross').sort());
  assert.is(keys.filter((n) => n.endsWith('to_q.weight')).length, keys.filter((n) => n.endsWith('to_k.weight')).length);
});

t('two concepts: every new token gets its gradient and moves well beyond weight decay; the model files are untouched', async () => {
  const f = await setup();
  const before = readFileSync(join(f.model, 'unet', 'diffusion_pytorch_model.safetensors'));
  const lr = 1e-3;
  const r = await trainCustomDiffusion(await base({
    concepts: [
      { classWord: 'dog', images: f.red, initializer: 'x', numRegImages: 2 },
      { token: '<cat-thing>', classWord: 'cat', images: f.blue, initializer: 'z', numRegImages: 2 },
    ],
    steps: 4, lr,
  }));
  assert.equal(r.concept.tokens.map((x) => x.token), ['<new1>', '<cat-thing>']);
  assert.equal(r.concept.tokens.map((x) => x.prompt), ['photo of a <new1> dog', 'photo of a <cat-thing> cat'], 'the instance prompts, for the merge');
  const rows = [await baseRow('x'), await baseRow('z')];
  r.concept.tokens.forEach((tok, i) => {
    // Adam moves a row with a gradient by about lr per element per step; weight decay alone by lr·1e-2·|w|.
    assert.ok(maxAbsDiff(f32(tok.embedding), rows[i]) > 0.5 * lr, `${tok.token} learned (moved ${maxAbsDiff(f32(tok.embedding), rows[i])})`);
  });
  assert.ok(readFileSync(join(f.model, 'unet', 'diffusion_pytorch_model.safetensors')).equals(before));
});

// The mean MSE of a fixed batch (the instance image, 4 timesteps, seeded noise) under given K/V deltas and token row.
async function fixedBatchLoss(deltas: Map<string, Tensor> | undefined, row: Float32Array, tokenPrompt: string): Promise<number> {
  const f = await setup();
  const m = await loadDiffusersModel(f.model);
  const unet0 = UNet2DConditionModel.fromWeights(readJsonFile(join(f.model, 'unet', 'config.json')), m.unet.weights);
  const repl = new Map<string, Tensor>();
  if (deltas) for (const [n, d] of deltas) repl.set(n, tensor(f32(m.unet.weights.get(n)!).map((v, i) => v + f32(d)[i]), { shape: d.shape }));
  const unet = unet0.withWeights(repl);
  const rawText = readJsonFile(join(f.model, 'text_encoder', 'config.json')) as Record<string, unknown>;
  const table0 = m.textEncoder.weights.get(TOKEN_EMBEDDING)!;
  const [V, H] = table0.shape;
  const table = new Float32Array((V + 1) * H);
  table.set(f32(table0));
  table.set(row, V * H);
  const weights = new Map(m.textEncoder.weights);
  weights.set(TOKEN_EMBEDDING, tensor(table, { shape: [V + 1, H] }));
  const encoder = ClipTextEncoder.fromWeights({ ...rawText, vocab_size: V + 1 }, weights);
  const tok = await ClipTokenizer.fromFolder(join(f.model, 'tokenizer'));
  tok.addTokens(['<new1>']);
  const ids = tok.encodePadded(tokenPrompt).ids;
  const ts = [100, 300, 600, 900];
  const { lastHiddenState } = await encoder.encode(tensor(Int32Array.from({ length: 4 * 77 }, (_, i) => ids[i % 77]), { shape: [4, 77] }));
  const vae = AutoencoderKL.fromWeights(readJsonFile(join(f.model, 'vae', 'config.json')), m.vae!.weights);
  const img = await imageToTensor(readFileSync(join(f.red, '00.png')), { width: 16, height: 16, fit: 'cover' });
  const { mean } = await vae.encode(img);
  const x1 = f32(mean).map((v) => v * vae.scalingFactor);
  const x0 = tensor(Float32Array.from({ length: 4 * x1.length }, (_, i) => x1[i % x1.length]), { shape: [4, ...mean.shape.slice(1)] });
  const noise = await randn(x0.shape, { seed: 77 });
  const ddpm = DDPMTraining.fromConfig(SCHEDULER_CONFIG);
  const noisy = await ddpm.addNoise(x0 as Tensor<'f32'>, noise, ts);
  const target = await ddpm.target(x0 as Tensor<'f32'>, noise, ts);
  const out = f32(await unet.forward(noisy, ts, lastHiddenState));
  const tg = f32(target);
  return out.reduce((s, v, i) => s + (v - tg[i]) ** 2, 0) / out.length;
}

t('it learns: a fixed batch of the instance image loses loss after 30 steps on that image', async () => {
  const f = await setup();
  const r = await trainCustomDiffusion(await base({
    concepts: [{ classWord: 'dog', images: [join(f.red, '00.png')], initializer: 'x' }],
    priorLossWeight: 0, augment: false, hflip: false, mode: 'cross', steps: 30, lr: 1e-2, batchSize: 2,
  }));
  const prompt = 'photo of a <new1> dog';
  const before = await fixedBatchLoss(undefined, await baseRow('x'), prompt);
  const after = await fixedBatchLoss(r.concept.deltas, f32(r.concept.tokens[0].embedding), prompt);
  assert.ok(after < 0.8 * before, `loss ${before} → ${after}`);
});

t('resume: 2 steps, then 2 more from the checkpoint, equals 4 uninterrupted steps exactly', async () => {
  const whole = await trainCustomDiffusion(await base({ steps: 4, workDir: await work(), checkpointEvery: 2 }));
  const dir = await work();
  const first = await trainCustomDiffusion(await base({ steps: 2, workDir: dir, checkpointEvery: 1 }));
  assert.is(readSafetensorsHeader(join(dir, 'checkpoint.safetensors')).metadata.step, '2');
  const rest = await trainCustomDiffusion(await base({ steps: 4, workDir: dir }));
  assert.is(rest.losses.length, 2, 'only steps 3 and 4 ran');
  assert.equal([...first.losses, ...rest.losses], whole.losses);
  for (const [n, d] of whole.concept.deltas) assert.ok(Buffer.from(f32(d).buffer).equals(Buffer.from(f32(rest.concept.deltas.get(n)!).buffer)), n);
  assert.equal(Array.from(f32(rest.concept.tokens[0].embedding)), Array.from(f32(whole.concept.tokens[0].embedding)));
  // Another run's settings do not resume silently.
  await assertRejects(async () => trainCustomDiffusion(await base({ steps: 6, workDir: dir, seed: 4 })), 'INVALID_ARGUMENT', /written by another run/, /seed 3 vs 4/);
  await assertRejects(async () => trainCustomDiffusion(await base({ steps: 6, workDir: dir, lr: 2e-3 })), 'INVALID_ARGUMENT', /written by another run/, /lr 0\.001 vs 0\.002/);
  await assertRejects(async () => trainCustomDiffusion(await base({ steps: 6, workDir: dir, priorLossWeight: 0.5 })), 'INVALID_ARGUMENT', /priorLossWeight 1 vs 0\.5/);
  await assertRejects(async () => trainCustomDiffusion(await base({ steps: 6, workDir: dir, augment: false })), 'INVALID_ARGUMENT', /augment \{"augment":true/);
  const f = await setup();
  const other = async (c: Partial<ConceptSpec>) => base({ steps: 6, workDir: dir, concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', numRegImages: 2, ...c }] });
  await assertRejects(async () => trainCustomDiffusion(await other({ instancePrompt: 'a <new1> dog' })), 'INVALID_ARGUMENT', /prompts .*photo of a <new1> dog.* vs .*"a <new1> dog"/);
  await assertRejects(async () => trainCustomDiffusion(await other({ images: f.blue })), 'INVALID_ARGUMENT', /data sha256:[0-9a-f]+ vs sha256:/);
  await assertRejects(async () => trainCustomDiffusion(await other({ numRegImages: 3 })), 'INVALID_ARGUMENT', /data sha256:/);
  // The same settings still resume (nothing above touched the checkpoint).
  const same = await trainCustomDiffusion(await base({ steps: 5, workDir: dir }));
  assert.is(same.losses.length, 1);
});

t('a loss over maxLoss stops with the step named and the last good checkpoint kept', async () => {
  const dir = await work();
  await trainCustomDiffusion(await base({ steps: 2, workDir: dir, checkpointEvery: 1 }));
  const ckpt = join(dir, 'checkpoint.safetensors');
  const saved = readFileSync(ckpt);
  await assertRejects(async () => trainCustomDiffusion(await base({ steps: 4, workDir: dir, maxLoss: 1e-9 })), 'INVALID_ARGUMENT', /at step 3/, /last good checkpoint .*checkpoint\.safetensors is kept/);
  assert.ok(readFileSync(ckpt).equals(saved), 'the checkpoint is unchanged');
  // Resuming later with sane settings continues from it.
  const r = await trainCustomDiffusion(await base({ steps: 3, workDir: dir }));
  assert.is(r.losses.length, 1);
});

t('generated regularization images are cached in workDir and reused by the next run', async () => {
  const dir = await work();
  await trainCustomDiffusion(await base({ steps: 1, workDir: dir, resume: false }));
  const root = join(dir, 'regularization');
  const sets = readdirSync(root);
  assert.is(sets.length, 1);
  const files = readdirSync(join(root, sets[0])).sort();
  assert.equal(files, ['0000.png', '0001.png', 'complete.json']);
  const stamp = (): string[] => files.map((x) => { const s = statSync(join(root, sets[0], x)); return `${x} ${s.ino} ${s.mtimeMs}`; });
  const before = stamp();
  // Sampling again would write a fresh folder (new inodes and times).
  await trainCustomDiffusion(await base({ steps: 1, workDir: dir, resume: false }));
  assert.equal(stamp(), before);
  assert.equal(readdirSync(root), sets);
  // The latents are cached beside them and read back: zeroed on disk, they change the next run's loss.
  const latentFiles = readdirSync(dir).filter((x) => x.startsWith('latents-'));
  assert.is(latentFiles.length, 1);
  const cacheFile = join(dir, latentFiles[0]);
  const cachedLatents = await loadSafetensors(cacheFile);
  assert.equal([...cachedLatents.keys()].sort(), ['instance/0/0/0', 'instance/0/0/1', 'instance/0/1/0', 'instance/0/1/1', 'regularization/0/0', 'regularization/0/1']);
  const again = await trainCustomDiffusion(await base({ steps: 1, workDir: dir, resume: false }));
  const zeroed = new Map([...cachedLatents].map(([k, v]) => [k, tensor(new Float32Array(v.numel), { shape: v.shape })]));
  await saveSafetensors(cacheFile, zeroed);
  const fromZeros = await trainCustomDiffusion(await base({ steps: 1, workDir: dir, resume: false }));
  assert.is.not(fromZeros.losses[0], again.losses[0]);
  // Another prompt or count gets its own set.
  await trainCustomDiffusion(await base({ steps: 1, workDir: dir, resume: false, concepts: [{ classWord: 'dog', images: (await setup()).red, initializer: 'x', numRegImages: 1 }] }));
  assert.is(readdirSync(root).length, 2);
  // What a killed run leaves (a half-sampled set, a checkpoint temporary of a process that ended) is removed at the next start.
  const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
  mkdirSync(join(root, `${sets[0]}.tmp-${dead}`));
  writeFileSync(join(dir, `checkpoint.safetensors.tmp.tmp-${dead}`), 'half');
  await trainCustomDiffusion(await base({ steps: 1, workDir: dir, resume: false }));
  assert.is(readdirSync(root).length, 2);
  assert.not.ok(existsSync(join(dir, `checkpoint.safetensors.tmp.tmp-${dead}`)));
  // A damaged cache record is an error naming the file and the way out, not a raw SyntaxError.
  writeFileSync(join(root, sets[0], 'complete.json'), '{"prompt": "pho');
  await assertRejects(async () => trainCustomDiffusion(await base({ steps: 1, workDir: dir, resume: false })), 'INVALID_ARGUMENT', /regularization cache .*complete\.json is damaged/, /remove the folder/);
});

t('a user regularization folder: captions from .txt files, the class prompt otherwise', async () => {
  const f = await setup();
  const reg = await tempFolder('imprint-cd-reg-');
  writeFileSync(join(reg, 'a.png'), await squarePng(16, 16, [0, 200, 0], 2, 2, 6));
  writeFileSync(join(reg, 'a.txt'), 'a green dog\n');
  writeFileSync(join(reg, 'b.png'), await squarePng(16, 16, [0, 0, 0], 4, 4, 6));
  const dir = await work();
  const r = await trainCustomDiffusion(await base({ steps: 1, workDir: dir, concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', regImages: reg }] }));
  assert.ok(r.losses.every(Number.isFinite));
  assert.not.ok(existsSync(join(dir, 'regularization')), 'nothing sampled');
  // The folder's content is part of the checkpoint's identity: an edited image or caption is another run's data.
  const resume = async () => trainCustomDiffusion(await base({ steps: 2, workDir: dir, concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', regImages: reg }] }));
  writeFileSync(join(reg, 'a.txt'), 'a blue dog\n');
  await assertRejects(resume, 'INVALID_ARGUMENT', /written by another run/, /data sha256:/);
  writeFileSync(join(reg, 'a.txt'), 'a green dog\n');
  writeFileSync(join(reg, 'b.png'), await squarePng(16, 16, [0, 0, 0], 5, 4, 6));
  await assertRejects(resume, 'INVALID_ARGUMENT', /data sha256:/);
  writeFileSync(join(reg, 'b.png'), await squarePng(16, 16, [0, 0, 0], 4, 4, 6));
  assert.is((await resume()).losses.length, 1, 'the unchanged folder resumes');
});

t('per-image prompts: instancePrompts and same-name .txt captions give the same run, the shared prompt another; a resume under other captions is refused', async () => {
  const f = await setup();
  const captioned = await conceptFolder(2, [220, 20, 20]);  // the same pixels as f.red
  const P = 'a <new1> dog on grass';
  const D = 'photo of a <new1> dog';  // the default instancePrompt
  writeFileSync(join(captioned, '00.txt'), `${P}\n`);  // 01.png has no caption: it gets the instancePrompt
  const deltas = async (c: Partial<ConceptSpec>, workDir?: string): Promise<Float32Array[]> => {
    const r = await trainCustomDiffusion(await base({ ...(workDir ? { workDir } : {}), concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', numRegImages: 2, ...c }] }));
    return [...r.concept.deltas.values(), r.concept.tokens[0].embedding].map((x) => f32(x));
  };
  const fromFiles = await deltas({ images: captioned });
  assert.equal(await deltas({ instancePrompts: [P, D] }), fromFiles, 'the caption file is image 00\'s prompt, the default image 01\'s');
  assert.not.equal(await deltas({}), fromFiles, 'the captions change the run');
  assert.not.equal(await deltas({ instancePrompts: [D, P] }), fromFiles, 'each prompt goes with its own image');
  // Explicit prompts win over caption files.
  assert.equal(await deltas({ images: captioned, instancePrompts: [P, D] }), fromFiles);
  // The captions are part of a checkpoint's identity.
  const dir = await work();
  await deltas({ images: captioned }, dir);
  writeFileSync(join(captioned, '00.txt'), 'a <new1> dog on sand');
  await assertRejects(() => deltas({ images: captioned }, dir), 'INVALID_ARGUMENT', /written by another run/, /prompts .*on grass.* vs .*on sand/);
  // Bad captions are named.
  writeFileSync(join(captioned, '00.txt'), 'a dog on sand');
  await assertRejects(() => deltas({ images: captioned }), 'INVALID_ARGUMENT', /caption of .*00\.png 'a dog on sand' must contain the token '<new1>'/);
  writeFileSync(join(captioned, '00.txt'), ' \n');
  await assertRejects(() => deltas({ images: captioned }), 'INVALID_ARGUMENT', /caption .*00\.txt is empty/);
  await assertRejects(() => deltas({ instancePrompts: [P] }), 'INVALID_ARGUMENT', /concepts\[0\]\.instancePrompts has 1 prompts for 2 images/);
  await assertRejects(() => deltas({ instancePrompts: [P, 'a dog'] }), 'INVALID_ARGUMENT', /instancePrompts\[1\] 'a dog' must contain the token '<new1>'/);
  await assertRejects(() => deltas({ instancePrompts: 'a <new1> dog' as unknown as string[] }), 'INVALID_ARGUMENT', /instancePrompts must be a non-empty array/);
});

t('memory: a run frees everything but its result, and a failed run frees everything', async () => {
  await trainCustomDiffusion(await base({ steps: 1 })).then(disposeResult);  // first-use caches settle
  const before = await settleGarbage();
  disposeResult(await trainCustomDiffusion(await base({ steps: 3 })));
  assert.is(await settleGarbage(), before, 'after a run');
  await assertRejects(async () => trainCustomDiffusion(await base({ steps: 2, maxLoss: 1e-9 })), 'INVALID_ARGUMENT', /at step 1/);
  assert.is(await settleGarbage(), before, 'after a failed run');
});

function disposeResult(r: Awaited<ReturnType<typeof trainCustomDiffusion>>): void {
  for (const d of r.concept.deltas.values()) d.dispose();
  for (const x of r.concept.tokens) x.embedding.dispose();
}

t('bad options are refused with clear errors', async () => {
  const f = await setup();
  const go = async (extra: Record<string, unknown>): Promise<unknown> => trainCustomDiffusion({ ...(await base()), ...extra } as never);
  await assertRejects(() => go({ stpes: 3 }), 'INVALID_ARGUMENT', /stpes/);
  await assertRejects(() => trainCustomDiffusion(null as never), 'INVALID_ARGUMENT', /options must be an object/);
  await assertRejects(() => go({ concepts: [] }), 'INVALID_ARGUMENT', /concepts must be a non-empty array/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', colour: 1 }] }), 'INVALID_ARGUMENT', /concepts\[0\].*colour/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: join(f.red, 'nope'), initializer: 'x' }] }), 'INVALID_ARGUMENT', /concepts\[0\]\.images folder .*nope does not exist/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red }] }), 'INVALID_ARGUMENT', /initializer 'pll' must be a single token/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', token: 'ca' }] }), 'INVALID_ARGUMENT', /token 'ca' is already in the vocabulary/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red, initializer: 'x' }, { classWord: 'cat', images: f.blue, initializer: 'x', token: '<new1>' }] }), 'INVALID_ARGUMENT', /'<new1>' is used by two concepts/);
  await assertRejects(() => go({ concepts: [{ images: f.red, initializer: 'x' }] }), 'INVALID_ARGUMENT', /classWord must be a non-empty string/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', instancePrompt: 'a photo of a dog' }] }), 'INVALID_ARGUMENT', /instancePrompt 'a photo of a dog' must contain the token '<new1>'/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', token: 'two words' }] }), 'INVALID_ARGUMENT', /must not contain whitespace/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', numRegImages: 0 }] }), 'INVALID_ARGUMENT', /numRegImages must be an integer/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: f.red, initializer: 'x', regImages: join(f.red, 'none') }] }), 'INVALID_ARGUMENT', /regImages folder .*none does not exist/);
  await assertRejects(() => go({ concepts: 'dog' }), 'INVALID_ARGUMENT', /concepts must be a non-empty array/);
  const broken = await tempFolder('imprint-cd-bad-');
  writeFileSync(join(broken, 'fine.png'), await squarePng(8, 8, [1, 2, 3], 0, 0, 2));
  writeFileSync(join(broken, 'broken.png'), 'not an image at all');
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: broken, initializer: 'x' }] }), 'INVALID_ARGUMENT', /image .*broken\.png could not be decoded/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: [Buffer.from('junk')], initializer: 'x' }] }), 'INVALID_ARGUMENT', /concepts\[0\]\.images\[0\] could not be decoded/);
  await assertRejects(() => go({ concepts: [{ classWord: 'dog', images: [42], initializer: 'x' }] }), 'INVALID_ARGUMENT', /images\[0\] must be an image path or an encoded image Buffer/);
  await assertRejects(() => go({ mode: 'all' }), 'INVALID_ARGUMENT', /mode must be 'kv' or 'cross'/);
  await assertRejects(() => go({ steps: 0 }), 'INVALID_ARGUMENT', /steps must be an integer/);
  await assertRejects(() => go({ lr: -1 }), 'INVALID_ARGUMENT', /lr must be a number/);
  await assertRejects(() => go({ lr: Number.NaN }), 'INVALID_ARGUMENT', /lr must be a number/);
  await assertRejects(() => go({ resolution: 15 }), 'INVALID_ARGUMENT', /resolution must be a multiple of the VAE factor 2/);
  await assertRejects(() => go({ priorLossWeight: 'yes' }), 'INVALID_ARGUMENT', /priorLossWeight/);
  await assertRejects(() => go({ onProgress: 5 }), 'INVALID_ARGUMENT', /onProgress must be a function/);
  await assertRejects(() => go({ model: join(f.model, 'missing') }), 'INVALID_ARGUMENT', /missing/);
});

t.run();
