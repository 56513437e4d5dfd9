// Every parameter of a diffusers AutoencoderKL (0.21 naming: the mid-block
// attention is group_norm + to_q/to_k/to_v/to_out.0 linears) with its shape.
import type { Layout, VaeConfig } from './configs.js';
import { resnetParams } from './layout-unet.js';

function midBlock(out: Layout, prefix: string, c: number): void {
  resnetParams(out, `${prefix}.resnets.0`, c, c, null);
  const a = `${prefix}.attentions.0`;
  out[`${a}.group_norm.weight`] = [c];
  out[`${a}.group_norm.bias`] = [c];
  for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) {
    out[`${a}.${p}.weight`] = [c, c];
    out[`${a}.${p}.bias`] = [c];
  }
  resnetParams(out, `${prefix}.resnets.1`, c, c, null);
}

/** name → shape of every VAE parameter for a parsed config. */
export function vaeLayout(cfg: VaeConfig): Layout {
  const out: Layout = {};
  const ch = cfg.blockOutChannels;
  const n = ch.length;
  const cm = ch[n - 1];
  const lat = cfg.latentChannels;

  out['encoder.conv_in.weight'] = [ch[0], cfg.inChannels, 3, 3];
  out['encoder.conv_in.bias'] = [ch[0]];
  for (let i = 0; i < n; i++) {
    let cin = i === 0 ? ch[0] : ch[i - 1];
    for (let j = 0; j < cfg.layersPerBlock; j++) {
      resnetParams(out, `encoder.down_blocks.${i}.resnets.${j}`, cin, ch[i], null);
      cin = ch[i];
    }
    if (i < n - 1) {
      out[`encoder.down_blocks.${i}.downsamplers.0.conv.weight`] = [ch[i], ch[i], 3, 3];
      out[`encoder.down_blocks.${i}.downsamplers.0.conv.bias`] = [ch[i]];
    }
  }
  midBlock(out, 'encoder.mid_block', cm);
  out['encoder.conv_norm_out.weight'] = [cm];
  out['encoder.conv_norm_out.bias'] = [cm];
  // Mean and log-variance of the latent: twice the latent channels.
  out['encoder.conv_out.weight'] = [2 * lat, cm, 3, 3];
  out['encoder.conv_out.bias'] = [2 * lat];

  out['decoder.conv_in.weight'] = [cm, lat, 3, 3];
  out['decoder.conv_in.bias'] = [cm];
  midBlock(out, 'decoder.mid_block', cm);
  const rev = [...ch].reverse();
  let prev = rev[0];
  for (let i = 0; i < n; i++) {
    let cin = prev;
    for (let j = 0; j <= cfg.layersPerBlock; j++) {
      resnetParams(out, `decoder.up_blocks.${i}.resnets.${j}`, cin, rev[i], null);
      cin = rev[i];
    }
    if (i < n - 1) {
      out[`decoder.up_blocks.${i}.upsamplers.0.conv.weight`] = [rev[i], rev[i], 3, 3];
      out[`decoder.up_blocks.${i}.upsamplers.0.conv.bias`] = [rev[i]];
    }
    prev = rev[i];
  }
  out['decoder.conv_norm_out.weight'] = [ch[0]];
  out['decoder.conv_norm_out.bias'] = [ch[0]];
  out['decoder.conv_out.weight'] = [cfg.outChannels, ch[0], 3, 3];
  out['decoder.conv_out.bias'] = [cfg.outChannels];

  out['quant_conv.weight'] = [2 * lat, 2 * lat, 1, 1];
  out['quant_conv.bias'] = [2 * lat];
  out['post_quant_conv.weight'] = [lat, lat, 1, 1];
  out['post_quant_conv.bias'] = [lat];
  return out;
}
