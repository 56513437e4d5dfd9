// Every parameter of a diffusers UNet2DConditionModel (0.21 naming) with its
// shape, derived from the config the way diffusers builds its modules.
import type { Layout, UNetConfig } from './configs.js';

/** A ResnetBlock2D with a time-embedding projection; conv_shortcut only when channels change. */
export function resnetParams(out: Layout, prefix: string, cin: number, cout: number, temb: number | null): void {
  out[`${prefix}.norm1.weight`] = [cin];
  out[`${prefix}.norm1.bias`] = [cin];
  out[`${prefix}.conv1.weight`] = [cout, cin, 3, 3];
  out[`${prefix}.conv1.bias`] = [cout];
  if (temb !== null) {
    out[`${prefix}.time_emb_proj.weight`] = [cout, temb];
    out[`${prefix}.time_emb_proj.bias`] = [cout];
  }
  out[`${prefix}.norm2.weight`] = [cout];
  out[`${prefix}.norm2.bias`] = [cout];
  out[`${prefix}.conv2.weight`] = [cout, cout, 3, 3];
  out[`${prefix}.conv2.bias`] = [cout];
  if (cin !== cout) {
    out[`${prefix}.conv_shortcut.weight`] = [cout, cin, 1, 1];
    out[`${prefix}.conv_shortcut.bias`] = [cout];
  }
}

// Transformer2DModel: inner dim = heads · (channels / heads) = channels (checked by the config parser).
function transformerParams(out: Layout, prefix: string, c: number, depth: number, cfg: UNetConfig): void {
  const proj = cfg.useLinearProjection ? [c, c] : [c, c, 1, 1];
  out[`${prefix}.norm.weight`] = [c];
  out[`${prefix}.norm.bias`] = [c];
  out[`${prefix}.proj_in.weight`] = proj;
  out[`${prefix}.proj_in.bias`] = [c];
  for (let d = 0; d < depth; d++) {
    const b = `${prefix}.transformer_blocks.${d}`;
    for (const [attn, norm, kv] of [['attn1', 'norm1', c], ['attn2', 'norm2', cfg.crossAttentionDim]] as const) {
      out[`${b}.${norm}.weight`] = [c];
      out[`${b}.${norm}.bias`] = [c];
      out[`${b}.${attn}.to_q.weight`] = [c, c];
      out[`${b}.${attn}.to_k.weight`] = [c, kv];
      out[`${b}.${attn}.to_v.weight`] = [c, kv];
      out[`${b}.${attn}.to_out.0.weight`] = [c, c];
      out[`${b}.${attn}.to_out.0.bias`] = [c];
    }
    out[`${b}.norm3.weight`] = [c];
    out[`${b}.norm3.bias`] = [c];
    // GEGLU: one projection produces both halves of the 4c-wide gate.
    out[`${b}.ff.net.0.proj.weight`] = [8 * c, c];
    out[`${b}.ff.net.0.proj.bias`] = [8 * c];
    out[`${b}.ff.net.2.weight`] = [c, 4 * c];
    out[`${b}.ff.net.2.bias`] = [c];
  }
  out[`${prefix}.proj_out.weight`] = proj;
  out[`${prefix}.proj_out.bias`] = [c];
}

/** name → shape of every UNet parameter for a parsed config. */
export function unetLayout(cfg: UNetConfig): Layout {
  const out: Layout = {};
  const ch = cfg.blockOutChannels;
  const n = ch.length;
  const temb = cfg.timeEmbeddingDim;
  const L = cfg.layersPerBlock;
  out['conv_in.weight'] = [ch[0], cfg.inChannels, cfg.convInKernel, cfg.convInKernel];
  out['conv_in.bias'] = [ch[0]];
  out['time_embedding.linear_1.weight'] = [temb, ch[0]];
  out['time_embedding.linear_1.bias'] = [temb];
  out['time_embedding.linear_2.weight'] = [temb, temb];
  out['time_embedding.linear_2.bias'] = [temb];

  for (let i = 0; i < n; i++) {
    const cout = ch[i];
    let cin = i === 0 ? ch[0] : ch[i - 1];
    for (let j = 0; j < L; j++) {
      resnetParams(out, `down_blocks.${i}.resnets.${j}`, cin, cout, temb);
      if (cfg.downBlockTypes[i] === 'CrossAttnDownBlock2D') transformerParams(out, `down_blocks.${i}.attentions.${j}`, cout, cfg.transformerLayersPerBlock[i], cfg);
      cin = cout;
    }
    if (i < n - 1) {
      out[`down_blocks.${i}.downsamplers.0.conv.weight`] = [cout, cout, 3, 3];
      out[`down_blocks.${i}.downsamplers.0.conv.bias`] = [cout];
    }
  }

  const cm = ch[n - 1];
  resnetParams(out, 'mid_block.resnets.0', cm, cm, temb);
  transformerParams(out, 'mid_block.attentions.0', cm, cfg.transformerLayersPerBlock[n - 1], cfg);
  resnetParams(out, 'mid_block.resnets.1', cm, cm, temb);

  // Up blocks run over reversed channels; each resnet also takes a skip connection from the down path.
  const rev = [...ch].reverse();
  const revDepth = [...cfg.transformerLayersPerBlock].reverse();
  let prev = rev[0];
  for (let i = 0; i < n; i++) {
    const cout = rev[i];
    const skipIn = rev[Math.min(i + 1, n - 1)];
    for (let j = 0; j <= L; j++) {
      const skip = j === L ? skipIn : cout;
      const cin = j === 0 ? prev : cout;
      resnetParams(out, `up_blocks.${i}.resnets.${j}`, cin + skip, cout, temb);
      if (cfg.upBlockTypes[i] === 'CrossAttnUpBlock2D') transformerParams(out, `up_blocks.${i}.attentions.${j}`, cout, revDepth[i], cfg);
    }
    if (i < n - 1) {
      out[`up_blocks.${i}.upsamplers.0.conv.weight`] = [cout, cout, 3, 3];
      out[`up_blocks.${i}.upsamplers.0.conv.bias`] = [cout];
    }
    prev = cout;
  }

  out['conv_norm_out.weight'] = [ch[0]];
  out['conv_norm_out.bias'] = [ch[0]];
  out['conv_out.weight'] = [cfg.outChannels, ch[0], cfg.convOutKernel, cfg.convOutKernel];
  out['conv_out.bias'] = [cfg.outChannels];
  return out;
}
