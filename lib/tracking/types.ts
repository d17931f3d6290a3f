// The entities the tracker reads and writes, shaped like MLflow's (camelCase).
import type { DatasetInput } from './datasets.js';
import type { StoreKind } from './schemes.js';

export type RunStatus = 'RUNNING' | 'SCHEDULED' | 'FINISHED' | 'FAILED' | 'KILLED';
export type LifecycleStage = 'active' | 'deleted';
export type ModelStage = 'None' | 'Staging' | 'Production' | 'Archived';

export interface Metric {
  key: string;
  value: number;
  timestamp: number;
  step: number;
}
/** A logged model's metric point: a run's point, and the dataset it was measured on (the model page's "Datasets used"). */
export interface ModelMetric extends Metric {
  datasetName?: string;
  datasetDigest?: string;
}
/** A dataset a run used, as its dataset inputs record it: name, digest and `mlflow.data.context`. */
export interface RunDataset {
  name: string;
  digest: string;
  /** training / validation / testing, or null when the input has no context tag. */
  context: string | null;
}
export interface Param {
  key: string;
  value: string;
}
export interface Tag {
  key: string;
  value: string;
}

export interface Experiment {
  experimentId: string;
  name: string;
  artifactLocation: string;
  lifecycleStage: LifecycleStage;
  creationTime: number | null;
  lastUpdateTime: number | null;
  tags: Record<string, string>;
}

export interface RunInfo {
  runId: string;
  runName: string;
  experimentId: string;
  userId: string;
  status: RunStatus;
  startTime: number | null;
  endTime: number | null;
  artifactUri: string;
  lifecycleStage: LifecycleStage;
}

export interface Run {
  info: RunInfo;
  /** Latest value of each metric (highest step, then timestamp). */
  metrics: Record<string, number>;
  params: Record<string, string>;
  tags: Record<string, string>;
}

export interface ModelVersion {
  name: string;
  version: string;
  creationTimestamp: number | null;
  lastUpdatedTimestamp: number | null;
  currentStage: ModelStage | string;
  description: string | null;
  source: string;
  runId: string | null;
  status: string;
  statusMessage: string | null;
  tags: Record<string, string>;
  aliases: string[];
}

export interface RegisteredModel {
  name: string;
  creationTimestamp: number | null;
  lastUpdatedTimestamp: number | null;
  description: string | null;
  tags: Record<string, string>;
  aliases: Record<string, string>;
  latestVersions: ModelVersion[];
}

export interface SearchRunsOptions {
  experimentIds?: string[];
  filter?: string;
  orderBy?: string[];
  maxResults?: number;
  /** active (default), deleted or all runs. */
  runViewType?: 'ACTIVE_ONLY' | 'DELETED_ONLY' | 'ALL';
}

export interface CreateRunOptions {
  experimentId: string;
  runName?: string;
  startTime: number;
  userId: string;
  tags: Tag[];
}

/** One unit of logging, as delivered to a store's logBatch. */
export interface LogBatch {
  runId: string;
  metrics: Metric[];
  params: Param[];
  tags: Tag[];
}

/** MLflow 3's LoggedModelStatus (SQL: 0 UNSPECIFIED, 1 PENDING, 2 READY, 3 FAILED; REST: LOGGED_MODEL_…). */
export type LoggedModelStatus = 'UNSPECIFIED' | 'PENDING' | 'READY' | 'FAILED';

/** An MLflow 3 LoggedModel (`logged_models` and its params/tags/metrics tables, or `/logged-models`). */
export interface LoggedModel {
  modelId: string;
  experimentId: string;
  name: string;
  /** Where its artifacts live: `<experiment artifact location>/models/<model_id>/artifacts`. */
  artifactLocation: string;
  creationTimestampMs: number;
  lastUpdatedTimestampMs: number;
  status: LoggedModelStatus;
  modelType: string | null;
  sourceRunId: string | null;
  statusMessage: string | null;
  tags: Record<string, string>;
  params: Record<string, string>;
  metrics: Metric[];
}

export interface CreateLoggedModelOptions {
  experimentId: string;
  name: string;
  sourceRunId?: string;
  modelType?: string;
  params: Param[];
  tags: Tag[];
}

