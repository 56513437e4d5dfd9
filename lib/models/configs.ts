// Parsing and validating the config.json of the three Stable Diffusion parts
// (UNet2DConditionModel, AutoencoderKL, CLIPTextModel): only the fields the
// parameter layouts depend on, with the defaults diffusers/transformers use.
import { readFileSync } from 'node:fs';

import { ImprintError, invalidArgument } from '../errors.js';
import { describe, isPlainObject } from '../validate.js';

/** Expected parameters of a model: name → shape. */
export type Layout = Record<string, number[]>;

export type UNetDownBlockType = 'CrossAttnDownBlock2D' | 'DownBlock2D';
export type UNetUpBlockType = 'CrossAttnUpBlock2D' | 'UpBlock2D';

export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  downBlockTypes: UNetDownBlockType[];
  upBlockTypes: UNetUpBlockType[];
  /** Attention heads per down block (diffusers' attention_head_dim means heads in SD configs). */
  heads: number[];
  transformerLayersPerBlock: number[];
  crossAttentionDim: number;
  useLinearProjection: boolean;
  normNumGroups: number;
  normEps: number;
  timeEmbeddingDim: number;
  flipSinToCos: boolean;
  freqShift: number;
  convInKernel: number;
  convOutKernel: number;
  sampleSize: number;
}

export interface VaeConfig {
  inChannels: number;
  outChannels: number;
  blockOutChannels: number[];
  layersPerBlock: number;
  latentChannels: number;
  normNumGroups: number;
  scalingFactor: number;
  sampleSize: number;
}

export interface ClipTextConfig {
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  maxPositionEmbeddings: number;
  hiddenAct: 'quick_gelu' | 'gelu';
  layerNormEps: number;
}

// Field readers: each error names the file and the field.
class Fields {
  constructor(
    readonly raw: Record<string, unknown>,
    readonly where: string,
  ) {}

  fail(field: string, expected: string): never {
    throw invalidArgument(`${this.where}: '${field}' must be ${expected}, got ${show(this.raw[field])}`);
  }

  has(field: string): boolean {
    return this.raw[field] !== undefined && this.raw[field] !== null;
  }

  int(field: string, fallback: number, min = 1): number {
    if (!this.has(field)) return fallback;
    const v = this.raw[field];
    if (!Number.isSafeInteger(v) || (v as number) < min) this.fail(field, `an integer ≥ ${min}`);
    return v as number;
  }

  num(field: string, fallback: number): number {
    if (!this.has(field)) return fallback;
    const v = this.raw[field];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(field, 'a finite number');
    return v;
  }

  bool(field: string, fallback: boolean): boolean {
    if (!this.has(field)) return fallback;
    const v = this.raw[field];
    if (typeof v !== 'boolean') this.fail(field, 'true or false');
    return v;
  }

  oneOf<T extends string>(field: string, allowed: readonly T[], fallback: T): T {
    if (!this.has(field)) return fallback;
    const v = this.raw[field];
    if (!allowed.includes(v as T)) this.fail(field, `one of ${allowed.map((a) => `'${a}'`).join(', ')}`);
    return v as T;
  }

  intList(field: string, fallback: number[]): number[] {
    if (!this.has(field)) return fallback;
    const v = this.raw[field];
    if (!Array.isArray(v) || v.length === 0 || v.some((x) => !Number.isSafeInteger(x) || x < 1)) this.fail(field, 'a non-empty list of positive integers');
    return [...(v as number[])];
  }

  /** An int for every block, or one list entry per block. */
  perBlock(field: string, fallback: number, n: number): number[] {
    if (!this.has(field)) return new Array<number>(n).fill(fallback);
    const v = this.raw[field];
    if (Number.isSafeInteger(v) && (v as number) >= 1) return new Array<number>(n).fill(v as number);
    if (Array.isArray(v) && v.length === n && v.every((x) => Number.isSafeInteger(x) && x >= 1)) return [...(v as number[])];
    this.fail(field, `a positive integer or a list of ${n} positive integers (one per block)`);
  }

  strList<T extends string>(field: string, allowed: readonly T[], fallback: T[], n: number): T[] {
    const v = this.has(field) ? this.raw[field] : fallback;
    if (!Array.isArray(v) || v.length !== n || v.some((x) => !allowed.includes(x as T))) {
      this.fail(field, `a list of ${n} block types (one per entry of block_out_channels) from ${allowed.join(', ')}`);
    }
    return [...(v as T[])];
  }

  /** Fields that change the parameter layout in ways not supported here must be absent or their default. */
  unsupported(field: string, allowed: unknown): void {
    const v = this.raw[field];
    if (v !== undefined && v !== null && v !== allowed) {
      throw new ImprintError(`${this.where}: '${field}' = ${show(v)} is not supported (Stable Diffusion 1.x/2.x use ${show(allowed)})`, 'UNSUPPORTED');
    }
  }
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v) || (typeof v === 'string' && v.length < 80)) {
    try {
      return JSON.stringify(v).slice(0, 120);
    } catch {
      return describe(v);
    }
  }
  return describe(v);
}

