// Checkpoint validation and loading: the tiny parity folders load and match
// their files, pipeline folders assembled in a temp dir (fp16 variant, sharded
// index, wrong shapes, missing and extra tensors, pickle-only weights), and an
// SD1 single-file checkpoint built from sd1-tiny under LDM names loads back to
// the same tensors.
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../lib/io/safetensors.js';
import { checkAgainstLayout, diffAgainstLayout, loadDiffusersComponent, loadDiffusersModel, loadSingleFileCheckpoint } from '../lib/models/checkpoint.js';
import { parseUNetConfig, parseVaeConfig, readJsonFile, type Layout } from '../lib/models/configs.js';
import { unetLayout } from '../lib/models/layout-unet.js';
import { clipLdmName, isVaeAttnLinear, unetLdmName, vaeLdmName } from '../lib/models/ldm-names.js';
import { assertRejects } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const sd1 = join(REFERENCE, 'parity/sd1-tiny');
const sd2 = join(REFERENCE, 'parity/sd2-tiny');
const tmp = mkdtempSync(join(tmpdir(), 'imprint-models-'));
const t = suite('models.checkpoint');
t.after(() => rmSync(tmp, { recursive: true, force: true }));

const FILES = { unet: 'diffusion_pytorch_model.safetensors', vae: 'diffusion_pytorch_model.safetensors', text_encoder: 'model.safetensors' } as const;
let seq = 0;
const fresh = (name: string): string => {
  const d = join(tmp, `${name}-${seq++}`);
  mkdirSync(d, { recursive: true });
  return d;
};

/** A component folder: config.json copied from sd1-tiny plus the given weight files. */
function componentDir(kind: keyof typeof FILES, weights: Record<string, string | null> = { [FILES[kind]]: join(sd1, kind, FILES[kind]) }): string {
  const d = fresh(kind);
  copyFileSync(join(sd1, kind, 'config.json'), join(d, 'config.json'));
  for (const [name, src] of Object.entries(weights)) {
    if (src === null) writeFileSync(join(d, name), Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]));
    else copyFileSync(src, join(d, name));
  }
  return d;
}

function sameTensors(got: Map<string, Tensor>, expected: Map<string, Tensor>, what: string): void {
  assert.equal([...got.keys()].sort(), [...expected.keys()].sort(), `${what}: names`);
  for (const [n, x] of expected) {
    const y = got.get(n)!;
    assert.equal(y.shape, x.shape, `${what}: shape of ${n}`);
    assert.is(y.dtype, x.dtype, `${what}: dtype of ${n}`);
    assert.equal(Array.from(y.dataSync() as Float32Array), Array.from(x.dataSync() as Float32Array), `${what}: values of ${n}`);
  }
}

const small: Layout = { a: [2, 3], b: [4], c: [1, 1, 2, 2] };

t('checkAgainstLayout passes a matching header and lists what differs', async () => {
  assert.is(checkAgainstLayout({ a: { shape: [2, 3] }, b: { shape: [4] }, c: { shape: [1, 1, 2, 2] } }, small), undefined);
  const header = { tensors: { a: { shape: [3, 2] }, c: { shape: [1, 1, 2, 2] }, extra: { shape: [1] } } };
  assert.equal(diffAgainstLayout(header, small), { missing: ['b'], unexpected: ['extra'], misshaped: [{ name: 'a', expected: [2, 3], found: [3, 2] }] });
  await assertRejects(
    () => checkAgainstLayout(header, small, { file: 'x.safetensors' }),
    'INVALID_ARGUMENT',
    /^x\.safetensors does not match the expected layout \(3 tensors\): 1 missing, 1 with a wrong shape, 1 unexpected/,
    /missing \(1\):\n {4}b\n/,
    /wrong shape \(1\):\n {4}a: expected \[2, 3\], found \[3, 2\]/,
    /unexpected \(1\):\n {4}extra$/,
  );
  // A buffer on the ignore list is not unexpected.
  assert.is(checkAgainstLayout({ a: { shape: [2, 3] }, b: { shape: [4] }, c: { shape: [1, 1, 2, 2] }, ids: { shape: [1, 77] } }, small, { ignore: ['ids'] }), undefined);
  // A tensor literally named 'tensors' is not mistaken for a wrapper.
  assert.equal(diffAgainstLayout({ tensors: { shape: [1] } }, {}).unexpected, ['tensors']);
});

