// DDPM forward process for training: noising x0 to timestep t and the
// regression target the UNet learns, per sample of a batch.
import { invalidArgument } from '../errors.js';
import { Tensor } from '../tensor.js';
import { describe, type FloatDType } from '../validate.js';
import { checkFloatTensor, checkLike, combinePerSample } from './combine.js';
import { alphasCumprod, configObject, Fields, readScheduleConfig, type ConfigInput, type ScheduleConfig } from './config.js';

/** Timesteps of a batch: integers as an array or an integer tensor on the CPU. */
export type Timesteps = readonly number[] | Int32Array | BigInt64Array | Tensor<'i32'> | Tensor<'i64'>;

export class DDPMTraining {
  readonly config: ScheduleConfig;
  /** ᾱ_t for t = 0 … N−1, float64. */
  readonly alphasCumprod: Float64Array;

  constructor(config: ScheduleConfig) {
    this.config = config;
    this.alphasCumprod = alphasCumprod(config);
  }

  static fromConfig(json: ConfigInput): DDPMTraining {
    const f = new Fields('DDPMTraining.fromConfig', configObject('DDPMTraining.fromConfig', json));
    f.refuse('clip_sample', false);
    return new DDPMTraining(readScheduleConfig(f, { spacing: 'leading', stepsOffset: 0 }));
  }

  /** noisy = √ᾱ_t·x0 + √(1−ᾱ_t)·noise, t per sample. */
  addNoise<D extends FloatDType>(x0: Tensor<D>, noise: Tensor<D>, timesteps: Timesteps): Promise<Tensor<D>> {
    return this.mix('addNoise', x0, noise, timesteps, (a) => [Math.sqrt(a), Math.sqrt(1 - a)]);
  }

  /** v = √ᾱ_t·noise − √(1−ᾱ_t)·x0, the v-prediction target. */
  velocity<D extends FloatDType>(x0: Tensor<D>, noise: Tensor<D>, timesteps: Timesteps): Promise<Tensor<D>> {
    return this.mix('velocity', x0, noise, timesteps, (a) => [-Math.sqrt(1 - a), Math.sqrt(a)]);
  }

  /** What the model is trained to output under config.prediction_type: noise, v or x0. */
  target<D extends FloatDType>(x0: Tensor<D>, noise: Tensor<D>, timesteps: Timesteps): Promise<Tensor<D>> {
    switch (this.config.predictionType) {
      case 'epsilon':
        return this.mix('target', x0, noise, timesteps, () => [0, 1]);
      case 'v_prediction':
        return this.velocity(x0, noise, timesteps);
      case 'sample':
        return this.mix('target', x0, noise, timesteps, () => [1, 0]);
    }
  }

  private async mix<D extends FloatDType>(
    fn: string, x0: Tensor<D>, noise: Tensor<D>, timesteps: Timesteps, coefs: (alphaBar: number) => [number, number],
  ): Promise<Tensor<D>> {
    checkFloatTensor(fn, 'x0', x0);
    checkFloatTensor(fn, 'noise', noise);
    checkLike(fn, 'noise', noise, 'x0', x0);
    if (x0.shape.length < 1) throw invalidArgument(`${fn}: x0 must have a batch dimension, got a scalar`);
    const ts = this.readTimesteps(fn, timesteps, x0.shape[0]);
    const a: number[] = [];
    const b: number[] = [];
    for (const t of ts) {
      const [ca, cb] = coefs(this.alphasCumprod[t]);
      a.push(ca);
      b.push(cb);
    }
    return combinePerSample(a, x0, b, noise);
  }

  private readTimesteps(fn: string, timesteps: Timesteps, batch: number): number[] {
    let values: number[];
    if (timesteps instanceof Tensor) {
      if ((timesteps.dtype !== 'i32' && timesteps.dtype !== 'i64') || timesteps.device !== 'cpu' || timesteps.shape.length !== 1) {
        throw invalidArgument(`${fn}: timesteps tensor must be a 1-D i32 or i64 tensor on the cpu, got ${timesteps.dtype}[${timesteps.shape.join(', ')}] on ${timesteps.device}`);
      }
      values = Array.from(timesteps.dataSync() as ArrayLike<number | bigint>, Number);
    } else if (Array.isArray(timesteps) || timesteps instanceof Int32Array || timesteps instanceof BigInt64Array) {
      values = Array.from(timesteps as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? Number(v) : v));
    } else {
      throw invalidArgument(`${fn}: timesteps must be an array of integers or an integer tensor, got ${describe(timesteps)}`);
    }
    if (values.length !== batch) throw invalidArgument(`${fn}: timesteps has ${values.length} entries, expected one per sample (${batch})`);
    const n = this.config.numTrainTimesteps;
    values.forEach((t, i) => {
      if (typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0 || t >= n) {
        throw invalidArgument(`${fn}: timesteps[${i}] must be an integer in [0, ${n - 1}], got ${describe(t)}`);
      }
    });
    return values;
  }
}
