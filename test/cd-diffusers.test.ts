// diffusers interop: export → import gives back the concept (deltas to 1e-6,
// embeddings exactly), the files carry exactly the keys diffusers' Custom
// Diffusion processors and load_textual_inversion use, and damaged folders are
// refused with the file and the entry named.
import { mkdtempSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors, readSafetensorsHeader, saveSafetensors } from '../lib/io/safetensors.js';
import { exportDiffusers, importDiffusers } from '../lib/methods/custom-diffusion/diffusers-format.js';
import { modelFingerprint } from '../lib/concepts/fingerprint.js';
import { disposeAll, randomConcept } from './cd-fixtures.js';
import { assertClose, assertRejects } from './helpers.js';
import { tinyModelLoader } from './tiny-models.js';

const t = suite('cd.diffusers');
const unet = tinyModelLoader('unet');
const text = tinyModelLoader('text_encoder');
const root = mkdtempSync(join(tmpdir(), 'imprint-cddiff-'));
t.after(() => rmSync(root, { recursive: true, force: true }));
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;
const LAYERS = [
  'down_blocks.0.attentions.0.transformer_blocks.0.attn2',
  'down_blocks.0.attentions.1.transformer_blocks.0.attn2',
  'mid_block.attentions.0.transformer_blocks.0.attn2',
  'up_blocks.1.attentions.0.transformer_blocks.0.attn2',
  'up_blocks.1.attentions.1.transformer_blocks.0.attn2',
  'up_blocks.1.attentions.2.transformer_blocks.0.attn2',
];

for (const mode of ['kv', 'cross'] as const) {
  t(`mode ${mode}: export writes diffusers' keys with W0 + ΔW; import gives the same deltas and embeddings`, async () => {
    const base = (await unet('sd1-tiny')).weights;
    const c = await randomConcept(base, { mode, tokens: [['<new1>', 'dog'], ['<new2>', 'cat']], fingerprint: 'sha256:feed' });
    c.tokens[1].prompt = 'a <new2> cat on a sofa';
    const dir = join(root, mode);
    const paths = await exportDiffusers(c, base, dir);
    assert.equal(readdirSync(dir).sort(), ['<new1>.safetensors', '<new2>.safetensors', 'imprint-concept.json', 'pytorch_custom_diffusion_weights.safetensors']);
    assert.is(paths.length, 4);
    const weightsPath = join(dir, 'pytorch_custom_diffusion_weights.safetensors');
    const keys = Object.keys(readSafetensorsHeader(weightsPath).tensors).sort();
    const suffixes = mode === 'kv'
      ? ['processor.to_k_custom_diffusion.weight', 'processor.to_v_custom_diffusion.weight']
      : ['processor.to_k_custom_diffusion.weight', 'processor.to_out_custom_diffusion.0.bias', 'processor.to_out_custom_diffusion.0.weight', 'processor.to_q_custom_diffusion.weight', 'processor.to_v_custom_diffusion.weight'];
    assert.equal(keys, LAYERS.flatMap((l) => suffixes.map((s) => `${l}.${s}`)).sort());
    // The stored values are full weights: W0 + ΔW, checked in double here.
    const file = await loadSafetensors(weightsPath);
    const k = `${LAYERS[2]}.to_k.weight`;
    const w0 = f32(base.get(k)!);
    const d = f32(c.deltas.get(k)!);
    assertClose(f32(file.get(`${LAYERS[2]}.processor.to_k_custom_diffusion.weight`)!), Array.from(w0, (x, i) => x + d[i]), 1e-6, 1e-7);
    if (mode === 'cross') {
      assert.equal(Array.from(f32(file.get(`${LAYERS[0]}.processor.to_out_custom_diffusion.0.bias`)!)), Array.from(f32(base.get(`${LAYERS[0]}.to_out.0.bias`)!)), 'bias unchanged');
    }
    for (const x of file.values()) x.dispose();
    // The token file is what load_textual_inversion reads: {"<new1>": [hidden]}.
    const tok = await loadSafetensors(join(dir, '<new1>.safetensors'));
    assert.equal([...tok.keys()], ['<new1>']);
    assert.equal(Array.from(f32(tok.get('<new1>')!)), Array.from(f32(c.tokens[0].embedding)));
    tok.get('<new1>')!.dispose();

    const back = await importDiffusers(dir, base);
    assert.is(back.mode, mode);
    assert.is(back.baseFingerprint, 'sha256:feed', 'from imprint-concept.json');
    assert.equal([...back.deltas.keys()].sort(), [...c.deltas.keys()].sort());
    for (const [n, delta] of c.deltas) assertClose(f32(back.deltas.get(n)!), f32(delta), 0, 1e-6, n);
    assert.equal(back.tokens.map((x) => [x.token, x.classWord]), [['<new1>', 'dog'], ['<new2>', 'cat']]);
    assert.equal(back.tokens.map((x) => x.prompt), [undefined, 'a <new2> cat on a sofa'], 'training prompts from imprint-concept.json');
    back.tokens.forEach((x, i) => assert.equal(Array.from(f32(x.embedding)), Array.from(f32(c.tokens[i].embedding))));
    disposeAll(back);

    // Without the sidecar (a folder diffusers wrote): class words from the option, the fingerprint from the text encoder.
    unlinkSync(join(dir, 'imprint-concept.json'));
    const table = (await text('sd1-tiny')).weights.get('text_model.embeddings.token_embedding.weight')!;
    const plain = await importDiffusers(dir, base, { classWords: { '<new2>': 'kitten' }, tokenEmbedding: table });
    assert.equal(plain.tokens.map((x) => x.classWord), ['', 'kitten']);
    assert.is(plain.baseFingerprint, await modelFingerprint(base, table));
    disposeAll(plain);
    disposeAll(c);
  });
}

