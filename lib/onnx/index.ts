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
