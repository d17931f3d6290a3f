// MLflow's model registry through the tracker's worker: registering a model version (and waiting until it is
// READY), stages and aliases.
import { redact } from '../config.js';
import { invalidParameter, MlflowError } from './errors.js';
import type { ModelStage, ModelVersion, RegisteredModel } from './types.js';
import { validateArtifactPath } from './validation.js';
import type { WorkerClient } from './worker_client.js';

export interface RegisterModelOptions {
  description?: string;
  tags?: Record<string, string>;
  /** How long to wait for the version to be READY (default 300 s). */
  timeoutS?: number;
}

/** A tag/param value with secrets removed; a secret-named key keeps only '***'. */
export function redactTagValue(key: string, value: string): string {
  return redact({ [key]: value })[key] as string;
}

export class ModelRegistry {
  /** `beforeRead`: delivers pending logging first (a model URI may name what was just logged). */
  constructor(private readonly client: WorkerClient, private readonly beforeRead: () => Promise<void>) {}

  async registerModel(name: string, modelUri: string, opts: RegisterModelOptions): Promise<ModelVersion> {
    if (/^runs:\/\//i.test(modelUri)) throw invalidParameter(`Invalid model URI '${modelUri}': run URIs are runs:/<run_id>/<path> (one slash)`);
    if (/^s3:\/\/s3:\/\//i.test(modelUri)) throw invalidParameter(`Invalid model URI '${modelUri}': doubled s3:// prefix`);
    await this.beforeRead();
    const tags = Object.entries(opts.tags ?? {}).map(([key, value]) => ({ key, value: redactTagValue(key, value) }));
    let runId: string | null = null;
    let source = modelUri;
    // MLflow 3: a logged model (`models:/<model_id>`) is registered as itself, with its id and source run.
    let modelId: string | null = /^models:\/(m-[0-9a-f]{32})\/?$/.exec(modelUri)?.[1] ?? null;
    if (modelId) runId = (await this.client.request('getLoggedModel', modelId)).sourceRunId;
    const m = /^runs:\/([0-9a-zA-Z_-]+)(?:\/(.*))?$/.exec(modelUri);
    if (m) {
      runId = m[1]!;
      const run = await this.client.request('getRun', runId);
      const path = m[2] ? validateArtifactPath(m[2]) : '';
      // `runs:/<run_id>/<name>` of a run whose model is a logged model of that name: that model (as MLflow 3 does).
      const logged = path && !path.includes('/')
        ? (await this.client.request('searchLoggedModels', [run.info.experimentId], { name: path, sourceRunId: runId }))[0]
        : undefined;
      if (logged) {
        modelId = logged.modelId;
        source = `models:/${logged.modelId}`;
      } else {
        source = path ? `${run.info.artifactUri.replace(/\/+$/, '')}/${path}` : run.info.artifactUri;
      }
    }
    const existing = await this.client.request('getRegisteredModel', name);
    if (!existing) {
      try {
        await this.client.request('createRegisteredModel', name, opts.description, tags);
      } catch (e) {
        if (!(e instanceof MlflowError && e.code === 'RESOURCE_ALREADY_EXISTS')) throw e;
      }
    } else if (opts.description && existing.description !== opts.description) {
      await this.client.request('updateRegisteredModelDescription', name, opts.description);
    }
    let mv = await this.client.request('createModelVersion', name, source, runId, opts.description, tags, modelId);
    const deadline = Date.now() + (opts.timeoutS ?? 300) * 1000;
    while (mv.status === 'PENDING_REGISTRATION') {
      if (Date.now() > deadline) throw new MlflowError(`Model version ${name}/${mv.version} not READY after ${opts.timeoutS ?? 300} s`, 'INTERNAL_ERROR');
      await new Promise((r) => setTimeout(r, 1000));
      mv = await this.client.request('getModelVersion', name, mv.version);
    }
    if (mv.status !== 'READY') throw new MlflowError(`Model version ${name}/${mv.version} registration failed: ${mv.statusMessage ?? mv.status}`, 'INTERNAL_ERROR');
    return mv;
  }

  transitionModelStage(name: string, version: string | number, stage: ModelStage, archiveExisting: boolean): Promise<ModelVersion> {
    return this.client.request('transitionModelVersionStage', name, String(version), stage, archiveExisting);
  }
  getLatestVersions(name: string, stages?: ModelStage[]): Promise<ModelVersion[]> {
    return this.client.request('getLatestVersions', name, stages);
  }
  getModelVersion(name: string, version: string | number): Promise<ModelVersion> {
    return this.client.request('getModelVersion', name, String(version));
  }
  getRegisteredModel(name: string): Promise<RegisteredModel | null> {
    return this.client.request('getRegisteredModel', name);
  }
  setModelAlias(name: string, alias: string, version: string | number): Promise<void> {
    return this.client.request('setRegisteredModelAlias', name, alias, String(version));
  }
  deleteModelAlias(name: string, alias: string): Promise<void> {
    return this.client.request('deleteRegisteredModelAlias', name, alias);
  }
  getModelVersionByAlias(name: string, alias: string): Promise<ModelVersion> {
    return this.client.request('getModelVersionByAlias', name, alias);
  }
}
