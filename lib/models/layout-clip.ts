// Every parameter of a transformers CLIPTextModel with its shape (the
// position_ids buffer is not a parameter and is not listed).
import type { ClipTextConfig, Layout } from './configs.js';

/** name → shape of every CLIP text encoder parameter for a parsed config. */
export function clipTextLayout(cfg: ClipTextConfig): Layout {
  const out: Layout = {};
  const h = cfg.hiddenSize;
  const m = cfg.intermediateSize;
  out['text_model.embeddings.token_embedding.weight'] = [cfg.vocabSize, h];
  out['text_model.embeddings.position_embedding.weight'] = [cfg.maxPositionEmbeddings, h];
  for (let i = 0; i < cfg.numHiddenLayers; i++) {
    const p = `text_model.encoder.layers.${i}`;
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      out[`${p}.self_attn.${proj}.weight`] = [h, h];
      out[`${p}.self_attn.${proj}.bias`] = [h];
    }
    out[`${p}.layer_norm1.weight`] = [h];
    out[`${p}.layer_norm1.bias`] = [h];
    out[`${p}.mlp.fc1.weight`] = [m, h];
    out[`${p}.mlp.fc1.bias`] = [m];
    out[`${p}.mlp.fc2.weight`] = [h, m];
    out[`${p}.mlp.fc2.bias`] = [h];
    out[`${p}.layer_norm2.weight`] = [h];
    out[`${p}.layer_norm2.bias`] = [h];
  }
  out['text_model.final_layer_norm.weight'] = [h];
  out['text_model.final_layer_norm.bias'] = [h];
  return out;
}

export const TOKEN_EMBEDDING = 'text_model.embeddings.token_embedding.weight';

// A layer's weights in the native ops' input order (csrc/models/clip_text_op.cc).
export const CLIP_LAYER_PARAMS = [
  'layer_norm1.weight', 'layer_norm1.bias',
  'self_attn.q_proj.weight', 'self_attn.q_proj.bias',
  'self_attn.k_proj.weight', 'self_attn.k_proj.bias',
  'self_attn.v_proj.weight', 'self_attn.v_proj.bias',
  'self_attn.out_proj.weight', 'self_attn.out_proj.bias',
  'layer_norm2.weight', 'layer_norm2.bias',
  'mlp.fc1.weight', 'mlp.fc1.bias',
  'mlp.fc2.weight', 'mlp.fc2.bias',
] as const;

/** Every weight's full name in the order the native CLIP ops take them (the same set as clipTextLayout). */
export function clipTextWeightNames(cfg: ClipTextConfig): string[] {
  const names = [TOKEN_EMBEDDING, 'text_model.embeddings.position_embedding.weight'];
  for (let l = 0; l < cfg.numHiddenLayers; l++) for (const p of CLIP_LAYER_PARAMS) names.push(`text_model.encoder.layers.${l}.${p}`);
  names.push('text_model.final_layer_norm.weight', 'text_model.final_layer_norm.bias');
  return names;
}
