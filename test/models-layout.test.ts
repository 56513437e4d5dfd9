// Model layouts: the SD 1.5 / SD 2.1 UNet, the SD VAE and CLIP ViT-L/14 text
// encoder must reproduce the reference name → shape lists exactly; the tiny
// parity models' configs must give exactly their files' headers; the derived
// LDM single-file names must equal the reference mapping; bad configs fail
// with errors naming the file and the field.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { readSafetensorsHeader } from '../lib/io/safetensors.js';
import { parseClipTextConfig, parseUNetConfig, parseVaeConfig, SD15_CONFIGS, type Layout } from '../lib/models/configs.js';
import { clipTextLayout } from '../lib/models/layout-clip.js';
import { unetLayout } from '../lib/models/layout-unet.js';
import { vaeLayout } from '../lib/models/layout-vae.js';
import { clipLdmName, isVaeAttnLinear, ldmNameMap, unetLdmName, vaeLdmName } from '../lib/models/ldm-names.js';
import { assertRejects } from './helpers.js';
import { REFERENCE } from './tiny-models.js';

const refDir = REFERENCE;
type RefEntry = { config: Record<string, unknown>; tensors: Layout; count: number; params: number };
const ref = JSON.parse(readFileSync(join(refDir, 'sd-layouts.json'), 'utf8')) as Record<string, RefEntry>;
const ldmRef = JSON.parse(readFileSync(join(refDir, 'ldm-names.json'), 'utf8')) as Record<string, Record<string, string>>;
const readJson = (p: string): Record<string, unknown> => JSON.parse(readFileSync(p, 'utf8'));

const t = suite('models.layout');

/** Asserts equal name sets and equal shapes, reporting the first differences. */
function assertSameLayout(got: Layout, expected: Layout, what: string): void {
  const missing = Object.keys(expected).filter((n) => !(n in got));
  const extra = Object.keys(got).filter((n) => !(n in expected));
  assert.equal(missing, [], `${what}: missing names`);
  assert.equal(extra, [], `${what}: unexpected names`);
  for (const [n, shape] of Object.entries(expected)) assert.equal(got[n], shape, `${what}: shape of ${n}`);
}

const numel = (s: number[]): number => s.reduce((a, b) => a * b, 1);

t('SD 1.5 UNet, SD 2.1 UNet, SD VAE and CLIP-L text encoder match sd-layouts.json exactly', () => {
  const cases: [string, Layout][] = [
    ['sd15_unet', unetLayout(parseUNetConfig(ref.sd15_unet.config))],
    ['sd21_unet', unetLayout(parseUNetConfig(ref.sd21_unet.config))],
    ['sd_vae', vaeLayout(parseVaeConfig(ref.sd_vae.config))],
    ['clip_l_text', clipTextLayout(parseClipTextConfig(ref.clip_l_text.config))],
  ];
  for (const [key, layout] of cases) {
    assertSameLayout(layout, ref[key].tensors, key);
    assert.is(Object.keys(layout).length, ref[key].count, `${key}: count`);
    assert.is(Object.values(layout).reduce((a, s) => a + numel(s), 0), ref[key].params, `${key}: parameter total`);
  }
});

t('SD1 projections are 1x1 convs, SD2 projections are linears; cross-attention width follows the config', () => {
  const sd1 = unetLayout(parseUNetConfig(ref.sd15_unet.config));
  const sd2 = unetLayout(parseUNetConfig(ref.sd21_unet.config));
  assert.equal(sd1['down_blocks.0.attentions.0.proj_in.weight'], [320, 320, 1, 1]);
  assert.equal(sd2['down_blocks.0.attentions.0.proj_in.weight'], [320, 320]);
  assert.equal(sd1['mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight'], [1280, 768]);
  assert.equal(sd2['mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight'], [1280, 1024]);
});

