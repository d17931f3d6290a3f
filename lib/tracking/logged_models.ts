// MLflow 3 logged models through the tracker's worker, as Python's `mlflow.<flavor>.log_model(name=…)` does it
// (mlflow/models/model.py Model.log, 3.17):
//   1. create_logged_model(name, source_run_id, params = the run's params, tags)        → PENDING, model_id m-<hex>
//   2. log_outputs(run, [model_id @ step])                                              → the run's output
//   3. the run's metrics at that step, logged again with the model_id                  → the model's metrics
//      (with the dataset each was measured on, from the run's dataset inputs: the model page's "Datasets used")
//   4. the MLflow model folder (MLmodel with model_id) uploaded under the model's artifact_location
//   5. finalize_logged_model: READY, or FAILED when anything above failed
// `runs:/<run_id>/<name>` still resolves (to the run's logged model of that name, as RunsArtifactRepository does).
// A store without logged models (an MLflow 2.x database or server) gets the folder as the run's `<name>/`
// artifact, with one warning per tracker.
import { MlflowError } from './errors.js';
import type { FlushReport } from './protocol.js';
import { redactTagValue } from './registry.js';
import type { LoggedModel, ModelMetric, RunDataset, Tag } from './types.js';
import { validateTag } from './validation.js';
import type { WorkerClient } from './worker_client.js';

export interface LogModelOptions {
  /** The logged model's name, which is also the run artifact path `runs:/<run_id>/<name>` (default 'model'). */
  name?: string;
  /** The step the model was logged at (the checkpoint's step): the run's metrics at it become the model's. */
  step?: number;
  /** Params of the model (default: the run's params, as Python's log_model; these are added). */
  params?: Record<string, string>;
  tags?: Record<string, string>;
  modelType?: string;
  /**
   * Which of the run's datasets a metric was measured on, by key prefix → `mlflow.data.context` (default: the
   * package's key style, METRIC_CONTEXTS). A metric gets the run's one dataset input of that context; none or
   * several: no dataset.
   */
  metricContexts?: Record<string, string>;
}

/** The key style's split prefixes and the dataset contexts the data modules log (training / validation / testing). */
export const METRIC_CONTEXTS: Readonly<Record<string, string>> = { 'train/': 'training', 'val/': 'validation', 'test/': 'testing' };

export interface LoggedModelResult {
  /** `m-<32 hex>`, or null when the store predates logged models (the folder was logged as the run's artifact). */
  modelId: string | null;
  /** `models:/<model_id>`, or `runs:/<run_id>/<name>` when there is no logged model. */
  modelUri: string;
  /** `runs:/<run_id>/<name>` (resolves to the logged model too). */
  runModelUri: string;
  /** Where the model's files are. */
  artifactLocation: string;
  model: LoggedModel | null;
}

/** What the logged-models code needs from the tracker (kept narrow: the tracker owns runs and delivery). */
export interface LoggedModelHost {
  readonly client: WorkerClient;
  /** Delivers pending logging (so the run's metrics at the step are stored before they are read). */
  beforeRead(): Promise<void>;
  warn(message: string): void;
  /** Enqueues the folder `dir` for upload under `root` (an artifact location) at `path`. */
  uploadDir(dir: string, root: string, path: string): void;
  flush(): Promise<FlushReport>;
}

export const UNSUPPORTED_WARNING =
  'this MLflow store has no logged models (an MLflow 2.x database or server): the model is logged as the run\'s artifact only ' +
  '(runs:/<run_id>/<name>); upgrade it (`mlflow db upgrade <uri>`, or a 3.x server) for MLflow 3 logged models';

const CONTEXT_TAGS = ['mlflow.user', 'mlflow.source.name', 'mlflow.source.type', 'mlflow.source.git.commit'];

export class LoggedModels {
  private warned = false;

  constructor(private readonly host: LoggedModelHost) {}

