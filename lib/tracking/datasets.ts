// Dataset inputs of a run, as `mlflow.log_input` records them: a dataset (name, digest, source type and
// source JSON, schema JSON, profile JSON) linked to the run with input tags (`mlflow.data.context`).
// Shapes and limits checked against the pinned MLflow: mlflow/entities/dataset.py, dataset_input.py,
// mlflow/utils/validation.py (_validate_dataset, _validate_input_tags), sqlalchemy_store.log_inputs.
import { invalidParameter } from './errors.js';

/** A dataset as MLflow stores it (`mlflow.entities.Dataset`): every field a string, JSON where it says so. */
export interface Dataset {
  name: string;
  /** Up to 36 characters (MLflow's own digests are 8 hex characters of an md5). */
  digest: string;
  /** `local`, `code`, `http`, `s3`, … (`mlflow.data` source types). */
  sourceType: string;
  /** JSON of the source (`{"uri": "/data/x"}`, `{"tags": {…}}`). */
  source: string;
  /** JSON of the schema (`{"mlflow_tensorspec": {"features": "…", "targets": "…"}}`), or null. */
  schema: string | null;
  /** JSON of the profile (shapes, sizes, sample count…), or null. */
  profile: string | null;
}

/** A dataset used by a run, with its input tags (`mlflow.data.context`: training / validation / testing). */
export interface DatasetInput {
  dataset: Dataset;
  tags: { key: string; value: string }[];
}

/** MLflow's input tag for what a dataset was used for. */
export const DATASET_CONTEXT_TAG = 'mlflow.data.context';

// mlflow/utils/validation.py
const MAX_DATASET_NAME_SIZE = 500;
const MAX_DATASET_DIGEST_SIZE = 36;
const MAX_DATASET_SCHEMA_SIZE = 1048575;
const MAX_DATASET_SOURCE_SIZE = 65535;
const MAX_DATASET_PROFILE_SIZE = 16777215;
const MAX_INPUT_TAG_KEY_SIZE = 255;
const MAX_INPUT_TAG_VALUE_SIZE = 500;

/** MLflow's checks of dataset inputs (one INVALID_PARAMETER_VALUE naming the field and its limit). */
export function validateDatasetInputs(inputs: readonly DatasetInput[]): void {
  for (const { dataset: d, tags } of inputs) {
    const what = `dataset '${String(d?.name).slice(0, 80)}'`;
    for (const f of ['name', 'digest', 'sourceType', 'source'] as const) {
      if (typeof d?.[f] !== 'string' || !d[f]) throw invalidParameter(`${what}: ${f} must be a non-empty string`);
    }
    const limit = (v: string | null, max: number, f: string) => {
      if (v !== null && v.length > max) throw invalidParameter(`${what}: ${f} is ${v.length} characters; MLflow allows at most ${max}`);
    };
    limit(d.name, MAX_DATASET_NAME_SIZE, 'name');
    limit(d.digest, MAX_DATASET_DIGEST_SIZE, 'digest');
    limit(d.source, MAX_DATASET_SOURCE_SIZE, 'source');
    limit(d.schema, MAX_DATASET_SCHEMA_SIZE, 'schema');
    limit(d.profile, MAX_DATASET_PROFILE_SIZE, 'profile');
    for (const t of tags) {
      if (typeof t.key !== 'string' || !t.key || typeof t.value !== 'string') throw invalidParameter(`${what}: input tags need a non-empty key and a string value`);
      limit(t.key, MAX_INPUT_TAG_KEY_SIZE, `input tag key '${t.key.slice(0, 40)}'`);
      limit(t.value, MAX_INPUT_TAG_VALUE_SIZE, `input tag '${t.key.slice(0, 40)}' value`);
    }
  }
}

/** The first input of each (name, digest), as MLflow's log_inputs dedupes them. */
export function dedupeDatasetInputs(inputs: readonly DatasetInput[]): DatasetInput[] {
  const seen = new Set<string>();
  return inputs.filter((i) => {
    const k = JSON.stringify([i.dataset.name, i.dataset.digest]);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * JSON as Python's `json.dumps` writes it (`", "` and `": "` separators, non-ASCII escaped), so that the
 * stored source/schema/profile read exactly like those Python MLflow writes for the same content.
 */
export function pythonJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'number') return Number.isFinite(value) ? (Number.isInteger(value) ? String(value) : pyFloat(value)) : value > 0 ? 'Infinity' : value < 0 ? '-Infinity' : 'NaN';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'string') return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.map(([k, v]) => `${pythonJson(k)}: ${pythonJson(v)}`).join(', ')}}`;
  }
  return JSON.stringify(String(value));
}

/** Python's repr of a float (1.0, 0.5, 1e-06). */
function pyFloat(v: number): string {
  const s = String(v);
  if (/e/.test(s)) return s.replace(/e([+-])(\d)$/, 'e$10$2');
  return s;
}
