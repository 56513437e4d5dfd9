// Original (CompVis/LDM) single-file names of SD 1.x parts, derived from the
// diffusers layout of each part, so that any width/depth of the SD1
// architecture maps (the decoder's up blocks are numbered in reverse in LDM).
import { invalidArgument } from '../errors.js';
import type { Layout, UNetConfig, VaeConfig } from './configs.js';

const RESNET: Record<string, string> = {
  norm1: 'in_layers.0',
  conv1: 'in_layers.2',
  time_emb_proj: 'emb_layers.1',
  norm2: 'out_layers.0',
  conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

const VAE_ATTN: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

function unknown(part: string, name: string): never {
  throw invalidArgument(`ldm-names: no single-file name for ${part} parameter '${name}'`);
}

function resnetRest(rest: string): string {
  const m = /^([a-z_0-9]+)\.(weight|bias)$/.exec(rest);
  if (m === null || !(m[1] in RESNET)) throw invalidArgument(`ldm-names: unknown resnet parameter '${rest}'`);
  return `${RESNET[m[1]]}.${m[2]}`;
}

/** The LDM name of a diffusers UNet parameter (with the model.diffusion_model. prefix). */
export function unetLdmName(name: string, cfg: UNetConfig): string {
  const L = cfg.layersPerBlock;
  const simple: Record<string, string> = {
    conv_in: 'input_blocks.0.0',
    'time_embedding.linear_1': 'time_embed.0',
    'time_embedding.linear_2': 'time_embed.2',
    conv_norm_out: 'out.0',
    conv_out: 'out.2',
  };
  let m = /^(.*)\.(weight|bias)$/.exec(name);
  let ldm: string | undefined;
  if (m !== null && m[1] in simple) ldm = `${simple[m[1]]}.${m[2]}`;
  else if ((m = /^down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(name))) ldm = `input_blocks.${1 + +m[1] * (L + 1) + +m[2]}.0.${resnetRest(m[3])}`;
  else if ((m = /^down_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$/.exec(name))) ldm = `input_blocks.${1 + +m[1] * (L + 1) + +m[2]}.1.${m[3]}`;
  else if ((m = /^down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(name))) ldm = `input_blocks.${(+m[1] + 1) * (L + 1)}.0.op.${m[2]}`;
  else if ((m = /^mid_block\.resnets\.([01])\.(.*)$/.exec(name))) ldm = `middle_block.${2 * +m[1]}.${resnetRest(m[2])}`;
  else if ((m = /^mid_block\.attentions\.0\.(.*)$/.exec(name))) ldm = `middle_block.1.${m[1]}`;
  else if ((m = /^up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(name))) ldm = `output_blocks.${+m[1] * (L + 1) + +m[2]}.0.${resnetRest(m[3])}`;
  else if ((m = /^up_blocks\.(\d+)\.attentions\.(\d+)\.(.*)$/.exec(name))) ldm = `output_blocks.${+m[1] * (L + 1) + +m[2]}.1.${m[3]}`;
  else if ((m = /^up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(name))) {
    // The upsampler follows the last resnet, and its attention when the block has one.
    const slot = cfg.upBlockTypes[+m[1]] === 'CrossAttnUpBlock2D' ? 2 : 1;
    ldm = `output_blocks.${+m[1] * (L + 1) + L}.${slot}.conv.${m[2]}`;
  }
  if (ldm === undefined) unknown('UNet', name);
  return `model.diffusion_model.${ldm}`;
}

/** The LDM name of a diffusers VAE parameter (with the first_stage_model. prefix). */
export function vaeLdmName(name: string, cfg: VaeConfig): string {
  const n = cfg.blockOutChannels.length;
  const vaeResnet = (rest: string) => rest.replace(/^conv_shortcut\./, 'nin_shortcut.');
  let m: RegExpExecArray | null;
  let ldm: string | undefined;
  if ((m = /^(encoder|decoder)\.(conv_in|conv_out)\.(weight|bias)$/.exec(name))) ldm = name;
  else if ((m = /^(encoder|decoder)\.conv_norm_out\.(weight|bias)$/.exec(name))) ldm = `${m[1]}.norm_out.${m[2]}`;
  else if ((m = /^(post_quant_conv|quant_conv)\.(weight|bias)$/.exec(name))) ldm = name;
  else if ((m = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(name))) ldm = `encoder.down.${m[1]}.block.${m[2]}.${vaeResnet(m[3])}`;
  else if ((m = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)$/.exec(name))) ldm = `encoder.down.${m[1]}.downsample.conv.${m[2]}`;
  else if ((m = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)$/.exec(name))) ldm = `decoder.up.${n - 1 - +m[1]}.block.${m[2]}.${vaeResnet(m[3])}`;
  else if ((m = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)$/.exec(name))) ldm = `decoder.up.${n - 1 - +m[1]}.upsample.conv.${m[2]}`;
  else if ((m = /^(encoder|decoder)\.mid_block\.resnets\.([01])\.(.*)$/.exec(name))) ldm = `${m[1]}.mid.block_${+m[2] + 1}.${m[3]}`;
  else if ((m = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/.exec(name))) ldm = `${m[1]}.mid.attn_1.${VAE_ATTN[m[2]]}.${m[3]}`;
  if (ldm === undefined) unknown('VAE', name);
  return `first_stage_model.${ldm}`;
}

/** The LDM name of a CLIP text encoder parameter. */
export function clipLdmName(name: string): string {
  return `cond_stage_model.transformer.${name}`;
}

/** VAE parameters stored as 1x1 conv kernels [C, C, 1, 1] in LDM files but as linears [C, C] in diffusers. */
export function isVaeAttnLinear(name: string): boolean {
  return /^(encoder|decoder)\.mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$/.test(name);
}

/** LDM name → diffusers name for every parameter of a layout. */
export function ldmNameMap(layout: Layout, toLdm: (name: string) => string): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of Object.keys(layout)) out.set(toLdm(name), name);
  return out;
}
