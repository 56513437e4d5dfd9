// schedulers: full trajectories against diffusers 0.21 (reference data in
// shared/reference/parity/schedulers), DDPM noising and targets, Euler
// ancestral by its defining properties, and bad configs and inputs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { suite } from 'uvu';
import * as assert from 'uvu/assert';

import { full, memoryStats, randn, tensor, type Tensor } from '../lib/index.js';
import { combine } from '../lib/schedulers/combine.js';
import * as S from '../lib/schedulers/index.js';
import { StableDiffusionPipeline } from '../lib/pipeline/txt2img.js';
import { assertClose, assertRejects, randomArray } from './helpers.js';
import { REFERENCE } from './tiny-models.js';


interface Reference {
  meta: Record<string, string>;
  tensors: Map<string, { shape: number[]; data: Float32Array | BigInt64Array }>;
}

function loadReference(name: string): Reference {
  const bytes = readFileSync(join(REFERENCE, `parity/schedulers/${name}.safetensors`));
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const meta = (header.__metadata__ ?? {}) as unknown as Record<string, string>;
  const tensors = new Map<string, { shape: number[]; data: Float32Array | BigInt64Array }>();
  for (const [key, info] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    const copy = new Uint8Array(bytes.subarray(8 + n + info.data_offsets[0], 8 + n + info.data_offsets[1]));
    tensors.set(key, { shape: info.shape, data: info.dtype === 'I64' ? new BigInt64Array(copy.buffer) : new Float32Array(copy.buffer) });
  }
  return { meta, tensors };
}

const f32 = (r: Reference, key: string): Tensor<'f32'> => {
  const e = r.tensors.get(key);
  if (!e) throw new Error(`reference has no ${key}`);
  return tensor(e.data as Float32Array, { shape: e.shape });
};
const values = (r: Reference, key: string): number[] => Array.from(r.tensors.get(key)!.data as ArrayLike<number | bigint>, Number);

interface Sampler {
  timesteps: readonly number[];
  setTimesteps(n: number): readonly number[];
  scaleModelInput(x: Tensor<'f32'>, t: number): Tensor<'f32'> | Promise<Tensor<'f32'>>;
  step(out: Tensor<'f32'>, t: number, x: Tensor<'f32'>): Promise<Tensor<'f32'>>;
}

/** The references' fake model: eps = 0.1·scaleModelInput(x, t) + c·(t/1000). */
async function fakeModel(s: Sampler, x: Tensor<'f32'>, t: number, c: Tensor<'f32'>): Promise<Tensor<'f32'>> {
  const scaled = await s.scaleModelInput(x, t);
  const a = await combine([[0.1, scaled], [t / 1000, c]]);
  if (scaled !== x) scaled.dispose();
  return a;
}

/** Runs the sampler from x_init and checks every timestep and x_i, the sample after step i from 0 (rtol 1e-4, atol 1e-5). */
async function checkTrajectory(name: string, make: (config: string) => Sampler): Promise<Sampler> {
  const r = loadReference(name);
  const s = make(r.meta.config);
  const steps = Number(r.meta.steps);
  const ts = s.setTimesteps(steps);
  assertClose(ts, values(r, 'timesteps'), 1e-6, 1e-3, `${name} timesteps`);
  const c = f32(r, 'c');
  let x = f32(r, 'x_init');
  for (let i = 0; i < ts.length; i++) {
    const out = await fakeModel(s, x, ts[i], c);
    const next = await s.step(out, ts[i], x);
    out.dispose();
    x.dispose();
    x = next;
    const key = `x_${String(i).padStart(3, '0')}`;
    assertClose(x.dataSync(), r.tensors.get(key)!.data as Float32Array, 1e-4, 1e-5, `${name} ${key}`);
  }
  assert.ok(!r.tensors.has(`x_${String(ts.length).padStart(3, '0')}`), `${name}: reference has more steps than ${ts.length}`);
  x.dispose();
  c.dispose();
  return s;
}

const t = suite('schedulers');

t('DDPM: ᾱ_t, add_noise and the v target match diffusers (rtol 1e-5)', async () => {
  const r = loadReference('ddpm-add-noise');
  const d = S.DDPMTraining.fromConfig(r.meta.config);
  assertClose(d.alphasCumprod, values(r, 'alphas_cumprod'), 1e-6, 0, 'alphas_cumprod');
  const [x0, noise] = [f32(r, 'x0'), f32(r, 'noise')];
  const ts = r.tensors.get('t')!.data as BigInt64Array;
  const noisy = await d.addNoise(x0, noise, ts);
  assertClose(noisy.dataSync(), values(r, 'noisy'), 1e-5, 1e-6, 'add_noise');
  const v = await d.velocity(x0, noise, Array.from(ts, Number));
  assertClose(v.dataSync(), values(r, 'v_target'), 1e-5, 1e-6, 'v target');
  // The timesteps may also come as an i64 tensor; target() follows prediction_type.
  const vt = await S.DDPMTraining.fromConfig({ prediction_type: 'v_prediction' }).target(x0, noise, tensor(ts));
  assertClose(vt.dataSync(), values(r, 'v_target'), 1e-5, 1e-6, 'target (v_prediction)');
  const eps = await d.target(x0, noise, ts);
  assertClose(eps.dataSync(), noise.dataSync(), 0, 0, 'target (epsilon) is the noise');
  for (const x of [x0, noise, noisy, v, vt, eps]) x.dispose();
});

