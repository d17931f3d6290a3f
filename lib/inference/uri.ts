// Model URIs as MLflow spells them, resolved to the artifact that holds the model:
//   models:/<name>/<stage>   the latest version in None | Staging | Production | Archived (any case)
//   models:/<name>/<version> a version number;  models:/<name>/latest  the highest version
//   models:/<name>@<alias>   the version an alias points at
//   models:/<model_id>       an MLflow 3 logged model (m-<32 hex>): the files under its artifact location
//   runs:/<run_id>/<path>    an artifact of a run; `runs:/<run_id>/<name>/…` of a run that logged a model named
//                            <name> (MLflow 3) is that logged model's files, as MLflow's RunsArtifactRepository reads it
//   s3://…, mlflow-artifacts:/…, file://…, or a local path (an .onnx file or an MLflow model directory)
import { redact } from '../config.js';
import type { MLflowTracker } from '../tracking/tracker.js';
import type { ModelVersion } from '../tracking/types.js';
import { joinArtifactUri } from './artifacts.js';
import { badInput, notFound } from './errors.js';

export interface RegisteredSource {
  name: string;
  version: string;
  stage: string;
  aliases: string[];
  runId: string | null;
  source: string;
  description: string | null;
  tags: Record<string, string>;
}

export interface ResolvedModelUri {
  uri: string;
  /** Where the model is: an artifact URI or a local path. */
  artifactUri: string;
  runId: string | null;
  registered: RegisteredSource | null;
}

const STAGES = ['None', 'Staging', 'Production', 'Archived'];

export function needsTracker(uri: string): boolean {
  return /^(models|runs):/i.test(uri);
}

function describeVersions(versions: ModelVersion[]): string {
  return versions.length ? versions.map((v) => `${v.version} (${v.currentStage})`).join(', ') : 'none';
}

const LOGGED_MODEL_URI = /^models:\/(m-[0-9a-f]{32})\/?$/;

async function artifactOfSource(tracker: MLflowTracker, mv: ModelVersion, uri: string): Promise<string> {
  const m = /^runs:\/([^/]+)\/?(.*)$/.exec(mv.source);
  if (m) return (await resolveRunUri(tracker, m[1]!, m[2] ?? '', uri)).artifactUri;
  const logged = LOGGED_MODEL_URI.exec(mv.source);
  if (logged) return (await loggedModel(tracker, logged[1]!, uri)).artifactLocation;
  if (/^models:/.test(mv.source)) {
    throw badInput(`${uri}: version ${mv.version} has source '${mv.source}', which is not a logged model (models:/m-<id>) heimdall-torch can read; register a run artifact (runs:/<run_id>/model) or a logged model instead`);
  }
  return mv.source;
}

async function loggedModel(tracker: MLflowTracker, modelId: string, uri: string) {
  try {
    return await tracker.getLoggedModel(modelId);
  } catch (e) {
    throw notFound(`${uri}: no logged model '${modelId}' in ${redact(tracker.config.trackingUri)} (${(e as Error).message})`, e);
  }
}

/** `runs:/<runId>/<path>`: the run's logged model named by the path's first segment (MLflow 3), else the run's artifact. */
async function resolveRunUri(tracker: MLflowTracker, runId: string, path: string, uri: string): Promise<{ artifactUri: string; runId: string }> {
  const run = await runInfo(tracker, runId, uri);
  const [first, ...rest] = path.split('/');
  if (first) {
    const models = await tracker.searchLoggedModels({ experimentIds: [run.experimentId], name: first, sourceRunId: runId }).catch(() => []);
    const newest = models.find((m) => m.status === 'READY') ?? models[0];
    if (newest) return { artifactUri: joinArtifactUri(newest.artifactLocation, rest.join('/')), runId };
  }
  return { artifactUri: joinArtifactUri(run.artifactUri, path), runId };
}

async function runInfo(tracker: MLflowTracker, runId: string, uri: string) {
  try {
    return await tracker.getRunInfo(runId);
  } catch (e) {
    throw notFound(`${uri}: run '${runId}' does not exist in ${redact(tracker.config.trackingUri)} (${(e as Error).message})`, e);
  }
}