t('long lists are truncated with a count', async () => {
  const layout: Layout = {};
  for (let i = 0; i < 25; i++) layout[`w${String(i).padStart(2, '0')}`] = [i + 1];
  const err = await assertRejects(() => checkAgainstLayout({}, layout, { file: 'big' }), 'INVALID_ARGUMENT', /25 missing/, /w09\n {4}… and 15 more/);
  assert.not.match(err.message, /w10/);
});

t('hostile headers and layouts are INVALID_ARGUMENT', async () => {
  await assertRejects(() => checkAgainstLayout(null as never, small), 'INVALID_ARGUMENT', /header must be an object/);
  await assertRejects(() => checkAgainstLayout({ a: { shape: 'big' } } as never, small), 'INVALID_ARGUMENT', /entry 'a' has no valid shape/);
  await assertRejects(() => checkAgainstLayout({ a: { shape: [-1] } }, small), 'INVALID_ARGUMENT', /entry 'a'/);
  await assertRejects(() => checkAgainstLayout({ a: 5 } as never, small), 'INVALID_ARGUMENT', /entry 'a'/);
  await assertRejects(() => checkAgainstLayout({}, null as never), 'INVALID_ARGUMENT', /layout must be an object/);
  await assertRejects(() => checkAgainstLayout({}, small, { fle: 'x' } as never), 'INVALID_ARGUMENT', /unknown option 'fle'/);
  await assertRejects(() => checkAgainstLayout({}, small, { ignore: 5 } as never), 'INVALID_ARGUMENT', /ignore must be an array of tensor names/);
  await assertRejects(() => checkAgainstLayout({}, small, { file: 7 } as never), 'INVALID_ARGUMENT', /file must be a string/);
  await assertRejects(() => checkAgainstLayout({}, { a: 3 } as never), 'INVALID_ARGUMENT', /layout entry 'a' must be a shape array/);
});

t('tiny parity folders load, validated, to exactly their files', async () => {
  for (const [root, kinds] of [[sd1, ['unet', 'vae', 'text_encoder']], [sd2, ['unet', 'text_encoder']]] as const) {
    for (const kind of kinds) {
      const dir = join(root, kind);
      const got = await loadDiffusersComponent(dir, kind as 'unet');
      sameTensors(got.weights, await loadSafetensors(join(dir, FILES[kind])), `${root} ${kind}`);
      assert.equal(got.files, [join(dir, FILES[kind])]);
    }
  }
  const u2 = await loadDiffusersComponent(join(sd2, 'unet'), 'unet');
  assert.is(u2.config.useLinearProjection, true);
  assert.equal(u2.config.heads, [2, 4, 4]);
});

