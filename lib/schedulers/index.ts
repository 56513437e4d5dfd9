// Noise schedulers: the DDPM forward process for training and the samplers
// (DDIM, Euler, Euler ancestral, DPM-Solver++ 2M), configured from diffusers'
// scheduler_config.json and applied to tensors on any device.
export {
  alphasCumprod, karrasSigmas, sigmasOf, type ConfigInput, type PredictionType, type ScheduleConfig, type TimestepSpacing,
} from './config.js';
export { DDPMTraining, type Timesteps } from './ddpm.js';
export { DDIMScheduler, type DDIMConfig, type DDIMStepOptions } from './ddim.js';
export { EulerDiscreteScheduler, type EulerConfig } from './euler.js';
export { EulerAncestralDiscreteScheduler, type AncestralStepOptions } from './euler-ancestral.js';
export { DPMSolverMultistepScheduler, type DPMSolverConfig } from './dpm-solver.js';
