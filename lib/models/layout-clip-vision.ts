// Every parameter of a transformers CLIPVisionModel with its shape, and the
// order the native vision ops take them (csrc/models/clip_vision_op.cc).
import type { ClipVisionConfig, Layout } from './configs.js';
import { CLIP_LAYER_PARAMS } from './layout-clip.js';

const P = 'vision_model';

/** name → shape of every CLIP vision parameter for a parsed config. */
export function clipVisionLayout(cfg: ClipVisionConfig): Layout {
  const h = cfg.hiddenSize, m = cfg.intermediateSize;
  const grid = cfg.imageSize / cfg.patchSize;
  const out: Layout = {
    [`${P}.embeddings.class_embedding`]: [h],
    [`${P}.embeddings.patch_embedding.weight`]: [h, cfg.numChannels, cfg.patchSize, cfg.patchSize],
    [`${P}.embeddings.position_embedding.weight`]: [grid * grid + 1, h],
    [`${P}.pre_layrnorm.weight`]: [h],
    [`${P}.pre_layrnorm.bias`]: [h],
  };
  const shapes: Record<(typeof CLIP_LAYER_PARAMS)[number], number[]> = {
    'layer_norm1.weight': [h], 'layer_norm1.bias': [h],
    'self_attn.q_proj.weight': [h, h], 'self_attn.q_proj.bias': [h],
    'self_attn.k_proj.weight': [h, h], 'self_attn.k_proj.bias': [h],
    'self_attn.v_proj.weight': [h, h], 'self_attn.v_proj.bias': [h],
    'self_attn.out_proj.weight': [h, h], 'self_attn.out_proj.bias': [h],
    'layer_norm2.weight': [h], 'layer_norm2.bias': [h],
    'mlp.fc1.weight': [m, h], 'mlp.fc1.bias': [m],
    'mlp.fc2.weight': [h, m], 'mlp.fc2.bias': [h],
  };
  for (let l = 0; l < cfg.numHiddenLayers; l++) for (const p of CLIP_LAYER_PARAMS) out[`${P}.encoder.layers.${l}.${p}`] = shapes[p];
  out[`${P}.post_layernorm.weight`] = [h];
  out[`${P}.post_layernorm.bias`] = [h];
  return out;
}

/** Every weight's full name in the native ops' order (the same set as clipVisionLayout, which lists them in that order). */
export function clipVisionWeightNames(cfg: ClipVisionConfig): string[] {
  return Object.keys(clipVisionLayout(cfg));
}