t('DDIM (epsilon, 20 steps, leading + offset 1) matches diffusers at every step', async () => {
  await checkTrajectory('ddim-epsilon-20', (c) => S.DDIMScheduler.fromConfig(c));
});

t('DDIM (v_prediction, 20 steps) matches diffusers at every step', async () => {
  await checkTrajectory('ddim-v_prediction-20', (c) => S.DDIMScheduler.fromConfig(c));
});

t('Euler (epsilon, 20 steps, linspace) matches diffusers at every step, σ list and initNoiseSigma', async () => {
  const r = loadReference('euler-epsilon-20');
  const s = (await checkTrajectory('euler-epsilon-20', (c) => S.EulerDiscreteScheduler.fromConfig(c))) as InstanceType<typeof S.EulerDiscreteScheduler>;
  assertClose(s.sigmas, values(r, 'sigmas'), 1e-4, 0, 'euler sigmas');
  assert.ok(Math.abs(s.initNoiseSigma - Math.max(...values(r, 'sigmas'))) < 1e-4 * s.initNoiseSigma, 'initNoiseSigma is σ_max');
});

t('DPM-Solver++ 2M (epsilon, 20 steps) matches diffusers at every step', async () => {
  const r = loadReference('dpmpp2m-epsilon-20');
  const s = (await checkTrajectory('dpmpp2m-epsilon-20', (c) => S.DPMSolverMultistepScheduler.fromConfig(c))) as InstanceType<typeof S.DPMSolverMultistepScheduler>;
  assertClose(s.sigmas, values(r, 'sigmas'), 1e-4, 0, 'dpm sigmas');
  s.dispose();
});

t('DPM-Solver++ 2M with Karras sigmas matches diffusers at every step', async () => {
  const r = loadReference('dpmpp2m-karras-epsilon-20');
  const s = (await checkTrajectory('dpmpp2m-karras-epsilon-20', (c) => S.DPMSolverMultistepScheduler.fromConfig(c))) as InstanceType<typeof S.DPMSolverMultistepScheduler>;
  assertClose(s.sigmas, values(r, 'sigmas'), 1e-4, 0, 'karras sigmas');
  s.dispose();
});

t('DPM-Solver++ 2M: with < 15 steps the last step is first order (lower_order_final)', async () => {
  // With lower_order_final the final step equals a fresh first-order solver's step
  // from the same point; without it, it differs (the stored x̂0 is used).
  const config = { lower_order_final: true };
  const run = async (cfg: Record<string, unknown>, reset: boolean): Promise<Float32Array> => {
    const s = S.DPMSolverMultistepScheduler.fromConfig(cfg);
    const ts = s.setTimesteps(5);
    const c = await full([1, 2, 2, 2], 0.5);
    let x = await randn([1, 2, 2, 2], { seed: 3 });
    for (let i = 0; i < ts.length; i++) {
      if (reset && i === ts.length - 1) s.reset();
      const out = await fakeModel(s, x, ts[i], c);
      const next = await s.step(out, ts[i], x);
      out.dispose();
      x.dispose();
      x = next;
    }
    const data = x.dataSync().slice();
    x.dispose();
    c.dispose();
    s.dispose();
    return data;
  };
  const lower = await run(config, false);
  assertClose(lower, await run(config, true), 1e-6, 1e-7, 'lower_order_final equals a first-order last step');
  const second = await run({ lower_order_final: false }, false);
  assert.ok(second.some((v, i) => Math.abs(v - lower[i]) > 1e-5), 'without lower_order_final the last step is second order');
});

