// What a Custom Diffusion run learns, in memory: the change of each trained
// attention matrix (ΔW = W − W0) and one embedding row per new token. The
// training loop produces it; concept files, the diffusers export, the merge
// and the sampler consume it.
import type { Tensor } from '../tensor.js';

/** 'kv': attn2.to_k/to_v of every cross-attention layer; 'cross': all of attn2 (q, k, v, out). */
export type CustomDiffusionMode = 'kv' | 'cross';

export interface ConceptToken {
  /** The modifier token, e.g. '<new1>'. */
  token: string;
  /** The word it stands before in prompts, e.g. 'dog' in "photo of a <new1> dog". */
  classWord: string;
  /** Its learned row of the text encoder's token embedding, f32 [hidden_size]. */
  embedding: Tensor<'f32'>;
  /**
   * The instance prompt it was trained with, e.g. "photo of a <new1> dog"
   * (absent in files from before it was recorded). mergeConcepts uses it as a
   * target caption: the merge should keep the token's outputs on the captions
   * it learned from.
   */
  prompt?: string;
}

export interface ConceptWeights {
  method: 'custom-diffusion';
  mode: CustomDiffusionMode;
  tokens: ConceptToken[];
  /**
   * ΔW per trained UNet weight, by diffusers name (e.g.
   * 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'), f32, W's shape.
   */
  deltas: Map<string, Tensor<'f32'>>;
  /** Identifies the base model the deltas apply to (see fingerprint.ts). */
  baseFingerprint: string;
}
