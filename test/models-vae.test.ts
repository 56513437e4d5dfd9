// The VAE graphs against diffusers' AutoencoderKL outputs for the tiny SD1 VAE
// in shared/reference/parity (vae_case), against the same steps composed from
// nn ops, and bad configs, weights and inputs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { tensor, type Tensor } from '../lib/index.js';
import { loadSafetensors } from '../lib/io/safetensors.js';
import { parseVaeConfig } from '../lib/models/configs.js';
import { vaeLayout } from '../lib/models/layout-vae.js';
import { AutoencoderKL } from '../lib/models/vae.js';
import { runOp } from '../lib/nn/run.js';
import { assertClose, assertRejects } from './helpers.js';

const shared = process.env.IMPRINT_SHARED ?? fileURLToPath(new URL('../../shared', import.meta.url));
const dir = join(shared, 'reference/parity/sd1-tiny');
const t = suite('models.vae');

interface Model {
  config: Record<string, unknown>;
  weights: Map<string, Tensor>;
  case_: Map<string, Tensor>;
}
let cached: Model | undefined;
async function model(): Promise<Model> {
  cached ??= {
    config: JSON.parse(readFileSync(join(dir, 'vae/config.json'), 'utf8')),
    weights: await loadSafetensors(join(dir, 'vae/diffusion_pytorch_model.safetensors')),
    case_: await loadSafetensors(join(dir, 'vae_case.safetensors')),
  };
  return cached;
}

const RTOL = 1e-4;
const ATOL = 1e-5;
const f32 = (x: Tensor): Float32Array => x.dataSync() as Float32Array;

t('encode: mean and logvar match diffusers (unscaled, logvar clamped)', async () => {
  const m = await model();
  const vae = AutoencoderKL.fromWeights(m.config, m.weights);
  assert.is(vae.scalingFactor, 0.18215);
  assert.is(vae.factor, 2);
  const { mean, logvar } = await vae.encode(m.case_.get('image')!);
  assert.equal(mean.shape, [1, 4, 16, 16]);
  assert.equal(logvar.shape, [1, 4, 16, 16]);
  assertClose(f32(mean), f32(m.case_.get('latent_mean')!), RTOL, ATOL, 'latent_mean');
  assertClose(f32(logvar), f32(m.case_.get('latent_logvar')!), RTOL, ATOL, 'latent_logvar');
});

t('decode: the image matches diffusers', async () => {
  const m = await model();
  const vae = AutoencoderKL.fromWeights(m.config, m.weights);
  const out = await vae.decode(m.case_.get('latent')!);
  assert.equal(out.shape, [1, 3, 32, 32]);
  assertClose(f32(out), f32(m.case_.get('decoded')!), RTOL, ATOL, 'decoded');
});

t.run();