  /**
   * Logs the MLflow model folder that `write` produces (it gets the model id to put in MLmodel, or null) as a
   * logged model of `run`. Returns where it is.
   */
  async logModel(
    run: { runId: string; experimentId: string; artifactUri: string },
    write: (model: { modelId: string | null; artifactLocation: string }) => string | Promise<string>,
    opts: LogModelOptions = {},
  ): Promise<LoggedModelResult> {
    const name = opts.name ?? 'model';
    const step = opts.step ?? 0;
    const runModelUri = `runs:/${run.runId}/${name}`;
    const { client } = this.host;
    await this.host.beforeRead();
    const stored = await client.request('getRun', run.runId);
    const params = Object.entries({ ...stored.params, ...(opts.params ?? {}) }).map(([key, value]) => ({ key, value }));
    // Like Python's context tags on a logged model: who and what logged it (copied from the run).
    const context = Object.fromEntries(Object.entries(stored.tags).filter(([k]) => CONTEXT_TAGS.includes(k)));
    const tags: Tag[] = Object.entries({ ...context, ...(opts.tags ?? {}) }).map(([k, v]) => validateTag(k, redactTagValue(k, v)));
    const model = await client.request('createLoggedModel', {
      experimentId: run.experimentId, name, sourceRunId: run.runId, modelType: opts.modelType, params, tags,
    });
    if (!model) {
      if (!this.warned) {
        this.warned = true;
        this.host.warn(UNSUPPORTED_WARNING);
        process.emitWarning(UNSUPPORTED_WARNING, 'MLflowTrackerWarning');
      }
      const location = `${run.artifactUri.replace(/\/+$/, '')}/${name}`;
      const dir = await write({ modelId: null, artifactLocation: location });
      this.host.uploadDir(dir, run.artifactUri, name);
      this.check(await this.host.flush(), `${name}/ of run ${run.runId}`);
      return { modelId: null, modelUri: runModelUri, runModelUri, artifactLocation: location, model: null };
    }
    try {
      await client.request('logOutputs', run.runId, [{ modelId: model.modelId, step }]);
      const metrics = await this.metricsAtStep(run.runId, Object.keys(stored.metrics), step, opts.metricContexts ?? METRIC_CONTEXTS);
      if (metrics.length) await client.request('logLoggedModelMetrics', run.runId, model.modelId, metrics);
      const dir = await write({ modelId: model.modelId, artifactLocation: model.artifactLocation });
      this.host.uploadDir(dir, model.artifactLocation, '');
      this.check(await this.host.flush(), `the files of logged model ${model.modelId}`);
      const ready = await client.request('finalizeLoggedModel', model.modelId, 'READY');
      return { modelId: model.modelId, modelUri: `models:/${model.modelId}`, runModelUri, artifactLocation: model.artifactLocation, model: ready };
    } catch (e) {
      await client.request('finalizeLoggedModel', model.modelId, 'FAILED').catch(() => undefined);
      throw e;
    }
  }

  /** Every point the run logged at `step` (Python's log_model_metrics_for_step), with its dataset where known. */
  private async metricsAtStep(runId: string, keys: string[], step: number, contexts: Record<string, string>): Promise<ModelMetric[]> {
    const datasetOf = datasetByPrefix(await this.host.client.request('getRunDatasets', runId), contexts);
    const out: ModelMetric[] = [];
    for (const key of keys) {
      const d = datasetOf(key);
      for (const m of await this.host.client.request('getMetricHistory', runId, key)) {
        if (m.step === step) out.push(d ? { ...m, datasetName: d.name, datasetDigest: d.digest } : m);
      }
    }
    return out;
  }

  private check(r: FlushReport, what: string): void {
    if (!r.complete || r.errors.length) {
      throw new MlflowError(`uploading ${what} did not complete: ${r.errors.join('; ') || 'the artifact store is unavailable (kept in the spool)'}`, 'TEMPORARILY_UNAVAILABLE');
    }
  }
}

/** The dataset a metric key was measured on: the run's only dataset input of the context its prefix names. */
export function datasetByPrefix(datasets: readonly RunDataset[], contexts: Record<string, string>): (key: string) => RunDataset | undefined {
  const byContext = new Map<string, RunDataset[]>();
  for (const d of datasets) if (d.context) byContext.set(d.context, [...(byContext.get(d.context) ?? []), d]);
  return (key) => {
    const prefix = Object.keys(contexts).find((p) => key.startsWith(p));
    const found = prefix === undefined ? undefined : byContext.get(contexts[prefix]!);
    return found?.length === 1 ? found[0] : undefined;
  };
}