t('DPM-Solver++: leading and trailing spacing, λ clipping', async () => {
  const lead = S.DPMSolverMultistepScheduler.fromConfig({ timestep_spacing: 'leading', steps_offset: 1 });
  // diffusers: (arange(0, S + 1) · (N // (S + 1)))[::-1][:-1] + offset
  assert.equal(lead.setTimesteps(10), [901, 811, 721, 631, 541, 451, 361, 271, 181, 91]);
  const trail = S.DPMSolverMultistepScheduler.fromConfig({ timestep_spacing: 'trailing' });
  assert.equal(trail.setTimesteps(10), [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
  // λ_min_clipped drops the train steps whose λ lies below it from the noisy end.
  const full1000 = S.DPMSolverMultistepScheduler.fromConfig({});
  const cut = full1000.lambdaT.filter((l) => l < -2).length;
  assert.ok(cut > 0 && cut < 1000);
  const clipped = S.DPMSolverMultistepScheduler.fromConfig({ lambda_min_clipped: -2 });
  assert.is(clipped.setTimesteps(4)[0], 1000 - cut - 1, "the schedule starts at the last unclipped step");
});

t('every sampler and prediction type: an exact model output lands on the next noise level of the same x0 and noise', async () => {
  // The model that knows x0 and the noise: stepping must keep both and only
  // change the noise level, for epsilon, v_prediction and sample outputs.
  const x0 = randomArray(24, 11);
  const n = randomArray(24, 12);
  const shape = [2, 3, 4];
  const at = (a: number, b: number): Tensor<'f32'> => tensor(x0.map((v, k) => a * v + b * n[k]), { shape });
  for (const kind of ['epsilon', 'v_prediction', 'sample'] as const) {
    // Each sampler as (x0 weight, noise weight) of the sample at step i and after it.
    const ddim = S.DDIMScheduler.fromConfig({ prediction_type: kind, steps_offset: 1 });
    const euler = S.EulerDiscreteScheduler.fromConfig({ prediction_type: kind });
    const dpm = S.DPMSolverMultistepScheduler.fromConfig({ prediction_type: kind });
    const ac = ddim.alphasCumprod;
    const vp = (t: number): [number, number] => [Math.sqrt(ac[t]), Math.sqrt(1 - ac[t])];
    const cases: Array<[string, Sampler, (i: number, ts: readonly number[]) => [number, number], (i: number, ts: readonly number[]) => [number, number]]> = [
      ['ddim', ddim, (i, ts) => vp(ts[i]), (i, ts) => (ts[i] - 50 >= 0 ? vp(ts[i] - 50) : [1, 0])], // set_alpha_to_one: clean at the end,
      ['euler', euler, (i) => [1, euler.sigmas[i]], (i) => [1, euler.sigmas[i + 1]]],
      ['dpm', dpm, (i, ts) => vp(ts[i]), (i, ts) => vp(i + 1 < ts.length ? ts[i + 1] : 0)],
    ];
    for (const [name, s, now, after] of cases) {
      const ts = s.setTimesteps(20);
      for (let i = 0; i < ts.length; i++) {
        const [a, b] = now(i, ts);
        const x = at(a, b);
        // In the VP view the noise level is ᾱ = a²/(a² + b²) whatever the scaling of x.
        const ab = (a * a) / (a * a + b * b);
        const out = kind === 'epsilon' ? at(0, 1) : kind === 'sample' ? at(1, 0) : at(-Math.sqrt(1 - ab), Math.sqrt(ab));
        const y = await s.step(out, ts[i], x);
        const [a2, b2] = after(i, ts);
        assertClose(y.dataSync(), x0.map((v, k) => a2 * v + b2 * n[k]), 1e-5, 1e-6, `${name} ${kind} step ${i}`);
        for (const v of [x, out, y]) v.dispose();
      }
    }
    dpm.dispose();
  }
});

t('Euler ancestral: σ_down² + σ_up² = σ_next², zero noise gives the σ_down Euler step, a seed reproduces', async () => {
  // No reference trajectory exists for this sampler, so it is checked by its definition.
  const s = S.EulerAncestralDiscreteScheduler.fromConfig({ beta_schedule: 'scaled_linear' });
  const ts = s.setTimesteps(10);
  for (let i = 0; i < ts.length; i++) {
    const { sigmaUp, sigmaDown } = s.ancestralSigmas(i);
    const next = s.sigmas[i + 1];
    assert.ok(Math.abs(sigmaDown ** 2 + sigmaUp ** 2 - next ** 2) <= 1e-12 * Math.max(1, next ** 2), `step ${i}: σ_down² + σ_up² = σ_next²`);
    assert.ok(sigmaDown <= next && sigmaUp >= 0, `step ${i}: σ_down ≤ σ_next`);
    // η = 1 ancestral step: σ_up = σ_next·√(σ² − σ_next²)/σ, so σ_down = σ_next²/σ.
    const sigma = s.sigmas[i];
    assert.ok(Math.abs(sigmaDown - (next * next) / sigma) <= 1e-12 * sigma, `step ${i}: σ_down = σ_next²/σ`);
  }
  const x = await randn([1, 4, 4, 4], { seed: 1 });
  const out = await randn([1, 4, 4, 4], { seed: 2 });
  const zero = await full([1, 4, 4, 4], 0);
  const i = 3;
  const stepped = await s.step(out, ts[i], x, { noise: zero });
  // With zero noise: x + (σ_down − σ)·out for epsilon prediction.
  const { sigmaDown } = s.ancestralSigmas(i);
  const xd = x.dataSync();
  const od = out.dataSync();
  assertClose(stepped.dataSync(), xd.map((v, k) => v + (sigmaDown - s.sigmas[i]) * od[k]), 1e-6, 1e-6, 'zero-noise ancestral step');
  // Noise enters with weight σ_up.
  const withNoise = await s.step(out, ts[i], x, { noise: out });
  const { sigmaUp } = s.ancestralSigmas(i);
  assertClose(withNoise.dataSync(), stepped.dataSync().map((v, k) => v + sigmaUp * od[k]), 1e-5, 1e-6, 'noise weighted by σ_up');
  const a = await s.step(out, ts[i], x, { seed: 7, offset: 2 });
  const b = await s.step(out, ts[i], x, { seed: 7, offset: 2 });
  const c = await s.step(out, ts[i], x, { seed: 8, offset: 2 });
  assert.equal(Array.from(a.dataSync()), Array.from(b.dataSync()), 'a fixed seed reproduces');
  assert.ok(a.dataSync().some((v, k) => v !== c.dataSync()[k]), 'another seed differs');
  // The last step goes to σ = 0: no noise at all.
  const lastA = await s.step(out, ts[ts.length - 1], x, { seed: 1 });
  const lastB = await s.step(out, ts[ts.length - 1], x, { seed: 2 });
  assert.equal(Array.from(lastA.dataSync()), Array.from(lastB.dataSync()), 'final step is noise-free');
  for (const v of [x, out, zero, stepped, withNoise, a, b, c, lastA, lastB]) v.dispose();
});

t('Euler: leading spacing scales initNoiseSigma as √(σ_max² + 1); Karras σ run from σ_max to σ_min', async () => {
  const lead = S.EulerDiscreteScheduler.fromConfig({ timestep_spacing: 'leading', steps_offset: 1 });
  const ts = lead.setTimesteps(10);
  assert.equal(ts, [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  const sMax = lead.sigmas[0];
  assert.ok(Math.abs(lead.initNoiseSigma - Math.sqrt(sMax * sMax + 1)) < 1e-12);
  const k = S.EulerDiscreteScheduler.fromConfig({ use_karras_sigmas: true });
  k.setTimesteps(8);
  const lin = S.EulerDiscreteScheduler.fromConfig({});
  lin.setTimesteps(8);
  assert.ok(Math.abs(k.sigmas[0] - lin.sigmas[0]) < 1e-9 && Math.abs(k.sigmas[7] - lin.sigmas[7]) < 1e-9, 'same end points');
  assert.ok(k.sigmas[3] < lin.sigmas[3], 'Karras spacing is denser at low noise');
  assert.is(k.sigmas[8], 0);
  // The timestep of each Karras σ maps back to that σ.
  const all = S.sigmasOf(S.alphasCumprod(k.config));
  k.timesteps.forEach((t, i) => {
    const lo = Math.floor(t);
    const w = t - lo;
    const logS = Math.log(all[lo]) * (1 - w) + Math.log(all[Math.min(lo + 1, 999)]) * w;
    assert.ok(Math.abs(Math.exp(logS) - k.sigmas[i]) < 1e-6 * k.sigmas[i], `karras t ${t} ↔ σ ${k.sigmas[i]}`);
  });
});

t('DDIM: trailing and linspace spacing, set_alpha_to_one, sample prediction', async () => {
  const tr = S.DDIMScheduler.fromConfig({ timestep_spacing: 'trailing' });
  assert.equal(tr.setTimesteps(4), [999, 749, 499, 249]);
  const ls = S.DDIMScheduler.fromConfig({ timestep_spacing: 'linspace' });
  assert.equal(ls.setTimesteps(4), [999, 666, 333, 0]);
  // With 'sample' prediction and ᾱ_prev = 1 at the end, the last step returns x̂0 = the model output.
  const s = S.DDIMScheduler.fromConfig({ prediction_type: 'sample', set_alpha_to_one: true });
  const ts = s.setTimesteps(5);
  const x = await randn([2, 3], { seed: 4 });
  const out = await randn([2, 3], { seed: 5 });
  const y = await s.step(out, ts[ts.length - 1], x);
  assertClose(y.dataSync(), out.dataSync(), 1e-6, 1e-6, 'final DDIM step to ᾱ = 1');
  for (const v of [x, out, y]) v.dispose();
});

t('squaredcos_cap_v2: ᾱ_t telescopes to f((t+1)/N)/f(0) until β reaches its 0.999 cap', () => {
  const n = 1000;
  const f = (u: number): number => Math.cos(((u + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  const ac = S.DDIMScheduler.fromConfig({ beta_schedule: 'squaredcos_cap_v2', num_train_timesteps: n }).alphasCumprod;
  // β_t = 1 − f((t+1)/N)/f(t/N) < 0.999 for every t but the last (f(1) = 0 there).
  for (const t of [0, 1, 10, 250, 500, 900, 990, 998]) assertClose([ac[t]], [f((t + 1) / n) / f(0)], 1e-9, 1e-12, `ᾱ_${t}`);
  assertClose([ac[n - 1]], [ac[n - 2] * 0.001], 1e-12, 0, 'capped last step');
  assert.ok(ac[500] > 0.45 && ac[500] < 0.55, `cosine ᾱ at the midpoint is about ½, got ${ac[500]}`);
});

t('bad configs are refused, naming the field', async () => {
  const cases: Array<[() => unknown, RegExp]> = [
    [() => S.DDIMScheduler.fromConfig({ thresholding: true }), /thresholding=true is not supported/],
    [() => S.DDIMScheduler.fromConfig({ clip_sample: true }), /clip_sample=true is not supported/],
    [() => S.DDIMScheduler.fromConfig({ beta_schedule: 'cosine' }), /beta_schedule must be one of 'scaled_linear', 'linear', 'squaredcos_cap_v2', got 'cosine'/],
    [() => S.DDIMScheduler.fromConfig({ prediction_type: 'x0' }), /prediction_type must be one of/],
    [() => S.DDIMScheduler.fromConfig({ num_train_timesteps: 0 }), /num_train_timesteps must be an integer in \[2, 100000\], got number 0/],
    [() => S.DDIMScheduler.fromConfig({ num_train_timesteps: '1000' }), /num_train_timesteps must be an integer/],
    [() => S.DDIMScheduler.fromConfig({ beta_start: -1 }), /beta_start must be a number in \(0, 1\)/],
    [() => S.DDIMScheduler.fromConfig({ beta_end: NaN }), /beta_end must be a number in \(0, 1\)/],
    [() => S.DDIMScheduler.fromConfig({ trained_betas: [0.1, 0.2] }), /trained_betas must be an array of num_train_timesteps \(1000\) numbers/],
    [() => S.DDIMScheduler.fromConfig({ num_train_timesteps: 3, trained_betas: [0.1, 'x', 0.2] }), /trained_betas\[1\] must be a number in \(0, 1\)/],
    [() => S.DDIMScheduler.fromConfig({ timestep_spacing: 'karras' }), /timestep_spacing must be one of 'leading', 'trailing', 'linspace'/],
    [() => S.DDIMScheduler.fromConfig({ steps_offset: -1 }), /steps_offset must be an integer/],
    [() => S.DDIMScheduler.fromConfig({ set_alpha_to_one: 'yes' }), /set_alpha_to_one must be true or false/],
    [() => S.DDIMScheduler.fromConfig({ rescale_betas_zero_snr: true }), /rescale_betas_zero_snr=true is not supported/],
    [() => S.DDIMScheduler.fromConfig('{"num_train_timesteps": '), /config is not valid JSON/],
    [() => S.DDIMScheduler.fromConfig('[1, 2]' as string), /config must be an object or JSON text, got an array|config must be an object/],
    [() => S.DDIMScheduler.fromConfig(null as unknown as string), /config must be an object or JSON text/],
    [() => S.EulerDiscreteScheduler.fromConfig({ interpolation_type: 'log_linear' }), /interpolation_type must be one of 'linear'/],
    [() => S.EulerAncestralDiscreteScheduler.fromConfig({ use_karras_sigmas: true }), /EulerAncestralDiscreteScheduler.fromConfig: config field use_karras_sigmas=true is not supported/],
    [() => S.DPMSolverMultistepScheduler.fromConfig({ algorithm_type: 'sde-dpmsolver++' }), /algorithm_type must be one of 'dpmsolver\+\+'/],
    [() => S.DPMSolverMultistepScheduler.fromConfig({ solver_order: 3 }), /solver_order must be an integer in \[1, 2\], got number 3/],
    [() => S.DPMSolverMultistepScheduler.fromConfig({ solver_type: 'heun' }), /solver_type must be one of 'midpoint'/],
    [() => S.DPMSolverMultistepScheduler.fromConfig({ variance_type: 'learned_range' }), /variance_type="learned_range" is not supported/],
    [() => S.DPMSolverMultistepScheduler.fromConfig({ lambda_min_clipped: Infinity }), /lambda_min_clipped must be a number or -Infinity/],
    [() => S.DDPMTraining.fromConfig({ prediction_type: 5 }), /DDPMTraining.fromConfig: config field prediction_type must be one of/],
  ];
  for (const [fn, pattern] of cases) await assertRejects(fn, 'INVALID_ARGUMENT', pattern);
  // Python's -Infinity token in scheduler_config.json text is read, and diffusers' extra keys are ignored.
  const s = S.DPMSolverMultistepScheduler.fromConfig('{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity}');
  assert.is(s.config.lambdaMinClipped, -Infinity);
});

t('bad steps, timesteps and tensors are refused with clear errors', async () => {
  const ddim = S.DDIMScheduler.fromConfig({});
  const x = await full([1, 2, 2], 1);
  await assertRejects(() => ddim.step(x, 999, x), 'INVALID_ARGUMENT', /DDIMScheduler.step: call setTimesteps first/);
  for (const bad of [0, -1, 1.5, 1001, NaN, '10']) {
    await assertRejects(() => ddim.setTimesteps(bad as number), 'INVALID_ARGUMENT', /numInferenceSteps must be an integer in \[1, 1000\]/);
  }
  await assertRejects(() => S.DDIMScheduler.fromConfig({ steps_offset: 999 }).setTimesteps(10), 'INVALID_ARGUMENT', /steps_offset 999 puts timesteps outside \[0, 999\]/);
  ddim.setTimesteps(10);
  await assertRejects(() => ddim.step(x, 1000, x), 'INVALID_ARGUMENT', /timestep must be an integer in \[0, 999\], got number 1000/);
  const y = await full([1, 2, 1], 1);
  await assertRejects(() => ddim.step(y, 901, x), 'SHAPE_MISMATCH', /modelOutput f32\[1, 2, 1\] on cpu must have the shape of sample f32\[1, 2, 2\]/);
  const h = await full([1, 2, 2], 1, { dtype: 'f16' });
  await assertRejects(() => ddim.step(h, 901, x), 'DTYPE_MISMATCH', /modelOutput f16\[1, 2, 2\] on cpu must have the dtype of sample/);
  const i = await full([1, 2, 2], 1, { dtype: 'i32' });
  await assertRejects(() => ddim.step(i as unknown as Tensor<'f32'>, 901, x), 'DTYPE_MISMATCH', /modelOutput must be f32, f16 or bf16, got i32/);
  await assertRejects(() => ddim.step({} as Tensor<'f32'>, 901, x), 'INVALID_ARGUMENT', /modelOutput must be a Tensor/);
  const gone = await full([1, 2, 2], 1);
  gone.dispose();
  await assertRejects(() => ddim.step(gone, 901, x), 'DISPOSED', /sample has been disposed|modelOutput has been disposed/);

  const euler = S.EulerDiscreteScheduler.fromConfig({});
  await assertRejects(() => euler.scaleModelInput(x, 999), 'INVALID_ARGUMENT', /call setTimesteps first/);
  euler.setTimesteps(10);
  await assertRejects(() => euler.step(x, 500, x), 'INVALID_ARGUMENT', /timestep 500 is not one of the 10 timesteps/);
  const anc = S.EulerAncestralDiscreteScheduler.fromConfig({});
  anc.setTimesteps(10);
  await assertRejects(() => anc.step(x, 999, x, { noise: y }), 'SHAPE_MISMATCH', /noise f32\[1, 2, 1\] on cpu must have the shape of sample/);
  await assertRejects(() => anc.step(x, 999, x, { seed: -1 }), 'INVALID_ARGUMENT', /seed must be a non-negative integer/);
  await assertRejects(() => anc.step(x, 999, x, { nose: x } as never), 'INVALID_ARGUMENT', /unknown option 'nose'/);

  const dpm = S.DPMSolverMultistepScheduler.fromConfig({});
  dpm.setTimesteps(10);
  await assertRejects(() => dpm.step(x, 998, x), 'INVALID_ARGUMENT', /timestep 998 is not one of the 10 timesteps/);

  const d = S.DDPMTraining.fromConfig({});
  const x0 = await full([2, 3], 1);
  await assertRejects(() => d.addNoise(x0, x0, [1]), 'INVALID_ARGUMENT', /timesteps has 1 entries, expected one per sample \(2\)/);
  await assertRejects(() => d.addNoise(x0, x0, [1, 1000]), 'INVALID_ARGUMENT', /timesteps\[1\] must be an integer in \[0, 999\], got number 1000/);
  await assertRejects(() => d.addNoise(x0, x0, [1, 2.5]), 'INVALID_ARGUMENT', /timesteps\[1\] must be an integer/);
  await assertRejects(() => d.addNoise(x0, x0, tensor([1, 2])  as unknown as Tensor<'i32'>), 'INVALID_ARGUMENT', /timesteps tensor must be a 1-D i32 or i64 tensor on the cpu, got f32\[2\]/);
  await assertRejects(() => d.addNoise(x0, x0, 'all' as unknown as number[]), 'INVALID_ARGUMENT', /timesteps must be an array of integers or an integer tensor/);
  await assertRejects(() => d.velocity(x0, x, [1, 2]), 'SHAPE_MISMATCH', /noise f32\[1, 2, 2\] on cpu must have the shape of x0 f32\[2, 3\]/);
  for (const v of [x, y, h, i, x0]) v.dispose();
});

t('steps dispose their temporaries; a DPM-Solver run holds one stored tensor until dispose', async () => {
  const live = (): number => memoryStats('cpu').liveAllocations;
  const before = live();
  const s = S.DPMSolverMultistepScheduler.fromConfig({});
  const ts = s.setTimesteps(4);
  let x = await randn([1, 2, 4, 4], { seed: 1 });
  const c = await full([1, 2, 4, 4], 0.3);
  for (const t of ts) {
    const out = await fakeModel(s, x, t, c);
    const next = await s.step(out, t, x);
    out.dispose();
    x.dispose();
    x = next;
  }
  assert.is(live(), before + 3, 'x, c and the stored x̂0');
  s.dispose();
  x.dispose();
  c.dispose();
  assert.is(live(), before);
});

t('DDIM η > 0: one step equals the formula with a known noise tensor; the seed reproduces; η = 0 ignores noise', async () => {
  for (const kind of ['epsilon', 'v_prediction'] as const) {
    const s = S.DDIMScheduler.fromConfig({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, steps_offset: 1, prediction_type: kind, set_alpha_to_one: false });
    const ts = s.setTimesteps(10);
    const shape = [1, 2, 3, 3];
    const xa = randomArray(18, 11);
    const oa = randomArray(18, 12);
    const na = randomArray(18, 13);
    const [x, out, noise] = [xa, oa, na].map((a) => tensor(a, { shape })) as Tensor<'f32'>[];
    for (const [i, eta] of [[0, 0.5], [4, 1], [9, 1]] as const) {
      const t0 = ts[i];
      const prev = t0 - 100;
      // By hand from diffusers' definitions (ᾱ_prev = ᾱ_0 past the first train step, set_alpha_to_one false).
      const aT = s.alphasCumprod[t0];
      const aP = prev >= 0 ? s.alphasCumprod[prev] : s.alphasCumprod[0];
      const sigma = eta * Math.sqrt((1 - aP) / (1 - aT)) * Math.sqrt(1 - aT / aP);
      const want = xa.map((xv, k) => {
        const ov = oa[k];
        const x0 = kind === 'epsilon' ? (xv - Math.sqrt(1 - aT) * ov) / Math.sqrt(aT) : Math.sqrt(aT) * xv - Math.sqrt(1 - aT) * ov;
        const e = kind === 'epsilon' ? ov : Math.sqrt(1 - aT) * xv + Math.sqrt(aT) * ov;
        return Math.sqrt(aP) * x0 + Math.sqrt(1 - aP - sigma * sigma) * e + sigma * na[k];
      });
      const y = await s.step(out, t0, x, { eta, noise });
      assertClose(y.dataSync(), want, 1e-5, 1e-6, `${kind} η=${eta} step ${i}`);
      assert.ok(sigma > 0 && Math.abs(y.dataSync()[0] - want[0]) < 1e-4);
      y.dispose();
    }
    // η = 0 is the deterministic step whatever noise is offered.
    const plain = await s.step(out, ts[3], x);
    const zeroEta = await s.step(out, ts[3], x, { eta: 0, noise });
    assert.equal(Array.from(zeroEta.dataSync()), Array.from(plain.dataSync()), 'η = 0 ignores noise');
    // Drawn noise: randn(seed, offset) shaped like the sample, the same stream as Euler ancestral's.
    const drawn = await randn(shape, { seed: 5, offset: 3 });
    const fromSeed = await s.step(out, ts[3], x, { eta: 0.7, seed: 5, offset: 3 });
    const fromTensor = await s.step(out, ts[3], x, { eta: 0.7, noise: drawn as Tensor<'f32'> });
    assert.equal(Array.from(fromSeed.dataSync()), Array.from(fromTensor.dataSync()), 'seed + offset = randn noise');
    const other = await s.step(out, ts[3], x, { eta: 0.7, seed: 6, offset: 3 });
    assert.not.equal(Array.from(other.dataSync()), Array.from(fromSeed.dataSync()), 'another seed, other noise');
    for (const v of [x, out, noise, plain, zeroEta, drawn, fromSeed, fromTensor, other]) v.dispose();
  }
});

t('DDIM η: bad values are refused with the reason', async () => {
  const s = S.DDIMScheduler.fromConfig({});
  s.setTimesteps(10);
  const x = await full([1, 2, 2], 0.5);
  const small = await full([1, 2], 0.5);
  await assertRejects(() => s.step(x, 901, x, { eta: -0.1 }), 'INVALID_ARGUMENT', /DDIMScheduler.step: eta must be a finite number ≥ 0, got number -0.1/);
  await assertRejects(() => s.step(x, 901, x, { eta: NaN }), 'INVALID_ARGUMENT', /eta must be a finite number ≥ 0, got number NaN/);
  await assertRejects(() => s.step(x, 901, x, { eta: Infinity }), 'INVALID_ARGUMENT', /eta must be a finite number/);
  await assertRejects(() => s.step(x, 901, x, { eta: '1' as unknown as number }), 'INVALID_ARGUMENT', /eta must be a finite number ≥ 0, got '1'/);
  await assertRejects(() => s.step(x, 901, x, { eta: 50 }), 'INVALID_ARGUMENT', /eta 50 is too large for timestep 901/);
  await assertRejects(() => s.step(x, 901, x, { eta: 1, noise: small }), 'SHAPE_MISMATCH', /DDIMScheduler.step: noise f32\[1, 2\] on cpu must have the shape of sample/);
  await assertRejects(() => s.step(x, 901, x, { eta: 1, seed: -2 }), 'INVALID_ARGUMENT', /seed must be a non-negative integer/);
  await assertRejects(() => s.step(x, 901, x, { etta: 1 } as never), 'INVALID_ARGUMENT', /unknown option 'etta'/);
  x.dispose();
  small.dispose();
});

t('pipeline eta: DDIM adds σ_t·randn(seed, next offset); other schedulers ignore it; bad eta refused', async () => {
  const shape = [1, 4, 2, 2];
  const parts = {
    tokenizer: { encodePadded: (_: string, o?: { maxLength?: number }) => ({ ids: new Int32Array(o?.maxLength ?? 4), length: 2, truncated: false }) },
    textEncoder: { config: { maxPositionEmbeddings: 4 }, encode: async (ids: number[][]) => ({ lastHiddenState: await full([ids.length, 4, 2], 0) }) },
    // ε = x/2
    unet: { config: { inChannels: 4, blockOutChannels: [8] }, forward: async (x: Tensor) => combine([[0.5, x as Tensor<'f32'>]]) },
    vae: { factor: 2, scalingFactor: 1, decode: async (z: Tensor) => combine([[1, z as Tensor<'f32'>]]) },
  };
  const ddim = S.DDIMScheduler.fromConfig({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, steps_offset: 1, set_alpha_to_one: false });
  const pipe = StableDiffusionPipeline.fromComponents({ ...parts, scheduler: ddim });
  const r = await pipe.generate({ prompt: 'a', steps: 1, guidanceScale: 1, width: 4, height: 4, seed: 21, eta: 0.8 });
  const xt = await randn(shape, { seed: 21 });
  const nt = await randn(shape, { seed: 21, offset: 4 }); // after the 16 latent values = 4 blocks of 4
  const x = xt.dataSync();
  const noise = nt.dataSync();
  xt.dispose();
  nt.dispose();
  const aT = ddim.alphasCumprod[1];
  const aP = ddim.alphasCumprod[0];
  const sigma = 0.8 * Math.sqrt((1 - aP) / (1 - aT)) * Math.sqrt(1 - aT / aP);
  assert.ok(sigma > 0.01, 'the noise term is far above the tolerance');
  const want = Array.from(x, (v, k) => Math.sqrt(aP) * ((v - Math.sqrt(1 - aT) * v / 2) / Math.sqrt(aT)) + Math.sqrt(1 - aP - sigma * sigma) * (v / 2) + sigma * noise[k]);
  assertClose(r.latents.dataSync() as Float32Array, want, 1e-5, 1e-6, 'DDIM η step in the pipeline');
  await assertRejects(() => pipe.generate({ prompt: 'a', width: 4, height: 4, eta: -1 }), 'INVALID_ARGUMENT', /StableDiffusionPipeline.generate: eta must be a finite number ≥ 0, got number -1/);
  const euler = StableDiffusionPipeline.fromComponents({ ...parts, scheduler: S.EulerDiscreteScheduler.fromConfig({}) });
  const e0 = await euler.generate({ prompt: 'a', steps: 2, guidanceScale: 1, width: 4, height: 4, seed: 3 });
  const e1 = await euler.generate({ prompt: 'a', steps: 2, guidanceScale: 1, width: 4, height: 4, seed: 3, eta: 1 });
  assert.equal(Array.from(e1.latents.dataSync() as Float32Array), Array.from(e0.latents.dataSync() as Float32Array), 'Euler ignores eta');
  for (const v of [r, e0, e1]) for (const k of [v.latents, v.images]) k.dispose();
});

t.run();