t('a pipeline folder loads all parts, reports tokenizer and scheduler, and converts dtype', async () => {
  const root = fresh('pipe');
  writeFileSync(
    join(root, 'model_index.json'),
    JSON.stringify({ _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: ['diffusers', 'AutoencoderKL'], text_encoder: ['transformers', 'CLIPTextModel'], tokenizer: ['transformers', 'CLIPTokenizer'], scheduler: ['diffusers', 'DDIMScheduler'], safety_checker: [null, null] }),
  );
  for (const kind of ['unet', 'vae', 'text_encoder'] as const) {
    mkdirSync(join(root, kind));
    copyFileSync(join(sd1, kind, 'config.json'), join(root, kind, 'config.json'));
    copyFileSync(join(sd1, kind, FILES[kind]), join(root, kind, FILES[kind]));
  }
  mkdirSync(join(root, 'tokenizer'));
  mkdirSync(join(root, 'scheduler'));
  writeFileSync(join(root, 'scheduler', 'scheduler_config.json'), JSON.stringify({ _class_name: 'DDIMScheduler', num_train_timesteps: 1000 }));
  const m = await loadDiffusersModel(root, { dtype: 'bf16' });
  assert.is(m.tokenizerDir, join(root, 'tokenizer'));
  assert.equal(m.schedulerConfig, { _class_name: 'DDIMScheduler', num_train_timesteps: 1000 });
  assert.equal(m.unet.config.blockOutChannels, [32, 64]);
  assert.equal(m.vae!.config.blockOutChannels, [32, 64]);
  assert.is(m.textEncoder.config.hiddenSize, 32);
  for (const [part, kind] of [[m.unet, 'unet'], [m.vae!, 'vae'], [m.textEncoder, 'text_encoder']] as const) {
    sameTensors(part.weights, await loadSafetensors(join(sd1, kind, FILES[kind]), { dtype: 'bf16' }), kind);
  }

  writeFileSync(join(root, 'scheduler', 'scheduler_config.json'), '"ddim"');
  await assertRejects(() => loadDiffusersModel(root), 'INVALID_ARGUMENT', /scheduler_config\.json: expected a JSON object/);
  // Wrong class in model_index.json, a listed folder that is missing, bad JSON.
  writeFileSync(join(root, 'model_index.json'), JSON.stringify({ unet: ['diffusers', 'UNet2DModel'], vae: ['diffusers', 'AutoencoderKL'], text_encoder: ['transformers', 'CLIPTextModel'] }));
  await assertRejects(() => loadDiffusersModel(root), 'INVALID_ARGUMENT', /model_index\.json: 'unet' must be \["diffusers", "UNet2DConditionModel"\], got \["diffusers","UNet2DModel"\]/);
  writeFileSync(join(root, 'model_index.json'), '{"unet": ');
  await assertRejects(() => loadDiffusersModel(root), 'INVALID_ARGUMENT', /model_index\.json is not valid JSON/);
  writeFileSync(join(root, 'model_index.json'), '[]');
  await assertRejects(() => loadDiffusersModel(root), 'INVALID_ARGUMENT', /model_index\.json: expected a JSON object/);
  rmSync(join(root, 'model_index.json'));
  await assertRejects(() => loadDiffusersModel(root), 'INVALID_ARGUMENT', /model_index\.json is missing/);
  await assertRejects(() => loadDiffusersModel(join(root, 'nope')), 'INVALID_ARGUMENT', /is not a folder/);
  await assertRejects(() => loadDiffusersModel(root, { variant: '../x' }), 'INVALID_ARGUMENT', /variant must be a short name/);
  await assertRejects(() => loadDiffusersModel(root, { dtype: 'f64' as never }), 'INVALID_ARGUMENT', /dtype/);
});

t('a pixel-space pipeline folder ("vae": [null, null], as DeepFloyd IF) loads without a vae/ folder', async () => {
  const root = fresh('pixel');
  const index = { _class_name: 'StableDiffusionPipeline', unet: ['diffusers', 'UNet2DConditionModel'], vae: [null, null], text_encoder: ['transformers', 'CLIPTextModel'] };
  writeFileSync(join(root, 'model_index.json'), JSON.stringify(index));
  for (const kind of ['unet', 'text_encoder'] as const) {
    mkdirSync(join(root, kind));
    copyFileSync(join(sd1, kind, 'config.json'), join(root, kind, 'config.json'));
    copyFileSync(join(sd1, kind, FILES[kind]), join(root, kind, FILES[kind]));
  }
  const m = await loadDiffusersModel(root);
  assert.is(m.vae, undefined);
  assert.equal(m.unet.config.blockOutChannels, [32, 64]);
  writeFileSync(join(root, 'model_index.json'), JSON.stringify({ ...index, vae: [null] }));
  await assertRejects(() => loadDiffusersModel(root), 'INVALID_ARGUMENT', /'vae' must be \["diffusers", "AutoencoderKL"\] \(or \[null, null\] for a pixel-space model\), got \[null\]/);
});

