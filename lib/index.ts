// heimdall-torch: train and track ConvNeXt models from Node.js.
export { ConvNeXt } from './model.js';
export type { ConvNeXtCreateOptions, ConvNeXtOptions } from './model.js';
export * from './trainer/index.js';
export { HeimdallDataModule, computeFeatures, haversineM, summarizeErrors } from './data/heimdall.js';
export type { ErrorSummary, SyntheticOptions, DirectoryOptions, HeimdallDataInfo, FeatureConfig, Receiver } from './data/heimdall.js';
export * from './tracking/index.js';
export { HeimdallError, isNativeErrorCode } from './errors.js';
export type { HeimdallErrorCode, HeimdallErrorOptions, LibraryErrorCode, MlflowErrorCode } from './errors.js';
export { engineOptionsSchema, optimizerSchema, scheduleSchema, earlyStoppingOptionsSchema, modelCheckpointOptionsSchema } from './config.js';
export { torchInfo, native } from './native.js';
export type {
  TorchInfo, NativeErrorCode, BatchEvent, EpochResult, WeightsReport, PositionScale, Precision, OptimizerOptions, ScheduleOptions,
} from './native.js';
export * from './onnx/index.js';
export * from './figures/index.js';
export * from './inference/index.js';