/** A run's output: the model logged at `step` (an `inputs` row RUN_OUTPUT → MODEL_OUTPUT). */
export interface ModelOutput {
  modelId: string;
  step: number;
}

/** The most entities one logBatch call may carry (the worker splits what it delivers to fit). */
export interface BatchLimits {
  metrics: number;
  params: number;
  tags: number;
  /** Metrics, params and tags together. */
  total: number;
}

/** What every store (sqlite, postgresql, rest) provides. All methods may throw MlflowError. */
export interface TrackingStore {
  readonly kind: StoreKind;
  /** What one `logBatch` accepts. */
  readonly limits: Readonly<BatchLimits>;
  /** Opens connections, checks/creates the schema. */
  open(): Promise<void>;
  close(): Promise<void>;
  /** Default artifact root for new experiments when no artifact URI is configured (may be null). */
  defaultArtifactLocation(experimentId: string): string | null;
  getExperimentByName(name: string): Promise<Experiment | null>;
  getExperiment(experimentId: string): Promise<Experiment>;
  createExperiment(name: string, artifactLocation: string | undefined, tags: Tag[]): Promise<string>;
  searchExperiments(filter?: string, maxResults?: number): Promise<Experiment[]>;
  createRun(opts: CreateRunOptions): Promise<RunInfo>;
  updateRun(runId: string, status: RunStatus, endTime: number | null): Promise<void>;
  getRun(runId: string): Promise<Run>;
  logBatch(batch: LogBatch): Promise<void>;
  /** Logs dataset inputs of a run (`mlflow.log_input`); resolves to warnings (features the store lacks are skipped). */
  logInputs(runId: string, datasets: DatasetInput[]): Promise<string[]>;
  /** The run's dataset inputs (`get_run(id).inputs.dataset_inputs`); [] on stores without them. */
  getRunDatasets(runId: string): Promise<RunDataset[]>;
  getMetricHistory(runId: string, key: string): Promise<Metric[]>;
  searchRuns(opts: SearchRunsOptions): Promise<Run[]>;
  // logged models (MLflow 3): see sql/logged_models.ts and rest/logged_models.ts
  /** Creates a PENDING logged model; null when the store predates logged models (an MLflow 2.x schema or server). */
  createLoggedModel(o: CreateLoggedModelOptions): Promise<LoggedModel | null>;
  finalizeLoggedModel(modelId: string, status: 'READY' | 'FAILED'): Promise<LoggedModel>;
  setLoggedModelTags(modelId: string, tags: Tag[]): Promise<void>;
  getLoggedModel(modelId: string): Promise<LoggedModel>;
  /** Active logged models of the experiments, newest first; `name` / `sourceRunId` narrow the search. */
  searchLoggedModels(experimentIds: string[], filter?: { name?: string; sourceRunId?: string }): Promise<LoggedModel[]>;
  /** Links the models to the run as its outputs (log_outputs). */
  logOutputs(runId: string, models: ModelOutput[]): Promise<void>;
  /** Records metrics of the run as the logged model's (logged_model_metrics; REST: log-batch with model_id). */
  logLoggedModelMetrics(runId: string, modelId: string, metrics: ModelMetric[]): Promise<void>;
  // registry
  getRegisteredModel(name: string): Promise<RegisteredModel | null>;
  createRegisteredModel(name: string, description: string | undefined, tags: Tag[]): Promise<void>;
  updateRegisteredModelDescription(name: string, description: string): Promise<void>;
  /** `modelId`: the logged model registered (source `models:/<model_id>`), as MLflow 3's create_model_version. */
  createModelVersion(name: string, source: string, runId: string | null, description: string | undefined, tags: Tag[], modelId?: string | null): Promise<ModelVersion>;
  getModelVersion(name: string, version: string): Promise<ModelVersion>;
  transitionModelVersionStage(name: string, version: string, stage: ModelStage, archiveExisting: boolean): Promise<ModelVersion>;
  getLatestVersions(name: string, stages?: string[]): Promise<ModelVersion[]>;
  setRegisteredModelAlias(name: string, alias: string, version: string): Promise<void>;
  deleteRegisteredModelAlias(name: string, alias: string): Promise<void>;
  getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion>;
}