t('fp16 variant: found by name, loaded as stored or converted; absent variant is a clear error', async () => {
  const d = componentDir('vae', {});
  const f16 = await loadSafetensors(join(sd1, 'vae', FILES.vae), { dtype: 'f16' });
  await saveSafetensors(join(d, 'diffusion_pytorch_model.fp16.safetensors'), f16);
  const got = await loadDiffusersComponent(d, 'vae', { variant: 'fp16' });
  sameTensors(got.weights, f16, 'fp16 variant');
  const widened = await loadDiffusersComponent(d, 'vae', { variant: 'fp16', dtype: 'f32' });
  assert.is(widened.weights.get('decoder.conv_out.weight')!.dtype, 'f32');
  assert.equal(Array.from(widened.weights.get('decoder.conv_out.weight')!.dataSync() as Float32Array), Array.from(f16.get('decoder.conv_out.weight')!.dataSync() as Float32Array));
  await assertRejects(() => loadDiffusersComponent(d, 'vae'), 'INVALID_ARGUMENT', /no weights found: expected diffusion_pytorch_model\.safetensors or diffusion_pytorch_model\.safetensors\.index\.json \(the folder holds: config\.json, diffusion_pytorch_model\.fp16\.safetensors\)/);
  await assertRejects(() => loadDiffusersComponent(d, 'vae', { variant: 'bf16' }), 'INVALID_ARGUMENT', /no 'bf16' variant weights found: expected diffusion_pytorch_model\.bf16\.safetensors/);
});

