// The neural-network op library: functional forward and backward ops, the
// building blocks of the model graphs. Backward functions take the forward's
// inputs and the upstream gradient and return input gradients always and
// weight gradients only when asked for.
export { sumToShape, addBackward, mulBackward, matmulBackward, type BinaryGrads, type MatmulBackwardOptions } from './basic.js';
export {
  linear,
  linearBackward,
  linearLowRank,
  linearLowRankBackward,
  type LinearBackwardOptions,
  type LinearGrads,
  type LowRank,
  type LinearLowRankOutput,
  type LinearLowRankGrads,
} from './linear.js';
export {
  groupNorm,
  groupNormSilu,
  groupNormBackward,
  layerNorm,
  layerNormBackward,
  type NormStats,
  type NormOutput,
  type NormGrads,
  type GroupNormOptions,
  type GroupNormSiluOptions,
  type GroupNormSiluOutput,
  type GroupNormBackwardOptions,
  type LayerNormOptions,
  type LayerNormBackwardOptions,
} from './norm.js';
export {
  embedding,
  embeddingBackward,
  timestepEmbedding,
  type IdDType,
  type EmbeddingBackwardOptions,
  type TimestepEmbeddingOptions,
} from './embedding.js';
export { upsampleNearest, upsampleNearestBackward, upsampleNearest2x, upsampleNearest2xBackward } from './resample.js';
export { concat, split, type DimOptions } from './concat.js';
export { mseLoss, mseLossBackward, type MseLossOptions, type MseLossBackwardOptions } from './loss.js';
export { adamwStep, type AdamwState, type AdamwOptions } from './adamw.js';
export { clipGradNorm, type ClipGradNormOptions } from './clip-grad-norm.js';
export { conv2d, conv2dBackward, type Conv2dPadding, type Conv2dOptions, type Conv2dBackwardOptions, type Conv2dGrads } from './conv.js';
export {
  silu,
  siluBackward,
  gelu,
  geluBackward,
  quickGelu,
  quickGeluBackward,
  geglu,
  gegluBackward,
  softmax,
  softmaxBackward,
  scale,
  type SoftmaxOptions,
} from './act.js';
export { attention, attentionBackward, attentionTokenMap, attentionTokenMapBackward, TOKEN_MAP_MAX_TOKENS, type AttentionOptions, type AttentionOutputs, type AttentionGrads } from './attn.js';
export { runOp, type Attrs } from './run.js';
export {
  tokenVocabNorms,
  tokenTopkCosine,
  contrastiveNnLoss,
  contrastiveNnLossBackward,
  neuronStatStep,
  neuronMaskApply,
  neuronMaskRestore,
  TOKEN_TOPK_MAX_K,
  NEURON_STAT_RHO,
  type TokenTopkOptions,
  type TokenTopk,
  type ContrastiveNnOptions,
  type ContrastiveNnBackwardOptions,
  type NeuronStatState,
  type NeuronStatOptions,
} from './method.js';
