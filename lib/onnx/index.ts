// ONNX export of heimdall-torch models (native exporter + ONNX Runtime validation).
export {
  exportOnnx,
  exportOnnxOptionsSchema,
  formatOnnxReport,
  OnnxExportError,
  setOnnxBinding,
  validateWithOnnxRuntime,
} from './export.js';
export type { ExportOnnxOptions, OnnxBinding, OnnxExportReport, OnnxValidation, OutputDiff } from './export.js';
export { MLMODEL_MLFLOW_VERSION, writeMlflowOnnxModel } from './mlflow_model.js';
export type { MlflowOnnxModel, MlflowOnnxModelOptions } from './mlflow_model.js';
