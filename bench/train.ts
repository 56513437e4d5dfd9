// Training-step benchmarks (DESIGN.md §7): one UNet forward + MSE + backward
// in one native call (lossBackward) plus the AdamW update of what trains, on
// random weights initialised as PyTorch does.
//   world-all:   the embedded world model's UNet, every weight trainable, batch 16 (its pretraining step)
//   sd15-512-kv: the real SD1.5 UNet at 512×512 (latents 4×64×64), batch 1, K/V trainable,
//                with activation checkpointing (heavy on a CPU: one step takes minutes)
//   sd1-small-kv: SD1 block structure [64, 128, 256, 256], 2 layers, 4 heads, 256-wide text,
//                 latents 4×32×32, batch 2, attn2 K/V trainable (Custom Diffusion), with and without
//                 activation checkpointing
// No PyTorch peer: the peer would need diffusers, which the bench machine may lack.
import { randn } from '../lib/creation.js';
import { parseUNetConfig } from '../lib/models/configs.js';
import { initWeights } from '../lib/models/init.js';
import { unetLayout } from '../lib/models/layout-unet.js';
import { UNet2DConditionModel, type UNetTrainable } from '../lib/models/unet.js';
import type { Tensor } from '../lib/tensor.js';
import { AdamW } from '../lib/train/optimizer.js';
import { WORLD_UNET_CONFIG } from '../lib/world/model-config.js';
import { SD15_CONFIGS } from '../lib/models/configs.js';
import type { BenchCase } from './cases.js';

const SD1_SMALL = {
  sample_size: 32, in_channels: 4, out_channels: 4,
  down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
  block_out_channels: [64, 128, 256, 256], layers_per_block: 2, attention_head_dim: 4, cross_attention_dim: 256,
  norm_num_groups: 32,
};

function stepCase(name: string, config: Record<string, unknown>, batch: number, trainable: UNetTrainable, checkpoint: boolean, heavy = false): BenchCase {
  const c = parseUNetConfig(config, 'bench');
  const side = c.sampleSize;
  return {
    suite: 'train',
    name,
    device: 'cpu',
    params: { batch, latent: [c.inChannels, side, side], blockOutChannels: c.blockOutChannels, trainable, checkpoint, contextTokens: 77, dtype: 'f32' },
    timing: heavy ? { warmup: 0, minRuns: 1 } : { warmup: 1, minRuns: 3 },
    async prepare() {
      const weights = await initWeights(unetLayout(c), { seed: 0 });
      const unet = UNet2DConditionModel.fromWeights(config, weights);
      const x = await randn([batch, c.inChannels, side, side], { seed: 1 });
      const target = await randn([batch, c.inChannels, side, side], { seed: 2 });
      const context = await randn([batch, 77, c.crossAttentionDim], { seed: 3 });
      const t = Array.from({ length: batch }, (_, i) => 100 + 300 * i);
      // The optimizer gets copies of what trains, so the timed steps leave the model as it was.
      const probe = await unet.lossBackward(x, t, context, target, { trainable });
      const params = new Map<string, Tensor>();
      for (const n of probe.grads.keys()) params.set(n, weights.get(n)!.reshape(weights.get(n)!.shape));
      for (const v of [probe.loss, probe.out, probe.dSample, probe.dContext, ...probe.grads.values()]) v.dispose();
      const opt = await AdamW.create(params, { maxGradNorm: 1 });
      return {
        async step() {
          const r = await unet.lossBackward(x, t, context, target, { trainable, checkpoint });
          await opt.update(r.grads, 1e-5);
          for (const v of [r.loss, r.out, r.dSample, r.dContext, ...r.grads.values()]) v.dispose();
        },
        dispose() {
          opt.dispose();
          for (const v of [x, target, context, ...weights.values()]) if (!v.disposed) v.dispose();
        },
      };
    },
  };
}

/** `withSd15`: also the SD1.5 step (minutes on a CPU; `npm run bench -- train` only). */
export function trainCases(withSd15: boolean): BenchCase[] {
  const cases = [
    stepCase('world-all', WORLD_UNET_CONFIG, 16, 'all', false),
    stepCase('sd1-small-kv', SD1_SMALL, 2, 'kv', false),
    stepCase('sd1-small-kv-checkpointed', SD1_SMALL, 2, 'kv', true),
  ];
  if (withSd15) cases.push(stepCase('sd15-512-kv-checkpointed', { ...(SD15_CONFIGS.unet as Record<string, unknown>), sample_size: 64 }, 1, 'kv', true, true));
  return cases;
}