t('sharded weights: the index is followed; bad indexes are refused', async () => {
  const d = componentDir('text_encoder', {});
  const all = await loadSafetensors(join(sd1, 'text_encoder', FILES.text_encoder));
  const names = [...all.keys()];
  const half = Math.floor(names.length / 2);
  const shard = (i: number) => `model-0000${i + 1}-of-00002.safetensors`;
  await saveSafetensors(join(d, shard(0)), new Map(names.slice(0, half).map((n) => [n, all.get(n)!])));
  await saveSafetensors(join(d, shard(1)), new Map(names.slice(half).map((n) => [n, all.get(n)!])));
  const map = Object.fromEntries(names.map((n, i) => [n, shard(i < half ? 0 : 1)]));
  const index = join(d, 'model.safetensors.index.json');
  writeFileSync(index, JSON.stringify({ metadata: { total_size: 1 }, weight_map: map }));
  const got = await loadDiffusersComponent(d, 'text_encoder');
  sameTensors(got.weights, all, 'sharded');
  assert.equal(got.files.sort(), [join(d, shard(0)), join(d, shard(1))]);

  writeFileSync(index, JSON.stringify({ weight_map: { ...map, [names[0]]: '../../etc/passwd.safetensors' } }));
  await assertRejects(() => loadDiffusersComponent(d, 'text_encoder'), 'INVALID_ARGUMENT', /weight_map\['text_model[^']*'\] must name a \.safetensors file in the same folder/);
  writeFileSync(index, JSON.stringify({ weight_map: { ...map, [names[0]]: shard(1) } }));
  await assertRejects(() => loadDiffusersComponent(d, 'text_encoder'), 'INVALID_ARGUMENT', new RegExp(`weight_map puts '${names[0].replace(/\./g, '\\.')}' in ${shard(1)}, but it is in ${shard(0)}`));
  writeFileSync(index, JSON.stringify({ weight_map: { ...map, [names[0]]: 'model-00003-of-00002.safetensors' } }));
  await assertRejects(() => loadDiffusersComponent(d, 'text_encoder'), 'INVALID_ARGUMENT', /shard model-00003-of-00002\.safetensors does not exist/);
  writeFileSync(index, JSON.stringify({ weights: {} }));
  await assertRejects(() => loadDiffusersComponent(d, 'text_encoder'), 'INVALID_ARGUMENT', /expected an object with a 'weight_map' object/);
  writeFileSync(index, JSON.stringify({ weight_map: {} }));
  await assertRejects(() => loadDiffusersComponent(d, 'text_encoder'), 'INVALID_ARGUMENT', /weight_map is empty/);
});

t('wrong shapes, missing and extra tensors are named before any data is loaded', async () => {
  const all = await loadSafetensors(join(sd1, 'vae', FILES.vae));
  const d = componentDir('vae', {});
  const file = join(d, FILES.vae);
  const edited = new Map(all);
  edited.set('decoder.conv_in.weight', tensor(new Float32Array(64 * 4 * 9), { shape: [64, 4, 9] }));
  edited.delete('quant_conv.bias');
  edited.set('encoder.extra.weight', tensor(new Float32Array(2), { shape: [2] }));
  await saveSafetensors(file, edited);
  await assertRejects(
    () => loadDiffusersComponent(d, 'vae'),
    'INVALID_ARGUMENT',
    new RegExp(`^${file.replace(/[.]/g, '\\.')} does not match the expected layout`),
    /1 missing, 1 with a wrong shape, 1 unexpected/,
    /missing \(1\):\n {4}quant_conv\.bias/,
    /decoder\.conv_in\.weight: expected \[64, 4, 3, 3\], found \[64, 4, 9\]/,
    /unexpected \(1\):\n {4}encoder\.extra\.weight/,
  );
  // Config problems name config.json; a missing config is its own error.
  writeFileSync(join(d, 'config.json'), JSON.stringify({ _class_name: 'AutoencoderKL', block_out_channels: [32, 65] }));
  await assertRejects(() => loadDiffusersComponent(d, 'vae'), 'INVALID_ARGUMENT', /vae-\d+\/config\.json: 'norm_num_groups' must be a divisor/);
  rmSync(join(d, 'config.json'));
  await assertRejects(() => loadDiffusersComponent(d, 'vae'), 'INVALID_ARGUMENT', /config\.json is missing/);
  await assertRejects(() => loadDiffusersComponent(d, 'vea' as never), 'INVALID_ARGUMENT', /kind must be 'unet', 'vae' or 'text_encoder'/);
});

t('pickle-only weights are refused with a conversion hint; safetensors beside them wins', async () => {
  const d = componentDir('unet', { 'diffusion_pytorch_model.bin': null });
  await assertRejects(
    () => loadDiffusersComponent(d, 'unet'),
    'INVALID_ARGUMENT',
    /holds only pickle weights \(diffusion_pytorch_model\.bin\)/,
    /UNet2DConditionModel\.from_pretrained\(.*\)\.save_pretrained\(.*safe_serialization=True\)/,
    /from safetensors\.torch import save_file/,
  );
  const te = componentDir('text_encoder', { 'pytorch_model.bin': null });
  await assertRejects(() => loadDiffusersComponent(te, 'text_encoder'), 'INVALID_ARGUMENT', /from transformers import CLIPTextModel/);
  const both = componentDir('unet', { 'diffusion_pytorch_model.bin': null, [FILES.unet]: join(sd1, 'unet', FILES.unet) });
  assert.is((await loadDiffusersComponent(both, 'unet')).weights.size, Object.keys(unetLayout(parseUNetConfig(readJsonFile(join(sd1, 'unet/config.json'))))).length);
  const ckpt = join(fresh('ckpt'), 'model.ckpt');
  writeFileSync(ckpt, 'PK\x03\x04');
  await assertRejects(() => loadSingleFileCheckpoint(ckpt), 'INVALID_ARGUMENT', /model\.ckpt is a pickle checkpoint \(\.ckpt\)/, /save_file/);
  const disguised = join(fresh('ckpt'), 'model.safetensors');
  writeFileSync(disguised, 'PK\x03\x04 zip of pickles');
  await assertRejects(() => loadSingleFileCheckpoint(disguised), 'INVALID_ARGUMENT', /is a PyTorch pickle\/zip file, not safetensors/);
});

/** sd1-tiny renamed to LDM names (VAE attention kernels as 1x1 convs), with EMA, a buffer and a stray key. */
async function ldmFile(drop?: string): Promise<{ path: string; parts: Map<string, Tensor>[]; configs: Record<string, unknown> }> {
  const configs = {
    unet: readJsonFile(join(sd1, 'unet/config.json')),
    vae: readJsonFile(join(sd1, 'vae/config.json')),
    textEncoder: readJsonFile(join(sd1, 'text_encoder/config.json')),
  };
  const u = parseUNetConfig(configs.unet);
  const v = parseVaeConfig(configs.vae);
  const parts = [await loadSafetensors(join(sd1, 'unet', FILES.unet)), await loadSafetensors(join(sd1, 'vae', FILES.vae)), await loadSafetensors(join(sd1, 'text_encoder', FILES.text_encoder))];
  const out = new Map<string, Tensor>();
  for (const [n, x] of parts[0]) out.set(unetLdmName(n, u), x);
  for (const [n, x] of parts[1]) out.set(vaeLdmName(n, v), isVaeAttnLinear(n) ? x.reshape([...x.shape, 1, 1]) : x);
  for (const [n, x] of parts[2]) out.set(clipLdmName(n), x);
  out.set('model_ema.diffusion_modelinput_blocks00weight', parts[0].get('conv_in.weight')!);
  out.set('cond_stage_model.transformer.text_model.embeddings.position_ids', tensor(new Int32Array(77).map((_, i) => i), { shape: [1, 77] }));
  out.set('alphas_cumprod', tensor(new Float32Array(10), { shape: [10] }));
  out.set('lora_te_text_model_encoder.alpha', tensor(new Float32Array(1), { shape: [1] }));
  if (drop !== undefined) out.delete(drop);
  const path = join(fresh('single'), 'sd1-tiny.safetensors');
  await saveSafetensors(path, out);
  return { path, parts, configs };
}

t('an SD1 single-file checkpoint loads back to the same tensors, diffusers-named', async () => {
  const { path, parts, configs } = await ldmFile();
  assert.ok('first_stage_model.decoder.mid.attn_1.q.weight' in readSafetensorsHeader(path).tensors);
  const m = await loadSingleFileCheckpoint(path, { configs });
  sameTensors(m.unet.weights, parts[0], 'unet');
  sameTensors(m.vae.weights, parts[1], 'vae');
  sameTensors(m.textEncoder.weights, parts[2], 'text encoder');
  assert.equal(m.vae.weights.get('decoder.mid_block.attentions.0.to_q.weight')!.shape, [64, 64]);
  // EMA copies and known buffers are silent; anything else is reported.
  assert.equal(m.unknownKeys, ['lora_te_text_model_encoder.alpha']);
  const half = await loadSingleFileCheckpoint(path, { configs, dtype: 'f16' });
  assert.is(half.unet.weights.get('conv_in.weight')!.dtype, 'f16');
});

t('single files: a missing or mis-shaped part tensor fails with the part named; bad options are refused', async () => {
  const { path, configs } = await ldmFile('model.diffusion_model.middle_block.1.proj_in.weight');
  await assertRejects(
    () => loadSingleFileCheckpoint(path, { configs }),
    'INVALID_ARGUMENT',
    /\(UNet, SD 1\.x single-file names\) does not match the expected layout/,
    /missing \(1\):\n {4}mid_block\.attentions\.0\.proj_in\.weight/,
    /keys of no known part \(1\):\n {4}lora_te_text_model_encoder\.alpha/,
  );
  // The tiny file against the full-size SD 1.5 default configs: every shape is wrong.
  await assertRejects(() => loadSingleFileCheckpoint(path), 'INVALID_ARGUMENT', /UNet, SD 1\.x single-file names/, /conv_in\.weight: expected \[320, 4, 3, 3\], found \[32, 4, 3, 3\]/, /… and \d+ more/);
  await assertRejects(() => loadSingleFileCheckpoint(path, { configs: { unet: { layers_per_block: -1 } } }), 'INVALID_ARGUMENT', /UNet config: 'layers_per_block'/);
  await assertRejects(() => loadSingleFileCheckpoint(path, { configs: { clip: {} } as never }), 'INVALID_ARGUMENT', /unknown option 'clip'/);
  await assertRejects(() => loadSingleFileCheckpoint(path, { variant: 'fp16' } as never), 'INVALID_ARGUMENT', /unknown option 'variant'/);
  await assertRejects(() => loadSingleFileCheckpoint(join(tmp, 'absent.safetensors')), 'INVALID_ARGUMENT', /cannot open/);
  await assertRejects(() => loadSingleFileCheckpoint(42 as never), 'INVALID_ARGUMENT', /path must be a non-empty string/);
  const junk = join(fresh('junk'), 'junk.safetensors');
  writeFileSync(junk, Buffer.from([8, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x22]));
  await assertRejects(() => loadSingleFileCheckpoint(junk), 'INVALID_ARGUMENT');
});

t.run();