t('A1111-style token files (emb_params, [1, hidden]) are read too', async () => {
  const base = (await unet('sd1-tiny')).weights;
  const c = await randomConcept(base, { tokens: [['<cat-toy>', 'toy']] });
  const dir = join(root, 'a1111');
  await exportDiffusers(c, base, dir);
  const row = tensor(f32(c.tokens[0].embedding), { shape: [1, 32] });
  await saveSafetensors(join(dir, '<cat-toy>.safetensors'), { emb_params: row });
  row.dispose();
  const back = await importDiffusers(dir, base);
  assert.equal(back.tokens[0].embedding.shape, [32]);
  assert.equal(Array.from(f32(back.tokens[0].embedding)), Array.from(f32(c.tokens[0].embedding)));
  disposeAll(back);
  disposeAll(c);
});

t('damaged folders and bad arguments are refused with the file and entry named', async () => {
  const base = (await unet('sd1-tiny')).weights;
  const c = await randomConcept(base, { mode: 'cross' });
  const good = join(root, 'good');
  await exportDiffusers(c, base, good);
  const weightsPath = join(good, 'pytorch_custom_diffusion_weights.safetensors');
  const original = await loadSafetensors(weightsPath);
  const variant = async (name: string, edit: (m: Map<string, Tensor>) => void): Promise<string> => {
    const dir = join(root, name);
    await exportDiffusers(c, base, dir);
    const m = new Map(original);
    edit(m);
    await saveSafetensors(join(dir, 'pytorch_custom_diffusion_weights.safetensors'), m);
    return dir;
  };
  const K = `${LAYERS[1]}.processor.to_v_custom_diffusion.weight`;
  const extra = tensor(new Float32Array(4));
  const wrong = tensor(new Float32Array(32 * 16), { shape: [32, 16] });
  await assertRejects(async () => importDiffusers(await variant('missing', (m) => m.delete(K)), base), 'INVALID_ARGUMENT', /pytorch_custom_diffusion_weights\.safetensors/, new RegExp(`'${K.replace(/\./g, '\\.')}' is missing`));
  await assertRejects(async () => importDiffusers(await variant('shape', (m) => m.set(K, wrong)), base), 'INVALID_ARGUMENT', /is \[32, 16\] but the base weight/, /another model/);
  await assertRejects(async () => importDiffusers(await variant('extra', (m) => m.set('text_encoder.lora', extra)), base), 'INVALID_ARGUMENT', /unexpected entry 'text_encoder\.lora'/);
  await assertRejects(async () => importDiffusers(await variant('attn1', (m) => m.set(`${LAYERS[0].replace('attn2', 'attn1')}.processor.to_k_custom_diffusion.weight`, extra)), base), 'INVALID_ARGUMENT', /unexpected entry '.*attn1/);
  extra.dispose();
  wrong.dispose();
  for (const x of original.values()) x.dispose();
  // Token files: wrong key, wrong width, two rows.
  const tokDir = join(root, 'tok');
  await exportDiffusers(c, base, tokDir);
  const row16 = tensor(new Float32Array(16));
  const rows2 = tensor(new Float32Array(64), { shape: [2, 32] });
  await saveSafetensors(join(tokDir, '<new1>.safetensors'), { '<other>': row16 });
  await assertRejects(() => importDiffusers(tokDir, base), 'INVALID_ARGUMENT', /<new1>\.safetensors: a token file must hold one tensor named '<new1>', got '<other>'/);
  await saveSafetensors(join(tokDir, '<new1>.safetensors'), { '<new1>': rows2 });
  await assertRejects(() => importDiffusers(tokDir, base), 'INVALID_ARGUMENT', /must be one embedding row/, /\[2, 32\]/);
  await exportDiffusers(c, base, tokDir);
  await saveSafetensors(join(tokDir, '<new2>.safetensors'), { '<new2>': row16 });
  await assertRejects(() => importDiffusers(tokDir, base), 'INVALID_ARGUMENT', /<new2>\.safetensors: the embedding has width 16 but <new1>'s has 32/);
  row16.dispose();
  rows2.dispose();
  writeFileSync(join(tokDir, 'imprint-concept.json'), '{"tokens": [');
  await assertRejects(() => importDiffusers(tokDir, base), 'INVALID_ARGUMENT', /imprint-concept\.json: not valid JSON/);
  await assertRejects(() => importDiffusers(join(root, 'nowhere'), base), 'INVALID_ARGUMENT', /nowhere/);
  await assertRejects(() => importDiffusers(good, new Map()), 'INVALID_ARGUMENT', /no cross-attention/);
  await assertRejects(() => importDiffusers(good, base, { classWords: ['dog'] as never }), 'INVALID_ARGUMENT', /classWords/);
  await assertRejects(() => importDiffusers(good, base, { style: 1 } as never), 'INVALID_ARGUMENT', /unknown option 'style'/);
  // Export: a concept for another UNet, a bad directory.
  const sd2 = (await unet('sd2-tiny')).weights;
  await assertRejects(() => exportDiffusers(c, sd2, join(root, 'sd2')), 'SHAPE_MISMATCH', /base weight is/);
  await assertRejects(() => exportDiffusers(c, base, ''), 'INVALID_ARGUMENT', /dir/);
  await assertRejects(() => exportDiffusers({ ...c, method: 'lora' } as never, base, good), 'INVALID_ARGUMENT', /method/);
  disposeAll(c);
});

t.run();
