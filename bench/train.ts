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

const SD15_UNET = { ...(SD15_CONFIGS.unet as Record<string, unknown>), sample_size: 64 };

export const SD1_SMALL = {
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

/**
 * The tuning encoder's personalization step at SD1.5 size (512 px, batch 1):
 * rank-4 LoRA factors on the 32 cross-attention K/V projections (what
 * personalize trains, with the embedding row, whose text-encoder backward is
 * left out here), the dual path (α 0.7, a second context), lossBackward and
 * AdamW on the factors. params.weights_bytes is the frozen UNet's size, so
 * weights_bytes + peak_bytes is the step's whole footprint.
 */
export function encoderTuneCase(device: string, dtype: 'f32' | 'bf16', checkpoint: boolean, suite: string): BenchCase {
  const c = parseUNetConfig(SD15_UNET, 'bench');
  const layout = unetLayout(c);
  const numel = Object.values(layout).reduce((a, shape) => a + shape.reduce((x, y) => x * y, 1), 0);
  const rank = 4;
  return {
    suite,
    name: `sd15-512-encoder-tune-b1${checkpoint ? '-checkpointed' : ''}`,
    device,
    params: { model: 'sd15-unet (random weights)', batch: 1, latent: [4, 64, 64], dtype, rank, targets: 'attn2 to_k/to_v (32)', dual: 0.7, checkpoint, weights_bytes: numel * (dtype === 'f32' ? 4 : 2) },
    timing: { warmup: 0, minRuns: 1 },
    async prepare() {
      const weights = dtype === 'bf16' ? await sd15Weights(device) : await initWeights(layout, { seed: 0 });
      const unet = UNet2DConditionModel.fromWeights(SD15_UNET, weights);
      const made = { device, dtype };
      const x = await randn([1, 4, 64, 64], { seed: 1, ...made });
      const target = await randn([1, 4, 64, 64], { seed: 2, ...made });
      const soft = await randn([1, 77, 768], { seed: 3, ...made });
      const hard = await randn([1, 77, 768], { seed: 4, ...made });
      const targets = unet.weightNames.filter((n) => /\.attn2\.to_[kv]\.weight$/.test(n));
      const params = new Map<string, Tensor>();
      for (const [k, w] of targets.entries()) {
        const [out, inp] = weights.get(w)!.shape;
        params.set(`${w}#lora.a`, await randn([rank, inp], { seed: 10 + 2 * k, std: 1 / Math.sqrt(inp), ...made }));
        params.set(`${w}#lora.b`, await randn([out, rank], { seed: 11 + 2 * k, std: 1e-3, ...made }));
      }
      const opt = await AdamW.create(params, { weightDecay: 0 });
      const names = [...params.keys()];
      return {
        async step() {
          const adapters = targets.map((w) => ({ weight: w, lora: { a: opt.params.get(`${w}#lora.a`)!, b: opt.params.get(`${w}#lora.b`)! } }));
          const r = await unet.lossBackward(x, [500], soft, target, { trainable: names, adapters, dual: { alpha: 0.7, hardContext: hard }, checkpoint });
          await opt.update(r.grads, 2e-3);
          for (const v of [r.loss, r.out, r.dSample, r.dContext, ...r.grads.values()]) v.dispose();
        },
        dispose() {
          opt.dispose();
          for (const v of [x, target, soft, hard, ...weights.values()]) if (!v.disposed) v.dispose();
        },
      };
    },
  };
}

/** `withSd15`: also the SD1.5 steps (minutes each on a CPU; `npm run bench -- train` only). */
export function trainCases(withSd15: boolean): BenchCase[] {
  const cases = [
    stepCase('world-all', WORLD_UNET_CONFIG, 16, 'all', false),
    stepCase('sd1-small-kv', SD1_SMALL, 2, 'kv', false),
    stepCase('sd1-small-kv-checkpointed', SD1_SMALL, 2, 'kv', true),
  ];
  if (withSd15) {
    cases.push(stepCase('sd15-512-kv-checkpointed', SD15_UNET, 1, 'kv', true, true));
    cases.push(encoderTuneCase('cpu', 'f32', true, 'train'));
  }
  return cases;
}

// --- GPU: SD1.5-shaped UNet in bf16 on cuda:0 --------------------------------

/**
 * Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s by device name, from
 * NVIDIA's datasheets; the first match wins. Names as the CUDA runtime reports
 * them ('NVIDIA H100 80GB HBM3' is the SXM part). Unknown GPUs get no MFU.
 */
export const BF16_PEAKS: ReadonlyArray<{ match: RegExp; model: string; tflops: number }> = [
  { match: /H100 PCIe/i, model: 'H100 PCIe', tflops: 756 },
  { match: /H100(?!.*NVL)/i, model: 'H100 SXM', tflops: 989 },
  { match: /H200/i, model: 'H200', tflops: 989 },
  { match: /A100/i, model: 'A100', tflops: 312 },
  { match: /L40S/i, model: 'L40S', tflops: 362 },
  { match: /RTX 4090/i, model: 'RTX 4090', tflops: 165 },
];
export const PEAK_SOURCE = "NVIDIA datasheets (dense BF16 tensor-core TFLOP/s, without sparsity)";

export function bf16Peak(deviceName: string): { model: string; tflops: number } | undefined {
  return BF16_PEAKS.find((p) => p.match.test(deviceName));
}

/**
 * Model FLOPs of one UNet forward, counted from the config: every conv
 * (2·k²·Cin·Cout per output pixel), linear (2·in·out per token) and the two
 * attention matmuls (QKᵀ and attention·V: 2·2·Lq·Lk·C). Norms, activations
 * and softmax are left out, as MFU conventions do. A training step is 3× this.
 */
export function unetForwardFlops(config: Record<string, unknown>, batch: number, side: number, contextTokens = 77): number {
  const c = parseUNetConfig(config, 'unetForwardFlops');
  const temb = c.timeEmbeddingDim;
  const ctx = c.crossAttentionDim;
  let flops = 0;
  const conv = (k: number, cin: number, cout: number, outSide: number): void => void (flops += 2 * k * k * cin * cout * outSide * outSide * batch);
  const linear = (inF: number, outF: number, tokens: number): void => void (flops += 2 * inF * outF * tokens * batch);
  const resnet = (cin: number, cout: number, s: number): void => {
    conv(3, cin, cout, s);
    linear(temb, cout, 1);
    conv(3, cout, cout, s);
    if (cin !== cout) conv(1, cin, cout, s);
  };
  const transformer = (ch: number, s: number, layers: number): void => {
    const hw = s * s;
    linear(ch, ch, hw);  // proj_in (1×1 conv or linear: the same count)
    for (let l = 0; l < layers; l++) {
      linear(ch, 3 * ch, hw);  // attn1 q, k, v
      flops += 2 * 2 * hw * hw * ch * batch;  // attn1 QKᵀ and ·V over all heads
      linear(ch, ch, hw);  // attn1 out
      linear(ch, ch, hw);  // attn2 q
      linear(ctx, 2 * ch, contextTokens);  // attn2 k, v from the text
      flops += 2 * 2 * hw * contextTokens * ch * batch;
      linear(ch, ch, hw);  // attn2 out
      linear(ch, 8 * ch, hw);  // GEGLU proj (two halves of 4·ch)
      linear(4 * ch, ch, hw);  // ff out
    }
    linear(ch, ch, hw);  // proj_out
  };
  const ch0 = c.blockOutChannels[0];
  linear(ch0, temb, 1);
  linear(temb, temb, 1);
  let s = side;
  conv(c.convInKernel, c.inChannels, ch0, s);
  const skips: number[] = [ch0];
  let cin = ch0;
  const n = c.blockOutChannels.length;
  c.downBlockTypes.forEach((type, i) => {
    const cout = c.blockOutChannels[i];
    for (let l = 0; l < c.layersPerBlock; l++) {
      resnet(cin, cout, s);
      cin = cout;
      if (type.startsWith('CrossAttn')) transformer(cout, s, c.transformerLayersPerBlock[i]);
      skips.push(cout);
    }
    if (i < n - 1) {
      s = Math.ceil(s / 2);
      conv(3, cout, cout, s);
      skips.push(cout);
    }
  });
  resnet(cin, cin, s);
  transformer(cin, s, c.transformerLayersPerBlock[n - 1]);
  resnet(cin, cin, s);
  const reversed = [...c.blockOutChannels].reverse();
  const reversedLayers = [...c.transformerLayersPerBlock].reverse();
  c.upBlockTypes.forEach((type, i) => {
    const cout = reversed[i];
    for (let l = 0; l <= c.layersPerBlock; l++) {
      resnet(cin + skips.pop()!, cout, s);
      cin = cout;
      if (type.startsWith('CrossAttn')) transformer(cout, s, reversedLayers[i]);
    }
    if (i < n - 1) {
      s *= 2;
      conv(3, cout, cout, s);
    }
  });
  conv(c.convOutKernel, ch0, c.outChannels, s);
  return flops;
}


/** Random SD1.5 UNet weights (PyTorch's init, seed 0) in bf16 on `device`, moved one tensor at a time. */
async function sd15Weights(device: string): Promise<Map<string, Tensor>> {
  const host = await initWeights(unetLayout(parseUNetConfig(SD15_UNET, 'bench')), { seed: 0 });
  const out = new Map<string, Tensor>();
  try {
    for (const [name, w] of host) {
      const there = await w.to(device);
      w.dispose();
      out.set(name, await there.cast('bf16'));
      there.dispose();
    }
  } catch (e) {
    for (const t of [...host.values(), ...out.values()]) if (!t.disposed) t.dispose();
    throw e;
  }
  return out;
}

function gpuParams(batch: number, extra: Record<string, unknown>): Record<string, unknown> {
  return { model: 'sd15-unet (random weights)', batch, latent: [4, 64, 64], image: 512, contextTokens: 77, dtype: 'bf16', ...extra };
}

function gpuForwardCase(device: string, batch: number): BenchCase {
  return {
    suite: 'cuda',
    name: `sd15-512-unet-forward-b${batch}`,
    device,
    params: gpuParams(batch, {}),
    flops: unetForwardFlops(SD15_UNET, batch, 64),
    timing: { warmup: 2, minRuns: 5 },
    async prepare() {
      const weights = await sd15Weights(device);
      const unet = UNet2DConditionModel.fromWeights(SD15_UNET, weights);
      const x = await randn([batch, 4, 64, 64], { seed: 1, device, dtype: 'bf16' });
      const context = await randn([batch, 77, 768], { seed: 3, device, dtype: 'bf16' });
      const t = Array.from({ length: batch }, (_, i) => 50 + 100 * i);
      return {
        async step() {
          (await unet.forward(x, t, context)).dispose();
        },
        dispose() {
          for (const v of [x, context, ...weights.values()]) if (!v.disposed) v.dispose();
        },
      };
    },
  };
}

/** One Custom Diffusion step: lossBackward with attn2 K/V trainable (start token detached) and the AdamW update. */
function gpuCustomDiffusionCase(device: string, batch: number, checkpoint: boolean): BenchCase {
  return {
    suite: 'cuda',
    name: `sd15-512-custom-diffusion-step-b${batch}${checkpoint ? '-checkpointed' : ''}`,
    device,
    params: gpuParams(batch, { trainable: 'kv', checkpoint }),
    flops: 3 * unetForwardFlops(SD15_UNET, batch, 64),
    timing: { warmup: 1, minRuns: 3 },
    async prepare() {
      const weights = await sd15Weights(device);
      const unet0 = UNet2DConditionModel.fromWeights(SD15_UNET, weights);
      const x = await randn([batch, 4, 64, 64], { seed: 1, device, dtype: 'bf16' });
      const target = await randn([batch, 4, 64, 64], { seed: 2, device, dtype: 'bf16' });
      const context = await randn([batch, 77, 768], { seed: 3, device, dtype: 'bf16' });
      const t = Array.from({ length: batch }, (_, i) => 50 + 100 * i);
      const trained = unet0.weightNames.filter((n) => /\.attn2\.to_[kv]\.weight$/.test(n));
      // The optimizer trains copies, so the frozen base stays as it was.
      const params = new Map<string, Tensor>();
      for (const n of trained) params.set(n, await weights.get(n)!.cast('bf16'));
      const opt = await AdamW.create(params, { maxGradNorm: 1 });
      return {
        async step() {
          const unet = unet0.withWeights(new Map(trained.map((n) => [n, opt.params.get(n)!])));
          const r = await unet.lossBackward(x, t, context, target, { trainable: trained, checkpoint, detachStartToken: true });
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

/** The `cuda` suite's model cases on `device` (bf16): UNet forward at batch 1 and 8, Custom Diffusion steps at batch 8, the tuning encoder's step at batch 1. */
export function cudaModelCases(device: string): BenchCase[] {
  return [
    gpuForwardCase(device, 1),
    gpuForwardCase(device, 8),
    gpuCustomDiffusionCase(device, 8, false),
    gpuCustomDiffusionCase(device, 8, true),
    encoderTuneCase(device, 'bf16', false, 'cuda'),
    encoderTuneCase(device, 'bf16', true, 'cuda'),
  ];
}
