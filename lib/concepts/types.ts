// What a method learns, in memory, in one container for every method: token
// embedding rows, dense ΔW, low-rank (LoRA) factors and sparse neuron index
// sets per UNet weight. Training produces it; the concept file, applyConcepts
// and (for Custom Diffusion) the merge and the diffusers export consume it.
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

/** A LoRA update of one weight: ΔW = scale · b · a. */
export interface LoraFactors {
  /** Down factor, f32 [rank, in]. */
  a: Tensor<'f32'>;
  /** Up factor, f32 [out, rank]. */
  b: Tensor<'f32'>;
  scale: number;
}

/** What every concept holds, whatever method made it. */
interface ConceptCommon {
  tokens: ConceptToken[];
  /** Identifies the base model the concept applies to (see fingerprint.ts). */
  baseFingerprint: string;
  /** Settings the method recorded (stored as the file's 'settings' metadata), e.g. Cones' statistic settings. */
  settings?: Record<string, string>;
  /** Dense ΔW per UNet weight, by diffusers name, f32, W's shape. */
  deltas?: Map<string, Tensor<'f32'>>;
  /** Low-rank ΔW per UNet weight. */
  lora?: Map<string, LoraFactors>;
  /** Per UNet weight, the sorted flat (row-major) indices of the entries shut (set to zero): Cones' concept neurons. */
  neurons?: Map<string, Int32Array>;
}

/** Custom Diffusion (DESIGN §1.1): new tokens and ΔW of the cross-attention K/V (or all of attn2). */
export interface CustomDiffusionConcept extends ConceptCommon {
  method: 'custom-diffusion';
  mode: CustomDiffusionMode;
  /**
   * ΔW per trained UNet weight, by diffusers name (e.g.
   * 'down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight'), f32, W's shape.
   */
  deltas: Map<string, Tensor<'f32'>>;
}

/** Concept neurons (Cones, DESIGN §1.2): the weights whose shutting makes the base model draw the subject. */
export interface ConesConcept extends ConceptCommon {
  method: 'cones';
  neurons: Map<string, Int32Array>;
}

/** The tuning encoder (DESIGN §1.3): a word embedding and LoRA factors per chosen projection. */
export interface TuningEncoderConcept extends ConceptCommon {
  method: 'tuning-encoder';
  lora: Map<string, LoraFactors>;
}

/** A learned concept, in memory; `method` says which parts it has. */
export type ConceptWeights = CustomDiffusionConcept | ConesConcept | TuningEncoderConcept;

export type ConceptMethod = ConceptWeights['method'];
export const CONCEPT_METHODS: readonly ConceptMethod[] = ['custom-diffusion', 'cones', 'tuning-encoder'];