function fields(raw: unknown, where: string, className: string): Fields {
  if (!isPlainObject(raw)) throw invalidArgument(`${where}: a config must be a JSON object, got ${describe(raw)}`);
  const cls = raw._class_name;
  if (cls !== undefined && cls !== className) throw invalidArgument(`${where}: '_class_name' is ${show(cls)}, expected '${className}'`);
  return new Fields(raw, where);
}

function checkGroups(f: Fields, channels: number[], groups: number, field = 'norm_num_groups'): void {
  for (const c of channels) {
    if (c % groups !== 0) f.fail(field, `a divisor of every block channel count (${c} is not divisible by ${groups})`);
  }
}


// Parsed configs carry this mark, so every parse function (and every
// fromWeights) takes either a raw config.json object or an already parsed one.
const PARSED = Symbol('imprint.parsedConfig');

function markParsed<T extends object>(config: T): T {
  Object.defineProperty(config, PARSED, { value: true, enumerable: false });
  return Object.freeze(config);
}

function isParsed(raw: unknown): boolean {
  return typeof raw === 'object' && raw !== null && (raw as Record<symbol, unknown>)[PARSED] === true;
}

/** Parses a UNet2DConditionModel config (diffusers 0.21 defaults). `where` names the file in errors. */
export function parseUNetConfig(raw: unknown, where = 'UNet config'): UNetConfig {
  if (isParsed(raw)) return raw as UNetConfig;
  const f = fields(raw, where, 'UNet2DConditionModel');
  const blockOutChannels = f.intList('block_out_channels', [320, 640, 1280, 1280]);
  const n = blockOutChannels.length;
  const downBlockTypes = f.strList<UNetDownBlockType>('down_block_types', ['CrossAttnDownBlock2D', 'DownBlock2D'], ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'], n);
  const upBlockTypes = f.strList<UNetUpBlockType>('up_block_types', ['CrossAttnUpBlock2D', 'UpBlock2D'], ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'], n);
  f.oneOf('mid_block_type', ['UNetMidBlock2DCrossAttn'] as const, 'UNetMidBlock2DCrossAttn');
  // diffusers: num_attention_heads falls back to attention_head_dim (which SD configs use to mean heads).
  const headsField = f.has('num_attention_heads') ? 'num_attention_heads' : 'attention_head_dim';
  const heads = f.perBlock(headsField, 8, n);
  const transformerLayersPerBlock = f.perBlock('transformer_layers_per_block', 1, n);
  const normNumGroups = f.int('norm_num_groups', 32);
  checkGroups(f, blockOutChannels, normNumGroups);
  blockOutChannels.forEach((c, i) => {
    if (downBlockTypes[i] === 'CrossAttnDownBlock2D' || upBlockTypes[n - 1 - i] === 'CrossAttnUpBlock2D' || i === n - 1) {
      if (c % heads[i] !== 0) f.fail(headsField, `a head count dividing the block's channels (block ${i}: ${c} channels, ${heads[i]} heads)`);
    }
  });
  for (const field of ['class_embed_type', 'addition_embed_type', 'encoder_hid_dim', 'time_cond_proj_dim', 'time_embedding_act_fn', 'timestep_post_act']) {
    f.unsupported(field, null);
  }
  f.unsupported('only_cross_attention', false);
  f.unsupported('dual_cross_attention', false);
  f.unsupported('time_embedding_type', 'positional');
  f.unsupported('resnet_time_scale_shift', 'default');
  const convInKernel = f.int('conv_in_kernel', 3);
  const convOutKernel = f.int('conv_out_kernel', 3);
  if (convInKernel % 2 === 0) f.fail('conv_in_kernel', 'an odd integer');
  if (convOutKernel % 2 === 0) f.fail('conv_out_kernel', 'an odd integer');
  return markParsed({
    inChannels: f.int('in_channels', 4),
    outChannels: f.int('out_channels', 4),
    blockOutChannels,
    layersPerBlock: f.int('layers_per_block', 2),
    downBlockTypes,
    upBlockTypes,
    heads,
    transformerLayersPerBlock,
    crossAttentionDim: f.int('cross_attention_dim', 1280),
    useLinearProjection: f.bool('use_linear_projection', false),
    normNumGroups,
    normEps: f.num('norm_eps', 1e-5),
    timeEmbeddingDim: f.int('time_embedding_dim', blockOutChannels[0] * 4),
    flipSinToCos: f.bool('flip_sin_to_cos', true),
    freqShift: f.num('freq_shift', 0),
    convInKernel,
    convOutKernel,
    sampleSize: f.int('sample_size', 64),
  });
}

/** Parses an AutoencoderKL config (diffusers 0.21 defaults). */
export function parseVaeConfig(raw: unknown, where = 'VAE config'): VaeConfig {
  if (isParsed(raw)) return raw as VaeConfig;
  const f = fields(raw, where, 'AutoencoderKL');
  const blockOutChannels = f.intList('block_out_channels', [64]);
  const n = blockOutChannels.length;
  f.strList('down_block_types', ['DownEncoderBlock2D'] as const, new Array(n).fill('DownEncoderBlock2D'), n);
  f.strList('up_block_types', ['UpDecoderBlock2D'] as const, new Array(n).fill('UpDecoderBlock2D'), n);
  const normNumGroups = f.int('norm_num_groups', 32);
  checkGroups(f, blockOutChannels, normNumGroups);
  f.unsupported('mid_block_add_attention', true);
  return markParsed({
    inChannels: f.int('in_channels', 3),
    outChannels: f.int('out_channels', 3),
    blockOutChannels,
    layersPerBlock: f.int('layers_per_block', 1),
    latentChannels: f.int('latent_channels', 4),
    normNumGroups,
    scalingFactor: f.num('scaling_factor', 0.18215),
    sampleSize: f.int('sample_size', 32),
  });
}

/** Parses a CLIPTextModel config (transformers' CLIPTextConfig defaults). */
export function parseClipTextConfig(raw: unknown, where = 'CLIP text config'): ClipTextConfig {
  if (isParsed(raw)) return raw as ClipTextConfig;
  const f = fields(raw, where, 'CLIPTextModel');
  const hiddenSize = f.int('hidden_size', 512);
  const numAttentionHeads = f.int('num_attention_heads', 8);
  if (hiddenSize % numAttentionHeads !== 0) f.fail('num_attention_heads', `a divisor of hidden_size ${hiddenSize}`);
  return markParsed({
    vocabSize: f.int('vocab_size', 49408),
    hiddenSize,
    intermediateSize: f.int('intermediate_size', 2048),
    numHiddenLayers: f.int('num_hidden_layers', 12),
    numAttentionHeads,
    maxPositionEmbeddings: f.int('max_position_embeddings', 77),
    hiddenAct: f.oneOf('hidden_act', ['quick_gelu', 'gelu'] as const, 'quick_gelu'),
    layerNormEps: positive(f, 'layer_norm_eps', f.num('layer_norm_eps', 1e-5)),
  });
}

/**
 * transformers' CLIPVisionConfig (a CLIPVisionModel's config.json, or the
 * vision_config of a CLIPModel's): the tuning encoder's backbone.
 */
export interface ClipVisionConfig {
  hiddenSize: number;
  intermediateSize: number;
  numHiddenLayers: number;
  numAttentionHeads: number;
  numChannels: number;
  imageSize: number;
  patchSize: number;
  hiddenAct: 'quick_gelu' | 'gelu';
  layerNormEps: number;
}

/** Parses a CLIPVisionModel config (defaults: transformers', ViT-B/32). */
export function parseClipVisionConfig(raw: unknown, where = 'CLIP vision config'): ClipVisionConfig {
  if (isParsed(raw)) return raw as ClipVisionConfig;
  const f = fields(raw, where, 'CLIPVisionModel');
  const hiddenSize = f.int('hidden_size', 768);
  const numAttentionHeads = f.int('num_attention_heads', 12);
  if (hiddenSize % numAttentionHeads !== 0) f.fail('num_attention_heads', `a divisor of hidden_size ${hiddenSize}`);
  const imageSize = f.int('image_size', 224);
  const patchSize = f.int('patch_size', 32);
  if (imageSize % patchSize !== 0) f.fail('patch_size', `a divisor of image_size ${imageSize}`);
  return markParsed({
    hiddenSize,
    intermediateSize: f.int('intermediate_size', 3072),
    numHiddenLayers: f.int('num_hidden_layers', 12),
    numAttentionHeads,
    numChannels: f.int('num_channels', 3),
    imageSize,
    patchSize,
    hiddenAct: f.oneOf('hidden_act', ['quick_gelu', 'gelu'] as const, 'quick_gelu'),
    layerNormEps: positive(f, 'layer_norm_eps', f.num('layer_norm_eps', 1e-5)),
  });
}

function positive(f: Fields, field: string, v: number): number {
  if (!(v > 0)) f.fail(field, 'a positive number');
  return v;
}

/** Reads and parses a JSON file; errors name the file. */
export function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw invalidArgument(`cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw invalidArgument(`${path} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The SD 1.5 configs (as diffusers ships them): the defaults for single-file checkpoints. */
export const SD15_CONFIGS = {
  unet: {
    sample_size: 64, in_channels: 4, out_channels: 4,
    down_block_types: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
    up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D'],
    block_out_channels: [320, 640, 1280, 1280], layers_per_block: 2, cross_attention_dim: 768, attention_head_dim: 8,
  },
  vae: {
    in_channels: 3, out_channels: 3,
    down_block_types: ['DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D', 'DownEncoderBlock2D'],
    up_block_types: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'],
    block_out_channels: [128, 256, 512, 512], layers_per_block: 2, latent_channels: 4, sample_size: 512,
  },
  textEncoder: {
    hidden_size: 768, num_hidden_layers: 12, num_attention_heads: 12, intermediate_size: 3072, hidden_act: 'quick_gelu',
    max_position_embeddings: 77, vocab_size: 49408, layer_norm_eps: 1e-5,
  },
} as const;
