// Inference on exported heimdall-torch models: loadModel(uri) → OnnxModel.predict().
export { loadModel, OnnxModel, parseModelMetadata } from './model.js';
export type {
  DirectoryPrediction, LoadModelOptions, ModelFeatureConfig, ModelMetadata, PositionNormalization, PredictedPosition, Prediction, PredictInput,
} from './model.js';
export { resolveModelUri } from './uri.js';
export type { RegisteredSource, ResolvedModelUri } from './uri.js';
export { fetchArtifact, listArtifactDir } from './artifacts.js';
export type { FetchedArtifact } from './artifacts.js';
export { InferenceError } from './errors.js';
export type { InferenceErrorCode } from './errors.js';
export { readOnnxInfo } from './onnx_file.js';
export type { OnnxFileInfo } from './onnx_file.js';
