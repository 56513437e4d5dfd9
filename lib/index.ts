// Imprint's public API.
export { ImprintError, type ErrorCode } from './errors.js';
export { Tensor, type TensorData, type DataOf, type SumOf } from './tensor.js';
export { tensor, full, zeros, ones, rand, randn, type TensorInput, type TensorOptions, type FillOptions, type RandomOptions } from './creation.js';
export { matmul, add, mul, sum, type MatmulOptions, type SumOptions } from './ops.js';
export {
  devices,
  defaultDevice,
  buildInfo,
  memoryStats,
  resetPeakMemory,
  emptyCache,
  setMemoryLimit,
  numThreads,
  setNumThreads,
  type DevicesInfo,
  type BuildInfo,
  type MemoryStats,
} from './device.js';
export type { DType, FloatDType, Device } from './validate.js';
export * as nn from './nn/index.js';
export { ClipTokenizer, START_TOKEN, END_TOKEN, type EncodeOptions, type PaddedIds } from './tokenizer/clip.js';
export * as schedulers from './schedulers/index.js';
export {
  readSafetensorsHeader,
  loadSafetensors,
  saveSafetensors,
  type SafetensorsHeader,
  type SafetensorsEntryInfo,
  type SafetensorsDType,
  type LoadSafetensorsOptions,
} from './io/safetensors.js';
export {
  parseUNetConfig,
  parseVaeConfig,
  parseClipTextConfig,
  parseClipVisionConfig,
  readJsonFile,
  SD15_CONFIGS,
  type Layout,
  type UNetConfig,
  type VaeConfig,
  type ClipTextConfig,
  type ClipVisionConfig,
} from './models/configs.js';
export { unetLayout } from './models/layout-unet.js';
export { vaeLayout } from './models/layout-vae.js';
export { clipVisionLayout } from './models/layout-clip-vision.js';
export { clipTextLayout } from './models/layout-clip.js';
export {
  checkAgainstLayout,
  diffAgainstLayout,
  loadDiffusersComponent,
  loadDiffusersModel,
  loadSingleFileCheckpoint,
  type LayoutDiff,
  type LoadedComponent,
  type LoadedDiffusersModel,
  type LoadedSingleFile,
  type LoadOptions,
  type SingleFileOptions,
} from './models/checkpoint.js';
export { ClipTextEncoder, type ClipTextEncodeOptions, type ClipTextOutputs } from './models/clip-text.js';
export { ClipVisionModel, type ClipVisionBackwardOptions, type ClipVisionOutputs } from './models/clip-vision.js';
export {
  ClipTextTrainer,
  TOKEN_EMBEDDING,
  clipTextWeightNames,
  type ClipTextBackwardOptions,
  type ClipTextBackwardResult,
} from './models/clip-text-backward.js';
export { AutoencoderKL, type VaeLatentDistribution } from './models/vae.js';
export { focusGrid, focusQueries, UNet2DConditionModel, type UNetFocus, type UNetTrainable, type UNetAdapter, type UNetBackwardOptions, type UNetLossOptions } from './models/unet.js';
export { imageToTensor, tensorToImages, tensorToRgb, imageGrid, saveImages, type ImageFit, type ImageToTensorOptions } from './pipeline/images.js';
export { exciteGradient, exciteLoss, exciteMaps, promptFocus, type ExciteLoss, type ExciteProbe } from './pipeline/excite.js';
export {
  StableDiffusionPipeline,
  schedulerFromConfig,
  type PipelineComponents,
  type FromPretrainedOptions,
  type GenerateOptions,
  type GenerateResult,
  type PromptTokenizer,
  type PromptEncoder,
  type Denoiser,
  type Scheduler,
  type SchedulerName,
  type AddTokensOptions,
} from './pipeline/txt2img.js';
export { PIXEL_SPACE } from './pipeline/pixel-space.js';
export { initWeights, type InitOptions } from './models/init.js';
export { AdamW, warmupCosine, type AdamWOptions, type StepResult } from './train/optimizer.js';
export { Progress, formatSeconds, type ProgressOptions, type ProgressUpdate } from './train/progress.js';
export * as world from './world/index.js';
export {
  trainCustomDiffusion, trainCustomDiffusionOnLoaded, trainedWeightNames, DEFAULT_INITIALIZERS,
  type TrainCustomDiffusionOptions, type TrainCustomDiffusionResult, type ConceptSpec,
} from './methods/custom-diffusion/train.js';
export type { ConceptWeights, ConceptToken, ConceptMethod, CustomDiffusionConcept, ConesConcept, TuningEncoderConcept, LoraFactors, CustomDiffusionMode } from './concepts/types.js';
export { CONCEPT_METHODS } from './concepts/types.js';
export { modelFingerprint } from './concepts/fingerprint.js';
export { saveConcept, loadConcept, disposeConcept, type SaveConceptOptions, type SaveConceptResult, type LoadedConcept, type LoadConceptOptions, type ConceptFileInfo } from './concepts/concept-file.js';
export { exportDiffusers, importDiffusers, type ImportDiffusersOptions } from './methods/custom-diffusion/diffusers-format.js';
export { applyConcepts, type ApplyConceptsOptions, type ApplyConceptsResult } from './concepts/apply.js';
export { mergeConcepts, type MergeBase, type MergeOptions, type MergeResult, type MatrixResidual, type Residuals } from './methods/custom-diffusion/merge.js';
export { candidateWeights, findNeurons, selectNeurons, type FindNeuronsOptions, type FindNeuronsResult, type NeuronLayers } from './methods/cones/find.js';
export { combineSubjects, uniteNeurons, type CombineSubjectsOptions, type CombineSubjectsResult } from './methods/cones/combine.js';
export { embeddingRegularization, type EmbeddingRegularization, type EmbeddingRegularizationOptions } from './methods/tuning-encoder/regularization.js';
export { TuningEncoder, tuningEncoderLayout, type TuningEncoderSpec, type LoraTarget } from './methods/tuning-encoder/model.js';
export { pretrainEncoder, type PretrainEncoderOptions, type PretrainEncoderResult, type EncoderLossOptions } from './methods/tuning-encoder/pretrain.js';
export { personalize, type PersonalizeOptions, type PersonalizeResult } from './methods/tuning-encoder/personalize.js';
export { saveEncoder, loadEncoder, type EncoderFileInfo, type EncoderTuning } from './methods/tuning-encoder/encoder-file.js';
export { DEFAULT_METHOD, METHOD_NAMES, METHODS, methodByName, type MethodName, type MethodTrainResult } from './methods/index.js';
export { genericCaptions, readCaptionFile } from './concepts/captions.js';