t('the shipped SD 1.5 configs give the reference layouts', () => {
  assertSameLayout(unetLayout(parseUNetConfig(SD15_CONFIGS.unet)), ref.sd15_unet.tensors, 'SD15 unet');
  assertSameLayout(vaeLayout(parseVaeConfig(SD15_CONFIGS.vae)), ref.sd_vae.tensors, 'SD15 vae');
  assertSameLayout(clipTextLayout(parseClipTextConfig(SD15_CONFIGS.textEncoder)), ref.clip_l_text.tensors, 'SD15 text');
});

t('tiny parity models: the layout of each config equals its safetensors header', () => {
  const parts: [string, (c: unknown) => Layout][] = [
    ['sd1-tiny/unet/diffusion_pytorch_model', (c) => unetLayout(parseUNetConfig(c))],
    ['sd1-tiny/vae/diffusion_pytorch_model', (c) => vaeLayout(parseVaeConfig(c))],
    ['sd1-tiny/text_encoder/model', (c) => clipTextLayout(parseClipTextConfig(c))],
    ['sd2-tiny/unet/diffusion_pytorch_model', (c) => unetLayout(parseUNetConfig(c))],
    ['sd2-tiny/text_encoder/model', (c) => clipTextLayout(parseClipTextConfig(c))],
  ];
  for (const [file, layoutOf] of parts) {
    const path = join(refDir, 'parity', `${file}.safetensors`);
    const cfg = readJson(join(path, '..', 'config.json'));
    const header = readSafetensorsHeader(path);
    const fromFile: Layout = {};
    for (const [n, e] of Object.entries(header.tensors)) if (n !== 'text_model.embeddings.position_ids') fromFile[n] = e.shape;
    assertSameLayout(layoutOf(cfg), fromFile, file);
  }
});

t('derived LDM names equal ldm-names.json for SD 1.5 (UNet, VAE, text encoder)', () => {
  const u = parseUNetConfig(ref.sd15_unet.config);
  const v = parseVaeConfig(ref.sd_vae.config);
  const c = parseClipTextConfig(ref.clip_l_text.config);
  const maps: [string, Map<string, string>][] = [
    ['unet', ldmNameMap(unetLayout(u), (n) => unetLdmName(n, u))],
    ['vae', ldmNameMap(vaeLayout(v), (n) => vaeLdmName(n, v))],
    ['text_encoder', ldmNameMap(clipTextLayout(c), clipLdmName)],
  ];
  for (const [key, map] of maps) {
    assert.equal(Object.fromEntries(map), ldmRef[key], `${key} mapping`);
  }
  // Exactly the q/k/v/proj_out kernels of both VAE mid-block attentions are 1x1 convs in LDM.
  const convs = Object.values(ldmRef.vae).filter(isVaeAttnLinear);
  assert.equal(convs.sort(), ['decoder', 'encoder'].flatMap((p) => ['to_k', 'to_out.0', 'to_q', 'to_v'].map((q) => `${p}.mid_block.attentions.0.${q}.weight`)));
});

