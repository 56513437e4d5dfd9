// The embedded world model: Stable Diffusion's three-part architecture at a
// size that pretrains in about an hour on two CPU cores.
//
// Pixel space, as DeepFloyd IF's first stage (model_index.json lists
// "vae": [null, null]): the UNet denoises 32×32 RGB images directly. A VAE
// would have to be trained first (its own hour), and at this size its 4× or
// 8× downsampling would leave 8×8 or 4×4 latents, too coarse for the shapes'
// outlines. The methods (Custom Diffusion, Cones, the tuning encoder) touch
// only the UNet's attention and the text encoder, so they behave the same.
//
// UNet: SD1's block structure (DownBlock2D at full resolution, cross-attention
// at 16×16 and 8×8 where the layout of the scene is decided), 64-wide text
// features. Text encoder: a 2-layer CLIP text transformer over the real CLIP
// vocabulary (49 408 tokens), so prompts tokenize exactly as for SD.

export const WORLD_RESOLUTION = 32;

export const WORLD_UNET_CONFIG = {
  _class_name: 'UNet2DConditionModel',
  _diffusers_version: '0.21.0',
  sample_size: WORLD_RESOLUTION,
  in_channels: 3,
  out_channels: 3,
  center_input_sample: false,
  flip_sin_to_cos: true,
  freq_shift: 0,
  down_block_types: ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
  mid_block_type: 'UNetMidBlock2DCrossAttn',
  up_block_types: ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
  block_out_channels: [32, 64, 64],
  layers_per_block: 1,
  downsample_padding: 1,
  mid_block_scale_factor: 1,
  act_fn: 'silu',
  norm_num_groups: 8,
  norm_eps: 1e-5,
  cross_attention_dim: 64,
  attention_head_dim: 4,
  use_linear_projection: false,
  upcast_attention: false,
} as const;

export const WORLD_TEXT_ENCODER_CONFIG = {
  _name_or_path: 'imprint/world',
  architectures: ['CLIPTextModel'],
  model_type: 'clip_text_model',
  vocab_size: 49408,
  hidden_size: 64,
  intermediate_size: 256,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  max_position_embeddings: 77,
  hidden_act: 'quick_gelu',
  layer_norm_eps: 1e-5,
  bos_token_id: 49406,
  eos_token_id: 49407,
  pad_token_id: 49407,
  projection_dim: 64,
  torch_dtype: 'float32',
} as const;

/**
 * The cosine noise schedule (squaredcos_cap_v2) with v-prediction and
 * trailing timesteps. At 32×32 the linear schedule of large models leaves an
 * image almost pure noise from t ≈ 600 on (ᾱ < 0.01), so 40% of the training
 * steps would teach little; the cosine schedule spreads the noise levels
 * evenly over t (Nichol & Dhariwal). With epsilon prediction a short
 * pretraining leaves the highest levels, where the first sampling steps
 * decide the layout, badly predicted (x0 = (x_t − √(1−ᾱ)·ε̂)/√ᾱ multiplies the
 * error by 1/√ᾱ); v weighs every level evenly. Trailing spacing starts
 * sampling at t = 999, the pure noise the sampler actually starts from.
 */
export const WORLD_SCHEDULER_CONFIG = {
  _class_name: 'DDIMScheduler',
  _diffusers_version: '0.21.0',
  num_train_timesteps: 1000,
  beta_start: 0.0001,
  beta_end: 0.02,
  beta_schedule: 'squaredcos_cap_v2',
  prediction_type: 'v_prediction',
  clip_sample: false,
  set_alpha_to_one: false,
  steps_offset: 1,
  timestep_spacing: 'trailing',
} as const;

export const WORLD_MODEL_INDEX = {
  _class_name: 'StableDiffusionPipeline',
  _diffusers_version: '0.21.0',
  unet: ['diffusers', 'UNet2DConditionModel'],
  vae: [null, null],
  text_encoder: ['transformers', 'CLIPTextModel'],
  tokenizer: ['transformers', 'CLIPTokenizer'],
  scheduler: ['diffusers', 'DDIMScheduler'],
  safety_checker: [null, null],
  feature_extractor: [null, null],
  requires_safety_checker: false,
} as const;