/** Resolves `uri` (see the file comment) with the tracker's registry; throws HEIMDALL_NOT_FOUND naming what is missing. */
export async function resolveModelUri(uri: string, tracker?: MLflowTracker): Promise<ResolvedModelUri> {
  if (/^runs:/i.test(uri)) {
    const m = /^runs:\/([0-9a-zA-Z_-]+)\/(.+)$/.exec(uri);
    if (!m) throw badInput(`invalid run URI '${uri}': expected runs:/<run_id>/<artifact path>, e.g. runs:/0123abcd/model`);
    if (!tracker) throw badInput(`${uri} needs an MLflow tracker (MLFLOW_TRACKING_URI)`);
    const r = await resolveRunUri(tracker, m[1]!, m[2]!, uri);
    return { uri, artifactUri: r.artifactUri, runId: r.runId, registered: null };
  }
  if (!/^models:/i.test(uri)) return { uri, artifactUri: uri, runId: null, registered: null };
  const logged = LOGGED_MODEL_URI.exec(uri);
  if (logged) {
    if (!tracker) throw badInput(`${uri} needs an MLflow tracker (MLFLOW_TRACKING_URI)`);
    const model = await loggedModel(tracker, logged[1]!, uri);
    if (model.status !== 'READY') throw notFound(`${uri}: logged model '${model.name}' is ${model.status}, not READY: its files are incomplete`);
    return { uri, artifactUri: model.artifactLocation, runId: model.sourceRunId, registered: null };
  }

  const m = /^models:\/([^/@]+)(?:\/([^/@]+)|@([^/@]+))$/.exec(uri);
  if (!m) throw badInput(`invalid model URI '${uri}': expected models:/<name>/<stage|version|latest>, models:/<name>@<alias> or models:/m-<logged model id>`);
  if (!tracker) throw badInput(`${uri} needs an MLflow tracker (MLFLOW_TRACKING_URI)`);
  const name = decodeURIComponent(m[1]!);
  const model = await tracker.getRegisteredModel(name);
  if (!model) {
    throw notFound(`${uri}: no registered model named '${name}' in the MLflow registry (register one with \`heimdall-torch export --run <id> --register ${name}\`)`);
  }
  let mv: ModelVersion;
  if (m[3] !== undefined) {
    const alias = decodeURIComponent(m[3]);
    try {
      mv = await tracker.getModelVersionByAlias(name, alias);
    } catch (e) {
      const known = Object.keys(model.aliases ?? {});
      throw notFound(`${uri}: registered model '${name}' has no alias '${alias}' (aliases: ${known.length ? known.join(', ') : 'none'})`, e);
    }
  } else {
    const sel = decodeURIComponent(m[2]!);
    if (/^\d+$/.test(sel)) {
      try {
        mv = await tracker.getModelVersion(name, sel);
      } catch (e) {
        throw notFound(`${uri}: registered model '${name}' has no version ${sel} (latest per stage: ${describeVersions(model.latestVersions)})`, e);
      }
    } else if (sel.toLowerCase() === 'latest') {
      const all = await tracker.getLatestVersions(name);
      if (!all.length) throw notFound(`${uri}: registered model '${name}' has no versions`);
      mv = all.reduce((a, b) => (Number(b.version) > Number(a.version) ? b : a));
    } else {
      const stage = STAGES.find((s) => s.toLowerCase() === sel.toLowerCase());
      if (!stage) throw badInput(`${uri}: '${sel}' is neither a version number, 'latest', nor a stage (${STAGES.join(', ')})`);
      const inStage = await tracker.getLatestVersions(name, [stage as never]);
      if (!inStage.length) {
        throw notFound(`${uri}: registered model '${name}' has no version in stage ${stage} (latest per stage: ${describeVersions(model.latestVersions)})`);
      }
      mv = inStage[0]!;
    }
  }
  const artifactUri = await artifactOfSource(tracker, mv, uri);
  return {
    uri,
    artifactUri,
    runId: mv.runId,
    registered: {
      name, version: mv.version, stage: String(mv.currentStage), aliases: mv.aliases ?? [], runId: mv.runId, source: mv.source,
      description: mv.description, tags: mv.tags ?? {},
    },
  };
}
