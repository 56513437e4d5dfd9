// The tuning encoder's training step (lib/methods/tuning-encoder/step.ts) on
// the tiny SD1 model: the gradient it returns for the encoder's parameters is
// the derivative of the loss it reports (diffusion through the dual path, the
// per-image LoRA and the added token rows, plus the regularization), checked
// by central differences along random directions per part; the prompt ids.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor } from '../lib/creation.js';
import { TuningEncoder, type TuningEncoderSpec } from '../lib/methods/tuning-encoder/model.js';
import { EncoderStepContext, encoderStep, placeholderIds, placeholderPosition, type EncoderStepOptions } from '../lib/methods/tuning-encoder/step.js';
import type { Tensor } from '../lib/tensor.js';
import { disposeTrainingModel, loadTrainingModel } from '../lib/train/training-model.js';
import { removeTempFolders, tinyModelFolder } from './cd-fixture.js';
import { randomArray } from './helpers.js';

const t = suite('tuning-encoder.step');
t.after(removeTempFolders);
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

t('the step\'s gradient is the derivative of its loss (central differences, per part)', async () => {
  const m = await loadTrainingModel('test', await tinyModelFolder(), 'cpu', 16);
  try {
    const kv = m.unet.weightNames.filter((n) => /\.attn2\.to_[kv]\.weight$/.test(n)).slice(0, 2);
    const shape = (n: string) => m.unet.weights[m.unet.weightNames.indexOf(n)].shape;
    const spec: TuningEncoderSpec = {
      vision: { hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2, image_size: 8, patch_size: 4, num_channels: 3 },
      featureChannels: [...m.unet.config.blockOutChannels, m.unet.config.blockOutChannels.at(-1)!], hidden: 12,
      tokenDim: m.encoder.config.hiddenSize, rank: 2, targets: kv.map((w) => ({ weight: w, in: shape(w)[1], out: shape(w)[0] })),
    };
    const fresh = await TuningEncoder.create(spec, { seed: 3 });
    let k = 200;
    // Non-zero heads so that every part carries gradient.
    const params = new Map([...fresh.params].map(([n, w]) => [n, /^(token_head|lora)/.test(n) ? tensor(Float32Array.from(randomArray(w.numel, k++), (v) => 0.05 * v), { shape: w.shape }) : w]));
    const enc = TuningEncoder.fromParams(spec, params);
    const side = 16 / m.factor, B = 2;
    const batch = {
      pixels: tensor(randomArray(B * 3 * 64, 1), { shape: [B, 3, 8, 8] }),
      x0: tensor(randomArray(B * 4 * side * side, 2), { shape: [B, 4, side, side] }),
      noise: tensor(randomArray(B * 4 * side * side, 3), { shape: [B, 4, side, side] }),
      timesteps: [300, 700], classWord: 'dog',
    };
    const model = await EncoderStepContext.create({ unet: m.unet, textConfig: m.rawText, textWeights: m.model.textEncoder.weights, tokenizer: m.tokenizer, ddpm: m.ddpm });
    // With the regularization, and without it (the diffusion loss alone: every gradient through the UNet and the text encoder).
    for (const o of [
      { alpha: 0.7, contrastiveWeight: 0.5, temperature: 0.2, neighbours: 3, embeddingL2: 0.1, loraL2: 0.1 },
      { alpha: 0.7, contrastiveWeight: 0, temperature: 0.2, neighbours: 3, embeddingL2: 0, loraL2: 0 },
    ] satisfies EncoderStepOptions[]) {
    const r = await encoderStep(model, enc, batch, o);
    assert.ok(Number.isFinite(r.loss) && r.diffusion > 0 && (o.loraL2 === 0 ? r.regularization === 0 : r.regularization > 0), JSON.stringify(r));
    assert.equal([...r.grads.keys()], [...enc.params.keys()]);
    const at = async (dirs: Map<string, Float64Array>, h: number) => (await encoderStep(model, TuningEncoder.fromParams(spec, new Map([...params].map(([n, w]) => [n, dirs.has(n) ? tensor(Float32Array.from(f32(w), (v, i) => v + h * dirs.get(n)![i]), { shape: w.shape }) : w]))), batch, o)).loss;
    for (const [part, pick] of [['token head', /^token_head\./], ['lora heads', /^lora\./], ['trunk', /^trunk\./], ['ViT', /^vision_model\.(embeddings|pre_layrnorm)/]] as const) {
      const names = [...params.keys()].filter((n) => pick.test(n));
      // Without the regularization the diffusion loss moves little on this tiny model: longer directions.
      const len = o.loraL2 > 0 ? 1 : part === 'token head' ? 20 : 4;
      const dirs = new Map(names.map((n, i) => [n, Float64Array.from(randomArray(params.get(n)!.numel, 300 + i), (v) => len * v)]));
      let analytic = 0;
      for (const n of names) analytic += f32(r.grads.get(n)!).reduce((s, g, i) => s + g * dirs.get(n)![i], 0);
      const central = async (h: number) => ((await at(dirs, h)) - (await at(dirs, -h))) / (2 * h);
      const numeric = (4 * (await central(0.002)) - (await central(0.004))) / 3;
      assert.ok(Math.abs(numeric) > 1e-4, `${part} (regularization ${o.loraL2 > 0 ? 'on' : 'off'}): the derivative ${numeric} is large enough to test`);
      assert.ok(Math.abs(numeric - analytic) <= 0.03 * Math.abs(numeric) + 2e-5, `${part} (regularization ${o.loraL2 > 0 ? 'on' : 'off'}): finite difference ${numeric}, step gradient ${analytic}`);
    }
    }
    model.dispose();
  } finally {
    disposeTrainingModel(m);
  }
});

t('placeholderIds: start, "a", the placeholder, the class word, end, padding', async () => {
  const m = await loadTrainingModel('test', await tinyModelFolder(), 'cpu', 16);
  try {
    const ids = placeholderIds(m.tokenizer, 12, 'dog', 999);
    const want = m.tokenizer.encodePadded('a dog', { maxLength: 12 }).ids;
    const p = placeholderPosition(m.tokenizer);
    assert.is(ids[p], 999);
    assert.equal([...ids.slice(0, p)], [...want.slice(0, p)]);
    assert.equal([...ids.slice(p + 1, 11)], [...want.slice(p, 10)]);
  } finally {
    disposeTrainingModel(m);
  }
});

t.run();
