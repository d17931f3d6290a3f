// ONNX export of heimdall-torch models (native exporter + ONNX Runtime validation).
export {
  exportOnnx,
  exportOnnxOptionsSchema,
  formatOnnxReport,
  OnnxExportError,
  setOnnxBinding,
  validateWithOnnxRuntime,
} from './export.js';
export { ONNXRUNTIME_INSTALL, onnxRuntimeAvailable, OnnxRuntimeMissingError } from './runtime.js';
export type { ExportOnnxOptions, OnnxBinding, OnnxExportErrorCode, OnnxExportReport, OnnxValidation, OutputDiff } from './export.js';
export { MLMODEL_MLFLOW_VERSION, logOnnxModel, onnxModelTags, writeMlflowOnnxModel } from './mlflow_model.js';
export type { MlflowOnnxModel, MlflowOnnxModelOptions, OnnxModelRun } from './mlflow_model.js';
export {
  DEFAULT_REGISTERED_MODEL, dataMetadataOfRun, exportRun, findRunCheckpoint, readCheckpointHeader, registerOnnxModel,
} from './run_export.js';
export type { CheckpointHeader, ExportRunOptions, ExportRunResult, RunCheckpoint } from './run_export.js';