t('a narrow, shallower VAE numbers its LDM decoder blocks in reverse', () => {
  const v = parseVaeConfig({ block_out_channels: [32, 64], layers_per_block: 1 });
  assert.is(vaeLdmName('decoder.up_blocks.0.resnets.0.conv1.weight', v), 'first_stage_model.decoder.up.1.block.0.conv1.weight');
  assert.is(vaeLdmName('decoder.up_blocks.1.resnets.1.conv_shortcut.bias', v), 'first_stage_model.decoder.up.0.block.1.nin_shortcut.bias');
  const u = parseUNetConfig({ block_out_channels: [32, 64], layers_per_block: 1, down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'] });
  assert.is(unetLdmName('down_blocks.0.downsamplers.0.conv.weight', u), 'model.diffusion_model.input_blocks.2.0.op.weight');
  assert.is(unetLdmName('up_blocks.0.upsamplers.0.conv.weight', u), 'model.diffusion_model.output_blocks.1.1.conv.weight');
  assert.throws(() => unetLdmName('nonsense.weight', u), /no single-file name for UNet parameter 'nonsense.weight'/);
});

t('config defaults are those of diffusers/transformers', () => {
  const u = parseUNetConfig({});
  assert.equal(u.blockOutChannels, [320, 640, 1280, 1280]);
  assert.is(u.crossAttentionDim, 1280);
  assert.equal(u.heads, [8, 8, 8, 8]);
  assert.is(u.useLinearProjection, false);
  assert.is(u.timeEmbeddingDim, 1280);
  const v = parseVaeConfig({});
  assert.equal(v.blockOutChannels, [64]);
  assert.is(v.layersPerBlock, 1);
  const c = parseClipTextConfig({});
  assert.is(c.hiddenSize, 512);
  assert.is(c.hiddenAct, 'quick_gelu');
  // num_attention_heads wins over attention_head_dim when given.
  assert.equal(parseUNetConfig({ attention_head_dim: 64, num_attention_heads: [5, 10, 20, 20] }).heads, [5, 10, 20, 20]);
});

t('bad configs name the file and the field', async () => {
  const f = 'unet/config.json';
  const bad: [unknown, RegExp][] = [
    [null, /a config must be a JSON object/],
    [[1, 2], /a config must be a JSON object/],
    [{ _class_name: 'AutoencoderKL' }, /'_class_name' is "AutoencoderKL", expected 'UNet2DConditionModel'/],
    [{ block_out_channels: [320, -1] }, /'block_out_channels' must be a non-empty list of positive integers/],
    [{ block_out_channels: '320' }, /'block_out_channels'/],
    [{ block_out_channels: [32, 64] }, /'down_block_types' must be a list of 2 block types/],
    [{ down_block_types: ['CrossAttnDownBlock2D', 'Evil', 'DownBlock2D', 'DownBlock2D'] }, /'down_block_types'/],
    [{ layers_per_block: 0 }, /'layers_per_block' must be an integer ≥ 1, got number 0/],
    [{ layers_per_block: 2.5 }, /'layers_per_block'/],
    [{ cross_attention_dim: 'big' }, /'cross_attention_dim'/],
    [{ attention_head_dim: [5, 10] }, /'attention_head_dim' must be a positive integer or a list of 4/],
    [{ attention_head_dim: 7 }, /'attention_head_dim' must be a head count dividing the block's channels \(block 0: 320 channels, 7 heads\)/],
    [{ norm_num_groups: 7 }, /'norm_num_groups' must be a divisor of every block channel count/],
    [{ use_linear_projection: 'yes' }, /'use_linear_projection' must be true or false/],
    [{ mid_block_type: 'UNetMidBlock2DSimpleCrossAttn' }, /'mid_block_type' must be one of 'UNetMidBlock2DCrossAttn'/],
    [{ conv_in_kernel: 2 }, /'conv_in_kernel' must be an odd integer/],
  ];
  for (const [cfg, pattern] of bad) await assertRejects(() => parseUNetConfig(cfg, f), 'INVALID_ARGUMENT', /^unet\/config\.json: /, pattern);
  await assertRejects(() => parseUNetConfig({ class_embed_type: 'timestep' }, f), 'UNSUPPORTED', /'class_embed_type' = "timestep" is not supported/);
  await assertRejects(() => parseVaeConfig({ latent_channels: 0 }, 'vae/config.json'), 'INVALID_ARGUMENT', /vae\/config\.json: 'latent_channels'/);
  await assertRejects(() => parseVaeConfig({ up_block_types: ['UpBlock2D'] }, 'vae/config.json'), 'INVALID_ARGUMENT', /'up_block_types'/);
  await assertRejects(() => parseClipTextConfig({ hidden_size: 100, num_attention_heads: 3 }, 'te.json'), 'INVALID_ARGUMENT', /te\.json: 'num_attention_heads' must be a divisor of hidden_size 100/);
  await assertRejects(() => parseClipTextConfig({ hidden_act: 'relu' }, 'te.json'), 'INVALID_ARGUMENT', /'hidden_act' must be one of 'quick_gelu', 'gelu'/);
  await assertRejects(() => parseClipTextConfig({ _class_name: 'CLIPVisionModel' }, 'te.json'), 'INVALID_ARGUMENT', /_class_name/);
});

t.run();
