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
  upsampleNearest,
  upsampleNearestBackward,
  concat,
  split,
  mseLoss,
  mseLossBackward,
  adamwStep,
  clipGradNorm,
  type IdDType,
  type EmbeddingBackwardOptions,
  type TimestepEmbeddingOptions,
  type DimOptions,
  type MseLossOptions,
  type MseLossBackwardOptions,
  type AdamwState,
  type AdamwOptions,
  type ClipGradNormOptions,
} from './misc.js';
export {
  conv2d,
  conv2dBackward,
  upsampleNearest2x,
  upsampleNearest2xBackward,
  type Conv2dPadding,
  type Conv2dOptions,
  type Conv2dBackwardOptions,
  type Conv2dGrads,
} from './conv.js';
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
export { attention, attentionBackward, type AttentionOptions, type AttentionOutputs, type AttentionGrads, type KvAdapter, type KvLora } from './attn.js';
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
